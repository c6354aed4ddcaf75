//! The executor's idle wait.
//!
//! Before idling, every device publishes what its driver queued (one
//! notification per device and round). Then the park looks at the devices'
//! used rings and wakes the tasks waiting on them; with nothing to wake it
//! halts the CPU until the deadline (the local APIC timer) or a device's
//! interrupt, and looks again. Should interrupts be unavailable, it polls.

use super::hw;
use super::irq::{self, Interrupts};
use super::virtio::{Device, Interrupt};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, OnceCell, RefCell};
use lamina_core::runtime::{Instant, Park};

/// Longest halt when every device's interrupt is routed: a safety net
/// against a lost interrupt, nothing more.
const ROUTED_MAX_WAIT_NS: u64 = 100_000_000;
/// Longest halt when some device has no interrupt line: how often its
/// rings are polled.
const POLLED_MAX_WAIT_NS: u64 = 1_000_000;

/// Waits for a deadline or a device.
#[derive(Default)]
pub struct GuestPark {
    devices: RefCell<Vec<Rc<Device>>>,
    /// Set up at the first wait, or when devices are attached.
    interrupts: OnceCell<Option<Interrupts>>,
    /// Some device's line could not be routed: poll it.
    unrouted: Cell<bool>,
}

impl GuestPark {
    /// A park with no devices yet.
    pub fn new() -> Self {
        GuestPark::default()
    }

    /// Adds the devices whose completions wake tasks, and routes their
    /// interrupts.
    pub fn attach(&self, devices: &[Rc<Device>]) {
        if devices.is_empty() {
            return;
        }
        match self.interrupts() {
            Some(interrupts) => {
                for device in devices {
                    let transport = device.transport();
                    let routed = match transport.interrupt() {
                        Interrupt::Line(gsi) => interrupts.route(gsi),
                        Interrupt::MsiX => {
                            let (address, data) = interrupts.msi_message();
                            transport.route_msix(address, data)
                        }
                        Interrupt::Polled => false,
                    };
                    if !routed {
                        log::warn!(
                            "virtio: interrupt {:?} cannot be routed: polling",
                            transport.interrupt()
                        );
                        self.unrouted.set(true);
                    }
                }
            }
            None => {
                log::warn!("virtio: no local APIC: the devices are polled");
                self.unrouted.set(true);
            }
        }
        self.devices.borrow_mut().extend(devices.iter().cloned());
    }

    fn interrupts(&self) -> Option<&Interrupts> {
        self.interrupts.get_or_init(irq::init).as_ref()
    }

    /// Looks at every device once; returns whether a task was woken.
    fn poll_devices(&self, devices: &[Rc<Device>]) -> bool {
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
        lamina_metal::trace::drain();
        let max_wait = if self.unrouted.get() {
            POLLED_MAX_WAIT_NS
        } else {
            ROUTED_MAX_WAIT_NS
        };
        loop {
            if self.poll_devices(&devices) {
                return;
            }
            let now = hw::monotonic_ns();
            let left = match deadline {
                Some(d) if d <= now => return,
                Some(d) => d - now,
                None => u64::MAX,
            };
            let wait = left.min(max_wait);
            match self.interrupts() {
                Some(interrupts) => interrupts.halt_for(wait),
                None => {
                    while hw::monotonic_ns() < now + wait {
                        core::hint::spin_loop(); // `pause`
                    }
                }
            }
        }
    }
}
