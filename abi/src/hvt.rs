//! The hvt ABI, version 2: a guest in a hardware virtual machine calls its
//! tender with `outl` of a 32-bit guest-physical address to port
//! `HYPERCALL_PIO_BASE + n`. Every struct below is at that address; fields
//! are marked IN (guest to tender), OUT (tender to guest) or IN/OUT.
//!
//! Rule for changes: fields are only ever appended, hypercall numbers never
//! reused, and anything new is negotiated through
//! [`BootInfo::host_features`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ABI version in the image's ABI1 note.
pub const ABI_VERSION: u32 = 2;

/// Port of hypercall 0; hypercall `n` is port `HYPERCALL_PIO_BASE + n`.
pub const HYPERCALL_PIO_BASE: u16 = 0x500;

/// Guest-physical address of the boot info; the manifest copy and the
/// command line follow it (guests follow the pointers, never fixed offsets).
pub const BOOT_INFO_BASE: u64 = 0x1_0000;

/// Largest guest memory: 4 GiB (hypercall pointers are 32 bits).
pub const MAX_MEM_SIZE: u64 = 1 << 32;

/// Size of the halt cookie area a guest may pass to `Halt`.
pub const HALT_COOKIE_MAX: u64 = 512;

/// Hypercall numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Hypercall {
    /// [`HcWalltime`]
    Walltime = 1,
    /// [`HcPuts`]
    Puts = 2,
    /// [`HcPoll`]
    Poll = 3,
    /// [`HcBlockWrite`]
    BlockWrite = 4,
    /// [`HcBlockRead`]
    BlockRead = 5,
    /// [`HcNetWrite`]
    NetWrite = 6,
    /// [`HcNetRead`]
    NetRead = 7,
    /// [`HcHalt`]
    Halt = 8,
    /// [`HcBlockFlush`]: Lamina's, only on a device whose manifest entry
    /// has [`block_features::FLUSH`](crate::mft::block_features::FLUSH).
    BlockFlush = 9,
    /// [`HcBlockRingServe`]: Lamina's, only with
    /// [`HOST_FEATURE_BLOCK_RING`].
    BlockRingServe = 10,
    /// [`HcTraceRegister`]: Lamina's, only with [`HOST_FEATURE_TRACE`].
    TraceRegister = 11,
}

impl Hypercall {
    /// The hypercall behind an I/O port, if any.
    pub fn from_port(port: u16) -> Option<Self> {
        Some(match port.checked_sub(HYPERCALL_PIO_BASE)? {
            1 => Hypercall::Walltime,
            2 => Hypercall::Puts,
            3 => Hypercall::Poll,
            4 => Hypercall::BlockWrite,
            5 => Hypercall::BlockRead,
            6 => Hypercall::NetWrite,
            7 => Hypercall::NetRead,
            8 => Hypercall::Halt,
            9 => Hypercall::BlockFlush,
            10 => Hypercall::BlockRingServe,
            11 => Hypercall::TraceRegister,
            _ => return None,
        })
    }

    /// The I/O port the guest writes to.
    pub const fn port(self) -> u16 {
        HYPERCALL_PIO_BASE + self as u16
    }
}

/// `host_features` bit: the tender offers the batched network ring
/// ([`crate::ring`]) at [`BootInfo::net_ring`].
pub const HOST_FEATURE_RING_IO: u32 = 1 << 0;
/// `host_features` bit: with the ring, the tender offers receive queues
/// ([`crate::ring::rx`]): its I/O thread receives frames into the ring
/// area before the guest asks, and wakes a guest that waits in POLL.
pub const HOST_FEATURE_RX_QUEUES: u32 = 1 << 1;
/// `host_features` bit: the tender offers the block ring
/// ([`crate::block_ring`]) at [`BootInfo::block_ring`] (only to an image
/// whose LMN1 note asks for `BLOCK_IO`).
pub const HOST_FEATURE_BLOCK_RING: u32 = 1 << 2;

/// `host_features` bit: the tender records a trace (its `--trace=FILE`):
/// a guest that records into a `lamina_trace` ring registers it with
/// [`Hypercall::TraceRegister`], and the tender drains the ring from guest
/// memory while the guest runs and at its end. Without the bit (Solo5's
/// tenders, or no `--trace`) the guest must not make the call.
pub const HOST_FEATURE_TRACE: u32 = 1 << 3;

/// `host_features` bit: the vCPU starts with SSE enabled (CR4.OSFXSR and
/// CR4.OSXMMEXCPT set, CR0.EM clear), so the guest need not read CR4 to
/// find out: on KVM-PVM every control-register access is emulated, a VM
/// exit. Solo5's tenders enable SSE as well but do not say so; a guest
/// without the bit checks.
pub const HOST_FEATURE_SSE: u32 = 1 << 4;

/// What the tender tells the guest at entry (pointer in `%rdi`).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// OUT: bytes of guest memory the guest may use, from address 0.
    pub mem_size: u64,
    /// OUT: end of the loaded image, page aligned: the heap may start here.
    pub kernel_end: u64,
    /// OUT: TSC frequency in Hz.
    pub cpu_cycle_freq: u64,
    /// OUT: guest address of the NUL-terminated command line.
    pub cmdline: u64,
    /// OUT: guest address of the manifest copy, with devices attached.
    pub mft: u64,
    /// OUT: extensions the tender offers (`HOST_FEATURE_*`). Appended in
    /// Solo5 0.11; zero from older tenders.
    pub host_features: u32,
    /// Reserved for the guest's answer; always 0 today.
    pub guest_features: u32,
    /// OUT: guest address of the network ring when `HOST_FEATURE_RING_IO`.
    pub net_ring: u64,
    /// OUT: guest address of the block ring when
    /// `HOST_FEATURE_BLOCK_RING` (a Lamina extension appended after
    /// Solo5's fields: a Solo5 tender may put other bytes here, so read
    /// it only with the bit set).
    pub block_ring: u64,
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcWalltime {
    /// OUT: nanoseconds since the Unix epoch.
    pub nsecs: u64,
}

