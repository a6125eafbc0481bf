//! Mounts of host folders, setup steps, `ldm up`/`down` of every container,
//! and mount drift in `doctor`, against the LXD API TEST DOUBLE
//! (crates/lxd-double): exit codes, output, the project afterwards and the
//! changes the server logged (see `changes`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::api::{kill, Env};
use ldm::model::Mount;
use lxd_double::{Device, ExecRule, HangAt, Match};
use serde_json::Value;

/// The mount `text` (`HOST:PATH[:ro]`) as the model parses it.
fn mount(text: &str) -> Mount {
    Mount::parse(text).unwrap()
}

/// The mounts the project records for container `c`, as text.
fn recorded(env: &Env, c: &str) -> Vec<String> {
    env.project().containers[c]
        .mounts
        .iter()
        .map(|m| m.to_string())
        .collect()
}

/// The project folder's absolute, resolved path.
fn abs(env: &Env) -> String {
    std::fs::canonicalize(&env.dir)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A device add as [`changes`] shows it: `["add", LXD, DEV, "disk",
/// "source=SRC", "path=PATH", extra...]`.
fn add(lxd: &str, m: &Mount, src: &str, extra: &[&str]) -> Vec<String> {
    let mut v = argv(&["add", lxd]);
    v.push(m.device_name());
    v.push("disk".into());
    v.push(format!("source={src}"));
    v.push(format!("path={}", m.path));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The changes that map the project folder's owner to the container user
/// (1000 in the double) with `raw.idmap` on running instance `lxd`: set,
/// then a restart to apply it. Mounts are never idmapped (`shift=true`).
fn map_owner(env: &Env, lxd: &str) -> Vec<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&env.dir).unwrap();
    vec![
        argv(&[
            "idmap",
            lxd,
            &format!("uid {} 1000\ngid {} 1000", md.uid(), md.gid()),
        ]),
        argv(&["restart", lxd]),
    ]
}

/// A device as `["add", ...]` shows it (after its name).
fn device_words(d: &Value) -> Vec<String> {
    let d = d.as_object().unwrap();
    let mut v = vec![d["type"].as_str().unwrap_or("").to_string()];
    for k in ["source", "path"] {
        if let Some(x) = d.get(k).and_then(Value::as_str) {
            v.push(format!("{k}={x}"));
        }
    }
    for (k, x) in d {
        if !["type", "source", "path"].contains(&k.as_str()) {
            v.push(format!("{k}={}", x.as_str().unwrap_or("")));
        }
    }
    v
}

/// The requests since the last take that change something (no reads, no
/// execs), forgotten: a launch `["launch", LXD]`, a state change
/// `[ACTION, LXD]`, `raw.idmap` set `["idmap", LXD, VALUE]`, a device added
/// `["add", LXD, DEV, ...]`, the whole instance written (how a device
/// goes) `["devices", LXD, DEV...]` (the devices it keeps); others
/// `[METHOD, PATH]`.
fn changes(env: &Env) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in env.take_requests() {
        if r.method == "GET" || r.is("POST", "/1.0/instances/*/exec") {
            continue;
        }
        let seg = r.segments();
        let lxd = seg.get(2).cloned().unwrap_or_default();
        let body = r.json();
        if r.is("POST", "/1.0/instances") {
            out.push(argv(&["launch", body["name"].as_str().unwrap()]));
        } else if r.is("PUT", "/1.0/instances/*/state") {
            out.push(vec![body["action"].as_str().unwrap().to_string(), lxd]);
        } else if r.is("PATCH", "/1.0/instances/*") {
            if let Some(v) = body["config"]["raw.idmap"].as_str() {
                out.push(vec!["idmap".into(), lxd.clone(), v.to_string()]);
            }
            if let Some(devs) = body["devices"].as_object() {
                for (name, d) in devs {
                    let mut v = vec!["add".to_string(), lxd.clone(), name.clone()];
                    v.extend(device_words(d));
                    out.push(v);
                }
            }
        } else if r.is("PUT", "/1.0/instances/*") && body.get("devices").is_some() {
            let mut v = vec!["devices".to_string(), lxd];
            v.extend(body["devices"].as_object().unwrap().keys().cloned());
            out.push(v);
        } else {
            out.push(vec![r.method.clone(), r.path().to_string()]);
        }
    }
    out
}

/// The devices the double's instance `lxd` has.
fn devices(env: &Env, lxd: &str) -> std::collections::BTreeMap<String, Device> {
    env.instance(lxd).map(|i| i.devices).unwrap_or_default()
}

/// Project `name` against a double that has every image asked for.
fn new_env(name: &str) -> Env {
    let env = Env::new(name);
    env.double.state().behaviour.images_on_demand = true;
    env
}

