//! Issue 11's property: random interleavings of ldm commits (folding after
//! the commit or not, as small and big projects do), hand edits that keep
//! the mark, lxc-dev-manager writes (no mark), commits killed before their
//! record was complete (a torn record), reads, reopenings and compactions,
//! against a model in which the later write of each field wins.
//!
//! Issue 25 adds two other writers: an older fold of ldm's own put back
//! (`git checkout -- containers.yaml`: item 5, what it takes back is
//! reported field by field), and a person's save that lands while ldm
//! folds (item 4: put back, a copy kept, never overwritten).
//!
//! After every step the store's state is the model's: no change lost
//! silently. Whenever another writer overrode a value of ldm's that was not
//! in the file yet, the conflict is reported (the field and the value
//! dropped) by the next load, and once a writer folds it, the value is kept
//! in `containers.log.dropped-*`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ldm::model::{Container, Mutation, Project, User};
use ldm::store::snapshot::{self, Written};
use ldm::store::{Notice, Options, Store, StoreError};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Ports,
    UserName,
    C0Ports,
    C1User,
}

const FIELDS: [Field; 4] = [Field::Ports, Field::UserName, Field::C0Ports, Field::C1User];

impl Field {
    fn path(self) -> &'static str {
        match self {
            Field::Ports => "defaults.ports",
            Field::UserName => "defaults.user.name",
            Field::C0Ports => "containers.c0.ports",
            Field::C1User => "containers.c1.user.name",
        }
    }

    fn get(self, p: &Project) -> serde_json::Value {
        let name = |u: &Option<User>| serde_json::json!(u.as_ref().and_then(|u| u.name.clone()));
        match self {
            Field::Ports => serde_json::json!(p.defaults.ports),
            Field::UserName => name(&p.defaults.user),
            Field::C0Ports => serde_json::json!(p.containers["c0"].ports),
            Field::C1User => name(&p.containers["c1"].user),
        }
    }

    fn set(self, p: &mut Project, v: u16) {
        let user = |u: &mut Option<User>| {
            u.get_or_insert_default().name = Some(format!("u{v}"));
        };
        match self {
            Field::Ports => p.defaults.ports = vec![v],
            Field::UserName => user(&mut p.defaults.user),
            Field::C0Ports => p.containers.get_mut("c0").unwrap().ports = vec![v],
            Field::C1User => user(&mut p.containers.get_mut("c1").unwrap().user),
        }
    }

    /// Copies this field's value from `from` into `to` (a user block
    /// whole: the model sets no password).
    fn copy(self, from: &Project, to: &mut Project) {
        match self {
            Field::Ports => to.defaults.ports = from.defaults.ports.clone(),
            Field::UserName => to.defaults.user = from.defaults.user.clone(),
            Field::C0Ports => {
                to.containers.get_mut("c0").unwrap().ports = from.containers["c0"].ports.clone()
            }
            Field::C1User => {
                to.containers.get_mut("c1").unwrap().user = from.containers["c1"].user.clone()
            }
        }
    }

    fn mutation(self, v: u16) -> Mutation {
        match self {
            Field::Ports => Mutation::PortsSet {
                container: None,
                ports: vec![v],
            },
            Field::UserName => Mutation::UserNameSet {
                container: None,
                name: Some(format!("u{v}")),
            },
            Field::C0Ports => Mutation::PortsSet {
                container: Some("c0".into()),
                ports: vec![v],
            },
            Field::C1User => Mutation::UserNameSet {
                container: Some("c1".into()),
                name: Some(format!("u{v}")),
            },
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// An ldm command setting a field; `fold`: the YAML is folded after it.
    Ldm(Field, u16, bool),
    /// A person edits the field in the file, keeping the mark.
    HandEdit(Field, u16),
    /// lxc-dev-manager rewrites the file with the field changed, no mark.
    GoTool(Field, u16),
    /// An ldm command killed while writing its record: a torn tail.
    Killed(Field, u16, usize),
    Read,
    Reopen,
    Compact,
    /// An older fold of ldm's own put back (`git checkout`): the `n`th
    /// (modulo how many) of the folds seen so far.
    Restore(usize),
    /// An ldm command setting the first field whose fold is overtaken by a
    /// person's save of the second (mark kept) between its load and its swap.
    EditDuringFold(Field, u16, Field, u16),
}

fn action() -> impl Strategy<Value = Action> {
    let field = (0..4usize).prop_map(|i| FIELDS[i]);
    let value = 1u16..60000;
    prop_oneof![
        6 => (field.clone(), value.clone(), any::<bool>()).prop_map(|(f, v, fold)| Action::Ldm(f, v, fold)),
        2 => (field.clone(), value.clone()).prop_map(|(f, v)| Action::HandEdit(f, v)),
        2 => (field.clone(), value.clone()).prop_map(|(f, v)| Action::GoTool(f, v)),
        1 => (field.clone(), value.clone(), 1usize..40).prop_map(|(f, v, cut)| Action::Killed(f, v, cut)),
        2 => Just(Action::Read),
        1 => Just(Action::Reopen),
        1 => Just(Action::Compact),
        1 => (0..1000usize).prop_map(Action::Restore),
        1 => (field.clone(), value.clone(), field.clone(), value.clone())
            .prop_map(|(f, v, g, w)| Action::EditDuringFold(f, v, g, w)),
    ]
}

fn initial() -> Project {
    let mut p = Project::new("p", vec![1]);
    for c in ["c0", "c1"] {
        p.containers.insert(
            c.into(),
            Container {
                image: "img".into(),
                ..Default::default()
            },
        );
    }
    p
}

type Notices = Arc<Mutex<Vec<Notice>>>;

fn opts(notices: &Notices, fold: bool) -> Options {
    let sink = notices.clone();
    Options {
        fold_max: if fold { u64::MAX } else { 0 },
        auto_compact_min: 2048,
        notify: Arc::new(move |n: &Notice| sink.lock().unwrap().push(n.clone())),
        ..Options::default()
    }
}

/// What another writer does: read the file, change one field, write it all
/// back by temp and rename; `keep_mark` (a person) keeps the mark line and
/// leaves a comment, else (lxc-dev-manager) the mark is dropped. Returns the
/// file's value of the field before.
fn other_writer(dir: &Path, field: Field, v: u16, keep_mark: bool) -> Option<serde_json::Value> {
    let path = dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = snapshot::decode(&text).unwrap();
    let before = field.get(&doc.project);
    let mut p = doc.project;
    field.set(&mut p, v);
    if field.get(&p) == before {
        return None;
    }
    let mark = doc.mark.unwrap_or(snapshot::Mark {
        generation: 0,
        seq: 0,
        log: None,
    });
    let encoded = snapshot::encode(&p, mark).unwrap();
    let out: String = if keep_mark {
        encoded.replacen("\nproject:", "\n# edited by hand\nproject:", 1)
    } else {
        // As lxc-dev-manager writes: no mark, its layout.
        common::go_layout(
            &encoded
                .lines()
                .filter(|l| !l.starts_with("ldm:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
    };
    std::fs::write(dir.join(".edit.tmp"), out).unwrap();
    std::fs::rename(dir.join(".edit.tmp"), &path).unwrap();
    let doc = snapshot::decode(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        doc.written,
        if keep_mark {
            Written::Edited
        } else {
            Written::NoMark
        }
    );
    Some(before)
}

/// The real file system, but `hook` runs just before the first swap of
/// `containers.yaml` (a fold's step 3): another program's save landing
/// between ldm's load and its fold.
struct SaveDuringFold {
    os: ldm::store::OsFs,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ldm::store::Fs for SaveDuringFold {
    fn read(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        self.os.read(p)
    }
    fn read_from(&self, p: &Path, o: u64) -> std::io::Result<Vec<u8>> {
        self.os.read_from(p, o)
    }
    fn stat(&self, p: &Path) -> std::io::Result<ldm::store::fs::FileId> {
        self.os.stat(p)
    }
    fn write_new(&self, p: &Path, b: &[u8]) -> std::io::Result<()> {
        self.os.write_new(p, b)
    }
    fn append(&self, p: &Path, b: &[u8]) -> std::io::Result<()> {
        self.os.append(p, b)
    }
    fn sync(&self, p: &Path) -> std::io::Result<()> {
        self.os.sync(p)
    }
    fn set_len(&self, p: &Path, l: u64) -> std::io::Result<()> {
        self.os.set_len(p, l)
    }
    fn rename(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        self.os.rename(a, b)
    }
    fn sync_dir(&self, d: &Path) -> std::io::Result<()> {
        self.os.sync_dir(d)
    }
    fn remove(&self, p: &Path) -> std::io::Result<()> {
        self.os.remove(p)
    }
    fn list(&self, d: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        self.os.list(d)
    }
    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.os.exchange(a, b)
    }
}

/// What restored older folds took back, as reported: (field, kept, dropped).
fn reverts_reported(notices: &Notices) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            Notice::Reverted { fields, .. } => Some(fields.clone()),
            _ => None,
        })
        .flatten()
        .map(|c| (c.field, c.kept, c.dropped))
        .collect()
}

/// The conflicts the notices reported: (field, dropped value).
fn reported(notices: &Notices) -> Vec<(String, serde_json::Value, bool)> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            Notice::Merged {
                conflicts, saved, ..
            } => Some((conflicts.clone(), saved.is_some())),
            _ => None,
        })
        .flat_map(|(cs, saved)| cs.into_iter().map(move |c| (c.field, c.dropped, saved)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_later_write_of_each_field_wins_and_every_conflict_is_reported(
        actions in proptest::collection::vec(action(), 1..40),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let paths = common::paths(dir);
        let notices: Notices = Arc::default();
        let mut model = initial();
        let mut store = Store::create_in(common::paths(dir), &model, opts(&notices, true)).unwrap();
        // ldm's acknowledged values not yet in the file, by field.
        let mut unfolded: BTreeMap<Field, serde_json::Value> = BTreeMap::new();
        // Conflicts a load must report: (field, ldm's dropped value).
        let mut owed: Vec<(String, serde_json::Value)> = Vec::new();
        // What a restored fold takes back: (field, the file's, ldm's).
        let mut reverts: Vec<(String, serde_json::Value, serde_json::Value)> = Vec::new();
        // Every fold of ldm's seen in the file: (text, its state); the last
        // is what ldm last folded (its base).
        let mut folds: Vec<(String, Project)> = Vec::new();
        let base_text = |folds: &[(String, Project)]| folds.last().map(|(t, _)| t.clone());
        for (step, a) in actions.iter().enumerate() {
            notices.lock().unwrap().clear();
            // Conflicts this step makes that only a later load reports.
            let mut later: Vec<(String, serde_json::Value)> = Vec::new();
            let loads = match a {
                Action::Ldm(f, v, fold) => {
                    // A fresh process, as each command is.
                    store = Store::open(paths.clone(), opts(&notices, *fold));
                    store.commit(|_| Ok::<_, StoreError>((vec![f.mutation(*v)], ()))).unwrap();
                    // The command ends: its fold, if it folds.
                    store.finish();
                    f.set(&mut model, *v);
                    if *fold {
                        unfolded.clear();
                    } else {
                        unfolded.insert(*f, f.get(&model));
                    }
                    true
                }
                Action::HandEdit(f, v) | Action::GoTool(f, v) => {
                    let keep = matches!(a, Action::HandEdit(..));
                    // A restored fold rewritten by another program before ldm
                    // read it is that program's file: no longer recognisable.
                    reverts.clear();
                    if let Some(before) = other_writer(dir, *f, *v, keep) {
                        // The file's write is the later one. If ldm had a
                        // different value of its own there, it is dropped.
                        if let Some(ours) = unfolded.remove(f) {
                            if ours != before {
                                let mut theirs = model.clone();
                                f.set(&mut theirs, *v);
                                if f.get(&theirs) != ours {
                                    owed.push((f.path().to_string(), ours));
                                }
                            }
                        }
                        f.set(&mut model, *v);
                    }
                    false
                }
                Action::Killed(f, v, cut) => {
                    // The first `cut` bytes of the record a killed command
                    // was writing: never acknowledged, cut by the next writer.
                    let bytes = ldm::store::log::encode_commit(&[f.mutation(*v)], u64::MAX / 2).unwrap();
                    let mut log = std::fs::OpenOptions::new().append(true).open(&paths.log).unwrap();
                    std::io::Write::write_all(&mut log, &bytes[..(*cut).min(bytes.len() - 1)]).unwrap();
                    false
                }
                Action::Read => {
                    prop_assert_eq!(&store.read().unwrap(), &model, "step {}: read", step);
                    true
                }
                Action::Reopen => {
                    store = Store::open(paths.clone(), opts(&notices, true));
                    false
                }
                Action::Compact => {
                    store.compact().unwrap();
                    unfolded.clear();
                    true
                }
                Action::Restore(n) => {
                    let text = std::fs::read_to_string(&paths.yaml).unwrap();
                    let now = snapshot::decode(&text).unwrap();
                    let older = folds.get(n % folds.len().max(1)).cloned();
                    match older {
                        // Only over ldm's last fold (else a person's edit, or
                        // an earlier restore, would be lost to this one).
                        Some((old_text, old))
                            if now.written == Written::ByLdm
                                && Some(&text) == base_text(&folds).as_ref()
                                && old_text != text =>
                        {
                            let older_seq = snapshot::decode(&old_text).unwrap().mark.map(|m| m.seq);
                            // Only a fold older by a record takes back
                            // acknowledged changes; at the same seq it takes
                            // back only what another writer did: unreported.
                            let reported = older_seq < now.mark.map(|m| m.seq);
                            let base = now.project;
                            for f in FIELDS {
                                let (b, t, o) = (f.get(&base), f.get(&old), f.get(&model));
                                if t == b {
                                    continue;
                                }
                                if o != b && o != t {
                                    owed.push((f.path().to_string(), o));
                                } else if o != t && reported {
                                    reverts.push((f.path().to_string(), t, o));
                                }
                                f.copy(&old, &mut model);
                                unfolded.remove(&f);
                            }
                            std::fs::write(dir.join(".restore.tmp"), &old_text).unwrap();
                            std::fs::rename(dir.join(".restore.tmp"), &paths.yaml).unwrap();
                        }
                        _ => {}
                    }
                    false
                }
                Action::EditDuringFold(f, v, g, w) => {
                    let before = Arc::new(Mutex::new(None));
                    let (out, d) = (before.clone(), dir.to_path_buf());
                    let (g, w) = (*g, *w);
                    let hook = Box::new(move || {
                        *out.lock().unwrap() = Some(other_writer(&d, g, w, true));
                    });
                    let fs = Arc::new(SaveDuringFold {
                        os: ldm::store::OsFs::strict(),
                        hook: Mutex::new(None),
                    });
                    let mut o = opts(&notices, true);
                    o.fs = fs.clone();
                    let copies = |dir: &Path| {
                        std::fs::read_dir(dir)
                            .unwrap()
                            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("containers.yaml.edited-"))
                            .count()
                    };
                    let copies_before = copies(dir);
                    store = Store::open(paths.clone(), o);
                    store.commit(|_| Ok::<_, StoreError>((vec![f.mutation(*v)], ()))).unwrap();
                    f.set(&mut model, *v);
                    unfolded.insert(*f, f.get(&model));
                    // The save lands in the command's own fold.
                    *fs.hook.lock().unwrap() = Some(hook);
                    store.finish();
                    let edit = before.lock().unwrap().take();
                    match edit {
                        // The save happened during the fold: put back, copied.
                        Some(Some(theirs_before)) => {
                            prop_assert!(
                                notices.lock().unwrap().iter().any(|n| matches!(n, Notice::YamlOvertaken { .. })),
                                "step {}: the overtaken fold was not reported", step
                            );
                            prop_assert!(copies(dir) > copies_before, "step {}: no copy of the save", step);
                            if let Some(ours) = unfolded.remove(&g) {
                                if ours != theirs_before {
                                    let mut theirs = model.clone();
                                    g.set(&mut theirs, w);
                                    if g.get(&theirs) != ours {
                                        later.push((g.path().to_string(), ours));
                                    }
                                }
                            }
                            g.set(&mut model, w);
                        }
                        // The save changed nothing: the fold went through.
                        Some(None) => unfolded.clear(),
                        None => prop_assert!(false, "step {}: the fold never swapped", step),
                    }
                    // Its commit loaded: a merge it did is checked below.
                    true
                }
            };
            // A fold ldm wrote (not one put back): the new base.
            let wrote = matches!(a, Action::Ldm(..) | Action::Compact | Action::EditDuringFold(..)) || step == 0;
            if let (true, Ok(text)) = (wrote, std::fs::read_to_string(&paths.yaml)) {
                if let Ok(doc) = snapshot::decode(&text) {
                    if doc.written == Written::ByLdm && base_text(&folds).as_ref() != Some(&text) {
                        folds.retain(|(t, _)| *t != text);
                        folds.push((text, doc.project));
                    }
                }
            }
            if loads && !reverts.is_empty() {
                let got = reverts_reported(&notices);
                for r in &reverts {
                    prop_assert!(got.contains(r), "step {}: the revert {:?} was not reported: {:?}", step, r, got);
                }
                if notices.lock().unwrap().iter().any(|n| matches!(n, Notice::Reverted { saved: Some(_), .. })) {
                    reverts.clear();
                }
            }
            if loads && !owed.is_empty() {
                let got = reported(&notices);
                for (field, dropped) in &owed {
                    prop_assert!(
                        got.iter().any(|(f, d, _)| f == field && d == dropped),
                        "step {}: the conflict on {} (ldm's {}) was not reported: {:?}",
                        step, field, dropped, got
                    );
                }
                // A writer that loaded has folded the merge and kept ldm's
                // values beside the log; a reader only reported them.
                if got.iter().any(|(_, _, saved)| *saved) {
                    let kept: String = std::fs::read_dir(dir)
                        .unwrap()
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().starts_with("containers.log.dropped-"))
                        .map(|e| std::fs::read_to_string(e.path()).unwrap())
                        .collect();
                    for (field, _) in &owed {
                        prop_assert!(kept.contains(&format!("\"{field}\"")), "step {}: {} not kept", step, field);
                    }
                    owed.clear();
                }
            }
            owed.extend(later);
            prop_assert_eq!(&Store::open(paths.clone(), opts(&notices, false)).read().unwrap(), &model, "step {}: {:?}", step, a);
        }
        // And from scratch, after a compaction, from the YAML alone.
        let mut last = Store::open(paths.clone(), opts(&notices, true));
        last.compact().unwrap();
        prop_assert_eq!(&last.read().unwrap(), &model);
        let doc = snapshot::decode(&std::fs::read_to_string(&paths.yaml).unwrap()).unwrap();
        prop_assert_eq!(&doc.project, &model);
    }
}
