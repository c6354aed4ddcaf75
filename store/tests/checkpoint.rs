//! Checkpoints are incremental: what one writes after a single set is a
//! leaf and the pages above it, whatever the number of keys.

mod support;

use lamina_core::device::KvWrite;
use lamina_store::{Batch, Store};
use support::{block_on, contents, pattern, FaultDisk};

/// A store of `keys` keys with 100-byte values, checkpointed; then one set
/// of an existing key and a checkpoint. Returns the bytes that checkpoint
/// wrote, the index's pages and levels, and the store's device.
fn bytes_of_a_checkpoint_after_one_set(keys: u64) -> (u64, u64, u32, FaultDisk) {
    let disk = FaultDisk::new((64 << 20) / 512, 512);
    let store = block_on(Store::format_with_volume(disk.clone(), 7)).unwrap();
    let name = |i: u64| format!("users/{i:08}");
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut batch = Batch::new();
        let values: Vec<Vec<u8>> = chunk.iter().map(|&i| pattern(100, i)).collect();
        for (&i, value) in chunk.iter().zip(&values) {
            batch.set(&name(i), value).unwrap();
        }
        block_on(store.commit(batch)).unwrap();
    }
    block_on(store.checkpoint()).unwrap();
    block_on(store.set(&name(keys / 2), b"changed")).unwrap();
    let before = disk.bytes_written();
    block_on(store.checkpoint()).unwrap();
    let written = disk.bytes_written() - before;
    let stats = block_on(store.stats());
    drop(store);
    let store = block_on(Store::mount(disk.clone())).unwrap();
    let got = contents(&store);
    assert_eq!(got.len() as u64, keys);
    assert_eq!(got[&name(keys / 2)], b"changed");
    assert_eq!(got[&name(keys / 3)], pattern(100, keys / 3));
    (written, stats.index_pages, stats.index_levels, disk)
}

#[test]
fn a_checkpoint_after_one_set_writes_a_few_pages_whatever_the_key_count() {
    let (small, small_pages, small_levels, _) = bytes_of_a_checkpoint_after_one_set(2_000);
    let (big, big_pages, big_levels, _) = bytes_of_a_checkpoint_after_one_set(20_000);
    eprintln!(
        "2,000 keys: {small} bytes ({small_pages} pages, {small_levels} levels); \
         20,000 keys: {big} bytes ({big_pages} pages, {big_levels} levels)"
    );
    assert!(
        big_pages > 10 * small_pages / 2,
        "{big_pages} {small_pages}"
    );
    assert!(big_levels >= 3, "the root has split: {big_levels} levels");
    // A leaf (two if it split), one page per level above, the superblock's
    // sector.
    let limit = |levels: u32| (u64::from(levels) + 1) * 4096 + 512;
    assert!(small <= limit(small_levels), "{small} bytes");
    assert!(big <= limit(big_levels), "{big} bytes");
    assert!(
        big <= small + 4096,
        "{big} against {small}: not the key count"
    );
}

