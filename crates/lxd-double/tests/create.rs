//! Creating instances (local image, remote image with progress, copy,
//! images on demand), LXD projects, and the client configuration.

mod client;

use client::{call, double, get, run_op, wait};
use lxd_double::{Family, Image, Instance, Status};
use serde_json::json;

#[test]
fn create_from_a_local_image_with_config_and_start() {
    let (_t, d) = double();
    d.add_image("default", Image::new("img"));
    let body = json!({"name": "a", "type": "container", "source": {"type": "image", "alias": "img"},
                      "config": {"user.x": "1", "security.nesting": "true"}, "devices": {},
                      "profiles": ["default"], "start": true});
    let op = run_op(
        &d,
        "POST",
        "/1.0/instances?project=default",
        &body.to_string(),
    );
    assert_eq!(op["description"], "Creating instance");
    assert_eq!(
        op["metadata"]["progress"]["stage"],
        "create_instance_from_image_unpack"
    );
    let i = d.instance("default", "a").unwrap();
    assert_eq!(
        (i.status, i.config["user.x"].as_str()),
        (Status::Stopped, "1"),
        "LXD 5.0.2 ignores start"
    );
    assert_eq!(i.config["image.description"], "Double image img");
    assert_eq!(i.origin, "image img");

    let dup = wait(
        &d,
        &call(&d, "POST", "/1.0/instances", &body.to_string()).op(),
    );
    assert_eq!(
        dup["status"], "Failure",
        "a duplicate fails in its operation, as on LXD"
    );
    assert!(dup["err"].as_str().unwrap().contains("already exists"));
    let miss = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"b","source":{"type":"image","alias":"nope"}}"#,
    );
    assert_eq!(
        (miss.status, miss.error().as_str()),
        (404, "Image alias not found")
    );
    let bad = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"b_c","source":{"type":"none"}}"#,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.error(),
        "Invalid instance name: Name can only contain alphanumeric and hyphen characters"
    );
    let prof = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"b","source":{"type":"none"},"profiles":["nope"]}"#,
    );
    assert_eq!(
        (prof.status, prof.error().as_str()),
        (500, "Requested profile \"nope\" doesn't exist")
    );
    let proj = call(
        &d,
        "POST",
        "/1.0/instances?project=nope",
        r#"{"name":"b","source":{"type":"none"}}"#,
    );
    assert_eq!(
        (proj.status, proj.error().as_str()),
        (404, "Failed loading project: Project not found")
    );
}

#[test]
fn incus_starts_what_it_creates_when_asked() {
    let (_t, d) = double();
    d.set_family(Family::Incus);
    run_op(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"a","source":{"type":"none"},"start":true}"#,
    );
    assert_eq!(d.instance("default", "a").unwrap().status, Status::Running);
}

#[test]
fn create_from_a_remote_image_downloads_with_progress() {
    let (_t, d) = double();
    d.state().behaviour.progress_steps = 2;
    d.slow(
        lxd_double::Match::new("POST", "/1.0/instances"),
        std::time::Duration::from_millis(800),
    );
    let body = r#"{"name":"a","source":{"type":"image","alias":"24.04","server":"https://cloud-images.ubuntu.com/releases","protocol":"simplestreams","mode":"pull"}}"#;
    let id = call(&d, "POST", "/1.0/instances", body).op();
    let mut seen = Vec::new();
    loop {
        let op = get(&d, &format!("/1.0/operations/{id}")).meta();
        for key in [
            "download_progress",
            "create_instance_from_image_unpack_progress",
        ] {
            if let Some(t) = op["metadata"][key].as_str() {
                if seen.last() != Some(&t.to_string()) {
                    seen.push(t.to_string());
                }
            }
        }
        if op["status"] != "Running" {
            assert_eq!(op["status"], "Success", "{op}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        seen.iter().any(|s| s.starts_with("rootfs: 50% (")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("Unpack: 100% (")),
        "{seen:?}"
    );
    let cached: Vec<Image> = d.state().images("default").to_vec();
    assert!(
        cached[0].cached && cached[0].aliases.is_empty(),
        "LXD keeps the download as a cached image"
    );

    let missing = r#"{"name":"b","source":{"type":"image","alias":"missing-1","server":"https://x","protocol":"simplestreams"}}"#;
    let op = wait(&d, &call(&d, "POST", "/1.0/instances", missing).op());
    assert_eq!(op["status"], "Failure");
    assert!(d.instance("default", "b").is_none());
}

#[test]
fn copy_of_an_instance_or_a_snapshot() {
    let (_t, d) = double();
    d.seed(
        "default",
        "src",
        Instance::running()
            .config("user.a", "1")
            .file("/etc/x", b"x")
            .snapshot("s1")
            .snapshot("s2"),
    );
    run_op(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"full","source":{"type":"copy","source":"src"}}"#,
    );
    let full = d.instance("default", "full").unwrap();
    assert_eq!(
        (full.status, full.snapshot_names()),
        (Status::Stopped, vec!["s1".to_string(), "s2".into()])
    );
    assert_eq!(full.files.read("/etc/x"), Some(&b"x"[..]));
    let op = run_op(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"only","source":{"type":"copy","source":"src/s1","instance_only":true},"config":{"user.b":"2"}}"#,
    );
    assert_eq!(
        op["resources"]["instances"],
        json!(["/1.0/instances/only", "/1.0/instances/src/s1"])
    );
    let only = d.instance("default", "only").unwrap();
    assert!(only.snapshots.is_empty());
    assert_eq!(
        (
            only.config["user.a"].as_str(),
            only.config["user.b"].as_str()
        ),
        ("1", "2")
    );
    assert_eq!(only.origin, "copy src/s1");
    let a = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"x","source":{"type":"copy","source":"zz"}}"#,
    );
    assert_eq!(a.status, 404);
    assert_eq!(
        a.error(),
        "Failed to fetch instance \"zz\" in project \"default\": Instance not found"
    );
    let a = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"x","source":{"type":"copy","source":"src/zz"}}"#,
    );
    assert_eq!(a.status, 404);
    assert!(a.error().ends_with("InstanceSnapshot not found"));
}

