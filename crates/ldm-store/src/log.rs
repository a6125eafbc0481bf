//! Reading and writing `containers.log`: scanning records into mutations and
//! telling a torn tail from damage in the middle.
//!
//! The rule (DESIGN.md, "Recovery"): when decoding fails at offset X, look
//! for any valid record that starts after X. If there is one, the bytes at
//! X are damage in the middle of the log and recovery refuses to continue.
//! If there is none, X starts a torn tail: most likely the last write of a
//! process that died before its fdatasync returned, which the writer cuts
//! after keeping its bytes (it cannot know that nobody was told "done").
//! A record of a kind this ldm does not know is neither: [`Tail::Newer`].

// Over 400 lines with its tests (about 230): scanning and the
// torn-tail-or-damage rule, with the cases that pin it.

use ldm_model::Mutation;

use super::record::{self, Decoded};
pub use super::resync::Resync;

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
    /// A record with a valid checksum and the right sequence number whose
    /// payload is a mutation this ldm does not know: a newer ldm wrote it.
    /// Never cut, never dropped without `--force`.
    Newer {
        /// Offset of the record.
        offset: u64,
        /// Its sequence number.
        seq: u64,
        /// The unknown `op` name.
        op: String,
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
    scan_after(bytes, base, last_seq, None)
}

/// [`scan`], but the payloads of records with a sequence number up to
/// `folded` (if any) are not decoded (their `mutations` are empty): they are
/// in `containers.yaml` already, and decoding is most of a scan's cost.
pub fn scan_after(bytes: &[u8], base: u64, last_seq: Option<u64>, folded: Option<u64>) -> Scan {
    scan_from(&Resync::new(bytes), 0, base, last_seq, folded)
}

/// [`scan_after`] of `resync`'s bytes from `start` (file offset `base +
/// start`): a walk that meets damage more than once (`doctor --repair`)
/// shares one resync search, so it stays linear in the log's size.
pub fn scan_from(
    resync: &Resync,
    start: usize,
    base: u64,
    last_seq: Option<u64>,
    folded: Option<u64>,
) -> Scan {
    let bytes = resync.bytes();
    let mut entries = Vec::new();
    let mut pos = start;
    let mut prev = last_seq;
    while pos < bytes.len() {
        let at = base + pos as u64;
        let failure: Result<(), (&'static str, String)> = match record::decode_record(&bytes[pos..])
        {
            Decoded::Record { record, len } => {
                let expected = prev.map(|p| p.checked_add(1));
                if expected.is_some_and(|e| e != Some(record.seq)) || record.seq > record::MAX_SEQ {
                    Err((
                        "sequence gap",
                        format!(
                            "record has sequence number {} where {} was expected",
                            record.seq,
                            match expected {
                                Some(Some(e)) if e <= record::MAX_SEQ => e.to_string(),
                                Some(_) => "none (the sequence numbers are used up)".to_string(),
                                None => format!("at most {}", record::MAX_SEQ),
                            }
                        ),
                    ))
                } else {
                    let decoded = if folded.is_some_and(|f| record.seq <= f) {
                        Ok(Vec::new())
                    } else {
                        decode_payload(record.payload)
                    };
                    match decoded {
                        Err(PayloadError::Unknown { op }) => {
                            return Scan {
                                entries,
                                end: at,
                                tail: Tail::Newer {
                                    offset: at,
                                    seq: record.seq,
                                    op,
                                },
                            };
                        }
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
                        Err(PayloadError::Malformed(e)) => Err((
                            "malformed payload",
                            format!("checksum is valid but the payload is not a well-formed mutation: {e}"),
                        )),
                    }
                }
            }
            Decoded::Incomplete => Err((CUT_SHORT, String::new())),
            Decoded::Invalid { reason } => Err((reason, String::new())),
        };
        if let Err((short, long)) = failure {
            return Scan {
                entries,
                end: at,
                tail: failed_at(resync, pos, base, prev, short, long),
            };
        }
    }
    Scan {
        entries,
        end: base + pos as u64,
        tail: Tail::Clean,
    }
}

/// How a stretch ends whose record at `pos` (file offset `base + pos`) did
/// not decode: `short` says why; `long`, when set, that its checksum is
/// valid (so it is not a torn write). The rule of the module doc.
fn failed_at(
    resync: &Resync,
    pos: usize,
    base: u64,
    prev: Option<u64>,
    short: &'static str,
    long: String,
) -> Tail {
    let at = base + pos as u64;
    // A record with a valid checksum is never a torn write: refuse it.
    let valid_crc = !long.is_empty();
    let next = resync.next_valid(pos + 1, prev).map(|p| base + p as u64);
    if valid_crc || next.is_some() {
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
            dropped: (resync.bytes().len() - pos) as u64,
            reason: short,
        }
    }
}

