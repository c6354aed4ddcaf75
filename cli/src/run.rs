//! `lamina run`: build, start, report the start-up time, pass the exit status on.

use crate::backtrace::Watcher;
use crate::build::build;
use crate::declared::Device;
use crate::guest::{Debuginfo, Profile};
use crate::project::Project;
use crate::{CliError, Target};
use lamina_usernet::{Forward, ForwardError, Protocol};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The QEMU machine the virtio target boots on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Machine {
    /// `-M microvm`: virtio-mmio devices, no PCI, no firmware to speak of.
    #[default]
    Microvm,
    /// `-M q35`: a PC with PCI (virtio-pci devices) and SeaBIOS.
    Q35,
}

impl Machine {
    /// QEMU's `-M` value.
    fn qemu_machine(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm,acpi=off",
            Machine::Q35 => "q35",
        }
    }

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    /// A virtio device of `kind` (`net`, `blk`, `rng`) on this machine's
    /// bus, with its options: virtio-mmio on microvm; modern-only
    /// virtio-pci at PCI slot `slot` on q35, without an option ROM.
    fn device(self, kind: &str, slot: usize, options: &str) -> String {
        match self {
            Machine::Microvm => format!("virtio-{kind}-device{options}"),
            Machine::Q35 => {
                format!("virtio-{kind}-pci,disable-legacy=on,addr={slot:#x},romfile={options}")
            }
        }
    }
}

/// First PCI slot for the application's devices on q35 (slot 1 holds the
/// entropy device); 0x1f is the ICH9 LPC bridge.
const FIRST_SLOT: usize = 2;
const LAST_SLOT: usize = 0x1e;

/// QEMU's accelerator: KVM where /dev/kvm opens and is not KVM-PVM, else
/// software emulation (tcg); and why, for the message.
pub fn accelerator() -> (&'static str, String) {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        // KVM-PVM runs a guest started the ordinary way in KVM's
        // instruction emulator, which fails at its first SSE instruction.
        Ok(_) if Path::new("/sys/module/kvm_pvm").exists() => (
            "tcg",
            String::from(
                "software emulation (tcg): /dev/kvm is KVM-PVM, which cannot run an ordinary guest",
            ),
        ),
        Ok(_) => ("kvm", String::from("KVM acceleration (/dev/kvm is usable)")),
        Err(e) => ("tcg", format!("software emulation (tcg): /dev/kvm: {e}")),
    }
}

/// Device arguments that go to a tender rather than to the guest, so that
/// `-- --block:storage=disk.img` means the same on every target.
fn is_tender_arg(arg: &str) -> bool {
    [
        "--block:",
        "--block-sector-size:",
        "--net:",
        "--net-mac:",
        "--dumpcore=",
        "--gdb=",
    ]
    .iter()
    .any(|p| arg.starts_with(p))
}

