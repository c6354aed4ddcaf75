//! A self-contained HTML view of a trace: the picture of the MirageOS
//! poster, one row per task with its polls, arrows for wake-ups, and each
//! TCP connection's counters as lines underneath, zoomable and pannable.
//!
//! The page needs no network: the stylesheet and the renderer (plain JS
//! drawing on a canvas, in `html/view.css` and `html/view.js`) are inlined,
//! and the trace is embedded as the same Chrome trace-event JSON that
//! [`chrome::export`] writes, so both views read one format.

use crate::chrome::{self, Summary};
use std::io::{self, Write};

const STYLE: &str = include_str!("html/view.css");
const SCRIPT: &str = include_str!("html/view.js");

/// Exports a whole trace file (`bytes`, header included) to `out` as an
/// HTML page titled `title` (the recording's name, say).
pub fn export(bytes: &[u8], title: &str, out: &mut impl Write) -> io::Result<Summary> {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Lamina trace: {title}</title>\n<style>\n{STYLE}</style></head>\n<body>\n\
         <header><h1>Lamina trace: {title}</h1>\
         <button id=\"zoom-in\" title=\"zoom in (wheel)\">+</button>\
         <button id=\"zoom-out\" title=\"zoom out (wheel)\">&minus;</button>\
         <button id=\"left\" title=\"pan left (drag)\">&larr;</button>\
         <button id=\"right\" title=\"pan right (drag)\">&rarr;</button>\
         <button id=\"reset\">whole trace</button>\
         <span id=\"summary\">rendering…</span></header>\n\
         <canvas id=\"view\"></canvas><div id=\"tip\"></div>\n\
         <details><summary>rows</summary><ol id=\"row-names\"></ol></details>\n\
         <script id=\"trace-data\" type=\"application/json\">",
        title = escape_html(title)
    )?;
    let summary = chrome::export(bytes, &mut NoMarkup(&mut *out))?;
    write!(
        out,
        "</script>\n<script>\n{SCRIPT}</script>\n</body></html>\n"
    )?;
    Ok(summary)
}

/// Passes JSON through with every `<` written as `\u003c`, so that nothing
/// in the trace (a request path such as `/</script>`) can end the script
/// element it is embedded in. The JSON stays the same: `<` only occurs
/// inside its strings.
struct NoMarkup<W>(W);

impl<W: Write> Write for NoMarkup<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'<') {
            self.0.write_all(&rest[..at])?;
            self.0.write_all(b"\\u003c")?;
            rest = &rest[at + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `s` with HTML's special characters escaped.
fn escape_html(s: &str) -> std::string::String {
    let mut out = std::string::String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Header;
    use crate::record::{encode, Kind, Track, BEGIN, END};
    use std::string::String;
    use std::vec::Vec;

    #[test]
    fn the_page_embeds_the_trace_where_markup_cannot_break_out() {
        let mut file = Header::new("unix", 0).to_bytes().to_vec();
        let task = Track::task(0);
        encode(&mut file, Kind::Poll, BEGIN, task, 1_000, &[], &[]);
        let path = "GET /</script><b>";
        encode(
            &mut file,
            Kind::Span,
            BEGIN,
            task,
            1_100,
            &[],
            &["http request", path],
        );
        encode(&mut file, Kind::Span, END, task, 1_200, &[], &["200"]);
        encode(&mut file, Kind::Poll, END, task, 1_300, &[], &[]);
        let mut page = Vec::new();
        let summary = export(&file, "a<b", &mut page).unwrap();
        assert_eq!((summary.polls, summary.spans), (1, 1));
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("<title>Lamina trace: a&lt;b</title>"));
        // One closing tag per script element, none from the trace.
        assert_eq!(page.matches("</script>").count(), 2);
        let start = page.find("type=\"application/json\">").unwrap() + 24;
        let end = start + page[start..].find("</script>").unwrap();
        let embedded = page[start..end].replace("\\u003c", "<");
        let mut direct = Vec::new();
        chrome::export(&file, &mut direct).unwrap();
        assert_eq!(embedded, String::from_utf8(direct).unwrap());
        assert!(page.contains(SCRIPT) && page.contains(STYLE));
    }
}
