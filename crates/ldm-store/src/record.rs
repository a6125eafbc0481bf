//! Framing of `containers.log`: the file header and the records after it.
//!
//! This file owns every number of the on-disk log format (DESIGN.md, "The log
//! file"); reader and writer both take them from here. Decoding never decides
//! policy: it returns a typed [`Decoded`] outcome and leaves "truncate or
//! refuse" to `recover.rs`.
//!
//! ```text
//! header v4 := magic[8] "LDMLOG\r\n" | version u32 = 4 | hlen u32 = 52 | generation u64
//!              | log_id[16] | prev_seq u64 | hcrc u32 over the 48 bytes before it
//! header v3 := the same 52 bytes with version u32 = 3                     (read only)
//! header v2 := the same 52 bytes with version u32 = 2                     (read only)
//! header v1 := magic[8] | version u32 = 1 | generation u64 | hcrc u32      (24 bytes, read only)
//! record    := crc u32 | length u32 | seq u64 | payload[length]           (16 + length)
//!              crc = CRC-32 (IEEE, crc32fast) over length | seq | payload
//! ```
//! All integers are little-endian. The checksum covers the length, so a
//! flipped length bit can never make the reader accept other bytes as a record.

// Over 400 lines with its tests (about 200): every number of the on-disk log
// format, and the tests that freeze them.

use thiserror::Error;

/// First eight bytes of every log file. `\r\n` catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"LDMLOG\r\n";
/// The log format version this build writes. Versions 3 and 4 have
/// version 2's layout; each promises only that records may hold kinds of
/// its own (3: `Op` kinds in `model::OP_KINDS`, which an ldm that reads
/// version 2 would take for damage; 4: `project_renamed` and the `rename`
/// `Op`, which an ldm that reads version 3 would meet only record by
/// record, after acting on the records before them).
/// Writers upgrade older logs on their first write.
pub const VERSION: u32 = 4;
/// The oldest log format version this build still reads.
pub const OLDEST_VERSION: u32 = 1;
/// Size of a version 1 header in bytes.
pub const HEADER_V1_LEN: usize = 24;
/// Size of a version 2, 3 or 4 header in bytes.
pub const HEADER_LEN: usize = 52;
/// Size of a record's fixed part (crc, length, seq) in bytes.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload a writer produces; anything larger is damage, not data.
pub const MAX_PAYLOAD: u32 = 1 << 20;
/// Length of a log's identity.
pub const LOG_ID_LEN: usize = 16;
/// The highest sequence number a record may carry (2^63 - 1): a header's
/// `prev_seq` above it, or a record's seq, is damage, never arithmetic that
/// wraps. No log comes near it (a commit a microsecond for 290,000 years).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// A log's identity: random, made when a log starts from nothing and kept
/// by every compaction, so that `containers.yaml` can name the log it was
/// folded from (DESIGN.md, "Lineage").
pub type LogId = [u8; LOG_ID_LEN];

/// The decoded log file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file (1 to 4).
    pub version: u32,
    /// How many times the log was replaced by compaction.
    pub generation: u64,
    /// Version 2 and 3: the identity (`None` in a version 1 file).
    pub id: Option<LogId>,
    /// Version 2 and 3: sequence number of the last record before this
    /// file's first one (`None` in version 1, where it is the YAML's mark).
    pub prev_seq: Option<u64>,
}

