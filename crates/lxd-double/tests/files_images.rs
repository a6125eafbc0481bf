//! Files (push, pull, folders, headers, LXD's refusals) and images (list,
//! publish with progress, aliases, delete), and snapshots.

// Over 400 lines: test-only, one scenario per test.

mod client;

use std::time::Duration;

use client::{call, double, get, run_op, wait, Conn};
use lxd_double::{Family, Image, Instance, Kind, Match};
use serde_json::json;

const OCTET: (&str, &str) = ("Content-Type", "application/octet-stream");

#[test]
fn files_push_and_pull_with_mode_and_owner() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    let mut c = Conn::open(d.socket());
    let hdr = [
        OCTET,
        ("X-LXD-type", "file"),
        ("X-LXD-mode", "0640"),
        ("X-LXD-uid", "1000"),
        ("X-LXD-gid", "1001"),
        ("X-LXD-write", "overwrite"),
    ];
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/x&project=default",
        &hdr,
        b"hello",
    );
    assert_eq!(c.read().meta(), json!({}));
    let n = d
        .instance("default", "a")
        .unwrap()
        .files
        .get("/tmp/x")
        .cloned()
        .unwrap();
    assert_eq!(
        (n.kind, n.mode, n.uid, n.gid),
        (Kind::File(b"hello".to_vec()), 0o640, 1000, 1001)
    );
    let a = c.call("GET", "/1.0/instances/a/files?path=/tmp/x", b"");
    assert_eq!(a.body, b"hello");
    assert_eq!(
        (a.header("X-Lxd-Type"), a.header("X-Lxd-Mode")),
        (Some("file"), Some("0640"))
    );
    assert_eq!(
        (a.header("X-Lxd-Uid"), a.header("X-Lxd-Gid")),
        (Some("1000"), Some("1001"))
    );

    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/d",
        &[OCTET, ("X-LXD-type", "directory"), ("X-LXD-mode", "0750")],
        b"",
    );
    assert_eq!(c.read().status, 200);
    let list = c.call("GET", "/1.0/instances/a/files?path=/tmp", b"");
    assert_eq!(
        (list.meta(), list.header("X-Lxd-Type")),
        (json!(["d", "x"]), Some("directory"))
    );
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/x",
        &[OCTET, ("X-LXD-write", "append")],
        b"!",
    );
    assert_eq!(c.read().status, 200);
    assert_eq!(
        c.call("GET", "/1.0/instances/a/files?path=/tmp/x", b"")
            .body,
        b"hello!"
    );
    assert_eq!(
        c.call("DELETE", "/1.0/instances/a/files?path=/tmp/x", b"")
            .status,
        200
    );
    assert_eq!(
        c.call("GET", "/1.0/instances/a/files?path=/tmp/x", b"")
            .status,
        404
    );
}

#[test]
fn file_refusals_are_lxds() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::running().file("/tmp/d/keep", b"k"),
    );
    let mut c = Conn::open(d.socket());
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/nope/x",
        &[OCTET],
        b"x",
    );
    assert_eq!(c.read().status, 404, "no parent folder");
    c.send("POST", "/1.0/instances/a/files?path=/tmp/d", &[OCTET], b"x");
    let onto_dir = c.read();
    assert_eq!(onto_dir.status, 500);
    assert!(onto_dir.error().contains("is a directory"));
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/f",
        &[OCTET, ("X-LXD-type", "fifo")],
        b"",
    );
    assert_eq!(c.read().error(), "Bad file type: fifo");
    c.send("POST", "/1.0/instances/a/files", &[OCTET], b"x");
    assert_eq!(c.read().error(), "Missing path argument");
    assert_eq!(
        c.call("GET", "/1.0/instances/zz/files?path=/", b"").status,
        404
    );
    // Go parses a form-encoded body for the path parameter: the file is empty.
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/form",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"data",
    );
    assert_eq!(c.read().status, 200);
    assert_eq!(
        d.instance("default", "a").unwrap().files.read("/tmp/form"),
        Some(&b""[..])
    );
}

