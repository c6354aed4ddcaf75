//! The zones the tests and the fuzz targets share, and the helpers that
//! write names and record data for them: one fixture, so that a unit test,
//! a test against dig and a fuzz target ask the same zone. Built with the
//! `testing` feature (or in this crate's own tests); not a stable API.

use crate::zone::{Record, Zone, Zones};
use crate::{Class, Rtype};
use alloc::vec;
use alloc::vec::Vec;

/// `www.example.com.` in wire form (no escapes in tests' names; a final dot
/// or none).
pub fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A record of class IN.
pub fn rr(owner: &str, ttl: u32, rtype: Rtype, rdata: Vec<u8>) -> Record {
    Record {
        owner: wire(owner),
        rtype,
        class: Class::IN,
        ttl,
        rdata,
    }
}

/// SOA data: `mname`, hostmaster.example.com., the serial and timers, and
/// the negative-caching `minimum`.
pub fn soa(mname: &str, minimum: u32) -> Vec<u8> {
    let mut data = wire(mname);
    data.extend_from_slice(&wire("hostmaster.example.com."));
    for value in [2026112901u32, 7200, 900, 1209600, minimum] {
        data.extend_from_slice(&value.to_be_bytes());
    }
    data
}

/// TXT data: each string with its length byte.
pub fn txt(strings: &[&str]) -> Vec<u8> {
    let mut data = Vec::new();
    for s in strings {
        data.push(s.len() as u8);
        data.extend_from_slice(s.as_bytes());
    }
    data
}

/// `number` (fixed fields: a preference, SRV's priority, weight and port)
/// then `name` in wire form.
pub fn prefixed(number: &[u8], name: &str) -> Vec<u8> {
    let mut data = number.to_vec();
    data.extend_from_slice(&wire(name));
    data
}

/// example.com with an answer of every kind (addresses, MX, SRV, CAA, TXT,
/// an unknown type, a CNAME to a name in other case, a chain, a dangling
/// one, one out of the zone, a loop, one into a delegation, a wildcard, an
/// empty non-terminal, a delegation with glue, and a set of 40 TXT records
/// too big for 512 bytes), and the reverse zone 2.0.192.in-addr.arpa.
pub fn zones() -> Zones {
    let mut records = vec![
        rr(
            "example.com.",
            3600,
            Rtype::SOA,
            soa("ns1.example.com.", 300),
        ),
        rr("example.com.", 3600, Rtype::NS, wire("ns1.example.com.")),
        rr("example.com.", 3600, Rtype::NS, wire("ns2.example.net.")),
        rr(
            "example.com.",
            300,
            Rtype::MX,
            prefixed(&[0, 10], "www.example.com."),
        ),
        rr("ns1.example.com.", 3600, Rtype::A, vec![192, 0, 2, 53]),
        rr("www.example.com.", 300, Rtype::A, vec![192, 0, 2, 1]),
        rr("www.example.com.", 300, Rtype::A, vec![192, 0, 2, 2]),
        rr("www.example.com.", 300, Rtype::AAAA, {
            let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
            v6.resize(15, 0);
            v6.push(1);
            v6
        }),
        rr(
            "alias.example.com.",
            60,
            Rtype::CNAME,
            wire("WWW.example.com."),
        ),
        rr(
            "chain1.example.com.",
            60,
            Rtype::CNAME,
            wire("chain2.example.com."),
        ),
        rr(
            "chain2.example.com.",
            60,
            Rtype::CNAME,
            wire("www.example.com."),
        ),
        rr(
            "dangling.example.com.",
            60,
            Rtype::CNAME,
            wire("nothere.example.com."),
        ),
        rr(
            "outside.example.com.",
            60,
            Rtype::CNAME,
            wire("www.example.org."),
        ),
        rr(
            "loop1.example.com.",
            60,
            Rtype::CNAME,
            wire("loop2.example.com."),
        ),
        rr(
            "loop2.example.com.",
            60,
            Rtype::CNAME,
            wire("loop1.example.com."),
        ),
        rr(
            "intosub.example.com.",
            60,
            Rtype::CNAME,
            wire("host.sub.example.com."),
        ),
        rr("txt.example.com.", 60, Rtype::TXT, txt(&["hello", "world"])),
        rr(
            "_sip._tcp.example.com.",
            60,
            Rtype::SRV,
            prefixed(&[0, 0, 0, 5, 0x13, 0xc4], "www.example.com."),
        ),
        rr(
            "caa.example.com.",
            60,
            Rtype::CAA,
            b"\x00\x05issueca.example".to_vec(),
        ),
        rr("*.wild.example.com.", 60, Rtype::TXT, txt(&["wildcard"])),
        rr(
            "sub.example.com.",
            86400,
            Rtype::NS,
            wire("ns.sub.example.com."),
        ),
        rr(
            "sub.example.com.",
            86400,
            Rtype::NS,
            wire("ns1.example.com."),
        ),
        rr("ns.sub.example.com.", 86400, Rtype::A, vec![192, 0, 2, 99]),
        rr("deep.ent.example.com.", 60, Rtype::A, vec![192, 0, 2, 7]),
        rr("opaque.example.com.", 60, Rtype(65280), vec![0xab, 0xcd]),
    ];
    // 40 TXT records of 30 bytes: about 1.7 KB, more than 512.
    for i in 0..40 {
        let text = alloc::format!("record number {i:02} of a big set");
        records.push(rr("big.example.com.", 60, Rtype::TXT, txt(&[&text])));
    }
    let example = Zone::from_records(&wire("example.com."), records).unwrap();
    let reverse = Zone::from_records(
        &wire("2.0.192.in-addr.arpa."),
        vec![
            rr(
                "2.0.192.in-addr.arpa.",
                3600,
                Rtype::SOA,
                soa("ns1.example.com.", 3600),
            ),
            rr(
                "2.0.192.in-addr.arpa.",
                3600,
                Rtype::NS,
                wire("ns1.example.com."),
            ),
            rr(
                "1.2.0.192.in-addr.arpa.",
                3600,
                Rtype::PTR,
                wire("www.example.com."),
            ),
        ],
    )
    .unwrap();
    Zones::new(vec![example, reverse]).unwrap()
}
