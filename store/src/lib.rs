//! `lamina-store`: a crash-safe key-value store on any [`Block`] device.
//!
//! It implements core's [`KvRead`] and [`KvWrite`] and adds atomic batches
//! ([`Batch`]). The disk holds a checksummed log of commits; a commit is one
//! or more log blocks, the last one marked, and takes effect only if every
//! block of it is intact and chained to the one before. The log follows a
//! checkpoint, a tree of index pages (leaves of records, interior pages
//! listing the pages below with their checksums) whose root one of two
//! superblocks names. A checkpoint is incremental: it rewrites, copy on
//! write, only the leaves holding keys changed since the last one and the
//! pages above them, then switches the other superblock to the new root
//! and an empty log, which frees the old log and the replaced pages; it
//! runs when the log reaches 64 blocks or 64 leaves are dirty, so what it
//! writes (and a set that triggers it waits for) does not grow with the
//! number of keys. `FORMAT.md` beside this crate describes every byte.
//!
//! # Guarantees
//!
//! - An operation that returned `Ok` is durable: its values (those of up
//!   to 512 bytes inside the commit record) and the commit record naming
//!   them were written, then flushed once, before returning. After a crash
//!   at any instant the store mounts with every acknowledged operation and
//!   no part of an unacknowledged one: a torn last commit fails its
//!   checksum, and a last commit whose values did not all reach the disk
//!   fails theirs (the mount reads the last commit's values), and either is
//!   ignored. Every commit before the last was flushed before the next
//!   began.
//! - Every structure and every extent of every value has a CRC-32C. Damage
//!   is reported as an error at mount ([`StoreError::Corrupt`]) or at read
//!   ([`KvError::Io`]), never as a wrong value or a panic (a log block or
//!   leaf kept in memory for gets was checked when read; damage done to it
//!   on the disk since shows at its next read from the disk). Every index
//!   page's checksum is also recorded by its parent (the root's by the
//!   superblock), so a stale page never passes for the current one. One limit: damage
//!   to the last commit of the log looks like a commit torn by a crash and
//!   drops that commit, as in littlefs.
//! - Space is reclaimed as it is freed: overwritten and removed values give
//!   their blocks back once the commit is durable; the log is compacted by
//!   checkpoints, whose cost is proportional to what changed since the last
//!   one (at most 64 log blocks' worth, or 64 leaves, and one page per level
//!   above each), so no set waits for the whole index. A set that does not fit
//!   gives [`KvError::NoSpace`] and leaves the store usable: removes always
//!   have room reserved.
//!
//! # Memory
//!
//! The index is in memory: per key, the key's bytes plus about 150 bytes
//! (`String`, `Vec`, size, location and B-tree node share; 177 bytes for a
//! 24-byte key in `tests/memory.rs`), plus, for a value over 512 bytes, 16
//! bytes per extent (one per 256 KiB, more if free space is fragmented).
//! The index tree's map takes about 60 bytes plus its first key per page
//! (a page holds about 30 keys with 100-byte values: 3 bytes a key). The space
//! map takes one bit per 4 KiB block (32 KiB per GiB of disk) and the log's
//! block list 8 bytes per log block. The log blocks that gets of values of
//! up to 512 bytes read last (log blocks and leaves) are kept, checked, up
//! to 256 KiB (64 blocks of 4 KiB: a get of a small value is then no read,
//! as Redis answers from memory; a checkpoint empties it, as it frees blocks
//! of both). Bigger values
//! are kept only in the value cache the application sizes
//! ([`Store::set_value_cache`], none by default): at most that many bytes
//! of values written or read lately, plus about 140 bytes each, none over a
//! sixteenth of it; a get of a value held is a copy from memory, with no
//! read and no checksum pass. Otherwise `get` holds the value and at most one block more;
//! `set` writes from the caller's slice and copies at most one block; a
//! commit or checkpoint holds up to 256 KiB of its log blocks or pages, to
//! write consecutive ones in one transfer, and a checkpoint the keys of
//! the dirty leaves (64 or so); a `get_range` holds at most one extent
//! (256 KiB). A mount holds, beyond the index it builds, 12 bytes per
//! leaf page (the references read from the level above), one page, the
//! records of the commit it replays (at most the log's 64 blocks or so)
//! and one extent of the last commit's values, which it checks.
//!
//! # Layout of the crate
//!
//! `format` parses and emits the on-disk structures (no I/O); `space` is
//! the block bitmap; `tree` the index tree's pages and dirty marks; `disk`
//! does block I/O, log appends and page writes; `mount` formats and mounts
//! (reading the tree, then replaying the log); `write` commits and
//! checkpoints; `read` reads values back.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod format;

mod disk;
mod lock;
mod mount;
mod read;
mod space;
mod tree;
mod write;

