//! The tender's side of the batched network ring (lamina_abi::ring, the
//! layout of Solo5's `hvt_ring`): an I/O thread that serves the guest's
//! entries while the vCPU runs, so that frames cross without VM exits.
//!
//! The guest submits entries; a kick (an `out` to [`ring::KICK_PORT`]) is
//! an ioeventfd served inside the kernel, never an exit to this process,
//! and the guest does it only while this thread sleeps (`needs_kick`).
//! With the receive queues ([`crate::rx`]) the thread also reads each tap
//! as soon as it is readable into the guest's queue, and wakes the guest
//! through the rx-wake eventfd when it waits in POLL for them.
//! The thread polls briefly after its last work (yielding the CPU to any
//! other runnable thread at each turn, so that on a busy host it does not
//! starve the vCPU), then sets `needs_kick`, fences, re-checks and blocks
//! on the kick eventfd and on the devices' input (edge-triggered).
//!
//! Every guest address and length in an entry goes through the checked
//! [`SharedView`]; a malformed entry stops the guest: the thread records
//! why and signals the vCPU thread, whose KVM_RUN then returns.

use crate::rx::{GuestWords, Queue};
use crate::seccomp::{self, SeccompError};
use crate::spin::Spin;
use lamina_abi::ring::{self, offsets, op, Commit, RingEntry};
use lamina_abi::Solo5Result;
use lamina_tender::devices::net::NetDevice;
use lamina_tender::devices::Devices;
use lamina_tender::mem::{GuestFault, SharedView};
use lamina_tender::sys;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the thread polls the ring after its last work before it sleeps
/// (echo over tap on a 2-CPU KVM-PVM host: 10 µs and 50 µs slept too
/// often; 100 µs was the best of 0/10/50/100/200), unless the host is busy
/// ([`Spin`]).
const SPIN: Duration = Duration::from_micros(100);
/// Writes between two reads of the taps while serving a batch of the
/// guest's writes.
///
/// Why: a tap holds only `txqueuelen` frames (1,000 by default) for its
/// reader, and writing a large batch (a round's responses to hundreds of
/// connections, each frame's delivery run by the host's stack in the
/// writing thread) leaves no time to read while the clients send their
/// next requests and ACKs: the tap drops them, and they come back only
/// when the clients retransmit, 200 ms or more later. The website under
/// wrk -t2 -c1000 (64 MiB, default txqueuelen): 4,300-4,600 frames
/// dropped in 4 s and p99 711-739 ms when reading only between batches;
/// 32-65 and p99 31-38 ms reading every 32 writes, none and p99 39-42 ms
/// every 128 (the guest's stack reads its device as often on spt, where
/// every 32 cost a little with fewer connections:
/// `lamina_net::device::Stash`).
const READ_BETWEEN_WRITES: u32 = 128;
/// epoll tag of the kick eventfd (device handles are < 64).
const KICK_TAG: u64 = u64::MAX;

/// What the thread shares with the vCPU thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the vCPU thread to stop the I/O thread.
    stop: AtomicBool,
    /// Why the guest must stop, set by the I/O thread.
    pub error: Mutex<Option<String>>,
    /// Entries served: frames sent.
    pub writes: AtomicU64,
    /// Entries served: reads answered.
    pub reads: AtomicU64,
    /// Times the thread went to sleep.
    pub sleeps: AtomicU64,
    /// Looks for work before sleeping cut short because the thread was
    /// off its CPU (a busy host; see [`crate::spin`]).
    pub descheduled: AtomicU64,
    /// Looks for work before sleeping that found some.
    pub looks_caught: AtomicU64,
    /// Frames from the host dropped by the tender's offload links.
    pub dropped: AtomicU64,
    /// Frames from the guest the host refused (counted for the guest in
    /// the ring's `write_errors`).
    pub refused: AtomicU64,
    /// Frames from the host larger than the guest's link, dropped.
    pub too_large: AtomicU64,
    /// Frames put in the receive queues.
    pub queued: AtomicU64,
    /// Times the thread woke the guest from POLL.
    pub wakes: AtomicU64,
    /// Kicks from the guest (each an exit served in the host kernel).
    pub kicks: AtomicU64,
    /// POLLs in which the vCPU thread served the ring itself.
    pub served_in_poll: AtomicU64,
    /// Held by whichever thread serves the ring (the I/O thread while the
    /// guest runs, the vCPU thread while the guest waits in POLL).
    lock: Mutex<()>,
    /// The tender's tail of each receive queue (changed under `lock`).
    tails: [AtomicU32; lamina_abi::ring::rx::MAX_QUEUES],
}

