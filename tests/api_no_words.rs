//! No decision of the LXD backend reads the words of an error (issue 24):
//! status codes, operation states and what the server reports decide, and
//! LXD's words only travel to the message shown. Checked on the source of
//! `crates/ldm-lxd/src/` (non-test code):
//!
//! - no string search (`contains`, `starts_with`, `find`, ...) or
//!   comparison on a value named like an error text (`err`, `error`,
//!   `message`, `stderr`, `why`, `text`, ...);
//! - no phrase of LXD's or Incus's error messages as a literal.
//!
//! And on the rest of ldm (`src/` and the `crates/ldm-*` crates, but
//! `tests.rs` modules): no search of a text for a phrase of LXD's errors,
//! and no search in an error's display.

use std::path::{Path, PathBuf};

fn files(under: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
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

/// Lines of code (not comments) before the file's tests.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    code.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(n, l)| (n + 1, l.to_string()))
        .collect()
}

/// What a line does with an error's words, if anything.
fn reads_words(line: &str) -> Option<&'static str> {
    const NAMES: [&str; 9] = [
        "err",
        "error",
        "message",
        "msg",
        "stderr",
        "why",
        "text",
        "words",
        "description",
    ];
    const SEARCHES: [&str; 9] = [
        ".contains(",
        ".starts_with(",
        ".ends_with(",
        ".find(",
        ".rfind(",
        ".matches(",
        ".strip_prefix(",
        ".strip_suffix(",
        ".to_lowercase()",
    ];
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for name in NAMES {
        let mut from = 0;
        while let Some(i) = line[from..].find(name) {
            let start = from + i;
            let end = start + name.len();
            from = end;
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if before.is_some_and(ident) || after.is_some_and(ident) {
                continue;
            }
            // The value, then perhaps `.as_str()`, `.trim()`...: what is
            // done to it before the next space or `;`.
            let rest: String = line[end..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ';' && *c != ',')
                .collect();
            if let Some(s) = SEARCHES.iter().find(|s| rest.contains(**s)) {
                return Some(s);
            }
            let tail = line[end..].trim_start();
            if tail.starts_with("== \"") || tail.starts_with("!= \"") {
                return Some("a comparison with a literal");
            }
        }
    }
    None
}

/// Phrases of LXD's and Incus's error messages (LC_ALL=C): none may
/// appear in the backend's code.
const PHRASES: [&str; 12] = [
    "not found",
    "does not exist",
    "doesn't exist",
    "already exists",
    "already running",
    "already stopped",
    "is busy",
    "busy running",
    "not running",
    "failed to retrieve pid",
    "idmapping abilities",
    "has snapshots",
];

