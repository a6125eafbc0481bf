//! Commands that act on an existing instance wait for LXD's operation on it
//! instead of failing "busy" (issue 13): kill a `container create` a second
//! in with Ctrl+C, and LXD goes on creating the instance on the server for
//! seconds; a `remove -f` run at once used to fail with "LXD is still busy".
//! Against the API TEST DOUBLE: [`Double::busy`] starts an operation that
//! holds the instance (as the server side of a killed command), and LXD
//! refuses what the instance's operation lock refuses (stop, start,
//! restore, update, delete) while it runs.

mod common;

use std::time::Duration;

use common::api::Env;
use lxd_double::{Action, Hold, Match};

const WAITING: &str = "waiting for LXD to finish an operation on";

/// An operation holding `p-NAME` for `t`, as a killed create leaves on the
/// server; returns its id.
fn held(env: &Env, c: &str, t: Duration) -> String {
    env.double
        .busy("default", &env.lxd(c), Action::Create, Hold::For(t))
}

/// The waits by id for operation `op` in `lines`.
fn waits_for(lines: &[String], op: &str) -> usize {
    let wait = format!("GET /1.0/operations/{op}/wait");
    lines.iter().filter(|l| **l == wait).count()
}

/// Panics unless `lines` has `call` `n` times, the last after a wait for
/// `op` by id and any other before it.
fn after_the_wait(lines: &[String], op: &str, call: &str, n: usize) {
    let wait = format!("GET /1.0/operations/{op}/wait");
    let calls: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == call).collect();
    assert_eq!(calls.len(), n, "{call} {n} times: {lines:#?}");
    let waited = lines.iter().position(|l| *l == wait);
    assert!(
        waited.is_some_and(|w| calls[..n - 1].iter().all(|&c| c < w) && w < calls[n - 1]),
        "{call} after waiting for {op}: {lines:#?}"
    );
}

/// Panics unless `lines` has `call` once, after a wait for `op` by id.
fn once_after_the_wait(lines: &[String], op: &str, call: &str) {
    after_the_wait(lines, op, call, 1);
}

#[test]
fn remove_waits_for_lxd_to_finish_an_interrupted_create() {
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    env.take_requests();
    let op = held(&env, "dev", Duration::from_millis(1500));
    let run = env.run(&["remove", "-f", "dev"]).ok();
    assert_eq!(run.stdout, "Removed dev\n");
    // One progress line, naming the instance and what LXD does.
    assert_eq!(run.stderr.matches(WAITING).count(), 1, "{}", run.stderr);
    run.err_has(
        "waiting for LXD to finish an operation on p-dev (Creating instance; started by an interrupted ldm?) ...",
    );
    // It waits for that operation by id, then deletes (once).
    once_after_the_wait(&env.take_lines(), &op, "DELETE /1.0/instances/p-dev");
    assert!(env.project().containers.is_empty());
    env.assert_agree();
}

/// State to start from, command, (method, path) of the request that
/// acts, whether ldm waits before it.
type Case<'a> = (&'a [&'a str], Vec<&'a str>, (&'a str, &'a str), bool);

#[test]
fn every_command_on_an_existing_instance_waits_and_says_so_unless_q() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    for (i, quiet) in [false, true].into_iter().enumerate() {
        let (snap, img, copy) = (format!("s{i}"), format!("img{i}"), format!("b{i}"));
        let snap_path = format!("/1.0/instances/p-a/snapshots/{snap}");
        // (state to start from, command, the request that acts, whether
        // ldm waits before it). LXD 5.0.2 takes the instance's operation
        // lock to stop, start, restore and delete it, not to snapshot,
        // publish or copy it (lxd/instance/drivers/driver_lxc.go): ldm
        // waits for the holder before a stop, start, restore or delete
        // (of the instance or a snapshot; a publish stops first), and after a refusal of the
        // others (here refused once by a knob, the holder running).
        let cases: Vec<Case> = vec![
            (
                &["up", "a"],
                vec!["down", "a"],
                ("PUT", "/1.0/instances/p-a/state"),
                true,
            ),
            (
                &["down", "a"],
                vec!["up", "a"],
                ("PUT", "/1.0/instances/p-a/state"),
                true,
            ),
            (
                &[],
                vec!["container", "reset", "a"],
                ("PUT", "/1.0/instances/p-a"),
                true,
            ),
            (
                &[],
                vec!["container", "snapshot", "create", "a", &snap],
                ("POST", "/1.0/instances/p-a/snapshots"),
                false,
            ),
            (
                &[],
                vec!["container", "snapshot", "delete", "a", &snap],
                ("DELETE", &snap_path),
                true,
            ),
            (
                &[],
                vec!["image", "create", "a", &img],
                ("POST", "/1.0/images"),
                true,
            ),
            (
                &[],
                vec!["container", "clone", "a", &copy],
                ("POST", "/1.0/instances"),
                false,
            ),
        ];
        for (before, mut args, (method, path), first) in cases {
            if !before.is_empty() {
                env.ok(before);
            }
            if quiet {
                args.insert(0, "-q");
            }
            let op = held(&env, "a", Duration::from_millis(800));
            if !first {
                env.double.fail_operation(
                    Match::new(method, path).first(1),
                    "Instance is busy running a \"create\" operation",
                );
            }
            env.take_requests();
            let run = env.run(&args).ok();
            assert_eq!(
                run.stderr.contains(WAITING),
                !quiet,
                "{args:?}: {}",
                run.stderr
            );
            let call = format!("{method} {path}");
            after_the_wait(&env.take_lines(), &op, &call, if first { 1 } else { 2 });
            assert!(env.double.wait_idle(Duration::from_secs(5)));
        }
        // The clone goes, waiting as well.
        let op = held(&env, &copy, Duration::from_millis(800));
        let args = if quiet {
            vec!["-q", "remove", "-f", &copy]
        } else {
            vec!["remove", "-f", &copy]
        };
        let run = env.run(&args).ok();
        assert_eq!(run.stderr.contains(WAITING), !quiet, "{}", run.stderr);
        let delete = format!("DELETE /1.0/instances/p-{copy}");
        once_after_the_wait(&env.take_lines(), &op, &delete);
    }
    held(&env, "a", Duration::from_millis(800));
    let run = env.run(&["project", "delete", "-f"]).ok();
    run.err_has(WAITING);
    assert!(
        !env.dir.join("containers.yaml").exists(),
        "project delete finished"
    );
    assert!(env.instances().is_empty());
}

