//! A small HTTP/1.1 client: GET over one kept-alive connection, for
//! applications (health checks, fetching configuration) and tests; over TLS
//! for `https://` URLs with the `tls` feature and a `TlsConnector` the
//! application makes (its roots are baked into the image).
//!
//! ```ignore
//! // http://
//! let url = Url::parse("http://10.0.0.1:8080/status")?;
//! let mut client = Client::for_url(&stack, &url, address, Plain)?;
//! let response = client.get(url.path()).await?;
//! // https://: the same, with a connector; the URL's host is the name sent
//! // (SNI) and the name the certificate must be valid for.
//! let tls = TlsConnector::new(Roots::Mozilla, clock, runtime, vec![b"http/1.1".to_vec()])?;
//! let url = Url::parse("https://example.com/")?;
//! let mut client = Client::for_url(&stack, &url, address, &tls)?;
//! let response = client.get(url.path()).await?;
//! ```

use crate::server::Plain;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};
use lamina_core::device::{NetError, Stack, TcpRead, TcpStream, TcpWrite};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The connection failed.
    Net(NetError),
    /// The TLS handshake failed; the text says why (a certificate that is
    /// expired or for another name, an unset wall clock, ...).
    Tls(String),
    /// The URL is not one this client fetches; the text says why.
    BadUrl(&'static str),
    /// The server's answer is not HTTP/1.1 we understand.
    BadResponse(&'static str),
    /// The response head or body is larger than the client accepts.
    TooLarge,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Net(e) => write!(f, "{e}"),
            ClientError::Tls(why) => write!(f, "{why}"),
            ClientError::BadUrl(why) => write!(f, "bad URL: {why}"),
            ClientError::BadResponse(why) => write!(f, "bad response: {why}"),
            ClientError::TooLarge => f.write_str("response too large"),
        }
    }
}

impl From<NetError> for ClientError {
    fn from(e: NetError) -> Self {
        ClientError::Net(e)
    }
}

/// What a new connection goes through before HTTP is spoken on it: nothing
/// ([`Plain`]), or the client's side of a TLS handshake (lamina-tls's
/// `TlsConnector`, with this crate's `tls` feature). The client's
/// counterpart of the server's [`Upgrade`](crate::server::Upgrade).
pub trait Connect<T: TcpStream> {
    /// The stream HTTP runs on.
    type Stream: TcpStream;
    /// Whether connections are encrypted: `https://` URLs need it,
    /// `http://` ones refuse it.
    const SECURE: bool;
    /// Turns the connected TCP stream into that stream; `host` is the
    /// server's name or address as the URL gives it (TLS sends it as SNI
    /// and checks the certificate against it).
    async fn connect(&self, tcp: T, host: &str) -> Result<Self::Stream, ClientError>;
}

impl<T: TcpStream> Connect<T> for Plain {
    type Stream = T;
    const SECURE: bool = false;
    async fn connect(&self, tcp: T, _host: &str) -> Result<T, ClientError> {
        Ok(tcp)
    }
}

impl<T: TcpStream, C: Connect<T>> Connect<T> for &C {
    type Stream = C::Stream;
    const SECURE: bool = C::SECURE;
    async fn connect(&self, tcp: T, host: &str) -> Result<Self::Stream, ClientError> {
        (**self).connect(tcp, host).await
    }
}

#[cfg(feature = "tls")]
impl<T: TcpStream> Connect<T> for lamina_tls::TlsConnector {
    type Stream = lamina_tls::ClientStream<T>;
    const SECURE: bool = true;
    async fn connect(&self, tcp: T, host: &str) -> Result<Self::Stream, ClientError> {
        lamina_tls::TlsConnector::connect(self, tcp, host)
            .await
            .map_err(|e| match e {
                lamina_tls::TlsError::Net(e) => ClientError::Net(e),
                other => ClientError::Tls(alloc::format!("{other}")),
            })
    }
}

/// An `http://` or `https://` URL, as the client fetches it:
/// `SCHEME://HOST[:PORT][/PATH]`, HOST a DNS name, an IPv4 address or a
/// bracketed IPv6 one. No user information, no fragment (a query stays in
/// the path).
///
/// ```
/// use lamina_http::client::Url;
/// let url = Url::parse("https://Example.com/a?b").unwrap();
/// assert!(url.is_https());
/// assert_eq!((url.host(), url.port(), url.path()), ("example.com", 443, "/a?b"));
/// let url = Url::parse("http://[fd00::1]:8080").unwrap();
/// assert_eq!((url.host(), url.port(), url.path()), ("fd00::1", 8080, "/"));
/// assert_eq!(url.ip(), Some("fd00::1".parse().unwrap()));
/// assert!(Url::parse("ftp://example.com/").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    https: bool,
    /// Lower-cased; an IPv6 address without its brackets.
    host: String,
    port: u16,
    path: String,
}

