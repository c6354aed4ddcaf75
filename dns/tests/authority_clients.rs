//! The authoritative answer logic behind the real serving loops (the unix
//! target's stack, on loopback), against real clients: dig and kdig over
//! UDP and TCP, with and without EDNS, truncation and the TCP retry, zone
//! transfers allowed and refused.

#[path = "support/loopback.rs"]
mod loopback;

use lamina_dns::server::{Authority, Config};
use lamina_dns::testing::zones;
use std::process::Command;

/// Serves `authority` on a loopback port (UDP and TCP) from a thread.
fn start(authority: Authority) -> u16 {
    start_with(authority, Config::default())
}

/// [`start`] with the serving loops' limits.
fn start_with(authority: Authority, config: Config) -> u16 {
    loopback::serve_on_loopback(move || authority, config).port()
}

/// A client's output, or `None` (skipped, or failed under CI) when the
/// client is not installed.
fn run(client: &str, port: u16, args: &[&str]) -> Option<String> {
    let patience: &[&str] = match client {
        "kdig" => &["+timeout=2", "+retry=0"],
        _ => &["+time=2", "+tries=1"],
    };
    let output = Command::new(client)
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .args(patience)
        .args(args)
        .output();
    match output {
        Ok(output) => Some(String::from_utf8_lossy(&output.stdout).into_owned()),
        Err(e) => {
            lamina_test_support::skip_or_fail(
                &format!("{client} {args:?}"),
                &format!("{client}: {e}"),
            );
            None
        }
    }
}

/// The answer section's lines, as dig prints them.
fn answers(output: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in output.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            inside = true;
        } else if inside && line.trim().is_empty() {
            break;
        } else if inside {
            lines.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    lines
}

#[test]
fn dig_gets_every_kind_of_answer() {
    let port = start(Authority::new(zones()));
    let Some(out) = run("dig", port, &["WwW.ExAmple.COM", "A"]) else {
        return;
    };
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "{out}");
    assert!(out.contains("; EDNS: version: 0"), "{out}");
    assert_eq!(
        answers(&out),
        [
            "WwW.ExAmple.COM. 300 IN A 192.0.2.1",
            "WwW.ExAmple.COM. 300 IN A 192.0.2.2"
        ]
    );
    let out = run("dig", port, &["+noedns", "alias.example.com", "A"]).unwrap();
    assert!(!out.contains("EDNS"), "{out}");
    assert_eq!(
        answers(&out)[0],
        "alias.example.com. 60 IN CNAME WWW.example.com."
    );
    assert_eq!(answers(&out).len(), 3);
    let out = run("dig", port, &["nothere.example.com", "A"]).unwrap();
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("AUTHORITY: 1"),
        "{out}"
    );
    assert!(
        out.contains("example.com.\t\t300\tIN\tSOA\tns1.example.com. hostmaster.example.com."),
        "{out}"
    );
    let out = run("dig", port, &["x.wild.example.com", "TXT"]).unwrap();
    assert_eq!(
        answers(&out),
        ["x.wild.example.com. 60 IN TXT \"wildcard\""]
    );
    let out = run("dig", port, &["a.sub.example.com", "A"]).unwrap();
    assert!(
        out.contains("status: NOERROR") && out.contains("flags: qr rd;"),
        "{out}"
    );
    assert!(
        out.contains("ns.sub.example.com.\t86400\tIN\tA\t192.0.2.99"),
        "{out}"
    );
    let out = run("dig", port, &["www.example.org", "A"]).unwrap();
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = run(
        "dig",
        port,
        &["+edns=1", "+noednsnegotiation", "www.example.com", "A"],
    )
    .unwrap();
    assert!(out.contains("status: BADVERS"), "{out}");
    let out = run("dig", port, &["+dnssec", "www.example.com", "A"]).unwrap();
    assert!(out.contains("flags: do;"), "{out}");
}

#[test]
fn truncated_answers_are_fetched_again_over_tcp() {
    // UDP answers up to 4096 bytes.
    let config = Config {
        max_udp_payload: 4096,
        ..Config::default()
    };
    let port = start_with(Authority::new(zones()), config);
    // Without EDNS: 512 bytes, TC; dig asked to ignore it sees the flag.
    let Some(out) = run(
        "dig",
        port,
        &["+noedns", "+ignore", "big.example.com", "TXT"],
    ) else {
        return;
    };
    assert!(out.contains("flags: qr aa tc rd;"), "{out}");
    // Left to itself, dig retries over TCP and gets all 40.
    let out = run("dig", port, &["+noedns", "big.example.com", "TXT"]).unwrap();
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert_eq!(answers(&out).len(), 40, "{out}");
    let out = run("dig", port, &["+bufsize=512", "big.example.com", "TXT"]).unwrap();
    assert_eq!(answers(&out).len(), 40, "{out}");
    // A payload size that fits it: no TC (the loops' limit is 4096).
    let out = run(
        "dig",
        port,
        &["+bufsize=4096", "+ignore", "big.example.com", "TXT"],
    )
    .unwrap();
    assert!(!out.contains(" tc "), "{out}");
    // kdig over TCP.
    let Some(out) = run("kdig", port, &["+tcp", "big.example.com", "TXT"]) else {
        return;
    };
    assert!(out.contains("ANSWER: 40"), "{out}");
}

#[test]
fn zone_transfers_for_allowed_peers_only() {
    let allowed = start(Authority::new(zones()).allow_axfr(["127.0.0.0/8".parse().unwrap()]));
    let Some(out) = run("dig", allowed, &["example.com", "AXFR"]) else {
        return;
    };
    let records: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    // The fixture's 65 records of example.com, then its SOA again.
    assert_eq!(records.len(), 65 + 1, "{out}");
    assert!(
        records[0].contains("\tSOA\t") && records[65].contains("\tSOA\t"),
        "{out}"
    );
    let refused = start(Authority::new(zones()).allow_axfr(["192.0.2.0/24".parse().unwrap()]));
    let out = run("dig", refused, &["example.com", "AXFR"]).unwrap();
    assert!(out.contains("Transfer failed"), "{out}");
    let Some(out) = run("kdig", allowed, &["example.com", "AXFR"]) else {
        return;
    };
    assert!(
        out.contains(";; Received") && out.contains("66 records"),
        "{out}"
    );
}
