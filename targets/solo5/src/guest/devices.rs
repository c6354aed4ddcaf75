//! The device traits over the Solo5 ABI: block and network devices through
//! the tender, and the platform that acquires them by manifest name. The
//! console, the clock and random numbers are `lamina-metal`'s over
//! [`Solo5Machine`].

use super::boot::Solo5Machine;
use super::park::GuestPark;
use super::sys::{self, DeviceHandle, IoError};
use alloc::rc::Rc;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::Poll;
use lamina_abi::mft::{block_features, net_features, DeviceType, Manifest};
use lamina_core::device::*;
use lamina_core::platform::{DeviceError, Platform};
use lamina_core::runtime::Handle;
use lamina_metal::devices::{self as metal, MetalClock, MetalConsole, Stacks};
use lamina_net::{NetArgs, NetStack};
use lamina_wire::offload::Coalescer;

/// The console: one tender call per write.
pub type SoloConsole = MetalConsole<Solo5Machine>;

/// Monotonic time from the TSC (hvt) or `CLOCK_MONOTONIC` (spt); wall time
/// from the tender at the first call, advanced by the monotonic clock.
pub type SoloClock = MetalClock<Solo5Machine>;

/// Random bytes from a CSPRNG seeded by hardware entropy. A CPU without
/// RDRAND/RDSEED stops the unikernel rather than hand out predictable bytes.
pub use lamina_metal::random::ChaCha20Random as SoloRandom;

/// A block device through the tender: one sector per call (all Solo5's
/// tenders accept), or with Lamina's tenders many sectors per call and a
/// flush, as the manifest entry's [`block_features`] say; on Lamina's hvt
/// tender through the block ring ([`ring_io`]), several requests in
/// flight and no VM exit.
pub struct SoloBlock {
    handle: DeviceHandle,
    info: BlockInfo,
    /// The [`block_features`] the tender turned on.
    features: u16,
}

impl SoloBlock {
    /// Bytes of a `remaining`-byte transfer at byte `offset` that one
    /// tender call carries; 0 only for a transfer off the device, which
    /// `check_transfer` has refused already.
    fn transfer_len(&self, offset: u64, remaining: usize) -> usize {
        let size = self.info.sector_size as u64;
        if self.features & block_features::MULTI_SECTOR == 0 {
            return (size as usize).min(remaining);
        }
        // spt's seccomp filter allows what `spt_transfer_len` splits; the
        // hvt tender checks each call in full.
        let len = if cfg!(feature = "spt") {
            block_features::spt_transfer_len(offset, remaining as u64, size, self.info.capacity())
        } else {
            (remaining as u64).min(block_features::MAX_TRANSFER)
        };
        len as usize
    }

    /// Checks a transfer of `len` bytes at `sector`, then makes it in as
    /// few tender calls as allowed: `call(byte offset, range of the buffer)`.
    fn each_call<E>(
        &self,
        sector: u64,
        len: usize,
        mut call: impl FnMut(u64, core::ops::Range<usize>) -> Result<(), E>,
    ) -> Result<(), BlockError> {
        self.check_transfer(sector, len)?;
        let start = sector * self.info.sector_size as u64;
        let mut done = 0;
        while done < len {
            let offset = start + done as u64;
            let step = self.transfer_len(offset, len - done);
            if step == 0 {
                return Err(BlockError::OutOfRange);
            }
            call(offset, done..done + step).map_err(|_| BlockError::Io)?;
            done += step;
        }
        Ok(())
    }
}

