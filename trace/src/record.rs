//! The record format.
//!
//! A record is a whole number of little-endian 64-bit words:
//!
//! | word | bits | field |
//! |------|------|-------|
//! | 0 | 0..8   | [`Kind`] |
//! | 0 | 8..16  | flags (per kind: begin/end, direction, a count) |
//! | 0 | 16..32 | length of the record in words, this one included |
//! | 0 | 32..64 | [`Track`]: the task or device row the event belongs to |
//! | 1 | | time, nanoseconds of the guest's monotonic clock (absent in [`Kind::Pad`]) |
//! | 2.. | | the kind's fixed words (see [`Kind::fixed_words`]) |
//! | .. | | the kind's strings: each a 16-bit length and its UTF-8 bytes, packed, the last word padded with zeroes |
//!
//! Records are parsed with [`parse`], which checks every length and never
//! panics: a trace file is untrusted input (it comes from a guest).

/// Size of a word in bytes.
pub const WORD: usize = 8;
/// Longest string a record keeps; longer ones are cut at a character boundary.
pub const MAX_STRING: usize = 1024;
/// Most fields a counter record carries.
pub const MAX_FIELDS: usize = 8;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Filler up to the end of the ring; no time, no meaning.
    Pad = 0,
    /// A task was spawned: track is the new task; fixed word: the spawning
    /// track; string: where it was spawned (`file:line`).
    Spawn = 1,
    /// A task finished or was dropped.
    Exit = 2,
    /// A task's poll: flags [`BEGIN`] or [`END`].
    Poll = 3,
    /// A task was woken: track is the woken task; fixed word: the waking
    /// track (a task, or [`Track::TIMERS`], [`Track::DEVICES`]).
    Wake = 4,
    /// The executor had nothing to run and waited for a device or a timer:
    /// flags [`BEGIN`] (fixed word: the deadline, or `u64::MAX`) or [`END`].
    Idle = 5,
    /// A span of work on a track: flags [`BEGIN`] (strings: name, detail) or
    /// [`END`] (string: detail added at the end, such as a status).
    Span = 6,
    /// Values of a counter series: flags = number of fields n (at most
    /// [`MAX_FIELDS`]); fixed words: n values (`i64`); strings: the series'
    /// name, then n field names.
    Counter = 7,
    /// A moment worth marking: strings name, detail.
    Instant = 8,
    /// A frame through a network interface: flags [`IN`] or [`OUT`]; fixed
    /// word: its length in bytes.
    Frame = 9,
    /// Records lost because the ring was full (the consumer writes this):
    /// fixed word: how many.
    Dropped = 10,
}

/// Flag of [`Kind::Poll`], [`Kind::Idle`] and [`Kind::Span`]: it begins.
pub const BEGIN: u8 = 0;
/// Flag of [`Kind::Poll`], [`Kind::Idle`] and [`Kind::Span`]: it ends.
pub const END: u8 = 1;
/// Flag of [`Kind::Frame`]: received.
pub const IN: u8 = 0;
/// Flag of [`Kind::Frame`]: sent.
pub const OUT: u8 = 1;

impl Kind {
    /// The kind numbered `n`.
    pub fn from_u8(n: u8) -> Option<Kind> {
        use Kind::*;
        Some(match n {
            0 => Pad,
            1 => Spawn,
            2 => Exit,
            3 => Poll,
            4 => Wake,
            5 => Idle,
            6 => Span,
            7 => Counter,
            8 => Instant,
            9 => Frame,
            10 => Dropped,
            _ => return None,
        })
    }

    /// How many fixed words follow the time, for a record with `flags`.
    pub fn fixed_words(self, flags: u8) -> usize {
        match self {
            Kind::Spawn | Kind::Wake | Kind::Frame | Kind::Dropped => 1,
            Kind::Idle if flags == BEGIN => 1,
            Kind::Counter => flags as usize,
            _ => 0,
        }
    }
}

/// A row of the timeline: a task, or one of the fixed rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Track(pub u32);

impl Track {
    /// No particular row (recorded outside any task).
    pub const NONE: Track = Track(0);
    /// The application's main future.
    pub const MAIN: Track = Track(1);
    /// Timers firing.
    pub const TIMERS: Track = Track(0xffff_ff00);
    /// Devices found ready while the executor waited.
    pub const DEVICES: Track = Track(0xffff_ff01);
    /// Frames in and out of the network interfaces.
    pub const NET: Track = Track(0xffff_ff02);
    /// Block device requests.
    pub const BLOCK: Track = Track(0xffff_ff03);
    /// The executor's idle waits.
    pub const IDLE: Track = Track(0xffff_ff04);

    /// The track of the spawned task with this spawn number.
    pub fn task(spawn_number: u64) -> Track {
        // Spawn numbers beyond 2^32 - 258 share rows; a trace that long is
        // read for its end, where rows are reused anyway.
        Track(2 + (spawn_number % 0xffff_fe00) as u32)
    }

