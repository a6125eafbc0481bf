//! Unit tests of `recover.rs` (and `cleanup.rs`): what a load finds, on real files in a temp
//! folder (derived files beside it, not in the user's own folders). Each
//! pins a behaviour a mutation of the loader changed without a failing
//! test (issue 25, item 20).

// Over 400 lines: test-only, the unit tests of recover.rs and cleanup.rs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::cleanup::{remove_old_files, remove_temps};
use crate::Notice;
use crate::{cache, snapshot};
use crate::{Derived, Options, OsFs, Store};
use ldm_model::{Container, Mutation, Project};

struct Env {
    _tmp: tempfile::TempDir,
    paths: Paths,
}

impl Env {
    /// A project `p` made by the store, no fold after commits.
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        std::fs::create_dir(&dir).unwrap();
        let derived = Derived {
            state: tmp.path().join("state"),
            cache: tmp.path().join("cache"),
        };
        std::fs::create_dir(&derived.state).unwrap();
        std::fs::create_dir(&derived.cache).unwrap();
        let paths = Paths::with_derived(&dir, derived);
        Store::create_in(paths.clone(), &Project::new("p", vec![1]), opts()).unwrap();
        Env { _tmp: tmp, paths }
    }

    fn store(&self) -> Store {
        Store::open(self.paths.clone(), opts())
    }

    fn commit(&self, ms: Vec<Mutation>) {
        let mut s = self.store();
        s.commit(|_| Ok::<_, StoreError>((ms, ()))).unwrap();
        s.finish();
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        load(&OsFs::strict(), &self.paths)
    }

    fn yaml(&self) -> String {
        std::fs::read_to_string(&self.paths.yaml).unwrap()
    }

    fn write_yaml(&self, text: &str) {
        std::fs::write(&self.paths.yaml, text).unwrap();
    }
}

fn opts() -> Options {
    Options {
        notify: Arc::new(|_| {}),
        ..Options::default()
    }
}

fn ports(p: u16) -> Mutation {
    Mutation::PortsSet {
        container: None,
        ports: vec![p],
    }
}

fn add(name: &str) -> Mutation {
    Mutation::ContainerAdded {
        name: name.into(),
        image: "img".into(),
        pending: None,
    }
}

/// Lets the racy window of the files just written pass.
fn past_racy_window() {
    std::thread::sleep(std::time::Duration::from_millis(
        (cache::RACY_NS / 1_000_000 + 20) as u64,
    ));
}

#[test]
fn unknown_keys_are_the_yamls() {
    let env = Env::new();
    env.write_yaml("project: p\ncolour: red\ncontainers: {}\n");
    assert_eq!(env.load().unwrap().unknown_keys(), ["colour".to_string()]);
}

#[test]
fn a_record_the_yaml_holds_is_not_applied_again() {
    let env = Env::new();
    env.commit(vec![add("a")]);
    // Folded at the record that added `a`: replaying it would fail.
    let l = env.load().unwrap();
    assert!(
        matches!(l.origin, Origin::Ours { seq: 1, .. }),
        "{:?}",
        l.origin
    );
    assert!(l.project.containers.contains_key("a"));
}

/// What a reader must cache is kept whole; what only this load needs moves.
#[test]
fn the_yaml_state_is_kept_only_when_it_is_needed_again() {
    let env = Env::new();
    env.commit(vec![ports(2)]);
    // Just folded: the base is racy, the YAML is hashed, the cache is due.
    let l = env.load().unwrap();
    assert!(l.cache_due);
    assert_eq!(l.doc.project, l.project);
    past_racy_window();
    // A reader writes a cache that vouches; then nothing is due.
    env.store().read().unwrap();
    let l = env.load().unwrap();
    assert!(!l.cache_due);
    assert!(matches!(
        l.origin,
        Origin::Ours {
            base_stale: false,
            ..
        }
    ));
    assert_eq!(l.doc.project, Project::default(), "moved, not copied");
    assert_eq!(l.project.defaults.ports, vec![2]);
}

