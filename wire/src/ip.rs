//! An Ethernet frame that carries a TCP or UDP segment over IPv4 (not
//! fragmented) or IPv6, as far as offloads need to see it: where the
//! transport header starts and ends, its pseudo-header, and the few TCP and
//! IP fields that segmentation rewrites.
//!
//! [`Frame::new_checked`] walks the headers once (IPv4 options, IPv6
//! extension headers) and checks every length against the buffer; then no
//! accessor can panic. Frames it does not recognise are left to the stack,
//! which judges them on its own.

use crate::checksum;

/// Byte ranges of the fields read or written here, per header, from the
/// start of that header.
pub mod field {
    /// A field of more than one byte.
    pub type Field = core::ops::Range<usize>;

    /// Ethernet II.
    pub mod ethernet {
        use super::Field;
        /// The EtherType.
        pub const ETHERTYPE: Field = 12..14;
        /// Length of the header: the IP header follows.
        pub const HEADER_LEN: usize = 14;
    }

    /// IPv4 (RFC 791).
    pub mod ipv4 {
        use super::Field;
        /// Version (high nibble) and header length in words (low nibble).
        pub const VER_IHL: usize = 0;
        /// Total length: header and payload.
        pub const TOTAL_LEN: Field = 2..4;
        /// Identification.
        pub const IDENT: Field = 4..6;
        /// Flags and fragment offset.
        pub const FLAGS_FRAGMENT: Field = 6..8;
        /// The payload's protocol.
        pub const PROTOCOL: usize = 9;
        /// Header checksum.
        pub const CHECKSUM: Field = 10..12;
        /// Source and destination addresses (the pseudo-header's).
        pub const ADDRESSES: Field = 12..20;
        /// Length of a header without options.
        pub const MIN_HEADER_LEN: usize = 20;
    }

    /// IPv6 (RFC 8200).
    pub mod ipv6 {
        use super::Field;
        /// Payload length: extension headers and upper-layer data.
        pub const PAYLOAD_LEN: Field = 4..6;
        /// The first extension header's or the payload's protocol.
        pub const NEXT_HEADER: usize = 6;
        /// Source and destination addresses (the pseudo-header's).
        pub const ADDRESSES: Field = 8..40;
        /// Length of the fixed header.
        pub const HEADER_LEN: usize = 40;
    }

    /// TCP (RFC 9293).
    pub mod tcp {
        use super::Field;
        /// Source and destination ports.
        pub const PORTS: Field = 0..4;
        /// Sequence number.
        pub const SEQ: Field = 4..8;
        /// Acknowledgment number.
        pub const ACK: Field = 8..12;
        /// Header length in words (high nibble).
        pub const DATA_OFFSET: usize = 12;
        /// Control bits.
        pub const FLAGS: usize = 13;
        /// Window.
        pub const WINDOW: Field = 14..16;
        /// Checksum.
        pub const CHECKSUM: Field = 16..18;
        /// Urgent pointer.
        pub const URGENT: Field = 18..20;
        /// Length of a header without options.
        pub const MIN_HEADER_LEN: usize = 20;
    }

    /// UDP (RFC 768).
    pub mod udp {
        use super::Field;
        /// Checksum (0: none, IPv4 only).
        pub const CHECKSUM: Field = 6..8;
        /// Length of the header.
        pub const HEADER_LEN: usize = 8;
    }
}

use field::{ethernet, ipv4, ipv6, tcp, udp};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// TCP control bits.
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
    /// Congestion window reduced (ECN).
    pub const CWR: u8 = 0x80;
}

/// The transport protocol of a [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// Offset of the checksum in the transport header.
    pub fn checksum_offset(self) -> usize {
        match self {
            Protocol::Tcp => tcp::CHECKSUM.start,
            Protocol::Udp => udp::CHECKSUM.start,
        }
    }
}

/// Why [`Frame::new_checked`] refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not TCP or UDP over IPv4 (unfragmented) or IPv6, or an IP header
    /// that the buffer does not hold: the stack decides what it is.
    Unrecognized,
    /// TCP or UDP whose header does not fit in the length the IP header
    /// gives it, or a TCP data offset outside it: no host would send it.
    BadTransportHeader,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::Unrecognized => "not TCP or UDP over IPv4 or IPv6",
            FrameError::BadTransportHeader => "a TCP or UDP header that does not fit",
        })
    }
}

