//! The stack's state and the driver task that runs it.

use crate::config::{Ipv4Cidr, NetArgs};
use crate::device::{NetifDevice, Stash};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::{Poll, Waker};
use lamina_core::device::{Clock, Netif};
use lamina_core::runtime::{Duration, Handle};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// Most calls of smoltcp's egress per driver round (each sends at most one
/// packet per socket): a bound, so that one busy round cannot starve the
/// application's tasks.
const MAX_EGRESS_ROUNDS: usize = 256;

/// Fewest frames a driver round takes in before the tasks answer them and
/// egress sends what they wrote (see [`ingress_budget`]).
const INGRESS_BATCH: usize = 8;

/// How many frames a driver round takes in with `sockets` in the set, on
/// a device with [`Offloads::parallel_io`](lamina_core::device::Offloads).
///
/// A burst of requests read whole is answered whole: the first response
/// leaves only when the last request has been read and answered, while the
/// client and hvt's I/O thread wait for it. Taking a few frames per round
/// lets responses leave while the rest of the burst waits in the device's
/// queue. But each round's egress visits every socket, so with many
/// sockets a round takes more frames: one per 16 sockets keeps the visits
/// a small share of the frames' work. Measured with wrk on the website on
/// hvt, against reading the whole burst: +27% requests/s with 50
/// connections, +24% with 1,000; 4 frames did as well as 8 and 16 worse.
/// On spt, where the stack's own calls read and write the tap, there was
/// nothing to gain (0.99x with 50 connections) and 10% to lose with 1,000
/// (the extra visits of the sockets): a device without `parallel_io` is
/// read whole.
fn ingress_budget(sockets: usize) -> usize {
    INGRESS_BATCH.max(sockets / 16)
}

/// How long the driver waits when smoltcp asks to run again at a time it
/// has just run at (see [`next_poll`]): at first, then twice as long each
/// time smoltcp asks so again, up to [`STALE_POLL_BACKOFF_MAX`].
const STALE_POLL_BACKOFF: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(10);
/// The longest wait after a stale time: what a timer the stale time hides
/// can be late by at most.
const STALE_POLL_BACKOFF_MAX: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(250);

/// How long until smoltcp must run again, from `poll_at` (its
/// `Interface::poll_at` right after a round at `now`).
///
/// `Instant::ZERO` is smoltcp's "now": more to send than one round sent;
/// run again at once. A later time not after `now` is one smoltcp has just
/// run at without acting on it: smoltcp 0.12 keeps reporting the end of a
/// socket's silence for a missing neighbour (1 s after the neighbour did
/// not answer) once that socket has nothing left to send, e.g. a DHCP
/// client whose unicast renewal found its server gone and which then waits
/// to rebind. Taken as "now", the driver would poll again and again
/// without ever yielding: the application starves and, on a simulated
/// clock, time stops (found by the net_frames fuzz target). Such a time
/// waits `stale` instead ([`STALE_POLL_BACKOFF`] the first time), which
/// doubles for the next one, up to [`STALE_POLL_BACKOFF_MAX`]; any other
/// answer starts it again. The timers the stale time hides (every
/// socket's: smoltcp answers the earliest) then run at most that late;
/// the frames that arrive meanwhile are taken at once. Waiting 10 ms
/// each time, a guest whose neighbour does not answer woke 100 times a
/// second for as long as it did not, and the net_frames fuzz target spent
/// nine polls in ten on it.
fn next_poll(
    now: smoltcp::time::Instant,
    poll_at: Option<smoltcp::time::Instant>,
    stale: &mut smoltcp::time::Duration,
) -> Option<smoltcp::time::Duration> {
    let fresh = match poll_at {
        Some(at) if at != smoltcp::time::Instant::ZERO && at <= now => {
            let wait = *stale;
            *stale = (wait * 2).min(STALE_POLL_BACKOFF_MAX);
            return Some(wait);
        }
        Some(at) if at == smoltcp::time::Instant::ZERO => Some(smoltcp::time::Duration::ZERO),
        Some(at) => Some(at - now),
        None => None,
    };
    *stale = STALE_POLL_BACKOFF;
    fresh
}

