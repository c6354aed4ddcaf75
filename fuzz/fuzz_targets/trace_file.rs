//! Trace recordings (`lamina trace`, `lamina run --trace`): the file a
//! tender or target wrote from a guest's ring, so every byte of it is the
//! guest's. Read and exported to Chrome JSON, it must give an error or
//! valid JSON, never a panic. The same bytes as a ring's words (control
//! words included) are drained as a consumer would, and must be refused or
//! give at most the ring's capacity.
#![no_main]

use lamina_trace::file::{Header, Records};
use lamina_trace::ring::{drain, CONTROL_WORDS};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::sync::atomic::AtomicU64;

/// A JSON value, read as `serde_json::Value` reads one (strings checked
/// as UTF-8 with their escapes, numbers within range) but kept nowhere:
/// building the `Value` and dropping it again was most of an execution.
struct Json;

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_str<E>(self, _: &str) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        while map.next_entry::<Json, Json>()?.is_some() {}
        Ok(Json)
    }
}

fuzz_target!(|bytes: &[u8]| {
    // Half the inputs without a header get one, so that the records are reached.
    let mut file = Vec::with_capacity(bytes.len() + 32);
    if !bytes.starts_with(&lamina_trace::file::FILE_MAGIC)
        && bytes.first().is_some_and(|b| b & 1 == 0)
    {
        file.extend_from_slice(&Header::new("fuzz", 0).to_bytes());
        file.extend_from_slice(&bytes[1..]);
    } else {
        file.extend_from_slice(bytes);
    }
    if let Ok((_, records)) = Records::new(&file) {
        for record in records {
            if let Ok(event) = record {
                let _ = event.strings().count();
                let _ = event.word(event.words());
            }
        }
    }
    let mut json = Vec::new();
    if lamina_trace::chrome::export(&file, &mut json).is_ok() {
        let parsed: Result<Json, _> = serde_json::from_slice(&json);
        assert!(parsed.is_ok(), "the export is not JSON: {:?}", parsed.err());
    }

    let words: Vec<AtomicU64> = bytes
        .chunks(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word[..c.len()].copy_from_slice(c);
            AtomicU64::new(u64::from_le_bytes(word))
        })
        .collect();
    let mut taken = 0;
    if drain(&words[..], words.len(), |_| taken += 1).is_ok() {
        assert!(taken <= words.len().saturating_sub(CONTROL_WORDS));
    }
});
