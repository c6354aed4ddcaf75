//! Tap mode's host side: the daemon's bridge and one persistent tap per
//! service, which let a client connect to a service that is not running
//! yet without waiting for a SYN retransmission.
//!
//! The daemon opens each service's tap itself and keeps it open for its
//! whole life, stopped or running, and never reads it: frames sent towards
//! a stopped guest wait in the tap's kernel queue ([`TAP_QUEUE_FRAMES`]
//! of them), and the guest reads them as soon as its stack runs. Meanwhile
//! a packet socket on the tap ([`ServiceTap::watch_fd`]) sees a copy of
//! each: the daemon answers ARP for the guest's address itself (writing
//! the reply *into* the tap, so that it enters the bridge from the guest's
//! port and the bridge learns the guest's MAC there) and reports any IPv4
//! packet to the guest as a [`TapEvent::Summon`].
//!
//! A summon, in the daemon:
//!
//! ```text
//! poll(tap.watch_fd()) -> tap.on_readable() -> [ArpAnswered.., Summon]
//! tap.introduce_peers(&bridge)                 the host, so the guest need not ask its MAC
//! fd = tap.tender_fd(); inherit_fd(&mut cmd, &fd)
//! lamina-hvt --mem=.. tap.tender_args("service", &fd) image tap.guest_args(&bridge)
//! Probe::start(guest:port), then probe.poll()  time to listening (crate::probe)
//!   meanwhile tap.on_readable() as before      introduces new peers; ignore Summon
//! tap.set_watching(false)                      once listening: the guest answers
//! ```
//!
//! and when the service stops: `tap.set_watching(true)` then `tap.drain()`
//! (frames for the old guest would reach the next one; in that order, a
//! packet arriving meanwhile still summons). In pause mode the tender
//! keeps the tap: watch, but do not drain; on resume, as on a summon,
//! introduce the host and stop watching once it listens.
//!
//! Which tap: with a virtio-net header (`vnet_header`) for Lamina's images
//! on both tenders (hvt handles the header in the tender, spt in the guest,
//! which declares NET_OFFLOAD; both then use checksum and segmentation
//! offload); without for a Solo5 image on spt, which reads the tap itself
//! and knows no header (its tender refuses a tap with one).
//!
//! What the guest must do, and Lamina's does: open its listeners before
//! its stack reads the first frame (lamina-net's driver yields to the
//! application once before receiving), or the queued SYN gets a reset.
//! Known limit: a peer that first sends to the running guest (the watch
//! off) and knew its MAC already is not introduced; if the guest asked for
//! another address in the second before, smoltcp makes it wait up to a
//! second to ask for this one.
//!
//! Tap (Linux tun) semantics this relies on: a tap exists while a
//! descriptor is open on it (the daemon's, and the tender's duplicate while
//! it runs) and disappears with the last one, so a crashed daemon leaves
//! no tap behind; frames queue for its reader up to the transmit queue
//! length; a filter attached to the tap ([`crate::filter::queue`]) decides
//! which frames queue at all.

use crate::filter::{self, Instruction};
use crate::frame::{self, format_mac, Packet, Seen};
use crate::netdev::{self, explain};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Frames a stopped service's tap holds (the kernel's default is 500): a
/// burst of connections arriving while it boots, each a SYN or an ARP
/// request, plus what follows them.
pub const TAP_QUEUE_FRAMES: u32 = 2048;

/// Length of the virtio-net header on taps opened with one: the length the
/// tenders read and write (`lamina_wire::vnet::HEADER_LEN`), set on the
/// interface so that the daemon and the tender agree.
pub const VNET_HEADER_LEN: usize = 10;

/// The daemon's bridge: the services' network, with the host's address on
/// it. Dropping it deletes it, and with it every port left.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    address: Ipv4Addr,
    prefix: u8,
}

