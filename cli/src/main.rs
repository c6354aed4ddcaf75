//! `lamina`: create, build, run and describe Lamina applications.
//!
//! The tool is the "configure" step of MirageOS: it picks the
//! implementations of the chosen target and drives cargo. The devices an
//! application uses are declared once, in its source (`lamina::devices!`),
//! which builds them into the program; the tool reads them back from there.
#![deny(unsafe_code)]

mod backtrace;
mod build;
mod declared;
mod describe;
mod disk;
mod guest;
mod inspect;
mod jitsu;
mod net;
mod new;
mod oci;
mod project;
mod provenance;
mod publish;
mod replace;
mod run;
mod size;
mod store;
// fork/exec set-up, kill and waitid for the application's process.
#[allow(unsafe_code)]
mod supervise;
mod tls;
mod trace;
mod usernet;
mod verify;

use clap::{Parser, Subcommand};
use guest::Profile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Build targets, from development process to unikernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// An ordinary Linux process on std and host sockets.
    Unix,
    /// A unikernel in a seccomp-sandboxed process (lamina-spt).
    Spt,
    /// A unikernel in a KVM virtual machine (lamina-hvt).
    Hvt,
    /// A unikernel booted by QEMU or Firecracker with virtio drivers.
    Virtio,
}

impl Target {
    /// The target asked for, or the best this machine runs: hvt where
    /// /dev/kvm can be opened, spt otherwise. Says which and why.
    pub fn resolve(asked: Option<Target>) -> Target {
        if let Some(target) = asked {
            return target;
        }
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            Ok(_) => {
                eprintln!("lamina: no --target given: using hvt (/dev/kvm is usable)");
                Target::Hvt
            }
            Err(e) => {
                eprintln!("lamina: no --target given: using spt (/dev/kvm: {e})");
                Target::Spt
            }
        }
    }

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Target::Unix => "unix",
            Target::Spt => "spt",
            Target::Hvt => "hvt",
            Target::Virtio => "virtio",
        }
    }
}

