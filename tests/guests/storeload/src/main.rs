//! storeload: lamina-store under load on the block device `storage`, on
//! any target.
//!
//! | `--mode=` | what |
//! |-----------|------|
//! | `crash` | mounts the store (formats a disk without one), checks that it holds exactly what the workload's acknowledged steps left, then goes on with the workload |
//! | `bench` | formats the store, then times `--ops` durable sets of `--value-size` bytes over `--keys` keys, then as many gets (`--value-cache-bytes` of values kept for them) |
//!
//! `crash` is made to be killed (`bench/crash.py`, `cli/tests/crash.rs`).
//! The workload (see `workload.rs`) is deterministic from `--seed`; after
//! each commit returns the guest prints `ack I` (I counts steps from 0), so
//! the host knows the last step acknowledged before a kill and passes it as
//! `--verify-through=I` to the next boot. That boot rebuilds what steps
//! `0..=I` leave and checks every key and value of the store against it; the
//! step after I may have reached the disk too (its commit was under way),
//! whole, and then the store must equal the state after it, which the guest
//! makes durable (a checkpoint) and acknowledges before going on. Anything
//! else, a lost, partial or extra change, is a failure:
//!
//! ```text
//! storeload: mounted in 812 us (generation 7, 39 keys, 80 log blocks)
//! storeload verify: ok through step 4411 (39 keys, 5224177 bytes)
//! storeload verify: FAILED after step 4411: load/017: 3000 bytes, expected 2999 ...
//! ```
//!
//! `--formatted` says the host saw `storeload: formatted` on an earlier
//! boot, so a disk without a store is then a failure, not a blank disk.
//!
//! `bench` prints `storeload bench set SIZE: OPS ops in NS ns` and the same
//! for `get`, timed with the guest's monotonic clock.
#![no_std]
#![no_main]

mod workload;

use lamina::alloc::collections::BTreeMap;
use lamina::prelude::*;
use lamina_store::{Batch, Store};
use workload::{apply, key_name, model_after, step, Change, Model, Value};

lamina::devices! {
    /// The store's device.
    pub struct Devices {
        console: Console,
        clock: Clock,
        storage: Block,
    }
}

lamina::boot_args! {
    /// storeload
    pub struct Args {
        /// crash (verify, then write) or bench.
        pub mode: String = "crash",
        /// What the workload's steps derive from.
        pub seed: u64 = "1",
        /// The last step the host saw acknowledged (`ack N`); absent when
        /// none was.
        pub verify_through: Option<u64> = "",
        /// The host saw `storeload: formatted` on an earlier boot.
        pub formatted: bool = "false",
        /// Steps to write after verifying (absent: until killed).
        pub steps: Option<u64> = "",
        /// bench: bytes per value.
        pub value_size: usize = "100",
        /// bench: sets, then as many gets.
        pub ops: u64 = "2000",
        /// bench: distinct keys the sets go round.
        pub keys: u64 = "1000",
        /// bench: bytes of values over 512 bytes the store keeps for gets
        /// (`Store::set_value_cache`; 0: every such get reads the disk).
        pub value_cache_bytes: usize = "0",
    }
}

async fn storeload<P: Platform>(
    _env: Env<P>,
    devices: Devices<P>,
    args: Args,
) -> Result<Exit, String> {
    match args.mode.as_str() {
        "crash" => crash(devices, &args).await,
        "bench" => bench(devices, &args).await,
        other => Err(format!("--mode={other}: expected crash or bench")),
    }
}

