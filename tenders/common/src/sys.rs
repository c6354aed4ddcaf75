//! The few host system calls std does not wrap: tap interfaces, epoll and
//! timerfd. Like [`crate::mem`], this module holds `unsafe`, each block
//! with the reason it is sound; everything else in the crate is safe code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Result of a libc call that returns -1 and sets errno on failure.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Fills `buf` from the kernel's random source with `getrandom(2)`, not
/// by opening /dev/urandom: a deployer may run the tender chrooted in a
/// root where /dev holds only the devices it needs (urunc gives it
/// /dev/kvm, /dev/net/tun and /dev/null).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most rest.len() bytes into rest,
        // which is valid for writes and lives for the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        filled += n as usize;
    }
    Ok(())
}

/// An `ifreq` naming `name`, with the rest zeroed.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(request)
}

/// A throwaway socket to ask the kernel about interfaces.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() has no memory arguments; the result is checked and
    // owned at once.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The host's physical memory in bytes (`sysinfo`), or `None` when the
/// kernel does not say.
pub fn host_memory_bytes() -> Option<u64> {
    // SAFETY: an all-zero sysinfo is valid; sysinfo() writes it and
    // touches nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a live, writable sysinfo for the call.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    (info.totalram as u64).checked_mul(u64::from(info.mem_unit.max(1)))
}

/// The interface flags of `name` (`IFF_*`), or ENODEV if it does not exist.
pub fn interface_flags(name: &str) -> io::Result<i32> {
    let socket = control_socket()?;
    let mut request = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into
    // `request`, which lives for the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: the kernel filled the flags member of the union.
    Ok(i32::from(unsafe { request.ifr_ifru.ifru_flags }))
}

/// The MTU of interface `name`.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let socket = control_socket()?;
    let mut request = ifreq(name)?;
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into
    // `request`, which lives for the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut request) })?;
    // SAFETY: the kernel filled the mtu member of the union.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens the existing tap interface `name` (IFF_TAP | IFF_NO_PI), non-blocking.
/// With `offload`, frames carry a virtio-net header and the tap takes and
/// gives partial checksums and TCP segments up to 64 KiB (TSO, IPv4 and
/// IPv6); without, those offloads are turned off, in case an earlier user
/// of the same tap left them on.
pub fn open_tap(name: &str, offload: bool) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: path is a NUL-terminated string; the result is checked.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let tap = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut request = ifreq(name)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if offload {
        flags |= libc::IFF_VNET_HDR;
    }
    request.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and updates `request`, which lives for the call.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut request) })?;
    // The kernel may hand back another device (a name pattern like "tap%d").
    if ifreq(name)?.ifr_name != request.ifr_name {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    set_tap_offload(tap.as_raw_fd(), offload)?;
    Ok(tap)
}

/// Turns the checksum and segmentation offloads (TSO, IPv4 and IPv6) of
/// tap descriptor `fd` on or off.
pub fn set_tap_offload(fd: RawFd, offload: bool) -> io::Result<()> {
    let offloads = if offload {
        libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
    } else {
        0
    };
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    check(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, offloads as libc::c_ulong) })?;
    Ok(())
}

/// Makes the virtio-net header of tap descriptor `fd` (opened with
/// IFF_VNET_HDR) `len` bytes long: the tap's opener may have chosen
/// another length (12, as virtio 1.0 devices use) than the one the
/// tender and the guests read and write.
pub fn set_tap_header_len(fd: RawFd, len: usize) -> io::Result<()> {
    let mut current: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one int into `current`.
    check(unsafe { libc::ioctl(fd, libc::TUNGETVNETHDRSZ, &mut current) })?;
    if usize::try_from(current).ok() == Some(len) {
        return Ok(());
    }
    let mut wanted =
        libc::c_int::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: TUNSETVNETHDRSZ reads one int from `wanted`.
    check(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &mut wanted) })?;
    Ok(())
}

/// One `read(2)` on `fd` into `buf`.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read writes at most buf.len() bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    check(n as libc::c_int).map(|_| n as usize)
}

/// One `write(2)` of `buf` on `fd`.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: write reads buf.len() bytes from `buf`.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    check(n as libc::c_int).map(|_| n as usize)
}

/// An epoll instance.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; the result is checked and owned at once.
    let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to `epoll` for input, with `data` as its tag.
