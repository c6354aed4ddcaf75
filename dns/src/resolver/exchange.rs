//! One query to one server and its response: the query's bytes, the UDP
//! exchange (a fresh socket on a random port, replies that do not match
//! ignored until the timeout), and the TCP one for a truncated answer
//! (RFC 1035 4.2.2's two-byte length, RFC 7766).
//!
//! A reply is believed only if it comes from the server's address and
//! port, is a response to a standard query, carries the query's ID and
//! repeats its question (RFC 5452 9.1); anything else is dropped and the
//! wait goes on, so that a spoofed datagram costs nothing but itself.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lamina_core::device::{NetError, Random, Stack, TcpRead, TcpWrite, UdpSocket};
use lamina_core::runtime::{Duration, Handle};

use super::ResolveError;
use crate::types::{Class, Opcode, Rcode, Rtype};
use crate::wire::{flags, Message, MessageBuilder, OptRepr, Section};

/// The largest UDP response taken: more than any payload size offered.
const UDP_BUFFER: usize = 4096;

/// Tries for a random source port before leaving the choice to the stack.
const PORT_TRIES: usize = 8;

/// One question, as asked.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// Uncompressed wire form.
    pub name: &'a [u8],
    /// The type.
    pub rtype: Rtype,
}

/// The bytes of a query with `id` for `question`, recursion desired; with
/// EDNS(0) offering `udp_payload_size` unless it is 0.
pub fn build_query(
    id: u16,
    question: Question<'_>,
    udp_payload_size: u16,
) -> Result<Vec<u8>, ResolveError> {
    let mut buf = vec![0u8; 512];
    let mut builder = MessageBuilder::new(&mut buf).map_err(|_| ResolveError::BadName)?;
    builder.header().set_id(id);
    builder.header().set_flag(flags::RD, true);
    builder
        .question(question.name, question.rtype, Class::IN)
        .map_err(|_| ResolveError::BadName)?;
    if udp_payload_size > 0 {
        let opt = OptRepr {
            udp_payload_size: udp_payload_size.max(512),
            version: 0,
            dnssec_ok: false,
        };
        builder.set_edns(opt).map_err(|_| ResolveError::BadName)?;
    }
    let len = builder.finish();
    buf.truncate(len);
    Ok(buf)
}

/// Whether `reply` answers the query with `id` for `question`: a response
/// to a standard query with the same ID and the same single question
/// (name compared without case). A FORMERR without a question matches on
/// its ID alone: servers that do not know EDNS answer so (RFC 6891 7).
pub fn answers(reply: &[u8], id: u16, question: Question<'_>) -> bool {
    let Ok(message) = Message::new_checked(reply) else {
        return false;
    };
    if !message.is_response() || message.id() != id || message.opcode() != Opcode::QUERY {
        return false;
    }
    if message.count(Section::Question) == 0 {
        return message.rcode() == Rcode::FORMERR;
    }
    if message.count(Section::Question) != 1 {
        return false;
    }
    match message.questions().next() {
        Some(Ok(asked)) => {
            asked.qtype == question.rtype
                && asked.qclass == Class::IN
                && asked.name.eq_wire_ignore_case(question.name)
        }
        _ => false,
    }
}

/// The unspecified address of `server`'s family, for the source.
fn any_address(server: SocketAddr) -> IpAddr {
    match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// A UDP socket for talking to `server`, on a random port above 1023 where
/// the stack lets one be chosen (a port in use is tried again), else on the
/// stack's choice.
async fn bind_random<S: Stack, R: Random>(
    stack: &S,
    random: &R,
    server: SocketAddr,
) -> Result<S::UdpSocket, NetError> {
    let address = any_address(server);
    for _ in 0..PORT_TRIES {
        let port = 1024 + (random.next_u64() % (65536 - 1024)) as u16;
        match stack.udp_bind(SocketAddr::new(address, port)).await {
            Err(NetError::AddressInUse) => continue,
            other => return other,
        }
    }
    stack.udp_bind(SocketAddr::new(address, 0)).await
}

/// A query ready to send: its ID, its question and its bytes.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The ID in its header.
    pub id: u16,
    /// What it asks.
    pub question: Question<'a>,
    /// The message.
    pub bytes: Vec<u8>,
}

/// What an exchange goes through: the stack, randomness for source ports,
/// the runtime's timers, and how long to wait for one response.
pub struct Link<'a, S, R> {
    /// The network.
    pub stack: &'a S,
    /// Source ports.
    pub random: &'a R,
    /// Timers.
    pub runtime: &'a Handle,
    /// The wait for one response (over TCP, for the whole exchange).
    pub timeout: Duration,
}

