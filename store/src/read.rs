//! Reading values back, every extent checked against its checksum.

use crate::format::{crc32c, payload_end, FormatError};
use crate::{Entry, Inline, Store, StoreError};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::{Block, KvError};

/// Log blocks and leaf pages read for their inline values, already
/// checked, the most recently used first: a checkpoint reads many values
/// from each block (one block kept), and gets of small values find theirs
/// in memory (the store keeps [`LogBlockCache::for_gets`]).
///
/// Only blocks of the current log and index are ever held, and those are
/// written once and not changed until a checkpoint frees them: the store
/// empties its cache when it writes a checkpoint.
pub(crate) struct LogBlockCache {
    /// (block, its bytes, where its payload ends).
    blocks: VecDeque<(u64, Vec<u8>, usize)>,
    capacity: usize,
}

/// Bytes of log blocks the store keeps for gets of inline values: 64
/// blocks of 4 KiB, which hold about 2,000 values of 100 bytes.
pub(crate) const GET_CACHE_BYTES: usize = 256 << 10;

impl Default for LogBlockCache {
    /// Holds one block.
    fn default() -> Self {
        LogBlockCache {
            blocks: VecDeque::new(),
            capacity: 1,
        }
    }
}

impl LogBlockCache {
    /// The store's cache for gets: [`GET_CACHE_BYTES`] of `block_size`
    /// blocks (at least one).
    pub fn for_gets(block_size: u32) -> Self {
        LogBlockCache {
            blocks: VecDeque::new(),
            capacity: (GET_CACHE_BYTES / block_size as usize).max(1),
        }
    }

    /// Forgets every block (their blocks are about to be freed).
    pub fn clear(&mut self) {
        self.blocks.clear();
    }
}

/// Whole values over [`INLINE_MAX`](crate::format::INLINE_MAX) bytes that
/// commits wrote or gets read lately (checked when read), so that a get
/// of such a value costs no block read and no checksum pass (as Redis
/// answers from memory). Its size is the application's choice
/// ([`Store::set_value_cache`]); none by default. Damage done on the disk
/// to a value held shows at its next read from the disk, as for the log
/// blocks [`LogBlockCache`] holds.
///
/// A value is held under the first block of its first extent, with that
/// extent's checksum and the value's size, and found only if the key's
/// entry still names the same block, checksum and size. Extents are
/// written once and never changed while allocated; a commit that replaces
/// or removes a value frees its extents and forgets the value here first
/// ([`ValueCache::forget`]), so a freed block that is used again never
/// answers for what it held. Checkpoints do not move extents.
///
/// Memory: the values held, at most its capacity, plus
/// about 140 bytes of bookkeeping per value. A value bigger than a
/// sixteenth of the capacity is not held (one big get would empty it).
/// Eviction is the clock's second chance: a value got again since the hand
/// last passed stays for another turn.
#[derive(Default)]
pub(crate) struct ValueCache {
    /// By first block.
    values: BTreeMap<u64, CachedValue>,
    /// Every value in `values` once, with the stamp it was added with,
    /// oldest first, and entries of values since forgotten or replaced
    /// (a stamp that differs), dropped as the hand meets them.
    clock: VecDeque<(u64, u64)>,
    bytes: usize,
    capacity: usize,
    stamp: u64,
    /// Gets answered from here.
    pub hits: u64,
    /// Gets of values over the inline limit that were not (with a
    /// capacity).
    pub misses: u64,
}

struct CachedValue {
    crc: u32,
    value: Vec<u8>,
    stamp: u64,
    /// Got since the clock's hand last passed it.
    referenced: bool,
}

