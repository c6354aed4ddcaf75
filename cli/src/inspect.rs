//! `lamina inspect IMAGE`: what an image says about itself. What Solo5's
//! `elftool` shows (the ABI note: target and version; the manifest: its
//! devices and names), Lamina's feature note, the declared devices, the
//! build provenance and the baked directories (`lamina_core::provenance`),
//! the memory layout (loadable segments, addresses, sizes, permissions)
//! and the sealed sections: which section lands in which segment with what
//! permissions. Images without Lamina's notes (Solo5's own, MirageOS's)
//! are described from their Solo5 notes alone.
//!
//! Everything is read through the tenders' checked ELF view
//! (`lamina_tender::elf`, `elf_contents`): a malformed image is an error
//! naming what is wrong, never a panic.

use crate::provenance::Provenance;
use crate::CliError;
use lamina_abi::mft::{DeviceType, Manifest};
use lamina_abi::note::{features, LAMINA_OWNER, SOLO5_OWNER, TYPE_ABI1, TYPE_LMN1, TYPE_MFT1};
use lamina_tender::elf::{Elf, PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use lamina_tender::elf_contents::{self, Note, SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE};
use serde::Serialize;
use std::path::Path;

/// `n_type` of the provenance note ("LPV1", lamina_core::provenance).
const TYPE_LPV1: u32 = u32::from_le_bytes(*b"LPV1");
/// `n_type` of a baked directory's note ("LBK1").
const TYPE_LBK1: u32 = u32::from_le_bytes(*b"LBK1");
/// `n_type` of the device declaration note ("LDV1").
const TYPE_LDV1: u32 = u32::from_le_bytes(*b"LDV1");
/// `n_type` of Xen's PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which
/// virtio images carry instead of Solo5's.
const XEN_PHYS32_ENTRY: u32 = 18;

/// The ABI note's content.
#[derive(Debug, Serialize)]
pub struct Abi {
    /// `hvt`, `spt`, `virtio` or `unknown(N)`.
    pub target: String,
    /// The ABI version.
    pub version: u32,
}

/// One manifest entry.
#[derive(Debug, Serialize)]
pub struct ManifestDevice {
    /// Its name (`service`).
    pub name: String,
    /// `NET_BASIC` or `BLOCK_BASIC`, as elftool writes them.
    pub kind: &'static str,
}

/// One loadable segment.
#[derive(Debug, Serialize)]
pub struct Segment {
    /// Guest address.
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory.
    pub memsz: u64,
    /// `R`, `W`, `X` or `-` each.
    pub permissions: String,
    /// The sections inside it.
    pub sections: Vec<SealedSection>,
}

/// A section and the protection it gets.
#[derive(Debug, Serialize)]
pub struct SealedSection {
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: u64,
    /// Its size in memory.
    pub size: u64,
}

/// Everything `lamina inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file's size.
    pub file_size: u64,
    /// The entry point.
    pub entry: u64,
    /// The Solo5 ABI note, if any.
    pub abi: Option<Abi>,
    /// The Xen PVH entry point (virtio images), if any.
    pub pvh_entry: Option<u64>,
    /// The manifest's devices (without the reserved entry 0), if a
    /// manifest is there.
    pub manifest: Option<Vec<ManifestDevice>>,
    /// Lamina's feature bits, if the note is there.
    pub lamina_features: Option<Vec<&'static str>>,
    /// The declared devices (`lamina::devices!`), a line each.
    pub declared_devices: Option<Vec<String>>,
    /// The provenance, in its order.
    pub provenance: Option<Vec<(String, String)>>,
    /// The baked directories, a line each: `NAME=SHA256 files=N dir=DIR`.
    pub baked: Vec<String>,
    /// The loadable segments.
    pub segments: Vec<Segment>,
    /// No segment both writable and executable, no executable section
    /// writable.
    pub sealed: bool,
}

fn text(desc: &[u8], what: &str) -> Result<String, String> {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    String::from_utf8(desc[..end].to_vec()).map_err(|_| format!("its {what} note is not UTF-8"))
}

fn word(desc: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(desc.get(at..at + 4)?.try_into().ok()?))
}

fn owner(note: &Note<'_>, owner: &[u8]) -> bool {
    Some(note.owner) == owner.strip_suffix(b"\0")
}

