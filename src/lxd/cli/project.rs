//! The LXD project ldm's client calls address. Every client command works
//! in the current project of its remote (`lxc project switch NAME`) except
//! `query`, which sends the API path as given and so reads the `default`
//! project. ldm asks the client which project is current, once per run, and
//! adds `project=NAME` to each query path, so that its queries see the
//! instances its other commands made.

/// The project marked current in `project list --format csv` output;
/// `None` for `default` (a path without `project=` means it) or when no row
/// is marked (a server without projects).
pub(super) fn current(csv: &[u8]) -> Option<String> {
    String::from_utf8_lossy(csv)
        .lines()
        .filter_map(|row| row.split(',').next())
        .find_map(|name| name.strip_suffix(" (current)"))
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "default")
        .map(str::to_string)
}

/// The (instance, project) pairs of `query
/// /1.0/instances?all-projects=true` (paths `/1.0/instances/NAME`, with
/// `?project=P` outside `default`) whose project is not `current`.
pub(super) fn elsewhere(v: &serde_json::Value, current: &str) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|url| {
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            let name = path.strip_prefix("/1.0/instances/")?;
            let project = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("project="))
                .unwrap_or("default");
            (project != current).then(|| (decode(name), decode(project)))
        })
        .collect()
}

/// Undoes percent-encoding (LXD encodes names in paths it returns); bytes
/// that do not decode are kept as they are.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
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
        assert_eq!(current(TWO).as_deref(), Some("ptest"));
        assert_eq!(
            current(
                b"default (current),YES,YES,YES,YES,Default LXD project,13\nptest,NO,NO,NO,NO,,1\n"
            ),
            None
        );
        assert_eq!(current(b""), None);
        assert_eq!(current(b"default,YES,YES,YES,YES,,1\n"), None);
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
        assert_eq!(
            elsewhere(&v, "default"),
            vec![
                ("p-b".to_string(), "dev".to_string()),
                ("p-d".to_string(), "a&b".to_string())
            ]
        );
        assert_eq!(
            elsewhere(&v, "dev"),
            vec![
                ("p-a".to_string(), "default".to_string()),
                ("p-c".to_string(), "default".to_string()),
                ("p-d".to_string(), "a&b".to_string())
            ]
        );
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
}