pub use format::FormatError;
/// The host-file block device host tools use (feature `std`).
#[cfg(feature = "std")]
pub use lamina_core::device::FileBlock;
/// The async lock the store takes for each operation, for an application
/// that must make several operations one (a conditional write).
pub use lock::{Guard, Lock};

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;
use disk::{Disk, Tail};
use format::{Extent, Superblock, MAX_KEY};
use lamina_core::device::{normalize_key, Block, BlockError, KvEntry, KvError, KvRead, KvWrite};
use space::Space;

/// Why a store could not be formatted, mounted or checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The device failed.
    Io(BlockError),
    /// Neither superblock has the store's magic number: the disk holds
    /// something else, or nothing.
    NotAStore,
    /// The store was written by a format version this crate does not read.
    UnsupportedVersion(u32),
    /// The device is too small, or its geometry differs from the store's.
    Geometry(&'static str),
    /// A structure that must be intact is not: `what` at block `block`.
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// Where.
        block: u64,
        /// What is wrong with it.
        error: FormatError,
    },
    /// No room for the metadata of the operation.
    NoSpace,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "device error: {e}"),
            StoreError::NotAStore => f.write_str("not a lamina store (no superblock magic)"),
            StoreError::UnsupportedVersion(v) => write!(
                f,
                "store format version {v} is not supported (this build reads version {})",
                format::VERSION
            ),
            StoreError::Geometry(why) => write!(f, "device geometry: {why}"),
            StoreError::Corrupt { what, block, error } => {
                write!(f, "store is damaged: {what} at block {block}: {error}")
            }
            StoreError::NoSpace => f.write_str("store is full"),
        }
    }
}

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> KvError {
        match e {
            StoreError::NoSpace => KvError::NoSpace,
            _ => KvError::Io,
        }
    }
}

/// Where a value lives: in extents, or inside a log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    size: u64,
    extents: Vec<Extent>,
    inline: Option<Inline>,
}

/// A value of at most [`format::INLINE_MAX`] bytes inside a log block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inline {
    block: u64,
    /// Where the value starts in the block.
    offset: u32,
}

impl Entry {
    /// Bytes this entry's records take in a checkpoint.
    fn encoded_len(&self, key_len: usize) -> u64 {
        match self.inline {
            Some(_) => format::inline_encoded_len(key_len, self.size as usize),
            None => format::set_encoded_len(key_len, self.extents.len()),
        }
    }
}

/// Everything one operation at a time may change.
pub(crate) struct State {
    superblock: Superblock,
    index: BTreeMap<String, Entry>,
    /// Bytes the index takes encoded as records: sizes the next checkpoint.
    index_bytes: u64,
    space: Space,
    /// The blocks of the log since the checkpoint, in order.
    chain: Vec<u64>,
    /// The pages of the checkpoint, and which of them the next rewrites.
    tree: tree::Tree,
    tail: Tail,
    /// Set when a commit failed after writing part of its log: memory and
    /// disk may disagree, so every operation fails until the next mount.
    poisoned: bool,
    /// Log blocks and leaf pages gets of inline values read lately
    /// (emptied by each checkpoint, which frees the log and the pages it
    /// replaces).
    gets: read::LogBlockCache,
    /// Values over the inline limit gets read lately (see
    /// [`Store::set_value_cache`]).
    values: read::ValueCache,
}

/// A key-value store on a block device. See the crate docs.
pub struct Store<B> {
    disk: Disk<B>,
    state: Lock<State>,
}

/// Figures about a mounted store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Keys stored.
    pub keys: u64,
    /// Bytes of all values.
    pub value_bytes: u64,
    /// Bytes per store block.
    pub block_size: u32,
    /// Blocks in the store.
    pub blocks: u64,
    /// Blocks free.
    pub free_blocks: u64,
    /// Blocks of the log since the checkpoint.
    pub log_blocks: u64,
    /// Pages of the checkpoint (the index tree).
    pub index_pages: u64,
    /// Levels of the index tree (leaves and root included).
    pub index_levels: u32,
    /// Superblock generation (counts checkpoints).
    pub generation: u64,
    /// Bytes of values held for gets ([`Store::set_value_cache`]).
    pub value_cache_bytes: u64,
    /// Gets of values over 512 bytes answered from the value cache since
    /// the mount.
    pub value_cache_hits: u64,
    /// Gets of values over 512 bytes that read the disk, with a value
    /// cache, since the mount.
    pub value_cache_misses: u64,
}

