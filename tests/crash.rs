//! A crash before and after each write, fsync and rename (acceptance item
//! 4): `LDM_FAILPOINT` aborts the real binary at each named point of
//! compaction (run by `ldm compact`, after a commit, by `ldm create` and by
//! `ldm doctor --repair`) and of the append. Afterwards a reader sees exactly
//! the state from before (plus the commit, whose record was complete),
//! nothing lost and nothing doubled; the next writer finishes the job,
//! leaves no temp file, and `ldm doctor` finds nothing to report.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;
use ldm::model::Project;

/// Every fail point of compaction, in the order they are passed.
const COMPACTION: [&str; 10] = [
    "compact.yaml.written",
    "compact.yaml.synced",
    "compact.yaml.renamed",
    "compact.base.renamed",
    "compact.yaml.dir-synced",
    "compact.log.written",
    "compact.log.synced",
    "compact.log.renamed",
    "compact.log.dir-synced",
    "compact.done",
];

/// Runs `ldm ARGS` with `LDM_FAILPOINT=point` and asserts it aborted.
fn die_at(dir: &Path, point: &str, args: &[&str], floor: Option<&str>) {
    let mut cmd = ldm_std(dir);
    cmd.env("LDM_FAILPOINT", point).args(args);
    if let Some(floor) = floor {
        cmd.env("LDM_AUTO_COMPACT_BYTES", floor);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "ldm {args:?} with LDM_FAILPOINT={point} did not abort: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A project with a dozen records in its log; `go_yaml` starts it from a
/// hand-written file without the `ldm:` mark instead of `ldm create`.
fn prepare(dir: &Path, go_yaml: bool) {
    if go_yaml {
        write_go_yaml(dir, 2);
    } else {
        create(dir);
    }
    for n in 0..4 {
        set(dir, "defaults.ports", &format!("{},{}", 3000 + n, 4000 + n));
        set(dir, "defaults.user.name", &format!("user{n}"));
        // The same each time: changing a password compacts at once (no old
        // one stays in the log), which would take the other records away.
        set(dir, "defaults.user.password", "secret");
    }
}

/// Whether a crash at `point` leaves a temp file behind.
fn leaves_temp(point: &str) -> bool {
    point.ends_with(".written") || point.ends_with(".synced")
}

/// The checks after a crash at `point`: readers see `expected` with
/// `expected_seq` records and write nothing, doctor is content, and the next
/// writer recovers with the right notices and leaves a clean store.
fn check_after_crash(dir: &Path, point: &str, expected: &Project, expected_seq: u64) {
    check_after_crash_upgrading(dir, point, expected, expected_seq, false);
}

/// [`check_after_crash`]; `upgrading`: the log is still of an older format
/// version, so the next writer's one more line is the upgrade's notice.
fn check_after_crash_upgrading(
    dir: &Path,
    point: &str,
    expected: &Project,
    expected_seq: u64,
    upgrading: bool,
) {
    let temp = leaves_temp(point) && !point.starts_with("append.");
    assert_eq!(
        !temps(dir).is_empty(),
        temp,
        "{point}: temps {:?}",
        temps(dir)
    );
    let before = files_but_cache(dir);
    assert_eq!(&state(dir), expected, "{point}: state after the crash");
    assert_eq!(
        last_seq(dir),
        expected_seq,
        "{point}: records lost or doubled"
    );
    let name = expected.defaults.user.as_ref().and_then(|u| u.name.clone());
    assert_eq!(
        get(dir, "defaults.user.name"),
        serde_json::json!(name),
        "{point}"
    );
    let (code, report) = doctor_json(dir);
    assert_eq!(
        (code, &report["healthy"]),
        (0, &serde_json::json!(true)),
        "{point}: {report:#}"
    );
    assert_same(&before, &files_but_cache(dir), &format!("{point}: readers"));

    let (code, _, err) = run(dir, &["config", "set", "defaults.ports", "4242"]);
    assert_eq!(code, 0, "{point}: the next writer failed: {err}");
    // A crash between the fold and the new log leaves a consistent pair:
    // the next writer has nothing to say but the temp file it removed.
    assert_eq!(err.contains("removed"), temp, "{point}: stderr: {err}");
    assert_eq!(
        err.contains("to log format version 4"),
        upgrading,
        "{point}: stderr: {err}"
    );
    assert_eq!(
        err.lines().count(),
        temp as usize + upgrading as usize,
        "{point}: {err}"
    );
    assert!(temps(dir).is_empty(), "{point}: temps {:?}", temps(dir));
    let mut after = expected.clone();
    after.defaults.ports = vec![4242];
    assert_eq!(state(dir), after, "{point}: state after the next writer");
    assert_eq!(last_seq(dir), expected_seq + 1, "{point}");
    assert_healthy(dir);
    ok(dir, &["compact"]);
    assert_eq!(state(dir), after, "{point}: state after compact");
    assert_healthy(dir);
}

#[test]
fn compact_killed_at_each_step_loses_and_doubles_nothing() {
    for go_yaml in [false, true] {
        for point in COMPACTION {
            let dir = tempdir();
            prepare(dir.path(), go_yaml);
            let (pre, pre_seq) = (state(dir.path()), last_seq(dir.path()));
            assert_eq!(pre_seq, 12);
            die_at(dir.path(), point, &["compact"], None);
            check_after_crash(dir.path(), point, &pre, pre_seq);
        }
    }
}

/// The first writer upgrades a version 2 log by a compaction, before its
/// commit: killed at each step of it, the commit never happened, and the
/// next writer upgrades again until the new log is in. With `go_yaml`,
/// beside lxc-dev-manager's write, which the upgrade folds (merged).
#[test]
fn upgrade_of_a_version_2_log_killed_at_each_step_loses_and_doubles_nothing() {
    for go_yaml in [false, true] {
        for point in COMPACTION {
            let dir = tempdir();
            prepare(dir.path(), false);
            let old = downgrade_log_to_v2(dir.path());
            if go_yaml {
                go_tool_write(dir.path(), |text| text.replace("user3", "gouser"));
            }
            let (pre, pre_seq) = (state(dir.path()), last_seq(dir.path()));
            assert_eq!(pre_seq, 12);
            if go_yaml {
                assert_eq!(
                    pre.defaults.user.as_ref().unwrap().name.as_deref(),
                    Some("gouser")
                );
            }
            let args = ["config", "set", "defaults.user.name", "killed"];
            die_at(dir.path(), point, &args, None);
            let replaced = matches!(
                point,
                "compact.log.renamed" | "compact.log.dir-synced" | "compact.done"
            );
            let header =
                ldm::store::record::decode_header(&std::fs::read(log_path(dir.path())).unwrap())
                    .unwrap();
            assert_eq!(
                (header.version, header.id),
                (if replaced { 4 } else { 2 }, old.id),
                "{point}"
            );
            check_after_crash_upgrading(dir.path(), point, &pre, pre_seq, !replaced);
        }
    }
}

#[test]
fn auto_compaction_killed_at_each_step_keeps_the_commit() {
    for point in COMPACTION {
        let dir = tempdir();
        prepare(dir.path(), false);
        let (mut expected, pre_seq) = (state(dir.path()), last_seq(dir.path()));
        let args = ["config", "set", "containers.c0.ports", "1"];
        // No container c0: the rejected commit writes nothing and compacts nothing.
        let mut cmd = ldm_std(dir.path());
        cmd.env("LDM_FAILPOINT", point)
            .env("LDM_AUTO_COMPACT_BYTES", "1");
        assert_eq!(cmd.args(args).status().unwrap().code(), Some(1));
        assert_eq!(last_seq(dir.path()), pre_seq);
        // The commit's record is durable before compaction starts.
        let args = ["config", "set", "defaults.user.name", "after"];
        die_at(dir.path(), point, &args, Some("1"));
        expected.defaults.user.as_mut().unwrap().name = Some("after".into());
        check_after_crash(dir.path(), point, &expected, pre_seq + 1);
    }
}

#[test]
fn append_killed_after_write_or_fsync_keeps_the_complete_record() {
    for point in ["append.written", "append.synced"] {
        let dir = tempdir();
        prepare(dir.path(), false);
        let (mut expected, pre_seq) = (state(dir.path()), last_seq(dir.path()));
        die_at(
            dir.path(),
            point,
            &["config", "set", "defaults.user.name", "zed"],
            None,
        );
        // Written in full (only not acknowledged): kept, once.
        expected.defaults.user.as_mut().unwrap().name = Some("zed".into());
        check_after_crash(dir.path(), point, &expected, pre_seq + 1);
    }
}

/// Every fail point of `ldm create`: the YAML's fold, then the empty log.
const CREATE: [&str; 9] = [
    "create.yaml.written",
    "create.yaml.synced",
    "create.yaml.renamed",
    "create.base.renamed",
    "create.yaml.dir-synced",
    "create.log.written",
    "create.log.synced",
    "create.log.renamed",
    "create.log.dir-synced",
];

#[test]
fn create_killed_at_each_step_leaves_no_project_or_a_whole_one() {
    for point in CREATE {
        let dir = tempdir();
        die_at(dir.path(), point, &["create", "--name", "p"], None);
        let yaml_in = yaml_path(dir.path()).exists();
        let before_rename = matches!(point, "create.yaml.written" | "create.yaml.synced");
        assert_eq!(yaml_in, !before_rename, "{point}");
        if yaml_in {
            assert_eq!(state(dir.path()), Project::new("p", Vec::new()), "{point}");
            let (code, _, err) = run(dir.path(), &["create", "--name", "p"]);
            assert_eq!(code, 1, "{point}: {err}");
            assert!(err.contains("already exists"), "{point}: {err}");
        } else {
            let (code, _, err) = run(dir.path(), &["config", "get", "defaults.ports"]);
            assert_eq!(code, 1, "{point}: {err}");
            assert!(err.contains("no containers.yaml"), "{point}: {err}");
            let (code, _, err) = run(dir.path(), &["create", "--name", "p"]);
            assert_eq!(code, 0, "{point}: {err}");
            assert!(err.contains("removed"), "{point}: {err}");
        }
        set(dir.path(), "defaults.ports", "8080");
        assert!(
            temps(dir.path()).is_empty(),
            "{point}: {:?}",
            temps(dir.path())
        );
        assert_eq!(state(dir.path()).defaults.ports, vec![8080], "{point}");
        assert_eq!(last_seq(dir.path()), 1, "{point}");
        assert_healthy(dir.path());
    }
}

/// A store whose first of three records (none of them folded into the
/// YAML) has a flipped bit; returns the state a repair must produce (the
/// two later records kept).
fn damaged(dir: &Path) -> Project {
    create(dir);
    set_unfolded(dir, "defaults.ports", "1001");
    set_unfolded(dir, "defaults.user.name", "alice");
    set_unfolded(dir, "defaults.user.password", "pw");
    let mut expected = state(dir);
    expected.defaults.ports.clear();
    let mut bytes = std::fs::read(log_path(dir)).unwrap();
    bytes[ldm::store::record::HEADER_LEN + 16 + 3] ^= 0x04;
    std::fs::write(log_path(dir), &bytes).unwrap();
    expected
}

#[test]
fn repair_killed_at_each_step_can_be_run_again() {
    for point in COMPACTION {
        let dir = tempdir();
        let expected = damaged(dir.path());
        let broken = std::fs::read(log_path(dir.path())).unwrap();
        die_at(dir.path(), point, &["doctor", "--repair"], None);
        let (code, out, err) = run(dir.path(), &["doctor", "--repair"]);
        assert_eq!(code, 0, "{point}: {out}{err}");
        assert_eq!(state(dir.path()), expected, "{point}");
        assert_eq!(last_seq(dir.path()), 3, "{point}");
        let backups: Vec<_> = files(dir.path())
            .into_iter()
            .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.broken-"))
            .collect();
        assert!(
            backups.iter().any(|(_, f)| f.bytes == broken),
            "{point}: no backup"
        );
        set(dir.path(), "defaults.ports", "9");
        assert!(
            temps(dir.path()).is_empty(),
            "{point}: {:?}",
            temps(dir.path())
        );
        assert_eq!(last_seq(dir.path()), 4, "{point}");
        assert_healthy(dir.path());
    }
}

/// DESIGN.md, "Files": any writer removes leftover temp files while it holds
/// the lock; `doctor --repair` takes the lock and writes, yet leaves them.
#[test]
fn repair_removes_temp_files_of_an_interrupted_command() {
    let dir = tempdir();
    damaged(dir.path());
    die_at(
        dir.path(),
        "compact.yaml.written",
        &["doctor", "--repair"],
        None,
    );
    assert_eq!(temps(dir.path()).len(), 1);
    let (code, out, err) = run(dir.path(), &["doctor", "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        temps(dir.path()).is_empty(),
        "left by the repair: {:?}",
        temps(dir.path())
    );
}

/// DESIGN.md, "Repair": once the repair's `containers.yaml` is renamed in,
/// its mark is past every valid record of the damaged log, so the damage
/// lies among folded records: readers use the YAML and the next writer
/// replaces the log.
#[test]
fn repair_killed_after_the_new_yaml_is_in_leaves_a_readable_project() {
    let mut failures = Vec::new();
    for point in &COMPACTION[2..] {
        let dir = tempdir();
        let expected = damaged(dir.path());
        die_at(dir.path(), point, &["doctor", "--repair"], None);
        let (code, out, err) = run(dir.path(), &["config", "get", "defaults.user.name"]);
        if code != 0 || out.trim() != "alice" {
            failures.push(format!("{point}: config get exited {code}: {err}"));
            continue;
        }
        assert_eq!(state(dir.path()), expected, "{point}");
        let (code, _, err) = run(dir.path(), &["config", "set", "defaults.ports", "9"]);
        assert_eq!(code, 0, "{point}: {err}");
        assert_healthy(dir.path());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every fail point of the fold after a commit, in order.
const FOLD: [&str; 5] = [
    "fold.yaml.written",
    "fold.yaml.synced",
    "fold.yaml.renamed",
    "fold.base.renamed",
    "fold.yaml.dir-synced",
];

/// DESIGN.md, "Fold": the commit is acknowledged before the fold starts, so
/// a crash anywhere in it keeps the change, once; a crash after the rename
/// leaves a YAML that says it is ldm's, whose stale base is rewritten.
#[test]
fn fold_after_a_commit_killed_at_each_step_keeps_the_commit() {
    for go_yaml in [false, true] {
        for point in FOLD {
            let dir = tempdir();
            prepare(dir.path(), go_yaml);
            let (mut expected, pre_seq) = (state(dir.path()), last_seq(dir.path()));
            die_at(
                dir.path(),
                point,
                &["config", "set", "defaults.user.name", "folded"],
                None,
            );
            expected.defaults.user.as_mut().unwrap().name = Some("folded".into());
            check_after_crash(dir.path(), point, &expected, pre_seq + 1);
            // The YAML a person or lxc-dev-manager reads is current again.
            let text = std::fs::read_to_string(yaml_path(dir.path())).unwrap();
            assert!(text.contains("4242"), "{point}: {text}");
        }
    }
}

/// Every fail point of the fold of a merge, in order.
const MERGE: [&str; 6] = [
    "merge.yaml.written",
    "merge.yaml.synced",
    "merge.yaml.renamed",
    "merge.base.renamed",
    "merge.yaml.dir-synced",
    "merge.folded",
];

/// DESIGN.md, "Other writers": a writer that finds lxc-dev-manager's file
/// and dies while folding the merge leaves a state from which the next
/// writer comes to the same merge: the file's change and ldm's both kept,
/// the conflicting field the file's way and ldm's value kept beside the log.
#[test]
fn merge_killed_at_each_step_comes_to_the_same_result_and_keeps_the_dropped_value() {
    for point in MERGE {
        let dir = tempdir();
        let dir = dir.path();
        create(dir);
        set(dir, "defaults.ports", "1000");
        // ldm's changes the YAML does not have yet.
        set_unfolded(dir, "defaults.ports", "2000");
        set_unfolded(dir, "defaults.user.name", "ldm-user");
        // lxc-dev-manager rewrites the file: no mark, its own ports.
        go_tool_write(dir, |t| t.replace("- 1000", "- 3000"));
        let (code, _, err) = run_env(
            dir,
            &["config", "set", "defaults.user.password", "pw"],
            &[("LDM_FAILPOINT", point)],
        );
        assert_ne!(code, 0, "{point}: did not abort: {err}");
        // Whatever the crash left, every command agrees on the merge.
        for _ in 0..2 {
            let p = state(dir);
            assert_eq!(
                p.defaults.ports,
                vec![3000],
                "{point}: the file's later write wins"
            );
            let user = p.defaults.user.clone().unwrap();
            assert_eq!(
                user.name.as_deref(),
                Some("ldm-user"),
                "{point}: ldm's change kept"
            );
            let (code, _, err) = run(dir, &["config", "set", "defaults.user.password", "pw"]);
            assert_eq!(code, 0, "{point}: {err}");
        }
        assert_eq!(
            state(dir).defaults.user.unwrap().password.as_deref(),
            Some("pw")
        );
        let dropped: Vec<_> = files(dir)
            .into_iter()
            .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.dropped-"))
            .collect();
        assert!(!dropped.is_empty(), "{point}: ldm's 2000 was not kept");
        assert!(
            dropped
                .iter()
                .any(|(_, f)| String::from_utf8_lossy(&f.bytes).contains("2000")),
            "{point}"
        );
        assert!(temps(dir).is_empty(), "{point}: {:?}", temps(dir));
        assert_healthy(dir);
    }
}
