//! Export to the Chrome trace-event JSON format, which Perfetto
//! (ui.perfetto.dev), `chrome://tracing` and speedscope open.
//!
//! Each task is a thread row named after where it was spawned; its polls
//! are slices, and each wake-up is a flow arrow from the slice that woke it
//! (another task's poll, a timer, a device) to the woken task's next poll.
//! Spans nest inside polls; counters (TCP connections' bytes buffered, sent
//! and acknowledged, ...) are counter tracks; frames are instants on the
//! network row. Written by hand rather than with serde: the exporter
//! streams events of any number without holding them, and the format is a
//! handful of fixed shapes.

use crate::file::{FileError, Header, Records};
use crate::record::{Event, Kind, Track, BEGIN, IN};
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::io::{self, Write};
use std::string::{String, ToString};
use std::vec::Vec;

/// What an export saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read.
    pub records: u64,
    /// Task rows.
    pub tasks: usize,
    /// Polls.
    pub polls: u64,
    /// Wake-up arrows.
    pub wakes: u64,
    /// Spans.
    pub spans: u64,
    /// Counter samples.
    pub counters: u64,
    /// Frames in and out.
    pub frames: u64,
    /// Records the guest could not record (ring full).
    pub dropped: u64,
    /// Nanoseconds from the first to the last record.
    pub duration_ns: u64,
    /// The damaged record that ended the file early, if any.
    pub damage: Option<String>,
}

