//! Checked ranges of guest memory that are never Rust references.
//!
//! Guest memory is shared: the guest writes it while the tender runs, and
//! hvt's ring I/O thread writes it while the vCPU thread serves a
//! hypercall, possibly at the same guest address (a guest may point both
//! at one buffer). A `&[u8]` or `&mut [u8]` over such bytes promises Rust
//! that nobody else changes them, which nobody can keep: a data race, and
//! undefined behaviour whatever the guest's intent. So the tender sees
//! guest bytes only through [`GuestBytes`] and [`GuestBytesMut`], made by
//! the one checked function of [`super`]: they copy with volatile loads
//! and stores (aligned words, as vm-memory's `VolatileSlice` does), or
//! hand the address to a system call, and the kernel copies.
//!
//! Why not vm-memory itself: its `GuestMemoryMmap` owns the mapping and
//! knows nothing of what these tenders need from theirs (spt's identity
//! mapping at fixed addresses, the image's host protections that every
//! access is checked against); wrapping our mapping in its `VolatileSlice`
//! would mean a second path from guest address to host pointer. The part
//! we need, a pointer and a length that only copy, is this file.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};

/// A checked, readable range of guest memory.
///
/// It lives no longer than the mapping it points into (`'a`), and reading
/// it never forms a reference to the guest's bytes.
#[derive(Debug, Clone, Copy)]
pub struct GuestBytes<'a> {
    ptr: *mut u8,
    len: usize,
    mapping: PhantomData<&'a ()>,
}

/// A checked range of guest memory that is readable and writable.
#[derive(Debug, Clone, Copy)]
pub struct GuestBytesMut<'a>(GuestBytes<'a>);