impl<S: Stack, R: Random> Link<'_, S, R> {
    /// Sends `query` to `server` over UDP and waits for its response.
    pub async fn udp(
        &self,
        server: SocketAddr,
        query: &Query<'_>,
    ) -> Result<Vec<u8>, ResolveError> {
        let socket = bind_random(self.stack, self.random, server)
            .await
            .map_err(ResolveError::Net)?;
        socket
            .send_to(&query.bytes, server)
            .await
            .map_err(ResolveError::Net)?;
        let deadline = self.runtime.now() + self.timeout;
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let left = deadline.saturating_duration_since(self.runtime.now());
            if left.is_zero() {
                return Err(ResolveError::TimedOut);
            }
            let (len, from) = match self.runtime.timeout(left, socket.recv_from(&mut buf)).await {
                Err(_) => return Err(ResolveError::TimedOut),
                Ok(Err(error)) => return Err(ResolveError::Net(error)),
                Ok(Ok(received)) => received,
            };
            if from == server && answers(&buf[..len], query.id, query.question) {
                buf.truncate(len);
                return Ok(buf);
            }
            log::debug!(
                "dns: ignored a reply from {from} that does not answer query {:#06x} to {server}",
                query.id
            );
        }
    }

    /// Asks `query` over a TCP connection to `server`.
    pub async fn tcp(
        &self,
        server: SocketAddr,
        query: &Query<'_>,
    ) -> Result<Vec<u8>, ResolveError> {
        let exchange = async {
            let mut stream = self.stack.tcp_connect(server).await?;
            let length = u16::try_from(query.bytes.len()).map_err(|_| NetError::TooLarge)?;
            let mut framed = Vec::with_capacity(2 + query.bytes.len());
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(&query.bytes);
            stream.write_all(&framed).await?;
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut reply).await?;
            Ok::<_, NetError>(reply)
        };
        match self.runtime.timeout(self.timeout, exchange).await {
            Err(_) => Err(ResolveError::TimedOut),
            Ok(Err(error)) => Err(ResolveError::Net(error)),
            Ok(Ok(reply)) if answers(&reply, query.id, query.question) => Ok(reply),
            Ok(Ok(_)) => Err(ResolveError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WWW: &[u8] = b"\x03www\x07example\x00";

    fn question() -> Question<'static> {
        Question {
            name: WWW,
            rtype: Rtype::AAAA,
        }
    }

    /// `query` turned into a response (QR set), unchanged otherwise.
    fn as_response(query: &[u8]) -> Vec<u8> {
        let mut reply = query.to_vec();
        reply[2] |= 0x80;
        reply
    }

    #[test]
    fn a_query_asks_recursion_with_edns_and_its_response_matches() {
        let query = build_query(0xbeef, question(), 1232).unwrap();
        let message = Message::new_checked(&query[..]).unwrap();
        assert!(message.recursion_desired() && !message.is_response());
        assert_eq!(message.edns().unwrap().unwrap().udp_payload_size, 1232);
        assert!(answers(&as_response(&query), 0xbeef, question()));
        let plain = build_query(7, question(), 0).unwrap();
        assert_eq!(plain.len(), 12 + WWW.len() + 4, "no OPT record");
    }

    #[test]
    fn replies_that_do_not_answer_the_query_are_not_believed() {
        let query = build_query(0xbeef, question(), 0).unwrap();
        assert!(!answers(&query, 0xbeef, question()), "not a response");
        assert!(
            !answers(&as_response(&query), 0xbeee, question()),
            "other ID"
        );
        let other_type = Question {
            rtype: Rtype::A,
            ..question()
        };
        assert!(!answers(&as_response(&query), 0xbeef, other_type));
        let other_name = Question {
            name: b"\x03www\x07exampld\x00",
            ..question()
        };
        assert!(!answers(&as_response(&query), 0xbeef, other_name));
        let mut shouted = as_response(&query);
        shouted[13..16].copy_from_slice(b"WwW");
        assert!(
            answers(&shouted, 0xbeef, question()),
            "case does not matter"
        );
        assert!(!answers(&as_response(&query)[..20], 0xbeef, question()));
        // No question: only a FORMERR (a server without EDNS) matches.
        let mut bare = as_response(&query)[..12].to_vec();
        bare[5] = 0;
        assert!(!answers(&bare, 0xbeef, question()));
        bare[3] = (bare[3] & 0xf0) | 1;
        assert!(answers(&bare, 0xbeef, question()));
    }
}
