//! `ldm ssh`, `ldm mv` and `ldm image ...` against the LXD API TEST DOUBLE
//! (crates/lxd-double): stdout, exit codes and the exact calls the server
//! logged (issue 4). Exec rules script the container's answers; the path
//! probe `mv` runs is shown as `["PROBE", lxd, path]`, a file push or pull
//! as `["push"|"pull", lxd, path]` (see `norm`). `ldm ssh` runs the client
//! program (an interactive terminal), which the harness records.

mod common;

use std::time::Duration;

use common::api::{kill, Env};
use lxd_double::{ExecRule, HangAt, Image, Match};
use serde_json::{json, Value};

/// An exec rule answering mv's path probe for exactly `path` with `kind`.
fn probe(env: &Env, path: &str, kind: &str) {
    env.double.exec_rule(
        ExecRule::contains("echo parent")
            .last(path)
            .stdout(&format!("{kind}\n")),
    );
}

/// The calls since the last take (no operation waits or websockets):
/// execs as `["exec", lxd, ARGV...]` (the probe as `["PROBE", lxd,
/// path]`), file transfers as `["push"|"pull", lxd, path]`, the rest as
/// `[METHOD, path]`.
fn norm(env: &Env) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in env.take_requests() {
        if common::api::is_plumbing(&r) {
            continue;
        }
        let seg = r.segments();
        let inst = seg.get(2).cloned().unwrap_or_default();
        let row = if r.is("POST", "/1.0/instances/*/exec") {
            let cmd: Vec<String> = serde_json::from_value(r.json()["command"].clone()).unwrap();
            if cmd.len() == 5 && cmd[..2] == s(&["sh", "-c"]) && cmd[2].contains("echo parent") {
                vec!["PROBE".into(), inst, cmd[4].clone()]
            } else {
                let mut v = vec!["exec".to_string(), inst];
                v.extend(cmd);
                v
            }
        } else if r.is("POST", "/1.0/instances/*/files") {
            vec!["push".into(), inst, r.query("path").unwrap()]
        } else if r.is("GET", "/1.0/instances/*/files") {
            vec!["pull".into(), inst, r.query("path").unwrap()]
        } else {
            vec![r.method.clone(), r.path().to_string()]
        };
        out.push(row);
    }
    out
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|x| x.to_string()).collect()
}

fn p(lxd: &str, path: &str) -> Vec<String> {
    s(&["PROBE", lxd, path])
}

fn ex(lxd: &str, rest: &[&str]) -> Vec<String> {
    let mut a = s(&["exec", lxd]);
    a.extend(s(rest));
    a
}

fn push(lxd: &str, path: &str) -> Vec<String> {
    s(&["push", lxd, path])
}

fn pull(lxd: &str, path: &str) -> Vec<String> {
    s(&["pull", lxd, path])
}

fn get(path: &str) -> Vec<String> {
    s(&["GET", path])
}

/// The bytes of a file the double holds in instance `lxd`.
fn file_in(env: &Env, lxd: &str, path: &str) -> Option<Vec<u8>> {
    env.instance(lxd)?.files.read(path).map(<[u8]>::to_vec)
}

/// Makes folder `path` in instance `lxd` (the double's execs change
/// nothing: what `mkdir -p` would have made, put there by hand).
fn mkdir(env: &Env, lxd: &str, path: &str) {
    let mut st = env.double.state();
    st.instance_mut("default", lxd).unwrap().files.mkdir_p(path);
}

const FP1: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const FP2: &str = "9999990123456789abcdef0123456789abcdef0123456789abcdef0123456789";

fn seed_images(env: &Env) {
    let mut base = Image::new("base");
    base.fingerprint = FP1.into();
    base.size = 123_456_789;
    base.properties
        .insert("description".into(), "Debian 12".into());
    let mut cached = Image::new("x");
    cached.fingerprint = FP2.into();
    cached.aliases.clear();
    cached.size = 1_000_000;
    cached
        .properties
        .insert("description".into(), "cached".into());
    env.double.add_image("default", base);
    env.double.add_image("default", cached);
}

