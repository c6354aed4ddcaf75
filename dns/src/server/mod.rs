//! The authoritative server's serving loops: DNS over UDP and over TCP
//! (RFC 1035 4.2, RFC 7766), generic over the [`Stack`] trait.
//!
//! What a query gets in answer is the [`Responder`]'s business; these loops
//! move messages:
//!
//! - UDP: one datagram in, at most one out, through two buffers allocated
//!   when the loop starts: nothing is allocated per query.
//! - TCP: messages behind a two-byte length (RFC 1035 4.2.2); several
//!   queries may come one after another on a connection without waiting
//!   (pipelining, RFC 7766 6.2.1.1), and each is answered as it is read, in
//!   order. A connection idle for [`Config::idle_timeout`] (or holding half
//!   a message that long) is closed; so is one announcing a message longer
//!   than [`Config::max_tcp_query`]; past [`Config::max_connections`] a new
//!   connection is closed at once. A zone transfer (AXFR) goes out as a
//!   stream of messages.
//! - Every query can be logged ([`Config::log_queries`]): one line through
//!   `log` with the peer, the name, the type, the response code and the
//!   response's size.
//!
//! ```no_run
//! # use lamina_dns::server::{Config, Responder, Server};
//! # use lamina_core::device::Stack;
//! # use lamina_core::runtime::Handle;
//! # async fn run<S: Stack, R: Responder + 'static>(stack: &S, responder: R, runtime: Handle)
//! # where S::UdpSocket: 'static, S::TcpListener: 'static, S::TcpStream: 'static {
//! let address = "0.0.0.0:53".parse().unwrap();
//! let config = Config { log_queries: true, ..Config::default() };
//! let server = Server::bind(stack, address, responder, runtime, config).await.unwrap();
//! server.run().await;
//! # }
//! ```

mod answer;
mod querylog;
mod tcp;
mod udp;

use alloc::rc::Rc;
use core::net::{IpAddr, SocketAddr};
use lamina_core::device::{NetError, Stack, TcpListener, UdpSocket};
use lamina_core::runtime::{Duration, Handle};

pub use answer::{
    Authority, AxfrTransfer, PeerPrefix, PeerPrefixError, DEFAULT_EDNS_PAYLOAD, MAX_CNAME_CHAIN,
};
pub use querylog::QueryLine;
pub use udp::serve as serve_udp;

/// The transport a query came over: it bounds the response (a UDP answer
/// must fit the requester's payload size, a TCP answer 65535 bytes) and
/// only TCP carries zone transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

/// Turns queries into responses: what the serving loops call for each
/// message. [`Authority`] is the server's; tests use smaller ones.
pub trait Responder {
    /// The messages of one zone transfer.
    type Transfer<'a>: Transfer
    where
        Self: 'a;

    /// Writes the response to `query`, which came from `peer` over
    /// `transport`, into `out` and returns its length; `None` when the
    /// query deserves no answer at all (too short for a header, a
    /// response). A response never exceeds `out`: the loops give a UDP
    /// responder the largest datagram they send, a TCP one 65535 bytes.
    fn respond(
        &self,
        query: &[u8],
        transport: Transport,
        peer: IpAddr,
        out: &mut [u8],
    ) -> Option<usize>;

    /// The transfer `query` asks for, if it is a zone transfer that `peer`
    /// may have (asked over TCP); `None` for every other query, and for a
    /// transfer not allowed, which [`Responder::respond`] then answers
    /// (REFUSED).
    fn transfer(&self, query: &[u8], peer: IpAddr) -> Option<Self::Transfer<'_>>;
}

/// The messages of a zone transfer, produced one at a time so that a large
/// zone is never held as one block.
pub trait Transfer {
    /// Writes the next message into `out` (65535 bytes) and returns its
    /// length; `None` after the last.
    fn next_message(&mut self, out: &mut [u8]) -> Option<usize>;
}

/// The serving loops' limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// A TCP connection with no complete query for this long is closed:
    /// idle between queries, or holding half a message (RFC 7766 6.2.3
    /// suggests about 10 seconds). Also the longest a response may wait
    /// for a client that does not read it.
    pub idle_timeout: Duration,
    /// The most TCP connections served at once; one more is closed as soon
    /// as it is accepted (RFC 7766 6.2.2).
    pub max_connections: usize,
    /// The longest query taken over TCP, in bytes; a connection announcing
    /// a longer message is closed. A query is a header, a question and an
    /// OPT record: a few hundred bytes.
    pub max_tcp_query: usize,
    /// The largest UDP response sent, in bytes: an upper bound on the
    /// payload size requesters offer in EDNS(0). 1232 (DNS Flag Day 2020)
    /// fits any path's MTU without fragmenting.
    pub max_udp_payload: usize,
    /// Logs one line per query (see [`QueryLine`]).
    pub log_queries: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Duration::from_secs(10),
            max_connections: 100,
            max_tcp_query: 4096,
            max_udp_payload: 1232,
            log_queries: false,
        }
    }
}

/// The largest DNS message (the two-byte length of RFC 1035 4.2.2).
pub const MAX_MESSAGE: usize = 65535;

/// A DNS server bound to a UDP socket and a TCP listener on one address.
pub struct Server<S: Stack, R> {
    udp: S::UdpSocket,
    tcp: S::TcpListener,
    responder: Rc<R>,
    runtime: Handle,
    config: Config,
}

impl<S, R> Server<S, R>
where
    S: Stack,
    S::UdpSocket: 'static,
    S::TcpStream: 'static,
    R: Responder + 'static,
{
    /// Binds UDP and TCP on `address`. With port 0, TCP picks a port and
    /// UDP takes the same one.
    pub async fn bind(
        stack: &S,
        address: SocketAddr,
        responder: R,
        runtime: Handle,
        config: Config,
    ) -> Result<Self, NetError> {
        let tcp = stack.tcp_listen(address).await?;
        let udp_address = SocketAddr::new(address.ip(), tcp.local_addr().port());
        let udp = stack.udp_bind(udp_address).await?;
        Ok(Server {
            udp,
            tcp,
            responder: Rc::new(responder),
            runtime,
            config,
        })
    }

    /// The address served (TCP's and UDP's).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr()
    }

    /// Serves UDP (a task of its own) and TCP (one task per connection)
    /// for ever.
    pub async fn run(self) {
        log::info!(
            "dns: serving UDP {} and TCP {}",
            self.udp.local_addr(),
            self.tcp.local_addr()
        );
        self.runtime.spawn(serve_udp(
            self.udp,
            self.responder.clone(),
            self.runtime.clone(),
            self.config.clone(),
        ));
        tcp::serve(self.tcp, self.responder, self.runtime, Rc::new(self.config)).await
    }
}
