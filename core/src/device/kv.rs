use alloc::string::String;
use alloc::vec::Vec;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// No value is stored under the key.
    NotFound,
    /// The key is empty, has an empty, `.` or `..` segment, or a byte that the
    /// store cannot hold (NUL, backslash). Keys are `/`-separated paths.
    InvalidKey,
    /// The store is read-only.
    ReadOnly,
    /// The store has no room for the value.
    NoSpace,
    /// The backing store failed.
    Io,
}

impl core::fmt::Display for KvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KvError::NotFound => "no such key",
            KvError::InvalidKey => "invalid key",
            KvError::ReadOnly => "store is read-only",
            KvError::NoSpace => "store is full",
            KvError::Io => "I/O error on the backing store",
        })
    }
}

/// One key in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The full key.
    pub key: String,
    /// Size of the value in bytes.
    pub size: u64,
}

/// A read-only store of byte values under `/`-separated keys (a baked
/// website, a zone file, certificates).
///
/// Implementations must:
/// - accept keys with or without a leading `/` as the same key, and reject
///   with [`KvError::InvalidKey`] keys that would escape the store (`..`);
/// - return whole values from [`KvRead::get`], and from [`KvRead::get_range`]
///   the bytes of the range that lie inside the value (a short result means
///   the value ended);
/// - list keys in lexicographic order.
pub trait KvRead {
    /// What [`KvRead::get`] returns: borrowed for baked data, owned for files.
    type Value: AsRef<[u8]>;
    /// The whole value stored under `key`.
    async fn get(&self, key: &str) -> Result<Self::Value, KvError>;
    /// Up to `len` bytes of the value under `key`, starting at `offset`.
    async fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>, KvError> {
        let value = self.get(key).await?;
        let bytes = value.as_ref();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }
    /// Size in bytes of the value under `key`.
    async fn size(&self, key: &str) -> Result<u64, KvError>;
    /// Every key that starts with `prefix`, in order.
    async fn list(&self, prefix: &str) -> Result<Vec<KvEntry>, KvError>;
}

/// A store that can also be changed.
///
/// Implementations must make [`KvWrite::set`] atomic per key: a reader sees
/// the old value or the new one, never a mixture, including after a crash
/// where the backing store allows it.
pub trait KvWrite: KvRead {
    /// Stores `value` under `key`, replacing any value there.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Removes `key`; removing a missing key is [`KvError::NotFound`].
    async fn remove(&self, key: &str) -> Result<(), KvError>;
}

/// Normalises a key: strips leading and repeated `/`, rejects empty, `.` and
/// `..` segments and bytes no store can hold. The one place keys are checked.
///
/// ```
/// use lamina_core::device::normalize_key;
/// assert_eq!(normalize_key("/css//site.css").unwrap(), "css/site.css");
/// assert!(normalize_key("../etc/passwd").is_err());
/// ```
pub fn normalize_key(key: &str) -> Result<String, KvError> {
    let mut out = String::with_capacity(key.len());
    for segment in key.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." || segment.contains(['\0', '\\']) {
            return Err(KvError::InvalidKey);
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(segment);
    }
    if out.is_empty() {
        return Err(KvError::InvalidKey);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised_and_confined() {
        assert_eq!(normalize_key("a/b").unwrap(), "a/b");
        assert_eq!(normalize_key("///a//b/").unwrap(), "a/b");
        for bad in ["", "/", "..", "a/../b", "./a", "a\\b", "a\0"] {
            assert_eq!(normalize_key(bad), Err(KvError::InvalidKey), "{bad:?}");
        }
    }
}
