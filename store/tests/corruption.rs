//! Damaged images: flipped bits and zeroed sectors anywhere are caught by
//! checksums, at mount or at read. The store never panics and never
//! returns a value that was not stored under the key.

mod support;

use lamina_core::device::{KvError, KvRead, KvWrite};
use lamina_store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use support::{block_on, next, pattern, FaultDisk};

const SECTOR: u32 = 512;

/// A store image and every value each key ever had.
fn image_with_history() -> (Vec<u8>, BTreeMap<String, BTreeSet<Vec<u8>>>) {
    let disk = FaultDisk::new(2048, SECTOR);
    let store = block_on(Store::format(disk.clone())).unwrap();
    let mut history: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut rng = 77u64;
    block_on(async {
        for i in 0..150u64 {
            let key = format!("key/{}", next(&mut rng) % 10);
            let len = match i % 7 {
                0 => 70_000,
                1 => 0,
                _ => (next(&mut rng) % 3000) as usize,
            };
            let value = pattern(len, i);
            store.set(&key, &value).await.unwrap();
            history.entry(key.clone()).or_default().insert(value);
            if i % 13 == 0 {
                let _ = store.remove(&key).await;
            }
        }
    });
    (disk.image(), history)
}

/// Mounts `image` and reads everything: whatever fails must fail cleanly,
/// whatever succeeds must be a value the key had. Returns what happened.
fn check(image: Vec<u8>, history: &BTreeMap<String, BTreeSet<Vec<u8>>>) -> Outcome {
    let store = match block_on(Store::mount(FaultDisk::from_image(image, SECTOR))) {
        Ok(store) => store,
        Err(_) => return Outcome::MountRefused,
    };
    let mut errors = 0;
    block_on(async {
        let list = store
            .list("")
            .await
            .expect("list never fails on a mounted store");
        for entry in list {
            let known = history
                .get(&entry.key)
                .unwrap_or_else(|| panic!("a key never stored: {:?}", entry.key));
            match store.get(&entry.key).await {
                Ok(value) => assert!(known.contains(&value), "a wrong value for {}", entry.key),
                Err(KvError::Io) => errors += 1,
                Err(e) => panic!("{}: {e}", entry.key),
            }
            // A range of a damaged value is an error too, never other bytes.
            if let Ok(part) = store.get_range(&entry.key, 100, 5000).await {
                assert!(known
                    .iter()
                    .any(|v| v.get(100..(100 + 5000).min(v.len())).unwrap_or(&[]) == part));
            }
        }
    });
    if errors > 0 {
        Outcome::ReadErrors
    } else {
        Outcome::Clean
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    MountRefused,
    ReadErrors,
    Clean,
}

#[test]
fn flipped_bits_give_errors_or_stored_values() {
    let (image, history) = image_with_history();
    let used: Vec<usize> = (0..image.len()).filter(|&i| image[i] != 0).collect();
    let mut rng = 0xb175u64;
    let mut outcomes = BTreeMap::new();
    for trial in 0..1500 {
        let mut damaged = image.clone();
        for _ in 0..1 + trial % 3 {
            // Mostly where something is written, sometimes anywhere.
            let at = if next(&mut rng).is_multiple_of(5) {
                (next(&mut rng) % image.len() as u64) as usize
            } else {
                used[(next(&mut rng) % used.len() as u64) as usize]
            };
            damaged[at] ^= 1 << (next(&mut rng) % 8);
        }
        *outcomes.entry(check(damaged, &history)).or_insert(0) += 1;
    }
    eprintln!("{outcomes:?}");
    assert!(
        outcomes.contains_key(&Outcome::MountRefused),
        "{outcomes:?}"
    );
    assert!(outcomes.contains_key(&Outcome::ReadErrors), "{outcomes:?}");
}

#[test]
fn zeroed_sectors_give_errors_or_stored_values() {
    let (image, history) = image_with_history();
    let sectors = image.len() / SECTOR as usize;
    let mut outcomes = BTreeMap::new();
    for sector in 0..sectors {
        let range = sector * SECTOR as usize..(sector + 1) * SECTOR as usize;
        if image[range.clone()].iter().all(|&b| b == 0) {
            continue;
        }
        let mut damaged = image.clone();
        damaged[range].fill(0);
        *outcomes.entry(check(damaged, &history)).or_insert(0) += 1;
    }
    eprintln!("{outcomes:?}");
    assert!(outcomes.contains_key(&Outcome::ReadErrors), "{outcomes:?}");
}

#[test]
fn a_damaged_superblock_or_checkpoint_refuses_the_mount() {
    let (image, _) = image_with_history();
    for (what, at) in [("superblock 0", 20), ("superblock 1", 4096 + 30)] {
        let mut damaged = image.clone();
        damaged[at] ^= 0x10;
        let result = block_on(Store::mount(FaultDisk::from_image(damaged, SECTOR)));
        assert!(
            matches!(result.err(), Some(StoreError::Corrupt { .. })),
            "{what}"
        );
    }
    // A foreign disk that happens to start with the magic.
    let mut foreign = pattern(image.len(), 5);
    foreign[..8].copy_from_slice(b"LAMINAKV");
    let result = block_on(Store::mount(FaultDisk::from_image(foreign, SECTOR)));
    assert!(matches!(result.err(), Some(StoreError::Corrupt { .. })));
}

/// The log blocks of `image` (4 KiB blocks), by sequence number.
fn log_blocks(image: &[u8]) -> BTreeMap<u64, usize> {
    image
        .chunks(4096)
        .enumerate()
        .filter(|(_, block)| &block[..4] == b"LKVL")
        .map(|(i, block)| (u64::from_le_bytes(block[8..16].try_into().unwrap()), i))
        .collect()
}

#[test]
fn damage_in_the_middle_of_the_log_refuses_the_mount() {
    let disk = FaultDisk::new(2048, SECTOR);
    let store = block_on(Store::format_with_volume(disk.clone(), 42)).unwrap();
    block_on(async {
        for i in 0..10u64 {
            store.set(&format!("k{i}"), &pattern(100, i)).await.unwrap();
        }
    });
    let image = disk.image();
    let blocks = log_blocks(&image);
    // Sequences 1 to 10 are the ten commits (the checkpoint is the index
    // tree, not in the log). Each but the last is followed by a later
    // commit, so its damage is certain.
    let seqs: Vec<u64> = blocks.keys().copied().collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    for seq in 1..=9 {
        let mut damaged = image.clone();
        damaged[blocks[&seq] * 4096 + 12] ^= 1;
        let result = block_on(Store::mount(FaultDisk::from_image(damaged, SECTOR)));
        assert!(
            matches!(result.err(), Some(StoreError::Corrupt { .. })),
            "log block {seq}"
        );
    }
    // The last one cannot be told from a torn write: that commit is gone.
    let mut damaged = image.clone();
    damaged[blocks[&10] * 4096 + 12] ^= 1;
    let store = block_on(Store::mount(FaultDisk::from_image(damaged, SECTOR))).unwrap();
    assert_eq!(block_on(store.get("k9")), Err(KvError::NotFound));
    assert_eq!(block_on(store.get("k8")), Ok(pattern(100, 8)));
}

#[test]
fn formatting_over_a_store_leaves_nothing_of_it() {
    let disk = FaultDisk::new(2048, SECTOR);
    for round in 0..3u64 {
        let store = block_on(Store::format(disk.clone())).unwrap();
        assert!(
            block_on(store.list("")).unwrap().is_empty(),
            "round {round}"
        );
        block_on(async {
            for i in 0..5u64 {
                store
                    .set(&format!("r{round}/{i}"), &pattern(10, i))
                    .await
                    .unwrap();
            }
        });
        drop(store);
        let store = block_on(Store::mount(disk.clone())).unwrap();
        let keys: Vec<String> = block_on(store.list(""))
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys.len(), 5, "round {round}: {keys:?}");
        assert!(keys.iter().all(|k| k.starts_with(&format!("r{round}/"))));
    }
}

