//! `ldm create --lxd-project NAME` (issue 23): a project's containers live
//! in an LXD project of its own, made if missing with the default
//! project's images and profiles shared, and every request names it
//! whatever the client's current project, so two people's `p-dev` on one
//! server never meet. Against the API test double with the real `ldm`.
//! (The harness is tests/ownership.rs's, until the shared one lands.)

use std::path::PathBuf;
use std::process::{Command, Stdio};

use lxd_double::{Double, Image, Instance};

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }
}

/// Two folders (`a`, the first checkout, and later its copy `b`) of one
/// user, and an LXD double with the image `ldm-debian`.
struct Env {
    double: Double,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    conf: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (home, conf) = (root.join("home"), root.join("conf"));
        for d in [&home, &conf, &root.join("a")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            conf.join("config.yml"),
            Double::client_config("local", "default"),
        )
        .unwrap();
        let double = Double::start(&root.join("lxd")).unwrap();
        double.add_image("default", Image::new("ldm-debian"));
        Env {
            double,
            _tmp: tmp,
            root,
            home,
            conf,
        }
    }

    fn dir(&self, folder: &str) -> PathBuf {
        self.root.join(folder)
    }

    fn ldm(&self, folder: &str, args: &[&str]) -> Run {
        let out = self
            .command(folder, args)
            .stdin(Stdio::null())
            .output()
            .expect("run ldm");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Makes folder `name`.
    fn folder(&self, name: &str) {
        std::fs::create_dir_all(self.dir(name)).unwrap();
    }

    /// The client's current project becomes `project` (`lxc project switch`).
    fn switch(&self, project: &str) {
        std::fs::write(
            self.conf.join("config.yml"),
            Double::client_config("local", project),
        )
        .unwrap();
    }

    /// `ldm ARGS` in `folder`, not started yet.
    fn command(&self, folder: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ldm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LDM_") || k.starts_with("LXD_") || k.starts_with("INCUS_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .current_dir(self.dir(folder))
            .env("LDM_LXC", "/nonexistent/lxc")
            .env("LXD_DIR", self.double.dir())
            .env("LXD_CONF", &self.conf)
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("NO_COLOR", "1");
        cmd
    }

    fn instance(&self, project: &str, name: &str) -> Option<Instance> {
        self.double.instance(project, name)
    }

    fn running(&self, project: &str, name: &str) -> bool {
        self.instance(project, name).is_some_and(|i| i.is_running())
    }
}

/// Two folders (two people's checkouts) of a project named alike, each in
/// its own LXD project: each has its own `p-dev`, and each folder's
/// commands act on its own only.
#[test]
fn two_projects_named_alike_in_two_lxd_projects_run_side_by_side() {
    let env = Env::new();
    env.folder("b");
    // Bob's LXD project exists already: it is used as it is.
    env.double.add_project(
        "bob",
        &[("features.images", "false"), ("features.profiles", "false")],
    );
    let a = env
        .ldm("a", &["create", "--name", "p", "--lxd-project", "alice"])
        .ok();
    assert!(a.stderr.contains("Made LXD project alice"), "{a:#?}");
    let b = env
        .ldm("b", &["create", "--name", "p", "--lxd-project", "bob"])
        .ok();
    assert!(!b.stderr.contains("Made LXD project"), "{b:#?}");
    let alice = env.double.state().projects["alice"].config.clone();
    assert_eq!(
        alice.get("features.images").map(String::as_str),
        Some("false")
    );
    assert_eq!(
        alice.get("features.profiles").map(String::as_str),
        Some("false")
    );
    let yaml = std::fs::read_to_string(env.dir("a").join("containers.yaml")).unwrap();
    assert!(yaml.contains("\nlxd_project: alice\n"), "{yaml}");

    for folder in ["a", "b"] {
        env.ldm(
            folder,
            &["container", "create", "dev", "ldm-debian", "--no-mount"],
        )
        .ok();
    }
    assert!(env.running("alice", "p-dev") && env.running("bob", "p-dev"));
    assert!(env.instance("default", "p-dev").is_none());
    env.ldm("a", &["down", "dev"]).ok();
    assert!(!env.running("alice", "p-dev") && env.running("bob", "p-dev"));
    env.ldm("b", &["container", "snapshot", "create", "dev", "s1"])
        .ok();
    assert!(
        env.instance("alice", "p-dev")
            .unwrap()
            .snapshot_names()
            .len()
            == 1
    );
    env.ldm("a", &["doctor"]).ok();
    env.ldm("b", &["doctor"]).ok();
    env.ldm("a", &["project", "delete", "--force"]).ok();
    assert!(env.instance("alice", "p-dev").is_none() && env.running("bob", "p-dev"));
}

/// After `lxc project switch other`, a pinned project's commands still
/// address its LXD project: nothing is made in, or looked for in, the
/// client's current one.
#[test]
fn the_pinned_lxd_project_is_named_whatever_the_clients_current_project() {
    let env = Env::new();
    env.ldm("a", &["create", "--name", "p", "--lxd-project", "alice"])
        .ok();
    env.ldm(
        "a",
        &["container", "create", "dev", "ldm-debian", "--no-mount"],
    )
    .ok();
    env.double.add_project("other", &[]);
    env.switch("other");
    env.double.take_requests();
    env.ldm("a", &["down"]).ok();
    assert!(!env.running("alice", "p-dev"));
    env.ldm("a", &["up"]).ok();
    assert!(env.running("alice", "p-dev"));
    let list = env.ldm("a", &["list"]).ok();
    assert!(list.stdout.contains("RUNNING"), "{list:#?}");
    assert!(env.instance("other", "p-dev").is_none() && env.instance("default", "p-dev").is_none());
    for r in env.double.take_requests() {
        let q = r.query("project");
        assert!(
            q.as_deref() == Some("alice")
                || r.path() == "/1.0"
                || r.path().starts_with("/1.0/operations"),
            "a request named another project: {r:?}"
        );
    }
}

/// A bad name is refused before anything is made.
#[test]
fn a_bad_lxd_project_name_is_refused_and_nothing_is_made() {
    let env = Env::new();
    let r = env
        .ldm("a", &["create", "--name", "p", "--lxd-project", "a/b"])
        .code(1);
    assert!(r.stderr.contains("invalid LXD project"), "{r:#?}");
    assert!(!env.dir("a").join("containers.yaml").exists());
    assert!(!env.double.state().projects.contains_key("a/b"));
}
