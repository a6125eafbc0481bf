//! Parallel processes of the real binary (acceptance items 2 and 6): eight
//! writers of 100 mutations each lose nothing and never time out, with and
//! without concurrent compaction and readers; and the lock really excludes.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ldm::model::Mutation;
use ldm::store::{recover, OsFs};

const WRITERS: usize = 8;
const PER_WRITER: usize = 100;

/// Mutation `k` of writer `i`: even ones set the ports of `ci`, odd ones its
/// user name; every value is distinct.
fn planned(i: usize, k: usize) -> (String, String, Mutation) {
    let container = Some(format!("c{i}"));
    if k.is_multiple_of(2) {
        let port = (10_000 + i * 1000 + k) as u16;
        let m = Mutation::PortsSet {
            container,
            ports: vec![port],
        };
        (format!("containers.c{i}.ports"), port.to_string(), m)
    } else {
        let name = format!("u{i}-{k}");
        let m = Mutation::UserNameSet {
            container,
            name: Some(name.clone()),
        };
        (format!("containers.c{i}.user.name"), name, m)
    }
}

/// Runs the writers (and `readers` reader loops on `c0`'s ports) at once;
/// panics with every failed invocation.
fn run_writers(dir: &Path, compact_floor: Option<&'static str>, readers: usize) {
    let done = Arc::new(AtomicBool::new(false));
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (dir, done) = (dir.to_path_buf(), done.clone());
            std::thread::spawn(move || read_loop(&dir, &done))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let dir: PathBuf = dir.to_path_buf();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for k in 0..PER_WRITER {
                    let (key, value, _) = planned(i, k);
                    let mut cmd = ldm_std(&dir);
                    cmd.args(["config", "set", &key, &value]);
                    if let Some(floor) = compact_floor {
                        cmd.env("LDM_AUTO_COMPACT_BYTES", floor);
                    }
                    let out = cmd.output().expect("spawn ldm");
                    if !out.status.success() {
                        failures.push(format!(
                            "writer {i} mutation {k}: {:?}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = writers
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    done.store(true, Ordering::SeqCst);
    let reads: usize = reader_threads
        .into_iter()
        .map(|t| t.join().expect("reader thread"))
        .sum();
    assert!(
        failures.is_empty(),
        "{} of {} invocations failed:\n{}",
        failures.len(),
        WRITERS * PER_WRITER,
        failures.join("\n")
    );
    assert!(readers == 0 || reads > 0, "the readers never ran");
}

/// Reads `c0`'s ports until `done`: every read succeeds and the value never
/// goes back (writer 0 sets increasing ports), so no reader ever sees two
/// generations mixed or a record missing. Returns the number of reads.
fn read_loop(dir: &Path, done: &AtomicBool) -> usize {
    let mut seen = 0u64;
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) {
        let out = ldm_std(dir)
            .args(["config", "get", "containers.c0.ports", "--json"])
            .output()
            .expect("spawn ldm");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "reader failed: {stderr}");
        assert!(stderr.is_empty(), "reader printed: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let port = v["value"][0].as_u64().unwrap_or(0);
        assert!(port >= seen, "c0 ports went back from {seen} to {port}");
        seen = port;
        reads += 1;
    }
    reads
}

/// Every writer's last value is the final state, and the sequence numbers
/// count exactly the 800 mutations.
fn check_final(dir: &Path) {
    let project = state(dir);
    for i in 0..WRITERS {
        let c = &project.containers[&format!("c{i}")];
        let (_, _, last_ports) = planned(i, PER_WRITER - 2);
        let (_, _, last_name) = planned(i, PER_WRITER - 1);
        let Mutation::PortsSet { ports, .. } = last_ports else {
            unreachable!()
        };
        let Mutation::UserNameSet { name, .. } = last_name else {
            unreachable!()
        };
        assert_eq!(c.ports, ports, "c{i} ports");
        assert_eq!(
            c.user.as_ref().and_then(|u| u.name.clone()),
            name,
            "c{i} user"
        );
    }
    assert_eq!(last_seq(dir), (WRITERS * PER_WRITER) as u64);
    assert!(temps(dir).is_empty(), "temp files left: {:?}", temps(dir));
    assert_healthy(dir);
}

#[test]
fn eight_writers_lose_no_mutation_and_never_time_out() {
    let dir = tempdir();
    write_go_yaml(dir.path(), WRITERS);
    run_writers(dir.path(), None, 0);
    check_final(dir.path());
    // No compaction ran (the log stays under the 64 KiB floor), so the log
    // holds all 800 records: each exactly once, each writer's in its order.
    let bytes = std::fs::read(dir.path().join("containers.log")).unwrap();
    let scan = ldm::store::log::scan(
        &bytes[ldm::store::record::HEADER_LEN..],
        ldm::store::log::FIRST_RECORD,
        None,
    );
    let entries = &scan.entries;
    assert_eq!(entries.len(), WRITERS * PER_WRITER);
    let plan: BTreeMap<String, (usize, usize)> = (0..WRITERS)
        .flat_map(|i| (0..PER_WRITER).map(move |k| (i, k)))
        .map(|(i, k)| (serde_json::to_string(&planned(i, k).2).unwrap(), (i, k)))
        .collect();
    let mut next = [0usize; WRITERS];
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, n as u64 + 1);
        assert_eq!(e.mutations.len(), 1, "one mutation per `config set`");
        let json = serde_json::to_string(&e.mutations[0]).unwrap();
        let &(i, k) = plan
            .get(&json)
            .unwrap_or_else(|| panic!("record {} is no planned mutation: {json}", e.seq));
        assert_eq!(
            k, next[i],
            "writer {i}: mutation {k} out of order or doubled"
        );
        next[i] += 1;
    }
    assert!(next.iter().all(|&k| k == PER_WRITER), "{next:?}");
}

#[test]
fn eight_writers_with_compaction_and_readers_lose_nothing() {
    let dir = tempdir();
    write_go_yaml(dir.path(), WRITERS);
    run_writers(dir.path(), Some("4096"), 2);
    check_final(dir.path());
    let loaded = recover::load(&OsFs::strict(), &common::paths(dir.path())).unwrap();
    let generation = loaded.doc.mark.expect("compaction wrote a mark").generation;
    assert!(
        generation >= 5,
        "only {generation} generations: compaction rarely ran"
    );
}

/// Takes the project lock the way ldm does and writes a holder note.
fn hold_lock(dir: &Path, note: &str) -> std::fs::File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("containers.lock"))
        .unwrap();
    fs4::FileExt::try_lock(&file).expect("the lock is free");
    file.set_len(0).unwrap();
    (&file).write_all(note.as_bytes()).unwrap();
    file
}

