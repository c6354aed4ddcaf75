//! The HTTP API: requests on `/kv/KEY` and `/kv/` turned into store
//! operations.
//!
//! - Keys are the path after `/kv/`, percent-decoded: UTF-8, 1 to 1,024
//!   bytes, `/`-separated segments none of which is empty, `.` or `..`
//!   (what the store holds; a key is never silently rewritten into another).
//! - A value's ETag is its length and a 64-bit CRC digest of its bytes:
//!   strong (byte-identical values have the same one), computed as the value
//!   is read, never stored.
//! - Writes (PUT, DELETE) take the `writes` lock for their whole course, so
//!   a condition checked (`If-Match`) still holds when the store commits.
//!   The store answers only after its commit, values and record flushed,
//!   returned: a 201 or 204 means the write is on stable storage.

use crate::limits::Limits;
use core::fmt::Write;
use lamina::device::{normalize_key, KvError};
use lamina::prelude::*;
use lamina_http::{percent_decode, Body, Handler, MemoryBudget, Method, Request, Response};
use lamina_store::format::{Crc64, MAX_KEY};
use lamina_store::{Lock, Store};

/// Bytes of a value read at a time to compute its ETag without holding it.
const ETAG_CHUNK: usize = 256 * 1024;

/// The service's state: the store, the lock writes take, the limits.
pub struct Api<B> {
    /// The mounted store.
    pub store: Store<B>,
    /// Held by a write from its conditions to its commit.
    pub writes: Lock<()>,
    /// Sizes from the boot arguments.
    pub limits: Limits,
    /// Bytes of values being received and sent (`--max-body-memory`): a
    /// GET waits for its value's size before reading it.
    pub memory: MemoryBudget,
    /// For waiting on `memory`.
    pub runtime: lamina::runtime::Handle,
}

impl<B: Block> Handler for Api<B> {
    async fn handle(&self, request: &Request) -> Response {
        let path = request.path();
        if path == "/kv" || path == "/kv/" {
            return match request.method {
                Method::Get | Method::Head => self.list(request).await,
                _ => Response::error(405).with_header("Allow", "GET, HEAD"),
            };
        }
        let Some(raw) = path.strip_prefix("/kv/") else {
            return text(404, "not found: keys are under /kv/");
        };
        let key = match parse_key(raw) {
            Ok(key) => key,
            Err((status, why)) => return text(status, why),
        };
        match &request.method {
            Method::Get => self.get(&key, request).await,
            Method::Head => self.head(&key, request).await,
            Method::Other(m) if m == "PUT" => self.put(&key, request).await,
            Method::Other(m) if m == "DELETE" => self.delete(&key, request).await,
            Method::Other(_) => Response::error(405).with_header("Allow", "GET, HEAD, PUT, DELETE"),
        }
    }
}

impl<B: Block> Api<B> {
    /// GET: the value, or 304 when `If-None-Match` names its ETag.
    async fn get(&self, key: &str, request: &Request) -> Response {
        let size = match self.store.size(key).await {
            Ok(size) => size,
            Err(e) => return store_error(key, e),
        };
        // Held until the response has been sent. A write may change the
        // size before the read; the hold is for the size read here, which
        // is at most --max-value-size either way.
        let hold = self.memory.hold(size, &self.runtime).await;
        let value = match self.store.get(key).await {
            Ok(value) => value,
            Err(e) => return store_error(key, e),
        };
        let etag = etag_of(&value);
        if not_modified(request, &etag) {
            return Response::new(304, Body::Empty).with_header("ETag", etag);
        }
        Response::new(200, Body::Owned(value))
            .with_header("Content-Type", "application/octet-stream")
            .with_header("ETag", etag)
            .holding(hold)
    }

    /// HEAD: the length and ETag of the value, without holding the value.
    async fn head(&self, key: &str, request: &Request) -> Response {
        // A write between two chunks would give a digest of neither value.
        let _writes = self.writes.lock().await;
        let (size, etag) = match self.current(key).await {
            Ok(Some(current)) => current,
            Ok(None) => return store_error(key, KvError::NotFound),
            Err(e) => return store_error(key, e),
        };
        if not_modified(request, &etag) {
            return Response::new(304, Body::Empty).with_header("ETag", etag);
        }
        Response::new(200, Body::Empty)
            .with_header("Content-Type", "application/octet-stream")
            .with_header("Content-Length", size.to_string())
            .with_header("ETag", etag)
    }

