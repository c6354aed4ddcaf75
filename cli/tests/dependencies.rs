//! The crate graph's boundaries between the host command and the guest
//! runtimes: the `lamina` command links no guest runtime (what it shares
//! with one, such as the virtio exit status, is in lamina-abi), and no
//! target's runtime builds on another's: what they share is lamina-metal.

use lamina_test_support::cargo_dependencies;

const GUEST_RUNTIMES: [&str; 3] = ["lamina-metal", "lamina-solo5", "lamina-virtio"];

#[test]
fn the_lamina_command_links_no_guest_runtime() {
    let deps = cargo_dependencies("lamina-cli");
    assert!(deps.iter().any(|d| d == "lamina-abi"), "{deps:?}");
    for runtime in GUEST_RUNTIMES.iter().chain(&["lamina-unix", "lamina"]) {
        assert!(
            !deps.iter().any(|d| d == runtime),
            "lamina-cli depends on {runtime}: {deps:?}"
        );
    }
}

#[test]
fn each_target_builds_on_the_shared_runtime_not_on_another_target() {
    for (target, other) in [
        ("lamina-solo5", "lamina-virtio"),
        ("lamina-virtio", "lamina-solo5"),
    ] {
        let deps = cargo_dependencies(target);
        assert!(
            deps.iter().any(|d| d == "lamina-metal"),
            "{target}: {deps:?}"
        );
        assert!(
            !deps.iter().any(|d| d == other),
            "{target} depends on {other}: {deps:?}"
        );
    }
}

/// The user-mode network's TCP/IP stack runs in the lamina-usernet
/// process, outside the tenders (the guest's sandbox), which pass frames
/// on an inherited descriptor (`--net:NAME=fd:N`).
#[test]
fn the_tenders_do_not_link_the_user_mode_network() {
    for tender in ["lamina-spt", "lamina-hvt"] {
        let deps = cargo_dependencies(tender);
        assert!(
            deps.iter().any(|d| d == "lamina-tender"),
            "{tender}: {deps:?}"
        );
        for linked in ["lamina-usernet", "lamina-net", "lamina-core", "smoltcp"] {
            assert!(
                !deps.iter().any(|d| d == linked),
                "{tender} depends on {linked}: {deps:?}"
            );
        }
    }
    // The user-mode network's smoltcp is what the tenders used to link.
    let usernet = cargo_dependencies("lamina-usernet");
    assert!(usernet.iter().any(|d| d == "smoltcp"), "{usernet:?}");
}