/// A subuid/subgid folder letting root map `id` (for `LDM_SUBID_DIR`).
fn subid_dir(dir: &Path, id: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let line = format!("root:100000:65536\nroot:{id}:1\n");
    std::fs::write(dir.join("subuid"), &line).unwrap();
    std::fs::write(dir.join("subgid"), &line).unwrap();
}

/// As root, ldm maps the project folder's owner: make that uid/gid 1000
/// (not root, so raw.idmap may be used). Returns the host uid and gid.
fn host_user_1000(env: &Env) -> (u32, u32) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&env.dir, Some(1000), Some(1000)).unwrap();
        let mut p = std::fs::metadata(&env.dir).unwrap().permissions();
        p.set_mode(0o777);
        std::fs::set_permissions(&env.dir, p).unwrap();
        (1000, 1000)
    } else {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&env.dir).unwrap();
        (md.uid(), md.gid())
    }
}

/// A project whose folder is a non-root user's, as ldm mounts only then:
/// run as root, it mounts only what the folder's owner owns, and never
/// host root's files.
fn user_env(name: &str) -> Env {
    let env = new_env(name);
    host_user_1000(&env);
    env
}

/// Creates folder `path` owned by the project folder's owner.
fn mkdir(env: &Env, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(path).unwrap();
    let md = std::fs::metadata(&env.dir).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(path, Some(md.uid()), Some(md.gid())).unwrap();
    }
}

#[test]
fn create_mounts_the_project_folder_by_default_and_no_mount_skips_it() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    let run = env.ok(&["container", "create", "dev", "img"]);
    let c = changes(&env);
    let m = mount(".:/home/dev/p");
    assert_eq!(m.device_name().len(), "ldm-mount-".len() + 8);
    let adds: Vec<_> = c.iter().filter(|a| a[0] == "add").collect();
    assert_eq!(adds, vec![&add("p-dev", &m, &abs(&env), &[])], "{c:#?}");
    let i = c.iter().position(|a| a[0] == "idmap").unwrap();
    assert_eq!(c[i..i + 2], map_owner(&env, "p-dev")[..], "{c:#?}");
    assert_eq!(recorded(&env, "dev"), vec![".:/home/dev/p"]);
    assert!(!run.stdout.contains("Not mounted"), "{}", run.stdout);
    let dev = &devices(&env, "p-dev")[&m.device_name()];
    assert_eq!(dev["path"], "/home/dev/p");
    assert!(!dev.contains_key("shift"), "{dev:?}");
    env.assert_agree();

    env.ok(&["container", "create", "bare", "img", "--no-mount"]);
    let c = changes(&env);
    assert!(
        !c.iter().any(|a| a[0] == "idmap" || a[0] == "add"),
        "--no-mount changes no config: {c:#?}"
    );
    assert!(recorded(&env, "bare").is_empty());
    assert!(devices(&env, "p-bare").is_empty());
}

#[test]
fn create_maps_the_host_user_with_raw_idmap_and_never_tries_shift() {
    // Review-trust finding 1: an idmapped mount lets the container's root
    // create files as host root in it, so ldm never asks for one, even
    // where LXD would take it (as the double does by default).
    let env = new_env("p");
    let (uid, gid) = host_user_1000(&env);
    let subid = env.root.join("etc");
    subid_dir(&subid, uid);
    let run = env.run_env(
        &["container", "create", "dev", "img"],
        &[("LDM_SUBID_DIR", subid.to_str().unwrap())],
    );
    let run = run.expect(0);
    let m = mount(".:/home/dev/p");
    let src = abs(&env);
    let c = changes(&env);
    let i = c
        .iter()
        .position(|a| a[0] == "idmap")
        .unwrap_or_else(|| panic!("{c:#?}"));
    assert_eq!(
        c[i..i + 3],
        [
            argv(&["idmap", "p-dev", &format!("uid {uid} 1000\ngid {gid} 1000"),]),
            argv(&["restart", "p-dev"]),
            add("p-dev", &m, &src, &[]),
        ],
        "{c:#?}"
    );
    assert_eq!(recorded(&env, "dev"), vec![".:/home/dev/p"]);
    assert!(!run.stdout.contains("Not mounted"), "{}", run.stdout);
    let inst = env.instance("p-dev").unwrap();
    assert_eq!(
        inst.config["raw.idmap"],
        format!("uid {uid} 1000\ngid {gid} 1000")
    );
    assert!(!inst.devices[&m.device_name()].contains_key("shift"));
    assert!(!c.iter().flatten().any(|x| x == "shift=true"), "{c:#?}");
}