#[test]
fn held_lock_times_out_writers_naming_the_holder_and_changes_nothing() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    let note = "pid 4242 (ldm config set test-holder) since 2026-01-01T00:00:00Z";
    let lock = hold_lock(dir.path(), note);
    let before = files(dir.path());
    for args in [
        &["config", "set", "defaults.ports", "4000"][..],
        &["config", "unset", "defaults.ports"],
        &["compact"],
        &["doctor", "--repair"],
    ] {
        let start = Instant::now();
        let (code, _, err) = run(dir.path(), &[&["--lock-timeout", "0.3"], args].concat());
        let took = start.elapsed();
        assert_eq!(code, 2, "ldm {args:?}: {err}");
        for needle in ["timed out", "containers.lock", note, "--lock-timeout"] {
            assert!(
                err.contains(needle),
                "ldm {args:?}: stderr lacks {needle:?}: {err}"
            );
        }
        // The bound is 0.3 s; allow a loaded machine its process start-up.
        assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "waited {took:?} for a 0.3 s bound"
        );
        assert_same(&before, &files(dir.path()), &format!("ldm {args:?}"));
    }
    // Readers take no lock.
    assert_eq!(get(dir.path(), "defaults.ports"), serde_json::json!([3000]));
    drop(lock);
    set(dir.path(), "defaults.ports", "4000");
    assert_eq!(state(dir.path()).defaults.ports, vec![4000]);
}

#[test]
fn waiting_writer_proceeds_when_the_holder_lets_go() {
    let dir = tempdir();
    create(dir.path());
    let lock = hold_lock(dir.path(), "pid 1 (test) since now");
    let mut child = ldm_std(dir.path())
        .args([
            "--lock-timeout",
            "30",
            "config",
            "set",
            "defaults.ports",
            "5000",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the writer did not wait for the lock"
    );
    assert!(
        state(dir.path()).defaults.ports.is_empty(),
        "wrote without the lock"
    );
    let released = Instant::now();
    drop(lock);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(released.elapsed() < Duration::from_secs(10), "woke late");
    assert_eq!(state(dir.path()).defaults.ports, vec![5000]);
}
