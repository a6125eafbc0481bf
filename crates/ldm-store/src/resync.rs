//! Finding records with a valid checksum at any byte offset, in time linear
//! in the bytes searched (DESIGN.md, "Recovery": the resync search).
//!
//! After damage, recovery asks whether a valid record starts anywhere after
//! it. Trying [`super::record::decode_record`] at every offset costs a
//! CRC over up to `MAX_PAYLOAD` bytes per offset: a crafted file (a valid
//! header, then `00 FF 0F 00` repeated, whose length fields all read about
//! 1 MiB) made that quadratic, minutes for 2 MiB. Here the checksum of any
//! stretch comes from two prefix checksums instead, as zlib's
//! `crc32_combine` does it backwards:
//!
//! ```text
//! crc(A ‖ B) = crc(A) · x^(8·|B|) ⊕ crc(B)   (mod the CRC polynomial)
//! so crc(bytes[a..b]) = crc(bytes[..b]) ⊕ crc(bytes[..a]) · x^(8·(b-a))
//! ```
//!
//! Prefix checksums are kept every [`STEP`] bytes (a quarter of the
//! searched bytes in memory) and finished with at most `STEP - 1` table
//! steps; the powers `x^(8n)` for every record length are one table of
//! 4 MiB, built once per process the first time damage is searched. Each
//! candidate offset then costs two short prefix walks and one 32-step
//! multiplication, whatever its length field says.

use std::cell::{Cell, OnceCell};
use std::sync::OnceLock;

use super::record::{MAX_PAYLOAD, MAX_SEQ, RECORD_HEADER_LEN};

/// Prefix checksums are stored at every multiple of this many bytes.
const STEP: usize = 16;
/// CRC-32 (IEEE), reflected: the polynomial `crc32fast` and zlib use.
const POLY: u32 = 0xEDB8_8320;
/// The longest stretch a record's checksum covers: length, seq, payload.
const MAX_SPAN: usize = RECORD_HEADER_LEN - 4 + MAX_PAYLOAD as usize;

/// The byte-at-a-time CRC table.
static TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// One table step of the CRC register over `byte`.
fn step(state: u32, byte: u8) -> u32 {
    TABLE[((state ^ u32::from(byte)) & 0xff) as usize] ^ (state >> 8)
}

/// `x^(8n) mod P` for every `n` up to [`MAX_SPAN`] (reflected: `x^0` is
/// `0x8000_0000`). Multiplying by `x^8` is one table step over a zero byte.
fn powers() -> &'static [u32] {
    static POWERS: OnceLock<Vec<u32>> = OnceLock::new();
    POWERS.get_or_init(|| {
        let mut out = Vec::with_capacity(MAX_SPAN + 1);
        let mut v = 0x8000_0000u32;
        for _ in 0..=MAX_SPAN {
            out.push(v);
            v = step(v, 0);
        }
        out
    })
}

/// `a · b mod P`, reflected (zlib's `multmodp`).
fn mult(a: u32, mut b: u32) -> u32 {
    let mut p = 0u32;
    let mut m = 1u32 << 31;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// A record found by the search: its sequence number and encoded length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its sequence number.
    pub seq: u64,
    /// Header and payload, in bytes.
    pub len: usize,
}

/// The bytes to search, with their prefix checksums built on first use.
pub struct Resync<'a> {
    bytes: &'a [u8],
    checkpoints: OnceCell<Vec<u32>>,
    /// Table steps and multiplications done so far, for the tests that
    /// prove the bound.
    work: Cell<u64>,
}

