//! The LXD project ldm's client calls address. Every client command works
//! in the current project of its remote (`lxc project switch NAME`) except
//! `query`, which sends the API path as given and so reads the `default`
//! project. ldm asks the client which project is current, once per run and
//! remote, and adds `project=NAME` to each query path, so that its queries
//! see the instances its other commands made.

use std::ffi::OsString;
use std::sync::Mutex;

/// Answers the client gives once per run, per (client program, remote):
/// every `Client` of the process shares them.
pub(super) type Answers = Mutex<Vec<(Key, Option<String>)>>;

/// The current project.
pub(super) static CURRENT: Answers = Mutex::new(Vec::new());

/// The remote's name when its server is on another machine
/// (`Client::elsewhere_server`).
pub(super) static SERVER: Answers = Mutex::new(Vec::new());

type Key = (OsString, Option<String>);

/// The answer `table` keeps for `key`, else `ask()`'s, kept. The lock is
/// held while asking, so threads asking at once make one client call.
pub(super) fn cached<E>(
    table: &Answers,
    key: Key,
    ask: impl FnOnce() -> Result<Option<String>, E>,
) -> Result<Option<String>, E> {
    // A poisoned lock only means another thread panicked while asking.
    let mut known = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = known.iter().find(|(k, _)| *k == key) {
        return Ok(p.clone());
    }
    let p = ask()?;
    known.push((key, p.clone()));
    Ok(p)
}

/// The project marked current in `project list --format csv` output:
/// `Ok(None)` for `default` (a path without `project=` means it) or an
/// empty list; `Err` (what is wrong) when rows are listed but none is
/// marked, as ldm would otherwise read the wrong project unseen.
pub(super) fn current(csv: &[u8]) -> Result<Option<String>, String> {
    let text = String::from_utf8_lossy(csv);
    let mut rows = 0;
    for row in text.lines().filter(|r| !r.trim().is_empty()) {
        rows += 1;
        if let Some(name) = first_field(row).strip_suffix(" (current)") {
            let name = name.trim();
            return Ok((name != "default").then(|| name.to_string()));
        }
    }
    if rows == 0 {
        return Ok(None);
    }
    Err(format!(
        "it lists {rows} project(s) and marks none as current"
    ))
}

/// The first field of a CSV row: quoted (`"a,b (current)"`, `""` for a
/// quote) when the value holds a comma or a quote, as Go's encoding/csv
/// writes it.
fn first_field(row: &str) -> String {
    let Some(rest) = row.strip_prefix('"') else {
        return row.split(',').next().unwrap_or_default().to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('"', Some('"')) => {
                out.push('"');
                chars.next();
            }
            ('"', _) => break,
            (c, _) => out.push(c),
        }
    }
    out
}

/// The remote `name`'s server is on another machine: its address in
/// `remote list --format json` is not the local socket (`unix://`).
pub(super) fn is_another_machine(remotes: &serde_json::Value, name: &str) -> Option<bool> {
    let addr = remotes[name]["Addr"].as_str()?;
    Some(!addr.starts_with("unix:"))
}

/// The (instance, project) pairs of `query
/// /1.0/instances?all-projects=true` (paths `/1.0/instances/NAME`, with
/// `?project=P` outside `default`, both percent-encoded) whose project is
/// not `current`.
pub(super) fn elsewhere(v: &serde_json::Value, current: &str) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|url| {
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            let name = decode(path.strip_prefix("/1.0/instances/")?);
            let project = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("project="))
                .map_or_else(|| "default".to_string(), decode);
            (project != current).then_some((name, project))
        })
        .collect()
}

