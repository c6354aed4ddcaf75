//! The daemon's DNS: which service a query is for, and the answers, with
//! lamina-dns's checked parser and builder (the unikernels' own).

use crate::config::Service;
use lamina_dns::wire::{flags, Message, MessageBuilder, OptRepr, Section, MAX_NAME_LEN};
use lamina_dns::{Class, Opcode, Rcode, Rtype};
use std::net::Ipv4Addr;

/// The largest UDP answer the daemon sends to an EDNS requester (RFC 9715's
/// advice, and the DNS flag day's).
const EDNS_PAYLOAD: u16 = 1232;
/// A plain DNS UDP answer's limit.
const CLASSIC_PAYLOAD: usize = 512;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A question about service `index`'s name. `summons` when its type is
    /// one a client asks before connecting (A, AAAA, ANY).
    Service {
        /// The service, as an index into the configuration.
        index: usize,
        /// Whether the query starts the unikernel.
        summons: bool,
    },
    /// A question about another name: the upstream resolver's, or REFUSED.
    Other,
    /// Not a query to answer normally: `Rcode` says what to answer.
    Refuse(Rcode),
    /// Not a query at all (a response, or too short to have a header):
    /// dropped without an answer.
    Drop,
}

/// Decides what `message` asks for among `services`.
pub fn classify(message: &[u8], services: &[Service]) -> Asked {
    let Ok(query) = Message::new_checked(message) else {
        return Asked::Drop;
    };
    if query.is_response() {
        return Asked::Drop;
    }
    if query.opcode() != Opcode::QUERY {
        return Asked::Refuse(Rcode::NOTIMP);
    }
    let mut questions = query.questions();
    let (Some(Ok(question)), None) = (questions.next(), questions.next()) else {
        return Asked::Refuse(Rcode::FORMERR);
    };
    if question.qclass != Class::IN && question.qclass != Class::ANY {
        return Asked::Refuse(Rcode::REFUSED);
    }
    let mut wire = [0u8; MAX_NAME_LEN];
    let len = question.name.write_wire_lowercase(&mut wire);
    match services.iter().position(|s| s.wire_name == wire[..len]) {
        Some(index) => Asked::Service {
            index,
            summons: matches!(question.qtype, Rtype::A | Rtype::AAAA | Rtype::ANY),
        },
        None => Asked::Other,
    }
}

/// The answer to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The service is up at this address: an A record (for A and ANY
    /// questions; no data for others), authoritative.
    Address(Ipv4Addr, u32),
    /// An error code and nothing else.
    Error(Rcode),
}

