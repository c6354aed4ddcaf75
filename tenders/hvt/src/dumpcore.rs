//! `--dumpcore=DIR`: an ELF core file of a guest that faults or aborts
//! (`solo5_abort`, which a Lamina panic ends in), written as
//! `DIR/core.lamina-hvt.PID` for `gdb IMAGE CORE` (see
//! [`lamina_tender::core_dump`] for the format).
//!
//! The sandbox forbids opening files once the guest runs, so the file is
//! made before: an unnamed one in DIR (`O_TMPFILE`), which disappears by
//! itself when the guest ends well. Only a crash gives it its name, with
//! `linkat` of `/proc/self/fd/N` into DIR. With `--dumpcore` the vCPU
//! thread's filter allows exactly that: `write` and `lseek` on that file,
//! and `linkat` into that directory (see `seccomp`); without it, nothing.

use crate::fault::Fault;
use kvm_bindings::{kvm_regs, kvm_sregs};
use lamina_tender::core_dump::{self, Range, UserRegs};
use lamina_tender::mem::GuestMemory;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a core file could not be prepared or written.
#[derive(Debug, Error)]
pub enum DumpError {
    /// DIR cannot take a core file.
    #[error("--dumpcore={dir}: cannot create a file there: {error}")]
    Prepare {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Writing or naming the file failed.
    #[error("cannot write the core file {path}: {error}")]
    Write {
        /// Its would-be name.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// The core file waiting for a crash: unnamed in its directory.
#[derive(Debug)]
pub struct CoreFile {
    file: File,
    dir: File,
    /// `DIR/core.lamina-hvt.PID`, the name it gets.
    path: PathBuf,
    name: CString,
    /// `/proc/self/fd/N` of `file`.
    proc_path: CString,
    /// This process's id (read before the sandbox, which forbids getpid).
    pid: u32,
}

impl CoreFile {
    /// Makes the unnamed file in `dir`.
    pub fn prepare(dir: &Path) -> Result<CoreFile, DumpError> {
        let failed = |error| DumpError::Prepare {
            dir: dir.to_owned(),
            error,
        };
        let directory = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .map_err(failed)?;
        let file = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .map_err(failed)?;
        let pid = std::process::id();
        let name = format!("core.lamina-hvt.{pid}");
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let invalid = |_| failed(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        Ok(CoreFile {
            path: dir.join(&name),
            name: CString::new(name).map_err(invalid)?,
            proc_path: CString::new(proc_path.as_bytes()).map_err(invalid)?,
            file,
            dir: directory,
            pid,
        })
    }

    /// The file's and the directory's descriptors, for the sandbox.
    pub fn fds(&self) -> (RawFd, RawFd) {
        (self.file.as_raw_fd(), self.dir.as_raw_fd())
    }

    /// Writes the core of `fault` (the registers there, all of `mem` up to
    /// `guest_end`) and names the file; returns its path.
    pub fn write(
        mut self,
        mem: &GuestMemory,
        guest_end: u64,
        fault: &Fault,
    ) -> Result<PathBuf, DumpError> {
        let failed = |error| DumpError::Write {
            path: self.path.clone(),
            error,
        };
        let regs = user_regs(&fault.regs, &fault.sregs);
        // From the boot info up: below are the tender's page tables and
        // GDT, and address 0, which must stay unreadable for gdb as it
        // is for the guest.
        let start = lamina_abi::hvt::BOOT_INFO_BASE;
        let ranges = [Range {
            start,
            len: guest_end.saturating_sub(start),
        }];
        let read = |address: u64, buf: &mut [u8]| match mem.bytes(address, buf.len() as u64) {
            Ok(bytes) => {
                bytes.copy_to(buf);
                true
            }
            Err(_) => false,
        };
        let pid = self.pid as i32;
        core_dump::write(&mut self.file, &regs, fault.signal, pid, &ranges, read)
            .map_err(failed)?;
        // SAFETY: both strings are NUL-terminated and live for the call;
        // the descriptor is this file's directory, open.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                self.proc_path.as_ptr(),
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        Ok(self.path)
    }
}

/// The registers of `regs` and `sregs` in `user_regs_struct` order.
fn user_regs(regs: &kvm_regs, sregs: &kvm_sregs) -> UserRegs {
    UserRegs {
        r15: regs.r15,
        r14: regs.r14,
        r13: regs.r13,
        r12: regs.r12,
        rbp: regs.rbp,
        rbx: regs.rbx,
        r11: regs.r11,
        r10: regs.r10,
        r9: regs.r9,
        r8: regs.r8,
        rax: regs.rax,
        rcx: regs.rcx,
        rdx: regs.rdx,
        rsi: regs.rsi,
        rdi: regs.rdi,
        orig_rax: u64::MAX,
        rip: regs.rip,
        cs: u64::from(sregs.cs.selector),
        eflags: regs.rflags,
        rsp: regs.rsp,
        ss: u64::from(sregs.ss.selector),
        fs_base: sregs.fs.base,
        gs_base: sregs.gs.base,
        ds: u64::from(sregs.ds.selector),
        es: u64::from(sregs.es.selector),
        fs: u64::from(sregs.fs.selector),
        gs: u64::from(sregs.gs.selector),
    }
}