impl GuestBytes<'_> {
    /// A range over `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `[ptr, ptr+len)` must be readable host memory that stays mapped for
    /// `'a` (the checked accessors of [`super::SharedView`] make these).
    pub(super) unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        GuestBytes {
            ptr,
            len,
            mapping: PhantomData,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the first `out.len()` bytes (at most [`GuestBytes::len`])
    /// into `out`; returns how many.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        // SAFETY: `n` readable guest bytes (the range's invariant) into
        // `n` bytes of `out`, which is tender memory and cannot overlap.
        unsafe { volatile_copy(out.as_mut_ptr(), self.ptr, n, Side::Source) };
        n
    }

    /// Appends the bytes to `out` (which grows only if its capacity is
    /// short: a buffer allocated up front is reused).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + self.len, 0);
        self.copy_to(&mut out[at..]);
    }

    /// A copy of the bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_to(&mut out);
        out
    }

    /// One `write(2)` of the bytes on `fd`: how many it took.
    pub fn write_to_fd(&self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: the kernel reads `len` readable bytes at `ptr`.
        let n = unsafe { libc::write(fd, self.ptr.cast(), self.len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes all of the bytes on `fd`, retrying short writes.
    pub fn write_all_to_fd(&self, fd: RawFd) -> io::Result<()> {
        let mut rest = *self;
        while !rest.is_empty() {
            match rest.write_to_fd(fd) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = rest.skip(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of the bytes into `file` at `offset` (`pwrite(2)`).
    pub fn write_all_at(&self, file: &File, offset: u64) -> io::Result<()> {
        Self::whole_range_at(*self, offset, io::ErrorKind::WriteZero, |ptr, len, at| {
            // SAFETY: the kernel reads `len` readable bytes at `ptr` (a
            // part of this range).
            unsafe { libc::pwrite(file.as_raw_fd(), ptr.cast(), len, at) }
        })
    }

    /// Repeats `call(ptr, len, offset)` (a pwrite or pread of that part of
    /// `range`) from `offset` until the whole range is done, again after
    /// EINTR; a call that does nothing is an `at_zero` error.
    fn whole_range_at(
        range: GuestBytes<'_>,
        offset: u64,
        at_zero: io::ErrorKind,
        mut call: impl FnMut(*mut u8, usize, libc::off_t) -> isize,
    ) -> io::Result<()> {
        let mut rest = range;
        let mut offset = offset;
        while !rest.is_empty() {
            let at = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
            match call(rest.ptr, rest.len, at) {
                0 => return Err(at_zero.into()),
                n if n > 0 => {
                    rest = rest.skip(n as usize);
                    offset += n as u64;
                }
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// The bytes after the first `n` (none if `n` is past the end).
    fn skip(&self, n: usize) -> Self {
        let n = n.min(self.len);
        // SAFETY: at most `len` bytes on: still inside (or one past) the range.
        unsafe { GuestBytes::new(self.ptr.add(n), self.len - n) }
    }
}

impl<'a> GuestBytesMut<'a> {
    /// A range over `len` bytes at `ptr`.
    ///
    /// # Safety
    /// As [`GuestBytes::new`], and the bytes must be writable.
    pub(super) unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        // SAFETY: the caller's guarantee covers reading too.
        GuestBytesMut(unsafe { GuestBytes::new(ptr, len) })
    }

    /// The same range, to read.
    pub fn as_bytes(&self) -> GuestBytes<'a> {
        self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Copies `bytes` (at most [`GuestBytesMut::len`] of them) to the start
    /// of the range; returns how many.
    pub fn copy_from(&self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.0.len);
        // SAFETY: `n` writable guest bytes (the range's invariant) from
        // tender memory, which cannot overlap them.
        unsafe { volatile_copy(self.0.ptr, bytes.as_ptr(), n, Side::Destination) };
        n
    }

    /// Sets every byte to `byte`, with the stores of [`volatile_copy`]:
    /// single bytes up to an 8-byte boundary, aligned words, then bytes.
    /// It stores a constant rather than copying from a buffer of `byte`s,
    /// which read every word too (an image's zeroed tail, megabytes, is
    /// most of what the elf_image fuzz target spent its time on).
    pub fn fill(&self, byte: u8) {
        let (ptr, len) = (self.0.ptr, self.0.len);
        let word = u64::from_ne_bytes([byte; 8]);
        let head = (ptr as usize).wrapping_neg() % 8;
        let head = head.min(len);
        let words = (len - head) / 8;
        // SAFETY: every offset is below `len`, and `[ptr, ptr+len)` is
        // writable guest memory (the range's invariant); the stores are
        // volatile, and the word stores aligned (`head` brought `ptr` to
        // an 8-byte boundary).
        unsafe {
            for i in 0..head {
                std::ptr::write_volatile(ptr.add(i), byte);
            }
            let aligned = ptr.add(head).cast::<u64>();
            for w in 0..words {
                std::ptr::write_volatile(aligned.add(w), word);
            }
            for i in head + words * 8..len {
                std::ptr::write_volatile(ptr.add(i), byte);
            }
        }
    }

    /// One `read(2)` from `fd` into the range: how many bytes came.
    pub fn read_from_fd(&self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `len` bytes at `ptr`, which are
        // writable.
        let n = unsafe { libc::read(fd, self.0.ptr.cast(), self.0.len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// One `recv(2)` from socket `fd` into the range, with `MSG_TRUNC`: the
    /// length of the datagram, which may be more than the range took.
    pub fn recv_datagram(&self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `len` bytes at `ptr`, which are
        // writable; MSG_TRUNC changes only the length it reports.
        let n = unsafe { libc::recv(fd, self.0.ptr.cast(), self.0.len, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Fills the whole range from `file` at `offset` (`pread(2)`); a file
    /// that ends first is an [`io::ErrorKind::UnexpectedEof`] error.
    pub fn read_exact_at(&self, file: &File, offset: u64) -> io::Result<()> {
        GuestBytes::whole_range_at(
            self.0,
            offset,
            io::ErrorKind::UnexpectedEof,
            |ptr, len, at| {
                // SAFETY: the kernel writes at most `len` bytes at `ptr` (a part
                // of this range), which are writable.
                unsafe { libc::pread(file.as_raw_fd(), ptr.cast(), len, at) }
            },
        )
    }
}

/// Which end of a copy is guest memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// Copies `len` bytes from `src` to `dst`, where the `guest` side is
/// shared guest memory and the other the tender's own.
///
/// The guest side is accessed with volatile loads or stores only: single
/// bytes up to an 8-byte boundary, then aligned 8-byte words, then bytes.
/// A word the guest changes during the copy arrives whole or not at all;
/// the copy as a whole is not atomic, which no device protocol expects.
///
/// # Safety
/// `src` must be readable and `dst` writable for `len` bytes, the two must
/// not overlap, and the tender side must not be shared with anyone.
unsafe fn volatile_copy(dst: *mut u8, src: *const u8, len: usize, guest: Side) {
    let guest_addr = if guest == Side::Source {
        src as usize
    } else {
        dst as usize
    };
    let head = guest_addr.wrapping_neg() % 8;
    let head = head.min(len);
    let words = (len - head) / 8;
    let mut i = 0;
    // SAFETY: in all three loops every offset is below `len`; guest-side
    // accesses are volatile, and aligned where they are words (`head`
    // brought the guest address to an 8-byte boundary); tender-side word
    // accesses are unaligned plain ones on memory nobody else touches.
    unsafe {
        while i < head {
            copy_byte(dst, src, i, guest);
            i += 1;
        }
        for _ in 0..words {
            if guest == Side::Source {
                let word = std::ptr::read_volatile(src.add(i).cast::<u64>());
                dst.add(i).cast::<u64>().write_unaligned(word);
            } else {
                let word = src.add(i).cast::<u64>().read_unaligned();
                std::ptr::write_volatile(dst.add(i).cast::<u64>(), word);
            }
            i += 8;
        }
        while i < len {
            copy_byte(dst, src, i, guest);
            i += 1;
        }
    }
}

/// One byte of [`volatile_copy`].
///
/// # Safety
/// As [`volatile_copy`], with `i < len`.
unsafe fn copy_byte(dst: *mut u8, src: *const u8, i: usize, guest: Side) {
    // SAFETY: the caller's.
    unsafe {
        if guest == Side::Source {
            *dst.add(i) = std::ptr::read_volatile(src.add(i));
        } else {
            std::ptr::write_volatile(dst.add(i), *src.add(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_copies_are_exact_at_every_alignment_and_length() {
        let source: Vec<u8> = (0..100u8).collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 40, 91 - start] {
                let mut guest = vec![0xeeu8; 100];
                // SAFETY: `guest` outlives the ranges, which lie inside it.
                let range = unsafe { GuestBytesMut::new(guest.as_mut_ptr().add(start), len) };
                assert_eq!(range.copy_from(&source[..len]), len);
                let mut back = vec![0u8; len];
                assert_eq!(range.as_bytes().copy_to(&mut back), len);
                assert_eq!(back, &source[..len], "start {start} len {len}");
                assert!(guest[..start].iter().all(|&b| b == 0xee));
                assert!(guest[start + len..].iter().all(|&b| b == 0xee));
            }
        }
    }

    #[test]
    fn fills_are_exact_at_every_alignment_and_length() {
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 40, 91 - start] {
                let mut guest = vec![0xeeu8; 100];
                // SAFETY: `guest` outlives the range, which lies inside it.
                let range = unsafe { GuestBytesMut::new(guest.as_mut_ptr().add(start), len) };
                range.fill(0x5a);
                let (before, rest) = guest.split_at(start);
                let (filled, after) = rest.split_at(len);
                assert!(before.iter().all(|&b| b == 0xee), "start {start} len {len}");
                assert!(filled.iter().all(|&b| b == 0x5a), "start {start} len {len}");
                assert!(after.iter().all(|&b| b == 0xee), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn copies_stop_at_the_shorter_side_and_fill_covers_all() {
        let mut guest = vec![0u8; 1300];
        // SAFETY: `guest` outlives the range, which is all of it.
        let range = unsafe { GuestBytesMut::new(guest.as_mut_ptr(), 1300) };
        assert_eq!(range.copy_from(&[1; 2000]), 1300);
        range.fill(9);
        assert_eq!(range.as_bytes().to_vec(), vec![9; 1300]);
        let mut short = [0u8; 3];
        assert_eq!(range.as_bytes().copy_to(&mut short), 3);
        let mut out = vec![7];
        range.as_bytes().append_to(&mut out);
        assert_eq!(out.len(), 1301);
        assert_eq!(&out[..2], &[7, 9]);
    }
}
