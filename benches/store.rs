//! Store benchmarks: the cost of one committed mutation as a ratio to a bare
//! `write` + `fdatasync` of the same bytes, and the cost of loading the state.
//!
//! `cargo bench --bench store`. A plain harness (no criterion): every figure
//! that has a target is a ratio against a baseline measured in the same run,
//! interleaved with it (the arms rotate order each iteration) so that disk
//! and CPU drift hit both alike. Medians throughout.
//!
//! Every ratio is computed one way: the median over iterations of
//! `arm[i] / bare[i]`, each arm's time over the bare arm's time measured
//! next to it in the same iteration ([`paired_ratio`]); never a ratio of two
//! medians. The amortised auto-compaction ratio is the same thing with the
//! compaction's share (its median cost over the commits between two
//! compactions, a constant) added to each iteration's commit time.
//!
//! Arms of the commit measurement, all on files in the same folder:
//! - `bare`: `write` of N bytes then `fdatasync`, on a file kept open in
//!   append mode; N is the encoded size of the record the store writes.
//! - `syscalls`: the syscall sequence an `OsFs` commit makes (lock open,
//!   flock, holder note, two stats, tail read, open+append, open+fdatasync),
//!   written by hand on separate files: the floor for the current design.
//! - `commit`: `Store::commit` of one `PortsSet` on an opened store that has
//!   already loaded (a long-running caller), auto-compaction disabled.
//! - `fresh`: `Store::open` + `commit`, the first load included (one CLI run).
//!
//! Then: load time (`Store::read`, and YAML parse vs log replay apart, plus
//! a serde_json decode of the same state as a measured alternative), the
//! cost of default auto-compaction amortised over the commits between two
//! compactions, and the commit's syscall sequence with parts switched off to
//! show where the time over the bare arm goes.
//!
//! Last, the resync search after damage on crafted bait (`store/resync.rs`;
//! `cargo bench --bench store -- resync` runs only that, up to 64 MiB).
//!
//! Environment: `LDM_BENCH_ITERS` (default 300), `LDM_BENCH_DIR` (parent of
//! the scratch folder; default the cargo target tmp dir, or /var/tmp if that
//! is a tmpfs, where fdatasync would cost nothing).

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldm::model::{Container, Mutation, Project, Snapshot};
use ldm::store::{
    log, record, recover, snapshot, Options, Paths, Store, StoreError, AUTO_COMPACT_MIN_BYTES,
    AUTO_COMPACT_PERCENT,
};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const CONTAINERS: usize = 10;
const LOG_RECORDS: usize = 100;
const STEADY_TARGET: f64 = 1.5;
const FLAT_TOLERANCE: f64 = 1.25;
const LOAD_TARGET_MS: f64 = 20.0;

