//! The project files as a user sees them (acceptance items 7 and 8): hand
//! edits of `containers.yaml` survive other commands and compaction; `-C`
//! and the search of parent folders find the right project; every file is
//! created mode 0600.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// Replaces `from` with `to` in `containers.yaml`, as a user in an editor.
fn edit_yaml(dir: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    assert!(text.contains("\nldm: {"), "the mark is gone:\n{text}");
    std::fs::write(yaml_path(dir), text.replacen(from, to, 1)).unwrap();
}

/// `compact_first`: the change before the edit is in containers.yaml (a
/// compaction, and the fold after each commit); else it is only in the log
/// (no fold, as for a project too big to fold after each commit).
fn check_hand_edit_survives(compact_first: bool) {
    let dir = tempdir();
    let dir = dir.path();
    ok(dir, &["create", "--name", "p", "--ports", "3000"]);
    if compact_first {
        set(dir, "defaults.user.name", "alice");
        ok(dir, &["compact"]);
    } else {
        set_unfolded(dir, "defaults.user.name", "alice");
        assert!(!std::fs::read_to_string(yaml_path(dir))
            .unwrap()
            .contains("alice"));
    }
    edit_yaml(dir, "  - 3000\n", "  - 5000\n  - 5001\n");
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([5000, 5001]));
    set(dir, "defaults.user.password", "pw");
    let expect = |dir: &Path| {
        let p = state(dir);
        assert_eq!(p.defaults.ports, vec![5000, 5001], "the hand edit was lost");
        let user = p.defaults.user.unwrap();
        assert_eq!(
            (user.name.as_deref(), user.password.as_deref()),
            (Some("alice"), Some("pw"))
        );
        assert_eq!(last_seq(dir), 2);
    };
    expect(dir);
    ok(dir, &["compact"]);
    expect(dir);
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    assert!(text.contains("- 5000\n  - 5001\n"), "{text}");
    assert!(!text.contains("3000"), "{text}");
    // And once more through a compaction run by a commit.
    let out = ldm(dir)
        .env("LDM_AUTO_COMPACT_BYTES", "1")
        .args(["config", "set", "defaults.user.name", "bob"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(state(dir).defaults.ports, vec![5000, 5001]);
    assert_healthy(dir);
}

#[test]
fn unknown_keys_warn_and_the_file_is_kept_when_ldm_rewrites_it() {
    let dir = tempdir();
    let dir = dir.path();
    ok(dir, &["create", "--name", "p", "--ports", "3000"]);
    edit_yaml(dir, "project: p\n", "project: p\ncolour: blue\n");
    edit_yaml(
        dir,
        "defaults:\n",
        "defaults:\n  # my note\n  usr: {name: typo}\n",
    );
    let edited = std::fs::read(yaml_path(dir)).unwrap();
    let warning = "ignoring unknown keys `colour`, `defaults.usr`; ldm drops unknown keys when it next rewrites the file";
    // A reader warns and changes nothing (but the load cache).
    let before = files_but_cache(dir);
    let (code, _, err) = run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert_same(&before, &files_but_cache(dir), "a reader");
    // The writer warns, rewrites the file, and keeps it as it was first.
    let (code, _, err) = run(dir, &["config", "set", "defaults.user.name", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    let kept: Vec<_> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.yaml.edited-"))
        .collect();
    assert_eq!(kept.len(), 1, "{err}");
    assert_eq!(kept[0].1.bytes, edited, "the copy is the file as it was");
    assert_eq!(kept[0].1.mode, 0o600);
    assert!(
        err.contains(&*kept[0].0.to_string_lossy()),
        "the notice names the copy: {err}"
    );
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    assert!(
        !text.contains("colour") && !text.contains("usr:") && !text.contains("my note"),
        "{text}"
    );
    assert_eq!(
        state(dir).defaults.user.unwrap().name.as_deref(),
        Some("alice")
    );
    let (code, _, err) = run(dir, &["config", "get", "defaults.ports"]);
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn hand_edit_of_the_yaml_survives_other_writes_and_compaction() {
    check_hand_edit_survives(true);
}

#[test]
fn hand_edit_under_unfolded_records_survives_too() {
    check_hand_edit_survives(false);
}

#[test]
fn hand_edit_that_removes_a_container_ldm_just_changed_keeps_the_removal_and_saves_the_change() {
    let dir = tempdir();
    let dir = dir.path();
    write_go_yaml(dir, 2);
    set_unfolded(dir, "containers.c1.ports", "8080");
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    std::fs::write(yaml_path(dir), text.replace("  c1:\n    image: img\n", "")).unwrap();
    let (code, _, err) = run(dir, &["config", "set", "containers.c0.ports", "80"]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "`containers.c1`",
        "the file removed it",
        "8080",
        "containers.log.dropped-",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
    let p = state(dir);
    assert_eq!(p.containers.keys().collect::<Vec<_>>(), ["c0"]);
    assert_eq!(p.containers["c0"].ports, vec![80]);
    let saved: Vec<_> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.dropped-"))
        .collect();
    assert_eq!(saved.len(), 1);
    let json: serde_json::Value = serde_json::from_slice(&saved[0].1.bytes).unwrap();
    assert_eq!(json["fields"][0]["field"], "containers.c1");
    assert_eq!(
        json["fields"][0]["dropped"]["ports"],
        serde_json::json!([8080])
    );
    assert_healthy(dir);
}

#[test]
fn commands_find_the_nearest_project_in_parent_folders() {
    let root = tempdir();
    let root = root.path();
    create(root);
    let deep = root.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    let in_folder = |cwd: &Path, args: &[&str]| {
        let out = ldm_bare().current_dir(cwd).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "ldm {args:?} in {}: {err}",
            cwd.display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    in_folder(&deep, &["config", "set", "defaults.ports", "7000"]);
    assert_eq!(state(root).defaults.ports, vec![7000]);
    assert!(files(&deep).is_empty() && files(&root.join("a")).is_empty());
    assert_eq!(
        in_folder(&deep, &["config", "get", "defaults.ports"]).trim(),
        "7000"
    );
    // -C is relative to the current folder, and searches upwards too.
    in_folder(
        root,
        &["-C", "a/b", "config", "set", "defaults.user.name", "carol"],
    );
    assert_eq!(
        state(root).defaults.user.unwrap().name.as_deref(),
        Some("carol")
    );
    // A nested project is nearer than the outer one.
    in_folder(root, &["-C", "a", "-q", "create", "--name", "inner"]);
    in_folder(&deep, &["config", "set", "defaults.ports", "7001"]);
    assert_eq!(state(&root.join("a")).project, "inner");
    assert_eq!(state(&root.join("a")).defaults.ports, vec![7001]);
    assert_eq!(state(root).defaults.ports, vec![7000]);
    // `-C` to the outer folder reaches the outer project again.
    let got = in_folder(
        &deep,
        &["-C", "../../..", "config", "get", "defaults.ports"],
    );
    assert_eq!(got.trim(), "7000");
}

#[test]
fn quiet_create_prints_only_the_result() {
    let dir = tempdir();
    let out = ldm(dir.path())
        .args(["-q", "create", "--name", "p"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Created project p"));
}

fn assert_modes(dir: &Path, what: &str) {
    let all = files(dir);
    assert!(!all.is_empty());
    for (name, f) in &all {
        assert_eq!(f.mode, 0o600, "{what}: {name:?} is {:o}", f.mode);
    }
}

#[test]
fn files_are_created_mode_0600() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    // containers.yaml, containers.log, containers.lock and lxc-dev-manager's
    // containers.yaml.lock; the base (which holds the passwords too) is in
    // the user's own state folder, 0600 in a 0700 folder.
    let names: Vec<String> = files(dir)
        .keys()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "containers.lock",
            "containers.log",
            "containers.yaml",
            "containers.yaml.lock"
        ]
    );
    assert_modes(dir, "after create");
    let base = std::fs::metadata(base_path(dir)).unwrap();
    assert_eq!(base.permissions().mode() & 0o777, 0o600);
    let state = std::fs::metadata(derived(dir).state).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    set(dir, "defaults.user.password", "secret");
    ok(dir, &["compact"]);
    assert_modes(dir, "after compact");

    // A file written by another tool with 0644: ldm's own files are 0600,
    // and the YAML becomes 0600 when compaction replaces it.
    let go = tempdir();
    let go = go.path();
    write_go_yaml(go, 1);
    std::fs::set_permissions(yaml_path(go), std::fs::Permissions::from_mode(0o644)).unwrap();
    set(go, "containers.c0.user.password", "secret");
    for name in ["containers.log", "containers.lock"] {
        assert_eq!(files(go)[std::ffi::OsStr::new(name)].mode, 0o600, "{name}");
    }
    ok(go, &["compact"]);
    assert_modes(go, "after compacting a 0644 file");
}

/// Issue 22, finding 4: the derived files live in the user's own folders.
/// When those cannot be used (no home folder, a read-only one, a path that
/// is a file), ldm works without its base and load cache and says so once
/// per command; nothing derived lands in the project folder.
#[test]
fn without_a_usable_state_folder_ldm_works_and_says_so_once() {
    let dir = tempdir();
    let dir = dir.path();
    let not_a_folder = dir.join("not-a-folder");
    std::fs::write(&not_a_folder, b"").unwrap();
    let envs = [
        ("XDG_STATE_HOME", not_a_folder.join("state")),
        ("XDG_CACHE_HOME", not_a_folder.join("cache")),
    ];
    let envs: Vec<(&str, &str)> = envs
        .iter()
        .map(|(k, v)| (*k, v.to_str().unwrap()))
        .collect();
    let proj = dir.join("p");
    std::fs::create_dir(&proj).unwrap();
    for args in [
        &["create", "--name", "p"][..],
        &["config", "set", "defaults.ports", "3000"],
        &["config", "get", "defaults.ports"],
        &["config", "set", "defaults.user.name", "a"],
        &["compact"],
    ] {
        let (code, _, err) = run_env(&proj, args, &envs);
        assert_eq!(code, 0, "{args:?}: {err}");
        let notes = err
            .lines()
            .filter(|l| l.contains("works without its base"))
            .count();
        assert_eq!(notes, 1, "{args:?}: {err}");
    }
    let (_, out, _) = run_env(&proj, &["config", "get", "defaults.ports"], &envs);
    assert_eq!(out.trim(), "3000");
    let names: Vec<String> = files(&proj)
        .keys()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "containers.lock",
            "containers.log",
            "containers.yaml",
            "containers.yaml.lock"
        ]
    );
}
