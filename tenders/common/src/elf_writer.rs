//! Writes small ELF64 images: hand-assembled guests and malformed images
//! for the tenders' tests. What it writes is a plain static executable, as
//! a linker would, so the loader under test cannot tell the difference.

use lamina_abi::mft::{self, DeviceType};
use lamina_abi::note::{self, Abi1Note, AbiTarget, LaminaNote};
use zerocopy::IntoBytes;

/// One program header to write, with its contents.
#[derive(Debug, Clone)]
pub struct RawSegment {
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_vaddr` (and `p_paddr`).
    pub vaddr: u64,
    /// `p_memsz`; the file size is `contents.len()`.
    pub memsz: u64,
    /// `p_align`.
    pub align: u64,
    /// The bytes stored in the file.
    pub contents: Vec<u8>,
}

/// Builder of an x86_64 `ET_EXEC` image.
#[derive(Debug, Clone)]
pub struct ElfWriter {
    entry: u64,
    segments: Vec<RawSegment>,
}

impl ElfWriter {
    /// An image entered at `entry`, with no segments yet.
    pub fn new(entry: u64) -> Self {
        ElfWriter {
            entry,
            segments: Vec::new(),
        }
    }

    /// Adds a page-aligned `PT_LOAD` at `vaddr` with `flags` (`PF_*`).
    pub fn load(self, vaddr: u64, flags: u32, contents: &[u8], memsz: u64) -> Self {
        self.raw(RawSegment {
            p_type: crate::elf::PT_LOAD,
            flags,
            vaddr,
            memsz: memsz.max(contents.len() as u64),
            align: 0x1000,
            contents: contents.to_vec(),
        })
    }

    /// Adds a `PT_NOTE` holding exactly `note` (header and payload).
    pub fn note(self, note: &[u8]) -> Self {
        self.raw(RawSegment {
            p_type: crate::elf::PT_NOTE,
            flags: crate::elf::PF_R,
            vaddr: 0,
            memsz: note.len() as u64,
            align: 8,
            contents: note.to_vec(),
        })
    }

    /// Adds the ABI1 note for `target`, ABI version 2.
    pub fn abi_note(self, target: AbiTarget) -> Self {
        self.note(Abi1Note::new(target, 2).as_bytes())
    }

    /// Adds an MFT1 note declaring `devices`.
    pub fn manifest_note(self, devices: &[(&str, DeviceType)]) -> Self {
        let mut manifest = vec![0; mft::manifest_size(devices.len())];
        // Test images name valid devices; an invalid one leaves a zeroed,
        // invalid manifest, which the loader then refuses.
        let _ = mft::encode(devices, &mut manifest);
        self.note(&mft1_note(&manifest))
    }

    /// Adds Lamina's LMN1 note with `features`.
    pub fn lamina_note(self, features: u32) -> Self {
        self.note(LaminaNote::new(features).as_bytes())
    }

    /// Adds any program header.
    pub fn raw(mut self, segment: RawSegment) -> Self {
        self.segments.push(segment);
        self
    }

    /// The file: header, program headers, then each segment's contents at
    /// a page-aligned offset.
    pub fn build(&self) -> Vec<u8> {
        let phnum = self.segments.len();
        let mut out = vec![0u8; 64 + 56 * phnum];
        let mut offsets = Vec::with_capacity(phnum);
        for segment in &self.segments {
            let at = out.len().next_multiple_of(0x1000);
            out.resize(at, 0);
            out.extend_from_slice(&segment.contents);
            offsets.push(at as u64);
        }
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little endian
        out[6] = 1; // EI_VERSION
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&self.entry.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        for (i, (segment, offset)) in self.segments.iter().zip(offsets).enumerate() {
            let ph = &mut out[64 + 56 * i..64 + 56 * (i + 1)];
            ph[0..4].copy_from_slice(&segment.p_type.to_le_bytes());
            ph[4..8].copy_from_slice(&segment.flags.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&segment.vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&segment.vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(segment.contents.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&segment.memsz.to_le_bytes());
            ph[48..56].copy_from_slice(&segment.align.to_le_bytes());
        }
        out
    }
}

/// An MFT1 note around the manifest bytes `manifest`.
pub fn mft1_note(manifest: &[u8]) -> Vec<u8> {
    let mut note = Vec::with_capacity(note::MFT1_PAYLOAD_OFFSET + manifest.len());
    note.extend_from_slice(&6u32.to_le_bytes());
    note.extend_from_slice(&(4 + manifest.len() as u32).to_le_bytes());
    note.extend_from_slice(&note::TYPE_MFT1.to_le_bytes());
    note.extend_from_slice(b"Solo5\0\0\0");
    note.extend_from_slice(&[0; 4]);
    note.extend_from_slice(manifest);
    note
}
