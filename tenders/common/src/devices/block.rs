//! Block devices: `--block:NAME=FILE` and `--block-sector-size:NAME=N`.
//! A file whose size is a non-zero multiple of the sector size becomes a
//! BLOCK_BASIC device; the guest reads and writes whole sectors.

use super::DeviceError;
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Sector size when none is given.
pub const DEFAULT_SECTOR_SIZE: u64 = 512;

/// An attached block device.
#[derive(Debug)]
pub struct BlockDevice {
    /// Its manifest name.
    pub name: String,
    /// Its handle (manifest index).
    pub handle: u64,
    /// Bytes.
    pub capacity: u64,
    /// Sector size in bytes.
    pub block_size: u64,
    file: File,
}

impl BlockDevice {
    /// Opens `path` read-write as device `name` at manifest index `handle`.
    pub fn open(
        name: &str,
        handle: u64,
        path: &Path,
        block_size: u64,
    ) -> Result<Self, DeviceError> {
        let open_error = |source: io::Error| DeviceError::BlockOpen {
            name: name.to_string(),
            path: path.to_path_buf(),
            reason: source.to_string(),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(open_error)?;
        // Seek rather than metadata: a block special file reports size 0.
        let capacity = file.seek(SeekFrom::End(0)).map_err(open_error)?;
        if capacity < block_size || capacity % block_size != 0 {
            return Err(DeviceError::BlockSize {
                name: name.to_string(),
                path: path.to_path_buf(),
                capacity,
                block_size,
            });
        }
        Ok(BlockDevice {
            name: name.to_string(),
            handle,
            capacity,
            block_size,
            file,
        })
    }

    /// The host descriptor (spt guests use it in their system calls).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Whether `[offset, offset+len)` lies on the device (hvt's check; the
    /// guest's own bindings also require whole sectors).
    pub fn in_range(&self, offset: u64, len: u64) -> bool {
        offset < self.capacity
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.capacity)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// spt seccomp rules: `pread64` and `pwrite64` on this descriptor only,
    /// one sector at a time, never past the end of the device.
    pub fn spt_rules(&self) -> Result<Vec<(i64, SeccompRule)>, seccompiler::BackendError> {
        let rule = || {
            SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    self.fd() as u64,
                )?,
                SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::Eq,
                    self.block_size,
                )?,
                SeccompCondition::new(
                    3,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::Le,
                    self.capacity - self.block_size,
                )?,
            ])
        };
        Ok(vec![
            (libc::SYS_pread64, rule()?),
            (libc::SYS_pwrite64, rule()?),
        ])
    }
}
