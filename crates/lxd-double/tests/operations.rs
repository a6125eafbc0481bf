//! Operations: listing by project and status, waiting with a timeout,
//! cancelling, the instance lock (busy as LXD 5.0.2 words it), an
//! instance being created, and the slow, failing and hanging knobs.

mod client;

use std::time::{Duration, Instant};

use client::{call, double, get, wait, Conn};
use lxd_double::{Action, HangAt, Hold, Instance, Match, OpStatus};
use serde_json::json;

const SLOW: Duration = Duration::from_millis(600);

#[test]
fn operations_are_listed_by_status_and_project_and_vanish_after_retention() {
    let (_t, d) = double();
    assert_eq!(
        get(&d, "/1.0/operations?recursion=1").meta(),
        json!({}),
        "none: an empty object"
    );
    d.seed("default", "a", Instance::running());
    d.add_project("p", &[]);
    d.seed("p", "b", Instance::running());
    d.slow(Match::new("PUT", "/1.0/instances/a/state"), SLOW);
    let id = call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#).op();
    call(
        &d,
        "PUT",
        "/1.0/instances/b/state?project=p",
        r#"{"action":"stop"}"#,
    );
    let ops = get(&d, "/1.0/operations?recursion=1&project=default").meta();
    assert_eq!(ops["running"][0]["id"], id.as_str());
    assert_eq!(
        ops["running"].as_array().unwrap().len(),
        1,
        "only this project's"
    );
    assert_eq!(
        get(&d, "/1.0/operations").meta()["running"][0],
        format!("/1.0/operations/{id}")
    );
    assert_eq!(wait(&d, &id)["status"], "Success");
    assert!(get(&d, "/1.0/operations?recursion=1").meta()["success"].is_array());
    d.state().behaviour.operation_retention = Duration::ZERO;
    assert_eq!(
        get(&d, &format!("/1.0/operations/{id}")).status,
        404,
        "forgotten as LXD forgets"
    );
    assert_eq!(get(&d, &format!("/1.0/operations/{id}/wait")).status, 404);
    assert!(
        d.operations().iter().any(|o| o.id == id),
        "the test still sees it"
    );
}

#[test]
fn wait_returns_a_running_operation_after_its_timeout() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    let id = d.busy("default", "a", Action::Stop, Hold::UntilReleased);
    let t = Instant::now();
    let a = get(&d, &format!("/1.0/operations/{id}/wait?timeout=1"));
    assert!(t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (a.status, a.meta()["status"].as_str()),
        (200, Some("Running"))
    );
    assert_eq!(
        get(&d, &format!("/1.0/operations/{id}/wait?timeout=0")).meta()["status"],
        "Running"
    );
    assert_eq!(
        get(&d, &format!("/1.0/operations/{id}/wait?timeout=x")).status,
        500
    );
    d.release_operation(&id);
    assert_eq!(wait(&d, &id)["status"], "Success");
    assert_eq!(get(&d, "/1.0/operations/nope/wait").status, 404);
}

#[test]
fn cancel_refuses_what_cannot_be_cancelled() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    let id = d.busy("default", "a", Action::Stop, Hold::UntilReleased);
    let a = call(&d, "DELETE", &format!("/1.0/operations/{id}"), "");
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "This operation can't be cancelled")
    );
    d.release_operation(&id);
    wait(&d, &id);
    let a = call(&d, "DELETE", &format!("/1.0/operations/{id}"), "");
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "Only running operations can be cancelled")
    );
    assert_eq!(call(&d, "DELETE", "/1.0/operations/nope", "").status, 404);
}

#[test]
fn a_busy_instance_refuses_other_operations_as_lxd_does() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    let create = d.busy("default", "a", Action::Create, Hold::UntilReleased);
    // Async requests get their operation, which fails with LXD's words.
    let del = wait(&d, &call(&d, "DELETE", "/1.0/instances/a", "").op());
    assert_eq!(del["err"], "Failed to create instance delete operation: Instance is busy running a \"create\" operation");
    let start = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"start"}"#).op(),
    );
    assert_eq!(start["err"], "Failed to create instance start operation: Instance is busy running a \"create\" operation");
    let restore = wait(
        &d,
        &call(&d, "PUT", "/1.0/instances/a", r#"{"restore":"s"}"#).op(),
    );
    assert!(restore["err"]
        .as_str()
        .unwrap()
        .starts_with("Failed to create instance restore operation: "));
    // A sync change is a 500.
    let patch = call(
        &d,
        "PATCH",
        "/1.0/instances/a",
        r#"{"config":{"user.a":"1"}}"#,
    );
    assert_eq!(patch.status, 500);
    assert_eq!(patch.error(), "Failed to create instance update operation: Instance is busy running a \"create\" operation");
    // What is busy, the client learns from the operations.
    let ops = get(&d, "/1.0/operations?recursion=1").meta();
    let running = ops["running"].as_array().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["description"], "Creating instance");
    assert_eq!(
        running[0]["resources"]["instances"],
        json!(["/1.0/instances/a"])
    );
    d.release_operation(&create);
    wait(&d, &create);
    let op = wait(&d, &call(&d, "DELETE", "/1.0/instances/a", "").op());
    assert_eq!(op["status"], "Success");
}

#[test]
fn the_same_action_waits_for_the_running_one_and_takes_its_success() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    d.slow(Match::new("PUT", "/1.0/instances/a/state").nth(1), SLOW);
    let first = call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#).op();
    let second = call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#).op();
    let t = Instant::now();
    assert_eq!(
        wait(&d, &second)["status"],
        "Success",
        "not 'already stopped'"
    );
    assert!(t.elapsed() >= SLOW / 2, "it waited for the first");
    assert_eq!(wait(&d, &first)["status"], "Success");
}

