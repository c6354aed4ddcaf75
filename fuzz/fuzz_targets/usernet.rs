//! The user-mode network (`lamina_usernet::Gateway`, what the
//! lamina-usernet program runs) against a guest the input makes up: frames
//! on the guest's end of a real socketpair, served by the gateway's smoltcp
//! stack inside the host process (Ethernet, ARP, IPv4, ICMP, TCP, UDP),
//! with state carried from frame to frame (the ARP cache, the connections
//! to the guest, the UDP flows), and real host clients on the forwards'
//! loopback sockets: two TCP forwards and a UDP one.
//!
//! Input: actions, one after another; each is an operation byte, then its
//! arguments (missing bytes read as zero):
//!
//! - `0..=2` a frame: length (u16, at most 1600), flags (bit 0: fill in the
//!   IPv4, ICMP, TCP and UDP checksums), the frame's bytes;
//! - `3` an answer to the last frame the gateway sent that has one: an ARP
//!   request gets the guest's ARP reply; a TCP segment gets a segment back
//!   with control bits, sequence and acknowledgment deltas (i8 each),
//!   window (u16) and payload length (u8) from the input, then the payload;
//!   a UDP datagram gets one back with a source port delta (i8: 0 is the
//!   forwarded port, anything else a port that must not reach the client)
//!   and payload length (u8) from the input, then the payload;
//! - `4` a host client of forward `byte % 3` (0 and 1 TCP, 2 UDP): a TCP
//!   client connects (the gateway opens a connection to the guest for it),
//!   a UDP client gets a socket of its own (its first datagram opens a flow);
//! - `5` client `byte` writes a length (u8) and that many bytes (a UDP
//!   client: one datagram of 8 times the length in bytes, the input's
//!   bytes repeated, so that some are too large for the link);
//! - `6` client `byte` shuts its sending side (the gateway closes towards
//!   the guest once the bytes are across); a UDP client moves to a new
//!   source port, a new flow;
//! - `7` the clock advances by a number of milliseconds (u16): retransmits,
//!   timeouts, ARP expiry, idle UDP flows closing.
//!
//! After each action the gateway serves once; everything it sends the
//! guest is read back and checked (at most an Ethernet frame of the link's
//! MTU, from the gateway's MAC address), and the clients' received bytes
//! are drained. No traffic leaves loopback: the gateway opens no sockets.
//! `USERNET_TRACE=1` prints a line per frame each way.
#![no_main]

use lamina_usernet::{Forward, Gateway, Protocol, UserNet, GATEWAY_MAC, MAX_FLOWS, MTU};
use lamina_wire::checksum;
use lamina_wire::ip::Frame;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The guest's MAC address in the frames built here.
const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 15];

/// Host clients per input, at most.
const MAX_CLIENTS: usize = 4;

/// A host client of a forward.
enum Client {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A UDP socket on loopback sending to `to`, non-blocking.
fn udp_client(to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
    socket.connect(to).expect("connect on loopback");
    socket.set_nonblocking(true).expect("nonblocking");
    socket
}

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

    fn bytes(&mut self, len: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Fills in the checksums of an Ethernet + IPv4 frame as far as its headers
/// allow: without this the fuzzer would rarely get past smoltcp's checks.
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
        let value = checksum::finish(checksum::sum(icmp));
        icmp[2..4].copy_from_slice(&value.to_be_bytes());
    }
    if let Ok(mut ip) = Frame::new_checked(&mut *frame) {
        ip.fill_transport_checksum();
    }
    frame[24..26].fill(0);
    let value = checksum::finish(checksum::sum(&frame[14..14 + header_len]));
    frame[24..26].copy_from_slice(&value.to_be_bytes());
}

