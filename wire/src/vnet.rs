//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.x section
//! 5.1.6) that a Linux tap opened with `IFF_VNET_HDR` and a virtio-net device
//! put ahead of each frame: checksum and segmentation requests.
//!
//! ```
//! use lamina_wire::vnet::{gso, Header, Repr, HEADER_LEN};
//! let bytes = [0x01, gso::TCPV4, 54, 0, 0xa8, 0x05, 34, 0, 16, 0];
//! let header = Header::new_checked(&bytes[..]).unwrap();
//! assert_eq!((header.gso_size(), header.csum_start()), (1448, 34));
//! let repr = Repr::parse(&header);
//! let mut out = [0u8; HEADER_LEN];
//! repr.emit(&mut Header::new_checked(&mut out[..]).unwrap());
//! assert_eq!(out, bytes);
//! ```

/// Length of the header without `num_buffers`: what a tap uses by default.
pub const HEADER_LEN: usize = 10;

/// Length of the header a virtio 1.x device puts ahead of each frame: the
/// [`HEADER_LEN`] bytes, then `num_buffers` (0 on transmit).
pub const VIRTIO1_HEADER_LEN: usize = 12;

/// Byte ranges of the fields (all little-endian).
pub mod field {
    /// A field of more than one byte.
    pub type Field = core::ops::Range<usize>;
    /// `flags`: see [`super::flags`].
    pub const FLAGS: usize = 0;
    /// `gso_type`: see [`super::gso`].
    pub const GSO_TYPE: usize = 1;
    /// `hdr_len`: bytes of headers ahead of the payload (GSO).
    pub const HDR_LEN: Field = 2..4;
    /// `gso_size`: payload bytes per segment (GSO).
    pub const GSO_SIZE: Field = 4..6;
    /// `csum_start`: where checksumming starts (`NEEDS_CSUM`).
    pub const CSUM_START: Field = 6..8;
    /// `csum_offset`: where the checksum goes, from `csum_start`.
    pub const CSUM_OFFSET: Field = 8..10;
    /// `num_buffers` (virtio 1.x devices only): buffers a received frame
    /// spans; 0 on transmit.
    pub const NUM_BUFFERS: Field = 10..12;
}

/// Bits of `flags`.
pub mod flags {
    /// The checksum at `csum_start + csum_offset` is partial (the
    /// pseudo-header sum): the receiver completes it, or trusts it.
    pub const NEEDS_CSUM: u8 = 1;
    /// The host verified the checksum.
    pub const DATA_VALID: u8 = 2;
}

/// Values of `gso_type`.
pub mod gso {
    /// One frame, not to be segmented.
    pub const NONE: u8 = 0;
    /// A TCP/IPv4 segment to cut into `gso_size` payloads.
    pub const TCPV4: u8 = 1;
    /// UDP fragmentation (never turned on by Lamina).
    pub const UDP: u8 = 3;
    /// A TCP/IPv6 segment to cut into `gso_size` payloads.
    pub const TCPV6: u8 = 4;
    /// Added to a TCP type: the segments carry ECN (CWR on the first only).
    pub const ECN: u8 = 0x80;
}

/// The buffer is shorter than the header ([`HEADER_LEN`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl core::fmt::Display for Truncated {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "shorter than a virtio-net header ({HEADER_LEN} bytes)")
    }
}

/// A virtio-net header at the start of a buffer (the frame may follow).
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// The header at the start of `buffer`, which holds at least
    /// [`HEADER_LEN`] bytes: then no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Header<T>, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Header { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, field: field::Field) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[field.start], b[field.start + 1]])
    }

    /// `flags` (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// `gso_type` (see [`gso`]).
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// `hdr_len`.
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    /// `gso_size`.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// `csum_start`.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    /// `csum_offset`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_u16(&mut self, field: field::Field, value: u16) {
        self.buffer.as_mut()[field].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets `flags`.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets `gso_type`.
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets `hdr_len`.
    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_u16(field::HDR_LEN, value);
    }

    /// Sets `gso_size`.
    pub fn set_gso_size(&mut self, value: u16) {
        self.set_u16(field::GSO_SIZE, value);
    }

    /// Sets `csum_start`.
    pub fn set_csum_start(&mut self, value: u16) {
        self.set_u16(field::CSUM_START, value);
    }

    /// Sets `csum_offset`.
    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_u16(field::CSUM_OFFSET, value);
    }
}

/// A virtio-net header as plain values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repr {
    /// [`flags::NEEDS_CSUM`], [`flags::DATA_VALID`].
    pub flags: u8,
    /// One of [`gso`], maybe with [`gso::ECN`].
    pub gso_type: u8,
    /// Length of the headers ahead of the payload (GSO).
    pub hdr_len: u16,
    /// Payload bytes per segment (GSO).
    pub gso_size: u16,
    /// Where checksumming starts ([`flags::NEEDS_CSUM`]).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start` ([`flags::NEEDS_CSUM`]).
    pub csum_offset: u16,
}

impl Repr {
    /// The values of `header`. Every bit pattern is a header: what the
    /// values mean is checked where they are used.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Repr {
        Repr {
            flags: header.flags(),
            gso_type: header.gso_type(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        }
    }

    /// The header at the start of `bytes`; `None` if they are too few.
    pub fn read(bytes: &[u8]) -> Option<Repr> {
        Header::new_checked(bytes).ok().map(|h| Repr::parse(&h))
    }

    /// Writes the values into `header` (`num_buffers`, if the buffer has
    /// it, is left as it is).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_flags(self.flags);
        header.set_gso_type(self.gso_type);
        header.set_hdr_len(self.hdr_len);
        header.set_gso_size(self.gso_size);
        header.set_csum_start(self.csum_start);
        header.set_csum_offset(self.csum_offset);
    }

    /// The header as bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        if let Ok(mut header) = Header::new_checked(&mut bytes[..]) {
            self.emit(&mut header);
        }
        bytes
    }

    /// Whether the host vouches for the frame's checksum: partial
    /// ([`flags::NEEDS_CSUM`]) or verified ([`flags::DATA_VALID`]).
    pub fn checksum_vouched(&self) -> bool {
        self.flags & (flags::NEEDS_CSUM | flags::DATA_VALID) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO request for TCP/IPv4 with MSS 1448 behind 54 bytes of headers,
    /// the checksum partial at 34 + 16, as Linux writes it.
    const TSO: [u8; 12] = [0x01, 0x01, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0];

    #[test]
    fn parses_and_emits_a_fixture() {
        let header = Header::new_checked(&TSO[..]).unwrap();
        let repr = Repr::parse(&header);
        assert_eq!(
            repr,
            Repr {
                flags: flags::NEEDS_CSUM,
                gso_type: gso::TCPV4,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert!(repr.checksum_vouched());
        assert_eq!(repr.to_bytes(), TSO[..HEADER_LEN]);
        let mut out = [0xffu8; VIRTIO1_HEADER_LEN];
        repr.emit(&mut Header::new_checked(&mut out[..]).unwrap());
        assert_eq!(out[..HEADER_LEN], TSO[..HEADER_LEN]);
        assert_eq!(out[field::NUM_BUFFERS], [0xff, 0xff]); // left alone
    }

    #[test]
    fn short_buffers_are_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(Header::new_checked(&TSO[..len]).err(), Some(Truncated));
            assert_eq!(Repr::read(&TSO[..len]), None);
        }
        assert!(Repr::read(&TSO[..HEADER_LEN]).is_some());
        assert!(!Repr::default().checksum_vouched());
    }
}
