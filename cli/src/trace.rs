//! `lamina trace` and `lamina run --trace`: turning the recording a target
//! or tender wrote (the lamina-trace file format) into a trace that
//! Perfetto opens.

use crate::CliError;
use std::path::{Path, PathBuf};

/// MiB of heap a unikernel's trace ring takes (`--trace-mib`) in a guest
/// of `mem_mib`: an eighth of its memory, from 1 to 8 MiB (the guest
/// refuses a ring over a quarter of its heap).
pub fn ring_mib(mem_mib: u64) -> u64 {
    (mem_mib / 8).clamp(1, 8)
}

/// Where the raw recording goes while a run traced into `out` lasts.
pub fn recording_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".lmtrace");
    out.with_file_name(name)
}

/// Exports the recording `raw` to `out` as Chrome trace-event JSON and
/// says what is in it.
pub fn export(raw: &Path, out: &Path) -> Result<(), CliError> {
    let summary = write_with(raw, out, |bytes, writer| {
        lamina_trace::chrome::export(bytes, writer)
    })?;
    report(summary);
    eprintln!(
        "lamina: wrote {} (open it at https://ui.perfetto.dev: Open trace file)",
        out.display()
    );
    Ok(())
}

/// Exports the recording `raw` to `out` as a self-contained HTML page (see
/// lamina_trace::html) and says what is in it.
pub fn export_html(raw: &Path, out: &Path) -> Result<(), CliError> {
    let title = raw
        .file_name()
        .unwrap_or(raw.as_os_str())
        .to_string_lossy()
        .into_owned();
    let summary = write_with(raw, out, |bytes, writer| {
        lamina_trace::html::export(bytes, &title, writer)
    })?;
    report(summary);
    eprintln!("lamina: wrote {} (open it in a browser)", out.display());
    Ok(())
}

/// Reads the recording `raw` and writes `out` with `export`.
fn write_with(
    raw: &Path,
    out: &Path,
    export: impl FnOnce(
        &[u8],
        &mut std::io::BufWriter<std::fs::File>,
    ) -> std::io::Result<lamina_trace::chrome::Summary>,
) -> Result<lamina_trace::chrome::Summary, CliError> {
    let bytes = crate::read_file(raw)?;
    let file = std::fs::File::create(out)
        .map_err(CliError::io(format!("cannot create {}", out.display())))?;
    let mut writer = std::io::BufWriter::new(file);
    export(&bytes, &mut writer)
        .and_then(|summary| std::io::Write::flush(&mut writer).map(|()| summary))
        .map_err(|e| CliError::Trace(format!("{}: {e}", raw.display())))
}

/// Says what an export saw.
fn report(summary: lamina_trace::chrome::Summary) {
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
}
