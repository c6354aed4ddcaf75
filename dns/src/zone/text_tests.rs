//! The master-file reader: every feature, every error with its line.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::borrow::ToOwned;

use super::tests::w;
use super::*;
use crate::{Class, Rtype};

const ZONE: &str = r#"; A zone using every feature of the reader.
$ORIGIN example.com.
$TTL 1h
@   IN  SOA ns1 hostmaster.example.com. (
            2026112901 ; serial
            2h         ; refresh
            30m        ; retry
            2w         ; expire
            300 )      ; minimum
    IN  NS  ns1
    NS  ns2.example.net.
ns1 300 IN A 192.0.2.1
    IN 600 AAAA 2001:db8::1
www A 192.0.2.2
    TXT "hello world" "second \"quoted\" string" unquoted \065\066
mail 1d MX 10 mx.example.com.
_sip._tcp SRV 10 20 5060 sip
sip A 192.0.2.3
host HINFO "Intel x86" Linux
@ CAA 0 issue "ca.example.net"
a\.b A 192.0.2.4
\097bc A 192.0.2.5
x TYPE65280 \# 4 0aff 00 01
y TYPE1 \# 4 c0000206
alias CNAME www
$ORIGIN sub.example.com.
@ NS ns.sub.example.com.
ns A 192.0.2.53
$ORIGIN 2.0.192.in-addr.arpa.example.com.
1 PTR ns1.example.com.
"#;

fn parse(text: &str) -> Result<Vec<(Record, usize)>, ReadError> {
    read_records(text.as_bytes(), "example.com.zone", &w("example.com"))
}

fn error(text: &str) -> String {
    read_zone(text.as_bytes(), "example.com.zone", &w("example.com"))
        .unwrap_err()
        .to_string()
}

fn find<'a>(records: &'a [(Record, usize)], owner: &str, rtype: Rtype) -> Vec<&'a (Record, usize)> {
    records
        .iter()
        .filter(|(r, _)| r.owner == w(owner) && r.rtype == rtype)
        .collect()
}

#[test]
fn reads_every_feature_of_the_format() {
    let records = parse(ZONE).unwrap();
    let soa = find(&records, "example.com", Rtype::SOA)[0];
    assert_eq!(soa.1, 4, "a record's line is where it starts");
    let mut soa_data = [w("ns1.example.com"), w("hostmaster.example.com")].concat();
    for n in [2026112901u32, 7200, 1800, 1_209_600, 300] {
        soa_data.extend_from_slice(&n.to_be_bytes());
    }
    assert_eq!(soa.0.rdata, soa_data);
    assert_eq!((soa.0.ttl, soa.0.class), (3600, Class::IN));
    let ns: Vec<_> = find(&records, "example.com", Rtype::NS)
        .iter()
        .map(|r| r.0.rdata.clone())
        .collect();
    assert_eq!(
        ns,
        [w("ns1.example.com"), w("ns2.example.net")],
        "omitted owners are the previous one's"
    );
    let a = find(&records, "ns1.example.com", Rtype::A)[0];
    assert_eq!((a.0.ttl, &a.0.rdata[..]), (300, &[192u8, 0, 2, 1][..]));
    let aaaa = find(&records, "ns1.example.com", Rtype::AAAA)[0];
    assert_eq!(aaaa.0.ttl, 600, "class and TTL in either order");
    assert_eq!(aaaa.0.rdata[..2], [0x20, 0x01]);
    let www = find(&records, "www.example.com", Rtype::A)[0];
    assert_eq!(www.0.ttl, 3600, "an omitted TTL is the $TTL");
    let txt = find(&records, "www.example.com", Rtype::TXT)[0];
    assert_eq!(
        txt.0.rdata,
        b"\x0bhello world\x16second \"quoted\" string\x08unquoted\x02AB"
    );
    let mx = find(&records, "mail.example.com", Rtype::MX)[0];
    assert_eq!(mx.0.ttl, 86400);
    assert_eq!(mx.0.rdata, [&[0u8, 10][..], &w("mx.example.com")].concat());
    let srv = find(&records, "_sip._tcp.example.com", Rtype::SRV)[0];
    assert_eq!(
        srv.0.rdata,
        [&[0u8, 10, 0, 20, 0x13, 0xc4][..], &w("sip.example.com")].concat()
    );
    assert_eq!(
        find(&records, "host.example.com", Rtype::HINFO)[0].0.rdata,
        b"\x09Intel x86\x05Linux"
    );
    assert_eq!(
        find(&records, "example.com", Rtype::CAA)[0].0.rdata,
        b"\x00\x05issueca.example.net"
    );
    let dotted = [&b"\x03a.b"[..], &w("example.com")].concat();
    assert_eq!(
        records.iter().filter(|(r, _)| r.owner == dotted).count(),
        1,
        "\\. is a dot inside a label"
    );
    assert_eq!(
        find(&records, "abc.example.com", Rtype::A).len(),
        1,
        "\\097 is 'a'"
    );
    assert_eq!(
        find(&records, "x.example.com", Rtype(65280))[0].0.rdata,
        [0x0a, 0xff, 0, 1]
    );
    assert_eq!(
        find(&records, "y.example.com", Rtype::A)[0].0.rdata,
        [192, 0, 2, 6]
    );
    assert_eq!(
        find(&records, "alias.example.com", Rtype::CNAME)[0].0.rdata,
        w("www.example.com")
    );
    assert_eq!(
        find(&records, "sub.example.com", Rtype::NS).len(),
        1,
        "@ follows $ORIGIN"
    );
    assert_eq!(find(&records, "ns.sub.example.com", Rtype::A).len(), 1);
    assert_eq!(
        find(&records, "1.2.0.192.in-addr.arpa.example.com", Rtype::PTR).len(),
        1
    );
    assert_eq!(records.len(), 20);

    // The whole zone passes the checks and answers.
    let zone = read_zone(ZONE.as_bytes(), "example.com.zone", &w("example.com")).unwrap();
    assert!(matches!(
        zone.lookup(&w("ns.sub.example.com")),
        Lookup::Referral { .. }
    ));
    assert_eq!(zone.negative_ttl(), 300);
}