#[cfg(feature = "hvt")]
impl SoloBlock {
    /// The block ring's requests for a checked transfer of `len` bytes at
    /// `sector` to or from the buffer at guest address `data`, in pieces of
    /// at most `MAX_TRANSFER` bytes.
    fn ring_requests(
        &self,
        operation: u32,
        sector: u64,
        data: u64,
        len: usize,
    ) -> Result<impl Iterator<Item = lamina_abi::block_ring::Request>, BlockError> {
        self.check_transfer(sector, len)?;
        let size = self.info.sector_size as u64;
        let piece = (block_features::MAX_TRANSFER / size).max(1) * size;
        let handle = self.handle.index as u32;
        Ok((0..len as u64)
            .step_by(piece as usize)
            .map(move |at| lamina_abi::block_ring::Request {
                operation,
                handle,
                sector: sector + at / size,
                data: data + at,
                len: piece.min(len as u64 - at) as u32,
                id: 0,
            }))
    }

    /// A checked transfer through the block ring (see `ring_requests`),
    /// several pieces in flight. The caller's borrow of the buffer lasts
    /// until this returns (or is dropped, which waits for the pieces in
    /// flight).
    async fn ring_transfer(
        &self,
        operation: u32,
        sector: u64,
        data: u64,
        len: usize,
    ) -> Result<(), BlockError> {
        let requests = self.ring_requests(operation, sector, data, len)?;
        ring_io::run(requests, ring_io::Wait::Look)
            .await
            .map_err(|_| BlockError::Io)
    }

    /// The ring's flush request for this device.
    fn ring_flush(&self) -> lamina_abi::block_ring::Request {
        lamina_abi::block_ring::Request {
            operation: lamina_abi::block_ring::op::FLUSH,
            handle: self.handle.index as u32,
            ..Default::default()
        }
    }
}

/// Block requests through the hvt block ring.
#[cfg(feature = "hvt")]
mod ring_io {
    use super::sys::block_ring::{self, Ticket};
    use super::sys::IoError;
    use alloc::collections::VecDeque;
    use core::future::poll_fn;
    use core::task::Poll;
    use lamina_abi::block_ring::Request;

    /// Requests of one transfer in flight at most, leaving room in the
    /// ring for other tasks' (8 MiB of 256 KiB pieces).
    const PER_TRANSFER: usize = 32;

    /// Requests in flight, oldest first. Dropped (the transfer's future
    /// dropped before its end), it waits for them: the tender may still
    /// be reading into or writing from their buffers.
    struct InFlight(VecDeque<Ticket>);

    impl Drop for InFlight {
        fn drop(&mut self) {
            for ticket in self.0.drain(..) {
                let _ = block_ring::wait(ticket);
            }
        }
    }

    /// Lets the executor run other tasks once, and this one again next.
    async fn yield_now() {
        let mut yielded = false;
        poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    /// How to wait for the answers.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Wait {
        /// From the tender's thread (kicked if asleep) for up to a look
        /// ([`block_ring::look_ns`]) at a time, then through one
        /// `BlockRingServe` exit.
        Look,
        /// For requests that take longer than the look (a flush, an
        /// `fdatasync` of tens of µs to milliseconds): if the tender's
        /// thread sleeps, through one `BlockRingServe` exit straight after
        /// submitting, the thread not kicked, which costs one exit and no
        /// wake-up (measured: a durable set on a busy host went through a
        /// kick, the look, the exit and a wait for the thread's lock); if
        /// it is awake, from it, looking for a flush's look
        /// ([`block_ring::Look::Flush`]) before the exit, so that a quick
        /// disk's flush costs no exit at all.
        ServeAtOnce,
    }

