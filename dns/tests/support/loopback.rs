//! A DNS server on a free loopback port (UDP and TCP), served by the unix
//! target's stack from a thread of its own, for the tests that talk to it
//! with real clients. Included by each with `#[path]`.

use lamina_core::runtime::Executor;
use lamina_dns::server::{Config, Responder, Server};
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Starts a server with `config`, answering with the responder `make`
/// gives (made in the server's thread); returns its address.
pub fn serve_on_loopback<R, F>(make: F, config: Config) -> SocketAddr
where
    R: Responder + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reactor = Rc::new(Reactor::new().unwrap());
        let executor = Executor::new(reactor.clone());
        let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap());
        let runtime = executor.handle();
        executor.block_on(async {
            let address = SocketAddr::from(([127, 0, 0, 1], 0));
            let server = Server::bind(&stack, address, make(), runtime, config)
                .await
                .unwrap();
            tx.send(server.local_addr()).unwrap();
            server.run().await
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}