#[test]
fn entries_may_span_lines_and_owners_carry_over_parentheses() {
    let text = "$TTL 60\n@ SOA ns h (1\n 2 3\n\n 4 5) ; done\n NS ns\nns A (\n192.0.2.1 )\n TXT ( \"a;b\" ; not a comment inside quotes\n \"c\" )\n";
    let records = parse(text).unwrap();
    let lines: Vec<_> = records.iter().map(|(r, line)| (r.rtype, *line)).collect();
    assert_eq!(
        lines,
        [
            (Rtype::SOA, 2),
            (Rtype::NS, 6),
            (Rtype::A, 7),
            (Rtype::TXT, 9)
        ]
    );
    assert_eq!(records[3].0.owner, w("ns.example.com"));
    assert_eq!(records[3].0.rdata, b"\x03a;b\x01c");
}

#[test]
fn ttls_default_to_the_last_given_without_ttl_directive() {
    let records = parse("@ 120 SOA ns h 1 2 3 4 5\n NS ns\n$TTL 1w1d\nns A 192.0.2.1\n").unwrap();
    let ttls: Vec<_> = records.iter().map(|(r, _)| r.ttl).collect();
    assert_eq!(ttls, [120, 120, 691_200]);
    let ch = parse("@ 1 CH SOA ns h 1 2 3 4 5\n NS ns\n").unwrap();
    assert!(
        ch.iter().all(|(r, _)| r.class == Class::CH),
        "the class carries over"
    );
    let crlf = parse("@ 1 IN SOA ns h 1 2 3 4 5\r\n NS ns\r\n").unwrap();
    assert_eq!(crlf[1].0.rdata, w("ns.example.com"));
    let classes = parse("@ 1 CLASS1 SOA ns h 1 2 3 4 5\n").unwrap();
    assert_eq!(classes[0].0.class, Class::IN);
}

