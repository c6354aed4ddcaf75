//! A DNS message from anyone (a query to the server, a response to the
//! resolver): parsed with `lamina_dns::wire`, every question, record, name,
//! record data and EDNS option walked and displayed; a message that parses
//! whole is written again with the builder (names decompressed, then
//! compressed again) and must read back to the same text. Then the bytes
//! go to the authoritative server's answer logic (`Authority::respond` over
//! UDP and TCP, and a zone transfer) for a small zone with every answer
//! kind: a query gets a response that reads back whole, a response or a
//! message shorter than a header gets none, and the memoised answers are
//! byte for byte those computed when asked.
#![no_main]

use std::cell::RefCell;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use lamina_dns::server::{Authority, Transfer, Transport};
use lamina_dns::testing::zones;
use lamina_dns::wire::{Message, MessageBuilder, OptRepr, Section, MAX_NAME_LEN};
use lamina_dns::Rtype;
use libfuzzer_sys::fuzz_target;

/// The shared test zones (`lamina_dns::testing`: example.com with every
/// answer kind, a reverse zone); transfers allowed. With memoised answers.
fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| build(true))
}

/// The same without memoised answers: each computed when asked.
fn computing() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| build(false))
}

fn build(memoised: bool) -> Authority {
    let authority = if memoised {
        Authority::new(zones())
    } else {
        Authority::without_memo(zones())
    };
    authority.allow_axfr(["0.0.0.0/0".parse().unwrap()])
}

thread_local! {
    /// The buffers [`Buffer`]s gave back.
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// 65535 zeroed bytes, kept for the next execution when dropped: fresh
/// ones went through the sanitizer's quarantine and came back as new
/// pages each time (four per execution, a quarter of its time).
struct Buffer(Vec<u8>);

impl Buffer {
    fn zeroed() -> Buffer {
        let mut bytes = BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default();
        bytes.clear();
        bytes.resize(65535, 0);
        Buffer(bytes)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        BUFFERS.with_borrow_mut(|b| b.push(bytes));
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Answers `bytes` over both transports and checks the responses.
fn serve(bytes: &[u8]) {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let query = Message::new_checked(bytes)
        .ok()
        .filter(|m| !m.is_response());
    let mut out = Buffer::zeroed();
    let mut computed = Buffer::zeroed();
    for (transport, size) in [
        (Transport::Udp, 1232),
        (Transport::Udp, 512),
        (Transport::Tcp, 65535),
    ] {
        let answer = authority().respond(bytes, transport, peer, &mut out[..size]);
        // A memoised answer is the computed one, byte for byte.
        let expected = computing().respond(bytes, transport, peer, &mut computed[..size]);
        assert_eq!(answer.map(|n| &out[..n]), expected.map(|n| &computed[..n]));
        let Some(query) = &query else {
            assert!(answer.is_none());
            continue;
        };
        let len = answer.expect("a query gets an answer");
        let response = Message::new_checked(&out[..len]).expect("a header");
        assert!(response.is_response());
        assert_eq!(response.id(), query.id());
        assert!(response.questions().all(|q| q.is_ok()));
        assert!(response
            .records()
            .all(|r| r.is_ok_and(|r| r.data().is_ok())));
        let opt = response.edns().expect("one well-formed OPT at most");
        if transport == Transport::Udp {
            let offered = query
                .edns()
                .ok()
                .flatten()
                .map_or(512, |o| usize::from(o.udp_payload_size));
            assert!(len <= offered.max(512), "{len} > {offered}");
        }
        assert_eq!(opt.is_some(), matches!(query.edns(), Ok(Some(_))));
    }
    if let Some(mut transfer) = authority().transfer(bytes, peer) {
        let mut messages = 0;
        while let Some(len) = transfer.next_message(&mut out) {
            let message = Message::new_checked(&out[..len]).unwrap();
            assert!(message.records().all(|r| r.is_ok()));
            messages += 1;
            assert!(messages < 10);
        }
        assert!(messages > 0);
    }
}

/// Every question and record as text, lowercased (compression may give a
/// name an earlier equal name's case), or `None` if something did not parse.
fn text<T: AsRef<[u8]>>(message: &Message<T>) -> Option<String> {
    let mut out = String::new();
    for question in message.questions() {
        let question = question.ok()?;
        writeln!(
            out,
            "{} {} {}",
            question.name, question.qclass, question.qtype
        )
        .unwrap();
    }
    for record in message.records() {
        let record = record.ok()?;
        if record.rtype == Rtype::OPT {
            continue;
        }
        record.data().ok()?;
        writeln!(out, "{:?} {record}", record.section).unwrap();
    }
    Some(out.to_ascii_lowercase())
}

fuzz_target!(|bytes: &[u8]| {
    serve(bytes);
    let Ok(message) = Message::new_checked(bytes) else {
        assert!(bytes.len() < 12);
        return;
    };
    let _ = (
        message.id(),
        message.opcode(),
        message.rcode(),
        message.is_response(),
    );
    let mut sink = String::new();
    let mut wire = [0u8; MAX_NAME_LEN];
    for question in message.questions().flatten() {
        write!(sink, "{}", question.name).unwrap();
        let len = question.name.write_wire_lowercase(&mut wire);
        assert_eq!(len, question.name.wire_len());
        assert!(question.name.eq_wire_ignore_case(&wire[..len]));
    }
    for record in message.records().flatten() {
        write!(sink, "{record}").unwrap();
        if let Ok(data) = record.data() {
            write!(sink, "{data}").unwrap();
        }
    }
    let edns = message.edns();
    if let Ok(Some(opt)) = &edns {
        for (code, data) in opt.options() {
            write!(sink, "{code}{data:?}").unwrap();
        }
    }

    // Whole messages are written again and read back the same.
    let (Some(before), Ok(edns)) = (text(&message), edns) else {
        return;
    };
    let mut buf = Buffer::zeroed();
    let mut builder = MessageBuilder::new(&mut buf).unwrap();
    builder.header().set_id(message.id());
    builder.header().set_flags(message.flags());
    if let Some(opt) = edns {
        let repr = OptRepr {
            udp_payload_size: opt.udp_payload_size,
            version: opt.version,
            dnssec_ok: opt.dnssec_ok(),
        };
        builder.set_edns(repr).unwrap();
    }
    for question in message.questions() {
        let question = question.unwrap();
        let len = question.name.write_wire(&mut wire);
        builder
            .question(&wire[..len], question.qtype, question.qclass)
            .unwrap();
    }
    let mut data = Buffer::zeroed();
    for record in message.records() {
        let record = record.unwrap();
        if record.rtype == Rtype::OPT {
            continue;
        }
        let len = record.name.write_wire(&mut wire);
        let data_len = record.data().unwrap().emit(&mut data).unwrap();
        // Uncompressed, a message can outgrow 65535 bytes.
        if builder
            .record(
                record.section,
                &wire[..len],
                record.rtype,
                record.class,
                record.ttl,
                &data[..data_len],
            )
            .is_err()
        {
            return;
        }
    }
    let _ = builder.count(Section::Answer);
    let len = builder.finish();
    let again = Message::new_checked(&buf[..len]).unwrap();
    assert_eq!(text(&again).as_deref(), Some(before.as_str()));
});
