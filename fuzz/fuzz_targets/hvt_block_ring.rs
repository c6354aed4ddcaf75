//! The hvt tender's block ring server (`lamina_hvt::block_ring`) against
//! a ring the guest made up: its placement, index words and requests
//! (operations, device handles, sectors, guest addresses and lengths),
//! served against a real block device over a 64 KiB file.
//!
//! Input: the ring's address / 64 (u16), a flag byte (bit 0: 4096-byte
//! sectors, else 512), then sub_tail, sub_head, com_head, com_tail (u32
//! each), then 32-byte requests stored from slot `sub_head`.
//!
//! Checked besides no panic: with the whole ring inside memory and sane
//! indices, the first request is answered, and its status is the one
//! worked out here from the same bytes (OK for a well-formed request,
//! EINVAL for any other, which must not touch the file); impossible
//! indices stop the guest before anything is served.
#![no_main]

use lamina_abi::block_ring::{self, offsets, op, Completion, Request};
use lamina_abi::mft::block_features::MAX_TRANSFER;
use lamina_abi::Solo5Result;
use lamina_hvt::block_ring::{serve_submitted, Shared};
use lamina_tender::devices::block::BlockDevice;
use lamina_tender::mem::GuestMemory;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Guest memory: the ring fits at most addresses the input can pick.
const MEM: u64 = 256 << 10;
/// Bytes of the device.
const CAPACITY: u64 = 64 << 10;

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, b) in w.iter_mut().enumerate() {
        *b = bytes.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

/// The backing file, made once per process.
static DISK: OnceLock<PathBuf> = OnceLock::new();

fn disk() -> &'static PathBuf {
    DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("lamina-fuzz-block-ring-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; CAPACITY as usize]).expect("backing file");
        // SAFETY: registers a function that takes no arguments and only
        // removes the file, for when the fuzzer exits.
        unsafe { libc::atexit(remove_disk) };
        path
    })
}

/// Removes the backing file when the fuzzer exits (not after a crash: the
/// file is then the disk the crash left).
extern "C" fn remove_disk() {
    if let Some(path) = DISK.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// The status the server must give `request` on a device of `sector`-byte
/// sectors, with the ring (the reserved top) at `ring`.
fn expected(request: &Request, sector: u64, ring: u64) -> Solo5Result {
    let len = u64::from(request.len);
    if request.handle != 1 {
        return Solo5Result::Einval;
    }
    match request.operation {
        op::READ | op::WRITE => {
            let on_device = request
                .sector
                .checked_mul(sector)
                .and_then(|offset| offset.checked_add(len))
                .is_some_and(|end| end <= CAPACITY);
            let buffer = request.data.checked_add(len).is_some_and(|end| end <= ring);
            if len > 0 && len % sector == 0 && len <= MAX_TRANSFER && on_device && buffer {
                Solo5Result::Ok
            } else {
                Solo5Result::Einval
            }
        }
        op::FLUSH if request.sector == 0 && request.data == 0 && len == 0 => Solo5Result::Ok,
        _ => Solo5Result::Einval,
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 19 {
        return;
    }
    let gpa = u64::from(u16::from_le_bytes([bytes[0], bytes[1]])) * 64;
    let sector = if bytes[2] & 1 != 0 { 4096 } else { 512 };
    let (tail, head, com_head, com_tail) =
        (word(bytes, 3), word(bytes, 7), word(bytes, 11), word(bytes, 15));
    let requests = &bytes[19..];

    let mut device = BlockDevice::open("storage", 1, disk(), sector).expect("block device");
    device.features = lamina_abi::mft::block_features::MULTI_SECTOR
        | lamina_abi::mft::block_features::FLUSH;
    let blocks = [device];
    let mut mem = GuestMemory::anywhere(MEM).expect("guest memory");
    let reserved = gpa <= MEM && mem.reserve_top(gpa).is_ok();
    let view = mem.shared_view();
    for (offset, value) in [
        (offsets::SUB_TAIL, tail),
        (offsets::SUB_HEAD, head),
        (offsets::COM_HEAD, com_head),
        (offsets::COM_TAIL, com_tail),
    ] {
        let _ = view.reserved_write(gpa + offset as u64, &value);
    }
    for (i, request) in requests.chunks(32).take(block_ring::SIZE as usize).enumerate() {
        let mut slot = [0u8; 32];
        slot[..request.len()].copy_from_slice(request);
        let _ = view.reserved_write(block_ring::request_at(gpa, head.wrapping_add(i as u32)), &slot);
    }
    let first: Option<Request> = view.reserved_read(block_ring::request_at(gpa, head)).ok();
    let before = std::fs::read(disk()).expect("backing file");

    let shared = Shared::default();
    let result = serve_submitted(&view, gpa, &blocks, &shared);

    let whole_ring = reserved && gpa + block_ring::RING_BYTES as u64 <= MEM;
    if !whole_ring || tail == head {
        if reserved && tail == head && gpa + offsets::NEEDS_KICK as u64 + 4 <= MEM {
            assert_eq!(result, Ok(false));
        }
        return;
    }
    let corrupt = tail.wrapping_sub(head) > block_ring::SIZE
        || com_tail.wrapping_sub(com_head) >= block_ring::SIZE;
    if corrupt {
        let error = result.expect_err("a corrupt ring was served");
        assert!(error.contains("block ring"), "{error}");
        let sub_head: u32 = view.reserved_read(gpa + offsets::SUB_HEAD as u64).unwrap();
        if tail.wrapping_sub(head) > block_ring::SIZE {
            assert_eq!(sub_head, head, "sub_head moved on a corrupt ring");
            assert_eq!(shared.requests(), 0);
        }
        return;
    }
    // Room for every completion: all requests are answered.
    if tail.wrapping_sub(head) <= block_ring::SIZE - com_tail.wrapping_sub(com_head) {
        assert_eq!(result, Ok(true));
        assert_eq!(shared.requests(), u64::from(tail.wrapping_sub(head)));
    }
    let request = first.expect("the first request is inside the ring");
    let answer: Completion = view
        .reserved_read(block_ring::completion_at(gpa, com_tail))
        .unwrap();
    let want = expected(&request, sector, gpa);
    assert_eq!(answer.id, request.id);
    assert_eq!(answer.status, want as i32, "{request:?}");
    if want == Solo5Result::Einval && tail.wrapping_sub(head) == 1 {
        assert!(std::fs::read(disk()).unwrap() == before, "a refused request wrote the file");
    }
});
