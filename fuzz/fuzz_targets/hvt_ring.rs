//! The hvt tender's network ring server (`lamina_hvt::ring`) against a
//! ring the guest made up: its placement, index words and entries
//! (operations, device handles, guest addresses and lengths), served
//! against real network devices over socketpairs whose host ends hold
//! frames for the reads.
//!
//! Input: flags (bit 0: offload on device 1; bit 1: a second device,
//! handle 2, with offload if bit 2), the ring's address / 4 (u16), then
//! ent_tail, ent_head, com_head, com_tail (u32 each), the number (0..3)
//! and length (u16) of the frames the host sends first, then 32-byte
//! entries stored from slot `ent_head`.
//!
//! Checked besides no panic: the first entry's verdict is worked out here
//! from the same memory; a malformed one (or a ring outside memory, or
//! corrupt indices) stops the guest with an error before anything is
//! served or sent, and a well-formed one is served.
#![no_main]

use lamina_abi::ring::{self, offsets, op, RingEntry};
use lamina_hvt::ring::{serve_submitted, Shared};
use lamina_tender::devices::net::NetDevice;
use lamina_tender::mem::GuestMemory;
use libfuzzer_sys::fuzz_target;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;

/// Guest memory: the ring (49 280 bytes) fits at most addresses the
/// input can pick, not all.
const MEM: u64 = 256 << 10;

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in w.iter_mut().enumerate() {
        *b = bytes.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

/// Whether `[gpa, gpa + len)` is guest memory.
fn inside(gpa: u64, len: u64) -> bool {
    gpa.checked_add(len).is_some_and(|end| end <= MEM)
}

fn device(handle: u64, offload: bool) -> (NetDevice, UnixDatagram) {
    let (device, host) = lamina_usernet::socketpair().expect("socketpair");
    let host = UnixDatagram::from(OwnedFd::from(host));
    host.set_nonblocking(true).expect("nonblocking");
    let mac = [2, 0, 0, 0, 0, handle as u8];
    let net = NetDevice::from_fd("service", handle, device, mac, 1500, offload);
    (net, host)
}

/// Whether the serving of `entry` can succeed (the verdict the server
/// must reach on the ring's first entry).
fn well_formed(
    entry: &RingEntry,
    handles: &[u32],
    com_full: bool,
    commit_at: u64,
    ring: u64,
) -> bool {
    // A guest buffer is guest memory below the ring (the reserved top).
    let len = u64::from(entry.len);
    let buffer = inside(entry.data, len) && (len == 0 || entry.data + len <= ring);
    handles.contains(&entry.handle)
        && match entry.operation {
            op::NET_WRITE => buffer,
            op::NET_READ => !com_full && buffer && inside(commit_at, 16),
            _ => false,
        }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 22 {
        return;
    }
    let flags = bytes[0];
    let gpa = u64::from(u16::from_le_bytes([bytes[1], bytes[2]])) * 4;
    let (tail, head, com_head, com_tail) = (
        word(bytes, 3),
        word(bytes, 7),
        word(bytes, 11),
        word(bytes, 15),
    );
    let frames = bytes[19] % 4;
    let frame_len = usize::from(u16::from_le_bytes([bytes[20], bytes[21]]) % 2048);
    let entries = &bytes[22..];

    let mut nets = Vec::new();
    let mut hosts = Vec::new();
    let mut handles = vec![1u32];
    let (net, host) = device(1, flags & 1 != 0);
    nets.push(net);
    hosts.push(host);
    if flags & 2 != 0 {
        let (net, host) = device(2, flags & 4 != 0);
        nets.push(net);
        hosts.push(host);
        handles.push(2);
    }
    for (i, host) in hosts.iter().enumerate() {
        for n in 0..frames {
            let frame = vec![n.wrapping_add(i as u8); frame_len];
            let _ = lamina_tender::sys::write_fd(host.as_raw_fd(), &frame);
        }
    }

    // The ring is the tender's reserved top of memory, as in the tender
    // (none if the ring would start beyond memory); guest buffers must
    // stay below it.
    let mut mem = GuestMemory::anywhere(MEM).expect("guest memory");
    let reserved = gpa <= MEM && mem.reserve_top(gpa).is_ok();
    let view = mem.shared_view();
    for (offset, value) in [
        (offsets::ENT_TAIL, tail),
        (offsets::ENT_HEAD, head),
        (offsets::COM_HEAD, com_head),
        (offsets::COM_TAIL, com_tail),
    ] {
        let _ = view.reserved_write(gpa + offset as u64, &value);
    }
    let slot_at = |index: u32| gpa + (offsets::ENTRIES + (index & ring::MASK) as usize * 32) as u64;
    for (i, entry) in entries.chunks(32).take(ring::SIZE as usize).enumerate() {
        let mut slot = [0u8; 32];
        slot[..entry.len()].copy_from_slice(entry);
        let _ = view.reserved_write(slot_at(head.wrapping_add(i as u32)), &slot);
    }

    // The first entry's verdict, from the memory as the server finds it.
    let indices_inside = reserved && inside(gpa, offsets::WRITE_ERRORS as u64 + 4);
    let expected: Option<bool> = if !indices_inside {
        Some(false)
    } else if tail == head {
        None
    } else if tail.wrapping_sub(head) > ring::SIZE {
        Some(false)
    } else {
        Some(match view.reserved_read::<RingEntry>(slot_at(head)) {
            Err(_) => false,
            Ok(entry) => {
                let com_full = com_tail.wrapping_sub(com_head) >= ring::SIZE;
                let commit_at =
                    gpa + (offsets::COMMITS + (com_tail & ring::MASK) as usize * 16) as u64;
                well_formed(&entry, &handles, com_full, commit_at, gpa)
            }
        })
    };

    let shared = Shared::default();
    let result = serve_submitted(&view, gpa, &nets, &shared);
    let served = shared.writes.load(Ordering::Relaxed) + shared.reads.load(Ordering::Relaxed);
    match expected {
        // Nothing submitted.
        None => assert_eq!(result, Ok(false)),
        // A refused write also counts in the per-device words after the
        // ring (offsets::WRITE_ERRORS_BY_HANDLE): with those outside
        // memory, the server stops at that write instead.
        Some(true) if !inside(gpa, (ring::RING_BYTES + 4 * ring::MAX_HANDLES) as u64) => {}
        Some(true) => assert!(
            served >= 1,
            "a well-formed entry was not served: {result:?}"
        ),
        Some(false) => {
            let error = result.expect_err("a malformed ring was served");
            assert!(error.contains("network ring"), "{error}");
            assert_eq!(served, 0);
            if indices_inside {
                let ent_head: u32 = view.reserved_read(gpa + offsets::ENT_HEAD as u64).unwrap();
                assert_eq!(ent_head, head, "ent_head moved past a malformed entry");
            }
            // Nothing reached the host.
            let mut buf = [0u8; 64];
            for host in &hosts {
                assert!(
                    host.recv(&mut buf).is_err(),
                    "a malformed entry sent a frame"
                );
            }
        }
    }
});
