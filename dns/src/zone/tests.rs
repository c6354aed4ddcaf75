//! Lookups of every kind, the checks, and the baked form.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::{Class, Rtype};

/// A presentation name ("www.example", no escapes) in wire form.
pub(crate) use crate::testing::wire as w;

fn rr(owner: &str, rtype: Rtype, ttl: u32, rdata: &[u8]) -> Record {
    Record {
        owner: w(owner),
        rtype,
        class: Class::IN,
        ttl,
        rdata: rdata.to_vec(),
    }
}

fn soa(origin: &str) -> Record {
    let mut data = [
        w(&alloc::format!("ns.{origin}")),
        w(&alloc::format!("host.{origin}")),
    ]
    .concat();
    for n in [2026u32, 7200, 900, 1_209_600, 300] {
        data.extend_from_slice(&n.to_be_bytes());
    }
    rr(origin, Rtype::SOA, 3600, &data)
}

fn example_records() -> Vec<Record> {
    vec![
        soa("example"),
        rr("example", Rtype::NS, 3600, &w("ns.example")),
        rr("ns.example", Rtype::A, 3600, &[192, 0, 2, 1]),
        rr("WWW.example", Rtype::A, 3600, &[192, 0, 2, 2]),
        rr(
            "www.example",
            Rtype::AAAA,
            3600,
            &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ),
        rr("a.b.c.example", Rtype::TXT, 3600, b"\x05deep!"),
        rr("*.example", Rtype::TXT, 3600, b"\x04any!"),
        rr(
            "*.wild.example",
            Rtype::MX,
            3600,
            &[&[0u8, 10][..], &w("mx.example")].concat(),
        ),
        rr("sub.example", Rtype::NS, 86400, &w("ns.sub.example")),
        rr("ns.sub.example", Rtype::A, 86400, &[192, 0, 2, 53]),
        rr("deep.below.sub.example", Rtype::A, 60, &[192, 0, 2, 54]),
        rr("alias.example", Rtype::CNAME, 3600, &w("www.example")),
    ]
}

fn example() -> Zone {
    Zone::from_records(&w("example"), example_records()).unwrap()
}

fn name_of(l: Lookup<'_>) -> (&'static str, Vec<u8>) {
    match l {
        Lookup::Found(n) => ("found", n.name().to_vec()),
        Lookup::Wildcard { source } => ("wildcard", source.name().to_vec()),
        Lookup::Referral { cut } => ("referral", cut.name().to_vec()),
        Lookup::NxDomain => ("nxdomain", Vec::new()),
    }
}

#[test]
fn names_that_exist_are_found_case_insensitively() {
    let z = example();
    let Lookup::Found(www) = z.lookup(&w("wWw.EXAMPLE")) else {
        panic!("www not found");
    };
    assert_eq!(
        www.name(),
        &w("www.example")[..],
        "names are stored lowercase"
    );
    assert_eq!(
        www.rrset(Rtype::A).unwrap().rdatas().collect::<Vec<_>>(),
        [&[192u8, 0, 2, 2][..]]
    );
    assert_eq!(www.rrsets().len(), 2);
    assert!(www.rrset(Rtype::MX).is_none());
    assert_eq!(name_of(z.lookup(&w("example"))), ("found", w("example")));
    assert_eq!(
        name_of(z.lookup(&w("alias.example"))),
        ("found", w("alias.example"))
    );
}

#[test]
fn empty_non_terminals_exist_and_block_wildcards() {
    let z = example();
    let Lookup::Found(c) = z.lookup(&w("c.example")) else {
        panic!("the empty non-terminal c.example must exist");
    };
    assert!(c.is_empty_non_terminal());
    assert_eq!(
        name_of(z.lookup(&w("b.c.example"))),
        ("found", w("b.c.example"))
    );
    // RFC 4592 2.2.2: below an existing name without a `*` child, nothing.
    assert_eq!(name_of(z.lookup(&w("x.c.example"))).0, "nxdomain");
    assert_eq!(name_of(z.lookup(&w("x.a.b.c.example"))).0, "nxdomain");
    // wild.example exists only as the parent of *.wild.example.
    assert_eq!(
        name_of(z.lookup(&w("wild.example"))),
        ("found", w("wild.example"))
    );
}

