//! An LXD client whose current project is not `default` (`lxc project
//! switch dev`): every client command works in that project except
//! `query`, which reads the project its path names. ldm asks the client
//! which project is current, once per run, and names it in every query.
//! Against the LXD client TEST DOUBLE (tests/lxd_double/lxc, knob
//! `LDM_DOUBLE_PROJECT`), asserting the exact calls it recorded.

mod double;

use std::collections::BTreeMap;

use double::{all_projects_query, argv, is_project_list, Env};

const DEV: [(&str, &str); 1] = [("LDM_DOUBLE_PROJECT", "dev")];

fn queries(argvs: &[Vec<String>]) -> Vec<&str> {
    argvs
        .iter()
        .filter(|a| a[0] == "query")
        .map(|a| a.last().unwrap().as_str())
        .collect()
}

#[test]
fn regression_commands_find_their_containers_in_the_current_lxd_project() {
    // Seen on LXD 5.0.2 with `lxc project switch ptest`: create waited 30 s
    // for an address it never saw, `down` said "not in LXD" and left the
    // container running, `up` said it re-created it. Its queries read the
    // default project, where the container is not.
    let env = Env::new("p");
    let run = env.run_env(&["container", "create", "dev", "img", "--no-mount"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ip = env.ip("dev");
    assert!(
        run.stdout.contains(&format!("IPv4:      {ip}")),
        "{}",
        run.stdout
    );
    assert_eq!(env.instances()["p-dev"]["project"], "dev");

    let run = env.run_env(&["down"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("dev: is stopped"), "{}", run.stdout);
    assert_eq!(env.instances()["p-dev"]["status"], "Stopped");

    let run = env.run_env(&["up", "dev"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("dev is running at {ip}")),
        "{}",
        run.stdout
    );
    let run = env.run_env(&["doctor"], &DEV);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("the project and LXD agree"),
        "{}",
        run.stdout
    );

    let argvs = env.take_argvs();
    assert_eq!(
        argvs.iter().filter(|a| a[0] == "launch").count(),
        1,
        "up re-created what it did not see: {argvs:#?}"
    );
    let q = queries(&argvs);
    assert!(!q.is_empty());
    for path in q {
        assert!(
            path.ends_with("?project=dev") || path.ends_with("&project=dev"),
            "{path}"
        );
    }
    env.assert_agree();
}

#[test]
fn the_current_project_is_asked_once_per_run_before_its_first_query() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.seed_container("b", "img", false);
    env.seed_container("c", "img", true);
    let mut st = env.state();
    let instances = st["instances"].as_object_mut().unwrap();
    for inst in instances.values_mut() {
        inst["project"] = "dev".into();
    }
    // LXD lost c: `up` re-creates it, with a client of its own.
    instances.remove("p-c");
    std::fs::write(env.dd.join("state.json"), st.to_string()).unwrap();
    env.take_all_calls();
    for args in [
        &["up"][..],
        &["down", "a"],
        &["list"],
        &["container", "snapshot", "create", "a", "s1"],
    ] {
        env.run_env(args, &DEV).expect(0);
    }
    let mut runs: BTreeMap<u32, Vec<Vec<String>>> = BTreeMap::new();
    for c in env.take_all_calls() {
        runs.entry(c.ppid).or_default().push(c.argv);
    }
    assert_eq!(runs.len(), 4, "{runs:#?}");
    for argvs in runs.values() {
        let asked: Vec<usize> = (0..argvs.len())
            .filter(|&i| is_project_list(&argvs[i]))
            .collect();
        match argvs.iter().position(|a| a[0] == "query") {
            Some(first) => {
                assert_eq!(asked.len(), 1, "{argvs:#?}");
                assert!(asked[0] < first, "{argvs:#?}");
                assert_eq!(
                    argvs[asked[0]],
                    argv(&["project", "list", "--format", "csv"])
                );
            }
            // `list` and the like: the client applies the project itself.
            None => assert!(asked.is_empty(), "{argvs:#?}"),
        }
    }
}

#[test]
fn in_the_default_project_queries_name_no_project() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.take_all_calls();
    env.ok(&["up", "a"]);
    let argvs = env.take_argvs();
    let q = queries(&argvs);
    assert!(!q.is_empty());
    assert!(q.iter().all(|p| !p.contains("project=")), "{q:?}");
}

