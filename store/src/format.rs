//! The on-disk format, version 2: checked views that parse and emit the
//! superblock, log blocks, index pages and the operations inside them. Nothing here does
//! I/O; every parser returns [`FormatError`] on bad input and never panics.
//! The layout is described in `FORMAT.md` at the root of the crate.

use alloc::vec::Vec;
use core::ops::Range;

/// The first eight bytes of a superblock.
pub const MAGIC: [u8; 8] = *b"LAMINAKV";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 2;
/// Blocks 0 and 1 hold the two superblocks.
pub const SUPERBLOCK_BLOCKS: u64 = 2;
/// Bytes of a superblock, checksum included; it is written as one sector.
pub const SUPERBLOCK_LEN: usize = 88;
/// Generations and sequence numbers stay below this.
pub const COUNTER_LIMIT: u64 = 1 << 62;
/// The first four bytes of a log block.
pub const LOG_MAGIC: u32 = u32::from_le_bytes(*b"LKVL");
/// The first four bytes of an index page.
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"LKVP");
/// The deepest index tree a mount follows (level of the root, leaves 0).
pub const MAX_LEVEL: u32 = 16;
/// Bytes of one child reference in an interior index page.
pub const PAGE_REF_LEN: usize = 12;
/// Log block flag: the block ends a commit.
pub const FLAG_COMMIT: u32 = 1;
/// Bytes of a log block header; the payload follows.
pub const LOG_HEADER: usize = 64;
/// The smallest store block: metadata and data are allocated in blocks of
/// this size, or of the sector size where sectors are bigger.
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// The largest store block (and sector) the format allows.
pub const MAX_BLOCK_SIZE: u32 = 65536;
/// The longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// The most blocks one extent covers: a read of part of a value checks at
/// most this much data (256 KiB with 4 KiB blocks).
pub const MAX_EXTENT_BLOCKS: u32 = 64;
/// Bytes of one encoded extent.
pub const EXTENT_LEN: usize = 16;
/// The most extents one operation record carries, so that no record is
/// bigger than half a payload (checkpoint size estimates rely on it).
pub const EXTENTS_PER_RECORD: usize = 48;

const TAG_SET: u8 = 1;
const TAG_REMOVE: u8 = 2;
const TAG_MORE: u8 = 3;
const TAG_INLINE: u8 = 4;

/// Values up to this many bytes are stored inside their log record (one
/// write and one flush for a small set) rather than in extents.
pub const INLINE_MAX: usize = 512;

/// CRC-32C (Castagnoli), the checksum of every structure on the disk.
pub fn crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI.checksum(data)
}

/// Slice-by-16 tables (16 KiB, built at compile time): 4 KiB checks in
/// about a fifth of the time of the crate's byte-at-a-time table, and a
/// get or set of a 4 KiB value checks 4 KiB once.
static CASTAGNOLI: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// A 64-bit digest made of two CRC-32Cs (of the bytes, and of the bytes
/// after a marker): enough to tell volumes apart, not cryptographic.
pub struct Crc64 {
    low: crc::Digest<'static, u32, crc::Table<16>>,
    high: crc::Digest<'static, u32, crc::Table<16>>,
}

