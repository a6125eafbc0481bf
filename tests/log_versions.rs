//! Log format versions (DESIGN.md, "The log file", "Version history"): this
//! build writes version 4 and reads 1 to 4. Readers read an older log as
//! it is and write nothing to it; the first writing command upgrades it by a
//! compaction (a version 2 log keeps its identity, a version 1 log gets one),
//! with one notice. A header of a later version is refused as a newer ldm's.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use ldm::model::{Mutation, Op, Owner, Pending, Project};
use ldm::store::record::{self, Header, HeaderError, HEADER_LEN};
use ldm::store::{snapshot, Notice, Options, Severity, Store, StoreError};

type Notices = Arc<Mutex<Vec<Notice>>>;

/// Options that keep records in the log (no fold after a commit, no
/// auto-compaction) and collect the notices.
fn options() -> (Options, Notices) {
    let notices: Notices = Arc::default();
    let sink = notices.clone();
    let opts = Options {
        auto_compact_min: u64::MAX,
        fold_max: 0,
        notify: Arc::new(move |n: &Notice| sink.lock().unwrap().push(n.clone())),
        ..Default::default()
    };
    (opts, notices)
}

fn taken(notices: &Notices) -> Vec<Notice> {
    std::mem::take(&mut *notices.lock().unwrap())
}

fn commit(store: &mut Store, m: Mutation) {
    store
        .commit(|_| Ok::<_, StoreError>((vec![m], ())))
        .unwrap();
}

/// The header of the log in `dir`.
fn header(dir: &Path) -> Header {
    record::decode_header(&std::fs::read(log_path(dir)).unwrap()).unwrap()
}

/// A project whose log holds three records (one of them a create's
/// `pending`, an `Op`), none of them folded into `containers.yaml`.
/// Returns the state.
fn three_records(dir: &Path, opts: &Options) -> Project {
    let mut store =
        Store::create_in(common::paths(dir), &Project::new("p", vec![]), opts.clone()).unwrap();
    commit(
        &mut store,
        Mutation::PortsSet {
            container: None,
            ports: vec![3000],
        },
    );
    commit(
        &mut store,
        Mutation::ContainerAdded {
            name: "dev".into(),
            image: "img".into(),
            pending: Some(Pending {
                op: Op::Create,
                owner: Owner {
                    pid: 7,
                    slot: 9,
                    ..Default::default()
                },
                started_at: "2026-01-15T10:30:00Z".into(),
                setup: None,
            }),
        },
    );
    commit(
        &mut store,
        Mutation::RemoteSet {
            remote: Some("r".into()),
        },
    );
    let state = store.read().unwrap();
    assert_eq!(state.containers.len(), 1);
    state
}

/// [`downgrade_log_to_v2`], checked.
fn downgrade_to_v2(dir: &Path) -> Header {
    let h = downgrade_log_to_v2(dir);
    assert_eq!(header(dir), Header { version: 2, ..h });
    h
}

/// The records of the log in `dir` (seqs), after a 52-byte header.
fn seqs(dir: &Path) -> Vec<u64> {
    records(dir).iter().map(|r| r.0).collect()
}

/// Asserts a reader sees `expected` and changes neither file, and that
/// `doctor` calls the log fine, of `version`, to be upgraded.
fn read_as_it_is(dir: &Path, opts: &Options, notices: &Notices, expected: &Project, version: u32) {
    let yaml = std::fs::read(yaml_path(dir)).unwrap();
    let log = std::fs::read(log_path(dir)).unwrap();
    let reader = Store::open(common::paths(dir), opts.clone());
    assert_eq!(&reader.read().unwrap(), expected);
    let findings = reader.inspect();
    let line = findings
        .iter()
        .find(|f| f.file == log_path(dir))
        .unwrap_or_else(|| panic!("no finding for the log: {findings:#?}"));
    assert_eq!(line.severity, Severity::Ok, "{line:?}");
    assert!(
        line.message
            .starts_with(&format!("format version {version},"))
            && line
                .message
                .ends_with("the next writing command upgrades it to format version 4"),
        "{line:?}"
    );
    assert_eq!(taken(notices), vec![], "a reader has nothing to say");
    assert_eq!(
        std::fs::read(yaml_path(dir)).unwrap(),
        yaml,
        "YAML untouched"
    );
    assert_eq!(std::fs::read(log_path(dir)).unwrap(), log, "log untouched");
}

