//! What the stack records when tracing is on (see `lamina_core::trace`):
//! every frame in and out, and per TCP connection, counters over time read
//! from the segments themselves: data bytes sent (the highest sequence
//! number sent), acknowledged by the peer, in flight, the peer's window,
//! and retransmissions (a segment sent again below the highest sequence).
//! The bytes buffered for sending are sampled where the application writes
//! ([`buffered`]).
//!
//! Reading the wire rather than smoltcp's socket keeps this independent of
//! smoltcp's internals (which do not expose what was sent or retransmitted),
//! and costs nothing when tracing is off: the frame is not even parsed.

use alloc::collections::BTreeMap;
use core::cell::RefCell;
use core::fmt::Write;
use lamina_core::trace::{self, Detail, IN, OUT};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpControl,
    TcpPacket, TcpRepr,
};

/// Connections followed at once; more are not traced (bounded memory).
const MAX_CONNECTIONS: usize = 4096;

/// A connection as seen from this host: local address and port, remote
/// address and port.
type Key = (IpAddress, u16, IpAddress, u16);

#[derive(Default)]
struct Connection {
    /// Our initial sequence number, once our SYN was seen.
    isn: Option<u32>,
    /// Data bytes sent: the highest sequence sent, relative to `isn`.
    sent: u32,
    /// Data bytes the peer acknowledged.
    acked: u32,
    /// The peer's receive window in bytes (scaled).
    window: u32,
    /// The peer's window scale, from its SYN.
    window_shift: u8,
    /// Segments sent again.
    retransmits: u32,
    /// Our FIN was sent, and the peer's received: once both are and all
    /// our data is acknowledged (or on a reset), the connection is forgotten.
    fin_out: bool,
    fin_in: bool,
}

/// Per-connection state for the counters.
#[derive(Default)]
pub struct WireTrace {
    connections: RefCell<BTreeMap<Key, Connection>>,
}

impl WireTrace {
    /// Records a frame received.
    pub fn received(&self, frame: &[u8]) {
        if !trace::enabled() {
            return;
        }
        trace::frame(0, IN, frame.len());
        self.segment(frame, IN);
    }

    /// Records a frame sent.
    pub fn sent(&self, frame: &[u8]) {
        if !trace::enabled() {
            return;
        }
        trace::frame(0, OUT, frame.len());
        self.segment(frame, OUT);
    }

    fn segment(&self, frame: &[u8], direction: u8) {
        let Some((src, dst, tcp)) = parse(frame) else {
            return;
        };
        let key = if direction == OUT {
            (src, tcp.src_port, dst, tcp.dst_port)
        } else {
            (dst, tcp.dst_port, src, tcp.src_port)
        };
        let mut connections = self.connections.borrow_mut();
        if !connections.contains_key(&key) && connections.len() >= MAX_CONNECTIONS {
            return;
        }
        let c = connections.entry(key).or_default();
        let seq = tcp.seq_number.0 as u32;
        if direction == OUT {
            if tcp.control == TcpControl::Syn {
                c.isn = Some(seq);
            }
            let Some(isn) = c.isn else { return };
            let start = seq.wrapping_sub(isn).saturating_sub(1);
            let len = tcp.payload.len() as u32;
            if len > 0 && start < c.sent {
                c.retransmits += 1;
            }
            c.sent = c.sent.max(start + len);
            c.fin_out |= tcp.control == TcpControl::Fin;
        } else {
            if tcp.control == TcpControl::Syn {
                c.window_shift = tcp.window_scale.unwrap_or(0).min(14);
            }
            if let (Some(ack), Some(isn)) = (tcp.ack_number, c.isn) {
                // Our SYN takes one sequence number, and our FIN another.
                c.acked = (ack.0 as u32)
                    .wrapping_sub(isn)
                    .saturating_sub(1)
                    .min(c.sent);
            }
            c.window = (tcp.window_len as u32) << c.window_shift;
            c.fin_in |= tcp.control == TcpControl::Fin;
        }
        if c.isn.is_none() {
            return;
        }
        let fields = [
            ("sent", c.sent as i64),
            ("acked", c.acked as i64),
            ("in flight", (c.sent - c.acked.min(c.sent)) as i64),
            ("peer window", c.window as i64),
            ("retransmits", c.retransmits as i64),
        ];
        trace::counter(name(&key).as_str(), 0, &fields);
        if tcp.control == TcpControl::Rst || (c.fin_out && c.fin_in && c.acked == c.sent) {
            connections.remove(&key);
        }
    }
}

/// Records the bytes waiting in a connection's send buffer.
pub(crate) fn buffered(socket: &smoltcp::socket::tcp::Socket<'_>) {
    if let (Some(local), Some(remote)) = (socket.local_endpoint(), socket.remote_endpoint()) {
        let key = (local.addr, local.port, remote.addr, remote.port);
        let bytes = socket.send_queue() as i64;
        trace::counter(name(&key).as_str(), 0, &[("buffered", bytes)]);
    }
}

/// The counter series of a connection: `tcp LOCAL:PORT REMOTE:PORT`.
fn name(key: &Key) -> Detail {
    let mut name = Detail::format(format_args!("tcp {}:{} ", key.0, key.1));
    let _ = write!(name, "{}:{}", key.2, key.3);
    name
}

/// The addresses and TCP header of an Ethernet frame carrying TCP.
fn parse(frame: &[u8]) -> Option<(IpAddress, IpAddress, TcpRepr<'_>)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let checksums = ChecksumCapabilities::ignored();
    let (src, dst, protocol, payload) = match ethernet.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
            let (src, dst) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            (src, dst, ip.next_header(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(ethernet.payload()).ok()?;
            let (src, dst) = (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
            );
            (src, dst, ip.next_header(), ip.payload())
        }
        _ => return None,
    };
    if protocol != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(payload).ok()?;
    let repr = TcpRepr::parse(&tcp, &src, &dst, &checksums).ok()?;
    Some((src, dst, repr))
}
