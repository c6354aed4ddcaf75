//! The stack's frame input: `lamina_net::NetStack` on a simulated link and
//! clock (`lamina_net::sim`), with an application running on it (a TCP
//! listener echoing what it reads, a UDP socket echoing datagrams, an
//! outgoing connection, and DHCP when the boot arguments give no address),
//! fed Ethernet frames that a peer on the link makes up: ARP, IPv4, IPv6,
//! ICMP, UDP, TCP and DHCP through smoltcp and the stack's driver.
//!
//! Input: a byte that picks the stack's boot arguments from [`BOOT_LINES`]
//! (parsed by the real parser; a line it refuses must be refused with
//! status 2), with [`SMALL_BUFFERS`] unless its top bit is set, then
//! actions, one after another; each is an operation byte
//! and its arguments (missing bytes read as zero):
//!
//! - `0..=1` a raw frame: length (u16, at most 1600), flags (bit 0: fill in
//!   the IPv4 header, ICMP, TCP and UDP checksums), the frame's bytes;
//! - `2` a frame from a template, to the stack's addresses with checksums
//!   right, its fields from the input: a TCP segment to the listener (a
//!   SYN to open a connection, or anything else), a UDP datagram to the
//!   echo socket, an ICMP echo request, an ARP request or reply, an IPv6
//!   packet (ICMPv6, UDP, TCP or any next header) to the link-local
//!   address or all-nodes, an IPv4 packet with any protocol, options and
//!   fragment fields;
//! - `3` an answer to the last TCP segment the stack sent (control bits,
//!   sequence and acknowledgment deltas, window, options and payload from
//!   the input): with it, the listener's handshakes and the outgoing
//!   connection complete, carry data and close;
//! - `4` a DHCP server's answer to the stack's last DISCOVER or REQUEST
//!   (an OFFER, ACK or NAK with the client's transaction, address, mask,
//!   lease and extra options from the input);
//! - `5` the peer's ARP reply to the stack's last ARP request;
//! - `6` a datagram back to the last UDP datagram the stack sent;
//! - `7` the clock advances by a number of milliseconds (u16).
//!
//! After each action the stack runs until it waits (a millisecond of
//! simulated time); what it sends must be an Ethernet frame of the link's
//! MTU from its own MAC address. At the end, the stack still answers an
//! ARP request for its address. `NET_TRACE=1` prints the frames.
#![no_main]

use lamina_core::args::{split_command_line, BootArgs};
use lamina_core::boot::parse_command_line;
use lamina_core::device::{Stack, TcpListener, TcpRead, TcpWrite, UdpSocket};
use lamina_core::runtime::{Duration, Executor, Handle};
use lamina_net::sim::{Queue, SimClock, SimNetif, SimTime};
use lamina_net::{NetArgs, NetStack};
use lamina_wire::checksum;
use lamina_wire::ip::Frame;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

/// The stack's command lines, valid ones and edge values, and two the
/// parser must refuse.
const BOOT_LINES: &[&str] = &[
    "",
    "--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1",
    "--ipv4=10.0.0.2/24",
    "--ipv4=10.0.0.2/31 --tcp-rx-buffer=1024 --tcp-tx-buffer=1024 --tcp-backlog=1",
    "--ipv4=10.0.0.254/24 --ipv4-gateway=10.0.0.1 --tcp-ack-delay-ms=500 \
     --tcp-memory=16384 --tcp-rx-buffer=2048 --tcp-tx-buffer=2048",
    "--ipv4=10.0.0.2/8 --ipv4-gateway=10.255.255.254 --dns=10.0.0.1:53",
    "--ipv4=10.0.0.2/32",
    "--tcp-backlog=65535 --tcp-rx-buffer=262144 --tcp-tx-buffer=262144 --tcp-ack-delay-ms=10",
    "--ipv4=10.0.0.0/24",
    "--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.1.1",
];

