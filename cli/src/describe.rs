//! `lamina describe`: the application's device graph, as text or Graphviz DOT.

use crate::project::{Device, DeviceKind, Project};
use crate::Target;

/// The chain of implementations behind one declared device on a target,
/// from the trait down to what the host provides.
fn implementation(device: &Device, target: Target) -> Vec<String> {
    let name = &device.name;
    match (target, device.kind) {
        (Target::Unix, DeviceKind::Console) => vec!["standard output".into()],
        (Target::Unix, DeviceKind::Clock) => vec!["CLOCK_MONOTONIC, CLOCK_REALTIME".into()],
        (Target::Unix, DeviceKind::Random) => vec!["getrandom(2)".into()],
        (Target::Unix, DeviceKind::Stack) => vec!["host sockets (the kernel's TCP/IP)".into()],
        (Target::Unix, DeviceKind::Netif) => vec![format!("tap device (--net:{name}=TAP)")],
        (Target::Unix, DeviceKind::Block) => vec![format!("host file (--block:{name}=FILE)")],
        (Target::Unix, DeviceKind::Kv) => vec![format!("host directory (--kv:{name}=DIR)")],
        (Target::Spt | Target::Hvt, kind) => {
            let via = if target == Target::Hvt {
                "hypercall"
            } else {
                "system call"
            };
            match kind {
                DeviceKind::Console => vec![
                    format!("Solo5 console ({via} per line)"),
                    "tender's stdout".into(),
                ],
                DeviceKind::Clock if target == Target::Hvt => {
                    vec![
                        "TSC, scaled by the tender's frequency".into(),
                        "wall clock from the tender".into(),
                    ]
                }
                DeviceKind::Clock => vec!["clock_gettime(2), pinned by seccomp".into()],
                DeviceKind::Random => vec!["ChaCha20 seeded from RDSEED/RDRAND".into()],
                DeviceKind::Netif => vec![
                    format!("Solo5 net \"{name}\""),
                    format!("tap (--net:{name}=TAP)"),
                ],
                DeviceKind::Stack => vec![
                    "lamina-net (smoltcp): TCP, UDP, IPv4, IPv6, DHCP".into(),
                    format!("Solo5 net \"{name}\""),
                    format!("tap (--net:{name}=TAP) or user-mode (lamina run --port)"),
                ],
                DeviceKind::Block => vec![
                    format!("Solo5 block \"{name}\""),
                    format!("file (--block:{name}=FILE)"),
                ],
                DeviceKind::Kv => vec!["not available yet".into()],
            }
        }
        (Target::Virtio, _) => vec!["not available yet".into()],
    }
}

fn label(device: &Device) -> String {
    if device.name.is_empty() {
        device.kind.trait_name().to_owned()
    } else {
        format!("{} \"{}\"", device.kind.trait_name(), device.name)
    }
}

/// Renders the graph of `project` on `target`.
pub fn describe(project: &Project, target: Target, dot: bool) -> String {
    if dot {
        return to_dot(project, target);
    }
    let mut out = format!("{} on {}\n", project.name, target.name());
    if project.devices.is_empty() {
        out.push_str("└─ (no devices declared in [package.metadata.lamina])\n");
    }
    for (i, device) in project.devices.iter().enumerate() {
        let last = i + 1 == project.devices.len();
        let chain = implementation(device, target).join(" → ");
        out.push_str(&format!(
            "{} {:<20} → {chain}\n",
            if last { "└─" } else { "├─" },
            label(device)
        ));
    }
    out
}

fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn to_dot(project: &Project, target: Target) -> String {
    let mut out = format!(
        "digraph {} {{\n",
        quote(&format!("{} on {}", project.name, target.name()))
    );
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n");
    out.push_str(&format!(
        "  app [shape=ellipse, label={}];\n",
        quote(&format!("{}\n({})", project.name, target.name()))
    ));
    for (i, device) in project.devices.iter().enumerate() {
        out.push_str(&format!(
            "  dev{i} [label={}];\n  app -> dev{i};\n",
            quote(&label(device))
        ));
        let mut previous = format!("dev{i}");
        for (j, step) in implementation(device, target).iter().enumerate() {
            let node = format!("impl{i}_{j}");
            out.push_str(&format!(
                "  {node} [label={}, style=rounded];\n  {previous} -> {node};\n",
                quote(step)
            ));
            previous = node;
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Project {
        Project {
            name: "echo".into(),
            dir: ".".into(),
            devices: vec![
                Device::parse("console").unwrap(),
                Device::parse("stack:service").unwrap(),
            ],
        }
    }

    #[test]
    fn text_graph_lists_each_device_and_its_implementation() {
        let text = describe(&echo(), Target::Unix, false);
        assert!(text.starts_with("echo on unix\n"));
        assert!(text.contains("├─ Console"));
        assert!(text.contains("└─ Stack \"service\""));
        assert!(text.contains("host sockets"));
    }

    #[test]
    fn dot_graph_is_well_formed() {
        let dot = describe(&echo(), Target::Unix, true);
        assert!(dot.starts_with("digraph \"echo on unix\" {"));
        assert!(dot.contains("app -> dev1;"));
        assert!(dot.contains("label=\"Stack \\\"service\\\"\""));
        assert_eq!(dot.matches('{').count(), dot.matches('}').count());
        assert!(dot.trim_end().ends_with('}'));
    }
}
