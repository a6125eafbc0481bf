//! Harness for tests that run the real `ldm` binary against the LXD API
//! TEST DOUBLE (`crates/lxd-double`): the one fake of LXD the tests use.
//!
//! [`Env`] is a temp folder holding the double (its socket in `lxd/`), the
//! client configuration (`conf/config.yml`, as `lxc remote` leaves it),
//! a home folder with the user's state and cache, and project folders
//! (`work/` by default). ldm finds the double by the clients' own
//! variables only (`LXD_DIR`/`LXD_CONF`, or `INCUS_DIR`/`INCUS_CONF`);
//! `LDM_LXC` names a client program that only records being run (ldm runs
//! one for interactive shells only). The test reads what ldm asked
//! ([`Env::take_requests`]), what the server holds ([`Env::instance`]) and
//! the project ([`Env::project`], through `ldm::store` with the folders
//! the binary uses), and seeds containers without `container create`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldm::model::{Mutation, Project};
use ldm::store::{Derived, Options, Paths, Store};
use ldm::user_state::UserDirs;
use lxd_double::{Double, Family, Hang, Instance, Request};

/// The config keys every `container create` sets on the instance it
/// launches (the CLI backend's `--config` flags, now the create body's
/// `config`).
pub const LAUNCH_CONFIG: [(&str, &str); 3] = [
    ("security.nesting", "true"),
    ("security.syscalls.intercept.mknod", "true"),
    ("security.syscalls.intercept.setxattr", "true"),
];

/// One finished ldm run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it took.
    pub took: Duration,
}

impl Run {
    /// Panics with both streams unless the exit code is 0.
    pub fn ok(self) -> Run {
        self.code(0)
    }

    /// Panics with both streams unless the exit code is 1.
    pub fn fail(self) -> Run {
        self.code(1)
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        self
    }

    /// The old harness's name for [`Run::code`].
    pub fn expect(self, code: i32) -> Run {
        self.code(code)
    }

    /// Panics unless stderr contains `text`.
    pub fn err_has(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
    }

    /// Panics unless stdout contains `text`.
    pub fn out_has(&self, text: &str) {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}",
            self.stdout
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

    /// Both streams, stdout first.
    pub fn said(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A double, its client configuration, a home, and project folders.
pub struct Env {
    /// The double. First: it stops (waking its socket) before its folder goes.
    pub double: Double,
    _tmp: tempfile::TempDir,
    /// The temp folder everything is in.
    pub root: PathBuf,
    /// The project folder of [`Env::run`] (`ROOT/work`).
    pub dir: PathBuf,
    /// Project name (the prefix of its LXD names); empty before a create.
    pub name: String,
    /// `HOME` of the runs (the user's state and cache under it).
    pub home: PathBuf,
    /// `LXD_CONF` (or `INCUS_CONF`).
    pub conf: PathBuf,
    /// The LXD project the client configuration makes current.
    pub lxd_project: String,
    family: Family,
    client: PathBuf,
    ran: PathBuf,
}

impl Env {
    /// An LXD double and an empty folder `work`, no ldm project in it.
    pub fn empty() -> Env {
        Env::empty_of(Family::Lxd)
    }

    /// A double of `family` and an empty folder `work`.
    pub fn empty_of(family: Family) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("ldm-api-")
            .tempdir()
            .expect("create a temp folder");
        let root = tmp.path().to_path_buf();
        let (dir, home, conf, bin) = (
            root.join("work"),
            root.join("home"),
            root.join("conf"),
            root.join("bin"),
        );
        for d in [&dir, &home, &conf, &bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            conf.join("config.yml"),
            Double::client_config("local", "default"),
        )
        .unwrap();
        let ran = root.join("client-ran");
        let client = bin.join(match family {
            Family::Lxd => "lxc",
            Family::Incus => "incus",
        });
        // Records each run (a line, and its argv split by \x1f, ended by
        // \x1e), then answers as `Env::client_answers` says (nothing, 0).
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> '{r}'\nfor a in \"$@\"; do printf '%s\\037' \"$a\"; done >> '{r}.argv'\nprintf '\\036' >> '{r}.argv'\n[ -f '{r}.out' ] && cat '{r}.out'\nexit $(cat '{r}.code' 2>/dev/null || echo 0)\n",
            r = ran.display()
        );
        std::fs::write(&client, script).unwrap();
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
        let double = Double::start(&root.join("lxd")).expect("start the LXD double");
        double.set_family(family);
        Env {
            double,
            _tmp: tmp,
            root,
            dir,
            name: String::new(),
            home,
            conf,
            lxd_project: "default".into(),
            family,
            client,
            ran,
        }
    }

