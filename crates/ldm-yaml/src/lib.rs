//! The only module that names the YAML crate (with its `redact`), so it
//! can be swapped.
//!
//! ldm uses `serde-saphyr`: pure Rust, no `unsafe`, and with budgets that
//! stop a hostile document early (DESIGN.md, "Choosing the YAML crate").
//! A project folder may hold someone else's `containers.yaml`, so every
//! parse runs under three bounds, each reported as a [`YamlError`] that names
//! it ([`Limit`]):
//!
//! - size: at most [`MAX_BYTES`], checked before parsing;
//! - depth: at most [`MAX_DEPTH`] nested collections, enforced in the
//!   parser itself, so that deep flow nesting (`[[[[...`) costs linear time;
//! - expansion: aliases may not make a document bigger than
//!   [`EXPANSION_PER_BYTE`] nodes (and as many scalar bytes) per byte of
//!   text, so what a file parses to, and so the load cache made from it,
//!   stays proportional to its size; an alias bomb fails instead.
//!
//! The keys the target type has no field for are collected by
//! `serde_ignored`, which wraps the crate's deserializer, so the same
//! bounds hold for [`from_str_with_unknown`].

// Over 400 lines with its tests (about 180, the bombs and bounds): the bounds
// are the point of this crate.

pub mod redact;

use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind as ParserErrorKind;
use serde_saphyr::{ExternalMessageSource, MessageFormatter};
use thiserror::Error;

/// Largest document ldm parses, in bytes. A project with 10,000 snapshots is
/// about 1.2 MB; this leaves ten times that while keeping a wrong or hostile
/// file from costing more than a few hundred MB of memory.
pub const MAX_BYTES: usize = 16 << 20;

/// Deepest nesting of sequences and mappings ldm parses. ldm's own files
/// nest at most 7 deep (`containers.NAME.snapshots.NAME.pending.op.kind`).
pub const MAX_DEPTH: usize = 64;

/// Nodes (and scalar bytes) a document may hold per byte of its text, once
/// its aliases are expanded. Without aliases a document never holds more
/// than about one node per byte (`{a,b}` is 5 bytes, 5 nodes), so this
/// only stops expansion.
pub const EXPANSION_PER_BYTE: usize = 2;

/// Added to the expansion budget so that tiny documents may still use a few
/// aliases.
const EXPANSION_FLOOR: usize = 4096;

/// At most this many unknown keys are reported; the rest are counted.
pub const MAX_UNKNOWN_KEYS: usize = 100;

/// Longest unknown key path reported, in bytes; longer ones are cut.
const MAX_UNKNOWN_KEY_LEN: usize = 256;

/// Which of ldm's bounds a document broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More than [`MAX_BYTES`] bytes.
    Size,
    /// Nested deeper than [`MAX_DEPTH`].
    Depth,
    /// Aliases expand it past [`EXPANSION_PER_BYTE`] nodes per byte.
    Expansion,
}

/// A YAML document that did not parse or a value that did not serialize.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct YamlError {
    /// What is wrong, for people; names the limit if one was hit.
    pub message: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The bound the document broke, if that is why it was refused.
    pub limit: Option<Limit>,
}

/// Parses `text` into a `T`, within ldm's bounds.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    serde_saphyr::from_str_with_options(text, options(text.len())).map_err(convert)
}

/// Parses `text` into a `T`, also returning the keys `T` has no field for
/// (dotted paths such as `containers.dev.usr`), which plain parsing skips.
/// At most [`MAX_UNKNOWN_KEYS`] are returned, each at most 256 bytes; if
/// there are more, the last entry says how many were left out.
pub fn from_str_with_unknown<T: DeserializeOwned>(
    text: &str,
) -> Result<(T, Vec<String>), YamlError> {
    check_size(text)?;
    let mut unknown = Vec::new();
    let mut left_out = 0usize;
    let value =
        serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |de| {
            serde_ignored::deserialize(de, |path| {
                if unknown.len() < MAX_UNKNOWN_KEYS {
                    unknown.push(dotted(&path));
                } else {
                    // Rendering every path of a hostile file would cost
                    // O(keys x path length): count them instead.
                    left_out += 1;
                }
            })
        })
        .map_err(convert)?;
    if left_out > 0 {
        unknown.push(format!("(and {left_out} more)"));
    }
    Ok((value, unknown))
}

/// Serializes `value` as a YAML document: block style, strings quoted
/// wherever a YAML 1.1 reader (the Go tool's yaml.v3 included) could take
/// them for another type, multi-line strings as literal blocks.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    let options = serde_saphyr::ser_options! {
        // Long one-line strings stay on one line, as serde_yaml_ng wrote
        // them: a folded block would keep a trailing space on its last line
        // that editors strip.
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| YamlError {
        message: e.to_string(),
        line: None,
        column: None,
        limit: None,
    })
}

