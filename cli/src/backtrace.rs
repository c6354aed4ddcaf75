//! A unikernel's backtrace, named: a bare-metal panic prints the return
//! addresses of its stack (`lamina: backtrace: 0x... 0x...`, see
//! `lamina_core::boot::BacktraceLine`); `lamina run` recognises that line
//! on the console and prints each address as the functions (inlined ones
//! included), files and lines the image's debug information gives.
//! Images are linked at a fixed address, so addresses need no relocation.

use addr2line::Loader;
use lamina_core::boot::parse_backtrace_line;
use std::path::{Path, PathBuf};

/// Most addresses read from one line (the guest prints at most 32).
const MAX_ADDRESSES: usize = 64;

/// Longest console line looked at; longer ones are not backtraces.
const MAX_LINE: usize = 2048;

/// Watches a stream of console output, line by line, for backtraces.
pub struct Watcher {
    image: PathBuf,
    line: Vec<u8>,
    /// The line grew past [`MAX_LINE`]: ignore it up to its newline.
    overlong: bool,
}

impl Watcher {
    /// A watcher that names addresses from `image`.
    pub fn new(image: &Path) -> Self {
        Watcher {
            image: image.to_owned(),
            line: Vec::new(),
            overlong: false,
        }
    }

    /// Takes the next `bytes` of output; for each backtrace line they
    /// complete, returns the lines naming its frames.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut named = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                if !self.overlong {
                    let line = String::from_utf8_lossy(&self.line);
                    // A console may end lines with \r\n (QEMU's serial).
                    let line = line.trim_end_matches('\r');
                    if let Some(rip) = fault_address(line) {
                        named.extend(name_fault(&self.image, rip));
                    }
                    let line = line.find("lamina: backtrace:").map_or("", |at| &line[at..]);
                    let mut addresses = [0u64; MAX_ADDRESSES];
                    if let Some(count) = parse_backtrace_line(line, &mut addresses) {
                        named.extend(name_frames(&self.image, &addresses[..count]));
                    }
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            } else {
                self.overlong = true;
            }
        }
        named
    }
}

/// The faulting instruction's address of a tender's fault report
/// (`lamina-hvt: guest fault: page fault (#PF) ... at rip=0x102a4c`, see
/// `lamina_tender::fault`), if `line` is one.
fn fault_address(line: &str) -> Option<u64> {
    let report = &line[line.find("guest fault: ")?..];
    let hex = report.rsplit_once(" rip=0x")?.1;
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u64::from_str_radix(&hex[..end], 16).ok()
}

/// The line naming the instruction at `rip` that faulted (the address
/// itself, not a return address: nothing is subtracted), from the image
/// or, for a stripped release image, its IMAGE.debug.
fn name_fault(image: &Path, rip: u64) -> Vec<String> {
    let Ok(loader) = Loader::new(crate::guest::with_symbols(image)) else {
        return Vec::new();
    };
    let names = names_at(&loader, rip);
    let mut lines = vec![format!(
        "lamina: the fault, named: {rip:#x} {}",
        names.first().map_or("??", String::as_str)
    )];
    for name in names.iter().skip(1) {
        lines.push(format!("      inlined into {name}"));
    }
    lines
}

/// The lines that name `addresses` (return addresses, innermost first)
/// from `image`: `#N 0xADDR function at file:line`, one more line per
/// function inlined there. A stripped `--release` image is named from the
/// unstripped copy `lamina build` keeps beside it (IMAGE.debug: symbols
/// and line tables); an image with neither gets one line saying so.
pub fn name_frames(image: &Path, addresses: &[u64]) -> Vec<String> {
    let image = &crate::guest::with_symbols(image);
    let loader = match Loader::new(image) {
        Ok(loader) => loader,
        Err(e) => {
            return vec![format!(
                "lamina: cannot name the backtrace's frames from {}: {e}",
                image.display()
            )]
        }
    };
    let mut lines = vec!["lamina: backtrace, named:".to_owned()];
    let mut named_any = false;
    for (index, &address) in addresses.iter().enumerate() {
        // A return address is the instruction after the call: the call
        // itself (its function and line) is at the byte before.
        let call = address.saturating_sub(1);
        let names = names_at(&loader, call);
        named_any |= !names.is_empty();
        if names.is_empty() {
            lines.push(format!("  #{index} {address:#x} ??"));
        }
        for (depth, name) in names.iter().enumerate() {
            if depth == 0 {
                lines.push(format!("  #{index} {address:#x} {name}"));
            } else {
                lines.push(format!("      inlined into {name}"));
            }
        }
    }
    if !named_any {
        lines.push(format!(
            "lamina: {} has no symbols or line tables (a --release image built before IMAGE.debug was kept is stripped: rebuild it)",
            image.display()
        ));
    }
    lines
}

