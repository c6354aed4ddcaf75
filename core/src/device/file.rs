//! A block device on a host file (feature `std`): the unix target's
//! `--block:NAME=FILE` and host tools such as `lamina store`.

use super::{Block, BlockError, BlockInfo};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Sector size of file-backed block devices, as Solo5's tenders use.
pub const FILE_SECTOR_SIZE: u32 = 512;

/// A host file as a block device of 512-byte sectors: positional reads and
/// writes, `fdatasync(2)` as the write barrier. The file's size must be a
/// whole number of sectors; it is never grown. Clones share the file.
#[derive(Debug, Clone)]
pub struct FileBlock {
    file: Rc<File>,
    info: BlockInfo,
}

impl FileBlock {
    /// Opens `path`, read-write unless `read_only`.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, String> {
        // A FIFO would block the opening until a writer came, and a
        // directory fail its first read with a bare I/O error.
        let kind = std::fs::metadata(path)
            .map_err(|e| format!("cannot open block file {}: {e}", path.display()))?
            .file_type();
        if !kind.is_file() && !std::os::unix::fs::FileTypeExt::is_block_device(&kind) {
            return Err(format!(
                "cannot open block file {}: not a regular file or block device",
                path.display()
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| format!("cannot open block file {}: {e}", path.display()))?;
        lock(&file, path, read_only)?;
        Self::from_file(file, path)
    }

    /// Creates (or truncates) `path` as a zeroed device of `bytes` bytes.
    pub fn create(path: &Path, bytes: u64) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot create block file {}: {e}", path.display()))?;
        // Locked before it is emptied: a disk in use stays whole.
        lock(&file, path, false)?;
        file.set_len(0)
            .and_then(|()| write_zeroes(&file, bytes))
            .map_err(|e| {
                // Emptied, not left short (a full disk): a short image
                // would pass for a smaller disk; an empty one is refused.
                let _ = file.set_len(0);
                format!("cannot size block file {}: {e}", path.display())
            })?;
        Self::from_file(file, path)
    }

    fn from_file(file: File, path: &Path) -> Result<Self, String> {
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat block file {}: {e}", path.display()))?
            .len();
        if len == 0 || !len.is_multiple_of(u64::from(FILE_SECTOR_SIZE)) {
            return Err(format!(
                "block file {} is {len} bytes: not a whole, non-zero number of {FILE_SECTOR_SIZE}-byte sectors",
                path.display()
            ));
        }
        Ok(FileBlock {
            file: Rc::new(file),
            info: BlockInfo {
                sector_size: FILE_SECTOR_SIZE,
                sectors: len / u64::from(FILE_SECTOR_SIZE),
            },
        })
    }
}

/// Fills the empty `file` with `bytes` zero bytes written to disk, then
/// syncs it: a disk image whose blocks the host file system has already
/// allocated, as a real disk's are. In a sparse file (or one from
/// `fallocate`, whose extents stay unwritten until written) the first
/// write to each block allocates it, and the write barrier after it
/// (`fdatasync`) must then commit the file system's journal as well:
/// `lamina-store`'s durable sets on spt ran at 3,960/s on a sparse 256 MiB
/// image and 6,450-7,600/s on a written one (bench/store.py's kv loop, ext4
/// on this host's virtual disk), as PostgreSQL zero-fills each new WAL
/// segment for the same reason. A full host file system then shows when
/// the image is made, not as an I/O error in the middle of a guest's
/// write.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("lamina-doc-zeroes-{}", std::process::id()));
/// let file = std::fs::File::create(&dir).unwrap();
/// lamina_core::device::write_zeroes(&file, 3 << 20).unwrap();
/// assert_eq!(file.metadata().unwrap().len(), 3 << 20);
/// std::fs::remove_file(&dir).unwrap();
/// ```
pub fn write_zeroes(file: &File, bytes: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeroes = alloc::vec![0u8; CHUNK as usize];
    let mut at = 0;
    while at < bytes {
        let len = (bytes - at).min(CHUNK);
        file.write_all_at(&zeroes[..len as usize], at)?;
        at += len;
    }
    file.sync_all()
}

/// Takes `file`'s lock (`flock(2)`, as the tenders take theirs): shared
/// to read, exclusive to write, so that a store is never written by two
/// processes at once (two unikernels, or `lamina store put` beside a
/// running one), nor read while another writes it. A file system without
/// locks leaves the file unlocked.
fn lock(file: &File, path: &Path, shared: bool) -> Result<(), String> {
    let taken = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match taken {
        Err(TryLockError::WouldBlock) => Err(format!(
            "block file {} is in use by another process (a running unikernel or lamina store)",
            path.display()
        )),
        Ok(()) | Err(TryLockError::Error(_)) => Ok(()),
    }
}

impl Block for FileBlock {
    fn info(&self) -> BlockInfo {
        self.info
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        self.file
            .read_exact_at(buf, sector * u64::from(FILE_SECTOR_SIZE))
            .map_err(|_| BlockError::Io)
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        self.file
            .write_all_at(buf, sector * u64::from(FILE_SECTOR_SIZE))
            .map_err(|_| BlockError::Io)
    }

    /// `fdatasync(2)` of the file: the written data and the metadata needed
    /// to read it back (not the timestamps) reach the disk.
    async fn flush(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|_| BlockError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_created_device_has_its_blocks_allocated_not_sparse() {
        let path = std::env::temp_dir().join(format!("lamina-file-block-{}", std::process::id()));
        let bytes = (5 << 20) + 512;
        let device = FileBlock::create(&path, bytes).unwrap();
        assert_eq!(device.info().sectors * 512, bytes);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), bytes);
        // st_blocks counts the 512-byte units the file system allocated: a
        // sparse file of this size has none.
        assert!(
            meta.blocks() * 512 >= bytes,
            "{} of {bytes} bytes allocated",
            meta.blocks() * 512
        );
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
        std::fs::remove_file(&path).unwrap();
    }
}
