//! `ldm create --lxd-project NAME` (issue 23): a project's containers live
//! in an LXD project of its own, made if missing with the default
//! project's images and profiles shared, and every request names it
//! whatever the client's current project, so two people's `p-dev` on one
//! server never meet. Against the API test double with the real `ldm`.

mod common;

use common::api::Env;
use lxd_double::Image;

/// Folder `a` of one user, and an LXD double with the image `ldm-debian`.
fn new_env() -> Env {
    let env = Env::empty();
    std::fs::create_dir_all(env.folder("a")).unwrap();
    env.double.add_image("default", Image::new("ldm-debian"));
    env
}

/// Is instance `name` of LXD project `project` there and running?
fn running(env: &Env, project: &str, name: &str) -> bool {
    env.double
        .instance(project, name)
        .is_some_and(|i| i.is_running())
}

/// Two folders (two people's checkouts) of a project named alike, each in
/// its own LXD project: each has its own `p-dev`, and each folder's
/// commands act on its own only.
#[test]
fn two_projects_named_alike_in_two_lxd_projects_run_side_by_side() {
    let env = new_env();
    std::fs::create_dir_all(env.folder("b")).unwrap();
    // Bob's LXD project exists already: it is used as it is.
    env.double.add_project(
        "bob",
        &[("features.images", "false"), ("features.profiles", "false")],
    );
    let a = env
        .run_in("a", &["create", "--name", "p", "--lxd-project", "alice"])
        .ok();
    assert!(a.stderr.contains("Made LXD project alice"), "{a:#?}");
    let b = env
        .run_in("b", &["create", "--name", "p", "--lxd-project", "bob"])
        .ok();
    assert!(!b.stderr.contains("Made LXD project"), "{b:#?}");
    let alice = env.double.state().projects["alice"].config.clone();
    assert_eq!(
        alice.get("features.images").map(String::as_str),
        Some("false")
    );
    assert_eq!(
        alice.get("features.profiles").map(String::as_str),
        Some("false")
    );
    let yaml = std::fs::read_to_string(env.folder("a").join("containers.yaml")).unwrap();
    assert!(yaml.contains("\nlxd_project: alice\n"), "{yaml}");

    for folder in ["a", "b"] {
        env.run_in(
            folder,
            &["container", "create", "dev", "ldm-debian", "--no-mount"],
        )
        .ok();
    }
    assert!(running(&env, "alice", "p-dev") && running(&env, "bob", "p-dev"));
    assert!(env.double.instance("default", "p-dev").is_none());
    env.run_in("a", &["down", "dev"]).ok();
    assert!(!running(&env, "alice", "p-dev") && running(&env, "bob", "p-dev"));
    env.run_in("b", &["container", "snapshot", "create", "dev", "s1"])
        .ok();
    assert!(
        env.double
            .instance("alice", "p-dev")
            .unwrap()
            .snapshot_names()
            .len()
            == 1
    );
    env.run_in("a", &["doctor"]).ok();
    env.run_in("b", &["doctor"]).ok();
    env.run_in("a", &["project", "delete", "--force"]).ok();
    assert!(env.double.instance("alice", "p-dev").is_none() && running(&env, "bob", "p-dev"));
}

/// After `lxc project switch other`, a pinned project's commands still
/// address its LXD project: nothing is made in, or looked for in, the
/// client's current one.
#[test]
fn the_pinned_lxd_project_is_named_whatever_the_clients_current_project() {
    let mut env = new_env();
    env.run_in("a", &["create", "--name", "p", "--lxd-project", "alice"])
        .ok();
    env.run_in(
        "a",
        &["container", "create", "dev", "ldm-debian", "--no-mount"],
    )
    .ok();
    env.set_client("local", "other");
    env.double.take_requests();
    env.run_in("a", &["down"]).ok();
    assert!(!running(&env, "alice", "p-dev"));
    env.run_in("a", &["up"]).ok();
    assert!(running(&env, "alice", "p-dev"));
    let list = env.run_in("a", &["list"]).ok();
    assert!(list.stdout.contains("RUNNING"), "{list:#?}");
    assert!(
        env.double.instance("other", "p-dev").is_none()
            && env.double.instance("default", "p-dev").is_none()
    );
    for r in env.double.take_requests() {
        let q = r.query("project");
        assert!(
            q.as_deref() == Some("alice")
                || r.path() == "/1.0"
                || r.path().starts_with("/1.0/operations"),
            "a request named another project: {r:?}"
        );
    }
}

/// A bad name is refused before anything is made.
#[test]
fn a_bad_lxd_project_name_is_refused_and_nothing_is_made() {
    let env = new_env();
    let r = env
        .run_in("a", &["create", "--name", "p", "--lxd-project", "a/b"])
        .code(1);
    assert!(r.stderr.contains("invalid LXD project"), "{r:#?}");
    assert!(!env.folder("a").join("containers.yaml").exists());
    assert!(!env.double.state().projects.contains_key("a/b"));
}
