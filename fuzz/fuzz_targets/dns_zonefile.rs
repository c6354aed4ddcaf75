//! DNS zones: any text through the master-file reader and the zone checks
//! (as the zone `example.`); a zone it accepts baked, read back with
//! `Zones::from_baked` and looked up name by name. The same bytes also go
//! to `from_baked` directly, which must refuse them or give a zone set
//! whose lookups work: never a panic.
#![no_main]

use lamina_dns::zone::{read_zone, Lookup, Zone, Zones};
use lamina_dns::Rtype;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &[u8] = b"\x07example\x00";

/// Every lookup of every node, of a name below each, and of each name
/// with its first label replaced by `*`: an answer of the right kind.
fn look_up_everything(zone: &Zone) {
    let (first, _) = zone.axfr().next().expect("a zone has a SOA");
    assert_eq!(first, zone.origin());
    assert_eq!(zone.soa().rtype(), Rtype::SOA);
    let _ = zone.negative_ttl();
    for node in zone.nodes() {
        match zone.lookup(node.name()) {
            Lookup::Found(found) => assert_eq!(found.name(), node.name()),
            Lookup::Referral { cut } => {
                assert!(cut.rrset(Rtype::NS).is_some(), "a cut holds NS");
                assert!(node.name().ends_with(cut.name()));
            }
            other => panic!("an existing name looked up as {other:?}"),
        }
        let below = [b"\x05fuzzy", node.name()].concat();
        let _ = zone.lookup(&below);
        if let Some(rest) = lamina_dns::zone::name::parent(node.name()) {
            let wildcard = [b"\x01*", rest].concat();
            let _ = zone.lookup(&wildcard);
        }
        if let Some(glue) = zone.glue(node.name()) {
            assert!(glue.rrset(Rtype::A).is_some() || glue.rrset(Rtype::AAAA).is_some());
        }
        for set in node.rrsets() {
            assert_eq!(set.rdatas().count(), set.len());
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(zones) = Zones::from_baked_copy(bytes) {
        for zone in zones.iter() {
            look_up_everything(zone);
        }
    }
    let Ok(zone) = read_zone(bytes, "fuzz.zone", ORIGIN) else {
        return;
    };
    let zones = Zones::new(vec![zone]).expect("one zone");
    let baked = zones.to_baked();
    let again = Zones::from_baked_copy(&baked).expect("a baked zone reads back");
    assert_eq!(again.to_baked(), baked, "baking is stable");
    let zone = again.find(ORIGIN).expect("the zone is found by its origin");
    look_up_everything(zone);
});
