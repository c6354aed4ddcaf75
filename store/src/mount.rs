//! Formatting a device, and mounting: choosing the superblock, replaying
//! the log into the index, and rebuilding the space map.

use crate::disk::{Disk, PageWriter, Tail};
use crate::format::{
    parse_log_block, parse_page, parse_records, parse_refs, Extent, FormatError, PageRef, Record,
    Superblock, LOG_HEADER, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SUPERBLOCK_BLOCKS,
};
use crate::lock::Lock;
use crate::read::{LogBlockCache, ValueCache};
use crate::space::Space;
use crate::tree::{Node, Tree};
use crate::{Entry, Inline, State, Store, StoreError};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::{normalize_key, Block};

/// The fewest blocks a store is made with: superblocks, the root of an
/// empty index, the log's first two and a little room.
pub const MIN_BLOCKS: u64 = 8;

/// The store block size for a device: 4 KiB, or the sector if bigger.
fn block_size_for(sector_size: u32) -> Result<u32, StoreError> {
    if !(512..=MAX_BLOCK_SIZE).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Err(StoreError::Geometry(
            "sector size is not a power of two from 512 to 65536",
        ));
    }
    Ok(sector_size.max(MIN_BLOCK_SIZE))
}

fn corrupt(what: &'static str, block: u64, error: FormatError) -> StoreError {
    StoreError::Corrupt { what, block, error }
}

impl<B: Block> Store<B> {
    /// Makes an empty store on `device`, replacing whatever it held, and
    /// mounts it. Its volume id is derived from what the device held, so
    /// that blocks of an earlier store there never pass for this one's; a
    /// caller with a source of randomness may prefer
    /// [`Store::format_with_volume`].
    pub async fn format(device: B) -> Result<Store<B>, StoreError> {
        let info = device.info();
        let block_size = block_size_for(info.sector_size)?;
        let disk = Disk::new(device, block_size);
        let mut digest = crate::format::Crc64::new();
        let blocks = info.capacity() / u64::from(block_size);
        for block in 0..blocks.min(16) {
            let mut sector = vec![0u8; info.sector_size as usize];
            disk.device
                .read(
                    block * u64::from(block_size / info.sector_size),
                    &mut sector,
                )
                .await
                .map_err(StoreError::Io)?;
            if let Ok(old) = Superblock::parse(&sector) {
                digest.update(&old.volume.wrapping_add(1).to_le_bytes());
            }
            digest.update(&sector);
        }
        Self::format_with_volume(disk.device, digest.finish()).await
    }

    /// Makes an empty store on `device` with volume id `volume`, which
    /// should differ from that of any store the device held before.
    pub async fn format_with_volume(device: B, volume: u64) -> Result<Store<B>, StoreError> {
        let info = device.info();
        let block_size = block_size_for(info.sector_size)?;
        let block_count = info.capacity() / u64::from(block_size);
        if block_count < MIN_BLOCKS {
            return Err(StoreError::Geometry(
                "device too small for a store (8 blocks of 4 KiB)",
            ));
        }
        let disk = Disk::new(device, block_size);
        let root_block = SUPERBLOCK_BLOCKS;
        let log_start = root_block + 1;
        let generation = 1;
        let mut space = Space::new(block_count);
        space.claim(0..log_start + 2);
        let tail = Tail {
            block: log_start,
            after: log_start + 1,
            seq: 1,
            prev: Superblock::anchor_for(volume, generation, log_start, 1),
        };
        // An empty checkpoint: a root listing no leaves.
        let mut pages = PageWriter::new(volume, generation, block_size);
        let root = pages.write(&disk, root_block, 1, &[]).await?;
        pages.finish(&disk).await?;
        let superblock = Superblock {
            sector_size: info.sector_size,
            block_size,
            block_count,
            generation,
            volume,
            log_start,
            log_after: tail.after,
            log_seq: 1,
            anchor: tail.prev,
            root: root.block,
            root_crc: root.crc,
        };
        // Slot 0 holds an older generation naming the same log; only the
        // newer is ever followed, but both must be intact.
        let older = Superblock {
            generation: 0,
            ..superblock
        };
        disk.write_superblock(0, |out| older.emit(out)).await?;
        disk.write_superblock(1, |out| superblock.emit(out)).await?;
        Ok(Store {
            disk,
            state: Lock::new(State {
                superblock,
                index: BTreeMap::new(),
                index_bytes: 0,
                space,
                chain: Vec::new(),
                tree: Tree::empty(root),
                tail,
                poisoned: false,
                gets: LogBlockCache::for_gets(block_size),
                values: ValueCache::default(),
            }),
        })
    }