    /// Carries out `requests` with up to [`PER_TRANSFER`] in flight,
    /// waiting for their answers as `wait` says (other tasks run in
    /// between); the first failure is the result, after every request
    /// submitted has been answered.
    pub async fn run(
        mut requests: impl Iterator<Item = Request>,
        wait: Wait,
    ) -> Result<(), IoError> {
        let (wait, look) = match wait {
            Wait::ServeAtOnce if block_ring::thread_awake() => {
                (Wait::Look, block_ring::Look::Flush)
            }
            Wait::ServeAtOnce => (Wait::ServeAtOnce, block_ring::Look::Flush),
            Wait::Look => (Wait::Look, block_ring::Look::Transfer),
        };
        let mut in_flight = InFlight(VecDeque::new());
        let mut next = requests.next();
        let mut result = Ok(());
        // Since when no request has been submitted or answered, and
        // whether an exit has served the ring since.
        let mut stalled_since = None;
        let mut served_in_stall = false;
        loop {
            // Read before looking for answers: time the vCPU spent off its
            // CPU after a look (an interrupt, the host's scheduler) must not
            // count as a wait that went unanswered.
            let now = super::sys::monotonic_ns();
            let mut progress = false;
            let mut submitted = false;
            let mut answered = false;
            while let Some(request) = next.filter(|_| in_flight.0.len() < PER_TRANSFER) {
                let ticket = match wait {
                    Wait::Look => block_ring::submit(request),
                    Wait::ServeAtOnce => block_ring::submit_quietly(request),
                };
                match ticket {
                    Some(ticket) => {
                        in_flight.0.push_back(ticket);
                        next = requests.next();
                        progress = true;
                        submitted = true;
                    }
                    None => break, // full: other tasks' requests first
                }
            }
            if submitted && wait == Wait::ServeAtOnce {
                block_ring::serve_now();
            }
            while let Some(&ticket) = in_flight.0.front() {
                let Some(answer) = block_ring::take(ticket) else {
                    break;
                };
                in_flight.0.pop_front();
                progress = true;
                answered = true;
                if answer.is_err() {
                    result = answer;
                    next = None; // submit no more
                }
            }
            if answered && wait == Wait::Look && !served_in_stall {
                if let Some(since) = stalled_since {
                    block_ring::answered_after(look, now.saturating_sub(since));
                }
            }
            if in_flight.0.is_empty() && next.is_none() {
                return result;
            }
            if progress {
                stalled_since = None;
                served_in_stall = false;
            } else {
                let since = *stalled_since.get_or_insert(now);
                if now.saturating_sub(since) > block_ring::look_ns(look) {
                    block_ring::serve_after_look(look);
                    stalled_since = None;
                    served_in_stall = true;
                }
            }
            yield_now().await;
        }
    }
}

impl Block for SoloBlock {
    fn info(&self) -> BlockInfo {
        self.info
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        #[cfg(feature = "hvt")]
        if sys::block_ring::available() {
            use lamina_abi::block_ring::op;
            let data = buf.as_mut_ptr() as u64;
            return self.ring_transfer(op::READ, sector, data, buf.len()).await;
        }
        self.each_call(sector, buf.len(), |offset, range| {
            sys::block_read(self.handle, offset, &mut buf[range])
        })
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        #[cfg(feature = "hvt")]
        if sys::block_ring::available() {
            use lamina_abi::block_ring::op;
            let data = buf.as_ptr() as u64;
            return self.ring_transfer(op::WRITE, sector, data, buf.len()).await;
        }
        self.each_call(sector, buf.len(), |offset, range| {
            sys::block_write(self.handle, offset, &buf[range])
        })
    }

    /// With [`block_features::FLUSH`], the tender's `fdatasync(2)` of the
    /// backing file. Without it (Solo5's tenders: the base ABI has no
    /// flush), nothing: a write call returns once the tender's `pwrite(2)`
    /// did, so completed writes survive a crash of the guest or the
    /// tender, but not one of the host (they may still sit in its page
    /// cache).
    async fn flush(&self) -> Result<(), BlockError> {
        if self.features & block_features::FLUSH == 0 {
            return Ok(());
        }
        #[cfg(feature = "hvt")]
        if sys::block_ring::available() {
            let flush = core::iter::once(self.ring_flush());
            return ring_io::run(flush, ring_io::Wait::ServeAtOnce)
                .await
                .map_err(|_| BlockError::Io);
        }
        sys::block_flush(self.handle).map_err(|_| BlockError::Io)
    }

