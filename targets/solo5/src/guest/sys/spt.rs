//! The spt ABI: the guest runs inside the tender's process and makes the
//! few Linux system calls the tender's seccomp filter allows, on the
//! descriptors the tender put in the boot info and the manifest.

use super::{BootFacts, DeviceHandle, IoError};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use lamina_abi::spt::{syscall as nr, BootInfo};
use lamina_metal::time::{rdtsc, TscScale};

const CLOCK_REALTIME: usize = 0;
const CLOCK_MONOTONIC: usize = 1;
const TFD_TIMER_ABSTIME: usize = 1;
const EINTR: isize = -4;
const EAGAIN: isize = -11;

/// The tender's epoll and timer descriptors, and the monotonic time at boot.
static FDS: spin::Once<(i32, i32, u64)> = spin::Once::new();

/// A raw system call with up to six arguments, returning `-errno` on error.
///
/// # Safety
/// The arguments must be valid for system call `n`: pointers must point to
/// memory of the size the call reads or writes.
unsafe fn syscall(n: u32, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments; `syscall` clobbers only
    // rcx and r11 besides rax, which are declared.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret,
             in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[repr(C)]
#[derive(Default)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

fn clock(clock: usize) -> u64 {
    let mut ts = Timespec::default();
    // SAFETY: clock_gettime writes one timespec to the valid `ts`.
    unsafe {
        syscall(
            nr::CLOCK_GETTIME,
            [clock, &mut ts as *mut Timespec as usize, 0, 0, 0, 0],
        )
    };
    (ts.sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.nsec as u64)
}

/// Reads the tender's boot info.
///
/// # Safety
/// `boot_info` must be the pointer the tender passed in `%rdi`.
pub unsafe fn read_boot_info(boot_info: usize) -> BootFacts {
    // SAFETY: the caller passes the tender's pointer to a BootInfo.
    let info = unsafe { core::ptr::read_volatile(boot_info as *const BootInfo) };
    FDS.call_once(|| (info.epollfd, info.timerfd, clock(CLOCK_MONOTONIC)));
    TSC_START.call_once(rdtsc);
    BootFacts {
        mem_size: info.mem_size,
        kernel_end: info.kernel_end,
        cmdline: info.cmdline as usize,
        mft: info.mft as usize,
        tsc_valid: true,
    }
}

/// Writes to standard output, the tender's console.
pub fn console_write(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match write_from(nr::WRITE, 1, bytes, 0) {
            EINTR => continue,
            n if n <= 0 => return, // the console drops what it cannot write
            n => bytes = &bytes[n as usize..],
        }
    }
}

/// The trace file's descriptor, when the tender offers one (its
/// `--trace=FILE`, in the manifest's reserved entry).
static TRACE_FD: spin::Once<i32> = spin::Once::new();

/// Takes the trace file the tender offered: the guest writes its recording
/// there ([`trace_sink`]).
pub fn offer_trace_fd(fd: i32) {
    TRACE_FD.call_once(|| fd);
}

/// Where the recording goes: the offered trace file, whose descriptor the
/// tender's sandbox lets the guest write; None without one (Solo5's
/// tender, or no `--trace`), where writing would be fatal.
pub fn trace_sink() -> Option<fn(&[u8])> {
    TRACE_FD.get().map(|_| trace_write as fn(&[u8]))
}

fn trace_write(mut bytes: &[u8]) {
    let Some(&fd) = TRACE_FD.get() else { return };
    while !bytes.is_empty() {
        match write_from(nr::WRITE, fd, bytes, 0) {
            EINTR => continue,
            n if n <= 0 => return, // a full disk loses the trace, not the guest
            n => bytes = &bytes[n as usize..],
        }
    }
}

/// spt has no other way to a trace: the guest writes its own.
pub fn trace_register(_ring: &'static [core::sync::atomic::AtomicU64]) -> bool {
    false
}

/// The monotonic clock counts from the tender's `CLOCK_MONOTONIC` at boot.
pub fn clock_offset_ns() -> i64 {
    boot_monotonic() as i64
}

fn boot_monotonic() -> u64 {
    FDS.get().map(|f| f.2).unwrap_or(0)
}

/// TSC at boot.
static TSC_START: spin::Once<u64> = spin::Once::new();
/// Whether the CPU's TSC is invariant (usable as a clock). Asked only when
/// calibration is due: CPUID traps on a virtualised host (~15 us each
/// here), and a short-lived guest never needs the answer.
static TSC_INVARIANT: spin::Once<bool> = spin::Once::new();
/// TSC scale, measured against CLOCK_MONOTONIC once enough time has passed.
static TSC_SCALE: spin::Once<TscScale> = spin::Once::new();
/// How long the clock runs on system calls before the TSC is calibrated:
/// long enough for a frequency error of a few parts per million.
const CALIBRATION_NS: u64 = 200_000_000;

