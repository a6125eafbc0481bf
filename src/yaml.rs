//! The only module that names the YAML crate, so it can be swapped.
//!
//! ldm uses `serde_yaml_ng`, the maintained drop-in successor of the archived
//! `serde_yaml` (same libyaml-based parser, same output). Callers get a
//! [`YamlError`] with a line and column where the parser knows them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// A YAML document that did not parse or a value that did not serialize.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct YamlError {
    /// The parser's description of the problem.
    pub message: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

/// Parses `text` into a `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_yaml_ng::from_str(text).map_err(convert)
}

/// Parses `text` into a `T`, also returning the keys `T` has no field for
/// (dotted paths such as `containers.dev.usr`), which plain parsing skips.
pub fn from_str_with_unknown<T: DeserializeOwned>(
    text: &str,
) -> Result<(T, Vec<String>), YamlError> {
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let value = serde_ignored::deserialize(de, |path| {
        // `?` marks an Option level in serde_ignored's paths, not a key.
        let keys: Vec<String> = path
            .to_string()
            .split('.')
            .filter(|k| *k != "?")
            .map(String::from)
            .collect();
        unknown.push(keys.join("."));
    })
    .map_err(convert)?;
    Ok((value, unknown))
}

/// Serializes `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_yaml_ng::to_string(value).map_err(convert)
}

fn convert(e: serde_yaml_ng::Error) -> YamlError {
    let loc = e.location();
    let mut message = e.to_string();
    // The crate appends " at line L column C"; we report those separately.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    YamlError {
        message,
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_by_path() {
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            a: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
        }
        let (_, unknown) = from_str_with_unknown::<T>(
            "a: {x: {y: 1}}
b: 2
",
        )
        .unwrap();
        assert_eq!(unknown, vec!["b".to_string()]);
    }

    #[test]
    fn parse_error_has_line_and_column() {
        let e = from_str::<std::collections::BTreeMap<String, u32>>("a: 1\nb: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
    }
}
