//! HTTPS in the website unikernel against real clients: curl, `openssl
//! s_client`, Python's ssl, headless Chromium and testssl.sh; bad TLS input
//! (spt, hvt); the redirect and HSTS boot arguments; and no guest system
//! call for randomness (spt, under strace). On unix, spt and hvt, with
//! user-mode networking (no root needed).
//!
//! One certificate directory serves the whole test binary (made once, kept
//! under target/cli-tests-https/, so that the builds in
//! target/cli-tests-https-build are not thrown away between runs):
//! `localhost.crt` (ECDSA P-256, for localhost and 127.0.0.1; it sorts
//! first, so it is the certificate for clients that send no SNI) and `other.test.crt` (RSA 2048), both signed by a
//! development CA made by `lamina tls dev-cert`.

mod common;

use common::*;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The page's title, in every client's view of `/`.
const TITLE: &str = "<title>A library operating system in Rust · Lamina</title>";

/// Guest memory, MiB: 2,000 half-open handshakes (see check_bad_input) need
/// more than 32 (at 16, 24 and 32 the website panics on a failed allocation
/// and exits; at 48 and 64 it serves on).
const GUEST_MIB: u32 = 64;

/// Where the certificates are kept between runs.
fn fixture_dir() -> PathBuf {
    root()
        .join("target")
        .join("cli-tests-https")
        .join("fixture")
}

/// The certificates and the CA that signed them.
struct Certificates {
    /// The directory baked into the image (`LAMINA_TLS_DIR`).
    tls_dir: PathBuf,
    /// The development CA's certificate, which the clients trust.
    ca: PathBuf,
}

/// Makes the certificates once per test binary; kept between runs while
/// they are valid for another month.
fn certificates() -> &'static Certificates {
    static CERTIFICATES: OnceLock<Certificates> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        let dir = fixture_dir();
        let certificates = Certificates {
            tls_dir: dir.join("tls"),
            ca: dir.join("ca").join("ca.crt"),
        };
        let leaves = ["localhost.crt", "other.test.crt"].map(|c| certificates.tls_dir.join(c));
        let valid = |c: &Path| {
            Command::new("openssl")
                .args(["x509", "-noout", "-checkend", "2592000", "-in"])
                .arg(c)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !(valid(&certificates.ca) && leaves.iter().all(|c| valid(c))) {
            let _ = std::fs::remove_dir_all(&dir);
            for names in [
                &["localhost", "127.0.0.1"][..],
                &["other.test", "--rsa"][..],
            ] {
                let output = lamina()
                    .args(["tls", "dev-cert", "--days", "825", "--dir"])
                    .arg(&certificates.tls_dir)
                    .arg("--ca-dir")
                    .arg(dir.join("ca"))
                    .args(names)
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "lamina tls dev-cert {names:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        certificates
    })
}

/// `lamina` building with the certificates baked in, in a target
/// directory of its own: in the shared one, each build with them and each
/// without (the other tests', in the other CI stream) rebuilt the website
/// over the other's image, and a test could boot the other's. The tenders
/// and the user-mode network are the shared directory's: only the
/// website is built here (rebuilding those too took a minute and a half of
/// a cold CI run).
fn lamina_https() -> Command {
    let mut command = lamina();
    command.env("LAMINA_TLS_DIR", &certificates().tls_dir);
    command.env(
        "CARGO_TARGET_DIR",
        root().join("target").join("cli-tests-https-build"),
    );
    command.env("LAMINA_SPT", tender("spt"));
    command.env("LAMINA_HVT", tender("hvt"));
    command.env("LAMINA_USERNET", usernet_binary());
    command
}

/// unix, spt, and hvt where KVM is usable.
fn targets(test: &str) -> Vec<&'static str> {
    let mut targets = vec!["unix"];
    targets.extend(unikernel_targets(test));
    targets
}

/// The website, booted on a target, its console in a file; its process
/// group is killed when dropped.
struct Website {
    target: &'static str,
    child: Child,
    console: PathBuf,
    /// HTTP, on 127.0.0.1.
    http: u16,
    /// HTTPS, on 127.0.0.1.
    https: u16,
    _scratch: tempfile::TempDir,
}