/// The mark's `log:` in containers.yaml.
fn mark_log(dir: &Path) -> String {
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    let mark = text.lines().last().unwrap();
    let at = mark
        .find("log: \"")
        .unwrap_or_else(|| panic!("no log in {mark}"))
        + 6;
    mark[at..at + 32].to_string()
}

/// The log in `dir`, as an ldm of format version 3 wrote it (the same
/// layout, the number 3): what a project made before `project rename` has.
fn downgrade_to_v3(dir: &Path) -> Header {
    let mut log = std::fs::read(log_path(dir)).unwrap();
    let h = header(dir);
    assert_eq!(h.version, record::VERSION);
    let v3 = record::encode_header_v3(h.generation, &h.id.unwrap(), h.prev_seq.unwrap());
    log[..HEADER_LEN].copy_from_slice(&v3);
    std::fs::write(log_path(dir), log).unwrap();
    assert_eq!(header(dir), Header { version: 3, ..h });
    h
}

#[test]
fn a_version_2_log_is_read_as_it_is_and_upgraded_by_the_first_writer() {
    upgraded_by_the_first_writer(2);
}

/// Log version 4 (`project_renamed`, the `rename` operation): a project
/// made by the ldm before it is read as it is, and upgraded keeping its
/// identity by the first writer.
#[test]
fn a_version_3_log_is_read_as_it_is_and_upgraded_by_the_first_writer() {
    upgraded_by_the_first_writer(3);
}

fn upgraded_by_the_first_writer(version: u32) {
    let tmp = tempdir();
    let dir = tmp.path();
    let (opts, notices) = options();
    let expected = three_records(dir, &opts);
    let old = match version {
        2 => downgrade_to_v2(dir),
        _ => downgrade_to_v3(dir),
    };
    taken(&notices);

    read_as_it_is(dir, &opts, &notices, &expected, version);

    let mut writer = Store::open(common::paths(dir), opts.clone());
    commit(
        &mut writer,
        Mutation::UserNameSet {
            container: None,
            name: Some("ann".into()),
        },
    );
    assert_eq!(
        taken(&notices),
        vec![Notice::Upgraded {
            path: log_path(dir)
        }]
    );
    let text = Notice::Upgraded {
        path: log_path(dir),
    }
    .to_string();
    assert!(text.contains("to log format version 4"), "{text}");
    // A compaction into version 4: the same identity, the next generation,
    // the three records in the YAML, the commit's record after them.
    assert_eq!(
        header(dir),
        Header {
            version: 4,
            generation: old.generation + 1,
            id: old.id,
            prev_seq: Some(3),
        }
    );
    assert_eq!(mark_log(dir), snapshot::hex(&old.id.unwrap()));
    assert_eq!(seqs(dir), vec![4]);
    let mut after = expected;
    after.defaults.user = Some(ldm::model::User {
        name: Some("ann".into()),
        password: None,
    });
    assert_eq!(state(dir), after);
    assert_eq!(last_seq(dir), 4);

    // Once is enough: the next commit appends.
    commit(
        &mut writer,
        Mutation::PortsSet {
            container: None,
            ports: vec![1],
        },
    );
    let mut fresh = Store::open(common::paths(dir), opts);
    commit(
        &mut fresh,
        Mutation::PortsSet {
            container: None,
            ports: vec![2],
        },
    );
    assert_eq!(taken(&notices), vec![]);
    assert_eq!(header(dir).generation, old.generation + 1);
    assert_eq!(seqs(dir), vec![4, 5, 6]);
    assert_healthy(dir);
}

