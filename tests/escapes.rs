//! Terminal control characters in values from files are shown escaped
//! (issue 12, item 11): a snapshot description from a teammate's
//! containers.yaml holding `\x1b[2J` (clear the screen) or `\r` (overwrite
//! the line) must not reach the terminal raw; `--json` keeps every value
//! exact. Tables, doctor and error messages are escaped on a pipe too (a
//! saved table is read on a terminal later), so these tests read pipes;
//! `config get`, whose bare value scripts read, is escaped only on a
//! terminal, which `on_a_pty` gives it (python3's `pty`). Against the LXD
//! API TEST DOUBLE (`crates/lxd-double`).

mod common;

use std::process::Command;

use common::api::Env;
use lxd_double::Image;
use serde_json::{json, Value};

const DESC: &str = "before\x1b[2J\rafter";
const SHOWN: &str = "before\\x1b[2J\\rafter";

/// Panics if `text` holds an escape, carriage return or other control
/// character but newlines.
fn no_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "{what}: raw {bad:?} in {text:?}");
}

#[test]
fn snapshot_descriptions_are_escaped_in_tables_and_exact_in_json() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.ok(&["container", "snapshot", "create", "a", "s1", "-d", DESC]);
    let run = env.ok(&["container", "snapshot", "list", "a"]);
    no_controls("snapshot list", &run.stdout);
    assert!(run.stdout.contains(SHOWN), "{}", run.stdout);
    let run = env.ok(&["container", "snapshot", "list", "a", "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let s1 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "s1")
        .unwrap();
    assert_eq!(s1["description"], json!(DESC));
}

#[test]
fn a_teammates_yaml_with_escapes_is_shown_escaped() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    env.ok(&["compact"]);
    // Rewritten by someone else (no `ldm:` mark), as a `git pull` brings it.
    std::fs::write(
        env.dir.join("containers.yaml"),
        "project: p\ncontainers:\n  a:\n    image: img\n    snapshots:\n      initial-state: {description: \"title\\e]0;pwned\\a and \\r\", created_at: 2026-01-01T00:00:01Z}\n",
    )
    .unwrap();
    let run = env.ok(&["container", "snapshot", "list", "a"]);
    no_controls("snapshot list", &run.stdout);
    no_controls("snapshot list stderr", &run.stderr);
    assert!(
        run.stdout.contains("title\\x1b]0;pwned\\x07 and \\r"),
        "{}",
        run.stdout
    );
    for args in [&["list"][..], &["doctor"]] {
        let run = env.run(args);
        no_controls(&format!("{args:?}"), &run.stdout);
        no_controls(&format!("{args:?} stderr"), &run.stderr);
    }
}

#[test]
fn image_descriptions_from_lxd_are_escaped_in_tables_and_exact_in_json() {
    let env = Env::new("p");
    let mut img = Image::new("base");
    img.properties.insert("description".into(), DESC.into());
    env.double.add_image("default", img);
    let run = env.ok(&["image", "list"]);
    no_controls("image list", &run.stdout);
    assert!(run.stdout.contains(SHOWN), "{}", run.stdout);
    let run = env.ok(&["image", "list", "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v[0]["description"], json!(DESC));
}

#[test]
fn error_messages_show_names_escaped() {
    let env = Env::new("p");
    env.seed_container("a", "img", true);
    let run = env.fail(&["mv", "no\x1b[2Jfile", "a:/tmp/"]);
    no_controls("error", &run.stderr);
    run.err_has("no\\x1b[2Jfile: no such file or folder on this machine");
}

/// Runs `ldm ARGS` on a pseudo-terminal and returns what it printed there.
fn on_a_pty(env: &Env, args: &[&str]) -> String {
    let cmd = env.command(args, &[]);
    let spawn = "import pty, sys\nsys.exit(pty.spawn(sys.argv[1:]) >> 8)";
    let mut py = Command::new("python3");
    py.args(["-c", spawn])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(&env.dir);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py
        .output()
        .expect("this test needs python3 (its pty module)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn config_get_escapes_on_a_terminal_and_is_exact_on_a_pipe_and_in_json() {
    let env = Env::new("p");
    let password = "pw\x1b[2J\rend";
    env.ok(&["config", "set", "defaults.user.password", password]);
    let key = "defaults.user.password";
    assert_eq!(
        env.ok(&["config", "get", key]).stdout,
        format!("{password}\n")
    );
    let got: Value =
        serde_json::from_str(&env.ok(&["config", "get", key, "--json"]).stdout).unwrap();
    assert_eq!(got["value"], json!(password));
    let shown = on_a_pty(&env, &["config", "get", key]);
    // The terminal turns the newline into \r\n; nothing else is raw.
    let shown = shown.replace("\r\n", "\n");
    no_controls("config get on a terminal", &shown);
    assert_eq!(shown, "pw\\x1b[2J\\rend\n");
}
