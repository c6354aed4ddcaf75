//! Answers computed once, at boot (MirageOS's memoised answers): for every
//! name that exists in a zone (not below a cut), the whole response to each
//! type it has, to ANY, and for an alias to A and AAAA, as
//! [`Authority`](super::Authority)'s answer logic writes it for a lowercase
//! question without EDNS. A query for one of these is answered by copying:
//! the identifier, flags and the question's case are written over the
//! copy (the name has the same length whatever its case, so every
//! compression pointer still holds) and an OPT record is appended if the
//! query had one. What is not here, or does not fit the requester's size,
//! goes through the answer logic as before and comes out byte for byte
//! the same (the tests compare both for every entry).
//!
//! The table is open addressing over a power-of-two number of slots,
//! indexed by an FNV-1a hash of the name and type: a lookup hashes the
//! name once and compares one or two keys, and allocates nothing.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::Rtype;

/// One memoised response.
#[derive(Debug, Clone)]
struct Entry {
    hash: u32,
    qtype: Rtype,
    /// The lowercase name, in the arena.
    name: Range<usize>,
    /// The response, in the arena.
    response: Range<usize>,
}

/// Memoised responses, by lowercase name and type.
#[derive(Debug, Default)]
pub(super) struct Memo {
    /// Entry index + 1 per slot; 0 is an empty slot.
    slots: Vec<u32>,
    entries: Vec<Entry>,
    /// Names and responses, back to back.
    arena: Vec<u8>,
}

/// FNV-1a over the name and the type.
fn hash(lower: &[u8], qtype: Rtype) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for &byte in lower.iter().chain(&qtype.0.to_be_bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

impl Memo {
    /// Adds the response for (`lower`, `qtype`) (first one wins).
    pub(super) fn insert(&mut self, lower: &[u8], qtype: Rtype, response: &[u8]) {
        if self.get(lower, qtype).is_some() {
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(lower);
        self.arena.extend_from_slice(response);
        let entry = Entry {
            hash: hash(lower, qtype),
            qtype,
            name: start..start + lower.len(),
            response: start + lower.len()..self.arena.len(),
        };
        self.entries.push(entry);
        // At most half full.
        if self.slots.len() < self.entries.len() * 2 {
            self.rehash((self.entries.len() * 2).next_power_of_two().max(16));
        } else {
            self.place(self.entries.len() - 1);
        }
    }

    fn rehash(&mut self, slots: usize) {
        self.slots = vec![0; slots];
        for index in 0..self.entries.len() {
            self.place(index);
        }
    }

    fn place(&mut self, index: usize) {
        let mask = self.slots.len() - 1;
        let mut slot = self.entries[index].hash as usize & mask;
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = index as u32 + 1;
    }

    /// The memoised response for a lowercase name and a type.
    pub(super) fn get(&self, lower: &[u8], qtype: Rtype) -> Option<&[u8]> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = hash(lower, qtype);
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let index = *self.slots.get(slot)? as usize;
            let entry = self.entries.get(index.checked_sub(1)?)?;
            if entry.hash == hash
                && entry.qtype == qtype
                && self.arena.get(entry.name.clone()) == Some(lower)
            {
                return self.arena.get(entry.response.clone());
            }
            slot = (slot + 1) & mask;
        }
    }

    /// How many responses are memoised.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bytes the memoised responses take (names and responses; the
    /// table adds about 40 bytes an entry).
    pub(super) fn bytes(&self) -> usize {
        self.arena.len()
    }
}
