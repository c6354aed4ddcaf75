//! The device manifest (MFT1): which devices an image needs, by name.
//!
//! The build puts it in the image as an ELF note ([`crate::note`]). The
//! tender validates it, attaches a host device to every entry (filling in
//! capacity, MAC, MTU, host descriptor and `attached`) and copies it into
//! guest memory; the guest acquires a device by looking its name up there.
//! A device's handle is its index in the manifest.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Manifest format version.
pub const VERSION: u32 = 1;
/// Most entries, including the reserved entry 0.
pub const MAX_ENTRIES: u32 = 64;
/// Bytes of a name, including its NUL; names are 1 to 67 ASCII letters and digits.
pub const NAME_SIZE: usize = 68;
/// Bytes of one entry.
pub const ENTRY_SIZE: usize = 104;
/// Bytes of the header before the entries.
pub const HEADER_SIZE: usize = 8;

/// Device types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceType {
    /// A block device (`--block:NAME=FILE`).
    BlockBasic = 1,
    /// A network device (`--net:NAME=TAP`).
    NetBasic = 2,
    /// Entry 0's type: reserved.
    ReservedFirst = 1 << 30,
}

impl DeviceType {
    /// Decodes a type field.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(DeviceType::BlockBasic),
            2 => Some(DeviceType::NetBasic),
            x if x == 1 << 30 => Some(DeviceType::ReservedFirst),
            _ => None,
        }
    }
}

/// The manifest header.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Header {
    /// [`VERSION`].
    pub version: u32,
    /// Number of entries that follow.
    pub entries: u32,
}

/// One device.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Entry {
    /// NUL-terminated name.
    pub name: [u8; NAME_SIZE],
    /// A [`DeviceType`].
    pub device_type: u32,
    /// Type-specific facts, filled in by the tender: block `{u64 capacity;
    /// u16 block_size}`, net `{u8 mac[6]; u16 mtu}`.
    pub info: [u8; 16],
    /// The host descriptor behind the device (spt uses it in its system calls).
    pub host: u64,
    /// Non-zero once the tender attached a device; must be 0 in the image.
    pub attached: u8,
    /// Padding.
    pub _pad: [u8; 7],
}

impl Entry {
    /// An unattached entry.
    pub fn new(name: &str, device_type: DeviceType) -> Result<Self, MftError> {
        if !valid_name(name) {
            return Err(MftError::BadName);
        }
        let mut entry = Entry::new_zeroed();
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        entry.device_type = device_type as u32;
        Ok(entry)
    }

