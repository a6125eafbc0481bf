//! Record framing and log scanning on arbitrary bytes: nothing may panic, a
//! decoded record must re-encode to the very bytes it came from, and a scan's
//! outcome must describe the input consistently.
//!
//! Input: `flags | seq_hint[1] | body`. With flag bit 0 clear, `body` is the
//! log as is. With it set, `body` is split on NUL bytes into payloads, each
//! framed as a record with a valid checksum, so that the fuzzer reaches the
//! payload decoder and the sequence checks instead of stopping at the CRC.

#![no_main]

use ldm::store::log::{self, Tail};
use ldm::store::record::{self, Decoded, RECORD_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, seq, body) = match data {
        [f, s, rest @ ..] => (*f, u64::from(*s), rest),
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
            let _ = record::encode_record(seq + i as u64 + gap, payload, &mut out);
        }
        out
    };
    check(&bytes);
    check(data);
});

fn check(bytes: &[u8]) {
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
    let prev = bytes.first().map(|b| u64::from(*b));
    for last_seq in [None, prev] {
        let scan = log::scan(bytes, base, last_seq);
        // Entries are contiguous from `base` to `end`, with consecutive seqs.
        let mut at = base;
        let mut expect = last_seq.map(|s| s + 1);
        for e in &scan.entries {
            assert_eq!(e.offset, at);
            assert!(!e.mutations.is_empty());
            if let Some(x) = expect {
                assert_eq!(e.seq, x);
            }
            expect = Some(e.seq + 1);
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
    if let Some(p) = log::next_valid(bytes, 0, None) {
        assert!(matches!(
            record::decode_record(&bytes[p..]),
            Decoded::Record { .. }
        ));
    }
}
