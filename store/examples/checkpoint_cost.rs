//! What a set costs as the store grows, checkpoints included: for each
//! key count, a store on a file (fdatasync per commit, as on a host disk)
//! is filled with that many keys of 100-byte values, then sets of random
//! existing keys are timed one by one: at least 2,000, and until two
//! checkpoints have happened (so that the mean covers their cost). Prints
//! the sets made, the mean and median set, and of the sets that triggered
//! a checkpoint (the superblock generation moved) the median and slowest
//! and the most blocks one wrote.
//!
//! ```sh
//! cargo run --release -p lamina-store --features std --example checkpoint_cost -- /var/tmp 1000 10000 100000
//! ```

use lamina_core::device::{Block, BlockError, BlockInfo, FileBlock, KvWrite};
use lamina_core::runtime::{Executor, Instant as Now, Park};
use lamina_store::{Batch, Store};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

struct Still;

impl Park for Still {
    fn now(&self) -> Now {
        Now::from_nanos(0)
    }
    fn park(&self, _: Option<Now>) {}
}

/// A file device that counts the blocks (4 KiB) written.
struct Counting {
    file: FileBlock,
    written: Rc<Cell<u64>>,
}

impl Block for Counting {
    fn info(&self) -> BlockInfo {
        self.file.info()
    }
    async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.file.read(sector, buf).await
    }
    async fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.written
            .set(self.written.get() + buf.len() as u64 / 4096);
        self.file.write(sector, buf).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.file.flush().await
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map(String::as_str).unwrap_or("/var/tmp");
    let counts: Vec<u64> = args[1..]
        .iter()
        .map(|a| a.parse().expect("a key count"))
        .collect();
    let executor = Executor::new(Rc::new(Still));
    println!(
        "keys      sets   checkpoints  mean set  median set  checkpointing set: median  slowest  most blocks"
    );
    for keys in counts {
        let path = format!("{dir}/checkpoint-cost-{}.img", std::process::id());
        let written = Rc::new(Cell::new(0));
        let device = Counting {
            file: FileBlock::create(std::path::Path::new(&path), 1 << 30).expect("image"),
            written: written.clone(),
        };
        let store = executor.block_on(Store::format(device)).expect("format");
        let value = [7u8; 100];
        let name = |i: u64| format!("bench/{i:08}");
        executor.block_on(async {
            for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
                let mut batch = Batch::new();
                for &i in chunk {
                    batch.set(&name(i), &value).unwrap();
                }
                store.commit(batch).await.unwrap();
            }
            store.checkpoint().await.unwrap();
        });
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut times = Vec::new();
        let mut checkpointing = Vec::new();
        let mut most_blocks = 0;
        let mut checkpoints = 0;
        while times.len() < 2000 || (checkpoints < 2 && times.len() < 50_000) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = name(rng % keys);
            let generation = executor.block_on(store.stats()).generation;
            let blocks = written.get();
            let start = Instant::now();
            executor.block_on(store.set(&key, &value)).unwrap();
            let ms = start.elapsed().as_secs_f64() * 1e3;
            times.push(ms);
            if executor.block_on(store.stats()).generation != generation {
                checkpoints += 1;
                checkpointing.push(ms);
                most_blocks = most_blocks.max(written.get() - blocks);
            }
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let sets = times.len();
        times.sort_by(f64::total_cmp);
        checkpointing.sort_by(f64::total_cmp);
        println!(
            "{keys:<9} {sets:<6} {checkpoints:<12} {mean:>6.3} ms  {:>7.3} ms  {:>17.3} ms  {:>7.1} ms  {most_blocks}",
            times[times.len() / 2],
            checkpointing.get(checkpointing.len() / 2).unwrap_or(&0.0),
            checkpointing.last().unwrap_or(&0.0),
        );
        drop(store);
        let _ = std::fs::remove_file(&path);
    }
}
