//! Connections from the gateway to the guest while the guest boots.
//!
//! A daemon that summons the guest on demand starts the network first, so
//! the gateway's first SYN (and ARP request) reaches the link before the
//! guest's stack is up, or before its application listens. Ordinary TCP
//! would lose a second or more there: a refusal (RST) would end the host
//! client's connection, and a lost SYN waits for smoltcp's retransmission
//! (700 ms at first), a lost ARP request for smoltcp's next one (it sends
//! at most one a second). So until the guest has answered a connection
//! once (it is *up*), a [`Dial`] whose SYN went out before that:
//!
//! - after a refusal, connects again [`REFUSED_RETRY`] later, from a new
//!   gateway port, without the host client noticing;
//! - unanswered while the guest sends other frames (it runs, and dropped
//!   the SYN), connects again after [`LOST_RETRY`] (five times that once
//!   the guest is up, when it may just be busy); each SYN is followed by
//!   an ARP request for the guest, whose answer shows that the guest has
//!   taken the SYN;
//! - unanswered while the guest is silent (it does not run yet: the SYN
//!   waits in the link, and sending more would only queue more), sends an
//!   ARP request for the guest now and then, from [`NUDGE_FIRST`] doubling
//!   to [`NUDGE_MAX`]: a guest that runs answers it, which either teaches
//!   the gateway its MAC or shows that the SYN was lost;
//! - gives up after the boot wait, as the host connection is then closed.
//!
//! The gateway never waits on smoltcp's ARP rate limit: the guest's MAC,
//! given in advance (`--guest-mac`, the tender's `--net-mac`) or learned
//! from the first frame the guest sends from its address, is told to
//! smoltcp as an ARP reply from the guest (see `Link`), and while it is
//! unknown the gateway sends its own ARP requests on the schedule above.
//!
//! After the guest is up, a new connection is ordinary TCP: a refusal is
//! passed on to the host client.

use crate::{GATEWAY, GATEWAY_MAC, GUEST};
use smoltcp::iface::Context;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpEndpoint, Ipv4Packet,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// A refused connection is tried again this long after its SYN.
pub const REFUSED_RETRY: Duration = Duration::from_millis(2);

/// An unanswered SYN is sent again (from a new port) this long after it
/// went out, if the guest has sent frames since.
pub const LOST_RETRY: Duration = Duration::from_millis(5);

/// The first ARP request towards a silent guest, this long after the SYN.
pub const NUDGE_FIRST: Duration = Duration::from_millis(5);

/// The longest wait between ARP requests towards a silent guest.
pub const NUDGE_MAX: Duration = Duration::from_millis(50);

/// The default bound on boot tolerance (`--boot-wait`).
pub const DEFAULT_BOOT_WAIT: Duration = Duration::from_secs(30);

/// Gateway ports of connections to the guest.
const FIRST_PORT: u16 = 40000;

/// What the connections to the guest share: whether the guest is up, the
/// frames it has sent, the ports in use.
pub(crate) struct Dialer {
    /// How long a connection may wait for the guest's answer.
    pub boot_wait: Duration,
    /// The guest has answered a connection from the gateway.
    pub up: bool,
    /// Frames received from the guest so far.
    pub frames_in: u64,
    /// Whether the guest's MAC is known (and told to smoltcp).
    pub mac_known: bool,
    /// An ARP request for the guest is due (sent by the gateway, not
    /// smoltcp, which sends at most one a second).
    pub arp_due: bool,
    /// The earliest time a dial needs attention again.
    pub wake: Option<Duration>,
    ports: BTreeSet<u16>,
    next_port: u16,
}

impl Dialer {
    /// Nothing dialled yet; connections wait `boot_wait` at most.
    pub fn new(boot_wait: Duration) -> Dialer {
        Dialer {
            boot_wait,
            up: false,
            frames_in: 0,
            mac_known: false,
            arp_due: false,
            wake: None,
            ports: BTreeSet::new(),
            next_port: FIRST_PORT,
        }
    }

    /// A gateway port no connection to the guest uses.
    fn take_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                FIRST_PORT
            } else {
                port + 1
            };
            // Connections use far fewer ports than the range holds.
            if self.ports.insert(port) {
                return port;
            }
        }
    }

    /// Wakes the event loop at `at` at the latest.
    fn wake_at(&mut self, at: Duration) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

