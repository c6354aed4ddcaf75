//! The few Ethernet frames a stopped service's tap watch understands: ARP
//! requests for the guest's address (answered for it) and IPv4 packets to
//! it (which summon it), and the ARP reply the daemon writes. Every read is
//! bounds-checked through `field`; a frame too short or of another kind
//! is simply not recognised.

use std::net::Ipv4Addr;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;

/// Byte offsets in an Ethernet frame carrying ARP or IPv4 (no VLAN tag).
pub mod offset {
    /// Destination MAC.
    pub const DESTINATION: usize = 0;
    /// Source MAC.
    pub const SOURCE: usize = 6;
    /// EtherType.
    pub const ETHERTYPE: usize = 12;
    /// Start of the Ethernet payload.
    pub const PAYLOAD: usize = 14;
    /// ARP operation (1 request, 2 reply).
    pub const ARP_OPERATION: usize = PAYLOAD + 6;
    /// ARP sender hardware address.
    pub const ARP_SENDER_MAC: usize = PAYLOAD + 8;
    /// ARP sender protocol address.
    pub const ARP_SENDER_IP: usize = PAYLOAD + 14;
    /// ARP target hardware address.
    pub const ARP_TARGET_MAC: usize = PAYLOAD + 18;
    /// ARP target protocol address.
    pub const ARP_TARGET_IP: usize = PAYLOAD + 24;
    /// IPv4 protocol number.
    pub const IPV4_PROTOCOL: usize = PAYLOAD + 9;
    /// IPv4 source address.
    pub const IPV4_SOURCE: usize = PAYLOAD + 12;
    /// IPv4 destination address.
    pub const IPV4_DESTINATION: usize = PAYLOAD + 16;
}

/// The ARP header for Ethernet and IPv4: hardware type 1, protocol
/// 0x0800, address lengths 6 and 4.
const ARP_ETHERNET_IPV4: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];
/// ARP operations.
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// IP protocol numbers.
pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;
/// TCP flags byte: SYN and ACK.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The shortest Ethernet frame (without its FCS): shorter ones are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// `N` bytes of `frame` from `start`, if the frame holds them: the one
/// place this module reads a frame.
fn field<const N: usize>(frame: &[u8], start: usize) -> Option<[u8; N]> {
    frame.get(start..start.checked_add(N)?)?.try_into().ok()
}

fn u16_at(frame: &[u8], start: usize) -> Option<u16> {
    field(frame, start).map(u16::from_be_bytes)
}

fn ipv4_at(frame: &[u8], start: usize) -> Option<Ipv4Addr> {
    field::<4>(frame, start).map(Ipv4Addr::from)
}

/// What a frame sent towards the guest is, for its watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// `asker` (at `asker_mac`) asks who has the guest's address.
    ArpRequest {
        /// The asker's address.
        asker: Ipv4Addr,
        /// The asker's MAC, where the reply goes.
        asker_mac: [u8; 6],
    },
    /// An IPv4 packet for the guest's address.
    Ipv4(Packet),
}

/// An IPv4 packet for the guest, as far as a summon event tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Its source address.
    pub source: Ipv4Addr,
    /// The MAC it came from: the source's, or its router's.
    pub source_mac: [u8; 6],
    /// Its IP protocol number (6 TCP, 17 UDP, 1 ICMP...).
    pub protocol: u8,
    /// Its destination port (TCP and UDP, first fragment only).
    pub port: Option<u16>,
    /// Whether it is a TCP SYN without ACK: a new connection.
    pub syn: bool,
}