impl Crc64 {
    /// An empty digest.
    pub fn new() -> Self {
        let mut high = CASTAGNOLI.digest();
        high.update(b"volume");
        Crc64 {
            low: CASTAGNOLI.digest(),
            high,
        }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.low.update(bytes);
        self.high.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> u64 {
        (u64::from(self.high.finalize()) << 32) | u64::from(self.low.finalize())
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Why bytes read from the disk are not a valid structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes do not start with the expected magic number.
    BadMagic,
    /// The structure is from a format version this crate does not read.
    UnsupportedVersion(u32),
    /// The checksum does not match the contents.
    BadChecksum,
    /// A field holds an impossible value (named).
    BadField(&'static str),
    /// The structure runs past the end of its buffer.
    Truncated,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FormatError::BadMagic => f.write_str("bad magic number"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            FormatError::BadChecksum => f.write_str("checksum mismatch"),
            FormatError::BadField(name) => write!(f, "impossible value in field {name}"),
            FormatError::Truncated => f.write_str("structure truncated"),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, FormatError> {
    let field = bytes.get(at..at + 4).ok_or(FormatError::Truncated)?;
    Ok(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, FormatError> {
    let field = bytes.get(at..at + 8).ok_or(FormatError::Truncated)?;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(field);
    Ok(u64::from_le_bytes(raw))
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, FormatError> {
    let field = bytes.get(at..at + 2).ok_or(FormatError::Truncated)?;
    Ok(u16::from_le_bytes([field[0], field[1]]))
}

/// Field byte ranges of the superblock.
mod sb {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const VERSION: usize = 8;
    pub const SECTOR_SIZE: usize = 12;
    pub const BLOCK_SIZE: usize = 16;
    pub const ANCHOR: usize = 20;
    pub const BLOCK_COUNT: usize = 24;
    pub const GENERATION: usize = 32;
    pub const LOG_START: usize = 40;
    pub const LOG_SEQ: usize = 48;
    pub const ROOT: usize = 56;
    pub const VOLUME: usize = 64;
    pub const LOG_AFTER: usize = 72;
    pub const ROOT_CRC: usize = 80;
    pub const CRC: usize = 84;
}

/// A superblock: the geometry and where the current log starts. Two copies
/// (blocks 0 and 1) are written in turn; the valid one with the higher
/// generation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// The sector size the store was formatted for.
    pub sector_size: u32,
    /// Bytes per store block (a multiple of the sector size).
    pub block_size: u32,
    /// Blocks in the store, superblocks included.
    pub block_count: u64,
    /// Counts superblock writes; the higher of the two copies is current.
    pub generation: u64,
    /// Identifies this store among others made on the same device: every
    /// log block carries it.
    pub volume: u64,
    /// Block of the first log block after the checkpoint.
    pub log_start: u64,
    /// Block reserved for the log block after the first.
    pub log_after: u64,
    /// Sequence number of the first log block.
    pub log_seq: u64,
    /// The `prev` checksum the first log block carries.
    pub anchor: u32,
    /// Block of the root page of the index tree (the checkpoint).
    pub root: u64,
    /// Checksum of the root page.
    pub root_crc: u32,
}

impl Superblock {
    /// Parses and checks a superblock from the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Superblock, FormatError> {
        let raw = bytes.get(..SUPERBLOCK_LEN).ok_or(FormatError::Truncated)?;
        if raw[sb::MAGIC] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32_at(raw, sb::VERSION)?;
        // Version 1 had its checksum at 80 (over bytes 0..80): an intact
        // one is named as such, not reported as damage.
        if version == 1 && crc32c(&raw[..80]) == u32_at(raw, 80)? {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if crc32c(&raw[..sb::CRC]) != u32_at(raw, sb::CRC)? {
            return Err(FormatError::BadChecksum);
        }
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let superblock = Superblock {
            sector_size: u32_at(raw, sb::SECTOR_SIZE)?,
            block_size: u32_at(raw, sb::BLOCK_SIZE)?,
            block_count: u64_at(raw, sb::BLOCK_COUNT)?,
            generation: u64_at(raw, sb::GENERATION)?,
            volume: u64_at(raw, sb::VOLUME)?,
            log_start: u64_at(raw, sb::LOG_START)?,
            log_after: u64_at(raw, sb::LOG_AFTER)?,
            log_seq: u64_at(raw, sb::LOG_SEQ)?,
            anchor: u32_at(raw, sb::ANCHOR)?,
            root: u64_at(raw, sb::ROOT)?,
            root_crc: u32_at(raw, sb::ROOT_CRC)?,
        };
        superblock.check()?;
        Ok(superblock)
    }

    fn check(&self) -> Result<(), FormatError> {
        let sector = self.sector_size;
        if sector < SUPERBLOCK_LEN as u32 || !sector.is_power_of_two() {
            return Err(FormatError::BadField("sector size"));
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size)
            || !self.block_size.is_power_of_two()
            || self.block_size < sector
        {
            return Err(FormatError::BadField("block size"));
        }
        if self.block_count <= SUPERBLOCK_BLOCKS + 1 {
            return Err(FormatError::BadField("block count"));
        }
        let blocks = SUPERBLOCK_BLOCKS..self.block_count;
        if !blocks.contains(&self.log_start) {
            return Err(FormatError::BadField("log start"));
        }
        if !blocks.contains(&self.log_after) || self.log_after == self.log_start {
            return Err(FormatError::BadField("log after"));
        }
        if !blocks.contains(&self.root)
            || self.root == self.log_start
            || self.root == self.log_after
        {
            return Err(FormatError::BadField("root"));
        }
        // Counters that a store would take 2^62 writes to reach: beyond
        // them, the additions that follow could overflow.
        if self.generation >= COUNTER_LIMIT {
            return Err(FormatError::BadField("generation"));
        }
        if self.log_seq >= COUNTER_LIMIT {
            return Err(FormatError::BadField("log sequence"));
        }
        Ok(())
    }

    /// Writes the superblock into the start of `out` (at least
    /// [`SUPERBLOCK_LEN`] bytes; the rest is left alone).
    pub fn emit(&self, out: &mut [u8]) {
        let out = &mut out[..SUPERBLOCK_LEN];
        out[sb::MAGIC].copy_from_slice(&MAGIC);
        out[sb::VERSION..sb::VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
        put_u32(out, sb::SECTOR_SIZE, self.sector_size);
        put_u32(out, sb::BLOCK_SIZE, self.block_size);
        put_u32(out, sb::ANCHOR, self.anchor);
        put_u64(out, sb::BLOCK_COUNT, self.block_count);
        put_u64(out, sb::GENERATION, self.generation);
        put_u64(out, sb::LOG_START, self.log_start);
        put_u64(out, sb::LOG_SEQ, self.log_seq);
        put_u64(out, sb::ROOT, self.root);
        put_u32(out, sb::ROOT_CRC, self.root_crc);
        put_u64(out, sb::VOLUME, self.volume);
        put_u64(out, sb::LOG_AFTER, self.log_after);
        let crc = crc32c(&out[..sb::CRC]);
        put_u32(out, sb::CRC, crc);
    }

    /// The `prev` checksum for the first block of a log started at
    /// `log_start` with `log_seq`: ties the log to the superblock that
    /// names it, so blocks of an older log never chain into a newer one.
    pub fn anchor_for(volume: u64, generation: u64, log_start: u64, log_seq: u64) -> u32 {
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&volume.to_le_bytes());
        raw[8..16].copy_from_slice(&generation.to_le_bytes());
        raw[16..24].copy_from_slice(&log_start.to_le_bytes());
        raw[24..].copy_from_slice(&log_seq.to_le_bytes());
        crc32c(&raw)
    }
}

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Field byte ranges of a log block header.
mod lb {
    pub const MAGIC: usize = 0;
    pub const FLAGS: usize = 4;
    pub const SEQ: usize = 8;
    pub const NEXT: usize = 16;
    pub const AFTER_NEXT: usize = 24;
    pub const COMMIT_SEQ: usize = 32;
    pub const VOLUME: usize = 40;
    pub const PREV: usize = 48;
    pub const PAYLOAD_LEN: usize = 52;
    pub const CRC: usize = 56;
    pub const RESERVED: usize = 60;
}

/// The header of a log block; the payload is a run of operation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    /// [`FLAG_COMMIT`] or 0.
    pub flags: u32,
    /// One more than the previous log block's.
    pub seq: u64,
    /// The block the next log block will be written to (reserved already).
    pub next: u64,
    /// The block the one after next will be written to (reserved too): lets
    /// a mount look past a damaged block.
    pub after_next: u64,
    /// Sequence number of the first block of this block's commit.
    pub commit_seq: u64,
    /// The store's volume id (from the superblock).
    pub volume: u64,
    /// The checksum of the previous log block (or the superblock's anchor).
    pub prev: u32,
    /// Bytes of payload after the header.
    pub payload_len: u32,
}

impl LogHeader {
    /// Whether the block ends a commit.
    pub fn is_commit(&self) -> bool {
        self.flags & FLAG_COMMIT != 0
    }
}

/// The checksum of a log block: header (less its checksum field) and payload.
fn log_crc(block: &[u8], payload_len: usize) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    digest.update(&block[..lb::CRC]);
    digest.update(&block[lb::RESERVED..LOG_HEADER + payload_len]);
    digest.finalize()
}

/// Parses a whole log block; returns its header, payload and checksum.
pub fn parse_log_block(block: &[u8]) -> Result<(LogHeader, &[u8], u32), FormatError> {
    if block.len() < LOG_HEADER {
        return Err(FormatError::Truncated);
    }
    if u32_at(block, lb::MAGIC)? != LOG_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let payload_len = u32_at(block, lb::PAYLOAD_LEN)?;
    let end = LOG_HEADER
        .checked_add(payload_len as usize)
        .filter(|&end| end <= block.len())
        .ok_or(FormatError::BadField("payload length"))?;
    let crc = u32_at(block, lb::CRC)?;
    if log_crc(block, payload_len as usize) != crc {
        return Err(FormatError::BadChecksum);
    }
    let flags = u32_at(block, lb::FLAGS)?;
    if flags & !FLAG_COMMIT != 0 || u32_at(block, lb::RESERVED)? != 0 {
        return Err(FormatError::BadField("flags"));
    }
    let header = LogHeader {
        flags,
        seq: u64_at(block, lb::SEQ)?,
        next: u64_at(block, lb::NEXT)?,
        after_next: u64_at(block, lb::AFTER_NEXT)?,
        commit_seq: u64_at(block, lb::COMMIT_SEQ)?,
        volume: u64_at(block, lb::VOLUME)?,
        prev: u32_at(block, lb::PREV)?,
        payload_len,
    };
    Ok((header, &block[LOG_HEADER..end], crc))
}

/// Fills `block` (a whole store block) with `header` and `payload`, zeroes
/// the rest and returns the block's checksum.
pub fn emit_log_block(block: &mut [u8], header: &LogHeader, payload: &[u8]) -> u32 {
    block.fill(0);
    put_u32(block, lb::MAGIC, LOG_MAGIC);
    put_u32(block, lb::FLAGS, header.flags);
    put_u64(block, lb::SEQ, header.seq);
    put_u64(block, lb::NEXT, header.next);
    put_u64(block, lb::AFTER_NEXT, header.after_next);
    put_u64(block, lb::COMMIT_SEQ, header.commit_seq);
    put_u64(block, lb::VOLUME, header.volume);
    put_u32(block, lb::PREV, header.prev);
    put_u32(block, lb::PAYLOAD_LEN, payload.len() as u32);
    block[LOG_HEADER..LOG_HEADER + payload.len()].copy_from_slice(payload);
    let crc = log_crc(block, payload.len());
    put_u32(block, lb::CRC, crc);
    crc
}

/// Field byte ranges of an index page header (the payload length and
/// checksum sit where a log block has them).
mod pg {
    pub const MAGIC: usize = 0;
    pub const LEVEL: usize = 4;
    pub const GENERATION: usize = 8;
    pub const VOLUME: usize = 16;
    pub const ZERO: core::ops::Range<usize> = 24..52;
    pub const PAYLOAD_LEN: usize = 52;
    pub const CRC: usize = 56;
    pub const RESERVED: usize = 60;
}

/// The header of an index page: a leaf (level 0) holds records, an
/// interior page references to the pages of the level below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// 0 for a leaf; one more than its children's for an interior page.
    pub level: u32,
    /// The generation of the checkpoint that wrote it.
    pub generation: u64,
    /// The store's volume id (from the superblock).
    pub volume: u64,
    /// Bytes of payload after the header.
    pub payload_len: u32,
}

/// Parses a whole index page; returns its header, payload and checksum.
pub fn parse_page(block: &[u8]) -> Result<(PageHeader, &[u8], u32), FormatError> {
    if block.len() < LOG_HEADER {
        return Err(FormatError::Truncated);
    }
    if u32_at(block, pg::MAGIC)? != PAGE_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let payload_len = u32_at(block, pg::PAYLOAD_LEN)?;
    let end = LOG_HEADER
        .checked_add(payload_len as usize)
        .filter(|&end| end <= block.len())
        .ok_or(FormatError::BadField("payload length"))?;
    let crc = u32_at(block, pg::CRC)?;
    if log_crc(block, payload_len as usize) != crc {
        return Err(FormatError::BadChecksum);
    }
    let level = u32_at(block, pg::LEVEL)?;
    if level > MAX_LEVEL {
        return Err(FormatError::BadField("level"));
    }
    if block[pg::ZERO].iter().any(|&b| b != 0) || u32_at(block, pg::RESERVED)? != 0 {
        return Err(FormatError::BadField("reserved"));
    }
    let header = PageHeader {
        level,
        generation: u64_at(block, pg::GENERATION)?,
        volume: u64_at(block, pg::VOLUME)?,
        payload_len,
    };
    Ok((header, &block[LOG_HEADER..end], crc))
}

/// Fills `block` (a whole store block) with an index page of `header`'s
/// level, generation and volume and `payload`, zeroes the rest and
/// returns the page's checksum.
pub fn emit_page(block: &mut [u8], header: &PageHeader, payload: &[u8]) -> u32 {
    block.fill(0);
    put_u32(block, pg::MAGIC, PAGE_MAGIC);
    put_u32(block, pg::LEVEL, header.level);
    put_u64(block, pg::GENERATION, header.generation);
    put_u64(block, pg::VOLUME, header.volume);
    put_u32(block, pg::PAYLOAD_LEN, payload.len() as u32);
    block[LOG_HEADER..LOG_HEADER + payload.len()].copy_from_slice(payload);
    let crc = log_crc(block, payload.len());
    put_u32(block, pg::CRC, crc);
    crc
}

/// Where the payload of a log block or index page ends (checked against
/// the block's checksum): what a read of a value held in one needs.
pub fn payload_end(block: &[u8]) -> Result<usize, FormatError> {
    let len = match u32_at(block, 0)? {
        LOG_MAGIC => parse_log_block(block)?.0.payload_len,
        PAGE_MAGIC => parse_page(block)?.0.payload_len,
        _ => return Err(FormatError::BadMagic),
    };
    Ok(LOG_HEADER + len as usize)
}

/// A page of the index as its parent names it: where it is and its
/// checksum (which a page written there earlier does not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// The block holding the page.
    pub block: u64,
    /// The page's checksum.
    pub crc: u32,
}

/// Parses the payload of an interior page: its children, in key order.
pub fn parse_refs(payload: &[u8]) -> Result<Vec<PageRef>, FormatError> {
    if !payload.len().is_multiple_of(PAGE_REF_LEN) {
        return Err(FormatError::BadField("page references"));
    }
    payload
        .chunks_exact(PAGE_REF_LEN)
        .map(|raw| {
            Ok(PageRef {
                block: u64_at(raw, 0)?,
                crc: u32_at(raw, 8)?,
            })
        })
        .collect()
}

/// Appends the encoding of `child` to an interior page's payload.
pub fn encode_ref(child: &PageRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&child.block.to_le_bytes());
    out.extend_from_slice(&child.crc.to_le_bytes());
}

/// A run of whole blocks holding part of a value, and the checksum of the
/// value bytes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub start: u64,
    /// Number of blocks, 1 to [`MAX_EXTENT_BLOCKS`].
    pub blocks: u32,
    /// CRC-32C of the value bytes the extent holds (its last block may be
    /// only partly used).
    pub crc: u32,
}

impl Extent {
    /// The blocks it covers.
    pub fn range(&self) -> Range<u64> {
        self.start..self.start + u64::from(self.blocks)
    }

