//! The tender's side of the block ring ([`lamina_abi::block_ring`]): a
//! block I/O thread that serves the guest's requests with `pread(2)`,
//! `pwrite(2)` and `fdatasync(2)` on the backing files while the vCPU
//! runs, so that block I/O costs no VM exit.
//!
//! The thread polls briefly after its last request (a `pause` between two
//! looks, no system call; a look that finds the thread was descheduled
//! ends at once, see [`Spin`]), then sets `needs_kick`, fences, re-checks
//! and blocks on the kick eventfd, which KVM signals from the guest's
//! `out` to [`block_ring::KICK_PORT`] without leaving the host kernel.
//!
//! Every request is checked in full before it touches the file or guest
//! memory (guest buffers only through the checked [`SharedView`]); a bad
//! one is answered EINVAL and the guest goes on. Only impossible indices
//! stop the guest: the thread records why and signals the vCPU thread.

use crate::ring::RingStartError;
use crate::seccomp;
use crate::spin::Spin;
use lamina_abi::block_ring::{self, offsets, op, Completion, Request};
use lamina_abi::mft::block_features::MAX_TRANSFER;
use lamina_abi::Solo5Result;
use lamina_tender::devices::block::BlockDevice;
use lamina_tender::devices::Devices;
use lamina_tender::mem::SharedView;
use lamina_tender::sys;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the thread polls after its last request before it sleeps: a
/// guest doing one request at a time submits the next within a few
/// microseconds; a kick after a sleep costs it 20-30 µs on KVM-PVM.
const SPIN: Duration = Duration::from_micros(100);

/// What the thread shares with the vCPU thread: counters and its error.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the vCPU thread to stop the I/O thread.
    stop: AtomicBool,
    /// Why the guest must stop, set by the I/O thread.
    pub error: Mutex<Option<String>>,
    /// Requests served, by operation: reads, writes, flushes.
    pub reads: AtomicU64,
    /// See `reads`.
    pub writes: AtomicU64,
    /// See `reads`.
    pub flushes: AtomicU64,
    /// Requests refused as malformed (answered EINVAL).
    pub refused: AtomicU64,
    /// Requests the host failed (answered EUNSPEC).
    pub failed: AtomicU64,
    /// Times the thread went to sleep.
    pub sleeps: AtomicU64,
    /// Kicks from the guest.
    pub kicks: AtomicU64,
    /// Requests the vCPU thread answered in `BlockRingServe` hypercalls.
    pub served_by_vcpu: AtomicU64,
    /// Held by whichever thread serves the ring (the I/O thread, or the
    /// vCPU thread in a `BlockRingServe` hypercall).
    lock: Mutex<()>,
}

impl Shared {
    /// Requests answered, whatever their outcome.
    pub fn requests(&self) -> u64 {
        [
            &self.reads,
            &self.writes,
            &self.flushes,
            &self.refused,
            &self.failed,
        ]
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum()
    }
}

/// A block ring offered to the guest: its kick eventfd is registered
/// with KVM.
#[derive(Debug)]
pub struct Offer {
    /// Guest address of the ring.
    pub gpa: u64,
    /// The kick eventfd.
    pub kick: OwnedFd,
}

/// The running block I/O thread.
#[derive(Debug)]
pub struct BlockRingThread {
    shared: Arc<Shared>,
    kick: OwnedFd,
    handle: Option<JoinHandle<()>>,
}