/// What `frame` (an Ethernet frame, without virtio-net header) is for the
/// guest at `guest_ip`, if it is an ARP request for that address or an
/// IPv4 packet to it.
pub fn classify(frame: &[u8], guest_ip: Ipv4Addr) -> Option<Seen> {
    match u16_at(frame, offset::ETHERTYPE)? {
        ETHERTYPE_ARP => {
            let header = field::<6>(frame, offset::PAYLOAD)?;
            let request = u16_at(frame, offset::ARP_OPERATION)? == ARP_REQUEST;
            let target = ipv4_at(frame, offset::ARP_TARGET_IP)?;
            (header == ARP_ETHERNET_IPV4 && request && target == guest_ip).then_some(())?;
            Some(Seen::ArpRequest {
                asker: ipv4_at(frame, offset::ARP_SENDER_IP)?,
                asker_mac: field(frame, offset::ARP_SENDER_MAC)?,
            })
        }
        ETHERTYPE_IPV4 => {
            let [version_ihl] = field::<1>(frame, offset::PAYLOAD)?;
            if version_ihl >> 4 != 4 || ipv4_at(frame, offset::IPV4_DESTINATION)? != guest_ip {
                return None;
            }
            let [protocol] = field::<1>(frame, offset::IPV4_PROTOCOL)?;
            let fragment = u16_at(frame, offset::PAYLOAD + 6)? & 0x1fff;
            let transport = offset::PAYLOAD + usize::from(version_ihl & 0x0f) * 4;
            let ports = matches!(protocol, PROTOCOL_TCP | PROTOCOL_UDP) && fragment == 0;
            let port = if ports {
                u16_at(frame, transport + 2)
            } else {
                None
            };
            let syn = protocol == PROTOCOL_TCP
                && fragment == 0
                && field::<1>(frame, transport + 13)
                    .is_some_and(|[flags]| flags & (TCP_SYN | TCP_ACK) == TCP_SYN);
            Some(Seen::Ipv4(Packet {
                source: ipv4_at(frame, offset::IPV4_SOURCE)?,
                source_mac: field(frame, offset::SOURCE)?,
                protocol,
                port,
                syn,
            }))
        }
        _ => None,
    }
}

/// The ARP reply "`guest_ip` is at `guest_mac`" to `asker` at
/// `asker_mac`, as the guest would send it (padded to the shortest frame).
pub fn arp_reply(
    guest_mac: [u8; 6],
    guest_ip: Ipv4Addr,
    asker_mac: [u8; 6],
    asker: Ipv4Addr,
) -> [u8; MIN_FRAME_LEN] {
    let mut frame = [0u8; MIN_FRAME_LEN];
    let mut put =
        |start: usize, bytes: &[u8]| frame[start..start + bytes.len()].copy_from_slice(bytes);
    put(offset::DESTINATION, &asker_mac);
    put(offset::SOURCE, &guest_mac);
    put(offset::ETHERTYPE, &ETHERTYPE_ARP.to_be_bytes());
    put(offset::PAYLOAD, &ARP_ETHERNET_IPV4);
    put(offset::ARP_OPERATION, &ARP_REPLY.to_be_bytes());
    put(offset::ARP_SENDER_MAC, &guest_mac);
    put(offset::ARP_SENDER_IP, &guest_ip.octets());
    put(offset::ARP_TARGET_MAC, &asker_mac);
    put(offset::ARP_TARGET_IP, &asker.octets());
    frame
}

/// The ARP request "who has `guest_ip`? tell `asker` at `asker_mac`",
/// sent to the guest's MAC (as a host refreshing its cache does): a guest
/// that reads it learns the asker's MAC without asking for it.
pub fn arp_request(
    guest_mac: [u8; 6],
    guest_ip: Ipv4Addr,
    asker_mac: [u8; 6],
    asker: Ipv4Addr,
) -> [u8; MIN_FRAME_LEN] {
    let mut frame = arp_reply(asker_mac, asker, guest_mac, guest_ip);
    frame[offset::ARP_OPERATION..offset::ARP_OPERATION + 2]
        .copy_from_slice(&ARP_REQUEST.to_be_bytes());
    frame[offset::ARP_TARGET_MAC..offset::ARP_TARGET_IP].fill(0);
    frame
}

/// The MAC address the daemon gives the holder of `ip` on its bridge:
/// locally administered, unicast, `02:6a` then the address's four bytes,
/// so that it is unique on the network and the same at every boot.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x6a, a, b, c, d]
}

