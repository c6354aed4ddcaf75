//! Read-only data baked into the image at build time ("crunch"): a website,
//! a zone file, certificates. `lamina-crunch` generates a [`Baked`] from a
//! directory; it implements [`KvRead`] and is the same on every target.

use super::kv::{normalize_key, KvEntry, KvError, KvRead};
use alloc::string::ToString;
use alloc::vec::Vec;

/// One baked file.
#[derive(Debug, Clone, Copy)]
pub struct BakedFile {
    /// Its key: the path below the baked directory, `/`-separated.
    pub key: &'static str,
    /// Its bytes.
    pub data: &'static [u8],
    /// Its media type, from the extension.
    pub content_type: &'static str,
    /// A strong validator of the bytes, quoted, for HTTP `ETag`.
    pub etag: &'static str,
}

/// A baked directory: files sorted by key.
#[derive(Debug, Clone, Copy)]
pub struct Baked {
    files: &'static [BakedFile],
}

impl Baked {
    /// The store over `files`, which must be sorted by key (the generator
    /// sorts them).
    pub const fn new(files: &'static [BakedFile]) -> Self {
        Baked { files }
    }

    /// The file under `key` (normalised first; keys escaping the store are
    /// refused).
    pub fn file(&self, key: &str) -> Result<&'static BakedFile, KvError> {
        let key = normalize_key(key)?;
        self.files
            .binary_search_by(|f| f.key.cmp(key.as_str()))
            .map(|i| &self.files[i])
            .map_err(|_| KvError::NotFound)
    }

    /// Every file.
    pub fn files(&self) -> &'static [BakedFile] {
        self.files
    }
}

impl KvRead for Baked {
    type Value = &'static [u8];

    async fn get(&self, key: &str) -> Result<&'static [u8], KvError> {
        self.file(key).map(|f| f.data)
    }

    async fn size(&self, key: &str) -> Result<u64, KvError> {
        self.file(key).map(|f| f.data.len() as u64)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, KvError> {
        let prefix = prefix.trim_start_matches('/');
        Ok(self
            .files
            .iter()
            .filter(|f| f.key.starts_with(prefix))
            .map(|f| KvEntry {
                key: f.key.to_string(),
                size: f.data.len() as u64,
            })
            .collect())
    }
}