#[test]
fn wildcards_synthesise_only_for_names_that_do_not_exist() {
    let z = example();
    assert_eq!(
        name_of(z.lookup(&w("nothere.example"))),
        ("wildcard", w("*.example"))
    );
    assert_eq!(
        name_of(z.lookup(&w("a.b.nothere.example"))),
        ("wildcard", w("*.example"))
    );
    assert_eq!(
        name_of(z.lookup(&w("host.wild.example"))),
        ("wildcard", w("*.wild.example"))
    );
    // A `*` label asked for is the wildcard node itself.
    assert_eq!(
        name_of(z.lookup(&w("*.example"))),
        ("found", w("*.example"))
    );
    // Existing names are never synthesised, nor are the parent's wildcards
    // used below a closer encloser.
    assert_eq!(name_of(z.lookup(&w("www.example"))).0, "found");
    assert_eq!(name_of(z.lookup(&w("x.www.example"))).0, "nxdomain");
    let Lookup::Wildcard { source } = z.lookup(&w("x.y.example")) else {
        panic!()
    };
    assert_eq!(
        source.rrset(Rtype::TXT).unwrap().rdatas().next(),
        Some(&b"\x04any!"[..])
    );
}

#[test]
fn everything_at_and_below_a_cut_is_a_referral_and_glue_is_found() {
    let z = example();
    for name in [
        "sub.example",
        "ns.sub.example",
        "deep.below.sub.example",
        "below.sub.example",
        "no.such.sub.example",
    ] {
        assert_eq!(
            name_of(z.lookup(&w(name))),
            ("referral", w("sub.example")),
            "{name}"
        );
    }
    let glue = z.glue(&w("NS.sub.example")).unwrap();
    assert_eq!(glue.rrset(Rtype::A).unwrap().ttl(), 86400);
    assert!(z.glue(&w("ns.example")).is_some());
    assert!(
        z.glue(&w("c.example")).is_none(),
        "an empty non-terminal has no addresses"
    );
    assert!(z.glue(&w("alias.example")).is_none());
    assert!(z.glue(&w("nothere.example")).is_none());
}

#[test]
fn nested_cuts_refer_to_the_highest() {
    let mut records = example_records();
    records.push(rr("deeper.sub.example", Rtype::NS, 60, &w("ns.elsewhere")));
    let z = Zone::from_records(&w("example"), records).unwrap();
    assert_eq!(
        name_of(z.lookup(&w("x.deeper.sub.example"))),
        ("referral", w("sub.example"))
    );
}

#[test]
fn thousands_of_names_are_each_found_by_hash() {
    let mut records = example_records();
    for i in 0..3000u32 {
        let owner = alloc::format!("h{i}.d{}.example", i % 7);
        records.push(rr(&owner, Rtype::A, 60, &i.to_be_bytes()));
    }
    let zones = Zones::new(vec![example_from(records).unwrap()]).unwrap();
    let zone = Zones::from_baked_copy(&zones.to_baked()).unwrap();
    let zone = zone.iter().next().unwrap();
    for i in 0..3000u32 {
        let owner = w(&alloc::format!("H{i}.D{}.EXAMPLE", i % 7));
        let Lookup::Found(node) = zone.lookup(&owner) else {
            panic!("h{i} not found");
        };
        assert_eq!(
            node.rrset(Rtype::A).unwrap().rdatas().next(),
            Some(&i.to_be_bytes()[..])
        );
        assert_eq!(
            name_of(zone.lookup(&[b"\x01x", &owner[..]].concat())).0,
            "nxdomain"
        );
    }
    assert_eq!(name_of(zone.lookup(&w("d3.example"))).0, "found");
    // h1 is in d1: below d2 (which exists), *.example does not apply.
    assert_eq!(name_of(zone.lookup(&w("h1.d2.example"))).0, "nxdomain");
    assert_eq!(
        name_of(zone.lookup(&w("h1.d9.example"))),
        ("wildcard", w("*.example"))
    );
}

#[test]
fn names_outside_and_bad_names_are_nxdomain() {
    let z = example();
    assert_eq!(name_of(z.lookup(&w("www.other"))).0, "nxdomain");
    assert_eq!(name_of(z.lookup(&w("com"))).0, "nxdomain");
    assert_eq!(name_of(z.lookup(b"\x03www\x07example")).0, "nxdomain");
    assert_eq!(name_of(z.lookup(b"")).0, "nxdomain");
    assert_eq!(
        name_of(z.lookup(&[&b"\x40"[..], &[b'a'; 64], &w("example")].concat())).0,
        "nxdomain"
    );
}

