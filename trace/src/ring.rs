//! The trace ring: records go into guest memory without allocating and
//! without waiting; a consumer (the tender, or the target itself) drains
//! them to a file.
//!
//! The ring is an array of 64-bit words: [`CONTROL_WORDS`] control words,
//! then the data words. Indices are free-running word counts; a record
//! never wraps: when it would, the producer fills the rest of the data with
//! a [`Kind::Pad`](crate::Kind::Pad) record and starts at word 0.
//!
//! | word | written by | what |
//! |------|-----------|------|
//! | [`MAGIC`]    | producer, once | [`RING_MAGIC`] |
//! | [`CAPACITY`] | producer, once | data words |
//! | [`HEAD`]     | producer | words written (release: the records before it are complete) |
//! | [`TAIL`]     | consumer | words taken (release: their space may be reused) |
//! | [`DROPPED`]  | producer | records not written because the ring was full |
//!
//! Protocol, single producer and single consumer:
//! - the producer writes a record's words at `HEAD % capacity`, then stores
//!   `HEAD += words`; it never writes past `TAIL + capacity`;
//! - the consumer reads `HEAD`, copies the words from `TAIL` up to it, then
//!   stores `TAIL = HEAD`.
//!
//! Every word is an `AtomicU64` here, so the guest side needs no `unsafe`
//! and a consumer on another thread (hvt's tender) reads no torn word.

use crate::record::{header, pack_strings, record_words, Kind, Track};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Control word: the ring's magic.
pub const MAGIC: usize = 0;
/// Control word: data words.
pub const CAPACITY: usize = 1;
/// Control word: words written so far.
pub const HEAD: usize = 2;
/// Control word: words consumed so far.
pub const TAIL: usize = 3;
/// Control word: records dropped so far.
pub const DROPPED: usize = 4;
/// Words before the data.
pub const CONTROL_WORDS: usize = 8;
/// The value of the magic word: "LMTRING1".
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"LMTRING1");
/// The fewest data words a ring may have.
pub const MIN_CAPACITY: usize = 1024;

/// The producer's side of a ring.
pub struct Ring<'a> {
    words: &'a [AtomicU64],
    data: &'a [AtomicU64],
    /// Held while a record is written: a record made while another is
    /// being written (from a waker called inside the recording code) is
    /// dropped, not interleaved.
    busy: AtomicBool,
}

impl<'a> Ring<'a> {
    /// A ring over `words`, control words first; None if there is room for
    /// fewer than [`MIN_CAPACITY`] data words.
    pub fn new(words: &'a [AtomicU64]) -> Option<Ring<'a>> {
        let data = words.get(CONTROL_WORDS..)?;
        if data.len() < MIN_CAPACITY {
            return None;
        }
        for w in &words[..CONTROL_WORDS] {
            w.store(0, Ordering::Relaxed);
        }
        words[CAPACITY].store(data.len() as u64, Ordering::Relaxed);
        words[MAGIC].store(RING_MAGIC, Ordering::Release);
        Some(Ring {
            words,
            data,
            busy: AtomicBool::new(false),
        })
    }

    /// The ring's words (for a consumer in the same address space).
    pub fn words(&self) -> &'a [AtomicU64] {
        self.words
    }

    /// Records lost so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.words[DROPPED].load(Ordering::Relaxed)
    }

    /// Writes a record; false (and counted as dropped) when the ring has no
    /// room or is being written already.
    pub fn push(
        &self,
        kind: Kind,
        flags: u8,
        track: Track,
        time: u64,
        fixed: &[u64],
        strings: &[&str],
    ) -> bool {
        let words = record_words(fixed.len(), strings);
        if self.busy.swap(true, Ordering::Acquire) {
            self.words[DROPPED].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let written = self.write(words, |put| {
            put(header(kind, flags, words, track));
            put(time);
            fixed.iter().for_each(|&w| put(w));
            pack_strings(strings, put);
        });
        self.busy.store(false, Ordering::Release);
        if !written {
            self.words[DROPPED].fetch_add(1, Ordering::Relaxed);
        }
        written
    }

    /// Reserves `words`, lets `fill` put exactly that many, publishes them.
    fn write(&self, words: usize, fill: impl FnOnce(&mut dyn FnMut(u64))) -> bool {
        let capacity = self.data.len() as u64;
        if words > 0xffff || words as u64 > capacity / 2 {
            return false;
        }
        let mut head = self.words[HEAD].load(Ordering::Relaxed);
        let tail = self.words[TAIL].load(Ordering::Acquire);
        let at = (head % capacity) as usize;
        let to_end = self.data.len() - at;
        let pad = if words > to_end { to_end } else { 0 };
        if head.wrapping_sub(tail) + (pad + words) as u64 > capacity {
            return false;
        }
        if pad > 0 {
            self.data[at].store(header(Kind::Pad, 0, pad, Track::NONE), Ordering::Relaxed);
            head += pad as u64;
        }
        let mut at = (head % capacity) as usize;
        let end = at + words;
        fill(&mut |word| {
            if at < end {
                self.data[at].store(word, Ordering::Relaxed);
                at += 1;
            }
        });
        self.words[HEAD].store(head + words as u64, Ordering::Release);
        true
    }
}