#[test]
fn projects_keep_instances_apart_and_share_default_images_without_features() {
    let (_t, d) = double();
    d.add_image("default", Image::new("img"));
    let a = call(
        &d,
        "POST",
        "/1.0/projects",
        r#"{"name":"dev","config":{"features.images":"false","features.profiles":"false"}}"#,
    );
    assert_eq!(
        (a.status, a.header("Location")),
        (201, Some("/1.0/projects/dev"))
    );
    assert_eq!(
        call(&d, "POST", "/1.0/projects", r#"{"name":"dev"}"#).status,
        409
    );
    let projects = get(&d, "/1.0/projects?recursion=1").meta();
    assert_eq!(projects[1]["name"], "dev");
    assert_eq!(projects[1]["config"]["features.images"], "false");
    assert_eq!(
        projects[1]["config"]["features.storage.volumes"], "true",
        "unnamed features default on"
    );
    let body = r#"{"name":"a","source":{"type":"image","alias":"img"}}"#;
    run_op(&d, "POST", "/1.0/instances?project=dev", body);
    run_op(&d, "POST", "/1.0/instances?project=default", body);
    assert!(
        d.instance("dev", "a").is_some() && d.instance("default", "a").is_some(),
        "one name per project"
    );
    assert_eq!(
        get(&d, "/1.0/images?project=dev")
            .meta()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(get(&d, "/1.0/projects/nope").status, 404);
    assert_eq!(
        call(&d, "DELETE", "/1.0/projects/dev", "").status,
        400,
        "not empty"
    );
    assert_eq!(call(&d, "DELETE", "/1.0/projects/default", "").status, 403);
}

#[test]
fn images_on_demand_finds_any_local_alias_but_missing_ones() {
    let (_t, d) = double();
    d.state().behaviour.images_on_demand = true;
    run_op(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"a","source":{"type":"image","alias":"whatever"}}"#,
    );
    assert_eq!(d.instance("default", "a").unwrap().origin, "image whatever");
    assert!(
        d.state().images("default").is_empty(),
        "nothing added to the store"
    );
    let a = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"b","source":{"type":"image","alias":"missing-x"}}"#,
    );
    assert_eq!(a.status, 404);
}

#[test]
fn the_client_config_names_the_default_remote_and_its_project() {
    let local = lxd_double::Double::client_config("local", "dev");
    assert!(
        local.starts_with("default-remote: local\nremotes:\n  local:\n    addr: unix://\n"),
        "{local}"
    );
    assert!(local.contains("    project: dev\n"));
    assert!(local.contains("  ubuntu:\n    addr: https://cloud-images.ubuntu.com/releases\n"));
    let other = lxd_double::Double::client_config("far", "default");
    assert!(
        other.contains("default-remote: far\n") && other.contains("  far:\n    addr: https://"),
        "{other}"
    );
    assert!(
        !other.contains("project:"),
        "the default project is not written"
    );
}
