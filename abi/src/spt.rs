//! The spt ABI, version 2: the guest runs inside the tender's own process
//! (guest address = host address), makes a small set of Linux system calls
//! directly, and a seccomp filter allows exactly those, pinned to the
//! descriptors of the attached devices.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ABI version in the image's ABI1 note.
pub const ABI_VERSION: u32 = 2;

/// Guest memory starts here (below it stays unmapped to catch NULL).
pub const HOST_MEM_BASE: u64 = 0x1_0000;

/// Address of the boot info; the manifest copy and command line follow.
pub const BOOT_INFO_BASE: u64 = 0x1_1000;

/// epoll `data` value of the tender's internal timerfd (`~1U` as u64).
pub const INTERNAL_TIMERFD: u64 = 0xffff_fffe;

/// What the tender tells the guest at entry (pointer in `%rdi`).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// Bytes of guest memory from address 0.
    pub mem_size: u64,
    /// End of the loaded image, page aligned.
    pub kernel_end: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline: u64,
    /// Address of the manifest copy, with host descriptors filled in.
    pub mft: u64,
    /// epoll descriptor the guest waits on in `epoll_pwait`.
    pub epollfd: i32,
    /// timerfd (CLOCK_MONOTONIC) the guest arms for its deadline.
    pub timerfd: i32,
}

/// System calls a guest may make, by x86_64 number: the spt ABI.
pub mod syscall {
    /// `read(fd, buf, len)`: network receive.
    pub const READ: u32 = 0;
    /// `write(fd, buf, len)`: console (fd 1) and network transmit.
    pub const WRITE: u32 = 1;
    /// `pread64(fd, buf, len, offset)`: block read.
    pub const PREAD64: u32 = 17;
    /// `pwrite64(fd, buf, len, offset)`: block write.
    pub const PWRITE64: u32 = 18;
    /// `readv(fd, iov, iovcnt)`: a network device with a virtio-net header
    /// (Lamina's tender only; see `mft::net_features`).
    pub const READV: u32 = 19;
    /// `fdatasync(fd)`: block flush (Lamina's tender, on a device with
    /// [`block_features::FLUSH`](crate::mft::block_features::FLUSH)).
    pub const FDATASYNC: u32 = 75;
    /// `arch_prctl(ARCH_SET_FS, base)`: thread-local storage.
    pub const ARCH_PRCTL: u32 = 158;
    /// `clock_gettime(clock, ts)`: monotonic and wall time.
    pub const CLOCK_GETTIME: u32 = 228;
    /// `exit_group(status)`: halt.
    pub const EXIT_GROUP: u32 = 231;
    /// `epoll_pwait(epfd, events, max, timeout, sigmask)`: yield.
    pub const EPOLL_PWAIT: u32 = 281;
    /// `timerfd_settime(fd, flags, new, old)`: the yield deadline.
    pub const TIMERFD_SETTIME: u32 = 286;
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_info_layout() {
        assert_eq!(core::mem::size_of::<super::BootInfo>(), 40);
        assert_eq!(core::mem::offset_of!(super::BootInfo, epollfd), 32);
    }
}
