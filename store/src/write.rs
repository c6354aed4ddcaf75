//! Commits (sets, removes and batches) and checkpoints.
//!
//! A commit first claims blocks for its values and checks that, after it,
//! a checkpoint of the whole index would still fit; then writes the values
//! and appends its records to the log, the last block marked as a commit
//! and written together with the flush (`Block::write_and_flush`: one exit
//! on hvt's block ring); only then changes the index and frees the blocks
//! of the values it replaced. One flush, not one after the values and one
//! after the log, as a Redis `appendfsync always` write is one fsync: the
//! mount checks the values of the last commit of the log against their
//! checksums and drops that commit if any did not reach the disk (see
//! `mount.rs`), which is all a crash before the flush can leave.

use crate::disk::{Appender, Tail};
use crate::format::{
    checkpoint_blocks_for, crc32c, encode_inline, encode_remove, encode_set, inline_encoded_len,
    set_encoded_len, Extent, Superblock, INLINE_MAX, MAX_EXTENT_BLOCKS,
};
use crate::mount::checkpoint_need;
use crate::read::LogBlockCache;
use crate::{Entry, Inline, State, Store, StoreError};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::{Block, KvError};

/// Blocks kept free beyond a checkpoint's needs, so that removes (which
/// only free space) always have room for their log blocks.
const REMOVE_RESERVE: u64 = 2;

/// Log blocks written since the checkpoint before a new checkpoint is
/// considered (it is written once the log is also longer than the
/// checkpoint, so its cost is amortised).
const LOG_MIN_BLOCKS: u64 = 64;

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
            Err(KvError::NoSpace) if state.chain.len() as u64 > state.checkpoint_len => {
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
                    state.index.insert(key.clone(), entry)
                }
                None => state.index.remove(&key),
            };
            if let Some(old) = old {
                state.index_bytes -= old.encoded_len(key.len());
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
            || state.space.free() < checkpoint_need(index_bytes, block_size) + log_blocks + reserve
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

    /// Checkpoints if the log has grown past the checkpoint (and a minimum),
    /// or if space is short and the log has anything to compact.
    async fn maybe_checkpoint(&self, state: &mut State) {
        let checkpoint = state.checkpoint_len;
        let log = state.chain.len() as u64 - checkpoint;
        let short = state.space.free()
            < checkpoint_need(state.index_bytes, self.disk.block_size) + REMOVE_RESERVE;
        if log > checkpoint.max(LOG_MIN_BLOCKS) || (short && log > 0) {
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

    /// Writes the whole index as one commit at the start of a new log,
    /// switches the other superblock to it, then frees the old log.
    pub(crate) async fn write_checkpoint(&self, state: &mut State) -> Result<(), StoreError> {
        let block_size = self.disk.block_size;
        if state.space.free() < checkpoint_need(state.index_bytes, block_size) {
            return Err(StoreError::NoSpace);
        }
        // The log the cached blocks belong to is freed below.
        state.gets.clear();
        let generation = state.superblock.generation + 1;
        let volume = state.superblock.volume;
        let start = state.space.allocate(1).ok_or(StoreError::NoSpace)?.start;
        let after = state.space.allocate(1).ok_or(StoreError::NoSpace)?.start;
        let tail = Tail {
            block: start,
            after,
            seq: state.tail.seq,
            prev: Superblock::anchor_for(volume, generation, start, state.tail.seq),
        };
        let mut appender = Appender::new(tail, volume, block_size);
        // Inline values move into the new log as it is written: from here
        // on a failure leaves memory pointing at a log the superblock does
        // not name, so it poisons the store.
        state.poisoned = true;
        let State { index, space, .. } = &mut *state;
        let mut records = Vec::new();
        let mut source = LogBlockCache::default();
        for (key, entry) in index.iter_mut() {
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
            for record in &records {
                let (block, at) = appender.push(&self.disk, space, record).await?;
                if let Some(value_at) = value_at {
                    entry.inline = Some(Inline {
                        block,
                        offset: (at + value_at) as u32,
                    });
                }
            }
        }
        appender.commit(&self.disk, space).await?;
        let superblock = Superblock {
            generation,
            log_start: start,
            log_after: after,
            log_seq: tail.seq,
            anchor: tail.prev,
            checkpoint_blocks: appender.written.len() as u64,
            ..state.superblock
        };
        self.disk
            .write_superblock(generation % 2, |out| superblock.emit(out))
            .await?;
        let old_chain = core::mem::replace(&mut state.chain, appender.written);
        for block in old_chain
            .into_iter()
            .chain([state.tail.block, state.tail.after])
        {
            state.space.release(block..block + 1);
        }
        state.checkpoint_len = state.chain.len() as u64;
        state.tail = appender.tail;
        state.superblock = superblock;
        state.poisoned = false;
        Ok(())
    }
}
