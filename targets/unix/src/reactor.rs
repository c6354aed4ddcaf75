//! The unix target's [`Park`]: epoll (through the `polling` crate) waits for
//! sockets and taps to become ready, with the executor's next timer deadline
//! as the timeout.

use lamina_core::runtime::{Instant, Park};
use polling::{Event, Events, Poller};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Default)]
struct Interest {
    reader: Option<Waker>,
    writer: Option<Waker>,
    readable: bool,
    writable: bool,
}

/// Waits for file descriptors and time.
pub struct Reactor {
    poller: Poller,
    start: std::time::Instant,
    sources: RefCell<HashMap<usize, Interest>>,
    next_key: std::cell::Cell<usize>,
    events: RefCell<Events>,
    tracer: Option<crate::trace::Tracer>,
}

impl Reactor {
    /// A reactor whose clock starts now.
    pub fn new() -> io::Result<Self> {
        Self::with_tracer(None)
    }

    /// A reactor that writes out `tracer`'s records each time it parks.
    pub fn with_tracer(tracer: Option<crate::trace::Tracer>) -> io::Result<Self> {
        Ok(Reactor {
            poller: Poller::new()?,
            start: std::time::Instant::now(),
            sources: RefCell::new(HashMap::new()),
            next_key: std::cell::Cell::new(0),
            events: RefCell::new(Events::new()),
            tracer,
        })
    }

    /// Writes out the last trace records (at exit).
    pub fn finish_trace(&self) {
        if let Some(Err(e)) = self.tracer.as_ref().map(|t| t.finish()) {
            log::error!("cannot write the trace: {e}");
        }
    }

    fn interest_event(key: usize, interest: &Interest) -> Event {
        Event::new(key, interest.reader.is_some(), interest.writer.is_some())
    }
}

impl Park for Reactor {
    fn now(&self) -> Instant {
        let nanos = self.start.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn park(&self, deadline: Option<Instant>) {
        let timeout = deadline.map(|d| d.saturating_duration_since(self.now()));
        // Round up so that a wait never ends just before its deadline and
        // turns into a busy loop of zero-length waits.
        let timeout = timeout.map(|t| {
            if t.is_zero() {
                t
            } else {
                t.max(Duration::from_micros(50))
            }
        });
        if let Some(Err(e)) = self.tracer.as_ref().map(|t| t.drain()) {
            log::error!("cannot write the trace: {e}");
        }
        let mut events = self.events.borrow_mut();
        events.clear();
        match self.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                log::error!("epoll_wait failed: {e}");
                return;
            }
        }
        let mut wake = Vec::new();
        let mut sources = self.sources.borrow_mut();
        for event in events.iter() {
            let Some(interest) = sources.get_mut(&event.key) else {
                continue;
            };
            interest.readable |= event.readable;
            interest.writable |= event.writable;
            // The registration is one-shot: an event disarms both directions,
            // so both waiters run again and re-arm what is still not ready.
            wake.extend(interest.reader.take());
            wake.extend(interest.writer.take());
        }
        drop(sources);
        drop(events);
        wake.into_iter().for_each(Waker::wake);
    }
}

/// An I/O object registered with the reactor: operations that would block
/// wait for readiness instead.
pub struct Async<T: AsFd> {
    io: T,
    key: usize,
    reactor: Rc<Reactor>,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, which must already be in non-blocking mode.
    pub fn new(io: T, reactor: Rc<Reactor>) -> io::Result<Self> {
        let key = reactor.next_key.get();
        reactor.next_key.set(key + 1);
        // SAFETY: the registration is removed in `Drop` before `io` is closed
        // (fields drop after `drop` runs), as `Poller::add` requires.
        unsafe { reactor.poller.add(&io.as_fd(), Event::none(key))? };
        reactor
            .sources
            .borrow_mut()
            .insert(key, Interest::default());
        Ok(Async { io, key, reactor })
    }

    /// The wrapped object.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn poll_ready(&self, cx: &mut Context<'_>, direction: Direction) -> Poll<io::Result<()>> {
        let mut sources = self.reactor.sources.borrow_mut();
        let Some(interest) = sources.get_mut(&self.key) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let (ready, waiter) = match direction {
            Direction::Read => (&mut interest.readable, &mut interest.reader),
            Direction::Write => (&mut interest.writable, &mut interest.writer),
        };
        if std::mem::take(ready) {
            return Poll::Ready(Ok(()));
        }
        *waiter = Some(cx.waker().clone());
        let event = Reactor::interest_event(self.key, interest);
        match self.reactor.poller.modify(self.io.as_fd(), event) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for
    /// readability in between.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll_fn(|cx| self.poll_ready(cx, Direction::Read)).await?
                }
                result => return result,
            }
        }
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for
    /// writability in between.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll_fn(|cx| self.poll_ready(cx, Direction::Write)).await?
                }
                result => return result,
            }
        }
    }
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        self.reactor.sources.borrow_mut().remove(&self.key);
        if let Err(e) = self.reactor.poller.delete(self.io.as_fd()) {
            log::warn!("epoll: could not deregister a closed descriptor: {e}");
        }
    }
}
