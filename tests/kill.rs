//! SIGKILL at random moments (acceptance item 3): a loop starts the real
//! binary (`config set`, sometimes `compact`, auto-compaction often) and
//! kills it after a random delay. After every kill the store opens, every
//! acknowledged mutation is there, an unacknowledged one may or may not be
//! (but once seen it stays), and no temp file survives a writing command
//! that finished.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const ITERATIONS: usize = 400;
const CONTAINERS: usize = 8;

/// What the test knows of one container's `user.name` (values are `u<it>`).
#[derive(Default, Clone)]
struct Known {
    /// Iteration of the last acknowledged set.
    acked: Option<usize>,
    /// Unacknowledged sets since then: each may or may not have landed.
    maybe: Vec<usize>,
    /// Newest value seen so far: it must never go back.
    seen: Option<usize>,
}

impl Known {
    fn check(&mut self, c: usize, value: Option<&str>, it: usize) {
        let got = value.map(|v| {
            v.strip_prefix('u')
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("c{c}: value {v:?} was never written"))
        });
        let allowed = got == self.acked || got.is_some_and(|n| self.maybe.contains(&n));
        assert!(
            allowed,
            "after iteration {it}: c{c}.user.name is {got:?}; acknowledged {:?}, maybe {:?}",
            self.acked, self.maybe
        );
        assert!(
            got >= self.seen,
            "after iteration {it}: c{c} went back from {:?} to {got:?}",
            self.seen
        );
        self.seen = got;
    }
}

/// Counts of what the run went through, to show it was not vacuous.
#[derive(Default, Debug)]
struct Stats {
    acked: usize,
    killed: usize,
    torn_tails_cut: usize,
    compactions_finished: usize,
    temps_removed: usize,
}

impl Stats {
    fn notices(&mut self, stderr: &str) {
        self.torn_tails_cut += stderr.matches("dropped").count();
        self.compactions_finished += stderr.matches("finished an interrupted").count();
        self.temps_removed += stderr.matches("left by an interrupted").count();
    }
}

/// Median run time of an unkilled `config set`, to aim the kills.
fn typical_run(dir: &Path) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|n| {
            let start = Instant::now();
            set(dir, "defaults.ports", &format!("{}", 100 + n));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_mutation() {
    let dir = tempdir();
    let dir = dir.path();
    write_go_yaml(dir, CONTAINERS);
    // Kill anywhere from before exec to after exit: 0..15 ms, or 0..2x a
    // typical run on a slow machine.
    let max_delay = typical_run(dir).mul_f64(2.0).max(Duration::from_millis(15));
    let (mut acked_total, mut attempted_total) = (5u64, 5u64);
    let mut known = vec![Known::default(); CONTAINERS];
    let mut stats = Stats::default();
    let mut rng = Rng::new(0x5eed_1d4d);
    let started = Instant::now();
    for it in 0..ITERATIONS {
        let c = it % CONTAINERS;
        let compact = rng.below(5) == 0;
        let mut cmd = ldm_std(dir);
        cmd.env("LDM_AUTO_COMPACT_BYTES", "2048");
        if compact {
            cmd.arg("compact");
        } else {
            let key = format!("containers.c{c}.user.name");
            cmd.args(["config", "set", &key, &format!("u{it}")]);
            attempted_total += 1;
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = child;
        std::thread::sleep(max_delay.mul_f64(rng.below(1000) as f64 / 1000.0));
        let _ = child.kill(); // No effect if it has exited already.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stats.notices(&stderr);
        match out.status.code() {
            Some(0) => {
                stats.acked += 1;
                assert!(
                    temps(dir).is_empty(),
                    "iteration {it}: {:?} after success",
                    temps(dir)
                );
                if !compact {
                    acked_total += 1;
                    known[c].acked = Some(it);
                    known[c].maybe.clear();
                }
            }
            Some(code) => panic!("iteration {it}: exit {code} without a kill: {stderr}"),
            None => {
                stats.killed += 1;
                if !compact {
                    known[c].maybe.push(it);
                }
            }
        }

        // A reader: the store always opens, and says what the library says.
        let (code, out, err) = run(
            dir,
            &["config", "get", &format!("containers.c{c}.user.name")],
        );
        assert_eq!(code, 0, "iteration {it}: the store does not open: {err}");
        let project = state(dir);
        for (x, k) in known.iter_mut().enumerate() {
            let user = project.containers[&format!("c{x}")].user.as_ref();
            let value = user.and_then(|u| u.name.as_deref());
            if x == c {
                assert_eq!(
                    out.trim(),
                    value.unwrap_or("dev"),
                    "iteration {it}: CLI and library differ"
                );
            }
            k.check(x, value, it);
        }
        let seq = last_seq(dir);
        assert!(
            (acked_total..=attempted_total).contains(&seq),
            "iteration {it}: {seq} records, {acked_total} acknowledged, {attempted_total} attempted"
        );

        // Now and then a writer that is not killed: it must clean up.
        if it % 25 == 24 {
            let (code, _, err) = run(
                dir,
                &["config", "set", "defaults.ports", &format!("{}", 1000 + it)],
            );
            assert_eq!(code, 0, "iteration {it}: {err}");
            stats.notices(&err);
            assert!(
                temps(dir).is_empty(),
                "iteration {it}: {:?} survived",
                temps(dir)
            );
            acked_total += 1;
            attempted_total += 1;
            assert_eq!(state(dir).defaults.ports, vec![(1000 + it) as u16]);
        }
    }
    let (code, _, err) = run(dir, &["config", "set", "defaults.ports", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(temps(dir).is_empty(), "{:?}", temps(dir));
    assert_healthy(dir);
    eprintln!(
        "{ITERATIONS} iterations in {:?}, kill delays up to {max_delay:?}: {stats:?}",
        started.elapsed()
    );
    assert!(stats.killed > 0 && stats.acked > 0, "{stats:?}");
}