/// Added to a line that names no TCP buffer sizes when the first byte's
/// top bit is clear. The sizes are not what this target tests, and at the
/// defaults each execution allocated and zeroed about 1.5 MiB (256 KiB
/// each way for the first connections: two listening sockets kept ready
/// and the outgoing connection), a fifth of its time; the top bit keeps
/// the default sizes' paths (window scaling, the memory budget's steps)
/// reachable.
const SMALL_BUFFERS: &str = " --tcp-rx-buffer=2048 --tcp-tx-buffer=2048";

/// The guest heap the stack's TCP memory is checked against.
const HEAP_BYTES: usize = 64 << 20;

const STACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The stack's address when it has none yet (DHCP).
const FALLBACK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The peer's and the stack's IPv6 link-local addresses (the stack's is
/// its MAC's modified EUI-64).
const PEER_V6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 9];
const STACK_V6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 1];
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

const LISTEN_PORT: u16 = 80;
const ECHO_PORT: u16 = 7;
const CONNECT_PORT: u16 = 8080;

/// The input, read front to back; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn bytes(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
    /// A length byte, then that many bytes.
    fn counted(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte());
        self.bytes(len).to_vec()
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn put_checksum(bytes: &mut [u8], at: usize, total: u64) {
    bytes[at..at + 2].copy_from_slice(&checksum::finish(total).to_be_bytes());
}

/// Where a transport's checksum is in its header.
fn checksum_offset(protocol: u8) -> Option<usize> {
    match protocol {
        1 | 58 => Some(2),
        6 => Some(16),
        17 => Some(6),
        _ => None,
    }
}

/// An Ethernet header from the peer.
fn ethernet(to: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&to);
    frame.extend_from_slice(&PEER_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An IPv4 packet in an Ethernet frame to the stack: `options` after the
/// header (cut to a multiple of 4, at most 40 bytes), the transport
/// checksum filled in (ICMP without a pseudo-header).
fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    fragment: u16,
    options: &[u8],
    transport: &[u8],
) -> Vec<u8> {
    let options = &options[..options.len().min(40) / 4 * 4];
    let header_len = 20 + options.len();
    let mut frame = ethernet(STACK_MAC, 0x0800);
    frame.push(0x40 | (header_len / 4) as u8);
    frame.push(0);
    frame.extend_from_slice(&((header_len + transport.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34]);
    frame.extend_from_slice(&fragment.to_be_bytes());
    frame.extend_from_slice(&[64, protocol, 0, 0]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(options);
    let total = checksum::sum(&frame[14..14 + header_len]);
    put_checksum(&mut frame, 24, total);
    let start = frame.len();
    frame.extend_from_slice(transport);
    if let Some(at) = checksum_offset(protocol).filter(|at| at + 2 <= transport.len()) {
        let pseudo = if protocol == 1 {
            0
        } else {
            checksum::sum(&src.octets())
                + checksum::sum(&dst.octets())
                + u64::from(protocol)
                + transport.len() as u64
        };
        frame[start + at..start + at + 2].fill(0);
        let total = pseudo + checksum::sum(&frame[start..]);
        put_checksum(&mut frame, start + at, total);
    }
    frame
}

/// An IPv6 packet from the peer's link-local address, its transport
/// checksum filled in for ICMPv6, TCP and UDP.
fn ipv6(to_mac: [u8; 6], dst: [u8; 16], next: u8, hop_limit: u8, transport: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(to_mac, 0x86dd);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(transport.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next, hop_limit]);
    frame.extend_from_slice(&PEER_V6);
    frame.extend_from_slice(&dst);
    let start = frame.len();
    frame.extend_from_slice(transport);
    if let Some(at) = checksum_offset(next).filter(|at| at + 2 <= transport.len()) {
        let pseudo = checksum::sum(&PEER_V6)
            + checksum::sum(&dst)
            + transport.len() as u64
            + u64::from(next);
        frame[start + at..start + at + 2].fill(0);
        let total = pseudo + checksum::sum(&frame[start..]);
        put_checksum(&mut frame, start + at, total);
    }
    frame
}

/// A TCP header and payload: `options` cut to a multiple of 4, at most 40.
fn tcp(
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let options = &options[..options.len().min(40) / 4 * 4];
    let mut segment = Vec::with_capacity(20 + options.len() + payload.len());
    segment.extend_from_slice(&ports.0.to_be_bytes());
    segment.extend_from_slice(&ports.1.to_be_bytes());
    segment.extend_from_slice(&seq.to_be_bytes());
    segment.extend_from_slice(&ack.to_be_bytes());
    segment.push(((20 + options.len()) / 4 << 4) as u8);
    segment.push(flags);
    segment.extend_from_slice(&window.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0]);
    segment.extend_from_slice(options);
    segment.extend_from_slice(payload);
    segment
}

