//! A unikernel's command line taken all the way, as the bare-metal
//! runtimes do: split into words, parsed into an application's arguments
//! (one of every value type), the stack's and the runtime's (the parser
//! runs `NetArgs::check`), the stack's TCP memory limited to the heap
//! (`NetArgs::limit_to_heap`, as `lamina_metal::app::start` does), then the
//! stack started with them on a simulated interface and clock, with a
//! listener, a UDP socket and a connection attempt. Whatever the parser and
//! the heap check accept must run without a panic; what they refuse must
//! come with a message and status 2.
#![no_main]

use lamina_core::args::common::RuntimeArgs;
use lamina_core::args::{split_command_line, BootArgs};
use lamina_core::boot::{apply_runtime_args, parse_command_line};
use lamina_core::device::{Clock, NetError, Netif, Stack, UdpSocket};
use lamina_core::runtime::{Duration, Executor, Instant, Park};
use lamina_net::{NetArgs, NetStack};
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

lamina_core::boot_args! {
    /// An application with one argument of every kind.
    pub struct AppArgs {
        /// A port.
        pub port: u16 = "80",
        /// A count.
        pub count: u32 = "3",
        /// A size.
        pub size: usize = "4096",
        /// A flag.
        pub verbose: bool = "false",
        /// A duration.
        pub timeout: core::time::Duration = "30s",
        /// An address.
        pub peer: Option<IpAddr> = "",
        /// An address and port.
        pub server: Option<SocketAddr> = "",
        /// Text.
        pub greeting: String = "hello",
    }
}

/// The guest heap the runtimes cap the stack's TCP memory against.
const HEAP_BYTES: usize = 64 << 20;

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

struct SimClock(Rc<SimTime>);

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> u64 {
        self.0 .0.get()
    }
}

/// A link on which nothing ever arrives and every frame is lost.
struct Silent;

impl Netif for Silent {
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 1]
    }
    fn mtu(&self) -> usize {
        1500
    }
    async fn receive(&self, _: &mut [u8]) -> Result<usize, NetError> {
        std::future::pending().await
    }
    fn try_receive(&self, _: &mut [u8]) -> Result<Option<usize>, NetError> {
        Ok(None)
    }
    fn transmit(&self, _: &[u8]) -> Result<(), NetError> {
        Ok(())
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(line) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(words) = split_command_line(line) else {
        return;
    };
    let (mut app, mut net, mut runtime) = (
        AppArgs::defaults(),
        NetArgs::defaults(),
        RuntimeArgs::defaults(),
    );
    let parsed = parse_command_line("unikernel", &words, &mut [&mut app, &mut net, &mut runtime])
        .and_then(|()| apply_runtime_args("unikernel", &runtime));
    if let Err(stop) = parsed {
        assert!(stop.status == 0 || stop.status == 2);
        assert!(!stop.text.is_empty());
        return;
    }
    if let Err(error) = net.limit_to_heap(HEAP_BYTES) {
        assert!(error.to_string().starts_with("invalid value"));
        return;
    }
    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let rt = executor.handle();
    let stack = NetStack::start(Silent, SimClock(time), 7, &rt, net);
    let port = app.port;
    let target = app.server.unwrap_or(SocketAddr::new(
        app.peer.unwrap_or(Ipv4Addr::new(10, 0, 0, 9).into()),
        port,
    ));
    executor.block_on(async {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let _listener = stack.tcp_listen(any).await;
        if let Ok(socket) = stack.udp_bind(any).await {
            let _ = rt
                .timeout(Duration::from_secs(1), socket.send_to(b"ping", target))
                .await;
        }
        let _ = rt
            .timeout(Duration::from_secs(5), stack.tcp_connect(target))
            .await;
    });
});
