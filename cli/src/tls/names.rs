//! The names a development certificate is for: DNS names (a wildcard only
//! as a whole leftmost label) and IP addresses, checked before anything is
//! made so that a typo is an error here rather than a certificate no
//! client accepts.

use std::fmt;
use std::net::IpAddr;

/// One name of a certificate's subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A DNS name, lowercase, without a trailing dot; may start with `*.`.
    Dns(String),
    /// An IP address (an iPAddress SAN, which clients match against the
    /// address they connected to).
    Ip(IpAddr),
}

impl Name {
    /// Parses and checks one NAME from the command line; the error says
    /// what is wrong with it.
    pub fn parse(text: &str) -> Result<Name, String> {
        if text.is_empty() {
            return Err(String::from("an empty name"));
        }
        // An IPv6 address may be written as in a URL.
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Name::Ip(ip));
        }
        check_dns_name(text).map(|()| Name::Dns(text.to_ascii_lowercase()))
    }

    /// The part of the certificate's and key's file names that stands for
    /// this name: the name itself, with a wildcard spelled `_wildcard`
    /// (as mkcert does) so that no shell expands it.
    pub fn file_stem(&self) -> String {
        match self {
            Name::Dns(name) => match name.strip_prefix("*.") {
                Some(rest) => format!("_wildcard.{rest}"),
                None => name.clone(),
            },
            Name::Ip(ip) => ip.to_string(),
        }
    }

    /// A URL a client could fetch with this name (a wildcard stands for
    /// `www`).
    pub fn example_url(&self) -> String {
        match self {
            Name::Dns(name) => match name.strip_prefix("*.") {
                Some(rest) => format!("https://www.{rest}/"),
                None => format!("https://{name}/"),
            },
            Name::Ip(IpAddr::V4(ip)) => format!("https://{ip}/"),
            Name::Ip(IpAddr::V6(ip)) => format!("https://[{ip}]/"),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Dns(name) => f.write_str(name),
            Name::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The longest DNS name, in its text form without the trailing dot
/// (RFC 1035: 255 octets on the wire).
const MAX_NAME: usize = 253;
/// The longest label (RFC 1035).
const MAX_LABEL: usize = 63;

/// Whether `name` is a host name a TLS client would match: letters, digits
/// and hyphens in labels of 1 to 63 characters, no hyphen at either end of
/// a label, a last label that is not all digits (that would be a mistyped
/// address), and `*` only as the whole first label of a name with at least
/// two more (browsers refuse `*.test`).
fn check_dns_name(name: &str) -> Result<(), String> {
    if let Some(c) = name.chars().find(|c| c.is_whitespace()) {
        return Err(format!("a name cannot contain whitespace ({c:?})"));
    }
    if !name.is_ascii() {
        return Err(String::from(
            "not ASCII: write an internationalised name in its xn-- form",
        ));
    }
    if name.ends_with('.') {
        return Err(String::from("drop the trailing dot"));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "{} characters long, more than the {MAX_NAME} a DNS name can have",
            name.len()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let (first, rest) = labels.split_first().expect("split yields one item");
    let after_wildcard = if *first == "*" {
        if rest.len() < 2 {
            return Err(String::from(
                "a wildcard needs at least two labels after it, like *.example.test",
            ));
        }
        rest
    } else {
        &labels[..]
    };
    for label in after_wildcard {
        check_label(label)?;
    }
    let last = labels.last().expect("split yields one item");
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(String::from(
            "neither an IP address nor a DNS name (its last label is all digits)",
        ));
    }
    Ok(())
}

/// One label of a DNS name, other than a leading wildcard.
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(String::from(
            "an empty label (two dots in a row, or a leading dot)",
        ));
    }
    if label.contains('*') {
        return Err(String::from(
            "a wildcard can only be the whole first label, like *.example.test",
        ));
    }
    if label.len() > MAX_LABEL {
        return Err(format!(
            "the label '{label}' is longer than {MAX_LABEL} characters"
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed in a host name (letters, digits, '-' and '.')"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("the label '{label}' starts or ends with a hyphen"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_and_addresses_parse() {
        assert_eq!(
            Name::parse("Example.TEST").unwrap(),
            Name::Dns("example.test".into())
        );
        assert_eq!(
            Name::parse("localhost").unwrap(),
            Name::Dns("localhost".into())
        );
        assert_eq!(
            Name::parse("*.example.test").unwrap(),
            Name::Dns("*.example.test".into())
        );
        assert_eq!(
            Name::parse("10.0.0.2").unwrap(),
            Name::Ip("10.0.0.2".parse().unwrap())
        );
        assert_eq!(
            Name::parse("[::1]").unwrap(),
            Name::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Name::parse("::1").unwrap(),
            Name::Ip("::1".parse().unwrap())
        );
        assert!(Name::parse("xn--bcher-kva.example").is_ok());
        assert!(Name::parse(&format!("{}.test", "a".repeat(63))).is_ok());
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, reason) in [
            ("", "empty"),
            ("two words", "whitespace"),
            ("example.test.", "trailing dot"),
            ("a..test", "empty label"),
            (".test", "empty label"),
            ("foo.*.test", "whole first label"),
            ("f*o.example.test", "whole first label"),
            ("*.test", "two labels after it"),
            ("*", "two labels after it"),
            ("under_score.test", "'_' is not allowed"),
            ("-lead.test", "hyphen"),
            ("trail-.test", "hyphen"),
            ("bücher.test", "xn--"),
            ("127.1", "all digits"),
            ("300.1.1.1", "all digits"),
        ] {
            let error = Name::parse(name).expect_err(name);
            assert!(error.contains(reason), "{name:?}: {error}");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        assert!(Name::parse(&long_label)
            .unwrap_err()
            .contains("longer than 63"));
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(Name::parse(&long_name).unwrap_err().contains("253"));
    }

    #[test]
    fn file_stems_and_urls() {
        let wildcard = Name::parse("*.example.test").unwrap();
        assert_eq!(wildcard.file_stem(), "_wildcard.example.test");
        assert_eq!(wildcard.example_url(), "https://www.example.test/");
        let v6 = Name::parse("::1").unwrap();
        assert_eq!(v6.example_url(), "https://[::1]/");
        assert_eq!(v6.file_stem(), "::1");
    }
}
