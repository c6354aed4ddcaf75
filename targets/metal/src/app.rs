//! What every bare-metal runtime does between its boot code and the
//! application: the command line into the application's, the stack's and
//! the runtime's arguments, the logger, and running `main` to its exit
//! status. [`start`] is the whole path; the target supplies the words of its
//! command line (having taken out its own) and builds its platform.

use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use lamina_core::args::common::RuntimeArgs;
use lamina_core::args::{self as boot_args, BootArgs};
use lamina_core::boot;
use lamina_core::declare::DeviceSet;
use lamina_core::platform::{self, Env, Platform};
use lamina_core::runtime::Executor;
use lamina_core::IntoExit;
use lamina_net::NetArgs;

use crate::trace::TraceArgs;
use crate::Machine;

/// Runs an application on machine `M`, from the words of its command line
/// to its exit status: parses `words` into the application's arguments
/// (`A`) and the stack's (when it declares a network device), applies the
/// runtime's (`--log`; `default_log` is a level the loader asked for),
/// installs the logger, lets `platform` build the executor and the devices
/// from the stack's arguments, acquires the devices the application
/// declares (`D`) and runs `main` to completion. Returns 0 on success, 1
/// when `main` fails, 2 for a bad command line (or the status `--help`
/// asks for) or a declared device that is missing.
pub fn start<M, A, D, P, F, Fut>(
    words: &[String],
    default_log: Option<&str>,
    platform: impl FnOnce(NetArgs) -> (Executor, P),
    main: F,
) -> i32
where
    M: Machine,
    A: BootArgs,
    D: DeviceSet<P>,
    P: Platform,
    F: FnOnce(Env<P>, D, A) -> Fut,
    Fut: Future,
    Fut::Output: IntoExit,
{
    crate::backtrace::mark_stack_top();
    let logger: &'static boot::ConsoleLogger =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(boot::ConsoleLogger {
            now: M::monotonic_ns,
            write: M::console_write,
        }));
    let (args, mut net_args, trace_args) =
        match parse_arguments::<A>(words, D::NEEDS_NET, default_log, logger, M::console_write) {
            Ok(parsed) => parsed,
            Err(status) => return status,
        };
    if let Err(status) = crate::trace::start::<M>(&trace_args, crate::heap::size()) {
        return status;
    }
    if D::NEEDS_NET {
        if let Err(status) = limit_to_heap(&mut net_args, crate::heap::size(), M::console_write) {
            return status;
        }
    }
    let (executor, platform) = platform(net_args);
    run(executor, platform, args, main, M::console_write)
}

/// Where console output goes: one call per line or message.
pub type ConsoleWrite = fn(&[u8]);

/// The command line as words; a malformed one (an open quote) is reported
/// on the console and gives status 2.
pub fn words(line: &str, console: ConsoleWrite) -> Result<Vec<String>, i32> {
    boot_args::split_command_line(line).map_err(|e| {
        console(alloc::format!("unikernel: {e}\n").as_bytes());
        2
    })
}

/// Parses `words` into the application's arguments and the stack's
/// (`--ipv4`, ..., only when the application declares a network device,
/// `needs_net`: a constant, so images without one leave the stack's
/// argument code out), applies the runtime's (`--log`, `--name`;
/// `default_log` is a level the loader asked for) and installs `logger`;
/// the tracing arguments are returned for [`crate::trace::start`]. A bad
/// argument or `--help` prints the parser's text and gives its status.
pub fn parse_arguments<A: BootArgs>(
    words: &[String],
    needs_net: bool,
    default_log: Option<&str>,
    logger: &'static dyn log::Log,
    console: ConsoleWrite,
) -> Result<(A, NetArgs, TraceArgs), i32> {
    let mut app = A::defaults();
    let mut net_args = NetArgs::defaults();
    let mut runtime_args = RuntimeArgs::defaults();
    let mut trace_args = TraceArgs::defaults();
    if let Some(level) = default_log {
        runtime_args.log = String::from(level);
    }
    let parsed = if needs_net {
        boot::parse_command_line(
            "unikernel",
            words,
            &mut [&mut app, &mut net_args, &mut runtime_args, &mut trace_args],
        )
    } else {
        boot::parse_command_line(
            "unikernel",
            words,
            &mut [&mut app, &mut runtime_args, &mut trace_args],
        )
    };
    let parsed = parsed.and_then(|()| boot::apply_runtime_args("unikernel", &runtime_args));
    if let Err(stop) = parsed {
        console(stop.text.as_bytes());
        return Err(stop.status);
    }
    let _ = log::set_logger(logger);
    if let Some(name) = &runtime_args.name {
        log::info!("deployment name: {name}");
    }
    Ok((app, net_args, trace_args))
}

/// TCP buffers may take at most half the heap, whatever was asked: the
/// rest is for the application and the stack's own state
/// ([`NetArgs::limit_to_heap`]). Buffers a connection could not have
/// within that are a bad command line: the message goes to the console
/// and the status is 2.
pub fn limit_to_heap(
    net_args: &mut NetArgs,
    heap_bytes: usize,
    console: ConsoleWrite,
) -> Result<(), i32> {
    net_args.limit_to_heap(heap_bytes).map_err(|e| {
        console(alloc::format!("unikernel: {e}\n").as_bytes());
        2
    })
}

/// Acquires the devices the application declares (`D`) on `platform` and
/// runs `main` on `executor` to completion; its exit status (a failure's
/// message goes to the console). A declared device that is missing stops
/// the start with status 2 before `main` runs.
pub fn run<P, D, A, F, Fut>(
    executor: Executor,
    platform: P,
    app: A,
    main: F,
    console: ConsoleWrite,
) -> i32
where
    P: Platform,
    D: DeviceSet<P>,
    F: FnOnce(Env<P>, D, A) -> Fut,
    Fut: Future,
    Fut::Output: IntoExit,
{
    let main = match platform::enter(platform, executor.handle(), app, main) {
        Ok(main) => main,
        Err(e) => {
            console(alloc::format!("unikernel: {e}\n").as_bytes());
            return 2;
        }
    };
    let output = executor.block_on(main);
    crate::trace::drain();
    let exit = output.into_exit(&|message| {
        let mut line: Vec<u8> = Vec::from(message.as_bytes());
        line.push(b'\n');
        console(&line);
    });
    exit.0 as i32
}