    /// On hvt's block ring the write's pieces and the flush behind them
    /// (the ring is served in order) go in one `BlockRingServe` exit: a
    /// durable set's commit record costs one exit and no wake-up of the
    /// tender's thread.
    async fn write_and_flush(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        #[cfg(feature = "hvt")]
        if sys::block_ring::available() && self.features & block_features::FLUSH != 0 {
            use lamina_abi::block_ring::op;
            let data = buf.as_ptr() as u64;
            let requests = self
                .ring_requests(op::WRITE, sector, data, buf.len())?
                .chain(core::iter::once(self.ring_flush()));
            return ring_io::run(requests, ring_io::Wait::ServeAtOnce)
                .await
                .map_err(|_| BlockError::Io);
        }
        self.write(sector, buf).await?;
        self.flush().await
    }
}

/// A network device: frames through the tender.
pub struct SoloNetif {
    handle: DeviceHandle,
    mac: [u8; 6],
    mtu: usize,
    park: Rc<GuestPark>,
    /// Frames carry a virtio-net header (Lamina's tenders on a tap):
    /// checksums and TCP segmentation are the host's.
    offload: Option<RefCell<Coalescer>>,
}

impl SoloNetif {
    /// Receives a frame behind its virtio-net header; a frame whose
    /// checksum is wrong is dropped, as a NIC would.
    fn receive_with_header(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let mut header = [0u8; lamina_wire::vnet::HEADER_LEN];
        let Some(len) =
            sys::net_read_with_header(self.handle, &mut header, buf).map_err(|_| NetError::Io)?
        else {
            return Ok(None);
        };
        let header = lamina_wire::vnet::Repr::read(&header).ok_or(NetError::Io)?;
        match buf.get(..len) {
            Some(frame) if lamina_wire::offload::checksum_ok(&header, frame) => Ok(Some(len)),
            _ => Err(NetError::Io), // counted by the stack as a dropped frame
        }
    }

    fn send(&self, frame: &[u8]) {
        // A busy link drops, as Ethernet does; protocols above retransmit.
        if let Err(IoError::Failed) = sys::net_write(self.handle, frame) {
            log::debug!("net: transmit failed");
        }
    }
}

impl Netif for SoloNetif {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| match self.try_receive(buf) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => {
                self.park.wait_for(self.handle.index, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        })
        .await
    }

    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let largest = if self.offload.is_some() {
            Offloads::MAX_LARGE_FRAME
        } else {
            self.mtu + 14
        };
        if buf.len() < largest {
            // The tender needs room for the largest frame. Receive into a
            // buffer that has it and copy what fits: a longer frame is
            // dropped and reported, as the Netif trait says. (The stack
            // always passes a full-size buffer and never takes this path.)
            let mut whole = alloc::vec![0u8; largest];
            return match self.try_receive(&mut whole)? {
                Some(n) => match buf.get_mut(..n) {
                    Some(into) => {
                        into.copy_from_slice(&whole[..n]);
                        Ok(Some(n))
                    }
                    None => Err(NetError::TooLarge),
                },
                None => Ok(None),
            };
        }
        if self.offload.is_some() {
            return self.receive_with_header(buf);
        }
        sys::net_read(self.handle, buf).map_err(|_| NetError::Io)
    }

    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > self.mtu + 14 {
            return Err(NetError::TooLarge);
        }
        match &self.offload {
            Some(coalescer) => coalescer
                .borrow_mut()
                .push(frame, &mut |frame| self.send(frame)),
            None => match sys::net_write(self.handle, frame) {
                Ok(()) | Err(IoError::Again) => {} // a busy link drops, as Ethernet does
                Err(IoError::Failed) => return Err(NetError::Io),
            },
        }
        Ok(())
    }

    fn offloads(&self) -> Offloads {
        let on = self.offload.is_some();
        Offloads {
            checksum: on,
            large_receive: on,
            parallel_io: sys::net_in_background(self.handle),
        }
    }

    fn flush(&self) {
        if let Some(coalescer) = &self.offload {
            coalescer.borrow_mut().flush(&mut |frame| self.send(frame));
        }
    }
}

