//! UDP forwards (`HOST:GUEST/udp`): a host socket on 127.0.0.1:HOST per
//! forward, and a table of client flows, as slirp and passt keep one.
//!
//! UDP has no connections, so the gateway makes its own: the first
//! datagram from a host client (its address and port) opens a flow, a
//! smoltcp UDP socket on a gateway port of its own, which sends that
//! client's datagrams to [`GUEST`]`:GUEST`. What the guest sends back from
//! `GUEST` to that gateway port goes to that client, and to no other:
//! several clients at once each get their own replies. A flow ends after
//! [`IDLE_TIMEOUT`] without traffic either way; when [`MAX_FLOWS`] are open
//! the one idle longest makes room for a new client.
//!
//! The guest's stack does not reassemble IP fragments, so a datagram must
//! fit one frame of the link: larger ones from a host client are dropped
//! (and counted), as a full buffer's would be.

use crate::{Forward, GATEWAY, GUEST, MTU};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};
// A BTreeMap, not a HashMap: the sandbox refuses getrandom, which
// HashMap's hasher asks for.
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// The largest UDP payload that fits one IPv4 packet on the link.
pub const MAX_DATAGRAM: usize = MTU - 20 - 8;

/// Client flows open at once, across all UDP forwards.
pub const MAX_FLOWS: usize = 256;

/// A flow without a datagram either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Datagrams buffered per direction per flow in smoltcp.
const FLOW_PACKETS: usize = 32;

/// Host datagrams taken per forward per turn, so that one busy forward
/// cannot hold the event loop.
const BURST: usize = 256;

/// Gateway ports flows use, as the TCP connections do.
const FIRST_PORT: u16 = 40000;

/// One host client of one forward.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    /// Index into [`Datagrams::forwards`].
    forward: usize,
    client: SocketAddr,
}

/// A client's flow: its smoltcp socket and when it last carried a datagram.
struct Flow {
    handle: SocketHandle,
    gateway_port: u16,
    last_used: Duration,
}

/// The UDP forwards and their flows.
pub(crate) struct Datagrams {
    forwards: Vec<(Forward, UdpSocket)>,
    flows: BTreeMap<FlowKey, Flow>,
    next_port: u16,
    /// Host datagrams dropped: too large for the link, or the flow's buffer full.
    pub dropped: u64,
    buf: Vec<u8>,
}