impl BlockRingThread {
    /// Starts the thread on `offer` over `view`, serving `devices`' block
    /// devices through its own descriptors; it installs its own seccomp
    /// filter before touching the ring.
    pub fn start(
        offer: Offer,
        view: SharedView,
        devices: &Devices,
        vcpu_thread: libc::pthread_t,
    ) -> Result<Self, RingStartError> {
        let blocks = devices
            .blocks
            .iter()
            .map(BlockDevice::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(RingStartError::Io)?;
        let epoll = sys::epoll_create().map_err(RingStartError::Io)?;
        sys::epoll_add(epoll.as_raw_fd(), offer.kick.as_raw_fd(), 0).map_err(RingStartError::Io)?;
        let kick = offer.kick.try_clone().map_err(RingStartError::Io)?;
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let gpa = offer.gpa;
        let handle = sys::spawn_without_stop_signals(
            std::thread::Builder::new().name("block-io".into()),
            move || {
                let filter =
                    seccomp::install_block_ring(&blocks, epoll.as_raw_fd(), kick.as_raw_fd());
                let failed = filter.is_err();
                let _ = ready_tx.send(filter);
                if failed {
                    return;
                }
                let server = Server {
                    view: &view,
                    gpa,
                    blocks: &blocks,
                    shared: &thread_shared,
                };
                if let Err(why) = server.run(epoll.as_raw_fd(), kick.as_raw_fd()) {
                    *thread_shared
                        .error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(why);
                    let _ = sys::signal_thread(vcpu_thread, seccomp::RING_STOP_SIGNAL);
                }
                // The process is ending; freeing could take system calls
                // the filter forbids.
                std::mem::forget(blocks);
            },
        )
        .map_err(RingStartError::Io)?;
        let thread = BlockRingThread {
            shared,
            kick: offer.kick,
            handle: Some(handle),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(RingStartError::Seccomp(e)),
            Err(_) => Err(RingStartError::Io(std::io::Error::other(
                "the block ring I/O thread ended at its start",
            ))),
        }
    }

    /// Counters and the thread's error.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The kick eventfd, which the vCPU thread writes to stop the thread.
    pub fn kick_fd(&self) -> RawFd {
        self.kick.as_raw_fd()
    }

    /// Stops the thread (after it has served what the guest submitted) and
    /// waits for it.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = sys::eventfd_signal(self.kick.as_raw_fd());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for BlockRingThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves the block ring at `gpa` on the vCPU thread, for the guest's
/// `BlockRingServe` hypercall: every request submitted so far is answered
/// when it returns (by this thread, or by the I/O thread, whose lock it
/// waits for); how many this thread answered. An error says why the
/// guest must stop.
///
/// Why: a guest that spins on a completion holds a CPU the I/O thread may
/// need (on a host with one free CPU a request then waits for the
/// scheduler's tick, milliseconds); after an exit's worth of spinning the
/// guest hands the work to its own thread instead.
pub fn serve_for_vcpu(
    view: &SharedView,
    gpa: u64,
    blocks: &[BlockDevice],
    shared: &Shared,
) -> Result<u64, String> {
    let server = Server {
        view,
        gpa,
        blocks,
        shared,
    };
    let ix = server.indices()?;
    let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
    let before = ix.sub_head.load(Ordering::Relaxed);
    server.serve(&ix)?;
    let served = u64::from(ix.sub_head.load(Ordering::Relaxed).wrapping_sub(before));
    shared.served_by_vcpu.fetch_add(served, Ordering::Relaxed);
    Ok(served)
}

/// Serves, once, what the guest has submitted to the block ring at `gpa`
/// in `view`, against `blocks`, as the I/O thread does after each wake-up
/// (without its sleeps, kicks and sandbox): whether there were requests;
/// an error says why the guest must stop. The way in for the fuzz target
/// (`fuzz/fuzz_targets/hvt_block_ring.rs`), which makes up the whole ring.
pub fn serve_submitted(
    view: &SharedView,
    gpa: u64,
    blocks: &[BlockDevice],
    shared: &Shared,
) -> Result<bool, String> {
    let server = Server {
        view,
        gpa,
        blocks,
        shared,
    };
    server.serve(&server.indices()?)
}

/// The ring's index words, as atomics in guest memory.
struct Indices<'a> {
    sub_tail: &'a AtomicU32,
    com_head: &'a AtomicU32,
    sub_head: &'a AtomicU32,
    com_tail: &'a AtomicU32,
    needs_kick: &'a AtomicU32,
}

/// The I/O thread's state.
struct Server<'a> {
    view: &'a SharedView,
    gpa: u64,
    blocks: &'a [BlockDevice],
    shared: &'a Shared,
}

