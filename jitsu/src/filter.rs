//! The classic BPF programs on a service's tap (see
//! Documentation/networking/filter.rst in Linux):
//!
//! - [`queue`], attached to the tap itself (TUNATTACHFILTER): the kernel
//!   runs it on every frame before queueing it for the tap's reader, so
//!   that a stopped service's queue holds only what its guest would take:
//!   ARP for its address and frames to its MAC. Broadcasts for other
//!   hosts then never fill the queue of a service stopped for hours.
//! - [`watch`], attached to the daemon's packet socket on the tap: only
//!   frames going out to the guest that are ARP for its address or IPv4 to
//!   it wake the daemon, cut to their first [`WATCH_SNAP_LEN`] bytes.
//! - [`nothing`], on the packet socket while the guest runs and answers for
//!   itself: the kernel copies no frame to the daemon.
//!
//! Each program is a few instructions written out with their jump offsets;
//! the tests run them on frames with a small interpreter of the
//! instructions used here.

use crate::frame::{offset, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use std::net::Ipv4Addr;

/// One instruction.
pub type Instruction = libc::sock_filter;

/// `ld [k]`: a 32-bit big-endian word at offset k (or ancillary data).
const LD_WORD: u16 = 0x20;
/// `ldh [k]`: a 16-bit big-endian half-word at offset k.
const LD_HALF: u16 = 0x28;
/// `jeq #k, jt, jf`: skip jt instructions if A == k, else jf.
const JEQ: u16 = 0x15;
/// `ret #k`: accept k bytes of the frame (0: drop it).
const RET: u16 = 0x06;
/// The ancillary "word" holding the frame's packet type (PACKET_*).
const PACKET_TYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
/// Packet type of a frame the interface sends (towards the guest).
const PACKET_OUTGOING: u32 = 4;

/// How much of each watched frame the daemon reads: the Ethernet, IPv4
/// (with options) and TCP headers.
pub const WATCH_SNAP_LEN: u32 = 128;

const fn statement(code: u16, k: u32) -> Instruction {
    Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump_if_equal(k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction {
        code: JEQ,
        jt,
        jf,
        k,
    }
}

/// Frames the tap queues for the guest at `guest_mac`/`guest_ip`: ARP
/// whose target is the guest's address, and any frame to its MAC.
pub fn queue(guest_mac: [u8; 6], guest_ip: Ipv4Addr) -> Vec<Instruction> {
    let mac_high = u32::from_be_bytes([guest_mac[0], guest_mac[1], guest_mac[2], guest_mac[3]]);
    let mac_low = u32::from(u16::from_be_bytes([guest_mac[4], guest_mac[5]]));
    vec![
        /* 0 */ statement(LD_HALF, offset::ETHERTYPE as u32),
        /* 1 */ jump_if_equal(u32::from(ETHERTYPE_ARP), 0, 2), // 2, else 4
        /* 2 */ statement(LD_WORD, offset::ARP_TARGET_IP as u32),
        /* 3 */ jump_if_equal(u32::from(guest_ip), 4, 5), // 8, else 9
        /* 4 */ statement(LD_WORD, offset::DESTINATION as u32),
        /* 5 */ jump_if_equal(mac_high, 0, 3), // 6, else 9
        /* 6 */ statement(LD_HALF, offset::DESTINATION as u32 + 4),
        /* 7 */ jump_if_equal(mac_low, 0, 1), // 8, else 9
        /* 8 */ statement(RET, u32::MAX),
        /* 9 */ statement(RET, 0),
    ]
}

/// Frames the daemon's watch reads: sent towards the guest, and ARP for
/// `guest_ip` or IPv4 to it.
pub fn watch(guest_ip: Ipv4Addr) -> Vec<Instruction> {
    vec![
        /* 0 */ statement(LD_WORD, PACKET_TYPE),
        /* 1 */ jump_if_equal(PACKET_OUTGOING, 0, 8), // 2, else 10
        /* 2 */ statement(LD_HALF, offset::ETHERTYPE as u32),
        /* 3 */ jump_if_equal(u32::from(ETHERTYPE_ARP), 0, 2), // 4, else 6
        /* 4 */ statement(LD_WORD, offset::ARP_TARGET_IP as u32),
        /* 5 */ jump_if_equal(u32::from(guest_ip), 3, 4), // 9, else 10
        /* 6 */ jump_if_equal(u32::from(ETHERTYPE_IPV4), 0, 3), // 7, else 10
        /* 7 */ statement(LD_WORD, offset::IPV4_DESTINATION as u32),
        /* 8 */ jump_if_equal(u32::from(guest_ip), 0, 1), // 9, else 10
        /* 9 */ statement(RET, WATCH_SNAP_LEN),
        /* 10 */ statement(RET, 0),
    ]
}

/// No frame at all.
pub fn nothing() -> Vec<Instruction> {
    vec![statement(RET, 0)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::mac_for;
    use crate::frame::tests::{arp_request, tcp, CLIENT, GUEST};

    /// Runs `program` on `frame` of packet type `packet_type` as the kernel
    /// would: the number of bytes kept (0: dropped). A load past the end
    /// drops the frame, as in the kernel.
    fn run(program: &[Instruction], frame: &[u8], packet_type: u32) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        loop {
            let instruction = program.get(pc).expect("a program ends with ret");
            pc += 1;
            let load = |len: usize| -> Option<u32> {
                let start = instruction.k as usize;
                let bytes = frame.get(start..start + len)?;
                Some(bytes.iter().fold(0, |word, b| word << 8 | u32::from(*b)))
            };
            match instruction.code {
                LD_WORD if instruction.k == PACKET_TYPE => a = packet_type,
                LD_WORD => match load(4) {
                    Some(word) => a = word,
                    None => return 0,
                },
                LD_HALF => match load(2) {
                    Some(half) => a = half,
                    None => return 0,
                },
                JEQ => {
                    let skip = if a == instruction.k {
                        instruction.jt
                    } else {
                        instruction.jf
                    };
                    pc += usize::from(skip);
                }
                RET => return instruction.k,
                code => panic!("instruction {code:#x} is not used here"),
            }
        }
    }

    const HOST: u32 = 0;
    const OUTGOING: u32 = PACKET_OUTGOING;

    #[test]
    fn the_queue_keeps_arp_for_the_guest_and_frames_to_its_mac() {
        let program = queue(mac_for(GUEST), GUEST);
        assert_eq!(run(&program, &arp_request(GUEST), OUTGOING), u32::MAX);
        assert_eq!(run(&program, &arp_request(CLIENT), OUTGOING), 0);
        assert_eq!(run(&program, &tcp(GUEST, 80, 2), OUTGOING), u32::MAX);
        // To another MAC (flooded unknown unicast), or broadcast IPv4.
        assert_eq!(run(&program, &tcp(CLIENT, 80, 2), OUTGOING), 0);
        let mut broadcast = tcp(GUEST, 80, 2);
        broadcast[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(run(&program, &broadcast, OUTGOING), 0);
        // The last MAC byte decides too.
        let mut near = tcp(GUEST, 80, 2);
        near[5] ^= 1;
        assert_eq!(run(&program, &near, OUTGOING), 0);
        assert_eq!(run(&program, &[0u8; 10], OUTGOING), 0);
    }

    #[test]
    fn the_watch_reads_outgoing_arp_and_ipv4_for_the_guest() {
        let program = watch(GUEST);
        assert_eq!(run(&program, &arp_request(GUEST), OUTGOING), WATCH_SNAP_LEN);
        assert_eq!(run(&program, &tcp(GUEST, 80, 2), OUTGOING), WATCH_SNAP_LEN);
        // What the guest or the daemon sends comes in on the tap: not watched.
        assert_eq!(run(&program, &tcp(GUEST, 80, 2), HOST), 0);
        assert_eq!(run(&program, &arp_request(CLIENT), OUTGOING), 0);
        assert_eq!(run(&program, &tcp(CLIENT, 80, 2), OUTGOING), 0);
        let mut ipv6 = tcp(GUEST, 80, 2);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(run(&program, &ipv6, OUTGOING), 0);
        assert_eq!(run(&nothing(), &tcp(GUEST, 80, 2), OUTGOING), 0);
    }
}