/// What sockets and the driver share.
pub(crate) struct Core {
    pub(crate) iface: RefCell<Interface>,
    pub(crate) sockets: RefCell<SocketSet<'static>>,
    /// The driver's waker: sockets wake it when they queued something.
    driver: RefCell<Option<Waker>>,
    kicked: Cell<bool>,
    /// The IPv4 address in use, once configured.
    pub(crate) ipv4: Cell<Option<Ipv4Cidr>>,
    /// The DNS servers of the DHCP lease (option 6), while there is one.
    pub(crate) dhcp_dns: RefCell<Vec<core::net::Ipv4Addr>>,
    /// Wakers of tasks waiting for an address (connect before DHCP).
    pub(crate) address_waiters: RefCell<Vec<Waker>>,
    /// Sockets whose owner dropped them: removed once closed.
    pub(crate) orphans: RefCell<Vec<SocketHandle>>,
    /// Accept queues of the listening ports, topped up by the driver.
    pub(crate) listeners: RefCell<Vec<alloc::rc::Weak<crate::socket::AcceptQueue>>>,
    pub(crate) args: NetArgs,
    /// Drop counters, updated by the driver every round.
    pub(crate) stats: Cell<NetStats>,
    /// Bytes of TCP buffers allocated now, against `args.tcp_memory`.
    pub(crate) tcp_memory: Cell<usize>,
    pub(crate) next_port: Cell<u16>,
    /// The link's MTU: the stack does not fragment, so no IP packet is larger.
    pub(crate) mtu: usize,
    /// Idle connections, out of `sockets`.
    pub(crate) parking: crate::park::Parking,
    /// The time of the driver's latest round (cheaper than the clock).
    pub(crate) round_at: Cell<smoltcp::time::Instant>,
    clock: alloc::boxed::Box<dyn Clock>,
}

impl Core {
    /// Asks the driver to poll soon: a socket has data to send or room to receive.
    pub(crate) fn kick(&self) {
        self.kicked.set(true);
        if let Some(waker) = self.driver.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    pub(crate) fn now(&self) -> smoltcp::time::Instant {
        to_smoltcp(self.clock.now())
    }

    /// Moves listening sockets that took a connection to their accept queue
    /// and replaces them, within each queue's backlog.
    fn refill_listeners(&self, sockets: &mut SocketSet<'static>) {
        self.listeners
            .borrow_mut()
            .retain(|queue| match queue.upgrade() {
                Some(queue) => {
                    queue.refill(self, sockets);
                    true
                }
                None => false,
            });
    }

    /// Gives back the buffer budget of a TCP socket that is dropped.
    pub(crate) fn release_tcp(&self, socket: &smoltcp::socket::tcp::Socket) {
        let size = socket.recv_capacity() + socket.send_capacity();
        self.tcp_memory
            .set(self.tcp_memory.get().saturating_sub(size));
    }

    /// Removes a TCP socket from the set and gives back its budget: the one
    /// place TCP sockets leave the set.
    pub(crate) fn remove_tcp(&self, sockets: &mut SocketSet<'static>, handle: SocketHandle) {
        self.release_tcp(sockets.get::<smoltcp::socket::tcp::Socket>(handle));
        sockets.remove(handle);
    }

    /// Whether the accept queue of listening port `port` is full.
    fn port_full(&self, port: u16) -> bool {
        self.listeners
            .borrow()
            .iter()
            .filter_map(|q| q.upgrade())
            .any(|q| q.port() == port && q.is_full())
    }

    /// An ephemeral port for an outgoing connection (49152-65535).
    pub(crate) fn ephemeral_port(&self) -> u16 {
        let port = self.next_port.get();
        self.next_port
            .set(if port == u16::MAX { 49152 } else { port + 1 });
        port
    }
}

/// What the stack dropped, counted since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames the interface could not hand over (too large, device errors).
    pub rx_errors: u64,
    /// SYNs dropped because their port's accept queue was full.
    pub syn_drops: u64,
}

/// Lamina's TCP/IP stack over one network interface; clone it freely.
#[derive(Clone)]
pub struct NetStack {
    pub(crate) core: Rc<Core>,
}

