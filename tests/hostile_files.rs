//! Issue 12: trust nothing on disk that ldm did not check. One test per case
//! of the issue (`..._issue_12_case_N`): the command's exit code and message,
//! target files byte-identical, no hang (every run is bounded by a deadline
//! in the harness, not a sleep). Cases 6 (YAML bombs) are in
//! `tests/yaml_bounds.rs`; 10 and 11 (remote names, control characters in
//! output) with the command tests. Tests that need files owned by another
//! user need root to make them, and say so.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ldm::model::Project;
use ldm::store::{Options, Store, StoreError};

/// Runs `cmd` with a deadline: a hang is a failure, not a stuck test.
fn bounded(mut cmd: Command, limit: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ldm");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ldm_run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ldm_std(dir);
    cmd.args(args);
    bounded(cmd, Duration::from_secs(20))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A uid that is not ours (for files "owned by someone else").
const OTHER_UID: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: lchown reads a NUL-terminated path.
    assert_eq!(
        unsafe { libc::lchown(c.as_ptr(), uid, uid) },
        0,
        "chown {path:?}"
    );
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched_issue_12_case_1() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    let outside = tempdir();
    let rc = outside.path().join(".bashrc");
    std::fs::write(&rc, "export PATH=$HOME/bin:$PATH\n").unwrap();
    let lock = dir.join("containers.lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&rc, &lock).unwrap();
    for args in [
        &["config", "set", "defaults.ports", "1"][..],
        &["compact"],
        &["doctor", "--repair"],
    ] {
        let (code, _, err) = ldm_run(dir, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("containers.lock") && err.contains("symbolic link"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap(),
        "export PATH=$HOME/bin:$PATH\n"
    );
    // A dangling link is not created either.
    let gone = outside.path().join("not-there");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&gone, &lock).unwrap();
    let (code, _, err) = ldm_run(dir, &["config", "set", "defaults.ports", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(!gone.exists(), "ldm created the link's target");
    // lxc-dev-manager's lock is checked the same way.
    std::fs::remove_file(&lock).unwrap();
    let go = dir.join("containers.yaml.lock");
    let _ = std::fs::remove_file(&go);
    std::os::unix::fs::symlink(&rc, &go).unwrap();
    let (code, _, err) = ldm_run(dir, &["config", "set", "defaults.ports", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("containers.yaml.lock") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap(),
        "export PATH=$HOME/bin:$PATH\n"
    );
}

#[test]
fn a_lock_file_removed_while_held_never_yields_two_commits_of_one_seq_issue_12_case_2() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1");
    // This process commits; while it holds the lock, someone removes the
    // lock file and another ldm tries to commit under a new one: it waits
    // for the folder's lock, which this process still holds, and commits
    // after it (DESIGN.md, "Lock protocol").
    let mut store = Store::open(common::paths(dir), Options::default());
    let mut other = None;
    store
        .commit(|_| {
            std::fs::remove_file(dir.join("containers.lock")).unwrap();
            let child = ldm_std(dir)
                .args(["config", "set", "defaults.user.name", "other"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            wait_until_blocked_or_done(child.id());
            other = Some(child);
            Ok::<_, StoreError>((
                vec![ldm::model::Mutation::UserNameSet {
                    container: None,
                    name: Some("mine".into()),
                }],
                (),
            ))
        })
        .expect("the holder still excludes every other writer: its commit stands");
    let out = other.unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "the other ldm: {out:?}");
    // One record per seq, and the other's change came after ours.
    assert_eq!(
        state(dir).defaults.user.unwrap().name.as_deref(),
        Some("other")
    );
    let seqs: Vec<u64> = records(dir).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1, 2, 3], "{seqs:?}");
    assert_healthy(dir);
}

/// Waits until process `pid` waits for a `flock` (a `->` line of
/// /proc/locks) or has exited, at most 10 s.
fn wait_until_blocked_or_done(pid: u32) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        let blocked = locks
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().nth(5) == Some(&pid.to_string()));
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |st| st.contains(") Z "));
        if blocked || gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The real file system, but the append to containers.log first removes
/// containers.lock and lets another ldm try to commit (issue 25, case 3).
struct DeleteLockAtAppend {
    os: ldm::store::OsFs,
    dir: std::path::PathBuf,
    other: std::sync::Mutex<Option<std::process::Child>>,
}

impl ldm::store::Fs for DeleteLockAtAppend {
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
        let mut other = self.other.lock().unwrap();
        if other.is_none() && p.ends_with("containers.log") {
            std::fs::remove_file(self.dir.join("containers.lock")).unwrap();
            let child = ldm_std(&self.dir)
                .args(["config", "set", "defaults.user.name", "other"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            wait_until_blocked_or_done(child.id());
            *other = Some(child);
        }
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
}

/// Issue 25, case 3: `containers.lock` deleted while a writer appends (after
/// its last check of the lock file), and another ldm commits under a new
/// lock file. The append raced the other writer's, and an acknowledged
/// commit was lost. The folder's lock keeps the other writer waiting until
/// this one is done; both commits stand.
#[test]
fn a_lock_file_removed_during_an_append_loses_no_acknowledged_commit_issue_25_case_3() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1");
    let fs = std::sync::Arc::new(DeleteLockAtAppend {
        os: ldm::store::OsFs::strict(),
        dir: dir.to_path_buf(),
        other: std::sync::Mutex::new(None),
    });
    let opts = Options {
        fs: fs.clone(),
        ..Options::default()
    };
    let mut store = Store::open(common::paths(dir), opts);
    store
        .commit(|_| {
            Ok::<_, StoreError>((
                vec![ldm::model::Mutation::UserPasswordSet {
                    container: None,
                    password: Some("mine".into()),
                }],
                (),
            ))
        })
        .expect("acknowledged");
    drop(store);
    let out = fs
        .other
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "the other ldm: {out:?}");
    let user = state(dir).defaults.user.unwrap();
    assert_eq!(
        user.password.as_deref(),
        Some("mine"),
        "the acknowledged commit"
    );
    assert_eq!(user.name.as_deref(), Some("other"));
    let seqs: Vec<u64> = records(dir).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1, 2, 3], "{seqs:?}");
    assert_healthy(dir);
}

