//! Guest memory: the one place where a guest address becomes host memory.
//!
//! [`GuestMemory`] owns the anonymous mapping that backs guest RAM. Every
//! guest address the tender touches (image segments, boot info, hypercall
//! structs and buffers, ring entries) goes through [`SharedView::bytes`] or
//! [`SharedView::bytes_mut`], which both call [`SharedView::checked_offset`]:
//! overflow-checked, bounds-checked against the mapping, and checked against
//! the host protections the tender applied (a guest that points a hypercall
//! at its own read-only text gets a [`GuestFault`], not a tender that dies on
//! a host SIGSEGV). A bad range is an error value, never a panic.
//!
//! What they return is never a Rust reference to guest bytes, which the
//! guest (and on hvt a second tender thread) may change at any moment: see
//! [`volatile`] for the copies and system calls that access them.
//!
//! `unsafe` here is limited to the mapping itself and those accesses; each
//! block says why it is sound.

pub mod volatile;

pub use volatile::{GuestBytes, GuestBytesMut};

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use thiserror::Error;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Host page size, which protections are applied in.
const PAGE: u64 = lamina_abi::PAGE_SIZE;

/// A guest address range the tender refused to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GuestFault {
    /// The range wraps around the address space.
    #[error("guest range {gpa:#x}+{len:#x} overflows")]
    Overflow {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
    },
    /// The range is not inside guest memory.
    #[error("guest range {gpa:#x}+{len:#x} is outside guest memory [{base:#x}, {end:#x})")]
    OutOfBounds {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
        /// Lowest guest address.
        base: u64,
        /// One past the highest guest address.
        end: u64,
    },
    /// The range overlaps memory the tender made read-only or inaccessible.
    #[error(
        "guest range {gpa:#x}+{len:#x} is not {access} (it overlaps a protected image segment)"
    )]
    Protected {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
        /// "readable" or "writable".
        access: &'static str,
    },
    /// The range overlaps the area the tender reserved at the top of guest
    /// memory for itself (the hvt network ring), above the guest's
    /// `mem_size`: no guest buffer or structure may be there.
    #[error("guest range {gpa:#x}+{len:#x} overlaps the tender's area from {from:#x}")]
    Reserved {
        /// Start of the range.
        gpa: u64,
        /// Its length.
        len: u64,
        /// Start of the reserved area.
        from: u64,
    },
    /// An atomic access at an address not aligned for it.
    #[error("guest address {gpa:#x} is not {align}-byte aligned")]
    Misaligned {
        /// The address.
        gpa: u64,
        /// The alignment needed.
        align: u64,
    },
}

/// Why guest memory could not be set up or protected.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// mmap failed.
    #[error(
        "cannot map {size} bytes of guest memory at {addr:#x}: {source} (try a smaller --mem)"
    )]
    Map {
        /// Requested address (0: anywhere).
        addr: u64,
        /// Requested size.
        size: u64,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fixed range is already in use by the tender process.
    #[error("guest memory [{addr:#x}, {end:#x}) collides with the tender's own mappings (try a smaller --mem)")]
    Occupied {
        /// Start of the range.
        addr: u64,
        /// Its end.
        end: u64,
    },
    /// The requested size is not usable.
    #[error("guest memory range [{base:#x}, {end:#x}) is empty or not page aligned")]
    BadSize {
        /// Lowest address.
        base: u64,
        /// End address.
        end: u64,
    },
    /// mprotect failed or the range was bad.
    #[error("cannot protect guest range [{start:#x}, {end:#x}): {reason}")]
    Protect {
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// Why.
        reason: String,
    },
}

/// Access rights of a range of guest memory, as the image asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protection {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Protection {
    /// Read and write, not execute: ordinary RAM.
    pub const READ_WRITE: Protection = Protection {
        read: true,
        write: true,
        exec: false,
    };

    /// The `PROT_*` bits for mprotect.
    fn to_prot(self) -> libc::c_int {
        let mut prot = libc::PROT_NONE;
        if self.read {
            prot |= libc::PROT_READ;
        }
        if self.write {
            prot |= libc::PROT_WRITE;
        }
        if self.exec {
            prot |= libc::PROT_EXEC;
        }
        prot
    }
}

