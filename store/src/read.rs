//! Reading values back, every extent checked against its checksum.

use crate::format::{crc32c, parse_log_block, FormatError, LOG_HEADER};
use crate::{Entry, Inline, Store, StoreError};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::{Block, KvError};

/// The last log block read for its inline values, already checked: a
/// checkpoint reads many values from each block.
#[derive(Default)]
pub(crate) struct LogBlockCache {
    block: Option<u64>,
    data: Vec<u8>,
    payload_end: usize,
}

impl<B: Block> Store<B> {
    /// The whole value of `entry`, read straight into the result (which is
    /// at most one block longer than the value while it is read).
    pub(crate) async fn read_value(&self, entry: &Entry) -> Result<Vec<u8>, KvError> {
        if let Some(inline) = entry.inline {
            let mut block = LogBlockCache::default();
            return Ok(self
                .read_inline(inline, entry.size, &mut block)
                .await?
                .to_vec());
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
    ) -> Result<Vec<u8>, KvError> {
        if let Some(inline) = entry.inline {
            let mut block = LogBlockCache::default();
            let value = self.read_inline(inline, entry.size, &mut block).await?;
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
            what: "log block holding a value",
            block: inline.block,
            error,
        };
        if cache.block != Some(inline.block) {
            cache.block = None;
            cache.data.resize(self.disk.block_size as usize, 0);
            self.disk.read(inline.block, &mut cache.data).await?;
            let (header, _, _) = parse_log_block(&cache.data).map_err(damaged)?;
            cache.payload_end = LOG_HEADER + header.payload_len as usize;
            cache.block = Some(inline.block);
        }
        let start = inline.offset as usize;
        let end = start + size as usize;
        if end > cache.payload_end {
            return Err(damaged(FormatError::Truncated));
        }
        Ok(&cache.data[start..end])
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
                let result = self.read_range(entry, extent_start, len as usize).await;
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
