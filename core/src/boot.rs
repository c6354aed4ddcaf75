//! What every target does with its command line at boot, and how log lines
//! look: one implementation for the unix process and the unikernels.

use crate::args::common::RuntimeArgs;
use crate::args::{self, ArgError, ArgSet};
use alloc::format;
use alloc::string::String;

/// Booting stops before the application runs: print `text`, exit `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// 0 after `--help`, 2 for a bad command line.
    pub status: i32,
    /// The help text, or the error message, ending in a newline.
    pub text: String,
}

/// Parses `words` into `sections` (the application's, the devices', and the
/// runtime's [`RuntimeArgs`]), then applies the runtime's arguments: the
/// log level.
///
/// ```
/// use lamina_core::args::common::RuntimeArgs;
/// use lamina_core::args::BootArgs;
/// let mut runtime = RuntimeArgs::defaults();
/// let stop = lamina_core::boot::parse_command_line("app", &["--bogus"], &mut [&mut runtime]);
/// assert_eq!(stop.unwrap_err().status, 2);
/// ```
pub fn parse_command_line<S: AsRef<str>>(
    program: &str,
    words: &[S],
    sections: &mut [&mut dyn ArgSet],
) -> Result<(), Stop> {
    let usage = |e: &ArgError| Stop {
        status: 2,
        text: format!("{program}: {e}\n"),
    };
    match args::parse(program, words, sections) {
        Ok(()) => Ok(()),
        Err(ArgError::Help(text)) => Err(Stop { status: 0, text }),
        Err(e) => Err(usage(&e)),
    }
}

/// Applies the runtime's own arguments: sets the log level.
pub fn apply_runtime_args(program: &str, runtime: &RuntimeArgs) -> Result<(), Stop> {
    let Ok(level) = runtime.log.parse::<log::LevelFilter>() else {
        let e = ArgError::Invalid {
            name: String::from("log"),
            value: runtime.log.clone(),
            reason: String::from("expected error, warn, info, debug or trace"),
        };
        return Err(Stop {
            status: 2,
            text: format!("{program}: {e}\n"),
        });
    };
    log::set_max_level(level);
    Ok(())
}

/// One log line: seconds since boot, level, message.
pub fn log_line(nanos_since_boot: u64, record: &log::Record) -> String {
    format!(
        "[{:4}.{:06}] {:5} {}\n",
        nanos_since_boot / 1_000_000_000,
        (nanos_since_boot / 1000) % 1_000_000,
        record.level(),
        record.args()
    )
}

/// A panic's message and location as one console line, formatted on the
/// stack (the heap may be what failed). Longer messages are cut at 512 bytes.
pub struct PanicLine {
    buf: [u8; 512],
    len: usize,
}

impl PanicLine {
    /// `lamina: panic: MESSAGE at FILE:LINE:COLUMN` and a newline.
    pub fn new(info: &core::panic::PanicInfo) -> Self {
        use core::fmt::Write;
        let mut line = PanicLine {
            buf: [0; 512],
            len: 0,
        };
        let _ = write!(line, "lamina: panic: {}", info.message());
        if let Some(location) = info.location() {
            let _ = write!(
                line,
                " at {}:{}:{}",
                location.file(),
                location.line(),
                location.column()
            );
        }
        // Room for the newline, even when the message filled the buffer.
        line.len = line.len.min(line.buf.len() - 1);
        line.buf[line.len] = b'\n';
        line.len += 1;
        line
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for PanicLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A logger for targets whose console and clock are plain functions (the
/// unikernel runtimes): each record becomes one [`log_line`], one console
/// write.
///
/// ```ignore
/// static LOGGER: ConsoleLogger = ConsoleLogger { now: sys::monotonic_ns, write: sys::console_write };
/// let _ = log::set_logger(&LOGGER);
/// ```
pub struct ConsoleLogger {
    /// Nanoseconds since boot.
    pub now: fn() -> u64,
    /// Writes one line to the console.
    pub write: fn(&[u8]),
}

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            (self.write)(log_line((self.now)(), record).as_bytes());
        }
    }

    fn flush(&self) {}
}
