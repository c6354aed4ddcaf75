//! The executor's idle wait. This slice has no interrupts (they come with
//! the virtio drivers), so `hlt` could never wake up: a wait for a deadline
//! polls the TSC with `pause` until it passes. With no deadline nothing can
//! ever wake the guest, so it halts for good.

use super::hw;
use lamina_core::runtime::{Instant, Park};

/// Waits by polling the TSC.
pub struct GuestPark;

impl Park for GuestPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(hw::monotonic_ns())
    }

    fn park(&self, deadline: Option<Instant>) {
        let Some(deadline) = deadline.map(Instant::as_nanos) else {
            hw::uart_write(b"lamina: every task waits and no device can wake one: halting\n");
            loop {
                // SAFETY: interrupts are off: this stops the vCPU for good,
                // which is what a guest nothing can wake should do.
                unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
            }
        };
        while hw::monotonic_ns() < deadline {
            core::hint::spin_loop(); // `pause`
        }
    }
}
