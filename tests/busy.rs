//! Commands that act on an existing instance wait for LXD's operation on it
//! instead of failing "busy" (issue 13): kill a `container create` a second
//! in with Ctrl+C, and LXD goes on creating the instance on the server for
//! seconds; a `remove -f` run at once used to fail with "LXD is still busy".
//! The LXD client TEST DOUBLE's `LDM_DOUBLE_BUSY="VERB=N"` makes the first N
//! calls of VERB fail with LXD 5.0's operation-lock message.

mod double;

use double::{all_projects_query, argv, query, Env};

const WAITING: &str = "waiting for LXD to finish an operation on";

/// How many calls of `verb` the double recorded since the last take.
fn count(env: &Env, verb: &str) -> usize {
    env.take_argvs().iter().filter(|a| a[0] == verb).count()
}

#[test]
fn remove_waits_for_lxd_to_finish_an_interrupted_create() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let busy = [("LDM_DOUBLE_BUSY", "delete=2")];
    let run = env.run_env(&["remove", "-f", "dev"], &busy).expect(0);
    assert_eq!(run.stdout, "Removed dev\n");
    // One progress line, naming the instance, however many retries.
    assert_eq!(run.stderr.matches(WAITING).count(), 1, "{}", run.stderr);
    run.err_has(
        "waiting for LXD to finish an operation on p-dev (started by an interrupted ldm?) ...",
    );
    let deletes: Vec<_> = env
        .take_argvs()
        .into_iter()
        .filter(|a| a[0] == "delete")
        .collect();
    assert_eq!(
        deletes,
        vec![argv(&["delete", "--force", "--", "p-dev"]); 3]
    );
    assert!(env.project().containers.is_empty());
    env.assert_agree();
}

#[test]
fn every_command_on_an_existing_instance_waits_and_says_so_unless_q() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    for (i, quiet) in [false, true].into_iter().enumerate() {
        let (snap, img, copy) = (format!("s{i}"), format!("img{i}"), format!("b{i}"));
        // (state to start from, command, verb LXD refuses once as busy).
        let cases: Vec<(&[&str], Vec<&str>, &str)> = vec![
            (&["up", "a"], vec!["down", "a"], "stop"),
            (&["down", "a"], vec!["up", "a"], "start"),
            (&[], vec!["container", "reset", "a"], "restore"),
            (
                &[],
                vec!["container", "snapshot", "create", "a", &snap],
                "snapshot",
            ),
            (
                &[],
                vec!["container", "snapshot", "delete", "a", &snap],
                "delete",
            ),
            (&[], vec!["image", "create", "a", &img], "snapshot"),
            (&[], vec!["container", "clone", "a", &copy], "copy"),
            (&[], vec!["remove", "-f", &copy], "delete"),
        ];
        for (before, mut args, verb) in cases {
            if !before.is_empty() {
                env.ok(before);
            }
            env.take_calls();
            if quiet {
                args.insert(0, "-q");
            }
            // The next call of the verb is refused once.
            let next = 1 + env.state()["counts"][verb].as_u64().unwrap_or(0);
            let knob = format!("{verb}={next}");
            let run = env.run_env(&args, &[("LDM_DOUBLE_BUSY", &knob)]).expect(0);
            assert_eq!(
                run.stderr.contains(WAITING),
                !quiet,
                "{args:?}: {}",
                run.stderr
            );
            assert_eq!(
                count(&env, verb),
                2,
                "{args:?}: one refused call, one retry"
            );
        }
    }
    let next = 1 + env.state()["counts"]["delete"].as_u64().unwrap_or(0);
    let knob = format!("delete={next}");
    let run = env.run_env(&["project", "delete", "-f"], &[("LDM_DOUBLE_BUSY", &knob)]);
    run.expect(0).err_has(WAITING);
    assert!(
        !env.dir.join("containers.yaml").exists(),
        "project delete finished"
    );
    assert!(env.instances().is_empty());
}

#[test]
fn the_wait_is_bounded_by_timeout_and_then_says_busy() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    let busy = [("LDM_DOUBLE_BUSY", "delete=1000")];
    let run = env.run_env(&["remove", "-f", "dev", "--timeout", "1.5"], &busy);
    let run = run.expect(1);
    assert!(run.elapsed.as_secs_f64() < 10.0, "{:?}", run.elapsed);
    run.err_has("p-dev is busy: LXD is still running another operation on it");
    run.err_has("--timeout");
    let deletes = count(&env, "delete");
    assert!(
        (2..20).contains(&deletes),
        "{deletes} delete calls in 1.5 s"
    );
    // The intent stays: the project shows the remove as interrupted.
    let run = env.ok(&["list"]);
    assert!(
        run.stdout.contains("REMOVING (interrupted)"),
        "{}",
        run.stdout
    );
    // --timeout 0: one try, no wait.
    let run = env
        .run_env(&["remove", "-f", "dev", "--timeout", "0"], &busy)
        .expect(1);
    assert!(!run.stderr.contains(WAITING), "{}", run.stderr);
    assert_eq!(count(&env, "delete"), 1);
    // Once LXD is done, the same command finishes.
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
    let mut st = env.state();
    st["instances"].as_object_mut().unwrap().remove("p-k");
    st["creating"] = serde_json::json!({"p-k": 3});
    std::fs::write(env.dd.join("state.json"), st.to_string()).unwrap();
    let run = env.ok(&["remove", "-f", "k"]);
    run.err_has("waiting for LXD to finish an operation on p-k (Creating instance; started by an interrupted ldm?) ...");
    let ops = argv(&["query", "--", "/1.0/operations?recursion=1"]);
    let del = argv(&["delete", "--force", "--", "p-k"]);
    assert_eq!(
        env.take_argvs(),
        vec![
            // LXD says it has no p-k (yet): is it in another LXD project?
            query("p-k"),
            all_projects_query(),
            del.clone(),
            ops.clone(),
            del.clone(),
            ops.clone(),
            del.clone(),
            ops,
            del
        ]
    );
    assert!(env.instances().is_empty(), "{:?}", env.instances());
    assert!(env.project().containers.is_empty());
    env.assert_agree();
}
