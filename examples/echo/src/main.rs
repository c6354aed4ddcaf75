//! Echo: a TCP and UDP server that sends back every byte it receives.
//!
//! Each connection is its own task; a slow or silent client costs only its
//! own task and buffer. Run it with
//!
//! ```text
//! lamina run examples/echo -- --port=7007
//! ```
//! and talk to it with `nc 127.0.0.1 7007`.
#![no_std]
#![no_main]

use core::net::{Ipv4Addr, SocketAddr};
use lamina::prelude::*;
use lamina::runtime::Handle;

lamina::devices! {
    /// Echo's one device: the TCP/UDP stack on the network interface
    /// `service` (host sockets on unix, Lamina's stack on a unikernel).
    pub struct Devices {
        service: Stack,
    }
}

lamina::boot_args! {
    /// Echo
    pub struct Args {
        /// TCP and UDP port to listen on.
        pub port: u16 = "7",
        /// Close connections idle for this long.
        pub idle_timeout: Duration = "300s",
    }
}

async fn echo<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), NetError> {
    let stack = devices.service;
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    let listener = stack.tcp_listen(address).await?;
    let udp = stack.udp_bind(address).await?;
    info!("echo: listening on {} (TCP and UDP)", listener.local_addr());
    env.spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match udp.recv_from(&mut buf).await {
                Ok((n, peer)) => {
                    if let Err(e) = udp.send_to(&buf[..n], peer).await {
                        debug!("echo: UDP reply to {peer}: {e}");
                    }
                }
                Err(e) => debug!("echo: UDP receive: {e}"),
            }
        }
    });
    loop {
        let (connection, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of sockets: wait a moment instead of spinning.
                warn!("echo: accept failed: {e}");
                env.sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        debug!("echo: connection from {peer}");
        let runtime = env.runtime().clone();
        env.spawn(async move {
            match serve(connection, &runtime, args.idle_timeout).await {
                Ok(bytes) => debug!("echo: {peer} done after {bytes} bytes"),
                Err(e) => debug!("echo: {peer}: {e}"),
            }
        });
    }
}

/// The most a connection reads at a time.
const LARGEST_READ: usize = 16 * 1024;

/// Echoes until the client closes its side, then closes ours; gives up on a
/// client silent for `idle`.
async fn serve<S: TcpStream>(
    mut connection: S,
    runtime: &Handle,
    idle: Duration,
) -> Result<u64, NetError> {
    // Starts small (10,000 idle connections fit in a 64 MiB unikernel) and
    // doubles while reads fill it, up to what a std echo server reads at a
    // time.
    let mut buf = vec![0u8; 1024];
    let mut total = 0;
    loop {
        let n = runtime
            .timeout(idle, connection.read(&mut buf))
            .await
            .map_err(|_| NetError::TimedOut)??;
        if n == 0 {
            connection.shutdown().await?;
            return Ok(total);
        }
        connection.write_all(&buf[..n]).await?;
        total += n as u64;
        if n == buf.len() && buf.len() < LARGEST_READ {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

lamina::main!(echo);
