//! The devices an application declares, read from what it was built into.
//!
//! `lamina::devices!` puts the declaration in every program and image it
//! builds, as an ELF note (owner "Lamina", type LDV1, in the section
//! `.note.lamina.devices`): one line `NAME FAMILY[?][/OVER...]` per device.
//! Reading it from the build, rather than parsing the source, means that
//! what `lamina describe` draws and what `lamina run` checks are exactly
//! what the compiler saw.

use crate::CliError;
use std::path::Path;

/// Section holding the declaration note.
const SECTION: &str = ".note.lamina.devices";
/// Its note type, "LDV1".
const TYPE_LDV1: u32 = 0x3156_444c;

/// The platform primitive a declared device ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Console,
    Clock,
    Random,
    Stack,
    Netif,
    Block,
    Kv,
}

impl DeviceKind {
    fn from_family(name: &str) -> Option<DeviceKind> {
        Some(match name {
            "Console" => DeviceKind::Console,
            "Clock" => DeviceKind::Clock,
            "Random" => DeviceKind::Random,
            "Stack" => DeviceKind::Stack,
            "Netif" => DeviceKind::Netif,
            "Block" => DeviceKind::Block,
            "Kv" => DeviceKind::Kv,
            _ => return None,
        })
    }

    /// Whether the device has a name the host attaches it by.
    pub fn is_named(self) -> bool {
        !matches!(
            self,
            DeviceKind::Console | DeviceKind::Clock | DeviceKind::Random
        )
    }

    /// The device-argument kind: `net` or `block` (`--net:NAME=...`), if
    /// the device is in an image's manifest.
    pub fn manifest_kind(self) -> Option<&'static str> {
        match self {
            DeviceKind::Stack | DeviceKind::Netif => Some("net"),
            DeviceKind::Block => Some("block"),
            _ => None,
        }
    }
}

/// One declared device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name (the field's in `devices!`).
    pub name: String,
    /// Its family, then the families it is composed over, inward
    /// (`["Store", "Block"]`); the last is a platform primitive.
    pub families: Vec<String>,
    /// Declared `Option<...>`: the application runs without it.
    pub optional: bool,
    /// The primitive it ends in.
    pub kind: DeviceKind,
}

impl Device {
    /// Parses one line of the declaration.
    pub fn parse(line: &str) -> Result<Device, String> {
        let mut words = line.split(' ');
        let (Some(name), Some(families), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("'{line}' is not NAME FAMILY"));
        };
        let mut families: Vec<String> = families.split('/').map(str::to_owned).collect();
        let optional = families[0].ends_with('?');
        if optional {
            families[0].pop();
        }
        let innermost = families.last().map(String::as_str).unwrap_or("");
        let kind = DeviceKind::from_family(innermost).ok_or_else(|| {
            format!("device '{name}' ends in '{innermost}', which is not a platform device")
        })?;
        if name.is_empty() || families.iter().any(String::is_empty) {
            return Err(format!("'{line}' is not NAME FAMILY"));
        }
        Ok(Device {
            name: name.to_owned(),
            families,
            optional,
            kind,
        })
    }

    /// `Stack "service"`, `Store "storage" over Block`, `Console`.
    pub fn label(&self) -> String {
        let mut label = self.families[0].clone();
        if self.kind.is_named() || self.families.len() > 1 {
            label.push_str(&format!(" \"{}\"", self.name));
        }
        if self.optional {
            label.push_str(" (optional)");
        }
        label
    }
}

/// The devices the program or image at `artifact` declares.
pub fn read(artifact: &Path) -> Result<Vec<Device>, CliError> {
    let bytes = std::fs::read(artifact)
        .map_err(CliError::io(format!("cannot read {}", artifact.display())))?;
    let text = declaration(&bytes).map_err(|why| {
        CliError::Project(format!(
            "{}: {why}: declare the application's devices with lamina::devices! {{ ... }}",
            artifact.display()
        ))
    })?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(Device::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Project(format!("{}: {e}", artifact.display())))
}

