//! A made-up virtio device on a made-up [`Bus`], for the drivers' unit
//! tests and the `virtio_drivers` fuzz target: a virtio-mmio register
//! window or a virtio-pci function (configuration space, BARs,
//! capabilities, common configuration, notification, ISR, device-specific
//! structure, MSI-X table), each register answering what [`Behaviour`]
//! says, and split virtqueues served from a script of [`Completion`]s:
//! the device writes what it is told into the buffers the driver offered
//! and returns used entries with the ids and lengths it is told.
//!
//! Every register access the drivers make is checked here: one outside
//! the window the driver asked for, or misaligned, panics (in a unikernel
//! it would read all ones or be dropped; here it is a driver bug).
//!
//! The device reads and writes the driver's queues and buffers at the
//! addresses the driver gave it, as a device does (the host's memory is
//! the guest's here): a driver that gives a wrong address makes the device
//! write outside a buffer, which AddressSanitizer reports.

use super::{Bus, RegisterWindow};
use crate::pci::ConfigSpace;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// What the device answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The virtio device type (1 net, 2 block, 4 entropy).
    pub device_type: u32,
    /// virtio-mmio's magic value ("virt" for a device).
    pub magic: u32,
    /// virtio-mmio's version (2 for a modern device).
    pub version: u32,
    /// The feature bits offered.
    pub features: u64,
    /// After a reset the status reads this instead of 0 (0: resets).
    pub stuck_status: u8,
    /// FEATURES_OK never reads back.
    pub refuses_features: bool,
    /// Writing DRIVER_OK resets the device (its queues stop).
    pub resets_at_driver_ok: bool,
    /// Each queue's largest size (virtio-mmio QueueNumMax, virtio-pci
    /// queue_size before the driver writes it).
    pub queue_max: [u32; 4],
    /// Queues read as enabled before the driver sets them up.
    pub queues_enabled: bool,
    /// virtio-pci `num_queues`.
    pub num_queues: u16,
    /// Each queue's `queue_notify_off`.
    pub notify_off: [u16; 4],
    /// Queues keep `NO_VECTOR` whatever MSI-X vector is written.
    pub refuses_vector: bool,
    /// The device-specific configuration.
    pub config: [u8; 256],
    /// How many reads of the configuration generation change it.
    pub generation_churn: u32,
    /// The interrupt status (virtio-mmio) or ISR byte (virtio-pci).
    pub interrupt_status: u32,
}

impl Behaviour {
    /// A well-behaved device of `device_type` offering `features` (and
    /// VIRTIO_F_VERSION_1), with queues of up to 256 entries.
    pub fn new(device_type: u32, features: u64) -> Behaviour {
        Behaviour {
            device_type,
            magic: 0x7472_6976,
            version: 2,
            features: features | super::transport::F_VERSION_1,
            stuck_status: 0,
            refuses_features: false,
            resets_at_driver_ok: false,
            queue_max: [256; 4],
            queues_enabled: false,
            num_queues: 4,
            notify_off: [0, 1, 2, 3],
            refuses_vector: false,
            config: [0; 256],
            generation_churn: 0,
            interrupt_status: 0,
        }
    }
}

/// A structure in a BAR: which BAR, the offset in it, the length.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// The BAR (0-5; only 1 and 4 exist).
    pub bar: u8,
    /// Offset inside the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

/// Where a virtio-pci function's structures are.
#[derive(Clone, Debug)]
pub struct PciLayout {
    /// BAR 1 (32-bit): address and size (0: none).
    pub bar1: (u32, u32),
    /// BAR 4 (64-bit): address and size (0: none).
    pub bar4: (u64, u64),
    /// The common configuration structure.
    pub common: Option<Place>,
    /// The notification structure and its `notify_off_multiplier`.
    pub notify: Option<(Place, u32)>,
    /// The ISR byte.
    pub isr: Option<Place>,
    /// The device-specific configuration.
    pub device: Option<Place>,
    /// The MSI-X table: BAR, offset (a multiple of 8) and entries (1-2048).
    pub msix: Option<(u8, u32, u16)>,
    /// Bytes of configuration space changed after it is laid out.
    pub patches: Vec<(u8, u8)>,
}

