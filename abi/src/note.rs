//! ELF notes an image carries. Each Solo5 note is alone in its own
//! `PT_NOTE` segment: the Solo5 tenders read only the first note of each.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Note owner of the Solo5 notes, with its NUL (`n_namesz` = 6).
pub const SOLO5_OWNER: &[u8; 6] = b"Solo5\0";
/// Note owner of Lamina's own note.
pub const LAMINA_OWNER: &[u8; 7] = b"Lamina\0";

/// `n_type` of the ABI note ("ABI1").
pub const TYPE_ABI1: u32 = 0x3149_4241;
/// `n_type` of the manifest note ("MFT1").
pub const TYPE_MFT1: u32 = 0x3154_464d;
/// `n_type` of Lamina's feature note ("LMN1").
pub const TYPE_LMN1: u32 = 0x314e_4d4c;

/// Section names the linker script places the notes in.
pub const SECTION_ABI1: &str = ".note.solo5.abi";
/// See [`SECTION_ABI1`].
pub const SECTION_MFT1: &str = ".note.solo5.manifest";
/// See [`SECTION_ABI1`].
pub const SECTION_LMN1: &str = ".note.lamina.features";

/// ABI targets in the ABI1 note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AbiTarget {
    /// The hvt tender.
    Hvt = 1,
    /// The spt tender.
    Spt = 2,
    /// virtio.
    Virtio = 3,
}

/// An ELF note header followed by an 8-byte owner field (Solo5's layout:
/// `n_namesz` = 6 padded to 8).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NoteHeader {
    /// Length of the owner name with its NUL.
    pub namesz: u32,
    /// Length of the descriptor (payload, including any alignment padding).
    pub descsz: u32,
    /// Note type.
    pub note_type: u32,
    /// Owner name, NUL-padded to 8 bytes.
    pub name: [u8; 8],
}

/// The ABI1 note: which tender and ABI version the image is for.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Abi1Note {
    /// Header: owner "Solo5", type ABI1, descsz 16.
    pub header: NoteHeader,
    /// An [`AbiTarget`].
    pub target: u32,
    /// The ABI version (2).
    pub version: u32,
    /// Reserved, zero.
    pub reserved: [u32; 2],
}

impl Abi1Note {
    /// The note for `target` at `version`.
    pub const fn new(target: AbiTarget, version: u32) -> Self {
        Abi1Note {
            header: NoteHeader {
                namesz: 6,
                descsz: 16,
                note_type: TYPE_ABI1,
                name: *b"Solo5\0\0\0",
            },
            target: target as u32,
            version,
            reserved: [0; 2],
        }
    }
}

/// Feature bits of Lamina's LMN1 note.
pub mod features {
    /// The guest runs at any privilege level: it reloads no segment, takes
    /// no interrupts and uses no privileged instruction but the hypercall
    /// `out`. A tender on KVM-PVM may then run it natively at CPL 3.
    pub const ANY_CPL: u32 = 1 << 0;
    /// The guest's page tables may mark data no-execute: it never executes
    /// outside its text segment.
    pub const NX_DATA: u32 = 1 << 1;
    /// The guest's network devices understand frames behind a virtio-net
    /// header, which a tender turns on per device and records in the
    /// manifest ([`net_features`](crate::mft::net_features)).
    pub const NET_OFFLOAD: u32 = 1 << 2;
    /// The guest's block devices use the transfers and flushes a tender
    /// turns on per device and records in the manifest
    /// ([`block_features`](crate::mft::block_features)).
    pub const BLOCK_IO: u32 = 1 << 3;
}

/// Lamina's own note: what the image promises its tender.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct LaminaNote {
    /// Header: owner "Lamina", type LMN1, descsz 8.
    pub header: NoteHeader,
    /// [`features`] bits.
    pub features: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl LaminaNote {
    /// The note with `features`.
    pub const fn new(features: u32) -> Self {
        LaminaNote {
            header: NoteHeader {
                namesz: 7,
                descsz: 8,
                note_type: TYPE_LMN1,
                name: *b"Lamina\0\0",
            },
            features,
            reserved: 0,
        }
    }
}

/// Offset of the manifest in the MFT1 note: the 20-byte header padded to
/// the manifest's 8-byte alignment.
pub const MFT1_PAYLOAD_OFFSET: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi1_note_bytes_match_solo5() {
        let note = Abi1Note::new(AbiTarget::Hvt, 2);
        let bytes = note.as_bytes();
        assert_eq!(bytes.len(), 36);
        assert_eq!(
            &bytes[..12],
            &[6, 0, 0, 0, 16, 0, 0, 0, 0x41, 0x42, 0x49, 0x31]
        );
        assert_eq!(&bytes[12..18], b"Solo5\0");
        assert_eq!(&bytes[20..28], &[1, 0, 0, 0, 2, 0, 0, 0]);
    }
}
