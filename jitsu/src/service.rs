//! One service's life: stopped, booting, up, paused; its unikernel's
//! processes, and the figures the status page shows.
//!
//! In user mode a service holds its listening sockets for the daemon's
//! whole life: a client that connects while the unikernel is stopped or
//! booting completes its handshake with the host kernel and waits in the
//! accept queue, and no SYN is ever retransmitted. While the service is
//! stopped (or paused) the daemon polls those sockets, and a connection
//! or datagram summons it (socket activation); once it runs, the
//! lamina-usernet process it is handed to accepts from them and splices
//! each connection into the unikernel's private network.

use crate::config::{Service, StopMode, Target};
use crate::network::Network;
use crate::process::{self, Lines};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The programs the daemon starts.
#[derive(Debug, Clone)]
pub struct Programs {
    /// lamina-hvt, if built.
    pub hvt: Option<PathBuf>,
    /// lamina-spt, if built.
    pub spt: Option<PathBuf>,
    /// lamina-usernet.
    pub usernet: PathBuf,
    /// The target of services that name none.
    pub default_target: Target,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No unikernel.
    Stopped,
    /// Started, not answering yet.
    Booting,
    /// Answering.
    Up,
    /// Frozen with its memory (stop mode pause).
    Paused,
    /// Told to stop, not ended yet.
    Stopping,
}

impl State {
    /// The state's name on the status page.
    pub fn name(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Booting => "booting",
            State::Up => "up",
            State::Paused => "paused",
            State::Stopping => "stopping",
        }
    }
}

/// A running unikernel: its tender and its network process.
struct Instance {
    tender: Child,
    usernet: Option<Child>,
    /// lamina-usernet's event lines (`ready`, `up`, `active N`).
    events: Option<Lines<ChildStdout>>,
    console: Vec<Lines<ChildStdout>>,
    errors: Vec<Lines<ChildStderr>>,
    /// Open connections and live UDP flows, as lamina-usernet counts them.
    active: usize,
    /// When the daemon asked it to stop.
    stop_asked: Option<Instant>,
}

/// A service and its unikernel, if any.
pub struct ServiceRuntime {
    /// Its configuration.
    pub config: Service,
    /// Its image and tender.
    image: PathBuf,
    target: Target,
    network: Network,
    instance: Option<Instance>,
    /// The state.
    pub state: State,
    /// When the current boot was asked for (a query or a connection).
    summoned_at: Option<Instant>,
    /// The last query, connection or traffic.
    last_activity: Instant,
    /// Boots so far.
    pub boots: u64,
    /// Unexpected ends so far (crashes and failed boots).
    pub failures: u64,
    /// Wake-ups from pause so far.
    pub resumes: u64,
    /// When the last boot started (wall clock).
    pub last_boot: Option<SystemTime>,
    /// The last boots' times from summons to listening, newest last.
    pub boot_times: Vec<Duration>,
    /// Why the last unexpected end happened.
    pub last_failure: Option<String>,
}

/// How many boot times the status keeps.
const KEPT_TIMES: usize = 100;

impl ServiceRuntime {
    /// The service over `network` (user mode: its sockets bound already,
    /// so a port in use is an error before anything starts).
    pub fn new(
        config: Service,
        programs: &Programs,
        network: Network,
    ) -> io::Result<ServiceRuntime> {
        let image = config
            .image
            .clone()
            .ok_or_else(|| io::Error::other(format!("{}: no image built", config.name)))?;
        let target = config.target.unwrap_or(programs.default_target);
        Ok(ServiceRuntime {
            config,
            image,
            target,
            network,
            instance: None,
            state: State::Stopped,
            summoned_at: None,
            last_activity: Instant::now(),
            boots: 0,
            failures: 0,
            resumes: 0,
            last_boot: None,
            boot_times: Vec::new(),
            last_failure: None,
        })
    }

    /// The tender this service runs on.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Notes a query or a connection now.
    pub fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Starts the unikernel (or resumes it from pause) if it is not
    /// running; `now` is when it was asked for.
    pub fn summon(&mut self, programs: &Programs, now: Instant) -> io::Result<()> {
        self.last_activity = now;
        match self.state {
            State::Up | State::Booting => Ok(()),
            State::Paused => {
                self.resume();
                Ok(())
            }
            State::Stopping | State::Stopped => {
                if self.state == State::Stopping {
                    // Wait for the old one to go: its network holds the ports.
                    self.finish_stop();
                }
                self.boot(programs, now)
            }
        }
    }