#[test]
fn a_wildcard_below_the_longest_possible_encloser_does_not_overflow() {
    // The closest encloser is 254 bytes long: `*.` would not fit.
    let mut long = Vec::new();
    for _ in 0..3 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(52);
    long.extend_from_slice(&[b'b'; 52]);
    long.extend_from_slice(&w("example"));
    assert_eq!(long.len(), 254);
    let mut records = example_records();
    records.push(Record {
        owner: long.clone(),
        ..rr("example", Rtype::A, 1, &[1, 2, 3, 4])
    });
    let z = Zone::from_records(&w("example"), records).unwrap();
    assert_eq!(name_of(z.lookup(&long)).0, "found");
}

#[test]
fn zones_are_found_by_their_longest_origin() {
    let parent = example();
    let child = Zone::from_records(
        &w("sub.example"),
        vec![
            soa("sub.example"),
            rr("sub.example", Rtype::NS, 60, &w("ns.sub.example")),
        ],
    )
    .unwrap();
    let zones = Zones::new(vec![child, parent]).unwrap();
    assert_eq!(zones.len(), 2);
    assert_eq!(
        zones.find(&w("www.example")).unwrap().origin(),
        &w("example")[..]
    );
    assert_eq!(
        zones.find(&w("x.SUB.example")).unwrap().origin(),
        &w("sub.example")[..]
    );
    assert_eq!(
        zones.find(&w("sub.example")).unwrap().origin(),
        &w("sub.example")[..]
    );
    assert!(zones.find(&w("example.com")).is_none());
    assert!(zones.find(&w("")).is_none());
    assert!(zones.find(b"\x07example").is_none());
    let origins: Vec<_> = zones.iter().map(|z| z.origin().to_vec()).collect();
    assert_eq!(origins, [w("example"), w("sub.example")]);
    // Past a few zones, find hashes the name's ancestors: same answers.
    let mut many = vec![example()];
    for origin in [
        "sub.example",
        "a.sub.example",
        "org",
        "example.org",
        "x.y.example.org",
    ] {
        many.push(
            Zone::from_records(
                &w(origin),
                vec![soa(origin), rr(origin, Rtype::NS, 60, &w("ns.example"))],
            )
            .unwrap(),
        );
    }
    let many = Zones::new(many).unwrap();
    for (name, origin) in [
        ("www.example", "example"),
        ("b.sub.EXAMPLE", "sub.example"),
        ("c.a.sub.example", "a.sub.example"),
        ("a.sub.example", "a.sub.example"),
        ("org", "org"),
        ("y.example.org", "example.org"),
        ("z.x.y.example.org", "x.y.example.org"),
    ] {
        assert_eq!(
            many.find(&w(name)).unwrap().origin(),
            &w(origin)[..],
            "{name}"
        );
    }
    assert!(many.find(&w("com")).is_none());
    assert!(many.find(b"\x03org").is_none());
    let again = Zones::new(vec![example(), example()]).unwrap_err();
    assert!(again.reason.contains("second zone"), "{again}");
}

#[test]
fn axfr_starts_with_the_soa_and_carries_every_set_once() {
    let z = example();
    let sets: Vec<_> = z
        .axfr()
        .map(|(owner, set)| (owner.to_vec(), set.rtype()))
        .collect();
    assert_eq!(sets[0], (w("example"), Rtype::SOA));
    assert_eq!(sets.iter().filter(|s| s.1 == Rtype::SOA).count(), 1);
    // 12 records, 11 sets (www has A and AAAA), glue and occluded included.
    assert_eq!(sets.len(), 12);
    assert!(sets.contains(&(w("deep.below.sub.example"), Rtype::A)));
    assert!(sets.contains(&(w("www.example"), Rtype::AAAA)));
}

#[test]
fn soa_and_negative_ttl() {
    let z = example();
    assert_eq!(z.soa().len(), 1);
    assert_eq!(z.negative_ttl(), 300, "min(SOA TTL 3600, MINIMUM 300)");
    assert_eq!(z.class(), Class::IN);
    assert_eq!(z.apex().name(), &w("example")[..]);
}

#[test]
fn duplicates_are_dropped_and_a_set_takes_its_smallest_ttl() {
    let mut records = example_records();
    records.push(rr("www.example", Rtype::A, 3600, &[192, 0, 2, 2]));
    records.push(rr("www.EXAMPLE", Rtype::A, 30, &[192, 0, 2, 3]));
    let z = example_from(records).unwrap();
    let a = z.node(&w("www.example")).unwrap().rrset(Rtype::A).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a.ttl(), 30);
    assert_eq!(
        a.rdatas().collect::<Vec<_>>(),
        [&[192u8, 0, 2, 2][..], &[192, 0, 2, 3]]
    );
    assert_eq!(a.wire(), &[0, 4, 192, 0, 2, 2, 0, 4, 192, 0, 2, 3]);
}

