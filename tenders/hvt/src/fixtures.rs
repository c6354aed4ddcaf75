//! Real devices over host descriptors for the unit tests of the two paths
//! a guest's I/O takes, hypercalls and the network ring: a network device
//! over one end of a socketpair (the test holds the other, as the host
//! side of a tap), and a block device over a temporary file.

use lamina_tender::devices::block::BlockDevice;
use lamina_tender::devices::net::NetDevice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// virtio-net header length on a link with the tender's offload.
pub const VNET_HEADER: usize = 10;

/// A network device with `handle` (with the tender's offload link or not)
/// and the host's end of its link.
pub fn net(handle: u64, offload: bool) -> (NetDevice, OwnedFd) {
    let (device, host) = lamina_usernet::socketpair().unwrap();
    let mac = [2, 0, 0, 0, 0, 1];
    (
        NetDevice::from_fd("service", handle, device, mac, 1500, offload),
        host,
    )
}

/// An Ethernet frame of `len` bytes (local experimental EtherType, so no
/// checksum applies), filled with `fill`.
pub fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut frame = vec![fill; len];
    frame[..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    frame
}

/// The host sends `frame` on its end of a link (behind an empty virtio-net
/// header if `offload`).
pub fn host_sends(host: &OwnedFd, frame: &[u8], offload: bool) {
    let mut bytes = vec![0u8; if offload { VNET_HEADER } else { 0 }];
    bytes.extend_from_slice(frame);
    let n = lamina_tender::sys::write_fd(host.as_raw_fd(), &bytes).unwrap();
    assert_eq!(n, bytes.len());
}

/// What the host received on its end of a link (without the header).
pub fn host_receives(host: &OwnedFd, offload: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = lamina_tender::sys::read_fd(host.as_raw_fd(), &mut buf).unwrap();
    buf.truncate(n);
    buf.split_off(if offload { VNET_HEADER } else { 0 })
}

/// The host's end stops taking frames: the device's writes then fail
/// (EPIPE). Shutting the socket down, not closing the descriptor, which a
/// child forked by a test running alongside may hold a copy of.
pub fn host_hangs_up(host: &OwnedFd) {
    // SAFETY: no memory arguments; the descriptor is open.
    let rc = unsafe { libc::shutdown(host.as_raw_fd(), libc::SHUT_RDWR) };
    assert_eq!(rc, 0);
}

/// A 4096-byte block device of 512-byte sectors with `handle`, filled
/// with 0x5a, and its file (removed by the caller).
pub fn block(handle: u64, name: &str) -> (BlockDevice, PathBuf) {
    let path = std::env::temp_dir().join(format!("lamina-hvt-unit-{}-{name}", std::process::id()));
    std::fs::write(&path, [0x5au8; 4096]).unwrap();
    let device = BlockDevice::open("storage", handle, &path, 512).unwrap();
    (device, path)
}
