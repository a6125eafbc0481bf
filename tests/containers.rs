//! Every container command against the LXD API TEST DOUBLE
//! (crates/lxd-double): stdout, exit code, the project afterwards, and the
//! exact calls the server logged (issue 3; method and path, and the body
//! fields that carry user input). Calls against the Go tool's client
//! calls: `call_counts`.

mod common;

use common::api::{assert_hashed, lines, Env, LAUNCH_CONFIG};
use lxd_double::{Body, Image, Instance, Match, Profile};
use serde_json::{json, Value};

/// The JSON body of the `n`-th logged request that is `method` on `path`.
fn body(env: &Env, method: &str, path: &str, n: usize) -> Value {
    let reqs: Vec<_> = env
        .requests()
        .into_iter()
        .filter(|r| r.is(method, path))
        .collect();
    reqs.get(n)
        .unwrap_or_else(|| panic!("no {method} {path} #{n}"))
        .json()
}

#[test]
fn create_launches_waits_sets_up_snapshots_and_records() {
    let env = Env::new("web");
    // The default mount has its own tests (tests/mounts.rs).
    let run = env.ok(&[
        "container",
        "create",
        "dev",
        "images:debian/12",
        "--no-mount",
    ]);
    let launch = body(&env, "POST", "/1.0/instances", 0);
    assert_eq!(
        env.take_calls(),
        lines(&[
            "POST /1.0/instances",
            "PUT /1.0/instances/web-dev/state",
            "POST /1.0/instances/web-dev/exec",
            "POST /1.0/instances/web-dev/exec",
            "POST /1.0/instances/web-dev/snapshots",
            "GET /1.0/instances/web-dev/state",
        ])
    );
    assert_eq!(launch["name"], "web-dev");
    assert_eq!(
        launch["source"],
        json!({"type": "image", "alias": "debian/12", "mode": "pull",
               "protocol": "simplestreams", "server": "https://images.linuxcontainers.org"})
    );
    for (k, v) in LAUNCH_CONFIG {
        assert_eq!(launch["config"][k], v, "{launch}");
    }
    // Boot wait and setup: constant scripts; user input only as $1 / stdin.
    let execs = env.execs();
    assert_eq!(execs.len(), 2);
    let (wait, setup) = (&execs[0].command, &execs[1].command);
    assert_eq!(wait[..2], lines(&["sh", "-c"]));
    assert!(wait[2].contains("cloud-init status --wait"));
    assert_eq!(wait[3..], lines(&["sh", "300"]));
    assert_eq!(setup[..2], lines(&["sh", "-c"]));
    assert!(setup[2].contains("chpasswd -e") && !setup[2].contains("dev:"));
    assert_eq!(setup[3..], lines(&["sh", "dev"]));
    assert_hashed(&String::from_utf8_lossy(&execs[1].stdin), "dev", "dev");
    let inst = env.instance("web-dev").unwrap();
    assert_eq!(inst.snapshot_names(), ["initial-state"]);
    assert!(inst.is_running());
    let ip = env.ip("dev");
    assert_eq!(
        run.stdout,
        format!("Created dev (web-dev) from images:debian/12\n  IPv4:      {ip}\n  user:      dev\n  password:  dev\n  shell:     ldm ssh dev\n")
    );
    let c = &env.project().containers["dev"];
    assert_eq!(c.image, "images:debian/12");
    assert_eq!(
        c.snapshots["initial-state"].description,
        "Initial state after setup"
    );
    env.assert_agree();

    // Aliases `c` and `c`, --timeout reaching the boot wait, LDM_PROFILE the launch.
    env.double.add_image("default", Image::new("debian/12"));
    env.double
        .state()
        .projects
        .get_mut("default")
        .unwrap()
        .profiles
        .insert("dev prof".into(), Profile::default());
    env.take_requests();
    let args = ["c", "c", "api", "debian/12", "--timeout", "7"];
    env.run_env(&args, &[("LDM_PROFILE", "dev prof")]).ok();
    let launch = body(&env, "POST", "/1.0/instances", 0);
    assert_eq!(launch["profiles"], json!(["dev prof"]));
    assert_eq!(
        launch["source"],
        json!({"type": "image", "alias": "debian/12"})
    );
    assert_eq!(env.execs()[2].command[3..], lines(&["sh", "7"]));
    assert_eq!(env.project().containers.len(), 2);
    env.assert_agree();
}