/// A protected range, remembered so that the checked accessors refuse it.
#[derive(Debug, Clone, Copy)]
struct ProtectedRange {
    start: u64,
    end: u64,
    readable: bool,
    writable: bool,
}

/// The host mapping behind guest RAM; unmapped when the last owner (the
/// [`GuestMemory`] or a [`SharedView`]) goes.
#[derive(Debug)]
struct Mapping {
    host: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; which thread
// unmaps it does not matter, and access to its bytes is governed by the
// owners below.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` itself hands out nothing but its address.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping of exactly this size; every owner that
        // could still point into it holds this Arc, so none is left.
        unsafe { libc::munmap(self.host.as_ptr().cast(), self.len) };
    }
}

/// The bounds and protections that every access is checked against.
#[derive(Debug, Clone)]
struct Checks {
    base: u64,
    end: u64,
    /// Start of the tender's reserved area `[reserved, end)` (`end`: none).
    reserved: u64,
    protected: Vec<ProtectedRange>,
}

impl Checks {
    /// THE check: offset of `[gpa, gpa+len)` in the mapping if it is wholly
    /// inside guest memory.
    fn offset(&self, gpa: u64, len: u64) -> Result<usize, GuestFault> {
        let last = gpa
            .checked_add(len)
            .ok_or(GuestFault::Overflow { gpa, len })?;
        if gpa < self.base || last > self.end {
            return Err(GuestFault::OutOfBounds {
                gpa,
                len,
                base: self.base,
                end: self.end,
            });
        }
        // Cannot truncate: the mapping's length fits in usize (checked in map).
        Ok((gpa - self.base) as usize)
    }

    /// [`Checks::offset`], the range is below the reserved area (the
    /// guest's memory), and it is not protected against `write`.
    fn access(&self, gpa: u64, len: u64, write: bool) -> Result<usize, GuestFault> {
        let offset = self.offset(gpa, len)?;
        if len > 0 && gpa + len > self.reserved {
            return Err(GuestFault::Reserved {
                gpa,
                len,
                from: self.reserved,
            });
        }
        self.unprotected(offset, gpa, len, write)
    }

    /// [`Checks::offset`], and the range is wholly inside the reserved area.
    fn reserved_access(&self, gpa: u64, len: u64) -> Result<usize, GuestFault> {
        let offset = self.offset(gpa, len)?;
        if gpa < self.reserved {
            return Err(GuestFault::OutOfBounds {
                gpa,
                len,
                base: self.reserved,
                end: self.end,
            });
        }
        Ok(offset)
    }

    /// `offset` (of `[gpa, gpa+len)`) if the range is not protected
    /// against `write`.
    fn unprotected(
        &self,
        offset: usize,
        gpa: u64,
        len: u64,
        write: bool,
    ) -> Result<usize, GuestFault> {
        let end = gpa + len; // no overflow: offset passed
        let denied = self
            .protected
            .iter()
            .any(|r| r.start < end && gpa < r.end && if write { !r.writable } else { !r.readable });
        if denied && len > 0 {
            return Err(GuestFault::Protected {
                gpa,
                len,
                access: if write { "writable" } else { "readable" },
            });
        }
        Ok(offset)
    }
}

/// Guest RAM: the guest addresses `[base, end)` backed by one host mapping.
///
/// It dereferences to its [`SharedView`], whose checked accessors are the
/// only way to guest bytes: the owner adds what only it may do, setting
/// host protections.
#[derive(Debug)]
pub struct GuestMemory {
    view: SharedView,
}

impl std::ops::Deref for GuestMemory {
    type Target = SharedView;

    fn deref(&self) -> &SharedView {
        &self.view
    }
}

