//! Checksum and segmentation offload through a virtio-net header.
//!
//! A host that puts a [`vnet`](crate::vnet) header ahead of each frame (a
//! Linux tap opened with `IFF_VNET_HDR`, a virtio-net device) can take work
//! off the guest's stack:
//!
//! - **Receive.** Frames the host built itself arrive with a partial
//!   checksum (`NEEDS_CSUM`) or one it already verified (`DATA_VALID`), and
//!   TCP segments of up to 64 KiB that it never cut to the MTU. Only frames
//!   from elsewhere (flags 0) need their checksum verified: [`checksum_ok`]
//!   does that, once. [`split_received`] turns such frames into what a stack
//!   without offloads takes (the tenders do it for hvt guests).
//! - **Transmit.** [`Coalescer`] fills in the partial checksum the host
//!   completes, and joins the consecutive MTU-sized TCP segments the stack
//!   emits in one round into one frame with a segmentation (GSO) request:
//!   one write of up to 64 KiB instead of one per 1.5 KiB, which the host
//!   delivers locally as it is or cuts up for the wire.
//!
//! Every input may be hostile (a guest's frames in the tender, a host's in
//! the guest): frames are read through [`ip::Frame`](crate::ip::Frame) and
//! headers through [`vnet::Repr`](crate::vnet::Repr), and what does not add
//! up is refused, never indexed.

use crate::checksum;
use crate::ip::field::{ethernet, ipv4, tcp};
use crate::ip::{tcp_flags, Frame, FrameError, Protocol};
use crate::vnet::{self, flags, gso, Repr, HEADER_LEN};
use alloc::vec::Vec;

/// The largest IP packet: a batch stops short of it.
pub const MAX_IP_PACKET: usize = 65535;

/// Whether a received frame may go to a stack that does not verify TCP and
/// UDP checksums: true if the host vouches for it (`NEEDS_CSUM`,
/// `DATA_VALID`), if it is not TCP or UDP over IP (the stack checks the
/// rest), or if its checksum is right. False means drop it.
pub fn checksum_ok(header: &Repr, frame: &[u8]) -> bool {
    if header.checksum_vouched() {
        return true;
    }
    match Frame::new_checked(frame) {
        Ok(frame) => frame.transport_checksum_ok(),
        Err(FrameError::Unrecognized) => true,
        Err(FrameError::BadTransportHeader) => false,
    }
}

/// Puts the partial checksum (pseudo-header sum) of a TCP or UDP frame in
/// place and returns the header asking the host to complete it; frames of
/// other kinds get an empty header and must already be complete.
pub fn fill_partial_checksum(frame: &mut [u8]) -> Repr {
    let Ok(mut view) = Frame::new_checked(frame) else {
        return Repr::default();
    };
    view.fill_partial_checksum();
    Repr {
        flags: flags::NEEDS_CSUM,
        csum_start: view.transport_offset() as u16,
        csum_offset: view.protocol().checksum_offset() as u16,
        ..Repr::default()
    }
}

/// Completes the partial checksum that a `NEEDS_CSUM` header describes:
/// the field at `csum_start + csum_offset` holds the pseudo-header's sum,
/// and summing from `csum_start` over it gives the checksum. Returns false,
/// changing nothing, when the field lies outside `frame`.
pub fn complete_checksum(header: &Repr, frame: &mut [u8]) -> bool {
    let start = usize::from(header.csum_start);
    let at = start + usize::from(header.csum_offset);
    if at + 2 > frame.len() {
        return false;
    }
    let mut value = checksum::finish(checksum::sum(&frame[start..]));
    if value == 0 && usize::from(header.csum_offset) == Protocol::Udp.checksum_offset() {
        value = 0xffff; // UDP sends a zero sum as all ones
    }
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
    true
}

/// Turns a frame received behind `header` into what a stack without
/// offloads takes: its partial checksum completed, and a large TCP segment
/// (GSO) cut into segments of `gso_size` payload bytes, each with its own
/// IP length, IPv4 identification, sequence number and checksums. Each
/// resulting frame goes to `out`. Returns false, having sent nothing, for a
/// frame the header does not describe truthfully (drop it).
///
/// `scratch` holds each segment while it is built (it grows to one segment).
pub fn split_received(
    header: &Repr,
    frame: &mut [u8],
    scratch: &mut Vec<u8>,
    out: &mut dyn FnMut(&[u8]),
) -> bool {
    match header.gso_type & !gso::ECN {
        gso::NONE => {
            if header.flags & flags::NEEDS_CSUM != 0 && !complete_checksum(header, frame) {
                return false;
            }
            out(frame);
            true
        }
        gso::TCPV4 | gso::TCPV6 => split_tcp(header, frame, scratch, out),
        _ => false, // UDP fragmentation offload is never turned on
    }
}

