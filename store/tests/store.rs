//! The store's behaviour on a healthy device: the Kv conformance suite,
//! persistence across mounts, batches, listing, big values, space reuse,
//! a full disk and disks that hold no store.

mod support;

use lamina_conformance::kv;
use lamina_core::device::{KvError, KvRead, KvWrite};
use lamina_store::{Batch, Store, StoreError};
use support::{block_on, contents, pattern, yield_once, FaultDisk};

const MIB: u64 = 1024 * 1024;

fn fresh(bytes: u64, sector_size: u32) -> (FaultDisk, Store<FaultDisk>) {
    let disk = FaultDisk::new(bytes / sector_size as u64, sector_size);
    let store = block_on(Store::format(disk.clone())).expect("format");
    (disk, store)
}

fn remount(disk: &FaultDisk) -> Store<FaultDisk> {
    block_on(Store::mount(disk.clone())).expect("mount")
}

#[test]
fn kv_write_conformance() {
    for sector_size in [512, 4096] {
        let (_, store) = fresh(MIB, sector_size);
        let report = block_on(kv::run_write(&store));
        eprintln!("{report}");
        assert!(report.passed(), "{report}");
    }
}

#[test]
fn values_survive_a_remount() {
    let (disk, store) = fresh(4 * MIB, 512);
    block_on(async {
        store.set("a", b"one").await.unwrap();
        store.set("/b/c", b"").await.unwrap();
        store.set("b/d", &pattern(10_000, 1)).await.unwrap();
        store.set("a", b"two").await.unwrap();
        store.remove("b/c").await.unwrap();
    });
    let before = contents(&store);
    assert_eq!(before.len(), 2);
    assert_eq!(before["a"], b"two");
    drop(store);
    assert_eq!(contents(&remount(&disk)), before);
}

#[test]
fn a_batch_applies_every_change() {
    let (disk, store) = fresh(4 * MIB, 4096);
    let big = pattern(300_000, 2);
    block_on(async {
        store.set("gone", b"x").await.unwrap();
        let mut batch = Batch::new();
        batch.set("k/1", b"1").unwrap();
        batch.set("k/2", &big).unwrap();
        batch.remove("gone").unwrap();
        batch.remove("never-there").unwrap();
        batch.set("k/1", b"later wins").unwrap();
        assert_eq!(batch.len(), 4);
        store.commit(batch).await.unwrap();
        let mut bad = Batch::new();
        assert_eq!(bad.set("../x", b""), Err(KvError::InvalidKey));
        assert_eq!(bad.remove(&"k".repeat(1025)), Err(KvError::InvalidKey));
    });
    let got = contents(&remount(&disk));
    assert_eq!(got.keys().collect::<Vec<_>>(), ["k/1", "k/2"]);
    assert_eq!(got["k/1"], b"later wins");
    assert_eq!(got["k/2"], big);
}

#[test]
fn list_is_by_prefix_and_in_order() {
    let (_, store) = fresh(MIB, 512);
    block_on(async {
        for key in ["b/2", "a", "b/1", "ba", "c"] {
            store.set(key, key.as_bytes()).await.unwrap();
        }
        let keys = |prefix| {
            let store = &store;
            async move {
                let list = store.list(prefix).await.unwrap();
                list.into_iter().map(|e| e.key).collect::<Vec<_>>()
            }
        };
        assert_eq!(keys("b/").await, ["b/1", "b/2"]);
        assert_eq!(keys("/b").await, ["b/1", "b/2", "ba"]);
        assert_eq!(keys("").await, ["a", "b/1", "b/2", "ba", "c"]);
        assert!(keys("d").await.is_empty());
        assert_eq!(store.size("ba").await, Ok(2));
    });
}

#[test]
fn a_listing_comes_in_pages() {
    let (_, store) = fresh(MIB, 512);
    block_on(async {
        for key in ["b/2", "a", "b/1", "ba", "c", "b/3"] {
            store.set(key, key.as_bytes()).await.unwrap();
        }
        let page = |prefix, after, limit| {
            let store = &store;
            async move {
                let list = store.list_page(prefix, after, limit).await;
                list.into_iter().map(|e| e.key).collect::<Vec<_>>()
            }
        };
        assert_eq!(page("b", None, 2).await, ["b/1", "b/2"]);
        assert_eq!(page("b", Some("b/2"), 2).await, ["b/3", "ba"]);
        assert!(page("b", Some("ba"), 2).await.is_empty());
        // A continuation before the prefix starts at the prefix; one that
        // is not a key starts after where it would be.
        assert_eq!(page("b/", Some("a"), 9).await, ["b/1", "b/2", "b/3"]);
        assert_eq!(page("", Some("b/15"), 2).await, ["b/2", "b/3"]);
        assert!(page("", None, 0).await.is_empty());
        let sizes: Vec<u64> = store
            .list_page("", None, 9)
            .await
            .iter()
            .map(|e| e.size)
            .collect();
        assert_eq!(sizes, [1, 3, 3, 3, 2, 1]);
    });
}

