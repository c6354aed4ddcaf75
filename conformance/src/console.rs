//! The [`Console`] suite. A console cannot be read back from inside, so the
//! suite writes lines the host then checks: [`LONG_LINE_LEN`] bytes in one
//! call that must arrive unbroken, and lines that must arrive in order.

use crate::Report;
use alloc::format;
use alloc::vec;
use lamina_core::device::Console;

/// Length of the line written in one call ([`long_line`]).
pub const LONG_LINE_LEN: usize = 8192;

/// Lines written in order, `conformance console line I of ORDERED_LINES`.
pub const ORDERED_LINES: usize = 20;

/// The long line the suite writes: `conformance console long:` and then
/// digits up to [`LONG_LINE_LEN`] bytes, without the newline.
pub fn long_line() -> alloc::string::String {
    let mut line = alloc::string::String::from("conformance console long:");
    let mut digit = 0u8;
    while line.len() < LONG_LINE_LEN {
        line.push((b'0' + digit) as char);
        digit = (digit + 1) % 10;
    }
    line
}

/// Writes the suite's lines. The checks recorded here are those that can
/// be seen from inside (no call fails or panics, whatever the bytes); the
/// host checks the text arrived whole and in order.
pub fn run<C: Console>(console: &C) -> Report {
    let mut report = Report::new("Console");
    // Never fails: an empty write, bytes that are not UTF-8, a NUL.
    console.write(b"");
    console.write(&[0xff, 0xfe, 0, b'\n']);
    report.record("writes of any bytes return", Ok(()));
    let long = long_line();
    console.write_line(&long);
    report.record("a long line is written in one call", Ok(()));
    for i in 1..=ORDERED_LINES {
        console.write_line(&format!("conformance console line {i} of {ORDERED_LINES}"));
    }
    let mut bytes = vec![b'x'; 100];
    bytes.push(b'\n');
    console.write(&bytes);
    report.record("lines are written in order", Ok(()));
    report
}

/// Checks the text a host captured from a console that ran [`run`]: the
/// long line arrived unbroken and the ordered lines in order.
pub fn check_output(output: &str) -> Result<(), alloc::string::String> {
    let long = long_line();
    if !output.lines().any(|l| l == long) {
        return Err(format!(
            "the {LONG_LINE_LEN}-byte line did not arrive in one piece"
        ));
    }
    let mut expected = 1;
    for line in output.lines() {
        if line == format!("conformance console line {expected} of {ORDERED_LINES}") {
            expected += 1;
        } else if line.starts_with("conformance console line ") {
            return Err(format!("'{line}' came where line {expected} was due"));
        }
    }
    if expected != ORDERED_LINES + 1 {
        return Err(format!("only {} ordered lines arrived", expected - 1));
    }
    Ok(())
}
