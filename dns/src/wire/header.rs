//! The fixed 12-byte message header (RFC 1035 4.1.1): where each field is,
//! and the flag bits. The accessors live on [`Message`](super::Message).

/// The length of the header: every message starts with it.
pub const HEADER_LEN: usize = 12;

/// Byte ranges of the header fields.
pub(crate) mod field {
    use core::ops::Range;

    /// The query identifier, copied into the response.
    pub const ID: Range<usize> = 0..2;
    /// QR, opcode, AA, TC, RD, RA, Z, AD, CD and the low 4 bits of the rcode.
    pub const FLAGS: Range<usize> = 2..4;
    /// The number of questions; the answer, authority and additional
    /// counts follow it, two bytes each, in the order of
    /// [`Section`](super::Section).
    pub const QDCOUNT: Range<usize> = 4..6;
}

/// The bits of the flags field (bytes 2 and 3 of the header).
pub mod flags {
    /// A response (set) or a query (clear).
    pub const QR: u16 = 0x8000;
    /// Where the opcode sits (4 bits).
    pub const OPCODE_MASK: u16 = 0x7800;
    /// How far the opcode is shifted.
    pub const OPCODE_SHIFT: u16 = 11;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated: the whole answer did not fit.
    pub const TC: u16 = 0x0200;
    /// Recursion desired (copied from the query).
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Reserved, zero.
    pub const Z: u16 = 0x0040;
    /// Authentic data (RFC 4035).
    pub const AD: u16 = 0x0020;
    /// Checking disabled (RFC 4035).
    pub const CD: u16 = 0x0010;
    /// The low 4 bits of the response code.
    pub const RCODE_MASK: u16 = 0x000f;
}

/// The sections of a message, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// The question section.
    Question,
    /// The answer section.
    Answer,
    /// The authority section.
    Authority,
    /// The additional section.
    Additional,
}

impl Section {
    /// The position of this section's count in the header (0 for questions).
    pub(crate) fn index(self) -> usize {
        match self {
            Section::Question => 0,
            Section::Answer => 1,
            Section::Authority => 2,
            Section::Additional => 3,
        }
    }

    /// The section at a count's position.
    pub(crate) fn from_index(index: usize) -> Section {
        match index {
            0 => Section::Question,
            1 => Section::Answer,
            2 => Section::Authority,
            _ => Section::Additional,
        }
    }
}