impl PciLayout {
    /// QEMU's layout of a modern virtio-pci function: BAR 4 (16 KiB) holds
    /// the four structures, BAR 1 the MSI-X table of `vectors` entries.
    pub fn qemu(vectors: u16) -> PciLayout {
        let place = |offset, length| {
            Some(Place {
                bar: 4,
                offset,
                length,
            })
        };
        PciLayout {
            bar1: (0xfebd_1000, 0x1000),
            bar4: (0xfe00_0000, 0x4000),
            common: place(0, 0x1000),
            isr: place(0x1000, 0x1000),
            device: place(0x2000, 0x1000),
            notify: place(0x3000, 0x1000).map(|p| (p, 4)),
            msix: (vectors > 0).then_some((1, 0, vectors)),
            patches: Vec::new(),
        }
    }
}

/// What the device does with the next chain the driver offers on a queue.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// Bytes written over the chain's writable buffers, in order.
    pub data: Vec<u8>,
    /// Written over the last writable byte after `data` (virtio-blk's
    /// status byte).
    pub last: Option<u8>,
    /// The used entry's id; the chain's head if not given. With an id the
    /// entry is returned even when the driver offered nothing.
    pub id: Option<u32>,
    /// The used entry's length; the bytes written if not given.
    pub len: Option<u32>,
}

/// A queue as the driver set it up.
#[derive(Clone, Copy, Default)]
struct QueueState {
    size: u32,
    desc: u64,
    avail: u64,
    used: u64,
    ready: bool,
    vector: u16,
    /// Available entries taken.
    last_avail: u16,
    /// Used entries returned.
    used_index: u16,
}

/// Which registers a window shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Structure {
    Mmio,
    Common,
    Notify,
    Isr,
    DeviceConfig,
    MsixTable,
    /// Anything else: reads all ones.
    Nothing,
}

struct State {
    behaviour: Behaviour,
    /// The PCI function's layout, if it is one.
    layout: Option<PciLayout>,
    config_space: [u8; 256],
    status: u8,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    queue_select: u32,
    queues: [QueueState; 4],
    generation: u32,
    churn_left: u32,
    interrupt_status: u32,
    msix_table: [u32; 4],
    script: VecDeque<(u16, Completion)>,
    /// The queues notified, in order.
    notified: Vec<u16>,
    /// The bytes of each chain completed: what the driver sent.
    sent: Vec<(u16, Vec<u8>)>,
}

/// The made-up device; share it through [`FakeBus`] and [`FakeFunction`].
pub struct FakeDevice {
    state: RefCell<State>,
    now: Cell<u64>,
}

/// Nanoseconds each look at the clock takes: timeouts end after a bounded
/// number of looks.
const TICK_NS: u64 = 1_000_000;

impl FakeDevice {
    /// A virtio-mmio device.
    pub fn mmio(behaviour: Behaviour) -> Rc<FakeDevice> {
        FakeDevice::new(behaviour, None)
    }

    /// A virtio-pci function laid out as `layout` says.
    pub fn pci(behaviour: Behaviour, layout: PciLayout) -> Rc<FakeDevice> {
        FakeDevice::new(behaviour, Some(layout))
    }

    fn new(behaviour: Behaviour, layout: Option<PciLayout>) -> Rc<FakeDevice> {
        let mut config_space = [0u8; 256];
        if let Some(layout) = &layout {
            lay_out(&mut config_space, &behaviour, layout);
        }
        Rc::new(FakeDevice {
            state: RefCell::new(State {
                interrupt_status: behaviour.interrupt_status,
                churn_left: behaviour.generation_churn,
                behaviour,
                layout,
                config_space,
                status: 0,
                device_features_select: 0,
                driver_features_select: 0,
                driver_features: 0,
                queue_select: 0,
                queues: [QueueState::default(); 4],
                generation: 0,
                msix_table: [0; 4],
                script: VecDeque::new(),
                notified: Vec::new(),
                sent: Vec::new(),
            }),
            now: Cell::new(0),
        })
    }

