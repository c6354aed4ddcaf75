//! Reading a unikernel image file: what both tenders do first, and the one
//! error type that names the file whatever is wrong with it.

use crate::elf::{Elf, ElfError};
use crate::notes::{read_notes, ImageNotes, NoteError};
use lamina_abi::note::AbiTarget;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why an image cannot be used; the message starts with its path.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read {path:?}: {reason}")]
    Read {
        /// The image.
        path: PathBuf,
        /// The OS error.
        reason: std::io::Error,
    },
    /// The ELF is malformed or breaks the image rules.
    #[error("{path:?}: {error}")]
    Elf {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        error: ElfError,
    },
    /// The notes are missing or wrong (not a unikernel for this tender).
    #[error("{path:?}: {error}")]
    Notes {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        error: NoteError,
    },
}

impl ImageError {
    /// An ELF error in the image at `path`.
    pub fn elf(path: &Path) -> impl Fn(ElfError) -> ImageError + '_ {
        move |error| ImageError::Elf {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// The bytes of the image at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    let error = |reason| ImageError::Read {
        path: path.to_path_buf(),
        reason,
    };
    // A FIFO would block the open until a writer came, and /dev/zero be
    // read until memory ran out: only a file holds an image.
    if !std::fs::metadata(path).map_err(error)?.is_file() {
        return Err(error(std::io::Error::other(
            "not a regular file (a directory, FIFO or device); pass a unikernel image",
        )));
    }
    std::fs::read(path).map_err(error)
}

/// Parses `bytes` (the image at `path`) as an ELF for `target` and reads
/// its notes.
pub fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    target: AbiTarget,
) -> Result<(Elf<'a>, ImageNotes), ImageError> {
    let elf = Elf::parse(bytes).map_err(ImageError::elf(path))?;
    let notes = read_notes(&elf, target).map_err(|error| ImageError::Notes {
        path: path.to_path_buf(),
        error,
    })?;
    Ok((elf, notes))
}
