//! `lamina run --trace` and `lamina trace`: a real website on the unix
//! target, traced while curl asks it for pages, gives a Chrome trace-event
//! JSON file in which each connection task has its row, each request its
//! slice with method, path and status, and each wake-up an arrow that ends
//! where it should.

mod common;

use common::{free_port, lamina, root, run_lamina, skip_or_fail, tools_or_skip, unikernel_targets};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// The host's `CLOCK_MONOTONIC` in nanoseconds: the clock a recording's
/// times plus its header's offset are on.
fn host_monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the live `ts`.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(status, 0);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Runs the website on `target` under `lamina run --trace DIR/site.json`,
/// asks it for pages with curl, stops it with SIGTERM and returns the
/// trace's events.
fn traced_website(target: &str, dir: &std::path::Path) -> Vec<Value> {
    traced_website_json(target, dir)["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .clone()
}

/// [`traced_website`]'s whole JSON document.
fn traced_website_json(target: &str, dir: &std::path::Path) -> Value {
    let out = dir.join("site.json");
    let port = free_port();
    let mut command = lamina();
    command
        .args(["run", "--release", "-t", target, "--trace"])
        .arg(&out);
    if target == "unix" {
        command.args([
            "website",
            "--",
            &format!("--port={port}"),
            &format!("--https-port={}", free_port()),
        ]);
    } else {
        command.args(["--port", &format!("{port}:80"), "website"]);
    }
    let mut run = command
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
    // curl is done once it has the answer; the guest still has to take
    // the last acknowledgement and FIN off its device.
    std::thread::sleep(Duration::from_millis(500));
    // lamina forwards SIGTERM to the website, then writes the trace.
    send_sigterm(run.id());
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(
        stderr.contains("open it at https://ui.perfetto.dev"),
        "{stderr}"
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the trace is JSON")
}

/// What a traced website run on a unikernel target shows: a slice per
/// request (with method, path and status) on its connection task's row,
/// wake-up arrows from the devices to those rows, frames both ways, and
/// each connection's TCP counters ending with everything sent acknowledged.
fn check_unikernel_website_trace(events: &[Value]) {
    let of = |phase: &'static str| events.iter().filter(move |e| e["ph"] == phase);
    let requests: Vec<&Value> = of("B").filter(|e| e["name"] == "http request").collect();
    assert!(requests.len() >= 5, "{} request slices", requests.len());
    let details: Vec<&str> = requests
        .iter()
        .filter_map(|e| e["args"]["detail"].as_str())
        .collect();
    assert!(details.contains(&"GET /no-such-page"), "{details:?}");
    let results: Vec<&str> = of("E")
        .filter_map(|e| e["args"]["result"].as_str())
        .collect();
    assert!(
        results.iter().filter(|r| **r == "200").count() >= 4 && results.contains(&"404"),
        "{results:?}"
    );
    // Task rows: the request slices are on connection tasks' rows.
    let names: BTreeMap<i64, &str> = of("M")
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_i64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    let request_rows: BTreeSet<i64> = requests
        .iter()
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    for row in &request_rows {
        assert!(names[row].starts_with("task "), "{names:?}");
    }
    // Wake-ups: every arrow that ends started; the devices woke the
    // network driver's task, which woke the request tasks.
    let starts: BTreeMap<i64, &Value> = of("s").map(|e| (e["id"].as_i64().unwrap(), e)).collect();
    let ends: Vec<&Value> = of("f").collect();
    assert!(ends.len() >= 8, "{} wake-up arrows", ends.len());
    assert!(ends
        .iter()
        .all(|f| starts.contains_key(&f["id"].as_i64().unwrap())));
    let devices = names
        .iter()
        .find(|(_, n)| **n == "devices")
        .map(|(t, _)| *t)
        .expect("a devices row");
    let woke = |f: &Value| {
        starts[&f["id"].as_i64().unwrap()]["tid"]
            .as_i64()
            .unwrap_or(-1)
    };
    let driver_rows: BTreeSet<i64> = ends
        .iter()
        .filter(|f| woke(f) == devices)
        .map(|f| f["tid"].as_i64().unwrap())
        .collect();
    assert!(
        driver_rows
            .iter()
            .all(|row| names[row].contains("net/src/")),
        "the devices woke {driver_rows:?} of {names:?}"
    );
    assert!(
        ends.iter().any(|f| {
            request_rows.contains(&f["tid"].as_i64().unwrap()) && driver_rows.contains(&woke(f))
        }),
        "no request task was woken by the network driver's"
    );
    let frames = |name: &str| of("i").filter(|e| e["name"] == name).count();
    assert!(
        frames("rx") >= 10 && frames("tx") >= 10,
        "frames: {} in, {} out",
        frames("rx"),
        frames("tx")
    );
    // Each connection's counters end with everything sent acknowledged.
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in of("C") {
        let name = e["name"].as_str().unwrap();
        assert!(name.starts_with("tcp 10.0.2.15:80 10.0.2.2:"), "{name}");
        if let (Some(sent), Some(acked)) = (e["args"]["sent"].as_i64(), e["args"]["acked"].as_i64())
        {
            last.insert(name.to_string(), (sent, acked));
        }
    }
    // (A connection made while the website was still starting may carry
    // no data: curl asked again.)
    let with_data = last.values().filter(|(sent, _)| *sent > 0).count();
    assert!(with_data >= 5, "{last:?}");
    for (name, (sent, acked)) in &last {
        assert!(sent == acked, "{name}: sent {sent}, acked {acked}");
    }
}

#[test]
fn a_traced_website_on_virtio_has_frames_and_tcp_counters() {
    if !tools_or_skip(
        "tracing the website on virtio",
        &["curl", "qemu-system-x86_64"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    check_unikernel_website_trace(&traced_website("virtio", dir.path()));
}

/// spt (the guest writes its recording to the file its tender opened) and
/// hvt (the tender drains the guest's ring): the same picture as virtio,
/// on the host's clock: each event's time plus the header's offset falls
/// within the run as the test's own CLOCK_MONOTONIC saw it.
#[test]
fn a_traced_website_on_spt_and_hvt_has_requests_tasks_wakeups_frames_and_tcp_counters() {
    if !tools_or_skip("tracing the website on spt and hvt", &["curl"]) {
        return;
    }
    for target in unikernel_targets("tracing the website") {
        let dir = tempfile::tempdir().unwrap();
        let before = host_monotonic_ns();
        let json = traced_website_json(target, dir.path());
        let after = host_monotonic_ns();
        assert_eq!(json["otherData"]["target"], target);
        let offset = json["otherData"]["clock_offset_ns"].as_i64().unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        // Chrome's times are the records' in microseconds.
        let times: Vec<i64> = events
            .iter()
            .filter(|e| e["ph"] != "M")
            .filter_map(|e| e["ts"].as_f64())
            .map(|us| (us * 1e3) as i64 + offset)
            .collect();
        let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        assert!(
            before <= *first && *last <= after,
            "{target}: events from {first} to {last} ns, the run from {before} to {after}"
        );
        check_unikernel_website_trace(events);
    }
}

#[test]
fn a_traced_website_run_gives_requests_tasks_and_wakeups_on_a_timeline() {
    if !tools_or_skip("tracing the website", &["curl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site.json");
    let events = traced_website("unix", dir.path());
    let events = &events;
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
    // Neither -o nor --html: told what to give.
    let nothing = run_lamina(&["trace", recording.to_str().unwrap()]);
    assert_eq!(nothing.status.code(), Some(2));

    // Poll boxes, request boxes, wake-up arrows. (The unix target uses the
    // host's sockets: no frames or TCP counters; see the test below.)
    let _ = check_html_view(
        dir.path(),
        &recording,
        events,
        &names,
        &["3b7dd8", "e8a33d", "d62828"],
    );
    check_speedscope(dir.path(), &out, events, &names, &request_rows);
}

/// The HTML view draws each TCP connection's counters as lines under the
/// rows, on the same time axis. The unix target talks through the host's
/// sockets and so records no TCP counters; this recording is made with
/// lamina-trace's own encoder, as the network stack's would be on spt.
#[test]
fn the_html_view_draws_tcp_counters_under_the_task_rows() {
    use lamina_trace::file::Header;
    use lamina_trace::record::{encode, Kind, Track, BEGIN, END, IN, OUT};
    let mut file = Header::new("spt", 0).to_bytes().to_vec();
    let task = Track::task(0);
    encode(&mut file, Kind::Poll, BEGIN, Track::MAIN, 1_000, &[], &[]);
    encode(
        &mut file,
        Kind::Spawn,
        0,
        task,
        2_000,
        &[1],
        &["http/src/server.rs:88"],
    );
    encode(&mut file, Kind::Poll, END, Track::MAIN, 3_000, &[], &[]);
    let mut sent = [0i64; 2];
    for step in 0..200u64 {
        let time = 10_000 + step * 50_000;
        let from = if step % 2 == 0 {
            Track::DEVICES
        } else {
            Track::TIMERS
        };
        encode(&mut file, Kind::Wake, 0, task, time, &[from.0 as u64], &[]);
        encode(&mut file, Kind::Poll, BEGIN, task, time + 5_000, &[], &[]);
        encode(
            &mut file,
            Kind::Frame,
            IN,
            Track(0),
            time + 6_000,
            &[60],
            &[],
        );
        if step % 20 == 0 {
            encode(
                &mut file,
                Kind::Span,
                BEGIN,
                task,
                time + 7_000,
                &[],
                &["http request", "GET /big"],
            );
            encode(
                &mut file,
                Kind::Span,
                END,
                task,
                time + 30_000,
                &[],
                &["200"],
            );
        }
        for (connection, sent) in sent.iter_mut().enumerate() {
            *sent += 1448 * (connection as i64 + 1);
            let acked = (*sent - 20_000).max(0);
            let name = format!("tcp 10.0.0.2:80 10.0.0.1:{}", 40_000 + connection);
            let values = [*sent, acked, *sent - acked, 65_535, (step / 50) as i64];
            encode(
                &mut file,
                Kind::Counter,
                5,
                Track(0),
                time + 8_000,
                &values.map(|v| v as u64),
                &[
                    &name,
                    "sent",
                    "acked",
                    "in flight",
                    "peer window",
                    "retransmits",
                ],
            );
            let buffered = [(step * 997) % 30_000];
            encode(
                &mut file,
                Kind::Counter,
                1,
                Track(0),
                time + 9_000,
                &buffered,
                &[&name, "buffered"],
            );
        }
        encode(
            &mut file,
            Kind::Frame,
            OUT,
            Track(0),
            time + 10_000,
            &[1514],
            &[],
        );
        encode(&mut file, Kind::Poll, END, task, time + 40_000, &[], &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("counters.lmtrace");
    std::fs::write(&recording, &file).unwrap();
    let json_path = dir.path().join("counters.json");
    let exported = run_lamina(&[
        "trace",
        recording.to_str().unwrap(),
        "-o",
        json_path.to_str().unwrap(),
    ]);
    assert!(exported.status.success());
    let json: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let names: BTreeMap<i64, &str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_i64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    // Poll boxes, request boxes, arrows; sent, acked, in flight, buffered
    // and peer window lines.
    let colours = [
        "3b7dd8", "e8a33d", "d62828", "1f77b4", "2ca02c", "ff7f0e", "9467bd", "8c564b",
    ];
    let dom = check_html_view(dir.path(), &recording, events, &names, &colours);
    if !dom.is_empty() {
        assert_eq!(data_attribute(&dom, "connections"), 2);
        assert_eq!(data_attribute(&dom, "series"), 12);
        assert_eq!(data_attribute(&dom, "arrows"), 200);
        assert_eq!(data_attribute(&dom, "requests"), 10);
    }
}

/// Runs headless Chromium with `args` and `page`; its output.
fn chromium(profile: &Path, args: &[&str], page: &str) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(page)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs")
}

/// The value of `data-NAME="..."` in `dom`.
fn data_attribute(dom: &str, name: &str) -> u64 {
    let key = format!("data-{name}=\"");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {key} in\n{dom}"))
        + key.len();
    dom[at..at + dom[at..].find('"').unwrap()].parse().unwrap()
}

/// `lamina trace --html` renders the recording in headless Chromium: the
/// script reports as many rows, arrows, requests and counter series as the
/// JSON export has, and the screenshot shows task boxes, request boxes,
/// wake-up arrows and counter lines in their colours.
fn check_html_view(
    dir: &Path,
    recording: &Path,
    events: &[Value],
    names: &BTreeMap<i64, &str>,
    colours: &[&str],
) -> String {
    let page = dir.join("site.html");
    let rendered = run_lamina(&[
        "trace",
        recording.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "{stderr}");
    assert!(stderr.contains("open it in a browser"), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched from anywhere.
    for fetch in ["src=", "href=", "http://", "https://"] {
        assert!(!html.contains(fetch), "the page refers elsewhere: {fetch}");
    }
    if !tools_or_skip("rendering the HTML trace view", &["chromium", "python3"]) {
        return String::new();
    }
    let url = format!("file://{}", page.display());
    let dumped = chromium(&dir.join("profile"), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dumped.stdout);
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the script did not finish:\n{dom}"
    );

    let of = |phase: &'static str| events.iter().filter(move |e| e["ph"] == phase);
    let named = |e: &Value| names.contains_key(&e["tid"].as_i64().unwrap());
    let starts: BTreeMap<i64, &Value> = of("s").map(|e| (e["id"].as_i64().unwrap(), e)).collect();
    let arrows = of("f")
        .filter(|f| {
            named(f)
                && starts
                    .get(&f["id"].as_i64().unwrap())
                    .is_some_and(|s| named(s))
        })
        .count() as u64;
    let series: BTreeSet<(String, i64, String)> = of("C")
        .flat_map(|c| {
            c["args"].as_object().unwrap().keys().map(|field| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["id"].as_i64().unwrap(),
                    field.clone(),
                )
            })
        })
        .collect();
    let connections: BTreeSet<(&str, i64)> = of("C")
        .map(|c| (c["name"].as_str().unwrap(), c["id"].as_i64().unwrap()))
        .collect();
    let slices = of("B").chain(of("X")).filter(|e| named(e)).count() as u64;
    let requests = of("B").filter(|e| e["name"] == "http request").count() as u64;
    assert_eq!(data_attribute(&dom, "rows"), names.len() as u64, "{dom}");
    assert_eq!(data_attribute(&dom, "arrows"), arrows);
    assert_eq!(data_attribute(&dom, "slices"), slices);
    assert_eq!(data_attribute(&dom, "requests"), requests);
    assert_eq!(data_attribute(&dom, "series"), series.len() as u64);
    assert_eq!(
        data_attribute(&dom, "connections"),
        connections.len() as u64
    );
    // The rows in order: main first, named as in the JSON.
    let listed = dom.find("id=\"row-names\"").unwrap();
    let first_row = &dom[listed..];
    assert!(first_row.contains("<li>main</li>"), "{first_row}");
    assert!(
        first_row.find("<li>main</li>") < first_row.find("<li>task "),
        "main is not the first row"
    );

    let shot = dir.join("site.png");
    let taken = chromium(
        &dir.join("profile"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1800",
        ],
        &url,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let counted = Command::new("python3")
        .arg(root().join("cli/tests/png_colours.py"))
        .arg(&shot)
        .args(colours)
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&counted.stdout);
    assert!(
        counted.status.success(),
        "{counts}{}",
        String::from_utf8_lossy(&counted.stderr)
    );
    for line in counts.lines() {
        let (what, count) = line.split_once(' ').unwrap();
        let count: u64 = count.parse().unwrap();
        // A few pixels at least of each; many colours in all (not blank).
        let least = if what == "distinct" { 20 } else { 10 };
        assert!(
            count >= least,
            "{what}: {count} pixels in the screenshot\n{counts}"
        );
    }
    dom.into_owned()
}

/// speedscope, an independent reader of the Chrome trace-event format,
/// served on loopback to headless Chromium, opens the JSON export and lists
/// the task rows of the requests.
fn check_speedscope(
    dir: &Path,
    json: &Path,
    events: &[Value],
    names: &BTreeMap<i64, &str>,
    request_rows: &BTreeSet<i64>,
) {
    let home = std::env::var("HOME").unwrap_or_default();
    let release =
        Path::new(&home).join(".cache/lamina/speedscope/node_modules/speedscope/dist/release");
    if !release.join("index.html").exists() {
        skip_or_fail(
            "opening the trace in speedscope",
            &format!(
                "{} is missing (scripts/setup.sh installs speedscope with npm)",
                release.display()
            ),
        );
        return;
    }
    if !tools_or_skip("opening the trace in speedscope", &["chromium", "python3"]) {
        return;
    }
    let site = dir.join("speedscope");
    std::fs::create_dir(&site).unwrap();
    for file in std::fs::read_dir(&release).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), site.join(file.file_name())).unwrap();
    }
    std::fs::copy(json, site.join("trace.json")).unwrap();
    let port = free_port();
    let server = Server(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://127.0.0.1:{port}");
    let dumped = chromium(
        &dir.join("speedscope-profile"),
        &["--dump-dom", "--virtual-time-budget=20000"],
        &format!("{base}/index.html#profileURL={base}/trace.json"),
    );
    drop(server);
    let dom = String::from_utf8_lossy(&dumped.stdout);
    assert!(!dom.contains("Something went wrong"), "{dom}");
    assert!(
        dom.contains("<title>trace.json - speedscope</title>"),
        "speedscope did not load the trace:\n{dom}"
    );
    assert!(dom.contains("Time Order"), "{dom}");
    // Its thread list names our rows: main, and the request tasks.
    assert!(dom.contains("main (tid 1)"), "{dom}");
    for row in request_rows {
        let name = format!("{} (tid {row})", names[row]);
        assert!(
            dom.contains(&name),
            "speedscope does not list {name}:\n{dom}"
        );
    }
    let threads = events
        .iter()
        .filter(|e| e["ph"] == "B" || e["ph"] == "X")
        .map(|e| e["tid"].as_i64().unwrap())
        .collect::<BTreeSet<_>>()
        .len();
    assert!(
        dom.contains(&format!("(1/{threads})")),
        "not {threads} profiles:\n{dom}"
    );
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM to `pid` with kill(1).
fn send_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
