//! Helpers shared by the tests that run the real `ldm` binary.
//!
//! Every command runs with `-C DIR`, with the caller's `LDM_*` variables
//! removed, `LDM_LXC` pointing at a program that does not exist and
//! `LXD_DIR` at a folder without LXD's socket, so that `doctor` never talks
//! to a real LXD (it reports "LXD unchecked" and judges
//! the files alone).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ldm::model::Project;
use ldm::store::{recover, Options, OsFs, Paths, Store};
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ldm");

/// A fresh, empty folder.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("ldm-it-")
        .tempdir()
        .expect("create a temp folder")
}

/// `ldm` as a plain std command: no `-C`, a clean environment.
pub fn ldm_bare() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LDM_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("LDM_LXC", "/nonexistent/ldm-tests/lxc");
    // The API backend's server and client configuration: nowhere either.
    cmd.env("LXD_DIR", "/nonexistent/ldm-tests/lxd");
    cmd.env("LXD_CONF", "/nonexistent/ldm-tests/lxc-config");
    cmd.env("NO_COLOR", "1");
    // What ldm keeps in the user's own folders stays with the tests.
    let user = user_dirs_root();
    cmd.env("XDG_STATE_HOME", user.join("state"));
    cmd.env("XDG_CACHE_HOME", user.join("cache"));
    cmd
}

