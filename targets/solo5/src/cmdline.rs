//! The guest command line as Solo5 conventions shape it.

/// Splits off the leading `--solo5:LEVEL` words that Solo5's bindings
/// accept (`quiet`, `error`, `warn`, `info`, `debug`), so that images keep
/// working with deployers that pass them. Returns the log level they set, if
/// any, and the rest of the line for the application's arguments.
///
/// ```
/// use lamina_solo5::cmdline::split_solo5_options;
/// assert_eq!(split_solo5_options("--solo5:debug --times=3"), (Some("debug"), "--times=3"));
/// assert_eq!(split_solo5_options("  --times=3"), (None, "--times=3"));
/// ```
pub fn split_solo5_options(line: &str) -> (Option<&'static str>, &str) {
    let mut level = None;
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix("--solo5:") {
        let word_end = after.find(char::is_whitespace).unwrap_or(after.len());
        level = match &after[..word_end] {
            "quiet" | "error" => Some("error"),
            "warn" => Some("warn"),
            "info" => Some("info"),
            "debug" => Some("debug"),
            _ => break,
        };
        rest = after[word_end..].trim_start();
    }
    (level, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo5_options_are_taken_only_at_the_front() {
        assert_eq!(
            split_solo5_options("--solo5:quiet --solo5:warn a"),
            (Some("warn"), "a")
        );
        assert_eq!(
            split_solo5_options("a --solo5:debug"),
            (None, "a --solo5:debug")
        );
        assert_eq!(
            split_solo5_options("--solo5:bogus x"),
            (None, "--solo5:bogus x")
        );
        assert_eq!(split_solo5_options(""), (None, ""));
        assert_eq!(split_solo5_options("--solo5:info"), (Some("info"), ""));
    }
}
