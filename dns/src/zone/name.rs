//! Domain names in uncompressed wire form: checks, label walks, the
//! canonical order of RFC 4034 6.1 and the presentation form for messages.
//!
//! A length byte is at most 63, so it is never an ASCII capital letter:
//! lowercasing or comparing a whole wire name ASCII-case-insensitively is
//! the same as doing it label by label.

use core::cmp::Ordering;
use core::fmt;

/// The longest name in wire form (RFC 1035 2.3.4).
pub const MAX_NAME: usize = crate::wire::MAX_NAME_LEN;
/// The longest label (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = crate::wire::MAX_LABEL_LEN;
/// The most labels a name can have, the root's empty label not counted.
pub const MAX_LABELS: usize = 127;

/// Why a name is not a valid uncompressed wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The bytes end before the root label.
    Truncated,
    /// A label longer than 63 bytes, or a compression pointer (not allowed
    /// in uncompressed form).
    BadLabel,
    /// More than 255 bytes.
    TooLong,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Truncated => "the name is cut short",
            NameError::BadLabel => "a label is longer than 63 bytes",
            NameError::TooLong => "the name is longer than 255 bytes",
        })
    }
}

/// The length of the uncompressed wire name at the start of `bytes`.
pub fn name_len(bytes: &[u8]) -> Result<usize, NameError> {
    let mut at = 0;
    loop {
        let len = *bytes.get(at).ok_or(NameError::Truncated)? as usize;
        if len > MAX_LABEL {
            return Err(NameError::BadLabel);
        }
        at += 1 + len;
        if at > MAX_NAME {
            return Err(NameError::TooLong);
        }
        if len == 0 {
            return Ok(at);
        }
        if at > bytes.len() {
            return Err(NameError::Truncated);
        }
    }
}

/// Whether `name` is exactly one valid uncompressed wire name.
pub fn is_name(name: &[u8]) -> bool {
    name_len(name) == Ok(name.len())
}

/// The start offsets of a valid name's labels (the root's not included),
/// leftmost first, and their number; None if `name` is not a valid name.
pub fn label_starts(name: &[u8]) -> Option<([u8; MAX_LABELS], usize)> {
    let mut starts = [0u8; MAX_LABELS];
    let mut count = 0;
    let mut at = 0;
    loop {
        let len = *name.get(at)? as usize;
        if len == 0 {
            return (at + 1 == name.len()).then_some((starts, count));
        }
        if len > MAX_LABEL || count == MAX_LABELS || at + 1 + len >= name.len() {
            return None;
        }
        starts[count] = at as u8;
        count += 1;
        at += 1 + len;
    }
}

/// The number of labels of a valid name (the root has 0).
pub fn label_count(name: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        count += 1;
        at += 1 + len as usize;
    }
    count
}

/// The name without its leftmost label; None for the root.
pub fn parent(name: &[u8]) -> Option<&[u8]> {
    match name.first() {
        Some(&len) if len != 0 => name.get(1 + len as usize..),
        _ => None,
    }
}

/// Whether `name` is `ancestor` or below it (ASCII case-insensitive).
pub fn is_at_or_below(name: &[u8], ancestor: &[u8]) -> bool {
    let mut rest = name;
    loop {
        if rest.len() == ancestor.len() {
            return rest.eq_ignore_ascii_case(ancestor);
        }
        if rest.len() < ancestor.len() {
            return false;
        }
        match parent(rest) {
            Some(p) => rest = p,
            None => return false,
        }
    }
}

