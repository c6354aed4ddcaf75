//! The stack's boot arguments, generated: every option with values of
//! every kind, valid and invalid (edge sizes, overflowing numbers, signs,
//! addresses of every class, prefixes past 32, lists, garbage), parsed as
//! a unikernel parses its command line, then limited to a heap and run
//! (`lamina_net::sim::exercise_alone`). Each case either runs without a
//! panic or stops with status 2 and a message naming the argument.

use lamina_core::args::common::RuntimeArgs;
use lamina_core::args::BootArgs;
use lamina_core::boot::{apply_runtime_args, parse_command_line};
use lamina_net::NetArgs;
use proptest::prelude::*;
use std::net::{Ipv4Addr, SocketAddr};

/// The heap the bare-metal runtimes limit `--tcp-memory` to in these runs.
const HEAP_BYTES: usize = 64 << 20;

/// Every option the stack and the runtime take, and one they do not.
const KEYS: [&str; 11] = [
    "ipv4",
    "ipv4-gateway",
    "tcp-rx-buffer",
    "tcp-tx-buffer",
    "tcp-ack-delay-ms",
    "tcp-memory",
    "tcp-backlog",
    "dns",
    "log",
    "name",
    "frobnicate",
];

/// Numbers at and around every limit, and past what the types hold.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "500",
            "501",
            "1023",
            "1024",
            "65535",
            "65536",
            "1073741824",
            "1073741825",
            "29360128",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "+5",
            "0x10",
            "",
        ])
        .prop_map(str::to_owned),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..1 << 31).prop_map(|n| n.to_string()),
    ]
}

/// IPv4 addresses of every class, with or without a prefix or port.
fn address() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 0),
        Ipv4Addr::new(10, 0, 0, 255),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(0, 0, 0, 0),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 1, 0, 2),
        Ipv4Addr::new(255, 255, 255, 255),
        Ipv4Addr::new(169, 254, 1, 1),
    ]);
    let addr = prop_oneof![special, any::<u32>().prop_map(Ipv4Addr::from)];
    (
        addr,
        prop::option::of(0u8..=40),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(addr, prefix, port)| {
            let mut text = addr.to_string();
            if let Some(prefix) = prefix {
                text += &format!("/{prefix}");
            }
            if let Some(port) = port {
                text += &format!(":{port}");
            }
            text
        })
}

/// One option's value: a number, an address, a list, a level, or noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        number(),
        address(),
        prop::collection::vec(address(), 0..5).prop_map(|list| list.join(",")),
        prop::sample::select(vec!["error", "warn", "info", "debug", "trace", "loud"])
            .prop_map(str::to_owned),
        "[ -~]{0,24}",
    ]
}

/// A value for option `key`: mostly of the kind it takes (so that the
/// cases reach past the parser), sometimes any kind.
fn value_for(key: &'static str) -> BoxedStrategy<String> {
    let fitting = match key {
        "ipv4" | "ipv4-gateway" => address().boxed(),
        "dns" => prop::collection::vec(address(), 0..5)
            .prop_map(|list| list.join(","))
            .boxed(),
        "log" | "name" | "frobnicate" => value().boxed(),
        _ => number().boxed(),
    };
    prop_oneof![4 => fitting, 1 => value()].boxed()
}

/// A command line of a few options, some given twice, some without `=`.
fn command_line() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    let option = prop::sample::select(KEYS.to_vec()).prop_flat_map(|key| {
        (
            Just(key.to_owned()),
            prop::option::weighted(0.95, value_for(key)),
        )
    });
    prop::collection::vec(option, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_command_line_runs_or_is_refused_with_a_message(
        options in command_line(),
        peer in any::<u32>(),
        port in any::<u16>(),
    ) {
        let words: Vec<String> = options
            .iter()
            .map(|(key, value)| match value {
                Some(value) => format!("--{key}={value}"),
                None => format!("--{key}"),
            })
            .collect();
        let (mut net, mut runtime) = (NetArgs::defaults(), RuntimeArgs::defaults());
        let parsed = parse_command_line("unikernel", &words, &mut [&mut net, &mut runtime])
            .and_then(|()| apply_runtime_args("unikernel", &runtime));
        if let Err(stop) = parsed {
            prop_assert_eq!(stop.status, 2, "{:?}: {}", words, stop.text);
            // The message names an option that was given.
            let named = options.iter().any(|(key, _)| stop.text.contains(key.as_str()));
            prop_assert!(named, "{:?}: {}", words, stop.text);
            return Ok(());
        }
        if let Err(error) = net.limit_to_heap(HEAP_BYTES) {
            prop_assert!(error.to_string().contains("tcp-"), "{}", error);
            return Ok(());
        }
        let peer = SocketAddr::from((Ipv4Addr::from(peer), port));
        lamina_net::sim::exercise_alone(net, port, peer);
    }
}

/// The rows of issue 18's table, each refused at parse time with status 2
/// and the argument named, where they used to panic inside smoltcp or
/// overflow.
#[test]
fn the_arguments_that_used_to_panic_are_refused() {
    for line in [
        "--ipv4=239.1.0.2/24",
        "--ipv4=255.255.255.255/0",
        "--ipv4=10.1.0.2/24 --ipv4-gateway=224.0.0.1",
        "--ipv4=10.1.0.2/24 --ipv4-gateway=0.0.0.0",
        "--tcp-rx-buffer=18446744073709551615",
        "--tcp-tx-buffer=18446744073709551615",
        "--tcp-backlog=18446744073709551615",
        "--tcp-ack-delay-ms=18446744073709551615",
        "--tcp-memory=18446744073709551615 --tcp-rx-buffer=1099511627776",
    ] {
        let words: Vec<&str> = line.split(' ').collect();
        let mut net = NetArgs::defaults();
        let stop = parse_command_line("unikernel", &words, &mut [&mut net]).unwrap_err();
        assert_eq!(stop.status, 2, "{line}: {}", stop.text);
        let last = words.last().unwrap();
        let name = last[2..].split('=').next().unwrap();
        assert!(
            stop.text.contains("invalid value") && stop.text.contains(name),
            "{line}: {}",
            stop.text
        );
    }
}
