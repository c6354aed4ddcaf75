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
use std::sync::atomic::AtomicU64;

fuzz_target!(|bytes: &[u8]| {
    // Half the inputs without a header get one, so that the records are reached.
    let mut file = Vec::with_capacity(bytes.len() + 32);
    if !bytes.starts_with(&lamina_trace::file::FILE_MAGIC) && bytes.first().is_some_and(|b| b & 1 == 0) {
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
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&json);
        assert!(parsed.is_ok(), "the export is not JSON: {parsed:?}");
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