#[path = "store/resync.rs"]
mod resync;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.iter().any(|a| a == "resync") {
        resync::run(false);
        return;
    }
    let iters: usize = std::env::var("LDM_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let parent = bench_parent();
    let root = tempfile::Builder::new()
        .prefix("ldm-bench-")
        .tempdir_in(&parent)
        .expect("create the scratch folder");
    println!(
        "ldm store bench: folder {} ({}), {iters} iterations per arm, medians; load average {}",
        root.path().display(),
        fs_kind(root.path()),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut rows = Vec::new();
    for &n in &SIZES {
        rows.push(bench_size(root.path(), n, iters));
    }
    report(&rows);
    let dir = root.path().join("attribute");
    fs::create_dir(&dir).expect("create the folder");
    attribute(&dir, rows[0].record_len, iters);
    resync::run(true);
}

/// Everything measured at one state size.
struct Row {
    snapshots: usize,
    record_len: usize,
    yaml_len: u64,
    log_len: u64,
    bare_us: f64,
    /// Median of per-iteration ratios to the bare arm of the same iteration.
    commit_x: f64,
    syscalls_x: f64,
    fresh_x: f64,
    syscalls_us: f64,
    commit_us: f64,
    fresh_us: f64,
    /// Median over iterations of (commit + compaction share) / bare.
    amortised_x: f64,
    load_ms: f64,
    load_min_ms: f64,
    parse_ms: f64,
    decode_ms: f64,
    validate_ms: f64,
    replay_ms: f64,
    json_ms: f64,
    compact_ms: f64,
    trigger_ms: f64,
    amortised_us: f64,
    commits_per_compaction: u64,
}

fn bench_size(root: &Path, n: usize, iters: usize) -> Row {
    let dir = root.join(format!("s{n}"));
    fs::create_dir(&dir).expect("create the project folder");
    let paths = Paths::in_dir(&dir);

    // The state: `n` snapshots over ten containers, written by the store
    // itself into containers.yaml, then LOG_RECORDS records in the log.
    let mut store = Store::create(&dir, &project(n), opts(u64::MAX)).expect("create");
    // One commit per mutation: a commit is one record.
    for i in 0..LOG_RECORDS {
        commit(&mut store, vec![log_mutation(i)]);
    }
    let yaml_len = fs::metadata(&paths.yaml).unwrap().len();
    let base_log_len = fs::metadata(&paths.log).unwrap().len();

    // 2. Load: Store::read, then its two halves on bytes already in memory.
    let load = sample(load_iters(n), || store.read().expect("read"));
    let yaml_bytes = fs::read(&paths.yaml).unwrap();
    let log_bytes = fs::read(&paths.log).unwrap();
    let parse = sample(load_iters(n), || {
        snapshot::parse_yaml(&paths, &yaml_bytes).expect("parse")
    });
    let text = std::str::from_utf8(&yaml_bytes).unwrap();
    let decode = sample(load_iters(n), || snapshot::decode(text).expect("decode"));
    let doc = snapshot::decode(text).unwrap();
    let (base, mark) = (doc.project, doc.mark);
    // What a derived JSON checkpoint of the same state would cost to load
    // (not a store feature: a measured alternative for the report), with a
    // CRC of the YAML bytes to tell whether the checkpoint is current.
    let json = serde_json::to_vec(&base).unwrap();
    let json_load = sample(load_iters(n), || {
        let crc = crc32fast::hash(&yaml_bytes);
        (crc, serde_json::from_slice::<Project>(&json).expect("json"))
    });
    let validate = sample(load_iters(n), || base.validate().expect("valid"));
    let replay = sample_with(
        load_iters(n),
        || base.clone(),
        |mut p| {
            let scan = log::scan(
                &log_bytes[record::HEADER_LEN..],
                log::FIRST_RECORD,
                mark.map(|m| m.seq),
            );
            assert_eq!(scan.entries.len(), LOG_RECORDS);
            recover::replay(&mut p, &scan.entries, &paths).expect("replay");
            (p, scan)
        },
    );

    // 1a. Steady state: one opened store, first load done; three arms
    //     interleaved with rotating order.
    let record_len = log::encode_commit(&[ports(0)], 1).unwrap().len();
    let mut bare = Bare::new(&dir.join("bare.dat"), record_len);
    let mut syscalls = Syscalls::new(&dir, "sys", record_len, Note::Overwrite, true);
    let mut steady = Store::open(paths.clone(), opts(u64::MAX));
    commit(&mut steady, vec![ports(0)]);
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..iters {
        for k in 0..3 {
            let arm = (i + k) % 3;
            let start = Instant::now();
            match arm {
                0 => bare.run(),
                1 => syscalls.run(),
                _ => commit(&mut steady, vec![ports(i + 1)]),
            }
            t[arm].push(start.elapsed());
        }
    }
    drop(steady);
    let [bare_t, syscalls_t, commit_t] = t;

    // 1b. Fresh process: Store::open + commit, first load included. The log
    //     is cut back to its LOG_RECORDS records between runs (untimed) so
    //     that every run replays the same log.
    let fresh_iters = iters.min(fresh_cap(n));
    let (mut fresh_t, mut fresh_bare_t) = (Vec::new(), Vec::new());
    for i in 0..fresh_iters {
        set_len(&paths.log, base_log_len);
        for k in 0..2 {
            let start = Instant::now();
            if (i + k) % 2 == 0 {
                bare.run();
                fresh_bare_t.push(start.elapsed());
            } else {
                let mut s = Store::open(paths.clone(), opts(u64::MAX));
                commit(&mut s, vec![ports(i)]);
                fresh_t.push(start.elapsed());
            }
        }
    }
    set_len(&paths.log, base_log_len);

    // 1c. Default auto-compaction: what one compaction costs, and how many
    //     commits of this record size fall between two of them.
    let mut s = Store::open(paths.clone(), opts(u64::MAX));
    let compact = sample(5, || {
        s.compact().expect("compact");
    });
    let compact_yaml_len = fs::metadata(&paths.yaml).unwrap().len();
    let threshold = AUTO_COMPACT_MIN_BYTES.max(compact_yaml_len * AUTO_COMPACT_PERCENT / 100);
    let commits_per_compaction = (threshold - log::FIRST_RECORD).div_ceil(record_len as u64);
    // And the commit that crosses the threshold, measured directly: fill the
    // log to two records short of it and load with defaults (untimed), then
    // commit twice; the second commit crosses it.
    let trigger = sample_with(
        3,
        || {
            let mut s = Store::open(paths.clone(), opts(u64::MAX));
            let fill = (commits_per_compaction - 2) as usize;
            // One record per commit: the log must grow commit by commit.
            for i in 0..fill {
                commit(&mut s, vec![ports(i)]);
            }
            let mut s = Store::open(paths.clone(), opts(AUTO_COMPACT_MIN_BYTES));
            commit(&mut s, vec![ports(1)]); // first load, below the threshold
            s
        },
        |mut s| {
            let gen_before = log_generation(&paths.log);
            commit(&mut s, vec![ports(2)]);
            assert_ne!(log_generation(&paths.log), gen_before, "no compaction");
        },
    );

    let commit_us = median_us(&commit_t);
    let compact_ms = median_ms(&compact);
    // One compaction spread over the commits between two of them.
    let share = Duration::from_secs_f64(compact_ms / 1e3 / commits_per_compaction as f64);
    let amortised_t: Vec<Duration> = commit_t.iter().map(|c| *c + share).collect();
    Row {
        snapshots: n,
        record_len,
        yaml_len,
        log_len: base_log_len,
        bare_us: median_us(&bare_t),
        commit_x: paired_ratio(&commit_t, &bare_t),
        syscalls_x: paired_ratio(&syscalls_t, &bare_t),
        fresh_x: paired_ratio(&fresh_t, &fresh_bare_t),
        syscalls_us: median_us(&syscalls_t),
        commit_us,
        fresh_us: median_us(&fresh_t),
        load_ms: median_ms(&load),
        load_min_ms: load.iter().min().unwrap().as_secs_f64() * 1e3,
        parse_ms: median_ms(&parse),
        decode_ms: median_ms(&decode),
        validate_ms: median_ms(&validate),
        replay_ms: median_ms(&replay),
        json_ms: median_ms(&json_load),
        compact_ms,
        trigger_ms: median_ms(&trigger),
        amortised_us: median_us(&amortised_t),
        amortised_x: paired_ratio(&amortised_t, &bare_t),
        commits_per_compaction,
    }
}

fn report(rows: &[Row]) {
    println!();
    println!("1. One committed mutation (PortsSet on defaults), auto-compaction off");
    println!(
        "{:>9} | {:>6} | {:>11} | {:>9} | {:>5} | {:>13} | {:>5} | {:>10} | {:>5} | {:>9}",
        "snapshots",
        "record",
        "commit (us)",
        "bare (us)",
        "ratio",
        "syscalls (us)",
        "ratio",
        "fresh (us)",
        "ratio",
        "load (ms)"
    );
    for r in rows {
        println!(
            "{:>9} | {:>5}B | {:>11.0} | {:>9.0} | {:>5.2} | {:>13.0} | {:>5.2} | {:>10.0} | {:>5.2} | {:>9.2}",
            r.snapshots,
            r.record_len,
            r.commit_us,
            r.bare_us,
            r.commit_x,
            r.syscalls_us,
            r.syscalls_x,
            r.fresh_us,
            r.fresh_x,
            r.load_ms
        );
    }
    println!("  ratios are medians of per-iteration ratios to the bare arm run next to it");
    println!("  commit: opened store, first load done; bare: write+fdatasync of `record` bytes on an open file;");
    println!("  syscalls: the OsFs commit's syscall sequence by hand; fresh: Store::open + commit (ratio to its own bare arm)");

    println!();
    println!("2. Load ({LOG_RECORDS} records in the log)");
    println!(
        "{:>9} | {:>10} | {:>8} | {:>9} | {:>8} | {:>10} | {:>11} | {:>13} | {:>11} | {:>14}",
        "snapshots",
        "yaml",
        "log",
        "load (ms)",
        "load min",
        "parse (ms)",
        "decode (ms)",
        "validate (ms)",
        "replay (ms)",
        "json alt (ms)"
    );
    for r in rows {
        println!(
            "{:>9} | {:>9}B | {:>7}B | {:>9.2} | {:>8.2} | {:>10.2} | {:>11.2} | {:>13.3} | {:>11.3} | {:>14.2}",
            r.snapshots,
            r.yaml_len,
            r.log_len,
            r.load_ms,
            r.load_min_ms,
            r.parse_ms,
            r.decode_ms,
            r.validate_ms,
            r.replay_ms,
            r.json_ms
        );
    }
    println!("  load = Store::read (median; min as an uncontended hint); parse = snapshot::parse_yaml (UTF-8 + decode + validate); replay = log::scan + recover::replay");
    println!("  json alt = crc32 of the YAML bytes + serde_json decode of the same Project: what the load cache (.containers.cache) path costs once its file is read");

    println!();
    println!("3. Default auto-compaction (floor {AUTO_COMPACT_MIN_BYTES} B, {AUTO_COMPACT_PERCENT}% of the YAML)");
    println!(
        "{:>9} | {:>12} | {:>22} | {:>16} | {:>14} | {:>5}",
        "snapshots",
        "compact (ms)",
        "commits per compaction",
        "trigger (ms)",
        "amortised (us)",
        "ratio"
    );
    for r in rows {
        println!(
            "{:>9} | {:>12.2} | {:>22} | {:>16.2} | {:>14.0} | {:>5.2}",
            r.snapshots,
            r.compact_ms,
            r.commits_per_compaction,
            r.trigger_ms,
            r.amortised_us,
            r.amortised_x
        );
    }
    println!("  trigger: the one commit that crosses the threshold; amortised = commit + compact / commits per compaction");
    println!("  ratio: median of per-iteration (commit + compact / commits per compaction) / bare, as in table 1");

    println!();
    let worst = rows.iter().map(|r| r.commit_x).fold(0.0, f64::max);
    verdict(
        worst <= STEADY_TARGET,
        &format!("steady-state commit <= {STEADY_TARGET}x bare write+fdatasync: worst {worst:.2}x"),
    );
    let ratios: Vec<f64> = rows.iter().map(|r| r.commit_x).collect();
    let spread = ratios.iter().cloned().fold(0.0, f64::max)
        / ratios.iter().cloned().fold(f64::INFINITY, f64::min);
    verdict(
        spread <= FLAT_TOLERANCE,
        &format!(
            "steady-state commit flat in state size (max/min ratio <= {FLAT_TOLERANCE}): {spread:.2} ({})",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    );
    let big = rows.last().expect("rows");
    verdict(
        big.load_ms < LOAD_TARGET_MS,
        &format!(
            "load of {} snapshots < {LOAD_TARGET_MS} ms: median {:.2} ms (min {:.2} ms)",
            big.snapshots, big.load_ms, big.load_min_ms
        ),
    );
}

fn verdict(pass: bool, what: &str) {
    println!("{} {what}", if pass { "PASS" } else { "FAIL" });
}

// ---------------------------------------------------------------- fixtures --

/// The commit alone: no fold into containers.yaml after it (benches/fold.rs
/// measures the whole command, fold included).
fn opts(auto_compact_min: u64) -> Options {
    Options {
        auto_compact_min,
        fold_max: 0,
        notify: Arc::new(|_| {}),
        ..Options::default()
    }
}

fn project(snapshots: usize) -> Project {
    let mut p = Project::new("bench", vec![5173, 8000]);
    for c in 0..CONTAINERS {
        p.containers.insert(
            format!("c{c}"),
            Container {
                image: "ubuntu:24.04".into(),
                ..Container::default()
            },
        );
    }
    for i in 0..snapshots {
        let c = p
            .containers
            .get_mut(&format!("c{}", i % CONTAINERS))
            .expect("container");
        c.snapshots.insert(
            format!("snap-{i:05}"),
            Snapshot {
                description: format!("before step {i} of the migration"),
                created_at: "2026-01-15T10:30:00Z".into(),
                pending: None,
            },
        );
    }
    p
}

/// A mix of record kinds that leaves the snapshot count unchanged.
fn log_mutation(i: usize) -> Mutation {
    let container = format!("c{}", i % CONTAINERS);
    match i % 4 {
        0 => Mutation::SnapshotAdded {
            container,
            name: format!("tmp-{i}"),
            description: "scratch".into(),
            created_at: "2026-01-16T08:00:00Z".into(),
            pending: None,
        },
        1 => Mutation::PortsSet {
            container: Some(container),
            ports: vec![3000 + i as u16],
        },
        2 => Mutation::SnapshotRemoved {
            container: format!("c{}", (i - 2) % CONTAINERS),
            name: format!("tmp-{}", i - 2),
        },
        _ => Mutation::UserNameSet {
            container: None,
            name: Some(format!("u{i}")),
        },
    }
}

/// The measured mutation; constant encoded size (four-digit port).
fn ports(i: usize) -> Mutation {
    Mutation::PortsSet {
        container: None,
        ports: vec![3000 + (i % 1000) as u16],
    }
}

fn commit(store: &mut Store, mutations: Vec<Mutation>) {
    store
        .commit(|_| Ok::<_, StoreError>((mutations, ())))
        .expect("commit");
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

fn log_generation(path: &Path) -> u64 {
    let bytes = fs::read(path).expect("read the log");
    record::decode_header(&bytes).expect("header").generation
}

// ---------------------------------------------------------------- baselines --

/// write + fdatasync of `len` bytes, appended to a file kept open.
struct Bare {
    file: File,
    buf: Vec<u8>,
}

impl Bare {
    fn new(path: &Path, len: usize) -> Bare {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .expect("open the baseline file");
        Bare {
            file,
            buf: vec![b'x'; len],
        }
    }

    fn run(&mut self) {
        self.file.write_all(&self.buf).expect("write");
        self.file.sync_data().expect("fdatasync");
    }
}

/// What the hand-written commit does about the lock's holder note.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Note {
    /// As `lock::acquire` did before it was fixed: `ftruncate(0)` then
    /// `write`; ext4 then flushes the lock file with the log's fdatasync.
    Truncate,
    /// As `lock::acquire` does: a fixed-width note written over the old one
    /// with `pwrite` at 0, so the file keeps its size and its block.
    Overwrite,
    /// No note.
    Skip,
}

/// The syscalls of an `OsFs` commit on an opened store, on their own files:
/// lock (open, flock, holder note), stat of both files, read of the log
/// from the known end, open + append + close, open + fdatasync + close,
/// close of the lock. `note` and `reopen` switch parts off to attribute the
/// cost.
struct Syscalls {
    lock: PathBuf,
    yaml: PathBuf,
    log: PathBuf,
    buf: Vec<u8>,
    end: u64,
    note: Note,
    /// Opens the log for each step, as `OsFs` does; else keeps one fd.
    reopen: bool,
    kept: File,
}

impl Syscalls {
    fn new(dir: &Path, name: &str, len: usize, note: Note, reopen: bool) -> Syscalls {
        let log = dir.join(format!("{name}.log"));
        fs::write(&log, b"").unwrap();
        let yaml = dir.join(format!("{name}.yaml"));
        fs::write(&yaml, b"project: x\n").unwrap();
        Syscalls {
            lock: dir.join(format!("{name}.lock")),
            yaml,
            kept: OpenOptions::new().append(true).open(&log).unwrap(),
            log,
            buf: vec![b'y'; len],
            end: 0,
            note,
            reopen,
        }
    }

    fn run(&mut self) {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.lock)
            .unwrap();
        // SAFETY: flock on an fd we own, released when `lock` closes.
        assert_eq!(
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        // Padded to the store's fixed 256-byte note, so every write covers
        // the previous one (crates/ldm-store/src/lock.rs).
        let mut note = format!(
            "pid {:>10} (ldm) since 2026-01-01T00:00:00Z",
            std::process::id()
        );
        note.extend(std::iter::repeat_n(' ', 256 - note.len()));
        match self.note {
            Note::Truncate => {
                lock.set_len(0).unwrap();
                (&lock).write_all(note.as_bytes()).unwrap();
            }
            Note::Overwrite => {
                std::os::unix::fs::FileExt::write_all_at(&lock, note.as_bytes(), 0).unwrap()
            }
            Note::Skip => {}
        }
        black_box(fs::metadata(&self.yaml).unwrap());
        black_box(fs::metadata(&self.log).unwrap());
        if self.reopen {
            let mut f = File::open(&self.log).unwrap();
            black_box(f.metadata().unwrap());
            f.seek(SeekFrom::Start(self.end)).unwrap();
            let mut tail = Vec::new();
            f.read_to_end(&mut tail).unwrap();
            drop(f);
            OpenOptions::new()
                .append(true)
                .open(&self.log)
                .unwrap()
                .write_all(&self.buf)
                .unwrap();
            OpenOptions::new()
                .write(true)
                .open(&self.log)
                .unwrap()
                .sync_data()
                .unwrap();
        } else {
            self.kept.write_all(&self.buf).unwrap();
            self.kept.sync_data().unwrap();
        }
        self.end += self.buf.len() as u64;
        drop(lock);
    }
}

/// Section 4: the commit's syscall sequence with parts switched off, each
/// as a ratio to the bare arm, interleaved.
fn attribute(dir: &Path, record_len: usize, iters: usize) {
    let mut bare = Bare::new(&dir.join("attr-bare.dat"), record_len);
    let mut arms = [
        (
            "as OsFs (pwrite note over the old one, reopen)",
            Note::Overwrite,
            true,
        ),
        (
            "as before the fix (ftruncate+write note, reopen)",
            Note::Truncate,
            true,
        ),
        ("no note, reopen per step", Note::Skip, true),
        ("note by pwrite, one kept log fd", Note::Overwrite, false),
        ("no note, one kept log fd", Note::Skip, false),
    ]
    .map(|(what, note, reopen)| {
        let name = format!("attr{}", what.len());
        (what, Syscalls::new(dir, &name, record_len, note, reopen))
    });
    let mut t = vec![Vec::new(); arms.len() + 1];
    for i in 0..iters {
        for k in 0..t.len() {
            let arm = (i + k) % t.len();
            let start = Instant::now();
            match arm {
                0 => bare.run(),
                a => arms[a - 1].1.run(),
            }
            t[arm].push(start.elapsed());
        }
    }
    let bare_us = median_us(&t[0]);
    println!();
    println!("4. Where a commit's time goes: its syscall sequence by hand, parts switched off");
    println!("{:>50} | {:>9} | {:>5}", "variant", "time (us)", "ratio");
    println!(
        "{:>50} | {:>9.0} | {:>5.2}",
        "bare write+fdatasync", bare_us, 1.0
    );
    for (a, (what, _)) in arms.iter().enumerate() {
        let us = median_us(&t[a + 1]);
        let x = paired_ratio(&t[a + 1], &t[0]);
        println!("{what:>50} | {us:>9.0} | {x:>5.2}");
    }
}

// ----------------------------------------------------------------- timing --

fn load_iters(n: usize) -> usize {
    if n >= 10_000 {
        15
    } else {
        50
    }
}

/// Fresh runs include a full load; fewer of them at the biggest size keep
/// the bench under two minutes.
fn fresh_cap(n: usize) -> usize {
    if n >= 10_000 {
        100
    } else {
        300
    }
}

fn sample<R>(iters: usize, mut f: impl FnMut() -> R) -> Vec<Duration> {
    sample_with(iters, || (), |()| f())
}

/// Times `run` on a fresh value from `setup`, `iters` times; neither the
/// setup nor the drop of what `run` returns is timed.
fn sample_with<T, R>(
    iters: usize,
    mut setup: impl FnMut() -> T,
    mut run: impl FnMut(T) -> R,
) -> Vec<Duration> {
    (0..iters)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            let out = black_box(run(input));
            let took = start.elapsed();
            drop(out);
            took
        })
        .collect()
}

fn median(t: &[Duration]) -> Duration {
    let mut v = t.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Median over iterations of `arm[i] / bare[i]`: the two ran back to back,
/// so drift in the disk's speed cancels within each pair.
fn paired_ratio(arm: &[Duration], bare: &[Duration]) -> f64 {
    let mut r: Vec<f64> = arm
        .iter()
        .zip(bare)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

fn median_us(t: &[Duration]) -> f64 {
    median(t).as_secs_f64() * 1e6
}

fn median_ms(t: &[Duration]) -> f64 {
    median(t).as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- the disk --

fn bench_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("LDM_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if fs_kind(&target) == "tmpfs" {
        PathBuf::from("/var/tmp")
    } else {
        target
    }
}

fn fs_kind(path: &Path) -> &'static str {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown";
    }
    match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
}
