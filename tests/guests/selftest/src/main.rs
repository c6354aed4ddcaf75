//! selftest: one test unikernel, many small tests, chosen at boot with
//! `--test=NAME`. The well-behaved ones check a device and exit 0; the
//! hostile ones attack the tender and must be stopped by it, cleanly.
//!
//! | test | expects |
//! |------|---------|
//! | `clock` | monotonic time advances by a sleep, wall time is after 2020 |
//! | `random` | two draws differ |
//! | `block` | a written pattern reads back; past-the-end is refused |
//! | `float` | SSE arithmetic gives the right answer |
//! | `compute` | runs the benchmark loop of `bench/compute_loop.rs` and prints its time |
//! | `panic` | a panic prints its message and exits 255; `panic_caller` calls `panic_here`, which panics, so its backtrace names both |
//! | `exit` | exits with `--status` |
//! | `fault-null` | `fault_caller` calls `fault_here`, which writes to address 0: the tender (spt: its signal handler; hvt: the vCPU's exit) reports the page fault with a backtrace naming both |
//! | `fault-ud2` | the same with an invalid opcode (`ud2`) |
//! | `write-text` | writing to its own code is stopped by the tender |
//! | `bad-pointer` | (hvt) a hypercall with a pointer outside guest memory is refused |
//! | `overflow` | (hvt) a hypercall whose address + length overflows is refused |
//! | `bad-port` | (hvt) an `out` to a port no one serves is refused |
//! | `bad-block` | a block read past the end, made directly through the ABI, is refused |
//! | `syscall` | (spt) a system call outside the seccomp allowlist kills the guest |
#![no_std]
#![no_main]

use lamina::prelude::*;

lamina::devices! {
    /// What the tests use. The disk is needed by `--test=block` only, so the
    /// other tests run without one where the target allows it (unix,
    /// virtio; the Solo5 tenders attach every device the manifest lists).
    pub struct Devices {
        console: Console,
        clock: Clock,
        random: Random,
        storage: Option<Block>,
    }
}

lamina::boot_args! {
    /// selftest
    pub struct Args {
        /// Which test to run.
        pub test: String = "clock",
        /// Exit status for `--test=exit`.
        pub status: u8 = "0",
        /// Rounds of the loop for `--test=compute`.
        pub iterations: u64 = "100000000",
    }
}

async fn selftest<P: Platform>(
    env: Env<P>,
    devices: Devices<P>,
    args: Args,
) -> Result<Exit, String> {
    let console = devices.console.clone();
    let result = match args.test.as_str() {
        "clock" => clock(&env, &devices).await,
        "random" => random(&devices),
        "block" => block(&devices).await,
        "float" => float(),
        "compute" => compute(&env, &devices, args.iterations),
        "panic" => panic_caller(args.iterations),
        "exit" => return Ok(Exit(exit_status(args.status))),
        "fault-null" => fault_caller(Fault::NullWrite),
        "fault-ud2" => fault_caller(Fault::InvalidOpcode),
        hostile => {
            hostile::run(hostile)?;
            Err(format!("the tender let '{hostile}' through"))
        }
    };
    result.map(|()| {
        console.write_line(&format!("selftest {}: ok", args.test));
        Exit::SUCCESS
    })
}

/// Calls [`panic_here`]: the caller a backtrace must show. Its own work
/// (and `#[inline(never)]`) keeps it a frame of its own.
#[inline(never)]
fn panic_caller(rounds: u64) -> Result<(), String> {
    let depth = core::hint::black_box(rounds).min(3);
    panic_here(depth);
    Err(format!("panic_here({depth}) returned"))
}

/// Panics, always: the function a backtrace must name first.
#[inline(never)]
fn panic_here(depth: u64) {
    if core::hint::black_box(depth) < u64::MAX {
        panic!("selftest panics on purpose");
    }
}

/// The status `--test=exit` ends with: a plain function with an
/// argument, where the gdb test breaks and prints `status`.
#[inline(never)]
fn exit_status(status: u8) -> u8 {
    core::hint::black_box(status)
}

