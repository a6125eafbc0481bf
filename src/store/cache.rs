//! `.containers.cache`: the parsed `containers.yaml`, as JSON, to skip the
//! YAML parser (97% of load time; 10,000 snapshots parse in ~30-60 ms as
//! YAML, ~7 ms as JSON).
//!
//! The cache is derived data, never a source of truth (DESIGN.md, "Load
//! cache"): its first line holds the length and CRC-32 of the exact YAML
//! bytes it was made from, and it is used only when both match the YAML read
//! now. A hand edit, a Go tool write or a restored backup changes the bytes,
//! so the YAML is parsed as usual. It is written after compaction and after
//! a writer had to parse the YAML, by temp file and rename without fsync:
//! lost or torn, it is just a miss. Any process may delete it at any time.

use serde::{Deserialize, Serialize};

use super::fs::Fs;
use super::snapshot::Mark;
use super::Paths;
use crate::model::Project;

/// File name of the cache in the project folder.
pub const CACHE_FILE: &str = ".containers.cache";
/// Prefix of its temp files.
pub const CACHE_TMP_PREFIX: &str = ".containers.cache.tmp-";

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Key {
    yaml_len: u64,
    yaml_crc: u32,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    project: &'a Project,
    mark: Option<Mark>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    unknown: &'a [String],
}

#[derive(Deserialize)]
struct BodyIn {
    project: Project,
    mark: Option<Mark>,
    /// Keys of the YAML ldm ignores, so that a cached load warns as a parse does.
    #[serde(default)]
    unknown: Vec<String>,
}

/// What the cache holds for one `containers.yaml`.
pub struct Cached {
    /// The parsed state.
    pub project: Project,
    /// Its mark.
    pub mark: Option<Mark>,
    /// Keys ldm ignored when parsing it.
    pub unknown: Vec<String>,
}

fn key(yaml: &[u8]) -> Key {
    Key {
        yaml_len: yaml.len() as u64,
        yaml_crc: crc32fast::hash(yaml),
    }
}

/// The parsed form of `yaml`, if the cache was made from these exact bytes.
pub fn read(fs: &dyn Fs, paths: &Paths, yaml: &[u8]) -> Option<Cached> {
    let bytes = fs.read(&paths.dir.join(CACHE_FILE)).ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let found: Key = serde_json::from_slice(&bytes[..split]).ok()?;
    if found != key(yaml) {
        return None;
    }
    let body: BodyIn = serde_json::from_slice(&bytes[split + 1..]).ok()?;
    Some(Cached {
        project: body.project,
        mark: body.mark,
        unknown: body.unknown,
    })
}

/// Records `project`, `mark` and the `unknown` keys as the parsed form of
/// `yaml`. Best effort: failures only cost a slower next load.
pub fn write(
    fs: &dyn Fs,
    paths: &Paths,
    yaml: &[u8],
    project: &Project,
    mark: Option<Mark>,
    unknown: &[String],
) {
    let Ok(mut out) = serde_json::to_vec(&key(yaml)) else {
        return;
    };
    out.push(b'\n');
    let body = BodyOut {
        project,
        mark,
        unknown,
    };
    if serde_json::to_writer(&mut out, &body).is_err() {
        return;
    }
    let tmp = paths
        .dir
        .join(format!("{CACHE_TMP_PREFIX}{}", std::process::id()));
    if fs.write_new(&tmp, &out).is_err() || fs.rename(&tmp, &paths.dir.join(CACHE_FILE)).is_err() {
        let _ = fs.remove(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Options, Paths, Store};

    #[test]
    fn a_hand_edit_is_read_from_the_yaml_not_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            Store::create(dir.path(), &Project::new("p", vec![1]), Options::default()).unwrap();
        store.compact().unwrap();
        let paths = Paths::in_dir(dir.path());
        assert!(dir.path().join(CACHE_FILE).exists());
        let yaml = std::fs::read_to_string(&paths.yaml).unwrap();
        let cached = read(&crate::store::OsFs, &paths, yaml.as_bytes()).unwrap();
        assert_eq!(cached.project.defaults.ports, vec![1]);
        std::fs::write(&paths.yaml, yaml.replace("  - 1", "  - 2")).unwrap();
        let project = Store::open(paths.clone(), Options::default())
            .read()
            .unwrap();
        assert_eq!(project.defaults.ports, vec![2]);
    }

    #[test]
    fn a_garbage_cache_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        Store::create(dir.path(), &Project::new("p", vec![1]), Options::default()).unwrap();
        let paths = Paths::in_dir(dir.path());
        std::fs::write(dir.path().join(CACHE_FILE), b"{\"yaml_len\":1}\nnot json").unwrap();
        let yaml = std::fs::read(&paths.yaml).unwrap();
        assert!(read(&crate::store::OsFs, &paths, &yaml).is_none());
        let project = Store::open(paths, Options::default()).read().unwrap();
        assert_eq!(project.defaults.ports, vec![1]);
    }
}
