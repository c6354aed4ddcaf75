//! Hypercall dispatch (ABI.md 4.1-4.2): the guest does `outl` of a 32-bit
//! guest address to port 0x500 + n. Every guest address and length goes
//! through [`GuestMemory`]'s one checked function; a bad one ends the guest
//! with a [`HypercallError`], never a tender crash. Results the guest can
//! act on (a bad handle, a range past the device) are `ret` codes.

use lamina_abi::hvt::{
    HcBlockRead, HcBlockWrite, HcHalt, HcNetRead, HcNetWrite, HcPoll, HcPuts, HcWalltime,
    Hypercall, HALT_COOKIE_MAX,
};
use lamina_abi::Solo5Result;
use lamina_tender::devices::Devices;
use lamina_tender::mem::{GuestFault, GuestMemory};
use lamina_tender::sys;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use thiserror::Error;

/// epoll tag of the internal timer (never a device handle, which is < 64).
const TIMER_TAG: u64 = u64::MAX;

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
    /// Hypercalls served, by number (index 0 unused).
    pub counts: [u64; 9],
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
            counts: [0; 9],
        })
    }

    /// The devices.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// Descriptors the tender keeps using while the guest runs.
    pub fn event_fds(&self) -> (i32, i32) {
        (self.epoll.as_raw_fd(), self.timer.as_raw_fd())
    }

    /// Handles an `out` to `port` of `data`.
    pub fn dispatch(
        &mut self,
        mem: &mut GuestMemory,
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
                let text = mem.slice(puts.data, puts.len).map_err(fault)?;
                // Best effort, as in Solo5: the console cannot fail the guest.
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text).and_then(|()| stdout.flush());
            }
            Hypercall::Poll => {
                let mut poll: HcPoll = mem.read(gpa).map_err(fault)?;
                let (ready_set, count) = self.poll(poll.timeout_nsecs).map_err(io)?;
                poll.ready_set = ready_set;
                poll.ret = count;
                mem.write(gpa, &poll).map_err(fault)?;
            }
            Hypercall::BlockWrite | Hypercall::BlockRead if self.devices.blocks.is_empty() => {
                return unavailable(" (no block device attached)");
            }
            Hypercall::BlockWrite => {
                let mut call: HcBlockWrite = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(block) = self.devices.block(call.handle) {
                    if block.in_range(call.offset, call.len) {
                        let data = mem.slice(call.data, call.len).map_err(fault)?;
                        block.write_at(call.offset, data).map_err(io)?;
                        call.ret = Solo5Result::Ok as i32;
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::BlockRead => {
                let mut call: HcBlockRead = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(block) = self.devices.block(call.handle) {
                    if block.in_range(call.offset, call.len) {
                        let data = mem.slice_mut(call.data, call.len).map_err(fault)?;
                        block.read_at(call.offset, data).map_err(io)?;
                        call.ret = Solo5Result::Ok as i32;
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::NetWrite | Hypercall::NetRead if self.devices.nets.is_empty() => {
                return unavailable(" (no network device attached)");
            }
            Hypercall::NetWrite => {
                let mut call: HcNetWrite = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(net) = self.devices.net(call.handle) {
                    let frame = mem.slice(call.data, call.len).map_err(fault)?;
                    net.write(frame).map_err(io)?;
                    call.ret = Solo5Result::Ok as i32;
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::NetRead => {
                let mut call: HcNetRead = mem.read(gpa).map_err(fault)?;
                call.ret = Solo5Result::Einval as i32;
                if let Some(net) = self.devices.net(call.handle) {
                    let buf = mem.slice_mut(call.data, call.len).map_err(fault)?;
                    match net.read(buf).map_err(io)? {
                        Some(n) => {
                            call.len = n as u64;
                            call.ret = Solo5Result::Ok as i32;
                        }
                        None => call.ret = Solo5Result::Again as i32,
                    }
                }
                mem.write(gpa, &call).map_err(fault)?;
            }
            Hypercall::Halt => {
                let halt: HcHalt = mem.read(gpa).map_err(fault)?;
                if halt.cookie != 0 {
                    mem.slice(halt.cookie, HALT_COOKIE_MAX).map_err(fault)?;
                }
                return Ok(Next::Halt(halt.exit_status));
            }
        }
        Ok(Next::Resume)
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