/// Where the headers are, found once by [`Frame::new_checked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    ipv6: bool,
    protocol: Protocol,
    /// Offset of the transport header in the frame.
    transport: usize,
    /// Offset of the transport payload.
    payload: usize,
    /// End of the IP packet (anything after it is Ethernet padding).
    end: usize,
}

/// An Ethernet frame carrying TCP or UDP over IP; see the module docs.
///
/// Setters change only fields that do not move headers (identification,
/// sequence numbers, flags, checksums), so the layout found at construction
/// stays true; lengths change through [`Frame::fit_to_buffer`].
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    layout: Layout,
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn layout(frame: &[u8]) -> Result<Layout, FrameError> {
    use FrameError::Unrecognized;
    let ethertype = be16(frame, ethernet::ETHERTYPE.start).ok_or(Unrecognized)?;
    let ip = frame.get(ethernet::HEADER_LEN..).ok_or(Unrecognized)?;
    let (ipv6, number, header_len, packet_len) = match ethertype {
        ETHERTYPE_IPV4 => {
            let header_len = usize::from(ip.first().ok_or(Unrecognized)? & 0x0f) * 4;
            let total = usize::from(be16(ip, ipv4::TOTAL_LEN.start).ok_or(Unrecognized)?);
            let fragment = be16(ip, ipv4::FLAGS_FRAGMENT.start).ok_or(Unrecognized)? & 0x3fff;
            let protocol = *ip.get(ipv4::PROTOCOL).ok_or(Unrecognized)?;
            if header_len < ipv4::MIN_HEADER_LEN
                || total < header_len
                || total > ip.len()
                || fragment != 0
            {
                return Err(Unrecognized);
            }
            (false, protocol, header_len, total)
        }
        ETHERTYPE_IPV6 => {
            let payload = usize::from(be16(ip, ipv6::PAYLOAD_LEN.start).ok_or(Unrecognized)?);
            let total = ipv6::HEADER_LEN + payload;
            if total > ip.len() {
                return Err(Unrecognized);
            }
            // Walk the extension headers a TCP or UDP packet may carry.
            let mut next = *ip.get(ipv6::NEXT_HEADER).ok_or(Unrecognized)?;
            let mut at = ipv6::HEADER_LEN;
            loop {
                match next {
                    6 | 17 => break,
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 => {
                        let len = (usize::from(*ip.get(at + 1).ok_or(Unrecognized)?) + 1) * 8;
                        next = *ip.get(at).ok_or(Unrecognized)?;
                        at += len;
                    }
                    _ => return Err(Unrecognized), // fragments and the rest
                }
                if at > total {
                    return Err(Unrecognized);
                }
            }
            (true, next, at, total)
        }
        _ => return Err(Unrecognized),
    };
    let protocol = match number {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return Err(Unrecognized),
    };
    let transport = ethernet::HEADER_LEN + header_len;
    let end = ethernet::HEADER_LEN + packet_len;
    let transport_header_len = match protocol {
        Protocol::Udp => udp::HEADER_LEN,
        Protocol::Tcp => match frame.get(transport + tcp::DATA_OFFSET) {
            Some(&offset) if transport + tcp::MIN_HEADER_LEN <= end => usize::from(offset >> 4) * 4,
            _ => return Err(FrameError::BadTransportHeader),
        },
    };
    let payload = transport + transport_header_len;
    let minimum = match protocol {
        Protocol::Tcp => tcp::MIN_HEADER_LEN,
        Protocol::Udp => udp::HEADER_LEN,
    };
    if transport_header_len < minimum || payload > end {
        return Err(FrameError::BadTransportHeader);
    }
    Ok(Layout {
        ipv6,
        protocol,
        transport,
        payload,
        end,
    })
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// The frame in `buffer`, if it is TCP or UDP over IP whose headers the
    /// buffer holds; then no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, FrameError> {
        let layout = layout(buffer.as_ref())?;
        Ok(Frame { buffer, layout })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether the IP header is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.layout.ipv6
    }

    /// TCP or UDP.
    pub fn protocol(&self) -> Protocol {
        self.layout.protocol
    }

    /// Offset of the IP header (after Ethernet).
    pub fn ip_offset(&self) -> usize {
        ethernet::HEADER_LEN
    }

    /// Offset of the TCP or UDP header: after the IP header with its
    /// options or extension headers.
    pub fn transport_offset(&self) -> usize {
        self.layout.transport
    }

    /// Length of the TCP or UDP header (with TCP options).
    pub fn transport_header_len(&self) -> usize {
        self.layout.payload - self.layout.transport
    }

    /// Offset of the TCP or UDP payload.
    pub fn payload_offset(&self) -> usize {
        self.layout.payload
    }

    /// End of the IP packet; bytes after it are Ethernet padding.
    pub fn packet_end(&self) -> usize {
        self.layout.end
    }

    /// The TCP or UDP segment, header and payload.
    pub fn transport(&self) -> &[u8] {
        &self.bytes()[self.layout.transport..self.layout.end]
    }

    /// The TCP or UDP payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.layout.payload..self.layout.end]
    }

    /// The unfolded sum of the pseudo-header's addresses and protocol; the
    /// length, which changes as segments are cut, is not in it.
    pub fn pseudo_header_sum(&self) -> u64 {
        let ip = &self.bytes()[ethernet::HEADER_LEN..];
        let addresses = if self.layout.ipv6 {
            &ip[ipv6::ADDRESSES]
        } else {
            &ip[ipv4::ADDRESSES]
        };
        checksum::sum(addresses) + u64::from(self.layout.protocol.number())
    }

    /// Whether the TCP or UDP checksum is right (an IPv4 UDP datagram
    /// without one counts as right).
    pub fn transport_checksum_ok(&self) -> bool {
        let segment = self.transport();
        if self.layout.protocol == Protocol::Udp
            && !self.layout.ipv6
            && segment[udp::CHECKSUM] == [0, 0]
        {
            return true;
        }
        checksum::verifies(self.pseudo_header_sum() + segment.len() as u64 + checksum::sum(segment))
    }

    fn transport_u32(&self, field: field::Field) -> u32 {
        let b = &self.bytes()[self.layout.transport + field.start..];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The TCP sequence number (for UDP, its length and checksum fields).
    pub fn tcp_seq(&self) -> u32 {
        self.transport_u32(tcp::SEQ)
    }

    /// The TCP control bits (for UDP, a checksum byte); see [`tcp_flags`].
    pub fn tcp_flags(&self) -> u8 {
        // A UDP header has 8 bytes: TCP's flags would be past it.
        if self.layout.protocol == Protocol::Udp {
            return 0;
        }
        self.bytes()[self.layout.transport + tcp::FLAGS]
    }

    /// The IPv4 identification (0 for IPv6).
    pub fn ipv4_ident(&self) -> u16 {
        if self.layout.ipv6 {
            return 0;
        }
        let ip = &self.bytes()[ethernet::HEADER_LEN..];
        u16::from_be_bytes([ip[ipv4::IDENT.start], ip[ipv4::IDENT.start + 1]])
    }

    /// Length of the IP header with options or extension headers.
    pub fn ip_header_len(&self) -> usize {
        self.layout.transport - ethernet::HEADER_LEN
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Rewrites the IP length fields of `buffer` (IPv4 total length, IPv6
    /// payload length) to cover all of it, as after the payload grew or was
    /// cut, and checks the result. The IPv4 header checksum is not updated:
    /// see [`Frame::fill_ipv4_checksum`].
    pub fn fit_to_buffer(mut buffer: T) -> Result<Frame<T>, FrameError> {
        let bytes = buffer.as_mut();
        let ethertype = be16(bytes, ethernet::ETHERTYPE.start).ok_or(FrameError::Unrecognized)?;
        let ip_len = bytes.len().saturating_sub(ethernet::HEADER_LEN);
        let (field, len) = match ethertype {
            ETHERTYPE_IPV4 => (ipv4::TOTAL_LEN, ip_len),
            ETHERTYPE_IPV6 => (ipv6::PAYLOAD_LEN, ip_len.saturating_sub(ipv6::HEADER_LEN)),
            _ => return Err(FrameError::Unrecognized),
        };
        let len = u16::try_from(len).map_err(|_| FrameError::Unrecognized)?;
        let at = ethernet::HEADER_LEN + field.start;
        bytes
            .get_mut(at..at + 2)
            .ok_or(FrameError::Unrecognized)?
            .copy_from_slice(&len.to_be_bytes());
        Frame::new_checked(buffer)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the IPv4 identification (nothing for IPv6).
    pub fn set_ipv4_ident(&mut self, ident: u16) {
        if !self.layout.ipv6 {
            let at = ethernet::HEADER_LEN + ipv4::IDENT.start;
            self.bytes_mut()[at..at + 2].copy_from_slice(&ident.to_be_bytes());
        }
    }

    /// Computes the IPv4 header checksum (nothing for IPv6, which has none).
    pub fn fill_ipv4_checksum(&mut self) {
        if self.layout.ipv6 {
            return;
        }
        let (ip, end) = (ethernet::HEADER_LEN, self.layout.transport);
        let at = ip + ipv4::CHECKSUM.start;
        self.bytes_mut()[at..at + 2].copy_from_slice(&[0, 0]);
        let value = checksum::finish(checksum::sum(&self.bytes()[ip..end]));
        self.bytes_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the TCP sequence number (UDP: nothing).
    pub fn set_tcp_seq(&mut self, seq: u32) {
        if self.layout.protocol == Protocol::Tcp {
            let at = self.layout.transport + tcp::SEQ.start;
            self.bytes_mut()[at..at + 4].copy_from_slice(&seq.to_be_bytes());
        }
    }

    /// Sets the TCP control bits (UDP: nothing).
    pub fn set_tcp_flags(&mut self, flags: u8) {
        if self.layout.protocol == Protocol::Tcp {
            let at = self.layout.transport + tcp::FLAGS;
            self.bytes_mut()[at] = flags;
        }
    }

    /// Writes `value` into the TCP or UDP checksum field.
    pub fn set_transport_checksum(&mut self, value: u16) {
        let at = self.layout.transport + self.layout.protocol.checksum_offset();
        self.bytes_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes the complete TCP or UDP checksum.
    pub fn fill_transport_checksum(&mut self) {
        self.set_transport_checksum(0);
        let segment = self.transport();
        let mut value = checksum::finish(
            self.pseudo_header_sum() + segment.len() as u64 + checksum::sum(segment),
        );
        if value == 0 && self.layout.protocol == Protocol::Udp {
            value = 0xffff; // UDP sends a zero sum as all ones
        }
        self.set_transport_checksum(value);
    }

    /// Puts the partial checksum (the pseudo-header's sum, length included,
    /// folded, not inverted) in the checksum field, for a host to complete
    /// over the segment.
    pub fn fill_partial_checksum(&mut self) {
        let len = self.transport().len() as u64;
        let partial = checksum::fold(self.pseudo_header_sum() + len);
        self.set_transport_checksum(partial);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// An Ethernet + IPv4 + TCP frame with `payload`, checksums complete:
    /// 10.0.0.2:7 -> 10.0.0.1:40000, ack 99, window 1024, DF, TTL 64.
    pub(crate) fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
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
        let ip_sum = checksum::finish(checksum::sum(&f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        f[34..36].copy_from_slice(&7u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[42..46].copy_from_slice(&99u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f[48..50].copy_from_slice(&1024u16.to_be_bytes());
        f.extend_from_slice(payload);
        let mut frame = Frame::new_checked(&mut f[..]).unwrap();
        frame.fill_transport_checksum();
        f
    }

    /// UDP from 192.168.7.2:5353 to 192.168.7.1:53 with payload "hi", no
    /// UDP checksum (0) and the IPv4 header checksum not filled in.
    const UDP4: [u8; 44] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x1e, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // IPv4
        192, 168, 7, 2, 192, 168, 7, 1, //
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, b'h', b'i', // UDP, checksum 0
    ];

    #[test]
    fn finds_the_transport_header_of_a_tcp_fixture() {
        let f = tcp4(0x0102_0304, tcp_flags::ACK | tcp_flags::PSH, b"hello");
        let frame = Frame::new_checked(&f[..]).unwrap();
        assert!(!frame.is_ipv6());
        assert_eq!(frame.protocol(), Protocol::Tcp);
        assert_eq!((frame.transport_offset(), frame.payload_offset()), (34, 54));
        assert_eq!(
            (frame.ip_header_len(), frame.transport_header_len()),
            (20, 20)
        );
        assert_eq!(frame.payload(), b"hello");
        assert_eq!(frame.tcp_seq(), 0x0102_0304);
        assert_eq!(frame.tcp_flags(), tcp_flags::ACK | tcp_flags::PSH);
        assert!(frame.transport_checksum_ok());
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!Frame::new_checked(&bad[..])
            .unwrap()
            .transport_checksum_ok());
    }

    #[test]
    fn udp_without_a_checksum_and_with_one() {
        let mut f = UDP4.to_vec();
        let mut frame = Frame::new_checked(&mut f[..]).unwrap();
        assert_eq!(frame.protocol(), Protocol::Udp);
        assert_eq!(frame.payload(), b"hi");
        assert_eq!(frame.tcp_flags(), 0);
        assert!(frame.transport_checksum_ok()); // zero: none
        frame.fill_transport_checksum();
        frame.fill_ipv4_checksum();
        assert!(frame.transport_checksum_ok());
        assert_ne!(f[40..42], [0, 0]);
        assert!(checksum::verifies(checksum::sum(&f[14..34])));
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        // IPv6, hop-by-hop options (8 bytes), then TCP.
        let mut f = [0u8; 14 + 40 + 8 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&28u16.to_be_bytes());
        f[20] = 0; // hop-by-hop
        f[54] = 6; // then TCP
        f[62 + 12] = 5 << 4;
        let frame = Frame::new_checked(&f[..]).unwrap();
        assert!(frame.is_ipv6());
        assert_eq!((frame.transport_offset(), frame.ip_header_len()), (62, 48));
        // A fragment header: the stack decides.
        f[54] = 44;
        f[20] = 44;
        assert_eq!(
            Frame::new_checked(&f[..]).err(),
            Some(FrameError::Unrecognized)
        );
    }

    #[test]
    fn refuses_what_it_does_not_recognise_and_headers_that_do_not_fit() {
        let f = tcp4(1, tcp_flags::ACK, b"data");
        let mut arp = [0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            Frame::new_checked(&arp[..]).err(),
            Some(FrameError::Unrecognized)
        );
        // Shorter than the IP header says.
        assert_eq!(
            Frame::new_checked(&f[..f.len() - 1]).err(),
            Some(FrameError::Unrecognized)
        );
        // A fragment.
        let mut frag = f.clone();
        frag[20] = 0x20;
        assert_eq!(
            Frame::new_checked(&frag[..]).err(),
            Some(FrameError::Unrecognized)
        );
        // A data offset past the segment, or below 5 words.
        for offset in [0u8, 4, 15] {
            let mut g = f.clone();
            g[46] = offset << 4;
            assert_eq!(
                Frame::new_checked(&g[..]).err(),
                Some(FrameError::BadTransportHeader),
                "{offset}"
            );
        }
        // Every truncation: refused or accepted, never a panic.
        for len in 0..f.len() {
            let _ = Frame::new_checked(&f[..len]);
        }
    }

    #[test]
    fn fit_to_buffer_rewrites_the_lengths() {
        let mut f = tcp4(1, tcp_flags::ACK, &[9; 100]);
        f.truncate(54 + 30);
        let mut frame = Frame::fit_to_buffer(&mut f[..]).unwrap();
        assert_eq!(frame.payload().len(), 30);
        frame.fill_ipv4_checksum();
        frame.fill_transport_checksum();
        assert!(frame.transport_checksum_ok());
        assert_eq!(f[16..18], 70u16.to_be_bytes());
        assert!(Frame::fit_to_buffer(&mut [0u8; 10][..]).is_err());
    }
}