/// The guest's answer to `sent` (a frame from the gateway), if it has one.
fn answer(sent: &[u8], input: &mut Input) -> Option<Vec<u8>> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&sent[6..12]);
    frame.extend_from_slice(&GUEST_MAC);
    match be16(sent, 12) {
        // An ARP request (Ethernet, IPv4): the guest's reply.
        0x0806 if sent.len() >= 42 && be16(sent, 20) == 1 => {
            frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
            frame.extend_from_slice(&GUEST_MAC);
            frame.extend_from_slice(&sent[38..42]); // the address asked for
            frame.extend_from_slice(&sent[22..32]); // the asker's MAC and IP
            Some(frame)
        }
        // A TCP segment: one back, its fields from the input.
        0x0800 if sent.len() >= 14 + 20 + 20 && sent[23] == 6 => {
            let header_len = usize::from(sent[14] & 0xf) * 4;
            let tcp = 14 + header_len;
            if sent.len() < tcp + 20 {
                return None;
            }
            let data_len = usize::from(be16(sent, 16))
                .saturating_sub(header_len + usize::from(sent[tcp + 12] >> 4) * 4);
            let (their_seq, their_ack, their_flags) =
                (be32(sent, tcp + 4), be32(sent, tcp + 8), sent[tcp + 13]);
            let flags = input.byte();
            let seq_delta = input.byte() as i8;
            let ack_delta = input.byte() as i8;
            let window = input.u16();
            let len = usize::from(input.byte());
            let payload = input.bytes(len);
            // What the segment occupies of the sequence space: data, SYN, FIN.
            let consumed = data_len as u32
                + u32::from(their_flags & 0x02 != 0)
                + u32::from(their_flags & 0x01 != 0);
            let seq = if their_flags & 0x10 != 0 {
                their_ack
            } else {
                0x1000_0000
            };
            let ack = their_seq.wrapping_add(consumed);
            frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            frame.extend_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            frame.extend_from_slice(&sent[30..34]); // to the gateway's address
            frame.extend_from_slice(&sent[26..30]);
            frame.extend_from_slice(&sent[tcp + 2..tcp + 4]); // ports swapped
            frame.extend_from_slice(&sent[tcp..tcp + 2]);
            frame.extend_from_slice(&seq.wrapping_add_signed(seq_delta.into()).to_be_bytes());
            frame.extend_from_slice(&ack.wrapping_add_signed(ack_delta.into()).to_be_bytes());
            frame.extend_from_slice(&[0x50, flags]);
            frame.extend_from_slice(&window.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(payload);
            fill_checksums(&mut frame);
            Some(frame)
        }
        // A UDP datagram: one back, to its source port, from its
        // destination port moved by the input's delta.
        0x0800 if sent.len() >= 14 + 20 + 8 && sent[23] == 17 => {
            let udp = 14 + usize::from(sent[14] & 0xf) * 4;
            if sent.len() < udp + 8 {
                return None;
            }
            let port_delta = input.byte() as i8;
            let len = usize::from(input.byte());
            let payload = input.bytes(len);
            let from = be16(sent, udp + 2).wrapping_add_signed(port_delta.into());
            frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            frame.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            frame.extend_from_slice(&sent[30..34]);
            frame.extend_from_slice(&sent[26..30]);
            frame.extend_from_slice(&from.to_be_bytes());
            frame.extend_from_slice(&sent[udp..udp + 2]);
            frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(payload);
            fill_checksums(&mut frame);
            Some(frame)
        }
        _ => None,
    }
}

/// A line about `frame` for `USERNET_TRACE=1` (reading a seed or a crash).
fn describe(frame: &[u8]) -> String {
    let mut line = format!("{} bytes", frame.len());
    if frame.len() >= 14 + 20 + 20 && frame[12..14] == [0x08, 0x00] && frame[23] == 6 {
        let tcp = 14 + usize::from(frame[14] & 0xf) * 4;
        if frame.len() >= tcp + 20 {
            line += &format!(
                " TCP {} -> {} seq {:#x} ack {:#x} flags {:#04x}",
                be16(frame, tcp),
                be16(frame, tcp + 2),
                be32(frame, tcp + 4),
                be32(frame, tcp + 8),
                frame[tcp + 13]
            );
        }
    } else if frame.len() >= 14 {
        line += &format!(" type {:#06x}", be16(frame, 12));
    }
    line
}

thread_local! {
    /// The buffer frames and the clients' bytes are read into, kept from
    /// one execution to the next: 64 KiB allocated afresh each time went
    /// through the sanitizer's quarantine and faulted in new pages, a
    /// thirtieth of an execution.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn send(guest: &UnixDatagram, frame: &[u8]) {
    if std::env::var_os("USERNET_TRACE").is_some() {
        eprintln!("guest   -> gateway: {}", describe(frame));
    }
    // A full link drops the frame, as a tap would: not an error here.
    let _ = guest.send(frame);
}

