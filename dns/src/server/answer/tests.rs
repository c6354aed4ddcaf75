//! Every kind of answer, against the shared test zones (`crate::testing`).

use super::*;
use crate::testing::{rr, soa, txt, wire, zones};
use crate::wire::{Name, OPT_RECORD_LEN};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// EDNS in a query: payload size, version, DO.
#[derive(Clone, Copy)]
pub(crate) struct Edns(pub u16, pub u8, pub bool);

/// A query as a stub would send it (RD set).
pub(crate) fn query(name: &str, qtype: Rtype, edns: Option<Edns>) -> Vec<u8> {
    query_class(name, qtype, Class::IN, edns)
}

fn query_class(name: &str, qtype: Rtype, qclass: Class, edns: Option<Edns>) -> Vec<u8> {
    query_wire(&wire(name), qtype, qclass, edns)
}

fn query_wire(name: &[u8], qtype: Rtype, qclass: Class, edns: Option<Edns>) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    b.header().set_id(0xbeef);
    b.header().set_flag(flags::RD, true);
    b.question(name, qtype, qclass).unwrap();
    let len = b.finish();
    buf.truncate(len);
    if let Some(Edns(payload, version, dnssec_ok)) = edns {
        // The OPT by hand, to send any version.
        buf[11] = 1;
        buf.extend_from_slice(&[0, 0, 41]);
        buf.extend_from_slice(&payload.to_be_bytes());
        buf.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    buf
}

/// A response, read back.
#[derive(Debug)]
struct Response {
    bytes: Vec<u8>,
    rcode: Rcode,
    aa: bool,
    tc: bool,
    question: Option<String>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    opt: Option<(u16, bool)>,
}

fn read(bytes: &[u8]) -> Response {
    let message = Message::new_checked(bytes).unwrap();
    assert!(message.is_response());
    assert_eq!(message.id(), u16::from_be_bytes([bytes[0], bytes[1]]));
    let opt = message.edns().unwrap();
    let mut response = Response {
        bytes: bytes.to_vec(),
        rcode: opt.map_or(message.rcode(), |opt| opt.rcode(message.rcode())),
        aa: message.authoritative(),
        tc: message.truncated(),
        question: message.questions().next().map(|q| {
            let q = q.unwrap();
            alloc::format!("{} {} {}", q.name, q.qclass, q.qtype)
        }),
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        opt: opt.map(|opt| (opt.udp_payload_size, opt.dnssec_ok())),
    };
    for record in message.records() {
        let record = record.unwrap();
        let text = record.to_string();
        match record.section {
            Section::Answer => response.answer.push(text),
            Section::Authority => response.authority.push(text),
            _ if record.rtype == Rtype::OPT => {}
            _ => response.additional.push(text),
        }
    }
    response
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));

fn ask_over(
    authority: &Authority,
    query: &[u8],
    transport: Transport,
    size: usize,
) -> Option<Response> {
    let mut out = vec![0u8; size];
    let len = authority.respond(query, transport, PEER, &mut out)?;
    assert!(len <= size);
    Some(read(&out[..len]))
}

fn ask(query: &[u8]) -> Response {
    ask_over(&Authority::new(zones()), query, Transport::Udp, 1232).unwrap()
}

const SOA_NEGATIVE: &str =
    "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026112901 7200 900 1209600 300";

#[test]
fn answers_authoritatively_keeping_the_questions_case() {
    let r = ask(&query("WwW.ExAmple.COM.", Rtype::A, None));
    assert_eq!((r.rcode, r.aa, r.tc), (Rcode::NOERROR, true, false));
    assert_eq!(r.question.as_deref(), Some("WwW.ExAmple.COM. IN A"));
    assert_eq!(
        r.answer,
        [
            "WwW.ExAmple.COM. 300 IN A 192.0.2.1",
            "WwW.ExAmple.COM. 300 IN A 192.0.2.2"
        ]
    );
    assert!(r.authority.is_empty() && r.additional.is_empty() && r.opt.is_none());
    // The owners are pointers to the question.
    let question_end = 12 + 17 + 4;
    assert_eq!(r.bytes[question_end..question_end + 2], [0xc0, 12]);
    let r = ask(&query("www.example.com.", Rtype::AAAA, None));
    assert_eq!(r.answer, ["www.example.com. 300 IN AAAA 2001:db8::1"]);
}

