//! A disk held by another process, for the tests of the tenders' and
//! `lamina store`'s refusal of a disk in use.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A flock(2) on a file, held by a child process (util-linux's flock(1)
/// exec'ing `cat`) until dropped.
///
/// Not by the test's own process: a lock taken there is also held, after
/// the test releases it, by the fork of any other test thread that spawns
/// a command, until that fork's exec, so that the next tender the test
/// runs may find the disk still in use.
///
/// ```no_run
/// let held = lamina_test_support::disk_lock::DiskLock::shared("disk.img".as_ref());
/// // ... a tender given disk.img refuses it ...
/// drop(held); // released: the next one opens it
/// ```
pub struct DiskLock(Child);

impl DiskLock {
    /// A shared lock (as a reader would take).
    pub fn shared(path: &Path) -> DiskLock {
        DiskLock::take(path, "--shared")
    }

    /// An exclusive lock (as a tender takes its disk).
    pub fn exclusive(path: &Path) -> DiskLock {
        DiskLock::take(path, "--exclusive")
    }

    fn take(path: &Path, mode: &str) -> DiskLock {
        let mut child = Command::new("flock")
            .args([mode, "--nonblock", "--no-fork"])
            .arg(path)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock(1), from util-linux");
        // cat echoing a line means flock(1) took the lock and exec'd it.
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"locked\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line,
            "locked\n",
            "flock(1) could not lock {}",
            path.display()
        );
        DiskLock(child)
    }
}

impl Drop for DiskLock {
    fn drop(&mut self) {
        // cat ends at the end of its input, and its exit releases the lock.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}