/// A fault on purpose, for the tender to explain.
#[derive(Clone, Copy)]
enum Fault {
    /// A write to address 0 (never mapped): a page fault, SIGSEGV on spt.
    NullWrite,
    /// `ud2`: an invalid opcode, SIGILL on spt.
    InvalidOpcode,
}

/// Calls [`fault_here`]: the caller the tender's backtrace must show.
#[inline(never)]
fn fault_caller(fault: Fault) -> Result<(), String> {
    let fault = core::hint::black_box(fault);
    fault_here(fault);
    Err("fault_here returned".into())
}

/// Faults, always: the function the tender's backtrace must name first.
/// In assembly, so that neither the compiler nor a debug build's
/// null-pointer check turns the fault into something else.
#[inline(never)]
fn fault_here(fault: Fault) {
    let address = core::hint::black_box(0usize);
    match fault {
        // SAFETY: none; a write to address 0, which no target maps, must
        // fault and end the guest.
        Fault::NullWrite => unsafe {
            core::arch::asm!("mov qword ptr [{0}], {0}", in(reg) address, options(nostack))
        },
        // SAFETY: `ud2` raises an invalid-opcode exception and touches
        // nothing.
        Fault::InvalidOpcode => unsafe { core::arch::asm!("ud2", options(nostack, nomem)) },
    }
}

async fn clock<P: Platform>(env: &Env<P>, devices: &Devices<P>) -> Result<(), String> {
    let clock = &devices.clock;
    let before = clock.now();
    env.sleep(Duration::from_millis(200)).await;
    let slept = clock.now() - before;
    if !(Duration::from_millis(200)..Duration::from_millis(2000)).contains(&slept) {
        return Err(format!("a 200 ms sleep took {slept:?}"));
    }
    let wall = clock.wall() / 1_000_000_000;
    if wall < 1_577_836_800 {
        return Err(format!("wall clock says {wall} s since 1970, before 2020"));
    }
    devices
        .console
        .write_line(&format!("slept {} us", slept.as_micros()));
    Ok(())
}

fn random<P: Platform>(devices: &Devices<P>) -> Result<(), String> {
    let random = &devices.random;
    let (a, b) = (random.next_u64(), random.next_u64());
    if a == b {
        return Err(format!("two random draws were both {a:#x}"));
    }
    Ok(())
}

async fn block<P: Platform>(devices: &Devices<P>) -> Result<(), String> {
    let disk = devices
        .storage
        .as_ref()
        .ok_or("no block device 'storage' is attached (--block:storage=FILE)")?;
    let info = disk.info();
    let size = info.sector_size as usize;
    let mut pattern = vec![0u8; size * 4];
    devices.random.fill(&mut pattern);
    let last = info.sectors - 4;
    for sector in [0, last / 2, last] {
        disk.write(sector, &pattern)
            .await
            .map_err(|e| format!("write at {sector}: {e}"))?;
        let mut back = vec![0u8; size * 4];
        disk.read(sector, &mut back)
            .await
            .map_err(|e| format!("read at {sector}: {e}"))?;
        if back != pattern {
            return Err(format!("sectors at {sector} read back differently"));
        }
    }
    let mut one = vec![0u8; size];
    if disk.read(info.sectors, &mut one).await != Err(BlockError::OutOfRange) {
        return Err("a read past the end was not refused".into());
    }
    devices.console.write_line(&format!(
        "block: {} sectors of {} bytes",
        info.sectors, size
    ));
    Ok(())
}

fn float() -> Result<(), String> {
    let xs: Vec<f64> = (1..=100)
        .map(|i| core::hint::black_box(i as f64) * 0.5)
        .collect();
    let sum: f64 = xs.iter().sum();
    if sum != 2525.0 {
        return Err(format!("SSE sum is {sum}"));
    }
    Ok(())
}

include!("../../../../bench/compute_loop.rs");

