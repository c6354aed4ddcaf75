//! A DNS message from anyone (a query to the server, a response to the
//! resolver): parsed with `lamina_dns::wire`, every question, record, name,
//! record data and EDNS option walked and displayed; a message that parses
//! whole is written again with the builder (names decompressed, then
//! compressed again) and must read back to the same text.
#![no_main]

use std::fmt::Write;

use lamina_dns::wire::{Message, MessageBuilder, OptRepr, Section, MAX_NAME_LEN};
use lamina_dns::Rtype;
use libfuzzer_sys::fuzz_target;

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
    let mut buf = vec![0u8; 65535];
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
    let mut data = vec![0u8; 65535];
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
