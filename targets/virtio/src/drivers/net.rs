//! virtio-net (virtio 1.2, section 5.1): one receive and one transmit
//! queue, one 2 KiB buffer per descriptor.
//!
//! Offloads, where the device offers them (QEMU over a tap does):
//! checksums both ways (VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM) and TCP
//! segmentation on transmit (VIRTIO_NET_F_HOST_TSO4/6). Transmitted frames
//! go through [`Coalescer`], which fills in partial checksums and joins a
//! round's consecutive TCP segments into frames of up to 64 KiB, sent as a
//! chain of 2 KiB descriptors; received frames the device did not vouch for
//! have their TCP/UDP checksum verified here ([`checksum_ok`]), once. The
//! device never sends large segments (GUEST_TSO is not negotiated: it would
//! need 64 KiB per receive descriptor, or mergeable buffers), so frames
//! received stay within the MTU.
//!
//! Notifications are batched: buffers given back to the receive queue and
//! frames queued for transmission are published to the device, and the
//! device notified, once per round — when a receive finds the ring empty,
//! when the stack ends a round of transmits ([`Netif::flush`]), before the
//! guest idles ([`Device::flush`](super::Device::flush)), or when half a
//! ring waits — never once per frame.
//!
//! A device that breaks its side of the rings (a receive buffer returned
//! twice, a transmit chain it does not have, a used entry or index out of
//! a ring's range) or stops on its own after
//! DRIVER_OK (its status reads 0, or has DEVICE_NEEDS_RESET: looked at when
//! the receive ring has been quiet for [`STALL_NS`]) is not used any more:
//! transmits fail with [`NetError::Io`], the first receive after it too
//! (later ones find nothing: a dead link, not an error the stack would
//! retry at once for ever), and the log says why.
//!
//! [`STALL_NS`]: super::transport::STALL_NS

use super::transport::{SetupError, Transport, Watchdog};
use super::{Bus, Device};
use crate::virtqueue::{Dma, Queue, DESC_NEXT, DESC_WRITE};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};
use lamina_core::device::{NetError, Netif, Offloads};
use lamina_wire::offload::{checksum_ok, complete_checksum, Coalescer};
use lamina_wire::vnet::{self, VIRTIO1_HEADER_LEN};

/// VIRTIO_NET_F_CSUM: the device completes partial checksums we send.
const F_CSUM: u64 = 1 << 0;
/// VIRTIO_NET_F_GUEST_CSUM: the device may send partial checksums, or
/// vouch for them (`DATA_VALID`).
const F_GUEST_CSUM: u64 = 1 << 1;
/// VIRTIO_NET_F_MAC: the configuration space holds the MAC address.
const F_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_HOST_TSO4: the device segments TCP/IPv4 frames we send.
const F_HOST_TSO4: u64 = 1 << 11;
/// VIRTIO_NET_F_HOST_TSO6: the same for TCP/IPv6 (accepted as offered;
/// [`Coalescer`] joins IPv4 segments only).
const F_HOST_TSO6: u64 = 1 << 12;
/// What [`Coalescer`] needs of the device.
const OFFLOAD: u64 = F_CSUM | F_GUEST_CSUM | F_HOST_TSO4;
/// The header before every frame (`struct virtio_net_hdr` with
/// `num_buffers`, as virtio 1.x always has it).
const HEADER: usize = VIRTIO1_HEADER_LEN;
/// Bytes per buffer: a header and the largest Ethernet frame, rounded up.
const BUFFER: usize = 2048;
/// Largest IP packet carried.
const MTU: usize = 1500;
/// Ethernet header.
const ETHERNET_HEADER: usize = 14;
/// At most this many entries per queue.
const QUEUE_MAX: u16 = 256;
/// Longest wait for a transmit slot before a frame is dropped.
const TX_FULL_WAIT_NS: u64 = 20_000_000;
/// The longest frame sent, header included: a coalesced batch of a 64 KiB
/// IP packet, in a chain of up to 33 descriptors.
const TX_MAX: usize = HEADER + Offloads::MAX_LARGE_FRAME;
/// No next descriptor in [`NetDevice::tx_next`].
const NO_NEXT: u16 = u16::MAX;

