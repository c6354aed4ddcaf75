//! The executor's idle wait.
//!
//! Before idling, every device publishes what its driver queued (one
//! notification per device and round). Then the park looks at the devices'
//! used rings and wakes the tasks waiting on them; with nothing to wake it
//! waits for the deadline or a device, and looks again.

use super::hw;
use super::virtio::Device;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use lamina_core::runtime::{Instant, Park};

/// Waits for a deadline or a device.
#[derive(Default)]
pub struct GuestPark {
    devices: RefCell<Vec<Rc<dyn Device>>>,
}

impl GuestPark {
    /// A park with no devices yet.
    pub fn new() -> Self {
        GuestPark::default()
    }

    /// Adds the devices whose completions wake tasks.
    pub fn attach(&self, devices: &[Rc<dyn Device>]) {
        self.devices.borrow_mut().extend(devices.iter().cloned());
    }

    /// Looks at every device once; returns whether a task was woken.
    fn poll_devices(&self, devices: &[Rc<dyn Device>]) -> bool {
        devices.iter().fold(false, |woke, d| d.poll() | woke)
    }
}

impl Park for GuestPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(hw::monotonic_ns())
    }

    fn park(&self, deadline: Option<Instant>) {
        let devices = self.devices.borrow().clone();
        let deadline = deadline.map(Instant::as_nanos);
        if devices.is_empty() && deadline.is_none() {
            hw::uart_write(b"lamina: every task waits and no device can wake one: halting\n");
            loop {
                // SAFETY: interrupts are off: this stops the vCPU for good,
                // which is what a guest nothing can wake should do.
                unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
            }
        }
        devices.iter().for_each(|d| d.flush());
        loop {
            if self.poll_devices(&devices) {
                return;
            }
            if deadline.is_some_and(|d| hw::monotonic_ns() >= d) {
                return;
            }
            core::hint::spin_loop(); // `pause`
        }
    }
}