#[test]
fn every_error_names_the_file_the_line_and_why() {
    let head = "$TTL 1h\n@ SOA ns h 1 2 3 4 5\n NS ns\n";
    let cases = [
        (
            "www AAAA 1.2.3.4\n",
            "example.com.zone:4: AAAA: \"1.2.3.4\" is not an IPv6 address",
        ),
        (
            "www A 1.2.3\n",
            "example.com.zone:4: A: \"1.2.3\" is not an IPv4 address",
        ),
        ("www A\n", ":4: A: the address is missing"),
        (
            "www A 1.2.3.4 5.6.7.8\n",
            ":4: A: \"5.6.7.8\" after the record's data",
        ),
        (
            "www MX 70000 mx\n",
            ":4: MX: the preference \"70000\" is not a number from 0 to 65535",
        ),
        ("www FOO 1\n", ":4: \"FOO\" is not a record type"),
        (
            "www TYPE43 abc\n",
            ":4: TYPE43: write the data of type 43 in RFC 3597's form",
        ),
        (
            "x TYPE65280 \\# 3 0aff\n",
            ":4: TYPE65280: \\# says 3 bytes, but the hexadecimal gives 2",
        ),
        (
            "x TYPE65280 \\# 2 0af\n",
            ":4: TYPE65280: \"0af\": an odd number of hexadecimal digits",
        ),
        (
            "x TYPE65280 \\# 2 0 af\n",
            ":4: TYPE65280: \"0\": an odd number",
        ),
        (
            "x TYPE65280 \\# 1 zz\n",
            ":4: TYPE65280: \"zz\" is not hexadecimal",
        ),
        ("x A \\# 3 010203\n", ":4: A: an A record is 4 bytes"),
        ("www A (\n 1.2.3.4\n", ":4: '(' is never closed"),
        ("www A 1.2.3.4 )\n", ":4: ')' without '('"),
        (
            "www TXT \"open\n",
            ":4: a quoted string is not closed on its line",
        ),
        ("$INCLUDE other.zone\n", ":4: $INCLUDE is not supported"),
        (
            "$GENERATE 1-2 a A 1.2.3.4\n",
            ":4: unknown directive \"$GENERATE\"",
        ),
        ("$ORIGIN\n", ":4: \"$ORIGIN\" takes one argument"),
        ("$TTL 1x\n", ":4: \"1x\" is not a time"),
        (
            "www 3000000000 A 1.2.3.4\n",
            ":4: \"3000000000\": a TTL is at most 2147483647",
        ),
        (
            "www 99999999999 A 1.2.3.4\n",
            ":4: \"99999999999\" is larger than 4294967295",
        ),
        (
            "a..b A 1.2.3.4\n",
            ":4: \"a..b\" is not a valid name: an empty label",
        ),
        (
            "\\256 A 1.2.3.4\n",
            ":4: \"\\\\256\": \\DDD takes three digits, at most 255",
        ),
        ("www TXT \"\\\n", ":4: a backslash at the end of a line"),
        ("www\n", ":4: a record without a type"),
        (
            "www CNAME a\nwww A 1.2.3.4\n",
            ":4: www.example.com. CNAME: a CNAME cannot have other data",
        ),
        (
            "www.example.org. A 1.2.3.4\n",
            ":4: www.example.org. A: the owner is outside the zone's origin",
        ),
        (
            "www SOA ns h 1 2 3 4 5\n",
            ":4: www.example.com. SOA: a SOA below the apex",
        ),
        (
            "www SOA ns h 1 2 3 4 5x\n",
            ":4: SOA: the minimum: \"5x\" is not a time",
        ),
        ("www HINFO one\n", ":4: HINFO: the OS is missing"),
        (
            "@ CAA 0 is-sue \"x\"\n",
            ":4: CAA: the tag \"is-sue\" is not letters and digits",
        ),
        (
            "@ CH TXT x\n",
            ":4: example.com. TXT: the class differs from the SOA's",
        ),
    ];
    for (tail, expected) in cases {
        let text = [head, tail].concat();
        let got = error(&text);
        assert!(
            got.contains(expected),
            "{tail:?}: {got:?} should contain {expected:?}"
        );
        assert!(got.starts_with("example.com.zone:"), "{got}");
    }
    let long_label = ["a".repeat(64), " A 1.2.3.4\n".to_owned()].concat();
    assert!(
        error(&[head, &long_label].concat()).contains(":4: \"aaaa"),
        "a 64-byte label"
    );
    assert!(error(&[head, &long_label].concat()).contains("longer than 63"));
    let long_name = [
        ["a".repeat(60), ".".to_owned()].concat().repeat(5),
        " A 1.2.3.4\n".to_owned(),
    ]
    .concat();
    assert!(error(&[head, &long_name].concat()).contains("longer than 255 bytes"));
    let long_string = ["www TXT ", &"x".repeat(256), "\n"].concat();
    assert!(error(&[head, &long_string].concat())
        .contains(":4: TXT: a string is longer than 255 bytes"));
    // Errors without a line of their own.
    assert_eq!(
        error(" A 1.2.3.4\n"),
        "example.com.zone:1: the first record must name its owner (this line starts with a blank)"
    );
    assert_eq!(
        error("@ SOA ns h 1 2 3 4 5\n"),
        "example.com.zone:1: no TTL for this record: give one, or set $TTL before it"
    );
    assert_eq!(
        error("$TTL 1\nwww A 1.2.3.4\n"),
        "example.com.zone: example.com. SOA: the zone has no SOA"
    );
    assert_eq!(
        error("$TTL 1\n@ SOA ns h 1 2 3 4 5\n"),
        "example.com.zone:2: example.com. NS: the zone has no NS at its apex"
    );
    assert_eq!(
        error("$TTL 1\nexample.org. SOA ns h 1 2 3 4 5\n"),
        "example.com.zone:2: the SOA's owner is example.org., but this file is for the zone example.com."
    );
}