/// A path as `a.b.c`, without serde_ignored's `?` (an Option level, not a
/// key), cut at [`MAX_UNKNOWN_KEY_LEN`] bytes.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    let mut out = Capped(String::new());
    // A full buffer ends formatting early with fmt::Error: the cut is wanted.
    let _ = write!(out, "{path}");
    let mut text = out.0;
    if text.len() >= MAX_UNKNOWN_KEY_LEN {
        text.push_str("...");
    }
    text.split('.')
        .filter(|k| *k != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// A string that takes at most [`MAX_UNKNOWN_KEY_LEN`] bytes.
struct Capped(String);

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_UNKNOWN_KEY_LEN.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.0.push_str(&s[..cut]);
        Err(fmt::Error)
    }
}

fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() <= MAX_BYTES {
        return Ok(());
    }
    Err(YamlError {
        message: format!(
            "the file is {} bytes, over ldm's limit of {} MiB for a project file \
             (one with 10,000 snapshots is about 1.2 MB); check that this is the right file",
            text.len(),
            MAX_BYTES >> 20
        ),
        line: None,
        column: None,
        limit: Some(Limit::Size),
    })
}

/// The crate's options with ldm's bounds for a document of `len` bytes.
fn options(len: usize) -> serde_saphyr::Options {
    let expansion = expansion_budget(len);
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            // The parser's own limit for `[`/`{`, so that it stops at the
            // same depth before it has read the rest of a deep line.
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: expansion,
            max_events: expansion.saturating_mul(2),
            max_total_scalar_bytes: expansion,
            max_recorded_anchor_events: expansion,
            max_recorded_anchor_bytes: expansion,
            // The crate's aliases-per-anchor heuristic would refuse a
            // hand-written file that reuses one anchor 100 times; the
            // proportional budgets above already stop every bomb.
            enforce_alias_anchor_ratio: false,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: expansion,
            max_replay_stack_depth: MAX_DEPTH,
        },
        with_snippet: false,
    }
}

/// Nodes, scalar bytes and replayed events a document of `len` bytes may hold.
fn expansion_budget(len: usize) -> usize {
    len.saturating_mul(EXPANSION_PER_BYTE)
        .saturating_add(EXPANSION_FLOOR)
}

/// The error under the crate's wrappers (snippet, alias context).
fn root(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            _ => return e,
        }
    }
}

/// Which limit `e` reports, if any.
fn limit_of(e: &serde_saphyr::Error) -> Option<Limit> {
    use serde_saphyr::Error as E;
    match e {
        E::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => Some(Limit::Depth),
            BudgetBreach::InputBytes { .. } => Some(Limit::Size),
            _ => Some(Limit::Expansion),
        },
        E::AliasReplayStackDepthExceeded { .. } => Some(Limit::Depth),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => Some(Limit::Expansion),
        E::ExternalMessage { source, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan)
                if matches!(scan.kind(), ParserErrorKind::RecursionLimitExceeded) =>
            {
                Some(Limit::Depth)
            }
            _ => None,
        },
        _ => None,
    }
}