#[test]
fn every_typed_record_kind() {
    let r = ask(&query("txt.example.com.", Rtype::TXT, None));
    assert_eq!(r.answer, ["txt.example.com. 60 IN TXT \"hello\" \"world\""]);
    let r = ask(&query("caa.example.com.", Rtype::CAA, None));
    assert_eq!(
        r.answer,
        ["caa.example.com. 60 IN CAA 0 issue \"ca.example\""]
    );
    let r = ask(&query("opaque.example.com.", Rtype(65280), None));
    assert_eq!(r.answer, ["opaque.example.com. 60 IN TYPE65280 \\# 2 ABCD"]);
    let r = ask(&query("1.2.0.192.in-addr.arpa.", Rtype::PTR, None));
    assert_eq!(
        r.answer,
        ["1.2.0.192.in-addr.arpa. 3600 IN PTR www.example.com."]
    );
    assert!(r.aa);
    let r = ask(&query("example.com.", Rtype::SOA, None));
    assert_eq!(r.answer.len(), 1);
    assert!(r.answer[0].starts_with("example.com. 3600 IN SOA ns1.example.com."));
}

#[test]
fn ns_mx_and_srv_answers_carry_their_targets_addresses() {
    let r = ask(&query("example.com.", Rtype::NS, None));
    assert_eq!(
        r.answer,
        [
            "example.com. 3600 IN NS ns1.example.com.",
            "example.com. 3600 IN NS ns2.example.net."
        ]
    );
    assert_eq!(r.additional, ["ns1.example.com. 3600 IN A 192.0.2.53"]);
    let r = ask(&query("example.com.", Rtype::MX, None));
    assert_eq!(r.answer, ["example.com. 300 IN MX 10 www.example.com."]);
    assert_eq!(r.additional.len(), 3);
    let r = ask(&query("_sip._tcp.example.com.", Rtype::SRV, None));
    assert_eq!(
        r.answer,
        ["_sip._tcp.example.com. 60 IN SRV 0 5 5060 www.example.com."]
    );
    assert_eq!(r.additional[2], "www.example.com. 300 IN AAAA 2001:db8::1");
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let r = ask(&query("nothere.example.com.", Rtype::A, None));
    assert_eq!((r.rcode, r.aa), (Rcode::NXDOMAIN, true));
    assert!(r.answer.is_empty());
    assert_eq!(r.authority, [SOA_NEGATIVE]);
    let r = ask(&query("www.example.com.", Rtype::TXT, None));
    assert_eq!((r.rcode, r.aa), (Rcode::NOERROR, true));
    assert!(r.answer.is_empty());
    assert_eq!(r.authority, [SOA_NEGATIVE]);
    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    let r = ask(&query("ent.example.com.", Rtype::A, None));
    assert_eq!(r.rcode, Rcode::NOERROR);
    assert_eq!(r.authority, [SOA_NEGATIVE]);
    // The reverse zone's SOA: TTL min(3600, 3600).
    let r = ask(&query("9.2.0.192.in-addr.arpa.", Rtype::PTR, None));
    assert_eq!(r.rcode, Rcode::NXDOMAIN);
    assert!(r.authority[0].starts_with("2.0.192.in-addr.arpa. 3600 IN SOA"));
}

