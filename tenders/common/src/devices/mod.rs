//! Devices: the image's manifest meets the command line.
//!
//! [`Devices::attach`] takes the manifest the image carries and the
//! `--block`/`--net` options, opens a host device for every manifest entry,
//! and produces the attached copy of the manifest the tender puts in guest
//! memory. An option naming a device the image does not declare, and a
//! declared device that no option attaches, are errors, as in Solo5.
//!
//! Each device kind lives in its own module with its host I/O and its spt
//! seccomp rules.

pub mod block;
pub mod net;
pub mod offload;

use crate::args::TenderArgs;
use block::{BlockDevice, DEFAULT_SECTOR_SIZE};
use lamina_abi::mft::{DeviceType, Entry, Manifest, MftError, ENTRY_SIZE, HEADER_SIZE};
use net::NetDevice;
pub use net::NetOffload;
use std::path::PathBuf;
use thiserror::Error;
use zerocopy::{FromBytes, IntoBytes};

/// Why the devices could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// The manifest is malformed.
    #[error("the Solo5 manifest is invalid: {0}")]
    BadManifest(MftError),
    /// An option names a device the image does not declare.
    #[error(
        "{option}:{name}: the image declares no {kind} device '{name}' (it declares: {declared})"
    )]
    NotDeclared {
        /// The option.
        option: &'static str,
        /// The name given.
        name: String,
        /// BLOCK_BASIC or NET_BASIC.
        kind: &'static str,
        /// What the image does declare.
        declared: String,
    },
    /// A device the image declares was not attached.
    #[error("Device '{name}' of type {kind} declared but not attached; pass {option}:{name}=...")]
    NotAttached {
        /// Its name.
        name: String,
        /// Its type.
        kind: &'static str,
        /// The option that attaches it.
        option: &'static str,
    },
    /// The block file could not be opened.
    #[error("block device '{name}': cannot open {path:?}: {reason}")]
    BlockOpen {
        /// Device name.
        name: String,
        /// File.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The block file's size does not suit the sector size.
    #[error("block device '{name}': {path:?} is {capacity} bytes, which is not a non-zero multiple of the sector size {block_size}; resize it (e.g. truncate -s 1M FILE) or pass --block-sector-size:{name}=N")]
    BlockSize {
        /// Device name.
        name: String,
        /// File.
        path: PathBuf,
        /// Its size.
        capacity: u64,
        /// The sector size.
        block_size: u64,
    },
    /// The tap interface could not be attached.
    #[error("network device '{name}': tap interface '{tap}': {why}")]
    Tap {
        /// Device name.
        name: String,
        /// Interface.
        tap: String,
        /// What went wrong and what to do.
        why: String,
    },
}

fn kind_name(device_type: Option<DeviceType>) -> &'static str {
    match device_type {
        Some(DeviceType::BlockBasic) => "BLOCK_BASIC",
        Some(DeviceType::NetBasic) => "NET_BASIC",
        _ => "RESERVED",
    }
}

/// The attached devices and the manifest copy for the guest.
#[derive(Debug)]
pub struct Devices {
    /// The manifest with every device attached: goes into guest memory.
    pub manifest: Vec<u8>,
    /// Block devices, by ascending handle.
    pub blocks: Vec<BlockDevice>,
    /// Network devices, by ascending handle.
    pub nets: Vec<NetDevice>,
}

