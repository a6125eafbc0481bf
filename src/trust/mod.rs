//! Trust, like direnv: what a project asks for that reaches outside its
//! folder or onto another machine, and whether the user allowed it for this
//! checkout (DESIGN.md, "What ldm trusts").
//!
//! The project folder is written by others: a cloned repository, teammates,
//! lxc-dev-manager, and every container through its mount. So what the
//! project (containers.yaml and containers.log together) asks for that
//! reaches further than the folder is an [`Item`] that waits for the user:
//! a mount whose source, resolved, is outside the folder; each setup step
//! (it runs as root in a container with those mounts); the `remote:` (every
//! LXD call goes to that server); an isolation setting the project had
//! turned off and turns back on. What the user allowed lives in the user's
//! own state folder (`state.rs`), keyed by the checkout, which nobody who
//! writes the folder can change. Commands ask [`judge`] what waits, and
//! refuse what they would apply ([`Need`]). No LXD, no store.

// Over 400 lines with its tests (about 150): what a project asks for and what
// the user allowed are compared item by item here.

mod need;
pub mod sources;
pub mod state;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{Project, Setting, Step};
use crate::user_state::UserStateError;
pub use need::{Need, Who};
use sources::Homes;
use state::Allowed;

/// Errors reading or writing what the user allowed.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The state folder could not be read or written.
    #[error(transparent)]
    State(#[from] UserStateError),
}

/// One thing a project asks for that needs the user's word.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// `remote:`: every LXD call goes to that server.
    Remote {
        /// The remote's name.
        name: String,
    },
    /// `lxd_project:`: the containers live in that LXD project of the
    /// server, which ldm makes if the server lacks it.
    LxdProject {
        /// The LXD project's name.
        name: String,
    },
    /// A mount whose host side, resolved, is outside the project folder.
    Mount {
        /// The real path.
        source: PathBuf,
        /// Read-only in the container (allowing read-write covers it).
        readonly: bool,
    },
    /// A setup step that is a shell command, as written.
    Step {
        /// The command.
        command: String,
    },
    /// A setup step that runs a script of the project.
    Script {
        /// Its path in the project.
        path: String,
    },
    /// An isolation setting turned back on after the project had it off.
    Setting {
        /// A container, or `""` for new containers (the defaults).
        scope: String,
        /// The key under `security:`.
        key: String,
    },
}

/// Who gets an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    /// New containers (`defaults`).
    New,
    /// This container.
    Container(String),
}

/// One item the project asks for, where and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What it is.
    pub item: Item,
    /// Who gets it.
    pub uses: BTreeSet<Use>,
    /// How the file writes it, when that differs from the item (a mount's
    /// `HOST:CONTAINER`).
    pub written: BTreeSet<String>,
    /// For a mount: why ldm never mounts it from a file (only with
    /// `--force` typed by the user).
    pub refused: Option<String>,
}

/// Everything `project` asks for that needs the user's word, with the
/// project folder `dir` (canonical). Mount sources are resolved here.
pub fn scan(project: &Project, dir: &Path, homes: &Homes) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut add =
        |item: Item, user: Use, written: Option<String>, refused: Option<String>| match out
            .iter_mut()
            .find(|f| f.item == item)
        {
            Some(f) => {
                f.uses.insert(user);
                f.written.extend(written);
            }
            None => out.push(Found {
                item,
                uses: BTreeSet::from([user]),
                written: written.into_iter().collect(),
                refused,
            }),
        };
    if let Some(name) = &project.remote {
        add(Item::Remote { name: name.clone() }, Use::New, None, None);
    }
    if let Some(name) = &project.lxd_project {
        add(
            Item::LxdProject { name: name.clone() },
            Use::New,
            None,
            None,
        );
    }
    // A source written the same way resolves the same way: once each.
    let mut resolved: Vec<(String, sources::Source)> = Vec::new();
    let mut source = |host: &str| -> sources::Source {
        if let Some((_, s)) = resolved.iter().find(|(h, _)| h == host) {
            return s.clone();
        }
        let s = sources::resolve(dir, host);
        resolved.push((host.to_string(), s.clone()));
        s
    };
    let mut mounts =
        |ms: &[crate::model::Mount],
         user: Use,
         add: &mut dyn FnMut(Item, Use, Option<String>, Option<String>)| {
            for m in ms {
                let s = source(&m.host);
                if !s.inside {
                    let refused = sources::refused(&s, homes);
                    add(
                        Item::Mount {
                            source: s.path,
                            readonly: m.readonly,
                        },
                        user.clone(),
                        Some(m.to_string()),
                        refused,
                    );
                }
            }
        };
    if let Some(ms) = &project.defaults.mounts {
        mounts(ms, Use::New, &mut add);
    }
    for (name, c) in &project.containers {
        mounts(&c.mounts, Use::Container(name.clone()), &mut add);
    }
    let steps = |steps: &[Step],
                 user: Use,
                 add: &mut dyn FnMut(Item, Use, Option<String>, Option<String>)| {
        for s in steps {
            let item = match s {
                Step::Command(c) => Item::Step { command: c.clone() },
                Step::Script { script } => Item::Script {
                    path: script.clone(),
                },
            };
            add(item, user.clone(), None, None);
        }
    };
    steps(&project.defaults.setup, Use::New, &mut add);
    for name in project.containers.keys() {
        steps(
            project.effective_setup(name),
            Use::Container(name.clone()),
            &mut add,
        );
    }
    out
}