#[test]
fn leaves_split_empty_and_span_pages_through_many_checkpoints() {
    use lamina_core::device::KvRead;
    use std::collections::BTreeMap;
    let disk = FaultDisk::new((32 << 20) / 512, 512);
    let store = block_on(Store::format_with_volume(disk.clone(), 9)).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut rng = 0x1234_5678u64;
    let mut store = Some(store);
    for round in 0..9u64 {
        let s = store.as_ref().unwrap();
        block_on(async {
            for _ in 0..500 {
                let key = format!("r/{:05}", support::next(&mut rng) % 6000);
                if support::next(&mut rng).is_multiple_of(5) {
                    if s.remove(&key).await.is_ok() {
                        model.remove(&key);
                    }
                } else {
                    let len = (support::next(&mut rng) % 700) as usize;
                    let value = pattern(len, support::next(&mut rng));
                    s.set(&key, &value).await.unwrap();
                    model.insert(key, value);
                }
            }
            // A run of keys removed whole: leaves left empty are dropped.
            let from = format!("r/{:05}", (round * 500) % 6000);
            let to = format!("r/{:05}", (round * 500) % 6000 + 400);
            let doomed: Vec<String> = model.range(from..to).map(|(k, _)| k.clone()).collect();
            for key in doomed {
                s.remove(&key).await.unwrap();
                model.remove(&key);
            }
            if round == 5 {
                // A fragmented disk: a value of a thousand one-block
                // extents, whose records span leaf pages.
                for i in 0..2000 {
                    s.set(&format!("frag/{i:04}"), &[1; 4000]).await.unwrap();
                }
                for i in (0..2000).step_by(2) {
                    s.remove(&format!("frag/{i:04}")).await.unwrap();
                }
                let big = pattern(1000 * 4096 - 100, 77);
                s.set("frag/0001x", &big).await.unwrap();
                model.insert("frag/0001x".into(), big);
                for i in (1..2000).step_by(2) {
                    model.insert(format!("frag/{i:04}"), vec![1; 4000]);
                }
            }
            s.checkpoint().await.unwrap();
        });
        if round % 3 == 2 {
            drop(store.take());
            store = Some(block_on(Store::mount(disk.clone())).unwrap());
        }
        let s = store.as_ref().unwrap();
        let got = contents(s);
        assert!(
            got == model,
            "round {round}: {} keys, {} expected",
            got.len(),
            model.len()
        );
        assert!(block_on(s.verify()).is_empty());
        let stats = block_on(s.stats());
        eprintln!("round {round}: {stats:?}");
        assert_eq!(
            block_on(s.size("r/nothing")),
            Err(lamina_core::device::KvError::NotFound)
        );
    }
}

#[test]
fn removes_join_small_leaves_and_the_index_shrinks() {
    let disk = FaultDisk::new((8 << 20) / 512, 512);
    let store = block_on(Store::format_with_volume(disk.clone(), 5)).unwrap();
    let mut model = std::collections::BTreeMap::new();
    block_on(async {
        for chunk in (0..4000u64).collect::<Vec<_>>().chunks(400) {
            let mut batch = Batch::new();
            let values: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|&i| (format!("j/{i:05}"), pattern(40 + (i % 60) as usize, i)))
                .collect();
            for (key, value) in &values {
                batch.set(key, value).unwrap();
            }
            store.commit(batch).await.unwrap();
            model.extend(values);
        }
        store.checkpoint().await.unwrap();
    });
    let full = block_on(store.stats());
    // Nine keys in ten removed, at random, in rounds with checkpoints
    // between: every leaf keeps a few keys, so none is left empty.
    let mut rng = 0x007e_110f_u64;
    let mut keys: Vec<String> = model.keys().cloned().collect();
    block_on(async {
        while keys.len() > 400 {
            let mut batch = Batch::new();
            for _ in 0..200 {
                let at = (support::next(&mut rng) % keys.len() as u64) as usize;
                let key = keys.swap_remove(at);
                batch.remove(&key).unwrap();
                model.remove(&key);
            }
            store.commit(batch).await.unwrap();
            store.checkpoint().await.unwrap();
        }
    });
    let thinned = block_on(store.stats());
    eprintln!("{full:?} -> {thinned:?}");
    // 400 keys of about 90 bytes of records fill about 9 pages of 4 KiB;
    // joined leaves are at most half full, so about twice that at most,
    // where the leaves of 4,000 keys stay some 130 pages if never joined.
    assert!(full.index_pages > 100, "{full:?}");
    assert!(thinned.index_pages * 4 < full.index_pages, "{thinned:?}");
    drop(store);
    let store = block_on(Store::mount(disk.clone())).unwrap();
    assert_eq!(contents(&store), model);
    assert_eq!(block_on(store.stats()).index_pages, thinned.index_pages);
}