    /// Adds `completion` for the next chain on `queue` to the script.
    pub fn script(&self, queue: u16, completion: Completion) {
        self.state
            .borrow_mut()
            .script
            .push_back((queue, completion));
    }

    /// The status the driver last wrote (as the device keeps it).
    pub fn status(&self) -> u8 {
        self.state.borrow().status
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.state.borrow().driver_features
    }

    /// The queues notified so far, in order.
    pub fn notified(&self) -> Vec<u16> {
        self.state.borrow().notified.clone()
    }

    /// What the driver sent in the chains completed so far, by queue.
    pub fn take_sent(&self) -> Vec<(u16, Vec<u8>)> {
        core::mem::take(&mut self.state.borrow_mut().sent)
    }

    /// The device stops on its own, as after DRIVER_OK a device may: it
    /// resets itself (its status reads 0, its queues are gone) or, with
    /// `needs_reset`, sets DEVICE_NEEDS_RESET and serves its queues no
    /// more.
    pub fn stop(&self, needs_reset: bool) {
        let mut state = self.state.borrow_mut();
        if needs_reset {
            state.status |= 0x40;
        } else {
            state.status = 0;
        }
        state.queues = [QueueState::default(); 4];
    }

    /// The clock, in nanoseconds.
    pub fn now(&self) -> u64 {
        self.now.get()
    }

    /// The clock jumps `nanos` forward (time passing while the guest
    /// idles).
    pub fn advance(&self, nanos: u64) {
        self.now.set(self.now.get().saturating_add(nanos));
    }

    /// MSI-X table entry 0: address low and high, data, control.
    pub fn msix_entry(&self) -> [u32; 4] {
        self.state.borrow().msix_table
    }

    /// Serves the script: completes chains while the next completion's
    /// queue has one (or the completion makes its entry up).
    pub fn work(&self) {
        loop {
            let mut state = self.state.borrow_mut();
            let Some((queue, _)) = state.script.front() else {
                return;
            };
            let queue = usize::from(*queue);
            let Some(q) = state.queues.get(queue).copied() else {
                state.script.pop_front();
                continue;
            };
            if !q.ready || q.size == 0 {
                return;
            }
            let has_chain = avail_index(&q) != q.last_avail;
            let made_up = state.script.front().is_some_and(|(_, c)| c.id.is_some());
            if !has_chain && !made_up {
                return;
            }
            let (_, completion) = state.script.pop_front().expect("looked at above");
            let (q, sent) = complete(q, has_chain, &completion);
            state.queues[queue] = q;
            if let Some(sent) = sent {
                state.sent.push((queue as u16, sent));
            }
        }
    }

    fn structure_at(&self, address: u64) -> Structure {
        let state = self.state.borrow();
        let Some(layout) = &state.layout else {
            return Structure::Mmio;
        };
        let at = |place: Option<Place>| {
            place.and_then(|p| bar_address(layout, p.bar)?.checked_add(u64::from(p.offset)))
        };
        let msix = layout.msix.map(|(bar, offset, _)| Place {
            bar,
            offset,
            length: 0,
        });
        [
            (at(layout.common), Structure::Common),
            (at(layout.notify.map(|(p, _)| p)), Structure::Notify),
            (at(layout.isr), Structure::Isr),
            (at(layout.device), Structure::DeviceConfig),
            (at(msix), Structure::MsixTable),
        ]
        .into_iter()
        .find(|(a, _)| *a == Some(address))
        .map_or(Structure::Nothing, |(_, s)| s)
    }

