//! Whose an instance is. ldm marks every instance it launches or copies
//! with `user.ldm.*` keys, in the request that makes it (no extra call),
//! and [`super::owned::Owned`] wraps a command's client so that every read
//! classifies what it returns ([`Owner`]) and every action on another
//! checkout's instance is refused before it reaches LXD. The marks come
//! with the instance data commands read anyway (`Instance::user`), so
//! knowing the owner of what a command read costs no request. DESIGN.md,
//! "Ownership".

use std::collections::BTreeMap;
use std::path::Path;

use ldm_user_state::UserDirs;

use super::LxdError;

/// Every owner mark starts with this.
pub const PREFIX: &str = "user.ldm.";
/// The checkout that made the instance (its id, 32 hex digits).
pub const CHECKOUT: &str = "user.ldm.checkout";
/// The project name it was made under.
pub const PROJECT: &str = "user.ldm.project";
/// The container name in that project.
pub const CONTAINER: &str = "user.ldm.container";
/// The checkout's folder when it was made (for messages).
pub const FOLDER: &str = "user.ldm.folder";
/// The machine id of the host that made it (for messages).
pub const HOST: &str = "user.ldm.host";

/// Who asks: this checkout of a project, on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// The checkout's id (`user_state::CheckoutId`, as text).
    pub checkout: String,
    /// The project's name (prefix of its LXD names).
    pub project: String,
    /// The checkout's folder.
    pub folder: String,
    /// This machine's id (`/etc/machine-id`), empty when unknown.
    pub host: String,
    /// The user's folders, to tell whether another checkout's folder still
    /// is that checkout (else it moved: its instances are this one's).
    pub users: Option<UserDirs>,
}

/// Whose an instance is, as its marks say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Owner {
    /// Not asked: a bare client's answer (one not wrapped in
    /// [`super::owned::Owned`]), which knows no checkout.
    #[default]
    Unknown,
    /// Made by this checkout.
    Ours,
    /// No marks: made by lxc-dev-manager, an older ldm or by hand. A name
    /// the project records exactly is adopted.
    Unmarked,
    /// Made by another checkout (a copy of the folder, a teammate).
    Other(Theirs),
    /// Made by a checkout of this project on this machine whose folder no
    /// longer is that checkout (moved to another file system, deleted and
    /// cloned again): this one's, marked again when ldm next changes it.
    Moved {
        /// The folder its marks name.
        from: String,
    },
}

impl Owner {
    /// This checkout's, or adopted as this checkout's: the commands act.
    pub fn is_mine(&self) -> bool {
        !matches!(self, Owner::Other(_))
    }
}

/// What the marks of another checkout's instance say, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theirs {
    /// Its checkout's folder.
    pub folder: String,
    /// `None` on this machine, else the other machine's id.
    pub machine: Option<String>,
    /// What a command says of it: whose it is and what to do.
    pub said: String,
}

