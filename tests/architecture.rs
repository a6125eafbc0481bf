//! The module map of DESIGN.md, "Architecture", checked on the source:
//! what each module may import. Test code (after a file's `#[cfg(test)]`)
//! is not checked: a test may reach across to check a rule of another.

use std::path::{Path, PathBuf};

fn files(under: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if under.is_file() {
        return vec![under.to_path_buf()];
    }
    for e in std::fs::read_dir(under).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The code of `path` before its tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Panics if a file under `module` names one of `forbidden`.
fn never_names(module: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for f in files(&root.join(module)) {
        let text = code(&f);
        for word in forbidden {
            for (n, line) in text.lines().enumerate() {
                if line.contains(word) && !line.trim_start().starts_with("//") {
                    bad.push(format!("{}:{}: {word}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{module} may not use these:\n{}",
        bad.join("\n")
    );
}

#[test]
fn store_and_lxd_never_meet() {
    never_names(
        "store",
        &[
            "crate::lxd",
            "crate::commands",
            "crate::proxy",
            "crate::cli",
        ],
    );
    // lxd reads the LXD client's config.yml through yaml.rs's bounds.
    never_names(
        "lxd",
        &[
            "crate::store",
            "crate::commands",
            "crate::model",
            "crate::cli",
            "crate::proxy",
        ],
    );
}

#[test]
fn model_proxy_and_yaml_stand_alone() {
    never_names(
        "model",
        &[
            "crate::store",
            "crate::lxd",
            "crate::commands",
            "crate::cli",
            "crate::proxy",
            "crate::yaml",
        ],
    );
    never_names(
        "proxy",
        &[
            "crate::store",
            "crate::lxd",
            "crate::commands",
            "crate::model",
            "crate::cli",
        ],
    );
    never_names("yaml", &["crate::"]);
    never_names("users.rs", &["crate::"]);
}

#[test]
fn commands_use_the_store_s_public_surface_and_only_yaml_rs_names_the_yaml_crate() {
    let internals = [
        "store::repair",
        "store::owner",
        "store::lock",
        "store::log",
        "store::record",
        "store::recover",
        "store::fs",
        "store::cache",
        "store::snapshot",
        "store::writer",
        "store::lineage",
        "store::compact",
        "store::failpoint",
        "containers.lock",
    ];
    never_names("commands", &internals);
    for m in [
        "commands", "store", "model", "lxd", "proxy", "cli.rs", "lib.rs", "main.rs",
    ] {
        never_names(m, &["serde_saphyr", "serde_yaml"]);
    }
}