/// `mac` as `02:6a:0a:4d:00:02`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
    pub const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x64];

    /// An ARP request from the client for `target`, broadcast.
    pub fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut frame = arp_reply([0xff; 6], target, CLIENT_MAC, CLIENT).to_vec();
        // Turn the reply around: from the client, to everyone, asking.
        frame[offset::DESTINATION..offset::SOURCE].copy_from_slice(&[0xff; 6]);
        frame[offset::SOURCE..offset::ETHERTYPE].copy_from_slice(&CLIENT_MAC);
        frame[offset::ARP_OPERATION + 1] = 1;
        frame[offset::ARP_SENDER_MAC..offset::ARP_SENDER_IP].copy_from_slice(&CLIENT_MAC);
        frame[offset::ARP_SENDER_IP..offset::ARP_TARGET_MAC].copy_from_slice(&CLIENT.octets());
        frame[offset::ARP_TARGET_MAC..offset::ARP_TARGET_IP].copy_from_slice(&[0; 6]);
        frame[offset::ARP_TARGET_IP..offset::ARP_TARGET_IP + 4].copy_from_slice(&target.octets());
        frame
    }

    /// A TCP segment from the client to `destination`:`port` with `flags`.
    pub fn tcp(destination: Ipv4Addr, port: u16, flags: u8) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 20];
        frame[..6].copy_from_slice(&mac_for(destination));
        frame[6..12].copy_from_slice(&CLIENT_MAC);
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x45;
        frame[14 + 9] = PROTOCOL_TCP;
        frame[14 + 12..14 + 16].copy_from_slice(&CLIENT.octets());
        frame[14 + 16..14 + 20].copy_from_slice(&destination.octets());
        frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&port.to_be_bytes());
        frame[34 + 13] = flags;
        frame
    }

    #[test]
    fn an_arp_request_for_the_guest_is_recognised_and_answered() {
        let seen = classify(&arp_request(GUEST), GUEST);
        assert_eq!(
            seen,
            Some(Seen::ArpRequest {
                asker: CLIENT,
                asker_mac: CLIENT_MAC
            })
        );
        assert_eq!(
            classify(&arp_request(CLIENT), GUEST),
            None,
            "not for the guest"
        );
        let reply = arp_reply(mac_for(GUEST), GUEST, CLIENT_MAC, CLIENT);
        assert_eq!(&reply[..6], &CLIENT_MAC, "unicast to the asker");
        assert_eq!(&reply[6..12], &mac_for(GUEST));
        assert_eq!(&reply[12..14], &[0x08, 0x06]);
        assert_eq!(u16_at(&reply, offset::ARP_OPERATION), Some(ARP_REPLY));
        assert_eq!(ipv4_at(&reply, offset::ARP_SENDER_IP), Some(GUEST));
        assert_eq!(field(&reply, offset::ARP_SENDER_MAC), Some(mac_for(GUEST)));
        assert_eq!(ipv4_at(&reply, offset::ARP_TARGET_IP), Some(CLIENT));
        assert_eq!(classify(&reply, GUEST), None, "a reply is not a request");
    }

    #[test]
    fn a_syn_to_the_guest_is_a_new_connection() {
        let syn = classify(&tcp(GUEST, 80, TCP_SYN), GUEST);
        let expected = Packet {
            source: CLIENT,
            source_mac: CLIENT_MAC,
            protocol: PROTOCOL_TCP,
            port: Some(80),
            syn: true,
        };
        assert_eq!(syn, Some(Seen::Ipv4(expected)));
        let ack = classify(&tcp(GUEST, 80, TCP_SYN | TCP_ACK), GUEST);
        assert_eq!(
            ack,
            Some(Seen::Ipv4(Packet {
                syn: false,
                ..expected
            }))
        );
        assert_eq!(classify(&tcp(CLIENT, 80, TCP_SYN), GUEST), None);
    }

    #[test]
    fn short_and_foreign_frames_are_not_recognised() {
        let syn = tcp(GUEST, 80, TCP_SYN);
        for len in 0..syn.len() {
            // A cut frame is either unrecognised or recognised without
            // what it lacks; it never panics.
            if let Some(Seen::Ipv4(packet)) = classify(&syn[..len], GUEST) {
                assert!(len >= 34, "{len}");
                assert!(packet.port.is_none() || len >= 38, "{len}");
            }
        }
        let mut ipv6 = syn.clone();
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(classify(&ipv6, GUEST), None);
        let request = arp_request(GUEST);
        assert_eq!(classify(&request[..41], GUEST), None);
    }

    #[test]
    fn an_introduction_is_a_request_for_the_guest_from_the_peer() {
        let frame = super::arp_request(mac_for(GUEST), GUEST, CLIENT_MAC, CLIENT);
        assert_eq!(&frame[..6], &mac_for(GUEST), "unicast to the guest");
        assert_eq!(
            classify(&frame, GUEST),
            Some(Seen::ArpRequest {
                asker: CLIENT,
                asker_mac: CLIENT_MAC
            })
        );
        assert_eq!(field::<6>(&frame, offset::ARP_TARGET_MAC), Some([0; 6]));
    }

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_for(GUEST), [0x02, 0x6a, 10, 77, 0, 2]);
        assert_eq!(format_mac(mac_for(GUEST)), "02:6a:0a:4d:00:02");
        assert_eq!(mac_for(GUEST)[0] & 0x03, 0x02, "local unicast");
    }
}
