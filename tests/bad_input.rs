//! Bad input (issue acceptance item 1): invalid names, ports and keys, a
//! malformed `containers.yaml`, an empty or garbage `containers.log`, a
//! folder name that is not UTF-8. Each is refused with an error naming the
//! problem and a non-zero exit (1 for user errors, 2 for damage), and every
//! file is left byte for byte as it was.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;

/// Runs `args` expecting exit `code` with `needles` in stderr, and asserts
/// that no file changed (lock note included unless `lock_note_may_change`).
fn refused(dir: &Path, args: &[&str], code: i32, needles: &[&str], lock_note_may_change: bool) {
    let snap = |d: &Path| {
        if lock_note_may_change {
            data_files(d)
        } else {
            files(d)
        }
    };
    let before = snap(dir);
    let (got, out, err) = run(dir, args);
    assert_eq!(got, code, "ldm {args:?}: exit {got}, stderr:\n{err}");
    assert!(out.is_empty(), "ldm {args:?} printed on stdout: {out}");
    for n in needles {
        assert!(err.contains(n), "ldm {args:?}: stderr lacks {n:?}:\n{err}");
    }
    assert_eq!(err.lines().count(), 1, "one error line expected:\n{err}");
    assert_same(&before, &snap(dir), &format!("ldm {args:?}"));
}

#[test]
fn invalid_project_names_are_refused_and_nothing_is_created() {
    let dir = tempdir();
    let long = "a".repeat(62);
    for (name, why) in [
        ("bad name", "' ' is not allowed"),
        ("a/b", "'/' is not allowed"),
        ("", "it is empty"),
        ("dé", "'é' is not allowed"),
        (long.as_str(), "it is 62 characters"),
    ] {
        let quoted = format!("invalid project name {name:?}");
        refused(
            dir.path(),
            &["create", "--name", name],
            1,
            &[&quoted, why],
            false,
        );
    }
    assert!(files(dir.path()).is_empty(), "create left files behind");
}

#[test]
fn folder_name_that_is_no_project_name_is_refused_with_a_hint() {
    let parent = tempdir();
    let dir = parent.path().join("my project");
    std::fs::create_dir(&dir).unwrap();
    refused(
        &dir,
        &["create"],
        1,
        &["folder name", "pass --name NAME"],
        false,
    );
    assert!(files(&dir).is_empty());
}

#[test]
fn non_utf8_folder_name_is_refused_and_nothing_is_created() {
    let parent = tempdir();
    let dir = parent.path().join(OsStr::from_bytes(b"caf\xe9-\xff"));
    std::fs::create_dir(&dir).unwrap();
    refused(
        &dir,
        &["create"],
        1,
        &["not valid UTF-8", "pass --name NAME"],
        false,
    );
    refused(&dir, &["project", "create"], 1, &["not valid UTF-8"], false);
    assert!(files(&dir).is_empty(), "create left files behind");
    // With an explicit name the folder is fine.
    ok(&dir, &["create", "--name", "cafe"]);
    set(&dir, "defaults.ports", "8080");
    assert_eq!(state(&dir).defaults.ports, vec![8080]);
}

#[test]
fn invalid_ports_are_refused_and_files_unchanged() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    for (ports, why) in [
        ("0", "0 is outside 1..65535"),
        ("70000", "70000 is outside 1..65535"),
        ("65536", "65536 is outside 1..65535"),
        ("abc", "\"abc\" is not a number"),
        ("3000,,4000", "\"\" is not a number"),
        ("80,443,80", "a port is listed twice"),
        ("", "no ports given"),
    ] {
        let given = format!("{ports:?}");
        let needles: Vec<&str> = if ports.is_empty() {
            vec![why]
        } else {
            vec![&given, why]
        };
        refused(
            dir.path(),
            &["config", "set", "defaults.ports", ports],
            1,
            &needles,
            false,
        );
        refused(
            dir.path(),
            &["config", "set", "containers.c0.ports", ports],
            1,
            &needles,
            false,
        );
    }
    assert_eq!(get(dir.path(), "defaults.ports"), serde_json::json!([3000]));
    // `create --ports` validates before writing anything.
    let empty = tempdir();
    refused(
        empty.path(),
        &["create", "--name", "p", "--ports", "22,0"],
        1,
        &["0 is outside"],
        false,
    );
    refused(
        empty.path(),
        &["create", "--name", "p", "--ports", "22,22"],
        1,
        &["listed twice"],
        false,
    );
    assert!(files(empty.path()).is_empty());
}

