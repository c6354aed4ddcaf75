//! DNS over UDP: one datagram in, at most one out.

use super::{Config, QueryLine, Responder, Transport};
use alloc::rc::Rc;
use alloc::vec;
use lamina_core::device::UdpSocket;
use lamina_core::runtime::{Duration, Handle};

/// The longest UDP query read. A query is a header, one question and an
/// OPT record; a datagram that fills this buffer was cut short by it and
/// is dropped unanswered.
const MAX_UDP_QUERY: usize = 4096;

/// Answers the queries arriving on `socket` with `responder`, for ever
/// (what [`Server::run`](super::Server::run) does for UDP, for a server
/// that serves UDP alone or binds its own socket). The two buffers are
/// allocated here, once; a query allocates nothing (unless
/// [`Config::log_queries`] formats its line).
pub async fn serve<U: UdpSocket, R: Responder>(
    socket: U,
    responder: Rc<R>,
    runtime: Handle,
    config: Config,
) {
    let mut query = vec![0u8; MAX_UDP_QUERY];
    let mut response = vec![0u8; config.max_udp_payload.clamp(512, super::MAX_MESSAGE)];
    loop {
        let (len, peer) = match socket.recv_from(&mut query).await {
            Ok(received) => received,
            Err(e) => {
                // An error concerns one datagram (or none): go on, after
                // a pause in case the socket keeps failing at once.
                log::debug!("dns: UDP receive: {e}");
                runtime.sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        if len == query.len() {
            log::debug!("dns: UDP query from {peer} longer than {MAX_UDP_QUERY} bytes dropped");
            continue;
        }
        let query = &query[..len];
        let answer = responder.respond(query, Transport::Udp, peer.ip(), &mut response);
        let answer = answer.map(|n| &response[..n.min(response.len())]);
        if config.log_queries {
            log::info!("{}", QueryLine::new(peer, Transport::Udp, query, answer));
        }
        if let Some(answer) = answer {
            if let Err(e) = socket.send_to(answer, peer).await {
                log::debug!("dns: UDP answer to {peer}: {e}");
            }
        }
    }
}
