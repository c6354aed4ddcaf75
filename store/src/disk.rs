//! Block-level I/O in store blocks, and appending to the log.

use crate::format::{
    emit_log_block, emit_page, LogHeader, PageHeader, PageRef, FLAG_COMMIT, LOG_HEADER,
    SUPERBLOCK_LEN,
};
use crate::space::Space;
use crate::StoreError;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::Block;

/// A block device addressed in store blocks.
pub(crate) struct Disk<B> {
    pub device: B,
    pub block_size: u32,
    sectors_per_block: u64,
    sector_size: u32,
}

impl<B: Block> Disk<B> {
    pub fn new(device: B, block_size: u32) -> Self {
        let sector_size = device.info().sector_size;
        Disk {
            device,
            block_size,
            sectors_per_block: u64::from(block_size / sector_size),
            sector_size,
        }
    }

    /// Reads whole blocks from `block` on into `buf`.
    pub async fn read(&self, block: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let sector = block * self.sectors_per_block;
        self.device.read(sector, buf).await.map_err(StoreError::Io)
    }

    /// Writes whole blocks from `block` on.
    pub async fn write(&self, block: u64, buf: &[u8]) -> Result<(), StoreError> {
        let sector = block * self.sectors_per_block;
        self.device.write(sector, buf).await.map_err(StoreError::Io)
    }

    /// Writes whole blocks from `block` on, then flushes: this write and
    /// everything written before are durable after (one round trip where
    /// the device allows: [`Block::write_and_flush`]).
    pub async fn write_and_flush(&self, block: u64, buf: &[u8]) -> Result<(), StoreError> {
        let sector = block * self.sectors_per_block;
        self.device
            .write_and_flush(sector, buf)
            .await
            .map_err(StoreError::Io)
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.device.flush().await.map_err(StoreError::Io)
    }

    /// Reads the first sector of superblock slot `slot` (0 or 1).
    pub async fn read_superblock(&self, slot: u64) -> Result<Vec<u8>, StoreError> {
        let mut sector = vec![0u8; self.sector_size as usize];
        self.device
            .read(slot * self.sectors_per_block, &mut sector)
            .await
            .map_err(StoreError::Io)?;
        Ok(sector)
    }

    /// Writes superblock `bytes` (at most [`SUPERBLOCK_LEN`] used) to slot
    /// `slot` as a single sector, then flushes: devices write one sector
    /// atomically, so a superblock is either old or new after a crash,
    /// never torn, and it is durable when this returns.
    pub async fn write_superblock(
        &self,
        slot: u64,
        emit: impl FnOnce(&mut [u8]),
    ) -> Result<(), StoreError> {
        let mut sector = vec![0u8; (self.sector_size as usize).max(SUPERBLOCK_LEN)];
        emit(&mut sector);
        self.device
            .write_and_flush(slot * self.sectors_per_block, &sector)
            .await
            .map_err(StoreError::Io)
    }
}

/// Where the next log block goes: its block and the one after (both
/// reserved in the space map already), its sequence number and the checksum
/// of the block before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub block: u64,
    pub after: u64,
    pub seq: u64,
    pub prev: u32,
}

/// Bytes of consecutive blocks an [`Appender`] or a [`PageWriter`] holds
/// back to write in one transfer: each is a request (on hvt's block ring,
/// often an exit) when written alone.
const BATCH_BYTES: usize = 256 << 10;

/// Packs the records of one commit into log blocks and writes them as
/// they fill, consecutive ones together (up to [`BATCH_BYTES`]; the order
/// of a commit's writes does not matter, as only its flush makes any of it
/// count). Each block names the next two, reserved before it is written.
pub(crate) struct Appender {
    pub tail: Tail,
    volume: u64,
    commit_seq: u64,
    /// Blocks emitted, in order.
    pub written: Vec<u64>,
    payload: Vec<u8>,
    capacity: usize,
    block_size: usize,
    /// Emitted blocks not yet written: consecutive, from `batch_start`.
    batch: Vec<u8>,
    batch_start: u64,
}

impl Appender {
    pub fn new(tail: Tail, volume: u64, block_size: u32) -> Self {
        let capacity = block_size as usize - LOG_HEADER;
        Appender {
            tail,
            volume,
            commit_seq: tail.seq,
            written: Vec::new(),
            payload: Vec::with_capacity(capacity),
            capacity,
            block_size: block_size as usize,
            batch: Vec::new(),
            batch_start: 0,
        }
    }

