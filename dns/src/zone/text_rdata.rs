//! Record data in presentation form (RFC 1035 5.1 and each type's RFC) to
//! uncompressed wire form.

use alloc::format;
use alloc::vec::Vec;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::rdata;
use super::text::{fail, parse_duration, parse_name, unescape, Fail, Token};
use crate::Rtype;

struct Words<'a> {
    tokens: &'a [Token],
    line: usize,
}

impl<'a> Words<'a> {
    fn next(&mut self, what: &str) -> Result<&'a Token, Fail> {
        let (first, rest) = self.tokens.split_first().ok_or_else(|| Fail {
            line: self.line,
            message: format!("{what} is missing"),
        })?;
        self.tokens = rest;
        Ok(first)
    }

    fn number<T: TryFrom<u64>>(&mut self, what: &str, max: u64) -> Result<T, Fail> {
        let token = self.next(what)?;
        let value = core::str::from_utf8(&token.raw)
            .ok()
            .filter(|t| !token.quoted && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|v| *v <= max);
        match value.and_then(|v| T::try_from(v).ok()) {
            Some(v) => Ok(v),
            None => fail(
                token.line,
                format!("{what} {} is not a number from 0 to {max}", token.show()),
            ),
        }
    }

    fn name(&mut self, what: &str, origin: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
        let token = self.next(what)?;
        out.extend_from_slice(&parse_name(token, origin)?);
        Ok(())
    }

    /// A character string: at most 255 bytes, with a length byte.
    fn string(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let token = self.next(what)?;
        let bytes = unescape(token)?;
        if bytes.len() > 255 {
            return fail(
                token.line,
                format!("{what} is longer than 255 bytes (split it into several strings)"),
            );
        }
        out.push(bytes.len() as u8);
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn end(&self) -> Result<(), Fail> {
        match self.tokens.first() {
            None => Ok(()),
            Some(extra) => fail(
                extra.line,
                format!("{} after the record's data", extra.show()),
            ),
        }
    }
}

/// The wire form of `rtype`'s data written as `tokens`.
pub(super) fn parse(
    rtype: Rtype,
    tokens: &[Token],
    origin: &[u8],
    line: usize,
) -> Result<Vec<u8>, Fail> {
    let mut w = Words { tokens, line };
    if tokens.first().is_some_and(|t| !t.quoted && t.raw == b"\\#") {
        w.next("\\#")?;
        return generic(rtype, w);
    }
    let mut out = Vec::new();
    match rtype {
        Rtype::A => {
            let token = w.next("the address")?;
            let address: Ipv4Addr = core::str::from_utf8(&token.raw)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Fail {
                    line: token.line,
                    message: format!("{} is not an IPv4 address", token.show()),
                })?;
            out.extend_from_slice(&address.octets());
        }
        Rtype::AAAA => {
            let token = w.next("the address")?;
            let address: Ipv6Addr = core::str::from_utf8(&token.raw)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Fail {
                    line: token.line,
                    message: format!("{} is not an IPv6 address", token.show()),
                })?;
            out.extend_from_slice(&address.octets());
        }
        Rtype::NS | Rtype::CNAME | Rtype::PTR => w.name("the name", origin, &mut out)?,
        Rtype::MX => {
            out.extend_from_slice(&w.number::<u16>("the preference", 65535)?.to_be_bytes());
            w.name("the exchange", origin, &mut out)?;
        }
        Rtype::SRV => {
            for what in ["the priority", "the weight", "the port"] {
                out.extend_from_slice(&w.number::<u16>(what, 65535)?.to_be_bytes());
            }
            w.name("the target", origin, &mut out)?;
        }
        Rtype::SOA => {
            w.name("the primary server (MNAME)", origin, &mut out)?;
            w.name("the mailbox (RNAME)", origin, &mut out)?;
            out.extend_from_slice(
                &w.number::<u32>("the serial", u32::MAX.into())?
                    .to_be_bytes(),
            );
            for what in ["the refresh", "the retry", "the expire", "the minimum"] {
                let token = w.next(what)?;
                let value = parse_duration(token).map_err(|f| Fail {
                    line: f.line,
                    message: format!("{what}: {}", f.message),
                })?;
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        Rtype::TXT => {
            w.string("a string", &mut out)?;
            while !w.tokens.is_empty() {
                w.string("a string", &mut out)?;
            }
        }
        Rtype::HINFO => {
            w.string("the CPU", &mut out)?;
            w.string("the OS", &mut out)?;
        }
        Rtype::CAA => {
            out.push(w.number::<u8>("the flags", 255)?);
            let tag = w.next("the tag")?;
            if tag.raw.is_empty()
                || tag.raw.len() > 255
                || !tag.raw.iter().all(u8::is_ascii_alphanumeric)
            {
                return fail(
                    tag.line,
                    format!("the tag {} is not letters and digits", tag.show()),
                );
            }
            out.push(tag.raw.len() as u8);
            out.extend_from_slice(&tag.raw);
            let value = w.next("the value")?;
            out.extend_from_slice(&unescape(value)?);
        }
        _ => {
            return fail(
                line,
                format!(
                    "write the data of type {} in RFC 3597's form: \\# LENGTH HEX",
                    rtype.0
                ),
            )
        }
    }
    w.end()?;
    if let Err(why) = rdata::check(rtype, &out) {
        return fail(line, why);
    }
    Ok(out)
}

/// RFC 3597 5: `\# length hex...`, the hex in one word or several, each
/// of an even number of digits.
fn generic(rtype: Rtype, mut w: Words<'_>) -> Result<Vec<u8>, Fail> {
    let line = w.line;
    let length: usize = w.number("the length after \\#", 65535)?;
    let mut out = Vec::with_capacity(length);
    let mut digits = Vec::new();
    for token in w.tokens {
        if token.raw.len() % 2 != 0 {
            return fail(
                token.line,
                format!("{}: an odd number of hexadecimal digits", token.show()),
            );
        }
        for &c in &token.raw {
            let Some(d) = (c as char).to_digit(16).filter(|_| !token.quoted) else {
                return fail(token.line, format!("{} is not hexadecimal", token.show()));
            };
            digits.push(d as u8);
        }
    }
    for pair in digits.chunks(2) {
        out.push(pair[0] << 4 | pair[1]);
    }
    if out.len() != length {
        return fail(
            line,
            format!(
                "\\# says {length} bytes, but the hexadecimal gives {}",
                out.len()
            ),
        );
    }
    if let Err(why) = rdata::check(rtype, &out) {
        return fail(line, why);
    }
    Ok(out)
}