impl ValueCache {
    /// Holds up to `capacity` bytes of values from now on (dropping what
    /// no longer fits).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.bytes > self.capacity && self.evict_one() {}
    }

    /// Bytes of values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The value of `entry` if it is held (and counts the get).
    fn get(&mut self, entry: &Entry) -> Option<&[u8]> {
        let first = entry.extents.first()?;
        match self.values.get_mut(&first.start) {
            Some(cached) if cached.crc == first.crc && cached.value.len() as u64 == entry.size => {
                cached.referenced = true;
                self.hits += 1;
                Some(&cached.value)
            }
            _ => {
                self.misses += 1;
                None
            }
        }
    }

    /// Holds `value`, the value of `entry` as read and checked or as just
    /// written and flushed, if it is small enough.
    pub fn insert(&mut self, entry: &Entry, value: &[u8]) {
        let Some(first) = entry.extents.first() else {
            return;
        };
        if value.len() > self.capacity / 16 {
            return;
        }
        self.forget(first.start);
        while self.bytes + value.len() > self.capacity && self.evict_one() {}
        self.stamp += 1;
        self.values.insert(
            first.start,
            CachedValue {
                crc: first.crc,
                value: value.to_vec(),
                stamp: self.stamp,
                referenced: false,
            },
        );
        self.clock.push_back((first.start, self.stamp));
        self.bytes += value.len();
        // Entries of forgotten values pile up when values are replaced
        // faster than the cache fills: keep the clock at most twice the
        // values held.
        if self.clock.len() > 2 * self.values.len() + 16 {
            let values = &self.values;
            self.clock
                .retain(|(block, stamp)| values.get(block).is_some_and(|v| v.stamp == *stamp));
        }
    }

    /// Drops the value whose first extent starts at `block` (its extents
    /// are about to be freed).
    pub fn forget(&mut self, block: u64) {
        if let Some(old) = self.values.remove(&block) {
            self.bytes -= old.value.len();
        }
    }

    /// Drops the value the hand reaches first that was not got since it
    /// last passed; false if none is held.
    fn evict_one(&mut self) -> bool {
        while let Some((block, stamp)) = self.clock.pop_front() {
            let Some(cached) = self.values.get_mut(&block).filter(|v| v.stamp == stamp) else {
                continue; // forgotten or replaced since
            };
            if cached.referenced {
                cached.referenced = false;
                self.clock.push_back((block, stamp));
                continue;
            }
            let len = cached.value.len();
            self.values.remove(&block);
            self.bytes -= len;
            return true;
        }
        false
    }
}

impl<B: Block> Store<B> {
    /// The value of `entry`, from `values` if held there, else read (and
    /// held there if it fits).
    pub(crate) async fn get_value(
        &self,
        entry: &Entry,
        blocks: &mut LogBlockCache,
        values: &mut ValueCache,
    ) -> Result<Vec<u8>, KvError> {
        if entry.inline.is_some() || values.capacity == 0 {
            return self.read_value(entry, blocks).await;
        }
        if let Some(value) = values.get(entry) {
            return Ok(value.to_vec());
        }
        let value = self.read_value(entry, blocks).await?;
        values.insert(entry, &value);
        Ok(value)
    }

    /// Up to `len` bytes of the value of `entry` from `offset`: from
    /// `values` if held there, else read (not held: ranges are for values
    /// too big to hold whole).
    pub(crate) async fn get_range_of(
        &self,
        entry: &Entry,
        offset: u64,
        len: usize,
        blocks: &mut LogBlockCache,
        values: &mut ValueCache,
    ) -> Result<Vec<u8>, KvError> {
        if entry.inline.is_none() && values.capacity > 0 {
            if let Some(value) = values.get(entry) {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(value.len());
                let end = start.saturating_add(len).min(value.len());
                return Ok(value[start..end].to_vec());
            }
        }
        self.read_range(entry, offset, len, blocks).await
    }

    /// The whole value of `entry`, read straight into the result (which is
    /// at most one block longer than the value while it is read).
    pub(crate) async fn read_value(
        &self,
        entry: &Entry,
        cache: &mut LogBlockCache,
    ) -> Result<Vec<u8>, KvError> {
        if let Some(inline) = entry.inline {
            return Ok(self.read_inline(inline, entry.size, cache).await?.to_vec());
        }
        let block_size = self.disk.block_size as u64;
        let size = usize::try_from(entry.size).map_err(|_| KvError::Io)?;
        let mut value = vec![0u8; size.next_multiple_of(block_size as usize)];
        let mut offset = 0;
        for extent in &entry.extents {
            let room = (u64::from(extent.blocks) * block_size) as usize;
            let len = room.min(size - offset);
            self.disk
                .read(extent.start, &mut value[offset..offset + room])
                .await
                .map_err(KvError::from)?;
            if crc32c(&value[offset..offset + len]) != extent.crc {
                log::warn!(
                    "store: checksum mismatch in the extent at block {}",
                    extent.start
                );
                return Err(KvError::Io);
            }
            offset += len;
        }
        value.truncate(size);
        Ok(value)
    }