#[test]
fn a_version_2_log_beside_another_writers_yaml_is_merged_then_upgraded() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (opts, notices) = options();
    let mut expected = three_records(dir, &opts);
    let old = downgrade_to_v2(dir);
    // lxc-dev-manager sets a password: the file has none of ldm's records.
    go_tool_write(dir, |text| {
        assert!(text.contains("project: p\n"), "{text}");
        text.replacen(
            "project: p\n",
            "project: p\ndefaults:\n  user:\n    password: gopw\n",
            1,
        )
    });
    expected.defaults.user = Some(ldm::model::User {
        name: None,
        password: Some("gopw".into()),
    });
    let read = Store::open(common::paths(dir), opts.clone())
        .read()
        .unwrap();
    assert_eq!(read, expected, "the merge, read");
    taken(&notices);

    // The writer merges, then compacts the merged state into version 4.
    let (code, _, err) = run(dir, &["config", "set", "defaults.user.name", "ann"]);
    assert_eq!(code, 0, "{err}");
    let upgraded: Vec<&str> = err.lines().filter(|l| l.contains("upgraded")).collect();
    assert_eq!(upgraded.len(), 1, "{err}");
    assert!(upgraded[0].contains("to log format version 4"), "{err}");
    let h = header(dir);
    assert_eq!((h.version, h.id), (4, old.id));
    assert_eq!(mark_log(dir), snapshot::hex(&old.id.unwrap()));
    assert_eq!(seqs(dir), vec![4]);
    expected.defaults.user = Some(ldm::model::User {
        name: Some("ann".into()),
        password: Some("gopw".into()),
    });
    assert_eq!(state(dir), expected);
    assert_eq!(get(dir, "defaults.ports"), serde_json::json!([3000]));
    assert_eq!(get(dir, "remote"), serde_json::json!("r"));
    assert_healthy(dir);
}

#[test]
fn a_version_1_pair_is_read_as_it_is_and_upgraded_with_a_new_identity() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (opts, notices) = options();
    let expected = three_records(dir, &opts);
    // As an ldm before version 2 left it: a 24-byte header, the YAML's mark
    // `{generation, seq}` and no base.
    let log = std::fs::read(log_path(dir)).unwrap();
    let old = header(dir);
    let mut v1 = record::encode_header_v1(1).to_vec();
    v1.extend_from_slice(&log[HEADER_LEN..]);
    std::fs::write(log_path(dir), v1).unwrap();
    let text = std::fs::read_to_string(yaml_path(dir)).unwrap();
    let (above, mark) = text.trim_end().rsplit_once('\n').unwrap();
    assert!(mark.starts_with("ldm: {generation: 1, seq: 0,"), "{mark}");
    std::fs::write(
        yaml_path(dir),
        format!("{above}\nldm: {{generation: 1, seq: 0}}\n"),
    )
    .unwrap();
    for name in [".containers.folded", ".containers.cache"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    taken(&notices);

    read_as_it_is(dir, &opts, &notices, &expected, 1);

    let mut writer = Store::open(common::paths(dir), opts);
    commit(
        &mut writer,
        Mutation::PortsSet {
            container: None,
            ports: vec![1],
        },
    );
    assert_eq!(
        taken(&notices),
        vec![Notice::Upgraded {
            path: log_path(dir)
        }]
    );
    let h = header(dir);
    assert_eq!((h.version, h.generation, h.prev_seq), (4, 2, Some(3)));
    assert_ne!(h.id, old.id, "a version 1 log had no identity: a new one");
    assert_eq!(mark_log(dir), snapshot::hex(&h.id.unwrap()));
    assert_eq!(seqs(dir), vec![4]);
    let mut after = expected;
    after.defaults.ports = vec![1];
    assert_eq!(state(dir), after);
    assert_healthy(dir);
}

