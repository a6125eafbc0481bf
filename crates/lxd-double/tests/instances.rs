//! Instances: listing at each recursion, one instance with its ETag,
//! config and device changes, power, delete, and what the server says it
//! is.

mod client;

use client::{call, double, get, run_op, wait, Conn};
use lxd_double::{Family, Instance, Status};
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

/// A rename, as LXD 5.0's `instancePost`: a taken or invalid name is
/// refused at once; a running instance fails in the operation; a stopped
/// one moves with its config and snapshots, in its own project only.
#[test]
fn rename_moves_a_stopped_instance_with_its_snapshots() {
    let (_t, d) = double();
    d.seed(
        "default",
        "a",
        Instance::running().config("user.k", "v").snapshot("s1"),
    );
    d.seed("default", "b", Instance::stopped());
    d.add_project("other", &[]);
    d.seed("other", "a", Instance::stopped());

    let taken = call(&d, "POST", "/1.0/instances/a", r#"{"name":"b"}"#);
    assert_eq!(
        (taken.status, taken.error()),
        (409, "Name \"b\" already in use".to_string())
    );
    let bad = call(&d, "POST", "/1.0/instances/a", r#"{"name":"1x"}"#);
    assert_eq!(bad.status, 400);
    let none = call(&d, "POST", "/1.0/instances/zz", r#"{"name":"y"}"#);
    assert_eq!(none.status, 404);

    let running = call(&d, "POST", "/1.0/instances/a", r#"{"name":"c"}"#);
    let op = wait(&d, &running.op());
    assert_eq!(op["status"], "Failure", "{op}");
    assert_eq!(op["err"], "Renaming of running instance not allowed");
    assert!(d.instance("default", "a").is_some());

    run_op(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#);
    let op = run_op(&d, "POST", "/1.0/instances/a", r#"{"name":"c"}"#);
    assert_eq!(op["description"], "Renaming instance");
    assert!(d.instance("default", "a").is_none());
    let c = d.instance("default", "c").expect("renamed");
    assert_eq!(c.snapshot_names(), ["s1"]);
    assert_eq!(c.config.get("user.k").map(String::as_str), Some("v"));
    assert_eq!(get(&d, "/1.0/instances/c").meta()["name"], "c");
    assert!(
        d.instance("other", "a").is_some(),
        "another project's is left"
    );
}
