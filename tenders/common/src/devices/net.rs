//! Network devices: `--net:NAME=TAP` and `--net-mac:NAME=MAC`. An existing,
//! up tap interface becomes a NET_BASIC device; the guest sends and
//! receives whole Ethernet frames on it.
//!
//! `--net:NAME=fd:N` is a link the tender inherits open instead: one end of
//! a datagram socketpair (what `lamina run --port` passes, with the
//! lamina-usernet process on the other end) or a tap opened by the parent,
//! with or without virtio-net headers (IFF_VNET_HDR).
//! The user-mode network runs outside the tender, so that its TCP/IP stack
//! is not in the address space of the guest's sandbox (as Firecracker keeps
//! its network proxies outside the VMM).

use super::offload::OffloadLink;
use super::DeviceError;
use crate::mem::{GuestBytes, GuestBytesMut};
use crate::sys;
use seccompiler::SeccompRule;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

/// MTU when the interface's cannot be read.
pub const DEFAULT_MTU: u32 = 1500;

/// An attached network device.
#[derive(Debug)]
pub struct NetDevice {
    /// Its manifest name.
    pub name: String,
    /// Its handle (manifest index).
    pub handle: u64,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// MTU, without the Ethernet header.
    pub mtu: u16,
    /// [`net_features`](lamina_abi::mft::net_features) turned on.
    pub features: u16,
    tap: File,
    /// Whether `tap` is a socket (user-mode networking): read with
    /// `recv`, which tells a frame larger than the buffer from one that
    /// fits (a tap cuts it silently, but the tender reads taps through
    /// the offload link, whose buffer takes any frame).
    socket: bool,
    /// The tender's own offload adaptation ([`NetOffload::InTender`]), and
    /// the buffer a frame is copied into out of guest memory for it.
    link: Option<Mutex<(OffloadLink, Vec<u8>)>>,
}

/// Who handles the virtio-net header of a tap opened with offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetOffload {
    /// Nobody: plain frames, offloads off (Solo5 guests on spt).
    Off,
    /// The guest (spt, whose guest reads and writes the tap itself, when
    /// its note says NET_OFFLOAD): recorded in the manifest entry.
    InGuest,
    /// The tender, for any guest (hvt): see [`OffloadLink`].
    InTender,
}

impl NetDevice {
    /// Opens tap interface `tap` as device `name` at index `handle`; with
    /// `offload`, a tap (not user-mode networking) carries frames behind a
    /// virtio-net header with checksum and segmentation offload.
    pub fn open(
        name: &str,
        handle: u64,
        tap: &str,
        mac: Option<[u8; 6]>,
        offload: NetOffload,
    ) -> Result<Self, DeviceError> {
        let fail = |why: String| DeviceError::Tap {
            name: name.to_string(),
            tap: tap.to_string(),
            why,
        };
        if tap.starts_with("user:") {
            return Err(fail(String::from(
                "user-mode networking runs outside the tender: use `lamina run --port HOST:GUEST`, \
                 or pass one end of a socketpair served by lamina-usernet as --net:NAME=fd:N",
            )));
        }
        if let Some(number) = tap.strip_prefix("fd:") {
            return inherited(name, handle, number, mac, offload).map_err(fail);
        }
        // Opening a tap that does not exist would create one (as root):
        // make sure it is there and up first, as Solo5 does.
        let flags = sys::interface_flags(tap).map_err(|e| {
            fail(format!(
                "{e}; create it with `ip tuntap add {tap} mode tap`"
            ))
        })?;
        if flags & libc::IFF_UP == 0 {
            return Err(fail(format!(
                "it is down; bring it up with `ip link set {tap} up`"
            )));
        }
        let fd = sys::open_tap(tap, offload != NetOffload::Off).map_err(|e| {
            // A tap (not multi-queue) has one user: the kernel says EBUSY.
            let busy = if e.raw_os_error() == Some(libc::EBUSY) {
                " (another process, such as a unikernel's tender, has it)"
            } else {
                ""
            };
            fail(format!("cannot attach: {e}{busy}"))
        })?;
        let mtu = sys::interface_mtu(tap)
            .unwrap_or(DEFAULT_MTU)
            .min(u32::from(u16::MAX));
        let mac = match mac {
            Some(mac) => mac,
            None => random_mac().map_err(|e| fail(format!("cannot make a MAC address: {e}")))?,
        };
        let mut device = NetDevice::from_fd(
            name,
            handle,
            fd,
            mac,
            mtu as u16,
            offload == NetOffload::InTender,
        );
        if offload == NetOffload::InGuest {
            device.features = lamina_abi::mft::net_features::VIRTIO_NET_HDR;
        }
        Ok(device)
    }

