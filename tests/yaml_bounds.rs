//! Hostile `containers.yaml` files (issue 12, item 6): each bomb, written as
//! the project file, makes the real binary refuse it with a message naming
//! ldm's limit, fast, within bounded memory, and leaves the file as it was.
//! And the files that must keep working do: the Go tool's, and ldm's own
//! before and after the switch from serde_yaml_ng to serde-saphyr.
//!
//! Each command runs with a 20 s deadline (polled, then killed) and under
//! RLIMIT_AS 1 GiB, so that a regression fails the test instead of hanging
//! it or exhausting the machine.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use ldm::model::{Container, Project, Snapshot, User};
use ldm::store::snapshot::{self, Mark};

const DEADLINE: Duration = Duration::from_secs(20);
const MEMORY_LIMIT: u64 = 1 << 30;

/// Runs `ldm -C dir ARGS` under the deadline and the memory limit; returns
/// (exit code, stderr + stdout).
fn run_bounded(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = ldm_std(dir);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn ldm");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll ldm") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ldm {args:?} still running after {DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        err.join().unwrap_or_default(),
        out.join().unwrap_or_default()
    );
    let code = status
        .code()
        .unwrap_or_else(|| panic!("ldm {args:?} died ({status:?}), out of memory?\n{text}"));
    (code, text)
}

/// Writes `text` as the project file and checks that both a reader and
/// `doctor` refuse it, naming the limit, and leave every file unchanged.
fn refused(text: &str, needles: &[&str]) {
    let dir = tempdir();
    let dir = dir.path();
    std::fs::write(yaml_path(dir), text).unwrap();
    for args in [&["config", "get", "defaults.ports"][..], &["doctor"]] {
        let before = data_files(dir);
        let (code, out) = run_bounded(dir, args);
        assert_ne!(code, 0, "ldm {args:?} accepted the bomb:\n{out}");
        for needle in needles.iter().chain(&["containers.yaml", "ldm's limit"]) {
            assert!(
                out.contains(needle),
                "ldm {args:?}: no {needle:?} in:\n{out}"
            );
        }
        assert!(
            out.len() < 10_000,
            "ldm {args:?}: {} bytes of output",
            out.len()
        );
        assert_same(&before, &data_files(dir), &format!("ldm {args:?}"));
        assert_eq!(std::fs::read(yaml_path(dir)).unwrap(), text.as_bytes());
    }
}

#[test]
fn deep_flow_nesting_is_refused_fast() {
    // 44 s of CPU with serde_yaml_ng.
    let text = format!("project: p\nx: {}", "[".repeat(200_000));
    refused(&text, &["deeper than 64 levels"]);
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut text = String::from("project: p\nx:\n");
    for i in 0..100 {
        text.push_str(&" ".repeat(i + 1));
        text.push_str("- \n");
    }
    refused(&text, &["deeper than 64 levels"]);
}

