//! The virtio drivers: the virtio-mmio and virtio-pci transports,
//! virtio-net, virtio-blk and virtio-rng.
//!
//! | module      | what |
//! |-------------|------|
//! | `transport` | what the drivers see of a device, whichever bus it is on |
//! | `mmio`      | the register window of a virtio-mmio device (version 2): handshake, features, queues, notifications |
//! | `pci`       | virtio-pci (modern): the bus walk, a function's structures in its BARs, MSI-X |
//! | `net`       | virtio-net as a [`Netif`](lamina_core::device::Netif), notifications batched per round |
//! | `blk`       | virtio-blk as a [`Block`](lamina_core::device::Block) device |
//! | `rng`       | virtio-rng: the CSPRNG's seed when the CPU has no RDRAND |
//!
//! virtio-mmio devices are found on the command line (`virtio_mmio.device=`,
//! see [`crate::cmdline`]), virtio-pci ones by walking PCI bus 0 and the
//! buses behind its bridges; mmio devices come first, then PCI ones in bus
//! order. Each kind is named in that order by `--net:NAME`/`--block:NAME`
//! words or, failing those, by the devices the image declares.

mod blk;
mod mmio;
mod net;
mod pci;
mod rng;
mod transport;

pub use blk::{BlockDevice, VirtioBlock};
pub use net::{NetDevice, VirtioNetif};
pub use transport::{Interrupt, Transport};

use crate::cmdline::{device_name, DeviceWords, Kind};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use lamina_core::declare::{Attachment, Declared};
use transport::device_type;

/// What the idle wait needs of a device.
pub trait Device {
    /// Publishes what the driver queued and notifies the device if it asks
    /// to be: called before the guest idles, once per round.
    fn flush(&self);
    /// Acknowledges the device's interrupt and, if it completed something,
    /// wakes the tasks waiting on it; returns whether it woke any.
    fn poll(&self) -> bool;
    /// The device's transport, whose interrupt the idle wait routes.
    fn transport(&self) -> &Transport;
}

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

/// A device found on a bus, and its type; or why it cannot be used.
type Probed = Result<(Transport, u32), transport::SetupError>;

/// Brings up the devices the command line announces and those on PCI,
/// inside the first `mapped` bytes of the address space. A device that
/// fails is reported and left out (it still takes its place in the order
/// of names). Devices the command line does not name take the names the
/// application declares, in order. Without RDRAND, the first virtio-rng
/// device seeds the CSPRNG.
pub fn discover(words: &DeviceWords, declared: &[Declared], mapped: u64) -> Devices {
    let names = |attachment: Attachment| -> Vec<&'static str> {
        declared
            .iter()
            .filter(|d| d.family.attachment == attachment)
            .map(|d| d.name)
            .collect()
    };
    let (declared_net, declared_block) = (names(Attachment::Net), names(Attachment::Block));
    let mut found = Devices::default();
    let (mut nets, mut blocks) = (0usize, 0usize);
    let mut probed: Vec<(Probed, String)> = Vec::new();
    for window in &words.mmio {
        let result = mmio::Mmio::probe(window, mapped).map(|(t, kind)| (Transport::Mmio(t), kind));
        probed.push((result, alloc::format!("the device at {:#x}", window.base)));
    }
    for (function, kind) in pci::scan() {
        let result = pci::Pci::probe(function, mapped).map(|t| (Transport::Pci(t), kind));
        probed.push((result, alloc::format!("the device at {function}")));
    }
    let mut entropy = !lamina_metal::entropy::has_rdrand() && !lamina_metal::entropy::has_rdseed();
    for (result, place) in probed {
        let failed = |why: &dyn core::fmt::Display| {
            log::warn!("virtio: {place} is not used: {why}");
        };
        let (transport, kind) = match result {
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
                let Some(name) = device_name(&words.net_names, &declared_net, Kind::Net, index)
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
                    device_name(&words.block_names, &declared_block, Kind::Block, index)
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
            // RDRAND stays first: the device is used only without it.
            device_type::ENTROPY if entropy => match rng::seed(&transport) {
                Ok(seed) => {
                    lamina_metal::random::seed_from_device(seed, "virtio-rng");
                    entropy = false;
                }
                Err(e) => failed(&e),
            },
            device_type::ENTROPY => {}
            0 => {} // an empty slot
            other => failed(&alloc::format!("device type {other} has no driver")),
        }
    }
    found
}