/// Console output: the tender writes `len` bytes at `data` in one call.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcPuts {
    /// IN: guest address of the text.
    pub data: u64,
    /// IN: its length.
    pub len: u64,
}

/// Block until a network device has input or `timeout_nsecs` pass.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcPoll {
    /// IN: longest wait, relative to now.
    pub timeout_nsecs: u64,
    /// OUT: bit `i` set when the device with handle `i` has input.
    pub ready_set: u64,
    /// OUT: number of ready devices.
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Write one or more blocks.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcBlockWrite {
    /// IN: device handle (its manifest index).
    pub handle: u64,
    /// IN: byte offset on the device.
    pub offset: u64,
    /// IN: guest address of the data.
    pub data: u64,
    /// IN: length in bytes.
    pub len: u64,
    /// OUT: a [`crate::Solo5Result`].
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Read one or more blocks.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcBlockRead {
    /// IN: device handle.
    pub handle: u64,
    /// IN: byte offset on the device.
    pub offset: u64,
    /// IN: guest address of the buffer.
    pub data: u64,
    /// IN/OUT: length in bytes.
    pub len: u64,
    /// OUT: a [`crate::Solo5Result`].
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Make the writes completed so far on a block device durable (the
/// tender's `fdatasync(2)` of the backing file).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcBlockFlush {
    /// IN: device handle.
    pub handle: u64,
    /// OUT: a [`crate::Solo5Result`].
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Serve the block ring ([`crate::block_ring`]) now, on the vCPU's own
/// thread in the tender: returns once every request submitted before the
/// call has been answered. A guest whose request takes longer than an
/// exit would calls it instead of spinning on: on a busy host the
/// tender's block I/O thread may be waiting for the very CPU the spinning
/// vCPU holds.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcBlockRingServe {
    /// OUT: requests the vCPU thread answered in this call (others were
    /// answered by the I/O thread).
    pub served: u64,
}

/// Hand the tender the guest's trace ring (`lamina_trace::ring`: control
/// words, then data words, all 64-bit) to drain to its trace file, once.
/// The tender reads the guest's clock here to relate it to its own.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcTraceRegister {
    /// IN: guest address of the ring (8-byte aligned).
    pub ring: u64,
    /// IN: its size in 64-bit words, control words included.
    pub words: u64,
    /// IN: the guest's monotonic clock (ns) just before the call.
    pub guest_ns: u64,
    /// OUT: a [`crate::Solo5Result`]: `Einval` for a ring the tender
    /// refuses (outside guest memory, misaligned, too small or too large,
    /// or a second one).
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Send one Ethernet frame.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcNetWrite {
    /// IN: device handle.
    pub handle: u64,
    /// IN: guest address of the frame.
    pub data: u64,
    /// IN: frame length.
    pub len: u64,
    /// OUT: a [`crate::Solo5Result`].
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Receive one Ethernet frame if one is waiting.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcNetRead {
    /// IN: device handle.
    pub handle: u64,
    /// IN: guest address of the buffer.
    pub data: u64,
    /// IN/OUT: buffer size in, frame length out.
    pub len: u64,
    /// OUT: `Ok`, or `Again` when no frame is waiting.
    pub ret: i32,
    /// Padding.
    pub _pad: u32,
}

/// Stop the guest.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HcHalt {
    /// IN: guest address of up to [`HALT_COOKIE_MAX`] bytes of crash
    /// information, or 0.
    pub cookie: u64,
    /// IN: the exit status.
    pub exit_status: i32,
    /// Padding.
    pub _pad: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_match_solo5() {
        assert_eq!(size_of::<BootInfo>(), 64);
        assert_eq!(core::mem::offset_of!(BootInfo, block_ring), 56);
        assert_eq!(core::mem::offset_of!(BootInfo, host_features), 40);
        assert_eq!(core::mem::offset_of!(BootInfo, net_ring), 48);
        assert_eq!(size_of::<HcWalltime>(), 8);
        assert_eq!(size_of::<HcPuts>(), 16);
        assert_eq!(size_of::<HcPoll>(), 24);
        assert_eq!(size_of::<HcBlockWrite>(), 40);
        assert_eq!(size_of::<HcBlockRead>(), 40);
        assert_eq!(size_of::<HcNetWrite>(), 32);
        assert_eq!(size_of::<HcNetRead>(), 32);
        assert_eq!(size_of::<HcHalt>(), 16);
        assert_eq!(size_of::<HcBlockFlush>(), 16);
        assert_eq!(size_of::<HcBlockRingServe>(), 8);
        assert_eq!(size_of::<HcTraceRegister>(), 32);
        assert_eq!(core::mem::offset_of!(HcHalt, exit_status), 8);
    }

    #[test]
    fn ports_round_trip() {
        for n in 1..=11u16 {
            let hc = Hypercall::from_port(0x500 + n).unwrap();
            assert_eq!(hc.port(), 0x500 + n);
        }
        assert_eq!(Hypercall::from_port(0x500), None);
        assert_eq!(Hypercall::from_port(0x50c), None);
        assert_eq!(Hypercall::from_port(0x3f8), None);
    }
}
