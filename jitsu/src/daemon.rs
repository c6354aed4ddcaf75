//! The daemon: one thread, `poll(2)` over the DNS sockets, the status
//! page, the services' sockets and their children's output, and a pipe
//! the signal handlers write to.
//!
//! A query for a service that is not running summons it; the answer is
//! held until the unikernel listens (its boot takes a few milliseconds
//! here), so that an address is only ever given for a service that is up,
//! and a service that fails to boot is answered SERVFAIL. A running
//! service is answered at once.

use crate::config::{Application, Config, Network, Target};
use crate::dns::{self, Answer, Asked};
use crate::network;
use crate::service::{Programs, ServiceRuntime, State};
use crate::status;
use crate::tap::Bridge;
use lamina_dns::Rcode;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest DNS message over TCP the daemon reads.
const MAX_TCP_MESSAGE: usize = 16 * 1024;
/// TCP DNS connections open at once; more wait in the kernel's queue.
const MAX_TCP_CLIENTS: usize = 128;
/// A TCP DNS client silent this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries held for booting services at once (each at most a TCP
/// message); more are answered SERVFAIL.
const MAX_HELD: usize = 4096;
/// An upstream resolver that has not answered after this long: SERVFAIL.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Status page clients waiting to send their request at once.
const MAX_STATUS_CLIENTS: usize = 16;
/// A status page client that has sent no request after this long is dropped.
const STATUS_IDLE: Duration = Duration::from_secs(2);
/// The longest the loop sleeps: idle stops and boot timeouts are checked
/// at least this often.
const TICK: Duration = Duration::from_millis(50);

/// Where an answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyTo {
    Udp(SocketAddr),
    /// A TCP client, by its number.
    Tcp(u64),
}

/// A query held until its service is up.
struct Held {
    service: usize,
    query: Vec<u8>,
    to: ReplyTo,
}

/// A query sent on to the upstream resolver.
struct Forwarded {
    original_id: u16,
    to: ReplyTo,
    sent: Instant,
}

struct TcpClient {
    id: u64,
    stream: TcpStream,
    input: Vec<u8>,
    last: Instant,
}

/// The running daemon.
pub struct Daemon {
    config: Config,
    programs: Programs,
    services: Vec<ServiceRuntime>,
    udp: UdpSocket,
    tcp: TcpListener,
    tcp_clients: Vec<TcpClient>,
    next_client: u64,
    upstream: Option<UdpSocket>,
    forwarded: HashMap<u16, Forwarded>,
    next_upstream_id: u16,
    status: TcpListener,
    /// Status page clients whose request has not come yet.
    status_clients: Vec<(TcpStream, Instant)>,
    held: Vec<Held>,
    signals: UnixStream,
    started: Instant,
}

