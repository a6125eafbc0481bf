//! Unit tests of command logic against the API TEST DOUBLE
//! (`crates/lxd-double`, served by `lxd/double.rs`) through the real
//! backend: the decisions commands make from what LXD answers, and the
//! requests they send. The `ldm` binary's own tests are in `tests/`.

// Over 400 lines: tests only, one per decision a command makes from
// LXD's answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lxd_double::{Action, ExecRule, Hold, Instance as Seed, Snapshot};

use super::*;
use crate::cli::{ContainerCreate, Doctor};
use crate::lxd::api::{Api, Patience};
use crate::lxd::double::Served;
use crate::model::{Mutation, Op, Project};
use crate::store::Store;

/// A project `p` in a fresh folder, and a context whose LXD is the double
/// (every image alias but `missing*` exists); `remotes` records the remote
/// of every client the commands build.
struct Setup {
    _dir: tempfile::TempDir,
    ctx: Ctx,
    served: Served,
    remotes: Arc<Mutex<Vec<Option<String>>>>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let opts = store::Options::default();
    Store::create(dir.path(), &Project::new("p", vec![]), opts.clone()).unwrap();
    let served = Served::new();
    served.double.state().behaviour.images_on_demand = true;
    let remotes = Arc::new(Mutex::new(Vec::new()));
    let (socket, r) = (served.double.socket().to_path_buf(), Arc::clone(&remotes));
    let connect: Connect = Arc::new(
        move |remote: Option<&str>,
              _project: Option<&str>,
              wait: Duration,
              on_wait: crate::lxd::OnWait|
              -> Arc<dyn Lxd> {
            r.lock().unwrap().push(remote.map(str::to_string));
            Arc::new(Api::on_socket(
                &socket,
                remote,
                Patience::new(wait, on_wait),
            ))
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
    };
    Setup {
        _dir: dir,
        ctx,
        served,
        remotes,
    }
}

/// The container user's ids, as `id -u` and `id -g` print them.
fn user_ids(s: &Setup, uid: u32, gid: u32) {
    s.served
        .double
        .exec_rule(ExecRule::contains("id -u").stdout(&format!("{uid}\n{gid}\n")));
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
    let s = setup();
    // As root, ldm's host user is the folder's owner (not root); the
    // instance has the raw.idmap ldm would set (as a user or an earlier
    // run would have set it), so the device goes in without the root step
    // or a restart, never idmapped.
    if ldm_sys::euid() == 0 {
        std::os::unix::fs::chown(&s.ctx.start, Some(1000), Some(1000)).unwrap();
    }
    let host = mounts::host_ids(&s.ctx.start);
    user_ids(&s, host.uid, host.gid);
    s.served
        .double
        .state()
        .behaviour
        .create_config
        .insert("raw.idmap".into(), mounts::raw_idmap(host, host));
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    assert_eq!(
        s.served.acts(),
        [
            // Launched: made, then started.
            "POST /1.0/instances",
            "PUT /1.0/instances/p-dev/state",
            // Setup steps.
            "POST /1.0/instances/p-dev/exec",
            "POST /1.0/instances/p-dev/exec",
            // The project folder, mounted by default: the user's ids, what
            // LXD has (once its operations ended), then the disk device
            // (not idmapped). The socket is this machine: no request.
            "POST /1.0/instances/p-dev/exec",
            "GET /1.0/operations",
            "GET /1.0/instances/p-dev",
            "PATCH /1.0/instances/p-dev",
            "POST /1.0/instances/p-dev/snapshots",
            // The IPv4 wait.
            "GET /1.0/instances/p-dev/state"
        ]
    );
    let reqs = s.served.double.requests();
    let body = |method: &str, path: &str| {
        reqs.iter()
            .find(|r| r.is(method, path))
            .map(|r| r.json())
            .unwrap()
    };
    let made = body("POST", "/1.0/instances");
    assert_eq!(made["name"], "p-dev");
    assert_eq!(made["source"]["alias"], "img");
    assert_eq!(made["config"]["user.ldm.container"], "dev");
    assert_eq!(body("PUT", "/1.0/instances/p-dev/state")["action"], "start");
    let devices = &body("PATCH", "/1.0/instances/p-dev")["devices"];
    let disk = devices.as_object().unwrap().values().next().unwrap();
    assert_eq!(disk["path"], "/home/dev/p", "{devices}");
    assert!(
        disk["shift"].is_null() || disk["shift"] == "false",
        "{devices}"
    );
    assert_eq!(
        body("POST", "/1.0/instances/p-dev/snapshots")["name"],
        "initial-state"
    );
    let p = project(&s);
    assert!(p.containers["dev"].pending.is_none());
    assert_eq!(p.containers["dev"].mounts[0].to_string(), ".:/home/dev/p");
    let inst = s.served.double.instance("default", "p-dev").unwrap();
    let disks: Vec<_> = inst
        .devices
        .values()
        .filter(|d| d.contains_key("source"))
        .collect();
    assert!(
        disks.len() == 1 && disks[0].get("shift").is_none_or(|v| v != "true"),
        "{disks:?}"
    );
    assert!(p.containers["dev"].snapshots.contains_key("initial-state"));
    // The client was built from the project, which names no remote.
    assert_eq!(*s.remotes.lock().unwrap(), [None]);
}

#[test]
fn resumed_create_finds_the_instance_launched_and_goes_on() {
    let s = setup();
    s.served.seed("p-dev", Seed::stopped());
    interrupted_create(&s, "dev", "img");
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    let acts = s.served.acts();
    // LXD has it: started, not launched again.
    assert_eq!(
        acts[..3],
        [
            "GET /1.0/operations",
            "GET /1.0/instances/p-dev",
            "PUT /1.0/instances/p-dev/state"
        ],
        "{acts:?}"
    );
    assert!(!acts.iter().any(|c| c == "POST /1.0/instances"), "{acts:?}");
    let start = s.served.double.requests();
    let start = start
        .iter()
        .find(|r| r.is("PUT", "/1.0/instances/p-dev/state"));
    assert_eq!(start.unwrap().json()["action"], "start");
    assert!(project(&s).containers["dev"].pending.is_none());
}

#[test]
fn create_over_an_unrecorded_instance_is_a_conflict_and_frees_the_name() {
    let s = setup();
    s.served.seed("p-dev", Seed::running());
    let e = container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains("pick another name"), "{e}");
    assert!(project(&s).containers.is_empty());
    // The create failed; was the instance there before it (LXD's own
    // words are not read), and whose is it? Asked on this failure only.
    assert_eq!(
        s.served.acts(),
        [
            "POST /1.0/instances",
            "GET /1.0/operations",
            "GET /1.0/instances/p-dev",
            "GET /1.0/instances/p-dev"
        ]
    );
    assert!(s
        .served
        .double
        .instance("default", "p-dev")
        .unwrap()
        .is_running());
}

