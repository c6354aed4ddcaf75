//! `kill -9` of the tender while lamina-store commits, on spt and hvt (the
//! short version of `bench/crash.py`): the `storeload` guest runs its
//! deterministic write-heavy workload (sets of up to 1 MiB, removes,
//! batches, with checkpoints on the way) and prints `ack I` after each
//! durable commit; the test kills the tender at a random instant 20-150 ms
//! into the writes, boots again with the last acknowledged step, and the
//! guest checks every key and value against what the workload must have
//! left, then writes on. After the kills, one clean boot verifies, and a
//! boot told a wrong (older) step must report the difference: the check
//! can fail.
//!
//! A tender killed this way loses nothing the host page cache holds, so
//! this exercises the store's mount and replay of whatever the commit under
//! way had written; losing unflushed writes (power loss) is covered by
//! `store/tests/crash.rs` over a fault-injecting device.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const APP: &str = "tests/guests/storeload";
const KILLS: usize = 20;

/// What the host knows between boots.
#[derive(Debug, Default)]
struct Known {
    /// The last step the guest acknowledged.
    acked: Option<u64>,
    /// The guest said it formatted the store.
    formatted: bool,
}

/// What one boot printed.
struct Boot {
    console: Vec<String>,
    /// The tender was still running when killed.
    killed: bool,
}

impl Boot {
    fn verdict(&self) -> Option<&str> {
        self.console
            .iter()
            .find(|l| l.starts_with("storeload verify: "))
            .map(String::as_str)
    }

    fn acks(&self) -> impl Iterator<Item = u64> + '_ {
        self.console
            .iter()
            .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
    }

    /// The generation the store mounted with.
    fn generation(&self) -> Option<u64> {
        self.console.iter().find_map(|l| {
            l.split("(generation ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
    }
}

/// Boots the guest on `target` over `disk`; if `kill_after` is given,
/// kills the tender with SIGKILL that long after the verdict, else waits
/// for it to exit (within a minute).
fn boot(
    target: &str,
    disk: &Path,
    known: &Known,
    extra: &[&str],
    kill_after: Option<Duration>,
) -> Boot {
    let mut command = Command::new(tender(target));
    command
        .arg("--mem=64")
        .arg(format!("--block:storage={}", disk.display()))
        .arg(image(target, APP))
        .args(["--mode=crash", "--seed=11"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(acked) = known.acked {
        command.arg(format!("--verify-through={acked}"));
    }
    if known.formatted {
        command.arg("--formatted");
    }
    let mut child = command.spawn().unwrap();
    let (lines, console) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let start = Instant::now();
    // Until the verdict (or the end of the output).
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("storeload verify: "))
    {
        match console.recv_timeout(Duration::from_secs(60).saturating_sub(start.elapsed())) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let mut killed = false;
    let verdict = seen.iter().any(|l| l.starts_with("storeload verify: "));
    if let Some(delay) = kill_after.filter(|_| verdict) {
        std::thread::sleep(delay);
        killed = child.try_wait().unwrap().is_none();
    }
    if kill_after.is_some() || !verdict {
        // SIGKILL (a no-op if it has exited).
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(console.try_iter());
    if !killed {
        eprintln!("--- {target}: exited {status}:\n{}", seen.join("\n"));
    }
    Boot {
        console: seen,
        killed,
    }
}

/// What the run of one target found.
#[derive(Debug)]
struct Run {
    acked: u64,
    checkpoints_seen: u64,
}

/// `KILLS` boots killed during the workload on `target`, then a clean
/// verifying boot and one that must fail.
fn kill_and_verify(target: &str, delays: &mut u64) -> Run {
    let disk = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    disk.as_file().set_len(128 << 20).unwrap();
    let mut known = Known::default();
    let mut generations = Vec::new();
    for kill in 0..KILLS {
        // xorshift: 20-150 ms, from the run's seed.
        *delays ^= *delays << 13;
        *delays ^= *delays >> 7;
        *delays ^= *delays << 17;
        let delay = Duration::from_millis(20 + *delays % 131);
        let boot = boot(target, disk.path(), &known, &[], Some(delay));
        let verdict = boot.verdict().unwrap_or("no verdict");
        assert!(
            verdict.starts_with("storeload verify: ok"),
            "{target}, boot {kill} ({known:?}): {verdict}\n{}",
            boot.console.join("\n")
        );
        assert!(
            boot.killed,
            "{target}, boot {kill}: the guest stopped by itself:\n{}",
            boot.console.join("\n")
        );
        generations.extend(boot.generation());
        known.formatted |= boot.console.iter().any(|l| l == "storeload: formatted");
        known.acked = boot.acks().max().or(known.acked);
        eprintln!(
            "{target} boot {kill}: {verdict}; killed {delay:?} later, acked through {:?}",
            known.acked
        );
    }
    let acked = known.acked.expect("some step acknowledged");
    let clean = boot(target, disk.path(), &known, &["--steps=0"], None);
    let verdict = clean.verdict().unwrap_or("no verdict");
    let through = format!("storeload verify: ok through step {acked}");
    assert!(
        verdict.starts_with(&format!("{through} (")) || verdict.starts_with(&format!("{through},")),
        "{target}: {verdict}"
    );
    // Told five steps fewer than it acknowledged, the guest finds the
    // store holds more than that: the check is real.
    let older = Known {
        acked: Some(acked.saturating_sub(5)),
        formatted: true,
    };
    let wrong = boot(target, disk.path(), &older, &["--steps=0"], None);
    let verdict = wrong.verdict().unwrap_or("no verdict");
    assert!(
        verdict.starts_with("storeload verify: FAILED after step"),
        "{target}: {verdict}"
    );
    let checkpoints_seen =
        generations.iter().max().unwrap_or(&0) - generations.iter().min().unwrap_or(&0);
    Run {
        acked,
        checkpoints_seen,
    }
}

#[test]
fn every_acknowledged_write_survives_kill_9_of_the_tender() {
    let start = Instant::now();
    let mut delays = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill delays from seed {delays}");
    for target in unikernel_targets("kill -9 during store writes") {
        let run = kill_and_verify(target, &mut delays);
        eprintln!(
            "{target}: {KILLS} kills, {run:?}, {:?} so far",
            start.elapsed()
        );
        assert!(
            run.acked >= KILLS as u64,
            "{target}: too few writes: {run:?}"
        );
        assert!(
            run.checkpoints_seen > 0,
            "{target}: no checkpoint between the boots: {run:?}"
        );
    }
}