#[test]
fn a_directory_of_zones_is_read_and_bakes_into_what_from_baked_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), ZONE).unwrap();
    std::fs::write(
        dir.path().join("2.0.192.in-addr.arpa.zone"),
        "$TTL 1h\n@ SOA ns.example.com. h.example.com. 1 2 3 4 5\n NS ns.example.com.\n1 PTR ns1.example.com.\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README"), "not a zone").unwrap();
    let zones = read_dir(dir.path(), "zones").unwrap();
    assert_eq!(zones.len(), 2);
    let baked = zones.to_baked();
    let again = Zones::from_baked_copy(&baked).unwrap();
    let reverse = again.find(&w("1.2.0.192.in-addr.arpa")).unwrap();
    let Lookup::Found(ptr) = reverse.lookup(&w("1.2.0.192.IN-ADDR.arpa")) else {
        panic!("the PTR must be found");
    };
    assert_eq!(
        ptr.rrset(Rtype::PTR).unwrap().rdatas().next().unwrap(),
        &w("ns1.example.com")[..]
    );

    std::fs::write(
        dir.path().join("bad.example.zone"),
        "$TTL 1h\n@ SOA ns h 1 2 3 4 5\n NS ns\nns AAAA 1.2.3.4\n",
    )
    .unwrap();
    assert_eq!(
        read_dir(dir.path(), "zones").unwrap_err().to_string(),
        "zones/bad.example.zone:4: AAAA: \"1.2.3.4\" is not an IPv6 address"
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(read_dir(empty.path(), "zones")
        .unwrap_err()
        .to_string()
        .starts_with("zones: no *.zone file"));
}

/// RFC 4592 2.2.1's zone, with tricky syntax around it. Its records were
/// checked against `nsd-checkzone -p` (NSD 4.6.1): the same 22 records,
/// NSD lowercasing the names inside NS and SOA data where this reader
/// keeps their case (the hex `ab cdef` was `abcdef` for NSD, which refuses
/// hex split into words as RFC 3597 5 allows).
const TRICKY: &str = include_str!("testdata/tricky.example.zone");

