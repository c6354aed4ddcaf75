//! The DNS message format: header, questions, names with compression,
//! resource records and EDNS(0), as checked views and representations.
//!
//! | piece | what it guarantees |
//! |-------|--------------------|
//! | [`Message`] | a view over a message's bytes; [`Message::new_checked`] makes every header accessor panic-free |
//! | [`Questions`], [`Records`] | walk the sections; each item is checked before it is handed out, and a message that ends early, lies in its counts or holds a bad name yields one [`ParseError`] and then stops |
//! | [`Name`] | a checked name, in a message (compressed) or on its own (uncompressed): pointers only strictly backwards, at most [`MAX_POINTER_HOPS`] of them, labels of at most 63 bytes, at most 255 bytes in all |
//! | [`Rdata`] | typed record data for A, AAAA, NS, CNAME, SOA, MX, TXT, SRV, PTR, CAA; every other type opaque (RFC 3597) |
//! | [`Opt`] | an EDNS(0) OPT record (RFC 6891): payload size, extended rcode, version, DO, options |
//! | [`MessageBuilder`] | writes a message into a caller's buffer without allocating: compression of owner names and of the names inside NS, CNAME, SOA, PTR and MX data, truncation a record at a time, room kept for the OPT record |
//!
//! Nothing here allocates: names are decompressed into a caller's
//! `[u8; 255]`, and displaying them writes straight to the formatter.
//!
//! Why hand-written rather than `domain` or `hickory-proto`: the answer path
//! of the server parses one question and writes a handful of records per
//! query. `hickory-proto` parses a whole message into owned `Vec`s and
//! `Name`s (allocations for every label) and needs `alloc` for its encoder;
//! `domain`'s octets-generic views are close to this design but bring a large
//! generic API and its own `Name` types, where the zone index and the server
//! here share one representation (uncompressed wire bytes) and need
//! exactly one compression table with a known size. What is here is about
//! 2,000 lines with tests and allocation-free by construction.

mod builder;
mod edns;
mod header;
mod message;
mod name;
mod rdata;

pub use builder::{BuildError, Checkpoint, MessageBuilder, COMPRESSION_ENTRIES};
pub use edns::{Opt, OptOptions, OptRepr, DO_BIT, OPT_RECORD_LEN};
pub use header::{flags, Section, HEADER_LEN};
pub use message::{Message, Question, Questions, Record, Records};
pub(crate) use name::write_label;
pub use name::{Labels, Name, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_POINTER_HOPS};
pub use rdata::{CharacterStrings, Rdata};

use core::fmt;

/// Why a message (or a piece of one) could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes end inside a field: a short header, a name, question or
    /// record cut off, or counts that promise more than the message holds.
    Truncated,
    /// A compression pointer that does not point strictly backwards (to
    /// itself, forwards, or into a loop), or too many pointers in one name.
    BadPointer,
    /// A label of a reserved type (its length byte is 64..=191: the 0x40 and
    /// 0x80 types of RFC 6891 section 5, or a label over 63 bytes).
    BadLabel,
    /// A name longer than 255 bytes in uncompressed wire form.
    NameTooLong,
    /// An uncompressed name (given on its own) with bytes after its root
    /// label, or a compression pointer where none may be.
    BadName,
    /// Record data that does not have its type's shape (an A record of 3
    /// bytes, a name that runs past the data, bytes left over).
    BadRdata,
    /// An OPT record that breaks RFC 6891: an owner other than the root, an
    /// option that runs past the data, or an OPT outside the additional
    /// section.
    BadOpt,
    /// A second OPT record in one message (RFC 6891 6.1.1: FORMERR).
    DuplicateOpt,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Truncated => "message truncated",
            ParseError::BadPointer => "bad compression pointer",
            ParseError::BadLabel => "reserved label type",
            ParseError::NameTooLong => "name over 255 bytes",
            ParseError::BadName => "malformed name",
            ParseError::BadRdata => "malformed record data",
            ParseError::BadOpt => "malformed OPT record",
            ParseError::DuplicateOpt => "more than one OPT record",
        })
    }
}

/// Reads a big-endian `u16` at `at`, if the bytes are there.
fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Reads a big-endian `u32` at `at`, if the bytes are there.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let quad = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
}