#[test]
fn a_remote_is_asked_for_its_own_current_project() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    let mut st = env.state();
    st["instances"]["p-a"]["project"] = "dev".into();
    std::fs::write(env.dd.join("state.json"), st.to_string()).unwrap();
    env.ok(&["config", "set", "remote", "shared"]);
    env.take_all_calls();
    let run = env.run_env(&["up", "a"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = env.take_all_calls();
    assert_eq!(
        calls[0].argv,
        argv(&["project", "list", "--format", "csv", "--", "shared:"])
    );
    assert!(
        calls[1].argv.last().unwrap().starts_with("shared:/1.0/")
            && calls[1].argv.last().unwrap().ends_with("project=dev"),
        "{:?}",
        calls[1].argv
    );
}

/// What ldm says of container `a` (p-a) when LXD project dev has it and
/// the client's current project is `default`.
const AWAY: &str = "LXD project dev has an instance named p-a, and the client's current project has none; if it is this container, switch back with `lxc project switch dev`; if not, delete or rename it there";

/// A project with container `a`, made while the client's current LXD
/// project was dev; the calls so far forgotten.
fn made_in_dev() -> Env {
    let env = Env::new("p");
    env.run_env(&["container", "create", "a", "img", "--no-mount"], &DEV)
        .expect(0);
    env.take_all_calls();
    env
}

/// p-a is still the one instance, in project dev, running (the double
/// keys instances by name: a second p-a made in `default` would replace
/// it, so its project tells).
fn assert_a_untouched(env: &Env) {
    let inst = env.instances();
    assert_eq!(inst.len(), 1, "{inst:?}");
    assert_eq!(inst["p-a"]["project"], "dev");
    assert_eq!(inst["p-a"]["status"], "Running");
    assert!(env.project().containers.contains_key("a"));
}

#[test]
fn regression_up_does_not_re_create_a_container_another_lxd_project_has() {
    // After `lxc project switch`, the project's containers are "not in LXD"
    // in the new current project; `up` re-created them there, a second
    // instance of each beside the first.
    let env = made_in_dev();
    // The client's current project is now `default`.
    let run = env.ok(&["up", "--dry-run"]);
    assert_eq!(
        run.stdout,
        format!("a: cannot: is not in LXD's current project: {AWAY}\n")
    );
    let run = env.run(&["up"]).expect(1);
    assert!(
        run.stdout.starts_with(&format!(
            "a: failed: container a is not in LXD's current project: {AWAY}"
        )),
        "{}",
        run.stdout
    );
    run.err_has("1 of 1 containers failed: a");
    let argvs = env.take_argvs();
    assert!(argvs.iter().all(|a| a[0] != "launch"), "{argvs:#?}");
    assert!(argvs.contains(&all_projects_query()), "{argvs:#?}");
    assert_a_untouched(&env);
    let run = env.ok(&["list"]);
    assert!(run.stdout.contains("NOT FOUND"), "{}", run.stdout);
    run.err_has(&format!("note: a is NOT FOUND: {AWAY}"));
    // Switched back: all is well, and nothing is asked of other projects.
    env.take_all_calls();
    let run = env.run_env(&["up"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let argvs = env.take_argvs();
    assert!(
        argvs.iter().all(|a| !a.concat().contains("all-projects")),
        "{argvs:#?}"
    );
}

#[test]
fn regression_down_remove_and_project_delete_do_not_pass_over_a_container_another_lxd_project_has()
{
    // `down` said "a is not in LXD" and exited 0 with p-a running in dev;
    // `remove -f` and `project delete -f` forgot it, leaving p-a behind.
    let env = made_in_dev();
    for args in [&["down"][..], &["down", "a"]] {
        let run = env.run(args).expect(1);
        assert!(
            run.stdout.contains(&format!(
                "container a is not in LXD's current project: {AWAY}"
            )) || run.stderr.contains(&format!(
                "container a is not in LXD's current project: {AWAY}"
            )),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }
    let run = env.run(&["remove", "-f", "a"]).expect(1);
    run.err_has(&format!(
        "p-a is not in LXD's current project: {AWAY}; nothing was changed"
    ));
    // Refused before its intent: nothing shows as interrupted.
    let a = &env.project().containers["a"];
    assert!(a.pending.is_none(), "{:?}", a.pending);
    let run = env.run(&["project", "delete", "-f"]).expect(1);
    run.err_has(&format!(
        "p-a is not in LXD's current project: {AWAY}; nothing was removed"
    ));
    assert!(env.dir.join("containers.yaml").exists());
    assert_a_untouched(&env);
    // Other commands name the project too.
    let run = env.run(&["ssh", "a", "--", "true"]).expect(1);
    run.err_has(&format!("p-a is not in LXD's current project: {AWAY}"));
}

#[test]
fn regression_a_failed_project_list_is_not_read_as_a_missing_instance() {
    // `project list` failing with "not found" in its message was typed as
    // "LXD has no instance": `down a` said "a is not in LXD" and exited 0.
    let env = made_in_dev();
    let fail = [
        ("LDM_DOUBLE_PROJECT", "dev"),
        ("LDM_DOUBLE_FAIL", "project=Error: Project not found"),
    ];
    let run = env.run_env(&["down", "a"], &fail).expect(1);
    run.err_has("error: reading the state of p-a: `");
    run.err_has("/lxc project list --format csv` failed (exit 1): Error: Project not found");
    assert!(!run.stdout.contains("not in LXD"), "{}", run.stdout);
    assert_a_untouched(&env);
}

#[test]
fn regression_doctor_fix_keeps_a_container_another_lxd_project_has() {
    // `doctor --fix` forgot every container "LXD has no instance" of: after
    // an `lxc project switch`, that was all of them.
    let env = made_in_dev();
    let run = env.run(&["doctor", "--fix"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "recorded, but not in LXD's current project: {AWAY}"
        )),
        "{}",
        run.stdout
    );
    assert_a_untouched(&env);
    let run = env.run_env(&["doctor"], &DEV);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn regression_umount_snapshot_delete_and_a_resumed_create_leave_another_lxd_project_s_container_alone(
) {
    // After `lxc project switch`: `umount` and `snapshot delete` took LXD's
    // "not found" for "gone already" and recorded the removal, the device
    // and snapshot staying in dev; resuming an interrupted create launched
    // a second instance; `remove` of a container with an interrupted
    // create wiped that mark.
    let env = Env::new("p");
    // Run as root, ldm mounts a user's folder only, never root's.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&env.dir, Some(1000), Some(1000)).unwrap();
    }
    env.run_env(&["container", "create", "a", "img"], &DEV)
        .expect(0);
    env.run_env(&["container", "snapshot", "create", "a", "s1"], &DEV)
        .expect(0);
    let fail = [
        ("LDM_DOUBLE_PROJECT", "dev"),
        ("LDM_DOUBLE_FAIL", "snapshot"),
    ];
    env.run_env(&["container", "create", "b", "img", "--no-mount"], &fail)
        .expect(1);
    let mark = env.project().containers["b"].pending.clone();
    assert!(mark.is_some());
    let before = env.state()["instances"].clone();
    env.take_all_calls();

    let run = env.run(&["umount", "a", "/home/dev/p"]).expect(1);
    run.err_has("p-a is not in LXD's current project: LXD project dev has an instance named p-a");
    let run = env
        .run(&["container", "snapshot", "delete", "a", "s1"])
        .expect(1);
    run.err_has("p-a is not in LXD's current project: LXD project dev has an instance named p-a");
    let run = env.run(&["remove", "-f", "b"]).expect(1);
    run.err_has("p-b is not in LXD's current project: LXD project dev has an instance named p-b");
    let run = env.run(&["container", "create", "b", "img"]).expect(1);
    run.err_has("p-b is not in LXD's current project: LXD project dev has an instance named p-b");

    let argvs = env.take_argvs();
    assert!(
        argvs.iter().all(|a| a[0] == "query"),
        "only questions were asked: {argvs:#?}"
    );
    assert_eq!(env.state()["instances"], before);
    let p = env.project();
    assert_eq!(p.containers["a"].mounts.len(), 1);
    assert!(p.containers["a"].snapshots.contains_key("s1"));
    assert!(p.containers["a"].pending.is_none());
    // Still an interrupted create (the refused resume took it over, as a
    // resume does, and stopped before asking LXD for anything).
    let kind = |m: &Option<ldm::model::Pending>| m.as_ref().map(|p| p.op.clone());
    assert_eq!(kind(&p.containers["b"].pending), kind(&mark));
}

/// Issue 25, item 17: a lookup that found its instance missing, and could
/// not ask LXD for the other projects, dropped that error silently; DESIGN
/// promises a note, as the instance may well be in another project.
#[test]
fn regression_a_failed_look_in_other_projects_is_said() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    let mut st = env.state();
    st["instances"].as_object_mut().unwrap().remove("p-a");
    std::fs::write(env.dd.join("state.json"), st.to_string()).unwrap();
    let queries = env.state()["counts"]["query"].as_u64().unwrap_or(0);
    // ssh's instance query, then the look in every project, which fails.
    let fail = format!("query#{}", queries + 2);
    let run = env.run_env(&["ssh", "a"], &[("LDM_DOUBLE_FAIL", &fail)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.err_has("could not look for the missing containers in other LXD projects");
    run.err_has("LXD has no instance p-a");
}
