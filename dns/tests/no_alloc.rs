//! The UDP answer path allocates nothing: a global allocator counts the
//! allocations of this thread while `Authority::respond` answers every kind
//! of query (answers, CNAME chains, wildcards, referrals, NXDOMAIN, NODATA,
//! TC, REFUSED, FORMERR, BADVERS, NOTIMP), from memoised answers and
//! computed ones.

use std::net::{IpAddr, Ipv4Addr};

use lamina_dns::server::{Authority, Transport};
use lamina_dns::testing::{wire, zones};
use lamina_dns::wire::{flags, Message, MessageBuilder};
use lamina_dns::{Class, Opcode, Rcode, Rtype};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = counting::counted();
    counting::measure(true);
    f();
    counting::measure(false);
    counting::counted() - before
}

/// The shared test zones, memoised or not.
fn authority(memoised: bool) -> Authority {
    if memoised {
        Authority::new(zones())
    } else {
        Authority::without_memo(zones())
    }
}

fn query(name: &str, qtype: Rtype, opcode: Opcode, edns: Option<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(&mut buf).unwrap();
    b.header().set_id(7);
    b.header().set_opcode(opcode);
    b.question(&wire(name), qtype, Class::IN).unwrap();
    let len = b.finish();
    buf.truncate(len);
    if let Some(version) = edns {
        buf[11] = 1;
        buf.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, version, 0x80, 0, 0, 0]);
    }
    buf
}

#[test]
fn answering_over_udp_allocates_nothing() {
    answer_without_allocating(authority(true));
    answer_without_allocating(authority(false));
}

fn answer_without_allocating(authority: Authority) {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut queries = Vec::new();
    for name in [
        "www.example.com.",
        "alias.example.com.",
        "x.wild.example.com.",
        "a.sub.example.com.",
        "no.example.com.",
        "big.example.com.",
        "example.org.",
        "example.com.",
    ] {
        for qtype in [Rtype::A, Rtype::TXT, Rtype::MX, Rtype::ANY, Rtype::AXFR] {
            for edns in [None, Some(0), Some(1)] {
                queries.push(query(name, qtype, Opcode::QUERY, edns));
            }
        }
    }
    queries.push(query("www.example.com.", Rtype::A, Opcode::NOTIFY, None));
    let mut formerr = query("www.example.com.", Rtype::A, Opcode::QUERY, None);
    formerr[5] = 2;
    queries.push(formerr);
    let mut out = vec![0u8; 1232];
    let mut rcodes = Vec::with_capacity(queries.len());
    let mut truncated = 0;
    let counted = allocations(|| {
        for q in &queries {
            let len = authority
                .respond(q, Transport::Udp, peer, &mut out)
                .unwrap();
            let message = Message::new_checked(&out[..len]).unwrap();
            // Vec::with_capacity: pushing within it does not allocate.
            rcodes.push(message.rcode());
            truncated += usize::from(message.flags() & flags::TC != 0);
        }
    });
    assert_eq!(
        counted,
        0,
        "allocations while answering {} queries",
        queries.len()
    );
    // The queries covered what they meant to.
    for rcode in [
        Rcode::NOERROR,
        Rcode::NXDOMAIN,
        Rcode::REFUSED,
        Rcode::FORMERR,
        Rcode::NOTIMP,
    ] {
        assert!(rcodes.contains(&rcode), "{rcode}");
    }
    assert!(truncated > 0);
    // The counter counts: a transfer allocates its iterator.
    let authority = authority.allow_axfr(["127.0.0.1".parse().unwrap()]);
    let transfer = query("example.com.", Rtype::AXFR, Opcode::QUERY, None);
    assert!(allocations(|| drop(authority.transfer(&transfer, peer))) > 0);
}
