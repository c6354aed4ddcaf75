//! A DNS response from anyone, as the stub resolver reads it
//! (`lamina_dns::resolver::interpret`): for the question the message
//! carries (if it has one) and for a fixed one, with chains of up to 8
//! aliases. It must never panic, and what it returns must hold together:
//! records only when some were found, each readable as the type asked;
//! at most 8 aliases, each owner and target a well-formed name, the chain
//! unbroken from the name asked to the name answered.
#![no_main]

use lamina_dns::resolver::{interpret, Outcome};
use lamina_dns::wire::{Message, Name, Rdata, MAX_NAME_LEN};
use lamina_dns::Rtype;
use libfuzzer_sys::fuzz_target;

const MAX_CHAIN: usize = 8;

fn check(bytes: &[u8], qname: &[u8], qtype: Rtype) {
    let Ok(read) = interpret(bytes, qname, qtype, MAX_CHAIN) else {
        return;
    };
    assert!(read.chain.len() <= MAX_CHAIN);
    let mut at = qname;
    for alias in &read.chain {
        assert_eq!(alias.owner, at, "the chain is unbroken");
        assert!(Name::from_wire(&alias.target).is_ok());
        at = &alias.target;
    }
    assert_eq!(read.name, at);
    if let Outcome::Records { rdatas, .. } = &read.outcome {
        assert!(!rdatas.is_empty());
        for data in rdatas {
            assert!(
                Rdata::from_wire(qtype, data).is_ok(),
                "data the resolver hands out reads back as {qtype}"
            );
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    check(bytes, b"\x03www\x07example\x03com\x00", Rtype::A);
    let Ok(message) = Message::new_checked(bytes) else {
        return;
    };
    if let Some(Ok(question)) = message.questions().next() {
        let mut name = [0u8; MAX_NAME_LEN];
        let len = question.name.write_wire_lowercase(&mut name);
        check(bytes, &name[..len], question.qtype);
    }
});