#[test]
fn without_shift_or_subids_create_says_the_root_step_and_mount_waits_for_it() {
    let env = new_env("p");
    let (uid, gid) = host_user_1000(&env);
    let subid = env.root.join("etc");
    std::fs::create_dir_all(&subid).unwrap();
    let s = subid.to_str().unwrap().to_string();
    env.double.no_shift();
    let knobs = [("LDM_SUBID_DIR", s.as_str())];
    let run = env
        .run_env(&["container", "create", "dev", "img"], &knobs)
        .expect(0);
    let sudo =
        format!("sudo sh -c 'echo root:{uid}:1 >> /etc/subuid; echo root:{gid}:1 >> /etc/subgid'");
    assert!(run.stdout.contains("Not mounted:"), "{}", run.stdout);
    assert!(run.stdout.contains(&sudo), "{}", run.stdout);
    assert!(
        run.stdout.contains("ldm mount dev .:/home/dev/p"),
        "{}",
        run.stdout
    );
    assert!(recorded(&env, "dev").is_empty());
    assert!(devices(&env, "p-dev").is_empty());
    let c = changes(&env);
    assert!(!c.iter().any(|a| a[0] == "idmap"), "{c:#?}");

    let run = env
        .run_env(&["mount", "dev", ".:/home/dev/p"], &knobs)
        .expect(1);
    run.err_has(&sudo);
    assert!(recorded(&env, "dev").is_empty());
    assert!(devices(&env, "p-dev").is_empty());
    assert!(env.project().containers["dev"].pending.is_none());
    env.take_requests();

    subid_dir(&subid, uid);
    let run = env
        .run_env(&["mount", "dev", ".:/home/dev/p"], &knobs)
        .expect(0);
    assert!(run.stdout.contains("raw.idmap"), "{}", run.stdout);
    assert_eq!(recorded(&env, "dev"), vec![".:/home/dev/p"]);
    let m = mount(".:/home/dev/p");
    let c = changes(&env);
    assert_eq!(c.last().unwrap(), &add("p-dev", &m, &abs(&env), &[]));
    assert!(devices(&env, "p-dev").contains_key(&m.device_name()));
}

#[test]
fn mount_and_umount_change_a_running_container_and_refuse_system_folders() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    mkdir(&env, &env.dir.join("data"));
    mkdir(&env, &env.dir.join("docs"));
    env.take_requests();
    let src = abs(&env);

    let run = env.ok(&["mount", "dev", "data:/srv/data"]);
    let m = mount("data:/srv/data");
    let mut want = map_owner(&env, "p-dev");
    want.push(add("p-dev", &m, &format!("{src}/data"), &[]));
    assert_eq!(changes(&env), want);
    assert!(
        run.stdout.contains("Mounted data at /srv/data in dev"),
        "{}",
        run.stdout
    );
    assert_eq!(recorded(&env, "dev"), vec!["data:/srv/data"]);

    env.ok(&["mount", "dev", "docs:/srv/docs", "--ro"]);
    let ro = mount("docs:/srv/docs:ro");
    assert_eq!(
        changes(&env),
        vec![add(
            "p-dev",
            &ro,
            &format!("{src}/docs"),
            &["readonly=true"]
        )]
    );
    assert_eq!(
        recorded(&env, "dev"),
        vec!["data:/srv/data", "docs:/srv/docs:ro"]
    );
    assert_eq!(
        devices(&env, "p-dev")[&ro.device_name()]["readonly"],
        "true"
    );

    let run = env.ok(&["umount", "dev", "/srv/data"]);
    // The instance written whole without the device: the others stay.
    assert_eq!(
        changes(&env),
        vec![argv(&["devices", "p-dev", &ro.device_name()])]
    );
    assert!(
        run.stdout.contains("Unmounted /srv/data from dev"),
        "{}",
        run.stdout
    );
    assert_eq!(recorded(&env, "dev"), vec!["docs:/srv/docs:ro"]);
    assert!(!devices(&env, "p-dev").contains_key(&m.device_name()));

    for (spec, why) in [
        ("/:/mnt/root", "/ is the whole host"),
        ("/etc:/mnt/etc", "/etc is the system folder /etc"),
    ] {
        let run = env.fail(&["mount", "dev", spec]);
        run.err_has(why);
        run.err_has("--force");
        assert!(changes(&env).is_empty(), "{spec}");
        assert_eq!(recorded(&env, "dev"), vec!["docs:/srv/docs:ro"], "{spec}");
    }
    // The user's home folder: a container that writes it can change the
    // user's shell startup files and SSH keys. A folder in it is fine.
    let home = tempfile::tempdir().unwrap();
    let home = home.path().canonicalize().unwrap();
    mkdir(&env, &home.join("src"));
    mkdir(&env, &home);
    let h = home.to_str().unwrap();
    let run = env
        .run_env(&["mount", "dev", &format!("{h}:/mnt/home")], &[("HOME", h)])
        .expect(1);
    run.err_has("is a home folder");
    run.err_has("--force");
    assert!(changes(&env).is_empty());
    env.run_env(
        &["mount", "dev", &format!("{h}/src:/mnt/src")],
        &[("HOME", h)],
    )
    .expect(0);
    env.run_env(
        &["mount", "dev", &format!("{h}:/mnt/home"), "--force"],
        &[("HOME", h)],
    )
    .expect(0);
    env.ok(&["umount", "dev", "/mnt/home"]);
    env.ok(&["umount", "dev", "/mnt/src"]);
    env.take_requests();
    // A stopped container is refused before any change.
    env.ok(&["down", "dev"]);
    env.take_requests();
    let run = env.fail(&["mount", "dev", "data:/srv/data"]);
    assert!(changes(&env).is_empty());
    assert!(
        run.stderr.contains("not running") || run.stderr.contains("stopped"),
        "{}",
        run.stderr
    );
}

