//! The virtio drivers: the virtio-mmio and virtio-pci transports,
//! virtio-net, virtio-blk and virtio-rng.
//!
//! The drivers themselves are [`crate::drivers`], generic over their
//! [`Bus`](crate::drivers::Bus); here is the guest's bus (`bus`: volatile
//! accesses to identity-mapped registers, PCI configuration space through
//! port I/O, the bus walk) and the types the drivers take over it.
//!
//! virtio-mmio devices are found on the command line (`virtio_mmio.device=`,
//! see [`crate::cmdline`]), virtio-pci ones by walking PCI bus 0 and the
//! buses behind its bridges; mmio devices come first, then PCI ones in bus
//! order. Each kind is named in that order by `--net:NAME`/`--block:NAME`
//! words or, failing those, by the devices the image declares.

mod bus;

use crate::cmdline::{device_name, DeviceWords, Kind};
use crate::drivers::transport::{device_type, SetupError};
use crate::drivers::{self, mmio::Mmio, pci::Pci, rng};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use bus::GuestBus;
use lamina_core::declare::{Attachment, Declared};

pub use drivers::Interrupt;

/// A device's transport in the guest.
pub type Transport = drivers::Transport<GuestBus>;
/// A virtio-net device in the guest.
pub type NetDevice = drivers::net::NetDevice<GuestBus>;
/// The [`Netif`](lamina_core::device::Netif) of a virtio-net device.
pub type VirtioNetif = drivers::net::VirtioNetif<GuestBus>;
/// A virtio-blk device in the guest.
pub type BlockDevice = drivers::blk::BlockDevice<GuestBus>;
/// The [`Block`](lamina_core::device::Block) device of a virtio-blk device.
pub type VirtioBlock = drivers::blk::VirtioBlock<GuestBus>;
/// What the idle wait needs of a device in the guest.
pub type Device = dyn drivers::Device<GuestBus>;

/// The virtio devices found at boot, by name.
#[derive(Default)]
pub struct Devices {
    /// Network devices.
    pub net: Vec<(String, Rc<NetDevice>)>,
    /// Block devices.
    pub block: Vec<(String, Rc<BlockDevice>)>,
    /// Every device, for the idle wait.
    pub all: Vec<Rc<Device>>,
}

/// A device found on a bus, and its type; or why it cannot be used.
type Probed = Result<(Transport, u32), SetupError>;

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
    let bus = GuestBus { mapped };
    let mut probed: Vec<(Probed, String)> = Vec::new();
    for window in &words.mmio {
        let result = Mmio::probe(bus, window).map(|(t, kind)| (Transport::Mmio(t), kind));
        probed.push((result, alloc::format!("the device at {:#x}", window.base)));
    }
    for (function, kind) in bus::scan() {
        let result = Pci::probe(bus, function, mapped).map(|t| (Transport::Pci(t), kind));
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
