//! What the store's tests share: an in-memory block device that injects
//! faults (torn multi-sector writes, unflushed writes lost at a crash, a
//! crash at the Nth write), an executor, and a model to check against.
#![allow(dead_code)]

use lamina_core::device::{Block, BlockError, BlockInfo, KvRead};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_store::Store;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

/// Time that never moves: the in-memory device never makes a task wait.
struct Still;

impl Park for Still {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {
        panic!("the in-memory device made a task wait");
    }
}

/// Runs `future` to completion.
pub fn block_on<F: Future>(future: F) -> F::Output {
    Executor::new(Rc::new(Still)).block_on(future)
}

/// What survives of the writes not yet flushed when the device crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivors {
    /// Every unflushed write, the crashing one torn (a seeded subset of
    /// its sectors).
    All,
    /// None: only what was flushed.
    None,
    /// Each sector of each unflushed write kept or lost at random (seeded):
    /// reordered, torn writes.
    Random(u64),
}

struct Inner {
    sector_size: u32,
    current: Vec<u8>,
    durable: Vec<u8>,
    unflushed: Vec<(u64, Vec<u8>)>,
    reads: u64,
    writes: u64,
    bytes_written: u64,
    flushes: u64,
    crash_at: Option<u64>,
    crashed: bool,
    yielding: bool,
}

/// An in-memory block device that can crash. Clones share the device.
#[derive(Clone)]
pub struct FaultDisk(Rc<RefCell<Inner>>);

impl FaultDisk {
    /// A zeroed device of `sectors` sectors of `sector_size` bytes.
    pub fn new(sectors: u64, sector_size: u32) -> Self {
        Self::from_image(
            vec![0; (sectors * sector_size as u64) as usize],
            sector_size,
        )
    }

    /// A device holding `image`, all of it durable.
    pub fn from_image(image: Vec<u8>, sector_size: u32) -> Self {
        FaultDisk(Rc::new(RefCell::new(Inner {
            sector_size,
            durable: image.clone(),
            current: image,
            unflushed: Vec::new(),
            reads: 0,
            writes: 0,
            bytes_written: 0,
            flushes: 0,
            crash_at: None,
            crashed: false,
            yielding: false,
        })))
    }

    /// Crashes at write number `n` (counted from now, 1 the next write):
    /// that write and every later operation fail.
    pub fn crash_at_write(&self, n: u64) {
        let mut inner = self.0.borrow_mut();
        inner.crash_at = Some(inner.writes + n);
    }

    /// Makes every transfer wait once (wake itself and return pending)
    /// before it happens, so that other tasks run in between.
    pub fn set_yielding(&self, yielding: bool) {
        self.0.borrow_mut().yielding = yielding;
    }

    /// Crashes now: every later operation fails.
    pub fn crash(&self) {
        self.0.borrow_mut().crashed = true;
    }

    /// Whether the device has crashed.
    pub fn crashed(&self) -> bool {
        self.0.borrow().crashed
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.0.borrow().reads
    }

    /// Writes so far.
    pub fn writes(&self) -> u64 {
        self.0.borrow().writes
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.0.borrow().bytes_written
    }

    /// Flushes so far.
    pub fn flushes(&self) -> u64 {
        self.0.borrow().flushes
    }

    /// The device's contents as reads see them now.
    pub fn image(&self) -> Vec<u8> {
        self.0.borrow().current.clone()
    }

    /// The sector size.
    pub fn sector_size(&self) -> u32 {
        self.0.borrow().sector_size
    }

    /// What the device holds after power comes back: the flushed contents
    /// plus what `survivors` says of the writes since the last flush.
    pub fn after_crash(&self, survivors: Survivors) -> Vec<u8> {
        let inner = self.0.borrow();
        let size = inner.sector_size as usize;
        let mut image = inner.durable.clone();
        let mut rng = match survivors {
            Survivors::Random(seed) => seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            _ => 0x1234_5678_9abc_def1,
        };
        let count = inner.unflushed.len();
        for (i, (sector, data)) in inner.unflushed.iter().enumerate() {
            let last = i + 1 == count && inner.crashed;
            for (j, chunk) in data.chunks(size).enumerate() {
                let keep = match survivors {
                    Survivors::None => false,
                    Survivors::All => !last || next(&mut rng) & 1 == 0,
                    Survivors::Random(_) => next(&mut rng) & 1 == 0,
                };
                if keep {
                    let at = (*sector as usize + j) * size;
                    image[at..at + size].copy_from_slice(chunk);
                }
            }
        }
        image
    }
}

impl FaultDisk {
    async fn maybe_yield(&self) {
        if self.0.borrow().yielding {
            yield_once().await;
        }
    }
}

/// Returns pending once (waking itself), so other tasks get a turn.
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// xorshift64: a deterministic generator for tests.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Block for FaultDisk {
    fn info(&self) -> BlockInfo {
        let inner = self.0.borrow();
        BlockInfo {
            sector_size: inner.sector_size,
            sectors: inner.current.len() as u64 / inner.sector_size as u64,
        }
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        self.maybe_yield().await;
        let mut inner = self.0.borrow_mut();
        if inner.crashed {
            return Err(BlockError::Io);
        }
        inner.reads += 1;
        let at = (sector * inner.sector_size as u64) as usize;
        buf.copy_from_slice(&inner.current[at..at + buf.len()]);
        Ok(())
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        self.maybe_yield().await;
        let mut inner = self.0.borrow_mut();
        if inner.crashed {
            return Err(BlockError::Io);
        }
        inner.writes += 1;
        inner.bytes_written += buf.len() as u64;
        // The crashing write is recorded as unflushed (it may be torn) but
        // never completes.
        inner.unflushed.push((sector, buf.to_vec()));
        if Some(inner.writes) == inner.crash_at {
            inner.crashed = true;
            return Err(BlockError::Io);
        }
        let at = (sector * inner.sector_size as u64) as usize;
        inner.current[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        let mut inner = self.0.borrow_mut();
        if inner.crashed {
            return Err(BlockError::Io);
        }
        inner.flushes += 1;
        let size = inner.sector_size as usize;
        let Inner {
            durable, unflushed, ..
        } = &mut *inner;
        for (sector, data) in unflushed.drain(..) {
            let at = sector as usize * size;
            durable[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}

/// Everything in `store`, read back through list and get.
pub fn contents<B: Block>(store: &Store<B>) -> BTreeMap<String, Vec<u8>> {
    block_on(async {
        let mut out = BTreeMap::new();
        for entry in store.list("").await.expect("list") {
            let value = store.get(&entry.key).await.expect("get");
            assert_eq!(value.len() as u64, entry.size, "{}", entry.key);
            out.insert(entry.key, value);
        }
        out
    })
}

/// `len` bytes of a pattern that differs by `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&next(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}
