//! Unit tests of command logic against the in-process LXD FAKE
//! (`lxd/fake.rs`): the decisions commands make from what LXD answers,
//! without a client program. Command lines and the client's messages are
//! tested against the python TEST DOUBLE in `tests/`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::cli::{ContainerCreate, Doctor};
use crate::lxd::fake::Fake;
use crate::model::{Mutation, Op};

/// A project `p` in a fresh folder, and a context whose LXD is `fake`;
/// `remotes` records the remote of every client the commands build.
struct Setup {
    _dir: tempfile::TempDir,
    ctx: Ctx,
    fake: Arc<Fake>,
    remotes: Arc<Mutex<Vec<Option<String>>>>,
}

fn setup(fake: Fake) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let opts = store::Options::default();
    Store::create(dir.path(), &Project::new("p", vec![]), opts.clone()).unwrap();
    let fake = Arc::new(fake);
    let remotes = Arc::new(Mutex::new(Vec::new()));
    let (f, r) = (Arc::clone(&fake), Arc::clone(&remotes));
    let connect: Connect = Arc::new(
        move |remote: Option<&str>,
              _project: Option<&str>,
              wait: Duration,
              on_wait: crate::lxd::OnWait|
              -> Arc<dyn Lxd> {
            r.lock().unwrap().push(remote.map(str::to_string));
            Arc::new(crate::lxd::Patient::new(Arc::clone(&f), wait, on_wait))
        },
    );
    let ctx = Ctx {
        start: dir.path().to_path_buf(),
        opts,
        quiet: true,
        step_timeout: Duration::from_secs(1800),
        style: style::Style::plain(),
        safe: SafeDirs::default(),
        connect,
        user: Some(crate::user_state::UserDirs::in_dir(
            &dir.path().join(".user"),
        )),
        log_seen: Mutex::new(None),
        project_at: Mutex::new(None),
        lxd_project: Mutex::new(None),
        seen: Default::default(),
        owned: true,
    };
    Setup {
        _dir: dir,
        ctx,
        fake,
        remotes,
    }
}

fn create_args(name: &str, image: &str) -> ContainerCreate {
    ContainerCreate {
        name: name.into(),
        image: Some(image.into()),
        no_mount: false,
        force: false,
        timeout: Duration::from_secs(5),
    }
}

fn project(s: &Setup) -> Project {
    s.ctx.store().unwrap().read().unwrap()
}

/// Records `name` as an interrupted create whose owner is gone.
fn interrupted_create(s: &Setup, name: &str, image: &str) {
    let mut store = s.ctx.store().unwrap();
    let (guard, pending) = op::claim(&store, Op::Create).unwrap();
    op::record(
        &mut store,
        vec![Mutation::ContainerAdded {
            name: name.into(),
            image: image.into(),
            pending: Some(pending),
        }],
    )
    .unwrap();
    drop(guard);
}

#[test]
fn create_launches_sets_up_and_records_initial_state() {
    let s = setup(Fake::new());
    // As root, ldm's host user is the folder's owner (not root); the
    // instance has the raw.idmap ldm would set (as from a profile), so the
    // device goes in without the root step or a restart, never idmapped.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&s.ctx.start, Some(1000), Some(1000)).unwrap();
    }
    let host = mounts::host_ids(&s.ctx.start);
    s.fake.server().user_ids = Some((host.uid, host.gid));
    s.fake.server().launch_raw_idmap = Some(mounts::raw_idmap(host, host));
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    assert_eq!(
        s.fake.calls(),
        [
            "launch p-dev",
            "exec p-dev",
            "exec p-dev",
            // The project folder, mounted by default: the user's ids, that
            // the server is this machine, what LXD has, then the disk
            // device (not idmapped).
            "exec p-dev",
            "remote_server ",
            "instance p-dev",
            "add_disk p-dev",
            "snapshot p-dev",
            // The IPv4 wait.
            "state p-dev"
        ]
    );
    let p = project(&s);
    assert!(p.containers["dev"].pending.is_none());
    assert_eq!(p.containers["dev"].mounts[0].to_string(), ".:/home/dev/p");
    let disks = s.fake.instance("p-dev").unwrap().unwrap().disks;
    assert!(disks.len() == 1 && !disks[0].shift, "{disks:?}");
    assert!(p.containers["dev"].snapshots.contains_key("initial-state"));
    // The client was built from the project, which names no remote.
    assert_eq!(*s.remotes.lock().unwrap(), [None]);
}

#[test]
fn resumed_create_finds_the_instance_launched_and_goes_on() {
    let s = setup(Fake::new().with_instance("p-dev", false, &[]));
    interrupted_create(&s, "dev", "img");
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    let calls = s.fake.calls();
    // LXD has it: started, not launched again.
    assert_eq!(calls[..2], ["instance p-dev", "start p-dev"], "{calls:?}");
    assert!(project(&s).containers["dev"].pending.is_none());
}

#[test]
fn create_over_an_unrecorded_instance_is_a_conflict_and_frees_the_name() {
    let s = setup(Fake::new().with_instance("p-dev", true, &[]));
    let e = container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains("pick another name"), "{e}");
    assert!(project(&s).containers.is_empty());
    // Then its marks are asked for (whose is it?): one request, on this
    // failure only.
    assert_eq!(s.fake.calls(), ["launch p-dev", "instance p-dev"]);
}

