//! The daemon's configuration: a TOML file listing the services.
//!
//! ```toml
//! dns = "127.0.0.1:5353"      # where the daemon answers DNS (UDP and TCP)
//! upstream = "127.0.0.1:53"   # other names go here; without it: REFUSED
//! status = "127.0.0.1:5380"   # the status page (HTTP)
//! network = "user"            # or "tap" (root): see [`Network`]
//! # bridge = "ljitsu0"        # tap mode: the bridge the daemon creates,
//! # bridge-address = "10.77.0.1/24"   # and the host's address on it
//!
//! [[service]]
//! name = "www.lamina.test"
//! app = "../website"          # a project directory (or `image = "FILE"`)
//! address = "127.0.0.2"       # user mode: its own loopback address
//! ports = ["80"]              # "80", "8080:80", "53/udp"
//! ttl = 30                    # seconds; idle stop after twice this
//! # idle = 60                 # or say so
//! # stop = "pause"            # freeze when idle instead of stopping
//! # target = "spt"            # default: hvt where /dev/kvm works
//! # mem = 8                   # MiB (the website serves at full rate in 8)
//! # args = ["--log"]          # the guest's own boot arguments
//! # net = "service"           # its network device (the one it declares)
//! # boot-timeout = 5          # seconds to listen, else SERVFAIL
//! ```
//!
//! Every value is checked while the file is read, and a bad one is an
//! error naming its line, before anything starts.

use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// How clients reach the unikernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No root, tap or bridge: each service has a loopback address of its
    /// own whose ports the daemon listens on, and a lamina-usernet process
    /// carries the connections into the unikernel's private network.
    User,
    /// Root: the daemon owns a bridge and one tap per service; each
    /// service's address is on the bridge's network.
    Tap,
}

/// Where a service's unikernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Application {
    /// A project directory (or the name of one of Lamina's examples), built
    /// by `lamina jitsu` before the daemon starts.
    Project(String),
    /// A built image (a Lamina or Solo5 unikernel for the target).
    Image(PathBuf),
}

/// The tender a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// lamina-hvt: a KVM virtual machine.
    Hvt,
    /// lamina-spt: a seccomp-sandboxed process.
    Spt,
}

impl Target {
    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Hvt => "hvt",
            Target::Spt => "spt",
        }
    }
}

/// What happens to an idle unikernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// The tender is stopped; the next query boots a new unikernel.
    #[default]
    Destroy,
    /// The tender and its network are frozen (SIGSTOP) with their memory;
    /// the next query or connection resumes them, without a boot.
    Pause,
}

/// One forwarded port of a service: clients connect to the service's
/// address on `host_port`, the unikernel listens on `guest_port`.
pub type Port = lamina_usernet::Forward;

/// One service: a DNS name and the unikernel behind it.
#[derive(Debug, Clone)]
pub struct Service {
    /// The name, lowercase, without the final dot.
    pub name: String,
    /// The name in uncompressed DNS wire form, lowercase.
    pub wire_name: Vec<u8>,
    /// Where the unikernel comes from.
    pub app: Application,
    /// The image, once built (for [`Application::Image`], the file given).
    pub image: Option<PathBuf>,
    /// The tender.
    pub target: Option<Target>,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// The guest's own boot arguments (the network's are added).
    pub args: Vec<String>,
    /// The address DNS answers with: a loopback address (user mode) or an
    /// address on the bridge's network (tap mode).
    pub address: Ipv4Addr,
    /// Forwarded ports (user mode); in tap mode, the ports whose first
    /// connection shows the unikernel is up.
    pub ports: Vec<Port>,
    /// The network device's name in the image's manifest.
    pub net_device: String,
    /// TTL of the DNS answers.
    pub ttl: Duration,
    /// Stopped after this long with no query and no connection.
    pub idle: Duration,
    /// Destroy or pause when idle.
    pub stop: StopMode,
    /// A boot that has not reached "up" after this long failed.
    pub boot_timeout: Duration,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the daemon answers DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The resolver other names are forwarded to, if any.
    pub upstream: Option<SocketAddr>,
    /// Where the status page is served.
    pub status: SocketAddr,
    /// User-mode or tap networking.
    pub network: Network,
    /// Tap mode: the bridge's name.
    pub bridge: String,
    /// Tap mode: the bridge's (host's) address on the services' network.
    pub bridge_address: Ipv4Addr,
    /// Tap mode: the services' network prefix length.
    pub bridge_prefix: u8,
    /// The services, in the file's order.
    pub services: Vec<Service>,
    /// The file's directory: relative paths are from here.
    pub base: PathBuf,
}

