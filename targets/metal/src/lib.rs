//! # lamina-metal: what every bare-metal runtime shares
//!
//! A Lamina unikernel is one `#![no_std]` ELF image: the application, the
//! libraries it uses and a runtime for its target. Each target's runtime
//! keeps only what is its own: the boot protocol, the hypercalls or the
//! drivers, and the console (`lamina-solo5` for spt and hvt, `lamina-virtio`
//! for virtio). Everything else is here, written once:
//!
//! | module | what |
//! |--------|------|
//! | [`Machine`] | what a target supplies: console, clocks, exit |
//! | [`app`]     | command line to arguments, logger, `main` on the executor to its exit status |
//! | [`devices`] | the console and clock over a [`Machine`], the per-name stack cache |
//! | [`random`]  | the ChaCha20 CSPRNG and its seed |
//! | [`entropy`] | the seed from RDSEED or RDRAND |
//! | [`time`]    | the TSC, TSC ticks to nanoseconds, a monotonic clock on them |
//! | [`panic_handler!`] | the panic handler (and `_Unwind_Resume`) for a [`Machine`] |
//! | [`backtrace`] | return addresses walked through frame pointers, for the panic handler |
//! | [`heap`]    | the global allocator over the RAM the boot protocol reports |
//! | `mem`       | `memcpy` and friends, which `core` expects from a libc |
//! | `libc`      | `syscall(SYS_getrandom)`, answered from [`random`], for crates that reach for the OS's randomness |
//!
//! `mem`, `libc` and the global allocator exist only in a guest (`--cfg
//! lamina_guest`, set by `lamina build` for every unikernel target alike,
//! so that one build of this crate and of everything below it serves
//! them all): on the host they would replace the C library's.
//! The rest is plain code, unit-tested on the host.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod app;
pub mod backtrace;
pub mod devices;
pub mod entropy;
pub mod random;
pub mod time;
pub mod trace;

pub mod heap;
#[cfg(lamina_guest)]
mod libc;
#[cfg(lamina_guest)]
mod mem;

/// What a target's runtime supplies to the shared one: the few facts that
/// differ between a Solo5 tender, a PC under a VMM and whatever comes next.
/// One type per target implements it; an image contains exactly one.
pub trait Machine: 'static {
    /// The target's name, as `lamina build --target` spells it.
    const TARGET: &'static str;
    /// Exit status of a panic (Solo5's abort status where the target can
    /// carry it).
    const PANIC_STATUS: i32;
    /// Writes to the console, whole: one call per line or message.
    fn console_write(bytes: &[u8]);
    /// Nanoseconds since boot, never going back.
    fn monotonic_ns() -> u64;
    /// Nanoseconds since the Unix epoch, from the slow source (a hypercall,
    /// the CMOS clock): read once, then advanced by [`Machine::monotonic_ns`].
    fn wall_clock_ns() -> u64;
    /// Stops the unikernel with `status`.
    fn exit(status: i32) -> !;
    /// Where the guest writes its own trace recording ([`trace`]), if it
    /// does: None when the host reads the ring from guest memory instead.
    fn trace_sink() -> Option<fn(&[u8])> {
        None
    }
    /// Tells the host where the trace ring is, for a machine without a
    /// [`trace_sink`](Machine::trace_sink); false if the host cannot read one.
    fn trace_register(_ring: &'static [core::sync::atomic::AtomicU64]) -> bool {
        false
    }
    /// Nanoseconds to add to [`Machine::monotonic_ns`] for the host's
    /// `CLOCK_MONOTONIC`, where the guest knows it (the header of a
    /// recording it writes itself); 0 where it does not.
    fn clock_offset_ns() -> i64 {
        0
    }
}

/// Reports a boot failure on `M`'s console and stops with status 1.
pub fn fail<M: Machine>(why: &str) -> ! {
    M::console_write(b"lamina: cannot boot: ");
    M::console_write(why.as_bytes());
    M::console_write(b"\n");
    M::exit(1)
}

/// What a panic does on `M`: prints its message and location, then the
/// return addresses of the stack (see [`backtrace`]; `lamina run` names
/// them), and stops with [`Machine::PANIC_STATUS`]. Nothing hangs, nothing
/// unwinds, nothing allocates.
pub fn panic<M: Machine>(info: &core::panic::PanicInfo) -> ! {
    M::console_write(lamina_core::boot::PanicLine::new(info).as_bytes());
    backtrace::print(M::console_write);
    // What led up to the panic is what a trace is for.
    trace::drain();
    M::exit(M::PANIC_STATUS)
}

/// Defines the image's `#[panic_handler]` (see [`panic`]) and
/// `_Unwind_Resume` for the target's [`Machine`]. A target's runtime invokes
/// it once, in its guest-only code: an image has one panic handler, and it
/// needs the target's console and exit.
#[macro_export]
macro_rules! panic_handler {
    ($machine:ty) => {
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::panic::<$machine>(info)
        }

        /// Referenced by cleanup paths in the prebuilt `alloc`, which was
        /// compiled with unwinding. With `panic = "abort"` nothing unwinds,
        /// so it is never called; if it were, stopping is the only correct
        /// thing to do.
        #[unsafe(no_mangle)]
        extern "C" fn _Unwind_Resume() -> ! {
            <$machine as $crate::Machine>::console_write(b"lamina: unwinding is not supported\n");
            <$machine as $crate::Machine>::exit(<$machine as $crate::Machine>::PANIC_STATUS)
        }
    };
}
