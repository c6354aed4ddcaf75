//! Guest faults, caught and explained by the tender.
//!
//! A Lamina guest takes no interrupts and installs no IDT, so without help
//! an exception (a page fault, `ud2`) has nowhere to go: the CPU escalates
//! to a double and then a triple fault, KVM reports a shutdown, and which
//! exception it was is lost. So the tender gives every vCPU an IDT of its
//! own before the first instruction: the 32 exception vectors' gates lead
//! to 32 consecutive `hlt` bytes, one per vector, in the (otherwise unused)
//! rest of the GDT's page, which the page tables map read-only and
//! executable for this. An exception pushes its frame (error code, RIP,
//! CS, RFLAGS, RSP, SS) on the guest's current stack and runs that
//! vector's `hlt`, which exits to the tender: the vector is where the
//! `hlt` was, the faulting registers are the frame's, every other register
//! is untouched (the stub is one instruction). KVM-PVM delivers events the
//! same way to a ring-3 guest kernel (/work/shared/PVM.md: gates with
//! selector 0x33, the frame on the current stack), so this works in both
//! CPU modes. A guest that loads its own IDT (Solo5's runtime does)
//! replaces this one and handles its exceptions itself.
//!
//! An exception whose frame cannot be pushed (the stack pointer itself is
//! bad) still ends in a triple fault; then the report has the registers
//! KVM kept (RIP at the faulting instruction) without the vector.
//!
//! # Guest debugging on KVM-PVM
//!
//! Found by experiment on this host (selftest image, KVM-PVM nested):
//! `KVM_SET_GUEST_DEBUG` is accepted with every flag, but does not work as
//! on VMX. With `KVM_GUESTDBG_SINGLESTEP` the trap is delivered into the
//! guest's IDT (vector 1's stub) before KVM reports `KVM_EXIT_DEBUG`, one
//! instruction late; with `KVM_GUESTDBG_USE_SW_BP` an `int3` is not
//! intercepted at all (it reaches vector 3's stub, frame RIP after the
//! `int3`); with `KVM_GUESTDBG_USE_HW_BP` and DR0 at the entry point the
//! breakpoint never fires. What does work is this IDT: an `int3` written
//! into guest text halts in vector 3's stub, and RFLAGS.TF set on entry
//! halts in vector 1's after each instruction (frame RIP the next one,
//! RFLAGS with TF); resuming is restoring RIP, RSP and RFLAGS from the
//! frame. But an exception's frame lands on the guest's stack below RSP,
//! over the red zone, so the debugger ([`crate::gdb`]) uses them only
//! where it must: its breakpoints and most steps are `hlt`s, which exit
//! without writing anything. Each stop is a VM exit, about 65 us here.

use crate::layout::GDT;
use kvm_bindings::{kvm_regs, kvm_sregs};
use lamina_tender::fault::{self, Report};
use lamina_tender::mem::{GuestFault, GuestMemory};

/// How many vectors the IDT covers: the architecture's exceptions.
pub const VECTORS: u64 = 32;
/// GPA of the IDT: in the GDT's page, after the GDT.
pub const IDT: u64 = GDT + 0x100;
/// IDTR limit.
pub const IDT_LIMIT: u16 = (VECTORS * 16 - 1) as u16;
/// GPA of the first `hlt` (vector 0's); vector N's is at `STUBS + N`.
pub const STUBS: u64 = IDT + VECTORS * 16;
/// The page holding the GDT, the IDT and the stubs.
pub const PAGE: u64 = GDT;
const _: () = assert!(STUBS + VECTORS <= PAGE + 0x1000, "all in one page");

/// A 64-bit interrupt gate, present, DPL 0 (interrupts stay off).
const INTERRUPT_GATE: u64 = 0x8e;
/// `hlt`.
const HLT: u8 = 0xf4;