#[test]
fn incus_answers_with_its_own_headers_and_reads_both() {
    let (_t, d) = double();
    d.set_family(Family::Incus);
    d.seed("default", "a", Instance::stopped());
    let mut c = Conn::open(d.socket());
    c.send(
        "POST",
        "/1.0/instances/a/files?path=/tmp/x",
        &[OCTET, ("X-Incus-mode", "0600"), ("X-LXD-uid", "7")],
        b"x",
    );
    assert_eq!(c.read().status, 200);
    let a = c.call("GET", "/1.0/instances/a/files?path=/tmp/x", b"");
    assert_eq!(
        (
            a.header("X-Incus-Mode"),
            a.header("X-Incus-Uid"),
            a.header("X-Lxd-Mode")
        ),
        (Some("0600"), Some("7"), None)
    );
    let op = run_op(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"start"}"#);
    assert!(
        op["resources"].get("containers").is_none(),
        "Incus names instances only"
    );
    d.add_project("p", &[]);
    d.seed("p", "b", Instance::running());
    let op = run_op(
        &d,
        "PUT",
        "/1.0/instances/b/state?project=p",
        r#"{"action":"stop"}"#,
    );
    assert_eq!(
        op["resources"]["instances"],
        json!(["/1.0/instances/b?project=p"]),
        "with its project"
    );
}