#[test]
fn a_16_mib_value_round_trips_and_reads_in_ranges() {
    let (disk, store) = fresh(40 * MIB, 512);
    let value = pattern(16 * MIB as usize + 123, 3);
    block_on(async {
        store.set("big", &value).await.unwrap();
        assert_eq!(store.get("big").await.unwrap(), value);
        // Ranges inside one extent, across extents, past the end.
        for (offset, len) in [
            (0, 10),
            (262_140, 10),
            (5_000_000, 1_000_000),
            (16 * MIB - 5, 1000),
        ] {
            let got = store.get_range("big", offset, len).await.unwrap();
            let end = (offset as usize + len).min(value.len());
            assert_eq!(got, value[offset as usize..end], "{offset}+{len}");
        }
        assert!(store
            .get_range("big", 17 * MIB, 5)
            .await
            .unwrap()
            .is_empty());
    });
    drop(store);
    let store = remount(&disk);
    assert_eq!(block_on(store.get("big")).unwrap(), value);
    assert!(block_on(store.verify()).is_empty());
}

#[test]
fn overwrites_reuse_space_and_checkpoints_compact_the_log() {
    // 2 MiB; each value 100 KiB: 500 of them is 25 disks' worth.
    let (disk, store) = fresh(2 * MIB, 512);
    block_on(async {
        for i in 0..500u64 {
            let key = format!("k{}", i % 5);
            store.set(&key, &pattern(100_000, i)).await.unwrap();
        }
    });
    let stats = block_on(store.stats());
    assert!(stats.generation > 2, "checkpoints were written: {stats:?}");
    assert!(stats.log_blocks < 200, "the log was compacted: {stats:?}");
    drop(store);
    let got = contents(&remount(&disk));
    for i in 495..500u64 {
        assert_eq!(got[&format!("k{}", i % 5)], pattern(100_000, i));
    }
}

