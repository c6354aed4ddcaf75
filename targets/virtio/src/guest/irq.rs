//! Interrupts, taken only while the guest idles: they end a `hlt`, and
//! nothing else. The runtime otherwise runs with interrupts off, which keeps
//! the red zone of the prebuilt `core` safe; the idle wait lowers the stack
//! pointer past the red zone for the few instructions where they are on.
//!
//! - An IDT: vectors 0-31 (CPU exceptions) report the exception and stop
//!   the unikernel; the timer and device vectors only acknowledge the
//!   local APIC; the spurious vector returns.
//! - The local APIC's timer, one-shot, calibrated against the TSC, bounds
//!   each wait by the executor's deadline.
//! - The I/O APIC routes the virtio-mmio devices' lines (edge-triggered:
//!   the park acknowledges each device before it halts, so that the
//!   device's next completion raises its line again); virtio-pci devices
//!   send MSI-X messages straight to the local APIC, same vector.
//! - The legacy 8259 PICs are masked.

use super::hw;
use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};

/// Vector of the local APIC timer.
const TIMER_VECTOR: u8 = 0x20;
/// Vector of every device line.
const DEVICE_VECTOR: u8 = 0x21;
/// Vector of spurious interrupts (low four bits set, as the APIC wants).
const SPURIOUS_VECTOR: u8 = 0xff;
/// The I/O APIC of the PC (and of QEMU's microvm and Firecracker).
const IOAPIC: usize = 0xfec0_0000;
/// IA32_APIC_BASE.
const APIC_BASE_MSR: u32 = 0x1b;

// Local APIC registers.
const ID: usize = 0x20;
const TPR: usize = 0x80;
const EOI: usize = 0xb0;
const SVR: usize = 0xf0;
const LVT_TIMER: usize = 0x320;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_ERROR: usize = 0x370;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;
/// LVT mask bit.
const MASKED: u32 = 1 << 16;

/// Address of the local APIC's EOI register, for the interrupt stubs.
#[unsafe(no_mangle)]
static mut LAMINA_LAPIC_EOI: u64 = 0xfee0_00b0;

// The stubs. Exceptions push their vector and call `fault`; the wake-up
// vectors write 0 to the EOI register and return, touching nothing but
// `rax`, which they save.
global_asm!(
    ".pushsection .text.lamina_irq, \"ax\"",
    ".p2align 4",
    "lamina_exception_stubs:",
    ".irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".p2align 4",
    "  push \\vector",
    "  jmp lamina_exception_common",
    ".endr",
    "lamina_exception_common:",
    "  pop rdi",
    "  and rsp, -16",
    "  call {fault}",
    "  ud2",
    ".p2align 4",
    "lamina_irq_wake:",
    "  push rax",
    "  mov rax, qword ptr [rip + LAMINA_LAPIC_EOI]",
    "  mov dword ptr [rax], 0",
    "  pop rax",
    "  iretq",
    ".p2align 4",
    "lamina_irq_spurious:",
    "  iretq",
    ".popsection",
    fault = sym fault,
);

unsafe extern "C" {
    static lamina_exception_stubs: u8;
    static lamina_irq_wake: u8;
    static lamina_irq_spurious: u8;
}

/// A CPU exception: the unikernel is broken; say which (and, for a page
/// fault, where) and stop. Nothing here allocates: the fault may have
/// struck inside the allocator, with its lock held.
extern "C" fn fault(vector: u64) -> ! {
    let mut line = [0u8; 96];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"lamina: CPU exception ");
    put(decimal(vector, &mut [0; 20]));
    if vector == 14 {
        let address: u64;
        // SAFETY: reading CR2 (the page-fault address) has no side effect.
        unsafe { asm!("mov {}, cr2", out(reg) address, options(nomem, nostack)) };
        put(b" (page fault at 0x");
        put(&hex(address));
        put(b")");
    }
    put(b": stopping\n");
    hw::uart_write(&line[..len]);
    hw::exit(lamina_abi::debug_exit::MAX_STATUS)
}

