/// The geometry of a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Bytes in a sector: the unit of every transfer (512 or 4096).
    pub sector_size: u32,
    /// Number of sectors on the device.
    pub sectors: u64,
}

impl BlockInfo {
    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.sectors * self.sector_size as u64
    }
}

/// Why a block transfer failed. The caller's buffer is left as it was on
/// writes and unspecified on reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The buffer is empty or not a whole number of sectors.
    Unaligned,
    /// The transfer runs past the last sector.
    OutOfRange,
    /// The device is read-only.
    ReadOnly,
    /// The backing store reported an I/O error.
    Io,
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlockError::Unaligned => "buffer is not a whole number of sectors",
            BlockError::OutOfRange => "transfer runs past the end of the device",
            BlockError::ReadOnly => "device is read-only",
            BlockError::Io => "I/O error on the backing store",
        })
    }
}

/// A device of fixed-size sectors.
///
/// Implementations must:
/// - transfer whole sectors only: `buf.len()` is a non-zero multiple of
///   [`BlockInfo::sector_size`], else [`BlockError::Unaligned`];
/// - reject transfers past the end with [`BlockError::OutOfRange`] before
///   touching the device;
/// - complete a transfer entirely or report an error (no partial reads);
/// - make a completed write visible to every later read;
/// - make every write completed before a [`flush`](Block::flush) durable
///   (on stable storage, surviving a crash of the host) when it returns.
pub trait Block {
    /// Sector size and count.
    fn info(&self) -> BlockInfo;
    /// Reads `buf.len() / sector_size` sectors starting at `sector`.
    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / sector_size` sectors starting at `sector`.
    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// A write barrier: when it returns `Ok`, every write that completed
    /// before the call is durable. Writes issued while it runs are not
    /// covered. An error means durability is unknown; the data written may
    /// still be read back.
    async fn flush(&self) -> Result<(), BlockError>;

    /// [`write`](Block::write), then [`flush`](Block::flush): when it
    /// returns `Ok`, this write and every write that completed before the
    /// call are durable. A device may carry both in one round trip (on
    /// hvt's block ring one exit instead of a wake-up of the tender's
    /// thread and an exit): what a commit record ends with.
    async fn write_and_flush(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.write(sector, buf).await?;
        self.flush().await
    }

    /// Checks a transfer of `len` bytes at `sector` against the geometry: the
    /// one place implementations validate requests.
    fn check_transfer(&self, sector: u64, len: usize) -> Result<(), BlockError> {
        let info = self.info();
        let size = info.sector_size as usize;
        if len == 0 || size == 0 || !len.is_multiple_of(size) {
            return Err(BlockError::Unaligned);
        }
        let count = (len / size) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= info.sectors => Ok(()),
            _ => Err(BlockError::OutOfRange),
        }
    }
}
