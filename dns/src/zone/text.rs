//! The RFC 1035 (section 5) master-file reader, for build scripts.
//!
//! What it reads:
//! - `$ORIGIN name` (relative names are relative to the one before) and
//!   `$TTL ttl`; `$INCLUDE` is refused (a zone is one file, so what is
//!   baked is what the directory shows), as is any other directive;
//! - records `[owner] [ttl] [class] type data` (TTL and class in either
//!   order, RFC 1035 5.1): an owner left out (the line starts with a
//!   blank) is the previous record's; `@` is the current origin; a name
//!   without a final dot is relative to it;
//! - a TTL left out is the `$TTL`, else the last TTL given (RFC 1035);
//!   a class left out is the previous record's, else IN;
//! - TTLs and SOA timers as seconds or with BIND's units (`1h30m`, `2w`);
//! - parentheses over several lines, `;` comments, quoted strings with
//!   `\"`, and `\X` / `\DDD` escapes in names and strings;
//! - the data of A, AAAA, NS, CNAME, SOA, PTR, MX, TXT, SRV, HINFO and
//!   CAA in their presentation forms, and of any type (`TYPE65280` or a
//!   mnemonic) in RFC 3597's `\# length hex` form.
//!
//! Every error says `file:line: why`, quoting the text at fault.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::borrow::ToOwned;

use super::check::Record;
use super::name::{self, MAX_LABEL, MAX_NAME};
use super::text_rdata;
use super::{Zone, ZoneError};
use crate::{Class, Rtype};

/// A master file refused: where and why.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The file (as given to the reader).
    pub file: String,
    /// The line (from 1), or 0 when the error is about the whole file.
    pub line: usize,
    /// Why.
    pub message: String,
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}: {}", self.file, self.message),
        }
    }
}

/// Shown as its Display, so that a build script's `expect` prints
/// `file:line: why` as it is.
impl core::fmt::Debug for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ReadError {}

/// An error on a line, before the file name is known.
#[derive(Debug)]
pub(super) struct Fail {
    pub line: usize,
    pub message: String,
}

pub(super) fn fail<T>(line: usize, message: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        line,
        message: message.into(),
    })
}

/// A word of an entry: its bytes as written (escapes not yet applied).
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub raw: Vec<u8>,
    pub quoted: bool,
    pub line: usize,
}

impl Token {
    /// The token as written, for messages.
    pub fn show(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        format!("\"{}\"", text.escape_debug())
    }

    fn is(&self, word: &str) -> bool {
        !self.quoted && self.raw.eq_ignore_ascii_case(word.as_bytes())
    }
}

/// One entry: a directive or a record, over one line or several in
/// parentheses.
struct Entry {
    line: usize,
    owner_omitted: bool,
    tokens: Vec<Token>,
}

