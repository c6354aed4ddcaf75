//! Reading values back, every extent checked against its checksum.

use crate::format::{crc32c, payload_end, FormatError};
use crate::{Entry, Inline, Store, StoreError};
use alloc::collections::VecDeque;
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

impl<B: Block> Store<B> {
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
