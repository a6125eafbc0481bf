//! Parallel `container create`s against the LXD client TEST DOUBLE
//! (tests/lxd_double/lxc) with a slow launch (issue 3): the project lock is
//! never held across LXD calls, so eight creates' launches run at the same
//! time, and a second create of a taken name fails at once, naming the
//! owner.
//!
//! What proves it is the order of events the double records (each call's
//! start in calls.jsonl, its end in ends.jsonl), not a wall-clock bound: a
//! loaded machine makes everything slower, but it cannot make calls that
//! waited for each other overlap.

mod double;

use std::process::Child;
use std::sync::Mutex;
use std::time::SystemTime;

use double::{Call, Env};

/// Both tests start slow launches: one at a time, so neither starves the
/// other of the 2 cores a CI machine has.
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits for all `children` at once; returns each one's exit code, stderr
/// and the Unix time it ended.
fn finish(children: Vec<Child>) -> Vec<(i32, String, f64)> {
    let threads: Vec<_> = children
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                let ended = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                (out.status.code().unwrap_or(-1), stderr, ended)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The `launch` calls, each with its end time (it must have finished).
fn launches(calls: &[Call]) -> Vec<(f64, f64)> {
    calls
        .iter()
        .filter(|c| c.argv[0] == "launch")
        .map(|c| {
            let end = c
                .end
                .unwrap_or_else(|| panic!("launch call {c:?} never ended"));
            (c.t, end)
        })
        .collect()
}

/// Eight creates with a 6 s launch each, started at once. If they waited
/// for each other (a lock held across the launch), each launch would start
/// after the one before it ended. So: every launch starts before any of
/// them ends.
#[test]
fn eight_creates_run_in_parallel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("par");
    env.ok(&["-q", "container", "create", "base", "debian/12"]);
    env.take_calls();
    let slow = [("LDM_DOUBLE_SLOW", "launch=6")];
    let names: Vec<String> = (1..=8).map(|i| format!("c{i}")).collect();
    let children: Vec<Child> = names
        .iter()
        .map(|n| env.spawn(&["-q", "container", "create", n, "debian/12"], &slow))
        .collect();
    let results = finish(children);
    for (name, (code, stderr, _)) in names.iter().zip(&results) {
        assert_eq!(*code, 0, "{name}: {stderr}");
    }
    let p = env.project();
    assert_eq!(p.containers.len(), 9);
    assert!(names.iter().all(|n| p.containers.contains_key(n)));
    env.assert_agree();

    let calls = env.calls();
    let launches = launches(&calls);
    assert_eq!(launches.len(), 8, "{calls:?}");
    // One launch per create, each made by a different ldm process.
    let mut parents: Vec<u32> = calls
        .iter()
        .filter(|c| c.argv[0] == "launch")
        .map(|c| c.ppid)
        .collect();
    parents.sort();
    parents.dedup();
    assert_eq!(parents.len(), 8, "{calls:?}");
    let last_start = launches.iter().map(|l| l.0).fold(f64::MIN, f64::max);
    let first_end = launches.iter().map(|l| l.1).fold(f64::MAX, f64::min);
    let first_start = launches.iter().map(|l| l.0).fold(f64::MAX, f64::min);
    eprintln!(
        "8 launches of 6 s: all started within {:.2} s of the first; the first ended {:.2} s after the last started",
        last_start - first_start,
        first_end - last_start
    );
    assert!(
        last_start < first_end,
        "a launch started {:.2} s after another had ended: the creates waited for each other; launches (start, end): {launches:?}",
        last_start - first_end
    );
}

#[test]
fn same_name_twice_at_once_one_wins_the_other_fails_fast() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("race");
    let slow = [("LDM_DOUBLE_SLOW", "launch=6")];
    let a = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &slow);
    let b = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &slow);
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
    let calls = env.calls();
    assert!(
        calls.iter().all(|c| c.ppid != loser),
        "the loser called the client: {calls:?}"
    );
    let launches = launches(&calls);
    assert_eq!(launches.len(), 1, "{calls:?}");
    // "At once": the loser did not wait for the winner's (slow) launch.
    let (launch_start, launch_end) = launches[0];
    eprintln!(
        "winner {winner}'s launch ran {:.2} s; loser {loser} exited {:.2} s before it ended",
        launch_end - launch_start,
        launch_end - lost.2
    );
    assert!(
        lost.2 < launch_end,
        "the loser exited {:.2} s after the winner's launch ended: it waited for the winner",
        lost.2 - launch_end
    );
    env.assert_agree();
}