/// Word-by-word access to a ring that a consumer drains, wherever it lives
/// (the same address space, or guest memory seen from the tender).
pub trait Words {
    /// Loads word `index` of the ring (acquire), None if outside it.
    fn load(&self, index: usize) -> Option<u64>;
    /// Stores the consumer's [`TAIL`] (release).
    fn store_tail(&self, value: u64);
}

impl Words for [AtomicU64] {
    fn load(&self, index: usize) -> Option<u64> {
        self.get(index).map(|w| w.load(Ordering::Acquire))
    }
    fn store_tail(&self, value: u64) {
        self[TAIL].store(value, Ordering::Release);
    }
}

/// Why a ring could not be drained: its control words make no sense (a
/// guest that overwrote them). The consumer stops reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainError {
    /// The magic word is wrong.
    BadMagic,
    /// The capacity disagrees with the ring's size.
    BadCapacity,
    /// `HEAD` is behind `TAIL` or more than the capacity ahead of it.
    BadHead,
}

impl core::fmt::Display for DrainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DrainError::BadMagic => "trace ring has a bad magic word",
            DrainError::BadCapacity => "trace ring capacity disagrees with its size",
            DrainError::BadHead => "trace ring head is out of range",
        })
    }
}

/// Copies every word written since the last drain to `out`, then frees
/// their space. `size` is the ring's size in words as the consumer knows
/// it (never trusted from the ring). Returns how many records the producer
/// has dropped so far.
pub fn drain<W: Words + ?Sized>(
    ring: &W,
    size: usize,
    mut out: impl FnMut(u64),
) -> Result<u64, DrainError> {
    let word = |i| ring.load(i).ok_or(DrainError::BadCapacity);
    if word(MAGIC)? != RING_MAGIC {
        return Err(DrainError::BadMagic);
    }
    let capacity = word(CAPACITY)?;
    if capacity == 0 || capacity != size.saturating_sub(CONTROL_WORDS) as u64 {
        return Err(DrainError::BadCapacity);
    }
    let head = word(HEAD)?;
    let tail = word(TAIL)?;
    if head < tail || head - tail > capacity {
        return Err(DrainError::BadHead);
    }
    for i in tail..head {
        out(word(CONTROL_WORDS + (i % capacity) as usize)?);
    }
    ring.store_tail(head);
    word(DROPPED)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::record::parse;
    use std::vec::Vec;

    fn ring_words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn drained(words: &[AtomicU64]) -> (Vec<u8>, u64) {
        let mut bytes = Vec::new();
        let dropped = drain(words, words.len(), |w| {
            bytes.extend_from_slice(&w.to_le_bytes())
        })
        .unwrap();
        (bytes, dropped)
    }

    fn events(bytes: &[u8]) -> Vec<(Kind, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (e, n) = parse(&bytes[at..]).unwrap();
            if e.kind != Kind::Pad {
                out.push((e.kind, e.time));
            }
            at += n;
        }
        out
    }

    #[test]
    fn records_come_out_in_order_across_the_wrap() {
        let words = ring_words(CONTROL_WORDS + MIN_CAPACITY);
        let ring = Ring::new(&words).unwrap();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for t in 0..5000u64 {
            let name = "x".repeat((t % 40) as usize);
            assert!(ring.push(Kind::Instant, 0, Track::MAIN, t, &[], &[&name, "d"]));
            expected.push((Kind::Instant, t));
            if t % 37 == 0 {
                got.extend(events(&drained(&words).0));
            }
        }
        got.extend(events(&drained(&words).0));
        assert_eq!(got, expected);
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let words = ring_words(CONTROL_WORDS + MIN_CAPACITY);
        let ring = Ring::new(&words).unwrap();
        let mut pushed = 0;
        for t in 0..1000 {
            pushed += ring.push(Kind::Poll, 0, Track::MAIN, t, &[], &[]) as u64;
        }
        assert_eq!(pushed, MIN_CAPACITY as u64 / 2);
        let (bytes, dropped) = drained(&words);
        assert_eq!(events(&bytes).len() as u64, pushed);
        assert_eq!(dropped, 1000 - pushed);
        assert!(
            ring.push(Kind::Poll, 0, Track::MAIN, 0, &[], &[]),
            "room again after a drain"
        );
    }

    #[test]
    fn a_ring_with_bad_control_words_is_refused() {
        let words = ring_words(CONTROL_WORDS + MIN_CAPACITY);
        let _ring = Ring::new(&words).unwrap();
        assert_eq!(drain(&words[..], 10, |_| {}), Err(DrainError::BadCapacity));
        words[HEAD].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(
            drain(&words[..], words.len(), |_| {}),
            Err(DrainError::BadHead)
        );
        words[MAGIC].store(1, Ordering::Relaxed);
        assert_eq!(
            drain(&words[..], words.len(), |_| {}),
            Err(DrainError::BadMagic)
        );
    }
}
