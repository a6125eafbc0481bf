//! Parallel `container create`s against the LXD API TEST DOUBLE
//! (`crates/lxd-double`) with a slow launch (issue 3): the project lock is
//! never held across LXD calls, so eight creates' launches run at the same
//! time, and a second create of a taken name fails at once, naming the
//! owner.
//!
//! What proves it is the order of events the double records (each
//! create request's arrival, the end of the operation it started, and the
//! ldm process that sent it), not a wall-clock bound: a loaded machine
//! makes everything slower, but it cannot make launches that waited for
//! each other overlap.

mod common;

use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::api::Env;
use lxd_double::{Image, Match};

/// Both tests start slow launches: one at a time, so neither starves the
/// other of the 2 cores a CI machine has.
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits for all `children` at once; returns each one's exit code, stderr
/// and the time it ended.
fn finish(children: Vec<Child>) -> Vec<(i32, String, Instant)> {
    let threads: Vec<_> = children
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                let ended = Instant::now();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                (out.status.code().unwrap_or(-1), stderr, ended)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The launches (`POST /1.0/instances`): each one's arrival, the end of
/// the create operation it started (it must have ended), and the pid of
/// the ldm process that sent it.
fn launches(env: &Env) -> Vec<(Instant, Instant, Option<i32>)> {
    let ops = env.double.operations();
    env.requests()
        .iter()
        .filter(|r| r.is("POST", "/1.0/instances"))
        .map(|r| {
            let id = r.operation.as_deref().expect("the create's operation");
            let op = ops.iter().find(|o| o.id == id).unwrap();
            let end = op
                .finished
                .unwrap_or_else(|| panic!("create {id} never ended"));
            (r.start, end, r.peer_pid)
        })
        .collect()
}

/// An LXD double with image `debian/12` whose creates take 6 s.
fn slow_env(name: &str) -> Env {
    let env = Env::new(name);
    env.double.add_image("default", Image::new("debian/12"));
    env.double
        .slow(Match::new("POST", "/1.0/instances"), Duration::from_secs(6));
    env
}

/// Eight creates with a 6 s launch each, started at once. If they waited
/// for each other (a lock held across the launch), each launch would start
/// after the one before it ended. So: every launch starts before any of
/// them ends.
#[test]
fn eight_creates_run_in_parallel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("par");
    env.double.add_image("default", Image::new("debian/12"));
    env.ok(&["-q", "container", "create", "base", "debian/12"]);
    env.take_requests();
    env.double
        .slow(Match::new("POST", "/1.0/instances"), Duration::from_secs(6));
    let names: Vec<String> = (1..=8).map(|i| format!("c{i}")).collect();
    let children: Vec<Child> = names
        .iter()
        .map(|n| env.spawn(&["-q", "container", "create", n, "debian/12"], &[]))
        .collect();
    let results = finish(children);
    for (name, (code, stderr, _)) in names.iter().zip(&results) {
        assert_eq!(*code, 0, "{name}: {stderr}");
    }
    let p = env.project();
    assert_eq!(p.containers.len(), 9);
    assert!(names.iter().all(|n| p.containers.contains_key(n)));
    env.assert_agree();

    let launches = launches(&env);
    assert_eq!(launches.len(), 8, "{launches:?}");
    // One launch per create, each made by a different ldm process.
    let mut senders: Vec<i32> = launches.iter().map(|l| l.2.unwrap()).collect();
    senders.sort();
    senders.dedup();
    assert_eq!(senders.len(), 8, "{launches:?}");
    let last_start = launches.iter().map(|l| l.0).max().unwrap();
    let first_end = launches.iter().map(|l| l.1).min().unwrap();
    let first_start = launches.iter().map(|l| l.0).min().unwrap();
    eprintln!(
        "8 launches of 6 s: all started within {:.2} s of the first; the first ended {:.2} s after the last started",
        (last_start - first_start).as_secs_f64(),
        first_end.saturating_duration_since(last_start).as_secs_f64()
    );
    assert!(
        last_start < first_end,
        "a launch started {:.2} s after another had ended: the creates waited for each other; launches (start, end, pid): {launches:?}",
        last_start.saturating_duration_since(first_end).as_secs_f64()
    );
}

#[test]
fn same_name_twice_at_once_one_wins_the_other_fails_fast() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = slow_env("race");
    let a = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &[]);
    let b = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &[]);
    let (pa, pb) = (a.id(), b.id());
    let mut results = finish(vec![a, b]);
    let (rb, ra) = (results.pop().unwrap(), results.pop().unwrap());
    let ((winner, won), (loser, lost)) = if ra.0 == 0 {
        ((pa, ra), (pb, rb))
    } else {
        ((pb, rb), (pa, ra))
    };
    assert_eq!(won.0, 0, "winner: {}", won.1);
    assert_eq!(lost.0, 1, "loser: {}", lost.1);
    assert!(
        lost.1.contains(&format!("pid {winner}")) && lost.1.contains("busy"),
        "loser says who holds the name: {}",
        lost.1
    );
    let reqs = env.requests();
    assert!(
        reqs.iter().all(|r| r.peer_pid != Some(loser as i32)),
        "the loser asked LXD: {:?}",
        reqs.iter().map(|r| r.line()).collect::<Vec<_>>()
    );
    let launches = launches(&env);
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].2, Some(winner as i32));
    // "At once": the loser did not wait for the winner's (slow) launch.
    let (launch_start, launch_end, _) = launches[0];
    eprintln!(
        "winner {winner}'s launch ran {:.2} s; loser {loser} exited {:.2} s before it ended",
        (launch_end - launch_start).as_secs_f64(),
        launch_end.saturating_duration_since(lost.2).as_secs_f64()
    );
    assert!(
        lost.2 < launch_end,
        "the loser exited {:.2} s after the winner's launch ended: it waited for the winner",
        lost.2.saturating_duration_since(launch_end).as_secs_f64()
    );
    env.assert_agree();
}