impl Server<'_> {
    fn index(&self, offset: usize) -> Result<&AtomicU32, String> {
        self.view
            .atomic_u32(self.gpa + offset as u64)
            .map_err(|f| format!("the block ring is not in guest memory: {f}"))
    }

    fn indices(&self) -> Result<Indices<'_>, String> {
        Ok(Indices {
            sub_tail: self.index(offsets::SUB_TAIL)?,
            com_head: self.index(offsets::COM_HEAD)?,
            sub_head: self.index(offsets::SUB_HEAD)?,
            com_tail: self.index(offsets::COM_TAIL)?,
            needs_kick: self.index(offsets::NEEDS_KICK)?,
        })
    }

    /// Serves the ring until stopped; an error stops the guest.
    fn run(&self, epoll: RawFd, kick: RawFd) -> Result<(), String> {
        let ix = self.indices()?;
        let mut spin = Spin::new(SPIN);
        let mut tags = [0u64; 4];
        loop {
            let stopping = self.shared.stop.load(Ordering::Acquire);
            // The lock only with work to do: a thread preempted while
            // polling with the lock held would make a `BlockRingServe`
            // wait for the scheduler (milliseconds on a busy host).
            let worked = ix.sub_tail.load(Ordering::Acquire) != ix.sub_head.load(Ordering::Relaxed)
                && {
                    let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
                    self.serve(&ix)?
                };
            if worked {
                spin.start();
                continue;
            }
            if stopping {
                return Ok(());
            }
            if spin.look() {
                // Not `sched_yield`: each one costs a system call (half a
                // 4 KiB read from the page cache), so the guest's next
                // request waited for it, and under EEVDF each pushes the
                // thread's deadline a slice further, until a runnable task
                // of any priority takes the CPU for its whole slice. The
                // look is bounded (`SPIN`) and ends when descheduled.
                core::hint::spin_loop();
                continue;
            }
            // Sleep: announce it, then look once more (the guest stores
            // sub_tail, fences, then reads needs_kick: one of us sees the
            // other).
            ix.needs_kick.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let pending = ix.sub_tail.load(Ordering::SeqCst) != ix.sub_head.load(Ordering::Relaxed);
            if !pending && !self.shared.stop.load(Ordering::SeqCst) {
                self.shared.sleeps.fetch_add(1, Ordering::Relaxed);
                sys::epoll_wait(epoll, &mut tags)
                    .map_err(|e| format!("block ring: epoll_wait failed: {e}"))?;
                let kicks = sys::eventfd_drain(kick);
                self.shared.kicks.fetch_add(kicks, Ordering::Relaxed);
            }
            ix.needs_kick.store(0, Ordering::SeqCst);
            spin.start();
        }
    }

    /// Serves the requests submitted so far, in order; whether there were
    /// any.
    fn serve(&self, ix: &Indices<'_>) -> Result<bool, String> {
        let tail = ix.sub_tail.load(Ordering::Acquire);
        let mut head = ix.sub_head.load(Ordering::Relaxed);
        if tail == head {
            return Ok(false);
        }
        if tail.wrapping_sub(head) > block_ring::SIZE {
            return Err(format!(
                "guest block ring is corrupt: sub_tail {tail} is more than {} requests ahead of sub_head {head}",
                block_ring::SIZE
            ));
        }
        while head != tail {
            let com_tail = ix.com_tail.load(Ordering::Relaxed);
            if com_tail.wrapping_sub(ix.com_head.load(Ordering::Acquire)) >= block_ring::SIZE {
                return Err(format!(
                    "guest block ring is corrupt: {} completions not taken",
                    block_ring::SIZE
                ));
            }
            let request: Request = self
                .view
                .reserved_read(block_ring::request_at(self.gpa, head))
                .map_err(|f| format!("the block ring is not in guest memory: {f}"))?;
            let status = self.execute(&request);
            let counter = match (status, request.operation) {
                (Solo5Result::Einval, _) => &self.shared.refused,
                (Solo5Result::Ok, op::READ) => &self.shared.reads,
                (Solo5Result::Ok, op::WRITE) => &self.shared.writes,
                (Solo5Result::Ok, _) => &self.shared.flushes,
                _ => &self.shared.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let completion = Completion {
                id: request.id,
                status: status as i32,
                _reserved: 0,
            };
            self.view
                .reserved_write(block_ring::completion_at(self.gpa, com_tail), &completion)
                .map_err(|f| format!("the block ring is not in guest memory: {f}"))?;
            ix.com_tail
                .store(com_tail.wrapping_add(1), Ordering::Release);
            head = head.wrapping_add(1);
            ix.sub_head.store(head, Ordering::Release);
        }
        Ok(true)
    }

    /// Carries out one request: EINVAL for anything malformed (before any
    /// file or guest-memory access), EUNSPEC for a host failure.
    fn execute(&self, request: &Request) -> Solo5Result {
        let Some(block) = self
            .blocks
            .iter()
            .find(|b| b.handle == u64::from(request.handle))
        else {
            return Solo5Result::Einval;
        };
        let len = u64::from(request.len);
        let status = |done: std::io::Result<()>| match done {
            Ok(()) => Solo5Result::Ok,
            Err(_) => Solo5Result::Eunspec,
        };
        match request.operation {
            op::READ | op::WRITE => {
                let Some(offset) = request.sector.checked_mul(block.block_size) else {
                    return Solo5Result::Einval;
                };
                if len > MAX_TRANSFER || !block.accepts(offset, len) {
                    return Solo5Result::Einval;
                }
                if request.operation == op::READ {
                    match self.view.bytes_mut(request.data, len) {
                        Ok(buf) => status(block.read_at(offset, buf)),
                        Err(_) => Solo5Result::Einval,
                    }
                } else {
                    match self.view.bytes(request.data, len) {
                        Ok(data) => status(block.write_at(offset, data)),
                        Err(_) => Solo5Result::Einval,
                    }
                }
            }
            op::FLUSH if request.sector == 0 && request.data == 0 && len == 0 => {
                status(block.flush())
            }
            _ => Solo5Result::Einval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use lamina_tender::mem::GuestMemory;

    /// Where the ring and the buffers are in the test's guest memory.
    const RING: u64 = 0x10_0000;
    const BUF: u64 = 0x2000;

    struct Rig {
        view: SharedView,
        blocks: Vec<BlockDevice>,
        shared: Shared,
        path: std::path::PathBuf,
    }

    impl Rig {
        fn new(name: &str) -> Rig {
            let mut mem = GuestMemory::anywhere(2 << 20).unwrap();
            mem.reserve_top(RING).unwrap();
            let (block, path) = fixtures::block(1, name);
            Rig {
                view: mem.shared_view(),
                blocks: vec![block],
                shared: Shared::default(),
                path,
            }
        }

        fn server(&self) -> Server<'_> {
            Server {
                view: &self.view,
                gpa: RING,
                blocks: &self.blocks,
                shared: &self.shared,
            }
        }

        /// Submits `requests` together, serves the ring once, and returns
        /// their completions (taken).
        fn submit(&self, requests: &[Request]) -> Vec<Completion> {
            let server = self.server();
            let ix = server.indices().unwrap();
            let mut tail = ix.sub_tail.load(Ordering::Relaxed);
            for request in requests {
                self.view
                    .reserved_write(block_ring::request_at(RING, tail), request)
                    .unwrap();
                tail = tail.wrapping_add(1);
            }
            ix.sub_tail.store(tail, Ordering::Release);
            assert!(server.serve(&ix).unwrap());
            assert_eq!(ix.sub_head.load(Ordering::Relaxed), tail);
            let mut head = ix.com_head.load(Ordering::Relaxed);
            let mut out = Vec::new();
            while head != ix.com_tail.load(Ordering::Acquire) {
                out.push(
                    self.view
                        .reserved_read(block_ring::completion_at(RING, head))
                        .unwrap(),
                );
                head = head.wrapping_add(1);
            }
            ix.com_head.store(head, Ordering::Release);
            out
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn request(operation: u32, sector: u64, data: u64, len: u32, id: u32) -> Request {
        Request {
            operation,
            handle: 1,
            sector,
            data,
            len,
            id,
        }
    }

    fn statuses(completions: &[Completion]) -> Vec<(u32, i32)> {
        completions.iter().map(|c| (c.id, c.status)).collect()
    }

    const OK: i32 = Solo5Result::Ok as i32;
    const EINVAL: i32 = Solo5Result::Einval as i32;

    #[test]
    fn requests_in_flight_are_served_in_order() {
        let rig = Rig::new("ring-order");
        rig.view.copy_in(BUF, &[7u8; 1024]).unwrap();
        // A write, a read of what it wrote, a flush, a read of the
        // untouched rest: one batch, answered in order with their ids.
        let done = rig.submit(&[
            request(op::WRITE, 2, BUF, 1024, 10),
            request(op::READ, 2, BUF + 4096, 1024, 11),
            request(op::FLUSH, 0, 0, 0, 12),
            request(op::READ, 0, BUF + 8192, 1024, 13),
        ]);
        assert_eq!(statuses(&done), [(10, OK), (11, OK), (12, OK), (13, OK)]);
        let file = std::fs::read(&rig.path).unwrap();
        assert_eq!(&file[1024..2048], &[7u8; 1024]);
        assert_eq!(&file[..1024], &[0x5a; 1024]);
        let mut out = Vec::new();
        rig.view.copy_out(BUF + 4096, 1024, &mut out).unwrap();
        assert_eq!(out, [7u8; 1024]);
        out.clear();
        rig.view.copy_out(BUF + 8192, 1024, &mut out).unwrap();
        assert_eq!(out, [0x5a; 1024]);
        assert_eq!(rig.shared.reads.load(Ordering::Relaxed), 2);
        assert_eq!(rig.shared.writes.load(Ordering::Relaxed), 1);
        assert_eq!(rig.shared.flushes.load(Ordering::Relaxed), 1);
    }

    /// Each malformed request is answered EINVAL, touches neither the
    /// file nor guest memory, and the ring goes on.
    #[test]
    fn bad_requests_get_einval_and_the_ring_goes_on() {
        let rig = Rig::new("ring-bad");
        rig.view.copy_in(BUF, &[1u8; 4096]).unwrap();
        let mut unknown_device = request(op::WRITE, 0, BUF, 512, 0);
        unknown_device.handle = 2;
        let bad = [
            // A buffer outside guest memory, or reaching into the ring.
            request(op::WRITE, 0, 4 << 20, 512, 0),
            request(op::READ, 0, RING - 256, 512, 0),
            request(op::READ, 0, RING, 512, 0),
            request(op::READ, 0, u64::MAX - 100, 512, 0),
            // Not whole sectors, or nothing.
            request(op::WRITE, 0, BUF, 500, 0),
            request(op::WRITE, 0, BUF, 0, 0),
            // Past the end of the 4096-byte device, or overflowing.
            request(op::WRITE, 8, BUF, 512, 0),
            request(op::WRITE, 7, BUF, 1024, 0),
            request(op::READ, u64::MAX / 256, BUF, 512, 0),
            // A flush with arguments, an unknown operation or device.
            request(op::FLUSH, 1, 0, 0, 0),
            request(0, 0, BUF, 512, 0),
            request(99, 0, BUF, 512, 0),
            unknown_device,
        ];
        let mut requests: Vec<Request> = bad
            .iter()
            .enumerate()
            .map(|(i, r)| Request { id: i as u32, ..*r })
            .collect();
        requests.push(request(op::READ, 1, BUF + 512, 512, 100));
        let done = rig.submit(&requests);
        assert_eq!(done.len(), bad.len() + 1);
        for (i, completion) in done[..bad.len()].iter().enumerate() {
            assert_eq!(
                (completion.id, completion.status),
                (i as u32, EINVAL),
                "{:?}",
                bad[i]
            );
        }
        assert_eq!((done[bad.len()].id, done[bad.len()].status), (100, OK));
        assert_eq!(std::fs::read(&rig.path).unwrap(), [0x5a; 4096]);
        let mut out = Vec::new();
        rig.view.copy_out(BUF, 512, &mut out).unwrap();
        assert_eq!(out, [1u8; 512], "a refused read wrote guest memory");
        assert_eq!(rig.shared.refused.load(Ordering::Relaxed), bad.len() as u64);
    }

    /// BlockRingServe: the vCPU thread answers what was submitted, and
    /// says how many; a second call finds nothing left.
    #[test]
    fn the_vcpu_thread_serves_what_was_submitted() {
        let rig = Rig::new("ring-vcpu");
        let server = rig.server();
        let ix = server.indices().unwrap();
        for i in 0..3u32 {
            let read = request(op::READ, u64::from(i), BUF + 512 * u64::from(i), 512, i);
            rig.view
                .reserved_write(block_ring::request_at(RING, i), &read)
                .unwrap();
        }
        ix.sub_tail.store(3, Ordering::Release);
        let served = serve_for_vcpu(&rig.view, RING, &rig.blocks, &rig.shared).unwrap();
        assert_eq!(served, 3);
        assert_eq!(ix.com_tail.load(Ordering::Acquire), 3);
        let answer: Completion = rig
            .view
            .reserved_read(block_ring::completion_at(RING, 2))
            .unwrap();
        assert_eq!((answer.id, answer.status), (2, OK));
        let mut out = Vec::new();
        rig.view.copy_out(BUF, 1536, &mut out).unwrap();
        assert_eq!(out, [0x5a; 1536]);
        assert_eq!(
            serve_for_vcpu(&rig.view, RING, &rig.blocks, &rig.shared),
            Ok(0)
        );
        assert_eq!(rig.shared.served_by_vcpu.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn impossible_indices_stop_the_guest() {
        let rig = Rig::new("ring-corrupt");
        let server = rig.server();
        let ix = server.indices().unwrap();
        ix.sub_tail.store(block_ring::SIZE + 1, Ordering::Release);
        let error = server.serve(&ix).unwrap_err();
        assert!(error.contains("corrupt"), "{error}");
        // Completions not taken: the guest submitted more than it has room for.
        ix.sub_tail.store(1, Ordering::Release);
        ix.com_tail.store(block_ring::SIZE, Ordering::Release);
        let error = server.serve(&ix).unwrap_err();
        assert!(error.contains("not taken"), "{error}");
        assert_eq!(ix.sub_head.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_ring_outside_memory_is_an_error_not_a_crash() {
        let rig = Rig::new("ring-outside");
        for gpa in [4 << 20, RING - 64, u64::MAX - 8] {
            let error = serve_submitted(&rig.view, gpa, &rig.blocks, &rig.shared).unwrap_err();
            assert!(error.contains("not in guest memory"), "{gpa:#x}: {error}");
        }
    }
}