/// How to start the website on a target: the default, or with the tender
/// wrapped in a command (strace).
#[derive(Default)]
struct Boot<'a> {
    /// Boot arguments for the website.
    args: &'a [&'a str],
    /// Serve HTTPS on the same port in the guest as on the host (so that
    /// a redirect names the port the client reaches).
    same_https_port: bool,
    /// A program the spt tender is run through (`LAMINA_SPT`).
    spt_wrapper: Option<&'a Path>,
    /// Guest memory in MiB, if not [`GUEST_MIB`].
    mem: Option<u32>,
}

impl Website {
    fn boot(target: &'static str, boot: Boot) -> Website {
        let scratch = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        let mut command = lamina_https();
        command.args(["run", "--release", "-t", target]);
        let mut guest_args: Vec<String> = boot.args.iter().map(|a| a.to_string()).collect();
        if target == "unix" {
            guest_args.extend([format!("--port={http}"), format!("--https-port={https}")]);
        } else {
            let guest_https = if boot.same_https_port { https } else { 443 };
            if boot.same_https_port {
                guest_args.push(format!("--https-port={https}"));
            }
            command
                .arg(format!("--mem={}", boot.mem.unwrap_or(GUEST_MIB)))
                .args(["--port", &format!("{http}:80")])
                .args(["--port", &format!("{https}:{guest_https}")]);
        }
        if let Some(wrapper) = boot.spt_wrapper {
            command.env("LAMINA_SPT", wrapper);
        }
        command.arg("website").arg("--").args(&guest_args);
        let console = scratch.path().join("console");
        let log = File::create(&console).unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cannot start lamina");
        let mut website = Website {
            target,
            child,
            console,
            http,
            https,
            _scratch: scratch,
        };
        website.wait_until_serving(Duration::from_secs(300));
        website
    }

