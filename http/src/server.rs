//! The server: an accept loop and one task per connection.

use crate::date::imf_fixdate;
use crate::request::{Method, Request};
use crate::response::{write_head, Response};
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use lamina_core::device::{Clock, NetError, Stack, TcpListener, TcpStream};
use lamina_core::runtime::{Duration, Handle, Instant, JoinHandle};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 2048;

/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest request head (request line and headers): past it, 431.
    pub max_head_bytes: usize,
    /// Longest request target: past it, 414.
    pub max_target_bytes: usize,
    /// Most header fields: past it, 431.
    pub max_headers: usize,
    /// Largest request body: past it, 413.
    pub max_body_bytes: u64,
    /// Most bytes of request bodies one server holds at once, over all its
    /// connections: a request whose body would pass it waits (before its
    /// body is read) until others are handled. One body is always let in,
    /// so a body of up to `max_body_bytes` never waits forever.
    pub max_buffered_body_bytes: u64,
    /// The budget request bodies are counted in: `None`, each server has
    /// its own of `max_buffered_body_bytes`; an application that gives one
    /// it also counts its own large allocations in (response bodies, with
    /// [`Response::holding`]) bounds both together.
    pub body_budget: Option<MemoryBudget>,
    /// Time from a request's first byte to the end of its head: past it,
    /// 408 and the connection closes (slowloris clients).
    pub header_timeout: Duration,
    /// Slowest a request body may arrive on average, in bytes per second:
    /// a body of `n` bytes must be whole within `header_timeout` plus
    /// `n / min_body_rate` of its head, else 408 and the connection closes.
    /// Each read also waits at most `header_timeout`. Without the average,
    /// a client sending a byte just inside each read's timeout would hold
    /// its body's memory (up to `max_body_bytes`, and the whole of
    /// `max_buffered_body_bytes` with several) for days.
    pub min_body_rate: u64,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections served at once (each costs memory: a few KiB
    /// idle, more in a TLS handshake). At the limit, a new connection
    /// drops the oldest one still in its upgrade (a TLS handshake, perhaps
    /// a client that stalls on purpose) to make room; when every connection
    /// is past it, the new one waits unanswered until one ends, and those
    /// after it wait in the listener's backlog.
    pub max_connections: usize,
    /// The count `max_connections` limits: `None`, each server counts its
    /// own connections; servers given clones of one [`ConnectionCount`]
    /// share the limit (a site served over HTTP and HTTPS from one memory
    /// budget).
    pub shared_count: Option<ConnectionCount>,
}

/// A count of live connections that several servers share; see
/// [`Config::shared_count`].
///
/// An atomic counter so that a [`Config`] stays `Send` (a program may build
/// it on one thread and serve on another); it is only ever used on one.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Connections open now under this count.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 8192,
            max_target_bytes: 2048,
            max_headers: 64,
            max_body_bytes: 1 << 20,
            max_buffered_body_bytes: 64 << 20,
            body_budget: None,
            header_timeout: Duration::from_secs(10),
            // 16 MiB in about 17 minutes; 1 MiB in a minute.
            min_body_rate: 16 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shared_count: None,
        }
    }
}

/// Turns requests into responses.
pub trait Handler {
    /// The response to `request`. Called in order for the requests of a
    /// connection; the server sends no body for HEAD.
    async fn handle(&self, request: &Request) -> Response;
}

/// Serves HTTP on `addr` until the listener fails to be created; returns
/// only on that error. Each connection runs as its own task on `runtime`.
pub async fn serve<S, C, H>(
    stack: &S,
    addr: SocketAddr,
    handler: Rc<H>,
    clock: C,
    runtime: Handle,
    config: Config,
) -> Result<(), NetError>
where
    S: Stack,
    S::TcpStream: 'static,
    C: Clock + Clone + 'static,
    H: Handler + 'static,
{
    serve_with(stack, addr, Rc::new(Plain), handler, clock, runtime, config).await
}

