//! The HTTP client on the unix target against servers that answer with
//! ill-framed responses (found by the http_client fuzz target).

use lamina_core::runtime::Executor;
use lamina_http::{Client, ClientError, Plain, Url};
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

/// A loopback server that answers one request on one connection with
/// `response`, then closes.
fn serve_once(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(response).unwrap();
    });
    addr
}

fn get(server: SocketAddr) -> Result<(u16, Vec<u8>), ClientError> {
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap());
    executor.block_on(async {
        let response = Client::new(&stack, server, "localhost").get("/").await?;
        Ok((response.status, response.body))
    })
}

#[test]
fn a_well_framed_response_is_read() {
    let server = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    assert_eq!(get(server), Ok((200, b"hi".to_vec())));
}

#[test]
fn a_signed_content_length_is_refused() {
    // Rust's integer parser takes "+2"; RFC 9112 allows digits only.
    let server = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi");
    assert_eq!(
        get(server),
        Err(ClientError::BadResponse("bad Content-Length"))
    );
}

#[test]
fn content_lengths_that_disagree_are_refused() {
    // Which one frames the body is unknown (RFC 9112, 6.3): the client used
    // the first and took 2 bytes of a 3-byte body.
    let server =
        serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!");
    assert_eq!(
        get(server),
        Err(ClientError::BadResponse("Content-Length headers disagree"))
    );
}

#[test]
fn content_lengths_that_agree_are_read() {
    let server =
        serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nhi!");
    assert_eq!(get(server), Ok((200, b"hi!".to_vec())));
}

#[test]
fn a_status_outside_100_to_599_is_refused() {
    // httparse reads any three digits as the status.
    let server = serve_once(b"HTTP/1.1 002 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        get(server),
        Err(ClientError::BadResponse("status not 100 to 599"))
    );
}

#[test]
fn a_url_is_fetched_from_its_port_and_an_https_url_needs_tls() {
    let server = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap());
    let url = Url::parse(&format!("http://localhost:{}/index.html", server.port())).unwrap();
    let response = executor.block_on(async {
        Client::for_url(&stack, &url, server.ip(), Plain)?
            .get(url.path())
            .await
    });
    assert_eq!(response.map(|r| r.body), Ok(b"hi".to_vec()));
    let url = Url::parse("https://localhost/").unwrap();
    assert!(matches!(
        Client::for_url(&stack, &url, server.ip(), Plain),
        Err(ClientError::BadUrl("https:// needs a TLS connector"))
    ));
}
