//! The [`Netif`] suite: frames whole, one per call, sizes checked. It
//! needs a peer at `peer_ip` on the link that answers ARP (any IPv4 host).

use crate::{ensure, Report};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use lamina_core::device::{NetError, Netif};
use lamina_core::runtime::{Duration, Handle};

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// An ARP request from `mac`/`ip` for `target`, broadcast.
fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETHERTYPE_ARP);
    // Ethernet, IPv4, lengths 6 and 4, request.
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

/// Whether `frame` is `peer`'s ARP reply to `mac`.
fn is_arp_reply(frame: &[u8], mac: [u8; 6], peer: Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[0..6] == mac
        && frame[12..14] == ETHERTYPE_ARP
        && frame[20..22] == [0, 2]
        && frame[28..32] == peer.octets()
}

/// Runs the suite: `ip` is an address of ours on the link (not otherwise
/// in use by a stack on this interface), `peer_ip` the peer's.
pub async fn run<N: Netif>(netif: &N, runtime: &Handle, ip: Ipv4Addr, peer_ip: Ipv4Addr) -> Report {
    let mut report = Report::new("Netif");
    let mac = netif.mac();
    report.record(
        "mac is a unicast address, not zero",
        ensure(mac[0] & 1 == 0 && mac != [0; 6], || format!("{mac:x?}")),
    );
    let mtu = netif.mtu();
    report.record(
        "mtu carries IPv6 (1280 to 65535 bytes)",
        ensure((1280..=65535).contains(&mtu), || format!("mtu {mtu}")),
    );
    let too_long = vec![0u8; mtu + 15];
    let sent = netif.transmit(&too_long);
    report.record(
        "a frame longer than MTU + 14 is TooLarge",
        ensure(sent == Err(NetError::TooLarge), || format!("{sent:?}")),
    );
    // With large receive, frames may exceed the MTU (the trait's Offloads).
    let largest = if netif.offloads().large_receive {
        lamina_core::device::Offloads::MAX_LARGE_FRAME
    } else {
        mtu + 14
    };
    let mut buf = vec![0u8; largest];
    let polled = netif.try_receive(&mut buf);
    report.record(
        "try_receive answers at once",
        ensure(polled.is_ok(), || format!("{polled:?}")),
    );
    let request = arp_request(mac, ip, peer_ip);
    let answered = runtime
        .timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = netif.transmit(&request) {
                    return Err(format!("transmit: {e}"));
                }
                netif.flush();
                let wait = runtime.timeout(Duration::from_millis(500), async {
                    loop {
                        match netif.receive(&mut buf).await {
                            Ok(n) if is_arp_reply(&buf[..n], mac, peer_ip) => return Ok(n),
                            Ok(_) => continue, // someone else's frame
                            Err(e) => return Err(format!("receive: {e}")),
                        }
                    }
                });
                if let Ok(result) = wait.await {
                    return result;
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no ARP reply from {peer_ip} in 10 s")));
    report.record(
        "a transmitted frame is answered; the answer arrives whole, destination first",
        answered.map(drop),
    );
    let small = runtime
        .timeout(Duration::from_secs(10), async {
            loop {
                netif.transmit(&request)?;
                netif.flush();
                let mut tiny = [0u8; 20];
                let wait = runtime.timeout(Duration::from_millis(500), netif.receive(&mut tiny));
                if let Ok(result) = wait.await {
                    return result;
                }
            }
        })
        .await;
    report.record(
        "a frame longer than the buffer is TooLarge",
        ensure(small == Ok(Err(NetError::TooLarge)), || {
            format!("{small:?}")
        }),
    );
    report
}
