//! Crash safety: a scripted workload (sets, removes, batches, big values,
//! overwrites that force space reuse and checkpoints) is run again and again
//! on the fault-injecting device, crashing at every write in turn, with the
//! unflushed writes kept (the crashing one torn), lost, or kept sector by
//! sector at random; once on an empty store, once on a store whose index
//! spans many pages, so that incremental checkpoints split, drop and
//! rewrite leaves and the root above them, and once removing most of such
//! a store's keys, so that checkpoints join the leaves thinned out. After
//! each crash the store must
//! mount with every acknowledged operation and the interrupted one either
//! whole or absent, checkpoint, and go on working.

mod support;

use lamina_core::device::{KvError, KvRead, KvWrite};
use lamina_store::{Batch, Store};
use std::collections::BTreeMap;
use support::{block_on, contents, next, pattern, FaultDisk, Survivors};

type Model = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone)]
enum Step {
    Set(String, Vec<u8>),
    Remove(String),
    Batch(Vec<(String, Option<Vec<u8>>)>),
    Checkpoint,
}

/// A deterministic workload of `steps` steps over `keys` keys.
fn workload(seed: u64, steps: usize, keys: u64) -> Vec<Step> {
    let mut rng = seed | 1;
    let mut out = Vec::new();
    let key = |rng: &mut u64| format!("k/{}", next(rng) % keys);
    let value = |rng: &mut u64| {
        let len = match next(rng) % 20 {
            0 => 300_000 + (next(rng) % 5000) as usize, // two extents and more
            1..=4 => 20_000 + (next(rng) % 3000) as usize,
            5 => 0,
            _ => (next(rng) % 300) as usize,
        };
        pattern(len, next(rng))
    };
    for _ in 0..steps {
        out.push(match next(&mut rng) % 20 {
            0..=10 => Step::Set(key(&mut rng), value(&mut rng)),
            11..=14 => Step::Remove(key(&mut rng)),
            15..=18 => Step::Batch(
                (0..2 + next(&mut rng) % 3)
                    .map(|_| {
                        let k = key(&mut rng);
                        let v = (!next(&mut rng).is_multiple_of(4)).then(|| value(&mut rng));
                        (k, v)
                    })
                    .collect(),
            ),
            _ => Step::Checkpoint,
        });
    }
    out
}

/// The model after `step`, had it been applied.
fn applied(model: &Model, step: &Step) -> Model {
    let mut model = model.clone();
    match step {
        Step::Set(key, value) => {
            model.insert(key.clone(), value.clone());
        }
        Step::Remove(key) => {
            model.remove(key);
        }
        Step::Batch(ops) => {
            // Later operations on a key win, as in the store.
            let mut last = BTreeMap::new();
            for (key, value) in ops {
                last.insert(key.clone(), value.clone());
            }
            for (key, value) in last {
                match value {
                    Some(value) => model.insert(key, value),
                    None => model.remove(&key),
                };
            }
        }
        Step::Checkpoint => {}
    }
    model
}

/// Runs `steps` from `model` until one fails with an I/O error (the
/// crash). Returns the acknowledged state and the step that was
/// interrupted, if any.
fn run(
    disk: &FaultDisk,
    store: &Store<FaultDisk>,
    model: &Model,
    steps: &[Step],
) -> (Model, Option<Step>) {
    let mut model = model.clone();
    for step in steps {
        let result = block_on(async {
            match step {
                Step::Set(key, value) => store.set(key, value).await,
                Step::Remove(key) => store.remove(key).await,
                Step::Batch(ops) => {
                    let mut batch = Batch::new();
                    for (key, value) in ops {
                        match value {
                            Some(value) => batch.set(key, value)?,
                            None => batch.remove(key)?,
                        }
                    }
                    store.commit(batch).await
                }
                Step::Checkpoint => store.checkpoint().await.map_err(KvError::from),
            }
        });
        match result {
            Ok(()) => {
                model = applied(&model, step);
                check_gets(disk, store, &model, step);
            }
            Err(KvError::NotFound) | Err(KvError::NoSpace) => {}
            Err(KvError::Io) => return (model, Some(step.clone())),
            Err(e) => panic!("{step:?}: {e}"),
        }
    }
    (model, None)
}

