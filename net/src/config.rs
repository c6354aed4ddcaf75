//! The stack's boot arguments.

use alloc::format;
use alloc::string::{String, ToString};
use core::net::Ipv4Addr;
use lamina_core::args::ArgValue;

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
        if self.prefix <= 30 {
            let host_bits = u32::MAX >> self.prefix;
            let bits = u32::from(address) & host_bits;
            if bits == 0 || bits == host_bits {
                return Err(format!(
                    "{address} is the {} address of {self}; give a host address",
                    if bits == 0 { "network" } else { "broadcast" }
                ));
            }
        }
        Ok(())
    }
}

impl core::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

lamina_core::boot_args! {
    /// Network (Lamina's TCP/IP stack)
    pub struct NetArgs {
        /// IPv4 address and prefix; without it, DHCP.
        pub ipv4: Option<Ipv4Cidr> = "",
        /// IPv4 default gateway.
        pub ipv4_gateway: Option<Ipv4Addr> = "",
        /// TCP receive buffer per connection, in bytes (the largest window).
        pub tcp_rx_buffer: usize = "65536",
        /// TCP send buffer per connection, in bytes.
        pub tcp_tx_buffer: usize = "65536",
        /// Delay before a TCP ACK for received data, in milliseconds (0:
        /// none). Measured over a tap on spt: echo round trips/s rise from
        /// about 16,000 with smoltcp's 10 ms to about 35,000 with none,
        /// with bulk throughput unchanged within noise; hence none.
        pub tcp_ack_delay_ms: u64 = "0",
        /// Memory for TCP buffers in all, in bytes: past a quarter of it new
        /// connections get small buffers, past all of it they wait.
        pub tcp_memory: usize = "29360128",
        /// Connections a listener holds until accepted (its backlog).
        pub tcp_backlog: usize = "1024",
    }
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
}
