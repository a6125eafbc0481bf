//! `ldm ssh`, `ldm mv` and `ldm image ...` against the LXD client TEST
//! DOUBLE (tests/lxd_double/lxc): stdout, exit codes and the exact client
//! calls (issue 4). exec.json rules script the container's answers; the
//! path probe `mv` runs is shown as `["PROBE", lxd, path]` (see `norm`).

mod double;

use std::time::Duration;

use double::{argv, kill, query, Env};
use serde_json::{json, Value};

/// Writes the double's exec rules (first match wins).
fn rules(env: &Env, rules: Value) {
    std::fs::write(env.dd.join("exec.json"), rules.to_string()).unwrap();
}

/// A rule answering mv's path probe for exactly `path` with `kind`.
fn probe(path: &str, kind: &str) -> Value {
    json!({"contains": ["echo parent"], "last": path, "stdout": format!("{kind}\n")})
}

/// The calls since the last take, the probe script shortened to `PROBE`.
fn norm(env: &Env) -> Vec<Vec<String>> {
    let mut out = env.take_argvs();
    for a in out.iter_mut() {
        if a.len() == 8 && a[3..5] == argv(&["sh", "-c"]) && a[5].contains("echo parent") {
            assert_eq!(
                (a[0].as_str(), a[1].as_str(), a[6].as_str()),
                ("exec", "--", "sh")
            );
            *a = vec!["PROBE".into(), a[2].clone(), a[7].clone()];
        }
    }
    out
}

fn p(lxd: &str, path: &str) -> Vec<String> {
    argv(&["PROBE", lxd, path])
}

fn ex(lxd: &str, rest: &[&str]) -> Vec<String> {
    let mut a = argv(&["exec", "--", lxd]);
    a.extend(argv(rest));
    a
}

/// A file the double holds in instance `lxd`, as the double's base64.
fn file_in(env: &Env, lxd: &str, path: &str) -> Option<String> {
    env.instances()[lxd]["files"][path]
        .as_str()
        .map(str::to_string)
}

/// Adds to the double's state (no double may be running).
fn edit_state(env: &Env, f: impl FnOnce(&mut Value)) {
    let mut st = env.state();
    f(&mut st);
    std::fs::write(env.dd.join("state.json"), st.to_string()).unwrap();
}

const FP1: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const FP2: &str = "9999990123456789abcdef0123456789abcdef0123456789abcdef0123456789";

fn seed_images(env: &Env) {
    edit_state(env, |st| {
        st["images"] = json!([
            {"aliases": ["base"], "fingerprint": FP1, "size": 123_456_789,
             "description": "Debian 12", "created_at": "2026-01-01T00:00:00Z"},
            {"aliases": [], "fingerprint": FP2, "size": 1_000_000,
             "description": "cached", "created_at": "2026-01-01T00:00:00Z"},
        ]);
    });
}

const RUN_ARGV: &str = r#"exec "$0" "$@""#;

#[test]
fn ssh_runs_one_command_as_the_user_and_passes_its_exit_code() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    rules(
        &env,
        json!([{"instance": "p-dev", "contains": ["mycmd"], "stdout": "hello\n", "code": 3}]),
    );
    let run = env
        .run(&["ssh", "dev", "--", "mycmd", "a b", "it's $x;"])
        .expect(3);
    assert_eq!(run.stdout, "hello\n");
    let su = [
        "su", "-l", "dev", "-c", RUN_ARGV, "--", "mycmd", "a b", "it's $x;",
    ];
    assert_eq!(env.take_argvs(), vec![query("p-dev"), ex("p-dev", &su)]);
    // Exit 0 passes through too; -u root runs as root.
    let run = env.ok(&["ssh", "dev", "-u", "root", "--", "true"]);
    assert_eq!(run.stdout, "");
    let su = ["su", "-l", "root", "-c", RUN_ARGV, "--", "true"];
    assert_eq!(env.take_argvs(), vec![query("p-dev"), ex("p-dev", &su)]);
}

