//! `lamina build -t virtio --disk`: a bootable raw disk image of a virtio
//! kernel, for clouds (and VMMs) that boot disks through a BIOS.
//!
//! The image is GRUB 2 (Debian's `grub-pc-bin`) and the unchanged kernel,
//! with no file system:
//!
//! | sectors (512 B)     | what                                              |
//! |---------------------|---------------------------------------------------|
//! | 0                   | GRUB's `boot.img` (the MBR code) and a partition  |
//! |                     | table whose one entry (type 0xDA, non-FS data,    |
//! |                     | active) spans the kernel                          |
//! | 1 ..                | GRUB's `core.img`: disk, Multiboot2 and serial    |
//! |                     | modules and an embedded configuration             |
//! | 2048 (1 MiB) ..     | the kernel ELF, as built                          |
//!
//! `boot.img` loads the sector after it and `core.img`'s first sector loads
//! the rest of it from the sectors that follow (GRUB's defaults, which
//! `grub-bios-setup` would otherwise patch). The embedded configuration
//! boots the kernel by block list (`multiboot2 2048+N ARGS`, relative to the
//! disk GRUB booted from) with the boot arguments baked in; the kernel's
//! Multiboot2 header (`targets/virtio/src/guest/boot.rs`) leads to the same
//! boot path as PVH. If GRUB cannot boot it, a message goes to the serial
//! console and status 1 to QEMU's isa-debug-exit. The file is padded to a
//! whole number of MiB, as some clouds require.

use crate::CliError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sector size of the image.
const SECTOR: u64 = 512;
/// First sector of the kernel: 1 MiB in, where partitions usually start.
const KERNEL_LBA: u64 = 2048;
/// Images are a whole number of these.
const MIB: u64 = 1 << 20;
/// GRUB's i386-pc modules that the embedded configuration uses (grub-mkimage
/// adds what they depend on).
const GRUB_MODULES: &[&str] = &[
    "biosdisk",
    "multiboot2",
    "boot",
    "serial",
    "terminal",
    "echo",
    "iorw",
];
/// The Multiboot2 header's magic, and how far into the file it may start.
const MULTIBOOT2_MAGIC: u32 = 0xe852_50d6;
const MULTIBOOT2_SEARCH: usize = 32 * 1024;
/// QEMU's isa-debug-exit port and the value that makes it report status 1
/// (see `lamina_abi::debug_exit`).
const DEBUG_EXIT: (u16, u8) = (lamina_abi::debug_exit::PORT, 2);

/// Device arguments name host resources for `lamina run`; a disk image
/// finds the cloud's devices at boot instead.
const DEVICE_ARGS: &[&str] = &["--block:", "--block-sector-size:", "--net:", "--net-mac:"];

/// The variable that names the directory of GRUB's i386-pc files.
pub const GRUB_DIR_VAR: &str = "LAMINA_GRUB_DIR";

