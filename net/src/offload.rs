//! Checksum and segmentation offload through a virtio-net header.
//!
//! A host that puts a 10-byte `virtio_net_hdr` (virtio 1.x, 5.1.6) ahead of
//! each frame — a Linux tap opened with `IFF_VNET_HDR`, a virtio-net device
//! (whose header has `num_buffers` after it: [`VIRTIO1_HEADER_LEN`]) — can
//! take work off the guest's stack:
//!
//! - **Receive.** Frames the host built itself arrive with a partial
//!   checksum (`NEEDS_CSUM`) or one it already verified (`DATA_VALID`), and
//!   TCP segments of up to 64 KiB that it never cut to the MTU. Only frames
//!   from elsewhere (flags 0) need their checksum verified:
//!   [`checksum_ok`] does that, once.
//! - **Transmit.** [`Coalescer`] fills in the partial checksum the host
//!   completes, and joins the consecutive MTU-sized TCP segments the stack
//!   emits in one round into one frame with a segmentation (GSO) request:
//!   one write of up to 64 KiB instead of one per 1.5 KiB, which the host
//!   delivers locally as it is or cuts up for the wire.
//!
//! Everything here is plain byte parsing, bounds-checked, and testable on
//! the host.

use alloc::vec::Vec;

/// Length of the header ahead of each frame (`virtio_net_hdr` without
/// `num_buffers`, what a tap uses by default).
pub const HEADER_LEN: usize = 10;

/// Length of the header a virtio 1.x device puts ahead of each frame: the
/// [`HEADER_LEN`] bytes, then `num_buffers` (2 bytes, 0 on transmit).
pub const VIRTIO1_HEADER_LEN: usize = 12;

/// `flags`: the checksum at `csum_start + csum_offset` is partial (the
/// pseudo-header sum); the receiver completes it or trusts it.
const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the host verified the checksum.
const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const ETH_LEN: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;

/// A `virtio_net_hdr` (little-endian fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// `NEEDS_CSUM` (1), `DATA_VALID` (2).
    pub flags: u8,
    /// `GSO_NONE` (0), `GSO_TCPV4` (1), `GSO_UDP` (3), `GSO_TCPV6` (4).
    pub gso_type: u8,
    /// Length of the headers ahead of the payload (GSO).
    pub hdr_len: u16,
    /// Payload bytes per segment (GSO).
    pub gso_size: u16,
    /// Where checksumming starts (`NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start` (`NEEDS_CSUM`).
    pub csum_offset: u16,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..HEADER_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header as bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// The Internet checksum's one's-complement sum of `data`, unfolded.
fn sum(data: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        // Big-endian words, four at a time; a u64 cannot overflow for any
        // packet (2^16 words of at most 2^32 each).
        let word = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
        total += (word >> 32) + (word & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for pair in &mut pairs {
        total += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        total += u64::from(*last) << 8;
    }
    total
}

/// Folds a sum to 16 bits (not inverted).
fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

/// Where the TCP or UDP header of a frame is.
#[derive(Debug, Clone, Copy)]
struct Transport {
    /// Offset of the transport header in the frame.
    at: usize,
    /// Its length with payload, from the IP header.
    len: usize,
    protocol: u8,
    /// Sum of the pseudo-header's addresses and protocol (not the length).
    pseudo: u64,
    ipv6: bool,
}

/// Finds the TCP or UDP header of an IPv4 (not fragmented) or IPv6 frame;
/// `None` for anything else, which the stack judges on its own. A frame
/// shorter than its IP header says counts as not found too: the stack drops
/// it as truncated.
fn transport(frame: &[u8]) -> Option<Transport> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETH_LEN..)?;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
            let protocol = *ip.get(9)?;
            if header_len < 20 || total < header_len || total > ip.len() || fragment != 0 {
                return None;
            }
            if protocol != PROTO_TCP && protocol != PROTO_UDP {
                return None;
            }
            Some(Transport {
                at: ETH_LEN + header_len,
                len: total - header_len,
                protocol,
                pseudo: sum(ip.get(12..20)?) + u64::from(protocol),
                ipv6: false,
            })
        }
        ETHERTYPE_IPV6 => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            if 40 + payload > ip.len() {
                return None;
            }
            // Walk the extension headers a TCP or UDP packet may carry.
            let (mut next, mut at) = (*ip.get(6)?, 40);
            loop {
                match next {
                    PROTO_TCP | PROTO_UDP => break,
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 => {
                        let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
                        next = *ip.get(at)?;
                        at += len;
                    }
                    _ => return None, // fragments and the rest: the stack decides
                }
                if at > 40 + payload {
                    return None;
                }
            }
            Some(Transport {
                at: ETH_LEN + at,
                len: 40 + payload - at,
                protocol: next,
                pseudo: sum(ip.get(8..40)?) + u64::from(next),
                ipv6: true,
            })
        }
        _ => None,
    }
}