#[test]
fn ssh_to_a_stopped_container_names_ldm_up() {
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    let run = env.fail(&["ssh", "dev", "--", "true"]);
    run.err_has("ldm up dev");
    assert_eq!(run.stdout, "");
    assert_eq!(env.take_argvs(), vec![query("p-dev")]);
    // Unknown container: no client call.
    env.fail(&["ssh", "nope"]);
    assert!(env.calls().is_empty());
}

#[test]
fn mv_host_to_container_creates_the_folder_only_with_yes() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    std::fs::write(env.dir.join("notes.txt"), "hi").unwrap();
    // Without -y and no terminal: refused, the ✗ line names -y.
    let run = env.fail(&["mv", "notes.txt", "dev:~/docs/"]);
    assert!(run.stdout.starts_with("✗ dev: "), "{}", run.stdout);
    assert!(run.stdout.contains("pass -y"), "{}", run.stdout);
    run.err_has("1 of 1 copies failed");
    assert_eq!(norm(&env), vec![p("p-dev", "/home/dev/docs")]);
    let run = env.ok(&["mv", "notes.txt", "dev:~/docs/", "-y"]);
    assert_eq!(run.stdout, "✓ dev:/home/dev/docs/notes.txt\n");
    assert_eq!(
        norm(&env),
        vec![
            p("p-dev", "/home/dev/docs"),
            ex("p-dev", &["mkdir", "-p", "/home/dev/docs"]),
            ex("p-dev", &["chown", "dev:", "/home/dev/docs"]),
            argv(&[
                "file",
                "push",
                "--",
                "notes.txt",
                "p-dev/home/dev/docs/notes.txt"
            ]),
            ex(
                "p-dev",
                &["chown", "-R", "dev:", "/home/dev/docs/notes.txt"]
            ),
        ]
    );
    assert_eq!(
        file_in(&env, "p-dev", "/home/dev/docs/notes.txt").unwrap(),
        "aGk=" // "hi"
    );
    // Onto a new name in an existing folder: two probes, no mkdir.
    rules(&env, json!([probe("/home/dev", "dir")]));
    env.ok(&["mv", "notes.txt", "dev:~/renamed.txt"])
        .out_starts("✓ dev:/home/dev/renamed.txt\n");
    assert_eq!(
        norm(&env),
        vec![
            p("p-dev", "/home/dev/renamed.txt"),
            p("p-dev", "/home/dev"),
            argv(&[
                "file",
                "push",
                "--",
                "notes.txt",
                "p-dev/home/dev/renamed.txt"
            ]),
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
    rules(&env, json!([probe("/home/dev/my dir", "dir")]));
    let run = env.ok(&["mv", name, "dev:~/my dir"]);
    let dest = format!("/home/dev/my dir/{name}");
    assert_eq!(run.stdout, format!("✓ dev:{dest}\n"));
    assert_eq!(
        norm(&env),
        vec![
            p("p-dev", "/home/dev/my dir"),
            p("p-dev", "/home/dev/my dir"),
            argv(&["file", "push", "--", name, &format!("p-dev{dest}")]),
            ex("p-dev", &["chown", "-R", "dev:", &dest]),
        ]
    );
    assert_eq!(file_in(&env, "p-dev", &dest).unwrap(), "cQ=="); // "q"
}

#[test]
fn mv_container_to_host_and_container_to_container() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.seed_container("api", "img", true);
    edit_state(&env, |st| {
        st["instances"]["p-dev"]["files"]["/home/dev/out.txt"] = json!("b3V0"); // "out"
    });
    rules(
        &env,
        json!([probe("/home/dev/out.txt", "file"), probe("/tmp", "dir")]),
    );
    let run = env.ok(&["mv", "dev:~/out.txt", "got.txt"]);
    assert_eq!(run.stdout, "✓ dev:/home/dev/out.txt -> got.txt\n");
    assert_eq!(
        norm(&env),
        vec![
            p("p-dev", "/home/dev/out.txt"),
            argv(&["file", "pull", "--", "p-dev/home/dev/out.txt", "got.txt"]),
        ]
    );
    assert_eq!(std::fs::read(env.dir.join("got.txt")).unwrap(), b"out");
    // Missing source: a clear message, no pull.
    env.fail(&["mv", "dev:/nope", "x"])
        .err_has("dev:/nope: no such file or folder");
    assert_eq!(norm(&env), vec![p("p-dev", "/nope")]);

    let run = env.ok(&["mv", "dev:~/out.txt", "api:/tmp/"]);
    assert_eq!(run.stdout, "✓ api:/tmp/out.txt\n");
    let calls = norm(&env);
    assert_eq!(calls.len(), 5, "{calls:#?}");
    assert_eq!(calls[0], p("p-dev", "/home/dev/out.txt"));
    assert_eq!(
        calls[1][..4],
        argv(&["file", "pull", "--", "p-dev/home/dev/out.txt"])
    );
    let tmp = calls[1][4].clone();
    assert!(tmp.contains("ldm-mv-"), "{tmp}");
    assert_eq!(calls[2], p("p-api", "/tmp"));
    assert_eq!(
        calls[3],
        argv(&[
            "file",
            "push",
            "--",
            &format!("{tmp}/out.txt"),
            "p-api/tmp/out.txt"
        ])
    );
    assert_eq!(
        calls[4],
        ex("p-api", &["chown", "-R", "dev:", "/tmp/out.txt"])
    );
    assert_eq!(file_in(&env, "p-api", "/tmp/out.txt").unwrap(), "b3V0");
    assert!(
        !std::path::Path::new(&tmp).exists(),
        "temp folder left behind"
    );
}

