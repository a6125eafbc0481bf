//! Long operations in the model: [`Pending`] (what runs, who runs it, since
//! when), its kinds ([`Op`], frozen with [`OP_KINDS`] as part of the log
//! format), the command that finishes or undoes one, and its [`Owner`].
//!
//! Over 400 lines with its tests: a third of it is the frozen JSON of
//! every kind (`op_kinds_are_frozen`), part of the log format.

use serde::{Deserialize, Serialize};

use crate::{Mount, SetupProgress};

/// An operation that runs LXD steps without the store lock: recorded before
/// the first step (the intent) and cleared after the last (the outcome), so
/// that an interrupted one stays visible (DESIGN.md, "Long operations").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// What is being done.
    pub op: Op,
    /// Who is doing it.
    pub owner: Owner,
    /// RFC 3339 time the operation started, UTC.
    pub started_at: String,
    /// How far its setup steps ran, for an operation that runs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupProgress>,
}

/// Every kind of [`Op`] (its `kind`, as a record's `pending` holds it) with
/// the log format version that introduced it. Part of the format, as
/// [`Mutation::KINDS`](crate::Mutation::KINDS) is: an ldm that reads an older version takes a kind
/// it does not know inside `pending` for damage, so a new kind needs a new
/// log version (`store::record::VERSION`), and `tests::op_kinds_are_frozen`
/// fails until both are done.
pub const OP_KINDS: &[(&str, u32)] = &[
    ("create", 1),
    ("clone", 1),
    ("reset", 1),
    ("snapshot-create", 1),
    ("snapshot-delete", 1),
    ("remove", 1),
    ("image-create", 1),
    ("mount", 3),
    ("umount", 3),
    ("setup", 3),
    ("rename", 4),
    // New kinds go here, in the order of the variants, with the log format
    // version that introduced them.
];

