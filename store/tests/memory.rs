//! The memory the crate docs state, measured with a counting allocator:
//! the index per key, what a set and a get of a big value hold beyond the
//! value itself, and the value cache's bookkeeping per value.

use lamina_core::device::{KvRead, KvWrite, RamBlock};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_store::Store;
use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Still;

impl Park for Still {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {
        panic!("an in-memory disk never waits");
    }
}

/// One test, so that no other test's allocations are counted.
#[test]
fn memory_is_what_the_docs_say() {
    let executor = Executor::new(Rc::new(Still));
    let disk = RamBlock::new(512, (256 << 20) / 512);
    let store = executor.block_on(Store::format(disk)).unwrap();
    let value = vec![7u8; 16 << 20];
    executor.block_on(async {
        // Index: 20,000 keys of 24 bytes with small values.
        let before = LIVE.load(Ordering::Relaxed);
        let keys = 20_000;
        for i in 0..keys {
            store.set(&format!("users/{i:0>18}"), b"v").await.unwrap();
        }
        let per_key = (LIVE.load(Ordering::Relaxed) - before) / keys;
        eprintln!("{per_key} bytes per key of 24 bytes (values inline)");
        assert!(per_key <= 24 + 160, "{per_key} bytes per key");

        // A set of 16 MiB holds little beyond the caller's value.
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        store.set("big", &value).await.unwrap();
        let set_extra = PEAK.load(Ordering::Relaxed) - live;
        eprintln!("a set of 16 MiB: {set_extra} bytes at peak beyond the value");
        assert!(set_extra < 128 << 10, "{set_extra}");

        // A get holds the value and at most a block more.
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        let got = store.get("big").await.unwrap();
        let get_extra = PEAK.load(Ordering::Relaxed) - live - value.len();
        eprintln!("a get of 16 MiB: {get_extra} bytes at peak beyond the value");
        assert!(get_extra <= 4096 + 1024, "{get_extra}");
        assert!(got == value);

        // A range read holds at most one extent (256 KiB).
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        let part = store.get_range("big", 5 << 20, 100).await.unwrap();
        let range_extra = PEAK.load(Ordering::Relaxed) - live;
        eprintln!("a range of 100 bytes: {range_extra} bytes at peak");
        assert!(range_extra <= (256 << 10) + 1024, "{range_extra}");
        assert_eq!(part, vec![7u8; 100]);
    });

    // A mount keeps the index and holds, beyond it at peak, the page
    // references of a level of the index tree, the records of the commit
    // being replayed (the log holds only those since the checkpoint) and
    // one extent of the last commit's values, which it checks (the 16 MiB
    // set): not a copy of the index.
    let disk = store.into_device();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let store = executor.block_on(Store::mount(disk)).unwrap();
    let kept = LIVE.load(Ordering::Relaxed) - base;
    let transient = PEAK.load(Ordering::Relaxed) - base - kept;
    eprintln!("a mount of 20,001 keys: {kept} bytes kept, {transient} more at peak");
    assert!(kept <= 20_001 * (24 + 160), "{kept}");
    assert!(transient <= (512 << 10), "{transient}");
    assert_eq!(executor.block_on(store.size("big")), Ok(16 << 20));

    // The value cache: the values it holds and some bookkeeping each
    // (the difference between sets of the same shape without it and with
    // it, which holds what they wrote).
    executor.block_on(async {
        let (count, len) = (1000, 1000);
        let value = vec![3u8; len];
        let grown = |prefix: &'static str| {
            let store = &store;
            let value = &value;
            async move {
                let before = LIVE.load(Ordering::Relaxed);
                for i in 0..count {
                    store.set(&format!("{prefix}/{i:06}"), value).await.unwrap();
                }
                LIVE.load(Ordering::Relaxed) - before
            }
        };
        let plain = grown("plain").await;
        store.set_value_cache(4 << 20).await;
        let cached = grown("held!").await;
        assert_eq!(store.stats().await.value_cache_bytes, (count * len) as u64);
        let per_value = (cached - plain) as f64 / count as f64 - len as f64;
        eprintln!("the value cache: {per_value:.0} bytes per value beyond its bytes");
        assert!(per_value <= 160.0, "{per_value}");
    });
}
