//! Record data (RFC 1035 3.3, and the RFCs of each type): typed for A,
//! AAAA, NS, CNAME, SOA, MX, TXT, SRV, PTR and CAA, opaque for the rest
//! (RFC 3597), with their presentation formats.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use super::name::Name;
use super::{read_u16, read_u32, ParseError};
use crate::types::Rtype;

/// The data of one record, by type.
#[derive(Debug, Clone, Copy)]
pub enum Rdata<'a> {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An authoritative name server.
    Ns(Name<'a>),
    /// The canonical name of an alias.
    Cname(Name<'a>),
    /// A domain name pointer.
    Ptr(Name<'a>),
    /// Start of authority (RFC 1035 3.3.13).
    Soa {
        /// The primary name server.
        mname: Name<'a>,
        /// The mailbox of the person responsible, `@` as the first dot.
        rname: Name<'a>,
        /// The zone's version.
        serial: u32,
        /// Seconds between secondaries' refreshes.
        refresh: u32,
        /// Seconds before a failed refresh is retried.
        retry: u32,
        /// Seconds after which a secondary stops answering.
        expire: u32,
        /// With the SOA's own TTL, the TTL of negative answers (RFC 2308).
        minimum: u32,
    },
    /// A mail exchange.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The host.
        exchange: Name<'a>,
    },
    /// One or more character strings.
    Txt(CharacterStrings<'a>),
    /// A service location (RFC 2782).
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Relative weight among equal priorities.
        weight: u16,
        /// The port.
        port: u16,
        /// The host.
        target: Name<'a>,
    },
    /// Certification authority authorisation (RFC 8659).
    Caa {
        /// Flags (128: issuer critical).
        flags: u8,
        /// The property: `issue`, `issuewild`, `iodef`, ... (1 to 15
        /// letters and digits).
        tag: &'a [u8],
        /// The property's value.
        value: &'a [u8],
    },
    /// Any other type, kept as bytes (RFC 3597).
    Opaque {
        /// The record's type.
        rtype: Rtype,
        /// Its data.
        data: &'a [u8],
    },
}

/// Whether names in this type's data may be compressed in a message, for
/// reading (RFC 3597 4: the RFC 1035 types, and the later ones receivers
/// decompress, SRV among them).
fn may_be_compressed(rtype: Rtype) -> bool {
    matches!(
        rtype,
        Rtype::NS | Rtype::CNAME | Rtype::SOA | Rtype::PTR | Rtype::MX | Rtype::SRV
    )
}

impl<'a> Rdata<'a> {
    /// Reads the data of a record of type `rtype` found at
    /// `message[start..start + len]`; its names may point into the rest of
    /// the message.
    pub fn parse(
        rtype: Rtype,
        message: &'a [u8],
        start: usize,
        len: usize,
    ) -> Result<Rdata<'a>, ParseError> {
        let end = start.checked_add(len).ok_or(ParseError::Truncated)?;
        if end > message.len() {
            return Err(ParseError::Truncated);
        }
        Reader {
            message,
            pos: start,
            end,
            compressed: may_be_compressed(rtype),
        }
        .rdata(rtype)
    }

    /// Reads record data standing alone, in uncompressed wire form (as a
    /// zone keeps it).
    pub fn from_wire(rtype: Rtype, data: &'a [u8]) -> Result<Rdata<'a>, ParseError> {
        Reader {
            message: data,
            pos: 0,
            end: data.len(),
            compressed: false,
        }
        .rdata(rtype)
    }
}

impl Rdata<'_> {
    /// Writes the data in uncompressed wire form (as a zone keeps it) into
    /// `out`; returns its length, or `None` if `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer { out, len: 0 };
        match self {
            Rdata::A(address) => writer.put(&address.octets())?,
            Rdata::Aaaa(address) => writer.put(&address.octets())?,
            Rdata::Ns(name) | Rdata::Cname(name) | Rdata::Ptr(name) => writer.name(name)?,
            Rdata::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                writer.name(mname)?;
                writer.name(rname)?;
                for value in [serial, refresh, retry, expire, minimum] {
                    writer.put(&value.to_be_bytes())?;
                }
            }
            Rdata::Mx {
                preference,
                exchange,
            } => {
                writer.put(&preference.to_be_bytes())?;
                writer.name(exchange)?;
            }
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                for value in [priority, weight, port] {
                    writer.put(&value.to_be_bytes())?;
                }
                writer.name(target)?;
            }
            Rdata::Txt(strings) => {
                for string in *strings {
                    let string = string.ok()?;
                    writer.put(&[string.len() as u8])?;
                    writer.put(string)?;
                }
            }
            Rdata::Caa { flags, tag, value } => {
                writer.put(&[*flags, tag.len() as u8])?;
                writer.put(tag)?;
                writer.put(value)?;
            }
            Rdata::Opaque { data, .. } => writer.put(data)?,
        }
        Some(writer.len)
    }
}