/// Writes the answer to `query` (which [`classify`] accepted or refused)
/// into `out`, for UDP when `udp`; returns its length, or `None` for a
/// query too broken to echo.
pub fn respond(query: &[u8], answer: Answer, udp: bool, out: &mut [u8]) -> Option<usize> {
    let message = Message::new_checked(query).ok()?;
    let edns = message.edns().ok().flatten();
    let question = message.questions().next().and_then(Result::ok);
    let limit = match (&edns, udp) {
        (_, false) => out.len(),
        (Some(opt), true) => usize::from(opt.udp_payload_size.clamp(512, EDNS_PAYLOAD)),
        (None, true) => CLASSIC_PAYLOAD,
    };
    let mut builder = MessageBuilder::new(out).ok()?;
    builder.set_limit(limit);
    if let Some(opt) = &edns {
        builder
            .set_edns(OptRepr {
                udp_payload_size: EDNS_PAYLOAD,
                version: 0,
                dnssec_ok: opt.dnssec_ok(),
            })
            .ok()?;
    }
    {
        let mut header = builder.header();
        header.set_id(message.id());
        header.set_opcode(message.opcode());
        header.set_flag(flags::QR, true);
        header.set_flag(flags::RD, message.recursion_desired());
    }
    let mut name = [0u8; MAX_NAME_LEN];
    if let Some(q) = &question {
        let len = q.name.write_wire(&mut name);
        builder.question(&name[..len], q.qtype, q.qclass).ok()?;
    }
    match answer {
        Answer::Address(address, ttl) => {
            builder.header().set_flag(flags::AA, true);
            let wants_a = question
                .as_ref()
                .is_some_and(|q| matches!(q.qtype, Rtype::A | Rtype::ANY));
            if let (true, Some(q)) = (wants_a, &question) {
                let len = q.name.write_wire(&mut name);
                builder
                    .record(
                        Section::Answer,
                        &name[..len],
                        Rtype::A,
                        Class::IN,
                        ttl,
                        &address.octets(),
                    )
                    .ok()?;
            }
        }
        Answer::Error(rcode) => builder.set_rcode(rcode),
    }
    Some(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn services() -> Vec<Service> {
        Config::parse(
            "[[service]]\nname = \"www.lamina.test\"\nimage = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\n",
            "t.toml",
            Path::new("."),
        )
        .unwrap()
        .services
    }

    /// A query as dig sends it: id, RD, one question, an OPT record.
    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        q.extend(crate::config::wire_name(name).unwrap());
        q.extend(qtype.to_be_bytes());
        q.extend(1u16.to_be_bytes());
        if edns {
            q.extend([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn a_query_for_a_service_summons_it_and_is_answered_with_its_address() {
        let services = services();
        let q = query("WWW.Lamina.test", 1, true);
        assert_eq!(
            classify(&q, &services),
            Asked::Service {
                index: 0,
                summons: true
            }
        );
        let mut out = [0u8; 1500];
        let len = respond(&q, Answer::Address(services[0].address, 30), true, &mut out).unwrap();
        let reply = Message::new_checked(&out[..len]).unwrap();
        assert_eq!(reply.id(), 0x1234);
        assert!(reply.is_response() && reply.authoritative());
        assert_eq!(reply.rcode(), Rcode::NOERROR);
        assert_eq!(reply.count(Section::Answer), 1);
        let answer = reply
            .records()
            .find_map(|r| r.ok().filter(|r| r.section == Section::Answer))
            .unwrap();
        assert_eq!(answer.rdata(), &[127, 0, 0, 2]);
        assert_eq!(answer.ttl, 30);
        assert!(reply.edns().unwrap().is_some());
    }

    #[test]
    fn other_questions_are_classified_without_summoning() {
        let services = services();
        assert_eq!(
            classify(&query("www.lamina.test", 16, false), &services),
            Asked::Service {
                index: 0,
                summons: false
            }
        );
        assert_eq!(
            classify(&query("example.com", 1, false), &services),
            Asked::Other
        );
        let mut notify = query("www.lamina.test", 1, false);
        notify[2] = 0x20; // opcode 4
        assert_eq!(classify(&notify, &services), Asked::Refuse(Rcode::NOTIMP));
        let mut response = query("www.lamina.test", 1, false);
        response[2] |= 0x80;
        assert_eq!(classify(&response, &services), Asked::Drop);
        assert_eq!(classify(&[1, 2, 3], &services), Asked::Drop);
        let mut two = query("www.lamina.test", 1, false);
        two[5] = 2;
        assert_eq!(classify(&two, &services), Asked::Refuse(Rcode::FORMERR));
    }

    #[test]
    fn errors_echo_the_question() {
        let q = query("www.lamina.test", 1, false);
        let mut out = [0u8; 512];
        let len = respond(&q, Answer::Error(Rcode::SERVFAIL), true, &mut out).unwrap();
        let reply = Message::new_checked(&out[..len]).unwrap();
        assert_eq!(reply.rcode(), Rcode::SERVFAIL);
        assert_eq!(reply.count(Section::Question), 1);
        assert_eq!(reply.count(Section::Answer), 0);
    }

    #[test]
    fn garbage_never_panics() {
        let services = services();
        let mut out = [0u8; 512];
        let mut seed = 7u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = classify(&bytes, &services);
            let _ = respond(&bytes, Answer::Error(Rcode::FORMERR), true, &mut out);
        }
    }
}
