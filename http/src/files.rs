//! Serving a baked directory: the static website handler.

use crate::request::{Method, Request};
use crate::response::{Body, Response};
use crate::server::Handler;
use alloc::format;
use alloc::string::String;
use lamina_core::device::{Baked, BakedFile};

/// Serves the files of a [`Baked`] store: `/` and directories map to their
/// `index.html`; `ETag`/`If-None-Match` give 304; a single byte `Range`
/// gives 206 (or 416); a `404.html` in the store is the not-found page.
#[derive(Clone, Copy)]
pub struct StaticFiles {
    site: &'static Baked,
}

impl StaticFiles {
    /// A handler for `site`.
    pub const fn new(site: &'static Baked) -> Self {
        StaticFiles { site }
    }

    fn find(&self, path: &str) -> Option<&'static BakedFile> {
        let path = percent_decode(path)?;
        let mut key = String::from(path.trim_start_matches('/'));
        if key.is_empty() || key.ends_with('/') {
            key.push_str("index.html");
        }
        self.site
            .file(&key)
            .or_else(|_| self.site.file(&format!("{key}/index.html")))
            .ok()
    }
}

/// `%XX` decoding of a request path; `None` for a bad escape or bytes that
/// are not UTF-8 (`+` stays `+`: it means a space only in form data).
pub fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = alloc::vec::Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits: `from_str_radix` alone also takes a sign (`%+2`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = core::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The byte range of a `Range: bytes=...` header against a body of `len`
/// bytes: `Ok(None)` to send it all (no header, or several ranges), `Err`
/// when unsatisfiable.
fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole body is a valid answer
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (start, "") => (start.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (start, end) => {
            let (s, e): (u64, u64) = (start.parse().map_err(|_| ())?, end.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

impl Handler for StaticFiles {
    async fn handle(&self, request: &Request) -> Response {
        if !matches!(request.method, Method::Get | Method::Head) {
            return Response::error(405).with_header("Allow", "GET, HEAD");
        }
        let Some(file) = self.find(request.path()) else {
            return match self.site.file("404.html") {
                Ok(page) => Response::new(404, Body::Static(page.data))
                    .with_header("Content-Type", page.content_type),
                Err(_) => Response::error(404),
            };
        };
        let validated = request.header("if-none-match").is_some_and(|tags| {
            tags.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t == file.etag || t.strip_prefix("W/") == Some(file.etag)
            })
        });
        if validated {
            return Response::new(304, Body::Empty).with_header("ETag", file.etag);
        }
        let len = file.data.len() as u64;
        // If-Range with another validator: the representation changed, send it all.
        let range_header = match request.header("if-range") {
            Some(tag) if tag.trim() != file.etag => None,
            _ => request.header("range"),
        };
        let base = |status, body| {
            Response::new(status, body)
                .with_header("Content-Type", file.content_type)
                .with_header("ETag", file.etag)
                .with_header("Accept-Ranges", "bytes")
        };
        match byte_range(range_header, len) {
            Ok(None) => base(200, Body::Static(file.data)),
            Ok(Some((start, end))) => {
                base(206, Body::Static(&file.data[start as usize..=end as usize]))
                    .with_header("Content-Range", format!("bytes {start}-{end}/{len}"))
            }
            Err(()) => Response::error(416).with_header("Content-Range", format!("bytes */{len}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(byte_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=-0",
            "bytes=",
            "bytes=1",
        ] {
            assert_eq!(byte_range(Some(bad), 10), Err(()), "{bad}");
        }
        assert_eq!(byte_range(Some("items=0-1"), 10), Ok(None));
    }

    #[test]
    fn paths_decode_and_stay_inside() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%2"), None);
        // Issue 18: `from_str_radix` takes a sign, so `%+2` decoded to 0x02.
        assert_eq!(percent_decode("/%+2"), None);
        assert_eq!(percent_decode("/%-2"), None);
        assert_eq!(percent_decode("/%2F%2f").as_deref(), Some("///"));
        static FILES: [BakedFile; 1] = [BakedFile {
            key: "index.html",
            data: b"hi",
            content_type: "text/html",
            etag: "\"1\"",
        }];
        static SITE: Baked = Baked::new(&FILES);
        let files = StaticFiles::new(&SITE);
        assert!(files.find("/").is_some());
        assert!(files.find("/index.html").is_some());
        assert!(files.find("/../index.html").is_none());
        assert!(files.find("/%2e%2e/index.html").is_none());
        assert!(files.find("/nope").is_none());
    }
}
