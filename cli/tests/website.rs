//! The website unikernel against real clients: curl, Python's http.client
//! and headless Chromium, on unix, spt and hvt (user-mode networking, no
//! root needed).

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn targets() -> Vec<&'static str> {
    let mut targets = vec!["unix"];
    targets.extend(unikernel_targets("website"));
    targets
}

/// Boots the website on `target` reachable at 127.0.0.1:returned port.
fn boot(target: &str) -> (Server, u16) {
    let port = free_port();
    let mut server = if target == "unix" {
        Server::start(&[
            "run",
            "--release",
            "-t",
            "unix",
            "website",
            "--",
            &format!("--port={port}"),
            // A checkout with certificates in examples/website/tls (made by
            // scripts/main.sh) serves HTTPS too: not on the host's 443.
            &format!("--https-port={}", free_port()),
        ])
    } else {
        let forward = format!("{port}:80");
        Server::start(&[
            "run",
            "--release",
            "-t",
            target,
            "--mem=16",
            "--port",
            &forward,
            "website",
        ])
    };
    server.wait_for_port(port, Duration::from_secs(300));
    // Past the tender's forward, wait for the guest's own server.
    for _ in 0..100 {
        if curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/"),
        ]) == "200"
        {
            return (server, port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{target}: the website does not answer");
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn website_serves_real_clients_on_every_target() {
    for target in targets() {
        let (_server, port) = boot(target);
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let head = curl(&["-i", &url("/")]);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{target}: {head}");
        for needle in [
            "Content-Type: text/html; charset=utf-8",
            "ETag: \"",
            "Server: Lamina",
            "Date: ",
            "Accept-Ranges: bytes",
        ] {
            assert!(head.contains(needle), "{target}: {needle} missing");
        }
        assert!(
            head.contains("<title>A library operating system in Rust · Lamina</title>"),
            "{target}"
        );
        let css = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{content_type}",
            &url("/style.css"),
        ]);
        assert_eq!(css, "200 text/css; charset=utf-8", "{target}");
        let svg = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{content_type}",
            &url("/logo.svg"),
        ]);
        assert_eq!(svg, "image/svg+xml", "{target}");
        // HEAD: headers, no body.
        assert!(!curl(&["-I", &url("/")]).contains("<html"), "{target}");
        // ETag and If-None-Match.
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .unwrap()
            .trim()
            .to_owned();
        let not_modified = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {etag}"),
            &url("/"),
        ]);
        assert_eq!(not_modified, "304", "{target}");
        // Range.
        let partial = curl(&["-i", "-r", "0-9", &url("/style.css")]);
        assert!(
            partial.starts_with("HTTP/1.1 206") && partial.contains("Content-Range: bytes 0-9/"),
            "{target}: {partial}"
        );
        assert_eq!(
            curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-r",
                "999999-",
                &url("/style.css")
            ]),
            "416"
        );
        // Not found, and the store's 404 page.
        let missing = curl(&["-i", &url("/no/such/page")]);
        assert!(
            missing.starts_with("HTTP/1.1 404") && missing.contains("Not found"),
            "{target}"
        );
        // Keep-alive: curl reuses one connection for several URLs.
        let reuse = Command::new("curl")
            .args([
                "-sv",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
                &url("/"),
                &url("/docs/targets.html"),
            ])
            .output()
            .unwrap();
        let reuse = String::from_utf8_lossy(&reuse.stderr);
        assert!(
            reuse.contains("e-using existing connection")
                || reuse.contains("Reusing existing connection"),
            "{target}"
        );
        // Pipelining: three requests written at once, three answers in order.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let statuses: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("HTTP/1.1"))
            .collect();
        assert_eq!(
            statuses,
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 404 Not Found"
            ],
            "{target}"
        );
        // Malformed and oversized requests.
        for (request, status) in [
            (b"NONSENSE\r\n\r\n".to_vec(), "400"),
            (
                [b"GET /".as_slice(), &[b'a'; 5000], b" HTTP/1.1\r\n\r\n"].concat(),
                "414",
            ),
        ] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&request).unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{target}: {answer}"
            );
        }
        // Python's http.client over one connection.
        let script = format!(
            "import http.client\nc = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
             for p in ['/', '/docs/getting-started.html', '/style.css']:\n    c.request('GET', p); r = c.getresponse(); r.read(); print(r.status)\n"
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200\n200\n200\n",
            "{target}"
        );
    }
}

#[test]
fn chromium_renders_the_site() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| installed(c));
    let Some(chromium) = chromium else {
        skip_or_fail(
            "rendering the site in Chromium",
            "chromium is not installed (scripts/setup.sh installs it)",
        );
        return;
    };
    for target in targets() {
        let (_server, port) = boot(target);
        let dir = tempfile::tempdir().unwrap();
        let shot = dir.path().join("site.png");
        let status = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1024,768")
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        assert!(
            shot.exists(),
            "{target}: no screenshot: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{target}: not a PNG");
        // A blank page compresses to almost nothing; the rendered site (a
        // dark-to-green banner, text, the logo) does not.
        assert!(
            png.len() > 20_000,
            "{target}: the screenshot looks blank ({} bytes)",
            png.len()
        );
    }
}

/// A second build of an unchanged website reuses the image: Jitsu builds
/// it once per service it starts, and a build script that asked cargo to
/// watch a missing certificate directory made every one of those a full
/// rebuild (about 20 s each; a hundred services took 15 minutes). Nor do
/// the variables that name lamina's tools (`LAMINA_SPT`, `LAMINA_QEMU`...)
/// count as build inputs: they were recorded in the image's provenance,
/// so setting one rebuilt it.
///
/// In the shared target directory (no second cold build of the website):
/// the one test that builds it with other inputs, https.rs with its
/// certificates, builds in a directory of its own.
#[test]
fn an_unchanged_website_is_not_rebuilt() {
    let target = "spt";
    let build = |tools: &[(&str, &str)]| {
        let output = lamina()
            .args(["build", "--release", "-t", target, "website"])
            .env_remove("LAMINA_TLS_CA")
            .env_remove("LAMINA_TLS_DIR")
            .env_remove("LAMINA_SPT")
            .env_remove("LAMINA_QEMU")
            .envs(tools.iter().copied())
            .output()
            .expect("cannot start lamina");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let first = built_image(&build(&[])).expect("lamina reports what it built");
    let built = std::fs::metadata(&first).unwrap().modified().unwrap();
    let stderr = build(&[
        ("LAMINA_SPT", "/elsewhere/lamina-spt"),
        ("LAMINA_QEMU", "/elsewhere/qemu-system-x86_64"),
    ]);
    assert!(!stderr.contains("Compiling website"), "rebuilt:\n{stderr}");
    let again = std::fs::metadata(&first).unwrap().modified().unwrap();
    assert_eq!(built, again, "the image was written again:\n{stderr}");
}
