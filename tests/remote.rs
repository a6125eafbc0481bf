//! The LXD client is built from the project the command loaded (issue 13;
//! issue 11, item 9), and remote names are checked like LXD's (issue 12,
//! item 10): against the API TEST DOUBLE, asserting the requests each
//! server logged, or that none did. A project's `remote` is a second
//! double, remote `shared` of the client configuration.

mod common;

use common::api::Env;
use lxd_double::{Double, Image};
use serde_json::json;

/// A containers.yaml that names a remote and does not parse.
const BROKEN_WITH_REMOTE: &str = "project: p\nremote: shared\ncontainers: {dev: [\n";

/// Every request `d` logged so far, as `METHOD TARGET`, forgotten.
fn lines(d: &Double) -> Vec<String> {
    d.take_requests().iter().map(|r| r.line()).collect()
}

#[test]
fn regression_issue11_9_unreadable_project_naming_a_remote_makes_no_client_call() {
    let env = Env::new("p");
    let shared = env.remote_double("shared");
    env.seed_container("dev", "img", true);
    env.ok(&["config", "set", "remote", "shared"]);
    std::fs::write(env.dir.join("containers.yaml"), BROKEN_WITH_REMOTE).unwrap();
    env.take_requests();
    for args in [
        &["image", "delete", "base", "-f"][..],
        &["image", "list"],
        &["images", "--all"],
        &["image", "rename", "base", "deb"],
        &["list"],
        &["remove", "-f", "dev"],
        &["doctor"],
    ] {
        let run = env.run(args);
        assert_ne!(run.code, 0, "{args:?} succeeded");
        // (doctor reports on stdout, other commands on stderr.)
        assert!(
            run.said().contains("containers.yaml"),
            "{args:?}: the error names the file: {}",
            run.stderr
        );
        let (here, there) = (env.take_lines(), lines(&shared));
        assert!(
            here.is_empty() && there.is_empty(),
            "{args:?} asked LXD: {here:?} {there:?}"
        );
    }
    // The file is left as it was: ldm never writes what it cannot read.
    assert_eq!(
        std::fs::read_to_string(env.dir.join("containers.yaml")).unwrap(),
        BROKEN_WITH_REMOTE
    );
}

#[test]
fn image_commands_without_a_project_use_the_local_lxd() {
    let env = Env::new("p");
    let shared = env.remote_double("shared");
    env.double.add_image("default", Image::new("base"));
    shared.add_image("default", Image::new("base"));
    let elsewhere = env.folder("no-project");
    std::fs::create_dir(&elsewhere).unwrap();
    let dir = elsewhere.to_str().unwrap();
    let run = env.ok(&["-C", dir, "image", "list"]);
    run.out_has("base");
    env.ok(&["-C", dir, "image", "delete", "-f", "base"]);
    let got = env.take_lines();
    assert!(
        got.contains(&format!(
            "DELETE /1.0/images/{}",
            Image::new("base").fingerprint
        )),
        "{got:#?}"
    );
    assert!(env.double.state().images("default").is_empty());
    assert_eq!(lines(&shared), Vec::<String>::new());
    assert_eq!(shared.state().images("default").len(), 1);
}

#[test]
fn a_good_remote_reaches_every_call_of_every_command() {
    let env = Env::new("p");
    let shared = env.remote_double("shared");
    env.ok(&["config", "set", "remote", "shared"]);
    // Container a lives on the remote.
    env.seed_container("a", "img", true);
    let inst = env.instance("p-a").unwrap();
    env.double
        .state()
        .projects
        .get_mut("default")
        .unwrap()
        .instances
        .clear();
    shared.seed("default", "p-a", inst);
    std::fs::write(env.dir.join("f.txt"), "x").unwrap();
    env.take_requests();
    let mut got = Vec::new();
    for args in [
        &["image", "create", "a", "img1"][..],
        &["image", "rename", "img1", "img2"],
        &["image", "delete", "-f", "img2"],
        &["mv", "-y", "f.txt", "a:/tmp/"],
        &["container", "reset", "a"],
        &["down", "a"],
        &["up", "a"],
        &["doctor"],
        &["project", "delete", "-f"],
    ] {
        env.ok(args);
        assert_eq!(
            env.take_lines(),
            Vec::<String>::new(),
            "{args:?} asked local"
        );
        got.extend(shared.take_requests());
    }
    let has = |method: &str, path: &str, body: Option<serde_json::Value>| {
        assert!(
            got.iter().any(|r| r.is(method, path)
                && body.as_ref().is_none_or(|b| {
                    b.as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| r.json().get(k) == Some(v))
                })),
            "no {method} {path} {body:?} in {:#?}",
            got.iter().map(|r| r.line()).collect::<Vec<_>>()
        )
    };
    has("POST", "/1.0/images", None);
    has(
        "POST",
        "/1.0/images/aliases/img1",
        Some(json!({"name": "img2"})),
    );
    has("DELETE", "/1.0/images/*", None);
    has("POST", "/1.0/instances/p-a/files", None);
    has(
        "PUT",
        "/1.0/instances/p-a",
        Some(json!({"restore": "initial-state"})),
    );
    has(
        "PUT",
        "/1.0/instances/p-a/state",
        Some(json!({"action": "stop"})),
    );
    has(
        "PUT",
        "/1.0/instances/p-a/state",
        Some(json!({"action": "start"})),
    );
    has("DELETE", "/1.0/instances/p-a", None);
    let push = got
        .iter()
        .find(|r| r.is("POST", "/1.0/instances/p-a/files"))
        .unwrap();
    assert_eq!(push.query("path").as_deref(), Some("/tmp/f.txt"));
    assert!(shared.instance("default", "p-a").is_none());
}

#[test]
fn regression_issue12_10_a_remote_that_reads_as_a_flag_is_refused() {
    let env = Env::new("p");
    let yaml = std::fs::read(env.dir.join("containers.yaml")).unwrap();
    let log = std::fs::read(env.dir.join("containers.log")).unwrap();
    for args in [
        &["config", "set", "remote", "--", "-evil"][..],
        &["config", "set", "remote", "--", "--force"],
        &["config", "set", "remote", "a:b"],
    ] {
        let run = env.fail(args);
        run.err_has("invalid remote");
    }
    assert_eq!(
        std::fs::read(env.dir.join("containers.yaml")).unwrap(),
        yaml
    );
    assert_eq!(std::fs::read(env.dir.join("containers.log")).unwrap(), log);
    let other = env.folder("other");
    std::fs::create_dir(&other).unwrap();
    let run = env.fail(&["-C", other.to_str().unwrap(), "create", "--remote=-evil"]);
    run.err_has("reads as a flag");
    assert!(!other.join("containers.yaml").exists());
    // A hand-edited containers.yaml with such a remote: refused on load,
    // before any request.
    std::fs::write(
        env.dir.join("containers.yaml"),
        "project: p\nremote: -evil\ncontainers: {}\n",
    )
    .unwrap();
    let run = env.run(&["list"]);
    assert_ne!(run.code, 0);
    run.err_has("remote");
    assert_eq!(env.take_lines(), Vec::<String>::new());
}