/// A cache of other bytes is never used for these; one of these bytes is,
/// without parsing them, even when its times cannot vouch.
#[test]
fn a_cache_stands_for_its_own_bytes_only() {
    let env = Env::new();
    let fs = OsFs::strict();
    let text = env.yaml();
    let changed = text.replace("- 1", "- 9");
    assert_ne!(changed, text);
    // A cache of the current bytes: used, not parsed.
    let l = env.load().unwrap();
    let entry = cache::Entry {
        key: l.yaml_key,
        stamp: l.yaml_stamp,
        seen_ns: l.yaml_stamp.id.mtime_ns,
        extras: false,
        doc: snapshot::parse_yaml(&env.paths, text.as_bytes()).unwrap(),
    };
    let cache_path = env.paths.cache().unwrap();
    cache::write(&fs, &cache_path, &entry, cache::Sync::None).unwrap();
    std::fs::remove_file(env.paths.base().unwrap()).unwrap();
    let l = env.load().unwrap();
    assert!(!l.parsed, "the cache's key is these bytes'");
    assert!(l.cache_due, "racy: it cannot vouch");
    // Other bytes: parsed, the cache ignored.
    env.write_yaml(&changed);
    let l = env.load().unwrap();
    assert!(l.parsed);
    assert_eq!(l.project.defaults.ports, vec![9]);
}

#[test]
fn a_yaml_keeps_its_bytes_when_a_rewrite_would_drop_something() {
    let env = Env::new();
    for (text, kept) in [
        ("project: p\ncontainers: {}\n", false),
        ("# mine\nproject: p\ncontainers: {}\n", true),
        ("project: p\ncolour: red\ncontainers: {}\n", true),
    ] {
        env.write_yaml(text);
        let l = env.load().unwrap();
        assert_eq!(
            l.extras.as_deref(),
            kept.then_some(text.as_bytes()),
            "{text}"
        );
    }
}

/// A derived file of another ldm version is validated as the YAML would
/// be; one of this very version is not (it validated what it stored).
#[test]
fn a_derived_file_of_another_version_is_validated() {
    let env = Env::new();
    let fs = OsFs::strict();
    env.commit(vec![ports(2)]);
    past_racy_window();
    let base = env.paths.base().unwrap();
    let stored = cache::read(&fs, &base).unwrap();
    let l = env.load().unwrap();
    let mut doc = stored.decode(&fs, &base).unwrap();
    doc.project.defaults.ports = vec![0];
    let entry = cache::Entry {
        key: l.yaml_key,
        stamp: l.yaml_stamp,
        seen_ns: fs.now_ns(),
        extras: false,
        doc,
    };
    cache::write(&fs, &base, &entry, cache::Sync::None).unwrap();
    // Written by this version: taken as it is.
    assert_eq!(env.load().unwrap().project.defaults.ports, vec![0]);
    // By another version: validated, and port 0 refused.
    let bytes = std::fs::read(&base).unwrap();
    let text = String::from_utf8_lossy(&bytes).replacen(
        &format!("\"by\":\"{}\"", env!("CARGO_PKG_VERSION")),
        "\"by\":\"0.0.0\"",
        1,
    );
    std::fs::write(&base, text.as_bytes()).unwrap();
    assert!(matches!(env.load(), Err(StoreError::Invalid { .. })));
}