impl Datagrams {
    /// Binds 127.0.0.1:HOST for `forward`.
    pub fn bind(forward: &Forward) -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(("127.0.0.1", forward.host_port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind UDP 127.0.0.1:{}: {e}", forward.host_port),
            )
        })?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// The flows of `forwards` (bound by [`Datagrams::bind`]).
    pub fn new(forwards: Vec<(Forward, UdpSocket)>) -> Datagrams {
        Datagrams {
            forwards,
            flows: BTreeMap::new(),
            next_port: FIRST_PORT,
            dropped: 0,
            buf: vec![0; 65536],
        }
    }

    /// The host sockets, for poll.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.forwards.iter().map(|(_, s)| s.as_raw_fd())
    }

    /// Open flows.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Closes flows idle for [`IDLE_TIMEOUT`] at `now`.
    pub fn expire(&mut self, sockets: &mut SocketSet<'static>, now: Duration) {
        self.flows.retain(|_, flow| {
            let alive = now.saturating_sub(flow.last_used) < IDLE_TIMEOUT;
            if !alive {
                sockets.remove(flow.handle);
            }
            alive
        });
    }

    /// Takes the datagrams waiting on the host sockets into their flows'
    /// smoltcp sockets, towards the guest; sets `moved` if any moved.
    pub fn take_from_host(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Duration,
        moved: &mut bool,
    ) {
        for index in 0..self.forwards.len() {
            for _ in 0..BURST {
                let (len, client) = match self.forwards[index].1.recv_from(&mut self.buf) {
                    Ok(received) => received,
                    Err(_) => break, // WouldBlock, or an ICMP error from an earlier reply
                };
                *moved = true;
                if len > MAX_DATAGRAM {
                    self.dropped += 1;
                    continue;
                }
                let guest_port = self.forwards[index].0.guest_port;
                let key = FlowKey {
                    forward: index,
                    client,
                };
                let handle = match self.flows.get_mut(&key) {
                    Some(flow) => {
                        flow.last_used = now;
                        flow.handle
                    }
                    None => match self.open(key, sockets, now) {
                        Some(handle) => handle,
                        None => {
                            self.dropped += 1;
                            continue;
                        }
                    },
                };
                let socket = sockets.get_mut::<udp::Socket>(handle);
                let to = IpEndpoint::new(IpAddress::Ipv4(GUEST), guest_port);
                if socket.send_slice(&self.buf[..len], to).is_err() {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Sends what the guest has answered on each flow to that flow's
    /// client; sets `moved` if anything moved.
    pub fn answer_host(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Duration,
        moved: &mut bool,
    ) {
        for (key, flow) in &mut self.flows {
            let socket = sockets.get_mut::<udp::Socket>(flow.handle);
            let (forward, host) = &self.forwards[key.forward];
            let from_guest = IpEndpoint::new(IpAddress::Ipv4(GUEST), forward.guest_port);
            while let Ok((len, meta)) = socket.recv_slice(&mut self.buf) {
                *moved = true;
                // Only the forwarded port answers for it, as a NAT would.
                if meta.endpoint != from_guest {
                    continue;
                }
                flow.last_used = now;
                // A full host socket buffer loses the datagram, as UDP may.
                let _ = host.send_to(&self.buf[..len], key.client);
            }
        }
    }

    /// Opens a flow for `key`, closing the one idle longest if the table
    /// is full; None if smoltcp refuses the socket.
    fn open(
        &mut self,
        key: FlowKey,
        sockets: &mut SocketSet<'static>,
        now: Duration,
    ) -> Option<SocketHandle> {
        if self.flows.len() >= MAX_FLOWS {
            let oldest = self
                .flows
                .iter()
                .min_by_key(|(_, flow)| flow.last_used)
                .map(|(key, _)| *key)?;
            if let Some(flow) = self.flows.remove(&oldest) {
                sockets.remove(flow.handle);
            }
        }
        let gateway_port = self.free_port();
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; FLOW_PACKETS],
                vec![0; FLOW_PACKETS * MAX_DATAGRAM],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket
            .bind(IpEndpoint::new(IpAddress::Ipv4(GATEWAY), gateway_port))
            .ok()?;
        let handle = sockets.add(socket);
        self.flows.insert(
            key,
            Flow {
                handle,
                gateway_port,
                last_used: now,
            },
        );
        Some(handle)
    }

    /// The next gateway port no open flow uses.
    fn free_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                FIRST_PORT
            } else {
                port + 1
            };
            // At most MAX_FLOWS ports are taken, far fewer than the range.
            if !self.flows.values().any(|f| f.gateway_port == port) {
                return port;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{socketpair, Gateway, Protocol, UserNet};

    /// A gateway with one UDP forward, no guest on the link (datagrams to
    /// it wait for ARP), and the forward's host address.
    fn gateway() -> (Gateway, std::os::fd::OwnedFd, SocketAddr) {
        let net = UserNet::bind(&[Forward {
            host_port: 0,
            guest_port: 53,
            protocol: Protocol::Udp,
        }])
        .unwrap();
        let addr = net.local_addrs().unwrap()[0];
        let (guest, network) = socketpair().unwrap();
        (Gateway::new(net, network, 1, Duration::ZERO), guest, addr)
    }

    fn client(to: SocketAddr) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(to).unwrap();
        socket
    }

    #[test]
    fn flows_close_after_their_idle_timeout() {
        let (mut gateway, _guest, addr) = gateway();
        let a = client(addr);
        a.send(b"query").unwrap();
        gateway.serve(Duration::ZERO).unwrap();
        assert_eq!(gateway.udp_flows(), 1);
        // Traffic keeps it open; the same client reuses its flow.
        let later = IDLE_TIMEOUT / 2;
        a.send(b"again").unwrap();
        gateway.serve(later).unwrap();
        assert_eq!(gateway.udp_flows(), 1);
        gateway
            .serve(later + IDLE_TIMEOUT - Duration::from_secs(1))
            .unwrap();
        assert_eq!(gateway.udp_flows(), 1);
        gateway.serve(later + IDLE_TIMEOUT).unwrap();
        assert_eq!(gateway.udp_flows(), 0);
    }

    #[test]
    fn the_flow_table_is_bounded_and_too_large_datagrams_are_dropped() {
        let (mut gateway, _guest, addr) = gateway();
        let clients: Vec<UdpSocket> = (0..MAX_FLOWS + 10).map(|_| client(addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send(b"x").unwrap();
            gateway.serve(Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(gateway.udp_flows(), MAX_FLOWS);
        assert_eq!(gateway.udp_dropped(), 0);
        clients[0].send(&[0; MAX_DATAGRAM + 1]).unwrap();
        gateway.serve(Duration::from_secs(1)).unwrap();
        assert_eq!(gateway.udp_dropped(), 1);
    }
}
