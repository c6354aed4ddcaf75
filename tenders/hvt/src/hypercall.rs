//! Hypercall dispatch (ABI.md 4.1-4.2): the guest does `outl` of a 32-bit
//! guest address to port 0x500 + n. Every guest address and length goes
//! through [`GuestMemory`]'s one checked function; a bad one ends the guest
//! with a [`HypercallError`], never a tender crash.
//!
//! Results the guest can act on are `ret` codes, as in Solo5: a bad handle
//! or a block request that is not whole sectors on the device is
//! SOLO5_R_EINVAL; a host-side failure (the tap refuses a frame, the disk
//! file fails, a frame larger than the guest's buffer) is SOLO5_R_EUNSPEC,
//! the same answer the network ring gives for the same failure.

use lamina_abi::hvt::{
    HcBlockFlush, HcBlockRead, HcBlockRingServe, HcBlockWrite, HcHalt, HcNetRead, HcNetWrite,
    HcPoll, HcPuts, HcTraceRegister, HcWalltime, Hypercall, HALT_COOKIE_MAX,
};
use lamina_abi::mft::block_features;
use lamina_abi::Solo5Result;
use lamina_hvt::spin::Spin;
use lamina_tender::devices::Devices;
use lamina_tender::mem::{GuestFault, GuestMemory};
use lamina_tender::sys;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use thiserror::Error;

/// epoll tag of the internal timer (never a device handle, which is < 64).
const TIMER_TAG: u64 = u64::MAX;
/// epoll tag of the descriptor of [`Hypercalls::wake_on`].
const WAKE_TAG: u64 = u64::MAX - 1;
/// epoll tag of the receive queues' wake-up eventfd.
const RX_WAKE_TAG: u64 = u64::MAX - 2;

/// A hypercall that ends the guest.
#[derive(Debug, Error)]
pub enum HypercallError {
    /// Not a 32-bit `out` to a hypercall port.
    #[error("invalid guest port access: {direction} of {size} bytes to port {port:#x}")]
    BadAccess {
        /// "in" or "out".
        direction: &'static str,
        /// Bytes.
        size: usize,
        /// Port.
        port: u16,
    },
    /// A port that is no hypercall, or one whose devices are not attached.
    #[error("invalid guest hypercall: port {port:#x}{why}")]
    Unknown {
        /// Port.
        port: u16,
        /// Why it is not available.
        why: &'static str,
    },
    /// A guest pointer or length was bad.
    #[error("guest hypercall {hypercall:?} passed a bad buffer: {fault}")]
    Fault {
        /// Which hypercall.
        hypercall: Hypercall,
        /// What was wrong.
        fault: GuestFault,
    },
    /// The network ring, served during a POLL, or the block ring, served
    /// in `BlockRingServe`, was malformed.
    #[error("{0}")]
    Ring(String),
    /// Host I/O failed.
    #[error("guest hypercall {hypercall:?}: host I/O failed: {error}")]
    Io {
        /// Which hypercall.
        hypercall: Hypercall,
        /// The error.
        error: std::io::Error,
    },
}

/// What the vCPU loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Resume the guest.
    Resume,
    /// The guest halted with this status.
    Halt(i32),
}

/// The tender's side of the hypercalls.
pub struct Hypercalls {
    devices: Devices,
    epoll: OwnedFd,
    timer: OwnedFd,
    rx: Option<RxPoll>,
    /// The block ring's guest address and what its I/O thread shares,
    /// once that runs: `BlockRingServe` serves the ring on this thread.
    block_ring: Option<(u64, std::sync::Arc<crate::block_ring::Shared>)>,
    /// The trace recorder, with `--trace`: `TraceRegister` hands it the
    /// guest's ring.
    trace: Option<std::sync::Arc<crate::trace::Recorder>>,
    /// Hypercalls served, by number (index 0 unused).
    pub counts: [u64; 12],
}