fn invariant_tsc() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Nanoseconds since boot. A system call costs far more than reading the
/// TSC, and the runtime reads the clock many times per round, so after a
/// calibration period on CLOCK_MONOTONIC the clock is the invariant TSC
/// scaled by the measured frequency (continuous at the switch). CPUs
/// without an invariant TSC keep the system call.
pub fn monotonic_ns() -> u64 {
    let Some(&tsc_start) = TSC_START.get() else {
        return clock(CLOCK_MONOTONIC).saturating_sub(boot_monotonic());
    };
    if let Some(scale) = TSC_SCALE.get() {
        return scale.to_nanos(rdtsc().wrapping_sub(tsc_start));
    }
    let ns = clock(CLOCK_MONOTONIC).saturating_sub(boot_monotonic());
    if ns >= CALIBRATION_NS && *TSC_INVARIANT.call_once(invariant_tsc) {
        let ticks = rdtsc().wrapping_sub(tsc_start);
        let hz = (u128::from(ticks) * 1_000_000_000 / u128::from(ns)) as u64;
        if let Some(scale) = TscScale::new(hz) {
            TSC_SCALE.call_once(|| scale);
        }
    }
    ns
}

/// Wall-clock nanoseconds since the epoch.
pub fn wall_ns() -> u64 {
    clock(CLOCK_REALTIME)
}

/// `struct epoll_event`, packed on x86_64.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
struct EpollEvent {
    events: u32,
    data: u64,
}

/// Whether the timerfd may hold a deadline (expired or not).
static TIMER_ARMED: AtomicBool = AtomicBool::new(false);

/// Sets the timerfd to expire at `absolute` monotonic ns; 0 disarms it.
fn arm_timer(timerfd: i32, absolute: u64) {
    let spec = [
        0i64,
        0,
        (absolute / 1_000_000_000) as i64,
        (absolute % 1_000_000_000) as i64,
    ];
    // SAFETY: timerfd_settime reads one itimerspec from `spec`.
    unsafe {
        syscall(
            nr::TIMERFD_SETTIME,
            [
                timerfd as usize,
                TFD_TIMER_ABSTIME,
                spec.as_ptr() as usize,
                0,
                0,
                0,
            ],
        )
    };
}

/// Nothing to kick on spt: frames leave at once.
pub fn kick_if_pending() {}

/// Frames queued for the tender and not yet taken: never on spt, where
/// frames leave at once.
pub fn unsent() -> Option<super::Unsent> {
    None
}

/// No statistics of the guest's polls on spt, whose guest never polls
/// (it has no receive queues to look at).
pub fn note_poll(_ns: u64, _caught: bool) {}

/// The set of devices with input without a system call: never on spt.
pub fn ready_now() -> Option<u64> {
    None
}

/// Blocks until a network device has input or `deadline` (monotonic ns since
/// boot) passes; returns the ready device handles.
pub fn wait(deadline: Option<u64>) -> u64 {
    let Some(&(epollfd, timerfd, boot)) = FDS.get() else {
        return 0;
    };
    let now = monotonic_ns();
    let timeout_ms: isize = match deadline {
        Some(d) if d <= now => 0, // only look
        Some(d) => {
            // Arm the tender's timerfd at the absolute deadline (which also
            // clears an earlier expiry that was never read).
            arm_timer(timerfd, d.saturating_add(boot));
            TIMER_ARMED.store(true, Ordering::Relaxed);
            -1
        }
        None => {
            // An expired timer stays readable until re-armed: left armed, it
            // would wake every wait at once and the guest would spin.
            if TIMER_ARMED.swap(false, Ordering::Relaxed) {
                arm_timer(timerfd, 0);
            }
            -1
        }
    };
    let mut events = [EpollEvent::default(); 16];
    loop {
        // SAFETY: epoll_pwait writes at most 16 events into `events`.
        let n = unsafe {
            syscall(
                nr::EPOLL_PWAIT,
                [
                    epollfd as usize,
                    events.as_mut_ptr() as usize,
                    events.len(),
                    timeout_ms as usize,
                    0,
                    0,
                ],
            )
        };
        if n == EINTR {
            continue;
        }
        let mut ready = 0u64;
        for event in events.iter().take(n.max(0) as usize) {
            let data = event.data;
            if data < 64 {
                ready |= 1 << data;
            }
        }
        return ready;
    }
}