/// Where a [`Dial`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not answered yet: the host side waits (its bytes are buffered).
    Connecting,
    /// Established once (whatever its state now).
    Open,
    /// Refused after the guest was up, or unanswered for the boot wait.
    Failed,
}

/// One connection from the gateway to a guest port, with the boot
/// tolerance described in the module.
pub(crate) struct Dial {
    guest_port: u16,
    local_port: u16,
    /// When the connection was asked for: the boot wait counts from here.
    since: Duration,
    /// When the current SYN was made, and the guest's frame count then.
    attempt_at: Duration,
    frames_at_attempt: u64,
    /// The current SYN went out before the guest was up.
    sent_before_up: bool,
    /// The next ARP request towards a silent guest, and the wait after it.
    nudge_at: Duration,
    nudge_wait: Duration,
    established: bool,
}

impl Dial {
    /// Connects `socket` to the guest's `guest_port` at `now`; None if
    /// smoltcp refuses (it does not for a fresh socket).
    pub fn start(
        socket: &mut tcp::Socket,
        cx: &mut Context,
        guest_port: u16,
        now: Duration,
        dialer: &mut Dialer,
    ) -> Option<Dial> {
        let mut dial = Dial {
            guest_port,
            local_port: 0,
            since: now,
            attempt_at: now,
            frames_at_attempt: 0,
            sent_before_up: false,
            nudge_at: now,
            nudge_wait: NUDGE_FIRST,
            established: false,
        };
        dial.connect(socket, cx, now, dialer).then_some(dial)
    }

    /// A SYN from a new gateway port.
    fn connect(
        &mut self,
        socket: &mut tcp::Socket,
        cx: &mut Context,
        now: Duration,
        dialer: &mut Dialer,
    ) -> bool {
        socket.abort();
        dialer.ports.remove(&self.local_port);
        self.local_port = dialer.take_port();
        let remote = IpEndpoint::new(IpAddress::Ipv4(GUEST), self.guest_port);
        if socket.connect(cx, remote, self.local_port).is_err() {
            return false;
        }
        self.attempt_at = now;
        self.frames_at_attempt = dialer.frames_in;
        self.sent_before_up = !dialer.up;
        self.nudge_wait = NUDGE_FIRST;
        self.nudge_at = now + NUDGE_FIRST;
        if !self.sent_before_up && dialer.mac_known {
            return true;
        }
        // An ARP request right behind the SYN: the guest answers it once
        // it has taken the SYN, so that its reply shows, within a round
        // trip, that the SYN was lost if nothing else came. And smoltcp's
        // own request, while the MAC is unknown, may be rate-limited.
        dialer.arp_due = true;
        true
    }

    /// Looks at the connection at `now`, connecting again or nudging the
    /// guest as the module describes.
    pub fn check(
        &mut self,
        socket: &mut tcp::Socket,
        cx: &mut Context,
        now: Duration,
        dialer: &mut Dialer,
    ) -> Verdict {
        if self.established {
            return Verdict::Open;
        }
        // Tolerance is for SYNs that went out while the guest was not up
        // yet; a zero boot wait turns it off (ordinary TCP).
        let tolerant = self.sent_before_up && !dialer.boot_wait.is_zero();
        let deadline = self.since + dialer.boot_wait;
        let booting = tolerant && now < deadline;
        match socket.state() {
            tcp::State::SynSent if tolerant && now >= deadline => Verdict::Failed,
            tcp::State::SynSent if booting => {
                let guest_spoke = dialer.frames_in > self.frames_at_attempt;
                // Once the guest is up it answers SYNs, if more slowly
                // under load: only a long silence means this one was lost.
                let lost_after = if dialer.up {
                    LOST_RETRY * 5
                } else {
                    LOST_RETRY
                };
                if guest_spoke && now >= self.attempt_at + lost_after {
                    if !self.connect(socket, cx, now, dialer) {
                        return Verdict::Failed;
                    }
                } else if !guest_spoke && now >= self.nudge_at {
                    dialer.arp_due = true;
                    self.nudge_wait = (self.nudge_wait * 2).min(NUDGE_MAX);
                    self.nudge_at = now + self.nudge_wait;
                }
                let next = if guest_spoke {
                    self.attempt_at + lost_after
                } else {
                    self.nudge_at
                };
                dialer.wake_at(next.min(deadline));
                Verdict::Connecting
            }
            // Ordinary TCP: smoltcp retransmits.
            tcp::State::SynSent => Verdict::Connecting,
            tcp::State::Closed if booting => {
                let retry = self.attempt_at + REFUSED_RETRY;
                if now >= retry {
                    if !self.connect(socket, cx, now, dialer) {
                        return Verdict::Failed;
                    }
                    dialer.wake_at(self.nudge_at.min(deadline));
                } else {
                    dialer.wake_at(retry);
                }
                Verdict::Connecting
            }
            tcp::State::Closed => Verdict::Failed,
            _ => {
                self.established = true;
                dialer.up = true;
                Verdict::Open
            }
        }
    }

