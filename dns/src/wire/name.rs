//! Domain names on the wire (RFC 1035 3.1, 4.1.4): length-prefixed labels
//! ending with the root's zero byte, in a message possibly compressed with
//! pointers to earlier names.
//!
//! A [`Name`] is only made by [`Name::parse`] (a name in a message) or
//! [`Name::parse_uncompressed`] / [`Name::from_wire`] (a name on its own, as
//! zones and record data keep them), which check everything once: labels of
//! at most 63 bytes and no reserved label types, at most 255 bytes in
//! uncompressed form, and every pointer strictly below the start of the run
//! of labels it ends (so a chain of pointers always moves backwards and can
//! neither loop nor point at itself or forwards), at most
//! [`MAX_POINTER_HOPS`] of them. After that, walking, comparing,
//! decompressing and displaying cannot fail.

use core::fmt;

use super::ParseError;

/// The longest name in uncompressed wire form, root byte included.
pub const MAX_NAME_LEN: usize = 255;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;
/// The most compression pointers one name may follow. Pointers that always
/// go backwards cannot loop, so this only bounds the work a hostile message
/// can cause; real compressors use one pointer per name.
pub const MAX_POINTER_HOPS: usize = 32;

/// A checked domain name: in a message (maybe compressed) or on its own.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    /// The message the name is in (or the name's own bytes).
    bytes: &'a [u8],
    /// Where its first label is.
    start: usize,
    /// Its length in uncompressed wire form, root byte included (1..=255).
    wire_len: usize,
}

impl<'a> Name<'a> {
    /// Reads the name at `start` in `message`, following compression
    /// pointers. Returns the name and the offset just after it in place
    /// (after its root byte or its first pointer).
    pub fn parse(message: &'a [u8], start: usize) -> Result<(Name<'a>, usize), ParseError> {
        let mut pos = start;
        // Every pointer must go strictly below the start of the run of
        // labels it ends: the floor falls with each hop.
        let mut floor = start;
        let mut hops = 0;
        let mut end = None;
        // Bytes so far in uncompressed form, without the root byte.
        let mut len = 0usize;
        loop {
            let byte = *message.get(pos).ok_or(ParseError::Truncated)?;
            match byte & 0xc0 {
                0x00 if byte == 0 => {
                    let end = end.unwrap_or(pos + 1);
                    let name = Name {
                        bytes: message,
                        start,
                        wire_len: len + 1,
                    };
                    return Ok((name, end));
                }
                0x00 => {
                    let label = usize::from(byte);
                    len += 1 + label;
                    if len + 1 > MAX_NAME_LEN {
                        return Err(ParseError::NameTooLong);
                    }
                    if message.len() < pos + 1 + label {
                        return Err(ParseError::Truncated);
                    }
                    pos += 1 + label;
                }
                0xc0 => {
                    let low = *message.get(pos + 1).ok_or(ParseError::Truncated)?;
                    let target = usize::from(byte & 0x3f) << 8 | usize::from(low);
                    hops += 1;
                    if target >= floor || hops > MAX_POINTER_HOPS {
                        return Err(ParseError::BadPointer);
                    }
                    end.get_or_insert(pos + 2);
                    floor = target;
                    pos = target;
                }
                // 0x40 (extended labels, RFC 6891 5) and 0x80: reserved.
                _ => return Err(ParseError::BadLabel),
            }
        }
    }

    /// Reads an uncompressed name at `start` in `bytes` (as record data and
    /// zones keep them: a pointer is an error). Returns the name and the
    /// offset just after its root byte.
    pub fn parse_uncompressed(
        bytes: &'a [u8],
        start: usize,
    ) -> Result<(Name<'a>, usize), ParseError> {
        let mut pos = start;
        loop {
            let byte = *bytes.get(pos).ok_or(ParseError::Truncated)?;
            match byte & 0xc0 {
                0x00 if byte == 0 => {
                    let name = Name {
                        bytes,
                        start,
                        wire_len: pos + 1 - start,
                    };
                    return Ok((name, pos + 1));
                }
                0x00 => {
                    pos += 1 + usize::from(byte);
                    if pos + 1 - start > MAX_NAME_LEN {
                        return Err(ParseError::NameTooLong);
                    }
                    if bytes.len() < pos {
                        return Err(ParseError::Truncated);
                    }
                }
                0xc0 => return Err(ParseError::BadName),
                _ => return Err(ParseError::BadLabel),
            }
        }
    }

