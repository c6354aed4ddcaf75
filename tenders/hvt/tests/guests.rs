//! lamina-hvt against hand-assembled guests: hypercalls, the native
//! KVM-PVM mode, the sealed layout and malformed hypercalls. Needs
//! /dev/kvm; without it each test says what it skipped (under CI, fails).

use lamina_abi::mft::DeviceType;
use lamina_abi::note::{features, AbiTarget};
use lamina_tender::elf::{PF_R, PF_W, PF_X};
use lamina_tender::elf_writer::ElfWriter;
use std::path::PathBuf;
use std::process::{Command, Output};

const TEXT: u64 = 0x100000;
/// A read-write page for hypercall structs.
const DATA: u64 = 0x101000;

/// x86_64 machine code, assembled by hand.
mod asm {
    pub fn mov_eax(v: u32) -> Vec<u8> {
        [&[0xb8][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_edx(v: u32) -> Vec<u8> {
        [&[0xba][..], &v.to_le_bytes()].concat()
    }
    /// outl %eax, %dx: a hypercall.
    pub const OUT: [u8; 1] = [0xef];
    /// xorps %xmm0, %xmm0: SSE, which KVM's emulator cannot run.
    pub const XORPS: [u8; 3] = [0x0f, 0x57, 0xc0];
    /// mov %cr4, %rax.
    pub const READ_CR4: [u8; 3] = [0x0f, 0x20, 0xe0];
    /// lea rax, [rip]; mov byte [rax], 0: a write to the code itself.
    pub const WRITE_OWN_TEXT: [u8; 10] = [0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc6, 0x00, 0x00];
    /// inl %dx, %eax.
    pub const IN: [u8; 1] = [0xed];
}

/// outl(port, gpa).
fn hypercall(port: u32, gpa: u32) -> Vec<u8> {
    [asm::mov_edx(port), asm::mov_eax(gpa), asm::OUT.to_vec()].concat()
}

/// Halt with the HcHalt at DATA (status in the data page).
fn halt() -> Vec<u8> {
    hypercall(0x508, DATA as u32)
}

/// An hvt image: `code` at 1 MiB, `data` (hypercall structs) at DATA.
fn image(code: &[u8], data: &[u8], lamina_features: Option<u32>) -> ElfWriter {
    let writer = ElfWriter::new(TEXT)
        .load(TEXT, PF_R | PF_X, code, 0x1000)
        .load(DATA, PF_R | PF_W, data, 0x1000)
        .abi_note(AbiTarget::Hvt)
        .manifest_note(&[]);
    match lamina_features {
        Some(bits) => writer.lamina_note(bits),
        None => writer,
    }
}

/// HcHalt { cookie: 0, exit_status }, then `rest`.
fn halt_struct(status: i32, rest: &[u8]) -> Vec<u8> {
    let mut data = vec![0u8; 16];
    data[8..12].copy_from_slice(&status.to_le_bytes());
    data.extend_from_slice(rest);
    data
}

/// Whether /dev/kvm opens; if not, the test is skipped or, under CI,
/// fails (see `lamina_test_support::skip_or_fail`).
fn kvm_available() -> bool {
    lamina_test_support::kvm_or_skip("an hvt guest")
}

fn is_pvm() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    !cpuinfo.contains(" vmx") && !cpuinfo.contains(" svm")
}

fn run(name: &str, writer: &ElfWriter, extra: &[&str]) -> Output {
    let path: PathBuf =
        std::env::temp_dir().join(format!("lamina-hvt-test-{}-{name}", std::process::id()));
    std::fs::write(&path, writer.build()).unwrap();
    let mut args = vec!["--mem=8"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_lamina-hvt"))
        .args(&args)
        .output()
        .unwrap();
    std::fs::remove_file(path).unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails(out: &Output, message: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(out).contains(message),
        "expected '{message}' in: {}",
        stderr(out)
    );
}

#[test]
fn halt_passes_the_exit_status_through() {
    if !kvm_available() {
        return;
    }
    for lamina in [None, Some(features::ANY_CPL | features::NX_DATA)] {
        let out = run("halt", &image(&halt(), &halt_struct(42, &[]), lamina), &[]);
        assert_eq!(out.status.code(), Some(42), "{lamina:?}: {}", stderr(&out));
    }
}

#[test]
fn puts_writes_the_guest_buffer() {
    if !kvm_available() {
        return;
    }
    // DATA: HcHalt (16 bytes), HcPuts at +16 {data: DATA+32, len: 6}, text at +32.
    let mut data = halt_struct(0, &[]);
    data.extend_from_slice(&(DATA + 32).to_le_bytes());
    data.extend_from_slice(&6u64.to_le_bytes());
    data.extend_from_slice(b"hello\n");
    let code = [hypercall(0x502, DATA as u32 + 16), halt()].concat();
    let out = run("puts", &image(&code, &data, Some(features::ANY_CPL)), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello\n");
}

#[test]
fn a_lamina_image_runs_sse_natively_on_pvm() {
    if !kvm_available() {
        return;
    }
    if !is_pvm() {
        lamina_test_support::not_applicable(
            "native ring-3 mode",
            "not a KVM-PVM host; native ring-3 mode is not used here",
        );
        return;
    }
    let code = [asm::XORPS.to_vec(), halt()].concat();
    let out = run(
        "sse",
        &image(&code, &halt_struct(3, &[]), Some(features::ANY_CPL)),
        &["--x-timing"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("PvmNative"), "{}", stderr(&out));
    // After a trapped privileged read, the guest still runs natively.
    let code = [asm::READ_CR4.to_vec(), asm::XORPS.to_vec(), halt()].concat();
    let out = run(
        "cr4-sse",
        &image(&code, &halt_struct(4, &[]), Some(features::ANY_CPL)),
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // Without the note the guest gets Solo5's layout, which KVM-PVM
    // emulates: SSE ends it with a clear message.
    let out = run("sse-solo5", &image(&code, &halt_struct(3, &[]), None), &[]);
    assert_fails(&out, "internal error");
}

#[test]
fn writing_to_text_ends_the_guest_with_a_message() {
    if !kvm_available() {
        return;
    }
    let code = [asm::WRITE_OWN_TEXT.to_vec(), halt()].concat();
    for lamina in [None, Some(features::ANY_CPL | features::NX_DATA)] {
        let out = run("xnow", &image(&code, &halt_struct(0, &[]), lamina), &[]);
        assert_eq!(out.status.code(), Some(1), "{lamina:?}: {out:?}");
        assert!(
            stderr(&out).contains("rip=0x10"),
            "{lamina:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn malformed_hypercalls_end_the_guest_not_the_tender() {
    if !kvm_available() {
        return;
    }
    let lamina = Some(features::ANY_CPL);
    // A pointer past the end of guest memory.
    let out = run(
        "far",
        &image(&hypercall(0x502, 0xffff_fff0), &[], lamina),
        &[],
    );
    assert_fails(&out, "outside guest memory");
    // A PUTS whose buffer wraps around the address space.
    let mut data = vec![0u8; 16];
    data[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    data[8..16].copy_from_slice(&16u64.to_le_bytes());
    let out = run(
        "wrap",
        &image(&hypercall(0x502, DATA as u32), &data, lamina),
        &[],
    );
    assert_fails(&out, "overflows");
    // WALLTIME into the guest's own read-only text.
    let out = run(
        "ro",
        &image(&hypercall(0x501, TEXT as u32), &[0; 8], lamina),
        &[],
    );
    assert_fails(&out, "not writable");
    // Ports that are no hypercall, and one whose device is not attached.
    for port in [0x500, 0x509, 0x3f8] {
        let out = run(
            "port",
            &image(&hypercall(port, DATA as u32), &[0; 8], lamina),
            &[],
        );
        assert_fails(&out, "invalid guest hypercall");
    }
    let out = run(
        "blk",
        &image(&hypercall(0x505, DATA as u32), &[0; 40], lamina),
        &[],
    );
    assert_fails(&out, "no block device attached");
    // An `in` from a hypercall port.
    let code = [asm::mov_edx(0x501), asm::IN.to_vec()].concat();
    let out = run("in", &image(&code, &[], lamina), &[]);
    assert_fails(&out, "invalid guest port access");
}

#[test]
fn block_hypercalls_check_the_handle_and_range() {
    if !kvm_available() {
        return;
    }
    let disk = std::env::temp_dir().join(format!("lamina-hvt-test-{}-disk", std::process::id()));
    std::fs::write(&disk, [0x5au8; 4096]).unwrap();
    let option = format!("--block:storage={}", disk.display());
    // HcBlockRead at DATA+16: {handle, offset, data: DATA+0x200, len}; the
    // halt status is the `ret` it got (written at DATA+48).
    let read = |handle: u64, offset: u64, len: u64| {
        let mut data = halt_struct(0, &[]);
        for word in [handle, offset, DATA + 0x200, len, 0] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        // mov eax, [DATA+48]; mov [DATA+8], eax: halt status = ret.
        let copy = [
            vec![0x8b, 0x04, 0x25],
            (DATA as u32 + 48).to_le_bytes().to_vec(),
            vec![0x89, 0x04, 0x25],
            (DATA as u32 + 8).to_le_bytes().to_vec(),
        ]
        .concat();
        let code = [hypercall(0x505, DATA as u32 + 16), copy, halt()].concat();
        ElfWriter::new(TEXT)
            .load(TEXT, PF_R | PF_X, &code, 0x1000)
            .load(DATA, PF_R | PF_W, &data, 0x1000)
            .abi_note(AbiTarget::Hvt)
            .manifest_note(&[("storage", DeviceType::BlockBasic)])
            .lamina_note(features::ANY_CPL)
    };
    let out = run("blk-ok", &read(1, 3584, 512), &[&option]);
    assert_eq!(out.status.code(), Some(0), "ret OK: {}", stderr(&out));
    let out = run("blk-two", &read(1, 1024, 1024), &[&option]);
    assert_eq!(out.status.code(), Some(0), "ret OK: {}", stderr(&out));
    // Past the end, another handle, not whole sectors: EINVAL, and the
    // guest goes on.
    for (name, handle, offset, len) in [
        ("blk-range", 1, 4096, 512),
        ("blk-handle", 7, 0, 512),
        ("blk-offset", 1, 100, 512),
        ("blk-length", 1, 512, 100),
        ("blk-empty", 1, 512, 0),
    ] {
        let out = run(name, &read(handle, offset, len), &[&option]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
    }
    std::fs::remove_file(disk).unwrap();
}

/// A tap interface for one test, removed when dropped.
struct Tap(String);

impl Tap {
    fn create(name: &str) -> Tap {
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        };
        let _ = Command::new("ip")
            .args(["link", "del", name])
            .output()
            .unwrap();
        ip(&["tuntap", "add", name, "mode", "tap"]);
        ip(&["link", "set", name, "up"]);
        Tap(name.to_string())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn a_frame_the_tap_refuses_is_eunspec_and_the_guest_goes_on() {
    if !kvm_available()
        || !lamina_test_support::root_or_skip("a tap-backed hvt guest", "creating a tap")
    {
        return;
    }
    let tap = Tap::create(&format!("lmhvt{}", std::process::id() % 100_000));
    // HcNetWrite at DATA+16: {handle 1, data DATA+0x200, len}; the halt
    // status is the `ret` it got (at DATA+40).
    let send = |len: u64| {
        let mut data = halt_struct(0, &[]);
        for word in [1, DATA + 0x200, len, 0] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.resize(0x200, 0);
        // An Ethernet frame: broadcast, from a local MAC, EtherType 0x88b5.
        data.extend_from_slice(&[0xff; 6]);
        data.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        data.resize(0x200 + 60, 0x42);
        // mov eax, [DATA+40]; mov [DATA+8], eax: halt status = ret.
        let copy = [
            vec![0x8b, 0x04, 0x25],
            (DATA as u32 + 40).to_le_bytes().to_vec(),
            vec![0x89, 0x04, 0x25],
            (DATA as u32 + 8).to_le_bytes().to_vec(),
        ]
        .concat();
        let code = [hypercall(0x506, DATA as u32 + 16), copy, halt()].concat();
        ElfWriter::new(TEXT)
            .load(TEXT, PF_R | PF_X, &code, 0x1000)
            .load(DATA, PF_R | PF_W, &data, 0x1000)
            .abi_note(AbiTarget::Hvt)
            .manifest_note(&[("service", DeviceType::NetBasic)])
            .lamina_note(features::ANY_CPL)
    };
    let option = format!("--net:service={}", tap.0);
    let out = run("net-ok", &send(60), &[&option]);
    assert_eq!(out.status.code(), Some(0), "ret OK: {}", stderr(&out));
    // Shorter than an Ethernet header: the kernel's tap refuses it (EINVAL).
    let out = run("net-short", &send(4), &[&option]);
    assert_eq!(out.status.code(), Some(3), "ret EUNSPEC: {}", stderr(&out));
}