#[test]
fn a_running_create_stays_busy_when_the_lock_file_is_replaced_under_it_issue_12_case_2() {
    let env = common::api::Env::new("p");
    env.double.hang(
        lxd_double::Match::new("POST", "/1.0/instances"),
        lxd_double::HangAt::Request,
    );
    let mut child = env.spawn(&["container", "create", "dev", "ubuntu:24.04"], &[]);
    env.wait_hang(Duration::from_secs(20));
    std::fs::remove_file(env.dir.join("containers.lock")).unwrap();
    std::fs::write(env.dir.join("containers.lock"), b"").unwrap();
    let list = env.ok(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["pending"]["interrupted"], false, "{}", list.stdout);
    let r = env.run(&["remove", "dev", "-f"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("busy"), "{}", r.stderr);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root to make a file owned by another user; run with: cargo test --test hostile_files -- --ignored (CI does)"]
fn discovery_refuses_another_users_containers_yaml_unless_trusted_issue_12_case_3() {
    assert!(
        is_root(),
        "this test must run as root (it chowns a file to uid {OTHER_UID})"
    );
    let shared = tempdir();
    let shared = shared.path();
    std::fs::set_permissions(shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    create(shared);
    for name in [
        "containers.yaml",
        "containers.log",
        "containers.lock",
        "containers.yaml.lock",
    ] {
        chown(&shared.join(name), OTHER_UID);
    }
    let before = files(shared);
    let below = shared.join("mine");
    std::fs::create_dir(&below).unwrap();
    // Found by the upward search: refused, naming the file, its owner and the way to trust it.
    let mut cmd = ldm_bare();
    cmd.current_dir(&below)
        .args(["config", "set", "defaults.user.password", "stolen"]);
    let (code, _, err) = bounded(cmd, Duration::from_secs(20));
    assert_eq!(code, 1, "{err}");
    for needle in [
        "containers.yaml",
        "uid 65534",
        "-C",
        "LDM_SAFE_DIRS",
        "ldm create",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
    assert_same(&before, &files(shared), "a refused discovery");
    // Trusted explicitly: -C naming its folder, or LDM_SAFE_DIRS.
    let (code, out, err) = ldm_run(shared, &["config", "get", "defaults.ports"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut cmd = ldm_bare();
    cmd.current_dir(&below)
        .env("LDM_SAFE_DIRS", shared)
        .args(["config", "get", "defaults.ports"]);
    let (code, _, err) = bounded(cmd, Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_forged_load_cache_is_ignored_and_never_reaches_containers_yaml_issue_12_case_4() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    let yaml = std::fs::read(yaml_path(dir)).unwrap();
    // The old key anyone could compute (length and CRC-32), with a body
    // that changes the remote, the ports and the password.
    let forged_body = r#"{"project":{"project":"p","remote":"evil","defaults":{"ports":[6666],"user":{"name":"dev","password":"pwned"}},"containers":{}},"mark":null}"#;
    let old_key = format!(
        "{{\"yaml_len\":{},\"yaml_crc\":{}}}\n",
        yaml.len(),
        crc32fast::hash(&yaml)
    );
    for name in [".containers.cache", ".containers.folded"] {
        std::fs::write(dir.join(name), format!("{old_key}{forged_body}")).unwrap();
        // The new layout with a checksum that does not match its body.
        let sha = ldm::store::snapshot::hex(&ldm::store::snapshot::sha256(&yaml));
        let wrong = format!(
            "{{\"format\":1,\"yaml_len\":{},\"yaml_sha256\":\"{sha}\",\"body_len\":{},\"body_crc\":1}}\n{forged_body}",
            yaml.len(),
            forged_body.len()
        );
        for forged in [format!("{old_key}{forged_body}"), wrong] {
            std::fs::write(dir.join(name), &forged).unwrap();
            assert_eq!(
                get(dir, "defaults.ports"),
                serde_json::json!([3000]),
                "{name}"
            );
            assert_eq!(get(dir, "remote"), serde_json::json!(""), "{name}");
            ok(dir, &["compact"]);
            let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
            assert!(
                !text.contains("evil") && !text.contains("6666") && !text.contains("pwned"),
                "{text}"
            );
        }
    }
}

#[test]
fn a_fifo_in_place_of_a_project_file_never_blocks_a_command_issue_12_case_5() {
    // Where older ldm versions kept derived files: never opened, and
    // removed by the next writer as an older ldm's leftovers.
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    mkfifo(&dir.join(".containers.cache"));
    mkfifo(&dir.join(".containers.folded"));
    let (code, out, err) = ldm_run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = ldm_run(dir, &["config", "set", "defaults.ports", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(dir.join(".containers.folded")).is_err());
    // In place of the log: refused at once, by readers, writers and doctor.
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    std::fs::remove_file(log_path(dir)).unwrap();
    mkfifo(&log_path(dir));
    for args in [
        &["config", "get", "defaults.ports"][..],
        &["config", "set", "defaults.ports", "2"],
        &["doctor"],
    ] {
        let (code, out, err) = ldm_run(dir, args);
        assert_ne!(code, 0, "{args:?}");
        let text = format!("{out}{err}");
        assert!(
            text.contains("containers.log") && text.contains("FIFO"),
            "{args:?}: {text}"
        );
    }
    // The writer that refused released the lock: another one is not kept waiting.
    let (code, _, err) = ldm_run(
        dir,
        &[
            "--lock-timeout",
            "0.5",
            "config",
            "set",
            "defaults.ports",
            "2",
        ],
    );
    assert!(!err.contains("timed out"), "{code}: {err}");
}

#[test]
fn the_lock_files_holder_note_names_the_command_not_its_arguments_issue_12_case_7() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.user.password", "hunter2-secret");
    let note = std::fs::read_to_string(dir.join("containers.lock")).unwrap();
    assert!(!note.contains("hunter2"), "{note}");
    assert!(
        note.contains("(ldm config set)") && note.contains("pid "),
        "{note}"
    );
}

#[test]
fn a_create_that_fails_part_way_leaves_nothing_that_blocks_a_retry_issue_12_case_8() {
    // The disk (or its inodes) runs out after containers.yaml, at the log.
    let dir = tempdir();
    let fs = std::sync::Arc::new(FailAfter::new(dir.path()));
    let opts = Options {
        fs: fs.clone(),
        ..Options::default()
    };
    let Err(e) = Store::create(dir.path(), &Project::new("p", vec![]), opts) else {
        panic!("the log cannot be made, yet create succeeded");
    };
    assert!(e.to_string().contains("No space left"), "{e}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Space is back: a retry succeeds, no "already exists".
    ok(dir.path(), &["create", "--name", "p"]);
    assert_healthy(dir.path());
}

/// The real file system, but creating `.containers.log.tmp-*` fails as on a
/// disk with no inodes left.
struct FailAfter {
    os: ldm::store::OsFs,
}

impl FailAfter {
    fn new(_: &Path) -> FailAfter {
        FailAfter {
            os: ldm::store::OsFs::strict(),
        }
    }
}

impl ldm::store::Fs for FailAfter {
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
        if p.to_string_lossy().contains(".containers.log.tmp-") {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
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
}

#[test]
fn a_restored_older_yaml_is_read_and_doctor_suggests_nothing_that_refuses_issue_12_case_9() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1000");
    let older = std::fs::read(yaml_path(dir)).unwrap();
    set(dir, "defaults.ports", "2000");
    ok(dir, &["compact"]);
    set(dir, "defaults.user.name", "later");
    ok(dir, &["compact"]);
    // The backup put back: the later write, the restore, wins where it differs.
    std::fs::write(yaml_path(dir), &older).unwrap();
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 0, "{report:#}");
    for f in report["findings"].as_array().unwrap() {
        if let Some(hint) = f["hint"].as_str() {
            assert!(
                !hint.contains("--repair"),
                "doctor suggests repair for {f:#}"
            );
        }
    }
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([1000]));
    set(dir, "defaults.user.password", "pw");
    assert_eq!(state(dir).defaults.ports, vec![1000]);
    assert_healthy(dir);
    // When doctor does say "repair", repair works.
    set_unfolded(dir, "defaults.ports", "3");
    set_unfolded(dir, "defaults.ports", "4");
    // Damage in the first of the two unfolded records, a valid one after it.
    let recs = records(dir);
    let (_, offset, _) = recs[recs.len() - 2];
    let mut log = std::fs::read(log_path(dir)).unwrap();
    log[offset as usize + 20] ^= 0x10;
    std::fs::write(log_path(dir), &log).unwrap();
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 2, "{report:#}");
    let hinted = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["hint"] == "ldm doctor --repair");
    assert!(hinted, "{report:#}");
    let (code, out, err) = ldm_run(dir, &["doctor", "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_healthy(dir);
}

#[test]
fn a_symlinked_containers_yaml_is_refused_never_replaced_issue_12_case_12() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "1");
    let elsewhere = tempdir();
    let real = elsewhere.path().join("containers.yaml");
    std::fs::rename(yaml_path(dir), &real).unwrap();
    std::os::unix::fs::symlink(&real, yaml_path(dir)).unwrap();
    let before = std::fs::read(&real).unwrap();
    for args in [
        &["config", "get", "defaults.ports"][..],
        &["config", "set", "defaults.ports", "2"],
        &["compact"],
    ] {
        let (code, _, err) = ldm_run(dir, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("containers.yaml") && err.contains("symbolic link"),
            "{err}"
        );
    }
    assert!(
        std::fs::symlink_metadata(yaml_path(dir))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read(&real).unwrap(), before);
}

#[test]
#[ignore = "needs root to make files owned by another user; run with: cargo test --test hostile_files -- --ignored (CI does)"]
fn project_files_owned_by_another_user_are_refused_even_when_found_directly_issue_12_case_4() {
    assert!(
        is_root(),
        "this test must run as root (it chowns files to uid {OTHER_UID})"
    );
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    // A derived file of an older ldm's layout, someone else's: ldm keeps
    // its own in the user's folders and never reads one from the project
    // folder, whoever owns it.
    ok(dir, &["config", "get", "defaults.ports"]);
    let folded = dir.join(".containers.folded");
    std::fs::write(&folded, b"not ldm's").unwrap();
    chown(&folded, OTHER_UID);
    assert_eq!(std::fs::metadata(&folded).unwrap().uid(), OTHER_UID);
    // Discovered from inside the folder (not trusted): the YAML is read.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut cmd = ldm_bare();
    cmd.current_dir(&sub)
        .args(["config", "get", "defaults.ports"]);
    let (code, out, err) = bounded(cmd, Duration::from_secs(20));
    assert_eq!((code, out.trim()), (0, "3000"), "{err}");
    // A log owned by someone else is refused with the owner named.
    chown(&log_path(dir), OTHER_UID);
    let mut cmd = ldm_bare();
    cmd.current_dir(&sub)
        .args(["config", "set", "defaults.ports", "1"]);
    let (code, _, err) = bounded(cmd, Duration::from_secs(20));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("containers.log") && err.contains("uid 65534"),
        "{err}"
    );
}

/// Issue 25, item 15: a folder named like an ldm temp file
/// (`.containers.yaml.tmp-1/`, from a repository or the container) made every
/// writing command fail (exit 2: it could not remove it) while `doctor` said
/// ok. Writers leave it alone and use fresh temp names; doctor says the same.
#[test]
fn a_folder_named_like_a_temp_file_is_left_alone_and_never_in_the_way_issue_25_case_15() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    let names = [
        ".containers.yaml.tmp-1",
        ".containers.log.tmp-1",
        ".containers.cache.tmp-1",
    ];
    for name in names {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("keep"), b"not ldm's").unwrap();
    }
    set(dir, "defaults.ports", "3001");
    ok(dir, &["compact"]);
    set(dir, "defaults.user.name", "alice");
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([3001]));
    for name in names {
        assert_eq!(
            std::fs::read(dir.join(name).join("keep")).unwrap(),
            b"not ldm's",
            "{name}"
        );
    }
    assert_healthy(dir);
}

