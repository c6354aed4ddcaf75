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
    /// Frames received while transmitting, not yet given to smoltcp.
    pub stash: &'a mut Stash,
}

/// Frames transmitted between two reads of a device without
/// [`parallel_io`](lamina_core::device::Offloads::parallel_io) while the
/// stack transmits (see [`Stash`]). Every 32 (and each frame received
/// into a scratch buffer, then copied into the stash) cost the website on
/// spt about 5% under wrk -c50, where a round's transmits are a few dozen;
/// every 128, received in place, gained 4% there (medians of 6 pairs, 6
/// of 6), and lost as little as every 32 under -c1000.
const READ_BETWEEN_WRITES: u32 = 128;

/// Most bytes of frames a [`Stash`] holds (the length words included):
/// past it the device's own queue holds the rest.
const STASH_BYTES: usize = 256 << 10;

/// Frames read from the device in the middle of a round of transmits, on a
/// device whose frames move only in the stack's own calls (spt's tap,
/// virtio's queues: no [`parallel_io`](lamina_core::device::Offloads::parallel_io)).
///
/// Why: the host holds a device's received frames in a short queue (a
/// tap's `txqueuelen`, 1,000 frames by default), and a round that answers
/// hundreds of connections writes for a long time while their clients
/// send their next requests and ACKs: read only between rounds, the queue
/// overflows and what it drops comes back when the clients retransmit,
/// 200 ms or more later. The website on spt under wrk -t2 -c1000 (64 MiB,
/// default txqueuelen) lost 14,000-21,000 frames in 4 s, p99 244-724 ms;
/// reading between writes, none, p99 31-37 ms. So every [`READ_BETWEEN_WRITES`] transmits the device is read into the
/// stash (up to [`STASH_BYTES`]); the next receives take the stash first,
/// in order. hvt's I/O thread does the same on its side.
#[derive(Debug, Default)]
pub struct Stash {
    /// Whether to read between writes at all.
    on: bool,
    /// The largest frame the device delivers.
    frame_len: usize,
    /// Records in `records[taken..end]`: a `u32` length in native order,
    /// then the frame; a length of [`FAILED`] is a frame the device failed
    /// to receive. Allocated (zeroed) once, at the first read: frames are
    /// received into it in place.
    records: Vec<u8>,
    /// Offset of the next record to take.
    taken: usize,
    /// Offset after the last record.
    end: usize,
    /// Frames transmitted since the last read.
    sent: u32,
}

/// The length word of a frame the device failed to receive.
const FAILED: u32 = u32::MAX;

impl Stash {
    /// A stash for a device delivering frames up to `frame_len` bytes;
    /// `on` for a device without `parallel_io`. Allocates nothing until
    /// it is first used.
    pub fn new(on: bool, frame_len: usize) -> Stash {
        Stash {
            on,
            frame_len,
            ..Stash::default()
        }
    }

    /// Whether no frame waits in the stash.
    pub fn is_empty(&self) -> bool {
        self.taken == self.end
    }

    /// Counts a transmitted frame, and reads `netif` into the stash every
    /// [`READ_BETWEEN_WRITES`] of them.
    fn transmitted<N: Netif>(&mut self, netif: &N) {
        if !self.on {
            return;
        }
        self.sent += 1;
        if self.sent >= READ_BETWEEN_WRITES {
            self.sent = 0;
            self.fill(netif);
        }
    }

    /// Reads frames from `netif` until it has none or the stash is full.
    fn fill<N: Netif>(&mut self, netif: &N) {
        if self.records.is_empty() {
            // Allocation failure is not fatal here: without room the
            // device keeps its frames, as it did before the stash.
            let room = STASH_BYTES + 4 + self.frame_len;
            if self.records.try_reserve_exact(room).is_err() {
                self.on = false;
                return;
            }
            self.records.resize(room, 0);
        }
        while self.end < STASH_BYTES {
            let frame_at = self.end + 4;
            let Some(room) = self.records.get_mut(frame_at..frame_at + self.frame_len) else {
                return;
            };
            let len = match netif.try_receive(room) {
                Ok(Some(len)) => len.min(self.frame_len) as u32,
                Ok(None) => return,
                Err(_) => FAILED,
            };
            self.records[self.end..frame_at].copy_from_slice(&len.to_ne_bytes());
            self.end = frame_at + if len == FAILED { 0 } else { len as usize };
        }
    }