impl Daemon {
    /// Binds every socket and checks every service, starting nothing yet:
    /// any error here is reported before a unikernel runs.
    pub fn new(config: Config, programs: Programs) -> io::Result<Daemon> {
        fn bind_error(what: &'static str, address: SocketAddr) -> impl Fn(io::Error) -> io::Error {
            move |e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen for {what} on {address}: {e}"),
                )
            }
        }
        let udp = UdpSocket::bind(config.dns).map_err(bind_error("DNS (UDP)", config.dns))?;
        let tcp = TcpListener::bind(config.dns).map_err(bind_error("DNS (TCP)", config.dns))?;
        let status = TcpListener::bind(config.status)
            .map_err(bind_error("the status page", config.status))?;
        for socket in [udp.as_raw_fd(), tcp.as_raw_fd(), status.as_raw_fd()] {
            crate::process::set_nonblocking(socket)?;
        }
        let upstream = match config.upstream {
            Some(address) => {
                let local: SocketAddr = if address.is_ipv4() {
                    "0.0.0.0:0".parse().expect("an address")
                } else {
                    "[::]:0".parse().expect("an address")
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(address)?;
                socket.set_nonblocking(true)?;
                Some(socket)
            }
            None => None,
        };
        // Tap mode: the bridge first, then a tap per service on it.
        let bridge = match config.network {
            Network::Tap => Some(Arc::new(Bridge::create(
                &config.bridge,
                config.bridge_address,
                config.bridge_prefix,
            )?)),
            Network::User => None,
        };
        let mut services = Vec::new();
        for (index, service) in config.services.iter().enumerate() {
            let network = match &bridge {
                None => network::Network::user(service)?,
                Some(bridge) => {
                    // A Solo5 image on spt reads the tap itself and knows no
                    // virtio-net header, so a built image on spt gets a plain
                    // tap; Lamina's projects use one (offloads).
                    let target = service.target.unwrap_or(programs.default_target);
                    let plain =
                        target == Target::Spt && matches!(service.app, Application::Image(_));
                    let name = format!("{}t{index}", config.bridge);
                    network::Network::tap(service, &name, bridge.clone(), plain)?
                }
            };
            services.push(ServiceRuntime::new(service.clone(), &programs, network)?);
        }
        let (signals, signal_writer) = UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        signal_writer.set_nonblocking(true)?;
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            signal_hook::low_level::pipe::register(signal, signal_writer.try_clone()?)?;
        }
        signal_hook::flag::register(libc::SIGTERM, crate::STOP.clone())?;
        signal_hook::flag::register(libc::SIGINT, crate::STOP.clone())?;
        signal_hook::flag::register(libc::SIGHUP, crate::STOP.clone())?;
        Ok(Daemon {
            config,
            programs,
            services,
            udp,
            tcp,
            tcp_clients: Vec::new(),
            next_client: 0,
            upstream,
            forwarded: HashMap::new(),
            next_upstream_id: 1,
            status,
            status_clients: Vec::new(),
            held: Vec::new(),
            signals,
            started: Instant::now(),
        })
    }

    /// Serves until SIGTERM, SIGINT or SIGHUP, then stops every unikernel
    /// it started and returns.
    pub fn run(mut self) -> io::Result<()> {
        eprintln!(
            "jitsu: answering DNS on {} (UDP and TCP), status on http://{}/, {} service{}:",
            self.config.dns,
            self.config.status,
            self.services.len(),
            if self.services.len() == 1 { "" } else { "s" }
        );
        for s in &self.services {
            let ports: Vec<String> = s.config.ports.iter().map(|p| p.to_string()).collect();
            eprintln!(
                "jitsu:   {} -> {} ports {} on {} ({} MiB, idle stop after {:.0} s, {:?})",
                s.config.name,
                s.config.address,
                ports.join(" "),
                s.target().name(),
                s.config.mem_mib,
                s.config.idle.as_secs_f64(),
                s.config.stop
            );
        }
        while !crate::STOP.load(std::sync::atomic::Ordering::Relaxed) {
            self.wait()?;
            self.serve_once();
        }
        eprintln!("jitsu: stopping every unikernel");
        for service in &mut self.services {
            service.stop(true);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.services.iter().any(|s| s.state != State::Stopped) && Instant::now() < deadline {
            for service in &mut self.services {
                service.service(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for service in &mut self.services {
            service.finish_stop();
        }
        Ok(())
    }

    /// Sleeps until something is ready or the tick passes.
    fn wait(&mut self) -> io::Result<()> {
        let mut fds: Vec<RawFd> = vec![
            self.signals.as_raw_fd(),
            self.udp.as_raw_fd(),
            self.status.as_raw_fd(),
        ];
        if self.tcp_clients.len() < MAX_TCP_CLIENTS {
            fds.push(self.tcp.as_raw_fd());
        }
        fds.extend(self.tcp_clients.iter().map(|c| c.stream.as_raw_fd()));
        fds.extend(self.status_clients.iter().map(|(c, _)| c.as_raw_fd()));
        fds.extend(self.upstream.iter().map(AsRawFd::as_raw_fd));
        let mut watched: Vec<(RawFd, i16)> = fds.into_iter().map(|fd| (fd, libc::POLLIN)).collect();
        let mut timeout = TICK;
        for service in &self.services {
            service.poll_fds(&mut watched);
            if let Some(at) = service.next_check() {
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
        }
        let mut polled: Vec<libc::pollfd> = watched
            .iter()
            .map(|&(fd, events)| libc::pollfd {
                fd,
                events,
                revents: 0,
            })
            .collect();
        // SAFETY: poll reads and writes the array it is given, of that length.
        let rc = unsafe {
            libc::poll(
                polled.as_mut_ptr(),
                polled.len() as libc::nfds_t,
                timeout.as_micros().div_ceil(1000) as i32,
            )
        };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        // A client waiting on a listener or in a tap: socket activation.
        let now = Instant::now();
        for fd in polled.iter().filter(|p| p.revents != 0).map(|p| p.fd) {
            for index in 0..self.services.len() {
                if self.services[index].wants_summons(fd) {
                    self.summon(index, now);
                }
            }
        }
        let mut drain = [0u8; 64];
        while matches!((&self.signals).read(&mut drain), Ok(n) if n > 0) {}
        Ok(())
    }

    /// Everything that is ready now, without blocking.
    fn serve_once(&mut self) {
        let now = Instant::now();
        self.answer_udp(now);
        self.accept_tcp(now);
        self.serve_tcp(now);
        self.relay_upstream(now);
        self.serve_status();
        for index in 0..self.services.len() {
            self.services[index].service(now);
            match self.services[index].state {
                State::Up => {
                    let s = &self.services[index];
                    self.release(index, Answer::Address(s.config.address, ttl_seconds(s)));
                }
                // Queries are held only while booting: a boot that failed,
                // or a unikernel that ended before it listened, gets SERVFAIL.
                State::Stopped | State::Stopping => {
                    self.release(index, Answer::Error(Rcode::SERVFAIL))
                }
                State::Booting | State::Paused => {}
            }
        }
    }

    /// Starts service `index`; a failure to start is a failed boot.
    fn summon(&mut self, index: usize, now: Instant) {
        let service = &mut self.services[index];
        if let Err(e) = service.summon(&self.programs, now) {
            service.record_failure(e.to_string());
            eprintln!(
                "jitsu: {}: cannot start the unikernel: {e}",
                service.config.name
            );
            self.release(index, Answer::Error(Rcode::SERVFAIL));
        }
    }

    /// Answers every query held for service `index`.
    fn release(&mut self, index: usize, answer: Answer) {
        let (ready, waiting): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.service == index);
        self.held = waiting;
        for held in ready {
            self.reply(&held.query, answer, held.to);
        }
    }

    /// Answers one query from a client (UDP or TCP).
    fn handle_query(&mut self, query: &[u8], to: ReplyTo, now: Instant) {
        match dns::classify(query, &self.config.services) {
            Asked::Drop => {}
            Asked::Refuse(rcode) => self.reply(query, Answer::Error(rcode), to),
            Asked::Other => self.forward_upstream(query, to, now),
            Asked::Service { index, summons } => {
                let service = &mut self.services[index];
                service.touch();
                let answer = Answer::Address(service.config.address, ttl_seconds(service));
                match service.state {
                    State::Up => self.reply(query, answer, to),
                    _ if !summons => self.reply(query, answer, to),
                    // Memory stays bounded under a flood of queries for
                    // booting services: past the bound, SERVFAIL at once.
                    _ if self.held.len() >= MAX_HELD => {
                        self.reply(query, Answer::Error(Rcode::SERVFAIL), to)
                    }
                    _ => {
                        self.held.push(Held {
                            service: index,
                            query: query.to_vec(),
                            to,
                        });
                        self.summon(index, now);
                        if self.services[index].state == State::Up {
                            self.release(index, answer);
                        }
                    }
                }
            }
        }
    }

    fn reply(&mut self, query: &[u8], answer: Answer, to: ReplyTo) {
        let mut out = [0u8; 4096];
        let Some(len) = dns::respond(query, answer, matches!(to, ReplyTo::Udp(_)), &mut out) else {
            return;
        };
        self.send(&out[..len], to);
    }

    fn send(&mut self, message: &[u8], to: ReplyTo) {
        match to {
            ReplyTo::Udp(address) => {
                let _ = self.udp.send_to(message, address);
            }
            ReplyTo::Tcp(id) => {
                if let Some(client) = self.tcp_clients.iter_mut().find(|c| c.id == id) {
                    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(message);
                    // A client that does not take a small answer is dropped.
                    let _ = client.stream.set_nonblocking(false);
                    let _ = client
                        .stream
                        .set_write_timeout(Some(Duration::from_millis(200)));
                    if client.stream.write_all(&framed).is_err() {
                        client.last = Instant::now() - TCP_IDLE * 2;
                    }
                    let _ = client.stream.set_nonblocking(true);
                }
            }
        }
    }

    fn answer_udp(&mut self, now: Instant) {
        let mut buf = [0u8; 4096];
        for _ in 0..256 {
            match self.udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let query = buf[..n].to_vec();
                    self.handle_query(&query, ReplyTo::Udp(from), now);
                }
                Err(_) => return,
            }
        }
    }

    fn accept_tcp(&mut self, now: Instant) {
        while self.tcp_clients.len() < MAX_TCP_CLIENTS {
            let Ok((stream, _)) = self.tcp.accept() else {
                return;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.next_client += 1;
            self.tcp_clients.push(TcpClient {
                id: self.next_client,
                stream,
                input: Vec::new(),
                last: now,
            });
        }
    }

    fn serve_tcp(&mut self, now: Instant) {
        let mut queries = Vec::new();
        self.tcp_clients.retain_mut(|client| {
            let mut buf = [0u8; 4096];
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        client.input.extend_from_slice(&buf[..n]);
                        client.last = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
                if client.input.len() > MAX_TCP_MESSAGE + 2 {
                    break;
                }
            }
            while client.input.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([client.input[0], client.input[1]]));
                if len > MAX_TCP_MESSAGE {
                    return false;
                }
                if client.input.len() < 2 + len {
                    break;
                }
                queries.push((client.id, client.input[2..2 + len].to_vec()));
                client.input.drain(..2 + len);
            }
            now.duration_since(client.last) < TCP_IDLE
        });
        for (id, query) in queries {
            self.handle_query(&query, ReplyTo::Tcp(id), now);
        }
    }

    /// Sends a query for another name to the upstream resolver, or
    /// answers REFUSED without one.
    fn forward_upstream(&mut self, query: &[u8], to: ReplyTo, now: Instant) {
        let Some(upstream) = &self.upstream else {
            self.reply(query, Answer::Error(Rcode::REFUSED), to);
            return;
        };
        if query.len() < 12 || self.forwarded.len() >= 4096 {
            self.reply(query, Answer::Error(Rcode::SERVFAIL), to);
            return;
        }
        let id = self.next_upstream_id;
        self.next_upstream_id = self.next_upstream_id.wrapping_add(1).max(1);
        let mut sent = query.to_vec();
        let original_id = u16::from_be_bytes([sent[0], sent[1]]);
        sent[..2].copy_from_slice(&id.to_be_bytes());
        if upstream.send(&sent).is_ok() {
            self.forwarded.insert(
                id,
                Forwarded {
                    original_id,
                    to,
                    sent: now,
                },
            );
        } else {
            self.reply(query, Answer::Error(Rcode::SERVFAIL), to);
        }
    }

    fn relay_upstream(&mut self, now: Instant) {
        let mut answers = Vec::new();
        if let Some(upstream) = &self.upstream {
            let mut buf = [0u8; 4096];
            while let Ok(n) = upstream.recv(&mut buf) {
                if n < 12 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(forwarded) = self.forwarded.remove(&id) {
                    let mut answer = buf[..n].to_vec();
                    answer[..2].copy_from_slice(&forwarded.original_id.to_be_bytes());
                    answers.push((answer, forwarded.to));
                }
            }
        }
        for (answer, to) in answers {
            self.send(&answer, to);
        }
        let expired: Vec<u16> = self
            .forwarded
            .iter()
            .filter(|(_, f)| now.duration_since(f.sent) > UPSTREAM_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(f) = self.forwarded.remove(&id) {
                // The query itself is gone: a bare SERVFAIL with its id.
                let mut header = [0u8; 12];
                header[..2].copy_from_slice(&f.original_id.to_be_bytes());
                header[2] = 0x81;
                header[3] = 0x82;
                self.send(&header, f.to);
            }
        }
    }

    /// The status page: requests are read without blocking, so a client
    /// that connects and says nothing holds up nothing (it is dropped
    /// after [`STATUS_IDLE`]; at most [`MAX_STATUS_CLIENTS`] wait).
    fn serve_status(&mut self) {
        while self.status_clients.len() < MAX_STATUS_CLIENTS {
            let Ok((stream, _)) = self.status.accept() else {
                break;
            };
            if stream.set_nonblocking(true).is_ok() {
                self.status_clients.push((stream, Instant::now()));
            }
        }
        let uptime = self.started.elapsed();
        let services = &self.services;
        self.status_clients.retain_mut(|(stream, since)| {
            let mut request = [0u8; 1024];
            let n = match stream.read(&mut request) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return since.elapsed() < STATUS_IDLE;
                }
                Err(_) => return false,
            };
            let request = String::from_utf8_lossy(&request[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (kind, body) = if path.starts_with("/json") {
                ("application/json", status::json(services, uptime))
            } else {
                ("text/plain; charset=utf-8", status::text(services, uptime))
            };
            // The page (up to tens of KiB) in one go, bounded in time.
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            false
        });
    }
}

fn ttl_seconds(service: &ServiceRuntime) -> u32 {
    service.config.ttl.as_secs().try_into().unwrap_or(u32::MAX)
}
