//! `--gdb=PORT`: a GDB remote-protocol server (the `gdbstub` crate) on
//! 127.0.0.1:PORT, serving the guest stopped before its first instruction.
//!
//! On KVM-PVM the kernel's own guest debugging does not work (see
//! [`crate::fault`]), and an exception (an `int3`, a TF trap) pushes its
//! frame on the guest's stack just below RSP: over the red zone, where a
//! leaf function keeps its locals (found by this module's test: the
//! argument it printed after a step was zeroed). So breakpoints and most
//! steps take no exception. A breakpoint is a `hlt` written into the guest's text (whose
//! host mapping is made writable for this; the guest's own page tables
//! keep it read-only): it exits to the tender and writes nothing. A single
//! step decodes the instruction at RIP (`iced-x86`) and puts a `hlt` at
//! every place it can go next: the next instruction, a direct branch's
//! target, a return's address on the stack; they come out at the stop. An
//! indirect jump or call (whose target takes the operand's evaluation) is
//! stepped with RFLAGS.TF through the exception stubs instead, and the
//! stack bytes its frame overwrote are put back from a copy taken before;
//! such an instruction stores nothing below RSP, so the copy is exact.
//!
//! The vCPU runs on this thread between stops, its hypercalls served as
//! without gdb; after each exit the connection is peeked, so a Ctrl-C
//! from gdb stops the guest at its next exit. An idle guest exits at each
//! POLL, which the connection's data also wakes; a guest computing
//! without any exit is brought out of `KVM_RUN` by a timer signal
//! ([`interrupt_every`], 20 times a second, only with `--gdb`). The connection is accepted before the
//! sandbox, which then also allows reading and writing it. Without
//! `--gdb` none of this exists: the run loop and the filter are as before.

use crate::fault::{self, VECTORS};
use crate::guest::GuestError;
use crate::hypercall::{Hypercalls, Next};
use crate::kvm::Machine;
use crate::stop::Stop;
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};
use kvm_ioctls::VcpuExit;
use lamina_tender::mem::GuestMemory;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::{TcpListener, TcpStream};

/// `hlt`: a breakpoint.
const HLT: u8 = 0xf4;
/// The stack bytes copied before a step: below RSP (where the exception
/// frame goes) and a little above (for an instruction that pops).
const STEP_BELOW: u64 = 256;
const STEP_ABOVE: u64 = 64;
/// RFLAGS.TF.
const TRAP_FLAG: u64 = 1 << 8;
/// The vector of a single step's trap.
const DEBUG: u8 = 1;