#[derive(Parser)]
#[command(
    name = "lamina",
    version,
    about = "Build and run Lamina unikernels",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new application from the template.
    New {
        /// Name of the application (and of its directory).
        name: String,
        /// Create it in this directory instead of ./NAME.
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Build an application for a target.
    Build {
        /// Where it will run [default: hvt where /dev/kvm works, else spt;
        /// virtio with --disk].
        #[arg(long, short, value_enum)]
        target: Option<Target>,
        /// Optimised build.
        #[arg(long, short)]
        release: bool,
        /// Full debug information (variables, arguments, types, for
        /// gdb's `print`), not only the line tables that name functions
        /// and file:line; slower to build (unikernel targets; `lamina run
        /// --gdb` implies it).
        #[arg(long)]
        full_debuginfo: bool,
        /// Also write a bootable raw disk image (virtio only): GRUB and the
        /// kernel, with the boot arguments after `--` baked in.
        #[arg(long)]
        disk: bool,
        /// Where to write the disk image [default: beside the kernel, .img].
        #[arg(long, short, requires = "disk")]
        output: Option<PathBuf>,
        /// Print how much of the image each crate contributes (text,
        /// rodata, data+bss, baked files), from its symbols.
        #[arg(long)]
        size: bool,
        /// The application: a directory, or the name of one of Lamina's examples.
        #[arg(default_value = ".")]
        app: String,
        /// Boot arguments baked into the disk image, after `--`.
        #[arg(last = true, requires = "disk")]
        boot_args: Vec<String>,
    },
    /// Build an application and run it.
    Run {
        /// Where to run it [default: hvt where /dev/kvm works, else spt].
        #[arg(long, short, value_enum)]
        target: Option<Target>,
        /// User-mode networking (spt, hvt, virtio): forward 127.0.0.1:HOST
        /// to the unikernel's GUEST port, TCP unless /udp follows, no root
        /// or tap needed. Repeatable.
        #[arg(long = "port", value_name = "HOST:GUEST[/udp]")]
        ports: Vec<lamina_usernet::Forward>,
        /// A disk image as block device NAME, on every target; with SIZE
        /// (like 256M), an absent FILE is created with that many zero
        /// bytes. Repeatable. (The same as `-- --block:NAME=FILE`.)
        #[arg(long = "block", value_name = "NAME=FILE[:SIZE]")]
        blocks: Vec<run::BlockArg>,
        /// The QEMU machine (virtio): microvm (virtio-mmio) or q35 (a PC
        /// with virtio-pci).
        #[arg(long, value_enum, default_value = "microvm")]
        machine: run::Machine,
        /// Guest memory in MiB (spt, hvt, virtio).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=4096))]
        mem: u64,
        /// Optimised build.
        #[arg(long, short)]
        release: bool,
        /// Full debug information (variables, arguments, types, for
        /// gdb's `print`), not only the line tables that name functions
        /// and file:line; slower to build (unikernel targets; `lamina run
        /// --gdb` implies it).
        #[arg(long)]
        full_debuginfo: bool,
        /// Seconds the application gets to stop after lamina forwards it a
        /// SIGTERM, SIGINT or SIGHUP, before it is killed.
        #[arg(long, value_name = "SECONDS", default_value_t = supervise::DEFAULT_GRACE.as_secs_f64(),
              value_parser = parse_seconds)]
        stop_timeout: f64,
        /// Record a trace of the whole stack (tasks, wake-ups, network,
        /// requests) and write it to FILE when the application ends, as
        /// Chrome trace-event JSON for ui.perfetto.dev.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Write an ELF core file of a unikernel that faults or panics
        /// into DIR (spt, hvt), for `gdb IMAGE CORE`.
        #[arg(long, value_name = "DIR")]
        dumpcore: Option<PathBuf>,
        /// hvt: stop the unikernel before its first instruction and serve
        /// gdb on 127.0.0.1:PORT (`gdb IMAGE -ex 'target remote :PORT'`).
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        gdb: Option<u16>,
        /// The application: a directory, or the name of one of Lamina's examples.
        #[arg(default_value = ".")]
        app: String,
        /// Boot arguments for the application, after `--`.
        #[arg(last = true)]
        boot_args: Vec<String>,
    },
    /// Create or remove a tap device for unikernels (needs root).
    Net {
        #[command(subcommand)]
        action: NetAction,
    },
    /// Summon unikernels on demand: a DNS server that boots the unikernel
    /// behind a name when it is asked for, and stops it when idle.
    #[command(args_conflicts_with_subcommands = true)]
    Jitsu {
        #[command(subcommand)]
        action: Option<JitsuAction>,
        /// The configuration (TOML): the services, their names and
        /// addresses (see examples/jitsu/jitsu.toml).
        config: Option<PathBuf>,
    },
    /// Certificates for serving HTTPS in development.
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
    /// The key-value store of a disk image (lamina-store): make one,
    /// list, read and change it, check it.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Export a recording (FILE.lmtrace, written by `lamina run --trace`)
    /// as Chrome trace-event JSON, as a self-contained HTML page, or both.
    #[command(group(clap::ArgGroup::new("outputs").required(true).multiple(true).args(["output", "html"])))]
    Trace {
        /// The recording.
        recording: PathBuf,
        /// Where to write the JSON (for ui.perfetto.dev or speedscope).
        #[arg(long, short, value_name = "OUT.json")]
        output: Option<PathBuf>,
        /// Where to write the HTML view: a row per task with its polls,
        /// wake-up arrows and TCP counters, zoomable, needing no network.
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
    },
    /// Build an application into an OCI image for urunc (Kubernetes):
    /// the unikernel, urunc's annotations and /urunc.json, and a disk
    /// image if it declares the block device `storage`.
    Oci {
        /// The monitor urunc starts it with: solo5-hvt (lamina-hvt) or
        /// solo5-spt (lamina-spt).
        #[arg(long, short, value_enum, default_value = "hvt")]
        target: oci::Monitor,
        /// Optimised build.
        #[arg(long, short)]
        release: bool,
        /// An OCI image layout directory; a name ending in .tar gives a
        /// tar of one (for skopeo's oci-archive:, ctr images import and
        /// docker load).
        #[arg(long, short, value_name = "OUT")]
        output: PathBuf,
        /// The image's name and tag [default: lamina/APP:latest].
        #[arg(long, value_name = "NAME[:TAG]")]
        tag: Option<String>,
        /// The size of the blank disk image for the block device
        /// `storage` (bytes, or with K, M, G or T).
        #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = store::parse_size)]
        storage_size: u64,
        /// Ship this disk image as the block device `storage` instead of a
        /// blank one.
        #[arg(long, value_name = "FILE", conflicts_with = "storage_size")]
        storage: Option<PathBuf>,
        /// The application: a directory, or the name of one of Lamina's examples.
        #[arg(default_value = ".")]
        app: String,
        /// Boot arguments for the application (the image's command), after `--`.
        #[arg(last = true)]
        boot_args: Vec<String>,
    },
    /// Show what an image says about itself: ABI and manifest (as Solo5's
    /// elftool does), Lamina's notes, the build provenance, the memory
    /// layout and the sealed sections. Reads Solo5 images too.
    Inspect {
        /// The unikernel image.
        image: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print the size report instead: how much each crate contributes
        /// (from IMAGE.debug beside a stripped release image).
        #[arg(long)]
        size: bool,
    },
    /// Rebuild an image from the provenance it records and compare:
    /// "identical", or the first difference. Exits 1 if they differ.
    Verify {
        /// The unikernel image (built by lamina build).
        image: PathBuf,
        /// The source checkout to rebuild from, at the recorded commit
        /// [default: the git checkout holding the current directory].
        source: Option<PathBuf>,
        /// Build in this target directory instead of a fresh temporary one
        /// (faster when it holds an earlier build; a fresh one is the
        /// honest check).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
    },
    /// Show the application's device graph for a target.
    Describe {
        /// For which target.
        #[arg(long, short, value_enum, default_value = "unix")]
        target: Target,
        /// Print Graphviz DOT instead of text.
        #[arg(long)]
        dot: bool,
        /// The application: a directory, or the name of one of Lamina's examples.
        #[arg(default_value = ".")]
        app: String,
    },
}