#[test]
fn the_wait_is_bounded_by_timeout_and_then_says_busy() {
    let env = Env::new("p");
    env.seed_container("dev", "img", false);
    let op = env
        .double
        .busy("default", "p-dev", Action::Create, Hold::UntilReleased);
    env.take_requests();
    let run = env.run(&["remove", "-f", "dev", "--timeout", "1.5"]).fail();
    assert!(run.took < Duration::from_secs(10), "{:?}", run.took);
    run.err_has("p-dev is busy: LXD is still running another operation on it");
    run.err_has("--timeout");
    let lines = env.take_lines();
    assert!(waits_for(&lines, &op) >= 1, "waited by id: {lines:#?}");
    assert_eq!(
        env.take_changes(),
        Vec::<String>::new(),
        "nothing done while LXD holds it"
    );
    // ldm waits before it records the remove: at the timeout nothing was
    // done, and the project still records dev as it was (the CLI backend,
    // which tried first, left an interrupted remove here).
    let p = env.project();
    assert!(p.containers["dev"].pending.is_none(), "{p:?}");
    assert!(env.in_lxd("dev"));
    // --timeout 0: one try, no wait.
    env.take_requests();
    let run = env.run(&["remove", "-f", "dev", "--timeout", "0"]).fail();
    assert!(!run.stderr.contains(WAITING), "{}", run.stderr);
    let lines = env.take_lines();
    assert_eq!(waits_for(&lines, &op), 0, "{lines:#?}");
    // Once LXD is done, the same command finishes.
    env.double.release_operation(&op);
    assert!(env.double.wait_idle(Duration::from_secs(5)));
    env.ok(&["remove", "-f", "dev"]);
    assert!(env.project().containers.is_empty());
    env.assert_agree();
}

#[test]
fn regression_remove_right_after_a_killed_create_waits_for_lxd_s_create() {
    // Seen on LXD 5.0.2: `container create k` killed 1.2 s in, then at once
    // `remove -f k` said "Removed k", and a moment later LXD finished the
    // killed launch: the instance was there, the project did not record it.
    // LXD says "not found" while it is still creating the instance; its
    // operations say what it is doing.
    let env = Env::new("p");
    env.seed_container("k", "img", true);
    let inst = env.instance("p-k").unwrap();
    env.double
        .state()
        .projects
        .get_mut("default")
        .unwrap()
        .instances
        .remove("p-k");
    let op = env
        .double
        .creating("default", "p-k", inst, Hold::For(Duration::from_secs(2)));
    env.take_requests();
    let run = env.ok(&["remove", "-f", "k"]);
    run.err_has("waiting for LXD to finish an operation on p-k (Creating instance; started by an interrupted ldm?) ...");
    // Nothing is asked of p-k (404 then) before LXD's create ended.
    let lines = env.take_lines();
    once_after_the_wait(&lines, &op, "GET /1.0/instances/p-k");
    once_after_the_wait(&lines, &op, "DELETE /1.0/instances/p-k");
    assert!(env.double.wait_idle(Duration::from_secs(5)));
    assert!(env.instances().is_empty(), "{:?}", env.instances().keys());
    assert!(env.project().containers.is_empty());
    env.assert_agree();
}