/// Damage among records the YAML holds is harmless; before a record it
/// lacks, it is refused; the record after it is found wherever the log's
/// records start.
#[test]
fn damage_is_harmless_only_among_folded_records() {
    let env = Env::new();
    env.commit(vec![ports(2)]);
    env.commit(vec![ports(3)]);
    let clean = std::fs::read(&env.paths.log).unwrap();
    let first = record::HEADER_LEN + 20;
    let mut damaged = clean.clone();
    damaged[first] ^= 0x10;
    std::fs::write(&env.paths.log, &damaged).unwrap();
    // Folded up to record 2: the damage in record 1 does not matter.
    let l = env.load().unwrap();
    assert!(l.damaged_but_folded);
    assert_eq!(l.project.defaults.ports, vec![3]);
    // A YAML folded at 0 needs record 1: refused.
    let mut y = env.yaml();
    let at = y.find("seq: 2").unwrap();
    y.replace_range(at..at + 6, "seq: 0");
    env.write_yaml(&y);
    std::fs::remove_file(env.paths.base().unwrap()).unwrap();
    assert!(matches!(env.load(), Err(StoreError::Corrupt { .. })));
    // Another writer's file (no mark): the damage is before what it needs.
    let y: String = env
        .yaml()
        .lines()
        .filter(|l| !l.starts_with("ldm:"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_yaml(&y);
    assert!(matches!(env.load(), Err(StoreError::Corrupt { .. })));
}

/// Damage is measured from where it starts: a record the YAML still needs
/// before it does not make damage among folded bytes after it fatal.
#[test]
fn damage_after_a_needed_record_is_judged_by_what_follows_it() {
    let env = Env::new();
    env.commit(vec![ports(2)]);
    let yaml_at_1 = env.yaml();
    let base = env.paths.base().unwrap();
    let base_at_1 = std::fs::read(&base).unwrap();
    let first_at = record::HEADER_LEN;
    let first_end = std::fs::read(&env.paths.log).unwrap().len();
    env.commit(vec![ports(3)]);
    // Back to the fold at 1 (a crash before the second fold), then a
    // copy of record 1 after record 2: damage, and folded.
    env.write_yaml(&yaml_at_1);
    std::fs::write(&base, &base_at_1).unwrap();
    if let Some(cache) = env.paths.cache() {
        let _ = std::fs::remove_file(cache);
    }
    let mut log = std::fs::read(&env.paths.log).unwrap();
    let copy = log[first_at..first_end].to_vec();
    log.extend_from_slice(&copy);
    std::fs::write(&env.paths.log, &log).unwrap();
    let l = env.load().unwrap();
    assert!(l.damaged_but_folded);
    assert_eq!(l.project.defaults.ports, vec![3]);
}

/// Issue 25, item 5 at the loader: only ldm's own older fold of this log
/// is a restore; what it takes back is listed once (a field both changed
/// is a conflict, not a revert).
#[test]
fn only_an_older_fold_of_this_log_is_a_restore() {
    let env = Env::new();
    env.commit(vec![add("a")]);
    let older = env.yaml();
    env.commit(vec![ports(2)]);
    let newer = env.yaml();
    let revert_of = |text: &str| {
        env.write_yaml(text);
        let l = env.load().unwrap();
        l.merge.and_then(|m| m.reverted)
    };
    env.write_yaml(&older);
    let m = env.load().unwrap().merge.unwrap();
    // Only records after the base are weighed against the file.
    assert!(m.records.iter().all(|e| e.seq > 2), "{:?}", m.records);
    let r = revert_of(&older).expect("a restore");
    assert_eq!((r.file_seq, r.base_seq), (1, 2));
    assert_eq!(
        r.fields
            .iter()
            .map(|c| c.field.as_str())
            .collect::<Vec<_>>(),
        ["defaults.ports"]
    );
    // Edited (its checksum fails): a person's file, not a restore.
    assert!(revert_of(&older.replace("project: p", "project: p ")).is_none());
    // Of another log.
    let at = older.find("log: \"").unwrap() + 6;
    let mut other = older.clone();
    other.replace_range(
        at..at + 2,
        if &older[at..at + 2] == "00" {
            "11"
        } else {
            "00"
        },
    );
    assert!(revert_of(&other).is_none());
    // The newer fold again: ldm's own, nothing to say.
    env.write_yaml(&newer);
    assert!(env.load().unwrap().merge.is_none());
    // A conflict is not also a revert.
    env.write_yaml(&newer);
    env.commit(vec![]);
    let mut s = env.store();
    s.opts.fold_max = 0;
    s.commit(|_| Ok::<_, StoreError>((vec![ports(4)], ())))
        .unwrap();
    drop(s);
    env.write_yaml(&older);
    let m = env.load().unwrap().merge.unwrap();
    assert!(m.conflicts.iter().any(|c| c.field == "defaults.ports"));
    assert!(m
        .reverted
        .is_none_or(|r| r.fields.iter().all(|c| c.field != "defaults.ports")));
}

/// A fold at the base's own seq (from before a merge, which adds no
/// record) takes back no record of ldm's: merged as an edit, no list.
#[test]
fn a_fold_at_the_bases_seq_is_no_restore() {
    let env = Env::new();
    env.commit(vec![ports(2)]);
    let before_merge = env.yaml();
    // Another program's file, merged and folded by the next writer at the
    // same seq.
    let foreign: String = before_merge
        .replace("- 2", "- 5")
        .lines()
        .filter(|l| !l.starts_with("ldm:"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_yaml(&foreign);
    env.store().recover().unwrap();
    assert!(env.yaml().contains("- 5") && env.yaml().contains("ldm:"));
    env.write_yaml(&before_merge);
    let l = env.load().unwrap();
    let m = l.merge.expect("merged as another writer's file");
    assert!(m.reverted.is_none(), "{:?}", m.reverted);
    assert_eq!(l.project.defaults.ports, vec![2]);
}

#[test]
fn gone_containers_are_those_the_result_lacks() {
    let mut ours = Project::new("p", vec![]);
    for n in ["a", "b"] {
        ours.containers.insert(n.into(), Container::default());
    }
    let mut result = ours.clone();
    result.containers.remove("b");
    assert_eq!(gone_containers(&ours, &result), ["b".to_string()]);
    assert!(gone_containers(&ours, &ours).is_empty());
}

/// Without a base, the records a file's mark of this log holds already
/// are not weighed against it; a mark of another log holds none.
#[test]
fn without_a_base_the_files_mark_says_which_records_it_holds() {
    let env = Env::new();
    env.commit(vec![ports(2)]);
    env.commit(vec![ports(3)]);
    let l = env.load().unwrap();
    let log = l.log.unwrap();
    assert_eq!(log.info.prev_seq, 0);
    let mut doc = l.doc.clone();
    doc.mark = Some(Mark {
        generation: 1,
        seq: 1,
        log: log.header.id,
    });
    assert_eq!(dropped_from(&doc, &log), 1);
    doc.mark = Some(Mark {
        generation: 1,
        seq: 1,
        log: Some([9; 16]),
    });
    assert_eq!(dropped_from(&doc, &log), 0);
    doc.mark = None;
    assert_eq!(dropped_from(&doc, &log), 0);
}

#[test]
fn a_log_that_cannot_be_read_is_not_taken_for_no_log() {
    let env = Env::new();
    // Looking at it fails: an error, not "no log" (the next writer would
    // start an empty one over it).
    let fs = FailOn {
        os: OsFs::strict(),
        name: "containers.log",
        kind: io::ErrorKind::PermissionDenied,
        stat: true,
    };
    assert!(matches!(load(&fs, &env.paths), Err(StoreError::Io { .. })));
    std::fs::remove_file(&env.paths.log).unwrap();
    assert_eq!(env.load().unwrap().origin, Origin::NoLog);
    std::fs::create_dir(&env.paths.log).unwrap();
    assert!(matches!(
        env.load(),
        Err(StoreError::Io { .. } | StoreError::Untrusted { .. })
    ));
}

#[test]
fn files_over_their_limit_are_refused_at_the_limit_plus_one() {
    let p = Path::new("f");
    assert!(within(p, 10, 10).is_ok());
    assert!(matches!(
        within(p, 11, 10),
        Err(StoreError::TooBig {
            len: 11,
            limit: 10,
            ..
        })
    ));
}

#[test]
fn a_missing_yaml_is_no_project_and_another_error_is_io() {
    let env = Env::new();
    let e = not_found_or_io(io::ErrorKind::NotFound.into(), &env.paths);
    assert!(matches!(e, StoreError::NotAProject { .. }));
    let e = not_found_or_io(io::ErrorKind::PermissionDenied.into(), &env.paths);
    assert!(matches!(e, StoreError::Io { .. }));
}

/// The file system, but `remove` (or, with `stat`, `stat`) of the named
/// file fails with `kind`.
struct FailOn {
    os: OsFs,
    name: &'static str,
    kind: io::ErrorKind,
    stat: bool,
}

impl FailOn {
    fn hits(&self, p: &Path) -> bool {
        p.file_name().is_some_and(|n| n == self.name)
    }
}

impl Fs for FailOn {
    fn read(&self, p: &Path) -> io::Result<Vec<u8>> {
        self.os.read(p)
    }
    fn read_from(&self, p: &Path, o: u64) -> io::Result<Vec<u8>> {
        self.os.read_from(p, o)
    }
    fn stat(&self, p: &Path) -> io::Result<FileId> {
        if self.stat && self.hits(p) {
            return Err(self.kind.into());
        }
        self.os.stat(p)
    }
    fn write_new(&self, p: &Path, b: &[u8]) -> io::Result<()> {
        self.os.write_new(p, b)
    }
    fn append(&self, p: &Path, b: &[u8]) -> io::Result<()> {
        self.os.append(p, b)
    }
    fn sync(&self, p: &Path) -> io::Result<()> {
        self.os.sync(p)
    }
    fn set_len(&self, p: &Path, l: u64) -> io::Result<()> {
        self.os.set_len(p, l)
    }
    fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.os.rename(a, b)
    }
    fn sync_dir(&self, d: &Path) -> io::Result<()> {
        self.os.sync_dir(d)
    }
    fn remove(&self, p: &Path) -> io::Result<()> {
        if !self.stat && self.hits(p) {
            return Err(self.kind.into());
        }
        self.os.remove(p)
    }
    fn list(&self, d: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.os.list(d)
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn old_derived_files_are_removed_and_named_folders_and_other_errors_left() {
    let env = Env::new();
    let dir = env.paths.dir.clone();
    std::fs::write(dir.join(".containers.folded"), b"x").unwrap();
    std::fs::create_dir(dir.join(".containers.cache")).unwrap();
    let removed = remove_old_files(&OsFs::strict(), &env.paths).unwrap();
    assert_eq!(removed, [dir.join(".containers.folded")]);
    assert!(dir.join(".containers.cache").is_dir());
    // A file ldm may not remove: left, the command goes on.
    std::fs::write(dir.join(".containers.folded"), b"x").unwrap();
    let fs = FailOn {
        os: OsFs::strict(),
        name: ".containers.folded",
        kind: io::ErrorKind::PermissionDenied,
        stat: false,
    };
    assert!(remove_old_files(&fs, &env.paths).unwrap().is_empty());
}

#[test]
fn temp_files_are_removed_and_other_errors_are_reported() {
    let env = Env::new();
    let dir = env.paths.dir.clone();
    let temp = dir.join(".containers.log.tmp-1-ab");
    std::fs::write(&temp, b"x").unwrap();
    let out = remove_temps(&OsFs::strict(), &env.paths).unwrap();
    assert_eq!(out, [Notice::TempRemoved { path: temp.clone() }]);
    assert!(!temp.exists());
    // A folder of such a name: left alone, and no error.
    let folder = dir.join(".containers.yaml.tmp-2-cd");
    std::fs::create_dir(&folder).unwrap();
    assert!(remove_temps(&OsFs::strict(), &env.paths)
        .unwrap()
        .is_empty());
    assert!(folder.is_dir());
    std::fs::remove_dir(&folder).unwrap();
    for (kind, fails) in [
        (io::ErrorKind::NotFound, false),
        (io::ErrorKind::PermissionDenied, true),
    ] {
        std::fs::write(&temp, b"x").unwrap();
        let fs = FailOn {
            os: OsFs::strict(),
            name: ".containers.log.tmp-1-ab",
            kind,
            stat: false,
        };
        let r = remove_temps(&fs, &env.paths);
        assert_eq!(r.is_err(), fails, "{kind:?}: {r:?}");
        if !fails {
            assert!(r.unwrap().is_empty(), "{kind:?}");
        }
    }
}

/// A YAML temp that is ldm's own fold (its checksum holds), or a fold cut
/// short, goes; another program's save found there is kept as a copy.
#[test]
fn a_yaml_temp_is_kept_only_when_it_is_not_ldms() {
    let env = Env::new();
    let dir = env.paths.dir.clone();
    let temp = dir.join(".containers.yaml.tmp-1-ab");
    let copies = |dir: &Path| -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n.starts_with("containers.yaml.edited-"))
            .collect()
    };
    let ours = env.yaml();
    for (text, kept) in [
        (ours.clone(), false),
        (ours[..ours.len() / 2].to_string(), false),
        (String::new(), false),
        ("project: p\ncontainers: {}\n".to_string(), true),
        (ours.replace("project: p", "project: q"), true),
    ] {
        let before = copies(&dir).len();
        std::fs::write(&temp, &text).unwrap();
        let out = remove_temps(&OsFs::strict(), &env.paths).unwrap();
        assert!(!temp.exists());
        let kept_now = out.iter().any(|n| matches!(n, Notice::TempKept { .. }));
        assert_eq!(kept_now, kept, "{text:?}");
        assert_eq!(copies(&dir).len(), before + usize::from(kept), "{text:?}");
        if kept {
            let saved: PathBuf = dir.join(copies(&dir).last().unwrap());
            assert!(names(&dir).iter().any(|n| saved.ends_with(n)));
        }
    }
}
