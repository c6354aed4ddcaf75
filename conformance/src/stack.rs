//! The [`Stack`] suite: TCP and UDP against a [`peer`](crate::peer) serving
//! at `peer` (an address of another host, or of this one over loopback).

use crate::peer::GREETING;
use crate::{ensure, pattern, Report};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use lamina_core::device::{NetError, Stack, TcpListener, TcpRead, TcpStream, TcpWrite, UdpSocket};
use lamina_core::runtime::{Duration, Handle};

/// Bytes sent through the echo while reading and writing at once: more
/// than the send and receive buffers of both ends hold, so a client that
/// wrote everything before reading would stall.
const DUPLEX_BYTES: usize = 1 << 20;

/// Longest a check may take before it counts as failed.
const CHECK_LIMIT: Duration = Duration::from_secs(20);

type Outcome = Result<(), String>;

/// Runs every check of the suite on `stack` against the peer at `peer`.
pub async fn run<S: Stack>(stack: &S, runtime: &Handle, peer: SocketAddr) -> Report {
    let mut report = Report::new("Stack");
    let t = Tester {
        stack,
        runtime,
        peer,
    };
    macro_rules! check {
        ($name:expr, $body:expr) => {
            let outcome = t.limited($body).await;
            report.record($name, outcome);
        };
    }
    check!(
        "tcp: listen on port 0 picks a port that local_addr reports",
        t.listen_port_zero()
    );
    check!(
        "tcp: listening on a port in use is AddressInUse",
        t.listen_twice()
    );
    check!(
        "tcp: connect to port 0 or an unspecified address is InvalidAddress",
        t.connect_invalid()
    );
    check!(
        "tcp: connect to a closed port is ConnectionRefused",
        t.connect_refused()
    );
    check!(
        "tcp: connect gives the stream the address connected to",
        t.connect_peer_addr()
    );
    check!(
        "tcp: bytes arrive in order, unlost, while split halves read and write at once",
        t.duplex_echo()
    );
    check!(
        "tcp: reads may be partial, never more than the buffer",
        t.partial_reads()
    );
    check!("tcp: end of stream reads 0, and 0 again", t.end_of_stream());
    check!(
        "tcp: empty buffers read and write 0 bytes",
        t.empty_buffers()
    );
    check!(
        "tcp: after shutdown writes are Closed, reads go on to the peer's FIN",
        t.shutdown_half_closes()
    );
    check!(
        "tcp: dropping the write half sends FIN, the read half reads on",
        t.dropping_write_half()
    );
    check!(
        "tcp: a connection the peer reset reads as ConnectionReset",
        t.peer_reset()
    );
    check!(
        "tcp: dropping a stream sends FIN, or RST if unread data remains",
        t.dropping_closes()
    );
    check!(
        "tcp: write waits while the send buffer is full, buffering a bounded amount",
        t.back_pressure()
    );
    check!(
        "tcp: accept gives the connecting peer's address, as peer_addr does",
        t.accept_from_peer()
    );
    check!(
        "tcp: dropping a listener stops listening",
        t.dropped_listener_refuses()
    );
    check!(
        "udp: bind on port 0 picks a port that local_addr reports",
        t.udp_port_zero()
    );
    check!(
        "udp: binding a port in use is AddressInUse",
        t.udp_bind_twice()
    );
    check!("udp: datagrams keep their boundaries", t.udp_boundaries());
    check!(
        "udp: a datagram longer than the buffer is truncated to it",
        t.udp_truncation()
    );
    check!(
        "udp: a datagram over 65507 bytes is TooLarge",
        t.udp_too_large()
    );
    report
}

struct Tester<'a, S> {
    stack: &'a S,
    runtime: &'a Handle,
    peer: SocketAddr,
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

