//! Responses.

use crate::server::MemoryHold;
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A response body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// Bytes baked into the image.
    Static(&'static [u8]),
    /// Bytes made for this response.
    Owned(Vec<u8>),
}

impl Body {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Static(b) => b,
            Body::Owned(b) => b,
        }
    }
}

/// A response: status, headers, body. The server adds `Date`, `Server`,
/// `Content-Length` and `Connection`.
///
/// An answer to HEAD may give its own `Content-Length` header with an empty
/// body (the length of the body a GET would get, without reading it); the
/// server then adds none.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body (not sent for HEAD, but its length is).
    pub body: Body,
    /// Memory counted for the body until the response is sent and dropped
    /// (clones share it).
    held: Option<Arc<MemoryHold>>,
}

impl Response {
    /// A response with `status` and `body`.
    pub fn new(status: u16, body: Body) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body,
            held: None,
        }
    }

    /// Keeps `hold` (the body's bytes, counted in a [`MemoryBudget`]) until
    /// the response has been sent: a large body then counts against the
    /// budget for as long as it is in memory, a slow reader included.
    ///
    /// [`MemoryBudget`]: crate::MemoryBudget
    pub fn holding(mut self, hold: MemoryHold) -> Self {
        self.held = Some(Arc::new(hold));
        self
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A short plain-text error page for `status`.
    pub fn error(status: u16) -> Self {
        let mut text = String::from(reason(status));
        text.push('\n');
        Response::new(status, Body::Owned(text.into_bytes()))
            .with_header("Content-Type", "text/plain; charset=utf-8")
    }
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// Writes the status line and headers of `response` into `out`.
pub(crate) fn write_head(out: &mut Vec<u8>, response: &Response, date: &str, close: bool) {
    use core::fmt::Write;
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nServer: Lamina\r\nDate: {date}\r\n",
        response.status,
        reason(response.status)
    );
    // A handler's own length stands only for an empty body (HEAD); with a
    // body, the body's length is the truth.
    let is_length = |name: &str| name.eq_ignore_ascii_case("content-length");
    let body_len = response.body.as_bytes().len();
    let given_length = body_len == 0 && response.headers.iter().any(|(n, _)| is_length(n));
    for (name, value) in &response.headers {
        if is_length(name) && !given_length {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if response.status != 304 && response.status != 204 && !given_length {
        let _ = write!(head, "Content-Length: {body_len}\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}