    /// Checks that `wire` is exactly one uncompressed name.
    pub fn from_wire(wire: &'a [u8]) -> Result<Name<'a>, ParseError> {
        match Name::parse_uncompressed(wire, 0)? {
            (name, end) if end == wire.len() => Ok(name),
            _ => Err(ParseError::BadName),
        }
    }

    /// The root name, `.`.
    pub fn root() -> Name<'static> {
        Name {
            bytes: &[0],
            start: 0,
            wire_len: 1,
        }
    }

    /// The length in uncompressed wire form, root byte included.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// Whether this is the root name.
    pub fn is_root(&self) -> bool {
        self.wire_len == 1
    }

    /// The labels, first (leftmost) first, without the root's empty label.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            bytes: self.bytes,
            pos: self.start,
            steps: 0,
        }
    }

    /// The number of labels, the root's not counted.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Decompresses the name into `out`, case kept; returns its length.
    pub fn write_wire(&self, out: &mut [u8; MAX_NAME_LEN]) -> usize {
        self.write(out, false)
    }

    /// Decompresses the name into `out` in ASCII lowercase (the form zone
    /// lookups take); returns its length.
    pub fn write_wire_lowercase(&self, out: &mut [u8; MAX_NAME_LEN]) -> usize {
        self.write(out, true)
    }

    fn write(&self, out: &mut [u8; MAX_NAME_LEN], lowercase: bool) -> usize {
        let mut len = 0;
        for label in self.labels() {
            // A checked name fits: the labels and the root byte are at most
            // 255 bytes. The guard keeps this panic-free regardless.
            let Some(slot) = out.get_mut(len..len + 1 + label.len()) else {
                break;
            };
            slot[0] = label.len() as u8;
            slot[1..].copy_from_slice(label);
            if lowercase {
                slot[1..].make_ascii_lowercase();
            }
            len += 1 + label.len();
        }
        if let Some(root) = out.get_mut(len) {
            *root = 0;
        }
        len + 1
    }

    /// Whether two names are equal, ignoring ASCII case (RFC 4343).
    pub fn eq_ignore_case(&self, other: &Name<'_>) -> bool {
        self.wire_len == other.wire_len
            && self
                .labels()
                .zip(other.labels())
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// Whether this name equals an uncompressed name, ignoring ASCII case.
    /// A malformed `wire` compares unequal.
    pub fn eq_wire_ignore_case(&self, wire: &[u8]) -> bool {
        Name::from_wire(wire).is_ok_and(|other| self.eq_ignore_case(&other))
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// The presentation format (RFC 1035 5.1, RFC 4343): labels joined by dots
/// with a final dot; a dot, backslash or another character special in master
/// files escaped with a backslash, other bytes outside `!`..=`~` as `\DDD`.
impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            write_label(f, label)?;
        }
        Ok(())
    }
}

/// One label in presentation form and its final dot: a dot, backslash or
/// another character special in master files escaped with a backslash,
/// other bytes outside `!`..=`~` as `\DDD`. Shared with the zone's
/// [`crate::zone::name::Display`].
pub(crate) fn write_label(f: &mut fmt::Formatter<'_>, label: &[u8]) -> fmt::Result {
    for &byte in label {
        match byte {
            b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                write!(f, "\\{}", byte as char)?
            }
            0x21..=0x7e => write!(f, "{}", byte as char)?,
            _ => write!(f, "\\{byte:03}")?,
        }
    }
    f.write_str(".")
}