/// Several sets and removes applied together or not at all.
///
/// ```ignore
/// let mut batch = Batch::new();
/// batch.set("a", b"1")?;
/// batch.remove("b")?;
/// store.commit(batch).await?;
/// ```
#[derive(Debug, Default)]
pub struct Batch<'a> {
    ops: BTreeMap<String, Option<&'a [u8]>>,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Sets `key` to `value` (replacing an earlier operation on the key in
    /// this batch).
    pub fn set(&mut self, key: &str, value: &'a [u8]) -> Result<(), KvError> {
        self.ops.insert(check_key(key)?, Some(value));
        Ok(())
    }

    /// Removes `key` if it is there when the batch is committed.
    pub fn remove(&mut self, key: &str) -> Result<(), KvError> {
        self.ops.insert(check_key(key)?, None);
        Ok(())
    }

    /// How many keys the batch changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Normalises a key and checks it fits the format.
fn check_key(key: &str) -> Result<String, KvError> {
    let key = normalize_key(key)?;
    if key.len() > MAX_KEY {
        return Err(KvError::InvalidKey);
    }
    Ok(key)
}

impl<B: Block> Store<B> {
    /// Applies `batch` atomically: after it returns `Ok` every change is
    /// durable; after a crash before that, none or all of them are there.
    pub async fn commit(&self, batch: Batch<'_>) -> Result<(), KvError> {
        let mut state = self.state.lock().await;
        self.apply(&mut state, batch.ops).await
    }

    /// Figures about the store.
    pub async fn stats(&self) -> Stats {
        let state = self.state.lock().await;
        Stats {
            keys: state.index.len() as u64,
            value_bytes: state.index.values().map(|e| e.size).sum(),
            block_size: self.disk.block_size,
            blocks: state.superblock.block_count,
            free_blocks: state.space.free(),
            log_blocks: state.chain.len() as u64,
            index_pages: state.tree.pages(),
            index_levels: state.tree.levels.len() as u32,
            generation: state.superblock.generation,
            value_cache_bytes: state.values.bytes() as u64,
            value_cache_hits: state.values.hits,
            value_cache_misses: state.values.misses,
        }
    }

    /// Keeps up to `bytes` of values over 512 bytes that sets wrote or
    /// gets read (checked), whole, so that a get of one costs no block
    /// read and no checksum pass (none by default). Memory: `bytes`, plus
    /// about 140 bytes per value held; a value over `bytes` / 16 is never
    /// held. A write or remove of a key drops its old value before its
    /// blocks are freed. Damage done on the disk to a value held shows at
    /// its next read from the disk.
    pub async fn set_value_cache(&self, bytes: usize) {
        self.state.lock().await.values.set_capacity(bytes);
    }

    /// Writes a new checkpoint now, compacting the log to the index.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if state.poisoned {
            return Err(StoreError::Io(BlockError::Io));
        }
        self.write_checkpoint(&mut state).await
    }

    /// Up to `limit` keys that start with `prefix`, in order, from the first
    /// after `after` (from the first of all when `None`): a listing in pages
    /// that holds one page in memory, not every key under the prefix.
    pub async fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry> {
        let prefix = prefix.trim_start_matches('/');
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let state = self.state.lock().await;
        state
            .index
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, entry)| KvEntry {
                key: key.clone(),
                size: entry.size,
            })
            .collect()
    }

    /// The device, given back.
    pub fn into_device(self) -> B {
        self.disk.device
    }
}

impl<B: Block> KvRead for Store<B> {
    type Value = Vec<u8>;

    async fn get(&self, key: &str) -> Result<Vec<u8>, KvError> {
        let key = check_key(key)?;
        let mut state = self.state.lock().await;
        let State {
            index,
            gets,
            values,
            ..
        } = &mut *state;
        let entry = index.get(&key).ok_or(KvError::NotFound)?;
        self.get_value(entry, gets, values).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>, KvError> {
        let key = check_key(key)?;
        let mut state = self.state.lock().await;
        let State {
            index,
            gets,
            values,
            ..
        } = &mut *state;
        let entry = index.get(&key).ok_or(KvError::NotFound)?;
        self.get_range_of(entry, offset, len, gets, values).await
    }

    async fn size(&self, key: &str) -> Result<u64, KvError> {
        let key = check_key(key)?;
        let state = self.state.lock().await;
        state
            .index
            .get(&key)
            .map(|e| e.size)
            .ok_or(KvError::NotFound)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, KvError> {
        let prefix = prefix.trim_start_matches('/');
        let state = self.state.lock().await;
        Ok(state
            .index
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| KvEntry {
                key: key.clone(),
                size: entry.size,
            })
            .collect())
    }
}

impl<B: Block> KvWrite for Store<B> {
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let mut batch = Batch::new();
        batch.set(key, value)?;
        self.commit(batch).await
    }

    async fn remove(&self, key: &str) -> Result<(), KvError> {
        let key = check_key(key)?;
        let mut state = self.state.lock().await;
        if !state.index.contains_key(&key) {
            return Err(KvError::NotFound);
        }
        let mut ops = BTreeMap::new();
        ops.insert(key, None);
        self.apply(&mut state, ops).await
    }
}