fn example_from(records: Vec<Record>) -> Result<Zone, ZoneError> {
    Zone::from_records(&w("example"), records)
}

fn refused(change: impl FnOnce(&mut Vec<Record>)) -> ZoneError {
    let mut records = example_records();
    change(&mut records);
    example_from(records).expect_err("must be refused")
}

#[test]
fn bad_zones_are_refused_with_the_name_and_why() {
    let cases: Vec<(ZoneError, &str)> = vec![
        (refused(|r| r.retain(|r| r.rtype != Rtype::SOA)), "no SOA"),
        (
            refused(|r| {
                r.push(Record {
                    rdata: [&soa("example").rdata[..], &[0]].concat(),
                    ..soa("example")
                })
            }),
            "SOA needs",
        ),
        (
            refused(|r| {
                r.push(Record {
                    ttl: 1,
                    rdata: soa("example.example").rdata,
                    ..soa("example")
                })
            }),
            "more than one SOA",
        ),
        (refused(|r| r.push(soa("x.example"))), "below the apex"),
        (
            refused(|r| r.retain(|r| !(r.rtype == Rtype::NS && r.owner == w("example")))),
            "no NS at its apex",
        ),
        (
            refused(|r| r.push(rr("www.other", Rtype::A, 1, &[1, 2, 3, 4]))),
            "outside",
        ),
        (
            refused(|r| r.push(rr("alias.example", Rtype::A, 1, &[1, 2, 3, 4]))),
            "CNAME cannot have other data",
        ),
        (
            refused(|r| r.push(rr("alias.example", Rtype::CNAME, 1, &w("ns.example")))),
            "only one CNAME",
        ),
        (
            refused(|r| r.push(rr("example", Rtype::CNAME, 1, &w("ns.example")))),
            "CNAME cannot",
        ),
        (
            refused(|r| r.push(rr("*.example", Rtype::NS, 1, &w("ns.example")))),
            "wildcard cannot be a delegation",
        ),
        (
            refused(|r| r.push(rr("x.example", Rtype::A, 1, &[1, 2, 3]))),
            "A record is 4 bytes",
        ),
        (
            refused(|r| r.push(rr("x.example", Rtype::AAAA, 1, &[1, 2, 3, 4]))),
            "AAAA record is 16 bytes",
        ),
        (
            refused(|r| r.push(rr("x.example", Rtype::NS, 1, b"\x03ns"))),
            "cut short",
        ),
        (
            refused(|r| r.push(rr("x.example", Rtype::ANY, 1, b""))),
            "meta and query",
        ),
        (
            refused(|r| r.push(rr("x.example", Rtype(39), 1, &w("y")))),
            "DNAME",
        ),
        (
            refused(|r| {
                r.push(Record {
                    class: Class::CH,
                    ..rr("x.example", Rtype::TXT, 1, b"\x01a")
                })
            }),
            "class differs",
        ),
        (
            refused(|r| {
                r.push(Record {
                    owner: b"\x01x".to_vec(),
                    ..rr("x.example", Rtype::TXT, 1, b"\x01a")
                })
            }),
            "not a valid name",
        ),
    ];
    for (error, expected) in cases {
        let text = alloc::format!("{error}");
        assert!(text.contains(expected), "{text:?} should say {expected:?}");
    }
    let e = refused(|r| r.push(rr("x.example", Rtype::A, 1, &[1, 2, 3])));
    assert_eq!((e.name, e.rtype), (w("x.example"), Some(Rtype::A)));
    assert_eq!(
        alloc::format!(
            "{}",
            refused(|r| r.push(rr("x.example", Rtype::A, 1, &[1])))
        ),
        "x.example. A: an A record is 4 bytes"
    );
    let bad_origin = Zone::from_records(b"\x03www", example_records()).unwrap_err();
    assert!(bad_origin.reason.contains("origin"));
    let any_class = Zone::from_records(
        &w("example"),
        example_records()
            .into_iter()
            .map(|r| Record {
                class: Class::ANY,
                ..r
            })
            .collect(),
    )
    .unwrap_err();
    assert!(any_class.reason.contains("ANY"), "{any_class}");
}

