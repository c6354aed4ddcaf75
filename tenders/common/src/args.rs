//! The tender command line, as Solo5's tenders take it:
//!
//! ```text
//! TENDER [--mem=MiB] [--block:NAME=FILE] [--block-sector-size:NAME=N]
//!        [--net:NAME=TAP|fd:N] [--net-mac:NAME=MAC] [--help] [--version]
//!        [--] IMAGE [GUEST ARGS...]
//! ```
//!
//! Options come before the image; the first argument that does not start
//! with `-` (or the one after `--`) is the image, and everything after it
//! belongs to the guest, joined by single spaces into its command line.

use lamina_abi::mft::valid_name;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use thiserror::Error;

/// Default guest memory, in MiB.
pub const DEFAULT_MEM_MIB: u64 = 512;

/// Why the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgsError {
    /// An option the tender does not know.
    #[error("unknown option '{0}'")]
    Unknown(String),
    /// A known option with a bad value.
    #[error("invalid option '{option}': {why}")]
    Malformed {
        /// The argument as given.
        option: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The same device was named twice by one option.
    #[error("'{option}' names device '{name}' a second time")]
    Duplicate {
        /// The option.
        option: &'static str,
        /// The device.
        name: String,
    },
    /// `--mem` asks for more memory than the host has.
    #[error("invalid option '--mem={mib}': more than this host's {host_mib} MiB of memory")]
    MemoryExceedsHost {
        /// What was asked for, in MiB.
        mib: u64,
        /// The host's physical memory, in MiB.
        host_mib: u64,
    },
    /// No image was given.
    #[error("no unikernel image given")]
    MissingImage,
    /// The guest arguments do not fit the guest's command-line buffer.
    #[error("guest command line too long ({len} bytes, at most {max})")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// `--block:NAME=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockArg {
    /// Manifest name.
    pub name: String,
    /// Backing file.
    pub path: PathBuf,
    /// `--block-sector-size:NAME=N`, if given.
    pub sector_size: Option<u64>,
}

/// `--net:NAME=TAP` or `--net:NAME=fd:N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetArg {
    /// Manifest name.
    pub name: String,
    /// Host tap interface, or `fd:N`.
    pub tap: String,
    /// `--net-mac:NAME=MAC`, if given.
    pub mac: Option<[u8; 6]>,
}

/// A parsed command line that runs a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenderArgs {
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Block devices to attach.
    pub blocks: Vec<BlockArg>,
    /// Sector sizes given before (or without) their `--block`.
    pub sector_sizes: Vec<(String, u64)>,
    /// Network devices to attach.
    pub nets: Vec<NetArg>,
    /// MACs given for network devices.
    pub macs: Vec<(String, [u8; 6])>,
    /// Where to record the guest's trace (`--trace=FILE`), if anywhere.
    pub trace: Option<PathBuf>,
    /// Tender-specific flags that were given (from the `extra` list).
    pub flags: Vec<&'static str>,
    /// `--dumpcore=DIR`: where a crashed guest's core file goes.
    pub dumpcore: Option<PathBuf>,
    /// `--gdb=PORT`: serve gdb on 127.0.0.1:PORT (lamina-hvt only).
    pub gdb_port: Option<u16>,
    /// The unikernel image.
    pub image: PathBuf,
    /// The guest command line (without NUL).
    pub cmdline: Vec<u8>,
}

/// What the command line asks for.
// One value per process, parsed once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a guest.
    Run(TenderArgs),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// The tender's command line, or the exit status to end with: `--help` and