/// LXD fails to start a command for a moment right after a boot ("Failed
/// to retrieve PID of executing child process": the exec operation fails
/// with no return code): seen on real LXD under load at the user's setup,
/// not only at the boot wait. The command never ran, so create runs it
/// again and succeeds.
#[test]
fn create_retries_a_setup_step_lxd_could_not_start_yet() {
    let env = Env::new("web");
    env.double.add_image("default", Image::new("img"));
    env.double.fail_operation(
        Match::new("POST", "/1.0/instances/*/exec").nth(2),
        "Failed to retrieve PID of executing child process",
    );
    env.run(&["container", "create", "dev", "img", "--no-mount"])
        .ok();
    let reqs = env.requests();
    let execs: Vec<Value> = reqs
        .iter()
        .filter(|r| r.is("POST", "/1.0/instances/*/exec"))
        .map(|r| r.json()["command"].clone())
        .collect();
    assert_eq!(
        execs.len(),
        3,
        "boot wait, the failed setup, the setup again: {execs:#?}"
    );
    assert_eq!(execs[1], execs[2], "the same setup command, run again");
    assert!(execs[1][2].as_str().unwrap().contains("chpasswd"));
    assert!(env.project().containers["dev"].pending.is_none());
    env.assert_agree();
}

#[test]
fn create_refusals_make_no_or_no_lasting_calls() {
    let env = Env::new("p");
    // Missing image: the launch fails, ldm checks nothing was made, forgets the name.
    let run = env.fail(&["container", "create", "dev", "missing-image"]);
    run.err_has("LXD has no image missing-image");
    let calls = env.take_calls();
    assert_eq!(calls[0], "POST /1.0/instances", "{calls:#?}");
    assert_eq!(
        calls.last().map(String::as_str),
        Some("GET /1.0/instances/p-dev"),
        "{calls:#?}"
    );
    assert!(
        calls[1..].iter().all(|c| c.starts_with("GET ")),
        "{calls:#?}"
    );
    assert!(env.project().containers.is_empty());
    assert!(env.instances().is_empty());
    // Bad names and reserved words: refused before any request.
    for bad in ["a;b", "$(id)", "dé", "list", "a b", "-x", "x--y"] {
        let run = env.run(&["container", "create", "--", bad, "img"]);
        assert_eq!(run.code, 1, "{bad}: {}", run.stderr);
        run.err_has("invalid container name");
    }
    assert_eq!(env.take_calls(), Vec::<String>::new());
    // Taken name: refused before any request.
    env.seed_container("dev", "img", true);
    let run = env.fail(&["container", "create", "dev", "img"]);
    run.err_has("already exists");
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn clone_copies_snapshots_starts_and_records() {
    let env = Env::new("p");
    env.seed_container("a", "ubuntu:24.04", true);
    env.take_requests();
    let run = env.ok(&["container", "clone", "a", "b"]);
    let copy = body(&env, "POST", "/1.0/instances", 0);
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/instances/p-a",
            "GET /1.0/instances/p-a",
            "POST /1.0/instances",
            "POST /1.0/instances/p-b/snapshots",
            "PUT /1.0/instances/p-b/state",
            "GET /1.0/instances/p-b/state",
        ])
    );
    assert_eq!(copy["name"], "p-b");
    assert_eq!(
        copy["source"],
        json!({"type": "copy", "source": "p-a", "instance_only": true})
    );
    assert_eq!(
        env.instance("p-b").unwrap().snapshot_names(),
        ["initial-state"]
    );
    let ip = env.ip("b");
    assert_eq!(run.stdout, format!("Cloned a to b (p-b)\n  IPv4:      {ip}\n  user:      dev\n  password:  dev\n  shell:     ldm ssh b\n"));
    assert_eq!(
        env.project().containers["b"].image,
        "ubuntu:24.04:cloned-from-a"
    );
    env.assert_agree();
    // From a snapshot.
    let run = env.ok(&["container", "clone", "a", "c", "-s", "initial-state"]);
    run.out_starts("Cloned a/initial-state to c (p-c)\n");
    let copy = body(&env, "POST", "/1.0/instances", 0);
    assert_eq!(
        copy["source"],
        json!({"type": "copy", "source": "p-a/initial-state"})
    );
    env.take_requests();
    env.assert_agree();
    // Unknown source or taken name: no request.
    env.fail(&["container", "clone", "zzz", "d"]);
    env.fail(&["container", "clone", "a", "b"]);
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn regression_clone_of_a_missing_snapshot_names_the_snapshot() {
    // The CLI backend took the last argument as "what" was not found; for
    // copy that was "--instance-only": "copying p-a to p-b: LXD has no
    // --instance-only". The error names the snapshot.
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    let run = env.fail(&["container", "clone", "a", "b", "-s", "nosuch"]);
    assert!(!env.project().containers.contains_key("b"));
    assert!(env.instance("p-b").is_none());
    assert!(
        !run.stderr.contains("--instance-only") && run.stderr.contains("p-a/nosuch"),
        "{}",
        run.stderr
    );
}

