//! The trust check every command makes after it loads the project and
//! before its first LXD call (DESIGN.md, "What ldm trusts"): what the
//! project asks for that the user has not allowed for this checkout is
//! listed, and a command that would apply any of it stops, exit 1, naming
//! `ldm trust`. A command that applies none of it goes on, with one line
//! on stderr saying what waits.
//!
//! Cost: a project that asks for nothing outside its folder (no `remote:`,
//! no outside mount, no setup step, no setting turned off) is judged from
//! what was loaded and the resolution of its mount sources, without
//! reading the user's state; otherwise one read of `trust.json` (and the
//! checkout's entry) is added: `benches/trust.rs` measures both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::commands::{mounts, text, Ctx};
use crate::model::Project;
use crate::store::{LogIdentity, Store};
use crate::trust::sources::Homes;
use crate::trust::state::{Allowed, Folder};
use crate::trust::{self, Found, Item, Need};
use crate::user_state::UserDirs;
use crate::Error;

/// What the check found, for the command to use on the way: the mount
/// sources the user forced, and what to check again under the store lock.
#[derive(Debug, Clone, Default)]
pub struct Gated {
    /// Sources the user mounted with `--force`: a mount from the file may
    /// show them although they are refused.
    pub forced: BTreeSet<PathBuf>,
    allowed: Allowed,
    dir: PathBuf,
    /// The project asked for nothing at all: nothing to check again.
    empty: bool,
    host_uid: u32,
}

impl Gated {
    /// Checks `p`, the project as a commit sees it, again: what a command
    /// applies must be what the user allowed even if the files changed
    /// since it loaded them (a container rewriting containers.yaml).
    pub fn recheck(&self, p: &Project, need: &Need) -> Result<(), Error> {
        let homes = Homes::of(self.host_uid);
        let found = trust::scan(p, &self.dir, &homes);
        let settings = trust::settings(p);
        if self.empty && found.is_empty() && !settings_off(&settings) && !need.settings {
            return Ok(());
        }
        let v = trust::judge(&found, &settings, &self.allowed);
        refuse(&self.dir, &v.blocking(need))
    }
}

fn settings_off(s: &[(String, crate::model::Setting, bool)]) -> bool {
    s.iter().any(|(_, _, on)| !on)
}

/// The state folder of the checkout at `dir`.
fn folder(ctx: &Ctx, dir: &Path) -> Result<(Folder, PathBuf), Error> {
    let dirs = user_dirs(ctx)?;
    let c = dirs.checkout(dir)?;
    Ok((Folder::at(dirs.checkout_state(c.id)?), c.dir))
}

fn user_dirs(ctx: &Ctx) -> Result<&UserDirs, Error> {
    ctx.user.as_ref().ok_or_else(|| {
        Error::Usage(
            "cannot tell where your state folder is (HOME and XDG_STATE_HOME are not set), so ldm cannot tell what you allowed for this project; set HOME".into(),
        )
    })
}

/// The check: what `project` (loaded by `store`) asks for against what was
/// allowed; refuses what `need` applies, notes the rest.
pub fn check(ctx: &Ctx, store: &Store, project: &Project, need: &Need) -> Result<Gated, Error> {
    let dir = &store.paths().dir;
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let host_uid = mounts::host_ids(&canon).uid;
    let homes = Homes::of(host_uid);
    let found = trust::scan(project, &canon, &homes);
    let settings = trust::settings(project);
    let before = store.log_identity().ok().flatten();
    *ctx.project_at.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((dir.clone(), project.project.clone()));
    *ctx.lxd_project.lock().unwrap_or_else(|e| e.into_inner()) = project.lxd_project.clone();
    *ctx.log_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((dir.clone(), before.clone()));
    if found.is_empty() && !need.settings && !settings_off(&settings) {
        return Ok(Gated {
            dir: canon,
            empty: true,
            host_uid,
            ..Gated::default()
        });
    }
    let state = folder(ctx, dir).and_then(|(f, canon)| Ok((f.allowed()?, f, canon)));
    let (allowed, folder, canon) = match state {
        Ok(s) => s,
        // Nothing to apply: say why nothing can be told, and go on.
        Err(e) if found.iter().all(|f| !need.concerns(f)) && !need.settings => {
            if !ctx.quiet {
                eprintln!("ldm: cannot tell what you allowed for this project: {e}");
            }
            return Ok(Gated {
                dir: canon,
                host_uid,
                ..Gated::default()
            });
        }
        Err(e) => return Err(e),
    };
    note_log(ctx, &folder, before.as_ref());
    let v = trust::judge(&found, &settings, &allowed);
    let allowed = if v.newly_off.is_empty() && v.newly_seen.is_empty() {
        allowed
    } else {
        // Isolation turned up needs nobody's word; noting it makes turning
        // it back down ask, and noting the containers judged makes a new
        // one start from the defaults' floor. Best effort: a read-only
        // command goes on.
        let (off, seen) = (v.newly_off.clone(), v.newly_seen.clone());
        folder
            .update_allowed(|a| {
                a.off.extend(off);
                a.seen.extend(seen);
            })
            .unwrap_or(allowed)
    };
    refuse(&canon, &v.blocking(need))?;
    if !v.waiting.is_empty() && !ctx.quiet {
        eprintln!("ldm: {}", waiting_line(&v.waiting));
    }
    Ok(Gated {
        forced: allowed.forced.clone(),
        allowed,
        dir: canon,
        empty: false,
        host_uid,
    })
}

