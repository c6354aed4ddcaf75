//! virtio-blk (virtio 1.2, section 5.2): one transfer at a time, through
//! bounce buffers owned by the driver, so that a caller who stops waiting
//! (drops the future) never leaves the device writing into freed memory.
//! A transfer longer than a chunk goes as several requests in flight at
//! once, offered with one notification. A request the device has not
//! completed for [`STALL_NS`] has the device's status looked at: a device
//! that reset itself or needs a reset fails the request and is not used
//! any more, instead of the caller waiting for ever.
//!
//! [`STALL_NS`]: super::transport::STALL_NS

use super::transport::{SetupError, Transport, Watchdog};
use super::{Bus, Device};
use crate::virtqueue::{Dma, Queue, DESC_NEXT, DESC_WRITE};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Context, Poll};
use lamina_core::device::{Block, BlockError, BlockInfo};

/// VIRTIO_BLK_F_RO: the device is read-only.
const F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_FLUSH: the device has a write cache and takes flush
/// requests. Without it the device commits writes before completing them
/// (virtio 1.2, 5.2.6.2: write-through when not negotiated).
const F_FLUSH: u64 = 1 << 9;
/// virtio-blk counts in 512-byte sectors whatever the medium's block size.
const SECTOR: u32 = 512;
/// Largest transfer per request; longer ones are split.
const CHUNK: usize = 64 * 1024;
/// Requests in flight at most (each takes three descriptors and a slot of
/// the bounce buffer).
const SLOTS: usize = 4;
/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
/// Status byte of a successful request.
const S_OK: u8 = 0;
/// Where a slot's header, status byte and data sit in its part of the
/// bounce buffer.
const HEADER_AT: usize = 0;
const STATUS_AT: usize = 16;
const DATA_AT: usize = 512;
/// Bytes of the bounce buffer per slot.
const SLOT_BYTES: usize = DATA_AT + CHUNK;

/// A virtio-blk device; shared between its [`VirtioBlock`] and the park.
pub struct BlockDevice<B: Bus> {
    transport: Transport<B>,
    queue: Queue,
    bounce: Dma,
    /// Request slots: as many as [`SLOTS`] and the queue allow.
    slots: usize,
    info: BlockInfo,
    read_only: bool,
    /// VIRTIO_BLK_F_FLUSH was negotiated.
    flushes: bool,
    /// A task owns the bounce buffer.
    busy: Cell<bool>,
    /// The slots whose requests the device has and has not yet completed,
    /// a bit each.
    in_flight: Cell<u8>,
    /// The device completed a request it did not have, or stopped (reset
    /// itself, needs a reset): it is not used any more.
    failed: Cell<bool>,
    /// When the requests in flight last saw a completion.
    watchdog: Watchdog,
    /// Tasks waiting for a completion or for the bounce buffer.
    waiters: RefCell<Vec<core::task::Waker>>,
}

impl<B: Bus> BlockDevice<B> {
    /// Brings the device up and reads its capacity.
    pub fn new(transport: Transport<B>) -> Result<BlockDevice<B>, SetupError> {
        let features = transport.begin(F_RO | F_FLUSH)?;
        let queue = transport.queue(0, 16, 3)?;
        let sectors = u64::from_le_bytes(transport.config::<8>(0));
        // `BlockInfo::capacity` and the libraries count bytes in a u64.
        if sectors.checked_mul(u64::from(SECTOR)).is_none() {
            return Err(SetupError::Capacity { sectors });
        }
        let slots = SLOTS.min(queue.size() as usize / 3);
        let bounce = Dma::new(slots * SLOT_BYTES);
        transport.finish();
        let watchdog = Watchdog::new(transport.now_ns());
        Ok(BlockDevice {
            transport,
            queue,
            bounce,
            slots,
            info: BlockInfo {
                sector_size: SECTOR,
                sectors,
            },
            read_only: features & F_RO != 0,
            flushes: features & F_FLUSH != 0,
            busy: Cell::new(false),
            in_flight: Cell::new(0),
            failed: Cell::new(false),
            watchdog,
            waiters: RefCell::new(Vec::new()),
        })
    }

