//! `lamina-usernet --link-fd=N [--listen-fd=M:GUEST[/tcp|/udp]...] HOST:GUEST[/tcp|/udp]...`:
//! the user-mode network as a process of its own, outside the tender (see
//! the library's description).
//!
//! Descriptor N, inherited open, is one end of a datagram socketpair whose
//! other end the tender has as the guest's network device
//! (`--net:NAME=fd:M`). Each `--listen-fd=M:GUEST` is an inherited
//! listening TCP socket (or, with `/udp`, a bound UDP socket) served as a
//! forward to the guest's port GUEST (`UserNet::adopt`); a socket of
//! another kind is refused with the reason. Once every forward listens, it prints `ready` on
//! standard output (its parent starts the guest only then, so that a port
//! already in use is an error before anything runs), sandboxes itself and
//! serves until the tender's end closes.

use lamina_usernet::{Event, Forward, ListenFd, Options, UserNet};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: lamina-usernet --link-fd=N [--listen-fd=M:GUEST[/tcp|/udp]...]\n\
    \x20                     [--boot-wait=SECONDS] [--guest-mac=MAC] [--events [--probe]]\n\
    \x20                     [HOST:GUEST[/tcp|/udp]...]\n\
    Serves a private network (gateway 10.0.2.2, guest 10.0.2.15/24) on the inherited\n\
    datagram socket N, forwarding each 127.0.0.1:HOST to the guest's port GUEST\n\
    (TCP unless /udp follows). Prints `ready` once every forward listens.\n\
    \x20 --listen-fd=M:GUEST  serves inherited socket M instead of one it binds: a\n\
    \x20                      listening TCP socket (/tcp, the default) or a bound UDP\n\
    \x20                      socket (/udp), connections and datagrams already queued\n\
    \x20                      on it included\n\
    \x20 --boot-wait=SECONDS  until the guest has answered a connection once, retry\n\
    \x20                      refused or unanswered connections to it for this long\n\
    \x20                      (default 30, 0 for none)\n\
    \x20 --guest-mac=MAC      the guest's MAC (the tender's --net-mac), so that the\n\
    \x20                      first SYN needs no ARP (else learned from its frames)\n\
    \x20 --events             after `ready`, print `up` when the guest first answers a\n\
    \x20                      connection and `active N` when the open TCP connections\n\
    \x20                      plus live UDP flows change to N\n\
    \x20 --probe              connect to the first TCP forward's guest port at once\n\
    \x20                      (closed once answered) to learn when the guest is up;\n\
    \x20                      UDP datagrams wait until then";

/// The command line.
#[derive(Debug)]
struct Config {
    /// The link's descriptor.
    link: RawFd,
    /// Ports to bind.
    forwards: Vec<Forward>,
    /// Inherited sockets to serve.
    listen_fds: Vec<ListenFd>,
    /// Boot tolerance, the guest's MAC, the probe.
    options: Options,
    /// Print events on standard output.
    events: bool,
}

/// Parses `--boot-wait`'s seconds: a non-negative number, at most a day.
fn parse_seconds(arg: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=86400.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{arg}: expected seconds, 0 to 86400"))
}

/// Parses a unicast MAC, `xx:xx:xx:xx:xx:xx` (hex).
fn parse_mac(arg: &str, text: &str) -> Result<[u8; 6], String> {
    let mac = lamina_tender::args::parse_mac(text)
        .ok_or_else(|| format!("{arg}: expected a MAC like 02:00:00:00:00:01"))?;
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(format!("{arg}: not a unicast MAC"));
    }
    Ok(mac)
}