/// Stops the guest with `status`.
pub fn halt(status: i32) -> ! {
    loop {
        // SAFETY: exit_group takes a status and does not return.
        unsafe { syscall(nr::EXIT_GROUP, [status as usize, 0, 0, 0, 0, 0]) };
    }
}

fn io_result(n: isize, expected: usize) -> Result<(), IoError> {
    match n {
        EAGAIN => Err(IoError::Again),
        n if n >= 0 && n as usize == expected => Ok(()),
        _ => Err(IoError::Failed),
    }
}

/// `n` (READ or PREAD64) on `fd` into `buf`, at `offset` for PREAD64.
fn read_into(n: u32, fd: i32, buf: &mut [u8], offset: u64) -> isize {
    // SAFETY: read and pread64 write at most `buf.len()` bytes into `buf`.
    unsafe {
        syscall(
            n,
            [
                fd as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                offset as usize,
                0,
                0,
            ],
        )
    }
}

/// `n` (WRITE or PWRITE64) of `buf` on `fd`, at `offset` for PWRITE64.
fn write_from(n: u32, fd: i32, buf: &[u8], offset: u64) -> isize {
    // SAFETY: write and pwrite64 read `buf.len()` bytes from `buf`.
    unsafe {
        syscall(
            n,
            [
                fd as usize,
                buf.as_ptr() as usize,
                buf.len(),
                offset as usize,
                0,
                0,
            ],
        )
    }
}

/// Reads `buf.len()` bytes of a block device at byte `offset`.
pub fn block_read(device: DeviceHandle, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
    let len = buf.len();
    io_result(read_into(nr::PREAD64, device.fd, buf, offset), len)
}

/// Writes `buf` to a block device at byte `offset`.
pub fn block_write(device: DeviceHandle, offset: u64, buf: &[u8]) -> Result<(), IoError> {
    io_result(write_from(nr::PWRITE64, device.fd, buf, offset), buf.len())
}

/// Makes the writes completed on a block device durable: `fdatasync(2)`.
pub fn block_flush(device: DeviceHandle) -> Result<(), IoError> {
    // SAFETY: fdatasync takes a descriptor and touches no memory.
    let ret = unsafe { syscall(nr::FDATASYNC, [device.fd as usize, 0, 0, 0, 0, 0]) };
    io_result(ret, 0)
}

/// Whether the tender moves the frames of `device` on a thread of its own
/// while the guest runs: never on spt, where the guest reads and writes
/// the tap itself.
pub fn net_in_background(_: DeviceHandle) -> bool {
    false
}

/// Receives a frame if one is waiting.
pub fn net_read(device: DeviceHandle, buf: &mut [u8]) -> Result<Option<usize>, IoError> {
    match read_into(nr::READ, device.fd, buf, 0) {
        EAGAIN | EINTR | 0 => Ok(None),
        n if n > 0 => Ok(Some(n as usize)),
        _ => Err(IoError::Failed),
    }
}

/// `struct iovec`.
#[repr(C)]
struct IoVec {
    base: usize,
    len: usize,
}

/// Receives a frame behind its virtio-net header, if one is waiting: the
/// header goes to `header`, the frame to `buf`; returns the frame's length.
/// A read shorter than the header is an error.
pub fn net_read_with_header(
    device: DeviceHandle,
    header: &mut [u8],
    buf: &mut [u8],
) -> Result<Option<usize>, IoError> {
    let iov = [
        IoVec {
            base: header.as_mut_ptr() as usize,
            len: header.len(),
        },
        IoVec {
            base: buf.as_mut_ptr() as usize,
            len: buf.len(),
        },
    ];
    // SAFETY: readv writes at most `header.len()` bytes into `header` and
    // `buf.len()` into `buf`, both valid for the call.
    let n = unsafe {
        syscall(
            nr::READV,
            [device.fd as usize, iov.as_ptr() as usize, 2, 0, 0, 0],
        )
    };
    match n {
        EAGAIN | EINTR | 0 => Ok(None),
        n if n >= header.len() as isize => Ok(Some(n as usize - header.len())),
        _ => Err(IoError::Failed),
    }
}

/// Sends a frame.
pub fn net_write(device: DeviceHandle, frame: &[u8]) -> Result<(), IoError> {
    io_result(write_from(nr::WRITE, device.fd, frame, 0), frame.len())
}