/// Undoes percent-encoding; bytes that do not decode are kept as they are.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits: at most 255.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `project=NAME` added to its query string; `path` itself
/// for the default project.
pub(super) fn scoped(path: &str, project: Option<&str>) -> String {
    let Some(project) = project else {
        return path.to_string();
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}project={}", encode(project))
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a
/// project name reaches LXD as one query value whatever it contains.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // As LXD 5.0.2's `lxc project list --format csv` prints it.
    const TWO: &[u8] = b"default,YES,YES,YES,YES,Default LXD project,13\n\
        ptest (current),NO,NO,NO,NO,,1\n";

    #[test]
    fn the_row_marked_current_names_the_project() {
        assert_eq!(current(TWO), Ok(Some("ptest".into())));
        assert_eq!(
            current(
                b"default (current),YES,YES,YES,YES,Default LXD project,13\nptest,NO,NO,NO,NO,,1\n"
            ),
            Ok(None)
        );
        assert_eq!(current(b""), Ok(None));
        // A name with a comma or a quote is a quoted field.
        assert_eq!(
            current(b"default,YES,,1\n\"a,b \"\"x\"\" (current)\",NO,,1\n"),
            Ok(Some("a,b \"x\"".into()))
        );
    }

    #[test]
    fn a_list_with_no_row_marked_is_an_error_not_the_default_project() {
        let e = current(b"default,YES,YES,YES,YES,,1\ndev,NO,NO,NO,NO,,1\n").unwrap_err();
        assert!(e.contains("marks none as current"), "{e}");
    }

    #[test]
    fn a_query_path_gains_the_project_as_one_encoded_value() {
        assert_eq!(
            scoped("/1.0/instances/a/state", None),
            "/1.0/instances/a/state"
        );
        assert_eq!(
            scoped("/1.0/instances/a/state", Some("dev")),
            "/1.0/instances/a/state?project=dev"
        );
        assert_eq!(
            scoped("/1.0/instances?recursion=1", Some("a&b c")),
            "/1.0/instances?recursion=1&project=a%26b%20c"
        );
    }

    #[test]
    fn instances_of_other_projects_are_told_from_the_current_one() {
        // As LXD 5.0.2 answers `query /1.0/instances?all-projects=true`.
        let v = serde_json::json!([
            "/1.0/instances/p-a",
            "/1.0/instances/p-b?project=dev",
            "/1.0/instances/p-c?project=default",
            "/1.0/instances/p%2Dd?project=a%26b",
            "/1.0/other/x?project=dev",
        ]);
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            elsewhere(&v, "default"),
            vec![pair("p-b", "dev"), pair("p-d", "a&b")]
        );
        assert_eq!(
            elsewhere(&v, "dev"),
            vec![
                pair("p-a", "default"),
                pair("p-c", "default"),
                pair("p-d", "a&b")
            ]
        );
        // The current project is compared decoded.
        assert_eq!(
            elsewhere(&v, "a&b"),
            vec![
                pair("p-a", "default"),
                pair("p-b", "dev"),
                pair("p-c", "default")
            ]
        );
    }

    #[test]
    fn a_remote_is_local_when_its_address_is_the_unix_socket() {
        // As LXD 5.0.2's `lxc remote list --format json` prints it.
        let v = serde_json::json!({
            "local": {"Addr": "unix://", "Project": "", "Protocol": "lxd"},
            "far": {"Addr": "https://198.51.100.7:8443", "Project": ""},
        });
        assert_eq!(is_another_machine(&v, "local"), Some(false));
        assert_eq!(is_another_machine(&v, "far"), Some(true));
        assert_eq!(is_another_machine(&v, "gone"), None);
    }

    #[test]
    fn each_program_and_remote_is_asked_once() {
        let key = |r: &str| (OsString::from("test-client"), Some(r.to_string()));
        let mut asked = 0;
        for _ in 0..3 {
            let p = cached::<()>(&CURRENT, key("one"), || {
                asked += 1;
                Ok(Some("dev".into()))
            });
            assert_eq!(p, Ok(Some("dev".into())));
        }
        assert_eq!(asked, 1);
        let p = cached::<()>(&CURRENT, key("two"), || Ok(None));
        assert_eq!(p, Ok(None));
        // A failure is not kept: the next call asks again.
        assert_eq!(cached(&CURRENT, key("three"), || Err("down")), Err("down"));
        assert_eq!(cached::<()>(&CURRENT, key("three"), || Ok(None)), Ok(None));
        // Each table keeps its own answers.
        assert_eq!(cached::<()>(&SERVER, key("one"), || Ok(None)), Ok(None));
    }
}
