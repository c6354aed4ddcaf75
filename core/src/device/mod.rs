//! Device traits: the smallest interfaces that libraries and applications need.
//!
//! Each trait is a signature in the MirageOS sense. A target provides one
//! implementation of each; code generic over them is monomorphised for that
//! target, and a device the application never asks for is never compiled in.
//!
//! Conventions shared by every trait:
//! - Methods that may wait for the outside world are `async`; they never block
//!   the single CPU, they yield to the executor.
//! - Errors are small enums per device family, every variant documented.
//! - Buffers are always handed back: a failed call leaves the caller's data
//!   where it was.

mod block;
mod clock;
mod console;
mod kv;
mod net;
mod random;

pub use block::{Block, BlockError, BlockInfo};
pub use clock::Clock;
pub use console::Console;
pub use kv::{normalize_key, KvEntry, KvError, KvRead, KvWrite};
pub use net::{
    DnsServers, NetError, Netif, Offloads, Stack, TcpListener, TcpRead, TcpStream, TcpWrite,
    UdpSocket,
};
pub use random::Random;
mod unavailable;
pub use unavailable::Unavailable;
mod ram;
pub use ram::RamBlock;
#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
pub use file::{write_zeroes, FileBlock, FILE_SECTOR_SIZE};
pub mod baked;
pub use baked::{Baked, BakedFile};
