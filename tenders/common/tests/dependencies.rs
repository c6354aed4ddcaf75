//! The tenders handle guest input on the host and link only what they need.
//! They do not link the guest's network stack (lamina-net, and with it
//! lamina-core): the offload code they share with the guest is lamina-wire,
//! which has no dependencies. User-mode networking (smoltcp on the host) is
//! a program of its own, lamina-usernet, which hands the tender a socket.

use lamina_test_support::cargo_dependencies;

const TENDERS: [&str; 3] = ["lamina-tender", "lamina-spt", "lamina-hvt"];

#[test]
fn tenders_do_not_link_the_guest_network_stack() {
    for tender in TENDERS {
        let deps = cargo_dependencies(tender);
        assert!(
            deps.iter().any(|d| d == "lamina-wire"),
            "{tender}: {deps:?}"
        );
        for guest_crate in ["lamina-net", "lamina-core", "lamina-metal", "lamina-solo5"] {
            assert!(
                !deps.iter().any(|d| d == guest_crate),
                "{tender} depends on {guest_crate}: {deps:?}"
            );
        }
    }
}

#[test]
fn no_tender_links_smoltcp() {
    for tender in TENDERS {
        let deps = cargo_dependencies(tender);
        assert!(
            !deps.iter().any(|d| d == "smoltcp"),
            "{tender} links smoltcp: {deps:?}"
        );
    }
}

#[test]
fn the_offload_code_depends_on_nothing() {
    assert_eq!(cargo_dependencies("lamina-wire"), Vec::<String>::new());
}