/// Splits a master file into entries (RFC 1035 5.1's lexical rules).
fn entries(text: &[u8]) -> Result<Vec<Entry>, Fail> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut depth = 0usize;
    let mut opened_at = 0;
    let mut entry: Option<Entry> = None;
    let mut i = 0;
    let mut line_start = true;
    while i < text.len() {
        let c = text[i];
        if line_start && depth == 0 {
            if let Some(done) = entry.take().filter(|e| !e.tokens.is_empty()) {
                out.push(done);
            }
            entry = Some(Entry {
                line,
                owner_omitted: c == b' ' || c == b'\t',
                tokens: Vec::new(),
            });
        }
        line_start = false;
        let current = entry.as_mut().expect("an entry starts at every line");
        match c {
            b'\n' => {
                line += 1;
                line_start = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                if depth == 0 {
                    opened_at = line;
                }
                depth += 1;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return fail(line, "')' without '('");
                }
                depth -= 1;
                i += 1;
            }
            b'"' => {
                let start = line;
                let mut raw = Vec::new();
                i += 1;
                loop {
                    match text.get(i) {
                        None | Some(b'\n') => {
                            return fail(start, "a quoted string is not closed on its line")
                        }
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let Some(&next) = text.get(i + 1).filter(|&&n| n != b'\n') else {
                                return fail(start, "a backslash at the end of a line");
                            };
                            raw.extend_from_slice(&[b'\\', next]);
                            i += 2;
                        }
                        Some(&b) => {
                            raw.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                current.tokens.push(Token {
                    raw,
                    quoted: true,
                    line: start,
                });
            }
            _ => {
                let mut raw = Vec::new();
                while let Some(&b) = text.get(i) {
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                        b'\\' => {
                            let Some(&next) = text.get(i + 1).filter(|&&n| n != b'\n') else {
                                return fail(line, "a backslash at the end of a line");
                            };
                            raw.extend_from_slice(&[b'\\', next]);
                            i += 2;
                        }
                        _ => {
                            raw.push(b);
                            i += 1;
                        }
                    }
                }
                current.tokens.push(Token {
                    raw,
                    quoted: false,
                    line,
                });
            }
        }
    }
    if depth > 0 {
        return fail(opened_at, "'(' is never closed");
    }
    if let Some(done) = entry.filter(|e| !e.tokens.is_empty()) {
        out.push(done);
    }
    Ok(out)
}

/// The bytes of a token with `\X` and `\DDD` applied.
pub(super) fn unescape(token: &Token) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::with_capacity(token.raw.len());
    let mut i = 0;
    while i < token.raw.len() {
        let (byte, used) = escaped(token, i)?;
        out.push(byte);
        i += used;
    }
    Ok(out)
}

/// The byte at `i` of a token's raw text (an escape or not), and how many
/// raw bytes it took.
fn escaped(token: &Token, i: usize) -> Result<(u8, usize), Fail> {
    let raw = &token.raw;
    if raw[i] != b'\\' {
        return Ok((raw[i], 1));
    }
    let next = raw.get(i + 1).copied().unwrap_or(b'\\');
    if !next.is_ascii_digit() {
        return Ok((next, 2));
    }
    let digits = raw
        .get(i + 1..i + 4)
        .filter(|d| d.iter().all(u8::is_ascii_digit));
    let value = digits.map(|d| d.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0')));
    match value {
        Some(v) if v <= 255 => Ok((v as u8, 4)),
        _ => fail(
            token.line,
            format!("{}: \\DDD takes three digits, at most 255", token.show()),
        ),
    }
}

/// A domain name in presentation form, relative to `origin` unless it
/// ends with a dot; `@` is the origin.
pub(super) fn parse_name(token: &Token, origin: &[u8]) -> Result<Vec<u8>, Fail> {
    let bad = |why: &str| {
        fail(
            token.line,
            format!("{} is not a valid name: {why}", token.show()),
        )
    };
    if token.raw == b"@" && !token.quoted {
        return Ok(origin.to_vec());
    }
    if token.raw == b"." {
        return Ok(alloc::vec![0]);
    }
    if token.raw.is_empty() {
        return bad("it is empty");
    }
    let mut wire = Vec::with_capacity(token.raw.len() + 2);
    let mut label_start = 0;
    wire.push(0);
    let mut absolute = false;
    let mut i = 0;
    while i < token.raw.len() {
        if token.raw[i] == b'.' {
            if wire.len() == label_start + 1 {
                return bad("an empty label");
            }
            label_start = wire.len();
            wire.push(0);
            absolute = i + 1 == token.raw.len();
            i += 1;
            continue;
        }
        let (byte, used) = escaped(token, i)?;
        i += used;
        if wire.len() - label_start > MAX_LABEL {
            return bad("a label is longer than 63 bytes");
        }
        wire.push(byte);
        wire[label_start] += 1;
    }
    if absolute {
        // The last length byte pushed is the root's.
    } else {
        if wire.len() == label_start + 1 {
            return bad("an empty label");
        }
        wire.extend_from_slice(origin);
    }
    if wire.len() > MAX_NAME {
        return bad("longer than 255 bytes");
    }
    if !name::is_name(&wire) {
        return bad("not a name");
    }
    Ok(wire)
}

/// A TTL or SOA timer: seconds, or BIND's units (`1w2d3h4m5s`).
pub(super) fn parse_duration(token: &Token) -> Result<u32, Fail> {
    let text = &token.raw;
    let bad = || {
        fail(
            token.line,
            format!(
                "{} is not a time in seconds (or with units, like 1h30m)",
                token.show()
            ),
        )
    };
    if token.quoted || text.is_empty() || !text[0].is_ascii_digit() {
        return bad();
    }
    let mut total: u32 = 0;
    let mut number: Option<u32> = None;
    let mut units = false;
    for &c in text {
        if c.is_ascii_digit() {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(c - b'0')));
            match n {
                Some(n) => number = Some(n),
                None => {
                    return fail(
                        token.line,
                        format!("{} is larger than 4294967295", token.show()),
                    )
                }
            }
            continue;
        }
        let scale: u32 = match c.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return bad(),
        };
        let Some(n) = number.take() else { return bad() };
        units = true;
        total = match n.checked_mul(scale).and_then(|v| total.checked_add(v)) {
            Some(t) => t,
            None => {
                return fail(
                    token.line,
                    format!("{} is larger than 4294967295 seconds", token.show()),
                )
            }
        };
    }
    match number {
        Some(n) if !units => Ok(n),
        None if units => Ok(total),
        _ => bad(),
    }
}