/// A configuration that cannot be used: where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {why}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// Its line (1-based).
    pub line: usize,
    /// What is wrong and what to write instead.
    pub why: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    dns: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    network: Option<Network>,
    bridge: Option<Spanned<String>>,
    bridge_address: Option<Spanned<String>>,
    #[serde(default)]
    service: Vec<Spanned<FileService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileService {
    name: Spanned<String>,
    app: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    target: Option<Target>,
    #[serde(default = "default_mem")]
    mem: Spanned<u64>,
    #[serde(default)]
    args: Vec<String>,
    address: Spanned<String>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default = "default_net_device")]
    net: Spanned<String>,
    #[serde(default = "default_ttl")]
    ttl: Spanned<f64>,
    idle: Option<Spanned<f64>>,
    #[serde(default)]
    stop: StopMode,
    #[serde(default = "default_boot_timeout")]
    boot_timeout: Spanned<f64>,
}

fn default_mem() -> Spanned<u64> {
    Spanned::new(0..0, 8)
}
fn default_net_device() -> Spanned<String> {
    Spanned::new(0..0, String::from("service"))
}
fn default_ttl() -> Spanned<f64> {
    Spanned::new(0..0, 30.0)
}
fn default_boot_timeout() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}

/// The default DNS address: what `dig @127.0.0.1 -p 5353` asks.
pub const DEFAULT_DNS: &str = "127.0.0.1:5353";
/// The default status page address.
pub const DEFAULT_STATUS: &str = "127.0.0.1:5380";

impl Config {
    /// Reads and checks the configuration file at `path`.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let unreadable = |why: String| ConfigError {
            file: path.display().to_string(),
            line: 0,
            why: format!("cannot read it: {why}"),
        };
        // A FIFO would block the daemon's start until a writer came, and
        // /dev/zero be read until memory ran out.
        let metadata = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
        if !metadata.is_file() {
            return Err(unreadable(String::from(
                "not a regular file (a directory, FIFO or device)",
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &path.display().to_string(), &base)
    }

    /// Checks the configuration `text` (from `file`, for messages; relative
    /// paths from `base`).
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let at = |span: Range<usize>, why: String| ConfigError {
            file: file.to_string(),
            line: line_of(text, span.start),
            why,
        };
        let parsed: FileConfig = toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                why: e.message().to_string(),
            }
        })?;
        let address = |value: &Option<Spanned<String>>, default: &str| match value {
            None => Ok(default.parse::<SocketAddr>().expect("a valid default")),
            Some(v) => v.get_ref().parse::<SocketAddr>().map_err(|_| {
                at(
                    v.span(),
                    format!("'{}' is not ADDRESS:PORT, like 127.0.0.1:5353", v.get_ref()),
                )
            }),
        };
        let dns = address(&parsed.dns, DEFAULT_DNS)?;
        let status = address(&parsed.status, DEFAULT_STATUS)?;
        let upstream = match &parsed.upstream {
            None => None,
            Some(_) => Some(address(&parsed.upstream, DEFAULT_DNS)?),
        };
        let network = parsed.network.unwrap_or(Network::User);
        let bridge = match &parsed.bridge {
            None => String::from("ljitsu0"),
            Some(b) => {
                let name = b.get_ref();
                let valid = !name.is_empty()
                    && name.len() <= 10
                    && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
                if !valid {
                    return Err(at(
                        b.span(),
                        format!("bridge '{name}': 1-10 letters, digits or '-' (its taps are named after it)"),
                    ));
                }
                name.clone()
            }
        };
        let (bridge_address, bridge_prefix) = match &parsed.bridge_address {
            None => (Ipv4Addr::new(10, 77, 0, 1), 24),
            Some(b) => parse_cidr(b.get_ref()).ok_or_else(|| {
                at(
                    b.span(),
                    format!(
                        "bridge-address '{}' is not ADDRESS/PREFIX like 10.77.0.1/24",
                        b.get_ref()
                    ),
                )
            })?,
        };
        let mut services: Vec<Service> = Vec::new();
        for entry in &parsed.service {
            let service = check_service(entry.get_ref(), network, base, &at)?;
            let entry_line = |span: Range<usize>| if span.is_empty() { entry.span() } else { span };
            let s = entry.get_ref();
            if let Some(other) = services.iter().find(|o| o.name == service.name) {
                return Err(at(
                    s.name.span(),
                    format!("a second service named {}", other.name),
                ));
            }
            if let Some(other) = services.iter().find(|o| o.address == service.address) {
                return Err(at(
                    entry_line(s.address.span()),
                    format!(
                        "{} is {}'s address already: each service needs its own",
                        service.address, other.name
                    ),
                ));
            }
            if network == Network::Tap {
                let on_bridge = same_network(service.address, bridge_address, bridge_prefix);
                if !on_bridge || service.address == bridge_address {
                    return Err(at(
                        s.address.span(),
                        format!(
                            "{} is not a guest address on the bridge's network {bridge_address}/{bridge_prefix}",
                            service.address
                        ),
                    ));
                }
            }
            services.push(service);
        }
        if services.is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                line: line_of(text, text.len()),
                why: String::from("no [[service]]: add one with name, app (or image) and address"),
            });
        }
        Ok(Config {
            dns,
            upstream,
            status,
            network,
            bridge,
            bridge_address,
            bridge_prefix,
            services,
            base: base.to_path_buf(),
        })
    }
}