/// A virtio-net device; shared between its [`VirtioNetif`] and the park.
pub struct NetDevice<B: Bus> {
    transport: Transport<B>,
    rx: Queue,
    rx_buffers: Dma,
    tx: Queue,
    tx_buffers: Dma,
    /// Transmit descriptors free for a frame.
    tx_free: RefCell<Vec<u16>>,
    /// For each transmit descriptor in a chain, the next one (or
    /// [`NO_NEXT`]): what goes back to `tx_free` with the chain's head.
    tx_next: RefCell<Vec<u16>>,
    /// Which transmit descriptors head a chain the device has.
    tx_heads: RefCell<Vec<bool>>,
    /// Which receive buffers the device has (published and not returned).
    rx_offered: RefCell<Vec<bool>>,
    /// Receive buffers offered again but not yet published.
    rx_unpublished: RefCell<Vec<u16>>,
    /// The device returned a transmit descriptor that heads no chain it
    /// has, a receive buffer it did not have, or stopped: it is not used
    /// any more.
    failed: Cell<bool>,
    /// A receive has returned the failure: later ones find nothing.
    failure_told: Cell<bool>,
    /// The receive ring returned a buffer since the watchdog last looked.
    rx_moved: Cell<bool>,
    /// When the receive ring last returned a buffer, or the status was
    /// last looked at.
    watchdog: Watchdog,
    /// With the offloads on: the frames being joined, and the header each
    /// goes out behind.
    coalescer: Option<RefCell<Coalescer>>,
    mac: [u8; 6],
    /// The task waiting for a frame.
    rx_waker: RefCell<Option<Waker>>,
}

impl<B: Bus> NetDevice<B> {
    /// Brings the device up: queues set up, every receive buffer offered.
    /// A device without an address of its own gets QEMU's default one,
    /// 52:54:00:12:34:56, plus `index`.
    pub fn new(transport: Transport<B>, index: usize) -> Result<NetDevice<B>, SetupError> {
        let features =
            transport.begin(F_MAC | F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_HOST_TSO6)?;
        let rx = transport.queue(0, QUEUE_MAX, 2)?;
        let tx = transport.queue(1, QUEUE_MAX, 2)?;
        let mac = if features & F_MAC != 0 {
            transport.config::<6>(0)
        } else {
            [
                0x52,
                0x54,
                0x00,
                0x12,
                0x34,
                0x56u8.wrapping_add(index as u8),
            ]
        };
        let rx_buffers = Dma::new(rx.size() as usize * BUFFER);
        for id in 0..rx.size() {
            rx.set_descriptor(
                id,
                rx_buffers.address(id as usize * BUFFER),
                BUFFER as u32,
                DESC_WRITE,
                0,
            );
            rx.push(id);
        }
        let tx_buffers = Dma::new(tx.size() as usize * BUFFER);
        tx.suppress_interrupts(); // completions are collected when sending
        let tx_free = (0..tx.size()).rev().collect();
        let tx_next = alloc::vec![NO_NEXT; tx.size() as usize];
        let tx_heads = alloc::vec![false; tx.size() as usize];
        let coalescer = (features & OFFLOAD == OFFLOAD)
            .then(|| RefCell::new(Coalescer::with_header(HEADER, TX_MAX)));
        let rx_offered = alloc::vec![true; rx.size() as usize];
        transport.finish();
        let watchdog = Watchdog::new(transport.now_ns());
        let device = NetDevice {
            transport,
            rx,
            rx_buffers,
            tx,
            tx_buffers,
            tx_free: RefCell::new(tx_free),
            tx_next: RefCell::new(tx_next),
            tx_heads: RefCell::new(tx_heads),
            rx_offered: RefCell::new(rx_offered),
            rx_unpublished: RefCell::new(Vec::new()),
            failed: Cell::new(false),
            failure_told: Cell::new(false),
            rx_moved: Cell::new(false),
            watchdog,
            coalescer,
            mac,
            rx_waker: RefCell::new(None),
        };
        device.flush();
        Ok(device)
    }

