//! disk: block device checks and a benchmark on the device `storage`, on
//! any target.
//!
//! | `--mode=` | what |
//! |-----------|------|
//! | `check` | the Block conformance suite (overwrites the device) |
//! | `write` | writes a pattern (`--seed`) over the first `--bytes` of the device, flushes, says `disk write: done` |
//! | `verify` | reads them back: `disk verify: ok` or what differs |
//! | `bench` | `--pattern=seq-read\|seq-write\|rand-read\|rand-write`: `--ops` transfers of `--io` bytes within the first `--bytes`, timed |
//!
//! The benchmark's writes are not flushed (as fio's default, which
//! `bench/store.py` compares against); it prints
//! `disk bench PATTERN: OPS ops of IO bytes in NS ns`.
#![no_std]
#![no_main]

use lamina::prelude::*;
use lamina_conformance::{block, pattern};

lamina::devices! {
    /// The device under test.
    pub struct Devices {
        console: Console,
        clock: Clock,
        storage: Block,
    }
}

lamina::boot_args! {
    /// disk
    pub struct Args {
        /// check, write, verify or bench.
        pub mode: String = "check",
        /// Bytes of the device that `write`, `verify` and `bench` use.
        pub bytes: u64 = "1048576",
        /// What varies the pattern of `write` and `verify`.
        pub seed: u8 = "1",
        /// The benchmark's access pattern.
        pub pattern: String = "seq-read",
        /// Bytes per benchmark transfer.
        pub io: u64 = "4096",
        /// Benchmark transfers.
        pub ops: u64 = "10000",
    }
}

async fn disk<P: Platform>(_env: Env<P>, devices: Devices<P>, args: Args) -> Result<Exit, String> {
    let console = devices.console;
    let disk = devices.storage;
    let info = disk.info();
    let size = info.sector_size as u64;
    console.write_line(&format!(
        "disk: {} sectors of {} bytes",
        info.sectors, info.sector_size
    ));
    let span = |what: &str, bytes: u64| {
        if bytes == 0 || !bytes.is_multiple_of(size) || bytes > info.capacity() {
            Err(format!(
                "--{what}={bytes}: not a whole number of {size}-byte sectors within the {}-byte device",
                info.capacity()
            ))
        } else {
            Ok(bytes)
        }
    };
    match args.mode.as_str() {
        "check" => {
            let report = block::run(&disk).await;
            console.write_line(&format!("{report}"));
            Ok(if report.passed() {
                Exit::SUCCESS
            } else {
                Exit(1)
            })
        }
        "write" => {
            let bytes = span("bytes", args.bytes)?;
            let data = pattern(bytes as usize, args.seed);
            disk.write(0, &data)
                .await
                .map_err(|e| format!("write: {e}"))?;
            disk.flush().await.map_err(|e| format!("flush: {e}"))?;
            console.write_line("disk write: done");
            Ok(Exit::SUCCESS)
        }
        "verify" => {
            let bytes = span("bytes", args.bytes)?;
            let mut back = vec![0u8; bytes as usize];
            disk.read(0, &mut back)
                .await
                .map_err(|e| format!("read: {e}"))?;
            match back
                .iter()
                .zip(pattern(bytes as usize, args.seed))
                .position(|(a, b)| *a != b)
            {
                None => {
                    console.write_line("disk verify: ok");
                    Ok(Exit::SUCCESS)
                }
                Some(at) => {
                    console.write_line(&format!("disk verify: differs at byte {at}"));
                    Ok(Exit(1))
                }
            }
        }
        "bench" => {
            bench(
                &console,
                &devices.clock,
                &disk,
                &args,
                span("bytes", args.bytes)?,
                span("io", args.io)?,
            )
            .await
        }
        other => Err(format!(
            "--mode={other}: expected check, write, verify or bench"
        )),
    }
}

/// Times `args.ops` transfers of `io` bytes within the first `bytes`.
async fn bench<C: Console, K: Clock, B: Block>(
    console: &C,
    clock: &K,
    disk: &B,
    args: &Args,
    bytes: u64,
    io: u64,
) -> Result<Exit, String> {
    let size = disk.info().sector_size as u64;
    let (write, random) = match args.pattern.as_str() {
        "seq-read" => (false, false),
        "seq-write" => (true, false),
        "rand-read" => (false, true),
        "rand-write" => (true, true),
        other => {
            return Err(format!(
                "--pattern={other}: expected seq-read, seq-write, rand-read or rand-write"
            ))
        }
    };
    if io > bytes {
        return Err(format!("--io={io} is more than --bytes={bytes}"));
    }
    let slots = bytes / io;
    let mut buf = pattern(io as usize, 3);
    // xorshift64: the same offsets every run, no Random device needed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let start = clock.now();
    for op in 0..args.ops {
        let slot = if random {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % slots
        } else {
            op % slots
        };
        let sector = slot * io / size;
        let result = if write {
            disk.write(sector, &buf).await
        } else {
            disk.read(sector, &mut buf).await
        };
        result.map_err(|e| format!("{} at sector {sector}: {e}", args.pattern))?;
    }
    let ns = clock.now().saturating_duration_since(start).as_nanos();
    console.write_line(&format!(
        "disk bench {}: {} ops of {io} bytes in {ns} ns",
        args.pattern, args.ops
    ));
    Ok(Exit::SUCCESS)
}

lamina::main!(disk);