/// The aliases of the images the double holds, in order.
fn aliases(env: &Env) -> Vec<Vec<String>> {
    env.double
        .state()
        .images("default")
        .iter()
        .map(|i| i.aliases.clone())
        .collect()
}

const RUN_ARGV: &str = r#"exec "$0" "$@""#;

#[test]
fn ssh_runs_one_command_as_the_user_and_passes_its_exit_code() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.client_answers("hello\n", 3);
    env.take_requests();
    let run = env
        .run(&["ssh", "dev", "--", "mycmd", "a b", "it's $x;"])
        .code(3);
    assert_eq!(run.stdout, "hello\n");
    let su = [
        "su", "-l", "dev", "-c", RUN_ARGV, "--", "mycmd", "a b", "it's $x;",
    ];
    let mut want = s(&["exec", "--", "p-dev"]);
    want.extend(s(&su));
    assert_eq!(env.take_client_argvs(), vec![want]);
    assert_eq!(
        env.take_calls(),
        vec!["GET /1.0/operations", "GET /1.0/instances/p-dev"]
    );
    // Exit 0 passes through too; -u root runs as root.
    env.client_answers("", 0);
    let run = env.ok(&["ssh", "dev", "-u", "root", "--", "true"]);
    assert_eq!(run.stdout, "");
    let mut want = s(&["exec", "--", "p-dev"]);
    want.extend(s(&["su", "-l", "root", "-c", RUN_ARGV, "--", "true"]));
    assert_eq!(env.take_client_argvs(), vec![want]);
}

#[test]
fn ssh_to_a_stopped_container_names_ldm_up() {
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    env.take_requests();
    let run = env.fail(&["ssh", "dev", "--", "true"]);
    run.err_has("ldm up dev");
    assert_eq!(run.stdout, "");
    assert_eq!(
        env.take_calls(),
        vec!["GET /1.0/operations", "GET /1.0/instances/p-dev"]
    );
    assert_eq!(env.take_client_argvs(), Vec::<Vec<String>>::new());
    // Unknown container: no request.
    env.fail(&["ssh", "nope"]);
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn mv_host_to_container_creates_the_folder_only_with_yes() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    std::fs::write(env.dir.join("notes.txt"), "hi").unwrap();
    env.take_requests();
    // Without -y and no terminal: refused, the ✗ line names -y.
    let run = env.fail(&["mv", "notes.txt", "dev:~/docs/"]);
    assert!(run.stdout.starts_with("✗ dev: "), "{}", run.stdout);
    assert!(run.stdout.contains("pass -y"), "{}", run.stdout);
    run.err_has("1 of 1 copies failed");
    let calls = norm(&env);
    assert_eq!(
        calls.iter().filter(|c| c[0] != "GET").collect::<Vec<_>>(),
        vec![&p("p-dev", "/home/dev/docs")],
        "{calls:#?}"
    );
    mkdir(&env, "p-dev", "/home/dev/docs");
    let run = env.ok(&["mv", "notes.txt", "dev:~/docs/", "-y"]);
    assert_eq!(run.stdout, "✓ dev:/home/dev/docs/notes.txt\n");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(
        calls,
        vec![
            p("p-dev", "/home/dev/docs"),
            ex("p-dev", &["mkdir", "-p", "/home/dev/docs"]),
            ex("p-dev", &["chown", "dev:", "/home/dev/docs"]),
            push("p-dev", "/home/dev/docs/notes.txt"),
            ex(
                "p-dev",
                &["chown", "-R", "dev:", "/home/dev/docs/notes.txt"]
            ),
        ]
    );
    assert_eq!(
        file_in(&env, "p-dev", "/home/dev/docs/notes.txt").unwrap(),
        b"hi"
    );
    // Onto a new name in an existing folder: two probes, no mkdir.
    probe(&env, "/home/dev", "dir");
    mkdir(&env, "p-dev", "/home/dev");
    env.ok(&["mv", "notes.txt", "dev:~/renamed.txt"])
        .out_starts("✓ dev:/home/dev/renamed.txt\n");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(
        calls,
        vec![
            p("p-dev", "/home/dev/renamed.txt"),
            p("p-dev", "/home/dev"),
            push("p-dev", "/home/dev/renamed.txt"),
            ex("p-dev", &["chown", "-R", "dev:", "/home/dev/renamed.txt"]),
        ]
    );
}

