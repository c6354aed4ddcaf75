//! Raw Ethernet on unix through a Linux tap device (`--net:NAME=TAP`), so a
//! TCP/IP stack can be developed against real frames without a hypervisor.

use crate::net::net_error;
use crate::reactor::{Async, Reactor};
use lamina_core::device::{NetError, Netif, Random};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

/// A tap device opened by name.
pub struct TapNetif {
    io: Async<File>,
    mac: [u8; 6],
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TapNetif {
    /// Attaches to the existing tap device `name`. The MAC address is random
    /// and locally administered: it is the guest's address, not the tap's.
    pub fn open(name: &str, random: &impl Random, reactor: Rc<Reactor>) -> Result<Self, String> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(format!("invalid tap device name '{name}'"));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags_nonblocking()
            .open("/dev/net/tun")
            .map_err(|e| format!("cannot open /dev/net/tun: {e}"))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads an `ifreq` (40 bytes on x86_64, which IfReq
        // matches) through the pointer, which is valid for the whole call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(format!(
                "cannot attach to tap device '{name}': {}",
                io::Error::last_os_error()
            ));
        }
        let mut mac = [0u8; 6];
        random.fill(&mut mac);
        mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
        let io = Async::new(file, reactor).map_err(|e| e.to_string())?;
        Ok(TapNetif { io, mac })
    }
}

trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

const MAX_FRAME: usize = 1514;

impl Netif for TapNetif {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        1500
    }

    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        let mut frame = [0u8; 65536];
        let n = self
            .io
            .read_with(|mut f| f.read(&mut frame))
            .await
            .map_err(net_error)?;
        copy_frame(&frame[..n], buf)
    }

    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let mut frame = [0u8; 65536];
        match self.io.get_ref().read(&mut frame) {
            Ok(n) => copy_frame(&frame[..n], buf).map(Some),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(net_error(e)),
        }
    }

    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLarge);
        }
        match self.io.get_ref().write(frame) {
            Ok(_) => Ok(()),
            // The tap's queue is full: drop, as a busy link does.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(net_error(e)),
        }
    }
}

fn copy_frame(frame: &[u8], buf: &mut [u8]) -> Result<usize, NetError> {
    let dst = buf.get_mut(..frame.len()).ok_or(NetError::TooLarge)?;
    dst.copy_from_slice(frame);
    Ok(frame.len())
}
