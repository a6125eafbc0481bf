//! Long operations: claim an owner, record the intent in one short locked
//! commit, run the LXD steps with no lock held, record the outcome the same
//! way (DESIGN.md, "Long operations"). Also the small helpers every LXD
//! command shares: progress lines, prompts, the time stamp.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use crate::lxd::{Instance, Lxd};
use crate::model::{Container, Mutation, Op, Pending, Project};
use crate::store::{OwnerGuard, Owners, Store};
use crate::Error;

pub use super::away::{
    away, find_away, here_or_nowhere, missing, none_away, not_away, not_there, not_where,
    note_unchecked,
};

/// RFC 3339 UTC time stamp of now, to the second.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Claims an owner slot for `op`; keep the guard alive until the outcome is
/// recorded (dropping it is what tells others the owner is gone).
pub fn claim(store: &Store, op: Op) -> Result<(OwnerGuard, Pending), Error> {
    let guard = store.owners().claim()?;
    let pending = Pending {
        op,
        owner: guard.owner(),
        started_at: now(),
        setup: None,
    };
    Ok((guard, pending))
}

/// Commits `mutations` that need no look at the state first (an outcome,
/// an undo); they are still validated under the lock.
pub fn record(store: &mut Store, mutations: Vec<Mutation>) -> Result<(), Error> {
    store.commit(|_| Ok::<_, Error>((mutations, ())))
}

/// Before an operation stops a running container (or goes on with one that
/// an interrupted run of it stopped): records in its intent that the
/// container must be started again, so that a re-run after a crash still
/// knows it was running. One short commit; nothing when already recorded.
pub fn mark_restart(
    store: &mut Store,
    container: &str,
    pending: &mut Pending,
) -> Result<(), Error> {
    if pending.op.restart() {
        return Ok(());
    }
    pending.op = pending.op.clone().with_restart();
    record(
        store,
        vec![Mutation::OperationStarted {
            container: container.to_string(),
            snapshot: None,
            pending: pending.clone(),
        }],
    )
}

/// True if `pending`'s owner is still running.
pub fn is_alive(owners: &Owners, pending: &Pending) -> bool {
    owners.is_alive(&pending.owner)
}

/// How `list` shows an operation: `CREATING (pid 42)` or `CREATING (interrupted)`.
pub fn describe(owners: &Owners, pending: &Pending) -> String {
    if let Some(step) = pending.setup.as_ref().and_then(|s| s.failed) {
        if !is_alive(owners, pending) {
            return format!("SETUP FAILED AT STEP {step}");
        }
    }
    if is_alive(owners, pending) {
        format!("{} (pid {})", pending.op.verb(), pending.owner.pid)
    } else {
        format!("{} (interrupted)", pending.op.verb())
    }
}

/// Refuses if a live process runs an operation on `name` or one of its
/// snapshots. Returns the container's interrupted operation, if any.
pub fn check_free(owners: &Owners, name: &str, c: &Container) -> Result<Option<Pending>, Error> {
    let busy = |p: &Pending| busy(name, format!("{} it since {}", doing(p), p.started_at));
    for snap in c.snapshots.values() {
        if let Some(p) = &snap.pending {
            if is_alive(owners, p) {
                return Err(busy(p));
            }
        }
    }
    match &c.pending {
        Some(p) if is_alive(owners, p) => Err(busy(p)),
        Some(p) => Ok(Some(p.clone())),
        None => Ok(None),
    }
}

/// What the intent commit of an operation on an existing container tells
/// its LXD steps.
pub struct Begun {
    /// The container's LXD instance name.
    pub lxd_name: String,
    /// The project's LXD remote, if not the local one.
    pub remote: Option<String>,
    /// The container's user.
    pub user: String,
    /// The container's recorded mounts.
    pub mounts: Vec<crate::model::Mount>,
    /// The interrupted operation this one takes over, if any.
    pub old: Option<Pending>,
}

/// Whether `op` may begin on container `c` now: not while another process
/// runs an operation on it, and over an interrupted operation only when
/// `op` finishes it (the same kind, or `remove`). Returns the interrupted
/// operation it takes over. [`begin`] asks again under the lock; commands
/// that ask LXD something first ask this before, so that the refusal names
/// the interrupted operation rather than what LXD lacks.
pub fn may_begin(
    owners: &Owners,
    name: &str,
    c: &Container,
    op: &Op,
) -> Result<Option<Pending>, Error> {
    let old = check_free(owners, name, c)?;
    if let Some(o) = &old {
        let same = std::mem::discriminant(&o.op) == std::mem::discriminant(op);
        if !same && *op != Op::Remove {
            return Err(interrupted(name, o, " first"));
        }
    }
    Ok(old)
}

