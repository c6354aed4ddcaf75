//! # lamina-virtio: the bare-metal runtime of the virtio target
//!
//! A Lamina unikernel booted directly by a standard VMM: QEMU's `-kernel`
//! (`-M microvm` or `q35`) and, by the same protocol, Firecracker and
//! cloud-hypervisor. The image is an ELF with a Xen PVH entry note; the
//! runtime sets up long mode itself and drives the PC's legacy devices.
//!
//! | module | what |
//! |--------|------|
//! | `boot`    | the PVH entry (32-bit, builds page tables, enters long mode), `hvm_start_info`, the heap, `start` |
//! | `hw`      | port I/O: the 16550 UART, the PIT (to calibrate the TSC), the CMOS RTC, isa-debug-exit |
//! | `virtio`  | the drivers: virtio-mmio and virtio-pci transports, virtio-net, virtio-blk, virtio-rng |
//! | `devices` | the device traits: console, clock, random, network interfaces, the TCP/IP stack (`lamina-net`), block devices |
//! | `park`    | the executor's idle wait: flushes the drivers' queues, then waits for a device or the deadline |
//! | [`pci`]   | a virtio PCI function's configuration space: device type, BARs, capabilities, MSI-X |
//! | [`virtqueue`] | the split virtqueue and DMA memory, checked against what the device returns |
//! | [`cmdline`] | the device words of the command line (`virtio_mmio.device=`, `--net:NAME`, `--block:NAME`) |
//! | [`rtc`]   | CMOS date to Unix time |
//! | [`exit`]  | guest status to and from isa-debug-exit's QEMU exit code |
//!
//! Everything but [`cmdline`], [`pci`], [`virtqueue`], [`rtc`] and [`exit`] is
//! compiled only for a guest (`--cfg lamina_target="virtio"`, set by
//! `lamina build`); on the host the crate is just those, so that they can
//! be unit-tested.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod cmdline;
pub mod exit;
pub mod pci;
pub mod rtc;
pub mod virtqueue;

#[cfg(lamina_target = "virtio")]
mod guest;
#[cfg(lamina_target = "virtio")]
pub use guest::*;
