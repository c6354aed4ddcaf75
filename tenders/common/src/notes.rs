//! What an image says about itself: the ABI1 note (which tender, which ABI
//! version), the MFT1 note (its devices) and Lamina's LMN1 note (what it
//! promises so a tender may run it faster).

use crate::elf::{Elf, ElfError};
use lamina_abi::mft::{self, Manifest, MftError};
use lamina_abi::note::{AbiTarget, LAMINA_OWNER, SOLO5_OWNER, TYPE_ABI1, TYPE_LMN1, TYPE_MFT1};
use thiserror::Error;

/// Largest ABI1 descriptor (Solo5's ABI1_NOTE_MAX_SIZE).
const ABI1_MAX: u64 = 32;
/// Largest MFT1 descriptor: padding plus a full manifest.
const MFT1_MAX: u64 = 12 + mft::MAX_ENTRIES as u64 * mft::ENTRY_SIZE as u64;
/// Largest LMN1 descriptor.
const LMN1_MAX: u64 = 64;

/// Why the image's notes were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// The notes could not be read.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// No ABI1 note.
    #[error(
        "no Solo5 ABI information found in the executable; is it a Solo5 or Lamina unikernel?"
    )]
    NoAbi,
    /// Built for another tender.
    #[error("executable is not for the {expected} target (its ABI note says target {found}); build it for {expected}")]
    WrongTarget {
        /// This tender's target name.
        expected: &'static str,
        /// The note's target number.
        found: u32,
    },
    /// ABI version other than 2.
    #[error("executable requests unsupported ABI version {0}; this tender speaks version 2")]
    WrongVersion(u32),
    /// No MFT1 note.
    #[error("no Solo5 manifest found in the executable; build it with a device manifest")]
    NoManifest,
    /// The manifest is malformed.
    #[error("the Solo5 manifest in the executable is invalid: {0}; rebuild the image")]
    BadManifest(MftError),
}

/// The notes of an image, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNotes {
    /// The manifest as the image carries it (validated, nothing attached).
    pub manifest: Vec<u8>,
    /// Lamina feature bits (`lamina_abi::note::features`), 0 without LMN1.
    pub lamina_features: u32,
}

/// Reads and checks the notes of an image meant for `target`.
pub fn read_notes(elf: &Elf<'_>, target: AbiTarget) -> Result<ImageNotes, NoteError> {
    let abi = elf
        .find_note(SOLO5_OWNER, TYPE_ABI1, 4, ABI1_MAX)?
        .ok_or(NoteError::NoAbi)?;
    let word = |at: usize| {
        abi.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (found, version) = (word(0).unwrap_or(0), word(4).unwrap_or(0));
    if found != target as u32 {
        return Err(NoteError::WrongTarget {
            expected: match target {
                AbiTarget::Hvt => "hvt",
                AbiTarget::Spt => "spt",
                AbiTarget::Virtio => "virtio",
            },
            found,
        });
    }
    if version != 2 {
        return Err(NoteError::WrongVersion(version));
    }
    let manifest = elf
        .find_note(SOLO5_OWNER, TYPE_MFT1, 8, MFT1_MAX)?
        .ok_or(NoteError::NoManifest)?;
    Manifest::parse(manifest).map_err(NoteError::BadManifest)?;
    let lamina_features = match elf.find_note(LAMINA_OWNER, TYPE_LMN1, 4, LMN1_MAX)? {
        Some(payload) => payload
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => 0,
    };
    Ok(ImageNotes {
        manifest: manifest.to_vec(),
        lamina_features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{PF_R, PF_X};
    use crate::elf_writer::{mft1_note, ElfWriter};
    use lamina_abi::mft::DeviceType;
    use lamina_abi::note::{features, Abi1Note};
    use zerocopy::IntoBytes;

    fn base() -> ElfWriter {
        ElfWriter::new(0x100000).load(0x100000, PF_R | PF_X, &[0xf4], 0)
    }

    fn notes(writer: ElfWriter) -> Result<ImageNotes, NoteError> {
        let bytes = writer.build();
        read_notes(&Elf::parse(&bytes)?, AbiTarget::Hvt)
    }

    #[test]
    fn a_lamina_image_has_all_three() {
        let found = notes(
            base()
                .abi_note(AbiTarget::Hvt)
                .manifest_note(&[("service", DeviceType::NetBasic)])
                .lamina_note(features::ANY_CPL),
        )
        .unwrap();
        assert_eq!(found.lamina_features, features::ANY_CPL);
        assert_eq!(Manifest::parse(&found.manifest).unwrap().len(), 2);
        let solo5 = notes(base().abi_note(AbiTarget::Hvt).manifest_note(&[])).unwrap();
        assert_eq!(solo5.lamina_features, 0);
    }

    #[test]
    fn missing_or_wrong_notes_are_refused() {
        assert_eq!(notes(base().manifest_note(&[])), Err(NoteError::NoAbi));
        assert_eq!(
            notes(base().abi_note(AbiTarget::Spt).manifest_note(&[])),
            Err(NoteError::WrongTarget {
                expected: "hvt",
                found: 2
            })
        );
        let v1 = Abi1Note::new(AbiTarget::Hvt, 1);
        assert_eq!(
            notes(base().note(v1.as_bytes()).manifest_note(&[])),
            Err(NoteError::WrongVersion(1))
        );
        assert_eq!(
            notes(base().abi_note(AbiTarget::Hvt)),
            Err(NoteError::NoManifest)
        );
        let mut manifest = vec![0u8; mft::manifest_size(1)];
        mft::encode(&[("service", DeviceType::NetBasic)], &mut manifest).unwrap();
        manifest[0] = 7; // version
        assert_eq!(
            notes(base().abi_note(AbiTarget::Hvt).note(&mft1_note(&manifest))),
            Err(NoteError::BadManifest(MftError::BadVersion))
        );
        assert!(matches!(
            notes(
                base()
                    .abi_note(AbiTarget::Hvt)
                    .note(&mft1_note(&manifest[..20]))
            ),
            Err(NoteError::BadManifest(_))
        ));
    }
}