    fn boot(&mut self, programs: &Programs, now: Instant) -> io::Result<()> {
        let tender_path = match self.target {
            Target::Hvt => programs.hvt.clone(),
            Target::Spt => programs.spt.clone(),
        }
        .ok_or_else(|| io::Error::other(format!("no lamina-{} tender", self.target.name())))?;
        let prepared = self.network.prepare(&self.config)?;
        // The tender first: its boot is the long pole, and what the network
        // sends before the guest reads waits in the link or the tap.
        let mut tender = Command::new(&tender_path);
        tender
            .arg(format!("--mem={}", self.config.mem_mib))
            .args(&prepared.tender_args)
            .arg("--")
            .arg(&self.image)
            .args(&prepared.guest_args)
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut tender =
            process::spawn(&mut tender, vec![prepared.fd.as_raw_fd()]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", tender_path.display()),
                )
            })?;
        let (usernet, events) = match self
            .network
            .start(&self.config, prepared, &programs.usernet)
        {
            Ok(Some((usernet, events))) => (Some(usernet), events),
            Ok(None) => (None, None),
            Err(e) => {
                let _ = tender.kill();
                let _ = tender.wait();
                return Err(e);
            }
        };
        let console = tender.stdout.take().map(Lines::new).transpose()?;
        let errors = tender.stderr.take().map(Lines::new).transpose()?;
        self.instance = Some(Instance {
            tender,
            usernet,
            events,
            console: console.into_iter().collect(),
            errors: errors.into_iter().collect(),
            active: 0,
            stop_asked: None,
        });
        self.boots += 1;
        self.last_boot = Some(SystemTime::now());
        self.summoned_at = Some(now);
        self.state = State::Booting;
        // A service without a TCP port has nothing to probe: it counts as
        // up once its tender runs.
        if !crate::network::has_tcp_port(&self.config) {
            self.came_up(Instant::now());
        }
        Ok(())
    }

    fn came_up(&mut self, now: Instant) {
        if self.state != State::Booting {
            return;
        }
        self.state = State::Up;
        // Idle time counts from here: a boot slower than the idle time must
        // not be stopped before its first client is answered.
        self.last_activity = now;
        if let Some(asked) = self.summoned_at.take() {
            push_kept(&mut self.boot_times, now - asked);
            eprintln!(
                "jitsu: {}: up on {} in {:.2} ms (summons to listening)",
                self.config.name,
                self.target.name(),
                (now - asked).as_secs_f64() * 1e3
            );
        }
    }

    fn resume(&mut self) {
        if let Some(instance) = &self.instance {
            process::signal_group(&instance.tender, libc::SIGCONT);
            if let Some(usernet) = &instance.usernet {
                process::signal_group(usernet, libc::SIGCONT);
            }
        }
        self.network.resumed();
        self.resumes += 1;
        self.state = State::Up;
        eprintln!("jitsu: {}: resumed", self.config.name);
    }

    /// Stops the unikernel as its stop mode says (idle), or for good
    /// (`destroy`, on the daemon's exit).
    pub fn stop(&mut self, destroy: bool) {
        let Some(instance) = &mut self.instance else {
            return;
        };
        if self.config.stop == StopMode::Pause && !destroy && self.state == State::Up {
            process::signal_group(&instance.tender, libc::SIGSTOP);
            if let Some(usernet) = &instance.usernet {
                process::signal_group(usernet, libc::SIGSTOP);
            }
            self.state = State::Paused;
            self.network.paused();
            eprintln!("jitsu: {}: idle, paused", self.config.name);
            return;
        }
        if instance.stop_asked.is_none() {
            process::signal_group(&instance.tender, libc::SIGTERM);
            process::signal_group(&instance.tender, libc::SIGCONT);
            instance.stop_asked = Some(Instant::now());
            self.state = State::Stopping;
            if !destroy {
                eprintln!("jitsu: {}: idle, stopping", self.config.name);
            }
        }
    }

    /// Kills what is left of a stopping unikernel and waits for it.
    pub fn finish_stop(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            let _ = instance.tender.kill();
            let _ = instance.tender.wait();
            if let Some(mut usernet) = instance.usernet.take() {
                let _ = usernet.kill();
                let _ = usernet.wait();
            }
            self.network.stopped(&self.config.name);
        }
        self.state = State::Stopped;
    }

    /// The descriptors to poll, with their events: what summons the
    /// unikernel while nothing serves its network (stopped or paused), the
    /// network's boot-time work, and the children's output.
    pub fn poll_fds(&self, fds: &mut Vec<(RawFd, i16)>) {
        let summonable = matches!(self.state, State::Stopped | State::Paused);
        self.network
            .poll_fds(summonable, self.state == State::Booting, fds);
        if let Some(instance) = &self.instance {
            let lines = instance.events.iter().filter(|l| !l.closed).map(Lines::fd);
            let console = instance.console.iter().filter(|l| !l.closed).map(Lines::fd);
            let errors = instance.errors.iter().filter(|l| !l.closed).map(Lines::fd);
            fds.extend(
                lines
                    .chain(console)
                    .chain(errors)
                    .map(|fd| (fd, libc::POLLIN)),
            );
        }
    }

    /// `fd` is ready: whether a client waits for a unikernel that nothing
    /// serves now (then the daemon summons it).
    pub fn wants_summons(&mut self, fd: RawFd) -> bool {
        let waiting = self.network.ready(fd, &self.config.name);
        waiting && matches!(self.state, State::Stopped | State::Paused)
    }

    /// When the loop must look at this service again even if nothing is
    /// ready (a probe's next attempt).
    pub fn next_check(&self) -> Option<Instant> {
        self.network.next_check()
    }

    /// Counts an unexpected end (a crash, a failed boot) and keeps why.
    pub fn record_failure(&mut self, why: String) {
        self.failures += 1;
        self.last_failure = Some(why);
    }

    /// Reads the children's output, reaps them, notes a boot, a crash or
    /// a failed boot, and stops an idle unikernel.
    pub fn service(&mut self, now: Instant) {
        let name = self.config.name.clone();
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        let mut came_up = false;
        if let Some(events) = &mut instance.events {
            for line in events.read_lines() {
                if line == "up" {
                    came_up = true;
                } else if let Some(n) = line.strip_prefix("active ") {
                    instance.active = n.parse().unwrap_or(instance.active);
                    self.last_activity = now;
                }
            }
        }
        for lines in &mut instance.console {
            for line in lines.read_lines() {
                println!("[{name}] {line}");
            }
        }
        for lines in &mut instance.errors {
            for line in lines.read_lines() {
                eprintln!("[{name}] {line}");
            }
        }
        if self.state == State::Booting {
            match self.network.probe_answered() {
                Ok(answered) => came_up |= answered,
                Err(e) => eprintln!("jitsu: {name}: {e}"),
            }
        }
        if self.state == State::Up && self.network.traffic() {
            self.last_activity = now;
        }
        let active = instance.active;
        let stop_asked = instance.stop_asked;
        let exited = match instance.tender.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for it: {e}")),
        };
        let usernet_gone = match instance.usernet.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(format!("its network process ended ({status})")),
            _ => None,
        };
        if came_up {
            self.came_up(now);
        }
        if let Some(why) = exited.or(usernet_gone) {
            let was = self.state;
            self.finish_stop();
            if stop_asked.is_none() {
                if was == State::Booting {
                    eprintln!("jitsu: {name}: the unikernel failed to boot: {why}");
                } else {
                    eprintln!("jitsu: {name}: the unikernel ended unexpectedly ({why}); the next query summons it again");
                }
                self.record_failure(why);
            }
            return;
        }
        match self.state {
            State::Booting => {
                let started = self.summoned_at.unwrap_or(now);
                if now.duration_since(started) > self.config.boot_timeout {
                    let why = format!(
                        "not listening after {:.1} s (boot-timeout)",
                        self.config.boot_timeout.as_secs_f64()
                    );
                    eprintln!("jitsu: {name}: the unikernel failed to boot: {why}");
                    self.stop(true);
                    self.finish_stop();
                    self.record_failure(why);
                }
            }
            State::Up
                if active == 0 && now.duration_since(self.last_activity) >= self.config.idle =>
            {
                self.stop(false);
            }
            State::Stopping if stop_asked.is_some_and(|t| now.duration_since(t) > STOP_GRACE) => {
                self.finish_stop();
            }
            _ => {}
        }
    }

    /// Resident memory of the unikernel's processes (proportional set
    /// size: the tender, the guest's memory it touched, its network), in
    /// KiB.
    pub fn memory_kib(&self) -> Option<u64> {
        let instance = self.instance.as_ref()?;
        let pids =
            std::iter::once(instance.tender.id()).chain(instance.usernet.as_ref().map(Child::id));
        Some(pids.filter_map(pss_kib).sum())
    }

    /// The tender's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.as_ref().map(|i| i.tender.id())
    }

    /// Open connections and UDP flows now.
    pub fn active(&self) -> usize {
        self.instance.as_ref().map_or(0, |i| i.active)
    }
}

/// How long a stopping unikernel gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

fn push_kept(times: &mut Vec<Duration>, time: Duration) {
    if times.len() == KEPT_TIMES {
        times.remove(0);
    }
    times.push(time);
}

/// A process's proportional set size, KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        self.finish_stop();
    }
}
