//! `ldm project rename NEW` (issue 23): a checkout takes a project name of
//! its own, and its own instances are renamed in LXD with it (stopped,
//! renamed, marked, started again as they were). Against the API test
//! double with the real `ldm` binary. A rename that fails or is killed half
//! way shows `RENAMING (interrupted)`, and running it again finishes it.

mod common;

use std::process::Stdio;

use common::api::{canonical, Env};
use lxd_double::{HangAt, Image, Instance, Match};

/// Folder `a` of one user, and an LXD double with the image `ldm-debian`.
fn new_env() -> Env {
    let env = Env::empty();
    std::fs::create_dir_all(env.folder("a")).unwrap();
    env.double.add_image("default", Image::new("ldm-debian"));
    env
}

/// A project `p` in folder `a` with container `dev` made by ldm (running)
/// and `web` (stopped, with a snapshot of its own).
fn two_containers() -> Env {
    let env = new_env();
    env.run_in("a", &["create", "--name", "p"]).ok();
    for name in ["dev", "web"] {
        env.run_in(
            "a",
            &["container", "create", name, "ldm-debian", "--no-mount"],
        )
        .ok();
    }
    env.run_in("a", &["container", "snapshot", "create", "web", "s1"])
        .ok();
    env.run_in("a", &["down", "web"]).ok();
    assert!(env.running("p-dev") && !env.running("p-web"));
    env
}