#[test]
fn mv_fans_out_and_reports_each_container() {
    let env = Env::new("p");
    for c in ["a1", "a2", "b"] {
        env.seed_container(c, "img", true);
    }
    std::fs::write(env.dir.join("f.txt"), "f").unwrap();
    rules(&env, json!([probe("/tmp", "dir")]));
    // `*`: the second push fails; the others go on.
    let run = env
        .run_env(
            &["mv", "f.txt", "*:/tmp/"],
            &[("LDM_DOUBLE_FAIL", "file#2=Error: disk full")],
        )
        .expect(1);
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
    let pushes: Vec<_> = norm(&env).into_iter().filter(|a| a[0] == "file").collect();
    assert_eq!(pushes.len(), 3);
    assert!(file_in(&env, "p-a2", "/tmp/f.txt").is_none());
    assert!(file_in(&env, "p-b", "/tmp/f.txt").is_some());
    // `a*`: chown fails in a1 only; b is not touched.
    rules(
        &env,
        json!([{"instance": "p-a1", "contains": ["chown"], "stderr": "chown: invalid user", "code": 1}]),
    );
    let run = env.fail(&["mv", "f.txt", "a*:/srv/", "-y"]);
    assert_eq!(
        run.stdout,
        "✗ a1: `chown dev: /srv` in p-a1 failed (exit 1): chown: invalid user\n✓ a2:/srv/f.txt\n"
    );
    run.err_has("1 of 2 copies failed");
    let calls = norm(&env);
    assert!(calls.iter().all(|a| a[1] != "p-b"), "{calls:#?}");
    // A pattern matching nothing: no client call.
    env.fail(&["mv", "f.txt", "zz*:/tmp/"])
        .err_has("no container matches zz*");
    assert!(env.calls().is_empty());
}

#[test]
fn mv_without_a_container_path_hints_at_name_colon_path() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let run = env.fail(&["mv", "a/b", "c"]);
    run.err_has("NAME:/path");
    run.err_has("dev:/home/dev/c");
    assert_eq!(run.stdout, "");
    assert!(env.calls().is_empty());
}