    /// The name, without its NUL.
    pub fn name(&self) -> &[u8] {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_SIZE);
        &self.name[..len]
    }

    /// The type, if known.
    pub fn device_type(&self) -> Option<DeviceType> {
        DeviceType::from_raw(self.device_type)
    }

    /// Whether a tender attached a device.
    pub fn is_attached(&self) -> bool {
        self.attached != 0
    }

    /// Block device capacity in bytes.
    pub fn block_capacity(&self) -> u64 {
        u64::from_le_bytes(self.info[0..8].try_into().unwrap_or_default())
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u16 {
        u16::from_le_bytes([self.info[8], self.info[9]])
    }

    /// Network MAC address.
    pub fn net_mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.info[0..6]);
        mac
    }

    /// Network MTU (without the Ethernet header).
    pub fn net_mtu(&self) -> u16 {
        u16::from_le_bytes([self.info[6], self.info[7]])
    }

    /// Lamina's network features the tender turned on for this device
    /// ([`net_features`] bits; bytes 8-9 of the info, which Solo5's tenders
    /// leave 0).
    pub fn net_features(&self) -> u16 {
        u16::from_le_bytes([self.info[8], self.info[9]])
    }

    /// Records the network features the tender turned on.
    pub fn set_net_features(&mut self, features: u16) {
        self.info[8..10].copy_from_slice(&features.to_le_bytes());
    }

    /// Lamina's block features the tender turned on for this device
    /// ([`block_features`] bits; bytes 10-11 of the info, which Solo5's
    /// tenders leave 0).
    pub fn block_features(&self) -> u16 {
        u16::from_le_bytes([self.info[10], self.info[11]])
    }

    /// Records the block features the tender turned on.
    pub fn set_block_features(&mut self, features: u16) {
        self.info[10..12].copy_from_slice(&features.to_le_bytes());
    }

    /// The host descriptor (low 32 bits of `host`).
    pub fn host_fd(&self) -> i32 {
        self.host as u32 as i32
    }

    /// The descriptor of the trace file the tender offers, if any: Lamina's
    /// spt tender with `--trace=FILE` marks the reserved entry 0 attached
    /// with the file's descriptor in `host` (Solo5's tenders never attach
    /// entry 0), and its sandbox allows `write` on it. A guest that records
    /// writes its trace there; without it the guest must not.
    pub fn trace_fd(&self) -> Option<i32> {
        (self.device_type() == Some(DeviceType::ReservedFirst) && self.is_attached())
            .then(|| self.host_fd())
    }

    /// Offers the trace file `fd` on the reserved entry 0 (see
    /// [`Entry::trace_fd`]).
    pub fn attach_trace(&mut self, fd: i32) {
        self.host = fd as u32 as u64;
        self.attached = 1;
    }

    /// Marks a block device attached.
    pub fn attach_block(&mut self, capacity: u64, block_size: u16, fd: i32) {
        self.info = [0; 16];
        self.info[0..8].copy_from_slice(&capacity.to_le_bytes());
        self.info[8..10].copy_from_slice(&block_size.to_le_bytes());
        self.host = fd as u32 as u64;
        self.attached = 1;
    }

    /// Marks a network device attached.
    pub fn attach_net(&mut self, mac: [u8; 6], mtu: u16, fd: i32) {
        self.info = [0; 16];
        self.info[0..6].copy_from_slice(&mac);
        self.info[6..8].copy_from_slice(&mtu.to_le_bytes());
        self.host = fd as u32 as u64;
        self.attached = 1;
    }
}

/// Bits of [`Entry::net_features`].
pub mod net_features {
    /// Each frame on the device's descriptor, both ways, starts with a
    /// 10-byte `virtio_net_hdr` (virtio 1.x, 5.1.6): the host may deliver
    /// partial checksums and TCP segments up to 64 KiB, and accepts both
    /// (see `lamina_wire::offload`). Only for guests whose LMN1 note has
    /// [`features::NET_OFFLOAD`](crate::note::features::NET_OFFLOAD).
    pub const VIRTIO_NET_HDR: u16 = 1 << 0;
}

/// Bits of [`Entry::block_features`]: a Lamina tender turns them on for a
/// guest whose LMN1 note has [`features::BLOCK_IO`](crate::note::features::BLOCK_IO).
/// Without them (a Solo5 tender) a transfer is one sector and there is no
/// flush.
pub mod block_features {
    /// A read or write may carry any whole number of sectors, up to
    /// [`MAX_TRANSFER`] bytes (hvt: the `BlockRead`/`BlockWrite`
    /// hypercalls; spt: `pread64`/`pwrite64` as [`spt_transfer_len`]
    /// splits them, which the tender's seccomp filter checks).
    pub const MULTI_SECTOR: u16 = 1 << 0;
    /// The device takes a flush (hvt: the `BlockFlush` hypercall; spt:
    /// `fdatasync` of the device's descriptor): writes completed before it
    /// are on stable storage when it returns.
    pub const FLUSH: u16 = 1 << 1;
    /// Largest transfer in bytes with [`MULTI_SECTOR`].
    pub const MAX_TRANSFER: u64 = 256 << 10;

