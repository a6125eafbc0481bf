//! Issue 23: every container knows whose it is. Against the API test
//! double (`crates/lxd-double`) with the real `ldm` binary, two project
//! folders of one user on one machine (a copy of a folder is another
//! checkout: DESIGN.md, "Ownership"):
//!
//! 1. A copy of the folder never acts on the first checkout's container:
//!    `down`, `up`, `reset`, `remove -f`, `doctor --fix --force` and
//!    `project delete -f` leave it running, each saying whose it is.
//! 2. A file that names another checkout's instance gets nothing of it.
//! 3. `doctor` matches names exactly: project `web` never adopts `web-api-dev`.
//! 4. `doctor` in a copy never offers the first checkout's containers.
//! 5. After `lxc remote switch`, nothing is forgotten or made again on the
//!    new server: the checkout's record says where its containers are.
//!
//! And: what ldm makes carries the marks (launch and copy, in the request
//! that makes it); an unmarked instance the file names is managed as before.

mod common;

use common::api::{canonical, Env, Run};
use lxd_double::{Image, Instance};

/// Folder `a` (the first checkout, later copied to `b`) of one user, and
/// an LXD double with the image `ldm-debian`.
fn new_env() -> Env {
    let env = Env::empty();
    std::fs::create_dir_all(env.folder("a")).unwrap();
    env.double.add_image("default", Image::new("ldm-debian"));
    env
}

/// A project `p` in folder `a` with container `dev` made by ldm.
fn first_checkout() -> Env {
    let env = new_env();
    env.run_in("a", &["create", "--name", "p"]).ok();
    env.run_in(
        "a",
        &["container", "create", "dev", "ldm-debian", "--no-mount"],
    )
    .ok();
    assert!(env.running("p-dev"));
    env
}

#[test]
fn what_ldm_makes_carries_its_checkouts_marks() {
    let env = first_checkout();
    env.run_in("a", &["container", "clone", "dev", "dev2"]).ok();
    let folder = canonical(&env.folder("a"));
    let marks = |name: &str| {
        let c = env.instance(name).unwrap().config;
        let get = |k: &str| c.get(k).cloned().unwrap_or_default();
        (
            get("user.ldm.checkout"),
            get("user.ldm.project"),
            get("user.ldm.container"),
            get("user.ldm.folder"),
        )
    };
    let (id, project, container, at) = marks("p-dev");
    assert_eq!(id.len(), 32, "{id:?}");
    assert_eq!((project.as_str(), container.as_str()), ("p", "dev"));
    assert_eq!(at, folder);
    // A copy is its own container: its marks, not its source's.
    let (id2, _, container2, _) = marks("p-dev2");
    assert_eq!((id2, container2.as_str()), (id, "dev2"));
}