fn parse_class(token: &Token) -> Option<Class> {
    if token.quoted {
        return None;
    }
    let text = core::str::from_utf8(&token.raw).ok()?;
    if let Some(number) = text
        .strip_prefix("CLASS")
        .or_else(|| text.strip_prefix("class"))
    {
        return number.parse().ok().map(Class);
    }
    // HS (Hesiod, 4) is a class a master file may name.
    if text.eq_ignore_ascii_case("HS") {
        return Some(Class(4));
    }
    Class::from_mnemonic(text).filter(|c| *c != Class::ANY)
}

fn parse_type(token: &Token) -> Option<Rtype> {
    if token.quoted {
        return None;
    }
    let text = core::str::from_utf8(&token.raw).ok()?;
    if let Some(number) = text
        .strip_prefix("TYPE")
        .or_else(|| text.strip_prefix("type"))
    {
        return number.parse().ok().map(Rtype);
    }
    Rtype::from_mnemonic(text)
}

/// The largest TTL (RFC 2181 8).
const MAX_TTL: u32 = (1 << 31) - 1;

/// Reads the records of a master file, each with its line. `origin` is
/// the first `$ORIGIN` (the zone's, from the file name). `file` names the
/// file in errors.
pub fn read_records(
    text: &[u8],
    file: &str,
    origin: &[u8],
) -> Result<Vec<(Record, usize)>, ReadError> {
    records(text, origin).map_err(|f| ReadError {
        file: file.to_owned(),
        line: f.line,
        message: f.message,
    })
}

