//! Properties of the on-disk log format and of the store built on it:
//!
//! 1. `log::encode_commit` then `log::scan` is the identity on commit sequences;
//! 2. a real [`Store`] (commits, compactions, reopenings, two handles) agrees
//!    with an independent in-memory model written with plain maps;
//! 3. a log cut at every byte offset recovers exactly the records wholly
//!    before the cut, and the writer truncates to that boundary with a
//!    notice, keeping the cut bytes in a file beside the log;
//! 4. every single-bit flip is detected: refused in the middle of the log,
//!    refused or cut (bytes kept) in the last record, never accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ldm::model::{Container, Defaults, Mutation, Op, Owner, Pending, Project, Snapshot, User};
use ldm::store::log::{self, Tail};
use ldm::store::record::{self, HeaderError, HEADER_LEN};
use ldm::store::{Cut, Notice, Options, Paths, Store, StoreError};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Value pools. Names come with their validity so that the model does not
// reuse the crate's validation code: (value, valid).

const CONTAINERS: &[(&str, bool)] = &[
    ("c0", true),
    ("c1", true),
    ("c2", true),
    ("c3", true),
    ("1x", false),
    ("list", false),
    ("a--b", false),
    ("", false),
    ("é", false),
    ("c_0", false),
];

const SNAPSHOTS: &[(&str, bool)] = &[
    ("s0", true),
    ("s1", true),
    ("s2", true),
    ("s3", true),
    ("v1.0_rc-2", true),
    ("", false),
    (".hidden", false),
    ("a/b", false),
    ("a b", false),
    ("ü", false),
];

const IMAGES: &[(&str, bool)] = &[
    ("ubuntu:24.04", true),
    ("images:alpine/3.20", true),
    ("it's \"quoted\" $HOME", true),
    ("ünïcødé:1 💥", true),
    ("", false),
    ("   ", false),
    ("a\nb", false),
    ("x\u{7f}", false),
];

const USER_NAMES: &[(&str, bool)] = &[
    ("dev", true),
    ("_svc", true),
    ("a-b_1", true),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true), // 32
    ("Dev", false),
    ("1a", false),
    ("a;b", false),
    ("", false),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false), // 33
    ("ü", false),
];

const REMOTES: &[(&str, bool)] = &[
    ("local", true),
    ("my-remote.x_1", true),
    ("", false),
    ("a b", false),
    ("ü", false),
    ("a/b", false),
];

/// New project names (`project_renamed`): container names c0..c3 fit
/// beside any valid one.
const PROJECTS: &[(&str, bool)] = &[
    ("q", true),
    ("web-app_2", true),
    ("", false),
    ("a b", false),
    ("ü", false),
];

const MOUNT_HOSTS: &[(&str, bool)] = &[
    (".", true),
    ("src/app", true),
    ("/opt/cache", true),
    ("", false),
    ("a:b", false),
    ("../x", false),
    ("a\nb", false),
];

const MOUNT_PATHS: &[(&str, bool)] = &[
    ("/home/dev/p", true),
    ("/srv", true),
    ("/", false),
    ("relative", false),
    ("/a/../b", false),
    ("/x:y", false),
];

/// Strings that YAML and JSON writers are known to find awkward.
const AWKWARD: &[&str] = &[
    "pw",
    "it's \"q\" $HOME $(x) `y` \\ ${z}",
    "ünï💥",
    "a\nb",
    "\t lead",
    "trail ",
    "yes",
    "no",
    "null",
    "~",
    "0x1F",
    "1e3",
    "0o17",
    ".inf",
    "- x",
    "# c",
    ": x",
    "a: b",
    "\r\n",
    "\r",
    "\u{2028}",
    "\u{feff}bom",
    "\u{85}",
    "\u{7}bell",
    "\u{1b}[31m",
    "\u{fffe}",
    "'",
    "\"",
    "&a *b !c %d @e |f >g",
    "---",
    "...",
    "",
    "a\0b",
];

fn pick(pool: &'static [(&'static str, bool)]) -> BoxedStrategy<String> {
    // Valid entries eight times as likely as invalid ones.
    let valid: Vec<&str> = pool.iter().filter(|p| p.1).map(|p| p.0).collect();
    let invalid: Vec<&str> = pool.iter().filter(|p| !p.1).map(|p| p.0).collect();
    prop_oneof![
        8 => proptest::sample::select(valid),
        1 => proptest::sample::select(invalid),
    ]
    .prop_map(str::to_string)
    .boxed()
}