/// A UDP header and payload.
fn udp(ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    datagram.extend_from_slice(&ports.0.to_be_bytes());
    datagram.extend_from_slice(&ports.1.to_be_bytes());
    datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

/// An ARP packet from the peer (`op` 1 a request, 2 a reply).
fn arp(to_mac: [u8; 6], op: u16, sender: Ipv4Addr, target: ([u8; 6], Ipv4Addr)) -> Vec<u8> {
    let mut frame = ethernet(to_mac, 0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&PEER_MAC);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&target.0);
    frame.extend_from_slice(&target.1.octets());
    frame
}

/// Fills in the IPv4 header's and its transport's checksums of a raw frame
/// as far as its headers allow: without this the fuzzer would rarely get
/// past smoltcp's checks.
fn fill_checksums(frame: &mut [u8]) {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let header_len = usize::from(frame[14] & 0xf) * 4;
    if header_len < 20 || frame.len() < 14 + header_len {
        return;
    }
    let end = (14 + usize::from(be16(frame, 16))).clamp(14 + header_len, frame.len());
    if frame[23] == 1 && end >= 14 + header_len + 4 {
        let icmp = &mut frame[14 + header_len..end];
        icmp[2..4].fill(0);
        let total = checksum::sum(icmp);
        put_checksum(icmp, 2, total);
    }
    if let Ok(mut ip) = Frame::new_checked(&mut *frame) {
        ip.fill_transport_checksum();
    }
    frame[24..26].fill(0);
    let total = checksum::sum(&frame[14..14 + header_len]);
    put_checksum(frame, 24, total);
}

/// The IPv4 header length and the transport's offset of an IPv4 frame
/// carrying `protocol`, if it has one with `min` bytes of transport header.
fn ipv4_transport(frame: &[u8], protocol: u8, min: usize) -> Option<usize> {
    if frame.len() < 34 || be16(frame, 12) != 0x0800 || frame[23] != protocol {
        return None;
    }
    let at = 14 + usize::from(frame[14] & 0xf) * 4;
    (frame.len() >= at + min).then_some(at)
}

/// The peer's answer to the TCP segment `sent`, its fields from the input.
fn answer_tcp(sent: &[u8], input: &mut Input) -> Option<Vec<u8>> {
    let at = ipv4_transport(sent, 6, 20)?;
    let data_len =
        usize::from(be16(sent, 16)).saturating_sub(at - 14 + usize::from(sent[at + 12] >> 4) * 4);
    let (their_seq, their_ack, their_flags) =
        (be32(sent, at + 4), be32(sent, at + 8), sent[at + 13]);
    let flags = input.byte();
    let seq_delta = input.byte() as i8;
    let ack_delta = input.byte() as i8;
    let window = input.u16();
    let options = input.counted();
    let payload = input.counted();
    // What the segment occupies of the sequence space: data, SYN, FIN.
    let consumed =
        data_len as u32 + u32::from(their_flags & 0x02 != 0) + u32::from(their_flags & 0x01 != 0);
    let seq = if their_flags & 0x10 != 0 {
        their_ack
    } else {
        0x1000_0000
    };
    let segment = tcp(
        (be16(sent, at + 2), be16(sent, at)),
        seq.wrapping_add_signed(seq_delta.into()),
        their_seq
            .wrapping_add(consumed)
            .wrapping_add_signed(ack_delta.into()),
        flags,
        window,
        &options,
        &payload,
    );
    let (src, dst) = (ip_at(sent, 30), ip_at(sent, 26));
    Some(ipv4(src, dst, 6, 0x4000, &[], &segment))
}