    fn parse(raw: &[u8]) -> Result<Extent, FormatError> {
        let extent = Extent {
            start: u64_at(raw, 0)?,
            blocks: u32_at(raw, 8)?,
            crc: u32_at(raw, 12)?,
        };
        if extent.blocks == 0 || extent.blocks > MAX_EXTENT_BLOCKS {
            return Err(FormatError::BadField("extent length"));
        }
        Ok(extent)
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.start.to_le_bytes());
        out.extend_from_slice(&self.blocks.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
    }
}

/// One record of a log payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// Sets `key` to a value of `size` bytes held in `total_extents`
    /// extents, the first of which follow here.
    Set {
        /// The key (not yet checked as UTF-8 or normalised).
        key: &'a [u8],
        /// Value size in bytes.
        size: u64,
        /// How many extents the value has in all.
        total_extents: u32,
        /// The first extents (the rest follow in [`Record::More`] records).
        extents: Vec<Extent>,
    },
    /// More extents of the value of the [`Record::Set`] before it.
    More(Vec<Extent>),
    /// Removes `key`.
    Remove(&'a [u8]),
    /// Sets `key` to `value`, held in the record itself.
    Inline {
        /// The key (not yet checked as UTF-8 or normalised).
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// Where the value starts in the payload.
        at: usize,
    },
}

/// Parses the records of a payload, in order.
pub fn parse_records(payload: &[u8]) -> Result<Vec<Record<'_>>, FormatError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let tag = payload[at];
        at += 1;
        match tag {
            TAG_SET => {
                let key = take_key(payload, &mut at)?;
                let size = u64_at(payload, at)?;
                let total_extents = u32_at(payload, at + 8)?;
                let here = u16_at(payload, at + 12)?;
                at += 14;
                let extents = take_extents(payload, &mut at, here)?;
                records.push(Record::Set {
                    key,
                    size,
                    total_extents,
                    extents,
                });
            }
            TAG_MORE => {
                let here = u16_at(payload, at)?;
                at += 2;
                records.push(Record::More(take_extents(payload, &mut at, here)?));
            }
            TAG_REMOVE => records.push(Record::Remove(take_key(payload, &mut at)?)),
            TAG_INLINE => {
                let key = take_key(payload, &mut at)?;
                let len = u16_at(payload, at)? as usize;
                at += 2;
                if len > INLINE_MAX {
                    return Err(FormatError::BadField("inline length"));
                }
                let value = payload.get(at..at + len).ok_or(FormatError::Truncated)?;
                records.push(Record::Inline { key, value, at });
                at += len;
            }
            _ => return Err(FormatError::BadField("record tag")),
        }
    }
    Ok(records)
}