    /// Up to `len` bytes of the value of `entry` from `offset`: only the
    /// extents the range touches are read, each checked whole.
    pub(crate) async fn read_range(
        &self,
        entry: &Entry,
        offset: u64,
        len: usize,
        cache: &mut LogBlockCache,
    ) -> Result<Vec<u8>, KvError> {
        if let Some(inline) = entry.inline {
            let value = self.read_inline(inline, entry.size, cache).await?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(value.len());
            let end = start.saturating_add(len).min(value.len());
            return Ok(value[start..end].to_vec());
        }
        let block_size = self.disk.block_size as u64;
        let end = offset.saturating_add(len as u64).min(entry.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut buf = Vec::new();
        let mut extent_start = 0u64;
        for extent in &entry.extents {
            let room = u64::from(extent.blocks) * block_size;
            let extent_end = (extent_start + room).min(entry.size);
            if extent_end > offset && extent_start < end {
                buf.resize(room as usize, 0);
                self.disk
                    .read(extent.start, &mut buf)
                    .await
                    .map_err(KvError::from)?;
                let bytes = &buf[..(extent_end - extent_start) as usize];
                if crc32c(bytes) != extent.crc {
                    log::warn!(
                        "store: checksum mismatch in the extent at block {}",
                        extent.start
                    );
                    return Err(KvError::Io);
                }
                let from = offset.max(extent_start) - extent_start;
                let to = end.min(extent_end) - extent_start;
                out.extend_from_slice(&bytes[from as usize..to as usize]);
            }
            extent_start = extent_end;
            if extent_start >= end {
                break;
            }
        }
        Ok(out)
    }

    /// The value held inside a log block, read into `cache` (unless it
    /// holds that block already) and checked against the block's checksum.
    pub(crate) async fn read_inline<'b>(
        &self,
        inline: Inline,
        size: u64,
        cache: &'b mut LogBlockCache,
    ) -> Result<&'b [u8], StoreError> {
        let damaged = |error| StoreError::Corrupt {
            what: "log block or index page holding a value",
            block: inline.block,
            error,
        };
        match cache
            .blocks
            .iter()
            .position(|(block, ..)| *block == inline.block)
        {
            Some(0) => {}
            Some(at) => {
                let hit = cache.blocks.remove(at).expect("position is in range");
                cache.blocks.push_front(hit);
            }
            None => {
                // The least recently used block's buffer, or a new one.
                let mut data = if cache.blocks.len() >= cache.capacity {
                    cache.blocks.pop_back().map(|(_, data, _)| data)
                } else {
                    None
                }
                .unwrap_or_default();
                data.resize(self.disk.block_size as usize, 0);
                self.disk.read(inline.block, &mut data).await?;
                let end = payload_end(&data).map_err(damaged)?;
                cache.blocks.push_front((inline.block, data, end));
            }
        }
        let (_, data, payload_end) = &cache.blocks[0];
        let start = inline.offset as usize;
        let end = start + size as usize;
        if end > *payload_end {
            return Err(damaged(FormatError::Truncated));
        }
        Ok(&data[start..end])
    }

    /// Reads every value and checks its checksums (what `fsck` does after
    /// mounting); returns the keys whose values are damaged or unreadable.
    pub async fn verify(&self) -> Vec<(String, KvError)> {
        let state = self.state.lock().await;
        let mut bad = Vec::new();
        for (key, entry) in &state.index {
            if let Some(inline) = entry.inline {
                let mut block = LogBlockCache::default();
                if let Err(e) = self.read_inline(inline, entry.size, &mut block).await {
                    log::warn!("store: {key}: {e}");
                    bad.push((key.clone(), KvError::Io));
                }
                continue;
            }
            let mut extent_start = 0;
            // One extent at a time: memory stays at 256 KiB whatever the size.
            for extent in &entry.extents {
                let room = u64::from(extent.blocks) * u64::from(self.disk.block_size);
                let len = room.min(entry.size - extent_start);
                let result = self
                    .read_range(
                        entry,
                        extent_start,
                        len as usize,
                        &mut LogBlockCache::default(),
                    )
                    .await;
                extent_start += len;
                if let Err(e) = result {
                    bad.push((key.clone(), e));
                    break;
                }
            }
        }
        bad
    }
}