impl<'a> Resync<'a> {
    /// A search over `bytes`; nothing is computed until it is needed.
    pub fn new(bytes: &'a [u8]) -> Resync<'a> {
        Resync {
            bytes,
            checkpoints: OnceCell::new(),
            work: Cell::new(0),
        }
    }

    /// The bytes searched.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Table steps and multiplications (32 steps each) done so far.
    pub fn work(&self) -> u64 {
        self.work.get()
    }

    fn checkpoints(&self) -> &[u32] {
        self.checkpoints.get_or_init(|| {
            let mut out = Vec::with_capacity(self.bytes.len() / STEP + 1);
            let mut state = !0u32;
            out.push(!state);
            for chunk in self.bytes.chunks(STEP) {
                for &b in chunk {
                    state = step(state, b);
                }
                out.push(!state);
            }
            self.add_work(self.bytes.len() as u64);
            out
        })
    }

    fn add_work(&self, n: u64) {
        self.work.set(self.work.get().saturating_add(n));
    }

    /// CRC-32 of `bytes[..end]`.
    fn prefix(&self, end: usize) -> u32 {
        let at = end / STEP;
        let mut state = !self.checkpoints()[at];
        for &b in &self.bytes[at * STEP..end] {
            state = step(state, b);
        }
        self.add_work((end - at * STEP) as u64);
        !state
    }

    /// The record with a valid checksum that starts at `pos`, if any: what
    /// `decode_record(&bytes[pos..])` accepts (with a seq of at most
    /// `MAX_SEQ`), without hashing its bytes.
    pub fn record_at(&self, pos: usize) -> Option<Found> {
        let rest = self.bytes.get(pos..)?;
        if rest.len() < RECORD_HEADER_LEN {
            return None;
        }
        let length = le_u32(&rest[4..8]);
        if length > MAX_PAYLOAD {
            return None;
        }
        let len = RECORD_HEADER_LEN + length as usize;
        if rest.len() < len {
            return None;
        }
        let (from, to) = (pos + 4, pos + len);
        let crc = self.prefix(to) ^ mult(powers()[to - from], self.prefix(from));
        self.add_work(32);
        if crc != le_u32(&rest[0..4]) {
            return None;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&rest[8..16]);
        let seq = u64::from_le_bytes(seq);
        // A seq no writer can have given is damage, as in a scan.
        (seq <= MAX_SEQ).then_some(Found { seq, len })
    }

    /// First offset at or after `from` where a record with a valid checksum
    /// and a sequence number after `prev` (if given) starts.
    pub fn next_valid(&self, from: usize, prev: Option<u64>) -> Option<usize> {
        (from..self.bytes.len()).find(|&p| {
            self.record_at(p)
                .is_some_and(|f| prev.is_none_or(|s| f.seq > s))
        })
    }

    /// The highest sequence number of any record with a valid checksum at
    /// or after `from`, stepping over each record found.
    pub fn max_seq(&self, from: usize) -> Option<u64> {
        let mut best = None;
        let mut pos = from;
        while pos < self.bytes.len() {
            match self.record_at(pos) {
                Some(f) => {
                    best = best.max(Some(f.seq));
                    pos += f.len;
                }
                None => pos += 1,
            }
        }
        best
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{self, Decoded};

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_stretch_checksum_from_two_prefixes_is_crc32() {
        let bytes = noise(4096, 7);
        let r = Resync::new(&bytes);
        for (a, b) in [(0, 0), (0, 1), (3, 17), (16, 32), (5, 4096), (100, 2000)] {
            let got = r.prefix(b) ^ mult(powers()[b - a], r.prefix(a));
            assert_eq!(got, crc32fast::hash(&bytes[a..b]), "{a}..{b}");
        }
        // Each prefix checksum is the CRC-32 of the bytes before it.
        for end in [0, 1, 15, 16, 17, 100, 4096] {
            assert_eq!(r.prefix(end), crc32fast::hash(&bytes[..end]), "..{end}");
        }
    }

    #[test]
    fn finds_what_decode_record_finds_at_every_offset() {
        let mut bytes = noise(300, 3);
        for (seq, payload) in [(5u64, &b"{\"op\":1}"[..]), (6, b""), (9, b"xyz")] {
            record::encode_record(seq, payload, &mut bytes).unwrap();
            bytes.extend(noise(37, seq));
        }
        // A record cut short, and lengths that point past the end.
        record::encode_record(10, b"cut", &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 1);
        let r = Resync::new(&bytes);
        for p in 0..bytes.len() + 2 {
            let slow = match bytes.get(p..).map(record::decode_record) {
                Some(Decoded::Record { record, len }) => Some(Found {
                    seq: record.seq,
                    len,
                }),
                _ => None,
            };
            assert_eq!(r.record_at(p), slow, "offset {p}");
        }
        assert_eq!(r.max_seq(0), Some(9));
        let after_5 = r.next_valid(0, Some(5)).and_then(|p| r.record_at(p));
        assert_eq!(after_5.map(|f| f.seq), Some(6));
        assert_eq!(r.next_valid(0, Some(9)), None);
    }

    /// A record right at the start, one with no payload at the very end, the
    /// largest a writer makes, and one past that limit with a checksum that
    /// holds (not a record: no writer makes it).
    #[test]
    fn finds_records_at_both_ends_and_of_every_size() {
        let mut bytes = Vec::new();
        record::encode_record(1, b"first", &mut bytes).unwrap();
        let big_at = bytes.len();
        record::encode_record(2, &vec![b'x'; MAX_PAYLOAD as usize], &mut bytes).unwrap();
        let empty_at = bytes.len();
        record::encode_record(3, b"", &mut bytes).unwrap();
        let r = Resync::new(&bytes);
        assert_eq!(r.record_at(0).map(|f| f.seq), Some(1));
        assert_eq!(r.record_at(big_at).map(|f| f.seq), Some(2));
        assert_eq!(r.record_at(empty_at), Some(Found { seq: 3, len: 16 }));
        assert_eq!(r.max_seq(0), Some(3));
        // Over the limit: the length field says 1 MiB + 1, the checksum holds.
        let payload = vec![b'y'; MAX_PAYLOAD as usize + 1];
        let mut over = vec![0u8; 4];
        over.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        over.extend_from_slice(&4u64.to_le_bytes());
        over.extend_from_slice(&payload);
        let crc = crc32fast::hash(&over[4..]);
        over[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Resync::new(&over).record_at(0), None);
    }

    /// Issue 25, item 1: a valid header then 2 MiB of `00 FF 0F 00` made
    /// every offset a candidate whose length field reads about 1 MiB. The
    /// search must cost a small constant per byte, not a CRC per offset.
    #[test]
    fn a_crafted_tail_costs_linear_work() {
        // 8 KiB first: a search gone quadratic fails there at once.
        for len in [8 << 10, 64 << 10, 256 << 10] {
            let bait: Vec<u8> = [0x00u8, 0xFF, 0x0F, 0x00]
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect();
            let searches: [fn(&Resync) -> Option<u64>; 2] = [
                |r| r.next_valid(1, Some(0)).map(|p| p as u64),
                |r| r.max_seq(0),
            ];
            for search in searches {
                let r = Resync::new(&bait);
                assert_eq!(search(&r), None);
                // At least one step per byte: the bait was searched.
                assert!(r.work() >= len as u64, "{} steps", r.work());
                let per_byte = r.work() as f64 / len as f64;
                assert!(
                    per_byte < 100.0,
                    "{per_byte:.0} steps per byte for {len} bytes of bait"
                );
            }
        }
    }
}