/// Adds `defaults: setup:` to the project's containers.yaml.
fn set_setup(env: &Env, steps: &str) {
    let path = env.dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "containers:",
        &format!("defaults:\n  setup:\n{steps}containers:"),
    );
    std::fs::write(&path, text).unwrap();
    // Written by hand, as a repository could: allowed as a user would.
    env.trust();
}

/// The setup steps (`env LDM_USER=... LDM_STEP=... sh -c WRAP ldm-step
/// CMD`) the double ran after its first `from` commands: their CMD.
fn steps_run(env: &Env, from: usize) -> Vec<String> {
    env.execs()[from..]
        .iter()
        .map(|e| &e.command)
        .filter(|a| a.len() > 4 && a[0] == "env")
        .map(|a| {
            assert_eq!(
                a[..3],
                argv(&["env", "LDM_USER=dev", "LDM_WORKDIR=/home/dev/p"]),
                "{a:?}"
            );
            assert!(a[3].starts_with("LDM_STEP="), "{a:?}");
            assert_eq!(a[4..6], argv(&["sh", "-c"]), "{a:?}");
            assert_eq!(a[7], "ldm-step", "{a:?}");
            a[8].clone()
        })
        .collect()
}

/// Step `echo two` fails (exit 3).
fn two_breaks(env: &Env) {
    env.double
        .exec_rule(ExecRule::contains("echo two").stderr("two broke\n").code(3));
}

