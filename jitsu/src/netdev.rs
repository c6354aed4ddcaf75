//! Network interfaces of the calling thread's network namespace, set up
//! with the classic netdevice and bridge `ioctl(2)`s (see netdevice(7)):
//! create and delete a bridge, add a port, set an address, a MAC address,
//! the flags and the transmit queue length, turn IPv6 off.
//!
//! Written against the ioctls rather than with a netlink crate or by
//! running `ip`: these few calls need no message encoding, no dependency
//! and no program on the PATH, and they fail with the kernel's own error.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// From linux/sockios.h; the libc crate defines them for Android only.
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRDELBR: libc::c_ulong = 0x89a1;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// The longest interface name: IFNAMSIZ less its NUL.
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// What the daemon says when it may not create interfaces.
pub const NEEDS_ROOT: &str = "tap mode needs root (CAP_NET_ADMIN); use network = \"user\"";

/// Checks that `name` can name an interface: 1 to 15 bytes of ASCII
/// letters, digits, `-` and `_`. The kernel takes more (anything but `/`,
/// `:` and white space), but a name that needs quoting in `ip` commands
/// helps nobody.
pub fn check_name(name: &str) -> io::Result<()> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fine {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name '{name}': 1 to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_'"
            ),
        ))
    }
}

/// `result` of an interface operation, with a permission error explained
/// (tap mode needs root) and any other error prefixed with `what`.
pub fn explain<T>(result: io::Result<T>, what: &str) -> io::Result<T> {
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what}: {NEEDS_ROOT}"),
        ),
        _ => io::Error::new(e.kind(), format!("{what}: {e}")),
    })
}

/// `result` of a libc call: -1 becomes the thread's `errno`.
fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An `ifreq` naming interface `name` (checked with [`check_name`]).
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    check_name(name)?;
    // SAFETY: an all-zero ifreq is a valid value (an empty name, a zero union).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// A datagram socket to issue interface ioctls on, in the calling
/// thread's network namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(socket, request, ifreq)` on a fresh control socket.
fn ifreq_ioctl(request: libc::c_ulong, ifreq: &mut libc::ifreq) -> io::Result<()> {
    let socket = control_socket()?;
    // SAFETY: every request used with this function reads or writes one
    // ifreq, which lives for the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), request as _, ifreq as *mut libc::ifreq) })?;
    Ok(())
}

/// Creates bridge `name` (down, no ports, no address).
pub fn add_bridge(name: &str) -> io::Result<()> {
    bridge_ioctl(SIOCBRADDBR, name)
}

/// Deletes bridge `name`, which must be down; its ports are released.
pub fn delete_bridge(name: &str) -> io::Result<()> {
    bridge_ioctl(SIOCBRDELBR, name)
}

/// SIOCBRADDBR or SIOCBRDELBR, which take the bridge's name as a C string.
fn bridge_ioctl(request: libc::c_ulong, name: &str) -> io::Result<()> {
    check_name(name)?;
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let socket = control_socket()?;
    // SAFETY: both requests read a NUL-terminated name, which lives for the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), request as _, name.as_ptr()) })?;
    Ok(())
}

/// The index of interface `name`.
pub fn index(name: &str) -> io::Result<libc::c_int> {
    let mut request = ifreq(name)?;
    ifreq_ioctl(libc::SIOCGIFINDEX, &mut request)?;
    // SAFETY: SIOCGIFINDEX filled in the index member.
    Ok(unsafe { request.ifr_ifru.ifru_ifindex })
}

/// Makes interface `port` a port of bridge `bridge`.
pub fn add_bridge_port(bridge: &str, port: &str) -> io::Result<()> {
    let port_index = index(port)?;
    let mut request = ifreq(bridge)?;
    request.ifr_ifru.ifru_ifindex = port_index;
    ifreq_ioctl(SIOCBRADDIF, &mut request)
}