/// The declaration's text in an ELF file.
fn declaration(elf: &[u8]) -> Result<&str, String> {
    let section = find_section(elf, SECTION)?.ok_or("it has no device declaration")?;
    let namesz = u32_at(section, 0).ok_or("its declaration note is truncated")? as usize;
    let descsz = u32_at(section, 4).ok_or("its declaration note is truncated")? as usize;
    if u32_at(section, 8) != Some(TYPE_LDV1) || namesz != 7 {
        return Err("its declaration note is not Lamina's LDV1".into());
    }
    let desc = section
        .get(20..)
        .and_then(|d| d.get(..descsz))
        .ok_or("its declaration note is truncated")?;
    std::str::from_utf8(desc).map_err(|_| "its declaration note is not text".into())
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// The contents of the section `name` of a 64-bit little-endian ELF file,
/// found through the section headers (which stripped programs keep). Every
/// offset is checked against the file.
fn find_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let truncated = || String::from("its section headers are truncated");
    let shoff = u64_at(elf, 0x28).ok_or_else(truncated)?;
    let shentsize = u16_at(elf, 0x3a).ok_or_else(truncated)? as usize;
    let shnum = u16_at(elf, 0x3c).ok_or_else(truncated)? as usize;
    let shstrndx = u16_at(elf, 0x3e).ok_or_else(truncated)? as usize;
    if shentsize < 64 {
        return Err(truncated());
    }
    let header = |index: usize| -> Option<&'a [u8]> {
        let start = shoff.checked_add(index.checked_mul(shentsize)?)?;
        elf.get(start..start.checked_add(64)?)
    };
    let contents = |header: &[u8]| -> Option<&'a [u8]> {
        let offset = u64_at(header, 24)?;
        let size = u64_at(header, 32)?;
        elf.get(offset..offset.checked_add(size)?)
    };
    let names = header(shstrndx).and_then(contents).ok_or_else(truncated)?;
    for index in 0..shnum {
        let section = header(index).ok_or_else(truncated)?;
        let name_at = u32_at(section, 0).ok_or_else(truncated)? as usize;
        let Some(rest) = names.get(name_at..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return contents(section).map(Some).ok_or_else(truncated);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_lines() {
        assert_eq!(
            Device::parse("service Stack").unwrap(),
            Device {
                name: "service".into(),
                families: vec!["Stack".into()],
                optional: false,
                kind: DeviceKind::Stack,
            }
        );
        let store = Device::parse("storage Store?/Block").unwrap();
        assert_eq!(store.families, ["Store", "Block"]);
        assert!(store.optional);
        assert_eq!(store.kind, DeviceKind::Block);
        assert_eq!(store.label(), "Store \"storage\" (optional)");
        assert_eq!(Device::parse("console Console").unwrap().label(), "Console");
        for bad in [
            "",
            "service",
            "a b c",
            "x Frobnicator",
            "x Store/",
            " Stack",
        ] {
            assert!(Device::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A minimal ELF file: header, one note section, the section-name table.
    fn elf_with(section: &str, contents: &[u8]) -> Vec<u8> {
        let names = format!("\0{section}\0.shstrtab\0");
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let data_at = elf.len();
        elf.extend_from_slice(contents);
        let names_at = elf.len();
        elf.extend_from_slice(names.as_bytes());
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let mut header = |name: u32, offset: usize, size: usize| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        };
        header(0, 0, 0);
        header(1, data_at, contents.len());
        header(2 + section.len() as u32, names_at, names.len());
        elf
    }

    fn note(text: &str) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&7u32.to_le_bytes());
        note.extend_from_slice(&(text.len() as u32).to_le_bytes());
        note.extend_from_slice(&TYPE_LDV1.to_le_bytes());
        note.extend_from_slice(b"Lamina\0\0");
        note.extend_from_slice(text.as_bytes());
        note
    }

    #[test]
    fn reads_the_note_through_the_section_headers() {
        let elf = elf_with(SECTION, &note("console Console\nservice Stack\n\n\n"));
        assert_eq!(
            declaration(&elf).unwrap(),
            "console Console\nservice Stack\n\n\n"
        );
        let other = elf_with(".note.other", &note("x Stack\n"));
        assert_eq!(
            declaration(&other).unwrap_err(),
            "it has no device declaration"
        );
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let good = elf_with(SECTION, &note("service Stack\n"));
        assert!(declaration(b"#!/bin/sh\n").is_err());
        for len in 0..good.len() {
            let _ = declaration(&good[..len]);
        }
        let mut huge = good.clone();
        huge[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(declaration(&huge).is_err());
        let mut wrong_type = note("service Stack\n");
        wrong_type[8] ^= 1;
        assert!(declaration(&elf_with(SECTION, &wrong_type)).is_err());
        let mut long_desc = note("service Stack\n");
        long_desc[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(declaration(&elf_with(SECTION, &long_desc)).is_err());
    }
}