fn records(text: &[u8], origin: &[u8]) -> Result<Vec<(Record, usize)>, Fail> {
    let mut origin = origin.to_vec();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut last_class = Class::IN;
    let mut last_owner: Option<Vec<u8>> = None;
    let mut out = Vec::new();
    for entry in entries(text)? {
        let tokens = &entry.tokens;
        let first = &tokens[0];
        if !entry.owner_omitted && !first.quoted && first.raw.first() == Some(&b'$') {
            let one = || match &tokens[..] {
                [_, arg] => Ok(arg),
                _ => fail(entry.line, format!("{} takes one argument", first.show())),
            };
            if first.is("$ORIGIN") {
                let arg = one()?;
                origin = parse_name(arg, &origin)?;
            } else if first.is("$TTL") {
                let ttl = parse_duration(one()?)?;
                default_ttl = Some(check_ttl(ttl, &tokens[1])?);
            } else if first.is("$INCLUDE") {
                return fail(
                    entry.line,
                    "$INCLUDE is not supported: keep each zone in one file",
                );
            } else {
                return fail(entry.line, format!("unknown directive {}", first.show()));
            }
            continue;
        }
        let mut rest = &tokens[..];
        let owner = if entry.owner_omitted {
            last_owner.clone().ok_or(Fail {
                line: entry.line,
                message: "the first record must name its owner (this line starts with a blank)"
                    .into(),
            })?
        } else {
            rest = &rest[1..];
            parse_name(first, &origin)?
        };
        let mut ttl = None;
        let mut class = None;
        let rtype = loop {
            let Some(token) = rest.first() else {
                return fail(entry.line, "a record without a type");
            };
            rest = &rest[1..];
            if ttl.is_none() && token.raw.first().is_some_and(u8::is_ascii_digit) && !token.quoted {
                ttl = Some(check_ttl(parse_duration(token)?, token)?);
            } else if let (None, Some(c)) = (class, parse_class(token)) {
                class = Some(c);
            } else if let Some(t) = parse_type(token) {
                break t;
            } else {
                return fail(
                    token.line,
                    format!(
                        "{} is not a record type (nor a TTL or class here)",
                        token.show()
                    ),
                );
            }
        };
        if ttl.is_some() {
            last_ttl = ttl;
        }
        let Some(ttl) = ttl.or(default_ttl).or(last_ttl) else {
            return fail(
                entry.line,
                "no TTL for this record: give one, or set $TTL before it",
            );
        };
        let class = class.unwrap_or(last_class);
        last_class = class;
        let rdata = text_rdata::parse(rtype, rest, &origin, entry.line).map_err(|f| Fail {
            line: f.line,
            message: format!("{rtype}: {}", f.message),
        })?;
        last_owner = Some(owner.clone());
        out.push((
            Record {
                owner,
                rtype,
                class,
                ttl,
                rdata,
            },
            entry.line,
        ));
    }
    Ok(out)
}

fn check_ttl(ttl: u32, token: &Token) -> Result<u32, Fail> {
    if ttl > MAX_TTL {
        return fail(
            token.line,
            format!("{}: a TTL is at most 2147483647 (RFC 2181 8)", token.show()),
        );
    }
    Ok(ttl)
}

/// Reads and checks one zone from a master file: `origin` (wire form) is
/// the zone's apex, which must own the SOA. Errors carry `file:line`.
pub fn read_zone(text: &[u8], file: &str, origin: &[u8]) -> Result<Zone, ReadError> {
    let error = |line, message: String| ReadError {
        file: file.to_owned(),
        line,
        message,
    };
    let origin = origin.to_ascii_lowercase();
    let records = read_records(text, file, &origin)?;
    if let Some((soa, line)) = records.iter().find(|(r, _)| r.rtype == Rtype::SOA) {
        if !name::eq(&soa.owner, &origin) {
            return Err(error(
                *line,
                format!(
                    "the SOA's owner is {}, but this file is for the zone {}",
                    name::Display(&soa.owner),
                    name::Display(&origin)
                ),
            ));
        }
    }
    let lines: Vec<(Vec<u8>, Rtype, usize)> = records
        .iter()
        .map(|(r, line)| (r.owner.to_ascii_lowercase(), r.rtype, *line))
        .collect();
    Zone::from_records(&origin, records.into_iter().map(|(r, _)| r).collect()).map_err(
        |e: ZoneError| {
            let at = |typed: bool| {
                lines
                    .iter()
                    .find(|(owner, rtype, _)| {
                        name::eq(owner, &e.name) && (!typed || Some(*rtype) == e.rtype)
                    })
                    .map(|l| l.2)
            };
            let line = at(true).or_else(|| at(false)).unwrap_or(0);
            error(line, e.to_string())
        },
    )
}
