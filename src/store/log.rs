//! Reading and writing `containers.log`: scanning records into mutations and
//! telling a torn tail from damage in the middle.
//!
//! The rule (DESIGN.md, "Torn tail or damage"): when decoding fails at offset
//! X, look for any valid record that starts after X. If there is one, the
//! bytes at X are damage in the middle of the log and recovery refuses to
//! continue. If there is none, X starts a torn tail: the last write of a
//! process that died before its fdatasync returned, never acknowledged, and
//! safe to cut.

use crate::model::Mutation;

use super::record::{self, Decoded, HEADER_LEN};

/// One record read back, with its mutations decoded: all the mutations of
/// one commit, so that a torn write can never keep part of a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Sequence number.
    pub seq: u64,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// Encoded length of the record in bytes.
    pub len: u64,
    /// Its checksum, which identifies it.
    pub crc: u32,
    /// The mutations it carries (one commit), in order.
    pub mutations: Vec<Mutation>,
}

/// How the records of a log end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// The file ends with an unfinished or invalid record and nothing valid after it.
    Torn {
        /// Where the torn record starts (= the length to truncate to).
        offset: u64,
        /// Bytes after `offset`.
        dropped: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// Bytes at `offset` are not a valid record, yet a valid record follows.
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// Offset of the next valid record, if one was found by resync.
        next_valid: Option<u64>,
        /// What is wrong.
        reason: String,
    },
}

/// The records of a stretch of log, and how it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Complete records in order.
    pub entries: Vec<Entry>,
    /// Offset just past the last complete record.
    pub end: u64,
    /// How the stretch ends.
    pub tail: Tail,
}

/// Scans `bytes`, which start at file offset `base`, until the first record
/// that does not decode. `last_seq` is the sequence number of the record
/// before `base` (if any): each record must carry the next one.
pub fn scan(bytes: &[u8], base: u64, last_seq: Option<u64>) -> Scan {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut prev = last_seq;
    while pos < bytes.len() {
        let at = base + pos as u64;
        let failure: Result<(), (&'static str, String)> = match record::decode_record(&bytes[pos..])
        {
            Decoded::Record { record, len } => {
                if prev.is_some_and(|p| record.seq != p + 1) {
                    Err((
                        "sequence gap",
                        format!(
                            "record has sequence number {} where {} was expected",
                            record.seq,
                            prev.map_or(0, |p| p + 1)
                        ),
                    ))
                } else {
                    match decode_payload(record.payload) {
                        Ok(mutations) => {
                            entries.push(Entry {
                                seq: record.seq,
                                offset: at,
                                len: len as u64,
                                crc: crc_at(&bytes[pos..]),
                                mutations,
                            });
                            prev = Some(record.seq);
                            pos += len;
                            Ok(())
                        }
                        Err(e) => Err((
                            "unknown payload",
                            format!("checksum is valid but the payload is not a mutation this ldm knows: {e}"),
                        )),
                    }
                }
            }
            Decoded::Incomplete => {
                Err(("record is cut short by the end of the file", String::new()))
            }
            Decoded::Invalid { reason } => Err((reason, String::new())),
        };
        if let Err((short, long)) = failure {
            // A record with a valid checksum is never a torn write: refuse it.
            let valid_crc = !long.is_empty();
            let next = next_valid(bytes, pos + 1, prev).map(|p| base + p as u64);
            let tail = if valid_crc || next.is_some() {
                Tail::Corrupt {
                    offset: at,
                    next_valid: next,
                    reason: if long.is_empty() {
                        short.to_string()
                    } else {
                        long
                    },
                }
            } else {
                Tail::Torn {
                    offset: at,
                    dropped: (bytes.len() - pos) as u64,
                    reason: short,
                }
            };
            return Scan {
                entries,
                end: at,
                tail,
            };
        }
    }
    Scan {
        entries,
        end: base + pos as u64,
        tail: Tail::Clean,
    }
}

/// The checksum field of the record at the start of `bytes` (which holds
/// at least a record header).
pub fn crc_at(bytes: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(a)
}

/// First offset at or after `from` where a record with a valid checksum and
/// a sequence number after `prev` starts.
pub fn next_valid(bytes: &[u8], from: usize, prev: Option<u64>) -> Option<usize> {
    (from..bytes.len()).find(|&p| match record::decode_record(&bytes[p..]) {
        Decoded::Record { record, .. } => prev.is_none_or(|s| record.seq > s),
        _ => false,
    })
}

/// The payload of a record: one mutation, or the array of a commit's
/// mutations when it has several.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Payload {
    One(Mutation),
    Many(Vec<Mutation>),
}