/// Writes the IDT, its gates using `code_selector`, and the stubs.
pub fn write_idt(mem: &mut GuestMemory, code_selector: u16) -> Result<(), GuestFault> {
    for vector in 0..VECTORS {
        let handler = STUBS + vector;
        let low = (handler & 0xffff)
            | u64::from(code_selector) << 16
            | INTERRUPT_GATE << 40
            | ((handler >> 16) & 0xffff) << 48;
        let high = handler >> 32;
        mem.write(IDT + 16 * vector, &low)?;
        mem.write(IDT + 16 * vector + 8, &high)?;
    }
    mem.copy_in(STUBS, &[HLT; VECTORS as usize])
}

/// The vector whose stub the vCPU halted in, given the RIP after the
/// `hlt`; `None` for any other `hlt`.
pub fn vector_of_halt(rip: u64) -> Option<u8> {
    let at = rip.checked_sub(1)?;
    (STUBS..STUBS + VECTORS)
        .contains(&at)
        .then(|| (at - STUBS) as u8)
}

/// Whether the CPU pushes an error code for `vector`.
fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// A guest fault: what it was, and the guest's registers at the faulting
/// instruction.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The report: a line naming the fault and `rip=`, then the backtrace.
    pub report: String,
    /// The general registers at the fault (RIP, RSP and RFLAGS from the
    /// exception frame when there was one), for a core dump.
    pub regs: kvm_regs,
    /// The special registers (CR2 the faulting address of a page fault).
    pub sregs: kvm_sregs,
    /// The signal a process faulting so would get (for a core file).
    pub signal: i32,
    /// Bytes of the exception frame on the guest's stack (0 for no frame).
    pub frame_len: u64,
}

impl Fault {
    /// The guest aborted (`solo5_abort`, the end of a panic, whose message
    /// and backtrace the guest printed itself): its registers at the
    /// hypercall.
    pub fn abort(regs: &kvm_regs, sregs: &kvm_sregs) -> Fault {
        Fault {
            report: "guest aborted".into(),
            regs: *regs,
            sregs: *sregs,
            signal: libc::SIGABRT,
            frame_len: 0,
        }
    }
}

/// The signal Linux gives a process for exception `vector`.
fn signal_of(vector: u8) -> i32 {
    match vector {
        0 | 16 | 19 => libc::SIGFPE,
        1 | 3 => libc::SIGTRAP,
        6 => libc::SIGILL,
        17 => libc::SIGBUS,
        _ => libc::SIGSEGV,
    }
}

/// The fault for an exit in vector `vector`'s stub: reads the exception
/// frame at `regs.rsp` (every read checked) and restores the faulting
/// RIP, RSP and RFLAGS from it. A frame that cannot be read (it always
/// can: the CPU just wrote it) leaves the registers as they are.
pub fn exception(mem: &GuestMemory, vector: u8, regs: &kvm_regs, sregs: &kvm_sregs) -> Fault {
    let regs_at = regs.rsp;
    let mut at = regs.rsp;
    let error_code = has_error_code(vector).then(|| {
        let code = mem.read::<u64>(at).ok();
        at = at.wrapping_add(8);
        code.unwrap_or(0)
    });
    let mut regs = *regs;
    let frame: Option<[u64; 5]> = mem.read(at).ok();
    if let Some([rip, _cs, rflags, rsp, _ss]) = frame {
        regs.rip = rip;
        regs.rflags = rflags;
        regs.rsp = rsp;
    }
    let mut line = Report::new();
    fault::describe_exception(&mut line, vector, error_code, sregs.cr2, regs.rip);
    Fault {
        report: with_backtrace(mem, line, &regs),
        regs,
        sregs: *sregs,
        signal: signal_of(vector),
        frame_len: at.wrapping_add(40).wrapping_sub(regs_at),
    }
}

