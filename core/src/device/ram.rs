//! A block device in memory: a RAM disk for tests, fuzzing and scratch
//! space that need not survive the unikernel.

use super::{Block, BlockError, BlockInfo};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

/// A block device whose sectors are a `Vec<u8>` in memory. Writes land in
/// place and are as durable as memory is, so [`Block::flush`] has nothing to
/// do; a test that needs crashes and torn writes wraps one of its own.
///
/// ```
/// use lamina_core::device::{Block, RamBlock};
/// let disk = RamBlock::new(512, 8);
/// assert_eq!(disk.info().capacity(), 4096);
/// assert_eq!(RamBlock::from_bytes(512, vec![0; 1000]).map(|d| d.info().sectors), None);
/// ```
#[derive(Debug)]
pub struct RamBlock {
    sector_size: u32,
    bytes: RefCell<Vec<u8>>,
}

impl RamBlock {
    /// `sectors` zeroed sectors of `sector_size` bytes.
    pub fn new(sector_size: u32, sectors: u64) -> Self {
        let len = usize::try_from(sectors * u64::from(sector_size)).expect("a RAM disk that fits");
        RamBlock {
            sector_size,
            bytes: RefCell::new(vec![0; len]),
        }
    }

    /// A device over `bytes` (an image made elsewhere); `None` unless it is
    /// a whole number of sectors and `sector_size` is not zero.
    pub fn from_bytes(sector_size: u32, bytes: Vec<u8>) -> Option<Self> {
        let size = sector_size as usize;
        (size != 0 && bytes.len().is_multiple_of(size)).then(|| RamBlock {
            sector_size,
            bytes: RefCell::new(bytes),
        })
    }

    /// The device's contents.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes.into_inner()
    }

    /// Where sector `sector`'s bytes start; the transfer is checked first.
    fn offset(&self, sector: u64, len: usize) -> Result<usize, BlockError> {
        self.check_transfer(sector, len)?;
        // In range: the check above put the whole transfer inside `bytes`.
        Ok(sector as usize * self.sector_size as usize)
    }
}

impl Block for RamBlock {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            sector_size: self.sector_size,
            sectors: match self.sector_size {
                0 => 0,
                size => self.bytes.borrow().len() as u64 / u64::from(size),
            },
        }
    }

    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = self.offset(sector, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[at..at + buf.len()]);
        Ok(())
    }

    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        let at = self.offset(sector, buf.len())?;
        self.bytes.borrow_mut()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    /// Memory is as durable as this device gets.
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
}
