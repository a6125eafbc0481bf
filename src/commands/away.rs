//! A recorded container LXD does not have where ldm's calls go: whether it
//! is elsewhere (another LXD project, or, by this checkout's record,
//! another server) before anything forgets or re-creates it, and the words
//! for it. Asks LXD only on these "not found" paths (DESIGN.md, "The
//! client's LXD project", "Ownership").

use super::op::no_instance;
use super::text;
use crate::lxd::{Away, Lxd};
use crate::Error;

/// The error for a recorded instance LXD's current project lacks: where
/// it is when another LXD project has one of its name, else
/// [`no_instance`]. Asks LXD only on this error path.
pub fn missing(lxd: &dyn Lxd, lxd_name: &str) -> Error {
    match lxd.elsewhere() {
        Ok(other) => match find_away(&other, lxd_name) {
            Some(a) => Error::Conflict {
                what: not_here(lxd_name, a),
                next: "then run the command again".into(),
            },
            None => no_instance(lxd_name),
        },
        Err(e) => {
            // DESIGN.md promises the note: "not found here" is all ldm knows.
            note_unchecked(&e);
            no_instance(lxd_name)
        }
    }
}

/// Refuses to go on with a command that would forget or duplicate
/// `lxd_name` when LXD's current project lacks it (`here` is false) and
/// another LXD project has an instance of that name, or LXD will not say:
/// after an `lxc project switch` the container is there, not gone. Asks
/// LXD only when `here` is false. Nothing has changed when it refuses.
pub fn not_away(lxd: &dyn Lxd, lxd_name: &str, here: bool) -> Result<(), Error> {
    if here {
        return Ok(());
    }
    none_away(lxd, &[lxd_name.to_string()], "changed")
}

/// [`not_away`] for every instance in `missing` (all lacking in LXD's
/// current project); the refusal names each one another project has and
/// says that nothing was `undone` ("changed", "removed").
pub fn none_away(lxd: &dyn Lxd, missing: &[String], undone: &str) -> Result<(), Error> {
    if missing.is_empty() {
        return Ok(());
    }
    let other = lxd.elsewhere().map_err(Error::lxd(format!(
        "looking in other LXD projects for {}, which LXD's current project lacks (nothing was {undone})",
        missing.join(", ")
    )))?;
    let found: Vec<String> = missing
        .iter()
        .filter_map(|m| find_away(&other, m))
        .map(|a| not_here(&a.instance, a))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict {
        what: found.join("; "),
        next: format!("nothing was {undone}"),
    })
}

/// "p-a is not in LXD's current project: LXD project dev has ...".
fn not_here(lxd_name: &str, a: &Away) -> String {
    format!("{lxd_name} {}", not_there(a))
}

/// "is not in LXD's current project: ...", or, for a container this
/// folder made on another server, "is not on the server ...".
pub fn not_there(a: &Away) -> String {
    format!("is {}: {}", not_where(a), away(a))
}

/// "not in LXD's current project", or "not on the server the client
/// points at" for a container this folder made on another server.
pub fn not_where(a: &Away) -> &'static str {
    if a.server.is_some() {
        "not on the server the client points at"
    } else {
        "not in LXD's current project"
    }
}

/// Says, on stderr, that LXD would not list the other projects, for the
/// commands that go on without knowing (they change nothing there).
pub fn note_unchecked(e: &crate::lxd::LxdError) {
    eprintln!("note: could not look for the missing containers in other LXD projects: {e}");
}

/// [`not_away`], after asking LXD whether its current project has
/// `lxd_name`.
pub fn here_or_nowhere(lxd: &dyn Lxd, lxd_name: &str) -> Result<(), Error> {
    let here = lxd
        .instance(lxd_name)
        .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?
        .is_some();
    not_away(lxd, lxd_name, here)
}

/// The instance named `lxd_name` that another LXD project has, if any.
pub fn find_away<'a>(other: &'a [Away], lxd_name: &str) -> Option<&'a Away> {
    other.iter().find(|a| a.instance == lxd_name)
}

/// What to say of a recorded container whose name another LXD project
/// has (the client's current project changed since, or the name is
/// another's there): what to run either way.
pub fn away(a: &Away) -> String {
    if let Some((made, now)) = &a.server {
        return format!(
            "this folder made {} on {} (LXD project {}), and the client now points at {}; switch back with `{}` (nothing was changed); to have it on the new server instead, remove it there first",
            a.instance,
            text::escape(made),
            text::escape(&a.project),
            text::escape(now),
            text::escape(&a.switch)
        );
    }
    format!(
        "LXD project {} has an instance named {}, and the client's current project has none; if it is this container, switch back with `{}`; if not, delete or rename it there",
        text::escape(&a.project),
        a.instance,
        text::escape(&a.switch)
    )
}
