//! The KVM side: the VM, its memory slot, the vCPU and its start state,
//! KVM-PVM detection. The only `unsafe` of the hvt tender is the memory
//! slot, here.

use crate::cpuid_cache;
use crate::layout::{CpuMode, CpuState, GDT, GDT_LIMIT, PML4};
use kvm_bindings::{
    kvm_fpu, kvm_ioeventfd, kvm_ioeventfd_flag_nr_pio, kvm_msr_entry, kvm_regs, kvm_segment,
    kvm_userspace_memory_region, CpuId, Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use lamina_tender::mem::GuestMemory;
use std::os::fd::{AsRawFd, RawFd};
use thiserror::Error;

/// KVM-PVM control MSR: bit 0 = "this ring-3 code is the guest kernel".
const MSR_PVM_CTL: u32 = 0x4b56_4d10;
/// KVM-PVM identification MSR, which reads "PVM" there.
const MSR_PVM_ID: u32 = 0x4b56_4d11;
const PVM_ID: u64 = 0x4d_5650;

/// A KVM call that failed.
#[derive(Debug, Error)]
pub enum KvmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}; is KVM available and are you allowed to use it?")]
    Open(kvm_ioctls::Error),
    /// An ioctl failed.
    #[error("KVM: {what} failed: {error}")]
    Ioctl {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: kvm_ioctls::Error,
    },
    /// The PVM control MSR was refused.
    #[error("KVM-PVM refused its control MSR {MSR_PVM_CTL:#x}; this host's PVM is not the one this tender knows")]
    PvmMsr,
}

fn ioctl<T>(what: &'static str, result: Result<T, kvm_ioctls::Error>) -> Result<T, KvmError> {
    result.map_err(|error| KvmError::Ioctl { what, error })
}

/// The VM and its one vCPU.
pub struct Machine {
    /// /dev/kvm.
    pub kvm: Kvm,
    /// The VM (kept open for the vCPU's lifetime).
    vm: VmFd,
    /// Its vCPU.
    pub vcpu: VcpuFd,
    /// Whether the host is KVM-PVM.
    pub pvm: bool,
}

