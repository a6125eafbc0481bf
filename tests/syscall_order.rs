//! The real binary's write, fsync and rename order, seen by strace (issue 5).
//!
//! The FaultFs tests prove the store is right *if* `OsFs` does what the
//! trait says; this checks the system calls themselves: a commit's
//! fdatasync of containers.log follows its write and precedes the exit, and
//! `ldm compact` writes and syncs each temp file, renames it, and fsyncs the
//! folder, YAML first, then the log.
//!
//! These tests need strace, so they are `#[ignore]`d (`cargo test --locked`
//! lists them with the reason); `cargo test --test syscall_order --
//! --ignored` runs them, and without a working strace they fail and say so.
//! `.ci/run` installs strace and runs them.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One system call that matters here, with fds resolved to paths.
impl From<(String, String)> for Call {
    fn from((a, b): (String, String)) -> Call {
        Call::Rename(a, b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Write(String),
    Fdatasync(String),
    Fsync(String),
    Truncate(String),
    Rename(String, String),
    /// `renameat2(RENAME_EXCHANGE)`: the two names swap files.
    Exchange(String, String),
    Exit,
}

/// Runs `ldm -C dir args` under strace; panics, saying what is missing, if
/// strace is not installed or cannot trace here.
fn trace(dir: &Path, args: &[&str]) -> Vec<Call> {
    trace_with(dir, args, &[])
}

/// [`trace`] with extra environment variables.
fn trace_with(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Vec<Call> {
    let mut ldm = Command::new(assert_cmd::cargo::cargo_bin("ldm"));
    ldm.arg("-C")
        .arg(dir)
        .args(args)
        .env("LDM_AUTO_COMPACT_BYTES", "100000000")
        .envs(envs.iter().copied());
    trace_command(&ldm, &dir.with_extension("strace"))
}

/// Runs `ldm` (program, arguments and environment of `ldm`) under strace,
/// its output in `out_file`.
fn trace_command(ldm: &Command, out_file: &Path) -> Vec<Call> {
    if let Err(e) = Command::new("strace").arg("-V").output() {
        panic!("this test needs strace, which cannot be run ({e}): install it (apt-get install strace)");
    }
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-e",
        "trace=openat,write,pwrite64,fdatasync,fsync,rename,renameat,renameat2,ftruncate,exit_group",
        "-o",
    ])
    .arg(out_file)
    .arg(ldm.get_program())
    .args(ldm.get_args());
    if let Some(d) = ldm.get_current_dir() {
        cmd.current_dir(d);
    }
    for (k, v) in ldm.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let args: Vec<_> = ldm.get_args().collect();
    let out = cmd.output().unwrap();
    let text = std::fs::read_to_string(out_file).unwrap_or_default();
    assert!(
        !text.is_empty(),
        "this test needs strace to trace the ldm binary, and it could not (ptrace not permitted?): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(
        out.status.success(),
        "ldm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The load cache is written best effort, unsynced, whenever a read
    // finds it cannot vouch yet (a YAML written within the racy window):
    // timing decides, and no promise of these tests is about it.
    parse(&text)
        .into_iter()
        .filter(|c| !touches_load_cache(c))
        .collect()
}

/// Whether `c` writes or renames the load cache (`cache`, or its temp
/// file, in the user's cache folder: `checkouts/ID/`).
fn touches_load_cache(c: &Call) -> bool {
    let is_cache = |p: &str| {
        let path = Path::new(p);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let in_checkout = path
            .parent()
            .and_then(|d| d.parent())
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "checkouts");
        in_checkout && (name == "cache" || name.starts_with(".tmp-cache-"))
    };
    match c {
        Call::Write(p) | Call::Fsync(p) | Call::Fdatasync(p) => is_cache(p),
        Call::Rename(a, b) | Call::Exchange(a, b) => is_cache(a) || is_cache(b),
        _ => false,
    }
}

/// Quoted strings of a strace argument list, in order.
fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Parses `strace -f` output: joins `<unfinished ...>` with `<... resumed>`,
/// maps each fd to the path of the `openat` that last returned it.
fn parse(text: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut fds: HashMap<i64, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<... ") {
            let Some((_, tail)) = rest.split_once("resumed>") else {
                continue;
            };
            format!("{}{}", pending.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_string()
        };
        let Some((name, after)) = full.split_once('(') else {
            continue;
        };
        let (args, ret) = after.rsplit_once(" = ").unwrap_or((after, "?"));
        let ret: i64 = ret
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .parse()
            .unwrap_or(-1);
        let fd_path = |fds: &HashMap<i64, String>| {
            let fd: i64 = args
                .split([',', ')'])
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .unwrap_or(-1);
            fds.get(&fd).cloned().unwrap_or_else(|| format!("fd {fd}"))
        };
        match name {
            "openat" if ret >= 0 => {
                if let Some(p) = quoted(args).first() {
                    fds.insert(ret, p.clone());
                }
            }
            "write" | "pwrite64" if ret > 0 => calls.push(Call::Write(fd_path(&fds))),
            "fdatasync" if ret == 0 => calls.push(Call::Fdatasync(fd_path(&fds))),
            "fsync" if ret == 0 => calls.push(Call::Fsync(fd_path(&fds))),
            "ftruncate" if ret == 0 => calls.push(Call::Truncate(fd_path(&fds))),
            "rename" | "renameat" | "renameat2" if ret == 0 => {
                let q = quoted(args);
                if q.len() == 2 {
                    calls.push(if args.contains("RENAME_EXCHANGE") {
                        Call::Exchange(q[0].clone(), q[1].clone())
                    } else {
                        Call::Rename(q[0].clone(), q[1].clone())
                    });
                }
            }
            "exit_group" => calls.push(Call::Exit),
            _ => {}
        }
    }
    calls
}