/// Mounts (or formats), verifies, then runs the workload.
async fn crash<P: Platform>(devices: Devices<P>, args: &Args) -> Result<Exit, String> {
    let console = devices.console;
    let clock = devices.clock;
    let device = devices.storage;
    let start = clock.now();
    let store = match Store::mount(Borrowed(&device)).await {
        Ok(store) => {
            let took = clock.now().saturating_duration_since(start);
            let stats = store.stats().await;
            console.write_line(&format!(
                "storeload: mounted in {} us (generation {}, {} keys, {} log blocks)",
                took.as_micros(),
                stats.generation,
                stats.keys,
                stats.log_blocks
            ));
            store
        }
        Err(error) if !args.formatted && args.verify_through.is_none() => {
            // Nothing was acknowledged and no format finished: a blank
            // disk, or a format cut short.
            console.write_line(&format!("storeload: no store ({error}): formatting"));
            let store = Store::format(Borrowed(&device))
                .await
                .map_err(|e| format!("format: {e}"))?;
            console.write_line("storeload: formatted");
            store
        }
        Err(error) => {
            console.write_line(&format!(
                "storeload verify: FAILED: the store does not mount: {error}"
            ));
            return Ok(Exit(1));
        }
    };
    // Steps 0..acked were acknowledged; step `acked` may be on disk too.
    let acked = args.verify_through.map_or(0, |n| n + 1);
    let before = model_after(args.seed, acked);
    let next = step(args.seed, acked, &before);
    let mut after = before.clone();
    apply(&mut after, &next);
    let (mut model, mut index) = match verify(&store, &before, &after).await {
        Ok(Verdict::Before { keys, bytes }) => {
            console.write_line(&format!(
                "storeload verify: ok through {} ({keys} keys, {bytes} bytes)",
                through(acked)
            ));
            (before, acked)
        }
        Ok(Verdict::After { keys, bytes }) => {
            // The next step's commit was under way and reached the disk
            // whole: make it durable, then acknowledge it.
            store
                .checkpoint()
                .await
                .map_err(|e| format!("checkpoint: {e}"))?;
            console.write_line(&format!(
                "storeload verify: ok through {}, and step {acked} was on disk whole ({keys} keys, {bytes} bytes)",
                through(acked)
            ));
            console.write_line(&format!("ack {acked}"));
            (after, acked + 1)
        }
        Err(why) => {
            console.write_line(&format!(
                "storeload verify: FAILED after {}: {why}",
                through(acked)
            ));
            return Ok(Exit(1));
        }
    };
    let last = args.steps.map_or(u64::MAX, |n| index.saturating_add(n));
    while index < last {
        let next = step(args.seed, index, &model);
        if let Err(e) = run_step(&store, &next).await {
            let stats = store.stats().await;
            return Err(format!(
                "step {index}: {e} ({} keys, {} of {} blocks free)",
                stats.keys, stats.free_blocks, stats.blocks
            ));
        }
        console.write_line(&format!("ack {index}"));
        apply(&mut model, &next);
        index += 1;
    }
    let stats = store.stats().await;
    console.write_line(&format!(
        "storeload: stopped before step {index} (generation {}, {} keys, {} of {} blocks free)",
        stats.generation, stats.keys, stats.free_blocks, stats.blocks
    ));
    Ok(Exit::SUCCESS)
}

/// A block device lent to a store, so that a failed mount (which
/// consumes its device) leaves it for a format.
struct Borrowed<'a, B>(&'a B);

impl<B: Block> Block for Borrowed<'_, B> {
    fn info(&self) -> BlockInfo {
        self.0.info()
    }
    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read(sector, buf).await
    }
    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.write(sector, buf).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.0.flush().await
    }
    async fn write_and_flush(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.write_and_flush(sector, buf).await
    }
}

/// "step N" for the last acknowledged step before `acked`, or "no step".
fn through(acked: u64) -> String {
    match acked {
        0 => "no step".to_owned(),
        n => format!("step {}", n - 1),
    }
}

/// Applies one step to the store: returns once it is durable.
async fn run_step<B: Block>(store: &Store<B>, step: &workload::Step) -> Result<(), String> {
    let bytes: Vec<(String, Option<Vec<u8>>)> = step
        .changes
        .iter()
        .map(|change| match *change {
            Change::Set(key, value) => (key_name(key), Some(value.bytes())),
            Change::Remove(key) => (key_name(key), None),
        })
        .collect();
    let result = if step.batch {
        let mut batch = Batch::new();
        for (key, value) in &bytes {
            match value {
                Some(value) => batch.set(key, value),
                None => batch.remove(key),
            }
            .map_err(|e| format!("batch {key}: {e}"))?;
        }
        store.commit(batch).await
    } else {
        match &bytes[0] {
            (key, Some(value)) => store.set(key, value).await,
            (key, None) => store.remove(key).await,
        }
    };
    result.map_err(|e| format!("{e}"))
}

/// Which state the store holds.
enum Verdict {
    /// What the acknowledged steps left.
    Before { keys: usize, bytes: u64 },
    /// That and the next step.
    After { keys: usize, bytes: u64 },
}

/// The model with the store's key names.
fn named(model: &Model) -> BTreeMap<String, Value> {
    model
        .iter()
        .map(|(&key, &value)| (key_name(key), value))
        .collect()
}