pub fn epoll_add(epoll: RawFd, fd: RawFd, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: `event` lives for the call; the kernel copies it.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

/// Adds `fd` to `epoll` for input, edge-triggered: one wake-up per
/// arrival, however long the input stays unread.
pub fn epoll_add_edge(epoll: RawFd, fd: RawFd, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: data,
    };
    // SAFETY: `event` lives for the call; the kernel copies it.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

/// Adds `fd` to `epoll` for input, exclusively: when several epoll sets
/// wait on it (hvt's ring I/O thread and vCPU thread on a tap), one input
/// wakes one waiter, not all. Edge-triggered if `edge`.
pub fn epoll_add_exclusive(epoll: RawFd, fd: RawFd, data: u64, edge: bool) -> io::Result<()> {
    let edge = if edge { libc::EPOLLET } else { 0 };
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE | edge) as u32,
        u64: data,
    };
    // SAFETY: `event` lives for the call; the kernel copies it.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

/// A non-blocking eventfd.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; the result is checked and owned at once.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter (wakes its reader).
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one = 1u64;
    // SAFETY: writes 8 bytes from `one`, which lives for the call.
    let n = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Resets a non-blocking eventfd's counter.
pub fn eventfd_drain(fd: RawFd) -> u64 {
    let mut count = 0u64;
    // SAFETY: reads at most 8 bytes into `count`, which lives for the call.
    // EAGAIN (already zero) is the only expected failure and means the same.
    unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    count
}

/// The calling thread, for [`signal_thread`].
pub fn current_thread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Sends `signal` to `thread` of this process (which must still be
/// running or joinable: the caller keeps it so).
pub fn signal_thread(thread: libc::pthread_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: no memory arguments; the caller guarantees `thread` is valid.
    let rc = unsafe { libc::pthread_kill(thread, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Spawns a thread with `builder` in which SIGINT, SIGTERM, SIGHUP and
/// SIGUSR1 are blocked, so that those signals (which stop a tender) are
/// delivered to the spawning thread (the vCPU's), whose handler and
/// seccomp filter expect them, never to a helper thread.
pub fn spawn_without_stop_signals<F, T>(
    builder: std::thread::Builder,
    body: F,
) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: sigset_t is plain data, initialised by sigemptyset below.
    let mut blocked: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the mask saved and restored.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `blocked` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut blocked);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut blocked, signal);
        }
    }
    // SAFETY: both sets are valid and live for the call.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut previous) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // The new thread inherits the mask in force now.
    let spawned = builder.spawn(body);
    // SAFETY: `previous` holds the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    spawned
}

/// Waits up to forever on `epoll`; returns the tags of ready descriptors in
/// `tags` and how many there are. A signal ends the wait early with no
/// tags, so that the caller can look at what the signal asked for.
pub fn epoll_wait(epoll: RawFd, tags: &mut [u64]) -> io::Result<usize> {
    epoll_wait_for(epoll, tags, -1)
}

/// [`epoll_wait`], for at most `timeout_ms` milliseconds (0: only look;
/// -1: forever).
pub fn epoll_wait_for(epoll: RawFd, tags: &mut [u64], timeout_ms: i32) -> io::Result<usize> {
    const MAX: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
    let max = tags.len().min(MAX) as libc::c_int;
    // SAFETY: `events` has room for `max` entries and lives for the call.
    let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), max, timeout_ms) };
    if n < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(error);
    }
    let n = n as usize;
    for (tag, event) in tags.iter_mut().zip(&events[..n]) {
        *tag = event.u64;
    }
    Ok(n)
}

