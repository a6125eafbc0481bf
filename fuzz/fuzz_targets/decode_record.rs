//! Record framing and log scanning on arbitrary bytes: nothing may panic, a
//! decoded record must re-encode to the very bytes it came from, and a scan's
//! outcome must describe the input consistently.
//!
//! Input: `flags | seq[8] | body`, `seq` over the whole u64 range (issue 25,
//! item 2: sequence numbers near `u64::MAX` are damage, never arithmetic
//! that wraps or panics). With flag bit 0 clear, `body` is the log as is.
//! With it set, `body` is split on NUL bytes into payloads, each framed as a
//! record with a valid checksum and seqs from `seq` (wrapping), so that the
//! fuzzer reaches the payload decoder and the sequence checks instead of
//! stopping at the CRC. Bit 2: the scans' `last_seq` is `seq - 1`
//! (wrapping) instead of the first byte.

#![no_main]

use ldm_store::log::{self, Tail};
use ldm_store::record::{self, Decoded, RECORD_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, seq, body) = match data {
        [f, s0, s1, s2, s3, s4, s5, s6, s7, rest @ ..] => (
            *f,
            u64::from_le_bytes([*s0, *s1, *s2, *s3, *s4, *s5, *s6, *s7]),
            rest,
        ),
        _ => (0, 0, data),
    };
    let bytes = if flags & 1 == 0 {
        body.to_vec()
    } else {
        let mut out = Vec::new();
        for (i, payload) in body.split(|b| *b == 0).enumerate() {
            // Bit 1: leave a gap in the sequence numbers after the first record.
            let gap = u64::from(flags & 2 != 0 && i > 0);
            // Too large: nothing is written, as the store would refuse it.
            let seq = seq.wrapping_add(i as u64).wrapping_add(gap);
            let _ = record::encode_record(seq, payload, &mut out);
        }
        out
    };
    let prev = (flags & 4 != 0).then(|| seq.wrapping_sub(1));
    check(&bytes, prev);
    check(data, prev);
});

fn check(bytes: &[u8], prev: Option<u64>) {
    let _ = record::decode_header(bytes);

    if let Decoded::Record { record, len } = record::decode_record(bytes) {
        assert!(len >= RECORD_HEADER_LEN && len <= bytes.len());
        assert_eq!(record.payload.len(), len - RECORD_HEADER_LEN);
        let mut again = Vec::new();
        record::encode_record(record.seq, record.payload, &mut again)
            .expect("a decoded payload is within the limit");
        assert_eq!(
            again,
            &bytes[..len],
            "a decoded record must re-encode to its bytes"
        );
    }

    let base = 24u64;
    let total = base + bytes.len() as u64;
    let prev = prev.or_else(|| bytes.first().map(|b| u64::from(*b)));
    for last_seq in [None, prev] {
        let scan = log::scan(bytes, base, last_seq);
        // Entries are contiguous from `base` to `end`, with consecutive
        // seqs that never pass MAX_SEQ (so never wrap).
        let mut at = base;
        let mut expect = last_seq.map(|s| s.checked_add(1));
        for e in &scan.entries {
            assert_eq!(e.offset, at);
            assert!(!e.mutations.is_empty());
            assert!(e.seq <= record::MAX_SEQ, "seq {} accepted", e.seq);
            if let Some(x) = expect {
                assert_eq!(Some(e.seq), x);
            }
            expect = Some(e.seq.checked_add(1));
            at += e.len;
        }
        assert_eq!(at, scan.end);
        match scan.tail {
            Tail::Clean => assert_eq!(scan.end, total),
            Tail::Torn {
                offset, dropped, ..
            } => {
                assert_eq!(offset, scan.end);
                assert!(dropped > 0);
                assert_eq!(offset + dropped, total);
            }
            Tail::Newer { offset, .. } => {
                assert_eq!(offset, scan.end);
                assert!(offset < total);
            }
            Tail::Corrupt {
                offset, next_valid, ..
            } => {
                assert_eq!(offset, scan.end);
                assert!(offset < total);
                if let Some(n) = next_valid {
                    assert!(n > offset && n < total);
                }
            }
        }
    }
    // The resync search finds exactly what decode_record accepts (with a
    // seq a writer can give), at every offset.
    let resync = log::Resync::new(bytes);
    for p in 0..bytes.len() {
        let slow = match record::decode_record(&bytes[p..]) {
            Decoded::Record { record, len } if record.seq <= record::MAX_SEQ => {
                Some((record.seq, len))
            }
            _ => None,
        };
        assert_eq!(resync.record_at(p).map(|f| (f.seq, f.len)), slow, "offset {p}");
    }
    if let Some(p) = log::next_valid(bytes, 0, None) {
        assert!(matches!(
            record::decode_record(&bytes[p..]),
            Decoded::Record { .. }
        ));
    }
}