    fn wait(&self, cx: &Context<'_>) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
    }

    /// Takes the completions the device returned; whether every request
    /// in flight has completed (true when none was).
    /// A completion that names no request in flight (a descriptor other
    /// than a request's head, or a request completed twice) fails the
    /// device: its slots' bytes can no longer be trusted to be the driver's.
    fn collect(&self) -> Result<bool, BlockError> {
        while self.in_flight.get() != 0 {
            if self.failed.get() {
                return Err(BlockError::Io);
            }
            match self.queue.pop_used() {
                Some((id, _)) => {
                    let slot = usize::from(id / 3);
                    let bit = 1u8.checked_shl(slot as u32).unwrap_or(0);
                    if id % 3 != 0 || slot >= self.slots || self.in_flight.get() & bit == 0 {
                        log::error!(
                            "virtio-blk: the device completed descriptor {id}, which heads no request in flight: the device is not used any more"
                        );
                        self.failed.set(true);
                        return Err(BlockError::Io);
                    }
                    self.in_flight.set(self.in_flight.get() & !bit);
                    self.watchdog.progress(self.transport.now_ns());
                }
                None if self.queue.is_broken() => return Err(BlockError::Io),
                None => return Ok(false),
            }
        }
        if self.failed.get() {
            return Err(BlockError::Io);
        }
        Ok(true)
    }

    /// Waits for the bounce buffer and a quiet device.
    async fn acquire(&self) -> Result<Guard<'_, B>, BlockError> {
        poll_fn(|cx| {
            if !self.busy.get() {
                match self.collect() {
                    Ok(true) => {
                        self.busy.set(true);
                        return Poll::Ready(Ok(Guard(self)));
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(false) => {}
                }
            }
            self.wait(cx);
            Poll::Pending
        })
        .await
    }

    /// Offers request `slot` (not yet published): `kind` at `sector` of
    /// `len` bytes (at most CHUNK) in the slot's data area, which holds
    /// the data of a write. A request of no bytes (a flush) chains the
    /// header straight to the status byte.
    fn submit(&self, slot: usize, kind: u32, sector: u64, len: usize) {
        let base = slot * SLOT_BYTES;
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.bounce.write(base + HEADER_AT, &header);
        self.bounce.write(base + STATUS_AT, &[0xff]);
        let head = (3 * slot) as u16;
        let (data, status) = (head + 1, head + 2);
        let after_header = if len == 0 { status } else { data };
        let data_flags = if kind == T_IN {
            DESC_WRITE | DESC_NEXT
        } else {
            DESC_NEXT
        };
        let address = |offset| self.bounce.address(base + offset);
        self.queue
            .set_descriptor(head, address(HEADER_AT), 16, DESC_NEXT, after_header);
        self.queue
            .set_descriptor(data, address(DATA_AT), len as u32, data_flags, status);
        self.queue
            .set_descriptor(status, address(STATUS_AT), 1, DESC_WRITE, 0);
        self.queue.push(head);
        self.in_flight.set(self.in_flight.get() | 1 << slot);
    }

    /// One batch of a read or write (`kind`): `len` bytes at `sector`, at
    /// most CHUNK per slot, offered as one request per slot, published
    /// together and waited for. A write's data is in the slots already; a
    /// read's is there once this returns.
    async fn transfer_batch(&self, kind: u32, sector: u64, len: usize) -> Result<(), BlockError> {
        let mut count = 0;
        for (slot, start) in (0..len).step_by(CHUNK).enumerate() {
            let chunk_at = sector + (start / SECTOR as usize) as u64;
            self.submit(slot, kind, chunk_at, CHUNK.min(len - start));
            count += 1;
        }
        self.complete(count).await
    }

