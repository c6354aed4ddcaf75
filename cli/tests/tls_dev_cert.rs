//! `lamina tls dev-cert` and `lamina tls dev-ca`, checked with real TLS
//! tools: openssl verifies the chain and prints the certificate, and an
//! `openssl s_server` serving the certificate is reached by curl and by
//! `openssl s_client`, trusting only the development CA.

mod common;

use common::{free_port, lamina, tools_or_skip};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory to run in and a separate one for the CA (as a
/// developer's would be, outside the project).
struct Scratch {
    work: tempfile::TempDir,
    ca: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            work: tempfile::tempdir().unwrap(),
            ca: tempfile::tempdir().unwrap(),
        }
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    /// The CA's directory (made by lamina inside the temporary one, so
    /// that the test sees the mode lamina gives it).
    fn ca_dir(&self) -> PathBuf {
        self.ca.path().join("dev-ca")
    }

    fn ca_certificate(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    /// `lamina tls dev-cert ARGS --ca-dir CA`, run in the work directory.
    fn dev_cert(&self, args: &[&str]) -> Output {
        let ca_dir = self.ca_dir();
        let output = lamina()
            .args(["tls", "dev-cert", "--ca-dir"])
            .arg(&ca_dir)
            .args(args)
            .current_dir(self.work())
            .output()
            .expect("cannot start lamina");
        eprintln!(
            "--- lamina tls dev-cert {args:?}: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `dev_cert` that must succeed.
    fn dev_cert_ok(&self, args: &[&str]) -> String {
        let output = self.dev_cert(args);
        assert!(
            output.status.success(),
            "lamina tls dev-cert {args:?} failed"
        );
        String::from_utf8(output.stderr).unwrap()
    }
}

/// Runs a tool to completion, printing what it said.
fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    eprintln!(
        "--- {program} {args:?}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `run` that must succeed; returns standard output.
fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(output.status.success(), "{program} {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `openssl verify` of `certificate` against the CA alone.
fn assert_verifies(ca: &Path, certificate: &Path) {
    let out = run_ok(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            path(ca),
            path(certificate),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
}

/// An `openssl s_server -www` serving a certificate on 127.0.0.1, stopped
/// when dropped.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(certificate: &Path, key: &Path) -> TlsServer {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", path(certificate), "-key", path(key)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start openssl s_server");
        let mut server = TlsServer { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("openssl s_server exited before listening: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "openssl s_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// curl for `https://NAME:PORT/`, NAME resolved to 127.0.0.1,
    /// trusting `ca` only (None: the system's roots).
    fn curl(&self, name: &str, ca: Option<&Path>) -> Output {
        let port = self.port;
        let resolve = format!("{name}:{port}:127.0.0.1");
        let url = format!("https://{name}:{port}/");
        let mut args = vec!["--silent", "--show-error", "--max-time", "20"];
        if let Some(ca) = ca {
            args.extend(["--cacert", path(ca)]);
        }
        args.extend(["--resolve", &resolve, &url]);
        run("curl", &args)
    }

    /// `openssl s_client` asking for `name` (SNI) and checking the
    /// certificate against `ca` and `name`, failing on any error.
    fn s_client(&self, ca: &Path, name: &str) -> Output {
        run(
            "openssl",
            &[
                "s_client",
                "-brief",
                "-connect",
                &format!("127.0.0.1:{}", self.port),
                "-servername",
                name,
                "-verify_hostname",
                name,
                "-verify_return_error",
                "-CAfile",
                path(ca),
            ],
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate must be served and verified by curl and s_client with
/// the CA, and refused without it or for another name.
fn assert_served_and_verified(ca: &Path, certificate: &Path, key: &Path, name: &str) {
    let server = TlsServer::start(certificate, key);
    let page = server.curl(name, Some(ca));
    assert!(page.status.success(), "curl with the CA failed");
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("s_server"),
        "curl did not get s_server's page"
    );
    // Not a test that cannot fail: without the CA, or for a name the
    // certificate does not hold, curl refuses it (exit 60).
    let untrusted = server.curl(name, None);
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl trusted it without the CA"
    );
    let wrong_name = server.curl("other.test", Some(ca));
    assert_eq!(
        wrong_name.status.code(),
        Some(60),
        "curl took it for other.test"
    );

    let client = server.s_client(ca, name);
    let said = String::from_utf8_lossy(&client.stderr);
    assert!(client.status.success(), "s_client failed: {said}");
    assert!(said.contains("Verification: OK"), "{said}");
    let wrong = server.s_client(ca, "other.test");
    assert!(!wrong.status.success(), "s_client took it for other.test");
}

#[test]
fn an_ecdsa_certificate_verifies_and_serves_tls_to_curl_and_openssl() {
    if !tools_or_skip("lamina tls dev-cert (ECDSA)", &["openssl", "curl"]) {
        return;
    }
    let scratch = Scratch::new();
    let said = scratch.dev_cert_ok(&["example.test", "127.0.0.1", "--days", "30"]);
    let ca = scratch.ca_certificate();
    // The default DIR is tls under the current directory.
    let certificate = scratch.work().join("tls/example.test.crt");
    let key = scratch.work().join("tls/example.test.key");
    assert!(said.contains("made a development CA"), "{said}");
    assert!(said.contains("wrote tls/example.test.crt"), "{said}");
    assert!(said.contains("wrote tls/example.test.key"), "{said}");
    assert!(
        said.contains(&format!("curl --cacert {}", path(&ca))),
        "{said}"
    );
    assert!(said.contains("certutil"), "{said}");

    // Modes: the keys are their owner's only, and so is the CA's directory.
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&scratch.ca_dir().join("ca.key")), 0o600);
    assert_eq!(mode(&scratch.ca_dir()), 0o700);

    // The .crt holds the leaf alone; the .key is PKCS#8 PEM.
    let pem = std::fs::read_to_string(&certificate).unwrap();
    assert_eq!(
        pem.matches("-----BEGIN CERTIFICATE-----").count(),
        1,
        "{pem}"
    );
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{key_pem}"
    );
    let key_text = run_ok("openssl", &["pkey", "-noout", "-text", "-in", path(&key)]);
    assert!(key_text.contains("prime256v1"), "{key_text}");

    assert_verifies(&ca, &certificate);
    let text = run_ok(
        "openssl",
        &["x509", "-noout", "-text", "-in", path(&certificate)],
    );
    for expected in [
        "Subject: CN = example.test",
        "DNS:example.test, IP Address:127.0.0.1",
        "TLS Web Server Authentication",
        "Digital Signature",
        "CA:FALSE",
        "Issuer: CN = Lamina development CA (",
        "ecdsa-with-SHA256",
        "Not Before",
        "Not After",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    assert!(!text.contains("Key Encipherment"), "{text}");
    // 30 days: valid in 29 days, expired in 31 (-checkend exits 1 when the
    // certificate will have expired by then).
    let day = 86_400;
    let checkend = |seconds: u32| {
        run(
            "openssl",
            &[
                "x509",
                "-noout",
                "-in",
                path(&certificate),
                "-checkend",
                &seconds.to_string(),
            ],
        )
        .status
        .code()
    };
    assert_eq!(checkend(29 * day), Some(0));
    assert_eq!(checkend(31 * day), Some(1));

    let ca_text = run_ok("openssl", &["x509", "-noout", "-text", "-in", path(&ca)]);
    for expected in ["CA:TRUE", "Certificate Sign, CRL Sign", "prime256v1"] {
        assert!(ca_text.contains(expected), "no {expected:?} in\n{ca_text}");
    }
    let ca_checkend = |years: u32| {
        run(
            "openssl",
            &[
                "x509",
                "-noout",
                "-in",
                path(&ca),
                "-checkend",
                &(years * 365 * day).to_string(),
            ],
        )
        .status
        .code()
    };
    assert_eq!(ca_checkend(9), Some(0), "the CA is valid for ten years");
    assert_eq!(ca_checkend(11), Some(1), "the CA is valid for ten years");

    assert_served_and_verified(&ca, &certificate, &key, "example.test");
    // The IP address SAN: curl to https://127.0.0.1:PORT/ checks it.
    let server = TlsServer::start(&certificate, &key);
    let url = format!("https://127.0.0.1:{}/", server.port);
    run_ok(
        "curl",
        &["--silent", "--show-error", "--cacert", path(&ca), &url],
    );
}

#[test]
fn an_rsa_certificate_has_an_rsa_2048_key_and_verifies() {
    if !tools_or_skip("lamina tls dev-cert --rsa", &["openssl", "curl"]) {
        return;
    }
    let scratch = Scratch::new();
    let out = scratch.work().join("certs");
    scratch.dev_cert_ok(&["--rsa", "--dir", path(&out), "rsa.example.test"]);
    let ca = scratch.ca_certificate();
    let certificate = out.join("rsa.example.test.crt");
    let key = out.join("rsa.example.test.key");
    assert_eq!(mode(&key), 0o600);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{key_pem}"
    );
    let key_text = run_ok("openssl", &["pkey", "-noout", "-text", "-in", path(&key)]);
    assert!(key_text.contains("Private-Key: (2048 bit"), "{key_text}");
    let public = run_ok(
        "openssl",
        &["x509", "-noout", "-text", "-in", path(&certificate)],
    );
    assert!(public.contains("rsaEncryption"), "{public}");
    assert!(public.contains("Public-Key: (2048 bit)"), "{public}");
    assert!(
        public.contains("Digital Signature, Key Encipherment"),
        "{public}"
    );
    // 90 days by default.
    let checkend = |days: u32| {
        run(
            "openssl",
            &[
                "x509",
                "-noout",
                "-in",
                path(&certificate),
                "-checkend",
                &(days * 86_400).to_string(),
            ],
        )
        .status
        .code()
    };
    assert_eq!(checkend(89), Some(0));
    assert_eq!(checkend(91), Some(1));
    assert_verifies(&ca, &certificate);
    assert_served_and_verified(&ca, &certificate, &key, "rsa.example.test");
}

#[test]
fn the_ca_is_made_once_and_reused() {
    if !tools_or_skip("lamina tls dev-cert: CA reuse", &["openssl"]) {
        return;
    }
    let scratch = Scratch::new();
    let first = scratch.dev_cert_ok(&["one.test"]);
    assert!(first.contains("made a development CA"), "{first}");
    let ca = scratch.ca_certificate();
    let ca_before = std::fs::read(&ca).unwrap();
    let key_before = std::fs::read(scratch.ca_dir().join("ca.key")).unwrap();

    let second = scratch.dev_cert_ok(&["two.test", "--rsa"]);
    assert!(!second.contains("made a development CA"), "{second}");
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "ca.crt changed");
    assert_eq!(
        std::fs::read(scratch.ca_dir().join("ca.key")).unwrap(),
        key_before,
        "ca.key changed"
    );
    for name in ["one.test", "two.test"] {
        assert_verifies(&ca, &scratch.work().join(format!("tls/{name}.crt")));
    }

    // `lamina tls dev-ca` prints the same CA's path, and leaves it alone.
    let printed = lamina()
        .args(["tls", "dev-ca", "--ca-dir"])
        .arg(scratch.ca_dir())
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap().trim_end(),
        path(&ca)
    );
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);

    // A key that is not the certificate's is refused, not used.
    let other = Scratch::new();
    other.dev_cert_ok(&["other.test"]);
    std::fs::copy(
        other.ca_dir().join("ca.key"),
        scratch.ca_dir().join("ca.key"),
    )
    .unwrap();
    let mismatch = scratch.dev_cert(&["three.test"]);
    assert_eq!(mismatch.status.code(), Some(1));
    let said = String::from_utf8_lossy(&mismatch.stderr);
    assert!(said.contains("not the key of"), "{said}");
    assert!(!scratch.work().join("tls/three.test.crt").exists());
}

#[test]
fn dev_ca_uses_the_xdg_data_directory_by_default() {
    let home = tempfile::tempdir().unwrap();
    let dev_ca = |xdg: Option<&Path>| {
        let mut command = lamina();
        command.args(["tls", "dev-ca"]).env("HOME", home.path());
        match xdg {
            Some(dir) => command.env("XDG_DATA_HOME", dir),
            None => command.env_remove("XDG_DATA_HOME"),
        };
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim_end())
    };
    let in_home = dev_ca(None);
    assert_eq!(
        in_home,
        home.path().join(".local/share/lamina/dev-ca/ca.crt")
    );
    assert!(in_home.is_file());
    assert_eq!(mode(in_home.parent().unwrap()), 0o700);
    let xdg = home.path().join("xdg");
    let in_xdg = dev_ca(Some(&xdg));
    assert_eq!(in_xdg, xdg.join("lamina/dev-ca/ca.crt"));
    assert!(in_xdg.is_file());
    assert_ne!(
        std::fs::read(in_home).unwrap(),
        std::fs::read(in_xdg).unwrap()
    );
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let scratch = Scratch::new();
    scratch.dev_cert_ok(&["keep.test"]);
    let certificate = scratch.work().join("tls/keep.test.crt");
    let key = scratch.work().join("tls/keep.test.key");
    let (certificate_before, key_before) = (
        std::fs::read(&certificate).unwrap(),
        std::fs::read(&key).unwrap(),
    );

    let again = scratch.dev_cert(&["keep.test", "127.0.0.1"]);
    assert_eq!(again.status.code(), Some(2));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("exists") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(std::fs::read(&certificate).unwrap(), certificate_before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    // The key alone left behind is protected too.
    std::fs::remove_file(&certificate).unwrap();
    assert_eq!(scratch.dev_cert(&["keep.test"]).status.code(), Some(2));
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    scratch.dev_cert_ok(&["keep.test", "--force"]);
    assert_ne!(
        std::fs::read(&key).unwrap(),
        key_before,
        "--force made no new key"
    );
    assert_eq!(mode(&key), 0o600);
    assert!(certificate.is_file());
}

#[test]
fn bad_names_and_arguments_exit_2_with_a_message() {
    let scratch = Scratch::new();
    for (names, expected) in [
        (&[""][..], "an empty name"),
        (&["two words"][..], "whitespace"),
        (&["a.*.test"][..], "wildcard"),
        (&["*.test"][..], "wildcard"),
        (&["exa_mple.test"][..], "not allowed"),
        (&["example.test."][..], "trailing dot"),
        (&["--", "-lead.test"][..], "hyphen"),
        (&["good.test", "a..test"][..], "'a..test'"),
        (&["dup.test", "DUP.test"][..], "twice"),
        (&["x.test", "--days", "0"][..], "--days"),
        (&["x.test", "--days", "826"][..], "--days"),
        (&[][..], "NAME"),
    ] {
        let output = scratch.dev_cert(names);
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{names:?}: {said}");
        assert!(said.contains(expected), "{names:?}: {said}");
    }
    // Nothing was made: neither the CA nor any file.
    assert!(
        !scratch.ca_dir().exists(),
        "a CA was made for bad arguments"
    );
    assert!(!scratch.work().join("tls").exists());
}

#[test]
fn concurrent_runs_make_one_ca() {
    let scratch = Scratch::new();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            lamina()
                .args(["tls", "dev-ca", "--ca-dir"])
                .arg(scratch.ca_dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut made = 0;
    for run in runs {
        let output = run.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{said}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap().trim_end(),
            path(&scratch.ca_certificate())
        );
        made += usize::from(said.contains("made a development CA"));
    }
    assert_eq!(made, 1, "more than one run made the CA");
    // And the CA left is whole: a certificate made now is signed by it.
    if tools_or_skip("lamina tls dev-cert: concurrent CA", &["openssl"]) {
        scratch.dev_cert_ok(&["after.test"]);
        assert_verifies(
            &scratch.ca_certificate(),
            &scratch.work().join("tls/after.test.crt"),
        );
    }
}

#[test]
fn an_incomplete_ca_is_reported_not_replaced() {
    let scratch = Scratch::new();
    scratch.dev_cert_ok(&["first.test"]);
    std::fs::remove_file(scratch.ca_certificate()).unwrap();
    let output = scratch.dev_cert(&["second.test"]);
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("incomplete") && said.contains("ca.crt"),
        "{said}"
    );
    assert!(
        !scratch.ca_certificate().exists(),
        "a new CA certificate was made"
    );
    assert!(!scratch.work().join("tls/second.test.crt").exists());
}