#[test]
fn cname_chains_are_followed_inside_the_zone() {
    let r = ask(&query("alias.example.com.", Rtype::A, None));
    assert_eq!(
        r.answer,
        [
            "alias.example.com. 60 IN CNAME WWW.example.com.",
            "WWW.example.com. 300 IN A 192.0.2.1",
            "WWW.example.com. 300 IN A 192.0.2.2",
        ]
    );
    let r = ask(&query("chain1.example.com.", Rtype::AAAA, None));
    assert_eq!(r.answer.len(), 3);
    assert_eq!(r.answer[2], "www.example.com. 300 IN AAAA 2001:db8::1");
    // Asked for the CNAME itself: just it.
    let r = ask(&query("chain1.example.com.", Rtype::CNAME, None));
    assert_eq!(
        r.answer,
        ["chain1.example.com. 60 IN CNAME chain2.example.com."]
    );
    // The chain ends at a missing name: NXDOMAIN (RFC 6604), SOA.
    let r = ask(&query("dangling.example.com.", Rtype::A, None));
    assert_eq!(r.rcode, Rcode::NXDOMAIN);
    assert_eq!(
        r.answer,
        ["dangling.example.com. 60 IN CNAME nothere.example.com."]
    );
    assert_eq!(r.authority, [SOA_NEGATIVE]);
    // ... or at a name without the type: NODATA.
    let r = ask(&query("alias.example.com.", Rtype::MX, None));
    assert_eq!((r.rcode, r.answer.len()), (Rcode::NOERROR, 1));
    assert_eq!(r.authority, [SOA_NEGATIVE]);
    // Out of the zone: the requester follows it.
    let r = ask(&query("outside.example.com.", Rtype::A, None));
    assert_eq!((r.rcode, r.aa), (Rcode::NOERROR, true));
    assert_eq!(
        r.answer,
        ["outside.example.com. 60 IN CNAME www.example.org."]
    );
    assert!(r.authority.is_empty());
    // Into a delegation: the chain so far.
    let r = ask(&query("intosub.example.com.", Rtype::A, None));
    assert_eq!((r.rcode, r.answer.len()), (Rcode::NOERROR, 1));
    // A loop: bounded.
    let r = ask(&query("loop1.example.com.", Rtype::A, None));
    assert_eq!(r.rcode, Rcode::NOERROR);
    assert_eq!(r.answer.len(), MAX_CNAME_CHAIN + 1);
}

#[test]
fn wildcards_answer_with_the_query_name_as_owner() {
    let r = ask(&query("Anything.wild.example.com.", Rtype::TXT, None));
    assert_eq!((r.rcode, r.aa), (Rcode::NOERROR, true));
    assert_eq!(
        r.answer,
        ["Anything.wild.example.com. 60 IN TXT \"wildcard\""]
    );
    let r = ask(&query("a.b.wild.example.com.", Rtype::TXT, None));
    assert_eq!(r.answer, ["a.b.wild.example.com. 60 IN TXT \"wildcard\""]);
    // The wildcard has no A: NODATA.
    let r = ask(&query("x.wild.example.com.", Rtype::A, None));
    assert_eq!((r.rcode, r.answer.len()), (Rcode::NOERROR, 0));
    assert_eq!(r.authority, [SOA_NEGATIVE]);
}

#[test]
fn delegations_get_referrals_with_glue() {
    for name in [
        "sub.example.com.",
        "host.sub.example.com.",
        "a.b.sub.example.com.",
    ] {
        let r = ask(&query(name, Rtype::A, None));
        assert_eq!((r.rcode, r.aa), (Rcode::NOERROR, false), "{name}");
        assert!(r.answer.is_empty());
        assert_eq!(
            r.authority,
            [
                "sub.example.com. 86400 IN NS ns.sub.example.com.",
                "sub.example.com. 86400 IN NS ns1.example.com."
            ]
        );
        assert_eq!(
            r.additional,
            [
                "ns.sub.example.com. 86400 IN A 192.0.2.99",
                "ns1.example.com. 3600 IN A 192.0.2.53"
            ]
        );
    }
    // Out-of-zone glue that does not fit is left out; in-domain glue
    // (ns.sub, inside the delegation) that does not fit sets TC (RFC 9471).
    let authority = Authority::new(zones());
    let q = query("host.sub.example.com.", Rtype::A, None);
    let full = ask_over(&authority, &q, Transport::Udp, 512)
        .unwrap()
        .bytes
        .len();
    let r = ask_over(&authority, &q, Transport::Tcp, full - 5).unwrap();
    assert!(!r.tc);
    assert_eq!(r.additional, ["ns.sub.example.com. 86400 IN A 192.0.2.99"]);
    let r = ask_over(&authority, &q, Transport::Tcp, full - 20).unwrap();
    assert!(r.tc && r.additional.is_empty());
    assert_eq!(r.authority.len(), 2);
    // DS is the parent's: answered here (NODATA: none in the zone).
    let r = ask(&query("sub.example.com.", Rtype(43), None));
    assert_eq!((r.rcode, r.aa), (Rcode::NOERROR, true));
    assert_eq!(r.authority, [SOA_NEGATIVE]);
}