/// What an accepted connection goes through before HTTP is spoken on it:
/// nothing ([`Plain`]), or a TLS handshake (lamina-tls's `TlsAcceptor`, with
/// this crate's `tls` feature), which is how one server serves HTTP and HTTPS.
pub trait Upgrade<T: TcpStream> {
    /// The stream HTTP runs on.
    type Stream: TcpStream + 'static;
    /// Turns the accepted TCP stream into that stream; an error drops the
    /// connection (the reason goes to the log).
    async fn upgrade(&self, tcp: T) -> Result<Self::Stream, NetError>;
}

/// Plain HTTP: the TCP stream as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl<T: TcpStream + 'static> Upgrade<T> for Plain {
    type Stream = T;
    async fn upgrade(&self, tcp: T) -> Result<T, NetError> {
        Ok(tcp)
    }
}

/// [`serve`], with each connection first going through `upgrade` (in its
/// own task, so a slow handshake holds up nobody else).
pub async fn serve_with<S, U, C, H>(
    stack: &S,
    addr: SocketAddr,
    upgrade: Rc<U>,
    handler: Rc<H>,
    clock: C,
    runtime: Handle,
    config: Config,
) -> Result<(), NetError>
where
    S: Stack,
    S::TcpStream: 'static,
    U: Upgrade<S::TcpStream> + 'static,
    C: Clock + Clone + 'static,
    H: Handler + 'static,
{
    let listener = stack.tcp_listen(addr).await?;
    log::info!("http: listening on {}", listener.local_addr());
    let config = Rc::new(config);
    let live = config.shared_count.clone().unwrap_or_default();
    let body_memory = config
        .body_budget
        .clone()
        .unwrap_or_else(|| MemoryBudget::new(config.max_buffered_body_bytes));
    // Connections still in their upgrade, oldest first, each with a flag
    // its task clears once it is through.
    let mut upgrading: VecDeque<(JoinHandle<()>, Rc<Cell<bool>>)> = VecDeque::new();
    loop {
        let accepted = listener.accept().await;
        // The limit is checked with a connection in hand: the oldest
        // handshake is dropped only for a new client, and the count may
        // have grown while this server waited (servers can share it).
        while accepted.is_ok() && live.get() >= config.max_connections.max(1) {
            match upgrading.pop_front() {
                Some((task, still)) if still.get() && !task.is_finished() => {
                    log::debug!(
                        "http: {} connections: dropping the oldest handshake",
                        live.get()
                    );
                    // Dropped at once (it is not running): its slot frees.
                    task.abort();
                }
                Some(_) => {}
                None => runtime.sleep(Duration::from_millis(10)).await,
            }
        }
        match accepted {
            Ok((tcp, peer)) => {
                let slot = ConnectionSlot::take(&live);
                let still_upgrading = Rc::new(Cell::new(true));
                let upgraded = still_upgrading.clone();
                let upgrade = upgrade.clone();
                let handler = handler.clone();
                let clock = clock.clone();
                let task_runtime = runtime.clone();
                let task_config = config.clone();
                let body_memory = body_memory.clone();
                let task = runtime.spawn(async move {
                    let _slot = slot;
                    let stream = match upgrade.upgrade(tcp).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            log::debug!("http: {peer}: {e}");
                            return;
                        }
                    };
                    upgraded.set(false);
                    let connection = Connection {
                        stream,
                        handler,
                        clock,
                        runtime: task_runtime,
                        config: task_config,
                        body_memory,
                    };
                    connection.run().await;
                });
                // Forget connections past their upgrade: from the front as
                // they come, all of them now and then (amortised O(1)).
                let done = |(task, still): &(JoinHandle<()>, Rc<Cell<bool>>)| {
                    !still.get() || task.is_finished()
                };
                while upgrading.front().is_some_and(done) {
                    upgrading.pop_front();
                }
                if upgrading.len() > 2 * config.max_connections {
                    upgrading.retain(|entry| !done(entry));
                }
                upgrading.push_back((task, still_upgrading));
            }
            Err(e) => {
                // Out of sockets or memory: give the others time to finish.
                log::warn!("http: accept failed: {e}");
                runtime.sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection's place in the count of live ones, given back when its
/// task ends or is dropped.
struct ConnectionSlot(ConnectionCount);

impl ConnectionSlot {
    fn take(live: &ConnectionCount) -> Self {
        live.0.fetch_add(1, Ordering::Relaxed);
        ConnectionSlot(live.clone())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A budget of bytes that large allocations wait for: the request bodies
/// a server reads ([`Config::max_buffered_body_bytes`], or a budget given
/// in [`Config::body_budget`]), and whatever an application counts in the
/// same budget, such as large response bodies ([`Response::holding`]).
/// While bytes are held, a hold that would pass the limit waits; when
/// nothing is held, any one hold is let in, so none waits forever.
///
/// ```
/// let budget = lamina_http::MemoryBudget::new(64 << 20);
/// assert_eq!(budget.held(), 0);
/// ```
///
/// An atomic counter so that a [`Config`] stays `Send`, like
/// [`ConnectionCount`]; it is only ever used on one thread.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    held: Arc<AtomicU64>,
    limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            held: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` more fit under the limit (or nothing is held),
    /// and holds them until the returned [`MemoryHold`] is dropped.
    pub async fn hold(&self, bytes: u64, runtime: &Handle) -> MemoryHold {
        while self.held() > 0 && self.held().saturating_add(bytes) > self.limit {
            runtime.sleep(Duration::from_millis(5)).await;
        }
        self.held.fetch_add(bytes, Ordering::Relaxed);
        MemoryHold {
            budget: self.clone(),
            bytes,
        }
    }
}

/// Bytes counted in a [`MemoryBudget`] until dropped.
#[derive(Debug)]
pub struct MemoryHold {
    budget: MemoryBudget,
    bytes: u64,
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// How reading a request body ended.
enum BodyRead {
    /// All of it.
    Whole(Vec<u8>),
    /// The client closed the connection first.
    Closed,
    /// No byte came for a whole `header_timeout`.
    Stalled,
}

/// What the bytes received so far hold.
enum Parsed {
    /// A whole head of `head_len` bytes, announcing `body_len` body bytes.
    Complete {
        request: Request,
        head_len: usize,
        body_len: u64,
    },
    /// Not yet a whole head.
    Partial,
    /// A head that must be refused with this status.
    Refused(u16),
}

/// Header slots parse keeps on the stack (2 KiB); a configuration that
/// allows more takes them from the heap.
const STACK_HEADERS: usize = 64;

fn parse(buf: &[u8], config: &Config) -> Parsed {
    // Parsed again on every read of an unfinished head, so no allocation
    // for the common case.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let headers = if config.max_headers <= STACK_HEADERS {
        &mut on_stack[..config.max_headers]
    } else {
        on_heap.resize(config.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap[..]
    };
    let mut request = httparse::Request::new(headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // A request line longer than the target limit will never fit.
            let line_end = buf.iter().position(|&b| b == b'\n');
            if line_end.is_none() && buf.len() > config.max_target_bytes + 32 {
                return Parsed::Refused(414);
            }
            if buf.len() >= config.max_head_bytes {
                return Parsed::Refused(431);
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(431),
        Err(httparse::Error::Version) => return Parsed::Refused(505),
        Err(_) => return Parsed::Refused(400),
    };
    if head_len > config.max_head_bytes {
        return Parsed::Refused(431);
    }
    let target = request.path.unwrap_or("");
    if target.len() > config.max_target_bytes {
        return Parsed::Refused(414);
    }
    let method = match request.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    let mut body_len = 0u64;
    let mut fields = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let Ok(value) = core::str::from_utf8(header.value) else {
            return Parsed::Refused(400);
        };
        if name == "content-length" {
            match value.trim().parse::<u64>() {
                Ok(n) if body_len == 0 || body_len == n => body_len = n,
                _ => return Parsed::Refused(400), // unparsable or conflicting
            }
        }
        if name == "transfer-encoding" {
            return Parsed::Refused(501); // no chunked request bodies
        }
        fields.push((name, String::from(value)));
    }
    let request = Request {
        method,
        target: String::from(target),
        minor_version: request.version.unwrap_or(1),
        headers: fields,
        body: Vec::new(),
    };
    if body_len > config.max_body_bytes {
        return Parsed::Refused(413);
    }
    Parsed::Complete {
        request,
        head_len,
        body_len,
    }
}

struct Connection<T, H, C> {
    stream: T,
    handler: Rc<H>,
    clock: C,
    runtime: Handle,
    config: Rc<Config>,
    body_memory: MemoryBudget,
}

impl<T: TcpStream, H: Handler, C: Clock> Connection<T, H, C> {
    async fn run(mut self) {
        let _ = self.serve().await;
        let _ = self.stream.shutdown().await;
        // Lingering close: closing with unread request bytes would send a
        // reset, and a reset makes the client's kernel discard the response
        // it has not read yet (a 413 or 414 would never arrive). So read and
        // drop what the client still sends, for a short while.
        let drain = async {
            let mut sink = alloc::vec![0u8; READ_CHUNK];
            while let Ok(n) = self.stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = self.runtime.timeout(LINGER, drain).await;
    }

    async fn serve(&mut self) -> Result<(), NetError> {
        let mut buf: Vec<u8> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        // When the current request's first byte arrived.
        let mut started: Option<Instant> = None;
        loop {
            match parse(&buf, &self.config) {
                Parsed::Complete {
                    mut request,
                    head_len,
                    body_len,
                } => {
                    buf.drain(..head_len);
                    let _held = self.body_memory.hold(body_len, &self.runtime).await;
                    request.body = match self.read_body(&mut buf, body_len).await? {
                        BodyRead::Whole(body) => body,
                        BodyRead::Closed => return Ok(()),
                        BodyRead::Stalled => {
                            self.send(&mut out, &Response::error(408), false, true)
                                .await?;
                            return Ok(());
                        }
                    };
                    started = (!buf.is_empty()).then(|| self.runtime.now());
                    let span = lamina_core::trace_span!(
                        "http request",
                        "{} {}",
                        method_name(&request.method),
                        request.target
                    );
                    let response = self.handler.handle(&request).await;
                    let close = !request.keep_alive();
                    self.send(&mut out, &response, request.method == Method::Head, close)
                        .await?;
                    span.end_fmt(format_args!("{}", response.status));
                    if close {
                        return Ok(());
                    }
                }
                Parsed::Refused(status) => {
                    self.send(&mut out, &Response::error(status), false, true)
                        .await?;
                    return Ok(());
                }
                Parsed::Partial => {
                    if started.is_none() && !buf.is_empty() {
                        started = Some(self.runtime.now());
                    }
                    match self.fill(&mut buf, started).await {
                        Ok(true) => {
                            if started.is_none() {
                                started = Some(self.runtime.now());
                            }
                        }
                        Ok(false) => return Ok(()),
                        Err(NetError::TimedOut) if !buf.is_empty() => {
                            self.send(&mut out, &Response::error(408), false, true)
                                .await?;
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Reads a body of `len` bytes, the first of them already in `buf`
    /// (which keeps what follows: a pipelined request). A body longer than
    /// what came with the head is read straight into one allocation of its
    /// size, so the connection holds one copy of it, and nothing of the next
    /// request is read with it. Each read waits at most `header_timeout`,
    /// and the whole body at most as long as [`Config::min_body_rate`] allows.
    async fn read_body(&mut self, buf: &mut Vec<u8>, len: u64) -> Result<BodyRead, NetError> {
        // `parse` let it through, so it is at most `max_body_bytes`, which
        // an allocation has to hold anyway.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if buf.len() >= len {
            return Ok(BodyRead::Whole(buf.drain(..len).collect()));
        }
        let rate = self.config.min_body_rate.max(1);
        let allowed = self
            .config
            .header_timeout
            .saturating_add(Duration::from_secs(len as u64 / rate));
        let deadline = self.runtime.now() + allowed;
        let mut body = Vec::with_capacity(len);
        body.append(buf);
        let mut filled = body.len();
        body.resize(len, 0);
        while filled < len {
            let left = deadline.saturating_duration_since(self.runtime.now());
            let read = self
                .runtime
                .timeout(
                    self.config.header_timeout.min(left),
                    self.stream.read(&mut body[filled..]),
                )
                .await;
            match read {
                Err(_) => return Ok(BodyRead::Stalled),
                Ok(Ok(0)) => return Ok(BodyRead::Closed),
                Ok(Ok(n)) => filled += n,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(BodyRead::Whole(body))
    }

    /// Reads more into `buf`; false at end of stream. Waits at most until the
    /// header deadline (a request started) or the idle limit (none started).
    async fn fill(
        &mut self,
        buf: &mut Vec<u8>,
        started: Option<Instant>,
    ) -> Result<bool, NetError> {
        let limit = match started {
            Some(start) => self
                .config
                .header_timeout
                .saturating_sub(self.runtime.now() - start),
            None => self.config.idle_timeout,
        };
        // Read straight into `buf`: a buffer in the future itself would
        // cost every connection its size for as long as it lives, idle or
        // still in its TLS handshake.
        let have = buf.len();
        buf.resize(have + READ_CHUNK, 0);
        let read = self
            .runtime
            .timeout(limit, self.stream.read(&mut buf[have..]))
            .await;
        let n = match &read {
            Ok(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(have + n);
        read.map_err(|_| NetError::TimedOut)??;
        Ok(n > 0)
    }

    async fn send(
        &mut self,
        out: &mut Vec<u8>,
        response: &Response,
        head_only: bool,
        close: bool,
    ) -> Result<(), NetError> {
        out.clear();
        let date = imf_fixdate(self.clock.wall() / 1_000_000_000);
        write_head(out, response, &date, close);
        let body = response.body.as_bytes();
        if head_only || body.len() <= 16 * 1024 {
            if !head_only {
                out.extend_from_slice(body);
            }
            self.stream.write_all(out).await
        } else {
            // Large bodies go out as they are, without a copy.
            self.stream.write_all(out).await?;
            self.stream.write_all(body).await
        }
    }
}

/// The method as sent, for traces.
fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Other(name) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(raw: &[u8]) -> Option<u16> {
        match parse(raw, &Config::default()) {
            Parsed::Refused(s) => Some(s),
            Parsed::Complete { .. } => Some(0),
            Parsed::Partial => None,
        }
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(0));
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(status_of(b"GET / HTTP/9.1\r\n\r\n"), Some(505));
        assert_eq!(status_of(b"G@T / HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(501)
        );
        let long_target = [b"GET /".as_slice(), &[b'a'; 3000]].concat();
        assert_eq!(status_of(&long_target), Some(414));
        let many = [
            b"GET / HTTP/1.1\r\n".as_slice(),
            &b"X: y\r\n".repeat(100),
            b"\r\n",
        ]
        .concat();
        assert_eq!(status_of(&many), Some(431));
        let huge = [b"GET / HTTP/1.1\r\n".as_slice(), b"X: ", &[b'y'; 9000]].concat();
        assert_eq!(status_of(&huge), Some(431));
    }

    #[test]
    fn the_header_limit_holds_on_the_stack_and_beyond_it() {
        let head = |n: usize| {
            [
                b"GET / HTTP/1.1\r\n".as_slice(),
                &b"X: y\r\n".repeat(n),
                b"\r\n",
            ]
            .concat()
        };
        for max_headers in [1, 10, STACK_HEADERS, STACK_HEADERS + 1, 200] {
            let config = Config {
                max_headers,
                ..Config::default()
            };
            let complete = |n| matches!(parse(&head(n), &config), Parsed::Complete { .. });
            assert!(complete(max_headers), "{max_headers} headers allowed");
            assert!(
                matches!(parse(&head(max_headers + 1), &config), Parsed::Refused(431)),
                "{} headers refused",
                max_headers + 1
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let Parsed::Complete { request, .. } =
            parse(b"GET /a?b HTTP/1.0\r\n\r\n", &Config::default())
        else {
            panic!()
        };
        assert!(!request.keep_alive());
        assert_eq!(request.path(), "/a");
        let Parsed::Complete { request, .. } = parse(
            b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
            &Config::default(),
        ) else {
            panic!()
        };
        assert!(!request.keep_alive());
    }

    #[test]
    fn no_input_panics() {
        let mut seed = 7u32;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b"GET /HTP1.\r\n: aContent-Length09"[(seed >> 16) as usize % 31]
                })
                .collect();
            let _ = parse(&bytes, &Config::default());
        }
    }
}
