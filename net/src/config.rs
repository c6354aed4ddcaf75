//! The stack's boot arguments, and what each accepts. Every value that
//! smoltcp or the stack's own arithmetic cannot take is refused when the
//! command line is parsed ([`NetArgs::check`]), with the argument, the value
//! and what is allowed: the unikernel stops with status 2 instead of
//! panicking, aborting or quietly doing something else later.

use alloc::format;
use alloc::string::{String, ToString};
use core::net::Ipv4Addr;
use lamina_core::args::{ArgError, ArgValue};
use lamina_core::device::DnsServers;

/// Smallest TCP buffer per direction: what a connection gets when memory
/// is short, and the least `--tcp-rx-buffer` and `--tcp-tx-buffer` accept.
pub const MIN_TCP_BUFFER: usize = 1024;

/// Largest TCP buffer per direction. smoltcp panics on a receive buffer
/// above 1 GiB ("receiving buffer too large", tcp::Socket::new): the
/// largest window TCP can announce, 65535 << 14 (RFC 7323's largest window
/// scale). The send buffer has the same bound, for symmetry.
pub const MAX_TCP_BUFFER: usize = 1 << 30;

/// Longest delay before a TCP ACK: RFC 9293 (3.8.6.3) wants an ACK within
/// 500 ms of the first unacknowledged segment.
pub const MAX_ACK_DELAY_MS: u64 = 500;

/// Largest accept queue of a listener (`--tcp-backlog`).
pub const MAX_TCP_BACKLOG: usize = 65535;

/// An IPv4 address with its prefix length: `10.0.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl ArgValue for Ipv4Cidr {
    fn parse_arg(s: &str) -> Result<Self, String> {
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| "expected ADDR/PREFIX like 10.0.0.2/24".to_string())?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("'{address}' is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| "prefix must be 0 to 32".to_string())?;
        let cidr = Ipv4Cidr { address, prefix };
        cidr.check().map(|()| cidr)
    }
}

/// Whether `address` may be an interface's or a gateway's: not 0.0.0.0,
/// multicast or the broadcast address (smoltcp asserts as much).
pub fn is_unicast(address: Ipv4Addr) -> bool {
    !(address.is_unspecified() || address.is_multicast() || address.is_broadcast())
}

impl Ipv4Cidr {
    /// Whether the address may be the interface's: unicast, and neither
    /// the network's own address nor its broadcast address (prefixes up to
    /// /30; /31 and /32 have neither).
    pub fn check(&self) -> Result<(), String> {
        let address = self.address;
        if !is_unicast(address) {
            return Err(format!(
                "{address} is not a unicast address (0.0.0.0, multicast and 255.255.255.255 are not)"
            ));
        }
        if let Some(which) = self.network_or_broadcast(address) {
            return Err(format!(
                "{address} is the {which} address of {}/{}; give a host address",
                self.network(),
                self.prefix
            ));
        }
        Ok(())
    }

    /// The network's own address: the address with its host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.network_mask())
    }

    /// Whether `address` lies in this prefix.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.network_mask() == u32::from(self.network())
    }

    fn network_mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `address` is this prefix's network ("network") or broadcast
    /// ("broadcast") address; prefixes /31 and /32 have neither.
    fn network_or_broadcast(&self, address: Ipv4Addr) -> Option<&'static str> {
        if self.prefix > 30 {
            return None;
        }
        let host_bits = u32::from(address) & !self.network_mask();
        if host_bits == 0 {
            Some("network")
        } else if host_bits == !self.network_mask() {
            Some("broadcast")
        } else {
            None
        }
    }
}

impl core::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