/// The labels of a [`Name`], leftmost first.
#[derive(Clone)]
pub struct Labels<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Labels and pointers walked: a bound that holds even for bytes that
    /// were never checked.
    steps: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            self.steps += 1;
            if self.steps > MAX_NAME_LEN + MAX_POINTER_HOPS {
                return None;
            }
            let byte = *self.bytes.get(self.pos)?;
            if byte & 0xc0 == 0xc0 {
                let low = *self.bytes.get(self.pos + 1)?;
                self.pos = usize::from(byte & 0x3f) << 8 | usize::from(low);
                continue;
            }
            if byte == 0 || byte & 0xc0 != 0 {
                self.pos = usize::MAX;
                return None;
            }
            let label = self
                .bytes
                .get(self.pos + 1..self.pos + 1 + usize::from(byte))?;
            self.pos += 1 + usize::from(byte);
            return Some(label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    /// `www.example.com.` at 12 after a zeroed header, then `mail` + a
    /// pointer to `example.com.` (offset 16) at 29.
    fn compressed() -> Vec<u8> {
        let mut m = alloc::vec![0u8; 12];
        m.extend_from_slice(b"\x03www\x07Example\x03com\x00");
        m.extend_from_slice(b"\x04mail\xc0\x10");
        m
    }

    #[test]
    fn reads_plain_and_compressed_names() {
        let m = compressed();
        let (www, end) = Name::parse(&m, 12).unwrap();
        assert_eq!(end, 29);
        assert_eq!(www.to_string(), "www.Example.com.");
        assert_eq!(www.wire_len(), 17);
        let (mail, end) = Name::parse(&m, 29).unwrap();
        assert_eq!(end, m.len());
        assert_eq!(mail.to_string(), "mail.Example.com.");
        assert_eq!(mail.label_count(), 3);
        let mut out = [0u8; MAX_NAME_LEN];
        let len = mail.write_wire_lowercase(&mut out);
        assert_eq!(&out[..len], b"\x04mail\x07example\x03com\x00");
        let len = mail.write_wire(&mut out);
        assert_eq!(&out[..len], b"\x04mail\x07Example\x03com\x00");
        assert!(mail.eq_wire_ignore_case(b"\x04MAIL\x07example\x03COM\x00"));
        assert!(!mail.eq_wire_ignore_case(b"\x04mail\x07example\x03co\x00"));
        assert!(!www.eq_ignore_case(&mail));
    }

    #[test]
    fn pointers_must_go_strictly_backwards() {
        // To itself.
        let m = [0u8, 0, 0xc0, 2];
        assert_eq!(Name::parse(&m, 2).unwrap_err(), ParseError::BadPointer);
        // Forwards.
        let m = [0xc0u8, 2, 1, b'a', 0];
        assert_eq!(Name::parse(&m, 0).unwrap_err(), ParseError::BadPointer);
        // A loop through a label: `a` then a pointer back to the `a`.
        let m = [0u8, 0, 1, b'a', 0xc0, 2];
        assert_eq!(Name::parse(&m, 2).unwrap_err(), ParseError::BadPointer);
        // Two names pointing at each other.
        let m = [1u8, b'a', 0xc0, 4, 1, b'b', 0xc0, 0];
        assert_eq!(Name::parse(&m, 4).unwrap_err(), ParseError::BadPointer);
        assert_eq!(Name::parse(&m, 0).unwrap_err(), ParseError::BadPointer);
        // A pointer cut in half.
        assert_eq!(
            Name::parse(&[0xc0u8], 0).unwrap_err(),
            ParseError::Truncated
        );
    }

    #[test]
    fn pointer_chains_are_bounded() {
        // A root at 0, then pointers each pointing at the one before.
        let mut m = alloc::vec![0u8];
        for i in 0..=MAX_POINTER_HOPS {
            let target = if i == 0 { 0 } else { 1 + 2 * (i - 1) };
            m.extend_from_slice(&[0xc0, target as u8]);
        }
        let last = m.len() - 2;
        assert_eq!(Name::parse(&m, last).unwrap_err(), ParseError::BadPointer);
        let (name, _) = Name::parse(&m, last - 2).unwrap();
        assert!(name.is_root());
    }

    #[test]
    fn long_names_and_labels_are_refused() {
        // 255 bytes: four labels of 63 and one of 1... 4*64 = 256 > 255.
        let mut m = Vec::new();
        for _ in 0..3 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.push(61);
        m.extend_from_slice(&[b'b'; 61]);
        m.push(0);
        assert_eq!(m.len(), 255);
        assert_eq!(Name::parse(&m, 0).unwrap().0.wire_len(), 255);
        assert_eq!(Name::from_wire(&m).unwrap().wire_len(), 255);
        let mut too_long = Vec::new();
        for _ in 0..3 {
            too_long.push(63);
            too_long.extend_from_slice(&[b'a'; 63]);
        }
        too_long.push(62);
        too_long.extend_from_slice(&[b'b'; 62]);
        too_long.push(0);
        assert_eq!(too_long.len(), 256);
        assert_eq!(
            Name::parse(&too_long, 0).unwrap_err(),
            ParseError::NameTooLong
        );
        assert_eq!(
            Name::from_wire(&too_long).unwrap_err(),
            ParseError::NameTooLong
        );
        // Too long only once decompressed: 192 bytes of labels, then a
        // pointer to a 63-byte label and the root (257 bytes in all).
        let mut via_pointer = alloc::vec![63u8];
        via_pointer.extend_from_slice(&[b'a'; 63]);
        via_pointer.push(0);
        let start = via_pointer.len();
        via_pointer.extend_from_slice(&too_long[..192]);
        via_pointer.extend_from_slice(&[0xc0, 0]);
        assert_eq!(
            Name::parse(&via_pointer, start).unwrap_err(),
            ParseError::NameTooLong
        );
        // A 64-byte label: its length byte is a reserved label type.
        let mut label64 = alloc::vec![64u8];
        label64.extend_from_slice(&[b'a'; 64]);
        label64.push(0);
        assert_eq!(Name::parse(&label64, 0).unwrap_err(), ParseError::BadLabel);
        assert_eq!(Name::from_wire(&label64).unwrap_err(), ParseError::BadLabel);
        assert_eq!(
            Name::parse(&[0x80u8, 0], 0).unwrap_err(),
            ParseError::BadLabel
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let m = compressed();
        for cut in 12..29 {
            assert_eq!(
                Name::parse(&m[..cut], 12).unwrap_err(),
                ParseError::Truncated,
                "{cut}"
            );
        }
        for cut in 29..m.len() {
            assert_eq!(
                Name::parse(&m[..cut], 29).unwrap_err(),
                ParseError::Truncated,
                "{cut}"
            );
        }
    }

    #[test]
    fn uncompressed_names_stand_alone() {
        assert_eq!(Name::from_wire(b"\x01a\x00").unwrap().to_string(), "a.");
        assert_eq!(Name::from_wire(b"\x00").unwrap().to_string(), ".");
        assert!(Name::from_wire(b"\x00").unwrap().is_root());
        assert_eq!(
            Name::from_wire(b"\x01a\x00x").unwrap_err(),
            ParseError::BadName
        );
        assert_eq!(
            Name::from_wire(b"\x01a\xc0\x00").unwrap_err(),
            ParseError::BadName
        );
        assert_eq!(
            Name::from_wire(b"\x01a").unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(Name::from_wire(b"").unwrap_err(), ParseError::Truncated);
        let (name, end) = Name::parse_uncompressed(b"\x01a\x00\x01b\x00", 3).unwrap();
        assert_eq!((name.to_string().as_str(), end), ("b.", 6));
        assert_eq!(Name::root().to_string(), ".");
    }

    #[test]
    fn display_escapes_special_and_unprintable_bytes() {
        let name = Name::from_wire(b"\x05a.b\\c\x04 \"\xff\x01\x03com\x00").unwrap();
        assert_eq!(name.to_string(), "a\\.b\\\\c.\\032\\\"\\255\\001.com.");
        let name = Name::from_wire(b"\x01*\x02@$\x00").unwrap();
        assert_eq!(name.to_string(), "*.\\@\\$.");
    }

    #[test]
    fn labels_of_unchecked_bytes_never_panic() {
        // Labels walks only checked names, but stays bounded and panic-free
        // on anything (it is the same code the builder's matcher trusts).
        let loops = Labels {
            bytes: &[0xc0, 0],
            pos: 0,
            steps: 0,
        };
        assert_eq!(loops.count(), 0);
        let short = Labels {
            bytes: &[5, b'a'],
            pos: 0,
            steps: 0,
        };
        assert_eq!(short.count(), 0);
    }
}
