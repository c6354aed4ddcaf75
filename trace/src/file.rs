//! The trace file: a [`HEADER_LEN`]-byte header, then records as drained
//! from the ring, in order.
//!
//! | bytes | what |
//! |-------|------|
//! | 0..8   | [`FILE_MAGIC`], "LMTRACE1" |
//! | 8..12  | format version, [`VERSION`] |
//! | 12..16 | reserved, zero |
//! | 16..24 | clock offset: nanoseconds to add to a record's time to get the host's `CLOCK_MONOTONIC` (`i64`) |
//! | 24..32 | the target that wrote it (`unix`, `spt`, `hvt`, `virtio`), ASCII, zero-padded |
//!
//! A file whose writer was killed may end inside a record; readers report
//! that and keep what came before.

use crate::record::{parse, Error, Event};

/// The first eight bytes of a trace file.
pub const FILE_MAGIC: [u8; 8] = *b"LMTRACE1";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 32;

/// A trace file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Nanoseconds from a record's time to the host's `CLOCK_MONOTONIC`.
    pub clock_offset: i64,
    /// The target that wrote the file.
    pub target: [u8; 8],
}

impl Header {
    /// A header for `target` (cut to eight bytes).
    pub fn new(target: &str, clock_offset: i64) -> Header {
        let mut name = [0; 8];
        let n = target.len().min(8);
        name[..n].copy_from_slice(&target.as_bytes()[..n]);
        Header {
            clock_offset,
            target: name,
        }
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..8].copy_from_slice(&FILE_MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.clock_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.target);
        out
    }

    /// Reads the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Header, FileError> {
        let head = bytes.get(..HEADER_LEN).ok_or(FileError::NotATrace)?;
        if head[..8] != FILE_MAGIC {
            return Err(FileError::NotATrace);
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            return Err(FileError::Version(version));
        }
        let mut offset = [0; 8];
        offset.copy_from_slice(&head[16..24]);
        let mut target = [0; 8];
        target.copy_from_slice(&head[24..32]);
        Ok(Header {
            clock_offset: i64::from_le_bytes(offset),
            target,
        })
    }

    /// The target's name.
    pub fn target_name(&self) -> &str {
        let end = self.target.iter().position(|&b| b == 0).unwrap_or(8);
        core::str::from_utf8(&self.target[..end]).unwrap_or("?")
    }
}

/// Why a file could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileError {
    /// No trace header.
    NotATrace,
    /// A version this reader does not know.
    Version(u32),
    /// A damaged record at this byte offset of the file.
    Record(usize, Error),
}

impl core::fmt::Display for FileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FileError::NotATrace => f.write_str("not a Lamina trace file (no LMTRACE1 header)"),
            FileError::Version(v) => {
                write!(f, "trace format version {v}; this reader knows {VERSION}")
            }
            FileError::Record(at, e) => write!(f, "damaged record at byte {at}: {e}"),
        }
    }
}

/// The records of a trace file after its header, in order; the first
/// damaged record ends the iteration with its error.
pub struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    /// The records of a whole file (`bytes` includes the header).
    pub fn new(bytes: &'a [u8]) -> Result<(Header, Records<'a>), FileError> {
        let header = Header::parse(bytes)?;
        Ok((
            header,
            Records {
                bytes,
                at: HEADER_LEN,
                failed: false,
            },
        ))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Event<'a>, FileError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed || self.at >= self.bytes.len() {
                return None;
            }
            match parse(&self.bytes[self.at..]) {
                Ok((event, len)) => {
                    self.at += len;
                    if event.kind != crate::Kind::Pad {
                        return Some(Ok(event));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(FileError::Record(self.at, e)));
                }
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::record::{encode, Kind, Track};
    use std::vec::Vec;

    #[test]
    fn a_file_reads_back_and_a_cut_one_keeps_what_came_before() {
        let mut file = Header::new("hvt", -42).to_bytes().to_vec();
        encode(&mut file, Kind::Poll, 0, Track::MAIN, 10, &[], &[]);
        encode(&mut file, Kind::Pad, 0, Track::NONE, 0, &[], &[]);
        encode(&mut file, Kind::Poll, 1, Track::MAIN, 20, &[], &[]);
        let (header, records) = Records::new(&file).unwrap();
        assert_eq!((header.target_name(), header.clock_offset), ("hvt", -42));
        let times: Vec<u64> = records.map(|r| r.unwrap().time).collect();
        assert_eq!(times, [10, 20]);

        let cut = &file[..file.len() - 3];
        let (_, records) = Records::new(cut).unwrap();
        let results: Vec<_> = records.collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(
            results[1],
            Err(FileError::Record(_, Error::Truncated))
        ));
        assert_eq!(
            Header::parse(b"not a trace at all, no no no no no").unwrap_err(),
            FileError::NotATrace
        );
    }
}
