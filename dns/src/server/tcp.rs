//! DNS over TCP (RFC 1035 4.2.2, RFC 7766): length-prefixed messages,
//! pipelined queries, idle timeout, a limit on connections, zone transfers
//! as streams of messages.

use super::{Config, QueryLine, Responder, Transfer, Transport, MAX_MESSAGE};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::net::SocketAddr;
use lamina_core::device::{NetError, TcpListener, TcpStream};
use lamina_core::runtime::{Duration, Handle, Instant};

/// Answers are gathered and written together up to about this many bytes:
/// pipelined queries read in one go are answered in one write.
const FLUSH_AT: usize = 16 * 1024;

/// The input buffer a connection starts with; it grows to hold a longer
/// message, up to [`Config::max_tcp_query`].
const INPUT_START: usize = 1024;

/// Accepts connections on `listener` and serves each as a task of its own,
/// for ever.
pub(super) async fn serve<L, R>(listener: L, responder: Rc<R>, runtime: Handle, config: Rc<Config>)
where
    L: TcpListener,
    L::Stream: 'static,
    R: Responder + 'static,
{
    let open = Rc::new(Cell::new(0usize));
    // One response buffer of the largest message for every connection: a
    // response is made in it without waiting, then copied out, so no
    // connection holds 64 KiB of its own.
    let scratch = Rc::new(RefCell::new(vec![0u8; MAX_MESSAGE]));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of sockets or memory: give the others time to finish.
                log::warn!("dns: TCP accept failed: {e}");
                runtime.sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= config.max_connections {
            log::debug!(
                "dns: TCP connection from {peer} closed: {} open already",
                config.max_connections
            );
            drop(stream);
            continue;
        }
        let connection = Connection {
            stream,
            peer,
            responder: responder.clone(),
            runtime: runtime.clone(),
            config: config.clone(),
            scratch: scratch.clone(),
            _slot: Slot::take(&open),
            output: Vec::new(),
            idle_since: runtime.now(),
        };
        runtime.spawn(connection.run());
    }
}

/// One of the [`Config::max_connections`] places, given back on drop.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(open: &Rc<Cell<usize>>) -> Slot {
        open.set(open.get() + 1);
        Slot(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Why a connection was closed from this side.
#[derive(Debug, PartialEq, Eq)]
enum Closed {
    /// No whole query arrived within the idle timeout.
    Idle,
    /// A response was not taken by the client within the idle timeout.
    WriteStalled,
    /// The client closed its side in the middle of a message.
    HalfMessage,
    /// The client announced a message longer than the limit.
    TooLong(usize),
    /// The stack reported an error (a reset, say).
    Net(NetError),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Idle => f.write_str("idle too long"),
            Closed::WriteStalled => f.write_str("does not read its answers"),
            Closed::HalfMessage => f.write_str("closed in the middle of a message"),
            Closed::TooLong(len) => write!(f, "announced a {len}-byte message"),
            Closed::Net(e) => write!(f, "{e}"),
        }
    }
}

impl From<NetError> for Closed {
    fn from(e: NetError) -> Self {
        Closed::Net(e)
    }
}

/// The length of the whole message at the start of `input`, with its
/// two-byte prefix, if all of it is there.
fn whole_message(input: &[u8]) -> Option<usize> {
    let prefix = input.get(..2)?;
    let total = 2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    (input.len() >= total).then_some(total)
}

struct Connection<T, R> {
    stream: T,
    peer: SocketAddr,
    responder: Rc<R>,
    runtime: Handle,
    config: Rc<Config>,
    scratch: Rc<RefCell<Vec<u8>>>,
    _slot: Slot,
    /// Answers not yet written, each behind its length.
    output: Vec<u8>,
    /// When the last whole query arrived or the last answer went out (at
    /// first, when the connection was accepted): the idle timeout counts
    /// from here.
    idle_since: Instant,
}

impl<T: TcpStream, R: Responder> Connection<T, R> {
    async fn run(mut self) {
        match self.serve().await {
            // The client closed its side after whole messages: close ours.
            Ok(()) => {
                let idle = self.config.idle_timeout;
                let _ = self.runtime.timeout(idle, self.stream.shutdown()).await;
            }
            // Dropping the stream closes it (with a reset if the client's
            // bytes remain unread).
            Err(why) => log::debug!("dns: TCP {}: {why}", self.peer),
        }
    }