/// Offset of the first record in a version 2 or 3 log.
pub const FIRST_RECORD: u64 = record::HEADER_LEN as u64;

/// The reason of a torn tail whose last record stops before its length
/// says it ends (the other reasons are checksum or length damage).
pub const CUT_SHORT: &str = "record is cut short by the end of the file";

/// The highest sequence number of any record with a valid checksum in
/// `bytes`, found by the resync search (only run on damage).
pub fn max_valid_seq(bytes: &[u8]) -> Option<u64> {
    Resync::new(bytes).max_seq(0)
}

/// The checksum field of the record at the start of `bytes` (which holds
/// at least a record header).
pub fn crc_at(bytes: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(a)
}

/// First offset at or after `from` where a record with a valid checksum and
/// a sequence number after `prev` starts (the resync search, linear in the
/// bytes after `from`: `resync.rs`).
pub fn next_valid(bytes: &[u8], from: usize, prev: Option<u64>) -> Option<usize> {
    Resync::new(bytes).next_valid(from, prev)
}

/// The payload of a record: one mutation, or the array of a commit's
/// mutations when it has several.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Payload {
    One(Box<Mutation>),
    Many(Vec<Mutation>),
}

/// Why a payload with a valid checksum was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// A mutation kind this ldm does not know (`op`): a newer ldm wrote it.
    Unknown {
        /// The unknown kind.
        op: String,
    },
    /// Not a mutation at all, or a known kind with a wrong shape.
    Malformed(String),
}

/// Decodes one record's payload into the mutations of its commit.
pub fn decode_payload(bytes: &[u8]) -> Result<Vec<Mutation>, PayloadError> {
    match serde_json::from_slice::<Payload>(bytes) {
        Ok(Payload::One(m)) => return Ok(vec![*m]),
        Ok(Payload::Many(ms)) if !ms.is_empty() => return Ok(ms),
        _ => {}
    }
    // Tell "a kind from a newer ldm" from damage: an object (or array of
    // objects) with an `op` string this build does not have.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let objects: Vec<&serde_json::Value> = match &v {
            serde_json::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for o in objects {
            if let Some(op) = o.get("op").and_then(|op| op.as_str()) {
                if !Mutation::KINDS.iter().any(|(k, _)| *k == op) {
                    return Err(PayloadError::Unknown { op: op.to_string() });
                }
            }
        }
    }
    // Re-parse as one mutation for the precise serde message.
    Err(PayloadError::Malformed(
        match serde_json::from_slice::<Mutation>(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "an empty commit".to_string(),
        },
    ))
}

