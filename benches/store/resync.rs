//! The resync search after damage (issue 25, item 1): a valid header and
//! then bait, `00 FF 0F 00` repeated, whose length field reads about 1 MiB
//! at half of all offsets. The search as it was (a `decode_record`, so a
//! CRC over up to 1 MiB, at every offset) against `store::resync` (two
//! prefix checksums and one multiplication per offset), in the same run.
//! The old search is quadratic: it is timed on small baits only, the new
//! one up to 64 MiB; the table gives time per MiB, which stays flat.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ldm::store::{log, record};

fn bait(len: usize) -> Vec<u8> {
    [0x00u8, 0xFF, 0x0F, 0x00]
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// The search before the fix, kept here as the baseline.
fn naive_next_valid(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&p| {
        matches!(
            record::decode_record(&bytes[p..]),
            record::Decoded::Record { .. }
        )
    })
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Prints the table; `quick` stops the new search at 8 MiB.
pub fn run(quick: bool) {
    println!();
    println!(
        "resync after damage: the next valid record after bait `00 FF 0F 00` (a load's search)"
    );
    // The first search of a process builds the table of powers (4 MiB).
    let first = time(|| {
        black_box(log::next_valid(&[0u8; 64], 1, Some(0)));
    });
    println!(
        "   first search of a process (builds the powers table): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "   {:>9} {:>14} {:>12} {:>14} {:>12}",
        "bait", "old search", "old / MiB", "new search", "new / MiB"
    );
    let per_mib = |d: Duration, len: usize| d.as_secs_f64() * 1e3 / (len as f64 / (1 << 20) as f64);
    // The old search is cheap until the ~1 MiB lengths fit in the bytes
    // left: past 1 MiB every extra KiB costs ~1 GiB of CRC.
    let mut sizes = vec![
        (1 << 20) + (16 << 10),
        (1 << 20) + (64 << 10),
        (1 << 20) + (128 << 10),
        2 << 20,
        8 << 20,
    ];
    if !quick {
        sizes.push(64 << 20);
    }
    for len in sizes {
        let bytes = bait(len);
        let old = (len <= (1 << 20) + (128 << 10)).then(|| {
            time(|| {
                black_box(naive_next_valid(black_box(&bytes), 1));
            })
        });
        let new = time(|| {
            black_box(log::next_valid(black_box(&bytes), 1, Some(0)));
        });
        let (old_total, old_mib) = old.map_or_else(
            || ("(minutes)".to_string(), String::new()),
            |d| {
                (
                    format!("{:.0} ms", d.as_secs_f64() * 1e3),
                    format!("{:.0} ms", per_mib(d, len)),
                )
            },
        );
        println!(
            "   {:>8}K {:>14} {:>12} {:>11.1} ms {:>9.1} ms",
            len >> 10,
            old_total,
            old_mib,
            new.as_secs_f64() * 1e3,
            per_mib(new, len)
        );
    }
}