/// Reads the command line.
fn parse(args: &[String]) -> Result<Config, String> {
    let mut link = None;
    let mut forwards = Vec::new();
    let mut listen_fds = Vec::new();
    let mut options = Options::default();
    let mut events = false;
    for arg in args {
        if let Some(number) = arg.strip_prefix("--link-fd=") {
            link = Some(
                number
                    .parse::<RawFd>()
                    .ok()
                    .filter(|&fd| fd > 2)
                    .ok_or_else(|| format!("{arg}: expected a descriptor number above 2"))?,
            );
        } else if let Some(spec) = arg.strip_prefix("--listen-fd=") {
            listen_fds.push(spec.parse::<ListenFd>().map_err(|e| e.to_string())?);
        } else if let Some(seconds) = arg.strip_prefix("--boot-wait=") {
            options.boot_wait = parse_seconds(arg, seconds)?;
        } else if let Some(mac) = arg.strip_prefix("--guest-mac=") {
            options.guest_mac = Some(parse_mac(arg, mac)?);
        } else if arg == "--events" {
            events = true;
        } else if arg == "--probe" {
            options.probe = true;
        } else if arg.starts_with('-') {
            return Err(format!("{arg}: unknown option"));
        } else {
            forwards.push(arg.parse::<Forward>().map_err(|e| e.to_string())?);
        }
    }
    let link = link.ok_or("--link-fd=N is required")?;
    if forwards.is_empty() && listen_fds.is_empty() {
        return Err(String::from(
            "no HOST:GUEST forward or --listen-fd=M:GUEST given",
        ));
    }
    let mut fds: Vec<RawFd> = listen_fds.iter().map(|l| l.fd).collect();
    fds.push(link);
    fds.sort_unstable();
    if let Some(twice) = fds.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("descriptor {} is given twice", twice[0]));
    }
    if options.probe {
        if !events {
            return Err(String::from("--probe reports with --events: give both"));
        }
        let tcp = |p: lamina_usernet::Protocol| p == lamina_usernet::Protocol::Tcp;
        if !forwards.iter().any(|f| tcp(f.protocol)) && !listen_fds.iter().any(|l| tcp(l.protocol))
        {
            return Err(String::from("--probe needs a TCP forward to connect to"));
        }
    }
    Ok(Config {
        link,
        forwards,
        listen_fds,
        options,
        events,
    })
}