/// The one line a command that goes on prints about what waits.
fn waiting_line(waiting: &[Found]) -> String {
    let mut counts: Vec<((&str, &str), usize)> = Vec::new();
    for f in waiting {
        match counts.iter_mut().find(|(n, _)| *n == f.noun()) {
            Some((_, c)) => *c += 1,
            None => counts.push((f.noun(), 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|((one, many), c)| match c {
            1 => format!("1 {one}"),
            c => format!("{c} {many}"),
        })
        .collect();
    format!(
        "waiting for your trust in this folder: {} (not applied; `ldm trust` shows and allows them)",
        parts.join(", ")
    )
}

/// Exit 1 listing `blocking`, if any.
fn refuse(dir: &Path, blocking: &[&Found]) -> Result<(), Error> {
    if blocking.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = blocking
        .iter()
        .flat_map(|f| f.lines())
        .map(|l| format!("  - {}", text::escape(&l)))
        .collect();
    Err(Error::Untrusted {
        dir: dir.to_path_buf(),
        list: list.join("\n"),
    })
}

/// Says once that the log was not made by ldm in this checkout.
fn note_log(ctx: &Ctx, folder: &Folder, log: Option<&LogIdentity>) {
    let Some(log) = log else {
        return;
    };
    let Ok(logs) = folder.logs() else {
        return;
    };
    if logs.ours.contains(&log.id) || logs.noted.contains(&log.id) {
        return;
    }
    if !ctx.quiet {
        eprintln!(
            "ldm: containers.log (log {}) was not made by ldm in this folder on this machine: it came with the folder (a repository, a copy) or was written by another program or a container. What it changes is checked like containers.yaml; `ldm trust --show` lists what waits",
            &log.id
        );
    }
    let id = log.id.clone();
    let _ = folder.update_logs(|l| {
        l.noted.insert(id);
    });
}

/// After a command: a log it created, or compacted, is ldm's own in this
/// checkout from now on.
pub fn after(ctx: &Ctx) {
    let seen = ctx
        .log_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some((dir, before)) = seen else {
        return;
    };
    let store = Store::open(crate::store::Paths::in_dir(&dir), ctx.opts.clone());
    let Ok(Some(now)) = store.log_identity() else {
        return;
    };
    if before.as_ref() != Some(&now) {
        remember_log(ctx, &dir, &now);
    }
}

/// Records `log` as one ldm made in the checkout at `dir`.
pub fn remember_log(ctx: &Ctx, dir: &Path, log: &LogIdentity) {
    if let Ok((folder, _)) = folder(ctx, dir) {
        let id = log.id.clone();
        let _ = folder.update_logs(|l| {
            l.ours.insert(id);
        });
    }
}

/// Records what the user typed as allowed (`ldm mount`, `ldm config set
/// remote`, `ldm create --remote`): `items`, and `forced` sources typed
/// with `--force`.
pub fn allow_typed(
    ctx: &Ctx,
    dir: &Path,
    items: Vec<Item>,
    forced: Vec<PathBuf>,
) -> Result<(), Error> {
    let (folder, _) = folder(ctx, dir)?;
    folder.update_allowed(|a| {
        a.items.extend(items);
        a.forced.extend(forced);
    })?;
    Ok(())
}

/// What `ldm trust` works on: the checkout's folder, what the project asks
/// for, what was allowed.
pub struct Review {
    /// The checkout's state folder.
    pub folder: Folder,
    /// The project folder, canonical.
    pub dir: PathBuf,
    /// Everything the project asks for.
    pub found: Vec<Found>,
    /// Its settings.
    pub settings: Vec<(String, crate::model::Setting, bool)>,
    /// What was allowed.
    pub allowed: Allowed,
}

/// Everything `ldm trust` needs to show, allow or revoke.
pub fn review(ctx: &Ctx, store: &Store, project: &Project) -> Result<Review, Error> {
    let (folder, dir) = folder(ctx, &store.paths().dir)?;
    let homes = Homes::of(mounts::host_ids(&dir).uid);
    let found = trust::scan(project, &dir, &homes);
    let settings = trust::settings(project);
    let allowed = folder.allowed()?;
    if let Ok(Some(log)) = store.log_identity() {
        note_log(ctx, &folder, Some(&log));
    }
    Ok(Review {
        folder,
        dir,
        found,
        settings,
        allowed,
    })
}

/// Opens the project's store, reads the project and checks it for `need`:
/// the first lines of most commands.
pub fn load(ctx: &Ctx, need: &Need) -> Result<(Store, Project, Gated), Error> {
    let store = ctx.store()?;
    let project = store.read()?;
    let gated = check(ctx, &store, &project, need)?;
    Ok((store, project, gated))
}