    /// Mounts the store on `device`: reads the current superblock, replays
    /// the log and checks that the blocks it names do not overlap.
    pub async fn mount(device: B) -> Result<Store<B>, StoreError> {
        let info = device.info();
        let block_size = block_size_for(info.sector_size)?;
        let disk = Disk::new(device, block_size);
        let superblock = read_superblocks(&disk).await?;
        if superblock.sector_size != info.sector_size || superblock.block_size != block_size {
            return Err(StoreError::Geometry(
                "the store was made for another sector size",
            ));
        }
        if superblock.block_count > info.capacity() / u64::from(block_size) {
            return Err(StoreError::Geometry("the device is smaller than the store"));
        }
        let mut space = Space::new(superblock.block_count);
        space.claim(0..SUPERBLOCK_BLOCKS);
        let (index, mut tree) = load_tree(&disk, &superblock, &mut space).await?;
        let replay = replay(&disk, &superblock, index, &mut tree).await?;
        let reserved = [replay.tail.block, replay.tail.after];
        for &block in replay.chain.iter().chain(&reserved) {
            if !space.claim(block..block + 1) {
                return Err(corrupt(
                    "log block used twice",
                    block,
                    FormatError::BadField("next"),
                ));
            }
        }
        let mut index_bytes = 0;
        for (key, entry) in &replay.index {
            for extent in &entry.extents {
                if !space.claim(extent.range()) {
                    return Err(corrupt(
                        "extent overlaps another",
                        extent.start,
                        FormatError::BadField("extent"),
                    ));
                }
            }
            index_bytes += entry.encoded_len(key.len());
        }
        log::debug!(
            "store: mounted generation {}, {} keys, {} log blocks, {} free",
            superblock.generation,
            replay.index.len(),
            replay.chain.len(),
            space.free()
        );
        Ok(Store {
            disk,
            state: Lock::new(State {
                superblock,
                index: replay.index,
                index_bytes,
                space,
                chain: replay.chain,
                tree,
                tail: replay.tail,
                poisoned: false,
                gets: LogBlockCache::for_gets(superblock.block_size),
                values: ValueCache::default(),
            }),
        })
    }
}

/// Reads both superblocks and returns the current one. Each is written as
/// one sector, which devices write atomically, so any damage to either is
/// corruption, not a torn write, and is reported.
async fn read_superblocks<B: Block>(disk: &Disk<B>) -> Result<Superblock, StoreError> {
    let mut found = [None, None];
    let mut foreign = 0;
    for slot in 0..SUPERBLOCK_BLOCKS {
        let raw = disk.read_superblock(slot).await?;
        match Superblock::parse(&raw) {
            Ok(superblock) => found[slot as usize] = Some(superblock),
            Err(FormatError::BadMagic) => foreign += 1,
            Err(FormatError::UnsupportedVersion(v)) => {
                return Err(StoreError::UnsupportedVersion(v))
            }
            Err(error) => return Err(corrupt("superblock", slot, error)),
        }
    }
    match found {
        [Some(a), Some(b)] => {
            if a.generation == b.generation
                || a.block_size != b.block_size
                || a.block_count != b.block_count
            {
                return Err(corrupt(
                    "superblock pair",
                    0,
                    FormatError::BadField("generation"),
                ));
            }
            Ok(if a.generation > b.generation { a } else { b })
        }
        _ if foreign == 2 => Err(StoreError::NotAStore),
        _ => Err(corrupt("superblock", 0, FormatError::BadMagic)),
    }
}

struct Replay {
    index: BTreeMap<String, Entry>,
    chain: Vec<u64>,
    tail: Tail,
}

/// The last whole commit after the checkpoint, held back from the index
/// until the log goes on past it (then it was durable: a commit is
/// written only once the one before is flushed) or, at the end of the
/// log, until its values are found intact.
struct Held {
    ops: Vec<(String, Option<Entry>)>,
    /// Where the commit begins, and how many log blocks it has.
    start: Tail,
    blocks: usize,
    /// Its COMMIT block, for errors.
    address: u64,
}

