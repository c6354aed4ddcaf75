//! Backtraces of return addresses, walked through frame pointers: guest
//! images are built with `-C force-frame-pointers=yes` (see `lamina build`),
//! so every function's frame starts with the caller's frame pointer and,
//! above it, the return address. The walk reads only inside the live stack,
//! between the current stack pointer and the top recorded by
//! [`mark_stack_top`], so a corrupt chain ends it instead of faulting.

use core::sync::atomic::{AtomicUsize, Ordering};
use lamina_core::boot::BacktraceLine;

pub use lamina_abi::frames::{walk, Frames, MAX_FRAMES};

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

/// Walks the live stack from the caller of this function up to the mark.
#[inline(always)]
pub fn here() -> Frames {
    let (sp, fp) = registers();
    let top = STACK_TOP.load(Ordering::Relaxed);
    walk(fp as u64, sp as u64, top as u64, |address| {
        // SAFETY: `walk` reads only in [sp, top): the stack between this
        // frame and the one `mark_stack_top` recorded, live and mapped.
        Some(unsafe { core::ptr::read(address as *const u64) })
    })
}

/// Writes `lamina: backtrace: 0x... 0x...` for the stack here, or nothing
/// when no frame was found.
pub fn print(write: impl Fn(&[u8])) {
    let frames = here();
    let mut addresses = [0usize; MAX_FRAMES];
    for (into, &from) in addresses.iter_mut().zip(frames.addresses()) {
        *into = from as usize;
    }
    let found = frames.addresses().len();
    if found > 0 {
        write(BacktraceLine::new(&addresses[..found]).as_bytes());
    }
}
