//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`: `core` and
//! `compiler_builtins` call them but, on a `-linux-gnu` target, leave them to
//! libc, and a unikernel has none. `rep movsb`/`rep stosb` are fast on every
//! CPU with ERMSB and, being single instructions, cannot be turned back into
//! calls to these functions by the optimiser.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest`; the ranges must not overlap.
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; the direction flag is clear
    // (the System V ABI keeps it so at calls).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags))
    };
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is below src, or the ranges are apart: copy forwards.
        // SAFETY: as for memcpy; a forward copy is correct for this overlap.
        return unsafe { memcpy(dest, src, n) };
    }
    // Overlap with dest above src: copy backwards, from the last byte.
    // SAFETY: the caller guarantees both ranges; `std` sets the direction
    // flag for this copy only and `cld` clears it again.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n).wrapping_sub(1) => _, inout("rsi") src.add(n).wrapping_sub(1) => _,
             options(nostack));
    }
    dest
}

/// Sets `n` bytes at `dest` to `c`.
///
/// # Safety
/// The range must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8, options(nostack, preserves_flags))
    };
    dest
}

/// Compares `n` bytes.
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges; volatile reads keep the
        // optimiser from recognising this loop as a call to memcmp itself.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// Tests `n` bytes for equality (0 when equal).
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
