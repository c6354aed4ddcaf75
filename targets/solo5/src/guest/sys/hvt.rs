//! The hvt ABI: every call is an `outl` of the guest-physical address of
//! its argument struct to the hypercall's port. Guest memory is
//! identity-mapped, so a pointer is its own guest-physical address.

use super::{BootFacts, DeviceHandle, IoError};
use crate::time::TscScale;
use core::arch::asm;
use lamina_abi::hvt::*;
use lamina_abi::Solo5Result;

/// TSC value and scale at boot: monotonic time counts from here.
static CLOCK: spin::Once<(u64, TscScale)> = spin::Once::new();

#[inline(always)]
fn hypercall<T>(call: Hypercall, arg: &mut T) {
    let gpa = arg as *mut T as usize;
    // SAFETY: `outl` hands the tender the address of `arg`, which lives on
    // the stack below 4 GiB (guest memory is at most 4 GiB) and is valid for
    // the whole call; the tender writes only `arg`'s OUT fields before the
    // instruction completes. The asm is not `nomem`, so the compiler neither
    // caches `arg` across it nor drops the writes before it.
    unsafe {
        asm!("out dx, eax", in("dx") call.port(), in("eax") gpa as u32, options(nostack, preserves_flags))
    };
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads the time-stamp counter and has no other effect.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Reads the tender's boot info.
///
/// # Safety
/// `boot_info` must be the pointer the tender passed in `%rdi`.
pub unsafe fn read_boot_info(boot_info: usize) -> BootFacts {
    // SAFETY: the caller passes the tender's pointer to a BootInfo.
    let info = unsafe { core::ptr::read_volatile(boot_info as *const BootInfo) };
    let scale = TscScale::new(info.cpu_cycle_freq);
    CLOCK.call_once(|| {
        (
            rdtsc(),
            scale.unwrap_or(TscScale::new(1_000_000_000).expect("1 GHz is valid")),
        )
    });
    BootFacts {
        mem_size: info.mem_size,
        kernel_end: info.kernel_end,
        cmdline: info.cmdline as usize,
        mft: info.mft as usize,
        tsc_valid: scale.is_some(),
    }
}

/// Writes to the console in one hypercall.
pub fn console_write(bytes: &[u8]) {
    let mut arg = HcPuts {
        data: bytes.as_ptr() as u64,
        len: bytes.len() as u64,
    };
    hypercall(Hypercall::Puts, &mut arg);
}

/// Nanoseconds since boot, from the TSC.
pub fn monotonic_ns() -> u64 {
    match CLOCK.get() {
        Some((start, scale)) => scale.to_nanos(rdtsc().wrapping_sub(*start)),
        None => 0,
    }
}

/// Wall-clock nanoseconds since the epoch, from the tender.
pub fn wall_ns() -> u64 {
    let mut arg = HcWalltime::default();
    hypercall(Hypercall::Walltime, &mut arg);
    arg.nsecs
}

/// Blocks until a network device has input or `deadline` (monotonic ns) passes;
/// returns the set of ready device handles. `None` waits without deadline.
pub fn wait(deadline: Option<u64>) -> u64 {
    // A day: long enough to mean "no deadline", short enough for any timerfd.
    const FOREVER: u64 = 86_400 * 1_000_000_000;
    let timeout = match deadline {
        Some(d) => d.saturating_sub(monotonic_ns()),
        None => FOREVER,
    };
    let mut arg = HcPoll {
        timeout_nsecs: timeout,
        ..Default::default()
    };
    hypercall(Hypercall::Poll, &mut arg);
    arg.ready_set
}

/// Stops the guest with `status`.
pub fn halt(status: i32) -> ! {
    let mut arg = HcHalt {
        cookie: 0,
        exit_status: status,
        _pad: 0,
    };
    loop {
        hypercall(Hypercall::Halt, &mut arg);
    }
}

fn result(ret: i32) -> Result<(), IoError> {
    match Solo5Result::from_raw(ret) {
        Solo5Result::Ok => Ok(()),
        Solo5Result::Again => Err(IoError::Again),
        _ => Err(IoError::Failed),
    }
}

/// Reads `buf.len()` bytes of a block device at byte `offset`.
pub fn block_read(device: DeviceHandle, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
    let mut arg = HcBlockRead {
        handle: device.index,
        offset,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::BlockRead, &mut arg);
    result(arg.ret)
}

/// Writes `buf` to a block device at byte `offset`.
pub fn block_write(device: DeviceHandle, offset: u64, buf: &[u8]) -> Result<(), IoError> {
    let mut arg = HcBlockWrite {
        handle: device.index,
        offset,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::BlockWrite, &mut arg);
    result(arg.ret)
}

/// Receives a frame if one is waiting.
pub fn net_read(device: DeviceHandle, buf: &mut [u8]) -> Result<Option<usize>, IoError> {
    let mut arg = HcNetRead {
        handle: device.index,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::NetRead, &mut arg);
    match result(arg.ret) {
        Ok(()) => Ok(Some((arg.len as usize).min(buf.len()))),
        Err(IoError::Again) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends a frame.
pub fn net_write(device: DeviceHandle, frame: &[u8]) -> Result<(), IoError> {
    let mut arg = HcNetWrite {
        handle: device.index,
        data: frame.as_ptr() as u64,
        len: frame.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::NetWrite, &mut arg);
    result(arg.ret)
}