fn ip_at(frame: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

/// A DHCP server's answer to the stack's DISCOVER or REQUEST `sent`.
fn answer_dhcp(sent: &[u8], input: &mut Input) -> Option<Vec<u8>> {
    let at = ipv4_transport(sent, 17, 8 + 240)?;
    let bootp = &sent[at + 8..];
    // The client's message type, option 53, if it is where smoltcp puts it
    // (first); else a DISCOVER.
    let asked = if bootp.len() >= 243 && bootp[240] == 53 {
        bootp[242]
    } else {
        1
    };
    let kind = match input.byte() % 8 {
        0 => 6, // NAK
        1 => input.byte(),
        _ if asked == 3 => 5, // ACK
        _ => 2,               // OFFER
    };
    let host = input.byte();
    let prefix = input.byte() % 33;
    let lease = input.u32();
    let extra = input.counted();
    let mut reply = vec![2, 1, 6, 0];
    reply.extend_from_slice(&bootp[4..8]); // the transaction
    reply.extend_from_slice(&[0; 8]); // secs, flags, ciaddr
    reply.extend_from_slice(&[10, 0, 0, host]); // yiaddr
    reply.extend_from_slice(&PEER.octets()); // siaddr
    reply.extend_from_slice(&[0; 4]); // giaddr
    reply.extend_from_slice(&bootp[28..44]); // chaddr
    reply.extend_from_slice(&[0; 192]); // sname, file
    reply.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind, 54, 4]);
    reply.extend_from_slice(&PEER.octets());
    reply.extend_from_slice(&[51, 4]);
    reply.extend_from_slice(&lease.to_be_bytes());
    reply.extend_from_slice(&[1, 4]);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    reply.extend_from_slice(&mask.to_be_bytes());
    for option in [3, 6] {
        reply.extend_from_slice(&[option, 4]);
        reply.extend_from_slice(&PEER.octets());
    }
    reply.extend_from_slice(&extra);
    reply.push(255);
    let datagram = udp((67, 68), &reply);
    let mut frame = ipv4(PEER, Ipv4Addr::BROADCAST, 17, 0, &[], &datagram);
    frame[..6].fill(0xff);
    Some(frame)
}

/// The peer's ARP reply to the stack's ARP request `sent`.
fn answer_arp(sent: &[u8]) -> Option<Vec<u8>> {
    if sent.len() < 42 || be16(sent, 12) != 0x0806 || be16(sent, 20) != 1 {
        return None;
    }
    let asked = ip_at(sent, 38);
    let mut frame = arp(STACK_MAC, 2, asked, (STACK_MAC, ip_at(sent, 28)));
    // The reply's sender is the address asked for, whoever the stack asked.
    frame[28..32].copy_from_slice(&asked.octets());
    Some(frame)
}

/// A datagram back to the stack's datagram `sent`, from its destination
/// port moved by the input's delta.
fn answer_udp(sent: &[u8], input: &mut Input) -> Option<Vec<u8>> {
    let at = ipv4_transport(sent, 17, 8)?;
    let port_delta = input.byte() as i8;
    let payload = input.counted();
    let from = be16(sent, at + 2).wrapping_add_signed(port_delta.into());
    let datagram = udp((from, be16(sent, at)), &payload);
    Some(ipv4(
        ip_at(sent, 30),
        ip_at(sent, 26),
        17,
        0,
        &[],
        &datagram,
    ))
}