/// Gets the keys `step` wrote, twice (the second from the value cache,
/// which the stores here keep: `cached`), and checks them against `model`:
/// a value cached before its key was overwritten or removed, or the bytes
/// of blocks freed and written again since, would show here.
fn check_gets(disk: &FaultDisk, store: &Store<FaultDisk>, model: &Model, step: &Step) {
    let keys: Vec<&String> = match step {
        Step::Set(key, _) | Step::Remove(key) => vec![key],
        Step::Batch(ops) => ops.iter().map(|(key, _)| key).collect(),
        Step::Checkpoint => Vec::new(), // moves no value
    };
    block_on(async {
        for key in keys.iter().chain(&keys) {
            match (store.get(key).await, model.get(*key)) {
                (Ok(got), Some(value)) => assert!(got == *value, "{key}: a stale value"),
                (Err(KvError::NotFound), None) => {}
                // The step's own checkpoint crashed after its commit (a
                // set is acknowledged whatever that checkpoint does).
                (Err(KvError::Io), _) if disk.crashed() => return,
                (got, value) => panic!(
                    "{key}: {:?}, expected {:?}",
                    got.map(|v| v.len()),
                    value.map(Vec::len)
                ),
            }
        }
    });
}

/// `store`, keeping up to 1 MiB of values for gets (the workload's values
/// of about 20 KB are held, those of 300 KB are not).
fn cached(store: Store<FaultDisk>) -> Store<FaultDisk> {
    block_on(store.set_value_cache(1 << 20));
    store
}

/// A store on a device of `bytes`, holding `preload` keys (of the
/// workload's key space) with small values, all durable: its image and
/// contents.
fn preloaded(bytes: u64, sector_size: u32, preload: u64) -> (Vec<u8>, Model) {
    let disk = FaultDisk::new(bytes / sector_size as u64, sector_size);
    let store = block_on(Store::format(disk.clone())).unwrap();
    let mut model = Model::new();
    for chunk in (0..preload).collect::<Vec<_>>().chunks(500) {
        let pairs: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|&i| (format!("k/{}", i * 2), pattern(20 + (i % 80) as usize, i)))
            .collect();
        let mut batch = Batch::new();
        for (key, value) in &pairs {
            batch.set(key, value).unwrap();
        }
        block_on(store.commit(batch)).unwrap();
        model.extend(pairs);
    }
    block_on(store.checkpoint()).unwrap();
    assert_eq!(contents(&store), model);
    (disk.image(), model)
}

/// What [`crash_everywhere`] did: the runs made (each a crash and a
/// recovery), and the store's figures before and after the workload run
/// without a crash.
struct CrashRuns {
    runs: usize,
    before: lamina_store::Stats,
    after: lamina_store::Stats,
}