    /// Whether this is a task's row (main or spawned).
    pub fn is_task(self) -> bool {
        self.0 >= 1 && self.0 < Track::TIMERS.0
    }
}

/// The header word of a record.
pub fn header(kind: Kind, flags: u8, words: usize, track: Track) -> u64 {
    kind as u8 as u64
        | (flags as u64) << 8
        | ((words as u64) & 0xffff) << 16
        | (track.0 as u64) << 32
}

/// `s` cut to at most [`MAX_STRING`] bytes at a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_STRING {
        return s;
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Words that `strings` take once packed (each clipped first).
pub fn string_words(strings: &[&str]) -> usize {
    let bytes: usize = strings.iter().map(|s| 2 + clip(s).len()).sum();
    bytes.div_ceil(WORD)
}

/// Total words of a record with `fixed` words and `strings`.
pub fn record_words(fixed: usize, strings: &[&str]) -> usize {
    2 + fixed + string_words(strings)
}

/// Packs `strings` (clipped) into words, calling `put` for each word in order.
pub fn pack_strings(strings: &[&str], mut put: impl FnMut(u64)) {
    let mut word = 0u64;
    let mut filled = 0;
    let mut push = |byte: u8, word: &mut u64, filled: &mut usize| {
        *word |= (byte as u64) << (8 * *filled);
        *filled += 1;
        if *filled == WORD {
            put(*word);
            *word = 0;
            *filled = 0;
        }
    };
    for s in strings {
        let s = clip(s);
        for b in (s.len() as u16).to_le_bytes().into_iter().chain(s.bytes()) {
            push(b, &mut word, &mut filled);
        }
    }
    if filled > 0 {
        put(word);
    }
}

/// One parsed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// What it says.
    pub kind: Kind,
    /// The kind's flags.
    pub flags: u8,
    /// Its row.
    pub track: Track,
    /// Nanoseconds of the guest's monotonic clock (0 for [`Kind::Pad`]).
    pub time: u64,
    fixed: &'a [u8],
    strings: &'a [u8],
    string_count: usize,
}

impl<'a> Event<'a> {
    /// Fixed word `i` (0 when absent).
    pub fn word(&self, i: usize) -> u64 {
        self.fixed
            .get(i * WORD..(i + 1) * WORD)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; WORD])))
    }

    /// Number of fixed words.
    pub fn words(&self) -> usize {
        self.fixed.len() / WORD
    }

    /// The strings, in order (already checked by [`parse`]).
    pub fn strings(&self) -> Strings<'a> {
        Strings {
            rest: self.strings,
            left: self.string_count,
        }
    }

    /// String `i`, or "" when absent.
    pub fn string(&self, i: usize) -> &'a str {
        self.strings().nth(i).unwrap_or("")
    }
}

/// The strings of a record.
#[derive(Clone)]
pub struct Strings<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.left = self.left.checked_sub(1)?;
        let (s, rest) = split_string(self.rest).ok()?;
        self.rest = rest;
        Some(s)
    }
}

/// The first packed string of `bytes` and what follows it.
fn split_string(bytes: &[u8]) -> Result<(&str, &[u8]), Error> {
    let [lo, hi, rest @ ..] = bytes else {
        return Err(Error::BadString);
    };
    let len = u16::from_le_bytes([*lo, *hi]) as usize;
    if len > MAX_STRING || len > rest.len() {
        return Err(Error::BadString);
    }
    let s = core::str::from_utf8(&rest[..len]).map_err(|_| Error::BadString)?;
    Ok((s, &rest[len..]))
}

/// Why a record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than a header, or than the header's length.
    Truncated,
    /// A length of zero words, or too short for its kind.
    BadLength,
    /// An unknown kind.
    BadKind(u8),
    /// A string longer than the record or than [`MAX_STRING`], or not UTF-8.
    BadString,
    /// A counter with more than [`MAX_FIELDS`] fields.
    TooManyFields,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("record cut short"),
            Error::BadLength => f.write_str("record length impossible for its kind"),
            Error::BadKind(k) => write!(f, "unknown record kind {k}"),
            Error::BadString => f.write_str("string longer than its record or not UTF-8"),
            Error::TooManyFields => write!(f, "counter with more than {MAX_FIELDS} fields"),
        }
    }
}

/// Number of strings a record of `kind` with `flags` carries.
fn string_count(kind: Kind, flags: u8) -> usize {
    match kind {
        Kind::Spawn => 1,
        Kind::Span if flags == BEGIN => 2,
        Kind::Span => 1,
        Kind::Instant => 2,
        Kind::Counter => 1 + flags as usize,
        _ => 0,
    }
}