#[test]
fn invalid_container_names_are_refused_and_files_unchanged() {
    let dir = tempdir();
    write_go_yaml(dir.path(), 1);
    set(dir.path(), "containers.c0.ports", "3000");
    for (name, why) in [
        ("1bad", "it must start with a letter"),
        ("bad_name", "'_' is not allowed"),
        ("a--b", "double hyphen"),
        ("dev-", "ends with a hyphen"),
        ("list", "it is reserved"),
    ] {
        let quoted = format!("invalid container name {name:?}");
        // Validated under the lock, before LXD is asked anything.
        refused(
            dir.path(),
            &["container", "create", name, "img"],
            1,
            &[&quoted, why],
            true,
        );
    }
    // A key naming a container that is not in the project.
    for key in ["containers.nope.ports", "containers.1bad.user.name"] {
        let value = if key.ends_with("ports") { "80" } else { "bob" };
        refused(
            dir.path(),
            &["config", "set", key, value],
            1,
            &["is not in this project"],
            true,
        );
        refused(
            dir.path(),
            &["config", "get", key],
            1,
            &["is not in project p"],
            true,
        );
    }
    assert_eq!(last_seq(dir.path()), 1);
}

#[test]
fn unknown_config_keys_are_refused_listing_the_keys() {
    let dir = tempdir();
    create(dir.path());
    for key in [
        "defaults.port",
        "defaults.user",
        "defaults.user.email",
        "containers..ports",
        "containers.c0",
        "containers.c0.image",
        "ports",
        "",
    ] {
        let quoted = format!("unknown key {key:?}");
        let needles = [
            quoted.as_str(),
            "defaults.ports",
            "containers.NAME.user.password",
        ];
        refused(dir.path(), &["config", "set", key, "1"], 1, &needles, false);
        refused(dir.path(), &["config", "get", key], 1, &needles, false);
        refused(dir.path(), &["config", "unset", key], 1, &needles, false);
    }
}