    /// The guest's port.
    pub fn guest_port(&self) -> u16 {
        self.guest_port
    }

    /// Frees the connection's gateway port.
    pub fn finish(&self, dialer: &mut Dialer) {
        dialer.ports.remove(&self.local_port);
    }
}

/// The MAC of the guest, if `frame` is one it sent from its address: an
/// ARP packet from [`GUEST`] or an IPv4 packet from it.
pub(crate) fn guest_mac_in(frame: &[u8]) -> Option<EthernetAddress> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let source = ethernet.src_addr();
    if !source.is_unicast() {
        return None;
    }
    let from_guest = match ethernet.ethertype() {
        EthernetProtocol::Arp => {
            match ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload()).ok()?).ok()? {
                ArpRepr::EthernetIpv4 {
                    source_hardware_addr,
                    source_protocol_addr,
                    ..
                } => source_protocol_addr == GUEST && source_hardware_addr == source,
                _ => false,
            }
        }
        EthernetProtocol::Ipv4 => {
            Ipv4Packet::new_checked(ethernet.payload()).ok()?.src_addr() == GUEST
        }
        _ => false,
    };
    from_guest.then_some(source)
}

/// An ARP frame between the gateway and the guest.
fn arp_frame(ethernet: EthernetRepr, arp: ArpRepr) -> Vec<u8> {
    let mut frame = vec![0u8; ethernet.buffer_len() + arp.buffer_len()];
    let mut packet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut packet);
    arp.emit(&mut ArpPacket::new_unchecked(packet.payload_mut()));
    frame
}

/// The ARP reply "[`GUEST`] is at `mac`", as if the guest had sent it to
/// the gateway: what tells smoltcp the guest's MAC.
pub(crate) fn arp_reply_from_guest(mac: EthernetAddress) -> Vec<u8> {
    let gateway = EthernetAddress(GATEWAY_MAC);
    arp_frame(
        EthernetRepr {
            src_addr: mac,
            dst_addr: gateway,
            ethertype: EthernetProtocol::Arp,
        },
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: mac,
            source_protocol_addr: GUEST,
            target_hardware_addr: gateway,
            target_protocol_addr: GATEWAY,
        },
    )
}

/// The gateway's ARP request for [`GUEST`], as smoltcp sends it.
pub(crate) fn arp_request_for_guest() -> Vec<u8> {
    let gateway = EthernetAddress(GATEWAY_MAC);
    arp_frame(
        EthernetRepr {
            src_addr: gateway,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        },
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: gateway,
            source_protocol_addr: GATEWAY,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: GUEST,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_mac_is_learned_only_from_frames_from_the_guest_address() {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 15]);
        assert_eq!(guest_mac_in(&arp_reply_from_guest(mac)), Some(mac));
        // The gateway's own request, and garbage, teach nothing.
        assert_eq!(guest_mac_in(&arp_request_for_guest()), None);
        assert_eq!(guest_mac_in(&[0xff; 10]), None);
        // An IPv4 packet from the guest's address does.
        let mut frame = vec![0u8; 14 + 20];
        let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
        EthernetRepr {
            src_addr: mac,
            dst_addr: EthernetAddress(GATEWAY_MAC),
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut ethernet);
        let mut ip = Ipv4Packet::new_unchecked(ethernet.payload_mut());
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(20);
        ip.set_src_addr(GUEST);
        ip.set_dst_addr(GATEWAY);
        assert_eq!(guest_mac_in(&frame), Some(mac));
        // From another address: no.
        let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
        Ipv4Packet::new_unchecked(ethernet.payload_mut())
            .set_src_addr(std::net::Ipv4Addr::new(10, 0, 2, 99));
        assert_eq!(guest_mac_in(&frame), None);
    }
}