/// A non-blocking CLOCK_MONOTONIC timerfd.
pub fn timerfd_create() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; the result is checked and owned at once.
    let fd = check(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms `timer` to fire once, `nanos` from now (0 is moved to 1 ns, since
/// 0 would disarm it).
pub fn timerfd_arm(timer: RawFd, nanos: u64) -> io::Result<()> {
    let nanos = nanos.max(1);
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (nanos / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        },
    };
    // SAFETY: `spec` lives for the call; the old value is not asked for.
    check(unsafe { libc::timerfd_settime(timer, 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

/// Nanoseconds of `clock` (CLOCK_REALTIME, CLOCK_MONOTONIC).
pub fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` lives for the call; clock_gettime cannot fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut now) };
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_mtu_and_missing_interfaces_fail() {
        assert!(interface_mtu("lo").unwrap() >= 1500);
        assert!(interface_flags("lo").unwrap() & libc::IFF_UP != 0);
        assert!(interface_flags("nosuchif0").is_err());
        assert!(ifreq("averyveryverylongname").is_err());
    }

    #[test]
    fn timer_wakes_epoll() {
        let epoll = epoll_create().unwrap();
        let timer = timerfd_create().unwrap();
        epoll_add(epoll.as_raw_fd(), timer.as_raw_fd(), 77).unwrap();
        let start = clock_nanos(libc::CLOCK_MONOTONIC);
        timerfd_arm(timer.as_raw_fd(), 2_000_000).unwrap();
        let mut tags = [0; 4];
        assert_eq!(epoll_wait(epoll.as_raw_fd(), &mut tags).unwrap(), 1);
        assert_eq!(tags[0], 77);
        assert!(clock_nanos(libc::CLOCK_MONOTONIC) - start >= 2_000_000);
    }
}

/// What an inherited network descriptor (`--net:NAME=fd:N`) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InheritedLink {
    /// A datagram or sequenced-packet socket: one Ethernet frame per
    /// datagram (lamina-usernet's link, a socketpair end).
    Datagrams,
    /// A tap, attached to `interface`.
    Tap {
        /// The interface it is attached to.
        interface: String,
        /// Whether it was opened with IFF_VNET_HDR: each frame behind a
        /// virtio-net header.
        vnet_header: bool,
    },
}

/// Why an inherited descriptor cannot be a network device.
fn not_a_link(fd: RawFd, why: &str) -> String {
    format!("descriptor {fd} {why}; pass one end of a SOCK_SEQPACKET or SOCK_DGRAM socketpair, or an open tap")
}

/// Checks that `fd` was inherited open (not one the tender opened itself,
/// which are all close-on-exec) and carries whole Ethernet frames.
pub fn inherited_link(fd: RawFd) -> Result<InheritedLink, String> {
    if fd <= 2 {
        return Err(not_a_link(fd, "is a standard stream"));
    }
    // SAFETY: F_GETFD reads no memory; a closed number fails with EBADF.
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fd_flags < 0 {
        return Err(not_a_link(
            fd,
            &format!("is not open ({})", io::Error::last_os_error()),
        ));
    }
    if fd_flags & libc::FD_CLOEXEC != 0 {
        return Err(not_a_link(
            fd,
            "was not inherited (the tender opened it, or another device took it)",
        ));
    }
    // SAFETY: an all-zero stat is valid; fstat writes it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat into `stat`.
    check(unsafe { libc::fstat(fd, &mut stat) }).map_err(|e| not_a_link(fd, &e.to_string()))?;
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => {
            let mut kind: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `kind`.
            check(unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut kind as *mut libc::c_int).cast(),
                    &mut len,
                )
            })
            .map_err(|e| not_a_link(fd, &e.to_string()))?;
            match kind {
                libc::SOCK_SEQPACKET | libc::SOCK_DGRAM => Ok(InheritedLink::Datagrams),
                libc::SOCK_STREAM => Err(not_a_link(
                    fd,
                    "is a stream socket, which does not keep frames apart",
                )),
                _ => Err(not_a_link(fd, &format!("is a socket of type {kind}"))),
            }
        }
        libc::S_IFCHR => {
            // SAFETY: an all-zero ifreq is valid; TUNGETIFF writes it.
            let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
            // SAFETY: TUNGETIFF writes one ifreq into `request`; on any
            // other character device it fails (ENOTTY, EINVAL).
            if unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut request) } != 0 {
                return Err(not_a_link(
                    fd,
                    "is a character device but not a tap attached to an interface",
                ));
            }
            // SAFETY: TUNGETIFF filled in the flags member.
            let flags = i32::from(unsafe { request.ifr_ifru.ifru_flags });
            let interface: String = request
                .ifr_name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8 as char)
                .collect();
            if flags & libc::IFF_TAP == 0 {
                return Err(not_a_link(
                    fd,
                    &format!("is a tun (IP packets) device ({interface}), not a tap"),
                ));
            }
            if flags & libc::IFF_NO_PI == 0 {
                return Err(not_a_link(
                    fd,
                    &format!("is a tap ({interface}) with packet information; open it with IFF_TAP | IFF_NO_PI (and IFF_VNET_HDR if you like)"),
                ));
            }
            Ok(InheritedLink::Tap {
                interface,
                vnet_header: flags & libc::IFF_VNET_HDR != 0,
            })
        }
        libc::S_IFREG => Err(not_a_link(fd, "is a regular file")),
        libc::S_IFDIR => Err(not_a_link(fd, "is a directory")),
        libc::S_IFIFO => Err(not_a_link(
            fd,
            "is a pipe, which does not keep frames apart",
        )),
        _ => Err(not_a_link(fd, "is not a socket or a tap")),
    }
}

/// Takes ownership of the inherited `fd` (checked by [`inherited_link`]):
/// close-on-exec, so that no device can take it twice, and non-blocking,
/// as the tender's own taps are.
pub fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_SETFD/F_GETFL/F_SETFL read no memory; the result is checked.
    unsafe {
        check(libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
        // The descriptor was inherited and nothing else in the tender owns
        // it: it lacked FD_CLOEXEC, which every descriptor the tender opens has.
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