    /// Publishes the submitted requests with one notification, waits for
    /// all of them, and checks the status of slots `0..count`.
    async fn complete(&self, count: usize) -> Result<(), BlockError> {
        if self.queue.publish() {
            self.transport.notify(self.queue.index);
        }
        self.watchdog.progress(self.transport.now_ns());
        poll_fn(|cx| match self.collect() {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => {
                self.wait(cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        })
        .await?;
        for slot in 0..count {
            let mut status = [0xffu8];
            self.bounce.read(slot * SLOT_BYTES + STATUS_AT, &mut status);
            if status[0] != S_OK {
                return Err(BlockError::Io);
            }
        }
        Ok(())
    }

    /// With requests in flight and no completion for
    /// [`STALL_NS`](super::transport::STALL_NS), looks at the device's
    /// status: a device that stopped fails (its waiting
    /// tasks are woken by [`Device::poll`] and get an error).
    fn check_stalled(&self) {
        if self.in_flight.get() == 0 || self.failed.get() || self.queue.has_used() {
            return;
        }
        if !self.watchdog.due(self.transport.now_ns()) {
            return;
        }
        if let Err(lost) = self.transport.check_running() {
            log::error!(
                "virtio-blk: {lost}; its requests fail and the device is not used any more"
            );
            self.failed.set(true);
        }
    }

    /// Wakes every waiting task; returns whether there was any.
    fn wake_all(&self) -> bool {
        let waiters = core::mem::take(&mut *self.waiters.borrow_mut());
        let any = !waiters.is_empty();
        waiters.into_iter().for_each(core::task::Waker::wake);
        any
    }
}

/// Owns the bounce buffer; gives it back when dropped, also when the
/// caller stops waiting halfway.
struct Guard<'a, B: Bus>(&'a BlockDevice<B>);

impl<B: Bus> Drop for Guard<'_, B> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        self.0.wake_all();
    }
}

impl<B: Bus> Device<B> for BlockDevice<B> {
    fn flush(&self) {}

    fn poll(&self) -> bool {
        self.transport.ack_interrupt();
        self.check_stalled();
        if !(self.queue.has_used() || self.queue.is_broken() || self.failed.get()) {
            return false;
        }
        self.wake_all()
    }

    fn transport(&self) -> &Transport<B> {
        &self.transport
    }
}

/// The [`Block`] device of a virtio-blk device.
pub struct VirtioBlock<B: Bus> {
    device: Rc<BlockDevice<B>>,
}

impl<B: Bus> VirtioBlock<B> {
    /// The block device over `device`.
    pub fn new(device: Rc<BlockDevice<B>>) -> Self {
        VirtioBlock { device }
    }
}

impl<B: Bus> Block for VirtioBlock<B> {
    fn info(&self) -> BlockInfo {
        self.device.info
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        let device = &*self.device;
        let _guard = device.acquire().await?;
        let per_batch = CHUNK * device.slots;
        for (b, batch) in buf.chunks_mut(per_batch).enumerate() {
            let at = sector + (b * per_batch / SECTOR as usize) as u64;
            device.transfer_batch(T_IN, at, batch.len()).await?;
            for (i, chunk) in batch.chunks_mut(CHUNK).enumerate() {
                if !device.bounce.read(i * SLOT_BYTES + DATA_AT, chunk) {
                    return Err(BlockError::Io);
                }
            }
        }
        Ok(())
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        let device = &*self.device;
        if device.read_only {
            return Err(BlockError::ReadOnly);
        }
        let _guard = device.acquire().await?;
        let per_batch = CHUNK * device.slots;
        for (b, batch) in buf.chunks(per_batch).enumerate() {
            let at = sector + (b * per_batch / SECTOR as usize) as u64;
            // Every chunk copied before any request is offered: an error
            // leaves nothing half-submitted.
            for (i, chunk) in batch.chunks(CHUNK).enumerate() {
                if !device.bounce.write(i * SLOT_BYTES + DATA_AT, chunk) {
                    return Err(BlockError::Io);
                }
            }
            device.transfer_batch(T_OUT, at, batch.len()).await?;
        }
        Ok(())
    }

    /// A VIRTIO_BLK_T_FLUSH request when the device has a write cache;
    /// nothing otherwise, since such a device completes a write only once
    /// it is committed.
    async fn flush(&self) -> Result<(), BlockError> {
        let device = &*self.device;
        if !device.flushes {
            return Ok(());
        }
        let _guard = device.acquire().await?;
        device.submit(0, T_FLUSH, 0, 0);
        device.complete(1).await
    }
}
