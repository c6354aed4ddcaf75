//! A guest fault explained by its tender, in the words a guest panic uses:
//! one line naming the exception and the faulting instruction (`rip=0x...`,
//! which `lamina run` names with its function and line), then the guest's
//! frame-pointer backtrace as a `lamina: backtrace: 0x... 0x...` line, the
//! format lamina-metal's panic handler prints, so `lamina run` names its
//! frames the same way.
//!
//! Nothing here allocates or panics: lamina-spt builds its report inside
//! a signal handler, on the guest's thread, and writes it with one
//! `write(2)`. The walk reads guest memory only through the caller's
//! checked `read`, between the stack pointer and a bound the caller gives:
//! a garbage frame-pointer chain ends the walk, it never faults the tender.

pub use lamina_abi::frames::{walk, Frames, MAX_FRAMES};

/// Frames further than this above the stack pointer are not believed.
pub const MAX_STACK: u64 = 16 * 1024 * 1024;

/// The prefix of a backtrace line: the same as lamina-core's
/// `BACKTRACE_PREFIX`, which the guest prints and `lamina run` parses.
pub const BACKTRACE_PREFIX: &str = "lamina: backtrace:";

/// The walk's bounds for a stack pointer `sp` in memory that ends at
/// `mem_end`: from `sp` up to [`MAX_STACK`] above it, not past the end.
pub fn stack_bounds(sp: u64, mem_end: u64) -> (u64, u64) {
    (sp, sp.saturating_add(MAX_STACK).min(mem_end))
}

/// A report of a few lines in a fixed buffer: text and hexadecimal
/// numbers are appended, whatever does not fit is dropped. What a signal
/// handler can build.
pub struct Report {
    buf: [u8; 1024],
    len: usize,
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

impl Report {
    /// An empty report.
    pub const fn new() -> Self {
        Report {
            buf: [0; 1024],
            len: 0,
        }
    }

    /// Appends `text`, as much as fits.
    pub fn text(&mut self, text: &str) -> &mut Self {
        let n = text.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&text.as_bytes()[..n]);
        self.len += n;
        self
    }

    /// Appends `value` as `0x` and lowercase hexadecimal digits.
    pub fn hex(&mut self, value: u64) -> &mut Self {
        let mut digits = [0u8; 18];
        digits[0] = b'0';
        digits[1] = b'x';
        let count = (64 - value.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..count {
            let nibble = (value >> (4 * (count - 1 - i))) & 0xf;
            digits[2 + i] = b"0123456789abcdef"[nibble as usize];
        }
        // The digits are ASCII.
        self.text(core::str::from_utf8(&digits[..2 + count]).unwrap_or("0x?"))
    }

    /// Appends `value` in decimal.
    pub fn decimal(&mut self, mut value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.text(core::str::from_utf8(&digits[at..]).unwrap_or("?"))
    }

    /// Appends the backtrace line for `frames` (nothing when it is empty),
    /// newline included.
    pub fn backtrace(&mut self, frames: &Frames) -> &mut Self {
        if frames.addresses().is_empty() {
            return self;
        }
        self.text(BACKTRACE_PREFIX);
        for &address in frames.addresses() {
            self.text(" ").hex(address);
        }
        self.text("\n")
    }

    /// The report so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The report so far, as text (it is built from `&str` and ASCII
    /// digits; a cut in the middle of a character is dropped).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(text) => text,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

/// An x86 exception vector's name and mnemonic.
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug exception (#DB)",
        2 => "non-maskable interrupt (NMI)",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection fault (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point exception (#XM)",
        20 => "virtualization exception (#VE)",
        21 => "control protection exception (#CP)",
        _ => "reserved exception",
    }
}

/// Appends `guest fault: EXCEPTION [DETAIL] at rip=RIP` for exception
/// `vector` with its `error_code` (if the CPU pushed one) and, for a page
/// fault, the faulting address `cr2`.
pub fn describe_exception(
    report: &mut Report,
    vector: u8,
    error_code: Option<u64>,
    cr2: u64,
    rip: u64,
) {
    report.text("guest fault: ").text(exception_name(vector));
    match (vector, error_code) {
        (14, Some(code)) => {
            let (access, why) = page_fault_access(code);
            report
                .text(" ")
                .text(access)
                .text(" ")
                .hex(cr2)
                .text(" (")
                .text(why)
                .text(")");
        }
        (_, Some(code)) if code != 0 => {
            report.text(", error code ").hex(code);
        }
        _ => {}
    }
    report.text(" at rip=").hex(rip);
}

/// What an x86 page fault's error code says: the access and why it
/// failed, e.g. "writing, page not present".
pub fn page_fault_access(error_code: u64) -> (&'static str, &'static str) {
    let access = if error_code & (1 << 4) != 0 {
        "executing"
    } else if error_code & (1 << 1) != 0 {
        "writing"
    } else {
        "reading"
    };
    let why = if error_code & 1 != 0 {
        "protection violation"
    } else {
        "page not present"
    };
    (access, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_formats_like_the_guest_backtrace() {
        let stack = [0u64, 0x10_2a3b];
        let frames = walk(0x1000, 0x1000, 0x1010, |address| {
            stack.get(((address - 0x1000) / 8) as usize).copied()
        });
        let mut report = Report::new();
        report
            .text("fault at rip=")
            .hex(0x10_2a4c)
            .text(" vector ")
            .decimal(14)
            .text(" zero ")
            .hex(0)
            .text("\n")
            .backtrace(&frames);
        assert_eq!(
            report.as_str(),
            "fault at rip=0x102a4c vector 14 zero 0x0\nlamina: backtrace: 0x102a3b\n"
        );
        let mut full = Report::new();
        for _ in 0..100 {
            full.text("0123456789abcdef").hex(u64::MAX);
        }
        assert_eq!(full.as_bytes().len(), 1024, "what does not fit is dropped");
    }

    #[test]
    fn page_fault_codes_are_read() {
        assert_eq!(page_fault_access(0x6), ("writing", "page not present"));
        assert_eq!(page_fault_access(0x7), ("writing", "protection violation"));
        assert_eq!(
            page_fault_access(0x15),
            ("executing", "protection violation")
        );
        assert_eq!(page_fault_access(0x4), ("reading", "page not present"));
    }
}