/// Encodes one commit as one record with sequence number `seq`: a single
/// mutation as itself, several as a JSON array. One record per commit is
/// what makes a commit all or nothing under a torn write. A commit over the
/// record limit is refused here, before anything is written.
pub fn encode_commit(mutations: &[Mutation], seq: u64) -> Result<Vec<u8>, record::TooLarge> {
    // Serializing a Mutation cannot fail: it has only strings, numbers,
    // lists and string-keyed data.
    let payload = match mutations {
        [one] => serde_json::to_vec(one),
        many => serde_json::to_vec(many),
    }
    .unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + record::RECORD_HEADER_LEN);
    record::encode_record(seq, &payload, &mut out)?;
    Ok(out)
}

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
            .flat_map(|(i, m)| encode_commit(std::slice::from_ref(m), first + i as u64).unwrap())
            .collect()
    }

    #[test]
    fn a_commit_of_several_mutations_is_one_record() {
        let ms = muts(3);
        let bytes = encode_commit(&ms, 1).unwrap();
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
        // The record at the gap is not "the next valid one after it".
        let first = s.end;
        match s.tail {
            Tail::Corrupt {
                offset, next_valid, ..
            } => {
                assert_eq!((offset, next_valid), (first, None));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Damage reports the file offset of the next valid record, counted
    /// from where the scanned bytes start in the file.
    #[test]
    fn damage_names_the_file_offset_of_the_next_valid_record() {
        let bytes = encode(&muts(3), 1);
        let second = scan(&bytes, 0, Some(0)).entries[1].offset;
        let mut damaged = bytes.clone();
        damaged[20] ^= 0x10;
        for base in [0u64, 52, 1000] {
            let s = scan(&damaged, base, Some(0));
            assert_eq!(
                s.tail,
                Tail::Corrupt {
                    offset: base,
                    next_valid: Some(base + second),
                    reason: "checksum mismatch".into()
                }
            );
        }
        assert_eq!(next_valid(&damaged, 1, Some(0)), Some(second as usize));
        assert!(next_valid(&damaged, second as usize + 1, Some(0)).is_some());
        assert_eq!(next_valid(&[0u8; 40], 0, None), None);
    }

    /// The highest seq of any valid record, stepping over damage; none in
    /// garbage.
    #[test]
    fn the_highest_valid_seq_is_found_past_damage() {
        let mut bytes = encode(&muts(3), 5);
        bytes[20] ^= 0x10;
        assert_eq!(max_valid_seq(&bytes), Some(7));
        assert_eq!(max_valid_seq(&[0xAB; 100]), None);
        let one = encode(&muts(1), 41);
        assert_eq!(max_valid_seq(&one), Some(41));
    }

    /// The checksum a record carries identifies it (catch-up compares it).
    #[test]
    fn crc_at_is_the_records_own_checksum() {
        let bytes = encode(&muts(1), 1);
        assert_eq!(crc_at(&bytes), crc32fast::hash(&bytes[4..]));
        let other = encode(&muts(1), 2);
        assert_ne!(crc_at(&bytes), crc_at(&other));
    }

    /// Sequence numbers up to MAX_SEQ are records; past it, damage, even
    /// with no previous record to follow.
    #[test]
    fn seqs_end_at_max_seq() {
        let last = encode_commit(&muts(1), record::MAX_SEQ).unwrap();
        let s = scan(&last, 0, Some(record::MAX_SEQ - 1));
        assert_eq!((s.entries.len(), &s.tail), (1, &Tail::Clean));
        for seq in [record::MAX_SEQ + 1, u64::MAX] {
            let past = encode_commit(&muts(1), seq).unwrap();
            assert!(scan(&past, 0, None).entries.is_empty(), "{seq}");
            assert!(scan(&past, 0, Some(seq - 1)).entries.is_empty(), "{seq}");
        }
    }
}

#[cfg(test)]
mod payload_tests {
    use super::*;

    #[test]
    fn an_empty_commit_is_malformed() {
        assert!(matches!(
            decode_payload(b"[]"),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn an_unknown_kind_is_newer_not_damage() {
        let mut bytes = Vec::new();
        record::encode_record(1, br#"{"op":"port_forward_added","name":"x"}"#, &mut bytes).unwrap();
        let s = scan(&bytes, 24, Some(0));
        assert_eq!(
            s.tail,
            Tail::Newer {
                offset: 24,
                seq: 1,
                op: "port_forward_added".into()
            }
        );
        // A known kind with a wrong shape is damage.
        let mut bad = Vec::new();
        record::encode_record(1, br#"{"op":"ports_set","ports":"x"}"#, &mut bad).unwrap();
        assert!(matches!(scan(&bad, 0, Some(0)).tail, Tail::Corrupt { .. }));
    }

    #[test]
    fn folded_records_are_checked_but_not_decoded() {
        let mut bytes = Vec::new();
        record::encode_record(1, br#"{"op":"port_forward_added"}"#, &mut bytes).unwrap();
        let m = Mutation::PortsSet {
            container: None,
            ports: vec![1],
        };
        bytes.extend(encode_commit(std::slice::from_ref(&m), 2).unwrap());
        let s = scan_after(&bytes, 0, Some(0), Some(1));
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.entries.len(), 2);
        assert!(s.entries[0].mutations.is_empty());
        assert_eq!(s.entries[1].mutations, vec![m]);
    }
}

#[cfg(test)]
mod design_example {
    use super::*;

    /// DESIGN.md, "The log file": the worked example, byte for byte.
    #[test]
    fn the_example_in_design_md_is_what_the_writer_produces() {
        let id = [
            0x5f, 0x1c, 0x3a, 0x9e, 0x0b, 0x7d, 0x42, 0xc6, 0xa1, 0xe8, 0xf0, 0x3b, 0x9d, 0x2c,
            0x4e, 0x71,
        ];
        let mut file = record::encode_header(1, &id, 0).to_vec();
        let m = Mutation::PortsSet {
            container: None,
            ports: vec![3000],
        };
        file.extend(encode_commit(&[m], 1).unwrap());
        let hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "4c444d4c4f470d0a0400000034000000",
                "01000000000000005f1c3a9e0b7d42c6",
                "a1e8f03b9d2c4e710000000000000000",
                "9f118b8f5685befc2100000001000000",
                "000000007b226f70223a22706f727473",
                "5f736574222c22706f727473223a5b33",
                "3030305d7d"
            )
        );
    }
}
