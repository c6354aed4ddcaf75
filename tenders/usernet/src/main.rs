//! `lamina-usernet --link-fd=N HOST:GUEST[/tcp|/udp]...`: the user-mode network as a
//! process of its own, outside the tender (see the library's description).
//!
//! Descriptor N, inherited open, is one end of a datagram socketpair whose
//! other end the tender has as the guest's network device
//! (`--net:NAME=fd:M`). Once every forward listens, it prints `ready` on
//! standard output (its parent starts the guest only then, so that a port
//! already in use is an error before anything runs), sandboxes itself and
//! serves until the tender's end closes.

use lamina_usernet::Forward;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

const USAGE: &str = "usage: lamina-usernet --link-fd=N HOST:GUEST[/tcp|/udp] [HOST:GUEST...]\n\
    Serves a private network (gateway 10.0.2.2, guest 10.0.2.15/24) on the inherited\n\
    datagram socket N, forwarding each 127.0.0.1:HOST to the guest's port GUEST\n\
    (TCP unless /udp follows).";

/// The command line: the link's descriptor and the forwards.
fn parse(args: &[String]) -> Result<(RawFd, Vec<Forward>), String> {
    let mut link = None;
    let mut forwards = Vec::new();
    for arg in args {
        if let Some(number) = arg.strip_prefix("--link-fd=") {
            link = Some(
                number
                    .parse::<RawFd>()
                    .ok()
                    .filter(|&fd| fd > 2)
                    .ok_or_else(|| format!("{arg}: expected a descriptor number above 2"))?,
            );
        } else if arg.starts_with('-') {
            return Err(format!("{arg}: unknown option"));
        } else {
            forwards.push(arg.parse::<Forward>().map_err(|e| e.to_string())?);
        }
    }
    let link = link.ok_or("--link-fd=N is required")?;
    if forwards.is_empty() {
        return Err(String::from("no HOST:GUEST forward given"));
    }
    Ok((link, forwards))
}

/// Takes the inherited link, refusing anything but a datagram or
/// sequenced-packet socket.
fn adopt_link(fd: RawFd) -> Result<OwnedFd, String> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`; on a closed
    // number or a non-socket it fails.
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
            "--link-fd={fd}: not an open socket ({})",
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
    // SAFETY: the descriptor was inherited for this purpose and nothing
    // else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (fd, forwards) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("lamina-usernet: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let link = match adopt_link(fd) {
        Ok(link) => link,
        Err(why) => {
            eprintln!("lamina-usernet: {why}");
            return ExitCode::from(2);
        }
    };
    let net = match lamina_usernet::UserNet::bind(&forwards) {
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
    match lamina_usernet::run(net, link) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lamina-usernet: the user-mode network stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn command_lines_parse() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (fd, forwards) =
            parse(&args(&["--link-fd=5", "8080:80", "9090:90", "5353:53/udp"])).unwrap();
        assert_eq!(fd, 5);
        assert_eq!(forwards.len(), 3);
        assert_eq!(forwards[2].protocol, lamina_usernet::Protocol::Udp);
        for bad in [
            &["8080:80"][..],
            &["--link-fd=5"],
            &["--link-fd=1", "8080:80"],
            &["--link-fd=x", "8080:80"],
            &["--link-fd=5", "8080"],
            &["--link-fd=5", "5353:53/sctp"],
            &["--bogus", "8080:80"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