/// Each scope's settings as they are now: (`""` for new containers or a
/// container's name, setting, on).
pub fn settings(project: &Project) -> Vec<(String, Setting, bool)> {
    let mut out = Vec::new();
    for s in Setting::ALL {
        out.push((String::new(), s, project.effective_setting(None, s)));
        for name in project.containers.keys() {
            out.push((name.clone(), s, project.effective_setting(Some(name), s)));
        }
    }
    out
}

/// What waits for the user, and what the project turned off since it was
/// last looked at (turning isolation up needs nobody's word: it is noted,
/// so that turning it back on asks).
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Items not allowed.
    pub waiting: Vec<Found>,
    /// Settings off now that `Allowed::off` lacks.
    pub newly_off: Vec<(String, String)>,
    /// Containers new to the floor whose settings wait for nothing: from
    /// now on they keep their own floor (`Allowed::seen`).
    pub newly_seen: Vec<String>,
}

impl Verdict {
    /// What of it `need` would apply.
    pub fn blocking(&self, need: &Need) -> Vec<&Found> {
        self.waiting.iter().filter(|f| need.concerns(f)).collect()
    }
}

/// True if `allowed` covers `item`.
pub fn covered(allowed: &Allowed, item: &Item) -> bool {
    match item {
        Item::Mount {
            source,
            readonly: true,
        } => {
            allowed.items.contains(item)
                || allowed.items.contains(&Item::Mount {
                    source: source.clone(),
                    readonly: false,
                })
        }
        Item::Setting { scope, key } => !allowed.off.contains(&(scope.clone(), key.clone())),
        other => allowed.items.contains(other),
    }
}

/// Compares what the project asks for (`found`, and its `settings`) with
/// what was allowed. A container's setting on waits when that container
/// had it off, or when the container is new to the floor (not in
/// `Allowed::seen`, nothing of it in `off`) and the defaults had it off:
/// a new entry (a teammate's, or a container's writing through its mount)
/// starts from the floor of new containers (review-trust finding 5).
pub fn judge(found: &[Found], settings: &[(String, Setting, bool)], allowed: &Allowed) -> Verdict {
    let mut v = Verdict::default();
    for f in found {
        if !covered(allowed, &f.item) {
            v.waiting.push(f.clone());
        }
    }
    let known = |scope: &str| {
        scope.is_empty()
            || allowed.seen.contains(scope)
            || allowed.off.iter().any(|(s, _)| s == scope)
    };
    let defaults_off = |key: &str| allowed.off.contains(&(String::new(), key.to_string()));
    let mut waits: BTreeSet<&str> = BTreeSet::new();
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    for (scope, s, on) in settings {
        let key = (scope.clone(), s.key().to_string());
        let floor = allowed.off.contains(&key) || (!known(scope) && defaults_off(s.key()));
        if !known(scope) {
            unknown.insert(scope);
        }
        match (on, floor) {
            (true, true) => {
                waits.insert(scope);
                let user = match scope.as_str() {
                    "" => Use::New,
                    c => Use::Container(c.to_string()),
                };
                v.waiting.push(Found {
                    item: Item::Setting {
                        scope: key.0,
                        key: key.1,
                    },
                    uses: BTreeSet::from([user]),
                    written: BTreeSet::new(),
                    refused: None,
                });
            }
            (false, false) if !allowed.off.contains(&key) => v.newly_off.push(key),
            _ => {}
        }
    }
    // Only a floor of the defaults makes a container's newness matter:
    // then the containers judged now without anything waiting are seen.
    let floor_of_new = allowed.off.iter().any(|(s, _)| s.is_empty())
        || v.newly_off.iter().any(|(s, _)| s.is_empty());
    if floor_of_new {
        v.newly_seen = unknown.difference(&waits).map(|s| s.to_string()).collect();
    }
    v
}

