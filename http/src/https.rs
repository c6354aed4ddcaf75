//! HTTPS: TLS under the server (with the `tls` feature), and the two
//! handlers a site served over both HTTP and HTTPS wants: a redirect from
//! HTTP to HTTPS, and HSTS on the HTTPS responses.

use crate::request::Request;
use crate::response::{Body, Response};
use crate::server::Handler;
use alloc::format;
use alloc::rc::Rc;

#[cfg(feature = "tls")]
impl<T: lamina_core::device::TcpStream + 'static> crate::server::Upgrade<T>
    for lamina_tls::TlsAcceptor
{
    type Stream = lamina_tls::ServerStream<T>;
    async fn upgrade(&self, tcp: T) -> Result<Self::Stream, lamina_core::device::NetError> {
        self.accept(tcp).await.map_err(|e| {
            log::debug!("https: handshake failed: {e}");
            e.net_error()
        })
    }
}

/// Answers every request with `301 Moved Permanently` to the same path on
/// `https://` (the request's Host, with `port` unless it is 443).
#[derive(Debug, Clone, Copy)]
pub struct RedirectToHttps {
    /// The port HTTPS is served on.
    pub port: u16,
}

impl Handler for RedirectToHttps {
    async fn handle(&self, request: &Request) -> Response {
        let Some(host) = request
            .header("host")
            .map(strip_port)
            .filter(|h| valid_host(h))
        else {
            return Response::error(400);
        };
        let location = match self.port {
            443 => format!("https://{host}{}", request.target),
            port => format!("https://{host}:{port}{}", request.target),
        };
        Response::new(301, Body::Empty).with_header("Location", location)
    }
}

/// A Host header without its port (`[::1]:80` keeps its brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

/// Only names and addresses go into a Location header: no spaces, no
/// slashes, nothing that could end the header or point elsewhere.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
}

/// Adds `Strict-Transport-Security: max-age=SECONDS` to every response of
/// the handler it wraps (serve HTTPS responses through it, never HTTP ones).
pub struct Hsts<H> {
    inner: Rc<H>,
    header: alloc::string::String,
}

impl<H> Hsts<H> {
    /// HSTS for `max_age_secs` seconds (a year is 31536000).
    pub fn new(inner: Rc<H>, max_age_secs: u64) -> Self {
        Hsts {
            inner,
            header: format!("max-age={max_age_secs}"),
        }
    }
}

impl<H: Handler> Handler for Hsts<H> {
    async fn handle(&self, request: &Request) -> Response {
        self.inner
            .handle(request)
            .await
            .with_header("Strict-Transport-Security", self.header.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_for_the_location_header() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert!(valid_host("10.0.0.2"));
        assert!(!valid_host("evil.com/x"));
        assert!(!valid_host("a b"));
        assert!(!valid_host(""));
    }
}
