//! Everything between the command line and the jump: memory, image,
//! devices, boot info, the event descriptors and the sandbox.

use crate::launch;
use crate::seccomp::{self, CoreFds, SeccompError};
use lamina_abi::mft::block_features;
use lamina_abi::note::{features, AbiTarget};
use lamina_abi::spt::{BootInfo, BOOT_INFO_BASE, HOST_MEM_BASE, INTERNAL_TIMERFD};
use lamina_abi::{CMDLINE_SIZE, GUEST_MIN_BASE};
use lamina_tender::args::TenderArgs;
use lamina_tender::devices::{DeviceError, Devices, NetOffload};
use lamina_tender::elf::{HostProtection, Image};
use lamina_tender::image::{self, ImageError};
use lamina_tender::mem::{GuestFault, GuestMemory, MemoryError};
use lamina_tender::sys;
use lamina_tender::timing::Timing;
use std::os::fd::{AsRawFd, IntoRawFd};
use thiserror::Error;

/// Why the guest could not be started.
#[derive(Debug, Error)]
pub enum SetupError {
    /// The image file: unreadable, malformed, or not for this tender.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// `--mem` is too small for anything.
    #[error("--mem={mib} is too small: the guest needs more than 1 MiB")]
    TooLittleMemory {
        /// What was asked.
        mib: u64,
    },
    /// `--mem` does not fit below the tender.
    #[error("--mem={mib} is too large for this tender's address space; use a smaller --mem")]
    TooMuchMemory {
        /// What was asked.
        mib: u64,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Writing the boot info.
    #[error("cannot write the boot info: {0}")]
    BootInfo(#[from] GuestFault),
    /// Devices.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// epoll or timerfd.
    #[error("cannot create the {what} for the guest: {reason}")]
    Events {
        /// epoll or timerfd.
        what: &'static str,
        /// The OS error.
        reason: std::io::Error,
    },
    /// The sandbox.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// `--dumpcore=DIR` cannot take a core file.
    #[error("--dumpcore={}: cannot create a file there: {reason}", dir.display())]
    DumpCore {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        reason: std::io::Error,
    },
    /// `--gdb` is lamina-hvt's.
    #[error("--gdb is lamina-hvt's: the spt guest is this process (debug it with gdb -p, or run it on hvt)")]
    NoGdb,
    /// The fault handler.
    #[error("cannot install the guest fault handler: {0}")]
    FaultHandler(std::io::Error),
    /// The trace file (`--trace=FILE`).
    #[error("cannot create the trace file {path}: {reason}")]
    Trace {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        reason: std::io::Error,
    },
}

/// Sets the guest up and jumps into it; returns only on error.
pub fn run(args: &TenderArgs, mut timing: Timing) -> SetupError {
    match prepare(args, &mut timing) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn prepare(args: &TenderArgs, timing: &mut Timing) -> Result<std::convert::Infallible, SetupError> {
    if args.gdb_port.is_some() {
        return Err(SetupError::NoGdb);
    }
    let path = &args.image;
    let mem_size = args
        .mem_mib
        .checked_mul(1 << 20)
        .filter(|&size| size < 1 << 46)
        .ok_or(SetupError::TooMuchMemory { mib: args.mem_mib })?;
    if mem_size <= GUEST_MIN_BASE {
        return Err(SetupError::TooLittleMemory { mib: args.mem_mib });
    }
    // The file's bytes are freed once loaded: this function never
    // returns, so kept here they would cost the image's size for the
    // guest's whole life.
    let (image, notes, mut mem) = {
        let bytes = image::read(path)?;
        let (elf, notes) = image::parse(path, &bytes, AbiTarget::Spt)?;
        let elf_error = ImageError::elf(path);
        timing.mark("read image");
        let image = Image::check(elf, mem_size).map_err(&elf_error)?;
        let mut mem = GuestMemory::identity(HOST_MEM_BASE, mem_size)?;
        image.load(&mut mem).map_err(&elf_error)?;
        (image.placement(), notes, mem)
    };
    timing.mark("map and load");

    // The guest reads and writes its taps itself: with a runtime that
    // understands virtio-net headers, the taps get checksum and
    // segmentation offload.
    let net_offload = if notes.lamina_features & features::NET_OFFLOAD != 0 {
        NetOffload::InGuest
    } else {
        NetOffload::Off
    };
    let mut devices = Devices::attach(&notes.manifest, args, net_offload)?;
    // Multi-sector transfers and flushes, for a runtime that asks (a Solo5
    // guest keeps its one-sector filter).
    if notes.lamina_features & features::BLOCK_IO != 0 {
        devices.enable_block_features(block_features::MULTI_SECTOR | block_features::FLUSH);
    }
    let events = |what| move |reason| SetupError::Events { what, reason };
    let epoll = sys::epoll_create().map_err(events("epoll set"))?;
    let timer = sys::timerfd_create().map_err(events("timerfd"))?;
    sys::epoll_add(epoll.as_raw_fd(), timer.as_raw_fd(), INTERNAL_TIMERFD)
        .map_err(events("epoll set"))?;
    for net in &devices.nets {
        sys::epoll_add(epoll.as_raw_fd(), net.fd(), net.handle).map_err(events("epoll set"))?;
    }
    // --trace=FILE: the guest writes its own recording to FILE (spt has no
    // tender left to drain a ring once the guest runs): its descriptor is
    // offered in the manifest's reserved entry, and the sandbox allows
    // `write` on it and nothing else.
    let trace = match &args.trace {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|reason| SetupError::Trace {
                path: path.clone(),
                reason,
            })?;
            devices.offer_trace(file.as_raw_fd());
            Some(file)
        }
        None => None,
    };
    timing.mark("devices");

    // Boot info, then the attached manifest, then the command line.
    let mft_at = BOOT_INFO_BASE + std::mem::size_of::<BootInfo>() as u64;
    let cmdline_at = mft_at + devices.manifest.len() as u64;
    mem.copy_in(mft_at, &devices.manifest)?;
    // The guest may read the whole CMDLINE_SIZE area (the parser keeps the
    // command line shorter, so it is NUL-terminated).
    mem.bytes_mut(cmdline_at, CMDLINE_SIZE as u64)?
        .copy_from(&args.cmdline);
    let core_file =
        match &args.dumpcore {
            Some(dir) => Some(crate::fault::CoreFile::prepare(dir).map_err(|reason| {
                SetupError::DumpCore {
                    dir: dir.clone(),
                    reason,
                }
            })?),
            None => None,
        };
    let fds = CoreFds {
        epoll: epoll.as_raw_fd(),
        timer: timer.as_raw_fd(),
        core: core_file.as_ref().map(crate::fault::CoreFile::fds),
        trace: trace.as_ref().map(|file| file.as_raw_fd()),
    };
    let boot_info = BootInfo {
        mem_size,
        kernel_end: image.kernel_end,
        cmdline: cmdline_at,
        mft: mft_at,
        epollfd: fds.epoll,
        timerfd: fds.timer,
    };
    mem.write(BOOT_INFO_BASE, &boot_info)?;
    image.protect(&mut mem, HostProtection::Exact)?;
    let program = seccomp::build(fds, &devices)?;
    let abort_trap = match core_file {
        Some(_) => Some(seccomp::abort_trap()?),
        None => None,
    };
    timing.mark("boot info, sandbox");
    timing.print("lamina-spt");

    // From here the guest owns the memory and the descriptors: they must
    // outlive this function, which never returns.
    let (entry, stack) = (image.entry, mem_size - 8);
    mem.leak();
    let _ = (epoll.into_raw_fd(), timer.into_raw_fd());
    let _ = trace.map(IntoRawFd::into_raw_fd);
    std::mem::forget(devices);
    launch::default_signals();
    crate::fault::install(image.kernel_end, mem_size, core_file)
        .map_err(SetupError::FaultHandler)?;
    // The abort trap first: once the allowlist is on, no filter can be
    // added.
    if let Some(trap) = &abort_trap {
        seccomp::install(trap)?;
    }
    seccomp::install(&program)?;
    // What `jump` relies on, checked above: `entry` is inside guest memory
    // (Image::check; if it is not executable the guest dies by SIGSEGV,
    // hurting only itself), the stack top is mapped and the boot info is
    // complete.
    launch_guest(stack, entry, BOOT_INFO_BASE)
}

#[allow(unsafe_code)]
fn launch_guest(stack: u64, entry: u64, boot_info: u64) -> ! {
    // SAFETY: see the caller: entry is inside guest memory, stack is the
    // top of the guest mapping, boot_info is written. The guest runs with
    // the seccomp filter installed, so it can only hurt itself.
    unsafe { launch::jump(stack, entry, boot_info) }
}
