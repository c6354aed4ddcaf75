//! The status page: each service, its state, boots, the last boot, the
//! time from summons to listening, and its memory; as text (`/`) and as
//! JSON (`/json`).

use crate::service::ServiceRuntime;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// The median and the largest of `times`, in milliseconds.
fn median_max_ms(times: &[Duration]) -> Option<(f64, f64)> {
    let mut sorted: Vec<Duration> = times.to_vec();
    sorted.sort();
    let median = *sorted.get(sorted.len() / 2)?;
    let max = *sorted.last()?;
    Some((median.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3))
}

fn seconds_ago(time: Option<SystemTime>) -> Option<f64> {
    time.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs_f64())
}

/// The text page: one line per service.
pub fn text(services: &[ServiceRuntime], uptime: Duration) -> String {
    let mut out = format!("lamina jitsu: up {:.0} s\n", uptime.as_secs_f64());
    let _ = writeln!(
        out,
        "{:<28} {:<15} {:<4} {:<8} {:>5} {:>8} {:>6} {:>11} {:>14} {:>10}",
        "SERVICE",
        "ADDRESS",
        "ON",
        "STATE",
        "BOOTS",
        "FAILURES",
        "ACTIVE",
        "LAST BOOT",
        "UP IN (MED/MAX)",
        "MEMORY"
    );
    for s in services {
        let last_boot =
            seconds_ago(s.last_boot).map_or_else(|| String::from("-"), |a| format!("{a:.0} s ago"));
        let up_in = median_max_ms(&s.boot_times)
            .map_or_else(|| String::from("-"), |(m, x)| format!("{m:.1}/{x:.1} ms"));
        let memory = s.memory_kib().map_or_else(
            || String::from("-"),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        );
        let _ = writeln!(
            out,
            "{:<28} {:<15} {:<4} {:<8} {:>5} {:>8} {:>6} {:>11} {:>14} {:>10}",
            s.config.name,
            s.config.address.to_string(),
            s.target().name(),
            s.state.name(),
            s.boots,
            s.failures,
            s.active(),
            last_boot,
            up_in,
            memory
        );
        if let Some(why) = &s.last_failure {
            let _ = writeln!(out, "    last failure: {why}");
        }
    }
    out
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn number_or_null(value: Option<f64>) -> String {
    value.map_or_else(|| String::from("null"), |v| format!("{v:.3}"))
}

/// The JSON page: `{"uptime_s": .., "services": [{..}, ..]}`.
pub fn json(services: &[ServiceRuntime], uptime: Duration) -> String {
    let entries: Vec<String> = services
        .iter()
        .map(|s| {
            let times = median_max_ms(&s.boot_times);
            format!(
                "{{\"name\":{},\"address\":{},\"target\":{},\"state\":{},\"boots\":{},\"failures\":{},\
                 \"resumes\":{},\"active\":{},\"pid\":{},\"last_boot_s_ago\":{},\"up_in_ms_median\":{},\
                 \"up_in_ms_max\":{},\"up_in_ms\":[{}],\"memory_kib\":{},\"last_failure\":{}}}",
                quoted(&s.config.name),
                quoted(&s.config.address.to_string()),
                quoted(s.target().name()),
                quoted(s.state.name()),
                s.boots,
                s.failures,
                s.resumes,
                s.active(),
                s.pid().map_or_else(|| String::from("null"), |p| p.to_string()),
                number_or_null(seconds_ago(s.last_boot)),
                number_or_null(times.map(|t| t.0)),
                number_or_null(times.map(|t| t.1)),
                s.boot_times
                    .iter()
                    .map(|t| format!("{:.3}", t.as_secs_f64() * 1e3))
                    .collect::<Vec<_>>()
                    .join(","),
                s.memory_kib().map_or_else(|| String::from("null"), |k| k.to_string()),
                s.last_failure.as_deref().map_or_else(|| String::from("null"), quoted),
            )
        })
        .collect();
    format!(
        "{{\"uptime_s\":{:.3},\"services\":[{}]}}\n",
        uptime.as_secs_f64(),
        entries.join(",")
    )
}

/// `lamina jitsu status`: the text page of the daemon whose status page is
/// at `address`.
pub fn fetch(address: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: jitsu\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(_, body)| body.to_string()))
}