#[test]
fn any_gets_one_rrset() {
    let r = ask(&query("www.example.com.", Rtype::ANY, None));
    assert_eq!(r.rcode, Rcode::NOERROR);
    assert_eq!(
        r.answer,
        [
            "www.example.com. 300 IN A 192.0.2.1",
            "www.example.com. 300 IN A 192.0.2.2"
        ]
    );
    let r = ask(&query("ent.example.com.", Rtype::ANY, None));
    assert_eq!((r.rcode, r.answer.len()), (Rcode::NOERROR, 0));
    assert_eq!(r.authority, [SOA_NEGATIVE]);
}

#[test]
fn refuses_names_outside_its_zones_other_classes_and_udp_transfers() {
    for q in [
        query("www.example.org.", Rtype::A, None),
        query(".", Rtype::NS, None),
        query_class("www.example.com.", Rtype::A, Class::CH, None),
        query_class("www.example.com.", Rtype::A, Class::ANY, None),
        query("example.com.", Rtype::AXFR, None),
    ] {
        let r = ask(&q);
        assert_eq!((r.rcode, r.aa), (Rcode::REFUSED, false));
        assert!(r.answer.is_empty() && r.authority.is_empty());
        assert!(r.question.is_some());
    }
}

#[test]
fn other_opcodes_get_notimp() {
    for opcode in [Opcode::STATUS, Opcode::NOTIFY, Opcode::UPDATE, Opcode(9)] {
        let mut q = query("www.example.com.", Rtype::A, None);
        Message::new_unchecked(&mut q[..]).set_opcode(opcode);
        let mut out = [0u8; 512];
        let len = Authority::new(zones())
            .respond(&q, Transport::Udp, PEER, &mut out)
            .unwrap();
        let r = read(&out[..len]);
        assert_eq!(r.rcode, Rcode::NOTIMP);
        assert_eq!(Message::new_checked(&out[..len]).unwrap().opcode(), opcode);
    }
    let r = ask(&query("example.com.", IXFR, None));
    assert_eq!(r.rcode, Rcode::NOTIMP);
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    let authority = Authority::new(zones());
    let good = query("www.example.com.", Rtype::A, Some(Edns(1232, 0, false)));
    // No question, two questions.
    for qdcount in [0u8, 2] {
        let mut q = good.clone();
        q[5] = qdcount;
        let r = ask_over(&authority, &q, Transport::Udp, 512).unwrap();
        assert_eq!(r.rcode, Rcode::FORMERR);
        assert!(r.question.is_none());
    }
    // A name with a pointer to itself.
    let mut q = good[..12].to_vec();
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    q[11] = 0;
    let r = ask_over(&authority, &q, Transport::Udp, 512).unwrap();
    assert_eq!(r.rcode, Rcode::FORMERR);
    // Two OPT records: FORMERR, no OPT in the answer.
    let mut q = good.clone();
    q.extend_from_slice(&good[good.len() - OPT_RECORD_LEN..]);
    q[11] = 2;
    let r = ask_over(&authority, &q, Transport::Udp, 512).unwrap();
    assert_eq!((r.rcode, r.opt), (Rcode::FORMERR, None));
    assert!(r.question.is_some());
    // QR set, or too short for a header: nothing.
    let mut q = good.clone();
    q[2] |= 0x80;
    assert!(ask_over(&authority, &q, Transport::Udp, 512).is_none());
    assert!(ask_over(&authority, &good[..11], Transport::Udp, 512).is_none());
    // Every truncation: FORMERR once the header is there (the OPT record
    // is counted, so a cut anywhere is noticed).
    for cut in 12..good.len() {
        let r = ask_over(&authority, &good[..cut], Transport::Udp, 512).unwrap();
        assert_eq!(r.rcode, Rcode::FORMERR, "cut at {cut}");
    }
    // Counts that lie.
    let mut q = good.clone();
    q[7] = 5;
    assert_eq!(
        ask_over(&authority, &q, Transport::Udp, 512).unwrap().rcode,
        Rcode::FORMERR
    );
}

