//! lamina-spt against hand-assembled guests: the ABI it hands over, the
//! sandbox that kills forbidden calls, and the images it refuses.

use lamina_abi::mft::DeviceType;
use lamina_abi::note::AbiTarget;
use lamina_tender::elf::{PF_R, PF_W, PF_X};
use lamina_tender::elf_writer::ElfWriter;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENTRY: u64 = 0x100000;

/// x86_64 machine code, assembled by hand.
mod asm {
    pub fn mov_eax(v: u32) -> Vec<u8> {
        [&[0xb8][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_edi(v: u32) -> Vec<u8> {
        [&[0xbf][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_edx(v: u32) -> Vec<u8> {
        [&[0xba][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_esi(v: u32) -> Vec<u8> {
        [&[0xbe][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_r10d(v: u32) -> Vec<u8> {
        [&[0x41, 0xba][..], &v.to_le_bytes()].concat()
    }
    pub fn mov_r8d(v: u32) -> Vec<u8> {
        [&[0x41, 0xb8][..], &v.to_le_bytes()].concat()
    }
    /// mov rsi, [rdi + disp8]
    pub fn mov_rsi_from_rdi(disp: u8) -> Vec<u8> {
        vec![0x48, 0x8b, 0x77, disp]
    }
    pub const SYSCALL: [u8; 2] = [0x0f, 0x05];
    /// lea rax, [rip]; mov byte [rax], 0: a write to the code itself.
    pub const WRITE_OWN_TEXT: [u8; 10] = [0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc6, 0x00, 0x00];
}

/// exit_group(status).
fn exit(status: u32) -> Vec<u8> {
    [
        asm::mov_eax(231),
        asm::mov_edi(status),
        asm::SYSCALL.to_vec(),
    ]
    .concat()
}

/// write(1, bi->cmdline, len); exit_group(status).
fn echo_cmdline(len: u32, status: u32) -> Vec<u8> {
    [
        asm::mov_rsi_from_rdi(16), // spt BootInfo.cmdline is at offset 16
        asm::mov_eax(1),
        asm::mov_edi(1),
        asm::mov_edx(len),
        asm::SYSCALL.to_vec(),
        exit(status),
    ]
    .concat()
}

/// pread64(manifest entry 1's fd, stack buffer, count, offset), then
/// exit_group(bytes read / 256).
fn pread_sector(count: u32, offset: u32) -> Vec<u8> {
    [
        vec![0x48, 0x8b, 0x47, 0x18],          // mov rax, [rdi+24]: bi->mft
        vec![0x8b, 0xb8, 200, 0, 0, 0],        // mov edi, [rax+200]: e[1].hostfd
        vec![0x48, 0x89, 0xe6],                // mov rsi, rsp
        vec![0x48, 0x81, 0xee, 0, 0x10, 0, 0], // sub rsi, 0x1000
        asm::mov_edx(count),
        [&[0x41, 0xba][..], &offset.to_le_bytes()].concat(), // mov r10d, offset
        asm::mov_eax(17),
        asm::SYSCALL.to_vec(),
        vec![0x89, 0xc7, 0xc1, 0xef, 0x08], // mov edi, eax; shr edi, 8
        asm::mov_eax(231),
        asm::SYSCALL.to_vec(),
    ]
    .concat()
}

fn image(code: &[u8]) -> ElfWriter {
    ElfWriter::new(ENTRY)
        .load(ENTRY, PF_R | PF_X, code, 0x1000)
        .abi_note(AbiTarget::Spt)
}

fn write_image(name: &str, writer: &ElfWriter) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lamina-spt-test-{}-{name}", std::process::id()));
    std::fs::write(&path, writer.build()).unwrap();
    path
}

fn spt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamina-spt"))
        .args(args)
        .output()
        .unwrap()
}

fn run(name: &str, writer: ElfWriter, guest_args: &[&str]) -> Output {
    let path = write_image(name, &writer);
    let mut args = vec!["--mem=4", path.to_str().unwrap()];
    args.extend_from_slice(guest_args);
    let out = spt(&args);
    std::fs::remove_file(path).unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_guest_gets_its_command_line_and_sets_the_exit_status() {
    let out = run(
        "echo",
        image(&echo_cmdline(11, 7)).manifest_note(&[]),
        &["hello", "world"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello world");
}

#[test]
fn forbidden_system_calls_kill_the_guest() {
    // getpid: not in the spt ABI at all.
    let getpid = [asm::mov_eax(39), asm::SYSCALL.to_vec(), exit(0)].concat();
    let out = run("getpid", image(&getpid).manifest_note(&[]), &[]);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{out:?}");
    // write to another descriptor (the epoll set's): write is allowed, but
    // only to fd 1 (the console) and fd 2 (the fault handler's report).
    for fd in [0, 3] {
        let write = [
            asm::mov_eax(1),
            asm::mov_edi(fd),
            asm::SYSCALL.to_vec(),
            exit(0),
        ]
        .concat();
        let out = run("write-fd", image(&write).manifest_note(&[]), &[]);
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "fd {fd}: {out:?}");
    }
    // clock_gettime with CLOCK_PROCESS_CPUTIME_ID (2).
    let clock = [
        asm::mov_eax(228),
        asm::mov_edi(2),
        asm::SYSCALL.to_vec(),
        exit(0),
    ]
    .concat();
    let out = run("clock", image(&clock).manifest_note(&[]), &[]);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{out:?}");
}

#[test]
fn no_ioctl_and_no_executable_memory() {
    // ioctl(1, KVM_CREATE_VM): the guest shares the tender's process, which
    // may hold /dev/kvm or a tap; no request is allowed on any descriptor.
    let ioctl = [
        asm::mov_eax(16),
        asm::mov_edi(1),
        asm::mov_esi(0xae01),
        asm::mov_edx(0),
        asm::SYSCALL.to_vec(),
        exit(0),
    ]
    .concat();
    // mmap(NULL, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0):
    // new code.
    let mmap_exec = [
        asm::mov_eax(9),
        asm::mov_edi(0),
        asm::mov_esi(4096),
        asm::mov_edx((libc::PROT_READ | libc::PROT_EXEC) as u32),
        asm::mov_r10d((libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32),
        asm::mov_r8d(u32::MAX),
        asm::SYSCALL.to_vec(),
        exit(0),
    ]
    .concat();
    // mprotect(its own text, 4096, RWX): writable code.
    let mprotect_exec = [
        asm::mov_eax(10),
        asm::mov_edi(ENTRY as u32),
        asm::mov_esi(4096),
        asm::mov_edx(7),
        asm::SYSCALL.to_vec(),
        exit(0),
    ]
    .concat();
    for (name, code) in [
        ("ioctl", ioctl),
        ("mmap-exec", mmap_exec),
        ("mprotect-exec", mprotect_exec),
    ] {
        let out = run(name, image(&code).manifest_note(&[]), &[]);
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{name}: {out:?}");
    }
}

#[test]
fn text_is_not_writable() {
    let code = [asm::WRITE_OWN_TEXT.to_vec(), exit(0)].concat();
    let out = run("xnow", image(&code).manifest_note(&[]), &[]);
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{out:?}");
}

#[test]
fn bad_images_are_refused_with_a_message() {
    let cases = [
        (
            "wx",
            ElfWriter::new(ENTRY)
                .load(ENTRY, PF_R | PF_W | PF_X, &exit(0), 0)
                .abi_note(AbiTarget::Spt)
                .manifest_note(&[]),
            "WRITE and EXEC",
        ),
        ("nomft", image(&exit(0)), "no Solo5 manifest"),
        (
            "hvt",
            ElfWriter::new(ENTRY)
                .load(ENTRY, PF_R | PF_X, &exit(0), 0)
                .abi_note(AbiTarget::Hvt)
                .manifest_note(&[]),
            "not for the spt target",
        ),
        (
            "outside",
            image(&exit(0))
                .load(8 << 20, PF_R, b"far", 0)
                .manifest_note(&[]),
            "does not fit",
        ),
        (
            "unattached",
            image(&exit(0)).manifest_note(&[("service", DeviceType::NetBasic)]),
            "Device 'service' of type NET_BASIC declared but not attached",
        ),
    ];
    for (name, writer, message) in cases {
        let out = run(name, writer, &[]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert!(stderr(&out).contains(message), "{name}: {}", stderr(&out));
    }
    let path = write_image("truncated", &image(&exit(0)).manifest_note(&[]));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..100]).unwrap();
    let out = spt(&[path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn block_devices_are_checked_and_pinned() {
    let disk = std::env::temp_dir().join(format!("lamina-spt-test-{}-disk", std::process::id()));
    std::fs::File::create(&disk).unwrap().set_len(1000).unwrap();
    let writer = image(&exit(0)).manifest_note(&[("storage", DeviceType::BlockBasic)]);
    let path = write_image("blk", &writer);
    let option = format!("--block:storage={}", disk.display());
    let out = spt(&["--mem=4", &option, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a non-zero multiple"),
        "{}",
        stderr(&out)
    );
    std::fs::File::create(&disk).unwrap().set_len(4096).unwrap();
    let out = spt(&["--mem=4", &option, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A disk another process has (its flock(2), as another tender or
    // `lamina store` takes it) is refused, not written by two at once.
    let holder = lamina_test_support::disk_lock::DiskLock::shared(&disk);
    let out = spt(&["--mem=4", &option, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("in use by another process"),
        "{out:?}"
    );
    drop(holder);
    // The guest may pread64 one sector inside the device from its own
    // descriptor; any other size or offset is killed by the filter.
    for (count, offset, expect) in [
        (512, 0, Ok(2)),
        (512, 3584, Ok(2)),
        (1024, 0, Err(())),
        (512, 4096, Err(())),
    ] {
        let code = pread_sector(count, offset);
        let reader = image(&code).manifest_note(&[("storage", DeviceType::BlockBasic)]);
        let reader_path = write_image("pread", &reader);
        let out = spt(&["--mem=4", &option, reader_path.to_str().unwrap()]);
        std::fs::remove_file(reader_path).unwrap();
        match expect {
            Ok(status) => assert_eq!(out.status.code(), Some(status), "{count}@{offset}: {out:?}"),
            Err(()) => assert_eq!(
                out.status.signal(),
                Some(libc::SIGSYS),
                "{count}@{offset}: {out:?}"
            ),
        }
    }
    let out = spt(&["--mem=4", "--block:other=/dev/null", path.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("declares no BLOCK_BASIC device 'other'"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(disk).unwrap();
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = spt(&["--frobnicate", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown option '--frobnicate'"));
    assert!(stderr(&out).contains("usage:"));
    let out = spt(&[]);
    assert_eq!(out.status.code(), Some(2));
    // A group MAC would end the guest in its stack's assertion; a second
    // --mem would silently win over the first.
    for bad in [
        ["--net-mac:service=01:00:5e:00:00:01", "x"],
        ["--mem=8", "--mem=4"],
    ] {
        let out = spt(&[bad[0], bad[1], "x"]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(stderr(&out).contains(bad[1]), "{bad:?}: {out:?}");
    }
    let out = spt(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--block:NAME=FILE"));
    let out = spt(&["/nonexistent/image"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read"));
    // Neither is an image: the first was read until memory ran out, the
    // second blocked the tender until a writer came.
    let fifo = std::env::temp_dir().join(format!("lamina-spt-fifo-{}", std::process::id()));
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for image in [Path::new("/dev/zero"), &fifo] {
        let out = spt(&[image.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{image:?}: {out:?}");
        assert!(stderr(&out).contains("not a regular file"), "{out:?}");
    }
    std::fs::remove_file(fifo).unwrap();
}

/// Runs an image declaring network device "service" with `--net:service=`
/// `net`, the descriptor `inherited` (if any) passed open to the tender.
fn run_with_inherited_net(name: &str, net: &str, inherited: Option<i32>) -> Output {
    use std::os::unix::process::CommandExt;
    let writer = image(&exit(7)).manifest_note(&[("service", DeviceType::NetBasic)]);
    let path = write_image(name, &writer);
    let mut command = Command::new(env!("CARGO_BIN_EXE_lamina-spt"));
    command.args([
        "--mem=4",
        &format!("--net:service={net}"),
        path.to_str().unwrap(),
    ]);
    if let Some(fd) = inherited {
        // SAFETY: fcntl is async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    let out = command.output().unwrap();
    std::fs::remove_file(path).unwrap();
    out
}

#[test]
fn an_inherited_descriptor_is_a_network_device_only_if_it_carries_frames() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let socketpair = |kind: i32| {
        let mut fds = [0i32; 2];
        // SAFETY: socketpair writes two descriptors into the array.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                kind | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both are new and owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    // A link that keeps frames apart: the guest runs (and exits 7).
    let (link, _peer) = socketpair(libc::SOCK_SEQPACKET);
    let fd = link.as_raw_fd();
    let out = run_with_inherited_net("net-fd-ok", &format!("fd:{fd}"), Some(fd));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    let file = std::fs::File::open(env!("CARGO_BIN_EXE_lamina-spt")).unwrap();
    let (stream, _peer) = socketpair(libc::SOCK_STREAM);
    let cases = [
        ("net-fd-file", file.as_raw_fd(), true, "is a regular file"),
        (
            "net-fd-stream",
            stream.as_raw_fd(),
            true,
            "is a stream socket",
        ),
        ("net-fd-closed", 987, false, "is not open"),
        // Open in the test, but close-on-exec: closed in the tender.
        ("net-fd-cloexec", fd, false, "is not open"),
    ];
    for (name, fd, inherit, message) in cases {
        let out = run_with_inherited_net(name, &format!("fd:{fd}"), inherit.then_some(fd));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let error = stderr(&out);
        assert!(
            error.contains(&format!("descriptor {fd} {message}")),
            "{name}: {error}"
        );
    }
    let out = run_with_inherited_net("net-fd-bad", "fd:x", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("fd:N"), "{}", stderr(&out));
    // User-mode networking is a process beside the tender now.
    let out = run_with_inherited_net("net-user", "user:8080:80", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lamina run --port"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_stdout_never_becomes_a_device() {
    // The tender runs without std's runtime, which opened /dev/null on a
    // closed descriptor 0-2; lamina_tender::process::start does it now.
    // Were descriptor 1 left closed, the disk (the first file the tender
    // keeps open) would take it, and the guest's console would write into
    // the disk.
    let disk = std::env::temp_dir().join(format!("lamina-spt-test-{}-fd1.img", std::process::id()));
    std::fs::File::create(&disk).unwrap().set_len(4096).unwrap();
    let writer = image(&echo_cmdline(11, 5)).manifest_note(&[("storage", DeviceType::BlockBasic)]);
    let path = write_image("fd1", &writer);
    let option = format!("--block:storage={}", disk.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_lamina-spt"));
    command.args(["--mem=4", &option, path.to_str().unwrap(), "hello", "world"]);
    // SAFETY: close() is async-signal-safe and touches no memory; the child
    // runs it between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::close(1);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let contents = std::fs::read(&disk).unwrap();
    let written = contents.iter().position(|&b| b != 0);
    assert_eq!(written, None, "the guest's console went to the disk");
    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(disk).unwrap();
}

/// Opens tap `name` with `flags` (IFF_TAP | IFF_NO_PI and maybe IFF_VNET_HDR)
/// inside network namespace `namespace`, from a thread that joins it (a
/// tap is found by name in the opener's namespace), as a parent like
/// Jitsu does before handing the tap to a tender.
fn open_tap_in(namespace: &str, name: &'static str, flags: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let path = format!("/run/netns/{namespace}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns takes a descriptor and a flag; it moves only this
        // thread, which ends after opening the tap.
        let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(joined, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a NUL-terminated path; the result is checked and owned.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fd is new and owned by nobody else.
        let tap = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero ifreq is valid.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and updates `request`, alive for the call.
        let rc = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut request) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        tap
    })
    .join()
    .unwrap()
}

#[test]
fn an_inherited_tap_with_virtio_net_headers_needs_a_guest_that_reads_them() {
    use std::os::fd::AsRawFd;
    if !lamina_test_support::root_or_skip("inherited taps", "to create a namespace and a tap") {
        return;
    }
    let namespace = format!("lamina-spt-tap-{}", std::process::id());
    let setup = format!(
        "ip netns add {namespace} && ip -n {namespace} tuntap add dev tap0 mode tap \
         && ip -n {namespace} tuntap add dev tap1 mode tap \
         && ip -n {namespace} link set tap0 up && ip -n {namespace} link set tap1 up"
    );
    let created = Command::new("sh").args(["-c", &setup]).status().unwrap();
    let result = std::panic::catch_unwind(|| {
        assert!(created.success(), "{setup}");
        // The hand-made guest declares no NET_OFFLOAD: it reads the tap
        // itself and would take a virtio-net header for the frame's start.
        let tap = open_tap_in(
            &namespace,
            "tap0",
            libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR,
        );
        let fd = tap.as_raw_fd();
        let out = run_with_inherited_net("net-fd-vnet", &format!("fd:{fd}"), Some(fd));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "descriptor {fd} is a tap (tap0) opened with IFF_VNET_HDR"
            )) && stderr(&out).contains("open it with IFF_TAP | IFF_NO_PI only"),
            "{}",
            stderr(&out)
        );
        // A tap opened without headers: the guest runs (and exits 7). It is
        // a second tap, not tap0 reopened: a sibling test forking in the
        // moment tap0's descriptor still existed holds it until its exec,
        // and a tap that is still attached refuses TUNSETIFF with EBUSY.
        drop(tap);
        let tap = open_tap_in(&namespace, "tap1", libc::IFF_TAP | libc::IFF_NO_PI);
        let fd = tap.as_raw_fd();
        let out = run_with_inherited_net("net-fd-tap", &format!("fd:{fd}"), Some(fd));
        assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    });
    let _ = Command::new("ip")
        .args(["netns", "del", &namespace])
        .status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