    fn flush_queue(&self, queue: &Queue) {
        if queue.index == self.rx.index {
            // The device may return these from now on.
            let mut offered = self.rx_offered.borrow_mut();
            for id in self.rx_unpublished.borrow_mut().drain(..) {
                if let Some(offered) = offered.get_mut(id as usize) {
                    *offered = true;
                }
            }
        }
        if queue.publish() {
            self.transport.notify(queue.index);
        }
    }

    /// Publishes now if half a ring waits, so that a long burst does not
    /// starve the device.
    fn flush_if_full(&self, queue: &Queue) {
        if queue.unpublished() >= queue.size() as usize / 2 {
            self.flush_queue(queue);
        }
    }

    /// Offers receive buffer `id` to the device again.
    fn recycle(&self, id: u16) {
        self.rx_unpublished.borrow_mut().push(id);
        self.rx.push(id);
    }

    /// Marks the device as not used any more, saying why.
    fn fail(&self, why: core::fmt::Arguments<'_>) {
        log::error!("virtio-net: {why}: the device is not used any more");
        self.failed.set(true);
    }

    /// With the receive ring quiet for
    /// [`STALL_NS`](super::transport::STALL_NS), looks at the device's
    /// status (at most once per `STALL_NS`): a device that stopped fails.
    fn check_stalled(&self) {
        if self.failed.get() || self.rx.has_used() {
            return;
        }
        let now = self.transport.now_ns();
        if self.rx_moved.replace(false) {
            self.watchdog.progress(now);
            return;
        }
        if !self.watchdog.due(now) {
            return;
        }
        if let Err(lost) = self.transport.check_running() {
            self.fail(format_args!("{lost}"));
        }
    }

