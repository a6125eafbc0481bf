//! `containers.yaml`: the folded state, in the Go tool's format.
//!
//! The document has the Go tool's keys (`project`, `defaults`, `containers`)
//! plus two of ours: `remote` and, as the last line, the mark
//!
//! ```yaml
//! ldm: {generation: 3, seq: 41, log: "5f1c…", sha: "9ab3…"}
//! ```
//!
//! which says which log the file was folded from (`log`, the log's
//! identity), up to which record (`seq`), and `sha`, the SHA-256 of every
//! byte of the file before the mark's line. So ldm recognises its own fold
//! without any other file: an edit that keeps the mark changes the bytes
//! above it; lxc-dev-manager drops the mark when it rewrites the file
//! (DESIGN.md, "containers.yaml"). Files written by ldm before the log
//! format version 2 have a mark of `generation` and `seq` only.

// Over 400 lines with its tests (about 100): the document's shape is the Go
// tool's on-disk format, pinned beside the code.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use super::error::StoreError;
use super::record::{LogId, LOG_ID_LEN, MAX_SEQ};
use super::Paths;
use ldm_model::{Container, Defaults, Project};
use ldm_yaml::{self as yaml, YamlError};

/// The store's bookkeeping in `containers.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// How many times the log was replaced (informative).
    pub generation: u64,
    /// Sequence number of the last record folded into this file.
    pub seq: u64,
    /// The log this file was folded from; `None` in a version 1 mark.
    pub log: Option<LogId>,
}

/// What the mark says about who wrote the bytes of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// No mark, and laid out as lxc-dev-manager's yaml.v3 writes (4-space
    /// indents): the Go tool rewrote the file, dropping keys it does not
    /// know, the mark among them.
    NoMark,
    /// No mark, but not laid out as lxc-dev-manager writes: a person (or a
    /// program that keeps keys) edited the file and deleted the mark line,
    /// which README allows; whatever else is missing was deleted too.
    MarkRemoved,
    /// A version 1 mark (no checksum): cannot tell an edit from ldm's fold.
    Unchecked,
    /// The checksum matches: the bytes are exactly as ldm wrote them.
    ByLdm,
    /// The mark is there but the bytes above it changed: edited by hand or
    /// by another program that kept the mark.
    Edited,
}

/// A parsed `containers.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The state it holds.
    pub project: Project,
    /// Its mark, if any.
    pub mark: Option<Mark>,
    /// Who wrote it, as far as the mark tells.
    pub written: Written,
    /// Keys ldm ignores (dotted paths), dropped when it next writes the file.
    pub unknown: Vec<String>,
}

/// Why `containers.yaml` could not be read.
#[derive(Debug)]
pub enum DocError {
    /// Not YAML of the expected shape.
    Yaml(YamlError),
    /// No `project:` key (files of lxc-dev-manager before project prefixes).
    NoProject,
}

#[derive(Serialize, Deserialize)]
struct MarkDoc {
    generation: u64,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha: Option<String>,
}

#[derive(Deserialize)]
struct DocIn {
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    remote: Option<String>,
    #[serde(default)]
    lxd_project: Option<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    defaults: Defaults,
    #[serde(default, deserialize_with = "null_is_default")]
    containers: BTreeMap<String, Container>,
    #[serde(default)]
    ldm: Option<MarkDoc>,
}

#[derive(Serialize)]
struct DocOut<'a> {
    project: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lxd_project: &'a Option<String>,
    #[serde(skip_serializing_if = "defaults_empty")]
    defaults: &'a Defaults,
    containers: &'a BTreeMap<String, Container>,
}

fn defaults_empty(d: &&Defaults) -> bool {
    d.is_empty()
}

/// `containers:` with nothing after it is null in YAML; read it as empty.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower- or upper-case hex `text` of exactly `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where the mark's line starts: the last line beginning with `ldm:`.
fn mark_line(text: &str) -> Option<usize> {
    if text.starts_with("ldm:") && !text[4..].contains("\nldm:") {
        return Some(0);
    }
    text.rfind("\nldm:").map(|i| i + 1)
}