    fn read(&self, structure: Structure, offset: usize, width: usize) -> u32 {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let b = &state.behaviour;
        let qs = state.queue_select as usize;
        let queue = state.queues.get(qs).copied();
        match (structure, offset) {
            (Structure::Mmio, 0x000) => b.magic,
            (Structure::Mmio, 0x004) => b.version,
            (Structure::Mmio, 0x008) => b.device_type,
            (Structure::Mmio, 0x010) | (Structure::Common, 0x04) => {
                match state.device_features_select {
                    0 => b.features as u32,
                    1 => (b.features >> 32) as u32,
                    _ => 0,
                }
            }
            (Structure::Mmio, 0x034) => b.queue_max.get(qs).copied().unwrap_or(0),
            (Structure::Mmio, 0x044) | (Structure::Common, 0x1c) => {
                u32::from(queue.is_some_and(|q| q.ready) || b.queues_enabled)
            }
            (Structure::Mmio, 0x060) => state.interrupt_status,
            (Structure::Mmio, 0x070) | (Structure::Common, 0x14) => u32::from(state.status),
            (Structure::Mmio, 0x0fc) | (Structure::Common, 0x15) => {
                if state.churn_left > 0 {
                    state.churn_left -= 1;
                    state.generation = state.generation.wrapping_add(1);
                }
                state.generation
            }
            (Structure::Mmio, at) if at >= 0x100 => config_bytes(&b.config, at - 0x100, width),
            (Structure::Common, 0x12) => u32::from(b.num_queues),
            (Structure::Common, 0x18) => match queue {
                Some(q) if q.size != 0 => q.size,
                Some(_) => b.queue_max.get(qs).copied().unwrap_or(0) & 0xffff,
                None => 0,
            },
            (Structure::Common, 0x1a) => u32::from(queue.map_or(0xffff, |q| q.vector)),
            (Structure::Common, 0x1e) => u32::from(b.notify_off.get(qs).copied().unwrap_or(0)),
            (Structure::Isr, 0) => {
                let isr = state.interrupt_status & 0xff;
                state.interrupt_status = 0;
                isr
            }
            (Structure::DeviceConfig, at) => config_bytes(&b.config, at, width),
            (Structure::MsixTable, at) => state.msix_table.get(at / 4).copied().unwrap_or(0),
            (Structure::Nothing, _) => u32::MAX,
            _ => 0,
        }
    }

    fn write(&self, structure: Structure, offset: usize, value: u32) {
        let notify = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let qs = state.queue_select as usize;
            let refuses_vector = state.behaviour.refuses_vector;
            let queue = state.queues.get_mut(qs);
            let set_address = |q: Option<&mut QueueState>, field: usize, high: bool| {
                if let Some(q) = q {
                    let target = match field {
                        0 => &mut q.desc,
                        1 => &mut q.avail,
                        _ => &mut q.used,
                    };
                    *target = if high {
                        (*target & 0xffff_ffff) | u64::from(value) << 32
                    } else {
                        (*target & !0xffff_ffff) | u64::from(value)
                    };
                }
            };
            match (structure, offset) {
                (Structure::Mmio, 0x014) | (Structure::Common, 0x00) => {
                    state.device_features_select = value;
                }
                (Structure::Mmio, 0x024) | (Structure::Common, 0x08) => {
                    state.driver_features_select = value;
                }
                (Structure::Mmio, 0x020) | (Structure::Common, 0x0c) => {
                    match state.driver_features_select {
                        0 => {
                            state.driver_features =
                                (state.driver_features & !0xffff_ffff) | u64::from(value);
                        }
                        1 => {
                            state.driver_features =
                                (state.driver_features & 0xffff_ffff) | u64::from(value) << 32;
                        }
                        _ => {}
                    }
                }
                (Structure::Mmio, 0x030) | (Structure::Common, 0x16) => state.queue_select = value,
                (Structure::Mmio, 0x038) | (Structure::Common, 0x18) => {
                    if let Some(q) = queue {
                        q.size = value;
                    }
                }
                (Structure::Mmio, 0x044) | (Structure::Common, 0x1c) => {
                    if let Some(q) = queue {
                        q.ready = value & 1 != 0;
                    }
                }
                (Structure::Common, 0x1a) => {
                    if let Some(q) = queue {
                        q.vector = if refuses_vector { 0xffff } else { value as u16 };
                    }
                }
                (Structure::Mmio, 0x080) | (Structure::Common, 0x20) => {
                    set_address(queue, 0, false)
                }
                (Structure::Mmio, 0x084) | (Structure::Common, 0x24) => set_address(queue, 0, true),
                (Structure::Mmio, 0x090) | (Structure::Common, 0x28) => {
                    set_address(queue, 1, false)
                }
                (Structure::Mmio, 0x094) | (Structure::Common, 0x2c) => set_address(queue, 1, true),
                (Structure::Mmio, 0x0a0) | (Structure::Common, 0x30) => {
                    set_address(queue, 2, false)
                }
                (Structure::Mmio, 0x0a4) | (Structure::Common, 0x34) => set_address(queue, 2, true),
                (Structure::Mmio, 0x050) | (Structure::Notify, _) => {
                    state.notified.push(value as u16);
                }
                (Structure::Mmio, 0x064) => state.interrupt_status &= !value,
                (Structure::Mmio, 0x070) | (Structure::Common, 0x14) => {
                    set_status(state, value as u8);
                }
                (Structure::MsixTable, at) => {
                    if let Some(word) = state.msix_table.get_mut(at / 4) {
                        *word = value;
                    }
                }
                _ => {}
            }
            matches!(
                (structure, offset),
                (Structure::Mmio, 0x050) | (Structure::Notify, _)
            )
        };
        if notify {
            self.work();
        }
    }
}