/// Finding 1: a second checkout (`cp -r`) shares the file, never the
/// containers.
#[test]
fn finding_1_a_copy_never_acts_on_the_first_checkouts_container() {
    let env = first_checkout();
    env.run_in("a", &["container", "snapshot", "create", "dev", "s1"])
        .ok();
    env.copy("a", "b");
    let first = canonical(&env.folder("a"));
    let says_whose = |r: &Run| {
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(
            said.contains(&first) && said.contains("`ldm project rename b`"),
            "{r:#?}"
        );
    };
    for args in [
        &["down", "dev"][..],
        &["down"],
        &["up", "dev"],
        &["up"],
        &["container", "reset", "dev", "s1"],
        &["remove", "dev", "--force"],
        &["container", "snapshot", "create", "dev", "s2"],
        &["ssh", "dev"],
    ] {
        let r = env.run_in("b", args);
        assert_ne!(r.code, 0, "ldm {args:?}: {r:#?}");
        says_whose(&r);
        assert!(env.running("p-dev"), "ldm {args:?} stopped it");
    }
    // A name the first checkout took after the copy: the copy's create
    // says whose it is and records nothing.
    env.run_in(
        "a",
        &["container", "create", "late", "ldm-debian", "--no-mount"],
    )
    .ok();
    let r = env.run_in(
        "b",
        &["container", "create", "late", "ldm-debian", "--no-mount"],
    );
    assert_ne!(r.code, 0, "{r:#?}");
    says_whose(&r);
    let yaml = std::fs::read_to_string(env.folder("b").join("containers.yaml")).unwrap();
    assert!(!yaml.contains("late"), "{yaml}");
    assert!(env.running("p-late"));
    let inst = env.instance("p-dev").unwrap();
    assert!(inst.restored.is_empty(), "reset restored it");
    assert_eq!(inst.snapshot_names(), ["initial-state", "s1"]);
    let r = env.run_in("b", &["list"]).ok();
    assert!(r.stdout.contains("ANOTHER CHECKOUT'S"), "{r:#?}");
    says_whose(&r);
    let r = env.run_in("b", &["doctor"]).code(1);
    assert!(!r.stdout.contains("adopt"), "{r:#?}");
    env.run_in("b", &["doctor", "--fix", "--force"]);
    assert!(env.running("p-dev"));
    let r = env.run_in("b", &["project", "delete", "--force"]).ok();
    assert!(r.stderr.contains("left alone"), "{r:#?}");
    assert!(
        env.running("p-dev"),
        "project delete in the copy deleted it"
    );
    assert_eq!(
        env.instance("p-dev").unwrap().snapshot_names(),
        ["initial-state", "s1"]
    );
    // The first checkout goes on as before.
    env.run_in("a", &["down", "dev"]).ok();
    assert!(!env.running("p-dev"));
    env.run_in("a", &["up", "dev"]).ok();
    assert!(env.running("p-dev"));
    let r = env.run_in("a", &["list"]).ok();
    assert!(r.stdout.contains("RUNNING"), "{r:#?}");
    env.run_in("a", &["doctor"]).ok();
}

/// Finding 2: a containers.yaml naming an instance another checkout
/// made (here: of another project, by another user's state) gets nothing
/// of it.
#[test]
fn finding_2_a_file_naming_another_checkouts_instance_gets_nothing() {
    let env = new_env();
    env.double.seed(
        "default",
        "q-web",
        Instance::running()
            .config("user.ldm.checkout", "0123456789abcdef0123456789abcdef")
            .config("user.ldm.project", "q")
            .config("user.ldm.container", "web")
            .config("user.ldm.folder", "/home/someone/q")
            .config("user.ldm.host", "another-machine"),
    );
    std::fs::write(
        env.folder("a").join("containers.yaml"),
        "project: q\ncontainers:\n  web:\n    image: ldm-debian\n",
    )
    .unwrap();
    for args in [&["down"][..], &["remove", "web", "--force"], &["up", "web"]] {
        let r = env.run_in("a", args);
        assert_ne!(r.code, 0, "ldm {args:?}: {r:#?}");
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(
            said.contains("/home/someone/q") && said.contains("another machine"),
            "{r:#?}"
        );
        assert!(env.running("q-web"));
    }
    env.run_in("a", &["project", "delete", "--force"]).ok();
    assert!(env.running("q-web"));
}

/// Finding 3: project `web` and project `web-api`'s container `dev`:
/// `doctor` matches exact names, never a prefix.
#[test]
fn finding_3_doctor_never_takes_a_prefix_for_a_project() {
    let env = new_env();
    std::fs::create_dir_all(env.folder("api")).unwrap();
    env.run_in("api", &["create", "--name", "web-api"]).ok();
    env.run_in(
        "api",
        &["container", "create", "dev", "ldm-debian", "--no-mount"],
    )
    .ok();
    // And one made by hand, unmarked, named alike.
    env.double.seed("default", "web-old", Instance::running());
    env.run_in("a", &["create", "--name", "web"]).ok();
    let r = env.run_in("a", &["doctor"]).ok();
    assert!(r.stdout.contains("the project and LXD agree"), "{r:#?}");
    let r = env.run_in("a", &["list"]).ok();
    assert!(!r.stderr.contains("web-api-dev"), "{r:#?}");
    env.run_in("a", &["doctor", "--fix", "--force"]).ok();
    env.run_in("a", &["project", "delete", "--force"]).ok();
    assert!(env.running("web-api-dev") && env.running("web-old"));
    env.run_in("api", &["doctor"]).ok();
}