#[test]
fn edns_is_echoed_with_do_and_badvers_for_other_versions() {
    let r = ask(&query(
        "www.example.com.",
        Rtype::A,
        Some(Edns(4096, 0, true)),
    ));
    assert_eq!(r.rcode, Rcode::NOERROR);
    assert_eq!(r.opt, Some((DEFAULT_EDNS_PAYLOAD, true)));
    let r = ask(&query(
        "www.example.com.",
        Rtype::A,
        Some(Edns(4096, 0, false)),
    ));
    assert_eq!(r.opt, Some((DEFAULT_EDNS_PAYLOAD, false)));
    let r = ask(&query(
        "www.example.com.",
        Rtype::A,
        Some(Edns(4096, 1, true)),
    ));
    assert_eq!(r.rcode, Rcode::BADVERS);
    assert_eq!(r.opt, Some((DEFAULT_EDNS_PAYLOAD, true)));
    assert!(r.answer.is_empty());
    // Unknown options are ignored.
    let mut q = query("www.example.com.", Rtype::A, Some(Edns(1232, 0, false)));
    let at = q.len() - 2;
    q[at..].copy_from_slice(&[0, 8]);
    q.extend_from_slice(&[0xfd, 0xe9, 0, 4, 1, 2, 3, 4]);
    let r = ask(&q);
    assert_eq!((r.rcode, r.answer.len()), (Rcode::NOERROR, 2));
    // Announcing a different size.
    let authority = Authority::new(zones()).with_edns_payload(4096);
    let r = ask_over(
        &authority,
        &query("www.example.com.", Rtype::A, Some(Edns(512, 0, false))),
        Transport::Udp,
        1232,
    );
    assert_eq!(r.unwrap().opt, Some((4096, false)));
}

#[test]
fn answers_that_do_not_fit_set_tc_and_tcp_carries_them() {
    let authority = Authority::new(zones());
    let big = |edns| query("big.example.com.", Rtype::TXT, edns);
    // No EDNS: 512 bytes, the set does not fit: TC, empty answer.
    let r = ask_over(&authority, &big(None), Transport::Udp, 1232).unwrap();
    assert!(r.tc && r.answer.is_empty());
    assert!(r.bytes.len() <= 512);
    // A payload size under 512 counts as 512.
    let r = ask_over(
        &authority,
        &big(Some(Edns(100, 0, false))),
        Transport::Udp,
        1232,
    )
    .unwrap();
    assert!(r.tc && r.bytes.len() <= 512);
    assert!(r.opt.is_some(), "the OPT record always fits");
    // The buffer bounds it too.
    let r = ask_over(
        &authority,
        &big(Some(Edns(4096, 0, false))),
        Transport::Udp,
        1232,
    )
    .unwrap();
    assert!(r.tc && r.bytes.len() <= 1232);
    let r = ask_over(
        &authority,
        &big(Some(Edns(4096, 0, false))),
        Transport::Udp,
        4096,
    )
    .unwrap();
    assert!(!r.tc);
    assert_eq!(r.answer.len(), 40);
    // TCP: everything.
    let r = ask_over(&authority, &big(None), Transport::Tcp, 65535).unwrap();
    assert!(!r.tc);
    assert_eq!(r.answer.len(), 40);
    assert!(r.opt.is_none());
}

#[test]
fn additional_records_are_dropped_before_tc() {
    let authority = Authority::new(zones());
    // With room for the answer only: the MX, no addresses, no TC.
    let q = query("example.com.", Rtype::MX, None);
    let full = ask_over(&authority, &q, Transport::Udp, 512).unwrap();
    assert_eq!(full.additional.len(), 3);
    let size = full.bytes.len() - 20;
    let r = ask_over(&authority, &q, Transport::Tcp, size).unwrap();
    assert!(!r.tc);
    assert_eq!(r.answer, full.answer);
    assert!(r.additional.len() < 3);
    // Too small for the answer: TC.
    let r = ask_over(&authority, &q, Transport::Tcp, 12 + 17 + 4 + 5).unwrap();
    assert!(r.tc && r.answer.is_empty());
    // Too small for the question: the header alone; too small for that, nothing.
    let r = ask_over(&authority, &q, Transport::Tcp, 20).unwrap();
    assert!(r.question.is_none());
    assert!(ask_over(&authority, &q, Transport::Tcp, 11).is_none());
}