fn valid_in(pool: &[(&str, bool)], value: &str) -> bool {
    pool.iter().any(|(v, ok)| *ok && *v == value)
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(AWKWARD).prop_map(str::to_string),
        1 => any::<String>(),
    ]
    .boxed()
}

fn ports() -> BoxedStrategy<Vec<u16>> {
    vec(
        prop_oneof![
            1 => Just(0u16),
            4 => proptest::sample::select(vec![22u16, 3000, 8080, 65535]),
            2 => any::<u16>(),
        ],
        0..4,
    )
    .boxed()
}

fn pending() -> BoxedStrategy<Pending> {
    let op = prop_oneof![
        Just(Op::Create),
        text().prop_map(|source| Op::Clone { source }),
        (text(), any::<bool>()).prop_map(|(snapshot, restart)| Op::Reset { snapshot, restart }),
        text().prop_map(|snapshot| Op::SnapshotCreate { snapshot }),
        text().prop_map(|snapshot| Op::SnapshotDelete { snapshot }),
        Just(Op::Remove),
        (text(), any::<bool>()).prop_map(|(alias, restart)| Op::ImageCreate { alias, restart }),
    ]
    .boxed();
    (op, any::<u32>(), any::<u64>(), text())
        .prop_map(|(op, pid, slot, started_at)| Pending {
            setup: None,
            op,
            owner: Owner {
                pid,
                slot,
                ..Owner::default()
            },
            started_at,
        })
        .boxed()
}

fn target() -> BoxedStrategy<Option<String>> {
    proptest::option::weighted(0.7, pick(CONTAINERS)).boxed()
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    p: f64,
    s: BoxedStrategy<T>,
) -> BoxedStrategy<Option<T>> {
    proptest::option::weighted(p, s).boxed()
}