fn take_key<'a>(payload: &'a [u8], at: &mut usize) -> Result<&'a [u8], FormatError> {
    let len = u16_at(payload, *at)? as usize;
    if len == 0 || len > MAX_KEY {
        return Err(FormatError::BadField("key length"));
    }
    let key = payload
        .get(*at + 2..*at + 2 + len)
        .ok_or(FormatError::Truncated)?;
    *at += 2 + len;
    Ok(key)
}

fn take_extents(payload: &[u8], at: &mut usize, count: u16) -> Result<Vec<Extent>, FormatError> {
    let len = count as usize * EXTENT_LEN;
    let raw = payload.get(*at..*at + len).ok_or(FormatError::Truncated)?;
    *at += len;
    raw.chunks_exact(EXTENT_LEN).map(Extent::parse).collect()
}

/// Encodes setting `key` to a value of `size` bytes in `extents` as records
/// of at most [`EXTENTS_PER_RECORD`] extents each, appended to `out`.
pub fn encode_set(key: &str, size: u64, extents: &[Extent], out: &mut Vec<Vec<u8>>) {
    let mut chunks = extents.chunks(EXTENTS_PER_RECORD);
    let first = chunks.next().unwrap_or(&[]);
    let mut record = Vec::with_capacity(17 + key.len() + first.len() * EXTENT_LEN);
    record.push(TAG_SET);
    record.extend_from_slice(&(key.len() as u16).to_le_bytes());
    record.extend_from_slice(key.as_bytes());
    record.extend_from_slice(&size.to_le_bytes());
    record.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    record.extend_from_slice(&(first.len() as u16).to_le_bytes());
    first.iter().for_each(|e| e.emit(&mut record));
    out.push(record);
    for chunk in chunks {
        let mut record = Vec::with_capacity(3 + chunk.len() * EXTENT_LEN);
        record.push(TAG_MORE);
        record.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        chunk.iter().for_each(|e| e.emit(&mut record));
        out.push(record);
    }
}

