//! What keeping `containers.yaml` current costs (DESIGN.md, "Fold").
//!
//! 1. Whole process: `ldm config set` at 10 and at 10,000 snapshots, each
//!    minus `ldm --version` measured in the same run (process start, dynamic
//!    loading, exit), arms interleaved (ABAB...), medians of the differences'
//!    parts. Targets (issue 11): under 2 ms at 10 snapshots, fold included,
//!    and under 20 ms at 10,000.
//! 2. The fold by YAML size: one commit with the fold after it against one
//!    commit without, in one process, interleaved; the difference is the
//!    fold's cost, beside a bare write + fdatasync of the same size for scale.
//!    `FOLD_MAX_BYTES` is set from this table.
//!
//! Run with `cargo bench --bench fold`. Ratios and differences are always
//! of medians taken in the same run.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldm::model::{Container, Mutation, Project, Snapshot};
use ldm::store::{Options, Paths, Store, StoreError};

const BIN: &str = env!("CARGO_BIN_EXE_ldm");

fn project(snapshots: usize) -> Project {
    let mut p = Project::new("bench", vec![5173, 8000]);
    let per = 100;
    let containers = snapshots.div_ceil(per).max(1);
    for c in 0..containers {
        let mut cont = Container {
            image: "ubuntu:24.04".into(),
            ..Default::default()
        };
        for s in 0..per.min(snapshots - (c * per).min(snapshots)) {
            cont.snapshots.insert(
                format!("snap-{s}"),
                Snapshot {
                    description: format!("snapshot {s} of container {c}, before the upgrade"),
                    created_at: "2026-01-15T10:30:00Z".into(),
                    pending: None,
                },
            );
        }
        p.containers.insert(format!("c{c}"), cont);
    }
    p
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn quiet_opts(fold_max: u64) -> Options {
    Options {
        fold_max,
        auto_compact_min: u64::MAX,
        notify: Arc::new(|_| {}),
        ..Options::default()
    }
}

fn run(args: &[&str], dir: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("LDM_LXC", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run ldm");
    let took = start.elapsed();
    assert!(status.success(), "ldm {args:?}");
    took
}

/// 1. The whole `config set` process, minus `--version`.
fn whole_process(snapshots: usize, rounds: usize) -> (Duration, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    Store::create(dir, &project(snapshots), quiet_opts(0)).unwrap();
    // Warm the caches (base, page cache) the way a second command finds them.
    run(&["config", "set", "defaults.ports", "1"], dir);
    let (mut set, mut version) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let port = (2 + i % 60000).to_string();
        if i % 2 == 0 {
            set.push(run(&["config", "set", "defaults.ports", &port], dir));
            version.push(run(&["--version"], dir));
        } else {
            version.push(run(&["--version"], dir));
            set.push(run(&["config", "set", "defaults.ports", &port], dir));
        }
        // Keep the log from compacting in the middle of the sample.
        if i % 200 == 199 {
            run(&["compact"], dir);
        }
    }
    (median(set), median(version))
}

/// 2. One commit with the fold after it, and one without.
fn fold_cost(snapshots: usize, rounds: usize) -> (u64, Duration, Duration, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    Store::create(dir, &project(snapshots), quiet_opts(0)).unwrap();
    let yaml_len = fs::metadata(dir.join("containers.yaml")).unwrap().len();
    let mut folding = Store::open(Paths::in_dir(dir), quiet_opts(u64::MAX));
    let mut plain = Store::open(Paths::in_dir(dir), quiet_opts(0));
    let bare_path = dir.join("bare.dat");
    let bare_bytes = fs::read(dir.join("containers.yaml")).unwrap();
    let (mut with, mut without, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let commit = |s: &mut Store, i: usize| {
        let m = Mutation::PortsSet {
            container: None,
            ports: vec![1 + (i % 60000) as u16],
        };
        let t = Instant::now();
        s.commit(|_| Ok::<_, StoreError>((vec![m], ()))).unwrap();
        t.elapsed()
    };
    for i in 0..rounds {
        // Rotate the order of the three arms.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => with.push(commit(&mut folding, 2 * i)),
                1 => without.push(commit(&mut plain, 2 * i + 1)),
                _ => {
                    let t = Instant::now();
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&bare_path)
                        .unwrap();
                    f.write_all(&bare_bytes).unwrap();
                    f.sync_data().unwrap();
                    bare.push(t.elapsed());
                }
            }
        }
        if i % 100 == 99 {
            folding.compact().unwrap();
        }
    }
    (yaml_len, median(with), median(without), median(bare))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let want = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    if want("whole") {
        println!("1. whole process: `ldm config set` minus `ldm --version` (medians, interleaved)");
        println!(
            "   {:>10} {:>12} {:>12} {:>12}  target",
            "snapshots", "config set", "--version", "difference"
        );
        for (snapshots, rounds, target) in [(10, 201, 2.0), (10_000, 61, 20.0)] {
            let (set, version) = whole_process(snapshots, rounds);
            let diff = set.saturating_sub(version);
            println!(
                "   {snapshots:>10} {:>12} {:>12} {:>12}  {} under {target} ms",
                ms(set),
                ms(version),
                ms(diff),
                if diff.as_secs_f64() * 1e3 < target {
                    "PASS"
                } else {
                    "FAIL"
                },
            );
        }
    }
    if !want("size") {
        return;
    }
    println!();
    println!("2. the fold by YAML size: one commit with the fold, one without, a bare write+fdatasync of the YAML (medians, rotated)");
    println!(
        "   {:>10} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "snapshots", "yaml", "with fold", "without", "fold costs", "bare write"
    );
    for (snapshots, rounds) in [
        (0, 201),
        (10, 201),
        (100, 201),
        (300, 151),
        (1000, 101),
        (3000, 41),
        (10_000, 21),
    ] {
        let (yaml, with, without, bare) = fold_cost(snapshots, rounds);
        println!(
            "   {snapshots:>10} {:>9}K {:>12} {:>12} {:>12} {:>12}",
            yaml / 1024,
            ms(with),
            ms(without),
            ms(with.saturating_sub(without)),
            ms(bare),
        );
    }
    println!(
        "   containers.yaml is folded after each commit while it is at most {} KiB (FOLD_MAX_BYTES)",
        ldm::store::FOLD_MAX_BYTES / 1024
    );
}
