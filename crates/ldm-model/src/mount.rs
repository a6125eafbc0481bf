//! Host folders in containers and setup steps (issue 14): the values of
//! `mounts:` and `setup:` in `containers.yaml`. No I/O.
//!
//! A mount is written `HOST:CONTAINER[:ro]`: HOST relative to the project
//! folder or absolute, CONTAINER an absolute path inside the container. A
//! setup step is a shell command (a string) or `{script: PATH}`, a file of
//! the project run as a script; both run once, as root, after the
//! container's user exists.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validate::{self, ValidationError};

/// One host folder shown inside a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mount {
    /// Host folder: relative to the project folder, or absolute.
    pub host: String,
    /// Absolute path inside the container.
    pub path: String,
    /// Mounted read-only.
    pub readonly: bool,
}

impl Mount {
    /// Parses `HOST:CONTAINER[:ro]`, checking both paths.
    pub fn parse(text: &str) -> Result<Mount, ValidationError> {
        let (rest, readonly) = match text.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let Some((host, path)) = rest.split_once(':') else {
            return Err(validate::mount_error(
                text,
                "write HOST:CONTAINER or HOST:CONTAINER:ro, e.g. .:/home/dev/webapp",
            ));
        };
        let mount = Mount {
            host: host.to_string(),
            path: path.to_string(),
            readonly,
        };
        validate::mount(&mount).map_err(|why| validate::mount_error(text, &why))?;
        Ok(mount)
    }

    /// The LXD disk device name for this mount: stable per container path,
    /// so that a re-run finds the device an interrupted run added.
    pub fn device_name(&self) -> String {
        // FNV-1a: stable across builds and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.path.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("ldm-mount-{:08x}", h as u32)
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.path)?;
        if self.readonly {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl Serialize for Mount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mount, D::Error> {
        let text = String::deserialize(d)?;
        Mount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One setup step of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// A shell command, run with `sh -c`.
    Command(String),
    /// A script file of the project (path relative to its folder).
    Script {
        /// Path of the script, relative to the project folder.
        script: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Command(c) => f.write_str(c),
            Step::Script { script } => write!(f, "script {script}"),
        }
    }
}

/// How far a container's setup steps have run, kept in the intent of the
/// operation running them, so that a re-run resumes where it stopped.
///
/// Progress is keyed by what the steps run, not by their position: a step
/// inserted, removed or edited in `containers.yaml` before the re-run is
/// run (or skipped) for what it is, never mistaken for its neighbour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupProgress {
    /// Steps finished (for people: "after step N"; records without
    /// `finished` resume after this many steps, as before).
    pub done: u32,
    /// The step that failed (counting from 1, in the list as it was), if
    /// one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u32>,
    /// The digest ([`Step::digest`]) of each step finished, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<String>,
}

impl SetupProgress {
    /// Which of `steps` (with their digests) still have to run: each step
    /// whose digest is not among those finished, one finished digest
    /// answering for one step (a step listed twice runs twice). A record
    /// from before digests skips the first `done` steps by position.
    pub fn to_run(&self, digests: &[String]) -> Vec<bool> {
        if self.finished.is_empty() {
            return (0..digests.len())
                .map(|i| i >= self.done as usize)
                .collect();
        }
        let mut left: Vec<&str> = self.finished.iter().map(String::as_str).collect();
        digests
            .iter()
            .map(|d| match left.iter().position(|f| *f == d) {
                Some(i) => {
                    left.remove(i);
                    false
                }
                None => true,
            })
            .collect()
    }
}

impl Step {
    /// What identifies the step's work: a digest of its command, or of its
    /// script's path and bytes (`script`: `None` when it cannot be read;
    /// such a step is never "finished already"). 16 hex digits of SHA-256.
    pub fn digest(&self, script: Option<&[u8]>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        match self {
            Step::Command(c) => {
                h.update(b"command\0");
                h.update(c.as_bytes());
            }
            Step::Script { script: path } => {
                h.update(b"script\0");
                h.update(path.as_bytes());
                h.update(b"\0");
                match script {
                    Some(bytes) => h.update(bytes),
                    None => h.update(b"(unreadable)"),
                }
            }
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_the_steps_content_not_their_place() {
        let steps = |v: &[&str]| -> Vec<String> {
            v.iter()
                .map(|c| Step::Command(c.to_string()).digest(None))
                .collect()
        };
        let done = SetupProgress {
            done: 2,
            failed: None,
            finished: steps(&["a", "b"]),
        };
        // A step inserted before the finished ones runs; they do not.
        assert_eq!(
            done.to_run(&steps(&["new", "a", "b", "c"])),
            [true, false, false, true]
        );
        // An edited step runs again.
        assert_eq!(done.to_run(&steps(&["a", "b2"])), [false, true]);
        // A step listed twice, finished once, runs once more.
        let once = SetupProgress {
            done: 1,
            failed: None,
            finished: steps(&["x"]),
        };
        assert_eq!(once.to_run(&steps(&["x", "x"])), [false, true]);
        // A record from before digests resumes by position.
        let old = SetupProgress {
            done: 1,
            failed: Some(2),
            finished: vec![],
        };
        assert_eq!(old.to_run(&steps(&["p", "q"])), [false, true]);
    }

    #[test]
    fn a_script_is_known_by_its_path_and_bytes() {
        let s = Step::Script {
            script: "setup.sh".into(),
        };
        assert_eq!(s.digest(Some(b"echo 1")), s.digest(Some(b"echo 1")));
        assert_ne!(s.digest(Some(b"echo 1")), s.digest(Some(b"echo 2")));
        assert_ne!(s.digest(Some(b"echo 1")), s.digest(None));
        assert_ne!(
            Step::Command("script setup.sh".into()).digest(None),
            s.digest(None)
        );
        assert_eq!(s.digest(None).len(), 16);
    }

    #[test]
    fn mounts_parse_and_print_as_written() {
        for (text, host, path, ro) in [
            (".:/home/dev/webapp", ".", "/home/dev/webapp", false),
            ("data:/srv/data:ro", "data", "/srv/data", true),
            ("/opt/cache:/cache", "/opt/cache", "/cache", false),
        ] {
            let m = Mount::parse(text).unwrap();
            assert_eq!(
                (m.host.as_str(), m.path.as_str(), m.readonly),
                (host, path, ro)
            );
            assert_eq!(m.to_string(), text);
        }
        for bad in [
            ".",
            ":/x",
            ".:relative",
            ".:/a/../b",
            ".:/",
            "a\nb:/x",
            ".:/x:rw",
        ] {
            assert!(Mount::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_names_are_stable_and_valid_for_lxd() {
        let m = Mount::parse(".:/home/dev/webapp").unwrap();
        assert_eq!(
            m.device_name(),
            Mount::parse("src:/home/dev/webapp:ro")
                .unwrap()
                .device_name()
        );
        assert_ne!(
            m.device_name(),
            Mount::parse(".:/srv").unwrap().device_name()
        );
        assert!(m
            .device_name()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn setup_steps_are_commands_or_scripts() {
        let steps: Vec<Step> =
            serde_json::from_str(r#"["apt-get install -y git", {"script": "setup/dev.sh"}]"#)
                .unwrap();
        assert_eq!(steps[0], Step::Command("apt-get install -y git".into()));
        assert_eq!(
            steps[1],
            Step::Script {
                script: "setup/dev.sh".into()
            }
        );
    }
}
