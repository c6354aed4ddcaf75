//! The two C library functions through which crates reach for the operating
//! system's randomness, answered from the image's Random device.
//!
//! ring (hence rustls) draws its random bytes through the `getrandom` crate
//! (0.2), which on a `-linux-` target has no pluggable backend: built with
//! `linux_disable_fallback` (see Cargo.toml) it calls exactly
//! `syscall(SYS_getrandom, buf, len, flags)` and reads `errno` through
//! `__errno_location`. A unikernel has no system calls to make, so those two
//! symbols are defined here: `SYS_getrandom` fills the buffer from
//! [`ChaCha20Random`], every other number fails with `ENOSYS`. No path makes
//! a real system call; a test runs TLS handshakes on spt under `strace` and
//! finds no `getrandom`.

use crate::random::ChaCha20Random;
use core::sync::atomic::AtomicI32;
use lamina_core::device::Random;

/// `SYS_getrandom` on x86-64.
const SYS_GETRANDOM: i64 = 318;
/// `ENOSYS`: not implemented.
const ENOSYS: i32 = 38;

/// The one `errno` of a single-threaded image.
static ERRNO: AtomicI32 = AtomicI32::new(0);

/// `long syscall(long number, ...)`, for the calls a crate makes through the
/// C library's generic entry: only `getrandom(buf, len, flags)`.
///
/// Declared with three fixed arguments after the number: on x86-64 a
/// variadic call passes them in the same registers as a plain one.
///
/// # Safety
/// For `SYS_getrandom`, `buf` must be valid for writes of `len` bytes, as the
/// system call requires.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(number: i64, buf: *mut u8, len: usize, _flags: u32) -> i64 {
    if number != SYS_GETRANDOM {
        ERRNO.store(ENOSYS, core::sync::atomic::Ordering::Relaxed);
        return -1;
    }
    if len == 0 {
        return 0;
    }
    // SAFETY: the caller passes a buffer valid for `len` bytes of writes
    // (the getrandom(2) contract); it is not aliased during the call.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    ChaCha20Random.fill(buf);
    len as i64
}

/// `int *__errno_location(void)`: where the last failure's `errno` is.
#[unsafe(no_mangle)]
pub extern "C" fn __errno_location() -> *mut i32 {
    ERRNO.as_ptr()
}