fn to_smoltcp(instant: lamina_core::runtime::Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((instant.as_nanos() / 1000) as i64)
}

impl NetStack {
    /// Brings the stack up on `netif` and starts its driver task on
    /// `runtime`. With `args.ipv4` the address is static, else DHCP finds
    /// one; an IPv6 link-local address is derived from the MAC either way.
    pub fn start<N, C>(
        netif: N,
        clock: C,
        random_seed: u64,
        runtime: &Handle,
        args: NetArgs,
    ) -> NetStack
    where
        N: Netif + 'static,
        C: Clock + 'static,
    {
        let mac = EthernetAddress(netif.mac());
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = random_seed;
        let rx_frame = if netif.offloads().large_receive {
            lamina_core::device::Offloads::MAX_LARGE_FRAME
        } else {
            netif.mtu() + 14
        };
        let mut rx = vec![0u8; rx_frame];
        let mut stash = Stash::new(!netif.offloads().parallel_io, rx_frame);
        let mut tx = Vec::new();
        let mut pending = None;
        let mut rx_errors = 0;
        let now = to_smoltcp(clock.now());
        let mut iface = {
            let mut device = NetifDevice {
                netif: &netif,
                rx: &mut rx,
                pending: &mut pending,
                tx: &mut tx,
                rx_errors: &mut rx_errors,
                port_full: &|_| false,
                syn_drops: &mut 0,
                trace: &crate::trace::WireTrace::default(),
                stash: &mut stash,
            };
            Interface::new(config, &mut device, now)
        };
        let link_local = mac_to_link_local(mac);
        // smoltcp panics on an address that is not unicast ("IP address
        // ... is not unicast", Interface::update_ip_addrs): the parser
        // refuses one (NetArgs::check). One built in code is logged and left
        // out: no IPv4 address rather than DHCP's, which was not asked for.
        let static_ipv4 = args.ipv4.filter(|cidr| match cidr.check() {
            Ok(()) => true,
            Err(why) => {
                log::error!("net: not using --ipv4={cidr}: {why}");
                false
            }
        });
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(link_local), 64));
            if let Some(cidr) = static_ipv4 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(cidr.address), cidr.prefix));
            }
        });
        // smoltcp asserts that a neighbour it resolves is unicast
        // (`protocol_addr.is_unicast()`, iface/neighbor.rs), which a
        // gateway of 224.0.0.1 or 0.0.0.0 would break on the first off-link
        // packet; the parser refuses such a gateway, this guards one built
        // in code.
        match args.ipv4_gateway {
            Some(gateway) if crate::config::is_unicast(gateway) => {
                let _ = iface.routes_mut().add_default_ipv4_route(gateway);
            }
            Some(gateway) => {
                log::error!("net: not using --ipv4-gateway={gateway}: not a unicast address");
            }
            None => {}
        }
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match (args.ipv4, static_ipv4) {
            (Some(_), Some(cidr)) => {
                log::info!("net: {} with {cidr} (static), {link_local}", mac);
                None
            }
            (Some(_), None) => None,
            (None, _) => {
                log::info!("net: {} asking DHCP for an IPv4 address, {link_local}", mac);
                Some(sockets.add(dhcpv4::Socket::new()))
            }
        };
        let core = Rc::new(Core {
            iface: RefCell::new(iface),
            sockets: RefCell::new(sockets),
            driver: RefCell::new(None),
            kicked: Cell::new(false),
            ipv4: Cell::new(static_ipv4),
            dhcp_dns: RefCell::new(Vec::new()),
            address_waiters: RefCell::new(Vec::new()),
            orphans: RefCell::new(Vec::new()),
            listeners: RefCell::new(Vec::new()),
            next_port: Cell::new(49152 + (random_seed % 16384) as u16),
            mtu: netif.mtu(),
            args,
            tcp_memory: Cell::new(0),
            stats: Cell::new(NetStats::default()),
            parking: Default::default(),
            round_at: Cell::new(smoltcp::time::Instant::ZERO),
            clock: alloc::boxed::Box::new(clock),
        });
        let driver = Driver {
            core: core.clone(),
            netif,
            rx,
            tx,
            pending,
            rx_errors,
            syn_drops: 0,
            reported: (0, 0, smoltcp::time::Instant::ZERO),
            dhcp,
            runtime: runtime.clone(),
            trace: Default::default(),
            stale_backoff: STALE_POLL_BACKOFF,
            stash,
        };
        runtime.spawn(driver.run());
        NetStack { core }
    }

    /// What the stack has dropped so far.
    pub fn stats(&self) -> NetStats {
        self.core.stats.get()
    }

    /// The IPv4 address in use, once there is one.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.core.ipv4.get()
    }

    /// How many idle connections are parked out of smoltcp's socket set
    /// now (see the `park` module).
    pub fn parked_connections(&self) -> usize {
        self.core.parking.parked()
    }
}

