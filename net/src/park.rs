//! Parking idle connections outside smoltcp's socket set.
//!
//! smoltcp finds the socket of each received segment by asking every
//! socket in the set in turn, and its egress and timer passes visit every
//! socket too, several times a round. A server's connections are mostly
//! idle (kept-alive browser connections waiting for their next request):
//! with 500 of them open, the website served its 50 busy connections at
//! half the rate, the guest's own work per request rising from about 4 to
//! 17 µs (hvt), smoltcp's `process_tcp` scan alone taking 9% of the CPU.
//!
//! So a connection with nothing to do (established, nothing queued either
//! way, no smoltcp timer, the application silent on it for a second) moves
//! out of the set into a map by peer address and ports that no poll
//! visits, and moves back when a segment from its peer arrives (looked up
//! before smoltcp sees the frame) or the application touches it. Its
//! smoltcp state moves whole, wakers included; only the handle changes,
//! which the connection finds in its [`Slot`]. Parked sockets are boxed one
//! by one, not kept in a second socket set: a set's storage doubles as it
//! grows, and 10,000 connections parked at once in a 64 MiB guest failed to
//! allocate its 8 MiB.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, Socket};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

/// How long a connection must have been idle to be parked.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// Heap a parked connection takes besides what it took before: its socket
/// boxed (its slot in smoltcp's set stays, for the next connection) and
/// its entry in the map.
const PARKED_BYTES: usize = size_of::<tcp::Socket<'static>>() + 64;

/// The share of the TCP memory (`--tcp-memory`) parked connections may
/// take on top of it: a 64th, about 850 connections at the default 28 MiB.
/// The heap's other half is the application's, and a 64 MiB guest holding
/// 10,000 connections has little of it left (parking all 10,000 at once, at
/// 472 bytes each, failed an allocation); the connections past the limit
/// stay in the set, as all did before.
const PARKED_SHARE: usize = 64;

/// Where a connection's socket is now.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its handle in the stack's set, unless parked.
    handle: Cell<SocketHandle>,
    /// Its key in the parked map, while parked.
    parked: Cell<Option<PeerKey>>,
    /// The last round in which the application read, wrote or was woken.
    active_at: Cell<Instant>,
}

impl Slot {
    /// The socket's handle in the stack's set (call [`Parking::touch`]
    /// first: a parked socket has none).
    pub(crate) fn handle(&self) -> SocketHandle {
        self.handle.get()
    }
}

/// (peer port, local port, peer address): a connection as its peer's
/// segments name it, the ports first because they are cheaper to compare
/// (an address comparison was 0.8% of the website's CPU with 500 parked).
type PeerKey = (u16, u16, IpAddress);

