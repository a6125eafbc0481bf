//! Setup steps against the API test double (`crates/lxd-double`) with the
//! real `ldm` binary (issue 25, items 8 and 9):
//!
//! - a step printing one huge line without a newline: ldm's peak resident
//!   memory stays bounded (each line is cut at `ldm::lxd::MAX_LINE`), and
//!   the cut is said;
//! - Ctrl+C (SIGINT to ldm) while a step runs: the step gets the signal
//!   through the exec control socket, the step is recorded as not
//!   finished, ldm exits 130; the resume refuses while an earlier step
//!   still runs in the container, and runs it again once it does not;
//! - `--step-timeout`: a step that outlives it gets SIGTERM and fails.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldm::model::SetupProgress;
use ldm::store::{Options, Paths, Store};
use lxd_double::{Double, ExecRule, Family, Image};

/// A project `p` with setup steps `steps`, trusted, and a double with the
/// image `ldm-debian`.
struct Env {
    double: Double,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    conf: PathBuf,
}

impl Env {
    fn new(steps: &[&str]) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (dir, home, conf) = (root.join("work"), root.join("home"), root.join("conf"));
        for d in [&dir, &home, &conf] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            conf.join("config.yml"),
            Double::client_config("local", "default"),
        )
        .unwrap();
        let double = Double::start(&root.join("lxd")).unwrap();
        double.set_family(Family::Lxd);
        double.add_image("default", Image::new("ldm-debian"));
        let env = Env {
            double,
            _tmp: tmp,
            dir,
            home,
            conf,
        };
        assert_eq!(env.ldm(&["create", "--name", "p"]).0, 0);
        let yaml = env.dir.join("containers.yaml");
        let mut text = std::fs::read_to_string(&yaml).unwrap();
        assert!(!text.contains("defaults:"), "{text}");
        text.push_str("defaults:\n  setup:\n");
        for s in steps {
            text.push_str(&format!("  - {s}\n"));
        }
        std::fs::write(&yaml, text).unwrap();
        assert_eq!(env.ldm(&["trust", "--yes"]).0, 0);
        env
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ldm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LDM_") || k.starts_with("LXD_") || k.starts_with("INCUS_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .current_dir(&self.dir)
            .env("LDM_LXC", "/nonexistent/lxc")
            .env("LXD_DIR", self.double.dir())
            .env("LXD_CONF", &self.conf)
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Exit code and stderr.
    fn ldm(&self, args: &[&str]) -> (i32, String) {
        let out = self.command(args).output().expect("run ldm");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts ldm with stderr into a file (its path returned).
    fn spawn(&self, args: &[&str]) -> (Child, PathBuf) {
        let path = self.dir.join(format!("../stderr-{}", args.join("-")));
        let err = File::create(&path).unwrap();
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        (child, path)
    }

    /// The setup progress recorded for `c`.
    fn progress(&self, c: &str) -> Option<SetupProgress> {
        let p = Store::open(Paths::in_dir(&self.dir), Options::default())
            .read()
            .unwrap();
        p.containers[c]
            .pending
            .as_ref()
            .and_then(|p| p.setup.clone())
    }

    /// The execs of the double whose command has `text` in an argument.
    fn execs_of(&self, text: &str) -> Vec<lxd_double::Exec> {
        self.double
            .execs()
            .into_iter()
            .filter(|e| e.command.iter().any(|a| a.contains(text)))
            .collect()
    }

    /// Waits until an exec with `text` runs.
    fn wait_running(&self, text: &str) {
        let t = Instant::now();
        while !self.execs_of(text).iter().any(|e| e.code.is_none()) {
            assert!(t.elapsed() < Duration::from_secs(20), "{text} never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits for `child`; its exit code and its peak resident set in KiB
/// (`VmHWM` of /proc/PID/status, read until it exits: wait4's `ru_maxrss`
/// would count this test process's memory, which the child had before
/// its exec).
fn wait_rss(mut child: Child) -> (i32, u64) {
    let status = format!("/proc/{}/status", child.id());
    let mut hwm = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let kib = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            hwm = hwm.max(kib.unwrap_or(0));
        }
        if let Some(st) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            return (code, hwm);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Issue 25, item 9: 64 MiB printed as one line made ldm hold about five
/// times that (the partial line, its copies and the unbounded channel).
/// Against the same create with a one-line step, ldm's peak grows by
/// less than 8 MiB (it grew by about 5 x 64 MiB).
#[test]
fn a_step_printing_one_huge_line_keeps_ldm_small() {
    let env = Env::new(&["print-huge-line"]);
    let size: usize = std::env::var("LDM_TEST_LINE_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64 << 20);
    let mut rule = ExecRule::contains("print-huge-line").instance("p-a");
    rule.stdout = vec![b'x'; size];
    env.double.exec_rule(rule);
    env.double
        .exec_rule(ExecRule::contains("print-huge-line").stdout("short\n"));
    let mut peak = Vec::new();
    let mut stderr = String::new();
    for c in ["b", "a"] {
        let (child, err) = env.spawn(&["container", "create", c, "ldm-debian", "--no-mount"]);
        let (code, rss_kib) = wait_rss(child);
        stderr = std::fs::read_to_string(&err).unwrap();
        assert_eq!(code, 0, "{stderr}");
        peak.push(rss_kib);
    }
    eprintln!(
        "peak RSS of ldm (VmHWM): {:.1} MiB with a one-line step, {:.1} MiB with a {} MiB line",
        peak[0] as f64 / 1024.0,
        peak[1] as f64 / 1024.0,
        size >> 20
    );
    assert!(
        peak[1] < peak[0] + 8 * 1024,
        "ldm's peak RSS grew from {} KiB to {} KiB for a {size}-byte line",
        peak[0],
        peak[1]
    );
    let kept = ldm::lxd::MAX_LINE;
    let want = format!(
        "a | {} [... {} more bytes of this line not shown]\n",
        "x".repeat(kept),
        size - kept
    );
    assert!(
        stderr.contains(&want),
        "the line is cut and the cut said: {} bytes of stderr",
        stderr.len()
    );
}

/// Issue 25, item 8: Ctrl+C stops the step in the container, records it
/// as not finished, exits 130; the resume does not start a second copy
/// while the first runs, and runs the step again once it does not.
#[test]
fn ctrl_c_stops_the_step_in_the_container_and_the_resume_waits_for_it() {
    let env = Env::new(&["endless-step"]);
    env.double
        .exec_rule(ExecRule::contains("endless-step").until_signal());
    let (child, err) = env.spawn(&["container", "create", "a", "ldm-debian", "--no-mount"]);
    env.wait_running("endless-step");
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let t = Instant::now();
    let (code, _) = wait_rss(child);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, 130, "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(stderr.contains("interrupted (signal 2)"), "{stderr}");
    let runs = env.execs_of("endless-step");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].signals, [libc::SIGINT], "the step got the signal");
    assert_eq!(runs[0].code, Some(130));
    let p = env.progress("a").expect("the create is still pending");
    assert_eq!((p.failed, p.finished.len()), (Some(1), 0), "{p:?}");

    // An earlier copy still running (as after a killed ldm): the resume
    // refuses and starts nothing.
    env.double.clear_exec_rules();
    env.double.exec_rule(
        ExecRule::contains("ldm-setup-step.pid")
            .stdout("4242\n")
            .code(3),
    );
    let (code, stderr) = env.ldm(&["container", "create", "a"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("still running in p-a (pid 4242)"),
        "{stderr}"
    );
    assert_eq!(env.execs_of("endless-step").len(), 1, "no second copy");

    // Once it ended, the resume runs the step again and finishes.
    env.double.clear_exec_rules();
    let (code, stderr) = env.ldm(&["container", "create", "a"]);
    assert_eq!(code, 0, "{stderr}");
    let runs = env.execs_of("endless-step");
    assert_eq!(runs.len(), 2);
    assert!(runs[1].command.iter().any(|a| a.starts_with("LDM_STEP=")));
    assert_eq!(env.progress("a"), None);
}

/// Issue 25, item 8: a step that outlives `--step-timeout` gets SIGTERM
/// and fails, recorded as not finished.
#[test]
fn a_step_over_its_timeout_is_stopped_and_fails() {
    let env = Env::new(&["endless-step"]);
    env.double
        .exec_rule(ExecRule::contains("endless-step").until_signal());
    let t = Instant::now();
    let (mut child, err) = env.spawn(&[
        "container",
        "create",
        "a",
        "ldm-debian",
        "--no-mount",
        "--step-timeout",
        "1",
    ]);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the step ran on past its timeout");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        stderr.contains("ran longer than --step-timeout (1s)"),
        "{stderr}"
    );
    let runs = env.execs_of("endless-step");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].signals, [libc::SIGTERM]);
    let p = env.progress("a").expect("the create is still pending");
    assert_eq!((p.failed, p.finished.len()), (Some(1), 0), "{p:?}");
}