/// Parses the text of `containers.yaml`.
pub fn decode(text: &str) -> Result<Doc, DocError> {
    let (doc, unknown): (DocIn, _) = yaml::from_str_with_unknown(text).map_err(DocError::Yaml)?;
    let project = doc.project.ok_or(DocError::NoProject)?;
    let (mark, written) = match doc.ldm {
        None if go_layout(text) => (None, Written::NoMark),
        None => (None, Written::MarkRemoved),
        Some(m) if m.seq > MAX_SEQ => {
            return Err(DocError::Yaml(YamlError {
                message: format!(
                    "the `ldm:` mark's seq {} is past the highest sequence number a record may have ({MAX_SEQ}); delete the `ldm:` line (ldm then merges the file as another program's)",
                    m.seq
                ),
                line: mark_line(text).map(|at| text[..at].lines().count() + 1),
                column: None,
                limit: None,
            }))
        }
        Some(m) => {
            let log = m.log.as_deref().and_then(unhex::<LOG_ID_LEN>);
            let written = match m.sha.as_deref().and_then(unhex::<32>) {
                None => Written::Unchecked,
                Some(sha) => match mark_line(text) {
                    Some(at) if sha256(&text.as_bytes()[..at]) == sha => Written::ByLdm,
                    _ => Written::Edited,
                },
            };
            let mark = Mark {
                generation: m.generation,
                seq: m.seq,
                log,
            };
            (Some(mark), written)
        }
    };
    Ok(Doc {
        project: Project {
            project,
            remote: doc.remote,
            lxd_project: doc.lxd_project,
            defaults: doc.defaults,
            containers: doc.containers,
        },
        mark,
        written,
        unknown,
    })
}

/// True when `text` is laid out as lxc-dev-manager writes it: yaml.v3's
/// `Marshal` indents by 4 spaces, and the Go tool's file always has an
/// indented line (`defaults:` then `    ports:`, even when empty). ldm
/// writes 2-space indents, and so does a hand edit of ldm's file.
pub fn go_layout(text: &str) -> bool {
    text.lines()
        .find(|l| l.starts_with(' '))
        .is_some_and(|l| l.starts_with("    ") && !l[4..].starts_with(' '))
}

/// Renders `project` with its mark, with a header comment for humans.
pub fn encode(project: &Project, mark: Mark) -> Result<String, YamlError> {
    let body = yaml::to_string(&DocOut {
        project: &project.project,
        remote: &project.remote,
        lxd_project: &project.lxd_project,
        defaults: &project.defaults,
        containers: &project.containers,
    })?;
    let mut text = format!(
        "# ldm project file (lxc-dev-manager compatible). Edit ports and users freely\n\
         # between commands: ldm merges what you change with its own changes.\n{body}"
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let sha = hex(&sha256(text.as_bytes()));
    let log = mark
        .log
        .map(|id| format!(", log: \"{}\"", hex(&id)))
        .unwrap_or_default();
    text.push_str(&format!(
        "ldm: {{generation: {}, seq: {}{log}, sha: \"{sha}\"}}\n",
        mark.generation, mark.seq
    ));
    Ok(text)
}

/// True if the YAML has comment lines besides the two of ldm's header: a
/// rewrite would drop them. (Comments after a value on the same line are
/// not noticed; DESIGN.md says so.)
pub fn has_own_comments(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .skip_while(|l| l.starts_with("# ldm project file") || l.starts_with("# between commands"))
        .any(|l| l.trim_start().starts_with('#'))
}

/// Parses and validates the bytes of `containers.yaml`.
pub fn parse_yaml(paths: &Paths, bytes: &[u8]) -> Result<Doc, StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Yaml {
        path: paths.yaml.clone(),
        line: None,
        column: None,
        message: format!(
            "the file is not UTF-8 text (bad byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    let doc = decode(text).map_err(|e| match e {
        DocError::NoProject => StoreError::NoProjectKey {
            path: paths.yaml.clone(),
            example: example_names(text),
        },
        DocError::Yaml(e) => StoreError::Yaml {
            path: paths.yaml.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        },
    })?;
    validated(paths, &doc.project)?;
    Ok(doc)
}