#[test]
fn reset_stops_restores_and_starts_only_what_was_running() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.take_requests();
    let run = env.ok(&["container", "reset", "a"]);
    assert_eq!(run.stdout, "Reset a to initial-state (running)\n");
    let bodies: Vec<Value> = env
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.json())
        .collect();
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-a",
            "PUT /1.0/instances/p-a/state",
            "PUT /1.0/instances/p-a",
            "PUT /1.0/instances/p-a/state",
        ])
    );
    assert_eq!(bodies[0]["action"], "stop");
    assert_eq!(bodies[1], json!({"restore": "initial-state"}));
    assert_eq!(bodies[2]["action"], "start");
    assert_eq!(env.instance("p-a").unwrap().restored, ["initial-state"]);
    env.seed_container("b", "img", false);
    env.lxd_snapshot("b", "s1");
    env.take_requests();
    let run = env.ok(&["container", "reset", "b", "s1"]);
    assert_eq!(run.stdout, "Reset b to s1 (stopped)\n");
    let restore = body(&env, "PUT", "/1.0/instances/p-b", 0);
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-b",
            "PUT /1.0/instances/p-b",
        ])
    );
    assert_eq!(restore, json!({"restore": "s1"}));
    assert!(!env.running("p-b"));
    assert!(env
        .project()
        .containers
        .values()
        .all(|c| c.pending.is_none()));
    env.fail(&["container", "reset", "zzz"]);
    env.fail(&["container", "reset", "a", "bad name"]);
    assert_eq!(env.take_calls(), Vec::<String>::new());
}

#[test]
fn regression_reset_to_a_missing_snapshot_leaves_the_container_running() {
    // restore() stopped the container before LXD said the snapshot did not
    // exist, and never started it again; its hint named the LXD name
    // (`ldm container snapshot list p-a`, which is no container).
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.take_requests();
    let run = env.fail(&["container", "reset", "a", "nosuch"]);
    let changes = env.take_changes();
    assert!(env.running("p-a"), "changes: {changes:?}; {}", run.stderr);
    assert_eq!(changes, Vec::<String>::new());
    run.err_has("ldm container snapshot list a`");
}

