//! A disk image handed to `lamina-store`: mounted, every key listed and
//! read (whole and in ranges), every value checked, then a set, a remove
//! and a checkpoint on what mounted. The first byte picks whether the
//! checksums of the superblocks, log blocks and index pages (and the
//! checksums parents record of their children) are recomputed first
//! (odd), so that the parsers behind them see made-up structures, not
//! only checksum failures; the rest is the image (zero-padded to 64 KiB).
#![no_main]

use lamina_core::device::{KvRead, KvWrite, RamBlock};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_store::format::crc32c;
use lamina_store::Store;
use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

const SECTOR: usize = 512;
const BLOCK: usize = 4096;
const IMAGE: usize = 16 * BLOCK;

struct Still;

impl Park for Still {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {
        panic!("an in-memory disk never waits");
    }
}

/// Recomputes the checksum of each superblock and of each block that
/// starts with the log or index page magic (offsets as in
/// store/FORMAT.md: both keep the payload length at 52 and the checksum
/// at 56).
fn reseal(image: &mut [u8]) {
    for slot in 0..2 {
        let sb = &mut image[slot * BLOCK..slot * BLOCK + 88];
        let crc = crc32c(&sb[..84]);
        sb[84..88].copy_from_slice(&crc.to_le_bytes());
    }
    for block in image.chunks_mut(BLOCK).skip(2) {
        if &block[..4] != b"LKVL" && &block[..4] != b"LKVP" {
            continue;
        }
        let len = u32::from_le_bytes(block[52..56].try_into().unwrap()) as usize;
        let len = len.min(BLOCK - 64);
        block[52..56].copy_from_slice(&(len as u32).to_le_bytes());
        let mut bytes = block[..56].to_vec();
        bytes.extend_from_slice(&block[60..64 + len]);
        let crc = crc32c(&bytes);
        block[56..60].copy_from_slice(&crc.to_le_bytes());
    }
    // A parent names its child by the child's checksum: refresh the
    // references of the root (and of interior pages below it) to pages
    // resealed above, so that the leaves' records are reached.
    let crc_of = |image: &[u8], block: u64| -> Option<u32> {
        let at = usize::try_from(block).ok()?.checked_mul(BLOCK)?;
        let page = image.get(at..at.checked_add(BLOCK)?)?;
        (&page[..4] == b"LKVP").then(|| u32::from_le_bytes(page[56..60].try_into().unwrap()))
    };
    for _ in 0..3 {
        for index in 2..IMAGE / BLOCK {
            let at = index * BLOCK;
            if &image[at..at + 4] != b"LKVP" || image[at + 4..at + 8] == [0; 4] {
                continue;
            }
            let len = u32::from_le_bytes(image[at + 52..at + 56].try_into().unwrap()) as usize;
            for r in 0..len / 12 {
                let ref_at = at + 64 + r * 12;
                let child = u64::from_le_bytes(image[ref_at..ref_at + 8].try_into().unwrap());
                if let Some(crc) = crc_of(image, child) {
                    image[ref_at + 8..ref_at + 12].copy_from_slice(&crc.to_le_bytes());
                }
            }
            let block = &mut image[at..at + BLOCK];
            let mut bytes = block[..56].to_vec();
            bytes.extend_from_slice(&block[60..64 + len]);
            let crc = crc32c(&bytes);
            block[56..60].copy_from_slice(&crc.to_le_bytes());
        }
        for slot in 0..2 {
            let root = u64::from_le_bytes(
                image[slot * BLOCK + 56..slot * BLOCK + 64]
                    .try_into()
                    .unwrap(),
            );
            if let Some(crc) = crc_of(image, root) {
                let sb = &mut image[slot * BLOCK..slot * BLOCK + 88];
                sb[80..84].copy_from_slice(&crc.to_le_bytes());
                let crc = crc32c(&sb[..84]);
                sb[84..88].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut image = vec![0u8; IMAGE];
    let len = rest.len().min(IMAGE);
    image[..len].copy_from_slice(&rest[..len]);
    if mode & 1 == 1 {
        reseal(&mut image);
    }
    let executor = Executor::new(Rc::new(Still));
    executor.block_on(async {
        let Ok(store) = Store::mount(RamBlock::from_bytes(SECTOR as u32, image).expect("whole sectors")).await else {
            return;
        };
        let entries = store.list("").await.expect("a mounted store lists");
        for entry in &entries {
            assert_eq!(store.size(&entry.key).await, Ok(entry.size));
            if let Ok(value) = store.get(&entry.key).await {
                assert_eq!(value.len() as u64, entry.size);
                let part = store.get_range(&entry.key, 1000, 5000).await;
                let end = value.len().min(6000);
                let expected = value.get(1000..end).unwrap_or(&[]);
                assert_eq!(part.as_deref(), Ok(expected));
            }
        }
        let _ = store.verify().await;
        let _ = store.stats().await;
        // Writing to what mounted fails cleanly or works.
        if store.set("fuzz/new", &[1u8; 5000]).await.is_ok() {
            assert_eq!(store.get("fuzz/new").await, Ok(vec![1u8; 5000]));
        }
        if let Some(first) = entries.first() {
            let _ = store.remove(&first.key).await;
        }
        let _ = store.checkpoint().await;
        let _ = store.list("").await;
    });
});