    /// The next received frame copied into `buf`; one longer than `buf` is
    /// dropped and reported as `TooLarge`, as the `Netif` trait says.
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let mut recycled = 0;
        let result = loop {
            if self.failed.get() {
                if self.failure_told.replace(true) {
                    return Ok(None);
                }
                break Err(NetError::Io);
            }
            let Some((id, len)) = self.rx.pop_used() else {
                if self.rx.is_broken() {
                    // Told once, as any failure: the stack's receive loop
                    // takes an error as a dropped frame and asks again.
                    self.fail(format_args!("it broke the receive ring"));
                    self.failure_told.set(true);
                    break Err(NetError::Io);
                }
                break Ok(None);
            };
            // A buffer the device does not have (returned twice) may be
            // the one a frame is being copied out of: its bytes are not
            // the device's to write, nor its frame to trust.
            let had = self
                .rx_offered
                .borrow_mut()
                .get_mut(id as usize)
                .map(|offered| core::mem::replace(offered, false));
            if had != Some(true) {
                self.fail(format_args!(
                    "the device returned receive buffer {id}, which it did not have (returned twice)"
                ));
                self.failure_told.set(true);
                break Err(NetError::Io);
            }
            self.rx_moved.set(true);
            let len = len as usize;
            recycled += 1;
            if !(HEADER..=BUFFER).contains(&len) {
                // A length the device made up: drop the frame.
                self.recycle(id);
                continue;
            }
            let frame = len - HEADER;
            let Some(out) = buf.get_mut(..frame) else {
                self.recycle(id);
                break Err(NetError::TooLarge);
            };
            let mut header = [0u8; HEADER];
            let copied = self.rx_buffers.read(id as usize * BUFFER, &mut header)
                && self.rx_buffers.read(id as usize * BUFFER + HEADER, out);
            self.recycle(id);
            let header = vnet::Repr::read(&header).unwrap_or_default();
            break if !copied {
                Err(NetError::Io)
            } else if self.accept(&header, out) {
                Ok(Some(frame))
            } else {
                Err(NetError::Io) // counted by the stack as a dropped frame
            };
        };
        match result {
            // The ring is empty: the end of a round.
            Ok(None) => self.flush_queue(&self.rx),
            _ if recycled > 0 => self.flush_if_full(&self.rx),
            _ => {}
        }
        result
    }

    /// Whether a received frame may go to the stack. With the offloads on,
    /// the stack verifies no TCP/UDP checksum: one the device did not vouch
    /// for is verified here. Without them, a partial checksum (which the
    /// device should not send then) is completed.
    fn accept(&self, header: &vnet::Repr, frame: &mut [u8]) -> bool {
        if self.coalescer.is_some() {
            return checksum_ok(header, frame);
        }
        if header.flags & vnet::flags::NEEDS_CSUM == 0 {
            return true;
        }
        complete_checksum(header, frame)
    }

    /// Takes back the transmit chains the device is done with. A used
    /// entry that names no chain's head (a descriptor inside a chain, or a
    /// chain returned twice) fails the device: freeing what it names could
    /// hand out descriptors the device still reads.
    fn reclaim(&self, free: &mut Vec<u16>) {
        let mut next = self.tx_next.borrow_mut();
        let mut heads = self.tx_heads.borrow_mut();
        while let Some((head, _)) = self.tx.pop_used() {
            match heads.get_mut(head as usize) {
                Some(in_flight) if *in_flight => *in_flight = false,
                _ => {
                    self.fail(format_args!(
                        "the device returned transmit descriptor {head}, which heads no frame it has"
                    ));
                    return;
                }
            }
            let mut id = head;
            // A chain's descriptors are freed once, whatever id the device
            // reports; a chain is never longer than the ring.
            for _ in 0..self.tx.size() {
                if !free.contains(&id) {
                    free.push(id);
                }
                let Some(following) = next.get_mut(id as usize) else {
                    break;
                };
                id = core::mem::replace(following, NO_NEXT);
                if id == NO_NEXT {
                    break;
                }
            }
        }
    }

    /// Takes one frame from the stack: through the coalescer with the
    /// offloads on (it may hold it back until [`flush_coalescer`](Self::flush_coalescer)),
    /// else behind an empty header.
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MTU + ETHERNET_HEADER {
            return Err(NetError::TooLarge);
        }
        match &self.coalescer {
            Some(coalescer) => {
                let mut result = Ok(());
                coalescer.borrow_mut().push(frame, &mut |bytes| {
                    if let Err(e) = self.enqueue(&[], bytes) {
                        result = Err(e);
                    }
                });
                result
            }
            None => self.enqueue(&[0; HEADER], frame),
        }
    }

    /// Sends the batch the coalescer holds, if any.
    fn flush_coalescer(&self) {
        if let Some(coalescer) = &self.coalescer {
            coalescer.borrow_mut().flush(&mut |bytes| {
                if self.enqueue(&[], bytes).is_err() {
                    log::debug!("virtio-net: a coalesced frame was not sent");
                }
            });
        }
    }

    /// Queues `head` then `body` (a header and a frame) in a chain of as
    /// many buffers as they fill. With too few descriptors free, the
    /// device is told and given up to TX_FULL_WAIT_NS to free them (it
    /// works concurrently: under QEMU in its main loop, under KVM in its
    /// I/O thread); after that the frame is dropped, as a busy link does.
    /// Dropping at once would cost a TCP retransmission timeout for every
    /// burst larger than the ring.
    fn enqueue(&self, head: &[u8], body: &[u8]) -> Result<(), NetError> {
        let len = head.len() + body.len();
        if len > TX_MAX {
            return Err(NetError::TooLarge);
        }
        let needed = len.div_ceil(BUFFER).max(1);
        let mut free = self.tx_free.borrow_mut();
        self.reclaim(&mut free);
        if free.len() < needed {
            self.flush_queue(&self.tx);
            let start = self.transport.now_ns();
            while free.len() < needed
                && self.transport.now_ns().saturating_sub(start) < TX_FULL_WAIT_NS
            {
                core::hint::spin_loop();
                self.reclaim(&mut free);
            }
        }
        if self.tx.is_broken() && !self.failed.get() {
            self.fail(format_args!("it broke the transmit ring"));
        }
        if self.failed.get() {
            return Err(NetError::Io);
        }
        if free.len() < needed {
            return Ok(()); // dropped
        }
        // The chain: the last `needed` free descriptors, from the end.
        let base = free.len() - needed;
        let chain = |i: usize| free[base + needed - 1 - i];
        let mut next = self.tx_next.borrow_mut();
        let (mut head, mut body) = (head, body);
        for i in 0..needed {
            let id = chain(i);
            let at = id as usize * BUFFER;
            // This buffer: what is left of the header, then of the frame.
            let from_head = head.len().min(BUFFER);
            let from_body = body.len().min(BUFFER - from_head);
            let written = self.tx_buffers.write(at, &head[..from_head])
                && self.tx_buffers.write(at + from_head, &body[..from_body]);
            if !written {
                return Err(NetError::TooLarge); // nothing offered yet
            }
            head = &head[from_head..];
            body = &body[from_body..];
            let following = (i + 1 < needed).then(|| chain(i + 1));
            next[id as usize] = following.unwrap_or(NO_NEXT);
            self.tx.set_descriptor(
                id,
                self.tx_buffers.address(at),
                (from_head + from_body) as u32,
                if following.is_some() { DESC_NEXT } else { 0 },
                following.unwrap_or(0),
            );
        }
        self.tx.push(chain(0));
        self.tx_heads.borrow_mut()[chain(0) as usize] = true;
        free.truncate(base);
        // Half the descriptors waiting is half a ring, however many
        // chains they make.
        let low = free.len() < self.tx.size() as usize / 2;
        drop((next, free));
        if low {
            self.flush_queue(&self.tx);
        } else {
            self.flush_if_full(&self.tx);
        }
        Ok(())
    }
}