/// A parked connection: its slot and its socket.
type Parked = (Rc<Slot>, Box<tcp::Socket<'static>>);

/// The parked connections and the open ones that may be parked.
pub(crate) struct Parking {
    parked: RefCell<BTreeMap<PeerKey, Parked>>,
    /// Every open connection (the dropped ones pruned at each look).
    open: RefCell<Vec<Weak<Slot>>>,
    last_look: Cell<Instant>,
    /// Whether a connection may have become idle since the last look (one
    /// was opened or used, or the look found one used too recently): with
    /// none, the driver does not wake to look.
    wanted: Cell<bool>,
}

impl Default for Parking {
    fn default() -> Self {
        Parking {
            parked: RefCell::default(),
            open: RefCell::default(),
            last_look: Cell::new(Instant::ZERO),
            wanted: Cell::new(false),
        }
    }
}

impl Parking {
    /// A slot for the connection of socket `handle`, in the stack's set.
    pub(crate) fn track(&self, handle: SocketHandle, now: Instant) -> Rc<Slot> {
        let slot = Rc::new(Slot {
            handle: Cell::new(handle),
            parked: Cell::new(None),
            active_at: Cell::new(now),
        });
        self.open.borrow_mut().push(Rc::downgrade(&slot));
        self.wanted.set(true);
        slot
    }

    /// How many connections are parked.
    pub(crate) fn parked(&self) -> usize {
        self.parked.borrow().len()
    }

    /// Marks `slot` active at `now`, moving its socket back into `sockets`
    /// (the stack's set) if it was parked.
    pub(crate) fn touch(&self, slot: &Slot, now: Instant, sockets: &mut SocketSet<'static>) {
        slot.active_at.set(now);
        self.wanted.set(true);
        if let Some(key) = slot.parked.take() {
            self.unpark(key, slot, sockets);
        }
    }

    fn unpark(&self, key: PeerKey, slot: &Slot, sockets: &mut SocketSet<'static>) {
        let parked = self.parked.borrow_mut().remove(&key);
        let (_, socket) = parked.expect("a parked connection's socket is in the map");
        slot.handle.set(sockets.add(*socket));
    }

    /// Before smoltcp takes `frame`: if it is a TCP segment of a parked
    /// connection, moves that connection back into `sockets`.
    pub(crate) fn frame_arrives(
        &self,
        frame: &[u8],
        now: Instant,
        sockets: &mut SocketSet<'static>,
    ) {
        let Some(key) = frame_key(frame) else {
            return;
        };
        let slot = match self.parked.borrow().get(&key) {
            Some((slot, _)) => slot.clone(),
            None => return,
        };
        self.touch(&slot, now, sockets);
    }

    /// Parks the connections of `sockets` that have been idle for [`IDLE`]
    /// with nothing for smoltcp to do, looking at most once per `IDLE` and
    /// only when one may have become idle. Returns when to look next, if
    /// a connection used less than `IDLE` ago may be idle then.
    pub(crate) fn park_idle(
        &self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        tcp_memory: usize,
    ) -> Option<Instant> {
        if !self.wanted.get() {
            return None;
        }
        let next_look = self.last_look.get() + IDLE;
        if now < next_look {
            return Some(next_look);
        }
        self.last_look.set(now);
        let mut recent = false;
        let mut parked = self.parked.borrow_mut();
        let most = tcp_memory / PARKED_SHARE / PARKED_BYTES;
        self.open.borrow_mut().retain(|slot| {
            let Some(slot) = slot.upgrade() else {
                return false; // the connection is gone
            };
            if slot.parked.get().is_some() || parked.len() >= most {
                return true;
            }
            if now < slot.active_at.get() + IDLE {
                recent = true;
                return true;
            }
            let socket = sockets.get::<tcp::Socket>(slot.handle.get());
            let quiet = socket.state() == tcp::State::Established
                && socket.send_queue() == 0
                && socket.recv_queue() == 0
                && socket.keep_alive().is_none()
                && socket.timeout().is_none();
            let Some(key) = peer_key(socket).filter(|key| quiet && !parked.contains_key(key))
            else {
                return true; // busy: looked at again once the application uses it
            };
            let Socket::Tcp(socket) = sockets.remove(slot.handle.get()) else {
                unreachable!("a connection's socket is a TCP socket");
            };
            slot.parked.set(Some(key));
            parked.insert(key, (slot, Box::new(socket)));
            true
        });
        self.wanted.set(recent);
        recent.then_some(now + IDLE)
    }
}

fn peer_key(socket: &tcp::Socket) -> Option<PeerKey> {
    let (local, remote) = (socket.local_endpoint()?, socket.remote_endpoint()?);
    Some((remote.port, local.port, remote.addr))
}

/// The connection a TCP segment in an Ethernet frame belongs to, as
/// [`peer_key`] names it: its source address and port and its
/// destination port.
fn frame_key(frame: &[u8]) -> Option<PeerKey> {
    let (source, tcp) = crate::device::tcp_segment(frame)?;
    let port = |at: usize| Some(u16::from_be_bytes([*tcp.get(at)?, *tcp.get(at + 1)?]));
    Some((port(0)?, port(2)?, source))
}