/// Appends to a slice.
struct Writer<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.out
            .get_mut(self.len..self.len + bytes.len())?
            .copy_from_slice(bytes);
        self.len += bytes.len();
        Some(())
    }

    fn name(&mut self, name: &Name<'_>) -> Option<()> {
        let mut wire = [0u8; super::MAX_NAME_LEN];
        let len = name.write_wire(&mut wire);
        self.put(&wire[..len])
    }
}

/// Reads fields in order, failing on anything past the data's end.
struct Reader<'a> {
    message: &'a [u8],
    pos: usize,
    end: usize,
    compressed: bool,
}

impl<'a> Reader<'a> {
    fn rdata(mut self, rtype: Rtype) -> Result<Rdata<'a>, ParseError> {
        let data = &self.message[self.pos..self.end];
        let rdata = match rtype {
            Rtype::A => {
                let octets: [u8; 4] = data.try_into().map_err(|_| ParseError::BadRdata)?;
                self.pos = self.end;
                Rdata::A(Ipv4Addr::from(octets))
            }
            Rtype::AAAA => {
                let octets: [u8; 16] = data.try_into().map_err(|_| ParseError::BadRdata)?;
                self.pos = self.end;
                Rdata::Aaaa(Ipv6Addr::from(octets))
            }
            Rtype::NS => Rdata::Ns(self.name()?),
            Rtype::CNAME => Rdata::Cname(self.name()?),
            Rtype::PTR => Rdata::Ptr(self.name()?),
            Rtype::SOA => Rdata::Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            },
            Rtype::MX => Rdata::Mx {
                preference: self.u16()?,
                exchange: self.name()?,
            },
            Rtype::SRV => Rdata::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            },
            Rtype::TXT => {
                let strings = CharacterStrings(data);
                if data.is_empty() || strings.clone().any(|s| s.is_err()) {
                    return Err(ParseError::BadRdata);
                }
                self.pos = self.end;
                Rdata::Txt(strings)
            }
            Rtype::CAA => {
                let (&flags, rest) = data.split_first().ok_or(ParseError::BadRdata)?;
                let (&tag_len, rest) = rest.split_first().ok_or(ParseError::BadRdata)?;
                let tag = rest
                    .get(..usize::from(tag_len))
                    .ok_or(ParseError::BadRdata)?;
                if tag.is_empty() || tag.len() > 15 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(ParseError::BadRdata);
                }
                self.pos = self.end;
                Rdata::Caa {
                    flags,
                    tag,
                    value: &rest[tag.len()..],
                }
            }
            _ => {
                self.pos = self.end;
                Rdata::Opaque { rtype, data }
            }
        };
        if self.pos != self.end {
            return Err(ParseError::BadRdata);
        }
        Ok(rdata)
    }

    fn name(&mut self) -> Result<Name<'a>, ParseError> {
        let within = &self.message[..self.end];
        let parsed = if self.compressed {
            Name::parse(within, self.pos)
        } else {
            Name::parse_uncompressed(within, self.pos)
        };
        // A name running past the data is the data's fault.
        let (name, end) = parsed.map_err(|e| {
            if e == ParseError::Truncated {
                ParseError::BadRdata
            } else {
                e
            }
        })?;
        self.pos = end;
        Ok(name)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let value = read_u16(&self.message[..self.end], self.pos).ok_or(ParseError::BadRdata)?;
        self.pos += 2;
        Ok(value)
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        let value = read_u32(&self.message[..self.end], self.pos).ok_or(ParseError::BadRdata)?;
        self.pos += 4;
        Ok(value)
    }
}

