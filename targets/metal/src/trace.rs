//! Tracing on the unikernel targets: `--trace-mib=N` (which `lamina run
//! --trace` passes) takes a ring of N MiB from the heap and starts
//! recording into it (see `lamina_core::trace`). Where the records go
//! depends on the machine ([`Machine::trace_sink`]): a guest that writes
//! its own recording (virtio, through QEMU's debug console) drains the
//! ring there each time the executor waits ([`drain`], called by the
//! target's park) and at exit, with the file header first; otherwise the
//! host reads the ring out of guest memory.

use crate::Machine;
use core::sync::atomic::AtomicU64;
use lamina_core::trace::{Kind, Track};
use lamina_trace::file::Header;
use lamina_trace::record::header;

lamina_core::boot_args! {
    /// Tracing
    pub struct TraceArgs {
        /// Record a trace in a ring of this many MiB of the heap (`lamina run --trace` sets it); 0: off.
        pub trace_mib: u32 = "0",
    }
}

/// The ring and where it is drained to, for a guest that drains its own.
struct SelfDrained {
    ring: &'static [AtomicU64],
    sink: fn(&[u8]),
    dropped: AtomicU64,
}

static SELF_DRAINED: spin::Once<SelfDrained> = spin::Once::new();

/// Starts recording if `args` asks for it. A ring larger than a quarter of
/// the heap (`heap_bytes`) is refused: the message goes to the console and
/// the status is 2, as for any bad boot argument.
pub fn start<M: Machine>(args: &TraceArgs, heap_bytes: usize) -> Result<(), i32> {
    if args.trace_mib == 0 {
        return Ok(());
    }
    let bytes = (args.trace_mib as usize).saturating_mul(1 << 20);
    if bytes > heap_bytes / 4 {
        let most = (heap_bytes / 4) >> 20;
        let message = alloc::format!(
            "unikernel: --trace-mib={}: a trace ring may take a quarter of the heap ({} MiB) at most: {most} MiB\n",
            args.trace_mib,
            heap_bytes >> 20
        );
        M::console_write(message.as_bytes());
        return Err(2);
    }
    let words = bytes / 8;
    let ring: &'static [AtomicU64] =
        alloc::boxed::Box::leak((0..words).map(|_| AtomicU64::new(0)).collect());
    match M::trace_sink() {
        Some(sink) => {
            sink(&Header::new(M::TARGET, M::clock_offset_ns()).to_bytes());
            SELF_DRAINED.call_once(|| SelfDrained {
                ring,
                sink,
                dropped: AtomicU64::new(0),
            });
        }
        None => {
            if !M::trace_register(ring) {
                M::console_write(
                    b"unikernel: --trace-mib: this host cannot read a trace; not recording\n",
                );
                return Ok(());
            }
        }
    }
    lamina_core::trace::install(ring, M::monotonic_ns);
    Ok(())
}

/// Writes out what was recorded since the last call, when the guest
/// drains its own ring. Cheap when nothing was recorded.
pub fn drain() {
    let Some(drained) = SELF_DRAINED.get() else {
        return;
    };
    let mut chunk = [0u8; 4096];
    let mut filled = 0;
    let result = lamina_trace::ring::drain(drained.ring, drained.ring.len(), |word| {
        chunk[filled..filled + 8].copy_from_slice(&word.to_le_bytes());
        filled += 8;
        if filled == chunk.len() {
            (drained.sink)(&chunk);
            filled = 0;
        }
    });
    if filled > 0 {
        (drained.sink)(&chunk[..filled]);
    }
    if let Ok(dropped) = result {
        let before = drained
            .dropped
            .swap(dropped, core::sync::atomic::Ordering::Relaxed);
        if dropped > before {
            // A Dropped record: header, time (0: the reader uses the last), count.
            let mut record = [0u8; 24];
            record[..8].copy_from_slice(&header(Kind::Dropped, 0, 3, Track::NONE).to_le_bytes());
            record[16..].copy_from_slice(&(dropped - before).to_le_bytes());
            (drained.sink)(&record);
        }
    }
}