    /// Waits (through any build) until both servers answer.
    fn wait_until_serving(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            assert!(
                self.alive(),
                "{}: the website exited:\n{}",
                self.target,
                std::fs::read_to_string(&self.console).unwrap_or_default()
            );
            let http = curl_status(&[&format!("http://127.0.0.1:{}/", self.http)]);
            let https = curl_status(&self.https_args("/", &[]));
            // (HTTP may answer with a redirect.)
            if http != "000" && https == "200" {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{}: the website does not answer on HTTP and HTTPS",
            self.target
        );
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the website and lamina printed.
    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// curl arguments for `https://localhost:PORT{path}` (SNI localhost)
    /// trusting the test CA, `extra` first.
    fn https_args(&self, path: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        args.extend([
            "--cacert".to_owned(),
            certificates().ca.display().to_string(),
            "--resolve".to_owned(),
            format!("localhost:{}:127.0.0.1", self.https),
            format!("https://localhost:{}{path}", self.https),
        ]);
        args
    }

    /// Fails the test if the website died or reported a panic.
    fn assert_healthy(&mut self) {
        let console = self.console();
        assert!(
            self.alive() && !console.contains("panic"),
            "{}: the website crashed or exited:\n{console}",
            self.target
        );
        let http = curl_status(&[&format!("http://127.0.0.1:{}/", self.http)]);
        let https = curl_status(&self.https_args("/", &[]));
        assert_eq!(
            (http.as_str(), https.as_str()),
            ("200", "200"),
            "{}",
            self.target
        );
    }
}

impl Drop for Website {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Runs `program` to completion with nothing on its input.
fn run(program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn curl(args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed")
}

/// The status code curl gets ("000" when it gets none).
fn curl_status(args: &[impl AsRef<std::ffi::OsStr>]) -> String {
    let mut all: Vec<std::ffi::OsString> = vec!["-o".into(), "/dev/null".into()];
    all.extend(["-w".into(), "%{http_code}".into()]);
    all.extend(args.iter().map(|a| a.as_ref().to_owned()));
    String::from_utf8_lossy(&curl(&all).stdout).into_owned()
}

/// `openssl s_client` to the website's HTTPS port with `args`, trusting the
/// test CA, sending one GET and waiting for the server to close; its whole
/// output (standard output and error) and whether it succeeded.
fn s_client(website: &Website, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", website.https),
        ])
        .arg("-CAfile")
        .arg(&certificates().ca)
        .args(["-ign_eof", "-verify_return_error"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    use std::io::Write;
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The `New, TLSv1.3, Cipher is X` (or `Reused, ...`) line of s_client.
fn session_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.starts_with("New, ") || l.starts_with("Reused, "))
        .unwrap_or("")
}

/// curl: TLS 1.3 and 1.2 give the page HTTP gives; 1.1 and below fail.
fn check_curl(website: &Website) {
    let target = website.target;
    let over_http = curl(&[format!("http://127.0.0.1:{}/", website.http)]);
    assert!(String::from_utf8_lossy(&over_http.stdout).contains(TITLE));
    for versions in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        let out = curl(&website.https_args(
            "/",
            &[&["-w", "\n%{http_code} %{ssl_verify_result}"], versions].concat(),
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap();
        assert_eq!(
            status,
            "200 0",
            "{target} {versions:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            body.as_bytes(),
            over_http.stdout,
            "{target} {versions:?}: not the page HTTP gives"
        );
        // With no SNI (an address), the first certificate, which names it.
        let by_address = curl_status(
            &[
                &["--cacert", certificates().ca.to_str().unwrap()][..],
                versions,
                &[&format!("https://127.0.0.1:{}/", website.https)],
            ]
            .concat(),
        );
        assert_eq!(by_address, "200", "{target} {versions:?} by address");
    }
    for old in ["1.1", "1.0"] {
        let out = curl(&website.https_args("/", &["--tlsv1", "--tls-max", old]));
        assert!(!out.status.success(), "{target}: TLS {old} was accepted");
        eprintln!(
            "{target}: TLS {old} refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Certificate checking is real: without the CA, curl refuses.
    let untrusted = curl(&[format!("https://127.0.0.1:{}/", website.https)]);
    assert!(
        !untrusted.status.success(),
        "{target}: an unknown CA was trusted"
    );
}

/// `openssl s_client`: protocols, ciphers, groups, ALPN, SNI, resumption,
/// and what must be refused.
fn check_openssl(website: &Website) {
    let target = website.target;
    let expect = |args: &[&str], line: &str| {
        let (ok, text) = s_client(website, args);
        assert!(
            ok && text.contains(TITLE),
            "{target} {args:?}: failed:\n{text}"
        );
        assert_eq!(session_line(&text), line, "{target} {args:?}");
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{target} {args:?}"
        );
        text
    };
    expect(
        &["-tls1_3"],
        "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384",
    );
    for suite in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        expect(
            &["-tls1_3", "-ciphersuites", suite],
            &format!("New, TLSv1.3, Cipher is {suite}"),
        );
    }
    for (sni, cipher) in [
        ("localhost", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("localhost", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("localhost", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ("other.test", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("other.test", "ECDHE-RSA-AES256-GCM-SHA384"),
        ("other.test", "ECDHE-RSA-CHACHA20-POLY1305"),
    ] {
        expect(
            &["-tls1_2", "-servername", sni, "-cipher", cipher],
            &format!("New, TLSv1.2, Cipher is {cipher}"),
        );
    }
    // Key exchange groups. (With TLS 1.2 an ECDSA certificate's curve must
    // be among the client's groups, so X25519 alone goes with the RSA one.)
    for (args, key) in [
        (
            ["-tls1_3", "-groups", "X25519", "-servername", "localhost"],
            "Server Temp Key: X25519",
        ),
        (
            ["-tls1_3", "-groups", "P-256", "-servername", "localhost"],
            "Server Temp Key: ECDH, prime256v1",
        ),
        (
            ["-tls1_2", "-groups", "X25519", "-servername", "other.test"],
            "Server Temp Key: X25519",
        ),
        (
            ["-tls1_2", "-groups", "P-256", "-servername", "localhost"],
            "Server Temp Key: ECDH, prime256v1",
        ),
    ] {
        let (ok, text) = s_client(website, &args);
        assert!(ok && text.contains(key), "{target} {args:?}:\n{text}");
    }
    // ALPN: http/1.1 negotiated; nothing else offered, refused.
    for version in ["-tls1_3", "-tls1_2"] {
        let text = expect(
            &[version, "-alpn", "h2,http/1.1"],
            session_line_for(version),
        );
        assert!(
            text.contains("ALPN protocol: http/1.1"),
            "{target} {version}:\n{text}"
        );
        let (ok, text) = s_client(website, &[version, "-alpn", "spdy/1"]);
        assert!(
            !ok && !text.contains(TITLE),
            "{target} {version}: an unknown ALPN was accepted:\n{text}"
        );
    }
    // SNI chooses the certificate; no SNI gets the first (localhost).
    for (args, subject, key) in [
        (
            &["-servername", "other.test"][..],
            "subject=CN = other.test",
            "Public-Key: (2048 bit)",
        ),
        (
            &["-servername", "localhost"][..],
            "subject=CN = localhost",
            "Public-Key: (256 bit)",
        ),
        (
            &["-noservername"][..],
            "subject=CN = localhost",
            "Public-Key: (256 bit)",
        ),
    ] {
        for version in ["-tls1_3", "-tls1_2"] {
            let (ok, text) = s_client(website, &[&[version, "-showcerts"][..], args].concat());
            assert!(
                ok && text.contains(subject),
                "{target} {args:?} {version}:\n{text}"
            );
            let leaf = first_pem(&text);
            let printed = openssl_stdin(&["x509", "-noout", "-text"], &leaf);
            assert!(printed.contains(key), "{target} {args:?}: {printed}");
            let name = subject.trim_start_matches("subject=CN = ");
            assert!(
                printed.contains(&format!("DNS:{name}")),
                "{target} {args:?}: no SAN {name}"
            );
        }
    }
    // Resumption from a ticket, TLS 1.3 and 1.2.
    let scratch = tempfile::tempdir().unwrap();
    for version in ["-tls1_3", "-tls1_2"] {
        let session = scratch.path().join(version);
        let session = session.to_str().unwrap();
        expect(&[version, "-sess_out", session], session_line_for(version));
        let (ok, text) = s_client(website, &[version, "-sess_in", session]);
        assert!(
            ok && session_line(&text).starts_with("Reused, "),
            "{target} {version}: the session was not resumed:\n{text}"
        );
    }
    // No cipher without forward secrecy or without AEAD, even when the
    // client offers nothing else.
    for (sni, cipher) in [
        ("localhost", "AES128-SHA"),
        ("localhost", "AES256-GCM-SHA384"),
        ("other.test", "AES128-GCM-SHA256"),
        ("other.test", "ECDHE-RSA-AES128-SHA"),
        ("localhost", "ECDHE-ECDSA-AES256-SHA384"),
        ("other.test", "DHE-RSA-AES128-GCM-SHA256"),
    ] {
        let (ok, text) = s_client(website, &["-tls1_2", "-servername", sni, "-cipher", cipher]);
        assert!(
            !ok && !text.contains(TITLE),
            "{target}: {cipher} was accepted:\n{text}"
        );
    }
    for old in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(website, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(
            !ok && !text.contains(TITLE),
            "{target}: {old} was accepted:\n{text}"
        );
    }
}

fn session_line_for(version: &str) -> &'static str {
    match version {
        "-tls1_3" => "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384",
        _ => "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384",
    }
}

/// The first PEM certificate in `text`.
fn first_pem(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    text[start..end].to_owned() + "\n"
}

/// `openssl ARGS` with `input` on standard input; its standard output.
fn openssl_stdin(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

/// Python's ssl: GET / over TLS 1.3 and 1.2, the version and ALPN it
/// reports, and the same body as over HTTP.
fn check_python(website: &Website) {
    let script = format!(
        r#"
import http.client, ssl
plain = http.client.HTTPConnection("127.0.0.1", {http}, timeout=10)
plain.request("GET", "/"); page = plain.getresponse().read()
for version in [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2]:
    context = ssl.create_default_context(cafile={ca:?})
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["http/1.1"])
    c = http.client.HTTPSConnection("localhost", {https}, context=context, timeout=10)
    c.request("GET", "/"); r = c.getresponse(); body = r.read()
    print(r.status, c.sock.version(), c.sock.selected_alpn_protocol(), body == page, len(body) > 1000)
"#,
        http = website.http,
        https = website.https,
        ca = certificates().ca.display().to_string(),
    );
    let out = run("python3", &["-c", &script]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 TLSv1.3 http/1.1 True True\n200 TLSv1.2 http/1.1 True True\n",
        "{}: {}",
        website.target,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Headless Chromium trusting the test CA (an NSS database in a HOME of its
/// own) shows the page.
fn check_chromium(website: &Website, chromium: &str) {
    let home = tempfile::tempdir().unwrap();
    let nssdb = format!("sql:{}/.pki/nssdb", home.path().display());
    std::fs::create_dir_all(home.path().join(".pki/nssdb")).unwrap();
    let made = run("certutil", &["-d", &nssdb, "-N", "--empty-password"]);
    assert!(made.status.success(), "certutil -N: {made:?}");
    let ca = certificates().ca.display().to_string();
    let added = run(
        "certutil",
        &["-d", &nssdb, "-A", "-t", "C,,", "-n", "lamina", "-i", &ca],
    );
    assert!(added.status.success(), "certutil -A: {added:?}");
    let out = Command::new(chromium)
        .env("HOME", home.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("https://localhost:{}/", website.https))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(TITLE),
        "{}: Chromium did not show the page:\n{dom}\n{}",
        website.target,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bad input never crashes the unikernel (see tls_bad_input.py).
fn check_bad_input(website: &mut Website) {
    let script = root().join("cli/tests/tls_bad_input.py");
    let start = Instant::now();
    let out = run(
        "python3",
        &[
            script.as_os_str(),
            website.https.to_string().as_ref(),
            certificates().ca.as_os_str(),
            "2000".as_ref(),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "--- {}: bad input ({:?}):\n{report}{}",
        website.target,
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{}: {report}\nconsole:\n{}",
        website.target,
        website.console()
    );
    website.assert_healthy();
}

/// Every client against the website on every target; on spt and hvt also
/// bad input, on the same boot, after which it must still serve.
#[test]
fn https_serves_real_clients_on_every_target() {
    if !tools_or_skip(
        "HTTPS against real clients",
        &["curl", "openssl", "python3"],
    ) {
        return;
    }
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| installed(c));
    let chromium = match chromium {
        Some(c) if installed("certutil") => Some(c),
        _ => {
            skip_or_fail(
                "HTTPS in Chromium",
                "chromium or certutil is not installed (scripts/setup.sh installs them)",
            );
            None
        }
    };
    for target in targets("HTTPS against real clients") {
        let start = Instant::now();
        let mut website = Website::boot(target, Boot::default());
        let booted = start.elapsed();
        check_curl(&website);
        check_openssl(&website);
        check_python(&website);
        if let Some(chromium) = chromium {
            check_chromium(&website, chromium);
        }
        if target != "unix" {
            check_bad_input(&mut website);
        }
        website.assert_healthy();
        eprintln!(
            "--- {target}: booted in {booted:?}, checked in {:?}",
            start.elapsed() - booted
        );
    }
}

/// Guest memory, MiB, for [`more_connections_than_fit_are_refused_not_fatal`].
const SMALL_GUEST_MIB: u32 = 32;

/// A `--max-connections` far past what a small guest holds is lowered to
/// what fits, with a line in the log saying so; then more connections than
/// that (complete TLS handshakes kept idle, and half-open ones) leave the
/// unikernel serving new clients and the idle ones. Before the limit, the
/// website died of a failed allocation: at 64 MiB, at the 4,922nd idle
/// connection.
#[test]
fn more_connections_than_fit_are_refused_not_fatal() {
    if !tools_or_skip("too many HTTPS connections", &["curl", "python3"]) {
        return;
    }
    for target in unikernel_targets("too many HTTPS connections") {
        let mut website = Website::boot(
            target,
            Boot {
                args: &["--max-connections=1000000"],
                mem: Some(SMALL_GUEST_MIB),
                ..Boot::default()
            },
        );
        let console = website.console();
        let line = console
            .lines()
            .find(|line| line.contains("--max-connections=1000000 does not fit"))
            .unwrap_or_else(|| panic!("{target}: no line about the limit:\n{console}"));
        let fit: usize = line
            .split("at most ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{target}: no number in {line:?}"));
        assert!(
            (100..5000).contains(&fit),
            "{target}: {fit} connections in {SMALL_GUEST_MIB} MiB"
        );
        // Half the limit idle, then twice the limit half-open.
        let (idle, half_open) = (fit / 2, 2 * fit);
        let script = root().join("cli/tests/tls_flood.py");
        let start = Instant::now();
        let out = run(
            "python3",
            &[
                script.as_os_str(),
                website.https.to_string().as_ref(),
                certificates().ca.as_os_str(),
                idle.to_string().as_ref(),
                half_open.to_string().as_ref(),
            ],
        );
        let report = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "--- {target}: at most {fit} connections; {idle} idle and {half_open} half-open ({:?}):\n{report}{}",
            start.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{target}: {report}\nconsole:\n{}",
            website.console()
        );
        website.assert_healthy();
    }
}

/// `--redirect-https`: HTTP answers 301 to the HTTPS URL, which curl then
/// follows; `--hsts-max-age`: HTTPS responses carry HSTS, HTTP ones not.
#[test]
fn redirect_and_hsts_boot_arguments() {
    for target in targets("the redirect and HSTS boot arguments") {
        let website = Website::boot(
            target,
            Boot {
                args: &["--redirect-https", "--hsts-max-age=31536000"],
                same_https_port: true,
                ..Boot::default()
            },
        );
        let (http, https) = (website.http, website.https);
        let out = curl(&[
            "-i",
            &format!("http://localhost:{http}/docs/targets.html?x=1"),
        ]);
        let head = String::from_utf8_lossy(&out.stdout);
        assert!(head.starts_with("HTTP/1.1 301"), "{target}: {head}");
        assert!(
            head.contains(&format!(
                "Location: https://localhost:{https}/docs/targets.html?x=1\r\n"
            )),
            "{target}: {head}"
        );
        assert!(
            !head.contains("Strict-Transport-Security"),
            "{target}: HSTS over HTTP"
        );
        // curl follows it to the page, over TLS.
        let followed = curl(&[
            "-L",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{url_effective}",
            "--cacert",
            certificates().ca.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{https}:127.0.0.1"),
            "--resolve",
            &format!("localhost:{http}:127.0.0.1"),
            &format!("http://localhost:{http}/style.css"),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&followed.stdout),
            format!("200 https://localhost:{https}/style.css"),
            "{target}"
        );
        let out = curl(&website.https_args("/", &["-i"]));
        let head = String::from_utf8_lossy(&out.stdout);
        assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}");
        assert!(
            head.contains("Strict-Transport-Security: max-age=31536000\r\n"),
            "{target}: {head}"
        );
    }
}

/// testssl.sh against the unikernel (hvt where KVM is usable, else spt):
/// no protocol below TLS 1.2, no cipher outside ECDHE with AEAD, no
/// vulnerability finding of severity HIGH or CRITICAL.
#[test]
fn testssl_finds_nothing_weak() {
    if !tools_or_skip("testssl.sh against the website", &["testssl", "python3"]) {
        return;
    }
    let target = if kvm_or_skip("testssl.sh on hvt (spt instead)") {
        "hvt"
    } else {
        "spt"
    };
    let website = Website::boot(target, Boot::default());
    let scratch = tempfile::tempdir().unwrap();
    let json = scratch.path().join("testssl.json");
    let start = Instant::now();
    // -p protocols, -E the ciphers of each protocol, -f forward secrecy,
    // -U the vulnerabilities.
    let out = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "--jsonfile"])
        .arg(&json)
        .args(["-p", "-E", "-f", "-U"])
        .arg(format!("127.0.0.1:{}", website.https))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "--- testssl on {target} ({:?}):\n{}",
        start.elapsed(),
        String::from_utf8_lossy(&out.stdout)
    );
    // The findings, checked in Python (the JSON is a list of objects).
    let check = r#"
import json, re, sys
findings = json.load(open(sys.argv[1]))
bad = []
offered = lambda f: f["finding"].startswith("offered")
protocols = {f["id"]: f["finding"] for f in findings if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")}
print("protocols:", protocols)
for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    if old not in protocols or not protocols[old].startswith("not offered"):
        bad.append(f"protocol {old}: {protocols.get(old)}")
for new in ("TLS1_2", "TLS1_3"):
    if not protocols.get(new, "").startswith("offered"):
        bad.append(f"protocol {new} not offered: {protocols.get(new)}")
ciphers = [f["finding"] for f in findings if f["id"].startswith("cipher-")]
print("ciphers:"); [print("  ", c) for c in ciphers]
if not ciphers:
    bad.append("no cipher listed")
for c in ciphers:
    name = c.split()[3]  # "TLS 1.2 xc02b ECDHE-ECDSA-AES128-GCM-SHA256 ..."
    if not (name.startswith("TLS_") or (name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20-POLY1305" in name))):
        bad.append(f"cipher {c}")
for f in findings:
    if f["severity"] in ("HIGH", "CRITICAL"):
        bad.append(f"{f['id']} {f['severity']}: {f['finding']}")
    elif f["severity"] not in ("OK", "INFO", "DEBUG") and f["id"] not in ("scanProblem",):
        print("noted:", f["id"], f["severity"], f["finding"])
vulnerabilities = [f["id"] for f in findings if f["id"] in ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4")]
print("vulnerability checks run:", " ".join(vulnerabilities))
if len(vulnerabilities) < 10:
    bad.append(f"only these vulnerability checks ran: {vulnerabilities}")
for b in bad:
    print("BAD:", b)
sys.exit(1 if bad else 0)
"#;
    let out = run(
        "python3",
        &[std::ffi::OsStr::new("-c"), check.as_ref(), json.as_os_str()],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "--- testssl findings:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{target}: testssl found:\n{report}");
}

/// No guest system call for randomness: the spt tender, run under `strace
/// -f`, installs its seccomp filter (sealing the process: from then on the
/// guest runs on that thread, and only the calls the filter allows work)
/// and then serves TLS handshakes, whose keys, nonces and tickets need
/// entropy; no `getrandom` may follow the seal on that thread. Before the
/// seal the tender itself may call it (Rust's std seeds its hash maps), so
/// the trace is split there, by thread and by order. The filter would also
/// kill the guest on such a call; that handshakes succeed shows it did not.
#[test]
fn no_guest_system_call_for_randomness() {
    if !tools_or_skip(
        "tracing the spt guest's system calls",
        &["strace", "curl", "openssl"],
    ) {
        return;
    }
    // The tender, built as `lamina run` builds it, here so that the wrapper
    // can name it.
    let tender = tender("spt");
    let scratch = tempfile::tempdir().unwrap();
    let trace = scratch.path().join("trace");
    let wrapper = scratch.path().join("traced-spt");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -ttt -q -e trace=getrandom,seccomp -o '{}' '{}' \"$@\"\n",
            trace.display(),
            tender.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut website = Website::boot(
        "spt",
        Boot {
            spt_wrapper: Some(&wrapper),
            ..Boot::default()
        },
    );
    // Handshakes: new sessions over TLS 1.3 and 1.2, and a resumed one.
    for versions in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        for _ in 0..3 {
            assert_eq!(curl_status(&website.https_args("/", versions)), "200");
        }
    }
    let session = scratch.path().join("session");
    let session = session.to_str().unwrap();
    assert!(s_client(&website, &["-tls1_2", "-sess_out", session]).0);
    let (ok, text) = s_client(&website, &["-tls1_2", "-sess_in", session]);
    assert!(ok && session_line(&text).starts_with("Reused"), "{text}");
    website.assert_healthy();
    drop(website);

    let trace = std::fs::read_to_string(&trace).unwrap();
    eprintln!("--- strace of the spt tender:\n{trace}");
    // "PID SECONDS seccomp(SECCOMP_SET_MODE_FILTER, ...) = 0"
    let seal = trace
        .lines()
        .position(|l| l.contains("seccomp(SECCOMP_SET_MODE_FILTER") && l.ends_with("= 0"))
        .expect("the tender installs its seccomp filter");
    let lines: Vec<&str> = trace.lines().collect();
    let guest = lines[seal].split_whitespace().next().unwrap();
    let after: Vec<&&str> = lines[seal + 1..]
        .iter()
        .filter(|l| l.split_whitespace().next() == Some(guest))
        .collect();
    assert!(
        !after.iter().any(|l| l.contains("getrandom(")),
        "the guest (thread {guest}) called getrandom: {after:?}"
    );
    assert!(
        !trace.contains("killed by SIGSYS"),
        "the seccomp filter killed the guest:\n{trace}"
    );
}
