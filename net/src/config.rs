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
        Ok(Ipv4Cidr { address, prefix })
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
}