#[test]
fn the_backend_decides_nothing_by_the_words_of_an_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ldm-lxd/src");
    let mut bad = Vec::new();
    for f in files(&root) {
        for (n, line) in code_lines(&f) {
            if let Some(what) = reads_words(&line) {
                bad.push(format!("{}:{n}: {what}: {}", f.display(), line.trim()));
            }
            // Only string literals count (an `#[error("...")]` display
            // string is what ldm says, not what it reads).
            if line.trim_start().starts_with("#[error(") {
                continue;
            }
            let lower = line.to_lowercase();
            for p in PHRASES {
                if literals(&lower).iter().any(|l| l.contains(p)) {
                    bad.push(format!(
                        "{}:{n}: LXD's words {p:?}: {}",
                        f.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the LXD backend reads the words of errors:\n{}",
        bad.join("\n")
    );
}

/// A search on a string (`.contains("...")`, `== "..."`, ...) whose literal
/// holds a phrase of LXD's errors as LXD writes it (lower case, or with a
/// capital first letter or words; ldm's own upper-case STATUS words such
/// as `NOT FOUND` are not LXD's), or a search in an error's text
/// (`.to_string().contains(`): what matching LXD's words looks like
/// anywhere in ldm.
fn matches_lxds_words(line: &str) -> Option<String> {
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let forms = |p: &str| {
        let title: Vec<String> = p.split(' ').map(cap).collect();
        [p.to_string(), cap(p), title.join(" ")]
    };
    const SEARCHES: [&str; 8] = [
        ".contains(",
        ".starts_with(",
        ".ends_with(",
        ".find(",
        ".matches(",
        ".strip_prefix(",
        ".strip_suffix(",
        "== ",
    ];
    for s in SEARCHES {
        let mut from = 0;
        while let Some(i) = line[from..].find(s) {
            let at = from + i + s.len();
            from = at;
            let arg = line[at..].trim_start();
            if let Some(lit) = arg.strip_prefix('"').and_then(|a| a.split('"').next()) {
                let said = PHRASES
                    .iter()
                    .find(|p| forms(p).iter().any(|f| lit.contains(f.as_str())));
                if let Some(p) = said {
                    return Some(format!("{s}\"{p}\""));
                }
            }
        }
    }
    for e in [".to_string().", "format!(\"{e}\")."] {
        if let Some(i) = line.find(e) {
            let rest = &line[i + e.len()..];
            if SEARCHES
                .iter()
                .any(|s| rest.starts_with(s.trim_start_matches('.')))
            {
                return Some(format!("a search in {e}"));
            }
        }
    }
    None
}

/// The rest of ldm (commands, store, ...) never matches LXD's words
/// either: nothing there searches a text for a phrase of LXD's errors, or
/// an error's display for anything.
#[test]
fn nothing_in_ldm_matches_lxds_words() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    let mut ours = files(&root.join("src"));
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        let c = e.unwrap().path();
        // ldm's crates; not the test double, whose words are LXD's.
        if c.file_name().unwrap().to_string_lossy().starts_with("ldm-") {
            ours.extend(files(&c.join("src")));
        }
    }
    assert!(ours.len() > 100, "found {} files of ldm", ours.len());
    for f in ours {
        // A module of tests (`tests.rs`) checks ldm's own messages.
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        for (n, line) in code_lines(&f) {
            if let Some(what) = matches_lxds_words(&line) {
                bad.push(format!("{}:{n}: {what}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "ldm matches the words of LXD's errors:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_wider_check_sees_what_it_is_for() {
    assert!(matches_lxds_words(r#"if out.stderr.contains("Not Found") {"#).is_some());
    assert!(matches_lxds_words(r#"let gone = why == "does not exist";"#).is_some());
    assert!(matches_lxds_words(r#"if e.to_string().contains("x") {"#).is_some());
    assert!(matches_lxds_words(r#"if e.message.starts_with("Not Found") {"#).is_some());
    assert!(matches_lxds_words(r#"if m.ends_with("Instance is busy running") {"#).is_some());
    assert!(matches_lxds_words(r#"if status == "NOT FOUND" {"#).is_none());
    assert!(matches_lxds_words(r#"const NOT_FOUND: &str = "NOT FOUND";"#).is_none());
    assert!(matches_lxds_words(r#"if text.contains("password") {"#).is_none());
}

/// The string literals on a line.
fn literals(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut escaped = false;
    for c in line.chars() {
        match (&mut cur, c) {
            (None, '"') => cur = Some(String::new()),
            (Some(s), _) if escaped => {
                s.push(c);
                escaped = false;
            }
            (Some(_), '\\') => escaped = true,
            (Some(s), '"') => {
                out.push(std::mem::take(s));
                cur = None;
            }
            (Some(s), _) => s.push(c),
            (None, _) => {}
        }
    }
    out
}

#[test]
fn the_check_sees_what_it_is_for() {
    assert!(reads_words(r#"if e.message.contains("busy") {"#).is_some());
    assert!(reads_words(r#"match op.err.as_str().starts_with("x") {"#).is_some());
    assert!(reads_words(r#"let lower = stderr.to_lowercase();"#).is_some());
    assert!(reads_words(r#"if why == "not found" {"#).is_some());
    assert!(reads_words(r#"message: op.err.clone(),"#).is_none());
    assert!(reads_words(r#"let errors = x.contains(y);"#).is_none());
    assert_eq!(literals(r#"a("not found", "x\"y")"#), ["not found", "x\"y"]);
}