#[test]
fn resumed_create_with_another_image_is_refused_before_lxd() {
    let s = setup(Fake::new());
    interrupted_create(&s, "dev", "img");
    let e = container::create(&s.ctx, &create_args("dev", "other"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(s.fake.calls().is_empty(), "{:?}", s.fake.calls());
}

#[test]
fn failed_launch_that_made_nothing_forgets_the_name() {
    let s = setup(Fake::new());
    let e =
        container::create(&s.ctx, &create_args("dev", "missing-x"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(s.fake.calls(), ["launch p-dev", "instance p-dev"]);
    assert!(project(&s).containers.is_empty());
}

#[test]
fn create_waits_out_lxd_busy_state_within_its_timeout() {
    let s = setup(Fake::new().busy("launch", 2));
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    assert_eq!(s.fake.calls()[..3], ["launch p-dev"; 3]);
    let mut args = create_args("web", "img");
    args.timeout = Duration::ZERO;
    s.fake.server().busy.insert("launch", 1);
    let e = container::create(&s.ctx, &args, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e:?}");
}

fn doctor_args(fix: bool) -> Doctor {
    Doctor {
        json: false,
        repair: false,
        fix,
        force: false,
    }
}

#[test]
fn doctor_reports_drift_and_fix_adopts_what_lxd_has() {
    let fake = Fake::new()
        .with_instance("p-x", true, &["s1"])
        .with_instance("other-y", true, &[]);
    let s = setup(fake);
    // Adopted by its marks of this checkout only (issue 23): unmarked,
    // it is not offered.
    let mut out = Vec::new();
    doctor::run(&s.ctx, &doctor_args(false), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("LXD has p-x"), "{text}");
    let id = s
        .ctx
        .user
        .as_ref()
        .unwrap()
        .checkout(s._dir.path())
        .unwrap()
        .id;
    let marks = [
        ("user.ldm.checkout", id.to_string()),
        ("user.ldm.project", "p".to_string()),
        ("user.ldm.container", "x".to_string()),
    ];
    s.fake.server().instances.get_mut("p-x").unwrap().user = marks
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut out = Vec::new();
    let e = doctor::run(&s.ctx, &doctor_args(false), &mut out).unwrap_err();
    assert!(matches!(e, Error::Drift(_)), "{e:?}");
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("LXD has p-x"), "{text}");
    assert!(
        !text.contains("other-y"),
        "another project's instance: {text}"
    );
    assert!(
        project(&s).containers.is_empty(),
        "doctor alone writes nothing"
    );

    doctor::run(&s.ctx, &doctor_args(true), &mut Vec::new()).unwrap();
    let p = project(&s);
    let snaps: Vec<&String> = p.containers["x"].snapshots.keys().collect();
    assert_eq!(snaps, ["s1"]);
    doctor::run(&s.ctx, &doctor_args(false), &mut Vec::new()).unwrap();

    // An interrupted `image create`'s temporary snapshot: --fix deletes it
    // from LXD and never records it.
    s.fake.snapshot("p-x", "ldm-publish-42").unwrap();
    let mut out = Vec::new();
    doctor::run(&s.ctx, &doctor_args(false), &mut out).unwrap_err();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ldm-publish-42 is a leftover"), "{text}");
    doctor::run(&s.ctx, &doctor_args(true), &mut Vec::new()).unwrap();
    let left: Vec<String> = s.fake.server().instances["p-x"]
        .snapshots
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(left, ["s1"]);
    assert!(!project(&s).containers["x"]
        .snapshots
        .contains_key("ldm-publish-42"));
}

#[test]
fn image_commands_fail_before_lxd_when_the_project_cannot_be_read() {
    let s = setup(Fake::new());
    let yaml = s.ctx.start.join("containers.yaml");
    std::fs::write(&yaml, "project: p\nremote: shared\ncontainers: [\n").unwrap();
    let e = image::delete(&s.ctx, "base", true, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert!(s.remotes.lock().unwrap().is_empty(), "no client was built");
    assert!(s.fake.calls().is_empty());
    // Readable again: the client is built for the project's remote.
    std::fs::write(&yaml, "project: p\nremote: shared\ncontainers: {}\n").unwrap();
    let list = crate::cli::ImageList {
        all: false,
        json: true,
    };
    image::list(&s.ctx, &list, &mut Vec::new()).unwrap();
    assert_eq!(*s.remotes.lock().unwrap(), [Some("shared".to_string())]);
}

#[test]
fn a_note_is_said_once_per_user_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let said = dir.path().join("state/said.json");
    assert!(say_once(Some(&said), "incus"));
    assert!(!say_once(Some(&said), "incus"), "said once");
    assert!(say_once(Some(&said), "both-lxd-and-incus"), "another key");
    let text = std::fs::read_to_string(&said).unwrap();
    assert!(
        text.contains("incus") && text.contains("both-lxd-and-incus"),
        "{text}"
    );
    // Without a state folder: every time.
    assert!(say_once(None, "incus") && say_once(None, "incus"));
}

/// With a container user whose ids are not the host user's, ldm maps with
/// raw.idmap (here refused for want of the root step, so no device at
/// all), never an idmapped mount.
#[test]
fn a_container_user_with_other_ids_gets_no_idmapped_mount() {
    let s = setup(Fake::new());
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&s.ctx.start, Some(1000), Some(1000)).unwrap();
    }
    let host = mounts::host_ids(&s.ctx.start);
    s.fake.server().user_ids = Some((host.uid + 1, host.gid + 1));
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    let calls = s.fake.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("add_disk")),
        "{calls:?}"
    );
}
