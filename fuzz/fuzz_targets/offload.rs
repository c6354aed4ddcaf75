//! The virtio-net header and the frames behind it, both ways: a header and
//! a frame as a host (tap, virtio device) delivers them, checked and split
//! into MTU-sized segments; and frames from a stack, coalesced into
//! segmentation requests, then split again as the receiving side would.
#![no_main]

use lamina_wire::ip::Frame;
use lamina_wire::offload::{checksum_ok, fill_partial_checksum, split_received, Coalescer};
use lamina_wire::vnet::{Repr, HEADER_LEN, VIRTIO1_HEADER_LEN};
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
    let Some(header) = Repr::read(bytes) else {
        return;
    };
    assert_eq!(Repr::read(&header.to_bytes()), Some(header));
    let mut frame = bytes[HEADER_LEN..].to_vec();
    view_accessors(&frame);
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
        let header = Repr::read(&frame).expect("the coalescer writes a header");
        let mut body = frame[header_len..].to_vec();
        let _ = split_received(&header, &mut body, &mut scratch, &mut |segment| {
            assert!(segment.len() <= MAX_FRAME);
        });
    }
}

/// Every accessor of a frame that `Frame::new_checked` accepted: none may
/// panic (the view's guarantee), and the offsets it reports are in order.
fn view_accessors(bytes: &[u8]) {
    let Ok(frame) = Frame::new_checked(bytes) else {
        return;
    };
    assert!(frame.ip_offset() < frame.transport_offset());
    assert!(frame.transport_offset() < frame.payload_offset());
    assert!(frame.payload_offset() <= frame.packet_end());
    assert!(frame.packet_end() <= bytes.len());
    assert_eq!(
        frame.transport().len(),
        frame.packet_end() - frame.transport_offset()
    );
    assert_eq!(frame.ip_header_len() + 14, frame.transport_offset());
    let _ = (
        frame.payload(),
        frame.transport_header_len(),
        frame.pseudo_header_sum(),
    );
    let _ = (
        frame.transport_checksum_ok(),
        frame.tcp_seq(),
        frame.tcp_flags(),
    );
    let _ = (frame.ipv4_ident(), frame.is_ipv6(), frame.protocol());
}