impl Header {
    /// Size of this header in the file.
    pub fn len(&self) -> usize {
        if self.version == 1 {
            HEADER_V1_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Always false: a header has bytes (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a header was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    #[error("the file is {len} bytes long, shorter than its header")]
    Short {
        /// Bytes present.
        len: usize,
    },
    /// The magic bytes do not match: not an ldm log.
    #[error("it does not start with the ldm log magic bytes")]
    BadMagic,
    /// The header checksum does not match.
    #[error("the header checksum does not match")]
    BadChecksum,
    /// A header whose checksum holds but whose `prev_seq` leaves no room
    /// for a record ([`MAX_SEQ`]): damage, or a crafted file.
    #[error(
        "its prev_seq {prev_seq} is past the highest sequence number a record may have ({MAX_SEQ})"
    )]
    SeqOutOfRange {
        /// The header's `prev_seq`.
        prev_seq: u64,
    },
    /// A well-formed header of a format version this build does not know:
    /// written by a newer ldm.
    #[error("it was written by a newer ldm (log format version {found}; this ldm reads versions {OLDEST_VERSION} to {VERSION}); upgrade ldm")]
    UnknownVersion {
        /// Version found in the file.
        found: u32,
    },
}

/// Encodes a log header of the version this build writes ([`VERSION`]).
pub fn encode_header(generation: u64, id: &LogId, prev_seq: u64) -> [u8; HEADER_LEN] {
    encode_header_as(VERSION, generation, id, prev_seq)
}

/// Encodes a version 2 header, as ldm wrote before version 3 (the same
/// layout); for tests of the upgrade path.
pub fn encode_header_v2(generation: u64, id: &LogId, prev_seq: u64) -> [u8; HEADER_LEN] {
    encode_header_as(2, generation, id, prev_seq)
}

/// Encodes a version 3 header, as ldm wrote before version 4 (the same
/// layout); for tests of the upgrade path.
pub fn encode_header_v3(generation: u64, id: &LogId, prev_seq: u64) -> [u8; HEADER_LEN] {
    encode_header_as(3, generation, id, prev_seq)
}

/// The 52-byte layout of versions 2 and 3, with `version` in it.
fn encode_header_as(version: u32, generation: u64, id: &LogId, prev_seq: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out[16..24].copy_from_slice(&generation.to_le_bytes());
    out[24..40].copy_from_slice(id);
    out[40..48].copy_from_slice(&prev_seq.to_le_bytes());
    let crc = crc32fast::hash(&out[0..48]);
    out[48..52].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes a version 1 header (24 bytes), as ldm wrote before version 2;
/// for tests of the upgrade path.
pub fn encode_header_v1(generation: u64) -> [u8; HEADER_V1_LEN] {
    let mut out = [0u8; HEADER_V1_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&1u32.to_le_bytes());
    out[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the header at the start of `bytes`: version 1 (24 bytes), 2 or
/// 3 (52 bytes, the same layout).
/// A later version is recognised by its own length field and checksum, so
/// that a newer ldm's log asks for an upgrade while a damaged one is damage.
pub fn decode_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    if bytes.len() < 12 {
        return Err(HeaderError::Short { len: bytes.len() });
    }
    if bytes[0..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = le_u32(&bytes[8..12]);
    if version == 1 {
        if bytes.len() < HEADER_V1_LEN {
            return Err(HeaderError::Short { len: bytes.len() });
        }
        if crc32fast::hash(&bytes[0..20]) != le_u32(&bytes[20..24]) {
            return Err(HeaderError::BadChecksum);
        }
        return Ok(Header {
            version,
            generation: le_u64(&bytes[12..20]),
            id: None,
            prev_seq: None,
        });
    }
    // Version 2 and later: magic, version, header length, ..., crc. Every
    // version this build knows since 2 has the same 52-byte layout.
    if bytes.len() < 16 {
        return Err(HeaderError::Short { len: bytes.len() });
    }
    let hlen = le_u32(&bytes[12..16]) as usize;
    if !(20..=4096).contains(&hlen) {
        return Err(HeaderError::BadChecksum);
    }
    if bytes.len() < hlen {
        return Err(HeaderError::Short { len: bytes.len() });
    }
    if crc32fast::hash(&bytes[0..hlen - 4]) != le_u32(&bytes[hlen - 4..hlen]) {
        return Err(HeaderError::BadChecksum);
    }
    if !(2..=VERSION).contains(&version) || hlen != HEADER_LEN {
        return Err(HeaderError::UnknownVersion { found: version });
    }
    let mut id = [0u8; LOG_ID_LEN];
    id.copy_from_slice(&bytes[24..40]);
    let prev_seq = le_u64(&bytes[40..48]);
    if prev_seq >= MAX_SEQ {
        return Err(HeaderError::SeqOutOfRange { prev_seq });
    }
    Ok(Header {
        version,
        generation: le_u64(&bytes[16..24]),
        id: Some(id),
        prev_seq: Some(prev_seq),
    })
}

/// A payload over [`MAX_PAYLOAD`]: the writer refuses it before writing.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the change is {len} bytes, over the {MAX_PAYLOAD}-byte limit of one record")]
pub struct TooLarge {
    /// Payload length.
    pub len: usize,
}

/// Appends one encoded record to `out`; refuses a payload over
/// [`MAX_PAYLOAD`], which no reader would accept.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) -> Result<(), TooLarge> {
    if payload.len() > MAX_PAYLOAD as usize {
        return Err(TooLarge { len: payload.len() });
    }
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number, one more than the record before it.
    pub seq: u64,
    /// The serde_json payload: one [`ldm_model::Mutation`].
    pub payload: &'a [u8],
}

/// What a decode attempt at one offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete record with a matching checksum; `len` bytes long in all.
    Record {
        /// The record.
        record: Record<'a>,
        /// Encoded size, header included.
        len: usize,
    },
    /// The bytes end before the record does: the record or its header is cut.
    Incomplete,
    /// The bytes are all there but are not a record.
    Invalid {
        /// Why, for the report.
        reason: &'static str,
    },
}

/// Decodes the record at the start of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete;
    }
    let crc = le_u32(&bytes[0..4]);
    let length = le_u32(&bytes[4..8]);
    if length > MAX_PAYLOAD {
        // Checked before the bounds test so that a huge flipped length is
        // reported as damage rather than as a record cut short.
        return Decoded::Invalid {
            reason: "length field exceeds the maximum record size",
        };
    }
    let len = RECORD_HEADER_LEN + length as usize;
    if bytes.len() < len {
        return Decoded::Incomplete;
    }
    if crc32fast::hash(&bytes[4..len]) != crc {
        return Decoded::Invalid {
            reason: "checksum mismatch",
        };
    }
    Decoded::Record {
        record: Record {
            seq: le_u64(&bytes[8..16]),
            payload: &bytes[RECORD_HEADER_LEN..len],
        },
        len,
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: LogId = [7u8; LOG_ID_LEN];

    /// Every kind the model names (mutations and pending operations) is of
    /// a log format version this build writes (moved here from the model's
    /// tests: the model knows no log format).
    #[test]
    fn every_model_kind_is_of_a_version_this_build_writes() {
        for (k, v) in ldm_model::Mutation::KINDS.iter().chain(ldm_model::OP_KINDS) {
            assert!(
                (1..=VERSION).contains(v),
                "kind {k} of log format version {v}, this build writes {VERSION}"
            );
        }
    }

    #[test]
    fn header_round_trips() {
        let h = encode_header(42, &ID, 9);
        assert_eq!(
            decode_header(&h),
            Ok(Header {
                version: 4,
                generation: 42,
                id: Some(ID),
                prev_seq: Some(9)
            })
        );
        assert_eq!(&h[8..12], &[4, 0, 0, 0]);
        // Version 3: the same layout, read as it is.
        let v3 = encode_header_v3(42, &ID, 9);
        assert_eq!((&v3[..8], &v3[12..48]), (&h[..8], &h[12..48]));
        assert_eq!(decode_header(&v3).map(|h| h.version), Ok(3));
        // Version 2: the same layout, read as it is.
        let v2 = encode_header_v2(42, &ID, 9);
        assert_eq!(v2[..8], h[..8]);
        assert_eq!(v2[12..48], h[12..48]);
        assert_eq!(
            decode_header(&v2),
            Ok(Header {
                version: 2,
                generation: 42,
                id: Some(ID),
                prev_seq: Some(9)
            })
        );
        assert_eq!(decode_header(&v2).map(|h| h.len()), Ok(HEADER_LEN));
        let v1 = encode_header_v1(5);
        assert_eq!(
            decode_header(&v1).map(|h| (h.version, h.generation, h.len())),
            Ok((1, 5, 24))
        );
    }

    #[test]
    fn a_well_formed_header_of_a_later_version_asks_for_an_upgrade() {
        // Version 5 with a longer header: its own length and checksum hold.
        let longer = |version: u32, hlen: usize| {
            let mut h = encode_header(1, &ID, 0).to_vec();
            h.resize(hlen, 0);
            h[8..12].copy_from_slice(&version.to_le_bytes());
            h[12..16].copy_from_slice(&(hlen as u32).to_le_bytes());
            let crc = crc32fast::hash(&h[0..hlen - 4]);
            h[hlen - 4..hlen].copy_from_slice(&crc.to_le_bytes());
            h
        };
        assert_eq!(
            decode_header(&longer(5, 60)),
            Err(HeaderError::UnknownVersion { found: 5 })
        );
        // Version 5 in the 52-byte layout is still a newer ldm's.
        assert_eq!(
            decode_header(&longer(5, HEADER_LEN)),
            Err(HeaderError::UnknownVersion { found: 5 })
        );
        // Versions 2 to 4 are 52 bytes: another length is not theirs.
        for version in [2, 3, 4] {
            assert_eq!(
                decode_header(&longer(version, 60)),
                Err(HeaderError::UnknownVersion { found: version })
            );
            assert_eq!(
                decode_header(&longer(version, HEADER_LEN)).map(|h| h.version),
                Ok(version)
            );
        }
        let message = HeaderError::UnknownVersion { found: 5 }.to_string();
        assert!(message.contains("written by a newer ldm"), "{message}");
        assert!(message.contains("reads versions 1 to 4"), "{message}");
    }

    #[test]
    fn a_flipped_version_bit_is_damage_not_a_newer_ldm() {
        let mut h = encode_header(1, &ID, 0);
        h[8] ^= 0x04;
        assert_eq!(decode_header(&h), Err(HeaderError::BadChecksum));
        for bit in 0..HEADER_LEN * 8 {
            let mut d = encode_header(1, &ID, 0);
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&d).is_err(), "flip of bit {bit} accepted");
        }
    }

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        encode_record(7, b"{\"op\":\"x\"}", &mut buf).unwrap();
        match decode_record(&buf) {
            Decoded::Record { record, len } => {
                assert_eq!(record.seq, 7);
                assert_eq!(record.payload, b"{\"op\":\"x\"}");
                assert_eq!(len, buf.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_writer_refuses_a_payload_over_the_limit_and_writes_nothing() {
        let mut buf = Vec::new();
        let big = vec![b' '; MAX_PAYLOAD as usize + 1];
        assert_eq!(
            encode_record(1, &big, &mut buf),
            Err(TooLarge { len: big.len() })
        );
        assert!(buf.is_empty());
        encode_record(1, &big[1..], &mut buf).unwrap();
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(3, b"payload bytes", &mut buf).unwrap();
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&damaged), Decoded::Record { .. }),
                "flip of bit {bit} accepted"
            );
        }
    }

    /// Every prefix of every header version is "short", never a panic or
    /// another error; 12 bytes that are not the magic say so.
    #[test]
    fn a_header_cut_anywhere_is_short() {
        for full in [
            encode_header(1, &ID, 0).to_vec(),
            encode_header_v1(1).to_vec(),
        ] {
            for cut in 0..full.len() {
                let r = decode_header(&full[..cut]);
                assert_eq!(r, Err(HeaderError::Short { len: cut }), "cut {cut}");
            }
            assert!(decode_header(&full).is_ok());
            assert!(!decode_header(&full).unwrap().is_empty());
        }
        assert_eq!(decode_header(&[b'x'; 12]), Err(HeaderError::BadMagic));
        // 16 bytes are enough to see a header length no version has.
        let mut odd = encode_header(1, &ID, 0)[..16].to_vec();
        odd[12..16].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(decode_header(&odd), Err(HeaderError::BadChecksum));
        assert_eq!(
            decode_header(&[b'x'; 11]),
            Err(HeaderError::Short { len: 11 })
        );
    }

    /// The two ends of a record's size: no payload, and the largest one a
    /// writer makes (the issue found a 1 MiB payload encoded, never read).
    #[test]
    fn the_smallest_and_the_largest_records_read_back() {
        for len in [0, MAX_PAYLOAD as usize] {
            let payload = vec![b'x'; len];
            let mut buf = Vec::new();
            encode_record(9, &payload, &mut buf).unwrap();
            assert_eq!(buf.len(), RECORD_HEADER_LEN + len);
            match decode_record(&buf) {
                Decoded::Record { record, len: n } => {
                    assert_eq!((record.seq, record.payload.len(), n), (9, len, buf.len()));
                }
                other => panic!("{len}: {other:?}"),
            }
            assert_eq!(decode_record(&buf[..buf.len() - 1]), Decoded::Incomplete);
        }
    }

    #[test]
    fn huge_length_is_invalid_not_incomplete() {
        let mut buf = Vec::new();
        encode_record(1, b"x", &mut buf).unwrap();
        buf[7] = 0x80;
        assert!(matches!(decode_record(&buf), Decoded::Invalid { .. }));
    }
}