/// The device's answer to a status write: a reset (0), FEATURES_OK
/// refused, or DRIVER_OK that resets the device, as `behaviour` says.
fn set_status(state: &mut State, status: u8) {
    let b = &state.behaviour;
    if status == 0 || (b.resets_at_driver_ok && status & 4 != 0) {
        state.status = b.stuck_status;
        state.queues = [QueueState::default(); 4];
        return;
    }
    state.status = if b.refuses_features {
        status & !8
    } else {
        status
    };
}

/// `width` bytes of `config` at `at`, little-endian; zero past its end.
fn config_bytes(config: &[u8; 256], at: usize, width: usize) -> u32 {
    (0..width).fold(0, |word, i| {
        let byte = at.checked_add(i).and_then(|a| config.get(a)).copied();
        word | u32::from(byte.unwrap_or(0)) << (8 * i)
    })
}

fn bar_address(layout: &PciLayout, bar: u8) -> Option<u64> {
    match bar {
        1 if layout.bar1.1 != 0 => Some(u64::from(layout.bar1.0)),
        4 if layout.bar4.1 != 0 => Some(layout.bar4.0),
        _ => None,
    }
}

/// Writes the function's configuration space: IDs, BARs 1 and 4, and the
/// capability list at 0x40 (common, notify, ISR, device, MSI-X).
fn lay_out(space: &mut [u8; 256], behaviour: &Behaviour, layout: &PciLayout) {
    let mut put = |at: usize, bytes: &[u8]| space[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &0x1af4u16.to_le_bytes());
    put(
        2,
        &(0x1040u16.wrapping_add(behaviour.device_type as u16)).to_le_bytes(),
    );
    put(6, &(1u16 << 4).to_le_bytes()); // a capability list
    put(0x14, &layout.bar1.0.to_le_bytes());
    put(0x20, &((layout.bar4.0 as u32 & !0xf) | 0b100).to_le_bytes());
    put(0x24, &((layout.bar4.0 >> 32) as u32).to_le_bytes());
    put(0x34, &[0x40]);
    let mut at = 0x40usize;
    let virtio = [
        (layout.common, 1u8, 0u32),
        (
            layout.notify.map(|(p, _)| p),
            2,
            layout.notify.map_or(0, |(_, m)| m),
        ),
        (layout.isr, 3, 0),
        (layout.device, 4, 0),
    ];
    for (place, kind, multiplier) in virtio {
        let Some(p) = place else { continue };
        let len = if kind == 2 { 20u8 } else { 16 };
        put(at, &[0x09, (at + 20) as u8, len, kind, p.bar, 0, 0, 0]);
        put(at + 8, &p.offset.to_le_bytes());
        put(at + 12, &p.length.to_le_bytes());
        put(at + 16, &multiplier.to_le_bytes());
        at += 20;
    }
    match layout.msix {
        Some((bar, offset, entries)) => {
            let control = entries.saturating_sub(1) & 0x7ff;
            put(at, &[0x11, 0]);
            put(at + 2, &control.to_le_bytes());
            put(at + 4, &((offset & !7) | u32::from(bar & 7)).to_le_bytes());
        }
        // End the list at the last virtio capability.
        None if at > 0x40 => put(at - 20 + 1, &[0]),
        None => put(0x34, &[0]),
    }
    for &(at, byte) in &layout.patches {
        space[usize::from(at)] = byte;
    }
}

