//! Recovery and repair (acceptance item 5): a torn tail is cut by the next
//! writer with one notice, its bytes kept beside the log; damage in the
//! middle is refused until `ldm doctor --repair`, which keeps a backup and
//! every valid record. The records here are not folded into containers.yaml
//! (`set_unfolded`), so that the log is all there is of them.

mod common;

use std::path::Path;

use common::*;

/// A project with three records (ports, user, password); returns the log
/// length after the second and after the third.
fn three_records(dir: &Path) -> (u64, u64) {
    create(dir);
    set_unfolded(dir, "defaults.ports", "3001");
    set_unfolded(dir, "defaults.user.name", "alice");
    let second = std::fs::metadata(log_path(dir)).unwrap().len();
    set_unfolded(dir, "defaults.user.password", "pw-3");
    let third = std::fs::metadata(log_path(dir)).unwrap().len();
    (second, third)
}

/// Makes the third record torn with `tail` (bytes after the second record)
/// and checks that readers ignore it, the next writer cuts it with exactly
/// one stderr line, and the log holds the two records and then the new one.
fn torn_tail_is_cut(tail: impl FnOnce(&[u8]) -> Vec<u8>, what: &str) {
    let dir = tempdir();
    let dir = dir.path();
    let (second, third) = three_records(dir);
    let full = std::fs::read(log_path(dir)).unwrap();
    let mut torn = full[..second as usize].to_vec();
    torn.extend(tail(&full[second as usize..]));
    std::fs::write(log_path(dir), &torn).unwrap();
    let dropped = torn.len() as u64 - second;

    // Readers ignore the tail (it may be an append in progress) and write
    // nothing but the load cache.
    let before = files_but_cache(dir);
    assert_eq!(state(dir).defaults.user.unwrap().password, None, "{what}");
    assert_eq!(
        get(dir, "defaults.user.name"),
        serde_json::json!("alice"),
        "{what}"
    );
    let (code, report) = doctor_json(dir);
    assert_eq!(code, 0, "{what}: {report:#}");
    let log_finding = &report["findings"][1];
    assert_eq!(log_finding["severity"], "warning", "{what}: {report:#}");
    assert_same(&before, &files_but_cache(dir), what);

    // Same length as the torn record: the log must end up exactly as long.
    let (code, out, err) = run(dir, &["config", "set", "defaults.user.password", "pw-4"]);
    assert_eq!(code, 0, "{what}: {err}");
    assert!(out.is_empty(), "{what}: {out}");
    assert_eq!(err.lines().count(), 1, "{what}: one notice expected: {err}");
    let cut: Vec<_> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.cut-"))
        .collect();
    assert_eq!(cut.len(), 1, "{what}: the cut bytes are kept");
    assert_eq!(
        cut[0].1.bytes,
        torn[second as usize..],
        "{what}: kept bytes"
    );
    for needle in [
        "containers.log".to_string(),
        format!("cut {dropped} bytes"),
        format!("at byte {second}"),
        format!("kept in {}", dir.join(&cut[0].0).display()),
    ] {
        assert!(
            err.contains(&needle),
            "{what}: stderr lacks {needle:?}: {err}"
        );
    }
    // The notice says only what ldm knows: a cut-short record was never
    // reported done; a complete one with a bad checksum may have been.
    let short = torn.len() < third as usize && !torn[second as usize..].iter().all(|b| *b == 0);
    assert_eq!(
        err.contains("never said it was done"),
        short,
        "{what}: {err}"
    );
    let log = std::fs::read(log_path(dir)).unwrap();
    assert_eq!(log[..second as usize], full[..second as usize], "{what}");
    assert_eq!(
        log.len() as u64,
        third,
        "{what}: not cut to the last record"
    );
    let recs = records(dir);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{what}"
    );
    assert_eq!(recs[2].1, second, "{what}");
    let user = state(dir).defaults.user.unwrap();
    assert_eq!(
        (user.name.as_deref(), user.password.as_deref()),
        (Some("alice"), Some("pw-4"))
    );
    assert_eq!(state(dir).defaults.ports, vec![3001]);
    assert_healthy(dir);
    let (code, _, err) = run(dir, &["config", "set", "defaults.ports", "3002"]);
    assert_eq!((code, err.as_str()), (0, ""), "{what}: notice repeated");
}

#[test]
fn torn_tail_is_cut_to_the_last_record_with_one_notice() {
    torn_tail_is_cut(|r| r[..r.len() - 5].to_vec(), "5 bytes short");
    torn_tail_is_cut(|r| r[..r.len() - 1].to_vec(), "1 byte short");
    torn_tail_is_cut(|r| r[..10].to_vec(), "cut in the record header");
    torn_tail_is_cut(|r| r[..1].to_vec(), "one byte of the record");
    torn_tail_is_cut(|r| vec![0; r.len()], "zero-filled record");
    torn_tail_is_cut(|r| vec![0; r.len() + 100], "zeros past the record");
}