/// Whether a received frame may go to a stack that does not verify TCP
/// and UDP checksums: true if the host vouches for it (`NEEDS_CSUM`,
/// `DATA_VALID`), if it is neither TCP nor UDP (the stack checks the rest),
/// or if its checksum is right. False means drop it.
pub fn checksum_ok(header: &Header, frame: &[u8]) -> bool {
    if header.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return true;
    }
    let Some(t) = transport(frame) else {
        return true;
    };
    let Some(segment) = frame.get(t.at..t.at + t.len) else {
        return false;
    };
    let minimum = if t.protocol == PROTO_TCP { 20 } else { 8 };
    if segment.len() < minimum {
        return false;
    }
    if t.protocol == PROTO_UDP && !t.ipv6 && segment[6..8] == [0, 0] {
        return true; // IPv4 UDP without a checksum
    }
    fold(t.pseudo + t.len as u64 + sum(segment)) == 0xffff
}

/// Puts the partial checksum (pseudo-header sum) of a TCP or UDP frame in
/// place and returns the header asking the host to complete it; frames of
/// other kinds get an empty header and must already be complete.
pub fn fill_partial_checksum(frame: &mut [u8]) -> Header {
    let Some(t) = transport(frame) else {
        return Header::default();
    };
    let offset = if t.protocol == PROTO_TCP { 16 } else { 6 };
    let at = t.at + offset;
    if t.len < offset + 2 || at + 2 > frame.len() {
        return Header::default();
    }
    let partial = fold(t.pseudo + t.len as u64);
    frame[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    Header {
        flags: F_NEEDS_CSUM,
        csum_start: t.at as u16,
        csum_offset: offset as u16,
        ..Header::default()
    }
}

/// GSO type bit: the segments carry ECN (CWR set on the first only).
const GSO_ECN: u8 = 0x80;
const GSO_TCPV6: u8 = 4;
const TCP_CWR: u8 = 0x80;

/// Turns a frame received behind `header` into what a stack without
/// offloads takes: its partial checksum completed, and a large TCP segment
/// (GSO) cut into segments of `gso_size` payload bytes, each with its own
/// IP length, IPv4 ID, sequence number and checksums. Each resulting frame
/// goes to `out`. Returns false, having sent nothing, for a frame the
/// header does not describe truthfully (drop it).
///
/// `scratch` holds each segment while it is built (it grows to one segment).
pub fn split_received(
    header: &Header,
    frame: &mut [u8],
    scratch: &mut Vec<u8>,
    out: &mut dyn FnMut(&[u8]),
) -> bool {
    match header.gso_type & !GSO_ECN {
        GSO_NONE => {
            if header.flags & F_NEEDS_CSUM != 0 {
                let start = usize::from(header.csum_start);
                let at = start + usize::from(header.csum_offset);
                if at + 2 > frame.len() {
                    return false;
                }
                // The field holds the pseudo-header sum: summing over it
                // completes the checksum.
                let mut checksum = !fold(sum(&frame[start..]));
                if checksum == 0 && header.csum_offset == 6 {
                    checksum = 0xffff; // UDP sends a zero sum as all ones
                }
                frame[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
            }
            out(frame);
            true
        }
        GSO_TCPV4 | GSO_TCPV6 => split_tcp(header, frame, scratch, out),
        _ => false, // UDP fragmentation offload is never turned on
    }
}

fn split_tcp(
    header: &Header,
    frame: &[u8],
    segment: &mut Vec<u8>,
    out: &mut dyn FnMut(&[u8]),
) -> bool {
    let Some(t) = transport(frame) else {
        return false;
    };
    let mss = usize::from(header.gso_size);
    let Some(&offset_byte) = frame.get(t.at + 12) else {
        return false;
    };
    let header_end = t.at + usize::from(offset_byte >> 4) * 4;
    let end = t.at + t.len;
    if t.protocol != PROTO_TCP || mss == 0 || header_end < t.at + 20 || header_end > end {
        return false;
    }
    let headers = &frame[..header_end];
    let payload = &frame[header_end..end];
    let seq = u32::from_be_bytes([
        frame[t.at + 4],
        frame[t.at + 5],
        frame[t.at + 6],
        frame[t.at + 7],
    ]);
    let flags = frame[t.at + 13];
    let ip_id = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]);
    let chunks = payload.len().div_ceil(mss).max(1);
    for i in 0..chunks {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        segment.clear();
        segment.extend_from_slice(headers);
        segment.extend_from_slice(chunk);
        let tcp_len = segment.len() - t.at;
        let ip = ETH_LEN;
        if t.ipv6 {
            let payload_len = (segment.len() - ip - 40) as u16;
            segment[ip + 4..ip + 6].copy_from_slice(&payload_len.to_be_bytes());
        } else {
            let total = (segment.len() - ip) as u16;
            segment[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            segment[ip + 4..ip + 6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
            segment[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let ip_header = usize::from(segment[ip] & 0x0f) * 4;
            let checksum = !fold(sum(&segment[ip..ip + ip_header]));
            segment[ip + 10..ip + 12].copy_from_slice(&checksum.to_be_bytes());
        }
        let tcp = t.at;
        let seq_i = seq.wrapping_add((i * mss) as u32);
        segment[tcp + 4..tcp + 8].copy_from_slice(&seq_i.to_be_bytes());
        let mut f = flags;
        if i + 1 < chunks {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        segment[tcp + 13] = f;
        segment[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
        let checksum = !fold(t.pseudo + tcp_len as u64 + sum(&segment[tcp..]));
        segment[tcp + 16..tcp + 18].copy_from_slice(&checksum.to_be_bytes());
        out(segment);
    }
    true
}

/// A TCP/IPv4 data segment that may join a batch.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Offset of the payload in the frame.
    payload_at: usize,
    payload_len: usize,
    seq: u32,
    flags: u8,
}

/// The frame as a segment that may be coalesced: TCP over IPv4 without IP
/// options, a frame exactly as long as its IP packet, flags ACK (or ACK and
/// PSH) only, with payload.
fn segment(frame: &[u8]) -> Option<Segment> {
    let t = transport(frame)?;
    if t.ipv6 || t.protocol != PROTO_TCP || t.at != ETH_LEN + 20 || t.at + t.len != frame.len() {
        return None;
    }
    let tcp = frame.get(t.at..)?;
    let header_len = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    if header_len < 20 || header_len >= t.len {
        return None;
    }
    if flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    Some(Segment {
        payload_at: t.at + header_len,
        payload_len: t.len - header_len,
        seq: u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
        flags,
    })
}

/// Joins consecutive TCP segments of a connection into one frame for the
/// host to segment (see the module docs), and fills in partial checksums.
///
/// ```
/// use lamina_net::offload::{Coalescer, HEADER_LEN};
/// let mut sent = Vec::new();
/// let mut coalescer = Coalescer::new();
/// // An ARP request is not TCP: it goes out at once, behind a header.
/// let arp = [0u8; 42];
/// coalescer.push(&arp, &mut |frame| sent.push(frame.len()));
/// coalescer.flush(&mut |frame| sent.push(frame.len()));
/// assert_eq!(sent, [HEADER_LEN + 42]);
/// ```
pub struct Coalescer {
    /// Header room (`header_len` bytes), then the frame being built.
    buf: Vec<u8>,
    /// Bytes of header ahead of each frame sent: the [`Header`], then
    /// zeros.
    header_len: usize,
    /// The open batch: (payload bytes per segment, next sequence number,
    /// segments in it); `None` when `buf` holds nothing.
    open: Option<(usize, u32, usize)>,
    /// Frames sent with more than one segment, and the segments in them.
    pub stats: (u64, u64),
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

/// The largest IP packet: a batch stops short of it.
const MAX_IP_PACKET: usize = 65535;

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Self {
        Coalescer::with_capacity(0)
    }

    /// An empty coalescer that allocates `bytes` now (a batch needs up to
    /// [`HEADER_LEN`] + 14 + 65535): it then never allocates again.
    pub fn with_capacity(bytes: usize) -> Self {
        Coalescer::with_header(HEADER_LEN, bytes)
    }

    /// An empty coalescer whose frames go out behind `header_len` bytes
    /// (at least [`HEADER_LEN`]): the [`Header`], then zeros — with
    /// [`VIRTIO1_HEADER_LEN`], a virtio 1.x device's header with
    /// `num_buffers` 0. It allocates `bytes` now (a batch needs up to
    /// `header_len` + 14 + 65535).
    pub fn with_header(header_len: usize, bytes: usize) -> Self {
        Coalescer {
            buf: Vec::with_capacity(bytes),
            header_len: header_len.max(HEADER_LEN),
            open: None,
            stats: (0, 0),
        }
    }

    /// Takes one frame from the stack (checksums not filled in). `send` is
    /// called with each frame, header first, that is ready to go: maybe
    /// none (this one joined a batch), maybe two (the batch it could not
    /// join, then itself).
    pub fn push(&mut self, frame: &[u8], send: &mut dyn FnMut(&[u8])) {
        let seg = segment(frame);
        if let (Some(seg), Some((gso_size, next_seq, count))) = (seg, self.open) {
            if self.joins(frame, &seg, gso_size, next_seq) {
                self.buf.extend_from_slice(&frame[seg.payload_at..]);
                let last = seg.flags & TCP_PSH != 0 || seg.payload_len < gso_size;
                if last {
                    let tcp_flags = self.header_len + ETH_LEN + 20 + 13;
                    self.buf[tcp_flags] |= seg.flags & TCP_PSH;
                }
                let next = next_seq.wrapping_add(seg.payload_len as u32);
                self.open = Some((gso_size, next, count + 1));
                if last {
                    self.flush(send);
                }
                return;
            }
        }
        self.flush(send);
        self.buf.clear();
        self.buf.resize(self.header_len, 0);
        self.buf.extend_from_slice(frame);
        match seg {
            Some(seg) if seg.flags & TCP_PSH == 0 => {
                let next = seg.seq.wrapping_add(seg.payload_len as u32);
                self.open = Some((seg.payload_len, next, 1));
            }
            _ => {
                self.open = Some((0, 0, 1));
                self.flush(send);
            }
        }
    }

    /// Whether segment `seg` (in `frame`) continues the open batch.
    fn joins(&self, frame: &[u8], seg: &Segment, gso_size: usize, next_seq: u32) -> bool {
        let batch = &self.buf[self.header_len..];
        let (ip, tcp) = (ETH_LEN, ETH_LEN + 20);
        let same = |range: core::ops::Range<usize>| batch.get(range.clone()) == frame.get(range);
        gso_size != 0
            && seg.seq == next_seq
            && seg.payload_len <= gso_size
            && batch.len() + seg.payload_len <= ETH_LEN + MAX_IP_PACKET
            && seg.payload_at == tcp + usize::from(batch[tcp + 12] >> 4) * 4
            && same(0..ip + 2) // Ethernet header, IP version, length, TOS
            && same(ip + 6..ip + 10) // fragment flags, TTL, protocol
            && same(ip + 12..ip + 20) // addresses
            && same(tcp..tcp + 4) // ports
            && same(tcp + 8..tcp + 13) // acknowledgment, data offset
            && batch[tcp + 13] & !TCP_PSH == seg.flags & !TCP_PSH
            && same(tcp + 14..tcp + 16) // window
            && same(tcp + 18..seg.payload_at) // urgent pointer, options
    }

    /// Sends the open batch, if any: one frame, with a segmentation request
    /// when it holds more than one segment.
    pub fn flush(&mut self, send: &mut dyn FnMut(&[u8])) {
        let Some((gso_size, _, count)) = self.open.take() else {
            return;
        };
        let frame = &mut self.buf[self.header_len..];
        let mut header = Header::default();
        if count > 1 {
            // The IP header now covers the whole batch.
            let ip = ETH_LEN;
            let total = (frame.len() - ETH_LEN) as u16;
            frame[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let checksum = !fold(sum(&frame[ip..ip + 20]));
            frame[ip + 10..ip + 12].copy_from_slice(&checksum.to_be_bytes());
            let tcp_header = usize::from(frame[ip + 20 + 12] >> 4) * 4;
            header.gso_type = GSO_TCPV4;
            header.gso_size = gso_size as u16;
            header.hdr_len = (ETH_LEN + 20 + tcp_header) as u16;
            self.stats.0 += 1;
            self.stats.1 += count as u64;
        } else {
            header.gso_type = GSO_NONE;
        }
        let partial = fill_partial_checksum(frame);
        header.flags = partial.flags;
        header.csum_start = partial.csum_start;
        header.csum_offset = partial.csum_offset;
        // The bytes after the header (`num_buffers`) stay zero.
        self.buf[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        send(&self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// An Ethernet + IPv4 + TCP frame with `payload`, checksums complete.
    fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (40 + payload.len()) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        let ip_sum = !fold(sum(&f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        f[34..36].copy_from_slice(&7u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[42..46].copy_from_slice(&99u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f[48..50].copy_from_slice(&1024u16.to_be_bytes());
        f.extend_from_slice(payload);
        let t = transport(&f).unwrap();
        let tcp_sum = !fold(t.pseudo + t.len as u64 + sum(&f[34..]));
        f[50..52].copy_from_slice(&tcp_sum.to_be_bytes());
        f
    }

    /// Completes a frame's partial checksum the way a host would.
    fn complete(header: &Header, frame: &mut [u8]) {
        let start = usize::from(header.csum_start);
        let at = start + usize::from(header.csum_offset);
        let value = !fold(sum(&frame[start..]));
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[test]
    fn sum_matches_a_plain_word_sum() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut plain = 0u64;
            for pair in data.chunks(2) {
                plain += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
            assert_eq!(fold(sum(&data)), fold(plain), "length {len}");
        }
    }

    #[test]
    fn received_checksums_are_verified_unless_the_host_vouches() {
        let good = tcp4(1, TCP_ACK, b"hello");
        let plain = Header::default();
        assert!(checksum_ok(&plain, &good));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!checksum_ok(&plain, &bad));
        for flags in [F_NEEDS_CSUM, F_DATA_VALID] {
            let trusted = Header { flags, ..plain };
            assert!(checksum_ok(&trusted, &bad));
        }
        // Truncated below what the IP header says: not ours to judge.
        assert!(checksum_ok(&plain, &bad[..bad.len() - 1]));
        // Every truncation and every single-byte corruption: no panic.
        for len in 0..good.len() {
            let _ = checksum_ok(&plain, &good[..len]);
        }
        for i in 0..good.len() {
            let mut f = good.clone();
            f[i] ^= 0xff;
            let _ = checksum_ok(&plain, &f);
        }
    }

    #[test]
    fn partial_checksums_complete_to_the_right_value() {
        let good = tcp4(7, TCP_ACK | TCP_PSH, b"some payload bytes");
        let mut frame = good.clone();
        frame[50..52].copy_from_slice(&[0, 0]); // as the stack leaves it
        let header = fill_partial_checksum(&mut frame);
        assert_eq!(header.flags, F_NEEDS_CSUM);
        assert_eq!((header.csum_start, header.csum_offset), (34, 16));
        let mut completed = frame.clone();
        complete(&header, &mut completed);
        assert_eq!(completed, good);
        // What a receiver without offload gets from the host: the same.
        let mut split = Vec::new();
        assert!(split_received(
            &header,
            &mut frame,
            &mut Vec::new(),
            &mut |f| split.push(f.to_vec())
        ));
        assert_eq!(split, [good]);
        // Not TCP or UDP: left alone, no request.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(fill_partial_checksum(&mut arp), Header::default());
    }

    #[test]
    fn consecutive_segments_become_one_gso_frame() {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut c = Coalescer::new();
        let payload = [0x5au8; 100];
        for i in 0..5u32 {
            let flags = if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK };
            let len = if i == 4 { 60 } else { 100 };
            c.push(&tcp4(1000 + i * 100, flags, &payload[..len]), &mut |f| {
                sent.push(f.to_vec())
            });
        }
        // The short PSH segment closed the batch: sent without a flush.
        assert_eq!(sent.len(), 1);
        let header = Header::read(&sent[0]).unwrap();
        assert_eq!(header.gso_type, GSO_TCPV4);
        assert_eq!((header.gso_size, header.hdr_len), (100, 54));
        let mut frame = sent[0][HEADER_LEN..].to_vec();
        assert_eq!(frame.len(), 54 + 460);
        complete(&header, &mut frame);
        // The result is the one big segment a sender would have made.
        let mut big = vec![0x5au8; 460];
        big.truncate(460);
        let expected = tcp4(1000, TCP_ACK | TCP_PSH, &big);
        assert_eq!(frame, expected);
        assert_eq!(c.stats, (1, 5));
    }

    #[test]
    fn a_large_segment_splits_into_the_segments_a_sender_would_have_made() {
        // Coalesce five segments, then split the result: the same frames.
        let payload = [0x33u8; 500];
        let originals: Vec<Vec<u8>> = (0..5u32)
            .map(|i| {
                let flags = if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                let mut f = tcp4(5000 + i * 100, flags, &payload[..100]);
                // Consecutive IP IDs, as a sender's segmentation makes them.
                f[18..20].copy_from_slice(&(1 + i as u16).to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let ip_sum = !fold(sum(&f[14..34]));
                f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
                f
            })
            .collect();
        let mut big = Vec::new();
        let mut c = Coalescer::new();
        for f in &originals {
            c.push(f, &mut |f| big.push(f.to_vec()));
        }
        c.flush(&mut |f| big.push(f.to_vec()));
        assert_eq!(big.len(), 1);
        let header = Header::read(&big[0]).unwrap();
        let mut frame = big[0][HEADER_LEN..].to_vec();
        let mut split = Vec::new();
        assert!(split_received(
            &header,
            &mut frame,
            &mut Vec::new(),
            &mut |f| split.push(f.to_vec())
        ));
        assert_eq!(split, originals);
        // Lies in the header or a truncated frame: dropped, no panic.
        for len in 0..frame.len() {
            let mut f = big[0][HEADER_LEN..HEADER_LEN + len].to_vec();
            let _ = split_received(&header, &mut f, &mut Vec::new(), &mut |_| {});
        }
        let lies = [
            Header {
                gso_size: 0,
                ..header
            },
            Header {
                gso_type: 3,
                ..header
            }, // UDP fragmentation: never on
            Header {
                gso_type: GSO_NONE,
                csum_start: 60000,
                ..header
            },
        ];
        for lie in lies {
            let refused = !split_received(&lie, &mut frame.clone(), &mut Vec::new(), &mut |_| {});
            assert!(refused, "{lie:?}");
        }
    }

    /// Random bytes and headers, and mutations of real segments: nothing
    /// panics, whatever the host or the stack hands over.
    #[test]
    fn fuzz_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            tcp4(1, TCP_ACK, &[7; 300]),
            tcp4(2, TCP_ACK | TCP_PSH, &[]),
            tcp4(3, TCP_SYN, &[]),
        ];
        let mut coalescer = Coalescer::new();
        let mut scratch = Vec::new();
        for round in 0..20_000 {
            let frame = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let mut f = seeds[round % 3].clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % f.len();
                    f[at] = next() as u8;
                }
                f.truncate(f.len() - (next() % 8) as usize);
                f
            };
            let raw: [u8; HEADER_LEN] = core::array::from_fn(|_| next() as u8);
            let header = Header::read(&raw).unwrap();
            let _ = checksum_ok(&header, &frame);
            let _ = split_received(&header, &mut frame.clone(), &mut scratch, &mut |_| {});
            let _ = fill_partial_checksum(&mut frame.clone());
            coalescer.push(&frame, &mut |_| {});
        }
        coalescer.flush(&mut |_| {});
    }

    #[test]
    fn segments_that_do_not_continue_the_batch_start_another() {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut c = Coalescer::new();
        let mut push = |c: &mut Coalescer, f: Vec<u8>| c.push(&f, &mut |f| sent.push(f.to_vec()));
        push(&mut c, tcp4(0, TCP_ACK, &[1; 50]));
        push(&mut c, tcp4(100, TCP_ACK, &[1; 50])); // a gap
        push(&mut c, tcp4(150, TCP_ACK | TCP_FIN, &[1; 50])); // FIN never joins
        push(&mut c, tcp4(200, TCP_ACK, &[])); // a pure ACK never joins
        c.flush(&mut |f| sent.push(f.to_vec()));
        assert_eq!(sent.len(), 4);
        for f in &sent {
            let header = Header::read(f).unwrap();
            assert_eq!(header.gso_type, GSO_NONE);
            assert_eq!(header.flags, F_NEEDS_CSUM);
        }
        assert_eq!(c.stats, (0, 0));
    }

    #[test]
    fn a_batch_stops_short_of_the_largest_ip_packet() {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut c = Coalescer::new();
        let payload = [0u8; 1448];
        for i in 0..100u32 {
            c.push(&tcp4(i * 1448, TCP_ACK, &payload), &mut |f| {
                sent.push(f.to_vec())
            });
        }
        c.flush(&mut |f| sent.push(f.to_vec()));
        let total: usize = sent.iter().map(|f| f.len() - HEADER_LEN - 54).sum();
        assert_eq!(total, 100 * 1448);
        for f in &sent {
            assert!(f.len() - HEADER_LEN - ETH_LEN <= MAX_IP_PACKET);
        }
        assert_eq!(sent.len(), 3); // 45 + 45 + 10 segments
    }

    #[test]
    fn a_virtio_1_header_carries_num_buffers_zero() {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut c = Coalescer::with_header(VIRTIO1_HEADER_LEN, 0);
        let payload = [0x77u8; 100];
        for i in 0..3u32 {
            c.push(&tcp4(10 + i * 100, TCP_ACK, &payload), &mut |f| {
                sent.push(f.to_vec())
            });
        }
        // Not a continuation: the batch goes, then this one alone.
        c.push(&tcp4(9999, TCP_ACK | TCP_PSH, &payload[..10]), &mut |f| {
            sent.push(f.to_vec())
        });
        c.flush(&mut |f| sent.push(f.to_vec()));
        assert_eq!(sent.len(), 2);
        for f in &sent {
            assert_eq!(f[HEADER_LEN..VIRTIO1_HEADER_LEN], [0, 0]);
        }
        let header = Header::read(&sent[0]).unwrap();
        assert_eq!(header.gso_type, GSO_TCPV4);
        assert_eq!((header.gso_size, header.hdr_len), (100, 54));
        assert_eq!(header.csum_start, 34);
        let mut frame = sent[0][VIRTIO1_HEADER_LEN..].to_vec();
        complete(&header, &mut frame);
        assert_eq!(frame, tcp4(10, TCP_ACK, &[0x77; 300]));
        let header = Header::read(&sent[1]).unwrap();
        assert_eq!((header.gso_type, header.flags), (GSO_NONE, F_NEEDS_CSUM));
        let mut frame = sent[1][VIRTIO1_HEADER_LEN..].to_vec();
        complete(&header, &mut frame);
        assert_eq!(frame, tcp4(9999, TCP_ACK | TCP_PSH, &payload[..10]));
        assert_eq!(c.stats, (1, 3));
    }
}
