//! The query log: one line per query, for an operator watching a server.

use crate::types::{Rcode, Rtype};
use crate::zone::name::Display as Name;
use core::fmt;
use core::net::SocketAddr;

use super::Transport;

/// One query's log line: `PEER udp|tcp NAME TYPE RCODE SIZE`, e.g.
/// `10.0.0.1:40000 udp www.example.com. A NOERROR 72`, read from the
/// query's question and the response's header. A query without a readable
/// question shows `-` for its name and type; one left unanswered shows
/// `-` for its code and size.
///
/// ```
/// # use lamina_dns::server::{QueryLine, Transport};
/// let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x00\x00\x01\x00\x01";
/// let mut response = query.to_vec();
/// response[2] |= 0x80;
/// response[3] = 3; // NXDOMAIN
/// let line = QueryLine::new("10.0.0.1:4000".parse().unwrap(), Transport::Udp, query, Some(&response));
/// assert_eq!(line.to_string(), "10.0.0.1:4000 udp www.example. A NXDOMAIN 29");
/// ```
pub struct QueryLine<'a> {
    peer: SocketAddr,
    transport: Transport,
    query: &'a [u8],
    response: Option<&'a [u8]>,
}

impl<'a> QueryLine<'a> {
    /// The line for `query` from `peer`, answered with `response` (or not).
    pub fn new(
        peer: SocketAddr,
        transport: Transport,
        query: &'a [u8],
        response: Option<&'a [u8]>,
    ) -> Self {
        QueryLine {
            peer,
            transport,
            query,
            response,
        }
    }
}

/// Where the first question's name ends (the offset of its type), if the
/// header says there is a question and the name is whole and
/// uncompressed (the first name of a message has nothing to point back
/// to).
fn question_name_end(message: &[u8]) -> Option<usize> {
    if message.len() < 12 || u16::from_be_bytes([message[4], message[5]]) == 0 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *message.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        // The name so far, this label and the root's zero byte.
        if len > 63 || (at - 12) + 1 + len + 1 > 255 {
            return None;
        }
        at += 1 + len;
    }
}

impl fmt::Display for QueryLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{} {transport} ", self.peer)?;
        match question_name_end(self.query) {
            Some(end) if end + 2 <= self.query.len() => {
                let rtype = Rtype(u16::from_be_bytes([self.query[end], self.query[end + 1]]));
                write!(f, "{} {rtype} ", Name(&self.query[12..end]))?;
            }
            _ => f.write_str("- - ")?,
        }
        match self.response {
            Some(response) if response.len() >= 4 => {
                write!(
                    f,
                    "{} {}",
                    Rcode(u16::from(response[3] & 0x0f)),
                    response.len()
                )
            }
            _ => f.write_str("- -"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn odd_questions_are_shown_as_dashes() {
        let peer = "[::1]:53".parse().unwrap();
        for query in [
            &b""[..],
            b"\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01",
            b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab",
            b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
        ] {
            let line = QueryLine::new(peer, Transport::Tcp, query, None).to_string();
            assert_eq!(line, "[::1]:53 tcp - - - -", "{query:?}");
        }
        let root = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01";
        let line = QueryLine::new(peer, Transport::Tcp, root, Some(&root[..4])).to_string();
        assert_eq!(line, "[::1]:53 tcp . NS NOERROR 4");
        let unknown = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xff\x00\x00\x01";
        let line = QueryLine::new(peer, Transport::Udp, unknown, None).to_string();
        assert_eq!(line, "[::1]:53 udp . TYPE65280 - -");
    }

    #[test]
    fn a_name_longer_than_255_bytes_is_not_read() {
        let mut query = alloc::vec![0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            query.push(63);
            query.extend_from_slice(&[b'a'; 63]);
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(question_name_end(&query), None);
    }
}