#[test]
fn snapshots_create_list_delete() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.take_requests();
    let desc = "it's \"quoted\"; $(rm -rf /) `x` ü 雪";
    let run = env.ok(&["container", "snapshot", "create", "a", "s1", "-d", desc]);
    assert_eq!(run.stdout, "Created snapshot s1 of a\n");
    let snap = body(&env, "POST", "/1.0/instances/p-a/snapshots", 0);
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/instances/p-a",
            "POST /1.0/instances/p-a/snapshots",
        ])
    );
    assert_eq!(snap["name"], "s1");
    let s1 = env.project().containers["a"].snapshots["s1"].clone();
    assert_eq!(
        (s1.description.as_str(), s1.pending.is_none()),
        (desc, true)
    );
    env.assert_agree();

    let run = env.ok(&["container", "snapshot", "list", "a"]);
    assert_eq!(
        env.take_calls(),
        lines(&["GET /1.0/instances/p-a/snapshots"])
    );
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert!(
        rows[0].starts_with("NAME")
            && rows[1].starts_with("initial-state")
            && rows[2].starts_with("s1"),
        "{}",
        run.stdout
    );
    assert!(rows[2].trim_end().ends_with(desc), "{}", run.stdout);
    let run = env.ok(&["container", "snapshot", "list", "a", "--json"]);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows[1]["name"], "s1");
    assert_eq!(rows[1]["description"], desc);
    assert_eq!(
        (rows[1]["in_lxd"].as_bool(), rows[1]["recorded"].as_bool()),
        (Some(true), Some(true))
    );
    env.take_requests();

    // Taken name, bad name, unknown container: no request.
    env.fail(&["container", "snapshot", "create", "a", "s1"]);
    env.fail(&["container", "snapshot", "create", "a", "a b"]);
    env.fail(&["container", "snapshot", "create", "zzz", "s9"]);
    env.fail(&["container", "snapshot", "delete", "a", "initial-state"]);
    assert_eq!(env.take_calls(), Vec::<String>::new());
    // LXD fails: the intent is undone, the error carries LXD's message.
    env.double.fail_operation(
        Match::new("POST", "/1.0/instances/*/snapshots").first(1),
        "Create instance snapshot: Failed to create snapshot: out of space",
    );
    let run = env
        .run(&["container", "snapshot", "create", "a", "s2"])
        .fail();
    run.err_has("out of space");
    assert!(!env.project().containers["a"].snapshots.contains_key("s2"));
    assert_eq!(
        env.instance("p-a").unwrap().snapshot_names(),
        ["initial-state", "s1"]
    );
    env.take_requests();

    let run = env.ok(&["container", "snapshot", "delete", "a", "s1"]);
    assert_eq!(run.stdout, "Deleted snapshot s1 of a\n");
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-a",
            "DELETE /1.0/instances/p-a/snapshots/s1",
        ])
    );
    let run = env.fail(&["container", "snapshot", "delete", "a", "s1"]);
    run.err_has("has no snapshot s1");
    env.assert_agree();
}

