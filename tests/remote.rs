//! The LXD client is built from the project the command loaded (issue 13;
//! issue 11, item 9), and remote names are checked like LXD's (issue 12,
//! item 10): against the LXD client TEST DOUBLE, asserting the exact argv
//! it recorded, or that it recorded nothing.

mod double;

use double::{argv, Env};

/// A containers.yaml that names a remote and does not parse.
const BROKEN_WITH_REMOTE: &str = "project: p\nremote: shared\ncontainers: {dev: [\n";

#[test]
fn regression_issue11_9_unreadable_project_naming_a_remote_makes_no_client_call() {
    let env = Env::new("p");
    env.seed_container("dev", "img", true);
    env.ok(&["config", "set", "remote", "shared"]);
    std::fs::write(env.dir.join("containers.yaml"), BROKEN_WITH_REMOTE).unwrap();
    env.take_calls();
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
            format!("{}{}", run.stdout, run.stderr).contains("containers.yaml"),
            "{args:?}: the error names the file: {}",
            run.stderr
        );
        assert!(
            env.calls().is_empty(),
            "{args:?} called LXD: {:?}",
            env.calls()
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
    let elsewhere = env.dd.join("no-project");
    std::fs::create_dir(&elsewhere).unwrap();
    let dir = elsewhere.to_str().unwrap();
    env.ok(&["-C", dir, "image", "list"]);
    env.run(&["-C", dir, "image", "delete", "-f", "base"]);
    assert_eq!(
        env.take_argvs(),
        vec![
            argv(&["image", "list", "--format", "json"]),
            argv(&["image", "delete", "--", "base"]),
        ]
    );
}

/// Panics unless every argument naming an instance of project `p` or an
/// image `img*` is addressed to `shared:` (but the new name of an alias
/// rename, which the client takes bare, and paths inside containers).
fn all_remote(argvs: &[Vec<String>]) {
    for a in argvs {
        let renamed = a
            .starts_with(&argv(&["image", "alias", "rename"]))
            .then(|| a.len() - 1);
        let args = a.iter().enumerate().filter(|(i, _)| Some(*i) != renamed);
        for (_, arg) in args.filter(|(_, x)| x.contains("p-") || x.starts_with("img")) {
            assert!(
                arg.starts_with("shared:") || arg.starts_with("/") || a[0] == "file",
                "{arg} in {a:?}"
            );
        }
    }
}

#[test]
fn a_good_remote_reaches_every_call_of_every_command() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.ok(&["config", "set", "remote", "shared"]);
    std::fs::write(env.dir.join("f.txt"), "x").unwrap();
    let mut argvs = Vec::new();
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
        argvs.extend(env.take_argvs());
    }
    all_remote(&argvs);
    let has = |want: &[&str]| assert!(argvs.contains(&argv(want)), "no {want:?} in {argvs:#?}");
    has(&["image", "alias", "rename", "--", "shared:img1", "img2"]);
    has(&["image", "delete", "--", "shared:img2"]);
    has(&["list", "--format", "json", "--", "shared:"]);
    has(&["delete", "--force", "--", "shared:p-a"]);
    has(&["restore", "--", "shared:p-a", "initial-state"]);
    assert!(
        argvs
            .iter()
            .any(|a| a[0] == "publish" && a.last().map(String::as_str) == Some("shared:")),
        "publish onto the remote: {argvs:#?}"
    );
    assert!(
        argvs
            .iter()
            .any(|a| a[..3] == argv(&["file", "push", "--"]) && a[4] == "shared:p-a/tmp/f.txt"),
        "{argvs:#?}"
    );
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
    let other = env.dd.join("other");
    std::fs::create_dir(&other).unwrap();
    let run = env.fail(&["-C", other.to_str().unwrap(), "create", "--remote=-evil"]);
    run.err_has("reads as a flag");
    assert!(!other.join("containers.yaml").exists());
    // A hand-edited containers.yaml with such a remote: refused on load,
    // before any client call.
    std::fs::write(
        env.dir.join("containers.yaml"),
        "project: p\nremote: -evil\ncontainers: {}\n",
    )
    .unwrap();
    let run = env.run(&["list"]);
    assert_ne!(run.code, 0);
    run.err_has("remote");
    assert!(env.calls().is_empty(), "{:?}", env.calls());
}