    /// Takes the oldest stashed frame into `into`: its length, or the
    /// device's failure to receive it; `None` when the stash is empty.
    fn take(&mut self, into: &mut [u8]) -> Option<Result<usize, ()>> {
        if self.is_empty() {
            return None;
        }
        let word = self.records.get(self.taken..self.taken + 4)?;
        let len = u32::from_ne_bytes(word.try_into().ok()?);
        let start = self.taken + 4;
        let frame_len = if len == FAILED { 0 } else { len as usize };
        let frame = self.records.get(start..start + frame_len)?;
        let result = match into.get_mut(..frame_len) {
            Some(into) if len != FAILED => {
                into.copy_from_slice(frame);
                Ok(frame_len)
            }
            _ => Err(()),
        };
        self.taken = start + frame_len;
        if self.is_empty() {
            self.taken = 0;
            self.end = 0;
        }
        Some(result)
    }
}

impl<N: Netif> NetifDevice<'_, N> {
    /// The next frame into `rx`: the stash's oldest, else the device's.
    fn receive_next(&mut self) -> Result<Option<usize>, ()> {
        match self.stash.take(self.rx) {
            Some(result) => result.map(Some),
            None => self.netif.try_receive(self.rx).map_err(drop),
        }
    }
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
    stash: &'a mut Stash,
}

