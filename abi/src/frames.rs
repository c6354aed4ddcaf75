//! Backtraces of return addresses walked through frame pointers, by the
//! same rules wherever the walk runs: in the guest (lamina-metal's panic
//! backtrace, reading its own stack) and in a tender (a guest fault,
//! reading guest memory through its checked path). Guest images are built
//! with `-C force-frame-pointers=yes`, so every frame starts with the
//! caller's frame pointer and, above it, the return address.

/// Most frames a walk returns.
pub const MAX_FRAMES: usize = 32;

/// Return addresses found by [`walk`], innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    addresses: [u64; MAX_FRAMES],
    len: usize,
}

impl Frames {
    /// The return addresses, innermost first.
    pub fn addresses(&self) -> &[u64] {
        &self.addresses[..self.len]
    }
}

/// Walks the frame-pointer chain from `fp` (a `%rbp`), reading 8-byte
/// words with `read` only at addresses in `[low, high)`: stops at [`MAX_FRAMES`], at a frame pointer that is null,
/// unaligned, outside the bounds or not above the previous one (callers'
/// frames are higher), at a zero return address, and where `read` fails.
pub fn walk(mut fp: u64, low: u64, high: u64, read: impl Fn(u64) -> Option<u64>) -> Frames {
    let mut frames = Frames {
        addresses: [0; MAX_FRAMES],
        len: 0,
    };
    while frames.len < MAX_FRAMES {
        let inside = fp >= low && fp.checked_add(16).is_some_and(|end| end <= high);
        if fp == 0 || !fp.is_multiple_of(8) || !inside {
            break;
        }
        let Some(return_address) = read(fp + 8).filter(|&a| a != 0) else {
            break;
        };
        frames.addresses[frames.len] = return_address;
        frames.len += 1;
        match read(fp) {
            Some(caller) if caller > fp => fp = caller,
            _ => break,
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of words at `base`, read by address.
    fn reader(base: u64, words: &[u64]) -> impl Fn(u64) -> Option<u64> + '_ {
        move |address| {
            let index = address.checked_sub(base)? / 8;
            words.get(index as usize).copied()
        }
    }

    #[test]
    fn a_chain_is_walked_to_its_end() {
        // Three frames at 0x1000, 0x1020, 0x1040; the last points back down.
        let mut stack = [0u64; 16];
        stack[0] = 0x1020; // frame 0: saved rbp
        stack[1] = 0x10_0a; // its return address
        stack[4] = 0x1040;
        stack[5] = 0x10_0b;
        stack[8] = 0x1000; // descending: the walk stops after this frame
        stack[9] = 0x10_0c;
        let frames = walk(0x1000, 0x1000, 0x1080, reader(0x1000, &stack));
        assert_eq!(frames.addresses(), [0x10_0a, 0x10_0b, 0x10_0c]);
    }

    #[test]
    fn garbage_ends_the_walk() {
        let stack = [u64::MAX - 7, 0x10_0a, 0, 0];
        // Unaligned, null, out of bounds, overflowing: no frames, no panic.
        for fp in [0x1001, 0, 0x9000, u64::MAX - 7] {
            assert!(walk(fp, 0x1000, 0x1020, reader(0x1000, &stack))
                .addresses()
                .is_empty());
        }
        // A caller frame pointer that overflows the bound ends it after one.
        let frames = walk(0x1000, 0x1000, 0x1020, reader(0x1000, &stack));
        assert_eq!(frames.addresses(), [0x10_0a]);
        // A read that fails ends it.
        assert!(walk(0x1000, 0x1000, 0x1020, |_| None)
            .addresses()
            .is_empty());
        // A loop (a frame pointing to itself) ends it.
        let selfloop = [0x1000, 0x10_0a];
        let frames = walk(0x1000, 0x1000, 0x1010, reader(0x1000, &selfloop));
        assert_eq!(frames.addresses(), [0x10_0a]);
    }

    /// A fake stack of words at base 0x1000 (the guest walk's tests).
    fn words(stack: &[u64]) -> impl Fn(u64) -> Option<u64> + '_ {
        reader(0x1000, stack)
    }

    #[test]
    fn a_chain_is_followed_to_its_end() {
        // Frames at 0x1000 -> 0x1010 -> 0x1020 -> null.
        let stack = [0x1010, 0xa1, 0x1020, 0xa2, 0, 0xa3];
        let frames = walk(0x1000, 0x1000, 0x1030, words(&stack));
        assert_eq!(frames.addresses(), &[0xa1, 0xa2, 0xa3]);
    }

    #[test]
    fn a_frame_outside_the_bounds_or_going_down_stops_the_walk() {
        // The second frame points past the top: its words are never read.
        let stack = [0x1010, 0xa1, 0x9000, 0xa2];
        assert_eq!(
            walk(0x1000, 0x1000, 0x1020, words(&stack)).addresses(),
            &[0xa1, 0xa2]
        );
        // A chain pointing back down (a loop) ends.
        let looping = [0x1010, 0xa1, 0x1000, 0xa2];
        assert_eq!(
            walk(0x1000, 0x1000, 0x1020, words(&looping)).addresses(),
            &[0xa1, 0xa2]
        );
        // Unaligned, null and below-the-stack starts read nothing.
        for fp in [0x1004, 0, 0x800] {
            assert!(walk(fp, 0x1000, 0x1020, words(&stack))
                .addresses()
                .is_empty());
        }
        // The top end is exclusive: a frame whose return address would be
        // at or past it is not read.
        assert!(walk(0x1018, 0x1000, 0x1020, words(&stack))
            .addresses()
            .is_empty());
    }

    #[test]
    fn a_long_chain_is_cut_at_the_limit() {
        let mut stack = [0u64; 2 * (MAX_FRAMES + 8)];
        for frame in 0..MAX_FRAMES + 8 {
            stack[2 * frame] = 0x1000 + 16 * (frame as u64 + 1);
            stack[2 * frame + 1] = 0xb0 + frame as u64;
        }
        let high = 0x1000 + 8 * stack.len() as u64;
        let frames = walk(0x1000, 0x1000, high, words(&stack));
        assert_eq!(frames.addresses().len(), MAX_FRAMES);
        assert_eq!(
            frames.addresses()[MAX_FRAMES - 1],
            0xb0 + MAX_FRAMES as u64 - 1
        );
    }
}
