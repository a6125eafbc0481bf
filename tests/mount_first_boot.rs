//! Issue 26, "Mount without a second boot": `container create` with the
//! project folder mounted, against the API test double
//! (`crates/lxd-double`) with the real `ldm` binary. The instance is
//! created stopped with `raw.idmap` in the create request, the container
//! user's ids are chosen from the image's `/etc/passwd` and `/etc/group`
//! (read from the stopped instance), it is started once and never
//! restarted; the fallback to the restart says why.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use lxd_double::{Double, ExecRule, Family, Image, Request};

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n";

struct Env {
    double: Double,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    /// The host user whose files the mount shows (the folder's owner when
    /// the test runs as root).
    host: u32,
}

impl Env {
    /// A project `p` whose folder belongs to the host user, /etc/subuid
    /// and /etc/subgid letting root map that user, and a double of `family`
    /// with the image `ldm-debian` (whose files are `image`'s).
    fn new(family: Family, image: Image) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("work");
        for d in ["work", "home", "conf", "subid"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let host = if euid == 0 { 1000 } else { euid };
        let ids = format!("root:100000:65536\nroot:{host}:1\n");
        std::fs::write(root.join("subid/subuid"), &ids).unwrap();
        std::fs::write(root.join("subid/subgid"), &ids).unwrap();
        std::fs::write(
            root.join("conf/config.yml"),
            Double::client_config("local", "default"),
        )
        .unwrap();
        let double = Double::start(&root.join("lxd")).unwrap();
        double.set_family(family);
        double.no_shift();
        double.add_image("default", image);
        let env = Env {
            double,
            _tmp: tmp,
            root,
            dir,
            host,
        };
        assert_eq!(env.ldm(&["create", "--name", "p"]).0, 0);
        if euid == 0 {
            std::os::unix::fs::chown(&env.dir, Some(host), Some(host)).unwrap();
            std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        env
    }

    /// Exit code, stdout and stderr.
    fn ldm(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ldm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LDM_") || k.starts_with("LXD_") || k.starts_with("INCUS_") {
                cmd.env_remove(k);
            }
        }
        let home = self.root.join("home");
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .env("LDM_LXC", "/nonexistent/lxc")
            .env("LDM_SUBID_DIR", self.root.join("subid"))
            .env("LXD_DIR", self.double.dir())
            .env("LXD_CONF", self.root.join("conf"))
            .env("HOME", &home)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `id -u`/`id -g` of the container user answer `uid` and `gid` (the
    /// double runs no useradd: it answers as the user made would).
    fn user_gets(&self, uid: u32, gid: u32) {
        self.double
            .exec_rule(ExecRule::contains("id -u \"$1\"").stdout(&format!("{uid}\n{gid}\n")));
    }

    /// The argv of the user setup command (the one that runs useradd).
    fn setup_argv(&self) -> Vec<String> {
        self.double
            .execs()
            .into_iter()
            .find(|e| e.command.iter().any(|a| a.contains("useradd")))
            .expect("the user was set up")
            .command
    }
}

fn image(passwd: &str, group: &str) -> Image {
    Image::new("ldm-debian")
        .file("/etc/passwd", passwd.as_bytes())
        .file("/etc/group", group.as_bytes())
}

fn idmap(host: u32, uid: u32) -> String {
    format!("uid {host} {uid}\ngid {host} {uid}")
}

/// The state changes: every `PUT .../state` body's action, in order.
fn state_changes(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.is("PUT", "/1.0/instances/*/state"))
        .map(|r| r.json()["action"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn create_request(reqs: &[Request]) -> serde_json::Value {
    reqs.iter()
        .find(|r| r.is("POST", "/1.0/instances"))
        .expect("a create request")
        .json()
}

/// The whole create with the mount: one create request carrying
/// `raw.idmap`, no start at creation, exactly one start and no restart;
/// the user made with the host user's ids, which the image does not use;
/// the mount devices in place, recorded.
fn one_boot_on(family: Family) {
    let env = Env::new(family, image(PASSWD, GROUP));
    let h = env.host;
    env.user_gets(h, h);
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian"]);
    assert_eq!(code, 0, "{out}{err}");
    let reqs = env.double.take_requests();
    let body = create_request(&reqs);
    assert_eq!(body["config"]["raw.idmap"], idmap(h, h), "{body:#}");
    assert!(body["start"] != true, "created stopped: {body:#}");
    assert_eq!(state_changes(&reqs), ["start"], "{err}");
    // The image's files were read before that start.
    let read = reqs
        .iter()
        .position(|r| {
            r.is("GET", "/1.0/instances/p-a/files")
                && r.query("path").as_deref() == Some("/etc/passwd")
        })
        .expect("the image's /etc/passwd was read");
    let start = reqs
        .iter()
        .position(|r| r.is("PUT", "/1.0/instances/p-a/state"))
        .unwrap();
    assert!(read < start);
    let argv = env.setup_argv();
    assert_eq!(
        argv[argv.len() - 3..],
        ["dev", &h.to_string(), &h.to_string()]
    );
    assert!(!err.contains("restart"), "{err}");
    let inst = env.double.instance("default", "p-a").unwrap();
    assert!(inst.is_running());
    assert_eq!(inst.config["raw.idmap"], idmap(h, h));
    let mounted: Vec<&String> = inst
        .devices
        .keys()
        .filter(|k| k.starts_with("ldm-mount-"))
        .collect();
    assert_eq!(mounted.len(), 1, "{:?}", inst.devices);
    assert!(out.contains("Created a (p-a)"), "{out}");
}

#[test]
fn create_with_a_mount_boots_once_on_lxd() {
    one_boot_on(Family::Lxd);
}

#[test]
fn create_with_a_mount_boots_once_on_incus() {
    one_boot_on(Family::Incus);
}

/// An image that uses the host user's uid and gid: the user gets the first
/// free ones from 1000, `raw.idmap` is corrected before the first start,
/// still one start.
#[test]
fn an_image_using_the_host_ids_gives_the_user_the_next_free_ones() {
    // SAFETY: geteuid cannot fail.
    let h = if unsafe { libc::geteuid() } == 0 {
        1000
    } else {
        unsafe { libc::geteuid() }
    };
    let mut passwd = PASSWD.to_string();
    let mut group = GROUP.to_string();
    // Every id from 1000 to the host's is taken, so the next free is h + 1.
    for id in 1000..=h.max(1000) {
        passwd.push_str(&format!("u{id}:x:{id}:{id}::/home/u{id}:/bin/sh\n"));
        group.push_str(&format!("u{id}:x:{id}:\n"));
    }
    let env = Env::new(Family::Lxd, image(&passwd, &group));
    assert_eq!(env.host, h);
    let next = h.max(1000) + 1;
    env.user_gets(next, next);
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian"]);
    assert_eq!(code, 0, "{out}{err}");
    let reqs = env.double.take_requests();
    assert_eq!(create_request(&reqs)["config"]["raw.idmap"], idmap(h, h));
    assert_eq!(state_changes(&reqs), ["start"], "{err}");
    let argv = env.setup_argv();
    assert_eq!(
        argv[argv.len() - 3..],
        ["dev", &next.to_string(), &next.to_string()]
    );
    let inst = env.double.instance("default", "p-a").unwrap();
    assert_eq!(inst.config["raw.idmap"], idmap(h, next));
    assert!(!err.contains("restart"), "{err}");
}

/// An image whose /etc/passwd cannot be read (the double's image has
/// none): the ids cannot be chosen, a stderr line says so, the instance
/// starts without raw.idmap and mounting restarts it once, as before.
#[test]
fn an_unreadable_passwd_falls_back_to_the_restart_and_says_why() {
    let env = Env::new(Family::Lxd, Image::new("ldm-debian"));
    let h = env.host;
    env.user_gets(h, h);
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("cannot be chosen before its first boot")
            && err.contains("/etc/passwd")
            && err.contains("restarts it once"),
        "{err}"
    );
    let reqs = env.double.take_requests();
    assert_eq!(state_changes(&reqs), ["start", "restart"], "{err}");
    let inst = env.double.instance("default", "p-a").unwrap();
    assert_eq!(inst.config["raw.idmap"], idmap(h, h));
    // The user was made as before: useradd picks its ids.
    assert_eq!(env.setup_argv().last().map(String::as_str), Some("dev"));
}

/// A user the image makes at first boot took the chosen uid (the double's
/// `id` answers another): a stderr line says so, and the mapping is
/// replaced with a restart (ldm's own raw.idmap is not someone else's).
#[test]
fn a_user_with_other_ids_than_chosen_restarts_once_and_says_why() {
    let env = Env::new(Family::Lxd, image(PASSWD, GROUP));
    let h = env.host;
    let other = h + 7;
    env.user_gets(other, other);
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("dev has uid {other}")) && err.contains("restarting it once"),
        "{err}"
    );
    let reqs = env.double.take_requests();
    assert_eq!(state_changes(&reqs), ["start", "restart"], "{err}");
    let inst = env.double.instance("default", "p-a").unwrap();
    assert_eq!(inst.config["raw.idmap"], idmap(h, other));
}

