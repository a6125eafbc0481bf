//! Instances: listing at each recursion, one instance with its ETag,
//! config and device changes, power, delete, create (image, remote image,
//! copy), and LXD projects.

mod client;

use client::{call, double, get, run_op, wait, Conn};
use lxd_double::{Family, Image, Instance, Status};
use serde_json::json;

#[test]
fn list_at_each_recursion() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::running().config("user.k", "v").snapshot("s1"),
    );
    d.seed("default", "b", Instance::stopped());
    d.add_project("other", &[]);
    d.seed("other", "c", Instance::stopped());

    assert_eq!(
        get(&d, "/1.0/instances").meta(),
        json!(["/1.0/instances/a", "/1.0/instances/b"])
    );
    let one = get(&d, "/1.0/instances?recursion=1&project=default").meta();
    assert_eq!(one[0]["config"]["user.k"], "v");
    assert_eq!(one[0]["status"], "Running");
    assert!(one[0].get("state").is_none(), "recursion=1 has no state");
    assert_eq!(
        one[0]["expanded_devices"]["root"]["type"], "disk",
        "profile devices are expanded"
    );
    let two = get(&d, "/1.0/instances?recursion=2").meta();
    let addrs = &two[0]["state"]["network"]["eth0"]["addresses"];
    assert_eq!(addrs[0]["family"], "inet");
    assert_eq!(addrs[0]["scope"], "global");
    assert!(addrs[0]["address"]
        .as_str()
        .unwrap()
        .starts_with("198.18.77."));
    assert_eq!(two[0]["snapshots"][0]["name"], "s1");
    assert_eq!(
        two[1]["state"]["network"],
        serde_json::Value::Null,
        "stopped: no network"
    );

    assert_eq!(
        get(&d, "/1.0/instances?project=other").meta(),
        json!(["/1.0/instances/c?project=other"])
    );
    assert_eq!(
        get(&d, "/1.0/instances?project=nope").meta(),
        json!([]),
        "LXD lists nothing"
    );
    let all = get(&d, "/1.0/instances?recursion=1&all-projects=true").meta();
    let names: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["project"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("a", "default"), ("b", "default"), ("c", "other")]);
    let bad = get(&d, "/1.0/instances?all-projects=true&project=default");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.error(),
        "Cannot specify a project when requesting all projects"
    );
}

#[test]
fn one_instance_its_state_and_etag() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    let a = get(&d, "/1.0/instances/a");
    assert!(a.meta().get("state").is_none());
    let etag = a.header("ETag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let full = get(&d, "/1.0/instances/a?recursion=1").meta();
    assert_eq!(full["state"]["status"], "Running");
    assert!(full["state"]["pid"].as_u64().unwrap() > 0);
    let st = get(&d, "/1.0/instances/a/state").meta();
    assert_eq!(st["status_code"], 103);
    let miss = get(&d, "/1.0/instances/zz");
    assert_eq!(
        (miss.status, miss.error().as_str()),
        (404, "Instance not found")
    );
    assert_eq!(get(&d, "/1.0/instances/a?project=nope").status, 404);
    assert_eq!(get(&d, "/1.0/instances/zz/state").status, 404);
}

