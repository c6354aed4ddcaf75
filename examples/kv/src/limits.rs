//! The service's limits: sizes from the boot arguments, checked against
//! each other and against the heap.

use crate::Args;
use lamina::args::ArgValue;
use lamina::prelude::*;

/// A number of bytes on the command line: digits, optionally followed by
/// `K`, `M` or `G` (powers of 1,024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ArgValue for ByteSize {
    fn parse_arg(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let wrong = || "expected a size in bytes like 4096, 64K or 16M".to_owned();
        let n: u64 = number.parse().map_err(|_| wrong())?;
        let shift = match unit {
            "" => 0,
            "K" | "k" => 10,
            "M" | "m" => 20,
            "G" | "g" => 30,
            _ => return Err(wrong()),
        };
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| "too large".to_owned())
    }
}

impl core::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => write!(f, "{}M", n >> 20),
            n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => write!(f, "{}K", n >> 10),
            n => write!(f, "{n}"),
        }
    }
}

/// The largest value the service takes: the store holds bigger ones, but
/// a value lives whole in memory while it is received and while it is sent.
pub const MAX_VALUE_SIZE: u64 = 1 << 30;

/// Heap the service holds whatever its traffic: the store's index (about
/// 175 bytes a key: 4 MiB is some 20,000 keys), the HTTP connections' state,
/// the stack's tables.
const BASE_BYTES: u64 = 4 << 20;

/// The limits the service runs with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest value of a PUT, in bytes.
    pub max_value_size: u64,
    /// Bytes of request bodies held at once.
    pub max_body_memory: u64,
    /// Most keys in a page of a listing.
    pub list_limit: usize,
    /// Bytes of values the store keeps for gets.
    pub value_cache: u64,
}

impl Limits {
    /// Checks `args`; on a unikernel with a heap of `heap_bytes`, also
    /// that a body being received and a value being sent fit in the half
    /// of the heap the TCP buffers leave, lowering `--value-cache`, then
    /// `--max-body-memory`, to what fits (said in the log). The error is
    /// the message to print.
    pub fn check(args: &Args, heap_bytes: Option<usize>) -> Result<Limits, String> {
        let value = args.max_value_size.0;
        if value == 0 || value > MAX_VALUE_SIZE {
            return Err(format!(
                "invalid value '{}' for '--max-value-size': from 1 to 1G",
                args.max_value_size
            ));
        }
        let mut bodies = args.max_body_memory.0;
        let mut value_cache = args.value_cache.0;
        if bodies < value {
            return Err(format!(
                "invalid value '{}' for '--max-body-memory': less than --max-value-size={}, \
                 so the largest value could never be received",
                args.max_body_memory, args.max_value_size
            ));
        }
        if args.max_connections == 0 {
            return Err("invalid value '0' for '--max-connections': at least 1".to_owned());
        }
        if args.list_limit == 0 || args.list_limit > 100_000 {
            return Err(format!(
                "invalid value '{}' for '--list-limit': from 1 to 100000",
                args.list_limit
            ));
        }
        if let Some(heap) = heap_bytes {
            let room = (heap as u64 / 2).saturating_sub(BASE_BYTES + value);
            if room < value {
                let heap_needed = 2 * (BASE_BYTES + 2 * value);
                return Err(format!(
                    "--max-value-size={} needs a heap of {} MiB (a value being received, one \
                     being sent, and the TCP buffers' half); this one has {} MiB: raise --mem \
                     to {} or more, or lower --max-value-size",
                    args.max_value_size,
                    heap_needed >> 20,
                    heap >> 20,
                    (heap_needed >> 20) + 8
                ));
            }
            // The cache takes what a value received and one sent leave.
            if value_cache > room - value {
                info!(
                    "kv: --value-cache={} does not fit in a heap of {} MiB beside the bodies: \
                     {} KiB; raise --mem for more",
                    args.value_cache,
                    heap >> 20,
                    (room - value) >> 10
                );
                value_cache = room - value;
            }
            let room = room - value_cache;
            if bodies > room {
                warn!(
                    "kv: --max-body-memory={} does not fit in a heap of {} MiB: {} MiB; raise \
                     --mem for more",
                    args.max_body_memory,
                    heap >> 20,
                    room >> 20
                );
                bodies = room;
            }
        }
        Ok(Limits {
            max_value_size: value,
            max_body_memory: bodies,
            list_limit: args.list_limit,
            value_cache,
        })
    }
}