/// Runs `steps` once per write, crashing at it, for each way of losing
/// unflushed writes; checks every recovery. The store starts with
/// `preload` keys.
fn crash_everywhere(bytes: u64, sector_size: u32, steps: Vec<Step>, preload: u64) -> CrashRuns {
    let (image, start_model) = preloaded(bytes, sector_size, preload);
    let start_store = || {
        let disk = FaultDisk::from_image(image.clone(), sector_size);
        let store = cached(block_on(Store::mount(disk.clone())).unwrap());
        (disk, store)
    };
    // A run with no crash counts the writes.
    let (disk, store) = start_store();
    let before = block_on(store.stats());
    let start = disk.writes();
    let (full, interrupted) = run(&disk, &store, &start_model, &steps);
    assert!(interrupted.is_none());
    let writes = disk.writes() - start;
    let stats = block_on(store.stats());
    assert!(
        stats.generation >= before.generation + 3,
        "the workload checkpoints: {stats:?}"
    );
    assert!(full.len() > 3, "the workload leaves keys: {full:?}");
    eprintln!(
        "{writes} writes to crash at; {} steps; {before:?} -> {stats:?}",
        steps.len()
    );
    let mut runs = 0;
    for crash_at in 1..=writes {
        for survivors in [Survivors::All, Survivors::None, Survivors::Random(crash_at)] {
            let (disk, store) = start_store();
            disk.crash_at_write(crash_at);
            let (model, interrupted) = run(&disk, &store, &start_model, &steps);
            assert!(disk.crashed(), "crash at {crash_at} happened");
            let image = disk.after_crash(survivors);
            let what = format!("crash at write {crash_at}, {survivors:?}, during {interrupted:?}");
            let disk = FaultDisk::from_image(image, sector_size);
            let store = cached(
                block_on(Store::mount(disk.clone()))
                    .unwrap_or_else(|e| panic!("{what}: mount failed: {e}")),
            );
            let got = contents(&store);
            let with_interrupted = interrupted.as_ref().map(|step| applied(&model, step));
            assert!(
                got == model || Some(&got) == with_interrupted.as_ref(),
                "{what}: found {:?}, acknowledged {:?}",
                summary(&got),
                summary(&model)
            );
            assert!(block_on(store.verify()).is_empty(), "{what}");
            // It goes on working, and that survives too.
            block_on(store.set("after/crash", b"still here"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut expected = got.clone();
            expected.insert("after/crash".into(), b"still here".to_vec());
            block_on(store.checkpoint()).unwrap_or_else(|e| panic!("{what}: checkpoint: {e}"));
            // The values held since the mount's reads are still right.
            assert_eq!(contents(&store), expected, "{what}: read again");
            drop(store);
            let store =
                block_on(Store::mount(disk)).unwrap_or_else(|e| panic!("{what}: remount: {e}"));
            assert_eq!(contents(&store), expected, "{what}: after a further set");
            runs += 1;
        }
    }
    CrashRuns {
        runs,
        before,
        after: stats,
    }
}

fn summary(model: &Model) -> Vec<(String, usize)> {
    model.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

#[test]
fn every_crash_point_recovers_with_512_byte_sectors() {
    let done = crash_everywhere(1024 * 1024, 512, workload(0x5eed, 120, 12), 0);
    eprintln!("{} crashes recovered", done.runs);
}

#[test]
fn every_crash_point_recovers_with_4096_byte_sectors() {
    let done = crash_everywhere(1024 * 1024, 4096, workload(0xfeed, 120, 12), 0);
    eprintln!("{} crashes recovered", done.runs);
}

#[test]
fn every_crash_point_recovers_while_removes_join_leaves() {
    // 600 keys in about 15 leaves, then most of them removed in batches
    // at random, with checkpoints between and a few new keys: the leaves
    // thinned out are joined to their neighbours at each checkpoint.
    let mut rng = 0x0000_1ea5_u64;
    let mut left: Vec<u64> = (0..600).collect();
    let mut steps = Vec::new();
    for round in 0..8 {
        for _ in 0..2 {
            let ops = (0..30)
                .map(|_| {
                    let at = (next(&mut rng) % left.len() as u64) as usize;
                    (format!("k/{}", left.swap_remove(at) * 2), None)
                })
                .collect();
            steps.push(Step::Batch(ops));
        }
        steps.push(Step::Set(
            format!("k/{}", round * 150 + 1),
            pattern(700, round),
        ));
        steps.push(Step::Checkpoint);
    }
    let done = crash_everywhere(2 * 1024 * 1024, 512, steps, 600);
    eprintln!("{} crashes recovered", done.runs);
    assert!(
        done.after.index_pages * 2 < done.before.index_pages,
        "the leaves were joined: {} pages before, {} after",
        done.before.index_pages,
        done.after.index_pages
    );
}

#[test]
fn every_crash_point_recovers_with_an_index_of_many_pages() {
    // 600 keys in about 15 leaves: the workload's sets of new keys split
    // leaves, and each checkpoint rewrites only the leaves it dirtied and
    // the root above them; overwritten big values free blocks that later
    // values and pages reuse.
    let done = crash_everywhere(2 * 1024 * 1024, 512, workload(0xbeef, 45, 1200), 600);
    eprintln!("{} crashes recovered", done.runs);
}