fn ldm(dir: &Path, args: &[&str]) {
    let out = assert_cmd::Command::cargo_bin("ldm")
        .unwrap()
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir(&dir).unwrap();
    ldm(&dir, &["create", "--name", "proj"]);
    (tmp, dir)
}

/// Checks that `want` occur in `calls` in this order (other calls may come
/// between); on failure shows the whole sequence.
fn assert_in_order(calls: &[Call], want: &[Call]) {
    let mut at = 0;
    for w in want {
        match calls[at..].iter().position(|c| c == w) {
            Some(i) => at += i + 1,
            None => panic!(
                "expected {w:?} after call #{at} in:\n{}",
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("  #{i} {c:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs strace; run with: cargo test --test syscall_order -- --ignored"]
fn commit_fdatasyncs_the_log_after_writing_it_and_before_exiting() {
    let (_tmp, dir) = project();
    // Without the fold after the commit (a big project).
    let calls = trace_with(
        &dir,
        &["config", "set", "defaults.user.name", "x"],
        &[("LDM_FOLD_BYTES", "0")],
    );
    let log = s(&dir.join("containers.log"));
    assert_in_order(
        &calls,
        &[
            Call::Write(log.clone()),
            Call::Fdatasync(log.clone()),
            Call::Exit,
        ],
    );
    // Exactly one write (the whole commit) and nothing written after the sync.
    let writes: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i] == Call::Write(log.clone()))
        .collect();
    let sync = calls
        .iter()
        .position(|c| *c == Call::Fdatasync(log.clone()))
        .unwrap();
    assert_eq!(writes.len(), 1, "{calls:?}");
    assert!(writes[0] < sync);
    // Nothing else is written, renamed or truncated in the project folder.
    let yaml = s(&dir.join("containers.yaml"));
    assert!(
        !calls.iter().any(
            |c| matches!(c, Call::Write(p) | Call::Truncate(p) if *p == yaml)
                || matches!(c, Call::Rename(..))
        ),
        "{calls:?}"
    );
}

/// Where the binary keeps the base of the project in `dir` (the tests run
/// it with their own HOME).
fn base_of(dir: &Path) -> PathBuf {
    ldm::store::Paths::in_dir(dir)
        .base()
        .expect("a state folder for the base")
}

/// The fold after a commit (DESIGN.md, "Fold"): only once the record is
/// durable; the new YAML is fdatasynced before it is swapped in; the
/// project folder's fsync makes it durable before the base names it; the
/// base is fdatasynced before its rename and its folder fsynced after;
/// nothing after.
#[test]
#[ignore = "needs strace; run with: cargo test --test syscall_order -- --ignored"]
fn the_fold_after_a_commit_comes_after_its_fdatasync_and_syncs_before_each_rename() {
    let (_tmp, dir) = project();
    let calls = trace(&dir, &["config", "set", "defaults.user.name", "x"]);
    let (log, yaml, base, folder) = (
        s(&dir.join("containers.log")),
        s(&dir.join("containers.yaml")),
        s(&base_of(&dir)),
        s(&dir),
    );
    let state = s(base_of(&dir).parent().unwrap());
    let swaps: Vec<(String, String)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Exchange(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    let renames: Vec<(String, String)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Rename(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(swaps.len(), 1, "{calls:?}");
    assert_eq!(renames.len(), 1, "{calls:?}");
    assert_eq!((&swaps[0].1, &renames[0].1), (&yaml, &base), "{calls:?}");
    let yaml_tmp = swaps[0].0.clone();
    let base_tmp = renames[0].0.clone();
    assert!(yaml_tmp.contains("/.containers.yaml.tmp-"), "{yaml_tmp}");
    assert_in_order(
        &calls,
        &[
            Call::Write(log.clone()),
            Call::Fdatasync(log.clone()),
            Call::Write(yaml_tmp.clone()),
            Call::Fdatasync(yaml_tmp.clone()),
            Call::Exchange(yaml_tmp.clone(), yaml.clone()),
            Call::Fsync(folder.clone()),
            Call::Write(base_tmp.clone()),
            Call::Fdatasync(base_tmp.clone()),
            Call::Rename(base_tmp.clone(), base.clone()),
            Call::Fsync(state.clone()),
            Call::Exit,
        ],
    );
    let last_fsync = calls
        .iter()
        .rposition(|c| *c == Call::Fsync(state.clone()))
        .unwrap();
    assert!(
        !calls[last_fsync..].iter().any(|c| matches!(
            c,
            Call::Write(_) | Call::Rename(..) | Call::Exchange(..) | Call::Truncate(_)
        )),
        "written after the last fsync: {calls:?}"
    );
}

#[test]
#[ignore = "needs strace; run with: cargo test --test syscall_order -- --ignored"]
fn compaction_syncs_each_temp_renames_it_then_fsyncs_the_folder() {
    let (_tmp, dir) = project();
    ldm(&dir, &["config", "set", "defaults.user.name", "x"]);
    let calls = trace(&dir, &["compact"]);
    let (yaml, log, folder, base) = (
        s(&dir.join("containers.yaml")),
        s(&dir.join("containers.log")),
        s(&dir),
        s(&base_of(&dir)),
    );
    let state = s(base_of(&dir).parent().unwrap());
    // The temp files are named after the pid: find them from the renames.
    let moved: Vec<(String, String)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Rename(a, b) | Call::Exchange(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(moved.len(), 3, "{calls:?}");
    let (yaml_tmp, base_tmp, log_tmp) =
        (moved[0].0.clone(), moved[1].0.clone(), moved[2].0.clone());
    assert!(yaml_tmp.contains("/.containers.yaml.tmp-"), "{yaml_tmp}");
    assert!(log_tmp.contains("/.containers.log.tmp-"), "{log_tmp}");
    assert_in_order(
        &calls,
        &[
            Call::Write(yaml_tmp.clone()),
            Call::Fdatasync(yaml_tmp.clone()),
            Call::Exchange(yaml_tmp.clone(), yaml.clone()),
            Call::Fsync(folder.clone()),
            Call::Write(base_tmp.clone()),
            Call::Fdatasync(base_tmp.clone()),
            Call::Rename(base_tmp.clone(), base.clone()),
            Call::Fsync(state.clone()),
            Call::Write(log_tmp.clone()),
            Call::Fdatasync(log_tmp.clone()),
            Call::Rename(log_tmp.clone(), log.clone()),
            Call::Fsync(folder.clone()),
            Call::Exit,
        ],
    );
    // No write to a temp after its sync, and the old files are never written in place.
    for tmp in [&yaml_tmp, &log_tmp, &base_tmp] {
        let sync = calls
            .iter()
            .position(|c| *c == Call::Fdatasync(tmp.clone()))
            .unwrap();
        assert!(
            !calls[sync..].contains(&Call::Write(tmp.clone())),
            "{tmp} written after its fdatasync: {calls:?}"
        );
    }
    assert!(
        !calls
            .iter()
            .any(|c| *c == Call::Write(yaml.clone()) || *c == Call::Write(log.clone())),
        "{calls:?}"
    );
}

/// Issue 26, item 1: `container snapshot create` on a 10-snapshot project
/// is two commits (its intent and its outcome), and each commit folded:
/// 8 syncs and 4 renames in the project folder, against lxc-dev-manager's 1
/// and 1. It folds once now, after its last commit: at most 5 syncs and 2
/// renames in the project folder (here 4 and 1: the two commits' log
/// fdatasyncs, the new YAML's, the folder's; the YAML's swap; the base's
/// fdatasync, rename and folder fsync are in the user's state folder).
#[test]
#[ignore = "needs strace; run with: cargo test --test syscall_order -- --ignored"]
fn a_snapshot_create_folds_once_after_its_last_commit() {
    let env = common::api::Env::new("web");
    env.seed_container("dev", "img", false);
    let names: Vec<String> = (1..9).map(|i| format!("s{i}")).collect();
    let mut store = ldm::store::Store::open(env.paths(), ldm::store::Options::default());
    store
        .commit(|_| {
            let ms = names
                .iter()
                .map(|n| ldm::model::Mutation::SnapshotAdded {
                    container: "dev".into(),
                    name: n.clone(),
                    description: "d".into(),
                    created_at: "2026-01-01T00:00:01Z".into(),
                    pending: None,
                })
                .collect();
            Ok::<_, ldm::store::StoreError>((ms, ()))
        })
        .unwrap();
    drop(store);
    let mut all: Vec<&str> = vec!["initial-state"];
    all.extend(names.iter().map(String::as_str));
    env.seed_instance(&env.lxd("dev"), false, &all);
    assert_eq!(env.project().containers["dev"].snapshots.len(), 9);
    // The seeding above went through this process's state folder; one
    // command of the binary's own puts its base in place.
    env.ok(&["compact"]);
    // The seeded instance has no marks: ldm's first change to it marks it
    // and records where it is (once: a `PATCH`, and the checkout's
    // `where/` file in the user's state folder; DESIGN.md, "Ownership").
    // That first change is the 10th snapshot, so the traced one is a
    // snapshot create's own.
    env.ok(&["container", "snapshot", "create", "dev", "s9"]);
    assert_eq!(env.project().containers["dev"].snapshots.len(), 10);

    let cmd = env.command(&["container", "snapshot", "create", "dev", "s10"], &[]);
    let calls = trace_command(&cmd, &env.dir.with_extension("strace"));
    assert_eq!(env.project().containers["dev"].snapshots.len(), 11);
    let here = s(&env.dir);
    let in_folder = |p: &str| p == here || p.starts_with(&format!("{here}/"));
    let syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::Fsync(p) | Call::Fdatasync(p) if in_folder(p)))
        .collect();
    let renames: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::Rename(_, b) | Call::Exchange(_, b) if in_folder(b)))
        .collect();
    // ldm's own, wherever they are (the API test double runs in this
    // process, not under strace).
    let all_syncs = calls
        .iter()
        .filter(|c| matches!(c, Call::Fsync(_) | Call::Fdatasync(_)))
        .count();
    let all_renames = calls
        .iter()
        .filter(|c| matches!(c, Call::Rename(..) | Call::Exchange(..)))
        .count();
    println!(
        "snapshot create: {} syncs and {} renames in the project folder ({all_syncs} and {all_renames} in all)",
        syncs.len(),
        renames.len()
    );
    assert!(syncs.len() <= 5, "{syncs:#?}");
    assert!(renames.len() <= 2, "{renames:#?}");
    // And the base: its fdatasync and rename, and its folder's fsync.
    assert_eq!(
        (all_syncs, all_renames),
        (syncs.len() + 2, renames.len() + 1)
    );
    // One fold: the YAML is written once, after the second commit's sync.
    let log = s(&env.dir.join("containers.log"));
    let log_syncs: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i] == Call::Fdatasync(log.clone()))
        .collect();
    assert_eq!(log_syncs.len(), 2, "{calls:#?}");
    let swaps: Vec<usize> = (0..calls.len())
        .filter(|&i| matches!(calls[i], Call::Exchange(..)))
        .collect();
    assert_eq!(swaps.len(), 1, "{calls:#?}");
    assert!(swaps[0] > log_syncs[1], "{calls:#?}");
}