fn decode_payload(bytes: &[u8]) -> Result<Vec<Mutation>, serde_json::Error> {
    match serde_json::from_slice::<Payload>(bytes) {
        Ok(Payload::One(m)) => Ok(vec![m]),
        Ok(Payload::Many(ms)) if !ms.is_empty() => Ok(ms),
        // Re-parse as one mutation for the precise serde message.
        _ => serde_json::from_slice::<Mutation>(bytes).map(|m| vec![m]),
    }
}

/// Encodes one commit as one record with sequence number `seq`: a single
/// mutation as itself, several as a JSON array. One record per commit is
/// what makes a commit all or nothing under a torn write.
pub fn encode_commit(mutations: &[Mutation], seq: u64) -> Vec<u8> {
    // Serializing a Mutation cannot fail: it has only strings, numbers,
    // lists and string-keyed data.
    let payload = match mutations {
        [one] => serde_json::to_vec(one),
        many => serde_json::to_vec(many),
    }
    .unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + record::RECORD_HEADER_LEN);
    record::encode_record(seq, &payload, &mut out);
    out
}

/// A fresh log file of `generation`: just the header.
pub fn new_file(generation: u64) -> Vec<u8> {
    record::encode_header(generation).to_vec()
}

/// Offset of the first record.
pub const FIRST_RECORD: u64 = HEADER_LEN as u64;

#[cfg(test)]
mod tests {
    use super::*;

    fn muts(n: usize) -> Vec<Mutation> {
        (0..n)
            .map(|i| Mutation::PortsSet {
                container: None,
                ports: vec![1000 + i as u16],
            })
            .collect()
    }

    /// `n` one-mutation commits with seqs `first..`.
    fn encode(ms: &[Mutation], first: u64) -> Vec<u8> {
        ms.iter()
            .enumerate()
            .flat_map(|(i, m)| encode_commit(std::slice::from_ref(m), first + i as u64))
            .collect()
    }

    #[test]
    fn a_commit_of_several_mutations_is_one_record() {
        let ms = muts(3);
        let bytes = encode_commit(&ms, 1);
        let s = scan(&bytes, 0, Some(0));
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].mutations, ms);
        // Any cut loses the whole commit, never part of it.
        for cut in 0..bytes.len() {
            assert!(scan(&bytes[..cut], 0, Some(0)).entries.is_empty());
        }
    }

    #[test]
    fn clean_log_scans_whole() {
        let bytes = encode(&muts(3), 1);
        let s = scan(&bytes, 24, Some(0));
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.end, 24 + bytes.len() as u64);
    }

    #[test]
    fn torn_tail_is_reported_with_offset_and_size() {
        let bytes = encode(&muts(3), 1);
        let cut = &bytes[..bytes.len() - 5];
        let s = scan(cut, 0, None);
        assert_eq!(s.entries.len(), 2);
        assert!(
            matches!(s.tail, Tail::Torn { offset, dropped, .. } if offset == s.end && dropped == cut.len() as u64 - s.end)
        );
    }

    #[test]
    fn flipped_bit_mid_log_is_corrupt_not_torn() {
        let mut bytes = encode(&muts(3), 1);
        bytes[20] ^= 0x10;
        let s = scan(&bytes, 0, None);
        assert!(
            matches!(
                s.tail,
                Tail::Corrupt {
                    offset: 0,
                    next_valid: Some(_),
                    ..
                }
            ),
            "{:?}",
            s.tail
        );
    }

    #[test]
    fn sequence_gap_is_corrupt() {
        let mut bytes = encode(&muts(1), 1);
        bytes.extend(encode(&muts(1), 3));
        let s = scan(&bytes, 0, Some(0));
        assert!(matches!(s.tail, Tail::Corrupt { .. }));
        assert_eq!(s.entries.len(), 1);
    }
}