    /// An LXD double and project `name` in `work` (`ldm create`, which
    /// asks LXD nothing).
    pub fn new(name: &str) -> Env {
        Env::new_of(Family::Lxd, name)
    }

    /// A double of `family` and project `name` in `work`.
    pub fn new_of(family: Family, name: &str) -> Env {
        let mut env = Env::empty_of(family);
        env.create(name);
        env
    }

    /// `ldm create --name NAME` in `work`; it must make no request.
    pub fn create(&mut self, name: &str) {
        self.ok(&["create", "--name", name]);
        self.name = name.into();
        let reqs = self.take_lines();
        assert!(reqs.is_empty(), "ldm create asked LXD: {reqs:?}");
    }

    /// Which server the double plays.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Makes `remote` the client's default remote with current project
    /// `project` (`local` is the double; another remote is an HTTPS
    /// server the double does not play). The project is made in the
    /// double if missing.
    pub fn set_client(&mut self, remote: &str, project: &str) {
        std::fs::write(
            self.conf.join("config.yml"),
            Double::client_config(remote, project),
        )
        .unwrap();
        if !self.double.state().projects.contains_key(project) {
            self.double.add_project(project, &[]);
        }
        self.lxd_project = project.into();
    }

    /// Another server, remote `name` of the client configuration
    /// (`addr: unix://ROOT/name/unix.socket`, which the clients allow for
    /// a server on this machine): a second double, for tests of a
    /// project's `remote`. The client's default remote stays `local`.
    pub fn remote_double(&self, name: &str) -> Double {
        self.remote_double_in(name, "default")
    }

    /// [`Env::remote_double`] whose current project (in the client
    /// configuration) is `project`, made in it.
    pub fn remote_double_in(&self, name: &str, project: &str) -> Double {
        let double = Double::start(&self.root.join(name)).expect("start a second double");
        double.set_family(self.family);
        if project != "default" {
            double.add_project(project, &[]);
        }
        let path = self.conf.join("config.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let entry = format!(
            "remotes:\n  {name}:\n    addr: unix://{}\n    public: false\n{}",
            double.socket().display(),
            if project == "default" {
                String::new()
            } else {
                format!("    project: {project}\n")
            }
        );
        std::fs::write(&path, text.replacen("remotes:\n", &entry, 1)).unwrap();
        double
    }