/// `text` with control characters escaped (`\u{1b}`), the rest as is.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn convert(e: serde_saphyr::Error) -> YamlError {
    let inner = root(&e);
    let limit = limit_of(inner);
    let message = match limit {
        Some(Limit::Depth) => format!(
            "the YAML nests deeper than {MAX_DEPTH} levels, ldm's limit (a project file \
             needs 7); check that this is the right file"
        ),
        Some(Limit::Expansion) => format!(
            "the YAML's aliases (*name) expand it past ldm's limit of {EXPANSION_PER_BYTE} \
             nodes per byte of the file, as an alias bomb does (ldm's own files use \
             none); check that this is the right file"
        ),
        Some(Limit::Size) | None => {
            // The text may quote the file: keep its control characters
            // out of the terminal. Advice about the crate's options is for
            // programmers, not for a person fixing the file.
            let text = serde_saphyr::DefaultMessageFormatter.format_message(inner);
            let text = text.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
            printable(&text)
        }
    };
    // The crate reports line and column 0 when it does not know them.
    let loc = e.location().filter(|l| l.line() > 0);
    YamlError {
        message,
        line: loc.and_then(|l| usize::try_from(l.line()).ok()),
        column: loc.and_then(|l| usize::try_from(l.column()).ok()),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        project: String,
        #[serde(default)]
        #[allow(dead_code)]
        containers: BTreeMap<String, BTreeMap<String, String>>,
    }

    /// Parses `text` both ways; both must fail on `limit`, fast.
    fn refused(text: &str, limit: Limit, needle: &str) {
        for unknown in [false, true] {
            let start = Instant::now();
            let e = if unknown {
                from_str_with_unknown::<Doc>(text).map(|_| ()).unwrap_err()
            } else {
                from_str::<Doc>(text).map(|_| ()).unwrap_err()
            };
            let took = start.elapsed();
            assert_eq!(e.limit, Some(limit), "{e:?}");
            assert!(e.message.contains(needle), "{e:?}");
            assert!(e.message.contains("ldm's limit"), "{e:?}");
            // Debug builds under a loaded machine: still far from the 44 s
            // that serde_yaml_ng took on the nesting bomb.
            assert!(took < Duration::from_secs(2), "took {took:?}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_by_path() {
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            a: BTreeMap<String, BTreeMap<String, u32>>,
            #[allow(dead_code)]
            o: Option<BTreeMap<String, U>>,
        }
        #[derive(serde::Deserialize)]
        struct U {
            #[allow(dead_code)]
            k: u32,
        }
        let (_, unknown) =
            from_str_with_unknown::<T>("a: {x: {y: 1}}\nb: 2\no: {n: {k: 1, typo: 2}}\n").unwrap();
        assert_eq!(unknown, vec!["b".to_string(), "o.n.typo".to_string()]);
    }

    #[test]
    fn unknown_keys_are_capped_in_number_and_length() {
        let long = "k".repeat(1000);
        let mut text = format!("project: p\n{long}: 1\n");
        for i in 0..1000 {
            text.push_str(&format!("x{i}: 1\n"));
        }
        let (_, unknown) = from_str_with_unknown::<Doc>(&text).unwrap();
        assert_eq!(unknown.len(), MAX_UNKNOWN_KEYS + 1);
        assert_eq!(unknown[0].len(), MAX_UNKNOWN_KEY_LEN + 3);
        assert!(unknown[0].ends_with("kkk..."));
        assert_eq!(unknown[1], "x0");
        assert_eq!(unknown[MAX_UNKNOWN_KEYS], "(and 901 more)");
    }

    #[test]
    fn parse_error_has_line_and_column() {
        let e = from_str::<BTreeMap<String, u32>>("a: 1\nb: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
        assert_eq!(e.limit, None);
        let e = from_str::<serde::de::IgnoredAny>("a: 1\nb: {c: d: e}\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e:?}");
        assert!(!e.message.contains("line"), "location given twice: {e:?}");
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_the_depth_limit() {
        // The bomb: 200 KB of `[`, 44 s of CPU with serde_yaml_ng.
        refused(&"[".repeat(200_000), Limit::Depth, "deeper than 64 levels");
        refused(
            &format!("project: p\nx: {}", "{a: ".repeat(50_000)),
            Limit::Depth,
            "deeper than 64",
        );
    }

    #[test]
    fn deep_block_nesting_is_refused_at_the_depth_limit() {
        let mut text = String::from("project: p\nx:\n");
        for i in 0..(MAX_DEPTH + 5) {
            text.push_str(&" ".repeat(i + 1));
            text.push_str("- \n");
        }
        refused(&text, Limit::Depth, "deeper than 64");
    }

    #[test]
    fn nesting_at_the_limit_parses() {
        let depth = MAX_DEPTH - 1; // plus the document's own mapping
        let text = format!(
            "project: p\nx: {}{}\n",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        from_str::<Doc>(&text).unwrap();
    }

    /// The classic "billion laughs": nine levels of nine aliases each.
    fn billion_laughs() -> String {
        let mut text =
            String::from("project: p\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_not_expanded() {
        refused(&billion_laughs(), Limit::Expansion, "alias bomb");
    }

    #[test]
    fn aliased_long_strings_are_refused_not_copied() {
        // 100 KB of text aliased 5,000 times: 500 MB of descriptions.
        let mut text = format!(
            "project: p\nx: &s \"{}\"\ncontainers:\n  c:\n",
            "A".repeat(100_000)
        );
        for i in 0..5000 {
            text.push_str(&format!("    s{i}: *s\n"));
        }
        refused(&text, Limit::Expansion, "alias");
    }

    #[test]
    fn a_few_aliases_are_fine() {
        let text = "project: p\ncontainers:\n  a: &c {image: img, user: x}\n  b: *c\n  c: *c\n";
        let doc: Doc = from_str(text).unwrap();
        assert_eq!(doc.containers.len(), 3);
        assert_eq!(doc.containers["c"]["image"], "img");
    }

    #[test]
    fn an_oversized_document_is_refused_before_parsing() {
        let text = format!("project: p\nx: \"{}\"\n", "a".repeat(MAX_BYTES));
        refused(&text, Limit::Size, "16 MiB");
        let e = from_str::<Doc>(&text).unwrap_err();
        assert!(
            e.message.contains(&format!("{} bytes", text.len())),
            "{e:?}"
        );
    }

    #[test]
    fn a_document_just_under_the_size_limit_parses() {
        // Mostly one long scalar: the expansion budget must not refuse it.
        let head = "project: p\nx: \"";
        let fill = MAX_BYTES - head.len() - 2;
        let text = format!("{head}{}\"\n", "a".repeat(fill));
        assert_eq!(text.len(), MAX_BYTES);
        from_str::<Doc>(&text).unwrap();
    }

    #[test]
    fn a_duplicate_key_names_the_key_and_no_crate_option() {
        let e = from_str::<BTreeMap<String, u32>>("a: 1\na: 2\n").unwrap_err();
        assert!(
            e.message.contains("duplicate") && e.message.contains('a'),
            "{e:?}"
        );
        assert!(!e.message.contains("Options"), "{e:?}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn messages_keep_control_characters_out() {
        let e = from_str::<BTreeMap<String, u32>>("a: \"\x1b[31m\"\n").unwrap_err();
        assert!(!e.message.contains('\x1b'), "{e:?}");
    }
}