/// fe80::/64 with the modified EUI-64 interface identifier of `mac`.
fn mac_to_link_local(mac: EthernetAddress) -> smoltcp::wire::Ipv6Address {
    let m = mac.0;
    smoltcp::wire::Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// The task that owns the interface: receives frames, runs smoltcp, sends
/// what sockets queued, and sleeps until the next of: a frame, a socket's
/// kick, or smoltcp's next timer.
struct Driver<N: Netif> {
    core: Rc<Core>,
    netif: N,
    rx: Vec<u8>,
    tx: Vec<u8>,
    pending: Option<usize>,
    rx_errors: u64,
    syn_drops: u64,
    /// Drop counts at the last report, and when it was.
    reported: (u64, u64, smoltcp::time::Instant),
    dhcp: Option<SocketHandle>,
    runtime: Handle,
    /// Frames and TCP counters for the trace (nothing while it is off).
    trace: crate::trace::WireTrace,
    /// The wait after the next stale time smoltcp answers ([`next_poll`]).
    stale_backoff: smoltcp::time::Duration,
    /// Frames received while transmitting ([`Stash`]).
    stash: Stash,
}

enum Wake {
    Frame(usize),
    /// The interface dropped a frame (too large, bad checksum, device
    /// error): counted, then the driver polls again.
    Dropped,
    Kick,
    Timer,
}

impl<N: Netif> Driver<N> {
    async fn run(mut self) {
        // The stack starts before the application's first poll (the driver
        // is spawned when the devices are set up, the main task after):
        // let the application run first, so that frames that waited for
        // the guest (a tap Jitsu queued a client's SYN on before the boot)
        // find the sockets it opens at once, instead of getting a reset
        // for a port nobody listens on yet.
        self.runtime.yield_now().await;
        loop {
            // Let the tasks the received segments woke answer before
            // anything goes out, so that the ACK of a request rides on its
            // response instead of leaving alone first (smoltcp's egress
            // acknowledges at once, with --tcp-ack-delay-ms=0): one frame
            // per request fewer each way through the tap (measured, wrk on
            // the website: 4 frames per request became 3).
            if self.ingress() {
                self.runtime.yield_now().await;
            }
            let delay = self.egress();
            self.report_drops(self.core.now());
            if !self.stash.is_empty() {
                // Frames read while transmitting: take them in at once.
                continue;
            }
            let core = self.core.clone();
            let sleep = delay.map(|d| self.runtime.sleep(Duration::from_micros(d.total_micros())));
            let mut sleep = sleep.map(alloc::boxed::Box::pin);
            let mut receive = pin!(self.netif.receive(&mut self.rx));
            let woke = poll_fn(|cx| {
                if core.kicked.replace(false) {
                    return Poll::Ready(Wake::Kick);
                }
                *core.driver.borrow_mut() = Some(cx.waker().clone());
                if let Poll::Ready(result) = receive.as_mut().poll(cx) {
                    return Poll::Ready(match result {
                        Ok(len) => Wake::Frame(len),
                        Err(_) => Wake::Dropped,
                    });
                }
                if let Some(sleep) = sleep.as_mut() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                }
                Poll::Pending
            })
            .await;
            match woke {
                Wake::Frame(len) => self.pending = Some(len),
                Wake::Dropped => self.rx_errors += 1,
                Wake::Kick | Wake::Timer => {}
            }
        }
    }

    /// Logs what was dropped since the last report, at most every 10 s.
    fn report_drops(&mut self, now: smoltcp::time::Instant) {
        let (rx_errors, syn_drops, at) = self.reported;
        let grew = self.rx_errors > rx_errors || self.syn_drops > syn_drops;
        let first = at == smoltcp::time::Instant::ZERO;
        if grew && (first || now >= at + smoltcp::time::Duration::from_secs(10)) {
            log::warn!(
                "net: dropped {} frames the interface could not receive and {} SYNs to full accept queues so far",
                self.rx_errors,
                self.syn_drops
            );
            self.reported = (self.rx_errors, self.syn_drops, now);
        }
        self.core.stats.set(NetStats {
            rx_errors: self.rx_errors,
            syn_drops: self.syn_drops,
        });
    }

    /// Runs `f` with the time now, smoltcp's interface and sockets, and
    /// smoltcp's device over this driver's interface and buffers.
    fn with_device<T>(
        &mut self,
        f: impl FnOnce(
            smoltcp::time::Instant,
            &mut Interface,
            &mut SocketSet<'static>,
            &mut NetifDevice<'_, N>,
        ) -> T,
    ) -> T {
        let now = self.core.now();
        self.core.round_at.set(now);
        let core = &self.core;
        let port_full = |port| core.port_full(port);
        let mut device = NetifDevice {
            netif: &self.netif,
            rx: &mut self.rx,
            pending: &mut self.pending,
            tx: &mut self.tx,
            rx_errors: &mut self.rx_errors,
            port_full: &port_full,
            syn_drops: &mut self.syn_drops,
            trace: &self.trace,
            stash: &mut self.stash,
        };
        let mut iface = core.iface.borrow_mut();
        let mut sockets = core.sockets.borrow_mut();
        f(now, &mut iface, &mut sockets, &mut device)
    }

    /// The first half of a round of smoltcp: the frames received so far,
    /// up to [`ingress_budget`], into the sockets; whether there was one.
    fn ingress(&mut self) -> bool {
        let core = self.core.clone();
        self.with_device(|now, iface, sockets, device| {
            let mut received = false;
            // One packet at a time, refilling the listening sockets in
            // between, so that a burst of SYNs finds a socket for each (up
            // to the backlog) instead of a reset. What is left over waits
            // for the next round, after this one's answers.
            let budget = if device.netif.offloads().parallel_io {
                ingress_budget(sockets.iter().count())
            } else {
                usize::MAX
            };
            for _ in 0..budget {
                if core.parking.parked() > 0 {
                    if let Some(frame) = device.peek() {
                        core.parking.frame_arrives(frame, now, sockets);
                    }
                }
                let result = iface.poll_ingress_single(now, device, sockets);
                core.refill_listeners(sockets);
                if result == smoltcp::iface::PollIngressSingleResult::None {
                    break;
                }
                received = true;
            }
            received
        })
    }

    /// The second half of a round: what the sockets have to send, DHCP,
    /// closed sockets; returns how long until smoltcp needs to run again.
    fn egress(&mut self) -> Option<smoltcp::time::Duration> {
        let now = self.with_device(|now, iface, sockets, device| {
            // smoltcp sends at most one packet per socket per call: call
            // until nothing more goes out, so a window's worth of segments
            // leaves in one round instead of one round (and, on hvt, one VM
            // exit) each.
            for _ in 0..MAX_EGRESS_ROUNDS {
                if iface.poll_egress(now, device, sockets) == smoltcp::iface::PollResult::None {
                    break;
                }
            }
            device.netif.flush();
            now
        });
        let mut iface = self.core.iface.borrow_mut();
        let mut sockets = self.core.sockets.borrow_mut();
        if let Some(handle) = self.dhcp {
            let event = sockets.get_mut::<dhcpv4::Socket>(handle).poll();
            match event {
                Some(dhcpv4::Event::Configured(config)) => {
                    let address = config.address;
                    iface.update_ip_addrs(|addrs| {
                        addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
                        let _ = addrs.push(IpCidr::Ipv4(address));
                    });
                    // A router of 255.255.255.255, 0.0.0.0 or multicast
                    // is no gateway: smoltcp would assert on resolving it
                    // (see `args.ipv4_gateway` above).
                    let router = config.router.filter(|&router| {
                        let unicast = crate::config::is_unicast(to_std(router));
                        if !unicast {
                            log::warn!("net: not using the gateway {router} DHCP gave: not a unicast address");
                        }
                        unicast
                    });
                    match router {
                        Some(router) => {
                            let _ = iface.routes_mut().add_default_ipv4_route(router);
                        }
                        None => {
                            iface.routes_mut().remove_default_ipv4_route();
                        }
                    }
                    let cidr = Ipv4Cidr {
                        address: to_std(address.address()),
                        prefix: address.prefix_len(),
                    };
                    let dns: Vec<_> = config.dns_servers.iter().map(|&a| to_std(a)).collect();
                    log::info!("net: DHCP gave {cidr}, gateway {router:?}, DNS servers {dns:?}");
                    *self.core.dhcp_dns.borrow_mut() = dns;
                    self.core.ipv4.set(Some(cidr));
                    self.core
                        .address_waiters
                        .borrow_mut()
                        .drain(..)
                        .for_each(Waker::wake);
                }
                Some(dhcpv4::Event::Deconfigured) => {
                    log::warn!("net: DHCP lease lost");
                    iface.update_ip_addrs(|addrs| addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_))));
                    iface.routes_mut().remove_default_ipv4_route();
                    self.core.ipv4.set(None);
                    self.core.dhcp_dns.borrow_mut().clear();
                }
                None => {}
            }
        }
        // Forget sockets whose owners are gone once their close finished.
        self.core.orphans.borrow_mut().retain(|&handle| {
            let closed = matches!(
                sockets.get::<smoltcp::socket::tcp::Socket>(handle).state(),
                smoltcp::socket::tcp::State::Closed | smoltcp::socket::tcp::State::TimeWait
            );
            if closed {
                self.core.remove_tcp(&mut sockets, handle);
            }
            !closed
        });
        let next_look = self
            .core
            .parking
            .park_idle(now, &mut sockets, self.core.args.tcp_memory);
        let delay = next_poll(now, iface.poll_at(now, &sockets), &mut self.stale_backoff);
        // Wake for the next look for idle connections, if one is due.
        match next_look.map(|at| at - now) {
            Some(look) => Some(delay.map_or(look, |delay| delay.min(look))),
            None => delay,
        }
    }
}