    /// Makes remote `name` of the client configuration this double over
    /// HTTPS (`https://127.0.0.1:PORT`, [`Double::serve_https`]): a server
    /// "on another machine" as ldm sees it. Writes the pinned server
    /// certificate and the user's client certificate as `lxc remote add`
    /// leaves them. Call after [`Env::set_client`], which rewrites the file.
    pub fn https_remote(&self, name: &str) -> std::net::SocketAddr {
        let addr = self.double.serve_https().expect("serve HTTPS");
        std::fs::create_dir_all(self.conf.join("servercerts")).unwrap();
        std::fs::write(
            self.conf.join("servercerts").join(format!("{name}.crt")),
            lxd_double::SERVER_CRT,
        )
        .unwrap();
        std::fs::write(self.conf.join("client.crt"), lxd_double::CLIENT_CRT).unwrap();
        std::fs::write(self.conf.join("client.key"), lxd_double::CLIENT_KEY).unwrap();
        let path = self.conf.join("config.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let ours = format!("https://{addr}");
        let text = if text.contains(&format!("  {name}:\n    addr: https://198.51.100.7:8443")) {
            text.replace("https://198.51.100.7:8443", &ours)
        } else {
            text.replacen(
                "remotes:\n",
                &format!("remotes:\n  {name}:\n    addr: {ours}\n    auth_type: tls\n    protocol: lxd\n    public: false\n"),
                1,
            )
        };
        std::fs::write(&path, text).unwrap();
        addr
    }

    /// Folder `name` under the temp folder (`ROOT/name`).
    pub fn folder(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `cp -r ROOT/from ROOT/to`: another checkout with the same files.
    pub fn copy(&self, from: &str, to: &str) {
        let st = Command::new("cp")
            .arg("-r")
            .arg(self.root.join(from))
            .arg(self.root.join(to))
            .status()
            .unwrap();
        assert!(st.success(), "cp -r {from} {to}");
    }

    /// The full LXD name of container `c`.
    pub fn lxd(&self, c: &str) -> String {
        format!("{}-{c}", self.name)
    }

    /// An /etc/subuid and /etc/subgid (for `LDM_SUBID_DIR`) that let root
    /// map uid and gid 1000 and the user running the tests, as the
    /// one-time root step ldm asks for leaves them. A test wanting them
    /// missing names another folder.
    pub fn subids(&self) -> PathBuf {
        let dir = self.root.join("subid");
        if !dir.exists() {
            // SAFETY: geteuid and getegid cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            std::fs::create_dir_all(&dir).unwrap();
            for (f, id) in [("subuid", uid), ("subgid", gid)] {
                let text = format!("root:100000:65536\nroot:1000:1\nroot:{id}:1\n");
                std::fs::write(dir.join(f), text).unwrap();
            }
        }
        dir
    }

    /// The binary under test; `LDM_TEST_BIN` names another build to
    /// compare (e.g. request counts before a change).
    pub fn bin() -> PathBuf {
        std::env::var_os("LDM_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ldm").into())
    }

    /// `ldm ARGS` in folder `dir` against the double, stdin closed, the
    /// caller's `LDM_*`, `LXD_*` and `INCUS_*` variables removed.
    pub fn command_in(&self, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(Env::bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("LDM_")
                || k.starts_with("LXD_")
                || k.starts_with("INCUS_")
                || k == "NO_COLOR"
                || k == "CLICOLOR_FORCE"
            {
                cmd.env_remove(&*k);
            }
        }
        let (dir_var, conf_var) = match self.family {
            Family::Lxd => ("LXD_DIR", "LXD_CONF"),
            Family::Incus => ("INCUS_DIR", "INCUS_CONF"),
        };
        cmd.args(args)
            .current_dir(dir)
            .env("LDM_LXC", &self.client)
            .env(dir_var, self.double.dir())
            .env(conf_var, &self.conf)
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("NO_COLOR", "1")
            .env("LDM_SUBID_DIR", self.subids())
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// `ldm ARGS` in `work`.
    pub fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        self.command_in(&self.dir, args, envs)
    }

    fn finish(cmd: &mut Command) -> Run {
        let start = Instant::now();
        let out = cmd.output().expect("run ldm");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: start.elapsed(),
        }
    }

    /// Runs `ldm ARGS` in folder `ROOT/folder`.
    pub fn run_in(&self, folder: &str, args: &[&str]) -> Run {
        Env::finish(&mut self.command_in(&self.root.join(folder), args, &[]))
    }