/// `allowed` after the user allows everything the project asks for now
/// (`found`, `settings`): the items replace the old ones (what the project
/// no longer asks for is forgotten, as direnv forgets an old `.envrc`),
/// the forced sources it still uses stay, and the settings off now are the
/// new floor.
pub fn allow_all(allowed: &mut Allowed, found: &[Found], settings: &[(String, Setting, bool)]) {
    allowed.items = found
        .iter()
        .filter(|f| !matches!(f.item, Item::Setting { .. }))
        .map(|f| f.item.clone())
        .collect();
    let sources: BTreeSet<&PathBuf> = found
        .iter()
        .filter_map(|f| match &f.item {
            Item::Mount { source, .. } => Some(source),
            _ => None,
        })
        .collect();
    allowed.forced.retain(|p| sources.contains(p));
    allowed.off = settings
        .iter()
        .filter(|(_, _, on)| !on)
        .map(|(scope, s, _)| (scope.clone(), s.key().to_string()))
        .collect();
    allowed.seen = settings
        .iter()
        .filter(|(scope, _, _)| !scope.is_empty())
        .map(|(scope, _, _)| scope.clone())
        .collect();
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::New => f.write_str("new containers"),
            Use::Container(c) => f.write_str(c),
        }
    }
}

impl Found {
    /// Lines for people, one per way the file writes it (a mount written
    /// twice, through a link and by path, is shown twice); values from the
    /// file are the caller's to escape.
    pub fn lines(&self) -> Vec<String> {
        let who = self
            .uses
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let one = match &self.item {
            Item::Remote { name } => format!(
                "remote {name}: every LXD call (containers, files, images) goes to that server instead of this machine's LXD"
            ),
            Item::LxdProject { name } => format!(
                "LXD project {name}: the containers live in it (ldm makes it on the server if it is missing) instead of the client's current project"
            ),
            Item::Mount { source, readonly } => {
                let how = if *readonly { "read-only" } else { "read-write" };
                let name = match self.uses.iter().next() {
                    Some(Use::Container(c)) => c.as_str(),
                    _ => "NAME",
                };
                return self
                    .written
                    .iter()
                    .map(|w| {
                        let refused = match &self.refused {
                            Some(why) => format!(
                                "; refused even when allowed: {why}, so ldm mounts it only when you type `ldm mount {name} {w} --force`"
                            ),
                            None => String::new(),
                        };
                        format!(
                            "mount {w} into {who}: {} {how}{refused}",
                            source.display()
                        )
                    })
                    .collect();
            }
            Item::Step { command } => format!("setup step for {who}: {command}"),
            Item::Script { path } => format!("setup script for {who}: {path}"),
            Item::Setting { key, .. } => format!(
                "security.{key} back on for {who}, which the project had turned off (it weakens the container's isolation)"
            ),
        };
        vec![one]
    }

