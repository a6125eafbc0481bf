//! [`Ctx`]: what every command gets (where it runs, how the store
//! behaves, how it reaches LXD), and the one place that makes its LXD
//! clients, each wrapped in the ownership check.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{gate, style, text};
use crate::cli::DEFAULT_WAIT;
use crate::lxd::owned::{Owned, Seen};
use crate::lxd::owner::Me;
use crate::lxd::{Lxd, OnWait};
use crate::model::Project;
use crate::store::{self, LogIdentity, Paths, SafeDirs, Store, StoreError};
use crate::trust::Need;
use crate::user_state::UserDirs;
use crate::Error;

/// Makes the LXD client for a remote (`None`: the client's default remote)
/// that waits up to the given time for LXD's other operations on an
/// instance, telling `OnWait` when it starts to. The CLI's speaks LXD's
/// API; unit tests give an API client of the test double.
/// How commands reach LXD: a client for the remote (`None`: the client's
/// default) and the LXD project (`None`: the remote's current one).
pub type Connect =
    Arc<dyn Fn(Option<&str>, Option<&str>, Duration, OnWait) -> Arc<dyn Lxd> + Send + Sync>;

/// What every command gets: where it runs and how the store behaves.
pub struct Ctx {
    /// Absolute folder the command starts in (`-C DIR` or the current one).
    pub start: PathBuf,
    /// Store options (lock timeout, holder note, notices).
    pub opts: store::Options,
    /// `-q`: no progress output.
    pub quiet: bool,
    /// `--step-timeout`: longest a setup step may run.
    pub step_timeout: Duration,
    /// Colour for stdout.
    pub style: style::Style,
    /// Folders whose projects may hold other users' files (`-C`, `LDM_SAFE_DIRS`).
    pub safe: SafeDirs,
    /// How to reach LXD.
    pub connect: Connect,
    /// The user's state and cache folders (what they allowed, per
    /// checkout); `None` when the environment cannot say where they are.
    pub user: Option<UserDirs>,
    /// The project folder and its log's identity when the trust check
    /// looked ([`gate::after`] compares).
    pub log_seen: Mutex<Option<(PathBuf, Option<LogIdentity>)>>,
    /// The project folder and name the trust check saw: the clients
    /// [`Ctx::lxd`] makes know whose each instance is for that checkout
    /// (DESIGN.md, "Ownership"). `None` before the check.
    pub project_at: Mutex<Option<(PathBuf, String)>>,
    /// The LXD project the project's containers live in (its
    /// `lxd_project:`), which every client [`Ctx::lxd`] makes names,
    /// whatever the client's current project. Set by the trust check.
    pub lxd_project: Mutex<Option<String>>,
    /// The owners this command's clients have seen, shared by them.
    pub seen: Seen,
}

impl Ctx {
    /// The store of the project at `start` or its nearest parent (one
    /// owned by another user only if the user trusts its folder).
    pub fn store(&self) -> Result<Store, Error> {
        let (paths, trust) = Paths::find(&self.start, &self.safe)?;
        Ok(Store::open(paths, self.opts.clone().trusting(trust)))
    }

    /// The LXD that `project`'s containers live on (its `remote:`, or the
    /// local LXD), waiting up to `wait` for LXD to finish an operation
    /// already running on an instance. Built from the project the command
    /// loaded, so it never reads the project itself.
    pub fn lxd(&self, project: &Project, wait: Duration) -> Arc<dyn Lxd> {
        self.lxd_at(project.remote.as_deref(), wait)
    }

    /// This checkout of the project the trust check saw. `None` when the
    /// user's state folder cannot say which checkout it is: then ldm marks
    /// and checks nothing, as an older ldm did. Read only by commands that
    /// call LXD (one small file, and the machine id).
    fn me(&self) -> Option<Me> {
        let seen = self.project_at.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, project) = seen.as_ref()?;
        let c = self.user.as_ref()?.checkout(dir).ok()?;
        Some(Me {
            checkout: c.id.to_string(),
            project: project.clone(),
            folder: c.dir.display().to_string(),
            host: Me::machine_id(),
            users: self.user.clone(),
        })
    }

    /// Like [`Ctx::lxd`] with the remote from a commit's view of the project.
    pub fn lxd_at(&self, remote: Option<&str>, wait: Duration) -> Arc<dyn Lxd> {
        self.lxd_in(remote, None, wait)
    }

    /// [`Ctx::lxd_at`] in LXD project `project` when given, else the
    /// project's (`lxd_project:`, as the trust check saw it).
    pub fn lxd_in(
        &self,
        remote: Option<&str>,
        project: Option<&str>,
        wait: Duration,
    ) -> Arc<dyn Lxd> {
        let quiet = self.quiet;
        let on_wait = Box::new(move |name: &str, doing: Option<&str>| {
            if !quiet {
                let what = doing
                    .map(|d| format!("{}; ", text::escape(d)))
                    .unwrap_or_default();
                eprintln!(
                    "waiting for LXD to finish an operation on {name} ({what}started by an interrupted ldm?) ..."
                );
            }
        });
        let pinned = self
            .lxd_project
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let project = project.or(pinned.as_deref());
        let lxd = (self.connect)(remote, project, wait, on_wait);
        match self.me() {
            Some(me) => Arc::new(Owned::new(lxd, me, Arc::clone(&self.seen), self.quiet)),
            _ => lxd,
        }
    }

    /// The LXD for commands that work without a project (image commands):
    /// the project's remote when there is a project here, the local LXD
    /// when there is none. A project found but unreadable (damaged, not
    /// parseable, another user's) fails with its error, before any LXD call:
    /// its `remote:` may name another server; so does a project that asks
    /// for what `need` would apply and the user did not allow.
    pub fn lxd_without_project(&self, need: &Need) -> Result<Arc<dyn Lxd>, Error> {
        let remote = match self.store() {
            Ok(store) => {
                let project = store.read()?;
                gate::check(self, &store, &project, need)?;
                project.remote
            }
            Err(Error::Store(StoreError::NotAProject { .. })) => None,
            Err(e) => return Err(e),
        };
        Ok(self.lxd_at(remote.as_deref(), DEFAULT_WAIT))
    }
}