/// For the "no `project:`" error: the project name ldm would suggest (the
/// folder's) and one container name of the file, to show the LXD names.
fn example_names(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Containers {
        #[serde(default)]
        containers: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
    }
    let c: Containers = ldm_yaml::from_str(text).ok()?;
    c.containers?.keys().next().cloned()
}

/// Checks the values of a loaded `containers.yaml`; errors name the key.
pub fn validated(paths: &Paths, project: &Project) -> Result<(), StoreError> {
    project
        .validate()
        .map_err(|(key, error)| StoreError::Invalid {
            path: paths.yaml.clone(),
            key,
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As lxc-dev-manager's yaml.v3 writes it: 4-space indents.
    const GO: &str = "project: webapp\ndefaults:\n    ports:\n        - 5173\n        - 8000\n    user:\n        name: dev\n        password: dev\ncontainers:\n    dev:\n        image: ubuntu:24.04\n        ports:\n            - 3000\n        user:\n            name: admin\n        snapshots:\n            initial-state:\n                description: Initial state after setup\n                created_at: \"2026-01-15T10:30:00Z\"\n";

    #[test]
    fn go_tool_file_loads_as_is() {
        let d = decode(GO).unwrap();
        assert_eq!((d.mark, d.written), (None, Written::NoMark));
        let p = d.project;
        assert_eq!(p.project, "webapp");
        assert_eq!(p.defaults.ports, vec![5173, 8000]);
        let dev = &p.containers["dev"];
        assert_eq!(dev.user.as_ref().unwrap().name.as_deref(), Some("admin"));
        assert_eq!(
            dev.snapshots["initial-state"].created_at,
            "2026-01-15T10:30:00Z"
        );
    }

    #[test]
    fn encode_decode_round_trips_and_recognises_its_own_bytes() {
        let mut p = Project::new("p", vec![1, 2]);
        p.containers.insert(
            "a".into(),
            Container {
                image: "img".into(),
                ..Default::default()
            },
        );
        let mark = Mark {
            generation: 3,
            seq: 9,
            log: Some([0xab; LOG_ID_LEN]),
        };
        let text = encode(&p, mark).unwrap();
        let d = decode(&text).unwrap();
        assert_eq!(
            (d.project, d.mark, d.written),
            (p, Some(mark), Written::ByLdm)
        );
        // An edit above the mark, mark kept: recognised as an edit.
        let edited = text.replace("- 2", "- 3");
        assert_eq!(decode(&edited).unwrap().written, Written::Edited);
        // A version 1 mark.
        let v1 = format!("{GO}ldm:\n  generation: 3\n  seq: 41\n");
        let d = decode(&v1).unwrap();
        assert_eq!(d.written, Written::Unchecked);
        assert_eq!(
            d.mark.map(|m| (m.generation, m.seq, m.log)),
            Some((3, 41, None))
        );
    }

    #[test]
    fn a_file_without_the_mark_is_the_go_tools_only_in_its_layout() {
        assert_eq!(decode(GO).unwrap().written, Written::NoMark);
        // ldm's own layout with the mark line deleted: a person's edit.
        let mut p = Project::new("p", vec![1]);
        p.remote = Some("r".into());
        let text = encode(
            &p,
            Mark {
                generation: 1,
                seq: 2,
                log: Some([1; LOG_ID_LEN]),
            },
        )
        .unwrap();
        let edited: String = text
            .lines()
            .filter(|l| !l.starts_with("ldm:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(decode(&edited).unwrap().written, Written::MarkRemoved);
        // No indented line at all: not the Go tool's (it always writes
        // `defaults:` and an indented `ports:`).
        assert_eq!(
            decode("project: p\ncontainers: {}\n").unwrap().written,
            Written::MarkRemoved
        );
    }

    #[test]
    fn null_containers_is_empty() {
        assert!(decode("project: x\ncontainers:\n")
            .unwrap()
            .project
            .containers
            .is_empty());
    }

    #[test]
    fn a_file_without_project_is_its_own_error() {
        assert!(matches!(
            decode("containers:\n  dev: {image: x}\n"),
            Err(DocError::NoProject)
        ));
    }
}
