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

/// Creates tap `tap` with host address `address` (ADDR/PREFIX), up, in
/// `netns` (created if missing) or in the current namespace.
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
    let valid_addr =
        addr.parse::<std::net::IpAddr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128);
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