#[test]
fn list_up_down() {
    let env = Env::new("p");
    let run = env.ok(&["list"]);
    run.out_starts("No containers in project p yet");
    assert_eq!(env.take_calls(), lines(&["GET /1.0/instances"]));
    env.seed_container("a", "img-a", false);
    env.seed_container("gone", "img-g", false);
    env.unseed("p-gone");
    // One this checkout made, lost from the file (an unmarked one is
    // nobody's to note: tests/ownership.rs).
    let mut stray = Instance::running();
    for (k, v) in env.marks("stray") {
        stray = stray.config(&k, &v);
    }
    env.double.seed("default", "p-stray", stray);
    env.double.add_image("default", Image::new("img-g"));
    env.take_requests();

    let run = env.ok(&["up", "a"]);
    // What LXD has decides: start, re-create, or nothing.
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-a",
            "PUT /1.0/instances/p-a/state",
            "GET /1.0/instances/p-a/state",
        ])
    );
    let ip = env.ip("a");
    assert_eq!(run.stdout, format!("a is running at {ip}\n"));
    let run = env.ok(&["list"]);
    // `gone` is NOT FOUND: is it in another LXD project? (tests/lxd_projects.rs)
    let all = env.requests().last().unwrap().query("all-projects");
    assert_eq!(
        env.take_calls(),
        lines(&["GET /1.0/instances", "GET /1.0/instances"])
    );
    assert_eq!(all.as_deref(), Some("true"));
    let expect = format!("NAME  IMAGE  STATUS     IPV4{}PORTS  MOUNTS\na     img-a  RUNNING    {ip}{}-\ngone  img-g  NOT FOUND  -{}-\n", " ".repeat(ip.len() - 2), " ".repeat(9), " ".repeat(ip.len() + 8));
    assert_eq!(run.stdout, expect);
    assert!(run.stderr.contains("p-stray"), "stray note: {}", run.stderr);
    let run = env.ok(&["list", "--json"]);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows[0]["lxd_name"], "p-a");
    assert_eq!(rows[0]["ipv4"], ip.as_str());
    assert_eq!(rows[0]["snapshots"], 1);
    assert!(rows[0].get("pending").is_none());
    assert_eq!(rows[1]["status"], "NOT FOUND");
    env.take_requests();

    // Already running: fine, and the instance's answer had its address.
    let run = env.ok(&["up", "a"]);
    assert_eq!(run.stdout, format!("a is running at {ip}\n"));
    assert_eq!(
        env.take_calls(),
        lines(&["GET /1.0/operations", "GET /1.0/instances/p-a"])
    );
    let run = env.ok(&["down", "a"]);
    assert_eq!(run.stdout, "a is stopped\n");
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-a",
            "PUT /1.0/instances/p-a/state",
        ])
    );
    env.ok(&["down", "a"]); // already stopped: fine
    env.take_requests();
    env.fail(&["up", "zzz"]);
    env.fail(&["down", "zzz"]);
    assert_eq!(env.take_calls(), Vec::<String>::new());
    // LXD lost it: `up` launches it again from the recorded image.
    let run = env.ok(&["up", "gone"]);
    assert!(
        run.stdout
            .starts_with("gone re-created from img-g, running at "),
        "{}",
        run.stdout
    );
    assert!(env.project().containers["gone"].pending.is_none());
    assert!(env.running("p-gone"));
}

#[test]
fn remove_and_project_delete_confirm_or_need_force() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.seed_container("b", "img", false);
    env.take_requests();
    // No terminal, no --force: refused, naming --force, no delete.
    for args in [&["remove", "a"][..], &["rm", "a"]] {
        let run = env.run(args).fail();
        run.err_has("--force");
        assert_eq!(
            env.take_calls(),
            lines(&["GET /1.0/operations", "GET /1.0/instances/p-a"])
        );
    }
    let run = env.fail(&["project", "delete"]);
    run.err_has("--force");
    assert_eq!(env.take_calls(), lines(&["GET /1.0/instances"]));
    assert_eq!(env.project().containers.len(), 2);

    let run = env.ok(&["rm", "-f", "a"]);
    assert_eq!(run.stdout, "Removed a\n");
    let stop = body(&env, "PUT", "/1.0/instances/p-a/state", 0);
    assert_eq!(
        env.take_calls(),
        lines(&[
            "GET /1.0/operations",
            "GET /1.0/instances/p-a",
            "PUT /1.0/instances/p-a/state",
            "DELETE /1.0/instances/p-a",
        ])
    );
    assert_eq!(
        (&stop["action"], &stop["force"]),
        (&json!("stop"), &json!(true))
    );
    assert!(!env.project().containers.contains_key("a") && env.instance("p-a").is_none());
    let run = env.fail(&["remove", "--force", "a"]);
    run.err_has("not in project p");
    env.take_requests();

    // Recorded but gone from LXD, and a second container: project delete takes both.
    env.seed_container("c", "img", true);
    env.unseed("p-c");
    let run = env.ok(&["project", "delete", "-f"]);
    assert_eq!(run.stdout, "Deleted project p\n");
    let calls = env.take_calls();
    assert_eq!(calls[0], "GET /1.0/instances", "{calls:#?}");
    assert!(
        calls.contains(&"DELETE /1.0/instances/p-b".into()),
        "{calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("DELETE") && c != "DELETE /1.0/instances/p-b"),
        "{calls:#?}"
    );
    assert!(env.instances().is_empty());
    // The lock file stays on purpose (Store::destroy): removing a held lock
    // would let two processes each hold "the" lock.
    for f in ["containers.yaml", "containers.log", ".containers.cache"] {
        assert!(!env.dir.join(f).exists(), "{f} left behind");
    }
}