/// `--version` are answered here (status 0), a bad argument is reported
/// with the usage (status [`TENDER_USAGE`](crate::TENDER_USAGE)).
/// `flags` are the tender's own boolean flags with their help lines.
pub fn command_line(tender: &str, flags: &[(&'static str, &str)]) -> Result<TenderArgs, u8> {
    let extra: Vec<&'static str> = flags.iter().map(|(flag, _)| *flag).collect();
    match parse(std::env::args_os().skip(1), &extra) {
        Ok(Command::Run(parsed)) => Ok(parsed),
        Ok(Command::Help) => {
            // The tenders run without std's runtime, which would flush
            // stdout at exit.
            let mut stdout = std::io::stdout();
            let _ = write!(stdout, "{}", usage(tender, flags)).and_then(|()| stdout.flush());
            Err(0)
        }
        Ok(Command::Version) => {
            let mut stdout = std::io::stdout();
            let _ = write!(stdout, "{}", version(tender)).and_then(|()| stdout.flush());
            Err(0)
        }
        Err(error) => {
            eprintln!("{tender}: {error}\n\n{}", usage(tender, flags));
            Err(crate::TENDER_USAGE as u8)
        }
    }
}

/// `--version`'s answer, on stdout, as Solo5's tenders give it: Albatross
/// runs `solo5-hvt --version` before it deploys an image and looks on
/// stdout for a line that is exactly `ABI version N`, N the image's.
pub fn version(tender: &str) -> String {
    format!(
        "{tender} version {}\nABI version {}\n",
        env!("CARGO_PKG_VERSION"),
        lamina_abi::hvt::ABI_VERSION
    )
}

/// Parses the arguments after the program name. `extra` lists the
/// tender's own boolean flags (`--x-timing`, ...).
pub fn parse<I>(args: I, extra: &[&'static str]) -> Result<Command, ArgsError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let mut parsed = TenderArgs {
        mem_mib: DEFAULT_MEM_MIB,
        blocks: Vec::new(),
        sector_sizes: Vec::new(),
        nets: Vec::new(),
        macs: Vec::new(),
        trace: None,
        flags: Vec::new(),
        dumpcore: None,
        gdb_port: None,
        image: PathBuf::new(),
        cmdline: Vec::new(),
    };
    // The options that take one value, once each.
    let mut given: Vec<&'static str> = Vec::new();
    let image = loop {
        let Some(arg) = args.next() else {
            return Err(ArgsError::MissingImage);
        };
        if arg == "--" {
            break args.next().ok_or(ArgsError::MissingImage)?;
        }
        if !arg.as_bytes().starts_with(b"-") {
            break arg;
        }
        let text = arg.to_string_lossy().into_owned();
        match option(&text, &mut parsed, &mut given, extra)? {
            Some(command) => return Ok(command),
            None => continue,
        }
    };
    parsed.image = PathBuf::from(image);
    let guest: Vec<Vec<u8>> = args.map(OsString::into_vec).collect();
    parsed.cmdline = guest.join(&b' ');
    let max = lamina_abi::CMDLINE_SIZE - 1;
    if parsed.cmdline.len() > max {
        return Err(ArgsError::CmdlineTooLong {
            len: parsed.cmdline.len(),
            max,
        });
    }
    for (name, size) in std::mem::take(&mut parsed.sector_sizes) {
        match parsed.blocks.iter_mut().find(|b| b.name == name) {
            Some(block) => block.sector_size = Some(size),
            None => parsed.sector_sizes.push((name, size)),
        }
    }
    for (name, mac) in std::mem::take(&mut parsed.macs) {
        match parsed.nets.iter_mut().find(|n| n.name == name) {
            Some(net) => net.mac = Some(mac),
            None => parsed.macs.push((name, mac)),
        }
    }
    Ok(Command::Run(parsed))
}

/// Handles one option; `Some` for options that end parsing.
fn option(
    arg: &str,
    parsed: &mut TenderArgs,
    given: &mut Vec<&'static str>,
    extra: &[&'static str],
) -> Result<Option<Command>, ArgsError> {
    let malformed = |why| ArgsError::Malformed {
        option: arg.to_string(),
        why,
    };
    match arg {
        "--help" | "-h" => return Ok(Some(Command::Help)),
        "--version" => return Ok(Some(Command::Version)),
        _ => {}
    }
    // A second --mem= would silently win over the first: a conflict
    // (a wrapper's default and the operator's) is the operator's to settle.
    for once in ["--mem=", "--gdb=", "--dumpcore=", "--trace="] {
        if arg.starts_with(once) {
            if given.contains(&once) {
                return Err(malformed("given twice"));
            }
            given.push(once);
        }
    }
    if let Some(flag) = extra.iter().find(|f| **f == arg) {
        parsed.flags.push(flag);
        return Ok(None);
    }
    if let Some(value) = arg.strip_prefix("--mem=") {
        let mib: u64 = value
            .parse()
            .map_err(|_| malformed("expected a number of MiB"))?;
        if mib == 0 {
            return Err(malformed("guest memory must be at least 1 MiB"));
        }
        // A guest's memory is reserved lazily, so an order of magnitude
        // too many (a typo) would start and be killed by the OOM killer
        // later, far from its cause.
        if let Some(host) = crate::sys::host_memory_bytes() {
            if mib.saturating_mul(1 << 20) > host {
                return Err(ArgsError::MemoryExceedsHost {
                    mib,
                    host_mib: host >> 20,
                });
            }
        }
        parsed.mem_mib = mib;
        return Ok(None);
    }
    if let Some(port) = arg.strip_prefix("--gdb=") {
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| malformed("expected a TCP port, 1 to 65535"))?;
        parsed.gdb_port = Some(port);
        return Ok(None);
    }
    if let Some(dir) = arg.strip_prefix("--dumpcore=") {
        if dir.is_empty() {
            return Err(malformed("expected a directory"));
        }
        parsed.dumpcore = Some(PathBuf::from(dir));
        return Ok(None);
    }
    if let Some(path) = arg.strip_prefix("--trace=") {
        if path.is_empty() {
            return Err(malformed("expected a file name"));
        }
        parsed.trace = Some(PathBuf::from(path));
        return Ok(None);
    }
    let Some((key, value)) = arg.split_once('=') else {
        return Err(ArgsError::Unknown(arg.to_string()));
    };
    let Some((option, name)) = key.split_once(':') else {
        return Err(ArgsError::Unknown(arg.to_string()));
    };
    let (option, known): (&'static str, bool) = match option {
        "--block" => ("--block", true),
        "--block-sector-size" => ("--block-sector-size", true),
        "--net" => ("--net", true),
        "--net-mac" => ("--net-mac", true),
        _ => ("", false),
    };
    if !known {
        return Err(ArgsError::Unknown(arg.to_string()));
    }
    if !valid_name(name) {
        return Err(malformed("device names are 1 to 67 letters and digits"));
    }
    let name = name.to_string();
    let duplicate = |taken: bool| {
        if taken {
            Err(ArgsError::Duplicate {
                option,
                name: name.clone(),
            })
        } else {
            Ok(())
        }
    };
    match option {
        "--block" => {
            duplicate(parsed.blocks.iter().any(|b| b.name == name))?;
            if value.is_empty() {
                return Err(malformed("expected a file name"));
            }
            parsed.blocks.push(BlockArg {
                name,
                path: PathBuf::from(value),
                sector_size: None,
            });
        }
        "--block-sector-size" => {
            duplicate(parsed.sector_sizes.iter().any(|(n, _)| *n == name))?;
            let size: u64 = value
                .parse()
                .map_err(|_| malformed("expected a number of bytes"))?;
            if !size.is_power_of_two() || !(512..=32768).contains(&size) {
                return Err(malformed(
                    "the sector size must be a power of two from 512 to 32768",
                ));
            }
            parsed.sector_sizes.push((name, size));
        }
        "--net" => {
            duplicate(parsed.nets.iter().any(|n| n.name == name))?;
            // `fd:N` and (refused when the device opens, with directions)
            // `user:...` are not interface names.
            let not_a_name = value.starts_with("fd:") || value.starts_with("user:");
            if value.is_empty() || (!not_a_name && value.len() >= libc::IFNAMSIZ) {
                return Err(malformed(
                    "expected a tap interface name of 1 to 15 characters, or fd:N",
                ));
            }
            parsed.nets.push(NetArg {
                name,
                tap: value.to_string(),
                mac: None,
            });
        }
        _ => {
            duplicate(parsed.macs.iter().any(|(n, _)| *n == name))?;
            let mac = parse_mac(value)
                .ok_or_else(|| malformed("expected a MAC address like 02:00:00:00:00:01"))?;
            // The guest's stack asserts its own address is unicast
            // (smoltcp's `Hardware address ... is not unicast`, in
            // `Interface::new`): a group address would end the guest.
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return Err(malformed(
                    "expected a unicast MAC address (the first byte even, not all zeros)",
                ));
            }
            parsed.macs.push((name, mac));
        }
    }
    Ok(None)
}

/// Parses `xx:xx:xx:xx:xx:xx` (hex).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        // Two hex digits: `from_str_radix` alone also takes a sign (`+2`).
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Usage text for `tender` (its name); `extra` lines describe its own flags.
pub fn usage(tender: &str, extra: &[(&str, &str)]) -> String {
    let mut text = format!(
        "usage: {tender} [ CORE OPTIONS ] [ BLOCK OPTIONS ] [ NET OPTIONS ] [ -- ] IMAGE [ GUEST ARGS... ]\n\
         \n\
         Runs the unikernel IMAGE; GUEST ARGS become its command line.\n\
         \n\
         Core options:\n\
         \x20 [ --mem=MiB ] guest memory in MiB (default {DEFAULT_MEM_MIB})\n\
         \x20 [ --dumpcore=DIR ] write an ELF core file of a guest that faults or aborts into DIR\n\
         \x20 [ --gdb=PORT ] (hvt) stop before the first instruction and serve gdb on 127.0.0.1:PORT\n\
         \x20 [ --help ] print this help and exit\n\
         \x20 [ --version ] print the version and exit\n\
         \x20 [ --trace=FILE ] record the guest's trace (lamina-trace's LMTRACE1 format) in FILE\n"
    );
    for (flag, what) in extra {
        text.push_str(&format!("  [ {flag} ] {what}\n"));
    }
    text.push_str(
        "Block options:\n\
         \x20 --block:NAME=FILE attach the block device NAME to FILE\n\
         \x20 [ --block-sector-size:NAME=N ] its sector size (a power of two >= 512, default 512)\n\
         Net options:\n\
         \x20 --net:NAME=TAP attach the network device NAME to the tap interface TAP\n\
         \x20 --net:NAME=fd:N or to the inherited descriptor N: a SOCK_SEQPACKET or\n\
         \x20     SOCK_DGRAM socket (one frame per datagram, e.g. lamina-usernet's) or an\n\
         \x20     open tap (IFF_TAP | IFF_NO_PI)\n\
         \x20 [ --net-mac:NAME=MAC ] its MAC address (default: random, locally administered)\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, ArgsError> {
        parse(args.iter().map(OsString::from), &["--x-timing"])
    }

    /// Issue 18: `from_str_radix` accepts a leading `+`, so `+2:...` passed.
    #[test]
    fn macs_are_six_pairs_of_hex_digits() {
        assert_eq!(
            parse_mac("02:0a:FF:00:10:01"),
            Some([2, 0x0a, 0xff, 0, 0x10, 1])
        );
        for bad in [
            "+2:00:00:00:00:01",
            "02:00:00:00:00:+1",
            "-2:00:00:00:00:01",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:00:00:00:00:01",
            "0x:00:00:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert!(run(&["--net-mac:service=+2:00:00:00:00:01", "image"]).is_err());
        // Well-formed but not a station's address: the guest's stack
        // would panic on it.
        for group in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            let refused = run(&[&format!("--net-mac:service={group}"), "image"]).unwrap_err();
            assert!(
                refused.to_string().contains("unicast MAC"),
                "{group}: {refused}"
            );
        }
    }

    fn ok(args: &[&str]) -> TenderArgs {
        match run(args) {
            Ok(Command::Run(parsed)) => parsed,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn devices_image_and_guest_args() {
        let parsed = ok(&[
            "--mem=64",
            "--block-sector-size:storage=4096",
            "--block:storage=disk.img",
            "--net:service=tap0",
            "--net-mac:service=02:00:00:00:00:2a",
            "--x-timing",
            "--trace=run.lmtrace",
            "kernel.hvt",
            "--ipv4=10.0.0.2/24",
            "hello",
            "--mem=1",
        ]);
        assert_eq!(parsed.mem_mib, 64);
        assert_eq!(parsed.blocks[0].sector_size, Some(4096));
        assert_eq!(parsed.blocks[0].path, PathBuf::from("disk.img"));
        assert_eq!(parsed.nets[0].mac, Some([2, 0, 0, 0, 0, 0x2a]));
        assert_eq!(parsed.flags, ["--x-timing"]);
        assert_eq!(parsed.trace, Some(PathBuf::from("run.lmtrace")));
        assert_eq!(parsed.image, PathBuf::from("kernel.hvt"));
        assert_eq!(parsed.cmdline, b"--ipv4=10.0.0.2/24 hello --mem=1");
        assert!(parsed.sector_sizes.is_empty() && parsed.macs.is_empty());
    }

    #[test]
    fn urunc_s_command_line_for_a_solo5_image() {
        // urunc joins its pieces with spaces and splits the string at each
        // one: with no guest arguments, the last word is empty.
        let parsed = ok(&[
            "--mem=256",
            "--net:service=tap0_urunc",
            "--block:storage=/unikernel/storage.img",
            "/unikernel/kv.hvt",
            "--ipv4=10.0.0.2/24",
            "--ipv4-gateway=10.0.0.1",
            "",
        ]);
        assert_eq!(parsed.mem_mib, 256);
        assert_eq!(parsed.nets[0].name, "service");
        assert_eq!(parsed.nets[0].tap, "tap0_urunc");
        assert_eq!(parsed.blocks[0].name, "storage");
        assert_eq!(parsed.image, PathBuf::from("/unikernel/kv.hvt"));
        assert_eq!(
            parsed.cmdline,
            b"--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1 "
        );
    }

    #[test]
    fn version_has_the_line_albatross_looks_for() {
        let text = version("lamina-hvt");
        assert!(text.starts_with("lamina-hvt version "), "{text}");
        assert_eq!(
            text.lines().filter(|l| *l == "ABI version 2").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn double_dash_and_defaults() {
        let parsed = ok(&["--", "-odd-name", "a"]);
        assert_eq!(parsed.image, PathBuf::from("-odd-name"));
        assert_eq!(parsed.mem_mib, DEFAULT_MEM_MIB);
        assert_eq!(parsed.cmdline, b"a");
        assert_eq!(ok(&["k"]).cmdline, b"");
        assert_eq!(run(&["--help", "k"]), Ok(Command::Help));
        assert_eq!(run(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn dumpcore_takes_a_directory() {
        assert_eq!(ok(&["k"]).dumpcore, None);
        let parsed = ok(&["--dumpcore=/tmp/cores", "k", "--dumpcore=guest's"]);
        assert_eq!(parsed.dumpcore, Some(PathBuf::from("/tmp/cores")));
        assert_eq!(parsed.cmdline, b"--dumpcore=guest's");
        assert!(matches!(
            run(&["--dumpcore=", "k"]),
            Err(ArgsError::Malformed { .. })
        ));
        assert_eq!(ok(&["--gdb=1234", "k"]).gdb_port, Some(1234));
        for bad in ["--gdb=", "--gdb=0", "--gdb=65536", "--gdb=x"] {
            assert!(
                matches!(run(&[bad, "k"]), Err(ArgsError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert_eq!(run(&[]), Err(ArgsError::MissingImage));
        assert_eq!(run(&["--mem=8"]), Err(ArgsError::MissingImage));
        assert_eq!(run(&["--"]), Err(ArgsError::MissingImage));
        assert!(matches!(
            run(&["--frobnicate", "k"]),
            Err(ArgsError::Unknown(_))
        ));
        assert!(matches!(
            run(&["--disk:a=b", "k"]),
            Err(ArgsError::Unknown(_))
        ));
        assert!(matches!(run(&["--block", "k"]), Err(ArgsError::Unknown(_))));
        for bad in [
            "--mem=lots",
            "--mem=0",
            "--mem=-1",
            "--block:has-dash=f",
            "--block:=f",
            "--block:a=",
            "--block-sector-size:a=1000",
            "--block-sector-size:a=256",
            "--net:a=",
            "--net:a=averyveryverylongname",
            "--net-mac:a=02:00:00:00:00",
            "--net-mac:a=02:00:00:00:00:0g",
            "--net-mac:a=02:00:00:00:00:00:00",
            "--trace=",
        ] {
            assert!(
                matches!(run(&[bad, "k"]), Err(ArgsError::Malformed { .. })),
                "{bad}"
            );
        }
        for twice in [
            ["--trace=a", "--trace=b"],
            ["--mem=64", "--mem=8"],
            ["--gdb=1234", "--gdb=1235"],
            ["--dumpcore=a", "--dumpcore=a"],
        ] {
            let refused = run(&[twice[0], twice[1], "k"]).unwrap_err();
            assert!(refused.to_string().contains("given twice"), "{twice:?}");
        }
        assert!(matches!(
            run(&["--block:a=x", "--block:a=y", "k"]),
            Err(ArgsError::Duplicate { .. })
        ));
        // More than the host has: refused with both sizes named.
        let host_mib = crate::sys::host_memory_bytes().unwrap() >> 20;
        let too_much = format!("--mem={}", host_mib + 1);
        let refused = run(&[&too_much, "k"]).unwrap_err();
        assert_eq!(
            refused,
            ArgsError::MemoryExceedsHost {
                mib: host_mib + 1,
                host_mib
            }
        );
        assert!(refused
            .to_string()
            .contains(&format!("more than this host's {host_mib} MiB")));
        let long = "x".repeat(8192);
        assert!(matches!(
            run(&["k", &long]),
            Err(ArgsError::CmdlineTooLong { .. })
        ));
        let just_fits = "x".repeat(8189);
        assert_eq!(ok(&["k", "a", &just_fits]).cmdline.len(), 8191);
    }

    #[test]
    fn usage_names_every_option() {
        let text = usage("lamina-hvt", &[("--x-timing", "print start-up timings")]);
        for option in [
            "--mem=",
            "--block:",
            "--block-sector-size:",
            "--net:",
            "--net-mac:",
            "--x-timing",
        ] {
            assert!(text.contains(option), "{option}");
        }
    }
}
