//! The far end of the [`Stack`](crate::stack) suite, written once against
//! the [`Stack`] trait: the unix target runs it on the host's sockets (the
//! Linux kernel's TCP), the simulated network on a second lamina-net stack.
//!
//! It serves TCP and UDP on one port. UDP datagrams are echoed to their
//! sender. A TCP connection opens with a command line:
//!
//! | command | what the peer does |
//! |---------|--------------------|
//! | `echo` | writes back what it reads; at end of stream, shuts down |
//! | `source N` | writes N bytes of [`pattern`]`(N, 5)`, shuts down, reads to the end |
//! | `reset` | waits 100 ms and drops the connection with unread data: RST |
//! | `connect PORT` | connects to PORT at the caller's address, writes `hello from peer`, shuts down, reads to the end, then answers `ok N` (N bytes read) or `err WHY` on the command's connection |
//! | `closed` | listens on port 0, stops, and answers the port: nothing listens there |
//! | `close-probe N` | writes N bytes, then reads until the caller closes, and keeps how the connection ended: `fin` (end of stream) or `reset` |
//! | `probe-result` | answers how the last `close-probe` connection ended (waiting up to 5 s for it to end) |
//! | `stall` | reads nothing for 10 s, then drops the connection |

use crate::pattern;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use core::cell::RefCell;
use core::net::{Ipv4Addr, SocketAddr};
use lamina_core::device::{NetError, Stack, TcpListener, TcpRead, TcpWrite, UdpSocket};
use lamina_core::runtime::{Duration, Handle};

/// How the last `close-probe` connection ended, shared by the connections.
type ProbeResult = Rc<RefCell<Option<&'static str>>>;

/// The port the peer serves on by default (TCP and UDP).
pub const PORT: u16 = 7070;

/// What [`serve`] writes to a connection asked to `connect` back.
pub const GREETING: &[u8] = b"hello from peer";

/// Serves the commands on `port` (TCP and UDP, every address) until an
/// error stops the listener; each connection runs as a task of its own.
pub async fn serve<S>(stack: S, runtime: Handle, port: u16) -> Result<(), NetError>
where
    S: Stack + Clone + 'static,
{
    Peer::bind(stack, port).await?.serve(runtime).await
}

/// A peer bound to its port, not serving yet: [`Peer::port`] tells the
/// port when it was bound to port 0.
pub struct Peer<S: Stack> {
    stack: S,
    listener: S::TcpListener,
    udp: S::UdpSocket,
}

impl<S: Stack + Clone + 'static> Peer<S> {
    /// Binds TCP and UDP on `port` (0: a free port, the same for both).
    pub async fn bind(stack: S, port: u16) -> Result<Self, NetError> {
        let listener = stack
            .tcp_listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .await?;
        let port = listener.local_addr().port();
        let udp = stack
            .udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .await?;
        Ok(Peer {
            stack,
            listener,
            udp,
        })
    }

    /// The port served.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().port()
    }

    /// Serves until accepting fails for good.
    pub async fn serve(self, runtime: Handle) -> Result<(), NetError> {
        let Peer {
            stack,
            listener,
            udp,
        } = self;
        let probe = ProbeResult::default();
        runtime.spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match udp.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if let Err(e) = udp.send_to(&buf[..n], from).await {
                            lamina_core::log::warn!("peer: udp echo to {from}: {e}");
                        }
                    }
                    Err(e) => lamina_core::log::warn!("peer: udp: {e}"),
                }
            }
        });
        loop {
            let (conn, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(NetError::NoBuffers) => {
                    runtime.sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (stack, rt, probe) = (stack.clone(), runtime.clone(), probe.clone());
            runtime.spawn(async move {
                if let Err(e) = handle(conn, &stack, &rt, &probe).await {
                    lamina_core::log::info!("peer: connection from {from}: {e}");
                }
            });
        }
    }
}

/// Reads one command line, a byte at a time so that nothing after it is
/// taken from the stream.
async fn command_line<T: TcpRead>(conn: &mut T) -> Result<String, NetError> {
    let mut line = String::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        conn.read_exact(&mut byte).await?;
        if byte[0] == b'\n' {
            return Ok(line);
        }
        line.push(byte[0] as char);
    }
    Err(NetError::TooLarge)
}

/// Reads until end of stream; returns how many bytes came.
async fn drain<T: TcpRead>(conn: &mut T) -> Result<usize, NetError> {
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    loop {
        match conn.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

async fn handle<S: Stack>(
    mut conn: S::TcpStream,
    stack: &S,
    runtime: &Handle,
    probe: &ProbeResult,
) -> Result<(), NetError> {
    let line = command_line(&mut conn).await?;
    let mut words = line.split(' ');
    match (
        words.next(),
        words.next().and_then(|n| n.parse::<usize>().ok()),
    ) {
        (Some("echo"), None) => {
            let mut buf = vec![0u8; 16384];
            loop {
                match conn.read(&mut buf).await? {
                    0 => return conn.shutdown().await,
                    n => conn.write_all(&buf[..n]).await?,
                }
            }
        }
        (Some("source"), Some(len)) => {
            conn.write_all(&pattern(len, 5)).await?;
            conn.shutdown().await?;
            drain(&mut conn).await.map(drop)
        }
        (Some("reset"), None) => {
            runtime.sleep(Duration::from_millis(100)).await;
            drop(conn); // unread data remains: RST
            Ok(())
        }
        (Some("connect"), Some(port)) => {
            let port = u16::try_from(port).map_err(|_| NetError::InvalidAddress)?;
            let back = SocketAddr::new(conn.peer_addr().ip(), port);
            let answer = match connect_back(stack, back).await {
                Ok(n) => format!("ok {n}\n"),
                Err(e) => format!("err {e}\n"),
            };
            conn.write_all(answer.as_bytes()).await?;
            conn.shutdown().await?;
            drain(&mut conn).await.map(drop)
        }
        (Some("close-probe"), Some(len)) => {
            *probe.borrow_mut() = None;
            conn.write_all(&pattern(len, 6)).await?;
            let ended = match drain(&mut conn).await {
                Ok(_) => "fin",
                Err(NetError::ConnectionReset) => "reset",
                Err(_) => "error",
            };
            *probe.borrow_mut() = Some(ended);
            Ok(())
        }
        (Some("probe-result"), None) => {
            let mut waited = 0;
            let ended = loop {
                if let Some(ended) = *probe.borrow() {
                    break ended;
                }
                if waited == 50 {
                    break "still open";
                }
                runtime.sleep(Duration::from_millis(100)).await;
                waited += 1;
            };
            conn.write_all(format!("{ended}\n").as_bytes()).await?;
            conn.shutdown().await?;
            drain(&mut conn).await.map(drop)
        }
        (Some("stall"), None) => {
            runtime.sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        (Some("closed"), None) => {
            let at = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
            let port = stack.tcp_listen(at).await?.local_addr().port();
            conn.write_all(format!("{port}\n").as_bytes()).await?;
            conn.shutdown().await?;
            drain(&mut conn).await.map(drop)
        }
        _ => {
            conn.write_all(b"err unknown command\n").await?;
            conn.shutdown().await
        }
    }
}

async fn connect_back<S: Stack>(stack: &S, to: SocketAddr) -> Result<usize, NetError> {
    let mut conn = stack.tcp_connect(to).await?;
    conn.write_all(GREETING).await?;
    conn.shutdown().await?;
    drain(&mut conn).await
}
