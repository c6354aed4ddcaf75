//! EDNS(0) (RFC 6891): the OPT pseudo-record in the additional section. Its
//! class is the requester's UDP payload size, its TTL the extended rcode,
//! version and flags (DO, RFC 3225), its data a list of options. Options
//! and flags this crate does not know are ignored, as RFC 6891 6.1.2 and
//! RFC 8906 ask.

use super::message::Record;
use super::{read_u16, ParseError};
use crate::types::{Rcode, Rtype};

/// The DNSSEC OK bit of the OPT record's flags.
pub const DO_BIT: u16 = 0x8000;

/// The length of an OPT record without options: root owner (1), type (2),
/// class (2), TTL (4), data length (2).
pub const OPT_RECORD_LEN: usize = 11;

/// A checked OPT record, as found in a message.
#[derive(Debug, Clone, Copy)]
pub struct Opt<'a> {
    /// The largest UDP payload the sender can reassemble (its class field).
    pub udp_payload_size: u16,
    /// The upper 8 bits of the 12-bit response code.
    pub extended_rcode: u8,
    /// The EDNS version (0 is the only one defined).
    pub version: u8,
    /// The flags: [`DO_BIT`], the rest reserved (and ignored).
    pub flags: u16,
    /// The options, checked to be whole.
    options: &'a [u8],
}

impl<'a> Opt<'a> {
    /// Reads an OPT record. Its owner must be the root and its options must
    /// exactly fill its data.
    pub fn from_record(record: &Record<'a>) -> Result<Opt<'a>, ParseError> {
        if record.rtype != Rtype::OPT || !record.name.is_root() {
            return Err(ParseError::BadOpt);
        }
        let options = record.rdata();
        if OptOptions(options).any(|option| option.is_err()) {
            return Err(ParseError::BadOpt);
        }
        let ttl = record.ttl.to_be_bytes();
        Ok(Opt {
            udp_payload_size: record.class.0,
            extended_rcode: ttl[0],
            version: ttl[1],
            flags: u16::from_be_bytes([ttl[2], ttl[3]]),
            options,
        })
    }

    /// Whether the requester wants DNSSEC records (the DO bit).
    pub fn dnssec_ok(&self) -> bool {
        self.flags & DO_BIT != 0
    }

    /// The full response code, given the header's 4 bits.
    pub fn rcode(&self, header_rcode: Rcode) -> Rcode {
        Rcode(u16::from(self.extended_rcode) << 4 | (header_rcode.0 & 0xf))
    }

    /// The options: (code, data) each.
    pub fn options(&self) -> impl Iterator<Item = (u16, &'a [u8])> {
        OptOptions(self.options).map_while(Result::ok)
    }
}

/// The options of OPT data as they are walked: (code, data) items, an
/// option running past the data an error item (then the end).
#[derive(Debug, Clone)]
pub struct OptOptions<'a>(pub &'a [u8]);

impl<'a> Iterator for OptOptions<'a> {
    type Item = Result<(u16, &'a [u8]), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let parsed = (|| {
            let code = read_u16(self.0, 0)?;
            let len = usize::from(read_u16(self.0, 2)?);
            let data = self.0.get(4..4 + len)?;
            Some((code, data, 4 + len))
        })();
        match parsed {
            Some((code, data, used)) => {
                self.0 = &self.0[used..];
                Some(Ok((code, data)))
            }
            None => {
                self.0 = &[];
                Some(Err(ParseError::BadOpt))
            }
        }
    }
}

/// What a response's OPT record says (the builder writes it, with no
/// options, and fills in the extended rcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptRepr {
    /// The largest UDP payload this side can reassemble.
    pub udp_payload_size: u16,
    /// The EDNS version (0).
    pub version: u8,
    /// The DO bit (echoed from the query, RFC 3225 3).
    pub dnssec_ok: bool,
}

impl OptRepr {
    /// Writes the OPT record for a response code into `out` (at least
    /// [`OPT_RECORD_LEN`] bytes; returns `None` if it is shorter).
    pub fn emit(&self, rcode: Rcode, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..OPT_RECORD_LEN)?;
        out[0] = 0;
        out[1..3].copy_from_slice(&Rtype::OPT.0.to_be_bytes());
        out[3..5].copy_from_slice(&self.udp_payload_size.to_be_bytes());
        out[5] = (rcode.0 >> 4) as u8;
        out[6] = self.version;
        let flags = if self.dnssec_ok { DO_BIT } else { 0 };
        out[7..9].copy_from_slice(&flags.to_be_bytes());
        out[9..11].copy_from_slice(&0u16.to_be_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    /// A query from `dig +qr example.com A` (BIND 9.18): EDNS version 0,
    /// payload 1232, DO clear, a COOKIE option (10) of 8 bytes.
    const DIG_QUERY: &str = "9c1b01200001000000000001076578616d706c6503636f6d00000100010000290\
                             4d000000000000c000a0008a1b2c3d4e5f60718";

    #[test]
    fn reads_digs_opt_record() {
        let bytes = crate::wire::message::tests::hex(DIG_QUERY);
        let message = Message::new_checked(&bytes[..]).unwrap();
        let opt = message.edns().unwrap().unwrap();
        assert_eq!(opt.udp_payload_size, 1232);
        assert_eq!(
            (opt.version, opt.extended_rcode, opt.dnssec_ok()),
            (0, 0, false)
        );
        let options: alloc::vec::Vec<_> = opt.options().collect();
        assert_eq!(
            options,
            [(10, &[0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18][..])]
        );
        assert_eq!(opt.rcode(Rcode(0)), Rcode::NOERROR);
    }

    #[test]
    fn emits_what_it_reads() {
        let repr = OptRepr {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: true,
        };
        let mut out = [0u8; OPT_RECORD_LEN];
        repr.emit(Rcode::BADVERS, &mut out).unwrap();
        assert_eq!(out, [0, 0, 41, 0x04, 0xd0, 1, 0, 0x80, 0, 0, 0]);
        assert!(repr.emit(Rcode::NOERROR, &mut [0u8; 10]).is_none());
        let mut message = alloc::vec![0u8; 12];
        message[11] = 1;
        message.extend_from_slice(&out);
        let message = Message::new_checked(&message[..]).unwrap();
        let opt = message.edns().unwrap().unwrap();
        assert!(opt.dnssec_ok());
        assert_eq!(opt.rcode(Rcode(0)), Rcode::BADVERS);
        assert_eq!(opt.options().count(), 0);
    }

    #[test]
    fn options_cut_short_are_refused() {
        let mut items = OptOptions(&[0, 10, 0, 4, 1, 2]);
        assert_eq!(items.next(), Some(Err(ParseError::BadOpt)));
        assert_eq!(items.next(), None);
        assert_eq!(
            OptOptions(&[0, 10, 0]).next(),
            Some(Err(ParseError::BadOpt))
        );
        let ok: alloc::vec::Vec<_> = OptOptions(&[0, 10, 0, 0, 0, 3, 0, 1, 9]).collect();
        assert_eq!(ok, [Ok((10, &[][..])), Ok((3, &[9][..]))]);
    }
}