    /// A device over `fd`, a tap or one end of a datagram socketpair (user
    /// mode networking, tests): whole frames per read and write, and with
    /// `offload_in_tender` each behind a virtio-net header that the
    /// tender's [`OffloadLink`] adds and removes.
    pub fn from_fd(
        name: &str,
        handle: u64,
        fd: OwnedFd,
        mac: [u8; 6],
        mtu: u16,
        offload_in_tender: bool,
    ) -> Self {
        let link = offload_in_tender.then(|| {
            Mutex::new((
                OffloadLink::new(fd.as_raw_fd()),
                Vec::with_capacity(OffloadLink::MAX_FRAME),
            ))
        });
        let tap = File::from(fd);
        let socket = tap
            .metadata()
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
        NetDevice {
            name: name.to_string(),
            handle,
            mac,
            mtu,
            features: 0,
            link,
            tap,
            socket,
        }
    }

    /// The host descriptor.
    pub fn fd(&self) -> i32 {
        self.tap.as_raw_fd()
    }

    /// A second handle on the same device, with its own descriptor and
    /// offload state, for another thread (hvt's ring I/O thread): both
    /// then serve the guest with the same code, so give the same answers.
    pub fn try_clone(&self) -> io::Result<NetDevice> {
        let fd = self.tap.as_fd().try_clone_to_owned()?;
        let mut twin = NetDevice::from_fd(
            &self.name,
            self.handle,
            fd,
            self.mac,
            self.mtu,
            self.link.is_some(),
        );
        twin.features = self.features;
        Ok(twin)
    }

    /// Frames from the host that the tender's offload link dropped
    /// (malformed, or a wrong checksum).
    pub fn dropped(&self) -> u64 {
        self.link.as_ref().map_or(0, |link| {
            link.lock().unwrap_or_else(|e| e.into_inner()).0.dropped
        })
    }

    /// Receives one frame into the guest's `buf`: `None` when none is
    /// waiting. A frame longer than `buf` is dropped, and an error
    /// ([`frame_too_large`]).
    pub fn read(&self, buf: GuestBytesMut<'_>) -> io::Result<Option<usize>> {
        if let Some(link) = &self.link {
            let mut link = link.lock().unwrap_or_else(|e| e.into_inner());
            return match link
                .0
                .receive(|frame| (frame.len() <= buf.len()).then(|| buf.copy_from(frame)))?
            {
                Some(Some(n)) => Ok(Some(n)),
                Some(None) => Err(frame_too_large()),
                None => Ok(None),
            };
        }
        let received = if self.socket {
            buf.recv_datagram(self.fd())
        } else {
            buf.read_from_fd(self.fd())
        };
        match received {
            Ok(0) => Ok(None),
            Ok(n) if n > buf.len() => Err(frame_too_large()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one frame from guest memory; a short write is an error, as is
    /// a frame larger than any link carries.
    pub fn write(&self, frame: GuestBytes<'_>) -> io::Result<()> {
        self.send(frame).and(self.flush())
    }

    /// Sends one frame from guest memory, or with the tender's offload link
    /// holds it back to join the next ones until [`NetDevice::flush`] (hvt's
    /// ring sends a batch this way). Errors as [`NetDevice::write`]'s, of
    /// this frame or of earlier ones written now.
    pub fn send(&self, frame: GuestBytes<'_>) -> io::Result<()> {
        // No link carries more (a tap takes 64 KiB of IP and its header,
        // which a guest that negotiated it writes itself).
        let header = if self.features & lamina_abi::mft::net_features::VIRTIO_NET_HDR != 0 {
            lamina_wire::vnet::HEADER_LEN
        } else {
            0
        };
        if frame.len() > header + OffloadLink::MAX_FRAME {
            return Err(frame_too_large());
        }
        if let Some(link) = &self.link {
            let mut guard = link.lock().unwrap_or_else(|e| e.into_inner());
            let (link, copy) = &mut *guard;
            // Within the capacity allocated up front: no allocation.
            copy.clear();
            frame.append_to(copy);
            return link.send(copy);
        }
        let sent = frame.write_to_fd(self.fd())?;
        if sent != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the tap",
            ));
        }
        Ok(())
    }

