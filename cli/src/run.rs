//! `lamina run`: build, start, report the start-up time, pass the exit status on.

use crate::build::{build, build_tender};
use crate::project::Project;
use crate::{CliError, Target};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Device arguments that go to a tender rather than to the guest, so that
/// `-- --block:storage=disk.img` means the same on every target.
fn is_tender_arg(arg: &str) -> bool {
    ["--block:", "--block-sector-size:", "--net:", "--net-mac:"]
        .iter()
        .any(|p| arg.starts_with(p))
}

/// Turns `--port HOST:GUEST` options into the tender's user-mode network
/// device and the guest's address on it; on unix the application listens
/// on the host already, so only identical ports make sense there.
pub fn with_port_forwards(
    project: &Project,
    target: Target,
    ports: &[String],
    mut boot_args: Vec<String>,
) -> Result<Vec<String>, CliError> {
    if ports.is_empty() {
        return Ok(boot_args);
    }
    for spec in ports {
        let parsed = spec
            .split_once(':')
            .and_then(|(h, g)| Some((h.parse::<u16>().ok()?, g.parse::<u16>().ok()?)))
            .filter(|(h, g)| *h != 0 && *g != 0);
        let Some((host, guest)) = parsed else {
            return Err(CliError::Project(format!(
                "--port {spec}: expected HOST:GUEST, like 8080:80"
            )));
        };
        if target == Target::Unix && host != guest {
            return Err(CliError::Project(format!(
                "--port {spec}: on unix the application listens on the host itself; use the same port on both sides or --target spt/hvt"
            )));
        }
    }
    if target == Target::Unix {
        return Ok(boot_args);
    }
    let device = project
        .devices
        .iter()
        .find(|d| {
            matches!(
                d.kind,
                crate::project::DeviceKind::Stack | crate::project::DeviceKind::Netif
            )
        })
        .ok_or_else(|| {
            CliError::Project(format!(
                "--port: {} declares no network device (stack:NAME)",
                project.name
            ))
        })?;
    boot_args.insert(0, format!("--net:{}=user:{}", device.name, ports.join(",")));
    if !boot_args.iter().any(|a| a.starts_with("--ipv4=")) {
        boot_args.push("--ipv4=10.0.2.15/24".into());
        boot_args.push("--ipv4-gateway=10.0.2.2".into());
    }
    eprintln!(
        "lamina: user-mode network: {}",
        ports
            .iter()
            .map(|p| {
                let (h, g) = p.split_once(':').unwrap_or((p, p));
                format!("127.0.0.1:{h} -> guest port {g}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(boot_args)
}

/// The command that runs the built artifact on `target`.
fn command_for(
    target: Target,
    artifact: &Path,
    mem_mib: u64,
    boot_args: &[String],
) -> Result<Command, CliError> {
    match target {
        Target::Unix => {
            let mut command = Command::new(artifact);
            command.args(boot_args);
            Ok(command)
        }
        Target::Spt | Target::Hvt => {
            let override_var = format!("LAMINA_{}", target.name().to_uppercase());
            let tender = match std::env::var_os(&override_var) {
                Some(path) => PathBuf::from(path),
                None => build_tender(target)?,
            };
            let (tender_args, guest_args): (Vec<&String>, Vec<&String>) =
                boot_args.iter().partition(|a| is_tender_arg(a));
            let mut command = Command::new(tender);
            command
                .arg(format!("--mem={mem_mib}"))
                .args(tender_args)
                .arg("--")
                .arg(artifact)
                .args(guest_args);
            Ok(command)
        }
        Target::Virtio => qemu_command(artifact, mem_mib, boot_args),
    }
}

/// The QEMU binary (`LAMINA_QEMU` overrides it).
pub fn qemu_binary() -> PathBuf {
    std::env::var_os("LAMINA_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// QEMU booting the image directly (`-kernel`, through its PVH note) on
/// `-M microvm`, the serial console on stdio, `isa-debug-exit` to pass the
/// guest's status out (see `lamina_virtio::exit`).
///
/// Software emulation (`-accel tcg`) always, for now: on these machines KVM
/// is KVM-PVM, which emulates a guest started the ordinary way and fails at
/// its first SSE instruction (see PVM.md); KVM where it works natively comes
/// with the virtio drivers.
fn qemu_command(artifact: &Path, mem_mib: u64, boot_args: &[String]) -> Result<Command, CliError> {
    if let Some(arg) = boot_args.iter().find(|a| is_tender_arg(a)) {
        return Err(CliError::TargetUnavailable {
            target: "virtio",
            why: format!("{arg}: network and block devices need the virtio drivers, which are not written yet"),
        });
    }
    eprintln!("lamina: virtio: QEMU -M microvm with software emulation (tcg)");
    let mut command = Command::new(qemu_binary());
    command
        .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max"])
        .arg("-m")
        .arg(mem_mib.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit"])
        .arg("-kernel")
        .arg(artifact)
        .arg("-append")
        .arg(kernel_command_line(boot_args))
        // QEMU would put a terminal on stdin into raw mode; the guest reads
        // no input.
        .stdin(Stdio::null());
    Ok(command)
}

/// Boot arguments as one kernel command line, quoted so that the guest's
/// splitter (whitespace separates, quotes group, backslash escapes) gives
/// back the same words.
fn kernel_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || "'\"\\".contains(c)) {
                a.clone()
            } else {
                let mut quoted = String::from("\"");
                for c in a.chars() {
                    if c == '"' || c == '\\' {
                        quoted.push('\\');
                    }
                    quoted.push(c);
                }
                quoted.push('"');
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds and runs `project` on `target` with `boot_args`, returning its exit status.
pub fn run(
    project: &Project,
    target: Target,
    release: bool,
    mem_mib: u64,
    boot_args: &[String],
) -> Result<ExitCode, CliError> {
    let built = build(project, target, release)?;
    let mut command = command_for(target, &built.artifact, mem_mib, boot_args)?;
    eprintln!("lamina: running {} on {}", project.name, target.name());
    // Ctrl-C goes to the whole process group: the application decides what
    // to do with it, and we stay to report how it ended. A handler (not
    // SIG_IGN) so that the child starts with the default disposition.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .map_err(CliError::io("cannot handle signals"))?;
    }
    let spawned = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CliError::io(format!(
            "cannot start {}",
            built.artifact.display()
        )))?;
    // The first byte on either stream marks the end of start-up.
    let first_output = Arc::new(Mutex::new(None::<Instant>));
    let forward = |mut from: Box<dyn Read + Send>, to_stdout: bool| {
        let first_output = first_output.clone();
        let target = target.name();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                {
                    let mut first = first_output.lock().unwrap_or_else(|e| e.into_inner());
                    if first.is_none() {
                        let now = Instant::now();
                        *first = Some(now);
                        eprintln!(
                            "lamina: {target}: start-up took {:.2} ms (spawn to first output)",
                            (now - spawned).as_secs_f64() * 1e3
                        );
                    }
                }
                let written = if to_stdout {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&buf[..n]).and_then(|()| out.flush())
                } else {
                    std::io::stderr().lock().write_all(&buf[..n])
                };
                if written.is_err() {
                    break;
                }
            }
        })
    };
    let stdout = child.stdout.take().map(|s| forward(Box::new(s), true));
    let stderr = child.stderr.take().map(|s| forward(Box::new(s), false));
    let status = child
        .wait()
        .map_err(CliError::io("cannot wait for the application"))?;
    for thread in [stdout, stderr].into_iter().flatten() {
        let _ = thread.join();
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("lamina: interrupted; {} stopped", project.name);
    }
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => {
            eprintln!("lamina: {} was killed by signal {signal}", project.name);
            128 + signal
        }
        (None, None) => 1,
    };
    let code = if target == Target::Virtio {
        match lamina_virtio::exit::guest_status(code) {
            Some(status) => status,
            None => {
                eprintln!(
                    "lamina: QEMU exited with {code} without the guest's status (QEMU failed, or was stopped)"
                );
                if code == 0 {
                    1
                } else {
                    code
                }
            }
        }
    } else {
        code
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_lines_keep_words() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            kernel_command_line(&args(&["--times=2", "-v"])),
            "--times=2 -v"
        );
        assert_eq!(
            kernel_command_line(&args(&["--greeting=Hi there", r#"a"b\c"#, ""])),
            r#""--greeting=Hi there" "a\"b\\c" """#
        );
    }
}