/// Runs the benchmark loop and reports its time (bench/boot.py compares it
/// with the same loop in a host process).
fn compute<P: Platform>(env: &Env<P>, devices: &Devices<P>, iterations: u64) -> Result<(), String> {
    let start = env.now();
    let result = compute_loop(core::hint::black_box(iterations), 0x1234_5678);
    let elapsed = env.now() - start;
    devices.console.write_line(&format!(
        "compute: {iterations} iterations in {} us (result {result:#x})",
        elapsed.as_micros()
    ));
    Ok(())
}

/// Deliberately hostile acts. Each must end the guest from the outside.
mod hostile {
    use lamina::prelude::*;

    #[cfg(lamina_target = "hvt")]
    fn out(port: u16, value: u32) {
        // SAFETY: a deliberate hypercall with an argument the tender must refuse.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack))
        };
    }

    pub fn run(name: &str) -> Result<(), String> {
        match name {
            "write-text" => {
                let text = run as *const u8 as *mut u8;
                // SAFETY: none; this write to our own code must be stopped by
                // the page protections the tender set up.
                unsafe { core::ptr::write_volatile(text, 0xcc) };
                Ok(())
            }
            "write-rodata" => {
                static SEALED: [u8; 8] = *b"rodata!!";
                let rodata = core::hint::black_box(SEALED.as_ptr()) as *mut u8;
                // SAFETY: none; this write to read-only data must be stopped
                // by the page protections.
                unsafe { core::ptr::write_volatile(rodata, 0) };
                Ok(())
            }
            #[cfg(lamina_target = "hvt")]
            "bad-pointer" => {
                out(lamina_abi::hvt::Hypercall::Puts.port(), 0xffff_f000);
                Ok(())
            }
            #[cfg(lamina_target = "hvt")]
            "overflow" => {
                static mut ARG: lamina_abi::hvt::HcPuts = lamina_abi::hvt::HcPuts {
                    data: 0x10_0000,
                    len: u64::MAX - 0xff,
                };
                out(
                    lamina_abi::hvt::Hypercall::Puts.port(),
                    (&raw const ARG) as usize as u32,
                );
                Ok(())
            }
            #[cfg(lamina_target = "hvt")]
            "bad-port" => {
                out(0x5ff, 0);
                Ok(())
            }
            #[cfg(lamina_target = "hvt")]
            "bad-block" => {
                let mut buf = [0u8; 512];
                let mut arg = lamina_abi::hvt::HcBlockRead {
                    handle: 1,
                    offset: u64::MAX - 511,
                    data: buf.as_mut_ptr() as u64,
                    len: 512,
                    ..Default::default()
                };
                out(
                    lamina_abi::hvt::Hypercall::BlockRead.port(),
                    (&raw mut arg) as usize as u32,
                );
                if arg.ret == 0 {
                    return Err("a block read at offset 2^64-512 succeeded".into());
                }
                Err(format!(
                    "refused with {}: the tender survived (expected)",
                    arg.ret
                ))
            }
            #[cfg(lamina_target = "spt")]
            "syscall" => {
                let pid: usize;
                // SAFETY: getpid has no arguments and no memory effects; the
                // seccomp filter must kill us before it runs.
                unsafe {
                    core::arch::asm!("syscall", inlateout("rax") 39usize => pid, lateout("rcx") _, lateout("r11") _, options(nostack))
                };
                Err(format!("getpid() returned {pid}"))
            }
            #[cfg(lamina_target = "spt")]
            "bad-block" => {
                let mut buf = [0u8; 512];
                let ret: isize;
                // SAFETY: a pread64 at an offset past any device; the filter
                // must kill us (offset > capacity - block size).
                unsafe {
                    core::arch::asm!("syscall", inlateout("rax") 17isize => ret, in("rdi") 3usize, in("rsi") buf.as_mut_ptr(), in("rdx") 512usize, in("r10") usize::MAX - 511, lateout("rcx") _, lateout("r11") _, options(nostack))
                };
                Err(format!("pread64 past the end returned {ret}"))
            }
            other => Err(format!("unknown test '{other}' on this target")),
        }
    }
}

lamina::main!(selftest);