/// A ring offered to the guest: its kick eventfd is registered with KVM.
#[derive(Debug)]
pub struct Offer {
    /// Guest address of the ring (the guest's `mem_size`).
    pub gpa: u64,
    /// The kick eventfd.
    pub kick: OwnedFd,
    /// The eventfd that ends the guest's POLL when the receive queues are
    /// offered.
    pub rx_wake: Option<OwnedFd>,
}

/// The running I/O thread.
#[derive(Debug)]
pub struct RingThread {
    shared: Arc<Shared>,
    kick: OwnedFd,
    /// Kept open for the vCPU thread's POLL, which drains it.
    _rx_wake: Option<OwnedFd>,
    handle: Option<JoinHandle<()>>,
}

/// The ring's index words, as atomics in guest memory.
struct Indices<'a> {
    ent_tail: &'a AtomicU32,
    com_head: &'a AtomicU32,
    ent_head: &'a AtomicU32,
    com_tail: &'a AtomicU32,
    needs_kick: &'a AtomicU32,
    write_errors: &'a AtomicU32,
}

impl RingThread {
    /// Starts the thread on `offer` over `view`, serving `devices`' network
    /// devices; it installs its own seccomp filter before touching the
    /// ring. Errors of the start are returned here.
    pub fn start(
        offer: Offer,
        view: SharedView,
        devices: &Devices,
        vcpu_thread: libc::pthread_t,
    ) -> Result<Self, RingStartError> {
        // The thread's own handles on the devices (descriptors and offload
        // state), allocated here, before its filter, which allows no new
        // mappings that could be executable.
        let nets = devices
            .nets
            .iter()
            .map(NetDevice::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(RingStartError::Io)?;
        let epoll = sys::epoll_create().map_err(RingStartError::Io)?;
        sys::epoll_add(epoll.as_raw_fd(), offer.kick.as_raw_fd(), KICK_TAG)
            .map_err(RingStartError::Io)?;
        for net in &nets {
            sys::epoll_add_exclusive(epoll.as_raw_fd(), net.fd(), net.handle, true)
                .map_err(RingStartError::Io)?;
        }
        let kick = offer.kick.try_clone().map_err(RingStartError::Io)?;
        let rx_wake = offer
            .rx_wake
            .as_ref()
            .map(|fd| fd.try_clone())
            .transpose()
            .map_err(RingStartError::Io)?;
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let gpa = offer.gpa;
        let handle = sys::spawn_without_stop_signals(
            std::thread::Builder::new().name("ring-io".into()),
            move || {
                let fds: Vec<RawFd> = nets.iter().map(NetDevice::fd).collect();
                let rx_wake_fd = rx_wake.as_ref().map(|fd| fd.as_raw_fd());
                let filter =
                    seccomp::install_ring(&fds, epoll.as_raw_fd(), kick.as_raw_fd(), rx_wake_fd);
                let failed = filter.is_err();
                let _ = ready_tx.send(filter);
                if failed {
                    return;
                }
                let server = Server {
                    view: &view,
                    gpa,
                    nets: &nets,
                    epoll: epoll.as_raw_fd(),
                    kick: kick.as_raw_fd(),
                    rx_wake: rx_wake_fd,
                    shared: &thread_shared,
                };
                if let Err(why) = server.run() {
                    *thread_shared
                        .error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(why);
                    let _ = sys::signal_thread(vcpu_thread, seccomp::RING_STOP_SIGNAL);
                }
                // Freeing the devices' buffers could shrink the thread's
                // heap, which takes system calls the filter forbids; the
                // process is ending anyway.
                std::mem::forget(nets);
            },
        )
        .map_err(RingStartError::Io)?;
        let thread = RingThread {
            shared,
            kick: offer.kick,
            _rx_wake: offer.rx_wake,
            handle: Some(handle),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(RingStartError::Seccomp(e)),
            Err(_) => Err(RingStartError::Io(std::io::Error::other(
                "the ring I/O thread ended at its start",
            ))),
        }
    }

    /// What the thread shares: counters, its error, the lock.
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

impl Drop for RingThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why the I/O thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum RingStartError {
    /// A descriptor or the thread.
    #[error("cannot start the network ring's I/O thread: {0}")]
    Io(std::io::Error),
    /// Its sandbox.
    #[error("network ring I/O thread: {0}")]
    Seccomp(SeccompError),
}

/// Serves the ring on the vCPU thread while the guest waits in POLL: the
/// entries it submitted (sent now, not when the I/O thread next wakes: it
/// may be asleep, and the guest did not kick it), and every tap read into
/// the receive queues. Whether frames were queued (then the POLL ends).
/// An error says why the guest must stop.
///
/// Why here: when the guest sleeps the vCPU thread wakes anyway; serving
/// from it makes a request at low load or on a busy host cost one thread's
/// wake-up instead of two threads handing frames to each other.
pub fn serve_for_poll(
    view: &SharedView,
    gpa: u64,
    nets: &[NetDevice],
    shared: &Shared,
) -> Result<bool, String> {
    let server = Server::outside_the_thread(view, gpa, nets, shared);
    let ix = server.indices()?;
    let receive = Receive {
        queues: Queue::all(view, gpa, nets, &shared.tails)?,
        guest: GuestWords::new(view, gpa)?,
        wake: -1,
    };
    let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
    server.serve(&ix, Some(&receive))?;
    shared.served_in_poll.fetch_add(1, Ordering::Relaxed);
    Ok(server.receive(&receive)? > 0)
}

/// Serves, once, what the guest has submitted to the ring at `gpa` in
/// `view`, against `nets`, as the I/O thread does after each wake-up
/// (without its sleeps, kicks and sandbox): whether there were entries;
/// an error says why the guest must stop. The way in for the fuzz target
/// (`fuzz/fuzz_targets/hvt_ring.rs`), which makes up the whole ring.
pub fn serve_submitted(
    view: &SharedView,
    gpa: u64,
    nets: &[NetDevice],
    shared: &Shared,
) -> Result<bool, String> {
    let server = Server::outside_the_thread(view, gpa, nets, shared);
    server.serve(&server.indices()?, None)
}

/// The I/O thread's state.
struct Server<'a> {
    view: &'a SharedView,
    gpa: u64,
    /// The thread's own handles on the network devices.
    nets: &'a [NetDevice],
    epoll: RawFd,
    kick: RawFd,
    /// The rx-wake eventfd, when the receive queues are offered.
    rx_wake: Option<RawFd>,
    shared: &'a Shared,
}

/// The receive side, when the receive queues are offered.
struct Receive<'a> {
    queues: Vec<Queue<'a>>,
    guest: GuestWords<'a>,
    /// The rx-wake eventfd (-1 on the vCPU thread, which is the waker).
    wake: RawFd,
}