/// Turns `--port HOST:GUEST[/tcp|/udp]` options into a user-mode network device
/// (`--net:NAME=user:...`: QEMU's on virtio, a lamina-usernet process on
/// spt and hvt, see [`crate::usernet`]) and the guest's address on it; on unix the application listens
/// on the host already, so only identical ports make sense there.
pub fn with_port_forwards(
    project: &Project,
    declared: &[Device],
    target: Target,
    forwards: &[Forward],
    mut boot_args: Vec<String>,
) -> Result<Vec<String>, CliError> {
    if forwards.is_empty() {
        return Ok(boot_args);
    }
    for (i, forward) in forwards.iter().enumerate() {
        let same_host_port = |other: &&Forward| {
            other.host_port == forward.host_port && other.protocol == forward.protocol
        };
        if let Some(other) = forwards[..i].iter().find(same_host_port) {
            return Err(CliError::Project(format!(
                "--port {forward} and --port {other} both forward host port {}; give each its own",
                forward.host_port
            )));
        }
        if target == Target::Unix && forward.host_port != forward.guest_port {
            return Err(CliError::Project(format!(
                "--port {forward}: on unix the application listens on the host itself; use the same port on both sides or --target spt/hvt"
            )));
        }
    }
    if target == Target::Unix {
        return Ok(boot_args);
    }
    let device = declared
        .iter()
        .find(|d| d.kind.manifest_kind() == Some("net"))
        .ok_or_else(|| {
            CliError::Project(format!(
                "--port: {} declares no network device (like service: Stack in lamina::devices!)",
                project.name
            ))
        })?;
    let specs: Vec<String> = forwards.iter().map(Forward::to_string).collect();
    boot_args.insert(0, format!("--net:{}=user:{}", device.name, specs.join(",")));
    // The user-mode network's addresses, unless the user gave their own
    // (added after the user's, they would override them).
    let given = |name: &str| {
        boot_args.iter().any(|a| {
            a.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
        })
    };
    let (address_given, gateway_given) = (given("--ipv4"), given("--ipv4-gateway"));
    if !address_given {
        boot_args.push("--ipv4=10.0.2.15/24".into());
        if !gateway_given {
            boot_args.push("--ipv4-gateway=10.0.2.2".into());
        }
    }
    eprintln!(
        "lamina: user-mode network: {}",
        forwards
            .iter()
            .map(|f| {
                let protocol = match f.protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                };
                format!(
                    "{protocol} 127.0.0.1:{} -> guest port {}",
                    f.host_port, f.guest_port
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(boot_args)
}

/// The command that runs the built artifact on `target`.
fn command_for(
    target: Target,
    machine: Machine,
    artifact: &Path,
    mem_mib: u64,
    boot_args: &[String],
    trace: Option<&Path>,
) -> Result<Command, CliError> {
    match target {
        Target::Unix => {
            let mut command = Command::new(artifact);
            command.args(boot_args);
            // A panic on unix is std's: with its backtrace, as a
            // unikernel's has one, unless the user chose otherwise.
            if std::env::var_os("RUST_BACKTRACE").is_none() {
                command.env("RUST_BACKTRACE", "1");
            }
            Ok(command)
        }
        Target::Spt | Target::Hvt => {
            let tender = crate::build::tender(target)?;
            let (tender_args, guest_args): (Vec<&String>, Vec<&String>) =
                boot_args.iter().partition(|a| is_tender_arg(a));
            let mut command = Command::new(tender);
            command.arg(format!("--mem={mem_mib}")).args(tender_args);
            if let Some(path) = trace {
                let mut arg = std::ffi::OsString::from("--trace=");
                arg.push(path);
                command.arg(arg);
            }
            command.arg("--").arg(artifact).args(guest_args);
            Ok(command)
        }
        Target::Virtio => qemu_command(machine, artifact, mem_mib, boot_args),
    }
}

/// The variable that names the QEMU binary to start.
pub const QEMU_VAR: &str = "LAMINA_QEMU";

/// The QEMU binary ([`QEMU_VAR`] overrides it).
pub fn qemu_binary() -> PathBuf {
    std::env::var_os(QEMU_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// QEMU booting the image directly (`-kernel`, through its PVH note) on
/// `machine`, the serial console on stdio, `isa-debug-exit` to pass the
/// guest's status out (see `lamina_abi::debug_exit`), and always a virtio-rng
/// device (the guest's entropy when the CPU has no RDRAND).
///
/// KVM acceleration where it can run the guest, software emulation (tcg)
/// otherwise; it says which and why (see [`accelerator`]).
///
/// Device arguments become virtio devices, in order (see
/// [`virtio_devices`]). On microvm, without ACPI (`acpi=off`), QEMU
/// announces each virtio-mmio device on the kernel command line
/// (`virtio_mmio.device=...`, as Firecracker does), and
/// `virtio-mmio.force-legacy=false` makes them virtio 1.x devices. On q35
/// they are modern virtio-pci functions, which the guest finds on the bus.
fn qemu_command(
    machine: Machine,
    artifact: &Path,
    mem_mib: u64,
    boot_args: &[String],
) -> Result<Command, CliError> {
    let (device_args, guest_args): (Vec<&String>, Vec<&String>) =
        boot_args.iter().partition(|a| is_tender_arg(a));
    let devices = virtio_devices(machine, &device_args)?;
    let (accel, why) = accelerator();
    eprintln!("lamina: virtio: QEMU -M {} with {why}", machine.name());
    let mut command = Command::new(qemu_binary());
    command
        .args(["-M", machine.qemu_machine(), "-accel", accel, "-cpu", "max"])
        .arg("-m")
        .arg(mem_mib.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        // A guest that resets the machine (a triple fault) ends instead of
        // booting again, over and over.
        .arg("-no-reboot")
        .args(["-serial", "stdio", "-device", "isa-debug-exit"]);
    if machine == Machine::Microvm {
        command.args(["-global", "virtio-mmio.force-legacy=false"]);
    }
    command
        .args(&devices.qemu_args)
        .arg("-device")
        .arg(machine.device("rng", 1, ""))
        .arg("-kernel")
        .arg(artifact)
        .arg("-append")
        .arg(kernel_command_line(
            &devices
                .guest_words
                .into_iter()
                .chain(guest_args.into_iter().cloned())
                .collect::<Vec<_>>(),
        ))
        // QEMU would put a terminal on stdin into raw mode; the guest reads
        // no input.
        .stdin(Stdio::null());
    Ok(command)
}

/// QEMU's arguments for the device arguments, and the words that tell the
/// guest the devices' names in the same order.
#[derive(Debug, Default, PartialEq)]
struct VirtioDevices {
    qemu_args: Vec<String>,
    guest_words: Vec<String>,
}

/// Turns device arguments into virtio devices on `machine` (shown here for
/// microvm; q35 has the `-pci` devices, each at the next PCI slot):
///
/// - `--net:NAME=TAP`: a tap device (`-netdev tap` + `virtio-net-device`);
/// - `--net:NAME=user:HOST:GUEST,...`: QEMU's user-mode network (what
///   `--port` writes), 127.0.0.1:HOST forwarded to the guest's port GUEST,
///   the guest at 10.0.2.15/24;
/// - `--net-mac:NAME=MAC`: that device's MAC address;
/// - `--block:NAME=FILE`: a raw disk image (`-drive` + `virtio-blk-device`).
///
/// The guest gets `--net:NAME` / `--block:NAME` words in the order the
/// devices are attached, which is how it names what it finds.
fn virtio_devices(machine: Machine, args: &[&String]) -> Result<VirtioDevices, CliError> {
    let unavailable = |why: String| CliError::Project(format!("virtio: {why}"));
    let mut macs = Vec::new();
    for arg in args {
        if let Some(spec) = arg.strip_prefix("--net-mac:") {
            let Some((name, mac)) = spec.split_once('=') else {
                return Err(unavailable(format!("{arg}: expected --net-mac:NAME=MAC")));
            };
            // Checked here, as the tenders check it: QEMU would take a
            // group address (which the guest's stack refuses) and a comma
            // would add options of the operator's to the -device.
            match lamina_tender::args::parse_mac(mac) {
                Some(bytes) if bytes[0] & 1 == 0 && bytes != [0; 6] => {}
                _ => {
                    return Err(unavailable(format!(
                        "{arg}: expected a unicast MAC address like 02:00:00:00:00:01"
                    )))
                }
            }
            if macs.iter().any(|(n, _)| n == name) {
                return Err(unavailable(format!(
                    "{arg}: device '{name}' given a MAC twice"
                )));
            }
            macs.push((name.to_string(), mac.to_string()));
        }
    }
    let mut devices = VirtioDevices::default();
    for arg in args {
        let (kind, spec) = if let Some(spec) = arg.strip_prefix("--net:") {
            ("net", spec)
        } else if let Some(spec) = arg.strip_prefix("--block:") {
            ("block", spec)
        } else if arg.starts_with("--net-mac:") {
            continue;
        } else {
            return Err(unavailable(format!(
                "{arg}: not a device argument QEMU's virtio devices take (--net:NAME=TAP, --net-mac:NAME=MAC, --block:NAME=FILE)"
            )));
        };
        let (name, host) = spec.split_once('=').unwrap_or((spec, ""));
        let valid_name =
            !name.is_empty() && name.len() <= 67 && name.chars().all(|c| c.is_ascii_alphanumeric());
        let bad_tap = kind == "net" && host.contains(',') && !host.starts_with("user:");
        if !valid_name || host.is_empty() || bad_tap {
            return Err(unavailable(format!(
                "{arg}: expected --{kind}:NAME={} (NAME of letters and digits)",
                if kind == "net" { "TAP" } else { "FILE" }
            )));
        }
        let id = format!("{kind}-{name}");
        // QEMU would refuse the second with "Duplicate ID".
        if devices.guest_words.contains(&format!("--{kind}:{name}")) {
            return Err(unavailable(format!("{arg}: device '{name}' given twice")));
        }
        let slot = FIRST_SLOT + devices.guest_words.len();
        if machine == Machine::Q35 && slot > LAST_SLOT {
            return Err(unavailable(format!(
                "{arg}: at most {} devices fit on q35's PCI bus",
                LAST_SLOT - FIRST_SLOT + 1
            )));
        }
        let q = &mut devices.qemu_args;
        if kind == "net" {
            q.push("-netdev".into());
            q.push(match host.strip_prefix("user:") {
                Some(ports) => {
                    user_netdev(&id, ports).map_err(|why| unavailable(format!("{arg}: {why}")))?
                }
                None => format!("tap,id={id},ifname={host},script=no,downscript=no"),
            });
            let mut options = format!(",netdev={id}");
            if let Some((_, mac)) = macs.iter().find(|(n, _)| n == name) {
                options.push_str(&format!(",mac={mac}"));
            }
            q.extend(["-device".into(), machine.device("net", slot, &options)]);
        } else {
            q.push("-drive".into());
            // QEMU's option syntax doubles a comma inside a value.
            q.push(format!(
                "if=none,id={id},format=raw,file={}",
                host.replace(',', ",,")
            ));
            q.extend([
                "-device".into(),
                machine.device("blk", slot, &format!(",drive={id}")),
            ]);
        }
        devices.guest_words.push(format!("--{kind}:{name}"));
    }
    Ok(devices)
}

/// Refuses device arguments for devices `app` does not declare and taps
/// that do not exist or are down, before QEMU starts.
fn check_virtio_devices(app: &str, declared: &[Device], args: &[String]) -> Result<(), CliError> {
    let declared: Vec<String> = declared
        .iter()
        .filter_map(|d| Some(format!("{}:{}", d.kind.manifest_kind()?, d.name)))
        .collect();
    for arg in args {
        let Some((kind, spec)) = arg
            .strip_prefix("--net:")
            .map(|s| ("net", s))
            .or_else(|| arg.strip_prefix("--block:").map(|s| ("block", s)))
        else {
            continue;
        };
        let (name, host) = spec.split_once('=').unwrap_or((spec, ""));
        if !declared.contains(&format!("{kind}:{name}")) {
            return Err(CliError::Project(format!(
                "virtio: {arg}: {app} declares no {kind} device '{name}' (it declares: {})",
                if declared.is_empty() {
                    String::from("none")
                } else {
                    declared.join(", ")
                }
            )));
        }
        if kind == "net" && !host.starts_with("user:") {
            let flags = std::fs::read_to_string(format!("/sys/class/net/{host}/flags"));
            let up = flags
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
                .map(|f| f & 1 != 0);
            match up {
                None => {
                    return Err(CliError::Project(format!(
                        "virtio: {arg}: no interface {host}; create it with `lamina net up {host}` or `ip tuntap add {host} mode tap`"
                    )))
                }
                Some(false) => {
                    return Err(CliError::Project(format!(
                        "virtio: {arg}: {host} is down; bring it up with `ip link set {host} up`"
                    )))
                }
                Some(true) => {}
            }
        }
    }
    Ok(())
}

/// `-netdev user` forwarding 127.0.0.1:HOST to the guest's GUEST for each
/// `HOST:GUEST[/tcp|/udp]` in `ports` (TCP unless `/udp`), as lamina-usernet
/// does on spt and hvt.
fn user_netdev(id: &str, ports: &str) -> Result<String, String> {
    let mut netdev = format!("user,id={id},net=10.0.2.0/24,host=10.0.2.2,restrict=on");
    for spec in ports.split(',') {
        let forward: Forward = spec.parse().map_err(|e: ForwardError| e.to_string())?;
        let protocol = match forward.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        netdev.push_str(&format!(
            ",hostfwd={protocol}:127.0.0.1:{}-10.0.2.15:{}",
            forward.host_port, forward.guest_port
        ));
    }
    Ok(netdev)
}

/// Boot arguments as one kernel command line, quoted so that the guest's
/// splitter (whitespace separates, quotes group, backslash escapes) gives
/// back the same words.
fn kernel_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || "'\"\\".contains(c)) {
                a.clone()
            } else {
                let mut quoted = String::from("\"");
                for c in a.chars() {
                    if c == '"' || c == '\\' {
                        quoted.push('\\');
                    }
                    quoted.push(c);
                }
                quoted.push('"');
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A disk for `lamina run --block NAME=FILE[:SIZE]`: FILE as block
/// device NAME, made (all zeroes, SIZE bytes) when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockArg {
    /// The device's name as the application declares it (`storage`).
    pub name: String,
    /// The image.
    pub file: PathBuf,
    /// The size to create the image with when it is absent.
    pub size: Option<u64>,
}

impl std::str::FromStr for BlockArg {
    type Err = String;

    fn from_str(spec: &str) -> Result<BlockArg, String> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected NAME=FILE or NAME=FILE:SIZE"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{spec:?}: a device name is letters, digits and _"));
        }
        // A colon followed by a size ends the spec; any other colon is part
        // of the file's name.
        let (file, size) = match rest.rsplit_once(':') {
            Some((file, size)) if size.starts_with(|c: char| c.is_ascii_digit()) => {
                let size = crate::store::parse_size(size)?;
                if size == 0 {
                    return Err(format!("{spec:?}: the size must not be 0"));
                }
                (file, Some(size))
            }
            _ => (rest, None),
        };
        if file.is_empty() {
            return Err(format!("{spec:?}: no file"));
        }
        Ok(BlockArg {
            name: name.to_owned(),
            file: PathBuf::from(file),
            size,
        })
    }
}

impl BlockArg {
    /// Makes the image if it is absent and a size was given, and returns
    /// the device argument every target takes (`--block:NAME=FILE`).
    pub fn prepare(&self) -> Result<String, CliError> {
        let file = &self.file;
        match (file.exists(), self.size) {
            (true, _) => {}
            (false, Some(size)) => {
                let image = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(file)
                    .map_err(CliError::io(format!("creating {}", file.display())))?;
                // Written, not sparse: see `write_zeroes` (durable writes
                // then skip the host file system's block allocation).
                let start = std::time::Instant::now();
                if let Err(e) = lamina_core::device::write_zeroes(&image, size) {
                    // Not left behind short: the next run would take it as
                    // the disk.
                    let _ = std::fs::remove_file(file);
                    return Err(CliError::io(format!("writing {}", file.display()))(e));
                }
                eprintln!(
                    "lamina: created {} ({size} bytes of zeroes, written in {:.1?}) for block device {}",
                    file.display(),
                    start.elapsed(),
                    self.name
                );
            }
            (false, None) => {
                return Err(CliError::Project(format!(
                    "--block {}={}: no such file; add :SIZE (like :256M) to create it",
                    self.name,
                    file.display()
                )))
            }
        }
        Ok(format!("--block:{}={}", self.name, file.display()))
    }
}

/// What `lamina run` passes on to the application.
pub struct GuestArgs {
    /// User-mode port forwards (`--port HOST:GUEST[/udp]`).
    pub ports: Vec<Forward>,
    /// Disks (`--block NAME=FILE[:SIZE]`).
    pub blocks: Vec<BlockArg>,
    /// Boot arguments, after `--`.
    pub boot: Vec<String>,
    /// Where to write a trace of the run (`--trace FILE`).
    pub trace: Option<PathBuf>,
    /// Where a crashed unikernel's core file goes (`--dumpcore DIR`).
    pub dumpcore: Option<PathBuf>,
    /// Serve gdb on this port (`--gdb PORT`, hvt).
    pub gdb: Option<u16>,
}

/// Builds `project` for `target` with `profile` (with full debug
/// information when it serves gdb) and runs it with `guest`'s boot
/// arguments (and user-mode forwards of its ports), returning its exit
/// status.
/// SIGTERM, SIGINT and SIGHUP are forwarded to it, and it is killed if it
/// has not stopped `grace` later (see [`crate::supervise`]).
pub fn run(
    project: &Project,
    target: Target,
    machine: Machine,
    profile: Profile,
    mem_mib: u64,
    grace: Duration,
    guest: GuestArgs,
) -> Result<ExitCode, CliError> {
    if guest.gdb.is_some() && target != Target::Hvt {
        return Err(CliError::TargetUnavailable {
            target: target.name(),
            why: "--gdb is lamina-hvt's (the spt guest is a process: gdb -p; virtio: QEMU's -s)"
                .into(),
        });
    }
    // gdb's `print` wants the variables, not only the line tables.
    let profile = if guest.gdb.is_some() {
        Profile {
            debuginfo: Debuginfo::Full,
            ..profile
        }
    } else {
        profile
    };
    let built = build(project, target, profile)?;
    // What the application declares, as the compiler saw it.
    let declared = crate::declared::read(&built.artifact)?;
    let mut boot = guest
        .blocks
        .iter()
        .map(BlockArg::prepare)
        .collect::<Result<Vec<String>, CliError>>()?;
    boot.extend(guest.boot);
    let boot_args = with_port_forwards(project, &declared, target, &guest.ports, boot)?;
    let boot_args = &boot_args[..];
    if target == Target::Virtio {
        // The Solo5 tenders check devices against the image's manifest;
        // QEMU would attach anything (and, as root, create a missing tap).
        check_virtio_devices(&project.name, &declared, boot_args)?;
    }
    // On spt and hvt a user-mode network is a process beside the tender
    // (see `crate::usernet`); QEMU has its own.
    let mut boot_args = boot_args.to_vec();
    let mut user_networks = match target {
        Target::Spt | Target::Hvt => crate::usernet::UserNetworks::start(&mut boot_args)?,
        _ => crate::usernet::UserNetworks::default(),
    };
    let recording = guest
        .trace
        .as_ref()
        .map(|out| (crate::trace::recording_path(out), out.clone()));
    if let Some((recording, _)) = &recording {
        match target {
            Target::Unix => {}
            // The guest records into a ring on its heap: virtio's drains
            // it to QEMU's debug console, spt's to the file its tender
            // opened (--trace=FILE), and hvt's tender drains it.
            Target::Virtio | Target::Spt | Target::Hvt => {
                boot_args.push(format!("--trace-mib={}", crate::trace::ring_mib(mem_mib)))
            }
        }
        // A stale recording must not pass for this run's.
        let _ = std::fs::remove_file(recording);
    }
    if let Some(port) = guest.gdb {
        boot_args.push(format!("--gdb={port}"));
    }
    if let Some(dir) = &guest.dumpcore {
        match target {
            Target::Spt | Target::Hvt => {
                // A tender option: it goes before the image.
                boot_args.insert(0, format!("--dumpcore={}", dir.display()));
            }
            Target::Unix | Target::Virtio => {
                return Err(CliError::TargetUnavailable {
                    target: target.name(),
                    why: "--dumpcore is the spt and hvt tenders' (a unix application dumps core as any process does)".into(),
                })
            }
        }
    }
    let tender_trace = recording
        .as_ref()
        .filter(|_| matches!(target, Target::Spt | Target::Hvt))
        .map(|(recording, _)| recording.as_path());
    let mut command = command_for(
        target,
        machine,
        &built.artifact,
        mem_mib,
        &boot_args,
        tender_trace,
    )?;
    user_networks.pass_to(&mut command);
    if let Some((recording, _)) = &recording {
        match target {
            Target::Unix => {
                command.env("LAMINA_TRACE", recording);
            }
            Target::Virtio => {
                // The guest writes its recording to QEMU's debug console.
                let path = recording.to_string_lossy().replace(',', ",,");
                command
                    .arg("-chardev")
                    .arg(format!("file,id=lamina-trace,path={path}"))
                    .arg("-device")
                    .arg("isa-debugcon,iobase=0x402,chardev=lamina-trace");
            }
            Target::Spt | Target::Hvt => {}
        }
    }
    eprintln!("lamina: running {} on {}", project.name, target.name());
    let spawned = Instant::now();
    // No application reads input (a Console only writes), and in a process
    // group of its own it must not touch the terminal.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut supervised = crate::supervise::spawn(&mut command, &project.name, grace).map_err(
        CliError::io(format!("cannot start {}", built.artifact.display())),
    )?;
    user_networks.tender_started();
    let child = supervised.child();
    // The first byte on either stream marks the end of start-up.
    let first_output = Arc::new(Mutex::new(None::<Instant>));
    let forward = |mut from: Box<dyn Read + Send>, to_stdout: bool| {
        let first_output = first_output.clone();
        let target = target.name();
        // A unikernel's panic prints return addresses: name them. (On unix
        // std's own panic handler names its frames.)
        let mut backtraces = (target != "unix").then(|| Watcher::new(&built.artifact));
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                {
                    let mut first = first_output.lock().unwrap_or_else(|e| e.into_inner());
                    if first.is_none() {
                        let now = Instant::now();
                        *first = Some(now);
                        eprintln!(
                            "lamina: {target}: start-up took {:.2} ms (spawn to first output)",
                            (now - spawned).as_secs_f64() * 1e3
                        );
                    }
                }
                let written = if to_stdout {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&buf[..n]).and_then(|()| out.flush())
                } else {
                    std::io::stderr().lock().write_all(&buf[..n])
                };
                if written.is_err() {
                    break;
                }
                if let Some(watcher) = backtraces.as_mut() {
                    let mut err = std::io::stderr().lock();
                    for line in watcher.feed(&buf[..n]) {
                        let _ = writeln!(err, "{line}");
                    }
                }
            }
        })
    };
    let stdout = child.stdout.take().map(|s| forward(Box::new(s), true));
    let stderr = child.stderr.take().map(|s| forward(Box::new(s), false));
    let ended = supervised
        .wait()
        .map_err(CliError::io("cannot wait for the application"))?;
    let status = ended.status;
    // The application has ended: so does its network.
    drop(user_networks);
    for thread in [stdout, stderr].into_iter().flatten() {
        let _ = thread.join();
    }
    if let Some(signal) = ended.stopped_by {
        eprintln!(
            "lamina: {} stopped after {}",
            project.name,
            crate::supervise::signal_name(signal)
        );
    }
    if let Some((recording, out)) = recording {
        crate::trace::export(&recording, &out)?;
    }
    let code = match (status.code(), status.signal()) {
        (Some(code), _) if target == Target::Virtio => qemu_exit_status(code, ended.stopped_by),
        (Some(code), _) => code,
        (None, Some(signal)) => {
            // Not a status QEMU chose, so not the guest's either: a death
            // by signal N is 128 + N on every target.
            eprintln!("lamina: {} was killed by signal {signal}", project.name);
            128 + signal
        }
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `lamina run`'s status for QEMU's exit `code` (QEMU exited, not killed):
/// the guest's status if it wrote one to the debug-exit port, else 128 + N
/// if QEMU stopped on signal N that lamina forwarded, else QEMU's failure.
fn qemu_exit_status(code: i32, stopped_by: Option<i32>) -> i32 {
    match (lamina_abi::debug_exit::guest_status(code), stopped_by) {
        (Some(status), _) => status,
        // QEMU ends with 0 on SIGTERM, SIGINT and SIGHUP: stopped, as
        // the other targets are, by that signal.
        (None, Some(signal)) if code == 0 => 128 + signal,
        (None, _) => {
            eprintln!(
                "lamina: QEMU exited with {code} without the guest's status (QEMU failed, or was stopped)"
            );
            if code == 0 {
                1
            } else {
                code
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_lines_keep_words() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            kernel_command_line(&args(&["--times=2", "-v"])),
            "--times=2 -v"
        );
        assert_eq!(
            kernel_command_line(&args(&["--greeting=Hi there", r#"a"b\c"#, ""])),
            r#""--greeting=Hi there" "a\"b\\c" """#
        );
    }

    #[test]
    fn device_arguments_become_virtio_devices_in_order() {
        let args: Vec<String> = [
            "--block:storage=disk,1.img",
            "--net-mac:service=02:00:00:00:00:01",
            "--net:service=tap0",
            "--net:admin=user:8080:80,5353:53/udp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let devices = virtio_devices(Machine::Microvm, &args.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(
            devices.guest_words,
            ["--block:storage", "--net:service", "--net:admin"]
        );
        assert_eq!(
            devices.qemu_args,
            [
                "-drive",
                "if=none,id=block-storage,format=raw,file=disk,,1.img",
                "-device",
                "virtio-blk-device,drive=block-storage",
                "-netdev",
                "tap,id=net-service,ifname=tap0,script=no,downscript=no",
                "-device",
                "virtio-net-device,netdev=net-service,mac=02:00:00:00:00:01",
                "-netdev",
                "user,id=net-admin,net=10.0.2.0/24,host=10.0.2.2,restrict=on,\
                 hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53",
                "-device",
                "virtio-net-device,netdev=net-admin",
            ]
        );
    }

    #[test]
    fn q35_gets_modern_pci_devices_in_slot_order() {
        let args: Vec<String> = ["--net:service=tap0", "--block:storage=disk.img"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let devices = virtio_devices(Machine::Q35, &args.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(devices.guest_words, ["--net:service", "--block:storage"]);
        assert_eq!(
            devices.qemu_args,
            [
                "-netdev",
                "tap,id=net-service,ifname=tap0,script=no,downscript=no",
                "-device",
                "virtio-net-pci,disable-legacy=on,addr=0x2,romfile=,netdev=net-service",
                "-drive",
                "if=none,id=block-storage,format=raw,file=disk.img",
                "-device",
                "virtio-blk-pci,disable-legacy=on,addr=0x3,romfile=,drive=block-storage",
            ]
        );
        let many: Vec<String> = (0..30).map(|i| format!("--block:d{i}=x.img")).collect();
        let error = virtio_devices(Machine::Q35, &many.iter().collect::<Vec<_>>())
            .unwrap_err()
            .to_string();
        assert!(error.contains("--block:d29=x.img"), "{error}");
        assert!(virtio_devices(Machine::Microvm, &many.iter().collect::<Vec<_>>()).is_ok());
    }

    #[test]
    fn bad_device_arguments_are_refused() {
        for bad in [
            "--net:service",
            "--net:=tap0",
            "--net:ser-vice=tap0",
            "--net:service=tap0,x",
            "--net:service=user:80",
            "--block-sector-size:storage=4096",
            "--net-mac:service",
            "--net-mac:service=01:00:5e:00:00:01",
            "--net-mac:service=02:00:00:00:00:01,romfile=x",
        ] {
            let arg = bad.to_string();
            let error = virtio_devices(Machine::Q35, &[&arg])
                .unwrap_err()
                .to_string();
            assert!(error.contains(bad), "{bad}: {error}");
        }
        for twice in [
            ["--block:storage=a.img", "--block:storage=b.img"],
            [
                "--net-mac:service=02:00:00:00:00:01",
                "--net-mac:service=02:00:00:00:00:02",
            ],
        ] {
            let args = twice.map(String::from);
            let error = virtio_devices(Machine::Microvm, &args.iter().collect::<Vec<_>>())
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("{}: device", twice[1])), "{error}");
        }
    }

    #[test]
    fn block_arguments_parse_and_make_their_image() {
        let arg: BlockArg = "storage=kv.img:256M".parse().unwrap();
        assert_eq!(arg.name, "storage");
        assert_eq!(arg.file, PathBuf::from("kv.img"));
        assert_eq!(arg.size, Some(256 << 20));
        let arg: BlockArg = "storage=a:b.img".parse().unwrap();
        assert_eq!((arg.file.to_str(), arg.size), (Some("a:b.img"), None));
        for bad in [
            "storage",
            "=x.img",
            "st-orage=x",
            "storage=",
            "storage=x:0",
            "storage=x:9Q",
        ] {
            assert!(bad.parse::<BlockArg>().is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        let absent = BlockArg {
            name: "storage".into(),
            file: file.clone(),
            size: None,
        };
        let error = absent.prepare().unwrap_err().to_string();
        assert!(error.contains("add :SIZE"), "{error}");
        let sized = BlockArg {
            size: Some(1 << 20),
            ..absent
        };
        let word = sized.prepare().unwrap();
        assert_eq!(word, format!("--block:storage={}", file.display()));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 20);
        // An existing image is used as it is, never resized.
        std::fs::write(&file, b"x").unwrap();
        sized.prepare().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }
}