/// `value` in decimal, in the end of `buf`.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

/// `value` in 16 hexadecimal digits.
fn hex(value: u64) -> [u8; 16] {
    core::array::from_fn(|i| b"0123456789abcdef"[(value >> (60 - 4 * i)) as usize & 0xf])
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads IA32_APIC_BASE, which every x86-64 CPU with an APIC has;
    // no memory is touched.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    ((hi as u64) << 32) | lo as u64
}

/// The interrupt controllers, set up.
pub struct Interrupts {
    lapic: usize,
    /// Local APIC timer ticks per TSC-derived nanosecond, times 2^32.
    ticks_per_ns: u64,
}

impl Interrupts {
    fn lapic_read(&self, reg: usize) -> u32 {
        // SAFETY: `lapic` is the local APIC's page (from IA32_APIC_BASE,
        // inside the identity mapping: checked in `init`); `reg` is one of
        // the register offsets above.
        unsafe { read_volatile((self.lapic + reg) as *const u32) }
    }

    fn lapic_write(&self, reg: usize, value: u32) {
        // SAFETY: as for `lapic_read`; the APIC's registers are not memory
        // Rust owns.
        unsafe { write_volatile((self.lapic + reg) as *mut u32, value) }
    }

    /// Routes I/O APIC line `gsi` to the device vector; false if the I/O
    /// APIC has no such line.
    pub fn route(&self, gsi: u32) -> bool {
        let ioapic = |reg: u32, value: Option<u32>| -> u32 {
            // SAFETY: the I/O APIC's index and data registers at its fixed
            // address (identity-mapped): select, then read or write.
            unsafe {
                write_volatile(IOAPIC as *mut u32, reg);
                match value {
                    Some(v) => {
                        write_volatile((IOAPIC + 0x10) as *mut u32, v);
                        v
                    }
                    None => read_volatile((IOAPIC + 0x10) as *const u32),
                }
            }
        };
        let lines = ((ioapic(1, None) >> 16) & 0xff) + 1;
        if gsi >= lines {
            return false;
        }
        let apic_id = self.lapic_read(ID) >> 24;
        // Fixed delivery, physical destination, active high, edge, unmasked.
        ioapic(0x11 + 2 * gsi, Some(apic_id << 24));
        ioapic(0x10 + 2 * gsi, Some(DEVICE_VECTOR as u32));
        true
    }

    /// The MSI message that raises the device vector on this CPU's local
    /// APIC: address 0xFEE00000 with the APIC ID as destination (physical,
    /// fixed delivery), data the vector (edge).
    pub fn msi_message(&self) -> (u64, u32) {
        let apic_id = (self.lapic_read(ID) >> 24) as u64;
        (0xfee0_0000 | apic_id << 12, DEVICE_VECTOR as u32)
    }

    /// Halts until an interrupt: a device's, or the timer's after `ns`
    /// nanoseconds.
    pub fn halt_for(&self, ns: u64) {
        let ticks = ((ns as u128 * self.ticks_per_ns as u128) >> 32).clamp(1, u32::MAX as u128);
        self.lapic_write(TIMER_INITIAL, ticks as u32);
        // SAFETY: interrupts are enabled only between `sti` and `cli`, with
        // the stack pointer moved past the red zone so that the interrupt
        // frame cannot overwrite it; `sti` delays interrupts until `hlt`
        // has started, so a wake-up cannot be lost between them. The
        // handlers preserve every register.
        unsafe {
            asm!(
                "sub rsp, 128",
                "sti",
                "hlt",
                "cli",
                "add rsp, 128",
                options(nomem)
            );
        }
        self.lapic_write(TIMER_INITIAL, 0);
    }
}

/// Builds an IDT entry: an interrupt gate to `handler` in the code segment.
fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (0x08 << 16) // selector: the 64-bit code segment
        | (0x8e00 << 32) // present, DPL 0, interrupt gate
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// The interrupt descriptor table, in .bss: filled once by [`install_idt`].
static mut IDT: [[u64; 2]; 256] = [[0; 2]; 256];