#[test]
fn a_full_disk_says_so_and_stays_usable() {
    let (disk, store) = fresh(MIB, 512);
    let value = pattern(50_000, 4);
    let mut stored = 0;
    block_on(async {
        loop {
            match store.set(&format!("f{stored}"), &value).await {
                Ok(()) => stored += 1,
                Err(KvError::NoSpace) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(stored < 100, "a 1 MiB disk never fills");
        }
        assert!(stored >= 15, "only {stored} values of 50 KB fit in 1 MiB");
        // Small values and empty ones too, until nothing fits.
        let mut small = 0;
        while store.set(&format!("s{small}"), b"tiny").await.is_ok() {
            small += 1;
        }
        assert_eq!(store.set("s-last", b"tiny").await, Err(KvError::NoSpace));
        // Still readable; removes work; the space comes back.
        assert_eq!(store.get("f0").await.unwrap(), value);
        for i in 0..small {
            store.remove(&format!("s{i}")).await.unwrap();
        }
        store.remove("f0").await.unwrap();
        store.remove("f1").await.unwrap();
        store.set("again", &value).await.unwrap();
    });
    drop(store);
    let got = contents(&remount(&disk));
    assert_eq!(got.len(), stored - 2 + 1);
    assert_eq!(got["again"], value);
}

#[test]
fn removes_work_when_nothing_else_fits_even_without_data() {
    // Empty values take no data blocks: only log and checkpoint space.
    let (disk, store) = fresh(64 * 1024, 512);
    let mut stored = 0;
    block_on(async {
        while store.set(&format!("{:0>900}", stored), b"").await.is_ok() {
            stored += 1;
        }
        assert!(stored > 3);
        for i in 0..stored {
            store.remove(&format!("{:0>900}", i)).await.unwrap();
        }
    });
    drop(store);
    assert!(contents(&remount(&disk)).is_empty());
}

#[test]
fn disks_without_a_store_are_refused() {
    let zeroed = FaultDisk::new(2048, 512);
    assert_eq!(
        block_on(Store::mount(zeroed)).err(),
        Some(StoreError::NotAStore)
    );
    let random = FaultDisk::from_image(pattern(MIB as usize, 9), 512);
    assert_eq!(
        block_on(Store::mount(random)).err(),
        Some(StoreError::NotAStore)
    );
    let tiny = FaultDisk::new(16, 512);
    assert!(matches!(
        block_on(Store::format(tiny)).err(),
        Some(StoreError::Geometry(_))
    ));
    // Made for 512-byte sectors, mounted on 4096.
    let (disk, store) = fresh(MIB, 512);
    drop(store);
    let other = FaultDisk::from_image(disk.image(), 4096);
    assert!(matches!(
        block_on(Store::mount(other)).err(),
        Some(StoreError::Geometry(_))
    ));
}

#[test]
fn bad_keys_are_refused() {
    let (_, store) = fresh(MIB, 512);
    block_on(async {
        assert_eq!(store.set("", b"x").await, Err(KvError::InvalidKey));
        assert_eq!(store.set("a/../b", b"x").await, Err(KvError::InvalidKey));
        assert_eq!(
            store.set(&"k".repeat(1025), b"x").await,
            Err(KvError::InvalidKey)
        );
        assert_eq!(store.set(&"k".repeat(1024), b"x").await, Ok(()));
        assert_eq!(store.get("missing").await, Err(KvError::NotFound));
        assert_eq!(store.remove("missing").await, Err(KvError::NotFound));
    });
}

#[test]
fn concurrent_operations_take_turns() {
    use lamina_core::runtime::Executor;
    let (disk, store) = fresh(4 * MIB, 512);
    disk.set_yielding(true);
    let store = std::rc::Rc::new(store);
    struct Still;
    impl lamina_core::runtime::Park for Still {
        fn now(&self) -> lamina_core::runtime::Instant {
            lamina_core::runtime::Instant::from_nanos(0)
        }
        fn park(&self, _: Option<lamina_core::runtime::Instant>) {}
    }
    let executor = Executor::new(std::rc::Rc::new(Still));
    let handle = executor.handle();
    executor.block_on(async {
        let tasks: Vec<_> = (0..8u64)
            .map(|i| {
                let store = store.clone();
                handle.spawn(async move {
                    for j in 0..10u64 {
                        store
                            .set(&format!("t{i}/{j}"), &pattern(5000, i * 100 + j))
                            .await
                            .unwrap();
                        yield_once().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
    drop(store);
    disk.set_yielding(false);
    let got = contents(&remount(&disk));
    assert_eq!(got.len(), 80);
    assert_eq!(got["t7/9"], pattern(5000, 709));
}

#[test]
fn a_set_is_one_flush_small_values_one_write() {
    let (disk, store) = fresh(4 * MIB, 512);
    let (writes, flushes) = (disk.writes(), disk.flushes());
    block_on(store.set("small", &[1; 512])).unwrap();
    assert_eq!((disk.writes() - writes, disk.flushes() - flushes), (1, 1));
    let (writes, flushes) = (disk.writes(), disk.flushes());
    block_on(store.set("big", &[2; 513])).unwrap();
    // The value's block, then the log block, then one flush (the mount
    // checks the last commit's values: tests/crash.rs).
    assert_eq!((disk.writes() - writes, disk.flushes() - flushes), (2, 1));
    drop(store);
    let got = contents(&remount(&disk));
    assert_eq!((got["small"].len(), got["big"].len()), (512, 513));
}

#[test]
fn gets_of_small_values_come_from_memory_and_never_from_a_freed_log() {
    // 32 blocks, fewer than the cache holds: the blocks each checkpoint
    // frees are written again within a round or two.
    let (disk, store) = fresh(128 << 10, 512);
    block_on(async {
        for round in 0..30u64 {
            let value = |k: u64| pattern(100, round * 1000 + k);
            for k in 0..10 {
                store.set(&format!("k{k}"), &value(k)).await.unwrap();
            }
            for k in 0..10 {
                assert_eq!(store.get(&format!("k{k}")).await.unwrap(), value(k));
            }
            // Read again: every log block is in memory.
            let reads = disk.reads();
            for k in 0..10 {
                assert_eq!(store.get(&format!("k{k}")).await.unwrap(), value(k));
            }
            assert_eq!(disk.reads(), reads, "round {round}");
            store.checkpoint().await.unwrap();
        }
    });
    assert!(block_on(store.stats()).generation > 30);
    drop(store);
    assert_eq!(contents(&remount(&disk)).len(), 10);
}

#[test]
fn the_value_cache_answers_repeated_gets_and_never_with_a_freed_blocks_bytes() {
    // 128 blocks of 4 KiB: freed extents are claimed again within a few
    // operations, often by another key's value, and the cache (48 KiB:
    // values up to 3 KiB are held, bigger ones read each time) fills and
    // evicts as it goes.
    let (disk, store) = fresh(512 << 10, 512);
    block_on(store.set_value_cache(48 << 10));
    let mut model = std::collections::BTreeMap::<String, Vec<u8>>::new();
    let mut rng = 0x00ca_c4e5_u64;
    let mut fullest = 0;
    block_on(async {
        for op in 0..3000u64 {
            let key = format!("v{}", support::next(&mut rng) % 48);
            let len = 513 + (support::next(&mut rng) % 3600) as usize;
            match support::next(&mut rng) % 10 {
                0..=4 => {
                    let value = pattern(len, op);
                    match store.set(&key, &value).await {
                        Ok(()) => drop(model.insert(key, value)),
                        Err(KvError::NoSpace) => {}
                        Err(e) => panic!("set {key}: {e}"),
                    }
                }
                5 | 6 => {
                    let expected = if model.remove(&key).is_some() {
                        Ok(())
                    } else {
                        Err(KvError::NotFound)
                    };
                    assert_eq!(store.remove(&key).await, expected, "remove {key}");
                }
                7 => {
                    // Two keys swap values: each new value may land in the
                    // blocks the other's old one freed.
                    let other = format!("v{}", support::next(&mut rng) % 48);
                    let (a, b) = (pattern(len, op), pattern(len / 2 + 300, op + 1));
                    let mut batch = Batch::new();
                    batch.set(&key, &a).unwrap();
                    batch.set(&other, &b).unwrap();
                    if store.commit(batch).await.is_ok() {
                        model.insert(key, a);
                        model.insert(other, b);
                    }
                }
                8 => store.checkpoint().await.unwrap(),
                _ => {}
            }
            // Every key twice: the second get of each is the cache's.
            for _ in 0..2 {
                for i in 0..48 {
                    let key = format!("v{i}");
                    match (store.get(&key).await, model.get(&key)) {
                        (Ok(got), Some(value)) => {
                            assert!(got == *value, "op {op}: {key}: a stale value")
                        }
                        (Err(KvError::NotFound), None) => {}
                        (got, value) => panic!(
                            "op {op}: {key}: {:?}, expected {:?}",
                            got.map(|v| v.len()),
                            value.map(|v| v.len())
                        ),
                    }
                    let range = store.get_range(&key, 100, 300).await;
                    if let Some(value) = model.get(&key) {
                        assert!(range.unwrap() == value[100..400], "op {op}: {key}: range");
                    }
                }
            }
            let stats = store.stats().await;
            assert!(stats.value_cache_bytes <= 48 << 10, "{stats:?}");
            fullest = fullest.max(stats.value_cache_bytes);
        }
    });
    let stats = block_on(store.stats());
    eprintln!("{stats:?}, at most {fullest} bytes held");
    assert!(fullest > 44 << 10, "the cache filled: {fullest}");
    // Gets of values held (written or read), and of values evicted or
    // too big to hold.
    assert!(
        stats.value_cache_hits > 10_000 && stats.value_cache_misses > 10_000,
        "{stats:?}"
    );
    drop(store);
    assert_eq!(contents(&remount(&disk)), model);
}

#[test]
fn a_held_value_is_got_without_a_read() {
    let (disk, store) = fresh(MIB, 512);
    block_on(async {
        store.set_value_cache(1 << 20).await;
        let value = pattern(4096, 9);
        store.set("held", &value).await.unwrap();
        assert_eq!(store.get("held").await.unwrap(), value);
        let reads = disk.reads();
        for _ in 0..10 {
            assert_eq!(store.get("held").await.unwrap(), value);
        }
        assert_eq!(
            store.get_range("held", 4000, 200).await.unwrap(),
            value[4000..]
        );
        assert_eq!(disk.reads(), reads, "held: no read");
        // Too big to hold (over a sixteenth of the cache): read each time.
        let big = pattern(100_000, 10);
        store.set("big", &big).await.unwrap();
        for _ in 0..3 {
            let reads = disk.reads();
            assert_eq!(store.get("big").await.unwrap(), big);
            assert!(disk.reads() > reads, "big: read");
        }
        // A smaller cache drops what no longer fits; none reads again.
        store.set_value_cache(0).await;
        let reads = disk.reads();
        assert_eq!(store.get("held").await.unwrap(), value);
        assert!(disk.reads() > reads);
        assert_eq!(store.stats().await.value_cache_bytes, 0);
    });
}

#[test]
fn a_checkpoint_writes_consecutive_log_blocks_together() {
    let (disk, store) = fresh(4 * MIB, 512);
    let names: Vec<String> = (0..1000).map(|k| format!("key/{k:05}")).collect();
    let mut batch = Batch::new();
    for name in &names {
        batch.set(name, &[5; 100]).unwrap();
    }
    block_on(store.commit(batch)).unwrap();
    let writes = disk.writes();
    block_on(store.checkpoint()).unwrap();
    let blocks = block_on(store.stats()).index_pages;
    assert!(blocks >= 20, "{blocks} blocks");
    // The log blocks in one transfer (they are consecutive on a fresh
    // disk, and fewer than 64), the superblock in another.
    assert_eq!(disk.writes() - writes, 2, "{blocks} blocks");
    drop(store);
    assert_eq!(contents(&remount(&disk)).len(), 1000);
}
