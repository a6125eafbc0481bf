//! Parallel `container create`s against the LXD client TEST DOUBLE
//! (tests/lxd_double/lxc) with a slow launch (issue 3): the project lock is
//! never held across LXD calls, so eight creates take one launch's time, and
//! a second create of a taken name fails at once, naming the owner.

mod double;

use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use double::Env;

/// The two tests time themselves: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits for all `children` at once; returns each one's exit code, stderr
/// and when it ended (since `start`).
fn finish(children: Vec<Child>, start: Instant) -> Vec<(i32, String, Duration)> {
    let threads: Vec<_> = children
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                (out.status.code().unwrap_or(-1), stderr, start.elapsed())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Eight creates with a 6 s launch each. What proves they do not wait for
/// each other: all eight launches start before the first one ends, and the
/// wall time is far below the 8 x 6 s of creates serialized on a lock. The
/// bound is 8 s, plus, on a loaded machine (other builds and LXD runs share
/// the 2 cores), the measured time of the other steps of one create (5
/// client calls, 2 commits), `base`, times 8: those steps are CPU work.
#[test]
fn eight_creates_run_in_parallel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("par");
    let base = env
        .ok(&["-q", "container", "create", "base", "debian/12"])
        .elapsed;
    env.take_calls();
    let slow = [("LDM_DOUBLE_SLOW", "launch=6")];
    let names: Vec<String> = (1..=8).map(|i| format!("c{i}")).collect();
    let start = Instant::now();
    let children: Vec<Child> = names
        .iter()
        .map(|n| env.spawn(&["-q", "container", "create", n, "debian/12"], &slow))
        .collect();
    let results = finish(children, start);
    let wall = start.elapsed();
    let bound = Duration::from_secs(6) + Duration::from_secs(2).max(base * 8);
    eprintln!(
        "8 parallel creates, 6 s launch each: {:.2} s wall (bound {:.2} s; one create without the slow launch: {:.2} s; serialized would be ~{:.0} s)",
        wall.as_secs_f64(),
        bound.as_secs_f64(),
        base.as_secs_f64(),
        8.0 * (6.0 + base.as_secs_f64())
    );
    for (name, (code, stderr, _)) in names.iter().zip(&results) {
        assert_eq!(*code, 0, "{name}: {stderr}");
    }
    let p = env.project();
    assert_eq!(p.containers.len(), 9);
    assert!(names.iter().all(|n| p.containers.contains_key(n)));
    env.assert_agree();
    let launches: Vec<f64> = env
        .calls()
        .iter()
        .filter(|c| c.argv[0] == "launch")
        .map(|c| c.t)
        .collect();
    assert_eq!(launches.len(), 8);
    let spread = launches.iter().cloned().fold(f64::MIN, f64::max)
        - launches.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread < 6.0,
        "the last launch started {spread:.2} s after the first: creates waited for each other"
    );
    assert!(wall < bound, "took {wall:?}, more than {bound:?}");
}

#[test]
fn same_name_twice_at_once_one_wins_the_other_fails_fast() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("race");
    let slow = [("LDM_DOUBLE_SLOW", "launch=6")];
    let start = Instant::now();
    let a = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &slow);
    let b = env.spawn(&["-q", "container", "create", "dev", "debian/12"], &slow);
    let (pa, pb) = (a.id(), b.id());
    let mut results = finish(vec![a, b], start);
    let (rb, ra) = (results.pop().unwrap(), results.pop().unwrap());
    let ((winner, won), (loser, lost)) = if ra.0 == 0 {
        ((pa, ra), (pb, rb))
    } else {
        ((pb, rb), (pa, ra))
    };
    eprintln!(
        "winner {winner} done after {:.2} s; loser {loser} failed after {:.2} s",
        won.2.as_secs_f64(),
        lost.2.as_secs_f64()
    );
    assert_eq!(won.0, 0, "winner: {}", won.1);
    assert_eq!(lost.0, 1, "loser: {}", lost.1);
    assert!(
        lost.1.contains(&format!("pid {winner}")) && lost.1.contains("busy"),
        "loser says who holds the name: {}",
        lost.1
    );
    assert!(
        lost.2 < Duration::from_secs(3),
        "the loser waited {:?}",
        lost.2
    );
    let calls = env.calls();
    assert!(
        calls.iter().all(|c| c.ppid != loser),
        "the loser called the client: {calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| c.argv[0] == "launch").count(), 1);
    env.assert_agree();
}