impl<N: Netif> NetifDevice<'_, N> {
    /// The next frame smoltcp will be given, received now if none waits;
    /// `None` if the interface has none.
    pub fn peek(&mut self) -> Option<&[u8]> {
        while self.pending.is_none() {
            match self.receive_next() {
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
                None => match self.receive_next() {
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
            stash: self.stash,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, N>> {
        Some(TxToken {
            netif: self.netif,
            buf: self.tx,
            trace: self.trace,
            stash: self.stash,
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
        self.stash.transmitted(self.netif);
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

#[cfg(test)]
mod stash_tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::vec;
    use core::cell::RefCell;
    use lamina_core::device::NetError;
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};

    /// A device whose host queue holds `incoming`: `Err(())` is a frame
    /// the device fails to receive.
    #[derive(Default)]
    struct Queue {
        incoming: RefCell<VecDeque<Result<Vec<u8>, ()>>>,
        sent: RefCell<usize>,
    }

    impl Netif for Queue {
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 1]
        }
        fn mtu(&self) -> usize {
            1500
        }
        async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
            self.try_receive(buf)?.ok_or(NetError::Io)
        }
        fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
            match self.incoming.borrow_mut().pop_front() {
                Some(Ok(frame)) => {
                    buf[..frame.len()].copy_from_slice(&frame);
                    Ok(Some(frame.len()))
                }
                Some(Err(())) => Err(NetError::Io),
                None => Ok(None),
            }
        }
        fn transmit(&self, _: &[u8]) -> Result<(), NetError> {
            *self.sent.borrow_mut() += 1;
            Ok(())
        }
    }

    /// Sends `n` frames through `device`, then receives until it has no
    /// more: the first byte of each frame received, in order.
    fn send_then_receive(device: &mut NetifDevice<'_, Queue>, n: u32) -> Vec<u8> {
        let now = Instant::from_millis(0);
        for _ in 0..n {
            device.transmit(now).unwrap().consume(60, |_| ());
        }
        let mut order = Vec::new();
        while let Some((rx, _)) = device.receive(now) {
            order.push(rx.consume(|frame| frame[0]));
        }
        order
    }

    /// Runs `f` on a device over `netif` with a stash that is `on`; the
    /// stash and the receive errors after.
    fn with_device<T>(
        netif: &Queue,
        on: bool,
        f: impl FnOnce(&mut NetifDevice<'_, Queue>) -> T,
    ) -> (T, Stash, u64) {
        let (mut rx, mut tx, mut pending, mut errors) = (vec![0; 1514], Vec::new(), None, 0);
        let mut stash = Stash::new(on, 1514);
        let mut device = NetifDevice {
            netif,
            rx: &mut rx,
            pending: &mut pending,
            tx: &mut tx,
            rx_errors: &mut errors,
            port_full: &|_| false,
            syn_drops: &mut 0,
            trace: &crate::trace::WireTrace::default(),
            stash: &mut stash,
        };
        let result = f(&mut device);
        (result, stash, errors)
    }

    fn frame(tag: u8) -> Result<Vec<u8>, ()> {
        let mut frame = vec![0u8; 100];
        frame[0] = tag;
        Ok(frame)
    }

    #[test]
    fn frames_that_arrive_while_transmitting_are_read_and_received_in_order() {
        let netif = Queue::default();
        netif.incoming.borrow_mut().extend((0..10).map(frame));
        let (order, stash, errors) = with_device(&netif, true, |device| {
            // The first reads happen inside the transmits: the device's
            // queue is empty before the receives begin.
            let now = Instant::from_millis(0);
            for _ in 0..READ_BETWEEN_WRITES {
                device.transmit(now).unwrap().consume(60, |_| ());
            }
            assert!(netif.incoming.borrow().is_empty());
            assert!(!device.stash.is_empty());
            // Frames that come after the stash was filled come after it.
            netif.incoming.borrow_mut().extend((10..13).map(frame));
            send_then_receive(device, 0)
        });
        assert_eq!(order, (0..13).collect::<Vec<u8>>());
        assert!(stash.is_empty());
        assert_eq!(errors, 0);
        assert_eq!(*netif.sent.borrow(), READ_BETWEEN_WRITES as usize);
    }

    #[test]
    fn a_device_with_parallel_io_is_not_read_while_transmitting() {
        let netif = Queue::default();
        netif.incoming.borrow_mut().extend((0..10).map(frame));
        let (order, _, _) = with_device(&netif, false, |device| {
            let now = Instant::from_millis(0);
            for _ in 0..2 * READ_BETWEEN_WRITES {
                device.transmit(now).unwrap().consume(60, |_| ());
            }
            assert_eq!(netif.incoming.borrow().len(), 10);
            send_then_receive(device, 0)
        });
        assert_eq!(order, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn the_stash_is_bounded_and_the_device_keeps_the_rest() {
        let netif = Queue::default();
        let frames = STASH_BYTES / 104 + 100;
        netif
            .incoming
            .borrow_mut()
            .extend((0..frames).map(|i| frame(i as u8)));
        let (order, _, _) = with_device(&netif, true, |device| {
            let now = Instant::from_millis(0);
            for _ in 0..READ_BETWEEN_WRITES {
                device.transmit(now).unwrap().consume(60, |_| ());
            }
            // Read into the stash until it held STASH_BYTES (104 bytes a
            // frame with its length word).
            let stashed = STASH_BYTES.div_ceil(104);
            assert_eq!(netif.incoming.borrow().len(), frames - stashed);
            send_then_receive(device, 0)
        });
        // The rest later from the device itself: all of them, in order.
        assert_eq!(order.len(), frames);
        assert!(order.iter().enumerate().all(|(i, &tag)| tag == i as u8));
        assert!(netif.incoming.borrow().is_empty());
    }

    #[test]
    fn a_frame_the_device_failed_to_receive_is_counted_in_its_place() {
        let netif = Queue::default();
        netif
            .incoming
            .borrow_mut()
            .extend([frame(1), Err(()), frame(2)]);
        let (order, _, errors) = with_device(&netif, true, |device| {
            send_then_receive(device, READ_BETWEEN_WRITES)
        });
        assert_eq!(order, [1, 2]);
        assert_eq!(errors, 1);
    }
}
