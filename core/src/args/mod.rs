//! Boot-time arguments: typed structs parsed from the command line that the
//! platform passes (argv on unix, the tender's command line on a unikernel).
//!
//! Each application declares one struct with [`boot_args!`](crate::boot_args);
//! each device family declares its own. The runtime parses them together, so
//! `--help` lists every section and a mistake anywhere is reported precisely.
//!
//! Syntax: `--name=value` or `--name value`; a boolean flag may stand alone
//! (`--verbose`). Names use dashes for the underscores of field names.
//! Device arguments name the device after a colon: `--block:storage=disk.img`.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use core::fmt;

/// One argument, as `--help` shows it.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// The field name (`ipv4_gateway`); shown and matched as `--ipv4-gateway`.
    pub name: &'static str,
    /// What the value looks like (`ADDR`, `N`); empty for a boolean flag.
    pub value: &'static str,
    /// The help text: its first paragraph is shown, wrapped (a field's doc
    /// comment, one line per doc line).
    pub help: &'static str,
    /// The default, as written in the source; empty for none.
    pub default: &'static str,
}

/// Why the command line was not accepted; the `Display` text is the message
/// for the user. [`ArgError::Help`] is not a failure: it carries the help text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// `--help` was given; the text to print.
    Help(String),
    /// No section knows this argument.
    Unknown(String),
    /// The argument needs a value and none was given.
    MissingValue(String),
    /// The value does not parse.
    Invalid {
        /// The argument's name.
        name: String,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Something that is not an argument (no leading `--`).
    Positional(String),
    /// The command line cannot be split into words; the text says why.
    Unsplittable(&'static str),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help(text) => f.write_str(text),
            ArgError::Unknown(name) => write!(f, "unknown argument '--{name}' (see --help)"),
            ArgError::MissingValue(name) => write!(f, "argument '--{name}' needs a value"),
            ArgError::Invalid {
                name,
                value,
                reason,
            } => {
                write!(f, "invalid value '{value}' for '--{name}': {reason}")
            }
            ArgError::Positional(arg) => {
                write!(
                    f,
                    "unexpected argument '{arg}': arguments are --name=value (see --help)"
                )
            }
            ArgError::Unsplittable(why) => write!(
                f,
                "the command line {why}: quote a value with \" or ' and escape with \\"
            ),
        }
    }
}

/// A value that can appear on the command line.
pub trait ArgValue: Sized {
    /// Whether the argument is a boolean flag that may stand alone.
    const IS_FLAG: bool = false;
    /// Parses the value; the error says why it is wrong.
    fn parse_arg(s: &str) -> Result<Self, String>;
}

macro_rules! arg_value_via_fromstr {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl ArgValue for $ty {
            fn parse_arg(s: &str) -> Result<Self, String> {
                s.parse().map_err(|_| $what.to_owned())
            }
        }
    )*};
}

arg_value_via_fromstr! {
    u8 => "expected a whole number from 0 to 255",
    u16 => "expected a whole number from 0 to 65535",
    u32 => "expected a whole number from 0 to 4294967295",
    u64 => "expected a whole number",
    usize => "expected a whole number",
    i32 => "expected a whole number",
    i64 => "expected a whole number",
    core::net::IpAddr => "expected an IPv4 or IPv6 address",
    core::net::Ipv4Addr => "expected an IPv4 address like 10.0.0.2",
    core::net::Ipv6Addr => "expected an IPv6 address",
    core::net::SocketAddr => "expected an address and port like 10.0.0.2:80",
}

impl ArgValue for String {
    fn parse_arg(s: &str) -> Result<Self, String> {
        Ok(s.to_owned())
    }
}

impl ArgValue for bool {
    const IS_FLAG: bool = true;
    fn parse_arg(s: &str) -> Result<Self, String> {
        match s {
            "" | "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        }
    }
}

/// `Option<T>`: absent by default; an empty value means absent.
impl<T: ArgValue> ArgValue for Option<T> {
    fn parse_arg(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            T::parse_arg(s).map(Some)
        }
    }
}

/// A duration: a number with a unit, `ms`, `s`, `m` or `h` (`30s`, `500ms`).
impl ArgValue for core::time::Duration {
    fn parse_arg(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| "expected a duration like 30s or 500ms".to_owned())?;
        let ms = match unit {
            "ms" => Some(n),
            "s" | "" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => return Err("unit must be ms, s, m or h".to_owned()),
        };
        ms.map(core::time::Duration::from_millis)
            .ok_or_else(|| "duration too long".to_owned())
    }
}