/// The available index the driver published.
fn avail_index(q: &QueueState) -> u16 {
    read16(q.avail + 2)
}

/// Completes the next available chain of `q` (if `has_chain`) or makes
/// an entry up, as `completion` says; returns the queue's new state and
/// what the chain's readable buffers held.
fn complete(
    mut q: QueueState,
    has_chain: bool,
    completion: &Completion,
) -> (QueueState, Option<Vec<u8>>) {
    let size = q.size;
    let mut written = 0u32;
    let mut sent = None;
    let mut head = completion.id.unwrap_or(0);
    if has_chain {
        let slot = u64::from(q.last_avail) % u64::from(size);
        head = u32::from(read16(q.avail + 4 + 2 * slot));
        q.last_avail = q.last_avail.wrapping_add(1);
        let mut out = Vec::new();
        let mut data = &completion.data[..];
        let mut last_writable = None;
        let mut id = head;
        for _ in 0..size {
            if id >= size {
                break;
            }
            let at = q.desc + 16 * u64::from(id);
            let (address, len) = (read64(at), read32(at + 8));
            let (flags, next) = (read16(at + 12), read16(at + 14));
            if flags & 2 != 0 {
                let n = data.len().min(len as usize);
                write_bytes(address, &data[..n]);
                data = &data[n..];
                written += n as u32;
                if len > 0 {
                    last_writable = Some(address + u64::from(len) - 1);
                }
            } else if out.len() < 256 << 10 {
                let mut bytes = vec![0u8; len.min(256 << 10) as usize];
                read_bytes(address, &mut bytes);
                out.extend_from_slice(&bytes);
            }
            if flags & 1 == 0 {
                break;
            }
            id = u32::from(next);
        }
        if let (Some(byte), Some(address)) = (completion.last, last_writable) {
            write_bytes(address, &[byte]);
        }
        sent = Some(out);
    }
    let entry = q.used + 4 + 8 * (u64::from(q.used_index) % u64::from(size));
    write32(entry, completion.id.unwrap_or(head));
    write32(entry + 4, completion.len.unwrap_or(written));
    q.used_index = q.used_index.wrapping_add(1);
    write16(q.used + 2, q.used_index);
    (q, sent)
}

// The device's accesses to the driver's memory, at the addresses the
// driver gave it (the host's memory is the guest's here).

fn read_bytes(address: u64, out: &mut [u8]) {
    if out.is_empty() {
        return;
    }
    // SAFETY: an address and length the driver put in a descriptor or
    // register for the device to read: inside its DMA memory if the driver
    // is right (AddressSanitizer reports it if not).
    unsafe { core::ptr::copy_nonoverlapping(address as *const u8, out.as_mut_ptr(), out.len()) }
}

fn write_bytes(address: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: as for `read_bytes`, bytes the driver gave the device to
    // write.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), address as *mut u8, bytes.len()) }
}

fn read16(address: u64) -> u16 {
    let mut b = [0u8; 2];
    read_bytes(address, &mut b);
    u16::from_le_bytes(b)
}

fn read32(address: u64) -> u32 {
    let mut b = [0u8; 4];
    read_bytes(address, &mut b);
    u32::from_le_bytes(b)
}

