//! A small HTTP/1.1 client: GET over one kept-alive connection, for
//! applications (health checks, fetching configuration) and tests.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::SocketAddr;
use lamina_core::device::{NetError, Stack, TcpRead, TcpWrite};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The connection failed.
    Net(NetError),
    /// The server's answer is not HTTP/1.1 we understand.
    BadResponse(&'static str),
    /// The response head or body is larger than the client accepts.
    TooLarge,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Net(e) => write!(f, "{e}"),
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

/// A client for one server, reusing its connection between requests.
pub struct Client<'s, S: Stack> {
    stack: &'s S,
    server: SocketAddr,
    host: String,
    connection: Option<S::TcpStream>,
    /// Bytes received past the last response (a server may send ahead).
    pending: Vec<u8>,
    /// Largest response accepted, head and body.
    pub max_response_bytes: usize,
}

impl<'s, S: Stack> Client<'s, S> {
    /// A client for `server`, sending `host` as the Host header.
    pub fn new(stack: &'s S, server: SocketAddr, host: &str) -> Self {
        Client {
            stack,
            server,
            host: host.to_string(),
            connection: None,
            pending: Vec::new(),
            max_response_bytes: 16 << 20,
        }
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
            self.connection = Some(self.stack.tcp_connect(self.server).await?);
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
