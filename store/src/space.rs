//! Which blocks are in use: one bit per block, in memory only (rebuilt at
//! mount from the superblocks, the log and the index).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// A bitmap of used blocks with a next-fit cursor.
#[derive(Debug, Clone)]
pub struct Space {
    words: Vec<u64>,
    blocks: u64,
    free: u64,
    cursor: u64,
}

impl Space {
    /// `blocks` blocks, all free.
    pub fn new(blocks: u64) -> Space {
        Space {
            words: vec![0; blocks.div_ceil(64) as usize],
            blocks,
            free: blocks,
            cursor: 0,
        }
    }

    /// Free blocks.
    pub fn free(&self) -> u64 {
        self.free
    }

    /// Whether `block` is in use.
    pub fn is_used(&self, block: u64) -> bool {
        self.words[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Marks `range` used; false (and nothing marked) if any block of it is
    /// outside the device or used already.
    pub fn claim(&mut self, range: Range<u64>) -> bool {
        if range.end > self.blocks
            || range.start > range.end
            || range.clone().any(|b| self.is_used(b))
        {
            return false;
        }
        for block in range {
            self.words[(block / 64) as usize] |= 1 << (block % 64);
            self.free -= 1;
        }
        true
    }

    /// Marks `range` free. Each block must be in use.
    pub fn release(&mut self, range: Range<u64>) {
        for block in range {
            debug_assert!(self.is_used(block), "block {block} freed twice");
            if self.is_used(block) {
                self.words[(block / 64) as usize] &= !(1 << (block % 64));
                self.free += 1;
            }
        }
    }

    /// Claims a run of up to `max` free blocks, the first found from the
    /// cursor on (wrapping), and returns it; `None` if no block is free.
    pub fn allocate(&mut self, max: u32) -> Option<Range<u64>> {
        if self.free == 0 || max == 0 {
            return None;
        }
        let start = self
            .first_free(self.cursor, self.blocks)
            .or_else(|| self.first_free(0, self.cursor))?;
        let mut end = start + 1;
        while end < self.blocks && end - start < u64::from(max) && !self.is_used(end) {
            end += 1;
        }
        self.claim(start..end);
        self.cursor = end % self.blocks;
        Some(start..end)
    }

    /// The first free block in `from..to`, a word (64 blocks) at a time.
    fn first_free(&self, from: u64, to: u64) -> Option<u64> {
        let mut block = from;
        while block < to {
            let word = self.words[(block / 64) as usize];
            // Blocks below `block` in this word count as used.
            let below = (1u64 << (block % 64)) - 1;
            let free = !(word | below);
            if free != 0 {
                let found = block - block % 64 + u64::from(free.trailing_zeros());
                return (found < to).then_some(found);
            }
            block = block - block % 64 + 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_runs_and_reuses_released_blocks() {
        let mut space = Space::new(10);
        assert!(space.claim(0..2));
        assert!(!space.claim(1..3), "overlap refused");
        assert!(!space.claim(9..11), "past the end refused");
        assert_eq!(space.allocate(3), Some(2..5));
        assert_eq!(space.allocate(100), Some(5..10));
        assert_eq!(space.free(), 0);
        assert_eq!(space.allocate(1), None);
        space.release(3..4);
        assert_eq!(space.allocate(5), Some(3..4));
    }

    #[test]
    fn the_search_wraps_and_crosses_words() {
        let mut space = Space::new(200);
        assert!(space.claim(0..199));
        assert_eq!(space.allocate(10), Some(199..200));
        space.release(70..72);
        space.release(5..6);
        assert_eq!(space.allocate(10), Some(5..6), "wrapped to the start");
        assert_eq!(space.allocate(10), Some(70..72));
        assert_eq!(space.allocate(1), None);
    }
}