fn read64(address: u64) -> u64 {
    let mut b = [0u8; 8];
    read_bytes(address, &mut b);
    u64::from_le_bytes(b)
}

fn write16(address: u64, value: u16) {
    write_bytes(address, &value.to_le_bytes());
}

fn write32(address: u64, value: u32) {
    write_bytes(address, &value.to_le_bytes());
}

/// The made-up machine: windows onto the device's registers and a clock
/// that moves [`TICK_NS`] at each look, the device working at each.
#[derive(Clone)]
pub struct FakeBus {
    /// The device behind every window.
    pub device: Rc<FakeDevice>,
}

impl Bus for FakeBus {
    type Window = FakeWindow;
    type Function = FakeFunction;

    fn window(&self, address: u64, len: u64) -> Option<FakeWindow> {
        address.checked_add(len)?;
        Some(FakeWindow {
            device: self.device.clone(),
            structure: self.device.structure_at(address),
            address,
            len,
        })
    }

    fn now_ns(&self) -> u64 {
        let now = self.device.now.get() + TICK_NS;
        self.device.now.set(now);
        self.device.work();
        now
    }
}

/// A window the driver asked for.
pub struct FakeWindow {
    device: Rc<FakeDevice>,
    structure: Structure,
    address: u64,
    len: u64,
}

impl FakeWindow {
    /// Panics unless the `width` bytes at `offset` lie inside the window
    /// and are aligned to `width`.
    fn check(&self, offset: usize, width: usize) {
        let inside = (offset as u64)
            .checked_add(width as u64)
            .is_some_and(|end| end <= self.len);
        assert!(
            inside,
            "a driver accessed {width} bytes at {offset:#x} of a {:#x}-byte window",
            self.len
        );
        assert!(
            (self.address + offset as u64).is_multiple_of(width as u64),
            "a driver made a misaligned {width}-byte access at {:#x}",
            self.address + offset as u64
        );
    }

    fn read(&self, offset: usize, width: usize) -> u32 {
        self.check(offset, width);
        self.device.read(self.structure, offset, width)
    }

    fn write(&self, offset: usize, width: usize, value: u32) {
        self.check(offset, width);
        self.device.write(self.structure, offset, value);
    }
}

impl RegisterWindow for FakeWindow {
    fn read8(&self, offset: usize) -> u8 {
        self.read(offset, 1) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        self.read(offset, 2) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        self.read(offset, 4)
    }

    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, 1, value.into());
    }

    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, 2, value.into());
    }

    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, 4, value);
    }
}

/// The device's PCI configuration space, with BARs that answer sizing
/// probes.
pub struct FakeFunction {
    /// The device.
    pub device: Rc<FakeDevice>,
}

impl ConfigSpace for FakeFunction {
    fn read32(&self, offset: u8) -> u32 {
        let at = usize::from(offset & !3);
        let state = self.device.state.borrow();
        u32::from_le_bytes(state.config_space[at..at + 4].try_into().expect("4 bytes"))
    }

    fn write32(&self, offset: u8, value: u32) {
        let at = usize::from(offset & !3);
        let mut state = self.device.state.borrow_mut();
        let state = &mut *state;
        let Some(layout) = &state.layout else {
            return;
        };
        let value = match (at, value) {
            // The status register is read-only here.
            (0x04, _) => {
                let old = u32::from_le_bytes(state.config_space[4..8].try_into().expect("4"));
                (old & 0xffff_0000) | (value & 0xffff)
            }
            // Sizing probes: the decoders' masks, type bits kept.
            (0x14, u32::MAX) => !(layout.bar1.1.wrapping_sub(1)) & !0xf,
            (0x20, u32::MAX) => ((!(layout.bar4.1.wrapping_sub(1)) as u32) & !0xf) | 0b100,
            (0x24, u32::MAX) => (!(layout.bar4.1.wrapping_sub(1)) >> 32) as u32,
            (0x10 | 0x18 | 0x1c, u32::MAX) => 0,
            _ => value,
        };
        state.config_space[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
}
