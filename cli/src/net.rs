//! `lamina net`: create and remove the tap devices unikernels attach to,
//! with a host address, optionally inside a network namespace. Needs root
//! (CAP_NET_ADMIN); uses iproute2's `ip`, which every Linux host has.

use crate::CliError;
use std::process::Command;

/// Runs `ip ARGS` (inside `netns` if given), failing with its message.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<(), CliError> {
    let mut command = Command::new("ip");
    if let Some(ns) = netns {
        command.args(["netns", "exec", ns, "ip"]);
    }
    command.args(args);
    let output = command
        .output()
        .map_err(CliError::io("cannot run ip (install iproute2)"))?;
    if !output.status.success() {
        return Err(CliError::Project(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), CliError> {
    let valid = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(CliError::Project(format!(
            "invalid {what} name '{name}': 1-15 letters, digits, '-' or '_'"
        )))
    }
}

fn require_root() -> Result<(), CliError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next());
    if uid == Some("0") {
        Ok(())
    } else {
        Err(CliError::Project(
            "lamina net changes network devices and needs root; without root use user-mode networking (lamina run --port)".into(),
        ))
    }
}

/// Frames a tap made by `lamina net up` holds for its reader, the
/// unikernel (Linux's default is 1,000).
///
/// Why: the host's clients send into the tap while the unikernel's reader
/// may not be running (on a host whose CPUs are all busy it waits for
/// one), and what the queue cannot hold is dropped and comes back only
/// when the client retransmits it, 200 ms or more later. Reading between
/// writes (`lamina_net::device::Stash`, hvt's I/O thread) keeps the queue
/// short while the reader runs; this is for when it does not. The website
/// on hvt under wrk -c1000, 2 CPUs, default queue: 204-1,405 frames
/// dropped (in 8 s of `bench/http.py`, p99 137 ms; in 4 s runs, p99
/// 35-37 ms); with 10,000, none (p99 29-34 ms). Frames take memory only
/// while they wait.
pub const TAP_QUEUE_FRAMES: u32 = 10_000;

/// Creates tap `tap` with host address `address` (ADDR/PREFIX), up, in
/// `netns` (created if missing) or in the current namespace, with a queue
/// of [`TAP_QUEUE_FRAMES`].
pub fn up(tap: &str, address: &str, netns: Option<&str>) -> Result<(), CliError> {
    check_name("tap", tap)?;
    if let Some(ns) = netns {
        check_name("namespace", ns)?;
    }
    let (addr, prefix) = address.split_once('/').ok_or_else(|| {
        CliError::Project(format!(
            "address '{address}' must be ADDR/PREFIX, like 10.0.0.1/24"
        ))
    })?;
    // An IPv4 prefix past 32 passed here and failed in `ip addr add`,
    // after the namespace and the tap were made, which stayed behind.
    let most = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some(32),
        Ok(std::net::IpAddr::V6(_)) => Some(128),
        Err(_) => None,
    };
    let valid_addr = most.is_some_and(|most| prefix.parse::<u8>().is_ok_and(|p| p <= most));
    if !valid_addr {
        return Err(CliError::Project(format!(
            "address '{address}' must be ADDR/PREFIX, like 10.0.0.1/24"
        )));
    }
    require_root()?;
    if let Some(ns) = netns {
        let exists = std::path::Path::new("/run/netns").join(ns).exists();
        if !exists {
            ip(None, &["netns", "add", ns])?;
        }
        ip(netns, &["link", "set", "lo", "up"])?;
    }
    ip(netns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    let queue = TAP_QUEUE_FRAMES.to_string();
    ip(netns, &["link", "set", "dev", tap, "txqueuelen", &queue])?;
    ip(netns, &["addr", "add", address, "dev", tap])?;
    ip(netns, &["link", "set", "dev", tap, "up"])?;
    let place = netns
        .map(|ns| format!(" in namespace {ns}"))
        .unwrap_or_default();
    eprintln!("lamina: tap {tap} is up with host address {address}{place}");
    eprintln!("lamina: attach it with: lamina run ... -- --net:service={tap} --ipv4=ADDR/PREFIX");
    Ok(())
}

/// Removes tap `tap` (and `netns`, if given).
pub fn down(tap: &str, netns: Option<&str>) -> Result<(), CliError> {
    check_name("tap", tap)?;
    require_root()?;
    ip(netns, &["link", "del", "dev", tap])?;
    if let Some(ns) = netns {
        check_name("namespace", ns)?;
        ip(None, &["netns", "del", ns])?;
    }
    eprintln!("lamina: removed {tap}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::up;

    /// Refused before anything is made: an IPv4 prefix past 32 reached
    /// `ip addr add`, after the namespace and the tap were made.
    #[test]
    fn a_prefix_too_long_for_its_address_is_refused_first() {
        for address in [
            "10.0.0.1/33",
            "10.0.0.1/40",
            "fd00::1/129",
            "x/24",
            "10.0.0.1",
        ] {
            let refused = up("tapz", address, Some("lamtest-never")).unwrap_err();
            assert!(
                refused.to_string().contains("must be ADDR/PREFIX"),
                "{address}: {refused}"
            );
        }
        let namespaces = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten();
        assert!(namespaces
            .map(|entry| entry.file_name())
            .all(|name| name != "lamtest-never"));
    }
}