/// Parses the record at the start of `bytes`; returns it and its length in
/// bytes. Every string is checked here, so [`Event::strings`] yields all
/// of them.
pub fn parse(bytes: &[u8]) -> Result<(Event<'_>, usize), Error> {
    let head = bytes.get(..WORD).ok_or(Error::Truncated)?;
    let head = u64::from_le_bytes(head.try_into().map_err(|_| Error::Truncated)?);
    let kind = Kind::from_u8(head as u8).ok_or(Error::BadKind(head as u8))?;
    let flags = (head >> 8) as u8;
    let words = ((head >> 16) & 0xffff) as usize;
    let track = Track((head >> 32) as u32);
    let len = words * WORD;
    if words == 0 {
        return Err(Error::BadLength);
    }
    let record = bytes.get(..len).ok_or(Error::Truncated)?;
    if kind == Kind::Pad {
        let event = Event {
            kind,
            flags,
            track,
            time: 0,
            fixed: &[],
            strings: &[],
            string_count: 0,
        };
        return Ok((event, len));
    }
    if kind == Kind::Counter && flags as usize > MAX_FIELDS {
        return Err(Error::TooManyFields);
    }
    let fixed_end = (2 + kind.fixed_words(flags)) * WORD;
    if len < fixed_end {
        return Err(Error::BadLength);
    }
    let time = u64::from_le_bytes(
        record[WORD..2 * WORD]
            .try_into()
            .map_err(|_| Error::Truncated)?,
    );
    let strings = &record[fixed_end..];
    let string_count = string_count(kind, flags);
    let mut rest = strings;
    for _ in 0..string_count {
        rest = split_string(rest)?.1;
    }
    let fixed = &record[2 * WORD..fixed_end];
    Ok((
        Event {
            kind,
            flags,
            track,
            time,
            fixed,
            strings,
            string_count,
        },
        len,
    ))
}

/// Encodes a record into `out` (for the host side and tests; guests write
/// straight into their [`crate::Ring`]).
#[cfg(feature = "std")]
pub fn encode(
    out: &mut std::vec::Vec<u8>,
    kind: Kind,
    flags: u8,
    track: Track,
    time: u64,
    fixed: &[u64],
    strings: &[&str],
) {
    let words = record_words(fixed.len(), strings);
    out.extend_from_slice(&header(kind, flags, words, track).to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    for w in fixed {
        out.extend_from_slice(&w.to_le_bytes());
    }
    pack_strings(strings, |w| out.extend_from_slice(&w.to_le_bytes()));
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn a_record_reads_back_as_written() {
        let mut out = Vec::new();
        encode(
            &mut out,
            Kind::Span,
            BEGIN,
            Track(7),
            1234,
            &[],
            &["http", "GET /index.html"],
        );
        encode(
            &mut out,
            Kind::Counter,
            2,
            Track(9),
            99,
            &[5, (-3i64) as u64],
            &["tcp", "sent", "acked"],
        );
        let (span, n) = parse(&out).unwrap();
        assert_eq!(
            (span.kind, span.track, span.time),
            (Kind::Span, Track(7), 1234)
        );
        assert_eq!(
            span.strings().collect::<Vec<_>>(),
            ["http", "GET /index.html"]
        );
        let (counter, m) = parse(&out[n..]).unwrap();
        assert_eq!(n + m, out.len());
        assert_eq!((counter.word(0), counter.word(1) as i64), (5, -3));
        assert_eq!(
            counter.strings().collect::<Vec<_>>(),
            ["tcp", "sent", "acked"]
        );
    }

    #[test]
    fn empty_strings_are_kept() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Instant, 0, Track(1), 5, &[], &["", ""]);
        let (event, _) = parse(&out).unwrap();
        assert_eq!(event.strings().collect::<Vec<_>>(), ["", ""]);
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_STRING);
        let mut out = Vec::new();
        encode(&mut out, Kind::Instant, 0, Track(1), 5, &[], &[&long, "x"]);
        let (event, _) = parse(&out).unwrap();
        assert_eq!(event.string(0).len(), MAX_STRING);
        assert_eq!(event.string(1), "x");
    }

    #[test]
    fn damaged_records_are_errors() {
        let mut out = Vec::new();
        encode(
            &mut out,
            Kind::Span,
            BEGIN,
            Track(7),
            1234,
            &[],
            &["name", "detail"],
        );
        for cut in 0..out.len() {
            assert!(parse(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[0] = 200;
        assert_eq!(parse(&bad).unwrap_err(), Error::BadKind(200));
        let mut bad = out.clone();
        bad[2..4].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(parse(&bad).unwrap_err(), Error::BadLength);
        let mut bad = out.clone();
        bad[16] = 0xff; // the first string's length
        assert_eq!(parse(&bad).unwrap_err(), Error::BadString);
    }
}