impl Url {
    /// The longest host name (RFC 1035: 253 characters in text).
    const MAX_HOST: usize = 253;

    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Url, ClientError> {
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (false, rest)
        } else {
            return Err(ClientError::BadUrl("not http:// or https://"));
        };
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ClientError::BadUrl("spaces or control characters"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => String::from("/"),
            p if p.starts_with('?') => alloc::format!("/{p}"),
            p => p.to_string(),
        };
        if authority.contains('@') {
            return Err(ClientError::BadUrl("user information is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (ip, after) = bracketed
                .split_once(']')
                .ok_or(ClientError::BadUrl("no ']' after an IPv6 address"))?;
            if ip.parse::<core::net::Ipv6Addr>().is_err() {
                return Err(ClientError::BadUrl("bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(ClientError::BadUrl("junk after an IPv6 address"))?,
                ),
            };
            (ip, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(text) => match text.parse::<u16>() {
                Ok(p) if p != 0 && text.bytes().all(|b| b.is_ascii_digit()) => p,
                _ => return Err(ClientError::BadUrl("port not 1 to 65535")),
            },
        };
        if host.is_empty() {
            return Err(ClientError::BadUrl("no host"));
        }
        if host.len() > Self::MAX_HOST
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(ClientError::BadUrl("bad host name"));
        }
        Ok(Url {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host: a DNS name (lower-case) or an IP address (IPv6 without
    /// brackets). TLS sends it as SNI and checks the certificate against it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host, if it is an IP address (no name to resolve).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The port: as given, else 443 for https and 80 for http.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query, `/` at least.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The Host header: the host, with the port unless it is the scheme's
    /// default, an IPv6 address in brackets.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            alloc::format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.https, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => alloc::format!("{host}:{port}"),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A response as the client received it.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The body length the response's Content-Length headers announce, if
/// any. RFC 9112 (6.3): digits only (`+5`, which Rust's integer parser
/// takes, and `-0` are not), and several must agree, else the message
/// framing is unknown and the response is refused.
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ClientError> {
    let mut length = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ClientError::BadResponse("bad Content-Length"));
        }
        let n = value.parse::<usize>().map_err(|_| ClientError::TooLarge)?;
        if length.is_some_and(|first| first != n) {
            return Err(ClientError::BadResponse("Content-Length headers disagree"));
        }
        length = Some(n);
    }
    Ok(length)
}

/// A client for one server, reusing its connection between requests; each
/// new connection goes through `C` ([`Plain`] for http, a `TlsConnector`
/// for https).
pub struct Client<'s, S: Stack, C: Connect<S::TcpStream> = Plain> {
    stack: &'s S,
    server: SocketAddr,
    /// The Host header.
    host: String,
    /// The name (or address) the connector is given: TLS's SNI and the
    /// name the certificate must be valid for.
    server_name: String,
    connector: C,
    connection: Option<C::Stream>,
    /// Bytes received past the last response (a server may send ahead).
    pending: Vec<u8>,
    /// Largest response accepted, head and body.
    pub max_response_bytes: usize,
}

impl<'s, S: Stack> Client<'s, S, Plain> {
    /// A plain-HTTP client for `server`, sending `host` as the Host header.
    pub fn new(stack: &'s S, server: SocketAddr, host: &str) -> Self {
        Client::with_connector(stack, server, host, Plain)
    }
}

impl<'s, S: Stack, C: Connect<S::TcpStream>> Client<'s, S, C> {
    /// A client for `server` whose connections go through `connector`;
    /// `host` (a name or address, no port) is sent as the Host header and
    /// given to the connector (for TLS: SNI and the certificate's name).
    pub fn with_connector(stack: &'s S, server: SocketAddr, host: &str, connector: C) -> Self {
        Client {
            stack,
            server,
            host: host.to_string(),
            server_name: host.to_string(),
            connector,
            connection: None,
            pending: Vec::new(),
            max_response_bytes: 16 << 20,
        }
    }

    /// A client for the server of `url`, found at `address` (the URL's
    /// host resolved, or [`Url::ip`]) on the URL's port. An `https://` URL
    /// needs a TLS connector, and an `http://` one refuses it.
    pub fn for_url(
        stack: &'s S,
        url: &Url,
        address: IpAddr,
        connector: C,
    ) -> Result<Self, ClientError> {
        match (url.is_https(), C::SECURE) {
            (true, false) => return Err(ClientError::BadUrl("https:// needs a TLS connector")),
            (false, true) => return Err(ClientError::BadUrl("http:// with a TLS connector")),
            _ => {}
        }
        let mut client = Client::with_connector(
            stack,
            SocketAddr::new(address, url.port()),
            url.host(),
            connector,
        );
        client.host = url.authority();
        Ok(client)
    }

    /// Whether a connection is open for the next request.
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// GETs `path`. Reuses the open connection; if the server had closed it,
    /// reconnects once and retries.
    pub async fn get(&mut self, path: &str) -> Result<ClientResponse, ClientError> {
        let reused = self.connection.is_some();
        match self.get_once(path).await {
            Err(ClientError::Net(_)) if reused => {
                self.connection = None;
                self.get_once(path).await
            }
            other => other,
        }
    }

    async fn get_once(&mut self, path: &str) -> Result<ClientResponse, ClientError> {
        if self.connection.is_none() {
            self.pending.clear();
            let tcp = self.stack.tcp_connect(self.server).await?;
            let stream = self.connector.connect(tcp, &self.server_name).await?;
            self.connection = Some(stream);
        }
        let request = alloc::format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lamina-http\r\n\r\n",
            self.host
        );
        let result = self.exchange(request.as_bytes()).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<ClientResponse, ClientError> {
        let Some(stream) = self.connection.as_mut() else {
            return Err(ClientError::Net(NetError::Closed));
        };
        stream.write_all(request).await?;
        let mut buf = core::mem::take(&mut self.pending);
        let mut chunk = [0u8; 4096];
        // The head.
        let (status, headers, head_len, keep_alive) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut fields);
            match response.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = response.code.ok_or(ClientError::BadResponse("no status"))?;
                    // httparse takes any three digits; RFC 9110 (15) has 100 to 599.
                    if !(100..600).contains(&status) {
                        return Err(ClientError::BadResponse("status not 100 to 599"));
                    }
                    let headers: Vec<(String, String)> = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let close = headers
                        .iter()
                        .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
                    break (status, headers, n, !close && response.version == Some(1));
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(ClientError::BadResponse("malformed head")),
            }
            if buf.len() > self.max_response_bytes {
                return Err(ClientError::TooLarge);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Net(NetError::Closed));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let length = match content_length(&headers)? {
            Some(n) => n,
            // 204, 304 and 1xx have no body; others without a length are
            // not what this small client reads.
            None if status == 204 || status == 304 || status < 200 => 0,
            None => return Err(ClientError::BadResponse("no Content-Length")),
        };
        if length > self.max_response_bytes {
            return Err(ClientError::TooLarge);
        }
        while buf.len() < head_len + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Net(NetError::Closed));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        self.pending = buf.split_off(head_len + length);
        let body = buf.split_off(head_len);
        if !keep_alive {
            self.connection = None;
        }
        Ok(ClientResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_their_parts() {
        let url = Url::parse("HTTPS://Tls.Test:4433/a/b?c=d#frag").unwrap();
        assert!(url.is_https());
        assert_eq!(url.host(), "tls.test");
        assert_eq!(url.port(), 4433);
        assert_eq!(url.path(), "/a/b?c=d");
        assert_eq!(url.authority(), "tls.test:4433");
        assert_eq!(url.ip(), None);
        let url = Url::parse("http://10.0.0.1?x").unwrap();
        assert_eq!((url.port(), url.path()), (80, "/?x"));
        assert_eq!(url.authority(), "10.0.0.1");
        assert_eq!(url.ip(), Some("10.0.0.1".parse().unwrap()));
        let url = Url::parse("https://[fd00::1]/").unwrap();
        assert_eq!((url.host(), url.port()), ("fd00::1", 443));
        assert_eq!(url.authority(), "[fd00::1]");
        assert_eq!(
            Url::parse("https://[fd00::1]:8443/").unwrap().authority(),
            "[fd00::1]:8443"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (text, why) in [
            ("ftp://example.com/", "not http:// or https://"),
            ("example.com", "not http:// or https://"),
            ("https://", "no host"),
            ("https:///path", "no host"),
            ("https://:443/", "no host"),
            ("https://a b/", "spaces or control characters"),
            (
                "https://user@example.com/",
                "user information is not supported",
            ),
            ("https://example.com:0/", "port not 1 to 65535"),
            ("https://example.com:65536/", "port not 1 to 65535"),
            ("https://example.com:+1/", "port not 1 to 65535"),
            ("https://example.com:/", "port not 1 to 65535"),
            ("https://[fd00::1/", "no ']' after an IPv6 address"),
            ("https://[zz]/", "bad IPv6 address"),
            ("https://[fd00::1]x/", "junk after an IPv6 address"),
            ("https://exa%mple.com/", "bad host name"),
        ] {
            assert_eq!(Url::parse(text), Err(ClientError::BadUrl(why)), "{text}");
        }
        let long = alloc::format!("https://{}/", "a".repeat(254));
        assert_eq!(Url::parse(&long), Err(ClientError::BadUrl("bad host name")));
    }
}