/// The character strings of TXT data (RFC 1035 3.3: a length byte, then
/// that many bytes), each an item; a string cut short is an error item.
#[derive(Debug, Clone, Copy)]
pub struct CharacterStrings<'a>(&'a [u8]);

impl<'a> CharacterStrings<'a> {
    /// The strings in `data` (checked as they are walked).
    pub fn new(data: &'a [u8]) -> CharacterStrings<'a> {
        CharacterStrings(data)
    }
}

impl<'a> Iterator for CharacterStrings<'a> {
    type Item = Result<&'a [u8], ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&len, rest) = self.0.split_first()?;
        match rest.split_at_checked(usize::from(len)) {
            Some((string, rest)) => {
                self.0 = rest;
                Some(Ok(string))
            }
            None => {
                self.0 = &[];
                Some(Err(ParseError::BadRdata))
            }
        }
    }
}

/// Writes a character string in quotes, `"` and `\` escaped, bytes outside
/// printable ASCII as `\DDD`.
fn quoted(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => write!(f, "\\{}", byte as char)?,
            0x20..=0x7e => write!(f, "{}", byte as char)?,
            _ => write!(f, "\\{byte:03}")?,
        }
    }
    f.write_str("\"")
}

/// The presentation format, as in master files (RFC 1035 5.1, RFC 3597 5
/// for opaque data: `\# LENGTH HEX`).
impl fmt::Display for Rdata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rdata::A(address) => write!(f, "{address}"),
            Rdata::Aaaa(address) => write!(f, "{address}"),
            Rdata::Ns(name) | Rdata::Cname(name) | Rdata::Ptr(name) => write!(f, "{name}"),
            Rdata::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                write!(
                    f,
                    "{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
                )
            }
            Rdata::Mx {
                preference,
                exchange,
            } => write!(f, "{preference} {exchange}"),
            Rdata::Txt(strings) => {
                for (i, string) in (*strings).enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    quoted(f, string.unwrap_or_default())?;
                }
                Ok(())
            }
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target}"),
            Rdata::Caa { flags, tag, value } => {
                write!(f, "{flags} ")?;
                for &byte in *tag {
                    write!(f, "{}", byte as char)?;
                }
                f.write_str(" ")?;
                quoted(f, value)
            }
            Rdata::Opaque { data, .. } => {
                write!(f, "\\# {}", data.len())?;
                if !data.is_empty() {
                    f.write_str(" ")?;
                }
                for byte in *data {
                    write!(f, "{byte:02X}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn show(rtype: Rtype, data: &[u8]) -> alloc::string::String {
        Rdata::from_wire(rtype, data).unwrap().to_string()
    }

    #[test]
    fn every_typed_kind_displays_as_in_a_master_file() {
        assert_eq!(show(Rtype::A, &[192, 0, 2, 1]), "192.0.2.1");
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 1;
        assert_eq!(show(Rtype::AAAA, &v6), "2001:db8::1");
        assert_eq!(show(Rtype::NS, b"\x02ns\x07example\x00"), "ns.example.");
        assert_eq!(show(Rtype::CNAME, b"\x01a\x00"), "a.");
        assert_eq!(show(Rtype::PTR, b"\x04host\x00"), "host.");
        let mut soa = b"\x02ns\x00\x05admin\x00".to_vec();
        for v in [2026112901u32, 3600, 600, 86400, 300] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            show(Rtype::SOA, &soa),
            "ns. admin. 2026112901 3600 600 86400 300"
        );
        assert_eq!(show(Rtype::MX, b"\x00\x0a\x04mail\x00"), "10 mail.");
        assert_eq!(
            show(Rtype::TXT, b"\x05hello\x0asay \"hi\" \\\x01\xff"),
            "\"hello\" \"say \\\"hi\\\" \\\\\" \"\\255\""
        );
        assert_eq!(show(Rtype::TXT, b"\x00"), "\"\"");
        assert_eq!(
            show(Rtype::SRV, b"\x00\x01\x00\x02\x01\xbb\x03www\x00"),
            "1 2 443 www."
        );
        assert_eq!(
            show(Rtype::CAA, b"\x00\x05issueletsencrypt.org"),
            "0 issue \"letsencrypt.org\""
        );
        assert_eq!(show(Rtype(65280), &[0x0a, 0, 0, 1]), "\\# 4 0A000001");
        assert_eq!(show(Rtype(99), &[]), "\\# 0");
    }

    #[test]
    fn emits_uncompressed_what_it_reads() {
        // MX data whose name points back into the message.
        let message = b"\x07example\x00\x00\x05\x04mail\xc0\x00";
        let rdata = Rdata::parse(Rtype::MX, message, 9, 9).unwrap();
        let mut out = [0u8; 64];
        let len = rdata.emit(&mut out).unwrap();
        assert_eq!(&out[..len], b"\x00\x05\x04mail\x07example\x00");
        assert!(rdata.emit(&mut out[..len - 1]).is_none());
        for (rtype, data) in [
            (Rtype::TXT, &b"\x02hi\x00"[..]),
            (Rtype::CAA, b"\x80\x05issuex"),
            (Rtype::SRV, b"\x00\x01\x00\x02\x01\xbb\x03www\x00"),
            (Rtype(4242), b"\x01\x02"),
        ] {
            let len = Rdata::from_wire(rtype, data)
                .unwrap()
                .emit(&mut out)
                .unwrap();
            assert_eq!(&out[..len], data);
        }
    }

    #[test]
    fn data_of_the_wrong_shape_is_refused() {
        for (rtype, data) in [
            (Rtype::A, &b"\x01\x02\x03"[..]),
            (Rtype::A, b"\x01\x02\x03\x04\x05"),
            (Rtype::AAAA, b"\x01\x02\x03\x04"),
            (Rtype::NS, b"\x02ns\x00extra"),
            (Rtype::NS, b"\x02ns"),
            (Rtype::NS, b""),
            (Rtype::MX, b"\x00"),
            (Rtype::MX, b"\x00\x0a"),
            (Rtype::SOA, b"\x00\x00\x00\x00\x00\x01"),
            (Rtype::SRV, b"\x00\x01\x00\x02\x01\xbb"),
            (Rtype::TXT, b""),
            (Rtype::TXT, b"\x05abc"),
            (Rtype::CAA, b"\x00"),
            (Rtype::CAA, b"\x00\x00"),
            (Rtype::CAA, b"\x00\x09issue"),
            (Rtype::CAA, b"\x00\x05is-ue"),
        ] {
            assert_eq!(
                Rdata::from_wire(rtype, data).unwrap_err(),
                ParseError::BadRdata,
                "{rtype} {data:?}"
            );
        }
        // Standing alone, names are uncompressed.
        assert_eq!(
            Rdata::from_wire(Rtype::NS, b"\xc0\x00").unwrap_err(),
            ParseError::BadName
        );
    }

    #[test]
    fn names_in_a_message_may_point_backwards() {
        // `example.` at 0, then MX data: preference 5, `mail` + pointer to 0.
        let message = b"\x07example\x00\x00\x05\x04mail\xc0\x00";
        let rdata = Rdata::parse(Rtype::MX, message, 9, 9).unwrap();
        assert_eq!(rdata.to_string(), "5 mail.example.");
        // The data ends before the name's pointer does.
        assert_eq!(
            Rdata::parse(Rtype::MX, message, 9, 8).unwrap_err(),
            ParseError::BadRdata
        );
        assert_eq!(
            Rdata::parse(Rtype::MX, message, 9, 10).unwrap_err(),
            ParseError::Truncated
        );
        // TXT data is never read as a name: no pointer to follow.
        assert!(matches!(
            Rdata::parse(Rtype::TXT, message, 0, 9).unwrap(),
            Rdata::Txt(_)
        ));
    }
}