/// A frame from a template (action `2`), to `stack` (the stack's IPv4
/// address, or where it will be).
fn template(stack: Ipv4Addr, input: &mut Input) -> Vec<u8> {
    match input.byte() % 6 {
        0 => {
            let port = input.u16();
            let seq = input.u32();
            let ack = input.u32();
            let flags = input.byte();
            let window = input.u16();
            let options = input.counted();
            let payload = input.counted();
            let segment = tcp(
                (port, LISTEN_PORT),
                seq,
                ack,
                flags,
                window,
                &options,
                &payload,
            );
            ipv4(PEER, stack, 6, 0x4000, &[], &segment)
        }
        1 => {
            let port = input.u16();
            let payload = input.counted();
            ipv4(PEER, stack, 17, 0, &[], &udp((port, ECHO_PORT), &payload))
        }
        2 => {
            let mut icmp = vec![input.byte(), input.byte(), 0, 0];
            icmp.extend_from_slice(&input.counted());
            ipv4(PEER, stack, 1, 0, &[], &icmp)
        }
        3 => {
            let op = u16::from(input.byte() % 3);
            let target = if input.byte() & 1 == 0 {
                stack
            } else {
                Ipv4Addr::from(input.u32())
            };
            let to = if op == 1 { [0xff; 6] } else { STACK_MAC };
            arp(to, op, PEER, ([0; 6], target))
        }
        4 => {
            let selector = input.byte();
            let next = match selector % 4 {
                0 => 58,
                1 => 17,
                2 => 6,
                _ => input.byte(),
            };
            let hop_limit = if selector & 4 != 0 { 255 } else { input.byte() };
            let (to_mac, to) = if selector & 8 != 0 {
                ([0x33, 0x33, 0, 0, 0, 1], ALL_NODES)
            } else {
                (STACK_MAC, STACK_V6)
            };
            let transport = input.counted();
            ipv6(to_mac, to, next, hop_limit, &transport)
        }
        _ => {
            let protocol = input.byte();
            let fragment = input.u16();
            let options = input.counted();
            let transport = input.counted();
            ipv4(PEER, stack, protocol, fragment, &options, &transport)
        }
    }
}

/// A line about `frame` for `NET_TRACE=1`.
fn describe(frame: &[u8]) -> String {
    let mut line = format!("{} bytes", frame.len());
    if let Some(at) = ipv4_transport(frame, 6, 20) {
        line += &format!(
            " TCP {} -> {} seq {:#x} ack {:#x} flags {:#04x}",
            be16(frame, at),
            be16(frame, at + 2),
            be32(frame, at + 4),
            be32(frame, at + 8),
            frame[at + 13]
        );
    } else if frame.len() >= 14 {
        line += &format!(" type {:#06x}", be16(frame, 12));
    }
    line
}

/// Prints the stack's and smoltcp's log (`NET_TRACE=1`).
struct TraceLog;

impl log::Log for TraceLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        eprintln!("{} {}: {}", record.level(), record.target(), record.args());
    }
    fn flush(&self) {}
}

