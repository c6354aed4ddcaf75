//! A block device on a host file (feature `std`), for host tools such as
//! `lamina store`: 512-byte sectors, positional reads and writes, and
//! `fdatasync` as the write barrier.

use lamina_core::device::{Block, BlockError, BlockInfo};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::string::String;

/// Bytes per sector of a [`FileBlock`].
pub const FILE_SECTOR_SIZE: u32 = 512;

/// A host file as a block device of 512-byte sectors.
pub struct FileBlock {
    file: File,
    info: BlockInfo,
}

impl FileBlock {
    /// Opens `path`, read-write unless `read_only`. Its length must be a
    /// whole, non-zero number of sectors.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| std::format!("cannot open {}: {e}", path.display()))?;
        Self::from_file(file, path)
    }

    /// Creates (or truncates) `path` as a zeroed device of `bytes` bytes.
    pub fn create(path: &Path, bytes: u64) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| std::format!("cannot create {}: {e}", path.display()))?;
        file.set_len(bytes)
            .map_err(|e| std::format!("cannot size {}: {e}", path.display()))?;
        Self::from_file(file, path)
    }

    fn from_file(file: File, path: &Path) -> Result<Self, String> {
        let len = file
            .metadata()
            .map_err(|e| std::format!("cannot stat {}: {e}", path.display()))?
            .len();
        if len == 0 || !len.is_multiple_of(u64::from(FILE_SECTOR_SIZE)) {
            return Err(std::format!(
                "{} is {len} bytes: not a whole, non-zero number of {FILE_SECTOR_SIZE}-byte sectors",
                path.display()
            ));
        }
        Ok(FileBlock {
            file,
            info: BlockInfo {
                sector_size: FILE_SECTOR_SIZE,
                sectors: len / u64::from(FILE_SECTOR_SIZE),
            },
        })
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

    async fn flush(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|_| BlockError::Io)
    }
}