#[test]
fn rfc_4592_s_example_answers_as_the_rfc_says() {
    let zone = read_zone(
        TRICKY.as_bytes(),
        "tricky.example.zone",
        &w("tricky.example"),
    )
    .unwrap();
    let is = |name: &str| match zone.lookup(&w(name)) {
        Lookup::Found(n) => ["found ", &String::from_utf8_lossy(n.name())].concat(),
        Lookup::Wildcard { source } => {
            ["wildcard ", &String::from_utf8_lossy(source.name())].concat()
        }
        Lookup::Referral { cut } => ["referral ", &String::from_utf8_lossy(cut.name())].concat(),
        Lookup::NxDomain => "nxdomain".to_owned(),
    };
    // RFC 4592 2.2.1's queries and what they must get.
    assert_eq!(
        is("host3.tricky.example"),
        "wildcard \x01*\x06tricky\x07example\x00"
    );
    assert_eq!(
        is("foo.bar.tricky.example"),
        "wildcard \x01*\x06tricky\x07example\x00"
    );
    assert_eq!(
        is("host1.tricky.example"),
        "found \x05host1\x06tricky\x07example\x00"
    );
    assert_eq!(
        is("sub.*.tricky.example"),
        "found \x03sub\x01*\x06tricky\x07example\x00"
    );
    assert_eq!(is("_telnet._tcp.host1.tricky.example"), "nxdomain");
    assert_eq!(
        is("host.subdel.tricky.example"),
        "referral \x06subdel\x06tricky\x07example\x00"
    );
    assert_eq!(is("ghost.*.tricky.example"), "nxdomain");
    // _tcp.host2 is an empty non-terminal: no wildcard below host2 either.
    assert_eq!(
        is("_tcp.host2.tricky.example"),
        "found \x04_tcp\x05host2\x06tricky\x07example\x00"
    );
    assert_eq!(is("x.host2.tricky.example"), "nxdomain");

    let records = read_records(
        TRICKY.as_bytes(),
        "tricky.example.zone",
        &w("tricky.example"),
    )
    .unwrap();
    let data = |owner: &[u8], rtype: Rtype| -> Vec<Vec<u8>> {
        let owner = [owner, &w("tricky.example")].concat();
        records
            .iter()
            .filter(|(r, _)| name::eq(&r.owner, &owner) && r.rtype == rtype)
            .map(|(r, _)| r.rdata.clone())
            .collect()
    };
    assert_eq!(data(b"\x05mixed\x04case", Rtype::A), [[192, 0, 2, 7]]);
    assert_eq!(data(b"\x0bspaced name", Rtype::TXT), [b"\x00"]);
    assert_eq!(
        data(b"\x03esc", Rtype::TXT),
        [
            &b"\x03ABC\x04tab\t\x0asemi;colon\x0aback\\slash\x03a\"b"[..],
            b"\x07abc def"
        ]
    );
    assert_eq!(data(b"\x01e", Rtype(65001)), [b""]);
    assert_eq!(data(b"\x01e", Rtype(65000)), [[0xab, 0xcd, 0xef]]);
    assert_eq!(
        data(b"\x04nums", Rtype::AAAA),
        [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]]
    );
    assert_eq!(
        data(b"\x03caa", Rtype::CAA),
        [
            &b"\x80\x05iodefmailto:sec@tricky.example"[..],
            b"\x00\x09issuewild;"
        ]
    );
    assert_eq!(data(b"\x03ptr", Rtype::PTR), [b"\x00"]);
    let soa = &data(b"", Rtype::SOA)[0];
    let timers: Vec<u32> = soa[soa.len() - 16..]
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        timers,
        [3600, 1800, 7 * 86400 + 2 * 86400, 86400],
        "1H 30M 1W2D 1d"
    );
}

#[test]
fn bake_writes_the_zones_for_include_and_from_baked() {
    let out = tempfile::tempdir().unwrap();
    // Only this test sets OUT_DIR (cargo test sets CARGO_MANIFEST_DIR).
    std::env::set_var("OUT_DIR", out.path());
    bake("src/zone/testdata", "ZONES").unwrap();
    let source = std::fs::read_to_string(out.path().join("ZONES.rs")).unwrap();
    assert!(
        source.contains("pub static ZONES: &[u8] = include_bytes!("),
        "{source}"
    );
    let baked = std::fs::read(out.path().join("ZONES.bin")).unwrap();
    let zones = Zones::from_baked_copy(&baked).unwrap();
    let zone = zones.find(&w("host1.tricky.example")).unwrap();
    assert!(matches!(
        zone.lookup(&w("host3.tricky.example")),
        Lookup::Wildcard { .. }
    ));
    let missing = bake("src/zone/no-such-dir", "ZONES")
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("src/zone/no-such-dir: "), "{missing}");
}
