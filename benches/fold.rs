//! What keeping `containers.yaml` current costs (DESIGN.md, "Fold").
//!
//! 0. `container snapshot create` on a 10-snapshot project against
//!    lxc-dev-manager (`LDM_BENCH_GO`: its binary), each served at once:
//!    ldm by the LXD API test double (`crates/lxd-double`, in this bench
//!    process, on a unix socket), the Go tool by a stub LXD client (this
//!    bench binary run as `lxc`); arms interleaved with their order
//!    rotating; the median of per-round ratios. Target (issue 26): at most
//!    0.5x the Go tool's time.
//! 1. Whole process: `ldm config set` at 10 and at 10,000 snapshots and
//!    `ldm config get`, each minus `ldm --version` of the same binary in the
//!    same run (process start, dynamic loading, exit), arms interleaved,
//!    medians. `LDM_BENCH_BEFORE` names an older ldm binary measured the
//!    same way in the same run, for before/after ratios. Targets (issue
//!    26): `config set` at most 1.0 ms at 10 snapshots, fold included, and
//!    8 ms at 10,000; `config get` at most 3 ms at 10,000.
//! 2. The fold by YAML size: one commit with the fold after it against one
//!    commit without, in one process, interleaved; the difference is the
//!    fold's cost, beside a bare write + fdatasync of the same size for scale.
//!    `FOLD_MAX_BYTES` is set from this table.
//!
//! Run with `cargo bench --bench fold`. Ratios and differences are always
//! of medians taken in the same run.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// One run of `bin ARGS` in `dir`, its wall time; it must succeed.
fn run_bin(bin: &Path, args: &[&str], dir: &Path, envs: &[(&str, &OsStr)]) -> Duration {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("LDM_LXC", "/nonexistent")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run the tool");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// ldm as built here, and the ldm before this change when
/// `LDM_BENCH_BEFORE` names its binary: the same commands, interleaved.
fn ldms() -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![("after", PathBuf::from(BIN))];
    if let Some(before) = std::env::var_os("LDM_BENCH_BEFORE") {
        out.push(("before", PathBuf::from(before)));
    }
    out
}

/// Part 1, whole processes minus `--version` of the same binary: the
/// store's share of `config set` at `snapshots` (fold included where the
/// YAML is small enough), and of `config get`. Arms interleaved, their
/// order rotating each round; medians.
fn whole_process(snapshots: usize, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let tools = ldms();
    let mut dirs = Vec::new();
    for (name, bin) in &tools {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        Store::create_in(Paths::bare(&dir), &project(snapshots), quiet_opts(0)).unwrap();
        // Warm up the way a second command finds things: each binary puts
        // its own base and cache in place, and the page cache is warm.
        run_bin(bin, &["config", "set", "defaults.ports", "1"], &dir, &[]);
        std::thread::sleep(Duration::from_millis(100));
        run_bin(bin, &["config", "get", "defaults.ports"], &dir, &[]);
        run_bin(bin, &["config", "get", "defaults.ports"], &dir, &[]);
        dirs.push(dir);
    }
    // [tool][set, get, version]
    let mut t = vec![[Vec::new(), Vec::new(), Vec::new()]; tools.len()];
    let arms = tools.len() * 3;
    for i in 0..rounds {
        let port = (2 + i % 60000).to_string();
        for k in 0..arms {
            let arm = (i + k) % arms;
            let (tool, what) = (arm / 3, arm % 3);
            let (bin, dir) = (&tools[tool].1, &dirs[tool]);
            let args: &[&str] = match what {
                0 => &["config", "set", "defaults.ports", &port],
                1 => &["config", "get", "defaults.ports"],
                _ => &["--version"],
            };
            t[tool][what].push(run_bin(bin, args, dir, &[]));
        }
        // Keep the log from compacting in the middle of the sample.
        if i % 200 == 199 {
            for (tool, (_, bin)) in tools.iter().enumerate() {
                run_bin(bin, &["compact"], &dirs[tool], &[]);
            }
        }
    }
    let share = |tool: usize, what: usize| {
        median(t[tool][what].clone()).saturating_sub(median(t[tool][2].clone()))
    };
    for (tool, (name, _)) in tools.iter().enumerate() {
        println!(
            "   {snapshots:>10} {name:>7} {:>12} {:>12} {:>12} {:>12} {:>12}",
            ms(median(t[tool][0].clone())),
            ms(median(t[tool][1].clone())),
            ms(median(t[tool][2].clone())),
            ms(share(tool, 0)),
            ms(share(tool, 1)),
        );
    }
    let (set_target, get_target) = if snapshots <= 10 {
        (1.0, 3.0)
    } else {
        (8.0, 3.0)
    };
    let verdict = |d: Duration, target: f64| {
        if d.as_secs_f64() * 1e3 <= target {
            "PASS"
        } else {
            "FAIL"
        }
    };
    print!(
        "   {snapshots:>10}   share: config set {} at most {set_target} ms",
        verdict(share(0, 0), set_target)
    );
    if snapshots >= 10_000 {
        print!(
            ", config get {} at most {get_target} ms",
            verdict(share(0, 1), get_target)
        );
    }
    if tools.len() > 1 {
        let ratio = |what: usize| share(0, what).as_secs_f64() / share(1, what).as_secs_f64();
        print!(
            "; after/before: config set {:.2}x, config get {:.2}x",
            ratio(0),
            ratio(1)
        );
    }
    println!();
}