#[test]
fn mv_keeps_a_path_with_spaces_and_quotes_as_one_argument() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let name = "it's $x; a b.txt";
    std::fs::write(env.dir.join(name), "q").unwrap();
    probe(&env, "/home/dev/my dir", "dir");
    mkdir(&env, "p-dev", "/home/dev/my dir");
    env.take_requests();
    let run = env.ok(&["mv", name, "dev:~/my dir"]);
    let dest = format!("/home/dev/my dir/{name}");
    assert_eq!(run.stdout, format!("✓ dev:{dest}\n"));
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(
        calls,
        vec![
            p("p-dev", "/home/dev/my dir"),
            p("p-dev", "/home/dev/my dir"),
            push("p-dev", &dest),
            ex("p-dev", &["chown", "-R", "dev:", &dest]),
        ]
    );
    assert_eq!(file_in(&env, "p-dev", &dest).unwrap(), b"q");
}

#[test]
fn mv_container_to_host_and_container_to_container() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.seed_container("api", "img", true);
    env.double
        .state()
        .instance_mut("default", "p-dev")
        .unwrap()
        .files
        .write("/home/dev/out.txt", b"out");
    probe(&env, "/home/dev/out.txt", "file");
    probe(&env, "/tmp", "dir");
    env.take_requests();
    let run = env.ok(&["mv", "dev:~/out.txt", "got.txt"]);
    assert_eq!(run.stdout, "✓ dev:/home/dev/out.txt -> got.txt\n");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(
        calls,
        vec![
            p("p-dev", "/home/dev/out.txt"),
            pull("p-dev", "/home/dev/out.txt"),
        ]
    );
    assert_eq!(std::fs::read(env.dir.join("got.txt")).unwrap(), b"out");
    // Missing source: a clear message, no pull.
    env.fail(&["mv", "dev:/nope", "x"])
        .err_has("dev:/nope: no such file or folder");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(calls, vec![p("p-dev", "/nope")]);

    // Through a temp folder of ldm's (the CLI test saw its path in the
    // argvs; over the API it is ldm's own business).
    let run = env.ok(&["mv", "dev:~/out.txt", "api:/tmp/"]);
    assert_eq!(run.stdout, "✓ api:/tmp/out.txt\n");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(
        calls,
        vec![
            p("p-dev", "/home/dev/out.txt"),
            pull("p-dev", "/home/dev/out.txt"),
            p("p-api", "/tmp"),
            push("p-api", "/tmp/out.txt"),
            ex("p-api", &["chown", "-R", "dev:", "/tmp/out.txt"]),
        ]
    );
    assert_eq!(file_in(&env, "p-api", "/tmp/out.txt").unwrap(), b"out");
}

