//! Process start-up for tenders that skip std's runtime set-up.
//!
//! The tenders are `#![no_main]`: their C `main` runs without std's
//! `lang_start`, which on Linux polls the standard descriptors, ignores
//! SIGPIPE, and for stack overflow reports reads /proc/self/maps
//! (`pthread_getattr_np` on the main thread), asks for the CPU affinity and
//! maps an alternate signal stack with SIGSEGV and SIGBUS handlers. Together
//! that is about 0.2 ms of a 1 ms start on this host, and spt undid the
//! signal handlers again before its jump. A tender calls [`start`] first
//! and keeps what it needs; std itself works without the set-up (the
//! arguments come from glibc's `.init_array` call, not from `lang_start`).
//!
//! Like [`crate::sys`], this module holds `unsafe`, each block with the
//! reason it is sound.

use std::time::Duration;

/// What a tender does first: descriptors 0, 1 and 2 open (on /dev/null when
/// the parent closed them), as std's runtime would make them, so that no
/// device a tender opens later (a tap, /dev/kvm) becomes the guest's
/// console. Returns the CPU time the process spent before this call
/// (exec, the dynamic loader, glibc's start), for `--x-timing`.
pub fn start() -> Duration {
    standard_fds_open();
    cpu_time()
}

/// Opens /dev/null on whichever of descriptors 0, 1 and 2 is closed.
fn standard_fds_open() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the call's
    // duration; a zero timeout never blocks.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for fd in fds {
        if fd.revents & libc::POLLNVAL != 0 {
            // open() returns the lowest free descriptor: this one. It stays
            // open for the life of the process, as under std's runtime.
            // SAFETY: the path is a NUL-terminated literal.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// Ignores SIGPIPE, as std's runtime does: a console write to a closed
/// pipe then fails with EPIPE (which the tender ignores) rather than
/// killing the tender with its guest.
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data, all-zero valid; getrusage writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Defines the C `main` of a `#![no_main]` tender: glibc's start code calls
/// it, and it returns the exit status `$run()` gives (a `u8`).
#[macro_export]
macro_rules! tender_main {
    ($run:path) => {
        /// The process's entry, called by glibc's start code.
        #[cfg(not(test))]
        #[allow(unsafe_code)]
        // SAFETY: the one `main` symbol of this program (std's is not
        // generated under `#![no_main]`), with the C signature glibc calls.
        #[no_mangle]
        extern "C" fn main(
            _argc: ::libc::c_int,
            _argv: *const *const ::libc::c_char,
        ) -> ::libc::c_int {
            ::libc::c_int::from($run())
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::cpu_time();
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(20);
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(super::cpu_time() > before, "{x}");
    }
}
