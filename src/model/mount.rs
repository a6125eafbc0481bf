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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupProgress {
    /// Steps finished (the next to run is `done + 1`, counting from 1).
    pub done: u32,
    /// The step that failed (counting from 1), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
