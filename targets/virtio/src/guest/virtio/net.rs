//! virtio-net (virtio 1.2, section 5.1): one receive and one transmit
//! queue, no offloads, one 2 KiB buffer per descriptor.
//!
//! Notifications are batched: buffers given back to the receive queue and
//! frames queued for transmission are published to the device, and the
//! device notified, once per round — when a receive finds the ring empty,
//! when the stack ends a round of transmits ([`Netif::flush`]), before the
//! guest idles ([`Device::flush`](super::Device::flush)), or when half a
//! ring waits — never once per frame.

use super::transport::{SetupError, Transport};
use super::Device;
use crate::guest::hw;
use crate::virtqueue::{Dma, Queue, DESC_WRITE};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};
use lamina_core::device::{NetError, Netif};

/// VIRTIO_NET_F_MAC: the configuration space holds the MAC address.
const F_MAC: u64 = 1 << 5;
/// The header before every frame (`struct virtio_net_hdr` with
/// `num_buffers`, as virtio 1.x always has it).
const HEADER: usize = 12;
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

/// A virtio-net device; shared between its [`VirtioNetif`] and the park.
pub struct NetDevice {
    transport: Transport,
    rx: Queue,
    rx_buffers: Dma,
    tx: Queue,
    tx_buffers: Dma,
    /// Transmit descriptors free for a frame.
    tx_free: RefCell<Vec<u16>>,
    mac: [u8; 6],
    /// The task waiting for a frame.
    rx_waker: RefCell<Option<Waker>>,
}

impl NetDevice {
    /// Brings the device up: queues set up, every receive buffer offered.
    /// A device without an address of its own gets QEMU's default one,
    /// 52:54:00:12:34:56, plus `index`.
    pub fn new(transport: Transport, index: usize) -> Result<NetDevice, SetupError> {
        let features = transport.begin(F_MAC)?;
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
        transport.finish();
        let device = NetDevice {
            transport,
            rx,
            rx_buffers,
            tx,
            tx_buffers,
            tx_free: RefCell::new(tx_free),
            mac,
            rx_waker: RefCell::new(None),
        };
        device.flush();
        Ok(device)
    }

    fn flush_queue(&self, queue: &Queue) {
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
        self.rx.push(id);
    }

    /// The next received frame copied into `buf`.
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        if buf.len() < MTU + ETHERNET_HEADER {
            return Err(NetError::TooLarge);
        }
        let mut recycled = 0;
        let result = loop {
            let Some((id, len)) = self.rx.pop_used() else {
                if self.rx.is_broken() {
                    break Err(NetError::Io);
                }
                break Ok(None);
            };
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
            let copied = self.rx_buffers.read(id as usize * BUFFER + HEADER, out);
            self.recycle(id);
            break if copied {
                Ok(Some(frame))
            } else {
                Err(NetError::Io)
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

    /// Takes back the transmit descriptors the device is done with.
    fn reclaim(&self, free: &mut Vec<u16>) {
        while let Some((id, _)) = self.tx.pop_used() {
            if !free.contains(&id) {
                free.push(id);
            }
        }
    }

    /// Queues one frame. With the ring full, the device is told and given
    /// up to TX_FULL_WAIT_NS to free a slot (it works concurrently: under
    /// QEMU in its main loop, under KVM in its I/O thread); after that the
    /// frame is dropped, as a busy link does. Dropping at once would cost a
    /// TCP retransmission timeout for every burst larger than the ring.
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MTU + ETHERNET_HEADER {
            return Err(NetError::TooLarge);
        }
        let mut free = self.tx_free.borrow_mut();
        self.reclaim(&mut free);
        if free.is_empty() {
            self.flush_queue(&self.tx);
            let start = hw::monotonic_ns();
            while free.is_empty() && hw::monotonic_ns() - start < TX_FULL_WAIT_NS {
                core::hint::spin_loop();
                self.reclaim(&mut free);
            }
        }
        if self.tx.is_broken() {
            return Err(NetError::Io);
        }
        let Some(id) = free.pop() else {
            return Ok(()); // dropped
        };
        drop(free);
        let at = id as usize * BUFFER;
        let written =
            self.tx_buffers.write(at, &[0; HEADER]) && self.tx_buffers.write(at + HEADER, frame);
        if !written {
            self.tx_free.borrow_mut().push(id);
            return Err(NetError::TooLarge);
        }
        let len = (HEADER + frame.len()) as u32;
        self.tx
            .set_descriptor(id, self.tx_buffers.address(at), len, 0, 0);
        self.tx.push(id);
        self.flush_if_full(&self.tx);
        Ok(())
    }
}

impl Device for NetDevice {
    fn flush(&self) {
        self.flush_queue(&self.rx);
        self.flush_queue(&self.tx);
    }

    fn poll(&self) -> bool {
        self.transport.ack_interrupt();
        if !(self.rx.has_used() || self.rx.is_broken()) {
            return false;
        }
        let waker = self.rx_waker.borrow_mut().take();
        waker.map(core::task::Waker::wake).is_some()
    }

    fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// The [`Netif`] of a virtio-net device.
pub struct VirtioNetif {
    device: Rc<NetDevice>,
}

impl VirtioNetif {
    /// The network interface over `device`.
    pub fn new(device: Rc<NetDevice>) -> Self {
        VirtioNetif { device }
    }
}

impl Netif for VirtioNetif {
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

    /// The end of the stack's round of transmits: the frames go to the
    /// device now, with one notification, rather than when the guest next
    /// idles (other tasks may run first).
    fn flush(&self) {
        self.device.flush_queue(&self.device.tx);
    }
}
