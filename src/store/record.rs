//! Framing of `containers.log`: the file header and the records after it.
//!
//! This file owns every number of the on-disk log format (DESIGN.md, "The log
//! file"); reader and writer both take them from here. Decoding never decides
//! policy: it returns a typed [`Decoded`] outcome and leaves "truncate or
//! refuse" to `recover.rs`.
//!
//! ```text
//! header := magic[8] "LDMLOG\r\n" | version u32 | generation u64 | crc u32    (24 bytes)
//! record := crc u32 | length u32 | seq u64 | payload[length]                  (16 + length)
//!           crc = CRC-32 (IEEE, crc32fast) over length | seq | payload
//! ```
//! All integers are little-endian. The checksum covers the length, so a
//! flipped length bit can never make the reader accept other bytes as a record.

use thiserror::Error;

/// First eight bytes of every log file. `\r\n` catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"LDMLOG\r\n";
/// The only log format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Size of the file header in bytes.
pub const HEADER_LEN: usize = 24;
/// Size of a record's fixed part (crc, length, seq) in bytes.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload a writer produces; anything larger is damage, not data.
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// The decoded log file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Compaction generation this log belongs to (see DESIGN.md, "Generations").
    pub generation: u64,
}

/// Why a header was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("the file is {len} bytes long, shorter than the {HEADER_LEN}-byte header")]
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
    /// A format version this build does not know.
    #[error("format version {found} is not supported by this ldm (it reads version {VERSION}); upgrade ldm")]
    UnknownVersion {
        /// Version found in the file.
        found: u32,
    },
}

/// Encodes a log header for `generation`.
pub fn encode_header(generation: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the header at the start of `bytes`.
pub fn decode_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::Short { len: bytes.len() });
    }
    if bytes[0..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(&bytes[0..20]) != le_u32(&bytes[20..24]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u32(&bytes[8..12]);
    if version != VERSION {
        return Err(HeaderError::UnknownVersion { found: version });
    }
    Ok(Header {
        generation: le_u64(&bytes[12..20]),
    })
}

/// Appends one encoded record to `out`.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number, one more than the record before it.
    pub seq: u64,
    /// The serde_json payload: one [`crate::model::Mutation`].
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

    #[test]
    fn header_round_trips() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Ok(Header { generation: 42 }));
    }

    #[test]
    fn header_with_future_version_is_refused_by_version() {
        let mut h = encode_header(1);
        h[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&h[0..20]);
        h[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_header(&h),
            Err(HeaderError::UnknownVersion { found: 2 })
        );
    }

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        encode_record(7, b"{\"op\":\"x\"}", &mut buf);
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
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(3, b"payload bytes", &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&damaged), Decoded::Record { .. }),
                "flip of bit {bit} accepted"
            );
        }
    }

    #[test]
    fn huge_length_is_invalid_not_incomplete() {
        let mut buf = Vec::new();
        encode_record(1, b"x", &mut buf);
        buf[7] = 0x80;
        assert!(matches!(decode_record(&buf), Decoded::Invalid { .. }));
    }
}
