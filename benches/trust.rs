//! What the trust check costs every command (DESIGN.md, "What ldm trusts";
//! issue 22's budget: at most 0.1 ms per command, read-only commands as
//! fast as before).
//!
//! 1. In one process, interleaved (ABC...), medians: `commands::gate::check`
//!    for a reading command and for `up`, on a project that asks for nothing
//!    beyond its folder (a reading command takes the fast path: its mount
//!    sources resolved, no state read; `up` reads the state for the
//!    settings), and on one that asks for a remote, four containers'
//!    outside mounts and setup steps, all allowed (the checkout's entry and
//!    `trust.json` read), beside the load every command makes anyway
//!    (`Store::read`) as the baseline.
//! 2. Whole processes: `ldm config get defaults.ports` on each project, and
//!    `ldm --version`, interleaved, medians; the difference between the two
//!    projects is the full path's cost seen from outside.
//!
//! Run with `cargo bench --bench trust`.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldm::commands::{gate, style, Connect, Ctx};
use ldm::model::{Container, Mount, Project, Step};
use ldm::store::{Options, Paths, SafeDirs, Store};
use ldm::trust::Need;
use ldm::user_state::UserDirs;

const BIN: &str = env!("CARGO_BIN_EXE_ldm");
const ROUNDS: usize = 2001;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A project of four containers, each mounting the project folder; with
/// `reach`, also a remote, an outside folder each and two setup steps.
fn project(reach: bool, outside: &Path) -> Project {
    let mut p = Project::new("bench", vec![5173]);
    for c in 0..4 {
        let mut mounts = vec![Mount::parse(&format!(".:/home/dev/bench{c}")).unwrap()];
        if reach {
            mounts.push(Mount::parse(&format!("{}:/srv/data:ro", outside.display())).unwrap());
        }
        p.containers.insert(
            format!("c{c}"),
            Container {
                image: "ubuntu:24.04".into(),
                mounts,
                ..Container::default()
            },
        );
    }
    if reach {
        p.remote = Some("team".into());
        p.defaults.setup = vec![
            Step::Command("apt-get install -y -qq make".into()),
            Step::Script {
                script: "setup/dev.sh".into(),
            },
        ];
    }
    p
}

fn ctx(dir: &Path, user: &Path) -> Ctx {
    let connect: Connect = Arc::new(|_, _, _, _| unreachable!("the trust check calls no LXD"));
    Ctx {
        start: dir.to_path_buf(),
        opts: Options {
            notify: Arc::new(|_| {}),
            ..Options::default()
        },
        quiet: true,
        step_timeout: std::time::Duration::from_secs(1800),
        style: style::Style::plain(),
        safe: SafeDirs::default(),
        connect,
        user: Some(UserDirs::in_dir(user)),
        log_seen: Mutex::new(None),
        project_at: Mutex::new(None),
        lxd_project: Mutex::new(None),
        seen: Default::default(),
    }
}

fn run(args: &[&str], dir: &Path, user: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("LDM_LXC", "/nonexistent")
        .env("XDG_STATE_HOME", user.join("state"))
        .env("XDG_CACHE_HOME", user.join("cache"))
        .output()
        .expect("run ldm");
    let took = start.elapsed();
    assert!(out.status.success(), "ldm {args:?}: {out:?}");
    took
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let (plain, reach, outside, user) = (
        root.join("plain"),
        root.join("reach"),
        root.join("shared"),
        root.join("user"),
    );
    for d in [&plain, &reach, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    let opts = Options::default();
    Store::create(&plain, &project(false, &outside), opts.clone()).unwrap();
    Store::create(&reach, &project(true, &outside), opts.clone()).unwrap();
    let (cp, cr) = (ctx(&plain, &user), ctx(&reach, &user));
    let (sp, sr) = (
        Store::open(Paths::in_dir(&plain), opts.clone()),
        Store::open(Paths::in_dir(&reach), opts),
    );
    let (pp, pr) = (sp.read().unwrap(), sr.read().unwrap());
    // Everything `reach` asks for is allowed, as after `ldm trust --yes`.
    let review = gate::review(&cr, &sr, &pr).unwrap();
    review
        .folder
        .update_allowed(|a| ldm::trust::allow_all(a, &review.found, &review.settings))
        .unwrap();
    let (up, read) = (Need::up(None), Need::nothing());
    gate::check(&cr, &sr, &pr, &up).expect("allowed");

    let mut t: [Vec<Duration>; 5] = Default::default();
    for _ in 0..ROUNDS {
        let s = Instant::now();
        gate::check(&cp, &sp, &pp, &read).unwrap();
        t[0].push(s.elapsed());
        let s = Instant::now();
        gate::check(&cp, &sp, &pp, &up).unwrap();
        t[1].push(s.elapsed());
        let s = Instant::now();
        gate::check(&cr, &sr, &pr, &read).unwrap();
        t[2].push(s.elapsed());
        let s = Instant::now();
        gate::check(&cr, &sr, &pr, &up).unwrap();
        t[3].push(s.elapsed());
        let s = Instant::now();
        std::hint::black_box(sr.read().unwrap());
        t[4].push(s.elapsed());
    }
    let [plain_read, plain_up, reach_read, reach_up, load] = t.map(median);
    println!("trust check, in process, median of {ROUNDS} (interleaved):");
    println!(
        "  a reading command, nothing beyond the folder   {}  (no state read)",
        us(plain_read)
    );
    println!(
        "  `up`, nothing beyond the folder                {}",
        us(plain_up)
    );
    println!(
        "  a reading command, remote, mounts, steps       {}",
        us(reach_read)
    );
    println!(
        "  `up`, remote, 4 outside mounts, 2 steps        {}",
        us(reach_up)
    );
    println!(
        "  baseline: the project's load (Store::read)     {}",
        us(load)
    );
    let worst = plain_read.max(plain_up).max(reach_read).max(reach_up);
    println!(
        "  worst / load = {:.2}; budget 100 µs: {}",
        worst.as_secs_f64() / load.as_secs_f64(),
        if worst <= Duration::from_micros(100) {
            "within"
        } else {
            "OVER"
        }
    );

    let get = ["config", "get", "defaults.ports"];
    let (mut a, mut b, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..101 {
        a.push(run(&get, &plain, &user));
        b.push(run(&get, &reach, &user));
        v.push(run(&["--version"], &plain, &user));
    }
    let (a, b, v) = (median(a), median(b), median(v));
    println!("whole processes, median of 101 (interleaved):");
    println!("  ldm --version                               {}", us(v));
    println!("  ldm config get, nothing beyond the folder   {}", us(a));
    println!("  ldm config get, remote, mounts, steps       {}", us(b));
    println!(
        "  difference (the full path, and the bigger project's load)  {}",
        us(b.saturating_sub(a))
    );
}
