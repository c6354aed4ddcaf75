//! A guest from image file to halt: memory, image, devices, boot info, page
//! tables, vCPU, sandbox, then the vCPU loop.

use crate::block_ring::{self, BlockRingThread};
use crate::dumpcore::{CoreFile, DumpError};
use crate::fault::{self, Fault};
use crate::hypercall::{HypercallError, Hypercalls, Next};
use crate::kvm::{KvmError, Machine};
use crate::layout::{self, CpuMode, LayoutError, Mapping};
use crate::ring::{Offer, RingStartError, RingThread};
use crate::seccomp::{self, LoopFds, SeccompError};
use crate::stop::Stop;
use crate::trace::{Drain, Recorder, TraceThread, HOST_FEATURE_TRACE};
use kvm_ioctls::VcpuExit;
use lamina_abi::hvt::{
    BootInfo, BOOT_INFO_BASE, HOST_FEATURE_BLOCK_RING, HOST_FEATURE_RING_IO,
    HOST_FEATURE_RX_QUEUES, HOST_FEATURE_SSE, MAX_MEM_SIZE,
};
use lamina_abi::mft::block_features;
use lamina_abi::note::{features, AbiTarget};
use lamina_abi::ring;
use lamina_abi::{CMDLINE_SIZE, PAGE_SIZE};
use lamina_tender::args::TenderArgs;
use lamina_tender::devices::{DeviceError, Devices, NetOffload};
use lamina_tender::elf::{HostProtection, Image, Placement};
use lamina_tender::image::{self, ImageError};
use lamina_tender::mem::{GuestFault, GuestMemory, MemoryError};
use lamina_tender::timing::Timing;
use lamina_tender::TENDER_FAILURE;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How much of the stack's top and of the heap's start is allocated on the
/// host before the guest runs: one group of pages KVM maps together.
const PREFAULT_BYTES: u64 = 8 * PAGE_SIZE;

/// Guest RAM comes in 2 MiB units (the page tables map it with 2 MiB pages).
const MEM_UNIT: u64 = 2 << 20;