    /// Runs `ldm ARGS` in `work` with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        Env::finish(&mut self.command(args, envs))
    }

    /// Runs `ldm ARGS` in `work`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs `ldm ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.run(args).ok()
    }

    /// Runs `ldm ARGS`, which must fail with exit code 1.
    pub fn fail(&self, args: &[&str]) -> Run {
        self.run(args).fail()
    }

    /// `ldm trust --yes`: allows what the project asks for beyond its
    /// folder, as a user who reviewed it would.
    pub fn trust(&self) -> Run {
        self.ok(&["trust", "--yes"])
    }

    /// Starts `ldm ARGS` in the background with stdout and stderr captured.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> Child {
        self.command(args, envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldm")
    }

    /// From now on the client program prints `stdout` and exits `code`.
    pub fn client_answers(&self, stdout: &str, code: i32) {
        let base = self.ran.display().to_string();
        std::fs::write(format!("{base}.out"), stdout).unwrap();
        std::fs::write(format!("{base}.code"), code.to_string()).unwrap();
    }

    /// The argv of every run of the client program so far, forgotten.
    pub fn take_client_argvs(&self) -> Vec<Vec<String>> {
        let path = format!("{}.argv", self.ran.display());
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&self.ran);
        text.split('\x1e')
            .filter(|c| !c.is_empty())
            .map(|c| {
                let c = c.strip_suffix('\x1f').unwrap_or(c);
                c.split('\x1f').map(str::to_string).collect()
            })
            .collect()
    }

    /// What the client program recorded (its argv lines), if anything ran it.
    pub fn client_ran(&self) -> Option<String> {
        std::fs::read_to_string(&self.ran).ok()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.double.requests()
    }

    /// Every request so far, forgotten.
    pub fn take_requests(&self) -> Vec<Request> {
        self.double.take_requests()
    }

    /// The requests since the last take, as `METHOD PATH` (no query),
    /// forgotten.
    pub fn take_lines(&self) -> Vec<String> {
        self.take_requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }

    /// The calls ldm made since the last take, as `METHOD PATH`, without
    /// the waits for its own operations and an exec's websockets (what
    /// one client call did inside), forgotten.
    pub fn take_calls(&self) -> Vec<String> {
        self.take_requests()
            .iter()
            .filter(|r| !is_plumbing(r))
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }

    /// The requests since the last take that change something (all but
    /// `GET`), as `METHOD PATH`, forgotten.
    pub fn take_changes(&self) -> Vec<String> {
        self.take_requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }

    /// The user's folders the binary uses.
    pub fn users(&self) -> UserDirs {
        UserDirs {
            state: self.home.join("state").join("ldm"),
            cache: self.home.join("cache").join("ldm"),
        }
    }

    /// The project files of folder `dir` as the binary finds them.
    pub fn paths_of(&self, dir: &Path) -> Paths {
        let derived = Derived::for_checkout(&self.users(), dir)
            .unwrap_or_else(|e| panic!("no state folder for {}: {e}", dir.display()));
        Paths::with_derived(dir, derived)
    }

    /// The project files of `work`.
    pub fn paths(&self) -> Paths {
        self.paths_of(&self.dir)
    }

    /// The project in `work` as the store reads it.
    pub fn project(&self) -> Project {
        Store::open(self.paths(), Options::default())
            .read()
            .expect("project reads")
    }

    /// Does the project in `work` record container `c`?
    pub fn recorded(&self, c: &str) -> bool {
        self.project().containers.contains_key(c)
    }

    /// Instance `lxd_name` of the client's current LXD project.
    pub fn instance(&self, lxd_name: &str) -> Option<Instance> {
        self.double.instance(&self.lxd_project, lxd_name)
    }

    /// Does LXD have container `c` of the project?
    pub fn in_lxd(&self, c: &str) -> bool {
        self.instance(&self.lxd(c)).is_some()
    }

    /// Is instance `lxd_name` there and running?
    pub fn running(&self, lxd_name: &str) -> bool {
        self.instance(lxd_name).is_some_and(|i| i.is_running())
    }

    /// The instances of the client's current LXD project, by name.
    pub fn instances(&self) -> BTreeMap<String, Instance> {
        self.double
            .state()
            .projects
            .get(&self.lxd_project)
            .map(|p| p.instances.clone())
            .unwrap_or_default()
    }

    /// The IPv4 the double gave container `c`.
    pub fn ip(&self, c: &str) -> String {
        let inst = self.instance(&self.lxd(c));
        inst.and_then(|i| i.ipv4)
            .unwrap_or_else(|| panic!("{} has no address", self.lxd(c)))
    }

    /// Snapshot names LXD (the double) has for container `c`.
    pub fn lxd_snapshots(&self, c: &str) -> BTreeSet<String> {
        let inst = self.instance(&self.lxd(c));
        inst.unwrap_or_else(|| panic!("LXD has no {}", self.lxd(c)))
            .snapshot_names()
            .into_iter()
            .collect()
    }

    /// Puts an unmarked instance (as made by hand or by lxc-dev-manager)
    /// into the current LXD project.
    pub fn seed_instance(&self, lxd_name: &str, running: bool, snapshots: &[&str]) {
        let mut inst = if running {
            Instance::running()
        } else {
            Instance::stopped()
        };
        for s in snapshots {
            inst = inst.snapshot(s);
        }
        self.double.seed(&self.lxd_project, lxd_name, inst);
    }

    /// The owner marks ldm puts on container `c` it makes from `work`.
    pub fn marks(&self, c: &str) -> Vec<(String, String)> {
        let id = self.users().checkout(&self.dir).unwrap().id.to_string();
        let folder = std::fs::canonicalize(&self.dir).unwrap();
        vec![
            ("user.ldm.checkout".into(), id),
            ("user.ldm.project".into(), self.name.clone()),
            ("user.ldm.container".into(), c.into()),
            ("user.ldm.folder".into(), folder.display().to_string()),
        ]
    }

    /// Records container `c` (image `image`, snapshot initial-state) in
    /// the project and seeds its instance with this checkout's marks, as
    /// a finished `container create` leaves them.
    pub fn seed_container(&self, c: &str, image: &str, running: bool) {
        let mut store = Store::open(self.paths(), Options::default());
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
        let mut inst = if running {
            Instance::running()
        } else {
            Instance::stopped()
        };
        for (k, v) in self.marks(c) {
            inst = inst.config(&k, &v);
        }
        self.double.seed(
            &self.lxd_project,
            &self.lxd(c),
            inst.snapshot("initial-state"),
        );
    }

    /// Gives container `c`'s instance a snapshot `name` of it as it is.
    pub fn lxd_snapshot(&self, c: &str, name: &str) {
        let mut st = self.double.state();
        let lxd = self.lxd(c);
        let project = self.lxd_project.clone();
        let inst = st.instance_mut(&project, &lxd).expect("the instance");
        let snap = lxd_double::Snapshot::of(inst, name, "2026-01-01T00:00:02.000000000Z");
        inst.snapshots.push(snap);
    }

    /// Takes instance `lxd_name` out of the current LXD project (LXD lost
    /// it); returns it.
    pub fn unseed(&self, lxd_name: &str) -> Instance {
        let project = self.lxd_project.clone();
        self.double
            .state()
            .projects
            .get_mut(&project)
            .and_then(|p| p.instances.remove(lxd_name))
            .unwrap_or_else(|| panic!("LXD has no {lxd_name}"))
    }

    /// Every command run in instances so far.
    pub fn execs(&self) -> Vec<lxd_double::Exec> {
        self.double.execs()
    }

    /// Waits for a request or operation held by a hang knob; panics after
    /// `limit`.
    pub fn wait_hang(&self, limit: Duration) -> Hang {
        self.double
            .wait_hang(limit)
            .unwrap_or_else(|| panic!("nothing reached a hang in {limit:?}"))
    }

    /// Panics unless the project and LXD agree: no operation pending,
    /// every recorded container in LXD with the recorded snapshots, and no
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

/// A wait for an operation by id (`GET /1.0/operations/ID/wait`) or an
/// exec's websocket: how a call is carried out, not a call of its own.
pub fn is_plumbing(r: &Request) -> bool {
    r.method == "GET"
        && (r.is("GET", "/1.0/operations/*/wait") || r.is("GET", "/1.0/operations/*/websocket"))
}

/// `parts` as owned strings, to compare with request lines.
pub fn lines(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// SIGKILL to `pid` (a process this test started).
pub fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid we own; an already gone process is fine.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The canonical path of `p`, as ldm writes it in marks and messages.
pub fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
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
