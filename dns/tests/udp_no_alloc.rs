//! The UDP serving loop allocates nothing per query: `serve_udp` with the
//! server's `Authority`, driven by Lamina's executor, over a socket that
//! hands it datagrams from memory (so that what is counted is the loop's
//! and the answer logic's, not a stack's), answers hundreds of queries of
//! every kind while a global allocator counts this thread's allocations.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use lamina_core::device::{NetError, UdpSocket};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_dns::server::{serve_udp, Authority, Config};
use lamina_dns::testing::{wire, zones};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    q.extend_from_slice(&wire(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// The datagrams to deliver, the one waiting receiver, and what was sent.
#[derive(Default)]
struct Wire {
    inbox: RefCell<VecDeque<Vec<u8>>>,
    receiver: RefCell<Option<Waker>>,
    /// Each answer's first two bytes (the ID) and length, in a vector
    /// with room for all of them.
    sent: RefCell<Vec<(u16, usize)>>,
}

/// A UDP socket over [`Wire`].
struct MemorySocket(Rc<Wire>);

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5300);

impl UdpSocket for MemorySocket {
    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> Result<(), NetError> {
        self.0
            .sent
            .borrow_mut()
            .push((u16::from_be_bytes([buf[0], buf[1]]), buf.len()));
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        core::future::poll_fn(|cx| match self.0.inbox.borrow_mut().pop_front() {
            Some(datagram) => {
                buf[..datagram.len()].copy_from_slice(&datagram);
                Poll::Ready(Ok((datagram.len(), PEER)))
            }
            None => {
                let mut receiver = self.0.receiver.borrow_mut();
                match receiver.as_ref() {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *receiver = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
        .await
    }

    fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 53))
    }
}

/// The platform's wait: nothing to wait for, the next query is there.
struct Feeder {
    wire: Rc<Wire>,
    queries: RefCell<VecDeque<Vec<u8>>>,
}

impl Park for Feeder {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }

    fn park(&self, _: Option<Instant>) {
        if let Some(query) = self.queries.borrow_mut().pop_front() {
            self.wire.inbox.borrow_mut().push_back(query);
            if let Some(waker) = self.wire.receiver.borrow().as_ref() {
                waker.wake_by_ref();
            }
        }
    }
}

/// Runs `serve` until `done` says so.
struct Until<F, D> {
    serve: Pin<Box<F>>,
    done: D,
}

impl<F: Future, D: Fn() -> bool + Unpin> Future for Until<F, D> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let _ = self.serve.as_mut().poll(cx);
        if (self.done)() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn the_udp_loop_allocates_nothing_per_query() {
    let kinds = [
        query(1, "www.example.com", 1, true),
        query(2, "alias.example.com", 1, false),
        query(3, "x.wild.example.com", 1, true),
        query(4, "nosuch.example.com", 1, true),
        query(5, "www.example.com", 15, false),
        query(6, "big.example.com", 16, false), // TC at 512
        query(7, "www.example.net", 1, true),   // REFUSED
        b"\x00\x08\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01".to_vec(),
    ];
    const WARM_UP: usize = 1;
    const ROUNDS: usize = 50;
    let wire = Rc::new(Wire::default());
    wire.sent
        .borrow_mut()
        .reserve((WARM_UP + ROUNDS) * kinds.len());
    let queries: VecDeque<Vec<u8>> = (0..WARM_UP + ROUNDS).flat_map(|_| kinds.clone()).collect();
    let total = queries.len();
    let feeder = Rc::new(Feeder {
        wire: wire.clone(),
        queries: RefCell::new(queries),
    });
    let executor = Executor::new(feeder);
    let socket = MemorySocket(wire.clone());
    let serve = serve_udp(
        socket,
        Rc::new(Authority::new(zones())),
        executor.handle(),
        Config::default(),
    );
    let warm = WARM_UP * kinds.len();
    let sent = wire.clone();
    let until = Until {
        serve: Box::pin(serve),
        done: move || {
            let answered = sent.sent.borrow().len();
            // Count from the end of the warm-up (the loop's buffers, the
            // executor's queues grown) to the last answer.
            counting::measure(answered >= warm && answered < total);
            answered >= total
        },
    };
    executor.block_on(until);
    counting::measure(false);
    let sent = wire.sent.borrow();
    assert_eq!(sent.len(), total, "every query answered");
    for (answer, query) in sent.iter().zip(kinds.iter().cycle()) {
        assert_eq!(answer.0, u16::from_be_bytes([query[0], query[1]]));
        assert!(answer.1 >= 12 && answer.1 <= 1232, "{answer:?}");
    }
    let allocations = counting::counted();
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations for {} queries",
        ROUNDS * kinds.len()
    );
}
