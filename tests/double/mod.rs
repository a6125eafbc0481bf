//! Harness for tests that run the `ldm` binary against the LXD client TEST
//! DOUBLE `tests/lxd_double/lxc` (a python3 script; see its header for the
//! state file, the call log and the SLOW/FAIL/HANG knobs).
//!
//! [`Env`] is one project folder plus one double folder: it runs ldm with
//! `LDM_LXC` pointing at the double, reads the calls the double recorded,
//! the double's state and the project (through `ldm::store`), and can seed
//! containers without running `container create`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldm::model::{Mutation, Project};
use ldm::store::{Options, Paths, Store};
use serde_json::{json, Value};

/// The config keys every `container create` passes to `launch`, each as
/// one `--flag=value` argument (a value never parses as a flag).
pub const LAUNCH_CONFIG: [&str; 3] = [
    "--config=security.nesting=true",
    "--config=security.syscalls.intercept.mknod=true",
    "--config=security.syscalls.intercept.setxattr=true",
];

/// Absolute path of the test double.
pub fn double_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lxd_double/lxc")
}

/// One finished ldm run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Panics unless stderr contains `text`.
    pub fn err_has(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
    }

    /// Panics unless stdout starts with `text`.
    pub fn out_starts(&self, text: &str) {
        assert!(
            self.stdout.starts_with(text),
            "stdout does not start with {text:?}:\n{}",
            self.stdout
        );
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// One client call as the double recorded it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Arguments after the program name.
    pub argv: Vec<String>,
    pub stdin: String,
    /// The double's pid.
    pub pid: u32,
    /// Its parent: the ldm process that made the call.
    pub ppid: u32,
    /// Unix time of the call.
    pub t: f64,
    /// Unix time it exited (`ends.jsonl`); `None` while it runs, or if it
    /// was killed.
    pub end: Option<f64>,
}

/// Contents of a `hang.VERB` marker.
#[derive(Debug, Clone, Copy)]
pub struct Hang {
    pub pid: i32,
    pub ppid: i32,
}

/// A project folder (project `name`, created with `ldm create`) and a double folder.
pub struct Env {
    _tmp: tempfile::TempDir,
    /// Project name.
    pub name: String,
    /// Project folder (the working directory of every run).
    pub dir: PathBuf,
    /// `LDM_DOUBLE_DIR`.
    pub dd: PathBuf,
    home: PathBuf,
}

impl Env {
    /// A new project `name` in a fresh folder; makes no client call.
    pub fn new(name: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, dd, home) = (
            tmp.path().join("work"),
            tmp.path().join("double"),
            tmp.path().join("home"),
        );
        for d in [&dir, &dd, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        let env = Env {
            _tmp: tmp,
            name: name.to_string(),
            dir,
            dd,
            home,
        };
        env.run(&["create", "--name", name]).expect(0);
        assert!(env.calls().is_empty(), "ldm create calls no client");
        env
    }

    /// The IPv4 the double gave container `c`.
    pub fn ip(&self, c: &str) -> String {
        self.instances()[&self.lxd(c)]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The full LXD name of container `c`.
    pub fn lxd(&self, c: &str) -> String {
        format!("{}-{c}", self.name)
    }

    /// `ldm ARGS` in the project folder, against the double, stdin closed.
    pub fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ldm"));
        cmd.args(args).current_dir(&self.dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("LDM_") || k == "NO_COLOR" || k == "CLICOLOR_FORCE" {
                cmd.env_remove(k);
            }
        }
        // The python double is a client program: the CLI backend runs it
        // (until these tests speak to the API double).
        cmd.env("LDM_BACKEND", "cli")
            .env("LDM_LXC", double_path())
            .env("LDM_DOUBLE_DIR", &self.dd)
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("NO_COLOR", "1")
            .env("LDM_SUBID_DIR", self.subids())
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// An /etc/subuid and /etc/subgid (for `LDM_SUBID_DIR`) that let root
    /// map uid and gid 1000 and the user running the tests, as the one-time
    /// root step ldm asks for leaves them: mounts use `raw.idmap`, never
    /// idmapped mounts. A test wanting them missing names another folder.
    pub fn subids(&self) -> PathBuf {
        let dir = self.dd.join("subid");
        if !dir.exists() {
            // SAFETY: geteuid and getegid cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let _ = std::fs::create_dir_all(&dir);
            for (f, id) in [("subuid", uid), ("subgid", gid)] {
                let text = format!("root:100000:65536\nroot:1000:1\nroot:{id}:1\n");
                let _ = std::fs::write(dir.join(f), text);
            }
        }
        dir
    }

    /// Runs `ldm ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let start = Instant::now();
        let out = self.command(args, envs).output().expect("run ldm");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }

    /// Runs `ldm ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs `ldm ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.run(args).expect(0)
    }

    /// `ldm trust --yes`: allows what the project asks for beyond its
    /// folder, as a user who reviewed it would.
    pub fn trust(&self) -> Run {
        self.ok(&["trust", "--yes"])
    }

    /// The home folder of the runs (`HOME`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Runs `ldm ARGS`, which must fail with exit code 1.
    pub fn fail(&self, args: &[&str]) -> Run {
        self.run(args).expect(1)
    }

    /// Starts `ldm ARGS` in the background with stdout and stderr captured.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> Child {
        self.command(args, envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldm")
    }

    /// Every client call so far, in order, with its end time where it has
    /// finished.
    pub fn calls(&self) -> Vec<Call> {
        // Keyed by pid and start time: a pid the kernel reuses is another call.
        let ends: BTreeMap<(u64, u64), f64> = std::fs::read_to_string(self.dd.join("ends.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("end line is JSON");
                let key = (
                    v["pid"].as_u64().unwrap(),
                    v["start"].as_f64().unwrap().to_bits(),
                );
                (key, v["t"].as_f64().unwrap())
            })
            .collect();
        let text = std::fs::read_to_string(self.dd.join("calls.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("call line is JSON");
                Call {
                    argv: v["argv"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string())
                        .collect(),
                    stdin: v["stdin"].as_str().unwrap().to_string(),
                    pid: v["pid"].as_u64().unwrap() as u32,
                    ppid: v["ppid"].as_u64().unwrap() as u32,
                    t: v["t"].as_f64().unwrap(),
                    end: ends
                        .get(&(
                            v["pid"].as_u64().unwrap(),
                            v["t"].as_f64().unwrap().to_bits(),
                        ))
                        .copied(),
                }
            })
            .collect()
    }

    /// Every call so far, and forgets them (sequential tests only).
    pub fn take_all_calls(&self) -> Vec<Call> {
        let calls = self.calls();
        let _ = std::fs::remove_file(self.dd.join("calls.jsonl"));
        let _ = std::fs::remove_file(self.dd.join("ends.jsonl"));
        calls
    }

    /// The calls so far but ldm's once-per-run questions about the client's
    /// own configuration ([`is_client_lookup`]; tests/lxd_projects.rs and
    /// tests/mounts.rs check where and how often they are asked), and
    /// forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        self.take_all_calls()
            .into_iter()
            .filter(|c| !is_client_lookup(&c.argv))
            .collect()
    }

    /// The argv of each call [`Env::take_calls`] returns, and forgets them.
    pub fn take_argvs(&self) -> Vec<Vec<String>> {
        self.take_calls().into_iter().map(|c| c.argv).collect()
    }

    /// The project as the store reads it (containers.yaml plus the log).
    pub fn project(&self) -> Project {
        Store::open(Paths::in_dir(&self.dir), Options::default())
            .read()
            .expect("project reads")
    }

    /// The double's state file (`{}` before the first call).
    pub fn state(&self) -> Value {
        match std::fs::read_to_string(self.dd.join("state.json")) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(_) => json!({}),
        }
    }

    /// The double's instances by name.
    pub fn instances(&self) -> BTreeMap<String, Value> {
        let st = self.state();
        st["instances"]
            .as_object()
            .map(|o| o.clone().into_iter().collect())
            .unwrap_or_default()
    }

    /// Snapshot names LXD (the double) has for container `c`.
    pub fn lxd_snapshots(&self, c: &str) -> BTreeSet<String> {
        self.instances()[&self.lxd(c)]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Puts an instance into the double's state (no double may be running).
    pub fn seed_instance(&self, lxd_name: &str, running: bool, snapshots: &[&str]) {
        let mut st = self.state();
        if st.get("instances").is_none() {
            st["instances"] = json!({});
        }
        let n = st["instances"].as_object().unwrap().len() + 100;
        st["instances"][lxd_name] = json!({
            "config": {"image.description": "Double image seeded"},
            "created_at": "2026-01-01T00:00:00.000000000Z",
            "image": "seeded",
            "ip": format!("198.18.77.{n}"),
            "profiles": ["default"],
            "snapshots": snapshots.iter().map(|s| json!({"name": s, "created_at": "2026-01-01T00:00:01.000000000Z"})).collect::<Vec<_>>(),
            "status": if running { "Running" } else { "Stopped" },
            "files": {},
        });
        std::fs::write(
            self.dd.join("state.json"),
            serde_json::to_vec_pretty(&st).unwrap(),
        )
        .unwrap();
    }

    /// Records container `c` (image `image`, snapshot initial-state) in the
    /// project and seeds its instance, as a finished `container create` would.
    pub fn seed_container(&self, c: &str, image: &str, running: bool) {
        let mut store = Store::open(Paths::in_dir(&self.dir), Options::default());
        store
            .commit(|_| {
                let m = vec![
                    Mutation::ContainerAdded {
                        name: c.into(),
                        image: image.into(),
                        pending: None,
                    },
                    Mutation::SnapshotAdded {
                        container: c.into(),
                        name: "initial-state".into(),
                        description: "Initial state after setup".into(),
                        created_at: "2026-01-01T00:00:01Z".into(),
                        pending: None,
                    },
                ];
                Ok::<_, ldm::store::StoreError>((m, ()))
            })
            .unwrap();
        self.seed_instance(&self.lxd(c), running, &["initial-state"]);
    }

    /// Waits for the double to write `hang.VERB`; returns and removes it.
    pub fn wait_hang(&self, verb: &str, limit: Duration) -> Hang {
        let path = self.dd.join(format!("hang.{verb}"));
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let v: Value = serde_json::from_str(&text).unwrap();
                std::fs::remove_file(&path).unwrap();
                return Hang {
                    pid: v["pid"].as_i64().unwrap() as i32,
                    ppid: v["ppid"].as_i64().unwrap() as i32,
                };
            }
            assert!(start.elapsed() < limit, "the double never reached {verb}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics unless the project and LXD agree: no operation pending, every
    /// recorded container in LXD with the recorded snapshots, and no
    /// instance named like the project's that it does not record.
    pub fn assert_agree(&self) {
        let p = self.project();
        let inst = self.instances();
        for (name, c) in &p.containers {
            assert!(c.pending.is_none(), "{name} still pending: {:?}", c.pending);
            assert!(
                c.snapshots.values().all(|s| s.pending.is_none()),
                "{name} has a pending snapshot"
            );
            let lxd = self.lxd(name);
            assert!(inst.contains_key(&lxd), "recorded {name} is missing in LXD");
            let recorded: BTreeSet<String> = c.snapshots.keys().cloned().collect();
            assert_eq!(recorded, self.lxd_snapshots(name), "snapshots of {name}");
        }
        let prefix = format!("{}-", self.name);
        for lxd in inst.keys() {
            if let Some(c) = lxd.strip_prefix(&prefix) {
                assert!(
                    p.containers.contains_key(c),
                    "LXD has {lxd}, the project does not record it"
                );
            }
        }
    }
}

/// SIGKILL to `pid` (a process this test started, or the double it ran).
pub fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid we own; an already gone process is fine.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The client's `project list --format csv [REMOTE:]`: how ldm learns the
/// current LXD project, once per run (src/lxd/cli/project.rs).
pub fn is_project_list(argv: &[String]) -> bool {
    argv.starts_with(&["project".to_string(), "list".to_string()])
}

/// What ldm asks the client about its own configuration, once per run: the
/// current project, and (before a mount) the default remote and where its
/// server is (`remote get-default`, `remote list --format json`).
pub fn is_client_lookup(argv: &[String]) -> bool {
    is_project_list(argv) || argv.first().is_some_and(|v| v == "remote")
}

/// `parts` as an argv.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The argv of `launch FLAGS -- IMAGE LXD_NAME` with ldm's launch config.
pub fn launch(image: &str, lxd: &str) -> Vec<String> {
    let mut a = argv(&["launch"]);
    a.extend(argv(&LAUNCH_CONFIG));
    a.extend(argv(&["--", image, lxd]));
    a
}

/// The argv of the query for every instance without its state
/// (`Lxd::statuses`).
pub fn statuses_query() -> Vec<String> {
    argv(&["query", "--", "/1.0/instances?recursion=1"])
}

/// The argv of the query for the instances of every LXD project
/// (`Lxd::elsewhere`).
pub fn all_projects_query() -> Vec<String> {
    argv(&["query", "--", "/1.0/instances?all-projects=true"])
}

/// The argv of the instance query (`Lxd::instance`); `lxd` may carry a
/// `REMOTE:` prefix.
pub fn query(lxd: &str) -> Vec<String> {
    instance_path(lxd, "?recursion=1")
}

/// The argv of the state query of the IPv4 wait (`Lxd::state`); `lxd`
/// may carry a `REMOTE:` prefix.
pub fn state_query(lxd: &str) -> Vec<String> {
    instance_path(lxd, "/state")
}

fn instance_path(lxd: &str, rest: &str) -> Vec<String> {
    let (remote, name) = match lxd.split_once(':') {
        Some((r, n)) => (format!("{r}:"), n),
        None => (String::new(), lxd),
    };
    argv(&[
        "query",
        "--",
        &format!("{remote}/1.0/instances/{name}{rest}"),
    ])
}

/// Checks `stdin` is `USER:$6$...\n` and that the hash is `password`'s:
/// python3 calls the system's crypt(3) (libcrypt, which `chpasswd -e` and
/// login use) through ctypes, so the check does not trust ldm's own hashing
/// crate. Fails, saying so, if python3 or libcrypt is missing.
pub fn assert_hashed(stdin: &str, user: &str, password: &str) {
    use std::io::Write;
    let hash = stdin
        .strip_prefix(&format!("{user}:"))
        .and_then(|h| h.strip_suffix('\n'))
        .expect(stdin);
    assert!(
        hash.starts_with("$6$") && !hash.contains(password),
        "{hash}"
    );
    let check = r#"import ctypes, ctypes.util, sys
name = ctypes.util.find_library("crypt")
if name is None:
    sys.exit(4)
lib = ctypes.CDLL(name)
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
h = sys.argv[1].encode()
sys.exit(0 if lib.crypt(sys.stdin.buffer.read(), h) == h else 3)"#;
    let mut child = Command::new("python3")
        .args(["-c", check, hash])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs python3 to check the hash: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    match child.wait().unwrap().code() {
        Some(0) => {}
        Some(3) => panic!("{hash} is not the hash of {password:?}"),
        Some(4) => {
            panic!("this test needs libcrypt (crypt(3)) to check the hash; python3 finds none")
        }
        other => panic!("the hash check in python3 failed (exit {other:?})"),
    }
}