    /// Reads and answers messages until the client closes its side.
    async fn serve(&mut self) -> Result<(), Closed> {
        let mut input = vec![0u8; INPUT_START];
        let mut filled = 0;
        loop {
            // Answer every whole message read so far, in order.
            let mut start = 0;
            while let Some(total) = whole_message(&input[start..filled]) {
                self.idle_since = self.runtime.now();
                self.answer(&input[start + 2..start + total]).await?;
                start += total;
            }
            input.copy_within(start..filled, 0);
            filled -= start;
            self.flush().await?;
            // Room for the next message, once its length is known.
            if let Some(prefix) = input.get(..2).filter(|_| filled >= 2) {
                let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
                if len > self.config.max_tcp_query {
                    return Err(Closed::TooLong(len));
                }
                if input.len() < 2 + len {
                    input.resize(2 + len, 0);
                }
            }
            let deadline = self.idle_since + self.config.idle_timeout;
            let wait = deadline.saturating_duration_since(self.runtime.now());
            let read = self.stream.read(&mut input[filled..]);
            let n = match self.runtime.timeout(wait, read).await {
                Ok(read) => read?,
                Err(_) => return Err(Closed::Idle),
            };
            if n == 0 {
                return if filled == 0 {
                    Ok(())
                } else {
                    Err(Closed::HalfMessage)
                };
            }
            filled += n;
        }
    }

    /// Answers one query: appends its response, or the messages of the
    /// transfer it asks for, to the output.
    async fn answer(&mut self, query: &[u8]) -> Result<(), Closed> {
        let responder = self.responder.clone();
        let peer = self.peer;
        if let Some(mut transfer) = responder.transfer(query, peer.ip()) {
            let (mut messages, mut bytes) = (0usize, 0usize);
            loop {
                let len = {
                    let mut scratch = self.scratch.borrow_mut();
                    let Some(len) = transfer.next_message(&mut scratch) else {
                        break;
                    };
                    let message = &scratch[..len.min(MAX_MESSAGE)];
                    if messages == 0 && self.config.log_queries {
                        log::info!(
                            "{}",
                            QueryLine::new(peer, Transport::Tcp, query, Some(message))
                        );
                    }
                    push(&mut self.output, message);
                    message.len()
                };
                messages += 1;
                bytes += len;
                if self.output.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            if self.config.log_queries {
                log::info!("dns: transfer to {peer}: {messages} messages, {bytes} bytes");
            }
            return Ok(());
        }
        {
            let mut scratch = self.scratch.borrow_mut();
            let answer = responder.respond(query, Transport::Tcp, peer.ip(), &mut scratch);
            let answer = answer.map(|n| &scratch[..n.min(MAX_MESSAGE)]);
            if self.config.log_queries {
                log::info!("{}", QueryLine::new(peer, Transport::Tcp, query, answer));
            }
            if let Some(answer) = answer {
                push(&mut self.output, answer);
            }
        }
        if self.output.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the gathered answers; a client that takes none of them for
    /// the idle timeout is given up on.
    async fn flush(&mut self) -> Result<(), Closed> {
        if self.output.is_empty() {
            return Ok(());
        }
        let write = self.stream.write_all(&self.output);
        match self.runtime.timeout(self.config.idle_timeout, write).await {
            Ok(written) => written?,
            Err(_) => return Err(Closed::WriteStalled),
        }
        self.output.clear();
        self.idle_since = self.runtime.now();
        Ok(())
    }
}

/// Appends `message` behind its two-byte length.
fn push(output: &mut Vec<u8>, message: &[u8]) {
    output.extend_from_slice(&(message.len() as u16).to_be_bytes());
    output.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_messages_are_found_by_their_prefix() {
        assert_eq!(whole_message(b""), None);
        assert_eq!(whole_message(b"\x00"), None);
        assert_eq!(whole_message(b"\x00\x00"), Some(2));
        assert_eq!(whole_message(b"\x00\x03ab"), None);
        assert_eq!(whole_message(b"\x00\x03abcde"), Some(5));
        let mut output = Vec::new();
        push(&mut output, b"abc");
        push(&mut output, &[7u8; 300]);
        assert_eq!(&output[..5], b"\x00\x03abc");
        assert_eq!(&output[5..7], &[1, 44]);
        assert_eq!(output.len(), 5 + 302);
    }
}