/// POLL for a guest that takes its frames from the receive queues: the
/// taps are the ring I/O thread's, which wakes the POLL through an eventfd
/// when it has queued a frame for a waiting guest.
struct RxPoll {
    /// The ring's guest address.
    ring: u64,
    /// The timer, the wake eventfd, the stop eventfd and the taps.
    epoll: OwnedFd,
    wake: std::os::fd::RawFd,
    /// What the ring I/O thread shares, once it runs: the vCPU thread
    /// serves the ring itself while the guest waits.
    server: Option<std::sync::Arc<crate::ring::Shared>>,
    /// How long a POLL looks for input before it blocks, adapted as KVM's
    /// halt-polling is (see [`next_host_poll`]).
    host_poll: std::cell::Cell<Duration>,
}

/// Longest a POLL looks for input before it blocks. Blocking costs the
/// wake-up of this thread (tens of µs on a nested host) on top of the
/// exit the guest already paid.
const MAX_HOST_POLL: Duration = Duration::from_micros(200);
/// The first look after a short block.
const FIRST_HOST_POLL: Duration = Duration::from_micros(25);

/// The next POLL's look, given this one's and how long input took to come
/// (`None`: only the deadline or a signal ended it): kept when it caught
/// the input, longer when input came soon after it gave up, shorter when
/// it came late or not at all, so that an idle guest costs no host CPU.
fn next_host_poll(window: Duration, waited: Option<Duration>) -> Duration {
    match waited {
        Some(waited) if waited <= window => window,
        Some(waited) if waited < MAX_HOST_POLL => {
            (window * 2).clamp(FIRST_HOST_POLL, MAX_HOST_POLL)
        }
        _ if window < FIRST_HOST_POLL => Duration::ZERO,
        _ => window / 2,
    }
}

impl Hypercalls {
    /// Sets up polling over the network devices.
    pub fn new(devices: Devices) -> std::io::Result<Self> {
        let epoll = sys::epoll_create()?;
        let timer = sys::timerfd_create()?;
        sys::epoll_add(epoll.as_raw_fd(), timer.as_raw_fd(), TIMER_TAG)?;
        for net in &devices.nets {
            sys::epoll_add(epoll.as_raw_fd(), net.fd(), net.handle)?;
        }
        Ok(Hypercalls {
            devices,
            epoll,
            timer,
            rx: None,
            block_ring: None,
            trace: None,
            counts: [0; 12],
        })
    }

    /// The devices.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// Makes a POLL return as soon as `fd` is readable (the stop eventfd:
    /// a signal must not wait for the guest's deadline).
    pub fn wake_on(&self, fd: std::os::fd::RawFd) -> std::io::Result<()> {
        sys::epoll_add(self.epoll.as_raw_fd(), fd, WAKE_TAG)?;
        if let Some(rx) = &self.rx {
            sys::epoll_add(rx.epoll.as_raw_fd(), fd, WAKE_TAG)?;
        }
        Ok(())
    }

    /// Offers POLL over the receive queues of the ring at `ring`, woken by
    /// eventfd `wake` (before [`Hypercalls::wake_on`]). It is used once the
    /// guest has enabled the queues.
    pub fn receive_queues(&mut self, ring: u64, wake: std::os::fd::RawFd) -> std::io::Result<()> {
        let epoll = sys::epoll_create()?;
        sys::epoll_add(epoll.as_raw_fd(), self.timer.as_raw_fd(), TIMER_TAG)?;
        sys::epoll_add(epoll.as_raw_fd(), wake, RX_WAKE_TAG)?;
        for net in &self.devices.nets {
            sys::epoll_add_exclusive(epoll.as_raw_fd(), net.fd(), net.handle, false)?;
        }
        self.rx = Some(RxPoll {
            ring,
            epoll,
            wake,
            server: None,
            host_poll: std::cell::Cell::new(Duration::ZERO),
        });
        Ok(())
    }

    /// Lets POLL serve the ring with the I/O thread's lock and counters.
    pub fn serve_ring_with(&mut self, shared: std::sync::Arc<crate::ring::Shared>) {
        if let Some(rx) = &mut self.rx {
            rx.server = Some(shared);
        }
    }

    /// Lets `BlockRingServe` serve the block ring at `gpa` with its I/O
    /// thread's lock and counters.
    pub fn serve_block_ring_with(
        &mut self,
        gpa: u64,
        shared: std::sync::Arc<crate::block_ring::Shared>,
    ) {
        self.block_ring = Some((gpa, shared));
    }

