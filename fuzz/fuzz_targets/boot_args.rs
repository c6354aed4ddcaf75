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
use lamina_net::NetArgs;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
    let peer = app.server.unwrap_or(SocketAddr::new(
        app.peer.unwrap_or(Ipv4Addr::new(10, 0, 0, 9).into()),
        app.port,
    ));
    lamina_net::sim::exercise_alone(net, app.port, peer);
});
