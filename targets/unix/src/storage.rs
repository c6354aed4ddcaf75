//! Block devices on host files and key-value stores on host directories.

use lamina_core::device::{
    normalize_key, Block, BlockError, BlockInfo, KvEntry, KvError, KvRead, KvWrite,
};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Sector size of file-backed block devices, as Solo5's tenders use.
pub const SECTOR_SIZE: u32 = 512;

/// A block device on a host file (`--block:NAME=FILE`). The file's size must
/// be a whole number of sectors; it is never grown.
#[derive(Clone)]
pub struct FileBlock {
    file: Rc<File>,
    info: BlockInfo,
}

impl FileBlock {
    /// Opens `path` read-write.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open block file {}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat block file {}: {e}", path.display()))?
            .len();
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE as u64) {
            return Err(format!(
                "block file {} is {len} bytes: not a whole, non-zero number of {SECTOR_SIZE}-byte sectors",
                path.display()
            ));
        }
        Ok(FileBlock {
            file: Rc::new(file),
            info: BlockInfo {
                sector_size: SECTOR_SIZE,
                sectors: len / SECTOR_SIZE as u64,
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
            .read_exact_at(buf, sector * SECTOR_SIZE as u64)
            .map_err(|_| BlockError::Io)
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check_transfer(sector, buf.len())?;
        self.file
            .write_all_at(buf, sector * SECTOR_SIZE as u64)
            .map_err(|_| BlockError::Io)
    }

    /// `fdatasync(2)` of the file: the written data and the metadata needed
    /// to read it back (not the timestamps) reach the disk.
    async fn flush(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|_| BlockError::Io)
    }
}

/// A key-value store on a host directory (`--kv:NAME=DIR`): a key is a path
/// below the directory. Symbolic links are not followed, so no key reaches
/// outside it.
#[derive(Clone)]
pub struct DirKv {
    root: Rc<PathBuf>,
}

fn kv_error(e: io::Error) -> KvError {
    match e.kind() {
        io::ErrorKind::NotFound => KvError::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => KvError::ReadOnly,
        io::ErrorKind::StorageFull => KvError::NoSpace,
        _ => KvError::Io,
    }
}

impl DirKv {
    /// A store over the existing directory `root`.
    pub fn open(root: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(root)
            .map_err(|e| format!("cannot open kv directory {}: {e}", root.display()))?;
        if !meta.is_dir() {
            return Err(format!("kv store {} is not a directory", root.display()));
        }
        Ok(DirKv {
            root: Rc::new(root.to_path_buf()),
        })
    }

    /// The file behind `key`, refusing any path with a symbolic link in it.
    fn path(&self, key: &str) -> Result<PathBuf, KvError> {
        let key = normalize_key(key)?;
        let mut path = (*self.root).clone();
        for segment in key.split('/') {
            path.push(segment);
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.file_type().is_symlink() {
                    return Err(KvError::InvalidKey);
                }
            }
        }
        Ok(path)
    }

    fn walk(&self, dir: &Path, prefix: &str, out: &mut Vec<KvEntry>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                self.walk(&entry.path(), &key, out)?;
            } else if kind.is_file() && !key.contains(".lamina-tmp") {
                out.push(KvEntry {
                    key,
                    size: entry.metadata()?.len(),
                });
            }
        }
        Ok(())
    }
}

impl KvRead for DirKv {
    type Value = Vec<u8>;

    async fn get(&self, key: &str) -> Result<Vec<u8>, KvError> {
        let path = self.path(key)?;
        if path.is_dir() {
            return Err(KvError::NotFound);
        }
        std::fs::read(path).map_err(kv_error)
    }

    async fn size(&self, key: &str) -> Result<u64, KvError> {
        let meta = std::fs::metadata(self.path(key)?).map_err(kv_error)?;
        if !meta.is_file() {
            return Err(KvError::NotFound);
        }
        Ok(meta.len())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, KvError> {
        let mut entries = Vec::new();
        self.walk(&self.root, "", &mut entries).map_err(kv_error)?;
        let prefix = prefix.trim_start_matches('/');
        entries.retain(|e| e.key.starts_with(prefix));
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }
}

impl KvWrite for DirKv {
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(kv_error)?;
        }
        // Write beside, then rename: readers see the old or the new value.
        let tmp = path.with_extension("lamina-tmp");
        std::fs::write(&tmp, value).map_err(kv_error)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            kv_error(e)
        })
    }

    async fn remove(&self, key: &str) -> Result<(), KvError> {
        let path = self.path(key)?;
        if path.is_dir() {
            return Err(KvError::NotFound);
        }
        std::fs::remove_file(path).map_err(kv_error)
    }
}