/// Waits for gdb on 127.0.0.1:`port` and returns its connection.
pub fn accept(port: u16) -> std::io::Result<TcpStream> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("lamina-hvt: waiting for gdb on 127.0.0.1:{port} (target remote :{port})");
    let (stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The signal of [`interrupt_every`]'s timer.
const INTERRUPT_SIGNAL: libc::c_int = libc::SIGALRM;

/// Makes `KVM_RUN` on this thread return every `period`, so that the run
/// loop looks at gdb's connection even while the guest computes without
/// an exit: a timer (`timer_create`, before the sandbox) sends this
/// thread SIGALRM, whose handler does nothing; the signal alone ends
/// `KVM_RUN` with EINTR, which the loop goes on from.
#[allow(unsafe_code)]
pub fn interrupt_every(period: std::time::Duration) -> std::io::Result<()> {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a zeroed sigaction is valid; the handler does nothing, so
    // it is async-signal-safe. No SA_RESTART: a blocking call returns.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = nothing as *const () as usize;
    // SAFETY: installs the handler above for a signal nothing else uses.
    if unsafe { libc::sigaction(INTERRUPT_SIGNAL, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed sigevent is valid; the fields are set below.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = INTERRUPT_SIGNAL;
    // SAFETY: gettid has no arguments.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: the kernel reads `event` and writes `timer`, both live.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let interval = libc::timespec {
        tv_sec: period.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(period.subsec_nanos() as i32),
    };
    let spec = libc::itimerspec {
        it_interval: interval,
        it_value: interval,
    };
    // SAFETY: arms the timer just made; the kernel reads `spec`.
    if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How the guest is to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// The guest as gdb sees it.
struct Debuggee<'a> {
    machine: &'a mut Machine,
    mem: &'a GuestMemory,
    hypercalls: &'a mut Hypercalls,
    stop: &'a Stop,
    /// Breakpoint addresses and the bytes the `int3`s replaced.
    breakpoints: BTreeMap<u64, u8>,
    resume: Resume,
    /// Before a step with TF: the address and bytes of the stack around RSP.
    stack_copy: Option<(u64, Vec<u8>)>,
    /// During a step with `hlt`s: where they are and the bytes they replaced.
    step_halts: Vec<(u64, u8)>,
    /// How the guest ended, once it has.
    ended: Option<Result<i32, GuestError>>,
}

/// Why running the guest stopped.
enum Ran {
    /// gdb sent something.
    Incoming,
    /// A stop to report.
    Stopped(SingleThreadStopReason<u64>),
}

impl Debuggee<'_> {
    /// Runs the vCPU until a breakpoint, the end of a step, the guest's
    /// end, or data from gdb (`pending` says whether there is some).
    fn run(&mut self, pending: impl FnMut() -> bool) -> Result<Ran, GuestError> {
        let ran = self.run_inner(pending);
        // A step's hlts never outlive it (nor a Ctrl-C or an end during it).
        for (at, byte) in std::mem::take(&mut self.step_halts) {
            let _ = self.mem.copy_in(at, &[byte]);
        }
        ran
    }

    /// Where the instruction at `rip` can go next, when that is known
    /// without evaluating an operand.
    fn next_places(&self, rip: u64, rsp: u64) -> Option<Vec<u64>> {
        let mut code = [0u8; 15];
        let mut len = 0;
        while len < code.len() {
            match self.mem.read::<u8>(rip.checked_add(len as u64)?) {
                Ok(byte) => code[len] = byte,
                Err(_) => break,
            }
            len += 1;
        }
        for (&at, &byte) in self.breakpoints.range(rip..rip.saturating_add(len as u64)) {
            code[(at - rip) as usize] = byte;
        }
        let instruction = Decoder::with_ip(64, &code[..len], rip, DecoderOptions::NONE).decode();
        if instruction.is_invalid() {
            return None;
        }
        let next = instruction.next_ip();
        let direct = matches!(
            instruction.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        match instruction.flow_control() {
            FlowControl::Next => Some(vec![next]),
            FlowControl::ConditionalBranch if direct => {
                Some(vec![next, instruction.near_branch_target()])
            }
            FlowControl::UnconditionalBranch | FlowControl::Call if direct => {
                Some(vec![instruction.near_branch_target()])
            }
            FlowControl::Return => self.mem.read::<u64>(rsp).ok().map(|to| vec![to]),
            _ => None,
        }
    }

    fn run_inner(&mut self, mut pending: impl FnMut() -> bool) -> Result<Ran, GuestError> {
        let mut regs = self.machine.vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
        self.stack_copy = None;
        let places = match self.resume {
            Resume::Step => self.next_places(regs.rip, regs.rsp),
            Resume::Continue => None,
        };
        if let Some(places) = places {
            for at in places {
                if self.step_halts.iter().any(|&(a, _)| a == at) {
                    continue;
                }
                let original = self
                    .breakpoints
                    .get(&at)
                    .copied()
                    .or_else(|| self.mem.read(at).ok());
                if let Some(byte) = original {
                    if self.mem.copy_in(at, &[HLT]).is_ok() {
                        self.step_halts.push((at, byte));
                    }
                }
            }
        } else if self.resume == Resume::Step {
            let from = regs.rsp.wrapping_sub(STEP_BELOW);
            let mut copy = vec![0; (STEP_BELOW + STEP_ABOVE) as usize];
            if let Ok(bytes) = self.mem.bytes(from, copy.len() as u64) {
                bytes.copy_to(&mut copy);
                self.stack_copy = Some((from, copy));
            }
            regs.rflags |= TRAP_FLAG;
            self.machine
                .vcpu
                .set_regs(&regs)
                .map_err(kvm("KVM_SET_REGS"))?;
        }
        loop {
            if let Some(signal) = self.stop.signal() {
                return Err(GuestError::Stopped { signal });
            }
            let exit = self.machine.vcpu.run();
            match exit {
                Ok(VcpuExit::IoOut(port, data)) => {
                    match self.hypercalls.dispatch(self.mem, port, data)? {
                        Next::Resume => {}
                        Next::Halt(status) => {
                            self.ended = Some(Ok(status));
                            return Ok(Ran::Stopped(SingleThreadStopReason::Exited(status as u8)));
                        }
                    }
                }
                Ok(VcpuExit::Hlt) => return self.halted(),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Ok(other) => {
                    let what = format!("KVM: unexpected exit {other:?}");
                    return self.faulted(&what);
                }
                Err(e) => return self.faulted(&format!("KVM_RUN failed: {e}")),
            }
            if pending() {
                return Ok(Ran::Incoming);
            }
        }
    }

    /// The vCPU halted: in an exception stub (a breakpoint, a step, a
    /// fault), or the guest's own `hlt`.
    fn halted(&mut self) -> Result<Ran, GuestError> {
        let mut regs = self.machine.vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
        let at = regs.rip.wrapping_sub(1);
        if self.step_halts.iter().any(|&(a, _)| a == at) {
            regs.rip = at;
            self.machine
                .vcpu
                .set_regs(&regs)
                .map_err(kvm("KVM_SET_REGS"))?;
            return Ok(Ran::Stopped(SingleThreadStopReason::DoneStep));
        }
        if self.breakpoints.contains_key(&at) {
            // Back onto the breakpoint, which gdb takes out before going on.
            regs.rip = at;
            self.machine
                .vcpu
                .set_regs(&regs)
                .map_err(kvm("KVM_SET_REGS"))?;
            return Ok(Ran::Stopped(SingleThreadStopReason::SwBreak(())));
        }
        let sregs = self
            .machine
            .vcpu
            .get_sregs()
            .map_err(kvm("KVM_GET_SREGS"))?;
        let Some(vector) = fault::vector_of_halt(regs.rip) else {
            return self.faulted("guest executed hlt with interrupts off");
        };
        let exception = fault::exception(self.mem, vector, &regs, &sregs);
        let mut at = exception.regs;
        at.rflags &= !TRAP_FLAG;
        let reason = match vector {
            DEBUG if self.resume == Resume::Step => {
                self.restore_stack(regs.rsp, exception.frame_len);
                SingleThreadStopReason::DoneStep
            }
            _ => {
                eprintln!("lamina-hvt: {}", exception.report);
                SingleThreadStopReason::Signal(Signal(exception.signal as u8))
            }
        };
        self.machine
            .vcpu
            .set_regs(&at)
            .map_err(kvm("KVM_SET_REGS"))?;
        Ok(Ran::Stopped(reason))
    }

    /// Puts back the `len` bytes at `frame` (the exception frame the step
    /// pushed) from the copy taken before the step, where it has them.
    fn restore_stack(&mut self, frame: u64, len: u64) {
        let Some((from, copy)) = self.stack_copy.take() else {
            return;
        };
        for address in frame..frame.saturating_add(len) {
            if let Some(&byte) = address
                .checked_sub(from)
                .and_then(|i| copy.get(usize::try_from(i).ok()?))
            {
                let _ = self.mem.copy_in(address, &[byte]);
            }
        }
    }

    /// The guest cannot go on: reported to gdb as its end by SIGSEGV.
    fn faulted(&mut self, what: &str) -> Result<Ran, GuestError> {
        let regs = self.machine.vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
        let sregs = self
            .machine
            .vcpu
            .get_sregs()
            .map_err(kvm("KVM_GET_SREGS"))?;
        let fault = fault::other(self.mem, what, &regs, &sregs);
        self.ended = Some(Err(GuestError::Fault(Box::new(fault))));
        Ok(Ran::Stopped(SingleThreadStopReason::Terminated(
            Signal::SIGSEGV,
        )))
    }
}

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> GuestError {
    move |error| GuestError::Exit {
        what: format!("{what} failed: {error}"),
        rip: 0,
    }
}

impl Target for Debuggee<'_> {
    type Arch = X86_64_SSE;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Debuggee<'_> {
    fn read_registers(&mut self, out: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let vcpu = &self.machine.vcpu;
        let regs = vcpu
            .get_regs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        let sregs = vcpu
            .get_sregs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        out.regs = [
            regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp, regs.rsp,
            regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
        ];
        out.rip = regs.rip;
        out.eflags = regs.rflags as u32;
        out.segments.cs = u32::from(sregs.cs.selector);
        out.segments.ss = u32::from(sregs.ss.selector);
        out.segments.ds = u32::from(sregs.ds.selector);
        out.segments.es = u32::from(sregs.es.selector);
        out.segments.fs = u32::from(sregs.fs.selector);
        out.segments.gs = u32::from(sregs.gs.selector);
        if let Ok(fpu) = vcpu.get_fpu() {
            for (xmm, bytes) in out.xmm.iter_mut().zip(fpu.xmm.iter()) {
                *xmm = u128::from_le_bytes(*bytes);
            }
            out.mxcsr = fpu.mxcsr;
            out.fpu.fctrl = u32::from(fpu.fcw);
            out.fpu.fstat = u32::from(fpu.fsw);
            out.fpu.ftag = u32::from(fpu.ftwx);
            for (st, bytes) in out.st.iter_mut().zip(fpu.fpr.iter()) {
                st.copy_from_slice(&bytes[..10]);
            }
        }
        Ok(())
    }

    fn write_registers(&mut self, new: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let vcpu = &self.machine.vcpu;
        let mut regs = vcpu
            .get_regs()
            .map_err(|e| TargetError::Fatal(e.to_string()))?;
        let r = &new.regs;
        (regs.rax, regs.rbx, regs.rcx, regs.rdx) = (r[0], r[1], r[2], r[3]);
        (regs.rsi, regs.rdi, regs.rbp, regs.rsp) = (r[4], r[5], r[6], r[7]);
        (regs.r8, regs.r9, regs.r10, regs.r11) = (r[8], r[9], r[10], r[11]);
        (regs.r12, regs.r13, regs.r14, regs.r15) = (r[12], r[13], r[14], r[15]);
        regs.rip = new.rip;
        // The flags gdb may change: the arithmetic ones and direction.
        const USER_FLAGS: u64 = 0xcd5;
        regs.rflags = (regs.rflags & !USER_FLAGS) | (u64::from(new.eflags) & USER_FLAGS);
        vcpu.set_regs(&regs)
            .map_err(|e| TargetError::Fatal(e.to_string()))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        // Through the checked path; a range gdb asks for past the end is
        // read as far as it goes.
        let mut done = 0;
        while done < data.len() {
            let chunk = (data.len() - done).min(4096);
            let Some(address) = start.checked_add(done as u64) else {
                break;
            };
            let Ok(bytes) = self.mem.bytes(address, chunk as u64) else {
                break;
            };
            bytes.copy_to(&mut data[done..done + chunk]);
            done += chunk;
        }
        // gdb shows its own breakpoints as the bytes they replaced.
        for (&at, &byte) in self
            .breakpoints
            .range(start..start.saturating_add(done as u64))
        {
            data[(at - start) as usize] = byte;
        }
        if done == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        self.mem
            .copy_in(start, data)
            .map_err(|_| TargetError::NonFatal)
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Debuggee<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Debuggee<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Step;
        Ok(())
    }
}

impl Breakpoints for Debuggee<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Debuggee<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        let Ok(byte) = self.mem.read::<u8>(addr) else {
            return Ok(false);
        };
        if self.mem.copy_in(addr, &[HLT]).is_err() {
            return Ok(false);
        }
        self.breakpoints.insert(addr, byte);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(byte) = self.breakpoints.remove(&addr) else {
            return Ok(false);
        };
        Ok(self.mem.copy_in(addr, &[byte]).is_ok())
    }
}