impl Devices {
    /// Attaches the devices the options name to the entries of `manifest`
    /// (as the image carries it).
    pub fn attach(
        manifest: &[u8],
        args: &TenderArgs,
        net_offload: NetOffload,
    ) -> Result<Self, DeviceError> {
        let parsed = Manifest::parse(manifest).map_err(DeviceError::BadManifest)?;
        let declared = || {
            let names: Vec<String> = parsed
                .entries()
                .skip(1)
                .map(|e| {
                    format!(
                        "{} ({})",
                        String::from_utf8_lossy(e.name()),
                        kind_name(e.device_type())
                    )
                })
                .collect();
            if names.is_empty() {
                "no devices".to_string()
            } else {
                names.join(", ")
            }
        };
        let find = |option, name: &str, device_type| {
            parsed
                .find(name, device_type)
                .ok_or_else(|| DeviceError::NotDeclared {
                    option,
                    name: name.to_string(),
                    kind: kind_name(Some(device_type)),
                    declared: declared(),
                })
        };
        // Options for devices that were never attached.
        if let Some((name, _)) = args.sector_sizes.first() {
            find("--block-sector-size", name, DeviceType::BlockBasic)?;
            return Err(DeviceError::NotAttached {
                name: name.clone(),
                kind: "BLOCK_BASIC",
                option: "--block",
            });
        }
        if let Some((name, _)) = args.macs.first() {
            find("--net-mac", name, DeviceType::NetBasic)?;
            return Err(DeviceError::NotAttached {
                name: name.clone(),
                kind: "NET_BASIC",
                option: "--net",
            });
        }
        let mut copy = manifest.to_vec();
        let mut blocks = Vec::new();
        let mut nets = Vec::new();
        let mut attached = vec![false; parsed.len()];
        let mut store = |index: usize, entry: &Entry| {
            let at = HEADER_SIZE + index * ENTRY_SIZE;
            copy[at..at + ENTRY_SIZE].copy_from_slice(entry.as_bytes());
            attached[index] = true;
        };
        for arg in &args.blocks {
            let (index, mut entry) = find("--block", &arg.name, DeviceType::BlockBasic)?;
            let block_size = arg.sector_size.unwrap_or(DEFAULT_SECTOR_SIZE);
            let device = BlockDevice::open(&arg.name, index as u64, &arg.path, block_size)?;
            entry.attach_block(device.capacity, block_size as u16, device.fd());
            store(index, &entry);
            blocks.push(device);
        }
        for arg in &args.nets {
            let (index, mut entry) = find("--net", &arg.name, DeviceType::NetBasic)?;
            let device = NetDevice::open(&arg.name, index as u64, &arg.tap, arg.mac, net_offload)?;
            entry.attach_net(device.mac, device.mtu, device.fd());
            entry.set_net_features(device.features);
            store(index, &entry);
            nets.push(device);
        }
        for (index, entry) in parsed.entries().enumerate().skip(1) {
            if !attached[index] {
                let device_type = entry.device_type();
                return Err(DeviceError::NotAttached {
                    name: String::from_utf8_lossy(entry.name()).into_owned(),
                    kind: kind_name(device_type),
                    option: if device_type == Some(DeviceType::NetBasic) {
                        "--net"
                    } else {
                        "--block"
                    },
                });
            }
        }
        blocks.sort_by_key(|d| d.handle);
        nets.sort_by_key(|d| d.handle);
        Ok(Devices {
            manifest: copy,
            blocks,
            nets,
        })
    }

    /// Turns on `features` ([`lamina_abi::mft::block_features`]) for every
    /// block device, in the devices and in their manifest entries: for a
    /// guest whose note declares `BLOCK_IO`.
    pub fn enable_block_features(&mut self, features: u16) {
        for block in &mut self.blocks {
            block.features = features;
            let at = HEADER_SIZE + block.handle as usize * ENTRY_SIZE;
            if let Some(bytes) = self.manifest.get_mut(at..at + ENTRY_SIZE) {
                // Copied out: the manifest's bytes need not be aligned.
                if let Ok(mut entry) = Entry::read_from_bytes(bytes) {
                    entry.set_block_features(features);
                    bytes.copy_from_slice(entry.as_bytes());
                }
            }
        }
    }

    /// Offers the guest the trace file `fd` in the manifest's reserved
    /// entry 0 (spt's `--trace`; see `lamina_abi::mft::Entry::trace_fd`).
    pub fn offer_trace(&mut self, fd: i32) {
        if let Some(bytes) = self.manifest.get_mut(HEADER_SIZE..HEADER_SIZE + ENTRY_SIZE) {
            if let Ok(mut first) = Entry::read_from_bytes(bytes) {
                first.attach_trace(fd);
                bytes.copy_from_slice(first.as_bytes());
            }
        }
    }

    /// The block device with `handle`.
    pub fn block(&self, handle: u64) -> Option<&BlockDevice> {
        self.blocks.iter().find(|d| d.handle == handle)
    }