/// `function at file:line` for `address`, innermost (inlined) first. The
/// outermost function, the one `address` is in, is named by the symbol
/// table (its full path: `selftest::panic_here`), inlined ones by the line
/// tables (which hold short names only).
fn names_at(loader: &Loader, address: u64) -> Vec<String> {
    let mut frames_found: Vec<(Option<String>, Option<String>)> = Vec::new();
    if let Ok(mut frames) = loader.find_frames(address) {
        while let Ok(Some(frame)) = frames.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok().map(|name| name.into_owned()));
            let place = frame
                .location
                .as_ref()
                .and_then(|location| Some(format!("{}:{}", location.file?, location.line?)));
            frames_found.push((function, place));
        }
    }
    let symbol = loader
        .find_symbol(address)
        .map(|raw| addr2line::demangle_auto(raw.into(), None).into_owned());
    match (frames_found.last_mut(), symbol) {
        (Some((function, _)), Some(symbol)) => *function = Some(symbol),
        (None, Some(symbol)) => frames_found.push((Some(symbol), None)),
        _ => {}
    }
    frames_found
        .into_iter()
        .map(|(function, place)| {
            let function = function.unwrap_or_else(|| "??".to_owned());
            match place {
                Some(place) => format!("{function} at {place}"),
                None => function,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary names its own functions: it has line tables
    /// (`debug = "line-tables-only"` or more) like a guest image. Returns
    /// the function's address in the file: the test binary is
    /// position-independent, loaded where its first mapping (file offset
    /// 0, address 0 in the file) starts, unlike an image.
    #[inline(never)]
    fn a_known_function() -> u64 {
        let runtime = std::hint::black_box(a_known_function as *const () as u64);
        let exe = std::env::current_exe().unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let base = maps
            .lines()
            .find(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() >= 6
                    && fields[2] == "00000000"
                    && std::path::Path::new(fields[5]) == exe
            })
            .and_then(|line| u64::from_str_radix(line.split('-').next()?, 16).ok())
            .expect("the test binary's first mapping");
        runtime - base
    }

    #[test]
    fn an_address_is_named_from_the_image() {
        let image = std::env::current_exe().unwrap();
        // An address inside the function (one past its start, as a return
        // address would be).
        let address = a_known_function() + 2;
        let lines = name_frames(&image, &[address]);
        let text = lines.join("\n");
        assert!(
            text.contains("backtrace::tests::a_known_function at")
                && text.contains("backtrace.rs:"),
            "{text}"
        );
    }

    #[test]
    fn only_whole_backtrace_lines_are_named() {
        let image = std::env::current_exe().unwrap();
        let mut watcher = Watcher::new(&image);
        assert!(watcher.feed(b"hello\nlamina: panic: x\n").is_empty());
        let address = a_known_function() + 2;
        let line = format!("lamina: backtrace: {address:#x}\r\n");
        let (first, rest) = line.as_bytes().split_at(10);
        assert!(watcher.feed(first).is_empty(), "not yet a whole line");
        let named = watcher.feed(rest);
        assert!(
            named.iter().any(|l| l.contains("a_known_function")),
            "{named:?}"
        );
        let overlong = vec![b'x'; MAX_LINE + 10];
        assert!(watcher.feed(&overlong).is_empty());
        assert!(watcher.feed(b" lamina: backtrace: 0x1\n").is_empty());
    }

    #[test]
    fn a_tenders_fault_report_names_the_faulting_instruction() {
        let image = std::env::current_exe().unwrap();
        let mut watcher = Watcher::new(&image);
        // The instruction's own address: nothing is subtracted, so the
        // function's first byte is still the function.
        let address = a_known_function();
        let report = format!("lamina-hvt: guest fault: invalid opcode (#UD) at rip={address:#x}\n");
        let named = watcher.feed(report.as_bytes());
        assert!(
            named[0].starts_with(&format!("lamina: the fault, named: {address:#x} "))
                && named[0].contains("a_known_function at"),
            "{named:?}"
        );
        assert_eq!(fault_address("guest fault: x at rip=0x1f!"), Some(0x1f));
        for not_one in [
            "rip=0x10",
            "guest fault: no address",
            "guest fault: rip=0xzz",
        ] {
            assert_eq!(fault_address(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn a_missing_image_is_said_not_crashed_on() {
        let lines = name_frames(Path::new("/nonexistent/image"), &[0x1000]);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("cannot name"), "{lines:?}");
    }
}
