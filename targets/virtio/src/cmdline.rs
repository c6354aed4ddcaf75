//! What the VMM and `lamina run` add to the kernel command line, taken out
//! before the application's arguments are parsed:
//!
//! - `virtio_mmio.device=SIZE@BASE:IRQ[:ID]`, one per virtio-mmio device:
//!   Linux's syntax, which Firecracker writes and QEMU's `-M microvm`
//!   appends when it has no ACPI (`acpi=off`, as `lamina run` starts it).
//!   SIZE and BASE are decimal or `0x` hex numbers, SIZE may end in K, M
//!   or G.
//! - `--net:NAME` and `--block:NAME`: the device names, in the order of the
//!   devices of each kind (`lamina run` writes one per `--net:NAME=TAP` or
//!   `--block:NAME=FILE`, in the order it attaches them).
//!
//! Every parser here returns `None` or an error for malformed input, never
//! panics: the command line is the VMM's claim, not a fact.

use alloc::string::String;
use alloc::vec::Vec;

/// One virtio-mmio device window, as the command line announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    /// Physical address of its registers.
    pub base: u64,
    /// Size of the register window.
    pub size: u64,
    /// The interrupt line (a GSI of the I/O APIC).
    pub irq: u32,
}

/// Device kinds that can be named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A network interface (virtio-net).
    Net,
    /// A block device (virtio-blk).
    Block,
}

/// The device words taken out of a command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceWords {
    /// The virtio-mmio devices, in command-line order.
    pub mmio: Vec<MmioDevice>,
    /// The names given with `--net:NAME`, in order.
    pub net_names: Vec<String>,
    /// The names given with `--block:NAME`, in order.
    pub block_names: Vec<String>,
}

/// Parses a size: a decimal or `0x` hex number, optionally followed by K, M
/// or G (binary multiples).
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

/// A decimal or `0x` hex number: digits only (`from_str_radix` and
/// `parse` alone also take a sign, `+5` or `0x+10`).
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        None if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
}

/// Parses the value of `virtio_mmio.device=`: `SIZE@BASE:IRQ[:ID]`.
pub fn parse_mmio_device(value: &str) -> Option<MmioDevice> {
    let (size, rest) = value.split_once('@')?;
    let (base, rest) = rest.split_once(':')?;
    let irq = rest.split(':').next()?;
    let device = MmioDevice {
        base: parse_number(base)?,
        size: parse_size(size)?,
        irq: irq
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| irq.parse().ok())??,
    };
    (device.size != 0 && device.base.checked_add(device.size).is_some()).then_some(device)
}

/// Takes the device words out of `words`, leaving the application's.
/// A malformed device word is an error naming it.
pub fn take_device_words(words: &mut Vec<String>) -> Result<DeviceWords, String> {
    let mut found = DeviceWords::default();
    let mut error = None;
    words.retain(|word| {
        if let Some(value) = word.strip_prefix("virtio_mmio.device=") {
            match parse_mmio_device(value) {
                Some(device) => found.mmio.push(device),
                None => {
                    error.get_or_insert_with(|| {
                        alloc::format!("malformed '{word}': expected virtio_mmio.device=SIZE@BASE:IRQ")
                    });
                }
            }
            return false;
        }
        for (prefix, names) in [("--net:", &mut found.net_names), ("--block:", &mut found.block_names)] {
            if let Some(name) = word.strip_prefix(prefix) {
                if name.is_empty() || name.contains('=') {
                    error.get_or_insert_with(|| {
                        alloc::format!("malformed '{word}': expected {prefix}NAME (the host side is the VMM's business)")
                    });
                } else {
                    names.push(String::from(name));
                }
                return false;
            }
        }
        true
    });
    match error {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// The name of the `index`th device of a kind: the name given on the
/// command line, else the one the image declared in that position, else the
/// conventional default for the first (`service`, `storage`).
pub fn device_name<'a>(
    given: &'a [String],
    declared: &'a [&'a str],
    kind: Kind,
    index: usize,
) -> Option<&'a str> {
    if let Some(name) = given.get(index) {
        return Some(name);
    }
    if !given.is_empty() {
        return None; // named explicitly: the others have no name
    }
    declared.get(index).copied().or(match (kind, index) {
        (Kind::Net, 0) => Some("service"),
        (Kind::Block, 0) => Some("storage"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn mmio_devices_parse_like_linux() {
        assert_eq!(
            parse_mmio_device("512@0xfeb00e00:12"),
            Some(MmioDevice {
                base: 0xfeb0_0e00,
                size: 512,
                irq: 12
            })
        );
        assert_eq!(
            parse_mmio_device("4K@0xd0000000:5:3"),
            Some(MmioDevice {
                base: 0xd000_0000,
                size: 4096,
                irq: 5
            })
        );
        for bad in [
            "",
            "512",
            "512@",
            "512@0xfeb00e00",
            "512@0xfeb00e00:",
            "0@0x1000:5",
            "x@0x1000:5",
            "512@zz:5",
            "512@0xffffffffffffffff:5",
            "99999999999999999999G@0:1",
            "512@0x1000:-1",
            "+512@0x1000:5",
            "512@0x+1000:5",
            "512@0x1000:+5",
        ] {
            assert_eq!(parse_mmio_device(bad), None, "{bad}");
        }
    }

    #[test]
    fn device_words_are_taken_out_in_order() {
        let mut words: Vec<String> = [
            "--port=7",
            "--net:service",
            "--block:storage",
            "virtio_mmio.device=512@0xfeb00e00:12",
            "--net:admin",
            "virtio_mmio.device=512@0xfeb00c00:11",
            "--ipv4=10.0.0.2/24",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found = take_device_words(&mut words).unwrap();
        assert_eq!(words, vec!["--port=7", "--ipv4=10.0.0.2/24"]);
        assert_eq!(found.net_names, vec!["service", "admin"]);
        assert_eq!(found.block_names, vec!["storage"]);
        assert_eq!(
            found.mmio.iter().map(|d| d.irq).collect::<Vec<_>>(),
            vec![12, 11]
        );
    }

    #[test]
    fn malformed_device_words_are_errors() {
        for bad in [
            "--net:service=tap0",
            "--block:",
            "virtio_mmio.device=nonsense",
        ] {
            let mut words = vec![bad.to_string()];
            let error = take_device_words(&mut words).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn names_come_from_the_command_line_then_the_image() {
        let given = vec!["a".to_string(), "b".to_string()];
        assert_eq!(device_name(&given, &["x"], Kind::Net, 1), Some("b"));
        assert_eq!(device_name(&given, &["x"], Kind::Net, 2), None);
        assert_eq!(device_name(&[], &["x", "y"], Kind::Net, 1), Some("y"));
        assert_eq!(device_name(&[], &[], Kind::Net, 0), Some("service"));
        assert_eq!(device_name(&[], &[], Kind::Block, 0), Some("storage"));
        assert_eq!(device_name(&[], &[], Kind::Block, 1), None);
    }
}