/// The devices of a unikernel, acquired by name from the manifest.
pub struct GuestPlatform {
    park: Rc<GuestPark>,
    manifest: Manifest<'static>,
    stacks: Stacks,
}

impl GuestPlatform {
    pub(crate) fn new(
        park: Rc<GuestPark>,
        manifest: Manifest<'static>,
        runtime: Handle,
        net_args: NetArgs,
    ) -> Self {
        GuestPlatform {
            park,
            manifest,
            stacks: Stacks::new(runtime, net_args),
        }
    }

    fn acquire(
        &self,
        name: &str,
        kind: &'static str,
        device_type: DeviceType,
    ) -> Result<(DeviceHandle, lamina_abi::mft::Entry), DeviceError> {
        let not_attached = || DeviceError::NotAttached {
            kind,
            name: name.into(),
        };
        let (index, entry) = self
            .manifest
            .find(name, device_type)
            .ok_or_else(not_attached)?;
        if !entry.is_attached() {
            return Err(not_attached());
        }
        Ok((
            DeviceHandle {
                index: index as u64,
                fd: entry.host_fd(),
            },
            entry,
        ))
    }
}

impl Platform for GuestPlatform {
    type Console = SoloConsole;
    type Clock = SoloClock;
    type Random = SoloRandom;
    type Netif = SoloNetif;
    type Stack = NetStack;
    type Block = SoloBlock;
    type Kv = Unavailable;
    const TARGET: &'static str = <Solo5Machine as lamina_metal::Machine>::TARGET;

    fn console(&self) -> SoloConsole {
        SoloConsole::new()
    }

    fn clock(&self) -> SoloClock {
        SoloClock::new()
    }

    fn random(&self) -> SoloRandom {
        SoloRandom
    }

    fn netif(&self, name: &str) -> Result<SoloNetif, DeviceError> {
        let (handle, entry) = self.acquire(name, "net", DeviceType::NetBasic)?;
        Ok(SoloNetif {
            handle,
            mac: entry.net_mac(),
            mtu: entry.net_mtu() as usize,
            park: self.park.clone(),
            offload: (entry.net_features() & net_features::VIRTIO_NET_HDR != 0)
                .then(|| RefCell::new(Coalescer::new())),
        })
    }

    /// Lamina's TCP/IP stack over the network device `name`, configured by
    /// `--ipv4`/`--ipv4-gateway` or DHCP.
    fn stack(&self, name: &str) -> Result<NetStack, DeviceError> {
        self.stacks
            .get_or_start(name, || self.netif(name), SoloClock::new())
    }

    fn block(&self, name: &str) -> Result<SoloBlock, DeviceError> {
        let (handle, entry) = self.acquire(name, "block", DeviceType::BlockBasic)?;
        let sector_size = entry.block_size() as u32;
        if sector_size == 0 || entry.block_capacity() % sector_size as u64 != 0 {
            return Err(DeviceError::Failed(alloc::format!(
                "block device '{name}' has an invalid geometry"
            )));
        }
        let info = BlockInfo {
            sector_size,
            sectors: entry.block_capacity() / sector_size as u64,
        };
        Ok(SoloBlock {
            handle,
            info,
            features: entry.block_features(),
        })
    }

    fn kv(&self, _name: &str) -> Result<Unavailable, DeviceError> {
        Err(metal::unsupported::<Solo5Machine>("key-value"))
    }

    /// The heap the boot code gave the allocator (the tender's memory less
    /// the image and the stack).
    fn heap_size(&self) -> Option<usize> {
        Some(lamina_metal::heap::size())
    }
}