/// Symlinks this bench binary as `lxc` in `dir`: run under that name it is
/// the stub LXD client ([`stub_lxc`]) lxc-dev-manager calls.
fn stub_dir(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("the bench binary");
    let lxc = dir.join("lxc");
    std::os::unix::fs::symlink(exe, &lxc).expect("link the stub");
    lxc
}

/// The stub LXD client: answers what `container snapshot create` asks, at
/// once. `info NAME` (lxc-dev-manager: the instance exists) succeeds,
/// `info NAME/SNAP` (the snapshot does not exist yet) fails, `snapshot`
/// succeeds; anything else succeeds with no output.
fn stub_lxc() -> ! {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--").collect();
    let code = match args.first().map(String::as_str) {
        Some("info") if args.get(1).is_some_and(|n| n.contains('/')) => {
            eprintln!("Error: not found");
            1
        }
        Some("info") => {
            println!("Name: x\nStatus: RUNNING");
            0
        }
        _ => 0,
    };
    std::process::exit(code)
}

/// The Go tool's `containers.yaml` of project `p` with container `dev` and
/// `n` snapshots, in its layout.
fn go_yaml(n: usize) -> String {
    let mut text = String::from("project: p\ndefaults:\n    ports: []\ncontainers:\n    dev:\n        image: img\n        snapshots:\n");
    for i in 0..n {
        text.push_str(&format!(
            "            s{i}:\n                description: snapshot {i}\n                created_at: \"2026-01-15T10:30:00Z\"\n"
        ));
    }
    text
}