fn publish_calls(lxd: &str, pid: u32, running: bool) -> Vec<Vec<String>> {
    let snap = format!("ldm-publish-{pid}");
    let mut v = vec![query(lxd)];
    if running {
        v.push(argv(&["stop", "--", lxd]));
    }
    v.push(argv(&["snapshot", "--", lxd, &snap]));
    v.push(argv(&[
        "publish",
        "--alias=myimg",
        "--",
        &format!("{lxd}/{snap}"),
    ]));
    v.push(argv(&["delete", "--", &format!("{lxd}/{snap}")]));
    if running {
        v.push(argv(&["start", "--", lxd]));
    }
    v
}

#[test]
fn image_create_publishes_a_temporary_snapshot_and_restarts() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let run = env.ok(&["image", "create", "dev", "myimg"]);
    assert_eq!(
        run.stdout,
        "Created image myimg from dev; use it with `ldm container create NAME myimg`\n"
    );
    let calls = env.take_calls();
    let pid = calls[0].ppid;
    let argvs: Vec<_> = calls.into_iter().map(|c| c.argv).collect();
    assert_eq!(argvs, publish_calls("p-dev", pid, true));
    assert_eq!(env.instances()["p-dev"]["status"], "Running");
    assert_eq!(env.state()["images"][0]["aliases"], json!(["myimg"]));
    env.assert_agree();
    // The alias exists now: refused with a hint, snapshot removed, restarted.
    env.fail(&["image", "create", "dev", "myimg"])
        .err_has("an image alias myimg exists already");
    assert_eq!(
        env.take_argvs().last().unwrap(),
        &argv(&["start", "--", "p-dev"])
    );
    env.assert_agree();
    // A stopped container is neither stopped nor started.
    env.seed_container("off", "img", false);
    edit_state(&env, |st| st["images"] = json!([]));
    env.ok(&["image", "create", "off", "myimg"]);
    let calls = env.take_calls();
    let pid = calls[0].ppid;
    let argvs: Vec<_> = calls.into_iter().map(|c| c.argv).collect();
    assert_eq!(argvs, publish_calls("p-off", pid, false));
}

