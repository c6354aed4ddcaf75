//! The deterministic write-heavy workload. Step `i` of seed `s` depends
//! only on `s`, `i` and which keys are present after the steps before it,
//! so from the number of the last step a host saw acknowledged the guest
//! rebuilds exactly what the store must hold, without storing it anywhere.
//!
//! Steps are single sets (values from empty to 1 MiB: most inline in the
//! log, some over 256 KiB and so in several extents), single removes of a
//! present key, and batches of 2 to 6 changes to distinct keys. Over a few
//! dozen keys every key is overwritten again and again, so space is freed
//! and reused, and the log grows past the checkpoint and is compacted.

use lamina::alloc::collections::BTreeMap;
use lamina::prelude::*;

/// Keys the workload uses; they bound its disk use (about 10 MiB).
pub const KEYS: u32 = 48;

/// A value: its length and the seed of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Bytes.
    pub len: usize,
    /// What [`fill`] makes them from.
    pub seed: u64,
}

impl Value {
    /// The value's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        fill(self.len, self.seed)
    }
}

/// What the store must hold: key number to value.
pub type Model = BTreeMap<u32, Value>;

/// One change of a step.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// Set key number `.0`.
    Set(u32, Value),
    /// Remove key number `.0` (a batch may name an absent key).
    Remove(u32),
}

/// One acknowledged unit of the workload: one commit.
#[derive(Debug)]
pub struct Step {
    /// What it changes.
    pub changes: Vec<Change>,
    /// Committed as a [`lamina_store::Batch`] rather than one `set` or
    /// `remove`.
    pub batch: bool,
}

/// splitmix64: a good 64-bit mix from a counter, no state beyond it.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` bytes from `seed`; values of different seeds differ everywhere.
pub fn fill(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = seed;
    while out.len() < len {
        let word = next(&mut state).to_le_bytes();
        let take = (len - out.len()).min(word.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// The store key of key number `key`: one in eight is long (over 200
/// bytes), so records of several sizes fill the log blocks.
pub fn key_name(key: u32) -> String {
    if key % 8 == 7 {
        format!("load/long/{key:03}/{}", "x".repeat(200))
    } else {
        format!("load/{key:03}")
    }
}

fn value(rng: &mut u64) -> Value {
    let len = match next(rng) % 100 {
        // Inline in the commit record (up to 512 bytes).
        0..=54 => next(rng) % 513,
        // One extent.
        55..=79 => 513 + next(rng) % (16 << 10),
        // 100 to 400 KiB: over 256 KiB takes two extents.
        80..=96 => (100 << 10) + next(rng) % (300 << 10),
        // 768 KiB to 1 MiB: four extents.
        _ => (1 << 20) - next(rng) % (256 << 10),
    };
    Value {
        len: len as usize,
        seed: next(rng),
    }
}

/// Step `index` of the workload of `seed`, given what the steps before it
/// left (`model`).
pub fn step(seed: u64, index: u64, model: &Model) -> Step {
    let mut rng = seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03);
    next(&mut rng);
    let kind = next(&mut rng) % 100;
    let present = model
        .keys()
        .nth((next(&mut rng) % model.len().max(1) as u64) as usize);
    match (kind, present) {
        (50..=64, Some(&key)) => Step {
            changes: vec![Change::Remove(key)],
            batch: false,
        },
        (0..=64, _) => {
            let key = (next(&mut rng) % u64::from(KEYS)) as u32;
            Step {
                changes: vec![Change::Set(key, value(&mut rng))],
                batch: false,
            }
        }
        _ => {
            let count = 2 + next(&mut rng) % 5;
            let mut keys: Vec<u32> = Vec::new();
            while (keys.len() as u64) < count {
                let key = (next(&mut rng) % u64::from(KEYS)) as u32;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let changes = keys
                .into_iter()
                .map(|key| {
                    if next(&mut rng).is_multiple_of(4) {
                        Change::Remove(key)
                    } else {
                        Change::Set(key, value(&mut rng))
                    }
                })
                .collect();
            Step {
                changes,
                batch: true,
            }
        }
    }
}

/// `model` after `step`.
pub fn apply(model: &mut Model, step: &Step) {
    for change in &step.changes {
        match *change {
            Change::Set(key, value) => {
                model.insert(key, value);
            }
            Change::Remove(key) => {
                model.remove(&key);
            }
        }
    }
}

/// What the store must hold once steps `0..count` are applied.
pub fn model_after(seed: u64, count: u64) -> Model {
    let mut model = Model::new();
    for index in 0..count {
        let step = step(seed, index, &model);
        apply(&mut model, &step);
    }
    model
}