#[test]
fn user_input_reaches_lxd_as_single_values_or_stdin() {
    let env = Env::new("p");
    env.double.state().behaviour.images_on_demand = true;
    let password = "pa ss'\"; $(touch /tmp/pwned) `id` ü";
    env.ok(&["config", "set", "defaults.user.password", password]);
    assert_eq!(
        env.take_calls(),
        Vec::<String>::new(),
        "config set asks LXD nothing"
    );
    let image = "my image;$(id) 'q' ü";
    let run = env.ok(&["container", "create", "dev", image]);
    assert!(
        run.stdout.contains(&format!("password:  {password}")),
        "{}",
        run.stdout
    );
    let launch = body(&env, "POST", "/1.0/instances", 0);
    assert_eq!(launch["source"]["alias"], image, "the image is one value");
    let setup = env
        .execs()
        .into_iter()
        .find(|e| e.command[2].contains("chpasswd"))
        .expect("the setup step");
    assert_hashed(&String::from_utf8_lossy(&setup.stdin), "dev", password);
    for r in env.requests() {
        let text = match &r.body {
            Body::Json(v) => v.to_string(),
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Body::Empty => String::new(),
        };
        assert!(!text.contains("pwned"), "clear password sent: {}", r.line());
    }
    for e in env.execs() {
        assert!(
            !String::from_utf8_lossy(&e.stdin).contains("pwned"),
            "clear password sent: {e:?}"
        );
    }
    assert_eq!(env.project().containers["dev"].image, image);
}

/// Calls per command (requests but the waits for ldm's own operations and
/// an exec's websockets, which one client call makes inside), ldm against
/// the Go tool's client calls (reference table). Each client call is at
/// least one request.
#[test]
fn call_counts() {
    let env = Env::new("p");
    env.double.state().behaviour.images_on_demand = true;
    let mut rows: Vec<(&str, usize, usize)> = Vec::new();
    let mut count = |label, go, args: &[&str]| {
        env.run(args).ok();
        rows.push((label, env.take_calls().len(), go));
    };
    count("container create", 9, &["container", "create", "a", "img"]);
    count("container clone", 7, &["container", "clone", "a", "b"]);
    count("container reset (running)", 7, &["container", "reset", "a"]);
    count(
        "container snapshot create",
        3,
        &["container", "snapshot", "create", "a", "s1"],
    );
    count(
        "container snapshot list",
        2,
        &["container", "snapshot", "list", "a"],
    );
    count(
        "container snapshot delete",
        3,
        &["container", "snapshot", "delete", "a", "s1"],
    );
    count("list", 1, &["list"]);
    count("down", 4, &["down", "a"]);
    count("up", 4, &["up", "a"]);
    count("remove -f", 4, &["remove", "-f", "b"]);
    count(
        "container clone (3rd)",
        7,
        &["container", "clone", "a", "c"],
    );
    count(
        "project delete -f (2 containers)",
        6,
        &["project", "delete", "-f"],
    );
    eprintln!("\n{:<34} {:>4} {:>4}", "command", "ldm", "Go");
    for (label, ldm, go) in &rows {
        eprintln!("{label:<34} {ldm:>4} {go:>4}");
    }
    for (label, ldm, go) in &rows {
        assert!(
            ldm <= go,
            "{label}: ldm makes {ldm} calls, the Go tool {go} client calls"
        );
    }
}
