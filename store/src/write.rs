//! Commits (sets, removes and batches) and checkpoints.
//!
//! A commit first claims blocks for its values and checks that, after it,
//! a checkpoint rewriting the whole index would still fit; then writes the
//! values and appends its records to the log, the last block marked as a commit
//! and written together with the flush (`Block::write_and_flush`: one exit
//! on hvt's block ring); only then changes the index and frees the blocks
//! of the values it replaced. One flush, not one after the values and one
//! after the log, as a Redis `appendfsync always` write is one fsync: the
//! mount checks the values of the last commit of the log against their
//! checksums and drops that commit if any did not reach the disk (see
//! `mount.rs`), which is all a crash before the flush can leave.

use crate::disk::{Appender, Disk, PageWriter, Tail};
use crate::format::{
    checkpoint_blocks_for, crc32c, encode_inline, encode_ref, encode_remove, encode_set,
    inline_encoded_len, set_encoded_len, Extent, FormatError, PageRef, Superblock, INLINE_MAX,
    LOG_HEADER, MAX_EXTENT_BLOCKS, PAGE_REF_LEN,
};
use crate::read::LogBlockCache;
use crate::space::Space;
use crate::tree::{Node, Tree};
use crate::{Entry, Inline, State, Store, StoreError};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Bound::{Excluded, Included, Unbounded};
use lamina_core::device::{Block, KvError};

/// Blocks kept free beyond a checkpoint's needs, so that removes (which
/// only free space) always have room for their log blocks.
const REMOVE_RESERVE: u64 = 2;

/// Log blocks written since the checkpoint that trigger the next one: the
/// most a mount replays.
const LOG_MAX_BLOCKS: u64 = 64;

/// Leaves dirtied since the checkpoint that trigger the next one: with
/// the log's bound, what one checkpoint rewrites (each leaf at most a
/// page or two, and the nodes above them).
const DIRTY_LEAVES_MAX: u64 = 64;

/// The most extents a value may have (128 MiB in 4 KiB blocks on a disk
/// so fragmented that no two free blocks are adjacent, 2 GiB in runs of
/// 64): its records then fill at most 137 leaf pages, which one interior
/// page lists.
pub(crate) const MAX_VALUE_EXTENTS: usize = 32 << 10;