fn project_of(env: &Env, folder: &str) -> String {
    let text = std::fs::read_to_string(env.folder(folder).join("containers.yaml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("project:"))
        .unwrap_or_else(|| panic!("no project: {text}"));
    line["project:".len()..].trim().to_string()
}

fn marks(env: &Env, name: &str) -> (String, String, String) {
    let c = env.instance(name).unwrap().config;
    let get = |k: &str| c.get(k).cloned().unwrap_or_default();
    (
        get("user.ldm.project"),
        get("user.ldm.container"),
        get("user.ldm.folder"),
    )
}

/// The instances renamed keep their state (running or stopped), their
/// snapshots and their checkout, and their marks name the new project.
#[test]
fn a_project_with_a_running_and_a_stopped_container_is_renamed_in_lxd() {
    let env = two_containers();
    let checkout = env.instance("p-dev").unwrap().config["user.ldm.checkout"].clone();
    let r = env.run_in("a", &["project", "rename", "q"]).ok();
    assert!(r.stdout.contains("Renamed project p to q"), "{r:#?}");
    assert!(r.stderr.contains("p-dev is now q-dev"), "{r:#?}");
    assert_eq!(project_of(&env, "a"), "q");
    assert!(env.instance("p-dev").is_none() && env.instance("p-web").is_none());
    assert!(env.running("q-dev"), "running before, running after");
    assert!(!env.running("q-web"), "stopped before, stopped after");
    let folder = canonical(&env.folder("a"));
    assert_eq!(
        marks(&env, "q-dev"),
        ("q".into(), "dev".into(), folder.clone())
    );
    assert_eq!(marks(&env, "q-web"), ("q".into(), "web".into(), folder));
    assert_eq!(
        env.instance("q-dev").unwrap().config["user.ldm.checkout"],
        checkout
    );
    let names: Vec<String> = env.instance("q-web").unwrap().snapshot_names();
    assert!(names.contains(&"s1".to_string()), "{names:?}");
    // The project goes on under its new name.
    let list = env.run_in("a", &["list"]).ok();
    let rows: Vec<&str> = list.stdout.lines().skip(1).collect();
    assert!(
        rows[0].starts_with("dev ") && rows[0].contains("RUNNING"),
        "{list:#?}"
    );
    assert!(
        rows[1].starts_with("web ") && rows[1].contains("STOPPED"),
        "{list:#?}"
    );
    env.run_in("a", &["up", "web"]).ok();
    assert!(env.running("q-web"));
    env.run_in("a", &["container", "reset", "web", "s1"]).ok();
    env.run_in("a", &["doctor"]).ok();
    // Once more is nothing to do.
    let again = env.run_in("a", &["project", "rename", "q"]).ok();
    assert!(again.stdout.contains("named q already"), "{again:#?}");
}

/// The second checkout of issue 23's first finding: told whose `p-dev`
/// is and offered the command, it takes a name of its own, renames
/// nothing of the first's, and makes its own container beside it.
#[test]
fn a_copy_renamed_with_the_command_makes_its_own_containers_beside_the_firsts() {
    let env = new_env();
    env.run_in("a", &["create", "--name", "p"]).ok();
    env.run_in(
        "a",
        &["container", "create", "dev", "ldm-debian", "--no-mount"],
    )
    .ok();
    env.copy("a", "b");
    let refused = env.run_in("b", &["up"]).code(1);
    assert!(
        refused.stdout.contains("`ldm project rename b`"),
        "{refused:#?}"
    );
    let first = marks(&env, "p-dev");

    let r = env.run_in("b", &["project", "rename", "b"]).ok();
    assert!(r.stderr.contains("left LXD's p-dev alone"), "{r:#?}");
    assert_eq!(project_of(&env, "b"), "b");
    assert_eq!(project_of(&env, "a"), "p");
    assert!(env.running("p-dev"));
    assert_eq!(
        marks(&env, "p-dev"),
        first,
        "the first's instance is untouched"
    );

    env.run_in("b", &["up"]).ok();
    assert!(env.running("b-dev") && env.running("p-dev"));
    assert_eq!(
        marks(&env, "b-dev"),
        ("b".into(), "dev".into(), canonical(&env.folder("b")))
    );
    env.run_in("a", &["down", "dev"]).ok();
    assert!(!env.running("p-dev") && env.running("b-dev"));
    env.run_in("a", &["doctor"]).ok();
    env.run_in("b", &["doctor"]).ok();
}

/// A name LXD has for another instance is refused before anything changes.
#[test]
fn a_taken_name_is_refused_and_nothing_changes() {
    let env = two_containers();
    env.double.seed("default", "q-web", Instance::stopped());
    let before = std::fs::read(env.folder("a").join("containers.yaml")).unwrap();
    let r = env.run_in("a", &["project", "rename", "q"]).code(1);
    assert!(
        r.stderr.contains("q-web") && r.stderr.contains("nothing was renamed"),
        "{r:#?}"
    );
    assert_eq!(
        std::fs::read(env.folder("a").join("containers.yaml")).unwrap(),
        before
    );
    assert!(env.running("p-dev") && env.instance("p-web").is_some());
}

/// A rename whose LXD step fails half way: the container done is renamed,
/// the other shows `RENAMING (interrupted)`, `doctor --fix` forgets
/// nothing, `up` refuses it, and running the rename again finishes it
/// (starting again the container it had stopped).
#[test]
fn a_rename_failing_half_way_is_visible_and_finished_by_running_it_again() {
    let env = two_containers();
    env.run_in("a", &["up", "web"]).ok();
    env.double.fail_operation(
        Match::new("POST", "/1.0/instances/p-web"),
        "Failed to rename: disk full",
    );
    let r = env.run_in("a", &["project", "rename", "q"]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(r.stderr.contains("ldm project rename q"), "{r:#?}");
    env.double.clear_knobs();
    assert!(env.running("q-dev"), "the first was done");
    assert!(env.instance("p-web").is_some() && !env.running("p-web"));
    interrupted_then_finished(&env, "p-web");
}

/// The same, killed (SIGKILL) while LXD renames the second container: LXD
/// renamed it, ldm never heard; the next run marks it and starts it again.
#[test]
fn a_rename_killed_half_way_is_visible_and_finished_by_running_it_again() {
    let env = two_containers();
    env.run_in("a", &["up", "web"]).ok();
    env.double
        .hang(Match::new("POST", "/1.0/instances/p-web"), HangAt::Response);
    let mut child = env
        .command_in(&env.folder("a"), &["project", "rename", "q"], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hang = env.double.wait_hang(std::time::Duration::from_secs(30));
    assert!(hang.is_some(), "the rename of p-web never came");
    child.kill().unwrap();
    child.wait().unwrap();
    env.double.clear_knobs();
    env.double.release_all();
    assert!(env.running("q-dev"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env.instance("q-web").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.instance("p-web").is_none() && !env.running("q-web"));
    assert_eq!(marks(&env, "q-web").0, "p", "not marked yet");
    interrupted_then_finished(&env, "q-web");
}

/// What an interrupted rename of `p` to `q` shows, with web's instance
/// named `web` in LXD, until the same command finishes it.
fn interrupted_then_finished(env: &Env, web: &str) {
    let list = env.run_in("a", &["list"]);
    assert!(list.stdout.contains("RENAMING (interrupted)"), "{list:#?}");
    let doctor = env.run_in("a", &["doctor"]);
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(said.contains("interrupted renaming"), "{doctor:#?}");
    if web == "p-web" {
        let fix = env.run_in("a", &["doctor", "--fix", "--force"]);
        let said = format!("{}{}", fix.stdout, fix.stderr);
        assert!(said.contains("ldm project rename q"), "{fix:#?}");
        assert!(env.instance("p-web").is_some(), "doctor forgot nothing");
    }
    let up = env.run_in("a", &["up"]);
    assert!(
        format!("{}{}", up.stdout, up.stderr).contains("ldm project rename q"),
        "{up:#?}"
    );
    let webs = ["p-web", "q-web"]
        .iter()
        .filter(|n| env.instance(n).is_some())
        .count();
    assert_eq!(webs, 1, "up made no second web");
    assert!(!env.running(web), "up left it to the rename");
    // Another name is refused until this one is finished.
    let other = env.run_in("a", &["project", "rename", "z"]).code(1);
    assert!(other.stderr.contains("ldm project rename q"), "{other:#?}");

    let again = env.run_in("a", &["project", "rename", "q"]).ok();
    assert!(
        again.stdout.contains("Renamed project p to q"),
        "{again:#?}"
    );
    assert_eq!(project_of(env, "a"), "q");
    assert!(env.instance("p-web").is_none());
    assert!(
        env.running("q-web"),
        "it ran before the rename: started again"
    );
    assert!(env.running("q-dev"));
    assert_eq!(marks(env, "q-web").0, "q");
    let list = env.run_in("a", &["list"]).ok();
    assert!(!list.stdout.contains("RENAMING"), "{list:#?}");
    env.run_in("a", &["doctor"]).ok();
}
