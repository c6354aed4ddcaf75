//! The Jitsu daemon's parsers of untrusted input, chosen by the first
//! byte: 0, a configuration file (any text: a clear error or a config,
//! never a panic); 1, a DNS message from a client, classified against a
//! configuration and answered each way the daemon answers (every answer is
//! a well-formed response to it: its ID, QR set, its question); 2, a frame
//! a tap-mode watch sees (classified, never a panic).
#![no_main]

use lamina_dns::wire::{flags, Message};
use lamina_dns::Rcode;
use lamina_jitsu::config::Config;
use lamina_jitsu::dns::{classify, respond, Answer, Asked};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;

const SERVICES: &str = r#"
[[service]]
name = "www.lamina.test"
image = "x"
address = "127.0.0.2"
ports = ["80"]

[[service]]
name = "ns.lamina.test"
image = "y"
address = "127.0.0.3"
ports = ["53/udp", "53"]
"#;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::parse(SERVICES, "fuzz.toml", Path::new(".")).unwrap())
}

fn dns(message: &[u8]) {
    let services = &config().services;
    let asked = classify(message, services);
    let answers = [
        Answer::Address(Ipv4Addr::new(127, 0, 0, 2), 30),
        Answer::Error(Rcode::SERVFAIL),
        Answer::Error(Rcode::REFUSED),
    ];
    if let Asked::Service { index, .. } = asked {
        assert!(index < services.len());
    }
    if asked == Asked::Drop {
        return;
    }
    let query = Message::new_checked(message).expect("classify accepted a header");
    for answer in answers {
        for udp in [true, false] {
            let mut out = [0u8; 4096];
            let Some(len) = respond(message, answer, udp, &mut out) else {
                continue;
            };
            assert!(!udp || len <= 1232, "a UDP answer of {len} bytes");
            let reply = Message::new_checked(&out[..len]).expect("an answer has a header");
            assert_eq!(reply.id(), query.id());
            assert!(reply.flags() & flags::QR != 0);
            for record in reply.records() {
                record.expect("every record of an answer parses");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Err(error) = Config::parse(text, "fuzz.toml", Path::new(".")) {
                    assert!(error.to_string().starts_with("fuzz.toml:"));
                }
            }
        }
        1 => dns(rest),
        _ => {
            let _ = lamina_jitsu::frame::classify(rest, Ipv4Addr::new(10, 77, 0, 2));
        }
    }
});
