//! The PC's legacy devices through port I/O: the 16550 UART (console), the
//! PIT (to calibrate the TSC), the CMOS RTC (wall clock), QEMU's
//! isa-debug-exit (power off with a status) and dword port access for PCI
//! configuration space.

use crate::rtc::{from_bcd, RtcTime};
use core::arch::asm;
use lamina_metal::time::{TscClock, TscScale};

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the legacy devices named in this module only; it
    // touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a dword to an I/O port (PCI configuration mechanism #1).
pub fn outl(port: u16, value: u32) {
    // SAFETY: port I/O to the PCI configuration ports only (see
    // `virtio::bus`); it touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a dword from an I/O port.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `outl`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}

pub use lamina_metal::time::rdtsc;

/// The first serial port.
const COM1: u16 = 0x3f8;

/// Puts the UART in polled mode: no interrupts, 8N1, FIFOs on.
pub fn uart_init() {
    outb(COM1 + 1, 0x00); // IER: no interrupts
    outb(COM1 + 3, 0x80); // LCR: DLAB to set the divisor
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1, DLAB off
    outb(COM1 + 2, 0x07); // FIFO on and cleared
}

/// Writes bytes to the serial console, waiting for the transmitter holding
/// register to be empty (LSR bit 5, THRE) before each.
pub fn uart_write(bytes: &[u8]) {
    for &b in bytes {
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

/// I/O port of QEMU's debug console (`isa-debugcon`), where a traced
/// guest writes its recording: a plain byte sink, with no UART to wait on.
pub const DEBUGCON: u16 = 0x402;

/// Writes bytes to QEMU's debug console (nothing happens without one).
pub fn debugcon_write(bytes: &[u8]) {
    for &b in bytes {
        outb(DEBUGCON, b);
    }
}

/// PIT input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// PIT ticks to measure the TSC against: 10 ms.
const CALIBRATION_TICKS: u64 = PIT_HZ / 100;

fn pit_read() -> u16 {
    outb(0x43, 0x00); // latch channel 0
    let lo = inb(0x40);
    let hi = inb(0x40);
    u16::from_le_bytes([lo, hi])
}

/// The TSC's frequency: counted against the PIT's channel 0 for 10 ms
/// (free-running in mode 2; interrupts stay off, so its IRQ goes nowhere),
/// else from CPUID leaves 0x15/0x16. `None` when neither is available.
pub fn tsc_hz() -> Option<u64> {
    outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2, binary
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    let mut prev = pit_read();
    let mut ticks = 0u64;
    let mut unchanged = 0u32;
    let start = rdtsc();
    while ticks < CALIBRATION_TICKS {
        let now = pit_read();
        let delta = prev.wrapping_sub(now) as u64;
        if delta == 0 {
            unchanged += 1;
            if unchanged > 1_000_000 {
                return cpuid_tsc_hz(); // no PIT here
            }
        }
        ticks += delta;
        prev = now;
    }
    let cycles = rdtsc() - start;
    Some((cycles as u128 * PIT_HZ as u128 / ticks as u128) as u64)
        .filter(|&hz| TscScale::new(hz).is_some())
}

fn cpuid_tsc_hz() -> Option<u64> {
    let max = core::arch::x86_64::__cpuid(0).eax;
    if max >= 0x15 {
        let l = core::arch::x86_64::__cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(l.ecx as u64 * l.ebx as u64 / l.eax as u64);
        }
    }
    if max >= 0x16 {
        let mhz = core::arch::x86_64::__cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return Some(mhz as u64 * 1_000_000);
        }
    }
    None
}

fn cmos(reg: u8) -> u8 {
    outb(0x70, reg | 0x80); // keep NMIs masked
    inb(0x71)
}

fn rtc_raw() -> [u8; 7] {
    while cmos(0x0a) & 0x80 != 0 {
        core::hint::spin_loop(); // an update is in progress
    }
    [
        cmos(0x00),
        cmos(0x02),
        cmos(0x04),
        cmos(0x07),
        cmos(0x08),
        cmos(0x09),
        cmos(0x32),
    ]
}

/// Wall-clock time from the CMOS RTC, in Unix seconds (0 if unreadable).
pub fn rtc_unix_seconds() -> u64 {
    // Read until two reads agree, so no update happened in between.
    let mut raw = rtc_raw();
    loop {
        let again = rtc_raw();
        if again == raw {
            break;
        }
        raw = again;
    }
    let status_b = cmos(0x0b);
    let bcd = status_b & 0x04 == 0;
    let conv = |v: u8| if bcd { from_bcd(v) } else { v as u32 };
    let [sec, min, hour_raw, day, month, year, century] = raw;
    let mut hour = conv(hour_raw & 0x7f);
    if status_b & 0x02 == 0 {
        // 12-hour mode: bit 7 is PM, 12 means 0.
        hour %= 12;
        if hour_raw & 0x80 != 0 {
            hour += 12;
        }
    }
    let century = match conv(century) {
        c @ 19..=99 => c,
        _ => 20,
    };
    RtcTime {
        year: century * 100 + conv(year),
        month: conv(month),
        day: conv(day),
        hour,
        minute: conv(min),
        second: conv(sec),
    }
    .unix_seconds()
    .unwrap_or(0)
}

/// Powers off through isa-debug-exit with `status`; if the VMM has no such
/// device, says so and stops the CPU for good.
pub fn exit(status: i32) -> ! {
    outb(
        lamina_abi::debug_exit::PORT,
        lamina_abi::debug_exit::device_value(status),
    );
    let message = alloc::format!(
        "lamina: exited with status {status}, but this VM has no isa-debug-exit device to end it (add -device isa-debug-exit): halting\n"
    );
    uart_write(message.as_bytes());
    loop {
        // SAFETY: interrupts are off, so this stops the vCPU for good.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Monotonic time: the TSC from boot, at its calibrated frequency.
static CLOCK: TscClock = TscClock::new();

/// Calibrates the TSC; false if it cannot be.
pub fn clock_init() -> bool {
    let Some(scale) = tsc_hz().and_then(TscScale::new) else {
        return false;
    };
    CLOCK.start(scale);
    true
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    CLOCK.now_ns()
}