    /// PUT: stores the body; 201 for a new key, 204 for a replaced value,
    /// both once durable; 412 when a condition fails.
    async fn put(&self, key: &str, request: &Request) -> Response {
        let value = &request.body;
        if value.len() as u64 > self.limits.max_value_size {
            // The server refuses a longer Content-Length before reading the
            // body; this holds whatever it does.
            return text(413, "value larger than --max-value-size");
        }
        let _writes = self.writes.lock().await;
        let current = match self.current_if_asked(key, request).await {
            Ok(current) => current,
            Err(e) => return store_error(key, e),
        };
        if let Some(refused) = precondition_failed(request, current.as_ref(), true) {
            return refused;
        }
        let existed = match &current {
            Some(_) => true,
            None => self.store.size(key).await.is_ok(),
        };
        if let Err(e) = self.store.set(key, value).await {
            return store_error(key, e);
        }
        let status = if existed { 204 } else { 201 };
        Response::new(status, Body::Empty).with_header("ETag", etag_of(value))
    }

    /// DELETE: 204 once the removal is durable, 404 when there was nothing.
    async fn delete(&self, key: &str, request: &Request) -> Response {
        let _writes = self.writes.lock().await;
        let current = match self.current_if_asked(key, request).await {
            Ok(current) => current,
            Err(e) => return store_error(key, e),
        };
        if let Some(refused) = precondition_failed(request, current.as_ref(), false) {
            return refused;
        }
        match self.store.remove(key).await {
            Ok(()) => Response::new(204, Body::Empty),
            Err(e) => store_error(key, e),
        }
    }

    /// A listing: `prefix` (default none), `after` (continue after this
    /// key) and `limit` (at most `--list-limit`), as JSON.
    async fn list(&self, request: &Request) -> Response {
        let query = match Listing::parse(request, self.limits.list_limit) {
            Ok(query) => query,
            Err(why) => return text(400, why),
        };
        let mut entries = self
            .store
            .list_page(&query.prefix, query.after.as_deref(), query.limit + 1)
            .await;
        let more = entries.len() > query.limit;
        entries.truncate(query.limit);
        let mut json = String::from("{\"keys\":[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str("{\"key\":");
            json_string(&mut json, &entry.key);
            let _ = write!(json, ",\"size\":{}}}", entry.size);
        }
        json.push_str("],\"next\":");
        match entries.last() {
            Some(last) if more => json_string(&mut json, &last.key),
            _ => json.push_str("null"),
        }
        json.push_str("}\n");
        Response::new(200, Body::Owned(json.into_bytes()))
            .with_header("Content-Type", "application/json")
    }

    /// The value's size and ETag if a condition of `request` needs them.
    async fn current_if_asked(
        &self,
        key: &str,
        request: &Request,
    ) -> Result<Option<(u64, String)>, KvError> {
        let if_none_match = request.header("if-none-match").map(str::trim);
        let asked =
            request.header("if-match").is_some() || if_none_match.is_some_and(|tags| tags != "*");
        if asked || if_none_match == Some("*") {
            self.current(key).await
        } else {
            Ok(None)
        }
    }

