//! The virtio drivers: the virtio-mmio transport, split virtqueues,
//! virtio-net and virtio-blk.
//!
//! | module  | what |
//! |---------|------|
//! | `mmio`  | the register window of a virtio-mmio device (version 2): handshake, features, queues, notifications |
//! | `net`   | virtio-net as a [`Netif`](lamina_core::device::Netif), notifications batched per round |
//! | `blk`   | virtio-blk as a [`Block`](lamina_core::device::Block) device |
//!
//! Devices are found on the command line (`virtio_mmio.device=`, see
//! [`crate::cmdline`]) and named in order by `--net:NAME`/`--block:NAME`
//! words or, failing those, by the devices the image declares.

mod blk;
mod mmio;
mod net;

pub use blk::{BlockDevice, VirtioBlock};
pub use net::{NetDevice, VirtioNetif};

use crate::cmdline::{device_name, DeviceWords, Kind};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use mmio::{device_type, Transport};

/// What the idle wait needs of a device.
pub trait Device {
    /// Publishes what the driver queued and notifies the device if it asks
    /// to be: called before the guest idles, once per round.
    fn flush(&self);
    /// Acknowledges the device's interrupt and, if it completed something,
    /// wakes the tasks waiting on it; returns whether it woke any.
    fn poll(&self) -> bool;
    /// The device's interrupt line (a GSI of the I/O APIC).
    fn irq(&self) -> u32;
}

include!(concat!(env!("OUT_DIR"), "/declared.rs"));

/// The virtio devices found at boot, by name.
#[derive(Default)]
pub struct Devices {
    /// Network devices.
    pub net: Vec<(String, Rc<NetDevice>)>,
    /// Block devices.
    pub block: Vec<(String, Rc<BlockDevice>)>,
    /// Every device, for the idle wait.
    pub all: Vec<Rc<dyn Device>>,
}

/// Brings up the devices the command line announces, inside the first
/// `mapped` bytes of the address space. A device that fails is reported and
/// left out (it still takes its place in the order of names).
pub fn discover(words: &DeviceWords, mapped: u64) -> Devices {
    let mut found = Devices::default();
    let (mut nets, mut blocks) = (0usize, 0usize);
    for window in &words.mmio {
        let failed = |why: &dyn core::fmt::Display| {
            log::warn!(
                "virtio: the device at {:#x} is not used: {why}",
                window.base
            );
        };
        let (transport, kind) = match Transport::probe(window, mapped) {
            Ok(probed) => probed,
            Err(e) => {
                failed(&e);
                continue;
            }
        };
        match kind {
            device_type::NET => {
                let index = nets;
                nets += 1;
                let Some(name) = device_name(&words.net_names, DECLARED_NET, Kind::Net, index)
                else {
                    failed(&"network device without a name (add --net:NAME)");
                    continue;
                };
                match NetDevice::new(transport, index) {
                    Ok(device) => {
                        let device = Rc::new(device);
                        found.all.push(device.clone());
                        found.net.push((String::from(name), device));
                    }
                    Err(e) => failed(&e),
                }
            }
            device_type::BLOCK => {
                let index = blocks;
                blocks += 1;
                let Some(name) =
                    device_name(&words.block_names, DECLARED_BLOCK, Kind::Block, index)
                else {
                    failed(&"block device without a name (add --block:NAME)");
                    continue;
                };
                match BlockDevice::new(transport) {
                    Ok(device) => {
                        let device = Rc::new(device);
                        found.all.push(device.clone());
                        found.block.push((String::from(name), device));
                    }
                    Err(e) => failed(&e),
                }
            }
            0 => {} // an empty slot
            other => failed(&alloc::format!("device type {other} has no driver")),
        }
    }
    found
}
