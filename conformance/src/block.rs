//! The [`Block`] suite. It overwrites the device: give it a scratch one of
//! at least 8 sectors.

use crate::{ensure, pattern, Report};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use lamina_core::device::{Block, BlockError};

/// Runs the suite.
pub async fn run<B: Block>(block: &B) -> Report {
    let mut report = Report::new("Block");
    let info = block.info();
    let size = info.sector_size as usize;
    report.record(
        "geometry: 512- or 4096-byte sectors, capacity in whole sectors",
        ensure(
            matches!(info.sector_size, 512 | 4096)
                && info.sectors >= 8
                && info.capacity() == info.sectors * size as u64,
            || format!("{info:?} (the suite needs at least 8 sectors)"),
        ),
    );
    if !report.passed() {
        return report;
    }
    let last = info.sectors - 1;
    report.record(
        "written sectors read back",
        round_trips(block, &[(0, 1), (info.sectors / 2, 3), (last - 1, 2)], 1).await,
    );
    // Transfers of many sectors: past the 256 KiB a Lamina tender takes per
    // call (so split in the guest), of a length that is no power of two,
    // and one that ends at the last sector (where spt's filter allows only
    // power-of-two pieces).
    let many = (info.sectors as usize - 1).min((640 << 10) / size);
    let transfers = [
        (1u64, many),
        (info.sectors - many as u64, many),
        (1, many.min(67)),
    ];
    report.record(
        "transfers of many sectors read back, also at the end",
        round_trips(block, &transfers, 11).await,
    );
    report.record(
        "a flush after a write succeeds, and the write reads back",
        {
            let data = pattern(size * 2, 7);
            let mut back = vec![0u8; data.len()];
            let sector = info.sectors / 4;
            let result = match block.write(sector, &data).await {
                Ok(()) => match block.flush().await {
                    Ok(()) => block.read(sector, &mut back).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            result
                .map_err(|e| format!("2 at {sector}: {e}"))
                .and_then(|()| ensure(back == data, || "read back differently".into()))
        },
    );
    let mut one = vec![0u8; size];
    let mut expect = |name, result: Result<(), BlockError>, wanted| {
        report.record(
            name,
            ensure(result == Err(wanted), || {
                format!("{result:?}, wanted {wanted:?}")
            }),
        )
    };
    expect(
        "an empty transfer is Unaligned",
        block.read(0, &mut []).await,
        BlockError::Unaligned,
    );
    expect(
        "a read of part of a sector is Unaligned",
        block.read(0, &mut one[..size - 1]).await,
        BlockError::Unaligned,
    );
    let odd = vec![0u8; size + 1];
    expect(
        "a write of a sector and a byte is Unaligned",
        block.write(0, &odd).await,
        BlockError::Unaligned,
    );
    expect(
        "a read at the sector count is OutOfRange",
        block.read(info.sectors, &mut one).await,
        BlockError::OutOfRange,
    );
    expect(
        "a read at sector u64::MAX is OutOfRange",
        block.read(u64::MAX, &mut one).await,
        BlockError::OutOfRange,
    );
    // Two sectors from the last one: refused before the device is touched,
    // so the last sector keeps what it held.
    let before = pattern(size, 9);
    let mut outcome = block.write(last, &before).await.map_err(|e| format!("{e}"));
    let across = vec![0xeeu8; size * 2];
    let refused = block.write(last, &across).await;
    let mut after = vec![0u8; size];
    if outcome.is_ok() {
        outcome = block
            .read(last, &mut after)
            .await
            .map_err(|e| format!("{e}"));
    }
    report.record(
        "a write across the end is OutOfRange and writes nothing",
        outcome.and_then(|()| {
            ensure(
                refused == Err(BlockError::OutOfRange) && after == before,
                || format!("{refused:?}; last sector changed: {}", after != before),
            )
        }),
    );
    report
}

/// Writes a pattern of `count` sectors at `sector` for each transfer, and
/// reads it back; the first failure.
async fn round_trips<B: Block>(
    block: &B,
    transfers: &[(u64, usize)],
    seed: u8,
) -> Result<(), String> {
    let size = block.info().sector_size as usize;
    for (i, &(sector, count)) in transfers.iter().enumerate() {
        let data = pattern(size * count, seed.wrapping_add(i as u8));
        let mut back = vec![0u8; data.len()];
        let result = match block.write(sector, &data).await {
            Ok(()) => block.read(sector, &mut back).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| format!("{count} at {sector}: {e}"))?;
        ensure(back == data, || {
            format!("{count} at {sector} read back differently")
        })?;
    }
    Ok(())
}