lamina_core::boot_args! {
    /// Network (Lamina's TCP/IP stack)
    #[check(NetArgs::check)]
    pub struct NetArgs {
        /// IPv4 address and prefix; without it, DHCP.
        pub ipv4: Option<Ipv4Cidr> = "",
        /// IPv4 default gateway, inside the --ipv4 prefix.
        pub ipv4_gateway: Option<Ipv4Addr> = "",
        /// TCP receive buffer per connection, in bytes (its window), 1024 to 1 GiB;
        /// the first connections, while an eighth of --tcp-memory is used, get eight times it.
        pub tcp_rx_buffer: usize = "65536",
        /// TCP send buffer per connection, in bytes, 1024 to 1 GiB (eight times it, as above).
        pub tcp_tx_buffer: usize = "65536",
        /// Delay before a TCP ACK for received data, in milliseconds, 0 (none) to 500.
        /// Measured over a tap on spt: echo round trips/s rise from
        /// about 16,000 with smoltcp's 10 ms to about 35,000 with none,
        /// with bulk throughput unchanged within noise; hence none.
        pub tcp_ack_delay_ms: u64 = "0",
        /// Memory for TCP buffers in all, in bytes, at most half the heap: past an eighth
        /// of it new connections get the configured buffers, past a quarter small ones,
        /// past all of it they wait.
        pub tcp_memory: usize = "29360128",
        /// Connections a listener holds until accepted (its backlog), 1 to 65535.
        pub tcp_backlog: usize = "1024",
        /// DNS servers for resolvers, ADDR[:PORT] separated by commas (at most 3);
        /// without it, those DHCP gave (option 6).
        pub dns: Option<DnsServers> = "",
    }
}

/// `--NAME=VALUE` is refused: `reason`.
fn invalid(name: &str, value: impl core::fmt::Display, reason: String) -> ArgError {
    ArgError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// Refuses `value` of `--name` outside `range`, giving `what` for the unit.
fn in_range<T>(
    name: &str,
    value: T,
    range: core::ops::RangeInclusive<T>,
    what: &str,
) -> Result<(), ArgError>
where
    T: PartialOrd + core::fmt::Display + Copy,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(
        name,
        value,
        format!("expected {} to {} {what}", range.start(), range.end()),
    ))
}

impl NetArgs {
    /// Checks the arguments once all are parsed (the parser calls it; a
    /// program that builds `NetArgs` itself may too): each size, count and
    /// duration in its range, the address a host address of its prefix,
    /// the gateway a unicast address inside that prefix, and a connection's
    /// buffers within a quarter of `--tcp-memory` (else no connection could
    /// have them).
    pub fn check(&self) -> Result<(), ArgError> {
        if let Some(cidr) = self.ipv4 {
            cidr.check()
                .map_err(|reason| invalid("ipv4", cidr, reason))?;
        }
        if let Some(gateway) = self.ipv4_gateway {
            check_gateway(gateway, self.ipv4)
                .map_err(|reason| invalid("ipv4-gateway", gateway, reason))?;
        }
        let buffers = MIN_TCP_BUFFER..=MAX_TCP_BUFFER;
        in_range(
            "tcp-rx-buffer",
            self.tcp_rx_buffer,
            buffers.clone(),
            "bytes (1 GiB)",
        )?;
        in_range(
            "tcp-tx-buffer",
            self.tcp_tx_buffer,
            buffers,
            "bytes (1 GiB)",
        )?;
        in_range(
            "tcp-ack-delay-ms",
            self.tcp_ack_delay_ms,
            0..=MAX_ACK_DELAY_MS,
            "milliseconds",
        )?;
        in_range(
            "tcp-backlog",
            self.tcp_backlog,
            1..=MAX_TCP_BACKLOG,
            "connections",
        )?;
        self.check_buffers_fit(&format!("--tcp-memory={}", self.tcp_memory))
    }

    /// Limits `--tcp-memory` to half of a heap of `heap_bytes` (the rest is
    /// for the application and the stack's own state), then checks that a
    /// connection's buffers still fit in a quarter of it. The bare-metal
    /// runtimes call it once they know their heap.
    pub fn limit_to_heap(&mut self, heap_bytes: usize) -> Result<(), ArgError> {
        self.tcp_memory = self.tcp_memory.min(heap_bytes / 2);
        self.check_buffers_fit(&format!(
            "the TCP memory ({} bytes: --tcp-memory, at most half the heap of {heap_bytes} bytes)",
            self.tcp_memory
        ))
    }

    /// Refuses receive and send buffers that together take more than a
    /// quarter of the TCP memory, described by `budget`.
    fn check_buffers_fit(&self, budget: &str) -> Result<(), ArgError> {
        let connection = self.tcp_rx_buffer.saturating_add(self.tcp_tx_buffer);
        let quarter = self.tcp_memory / 4;
        if connection <= quarter {
            return Ok(());
        }
        Err(invalid(
            "tcp-rx-buffer",
            self.tcp_rx_buffer,
            format!(
                "with --tcp-tx-buffer={} a connection's buffers take {connection} bytes, more than \
                 {quarter}, a quarter of {budget}: no connection could have them",
                self.tcp_tx_buffer
            ),
        ))
    }
}