/// Encodes setting `key` to `value` (at most [`INLINE_MAX`] bytes) inside
/// the record; returns where the value starts in the record.
pub fn encode_inline(key: &str, value: &[u8], out: &mut Vec<Vec<u8>>) -> usize {
    let mut record = Vec::with_capacity(5 + key.len() + value.len());
    record.push(TAG_INLINE);
    record.extend_from_slice(&(key.len() as u16).to_le_bytes());
    record.extend_from_slice(key.as_bytes());
    record.extend_from_slice(&(value.len() as u16).to_le_bytes());
    let at = record.len();
    record.extend_from_slice(value);
    out.push(record);
    at
}

/// Bytes the record of an inline set takes.
pub fn inline_encoded_len(key_len: usize, value_len: usize) -> u64 {
    (5 + key_len + value_len) as u64
}

/// Encodes removing `key`, appended to `out`.
pub fn encode_remove(key: &str, out: &mut Vec<Vec<u8>>) {
    let mut record = Vec::with_capacity(3 + key.len());
    record.push(TAG_REMOVE);
    record.extend_from_slice(&(key.len() as u16).to_le_bytes());
    record.extend_from_slice(key.as_bytes());
    out.push(record);
}

/// Bytes the records of a set of `key` with `extents` extents take.
pub fn set_encoded_len(key_len: usize, extents: usize) -> u64 {
    let more_records = extents.saturating_sub(1) / EXTENTS_PER_RECORD;
    (17 + key_len + extents * EXTENT_LEN + more_records * 3) as u64
}

