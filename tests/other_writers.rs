//! Issue 11: `containers.yaml` stays the truth when people and
//! lxc-dev-manager write it too. One regression test per case of the issue
//! (named `..._issue_11_case_N`), each against the real binary. The Go
//! tool's writes are done by `common::go_tool_write`, which acts as it does:
//! flock `containers.yaml.lock`, read the file, write the whole file by temp
//! and rename, without ldm's `ldm:` mark.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ldm::model::Mutation;
use ldm::store::{record, Options, Store, StoreError};

fn yaml(dir: &Path) -> String {
    std::fs::read_to_string(yaml_path(dir)).unwrap()
}

/// Files beside the log whose name starts with `prefix`, with their bytes.
fn kept(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with(prefix))
        .map(|(n, f)| {
            (
                n.to_string_lossy().into_owned(),
                String::from_utf8_lossy(&f.bytes).into_owned(),
            )
        })
        .collect()
}

/// Replaces `from` with `to` in `containers.yaml`, keeping the mark, as a
/// person in an editor.
fn hand_edit(dir: &Path, from: &str, to: &str) {
    let text = yaml(dir);
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    assert!(text.contains("\nldm: {"), "no mark:\n{text}");
    std::fs::write(yaml_path(dir), text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_hand_edit_of_a_value_ldm_changed_is_the_later_write_issue_11_case_1() {
    // The value ldm changed is in the file already (folded after the commit).
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    assert!(yaml(dir).contains("- 3000"), "{}", yaml(dir));
    hand_edit(dir, "- 3000", "- 4000");
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([4000]));
    ok(dir, &["compact"]);
    assert!(
        yaml(dir).contains("- 4000") && !yaml(dir).contains("3000"),
        "{}",
        yaml(dir)
    );
    assert_healthy(dir);

    // The value ldm changed is only in the log (a project too big to fold
    // after each commit): the edit still wins, and says what it dropped.
    let dir = tempdir();
    let dir = dir.path();
    ok(dir, &["create", "--name", "p", "--ports", "1000"]);
    set_unfolded(dir, "defaults.ports", "3000");
    hand_edit(dir, "- 1000", "- 4000");
    let (code, out, err) = run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!((code, out.trim()), (0, "4000"), "{err}");
    assert!(
        err.contains("`defaults.ports`") && err.contains("[3000]"),
        "the conflict is reported: {err}"
    );
    let (code, _, err) = run(dir, &["compact"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        yaml(dir).contains("- 4000") && !yaml(dir).contains("3000"),
        "{}",
        yaml(dir)
    );
    let dropped = kept(dir, "containers.log.dropped-");
    assert_eq!(dropped.len(), 1, "{err}");
    assert!(
        dropped[0].1.contains("3000"),
        "ldm's value is kept: {}",
        dropped[0].1
    );
    assert!(
        err.contains(&dropped[0].0),
        "the notice names the file: {err}"
    );
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_write_of_lxc_dev_manager_between_commands_is_kept_issue_11_case_2() {
    let dir = tempdir();
    let dir = dir.path();
    std::fs::write(
        yaml_path(dir),
        "project: p\ncontainers:\n  dev:\n    image: img\n    snapshots:\n      x: {description: old x, created_at: '2026-01-01T00:00:00Z'}\n",
    )
    .unwrap();
    set(dir, "defaults.user.name", "alice");
    // ldm's changes still in the log: a port, and snapshot x deleted (the
    // record `ldm container snapshot delete dev x` makes).
    set_unfolded(dir, "defaults.ports", "3000");
    let mut store = Store::open(
        common::paths(dir),
        Options {
            fold_max: 0,
            ..Options::default()
        },
    );
    store
        .commit(|_| {
            Ok::<_, StoreError>((
                vec![Mutation::SnapshotRemoved {
                    container: "dev".into(),
                    name: "x".into(),
                }],
                (),
            ))
        })
        .unwrap();
    // lxc-dev-manager then changes the port, and takes a new snapshot x.
    go_tool_write(dir, |t| {
        t.replace(
            "description: old x",
            "description: a new x from the Go tool",
        )
        .replace("defaults:\n", "defaults:\n  ports: [5000]\n")
    });
    assert!(!yaml(dir).contains("ldm:"), "the Go tool dropped the mark");
    let (code, _, err) = run(dir, &["config", "set", "defaults.user.password", "pw"]);
    assert_eq!(code, 0, "{err}");
    let p = state(dir);
    assert_eq!(p.defaults.ports, vec![5000], "the Go tool's later port");
    assert_eq!(
        p.containers["dev"].snapshots["x"].description,
        "a new x from the Go tool"
    );
    let user = p.defaults.user.unwrap();
    assert_eq!(
        (user.name.as_deref(), user.password.as_deref()),
        (Some("alice"), Some("pw"))
    );
    // Nothing dropped silently: both conflicts named, ldm's side kept.
    for needle in [
        "`defaults.ports`",
        "[3000]",
        "`containers.dev.snapshots.x`",
        "ldm's removal",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
    assert_eq!(kept(dir, "containers.log.dropped-").len(), 1);
    assert_healthy(dir);
}

#[test]
fn lxc_dev_manager_mid_command_never_overwrites_an_acknowledged_change_issue_11_case_3() {
    let dir = tempdir();
    let dir = dir.path();
    ok(dir, &["create", "--name", "p", "--ports", "1000"]);
    // The Go tool starts a command: takes its lock, reads the file, and
    // then spends a while in LXD.
    let lock = go_lock(dir);
    let read_by_go = yaml(dir);
    // ldm commits meanwhile: acknowledged, not folded (the Go tool holds its
    // lock), and it says so.
    let (code, _, err) = run(dir, &["config", "set", "defaults.user.name", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("lxc-dev-manager is changing this project"),
        "{err}"
    );
    assert!(!yaml(dir).contains("alice"));
    // A command that must write containers.yaml waits, then names the Go tool.
    let (code, _, err) = run(dir, &["--lock-timeout", "0.3", "compact"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("containers.yaml.lock") && err.contains("lxc-dev-manager"),
        "{err}"
    );
    // The Go tool writes the file it read (plus its change) and lets go.
    let without_mark: String = read_by_go
        .lines()
        .filter(|l| !l.starts_with("ldm:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.join(".go.tmp"),
        without_mark.replace("- 1000", "- 2000"),
    )
    .unwrap();
    std::fs::rename(dir.join(".go.tmp"), yaml_path(dir)).unwrap();
    drop(lock);
    // Both changes are there; no conflict, nothing reported.
    let (code, _, err) = run(dir, &["compact"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let p = state(dir);
    assert_eq!(p.defaults.ports, vec![2000]);
    assert_eq!(p.defaults.user.unwrap().name.as_deref(), Some("alice"));
    assert!(
        yaml(dir).contains("alice") && yaml(dir).contains("- 2000"),
        "{}",
        yaml(dir)
    );
    assert_healthy(dir);
}

#[test]
fn a_teammates_yaml_copied_in_is_merged_not_taken_for_a_dead_compaction_issue_11_case_4() {
    // Two checkouts of one project; each has its own log.
    let mine = tempdir();
    let mine = mine.path();
    let theirs = tempdir();
    let theirs = theirs.path();
    ok(mine, &["create", "--name", "p", "--ports", "1000"]);
    std::fs::copy(yaml_path(mine), yaml_path(theirs)).unwrap();
    // The teammate works on: several commits and a compaction, so that
    // their file is generations ahead of mine.
    set(theirs, "defaults.user.name", "teammate");
    ok(theirs, &["compact"]);
    set(theirs, "defaults.user.password", "their-pw");
    // My change, acknowledged and only in my log.
    set_unfolded(mine, "defaults.ports", "3000");
    let log_before = std::fs::read(log_path(mine)).unwrap();
    // git pull: their containers.yaml lands in my folder.
    std::fs::copy(yaml_path(theirs), yaml_path(mine)).unwrap();
    let (code, _, err) = run(mine, &["config", "get", "defaults.ports"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("interrupted compaction"), "{err}");
    let (code, _, err) = run(mine, &["config", "set", "containers.c0.ports", "1"]);
    assert_eq!(code, 1, "(no container c0) {err}");
    // My log was not deleted; my change and theirs are both there.
    assert!(std::fs::read(log_path(mine))
        .unwrap()
        .starts_with(&log_before[..record::HEADER_LEN]));
    let p = state(mine);
    assert_eq!(p.defaults.ports, vec![3000], "my acknowledged change");
    let user = p.defaults.user.unwrap();
    assert_eq!(
        (user.name.as_deref(), user.password.as_deref()),
        (Some("teammate"), Some("their-pw"))
    );
    set(mine, "defaults.user.name", "me");
    assert_eq!(state(mine).defaults.ports, vec![3000]);
    assert_healthy(mine);
}

#[test]
fn containers_yaml_shows_ldms_changes_between_commands_issue_11_case_5() {
    let env = common::api::Env::new("web");
    env.ok(&["container", "create", "dev", "ubuntu:24.04"]);
    // What lxc-dev-manager reads: the file, ignoring the `ldm:` key.
    #[derive(serde::Deserialize)]
    struct GoView {
        project: String,
        containers: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let text = std::fs::read_to_string(env.dir.join("containers.yaml")).unwrap();
    let go: GoView = ldm::yaml::from_str(&text).unwrap();
    assert_eq!(go.project, "web");
    assert!(go.containers.contains_key("dev"), "{text}");
    assert!(
        go.containers["dev"]["snapshots"]["initial-state"].is_object(),
        "{text}"
    );
}

#[test]
fn a_commit_over_the_record_limit_is_refused_before_anything_is_written_issue_11_case_6() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1");
    let before = data_files(dir);
    let mut store = Store::open(common::paths(dir), Options::default());
    let huge = Mutation::UserPasswordSet {
        container: None,
        password: Some("x".repeat(record::MAX_PAYLOAD as usize + 1)),
    };
    let e = store
        .commit(|_| Ok::<_, StoreError>((vec![huge], ())))
        .unwrap_err();
    assert!(matches!(e, StoreError::CommitTooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert_same(&before, &data_files(dir), "a refused commit");
    // Not acknowledged, so nothing to lose: the next command sees no trace.
    let (code, _, err) = run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn a_flipped_bit_in_the_last_record_is_kept_and_not_called_unacknowledged_issue_11_case_7() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set_unfolded(dir, "defaults.ports", "3000");
    let mut log = std::fs::read(log_path(dir)).unwrap();
    let last = log.len() - 3;
    log[last] ^= 0x01;
    std::fs::write(log_path(dir), &log).unwrap();
    let (code, _, err) = run(dir, &["config", "set", "defaults.user.name", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("never acknowledged") && !err.contains("never said it was done"),
        "{err}"
    );
    assert!(
        err.contains("checksum fails") && err.contains("damage to a change reported done"),
        "{err}"
    );
    let cut = kept(dir, "containers.log.cut-");
    assert_eq!(cut.len(), 1);
    let bytes = std::fs::read(dir.join(&cut[0].0)).unwrap();
    assert_eq!(
        &bytes[..],
        &log[record::HEADER_LEN..],
        "the damaged record, byte for byte"
    );
}

/// A log whose one record is a kind this ldm does not know (as a newer ldm
/// would write), with a valid checksum and the next seq.
fn newer_record(dir: &Path) -> Vec<u8> {
    create(dir);
    let mut log = std::fs::read(log_path(dir)).unwrap();
    record::encode_record(
        1,
        br#"{"op":"port_forward_added","container":"dev","port":8080}"#,
        &mut log,
    )
    .unwrap();
    std::fs::write(log_path(dir), &log).unwrap();
    log
}

#[test]
fn a_record_of_a_newer_ldm_is_refused_and_not_dropped_without_force_issue_11_case_8() {
    let dir = tempdir();
    let dir = dir.path();
    let log = newer_record(dir);
    for args in [
        &["config", "get", "defaults.ports"][..],
        &["config", "set", "defaults.ports", "1"],
    ] {
        let (code, _, err) = run(dir, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("written by a newer ldm") && err.contains("upgrade ldm"),
            "{err}"
        );
        assert!(err.contains("port_forward_added"), "{err}");
        assert!(
            !err.contains("doctor --repair` to"),
            "not offered as damage: {err}"
        );
    }
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 2);
    assert!(
        report["findings"][0]["hint"]
            .as_str()
            .unwrap()
            .starts_with("upgrade ldm"),
        "{report:#}"
    );
    let (code, _, err) = run(dir, &["doctor", "--repair"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read(log_path(dir)).unwrap(), log, "repair kept it");
    let (code, out, err) = run(dir, &["doctor", "--repair", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("port_forward_added") && out.contains("--force"),
        "{out}"
    );
    let backups = kept(dir, "containers.log.broken-");
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read(dir.join(&backups[0].0)).unwrap(), log);
    assert_healthy(dir);
}

#[test]
fn a_yaml_without_project_is_a_clear_error_and_left_unchanged_issue_11_case_10() {
    let dir = tempdir();
    let dir = dir.path();
    let text = "containers:\n  dev:\n    image: ubuntu:24.04\n";
    std::fs::write(yaml_path(dir), text).unwrap();
    for args in [
        &["config", "get", "defaults.ports"][..],
        &["config", "set", "defaults.ports", "1"],
    ] {
        let (code, _, err) = run(dir, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        for needle in [
            "no `project:` key",
            "project: NAME",
            "NAME-dev",
            "nothing was changed",
        ] {
            assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
        }
    }
    assert_eq!(yaml(dir), text);
    assert!(!log_path(dir).exists());
}

#[test]
fn readers_cache_a_foreign_write_so_the_next_reader_does_not_parse_it_issue_11_case_11() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1");
    go_tool_write(dir, |t| t.replace("- 1", "- 2"));
    let cache = cache_path(dir);
    let _ = std::fs::remove_file(&cache);
    // Past the racy window (DESIGN.md, "The base and the load cache"): the
    // cache the reader writes vouches for the file by its times.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([2]));
    // Keyed by the exact bytes of the YAML it mirrors.
    let head: serde_json::Value = {
        let bytes = std::fs::read(&cache).expect("a reader wrote the cache");
        let line = bytes.split(|b| *b == b'\n').next().unwrap().to_vec();
        serde_json::from_slice(&line).unwrap()
    };
    let sha = ldm::store::snapshot::hex(&ldm::store::snapshot::sha256(yaml(dir).as_bytes()));
    assert_eq!(head["yaml_sha256"], serde_json::json!(sha));
    // The next reader uses it and leaves it as it is.
    let stamp = std::fs::metadata(&cache).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([2]));
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        stamp
    );
    // The next writer folds the merge: the cache no longer vouches for the
    // new file, the base serves.
    set(dir, "defaults.user.name", "a");
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([2]));
    assert_eq!(get(dir, "defaults.user.name"), serde_json::json!("a"));
}

#[test]
fn doctor_fix_adopting_thousands_of_snapshots_commits_in_whole_parts_issue_11_case_6() {
    let env = common::api::Env::new("web");
    let names: Vec<String> = (0..9_000).map(|i| format!("snap-{i:04}")).collect();
    // Made by this checkout (its marks), so doctor offers to adopt it.
    let mut inst = lxd_double::Instance::stopped();
    for (k, v) in env.marks("big") {
        inst = inst.config(&k, &v);
    }
    for n in &names {
        inst = inst.snapshot(n);
    }
    env.double.seed("default", "web-big", inst);
    // Keep the records in the log (no fold, no compaction) to look at them.
    let r = env.run_env(
        &["doctor", "--fix"],
        &[
            ("LDM_FOLD_BYTES", "0"),
            ("LDM_AUTO_COMPACT_BYTES", "100000000"),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let p = env.project();
    assert_eq!(p.containers["big"].snapshots.len(), 9_000);
    // More than one record, each under the limit, and all of them read back.
    let recs = records(&env.dir);
    assert!(recs.len() >= 2, "{recs:?}");
    assert!(recs
        .iter()
        .all(|(_, _, len)| *len <= u64::from(record::MAX_PAYLOAD)));
    let r = env.run(&["doctor"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// Issue 25, item 6: README allows deleting the `ldm:` line. Deleting
/// `remote:`, `setup:` or `mounts:` together with it was taken for
/// lxc-dev-manager's rewrite (which drops keys it does not know), so the
/// deleted keys came back from ldm's base. Only a file laid out as the Go
/// tool writes it (yaml.v3's 4-space indents) is read that way now; in any
/// other file a key that is gone was deleted.
#[test]
fn deleting_keys_with_the_mark_line_by_hand_is_not_undone_issue_25_case_6() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "remote", "far");
    // Setup steps and mounts are written by hand (the mark kept: an edit).
    assert!(!yaml(dir).contains("defaults:"), "{}", yaml(dir));
    let text = yaml(dir).replace(
        "containers: {}",
        "defaults:\n  setup:\n  - echo hi\n  mounts:\n  - data:/srv/data\ncontainers:\n  dev:\n    image: img\n    mounts:\n    - data:/srv/data\n    setup:\n    - echo there",
    );
    std::fs::write(yaml_path(dir), &text).unwrap();
    set(dir, "defaults.ports", "3000");
    let before = state(dir);
    assert_eq!(before.remote.as_deref(), Some("far"));
    assert!(!before.defaults.setup.is_empty());
    assert!(before.defaults.mounts.is_some());
    assert!(!before.containers["dev"].mounts.is_empty());
    assert!(before.containers["dev"].setup.is_some());

    // A person deletes those keys and the mark line, keeping ldm's layout.
    let mut skip = false;
    let edited: String = yaml(dir)
        .lines()
        .filter(|l| {
            let key = l.trim_start();
            if key.starts_with("- ") && skip {
                return false;
            }
            skip = ["setup:", "mounts:"].contains(&key);
            !(skip || key.starts_with("remote:") || l.starts_with("ldm:"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!edited.contains("far") && !edited.contains("echo") && !edited.contains("/srv"));
    std::fs::write(yaml_path(dir), &edited).unwrap();

    for when in ["read", "after the next writer"] {
        if when != "read" {
            set(dir, "defaults.ports", "4000");
        }
        let after = state(dir);
        assert_eq!(after.remote, None, "{when}");
        assert!(after.defaults.setup.is_empty(), "{when}");
        assert_eq!(after.defaults.mounts, None, "{when}");
        assert!(after.containers["dev"].mounts.is_empty(), "{when}");
        assert_eq!(after.containers["dev"].setup, None, "{when}");
    }
    assert!(!yaml(dir).contains("far"), "{}", yaml(dir));
}

/// The real file system, but `hook` runs just before the first swap of
/// `containers.yaml` (a fold's step 3, DESIGN.md "Fold").
struct SaveBeforeSwap {
    os: ldm::store::OsFs,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ldm::store::Fs for SaveBeforeSwap {
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
        let hook = self.hook.lock().unwrap().take();
        if let (Some(hook), true) = (hook, b.ends_with("containers.yaml")) {
            hook();
        }
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

/// Issue 25, item 4: an editor that ignores ldm's locks saves
/// `containers.yaml` after ldm loaded it and before its fold renamed the
/// new file in: the rename overwrote the save, with no notice and no copy.
/// The fold swaps the file in and looks at what came out: the save is put
/// back, copied, said; the next load merges ldm's commit into it.
#[test]
fn a_save_landing_while_ldm_folds_is_put_back_copied_and_merged_issue_25_case_4() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    let d = dir.to_path_buf();
    let fs = std::sync::Arc::new(SaveBeforeSwap {
        os: ldm::store::OsFs::strict(),
        hook: std::sync::Mutex::new(None),
    });
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    let opts = ldm::store::Options {
        fs: fs.clone(),
        notify: std::sync::Arc::new(move |n: &ldm::store::Notice| {
            sink.lock().unwrap().push(n.to_string())
        }),
        ..ldm::store::Options::default()
    };
    let mut store = ldm::store::Store::open(common::paths(dir), opts);
    store
        .commit(|_| {
            Ok::<_, ldm::store::StoreError>((
                vec![ldm::model::Mutation::UserNameSet {
                    container: None,
                    name: Some("ldms".into()),
                }],
                (),
            ))
        })
        .unwrap();
    // The person's save, as an editor writes it: a new file renamed in.
    *fs.hook.lock().unwrap() = Some(Box::new(move || {
        let text = std::fs::read_to_string(d.join("containers.yaml")).unwrap();
        let saved = text.replace("- 3000", "- 4000");
        assert_ne!(saved, text);
        std::fs::write(d.join("containers.yaml~"), &saved).unwrap();
        std::fs::rename(d.join("containers.yaml~"), d.join("containers.yaml")).unwrap();
    }));
    store.finish();
    assert!(
        fs.hook.lock().unwrap().is_none(),
        "the fold swapped the file"
    );
    // The save is in place, untouched; a copy is kept; it was said.
    let text = yaml(dir);
    assert!(text.contains("- 4000") && !text.contains("ldms"), "{text}");
    let notices = notices.lock().unwrap().clone();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("saved by another program while ldm was writing")),
        "{notices:?}"
    );
    let copies: Vec<_> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.yaml.edited-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(String::from_utf8_lossy(&copies[0].1.bytes).contains("- 4000"));
    // Nothing lost: the next command merges ldm's commit into the save.
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([4000]));
    assert_eq!(get(dir, "defaults.user.name"), serde_json::json!("ldms"));
    set(dir, "defaults.user.password", "p");
    let text = yaml(dir);
    assert!(text.contains("- 4000") && text.contains("ldms"), "{text}");
}

/// Issue 25, item 5: `git checkout -- containers.yaml` put back an older
/// fold of the same log. Its values win (it is the later write, and a
/// restore may be what the user wants), but that used to be silent: ldm's
/// acknowledged values went back, and a container still in LXD vanished
/// from the project without a word. Each value taken back is named now
/// (and kept beside the log by the next writer), and so is each container
/// the file no longer has, with `ldm doctor` as the next command.
#[test]
fn an_older_fold_put_back_says_what_it_reverts_issue_25_case_5() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1000");
    let committed = std::fs::read(yaml_path(dir)).unwrap();
    let mut store = ldm::store::Store::open(common::paths(dir), ldm::store::Options::default());
    store
        .commit(|_| {
            Ok::<_, ldm::store::StoreError>((
                vec![ldm::model::Mutation::ContainerAdded {
                    name: "dev".into(),
                    image: "img".into(),
                    pending: None,
                }],
                (),
            ))
        })
        .unwrap();
    drop(store);
    set(dir, "defaults.ports", "2000");
    set(dir, "defaults.user.name", "bob");
    // The restore.
    std::fs::write(yaml_path(dir), &committed).unwrap();
    for (args, writer) in [
        (&["config", "get", "defaults.ports"][..], false),
        (&["config", "set", "defaults.user.password", "pw"][..], true),
    ] {
        let (code, out, err) = run(dir, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        if !writer {
            assert_eq!(out.trim(), "1000", "the restore stands");
        }
        for needle in [
            "an older copy of this project's file was put back",
            "`defaults.ports`: back to [1000] (was [2000])",
            "`defaults.user.name`: removed (was \"bob\")",
            "no longer has container dev",
            "ldm doctor",
        ] {
            assert!(
                err.contains(needle),
                "{args:?}: stderr lacks {needle:?}:\n{err}"
            );
        }
        assert_eq!(
            err.contains("values are kept in"),
            writer,
            "{args:?}: {err}"
        );
    }
    // Said once: the writer folded it, the file is ldm's again.
    let (code, _, err) = run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!(code, 0);
    assert!(!err.contains("put back"), "{err}");
    assert_eq!(state(dir).containers.len(), 0);
}

/// The real file system, counting the bytes read from each file.
struct CountingFs {
    os: ldm::store::OsFs,
    read: std::sync::Mutex<std::collections::BTreeMap<std::path::PathBuf, usize>>,
}

impl CountingFs {
    fn count(&self, p: &Path, n: usize) {
        *self
            .read
            .lock()
            .unwrap()
            .entry(p.to_path_buf())
            .or_default() += n;
    }
}

impl ldm::store::Fs for CountingFs {
    fn read(&self, p: &Path) -> std::io::Result<Vec<u8>> {
        let b = self.os.read(p)?;
        self.count(p, b.len());
        Ok(b)
    }
    fn read_from(&self, p: &Path, o: u64) -> std::io::Result<Vec<u8>> {
        let b = self.os.read_from(p, o)?;
        self.count(p, b.len());
        Ok(b)
    }
    fn read_prefix(&self, p: &Path, max: usize) -> std::io::Result<Vec<u8>> {
        let b = self.os.read_prefix(p, max)?;
        self.count(p, b.len());
        Ok(b)
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
        self.os.exchange(a, b)
    }
}

/// Issue 26, item 3: validating the load cache hashed the whole YAML (840
/// KB at 10,000 snapshots) on every read. A derived file whose stamp
/// vouches for the YAML by its identity and times (past git's racy
/// window) stands for its bytes: a read then reads no byte of
/// `containers.yaml`, and only one derived file whole. A changed file (a
/// hand edit that keeps the size, `touch -d` back) is read again.
#[test]
fn a_read_vouched_for_by_a_derived_file_reads_no_yaml_byte_issue_26_case_3() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    // Past the racy window of the fold, a reader writes a cache that vouches.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([3000]));
    let fs = std::sync::Arc::new(CountingFs {
        os: ldm::store::OsFs::strict(),
        read: Default::default(),
    });
    let opts = Options {
        fs: fs.clone(),
        ..Options::default()
    };
    let paths = common::paths(dir);
    let store = Store::open(paths.clone(), opts);
    assert_eq!(store.read().unwrap().defaults.ports, vec![3000]);
    let read = fs.read.lock().unwrap().clone();
    assert_eq!(read.get(&paths.yaml), None, "{read:?}");
    let whole = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len() as usize);
    let (base, cache) = (paths.base().unwrap(), paths.cache().unwrap());
    let derived = read.get(&base).copied().unwrap_or(0) + read.get(&cache).copied().unwrap_or(0);
    assert!(
        derived < whole(&base).max(whole(&cache)) + 4096,
        "one derived file whole, at most a head of the other: {read:?}"
    );

    // The same size, the mtime put back: the change time still tells.
    let text = yaml(dir).replace("- 3000", "- 4000");
    let mtime = std::fs::metadata(yaml_path(dir))
        .unwrap()
        .modified()
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(yaml_path(dir))
        .unwrap();
    std::io::Write::write_all(&mut &f, text.as_bytes()).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    fs.read.lock().unwrap().clear();
    assert_eq!(store.read().unwrap().defaults.ports, vec![4000]);
    assert!(fs.read.lock().unwrap().contains_key(&paths.yaml));
}