/// The flags (IFF_*) of interface `name`.
pub fn flags(name: &str) -> io::Result<libc::c_int> {
    let mut request = ifreq(name)?;
    ifreq_ioctl(libc::SIOCGIFFLAGS, &mut request)?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member.
    Ok(libc::c_int::from(unsafe { request.ifr_ifru.ifru_flags }))
}

/// Brings interface `name` up or down.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let current = flags(name)?;
    let wanted = if up {
        current | libc::IFF_UP
    } else {
        current & !libc::IFF_UP
    };
    let mut request = ifreq(name)?;
    request.ifr_ifru.ifru_flags = wanted as libc::c_short;
    ifreq_ioctl(libc::SIOCSIFFLAGS, &mut request)
}

/// Sets the transmit queue length of interface `name` to `frames`: for a
/// tap, the number of frames the kernel holds for its reader.
pub fn set_tx_queue_len(name: &str, frames: u32) -> io::Result<()> {
    let mut request = ifreq(name)?;
    // ifr_qlen shares the union's int member with ifr_ifindex.
    request.ifr_ifru.ifru_ifindex =
        libc::c_int::try_from(frames).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    ifreq_ioctl(libc::SIOCSIFTXQLEN, &mut request)
}

/// Sets the Ethernet address of interface `name`.
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut request = ifreq(name)?;
    // SAFETY: an all-zero sockaddr is valid.
    let mut address: libc::sockaddr = unsafe { std::mem::zeroed() };
    address.sa_family = libc::ARPHRD_ETHER;
    for (slot, byte) in address.sa_data.iter_mut().zip(mac) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_hwaddr = address;
    ifreq_ioctl(libc::SIOCSIFHWADDR, &mut request)
}

/// Gives interface `name` the IPv4 address `address`/`prefix`.
pub fn set_ipv4(name: &str, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
    if prefix > 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length /{prefix} is longer than 32"),
        ));
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let mut request = ifreq(name)?;
    request.ifr_ifru.ifru_addr = sockaddr_in(address);
    ifreq_ioctl(libc::SIOCSIFADDR, &mut request)?;
    let mut request = ifreq(name)?;
    request.ifr_ifru.ifru_netmask = sockaddr_in(Ipv4Addr::from(mask));
    ifreq_ioctl(libc::SIOCSIFNETMASK, &mut request)
}

/// `address` as the generic sockaddr an ifreq holds.
fn sockaddr_in(address: Ipv4Addr) -> libc::sockaddr {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes), and
    // every bit pattern is a valid sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
}

/// Turns IPv6 off on interface `name` (no link-local address, no neighbour
/// discovery or MLD reports): the services' network is IPv4 only, and
/// every stray frame would wake a stopped service's watch. A kernel
/// without IPv6 has nothing to turn off.
pub fn disable_ipv6(name: &str) -> io::Result<()> {
    check_name(name)?;
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&path, "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["ljitsu0", "lj-www_1", "a", "abcdefghijklmno"] {
            check_name(good).unwrap();
        }
        for bad in ["", "abcdefghijklmnop", "a/b", "a b", "a:1", "é"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("1 to 15"), "{e}");
        }
    }

    #[test]
    fn a_permission_error_says_tap_mode_needs_root() {
        let denied: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EPERM));
        let e = explain(denied, "creating bridge ljitsu0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "creating bridge ljitsu0: tap mode needs root (CAP_NET_ADMIN); use network = \"user\""
        );
        let busy: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EEXIST));
        let e = explain(busy, "creating bridge ljitsu0").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("creating bridge ljitsu0: File exists"),
            "{e}"
        );
    }

    #[test]
    fn a_prefix_longer_than_32_is_refused_before_any_ioctl() {
        let e = set_ipv4("lo", Ipv4Addr::LOCALHOST, 33).unwrap_err();
        assert!(e.to_string().contains("/33"), "{e}");
    }
}