/// The application on the stack: an echoing listener and UDP socket, a
/// datagram and a connection to the peer.
async fn application(stack: NetStack, rt: Handle) {
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    if let Ok(listener) = stack.tcp_listen(any(LISTEN_PORT)).await {
        let rt2 = rt.clone();
        rt.spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                rt2.spawn(async move {
                    let mut buf = [0u8; 512];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
    }
    if let Ok(socket) = stack.udp_bind(any(ECHO_PORT)).await {
        let _ = socket.send_to(b"ping", SocketAddr::from((PEER, 53))).await;
        rt.spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
    }
    let connect = rt.timeout(
        Duration::from_secs(60),
        stack.tcp_connect(SocketAddr::from((PEER, CONNECT_PORT))),
    );
    if let Ok(Ok(mut conn)) = connect.await {
        if conn.write_all(b"hello").await.is_ok() {
            let mut buf = [0u8; 512];
            while let Ok(1..) = conn.read(&mut buf).await {}
            let _ = conn.shutdown().await;
        }
    }
}

/// The last frames the stack sent that the peer can answer.
#[derive(Default)]
struct Last {
    tcp: Option<Vec<u8>>,
    dhcp: Option<Vec<u8>>,
    arp: Option<Vec<u8>>,
    udp: Option<Vec<u8>>,
}

/// Takes what the stack sent, checks each frame and keeps the ones the
/// peer may answer.
fn drain(outbox: &Queue, last: &mut Last, trace: bool) {
    while let Some(frame) = outbox.pop() {
        if trace {
            eprintln!("stack -> peer:  {}", describe(&frame));
        }
        assert!(
            (14..=1514).contains(&frame.len()),
            "a {}-byte frame",
            frame.len()
        );
        assert_eq!(frame[6..12], STACK_MAC, "a frame not from the stack");
        if ipv4_transport(&frame, 6, 20).is_some() {
            last.tcp = Some(frame);
        } else if let Some(at) = ipv4_transport(&frame, 17, 8) {
            if be16(&frame, at + 2) == 67 {
                last.dhcp = Some(frame);
            } else {
                last.udp = Some(frame);
            }
        } else if frame.len() >= 22 && be16(&frame, 12) == 0x0806 && be16(&frame, 20) == 1 {
            last.arp = Some(frame);
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut input = Input(bytes);
    let pick = input.byte();
    let mut line = BOOT_LINES[usize::from(pick) % BOOT_LINES.len()].to_string();
    if pick & 0x80 == 0 && !line.contains("--tcp-rx-buffer") {
        line.push_str(SMALL_BUFFERS);
    }
    let words = split_command_line(&line).expect("the table's lines split");
    let mut args = NetArgs::defaults();
    let parsed = parse_command_line("unikernel", &words, &mut [&mut args])
        .map_err(|stop| stop.status)
        .and_then(|()| args.limit_to_heap(HEAP_BYTES).map_err(|_| 2));
    if let Err(status) = parsed {
        assert_eq!(status, 2, "{line} refused with status {status}");
        assert!(
            line.contains("10.0.0.0/") || line.contains("10.0.1.1"),
            "{line} refused"
        );
        return;
    }
    let trace = std::env::var_os("NET_TRACE").is_some();
    if trace && log::set_logger(&TraceLog).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let rt = executor.handle();
    let (inbox, outbox) = (Rc::new(Queue::default()), Rc::new(Queue::default()));
    let netif = SimNetif::new(STACK_MAC, inbox.clone(), outbox.clone(), 0);
    let stack = NetStack::start(netif, SimClock(time.clone()), 7, &rt, args);
    rt.spawn(application(stack.clone(), rt.clone()));
    executor.block_on(async {
        let mut last = Last::default();
        let settle = async |last: &mut Last| {
            rt.sleep(Duration::from_millis(1)).await;
            drain(&outbox, last, trace);
        };
        settle(&mut last).await;
        while !input.0.is_empty() {
            let here = stack.ipv4().map_or(FALLBACK, |cidr| cidr.address);
            let frame = match input.byte() % 8 {
                0..=1 => {
                    let len = usize::from(input.u16() % 1601);
                    let flags = input.byte();
                    let mut frame = input.bytes(len).to_vec();
                    if flags & 1 != 0 {
                        fill_checksums(&mut frame);
                    }
                    Some(frame)
                }
                2 => Some(template(here, &mut input)),
                3 => last.tcp.as_deref().and_then(|s| answer_tcp(s, &mut input)),
                4 => last
                    .dhcp
                    .as_deref()
                    .and_then(|s| answer_dhcp(s, &mut input)),
                5 => last.arp.as_deref().and_then(answer_arp),
                6 => last.udp.as_deref().and_then(|s| answer_udp(s, &mut input)),
                _ => {
                    rt.sleep(Duration::from_millis(input.u16().into())).await;
                    None
                }
            };
            if let Some(frame) = frame {
                if trace {
                    eprintln!("peer  -> stack: {}", describe(&frame));
                }
                inbox.push(frame);
            }
            settle(&mut last).await;
        }
        // The stack still works: it answers an ARP request for its address
        // from a neighbour.
        let neighbour = |cidr: &lamina_net::Ipv4Cidr| cidr.contains(PEER) && cidr.address != PEER;
        if let Some(cidr) = stack.ipv4().filter(neighbour) {
            drain(&outbox, &mut last, trace);
            inbox.push(arp([0xff; 6], 1, PEER, ([0; 6], cidr.address)));
            rt.sleep(Duration::from_millis(1)).await;
            let mut answered = false;
            while let Some(frame) = outbox.pop() {
                answered |= frame.len() >= 42
                    && be16(&frame, 12) == 0x0806
                    && be16(&frame, 20) == 2
                    && frame[22..28] == STACK_MAC
                    && ip_at(&frame, 28) == cidr.address
                    && frame[32..38] == PEER_MAC;
            }
            assert!(answered, "no ARP reply for {} at the end", cidr.address);
        }
    });
});