    /// How many bytes of a `remaining`-byte transfer at byte `offset` one
    /// spt system call may carry on a device of `capacity` bytes with
    /// `sector`-byte sectors (a power of two). The seccomp filter cannot
    /// compare two arguments, so it allows a length of up to `sector << k`
    /// only at offsets up to `capacity - (sector << k)`, for each `k` up to
    /// [`MAX_TRANSFER`]: a transfer that ends near the end of the device
    /// goes in power-of-two pieces. 0 when `remaining` is less than a
    /// sector or the transfer does not fit on the device.
    pub fn spt_transfer_len(offset: u64, remaining: u64, sector: u64, capacity: u64) -> u64 {
        let whole = remaining.min(MAX_TRANSFER.max(sector)) / sector.max(1) * sector;
        if whole == 0 || offset.checked_add(whole).is_none_or(|end| end > capacity) {
            return 0;
        }
        let sectors = whole / sector;
        let rounded = sectors.next_power_of_two() * sector;
        if offset + rounded <= capacity {
            whole
        } else {
            // The largest power of two below `sectors`: offset + it fits.
            (1u64 << sectors.ilog2()) * sector
        }
    }
}

/// Whether `name` is a valid device name: 1 to 67 ASCII letters and digits.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < NAME_SIZE && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why a manifest was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MftError {
    /// Shorter than its header, or its size is not header + entries × 104.
    BadSize,
    /// Not version 1.
    BadVersion,
    /// No entries, or more than [`MAX_ENTRIES`].
    BadCount,
    /// Entry 0 is not the reserved, nameless entry.
    BadReservedEntry,
    /// A name is not NUL-terminated, empty, or not letters and digits.
    BadName,
    /// An entry has an unknown type.
    BadType,
    /// An entry is already marked attached in the image.
    AlreadyAttached,
    /// Two entries have the same name.
    DuplicateName,
}

impl core::fmt::Display for MftError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MftError::BadSize => "manifest size does not match its entry count",
            MftError::BadVersion => "manifest version is not 1",
            MftError::BadCount => "manifest has no entries or more than 64",
            MftError::BadReservedEntry => "manifest entry 0 is not the reserved entry",
            MftError::BadName => "manifest has an invalid device name",
            MftError::BadType => "manifest has a device of unknown type",
            MftError::AlreadyAttached => "manifest in the image marks a device attached",
            MftError::DuplicateName => "manifest names a device twice",
        })
    }
}

/// A manifest checked by [`Manifest::parse`]: every accessor is safe to call.
#[derive(Debug, Clone, Copy)]
pub struct Manifest<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Manifest<'a> {
    /// Validates `bytes` as a manifest as the image carries it (nothing
    /// attached). Use [`Manifest::parse_attached`] for a tender's copy.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MftError> {
        let manifest = Self::parse_attached(bytes)?;
        if manifest.entries().any(|e| e.is_attached()) {
            return Err(MftError::AlreadyAttached);
        }
        Ok(manifest)
    }

    /// Validates the layout of `bytes`, accepting attached entries.
    pub fn parse_attached(bytes: &'a [u8]) -> Result<Self, MftError> {
        let (header, _) = Header::read_from_prefix(bytes).map_err(|_| MftError::BadSize)?;
        if header.version != VERSION {
            return Err(MftError::BadVersion);
        }
        if header.entries == 0 || header.entries > MAX_ENTRIES {
            return Err(MftError::BadCount);
        }
        let count = header.entries as usize;
        if bytes.len() != HEADER_SIZE + count * ENTRY_SIZE {
            return Err(MftError::BadSize);
        }
        let manifest = Manifest { bytes, count };
        let first = manifest.entry(0).ok_or(MftError::BadSize)?;
        if first.device_type() != Some(DeviceType::ReservedFirst) || first.name[0] != 0 {
            return Err(MftError::BadReservedEntry);
        }
        for (i, entry) in manifest.entries().enumerate().skip(1) {
            if entry.name[NAME_SIZE - 1] != 0 {
                return Err(MftError::BadName);
            }
            let name = core::str::from_utf8(entry.name()).map_err(|_| MftError::BadName)?;
            if !valid_name(name) {
                return Err(MftError::BadName);
            }
            if !matches!(
                entry.device_type(),
                Some(DeviceType::BlockBasic | DeviceType::NetBasic)
            ) {
                return Err(MftError::BadType);
            }
            if manifest
                .entries()
                .take(i)
                .any(|other| other.name() == entry.name())
            {
                return Err(MftError::DuplicateName);
            }
        }
        Ok(manifest)
    }

    /// Number of entries, including the reserved entry 0.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no entries (never true for a parsed manifest).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A copy of entry `index`.
    pub fn entry(&self, index: usize) -> Option<Entry> {
        if index >= self.count {
            return None;
        }
        let start = HEADER_SIZE + index * ENTRY_SIZE;
        Entry::read_from_bytes(self.bytes.get(start..start + ENTRY_SIZE)?).ok()
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.count).filter_map(|i| self.entry(i))
    }

    /// The index (handle) and entry of the device `name` of `device_type`.
    pub fn find(&self, name: &str, device_type: DeviceType) -> Option<(usize, Entry)> {
        self.entries()
            .enumerate()
            .skip(1)
            .find(|(_, e)| e.name() == name.as_bytes() && e.device_type() == Some(device_type))
    }
}

