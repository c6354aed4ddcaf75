//! The key-value suites: [`run_read`] for any [`KvRead`] holding known
//! values, [`run_write`] for an empty [`KvWrite`].

use crate::{ensure, Report};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use lamina_core::device::{KvError, KvRead, KvWrite};

/// Keys that every store refuses with [`KvError::InvalidKey`].
const INVALID_KEYS: [&str; 6] = ["", "/", "..", "a/../b", "./a", "a\\b"];

/// Runs the read-only checks on `store`, which must hold `files` (key and
/// value; at least two keys, one value of 3 bytes or more) and nothing
/// under the key `conformance-missing`.
pub async fn run_read<K: KvRead>(store: &K, files: &[(&str, &[u8])]) -> Report {
    let mut report = Report::new("Kv");
    read_checks(&mut report, store, files).await;
    report
}

async fn read_checks<K: KvRead>(report: &mut Report, store: &K, files: &[(&str, &[u8])]) {
    let mut outcome = Ok(());
    for (key, value) in files {
        let got = store.get(key).await.map(|v| v.as_ref().to_vec());
        let slashed = store
            .get(&format!("/{key}"))
            .await
            .map(|v| v.as_ref().to_vec());
        let size = store.size(key).await;
        if got.as_deref() != Ok(value) || slashed != got || size != Ok(value.len() as u64) {
            outcome = Err(format!(
                "{key}: {got:?}, /{key}: {slashed:?}, size {size:?}"
            ));
            break;
        }
    }
    report.record(
        "get returns whole values, with or without a leading /",
        outcome,
    );
    let missing = (
        store.get("conformance-missing").await.err(),
        store.size("conformance-missing").await.err(),
        store.get_range("conformance-missing", 0, 1).await.err(),
    );
    report.record(
        "a missing key is NotFound",
        ensure(
            missing
                == (
                    Some(KvError::NotFound),
                    Some(KvError::NotFound),
                    Some(KvError::NotFound),
                ),
            || format!("{missing:?}"),
        ),
    );
    let mut refused = Ok(());
    for key in INVALID_KEYS {
        let got = store.get(key).await.err();
        if got != Some(KvError::InvalidKey) {
            refused = Err(format!("get({key:?}): {got:?}"));
            break;
        }
    }
    report.record("keys that escape the store are InvalidKey", refused);
    let Some((key, value)) = files.iter().find(|(_, v)| v.len() >= 3) else {
        report.record("get_range", Err("no value of 3 bytes or more".into()));
        return;
    };
    let len = value.len();
    let ranges = (
        store.get_range(key, 1, 2).await,
        store.get_range(key, len as u64 - 1, 100).await,
        store.get_range(key, len as u64 + 10, 5).await,
        store.get_range(key, u64::MAX, usize::MAX).await,
    );
    let wanted = (
        Ok(value[1..3].to_vec()),
        Ok(value[len - 1..].to_vec()),
        Ok(Vec::new()),
        Ok(Vec::new()),
    );
    report.record(
        "get_range returns the part inside the value, short at its end",
        ensure(ranges == wanted, || format!("{ranges:?}")),
    );
    let listed: Result<Vec<String>, _> = store
        .list("")
        .await
        .map(|entries| entries.into_iter().map(|e| e.key).collect());
    let mut expected: Vec<String> = files.iter().map(|(k, _)| String::from(*k)).collect();
    expected.sort();
    report.record(
        "list gives every key in lexicographic order",
        match &listed {
            Ok(keys) => {
                let ours: Vec<&String> = keys.iter().filter(|k| expected.contains(k)).collect();
                let mut sorted = keys.clone();
                sorted.sort();
                ensure(*keys == sorted && ours.len() == expected.len(), || {
                    format!("{keys:?}")
                })
            }
            Err(e) => Err(format!("{e}")),
        },
    );
    let first = &expected[0];
    let prefix = &first[..first.len().min(2)];
    let listed = store.list(prefix).await;
    report.record(
        "list filters by prefix",
        match listed {
            Ok(entries) => ensure(
                entries.iter().all(|e| e.key.starts_with(prefix))
                    && entries.iter().any(|e| e.key == *first),
                || format!("{entries:?} for prefix {prefix:?}"),
            ),
            Err(e) => Err(format!("{e}")),
        },
    );
}

/// Runs every check on `store`, which must be empty and writable: it sets,
/// replaces and removes keys, then runs [`run_read`]'s checks on what it
/// wrote.
pub async fn run_write<K: KvWrite>(store: &K) -> Report {
    let mut report = Report::new("Kv");
    let set = async |key, value: &[u8]| {
        store
            .set(key, value)
            .await
            .map_err(|e| format!("set {key}: {e}"))
    };
    report.record("set stores a value", {
        match set("b/two", b"second").await {
            Ok(()) => set("/a/one", b"x").await,
            e => e,
        }
    });
    report.record("set replaces a value", {
        match set("a/one", b"first").await {
            Ok(()) => {
                let got = store.get("a/one").await.map(|v| v.as_ref().to_vec());
                ensure(got.as_deref() == Ok(&b"first"[..]), || format!("{got:?}"))
            }
            e => e,
        }
    });
    let invalid = store.set("../escape", b"no").await;
    report.record(
        "set refuses a key that escapes the store",
        ensure(invalid == Err(KvError::InvalidKey), || {
            format!("{invalid:?}")
        }),
    );
    read_checks(
        &mut report,
        store,
        &[("a/one", b"first"), ("b/two", b"second")],
    )
    .await;
    let removed = store.remove("/b/two").await;
    let gone = store.get("b/two").await.err();
    let again = store.remove("b/two").await;
    report.record(
        "remove removes; removing a missing key is NotFound",
        ensure(
            removed == Ok(()) && gone == Some(KvError::NotFound) && again == Err(KvError::NotFound),
            || format!("remove: {removed:?}, get after: {gone:?}, remove again: {again:?}"),
        ),
    );
    report
}
