//! Block devices: `--block:NAME=FILE` and `--block-sector-size:NAME=N`.
//! A file whose size is a non-zero multiple of the sector size becomes a
//! BLOCK_BASIC device; the guest reads and writes whole sectors.

use super::DeviceError;
use crate::mem::{GuestBytes, GuestBytesMut};
use lamina_abi::mft::block_features::{self, MAX_TRANSFER};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
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
    /// The [`block_features`] turned on for the guest (0 for a guest that
    /// does not declare `BLOCK_IO`: Solo5's one-sector transfers).
    pub features: u16,
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
        // One writer per disk: another tender, a unix unikernel or `lamina
        // store` on the same file would interleave its writes with the
        // guest's (they take the same `flock(2)`, in lamina-core's `FileBlock`).
        if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
            return Err(open_error(io::Error::other(
                "it is in use by another process (a running unikernel or lamina store)",
            )));
        }
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
            features: 0,
            file,
        })
    }

    /// Another handle on the same device and file (a duplicated
    /// descriptor), for a thread that serves it alongside the owner (the
    /// hvt block ring's I/O thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(BlockDevice {
            name: self.name.clone(),
            handle: self.handle,
            capacity: self.capacity,
            block_size: self.block_size,
            features: self.features,
            file: self.file.try_clone()?,
        })
    }

    /// The host descriptor (spt guests use it in their system calls).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Whether a request for `[offset, offset+len)` is one the device
    /// serves: whole sectors (`offset` and `len` multiples of the sector
    /// size, `len` not zero), all on the device. Any other is the guest's
    /// mistake, answered with SOLO5_R_EINVAL (hvt; spt's filter kills it).
    pub fn accepts(&self, offset: u64, len: u64) -> bool {
        len > 0
            && offset.is_multiple_of(self.block_size)
            && len.is_multiple_of(self.block_size)
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.capacity)
    }

    /// Fills `buf` from the device at `offset`.
    pub fn read_at(&self, offset: u64, buf: GuestBytesMut<'_>) -> io::Result<()> {
        buf.read_exact_at(&self.file, offset)
    }

    /// Writes all of `data` to the device at `offset`.
    pub fn write_at(&self, offset: u64, data: GuestBytes<'_>) -> io::Result<()> {
        data.write_all_at(&self.file, offset)
    }

    /// Makes every completed write durable: `fdatasync(2)` of the file.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// spt seccomp rules: `pread64` and `pwrite64` on this descriptor only,
    /// never past the end of the device; one sector at a time, or with
    /// [`block_features::MULTI_SECTOR`] any whole number of sectors up to
    /// [`MAX_TRANSFER`] bytes as `spt_transfer_len` splits them (a filter
    /// cannot add two arguments, so a ladder of rules: a length of up to
    /// `sector << k` only at offsets up to `capacity - (sector << k)`);
    /// `fdatasync` of the descriptor with [`block_features::FLUSH`].
    pub fn spt_rules(&self) -> Result<Vec<(i64, SeccompRule)>, seccompiler::BackendError> {
        let fd_is = || {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                self.fd() as u64,
            )
        };
        let single = || {
            SeccompRule::new(vec![
                fd_is()?,
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
        let mut rules = vec![
            (libc::SYS_pread64, single()?),
            (libc::SYS_pwrite64, single()?),
        ];
        if self.features & block_features::MULTI_SECTOR != 0 {
            let mut span = self.block_size * 2;
            while span <= MAX_TRANSFER && span <= self.capacity {
                let rule = || {
                    SeccompRule::new(vec![
                        fd_is()?,
                        // A whole number of sectors, at most `span` bytes...
                        SeccompCondition::new(
                            2,
                            SeccompCmpArgLen::Qword,
                            SeccompCmpOp::MaskedEq(self.block_size - 1),
                            0,
                        )?,
                        SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, span)?,
                        // ...starting where `span` bytes still fit.
                        SeccompCondition::new(
                            3,
                            SeccompCmpArgLen::Qword,
                            SeccompCmpOp::Le,
                            self.capacity - span,
                        )?,
                    ])
                };
                rules.push((libc::SYS_pread64, rule()?));
                rules.push((libc::SYS_pwrite64, rule()?));
                span *= 2;
            }
        }
        if self.features & block_features::FLUSH != 0 {
            rules.push((libc::SYS_fdatasync, SeccompRule::new(vec![fd_is()?])?));
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_sectors_on_the_device_are_accepted() {
        let path =
            std::env::temp_dir().join(format!("lamina-tender-{}-sectors", std::process::id()));
        File::create(&path).unwrap().set_len(4096).unwrap();
        let device = BlockDevice::open("storage", 1, &path, 512).unwrap();
        std::fs::remove_file(&path).unwrap();
        for (offset, len) in [(0, 512), (3584, 512), (0, 4096), (1024, 1536)] {
            assert!(device.accepts(offset, len), "{offset}+{len}");
        }
        for (offset, len) in [
            (1, 512),
            (0, 511),
            (0, 513),
            (512, 0),
            (256, 512),
            (4096, 512),
            (3584, 1024),
            (u64::MAX - 511, 512),
        ] {
            assert!(!device.accepts(offset, len), "{offset}+{len}");
        }
    }

    #[test]
    fn spt_rules_grow_with_the_features_the_guest_asked_for() {
        let path = std::env::temp_dir().join(format!("lamina-tender-{}-rules", std::process::id()));
        File::create(&path).unwrap().set_len(1 << 20).unwrap();
        let mut device = BlockDevice::open("storage", 1, &path, 4096).unwrap();
        std::fs::remove_file(&path).unwrap();
        let calls = |device: &BlockDevice| {
            let rules = device.spt_rules().unwrap();
            let count = |n| rules.iter().filter(|(call, _)| *call == n).count();
            (
                count(libc::SYS_pread64),
                count(libc::SYS_pwrite64),
                count(libc::SYS_fdatasync),
            )
        };
        // Solo5's: one sector per call, no flush.
        assert_eq!(calls(&device), (1, 1, 0));
        // Spans of 8 KiB to 256 KiB: six more rules each way.
        device.features = block_features::MULTI_SECTOR;
        assert_eq!(calls(&device), (7, 7, 0));
        device.features = block_features::MULTI_SECTOR | block_features::FLUSH;
        assert_eq!(calls(&device), (7, 7, 1));
    }
}