/// Why the guest could not be run to its halt.
#[derive(Debug, Error)]
pub enum GuestError {
    /// The image file: unreadable, malformed, or not for this tender.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A stop signal arrived: SIGINT, SIGTERM or SIGHUP from outside, or
    /// the ring I/O thread's SIGUSR1.
    #[error("stopped by signal {signal}")]
    Stopped {
        /// Its number.
        signal: libc::c_int,
    },
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    /// Writing the boot info.
    #[error("cannot write the boot info: {0}")]
    BootInfo(#[from] GuestFault),
    /// Page tables.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Devices.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// epoll or timerfd.
    #[error("cannot set up polling for the guest: {0}")]
    Events(std::io::Error),
    /// KVM.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The sandbox.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// A malformed hypercall.
    #[error(transparent)]
    Hypercall(#[from] HypercallError),
    /// The network ring's I/O thread.
    #[error(transparent)]
    RingStart(#[from] RingStartError),
    /// `--gdb`: the listening socket or the connection.
    #[error("--gdb: {0}")]
    Gdb(std::io::Error),
    /// `--dumpcore`.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A corrupt network or block ring (from its I/O thread).
    #[error("{0}")]
    Ring(String),
    /// The trace file (`--trace=FILE`): not created, or writing it failed.
    #[error("trace file {path}: {error}")]
    Trace {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// The guest faulted, or stopped in a way that is not a halt: the
    /// report names it, the faulting instruction and the backtrace.
    #[error("{}", .0.report)]
    Fault(Box<Fault>),
    /// The guest stopped in a way that is not a halt, and its registers
    /// could not be read.
    #[error("{what}: rip={rip:#x}")]
    Exit {
        /// What happened.
        what: String,
        /// Where.
        rip: u64,
    },
}

impl GuestError {
    /// The tender's exit status for this error: 128 + N for a guest stopped
    /// by signal N from outside (SIGINT, SIGTERM, SIGHUP), as a shell
    /// reports a process that signal killed, and lamina-spt's death by it
    /// reads; [`TENDER_FAILURE`] for everything else.
    pub fn exit_status(&self) -> i32 {
        match self {
            GuestError::Stopped { signal }
                if [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(signal) =>
            {
                128 + signal
            }
            _ => TENDER_FAILURE,
        }
    }
}

/// Guest memory size for `--mem`: 2 MiB units, 2 MiB to 4 GiB.
pub fn mem_size(mib: u64) -> u64 {
    let asked = mib.saturating_mul(1 << 20);
    let rounded = asked.min(MAX_MEM_SIZE) / MEM_UNIT * MEM_UNIT;
    if rounded != asked {
        eprintln!(
            "lamina-hvt: guest memory of {mib} MiB adjusted to {} MiB (a multiple of 2 MiB, at most 4096)",
            rounded.max(MEM_UNIT) >> 20
        );
    }
    rounded.max(MEM_UNIT)
}

/// Runs the guest; its exit status on a halt.
pub fn run(args: &TenderArgs, timing: &mut Timing) -> Result<i32, GuestError> {
    let path = &args.image;
    let mem_size = mem_size(args.mem_mib);
    let mut mem = GuestMemory::anywhere(mem_size)?;
    // The file's bytes are freed once loaded: kept, they would cost the
    // image's size in every running VM.
    let (image, notes) = {
        let bytes = image::read(path)?;
        let (elf, notes) = image::parse(path, &bytes, AbiTarget::Hvt)?;
        let elf_error = ImageError::elf(path);
        let image = Image::check(elf, mem_size).map_err(&elf_error)?;
        timing.mark("read image");
        image.load(&mut mem).map_err(&elf_error)?;
        (image.placement(), notes)
    };
    let machine = Machine::new(&mem)?;
    timing.mark("kvm vm, load image");

    // The tender moves the frames (hypercalls, ring thread). A runtime that
    // understands virtio-net headers (Lamina's: NET_OFFLOAD) sends and
    // takes large segments behind them, which the tender passes between
    // the taps and guest memory as they are; for any other guest (Solo5's)
    // the tender joins and splits segments on the taps' behalf. On this
    // host a bulk echo on hvt went from 564 to 946-1039 MB/s each way
    // (bench/net.py): the ring thread had been the bottleneck, at 89% of a
    // CPU cutting and joining MTU-sized frames, and the guest handled 30
    // times the frames.
    let net_offload = if notes.lamina_features & features::NET_OFFLOAD != 0 {
        NetOffload::InGuest
    } else {
        NetOffload::InTender
    };
    let mut devices = Devices::attach(&notes.manifest, args, net_offload)?;
    // Multi-sector transfers and the flush hypercall, for a runtime that
    // asks (Solo5's tenders have neither, so a guest uses them only then).
    if notes.lamina_features & features::BLOCK_IO != 0 {
        devices.enable_block_features(block_features::MULTI_SECTOR | block_features::FLUSH);
    }
    let mut hypercalls = Hypercalls::new(devices).map_err(GuestError::Events)?;
    let trace_error = |error| GuestError::Trace {
        path: args.trace.clone().unwrap_or_default(),
        error,
    };
    let recorder = match &args.trace {
        Some(path) => Some(Recorder::new(Drain::create(path).map_err(trace_error)?)),
        None => None,
    };
    if let Some(recorder) = &recorder {
        hypercalls.record_trace_with(recorder.clone());
    }
    timing.mark("devices");

    let mode = if machine.pvm && notes.lamina_features & features::ANY_CPL != 0 {
        CpuMode::PvmNative
    } else {
        CpuMode::Solo5
    };
    let sealed = notes.lamina_features & features::NX_DATA != 0;
    let offer = offer_ring(&machine, &mut mem, &image, &hypercalls);
    if let Some(Offer {
        gpa,
        rx_wake: Some(wake),
        ..
    }) = &offer
    {
        hypercalls
            .receive_queues(*gpa, wake.as_raw_fd())
            .map_err(GuestError::Events)?;
    }
    let block_offer = (notes.lamina_features & features::BLOCK_IO != 0)
        .then(|| {
            let below = offer.as_ref().map_or(mem.end(), |o| o.gpa);
            offer_block_ring(&machine, &mut mem, &image, &hypercalls, below)
        })
        .flatten();
    // The guest's memory ends where the lowest ring begins.
    let guest_mem_size = block_offer
        .as_ref()
        .map(|o| o.gpa)
        .or(offer.as_ref().map(|o| o.gpa))
        .unwrap_or(mem_size);
    let boot_end = write_boot_info(
        &mut mem,
        &image,
        &hypercalls,
        &args.cmdline,
        machine.tsc_hz()?,
        Rings {
            net: offer.as_ref(),
            block: block_offer.as_ref(),
            trace: recorder.is_some(),
            guest_mem_size,
        },
    )?;
    layout::write_tables(
        &mut mem,
        &image,
        Mapping {
            mode,
            sealed,
            boot_end,
        },
    )?;
    // Every guest touches the top of its stack and the start of its heap
    // first: with their host pages there, KVM maps 8 at the first fault
    // instead of one per fault (each a VM exit, about 20 us nested).
    mem.prefault(guest_mem_size - PREFAULT_BYTES, guest_mem_size);
    mem.prefault(image.kernel_end, image.kernel_end + PREFAULT_BYTES);
    // A sealed image's page tables keep its text and read-only data from
    // the guest; the tender's checks keep hypercalls out of them. Without
    // them (Solo5's images), the read-only host mapping is what does.
    let host_protection = if sealed {
        HostProtection::Checked
    } else {
        HostProtection::ExecAsRead
    };
    image.protect(&mut mem, host_protection)?;
    if args.gdb_port.is_some() {
        // gdb's breakpoints are int3s the tender writes into the text; the
        // guest's page tables keep it read-only for the guest.
        for segment in image.segments.iter().filter(|s| s.protection.exec) {
            let writable = lamina_tender::mem::Protection {
                read: true,
                write: true,
                exec: false,
            };
            mem.protect(segment.start, segment.end, writable)?;
        }
    }
    timing.mark("boot info, tables");

    let cpuid = machine.supported_cpuid()?;
    timing.mark("cpuid");
    let state = mode.state(sealed);
    machine.start_vcpu(
        &cpuid,
        mode,
        state,
        image.entry,
        guest_mem_size - 8,
        BOOT_INFO_BASE,
    )?;
    timing.mark("vcpu");
    if timing.enabled() {
        eprintln!(
            "lamina-hvt: {mode:?} mode (KVM-PVM: {}), sealed: {sealed}",
            machine.pvm
        );
    }

    // SIGINT/SIGTERM/SIGHUP (and SIGUSR1, the ring I/O thread's: the guest must
    // stop, it says why) stop the guest; see `stop` for how a signal that
    // arrives just before KVM_RUN or a POLL is not missed.
    let stop = Stop::install().map_err(GuestError::Signals)?;
    hypercalls
        .wake_on(stop.event_fd())
        .map_err(GuestError::Signals)?;
    // The I/O thread starts before the vCPU thread's filter (which it does
    // not inherit) and installs its own; its view of guest memory has the
    // protections applied above.
    let net_ring = offer.as_ref().map(|offer| offer.gpa);
    let mut ring_thread = match offer {
        Some(offer) => Some(RingThread::start(
            offer,
            mem.shared_view(),
            hypercalls.devices(),
            lamina_tender::sys::current_thread(),
        )?),
        None => None,
    };
    if let Some(ring_thread) = &ring_thread {
        hypercalls.serve_ring_with(ring_thread.shared().clone());
    }
    let mut block_thread = match block_offer {
        Some(offer) => {
            let gpa = offer.gpa;
            let thread = BlockRingThread::start(
                offer,
                mem.shared_view(),
                hypercalls.devices(),
                lamina_tender::sys::current_thread(),
            )?;
            hypercalls.serve_block_ring_with(gpa, thread.shared().clone());
            Some(thread)
        }
        None => None,
    };
    // The trace thread, like the rings' threads, installs its own filter.
    let trace_thread = match recorder {
        Some(recorder) => Some(
            TraceThread::start(recorder, mem.shared_view(), |file| {
                seccomp::install_trace(file).map_err(std::io::Error::other)
            })
            .map_err(trace_error)?,
        ),
        None => None,
    };
    let gdb_conn = match args.gdb_port {
        Some(port) => {
            let conn = crate::gdb::accept(port).map_err(GuestError::Gdb)?;
            crate::gdb::interrupt_every(Duration::from_millis(50)).map_err(GuestError::Gdb)?;
            // POLL ends when gdb sends something (a Ctrl-C).
            hypercalls
                .wake_on(conn.as_raw_fd())
                .map_err(GuestError::Gdb)?;
            Some(conn)
        }
        None => None,
    };
    let core_file = match &args.dumpcore {
        Some(dir) => Some(CoreFile::prepare(dir)?),
        None => None,
    };
    let (epoll, timer) = hypercalls.event_fds();
    let fds = LoopFds {
        vcpu: machine.vcpu.as_raw_fd(),
        epoll,
        timer,
        kick: ring_thread.as_ref().map(|r| r.kick_fd()),
        block_kick: block_thread.as_ref().map(|r| r.kick_fd()),
        stop_event: stop.event_fd(),
        rx: hypercalls.rx_fds(),
        core: core_file.as_ref().map(CoreFile::fds),
        gdb: gdb_conn.as_ref().map(|c| c.as_raw_fd()),
    };
    seccomp::install(fds, hypercalls.devices())?;
    timing.mark("seccomp");
    timing.print("lamina-hvt");
    let stats = args.flags.contains(&"--x-stats");
    let mut loop_stats = LoopStats::default();
    let mut machine = machine;
    let mut result = match gdb_conn {
        Some(conn) => crate::gdb::serve(
            conn,
            &mut machine,
            &mem,
            &mut hypercalls,
            &stop,
            |machine, hypercalls| vcpu_loop(machine, &mem, hypercalls, &stop, &mut loop_stats),
        ),
        None => vcpu_loop(&mut machine, &mem, &mut hypercalls, &stop, &mut loop_stats),
    };
    // Whatever ended the guest, what it recorded last is kept.
    if let Some(Err(error)) = trace_thread.map(TraceThread::stop) {
        eprintln!("lamina-hvt: {}", trace_error(error));
    }
    if let Some(core_file) = core_file {
        dump_core(core_file, &machine, &mem, guest_mem_size, &result);
    }
    if let Some(ring_thread) = &mut ring_thread {
        ring_thread.stop();
        let shared = ring_thread.shared();
        if let Some(why) = shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            result = Err(GuestError::Ring(why));
        }
        if stats {
            eprintln!(
                "lamina-hvt: network ring: {} frames sent, {} frames received into the queues, {} reads, I/O thread slept {} times ({} looks cut short by a busy host, {} found work) and was kicked {} times, woke the guest {} times, served by the vCPU thread in {} POLLs, {} frames from the host dropped (malformed or bad checksum), {} too large, {} writes refused by the host",
                shared.writes.load(Ordering::Relaxed),
                shared.queued.load(Ordering::Relaxed),
                shared.reads.load(Ordering::Relaxed),
                shared.sleeps.load(Ordering::Relaxed),
                shared.descheduled.load(Ordering::Relaxed),
                shared.looks_caught.load(Ordering::Relaxed),
                shared.kicks.load(Ordering::Relaxed),
                shared.wakes.load(Ordering::Relaxed),
                shared.served_in_poll.load(Ordering::Relaxed),
                shared.dropped.load(Ordering::Relaxed),
                shared.too_large.load(Ordering::Relaxed),
                shared.refused.load(Ordering::Relaxed)
            );
        }
    }
    if let Some(block_thread) = &mut block_thread {
        block_thread.stop();
        let shared = block_thread.shared();
        if let Some(why) = shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            result = Err(GuestError::Ring(why));
        }
        if stats {
            eprintln!(
                "lamina-hvt: block ring: {} requests ({} reads, {} writes, {} flushes, {} refused as malformed, {} failed by the host), I/O thread slept {} times and was kicked {} times; {} served by the vCPU thread",
                shared.requests(),
                shared.reads.load(Ordering::Relaxed),
                shared.writes.load(Ordering::Relaxed),
                shared.flushes.load(Ordering::Relaxed),
                shared.refused.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
                shared.sleeps.load(Ordering::Relaxed),
                shared.kicks.load(Ordering::Relaxed),
                shared.served_by_vcpu.load(Ordering::Relaxed),
            );
        }
    }
    if stats {
        print_stats(&loop_stats, &hypercalls.counts);
        if let Some(gpa) = net_ring {
            print_guest_stats(&mem, gpa, &loop_stats);
        }
    }
    result
}

/// The `--x-stats` report of the guest's idle waits, from what a Lamina
/// guest kept in the network ring ([`ring::GuestStats`]; all zero from a
/// guest that does not keep them): its vCPU time split into the guest's
/// own work, its polling before sleeping, and the world switches of its
/// sleeps in POLL (the guest's view of its POLLs less the vCPU thread's
/// time handling them: the exit and the return into the guest).
fn print_guest_stats(mem: &GuestMemory, gpa: u64, stats: &LoopStats) {
    let Ok(guest) = mem.reserved_read::<ring::GuestStats>(gpa + ring::offsets::GUEST_STATS as u64)
    else {
        return;
    };
    if guest.sleeps == 0 && guest.polls == 0 {
        return;
    }
    let secs = |ns: u64| ns as f64 / 1e9;
    // The last exit (the HALT, or the POLL a signal ended) never returned
    // to the guest, which counts only the POLLs that did. The others
    // (walltime, puts) are few and quick to handle: a network guest's
    // exits are its POLLs.
    let handled = (stats.handling - stats.last_handling).as_secs_f64();
    let switches = (secs(guest.sleep_ns) - handled).max(0.0);
    let work = (stats.in_run.as_secs_f64() - secs(guest.poll_ns) - switches).max(0.0);
    eprintln!(
        "lamina-hvt: guest: {work:.3} s of its own work, {:.3} s polling its queues before sleeping ({} polls, {} found input), {:.3} s in {} POLLs, of which {switches:.3} s the exits and returns ({:.1} us each)",
        secs(guest.poll_ns),
        guest.polls,
        guest.polls_caught,
        secs(guest.sleep_ns),
        guest.sleeps,
        switches * 1e6 / guest.sleeps.max(1) as f64,
    );
}

/// The block ring, for a guest that asks for `BLOCK_IO` and has a block
/// device: [`block_ring::RESERVED_BYTES`] below `below` (the network
/// ring's area, or the top of memory), untouched and so still zero, which
/// the guest's `mem_size` then excludes. `None` (block hypercalls)
/// otherwise.
fn offer_block_ring(
    machine: &Machine,
    mem: &mut GuestMemory,
    image: &Placement,
    hypercalls: &Hypercalls,
    below: u64,
) -> Option<block_ring::Offer> {
    if hypercalls.devices().blocks.is_empty() {
        return None;
    }
    let gpa = below.checked_sub(lamina_abi::block_ring::RESERVED_BYTES)?;
    if gpa < image.kernel_end.saturating_add(MEM_UNIT) {
        return None;
    }
    let kick = lamina_tender::sys::eventfd().ok()?;
    if let Err(e) = machine.register_kick(lamina_abi::block_ring::KICK_PORT, kick.as_raw_fd()) {
        eprintln!("lamina-hvt: no block ring (KVM_IOEVENTFD failed: {e}); using hypercalls");
        return None;
    }
    // From now on no guest address the tender handles may reach the ring.
    mem.reserve_top(gpa).ok()?;
    Some(block_ring::Offer { gpa, kick })
}

/// The rings offered, for the boot info.
struct Rings<'a> {
    net: Option<&'a Offer>,
    block: Option<&'a block_ring::Offer>,
    /// Whether the tender drains a trace ring the guest registers.
    trace: bool,
    /// Where the guest's memory ends (the lowest ring's start).
    guest_mem_size: u64,
}

/// The network ring, when a network device is attached and KVM takes the
/// kick's ioeventfd: the top [`ring::RESERVED_BYTES`] of guest memory,
/// still zero (untouched), which the guest's `mem_size` then excludes. `None` (the base ABI)
/// otherwise.
fn offer_ring(
    machine: &Machine,
    mem: &mut GuestMemory,
    image: &Placement,
    hypercalls: &Hypercalls,
) -> Option<Offer> {
    if hypercalls.devices().nets.is_empty() {
        return None;
    }
    let gpa = mem.end().checked_sub(ring::RESERVED_BYTES)?;
    // Leave the guest at least one unit of memory for its stack and heap.
    if gpa < image.kernel_end.saturating_add(MEM_UNIT) {
        return None;
    }
    let kick = lamina_tender::sys::eventfd().ok()?;
    if let Err(e) = machine.register_kick(ring::KICK_PORT, kick.as_raw_fd()) {
        eprintln!("lamina-hvt: no network ring (KVM_IOEVENTFD failed: {e}); using hypercalls");
        return None;
    }
    // The ring area is already zero: guest memory is a fresh anonymous
    // mapping, and no segment or boot structure reaches it (checked just
    // above). Filling it anyway would make every one of its pages resident
    // (2 MiB per idle VM); untouched, a page costs nothing until the guest
    // or the I/O thread uses it.
    // From now on no guest address the tender handles may reach the ring.
    mem.reserve_top(gpa).ok()?;
    // Receive queues when every device gets one and the eventfd that wakes
    // the guest's POLL exists; else the guest reads through entries.
    let nets = &hypercalls.devices().nets;
    let rx_wake = (nets.len() <= ring::rx::MAX_QUEUES)
        .then(lamina_tender::sys::eventfd)
        .and_then(Result::ok)
        .filter(|_| crate::rx::lay_out(mem, gpa, nets).unwrap_or(false));
    Some(Offer { gpa, kick, rx_wake })
}

/// Where the vCPU thread's time went, for `--x-stats`.
#[derive(Debug, Default)]
struct LoopStats {
    /// Exits to the tender.
    exits: u64,
    /// In KVM_RUN: the guest running, and the world switches of the exits.
    in_run: Duration,
    /// Handling the exits (for POLL: serving the ring, polling, sleeping).
    handling: Duration,
    /// Handling the last exit.
    last_handling: Duration,
}

/// The `--x-stats` report: exits to the tender, hypercalls by kind, and
/// where the vCPU thread's time went.
fn print_stats(stats: &LoopStats, counts: &[u64; 12]) {
    let exits = stats.exits;
    const NAMES: [&str; 12] = [
        "",
        "walltime",
        "puts",
        "poll",
        "block_write",
        "block_read",
        "net_write",
        "net_read",
        "halt",
        "block_flush",
        "block_ring_serve",
        "trace_register",
    ];
    let by_kind: Vec<String> = NAMES
        .iter()
        .zip(counts)
        .skip(1)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    eprintln!(
        "lamina-hvt: {exits} VM exits to the tender ({})",
        by_kind.join(", ")
    );
    eprintln!(
        "lamina-hvt: vCPU thread: {:.3} s in KVM_RUN (the guest and the world switches), {:.3} s handling exits ({:.1} us each)",
        stats.in_run.as_secs_f64(),
        stats.handling.as_secs_f64(),
        stats.handling.as_secs_f64() * 1e6 / exits.max(1) as f64
    );
}

/// Boot info at 0x10000 (with the rings, if offered, at the top of memory),
/// then the attached manifest, then the command line;
/// returns the page-aligned end of that area.
fn write_boot_info(
    mem: &mut GuestMemory,
    image: &Placement,
    hypercalls: &Hypercalls,
    cmdline: &[u8],
    tsc_hz: u64,
    rings: Rings<'_>,
) -> Result<u64, GuestFault> {
    let net_ring = rings.net.map(|offer| offer.gpa);
    // Both CPU modes start with SSE on (layout::CpuMode::state).
    let mut host_features = HOST_FEATURE_SSE;
    if rings.block.is_some() {
        host_features |= HOST_FEATURE_BLOCK_RING;
    }
    if rings.trace {
        host_features |= HOST_FEATURE_TRACE;
    }
    if let Some(offer) = rings.net {
        host_features |= HOST_FEATURE_RING_IO;
        if offer.rx_wake.is_some() {
            host_features |= HOST_FEATURE_RX_QUEUES;
        }
    }
    let manifest = &hypercalls.devices().manifest;
    let mft = BOOT_INFO_BASE + std::mem::size_of::<BootInfo>() as u64;
    let cmdline_at = mft + manifest.len() as u64;
    mem.copy_in(mft, manifest)?;
    mem.copy_in(cmdline_at, cmdline)?;
    let info = BootInfo {
        mem_size: rings.guest_mem_size,
        kernel_end: image.kernel_end,
        cpu_cycle_freq: tsc_hz,
        cmdline: cmdline_at,
        mft,
        host_features,
        guest_features: 0,
        net_ring: net_ring.unwrap_or(0),
        block_ring: rings.block.map_or(0, |offer| offer.gpa),
    };
    mem.write(BOOT_INFO_BASE, &info)?;
    Ok((cmdline_at + CMDLINE_SIZE as u64).next_multiple_of(PAGE_SIZE))
}

/// With `--dumpcore`: writes the core file of a guest that faulted or
/// aborted, and says where (or why not) on stderr.
fn dump_core(
    core_file: CoreFile,
    machine: &Machine,
    mem: &GuestMemory,
    guest_end: u64,
    result: &Result<i32, GuestError>,
) {
    let aborted;
    let fault = match result {
        Err(GuestError::Fault(fault)) => fault.as_ref(),
        Ok(lamina_abi::EXIT_ABORT) => {
            let (Ok(regs), Ok(sregs)) = (machine.vcpu.get_regs(), machine.vcpu.get_sregs()) else {
                return;
            };
            aborted = Fault::abort(&regs, &sregs);
            &aborted
        }
        _ => return,
    };
    match core_file.write(mem, guest_end, fault) {
        Ok(path) => eprintln!("lamina-hvt: core dumped to {}", path.display()),
        Err(error) => eprintln!("lamina-hvt: {error}"),
    }
}

/// Runs the vCPU until the guest halts or fails.
fn vcpu_loop(
    machine: &mut Machine,
    mem: &GuestMemory,
    hypercalls: &mut Hypercalls,
    stop: &Stop,
    stats: &mut LoopStats,
) -> Result<i32, GuestError> {
    // Disarmed before `machine` (a parameter, dropped after the locals)
    // unmaps kvm_run.
    let _armed = stop.arm(&mut machine.vcpu.get_kvm_run().immediate_exit);
    loop {
        if let Some(signal) = stop.signal() {
            return Err(GuestError::Stopped { signal });
        }
        let entered = Instant::now();
        let run = machine.vcpu.run();
        let exited = Instant::now();
        stats.in_run += exited - entered;
        stats.exits += 1;
        let what = match run {
            Ok(VcpuExit::IoOut(port, data)) => {
                let next = hypercalls.dispatch(mem, port, data);
                stats.last_handling = exited.elapsed();
                stats.handling += stats.last_handling;
                match next? {
                    Next::Resume => continue,
                    Next::Halt(status) => return Ok(status),
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => HypercallError::BadAccess {
                direction: "in",
                size: data.len(),
                port,
            }
            .to_string(),
            Ok(VcpuExit::MmioWrite(addr, _)) if addr < mem.end() => format!(
                "guest wrote to read-only memory at {addr:#x} (its own text or read-only data)"
            ),
            Ok(VcpuExit::MmioWrite(addr, _)) | Ok(VcpuExit::MmioRead(addr, _)) => {
                format!("guest accessed {addr:#x}, outside its memory")
            }
            Ok(VcpuExit::Hlt) => {
                if let Some(fault) = exception_at_halt(machine, mem) {
                    return Err(GuestError::Fault(Box::new(fault)));
                }
                "guest executed hlt with interrupts off (no hypercall to halt)".into()
            }
            Ok(VcpuExit::Shutdown) => {
                "guest triple-faulted (an exception it does not handle, e.g. a write to its text, a jump into data or a bad address)".into()
            }
            Ok(VcpuExit::InternalError) => {
                let suberror = machine.internal_error_suberror();
                format!("KVM internal error exit: suberror={suberror:#x} (an instruction KVM could not emulate; on KVM-PVM a guest without Lamina's ANY_CPL note runs in KVM's emulator, which has no SSE)")
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                format!("KVM could not enter the guest: reason={reason:#x} cpu={cpu}")
            }
            Ok(other) => format!("KVM: unhandled exit {other:?}"),
            Err(error) if error.errno() == libc::EFAULT => {
                "host/guest translation fault (the guest touched memory the host protects)".into()
            }
            Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => continue,
            Err(error) => format!("KVM_RUN failed: {error}"),
        };
        return Err(match (machine.vcpu.get_regs(), machine.vcpu.get_sregs()) {
            (Ok(regs), Ok(sregs)) => {
                GuestError::Fault(Box::new(fault::other(mem, &what, &regs, &sregs)))
            }
            (regs, _) => GuestError::Exit {
                what,
                rip: regs.map_or(0, |regs| regs.rip),
            },
        });
    }
}

/// The guest's exception, when the vCPU halted in one of the tender's
/// exception stubs (see [`fault`]).
fn exception_at_halt(machine: &Machine, mem: &GuestMemory) -> Option<Fault> {
    let regs = machine.vcpu.get_regs().ok()?;
    let vector = fault::vector_of_halt(regs.rip)?;
    let sregs = machine.vcpu.get_sregs().ok()?;
    Some(fault::exception(mem, vector, &regs, &sregs))
}
