//! User-mode networking on spt and hvt: `lamina run --port HOST:GUEST`
//! (which writes `--net:NAME=user:HOST:GUEST,...`) runs the private
//! network as a `lamina-usernet` process beside the tender, not inside it.
//!
//! For each such device `lamina` makes a datagram socketpair, starts
//! lamina-usernet with one end, waits until it listens on every forwarded
//! port, and gives the other end to the tender as `--net:NAME=fd:N`. The
//! tender thus links no TCP/IP stack, and the stack that faces the guest's
//! traffic runs in a process of its own with its own seccomp filter.
//!
//! lamina-usernet never outlives the application: it ends when the
//! tender's end of the link closes (the tender ended or was killed), the
//! kernel kills it when `lamina` ends (`PR_SET_PDEATHSIG`), and `lamina`
//! kills it after the tender has ended. It runs in a process group of its
//! own, so a Ctrl-C on the terminal stops the guest first, through the
//! tender, rather than its network under it.

use crate::CliError;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running user-mode networks of one application.
#[derive(Default)]
pub struct UserNetworks {
    processes: Vec<Child>,
    /// The tender's ends of the links, until the tender has started.
    tender_ends: Vec<OwnedFd>,
}

/// The variable that names the lamina-usernet binary to start.
pub const USERNET_VAR: &str = "LAMINA_USERNET";

/// The lamina-usernet binary: [`USERNET_VAR`], else built from the
/// Lamina workspace as the tenders are.
pub fn usernet_binary() -> Result<PathBuf, CliError> {
    match std::env::var_os(USERNET_VAR) {
        Some(path) => Ok(PathBuf::from(path)),
        None => crate::build::build_host_binary("lamina-usernet"),
    }
}

impl UserNetworks {
    /// Starts a lamina-usernet process for each `--net:NAME=user:PORTS`
    /// in `args` and rewrites it as `--net:NAME=fd:N`. Returns once each
    /// listens on its ports: a port in use is an error here.
    pub fn start(args: &mut [String]) -> Result<UserNetworks, CliError> {
        let mut networks = UserNetworks::default();
        for arg in args.iter_mut() {
            let Some((name, ports)) = arg
                .strip_prefix("--net:")
                .and_then(|spec| spec.split_once("=user:"))
            else {
                continue;
            };
            let name = name.to_string();
            let forwards: Vec<&str> = ports.split(',').collect();
            let (tender_end, usernet_end) = lamina_usernet::socketpair()
                .map_err(CliError::io("cannot make the user-mode network's link"))?;
            let binary = usernet_binary()?;
            let mut command = Command::new(&binary);
            command
                .arg(format!("--link-fd={}", usernet_end.as_raw_fd()))
                .args(&forwards)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            lamina_usernet::pass_fds(&mut command, vec![usernet_end.as_raw_fd()]);
            crate::supervise::in_own_group_dying_with_lamina(&mut command);
            let mut child = command.spawn().map_err(CliError::io(format!(
                "cannot start {} (set LAMINA_USERNET to its path)",
                binary.display()
            )))?;
            // Only the child holds this end now: when the tender's end
            // closes, lamina-usernet sees the link hang up.
            drop(usernet_end);
            let mut line = String::new();
            let ready = child
                .stdout
                .take()
                .map(|out| BufReader::new(out).read_line(&mut line));
            networks.processes.push(child);
            if !matches!(ready, Some(Ok(_))) || line.trim() != "ready" {
                // It said why on lamina's standard error.
                return Err(CliError::Project(format!(
                    "--net:{name}: the user-mode network did not start (see lamina-usernet's message above)"
                )));
            }
            *arg = format!("--net:{name}=fd:{}", tender_end.as_raw_fd());
            networks.tender_ends.push(tender_end);
        }
        Ok(networks)
    }

    /// Lets the tender that `command` starts inherit its ends of the links.
    pub fn pass_to(&self, command: &mut Command) {
        if !self.tender_ends.is_empty() {
            lamina_usernet::pass_fds(
                command,
                self.tender_ends.iter().map(|fd| fd.as_raw_fd()).collect(),
            );
        }
    }

    /// Closes `lamina`'s copies of the tender's ends once the tender has
    /// them, so that the links hang up when the tender ends.
    pub fn tender_started(&mut self) {
        self.tender_ends.clear();
    }
}

impl Drop for UserNetworks {
    /// After the tender has ended, or on `lamina`'s errors: no network
    /// outlives its application.
    fn drop(&mut self) {
        self.tender_ends.clear();
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