/// Takes ownership of inherited descriptor `fd`, if it is open.
fn inherited(fd: RawFd, flag: &str) -> Result<OwnedFd, String> {
    // SAFETY: F_GETFD reads no memory; it fails on a number that is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(format!(
            "{flag}={fd}: not an open descriptor ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the descriptor is open, was inherited for this purpose, and
    // nothing else in this process owns it (parse refuses a number given
    // twice).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes the inherited link, refusing anything but a datagram or
/// sequenced-packet socket.
fn adopt_link(fd: RawFd) -> Result<OwnedFd, String> {
    let link = inherited(fd, "--link-fd")?;
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`; on a
    // non-socket it fails.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!(
            "--link-fd={fd}: not a socket ({})",
            std::io::Error::last_os_error()
        ));
    }
    if kind != libc::SOCK_SEQPACKET && kind != libc::SOCK_DGRAM {
        return Err(format!(
            "--link-fd={fd}: not a SOCK_SEQPACKET or SOCK_DGRAM socket"
        ));
    }
    // SAFETY: fcntl reads no memory. The link is non-blocking, as the
    // event loop expects, and is not passed on to anything else.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Ok(link)
}

/// Binds the forwards and adopts the inherited sockets, in that order.
fn listen(config: &Config) -> Result<UserNet, String> {
    let mut net = UserNet::bind(&config.forwards).map_err(|e| e.to_string())?;
    for listen in &config.listen_fds {
        let socket = inherited(listen.fd, "--listen-fd")?;
        net.adopt(socket, listen.guest_port, listen.protocol)
            .map_err(|e| format!("--listen-fd={}:{}: {e}", listen.fd, listen.guest_port))?;
    }
    Ok(net)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match parse(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("lamina-usernet: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let link = match adopt_link(config.link) {
        Ok(link) => link,
        Err(why) => {
            eprintln!("lamina-usernet: {why}");
            return ExitCode::from(2);
        }
    };
    let net = match listen(&config) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("lamina-usernet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A parent that does not wait for it has closed the pipe: no matter.
    let _ = writeln!(stdout, "ready").and_then(|()| stdout.flush());
    drop(stdout);
    let events = config.events;
    let report = move |event: Event| {
        if !events {
            return;
        }
        // Unbuffered, a line per write; a parent that stopped reading
        // (EPIPE: Rust ignores SIGPIPE) is no reason to stop serving.
        let line = match event {
            Event::Up => String::from("up\n"),
            Event::Active(n) => format!("active {n}\n"),
        };
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    };
    match lamina_usernet::run_with(net, link, config.options, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lamina-usernet: the user-mode network stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_mac};

    #[test]
    fn guest_macs_are_unicast_hex_pairs() {
        assert_eq!(
            parse_mac("--guest-mac", "02:0a:FF:00:10:01"),
            Ok([2, 0x0a, 0xff, 0, 0x10, 1])
        );
        for bad in [
            "+2:00:00:00:00:01",
            "02:00:00:00:00",
            "2:00:00:00:00:01",
            "",
        ] {
            let error = parse_mac("--guest-mac", bad).unwrap_err();
            assert!(error.contains("expected a MAC"), "{bad}: {error}");
        }
        for multicast in ["01:00:5e:00:00:01", "00:00:00:00:00:00"] {
            let error = parse_mac("--guest-mac", multicast).unwrap_err();
            assert!(error.contains("not a unicast MAC"), "{multicast}: {error}");
        }
    }

    #[test]
    fn command_lines_parse() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let config = parse(&args(&["--link-fd=5", "8080:80", "9090:90", "5353:53/udp"])).unwrap();
        assert_eq!(config.link, 5);
        assert_eq!(config.forwards.len(), 3);
        assert_eq!(config.forwards[2].protocol, lamina_usernet::Protocol::Udp);
        let config = parse(&args(&[
            "--link-fd=5",
            "--listen-fd=6:80",
            "--listen-fd=7:53/udp",
        ]))
        .unwrap();
        assert!(config.forwards.is_empty());
        assert_eq!(config.listen_fds.len(), 2);
        assert_eq!(config.listen_fds[1].fd, 7);
        assert_eq!(config.listen_fds[1].guest_port, 53);
        assert_eq!(config.listen_fds[1].protocol, lamina_usernet::Protocol::Udp);
        assert_eq!(config.options, lamina_usernet::Options::default());
        assert!(!config.events);
        let config = parse(&args(&[
            "--link-fd=5",
            "--listen-fd=6:80",
            "--boot-wait=2.5",
            "--guest-mac=02:0a:FF:00:10:01",
            "--events",
            "--probe",
        ]))
        .unwrap();
        assert_eq!(
            config.options.boot_wait,
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(
            config.options.guest_mac,
            Some([0x02, 0x0a, 0xff, 0x00, 0x10, 0x01])
        );
        assert!(config.options.probe && config.events);
        for bad in [
            &["8080:80"][..],
            &["--link-fd=5"],
            &["--link-fd=1", "8080:80"],
            &["--link-fd=x", "8080:80"],
            &["--link-fd=5", "8080"],
            &["--link-fd=5", "5353:53/sctp"],
            &["--bogus", "8080:80"],
            &["--link-fd=5", "--listen-fd=5:80"],
            &["--link-fd=5", "--listen-fd=6:80", "--listen-fd=6:81"],
            &["--link-fd=5", "--listen-fd=6"],
            &["--link-fd=5", "--listen-fd=1:80"],
            &["--link-fd=5", "8080:80", "--boot-wait=-1"],
            &["--link-fd=5", "8080:80", "--boot-wait=soon"],
            &["--link-fd=5", "8080:80", "--boot-wait=NaN"],
            &["--link-fd=5", "8080:80", "--guest-mac=01:00:00:00:00:01"],
            &["--link-fd=5", "8080:80", "--guest-mac=02:00:00:00:00"],
            &["--link-fd=5", "8080:80", "--guest-mac=02:00:00:00:00:+1"],
            &["--link-fd=5", "8080:80", "--probe"],
            &["--link-fd=5", "5353:53/udp", "--events", "--probe"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
