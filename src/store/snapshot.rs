//! `containers.yaml`: the compacted state, in the Go tool's format.
//!
//! The document has the Go tool's keys (`project`, `defaults`, `containers`)
//! plus one of ours, `ldm: {generation, seq}`, the high-water mark that ties
//! the file to a log generation (DESIGN.md, "Generations"). The Go tool
//! ignores unknown keys when reading and drops them when writing; a file
//! without the mark is read as "written by another tool" (see [`Mark`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Container, Defaults, Project};
use crate::yaml::{self, YamlError};

/// The store's bookkeeping in `containers.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Compaction generation: the log that continues this file has this
    /// generation in its header.
    pub generation: u64,
    /// Sequence number of the last record folded into this file.
    pub seq: u64,
}

#[derive(Deserialize)]
struct DocIn {
    project: String,
    #[serde(default)]
    remote: Option<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    defaults: Defaults,
    #[serde(default, deserialize_with = "null_is_default")]
    containers: BTreeMap<String, Container>,
    #[serde(default)]
    ldm: Option<Mark>,
}

#[derive(Serialize)]
struct DocOut<'a> {
    project: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: &'a Option<String>,
    #[serde(skip_serializing_if = "defaults_empty")]
    defaults: &'a Defaults,
    containers: &'a BTreeMap<String, Container>,
    ldm: Mark,
}

fn defaults_empty(d: &&Defaults) -> bool {
    d.ports.is_empty() && d.user.is_none()
}

/// `containers:` with nothing after it is null in YAML; read it as empty.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses the text of `containers.yaml`.
pub fn decode(text: &str) -> Result<(Project, Option<Mark>), YamlError> {
    decode_with_unknown(text).map(|(project, mark, _)| (project, mark))
}

/// [`decode`], plus the keys ldm does not know (dotted paths), which it
/// ignores and, like the Go tool, drops when it next writes the file.
pub fn decode_with_unknown(text: &str) -> Result<(Project, Option<Mark>, Vec<String>), YamlError> {
    let (doc, unknown): (DocIn, _) = yaml::from_str_with_unknown(text)?;
    Ok((
        Project {
            project: doc.project,
            remote: doc.remote,
            defaults: doc.defaults,
            containers: doc.containers,
        },
        doc.ldm,
        unknown,
    ))
}

/// Renders `project` with its mark, with a header comment for humans.
pub fn encode(project: &Project, mark: Mark) -> Result<String, YamlError> {
    let body = yaml::to_string(&DocOut {
        project: &project.project,
        remote: &project.remote,
        defaults: &project.defaults,
        containers: &project.containers,
        ldm: mark,
    })?;
    Ok(format!(
        "# ldm project file (lxc-dev-manager compatible). Edit ports and users freely\n\
         # between commands; keep the `ldm:` key, it ties this file to containers.log.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_tool_file_loads_as_is() {
        let text = "project: webapp\ndefaults:\n  ports: [5173, 8000]\n  user: {name: dev, password: dev}\ncontainers:\n  dev:\n    image: ubuntu:24.04\n    ports: [3000]\n    user: {name: admin}\n    snapshots:\n      initial-state: {description: Initial state after setup, created_at: \"2026-01-15T10:30:00Z\"}\n";
        let (p, mark) = decode(text).unwrap();
        assert_eq!(mark, None);
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
    fn encode_decode_round_trips() {
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
        };
        let (q, m) = decode(&encode(&p, mark).unwrap()).unwrap();
        assert_eq!((q, m), (p, Some(mark)));
    }

    #[test]
    fn null_containers_is_empty() {
        let (p, _) = decode("project: x\ncontainers:\n").unwrap();
        assert!(p.containers.is_empty());
    }
}
