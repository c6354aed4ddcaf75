//! Block devices on host files and key-value stores on host directories.

pub use lamina_core::device::FileBlock;
use lamina_core::device::{normalize_key, KvEntry, KvError, KvRead, KvWrite};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
