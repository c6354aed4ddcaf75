//! Backtraces of return addresses, walked through frame pointers: guest
//! images are built with `-C force-frame-pointers=yes` (see `lamina build`),
//! so every function's frame starts with the caller's frame pointer and,
//! above it, the return address. The walk reads only inside the live stack,
//! between the current stack pointer and the top recorded by
//! [`mark_stack_top`], so a corrupt chain ends it instead of faulting.

use core::sync::atomic::{AtomicUsize, Ordering};
use lamina_core::boot::BacktraceLine;

/// Most frames a backtrace holds.
pub const MAX_FRAMES: usize = 32;

/// The highest stack address a walk may read (exclusive); 0 until
/// [`mark_stack_top`] runs.
static STACK_TOP: AtomicUsize = AtomicUsize::new(0);

/// Frames above this much stack are not believed: a frame pointer that
/// far from the stack pointer is not one (no guest stack is larger).
const MAX_STACK: usize = 16 * 1024 * 1024;

/// Records the top of the stack the application runs on: the frame of the
/// function that calls this (and whatever is below it) is walkable, frames
/// above it (the boot code's) are not. Called once, early in
/// [`crate::app::start`].
#[inline(always)]
pub fn mark_stack_top() {
    let (sp, fp) = registers();
    // With frame pointers, the caller's frame (saved frame pointer and
    // return address) is the top; without, only what is below sp is known.
    let top = if fp > sp && fp - sp < MAX_STACK {
        fp + 16
    } else {
        sp
    };
    STACK_TOP.store(top, Ordering::Relaxed);
}

/// The stack pointer and frame pointer here.
#[inline(always)]
fn registers() -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let (sp, fp): (usize, usize);
        // SAFETY: reads two registers; no memory is touched.
        unsafe {
            core::arch::asm!("mov {}, rsp", "mov {}, rbp", out(reg) sp, out(reg) fp, options(nomem, nostack, preserves_flags));
        }
        (sp, fp)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (0, 0)
    }
}

/// Return addresses found by a walk, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    addresses: [usize; MAX_FRAMES],
    len: usize,
}

impl Frames {
    /// The return addresses, innermost first.
    pub fn addresses(&self) -> &[usize] {
        &self.addresses[..self.len]
    }
}

/// Walks the frame-pointer chain from `fp`, reading words with `read`
/// only at addresses in `[low, high)`: stops at [`MAX_FRAMES`], at a frame
/// pointer that is null, unaligned, outside the bounds or not above the
/// previous one (the stack grows down, so callers' frames are higher), and
/// at a zero return address.
pub fn walk(mut fp: usize, low: usize, high: usize, read: impl Fn(usize) -> usize) -> Frames {
    let mut frames = Frames {
        addresses: [0; MAX_FRAMES],
        len: 0,
    };
    while frames.len < MAX_FRAMES {
        let inside = fp >= low && fp.checked_add(16).is_some_and(|end| end <= high);
        if fp == 0 || !fp.is_multiple_of(8) || !inside {
            break;
        }
        let return_address = read(fp + 8);
        if return_address == 0 {
            break;
        }
        frames.addresses[frames.len] = return_address;
        frames.len += 1;
        let caller = read(fp);
        if caller <= fp {
            break;
        }
        fp = caller;
    }
    frames
}

/// Walks the live stack from the caller of this function up to the mark.
#[inline(always)]
pub fn here() -> Frames {
    let (sp, fp) = registers();
    let top = STACK_TOP.load(Ordering::Relaxed);
    walk(fp, sp, top, |address| {
        // SAFETY: `walk` reads only in [sp, top): the stack between this
        // frame and the one `mark_stack_top` recorded, live and mapped.
        unsafe { core::ptr::read(address as *const usize) }
    })
}

/// Writes `lamina: backtrace: 0x... 0x...` for the stack here, or nothing
/// when no frame was found.
pub fn print(write: impl Fn(&[u8])) {
    let frames = here();
    if !frames.addresses().is_empty() {
        write(BacktraceLine::new(frames.addresses()).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake stack of words at base 0x1000.
    fn reader(words: &[usize]) -> impl Fn(usize) -> usize + '_ {
        move |address| words[(address - 0x1000) / 8]
    }

    #[test]
    fn a_chain_is_followed_to_its_end() {
        // Frames at 0x1000 -> 0x1010 -> 0x1020 -> null.
        let stack = [0x1010, 0xa1, 0x1020, 0xa2, 0, 0xa3];
        let frames = walk(0x1000, 0x1000, 0x1030, reader(&stack));
        assert_eq!(frames.addresses(), &[0xa1, 0xa2, 0xa3]);
    }

    #[test]
    fn a_frame_outside_the_bounds_or_going_down_stops_the_walk() {
        // The second frame points past the top: its words are never read.
        let stack = [0x1010, 0xa1, 0x9000, 0xa2];
        assert_eq!(
            walk(0x1000, 0x1000, 0x1020, reader(&stack)).addresses(),
            &[0xa1, 0xa2]
        );
        // A chain pointing back down (a loop) ends.
        let looping = [0x1010, 0xa1, 0x1000, 0xa2];
        assert_eq!(
            walk(0x1000, 0x1000, 0x1020, reader(&looping)).addresses(),
            &[0xa1, 0xa2]
        );
        // Unaligned, null and below-the-stack starts read nothing.
        for fp in [0x1004, 0, 0x800] {
            assert!(walk(fp, 0x1000, 0x1020, reader(&stack))
                .addresses()
                .is_empty());
        }
        // The top end is exclusive: a frame whose return address would be
        // at or past it is not read.
        assert!(walk(0x1018, 0x1000, 0x1020, reader(&stack))
            .addresses()
            .is_empty());
    }

    #[test]
    fn a_long_chain_is_cut_at_the_limit() {
        let mut stack = [0usize; 2 * (MAX_FRAMES + 8)];
        for frame in 0..MAX_FRAMES + 8 {
            stack[2 * frame] = 0x1000 + 16 * (frame + 1);
            stack[2 * frame + 1] = 0xb0 + frame;
        }
        let high = 0x1000 + 8 * stack.len();
        let frames = walk(0x1000, 0x1000, high, reader(&stack));
        assert_eq!(frames.addresses().len(), MAX_FRAMES);
        assert_eq!(frames.addresses()[MAX_FRAMES - 1], 0xb0 + MAX_FRAMES - 1);
    }
}