/// Cuts a large TCP segment into segments of `gso_size` payload bytes.
fn split_tcp(
    header: &Repr,
    frame: &[u8],
    segment: &mut Vec<u8>,
    out: &mut dyn FnMut(&[u8]),
) -> bool {
    let Ok(large) = Frame::new_checked(frame) else {
        return false;
    };
    let mss = usize::from(header.gso_size);
    if large.protocol() != Protocol::Tcp || mss == 0 {
        return false;
    }
    let headers = &frame[..large.payload_offset()];
    let payload = large.payload();
    let (seq, flags, ident) = (large.tcp_seq(), large.tcp_flags(), large.ipv4_ident());
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        segment.clear();
        segment.extend_from_slice(headers);
        segment.extend_from_slice(chunk);
        // The same headers with less payload: always a frame again.
        let Ok(mut cut) = Frame::fit_to_buffer(&mut segment[..]) else {
            return false;
        };
        cut.set_ipv4_ident(ident.wrapping_add(i as u16));
        cut.fill_ipv4_checksum();
        cut.set_tcp_seq(seq.wrapping_add((i * mss) as u32));
        let mut f = flags;
        if i + 1 < count {
            f &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i > 0 {
            f &= !tcp_flags::CWR;
        }
        cut.set_tcp_flags(f);
        cut.fill_transport_checksum();
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
    let view = Frame::new_checked(frame).ok()?;
    if view.is_ipv6()
        || view.protocol() != Protocol::Tcp
        || view.ip_header_len() != ipv4::MIN_HEADER_LEN
        || view.packet_end() != frame.len()
        || view.payload().is_empty()
    {
        return None;
    }
    let flags = view.tcp_flags();
    let refused = tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST | tcp_flags::URG;
    if flags & refused != 0 || flags & tcp_flags::ACK == 0 {
        return None;
    }
    Some(Segment {
        payload_at: view.payload_offset(),
        payload_len: view.payload().len(),
        seq: view.tcp_seq(),
        flags,
    })
}

/// Offset of the IPv4 header in a frame.
const IP: usize = ethernet::HEADER_LEN;
/// Offset of the TCP header in a segment (IPv4 without options).
const TCP: usize = IP + ipv4::MIN_HEADER_LEN;

/// Joins consecutive TCP segments of a connection into one frame for the
/// host to segment (see the module docs), and fills in partial checksums.
///
/// ```
/// use lamina_wire::offload::Coalescer;
/// use lamina_wire::vnet::HEADER_LEN;
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
    /// Bytes of header ahead of each frame sent: the [`vnet::Header`], then
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
    /// (at least [`HEADER_LEN`]): the header, then zeros (with
    /// [`vnet::VIRTIO1_HEADER_LEN`], a virtio 1.x device's header with
    /// `num_buffers` 0). It allocates `bytes` now (a batch needs up to
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
                let last = seg.flags & tcp_flags::PSH != 0 || seg.payload_len < gso_size;
                if last {
                    // The batch ends here: it pushes if its last segment did.
                    let at = self.header_len + TCP + tcp::FLAGS;
                    if let Some(flags) = self.buf.get_mut(at) {
                        *flags |= seg.flags & tcp_flags::PSH;
                    }
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
            Some(seg) if seg.flags & tcp_flags::PSH == 0 => {
                let next = seg.seq.wrapping_add(seg.payload_len as u32);
                self.open = Some((seg.payload_len, next, 1));
            }
            _ => {
                self.open = Some((0, 0, 1));
                self.flush(send);
            }
        }
    }

    /// Whether segment `seg` (in `frame`) continues the open batch: same
    /// connection, same headers but for the length, identification,
    /// checksums and PSH, the next sequence number, no larger than the
    /// first, and room left under [`MAX_IP_PACKET`].
    fn joins(&self, frame: &[u8], seg: &Segment, gso_size: usize, next_seq: u32) -> bool {
        if gso_size == 0 || seg.seq != next_seq || seg.payload_len > gso_size {
            return false;
        }
        let batch = &self.buf[self.header_len..];
        // The batch began with a segment; its IP length still covers only
        // that one, and the payload appended since reads as padding.
        let Ok(first) = Frame::new_checked(batch) else {
            return false;
        };
        let same = |range: core::ops::Range<usize>| batch.get(range.clone()) == frame.get(range);
        batch.len() + seg.payload_len <= ethernet::HEADER_LEN + MAX_IP_PACKET
            && seg.payload_at == first.payload_offset()
            && same(0..IP + ipv4::TOTAL_LEN.start) // Ethernet, IP version, TOS
            && same(IP + ipv4::FLAGS_FRAGMENT.start..IP + ipv4::CHECKSUM.start) // fragment, TTL, protocol
            && same(IP + ipv4::ADDRESSES.start..IP + ipv4::ADDRESSES.end)
            && same(TCP + tcp::PORTS.start..TCP + tcp::PORTS.end)
            && same(TCP + tcp::ACK.start..TCP + tcp::FLAGS) // acknowledgment, data offset
            && first.tcp_flags() & !tcp_flags::PSH == seg.flags & !tcp_flags::PSH
            && same(TCP + tcp::WINDOW.start..TCP + tcp::WINDOW.end)
            && same(TCP + tcp::URGENT.start..seg.payload_at) // urgent pointer, options
    }

    /// Sends the open batch, if any: one frame, with a segmentation request
    /// when it holds more than one segment.
    pub fn flush(&mut self, send: &mut dyn FnMut(&[u8])) {
        let Some((gso_size, _, count)) = self.open.take() else {
            return;
        };
        let (header_bytes, frame) = self.buf.split_at_mut(self.header_len);
        let mut header = Repr::default();
        if count > 1 {
            // The IP header now covers the whole batch.
            if let Ok(mut batch) = Frame::fit_to_buffer(&mut *frame) {
                batch.fill_ipv4_checksum();
                header.gso_type = gso::TCPV4;
                header.gso_size = gso_size as u16;
                header.hdr_len = batch.payload_offset() as u16;
                self.stats.0 += 1;
                self.stats.1 += count as u64;
            }
        }
        let partial = fill_partial_checksum(frame);
        header.flags = partial.flags;
        header.csum_start = partial.csum_start;
        header.csum_offset = partial.csum_offset;
        // The bytes after the header (`num_buffers`) stay zero.
        if let Ok(mut view) = vnet::Header::new_checked(header_bytes) {
            header.emit(&mut view);
        }
        send(&self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::tests::tcp4;
    use crate::vnet::VIRTIO1_HEADER_LEN;
    use alloc::vec;
    use tcp_flags::{ACK as TCP_ACK, FIN as TCP_FIN, PSH as TCP_PSH, SYN as TCP_SYN};

    /// Completes a frame's partial checksum the way a host would.
    fn complete(header: &Repr, frame: &mut [u8]) {
        assert!(complete_checksum(header, frame));
    }

    #[test]
    fn received_checksums_are_verified_unless_the_host_vouches() {
        let good = tcp4(1, TCP_ACK, b"hello");
        let plain = Repr::default();
        assert!(checksum_ok(&plain, &good));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!checksum_ok(&plain, &bad));
        for flags in [flags::NEEDS_CSUM, flags::DATA_VALID] {
            let trusted = Repr { flags, ..plain };
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
        assert_eq!(header.flags, flags::NEEDS_CSUM);
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
        assert_eq!(fill_partial_checksum(&mut arp), Repr::default());
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
        let header = Repr::read(&sent[0]).unwrap();
        assert_eq!(header.gso_type, gso::TCPV4);
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
                let ip_sum = checksum::finish(checksum::sum(&f[14..34]));
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
        let header = Repr::read(&big[0]).unwrap();
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
            Repr {
                gso_size: 0,
                ..header
            },
            Repr {
                gso_type: 3,
                ..header
            }, // UDP fragmentation: never on
            Repr {
                gso_type: gso::NONE,
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
            let header = Repr::read(&raw).unwrap();
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
            let header = Repr::read(f).unwrap();
            assert_eq!(header.gso_type, gso::NONE);
            assert_eq!(header.flags, flags::NEEDS_CSUM);
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
            assert!(f.len() - HEADER_LEN - ethernet::HEADER_LEN <= MAX_IP_PACKET);
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
        let header = Repr::read(&sent[0]).unwrap();
        assert_eq!(header.gso_type, gso::TCPV4);
        assert_eq!((header.gso_size, header.hdr_len), (100, 54));
        assert_eq!(header.csum_start, 34);
        let mut frame = sent[0][VIRTIO1_HEADER_LEN..].to_vec();
        complete(&header, &mut frame);
        assert_eq!(frame, tcp4(10, TCP_ACK, &[0x77; 300]));
        let header = Repr::read(&sent[1]).unwrap();
        assert_eq!(
            (header.gso_type, header.flags),
            (gso::NONE, flags::NEEDS_CSUM)
        );
        let mut frame = sent[1][VIRTIO1_HEADER_LEN..].to_vec();
        complete(&header, &mut frame);
        assert_eq!(frame, tcp4(9999, TCP_ACK | TCP_PSH, &payload[..10]));
        assert_eq!(c.stats, (1, 3));
    }
}