/// Exports a whole trace file (`bytes`, header included) to `out` as
/// Chrome trace-event JSON.
pub fn export(bytes: &[u8], out: &mut impl Write) -> io::Result<Summary> {
    let (header, records) = Records::new(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut exporter = Exporter::new(out, &header)?;
    for record in records {
        match record {
            Ok(event) => exporter.event(&event)?,
            Err(e @ FileError::Record(..)) => exporter.summary.damage = Some(e.to_string()),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
    exporter.finish()
}

/// Turns records into JSON events, one at a time.
struct Exporter<'w, W: Write> {
    out: &'w mut W,
    first: bool,
    spawned_at: BTreeMap<u32, String>,
    tracks: BTreeSet<u32>,
    /// Flows started towards each task, ended at its next poll.
    pending: BTreeMap<u32, Vec<u64>>,
    /// Tasks inside a poll, and spans open on each track, to close at the end.
    open: BTreeMap<u32, u32>,
    next_flow: u64,
    start: Option<u64>,
    last: u64,
    summary: Summary,
}

impl<'w, W: Write> Exporter<'w, W> {
    fn new(out: &'w mut W, header: &Header) -> io::Result<Self> {
        write!(
            out,
            "{{\"displayTimeUnit\":\"ns\",\"otherData\":{{\"target\":"
        )?;
        json_string(out, header.target_name())?;
        write!(
            out,
            ",\"clock_offset_ns\":{}}},\"traceEvents\":[",
            header.clock_offset
        )?;
        let mut exporter = Exporter {
            out,
            first: true,
            spawned_at: BTreeMap::new(),
            tracks: BTreeSet::new(),
            pending: BTreeMap::new(),
            open: BTreeMap::new(),
            next_flow: 1,
            start: None,
            last: 0,
            summary: Summary::default(),
        };
        exporter.begin_event("M", 0, 0)?;
        write!(
            exporter.out,
            ",\"name\":\"process_name\",\"args\":{{\"name\":"
        )?;
        json_string(
            exporter.out,
            &format!("unikernel ({})", header.target_name()),
        )?;
        write!(exporter.out, "}}}}")?;
        Ok(exporter)
    }

    /// Writes `{"ph":..,"ts":..,"pid":1,"tid":..` (the caller closes it).
    fn begin_event(&mut self, phase: &str, time: u64, track: u32) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        self.tracks.insert(track);
        write!(
            self.out,
            "{{\"ph\":\"{phase}\",\"ts\":{}.{:03},\"pid\":1,\"tid\":{track}",
            time / 1000,
            time % 1000
        )
    }

    fn event(&mut self, e: &Event<'_>) -> io::Result<()> {
        self.summary.records += 1;
        let time = match e.kind {
            Kind::Dropped if e.time == 0 => self.last,
            _ => e.time,
        };
        self.start.get_or_insert(time);
        self.last = self.last.max(time);
        let track = e.track.0;
        match e.kind {
            Kind::Pad => {}
            Kind::Spawn => {
                self.spawned_at.insert(track, e.string(0).into());
            }
            Kind::Exit => {
                self.close_open(track, time)?;
                self.begin_event("i", time, track)?;
                write!(self.out, ",\"s\":\"t\",\"name\":\"exit\"}}")?;
            }
            Kind::Poll | Kind::Idle | Kind::Span if e.flags != BEGIN => {
                if self.close_one(track) {
                    self.begin_event("E", time, track)?;
                    if e.kind == Kind::Span {
                        self.string_arg("result", e.string(0))?;
                    }
                    write!(self.out, "}}")?;
                }
            }
            Kind::Poll => {
                self.summary.polls += 1;
                self.begin_event("B", time, track)?;
                write!(self.out, ",\"name\":\"poll\"}}")?;
                *self.open.entry(track).or_default() += 1;
                for flow in self.pending.remove(&track).unwrap_or_default() {
                    self.begin_event("f", time, track)?;
                    write!(
                        self.out,
                        ",\"bp\":\"e\",\"name\":\"wake\",\"cat\":\"wake\",\"id\":{flow}}}"
                    )?;
                }
            }
            Kind::Wake => {
                self.summary.wakes += 1;
                let from = e.word(0) as u32;
                if !Track(from).is_task() || !self.open.contains_key(&from) {
                    // A timer or a device (or a task outside its poll): a
                    // short slice on its row for the arrow to leave from.
                    self.begin_event("X", time, from)?;
                    write!(self.out, ",\"dur\":0.001,\"name\":")?;
                    json_string(self.out, source_name(Track(from)))?;
                    write!(self.out, "}}")?;
                }
                let flow = self.next_flow;
                self.next_flow += 1;
                self.begin_event("s", time, from)?;
                write!(
                    self.out,
                    ",\"name\":\"wake\",\"cat\":\"wake\",\"id\":{flow}}}"
                )?;
                self.pending.entry(track).or_default().push(flow);
            }
            Kind::Idle => {
                self.begin_event("B", time, track)?;
                write!(self.out, ",\"name\":\"idle\"")?;
                if e.word(0) != u64::MAX {
                    write!(
                        self.out,
                        ",\"args\":{{\"deadline_ms\":{:.3}}}",
                        e.word(0).saturating_sub(time) as f64 / 1e6
                    )?;
                }
                write!(self.out, "}}")?;
                *self.open.entry(track).or_default() += 1;
            }
            Kind::Span => {
                self.summary.spans += 1;
                self.begin_event("B", time, track)?;
                write!(self.out, ",\"name\":")?;
                json_string(self.out, e.string(0))?;
                self.string_arg("detail", e.string(1))?;
                write!(self.out, "}}")?;
                *self.open.entry(track).or_default() += 1;
            }
            Kind::Counter => {
                self.summary.counters += 1;
                self.begin_event("C", time, 0)?;
                write!(self.out, ",\"name\":")?;
                json_string(self.out, e.string(0))?;
                write!(self.out, ",\"id\":{track},\"args\":{{")?;
                for (i, field) in e.strings().skip(1).enumerate() {
                    if i > 0 {
                        write!(self.out, ",")?;
                    }
                    json_string(self.out, field)?;
                    write!(self.out, ":{}", e.word(i) as i64)?;
                }
                write!(self.out, "}}}}")?;
            }
            Kind::Instant => {
                self.begin_event("i", time, track)?;
                write!(self.out, ",\"s\":\"t\",\"name\":")?;
                json_string(self.out, e.string(0))?;
                self.string_arg("detail", e.string(1))?;
                write!(self.out, "}}")?;
            }
            Kind::Frame => {
                self.summary.frames += 1;
                self.begin_event("i", time, Track::NET.0)?;
                let name = if e.flags == IN { "rx" } else { "tx" };
                write!(self.out, ",\"s\":\"t\",\"name\":\"{name}\",\"args\":{{\"bytes\":{},\"netif\":{track}}}}}", e.word(0))?;
            }
            Kind::Dropped => {
                let lost = e.word(0);
                // A guest writes these counts: they may add up past u64.
                self.summary.dropped = self.summary.dropped.saturating_add(lost);
                self.begin_event("i", time, 0)?;
                write!(
                    self.out,
                    ",\"s\":\"g\",\"name\":\"{lost} records lost: the trace ring was full\"}}"
                )?;
            }
        }
        Ok(())
    }

    /// Writes `,"args":{"KEY":VALUE}` unless `value` is empty.
    fn string_arg(&mut self, key: &str, value: &str) -> io::Result<()> {
        if value.is_empty() {
            return Ok(());
        }
        write!(self.out, ",\"args\":{{\"{key}\":")?;
        json_string(self.out, value)?;
        write!(self.out, "}}")
    }

    /// Counts one slice closed on `track`; false if none was open (a trace
    /// that starts in the middle of a poll).
    fn close_one(&mut self, track: u32) -> bool {
        match self.open.get_mut(&track) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.open.remove(&track);
                true
            }
            None => false,
        }
    }

    /// Ends every slice still open on `track`.
    fn close_open(&mut self, track: u32, time: u64) -> io::Result<()> {
        for _ in 0..self.open.remove(&track).unwrap_or(0) {
            self.begin_event("E", time, track)?;
            write!(self.out, "}}")?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Summary> {
        let last = self.last;
        for track in self.open.keys().copied().collect::<Vec<_>>() {
            self.close_open(track, last)?;
        }
        let tracks: Vec<u32> = self.tracks.iter().copied().filter(|&t| t != 0).collect();
        for track in tracks {
            let name = match Track(track) {
                Track::MAIN => "main".into(),
                t if t.is_task() => match self.spawned_at.get(&track) {
                    Some(at) => format!("task {} ({at})", track - 1),
                    None => format!("task {}", track - 1),
                },
                t => source_name(t).into(),
            };
            self.begin_event("M", 0, track)?;
            write!(self.out, ",\"name\":\"thread_name\",\"args\":{{\"name\":")?;
            json_string(self.out, &name)?;
            write!(self.out, "}}}}")?;
            self.begin_event("M", 0, track)?;
            // Tasks in spawn order first, then the fixed rows.
            write!(
                self.out,
                ",\"name\":\"thread_sort_index\",\"args\":{{\"sort_index\":{}}}}}",
                track as i64
            )?;
        }
        self.out.write_all(b"]}\n")?;
        self.summary.tasks = self.tracks.iter().filter(|&&t| Track(t).is_task()).count();
        self.summary.duration_ns = self.last - self.start.unwrap_or(self.last);
        Ok(self.summary)
    }
}

/// The name of a fixed row.
fn source_name(track: Track) -> &'static str {
    match track {
        Track::TIMERS => "timers",
        Track::DEVICES => "devices",
        Track::NET => "network",
        Track::BLOCK => "block",
        Track::IDLE => "executor idle",
        Track::NONE => "outside tasks",
        _ => "task",
    }
}