#[test]
fn a_failed_setup_step_is_shown_and_create_resumes_at_it() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    set_setup(
        &env,
        "    - echo one\n    - echo two\n    - script: three.sh\n",
    );
    std::fs::write(env.dir.join("three.sh"), "#!/bin/sh\necho three\n").unwrap();
    two_breaks(&env);
    let run = env.fail(&["container", "create", "dev", "img"]);
    assert!(
        run.stderr.contains("step 2") || run.stderr.contains("STEP 2"),
        "{}",
        run.stderr
    );
    assert_eq!(steps_run(&env, 0), vec!["echo one", "echo two"]);
    let list = env.ok(&["list"]);
    assert!(
        list.stdout.contains("SETUP FAILED AT STEP 2"),
        "{}",
        list.stdout
    );
    let json: Value = serde_json::from_str(&env.ok(&["list", "--json"]).stdout).unwrap();
    let row = json
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "dev"))
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(row["setup_failed_at"], 2, "{json:#}");
    let created = env.instance("p-dev").unwrap().created_at;
    // The failed create left it stopped? Whatever it is, resume reuses it.
    env.double.clear_exec_rules();
    env.take_requests();
    let seen = env.execs().len();
    env.ok(&["container", "create", "dev"]);
    let run = steps_run(&env, seen);
    let c = changes(&env);
    assert_eq!(run.len(), 2, "steps 2 and 3 only: {run:#?}");
    assert_eq!(run[0], "echo two");
    assert!(!run.contains(&"echo one".to_string()));
    // The kept instance is reused: no delete, no second launch that made
    // anything.
    assert!(!c.iter().any(|a| a[0] == "DELETE"), "{c:#?}");
    assert_eq!(env.instance("p-dev").unwrap().created_at, created);
    let list = env.ok(&["list"]);
    assert!(!list.stdout.contains("SETUP FAILED"), "{}", list.stdout);
    let json: Value = serde_json::from_str(&env.ok(&["list", "--json"]).stdout).unwrap();
    assert!(json[0].get("setup_failed_at").is_none(), "{json:#}");
    env.take_requests();

    let seen = env.execs().len();
    let run = env.ok(&["container", "setup", "dev"]);
    let steps = steps_run(&env, seen);
    assert_eq!(steps.len(), 3, "{steps:#?}");
    assert_eq!(steps[..2], ["echo one", "echo two"]);
    assert!(
        run.stdout.contains("Ran 3 setup step(s) in dev"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_setup_script_outside_the_project_is_refused_and_its_bytes_never_reach_lxd() {
    // A cloned repository's containers.yaml names a script that is a link
    // to a host file (or sits in a linked folder): ldm reads project files
    // only inside the project, never through a link.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("id_ed25519"), "TOPSECRET\n").unwrap();
    for (script, want) in [
        ("key.sh", "symbolic link"),
        ("linked/id_ed25519", "outside the project folder"),
    ] {
        let env = new_env("p");
        std::os::unix::fs::symlink(outside.path().join("id_ed25519"), env.dir.join("key.sh"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), env.dir.join("linked")).unwrap();
        set_setup(&env, &format!("    - echo one\n    - script: {script}\n"));
        let run = env.fail(&["container", "create", "dev", "img", "--no-mount"]);
        assert!(run.stderr.contains(want), "{script}: {}", run.stderr);
        for r in env.take_requests() {
            let body = match &r.body {
                lxd_double::Body::Json(v) => v.to_string(),
                lxd_double::Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                lxd_double::Body::Empty => String::new(),
            };
            assert!(!body.contains("TOPSECRET"), "{script}: {}", r.line());
        }
        for e in env.execs() {
            assert!(
                !String::from_utf8_lossy(&e.stdin).contains("TOPSECRET")
                    && !e.command.concat().contains("TOPSECRET"),
                "{script}: {e:?}"
            );
        }
        // Step 1 ran; step 2 failed, as a step that ran and failed.
        let list = env.ok(&["list"]);
        assert!(
            list.stdout.contains("SETUP FAILED AT STEP 2"),
            "{}",
            list.stdout
        );
        // Replaced by a file of the project, the create resumes at step 2.
        std::fs::remove_file(env.dir.join("key.sh")).unwrap();
        std::fs::remove_file(env.dir.join("linked")).unwrap();
        std::fs::create_dir(env.dir.join("linked")).unwrap();
        std::fs::write(env.dir.join(script), "echo fixed\n").unwrap();
        env.ok(&["container", "create", "dev"]);
        assert!(
            env.execs().iter().any(|e| e.stdin == b"echo fixed\n"),
            "{script}: {:#?}",
            env.execs()
        );
        assert!(!env.ok(&["list"]).stdout.contains("SETUP FAILED"));
    }
}

/// Lines of `text`, sorted (parallel runs print in the order they finish).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn up_and_down_act_on_every_container_and_name_the_failed_ones() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    env.ok(&["container", "create", "a", "img", "--no-mount"]);
    env.seed_container("b", "img", false);
    env.ok(&["container", "create", "c", "img"]);
    env.unseed("p-c");
    env.take_requests();

    let run = env.ok(&["up", "--dry-run"]);
    assert_eq!(
        run.stdout,
        "a: nothing (already running)\nb: start\nc: re-create from img (LXD no longer has it), mount .:/home/dev/p\n"
    );
    // The plan: one read of every instance, without their running state,
    // and, as c is to be re-created, whether another LXD project has it.
    let reqs = env.take_requests();
    let plan: Vec<_> = reqs.iter().map(|r| r.line()).collect();
    assert_eq!(plan.len(), 2, "{plan:#?}");
    assert!(
        reqs.iter().all(|r| r.is("GET", "/1.0/instances")),
        "{plan:#?}"
    );
    assert_eq!(reqs[1].query("all-projects").as_deref(), Some("true"));
    assert!(env.instance("p-c").is_none());

    let run = env.ok(&["up"]);
    let c = changes(&env);
    assert!(c.contains(&argv(&["start", "p-b"])), "{c:#?}");
    assert!(!c.contains(&argv(&["start", "p-a"])), "{c:#?}");
    let launches: Vec<_> = c.iter().filter(|a| a[0] == "launch").collect();
    assert_eq!(launches, [&argv(&["launch", "p-c"])], "{c:#?}");
    let m = mount(".:/home/dev/p");
    assert!(c.contains(&add("p-c", &m, &abs(&env), &[])), "{c:#?}");
    let (ia, ib, ic) = (env.ip("a"), env.ip("b"), env.ip("c"));
    assert!(
        run.stdout.contains(&format!("a: is running at {ia}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("b: is running at {ib}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("c: re-created from img, running at {ic}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("3 of 3 containers running\n"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);
    assert_eq!(recorded(&env, "c"), vec![".:/home/dev/p"]);
    assert!(devices(&env, "p-c").contains_key(&m.device_name()));
    env.assert_agree();

    let run = env.ok(&["down"]);
    let mut stops: Vec<_> = changes(&env);
    stops.sort();
    assert_eq!(
        stops,
        vec![
            argv(&["stop", "p-a"]),
            argv(&["stop", "p-b"]),
            argv(&["stop", "p-c"]),
        ]
    );
    assert!(
        run.stdout.ends_with("3 of 3 containers stopped\n"),
        "{}",
        run.stdout
    );
    for i in env.instances().values() {
        assert!(!i.is_running());
    }

    env.ok(&["up", "a"]);
    env.ok(&["up", "c"]);
    env.take_requests();
    env.double.fail_operation(
        Match::new("PUT", "/1.0/instances/p-b/state"),
        "Failed to start instance: no space left",
    );
    let run = env.run(&["up"]).fail();
    env.double.clear_knobs();
    assert!(run.stdout.contains("b: failed:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("2 of 3 containers running"),
        "{}",
        run.stdout
    );
    run.err_has("1 of 3 containers failed: b\n");
    let lines = sorted_lines(&run.stdout);
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert_eq!(lines[0], "2 of 3 containers running");
    assert_eq!(lines[1], format!("a: is running at {ia}"));
    assert!(lines[2].starts_with("b: failed: "), "{}", run.stdout);
    assert_eq!(lines[3], format!("c: is running at {ic}"));
    assert!(!env.running("p-b"));
    assert!(env.running("p-a"));

    // Names given: those containers only, one line each and a summary.
    env.take_requests();
    env.ok(&["down", "a", "c"]);
    let mut stops: Vec<_> = changes(&env);
    stops.sort();
    assert_eq!(stops, vec![argv(&["stop", "p-a"]), argv(&["stop", "p-c"])]);
    let run = env.ok(&["up", "c", "b"]);
    let mut starts: Vec<_> = changes(&env);
    starts.sort();
    assert_eq!(
        starts,
        vec![argv(&["start", "p-b"]), argv(&["start", "p-c"])]
    );
    let lines = sorted_lines(&run.stdout);
    assert_eq!(
        lines,
        vec![
            "2 of 2 containers running".to_string(),
            format!("b: is running at {ib}"),
            format!("c: is running at {ic}"),
        ]
    );
    assert!(!env.running("p-a"));
    // A name the project lacks is refused before LXD is touched.
    let run = env.fail(&["up", "b", "zzz"]);
    run.err_has("zzz");
    assert!(changes(&env).is_empty());
}

#[test]
fn doctor_reports_mount_drift_and_fix_repairs_it() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    env.ok(&["container", "create", "dev", "img"]);
    let m = mount(".:/home/dev/p");
    let dev = m.device_name();
    assert_eq!(env.ok(&["doctor"]).code, 0);
    // Behind ldm's back: the recorded mount's device goes, and an
    // `ldm-mount-*` device no mount records appears.
    let stray = mount("/tmp:/stray").device_name();
    {
        let mut st = env.double.state();
        let devs = &mut st.instance_mut("default", "p-dev").unwrap().devices;
        assert!(devs.remove(&dev).is_some());
        let keys = [("type", "disk"), ("source", "/tmp"), ("path", "/stray")];
        devs.insert(
            stray.clone(),
            keys.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    env.take_requests();
    let run = env.run(&["doctor"]);
    assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("mount .:/home/dev/p is recorded, but p-dev has no such device"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "p-dev has device {stray} (/tmp at /stray) that the project does not record"
        )),
        "{text}"
    );
    assert!(changes(&env).is_empty(), "doctor alone changes nothing");
    assert!(!devices(&env, "p-dev").contains_key(&dev));

    let run = env.run(&["doctor", "--fix"]);
    let c = changes(&env);
    // raw.idmap is set already: the device alone is added back, and the
    // stray one goes (the instance written without it).
    assert_eq!(c.len(), 2, "{c:#?}\n{}\n{}", run.stdout, run.stderr);
    assert!(c.contains(&add("p-dev", &m, &abs(&env), &[])), "{c:#?}");
    assert!(
        c.iter().any(|a| a[0] == "devices" && !a.contains(&stray)),
        "{c:#?}"
    );
    let devs = devices(&env, "p-dev");
    assert!(
        devs.contains_key(&dev) && !devs.contains_key(&stray),
        "{devs:?}"
    );
    assert_eq!(recorded(&env, "dev"), vec![".:/home/dev/p"]);
    env.ok(&["doctor"]);

    // An older ldm's idmapped device of the mount (review-trust finding
    // 1): drift, and --fix puts it back without shift.
    env.double
        .state()
        .instance_mut("default", "p-dev")
        .unwrap()
        .devices
        .get_mut(&dev)
        .unwrap()
        .insert("shift".into(), "true".into());
    let run = env.run(&["doctor"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("is idmapped (shift=true)"),
        "{}",
        run.stdout
    );
    env.take_requests();
    env.ok(&["doctor", "--fix"]);
    let c = changes(&env);
    assert_eq!(
        c,
        vec![
            argv(&["devices", "p-dev"]),
            add("p-dev", &m, &abs(&env), &[]),
        ]
    );
    assert!(!devices(&env, "p-dev")[&dev].contains_key("shift"));
    env.ok(&["doctor"]);
}

#[test]
fn a_mount_killed_midway_shows_mounting_and_the_same_command_finishes_it() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    mkdir(&env, &env.dir.join("data"));
    env.take_requests();
    let m = mount("data:/srv/data");
    // Held before its first change (raw.idmap) takes effect.
    env.double.hang(
        Match::new("PATCH", "/1.0/instances/p-dev").nth(1),
        HangAt::Request,
    );
    let child = env.spawn(&["mount", "dev", "data:/srv/data"], &[]);
    let hang = env.wait_hang(Duration::from_secs(30));
    assert_eq!(hang.peer_pid, Some(child.id() as i32));
    kill(child.id() as i32);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(!devices(&env, "p-dev").contains_key(&m.device_name()));
    let list = env.ok(&["list"]);
    assert!(
        list.stdout.contains("MOUNTING (interrupted)"),
        "{}",
        list.stdout
    );
    let json: Value = serde_json::from_str(&env.ok(&["list", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["pending"]["interrupted"], true, "{json:#}");
    assert_eq!(json[0]["pending"]["op"], "mount", "{json:#}");
    env.take_requests();

    env.ok(&["mount", "dev", "data:/srv/data"]);
    let c = changes(&env);
    let mut want = map_owner(&env, "p-dev");
    want.push(add("p-dev", &m, &format!("{}/data", abs(&env)), &[]));
    assert_eq!(c, want);
    assert_eq!(recorded(&env, "dev"), vec!["data:/srv/data"]);
    assert!(env.project().containers["dev"].pending.is_none());
    let list = env.ok(&["list"]);
    assert!(!list.stdout.contains("MOUNTING"), "{}", list.stdout);
    env.assert_agree();
}

#[test]
fn a_remote_project_mounts_nothing() {
    let env = new_env("p");
    let shared = env.remote_double("shared");
    shared.state().behaviour.images_on_demand = true;
    env.ok(&["config", "set", "remote", "shared"]);
    std::fs::create_dir_all(env.dir.join("data")).unwrap();
    let run = env.ok(&["container", "create", "dev", "img"]);
    run.err_has("note: the project's LXD is the remote shared: the project folder is not on that server, so dev gets no mount");
    let patches: Vec<_> = shared
        .take_requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.line())
        .collect();
    assert!(patches.is_empty(), "{patches:#?}");
    assert!(shared
        .instance("default", "p-dev")
        .unwrap()
        .devices
        .is_empty());
    assert!(recorded(&env, "dev").is_empty());
    let run = env.fail(&["mount", "dev", "data:/srv/data"]);
    run.err_has("the project's LXD is the remote shared");
    assert!(shared.take_requests().iter().all(|r| r.method == "GET"));
    assert!(recorded(&env, "dev").is_empty());
    assert_eq!(env.take_lines(), Vec::<String>::new(), "asked local");
}

#[test]
fn a_default_remote_on_another_machine_gets_no_mount_and_says_why() {
    // `lxc remote switch far` with no `remote:` in containers.yaml: the
    // host's project folder is not on far, where the same path would be
    // another folder, or none. (far is this double over HTTPS: ldm knows
    // another machine by its https:// address.)
    let mut env = user_env("p");
    env.set_client("far", "default");
    env.https_remote("far");
    let run = env.run(&["container", "create", "a", "img"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("Not mounted: the LXD client's default remote is far, a server on another machine, so the host's folders are not there; copy files with `ldm mv`"),
        "{}",
        run.stdout
    );
    // Every request came over HTTPS (through the double's TLS front end,
    // in this process), none on the unix socket.
    let me = Some(std::process::id() as i32);
    assert!(env.requests().iter().all(|r| r.peer_pid == me));
    let c = changes(&env);
    assert!(
        !c.iter().any(|a| a[0] == "idmap" || a[0] == "add"),
        "{c:#?}"
    );
    assert!(c.contains(&argv(&["launch", "p-a"])), "{c:#?}");
    assert!(recorded(&env, "a").is_empty());
    assert!(devices(&env, "p-a").is_empty());

    let run = env.run(&["mount", "a", ".:/srv/x"]).fail();
    run.err_has(
        "cannot mount . in a: the LXD client's default remote is far, a server on another machine",
    );
    assert!(changes(&env).is_empty());
    assert!(recorded(&env, "a").is_empty());
    assert!(devices(&env, "p-a").is_empty());
    env.assert_agree();
    // This machine's LXD again: the same command mounts it.
    env.set_client("local", "default");
    env.ok(&["mount", "a", ".:/srv/x"]);
    assert_eq!(recorded(&env, "a"), vec![".:/srv/x"]);
    assert_eq!(devices(&env, "p-a").len(), 1);
}

/// Issue 25, item 7: setup progress was an index. A step inserted before
/// resuming was skipped, an old one ran again, and the create said
/// "Created dev". Progress is keyed by the steps' content now.
#[test]
fn regression_a_step_inserted_before_a_resume_runs_and_finished_ones_do_not() {
    // The container user (1000 in the double) has the host user's ids,
    // and the double takes idmapped mounts: ldm still maps with raw.idmap.
    let env = user_env("p");
    set_setup(&env, "    - echo one\n    - echo two\n");
    two_breaks(&env);
    env.fail(&["container", "create", "dev", "img"]);
    env.double.clear_exec_rules();
    let path = env.dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("- echo one\n").expect("the step is in the file");
    let indent = &text[text[..at].rfind('\n').unwrap() + 1..at];
    let text = format!("{}- echo zero\n{indent}{}", &text[..at], &text[at..]);
    std::fs::write(&path, text).unwrap();
    env.trust();
    let seen = env.execs().len();
    let run = env.ok(&["container", "create", "dev"]);
    assert!(run.stdout.contains("Created dev"), "{}", run.stdout);
    assert_eq!(
        steps_run(&env, seen),
        vec!["echo zero", "echo two"],
        "the new step runs, the finished one does not"
    );
}

/// Issue 25, item 17: when the device add failed and ldm could not then
/// ask LXD whether the device was in, it took "could not ask" for "no
/// device" and undid the record, while LXD may hold the device. The mount
/// now stays recorded as interrupted, and ldm says how to end it.
#[test]
fn regression_a_failed_mount_whose_outcome_is_unknown_stays_recorded() {
    let env = user_env("p");
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    mkdir(&env, &env.dir.join("data"));
    env.take_requests();
    // The device add (the second PATCH: raw.idmap is the first) fails,
    // and so does the look at the instance after it (the mount's third).
    env.double.fail(
        Match::new("PATCH", "/1.0/instances/p-dev").nth(2),
        500,
        "Failed to add device: storage error",
    );
    env.double.fail(
        Match::new("GET", "/1.0/instances/p-dev").nth(3),
        500,
        "Failed to load instance",
    );
    let run = env.run(&["mount", "dev", "data:/srv/data"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.err_has("could not ask LXD whether p-dev has the device now");
    run.err_has("ldm umount dev /srv/data");
    assert_eq!(recorded(&env, "dev"), vec!["data:/srv/data"]);
    let list = env.ok(&["list"]).stdout;
    assert!(list.contains("MOUNTING (interrupted)"), "{list}");
    // The re-run finishes it.
    env.ok(&["mount", "dev", "data:/srv/data"]);
    assert!(!env.ok(&["list"]).stdout.contains("MOUNTING"));
}

/// Issue 25, item 18: a `setup:` script path that is not a file of the
/// project was found only when its step's turn came, after the launch.
/// It is refused with the file's key before any LXD call now.
#[test]
fn regression_a_bad_setup_script_path_is_refused_before_launch() {
    for bad in ["../outside.sh", "/etc/passwd", "a//b.sh", "./x.sh"] {
        let env = new_env("p");
        let path = env.dir.join("containers.yaml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "containers:",
            &format!("defaults:\n  setup:\n    - echo one\n    - script: {bad}\ncontainers:"),
        );
        std::fs::write(&path, text).unwrap();
        let run = env.run(&["container", "create", "dev", "img"]);
        assert_eq!(run.code, 1, "{bad}: {}", run.stderr);
        run.err_has("defaults.setup[2]");
        run.err_has("invalid setup script");
        assert_eq!(env.take_lines(), Vec::<String>::new(), "{bad}: no request");
    }
}