/// Where GRUB's i386-pc files are ([`GRUB_DIR_VAR`] overrides it).
fn grub_dir() -> PathBuf {
    std::env::var_os(GRUB_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/grub/i386-pc"))
}

/// The default path of the image: the kernel's, with `.img`.
pub fn default_path(kernel: &Path) -> PathBuf {
    kernel.with_extension("img")
}

/// Writes the disk image of `kernel` to `out` with `boot_args` baked in;
/// returns its size in bytes.
pub fn write(kernel: &Path, out: &Path, boot_args: &[String]) -> Result<u64, CliError> {
    check_boot_args(boot_args)?;
    let grub = grub_dir();
    let boot_img = std::fs::read(grub.join("boot.img")).map_err(|e| CliError::MissingTool {
        what: format!(
            "GRUB's BIOS boot sector ({}: {e})",
            grub.join("boot.img").display()
        ),
        package: "grub-pc-bin",
    })?;
    if boot_img.len() != SECTOR as usize {
        return Err(CliError::Project(format!(
            "{}: not a 512-byte boot sector",
            grub.join("boot.img").display()
        )));
    }
    let elf = std::fs::read(kernel).map_err(CliError::io(format!(
        "cannot read the kernel {}",
        kernel.display()
    )))?;
    if !has_multiboot2_header(&elf) {
        return Err(CliError::Project(format!(
            "{} has no Multiboot2 header: is it a virtio kernel from this Lamina?",
            kernel.display()
        )));
    }
    let kernel_sectors = (elf.len() as u64).div_ceil(SECTOR);
    let core = grub_core(&grub, &grub_config(kernel_sectors, boot_args), out)?;
    if core.len() as u64 > (KERNEL_LBA - 1) * SECTOR {
        return Err(CliError::Project(format!(
            "GRUB's core image is {} KiB: more than fits before the kernel at 1 MiB",
            core.len() / 1024
        )));
    }
    let size = (KERNEL_LBA * SECTOR + elf.len() as u64).next_multiple_of(MIB);
    let mut image = Vec::with_capacity(size as usize);
    image.extend_from_slice(&mbr(&boot_img, kernel_sectors));
    image.extend_from_slice(&core);
    image.resize((KERNEL_LBA * SECTOR) as usize, 0);
    image.extend_from_slice(&elf);
    image.resize(size as usize, 0);
    std::fs::write(out, &image).map_err(CliError::io(format!("cannot write {}", out.display())))?;
    Ok(size)
}

/// Refuses what cannot be baked: device arguments, and control characters
/// (GRUB's configuration is line-based).
pub fn check_boot_args(boot_args: &[String]) -> Result<(), CliError> {
    if let Some(arg) = boot_args
        .iter()
        .find(|a| DEVICE_ARGS.iter().any(|p| a.starts_with(p)))
    {
        return Err(CliError::Project(format!(
            "'{arg}' names a host device for `lamina run`; a disk image uses the \
             virtio devices of the machine it boots on"
        )));
    }
    if let Some(arg) = boot_args.iter().find(|a| a.chars().any(char::is_control)) {
        return Err(CliError::Project(format!(
            "boot argument {arg:?} has a control character, which cannot be baked into GRUB's configuration"
        )));
    }
    Ok(())
}

/// Whether `elf` has a valid Multiboot2 header where loaders look for it.
fn has_multiboot2_header(elf: &[u8]) -> bool {
    let word = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    (0..MULTIBOOT2_SEARCH.min(elf.len())).step_by(8).any(|at| {
        match (word(at), word(at + 4), word(at + 8), word(at + 12)) {
            (Some(MULTIBOOT2_MAGIC), Some(arch), Some(len), Some(sum)) => {
                MULTIBOOT2_MAGIC
                    .wrapping_add(arch)
                    .wrapping_add(len)
                    .wrapping_add(sum)
                    == 0
            }
            _ => false,
        }
    })
}

/// GRUB's embedded configuration: boot the kernel from the block list at
/// [`KERNEL_LBA`] with the boot arguments; if that fails, say so on the
/// serial console and stop QEMU with status 1.
fn grub_config(kernel_sectors: u64, boot_args: &[String]) -> String {
    let mut load = format!("multiboot2 {KERNEL_LBA}+{kernel_sectors}");
    for arg in boot_args {
        load.push(' ');
        load.push_str(&grub_quote(arg));
    }
    let (port, value) = DEBUG_EXIT;
    format!(
        "{load}\n\
         boot\n\
         serial\n\
         terminal_output serial\n\
         echo 'lamina: GRUB could not boot the kernel'\n\
         outb {port:#x} {value}\n"
    )
}

/// One word for GRUB's parser: single quotes keep everything literal
/// (`$`, `\`, `"`, spaces), and a single quote ends them, is escaped and
/// reopens them. GRUB quotes the words again for the kernel command line
/// in the way the guest's splitter reads.
fn grub_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Runs `grub-mkimage` for an i386-pc core image with `config` embedded;
/// its temporary files go beside `out`.
fn grub_core(grub: &Path, config: &str, out: &Path) -> Result<Vec<u8>, CliError> {
    let config_path = out.with_extension("grub.cfg.tmp");
    let core_path = out.with_extension("core.img.tmp");
    std::fs::write(&config_path, config).map_err(CliError::io(format!(
        "cannot write {}",
        config_path.display()
    )))?;
    let result = Command::new("grub-mkimage")
        .args(["--format", "i386-pc", "--prefix", "/boot/grub"])
        .arg("--directory")
        .arg(grub)
        .arg("--config")
        .arg(&config_path)
        .arg("--output")
        .arg(&core_path)
        .args(GRUB_MODULES)
        .output();
    let _ = std::fs::remove_file(&config_path);
    let output = result.map_err(|e| CliError::MissingTool {
        what: format!("grub-mkimage ({e})"),
        package: "grub-common",
    })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&core_path);
        return Err(CliError::Project(format!(
            "grub-mkimage failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let core = std::fs::read(&core_path)
        .map_err(CliError::io(format!("cannot read {}", core_path.display())));
    let _ = std::fs::remove_file(&core_path);
    core
}

/// The first sector: GRUB's boot code, then a partition table with one
/// active entry of type 0xDA (non-FS data) over the kernel's sectors, so
/// that partitioning tools show what the disk holds.
fn mbr(boot_img: &[u8], kernel_sectors: u64) -> [u8; SECTOR as usize] {
    let mut sector = [0u8; SECTOR as usize];
    sector.copy_from_slice(boot_img);
    let entry = &mut sector[446..462];
    entry.fill(0);
    entry[0] = 0x80; // active
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use the LBA
    entry[4] = 0xda;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(KERNEL_LBA as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(kernel_sectors as u32).to_le_bytes());
    sector[462..510].fill(0);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_grub() {
        assert_eq!(grub_quote("--times=2"), "'--times=2'");
        assert_eq!(grub_quote("Hi there"), "'Hi there'");
        assert_eq!(grub_quote("it's $x"), r"'it'\''s $x'");
        assert_eq!(grub_quote(""), "''");
    }

    #[test]
    fn the_configuration_boots_the_kernel_then_reports_failure() {
        let config = grub_config(1164, &["--greeting=Hi there".into(), "--times=2".into()]);
        let lines: Vec<&str> = config.lines().collect();
        assert_eq!(
            lines[0],
            "multiboot2 2048+1164 '--greeting=Hi there' '--times=2'"
        );
        assert_eq!(lines[1], "boot");
        assert!(config.contains("echo 'lamina: GRUB could not boot the kernel'"));
        assert!(config.ends_with("outb 0x501 2\n"));
    }

    #[test]
    fn device_and_control_arguments_are_refused() {
        assert!(check_boot_args(&["--times=2".into(), "--greeting=a b".into()]).is_ok());
        assert!(check_boot_args(&["--net:service=tap0".into()]).is_err());
        assert!(check_boot_args(&["--greeting=a\nb".into()]).is_err());
    }

    #[test]
    fn the_partition_entry_spans_the_kernel() {
        let boot = [0x90u8; 512];
        let sector = mbr(&boot, 1164);
        assert_eq!(&sector[..446], &boot[..446]);
        let entry = &sector[446..462];
        assert_eq!(entry[0], 0x80);
        assert_eq!(entry[4], 0xda);
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 1164);
        assert!(sector[462..510].iter().all(|&b| b == 0));
        assert_eq!(&sector[510..], &[0x55, 0xaa]);
    }

    #[test]
    fn finds_a_multiboot2_header() {
        let mut elf = vec![0u8; 0x1100];
        assert!(!has_multiboot2_header(&elf));
        let (magic, arch, len) = (MULTIBOOT2_MAGIC, 0u32, 40u32);
        let sum = 0u32.wrapping_sub(magic.wrapping_add(arch).wrapping_add(len));
        for (i, w) in [magic, arch, len, sum].iter().enumerate() {
            elf[0x1000 + 4 * i..0x1004 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        assert!(has_multiboot2_header(&elf));
        elf[0x100c] ^= 1;
        assert!(!has_multiboot2_header(&elf));
    }
}