#[derive(Subcommand)]
enum JitsuAction {
    /// Print the running daemon's status: each service, its state, boots,
    /// time from summons to listening, memory.
    Status {
        /// The daemon's configuration.
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Make an empty store on IMAGE, replacing what it held.
    Format {
        /// The disk image (a file).
        image: PathBuf,
        /// Create IMAGE (or truncate it) with this size: bytes, or a number
        /// with K, M, G or T [default: keep the file's size].
        #[arg(long, value_parser = store::parse_size)]
        size: Option<u64>,
    },
    /// List the keys that start with PREFIX, with their sizes in bytes.
    Ls {
        /// The disk image.
        image: PathBuf,
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Print the value of KEY (or write it to a file).
    Get {
        /// The disk image.
        image: PathBuf,
        /// The key.
        key: String,
        /// Write the value here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Store FILE (or stdin) under KEY, durably.
    Put {
        /// The disk image.
        image: PathBuf,
        /// The key.
        key: String,
        /// The value [default: stdin].
        file: Option<PathBuf>,
    },
    /// Remove KEYs: all of them, or none if one is missing.
    Rm {
        /// The disk image.
        image: PathBuf,
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Check the store: its structure, and every value against its
    /// checksums. Exits 1 if anything is damaged.
    Fsck {
        /// The disk image.
        image: PathBuf,
    },
}

#[derive(Subcommand)]
enum TlsAction {
    /// Make a certificate and key for NAMEs (DNS names or IP addresses),
    /// signed by a local development CA that is made on first use and
    /// reused: DIR/NAME.crt and DIR/NAME.key, NAME the first one.
    DevCert {
        /// The names the certificate is for: DNS names (*.example.test
        /// for a wildcard) or IP addresses; the first names the files.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Where to write the certificate and key.
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        /// An RSA 2048 key instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
        /// How many days the certificate is valid.
        #[arg(long, default_value_t = 90,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(tls::MAX_DAYS)))]
        days: u32,
        /// The development CA's directory [default:
        /// $XDG_DATA_HOME/lamina/dev-ca, else ~/.local/share/lamina/dev-ca].
        #[arg(long, value_name = "DIR")]
        ca_dir: Option<PathBuf>,
        /// Replace the certificate and key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Print the development CA certificate's path (making the CA if
    /// needed), as in curl --cacert "$(lamina tls dev-ca)".
    DevCa {
        /// The development CA's directory [default: as for dev-cert].
        #[arg(long, value_name = "DIR")]
        ca_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum NetAction {
    /// Create a tap with a host address, up.
    Up {
        /// Tap device name.
        tap: String,
        /// Host side address, ADDR/PREFIX.
        #[arg(long, default_value = "10.0.0.1/24")]
        address: String,
        /// Create it inside this network namespace (created if missing).
        #[arg(long)]
        netns: Option<String>,
    },
    /// Remove a tap (and its namespace, if given).
    Down {
        /// Tap device name.
        tap: String,
        /// The namespace it is in; removed too.
        #[arg(long)]
        netns: Option<String>,
    },
}

/// A number of seconds, at least 0 and at most a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=86_400.0).contains(s))
        .ok_or_else(|| format!("'{text}': expected seconds from 0 to 86400, like 5 or 0.5"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New { name, path } => {
            new::create(&name, path.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Build {
            target,
            release,
            full_debuginfo,
            disk: false,
            size,
            app,
            ..
        } => project::Project::find(&app)
            .and_then(|project| {
                let target = Target::resolve(target);
                let built = build::build(
                    &project,
                    target,
                    Profile::of_options(release, full_debuginfo),
                )?;
                if size {
                    if target == Target::Unix {
                        return Err(CliError::Project(
                            "--size reports on unikernel images: pass -t spt, hvt or virtio".into(),
                        ));
                    }
                    inspect::print_size(built.debug.as_ref().unwrap_or(&built.artifact), false)?;
                }
                Ok(())
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Build {
            target,
            release,
            full_debuginfo,
            disk: true,
            output,
            app,
            size: _,
            boot_args,
        } => project::Project::find(&app)
            .and_then(|project| {
                let profile = Profile::of_options(release, full_debuginfo);
                build_disk(&project, target, profile, output, &boot_args)
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Run {
            target,
            machine,
            release,
            full_debuginfo,
            mem,
            ports,
            blocks,
            stop_timeout,
            trace,
            dumpcore,
            gdb,
            app,
            boot_args,
        } => project::Project::find(&app).and_then(|project| {
            let target = Target::resolve(target);
            let grace = std::time::Duration::from_secs_f64(stop_timeout);
            let guest = run::GuestArgs {
                ports,
                blocks,
                boot: boot_args,
                trace,
                dumpcore,
                gdb,
            };
            let profile = Profile::of_options(release, full_debuginfo);
            run::run(&project, target, machine, profile, mem, grace, guest)
        }),
        Command::Net { action } => match action {
            NetAction::Up {
                tap,
                address,
                netns,
            } => net::up(&tap, &address, netns.as_deref()),
            NetAction::Down { tap, netns } => net::down(&tap, netns.as_deref()),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Jitsu { action, config } => match (action, config) {
            (Some(JitsuAction::Status { config }), _) => jitsu::status(&config),
            (None, Some(config)) => jitsu::run(&config),
            (None, None) => Err(CliError::Project(String::from(
                "lamina jitsu CONFIG: give the configuration file, like examples/jitsu/jitsu.toml",
            ))),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Tls { action } => match action {
            TlsAction::DevCert {
                names,
                dir,
                rsa,
                days,
                ca_dir,
                force,
            } => tls::dev_cert(&tls::DevCertRequest {
                names,
                dir,
                rsa,
                days,
                ca_dir,
                force,
            }),
            TlsAction::DevCa { ca_dir } => tls::dev_ca(ca_dir.as_deref()),
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Trace {
            recording,
            output,
            html,
        } => output
            .map_or(Ok(()), |output| trace::export(&recording, &output))
            .and_then(|()| html.map_or(Ok(()), |html| trace::export_html(&recording, &html)))
            .map(|()| ExitCode::SUCCESS),
        Command::Store { action } => match action {
            StoreAction::Format { image, size } => store::format(&image, size),
            StoreAction::Ls { image, prefix } => {
                store::run(&image, store::Action::List { prefix: &prefix })
            }
            StoreAction::Get { image, key, output } => store::run(
                &image,
                store::Action::Get {
                    key: &key,
                    output: output.as_deref(),
                },
            ),
            StoreAction::Put { image, key, file } => store::run(
                &image,
                store::Action::Put {
                    key: &key,
                    input: file.as_deref(),
                },
            ),
            StoreAction::Rm { image, keys } => {
                store::run(&image, store::Action::Remove { keys: &keys })
            }
            StoreAction::Fsck { image } => store::run(&image, store::Action::Check),
        },
        Command::Oci {
            target,
            release,
            output,
            tag,
            storage_size,
            storage,
            app,
            boot_args,
        } => project::Project::find(&app)
            .and_then(|project| {
                let request = oci::OciRequest {
                    monitor: target,
                    release,
                    output,
                    reference: tag,
                    storage: storage.map_or(
                        oci::StorageImage::Blank(storage_size),
                        oci::StorageImage::File,
                    ),
                    boot_args,
                };
                oci::oci(&project, &request)
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Inspect { image, json, size } => if size {
            inspect::print_size(&guest::with_symbols(&image), json)
        } else {
            inspect::inspect(&image, json)
        }
        .map(|()| ExitCode::SUCCESS),
        Command::Verify {
            image,
            source,
            target_dir,
        } => verify::verify(&image, source.as_deref(), target_dir.as_deref()).map(|same| {
            if same {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Describe { target, dot, app } => project::Project::find(&app)
            .and_then(|project| describe_app(&project, target, dot))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lamina: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// `lamina describe`: builds the application as a process (its
/// declaration is the same on every target) to read the devices it
/// declares, and draws them with the libraries between.
fn describe_app(project: &project::Project, target: Target, dot: bool) -> Result<(), CliError> {
    let built = build::build(project, Target::Unix, Profile::new(false))?;
    let graph = describe::Graph {
        app: project.name.clone(),
        devices: declared::read(&built.artifact)?,
        libraries: describe::libraries(&project.dir)?,
    };
    print!("{}", describe::describe(&graph, target, dot));
    Ok(())
}

/// `lamina build --disk`: the virtio kernel, then its disk image.
fn build_disk(
    project: &project::Project,
    target: Option<Target>,
    profile: Profile,
    output: Option<PathBuf>,
    boot_args: &[String],
) -> Result<(), CliError> {
    if let Some(other) = target.filter(|&t| t != Target::Virtio) {
        return Err(CliError::Project(format!(
            "a disk image (--disk) holds a virtio kernel, not {}: use -t virtio",
            other.name()
        )));
    }
    disk::check_boot_args(boot_args)?;
    let built = build::build(project, Target::Virtio, profile)?;
    let out = output.unwrap_or_else(|| disk::default_path(&built.artifact));
    let size = disk::write(&built.artifact, &out, boot_args)?;
    eprintln!(
        "lamina: wrote the disk image {} ({} MiB: GRUB 2 and the kernel, raw, BIOS boot)",
        out.display(),
        size >> 20
    );
    Ok(())
}

/// Everything that can go wrong in a `lamina` command; each message says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The application directory has no usable Cargo.toml.
    #[error("{0}")]
    Project(String),
    /// The target cannot be built or run here yet.
    #[error("target '{target}' is not available yet: {why}")]
    TargetUnavailable {
        /// The target asked for.
        target: &'static str,
        /// What is missing.
        why: String,
    },
    /// A tool or file from a Debian package is missing.
    #[error("cannot find {what}: install the Debian package {package} (scripts/setup.sh does)")]
    MissingTool {
        /// What is missing, and the system's error.
        what: String,
        /// The package that provides it.
        package: &'static str,
    },
    /// cargo failed; its own output says why.
    #[error("build failed (cargo's messages are above)")]
    BuildFailed,
    /// A certificate or key could not be made, or the development CA's
    /// files are unusable; the message says which and what to do.
    #[error("{0}")]
    Tls(String),
    /// A store image could not be opened, or the store refused the
    /// operation; the message names the image and the key.
    #[error("{0}")]
    Store(String),
    /// A trace recording could not be read or exported.
    #[error("{0}")]
    Trace(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl CliError {
    /// The status `lamina` exits with: 2 for a request it cannot serve, 1 for
    /// a failure while serving it.
    fn exit_status(&self) -> u8 {
        match self {
            CliError::Project(_)
            | CliError::TargetUnavailable { .. }
            | CliError::MissingTool { .. } => 2,
            CliError::BuildFailed
            | CliError::Tls(_)
            | CliError::Store(_)
            | CliError::Trace(_)
            | CliError::Io { .. } => 1,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}

/// The bytes of the file `path` (an image, a recording): refused unless it
/// is a regular file, since a FIFO would block its opening until a writer
/// came and /dev/zero be read until memory ran out.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let what = || format!("cannot read {}", path.display());
    if !std::fs::metadata(path)
        .map_err(CliError::io(what()))?
        .is_file()
    {
        return Err(CliError::io(what())(std::io::Error::other(
            "not a regular file (a directory, FIFO or device)",
        )));
    }
    std::fs::read(path).map_err(CliError::io(what()))
}