#[test]
fn mv_fans_out_and_reports_each_container() {
    let env = Env::new("p");
    for c in ["a1", "a2", "b"] {
        env.seed_container(c, "img", true);
    }
    std::fs::write(env.dir.join("f.txt"), "f").unwrap();
    probe(&env, "/tmp", "dir");
    // `*`: the push to a2 fails; the others go on.
    env.double.fail(
        Match::new("POST", "/1.0/instances/p-a2/files").first(1),
        500,
        "disk full",
    );
    env.take_requests();
    let run = env.run(&["mv", "f.txt", "*:/tmp/"]).fail();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[0], "✓ a1:/tmp/f.txt");
    assert!(
        lines[1].starts_with("✗ a2: ") && lines[1].contains("disk full"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "✓ b:/tmp/f.txt");
    run.err_has("1 of 3 copies failed");
    let pushes: Vec<_> = norm(&env).into_iter().filter(|a| a[0] == "push").collect();
    assert_eq!(pushes.len(), 3);
    assert!(file_in(&env, "p-a2", "/tmp/f.txt").is_none());
    assert!(file_in(&env, "p-b", "/tmp/f.txt").is_some());
    // `a*`: chown fails in a1 only; b is not touched.
    env.double.exec_rule(
        ExecRule::contains("chown")
            .instance("p-a1")
            .stderr("chown: invalid user")
            .code(1),
    );
    mkdir(&env, "p-a2", "/srv");
    let run = env.fail(&["mv", "f.txt", "a*:/srv/", "-y"]);
    assert_eq!(
        run.stdout,
        "✗ a1: `chown dev: /srv` in p-a1 failed (exit 1): chown: invalid user\n✓ a2:/srv/f.txt\n"
    );
    run.err_has("1 of 2 copies failed");
    let calls = norm(&env);
    assert!(
        calls.iter().all(|a| !a.iter().any(|x| x.contains("p-b"))),
        "{calls:#?}"
    );
    // A pattern matching nothing: no request.
    env.fail(&["mv", "f.txt", "zz*:/tmp/"])
        .err_has("no container matches zz*");
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn mv_without_a_container_path_hints_at_name_colon_path() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.take_requests();
    let run = env.fail(&["mv", "a/b", "c"]);
    run.err_has("NAME:/path");
    run.err_has("dev:/home/dev/c");
    assert_eq!(run.stdout, "");
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

/// The calls of `image create` of `lxd` as alias myimg by ldm process
/// `pid`, after its look-ups.
fn publish_calls(lxd: &str, pid: i32, running: bool) -> Vec<Vec<String>> {
    let snap = format!("ldm-publish-{pid}");
    let inst = format!("/1.0/instances/{lxd}");
    let mut v = Vec::new();
    if running {
        v.push(s(&["PUT", &format!("{inst}/state")]));
    }
    v.push(s(&["POST", &format!("{inst}/snapshots")]));
    v.push(s(&["POST", "/1.0/images"]));
    v.push(s(&["DELETE", &format!("{inst}/snapshots/{snap}")]));
    if running {
        v.push(s(&["PUT", &format!("{inst}/state")]));
    }
    v
}

/// The calls since the last take but GETs, and the pid of the ldm that
/// made the first.
fn changes(env: &Env) -> (Vec<Vec<String>>, i32) {
    let reqs = env.requests();
    let pid = reqs[0].peer_pid.expect("the peer's pid");
    let calls = norm(env).into_iter().filter(|c| c[0] != "GET").collect();
    (calls, pid)
}

/// The body of the last `POST /1.0/images` logged.
fn publish_body(env: &Env) -> Value {
    let reqs = env.requests();
    reqs.iter()
        .rev()
        .find(|r| r.is("POST", "/1.0/images"))
        .expect("a publish")
        .json()
}

#[test]
fn image_create_publishes_a_temporary_snapshot_and_restarts() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.take_requests();
    let run = env.ok(&["image", "create", "dev", "myimg"]);
    assert_eq!(
        run.stdout,
        "Created image myimg from dev; use it with `ldm container create NAME myimg`\n"
    );
    let body = publish_body(&env);
    let (calls, pid) = changes(&env);
    assert_eq!(calls, publish_calls("p-dev", pid, true));
    assert_eq!(
        body["source"]["name"],
        json!(format!("p-dev/ldm-publish-{pid}"))
    );
    assert!(env.running("p-dev"));
    assert_eq!(aliases(&env), [s(&["myimg"])]);
    env.assert_agree();
    // The alias exists now: refused with a hint, snapshot removed, restarted.
    env.fail(&["image", "create", "dev", "myimg"])
        .err_has("an image alias myimg exists already");
    let (calls, _) = changes(&env);
    assert_eq!(
        calls.last().unwrap(),
        &s(&["PUT", "/1.0/instances/p-dev/state"])
    );
    assert!(env.running("p-dev"));
    env.assert_agree();
    // A stopped container is neither stopped nor started.
    env.seed_container("off", "img", false);
    env.double
        .state()
        .projects
        .get_mut("default")
        .unwrap()
        .images
        .clear();
    env.take_requests();
    env.ok(&["image", "create", "off", "myimg"]);
    let (calls, pid) = changes(&env);
    assert_eq!(calls, publish_calls("p-off", pid, false));
}