/// `ldm -C dir` as a std command, for spawning and killing. It also runs
/// in `dir`, so that nothing (not even a core dump) lands elsewhere.
pub fn ldm_std(dir: &Path) -> std::process::Command {
    let mut cmd = ldm_bare();
    cmd.arg("-C").arg(dir);
    if dir.is_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// `ldm -C dir` as an assert_cmd command.
pub fn ldm(dir: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(ldm_std(dir))
}

/// Runs `ldm -C dir ARGS...` and returns (exit code, stdout, stderr);
/// panics if it died by a signal.
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = ldm_std(dir).args(args).output().expect("run ldm");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("ldm {args:?} died: {:?}", out.status));
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`] with extra environment variables.
pub fn run_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = ldm_std(dir)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run ldm");
    let code = out.status.code().unwrap_or(128 + 6);
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `containers.yaml` as lxc-dev-manager does (DESIGN.md, "Other
/// writers"): takes its flock on `containers.yaml.lock`, reads the file,
/// writes the whole new file (`edit` of the old text, minus ldm's mark,
/// which the Go tool drops, laid out as its yaml.v3 writes: [`go_layout`])
/// to a temp file and renames it into place.
pub fn go_tool_write(dir: &Path, edit: impl FnOnce(&str) -> String) {
    let lock = go_lock(dir);
    let text = std::fs::read_to_string(yaml_path(dir)).expect("read containers.yaml");
    let without_mark: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("ldm:") && !l.starts_with("  generation:") && !l.starts_with("  seq:")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let tmp = dir.join(".containers.yaml.tmp.go");
    std::fs::write(&tmp, go_layout(&edit(&without_mark))).expect("write the temp file");
    std::fs::rename(&tmp, yaml_path(dir)).expect("rename into place");
    drop(lock);
}

/// `text` (2-space indents, block sequences at their key's indent, as ldm
/// writes) laid out as lxc-dev-manager's yaml.v3 writes the same data:
/// 4-space indents, sequence items indented under their key.
pub fn go_layout(text: &str) -> String {
    text.lines()
        .map(|l| {
            let n = l.len() - l.trim_start_matches(' ').len();
            let rest = &l[n..];
            let indent = if rest.starts_with("- ") {
                2 * n + 4
            } else {
                2 * n
            };
            format!("{}{rest}\n", " ".repeat(indent))
        })
        .collect()
}

/// Takes lxc-dev-manager's lock as it does (`flock` on
/// `containers.yaml.lock`, created 0644 if missing); released on drop.
pub fn go_lock(dir: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(dir.join("containers.yaml.lock"))
        .expect("open containers.yaml.lock");
    // SAFETY: flock on a file descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "ldm {args:?} failed:\n{err}");
    out
}

/// `ldm config set KEY VALUE`, which must succeed.
pub fn set(dir: &Path, key: &str, value: &str) {
    ok(dir, &["config", "set", key, value]);
}

/// `ldm config set KEY VALUE` with no fold after the commit: the change
/// stays in the log only, as in a project too big to fold each time.
pub fn set_unfolded(dir: &Path, key: &str, value: &str) {
    let out = ldm_std(dir)
        .env("LDM_FOLD_BYTES", "0")
        .args(["config", "set", key, value])
        .output()
        .expect("run ldm");
    assert!(out.status.success(), "config set {key}: {out:?}");
}

/// `ldm config get KEY --json`'s value.
pub fn get(dir: &Path, key: &str) -> serde_json::Value {
    let out = ok(dir, &["config", "get", key, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("config get --json is JSON");
    v["value"].clone()
}

/// Starts a project `p` in `dir` with `ldm create`.
pub fn create(dir: &Path) {
    ok(dir, &["create", "--name", "p"]);
}

/// Writes a `containers.yaml` as the Go tool would (no `ldm:` mark, its
/// layout), with containers `c0..c{n-1}`.
pub fn write_go_yaml(dir: &Path, n: usize) {
    let mut text = String::from("project: p\ndefaults:\n    ports: []\ncontainers:\n");
    for i in 0..n {
        text.push_str(&format!("    c{i}:\n        image: img\n"));
    }
    std::fs::write(dir.join("containers.yaml"), text).expect("write containers.yaml");
}

/// One file of a folder: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Content.
    pub bytes: Vec<u8>,
    /// `st_mode & 0o7777`.
    pub mode: u32,
}

/// Every regular file directly in `dir`, by name.
pub fn files(dir: &Path) -> BTreeMap<OsString, FileState> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list folder") {
        let entry = entry.expect("folder entry");
        let meta = entry.metadata().expect("stat");
        if meta.is_file() {
            out.insert(
                entry.file_name(),
                FileState {
                    bytes: std::fs::read(entry.path()).expect("read file"),
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
    out
}

/// Like [`files`], but the content of `containers.lock` is blanked: every
/// command that takes the lock writes its "pid N (command)" note there,
/// even one that then refuses to change anything. Its presence still counts.
pub fn data_files(dir: &Path) -> BTreeMap<OsString, FileState> {
    let mut out = files(dir);
    if let Some(lock) = out.get_mut(std::ffi::OsStr::new("containers.lock")) {
        lock.bytes.clear();
    }
    out
}

/// Like [`files`], without the load cache, which readers may refresh
/// (the only file a read-only command writes).
pub fn files_but_cache(dir: &Path) -> BTreeMap<OsString, FileState> {
    let mut out = files(dir);
    out.remove(std::ffi::OsStr::new(".containers.cache"));
    out
}

/// Asserts two snapshots are equal, naming the first file that differs.
pub fn assert_same(
    before: &BTreeMap<OsString, FileState>,
    after: &BTreeMap<OsString, FileState>,
    what: &str,
) {
    let names: Vec<_> = before.keys().chain(after.keys()).collect();
    for name in names {
        assert_eq!(
            before.get(name),
            after.get(name),
            "{what}: {name:?} changed (before: {:?}, after: {:?})",
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
    }
}

/// Names of compaction temp files (`.containers.*.tmp-PID`) in `dir`.
pub fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".containers.") && n.contains(".tmp-"))
        .collect()
}

/// The project state as the library reads it (no lock, no writes).
pub fn state(dir: &Path) -> Project {
    Store::open(paths(dir), Options::default())
        .read()
        .unwrap_or_else(|e| panic!("read the store in {}: {e}", dir.display()))
}

/// Sequence number of the last record in the state (YAML mark or log).
pub fn last_seq(dir: &Path) -> u64 {
    recover::load(&OsFs::strict(), &paths(dir))
        .unwrap_or_else(|e| panic!("load the store in {}: {e}", dir.display()))
        .last_seq
}

/// Where ldm keeps the derived files of the project in `dir` (the user's
/// own folders, per checkout), as the binary finds them.
pub fn derived(dir: &Path) -> ldm::store::Derived {
    ldm::store::Derived::for_checkout(&user_dirs(), dir)
        .unwrap_or_else(|e| panic!("no state folder for {}: {e}", dir.display()))
}

/// Where the tests' ldm keeps the user's own state and cache (the
/// binary's `XDG_STATE_HOME` and `XDG_CACHE_HOME` are under it).
fn user_dirs_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ldm-user")
}

/// The user's folders the binary run by these tests uses.
pub fn user_dirs() -> ldm::user_state::UserDirs {
    let root = user_dirs_root();
    ldm::user_state::UserDirs {
        state: root.join("state").join("ldm"),
        cache: root.join("cache").join("ldm"),
    }
}

/// The project's files in `dir` as the binary run by these tests finds
/// them (its derived files in [`user_dirs`]): a store opened in the test
/// process and one in the binary share the base and the load cache.
pub fn paths(dir: &Path) -> Paths {
    Paths::with_derived(dir, derived(dir))
}

/// The base of the project in `dir` (what ldm last folded).
pub fn base_path(dir: &Path) -> PathBuf {
    derived(dir).base()
}

/// The load cache of the project in `dir`.
pub fn cache_path(dir: &Path) -> PathBuf {
    derived(dir).cache_file()
}

/// `containers.log` in `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("containers.log")
}

