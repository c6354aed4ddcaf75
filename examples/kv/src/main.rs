//! kv: a persistent key-value service. An HTTP API over `lamina-store` on
//! the block device `storage`, whose data survives reboots and crashes.
//!
//! | request | answer |
//! |---------|--------|
//! | `PUT /kv/KEY` (body: the value) | 201 created or 204 replaced, once the write is durable |
//! | `GET /kv/KEY`, `HEAD /kv/KEY` | 200 with the value, or 404 |
//! | `DELETE /kv/KEY` | 204, or 404 |
//! | `GET /kv/?prefix=P&limit=N&after=K` | the keys under P, as JSON, in pages |
//!
//! Every value has a strong `ETag`; `If-None-Match` on GET and HEAD gives
//! 304, `If-Match` (and `If-None-Match: *`) on PUT and DELETE gives 412 when
//! it does not hold. `api` has the details; `examples/kv/README.md` shows
//! it with curl. Run it with
//!
//! ```text
//! truncate -s 256M kv.img
//! lamina run --release -t hvt --mem=96 --port 8080:80 kv -- --block:storage=kv.img
//! curl -T photo.jpg http://127.0.0.1:8080/kv/photos/1
//! ```
//!
//! On first boot a disk whose first MiB is all zeroes (a new image) is
//! formatted; a disk holding anything else that is not a store, or a damaged
//! store, is refused with a message and status 1, never formatted over.
#![no_std]
#![no_main]

mod api;
mod limits;

use core::net::{Ipv4Addr, SocketAddr};
use lamina::alloc::rc::Rc;
use lamina::prelude::*;
use lamina_http::{serve, Config, MemoryBudget};
use lamina_store::{Lock, Store};
use limits::{ByteSize, Limits};

lamina::devices! {
    /// The stack to serve on, the clock for the `Date` header and the disk
    /// that holds the store.
    pub struct Devices {
        clock: Clock,
        service: Stack,
        storage: Block,
    }
}

lamina::boot_args! {
    /// kv
    pub struct Args {
        /// TCP port to serve HTTP on.
        pub port: u16 = "80",
        /// Largest value a PUT may store (bytes, or with K, M or G); a
        /// longer body gets 413.
        pub max_value_size: ByteSize = "16M",
        /// Most bytes of bodies being received and values being sent held
        /// in memory at once, all connections together (at least
        /// --max-value-size); a PUT or GET past it waits for others.
        pub max_body_memory: ByteSize = "32M",
        /// Most connections served at once.
        pub max_connections: usize = "64",
        /// Most keys in one page of a listing (a request's `limit` is
        /// capped to it).
        pub list_limit: usize = "1000",
        /// Slowest a PUT's body may arrive on average, in bytes per second
        /// (or with K, M or G); a slower one gets 408 and frees its memory.
        pub min_upload_rate: ByteSize = "16K",
        /// Close a kept-alive connection after this long without a request.
        pub idle_timeout: Duration = "60s",
        /// Bytes of values over 512 bytes the store keeps for GETs (or
        /// with K, M or G), so that a GET of one read lately reads no
        /// disk; 0 for none. Values over a sixteenth of it are not kept.
        pub value_cache: ByteSize = "4M",
    }
}

/// Bytes at the start of the disk that must all be zero for it to be
/// formatted: where any partition table, file system or store keeps its
/// first structures.
const BLANK_CHECK_BYTES: u64 = 1 << 20;

/// Mounts the store on `disk`, formatting it only if it is blank.
async fn open_store<B: Block>(disk: B) -> Result<Store<B>, String> {
    let info = disk.info();
    let span = BLANK_CHECK_BYTES.min(info.capacity()) as usize;
    let mut head = vec![0u8; span - span % info.sector_size as usize];
    if !head.is_empty() {
        disk.read(0, &mut head)
            .await
            .map_err(|e| format!("kv: cannot read the disk 'storage': {e}"))?;
    }
    if head.iter().all(|&b| b == 0) {
        info!(
            "kv: the disk 'storage' ({} MiB) is blank: formatting a new store",
            info.capacity() >> 20
        );
        return Store::format(disk)
            .await
            .map_err(|e| format!("kv: cannot format the disk 'storage': {e}"));
    }
    Store::mount(disk).await.map_err(|e| {
        format!(
            "kv: the disk 'storage' is not usable: {e}. It is not formatted over: give the \
             service a blank disk (all zeroes) or one a store was written to \
             (`lamina store format IMAGE`, `lamina store fsck IMAGE`)"
        )
    })
}

async fn kv<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<Exit, String> {
    let limits = match Limits::check(&args, env.heap_size()) {
        Ok(limits) => limits,
        Err(message) => {
            error!("error: {message}");
            return Ok(Exit(2));
        }
    };
    let store = open_store(devices.storage).await?;
    store.set_value_cache(limits.value_cache as usize).await;
    let stats = store.stats().await;
    info!(
        "kv: {} keys, {} bytes of values; {} of {} blocks of {} bytes free",
        stats.keys, stats.value_bytes, stats.free_blocks, stats.blocks, stats.block_size
    );
    // Bodies being received and values being sent share one budget.
    let memory = MemoryBudget::new(limits.max_body_memory);
    let config = Config {
        max_body_bytes: limits.max_value_size,
        max_buffered_body_bytes: limits.max_body_memory,
        body_budget: Some(memory.clone()),
        // A key of up to 1,024 bytes, each percent-encoded, fits.
        max_target_bytes: 4096,
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        min_body_rate: args.min_upload_rate.0.max(1),
        ..Config::default()
    };
    let api = api::Api {
        store,
        writes: Lock::new(()),
        limits,
        memory,
        runtime: env.runtime().clone(),
    };
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    serve(
        &devices.service,
        address,
        Rc::new(api),
        devices.clock,
        env.runtime().clone(),
        config,
    )
    .await
    .map_err(|e| format!("cannot serve HTTP on port {}: {e}", args.port))?;
    Ok(Exit::SUCCESS)
}

lamina::main!(kv);