pub(crate) fn to_std(a: Ipv4Address) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(a.octets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::time::{Duration, Instant};

    #[test]
    fn a_time_smoltcp_just_ran_at_waits_instead_of_spinning() {
        let now = Instant::from_millis(14_002);
        let mut stale = STALE_POLL_BACKOFF;
        // Nothing to do: wait for a frame or a kick.
        assert_eq!(next_poll(now, None, &mut stale), None);
        // More to send: at once.
        assert_eq!(
            next_poll(now, Some(Instant::ZERO), &mut stale),
            Some(Duration::ZERO)
        );
        // A timer ahead: until then.
        assert_eq!(
            next_poll(now, Some(Instant::from_millis(14_500)), &mut stale),
            Some(Duration::from_millis(498))
        );
        // The expired silence of a socket with nothing to send (the
        // net_frames input: a DHCP renewal to a server that no longer
        // answers ARP, then waiting to rebind): not "now" again and again,
        // and twice as long each time it comes again, up to the bound.
        let waits: Vec<_> = (0..7)
            .map(|i| next_poll(now, Some(Instant::from_millis(13_002 + i)), &mut stale))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [10, 20, 40, 80, 160, 250, 250].map(|w| Some(ms(w))));
        // Anything else starts again from the shortest wait.
        assert_eq!(
            next_poll(now, Some(Instant::from_millis(14_003)), &mut stale),
            Some(ms(1))
        );
        assert_eq!(next_poll(now, Some(now), &mut stale), Some(ms(10)));
        next_poll(now, None, &mut stale);
        assert_eq!(next_poll(now, Some(now), &mut stale), Some(ms(10)));
    }
}