#[test]
fn a_version_5_header_is_refused_as_a_newer_ldms_and_nothing_changes() {
    let tmp = tempdir();
    let dir = tmp.path();
    let (opts, notices) = options();
    three_records(dir, &opts);
    let mut log = std::fs::read(log_path(dir)).unwrap();
    log[8..12].copy_from_slice(&5u32.to_le_bytes());
    let crc = crc32fast::hash(&log[..HEADER_LEN - 4]);
    log[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(log_path(dir), &log).unwrap();
    taken(&notices);
    let before = data_files(dir);

    let newer = |r: Result<(), StoreError>| match r {
        Err(e @ StoreError::BadHeader { .. }) => {
            assert!(
                matches!(
                    e,
                    StoreError::BadHeader {
                        error: HeaderError::UnknownVersion { found: 5 },
                        ..
                    }
                ),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(text.contains("written by a newer ldm"), "{text}");
            assert!(text.contains("upgrade ldm"), "{text}");
            // Not the damage hint: a plain repair refuses a newer ldm's log.
            assert!(!text.contains("bad header"), "{text}");
            assert!(text.contains("`ldm doctor --repair --force`"), "{text}");
        }
        other => panic!("not refused as a newer ldm's: {other:?}"),
    };
    let store = Store::open(common::paths(dir), opts.clone());
    newer(store.read().map(|_| ()));
    let mut writer = Store::open(common::paths(dir), opts);
    newer(writer.commit(|_| {
        Ok::<_, StoreError>((
            vec![Mutation::PortsSet {
                container: None,
                ports: vec![1],
            }],
            (),
        ))
    }));
    assert_eq!(taken(&notices), vec![]);
    for args in [
        &["config", "get", "defaults.ports"][..],
        &["config", "set", "defaults.ports", "1"],
    ] {
        let (code, _, err) = run(dir, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("written by a newer ldm") && err.contains("log format version 5"),
            "{args:?}: {err}"
        );
    }
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["findings"][0]["hint"], "upgrade ldm", "{report:#}");
    assert_same(&before, &data_files(dir), "a newer ldm's log");
}

/// The rows of the first Markdown table under `heading` in DESIGN.md whose
/// header starts with `| first |`: (name, since, field names in the third
/// column). Field names are the backticked lower-case words outside
/// parentheses (which explain them).
fn design_table(heading: &str, first: &str) -> Vec<(String, u32, Vec<String>)> {
    let design = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/DESIGN.md"))
        .expect("read DESIGN.md");
    let section = &design[design.find(heading).expect("the heading")..];
    let start = section
        .find(&format!("| {first} | since | fields |"))
        .expect("the table");
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    let ticked = |cell: &str| -> Vec<String> {
        let mut depth = 0usize;
        let outside: String = cell
            .chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => return depth == 0,
                }
                false
            })
            .collect();
        outside
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(str::to_string)
            .collect()
    };
    section[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let c = cells(l);
            let name = c[0].trim_matches('`').to_string();
            let since = c[1]
                .parse()
                .unwrap_or_else(|_| panic!("since of {name}: {l}"));
            (name, since, ticked(&c[2]))
        })
        .collect()
}

/// The JSON keys of `v`, but `tag`.
fn keys(v: &serde_json::Value, tag: &str) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| *k != tag)
        .cloned()
        .collect();
    k.sort();
    k
}