/// Finding 4: `doctor` in a copy does not offer what the first checkout
/// made after the copy was taken.
#[test]
fn finding_4_doctor_in_a_copy_offers_nothing_of_the_firsts() {
    let env = first_checkout();
    env.copy("a", "b");
    env.run_in(
        "a",
        &["container", "create", "dev2", "ldm-debian", "--no-mount"],
    )
    .ok();
    let r = env.run_in("b", &["doctor"]).code(1);
    assert!(!r.stdout.contains("dev2"), "{r:#?}");
    assert!(!r.stdout.contains("adopt"), "{r:#?}");
    env.run_in("b", &["doctor", "--fix"]);
    let yaml = std::fs::read_to_string(env.folder("b").join("containers.yaml")).unwrap();
    assert!(!yaml.contains("dev2"), "{yaml}");
    // The first checkout's own doctor adopts its own, lost from its file.
    env.run_in("a", &["doctor"]).ok();
}

/// lxc-dev-manager keeps working: an instance made with plain `lxc`,
/// named exactly by the file, is managed, and marked as this checkout's
/// the first time ldm changes it (one line says so); from then on a copy
/// of the folder leaves it alone.
#[test]
fn an_unmarked_instance_the_file_names_is_managed_and_marked() {
    let env = new_env();
    env.double.seed(
        "default",
        "p-web",
        Instance::running().snapshot("initial-state"),
    );
    std::fs::write(
        env.folder("a").join("containers.yaml"),
        "project: p\ncontainers:\n  web:\n    image: ldm-debian\n",
    )
    .unwrap();
    let r = env.run_in("a", &["list"]).ok();
    assert!(!r.stderr.contains("marked"), "a read marks nothing: {r:#?}");
    let marked = |name: &str| {
        env.instance(name)
            .unwrap()
            .config
            .contains_key("user.ldm.checkout")
    };
    assert!(!marked("p-web"));
    let r = env.run_in("a", &["down", "web"]).ok();
    assert!(!env.running("p-web"));
    assert!(r.stderr.contains("marked p-web as this folder's"), "{r:#?}");
    let config = env.instance("p-web").unwrap().config;
    assert_eq!(config["user.ldm.container"], "web");
    assert_eq!(config["user.ldm.folder"], canonical(&env.folder("a")));
    let r = env.run_in("a", &["up", "web"]).ok();
    assert!(!r.stderr.contains("marked"), "once: {r:#?}");
    assert!(env.running("p-web"));
    env.copy("a", "b");
    let r = env.run_in("b", &["down", "web"]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(env.running("p-web"));
    env.run_in("a", &["remove", "web", "--force"]).ok();
    assert!(env.instance("p-web").is_none());
}

/// Two checkouts that want the same names: the copy takes a project name
/// of its own (as the refusal says) and makes its own containers beside
/// the first's.
#[test]
fn a_copy_renamed_makes_its_own_containers_beside_the_firsts() {
    let env = first_checkout();
    env.copy("a", "b");
    let yaml = env.folder("b").join("containers.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.contains("project: p\n"), "{text}");
    std::fs::write(&yaml, text.replace("project: p\n", "project: p2\n")).unwrap();
    env.run_in("b", &["up"]).ok();
    assert!(env.running("p2-dev") && env.running("p-dev"));
    let config = env.instance("p2-dev").unwrap().config;
    assert_eq!(config["user.ldm.project"], "p2");
    assert_eq!(config["user.ldm.folder"], canonical(&env.folder("b")));
    env.run_in("b", &["down", "dev"]).ok();
    assert!(!env.running("p2-dev") && env.running("p-dev"));
    env.run_in("b", &["project", "delete", "--force"]).ok();
    assert!(env.instance("p2-dev").is_none() && env.running("p-dev"));
    env.run_in("a", &["doctor"]).ok();
}

/// A folder moved within its file system is the same checkout: its
/// containers go on working there, nothing to adopt.
#[test]
fn a_moved_folder_keeps_its_containers() {
    let env = first_checkout();
    std::fs::rename(env.folder("a"), env.folder("moved")).unwrap();
    env.run_in("moved", &["down", "dev"]).ok();
    assert!(!env.running("p-dev"));
    let r = env.run_in("moved", &["up", "dev"]).ok();
    assert!(!r.stderr.contains("marked"), "{r:#?}");
    assert!(env.running("p-dev"));
    env.run_in("moved", &["container", "snapshot", "create", "dev", "s1"])
        .ok();
    env.run_in("moved", &["doctor"]).ok();
}

/// A folder moved to another file system (here: copied, then the
/// original removed) is a new checkout: the old folder no longer holds
/// the checkout its containers' marks name, so they are adopted, and
/// marked again at the first change. While the old folder is there, they
/// are the other checkout's.
#[test]
fn a_folder_moved_across_file_systems_adopts_its_containers() {
    let env = first_checkout();
    env.copy("a", "new");
    let r = env.run_in("new", &["down", "dev"]);
    assert_ne!(r.code, 0, "the original is still there: {r:#?}");
    std::fs::remove_dir_all(env.folder("a")).unwrap();
    let r = env.run_in("new", &["list"]).ok();
    assert!(!r.stdout.contains("ANOTHER"), "{r:#?}");
    let r = env.run_in("new", &["down", "dev"]).ok();
    assert!(!env.running("p-dev"));
    assert!(r.stderr.contains("marked p-dev as this folder's"), "{r:#?}");
    let config = env.instance("p-dev").unwrap().config;
    assert_eq!(config["user.ldm.folder"], canonical(&env.folder("new")));
    env.run_in("new", &["up", "dev"]).ok();
    assert!(env.running("p-dev"));
}

/// Knowing the owner costs no request: the marks come with what each
/// command reads anyway. The counts are those of the same commands before
/// ownership (main at 62ad786, run with `LDM_TEST_BIN=that build`).
#[test]
fn ownership_costs_no_request() {
    let env = first_checkout();
    std::fs::write(env.folder("a").join("f"), "x").unwrap();
    env.take_requests();
    let mut got = Vec::new();
    for args in [
        &["list"][..],
        &["container", "snapshot", "create", "dev", "s1"],
        &["container", "snapshot", "create", "dev", "s2"],
        &["container", "snapshot", "delete", "dev", "s2"],
        &["down", "dev"],
        &["down"],
        &["up", "dev"],
        &["up"],
        &["container", "reset", "dev", "s1"],
        &["mv", "-y", "f", "dev:/tmp/f"],
        &["mv", "dev:/tmp/f", "g"],
        &["ssh", "dev", "--", "true"],
        &["image", "create", "dev", "img"],
        &["doctor"],
        &["remove", "dev", "--force"],
    ] {
        let r = env.run_in("a", args);
        assert!(
            r.code == 0 || ["ssh", "mv"].contains(&args[0]),
            "{args:?}: {r:#?}"
        );
        let reqs: Vec<String> = env
            .double
            .take_requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect();
        println!("{args:?}: {reqs:#?}");
        got.push(format!("{}: {}", args.join(" "), reqs.len()));
    }
    // Before ownership (62ad786): the same but snapshot create 2, mv to a
    // container 31 and from one 6: they read nothing of the instance, so
    // its marks cost one request (GET /1.0/instances/NAME).
    let want = [
        "list: 1",
        "container snapshot create dev s1: 3",
        "container snapshot create dev s2: 3",
        "container snapshot delete dev s2: 4",
        "down dev: 4",
        "down: 1",
        "up dev: 5",
        "up: 2",
        "container reset dev s1: 8",
        "mv -y f dev:/tmp/f: 32",
        "mv dev:/tmp/f g: 7",
        "ssh dev -- true: 2",
        "image create dev img: 13",
        "doctor: 1",
        "remove dev --force: 6",
    ];
    assert_eq!(got, want);
}

/// The review of issue 22, finding 2: a clone whose containers.yaml names
/// the same project, with a step the user allowed for that clone, never
/// runs the step in the first checkout's container (which may mount host
/// folders allowed for the first checkout only).
#[test]
fn a_clone_never_runs_its_steps_in_the_first_checkouts_container() {
    let env = first_checkout();
    env.copy("a", "b");
    let yaml_path = env.folder("b").join("containers.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    let with_step = yaml.replacen(
        "    image: ldm-debian\n",
        "    image: ldm-debian\n    setup:\n    - make setup\n",
        1,
    );
    assert_ne!(with_step, yaml, "{yaml}");
    std::fs::write(&yaml_path, with_step).unwrap();
    env.run_in("b", &["trust", "--yes"]).ok();
    env.double.take_requests();
    let r = env.run_in("b", &["container", "setup", "dev"]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains(&canonical(&env.folder("a"))),
        "{r:#?}"
    );
    let execs: Vec<String> = env
        .double
        .take_requests()
        .into_iter()
        .map(|q| format!("{q:?}"))
        .filter(|q| q.contains("/exec"))
        .collect();
    assert!(
        execs.is_empty(),
        "the clone's step ran in p-dev: {execs:#?}"
    );
}

/// Points the client's default remote at `remote` (`lxc remote switch`).
fn switch_remote(env: &Env, remote: &str) {
    let path = env.root.join("conf/config.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = text.split_once("default-remote: ").unwrap();
    let (_, tail) = rest.split_once('\n').unwrap();
    std::fs::write(&path, format!("{head}default-remote: {remote}\n{tail}")).unwrap();
}

/// Finding 5: after `lxc remote switch far` (no `remote:` in the file),
/// `up` re-created the container on `far`, and `remove -f` and `doctor
/// --fix` forgot the local one, which lived on unmanaged. Now each says
/// where this folder made it and how to switch back, and changes nothing
/// on either server or in the project; with no request more than before
/// (the record is the user's state folder's). A copy of the folder, which
/// made nothing, makes its own on `far`.
#[test]
fn finding_5_a_client_switched_to_another_server_neither_forgets_nor_re_creates() {
    let env = first_checkout();
    let far = env.remote_double("far");
    far.add_image("default", Image::new("ldm-debian"));
    switch_remote(&env, "far");
    let says = "this folder made p-dev on remote `local` (";
    let back = "and the client now points at remote `far` (";
    let run = env.run_in("a", &["list"]).ok();
    assert!(run.stdout.contains("NOT FOUND"), "{run:#?}");
    run.err_has(says);
    run.err_has(back);
    run.err_has("switch back with `lxc remote switch local`");
    let run = env.run_in("a", &["up", "--dry-run"]).ok();
    run.out_has("dev: cannot: is not on the server the client points at: this folder made p-dev");
    for args in [
        &["up"][..],
        &["up", "dev"],
        &["remove", "-f", "dev"],
        &["doctor", "--fix"],
        &["container", "reset", "dev"],
    ] {
        let run = env.run_in("a", args);
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert!(run.said().contains(says), "{args:?}: {run:#?}");
    }
    assert!(far.state().projects["default"].instances.is_empty());
    assert!(env.running("p-dev"));
    let file = std::fs::read_to_string(env.folder("a").join("containers.yaml")).unwrap();
    assert!(file.contains("dev:"), "{file}");
    // Back on `local`: all as before.
    switch_remote(&env, "local");
    env.run_in("a", &["doctor"])
        .ok()
        .out_has("the project and LXD agree");
    // A copy made nothing anywhere: on `far` it makes its own.
    env.copy("a", "b");
    switch_remote(&env, "far");
    env.run_in("b", &["up"]).ok();
    assert!(far.state().projects["default"]
        .instances
        .contains_key("p-dev"));
    assert!(env.running("p-dev"));
}
