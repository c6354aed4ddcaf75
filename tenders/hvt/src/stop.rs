//! Stopping the guest on a signal without a window for it to be missed.
//!
//! SIGINT, SIGTERM and SIGHUP (and SIGUSR1, the ring I/O thread's "the
//! guest must stop") run one handler on the vCPU thread (the tender's other
//! threads block them) which does three async-signal-safe things:
//! - records the signal (the first one) that the vCPU loop checks for
//!   before each `KVM_RUN`;
//! - sets `kvm_run.immediate_exit`, so that a `KVM_RUN` entered after that
//!   check returns at once with EINTR instead of running the guest;
//! - writes the stop eventfd, which is in the POLL hypercall's set, so that
//!   a POLL entered after the check returns at once instead of blocking
//!   until the guest's deadline.

use lamina_tender::sys;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::sync::Arc;

/// The signals that stop the guest.
pub const STOP_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];

/// What the stop handler sets, and where the vCPU loop looks.
pub struct Stop {
    /// The first stop signal's number, 0 before one arrives.
    signal: Arc<AtomicI32>,
    /// `&kvm_run.immediate_exit` of the vCPU while it is mapped, else null.
    immediate_exit: Arc<AtomicPtr<u8>>,
    event: Arc<OwnedFd>,
}

impl Stop {
    /// Installs the handler for [`STOP_SIGNALS`].
    pub fn install() -> std::io::Result<Stop> {
        let stop = Stop {
            signal: Arc::new(AtomicI32::new(0)),
            immediate_exit: Arc::new(AtomicPtr::new(std::ptr::null_mut())),
            event: Arc::new(sys::eventfd()?),
        };
        for signal in STOP_SIGNALS {
            let first = stop.signal.clone();
            let immediate_exit = stop.immediate_exit.clone();
            let event = stop.event.clone();
            let handler = move || {
                // The first signal says why the guest stopped.
                let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                let at = immediate_exit.load(Ordering::SeqCst);
                if !at.is_null() {
                    // SAFETY: `at` points into the vCPU's kvm_run mapping,
                    // set by `arm` and cleared by its guard before the
                    // mapping goes; the handler runs on the vCPU thread,
                    // so it cannot interleave with that clearing.
                    #[allow(unsafe_code)]
                    unsafe {
                        at.write_volatile(1)
                    };
                }
                // write(2) on an eventfd: async-signal-safe; a full
                // counter (never, it is written once per signal) is fine.
                let _ = sys::eventfd_signal(event.as_raw_fd());
            };
            // SAFETY: the handler only stores to atomics, to the kvm_run
            // byte above and writes an eventfd: all async-signal-safe; it
            // neither allocates nor locks.
            #[allow(unsafe_code)]
            unsafe {
                signal_hook::low_level::register(signal, handler)?;
            }
        }
        Ok(stop)
    }

    /// The first stop signal that arrived, if one has.
    pub fn signal(&self) -> Option<libc::c_int> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// The eventfd that becomes readable on a stop signal (never drained).
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Lets the handler set `immediate_exit` (`&mut kvm_run.immediate_exit`
    /// of a vCPU) until the guard is dropped, which must happen before the
    /// vCPU's kvm_run is unmapped. A signal that arrived before this call
    /// is seen by the loop's check of [`Stop::signal`].
    pub fn arm(&self, immediate_exit: &mut u8) -> ArmedStop<'_> {
        self.immediate_exit
            .store(immediate_exit as *mut u8, Ordering::SeqCst);
        ArmedStop { stop: self }
    }
}

/// Keeps the handler's access to `immediate_exit` (see [`Stop::arm`]).
pub struct ArmedStop<'a> {
    stop: &'a Stop,
}

impl Drop for ArmedStop<'_> {
    fn drop(&mut self) {
        self.stop
            .immediate_exit
            .store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::hypercall::{Hypercalls, Next};
    use lamina_abi::hvt::{HcPoll, Hypercall};
    use lamina_tender::devices::Devices;
    use lamina_tender::mem::GuestMemory;
    use std::time::{Duration, Instant};

    /// The guest's POLL deadline in the test: far beyond "at once".
    const DEADLINE: Duration = Duration::from_secs(5);

    /// In the child: installs the handler, takes SIGTERM between the vCPU
    /// loop's check and a POLL, then POLLs; 0 if the POLL returned at once
    /// and kvm_run.immediate_exit was set, else what went wrong.
    fn signal_just_before_a_poll() -> i32 {
        let Ok(stop) = Stop::install() else { return 10 };
        let devices = Devices {
            manifest: Vec::new(),
            blocks: Vec::new(),
            nets: Vec::new(),
        };
        let Ok(mut hypercalls) = Hypercalls::new(devices) else {
            return 11;
        };
        if hypercalls.wake_on(stop.event_fd()).is_err() {
            return 12;
        }
        let Ok(mem) = GuestMemory::anywhere(1 << 20) else {
            return 13;
        };
        let mut immediate_exit = 0u8;
        let armed = stop.arm(&mut immediate_exit);
        if stop.signal().is_some() {
            return 14;
        }
        // The signal lands now, after the check (pthread_kill to this
        // thread runs the handler before it returns).
        if sys::signal_thread(sys::current_thread(), libc::SIGTERM).is_err() {
            return 15;
        }
        let call = HcPoll {
            timeout_nsecs: DEADLINE.as_nanos() as u64,
            ..Default::default()
        };
        if mem.write(0x1000, &call).is_err() {
            return 16;
        }
        let start = Instant::now();
        let next = hypercalls.dispatch(&mem, Hypercall::Poll.port(), &0x1000u32.to_le_bytes());
        if !matches!(next, Ok(Next::Resume)) {
            return 17;
        }
        if start.elapsed() > Duration::from_secs(1) {
            return 1;
        }
        drop(armed);
        if stop.signal() != Some(libc::SIGTERM) {
            return 2;
        }
        // SAFETY: reads a local the handler wrote through a pointer.
        if unsafe { std::ptr::read_volatile(&immediate_exit) } != 1 {
            return 3;
        }
        0
    }

    /// A stop signal between the loop's check and a POLL ends that POLL
    /// at once (not at the guest's deadline) and makes the next KVM_RUN
    /// return at once. In a forked child: the handlers are per process.
    #[test]
    fn a_stop_signal_just_before_a_poll_is_not_missed() {
        // SAFETY: the child runs the test body (system calls and
        // allocations, safe after fork in glibc) and ends with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let status = signal_just_before_a_poll();
            // SAFETY: ends the child without the parent's destructors.
            unsafe { libc::_exit(status) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; writes one int.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: the POLL waited for its deadline; 2: no stop; 3: no immediate_exit"
        );
    }
}