/// Why `gateway` cannot be the default gateway of an interface with
/// address `ipv4` (absent: the address comes from DHCP). smoltcp asserts
/// that a neighbour it resolves is unicast (`protocol_addr.is_unicast()`,
/// iface/neighbor.rs), and a gateway outside the prefix is never reached.
fn check_gateway(gateway: Ipv4Addr, ipv4: Option<Ipv4Cidr>) -> Result<(), String> {
    if !is_unicast(gateway) {
        return Err(format!(
            "{gateway} is not a unicast address (0.0.0.0, multicast and 255.255.255.255 are not)"
        ));
    }
    let Some(cidr) = ipv4 else {
        return Ok(());
    };
    if gateway == cidr.address {
        return Err(format!(
            "{gateway} is the interface's own address (--ipv4={cidr})"
        ));
    }
    if !cidr.contains(gateway) {
        return Err(format!(
            "{gateway} is outside the interface's prefix {}/{} (--ipv4={cidr})",
            cidr.network(),
            cidr.prefix
        ));
    }
    if let Some(which) = cidr.network_or_broadcast(gateway) {
        return Err(format!(
            "{gateway} is the {which} address of {}/{} (--ipv4={cidr})",
            cidr.network(),
            cidr.prefix
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_rejects() {
        assert_eq!(
            Ipv4Cidr::parse_arg("10.0.0.2/24").unwrap(),
            Ipv4Cidr {
                address: Ipv4Addr::new(10, 0, 0, 2),
                prefix: 24
            }
        );
        for bad in ["10.0.0.2", "10.0.0.2/33", "10.0.0/24", "x/1", "10.0.0.2/"] {
            assert!(Ipv4Cidr::parse_arg(bad).is_err(), "{bad}");
        }
    }

    /// Issue 18: these passed the parser, then smoltcp panicked ("IP
    /// address ... is not unicast") when the stack started.
    #[test]
    fn cidrs_that_are_no_host_address_are_refused() {
        for bad in [
            "239.1.0.2/24",
            "224.0.0.1/4",
            "255.255.255.255/0",
            "0.0.0.0/8",
            "10.1.0.0/24",
            "10.1.0.255/24",
            "10.1.0.3/30",
        ] {
            let error = Ipv4Cidr::parse_arg(bad).unwrap_err();
            assert!(error.contains(bad.split('/').next().unwrap()), "{error}");
        }
        for good in ["10.1.0.2/24", "10.1.0.1/31", "10.1.0.0/31", "10.1.0.255/32"] {
            assert!(Ipv4Cidr::parse_arg(good).is_ok(), "{good}");
        }
    }

    fn parse(words: &[&str]) -> Result<NetArgs, String> {
        use lamina_core::args::BootArgs;
        let mut args = NetArgs::defaults();
        lamina_core::args::parse("unikernel", words, &mut [&mut args])
            .map_err(|e| e.to_string())?;
        Ok(args)
    }

    /// Issue 18's rows, each refused by the parser with the argument, the
    /// value and what is allowed (the runtimes turn that into status 2).
    #[test]
    fn arguments_no_stack_can_use_are_refused_when_parsed() {
        let huge = "18446744073709551615";
        let cases: [(&[&str], &str); 15] = [
            (
                &["--dns=10.1.0.1:0"],
                "invalid value '10.1.0.1:0' for '--dns': 10.1.0.1:0 cannot be a DNS server",
            ),
            (
                &["--dns=resolver"],
                "invalid value 'resolver' for '--dns': 'resolver' is not an IP address",
            ),
            (
                &["--dns=10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4"],
                "invalid value '10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4' for '--dns': at most 3 servers",
            ),
            (
                &["--ipv4=239.1.0.2/24"],
                "invalid value '239.1.0.2/24' for '--ipv4': 239.1.0.2 is not a unicast address",
            ),
            (
                &["--ipv4=255.255.255.255/0"],
                "invalid value '255.255.255.255/0' for '--ipv4': 255.255.255.255 is not a unicast address",
            ),
            (
                &["--ipv4=10.1.0.2/24", "--ipv4-gateway=224.0.0.1"],
                "invalid value '224.0.0.1' for '--ipv4-gateway': 224.0.0.1 is not a unicast address",
            ),
            (
                &["--ipv4-gateway=0.0.0.0"],
                "invalid value '0.0.0.0' for '--ipv4-gateway': 0.0.0.0 is not a unicast address",
            ),
            (
                &["--ipv4-gateway=10.2.0.1", "--ipv4=10.1.0.2/24"],
                "invalid value '10.2.0.1' for '--ipv4-gateway': 10.2.0.1 is outside the interface's prefix 10.1.0.0/24 (--ipv4=10.1.0.2/24)",
            ),
            (
                &["--ipv4=10.1.0.2/24", "--ipv4-gateway=10.1.0.255"],
                "invalid value '10.1.0.255' for '--ipv4-gateway': 10.1.0.255 is the broadcast address of 10.1.0.0/24",
            ),
            (
                &["--ipv4=10.1.0.2/24", "--ipv4-gateway=10.1.0.2"],
                "invalid value '10.1.0.2' for '--ipv4-gateway': 10.1.0.2 is the interface's own address",
            ),
            (
                &[&format!("--tcp-rx-buffer={huge}")],
                "invalid value '18446744073709551615' for '--tcp-rx-buffer': expected 1024 to 1073741824 bytes (1 GiB)",
            ),
            (
                &["--tcp-tx-buffer=100"],
                "invalid value '100' for '--tcp-tx-buffer': expected 1024 to 1073741824 bytes (1 GiB)",
            ),
            (
                &[&format!("--tcp-backlog={huge}")],
                "invalid value '18446744073709551615' for '--tcp-backlog': expected 1 to 65535 connections",
            ),
            (
                &[&format!("--tcp-ack-delay-ms={huge}")],
                "invalid value '18446744073709551615' for '--tcp-ack-delay-ms': expected 0 to 500 milliseconds",
            ),
            (
                &[&format!("--tcp-memory={huge}"), "--tcp-rx-buffer=1099511627776"],
                "invalid value '1099511627776' for '--tcp-rx-buffer': expected 1024 to 1073741824 bytes (1 GiB)",
            ),
        ];
        for (words, expected) in cases {
            let error = parse(words).unwrap_err();
            assert!(error.starts_with(expected), "{words:?}: {error}");
        }
    }

    #[test]
    fn a_connection_s_buffers_must_fit_a_quarter_of_the_tcp_memory() {
        assert_eq!(
            parse(&["--tcp-memory=1000000", "--tcp-rx-buffer=200000"]).unwrap_err(),
            "invalid value '200000' for '--tcp-rx-buffer': with --tcp-tx-buffer=65536 a connection's \
             buffers take 265536 bytes, more than 250000, a quarter of --tcp-memory=1000000: no \
             connection could have them"
        );
        let mut args = parse(&["--tcp-rx-buffer=1048576"]).unwrap();
        assert_eq!(args.limit_to_heap(64 << 20), Ok(()));
        assert_eq!(args.tcp_memory, 29360128);
        let error = args.limit_to_heap(8 << 20).unwrap_err().to_string();
        assert!(
            error.contains(
                "more than 1048576, a quarter of the TCP memory (4194304 bytes: --tcp-memory, at \
                 most half the heap of 8388608 bytes)"
            ),
            "{error}"
        );
    }

    #[test]
    fn good_arguments_pass() {
        for words in [
            &[][..],
            &["--ipv4=10.1.0.2/24", "--ipv4-gateway=10.1.0.1"],
            &["--ipv4-gateway=10.1.0.1"],
            &["--ipv4=10.1.0.1/31", "--ipv4-gateway=10.1.0.0"],
            &[
                "--tcp-rx-buffer=1073741824",
                "--tcp-tx-buffer=1024",
                "--tcp-memory=8589934592",
            ],
            &["--tcp-backlog=1", "--tcp-ack-delay-ms=500"],
            &["--dns=10.1.0.1,[fd00::53]:5353"],
        ] {
            assert!(parse(words).is_ok(), "{words:?}: {:?}", parse(words));
        }
    }
}