#[test]
fn bad_global_options_are_user_errors() {
    let dir = tempdir();
    create(dir.path());
    let before = files(dir.path());
    for t in ["abc", "-1", "1e9"] {
        let out = ldm(dir.path())
            .args(["--lock-timeout", t, "config", "set", "defaults.ports", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "--lock-timeout {t}");
    }
    let out = ldm(dir.path())
        .env("LDM_AUTO_COMPACT_BYTES", "lots")
        .args(["config", "set", "defaults.ports", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LDM_AUTO_COMPACT_BYTES"));
    let missing = dir.path().join("missing");
    let (code, _, err) = run(&missing, &["config", "get", "defaults.ports"]);
    assert_eq!((code, err.contains("no such folder")), (1, true), "{err}");
    assert_same(&before, &files(dir.path()), "bad options");
    let empty = tempdir();
    refused(
        empty.path(),
        &["config", "set", "defaults.ports", "1"],
        1,
        &["no containers.yaml in", "ldm create"],
        false,
    );
    assert!(files(empty.path()).is_empty());
}

/// Commands that must refuse a containers.yaml they cannot read: exit 1
/// (the user fixes the file by hand; it is not log damage), and `doctor`
/// reports it as damage (exit 2).
const WRITERS: &[&[&str]] = &[
    &["config", "set", "defaults.ports", "4000"],
    &["config", "unset", "defaults.ports"],
    &["compact"],
    &["doctor", "--repair"],
];
const READERS: &[&[&str]] = &[&["config", "get", "defaults.ports"], &["doctor"]];

fn broken_yaml_is_refused(dir: &Path, needles: &[&str]) {
    for args in WRITERS.iter().chain(READERS) {
        let before = data_files(dir);
        let (code, _, err) = run(dir, args);
        let expected = if *args == ["doctor"] { 2 } else { 1 };
        assert_eq!(code, expected, "ldm {args:?}: stderr:\n{err}");
        for n in needles {
            // doctor prints its findings on stdout and a summary on stderr.
            if args[0] != "doctor" {
                assert!(err.contains(n), "ldm {args:?}: stderr lacks {n:?}:\n{err}");
            }
        }
        assert_same(&before, &data_files(dir), &format!("ldm {args:?}"));
    }
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 2);
    assert_eq!(report["healthy"], false, "{report:#}");
}

#[test]
fn malformed_yaml_is_refused_with_line_and_column_and_left_unchanged() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    // Line 5 is indented by three spaces: a syntax error at 5:4.
    let text = "project: p\ncontainers:\n  c0:\n    image: img\n   bad: x\nldm:\n  generation: 1\n  seq: 0\n";
    std::fs::write(yaml_path(dir.path()), text).unwrap();
    broken_yaml_is_refused(
        dir.path(),
        &[
            "containers.yaml:5:4",
            "did not find expected key",
            "fix the file by hand",
        ],
    );
    // A value that parses but is invalid is named by its key.
    let text = "project: p\ncontainers:\n  c0:\n    image: img\n    ports: [80, 80]\n";
    std::fs::write(yaml_path(dir.path()), text).unwrap();
    broken_yaml_is_refused(
        dir.path(),
        &[
            "containers.yaml: containers.c0.ports",
            "port 80 is listed twice",
        ],
    );
}

#[test]
fn empty_log_is_refused_as_damage_and_left_unchanged() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    std::fs::write(log_path(dir.path()), b"").unwrap();
    let needles = ["containers.log: bad header", "0 bytes long", "ldm doctor"];
    for args in WRITERS.iter().take(3).chain(READERS.iter().take(1)) {
        refused(dir.path(), args, 2, &needles, true);
    }
    assert_eq!(doctor_json(dir.path()).0, 2);
}

#[test]
fn garbage_log_is_refused_as_damage_and_left_unchanged() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    let mut rng = Rng::new(7);
    let garbage: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
    std::fs::write(log_path(dir.path()), &garbage).unwrap();
    let needles = ["containers.log: bad header", "magic bytes", "ldm doctor"];
    for args in WRITERS.iter().take(3).chain(READERS.iter().take(1)) {
        refused(dir.path(), args, 2, &needles, true);
    }
    assert_eq!(doctor_json(dir.path()).0, 2);
}

#[test]
fn create_over_an_existing_or_orphaned_project_is_refused() {
    let dir = tempdir();
    create(dir.path());
    set(dir.path(), "defaults.ports", "3000");
    let needles = ["containers.yaml already exists", "already has a project"];
    refused(dir.path(), &["create", "--name", "q"], 1, &needles, true);
    refused(dir.path(), &["project", "create"], 1, &needles, true);

    // A log whose containers.yaml is gone is not silently reused.
    let orphan = tempdir();
    let log = std::fs::read(log_path(dir.path())).unwrap();
    std::fs::write(log_path(orphan.path()), &log).unwrap();
    let (code, _, err) = run(orphan.path(), &["create", "--name", "p"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("containers.log is left from an earlier project"),
        "{err}"
    );
    // Nothing created: the folder holds the log and nothing else.
    let mut names: Vec<String> = std::fs::read_dir(orphan.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["containers.log".to_string()]);
    assert_eq!(std::fs::read(log_path(orphan.path())).unwrap(), log);
}