#[test]
fn a_sealed_log_block_pointing_off_the_disk_refuses_the_mount() {
    // Found by the fuzz target: a log block with a right checksum whose
    // `after_next` is u64::MAX overflowed the space map at mount.
    let disk = FaultDisk::new(2048, SECTOR);
    let store = block_on(Store::format_with_volume(disk.clone(), 42)).unwrap();
    block_on(store.set("k", b"v")).unwrap();
    let mut image = disk.image();
    let last = *log_blocks(&image).values().last().unwrap() * 4096;
    for pointer in [u64::MAX, 2048 / 8, 1, 0] {
        let block = &mut image[last..last + 4096];
        block[24..32].copy_from_slice(&pointer.to_le_bytes());
        let len = u32::from_le_bytes(block[52..56].try_into().unwrap()) as usize;
        let mut sealed = block[..56].to_vec();
        sealed.extend_from_slice(&block[60..64 + len]);
        let crc = lamina_store::format::crc32c(&sealed);
        block[56..60].copy_from_slice(&crc.to_le_bytes());
        let result = block_on(Store::mount(FaultDisk::from_image(image.clone(), SECTOR)));
        assert!(
            matches!(result.err(), Some(StoreError::Corrupt { .. })),
            "after_next {pointer}"
        );
    }
}

#[test]
fn a_sealed_superblock_with_counters_near_the_limit_refuses_the_mount() {
    // Found by the fuzz target: generation u64::MAX overflowed at the next
    // checkpoint.
    let disk = FaultDisk::new(2048, SECTOR);
    drop(block_on(Store::format_with_volume(disk.clone(), 42)).unwrap());
    for (field, at) in [("generation", 32), ("log_seq", 48)] {
        let mut image = disk.image();
        let sb = &mut image[4096..4096 + 88];
        sb[at..at + 8].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        let crc = lamina_store::format::crc32c(&sb[..84]);
        sb[84..88].copy_from_slice(&crc.to_le_bytes());
        let result = block_on(Store::mount(FaultDisk::from_image(image, SECTOR)));
        assert!(
            matches!(result.err(), Some(StoreError::Corrupt { .. })),
            "{field}"
        );
    }
}

#[test]
fn an_image_of_format_version_1_is_refused_naming_its_version() {
    let disk = FaultDisk::new(2048, SECTOR);
    drop(block_on(Store::format_with_volume(disk.clone(), 42)).unwrap());
    let mut image = disk.image();
    // Version 1's superblock: the same first 80 bytes' layout, its
    // checksum at 80.
    for slot in 0..2 {
        let sb = &mut image[slot * 4096..slot * 4096 + 88];
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = lamina_store::format::crc32c(&sb[..80]);
        sb[80..84].copy_from_slice(&crc.to_le_bytes());
    }
    let error = block_on(Store::mount(FaultDisk::from_image(image, SECTOR)))
        .err()
        .expect("refused");
    assert_eq!(error, StoreError::UnsupportedVersion(1));
    assert_eq!(
        error.to_string(),
        "store format version 1 is not supported (this build reads version 2)"
    );
}