fn permissions(flags: u32) -> String {
    [(PF_R, 'R'), (PF_W, 'W'), (PF_X, 'X')]
        .iter()
        .map(|&(bit, c)| if flags & bit != 0 { c } else { '-' })
        .collect()
}

fn feature_names(bits: u32) -> Vec<&'static str> {
    let known = [
        (features::ANY_CPL, "ANY_CPL"),
        (features::NX_DATA, "NX_DATA"),
        (features::NET_OFFLOAD, "NET_OFFLOAD"),
        (features::BLOCK_IO, "BLOCK_IO"),
    ];
    let mut names: Vec<&'static str> = known
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|&(_, n)| n)
        .collect();
    if bits & !known.iter().fold(0, |all, (bit, _)| all | bit) != 0 {
        names.push("UNKNOWN");
    }
    names
}

/// Reads `bytes` as an image. Errors say what is wrong with it.
pub fn report(bytes: &[u8]) -> Result<Report, String> {
    let elf = Elf::parse(bytes).map_err(|e| e.to_string())?;
    let notes = elf_contents::all_notes(&elf).map_err(|e| e.to_string())?;
    let mut report = Report {
        file_size: bytes.len() as u64,
        entry: elf.entry(),
        abi: None,
        pvh_entry: None,
        manifest: None,
        lamina_features: None,
        declared_devices: None,
        provenance: None,
        baked: Vec::new(),
        segments: Vec::new(),
        sealed: true,
    };
    for note in &notes {
        let solo5 = owner(note, SOLO5_OWNER);
        let lamina = owner(note, LAMINA_OWNER);
        match note.note_type {
            TYPE_ABI1 if solo5 && report.abi.is_none() => {
                let target = word(note.desc, 0).ok_or("its ABI1 note is truncated")?;
                let version = word(note.desc, 4).ok_or("its ABI1 note is truncated")?;
                let target = match target {
                    1 => "hvt".into(),
                    2 => "spt".into(),
                    3 => "virtio".into(),
                    other => format!("unknown({other})"),
                };
                report.abi = Some(Abi { target, version });
            }
            TYPE_MFT1 if solo5 && report.manifest.is_none() => {
                // The descriptor starts with padding to the manifest's
                // 8-byte alignment (the note header is 20 bytes).
                let manifest = Manifest::parse(note.desc.get(4..).unwrap_or(&[]))
                    .map_err(|e| format!("its Solo5 manifest is invalid: {e}"))?;
                let devices = manifest
                    .entries()
                    .skip(1)
                    .map(|entry| ManifestDevice {
                        name: String::from_utf8_lossy(entry.name()).into_owned(),
                        kind: match entry.device_type() {
                            Some(DeviceType::NetBasic) => "NET_BASIC",
                            Some(DeviceType::BlockBasic) => "BLOCK_BASIC",
                            _ => "UNKNOWN",
                        },
                    })
                    .collect();
                report.manifest = Some(devices);
            }
            TYPE_LMN1 if lamina => {
                let bits = word(note.desc, 0).ok_or("its Lamina feature note is truncated")?;
                report.lamina_features = Some(feature_names(bits));
            }
            TYPE_LDV1 if lamina => {
                let lines = text(note.desc, "device declaration")?;
                report.declared_devices = Some(
                    lines
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            TYPE_LPV1 if lamina => {
                let provenance = Provenance::parse(&text(note.desc, "provenance")?)
                    .map_err(|e| format!("its provenance note: {e}"))?;
                report.provenance = Some(provenance.fields);
            }
            TYPE_LBK1 if lamina => report.baked.push(text(note.desc, "baked directory")?),
            XEN_PHYS32_ENTRY if note.owner == b"Xen" => {
                report.pvh_entry = word(note.desc, 0).map(u64::from);
            }
            _ => {}
        }
    }
    let sections = elf_contents::sections(&elf).map_err(|e| e.to_string())?;
    for ph in elf.program_headers().filter(|ph| ph.p_type == PT_LOAD) {
        let end = ph.vaddr.saturating_add(ph.memsz);
        if ph.flags & PF_W != 0 && ph.flags & PF_X != 0 {
            report.sealed = false;
        }
        let inside: Vec<SealedSection> = sections
            .iter()
            .filter(|s| s.flags & SHF_ALLOC != 0 && s.size > 0)
            .filter(|s| s.addr >= ph.vaddr && s.addr < end)
            .map(|s| SealedSection {
                name: s.name.clone(),
                addr: s.addr,
                size: s.size,
            })
            .collect();
        report.segments.push(Segment {
            vaddr: ph.vaddr,
            filesz: ph.filesz,
            memsz: ph.memsz,
            permissions: permissions(ph.flags),
            sections: inside,
        });
    }
    if sections
        .iter()
        .any(|s| s.flags & SHF_EXECINSTR != 0 && s.flags & SHF_WRITE != 0)
    {
        report.sealed = false;
    }
    let has_notes = elf.program_headers().any(|ph| ph.p_type == PT_NOTE);
    if report.abi.is_none() && report.pvh_entry.is_none() && !has_notes {
        return Err(
            "it has no notes: not a Solo5 or Lamina unikernel (no ABI note, no PVH entry)".into(),
        );
    }
    Ok(report)
}

/// The report as text.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "entry {:#x}, {} bytes",
        report.entry, report.file_size
    ));
    match (&report.abi, report.pvh_entry) {
        (Some(abi), _) => line(format!(
            "abi: target {}, version {} (Solo5 ABI1 note)",
            abi.target, abi.version
        )),
        (None, Some(pvh)) => line(format!(
            "abi: none (a virtio image: Xen PVH entry at {pvh:#x})"
        )),
        (None, None) => line("abi: none".into()),
    }
    match &report.manifest {
        Some(devices) => {
            line(format!("manifest: {} devices", devices.len()));
            for d in devices {
                line(format!("  {:<16} {}", d.name, d.kind));
            }
        }
        None => line("manifest: none".into()),
    }
    if let Some(features) = &report.lamina_features {
        line(format!("lamina features: {}", features.join(" ")));
    }
    if let Some(devices) = &report.declared_devices {
        line(format!("declared devices: {}", devices.join(", ")));
    }
    match &report.provenance {
        Some(fields) => {
            line("provenance:".into());
            for (k, v) in fields {
                line(format!("  {k}={v}"));
            }
        }
        None => line("provenance: none (not built by lamina build)".into()),
    }
    for baked in &report.baked {
        line(format!("baked: {baked}"));
    }
    line("memory layout:".into());
    for s in &report.segments {
        let names: Vec<&str> = s.sections.iter().map(|s| s.name.as_str()).collect();
        line(format!(
            "  {:#010x}..{:#010x} {} {:>8} bytes ({} in file) {}",
            s.vaddr,
            s.vaddr.saturating_add(s.memsz),
            s.permissions,
            s.memsz,
            s.filesz,
            names.join(" ")
        ));
    }
    line(format!(
        "sealed: {}",
        if report.sealed {
            "yes (no segment or section both writable and executable)"
        } else {
            "NO: something is both writable and executable"
        }
    ));
    out
}

