//! `raw.idmap` and the restart that applies it, against the API test
//! double (`crates/lxd-double`, which sets `volatile.idmap.current` at
//! each start as LXD does) with the real `ldm` binary (issue 25, item 13):
//!
//! - an earlier run set `raw.idmap` and died before the restart: the
//!   re-run sees the mapping is not in effect, restarts, then mounts (it
//!   said "Mounted" with the files owned by nobody);
//! - a restart that fails: the rollback's own failures are said, never
//!   "(it was set back)" when it was not.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ldm::model::Mutation;
use ldm::store::{Options, Paths, Store};
use lxd_double::{Double, Family, Instance, Match};

/// The mapping ldm sets for host user 1000 and container user 1000.
const IDMAP: &str = "uid 1000 1000\ngid 1000 1000";

struct Env {
    double: Double,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
}

impl Env {
    /// A project folder owned by uid 1000 (ldm run as root maps the
    /// folder's owner), /etc/subuid and /etc/subgid letting root map 1000,
    /// a double without idmapped mounts, and container `a` recorded and
    /// running with `inst`'s config.
    fn new(inst: Instance) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("work");
        for d in ["work", "home", "conf", "subid"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let ids = "root:100000:65536\nroot:1000:1\n";
        std::fs::write(root.join("subid/subuid"), ids).unwrap();
        std::fs::write(root.join("subid/subgid"), ids).unwrap();
        std::fs::write(
            root.join("conf/config.yml"),
            Double::client_config("local", "default"),
        )
        .unwrap();
        let double = Double::start(&root.join("lxd")).unwrap();
        double.set_family(Family::Lxd);
        double.no_shift();
        let env = Env {
            double,
            _tmp: tmp,
            root,
            dir,
        };
        assert_eq!(env.ldm(&["create", "--name", "p"]).0, 0);
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&env.dir, Some(1000), Some(1000)).unwrap();
            std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let data = env.dir.join("data");
        std::fs::create_dir(&data).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();
        }
        let mut store = Store::open(Paths::in_dir(&env.dir), Options::default());
        store
            .commit(|_| {
                let m = vec![
                    Mutation::ContainerAdded {
                        name: "a".into(),
                        image: "ldm-debian".into(),
                        pending: None,
                    },
                    Mutation::SnapshotAdded {
                        container: "a".into(),
                        name: "initial-state".into(),
                        description: "Initial state after setup".into(),
                        created_at: "2026-01-01T00:00:01Z".into(),
                        pending: None,
                    },
                ];
                Ok::<_, ldm::store::StoreError>((m, ()))
            })
            .unwrap();
        env.double
            .seed("default", "p-a", inst.snapshot("initial-state"));
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

    /// The state changes (`PUT .../state` bodies' actions) and config
    /// writes the double saw, in order.
    fn changes(&self) -> Vec<String> {
        self.double
            .take_requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }
}

/// An instance running with the default id map while `raw.idmap` says
/// otherwise: what an earlier run left when it died between setting
/// `raw.idmap` and the restart.
fn set_not_applied() -> Instance {
    let map = r#"[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":1000000000},{"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":1000000000}]"#;
    Instance::running()
        .config("raw.idmap", IDMAP)
        .config("volatile.idmap.current", map)
}

#[test]
fn raw_idmap_set_but_never_applied_restarts_before_mounting() {
    let env = Env::new(set_not_applied());
    env.double.take_requests();
    let (code, out, err) = env.ldm(&["mount", "a", "data:/srv/data"]);
    assert_eq!(code, 0, "{out}{err}");
    let changes = env.changes();
    let restart = changes
        .iter()
        .position(|c| c == "PUT /1.0/instances/p-a/state")
        .unwrap_or_else(|| panic!("no restart: {changes:#?}\n{err}"));
    let add = changes
        .iter()
        .position(|c| c == "PATCH /1.0/instances/p-a")
        .unwrap_or_else(|| panic!("no device added: {changes:#?}"));
    assert!(restart < add, "restart, then the mount: {changes:#?}");
    assert!(err.contains("raw.idmap is set but not in effect"), "{err}");
    assert!(
        out.contains("Mounted data at /srv/data in a (raw.idmap)"),
        "{out}"
    );
    let inst = env.double.instance("default", "p-a").unwrap();
    let current = &inst.config["volatile.idmap.current"];
    let map: Vec<serde_json::Value> = serde_json::from_str(current).unwrap();
    assert!(
        map.iter().any(|e| e["Hostid"] == 1000 && e["Nsid"] == 1000),
        "the restart applied the mapping: {current}"
    );

    // Now in effect: another mount restarts nothing.
    std::fs::create_dir(env.dir.join("more")).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(env.dir.join("more"), Some(1000), Some(1000)).unwrap();
    }
    let (code, out, err) = env.ldm(&["mount", "a", "more:/srv/more"]);
    assert_eq!(code, 0, "{out}{err}");
    let changes = env.changes();
    assert!(
        !changes.iter().any(|c| c.ends_with("/state")),
        "{changes:#?}"
    );
}

#[test]
fn a_failed_rollback_of_raw_idmap_is_said_not_claimed() {
    let env = Env::new(Instance::running());
    // The restart fails (and so does the start after it), then so does
    // unsetting raw.idmap (a PUT of the instance).
    env.double.fail(
        Match::new("PUT", "/1.0/instances/p-a/state"),
        500,
        "cannot start: newuidmap failed",
    );
    env.double.fail(
        Match::new("PUT", "/1.0/instances/p-a"),
        500,
        "database is locked",
    );
    let (code, out, err) = env.ldm(&["mount", "a", "data:/srv/data"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("it was set back"), "{err}");
    assert!(err.contains("setting it back failed too"), "{err}");
    assert!(err.contains("database is locked"), "{err}");
    let inst = env.double.instance("default", "p-a").unwrap();
    assert_eq!(
        inst.config.get("raw.idmap").map(String::as_str),
        Some(IDMAP)
    );
    assert!(!out.contains("Mounted"), "{out}");
}