    /// Sends the frames [`NetDevice::send`] held back.
    pub fn flush(&self) -> io::Result<()> {
        match &self.link {
            Some(link) => link.lock().unwrap_or_else(|e| e.into_inner()).0.flush(),
            None => Ok(()),
        }
    }

    /// spt seccomp rules: `read`, `readv` (a header and a frame) and `write`
    /// on this descriptor only.
    pub fn spt_rules(&self) -> Result<Vec<(i64, SeccompRule)>, seccompiler::BackendError> {
        let rule = || crate::sandbox::arg_is(0, self.fd() as u64);
        Ok(vec![
            (libc::SYS_read, rule()?),
            (libc::SYS_readv, rule()?),
            (libc::SYS_write, rule()?),
        ])
    }
}

/// The error of a frame that does not fit: the guest's receive buffer,
/// or (sending) any link.
pub fn frame_too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "frame larger than the buffer for it",
    )
}

/// The device over inherited descriptor `number` (`--net:NAME=fd:N`),
/// checked to carry whole frames (see [`sys::inherited_link`]): a
/// socketpair or a tap opened without IFF_VNET_HDR carries plain frames; a
/// tap opened with it (as Jitsu may hand one over) gets the offloads a tap
/// the tender opens gets, handled by whoever `offload` says — unless the
/// guest cannot take virtio-net headers at all.
fn inherited(
    name: &str,
    handle: u64,
    number: &str,
    mac: Option<[u8; 6]>,
    offload: NetOffload,
) -> Result<NetDevice, String> {
    let fd: i32 = number
        .parse()
        .map_err(|_| format!("'fd:{number}' is not fd:N with N a descriptor number"))?;
    let (mtu, vnet_header) = match sys::inherited_link(fd)? {
        sys::InheritedLink::Datagrams => (DEFAULT_MTU, false),
        sys::InheritedLink::Tap {
            interface,
            vnet_header,
        } => {
            if vnet_header && offload == NetOffload::Off {
                return Err(format!(
                    "descriptor {fd} is a tap ({interface}) opened with IFF_VNET_HDR, and this                      guest reads the tap itself without understanding virtio-net headers (its                      runtime does not declare NET_OFFLOAD); open it with IFF_TAP | IFF_NO_PI only"
                ));
            }
            let mtu = sys::interface_mtu(&interface).unwrap_or(DEFAULT_MTU);
            (mtu, vnet_header)
        }
    };
    let mac = match mac {
        Some(mac) => mac,
        None => random_mac().map_err(|e| format!("cannot make a MAC address: {e}"))?,
    };
    if vnet_header {
        // The header length and offloads belong to the interface: the
        // parent handed it over, so the tender sets them as it does on
        // the taps it opens.
        sys::set_tap_header_len(fd, lamina_wire::vnet::HEADER_LEN)
            .and_then(|()| sys::set_tap_offload(fd, true))
            .map_err(|e| format!("descriptor {fd}: cannot set up its virtio-net headers: {e}"))?;
    }
    let fd = sys::adopt_inherited(fd).map_err(|e| format!("descriptor {fd}: {e}"))?;
    let mut device = NetDevice::from_fd(
        name,
        handle,
        fd,
        mac,
        mtu.min(u32::from(u16::MAX)) as u16,
        vnet_header && offload == NetOffload::InTender,
    );
    if vnet_header && offload == NetOffload::InGuest {
        device.features = lamina_abi::mft::net_features::VIRTIO_NET_HDR;
    }
    Ok(device)
}

/// A random, locally administered, unicast MAC.
fn random_mac() -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    crate::sys::random_bytes(&mut mac)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..16 {
            let mac = super::random_mac().unwrap();
            assert_eq!(mac[0] & 0x03, 0x02);
        }
    }
}
