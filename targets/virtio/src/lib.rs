//! # lamina-virtio: the bare-metal runtime of the virtio target
//!
//! A Lamina unikernel booted directly by a standard VMM: QEMU's `-kernel`
//! (`-M microvm` or `q35`) and, by the same protocol, Firecracker and
//! cloud-hypervisor. The image is an ELF with a Xen PVH entry note; the
//! runtime sets up long mode itself and drives the PC's legacy devices.
//!
//! | module | what |
//! |--------|------|
//! | `boot`    | the PVH and Multiboot2 entries (32-bit, build page tables, enter long mode), the boot facts, the heap's region, `start`, [`VirtioMachine`] |
//! | `hw`      | port I/O: the 16550 UART, the PIT (to calibrate the TSC), the CMOS RTC, isa-debug-exit |
//! | `virtio`  | the drivers' bus in the guest (registers, PCI configuration space, the bus walk) and finding the devices |
//! | `devices` | the platform: network interfaces, the TCP/IP stack (`lamina-net`), block devices |
//! | `park`    | the executor's idle wait: flushes the drivers' queues, then waits for a device or the deadline |
//! | [`drivers`] | the drivers, generic over their [`Bus`](drivers::Bus): virtio-mmio and virtio-pci transports, virtio-net, virtio-blk, virtio-rng |
//! | [`pci`]   | a virtio PCI function's configuration space: device type, BARs, capabilities, MSI-X |
//! | [`virtqueue`] | the split virtqueue and DMA memory, checked against what the device returns |
//! | [`cmdline`] | the device words of the command line (`virtio_mmio.device=`, `--net:NAME`, `--block:NAME`) |
//! | [`rtc`]   | CMOS date to Unix time |
//!
//! What every bare-metal runtime shares (heap, `memcpy`, the TSC scale, the
//! CSPRNG, the logger, the panic handler, the path from command line to
//! exit status) is `lamina-metal`'s; the exit status's way through
//! isa-debug-exit is `lamina_abi::debug_exit`, which `lamina run` reads too.
//!
//! Everything but [`cmdline`], [`drivers`], [`pci`], [`virtqueue`] and
//! [`rtc`] is compiled only for a guest (`--cfg lamina_guest`, set by
//! `lamina build` for every unikernel target); on the host the crate is
//! just those, so that they can be unit-tested and fuzzed against made-up
//! devices.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod cmdline;
pub mod drivers;
pub mod pci;
pub mod rtc;
pub mod virtqueue;

#[cfg(lamina_guest)]
mod guest;
#[cfg(lamina_guest)]
pub use guest::*;