impl<'a> Server<'a> {
    /// A server for a caller other than the I/O thread's loop (the vCPU
    /// thread's POLL, the fuzz target, the tests): no epoll set, kick or
    /// wake eventfd of its own.
    fn outside_the_thread(
        view: &'a SharedView,
        gpa: u64,
        nets: &'a [NetDevice],
        shared: &'a Shared,
    ) -> Self {
        Server {
            view,
            gpa,
            nets,
            epoll: -1,
            kick: -1,
            rx_wake: None,
            shared,
        }
    }

    fn index(&self, offset: usize) -> Result<&AtomicU32, String> {
        self.view
            .atomic_u32(self.gpa + offset as u64)
            .map_err(|f| format!("the network ring is not in guest memory: {f}"))
    }

    /// The ring's index words.
    fn indices(&self) -> Result<Indices<'_>, String> {
        Ok(Indices {
            ent_tail: self.index(offsets::ENT_TAIL)?,
            com_head: self.index(offsets::COM_HEAD)?,
            ent_head: self.index(offsets::ENT_HEAD)?,
            com_tail: self.index(offsets::COM_TAIL)?,
            needs_kick: self.index(offsets::NEEDS_KICK)?,
            write_errors: self.index(offsets::WRITE_ERRORS)?,
        })
    }

    /// Serves the ring until stopped; an error stops the guest.
    fn run(&self) -> Result<(), String> {
        let ix = self.indices()?;
        let receive = match self.rx_wake {
            Some(wake) => Some(Receive {
                queues: Queue::all(self.view, self.gpa, self.nets, &self.shared.tails)?,
                guest: GuestWords::new(self.view, self.gpa)?,
                wake,
            }),
            None => None,
        };
        let mut spin = Spin::adaptive(SPIN);
        let mut tags = [0u64; 64];
        loop {
            let stopping = self.shared.stop.load(Ordering::Acquire);
            let guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut worked = self.serve(&ix, receive.as_ref())?;
            if let Some(receive) = &receive {
                worked |= self.receive(receive)? > 0;
            }
            drop(guard);
            if worked {
                spin.found_work();
                spin.start();
                continue;
            }
            if stopping {
                return Ok(());
            }
            // While the guest sleeps in POLL its vCPU thread serves the
            // ring: do not compete with it for a CPU.
            let guest_asleep = receive.as_ref().is_some_and(|r| r.guest.waiting());
            if !guest_asleep && spin.look() {
                // Look for input without blocking, and give the CPU to any
                // other thread that wants it (the vCPU's, the clients').
                // Here `sched_yield`, not the block ring's `pause`: with
                // `pause` the website on hvt served 22,502 req/s instead
                // of 35,224 under wrk -c1 (VM exits per request 0.156
                // instead of 0.027) and 0.95x under -c50 (medians of 3,
                // alternating): the tender's threads and the client share
                // two CPUs, and the yield hands the vCPU its CPU back.
                let n = sys::epoll_wait_for(self.epoll, &mut tags, 0)
                    .map_err(|e| format!("network ring: epoll_wait failed: {e}"))?;
                self.note_events(&tags[..n], receive.as_ref());
                std::thread::yield_now();
                continue;
            }
            // Sleep: announce it, then look once more (the guest stores
            // ent_tail or a queue's head, fences, then reads needs_kick: one
            // of us sees the other).
            ix.needs_kick.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let mut pending =
                ix.ent_tail.load(Ordering::SeqCst) != ix.ent_head.load(Ordering::Relaxed);
            if let Some(receive) = &receive {
                for queue in &receive.queues {
                    pending |= queue.unstalled()?;
                }
            }
            if !pending && !self.shared.stop.load(Ordering::SeqCst) {
                // Also a look the guest's sleep in POLL ended counts as
                // one that did not pay: the vCPU's thread serves then, and
                // on a busy host counting those stopped the looks that
                // cost (website under wrk -c50 with a CPU in a shell loop,
                // medians of 4 alternating: 43,241 -> 48,160 req/s; quiet
                // and one request at a time unchanged within noise).
                spin.sleeps();
                self.shared.sleeps.fetch_add(1, Ordering::Relaxed);
                let n = sys::epoll_wait(self.epoll, &mut tags)
                    .map_err(|e| format!("network ring: epoll_wait failed: {e}"))?;
                self.note_events(&tags[..n], receive.as_ref());
            }
            ix.needs_kick.store(0, Ordering::SeqCst);
            self.shared
                .descheduled
                .store(spin.descheduled(), Ordering::Relaxed);
            self.shared
                .looks_caught
                .store(spin.caught(), Ordering::Relaxed);
            spin.start();
        }
    }

    /// Takes note of epoll events: drains the kick, marks taps readable.
    fn note_events(&self, tags: &[u64], receive: Option<&Receive<'_>>) {
        for &tag in tags {
            if tag == KICK_TAG {
                let kicks = sys::eventfd_drain(self.kick);
                self.shared.kicks.fetch_add(kicks, Ordering::Relaxed);
            } else if let Some(receive) = receive {
                for queue in &receive.queues {
                    if self.nets[queue.net].handle == tag {
                        queue.readable.set(true);
                    }
                }
            }
        }
    }

    /// Fills the receive queues the guest takes frames from, and wakes it
    /// if it waits for them; how many frames were queued.
    fn receive(&self, receive: &Receive<'_>) -> Result<u64, String> {
        if !receive.guest.enabled() {
            return Ok(0);
        }
        let mut queued = 0;
        for queue in &receive.queues {
            // A tap's edge may have gone to the vCPU thread (the taps are
            // exclusive between the two threads' epoll sets), which left
            // frames when the queue filled: look again once it has room.
            if queue.unstalled()? {
                queue.readable.set(true);
            }
            let filled = queue.fill(self.view, &self.nets[queue.net])?;
            queued += filled.frames;
            if filled.dropped > 0 {
                self.shared
                    .too_large
                    .fetch_add(filled.dropped, Ordering::Relaxed);
            }
        }
        if queued == 0 {
            return Ok(0);
        }
        self.shared.queued.fetch_add(queued, Ordering::Relaxed);
        if receive.wake >= 0 && receive.guest.take_waiting() {
            self.shared.wakes.fetch_add(1, Ordering::Relaxed);
            sys::eventfd_signal(receive.wake)
                .map_err(|e| format!("network ring: cannot wake the guest: {e}"))?;
        }
        Ok(queued)
    }

    /// Reads the taps into the receive queues in the middle of a batch of
    /// writes (see [`READ_BETWEEN_WRITES`]). No epoll event says whether
    /// they are readable meanwhile: try each (a read that finds nothing
    /// is one system call).
    fn receive_meanwhile(&self, receive: &Receive<'_>) -> Result<(), String> {
        for queue in &receive.queues {
            queue.readable.set(true);
        }
        self.receive(receive).map(drop)
    }

    /// Serves the entries submitted so far, reading the taps of `receive`
    /// (when given) between writes; whether there were any.
    fn serve(&self, ix: &Indices<'_>, receive: Option<&Receive<'_>>) -> Result<bool, String> {
        let tail = ix.ent_tail.load(Ordering::Acquire);
        let mut head = ix.ent_head.load(Ordering::Relaxed);
        if tail == head {
            return Ok(false);
        }
        if tail.wrapping_sub(head) > ring::SIZE {
            return Err(format!(
                "guest network ring is corrupt: ent_tail {tail} is more than {} entries ahead of ent_head {head}",
                ring::SIZE
            ));
        }
        let mut written = 0u32;
        while head != tail {
            let at = self.gpa + (offsets::ENTRIES + (head & ring::MASK) as usize * 32) as u64;
            let entry: RingEntry = self.view.reserved_read(at).map_err(|f| self.bad(head, f))?;
            match entry.operation {
                op::NET_WRITE => {
                    let net = self.device(&entry, head)?;
                    let frame = self
                        .view
                        .bytes(entry.data, u64::from(entry.len))
                        .map_err(|f| self.bad(head, f))?;
                    // The same call, and so the same failures, as the
                    // NET_WRITE hypercall's; told to the guest through
                    // write_errors, as the ring has no answer per write.
                    if net.send(frame).is_err() {
                        self.refused(ix, net.handle)?;
                    }
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    written += 1;
                    if written.is_multiple_of(READ_BETWEEN_WRITES) {
                        if let Some(receive) = receive {
                            self.receive_meanwhile(receive)?;
                        }
                    }
                }
                op::NET_READ => {
                    let net = self.device(&entry, head)?;
                    let com_tail = ix.com_tail.load(Ordering::Relaxed);
                    if com_tail.wrapping_sub(ix.com_head.load(Ordering::Acquire)) >= ring::SIZE {
                        return Err(format!(
                            "guest network ring is corrupt: {} commits not taken",
                            ring::SIZE
                        ));
                    }
                    let buf = self
                        .view
                        .bytes_mut(entry.data, u64::from(entry.len))
                        .map_err(|f| self.bad(head, f))?;
                    // The same call and answers as the NET_READ hypercall's.
                    let (ret, len) = match net.read(buf) {
                        Ok(Some(n)) => (Solo5Result::Ok, n as u32),
                        Ok(None) => (Solo5Result::Again, 0),
                        Err(_) => (Solo5Result::Eunspec, 0),
                    };
                    let commit = Commit {
                        id: entry.id,
                        ret: ret as i32,
                        len,
                        _reserved: 0,
                    };
                    let at = self.gpa
                        + (offsets::COMMITS + (com_tail & ring::MASK) as usize * 16) as u64;
                    self.view
                        .reserved_write(at, &commit)
                        .map_err(|f| self.bad(head, f))?;
                    ix.com_tail
                        .store(com_tail.wrapping_add(1), Ordering::Release);
                    self.shared.reads.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    return Err(format!(
                        "guest network ring entry {head} has an unknown operation {other}"
                    ))
                }
            }
            head = head.wrapping_add(1);
            ix.ent_head.store(head, Ordering::Release);
        }
        // The guest's writes of this batch leave together.
        let mut dropped = 0;
        for net in self.nets {
            if net.flush().is_err() {
                self.refused(ix, net.handle)?;
            }
            dropped += net.dropped();
        }
        self.shared.dropped.store(dropped, Ordering::Relaxed);
        Ok(true)
    }

    /// Counts a write the host refused, for the guest and the statistics.
    /// A write on device `handle` the host refused: counted for the guest,
    /// in all and for that device.
    fn refused(&self, ix: &Indices<'_>, handle: u64) -> Result<(), String> {
        if handle < ring::MAX_HANDLES as u64 {
            let at = offsets::WRITE_ERRORS_BY_HANDLE + 4 * handle as usize;
            self.index(at)?.fetch_add(1, Ordering::Release);
        }
        ix.write_errors.fetch_add(1, Ordering::Release);
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The device an entry names.
    fn device(&self, entry: &RingEntry, index: u32) -> Result<&NetDevice, String> {
        self.nets
            .iter()
            .find(|net| net.handle == u64::from(entry.handle))
            .ok_or_else(|| {
                format!(
                    "guest network ring entry {index} names handle {}, which is no attached network device",
                    entry.handle
                )
            })
    }

    fn bad(&self, index: u32, fault: GuestFault) -> String {
        format!("guest network ring entry {index} passed a bad buffer: {fault}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use lamina_tender::mem::GuestMemory;

    /// Where the ring and the frame buffers are in the test's guest memory.
    const RING: u64 = 0x10_0000;
    const BUF: u64 = 0x2000;

    /// What a test's [`Server`] borrows: 2 MiB of guest memory with the
    /// ring's area reserved from RING, one network device, the counters.
    struct Rig {
        view: SharedView,
        nets: [NetDevice; 1],
        shared: Shared,
    }

    impl Rig {
        fn new(net: NetDevice) -> Rig {
            let mut mem = GuestMemory::anywhere(2 << 20).unwrap();
            mem.reserve_top(RING).unwrap();
            Rig {
                view: mem.shared_view(),
                nets: [net],
                shared: Shared::default(),
            }
        }

        /// A server over the rig (no epoll or kick: the tests call serve).
        fn server(&self) -> Server<'_> {
            Server::outside_the_thread(&self.view, RING, &self.nets, &self.shared)
        }
    }

    /// Submits `entry` as the next one, and serves the ring once.
    fn submit(server: &Server<'_>, entry: RingEntry) {
        let ix = server.indices().unwrap();
        let tail = ix.ent_tail.load(Ordering::Relaxed);
        let at = RING + (offsets::ENTRIES + (tail & ring::MASK) as usize * 32) as u64;
        server.view.reserved_write(at, &entry).unwrap();
        ix.ent_tail.store(tail.wrapping_add(1), Ordering::Release);
        assert!(server.serve(&ix, None).unwrap());
        assert_eq!(ix.ent_head.load(Ordering::Relaxed), tail.wrapping_add(1));
    }

    fn write_entry(view: &SharedView, frame: &[u8]) -> RingEntry {
        view.copy_in(BUF, frame).unwrap();
        RingEntry {
            operation: op::NET_WRITE,
            handle: 1,
            data: BUF,
            len: frame.len() as u32,
            ..Default::default()
        }
    }

    /// The commit of the last read.
    fn last_commit(server: &Server<'_>) -> Commit {
        let ix = server.indices().unwrap();
        let slot = ix.com_tail.load(Ordering::Relaxed).wrapping_sub(1) & ring::MASK;
        let commit = server
            .view
            .reserved_read(RING + (offsets::COMMITS + slot as usize * 16) as u64)
            .unwrap();
        ix.com_head
            .store(ix.com_tail.load(Ordering::Relaxed), Ordering::Relaxed);
        commit
    }

    fn read_entry(len: u32) -> RingEntry {
        RingEntry {
            operation: op::NET_READ,
            handle: 1,
            data: BUF,
            len,
            ..Default::default()
        }
    }

    #[test]
    fn failed_writes_are_counted_for_the_guest_not_dropped_silently() {
        for offload in [false, true] {
            let (net, host) = fixtures::net(1, offload);
            let rig = Rig::new(net);
            let (server, view, shared) = (rig.server(), &rig.view, &rig.shared);
            let errors = || {
                server
                    .indices()
                    .unwrap()
                    .write_errors
                    .load(Ordering::Relaxed)
            };
            // Device 1's own count, and device 2's (not attached here),
            // which a refusal on device 1 must not touch.
            let errors_of = |handle: usize| {
                server
                    .index(offsets::WRITE_ERRORS_BY_HANDLE + 4 * handle)
                    .unwrap()
                    .load(Ordering::Relaxed)
            };
            let frame = fixtures::frame(60, 1);
            submit(&server, write_entry(view, &frame));
            assert_eq!(fixtures::host_receives(&host, offload), frame);
            assert_eq!(errors(), 0);
            // Larger than any link carries, as on the hypercall path.
            let huge = fixtures::frame(70_000, 2);
            submit(&server, write_entry(view, &huge));
            assert_eq!(errors(), 1, "{offload}");
            fixtures::host_hangs_up(&host);
            submit(&server, write_entry(view, &frame));
            assert_eq!(errors(), 2, "{offload}");
            assert_eq!((errors_of(1), errors_of(2)), (2, 0), "{offload}");
            assert_eq!(shared.writes.load(Ordering::Relaxed), 3);
            assert_eq!(shared.refused.load(Ordering::Relaxed), 2);
        }
    }

    #[test]
    fn a_long_batch_of_writes_reads_the_taps_between_writes() {
        let (net, host) = fixtures::net(1, false);
        let rig = Rig::new(net);
        let (server, view, shared) = (rig.server(), &rig.view, &rig.shared);
        let ix = server.indices().unwrap();
        server
            .index(offsets::RX_ENABLE)
            .unwrap()
            .store(1, Ordering::Release);
        let receive = Receive {
            queues: Queue::all(view, RING, &rig.nets, &shared.tails).unwrap(),
            guest: GuestWords::new(view, RING).unwrap(),
            wake: -1,
        };
        for fill in 0..3 {
            fixtures::host_sends(&host, &fixtures::frame(60, fill), false);
        }
        // Submits `n` writes, then serves them as one batch.
        let batch = |n: u32| {
            let entry = write_entry(view, &fixtures::frame(60, 9));
            let tail = ix.ent_tail.load(Ordering::Relaxed);
            for i in 0..n {
                let slot = tail.wrapping_add(i) & ring::MASK;
                let at = RING + (offsets::ENTRIES + slot as usize * 32) as u64;
                view.reserved_write(at, &entry).unwrap();
            }
            ix.ent_tail.store(tail.wrapping_add(n), Ordering::Release);
            assert!(server.serve(&ix, Some(&receive)).unwrap());
        };
        // A short batch leaves the tap to the reads between batches.
        batch(READ_BETWEEN_WRITES - 1);
        assert_eq!(shared.queued.load(Ordering::Relaxed), 0);
        // A long one reads it in the middle.
        batch(READ_BETWEEN_WRITES);
        assert_eq!(shared.queued.load(Ordering::Relaxed), 3);
        assert_eq!(
            shared.writes.load(Ordering::Relaxed),
            u64::from(2 * READ_BETWEEN_WRITES - 1)
        );
    }

    #[test]
    fn a_frame_larger_than_the_guest_buffer_is_eunspec() {
        for offload in [false, true] {
            let (net, host) = fixtures::net(1, offload);
            let rig = Rig::new(net);
            let (server, view) = (rig.server(), &rig.view);
            submit(&server, read_entry(1514));
            assert_eq!(last_commit(&server).ret, Solo5Result::Again as i32);
            fixtures::host_sends(&host, &fixtures::frame(100, 3), offload);
            let small = fixtures::frame(40, 4);
            fixtures::host_sends(&host, &small, offload);
            submit(&server, read_entry(50));
            let eunspec = Solo5Result::Eunspec as i32;
            assert_eq!(last_commit(&server).ret, eunspec, "{offload}");
            submit(&server, read_entry(50));
            let commit = last_commit(&server);
            assert_eq!((commit.ret, commit.len), (Solo5Result::Ok as i32, 40));
            assert_eq!(view.bytes(BUF, 40).unwrap().to_vec(), small);
        }
    }

    /// A buffer outside guest memory, or overlapping the ring itself (its
    /// index words, which the I/O thread accesses as atomics), is refused
    /// and stops the guest.
    #[test]
    fn a_bad_buffer_stops_the_guest() {
        let cases = [
            (4 << 20, "outside guest memory"),
            (RING - 32, "overlaps the tender's area"),
            (
                RING + offsets::ENT_TAIL as u64,
                "overlaps the tender's area",
            ),
            ((2 << 20) - 64, "overlaps the tender's area"),
        ];
        for (data, why) in cases {
            let (net, _host) = fixtures::net(1, false);
            let rig = Rig::new(net);
            let server = rig.server();
            let ix = server.indices().unwrap();
            let mut entry = read_entry(64);
            entry.data = data;
            server
                .view
                .reserved_write(RING + offsets::ENTRIES as u64, &entry)
                .unwrap();
            ix.ent_tail.store(1, Ordering::Release);
            let error = server.serve(&ix, None).unwrap_err();
            assert!(error.contains(why), "{data:#x}: {error}");
        }
    }
}
