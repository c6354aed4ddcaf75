//! smoltcp's `Device` over a [`Netif`]: receive with `try_receive`, transmit
//! with `transmit`, one frame buffer each way.

use alloc::vec::Vec;
use lamina_core::device::Netif;
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Borrowed for one `Interface::poll`.
pub struct NetifDevice<'a, N: Netif> {
    /// The interface.
    pub netif: &'a N,
    /// Receive buffer; `pending` bytes of it hold a frame already received.
    pub rx: &'a mut Vec<u8>,
    /// Length of the frame waiting in `rx`, if any.
    pub pending: &'a mut Option<usize>,
    /// Transmit buffer.
    pub tx: &'a mut Vec<u8>,
    /// Frames that could not be received (too large, device errors).
    pub rx_errors: &'a mut u64,
    /// Whether a listening port's accept queue is full: its SYNs are dropped,
    /// as Linux does, so that clients retry instead of being refused.
    pub port_full: &'a dyn Fn(u16) -> bool,
    /// SYNs dropped because of `port_full`.
    pub syn_drops: &'a mut u64,
    /// Frames and TCP counters for the trace, when it is on.
    pub trace: &'a crate::trace::WireTrace,
}

/// The source address and the TCP header and payload of `frame` if it
/// carries a TCP segment (not a fragment) in IPv4 or IPv6 over Ethernet.
pub(crate) fn tcp_segment(frame: &[u8]) -> Option<(smoltcp::wire::IpAddress, &[u8])> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    match ethertype {
        0x0800 => {
            let header_len = ((ip.first()? & 0x0f) as usize) * 4;
            // Not TCP, or a fragment: not ours to judge.
            if *ip.get(9)? != 6 || u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff != 0 {
                return None;
            }
            Some((source(ip, false)?, ip.get(header_len..)?))
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None; // extension headers: let smoltcp decide
            }
            Some((source(ip, true)?, ip.get(40..)?))
        }
        _ => None,
    }
}

/// The source address of an IPv4 (`v6` false) or IPv6 header `ip`.
fn source(ip: &[u8], v6: bool) -> Option<smoltcp::wire::IpAddress> {
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv6Address};
    if v6 {
        let bytes: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
        Some(IpAddress::Ipv6(Ipv6Address::from(bytes)))
    } else {
        let bytes: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
        Some(IpAddress::Ipv4(Ipv4Address::from(bytes)))
    }
}

/// The destination port of `frame` if it is a TCP SYN (without ACK) in
/// IPv4 or IPv6 over Ethernet.
fn syn_port(frame: &[u8]) -> Option<u16> {
    let (_, tcp) = tcp_segment(frame)?;
    let flags = *tcp.get(13)?;
    let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
    (syn && !ack).then(|| u16::from_be_bytes([tcp[2], tcp[3]]))
}

/// Whether `frame` is a DHCP ACK that smoltcp's DHCP client would panic on
/// ("overflow when subtracting durations", smoltcp 0.12 socket/dhcpv4.rs
/// `parse_ack`): a renewal time (T1, option 58) longer than the lease
/// (option 51, or smoltcp's default of 120 s without one) and no rebinding
/// time (T2, option 59), from which smoltcp works T2 out as
/// `T1 + (lease - T1) * 3 / 4`. Such a frame is dropped before smoltcp sees
/// it; the client asks again. Found by the net_frames fuzz target: one ACK
/// from the network ended the guest.
fn dhcp_ack_renewing_past_its_lease(frame: &[u8]) -> bool {
    use smoltcp::wire::{
        DhcpMessageType, DhcpPacket, DhcpRepr, EthernetFrame, EthernetProtocol, IpProtocol,
        Ipv4Packet, UdpPacket, DHCP_CLIENT_PORT,
    };
    // The common case in a few byte compares: not IPv4 carrying UDP.
    if frame.get(12..14) != Some(&[0x08, 0x00]) || frame.get(23) != Some(&17) {
        return false;
    }
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
        return false;
    };
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return false;
    };
    if ip.next_header() != IpProtocol::Udp || udp.dst_port() != DHCP_CLIENT_PORT {
        return false;
    }
    let Ok(dhcp) = DhcpPacket::new_checked(udp.payload()) else {
        return false;
    };
    let Ok(repr) = DhcpRepr::parse(&dhcp) else {
        return false;
    };
    let lease = repr.lease_duration.unwrap_or(120);
    repr.message_type == DhcpMessageType::Ack
        && repr.rebind_duration.is_none()
        && repr.renew_duration.is_some_and(|renew| renew > lease)
}

/// A received frame.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

/// Room to build a frame to send.
pub struct TxToken<'a, N: Netif> {
    netif: &'a N,
    buf: &'a mut Vec<u8>,
    trace: &'a crate::trace::WireTrace,
}

impl<N: Netif> NetifDevice<'_, N> {
    /// The next frame smoltcp will be given, received now if none waits;
    /// `None` if the interface has none.
    pub fn peek(&mut self) -> Option<&[u8]> {
        while self.pending.is_none() {
            match self.netif.try_receive(self.rx) {
                Ok(Some(len)) => *self.pending = Some(len),
                Ok(None) => return None,
                Err(_) => *self.rx_errors += 1, // dropped; try the next frame
            }
        }
        self.rx.get(..(*self.pending)?)
    }
}