    /// Lets `TraceRegister` hand the guest's ring to `recorder`.
    pub fn record_trace_with(&mut self, recorder: std::sync::Arc<crate::trace::Recorder>) {
        self.trace = Some(recorder);
    }

    /// Descriptors the tender keeps using while the guest runs.
    pub fn event_fds(&self) -> (i32, i32) {
        (self.epoll.as_raw_fd(), self.timer.as_raw_fd())
    }

    /// With the receive queues: their POLL set and wake eventfd.
    pub fn rx_fds(&self) -> Option<(i32, i32)> {
        self.rx.as_ref().map(|rx| (rx.epoll.as_raw_fd(), rx.wake))
    }

    /// Handles an `out` to `port` of `data`.
    pub fn dispatch(
        &mut self,
        mem: &GuestMemory,
        port: u16,
        data: &[u8],
    ) -> Result<Next, HypercallError> {
        let Ok(word) = <[u8; 4]>::try_from(data) else {
            return Err(HypercallError::BadAccess {
                direction: "out",
                size: data.len(),
                port,
            });
        };
        let gpa = u64::from(u32::from_le_bytes(word));
        let hypercall =
            Hypercall::from_port(port).ok_or(HypercallError::Unknown { port, why: "" })?;
        self.counts[hypercall as usize] += 1;
        let fault = |fault| HypercallError::Fault { hypercall, fault };
        let io = |error| HypercallError::Io { hypercall, error };
        let unavailable = |why| Err(HypercallError::Unknown { port, why });
        match hypercall {
            Hypercall::Walltime => {
                let nsecs = sys::clock_nanos(libc::CLOCK_REALTIME);
                mem.write(gpa, &HcWalltime { nsecs }).map_err(fault)?;
            }
            Hypercall::Puts => {
                let puts: HcPuts = mem.read(gpa).map_err(fault)?;
                let text = mem.bytes(puts.data, puts.len).map_err(fault)?;
                // Best effort, as in Solo5: the console cannot fail the guest.
                let _ = text.write_all_to_fd(libc::STDOUT_FILENO);
            }
            Hypercall::Poll => {
                let mut poll: HcPoll = mem.read(gpa).map_err(fault)?;
                let (ready_set, count) = match self.poll_queues(mem, poll.timeout_nsecs) {
                    Some(result) => result?,
                    None => self.poll(poll.timeout_nsecs).map_err(io)?,
                };
                poll.ready_set = ready_set;
                poll.ret = count;
                mem.write(gpa, &poll).map_err(fault)?;
            }
            Hypercall::BlockWrite | Hypercall::BlockRead | Hypercall::BlockFlush
                if self.devices.blocks.is_empty() =>
            {
                return unavailable(" (no block device attached)");
            }
            Hypercall::BlockWrite => {
                let mut call: HcBlockWrite = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(block) = self.devices.block(call.handle) {
                    if block.accepts(call.offset, call.len) {
                        let data = mem.bytes(call.data, call.len).map_err(fault)?;
                        call.ret = status(block.write_at(call.offset, data));
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::BlockRead => {
                let mut call: HcBlockRead = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(block) = self.devices.block(call.handle) {
                    if block.accepts(call.offset, call.len) {
                        let data = mem.bytes_mut(call.data, call.len).map_err(fault)?;
                        call.ret = status(block.read_at(call.offset, data));
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::BlockFlush => {
                let mut call: HcBlockFlush = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(block) = self.devices.block(call.handle) {
                    if block.features & block_features::FLUSH != 0 {
                        call.ret = status(block.flush());
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::BlockRingServe => {
                let Some((ring, shared)) = &self.block_ring else {
                    return unavailable(" (no block ring offered)");
                };
                let served =
                    crate::block_ring::serve_for_vcpu(mem, *ring, &self.devices.blocks, shared)
                        .map_err(HypercallError::Ring)?;
                mem.write(gpa, &HcBlockRingServe { served })
                    .map_err(fault)?;
            }
            Hypercall::TraceRegister => {
                let Some(recorder) = &self.trace else {
                    return unavailable(" (no trace recorded: the tender was not given --trace)");
                };
                let host_ns = sys::clock_nanos(libc::CLOCK_MONOTONIC);
                let mut call: HcTraceRegister = mem.read(gpa).map_err(fault)?;
                call.ret = recorder.register(mem, &call, host_ns) as i32;
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::NetWrite | Hypercall::NetRead if self.devices.nets.is_empty() => {
                return unavailable(" (no network device attached)");
            }
            Hypercall::NetWrite => {
                let mut call: HcNetWrite = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(net) = self.devices.net(call.handle) {
                    let frame = mem.bytes(call.data, call.len).map_err(fault)?;
                    call.ret = status(net.write(frame));
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::NetRead => {
                let mut call: HcNetRead = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(net) = self.devices.net(call.handle) {
                    let buf = mem.bytes_mut(call.data, call.len).map_err(fault)?;
                    call.ret = match net.read(buf) {
                        Ok(Some(n)) => {
                            call.len = n as u64;
                            Solo5Result::Ok as i32
                        }
                        Ok(None) => Solo5Result::Again as i32,
                        Err(_) => Solo5Result::Eunspec as i32,
                    };
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::Halt => {
                let halt: HcHalt = mem.read(gpa).map_err(fault)?;
                if halt.cookie != 0 {
                    mem.bytes(halt.cookie, HALT_COOKIE_MAX).map_err(fault)?;
                }
                return Ok(Next::Halt(halt.exit_status));
            }
        }
        Ok(Next::Resume)
    }

    /// POLL of a guest that takes its frames from the receive queues (else
    /// `None`): serves the ring, and until a frame is queued, the deadline
    /// passes or a signal comes, waits for the taps and the I/O thread.
    /// The guest looks at the queues itself: the ready set is empty.
    fn poll_queues(
        &self,
        mem: &GuestMemory,
        timeout: u64,
    ) -> Option<Result<(u64, i32), HypercallError>> {
        let rx = self.rx.as_ref()?;
        let server = rx.server.as_ref()?;
        let enable = mem
            .atomic_u32(rx.ring + lamina_abi::ring::offsets::RX_ENABLE as u64)
            .ok()?;
        if enable.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return None;
        }
        let io = |error| HypercallError::Io {
            hypercall: Hypercall::Poll,
            error,
        };
        let window = rx.host_poll.get();
        let started = Instant::now();
        let mut look = Spin::new(window);
        let result = (|| {
            sys::timerfd_arm(self.timer.as_raw_fd(), timeout).map_err(io)?;
            let mut tags = [0u64; 64];
            let mut serve = true;
            look.start();
            loop {
                if serve {
                    let queued =
                        crate::ring::serve_for_poll(mem, rx.ring, &self.devices.nets, server)
                            .map_err(HypercallError::Ring)?;
                    if queued {
                        return Ok(Some(started.elapsed()));
                    }
                }
                let looking = look.look();
                let n = if looking {
                    sys::epoll_wait_for(rx.epoll.as_raw_fd(), &mut tags, 0)
                } else {
                    sys::epoll_wait(rx.epoll.as_raw_fd(), &mut tags)
                }
                .map_err(io)?;
                serve = n > 0;
                if n == 0 && looking {
                    // Look again, after any other thread that wants this
                    // CPU (the client's, the I/O thread's) has run.
                    std::thread::yield_now();
                    continue;
                }
                let woken = tags[..n].contains(&RX_WAKE_TAG);
                if woken {
                    sys::eventfd_drain(rx.wake);
                }
                // Only taps readable: read them (above); anything else (the
                // deadline, the I/O thread's wake-up, a signal) ends the POLL.
                if n == 0 || tags[..n].iter().any(|&tag| tag >= 64) {
                    return Ok(woken.then(|| started.elapsed()));
                }
            }
        })();
        if let Ok(waited) = result {
            // Off the CPU while looking: the host is busy, and the look
            // takes a CPU from the threads that bring input; look no more
            // until input comes soon after a sleep begins.
            rx.host_poll.set(if look.descheduled() > 0 {
                Duration::ZERO
            } else {
                next_host_poll(window, waited)
            });
        }
        Some(result.map(|_| (0, 0)))
    }

    /// Waits up to `timeout` ns for network input: (ready set, count).
    fn poll(&self, timeout: u64) -> std::io::Result<(u64, i32)> {
        sys::timerfd_arm(self.timer.as_raw_fd(), timeout)?;
        let mut tags = [0u64; 64];
        let n = sys::epoll_wait(self.epoll.as_raw_fd(), &mut tags)?;
        let (mut ready, mut count) = (0u64, 0);
        for &tag in &tags[..n] {
            if tag < 64 {
                ready |= 1 << tag;
                count += 1;
            }
        }
        Ok((ready, count))
    }
}

/// The `ret` of a host operation: SOLO5_R_OK, or SOLO5_R_EUNSPEC when the
/// host failed it (the guest decides what that means, as under Solo5).
fn status(result: std::io::Result<()>) -> i32 {
    match result {
        Ok(()) => Solo5Result::Ok as i32,
        Err(_) => Solo5Result::Eunspec as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use zerocopy::{FromBytes, Immutable, IntoBytes};

    /// Where the tests put a hypercall struct and its buffer.
    const CALL: u64 = 0x1000;
    const BUF: u64 = 0x2000;

    fn port(hypercall: Hypercall) -> u16 {
        hypercall.port()
    }

    /// Runs hypercall `hypercall` with `call` at CALL; the struct after.
    fn call<T: FromBytes + IntoBytes + Immutable>(
        hypercalls: &mut Hypercalls,
        mem: &GuestMemory,
        hypercall: Hypercall,
        call: &T,
    ) -> T {
        mem.write(CALL, call).unwrap();
        let next = hypercalls
            .dispatch(mem, port(hypercall), &(CALL as u32).to_le_bytes())
            .unwrap();
        assert_eq!(next, Next::Resume);
        mem.read(CALL).unwrap()
    }

    fn net_write(hypercalls: &mut Hypercalls, mem: &GuestMemory, frame: &[u8]) -> i32 {
        mem.copy_in(BUF, frame).unwrap();
        let write = HcNetWrite {
            handle: 1,
            data: BUF,
            len: frame.len() as u64,
            ..Default::default()
        };
        call(hypercalls, mem, Hypercall::NetWrite, &write).ret
    }

    fn net_read(hypercalls: &mut Hypercalls, mem: &GuestMemory, len: u64) -> (i32, u64) {
        let read = HcNetRead {
            handle: 1,
            data: BUF,
            len,
            ..Default::default()
        };
        let done = call(hypercalls, mem, Hypercall::NetRead, &read);
        (done.ret, done.len)
    }

    #[test]
    fn a_failed_frame_is_eunspec_to_the_guest_not_its_end() {
        for offload in [false, true] {
            let (net, host) = fixtures::net(1, offload);
            let devices = Devices {
                manifest: Vec::new(),
                blocks: Vec::new(),
                nets: vec![net],
            };
            let mut hypercalls = Hypercalls::new(devices).unwrap();
            let mem = GuestMemory::anywhere(1 << 20).unwrap();
            let frame = fixtures::frame(60, 1);
            assert_eq!(net_write(&mut hypercalls, &mem, &frame), 0);
            assert_eq!(fixtures::host_receives(&host, offload), frame);
            // Larger than any link carries: refused, not sent.
            let huge = fixtures::frame(70_000, 2);
            let eunspec = Solo5Result::Eunspec as i32;
            assert_eq!(
                net_write(&mut hypercalls, &mem, &huge),
                eunspec,
                "{offload}"
            );
            // The host's end hangs up: the write fails.
            fixtures::host_hangs_up(&host);
            assert_eq!(
                net_write(&mut hypercalls, &mem, &frame),
                eunspec,
                "{offload}"
            );
        }
    }

    #[test]
    fn a_frame_larger_than_the_guest_buffer_is_eunspec() {
        for offload in [false, true] {
            let (net, host) = fixtures::net(1, offload);
            let devices = Devices {
                manifest: Vec::new(),
                blocks: Vec::new(),
                nets: vec![net],
            };
            let mut hypercalls = Hypercalls::new(devices).unwrap();
            let mem = GuestMemory::anywhere(1 << 20).unwrap();
            let again = Solo5Result::Again as i32;
            assert_eq!(net_read(&mut hypercalls, &mem, 1514).0, again);
            fixtures::host_sends(&host, &fixtures::frame(100, 3), offload);
            let small = fixtures::frame(40, 4);
            fixtures::host_sends(&host, &small, offload);
            let eunspec = Solo5Result::Eunspec as i32;
            assert_eq!(net_read(&mut hypercalls, &mem, 50).0, eunspec, "{offload}");
            // The next frame, which fits, comes whole.
            assert_eq!(net_read(&mut hypercalls, &mem, 50), (0, 40));
            assert_eq!(mem.bytes(BUF, 40).unwrap().to_vec(), small);
            assert_eq!(net_read(&mut hypercalls, &mem, 50).0, again);
        }
    }

    #[test]
    fn block_requests_are_whole_sectors_and_host_failures_are_eunspec() {
        let (block, path) = fixtures::block(1, "sectors");
        let devices = Devices {
            manifest: Vec::new(),
            blocks: vec![block],
            nets: Vec::new(),
        };
        let mut hypercalls = Hypercalls::new(devices).unwrap();
        let mem = GuestMemory::anywhere(1 << 20).unwrap();
        let read = |hypercalls: &mut Hypercalls, offset: u64, len: u64| {
            let request = HcBlockRead {
                handle: 1,
                offset,
                data: BUF,
                len,
                ..Default::default()
            };
            call(hypercalls, &mem, Hypercall::BlockRead, &request).ret
        };
        let write = |hypercalls: &mut Hypercalls, offset: u64, len: u64| {
            let request = HcBlockWrite {
                handle: 1,
                offset,
                data: BUF,
                len,
                ..Default::default()
            };
            call(hypercalls, &mem, Hypercall::BlockWrite, &request).ret
        };
        let einval = Solo5Result::Einval as i32;
        assert_eq!(read(&mut hypercalls, 512, 1024), 0);
        assert_eq!(mem.bytes(BUF, 1024).unwrap().to_vec(), vec![0x5a; 1024]);
        for (offset, len) in [(100, 512), (512, 100), (0, 0), (3584, 1024), (4096, 512)] {
            assert_eq!(read(&mut hypercalls, offset, len), einval, "{offset}+{len}");
            assert_eq!(
                write(&mut hypercalls, offset, len),
                einval,
                "{offset}+{len}"
            );
        }
        mem.bytes_mut(BUF, 512).unwrap().fill(7);
        assert_eq!(write(&mut hypercalls, 3584, 512), 0);
        assert_eq!(std::fs::read(&path).unwrap()[3584..], [7; 512]);
        // The file shrinks under the tender: the disk fails the read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1024)
            .unwrap();
        assert_eq!(
            read(&mut hypercalls, 2048, 512),
            Solo5Result::Eunspec as i32
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_flush_is_answered_only_on_a_device_that_has_flush() {
        let (mut block, path) = fixtures::block(1, "flush");
        let flush = |hypercalls: &mut Hypercalls, mem: &GuestMemory, handle: u64| {
            let request = HcBlockFlush {
                handle,
                ..Default::default()
            };
            call(hypercalls, mem, Hypercall::BlockFlush, &request).ret
        };
        let einval = Solo5Result::Einval as i32;
        let mem = GuestMemory::anywhere(1 << 20).unwrap();
        // Without the feature (a Solo5 guest): refused.
        block.features = 0;
        let mut hypercalls = Hypercalls::new(Devices {
            manifest: Vec::new(),
            blocks: vec![block],
            nets: Vec::new(),
        })
        .unwrap();
        assert_eq!(flush(&mut hypercalls, &mem, 1), einval);
        // Closes the disk, whose lock the next opening takes.
        drop(hypercalls);
        let (mut block, _) = fixtures::block(1, "flush");
        block.features = block_features::FLUSH;
        let mut hypercalls = Hypercalls::new(Devices {
            manifest: Vec::new(),
            blocks: vec![block],
            nets: Vec::new(),
        })
        .unwrap();
        assert_eq!(flush(&mut hypercalls, &mem, 1), 0);
        assert_eq!(flush(&mut hypercalls, &mem, 2), einval);
        std::fs::remove_file(path).unwrap();
    }
}