/// Records the start of `pending` on existing container `name`, with the
/// mutations `extra` adds in the same commit. It takes over an interrupted
/// operation of the same kind (the same command finishes it), and `remove`
/// takes over any; another kind is refused with the command that finishes
/// the interrupted one.
pub fn begin(
    store: &mut Store,
    name: &str,
    pending: &Pending,
    extra: impl FnOnce(&Project) -> Result<Vec<Mutation>, Error>,
) -> Result<Begun, Error> {
    let owners = store.owners();
    store.commit(|p| {
        let c = container(p, name)?;
        let old = may_begin(&owners, name, c, &pending.op)?;
        let mut m = extra(p)?;
        m.push(Mutation::OperationStarted {
            container: name.to_string(),
            snapshot: None,
            pending: pending.clone(),
        });
        let begun = Begun {
            lxd_name: p.lxd_name(name),
            remote: p.remote.clone(),
            user: p.effective_user(name).0,
            mounts: c.mounts.clone(),
            old,
        };
        Ok((m, begun))
    })
}

/// "pid 42 is creating", for busy messages.
pub fn doing(p: &Pending) -> String {
    format!("pid {} is {}", p.owner.pid, p.op.verb().to_lowercase())
}

/// Container `name` is busy: `who` runs an operation on it.
pub fn busy(name: &str, who: String) -> Error {
    Error::Busy {
        what: format!("container {name}"),
        who,
        next: "wait for it to finish".into(),
    }
}

/// An interrupted operation of another kind is in the way.
pub fn interrupted(name: &str, old: &Pending, then: &str) -> Error {
    Error::Conflict {
        what: format!("container {name} has an interrupted {}", old.op.noun()),
        next: format!("run `{}` to finish it{then}", old.op.command(name)),
    }
}

/// Looks up a recorded container or says how to list them.
pub fn container<'a>(project: &'a Project, name: &str) -> Result<&'a Container, Error> {
    project
        .containers
        .get(name)
        .ok_or_else(|| not_found(project, name))
}

/// "container X is not in project P", with the closest name if one is near.
pub fn not_found(project: &Project, name: &str) -> Error {
    let near = project
        .containers
        .keys()
        .map(|k| (distance(k, name), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    let next = match near {
        Some((_, k)) => format!("did you mean {k}?"),
        None => "see `ldm list`".to_string(),
    };
    Error::NotFound {
        what: format!("container {name:?} is not in project {}", project.project),
        next,
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// LXD's view of `lxd_name`, or an error saying it is missing (and, if
/// another LXD project has it, which).
pub fn instance(lxd: &dyn Lxd, lxd_name: &str) -> Result<Instance, Error> {
    match lxd
        .instance(lxd_name)
        .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?
    {
        Some(i) => Ok(i),
        None => Err(missing(lxd, lxd_name)),
    }
}

/// LXD has no instance `lxd_name` although the project records it.
pub fn no_instance(lxd_name: &str) -> Error {
    Error::NotFound {
        what: format!("LXD has no instance {lxd_name}"),
        next: "see `ldm doctor`".into(),
    }
}

/// Like [`instance`], and refuses a container that is not running, naming `ldm up`.
pub fn running(lxd: &dyn Lxd, name: &str, lxd_name: &str) -> Result<Instance, Error> {
    let inst = instance(lxd, lxd_name)?;
    if !inst.is_running() {
        return Err(Error::NotRunning {
            name: name.to_string(),
            status: inst.status.to_lowercase(),
        });
    }
    Ok(inst)
}

/// Progress lines on stderr: `[2/5] Waiting for webapp-dev (3.1s)`.
pub struct Progress {
    quiet: bool,
    total: usize,
    step: usize,
    start: Instant,
}

impl Progress {
    /// A progress of `total` steps; silent with `-q`.
    pub fn new(quiet: bool, total: usize) -> Progress {
        Progress {
            quiet,
            total,
            step: 0,
            start: Instant::now(),
        }
    }

    /// Announces the next step.
    pub fn step(&mut self, what: &str) {
        self.step += 1;
        if !self.quiet {
            eprintln!(
                "[{}/{}] {what} ({:.1}s)",
                self.step,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// A note outside the numbered steps.
    pub fn note(&self, what: &str) {
        if !self.quiet {
            eprintln!("      {what}");
        }
    }
}

/// Asks `question [y/N]` on a terminal; without one, refuses unless `force`.
pub fn confirm(question: &str, force: bool, flag: &str) -> Result<bool, Error> {
    if force {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "{question}: stdin is not a terminal, so ldm cannot ask; pass {flag} to go ahead"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(Error::io(
            "read the answer from",
            Some(std::path::Path::new("stdin")),
        ))?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("dev", "dev"), 0);
        assert_eq!(distance("dev", "dve"), 2);
        assert_eq!(distance("web", "webs"), 1);
    }

    #[test]
    fn not_found_suggests_the_closest_name() {
        let mut p = Project::new("p", vec![]);
        p.containers.insert("backend".into(), Container::default());
        let msg = not_found(&p, "backnd").to_string();
        assert!(msg.contains("did you mean backend?"), "{msg}");
        let msg = not_found(&p, "zzz").to_string();
        assert!(msg.contains("ldm list"), "{msg}");
    }
}