    /// The size and ETag of the value under `key`, `None` when there is
    /// none, reading it a chunk at a time.
    async fn current(&self, key: &str) -> Result<Option<(u64, String)>, KvError> {
        let size = match self.store.size(key).await {
            Ok(size) => size,
            Err(KvError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut digest = Crc64::new();
        let mut offset = 0;
        while offset < size {
            let chunk = self.store.get_range(key, offset, ETAG_CHUNK).await?;
            if chunk.is_empty() {
                return Err(KvError::Io); // shorter than its size
            }
            digest.update(&chunk);
            offset += chunk.len() as u64;
        }
        Ok(Some((size, etag(size, digest.finish()))))
    }
}

/// The key in the path after `/kv/`, or the status and reason to refuse it.
fn parse_key(raw: &str) -> Result<String, (u16, String)> {
    let key = percent_decode(raw).ok_or_else(|| {
        (
            400,
            "bad key: a bad %-escape, or not UTF-8 once decoded".into(),
        )
    })?;
    if key.is_empty() {
        return Err((400, "bad key: empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err((414, format!("bad key: longer than {MAX_KEY} bytes")));
    }
    if normalize_key(&key).as_deref() != Ok(key.as_str()) {
        return Err((
            400,
            "bad key: '/'-separated segments, none empty, '.' or '..', without NUL or backslash"
                .into(),
        ));
    }
    Ok(key)
}

/// What a listing asks for.
struct Listing {
    prefix: String,
    after: Option<String>,
    limit: usize,
}

impl Listing {
    /// Parses the query of `request`; `limit` defaults to and is capped at
    /// `max_limit`. Unknown parameters are refused (a typo would otherwise
    /// list everything).
    fn parse(request: &Request, max_limit: usize) -> Result<Listing, String> {
        let mut listing = Listing {
            prefix: String::new(),
            after: None,
            limit: max_limit,
        };
        let query = request.target.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Form encoding: `+` is a space (send `%2B` for a plus).
            let value = percent_decode(&value.replace('+', "%20"))
                .ok_or_else(|| format!("bad query: '{name}' is not percent-encoded UTF-8"))?;
            match name {
                "prefix" => listing.prefix = value,
                "after" => listing.after = Some(value),
                "limit" => {
                    listing.limit = match value.parse::<usize>() {
                        Ok(n) if n > 0 => n.min(max_limit),
                        _ => {
                            return Err(format!("bad query: limit={value}: a whole number from 1"))
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "bad query: unknown parameter '{name}' (prefix, after, limit)"
                    ))
                }
            }
        }
        Ok(listing)
    }
}

/// Whether `If-None-Match` of a GET or HEAD names `etag` (weakly).
fn not_modified(request: &Request, etag: &str) -> bool {
    request
        .header("if-none-match")
        .is_some_and(|tags| lists(tags, Some(etag), true))
}

/// 412 when `If-Match` (strong) or `If-None-Match` does not hold for the
/// value `current` (`None`: no value). `If-None-Match` counts only on a
/// PUT (`put`): `*` means "create, never replace".
fn precondition_failed(
    request: &Request,
    current: Option<&(u64, String)>,
    put: bool,
) -> Option<Response> {
    let etag = current.map(|(_, etag)| etag.as_str());
    let failed = request
        .header("if-match")
        .is_some_and(|tags| !lists(tags, etag, false))
        || (put
            && request
                .header("if-none-match")
                .is_some_and(|tags| lists(tags, etag, true)));
    failed.then(|| {
        let response = text(412, "precondition failed: the value is not the one named");
        match etag {
            Some(etag) => response.with_header("ETag", etag.to_owned()),
            None => response,
        }
    })
}

/// Whether an ETag list (`*`, or `"a", W/"b"`) holds `etag`; `*` holds any
/// value but not its absence. Weak tags count only when `weak`.
fn lists(tags: &str, etag: Option<&str>, weak: bool) -> bool {
    let Some(etag) = etag else {
        return false;
    };
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || (weak && tag.strip_prefix("W/") == Some(etag)))
}

/// The ETag of `value`.
fn etag_of(value: &[u8]) -> String {
    let mut digest = Crc64::new();
    digest.update(value);
    etag(value.len() as u64, digest.finish())
}

fn etag(size: u64, digest: u64) -> String {
    format!("\"{size:x}-{digest:016x}\"")
}

/// A plain-text answer: the status and why.
fn text(status: u16, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    Response::new(status, Body::Owned(body.into_bytes()))
        .with_header("Content-Type", "text/plain; charset=utf-8")
}

/// The answer to a store error.
fn store_error(key: &str, error: KvError) -> Response {
    match error {
        KvError::NotFound => text(404, "no such key"),
        KvError::InvalidKey => text(400, "bad key"),
        KvError::NoSpace => text(507, "the store is full"),
        KvError::ReadOnly | KvError::Io => {
            warn!("kv: {key}: {error}");
            text(500, format!("store error: {error}"))
        }
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
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
}
