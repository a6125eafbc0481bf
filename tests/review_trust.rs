//! Findings of the security review of issue 22 ("review-trust"): each test
//! is the regression test a fix would add, now against the LXD API TEST
//! DOUBLE (`crates/lxd-double`). They failed on the code as reviewed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::api::Env;
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
        let mut perm = std::fs::metadata(p).unwrap().permissions();
        perm.set_mode(0o777);
        std::fs::set_permissions(p, perm).unwrap();
    }
}

/// The JSON bodies of the requests so far that are `method` on `path`,
/// the requests forgotten.
fn bodies(env: &Env, method: &str, path: &str) -> Vec<Value> {
    env.take_requests()
        .iter()
        .filter(|r| r.is(method, path))
        .map(|r| r.json())
        .collect()
}

/// The disk devices with a host source that `bodies` (of instance
/// changes) add.
fn device_adds(bodies: &[Value]) -> Vec<Value> {
    bodies
        .iter()
        .filter_map(|b| b["devices"].as_object())
        .flat_map(|d| d.values().cloned())
        .filter(|d| d["type"] == "disk" && d["source"].is_string())
        .collect()
}

/// `key` of device `d` is "true".
fn on(d: &Value, key: &str) -> bool {
    d[key] == "true"
}

/// Inserts `lines` after the line `after` of the project's containers.yaml,
/// as a process in a container writing the folder through its mount would.
fn container_writes(dir: &Path, after: &str, lines: &str) {
    let path = dir.join("containers.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(after), "{text}");
    std::fs::write(&path, text.replacen(after, &format!("{after}{lines}"), 1)).unwrap();
}

/// Finding 1. An idmapped mount (`shift=true`) maps the container's ids
/// one to one onto the host's inside the mount: the container's root
/// writes there as host uid 0. Seen on Incus 6.0.4 on this machine with
/// ldm's own `container create` (LDM_LXC=incus, run as the non-root user
/// ldm-ci): `chown 0:0 rootsh; chmod 4755 rootsh` run as root in the
/// container left `-rwsr-xr-x 0 0 rootsh` in the project folder on the
/// host, a set-user-id root shell. "Only on your own files" does not
/// help: whose files they are does not bound what the container's root
/// can create. A mount of the project folder must never be idmapped (or
/// only read-only); `raw.idmap` maps the host user alone.
#[test]
fn a_read_write_mount_is_never_idmapped_so_the_containers_root_is_never_host_root_in_it() {
    let env = env();
    as_user(&env, &[]);
    let subid = env.dir.parent().unwrap().join("subid-1000");
    std::fs::create_dir_all(&subid).unwrap();
    for f in ["subuid", "subgid"] {
        std::fs::write(subid.join(f), "root:100000:65536\nroot:1000:1\n").unwrap();
    }
    env.take_requests();
    env.run_env(
        &["container", "create", "dev", "img"],
        &[("LDM_SUBID_DIR", subid.to_str().unwrap())],
    )
    .expect(0);
    let adds = device_adds(&bodies(&env, "PATCH", "/1.0/instances/*"));
    assert!(!adds.is_empty(), "the project folder is mounted");
    for a in &adds {
        assert!(
            !on(a, "shift") || on(a, "readonly"),
            "a read-write idmapped mount lets the container's root create set-user-id root files on the host: {a:?}"
        );
    }
}

// Finding 2 (a clone naming another checkout's project ran its steps in
// that checkout's containers) is tests/ownership.rs
// `a_clone_never_runs_its_steps_in_the_first_checkouts_container`, against
// the API double: only the API backend checks ownership (issue 23).

/// What `ldm trust --show --json` says waits, as JSON, with `envs`.
fn waiting(env: &Env, envs: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let run = env.run_env(&["trust", "--show", "--json"], envs).expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["waiting"].as_array().cloned().unwrap_or_default()
}

/// Finding 3. The refused sources refuse a socket file, but not a folder
/// that holds the user's live sockets and executables: `/tmp` (tmux's
/// `/tmp/tmux-UID/default`, X11's `/tmp/.X11-unix/X0`, ssh-agent's
/// `/tmp/ssh-*/agent.*`: a container process mapped to the host user can
/// connect to them and type into the user's sessions), `/var/tmp`, the
/// user's crontab (`/var/spool/cron`), and `~/bin` (on PATH in Debian's
/// default ~/.profile). Each only waits for `ldm trust`, like a data
/// folder; one careless `ldm trust --yes` mounts it read-write.
#[test]
fn folders_holding_the_users_sockets_crontab_and_path_are_refused_like_home_dot_folders() {
    let env = env();
    // A home folder outside /tmp (the test's own folders are in /tmp, and
    // a parent of the home folder is refused for that reason alone).
    let home_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let home = std::fs::canonicalize(home_dir.path()).unwrap();
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let sources = [
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/var/spool/cron"),
        home.join("bin"),
    ];
    let mounts: String = sources
        .iter()
        .enumerate()
        .map(|(i, s)| format!("    - {}:/mnt/m{i}\n", s.display()))
        .collect();
    std::fs::write(
        env.dir.join("containers.yaml"),
        format!("project: p\ncontainers:\n  dev:\n    image: img\n    mounts:\n{mounts}"),
    )
    .unwrap();
    std::fs::remove_file(env.dir.join("containers.log")).unwrap();
    let waiting = waiting(&env, &[("HOME", home.to_str().unwrap())]);
    for s in &sources {
        let item = waiting
            .iter()
            .find(|w| w["source"].as_str() == Some(&s.display().to_string()))
            .unwrap_or_else(|| panic!("{} is not listed: {waiting:#?}", s.display()));
        assert!(
            item["refused"].is_string(),
            "{} is mounted read-write once allowed, like any data folder: {item}",
            s.display()
        );
    }
}

/// Finding 4. The container writes the project folder as the host user,
/// `.git` included. Git runs what `.git/config` names (`core.fsmonitor`,
/// `core.pager`, `core.hooksPath`, hooks) as the host user on the user's
/// next `git status`, which shell prompts run on every `cd`: checked on
/// this machine with git 2.47 (`core.fsmonitor = 'touch /tmp/x; false #'`
/// and `git status` ran it). So every container ldm creates in a git work
/// tree reaches the host account, with nothing to allow. A new
/// container's mount of the project folder must leave `.git` read-only
/// (a read-only device over it) or the project mount must be read-only.
#[test]
fn a_container_cannot_write_the_git_folder_of_the_project_it_mounts() {
    let env = env();
    std::fs::create_dir_all(env.dir.join(".git/hooks")).unwrap();
    std::fs::write(env.dir.join(".git/config"), "[core]\n").unwrap();
    as_user(&env, &[&env.dir.join(".git")]);
    env.take_requests();
    env.ok(&["container", "create", "dev", "img"]);
    let adds = device_adds(&bodies(&env, "PATCH", "/1.0/instances/*"));
    assert!(!adds.is_empty(), "the project folder is mounted");
    let dir = std::fs::canonicalize(&env.dir).unwrap();
    let ro = |a: &Value| on(a, "readonly");
    let source = |a: &Value| a["source"].as_str().map(PathBuf::from);
    let project_rw = adds
        .iter()
        .any(|a| source(a).as_deref() == Some(dir.as_path()) && !ro(a));
    let git_ro = adds
        .iter()
        .any(|a| source(a).as_deref() == Some(dir.join(".git").as_path()) && ro(a));
    assert!(
        !project_rw || git_ro,
        "the container can rewrite .git/config and .git/hooks, which the host's git runs: {adds:#?}"
    );
}

/// Finding 5. The floor of isolation settings is kept per scope (`""` for
/// the defaults, or a container that existed when ldm looked). A project
/// whose defaults turn isolation up (`nesting`, `intercept_*` off, noted
/// by ldm) gets a new container entry, written by a teammate or by a
/// container through its mount, with its own `security:` turning them all
/// back on: `ldm up web` launches it with nesting and both syscall
/// interceptions on, and asks nobody.
#[test]
fn a_new_container_entry_cannot_turn_isolation_back_down_below_the_projects_defaults() {
    let env = env();
    as_user(&env, &[]);
    container_writes(
        &env.dir,
        "project: p\n",
        "defaults:\n  security: {nesting: false, intercept_mknod: false, intercept_setxattr: false}\n",
    );
    env.take_requests();
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    let made = bodies(&env, "POST", "/1.0/instances");
    assert!(
        made.iter()
            .any(|b| b["config"]["security.nesting"] == "false"),
        "{made:#?}"
    );
    container_writes(
        &env.dir,
        "containers:\n",
        "  web:\n    image: img\n    security: {nesting: true, intercept_mknod: true, intercept_setxattr: true}\n",
    );
    let run = env.run(&["up", "web"]);
    let launched = bodies(&env, "POST", "/1.0/instances");
    assert!(
        launched.is_empty() && run.code == 1,
        "web was launched with isolation turned down and nobody asked: exit {}\n{}\n{launched:#?}",
        run.code,
        run.stderr
    );
    run.err_has("security.nesting");
}

/// Every file of `dir` (not below) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Finding 6. Changing a password compacts the log, but when the YAML
/// had a line ldm does not keep (a comment, added by hand), the rewrite
/// first keeps the old file as `containers.yaml.edited-TIME`, old password
/// included, in the project folder, where every container and, outside a
/// git work tree made before `ldm create`, every `git add -A` reads it;
/// nothing ever removes it.
#[test]
fn a_changed_password_leaves_no_copy_of_the_old_one_in_the_project_folder() {
    let env = env();
    env.ok(&["config", "set", "defaults.user.password", "OLD-s3cret-pw"]);
    let yaml = env.dir.join("containers.yaml");
    let mut text = std::fs::read_to_string(&yaml).unwrap();
    text.insert_str(0, "# our team's dev setup\n");
    std::fs::write(&yaml, text).unwrap();
    env.ok(&["list"]);
    env.ok(&["config", "set", "defaults.user.password", "new-pw"]);
    let left = files_holding(&env.dir, "OLD-s3cret-pw");
    assert!(left.is_empty(), "the old password is still in {left:?}");
}

/// Finding 7. An interrupted operation's intent can be written into
/// containers.yaml (`pending:`) by anyone who writes the folder, and ldm
/// turns it into a command for the user to type: `ldm up` says "has an
/// interrupted mount: run `ldm mount dev SECRET:/srv/secret` to finish it",
/// and what the user types is allowed as typed, so the host folder is
/// mounted without ever being listed by `ldm trust`. (An image with a
/// space, `img --force`, does the same for `container create`'s hint:
/// typing it forces the refused sources of `defaults.mounts`.)
#[test]
fn an_intent_written_into_the_file_is_never_turned_into_a_command_to_type() {
    let env = env();
    let secret = env.dir.parent().unwrap().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    as_user(&env, &[&secret]);
    env.ok(&["container", "create", "dev", "img", "--no-mount"]);
    let forged = format!("{}:/srv/secret", secret.display());
    container_writes(
        &env.dir,
        "    image: img\n",
        &format!(
            "    pending: {{op: {{kind: mount, mount: \"{forged}\"}}, owner: {{pid: 4242, slot: 9}}, started_at: \"2026-12-07T10:00:00Z\"}}\n"
        ),
    );
    let run = env.run(&["up"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("interrupted") && !said.contains(&format!("ldm mount dev {forged}")),
        "ldm tells the user to type a mount that only the file asked for:\n{said}"
    );
}

/// Finding 8. Notices and error messages are escaped with line breaks
/// kept (`text::escape_lines`), so a value from the file that holds a
/// line break prints lines of its own: an unknown key
/// `"x\nldm: nothing waits for your trust in this folder\n"` shows a line
/// that reads as ldm's own. Values are one-line: their line breaks must be
/// escaped like every other control character.
#[test]
fn a_line_break_in_a_value_from_the_file_never_prints_a_line_of_its_own() {
    let env = env();
    std::fs::write(
        env.dir.join("containers.yaml"),
        "project: p\n\"x\\nldm: nothing waits for your trust in this folder\\n\": 1\ncontainers:\n  dev:\n    image: img\n",
    )
    .unwrap();
    std::fs::remove_file(env.dir.join("containers.log")).unwrap();
    let run = env.ok(&["list"]);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("ldm: nothing waits")),
        "a forged line:\n{}",
        run.stderr
    );
}