/// `lamina inspect IMAGE [--json]`.
pub fn inspect(image: &Path, json: bool) -> Result<(), CliError> {
    let bytes = crate::read_file(image)?;
    let report =
        report(&bytes).map_err(|e| CliError::Project(format!("{}: {e}", image.display())))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Project(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", to_text(&report));
    }
    Ok(())
}

/// Prints the size report of the unstripped image `path`, as a table or
/// JSON.
pub fn print_size(path: &Path, json: bool) -> Result<(), CliError> {
    let bytes = crate::read_file(path)?;
    let described =
        report(&bytes).map_err(|e| CliError::Project(format!("{}: {e}", path.display())))?;
    let app = described
        .provenance
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k == "app"))
        .map_or_else(String::new, |(_, v)| v.clone());
    let baked: u64 = described
        .baked
        .iter()
        .filter_map(|line| line.split(' ').find_map(|w| w.strip_prefix("bytes=")))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    let table = crate::size::report(&bytes, &app, baked)
        .map_err(|e| CliError::Project(format!("{}: {e}", path.display())))?;
    if json {
        let text = serde_json::to_string_pretty(&table)
            .map_err(|e| CliError::Project(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        println!("size of {} ({app}):", path.display());
        print!("{}", crate::size::to_text(&table));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_images_are_errors() {
        assert!(report(b"").unwrap_err().contains("truncated"));
        assert!(report(b"#!/bin/sh\necho hi\n").is_err());
        assert_eq!(permissions(PF_R | PF_X), "R-X");
        assert_eq!(
            feature_names(features::ANY_CPL | 1 << 20),
            ["ANY_CPL", "UNKNOWN"]
        );
    }
}