/// `--no-mount` takes the plain launch: no raw.idmap, no reads of the
/// image's files, one start.
#[test]
fn no_mount_maps_nothing() {
    let env = Env::new(Family::Lxd, image(PASSWD, GROUP));
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian", "--no-mount"]);
    assert_eq!(code, 0, "{out}{err}");
    let reqs = env.double.take_requests();
    assert!(create_request(&reqs)["config"]["raw.idmap"].is_null());
    assert!(!reqs.iter().any(|r| r.is("GET", "/1.0/instances/p-a/files")));
    assert_eq!(state_changes(&reqs), ["start"]);
}

/// Killed between the stopped create and its first start (while it read
/// the image's files): the project shows the create interrupted, LXD a
/// stopped instance with ldm's raw.idmap; `ldm container create a` again
/// finishes it with one start and no restart (DESIGN.md, "Long
/// operations").
#[test]
fn a_create_killed_before_the_first_start_is_finished_by_a_rerun() {
    let env = Env::new(Family::Lxd, image(PASSWD, GROUP));
    let h = env.host;
    env.user_gets(h, h);
    env.double.hang(
        lxd_double::Match::new("GET", "/1.0/instances/p-a/files").nth(1),
        lxd_double::HangAt::Request,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ldm"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LDM_") || k.starts_with("LXD_") || k.starts_with("INCUS_") {
            child.env_remove(k);
        }
    }
    let home = env.root.join("home");
    let mut child = child
        .args(["container", "create", "a", "ldm-debian"])
        .current_dir(&env.dir)
        .env("LDM_LXC", "/nonexistent/lxc")
        .env("LDM_SUBID_DIR", env.root.join("subid"))
        .env("LXD_DIR", env.double.dir())
        .env("LXD_CONF", env.root.join("conf"))
        .env("HOME", &home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hang = env
        .double
        .wait_hang(std::time::Duration::from_secs(60))
        .expect("ldm reads the image's files");
    child.kill().unwrap();
    child.wait().unwrap();
    env.double.release(hang.id);
    let inst = env.double.instance("default", "p-a").unwrap();
    assert!(!inst.is_running());
    assert_eq!(inst.config["raw.idmap"], idmap(h, h));
    let (_, listed, _) = env.ldm(&["list"]);
    assert!(listed.contains("interrupted"), "{listed}");
    env.double.clear_knobs();
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["container", "create", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    let reqs = env.double.take_requests();
    assert!(!reqs.iter().any(|r| r.is("POST", "/1.0/instances")));
    assert_eq!(state_changes(&reqs), ["start"], "{err}");
    let argv = env.setup_argv();
    assert_eq!(
        argv[argv.len() - 3..],
        ["dev", &h.to_string(), &h.to_string()]
    );
    let inst = env.double.instance("default", "p-a").unwrap();
    assert!(inst.is_running());
    assert!(inst.devices.keys().any(|k| k.starts_with("ldm-mount-")));
}

/// An image whose container user is root inside (`dev` with uid 0): ldm
/// never maps the host user to the container's root (every root process
/// of the container would run as the host user on the host). The
/// container is made, without the mount and without any raw.idmap, and
/// the create says why.
#[test]
fn a_container_user_that_is_root_inside_gets_no_mapping() {
    let passwd = format!("{PASSWD}dev:x:0:0::/root:/bin/bash\n");
    let env = Env::new(Family::Lxd, image(&passwd, GROUP));
    env.user_gets(0, 0);
    let (code, out, err) = env.ldm(&["container", "create", "a", "ldm-debian"]);
    assert_eq!(code, 0, "{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("Not mounted: the container user of p-a has uid or gid 0 (root) inside"),
        "{said}"
    );
    let inst = env.double.instance("default", "p-a").unwrap();
    assert!(inst.is_running());
    assert!(
        inst.config.get("raw.idmap").is_none_or(|v| v.is_empty()),
        "{:?}",
        inst.config
    );
    assert!(
        !inst.devices.keys().any(|k| k.starts_with("ldm-mount-")),
        "{:?}",
        inst.devices
    );
}