/// The event loop: runs the guest until it stops or gdb speaks.
struct EventLoop<'a>(PhantomData<&'a ()>);

impl<'a> run_blocking::BlockingEventLoop for EventLoop<'a> {
    type Target = Debuggee<'a>;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut Debuggee<'a>,
        conn: &mut TcpStream,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<String, std::io::Error>,
    > {
        let ran = {
            let conn = &mut *conn;
            target.run(|| conn.peek().map(|b| b.is_some()).unwrap_or(true))
        };
        match ran {
            Ok(Ran::Incoming) => {
                let byte = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                Ok(run_blocking::Event::IncomingData(byte))
            }
            Ok(Ran::Stopped(reason)) => Ok(run_blocking::Event::TargetStopped(reason)),
            Err(error) => {
                let message = error.to_string();
                target.ended = Some(Err(error));
                Err(run_blocking::WaitForStopReasonError::Target(message))
            }
        }
    }

    fn on_interrupt(_target: &mut Debuggee<'a>) -> Result<Option<Self::StopReason>, String> {
        // The guest is stopped whenever this thread is not in `run`.
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Serves gdb on `conn` until the guest ends or gdb goes; then, if gdb
/// left the guest running (`detach`), runs it to its end without gdb.
pub fn serve(
    conn: TcpStream,
    machine: &mut Machine,
    mem: &GuestMemory,
    hypercalls: &mut Hypercalls,
    stop: &Stop,
    run_without: impl FnOnce(&mut Machine, &mut Hypercalls) -> Result<i32, GuestError>,
) -> Result<i32, GuestError> {
    // Disarmed before the caller unmaps kvm_run (as in the run loop).
    let _armed = stop.arm(&mut machine.vcpu.get_kvm_run().immediate_exit);
    let mut target = Debuggee {
        machine,
        mem,
        hypercalls,
        stop,
        breakpoints: BTreeMap::new(),
        resume: Resume::Continue,
        stack_copy: None,
        step_halts: Vec::new(),
        ended: None,
    };
    let outcome = GdbStub::new(conn).run_blocking::<EventLoop<'_>>(&mut target);
    // Breakpoints left in (a detach, a lost connection) are taken out.
    for (&at, &byte) in &target.breakpoints {
        let _ = mem.copy_in(at, &[byte]);
    }
    if let Some(ended) = target.ended.take() {
        return ended;
    }
    match outcome {
        Ok(DisconnectReason::Kill) => Err(GuestError::Stopped {
            signal: libc::SIGKILL,
        }),
        Ok(_) | Err(_) => {
            let regs = target.machine.vcpu.get_regs();
            if let Ok(mut regs) = regs {
                regs.rflags &= !TRAP_FLAG;
                let _ = target.machine.vcpu.set_regs(&regs);
            }
            eprintln!("lamina-hvt: gdb left; the guest runs on");
            run_without(target.machine, target.hypercalls)
        }
    }
}

// The vector has a stub.
const _: () = assert!((DEBUG as u64) < VECTORS);