/// Writes `s` as a JSON string.
fn json_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.write_all(&s.as_bytes()[start..i])?;
        match escaped {
            Some(e) => out.write_all(e.as_bytes())?,
            None => write!(out, "\\u{:04x}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    out.write_all(&s.as_bytes()[start..])?;
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode, END, OUT};

    /// A record: kind, flags, track, time, fixed words, strings.
    type Spec<'a> = (Kind, u8, Track, u64, &'a [u64], &'a [&'a str]);

    fn trace(records: &[Spec<'_>]) -> Vec<u8> {
        let mut file = Header::new("unix", 0).to_bytes().to_vec();
        for (kind, flags, track, time, fixed, strings) in records {
            encode(&mut file, *kind, *flags, *track, *time, fixed, strings);
        }
        file
    }

    #[test]
    fn polls_wakes_spans_and_counters_become_trace_events() {
        let task = Track::task(0);
        let file = trace(&[
            (Kind::Poll, BEGIN, Track::MAIN, 1_000, &[], &[]),
            (
                Kind::Spawn,
                0,
                task,
                1_100,
                &[1],
                &["http/src/server.rs:88"],
            ),
            (Kind::Wake, 0, task, 1_100, &[1], &[]),
            (Kind::Poll, END, Track::MAIN, 2_000, &[], &[]),
            (Kind::Poll, BEGIN, task, 2_500, &[], &[]),
            (
                Kind::Span,
                BEGIN,
                task,
                2_600,
                &[],
                &["request", "GET /\"quoted\"\n"],
            ),
            (
                Kind::Counter,
                2,
                Track(7),
                2_700,
                &[10, 20],
                &["tcp 10.0.0.2:80", "sent", "acked"],
            ),
            (Kind::Frame, OUT, Track(0), 2_800, &[1514], &[]),
            (Kind::Span, END, task, 2_900, &[], &["200"]),
            (Kind::Poll, END, task, 3_000, &[], &[]),
            (Kind::Wake, 0, task, 4_000, &[Track::TIMERS.0 as u64], &[]),
            (Kind::Poll, BEGIN, task, 4_100, &[], &[]),
        ]);
        let mut json = Vec::new();
        let summary = export(&file, &mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(
            (
                summary.polls,
                summary.wakes,
                summary.spans,
                summary.counters,
                summary.frames
            ),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(summary.tasks, 2);
        assert_eq!(summary.duration_ns, 3_100);
        assert!(json.starts_with("{\"displayTimeUnit\":\"ns\""), "{json}");
        assert!(json.ends_with("]}\n"));
        assert!(
            json.contains(r#""name":"request","args":{"detail":"GET /\"quoted\"\n"}"#),
            "{json}"
        );
        assert!(json.contains(r#""args":{"sent":10,"acked":20}"#));
        assert!(json.contains(r#""name":"task 1 (http/src/server.rs:88)""#));
        assert_eq!(json.matches("\"ph\":\"s\"").count(), 2);
        assert_eq!(json.matches("\"ph\":\"f\"").count(), 2);
        // The poll left open at the end is closed: every B has its E.
        assert_eq!(
            json.matches("\"ph\":\"B\"").count(),
            json.matches("\"ph\":\"E\"").count()
        );
        assert!(json.contains(
            r#""ph":"X","ts":4.000,"pid":1,"tid":4294967040,"dur":0.001,"name":"timers""#
        ));
    }

    #[test]
    fn lost_counts_that_overflow_saturate() {
        // Found by the trace_file fuzz target: the counts come from the guest.
        let file = trace(&[
            (Kind::Dropped, 0, Track::NONE, 0, &[u64::MAX], &[]),
            (Kind::Dropped, 0, Track::NONE, 0, &[2], &[]),
        ]);
        let summary = export(&file, &mut Vec::new()).unwrap();
        assert_eq!(summary.dropped, u64::MAX);
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        json_string(&mut out, "a\u{1}b\\é").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\u0001b\\é""#);
    }
}
