//! A simulated Ethernet link and clock for tests and fuzz targets: not part
//! of the stack's API (hidden from its documentation). The integration tests
//! (`tests/netsim.rs`) join two stacks with it; the `net_frames` fuzz target
//! drives one stack with frames it makes up.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};
use lamina_core::device::{Clock, NetError, Netif};
use lamina_core::runtime::{Instant, Park};

/// Time that jumps to each deadline; nothing to wait for and no deadline
/// is a deadlock, a panic.
#[derive(Default)]
pub struct SimTime(Cell<u64>);

impl SimTime {
    /// Moves the time forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.0.set(self.0.get().saturating_add(nanos));
    }
}

impl Park for SimTime {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.get())
    }
    fn park(&self, deadline: Option<Instant>) {
        match deadline {
            Some(d) => self.0.set(self.0.get().max(d.as_nanos())),
            None => panic!("everything waits and nothing will wake it: deadlock"),
        }
    }
}

/// The stack's clock over a [`SimTime`].
#[derive(Clone)]
pub struct SimClock(pub Rc<SimTime>);

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> u64 {
        self.0 .0.get()
    }
}

/// One direction of a link: the frames on it, and who waits for one.
#[derive(Default)]
pub struct Queue {
    frames: RefCell<VecDeque<Vec<u8>>>,
    waiter: RefCell<Option<Waker>>,
}

impl Queue {
    /// Puts `frame` on the link and wakes its receiver.
    pub fn push(&self, frame: Vec<u8>) {
        self.frames.borrow_mut().push_back(frame);
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Takes the oldest frame off the link.
    pub fn pop(&self) -> Option<Vec<u8>> {
        self.frames.borrow_mut().pop_front()
    }
}

/// One end of a simulated Ethernet link with an MTU of 1500; one frame in
/// `drop_every` sent is lost (0: none), at frames picked by a fixed
/// pseudo-random sequence (the same in every run).
///
/// Not strictly every `drop_every`-th frame, as it once was: no link loses
/// that regularly, and such a link lost the same retransmission forever
/// once the sender's burst after each timeout was a multiple of
/// `drop_every` frames long (a 300 KB transfer with 512 KiB buffers each
/// way stalled at 4,380 bytes, losing every 7th frame or every 5th; at the
/// same rates of pseudo-random loss it completed at every buffer size).
pub struct SimNetif {
    mac: [u8; 6],
    inbox: Rc<Queue>,
    outbox: Rc<Queue>,
    sent: Cell<u64>,
    drop_every: u64,
}

impl SimNetif {
    /// An interface with address `mac` receiving from `inbox` and sending
    /// to `outbox`.
    pub fn new(mac: [u8; 6], inbox: Rc<Queue>, outbox: Rc<Queue>, drop_every: u64) -> SimNetif {
        SimNetif {
            mac,
            inbox,
            outbox,
            sent: Cell::new(0),
            drop_every,
        }
    }
}

impl Netif for SimNetif {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn mtu(&self) -> usize {
        1500
    }
    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| match self.try_receive(buf) {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            Ok(None) => {
                *self.inbox.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        })
        .await
    }
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let Some(frame) = self.inbox.pop() else {
            return Ok(None);
        };
        let Some(into) = buf.get_mut(..frame.len()) else {
            return Err(NetError::TooLarge); // dropped, as the trait says
        };
        into.copy_from_slice(&frame);
        Ok(Some(frame.len()))
    }
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > self.mtu() + 14 {
            return Err(NetError::TooLarge);
        }
        self.sent.set(self.sent.get() + 1);
        // SplitMix64's finaliser of the frame's number: a fixed sequence.
        let mut x = self.sent.get().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        if self.drop_every != 0 && x.is_multiple_of(self.drop_every) {
            return Ok(()); // lost on the wire
        }
        self.outbox.push(frame.to_vec());
        Ok(())
    }
}

/// Two stacks, 10.0.0.1 (A) and 10.0.0.2 (B) on a /24, joined by a
/// simulated link losing one frame in `drop_every` each way (0: none; see
/// [`SimNetif`]),
/// on `time`; `configure` adjusts both stacks' arguments.
pub fn two_stacks(
    time: &Rc<SimTime>,
    runtime: &lamina_core::runtime::Handle,
    drop_every: u64,
    configure: impl Fn(&mut crate::NetArgs),
) -> (crate::NetStack, crate::NetStack) {
    use lamina_core::args::BootArgs;
    let (ab, ba) = (Rc::new(Queue::default()), Rc::new(Queue::default()));
    let stack = |mac: u8, inbox: &Rc<Queue>, outbox: &Rc<Queue>| {
        let netif = SimNetif::new(
            [2, 0, 0, 0, 0, mac],
            inbox.clone(),
            outbox.clone(),
            drop_every,
        );
        let mut args = crate::NetArgs::defaults();
        let address = core::net::Ipv4Addr::new(10, 0, 0, mac);
        args.ipv4 = Some(crate::Ipv4Cidr {
            address,
            prefix: 24,
        });
        configure(&mut args);
        crate::NetStack::start(netif, SimClock(time.clone()), mac as u64, runtime, args)
    };
    (stack(1, &ba, &ab), stack(2, &ab, &ba))
}

/// Starts a stack with `args` alone on a link where nothing answers, and
/// uses it as an application would: a TCP listener and a UDP socket on
/// `port`, a datagram and a connection attempt to `peer`, each with a
/// timeout, over simulated seconds. Whatever the boot-argument parser
/// accepts must survive this without a panic; the `boot_args` fuzz target
/// and the property test in `tests/boot_args.rs` hold it to that.
pub fn exercise_alone(args: crate::NetArgs, port: u16, peer: core::net::SocketAddr) {
    use core::net::{Ipv4Addr, SocketAddr};
    use lamina_core::device::{Stack, UdpSocket};
    use lamina_core::runtime::{Duration, Executor};
    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let runtime = executor.handle();
    // Nothing is ever put in the inbox; what the stack sends piles up in
    // the outbox, a few frames a simulated second.
    let link = SimNetif::new(
        [2, 0, 0, 0, 0, 1],
        Rc::new(Queue::default()),
        Rc::new(Queue::default()),
        0,
    );
    let stack = crate::NetStack::start(link, SimClock(time), 7, &runtime, args);
    executor.block_on(async {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let _listener = stack.tcp_listen(any).await;
        if let Ok(socket) = stack.udp_bind(any).await {
            let _ = runtime
                .timeout(Duration::from_secs(1), socket.send_to(b"ping", peer))
                .await;
        }
        let _ = runtime
            .timeout(Duration::from_secs(5), stack.tcp_connect(peer))
            .await;
    });
}