impl Bridge {
    /// Creates bridge `name` with the host's address `address`/`prefix`
    /// (IPv6 off, a MAC derived from the address so that guests' ARP
    /// caches stay right across restarts) and brings it up. A bridge of
    /// that name must not exist yet.
    pub fn create(name: &str, address: Ipv4Addr, prefix: u8) -> io::Result<Bridge> {
        let what = format!("creating bridge {name}");
        netdev::check_name(name)?;
        if prefix == 0 || prefix > 30 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}: a /{prefix} network has no room for guests"),
            ));
        }
        if netdev::index(name).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{what}: an interface named {name} exists already (another lamina jitsu, \
                     or one that was killed: remove it with `ip link del {name}`)"
                ),
            ));
        }
        explain(netdev::add_bridge(name), &what)?;
        // From here on, dropping `bridge` deletes the interface.
        let bridge = Bridge {
            name: name.to_owned(),
            address,
            prefix,
        };
        explain(netdev::disable_ipv6(name), &what)?;
        explain(netdev::set_mac(name, frame::mac_for(address)), &what)?;
        explain(netdev::set_ipv4(name, address, prefix), &what)?;
        explain(netdev::set_up(name, true), &what)?;
        Ok(bridge)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on it: the guests' gateway.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The services' network prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // A bridge must be down to be deleted; errors are of no use here
        // (the namespace may be going away).
        let _ = netdev::set_up(&self.name, false);
        let _ = netdev::delete_bridge(&self.name);
    }
}

/// What the watch of a stopped service saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapEvent {
    /// `asker` asked for the guest's MAC; the reply was written into the
    /// tap for it.
    ArpAnswered {
        /// Who asked.
        asker: Ipv4Addr,
    },
    /// An IPv4 packet to the guest is waiting in the tap: summon it.
    Summon(Packet),
    /// The guest was introduced to `peer`, which sent that packet without
    /// asking for the guest's MAC (it knew it): an ARP request from the
    /// peer waits in the tap behind its packet.
    Introduced {
        /// The peer.
        peer: Ipv4Addr,
    },
}

/// One service's tap, on the bridge, opened by the daemon for its whole
/// life. Dropping it closes the daemon's descriptors; the kernel then
/// removes the tap (once the tender's duplicate is closed too).
#[derive(Debug)]
pub struct ServiceTap {
    name: String,
    guest_ip: Ipv4Addr,
    guest_mac: [u8; 6],
    vnet_header: bool,
    /// The tap: written (ARP replies) and drained, never read otherwise.
    tap: OwnedFd,
    /// The packet socket watching frames towards the guest; also sends
    /// introductions into the tap's queue.
    watch: OwnedFd,
    /// The tap's interface index, to send on.
    index: libc::c_int,
    watching: bool,
    /// The network's prefix length (the bridge's).
    prefix: u8,
    /// Peers whose MAC the guest will learn from a frame waiting in the
    /// queue (their own ARP request, or an introduction): see
    /// [`ServiceTap::introduce_peers`]. Forgotten when the queue is drained.
    introduced: Vec<Ipv4Addr>,
}

/// The most peers introduced to one guest between two drains; past them
/// the guest asks.
const MAX_INTRODUCED: usize = 64;