/// Applies a whole commit's operations to the index, marking their leaves
/// for the next checkpoint.
fn apply_commit(
    index: &mut BTreeMap<String, Entry>,
    tree: &mut Tree,
    ops: Vec<(String, Option<Entry>)>,
    address: u64,
) -> Result<(), StoreError> {
    for (key, entry) in ops {
        tree.mark(&key);
        match entry {
            Some(entry) => {
                index.insert(key, entry);
            }
            None => {
                if index.remove(&key).is_none() {
                    return Err(corrupt(
                        "log record",
                        address,
                        FormatError::BadField("remove"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether every extent the sets of `ops` name holds the bytes of its
/// checksum: a commit's values and records are flushed together, so after
/// a crash before that flush its last block may be on the disk and some
/// of its values not. Reads at most one extent (256 KiB) at a time.
async fn values_intact<B: Block>(
    disk: &Disk<B>,
    ops: &[(String, Option<Entry>)],
) -> Result<bool, StoreError> {
    let block_size = u64::from(disk.block_size);
    let mut buf = Vec::new();
    for entry in ops.iter().filter_map(|(_, entry)| entry.as_ref()) {
        let mut offset = 0;
        for extent in &entry.extents {
            let room = u64::from(extent.blocks) * block_size;
            let len = room.min(entry.size - offset);
            buf.resize(room as usize, 0);
            disk.read(extent.start, &mut buf).await?;
            if crate::format::crc32c(&buf[..len as usize]) != extent.crc {
                return Ok(false);
            }
            offset += len;
        }
    }
    Ok(true)
}

/// A set whose extents are still being collected from `More` records.
struct PendingSet {
    key: String,
    entry: Entry,
    total: u32,
}

/// Follows the log from the superblock, applying each whole commit to
/// `index` (the checkpoint's).
async fn replay<B: Block>(
    disk: &Disk<B>,
    superblock: &Superblock,
    mut index: BTreeMap<String, Entry>,
    tree: &mut Tree,
) -> Result<Replay, StoreError> {
    let mut chain = Vec::new();
    let mut block = vec![0u8; superblock.block_size as usize];
    let mut tail = Tail {
        block: superblock.log_start,
        after: superblock.log_after,
        seq: superblock.log_seq,
        prev: superblock.anchor,
    };
    // Where the commit being read started, and its operations so far.
    let mut commit_start = tail;
    let mut commit_blocks = 0usize;
    let mut ops: Vec<(String, Option<Entry>)> = Vec::new();
    let mut open_set: Option<PendingSet> = None;
    let mut held: Option<Held> = None;
    loop {
        let address = tail.block;
        // A chain no longer than the device: each block's sequence number
        // is one more than the last, so a valid chain never revisits one.
        if !(SUPERBLOCK_BLOCKS..superblock.block_count).contains(&address)
            || chain.len() as u64 > superblock.block_count
        {
            return Err(corrupt("log chain", address, FormatError::BadField("next")));
        }
        disk.read(address, &mut block).await?;
        let parsed = parse_log_block(&block).and_then(|(header, payload, crc)| {
            if header.volume != superblock.volume
                || header.seq != tail.seq
                || header.prev != tail.prev
            {
                Err(FormatError::BadField("sequence"))
            } else {
                Ok((header, payload, crc))
            }
        });
        let (header, payload, crc) = match parsed {
            Ok(parsed) => parsed,
            // The end of the log: a block never written, or torn by a
            // crash; unless a later commit lies beyond it.
            Err(error) => {
                if later_commit_beyond(disk, superblock, &tail).await? {
                    return Err(corrupt("log block", address, error));
                }
                break;
            }
        };
        let blocks = SUPERBLOCK_BLOCKS..superblock.block_count;
        if header.next != tail.after
            || !blocks.contains(&header.after_next)
            || header.after_next == header.next
        {
            return Err(corrupt("log chain", address, FormatError::BadField("next")));
        }
        let records = parse_records(payload).map_err(|e| corrupt("log records", address, e))?;
        for record in records {
            apply_record(record, address, &mut ops, &mut open_set, superblock)
                .map_err(|e| corrupt("log record", address, e))?;
        }
        chain.push(address);
        commit_blocks += 1;
        tail = Tail {
            block: header.next,
            after: header.after_next,
            seq: header.seq + 1,
            prev: crc,
        };
        if header.is_commit() {
            if open_set.is_some() {
                return Err(corrupt("log record", address, FormatError::Truncated));
            }
            if let Some(before) = held.take() {
                apply_commit(&mut index, tree, before.ops, before.address)?;
            }
            held = Some(Held {
                ops: core::mem::take(&mut ops),
                start: commit_start,
                blocks: commit_blocks,
                address,
            });
            commit_start = tail;
            commit_blocks = 0;
        }
    }
    // Blocks of a commit that never ended belong to nothing: the log goes
    // on from where that commit began.
    chain.truncate(chain.len() - commit_blocks);
    if let Some(last) = held {
        if values_intact(disk, &last.ops).await? {
            apply_commit(&mut index, tree, last.ops, last.address)?;
        } else {
            // Cut short by a crash before its flush (or damaged since,
            // which cannot be told apart): as if never written.
            log::warn!(
                "store: the last commit (ending at block {}) names values not on the disk: dropped",
                last.address
            );
            chain.truncate(chain.len() - last.blocks);
            commit_start = last.start;
        }
    }
    Ok(Replay {
        index,
        chain,
        tail: commit_start,
    })
}

/// Whether the log goes on past the bad block at `tail` with a block of a
/// commit begun after it. A commit is written only once the one before is
/// durable, so such a block proves the bad one was written whole and
/// damaged since (not torn by a crash). The chain is followed from the
/// block reserved after the bad one.
async fn later_commit_beyond<B: Block>(
    disk: &Disk<B>,
    superblock: &Superblock,
    tail: &Tail,
) -> Result<bool, StoreError> {
    let mut block = vec![0u8; superblock.block_size as usize];
    let mut address = tail.after;
    let mut prev = None;
    // No chain is longer than the device.
    let seqs = (tail.seq + 1..).take(superblock.block_count as usize);
    for seq in seqs {
        if !(SUPERBLOCK_BLOCKS..superblock.block_count).contains(&address) {
            break;
        }
        disk.read(address, &mut block).await?;
        let Ok((header, _, crc)) = parse_log_block(&block) else {
            break;
        };
        if header.volume != superblock.volume
            || header.seq != seq
            || prev.is_some_and(|p| p != header.prev)
        {
            break;
        }
        if header.commit_seq > tail.seq {
            return Ok(true);
        }
        address = header.next;
        prev = Some(crc);
    }
    Ok(false)
}

/// Adds one record's effect to the commit being read.
fn apply_record(
    record: Record<'_>,
    address: u64,
    ops: &mut Vec<(String, Option<Entry>)>,
    open_set: &mut Option<PendingSet>,
    superblock: &Superblock,
) -> Result<(), FormatError> {
    let check_extents = |extents: &[Extent]| {
        extents.iter().try_for_each(|e| {
            let end = e.start.checked_add(u64::from(e.blocks));
            if e.start < SUPERBLOCK_BLOCKS || end.is_none_or(|end| end > superblock.block_count) {
                Err(FormatError::BadField("extent"))
            } else {
                Ok(())
            }
        })
    };
    match record {
        Record::Set {
            key,
            size,
            total_extents,
            extents,
        } => {
            if open_set.is_some() {
                return Err(FormatError::Truncated);
            }
            check_extents(&extents)?;
            let key = parse_key(key)?;
            let max_blocks = size.div_ceil(u64::from(superblock.block_size));
            if u64::from(total_extents) > max_blocks
                || extents.len() as u64 > u64::from(total_extents)
            {
                return Err(FormatError::BadField("extent count"));
            }
            *open_set = Some(PendingSet {
                key,
                entry: Entry {
                    size,
                    extents,
                    inline: None,
                },
                total: total_extents,
            });
        }
        Record::More(extents) => {
            check_extents(&extents)?;
            let pending = open_set
                .as_mut()
                .ok_or(FormatError::BadField("record order"))?;
            if pending.entry.extents.len() + extents.len() > pending.total as usize {
                return Err(FormatError::BadField("extent count"));
            }
            pending.entry.extents.extend(extents);
        }
        Record::Remove(key) => {
            if open_set.is_some() {
                return Err(FormatError::Truncated);
            }
            ops.push((parse_key(key)?, None));
        }
        Record::Inline { key, value, at } => {
            if open_set.is_some() {
                return Err(FormatError::Truncated);
            }
            let entry = Entry {
                size: value.len() as u64,
                extents: Vec::new(),
                inline: Some(Inline {
                    block: address,
                    offset: (LOG_HEADER + at) as u32,
                }),
            };
            ops.push((parse_key(key)?, Some(entry)));
        }
    }
    if let Some(pending) = open_set.take_if(|p| p.entry.extents.len() == p.total as usize) {
        let blocks: u64 = pending
            .entry
            .extents
            .iter()
            .map(|e| u64::from(e.blocks))
            .sum();
        if blocks
            != pending
                .entry
                .size
                .div_ceil(u64::from(superblock.block_size))
        {
            return Err(FormatError::BadField("value size"));
        }
        ops.push((pending.key, Some(pending.entry)));
    }
    Ok(())
}

fn parse_key(raw: &[u8]) -> Result<String, FormatError> {
    let key = core::str::from_utf8(raw).map_err(|_| FormatError::BadField("key"))?;
    match normalize_key(key) {
        Ok(normal) if normal == key => Ok(normal),
        _ => Err(FormatError::BadField("key")),
    }
}

/// A page of an interior level as the mount reads it: where it is, and
/// the run of pages of the level below it lists.
struct Listed {
    page: PageRef,
    children: core::ops::Range<usize>,
}

/// Reads the page `page` names, checks it is of `level` (any level above
/// the leaves when `None`) and of this store, and claims its block.
async fn read_page<'b, B: Block>(
    disk: &Disk<B>,
    superblock: &Superblock,
    space: &mut Space,
    page: PageRef,
    level: Option<u32>,
    buf: &'b mut [u8],
) -> Result<(u32, &'b [u8]), StoreError> {
    let damaged = |error| corrupt("index page", page.block, error);
    if !(SUPERBLOCK_BLOCKS..superblock.block_count).contains(&page.block) {
        return Err(damaged(FormatError::BadField("page reference")));
    }
    if !space.claim(page.block..page.block + 1) {
        return Err(corrupt(
            "index page used twice",
            page.block,
            FormatError::BadField("page reference"),
        ));
    }
    disk.read(page.block, buf).await?;
    let (header, payload, crc) = parse_page(buf).map_err(damaged)?;
    if crc != page.crc {
        return Err(damaged(FormatError::BadChecksum));
    }
    if header.volume != superblock.volume {
        return Err(damaged(FormatError::BadField("volume")));
    }
    match level {
        Some(level) if header.level != level => Err(damaged(FormatError::BadField("level"))),
        None if header.level == 0 => Err(damaged(FormatError::BadField("level"))),
        _ => Ok((header.level, payload)),
    }
}

/// Reads the checkpoint: the index tree from the superblock's root down,
/// one level at a time, every page checked against the checksum its
/// parent records; the leaves' records make the index. Keys must rise
/// strictly from leaf to leaf; a leaf whose records begin with the rest
/// of a value's extents continues the leaf before, under the same parent.
async fn load_tree<B: Block>(
    disk: &Disk<B>,
    superblock: &Superblock,
    space: &mut Space,
) -> Result<(BTreeMap<String, Entry>, Tree), StoreError> {
    let mut buf = vec![0u8; superblock.block_size as usize];
    let root = PageRef {
        block: superblock.root,
        crc: superblock.root_crc,
    };
    // Interior levels from the root down: each page's children.
    let mut interior: Vec<Vec<Listed>> = Vec::new();
    let mut current = vec![root];
    let mut level = None;
    loop {
        let mut below = Vec::new();
        let mut listed = Vec::with_capacity(current.len());
        for &page in &current {
            let (got, payload) = read_page(disk, superblock, space, page, level, &mut buf).await?;
            level = Some(got);
            let refs = parse_refs(payload).map_err(|e| corrupt("index page", page.block, e))?;
            // Only a page of level 1 lists nothing: the first (the root of
            // an empty store, or above an empty first leaf).
            if refs.is_empty() && (got > 1 || !listed.is_empty()) {
                return Err(corrupt(
                    "index page",
                    page.block,
                    FormatError::BadField("empty interior page"),
                ));
            }
            let start = below.len();
            below.extend(refs);
            listed.push(Listed {
                page,
                children: start..below.len(),
            });
        }
        interior.push(listed);
        current = below;
        match level {
            Some(1) => break,
            Some(above) => level = Some(above - 1),
            // Not reached: the root was read above.
            None => {
                return Err(corrupt(
                    "index root",
                    superblock.root,
                    FormatError::Truncated,
                ))
            }
        }
    }
    // The leaves: `current`, in order, with the page above each.
    let parent_of: Vec<usize> = interior
        .last()
        .map(|pages| {
            pages
                .iter()
                .enumerate()
                .flat_map(|(i, page)| page.children.clone().map(move |_| i))
                .collect()
        })
        .unwrap_or_default();
    let mut index: BTreeMap<String, Entry> = BTreeMap::new();
    let mut leaves: BTreeMap<String, Node> = BTreeMap::new();
    // The key of the leaf each leaf page belongs to.
    let mut leaf_keys: Vec<String> = Vec::with_capacity(current.len());
    let mut open_set: Option<PendingSet> = None;
    let mut ops = Vec::new();
    for (i, &page) in current.iter().enumerate() {
        let (_, payload) = read_page(disk, superblock, space, page, Some(0), &mut buf).await?;
        let damaged = |error| corrupt("index page", page.block, error);
        let records = parse_records(payload).map_err(damaged)?;
        let continues = match records.first() {
            None => return Err(damaged(FormatError::BadField("empty leaf"))),
            Some(Record::More(_)) => {
                if open_set.is_none() || i == 0 || parent_of[i] != parent_of[i - 1] {
                    return Err(damaged(FormatError::BadField("record order")));
                }
                true
            }
            Some(_) => false,
        };
        for record in records {
            if let Record::Remove(_) = record {
                return Err(damaged(FormatError::BadField("record tag")));
            }
            apply_record(record, page.block, &mut ops, &mut open_set, superblock)
                .map_err(damaged)?;
        }
        let key = if continues {
            leaf_keys[i - 1].clone()
        } else if i == 0 {
            String::new()
        } else {
            // A new leaf, named by its first key (applied below, or still
            // open when its value's extents go on in the next page).
            match (ops.first(), &open_set) {
                (Some((key, _)), _) => key.clone(),
                (None, Some(pending)) => pending.key.clone(),
                (None, None) => return Err(damaged(FormatError::BadField("empty leaf"))),
            }
        };
        for (key, entry) in ops.drain(..) {
            let Some(entry) = entry else {
                return Err(damaged(FormatError::BadField("record tag")));
            };
            if index.last_key_value().is_some_and(|(last, _)| *last >= key) {
                return Err(damaged(FormatError::BadField("key order")));
            }
            index.insert(key, entry);
        }
        leaves
            .entry(key.clone())
            .or_insert_with(|| Node {
                pages: Vec::new(),
                dirty: false,
            })
            .pages
            .push(page);
        leaf_keys.push(key);
    }
    if open_set.is_some() {
        let block = current.last().map_or(superblock.root, |page| page.block);
        return Err(corrupt("index page", block, FormatError::Truncated));
    }
    if leaves.is_empty() {
        leaves.insert(
            String::new(),
            Node {
                pages: Vec::new(),
                dirty: false,
            },
        );
    }
    let leaf_pages = current.len() as u64;
    // The levels above, from the leaves up: a node is named by the key of
    // its first child (the first of each level by the empty key).
    let mut levels = vec![leaves];
    let mut keys_below = leaf_keys;
    for listed in interior.iter().rev() {
        let mut level = BTreeMap::new();
        let mut keys: Vec<String> = Vec::with_capacity(listed.len());
        for (i, page) in listed.iter().enumerate() {
            let damaged =
                |what| corrupt("index page", page.page.block, FormatError::BadField(what));
            let key = if i == 0 {
                String::new()
            } else if page.children.is_empty() {
                return Err(damaged("empty interior page"));
            } else {
                keys_below[page.children.start].clone()
            };
            if keys.last().is_some_and(|last| *last >= key) {
                return Err(damaged("key order"));
            }
            keys.push(key.clone());
            level.insert(
                key,
                Node {
                    pages: vec![page.page],
                    dirty: false,
                },
            );
        }
        levels.push(level);
        keys_below = keys;
    }
    Ok((
        index,
        Tree {
            levels,
            dirty_leaves: 0,
            leaf_pages,
        },
    ))
}