/// A set of arguments: one section of the command line.
///
/// Implemented by [`boot_args!`](crate::boot_args) for applications, and by
/// hand by targets for arguments of a form the macro cannot express (such as
/// `--block:NAME=FILE`).
pub trait ArgSet {
    /// The section's title in `--help`.
    fn title(&self) -> &str;
    /// The arguments, for `--help`.
    fn specs(&self) -> Vec<ArgSpec>;
    /// Takes `--name[=value]` if it belongs to this section: `Ok(false)` if it
    /// does not. `value` is `None` when the argument stood alone.
    fn accept(&mut self, name: &str, value: Option<&str>) -> Result<bool, ArgError>;
    /// Whether `name` is a flag of this section (may stand alone).
    fn is_flag(&self, name: &str) -> bool;
    /// Checks the section as a whole once every argument is taken: ranges
    /// and arguments that depend on each other (a gateway inside the
    /// address's prefix). [`parse`] calls it, so a value no later code can
    /// use is refused with the command line, not found when the program
    /// runs.
    fn check(&self) -> Result<(), ArgError> {
        Ok(())
    }
}

/// Arguments declared with [`boot_args!`](crate::boot_args).
pub trait BootArgs: ArgSet + Sized {
    /// Every field at its default.
    fn defaults() -> Self;
}

/// Compares an argument name with a field name, treating `-` and `_` alike.
pub fn name_matches(arg: &str, field: &str) -> bool {
    arg.len() == field.len()
        && arg
            .bytes()
            .zip(field.bytes())
            .all(|(a, f)| a == f || (a == b'-' && f == b'_'))
}

/// Parses one field's value for a generated [`ArgSet::accept`].
pub fn parse_field<T: ArgValue>(name: &str, value: Option<&str>) -> Result<T, ArgError> {
    let value = match value {
        Some(v) => v,
        None if T::IS_FLAG => "",
        None => return Err(ArgError::MissingValue(name.to_owned())),
    };
    T::parse_arg(value).map_err(|reason| ArgError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

/// Parses a field's default. Defaults are written in the source, so a bad one
/// is the programmer's mistake and stops the program with a clear message.
pub fn parse_default<T: ArgValue>(name: &str, default: &str) -> T {
    match T::parse_arg(default) {
        Ok(v) => v,
        Err(reason) => panic!("bad default '{default}' for --{name}: {reason}"),
    }
}

/// Splits a command line into words: whitespace separates, double or single
/// quotes group, backslash escapes the next character.
pub fn split_command_line(line: &str) -> Result<Vec<String>, ArgError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let escaped = chars
                    .next()
                    .ok_or(ArgError::Unsplittable("ends in a backslash"))?;
                word.push(escaped);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ArgError::Unsplittable("has a quote that is not closed"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses `args` (without the program name) into `sections`, in order,
/// then has each section [check](ArgSet::check) itself. Later occurrences
/// of an argument override earlier ones.
pub fn parse<S: AsRef<str>>(
    program: &str,
    args: &[S],
    sections: &mut [&mut dyn ArgSet],
) -> Result<(), ArgError> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        i += 1;
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ArgError::Positional(arg.to_owned()));
        };
        if body == "help" || body == "h" {
            return Err(ArgError::Help(help(program, sections)));
        }
        let (name, mut value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name.is_empty() {
            return Err(ArgError::Positional(arg.to_owned()));
        }
        let is_flag = sections.iter().any(|s| s.is_flag(name));
        // `--name value`: the next word is the value unless this is a flag or
        // the next word is itself an argument.
        if value.is_none() && !is_flag {
            if let Some(next) = args.get(i).map(|a| a.as_ref()) {
                if !next.starts_with("--") {
                    value = Some(next);
                    i += 1;
                }
            }
        }
        let mut taken = false;
        for section in sections.iter_mut() {
            if section.accept(name, value)? {
                taken = true;
                break;
            }
        }
        if !taken {
            return Err(ArgError::Unknown(name.to_owned()));
        }
    }
    sections.iter().try_for_each(|section| section.check())
}

/// The `--help` text for `sections`.
pub fn help(program: &str, sections: &[&mut dyn ArgSet]) -> String {
    let mut out = format!("usage: {program} [--ARG=VALUE ...]\n");
    for section in sections {
        let specs = section.specs();
        if specs.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{}:\n", section.title()));
        for spec in specs {
            let mut left = format!("  --{}", spec.name.replace('_', "-"));
            if !spec.value.is_empty() {
                left.push('=');
                left.push_str(spec.value);
            }
            let default =
                (!spec.default.is_empty()).then(|| format!("[default: {}]", spec.default));
            let words = first_paragraph(spec.help).chain(default.as_deref());
            out.push_str(&wrapped(&format!("{left:<30}"), words));
        }
    }
    out.push_str("\n  --help                         print this help\n");
    out
}

/// Width `--help` wraps its lines at.
const HELP_WIDTH: usize = 100;

/// The words of `text`'s first paragraph (up to its first blank line).
fn first_paragraph(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .flat_map(str::split_whitespace)
}