fn failed(what: &str) -> impl Fn(NetError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn read_to_end<T: TcpRead>(conn: &mut T, buf_len: usize) -> Result<Vec<u8>, String> {
    let mut back = Vec::new();
    let mut buf = vec![0u8; buf_len];
    loop {
        match conn.read(&mut buf).await.map_err(failed("read"))? {
            0 => return Ok(back),
            n if n > buf_len => return Err(format!("read returned {n} into {buf_len} bytes")),
            n => back.extend_from_slice(&buf[..n]),
        }
    }
}

impl<S: Stack> Tester<'_, S> {
    async fn limited(&self, check: impl Future<Output = Outcome>) -> Outcome {
        self.runtime
            .timeout(CHECK_LIMIT, check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_LIMIT:?}")))
    }

    /// A connection to the peer that has sent `command`.
    async fn command(&self, command: &str) -> Result<S::TcpStream, String> {
        let mut conn = self
            .stack
            .tcp_connect(self.peer)
            .await
            .map_err(failed("connect"))?;
        conn.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(failed("write command"))?;
        Ok(conn)
    }

    async fn listen_port_zero(&self) -> Outcome {
        let first = self
            .stack
            .tcp_listen(any(0))
            .await
            .map_err(failed("listen"))?;
        let second = self
            .stack
            .tcp_listen(any(0))
            .await
            .map_err(failed("listen"))?;
        let (a, b) = (first.local_addr().port(), second.local_addr().port());
        ensure(a != 0 && b != 0 && a != b, || format!("ports {a} and {b}"))
    }

    async fn listen_twice(&self) -> Outcome {
        let first = self
            .stack
            .tcp_listen(any(0))
            .await
            .map_err(failed("listen"))?;
        let again = self.stack.tcp_listen(first.local_addr()).await.err();
        ensure(again == Some(NetError::AddressInUse), || {
            format!("second listen on {}: {again:?}", first.local_addr())
        })
    }

    async fn connect_invalid(&self) -> Outcome {
        let port_zero = self
            .stack
            .tcp_connect(SocketAddr::new(self.peer.ip(), 0))
            .await
            .err();
        let unspecified = self.stack.tcp_connect(any(self.peer.port())).await.err();
        ensure(
            port_zero == Some(NetError::InvalidAddress)
                && unspecified == Some(NetError::InvalidAddress),
            || format!("port 0: {port_zero:?}, 0.0.0.0: {unspecified:?}"),
        )
    }

    async fn connect_refused(&self) -> Outcome {
        let mut conn = self.command("closed").await?;
        let answer = read_to_end(&mut conn, 64).await?;
        let port: u16 = core::str::from_utf8(&answer)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("the peer answered {answer:?}"))?;
        let refused = self
            .stack
            .tcp_connect(SocketAddr::new(self.peer.ip(), port))
            .await
            .err();
        ensure(refused == Some(NetError::ConnectionRefused), || {
            format!("connect to closed port {port}: {refused:?}")
        })
    }

    async fn connect_peer_addr(&self) -> Outcome {
        let conn = self.command("echo").await?;
        let (reader, _) = conn.into_split();
        ensure(reader.peer_addr() == self.peer, || {
            format!(
                "peer_addr {} after connecting to {}",
                reader.peer_addr(),
                self.peer
            )
        })
    }

    async fn duplex_echo(&self) -> Outcome {
        let conn = self.command("echo").await?;
        let (mut reader, mut writer) = conn.into_split();
        let data = pattern(DUPLEX_BYTES, 1);
        let sent = data.clone();
        let writing = self.runtime.spawn(async move {
            let result = writer.write_all(&sent).await;
            // Dropping the write half sends FIN; the echo then ends.
            drop(writer);
            result
        });
        let reading = self
            .runtime
            .spawn(async move { read_to_end(&mut reader, 7000).await });
        writing.await.map_err(failed("write"))?;
        let back = reading.await?;
        ensure(back == data, || {
            let first = back.iter().zip(&data).position(|(a, b)| a != b);
            format!(
                "{} bytes came back of {}, first difference at {first:?}",
                back.len(),
                data.len()
            )
        })
    }

    async fn partial_reads(&self) -> Outcome {
        let mut conn = self.command("source 10000").await?;
        let back = read_to_end(&mut conn, 7).await?;
        ensure(back == pattern(10000, 5), || {
            format!("{} bytes, not the source's", back.len())
        })
    }

    async fn end_of_stream(&self) -> Outcome {
        let mut conn = self.command("source 3").await?;
        let back = read_to_end(&mut conn, 64).await?;
        let mut buf = [0u8; 8];
        let again = (conn.read(&mut buf).await, conn.read(&mut buf).await);
        ensure(back == pattern(3, 5) && again == (Ok(0), Ok(0)), || {
            format!("{back:?}, then {again:?}")
        })
    }

    async fn empty_buffers(&self) -> Outcome {
        let mut conn = self.command("echo").await?;
        let read = conn.read(&mut []).await;
        let wrote = conn.write(&[]).await;
        ensure(read == Ok(0) && wrote == Ok(0), || {
            format!("read {read:?}, write {wrote:?}")
        })
    }

    async fn shutdown_half_closes(&self) -> Outcome {
        let mut conn = self.command("echo").await?;
        conn.write_all(b"abc").await.map_err(failed("write"))?;
        conn.shutdown().await.map_err(failed("shutdown"))?;
        let after = conn.write(b"more").await;
        let twice = conn.shutdown().await;
        let back = read_to_end(&mut conn, 64).await?;
        ensure(
            after == Err(NetError::Closed) && twice.is_ok() && back == b"abc",
            || format!("write after shutdown: {after:?}, shutdown again: {twice:?}, echo {back:?}"),
        )
    }

    async fn dropping_write_half(&self) -> Outcome {
        let conn = self.command("echo").await?;
        let (mut reader, mut writer) = conn.into_split();
        writer.write_all(b"xyz").await.map_err(failed("write"))?;
        drop(writer);
        let back = read_to_end(&mut reader, 64).await?;
        ensure(back == b"xyz", || format!("echo {back:?}"))
    }

    async fn peer_reset(&self) -> Outcome {
        // The bytes after the command stay unread: the peer's close resets.
        let mut conn = self.command("reset\nunread").await?;
        let mut buf = [0u8; 16];
        let read = conn.read(&mut buf).await;
        ensure(read == Err(NetError::ConnectionReset), || {
            format!("read {read:?}")
        })
    }

    /// How the peer saw a connection end that we dropped after `unread`
    /// bytes from it arrived unread.
    async fn close_probe(&self, unread: usize) -> Result<String, String> {
        let conn = self.command(&format!("close-probe {unread}")).await?;
        // Let the peer's bytes arrive before the drop.
        self.runtime.sleep(Duration::from_millis(300)).await;
        drop(conn);
        let mut result = self.command("probe-result").await?;
        let answer = read_to_end(&mut result, 64).await?;
        Ok(String::from_utf8_lossy(&answer).trim().into())
    }

    async fn dropping_closes(&self) -> Outcome {
        let clean = self.close_probe(0).await?;
        let unread = self.close_probe(100).await?;
        ensure(clean == "fin" && unread == "reset", || {
            format!(
                "the peer saw '{clean}' after a clean drop, '{unread}' after one with unread data"
            )
        })
    }

    async fn back_pressure(&self) -> Outcome {
        /// Far more than any send and receive buffers hold together.
        const UNBOUNDED: usize = 64 << 20;
        let mut conn = self.command("stall").await?;
        let chunk = vec![0x55u8; 65536];
        let mut accepted = 0;
        while accepted < UNBOUNDED {
            let wrote = self
                .runtime
                .timeout(Duration::from_millis(500), conn.write(&chunk))
                .await;
            match wrote {
                Ok(Ok(n)) => accepted += n,
                Ok(Err(e)) => return Err(format!("write after {accepted} bytes: {e}")),
                Err(_) => return Ok(()), // waiting: the buffers are full
            }
        }
        Err(format!(
            "{accepted} bytes accepted while the peer read nothing"
        ))
    }

    async fn accept_from_peer(&self) -> Outcome {
        let listener = self
            .stack
            .tcp_listen(any(0))
            .await
            .map_err(failed("listen"))?;
        let port = listener.local_addr().port();
        let mut control = self.command(&format!("connect {port}")).await?;
        let (mut conn, from) = listener.accept().await.map_err(failed("accept"))?;
        let greeting = read_to_end(&mut conn, 64).await?;
        conn.write_all(b"thanks").await.map_err(failed("write"))?;
        conn.shutdown().await.map_err(failed("shutdown"))?;
        let answer = read_to_end(&mut control, 64).await?;
        ensure(
            from == conn.peer_addr()
                && from.ip() == self.peer.ip()
                && greeting == GREETING
                && answer == b"ok 6\n",
            || {
                format!(
                    "accepted from {from}, peer_addr {}, peer at {}; read {:?}; the peer says {:?}",
                    conn.peer_addr(),
                    self.peer.ip(),
                    String::from_utf8_lossy(&greeting),
                    String::from_utf8_lossy(&answer)
                )
            },
        )
    }

    async fn dropped_listener_refuses(&self) -> Outcome {
        let listener = self
            .stack
            .tcp_listen(any(0))
            .await
            .map_err(failed("listen"))?;
        let port = listener.local_addr().port();
        drop(listener);
        let mut control = self.command(&format!("connect {port}")).await?;
        let answer = read_to_end(&mut control, 64).await?;
        ensure(answer == b"err connection refused\n", || {
            format!(
                "the peer's connect to the dropped listener: {:?}",
                String::from_utf8_lossy(&answer)
            )
        })
    }

    async fn udp_port_zero(&self) -> Outcome {
        let a = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        let b = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        let (pa, pb) = (a.local_addr().port(), b.local_addr().port());
        ensure(pa != 0 && pb != 0 && pa != pb, || {
            format!("ports {pa} and {pb}")
        })
    }

    async fn udp_bind_twice(&self) -> Outcome {
        let a = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        let again = self.stack.udp_bind(any(a.local_addr().port())).await.err();
        ensure(again == Some(NetError::AddressInUse), || {
            format!("second bind: {again:?}")
        })
    }

    /// Sends `datagram` to the peer's echo until it comes back (UDP may
    /// lose it), reading into `buf_len` bytes; returns what came back.
    async fn udp_echo(
        &self,
        socket: &S::UdpSocket,
        datagram: &[u8],
        buf_len: usize,
    ) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; buf_len];
        for _ in 0..5 {
            socket
                .send_to(datagram, self.peer)
                .await
                .map_err(failed("send_to"))?;
            let received = self
                .runtime
                .timeout(Duration::from_secs(1), socket.recv_from(&mut buf))
                .await;
            match received {
                Ok(Ok((n, from))) if from == self.peer => return Ok(buf[..n].to_vec()),
                Ok(Ok((_, from))) => return Err(format!("a datagram from {from}")),
                Ok(Err(e)) => return Err(format!("recv_from: {e}")),
                Err(_) => continue, // lost: send again
            }
        }
        Err("no echo after 5 tries".into())
    }

    async fn udp_boundaries(&self) -> Outcome {
        let socket = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        for len in [1, 100, 1472] {
            let datagram = pattern(len, len as u8);
            let back = self.udp_echo(&socket, &datagram, 2048).await?;
            if back != datagram {
                return Err(format!("sent {len} bytes, got {} back", back.len()));
            }
        }
        Ok(())
    }

    async fn udp_truncation(&self) -> Outcome {
        let socket = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        let long = pattern(1000, 3);
        let back = self.udp_echo(&socket, &long, 100).await?;
        // The rest of the long datagram is gone: the next read is the next datagram.
        let next = self.udp_echo(&socket, b"next", 2048).await?;
        ensure(back == long[..100] && next == b"next", || {
            format!(
                "{} bytes of the long one, then {:?}",
                back.len(),
                String::from_utf8_lossy(&next)
            )
        })
    }

    async fn udp_too_large(&self) -> Outcome {
        let socket = self.stack.udp_bind(any(0)).await.map_err(failed("bind"))?;
        let sent = socket.send_to(&vec![0u8; 65508], self.peer).await;
        ensure(sent == Err(NetError::TooLarge), || {
            format!("send_to: {sent:?}")
        })
    }
}

/// The peer's address as a stack under test sees it, for hosts that know
/// only the IP: `peer::PORT` on `ip`.
pub fn peer_at(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, crate::peer::PORT)
}