/// Issue 22, finding 4: ldm's derived files were keyed by a SHA-256 of
/// `containers.yaml`, which anyone can compute, and lived in the project
/// folder, which a cloned repository or the container (through its mount)
/// can write. Planted there with the right key and checksum (the layout
/// ldm read until now), with another remote, ports and password, they made
/// `config get` show those values and `ldm compact` write them into
/// `containers.yaml`. The derived files live in the user's own folders
/// now; those in the project folder change nothing.
#[test]
fn derived_files_planted_in_the_project_folder_change_nothing_issue_22_case_4() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    set(dir, "defaults.ports", "3000");
    set(dir, "defaults.user.password", "mine");
    let yaml = std::fs::read(yaml_path(dir)).unwrap();
    let text = String::from_utf8(yaml.clone()).unwrap();
    // The mark of the YAML as it is, so that the forgery names this log.
    let mark_line = text.lines().last().unwrap();
    let field = |key: &str| {
        let at = mark_line.find(&format!("{key}: ")).unwrap() + key.len() + 2;
        mark_line[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let body = serde_json::json!({
        "project": {
            "project": "p",
            "remote": "evil",
            "defaults": {"ports": [6666], "user": {"password": "pwned"}},
            "containers": {}
        },
        "mark": {
            "generation": field("generation").parse::<u64>().unwrap(),
            "seq": field("seq").parse::<u64>().unwrap(),
            "log": field("log")
        },
        "written": "by_ldm"
    })
    .to_string();
    let sha = ldm::store::snapshot::hex(&ldm::store::snapshot::sha256(&yaml));
    let forged = format!(
        "{{\"format\":1,\"yaml_len\":{},\"yaml_sha256\":\"{sha}\",\"body_len\":{},\"body_crc\":{}}}\n{body}",
        yaml.len(),
        body.len(),
        crc32fast::hash(body.as_bytes())
    );
    for name in [".containers.cache", ".containers.folded"] {
        std::fs::write(dir.join(name), &forged).unwrap();
    }
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([3000]));
    assert_eq!(get(dir, "remote"), serde_json::json!(""));
    assert_eq!(
        get(dir, "defaults.user.password"),
        serde_json::json!("mine")
    );
    ok(dir, &["compact"]);
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    for planted in ["evil", "6666", "pwned"] {
        assert!(
            !text.contains(planted),
            "{planted} in containers.yaml:\n{text}"
        );
    }
    assert!(text.contains("mine") && text.contains("3000"), "{text}");
}
