//! The host side of a mount, judged before it reaches LXD (DESIGN.md,
//! "Mounts"): it must exist; a refused path (`trust::sources::refused`) is
//! mounted only when the user typed `--force`, now or before; run as root,
//! only what the project folder's owner owns.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::commands::mounts::host_ids;
use crate::model::Mount;
use crate::trust::sources::{self, Homes};
use crate::Error;

/// What a mount's host side is, judged ([`judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Mount it: this real path.
    Mount(PathBuf),
    /// Mount it: a refused path the user forced; `typed` when `--force`
    /// was typed on this command line (to be remembered), not only found
    /// in what the user forced before.
    Forced {
        /// The real path.
        path: PathBuf,
        /// Forced on this command line.
        typed: bool,
    },
    /// Never mounted unless the user types `--force` (or at all, when
    /// `forceable` is false); `why` says so.
    Refused {
        /// The real path.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
        /// `--force` would mount it.
        forceable: bool,
    },
}

/// Judges the host side of `m` in the project at `dir`: it must exist; a
/// refused source (`trust::sources::refused`) is mounted only when the user
/// typed `--force` (`typed`) now or when mounting it before (`forced`,
/// from what the user allowed). Run as root, only sources owned by the
/// project folder's owner are mounted.
pub fn judge(
    dir: &Path,
    m: &Mount,
    typed: bool,
    forced: &BTreeSet<PathBuf>,
) -> Result<Judged, Error> {
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let s = sources::resolve(&canon, &m.host);
    if !s.exists {
        let joined = dir.join(&m.host);
        return Err(Error::NotFound {
            what: format!(
                "the host folder {} of mount {m} does not exist",
                joined.display()
            ),
            next: format!(
                "create it (mkdir -p {}), or fix the mount",
                joined.display()
            ),
        });
    }
    let host = host_ids(&canon);
    let refused = sources::refused(&s, &Homes::of(host.uid));
    let forced = refused.is_some() && (typed || forced.contains(&s.path));
    if let (Some(why), false) = (&refused, forced) {
        return Ok(Judged::Refused {
            why: format!("{why}; a container that sees it can take over your account or the host"),
            path: s.path,
            forceable: true,
        });
    }
    if ldm_sys::euid() == 0 && sources::owner(&s.path) != Some(host.uid) {
        return Ok(Judged::Refused {
            why: format!(
                "ldm runs as root, and {} is not owned by the project folder's owner ({}); a container must not get files its user could not reach. Run ldm as the folder's owner",
                s.path.display(),
                crate::users::describe(host.uid)
            ),
            path: s.path,
            forceable: false,
        });
    }
    Ok(match forced {
        true => Judged::Forced {
            path: s.path,
            typed,
        },
        false => Judged::Mount(s.path),
    })
}

/// [`judge`] for a mount the user typed (`ldm mount`): a refused source is
/// an error that says how to force it.
pub fn source(dir: &Path, m: &Mount, force: bool) -> Result<Judged, Error> {
    match judge(dir, m, force, &BTreeSet::new())? {
        Judged::Refused {
            path,
            why,
            forceable,
        } => Err(Error::Refused(format!(
            "will not mount {}: {why}. Mount a folder of the project instead{}",
            path.display(),
            if forceable {
                ", or pass --force if you mean it"
            } else {
                ""
            }
        ))),
        ok => Ok(ok),
    }
}

impl Judged {
    /// The real path.
    pub fn path(&self) -> &Path {
        match self {
            Judged::Mount(p) | Judged::Forced { path: p, .. } | Judged::Refused { path: p, .. } => {
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 25, item 18: a refused host folder is ldm's rule, not a
    /// usage error (the arguments parse and make sense).
    #[test]
    fn a_refused_source_is_a_refusal_not_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount::parse("/etc:/srv/etc").unwrap();
        match source(dir.path(), &m, false) {
            Err(Error::Refused(why)) => assert!(why.contains("will not mount /etc"), "{why}"),
            Err(e) => panic!("not a refusal: {e:?}"),
            Ok(_) => panic!("/etc was accepted"),
        }
    }
}