fn example_zones() -> Zones {
    let other = Zone::from_records(
        &w("2.0.192.in-addr.arpa"),
        vec![
            soa("2.0.192.in-addr.arpa"),
            rr("2.0.192.in-addr.arpa", Rtype::NS, 60, &w("ns.example")),
            rr("1.2.0.192.in-addr.arpa", Rtype::PTR, 60, &w("ns.example")),
            rr("x.2.0.192.in-addr.arpa", Rtype(65280), 60, b"\x00\xff\x00"),
        ],
    )
    .unwrap();
    Zones::new(vec![example(), other]).unwrap()
}

#[test]
fn the_baked_form_round_trips_and_is_checked_again() {
    let zones = example_zones();
    let baked = zones.to_baked();
    let again = Zones::from_baked_copy(&baked).unwrap();
    assert_eq!(again.to_baked(), baked);
    let leaked: &'static [u8] = Vec::leak(baked.clone());
    let borrowed = Zones::from_baked(leaked).unwrap();
    let z = borrowed.find(&w("www.example")).unwrap();
    assert_eq!(
        name_of(z.lookup(&w("ns.sub.example"))),
        ("referral", w("sub.example"))
    );
    assert_eq!(
        name_of(z.lookup(&w("q.example"))),
        ("wildcard", w("*.example"))
    );
    let rev = borrowed.find(&w("1.2.0.192.in-addr.arpa")).unwrap();
    assert!(
        matches!(rev.lookup(&w("1.2.0.192.in-addr.arpa")), Lookup::Found(n) if n.rrset(Rtype::PTR).is_some())
    );
    // A zone the builder would refuse is refused from bytes too: the
    // apex's A record (ns.example's, 192.0.2.1) made 3 bytes long.
    let mut bad = baked.clone();
    let at = bad
        .windows(6)
        .position(|x| x == [0, 4, 192, 0, 2, 1])
        .unwrap();
    bad[at + 1] = 3;
    let e = Zones::from_baked_copy(&bad).unwrap_err();
    assert!(
        alloc::format!("{e}").contains("A record is 4 bytes") || e.reason.contains("bytes after"),
        "{e}"
    );
}

#[test]
fn baked_bytes_that_lie_are_refused_never_a_panic() {
    let baked = example_zones().to_baked();
    for len in 0..baked.len() {
        assert!(
            Zones::from_baked_copy(&baked[..len]).is_err(),
            "cut at {len}"
        );
    }
    let mut longer = baked.clone();
    longer.push(0);
    assert!(Zones::from_baked_copy(&longer)
        .unwrap_err()
        .reason
        .contains("after the last zone"));
    let mut version = baked.clone();
    version[8] = 2;
    assert!(Zones::from_baked_copy(&version)
        .unwrap_err()
        .reason
        .contains("version 2"));
    assert!(Zones::from_baked_copy(b"LDNSZONX\x01\0\0\0\0")
        .unwrap_err()
        .reason
        .contains("magic"));
    // Every byte changed to a few values: an error or a valid zone set,
    // whose lookups work; never a panic.
    for at in 0..baked.len() {
        for value in [0u8, 0x2a, 0xc0, baked[at].wrapping_add(1)] {
            let mut bytes = baked.clone();
            bytes[at] = value;
            if let Ok(zones) = Zones::from_baked_copy(&bytes) {
                for zone in zones.iter() {
                    for node in zone.nodes() {
                        let _ = zone.lookup(node.name());
                        let _ = zone.lookup(&[b"\x01x", node.name()].concat());
                    }
                    assert_eq!(zone.axfr().next().unwrap().1.rtype(), Rtype::SOA);
                }
            }
        }
    }
    // Counts that claim more than the bytes hold allocate nothing big.
    assert!(Zones::from_baked_copy(b"LDNSZONE\x01\xff\xff\xff\xff").is_err());
    assert!(Zones::from_baked_copy(b"LDNSZONE\x01\0\0\0\x01\0\x01\xff\xff\xff\xff").is_err());
}

#[test]
fn baked_nodes_must_be_ordered_lowercase_and_complete() {
    let baked = example_zones().to_baked();
    // Uppercase a stored name: refused (lookups rely on lowercase keys).
    let mut upper = baked.clone();
    let at = upper
        .windows(15)
        .position(|x| x == b"\x03www\x07example\x00\x00\x02")
        .unwrap();
    upper[at + 1] = b'W';
    assert!(Zones::from_baked_copy(&upper)
        .unwrap_err()
        .reason
        .contains("lowercase"));
    // Rename www to "aaa": out of order after "wild".
    let mut order = baked.clone();
    order[at + 1..at + 4].copy_from_slice(b"aaa");
    assert!(Zones::from_baked_copy(&order)
        .unwrap_err()
        .reason
        .contains("canonical order"));
}