/// Byte size of a manifest of `devices` devices (plus the reserved entry).
pub const fn manifest_size(devices: usize) -> usize {
    HEADER_SIZE + (devices + 1) * ENTRY_SIZE
}

/// Writes a manifest of `devices` into `out`, which must be exactly
/// [`manifest_size`]`(devices.len())` bytes.
pub fn encode(devices: &[(&str, DeviceType)], out: &mut [u8]) -> Result<(), MftError> {
    if devices.len() + 1 > MAX_ENTRIES as usize {
        return Err(MftError::BadCount);
    }
    if out.len() != manifest_size(devices.len()) {
        return Err(MftError::BadSize);
    }
    out.fill(0);
    let header = Header {
        version: VERSION,
        entries: devices.len() as u32 + 1,
    };
    out[..HEADER_SIZE].copy_from_slice(header.as_bytes());
    let mut reserved = Entry::new_zeroed();
    reserved.device_type = DeviceType::ReservedFirst as u32;
    out[HEADER_SIZE..HEADER_SIZE + ENTRY_SIZE].copy_from_slice(reserved.as_bytes());
    for (i, (name, device_type)) in devices.iter().enumerate() {
        let start = HEADER_SIZE + (i + 1) * ENTRY_SIZE;
        out[start..start + ENTRY_SIZE].copy_from_slice(Entry::new(name, *device_type)?.as_bytes());
    }
    Manifest::parse(out).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_matches_solo5() {
        assert_eq!(core::mem::size_of::<Entry>(), ENTRY_SIZE);
        assert_eq!(core::mem::offset_of!(Entry, device_type), 68);
        assert_eq!(core::mem::offset_of!(Entry, info), 72);
        assert_eq!(core::mem::offset_of!(Entry, host), 88);
        assert_eq!(core::mem::offset_of!(Entry, attached), 96);
    }

    #[test]
    fn encode_parse_round_trip_and_attach() {
        let mut buf = [0u8; manifest_size(2)];
        encode(
            &[
                ("service", DeviceType::NetBasic),
                ("storage", DeviceType::BlockBasic),
            ],
            &mut buf,
        )
        .unwrap();
        let m = Manifest::parse(&buf).unwrap();
        assert_eq!(m.len(), 3);
        let (index, entry) = m.find("storage", DeviceType::BlockBasic).unwrap();
        assert_eq!((index, entry.name()), (2, &b"storage"[..]));
        assert!(m.find("storage", DeviceType::NetBasic).is_none());
        let mut e = entry;
        e.attach_block(1 << 20, 512, 7);
        assert_eq!(
            (
                e.block_capacity(),
                e.block_size(),
                e.host_fd(),
                e.is_attached()
            ),
            (1 << 20, 512, 7, true)
        );
        e.attach_net([2, 0, 0, 0, 0, 1], 1500, 9);
        assert_eq!((e.net_mac(), e.net_mtu()), ([2, 0, 0, 0, 0, 1], 1500));
        // Only the reserved entry 0 carries a trace file, and only once a
        // tender attached it.
        assert_eq!(e.trace_fd(), None, "a device entry");
        let mut first = m.entry(0).unwrap();
        assert_eq!(first.trace_fd(), None, "as the image has it");
        first.attach_trace(11);
        assert_eq!(first.trace_fd(), Some(11));
        let mut copy = buf;
        copy[HEADER_SIZE..HEADER_SIZE + ENTRY_SIZE].copy_from_slice(first.as_bytes());
        let attached = Manifest::parse_attached(&copy).unwrap();
        assert_eq!(attached.entry(0).unwrap().trace_fd(), Some(11));
        assert!(
            Manifest::parse(&copy).is_err(),
            "an image may not attach it"
        );
    }

    #[test]
    fn malformed_manifests_are_refused() {
        let mut good = [0u8; manifest_size(1)];
        encode(&[("service", DeviceType::NetBasic)], &mut good).unwrap();
        assert_eq!(Manifest::parse(&good[..7]).err(), Some(MftError::BadSize));
        assert_eq!(
            Manifest::parse(&good[..good.len() - 1]).err(),
            Some(MftError::BadSize)
        );
        let mut bad = good;
        bad[0] = 2;
        assert_eq!(Manifest::parse(&bad).err(), Some(MftError::BadVersion));
        let mut bad = good;
        bad[4] = 65;
        assert_eq!(Manifest::parse(&bad).err(), Some(MftError::BadCount));
        let mut bad = good;
        bad[HEADER_SIZE] = b'x';
        assert_eq!(
            Manifest::parse(&bad).err(),
            Some(MftError::BadReservedEntry)
        );
        let mut bad = good;
        bad[HEADER_SIZE + ENTRY_SIZE + 96] = 1;
        assert_eq!(Manifest::parse(&bad).err(), Some(MftError::AlreadyAttached));
        let mut bad = good;
        bad[HEADER_SIZE + ENTRY_SIZE + 68] = 9;
        assert_eq!(Manifest::parse(&bad).err(), Some(MftError::BadType));
        let mut bad = good;
        bad[HEADER_SIZE + ENTRY_SIZE..HEADER_SIZE + ENTRY_SIZE + NAME_SIZE].fill(b'a');
        assert_eq!(Manifest::parse(&bad).err(), Some(MftError::BadName));
        let mut dup = [0u8; manifest_size(2)];
        assert_eq!(
            encode(
                &[("a", DeviceType::NetBasic), ("a", DeviceType::BlockBasic)],
                &mut dup
            )
            .err(),
            Some(MftError::DuplicateName)
        );
        assert_eq!(
            Entry::new("has-dash", DeviceType::NetBasic).err(),
            Some(MftError::BadName)
        );
        // No input of any length or content panics.
        let mut seed = 1u32;
        for len in 0..400 {
            let mut bytes = [0u8; 400];
            for b in bytes.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (seed >> 24) as u8 & 3;
            }
            let _ = Manifest::parse(&bytes[..len]);
        }
    }

    #[test]
    fn spt_transfers_stay_on_the_device_and_within_a_ladder_rule() {
        use block_features::{spt_transfer_len, MAX_TRANSFER};
        for sector in [512u64, 4096] {
            let capacity = sector * 1000;
            for offset in (0..capacity).step_by(sector as usize * 7) {
                for remaining in [sector, 3 * sector, 64 * sector, 10 << 20, capacity - offset] {
                    let remaining = remaining.min(capacity - offset);
                    let len = spt_transfer_len(offset, remaining, sector, capacity);
                    assert!(len >= sector && len <= remaining && len <= MAX_TRANSFER);
                    assert_eq!(len % sector, 0);
                    // Some rule k allows it: len <= sector << k, offset <= capacity - (sector << k).
                    let rule = (len / sector).next_power_of_two() * sector;
                    assert!(offset + rule <= capacity, "{offset}+{len} of {capacity}");
                }
            }
            assert_eq!(spt_transfer_len(0, sector - 1, sector, capacity), 0);
            assert_eq!(spt_transfer_len(capacity, sector, sector, capacity), 0);
            assert_eq!(spt_transfer_len(u64::MAX - 10, sector, sector, capacity), 0);
            assert_eq!(
                spt_transfer_len(0, 1 << 30, sector, capacity),
                MAX_TRANSFER.min(capacity)
            );
        }
    }
}