impl Machine {
    /// Creates the VM with `mem` as its RAM (slot 0 at GPA 0) and one vCPU.
    pub fn new(mem: &GuestMemory) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let vm = ioctl("KVM_CREATE_VM", kvm.create_vm())?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem.end(),
            userspace_addr: mem.host_address(),
        };
        // SAFETY: the region is guest memory's own mapping, of exactly this
        // size; the caller keeps `mem` alive as long as the VM (the run loop
        // owns both), and the tender only accesses it through GuestMemory.
        ioctl("KVM_SET_USER_MEMORY_REGION", unsafe {
            vm.set_user_memory_region(region)
        })?;
        let vcpu = ioctl("KVM_CREATE_VCPU", vm.create_vcpu(0))?;
        let pvm = is_pvm(&vcpu);
        Ok(Machine { kvm, vm, vcpu, pvm })
    }

    /// `KVM_GET_SUPPORTED_CPUID`, from the cache when it is valid.
    pub fn supported_cpuid(&self) -> Result<CpuId, KvmError> {
        if let Some(entries) = cpuid_cache::load() {
            if let Ok(cpuid) = CpuId::from_entries(&entries) {
                return Ok(cpuid);
            }
        }
        let cpuid = ioctl(
            "KVM_GET_SUPPORTED_CPUID",
            self.kvm
                .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES),
        )?;
        cpuid_cache::store(cpuid.as_slice());
        Ok(cpuid)
    }

    /// The suberror of a `KVM_EXIT_INTERNAL_ERROR` exit, just returned.
    pub fn internal_error_suberror(&mut self) -> u32 {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR,
        // so `internal` is the union member the kernel filled; it is plain data.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    }

    /// TSC frequency in Hz.
    pub fn tsc_hz(&self) -> Result<u64, KvmError> {
        Ok(u64::from(ioctl("KVM_GET_TSC_KHZ", self.vcpu.get_tsc_khz())?) * 1000)
    }

    /// Makes a 32-bit `out` to `port` signal `eventfd` inside the kernel
    /// (KVM_IOEVENTFD, any value): the guest's ring kick, which costs no
    /// exit to the tender.
    pub fn register_kick(&self, port: u16, eventfd: RawFd) -> std::io::Result<()> {
        // _IOW(KVMIO, 0x79, struct kvm_ioeventfd)
        const KVM_IOEVENTFD: libc::c_ulong = 0x4040_ae79;
        let request = kvm_ioeventfd {
            datamatch: 0,
            addr: u64::from(port),
            len: 4,
            fd: eventfd,
            flags: 1 << kvm_ioeventfd_flag_nr_pio,
            ..Default::default()
        };
        // SAFETY: KVM reads the struct, which lives for the call; the
        // eventfd stays open as long as the VM (the caller's ring owns it
        // and is stopped before the machine is dropped, and KVM holds its
        // own reference anyway).
        let rc = unsafe { libc::ioctl(self.vm.as_raw_fd(), KVM_IOEVENTFD, &request) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sets the vCPU up to enter at `entry` with `%rdi = arg` and the
    /// stack at `stack`, in `mode`.
    pub fn start_vcpu(
        &self,
        cpuid: &CpuId,
        mode: CpuMode,
        state: CpuState,
        entry: u64,
        stack: u64,
        arg: u64,
    ) -> Result<(), KvmError> {
        let vcpu = &self.vcpu;
        ioctl("KVM_SET_CPUID2", vcpu.set_cpuid2(cpuid))?;
        let mut sregs = ioctl("KVM_GET_SREGS", vcpu.get_sregs())?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: state.cs,
            type_: if mode == CpuMode::PvmNative { 11 } else { 9 },
            present: 1,
            dpl: state.dpl,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: state.ds,
            type_: 3,
            db: 1,
            l: 0,
            ..code
        };
        (sregs.cs, sregs.ss, sregs.ds, sregs.es, sregs.fs, sregs.gs) =
            (code, data, data, data, data, data);
        sregs.gdt.base = GDT;
        sregs.gdt.limit = GDT_LIMIT;
        // Exceptions halt in the tender's stubs, which say which one it was.
        sregs.idt.base = crate::fault::IDT;
        sregs.idt.limit = crate::fault::IDT_LIMIT;
        if mode == CpuMode::Solo5 {
            // Solo5's hvt: a busy 64-bit TSS descriptor, no LDT.
            sregs.tr = kvm_segment {
                type_: 11,
                present: 1,
                ..Default::default()
            };
            sregs.ldt = kvm_segment {
                unusable: 1,
                ..Default::default()
            };
        } else {
            sregs.ldt = kvm_segment::default();
        }
        sregs.cr0 = state.cr0;
        sregs.cr3 = PML4;
        sregs.cr4 = state.cr4;
        sregs.efer = state.efer;
        ioctl("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
        if mode == CpuMode::PvmNative {
            let fpu = kvm_fpu {
                fcw: 0x37f,
                mxcsr: 0x1f80,
                ..Default::default()
            };
            ioctl("KVM_SET_FPU", vcpu.set_fpu(&fpu))?;
            let msrs = Msrs::from_entries(&[kvm_msr_entry {
                index: MSR_PVM_CTL,
                data: 1,
                ..Default::default()
            }])
            .map_err(|_| KvmError::PvmMsr)?;
            if ioctl("KVM_SET_MSRS", vcpu.set_msrs(&msrs))? != 1 {
                return Err(KvmError::PvmMsr);
            }
        }
        // Every other register starts at zero, not read back first (one
        // vCPU ioctl less, each about 10 us nested): the reset values differ
        // only in %rdx, the CPU's signature, which no guest reads.
        let regs = kvm_regs {
            rip: entry,
            rsp: stack,
            rdi: arg,
            rflags: state.rflags,
            ..Default::default()
        };
        ioctl("KVM_SET_REGS", vcpu.set_regs(&regs))
    }
}

/// Whether this KVM is KVM-PVM: its identification MSR reads "PVM".
fn is_pvm(vcpu: &VcpuFd) -> bool {
    let Ok(mut msrs) = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_PVM_ID,
        ..Default::default()
    }]) else {
        return false;
    };
    matches!(vcpu.get_msrs(&mut msrs), Ok(1)) && msrs.as_slice()[0].data == PVM_ID
}