    /// The network device with `handle`.
    pub fn net(&self, handle: u64) -> Option<&NetDevice> {
        self.nets.iter().find(|d| d.handle == handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Command};
    use lamina_abi::mft;
    use std::ffi::OsString;

    fn manifest(devices: &[(&str, DeviceType)]) -> Vec<u8> {
        let mut bytes = vec![0; mft::manifest_size(devices.len())];
        mft::encode(devices, &mut bytes).unwrap();
        bytes
    }

    fn args(list: &[&str]) -> TenderArgs {
        let mut all: Vec<OsString> = list.iter().map(OsString::from).collect();
        all.push("image".into());
        match parse(all, &[]).unwrap() {
            Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn disk(name: &str, size: u64) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("lamina-tender-{}-{name}", std::process::id()));
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        path
    }

    #[test]
    fn a_block_device_is_attached_in_the_copy() {
        let path = disk("good", 1 << 20);
        let image = manifest(&[("storage", DeviceType::BlockBasic)]);
        let option = format!("--block:storage={}", path.display());
        let devices = Devices::attach(
            &image,
            &args(&[&option, "--block-sector-size:storage=4096"]),
            NetOffload::Off,
        )
        .unwrap();
        let copy = Manifest::parse_attached(&devices.manifest).unwrap();
        let (handle, entry) = copy.find("storage", DeviceType::BlockBasic).unwrap();
        assert!(entry.is_attached());
        assert_eq!(
            (entry.block_capacity(), entry.block_size()),
            (1 << 20, 4096)
        );
        assert_eq!(entry.host_fd(), devices.blocks[0].fd());
        assert_eq!(devices.block(handle as u64).unwrap().capacity, 1 << 20);
        // The image's manifest itself is left as it was.
        assert!(Manifest::parse(&image).is_ok());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn block_files_of_the_wrong_size_are_refused() {
        let image = manifest(&[("storage", DeviceType::BlockBasic)]);
        for (name, size, sector) in [
            ("empty", 0, "512"),
            ("odd", 1000, "512"),
            ("small", 2048, "4096"),
        ] {
            let path = disk(name, size);
            let option = format!("--block:storage={}", path.display());
            let sector = format!("--block-sector-size:storage={sector}");
            let err =
                Devices::attach(&image, &args(&[&option, &sector]), NetOffload::Off).unwrap_err();
            assert!(
                matches!(err, DeviceError::BlockSize { .. }),
                "{name}: {err}"
            );
            std::fs::remove_file(path).unwrap();
        }
        let err = Devices::attach(
            &image,
            &args(&["--block:storage=/nonexistent/disk"]),
            NetOffload::Off,
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::BlockOpen { .. }));
    }

    #[test]
    fn undeclared_and_unattached_devices_are_refused() {
        let image = manifest(&[("service", DeviceType::NetBasic)]);
        let err = Devices::attach(&image, &args(&[]), NetOffload::Off).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Device 'service' of type NET_BASIC declared but not attached; pass --net:service=..."
        );
        let err = Devices::attach(
            &image,
            &args(&["--block:storage=/dev/null"]),
            NetOffload::Off,
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::NotDeclared { .. }));
        assert!(err.to_string().contains("service (NET_BASIC)"), "{err}");
        let err = Devices::attach(
            &image,
            &args(&["--net-mac:service=02:00:00:00:00:01"]),
            NetOffload::Off,
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::NotAttached { .. }));
        let err = Devices::attach(
            &image,
            &args(&["--net:service=nosuchtap0"]),
            NetOffload::Off,
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::Tap { .. }), "{err}");
        assert!(err.to_string().contains("ip tuntap add"), "{err}");
        let empty = manifest(&[]);
        let devices = Devices::attach(&empty, &args(&[]), NetOffload::Off).unwrap();
        assert!(devices.blocks.is_empty() && devices.nets.is_empty());
        assert!(matches!(
            Devices::attach(&empty[..10], &args(&[]), NetOffload::Off),
            Err(DeviceError::BadManifest(_))
        ));
    }
}