#[test]
fn peer_prefixes() {
    let prefix: PeerPrefix = "192.0.2.0/24".parse().unwrap();
    assert!(prefix.contains(PEER));
    assert!(prefix.contains("::ffff:192.0.2.9".parse().unwrap()));
    assert!(!prefix.contains("192.0.3.1".parse().unwrap()));
    assert!(!prefix.contains("2001:db8::1".parse().unwrap()));
    let one: PeerPrefix = "192.0.2.200".parse().unwrap();
    assert!(one.contains(PEER) && !one.contains("192.0.2.201".parse().unwrap()));
    let all: PeerPrefix = "::/0".parse().unwrap();
    assert!(all.contains("2001:db8::1".parse().unwrap()));
    let v6: PeerPrefix = "2001:db8::/32".parse().unwrap();
    assert!(
        v6.contains("2001:db8:1::1".parse().unwrap())
            && !v6.contains("2001:db9::1".parse().unwrap())
    );
    assert_eq!(
        "192.0.2.0/33".parse::<PeerPrefix>(),
        Err(PeerPrefixError::BadLength)
    );
    assert_eq!(
        "192.0.2.0/x".parse::<PeerPrefix>(),
        Err(PeerPrefixError::BadLength)
    );
    assert_eq!(
        "example".parse::<PeerPrefix>(),
        Err(PeerPrefixError::BadAddress)
    );
}

/// Every message of a transfer, read back.
fn transfer_all(authority: &Authority, query: &[u8]) -> Option<Vec<Response>> {
    let mut transfer = authority.transfer(query, PEER)?;
    let mut out = vec![0u8; 65535];
    let mut messages = Vec::new();
    while let Some(len) = transfer.next_message(&mut out) {
        messages.push(read(&out[..len]));
        assert!(messages.len() < 1000);
    }
    Some(messages)
}

#[test]
fn zone_transfers_only_for_allowed_peers() {
    let q = query("Example.com.", Rtype::AXFR, None);
    assert!(Authority::new(zones()).transfer(&q, PEER).is_none());
    let elsewhere = Authority::new(zones()).allow_axfr(["10.0.0.0/8".parse().unwrap()]);
    assert!(elsewhere.transfer(&q, PEER).is_none());
    let authority = Authority::new(zones()).allow_axfr(["192.0.2.0/24".parse().unwrap()]);
    // Only at a zone's apex, only AXFR.
    assert!(authority
        .transfer(&query("www.example.com.", Rtype::AXFR, None), PEER)
        .is_none());
    assert!(authority
        .transfer(&query("example.com.", Rtype::SOA, None), PEER)
        .is_none());
    let messages = transfer_all(&authority, &q).unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.aa);
    assert_eq!(m.question.as_deref(), Some("Example.com. IN AXFR"));
    // Every record (65 in the zone), the SOA first and last.
    assert_eq!(m.answer.len(), 65 + 1);
    assert!(m.answer[0].contains(" IN SOA ") && m.answer[65].contains(" IN SOA "));
    // Names take the question's case through compression.
    assert!(m
        .answer
        .iter()
        .any(|r| r.eq_ignore_ascii_case("ns.sub.example.com. 86400 IN A 192.0.2.99")));
    // The serving loop asks `respond` only after `transfer` said no.
    let r = ask_over(&authority, &q, Transport::Tcp, 65535).unwrap();
    assert_eq!(r.rcode, Rcode::REFUSED);
}

#[test]
fn large_transfers_take_several_messages() {
    let mut records = vec![
        rr("big.test.", 3600, Rtype::SOA, soa("ns.big.test.", 60)),
        rr("big.test.", 3600, Rtype::NS, wire("ns.big.test.")),
    ];
    let long = "x".repeat(250);
    for i in 0..300 {
        let owner = alloc::format!("host{i}.big.test.");
        records.push(rr(
            &owner,
            60,
            Rtype::TXT,
            txt(&[&long, &long, &long, &long]),
        ));
    }
    let zone = Zone::from_records(&wire("big.test."), records).unwrap();
    let authority =
        Authority::new(Zones::new(vec![zone]).unwrap()).allow_axfr(["0.0.0.0/0".parse().unwrap()]);
    let messages = transfer_all(&authority, &query("big.test.", Rtype::AXFR, None)).unwrap();
    assert!(messages.len() >= 5, "{}", messages.len());
    assert!(messages[0].question.is_some() && messages[1].question.is_none());
    let records: Vec<&String> = messages.iter().flat_map(|m| m.answer.iter()).collect();
    assert_eq!(records.len(), 302 + 1);
    assert!(records[0].contains(" SOA ") && records[302].contains(" SOA "));
    assert!(messages.iter().all(|m| m.bytes.len() <= 65535 && !m.tc));
}