/// Compares every key and value of the store with `before` and with
/// `after`; says which it equals, or how it differs from both.
async fn verify<B: Block>(
    store: &Store<B>,
    before: &Model,
    after: &Model,
) -> Result<Verdict, String> {
    let listed = store.list("").await.map_err(|e| format!("list: {e}"))?;
    let models = [named(before), named(after)];
    // Why the store is not model 0 / model 1, the first reason found.
    let mut differs: [Option<String>; 2] = [None, None];
    for (model, why) in models.iter().zip(&mut differs) {
        if let Some(missing) = model.keys().find(|k| !listed.iter().any(|e| &e.key == *k)) {
            *why = Some(format!("{missing}: missing"));
        }
    }
    let mut bytes = 0;
    for entry in &listed {
        let expected: Vec<Option<&Value>> = models.iter().map(|m| m.get(&entry.key)).collect();
        for (value, why) in expected.iter().zip(&mut differs) {
            if why.is_some() {
                continue;
            }
            match value {
                None => *why = Some(format!("{}: present, expected absent", entry.key)),
                Some(v) if v.len as u64 != entry.size => {
                    *why = Some(format!(
                        "{}: {} bytes, expected {}",
                        entry.key, entry.size, v.len
                    ))
                }
                Some(_) => {}
            }
        }
        if differs.iter().all(Option::is_some) {
            break;
        }
        let stored = store
            .get(&entry.key)
            .await
            .map_err(|e| format!("get {}: {e}", entry.key))?;
        bytes += stored.len() as u64;
        let mut made: Option<(Value, Vec<u8>)> = None;
        for (value, why) in expected.iter().zip(&mut differs) {
            let Some(value) = value else {
                continue;
            };
            if why.is_some() {
                continue;
            }
            if made.as_ref().is_none_or(|(v, _)| v != *value) {
                made = Some((**value, value.bytes()));
            }
            let wanted = &made.as_ref().expect("made above").1;
            if let Some(at) = stored.iter().zip(wanted).position(|(a, b)| a != b) {
                *why = Some(format!("{}: differs at byte {at}", entry.key));
            }
        }
    }
    let keys = listed.len();
    match differs {
        [None, _] => Ok(Verdict::Before { keys, bytes }),
        [_, None] => Ok(Verdict::After { keys, bytes }),
        [Some(before), Some(after)] => Err(format!(
            "{before} (and, counting the step after, {after}); {keys} keys listed"
        )),
    }
}

/// Formats the store, then times durable sets and gets.
async fn bench<P: Platform>(devices: Devices<P>, args: &Args) -> Result<Exit, String> {
    let console = devices.console;
    let clock = devices.clock;
    if args.keys == 0 || args.ops == 0 {
        return Err("--keys and --ops must be at least 1".to_owned());
    }
    let store = Store::format(devices.storage)
        .await
        .map_err(|e| format!("format: {e}"))?;
    store.set_value_cache(args.value_cache_bytes).await;
    let keys: Vec<String> = (0..args.keys.min(args.ops))
        .map(|i| format!("bench/{i:06}"))
        .collect();
    let value = workload::fill(args.value_size, 7);
    let size = args.value_size;
    let start = clock.now();
    for (i, key) in keys.iter().cycle().take(args.ops as usize).enumerate() {
        store
            .set(key, &value)
            .await
            .map_err(|e| format!("set {i}: {e}"))?;
    }
    let ns = clock.now().saturating_duration_since(start).as_nanos();
    console.write_line(&format!(
        "storeload bench set {size}: {} ops in {ns} ns",
        args.ops
    ));
    let start = clock.now();
    for key in keys.iter().cycle().take(args.ops as usize) {
        let got = store
            .get(key)
            .await
            .map_err(|e| format!("get {key}: {e}"))?;
        if got.len() != size {
            return Err(format!("get {key}: {} bytes, expected {size}", got.len()));
        }
    }
    let ns = clock.now().saturating_duration_since(start).as_nanos();
    console.write_line(&format!(
        "storeload bench get {size}: {} ops in {ns} ns",
        args.ops
    ));
    let stats = store.stats().await;
    console.write_line(&format!(
        "storeload bench: generation {}, {} log blocks, {} of {} blocks free, value cache {} \
         hits {} misses",
        stats.generation,
        stats.log_blocks,
        stats.free_blocks,
        stats.blocks,
        stats.value_cache_hits,
        stats.value_cache_misses
    ));
    Ok(Exit::SUCCESS)
}

lamina::main!(storeload);
