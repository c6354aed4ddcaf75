//! Bytes from a client, through lamina-http's server (request parsing,
//! keep-alive, pipelining, limits) and the StaticFiles handler (paths,
//! percent-decoding, ETag / If-None-Match, Range / If-Range), over an
//! in-memory connection on a simulated clock. The first byte sets how the
//! bytes arrive: all at once (0) or in reads of 8 times that many.
#![no_main]

use lamina_core::device::{
    Baked, BakedFile, Clock, NetError, Stack, TcpListener, TcpRead, TcpStream, TcpWrite, UdpSocket,
};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_http::{serve, Config, StaticFiles};
use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

/// Just over the 16 KiB the server copies behind the head.
static BIG: [u8; 17_000] = [b'x'; 17_000];
static SITE: Baked = Baked::new(&[
    BakedFile {
        key: "404.html",
        data: b"<h1>not here</h1>\n",
        content_type: "text/html",
        etag: "\"n404\"",
    },
    BakedFile {
        key: "big.bin",
        data: &BIG,
        content_type: "application/octet-stream",
        etag: "\"big1\"",
    },
    BakedFile {
        key: "docs/index.html",
        data: b"<h1>docs</h1>\n",
        content_type: "text/html",
        etag: "\"docs\"",
    },
    BakedFile {
        key: "index.html",
        data: b"<h1>hello</h1>\n",
        content_type: "text/html",
        etag: "\"e1a2\"",
    },
]);

/// Time that jumps to each deadline.
#[derive(Default)]
struct SimTime(Cell<u64>);

impl Park for SimTime {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.get())
    }
    fn park(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.0.set(self.0.get().max(d.as_nanos()));
        }
    }
}

#[derive(Clone)]
struct SimClock(Rc<SimTime>);

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> u64 {
        1_700_000_000_000_000_000 + self.0 .0.get()
    }
}

/// The client's end, as the server's stream sees it.
struct Client {
    input: Vec<u8>,
    read: usize,
    chunk: usize,
    output: Vec<u8>,
}

/// The server's end of the connection (or either half of it): the
/// connection is closed once no end is left.
struct Stream(Rc<RefCell<Client>>);

impl TcpRead for Stream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let mut client = self.0.borrow_mut();
        let n = buf
            .len()
            .min(client.chunk)
            .min(client.input.len() - client.read);
        buf[..n].copy_from_slice(&client.input[client.read..client.read + n]);
        client.read += n;
        Ok(n)
    }
    fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], 40000))
    }
}

impl TcpWrite for Stream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.0.borrow_mut().output.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn shutdown(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}

impl TcpStream for Stream {
    type ReadHalf = Stream;
    type WriteHalf = Stream;
    fn into_split(self) -> (Stream, Stream) {
        (Stream(self.0.clone()), self)
    }
}

/// A stack with one connection waiting to be accepted.
struct OneConnection(RefCell<Option<Stream>>);

struct Listener(RefCell<Option<Stream>>);

impl TcpListener for Listener {
    type Stream = Stream;
    async fn accept(&self) -> Result<(Stream, SocketAddr), NetError> {
        let next = self.0.borrow_mut().take();
        match next {
            Some(stream) => {
                let peer = stream.peer_addr();
                Ok((stream, peer))
            }
            None => pending().await,
        }
    }
    fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 80))
    }
}

/// Never made: the server opens no UDP sockets.
enum NoUdp {}

impl UdpSocket for NoUdp {
    async fn send_to(&self, _: &[u8], _: SocketAddr) -> Result<(), NetError> {
        match *self {}
    }
    async fn recv_from(&self, _: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        match *self {}
    }
    fn local_addr(&self) -> SocketAddr {
        match *self {}
    }
}

impl Stack for OneConnection {
    type TcpListener = Listener;
    type TcpStream = Stream;
    type UdpSocket = NoUdp;
    async fn tcp_listen(&self, _: SocketAddr) -> Result<Listener, NetError> {
        Ok(Listener(RefCell::new(self.0.borrow_mut().take())))
    }
    async fn tcp_connect(&self, _: SocketAddr) -> Result<Stream, NetError> {
        Err(NetError::Unreachable)
    }
    async fn udp_bind(&self, _: SocketAddr) -> Result<NoUdp, NetError> {
        Err(NetError::Unreachable)
    }
}

/// Checks the first response: a status line, and a 206's range inside
/// the file with as many body bytes as it announces; none for a HEAD,
/// after which only the next response may follow (pipelined requests).
/// `method` is the first request's, as httparse reads it (`None`: it
/// could not: the body follows, or nothing).
fn check_first_response(output: &[u8], method: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(output) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("the server wrote no whole response head: {other:?}"),
    };
    let status = response.code.expect("a status");
    assert!((200..600).contains(&status), "{status}");
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).expect("ASCII header"))
    };
    if status == 206 {
        let range = header("content-range").expect("a 206 has a Content-Range");
        let (span, total) = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
            .expect("bytes START-END/LEN");
        let (start, end) = span.split_once('-').expect("START-END");
        let (start, end, total): (u64, u64, u64) = (
            start.parse().unwrap(),
            end.parse().unwrap(),
            total.parse().unwrap(),
        );
        assert!(start <= end && end < total, "{range}");
        let length: u64 = header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, end - start + 1);
        let after = &output[head_len..];
        match method {
            Some("HEAD") => assert!(
                after.is_empty() || after.starts_with(b"HTTP/1."),
                "a body after a HEAD's 206"
            ),
            Some(_) => assert!(after.len() as u64 >= length, "the body follows"),
            None => assert!(
                after.is_empty() || after.len() as u64 >= length,
                "HEAD, or the body follows"
            ),
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&chunk, input)) = bytes.split_first() else {
        return;
    };
    let client = Rc::new(RefCell::new(Client {
        input: input.to_vec(),
        read: 0,
        chunk: if chunk == 0 {
            usize::MAX
        } else {
            usize::from(chunk)
        },
        output: Vec::new(),
    }));
    let stack = OneConnection(RefCell::new(Some(Stream(client.clone()))));
    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let rt = executor.handle();
    let server = rt.spawn({
        let rt = rt.clone();
        async move {
            let handler = Rc::new(StaticFiles::new(&SITE));
            let addr = SocketAddr::from(([0, 0, 0, 0], 80));
            let _ = serve(&stack, addr, handler, SimClock(time), rt, Config::default()).await;
        }
    });
    executor.block_on(async {
        poll_fn(|cx| {
            // Only this function still holds the client: every end is closed.
            if Rc::strong_count(&client) == 1 {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    });
    server.abort();
    let client = client.borrow();
    // An incomplete request at the end of the stream gets no answer.
    if !client.output.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let _ = request.parse(input);
        check_first_response(&client.output, request.method);
    }
});