impl ServiceTap {
    /// Creates tap `name` on `bridge` for the guest at `guest_ip` with MAC
    /// `guest_mac`, opened with a virtio-net header if `vnet_header` (for
    /// Lamina's own images on hvt and spt, whose tenders and guests then
    /// use checksum and segmentation offload; a Solo5 image on spt needs a
    /// tap without), and starts watching it.
    pub fn create(
        bridge: &Bridge,
        name: &str,
        guest_ip: Ipv4Addr,
        guest_mac: [u8; 6],
        vnet_header: bool,
    ) -> io::Result<ServiceTap> {
        let what = format!("creating tap {name} for {guest_ip}");
        netdev::check_name(name)?;
        if netdev::index(name).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{what}: an interface named {name} exists already"),
            ));
        }
        let tap = explain(open_tap(name, vnet_header), &what)?;
        let program = filter::queue(guest_mac, guest_ip);
        explain(attach_tap_filter(&tap, &program), &what)?;
        explain(netdev::disable_ipv6(name), &what)?;
        explain(netdev::set_tx_queue_len(name, TAP_QUEUE_FRAMES), &what)?;
        explain(netdev::add_bridge_port(bridge.name(), name), &what)?;
        explain(netdev::set_up(name, true), &what)?;
        let index = explain(netdev::index(name), &what)?;
        let watch = explain(watch_socket(index, guest_ip), &what)?;
        Ok(ServiceTap {
            name: name.to_owned(),
            guest_ip,
            guest_mac,
            vnet_header,
            tap,
            watch,
            index,
            watching: true,
            prefix: bridge.prefix(),
            introduced: Vec::new(),
        })
    }

    /// The tap's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guest's address.
    pub fn guest_ip(&self) -> Ipv4Addr {
        self.guest_ip
    }

    /// The guest's MAC, which the ARP replies give and the tender must use.
    pub fn guest_mac(&self) -> [u8; 6] {
        self.guest_mac
    }

    /// The descriptor to poll for readability: frames to a stopped guest
    /// seen by the watch. Then call [`ServiceTap::on_readable`].
    pub fn watch_fd(&self) -> RawFd {
        self.watch.as_raw_fd()
    }

    /// Handles what the watch saw: answers every ARP request for the guest
    /// (while watching), introduces to the guest each peer on the network
    /// that sends it IPv4 without having asked for its MAC (see
    /// [`ServiceTap::introduce_peers`]), and returns what happened, in
    /// order. A [`TapEvent::Summon`] means a packet for the guest waits in
    /// the tap (while it boots: ignore it).
    pub fn on_readable(&mut self) -> io::Result<Vec<TapEvent>> {
        let mut events = Vec::new();
        let mut buf = [0u8; filter::WATCH_SNAP_LEN as usize];
        while let Some(len) = receive(&self.watch, &mut buf)? {
            if !self.watching {
                continue;
            }
            match frame::classify(&buf[..len], self.guest_ip) {
                Some(Seen::ArpRequest { asker, asker_mac }) => {
                    let reply = frame::arp_reply(self.guest_mac, self.guest_ip, asker_mac, asker);
                    self.inject(&reply)?;
                    events.push(TapEvent::ArpAnswered { asker });
                    // Its request waits in the queue: the guest learns from it.
                    self.note_introduced(asker);
                }
                Some(Seen::Ipv4(packet)) => {
                    events.push(TapEvent::Summon(packet));
                    if self.introduce(packet.source, packet.source_mac)? {
                        events.push(TapEvent::Introduced {
                            peer: packet.source,
                        });
                    }
                }
                None => {}
            }
        }
        Ok(events)
    }

    /// Watches (and answers ARP for) the guest, or not: off while the
    /// guest runs and answers for itself (the kernel then copies nothing to
    /// the daemon), on while it is stopped or paused.
    pub fn set_watching(&mut self, on: bool) -> io::Result<()> {
        let program = if on {
            filter::watch(self.guest_ip)
        } else {
            filter::nothing()
        };
        attach_socket_filter(&self.watch, &program)?;
        self.watching = on;
        if !on {
            // Frames seen before the switch are the guest's to handle now.
            let mut buf = [0u8; filter::WATCH_SNAP_LEN as usize];
            while receive(&self.watch, &mut buf)?.is_some() {}
        }
        Ok(())
    }

    /// Whether the watch is on.
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// Queues for the guest, behind what waits already, an ARP request for
    /// its address from the host, unless one waits already: call when
    /// summoning (and resuming), before the host probes the guest. Returns
    /// how many introductions were queued (0 or 1).
    ///
    /// Why: a peer that knew the guest's MAC from an earlier run sends no
    /// ARP request the new guest could learn the peer's MAC from; the
    /// guest asks, and Lamina's stack (smoltcp) asks for one address per
    /// second at most, so with two such peers (a client and the host's
    /// probe, say) the second waited a second. So the daemon introduces
    /// the host here, and [`ServiceTap::on_readable`] introduces each peer
    /// it sees sending to the guest (while watching: keep the watch on
    /// while the guest boots).
    pub fn introduce_peers(&mut self, bridge: &Bridge) -> io::Result<usize> {
        let host_mac = frame::mac_for(bridge.address());
        Ok(usize::from(self.introduce(bridge.address(), host_mac)?))
    }

    /// Whether `ip` is on the guest's network (and not the guest): a peer
    /// whose MAC the guest may need.
    fn on_network(&self, ip: Ipv4Addr) -> bool {
        let shift = 32 - u32::from(self.prefix);
        let network = |ip: Ipv4Addr| u32::from(ip).checked_shr(shift).unwrap_or(0);
        ip != self.guest_ip && network(ip) == network(self.guest_ip) && ip != Ipv4Addr::UNSPECIFIED
    }

    /// Records that the guest will learn `peer`'s MAC from a waiting frame.
    fn note_introduced(&mut self, peer: Ipv4Addr) {
        if self.on_network(peer)
            && !self.introduced.contains(&peer)
            && self.introduced.len() < MAX_INTRODUCED
        {
            self.introduced.push(peer);
        }
    }

    /// Queues an introduction of `peer` at `peer_mac` unless one waits, or
    /// the peer is off the network; whether one was queued.
    fn introduce(&mut self, peer: Ipv4Addr, peer_mac: [u8; 6]) -> io::Result<bool> {
        if !self.on_network(peer)
            || self.introduced.contains(&peer)
            || self.introduced.len() >= MAX_INTRODUCED
        {
            return Ok(false);
        }
        let request = frame::arp_request(self.guest_mac, self.guest_ip, peer_mac, peer);
        self.send_to_guest(&request)?;
        self.introduced.push(peer);
        Ok(true)
    }

    /// Sends `frame` out of the tap: into its queue, towards the guest, as
    /// if the bridge had forwarded it. (The watch does not see its own.)
    fn send_to_guest(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = (frame::ETHERTYPE_ARP).to_be();
        address.sll_ifindex = self.index;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&self.guest_mac);
        // SAFETY: sendto reads frame.len() bytes from `frame` and one
        // sockaddr_ll of the given size.
        let n = unsafe {
            libc::sendto(
                self.watch.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send to the tap",
            )),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Reads and discards every frame waiting in the tap: only after the
    /// guest stopped (never when summoning: that would eat the client's
    /// SYN). Returns how many there were.
    pub fn drain(&mut self) -> io::Result<usize> {
        // The introductions go with the rest.
        self.introduced.clear();
        let mut buf = vec![0u8; VNET_HEADER_LEN + 65536];
        let mut frames = 0;
        loop {
            // SAFETY: read writes at most buf.len() bytes into `buf`.
            let n = unsafe { libc::read(self.tap.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(frames),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            frames += 1;
        }
    }

    /// A duplicate of the tap descriptor for the tender, close-on-exec:
    /// pass it with [`inherit_fd`], then drop it once the tender started.
    pub fn tender_fd(&self) -> io::Result<OwnedFd> {
        self.tap.try_clone()
    }

    /// The tender's arguments for network device `device` over `fd` (from
    /// [`ServiceTap::tender_fd`]): `--net:DEVICE=fd:N --net-mac:DEVICE=MAC`.
    pub fn tender_args(&self, device: &str, fd: &OwnedFd) -> [String; 2] {
        [
            format!("--net:{device}=fd:{}", fd.as_raw_fd()),
            format!("--net-mac:{device}={}", format_mac(self.guest_mac)),
        ]
    }

    /// The guest's boot arguments for its address on `bridge`:
    /// `--ipv4=ADDRESS/PREFIX --ipv4-gateway=BRIDGE`.
    pub fn guest_args(&self, bridge: &Bridge) -> [String; 2] {
        [
            format!("--ipv4={}/{}", self.guest_ip, bridge.prefix()),
            format!("--ipv4-gateway={}", bridge.address()),
        ]
    }

    /// Writes `frame` into the tap: it enters the bridge as if the guest
    /// had sent it.
    fn inject(&self, frame: &[u8]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(VNET_HEADER_LEN + frame.len());
        if self.vnet_header {
            // Flags 0, no segmentation: a plain, checksummed frame.
            bytes.resize(VNET_HEADER_LEN, 0);
        }
        bytes.extend_from_slice(frame);
        // SAFETY: write reads bytes.len() bytes from `bytes`.
        let n = unsafe { libc::write(self.tap.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the tap",
            )),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }
}

/// Lets the program `command` runs inherit `fd` under the same number:
/// the descriptor stays close-on-exec in the daemon (no other child gets
/// it) and is made inheritable in the child only, between fork and exec.
/// `fd` must stay open until `command` has spawned.
pub fn inherit_fd(command: &mut Command, fd: &OwnedFd) {
    let number = fd.as_raw_fd();
    // SAFETY: the hook runs in the child between fork and exec, and only
    // calls fcntl(2), which is async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(number, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `result` of a libc call: -1 becomes the thread's `errno`.
fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Creates and attaches tap `name` (non-blocking, close-on-exec), with a
/// virtio-net header of [`VNET_HEADER_LEN`] bytes if `vnet_header`.
fn open_tap(name: &str, vnet_header: bool) -> io::Result<OwnedFd> {
    // SAFETY: the path is NUL-terminated; the result is checked.
    let fd = check(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let tap = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_header {
        flags |= libc::IFF_VNET_HDR;
    }
    request.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and updates `request`, which lives for the call.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut request) })?;
    if vnet_header {
        let mut len = VNET_HEADER_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from `len`.
        check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &mut len) })?;
    }
    Ok(tap)
}