#[test]
fn flipped_bit_in_the_last_record_is_cut_its_bytes_kept() {
    // DESIGN.md: indistinguishable from a torn write, so cut like one, but
    // kept beside the log and not called "never acknowledged".
    torn_tail_is_cut(
        |r| {
            let mut r = r.to_vec();
            r[20] ^= 0x01;
            r
        },
        "flipped bit in the last record",
    );
}

/// Flips one bit in the payload of the first of three records.
fn flip_first_record(dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(log_path(dir)).unwrap();
    bytes[ldm::store::record::HEADER_LEN + 16 + 3] ^= 0x04;
    std::fs::write(log_path(dir), &bytes).unwrap();
    bytes
}

#[test]
fn flipped_bit_in_the_first_record_is_refused_until_repaired() {
    let dir = tempdir();
    let dir = dir.path();
    three_records(dir);
    let broken = flip_first_record(dir);
    for args in [
        &["config", "set", "defaults.ports", "4000"][..],
        &["config", "get", "defaults.ports"],
        &["compact"],
    ] {
        let before = data_files(dir);
        let (code, _, err) = run(dir, args);
        assert_eq!(code, 2, "ldm {args:?}: {err}");
        for needle in [
            "containers.log",
            "byte 52",
            "checksum mismatch",
            "ldm doctor --repair",
        ] {
            assert!(
                err.contains(needle),
                "ldm {args:?}: stderr lacks {needle:?}: {err}"
            );
        }
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_same(&before, &data_files(dir), &format!("ldm {args:?}"));
    }
    let before = files(dir);
    let (code, out, _) = run(dir, &["doctor"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DAMAGE") && out.contains("damaged record at byte 52"),
        "{out}"
    );
    assert!(out.contains("ldm doctor --repair"), "{out}");
    assert_eq!(doctor_json(dir).1["healthy"], false);
    assert_same(&before, &files(dir), "doctor");

    let (code, out, err) = run(dir, &["doctor", "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "saved the damaged log as",
        "dropped 49 bytes at byte 52",
        "kept 2 records",
    ] {
        assert!(
            out.contains(needle),
            "repair output lacks {needle:?}: {out}"
        );
    }
    let backups: Vec<_> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.broken-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        backups[0].1.bytes, broken,
        "the backup is not the damaged log"
    );
    assert_eq!(backups[0].1.mode, 0o600, "the backup holds passwords");
    assert!(out.contains(&*backups[0].0.to_string_lossy()), "{out}");
    let project = state(dir);
    assert!(
        project.defaults.ports.is_empty(),
        "the damaged record came back"
    );
    let user = project.defaults.user.unwrap();
    assert_eq!(
        (user.name.as_deref(), user.password.as_deref()),
        (Some("alice"), Some("pw-3"))
    );
    assert_eq!(last_seq(dir), 3);
    assert_healthy(dir);
    set(dir, "defaults.ports", "4000");
    assert_eq!(last_seq(dir), 4);
    assert_eq!(state(dir).defaults.ports, vec![4000]);
}

#[test]
fn repair_of_a_healthy_store_changes_nothing() {
    let dir = tempdir();
    three_records(dir.path());
    let before = data_files(dir.path());
    let out = ok(dir.path(), &["doctor", "--repair"]);
    assert!(out.contains("nothing to do"), "{out}");
    assert_same(
        &before,
        &data_files(dir.path()),
        "repair of a healthy store",
    );
}

/// Each repair must keep its own backup: a second repair in the same
/// second must not overwrite the first one's copy of a damaged log.
#[test]
fn repeated_repairs_keep_every_damaged_log() {
    let dir = tempdir();
    let dir = dir.path();
    create(dir);
    let mut damaged_logs = Vec::new();
    let mut names = Vec::new();
    for round in 0..20 {
        set(dir, "defaults.ports", &format!("{}", 1000 + round));
        set(dir, "defaults.user.name", "alice");
        // A record of each kind; the password the same each time (changing
        // it compacts the log at once, leaving no record to damage).
        set(dir, "defaults.user.password", "pw");
        damaged_logs.push(flip_first_record(dir));
        let out = ok(dir, &["doctor", "--repair"]);
        let name = out
            .lines()
            .find_map(|l| l.strip_prefix("repair: saved the damaged log as "))
            .unwrap_or_else(|| panic!("no backup reported: {out}"))
            .to_string();
        let repeated = names.contains(&name);
        names.push(name);
        if repeated {
            break; // Two repairs in one second: the case that matters.
        }
    }
    let kept: Vec<Vec<u8>> = files(dir)
        .into_iter()
        .filter(|(n, _)| n.to_string_lossy().starts_with("containers.log.broken-"))
        .map(|(_, f)| f.bytes)
        .collect();
    for (round, log) in damaged_logs.iter().enumerate() {
        assert!(
            kept.contains(log),
            "the damaged log of repair {round} is lost; backups reported: {names:?}"
        );
    }
}