/// Part 0, `container snapshot create` on a project of 10 snapshots (more as the
/// rounds add theirs), ldm against lxc-dev-manager (`LDM_BENCH_GO` names
/// its binary), each served at once (ldm by the API double, the Go tool by
/// the stub client), interleaved with their order rotating; the median of per-round ratios, as benches/store.rs.
fn against_go(go: &Path, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let lxc = stub_dir(&bin_dir);
    let path = std::env::join_paths(
        std::iter::once(bin_dir.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    // ldm speaks LXD's API: the double serves it, each ldm's project its
    // own instance (`p-dev`, `q-dev`) with the 10 snapshots it records.
    let double = lxd_double::Double::start(&tmp.path().join("lxd")).expect("start the LXD double");
    let conf = tmp.path().join("conf");
    let home = tmp.path().join("home");
    std::fs::create_dir(&conf).unwrap();
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        conf.join("config.yml"),
        lxd_double::Double::client_config("local", "default"),
    )
    .unwrap();
    let mut arms: Vec<(String, PathBuf, PathBuf, Vec<&str>)> = Vec::new();
    for ((name, bin), project) in ldms().into_iter().zip(["p", "q"]) {
        let mut dev = lxd_double::Instance::running();
        for i in 0..10 {
            dev = dev.snapshot(&format!("s{i}"));
        }
        double.seed("default", &format!("{project}-dev"), dev);
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        run_bin(&bin, &["create", "--name", project], &dir, &[]);
        let mut store = Store::open(Paths::in_dir(&dir), quiet_opts(u64::MAX));
        store
            .commit(|_| {
                let mut ms = vec![Mutation::ContainerAdded {
                    name: "dev".into(),
                    image: "img".into(),
                    pending: None,
                }];
                ms.extend((0..10).map(|i| Mutation::SnapshotAdded {
                    container: "dev".into(),
                    name: format!("s{i}"),
                    description: format!("snapshot {i}"),
                    created_at: "2026-01-15T10:30:00Z".into(),
                    pending: None,
                }));
                Ok::<_, StoreError>((ms, ()))
            })
            .unwrap();
        drop(store);
        // Each binary settles its own files (base, cache) first.
        run_bin(&bin, &["compact"], &dir, &[]);
        arms.push((
            format!("ldm ({name})"),
            bin,
            dir,
            vec!["container", "snapshot", "create", "dev"],
        ));
    }
    let go_dir = tmp.path().join("go");
    std::fs::create_dir(&go_dir).unwrap();
    std::fs::write(go_dir.join("containers.yaml"), go_yaml(10)).unwrap();
    arms.push((
        "lxc-dev-manager".into(),
        go.to_path_buf(),
        go_dir,
        vec!["container", "snapshot", "create", "dev"],
    ));
    // The Go tool runs the stub client from PATH; ldm finds the double by
    // the client's variables (`LDM_LXC` names the family: LXD) and keeps
    // its user state in the bench's home.
    let envs: [(&str, &OsStr); 5] = [
        ("LDM_LXC", lxc.as_os_str()),
        ("PATH", path.as_os_str()),
        ("LXD_DIR", double.dir().as_os_str()),
        ("LXD_CONF", conf.as_os_str()),
        ("HOME", home.as_os_str()),
    ];
    let mut t = vec![Vec::new(); arms.len()];
    for i in 0..rounds {
        let snap = format!("r{i}");
        for k in 0..arms.len() {
            let a = (i + k) % arms.len();
            let (_, bin, dir, args) = &arms[a];
            let mut args = args.clone();
            args.push(&snap);
            t[a].push(run_bin(bin, &args, dir, &envs));
        }
    }
    let go = arms.len() - 1;
    for (a, (name, ..)) in arms.iter().enumerate() {
        print!("   {name:>16} {:>12}", ms(median(t[a].clone())));
        if a != go {
            let mut r: Vec<f64> = t[a]
                .iter()
                .zip(&t[go])
                .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
                .collect();
            r.sort_by(f64::total_cmp);
            let ratio = r[r.len() / 2];
            print!(
                "  {ratio:.2}x lxc-dev-manager's{}",
                if a == 0 {
                    if ratio <= 0.5 {
                        "  PASS at most 0.5x"
                    } else {
                        "  FAIL at most 0.5x"
                    }
                } else {
                    ""
                }
            );
        }
        println!();
    }
    println!(
        "   (10 to {} snapshots; the double and the stub answer at once, so this is each tool's own work)",
        10 + rounds
    );
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
    // Run under the name `lxc`, this binary is the stub client of part 0.
    if std::env::args()
        .next()
        .is_some_and(|a| Path::new(&a).file_name() == Some(OsStr::new("lxc")))
    {
        stub_lxc();
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let want = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    if want("go") {
        println!("0. `container snapshot create` against lxc-dev-manager, each served at once (medians, interleaved)");
        match std::env::var_os("LDM_BENCH_GO") {
            Some(go) => against_go(Path::new(&go), 41),
            None => println!("   skipped: set LDM_BENCH_GO to an lxc-dev-manager binary (DESIGN.md, \"Fold\", says how it was built)"),
        }
        println!();
    }
    if want("whole") {
        println!("1. whole process minus `ldm --version` of the same binary: the store's share (medians, interleaved)");
        if std::env::var_os("LDM_BENCH_BEFORE").is_none() {
            println!(
                "   (set LDM_BENCH_BEFORE to an older ldm binary to measure it beside this one)"
            );
        }
        println!(
            "   {:>10} {:>7} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "snapshots", "ldm", "config set", "config get", "--version", "set share", "get share"
        );
        for (snapshots, rounds) in [(10, 201), (10_000, 61)] {
            whole_process(snapshots, rounds);
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