impl GuestMemory {
    /// Maps `size` bytes of zeroed guest RAM anywhere in the tender's
    /// address space, for guest addresses `[0, size)` (hvt: KVM maps it).
    pub fn anywhere(size: u64) -> Result<Self, MemoryError> {
        Self::map(0, size, false)
    }

    /// Maps zeroed guest RAM at host address == guest address for
    /// `[base, end)` (spt: the guest runs in the tender's address space),
    /// refusing to replace anything already mapped there.
    pub fn identity(base: u64, end: u64) -> Result<Self, MemoryError> {
        Self::map(base, end, true)
    }

    fn map(base: u64, end: u64, fixed: bool) -> Result<Self, MemoryError> {
        if end <= base || !base.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) {
            return Err(MemoryError::BadSize { base, end });
        }
        let size = end - base;
        let len = usize::try_from(size).map_err(|_| MemoryError::BadSize { base, end })?;
        let (hint, flags) = if fixed {
            (
                base as *mut libc::c_void,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            )
        } else {
            // Private: anonymous pages, not shmem ones (a shared anonymous
            // mapping is a shmem file, whose pages cost more to fault in, to
            // account and to free). The tender's threads share it anyway.
            (
                std::ptr::null_mut(),
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        };
        // SAFETY: an anonymous mapping with MAP_FIXED_NOREPLACE or no fixed
        // address never replaces existing memory; the result is checked.
        let ptr =
            unsafe { libc::mmap(hint, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        if ptr == libc::MAP_FAILED {
            let source = std::io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EEXIST) {
                return Err(MemoryError::Occupied { addr: base, end });
            }
            return Err(MemoryError::Map {
                addr: base,
                size,
                source,
            });
        }
        if fixed && ptr as u64 != base {
            // A kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint.
            // SAFETY: `ptr` is the mapping just made, of `len` bytes.
            unsafe { libc::munmap(ptr, len) };
            return Err(MemoryError::Occupied { addr: base, end });
        }
        let host =
            NonNull::new(ptr.cast::<u8>()).ok_or(MemoryError::Occupied { addr: base, end })?;
        Ok(GuestMemory {
            view: SharedView {
                map: Arc::new(Mapping { host, len }),
                checks: Checks {
                    base,
                    end,
                    reserved: end,
                    protected: Vec::new(),
                },
            },
        })
    }

    /// A view of the same memory, with the same checks (bounds and the
    /// protections applied so far), that another thread may use while the
    /// vCPU runs: the tender's ring I/O thread. It keeps the mapping alive.
    pub fn shared_view(&self) -> SharedView {
        self.view.clone()
    }

    /// Applies `protection` to the page-aligned host range `[start, end)`
    /// and remembers it, so the checked accessors honour it too.
    pub fn protect(
        &mut self,
        start: u64,
        end: u64,
        protection: Protection,
    ) -> Result<(), MemoryError> {
        let offset = self.protection_range(start, end)?;
        if end == start {
            return Ok(());
        }
        // SAFETY: the range is page aligned and inside our own mapping (just
        // checked); changing its protection cannot affect other memory, and
        // the tender holds no reference into guest memory that could fault.
        let rc = unsafe {
            libc::mprotect(
                self.view.map.host.as_ptr().add(offset).cast(),
                (end - start) as usize,
                protection.to_prot(),
            )
        };
        if rc != 0 {
            return Err(MemoryError::Protect {
                start,
                end,
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        self.remember(start, end, protection);
        Ok(())
    }

    /// Makes the checked accessors honour `protection` on the page-aligned
    /// range `[start, end)`, as [`GuestMemory::protect`] does, but leaves
    /// the host mapping read-write: for hvt guests whose own page tables
    /// carry the protection (KVM maps guest pages through them), where a
    /// read-only host mapping would only cost VM exits (see
    /// `HostProtection::Checked`).
    pub fn protect_checked(
        &mut self,
        start: u64,
        end: u64,
        protection: Protection,
    ) -> Result<(), MemoryError> {
        self.protection_range(start, end)?;
        self.remember(start, end, protection);
        Ok(())
    }

    /// The offset of `[start, end)` for a protection: page aligned and
    /// inside guest memory.
    fn protection_range(&self, start: u64, end: u64) -> Result<usize, MemoryError> {
        let fail = |reason: String| MemoryError::Protect { start, end, reason };
        if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || end < start {
            return Err(fail("not page aligned".into()));
        }
        self.checked_offset(start, end - start)
            .map_err(|fault| fail(fault.to_string()))
    }

    /// Records `protection` on `[start, end)` for the checked accessors.
    fn remember(&mut self, start: u64, end: u64, protection: Protection) {
        let checks = &mut self.view.checks;
        checks
            .protected
            .retain(|r| r.end <= start || r.start >= end);
        if !(protection.read && protection.write) {
            checks.protected.push(ProtectedRange {
                start,
                end,
                readable: protection.read,
                writable: protection.write,
            });
        }
    }

    /// Makes the host pages of the page-aligned range `[start, end)` (inside
    /// guest memory) present and writable now, as a first write to each
    /// would, in one system call; contents are unchanged. On hvt, KVM's
    /// shadow MMU then maps up to 8 of them at the guest's first touch of
    /// one (it only maps ahead pages the host already has; see
    /// `HostProtection::Checked`). Best effort: before Linux 5.14 (no
    /// `MADV_POPULATE_WRITE`) they stay to be allocated on first touch.
    pub fn prefault(&self, start: u64, end: u64) {
        let Ok(offset) = self.checked_offset(start, end.saturating_sub(start)) else {
            return;
        };
        if end <= start || !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) {
            return;
        }
        // SAFETY: the range is page aligned and inside our own mapping (just
        // checked); populating it changes no byte.
        unsafe {
            libc::madvise(
                self.view.map.host.as_ptr().add(offset).cast(),
                (end - start) as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }

    /// Reserves `[from, end)` for the tender (the hvt network ring): from
    /// now on the ordinary accessors refuse it, so that no guest-supplied
    /// address (a hypercall structure, an I/O buffer) can reach it, and only
    /// the `reserved_*` accessors and [`SharedView::atomic_u32`] reach it.
    /// Views made before this call do not see the change.
    pub fn reserve_top(&mut self, from: u64) -> Result<(), GuestFault> {
        self.checked_offset(from, self.end() - from.min(self.end()))?;
        self.view.checks.reserved = from;
        Ok(())
    }

    /// Gives up ownership without unmapping: for spt, whose guest runs in
    /// this mapping after the tender has jumped into it and never returns.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

/// Guest memory as the tender sees it: every accessor goes through the
/// one check ([`SharedView::checked_offset`], then the protections).
///
/// Guest memory is shared with a running guest, and on hvt between the
/// vCPU thread and the ring I/O thread, so this view never forms a Rust
/// reference to guest bytes except as atomics: it hands out
/// [`GuestBytes`] and [`GuestBytesMut`] (volatile copies, or the address
/// for a system call) and `AtomicU32`s for ring indices.
#[derive(Debug, Clone)]
pub struct SharedView {
    map: Arc<Mapping>,
    checks: Checks,
}

impl SharedView {
    /// Lowest guest address.
    pub fn base(&self) -> u64 {
        self.checks.base
    }

    /// One past the highest guest address (the guest's `mem_size`).
    pub fn end(&self) -> u64 {
        self.checks.end
    }

    /// Host address of guest address `base`, for KVM's memory slot.
    pub fn host_address(&self) -> u64 {
        self.map.host.as_ptr() as u64
    }

    /// The check: the offset into the mapping of `[gpa, gpa+len)`, if that
    /// range is wholly inside guest memory. Every accessor goes through it.
    pub fn checked_offset(&self, gpa: u64, len: u64) -> Result<usize, GuestFault> {
        self.checks.offset(gpa, len)
    }

    /// Host pointer to `[gpa, gpa+len)` after the bounds check and the
    /// protections (readable, and writable if `write`). The pointer is
    /// valid for `len` bytes while this view lives.
    fn pointer(&self, gpa: u64, len: u64, write: bool) -> Result<*mut u8, GuestFault> {
        let offset = self.checks.access(gpa, len, write)?;
        // SAFETY: `offset` is inside the mapping (checked), which the Arc
        // keeps alive; computing the address creates no reference.
        Ok(unsafe { self.map.host.as_ptr().add(offset) })
    }

    /// The guest bytes `[gpa, gpa+len)`, to read.
    pub fn bytes(&self, gpa: u64, len: u64) -> Result<GuestBytes<'_>, GuestFault> {
        let ptr = self.pointer(gpa, len, false)?;
        // SAFETY: readable and inside the mapping (checked), which `&self`
        // keeps mapped; `len` fits usize since the mapping's length does.
        Ok(unsafe { GuestBytes::new(ptr, len as usize) })
    }

    /// The guest bytes `[gpa, gpa+len)`, to write (and read).
    pub fn bytes_mut(&self, gpa: u64, len: u64) -> Result<GuestBytesMut<'_>, GuestFault> {
        let ptr = self.pointer(gpa, len, true)?;
        // SAFETY: as in `bytes`, and writable (checked).
        Ok(unsafe { GuestBytesMut::new(ptr, len as usize) })
    }

    /// Host pointer to `[gpa, gpa+len)` inside the reserved area (see
    /// [`GuestMemory::reserve_top`]), valid while this view lives.
    fn reserved_pointer(&self, gpa: u64, len: u64) -> Result<*mut u8, GuestFault> {
        let offset = self.checks.reserved_access(gpa, len)?;
        // SAFETY: as in `pointer`.
        Ok(unsafe { self.map.host.as_ptr().add(offset) })
    }

    /// The `u32` at `gpa` in the reserved area (4-byte aligned) as an
    /// atomic shared with the guest.
    pub fn atomic_u32(&self, gpa: u64) -> Result<&AtomicU32, GuestFault> {
        let ptr = self.reserved_pointer(gpa, 4)?;
        if !(ptr as usize).is_multiple_of(4) {
            return Err(GuestFault::Misaligned { gpa, align: 4 });
        }
        // SAFETY: aligned, inside the live mapping for as long as `self`,
        // and in the reserved area, which the tender reaches only through
        // this and the volatile `reserved_*` copies, and which no guest
        // buffer or structure the tender handles may overlap (the ordinary
        // accessors refuse it); the guest's own accesses are its business.
        Ok(unsafe { &*ptr.cast::<AtomicU32>() })
    }

    /// The bytes `[gpa, gpa+len)` of the reserved area, to write (the hvt
    /// receive queues, which the I/O thread fills from a tap).
    pub fn reserved_bytes_mut(&self, gpa: u64, len: u64) -> Result<GuestBytesMut<'_>, GuestFault> {
        let ptr = self.reserved_pointer(gpa, len)?;
        // SAFETY: inside the live mapping (checked) for `len` bytes, which
        // fits usize since the mapping's length does.
        Ok(unsafe { GuestBytesMut::new(ptr, len as usize) })
    }

    /// Copies a `T` out of the reserved area at `gpa` (volatile).
    pub fn reserved_read<T: FromBytes + IntoBytes>(&self, gpa: u64) -> Result<T, GuestFault> {
        let len = std::mem::size_of::<T>();
        let ptr = self.reserved_pointer(gpa, len as u64)?;
        let mut value = T::new_zeroed();
        // SAFETY: inside the live mapping (checked) for `len` bytes.
        unsafe { GuestBytes::new(ptr, len) }.copy_to(value.as_mut_bytes());
        Ok(value)
    }

    /// Copies `value` into the reserved area at `gpa` (volatile).
    pub fn reserved_write<T: IntoBytes + Immutable>(
        &self,
        gpa: u64,
        value: &T,
    ) -> Result<(), GuestFault> {
        let bytes = value.as_bytes();
        let ptr = self.reserved_pointer(gpa, bytes.len() as u64)?;
        // SAFETY: inside the live mapping (checked) for `len` bytes.
        unsafe { GuestBytesMut::new(ptr, bytes.len()) }.copy_from(bytes);
        Ok(())
    }

    /// Copies a `T` (a lamina-abi struct) out of guest memory at `gpa`.
    pub fn read<T: FromBytes + IntoBytes>(&self, gpa: u64) -> Result<T, GuestFault> {
        let bytes = self.bytes(gpa, std::mem::size_of::<T>() as u64)?;
        let mut value = T::new_zeroed();
        bytes.copy_to(value.as_mut_bytes());
        Ok(value)
    }

    /// Copies `value` (a lamina-abi struct) into guest memory at `gpa`.
    pub fn write<T: IntoBytes + Immutable>(&self, gpa: u64, value: &T) -> Result<(), GuestFault> {
        self.copy_in(gpa, value.as_bytes())
    }

    /// Appends the guest bytes `[gpa, gpa+len)` to `out`.
    pub fn copy_out(&self, gpa: u64, len: u64, out: &mut Vec<u8>) -> Result<(), GuestFault> {
        self.bytes(gpa, len)?.append_to(out);
        Ok(())
    }

    /// Copies `bytes` into guest memory at `gpa`.
    pub fn copy_in(&self, gpa: u64, bytes: &[u8]) -> Result<(), GuestFault> {
        self.bytes_mut(gpa, bytes.len() as u64)?.copy_from(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_abi::hvt::HcPuts;

    #[test]
    fn checked_offset_refuses_every_bad_range() {
        let mem = GuestMemory::anywhere(1 << 20).unwrap();
        assert_eq!(mem.checked_offset(0, 1 << 20), Ok(0));
        assert_eq!(mem.checked_offset(0x1000, 0x10), Ok(0x1000));
        assert!(matches!(
            mem.checked_offset(u64::MAX, 2),
            Err(GuestFault::Overflow { .. })
        ));
        assert!(matches!(
            mem.checked_offset(1 << 20, 1),
            Err(GuestFault::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.checked_offset((1 << 20) - 1, 2),
            Err(GuestFault::OutOfBounds { .. })
        ));
        assert!(mem.bytes(u64::MAX - 3, 8).is_err());
    }

    #[test]
    fn typed_round_trip() {
        let mem = GuestMemory::anywhere(1 << 20).unwrap();
        let puts = HcPuts {
            data: 0x1234,
            len: 99,
        };
        mem.write(0x2000, &puts).unwrap();
        let back: HcPuts = mem.read(0x2000).unwrap();
        assert_eq!((back.data, back.len), (0x1234, 99));
        assert!(mem.read::<HcPuts>((1 << 20) - 8).is_err());
    }

    #[test]
    fn protected_ranges_are_refused_not_faulted() {
        let mut mem = GuestMemory::anywhere(1 << 20).unwrap();
        mem.copy_in(0x3000, b"text").unwrap();
        let read_only = Protection {
            read: true,
            write: false,
            exec: true,
        };
        mem.protect(0x3000, 0x5000, read_only).unwrap();
        assert_eq!(mem.bytes(0x3000, 4).unwrap().to_vec(), b"text");
        assert!(matches!(
            mem.bytes_mut(0x4fff, 2),
            Err(GuestFault::Protected { .. })
        ));
        assert!(mem.bytes_mut(0x5000, 16).is_ok());
        mem.protect(0x6000, 0x7000, Protection::default()).unwrap();
        assert!(matches!(
            mem.bytes(0x6800, 1),
            Err(GuestFault::Protected { .. })
        ));
        assert!(mem.protect(0x100, 0x1000, read_only).is_err());
        assert!(mem.protect(0, 2 << 20, read_only).is_err());
    }

    /// The reserved top (the hvt ring) is out of reach of every ordinary
    /// accessor, so no guest buffer can overlap the ring's atomics; the
    /// atomics and the reserved copies reach only it.
    #[test]
    fn the_reserved_top_is_out_of_reach_of_guest_addresses() {
        let mut mem = GuestMemory::anywhere(1 << 20).unwrap();
        let from = 0xf_0000;
        mem.reserve_top(from).unwrap();
        let view = mem.shared_view();
        let reserved = |fault| matches!(fault, GuestFault::Reserved { .. });
        assert!(reserved(view.bytes_mut(from, 4).unwrap_err()));
        assert!(reserved(view.bytes(from - 2, 4).unwrap_err()));
        assert!(reserved(view.read::<u64>(from + 8).unwrap_err()));
        assert!(reserved(view.write(from - 4, &0u64).unwrap_err()));
        assert!(view.bytes_mut(from - 4, 4).is_ok());
        assert!(view.atomic_u32(from).is_ok());
        assert!(view.atomic_u32(from - 4).is_err());
        assert_eq!(
            view.atomic_u32(from + 2).unwrap_err(),
            GuestFault::Misaligned {
                gpa: from + 2,
                align: 4
            }
        );
        view.atomic_u32(from)
            .unwrap()
            .store(7, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(view.reserved_read::<u32>(from), Ok(7));
        view.reserved_write(from + 8, &9u64).unwrap();
        assert_eq!(view.reserved_read::<u64>(from + 8), Ok(9));
        assert!(view.reserved_read::<u64>(from - 4).is_err());
        assert!(mem.reserve_top(2 << 20).is_err());
    }

    #[test]
    fn prefault_makes_exactly_its_pages_resident() {
        let mem = GuestMemory::anywhere(1 << 20).unwrap();
        let resident = |gpa: u64| {
            let mut vec = 0u8;
            // SAFETY: one page of our own mapping; mincore writes one byte.
            let rc = unsafe {
                libc::mincore(
                    (mem.host_address() + gpa) as *mut libc::c_void,
                    PAGE as usize,
                    &mut vec,
                )
            };
            assert_eq!(rc, 0);
            vec & 1 == 1
        };
        assert!(!resident(0x8000));
        mem.prefault(0x8000, 0xa000);
        assert!(resident(0x8000) && resident(0x9000));
        assert!(!resident(0x7000) && !resident(0xa000));
        assert_eq!(mem.bytes(0x8000, 8).unwrap().to_vec(), [0; 8]);
        // Outside guest memory or unaligned: nothing, and no error.
        mem.prefault(0xff000, 0x101000);
        mem.prefault(0x1001, 0x2000);
        assert!(!resident(0xff000) && !resident(0x1000));
    }

    #[test]
    fn shared_view_checks_like_the_owner() {
        let mut mem = GuestMemory::anywhere(1 << 20).unwrap();
        let read_only = Protection {
            read: true,
            write: false,
            exec: false,
        };
        mem.protect(0x3000, 0x4000, read_only).unwrap();
        let view = mem.shared_view();
        drop(mem);
        assert!(view.pointer(0x3000, 8, false).is_ok());
        assert!(view.pointer(0x3ffc, 8, true).is_err());
        assert!(view.pointer((1 << 20) - 4, 8, false).is_err());
        assert!(view.pointer(u64::MAX, 2, false).is_err());
        let puts = HcPuts { data: 1, len: 2 };
        view.write(0x6000, &puts).unwrap();
        assert_eq!(view.read::<HcPuts>(0x6000).unwrap().len, 2);
    }

    #[test]
    fn identity_mapping_refuses_to_replace() {
        let first = GuestMemory::identity(0x7000_0000, 0x7010_0000).unwrap();
        assert_eq!(first.host_address(), 0x7000_0000);
        assert!(matches!(
            GuestMemory::identity(0x7008_0000, 0x7020_0000),
            Err(MemoryError::Occupied { .. })
        ));
    }
}
