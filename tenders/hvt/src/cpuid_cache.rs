//! A file cache of `KVM_GET_SUPPORTED_CPUID`, which costs about 0.45 ms on
//! nested KVM-PVM: a fifth of a tender's start-up.
//!
//! The answer depends on the host kernel (and its KVM module) and the
//! CPU, which change only across a reboot, so the cache key is the boot's
//! id (/proc/sys/kernel/random/boot_id, new at every boot, kexec
//! included): one small file read, where the kernel release and
//! /proc/cpuinfo's model name and flags lines (fixed at boot as well) took
//! two files and a scan. A KVM module reloaded with other parameters
//! within a boot is not seen, as it was not before. The file lives in
//! `$XDG_CACHE_HOME/lamina` (else `~/.cache/lamina`); it is checked
//! completely on load (magic, key, entry count, exact size) and anything
//! that does not match is ignored and rewritten. Failing to cache is never an error.

use kvm_bindings::kvm_cpuid_entry2;
use std::path::PathBuf;

const MAGIC: &[u8; 8] = b"LMNCPUID";
/// Bytes of one entry: function, index, flags, eax, ebx, ecx, edx.
const ENTRY_BYTES: usize = 7 * 4;
/// Most entries accepted from a file.
pub const MAX_ENTRIES: usize = kvm_bindings::KVM_MAX_CPUID_ENTRIES;

/// The key: what the supported CPUID depends on, the running boot.
pub fn host_key() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| format!("boot {id}"))
}

/// The cache file's path.
pub fn path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("lamina").join("kvm-supported-cpuid"))
}

/// Encodes entries for `key`.
pub fn encode(key: &str, entries: &[kvm_cpuid_entry2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len() + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        for word in [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out
}

/// Decodes a file written by [`encode`] for the same `key`; `None` for
/// anything else.
pub fn decode(key: &str, bytes: &[u8]) -> Option<Vec<kvm_cpuid_entry2>> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(..8)? != MAGIC {
        return None;
    }
    let key_len = word(8)? as usize;
    if bytes.get(12..12 + key_len)? != key.as_bytes() {
        return None;
    }
    let count_at = 12 + key_len;
    let count = word(count_at)? as usize;
    let start = count_at + 4;
    if count == 0 || count > MAX_ENTRIES || bytes.len() != start + count * ENTRY_BYTES {
        return None;
    }
    (0..count)
        .map(|i| {
            let at = start + i * ENTRY_BYTES;
            Some(kvm_cpuid_entry2 {
                function: word(at)?,
                index: word(at + 4)?,
                flags: word(at + 8)?,
                eax: word(at + 12)?,
                ebx: word(at + 16)?,
                ecx: word(at + 20)?,
                edx: word(at + 24)?,
                ..Default::default()
            })
        })
        .collect()
}

/// The cached entries for this host, if there are valid ones.
pub fn load() -> Option<Vec<kvm_cpuid_entry2>> {
    let key = host_key()?;
    decode(&key, &std::fs::read(path()?).ok()?)
}

/// Stores `entries` for this host (best effort, atomically by rename).
pub fn store(entries: &[kvm_cpuid_entry2]) {
    let (Some(key), Some(path)) = (host_key(), path()) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    let temp = dir.join(format!(".kvm-supported-cpuid.{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&temp, encode(&key, entries)))
        .and_then(|()| std::fs::rename(&temp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<kvm_cpuid_entry2> {
        (0..5)
            .map(|i| kvm_cpuid_entry2 {
                function: i,
                index: i * 2,
                flags: 1,
                eax: 0xdead_0000 + i,
                edx: 7,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn round_trip_and_rejection() {
        let bytes = encode("kernel\ncpu", &entries());
        let back = decode("kernel\ncpu", &bytes).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(
            (back[3].function, back[3].index, back[3].eax, back[3].edx),
            (3, 6, 0xdead_0003, 7)
        );
        assert!(
            decode("other kernel\ncpu", &bytes).is_none(),
            "another host's file"
        );
        assert!(
            decode("kernel\ncpu", &bytes[..bytes.len() - 1]).is_none(),
            "truncated"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode("kernel\ncpu", &longer).is_none(), "trailing bytes");
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(decode("kernel\ncpu", &bad).is_none(), "magic");
        assert!(
            decode("kernel\ncpu", &encode("kernel\ncpu", &[])).is_none(),
            "empty"
        );
        for len in 0..bytes.len() {
            let _ = decode("kernel\ncpu", &bytes[..len]);
        }
    }

    #[test]
    fn the_host_has_a_key() {
        let key = host_key().unwrap();
        assert_eq!(key, host_key().unwrap());
        assert!(
            key.starts_with("boot ") && key.len() > "boot ".len(),
            "{key}"
        );
    }
}