/// `left`, then `words` wrapped at [`HELP_WIDTH`], the lines after the
/// first indented to the words' column; ends with a newline.
fn wrapped<'a>(left: &str, words: impl Iterator<Item = &'a str>) -> String {
    let indent = left.chars().count() + 1;
    let mut out = String::from(left);
    let mut column = indent - 1;
    for word in words {
        let width = word.chars().count();
        if column > indent && column + 1 + width > HELP_WIDTH {
            out.push('\n');
            out.extend(core::iter::repeat_n(' ', indent - 1));
            column = indent - 1;
        }
        out.push(' ');
        out.push_str(word);
        column += 1 + width;
    }
    let mut out = String::from(out.trim_end());
    out.push('\n');
    out
}

/// Declares an application's (or a device's) boot arguments as a typed
/// struct. Each field has a doc comment (its help line), a type implementing
/// [`ArgValue`] and a default written as a string; `Option` fields default to
/// `""`, meaning absent. An attribute `#[check(PATH)]` after the struct's doc
/// comment names a `fn(&Self) -> Result<(), ArgError>` that
/// [`ArgSet::check`] calls once every argument is parsed (ranges, arguments
/// that depend on each other).
///
/// ```
/// lamina_core::boot_args! {
///     /// Greets people.
///     pub struct HelloArgs {
///         /// What to print.
///         pub greeting: String = "Hello",
///         /// How many times.
///         pub times: u32 = "3",
///     }
/// }
/// use lamina_core::args::{parse, BootArgs};
/// let mut args = HelloArgs::defaults();
/// parse("hello", &["--times=5"], &mut [&mut args]).unwrap();
/// assert_eq!((args.greeting.as_str(), args.times), ("Hello", 5));
/// ```
#[macro_export]
macro_rules! boot_args {
    (
        $(#[doc = $title:literal])*
        $(#[check($check:path)])?
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $help:literal])*
                $fvis:vis $field:ident : $ty:ty = $default:literal
            ),* $(,)?
        }
    ) => {
        $(#[doc = $title])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            $( $(#[doc = $help])* $fvis $field: $ty, )*
        }

        impl $crate::args::BootArgs for $name {
            fn defaults() -> Self {
                $name {
                    $( $field: $crate::args::parse_default::<$ty>(stringify!($field), $default), )*
                }
            }
        }

        impl $crate::args::ArgSet for $name {
            fn title(&self) -> &str {
                $crate::args::first_line(&[$($title),*], stringify!($name))
            }
            fn specs(&self) -> $crate::args::Vec<$crate::args::ArgSpec> {
                $crate::args::Vec::from([$(
                    $crate::args::ArgSpec {
                        name: stringify!($field),
                        value: $crate::args::value_hint::<$ty>(),
                        help: concat!($($help, "\n"),*),
                        default: $default,
                    },
                )*])
            }
            fn accept(&mut self, name: &str, value: Option<&str>) -> Result<bool, $crate::args::ArgError> {
                $(
                    if $crate::args::name_matches(name, stringify!($field)) {
                        self.$field = $crate::args::parse_field::<$ty>(name, value)?;
                        return Ok(true);
                    }
                )*
                Ok(false)
            }
            fn is_flag(&self, name: &str) -> bool {
                $( if $crate::args::name_matches(name, stringify!($field)) {
                    return <$ty as $crate::args::ArgValue>::IS_FLAG;
                } )*
                false
            }
            fn check(&self) -> Result<(), $crate::args::ArgError> {
                // The `#[check(...)]` function, if there is one.
                let checks: &[fn(&Self) -> Result<(), $crate::args::ArgError>] = &[$($check)?];
                checks.iter().try_for_each(|check| check(self))
            }
        }
    };
}

#[doc(hidden)]
pub use alloc::vec::Vec;

/// The first doc line of an item, trimmed, or `fallback`.
#[doc(hidden)]
pub fn first_line<'a>(lines: &[&'a str], fallback: &'a str) -> &'a str {
    lines.first().map(|l| l.trim()).unwrap_or(fallback)
}

/// What `--help` shows after `=`: the type's shape.
#[doc(hidden)]
pub fn value_hint<T: ArgValue>() -> &'static str {
    let name = core::any::type_name::<T>();
    if T::IS_FLAG {
        ""
    } else if name.contains("Duration") {
        "TIME"
    } else if name.contains("SocketAddr") {
        "ADDR:PORT"
    } else if name.contains("Ip") {
        "ADDR"
    } else if name.contains("String") {
        "TEXT"
    } else {
        "N"
    }
}

/// Arguments every target accepts.
pub mod common {
    use alloc::string::String;

    crate::boot_args! {
        /// Runtime
        pub struct RuntimeArgs {
            /// Log level: error, warn, info, debug or trace.
            pub log: String = "info",
            /// A name given by the deployer (accepted and logged, as Albatross passes it).
            pub name: Option<String> = "",
        }
    }
}

#[cfg(test)]
mod tests;