fuzz_target!(|bytes: &[u8]| {
    let forwards = [
        Forward {
            host_port: 0,
            guest_port: 80,
            protocol: Protocol::Tcp,
        },
        Forward {
            host_port: 0,
            guest_port: 8080,
            protocol: Protocol::Tcp,
        },
        Forward {
            host_port: 0,
            guest_port: 53,
            protocol: Protocol::Udp,
        },
    ];
    let net = UserNet::bind(&forwards).expect("listen on 127.0.0.1");
    let addrs = net.local_addrs().expect("listeners' addresses");
    let (guest, network) = lamina_usernet::socketpair().expect("socketpair");
    let guest = UnixDatagram::from(guest);
    let mut now = Duration::ZERO;
    let mut gateway = Gateway::new(net, network, 0x5eed, now);
    let mut clients: Vec<Client> = Vec::new();
    // The last frame from the gateway that the guest can answer.
    let mut last: Option<Vec<u8>> = None;
    let mut input = Input(bytes);
    let mut buf = BUFFER.with_borrow_mut(std::mem::take);
    buf.resize(65536, 0);
    while !input.0.is_empty() {
        match input.byte() % 8 {
            0..=2 => {
                let len = usize::from(input.u16() % 1601);
                let flags = input.byte();
                let mut frame = input.bytes(len).to_vec();
                if flags & 1 != 0 {
                    fill_checksums(&mut frame);
                }
                send(&guest, &frame);
            }
            3 => {
                if let Some(frame) = last.as_deref().and_then(|sent| answer(sent, &mut input)) {
                    send(&guest, &frame);
                }
            }
            4 => {
                let which = usize::from(input.byte()) % forwards.len();
                if clients.len() < MAX_CLIENTS {
                    clients.push(match forwards[which].protocol {
                        Protocol::Tcp => {
                            let client =
                                TcpStream::connect(addrs[which]).expect("connect on loopback");
                            client.set_nonblocking(true).expect("nonblocking");
                            Client::Tcp(client)
                        }
                        Protocol::Udp => Client::Udp(udp_client(addrs[which])),
                    });
                }
            }
            5 => {
                let which = usize::from(input.byte());
                let len = usize::from(input.byte());
                let data = input.bytes(len);
                match clients.get_mut(which % MAX_CLIENTS) {
                    Some(Client::Tcp(client)) => {
                        let _ = client.write(data);
                    }
                    Some(Client::Udp(client)) => {
                        let datagram: Vec<u8> =
                            data.iter().copied().cycle().take(len * 8).collect();
                        let _ = client.send(&datagram);
                    }
                    None => {}
                }
            }
            6 => match clients.get_mut(usize::from(input.byte()) % MAX_CLIENTS) {
                Some(Client::Tcp(client)) => {
                    let _ = client.shutdown(Shutdown::Write);
                }
                Some(Client::Udp(client)) => *client = udp_client(addrs[2]),
                None => {}
            },
            _ => now += Duration::from_millis(input.u16().into()),
        }
        gateway.serve(now).expect("serve");
        assert!(gateway.udp_flows() <= MAX_FLOWS, "the UDP flow table grew");
        while let Ok(n) = guest.recv(&mut buf) {
            let frame = &buf[..n];
            if std::env::var_os("USERNET_TRACE").is_some() {
                eprintln!("gateway -> guest:   {}", describe(frame));
            }
            assert!(
                (14..=MTU + 14).contains(&n),
                "a {n}-byte frame to the guest"
            );
            assert_eq!(frame[6..12], GATEWAY_MAC, "a frame not from the gateway");
            let arp_request = be16(frame, 12) == 0x0806 && n >= 22 && be16(frame, 20) == 1;
            let tcp_or_udp =
                be16(frame, 12) == 0x0800 && n >= 34 && (frame[23] == 6 || frame[23] == 17);
            if arp_request || tcp_or_udp {
                last = Some(frame.to_vec());
            }
        }
        for client in &mut clients {
            match client {
                Client::Tcp(client) => while matches!(client.read(&mut buf), Ok(n) if n > 0) {},
                Client::Udp(client) => while client.recv(&mut buf).is_ok() {},
            }
        }
    }
    BUFFER.set(buf);
    // Reset rather than close: no TIME_WAIT left per execution.
    for client in clients.iter().filter_map(|c| match c {
        Client::Tcp(tcp) => Some(tcp),
        Client::Udp(_) => None,
    }) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads one linger structure from `linger`.
        unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
});