/// Loads the IDT: CPU exceptions report and stop the unikernel, the timer
/// and device vectors wake it, the spurious vector returns. Called first
/// thing at boot, so that a fault is reported from the start instead of
/// resetting the machine (interrupts stay off; [`init`] sets up the rest).
pub fn install_idt() {
    let stubs = (&raw const lamina_exception_stubs) as u64;
    let mut idt = [[0u64; 2]; 256];
    for (vector, entry) in idt.iter_mut().enumerate().take(32) {
        *entry = gate(stubs + 16 * vector as u64);
    }
    idt[TIMER_VECTOR as usize] = gate((&raw const lamina_irq_wake) as u64);
    idt[DEVICE_VECTOR as usize] = gate((&raw const lamina_irq_wake) as u64);
    idt[SPURIOUS_VECTOR as usize] = gate((&raw const lamina_irq_spurious) as u64);
    // SAFETY: runs once, at boot, on the only CPU, before anything reads the
    // table (it is not loaded yet), with interrupts off; a raw write, no
    // reference to the static.
    unsafe { (&raw mut IDT).write(idt) };
    let mut pointer = [0u8; 10];
    pointer[..2].copy_from_slice(&(256u16 * 16 - 1).to_le_bytes());
    pointer[2..].copy_from_slice(&((&raw const IDT) as u64).to_le_bytes());
    // SAFETY: the table is a static, so it lives forever; its gates point at
    // the stubs above. Interrupts stay off.
    unsafe { asm!("lidt [{}]", in(reg) pointer.as_ptr(), options(readonly, nostack)) };
}

/// Masks the PICs, enables the local APIC and calibrates its timer (the
/// IDT is loaded at boot). `None` if the local APIC is not where it can be
/// reached.
pub fn init() -> Option<Interrupts> {
    let apic_base = rdmsr(APIC_BASE_MSR);
    let lapic = (apic_base & 0xf_ffff_f000) as usize;
    if apic_base & (1 << 11) == 0 || lapic as u64 >= super::boot::MAPPED {
        return None;
    }
    // SAFETY: `LAMINA_LAPIC_EOI` is written here, once, before the first
    // interrupt can read it (interrupts are off until `halt_for`).
    unsafe { (&raw mut LAMINA_LAPIC_EOI).write((lapic + EOI) as u64) };
    // Mask both 8259s: their lines (the PIT's, among them) stay quiet.
    hw::outb(0x21, 0xff);
    hw::outb(0xa1, 0xff);
    let mut apic = Interrupts {
        lapic,
        ticks_per_ns: 0,
    };
    apic.lapic_write(SVR, 0x100 | SPURIOUS_VECTOR as u32);
    apic.lapic_write(TPR, 0);
    for lvt in [LVT_LINT0, LVT_LINT1, LVT_ERROR] {
        apic.lapic_write(lvt, MASKED);
    }
    apic.lapic_write(TIMER_DIVIDE, 0b1011); // divide by 1
    apic.lapic_write(LVT_TIMER, MASKED | TIMER_VECTOR as u32);
    // Count the timer down for 1 ms of TSC time.
    apic.lapic_write(TIMER_INITIAL, u32::MAX);
    let start = hw::monotonic_ns();
    while hw::monotonic_ns() - start < 1_000_000 {
        core::hint::spin_loop();
    }
    let elapsed = hw::monotonic_ns() - start;
    let ticks = u32::MAX - apic.lapic_read(TIMER_CURRENT);
    apic.lapic_write(TIMER_INITIAL, 0);
    if ticks == 0 {
        return None; // a timer that does not count cannot wake us
    }
    apic.ticks_per_ns = ((ticks as u128) << 32)
        .checked_div(elapsed as u128)
        .unwrap_or(1 << 32)
        .clamp(1, u64::MAX as u128) as u64;
    apic.lapic_write(LVT_TIMER, TIMER_VECTOR as u32); // one-shot, unmasked
    Some(apic)
}
