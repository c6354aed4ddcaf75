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

/// What starts a backtrace line on a unikernel's console.
pub const BACKTRACE_PREFIX: &str = "lamina: backtrace:";

/// The line a bare-metal panic prints after its [`PanicLine`]: the return
/// addresses of the stack, innermost first, in hexadecimal:
/// `lamina: backtrace: 0x1a2b 0x1c3d` and a newline. Written into a fixed
/// buffer (a panic must not allocate); [`parse_backtrace_line`] reads it.
pub struct BacktraceLine {
    buf: [u8; 640],
    len: usize,
}

impl BacktraceLine {
    /// The line for `addresses` (as many as fit: 32 always do).
    pub fn new(addresses: &[usize]) -> Self {
        use core::fmt::Write;
        let mut line = BacktraceLine {
            buf: [0; 640],
            len: 0,
        };
        let _ = line.write_str(BACKTRACE_PREFIX);
        for address in addresses {
            // Each address whole or not at all.
            if line.len + 20 > line.buf.len() - 1 {
                break;
            }
            let _ = write!(line, " {address:#x}");
        }
        line.buf[line.len] = b'\n';
        line.len += 1;
        line
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for BacktraceLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The return addresses of a backtrace line (see [`BacktraceLine`]),
/// written into `out`; returns how many, or `None` when `line` is not one
/// (wrong prefix, a word that is not `0x` and hexadecimal digits).
pub fn parse_backtrace_line(line: &str, out: &mut [u64]) -> Option<usize> {
    let rest = line.trim_end().strip_prefix(BACKTRACE_PREFIX)?;
    let mut count = 0;
    for word in rest.split_ascii_whitespace() {
        let address = u64::from_str_radix(word.strip_prefix("0x")?, 16).ok()?;
        if count < out.len() {
            out[count] = address;
            count += 1;
        }
    }
    Some(count)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtrace_lines_read_back() {
        let line = BacktraceLine::new(&[0x10_2a3b, 0x1, usize::MAX]);
        let text = core::str::from_utf8(line.as_bytes()).unwrap();
        assert_eq!(text, "lamina: backtrace: 0x102a3b 0x1 0xffffffffffffffff\n");
        let mut out = [0u64; 4];
        assert_eq!(parse_backtrace_line(text, &mut out), Some(3));
        assert_eq!(out[..3], [0x10_2a3b, 0x1, u64::MAX]);
        // 32 addresses of 64 bits all fit.
        let many = [usize::MAX; 32];
        let line = BacktraceLine::new(&many);
        let text = core::str::from_utf8(line.as_bytes()).unwrap();
        let mut out = [0u64; 32];
        assert_eq!(parse_backtrace_line(text, &mut out), Some(32));
    }

    #[test]
    fn other_lines_are_not_backtraces() {
        let mut out = [0u64; 4];
        for line in [
            "lamina: panic: boom",
            "lamina: backtrace: 0x12 zz",
            "lamina: backtrace: 12",
            "xlamina: backtrace: 0x12",
        ] {
            assert_eq!(parse_backtrace_line(line, &mut out), None, "{line}");
        }
        assert_eq!(
            parse_backtrace_line("lamina: backtrace:", &mut out),
            Some(0)
        );
    }
}