impl<N: Netif> phy::Device for NetifDevice<'_, N> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, N>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_, N>)> {
        let len = loop {
            let len = match self.pending.take() {
                Some(len) => len,
                None => match self.netif.try_receive(self.rx) {
                    Ok(Some(len)) => len,
                    Ok(None) => return None,
                    Err(_) => {
                        *self.rx_errors += 1; // dropped; try the next frame
                        continue;
                    }
                },
            };
            if let Some(port) = syn_port(&self.rx[..len]) {
                if (self.port_full)(port) {
                    *self.syn_drops += 1;
                    continue;
                }
            }
            if dhcp_ack_renewing_past_its_lease(&self.rx[..len]) {
                log::warn!(
                    "net: dropped a DHCP ACK whose renewal time is past its lease and which has no rebinding time"
                );
                *self.rx_errors += 1;
                continue;
            }
            break len;
        };
        self.trace.received(&self.rx[..len]);
        let rx = RxToken {
            frame: &mut self.rx[..len],
        };
        let tx = TxToken {
            netif: self.netif,
            buf: self.tx,
            trace: self.trace,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, N>> {
        Some(TxToken {
            netif: self.netif,
            buf: self.tx,
            trace: self.trace,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.netif.mtu() + 14;
        if self.netif.offloads().checksum {
            // The device verifies and fills them in.
            caps.checksum.tcp = Checksum::None;
            caps.checksum.udp = Checksum::None;
        }
        caps
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl<N: Netif> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.clear();
        self.buf.resize(len, 0);
        let result = f(self.buf);
        self.trace.sent(self.buf);
        // A frame the link refuses is lost, as on Ethernet; TCP retransmits.
        if let Err(e) = self.netif.transmit(self.buf) {
            log::debug!("net: transmit failed: {e}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::{dhcp_ack_renewing_past_its_lease, syn_port};
    use alloc::vec;
    use alloc::vec::Vec;

    fn ipv4_tcp(flags: u8, port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[34 + 2..34 + 4].copy_from_slice(&port.to_be_bytes());
        f[34 + 13] = flags;
        f
    }

    #[test]
    fn finds_syns_and_only_syns() {
        assert_eq!(syn_port(&ipv4_tcp(0x02, 80)), Some(80));
        assert_eq!(syn_port(&ipv4_tcp(0x12, 80)), None); // SYN-ACK
        assert_eq!(syn_port(&ipv4_tcp(0x10, 80)), None); // ACK
        let mut fragment = ipv4_tcp(0x02, 80);
        fragment[14 + 7] = 1; // fragment offset
        assert_eq!(syn_port(&fragment), None);
        for len in 0..54 {
            let _ = syn_port(&ipv4_tcp(0x02, 80)[..len]); // truncated: no panic
        }
        assert_eq!(syn_port(&ipv4_tcp(0x02, 80)[..40]), None);
    }

    /// A DHCP message from a server to the client's port, with `options`
    /// after the message type.
    fn dhcp(kind: u8, options: &[u8]) -> Vec<u8> {
        let mut bootp = vec![2, 1, 6, 0];
        bootp.extend_from_slice(&[0; 12]); // xid, secs, flags, ciaddr
        bootp.extend_from_slice(&[10, 0, 0, 5, 10, 0, 0, 1, 0, 0, 0, 0]);
        bootp.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        bootp.extend_from_slice(&[0; 10 + 192]); // chaddr's rest, sname, file
        bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
        bootp.extend_from_slice(&[1, 4, 255, 255, 255, 0, 54, 4, 10, 0, 0, 1]);
        bootp.extend_from_slice(options);
        bootp.push(255);
        let udp_len = 8 + bootp.len();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 255, 255, 255, 255]);
        f.extend_from_slice(&[0, 67, 0, 68]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&bootp);
        f
    }

    /// The net_frames input's ACK: a lease of 33623568 s, T1 of
    /// 1886350951 s, no T2; smoltcp panicked subtracting T1 from the lease.
    #[test]
    fn finds_dhcp_acks_renewing_past_their_lease() {
        const ACK: u8 = 5;
        let lease = |s: u32| [&[51, 4][..], &s.to_be_bytes()].concat();
        let renew = |s: u32| [&[58, 4][..], &s.to_be_bytes()].concat();
        let rebind = |s: u32| [&[59, 4][..], &s.to_be_bytes()].concat();
        let found =
            |options: &[Vec<u8>]| dhcp_ack_renewing_past_its_lease(&dhcp(ACK, &options.concat()));
        assert!(found(&[lease(33_623_568), renew(1_886_350_951)]));
        assert!(found(&[lease(100), renew(101)]));
        // Without a lease, smoltcp's 120 s.
        assert!(found(&[renew(121)]));
        assert!(!found(&[renew(120)]));
        // T1 within the lease, or T2 given, or no T1: smoltcp subtracts
        // nothing that can go below zero.
        assert!(!found(&[lease(100), renew(100)]));
        assert!(!found(&[lease(100), renew(101), rebind(102)]));
        assert!(!found(&[lease(100)]));
        assert!(!found(&[]));
        // An OFFER with the same times is not taken as a lease.
        let offer = dhcp(2, &[lease(100), renew(101)].concat());
        assert!(!dhcp_ack_renewing_past_its_lease(&offer));
        // Cut short, or to another port: not a DHCP message to judge.
        let mut ack = dhcp(ACK, &[lease(100), renew(101)].concat());
        assert!(!dhcp_ack_renewing_past_its_lease(&ack[..100]));
        ack[36..38].copy_from_slice(&69u16.to_be_bytes());
        assert!(!dhcp_ack_renewing_past_its_lease(&ack));
    }
}
