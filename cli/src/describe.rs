//! `lamina describe`: the application's composed graph, as text or Graphviz
//! DOT, in the manner of the CACM unikernel article's Figure 3:
//!
//! ```text
//! website on hvt
//! └─ lamina-http (over Stack, Clock)
//!    ├─ Clock → TSC, scaled by the tender's frequency → ...
//!    └─ Stack "service" → lamina-net (smoltcp) → Solo5 net "service" → tap
//! ```
//!
//! Three sources, each written once: the devices come from the
//! application's `lamina::devices!` declaration (read from its build, see
//! [`crate::declared`]); the libraries between the application and its
//! devices come from the dependency graph (`cargo metadata`), each library
//! saying in its `[package.metadata.lamina]` which device families it sits
//! on (`over`) and gives (`provides`); what a primitive device is on each
//! target is the table in [`implementation`].

use crate::declared::{Device, DeviceKind};
use crate::{CliError, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A library in the application's dependency graph that declares its place
/// in the device graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Package name.
    pub name: String,
    /// Device families (or their traits) it is generic over: `Stack`,
    /// `TcpStream`, `Block`.
    pub over: Vec<String>,
    /// Families it gives to what sits on it (TLS gives `TcpStream`).
    pub provides: Vec<String>,
    /// The libraries among these that it depends on directly.
    pub uses: Vec<String>,
    /// Whether the application depends on it directly.
    pub direct: bool,
}

/// What `describe` draws.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The application's name.
    pub app: String,
    /// Its declared devices, in order.
    pub devices: Vec<Device>,
    /// The libraries with a place in the graph.
    pub libraries: Vec<Library>,
}

/// The family a trait belongs to: libraries may name either.
fn family_of(name: &str) -> &str {
    match name {
        "TcpStream" | "TcpListener" | "UdpSocket" => "Stack",
        "KvRead" | "KvWrite" => "Kv",
        other => other,
    }
}

/// The chain of implementations behind a primitive device on a target,
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
        (_, DeviceKind::Kv) => vec!["only on unix so far (start-up error)".into()],
        (_, DeviceKind::Random) => vec!["ChaCha20 seeded from RDSEED/RDRAND".into()],
        (Target::Spt | Target::Hvt, kind) => {
            let via = if target == Target::Hvt {
                "hypercall"
            } else {
                "system call"
            };
            let net = vec![
                format!("Solo5 net \"{name}\""),
                format!("tap (--net:{name}=TAP) or user-mode (lamina run --port)"),
            ];
            match kind {
                DeviceKind::Console => vec![
                    format!("Solo5 console ({via} per line)"),
                    "tender's stdout".into(),
                ],
                DeviceKind::Clock if target == Target::Hvt => vec![
                    "TSC, scaled by the tender's frequency".into(),
                    "wall clock from the tender".into(),
                ],
                DeviceKind::Clock => vec!["clock_gettime(2), pinned by seccomp".into()],
                DeviceKind::Netif => net,
                DeviceKind::Stack => [vec![stack()], net].concat(),
                DeviceKind::Block => vec![
                    format!("Solo5 block \"{name}\""),
                    format!("file (--block:{name}=FILE)"),
                ],
                DeviceKind::Random | DeviceKind::Kv => unreachable!("handled above"),
            }
        }
        (Target::Virtio, kind) => {
            let net = vec![
                format!("virtio-net \"{name}\""),
                format!("QEMU tap (--net:{name}=TAP) or user-mode (lamina run --port)"),
            ];
            match kind {
                DeviceKind::Console => vec!["16550 UART (COM1)".into(), "QEMU's stdio".into()],
                DeviceKind::Clock => vec![
                    "TSC, calibrated by the PIT".into(),
                    "wall clock from the CMOS RTC".into(),
                ],
                DeviceKind::Netif => net,
                DeviceKind::Stack => [vec![stack()], net].concat(),
                DeviceKind::Block => vec![
                    format!("virtio-blk \"{name}\""),
                    format!("file (--block:{name}=FILE)"),
                ],
                DeviceKind::Random | DeviceKind::Kv => unreachable!("handled above"),
            }
        }
    }
}

fn stack() -> String {
    "lamina-net (smoltcp): TCP, UDP, IPv4, IPv6, DHCP".into()
}

/// A node of the graph and what it points to.
#[derive(Debug, Clone)]
struct Node {
    label: String,
    /// Indices of nodes below it.
    below: Vec<usize>,
    /// Drawn as a library (a box with a double border) or an
    /// implementation step (rounded).
    style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    App,
    Library,
    Device,
    Implementation,
}

