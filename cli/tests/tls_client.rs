//! The TLS client (lamina-http's `https://` requests through lamina-tls's
//! `TlsConnector`) in the `fetch` test guest, on unix, spt and hvt, against
//! nginx in a network namespace. A test CA (`lamina tls dev-cert --ca-dir`)
//! is baked into the guest at build time (`LAMINA_TLS_CA`); nginx serves
//! its certificate for `tls.test` and the host's address over TLS 1.3 only
//! and over TLS 1.2 only, an expired certificate of the same CA (made with
//! `openssl ca -startdate -enddate`), and the same CA's certificate for
//! another name. The guest must fetch the page over both versions, by name
//! and by address, and refuse the expired and the wrong-name certificates,
//! and a valid one when its wall clock says 1970 (a clock never set), each
//! with the error that says why; built without the test CA, it refuses the
//! valid certificate too (unknown issuer).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx's ports in the namespace: one server each.
const TLS13_PORT: u16 = 4431;
const TLS12_PORT: u16 = 4432;
const EXPIRED_PORT: u16 = 4433;
const WRONG_NAME_PORT: u16 = 4434;

/// The size of the page nginx serves: several TLS records.
const PAGE_BYTES: usize = 40_000;

/// The certificates, all signed by one test CA, in `dir`.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// The CA and `tls.test` (also valid for `address`) and `other.test`
    /// from `lamina tls dev-cert`, and an expired `tls.test` (January 2024)
    /// from `openssl ca`.
    fn make(dir: &Path, address: &str) -> Certificates {
        let certs = Certificates {
            dir: dir.to_path_buf(),
        };
        for names in [&["tls.test", address][..], &["other.test"][..]] {
            let output = lamina()
                .args(["tls", "dev-cert", "--ca-dir"])
                .arg(certs.ca_dir())
                .arg("--dir")
                .arg(dir)
                .args(names)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "lamina tls dev-cert {names:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let ca = dir.join("openssl-ca");
        std::fs::create_dir(&ca).unwrap();
        std::fs::write(ca.join("index.txt"), "").unwrap();
        std::fs::write(ca.join("serial"), "01\n").unwrap();
        std::fs::write(
            ca.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
             unique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .unwrap();
        let mut request = Command::new("openssl");
        request
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=tls.test"])
            .args(["-addext", "subjectAltName=DNS:tls.test", "-keyout"])
            .arg(certs.path("expired.key"))
            .args(["-out", "expired.csr"]);
        let mut sign = Command::new("openssl");
        sign.args(["ca", "-batch", "-config", "ca.cnf", "-cert"])
            .arg(certs.ca_certificate())
            .arg("-keyfile")
            .arg(certs.ca_dir().join("ca.key"))
            .args([
                "-startdate",
                "20240101000000Z",
                "-enddate",
                "20240201000000Z",
            ])
            .args(["-notext", "-in", "expired.csr", "-out"])
            .arg(certs.path("expired.crt"));
        for mut command in [request, sign] {
            let output = command.current_dir(&ca).output().unwrap();
            assert!(
                output.status.success(),
                "{command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        certs
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    fn ca_certificate(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// nginx in the namespace on `address`, one server a port; stopped on drop.
struct Nginx(Child);

impl Nginx {
    fn start(ns: &Namespace, dir: &Path, certs: &Certificates, address: &str) -> Nginx {
        let www = dir.join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("index.html"), "x".repeat(PAGE_BYTES)).unwrap();
        let server = |port: u16, name: &str, protocols: &str| {
            format!(
                "  server {{ listen {address}:{port} ssl; root {www}; ssl_protocols {protocols};\n\
                 \x20   ssl_certificate {crt}; ssl_certificate_key {key}; }}\n",
                www = www.display(),
                crt = certs.path(&format!("{name}.crt")).display(),
                key = certs.path(&format!("{name}.key")).display(),
            )
        };
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             \x20 client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
             \x20 uwsgi_temp_path {d}; scgi_temp_path {d};\n{}{}{}{}}}\n",
            server(TLS13_PORT, "tls.test", "TLSv1.3"),
            server(TLS12_PORT, "tls.test", "TLSv1.2"),
            server(EXPIRED_PORT, "expired", "TLSv1.2 TLSv1.3"),
            server(WRONG_NAME_PORT, "other.test", "TLSv1.2 TLSv1.3"),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.join("nginx.out")).unwrap();
        let child = ns
            .command("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut nginx = Nginx(child);
        let probe = format!(
            "for p in {TLS13_PORT} {TLS12_PORT} {EXPIRED_PORT} {WRONG_NAME_PORT}; do \
             nc -z -w 1 {address} $p || exit 1; done; echo listening"
        );
        let start = Instant::now();
        loop {
            let out = ns.command("sh").args(["-c", &probe]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("listening") {
                return nginx;
            }
            let exited = nginx.0.try_wait().unwrap();
            if exited.is_some() || start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "nginx did not listen ({exited:?}):\n{}{}",
                    std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default(),
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the `fetch` guest (`image`, for `target`) in `ns` with
/// `guest_args` to its end; returns whether it exited 0, and its console.
fn fetch(ns: &Namespace, target: &str, image: &Path, guest_args: &[String]) -> (bool, String) {
    let mut command = if target == "unix" {
        ns.command(image)
    } else {
        let mut command = ns.command(tender(target));
        command
            .arg("--mem=32")
            .arg("--net:service=tap0")
            .arg(image)
            .arg(format!("--ipv4={}/24", ns.guest_ip()));
        command
    };
    let console = tempfile::NamedTempFile::new().unwrap();
    let mut guest = command
        .args(guest_args)
        .stdin(Stdio::null())
        .stdout(console.reopen().unwrap())
        .stderr(console.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = guest.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = guest.kill();
            let _ = guest.wait();
            panic!(
                "{target} {guest_args:?}: still running after 30 s:\n{}",
                std::fs::read_to_string(console.path()).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(console.path()).unwrap();
    eprintln!("--- {target} {guest_args:?}: {status}\n{text}");
    (status.success(), text)
}

#[test]
fn the_tls_client_checks_chain_name_and_time_against_nginx() {
    let test = "TLS client against nginx";
    if !can_use_namespaces(test, &["ip", "nc", "nginx", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::new("lamina-tlsc", 170);
    let host = format!("10.{}.0.1", ns.subnet);
    let certs = Certificates::make(dir.path(), &host);
    let _nginx = Nginx::start(&ns, dir.path(), &certs, &host);
    let ca = certs.ca_certificate();
    let by_name = |port: u16| {
        vec![
            format!("--url=https://tls.test:{port}/"),
            format!("--address={host}"),
        ]
    };
    let page = format!("status 200, {PAGE_BYTES} bytes");
    let mut targets = vec!["unix"];
    targets.extend(unikernel_targets(test));
    for target in targets {
        let image = image_with_env(
            target,
            "tests/guests/fetch",
            &[("LAMINA_TLS_CA", ca.as_os_str())],
        );
        // A valid certificate: TLS 1.3 by name, TLS 1.2 by address.
        let (ok, text) = fetch(&ns, target, &image, &by_name(TLS13_PORT));
        assert!(ok, "{target}: TLS 1.3 failed:\n{text}");
        for expected in [
            "tls.test: Some(TLSv1_3)",
            "ALPN Some(\"http/1.1\")",
            page.as_str(),
        ] {
            assert!(
                text.contains(expected),
                "{target}: no '{expected}':\n{text}"
            );
        }
        let url = format!("--url=https://{host}:{TLS12_PORT}/index.html");
        let (ok, text) = fetch(&ns, target, &image, &[url]);
        assert!(ok, "{target}: TLS 1.2 failed:\n{text}");
        let version = format!("{host}: Some(TLSv1_2)");
        for expected in [version.as_str(), page.as_str()] {
            assert!(
                text.contains(expected),
                "{target}: no '{expected}':\n{text}"
            );
        }
        // Refusals, each for its reason, and no page.
        let mut unset_clock = by_name(TLS13_PORT);
        unset_clock.push(String::from("--wall-clock-secs=0"));
        for (what, args, reason) in [
            (
                "an expired certificate",
                by_name(EXPIRED_PORT),
                "invalid peer certificate: certificate expired",
            ),
            (
                "a certificate for another name",
                by_name(WRONG_NAME_PORT),
                "invalid peer certificate: NotValidForName",
            ),
            (
                "a wall clock in 1970",
                unset_clock,
                "failed to get current time",
            ),
        ] {
            let (ok, text) = fetch(&ns, target, &image, &args);
            assert!(!ok, "{target}: {what} was accepted:\n{text}");
            assert!(
                text.contains(reason) && !text.contains("status 200"),
                "{target}: {what}: no '{reason}':\n{text}"
            );
        }
    }
    // Built without LAMINA_TLS_CA, the guest trusts the Mozilla roots
    // alone: the test CA's valid certificate is refused (unix only; the
    // roots are the same code on every target).
    let image = image_with_env("unix", "tests/guests/fetch", &[]);
    let (ok, text) = fetch(&ns, "unix", &image, &by_name(TLS13_PORT));
    assert!(
        !ok,
        "unix: a certificate of an unknown CA was accepted:\n{text}"
    );
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "unix: no UnknownIssuer:\n{text}"
    );
}
