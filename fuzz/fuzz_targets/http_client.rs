//! The HTTP client's response parsing (`lamina_http::Client`): GETs over
//! connections whose server sends bytes from the input, through a stack
//! made here (its connections are the harness, not the product), on a
//! simulated clock: status lines and headers (httparse), Content-Length,
//! bodies split over reads, bytes sent ahead of the next response,
//! keep-alive and `Connection: close`, the reconnect after a reused
//! connection fails, and the size limit.
//!
//! Input: a byte for how the server's bytes arrive (all at once if 0, else
//! in reads of that many), a byte for the client's limit on a response
//! (the default 16 MiB if even, else 64 times the byte), then up to four
//! connections' bytes, each a length (u16) and that many bytes; each
//! connection ends after them. The client makes four GETs.
//!
//! Every response the client accepts must have a status of 100 to 599
//! and exactly the body its Content-Length headers (digits only, all the
//! same) announce, within the limit; every request it writes must be a
//! whole GET.
#![no_main]

use lamina_core::device::{NetError, Stack, TcpRead, TcpStream, TcpWrite, UdpSocket};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_http::{Client, ClientError};
use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

/// Time that jumps to each deadline.
#[derive(Default)]
struct SimTime(Cell<u64>);

impl Park for SimTime {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.get())
    }
    fn park(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.0.set(self.0.get().max(d.as_nanos()));
        }
    }
}

/// A connection to the server: what it sends, and what the client wrote.
struct Connection {
    from_server: Vec<u8>,
    read: usize,
    chunk: usize,
    requests: Rc<RefCell<Vec<u8>>>,
}

impl TcpRead for Connection {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let n = buf
            .len()
            .min(self.chunk)
            .min(self.from_server.len() - self.read);
        buf[..n].copy_from_slice(&self.from_server[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
    fn peer_addr(&self) -> SocketAddr {
        SERVER
    }
}

impl TcpWrite for Connection {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.requests.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn shutdown(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}

impl TcpStream for Connection {
    type ReadHalf = Connection;
    type WriteHalf = Connection;
    fn into_split(self) -> (Connection, Connection) {
        unreachable!("the client does not split its connection")
    }
}

/// Never made: the client opens no UDP sockets.
enum NoUdp {}

impl UdpSocket for NoUdp {
    async fn send_to(&self, _: &[u8], _: SocketAddr) -> Result<(), NetError> {
        match *self {}
    }
    async fn recv_from(&self, _: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        match *self {}
    }
    fn local_addr(&self) -> SocketAddr {
        match *self {}
    }
}

/// Never made: the client listens nowhere.
enum NoListener {}

impl lamina_core::device::TcpListener for NoListener {
    type Stream = Connection;
    async fn accept(&self) -> Result<(Connection, SocketAddr), NetError> {
        match *self {}
    }
    fn local_addr(&self) -> SocketAddr {
        match *self {}
    }
}

/// A stack whose connections to the server are the input's, one after
/// another; past them, the server refuses.
struct Server {
    connections: RefCell<Vec<Vec<u8>>>,
    chunk: usize,
    requests: Rc<RefCell<Vec<u8>>>,
    connects: Cell<usize>,
}

const SERVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    80,
);

impl Stack for Server {
    type TcpListener = NoListener;
    type TcpStream = Connection;
    type UdpSocket = NoUdp;
    async fn tcp_listen(&self, _: SocketAddr) -> Result<NoListener, NetError> {
        Err(NetError::Unreachable)
    }
    async fn tcp_connect(&self, addr: SocketAddr) -> Result<Connection, NetError> {
        assert_eq!(addr, SERVER);
        self.connects.set(self.connects.get() + 1);
        let mut connections = self.connections.borrow_mut();
        if connections.is_empty() {
            return Err(NetError::ConnectionRefused);
        }
        Ok(Connection {
            from_server: connections.remove(0),
            read: 0,
            chunk: self.chunk,
            requests: self.requests.clone(),
        })
    }
    async fn udp_bind(&self, _: SocketAddr) -> Result<NoUdp, NetError> {
        Err(NetError::Unreachable)
    }
}

fuzz_target!(|bytes: &[u8]| {
    let [chunk, limit, rest @ ..] = bytes else {
        return;
    };
    let mut connections = Vec::new();
    let mut rest = rest;
    while connections.len() < 4 && rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        connections.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    let requests = Rc::new(RefCell::new(Vec::new()));
    let server = Server {
        connections: RefCell::new(connections),
        chunk: if *chunk == 0 {
            usize::MAX
        } else {
            usize::from(*chunk)
        },
        requests: requests.clone(),
        connects: Cell::new(0),
    };
    let executor = Executor::new(Rc::new(SimTime::default()));
    let mut client = Client::new(&server, SERVER, "example.test");
    if limit % 2 == 1 {
        client.max_response_bytes = usize::from(*limit) * 64;
    }
    let max = client.max_response_bytes;
    executor.block_on(async {
        for path in ["/", "/a", "/b?c=d", "/e"] {
            let connects = server.connects.get();
            let reused = client.is_connected();
            match client.get(path).await {
                Ok(response) => {
                    assert!((100..600).contains(&response.status));
                    assert!(response.body.len() <= max, "a body over the limit");
                    let lengths: Vec<&str> = response
                        .headers
                        .iter()
                        .filter(|(name, _)| name == "content-length")
                        .map(|(_, value)| value.trim())
                        .collect();
                    for length in &lengths {
                        assert!(
                            !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()),
                            "Content-Length {length:?} accepted"
                        );
                        assert_eq!(
                            length.parse::<usize>().ok(),
                            Some(response.body.len()),
                            "a body of {} bytes for Content-Length {length}",
                            response.body.len()
                        );
                    }
                    if lengths.is_empty() {
                        assert!(response.body.is_empty());
                    }
                }
                Err(
                    ClientError::Net(_)
                    | ClientError::BadResponse(_)
                    | ClientError::TooLarge
                    | ClientError::Tls(_)
                    | ClientError::BadUrl(_),
                ) => {
                    assert!(!client.is_connected(), "a failed connection kept");
                }
            }
            // At most a reconnect after a reused connection failed.
            let opened = server.connects.get() - connects;
            assert!(
                opened <= 1 + usize::from(reused),
                "{opened} connections for a GET"
            );
        }
    });
    let requests = requests.borrow();
    let text = std::str::from_utf8(&requests).expect("ASCII requests");
    for request in text.split_terminator("\r\n\r\n") {
        assert!(request.starts_with("GET /"), "{request:?}");
        assert!(request.contains("\r\nHost: example.test"), "{request:?}");
    }
});
