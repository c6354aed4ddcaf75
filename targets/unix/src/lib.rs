//! # lamina-unix: applications as ordinary Linux processes
//!
//! The development target. Every device trait is implemented on std:
//!
//! | trait   | implementation |
//! |---------|----------------|
//! | Console | standard output |
//! | Clock   | `CLOCK_MONOTONIC`, `CLOCK_REALTIME` |
//! | Random  | `getrandom(2)` |
//! | Stack   | the host's TCP/UDP sockets ([`net`]) |
//! | Netif   | a Linux tap device ([`tap`]) |
//! | Block   | a host file ([`storage`]) |
//! | Kv      | a host directory ([`storage`]) |
//!
//! The executor parks in `epoll_wait` ([`reactor`]) with the next timer
//! deadline as timeout, so an idle application uses no CPU. With
//! `LAMINA_TRACE=FILE` it records a trace ([`trace`]).

pub mod args;
pub mod devices;
pub mod net;
pub mod reactor;
pub mod storage;
pub mod tap;
pub mod trace;

use lamina_core::args::common::RuntimeArgs;
use lamina_core::args::BootArgs;
use lamina_core::boot as startup;
use lamina_core::declare::DeviceSet;
use lamina_core::platform::{self, DeviceError, Env, Platform};
use lamina_core::runtime::Executor;
use lamina_core::IntoExit;
use reactor::Reactor;
use std::future::Future;
use std::rc::Rc;

/// The unix target's devices.
pub struct UnixPlatform {
    reactor: Rc<Reactor>,
    devices: args::DeviceArgs,
}

impl Platform for UnixPlatform {
    type Console = devices::StdoutConsole;
    type Clock = devices::HostClock;
    type Random = devices::HostRandom;
    type Netif = tap::TapNetif;
    type Stack = net::HostStack;
    type Block = storage::FileBlock;
    type Kv = storage::DirKv;
    const TARGET: &'static str = "unix";

    fn console(&self) -> Self::Console {
        devices::StdoutConsole
    }

    fn clock(&self) -> Self::Clock {
        devices::HostClock {
            reactor: self.reactor.clone(),
        }
    }

    fn random(&self) -> Self::Random {
        devices::HostRandom
    }

    fn netif(&self, name: &str) -> Result<Self::Netif, DeviceError> {
        let tap = self
            .devices
            .taps
            .get(name)
            .ok_or_else(|| not_attached("net", name))?;
        tap::TapNetif::open(tap, &devices::HostRandom, self.reactor.clone())
            .map_err(DeviceError::Failed)
    }

    /// The host's sockets, whatever the name: on unix every network device
    /// is the host's.
    fn stack(&self, _name: &str) -> Result<Self::Stack, DeviceError> {
        let stack = net::HostStack::new(self.reactor.clone(), self.devices.bind);
        Ok(match &self.devices.dns {
            Some(servers) => stack.with_dns_servers(servers.0.clone()),
            None => stack,
        })
    }

    fn block(&self, name: &str) -> Result<Self::Block, DeviceError> {
        let path = self
            .devices
            .blocks
            .get(name)
            .ok_or_else(|| not_attached("block", name))?;
        storage::FileBlock::open(path, false).map_err(DeviceError::Failed)
    }

    fn kv(&self, name: &str) -> Result<Self::Kv, DeviceError> {
        let path = self
            .devices
            .kvs
            .get(name)
            .ok_or_else(|| not_attached("kv", name))?;
        storage::DirKv::open(path).map_err(DeviceError::Failed)
    }
}

fn not_attached(kind: &'static str, name: &str) -> DeviceError {
    DeviceError::NotAttached {
        kind,
        name: name.to_owned(),
    }
}

/// Writes log records to standard error with the time since start.
struct StderrLogger {
    start: std::sync::OnceLock<std::time::Instant>,
}

static LOGGER: StderrLogger = StderrLogger {
    start: std::sync::OnceLock::new(),
};

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let t = self
                .start
                .get()
                .map(|s| s.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            eprintln!("[{t:10.6}] {:5} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Boots an application: parses argv into the application's arguments and
/// the target's, installs the logger, acquires the devices the application
/// declares (`D`) and runs `main` to completion. Returns the process exit
/// status: 0 on success, 1 when `main` fails, 2 for a bad command line or a
/// declared device that is not attached.
///
/// Called by `lamina::main!`; applications do not call it themselves.
pub fn start<A, D, F, Fut>(main: F) -> i32
where
    A: BootArgs,
    D: DeviceSet<UnixPlatform>,
    F: FnOnce(Env<UnixPlatform>, D, A) -> Fut,
    Fut: Future,
    Fut::Output: IntoExit,
{
    let start = std::time::Instant::now();
    // Without std's `main` wrapper, SIGPIPE still kills: ignore it so that a
    // peer closing a socket is an error value, not a death.
    // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let mut argv = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(s) => argv.push(s),
            Err(bad) => {
                eprintln!("error: argument {bad:?} is not valid UTF-8");
                return 2;
            }
        }
    }
    let program = argv
        .first()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("lamina-app")
        .to_owned();
    let mut app = A::defaults();
    let mut runtime_args = RuntimeArgs::defaults();
    let mut devices = args::DeviceArgs::default();
    let rest = argv.get(1..).unwrap_or_default();
    let parsed = startup::parse_command_line(
        &program,
        rest,
        &mut [&mut app, &mut devices, &mut runtime_args],
    )
    .and_then(|()| startup::apply_runtime_args(&program, &runtime_args));
    if let Err(stop) = parsed {
        // Help is output the user asked for; a mistake is an error.
        if stop.status == 0 {
            print!("{}", stop.text);
        } else {
            eprint!("{}", stop.text);
        }
        return stop.status;
    }
    if let Err(e) = devices.check_declared(D::DECLARED) {
        eprintln!("{program}: {e}");
        return 2;
    }
    // A second application in the same process (tests) keeps the first logger.
    LOGGER.start.get_or_init(|| start);
    let _ = log::set_logger(&LOGGER);

    let tracer = match trace::Tracer::from_env() {
        Ok(tracer) => tracer,
        Err(e) => {
            eprintln!("{program}: {e}");
            return 2;
        }
    };
    let reactor = match Reactor::with_tracer(tracer) {
        Ok(r) => Rc::new(r),
        Err(e) => {
            eprintln!("{program}: cannot create the event loop: {e}");
            return 1;
        }
    };
    let executor = Executor::new(reactor.clone());
    let reactor_for_trace = reactor.clone();
    let platform = UnixPlatform { reactor, devices };
    if let Some(name) = &runtime_args.name {
        log::info!("deployment name: {name}");
    }
    log::debug!(
        "unix target ready in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let main = match platform::enter(platform, executor.handle(), app, main) {
        Ok(main) => main,
        Err(e) => {
            eprintln!("{program}: {e}");
            return 2;
        }
    };
    let result = executor.block_on(main);
    reactor_for_trace.finish_trace();
    let exit = result.into_exit(&|message| eprintln!("{program}: {message}"));
    exit.0 as i32
}