#[test]
fn an_instance_being_created_is_404_until_its_operation_ends() {
    let (_t, d) = double();
    let id = d.creating("default", "a", Instance::running(), Hold::UntilReleased);
    assert_eq!(get(&d, "/1.0/instances/a").status, 404);
    assert_eq!(get(&d, "/1.0/instances").meta(), json!([]));
    let running = get(&d, "/1.0/operations?recursion=1").meta()["running"].clone();
    assert_eq!(running[0]["description"], "Creating instance");
    d.release_operation(&id);
    wait(&d, &id);
    assert_eq!(get(&d, "/1.0/instances/a").meta()["status"], "Running");

    // With an early record (LXD unpacking a local image): Stopped, busy.
    d.state().behaviour.create_record_early = true;
    let id = d.creating("default", "b", Instance::running(), Hold::UntilReleased);
    assert!(d.wait_hang(Duration::from_secs(5)).is_some());
    assert_eq!(get(&d, "/1.0/instances/b").meta()["status"], "Stopped");
    let del = wait(&d, &call(&d, "DELETE", "/1.0/instances/b", "").op());
    assert!(del["err"]
        .as_str()
        .unwrap()
        .ends_with("Instance is busy running a \"create\" operation"));
    d.release_operation(&id);
    wait(&d, &id);
    assert_eq!(get(&d, "/1.0/instances/b").meta()["status"], "Running");
}

#[test]
fn a_create_request_is_404_until_done_and_the_early_record_when_asked() {
    let (_t, d) = double();
    d.add_image("default", lxd_double::Image::new("img"));
    d.hang(Match::new("POST", "/1.0/instances"), HangAt::Operation);
    let id = call(
        &d,
        "POST",
        "/1.0/instances",
        r#"{"name":"a","source":{"type":"image","alias":"img"}}"#,
    )
    .op();
    let h = d.wait_hang(Duration::from_secs(5)).expect("held");
    assert_eq!(
        (h.at, h.operation.as_deref()),
        (HangAt::Operation, Some(id.as_str()))
    );
    assert_eq!(get(&d, "/1.0/instances/a").status, 404);
    d.release(h.id);
    assert_eq!(wait(&d, &id)["status"], "Success");
    assert!(d.instance("default", "a").is_some());
}

#[test]
fn slow_makes_operations_take_longer_and_sync_answers_later() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    d.slow(Match::new("*", "/1.0/instances/*/**"), SLOW);
    let t = Instant::now();
    let a = call(&d, "PUT", "/1.0/instances/a/state", r#"{"action":"stop"}"#);
    assert!(t.elapsed() < SLOW, "the 202 comes at once");
    assert!(
        d.instance("default", "a").unwrap().is_running(),
        "not stopped yet"
    );
    wait(&d, &a.op());
    assert!(t.elapsed() >= SLOW);
    let t = Instant::now();
    assert_eq!(get(&d, "/1.0/instances/a/state").status, 200);
    assert!(t.elapsed() >= SLOW, "a sync answer comes late");
}

#[test]
fn fail_operation_fails_without_effect() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::running());
    d.fail_operation(
        Match::new("POST", "/1.0/instances/*/snapshots").first(1),
        "Create instance snapshot: out of space",
    );
    let op = wait(
        &d,
        &call(&d, "POST", "/1.0/instances/a/snapshots", r#"{"name":"s"}"#).op(),
    );
    assert_eq!(
        (op["status_code"].as_u64(), op["err"].as_str()),
        (Some(400), Some("Create instance snapshot: out of space"))
    );
    assert!(d.instance("default", "a").unwrap().snapshots.is_empty());
    let op = wait(
        &d,
        &call(&d, "POST", "/1.0/instances/a/snapshots", r#"{"name":"s"}"#).op(),
    );
    assert_eq!(op["status"], "Success", "first(1) only");
}

#[test]
fn a_request_held_before_its_effect_tells_the_test_and_survives_its_client() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    d.hang(Match::new("DELETE", "/1.0/instances/*"), HangAt::Request);
    let mut c = Conn::open(d.socket());
    c.send("DELETE", "/1.0/instances/a", &[], b"");
    let h = d.wait_hang(Duration::from_secs(5)).expect("held");
    assert_eq!(
        (h.method.as_str(), h.target.as_str(), h.at),
        ("DELETE", "/1.0/instances/a", HangAt::Request)
    );
    assert_eq!(h.peer_pid, Some(std::process::id() as i32));
    assert!(d.instance("default", "a").is_some(), "no effect yet");
    drop(c); // the client dies mid-request
    d.release(h.id);
    assert!(d.wait_idle(Duration::from_secs(5)));
    let log = d.requests();
    assert_eq!(log[0].end, None, "never answered");
    assert!(
        d.operations().iter().all(|o| o.status == OpStatus::Success),
        "the server still did it"
    );
    assert!(
        d.wait_hang(Duration::from_millis(50)).is_none(),
        "reported once"
    );
}

#[test]
fn a_request_held_after_its_effect_is_not_answered_until_released() {
    let (_t, d) = double();
    d.seed("default", "a", Instance::stopped());
    d.hang(Match::new("PATCH", "/1.0/instances/a"), HangAt::Response);
    let dd = &d;
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            call(
                dd,
                "PATCH",
                "/1.0/instances/a",
                r#"{"config":{"user.a":"1"}}"#,
            )
        });
        let h = d.wait_hang(Duration::from_secs(5)).expect("held");
        assert_eq!(
            d.instance("default", "a").unwrap().config["user.a"],
            "1",
            "done already"
        );
        assert!(d.requests()[0].end.is_none());
        d.release(h.id);
        assert_eq!(t.join().unwrap().status, 200);
    });
}