    /// How a command's one-line note counts it: one and many.
    pub fn noun(&self) -> (&'static str, &'static str) {
        match self.item {
            Item::Remote { .. } => ("remote", "remotes"),
            Item::LxdProject { .. } => ("LXD project", "LXD projects"),
            Item::Mount { .. } => ("mount outside the project", "mounts outside the project"),
            Item::Step { .. } | Item::Script { .. } => ("setup step", "setup steps"),
            Item::Setting { .. } => ("setting turned back on", "settings turned back on"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Mount};

    fn project(root: &Path) -> Project {
        let mut p = Project::new("p", vec![]);
        p.remote = Some("team".into());
        p.defaults.setup = vec![Step::Command("make deps".into())];
        p.defaults.mounts = Some(vec![Mount::parse(".:/w").unwrap()]);
        let c = Container {
            image: "img".into(),
            mounts: vec![
                Mount::parse(".:/home/dev/p").unwrap(),
                Mount::parse(&format!("{}:/data:ro", root.join("data").display())).unwrap(),
            ],
            setup: Some(vec![Step::Script {
                script: "setup/dev.sh".into(),
            }]),
            ..Container::default()
        };
        p.containers.insert("dev".into(), c);
        p.containers.insert("web".into(), Container::default());
        p
    }

    #[test]
    fn items_are_what_reaches_outside_and_needs_say_whose() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let dir = root.join("p");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let p = project(&root);
        let found = scan(&p, &dir, &Homes::default());
        let items: Vec<&Item> = found.iter().map(|f| &f.item).collect();
        assert_eq!(
            items,
            [
                &Item::Remote {
                    name: "team".into()
                },
                &Item::Mount {
                    source: root.join("data"),
                    readonly: true
                },
                &Item::Step {
                    command: "make deps".into()
                },
                &Item::Script {
                    path: "setup/dev.sh".into()
                },
            ],
            "the project folder itself is not an item"
        );
        let step = &found[2];
        assert_eq!(
            step.uses,
            BTreeSet::from([Use::New, Use::Container("web".into())])
        );
        let allowed = Allowed::default();
        let v = judge(&found, &settings(&p), &allowed);
        assert_eq!(v.waiting.len(), 4);
        let up_web = Need {
            remote: true,
            who: Who::These(vec!["web".into()]),
            mounts: true,
            steps: true,
            settings: true,
        };
        let blocking: Vec<&Item> = v.blocking(&up_web).iter().map(|f| &f.item).collect();
        assert_eq!(blocking, [&found[0].item, &found[2].item]);
        assert!(v.blocking(&Need::nothing()).is_empty());
        // Allowing read-write covers read-only; everything allowed, nothing waits.
        let mut allowed = Allowed::default();
        allow_all(&mut allowed, &found, &settings(&p));
        assert!(judge(&found, &settings(&p), &allowed).waiting.is_empty());
        let mut rw = Allowed::default();
        rw.items.insert(Item::Mount {
            source: root.join("data"),
            readonly: false,
        });
        assert!(covered(&rw, &found[1].item));
    }

    /// Review-trust finding 5: a container entry new since the defaults
    /// turned a setting off starts from that floor; containers judged
    /// when the floor was noted keep their own.
    #[test]
    fn a_new_container_starts_from_the_floor_of_new_containers() {
        let mut p = Project::new("p", vec![]);
        let mut old = Container::default();
        old.security.nesting = Some(true);
        p.containers.insert("old".into(), old);
        p.defaults.security.nesting = Some(false);
        let v = judge(&[], &settings(&p), &Allowed::default());
        assert!(v.waiting.is_empty(), "first sight is the floor");
        assert_eq!(v.newly_seen, ["old"]);
        let mut floor = Allowed::default();
        floor.off.extend(v.newly_off);
        floor.seen.extend(v.newly_seen);
        let v = judge(&[], &settings(&p), &floor);
        assert!(v.waiting.is_empty() && v.newly_seen.is_empty(), "{v:?}");
        let mut web = Container::default();
        web.security.nesting = Some(true);
        p.containers.insert("web".into(), web);
        // A new entry inheriting the defaults is noted, not asked about.
        p.containers.insert("quiet".into(), Container::default());
        let v = judge(&[], &settings(&p), &floor);
        let items: Vec<&Item> = v.waiting.iter().map(|f| &f.item).collect();
        assert_eq!(
            items,
            [&Item::Setting {
                scope: "web".into(),
                key: "nesting".into()
            }]
        );
        assert_eq!(v.newly_seen, ["quiet"]);
        // Allowed by the user: web keeps nesting on from then on.
        allow_all(&mut floor, &[], &settings(&p));
        assert!(judge(&[], &settings(&p), &floor).waiting.is_empty());
    }

    #[test]
    fn a_setting_turned_back_on_waits_and_turning_it_off_needs_nobody() {
        let mut p = Project::new("p", vec![]);
        p.containers.insert("dev".into(), Container::default());
        let allowed = Allowed::default();
        let v = judge(&[], &settings(&p), &allowed);
        assert!(v.waiting.is_empty() && v.newly_off.is_empty());
        p.defaults.security.nesting = Some(false);
        let v = judge(&[], &settings(&p), &allowed);
        assert!(v.waiting.is_empty(), "isolation up needs no one's word");
        assert_eq!(
            v.newly_off,
            [
                (String::new(), "nesting".to_string()),
                ("dev".to_string(), "nesting".to_string())
            ]
        );
        let mut floor = Allowed::default();
        floor.off.extend(v.newly_off);
        p.containers.get_mut("dev").unwrap().security.nesting = Some(true);
        let v = judge(&[], &settings(&p), &floor);
        let items: Vec<&Item> = v.waiting.iter().map(|f| &f.item).collect();
        assert_eq!(
            items,
            [&Item::Setting {
                scope: "dev".into(),
                key: "nesting".into()
            }]
        );
    }
}