/// Log blocks a checkpoint of records totalling `bytes` needs at most with
/// `block_size` blocks: no record is over half a payload, so packing wastes
/// less than half of each block.
pub fn checkpoint_blocks_for(bytes: u64, block_size: u32) -> u64 {
    let payload = (block_size as usize - LOG_HEADER) as u64;
    (2 * bytes).div_ceil(payload) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock() -> Superblock {
        Superblock {
            sector_size: 512,
            block_size: 4096,
            block_count: 100,
            generation: 7,
            volume: 11,
            log_start: 5,
            log_after: 6,
            log_seq: 9,
            anchor: 0xdead_beef,
            root: 7,
            root_crc: 0x1234_5678,
        }
    }

    #[test]
    fn superblock_round_trips_and_every_flipped_bit_is_caught() {
        let mut raw = [0u8; 512];
        superblock().emit(&mut raw);
        assert_eq!(Superblock::parse(&raw), Ok(superblock()));
        for bit in 0..SUPERBLOCK_LEN * 8 {
            let mut bad = raw;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::parse(&bad).is_err(), "bit {bit}");
        }
        assert_eq!(Superblock::parse(&raw[..10]), Err(FormatError::Truncated));
    }

    #[test]
    fn log_block_round_trips_and_rejects_damage() {
        let mut block = [0u8; 4096];
        let header = LogHeader {
            flags: FLAG_COMMIT,
            seq: 3,
            next: 4,
            after_next: 6,
            commit_seq: 2,
            volume: 8,
            prev: 5,
            payload_len: 3,
        };
        let crc = emit_log_block(&mut block, &header, b"abc");
        assert_eq!(parse_log_block(&block), Ok((header, &b"abc"[..], crc)));
        block[LOG_HEADER + 1] ^= 4;
        assert_eq!(parse_log_block(&block), Err(FormatError::BadChecksum));
        block[LOG_HEADER + 1] ^= 4;
        block[lb::PAYLOAD_LEN + 2] = 0xff;
        assert!(parse_log_block(&block).is_err());
    }

    #[test]
    fn index_page_round_trips_and_rejects_damage() {
        let mut block = [0u8; 4096];
        let header = PageHeader {
            level: 1,
            generation: 4,
            volume: 8,
            payload_len: 24,
        };
        let refs = [PageRef { block: 9, crc: 1 }, PageRef { block: 3, crc: 2 }];
        let mut payload = Vec::new();
        refs.iter().for_each(|r| encode_ref(r, &mut payload));
        let crc = emit_page(&mut block, &header, &payload);
        assert_eq!(parse_page(&block), Ok((header, &payload[..], crc)));
        assert_eq!(parse_refs(&payload).unwrap(), refs);
        assert_eq!(payload_end(&block), Ok(LOG_HEADER + 24));
        assert!(parse_refs(&payload[..13]).is_err());
        for bit in 0..(LOG_HEADER + 24) * 8 {
            let mut bad = block;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_page(&bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn records_round_trip_across_more_records() {
        let extents: Vec<Extent> = (0..100)
            .map(|i| Extent {
                start: 10 + i * 64,
                blocks: 64,
                crc: i as u32,
            })
            .collect();
        let mut records = Vec::new();
        encode_set("a/b", 100 * 64 * 4096, &extents, &mut records);
        encode_remove("c", &mut records);
        let total: usize = records.iter().map(Vec::len).sum();
        assert_eq!(
            total as u64,
            set_encoded_len(3, 100) + 3 + 1,
            "the estimate is exact"
        );
        assert!(records
            .iter()
            .all(|r| r.len() <= (MIN_BLOCK_SIZE as usize - LOG_HEADER) / 2));
        let payload: Vec<u8> = records.concat();
        let parsed = parse_records(&payload).unwrap();
        assert_eq!(parsed.len(), 4);
        let Record::Set {
            key,
            total_extents,
            extents: first,
            ..
        } = &parsed[0]
        else {
            panic!("{parsed:?}")
        };
        assert_eq!((*key, *total_extents), (&b"a/b"[..], 100));
        assert_eq!(first[..], extents[..48]);
        assert_eq!(parsed[3], Record::Remove(b"c"));
        let mut inline = Vec::new();
        let at = encode_inline("k", b"value", &mut inline);
        assert_eq!(inline[0].len() as u64, inline_encoded_len(1, 5));
        assert_eq!(
            parse_records(&inline[0]),
            Ok(alloc::vec![Record::Inline {
                key: b"k",
                value: b"value",
                at
            }])
        );
        for cut in 0..payload.len() {
            let _ = parse_records(&payload[..cut]);
        }
    }
}