#[test]
fn image_create_cleans_up_when_publish_fails() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.double.fail_operation(
        Match::new("POST", "/1.0/images"),
        "Failed to create image: out of space",
    );
    env.take_requests();
    let run = env.run(&["image", "create", "dev", "myimg"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.err_has("out of space");
    assert_eq!(run.stdout, "");
    let (calls, pid) = changes(&env);
    assert_eq!(calls, publish_calls("p-dev", pid, true));
    assert!(env.running("p-dev"));
    assert!(aliases(&env).is_empty());
    env.assert_agree(); // only initial-state left, no operation pending
}

#[test]
fn image_list_shows_aliased_images_all_and_json() {
    let env = Env::new("p");
    seed_images(&env);
    let run = env.ok(&["image", "list"]);
    assert_eq!(
        run.stdout,
        "ALIAS  FINGERPRINT   SIZE      DESCRIPTION\nbase   abcdef012345  123.5 MB  Debian 12\n"
    );
    assert_eq!(norm(&env), vec![get("/1.0/images")]);
    let run = env.ok(&["images", "--all"]);
    assert_eq!(
        run.stdout,
        "ALIAS  FINGERPRINT   SIZE      DESCRIPTION\nbase   abcdef012345  123.5 MB  Debian 12\n-      999999012345  1.0 MB    cached\n"
    );
    assert_eq!(norm(&env), vec![get("/1.0/images")]);
    let run = env.ok(&["image", "list", "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let base = json!({"aliases": ["base"], "fingerprint": FP1, "size": 123_456_789, "description": "Debian 12"});
    assert_eq!(v, json!([base.clone()]));
    let v: Value =
        serde_json::from_str(&env.ok(&["image", "list", "--all", "--json"]).stdout).unwrap();
    assert_eq!(
        v,
        json!([base, {"aliases": [], "fingerprint": FP2, "size": 1_000_000, "description": "cached"}])
    );
}

#[test]
fn image_delete_needs_force_without_a_terminal() {
    let env = Env::new("p");
    seed_images(&env);
    let run = env.fail(&["image", "delete", "base"]);
    run.err_has("--force");
    assert_eq!(run.stdout, "");
    assert!(norm(&env).iter().all(|c| c[0] == "GET"));
    assert_eq!(aliases(&env).len(), 2);
    let run = env.ok(&["image", "delete", "base", "-f"]);
    assert_eq!(run.stdout, "Deleted image base\n");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(calls, vec![s(&["DELETE", &format!("/1.0/images/{FP1}")])]);
    let fps: Vec<String> = env
        .double
        .state()
        .images("default")
        .iter()
        .map(|i| i.fingerprint.clone())
        .collect();
    assert_eq!(fps, [FP2]);
    env.fail(&["image", "delete", "base", "-f"])
        .err_has("no image with alias base");
}

#[test]
fn image_rename_is_one_alias_rename() {
    let env = Env::new("p");
    seed_images(&env);
    let run = env.ok(&["image", "rename", "base", "deb"]);
    assert_eq!(run.stdout, "Renamed image base to deb\n");
    let rename = env
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the rename");
    let calls: Vec<_> = norm(&env).into_iter().filter(|c| c[0] != "GET").collect();
    assert_eq!(calls, vec![s(&["POST", "/1.0/images/aliases/base"])]);
    assert_eq!(rename.json(), json!({"name": "deb"}));
    assert_eq!(aliases(&env)[0], s(&["deb"]));
    env.fail(&["image", "rename", "base", "x"])
        .err_has("no image with alias base");
    env.fail(&["image", "rename", "deb", "deb"])
        .err_has("an image alias deb exists already");
    // Each asked once; LXD refused both (404, 409).
    let posts: Vec<_> = env
        .take_requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.line(), r.status))
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts.iter().all(|(_, st)| *st != Some(200)), "{posts:?}");
    assert_eq!(aliases(&env)[0], s(&["deb"]));
    // A bad new alias: no request.
    env.fail(&["image", "rename", "deb", "a b"])
        .err_has("invalid image alias");
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn regression_mv_from_a_stopped_container_says_start_it() {
    // The probe ignored the exec's failure on a stopped instance, the empty
    // stdout read as "missing", and ldm said "dev:/home/dev/x: no such file
    // or folder". It names `ldm up NAME`, as ssh does.
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    let run = env.fail(&["mv", "dev:~/x", "y"]);
    assert!(
        !run.stderr.contains("no such file") && run.stderr.contains("ldm up dev"),
        "{}",
        run.stderr
    );
}

/// Kills `ldm image create dev myimg` while the double holds its publish
/// request: the container is stopped and has the temporary snapshot.
fn interrupted_image_create(env: &Env) -> String {
    env.seed_container("dev", "img", true);
    env.double
        .hang(Match::new("POST", "/1.0/images").nth(1), HangAt::Request);
    let mut child = env.spawn(&["image", "create", "dev", "myimg"], &[]);
    let h = env.wait_hang(Duration::from_secs(60));
    kill(child.id() as i32);
    child.wait().unwrap();
    // The publish stays held (no effect) until the double stops.
    let _ = h;
    let snap = format!("ldm-publish-{}", child.id());
    assert!(env.lxd_snapshots("dev").contains(&snap));
    assert!(!env.running("p-dev"));
    env.take_requests();
    snap
}

#[test]
fn doctor_fix_deletes_the_snapshot_an_interrupted_image_create_left() {
    let env = Env::new("p");
    let snap = interrupted_image_create(&env);
    let run = env.run(&["doctor"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "dev: snapshot {snap} is a leftover of an interrupted `ldm image create`"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("will delete it from LXD"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("dev: interrupted publishing"),
        "{}",
        run.stdout
    );
    let json: Value = serde_json::from_str(&env.run(&["doctor", "--json"]).stdout).unwrap();
    assert!(
        json["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["delete_snapshot"] == json!(["p-dev", snap])),
        "{json}"
    );
    env.take_requests();
    let run = env.ok(&["doctor", "--fix"]);
    assert!(
        run.stdout.contains(&format!("fixed  dev: snapshot {snap}")),
        "{}",
        run.stdout
    );
    let calls = norm(&env);
    assert!(
        calls.contains(&s(&[
            "DELETE",
            &format!("/1.0/instances/p-dev/snapshots/{snap}")
        ])),
        "{calls:?}"
    );
    // Deleted from LXD, and never recorded as a user's snapshot.
    assert!(!env.lxd_snapshots("dev").contains(&snap));
    let recorded = &env.project().containers["dev"].snapshots;
    assert!(!recorded.keys().any(|s| s.starts_with("ldm-publish-")));
    env.ok(&["doctor"]);
    env.assert_agree();
}

#[test]
fn rerun_image_create_deletes_the_leftover_snapshot_first() {
    let env = Env::new("p");
    let old = interrupted_image_create(&env);
    env.ok(&["image", "create", "dev", "myimg"]);
    let (calls, pid) = changes(&env);
    // The interrupted run stopped it and recorded that it was running: not
    // stopped again, but started at the end.
    let mut want = publish_calls("p-dev", pid, true);
    want.remove(0);
    want.insert(
        0,
        s(&["DELETE", &format!("/1.0/instances/p-dev/snapshots/{old}")]),
    );
    assert_eq!(calls, want);
    assert!(env.running("p-dev"));
    assert!(!env
        .lxd_snapshots("dev")
        .iter()
        .any(|s| s.starts_with("ldm-publish-")));
    assert_eq!(aliases(&env), [s(&["myimg"])]);
    env.assert_agree();
}