#[test]
fn resumed_create_with_another_image_is_refused_before_lxd() {
    let s = setup();
    interrupted_create(&s, "dev", "img");
    let e = container::create(&s.ctx, &create_args("dev", "other"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert!(s.served.calls().is_empty(), "{:?}", s.served.calls());
}

#[test]
fn failed_launch_that_made_nothing_forgets_the_name() {
    let s = setup();
    let e =
        container::create(&s.ctx, &create_args("dev", "missing-x"), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    // The 404 is the image's (the LXD project exists), and nothing was
    // made: its marks are asked for once.
    assert_eq!(
        s.served.acts(),
        [
            "POST /1.0/instances",
            "GET /1.0/operations",
            "GET /1.0/projects/default",
            "GET /1.0/operations",
            "GET /1.0/instances/p-dev"
        ]
    );
    assert!(project(&s).containers.is_empty());
}

#[test]
fn create_waits_out_lxd_busy_state_within_its_timeout() {
    let s = setup();
    let hold = Hold::For(Duration::from_millis(500));
    let op = s
        .served
        .double
        .busy("default", "p-dev", Action::Start, hold);
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    // Refused while the other operation held the name, waited for by id,
    // then made.
    let calls = s.served.take_calls();
    assert_eq!(
        calls[..5],
        [
            "POST /1.0/instances".to_string(),
            calls[1].clone(),
            "GET /1.0/operations".to_string(),
            format!("GET /1.0/operations/{op}/wait"),
            "POST /1.0/instances".to_string(),
        ],
        "{calls:?}"
    );
    assert!(project(&s).containers["dev"].pending.is_none());
    let mut args = create_args("web", "img");
    args.timeout = Duration::ZERO;
    s.served
        .double
        .busy("default", "p-web", Action::Start, Hold::UntilReleased);
    let e = container::create(&s.ctx, &args, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e:?}");
    s.served.double.release_all();
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
    let s = setup();
    s.served
        .seed("p-x", Seed::running().snapshot("s1"))
        .seed("other-y", Seed::running());
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
    {
        let mut st = s.served.double.state();
        let x = st.instance_mut("default", "p-x").unwrap();
        for (k, v) in &marks {
            x.config.insert(k.to_string(), v.clone());
        }
    }
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
    {
        let mut st = s.served.double.state();
        let x = st.instance_mut("default", "p-x").unwrap();
        let leftover = Snapshot::of(x, "ldm-publish-42", "2026-01-01T00:00:02Z");
        x.snapshots.push(leftover);
    }
    let mut out = Vec::new();
    doctor::run(&s.ctx, &doctor_args(false), &mut out).unwrap_err();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ldm-publish-42 is a leftover"), "{text}");
    s.served.take_calls();
    doctor::run(&s.ctx, &doctor_args(true), &mut Vec::new()).unwrap();
    let calls = s.served.calls();
    assert!(
        calls.contains(&"DELETE /1.0/instances/p-x/snapshots/ldm-publish-42".to_string()),
        "{calls:?}"
    );
    let left = s
        .served
        .double
        .instance("default", "p-x")
        .unwrap()
        .snapshot_names();
    assert_eq!(left, ["s1"]);
    assert!(!project(&s).containers["x"]
        .snapshots
        .contains_key("ldm-publish-42"));
}

#[test]
fn image_commands_fail_before_lxd_when_the_project_cannot_be_read() {
    let s = setup();
    let yaml = s.ctx.start.join("containers.yaml");
    std::fs::write(&yaml, "project: p\nremote: shared\ncontainers: [\n").unwrap();
    let e = image::delete(&s.ctx, "base", true, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert!(s.remotes.lock().unwrap().is_empty(), "no client was built");
    assert!(s.served.calls().is_empty());
    // Readable again: the client is built for the project's remote.
    std::fs::write(&yaml, "project: p\nremote: shared\ncontainers: {}\n").unwrap();
    let list = crate::cli::ImageList {
        all: false,
        json: true,
    };
    image::list(&s.ctx, &list, &mut Vec::new()).unwrap();
    assert_eq!(*s.remotes.lock().unwrap(), [Some("shared".to_string())]);
    let calls = s.served.calls();
    assert!(calls.iter().any(|c| c == "GET /1.0/images"), "{calls:?}");
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
    let s = setup();
    if ldm_sys::euid() == 0 {
        std::os::unix::fs::chown(&s.ctx.start, Some(1000), Some(1000)).unwrap();
    }
    let host = mounts::host_ids(&s.ctx.start);
    user_ids(&s, host.uid + 1, host.gid + 1);
    container::create(&s.ctx, &create_args("dev", "img"), &mut Vec::new()).unwrap();
    let inst = s.served.double.instance("default", "p-dev").unwrap();
    let disks: Vec<_> = inst
        .devices
        .values()
        .filter(|d| d.contains_key("source"))
        .collect();
    assert!(
        !disks
            .iter()
            .any(|d| d.get("shift").is_some_and(|v| v == "true")),
        "{disks:?}"
    );
    // Where the root step is still to do (as on this machine, for ids
    // below 1001), no device at all and raw.idmap untouched.
    if mounts::root_step(host).is_some() {
        assert!(disks.is_empty(), "{disks:?}");
        assert!(!s.served.acts().iter().any(|c| c.starts_with("PATCH")));
    }
}