impl<B: Block> Store<B> {
    /// Commits `ops` (a value to set, or `None` to remove) atomically.
    pub(crate) async fn apply(
        &self,
        state: &mut State,
        ops: BTreeMap<String, Option<&[u8]>>,
    ) -> Result<(), KvError> {
        if state.poisoned {
            return Err(KvError::Io);
        }
        let ops: Vec<(String, Option<&[u8]>)> = ops
            .into_iter()
            .filter(|(key, value)| value.is_some() || state.index.contains_key(key))
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let mut placed = match self.place(state, &ops) {
            Ok(placed) => placed,
            Err(KvError::NoSpace) if !state.chain.is_empty() => {
                // Compacting the log may free enough.
                self.checkpoint_locked(state).await?;
                self.place(state, &ops)?
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = self.write_values(&ops, &mut placed).await {
            placed
                .iter()
                .flatten()
                .for_each(|e| state.space.release(e.range()));
            return Err(e.into());
        }
        // From the first log write until the commit is whole, memory and
        // disk may disagree: a failure (or a dropped future) leaves the store
        // refusing work until it is mounted again.
        state.poisoned = true;
        let mut appender = Appender::new(state.tail, state.superblock.volume, self.disk.block_size);
        let mut records = Vec::new();
        let mut inline = vec![None; ops.len()];
        for (i, ((key, value), extents)) in ops.iter().zip(&placed).enumerate() {
            records.clear();
            let value_at = match value {
                Some(value) if value.len() <= INLINE_MAX => {
                    Some(encode_inline(key, value, &mut records))
                }
                Some(value) => {
                    encode_set(key, value.len() as u64, extents, &mut records);
                    None
                }
                None => {
                    encode_remove(key, &mut records);
                    None
                }
            };
            for record in &records {
                let (block, at) = appender.push(&self.disk, &mut state.space, record).await?;
                inline[i] = value_at.map(|value_at| Inline {
                    block,
                    offset: (at + value_at) as u32,
                });
            }
        }
        appender.commit(&self.disk, &mut state.space).await?;
        state.poisoned = false;
        state.tail = appender.tail;
        state.chain.extend_from_slice(&appender.written);
        for (((key, value), extents), inline) in ops.into_iter().zip(placed).zip(inline) {
            let old = match value {
                Some(value) => {
                    let entry = Entry {
                        size: value.len() as u64,
                        extents,
                        inline,
                    };
                    state.index_bytes += entry.encoded_len(key.len());
                    // The value just written is what a get would read back.
                    state.values.insert(&entry, value);
                    state.index.insert(key.clone(), entry)
                }
                None => state.index.remove(&key),
            };
            state.tree.mark(&key);
            if let Some(old) = old {
                state.index_bytes -= old.encoded_len(key.len());
                // Forgotten before its blocks are free to be claimed again.
                if let Some(first) = old.extents.first() {
                    state.values.forget(first.start);
                }
                old.extents
                    .iter()
                    .for_each(|e| state.space.release(e.range()));
            }
        }
        self.maybe_checkpoint(state).await;
        Ok(())
    }

    /// Claims blocks for every value and checks the room left after.
    fn place(
        &self,
        state: &mut State,
        ops: &[(String, Option<&[u8]>)],
    ) -> Result<Vec<Vec<Extent>>, KvError> {
        let block_size = self.disk.block_size;
        let mut placed: Vec<Vec<Extent>> = Vec::with_capacity(ops.len());
        let mut index_bytes = state.index_bytes;
        let mut record_bytes = 0;
        let mut sets = false;
        let mut failed = false;
        for (key, value) in ops {
            if let Some(old) = state.index.get(key) {
                index_bytes -= old.encoded_len(key.len());
            }
            let Some(value) = value else {
                record_bytes += 3 + key.len() as u64;
                placed.push(Vec::new());
                continue;
            };
            sets = true;
            if value.len() <= INLINE_MAX {
                let bytes = inline_encoded_len(key.len(), value.len());
                index_bytes += bytes;
                record_bytes += bytes;
                placed.push(Vec::new());
                continue;
            }
            let mut extents = Vec::new();
            let mut blocks = (value.len() as u64).div_ceil(u64::from(block_size));
            while blocks > 0 {
                let want = blocks.min(u64::from(MAX_EXTENT_BLOCKS)) as u32;
                let Some(run) = state.space.allocate(want) else {
                    failed = true;
                    break;
                };
                let len = run.end - run.start;
                if extents.len() == MAX_VALUE_EXTENTS {
                    state.space.release(run);
                    failed = true;
                    break;
                }
                extents.push(Extent {
                    start: run.start,
                    blocks: len as u32,
                    crc: 0,
                });
                blocks -= len;
            }
            let bytes = set_encoded_len(key.len(), extents.len());
            index_bytes += bytes;
            record_bytes += bytes;
            placed.push(extents);
            if failed {
                break;
            }
        }
        let log_blocks = checkpoint_blocks_for(record_bytes, block_size);
        let reserve = if sets { REMOVE_RESERVE } else { 0 };
        if failed
            || state.space.free()
                < checkpoint_need(&state.tree, index_bytes, block_size) + log_blocks + reserve
        {
            placed
                .iter()
                .flatten()
                .for_each(|e| state.space.release(e.range()));
            return Err(KvError::NoSpace);
        }
        Ok(placed)
    }

    /// Writes each value into its extents, filling in their checksums (the
    /// commit's flush makes them durable with its records).
    async fn write_values(
        &self,
        ops: &[(String, Option<&[u8]>)],
        placed: &mut [Vec<Extent>],
    ) -> Result<(), StoreError> {
        let block_size = self.disk.block_size as usize;
        let mut last_block = Vec::new();
        for ((_, value), extents) in ops.iter().zip(placed.iter_mut()) {
            let Some(value) = value.filter(|v| v.len() > INLINE_MAX) else {
                continue;
            };
            let mut offset = 0;
            for extent in extents.iter_mut() {
                let len = (extent.blocks as usize * block_size).min(value.len() - offset);
                let part = &value[offset..offset + len];
                extent.crc = crc32c(part);
                let whole = len / block_size * block_size;
                if whole > 0 {
                    self.disk.write(extent.start, &part[..whole]).await?;
                }
                if whole < len {
                    // Only a value's last block is copied, to pad it.
                    last_block.resize(block_size, 0);
                    last_block.fill(0);
                    last_block[..len - whole].copy_from_slice(&part[whole..]);
                    let block = extent.start + (whole / block_size) as u64;
                    self.disk.write(block, &last_block).await?;
                }
                offset += len;
            }
        }
        Ok(())
    }

    /// Checkpoints once the log or the leaves it dirtied reach their
    /// bound (so a checkpoint's cost, and a mount's replay, stay bounded
    /// whatever the store's size), or if space is short and the log has
    /// anything to compact.
    async fn maybe_checkpoint(&self, state: &mut State) {
        let log = state.chain.len() as u64;
        let short = state.space.free()
            < checkpoint_need(&state.tree, state.index_bytes, self.disk.block_size)
                + REMOVE_RESERVE;
        if log >= LOG_MAX_BLOCKS
            || state.tree.dirty_leaves >= DIRTY_LEAVES_MAX
            || (short && log > 0)
        {
            // The commit is durable whatever happens here; a failure
            // poisons the store and the next operation reports it.
            if let Err(e) = self.checkpoint_locked(state).await {
                log::warn!("store: checkpoint failed: {e}");
            }
        }
    }

    /// Writes a checkpoint (see [`Store::checkpoint`]) with the lock held.
    pub(crate) async fn checkpoint_locked(&self, state: &mut State) -> Result<(), StoreError> {
        let result = self.write_checkpoint(state).await;
        if let Err(e) = result {
            if e != StoreError::NoSpace {
                state.poisoned = true;
            }
        }
        result
    }

    /// Rewrites the dirty leaves of the index tree and the nodes above
    /// them up to the root, flushes, switches the other superblock to the
    /// new root and an empty log, then frees the old log and the pages
    /// replaced.
    pub(crate) async fn write_checkpoint(&self, state: &mut State) -> Result<(), StoreError> {
        let block_size = self.disk.block_size;
        if state.space.free() < checkpoint_need(&state.tree, state.index_bytes, block_size) {
            return Err(StoreError::NoSpace);
        }
        // The log and pages the cached blocks belong to may be freed below.
        state.gets.clear();
        let generation = state.superblock.generation + 1;
        let volume = state.superblock.volume;
        // Inline values move into new leaves as they are written: from here
        // on a failure leaves memory pointing at pages the superblock does
        // not name, so it poisons the store.
        state.poisoned = true;
        let mut pages = PageWriter::new(volume, generation, block_size);
        let mut freed = Vec::new();
        let mut changed = self.write_leaves(state, &mut pages, &mut freed).await?;
        let State { space, tree, .. } = &mut *state;
        let mut level = 0;
        loop {
            if level + 1 == tree.levels.len() {
                if tree.levels[level].len() == 1 {
                    break;
                }
                // The root split: a new root above.
                let mut top = BTreeMap::new();
                top.insert(
                    String::new(),
                    Node {
                        pages: Vec::new(),
                        dirty: true,
                    },
                );
                tree.levels.push(top);
            }
            for key in &changed {
                tree.mark_at(level + 1, key);
            }
            level += 1;
            changed =
                write_interior(&self.disk, level, space, tree, &mut pages, &mut freed).await?;
        }
        pages.finish(&self.disk).await?;
        let root = tree.root().ok_or(StoreError::Corrupt {
            what: "index root",
            block: 0,
            error: FormatError::BadField("root"),
        })?;
        let start = space.allocate(1).ok_or(StoreError::NoSpace)?.start;
        let after = space.allocate(1).ok_or(StoreError::NoSpace)?.start;
        let seq = state.tail.seq;
        let superblock = Superblock {
            generation,
            log_start: start,
            log_after: after,
            log_seq: seq,
            anchor: Superblock::anchor_for(volume, generation, start, seq),
            root: root.block,
            root_crc: root.crc,
            ..state.superblock
        };
        self.disk
            .write_superblock(generation % 2, |out| superblock.emit(out))
            .await?;
        let old_chain = core::mem::take(&mut state.chain);
        for block in old_chain
            .into_iter()
            .chain([state.tail.block, state.tail.after])
            .chain(freed)
        {
            state.space.release(block..block + 1);
        }
        state.tree.dirty_leaves = 0;
        state.tail = Tail {
            block: start,
            after,
            seq,
            prev: superblock.anchor,
        };
        state.superblock = superblock;
        state.poisoned = false;
        Ok(())
    }

    /// Rewrites each dirty leaf from the index: its keys' records packed
    /// into pages, a new leaf begun where a page is three quarters full
    /// (or the next key's first record does not fit), so leaves split as
    /// they grow; a leaf left empty is dropped (its keys' range joins the
    /// leaf before), and small ones are joined first
    /// ([`join_small_leaves`]). Returns the keys of the leaves changed, added or
    /// dropped, whose parents are rewritten next.
    async fn write_leaves(
        &self,
        state: &mut State,
        pages: &mut PageWriter,
        freed: &mut Vec<u64>,
    ) -> Result<Vec<String>, StoreError> {
        let State {
            index, space, tree, ..
        } = &mut *state;
        let capacity = self.disk.block_size as usize - LOG_HEADER;
        let target = capacity * 3 / 4;
        let joined = join_small_leaves(tree, index, capacity as u64 / 2, freed);
        let dirty: Vec<String> = tree.levels[0]
            .iter()
            .filter(|(_, node)| node.dirty)
            .map(|(key, _)| key.clone())
            .collect();
        // The parents of the leaves joined into others list them no more.
        let mut changed = joined;
        let mut records = Vec::new();
        let mut source = LogBlockCache::default();
        let mut payload = Vec::with_capacity(capacity);
        for first in dirty {
            let Some(node) = tree.levels[0].remove(&first) else {
                continue;
            };
            tree.leaf_pages -= node.pages.len() as u64;
            freed.extend(node.pages.iter().map(|page| page.block));
            let end = tree.next_node_key(0, &first);
            let range = (
                Included(first.as_str()),
                end.as_deref().map_or(Unbounded, Excluded),
            );
            let mut nodes: Vec<(String, Vec<PageRef>)> = vec![(first.clone(), Vec::new())];
            let mut block = None;
            payload.clear();
            for (key, entry) in index.range_mut::<str, _>(range) {
                records.clear();
                let value_at = match entry.inline {
                    Some(inline) => {
                        let value = self.read_inline(inline, entry.size, &mut source).await?;
                        Some(encode_inline(key, value, &mut records))
                    }
                    None => {
                        encode_set(key, entry.size, &entry.extents, &mut records);
                        None
                    }
                };
                for (i, record) in records.iter().enumerate() {
                    let full = payload.len() + record.len() > capacity;
                    if full || (i == 0 && payload.len() >= target) {
                        let at = block.take().ok_or(StoreError::NoSpace)?;
                        let page = pages.write(&self.disk, at, 0, &payload).await?;
                        payload.clear();
                        if let Some((_, node_pages)) = nodes.last_mut() {
                            node_pages.push(page);
                        }
                        if i == 0 {
                            nodes.push((key.clone(), Vec::new()));
                        }
                    }
                    let at = match block {
                        Some(at) => at,
                        None => {
                            let at = space.allocate(1).ok_or(StoreError::NoSpace)?.start;
                            block = Some(at);
                            at
                        }
                    };
                    if let (0, Some(value_at)) = (i, value_at) {
                        entry.inline = Some(Inline {
                            block: at,
                            offset: (LOG_HEADER + payload.len() + value_at) as u32,
                        });
                    }
                    payload.extend_from_slice(record);
                }
            }
            if let Some(at) = block {
                let page = pages.write(&self.disk, at, 0, &payload).await?;
                if let Some((_, node_pages)) = nodes.last_mut() {
                    node_pages.push(page);
                }
            }
            changed.push(first);
            for (key, node_pages) in nodes {
                // Only the first node can be empty; the first leaf of all
                // stays, empty, so that every key has a leaf.
                if node_pages.is_empty() && !key.is_empty() {
                    continue;
                }
                tree.leaf_pages += node_pages.len() as u64;
                changed.push(key.clone());
                tree.levels[0].insert(
                    key,
                    Node {
                        pages: node_pages,
                        dirty: false,
                    },
                );
            }
        }
        Ok(changed)
    }
}

/// Joins each dirty leaf to its neighbours under the same parent where
/// their records together take at most `half` a page's payload: first to
/// the leaf before (which takes its keys and becomes dirty), then the
/// leaves after, one by one, to whichever took its keys. Random removes
/// leave leaves nearly empty, each a page until this joins them; half a
/// page (not the three quarters a leaf splits at) keeps the two halves of
/// a leaf that has just split from being joined again at once. A joined
/// leaf's node is dropped and its pages freed with the checkpoint's
/// others (after the new superblock is durable, like every page
/// replaced); returns the keys of the nodes dropped, whose parent is
/// rewritten. Only clean neighbours of dirty leaves are read into the
/// rewrite, so a checkpoint's cost still follows what changed.
fn join_small_leaves(
    tree: &mut Tree,
    index: &BTreeMap<String, Entry>,
    half: u64,
    freed: &mut Vec<u64>,
) -> Vec<String> {
    let dirty: Vec<String> = tree.levels[0]
        .iter()
        .filter(|(_, node)| node.dirty)
        .map(|(key, _)| key.clone())
        .collect();
    let mut dropped = Vec::new();
    for first in dirty {
        if !tree.levels[0].contains_key(&first) {
            continue; // joined to a dirty leaf before it
        }
        let mut host = first;
        let before = tree.levels[0]
            .range::<str, _>((Unbounded, Excluded(host.as_str())))
            .next_back()
            .map(|(key, _)| key.clone());
        if let Some(before) = before {
            if same_parent(tree, &before, &host)
                && leaf_bytes(tree, index, &before) + leaf_bytes(tree, index, &host) <= half
            {
                drop_leaf(tree, &host, freed);
                dropped.push(core::mem::replace(&mut host, before));
                tree.mark(&host);
            }
        }
        while let Some(next) = tree.next_node_key(0, &host) {
            if !same_parent(tree, &host, &next)
                || leaf_bytes(tree, index, &host) + leaf_bytes(tree, index, &next) > half
            {
                break;
            }
            drop_leaf(tree, &next, freed);
            dropped.push(next);
        }
    }
    dropped
}

/// Whether leaves `a` and `b` are listed by the same page above.
fn same_parent(tree: &Tree, a: &str, b: &str) -> bool {
    let parent = |key: &str| {
        tree.levels[1]
            .range::<str, _>((Unbounded, Included(key)))
            .next_back()
            .map(|(key, _)| key)
    };
    parent(a) == parent(b)
}

/// Bytes the records of the leaf starting at `first` take.
fn leaf_bytes(tree: &Tree, index: &BTreeMap<String, Entry>, first: &str) -> u64 {
    let end = tree.next_node_key(0, first);
    let range = (Included(first), end.as_deref().map_or(Unbounded, Excluded));
    index
        .range::<str, _>(range)
        .map(|(key, entry)| entry.encoded_len(key.len()))
        .sum()
}

/// Drops the leaf starting at `first` from the tree (its keys join the
/// leaf before); its pages are freed with the checkpoint's.
fn drop_leaf(tree: &mut Tree, first: &str, freed: &mut Vec<u64>) {
    if let Some(node) = tree.levels[0].remove(first) {
        tree.leaf_pages -= node.pages.len() as u64;
        freed.extend(node.pages.iter().map(|page| page.block));
    }
}

/// Rewrites the dirty nodes of `level` (above the leaves): each lists the
/// pages of the nodes below in its range, split into several nodes where
/// they do not fit one page, dropped where there are none. Returns the keys
/// of the nodes changed, added or dropped.
async fn write_interior<B: Block>(
    disk: &Disk<B>,
    level: usize,
    space: &mut Space,
    tree: &mut Tree,
    pages: &mut PageWriter,
    freed: &mut Vec<u64>,
) -> Result<Vec<String>, StoreError> {
    let fanout = (disk.block_size as usize - LOG_HEADER) / PAGE_REF_LEN;
    let dirty: Vec<String> = tree.levels[level]
        .iter()
        .filter(|(_, node)| node.dirty)
        .map(|(key, _)| key.clone())
        .collect();
    let mut changed = Vec::new();
    let mut payload = Vec::new();
    for first in dirty {
        let Some(node) = tree.levels[level].remove(&first) else {
            continue;
        };
        freed.extend(node.pages.iter().map(|page| page.block));
        let end = tree.next_node_key(level, &first);
        let range = (
            Included(first.as_str()),
            end.as_deref().map_or(Unbounded, Excluded),
        );
        let mut groups: Vec<(String, Vec<PageRef>)> = vec![(first.clone(), Vec::new())];
        for (key, child) in tree.levels[level - 1].range::<str, _>(range) {
            if let Some((_, refs)) = groups.last() {
                if !refs.is_empty() && refs.len() + child.pages.len() > fanout {
                    groups.push((key.clone(), Vec::new()));
                }
            }
            if let Some((_, refs)) = groups.last_mut() {
                refs.extend_from_slice(&child.pages);
            }
        }
        changed.push(first);
        for (key, refs) in groups {
            if refs.is_empty() && !key.is_empty() {
                continue;
            }
            if refs.len() > fanout {
                // A value whose extents are limited (MAX_VALUE_EXTENTS)
                // never needs this many leaf pages.
                return Err(StoreError::NoSpace);
            }
            payload.clear();
            refs.iter().for_each(|r| encode_ref(r, &mut payload));
            let at = space.allocate(1).ok_or(StoreError::NoSpace)?.start;
            let page = pages.write(disk, at, level as u32, &payload).await?;
            changed.push(key.clone());
            tree.levels[level].insert(
                key,
                Node {
                    pages: vec![page],
                    dirty: false,
                },
            );
        }
    }
    Ok(changed)
}

/// Blocks a checkpoint may take at most (its pages and the new log's two
/// reserved blocks), however much of the tree is dirty. A leaf's pages but
/// its last are at least half full (no record is over half a page), so
/// the leaves take at most two pages per page of records plus one each.
/// A level above writes at most its nodes plus one per split, and a split
/// leaves at least half a page of references behind (no node below has
/// more pages than half an interior page lists); a root that splits adds
/// levels.
pub(crate) fn checkpoint_need(tree: &Tree, index_bytes: u64, block_size: u32) -> u64 {
    let payload = (block_size as usize - LOG_HEADER) as u64;
    let fanout = payload / PAGE_REF_LEN as u64;
    let leaves = 2 * index_bytes / payload + tree.levels[0].len() as u64;
    let mut need = leaves + 2;
    let mut below = tree.leaf_pages + leaves;
    for nodes in tree.levels[1..].iter().map(|level| level.len() as u64) {
        let splits = 2 * below / fanout;
        need += nodes + splits;
        below = nodes + splits;
    }
    while below > 1 {
        let splits = 2 * below / fanout;
        need += 1 + splits;
        below = 1 + splits;
    }
    need
}