/// Whether two names are equal, ASCII case-insensitively.
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// RFC 4034 6.1's canonical order of two valid names: by their labels
/// from the rightmost, each compared as lowercased octet strings, a name
/// sorting before its descendants. Invalid names sort by their bytes.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (Some((sa, na)), Some((sb, nb))) = (label_starts(a), label_starts(b)) else {
        return a.cmp(b);
    };
    for i in 1..=na.min(nb) {
        let la = label(a, sa[na - i]);
        let lb = label(b, sb[nb - i]);
        let ord = la
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(lb.iter().map(u8::to_ascii_lowercase));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    na.cmp(&nb)
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;

/// One byte into a hash (FxHash's step; lowercase, so the hash ignores
/// ASCII case as name comparisons do).
fn step(hash: u64, byte: u8) -> u64 {
    (hash.rotate_left(5) ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// The hash of a name, ASCII case-insensitive. Its bytes are taken last
/// to first, so the hash of `*.` and a name continues the name's
/// ([`wildcard_hash`]).
pub(crate) fn hash(name: &[u8]) -> u64 {
    name.iter().rev().fold(SEED, |hash, &b| step(hash, b))
}

/// The hash of `*.` followed by the name whose hash is `hash`.
pub(crate) fn wildcard_hash(hash: u64) -> u64 {
    step(step(hash, b'*'), 1)
}

/// Names found by hash: an open-addressing table of positions in a list
/// of names (each slot holds a position + 1, 0 when empty), at most half
/// full, probed linearly.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameTable {
    slots: alloc::vec::Vec<u32>,
}

impl NameTable {
    /// The table of these names.
    pub fn new<'n>(names: impl ExactSizeIterator<Item = &'n [u8]>) -> NameTable {
        let size = (names.len() * 2).next_power_of_two().max(2);
        let mut slots = alloc::vec![0u32; size];
        for (position, name) in names.enumerate() {
            let mut slot = hash(name) as usize & (size - 1);
            while slots[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            slots[slot] = position as u32 + 1;
        }
        NameTable { slots }
    }

    /// The position of the name with this hash for which `is` says yes.
    pub fn find(&self, hash: u64, is: impl Fn(usize) -> bool) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = hash as usize & mask;
        loop {
            let position = (*self.slots.get(slot)? as usize).checked_sub(1)?;
            if is(position) {
                return Some(position);
            }
            slot = (slot + 1) & mask;
        }
    }
}

fn label(name: &[u8], start: u8) -> &[u8] {
    let start = start as usize;
    &name[start + 1..start + 1 + name[start] as usize]
}

/// A wire name shown in presentation form (`www.example.com.`), with
/// `\.`, `\\` and `\DDD` escapes where the master-file format needs them.
pub struct Display<'a>(pub &'a [u8]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0;
        let mut at = 0;
        if name.first() == Some(&0) {
            return f.write_str(".");
        }
        while let Some(&len) = name.get(at) {
            if len == 0 {
                return Ok(());
            }
            let Some(bytes) = name.get(at + 1..at + 1 + len as usize) else {
                return f.write_str("<cut short>");
            };
            crate::wire::write_label(f, bytes)?;
            at += 1 + len as usize;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wire;
    use alloc::format;
    use alloc::vec::Vec;

    #[test]
    fn checks_lengths_labels_and_pointers() {
        assert_eq!(name_len(&wire("www.example.com")), Ok(17));
        assert_eq!(name_len(b"\x03www"), Err(NameError::Truncated));
        assert_eq!(name_len(b"\xc0\x0c"), Err(NameError::BadLabel));
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(name_len(&long), Err(NameError::TooLong));
        assert!(!is_name(b"\x01a\x00extra"));
        assert!(is_name(b"\x00"));
    }

    #[test]
    fn canonical_order_is_rfc_4034_s_example() {
        // RFC 4034 6.1's list, in order.
        let names = [
            "example",
            "a.example",
            "yljkjljk.a.example",
            "Z.a.example",
            "zABC.a.EXAMPLE",
            "z.example",
            "\u{1}.z.example",
            "*.z.example",
            "\u{c8}.z.example",
        ];
        let wires: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                // \200 is one byte, not UTF-8's two.
                let mut w = wire(n);
                if n.starts_with('\u{c8}') {
                    w = [&[1u8, 200][..], &wire("z.example")].concat();
                }
                w
            })
            .collect();
        for pair in wires.windows(2) {
            assert_eq!(
                canonical_cmp(&pair[0], &pair[1]),
                Ordering::Less,
                "{pair:?}"
            );
            assert_eq!(canonical_cmp(&pair[1], &pair[0]), Ordering::Greater);
        }
        assert_eq!(
            canonical_cmp(&wire("A.Example"), &wire("a.example")),
            Ordering::Equal
        );
    }

    #[test]
    fn hashes_ignore_case_and_find_names_in_a_table() {
        assert_eq!(
            hash(&wire("www.Example.COM")),
            hash(&wire("WWW.example.com"))
        );
        assert_ne!(
            hash(&wire("www.example.com")),
            hash(&wire("ww.example.com"))
        );
        assert_eq!(
            hash(&wire("*.example.com")),
            wildcard_hash(hash(&wire("example.com")))
        );
        let names = [
            wire(""),
            wire("example"),
            wire("a.example"),
            wire("b.example"),
            wire("*.example"),
        ];
        let table = NameTable::new(names.iter().map(|n| &n[..]));
        for (i, n) in names.iter().enumerate() {
            let upper = n.to_ascii_uppercase();
            assert_eq!(table.find(hash(&upper), |p| eq(&names[p], &upper)), Some(i));
        }
        let other = wire("c.example");
        assert_eq!(table.find(hash(&other), |p| eq(&names[p], &other)), None);
        assert_eq!(NameTable::default().find(1, |_| true), None);
    }

    #[test]
    fn walks_up_and_tests_ancestry() {
        let n = wire("www.Example.com");
        assert_eq!(parent(&n), Some(&wire("Example.com")[..]));
        assert_eq!(parent(b"\x00"), None);
        assert!(is_at_or_below(&n, &wire("example.COM")));
        assert!(is_at_or_below(&n, b"\x00"));
        assert!(!is_at_or_below(&n, &wire("ample.com")));
        assert!(!is_at_or_below(&wire("com"), &n));
        assert_eq!(label_count(&n), 3);
        assert_eq!(label_starts(&n).unwrap().1, 3);
        assert!(label_starts(b"\x01a").is_none());
    }

    #[test]
    fn displays_with_escapes() {
        let n = [&[3u8, b'a', b'.', 7][..], &wire("example")].concat();
        assert_eq!(format!("{}", Display(&n)), "a\\.\\007.example.");
        assert_eq!(format!("{}", Display(b"\x00")), ".");
    }
}