    /// Adds a record (at most half a payload), writing the current block
    /// out first if the record does not fit. Returns the block the record
    /// goes into and its offset in that block.
    pub async fn push<B: Block>(
        &mut self,
        disk: &Disk<B>,
        space: &mut Space,
        record: &[u8],
    ) -> Result<(u64, usize), StoreError> {
        if self.payload.len() + record.len() > self.capacity {
            self.emit(disk, space, 0).await?;
        }
        let at = LOG_HEADER + self.payload.len();
        self.payload.extend_from_slice(record);
        Ok((self.tail.block, at))
    }

    /// Writes the last block, marked as the end of the commit, and flushes:
    /// the commit is durable when this returns.
    pub async fn commit<B: Block>(
        &mut self,
        disk: &Disk<B>,
        space: &mut Space,
    ) -> Result<(), StoreError> {
        self.emit(disk, space, FLAG_COMMIT).await
    }

    async fn emit<B: Block>(
        &mut self,
        disk: &Disk<B>,
        space: &mut Space,
        flags: u32,
    ) -> Result<(), StoreError> {
        let reserved = space.allocate(1).ok_or(StoreError::NoSpace)?.start;
        let header = LogHeader {
            flags,
            seq: self.tail.seq,
            next: self.tail.after,
            after_next: reserved,
            commit_seq: self.commit_seq,
            volume: self.volume,
            prev: self.tail.prev,
            payload_len: self.payload.len() as u32,
        };
        let follows = self.batch_start + (self.batch.len() / self.block_size) as u64;
        if !self.batch.is_empty()
            && (follows != self.tail.block || self.batch.len() + self.block_size > BATCH_BYTES)
        {
            disk.write(self.batch_start, &self.batch).await?;
            self.batch.clear();
        }
        if self.batch.is_empty() {
            self.batch_start = self.tail.block;
        }
        let at = self.batch.len();
        self.batch.resize(at + self.block_size, 0);
        let crc = emit_log_block(&mut self.batch[at..], &header, &self.payload);
        if flags & FLAG_COMMIT != 0 {
            disk.write_and_flush(self.batch_start, &self.batch).await?;
            self.batch.clear();
        }
        self.written.push(self.tail.block);
        self.tail = Tail {
            block: self.tail.after,
            after: reserved,
            seq: self.tail.seq + 1,
            prev: crc,
        };
        self.payload.clear();
        Ok(())
    }
}

/// Writes the index pages of a checkpoint, consecutive ones together (up
/// to [`BATCH_BYTES`]); [`PageWriter::finish`] flushes them, before the
/// superblock naming them is written.
pub(crate) struct PageWriter {
    volume: u64,
    generation: u64,
    block_size: usize,
    /// Pages emitted and not yet written: consecutive, from `batch_start`.
    batch: Vec<u8>,
    batch_start: u64,
    /// Pages written.
    pub written: u64,
}

impl PageWriter {
    pub fn new(volume: u64, generation: u64, block_size: u32) -> Self {
        PageWriter {
            volume,
            generation,
            block_size: block_size as usize,
            batch: Vec::new(),
            batch_start: 0,
            written: 0,
        }
    }

    /// Writes `payload` as a page of `level` into `block` (claimed by the
    /// caller); returns the reference its parent records.
    pub async fn write<B: Block>(
        &mut self,
        disk: &Disk<B>,
        block: u64,
        level: u32,
        payload: &[u8],
    ) -> Result<PageRef, StoreError> {
        let follows = self.batch_start + (self.batch.len() / self.block_size) as u64;
        if !self.batch.is_empty()
            && (follows != block || self.batch.len() + self.block_size > BATCH_BYTES)
        {
            disk.write(self.batch_start, &self.batch).await?;
            self.batch.clear();
        }
        if self.batch.is_empty() {
            self.batch_start = block;
        }
        let at = self.batch.len();
        self.batch.resize(at + self.block_size, 0);
        let header = PageHeader {
            level,
            generation: self.generation,
            volume: self.volume,
            payload_len: payload.len() as u32,
        };
        let crc = emit_page(&mut self.batch[at..], &header, payload);
        self.written += 1;
        Ok(PageRef { block, crc })
    }

    /// Writes what is held back and flushes: every page is durable after.
    pub async fn finish<B: Block>(&mut self, disk: &Disk<B>) -> Result<(), StoreError> {
        if !self.batch.is_empty() {
            disk.write_and_flush(self.batch_start, &self.batch).await?;
            self.batch.clear();
        } else if self.written > 0 {
            disk.flush().await?;
        }
        Ok(())
    }
}