/// Checks one `[[service]]`.
fn check_service(
    s: &FileService,
    network: Network,
    base: &Path,
    at: &impl Fn(Range<usize>, String) -> ConfigError,
) -> Result<Service, ConfigError> {
    let name = s.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
    let wire_name = wire_name(&name).ok_or_else(|| {
        at(
            s.name.span(),
            format!(
                "'{}' is not a DNS name (labels of 1-63 letters, digits or '-', 253 bytes at most)",
                s.name.get_ref()
            ),
        )
    })?;
    let app = match (&s.app, &s.image) {
        (Some(app), None) => Application::Project(app.get_ref().clone()),
        (None, Some(image)) => Application::Image(base.join(image.get_ref())),
        (Some(app), Some(_)) => {
            return Err(at(
                app.span(),
                String::from(
                    "give app (a project to build) or image (a built unikernel), not both",
                ),
            ))
        }
        (None, None) => {
            return Err(at(
                s.name.span(),
                format!(
                    "service {name}: no app (a project directory) or image (a built unikernel)"
                ),
            ))
        }
    };
    let mem_mib = *s.mem.get_ref();
    if !(2..=4096).contains(&mem_mib) {
        return Err(at(
            s.mem.span(),
            format!("mem = {mem_mib}: guest memory is 2 to 4096 MiB"),
        ));
    }
    let address: Ipv4Addr = s.address.get_ref().parse().map_err(|_| {
        at(
            s.address.span(),
            format!("address '{}' is not an IPv4 address", s.address.get_ref()),
        )
    })?;
    if network == Network::User && !address.is_loopback() {
        return Err(at(
            s.address.span(),
            format!("address {address}: in user mode each service has a loopback address of its own, like 127.0.0.2"),
        ));
    }
    let mut ports = Vec::new();
    for port in &s.ports {
        let text = port.get_ref();
        // "80" means 80:80, "53/udp" 53:53/udp.
        let full = match text.split_once('/') {
            _ if text.contains(':') => text.clone(),
            Some((p, proto)) => format!("{p}:{p}/{proto}"),
            None => format!("{text}:{text}"),
        };
        let forward: Port = full
            .parse()
            .map_err(|e: lamina_usernet::ForwardError| at(port.span(), format!("ports: {e}")))?;
        if ports
            .iter()
            .any(|p: &Port| p.host_port == forward.host_port && p.protocol == forward.protocol)
        {
            return Err(at(port.span(), format!("ports: {text} twice")));
        }
        ports.push(forward);
    }
    if network == Network::User && ports.is_empty() {
        return Err(at(
            s.name.span(),
            format!("service {name}: no ports: in user mode clients reach the unikernel only on the ports listed, like ports = [\"80\"]"),
        ));
    }
    let net = s.net.get_ref();
    if net.is_empty() || net.len() > 67 || !net.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(at(
            s.net.span(),
            format!("net = '{net}': a device name is 1-67 letters or digits"),
        ));
    }
    let seconds = |v: &Spanned<f64>, what: &str, range: Range<f64>| {
        let s = *v.get_ref();
        if range.contains(&s) {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(at(
                v.span(),
                format!(
                    "{what} = {s}: expected seconds from {} to {}",
                    range.start, range.end
                ),
            ))
        }
    };
    let ttl = seconds(&s.ttl, "ttl", 0.0..86_400.0)?;
    let idle = match &s.idle {
        Some(idle) => seconds(idle, "idle", 0.0..172_800.0)?,
        None => ttl * 2,
    };
    let boot_timeout = seconds(&s.boot_timeout, "boot-timeout", 0.01..600.0)?;
    for arg in &s.args {
        if arg.starts_with("--net") || arg.starts_with("--ipv4") {
            return Err(at(
                s.name.span(),
                format!("args: {arg}: jitsu sets the network device and its addresses itself"),
            ));
        }
    }
    Ok(Service {
        name,
        wire_name,
        image: match &app {
            Application::Image(path) => Some(path.clone()),
            Application::Project(_) => None,
        },
        app,
        target: s.target,
        mem_mib,
        args: s.args.clone(),
        address,
        ports,
        net_device: net.clone(),
        ttl,
        idle,
        stop: s.stop,
        boot_timeout,
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `ADDRESS/PREFIX`.
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
    Some((address.parse().ok()?, prefix))
}

fn same_network(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX << (32 - u32::from(prefix));
    u32::from(a) & mask == u32::from(b) & mask
}

/// A host name (`www.lamina.test`) in uncompressed wire form, lowercase.
pub fn wire_name(name: &str) -> Option<Vec<u8>> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    Some(wire)
}

#[cfg(test)]
mod tests;
