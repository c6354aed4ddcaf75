//! Checks of record data in uncompressed wire form, for the types whose
//! layout this crate knows; every other type is opaque (RFC 3597).

use super::name::{name_len, NameError};
use crate::Rtype;

/// Whether records of this type may be in a zone at all: meta and query
/// types may not (RFC 6895 3.1), nor DNAME, whose redirection this server
/// does not implement (a zone with one would be answered wrongly).
pub fn type_allowed(rtype: Rtype) -> Result<(), &'static str> {
    match rtype.0 {
        0 => Err("type 0 is reserved"),
        39 => Err("DNAME is not supported"),
        41 => Err("OPT is a pseudo-record, not zone data"),
        128..=255 => {
            Err("meta and query types (OPT, TSIG, IXFR, AXFR, ANY, ...) are not zone data")
        }
        _ => Ok(()),
    }
}

/// Checks `rdata` for `rtype`; the error says what is wrong.
pub fn check(rtype: Rtype, rdata: &[u8]) -> Result<(), &'static str> {
    if rdata.len() > u16::MAX as usize {
        return Err("record data longer than 65535 bytes");
    }
    match rtype {
        Rtype::A => exact(rdata, 4, "an A record is 4 bytes"),
        Rtype::AAAA => exact(rdata, 16, "an AAAA record is 16 bytes"),
        Rtype::NS | Rtype::CNAME | Rtype::PTR => names(rdata, 0, 1),
        Rtype::MX => names(rdata, 2, 1),
        Rtype::SRV => names(rdata, 6, 1),
        Rtype::SOA => {
            let first = name_len(rdata).map_err(name_error)?;
            let second = name_len(&rdata[first..]).map_err(name_error)?;
            exact(
                &rdata[first + second..],
                20,
                "SOA needs two names and five 32-bit numbers",
            )
        }
        Rtype::TXT => {
            if rdata.is_empty() {
                return Err("TXT needs at least one string");
            }
            strings(rdata).map(drop)
        }
        Rtype::HINFO => match strings(rdata)? {
            2 => Ok(()),
            _ => Err("HINFO is two strings (CPU and OS)"),
        },
        Rtype::CAA => {
            let [_flags, tag_len, rest @ ..] = rdata else {
                return Err("CAA is cut short");
            };
            let tag = rest
                .get(..*tag_len as usize)
                .ok_or("CAA's tag is cut short")?;
            if tag.is_empty() || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return Err("CAA's tag must be one or more letters and digits");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn exact(rdata: &[u8], len: usize, why: &'static str) -> Result<(), &'static str> {
    if rdata.len() == len {
        Ok(())
    } else {
        Err(why)
    }
}

/// `fixed` bytes, then `count` names filling the rest.
fn names(rdata: &[u8], fixed: usize, count: usize) -> Result<(), &'static str> {
    let mut at = fixed;
    if rdata.len() < fixed {
        return Err("record data cut short");
    }
    for _ in 0..count {
        at += name_len(&rdata[at..]).map_err(name_error)?;
    }
    exact(&rdata[at..], 0, "bytes after the name")
}

/// Character strings (a length byte, then that many bytes) filling
/// `rdata`; their number.
fn strings(rdata: &[u8]) -> Result<usize, &'static str> {
    let mut at = 0;
    let mut count = 0;
    while at < rdata.len() {
        at += 1 + rdata[at] as usize;
        count += 1;
    }
    if at == rdata.len() {
        Ok(count)
    } else {
        Err("a string is cut short")
    }
}

fn name_error(e: NameError) -> &'static str {
    match e {
        NameError::Truncated => "a name in the record is cut short",
        NameError::BadLabel => "a name in the record has a label over 63 bytes or a pointer",
        NameError::TooLong => "a name in the record is longer than 255 bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_are_checked_and_others_are_opaque() {
        assert!(check(Rtype::A, &[1, 2, 3, 4]).is_ok());
        assert!(check(Rtype::A, &[1, 2, 3]).is_err());
        assert!(check(Rtype::AAAA, &[0; 16]).is_ok());
        assert!(check(Rtype::AAAA, &[0; 4]).is_err());
        assert!(check(Rtype::NS, b"\x02ns\x00").is_ok());
        assert!(check(Rtype::NS, b"\x02ns\x00\x00").is_err());
        assert!(check(Rtype::CNAME, b"\xc0\x0c").is_err());
        assert!(check(Rtype::MX, b"\x00\x0a\x02mx\x00").is_ok());
        assert!(check(Rtype::MX, b"\x00").is_err());
        assert!(check(Rtype::SRV, b"\x00\x01\x00\x02\x00\x35\x00").is_ok());
        let mut soa = b"\x02ns\x00\x04host\x00".to_vec();
        soa.extend_from_slice(&[0; 20]);
        assert!(check(Rtype::SOA, &soa).is_ok());
        assert!(check(Rtype::SOA, &soa[..soa.len() - 1]).is_err());
        assert!(check(Rtype::TXT, b"\x02hi\x00").is_ok());
        assert!(check(Rtype::TXT, b"").is_err());
        assert!(check(Rtype::TXT, b"\x05hi").is_err());
        assert!(check(Rtype::HINFO, b"\x03cpu\x02os").is_ok());
        assert!(check(Rtype::HINFO, b"\x03cpu").is_err());
        assert!(check(Rtype::CAA, b"\x00\x05issueca.example").is_ok());
        assert!(check(Rtype::CAA, b"\x00\x00").is_err());
        assert!(check(Rtype::CAA, b"\x00\x05is-ue").is_err());
        assert!(check(Rtype(65280), &[1, 2, 3]).is_ok());
        assert!(check(Rtype(65280), &[0; 70000]).is_err());
        assert!(type_allowed(Rtype::ANY).is_err());
        assert!(type_allowed(Rtype::OPT).is_err());
        assert!(type_allowed(Rtype(39)).is_err());
        assert!(type_allowed(Rtype::TXT).is_ok());
    }
}