#[test]
fn image_create_cleans_up_when_publish_fails() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let run = env.run_env(
        &["image", "create", "dev", "myimg"],
        &[("LDM_DOUBLE_FAIL", "publish=Error: out of space")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.err_has("out of space");
    assert_eq!(run.stdout, "");
    let calls = env.take_calls();
    let pid = calls[0].ppid;
    let argvs: Vec<_> = calls.into_iter().map(|c| c.argv).collect();
    assert_eq!(argvs, publish_calls("p-dev", pid, true));
    assert_eq!(env.instances()["p-dev"]["status"], "Running");
    assert_eq!(env.state()["images"], json!([]));
    env.assert_agree(); // only initial-state left, no operation pending
}

#[test]
fn image_list_shows_aliased_images_all_and_json() {
    let env = Env::new("p");
    seed_images(&env);
    let list = argv(&["image", "list", "--format", "json"]);
    let run = env.ok(&["image", "list"]);
    assert_eq!(
        run.stdout,
        "ALIAS  FINGERPRINT   SIZE      DESCRIPTION\nbase   abcdef012345  123.5 MB  Debian 12\n"
    );
    assert_eq!(env.take_argvs(), vec![list.clone()]);
    let run = env.ok(&["images", "--all"]);
    assert_eq!(
        run.stdout,
        "ALIAS  FINGERPRINT   SIZE      DESCRIPTION\nbase   abcdef012345  123.5 MB  Debian 12\n-      999999012345  1.0 MB    cached\n"
    );
    assert_eq!(env.take_argvs(), vec![list.clone()]);
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
    assert_eq!(
        env.take_argvs(),
        vec![argv(&["image", "list", "--format", "json"])]
    );
    assert_eq!(env.state()["images"].as_array().unwrap().len(), 2);
    let run = env.ok(&["image", "delete", "base", "-f"]);
    assert_eq!(run.stdout, "Deleted image base\n");
    assert_eq!(
        env.take_argvs(),
        vec![argv(&["image", "delete", "--", "base"])]
    );
    assert_eq!(env.state()["images"][0]["fingerprint"], FP2);
    env.fail(&["image", "delete", "base", "-f"])
        .err_has("no image with alias base");
}

#[test]
fn image_rename_is_one_alias_rename() {
    let env = Env::new("p");
    seed_images(&env);
    let run = env.ok(&["image", "rename", "base", "deb"]);
    assert_eq!(run.stdout, "Renamed image base to deb\n");
    assert_eq!(
        env.take_argvs(),
        vec![argv(&["image", "alias", "rename", "--", "base", "deb"])]
    );
    assert_eq!(env.state()["images"][0]["aliases"], json!(["deb"]));
    env.fail(&["image", "rename", "base", "x"])
        .err_has("no image with alias base");
    env.fail(&["image", "rename", "deb", "deb"])
        .err_has("an image alias deb exists already");
    assert_eq!(env.take_argvs().len(), 2);
    // A bad new alias: no client call.
    env.fail(&["image", "rename", "deb", "a b"])
        .err_has("invalid image alias");
    assert!(env.calls().is_empty());
}

#[test]
fn regression_mv_from_a_stopped_container_says_start_it() {
    // probe() ignores the exec's exit code: `lxc exec` on a stopped
    // instance fails ("Error: Instance is not running", exit 1), the empty
    // stdout reads as "missing", and ldm says "dev:/home/dev/x: no such file
    // or folder" (pushes try `mkdir -p` instead). Fix (commands/files.rs,
    // probe): on `out.code != 0` or an answer not in dir/file/parent/missing,
    // return Error::Usage naming the stderr, or check `lxd.instance()` is
    // running first and name `ldm up NAME`, as ssh does.
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    let run = env.fail(&["mv", "dev:~/x", "y"]);
    assert!(
        !run.stderr.contains("no such file") && run.stderr.contains("ldm up dev"),
        "{}",
        run.stderr
    );
}

/// Kills `ldm image create dev myimg` while the double hangs before its
/// publish: the container is stopped and has the temporary snapshot.
fn interrupted_image_create(env: &Env) -> String {
    env.seed_container("dev", "img", true);
    let mut child = env.spawn(
        &["image", "create", "dev", "myimg"],
        &[("LDM_DOUBLE_HANG", "publish:before")],
    );
    let h = env.wait_hang("publish", Duration::from_secs(60));
    kill(child.id() as i32);
    child.wait().unwrap();
    kill(h.pid);
    let snap = format!("ldm-publish-{}", child.id());
    assert!(env.lxd_snapshots("dev").contains(&snap));
    env.take_calls();
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
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["doctor", "--json"]).stdout).unwrap();
    assert!(
        json["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["delete_snapshot"] == json!(["p-dev", snap])),
        "{json}"
    );
    env.take_calls();
    let run = env.ok(&["doctor", "--fix"]);
    assert!(
        run.stdout.contains(&format!("fixed  dev: snapshot {snap}")),
        "{}",
        run.stdout
    );
    let argvs = env.take_argvs();
    assert!(
        argvs.contains(&argv(&["delete", "--", &format!("p-dev/{snap}")])),
        "{argvs:?}"
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
    let calls = env.take_calls();
    let pid = calls[0].ppid;
    let argvs: Vec<_> = calls.into_iter().map(|c| c.argv).collect();
    // The interrupted run stopped it and recorded that it was running: not
    // stopped again, but started at the end.
    let mut want = publish_calls("p-dev", pid, true);
    want.retain(|a| a != &argv(&["stop", "--", "p-dev"]));
    want.insert(1, argv(&["delete", "--", &format!("p-dev/{old}")]));
    assert_eq!(argvs, want);
    assert_eq!(env.instances()["p-dev"]["status"], "Running");
    assert!(!env
        .lxd_snapshots("dev")
        .iter()
        .any(|s| s.starts_with("ldm-publish-")));
    assert_eq!(env.state()["images"][0]["aliases"], json!(["myimg"]));
    env.assert_agree();
}
