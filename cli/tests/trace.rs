//! `lamina run --trace` and `lamina trace`: a real website on the unix
//! target, traced while curl asks it for pages, gives a Chrome trace-event
//! JSON file in which each connection task has its row, each request its
//! slice with method, path and status, and each wake-up an arrow that ends
//! where it should.

mod common;

use common::{free_port, lamina, run_lamina, tools_or_skip};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn curl_status(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_traced_website_run_gives_requests_tasks_and_wakeups_on_a_timeline() {
    if !tools_or_skip("tracing the website", &["curl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site.json");
    let port = free_port();
    let mut run = lamina()
        .args(["run", "--release", "-t", "unix", "--trace"])
        .arg(&out)
        .args([
            "website",
            "--",
            &format!("--port={port}"),
            &format!("--https-port={}", free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while curl_status(&format!("{url}/")) != "200" {
        // The first run builds the website.
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the website never answered"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "lamina run ended before the website answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..3 {
        assert_eq!(curl_status(&format!("{url}/")), "200");
    }
    assert_eq!(curl_status(&format!("{url}/no-such-page")), "404");
    // lamina forwards SIGTERM to the website, then writes the trace.
    send_sigterm(run.id());
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(
        stderr.contains("open it at https://ui.perfetto.dev"),
        "{stderr}"
    );

    let json: Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the trace is JSON");
    let events = json["traceEvents"].as_array().expect("traceEvents");
    let of = |phase: &'static str| events.iter().filter(move |e| e["ph"] == phase);

    // Requests: a slice each, with what was asked and the status.
    let requests: Vec<&Value> = of("B").filter(|e| e["name"] == "http request").collect();
    let details: Vec<&str> = requests
        .iter()
        .map(|e| e["args"]["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().filter(|d| **d == "GET /").count() >= 4,
        "{details:?}"
    );
    assert!(details.contains(&"GET /no-such-page"), "{details:?}");
    let results: Vec<&str> = of("E")
        .filter_map(|e| e["args"]["result"].as_str())
        .collect();
    assert!(
        results.iter().filter(|r| **r == "200").count() >= 4,
        "{results:?}"
    );
    assert!(results.contains(&"404"), "{results:?}");

    // Rows: main, and connection tasks named after where they were spawned.
    let names: BTreeMap<i64, &str> = of("M")
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_i64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(names.values().any(|n| *n == "main"), "{names:?}");
    let request_rows: BTreeSet<i64> = requests
        .iter()
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    for row in &request_rows {
        assert!(
            names[row].starts_with("task ") && names[row].contains("http/src/"),
            "{names:?}"
        );
    }
    // Slices nest properly on every row.
    let mut depth: BTreeMap<i64, i64> = BTreeMap::new();
    for e in events {
        let row = e["tid"].as_i64().unwrap_or(0);
        match e["ph"].as_str() {
            Some("B") => *depth.entry(row).or_default() += 1,
            Some("E") => {
                let d = depth.entry(row).or_default();
                *d -= 1;
                assert!(*d >= 0, "an E without its B on row {row}");
            }
            _ => {}
        }
    }
    assert!(
        depth.values().all(|d| *d == 0),
        "unclosed slices: {depth:?}"
    );
    // Wake-ups: every arrow that ends started, and the request tasks were
    // woken by the devices (a socket became readable).
    let starts: BTreeMap<i64, &Value> = of("s").map(|e| (e["id"].as_i64().unwrap(), e)).collect();
    let ends: Vec<&Value> = of("f").collect();
    assert!(ends.len() >= 8, "{} wake-up arrows", ends.len());
    for end in &ends {
        assert!(
            starts.contains_key(&end["id"].as_i64().unwrap()),
            "an arrow with no start: {end}"
        );
    }
    let devices = names
        .iter()
        .find(|(_, n)| **n == "devices")
        .map(|(t, _)| *t)
        .expect("a devices row");
    assert!(ends.iter().any(|f| {
        request_rows.contains(&f["tid"].as_i64().unwrap())
            && starts[&f["id"].as_i64().unwrap()]["tid"] == devices
    }));

    // `lamina trace` exports the same recording the same way.
    let again = dir.path().join("again.json");
    let recording = dir.path().join("site.json.lmtrace");
    let exported = run_lamina(&[
        "trace",
        recording.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(exported.status.success());
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    // A file that is not a recording is refused with a clear message.
    let refused = run_lamina(&[
        "trace",
        out.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a Lamina trace file"));
}

/// SIGTERM to `pid` with kill(1).
fn send_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