/// `program` as the kernel takes it; valid while `program` lives.
fn fprog(program: &[Instruction]) -> io::Result<libc::sock_fprog> {
    Ok(libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: program.as_ptr().cast_mut(),
    })
}

/// Attaches `program` to tap `tap`: frames it drops never queue.
fn attach_tap_filter(tap: &OwnedFd, program: &[Instruction]) -> io::Result<()> {
    let fprog = fprog(program)?;
    // SAFETY: TUNATTACHFILTER reads one sock_fprog and the `len`
    // instructions it points to, which live for the call (the kernel copies them).
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNATTACHFILTER, &fprog) })?;
    Ok(())
}

/// Attaches `program` to socket `socket`, replacing its filter.
fn attach_socket_filter(socket: &OwnedFd, program: &[Instruction]) -> io::Result<()> {
    let fprog = fprog(program)?;
    // SAFETY: SO_ATTACH_FILTER reads one sock_fprog and the instructions it
    // points to, which live for the call (the kernel copies them).
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A packet socket bound to interface `index`, filtered by
/// [`filter::watch`] for `guest_ip` before it receives anything.
fn watch_socket(index: libc::c_int, guest_ip: Ipv4Addr) -> io::Result<OwnedFd> {
    // Protocol 0: nothing is received until bind() names one, after the
    // filter is in place.
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    attach_socket_filter(&socket, &filter::watch(guest_ip))?;
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = index;
    // SAFETY: bind reads one sockaddr_ll of the given size.
    check(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(socket)
}

/// One frame from packet socket `socket` into `buf` (cut to its length);
/// `None` when none is waiting.
fn receive(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: recv writes at most buf.len() bytes into `buf`.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            return Ok(Some(n.min(buf.len())));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}