#[test]
fn every_response_parses_whole() {
    // Every query of these tests, and their truncations, over both
    // transports and a range of buffer sizes: responses always read back.
    let authority = Authority::new(zones());
    let names = [
        "www.example.com.",
        "alias.example.com.",
        "big.example.com.",
        "x.wild.example.com.",
        "a.sub.example.com.",
    ];
    let types = [Rtype::A, Rtype::TXT, Rtype::MX, Rtype::ANY, Rtype::NS];
    for name in names {
        for rtype in types {
            for edns in [None, Some(Edns(512, 0, true)), Some(Edns(1400, 0, false))] {
                let q = query(name, rtype, edns);
                for size in [12, 40, 100, 512, 1232, 65535] {
                    for transport in [Transport::Udp, Transport::Tcp] {
                        let mut out = vec![0u8; size];
                        let len = authority.respond(&q, transport, PEER, &mut out).unwrap();
                        let message = Message::new_checked(&out[..len]).unwrap();
                        assert!(message.records().all(|r| r.is_ok_and(|r| r.data().is_ok())));
                        assert!(message.edns().is_ok());
                        let name_ok = message.questions().all(|q| {
                            q.is_ok_and(|q| {
                                Name::from_wire(&wire(name))
                                    .is_ok_and(|n| n.eq_ignore_case(&q.name))
                            })
                        });
                        assert!(name_ok);
                    }
                }
            }
        }
    }
}

#[test]
fn memoised_answers_are_the_answer_logics_byte_for_byte() {
    let memoised = Authority::new(zones());
    let computed = Authority::without_memo(zones());
    let (entries, bytes) = memoised.memo_size();
    assert!(entries > 50, "{entries}");
    assert!(bytes > 0 && computed.memo_size() == (0, 0));
    let qtypes = [
        Rtype::A,
        Rtype::AAAA,
        Rtype::NS,
        Rtype::MX,
        Rtype::TXT,
        Rtype::SRV,
        Rtype::CAA,
        Rtype::SOA,
        Rtype::ANY,
        Rtype::CNAME,
        Rtype::PTR,
        Rtype(65280),
        DS,
    ];
    let mut served = 0;
    for zone in zones().iter() {
        for node in zone.nodes() {
            // Every other letter in upper case.
            let mut name = node.name().to_vec();
            for (i, byte) in name.iter_mut().enumerate() {
                if i % 2 == 0 {
                    byte.make_ascii_uppercase();
                }
            }
            for qtype in qtypes {
                for edns in [None, Some(Edns(512, 0, true)), Some(Edns(4096, 0, false))] {
                    let q = query_wire(&name, qtype, Class::IN, edns);
                    for (transport, size) in [
                        (Transport::Udp, 512),
                        (Transport::Udp, 1232),
                        (Transport::Tcp, 65535),
                    ] {
                        let mut fast = vec![0u8; size];
                        let mut slow = vec![0u8; size];
                        let fast_len = memoised.respond(&q, transport, PEER, &mut fast).unwrap();
                        let slow_len = computed.respond(&q, transport, PEER, &mut slow).unwrap();
                        assert_eq!(
                            fast[..fast_len],
                            slow[..slow_len],
                            "{:?} {qtype}",
                            Name::from_wire(&name)
                        );
                        if memoised.memo.get(node.name(), qtype).is_some() {
                            served += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(served > 400, "{served}");
    // The question keeps its case in a memoised answer too.
    let r = ask(&query("WwW.ExAmple.COM.", Rtype::A, None));
    assert_eq!(r.answer[0], "WwW.ExAmple.COM. 300 IN A 192.0.2.1");
}
