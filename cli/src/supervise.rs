//! The application's process under `lamina run`: started so that it stops
//! when `lamina` is told to stop, and never outlives `lamina`.
//!
//! - It runs in a process group of its own, so that a Ctrl-C on the
//!   terminal (which signals the terminal's foreground group, `lamina`'s)
//!   reaches it once, through `lamina`, rather than twice.
//! - SIGTERM, SIGINT and SIGHUP sent to `lamina` are forwarded to that
//!   group: the unix process, the tender or QEMU stops as it would if
//!   signalled directly (the tenders and QEMU stop cleanly on SIGTERM).
//! - If it has not ended `grace` after the first forwarded signal, its
//!   group is killed (SIGKILL).
//! - When it ends, whatever it left in its group is killed; if `lamina`
//!   fails or panics, dropping the [`Supervised`] kills the group; if
//!   `lamina` itself is killed, the kernel kills the child
//!   (`PR_SET_PDEATHSIG`).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a stopped application gets to end before it is killed, unless
/// `lamina run --stop-timeout` says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The signals forwarded to the application.
const FORWARDED: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

/// A signal's name, for messages.
pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGTERM => "SIGTERM".into(),
        SIGINT => "SIGINT".into(),
        SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}

/// What the signal and timer threads share with the waiting thread.
struct Shared {
    /// The application's process group (its pid), while it may be
    /// signalled: until it has ended and is about to be reaped. Signals
    /// are sent only under this lock, so never to a reused id.
    group: Mutex<Option<libc::pid_t>>,
    /// The first signal forwarded, or 0.
    first_signal: AtomicI32,
}

impl Shared {
    fn group(&self) -> MutexGuard<'_, Option<libc::pid_t>> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends `signal` to every process in `group`.
fn signal_group(group: libc::pid_t, signal: i32) {
    // SAFETY: kill(2) reads no memory; `group` is a process group id that
    // is still in use (see `Shared::group`).
    unsafe { libc::kill(-group, signal) };
}

/// A running application (see the module's description).
pub struct Supervised {
    child: Child,
    shared: Arc<Shared>,
    signals: Handle,
}

/// How a supervised application ended.
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// The first signal `lamina` forwarded to it, if any.
    pub stopped_by: Option<i32>,
}

/// Makes the child that `command` starts lead a process group of its own
/// (a Ctrl-C on the terminal reaches it only through `lamina`) and die
/// with `lamina`: the kernel kills it (`PR_SET_PDEATHSIG`) when the thread
/// that forks it, `lamina`'s main thread, ends. For the application and
/// every helper process `lamina run` starts beside it.
pub fn in_own_group_dying_with_lamina(command: &mut Command) {
    command.process_group(0);
    dying_with_lamina(command, libc::SIGKILL);
}

/// Makes the child that `command` starts get `signal` when `lamina`'s
/// main thread ends (`PR_SET_PDEATHSIG`). The builds (cargo) stay in
/// lamina's process group, where a Ctrl-C reaches them as it always has;
/// this is for a `kill` of lamina alone, which left a build running on.
pub fn dying_with_lamina(command: &mut Command, signal: libc::c_int) {
    let lamina = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl and getppid, which are async-signal-safe, and builds its
    // errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // lamina ended before the line above: nobody would kill us.
            if libc::getppid() != lamina {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}

/// Starts `command` as the supervised application `name`, killed `grace`
/// after the first forwarded signal if it is still running.
pub fn spawn(command: &mut Command, name: &str, grace: Duration) -> std::io::Result<Supervised> {
    // Registered before the child starts, so that no signal is lost in
    // between: one that arrives meanwhile is forwarded as soon as it runs.
    // Handlers (not SIG_IGN) so that the child starts with the defaults.
    let signals = Signals::new(FORWARDED)?;
    in_own_group_dying_with_lamina(command);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            signals.handle().close();
            return Err(e);
        }
    };
    let shared = Arc::new(Shared {
        group: Mutex::new(Some(child.id() as libc::pid_t)),
        first_signal: AtomicI32::new(0),
    });
    let handle = signals.handle();
    let forwarder = shared.clone();
    let name = name.to_string();
    std::thread::spawn(move || forward(signals, forwarder, name, grace));
    Ok(Supervised {
        child,
        shared,
        signals: handle,
    })
}

/// Forwards each signal `lamina` gets to the application's group, and
/// starts the grace timer at the first.
fn forward(mut signals: Signals, shared: Arc<Shared>, name: String, grace: Duration) {
    for signal in signals.forever() {
        let group = shared.group();
        let Some(pgid) = *group else { break };
        // The first signal starts the timer and is the reason for the exit
        // status; later ones (a second Ctrl-C) are forwarded too.
        let first = shared
            .first_signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            eprintln!(
                "lamina: {}: stopping {name} (killed if still running in {:.1} s)",
                signal_name(signal),
                grace.as_secs_f64()
            );
            let shared = shared.clone();
            let name = name.clone();
            std::thread::spawn(move || {
                std::thread::sleep(grace);
                if let Some(pgid) = *shared.group() {
                    eprintln!(
                        "lamina: {name} did not stop within {:.1} s: killing it",
                        grace.as_secs_f64()
                    );
                    signal_group(pgid, libc::SIGKILL);
                }
            });
        }
        signal_group(pgid, signal);
    }
}

impl Supervised {
    /// The child process, to take its output pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits until the application ends, kills what it left in its group,
    /// and says how it ended.
    pub fn wait(mut self) -> std::io::Result<Ended> {
        let pid = self.child.id();
        // Wait without reaping: while the ended child is a zombie its
        // process group id cannot be reused, so the group can still be
        // signalled safely.
        loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid siginfo_t to write; P_PID with the
            // child's pid waits for nothing else.
            let waited = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if waited == 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        self.release_group();
        let status = self.child.wait()?;
        let first = self.shared.first_signal.load(Ordering::SeqCst);
        Ok(Ended {
            status,
            stopped_by: (first != 0).then_some(first),
        })
    }

    /// Kills whatever is left in the application's group and stops
    /// signalling it; the child is reaped next.
    fn release_group(&mut self) {
        if let Some(pgid) = self.shared.group().take() {
            signal_group(pgid, libc::SIGKILL);
        }
        self.signals.close();
    }
}

impl Drop for Supervised {
    /// On lamina's errors and panics: the application does not outlive it.
    fn drop(&mut self) {
        if self.shared.group().is_some() {
            self.release_group();
            let _ = self.child.wait();
        }
    }
}