impl<B: Bus> Device<B> for NetDevice<B> {
    fn flush(&self) {
        self.flush_coalescer();
        self.flush_queue(&self.rx);
        self.flush_queue(&self.tx);
    }

    fn poll(&self) -> bool {
        self.transport.ack_interrupt();
        self.check_stalled();
        // A failed device wakes the receiver once, to tell it.
        let ready = if self.failed.get() {
            !self.failure_told.get()
        } else {
            self.rx.has_used()
        };
        if !ready {
            return false;
        }
        let waker = self.rx_waker.borrow_mut().take();
        waker.map(core::task::Waker::wake).is_some()
    }

    fn transport(&self) -> &Transport<B> {
        &self.transport
    }
}

/// The [`Netif`] of a virtio-net device.
pub struct VirtioNetif<B: Bus> {
    device: Rc<NetDevice<B>>,
}

impl<B: Bus> VirtioNetif<B> {
    /// The network interface over `device`.
    pub fn new(device: Rc<NetDevice<B>>) -> Self {
        VirtioNetif { device }
    }
}

impl<B: Bus> Netif for VirtioNetif<B> {
    fn mac(&self) -> [u8; 6] {
        self.device.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| match self.device.try_receive(buf) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => {
                let mut waker = self.device.rx_waker.borrow_mut();
                match waker.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        })
        .await
    }

    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        self.device.try_receive(buf)
    }

    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        self.device.transmit(frame)
    }

    /// Checksums are the device's when it takes them both ways and also
    /// segments (what [`Coalescer`] needs); received frames never exceed
    /// the MTU.
    fn offloads(&self) -> Offloads {
        Offloads {
            checksum: self.device.coalescer.is_some(),
            large_receive: false,
            // QEMU's device moves frames beside the vCPU, but answering
            // bursts in parts was measured on hvt only.
            parallel_io: false,
        }
    }

    /// The end of the stack's round of transmits: the batch being joined
    /// and the frames queued go to the device now, with one notification,
    /// rather than when the guest next idles (other tasks may run first).
    fn flush(&self) {
        self.device.flush_coalescer();
        self.device.flush_queue(&self.device.tx);
    }
}
