//! A guest running Lamina's own stack on one end of the link, the user-mode
//! network on the other, and a real host client through the forwarded port.

use lamina_core::args::BootArgs;
use lamina_core::device::{NetError, Netif, Stack, TcpListener, TcpRead, TcpWrite};
use lamina_core::runtime::Executor;
use lamina_unix::reactor::{Async, Reactor};
use lamina_usernet::{socketpair, Forward, UserNet, GATEWAY, GUEST};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

/// The guest's network device: its end of the socketpair.
struct PairNetif(Async<OwnedFd>);

impl Netif for PairNetif {
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 15]
    }
    fn mtu(&self) -> usize {
        1500
    }
    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.0
            .read_with(|fd| recv(fd, buf))
            .await
            .map_err(|_| NetError::Io)
    }
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        match recv(self.0.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(_) => Err(NetError::Io),
        }
    }
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        // SAFETY: send reads frame.len() bytes from frame.
        unsafe {
            libc::send(
                self.0.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        Ok(())
    }
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: recv writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[test]
fn host_port_reaches_the_guest_echo_server() {
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let net = UserNet::bind(&[Forward {
        host_port,
        guest_port: 80,
    }])
    .unwrap();
    let (guest_end, network_end) = socketpair().unwrap();
    std::thread::spawn(move || lamina_usernet::run(net, network_end));
    std::thread::spawn(move || {
        let reactor = Rc::new(Reactor::new().unwrap());
        let executor = Executor::new(reactor.clone());
        let rt = executor.handle();
        let netif = PairNetif(Async::new(guest_end, reactor.clone()).unwrap());
        let clock = lamina_unix::devices::HostClock::new(reactor);
        let mut args = lamina_net::NetArgs::defaults();
        args.ipv4 = Some(lamina_net::Ipv4Cidr {
            address: GUEST,
            prefix: 24,
        });
        args.ipv4_gateway = Some(GATEWAY);
        let stack = lamina_net::NetStack::start(netif, clock, 1, &rt, args);
        executor.block_on(async move {
            let listener = stack
                .tcp_listen(SocketAddr::from(([0, 0, 0, 0], 80)))
                .await
                .unwrap();
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                rt.spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => conn.write_all(&buf[..n]).await.unwrap(),
                        }
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
    });
    // Sequential rounds, then many at once.
    for round in 0..3 {
        echo_once(host_port, 300_000, round);
    }
    let clients: Vec<_> = (0..64u32)
        .map(|i| std::thread::spawn(move || echo_once(host_port, 20_000, 10 + i)))
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

fn echo_once(host_port: u16, len: u32, round: u32) {
    let mut client = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i * 13 + round) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let t = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    t.join().unwrap();
    assert_eq!(back.len(), payload.len(), "round {round}");
    assert!(back == payload, "round {round}: echo differs");
}