/// The kinds of long operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Op {
    /// `container create`.
    Create,
    /// `container clone` from `source`.
    Clone {
        /// Source container (and `/snapshot`).
        source: String,
    },
    /// `container reset` to `snapshot`.
    Reset {
        /// Snapshot restored.
        snapshot: String,
        /// The container was running and must be started again at the end;
        /// recorded before it is stopped, so a re-run after a crash knows.
        #[serde(default, skip_serializing_if = "is_false")]
        restart: bool,
    },
    /// `container snapshot create`.
    SnapshotCreate {
        /// Snapshot name.
        snapshot: String,
    },
    /// `container snapshot delete`.
    SnapshotDelete {
        /// Snapshot name.
        snapshot: String,
    },
    /// `remove` or `project delete`.
    Remove,
    /// `image create` (the container is stopped and snapshotted meanwhile).
    ImageCreate {
        /// Alias of the image being published.
        alias: String,
        /// As for [`Op::Reset`]: start the container again at the end.
        #[serde(default, skip_serializing_if = "is_false")]
        restart: bool,
    },
    /// `ldm mount`: a host folder is being added to a live container (the
    /// `mount_added` record came in the same commit).
    Mount {
        /// The mount, as `HOST:CONTAINER[:ro]`.
        mount: String,
    },
    /// `ldm umount`: the mount at `path` is being removed.
    Umount {
        /// Its path inside the container.
        path: String,
    },
    /// `ldm container setup`: the setup steps run again.
    Setup,
    /// `ldm project rename`: the container's instance is being renamed
    /// from `from`-NAME to `to`-NAME (the `project_renamed` record came in
    /// the same commit, so the project is named `to` already).
    Rename {
        /// The project's name before.
        from: String,
        /// The project's name after.
        to: String,
        /// As for [`Op::Reset`]: it was running, so it is started again
        /// under its new name.
        #[serde(default, skip_serializing_if = "is_false")]
        restart: bool,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Op {
    /// True if the operation stopped a running container and must start it
    /// again when it ends.
    pub fn restart(&self) -> bool {
        matches!(
            self,
            Op::Reset { restart: true, .. }
                | Op::ImageCreate { restart: true, .. }
                | Op::Rename { restart: true, .. }
        )
    }

    /// The same operation, noting that the container must be started again.
    pub fn with_restart(self) -> Op {
        match self {
            Op::Reset { snapshot, .. } => Op::Reset {
                snapshot,
                restart: true,
            },
            Op::ImageCreate { alias, .. } => Op::ImageCreate {
                alias,
                restart: true,
            },
            Op::Rename { from, to, .. } => Op::Rename {
                from,
                to,
                restart: true,
            },
            other => other,
        }
    }

    /// Upper-case verb for `list`: CREATING, REMOVING, ...
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Create => "CREATING",
            Op::Clone { .. } => "CLONING",
            Op::Reset { .. } => "RESETTING",
            Op::SnapshotCreate { .. } => "SNAPSHOTTING",
            Op::SnapshotDelete { .. } => "DELETING SNAPSHOT",
            Op::Remove => "REMOVING",
            Op::ImageCreate { .. } => "PUBLISHING",
            Op::Mount { .. } => "MOUNTING",
            Op::Umount { .. } => "UNMOUNTING",
            Op::Setup => "SETTING UP",
            Op::Rename { .. } => "RENAMING",
        }
    }

    /// The operation as a noun, for messages: "create", "snapshot create".
    pub fn noun(&self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Clone { .. } => "clone",
            Op::Reset { .. } => "reset",
            Op::SnapshotCreate { .. } => "snapshot create",
            Op::SnapshotDelete { .. } => "snapshot delete",
            Op::Remove => "remove",
            Op::ImageCreate { .. } => "image create",
            Op::Mount { .. } => "mount",
            Op::Umount { .. } => "umount",
            Op::Setup => "setup",
            Op::Rename { .. } => "project rename",
        }
    }

    /// The command that re-runs it, for hints. Its values come from the
    /// project's files, which anyone who writes the folder can forge, and
    /// what the user types is allowed as typed: so no hint carries a value
    /// that would widen what the user allows (the image of a create is
    /// left out, as `container create NAME` finishes one from the record;
    /// a mount's host folder is `HOST`, for the user to fill in), and every
    /// other value is quoted for the shell, behind `--` when it starts
    /// with `-`, so that it stays one argument and never an option.
    pub fn command(&self, container: &str) -> String {
        let pos = |words: &[&str]| args(words);
        match self {
            Op::Create => format!("ldm container create {}", pos(&[container])),
            Op::Clone { source } => match source.split_once('/') {
                Some((src, snap)) => format!(
                    "ldm container clone --snapshot={} {}",
                    quote(snap),
                    pos(&[src, container])
                ),
                None => format!("ldm container clone {}", pos(&[source, container])),
            },
            Op::Reset { snapshot, .. } => {
                format!("ldm container reset {}", pos(&[container, snapshot]))
            }
            Op::SnapshotCreate { snapshot } => {
                format!(
                    "ldm container snapshot create {}",
                    pos(&[container, snapshot])
                )
            }
            Op::SnapshotDelete { snapshot } => {
                format!(
                    "ldm container snapshot delete {}",
                    pos(&[container, snapshot])
                )
            }
            Op::Remove => format!("ldm remove {}", pos(&[container])),
            Op::ImageCreate { alias, .. } => {
                format!("ldm image create {}", pos(&[container, alias]))
            }
            Op::Mount { mount } => match Mount::parse(mount) {
                Ok(m) => format!(
                    "ldm mount {}{}",
                    pos(&[container, &format!("HOST:{}", m.path)]),
                    if m.readonly { " --ro" } else { "" }
                ),
                Err(_) => format!("ldm mount {} HOST:PATH", pos(&[container])),
            },
            Op::Umount { path } => format!("ldm umount {}", pos(&[container, path])),
            Op::Setup => format!("ldm container setup {}", pos(&[container])),
            Op::Rename { to, .. } => format!("ldm project rename {}", pos(&[to])),
        }
    }
}

/// `words` as shell arguments: each quoted where needed, and `--` before
/// them when one starts with `-` (so no value is read as an option).
fn args(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
    let dash = if words.iter().any(|w| w.starts_with('-')) {
        "-- "
    } else {
        ""
    };
    format!("{dash}{}", quoted.join(" "))
}

/// `w` as one shell word: as it is when it holds only characters no shell
/// reads specially, else in single quotes.
pub fn quote(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        return w.to_string();
    }
    format!("'{}'", w.replace('\'', "'\\''"))
}