/// `containers.yaml` in `dir`.
pub fn yaml_path(dir: &Path) -> PathBuf {
    dir.join("containers.yaml")
}

/// Byte offset and length of every complete record of the log in `dir`.
pub fn records(dir: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = std::fs::read(log_path(dir)).expect("read containers.log");
    let scan = ldm::store::log::scan(
        &bytes[ldm::store::record::HEADER_LEN..],
        ldm::store::log::FIRST_RECORD,
        None,
    );
    scan.entries
        .iter()
        .map(|e| (e.seq, e.offset, e.len))
        .collect()
}

/// Rewrites the header of the log in `dir` as ldm wrote it before log
/// format version 3 (the same 52-byte layout, version 2), keeping its
/// generation, identity and `prev_seq`; returns the header as it was.
pub fn downgrade_log_to_v2(dir: &Path) -> ldm::store::record::Header {
    use ldm::store::record;
    let mut log = std::fs::read(log_path(dir)).expect("read containers.log");
    let h = record::decode_header(&log).expect("a readable header");
    assert_eq!(h.version, record::VERSION, "{h:?}");
    let (id, prev_seq) = (h.id.expect("an identity"), h.prev_seq.expect("prev_seq"));
    let v2 = record::encode_header_v2(h.generation, &id, prev_seq);
    log[..record::HEADER_LEN].copy_from_slice(&v2);
    std::fs::write(log_path(dir), log).expect("write containers.log");
    h
}

/// `ldm doctor --json`, parsed; the exit code with it.
pub fn doctor_json(dir: &Path) -> (i32, serde_json::Value) {
    let (code, out, err) = run(dir, &["doctor", "--json"]);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{out}\n{err}"));
    (code, v)
}

/// Asserts `ldm doctor` finds nothing but "ok": no damage, no warning.
pub fn assert_healthy(dir: &Path) {
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 0, "doctor: {report:#}");
    assert_eq!(report["healthy"], true, "{report:#}");
    for f in report["findings"].as_array().expect("findings") {
        assert_eq!(f["severity"], "ok", "doctor finding: {f:#}");
    }
}

/// A tiny deterministic PRNG (xorshift64*), so runs repeat.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; seed 0 is remapped.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
pub mod api;
