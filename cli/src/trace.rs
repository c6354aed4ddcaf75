//! `lamina trace` and `lamina run --trace`: turning the recording a target
//! or tender wrote (the lamina-trace file format) into a trace that
//! Perfetto opens.

use crate::CliError;
use std::path::{Path, PathBuf};

/// Where the raw recording goes while a run traced into `out` lasts.
pub fn recording_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".lmtrace");
    out.with_file_name(name)
}

/// Exports the recording `raw` to `out` as Chrome trace-event JSON and
/// says what is in it.
pub fn export(raw: &Path, out: &Path) -> Result<(), CliError> {
    let bytes =
        std::fs::read(raw).map_err(CliError::io(format!("cannot read {}", raw.display())))?;
    let file = std::fs::File::create(out)
        .map_err(CliError::io(format!("cannot create {}", out.display())))?;
    let mut writer = std::io::BufWriter::new(file);
    let summary = lamina_trace::chrome::export(&bytes, &mut writer)
        .and_then(|summary| std::io::Write::flush(&mut writer).map(|()| summary))
        .map_err(|e| CliError::Trace(format!("{}: {e}", raw.display())))?;
    eprintln!(
        "lamina: trace of {:.3} s: {} tasks, {} polls, {} wake-ups, {} spans, {} counter samples, {} frames",
        summary.duration_ns as f64 / 1e9,
        summary.tasks,
        summary.polls,
        summary.wakes,
        summary.spans,
        summary.counters,
        summary.frames
    );
    if summary.dropped > 0 {
        eprintln!(
            "lamina: {} records were lost because the trace ring was full (a larger ring: LAMINA_TRACE_MIB)",
            summary.dropped
        );
    }
    if let Some(damage) = summary.damage {
        eprintln!("lamina: the recording ends early: {damage}");
    }
    eprintln!(
        "lamina: wrote {} (open it at https://ui.perfetto.dev: Open trace file)",
        out.display()
    );
    Ok(())
}
