//! README examples run as printed: every fenced block tagged `sh no-lxd` is
//! run with bash (`set -e`) in a fresh folder, with the built `ldm` first on
//! PATH and no LXD client (`LDM_LXC` points nowhere), so a broken example
//! fails here rather than in a new user's terminal.

use std::path::Path;
use std::process::Command;

fn blocks(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```sh no-lxd") => current = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn readme_examples_without_lxd_run_as_printed() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let examples = blocks(&readme);
    assert!(!examples.is_empty(), "README has no `sh no-lxd` examples");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ldm"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, script) in examples.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg("-ec")
            .arg(script)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("LDM_LXC", "/nonexistent/lxc")
            .env("LXD_DIR", "/nonexistent/lxd")
            .env("LXD_CONF", "/nonexistent/lxc-config")
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", user.path().join("state"))
            .env("XDG_CACHE_HOME", user.path().join("cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README example {i} failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn readme_starts_with_the_two_newcomer_commands() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let head: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(head.contains("bash scripts/quickstart.sh"), "{head}");
    assert!(head.contains("cargo test --locked"), "{head}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/quickstart.sh")
        .exists());
}