#[test]
fn billion_laughs_is_refused_not_expanded() {
    let mut text =
        String::from("project: p\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    refused(&text, &["alias bomb", "per byte"]);
}

#[test]
fn an_aliased_long_string_is_refused_not_copied() {
    // With serde_yaml_ng: 500 MB of descriptions, and as much in the cache.
    let mut text = format!(
        "project: p\nx: &s \"{}\"\ncontainers:\n  c:\n    image: i\n    snapshots:\n",
        "A".repeat(100_000)
    );
    for i in 0..5000 {
        text.push_str(&format!("      s{i}: {{description: *s}}\n"));
    }
    refused(&text, &["alias bomb"]);
}

#[test]
fn an_aliased_container_is_refused_not_copied() {
    let mut text = String::from("project: p\nx: &c\n  image: i\n  snapshots:\n");
    for i in 0..1000 {
        text.push_str(&format!("    s{i}: {{description: d}}\n"));
    }
    text.push_str("containers:\n");
    for i in 0..2000 {
        text.push_str(&format!("  c{i}: *c\n"));
    }
    refused(&text, &["alias bomb"]);
}

#[test]
fn an_oversized_file_is_refused() {
    let text = format!("project: p\nx: \"{}\"\n", "a".repeat(ldm::yaml::MAX_BYTES));
    refused(&text, &["16 MiB", "right file"]);
}

#[test]
fn a_few_aliases_in_a_hand_edited_file_still_work() {
    let dir = tempdir();
    let dir = dir.path();
    std::fs::write(
        yaml_path(dir),
        "project: p\ndefaults:\n  ports: &p [3000, 3001]\ncontainers:\n  a: &c {image: img, ports: *p}\n  b: *c\n",
    )
    .unwrap();
    let (code, out) = run_bounded(dir, &["config", "get", "containers.b.ports"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3000"), "{out}");
}

/// A project file as the Go tool writes it: yaml.v3 3.0.1's `Marshal`
/// output, verbatim (generated once with Debian's golang-gopkg-yaml.v3-dev).
const GO_FILE: &str = r#"project: webapp
defaults:
    ports:
        - 5173
        - 8000
    user:
        name: dev
        password: "yes"
containers:
    dev:
        image: ubuntu:24.04
        ports:
            - 3000
        user:
            name: admin
            password: it's "q" $x
        snapshots:
            initial-state:
                description: Initial state after setup
                created_at: "2026-01-15T10:30:00Z"
            s2:
                description: |-
                    two
                    lines
                created_at: "2026-01-16T08:00:00Z"
            s3:
                description: "~"
                created_at: "0123"
"#;

/// `tricky()` as ldm wrote it before the switch (serde_yaml_ng 0.10), verbatim.
const OLD_LDM_FILE: &str = r#"# ldm project file (lxc-dev-manager compatible). Edit ports and users freely
# between commands; keep the `ldm:` key, it ties this file to containers.log.
project: p
defaults:
  ports:
  - 5173
  user:
    name: dev
    password: it's "q" $x
containers:
  c:
    image: ubuntu:24.04
    ports:
    - 3000
    snapshots:
      s0:
        description: yes
        created_at: 2026-01-15T10:30:00Z
      s1:
        description: '~'
        created_at: '0123'
      s2:
        description: 'null'
        created_at: '1.0'
      s3:
        description: 'a: b #c'
        created_at: ''
      s4:
        description: |-
          two
          lines
        created_at: '  lead'
      s5:
        description: ünï ✓ "q"
        created_at: on
ldm:
  generation: 3
  seq: 41
"#;

fn tricky() -> Project {
    let mut p = Project::new("p", vec![5173]);
    p.defaults.user = Some(User {
        name: Some("dev".into()),
        password: Some("it's \"q\" $x".into()),
    });
    let pairs = [
        ("yes", "2026-01-15T10:30:00Z"),
        ("~", "0123"),
        ("null", "1.0"),
        ("a: b #c", ""),
        ("two\nlines", "  lead"),
        ("ünï ✓ \"q\"", "on"),
    ];
    let snapshots: BTreeMap<String, Snapshot> = pairs
        .iter()
        .enumerate()
        .map(|(i, (d, t))| {
            let s = Snapshot {
                description: d.to_string(),
                created_at: t.to_string(),
                pending: None,
            };
            (format!("s{i}"), s)
        })
        .collect();
    p.containers.insert(
        "c".into(),
        Container {
            image: "ubuntu:24.04".into(),
            ports: vec![3000],
            snapshots,
            ..Container::default()
        },
    );
    p
}

/// The mark ldm writes (it names the log), and the version 1 mark an older
/// ldm wrote.
const MARK: Mark = Mark {
    generation: 3,
    seq: 41,
    log: Some([7; 16]),
};
const OLD_MARK: Mark = Mark {
    generation: 3,
    seq: 41,
    log: None,
};

/// The state and mark of a `containers.yaml` text.
fn decoded(text: &str) -> (Project, Option<Mark>) {
    let doc = snapshot::decode(text).unwrap();
    (doc.project, doc.mark)
}

#[test]
fn go_tool_and_older_ldm_files_read_as_before_and_ldm_output_round_trips() {
    let (go, mark) = decoded(GO_FILE);
    assert_eq!(mark, None);
    assert_eq!(go.defaults.ports, vec![5173, 8000]);
    let dev = &go.containers["dev"];
    assert_eq!(
        dev.user.as_ref().unwrap().password.as_deref(),
        Some("it's \"q\" $x")
    );
    assert_eq!(dev.snapshots["s2"].description, "two\nlines");
    assert_eq!(dev.snapshots["s3"].description, "~");
    assert_eq!(dev.snapshots["s3"].created_at, "0123");
    // Re-encoded and read back, by ldm, unchanged.
    let again = snapshot::encode(&go, MARK).unwrap();
    assert_eq!(decoded(&again), (go, Some(MARK)));

    let want = tricky();
    assert_eq!(decoded(OLD_LDM_FILE), (want.clone(), Some(OLD_MARK)));
    let text = snapshot::encode(&want, MARK).unwrap();
    assert_eq!(decoded(&text), (want, Some(MARK)));
    // Strings a YAML 1.1 reader would take for something else are quoted;
    // ports stay plain integers for the Go tool's []int.
    for quoted in [
        "\"yes\"",
        "\"~\"",
        "\"0123\"",
        "\"null\"",
        "\"1.0\"",
        "\"on\"",
        "\"2026-01-15T10:30:00Z\"",
    ] {
        assert!(text.contains(quoted), "{quoted} not quoted in:\n{text}");
    }
    assert!(text.contains("  - 3000\n"), "{text}");
    assert!(text.contains("containers:\n  c:\n"), "{text}");
    let empty = snapshot::encode(&Project::new("e", vec![]), MARK).unwrap();
    assert!(empty.contains("\ncontainers: {}\n"), "{empty}");
}

#[test]
fn the_go_tool_file_works_through_the_binary_and_compaction() {
    let dir = tempdir();
    let dir = dir.path();
    std::fs::write(yaml_path(dir), GO_FILE).unwrap();
    let (code, out) = run_bounded(dir, &["config", "get", "containers.dev.ports"]);
    assert_eq!((code, out.trim()), (0, "3000"));
    ok(dir, &["compact"]);
    let (project, mark) = decoded(&std::fs::read_to_string(yaml_path(dir)).unwrap());
    assert!(mark.is_some());
    assert_eq!(project, decoded(GO_FILE).0);
}