#[test]
fn patch_merges_and_an_empty_value_removes() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::stopped()
            .config("user.keep", "1")
            .config("user.gone", "x"),
    );
    let a = call(
        &d,
        "PATCH",
        "/1.0/instances/a",
        r#"{"config":{"user.new":"2","user.gone":""},"devices":{"m":{"type":"disk","source":"/src","path":"/mnt/m"}}}"#,
    );
    assert_eq!((a.status, a.meta()), (200, json!({})));
    let i = d.instance("default", "a").unwrap();
    assert_eq!(i.config.get("user.keep").map(String::as_str), Some("1"));
    assert_eq!(i.config.get("user.new").map(String::as_str), Some("2"));
    assert!(!i.config.contains_key("user.gone"));
    assert_eq!(i.devices["m"]["source"], "/src");
    // Same path twice, a device without a type: LXD's 500s.
    let dup = call(
        &d,
        "PATCH",
        "/1.0/instances/a",
        r#"{"devices":{"n":{"type":"disk","source":"/s","path":"/mnt/m"}}}"#,
    );
    assert_eq!(dup.status, 500);
    assert!(
        dup.error()
            .contains("More than one disk device uses the same path \"/mnt/m\""),
        "{}",
        dup.error()
    );
    let untyped = call(&d, "PATCH", "/1.0/instances/a", r#"{"devices":{"n":{}}}"#);
    assert_eq!(untyped.status, 500);
    assert!(untyped.error().contains("Missing device type in config"));
    assert_eq!(
        call(&d, "PATCH", "/1.0/instances/a", r#"{"restore":"s"}"#).status,
        400
    );
    assert_eq!(call(&d, "PATCH", "/1.0/instances/zz", r#"{}"#).status, 404);
}

#[test]
fn put_replaces_with_if_match_and_412_on_a_stale_etag() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::stopped()
            .config("user.a", "1")
            .device("m", &[("type", "disk"), ("source", "/s"), ("path", "/m")]),
    );
    let mut c = Conn::open(d.socket());
    let got = c.call("GET", "/1.0/instances/a", b"");
    let etag = got.header("ETag").unwrap().to_string();
    let mut put = got.meta();
    put["devices"].as_object_mut().unwrap().remove("m");
    let body = put.to_string();
    c.send(
        "PUT",
        "/1.0/instances/a",
        &[("If-Match", &etag)],
        body.as_bytes(),
    );
    let a = c.read();
    assert_eq!(a.json()["type"], "async");
    assert_eq!(wait(&d, &a.op())["status"], "Success");
    assert!(d.instance("default", "a").unwrap().devices.is_empty());
    // The old ETag no longer matches.
    c.send(
        "PUT",
        "/1.0/instances/a",
        &[("If-Match", &etag)],
        body.as_bytes(),
    );
    let stale = c.read();
    assert_eq!(stale.status, 412);
    assert!(
        stale.error().starts_with("ETag doesn't match: "),
        "{}",
        stale.error()
    );
    c.send(
        "PATCH",
        "/1.0/instances/a",
        &[("If-Match", "\"nope\"")],
        b"{}",
    );
    assert_eq!(c.read().status, 412);
}

#[test]
fn start_stop_restart_and_their_refusals() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    let op = run_op(
        &d,
        "PUT",
        "/1.0/instances/a/state",
        r#"{"action":"start","timeout":30}"#,
    );
    assert_eq!(op["description"], "Starting instance");
    assert_eq!(op["resources"]["instances"], json!(["/1.0/instances/a"]));
    assert_eq!(
        op["resources"]["containers"],
        json!(["/1.0/containers/a"]),
        "LXD 5.0 names containers too"
    );
    let i = d.instance("default", "a").unwrap();
    assert_eq!(i.status, Status::Running);
    assert!(i.ipv4.is_some() && i.pid > 0);
    let again = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"start"}"#).op(),
    );
    assert_eq!(
        (again["status"].as_str(), again["status_code"].as_u64()),
        (Some("Failure"), Some(400))
    );
    assert_eq!(again["err"], "The instance is already running");
    run_op(
        &d,
        "PUT",
        "/1.0/instances/a/state",
        r#"{"action":"restart"}"#,
    );
    run_op(
        &d,
        "PUT",
        "/1.0/instances/a/state",
        r#"{"action":"stop","force":true}"#,
    );
    assert_eq!(d.instance("default", "a").unwrap().status, Status::Stopped);
    let stopped = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#).op(),
    );
    assert_eq!(stopped["err"], "The instance is already stopped");
    let bad = call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"fly"}"#);
    assert_eq!(
        (bad.status, bad.error().as_str()),
        (400, "Unknown action: 'fly'")
    );
    assert_eq!(
        call(
            &d,
            "PUT",
            "/1.0/instances/zz/state",
            r#"{"action":"start"}"#
        )
        .status,
        404
    );
}

#[test]
fn delete_refuses_a_running_instance() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running().snapshot("s"));
    let a = call(&d, "DELETE", "/1.0/instances/a", "");
    assert_eq!((a.status, a.error().as_str()), (400, "Instance is running"));
    run_op(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#);
    let op = run_op(&d, "DELETE", "/1.0/instances/a", "");
    assert_eq!(op["description"], "Deleting instance");
    assert!(
        d.instance("default", "a").is_none(),
        "gone, snapshots and all"
    );
    assert_eq!(call(&d, "DELETE", "/1.0/instances/a", "").status, 404);
}

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
fn the_server_says_what_it_is() {
    let (_t, d) = double();
    let s = get(&d, "/1.0").meta();
    assert_eq!(s["environment"]["server"], "lxd");
    assert_eq!(s["environment"]["server_version"], "5.0.2");
    assert_eq!(
        s["environment"]["kernel_features"]["idmapped_mounts"],
        "true"
    );
    assert!(s["api_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "container_exec_signal_handling"));
    d.no_shift();
    let s = get(&d, "/1.0").meta();
    assert_eq!(
        s["environment"]["kernel_features"]["idmapped_mounts"],
        "false"
    );
    assert_eq!(
        s["environment"]["lxc_features"]["idmapped_mounts_v2"],
        "false"
    );
    d.set_family(Family::Incus);
    let s = get(&d, "/1.0").meta();
    assert_eq!(
        (
            s["environment"]["server"].as_str(),
            s["environment"]["server_version"].as_str()
        ),
        (Some("incus"), Some("6.0.4"))
    );
}

#[test]
fn a_shifted_disk_fails_to_start_without_idmapped_mounts() {
    let (_t, d) = double();
    d.no_shift();
    d.seed("default", "a", Instance::running());
    let dev = r#"{"devices":{"m":{"type":"disk","source":"/src","path":"/mnt/m","shift":"true"}}}"#;
    let a = call(&d, "PATCH", "/1.0/instances/a", dev);
    assert_eq!(a.status, 500);
    assert_eq!(
        a.error(),
        "Failed to start device \"m\": Required idmapping abilities not available"
    );
    assert!(
        d.instance("default", "a").unwrap().devices.is_empty(),
        "not added"
    );
    // On a stopped instance it is added, and then the start fails.
    run_op(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#);
    assert_eq!(call(&d, "PATCH", "/1.0/instances/a", dev).status, 200);
    let op = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"start"}"#).op(),
    );
    assert_eq!(
        op["err"],
        "Failed to start device \"m\": Required idmapping abilities not available"
    );
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