impl Me {
    /// This machine's id, or empty when the system keeps none.
    pub fn machine_id() -> String {
        ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The marks of instance `lxd_name` made by this checkout.
    pub fn marks(&self, lxd_name: &str) -> Vec<(&'static str, String)> {
        let container = lxd_name
            .strip_prefix(&self.project)
            .and_then(|n| n.strip_prefix('-'))
            .unwrap_or(lxd_name);
        vec![
            (CHECKOUT, self.checkout.clone()),
            (PROJECT, self.project.clone()),
            (CONTAINER, container.to_string()),
            (FOLDER, self.folder.clone()),
            (HOST, self.host.clone()),
        ]
    }

    /// Whose an instance with `user` keys is.
    pub fn owner(&self, user: &BTreeMap<String, String>) -> Owner {
        match user.get(CHECKOUT) {
            None => Owner::Unmarked,
            Some(id) if *id == self.checkout => Owner::Ours,
            Some(id) => {
                let host = shown(user.get(HOST));
                let folder = shown(user.get(FOLDER));
                let same_project = user.get(PROJECT) == Some(&self.project);
                if same_project && host == self.host && !host.is_empty() && !self.holds(&folder, id)
                {
                    return Owner::Moved { from: folder };
                }
                let machine = (host != self.host || host.is_empty()).then_some(host);
                let (whose, next) = self.whose(&folder, machine.as_deref());
                Owner::Other(Theirs {
                    folder,
                    machine,
                    said: format!("belongs to {whose}; {next}"),
                })
            }
        }
    }

    /// Whether `folder` still is checkout `id` with a project in it. When
    /// ldm cannot tell (no state folder), it is taken to be.
    fn holds(&self, folder: &str, id: &str) -> bool {
        let Some(users) = &self.users else {
            return true;
        };
        let dir = Path::new(folder);
        std::fs::symlink_metadata(dir.join("containers.yaml")).is_ok()
            && users.known(dir).is_some_and(|k| k.to_string() == id)
    }

    /// Whose another checkout's instance is, and what to do, in words.
    fn whose(&self, folder: &str, machine: Option<&str>) -> (String, String) {
        let whose = match machine {
            None => format!("another checkout of this project, the folder {folder}"),
            Some("") => {
                format!("another checkout, the folder {folder} on a machine ldm cannot name")
            }
            Some(m) => {
                format!("another checkout, the folder {folder} on another machine (machine id {m})")
            }
        };
        let next = format!(
            "ldm leaves it alone: run the command in that folder, or give this folder ({}) a project name of its own, e.g. `ldm project rename {}` (its own instances are renamed with it; `ldm up` then makes the containers it lacks)",
            self.folder,
            self.another_name()
        );
        (whose, next)
    }

    /// A project name to offer this checkout: its folder's name when that
    /// is a plain one other than the project's, else `PROJECT-2`.
    fn another_name(&self) -> String {
        let base = Path::new(&self.folder)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let plain = !base.is_empty()
            && base.len() <= 40
            && base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if plain && base != self.project {
            base.to_string()
        } else {
            format!("{}-2", self.project)
        }
    }

    /// The refusal of an action on `name`, another checkout's.
    pub fn refusal(&self, name: &str, theirs: &Theirs) -> LxdError {
        let (whose, next) = self.whose(&theirs.folder, theirs.machine.as_deref());
        LxdError::NotOurs {
            name: name.to_string(),
            whose,
            next,
        }
    }
}

/// A mark as words for a terminal: anyone who may change the instance's
/// config wrote it, so its control characters are shown as `?`.
fn shown(mark: Option<&String>) -> String {
    mark.map(|m| {
        m.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(users: Option<UserDirs>) -> Me {
        Me {
            checkout: "a".repeat(32),
            project: "p".into(),
            folder: "/work/p".into(),
            host: "m1".into(),
            users,
        }
    }

    fn marks(checkout: &str, project: &str, folder: &str, host: &str) -> BTreeMap<String, String> {
        [
            (CHECKOUT, checkout),
            (PROJECT, project),
            (CONTAINER, "dev"),
            (FOLDER, folder),
            (HOST, host),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn marks_name_the_container_without_the_project() {
        let m = me(None).marks("p-web-1");
        assert!(m.contains(&(CONTAINER, "web-1".to_string())), "{m:?}");
        assert!(m.contains(&(CHECKOUT, "a".repeat(32))), "{m:?}");
    }

    #[test]
    fn whose_by_the_checkout_mark() {
        let m = me(None);
        assert_eq!(m.owner(&BTreeMap::new()), Owner::Unmarked);
        assert_eq!(
            m.owner(&marks(&"a".repeat(32), "p", "/x", "m1")),
            Owner::Ours
        );
        let Owner::Other(t) = m.owner(&marks(&"b".repeat(32), "p", "/x", "m1")) else {
            panic!("another checkout's")
        };
        assert_eq!((t.folder.as_str(), t.machine.as_deref()), ("/x", None));
        assert!(
            t.said.contains("the folder /x") && t.said.contains("/work/p"),
            "{}",
            t.said
        );
        let Owner::Other(t) = m.owner(&marks(&"b".repeat(32), "p", "/x", "m2")) else {
            panic!("another machine's")
        };
        assert_eq!(t.machine.as_deref(), Some("m2"));
        let Owner::Other(t) = m.owner(&marks(&"b".repeat(32), "p", "/x\x1b[2J", "m\n2")) else {
            panic!("another's")
        };
        assert_eq!(
            (t.folder.as_str(), t.machine.as_deref()),
            ("/x?[2J", Some("m?2"))
        );
        assert!(t.said.contains("another machine"), "{}", t.said);
    }

    /// Without the user's state ldm cannot tell a moved folder: another's.
    #[test]
    fn a_gone_folder_is_moved_only_when_ldm_can_tell() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone").display().to_string();
        let other = marks(&"b".repeat(32), "p", &gone, "m1");
        assert!(matches!(me(None).owner(&other), Owner::Other(_)));
        let users = Some(UserDirs::in_dir(tmp.path()));
        assert_eq!(
            me(users.clone()).owner(&other),
            Owner::Moved { from: gone.clone() }
        );
        // Another project's, or another machine's: never adopted.
        let theirs = marks(&"b".repeat(32), "q", &gone, "m1");
        assert!(matches!(me(users.clone()).owner(&theirs), Owner::Other(_)));
        let far = marks(&"b".repeat(32), "p", &gone, "m2");
        assert!(matches!(me(users).owner(&far), Owner::Other(_)));
    }

    /// A folder that still is the checkout its marks name is that
    /// checkout's (the copy case).
    #[test]
    fn a_folder_that_still_is_that_checkout_is_its() {
        let tmp = tempfile::tempdir().unwrap();
        let users = UserDirs::in_dir(&tmp.path().join("user"));
        let first = tmp.path().join("first");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::write(first.join("containers.yaml"), "project: p\n").unwrap();
        let id = users.checkout(&first).unwrap().id.to_string();
        let folder = first.canonicalize().unwrap().display().to_string();
        let m = me(Some(users));
        assert!(matches!(
            m.owner(&marks(&id, "p", &folder, "m1")),
            Owner::Other(_)
        ));
        std::fs::remove_file(first.join("containers.yaml")).unwrap();
        assert!(matches!(
            m.owner(&marks(&id, "p", &folder, "m1")),
            Owner::Moved { .. }
        ));
    }
}