#[test]
fn snapshots_create_list_restore_and_delete() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::running()
            .config("user.v", "1")
            .file("/etc/f", b"one"),
    );
    let op = run_op(&d, "POST", "/1.0/instances/a/snapshots", r#"{"name":"s1"}"#);
    assert_eq!(op["description"], "Snapshotting instance");
    assert_eq!(
        get(&d, "/1.0/instances/a/snapshots").meta(),
        json!(["/1.0/instances/a/snapshots/s1"])
    );
    assert_eq!(
        get(&d, "/1.0/instances/a/snapshots?recursion=1").meta()[0]["name"],
        "s1"
    );
    assert_eq!(
        get(&d, "/1.0/instances/a/snapshots/s1").meta()["config"]["user.v"],
        "1"
    );
    let dup = wait(
        &d,
        &call(&d, "POST", "/1.0/instances/a/snapshots", r#"{"name":"s1"}"#).op(),
    );
    assert!(
        dup["err"]
            .as_str()
            .unwrap()
            .contains("\"instances_snapshots\" entry already exists"),
        "{dup}"
    );
    assert_eq!(
        call(
            &d,
            "POST",
            "/1.0/instances/a/snapshots",
            r#"{"name":"a/b"}"#
        )
        .status,
        400
    );
    run_op(&d, "POST", "/1.0/instances/a/snapshots", r#"{"name":""}"#);
    assert_eq!(
        d.instance("default", "a").unwrap().snapshot_names(),
        ["s1", "snap0"]
    );

    {
        let mut st = d.state();
        let i = st.instance_mut("default", "a").unwrap();
        i.config.insert("user.v".into(), "2".into());
        i.files.write("/etc/f", b"two");
    }
    let op = run_op(&d, "PUT", "/1.0/instances/a", r#"{"restore":"s1"}"#);
    assert_eq!(op["description"], "Restoring snapshot");
    let i = d.instance("default", "a").unwrap();
    assert_eq!(
        (i.config["user.v"].as_str(), i.files.read("/etc/f")),
        ("1", Some(&b"one"[..]))
    );
    assert_eq!(i.restored, ["s1"]);
    let miss = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a", r#"{"restore":"zz"}"#).op(),
    );
    assert_eq!(miss["err"], "Snapshot a/zz does not exist");

    let op = run_op(&d, "DELETE", "/1.0/instances/a/snapshots/s1", "");
    assert_eq!(
        (op["description"].as_str(), &op["resources"]["instances"]),
        (Some("Deleting snapshot"), &json!(["/1.0/instances/a/s1"]))
    );
    let gone = call(&d, "DELETE", "/1.0/instances/a/snapshots/s1", "");
    assert_eq!(gone.status, 404);
    assert!(gone.error().ends_with("InstanceSnapshot not found"));
}

#[test]
fn publish_packs_with_progress_then_names_the_image() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::stopped()
            .config("image.description", "Debian")
            .snapshot("s"),
    );
    d.state().behaviour.progress_steps = 4;
    d.slow(
        Match::new("POST", "/1.0/images"),
        Duration::from_millis(400),
    );
    let body = r#"{"source":{"type":"snapshot","name":"a/s"},"aliases":[{"name":"mine"}],"properties":{"description":"My image"}}"#;
    let id = call(&d, "POST", "/1.0/images", body).op();
    let mut seen = Vec::new();
    loop {
        let op = get(&d, &format!("/1.0/operations/{id}")).meta();
        if let Some(p) = op["metadata"]["progress"]["percent"].as_str() {
            if seen.last().map(String::as_str) != Some(p) {
                seen.push(p.to_string());
            }
            assert_eq!(
                op["metadata"]["progress"]["stage"],
                "create_image_from_container_pack"
            );
            assert!(op["metadata"]["create_image_from_container_pack_progress"]
                .as_str()
                .unwrap()
                .starts_with("Image pack: "));
        }
        if op["status"] != "Running" {
            assert_eq!(
                op["metadata"]["fingerprint"].as_str().unwrap().len(),
                64,
                "{op}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(seen.len() >= 2, "progress moved: {seen:?}");
    let images = get(&d, "/1.0/images?recursion=1").meta();
    assert_eq!(images[0]["aliases"][0]["name"], "mine");
    assert_eq!(images[0]["properties"]["description"], "My image");
    let alias = get(&d, "/1.0/images/aliases/mine").meta();
    assert_eq!(alias["target"], images[0]["fingerprint"]);

    // A taken alias fails the operation and leaves the image unnamed, as LXD does.
    d.clear_knobs();
    let op = wait(&d, &call(&d, "POST", "/1.0/images", body).op());
    assert_eq!(op["err"], "Alias already exists: mine");
    assert_eq!(d.state().images("default").len(), 2);
    let op = wait(
        &d,
        &call(
            &d,
            "POST",
            "/1.0/images",
            r#"{"source":{"type":"snapshot","name":"a"}}"#,
        )
        .op(),
    );
    assert_eq!(op["err"], "Not a snapshot");
}

#[test]
fn aliases_rename_and_images_delete() {
    let (_t, d) = double();
    d.add_image("default", Image::new("one"));
    d.add_image("default", Image::new("two"));
    let a = call(&d, "POST", "/1.0/images/aliases/one", r#"{"name":"uno"}"#);
    assert_eq!(
        (a.status, a.header("Location")),
        (201, Some("/1.0/images/aliases/uno"))
    );
    assert_eq!(get(&d, "/1.0/images/aliases/one").status, 404);
    let taken = call(&d, "POST", "/1.0/images/aliases/uno", r#"{"name":"two"}"#);
    assert_eq!(
        (taken.status, taken.error().as_str()),
        (409, "Alias \"two\" already exists")
    );
    assert_eq!(
        call(&d, "POST", "/1.0/images/aliases/zz", r#"{"name":"x"}"#).status,
        404
    );
    let fp = get(&d, "/1.0/images/aliases/uno").meta()["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&d, &format!("/1.0/images/{}", &fp[..12])).meta()["fingerprint"],
        fp.as_str()
    );
    let op = run_op(&d, "DELETE", &format!("/1.0/images/{fp}"), "");
    assert_eq!(
        (op["description"].as_str(), &op["resources"]["images"]),
        (
            Some("Deleting image"),
            &json!([format!("/1.0/images/{fp}")])
        )
    );
    assert_eq!(
        call(&d, "DELETE", &format!("/1.0/images/{fp}"), "").status,
        404
    );
    assert_eq!(get(&d, "/1.0/images").meta().as_array().unwrap().len(), 1);
    assert_eq!(get(&d, "/1.0/images?project=nope").status, 404);
}

#[test]
fn aliases_are_listed_made_and_deleted_and_profiles_read() {
    let (_t, d) = double();
    d.add_image("default", Image::new("one"));
    let fp = d.state().images("default")[0].fingerprint.clone();
    let body = json!({"name": "uno", "target": &fp[..8]}).to_string();
    let a = call(&d, "POST", "/1.0/images/aliases", &body);
    assert_eq!(
        (a.status, a.header("Location")),
        (201, Some("/1.0/images/aliases/uno"))
    );
    assert_eq!(call(&d, "POST", "/1.0/images/aliases", &body).status, 409);
    let names: Vec<String> = get(&d, "/1.0/images/aliases?recursion=1")
        .meta()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["one", "uno"]);
    assert_eq!(
        call(&d, "DELETE", "/1.0/images/aliases/one", "").status,
        200
    );
    assert_eq!(
        call(&d, "DELETE", "/1.0/images/aliases/one", "").status,
        404
    );
    assert_eq!(
        get(&d, "/1.0/images/aliases").meta(),
        json!(["/1.0/images/aliases/uno"])
    );

    assert_eq!(
        get(&d, "/1.0/profiles").meta(),
        json!(["/1.0/profiles/default"])
    );
    let p = get(&d, "/1.0/profiles/default").meta();
    assert_eq!(p["devices"]["eth0"]["type"], "nic");
    assert_eq!(get(&d, "/1.0/profiles/nope").status, 404);
    d.add_project("lean", &[("features.profiles", "false")]);
    assert_eq!(
        get(&d, "/1.0/profiles?project=lean").meta(),
        json!(["/1.0/profiles/default"]),
        "default's"
    );
}