/// Mutations over containers c0..c3 and snapshots s0..s3, valid or not.
/// Every arm is boxed: unboxed, the strategy type nests deep enough to
/// overflow a debug-build test thread's stack.
fn mutation() -> BoxedStrategy<Mutation> {
    let added = (pick(CONTAINERS), pick(IMAGES), maybe(0.3, pending()))
        .prop_map(|(name, image, pending)| Mutation::ContainerAdded {
            name,
            image,
            pending,
        })
        .boxed();
    let removed = pick(CONTAINERS)
        .prop_map(|name| Mutation::ContainerRemoved { name })
        .boxed();
    let snap_added = (
        pick(CONTAINERS),
        pick(SNAPSHOTS),
        text(),
        text(),
        maybe(0.3, pending()),
    )
        .prop_map(
            |(container, name, description, created_at, pending)| Mutation::SnapshotAdded {
                container,
                name,
                description,
                created_at,
                pending,
            },
        )
        .boxed();
    let snap_removed = (pick(CONTAINERS), pick(SNAPSHOTS))
        .prop_map(|(container, name)| Mutation::SnapshotRemoved { container, name })
        .boxed();
    let ports_set = (target(), ports())
        .prop_map(|(container, ports)| Mutation::PortsSet { container, ports })
        .boxed();
    let name_set = (target(), maybe(0.8, pick(USER_NAMES)))
        .prop_map(|(container, name)| Mutation::UserNameSet { container, name })
        .boxed();
    let password_set = (target(), maybe(0.8, text()))
        .prop_map(|(container, password)| Mutation::UserPasswordSet {
            container,
            password,
        })
        .boxed();
    let started = (pick(CONTAINERS), maybe(0.4, pick(SNAPSHOTS)), pending())
        .prop_map(
            |(container, snapshot, pending)| Mutation::OperationStarted {
                container,
                snapshot,
                pending,
            },
        )
        .boxed();
    let finished = (pick(CONTAINERS), maybe(0.4, pick(SNAPSHOTS)))
        .prop_map(|(container, snapshot)| Mutation::OperationFinished {
            container,
            snapshot,
        })
        .boxed();
    let remote = maybe(0.7, pick(REMOTES))
        .prop_map(|remote| Mutation::RemoteSet { remote })
        .boxed();
    let mount_added = (
        pick(CONTAINERS),
        pick(MOUNT_HOSTS),
        pick(MOUNT_PATHS),
        any::<bool>(),
    )
        .prop_map(|(container, host, path, readonly)| Mutation::MountAdded {
            container,
            mount: format!("{host}:{path}{}", if readonly { ":ro" } else { "" }),
        })
        .boxed();
    let mount_removed = (pick(CONTAINERS), pick(MOUNT_PATHS))
        .prop_map(|(container, path)| Mutation::MountRemoved { container, path })
        .boxed();
    let renamed = pick(PROJECTS)
        .prop_map(|name| Mutation::ProjectRenamed { name })
        .boxed();
    prop_oneof![
        1 => renamed,
        4 => added,
        1 => removed,
        3 => snap_added,
        1 => snap_removed,
        2 => ports_set,
        2 => name_set,
        2 => password_set,
        2 => started,
        1 => finished,
        1 => remote,
        2 => mount_added,
        1 => mount_removed,
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// The independent model.

#[derive(Debug, Clone, Default, PartialEq)]
struct MUser {
    name: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct MSnap {
    description: String,
    created_at: String,
    pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq)]
struct MContainer {
    image: String,
    ports: Vec<u16>,
    /// (host, path, readonly), in the order added.
    mounts: Vec<(String, String, bool)>,
    user: MUser,
    pending: Option<Pending>,
    snapshots: BTreeMap<String, MSnap>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    /// `None`: the name the project was made with, "p".
    project: Option<String>,
    remote: Option<String>,
    ports: Vec<u16>,
    user: MUser,
    containers: BTreeMap<String, MContainer>,
}

fn ports_ok(ports: &[u16]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    ports.iter().all(|p| *p != 0 && seen.insert(*p))
}

fn password_ok(pw: &str) -> bool {
    !pw.is_empty() && !pw.contains('\0')
}

impl Model {
    /// The state after `m`, or `None` if `m` must be rejected.
    fn apply(&self, m: &Mutation) -> Option<Model> {
        let mut next = self.clone();
        match m {
            Mutation::ContainerAdded {
                name,
                image,
                pending,
            } => {
                if !valid_in(CONTAINERS, name)
                    || !valid_in(IMAGES, image)
                    || next.containers.contains_key(name)
                {
                    return None;
                }
                next.containers.insert(
                    name.clone(),
                    MContainer {
                        image: image.clone(),
                        ports: vec![],
                        mounts: vec![],
                        user: MUser::default(),
                        pending: pending.clone(),
                        snapshots: BTreeMap::new(),
                    },
                );
            }
            Mutation::ContainerRemoved { name } => {
                next.containers.remove(name)?;
            }
            Mutation::SnapshotAdded {
                container,
                name,
                description,
                created_at,
                pending,
            } => {
                let c = next.containers.get_mut(container)?;
                if !valid_in(SNAPSHOTS, name) || c.snapshots.contains_key(name) {
                    return None;
                }
                c.snapshots.insert(
                    name.clone(),
                    MSnap {
                        description: description.clone(),
                        created_at: created_at.clone(),
                        pending: pending.clone(),
                    },
                );
            }
            Mutation::SnapshotRemoved { container, name } => {
                next.containers.get_mut(container)?.snapshots.remove(name)?;
            }
            Mutation::PortsSet { container, ports } => {
                if !ports_ok(ports) {
                    return None;
                }
                *next.ports_of(container)? = ports.clone();
            }
            Mutation::UserNameSet { container, name } => {
                if name.as_deref().is_some_and(|n| !valid_in(USER_NAMES, n)) {
                    return None;
                }
                next.user_of(container)?.name = name.clone();
            }
            Mutation::UserPasswordSet {
                container,
                password,
            } => {
                if password.as_deref().is_some_and(|p| !password_ok(p)) {
                    return None;
                }
                next.user_of(container)?.password = password.clone();
            }
            Mutation::OperationStarted {
                container,
                snapshot,
                pending,
            } => *next.pending_of(container, snapshot)? = Some(pending.clone()),
            Mutation::OperationFinished {
                container,
                snapshot,
            } => *next.pending_of(container, snapshot)? = None,
            Mutation::RemoteSet { remote } => {
                if remote.as_deref().is_some_and(|r| !valid_in(REMOTES, r)) {
                    return None;
                }
                next.remote = remote.clone();
            }
            Mutation::MountAdded { container, mount } => {
                // The generator joins host, path and ":ro" (see `mutation`).
                let (rest, readonly) = match mount.strip_suffix(":ro") {
                    Some(r) => (r, true),
                    None => (mount.as_str(), false),
                };
                let (host, path) = MOUNT_HOSTS
                    .iter()
                    .find_map(|(h, _)| rest.strip_prefix(&format!("{h}:")).map(|p| (*h, p)))?;
                if !valid_in(MOUNT_HOSTS, host) || !valid_in(MOUNT_PATHS, path) {
                    return None;
                }
                let c = next.containers.get_mut(container)?;
                if c.mounts.iter().any(|(_, p, _)| p == path) {
                    return None;
                }
                c.mounts
                    .push((host.to_string(), path.to_string(), readonly));
            }
            Mutation::MountRemoved { container, path } => {
                let c = next.containers.get_mut(container)?;
                let before = c.mounts.len();
                c.mounts.retain(|(_, p, _)| p != path);
                if c.mounts.len() == before {
                    return None;
                }
            }
            Mutation::ProjectRenamed { name } => {
                if !valid_in(PROJECTS, name) {
                    return None;
                }
                next.project = Some(name.clone());
            }
        }
        Some(next)
    }

    /// All of `ms` or nothing, as one commit.
    fn apply_all(&self, ms: &[Mutation]) -> Option<Model> {
        ms.iter().try_fold(self.clone(), |m, x| m.apply(x))
    }

    fn ports_of(&mut self, container: &Option<String>) -> Option<&mut Vec<u16>> {
        match container {
            None => Some(&mut self.ports),
            Some(c) => self.containers.get_mut(c).map(|c| &mut c.ports),
        }
    }

    fn user_of(&mut self, container: &Option<String>) -> Option<&mut MUser> {
        match container {
            None => Some(&mut self.user),
            Some(c) => self.containers.get_mut(c).map(|c| &mut c.user),
        }
    }

    fn pending_of(
        &mut self,
        container: &str,
        snapshot: &Option<String>,
    ) -> Option<&mut Option<Pending>> {
        let c = self.containers.get_mut(container)?;
        match snapshot {
            None => Some(&mut c.pending),
            Some(s) => c.snapshots.get_mut(s).map(|s| &mut s.pending),
        }
    }

    fn to_project(&self) -> Project {
        let user = |u: &MUser| {
            (u.name.is_some() || u.password.is_some()).then(|| User {
                name: u.name.clone(),
                password: u.password.clone(),
            })
        };
        Project {
            project: self.project.clone().unwrap_or_else(|| "p".into()),
            remote: self.remote.clone(),
            lxd_project: None,
            defaults: Defaults {
                ports: self.ports.clone(),
                user: user(&self.user),
                ..Defaults::default()
            },
            containers: self
                .containers
                .iter()
                .map(|(name, c)| {
                    let container = Container {
                        image: c.image.clone(),
                        ports: c.ports.clone(),
                        mounts: c
                            .mounts
                            .iter()
                            .map(|(host, path, readonly)| ldm::model::Mount {
                                host: host.clone(),
                                path: path.clone(),
                                readonly: *readonly,
                            })
                            .collect(),
                        setup: None,
                        security: Default::default(),
                        user: user(&c.user),
                        pending: c.pending.clone(),
                        snapshots: c
                            .snapshots
                            .iter()
                            .map(|(n, s)| {
                                let snap = Snapshot {
                                    description: s.description.clone(),
                                    created_at: s.created_at.clone(),
                                    pending: s.pending.clone(),
                                };
                                (n.clone(), snap)
                            })
                            .collect(),
                    };
                    (name.clone(), container)
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.

type Notices = Arc<Mutex<Vec<Notice>>>;

/// Options with no fold after commits: these tests want records in the log.
fn options(auto_compact_min: u64) -> (Options, Notices) {
    options_folding(auto_compact_min, 0)
}

fn options_folding(auto_compact_min: u64, fold_max: u64) -> (Options, Notices) {
    let notices: Notices = Arc::default();
    let sink = notices.clone();
    let opts = Options {
        auto_compact_min,
        fold_max,
        notify: Arc::new(move |n: &Notice| sink.lock().unwrap().push(n.clone())),
        ..Default::default()
    };
    (opts, notices)
}

fn taken(notices: &Notices) -> Vec<Notice> {
    std::mem::take(&mut *notices.lock().unwrap())
}

fn commit(store: &mut Store, ms: Vec<Mutation>) -> Result<(), StoreError> {
    store.commit(|_| Ok::<_, StoreError>((ms, ())))
}

fn read(dir: &Path) -> Result<Project, StoreError> {
    Store::open(Paths::in_dir(dir), options(u64::MAX).0).read()
}

/// A project whose log holds one record per mutation of `ms` (no
/// compaction); returns the YAML, the log, the state after each prefix of
/// records (`states[k]` = after `k` records) and each record's end offset.
fn build(dir: &Path, ms: &[Mutation]) -> (Vec<u8>, Vec<u8>, Vec<Project>, Vec<usize>) {
    std::fs::create_dir_all(dir).unwrap();
    let (opts, _) = options(u64::MAX);
    let mut store = Store::create(dir, &Project::new("p", vec![]), opts).unwrap();
    let paths = Paths::in_dir(dir);
    let mut states = vec![store.read().unwrap()];
    let mut ends = vec![HEADER_LEN];
    for m in ms {
        commit(&mut store, vec![m.clone()]).unwrap();
        states.push(store.read().unwrap());
        ends.push(std::fs::metadata(&paths.log).unwrap().len() as usize);
    }
    (
        std::fs::read(&paths.yaml).unwrap(),
        std::fs::read(&paths.log).unwrap(),
        states,
        ends,
    )
}

/// Makes `dir` a project folder holding `yaml` and `log`. The lock file and
/// the load cache stay from one call to the next: `yaml` is always the same
/// bytes, so the cache stays valid and saves a YAML parse per call.
fn lay_out(dir: &Path, yaml: &[u8], log: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let paths = Paths::in_dir(dir);
    if std::fs::read(&paths.yaml).ok().as_deref() != Some(yaml) {
        std::fs::write(paths.yaml, yaml).unwrap();
    }
    std::fs::write(paths.log, log).unwrap();
}

/// Sixty valid mutations of every kind, with awkward strings.
fn sixty() -> Vec<Mutation> {
    let pending = |i: usize| Pending {
        op: Op::Clone {
            source: format!("c{}/s{i}", i % 4),
        },
        owner: Owner {
            pid: 1000 + i as u32,
            slot: i as u64,
            ..Owner::default()
        },
        started_at: "2026-01-15T10:30:00Z".into(),
        setup: None,
    };
    let mut ms = Vec::new();
    for i in 0..4 {
        ms.push(Mutation::ContainerAdded {
            name: format!("c{i}"),
            image: "ubuntu:24.04".into(),
            pending: Some(pending(i)),
        });
    }
    for i in 0..56 {
        let c = format!("c{}", i % 4);
        ms.push(match i % 7 {
            0 => Mutation::SnapshotAdded {
                container: c,
                name: format!("s{i}"),
                description: AWKWARD[i % (AWKWARD.len() - 1)].into(),
                created_at: "2026-01-15T10:30:00Z".into(),
                pending: None,
            },
            1 => Mutation::PortsSet {
                container: Some(c),
                ports: vec![3000 + i as u16, 22],
            },
            2 => Mutation::UserPasswordSet {
                container: None,
                password: Some(format!("pw-{i} it's \"q\" $X ünï💥\n")),
            },
            3 => Mutation::OperationFinished {
                container: c,
                snapshot: None,
            },
            4 => Mutation::UserNameSet {
                container: Some(c),
                name: Some(format!("u{i}")),
            },
            5 => Mutation::OperationStarted {
                container: c,
                snapshot: None,
                pending: pending(i),
            },
            _ => Mutation::RemoteSet {
                remote: Some(format!("r{i}")),
            },
        });
    }
    ms
}

// ---------------------------------------------------------------------------
// 1. encode/scan identity.

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_scan_is_identity(
        commits in vec(vec(mutation(), 1..=3), 0..30),
        first in 1u64..u64::MAX / 2,
        generation in any::<u64>(),
        chained in any::<bool>(),
    ) {
        let id = [generation as u8; record::LOG_ID_LEN];
        let mut file = record::encode_header(generation, &id, first - 1).to_vec();
        prop_assert_eq!(
            record::decode_header(&file),
            Ok(record::Header { version: record::VERSION, generation, id: Some(id), prev_seq: Some(first - 1) })
        );
        let mut starts = Vec::new();
        for (i, ms) in commits.iter().enumerate() {
            starts.push(file.len());
            file.extend(log::encode_commit(ms, first + i as u64).unwrap());
        }
        starts.push(file.len());
        let prev = chained.then_some(first - 1);
        let scan = log::scan(&file[HEADER_LEN..], log::FIRST_RECORD, prev);
        prop_assert_eq!(&scan.tail, &Tail::Clean);
        prop_assert_eq!(scan.end, file.len() as u64);
        prop_assert_eq!(scan.entries.len(), commits.len());
        for (i, (e, ms)) in scan.entries.iter().zip(&commits).enumerate() {
            prop_assert_eq!(e.seq, first + i as u64);
            prop_assert_eq!(e.offset, starts[i] as u64);
            prop_assert_eq!(e.len, (starts[i + 1] - starts[i]) as u64);
            prop_assert_eq!(&e.mutations, ms);
        }
        // Record by record, too: each decodes and re-encodes to its own bytes.
        for i in 0..commits.len() {
            let bytes = &file[starts[i]..starts[i + 1]];
            match record::decode_record(&file[starts[i]..]) {
                record::Decoded::Record { record, len } => {
                    prop_assert_eq!(len, bytes.len());
                    prop_assert_eq!(record.seq, first + i as u64);
                    let mut again = Vec::new();
                    record::encode_record(record.seq, record.payload, &mut again).unwrap();
                    prop_assert_eq!(&again[..], bytes);
                }
                other => prop_assert!(false, "record {} does not decode: {:?}", i, other),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. The store agrees with the model.

#[derive(Debug, Clone)]
enum Action {
    /// Commit these mutations as one command, through handle 0 or 1.
    Commit(usize, Vec<Mutation>),
    /// Compact through a handle.
    Compact(usize),
    /// Drop a handle and open a fresh one (full recovery on next use).
    Reopen(usize),
    /// Check a lock-free read against the model.
    Read,
}

fn action() -> BoxedStrategy<Action> {
    let handle = prop_oneof![4 => Just(0usize), 1 => Just(1usize)];
    let muts = prop_oneof![
        5 => mutation().prop_map(|m| vec![m]),
        1 => vec(mutation(), 2..=3),
    ];
    prop_oneof![
        20 => (handle.clone(), muts).prop_map(|(h, ms)| Action::Commit(h, ms)),
        1 => handle.clone().prop_map(Action::Compact),
        1 => handle.prop_map(Action::Reopen),
        2 => Just(Action::Read),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_replay_matches_model(
        actions in vec(action(), 1..64),
        compact_min in prop_oneof![1 => Just(u64::MAX), 2 => 0u64..3000],
        fold_max in prop_oneof![1 => Just(0u64), 1 => Just(u64::MAX), 1 => 0u64..2000],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (opts, notices) = options_folding(compact_min, fold_max);
        let paths = Paths::in_dir(dir);
        let mut stores = [
            Store::create(dir, &Project::new("p", vec![]), opts.clone()).unwrap(),
            Store::open(paths.clone(), opts.clone()),
        ];
        let mut model = Model::default();
        for (step, a) in actions.iter().enumerate() {
            match a {
                Action::Commit(h, ms) => {
                    let mut seen = None;
                    let r = stores[*h].commit(|p| {
                        seen = Some(p.clone());
                        Ok::<_, StoreError>((ms.clone(), ()))
                    });
                    prop_assert_eq!(seen, Some(model.to_project()), "step {}: view before commit", step);
                    match (r, model.apply_all(ms)) {
                        (Ok(()), Some(next)) => model = next,
                        (Err(StoreError::Rejected(_)), None) => {}
                        (r, expect) => prop_assert!(
                            false,
                            "step {}: store said {:?}, model accepts: {}",
                            step, r, expect.is_some()
                        ),
                    }
                }
                Action::Compact(h) => {
                    stores[*h].compact().unwrap();
                }
                Action::Reopen(h) => {
                    stores[*h] = Store::open(paths.clone(), opts.clone());
                }
                Action::Read => {
                    prop_assert_eq!(stores[0].read().unwrap(), model.to_project(), "step {}", step);
                }
            }
            prop_assert_eq!(taken(&notices), vec![], "step {}: unexpected notice", step);
        }
        let expected = model.to_project();
        prop_assert_eq!(&read(dir).unwrap(), &expected);
        let mut fresh = Store::open(paths.clone(), opts.clone());
        prop_assert_eq!(&fresh.recover().unwrap(), &expected);
        fresh.compact().unwrap();
        prop_assert_eq!(&read(dir).unwrap(), &expected);
        // Without the load cache, from the YAML alone.
        let _ = std::fs::remove_file(dir.join(".containers.cache"));
        prop_assert_eq!(&read(dir).unwrap(), &expected);
        prop_assert_eq!(taken(&notices), vec![]);
    }
}

// ---------------------------------------------------------------------------
// 3. Truncation at every byte offset.

#[test]
fn truncation_at_every_offset_recovers_the_complete_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let ms = sixty();
    let (yaml, full, states, ends) = build(&tmp.path().join("orig"), &ms);
    assert!(ends.len() > 50);
    let dir = tmp.path().join("cut");
    std::fs::create_dir_all(&dir).unwrap();
    let paths = Paths::in_dir(&dir);
    for cut in 0..=full.len() {
        lay_out(&dir, &yaml, &full[..cut]);
        if cut < HEADER_LEN {
            let short = |r: Result<Project, StoreError>| matches!(r, Err(StoreError::BadHeader { error: HeaderError::Short { len }, .. }) if len == cut);
            assert!(short(read(&dir)), "cut {cut}: read");
            let (opts, notices) = options(u64::MAX);
            assert!(
                short(Store::open(paths.clone(), opts).recover()),
                "cut {cut}"
            );
            assert_eq!(std::fs::read(&paths.log).unwrap(), &full[..cut]);
            assert_eq!(taken(&notices), vec![], "cut {cut}");
            continue;
        }
        // Records wholly before the cut.
        let k = ends.iter().rposition(|e| *e <= cut).unwrap();
        let boundary = ends[k];
        assert_eq!(read(&dir).unwrap(), states[k], "cut {cut}: read");
        assert_eq!(
            std::fs::read(&paths.log).unwrap(),
            &full[..cut],
            "cut {cut}: reader wrote"
        );

        let (opts, notices) = options(u64::MAX);
        let mut store = Store::open(paths.clone(), opts);
        if cut % 2 == 0 {
            assert_eq!(store.recover().unwrap(), states[k], "cut {cut}: recover");
        } else {
            // An empty commit recovers too: the lock is taken and the view synced first.
            let mut seen = None;
            store
                .commit(|p| {
                    seen = Some(p.clone());
                    Ok::<_, StoreError>((vec![], ()))
                })
                .unwrap();
            assert_eq!(seen.as_ref(), Some(&states[k]), "cut {cut}: empty commit");
        }
        let expected_notices = if cut == boundary {
            vec![]
        } else {
            vec![(boundary as u64, (cut - boundary) as u64)]
        };
        let got: Vec<(u64, u64)> = taken(&notices)
            .into_iter()
            .map(|n| match n {
                Notice::TailCut {
                    offset,
                    dropped,
                    why,
                    saved,
                    ..
                } => {
                    // Nothing is destroyed: the cut bytes are beside the log.
                    assert_eq!(
                        std::fs::read(&saved).unwrap(),
                        &full[offset as usize..cut],
                        "cut {cut}: saved bytes"
                    );
                    assert_eq!(why, Cut::Unfinished, "cut {cut}: a cut-short record");
                    std::fs::remove_file(saved).unwrap();
                    (offset, dropped)
                }
                other => panic!("cut {cut}: unexpected notice {other:?}"),
            })
            .collect();
        assert_eq!(got, expected_notices, "cut {cut}: notice");
        assert_eq!(
            std::fs::read(&paths.log).unwrap(),
            &full[..boundary],
            "cut {cut}: not cut to the boundary"
        );

        // The next record follows the boundary directly with the next seq.
        let after = Mutation::RemoteSet {
            remote: Some("after-cut".into()),
        };
        commit(&mut store, vec![after.clone()]).unwrap();
        let mut expected = states[k].clone();
        expected.remote = Some("after-cut".into());
        assert_eq!(read(&dir).unwrap(), expected, "cut {cut}: after commit");
        let bytes = std::fs::read(&paths.log).unwrap();
        let scan = log::scan(&bytes[HEADER_LEN..], log::FIRST_RECORD, Some(0));
        assert_eq!(scan.tail, Tail::Clean, "cut {cut}");
        assert_eq!(scan.entries.len(), k + 1, "cut {cut}");
        assert_eq!(scan.entries[k].offset, boundary as u64, "cut {cut}");
        assert_eq!(scan.entries[k].mutations, vec![after], "cut {cut}");
        assert_eq!(taken(&notices), vec![], "cut {cut}");
    }
}

// ---------------------------------------------------------------------------
// 4. Every single-bit flip is detected.

#[test]
fn every_single_bit_flip_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let ms = sixty()[..5].to_vec();
    let (yaml, full, states, ends) = build(&tmp.path().join("orig"), &ms);
    let last_start = ends[ends.len() - 2];
    let dir = tmp.path().join("flip");
    std::fs::create_dir_all(&dir).unwrap();
    let paths = Paths::in_dir(&dir);
    let mut torn = 0;
    for bit in 0..full.len() * 8 {
        let byte = bit / 8;
        let mut damaged = full.clone();
        damaged[byte] ^= 1 << (bit % 8);
        lay_out(&dir, &yaml, &damaged);
        let unchanged = |what: &str| {
            assert_eq!(
                std::fs::read(&paths.log).unwrap(),
                damaged,
                "bit {bit}: {what} changed the log"
            );
            assert_eq!(
                std::fs::read(&paths.yaml).unwrap(),
                yaml,
                "bit {bit}: {what} changed the yaml"
            );
        };
        let (opts, notices) = options(u64::MAX);
        let mut store = Store::open(paths.clone(), opts);
        let write = Mutation::RemoteSet {
            remote: Some("x".into()),
        };

        if byte < HEADER_LEN {
            assert!(
                matches!(read(&dir), Err(StoreError::BadHeader { .. })),
                "bit {bit}: read"
            );
            assert!(
                matches!(store.recover(), Err(StoreError::BadHeader { .. })),
                "bit {bit}"
            );
            assert!(
                matches!(
                    commit(&mut store, vec![write]),
                    Err(StoreError::BadHeader { .. })
                ),
                "bit {bit}"
            );
            unchanged("a refused writer");
            assert_eq!(taken(&notices), vec![], "bit {bit}");
            continue;
        }
        // The record holding the flipped byte.
        let i = ends.iter().rposition(|e| *e <= byte).unwrap();
        let start = ends[i] as u64;
        let corrupt_here = |r: &Result<Project, StoreError>| matches!(r, Err(StoreError::Corrupt { offset, .. }) if *offset == start);
        let r = read(&dir);
        if ends[i] < last_start {
            assert!(corrupt_here(&r), "bit {bit} (record {i}): read gave {r:?}");
            let r = store.recover();
            assert!(
                corrupt_here(&r),
                "bit {bit} (record {i}): recover gave {r:?}"
            );
            let c = commit(&mut store, vec![write]);
            assert!(
                matches!(c, Err(StoreError::Corrupt { .. })),
                "bit {bit}: commit gave {c:?}"
            );
            unchanged("a refused writer");
            assert_eq!(taken(&notices), vec![], "bit {bit}");
            continue;
        }
        // The last record: refused, or cut as a torn tail with a notice.
        match r {
            Ok(p) => {
                assert_eq!(p, states[ms.len() - 1], "bit {bit}: read a wrong state");
                assert_eq!(store.recover().unwrap(), states[ms.len() - 1], "bit {bit}");
                let dropped = (full.len() - last_start) as u64;
                match &taken(&notices)[..] {
                    [Notice::TailCut {
                        offset,
                        dropped: d,
                        saved,
                        ..
                    }] if *offset == last_start as u64 && *d == dropped => {
                        // The flipped record is kept, byte for byte.
                        assert_eq!(
                            std::fs::read(saved).unwrap(),
                            &damaged[last_start..],
                            "bit {bit}"
                        );
                        std::fs::remove_file(saved).unwrap();
                    }
                    other => panic!("bit {bit}: notices {other:?}"),
                }
                assert_eq!(
                    std::fs::read(&paths.log).unwrap(),
                    &full[..last_start],
                    "bit {bit}"
                );
                torn += 1;
            }
            Err(StoreError::Corrupt { offset, .. }) if offset == start => {
                assert!(store.recover().is_err(), "bit {bit}");
                unchanged("a refused writer");
            }
            Err(e) => panic!("bit {bit}: read gave {e:?}"),
        }
    }
    // The design says a flipped last record is cut, its bytes kept.
    assert_eq!(torn, (full.len() - last_start) * 8);
}

// ---------------------------------------------------------------------------
// 5. A log restored from an older backup.

/// `cp backup containers.log` with fewer records than containers.yaml
/// already holds: nothing the YAML holds is lost, nothing is refused, and
/// the next commit continues the restored log's sequence.
#[test]
fn an_older_log_put_back_loses_nothing_the_yaml_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (opts, _) = options_folding(u64::MAX, u64::MAX);
    let mut store = Store::create(dir, &Project::new("p", vec![]), opts.clone()).unwrap();
    commit(
        &mut store,
        vec![Mutation::PortsSet {
            container: None,
            ports: vec![1],
        }],
    )
    .unwrap();
    let old_log = std::fs::read(dir.join("containers.log")).unwrap();
    commit(
        &mut store,
        vec![Mutation::RemoteSet {
            remote: Some("r".into()),
        }],
    )
    .unwrap();
    // The command is done: its commits are folded into containers.yaml.
    store.finish();
    std::fs::write(dir.join("containers.log"), old_log).unwrap();
    let state = read(dir).unwrap();
    assert_eq!(
        (state.defaults.ports.clone(), state.remote.clone()),
        (vec![1], Some("r".into()))
    );
    let mut writer = Store::open(Paths::in_dir(dir), opts);
    commit(
        &mut writer,
        vec![Mutation::PortsSet {
            container: None,
            ports: vec![2],
        }],
    )
    .unwrap();
    let state = read(dir).unwrap();
    assert_eq!(
        (state.defaults.ports, state.remote),
        (vec![2], Some("r".into()))
    );
}
