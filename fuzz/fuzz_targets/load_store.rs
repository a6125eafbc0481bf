//! Loading a project from arbitrary `containers.yaml` and `containers.log`
//! bytes: nothing may panic, and readers and the recovering writer must agree.
//!
//! Input: `flags | a[8] | b[8] | c | yaml_len[2] | rest`; `rest` is split
//! into the YAML part (first `yaml_len % (len + 1)` bytes) and the log part.
//! `a` (generations) and `b` (sequence numbers) are drawn over the whole
//! u64 range, so that sums and differences of header fields near
//! `u64::MAX` are reached (issue 25, item 2: they must be damage, never
//! wrap or panic).
//! Flag bit 0: the YAML is a valid project with a version 1 mark
//! `{generation: a, seq: b}` followed by the YAML part (so it may still be
//! invalid); with bit 4 too, a version 2 mark naming log `[c % 4; 16]`,
//! with the right checksum of the bytes above it when bit 5 is clear, so
//! that the fuzzer reaches ldm's own folds and edits of them.
//! Flag bit 1: the log is a valid header of this build's version (identity
//! `[c % 4; 16]`, generation `a`, prev_seq `b`; version 1, generation `a`,
//! with bit 6; version 2, the same layout, with bit 7 and not 6) followed
//! by the log part split on NUL bytes into checksummed records with seqs
//! from `b + 1` (wrapping), so that the fuzzer reaches replay and the merge.
//! Flag bit 2: no log file at all.
//! Flag bit 3: the YAML part follows a project with an anchored snapshot
//! (`&s`) and an open `snapshots:` map, so that aliases (`sN: *s`) land
//! where the model copies them: the YAML bounds (crates/ldm-yaml) must refuse
//! an expansion, and what loads must stay proportional to the file, which
//! is checked on the load cache a writer leaves.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ldm_store::{record, recover, snapshot, Options, OsFs, Paths, Store};
use libfuzzer_sys::fuzz_target;

/// One folder per fuzzing process, in memory when /dev/shm exists.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("ldm-fuzz-load-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let [flags, a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c, l0, l1, rest @ ..] =
        data
    else {
        return;
    };
    let a = u64::from_le_bytes([*a0, *a1, *a2, *a3, *a4, *a5, *a6, *a7]);
    let b = u64::from_le_bytes([*b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7]);
    let split = usize::from(u16::from_le_bytes([*l0, *l1])) % (rest.len() + 1);
    let (yaml_part, log_part) = rest.split_at(split);

    let mut yaml = Vec::new();
    if flags & 1 != 0 && flags & 16 == 0 {
        yaml.extend_from_slice(
            format!(
                "project: p\nldm: {{generation: {a}, seq: {b}}}\n"
            )
            .as_bytes(),
        );
    }
    if flags & 8 != 0 {
        if flags & 1 == 0 {
            yaml.extend_from_slice(b"project: p\n");
        }
        yaml.extend_from_slice(
            b"x: &s {description: d, created_at: t}\ncontainers:\n  c:\n    image: i\n    snapshots:\n      ",
        );
    }
    yaml.extend_from_slice(yaml_part);
    if flags & 1 != 0 && flags & 16 != 0 {
        // A version 2 mark as ldm writes it, last; its checksum covers the
        // bytes above it (wrong on purpose with bit 5).
        if yaml.is_empty() || !yaml.starts_with(b"project:") {
            yaml.splice(0..0, b"project: p\n".iter().copied());
        }
        if !yaml.ends_with(b"\n") {
            yaml.push(b'\n');
        }
        let mut sha = snapshot::sha256(&yaml);
        if flags & 32 != 0 {
            sha[0] ^= 1;
        }
        let mark = format!(
            "ldm: {{generation: {a}, seq: {b}, log: \"{}\", sha: \"{}\"}}\n",
            snapshot::hex(&[c % 4; 16]),
            snapshot::hex(&sha)
        );
        yaml.extend_from_slice(mark.as_bytes());
    }
    let log = if flags & 2 != 0 {
        let mut out = if flags & 64 != 0 {
            record::encode_header_v1(a).to_vec()
        } else if flags & 128 != 0 {
            record::encode_header_v2(a, &[c % 4; 16], b).to_vec()
        } else {
            record::encode_header(a, &[c % 4; 16], b).to_vec()
        };
        for (i, payload) in log_part.split(|x| *x == 0).enumerate() {
            let seq = b.wrapping_add(1).wrapping_add(i as u64);
            let _ = record::encode_record(seq, payload, &mut out);
        }
        out
    } else {
        log_part.to_vec()
    };

    let dir = dir();
    // Start clean: no lock, cache or temp files from the previous input.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let paths = Paths::in_dir(dir);
    std::fs::write(&paths.yaml, &yaml).unwrap();
    if flags & 4 == 0 {
        std::fs::write(&paths.log, &log).unwrap();
    }

    let loaded = recover::load(&OsFs::strict(), &paths);
    let opts = Options {
        notify: Arc::new(|_| {}),
        ..Options::default()
    };
    let read = Store::open(paths.clone(), opts.clone()).read();
    match (&loaded, &read) {
        (Ok(l), r) => assert_eq!(r.as_ref().ok(), Some(&l.project), "load and read disagree"),
        (Err(_), r) => assert!(r.is_err(), "read accepts what load refuses"),
    }

    // The writer's recovery: what it returns is what readers see afterwards.
    let recovered = Store::open(paths.clone(), opts.clone()).recover();
    if let Ok(p) = &recovered {
        let after = Store::open(paths.clone(), opts).read();
        assert_eq!(
            after.as_ref().ok(),
            Some(p),
            "read after recovery disagrees"
        );
        if let Ok(l) = &loaded {
            assert_eq!(&l.project, p, "recovery changed the state");
        }
    }
    // The cache and the base mirror the parsed YAML: no bigger than a
    // constant times the file (JSON spells a snapshot's empty fields out,
    // and escapes a control character in six bytes).
    for name in [".containers.cache", ".containers.folded"] {
        if let Ok(cache) = std::fs::metadata(dir.join(name)) {
            let bound = 64 * yaml.len() as u64 + 64 * 1024;
            assert!(
                cache.len() <= bound,
                "a {}-byte YAML made a {}-byte {name}",
                yaml.len(),
                cache.len()
            );
        }
    }
});
