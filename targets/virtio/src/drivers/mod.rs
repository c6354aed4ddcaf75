//! The virtio drivers and their transports, over a [`Bus`].
//!
//! | module      | what |
//! |-------------|------|
//! | [`transport`] | what the drivers see of a device, whichever bus it is on; [`SetupError`] |
//! | [`mmio`]    | the register window of a virtio-mmio device (version 2): handshake, features, queues, notifications |
//! | [`pci`]     | virtio-pci (modern): a function's structures in its BARs, MSI-X |
//! | [`net`]     | virtio-net as a [`Netif`](lamina_core::device::Netif), notifications batched per round |
//! | [`blk`]     | virtio-blk as a [`Block`](lamina_core::device::Block) device |
//! | [`rng`]     | virtio-rng: the CSPRNG's seed when the CPU has no RDRAND |
//!
//! Every value a device supplies (feature bits, queue sizes, configuration
//! fields, notification offsets and multipliers, where its structures and
//! MSI-X table lie, the ISR, the ids and lengths of used entries) is
//! checked before it reaches arithmetic, an index or a slice. A device
//! that gives a bad one while being set up is refused with a message
//! naming the value ([`SetupError`]); once running, it has its queue marked
//! broken or its request failed. A device that stops on its own after
//! DRIVER_OK (resets itself, or sets DEVICE_NEEDS_RESET) is noticed by its
//! status once a driver has waited on it for
//! [`STALL_NS`](transport::STALL_NS), and fails what waits on it. Never a
//! panic, never an access outside a register window or a buffer.
//!
//! The devices' registers and the clock are reached only through [`Bus`]:
//! in a unikernel, volatile accesses to identity-mapped device memory and
//! port I/O (the guest's `virtio::bus`); on the host, in the
//! `virtio_drivers` fuzz target and the unit tests, a made-up device. The
//! drivers are generic over it, not `dyn`: a unikernel's code is what it
//! would be written against its bus directly.

pub mod blk;
#[cfg(any(test, feature = "fake-device"))]
pub mod fake;
pub mod mmio;
pub mod net;
pub mod pci;
pub mod rng;
pub mod transport;

#[cfg(test)]
mod tests;

pub use transport::{Interrupt, SetupError, Transport};

use crate::pci::ConfigSpace;

/// A window onto a device's registers: bytes at offsets from its start,
/// each accessed with the width the device expects. An access that does
/// not fit inside the window, or is not aligned to its width in physical
/// memory, reads as all ones and writes nothing (as a PCI read of nothing
/// does): the drivers check what they compute before they access it, and
/// this is the last guard.
pub trait RegisterWindow {
    /// The byte at `offset`.
    fn read8(&self, offset: usize) -> u8;
    /// The 16-bit register at `offset`.
    fn read16(&self, offset: usize) -> u16;
    /// The 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the byte at `offset`.
    fn write8(&self, offset: usize, value: u8);
    /// Writes the 16-bit register at `offset`.
    fn write16(&self, offset: usize, value: u16);
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);
}

/// What the drivers need of the machine: windows onto device registers,
/// PCI functions' configuration space, and a clock for their timeouts.
pub trait Bus: Clone {
    /// A window onto device registers.
    type Window: RegisterWindow;
    /// A PCI function's configuration space.
    type Function: ConfigSpace;
    /// The `len` bytes of device registers at physical `address`; `None`
    /// if the guest cannot reach them (outside its memory map).
    fn window(&self, address: u64, len: u64) -> Option<Self::Window>;
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
}

/// What the idle wait needs of a device.
pub trait Device<B: Bus> {
    /// Publishes what the driver queued and notifies the device if it asks
    /// to be: called before the guest idles, once per round.
    fn flush(&self);
    /// Acknowledges the device's interrupt and, if it completed something,
    /// wakes the tasks waiting on it; returns whether it woke any.
    fn poll(&self) -> bool;
    /// The device's transport, whose interrupt the idle wait routes.
    fn transport(&self) -> &Transport<B>;
}