/// The fault for an exit that is not an exception the IDT caught (a
/// triple fault, an unexpected exit): `what` happened, at `regs.rip`.
pub fn other(mem: &GuestMemory, what: &str, regs: &kvm_regs, sregs: &kvm_sregs) -> Fault {
    let mut line = Report::new();
    line.text("guest fault: ")
        .text(what)
        .text(" at rip=")
        .hex(regs.rip);
    Fault {
        report: with_backtrace(mem, line, regs),
        regs: *regs,
        sregs: *sregs,
        signal: libc::SIGSEGV,
        frame_len: 0,
    }
}

/// `line`, a newline and the backtrace walked from `regs`' frame pointer.
fn with_backtrace(mem: &GuestMemory, mut line: Report, regs: &kvm_regs) -> String {
    let (low, high) = fault::stack_bounds(regs.rsp, mem.end());
    let frames = fault::walk(regs.rbp, low, high, |address| mem.read::<u64>(address).ok());
    let mut text = line.as_str().to_owned();
    line = Report::new();
    line.backtrace(&frames);
    if !frames.addresses().is_empty() {
        text.push('\n');
        text.push_str(line.as_str().trim_end());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idt_leads_each_vector_to_its_own_halt() {
        let mut mem = GuestMemory::anywhere(2 << 20).unwrap();
        write_idt(&mut mem, 0x33).unwrap();
        for vector in [0u64, 6, 14, 31] {
            let low: u64 = mem.read(IDT + 16 * vector).unwrap();
            let high: u64 = mem.read(IDT + 16 * vector + 8).unwrap();
            let offset = (low & 0xffff) | ((low >> 48) << 16) | (high << 32);
            assert_eq!(offset, STUBS + vector);
            assert_eq!((low >> 16) & 0xffff, 0x33);
            assert_eq!((low >> 40) & 0xff, 0x8e);
            assert_eq!(mem.read::<u8>(offset).unwrap(), HLT);
            assert_eq!(vector_of_halt(offset + 1), Some(vector as u8));
        }
        assert_eq!(vector_of_halt(STUBS), None);
        assert_eq!(vector_of_halt(STUBS + VECTORS + 1), None);
        assert_eq!(vector_of_halt(0), None);
    }

    #[test]
    fn a_page_fault_frame_is_explained_and_walked() {
        let mem = GuestMemory::anywhere(4 << 20).unwrap();
        let sp = 0x20_0000u64;
        // The frame the CPU pushed: error code 6 (write, not present), rip, cs, rflags, rsp, ss.
        for (i, word) in [6u64, 0x10_2a4c, 0x33, 0x202, 0x30_0000, 0x2b]
            .iter()
            .enumerate()
        {
            mem.write(sp + 8 * i as u64, word).unwrap();
        }
        // The guest's frames: rbp 0x300010 -> (0x300040, ret 0x102b6a) -> (0, ret 0x103000).
        mem.write(0x30_0010u64, &0x30_0040u64).unwrap();
        mem.write(0x30_0018u64, &0x10_2b6au64).unwrap();
        mem.write(0x30_0048u64, &0x10_3000u64).unwrap();
        let regs = kvm_regs {
            rsp: sp,
            rbp: 0x30_0010,
            rip: STUBS + 15,
            ..Default::default()
        };
        let sregs = kvm_sregs::default();
        let fault = exception(&mem, 14, &regs, &sregs);
        assert_eq!(
            fault.report,
            "guest fault: page fault (#PF) writing 0x0 (page not present) at rip=0x102a4c\n\
             lamina: backtrace: 0x102b6a 0x103000"
        );
        assert_eq!((fault.regs.rip, fault.regs.rsp), (0x10_2a4c, 0x30_0000));
        // A frame pointer of garbage: the report, no backtrace, no panic.
        let garbage = kvm_regs {
            rsp: u64::MAX - 8,
            rbp: u64::MAX,
            ..regs
        };
        let fault = exception(&mem, 6, &garbage, &sregs);
        assert!(fault
            .report
            .starts_with("guest fault: invalid opcode (#UD) at rip="));
        assert!(!fault.report.contains("backtrace"));
    }
}
