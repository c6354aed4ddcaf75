//! How a service's clients reach its unikernel, in either mode: what the
//! daemon holds while the unikernel is stopped, what it gives the tender,
//! what it watches to summon it, and how it learns the unikernel listens.
//!
//! - User mode: the service's listening sockets, held for the daemon's
//!   whole life and polled while nothing serves them; a lamina-usernet
//!   process started beside the tender takes them over and reports `up`
//!   and its open connections (see [`crate::service`]).
//! - Tap mode: the service's tap on the daemon's bridge, watched while the
//!   unikernel is stopped (see [`crate::tap`]); a TCP probe from the host
//!   tells when it listens, and the tap's frame counters when it is busy.

use crate::config::{Port, Service};
use crate::probe::Probe;
use crate::process::{self, Lines};
use crate::tap::{Bridge, ServiceTap, TapEvent};
use lamina_usernet::Protocol;
use std::io;
use std::net::{SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;

/// Whether `config` has a TCP port: the one a probe connects to, to
/// learn that the unikernel listens (without one it counts as up once
/// its tender runs).
pub fn has_tcp_port(config: &Service) -> bool {
    config.ports.iter().any(|p| p.protocol == Protocol::Tcp)
}

/// A socket the service's clients reach, held by the daemon.
pub enum Listener {
    /// A TCP port.
    Tcp(TcpListener),
    /// A UDP port.
    Udp(UdpSocket),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// A service's network.
pub enum Network {
    /// User mode: its listening sockets.
    User(Vec<(Port, Listener)>),
    /// Tap mode: its tap, and the probe while it boots.
    Tap {
        /// The tap on the bridge.
        tap: ServiceTap,
        /// The bridge, for introductions and the guest's addresses.
        bridge: Arc<Bridge>,
        /// The probe of a booting unikernel.
        probe: Option<Probe>,
        /// The tap's frame counters when last looked at (activity).
        frames: u64,
    },
}

/// What the daemon hands the tender, and keeps open until it has started.
pub struct TenderNetwork {
    /// Tender arguments (`--net:...`, `--net-mac:...`).
    pub tender_args: Vec<String>,
    /// The guest's network boot arguments.
    pub guest_args: Vec<String>,
    /// The descriptor the tender inherits.
    pub fd: OwnedFd,
    /// User mode: the network's end of the link, for lamina-usernet.
    usernet_end: Option<OwnedFd>,
}

/// A MAC address as text.
fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Network {
    /// User mode: binds the service's ports now (a port in use is an
    /// error before anything starts).
    pub fn user(config: &Service) -> io::Result<Network> {
        let mut listeners = Vec::new();
        for port in &config.ports {
            let address = (config.address, port.host_port);
            let bound = match port.protocol {
                Protocol::Tcp => TcpListener::bind(address).map(Listener::Tcp),
                Protocol::Udp => UdpSocket::bind(address).map(Listener::Udp),
            };
            let listener = bound.map_err(|e| {
                let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                    " (ports below 1024 need root; list it as HOST:GUEST, like \"8080:80\")"
                } else {
                    ""
                };
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: cannot listen on {}:{} ({port}): {e}{hint}",
                        config.name, config.address, port.host_port
                    ),
                )
            })?;
            process::set_nonblocking(listener.fd())?;
            listeners.push((*port, listener));
        }
        Ok(Network::User(listeners))
    }

    /// Tap mode: creates the service's tap `name` on `bridge`, with a
    /// virtio-net header unless `plain` (a Solo5 image on spt).
    pub fn tap(
        config: &Service,
        name: &str,
        bridge: Arc<Bridge>,
        plain: bool,
    ) -> io::Result<Network> {
        let mac = crate::frame::mac_for(config.address);
        let tap = ServiceTap::create(&bridge, name, config.address, mac, !plain)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.name)))?;
        Ok(Network::Tap {
            tap,
            bridge,
            probe: None,
            frames: 0,
        })
    }

    /// The guest's MAC address.
    fn guest_mac(config: &Service) -> [u8; 6] {
        match config.address.octets() {
            // User mode: unique per service, like its loopback address.
            [_, b, c, d] => [0x02, 0x4a, 0x53, b, c, d],
        }
    }

    /// Gets ready to boot: introduces the host to the guest (tap mode) and
    /// makes what the tender is given.
    pub fn prepare(&mut self, config: &Service) -> io::Result<TenderNetwork> {
        let device = &config.net_device;
        match self {
            Network::User(_) => {
                let (tender_end, usernet_end) = lamina_usernet::socketpair()?;
                let mac = mac_text(Self::guest_mac(config));
                Ok(TenderNetwork {
                    tender_args: vec![
                        format!("--net:{device}=fd:{}", tender_end.as_raw_fd()),
                        format!("--net-mac:{device}={mac}"),
                    ],
                    guest_args: vec![
                        format!(
                            "--ipv4={}/{}",
                            lamina_usernet::GUEST,
                            lamina_usernet::PREFIX
                        ),
                        format!("--ipv4-gateway={}", lamina_usernet::GATEWAY),
                    ],
                    fd: tender_end,
                    usernet_end: Some(usernet_end),
                })
            }
            Network::Tap { tap, bridge, .. } => {
                tap.introduce_peers(bridge)?;
                let fd = tap.tender_fd()?;
                Ok(TenderNetwork {
                    tender_args: tap.tender_args(device, &fd).to_vec(),
                    guest_args: tap.guest_args(bridge).to_vec(),
                    fd,
                    usernet_end: None,
                })
            }
        }
    }

    /// Once the tender runs: user mode starts lamina-usernet with the
    /// listening sockets (returned with its event lines); tap mode starts
    /// probing the first TCP port. `None` probe and no usernet: nothing
    /// tells when it listens (no TCP port), so it counts as up.
    pub fn start(
        &mut self,
        config: &Service,
        prepared: TenderNetwork,
        usernet: &Path,
    ) -> io::Result<Option<(Child, Option<Lines<ChildStdout>>)>> {
        let first_tcp = config.ports.iter().find(|p| p.protocol == Protocol::Tcp);
        match self {
            Network::User(listeners) => {
                let usernet_end = prepared.usernet_end.expect("made by prepare");
                let mac = mac_text(Self::guest_mac(config));
                let mut command = Command::new(usernet);
                command
                    .arg(format!("--link-fd={}", usernet_end.as_raw_fd()))
                    .arg("--events")
                    // The probe tells when the guest listens; it needs a TCP port.
                    .args(first_tcp.is_some().then_some("--probe"))
                    .arg(format!("--boot-wait={}", config.boot_timeout.as_secs_f64()))
                    .arg(format!("--guest-mac={mac}"))
                    .args(listeners.iter().map(|(port, listener)| {
                        let protocol = match port.protocol {
                            Protocol::Tcp => "tcp",
                            Protocol::Udp => "udp",
                        };
                        format!(
                            "--listen-fd={}:{}/{protocol}",
                            listener.fd(),
                            port.guest_port
                        )
                    }))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                let mut inherited: Vec<RawFd> = listeners.iter().map(|(_, l)| l.fd()).collect();
                inherited.push(usernet_end.as_raw_fd());
                let mut child = process::spawn(&mut command, inherited).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot start {}: {e}", usernet.display()))
                })?;
                let events = child.stdout.take().map(Lines::new).transpose()?;
                Ok(Some((child, events)))
            }
            Network::Tap { probe, .. } => {
                *probe = first_tcp
                    .map(|p| Probe::start(SocketAddrV4::new(config.address, p.guest_port)))
                    .transpose()?;
                Ok(None)
            }
        }
    }

    /// The descriptors to poll and their events: with `summonable` (no
    /// unikernel serves the network now), what summons it; while booting,
    /// the probe (tap mode) and the watch (which introduces new peers).
    pub fn poll_fds(&self, summonable: bool, booting: bool, fds: &mut Vec<(RawFd, i16)>) {
        match self {
            Network::User(listeners) if summonable => {
                fds.extend(listeners.iter().map(|(_, l)| (l.fd(), libc::POLLIN)))
            }
            Network::User(_) => {}
            Network::Tap { tap, probe, .. } => {
                if tap.watching() && (summonable || booting) {
                    fds.push((tap.watch_fd(), libc::POLLIN));
                }
                if let Some(fd) = probe.as_ref().and_then(Probe::fd) {
                    fds.push((fd, libc::POLLOUT));
                }
            }
        }
    }

    /// `fd` is ready: whether a client is waiting for a unikernel (a
    /// connection or datagram on a listener, a packet in the tap).
    pub fn ready(&mut self, fd: RawFd, name: &str) -> bool {
        match self {
            Network::User(listeners) => listeners.iter().any(|(_, l)| l.fd() == fd),
            Network::Tap { tap, .. } if tap.watch_fd() == fd => match tap.on_readable() {
                Ok(events) => events.iter().any(|e| matches!(e, TapEvent::Summon(_))),
                Err(e) => {
                    eprintln!("jitsu: {name}: watching tap {}: {e}", tap.name());
                    false
                }
            },
            Network::Tap { .. } => false,
        }
    }

    /// Tap mode: whether the probe found the unikernel listening (then
    /// the watch stops: the guest answers for itself).
    pub fn probe_answered(&mut self) -> io::Result<bool> {
        let Network::Tap { tap, probe, .. } = self else {
            return Ok(false);
        };
        let Some(running) = probe else {
            return Ok(false);
        };
        if running.poll()?.is_none() {
            return Ok(false);
        }
        *probe = None;
        tap.set_watching(false)?;
        Ok(true)
    }

    /// When the probe must be looked at even if its descriptor is quiet.
    pub fn next_check(&self) -> Option<std::time::Instant> {
        match self {
            Network::Tap {
                probe: Some(probe), ..
            } => Some(probe.next_check()),
            _ => None,
        }
    }

    /// Tap mode: whether frames went to or from the guest since the last
    /// call (its connections are busy). User mode reports connections
    /// itself.
    pub fn traffic(&mut self) -> bool {
        let Network::Tap { tap, frames, .. } = self else {
            return false;
        };
        let counter = |which: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{which}", tap.name()))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let now = counter("rx_packets") + counter("tx_packets");
        let moved = now != *frames;
        *frames = now;
        moved
    }

    /// The unikernel stopped (destroyed): frames for it are dropped, and
    /// the tap watched again.
    pub fn stopped(&mut self, name: &str) {
        if let Network::Tap { tap, probe, .. } = self {
            *probe = None;
            let result = tap.set_watching(true).and_then(|()| tap.drain().map(drop));
            if let Err(e) = result {
                eprintln!("jitsu: {name}: resetting tap {}: {e}", tap.name());
            }
        }
    }

    /// The unikernel was paused: watch the tap (nothing drained: its
    /// frames wait for it).
    pub fn paused(&mut self) {
        if let Network::Tap { tap, .. } = self {
            let _ = tap.set_watching(true);
        }
    }

    /// The unikernel was resumed: introduce the host again and stop
    /// watching (it listens already).
    pub fn resumed(&mut self) {
        if let Network::Tap { tap, bridge, .. } = self {
            let _ = tap.introduce_peers(bridge);
            let _ = tap.set_watching(false);
        }
    }
}