/// The graph as nodes: 0 is the application.
fn nodes(graph: &Graph, target: Target) -> Vec<Node> {
    let mut nodes = vec![Node {
        label: format!("{} ({})", graph.app, target.name()),
        below: Vec::new(),
        style: Style::App,
    }];
    // Each device: its declared family, then the families it is composed
    // over, then the target's implementation of the primitive.
    let mut device_nodes = Vec::new();
    for device in &graph.devices {
        let first = nodes.len();
        device_nodes.push(first);
        nodes.push(Node {
            label: device.label(),
            below: Vec::new(),
            style: Style::Device,
        });
        let inner = device.families[1..]
            .iter()
            .map(|family| (format!("{family} \"{}\"", device.name), Style::Device));
        let steps = implementation(device, target)
            .into_iter()
            .map(|step| (step, Style::Implementation));
        for (label, style) in inner.chain(steps) {
            let index = nodes.len();
            nodes[index - 1].below.push(index);
            nodes.push(Node {
                label,
                below: Vec::new(),
                style,
            });
        }
    }
    let mut library_nodes = BTreeMap::new();
    for library in &graph.libraries {
        library_nodes.insert(library.name.clone(), nodes.len());
        let mut label = library.name.clone();
        if !library.over.is_empty() {
            label.push_str(&format!(" (over {})", library.over.join(", ")));
        }
        if !library.provides.is_empty() {
            label.push_str(&format!(" (gives {})", library.provides.join(", ")));
        }
        nodes.push(Node {
            label,
            below: Vec::new(),
            style: Style::Library,
        });
    }
    // A library points to the libraries it uses and to what provides each
    // family it sits on: another library of the graph if one gives it, the
    // declared devices of that family otherwise.
    let mut reached = BTreeSet::new();
    for library in &graph.libraries {
        let from = library_nodes[&library.name];
        let mut below: Vec<usize> = library
            .uses
            .iter()
            .filter_map(|name| library_nodes.get(name).copied())
            .collect();
        for wanted in &library.over {
            let family = family_of(wanted);
            let givers: Vec<usize> = graph
                .libraries
                .iter()
                .filter(|other| other.name != library.name)
                .filter(|other| other.provides.iter().any(|p| family_of(p) == family))
                .map(|other| library_nodes[&other.name])
                .collect();
            if givers.is_empty() {
                for (device, &node) in graph.devices.iter().zip(&device_nodes) {
                    if device.families[0] == family {
                        below.push(node);
                        reached.insert(node);
                    }
                }
            } else {
                below.extend(givers);
            }
        }
        below.sort_unstable();
        below.dedup();
        nodes[from].below = below;
    }
    // The application points to the libraries it uses directly and to the
    // devices no library sits on.
    let mut top: Vec<usize> = graph
        .libraries
        .iter()
        .filter(|l| l.direct)
        .map(|l| library_nodes[&l.name])
        .collect();
    top.extend(device_nodes.iter().filter(|n| !reached.contains(n)));
    nodes[0].below = top;
    nodes
}

/// Renders `graph` on `target`.
pub fn describe(graph: &Graph, target: Target, dot: bool) -> String {
    let nodes = nodes(graph, target);
    if dot {
        return to_dot(&nodes, graph, target);
    }
    let mut out = format!("{} on {}\n", graph.app, target.name());
    if nodes[0].below.is_empty() {
        out.push_str("└─ (no devices: declare them with lamina::devices!)\n");
    }
    tree(&nodes, 0, "", &mut out);
    out
}

/// Prints the children of `node` as a tree; a device's chain of
/// implementations stays on one line.
fn tree(nodes: &[Node], node: usize, indent: &str, out: &mut String) {
    let below = &nodes[node].below;
    for (i, &child) in below.iter().enumerate() {
        let last = i + 1 == below.len();
        let mut line = nodes[child].label.clone();
        let mut at = child;
        while nodes[at].style != Style::Library
            && nodes[at].below.len() == 1
            && nodes[nodes[at].below[0]].style != Style::Library
        {
            at = nodes[at].below[0];
            line.push_str(" → ");
            line.push_str(&nodes[at].label);
        }
        out.push_str(&format!(
            "{indent}{} {line}\n",
            if last { "└─" } else { "├─" }
        ));
        let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
        tree(nodes, at, &deeper, out);
    }
}

fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn to_dot(nodes: &[Node], graph: &Graph, target: Target) -> String {
    let mut out = format!(
        "digraph {} {{\n",
        quote(&format!("{} on {}", graph.app, target.name()))
    );
    out.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n");
    for (i, node) in nodes.iter().enumerate() {
        let style = match node.style {
            Style::App => "shape=ellipse",
            Style::Library => "peripheries=2",
            Style::Device => "style=bold",
            Style::Implementation => "style=rounded",
        };
        out.push_str(&format!(
            "  n{i} [label={}, {style}];\n",
            quote(&node.label)
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        for child in &node.below {
            out.push_str(&format!("  n{i} -> n{child};\n"));
        }
    }
    out.push_str("}\n");
    out
}

/// The libraries with a place in the graph of the package at `dir`: every
/// package it depends on (normally or to build), directly or not, whose
/// `[package.metadata.lamina]` has `over` or `provides`.
pub fn libraries(dir: &Path) -> Result<Vec<Library>, CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(crate::guest::GUEST_TRIPLE)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"));
    crate::supervise::dying_with_lamina(&mut command, libc::SIGTERM);
    let output = command
        .output()
        .map_err(CliError::io("cannot run cargo metadata"))?;
    if !output.status.success() {
        return Err(CliError::Project(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| CliError::Project(format!("cargo metadata's output: {e}")))?;
    libraries_in(&metadata, &dir.join("Cargo.toml"))
}

fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    value
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// [`libraries`] on cargo metadata's output, for the package whose
/// manifest is `manifest`.
fn libraries_in(metadata: &serde_json::Value, manifest: &Path) -> Result<Vec<Library>, CliError> {
    let bad = |what: &str| CliError::Project(format!("cargo metadata's output has no {what}"));
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| bad("packages"))?;
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .ok_or_else(|| bad("resolve"))?;
    let canonical = |path: &Path| path.canonicalize().unwrap_or(path.to_path_buf());
    let manifest = canonical(manifest);
    let app = packages
        .iter()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| canonical(Path::new(m)) == manifest)
        })
        .and_then(|p| p["id"].as_str())
        .ok_or_else(|| bad("package for the application"))?;
    // Dependencies by id: normal and build dependencies (baked data comes
    // from build dependencies), not dev-dependencies.
    let deps: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|node| {
            let id = node["id"].as_str()?;
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"].as_array().is_some_and(|kinds| {
                        kinds.iter().any(|k| k["kind"].as_str() != Some("dev"))
                    })
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((id, deps))
        })
        .collect();
    let mut reachable = BTreeSet::new();
    let mut stack = vec![app];
    while let Some(id) = stack.pop() {
        for &dep in deps.get(id).into_iter().flatten() {
            if reachable.insert(dep) {
                stack.push(dep);
            }
        }
    }
    let placed: BTreeMap<&str, (&serde_json::Value, &str)> = packages
        .iter()
        .filter_map(|p| {
            let id = p["id"].as_str()?;
            let lamina = &p["metadata"]["lamina"];
            let has_place = lamina.get("over").is_some() || lamina.get("provides").is_some();
            (reachable.contains(id) && has_place).then_some((id, (lamina, p["name"].as_str()?)))
        })
        .collect();
    let direct: BTreeSet<&str> = deps.get(app).into_iter().flatten().copied().collect();
    let mut libraries: Vec<Library> = placed
        .iter()
        .map(|(&id, &(lamina, name))| Library {
            name: name.to_owned(),
            over: strings(lamina.get("over")),
            provides: strings(lamina.get("provides")),
            uses: deps
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|dep| placed.get(dep).map(|(_, n)| (*n).to_owned()))
                .collect(),
            direct: direct.contains(id),
        })
        .collect();
    libraries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(line: &str) -> Device {
        Device::parse(line).unwrap()
    }

    fn library(name: &str, over: &[&str], provides: &[&str], direct: bool) -> Library {
        Library {
            name: name.into(),
            over: over.iter().map(|s| s.to_string()).collect(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
            uses: Vec::new(),
            direct,
        }
    }

    fn echo() -> Graph {
        Graph {
            app: "echo".into(),
            devices: vec![device("console Console"), device("service Stack")],
            libraries: Vec::new(),
        }
    }

    #[test]
    fn text_graph_lists_each_device_and_its_implementation() {
        let text = describe(&echo(), Target::Unix, false);
        assert_eq!(
            text,
            "echo on unix\n\
             ├─ Console → standard output\n\
             └─ Stack \"service\" → host sockets (the kernel's TCP/IP)\n"
        );
        let hvt = describe(&echo(), Target::Hvt, false);
        assert!(hvt.contains(
            "└─ Stack \"service\" → lamina-net (smoltcp): TCP, UDP, IPv4, IPv6, DHCP → Solo5 net \"service\" → tap"
        ));
    }

    /// Figure 3's shape: application → http → tls → stack → netif, and a
    /// store over a block device.
    #[test]
    fn libraries_sit_between_the_application_and_its_devices() {
        let mut http = library("http", &["TcpStream", "Clock"], &[], true);
        http.uses = vec![];
        let graph = Graph {
            app: "web".into(),
            devices: vec![
                device("clock Clock"),
                device("service Stack"),
                device("storage Store/Block"),
            ],
            libraries: vec![
                http,
                library("tls", &["TcpStream"], &["TcpStream"], false),
                library("kv", &["Store"], &[], true),
            ],
        };
        let text = describe(&graph, Target::Spt, false);
        let stack = "Stack \"service\" → lamina-net (smoltcp): TCP, UDP, IPv4, IPv6, DHCP → Solo5 net \"service\" → tap (--net:service=TAP) or user-mode (lamina run --port)";
        let expected = [
            "web on spt".to_owned(),
            "├─ http (over TcpStream, Clock)".to_owned(),
            "│  ├─ Clock → clock_gettime(2), pinned by seccomp".to_owned(),
            "│  └─ tls (over TcpStream) (gives TcpStream)".to_owned(),
            format!("│     └─ {stack}"),
            "└─ kv (over Store)".to_owned(),
            "   └─ Store \"storage\" → Block \"storage\" → Solo5 block \"storage\" → file (--block:storage=FILE)".to_owned(),
            String::new(),
        ]
        .join("\n");
        assert_eq!(text, expected);
    }

    #[test]
    fn dot_graph_has_one_node_per_step_and_the_edges_between() {
        let dot = describe(&echo(), Target::Unix, true);
        assert!(dot.starts_with("digraph \"echo on unix\" {"), "{dot}");
        assert!(dot.contains("n0 [label=\"echo (unix)\", shape=ellipse];"));
        assert!(dot.contains("n3 [label=\"Stack \\\"service\\\"\", style=bold];"));
        for edge in ["n0 -> n1;", "n1 -> n2;", "n0 -> n3;", "n3 -> n4;"] {
            assert!(dot.contains(edge), "{edge} in {dot}");
        }
        assert_eq!(dot.matches("->").count(), 4);
        assert!(dot.trim_end().ends_with('}'));
    }

    #[test]
    fn reads_library_places_from_cargo_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "app", "name": "app", "manifest_path": "/nonexistent/app/Cargo.toml", "metadata": null},
                {"id": "http", "name": "lamina-http", "manifest_path": "/x", "metadata": {"lamina": {"over": ["Stack", "Clock"]}}},
                {"id": "tls", "name": "tls", "manifest_path": "/y", "metadata": {"lamina": {"over": ["TcpStream"], "provides": ["TcpStream"]}}},
                {"id": "log", "name": "log", "manifest_path": "/z", "metadata": null},
                {"id": "bench", "name": "bench", "manifest_path": "/b", "metadata": {"lamina": {"over": ["Stack"]}}},
            ],
            "resolve": {"nodes": [
                {"id": "app", "deps": [
                    {"pkg": "http", "dep_kinds": [{"kind": null}]},
                    {"pkg": "bench", "dep_kinds": [{"kind": "dev"}]},
                ]},
                {"id": "http", "deps": [
                    {"pkg": "tls", "dep_kinds": [{"kind": null}]},
                    {"pkg": "log", "dep_kinds": [{"kind": null}]},
                ]},
                {"id": "tls", "deps": []},
                {"id": "log", "deps": []},
                {"id": "bench", "deps": []},
            ]}
        });
        let libraries = libraries_in(&metadata, Path::new("/nonexistent/app/Cargo.toml")).unwrap();
        assert_eq!(
            libraries,
            [
                Library {
                    name: "lamina-http".into(),
                    over: vec!["Stack".into(), "Clock".into()],
                    provides: vec![],
                    uses: vec!["tls".into()],
                    direct: true,
                },
                Library {
                    name: "tls".into(),
                    over: vec!["TcpStream".into()],
                    provides: vec!["TcpStream".into()],
                    uses: vec![],
                    direct: false,
                },
            ]
        );
    }
}