/// Issue 25, item 19: DESIGN.md's format tables lacked `mount_added`,
/// `mount_removed`, the `mount`/`umount`/`setup` kinds and the `setup`
/// field. They are read here and compared with the kinds the code freezes
/// (`Mutation::KINDS`, `model::OP_KINDS`: names and versions) and with the
/// JSON of one value of each kind with every optional field set (fields), so
/// that the two cannot drift apart again.
#[test]
fn design_md_format_tables_match_the_frozen_kinds() {
    use ldm::model::SetupProgress;
    let pending = Pending {
        op: Op::Create,
        owner: Owner {
            pid: 7,
            slot: 9,
            lock_ino: Some(1),
            start: Some(2),
        },
        started_at: "2026-01-15T10:30:00Z".into(),
        setup: Some(SetupProgress {
            done: 1,
            failed: Some(2),
            finished: vec!["0123456789abcdef".into()],
        }),
    };
    let some = || Some("x".to_string());
    let mutations = vec![
        Mutation::ContainerAdded {
            name: "c".into(),
            image: "i".into(),
            pending: Some(pending.clone()),
        },
        Mutation::ContainerRemoved { name: "c".into() },
        Mutation::SnapshotAdded {
            container: "c".into(),
            name: "s".into(),
            description: "d".into(),
            created_at: "t".into(),
            pending: Some(pending.clone()),
        },
        Mutation::SnapshotRemoved {
            container: "c".into(),
            name: "s".into(),
        },
        Mutation::PortsSet {
            container: some(),
            ports: vec![1],
        },
        Mutation::UserNameSet {
            container: some(),
            name: some(),
        },
        Mutation::OperationStarted {
            container: "c".into(),
            snapshot: some(),
            pending: pending.clone(),
        },
        Mutation::OperationFinished {
            container: "c".into(),
            snapshot: some(),
        },
        Mutation::RemoteSet { remote: some() },
        Mutation::UserPasswordSet {
            container: some(),
            password: some(),
        },
        Mutation::MountAdded {
            container: "c".into(),
            mount: "/a:/b".into(),
        },
        Mutation::MountRemoved {
            container: "c".into(),
            path: "/b".into(),
        },
        Mutation::ProjectRenamed { name: "q".into() },
    ];
    let table = design_table("### Payloads", "op");
    let mut named: Vec<(String, u32)> = table.iter().map(|(n, v, _)| (n.clone(), *v)).collect();
    let mut frozen: Vec<(String, u32)> = Mutation::KINDS
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    named.sort();
    frozen.sort();
    assert_eq!(
        named, frozen,
        "DESIGN.md's payload table against Mutation::KINDS"
    );
    let mut sampled: Vec<&str> = mutations.iter().map(Mutation::kind).collect();
    sampled.sort();
    assert_eq!(
        sampled,
        frozen.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        "this test needs one value of each kind"
    );
    for m in &mutations {
        let (_, _, mut fields) = table
            .iter()
            .find(|(n, _, _)| n == m.kind())
            .unwrap()
            .clone();
        fields.sort();
        fields.dedup();
        let json = serde_json::to_value(m).unwrap();
        assert_eq!(
            fields,
            keys(&json, "op"),
            "fields of `{}` in DESIGN.md",
            m.kind()
        );
    }

    let ops = vec![
        Op::Create,
        Op::Clone {
            source: "c/s".into(),
        },
        Op::Reset {
            snapshot: "s".into(),
            restart: true,
        },
        Op::SnapshotCreate {
            snapshot: "s".into(),
        },
        Op::SnapshotDelete {
            snapshot: "s".into(),
        },
        Op::Remove,
        Op::ImageCreate {
            alias: "a".into(),
            restart: true,
        },
        Op::Mount {
            mount: "/a:/b".into(),
        },
        Op::Umount { path: "/b".into() },
        Op::Setup,
        Op::Rename {
            from: "p".into(),
            to: "q".into(),
            restart: true,
        },
    ];
    let table = design_table("### Payloads", "kind");
    let mut named: Vec<(String, u32)> = table.iter().map(|(n, v, _)| (n.clone(), *v)).collect();
    let mut frozen: Vec<(String, u32)> = ldm::model::OP_KINDS
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    named.sort();
    frozen.sort();
    assert_eq!(
        named, frozen,
        "DESIGN.md's kind table against model::OP_KINDS"
    );
    assert_eq!(
        ops.len(),
        frozen.len(),
        "this test needs one value of each kind"
    );
    for op in &ops {
        let json = serde_json::to_value(op).unwrap();
        let kind = json["kind"].as_str().unwrap().to_string();
        let (_, _, mut fields) = table.iter().find(|(n, _, _)| *n == kind).unwrap().clone();
        fields.sort();
        fields.dedup();
        assert_eq!(
            fields,
            keys(&json, "kind"),
            "fields of kind `{kind}` in DESIGN.md"
        );
    }
    // The `pending` object, its owner and its `setup` progress are spelled
    // out in the paragraph above the kind table.
    let design =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/DESIGN.md")).unwrap();
    let at = design
        .find("`pending` is `{")
        .expect("the pending paragraph");
    let paragraph = &design[at..at + design[at..].find("\n\n").unwrap()];
    let words: Vec<&str> = paragraph
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .collect();
    let json = serde_json::to_value(&pending).unwrap();
    let nested = [&json, &json["owner"], &json["setup"]];
    for key in nested.iter().flat_map(|v| keys(v, "")) {
        assert!(
            words.contains(&key.as_str()),
            "DESIGN.md's `pending` paragraph does not name `{key}`: {paragraph}"
        );
    }
}