/// The process running an operation: its pid, for people, and the byte of
/// `containers.lock` it holds an OFD lock on, for liveness (the kernel drops
/// the lock when the process dies, whatever killed it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Offset of the owner's lock byte in `containers.lock`.
    pub slot: u64,
    /// Inode of `containers.lock` when the slot was claimed: if the file
    /// at the path is another one now (it was removed or replaced), the
    /// slot cannot be asked and liveness falls back on `pid` and `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_ino: Option<u64>,
    /// The owner's start time (clock ticks after boot, `/proc/PID/stat`),
    /// so a reused pid is not taken for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review-trust finding 7: a hint's command never carries a value of
    /// the files that would widen what typing it allows, and every other
    /// value stays one shell word that is never an option.
    #[test]
    fn hints_leave_out_what_would_widen_trust_and_quote_the_rest() {
        assert_eq!(Op::Create.command("dev"), "ldm container create dev");
        let m = Op::Mount {
            mount: "/home/ann/secret:/srv/s:ro".into(),
        };
        assert_eq!(m.command("dev"), "ldm mount dev HOST:/srv/s --ro");
        let r = Op::Reset {
            snapshot: "--force".into(),
            restart: false,
        };
        assert_eq!(r.command("dev"), "ldm container reset -- dev --force");
        let u = Op::Umount {
            path: "/srv/a b'; rm -rf ~".into(),
        };
        assert_eq!(u.command("dev"), "ldm umount dev '/srv/a b'\\''; rm -rf ~'");
        assert_eq!(quote("ubuntu:24.04"), "ubuntu:24.04");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn restart_flag_is_absent_unless_set_so_old_records_read_the_same() {
        let old = r#"{"kind":"reset","snapshot":"s1"}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        assert!(!op.restart());
        assert_eq!(serde_json::to_string(&op).unwrap(), old);
        let op = op.with_restart();
        assert!(op.restart());
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"kind":"reset","snapshot":"s1","restart":true}"#);
        let old = r#"{"kind":"image-create","alias":"img"}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        assert!(!op.restart() && op.with_restart().restart());
        assert!(!Op::Create.with_restart().restart());
    }

    /// One example of every kind of `Op`, with every optional field set, and
    /// its exact JSON. Adding a variant breaks the exhaustive match in
    /// `kind`; adding it there without an example here and an entry in
    /// `OP_KINDS` (and so a new log version) breaks this test.
    #[test]
    fn op_kinds_are_frozen() {
        fn kind(op: &Op) -> &'static str {
            match op {
                Op::Create => "create",
                Op::Clone { .. } => "clone",
                Op::Reset { .. } => "reset",
                Op::SnapshotCreate { .. } => "snapshot-create",
                Op::SnapshotDelete { .. } => "snapshot-delete",
                Op::Remove => "remove",
                Op::ImageCreate { .. } => "image-create",
                Op::Mount { .. } => "mount",
                Op::Umount { .. } => "umount",
                Op::Setup => "setup",
                Op::Rename { .. } => "rename",
            }
        }
        let frozen: Vec<(Op, &str)> = vec![
            (Op::Create, r#"{"kind":"create"}"#),
            (
                Op::Clone {
                    source: "dev/s".into(),
                },
                r#"{"kind":"clone","source":"dev/s"}"#,
            ),
            (
                Op::Reset {
                    snapshot: "s".into(),
                    restart: true,
                },
                r#"{"kind":"reset","snapshot":"s","restart":true}"#,
            ),
            (
                Op::SnapshotCreate {
                    snapshot: "s".into(),
                },
                r#"{"kind":"snapshot-create","snapshot":"s"}"#,
            ),
            (
                Op::SnapshotDelete {
                    snapshot: "s".into(),
                },
                r#"{"kind":"snapshot-delete","snapshot":"s"}"#,
            ),
            (Op::Remove, r#"{"kind":"remove"}"#),
            (
                Op::ImageCreate {
                    alias: "img".into(),
                    restart: true,
                },
                r#"{"kind":"image-create","alias":"img","restart":true}"#,
            ),
            (
                Op::Mount {
                    mount: ".:/home/dev/p:ro".into(),
                },
                r#"{"kind":"mount","mount":".:/home/dev/p:ro"}"#,
            ),
            (
                Op::Umount {
                    path: "/home/dev/p".into(),
                },
                r#"{"kind":"umount","path":"/home/dev/p"}"#,
            ),
            (Op::Setup, r#"{"kind":"setup"}"#),
            (
                Op::Rename {
                    from: "p".into(),
                    to: "q".into(),
                    restart: true,
                },
                r#"{"kind":"rename","from":"p","to":"q","restart":true}"#,
            ),
        ];
        let kinds: Vec<&str> = frozen.iter().map(|(op, _)| kind(op)).collect();
        let listed: Vec<&str> = OP_KINDS.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds, listed,
            "every Op kind has one frozen example and one entry in OP_KINDS, in the same order"
        );
        for (op, json) in &frozen {
            assert_eq!(
                serde_json::to_string(op).unwrap(),
                *json,
                "shape of {}",
                kind(op)
            );
            assert_eq!(&serde_json::from_str::<Op>(json).unwrap(), op);
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["kind"], kind(op), "the name serde writes");
        }
        // That each version is one the store writes: ldm-store's record.rs.
    }
}
