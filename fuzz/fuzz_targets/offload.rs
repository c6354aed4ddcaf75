//! The virtio-net header and the frames behind it, both ways: a header and
//! a frame as a host (tap, virtio device) delivers them, checked and split
//! into MTU-sized segments; and frames from a stack, coalesced into
//! segmentation requests, then split again as the receiving side would.
#![no_main]

use lamina_net::offload::{
    checksum_ok, fill_partial_checksum, split_received, Coalescer, Header, HEADER_LEN,
    VIRTIO1_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

/// Largest frame `split_received` may hand on: Ethernet plus an IP packet.
const MAX_FRAME: usize = 14 + 65535;

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        received(rest);
    } else {
        transmitted(mode, rest);
    }
});

/// A received header and frame.
fn received(bytes: &[u8]) {
    let Some(header) = Header::read(bytes) else {
        return;
    };
    assert_eq!(Header::read(&header.to_bytes()), Some(header));
    let mut frame = bytes[HEADER_LEN..].to_vec();
    let _ = checksum_ok(&header, &frame);
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let accepted = split_received(&header, &mut frame, &mut scratch, &mut |segment| {
        assert!(segment.len() <= MAX_FRAME.max(bytes.len()));
        out.push(segment.to_vec());
    });
    assert!(accepted || out.is_empty(), "a refused frame sends nothing");
}

/// Frames from the stack, each prefixed by a 16-bit length, through a
/// coalescer; what it sends goes through the receiving side.
fn transmitted(mode: u8, mut bytes: &[u8]) {
    let header_len = if mode & 2 == 0 {
        HEADER_LEN
    } else {
        VIRTIO1_HEADER_LEN
    };
    let mut coalescer = Coalescer::with_header(header_len, 0);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    while bytes.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let frame = &bytes[2..(2 + len).min(bytes.len())];
        bytes = &bytes[2 + frame.len()..];
        let mut copy = frame.to_vec();
        let _ = fill_partial_checksum(&mut copy);
        coalescer.push(frame, &mut |f| sent.push(f.to_vec()));
    }
    coalescer.flush(&mut |f| sent.push(f.to_vec()));
    let mut scratch = Vec::new();
    for frame in sent {
        assert!(frame.len() >= header_len);
        assert!(frame.len() <= header_len + MAX_FRAME);
        let header = Header::read(&frame).expect("the coalescer writes a header");
        let mut body = frame[header_len..].to_vec();
        let _ = split_received(&header, &mut body, &mut scratch, &mut |segment| {
            assert!(segment.len() <= MAX_FRAME);
        });
    }
}
