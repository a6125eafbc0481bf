//! The project store: `containers.yaml` (the folded state, shared with
//! people and lxc-dev-manager) plus `containers.log` (checksummed mutation
//! records), guarded by `containers.lock`. DESIGN.md is the specification;
//! this module doc is the map.
//!
//! Lifecycle of a writing command:
//!
//! ```text
//! Store::open(paths) ── commit(|project| mutations) ─────────────────────────────┐
//!   lock (bounded wait; + lxc-dev-manager's lock if free) → recover: temps,      │
//!   torn tail (kept beside the log), another writer's YAML merged and folded    │
//!   → catch up on records other processes appended → validate → append         │
//!   → fdatasync → fold into containers.yaml (small projects) or compact → unlock │
//!                                                       ← ms, never an LXD call ┘
//! ```
//!
//! Readers call [`Store::read`]: no lock, no writes but the load cache; they
//! retry if a fold swapped the YAML between their reads.
//!
//! Files: `record.rs` (framing), `log.rs` (scanning), `resync.rs` (the
//! search for the next valid record after damage, linear in the bytes),
//! `snapshot.rs` (YAML document and mark), `cache.rs` (the base and the
//! load cache, kept in the user's own folders) and `codec.rs` (their body),
//! `read_yaml.rs` (the YAML through them), `lineage.rs` (whose YAML this
//! is: the one rule), `recover.rs` (load), `cleanup.rs` (temp files and an
//! older ldm's leftovers), `writer.rs` (what a writer does with what it
//! loaded), `append.rs` (the append, and the fold once a command is done),
//! `create.rs`, `compact.rs` (fold and compaction), `backup.rs` (bytes kept
//! beside the log), `lock.rs` (ldm's and lxc-dev-manager's locks) and
//! `holder.rs` (who holds them), `owner.rs` (operation owners), `repair.rs`
//! (`doctor`), `paths.rs` (discovery, and where the derived files go),
//! `options.rs` (options and notices), `fs.rs` (the I/O seam and safe
//! opens), `project_file.rs` (other project files ldm reads: setup
//! scripts), `failpoint.rs`.

// Over 400 lines: the `Store` facade (every public operation, each a few
// lines over the modules below) and the map of those modules.

// Public: what commands use, the I/O seam tests replace, and the on-disk
// format (records, log scanning, the YAML document), which tests, the
// fuzzers and tools read. `recover::load` is the read-only way to look at a
// store's files as a load sees them. Everything else is private.
mod append;
mod backup;
mod cache;
mod cleanup;
mod codec;
mod compact;
mod create;
mod error;
mod failpoint;
pub mod fs;
mod holder;
mod lineage;
mod lock;
pub mod log;
mod options;
mod owner;
mod paths;
mod project_file;
mod read_yaml;
pub mod record;
pub mod recover;
pub mod repair;
mod resync;
pub mod snapshot;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use cache::{BASE_FILE, CACHE_FILE};
pub use error::StoreError;
pub use fs::{Fs, OsFs, Trust};
pub use lock::{LockError, GO_LOCK_FILE};
pub use options::{Cut, Notice, Options};
pub use owner::OwnerGuard;
pub use paths::{Derived, Paths, SafeDirs};
pub use repair::{Finding, RepairReport, Severity};
pub use snapshot::Mark;

use fs::FileId;
use ldm_model::{Mutation, Owner, Project};
use record::LogId;

/// Name of the snapshot file.
pub const YAML_FILE: &str = "containers.yaml";
/// Name of the log file.
pub const LOG_FILE: &str = "containers.log";
/// Name of the lock file.
pub const LOCK_FILE: &str = "containers.lock";

/// Default bound on the lock wait.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Auto-compaction runs once the log is at least this big...
pub const AUTO_COMPACT_MIN_BYTES: u64 = 64 * 1024;
/// ...and at least this many percent of the size of `containers.yaml`.
pub const AUTO_COMPACT_PERCENT: u64 = 100;
/// After each commit, `containers.yaml` is rewritten (folded) if it is at
/// most this big, so that other readers of the file see ldm's changes at
/// once. Set from `benches/fold.rs` (DESIGN.md, "Fold"): a fold of a YAML
/// this size costs about as much as the commit's own fdatasync.
pub const FOLD_MAX_BYTES: u64 = 64 * 1024;

/// What this process knows of the files, to catch up instead of reloading.
#[derive(Debug)]
struct View {
    project: Project,
    yaml_id: FileId,
    /// Last record folded into `containers.yaml`.
    yaml_seq: u64,
    /// The log as last seen.
    log: LogView,
    last_seq: u64,
}

/// What this process knows of the log file.
#[derive(Debug, Clone, Copy)]
struct LogView {
    id: LogId,
    generation: u64,
    /// Device and inode: a replaced log has new ones.
    dev_ino: (u64, u64),
    /// Offset just past the last valid record.
    end: u64,
    /// Length and checksum of that record (0 if none), re-checked on
    /// catch-up so that a log rewritten in place (same inode, e.g. `cp
    /// backup containers.log`) is reloaded, not trusted.
    last_len: u64,
    last_crc: u32,
}

/// Which log a project's `containers.log` is ([`Store::log_identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogIdentity {
    /// Its `log_id`, 32 hex digits.
    pub id: String,
    /// How many times compaction replaced it.
    pub generation: u64,
}

/// The owners of a project's long operations (DESIGN.md, "Long
/// operations"): claim one, ask whether one is alive. A small handle, so
/// that a commit's closure can ask while the store is borrowed.
#[derive(Debug, Clone)]
pub struct Owners {
    lock: std::path::PathBuf,
    trust: Trust,
}

impl Owners {
    /// Claims an owner for a long operation; keep the guard until its
    /// outcome is recorded (dropping it is what tells others it is over).
    pub fn claim(&self) -> Result<OwnerGuard, StoreError> {
        owner::claim(&self.lock, self.trust)
            .map_err(|e| StoreError::io("claim an owner slot in", &self.lock, e))
    }

    /// True while `owner` runs its operation. When that cannot be read,
    /// "alive": refusing is safe, taking over a live operation is not.
    pub fn is_alive(&self, owner: &Owner) -> bool {
        owner::is_alive(&self.lock, owner, self.trust).unwrap_or(true)
    }
}

/// A handle on one project's store. Holds no lock between calls.
pub struct Store {
    paths: Paths,
    opts: Options,
    view: Option<View>,
    /// Unknown YAML keys are reported once per process, not once per load.
    warned_unknown: AtomicBool,
    /// The "lxc-dev-manager holds its lock" note, once per process.
    warned_deferred: AtomicBool,
    /// Commits made since the last fold: [`Store::finish`] folds them.
    owed: bool,
}

impl Drop for Store {
    /// The command is done with the store: fold what it committed.
    fn drop(&mut self) {
        self.finish();
    }
}

impl Store {
    /// Opens the project at `paths`; reads nothing yet.
    pub fn open(paths: Paths, opts: Options) -> Store {
        static SAID: AtomicBool = AtomicBool::new(false);
        if let Some(why) = &paths.derived_problem {
            if !SAID.swap(true, Ordering::Relaxed) {
                (opts.notify)(&Notice::NoUserState { why: why.clone() });
            }
        }
        Store {
            paths,
            opts,
            view: None,
            warned_unknown: AtomicBool::new(false),
            warned_deferred: AtomicBool::new(false),
            owed: false,
        }
    }

    /// Creates a new project in `dir`: `containers.yaml` with `project`
    /// and an empty log. Refuses if a project is already there. If a step
    /// fails, what it made is removed again (the folder is as it was).
    pub fn create(dir: &Path, project: &Project, opts: Options) -> Result<Store, StoreError> {
        Store::create_in(Paths::in_dir(dir), project, opts)
    }

    /// [`Store::create`] with the project's files (and derived files) given.
    pub fn create_in(paths: Paths, project: &Project, opts: Options) -> Result<Store, StoreError> {
        create::create(&paths, project, &opts)?;
        Ok(Store::open(paths, opts))
    }

    /// The project's files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Reads the current state without locking or writing anything but the
    /// load cache. A torn tail (perhaps an append in progress) is ignored;
    /// damage is an error. Another writer's YAML is merged in memory, and
    /// what that drops is reported (the next writer saves it).
    pub fn read(&self) -> Result<Project, StoreError> {
        let fs = &*self.opts.fs;
        // Readers never lock, so a busy project (eight writers, each
        // folding) may swap the YAML under one many times: it retries for
        // as long as a writer would wait for the lock.
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        while start.elapsed() < self.opts.lock_timeout.max(Duration::from_secs(1)) {
            let loaded = match recover::load(fs, &self.paths) {
                // The YAML was read before a fold swapped it, the base
                // after: they do not belong together. Read again.
                Err(StoreError::Unstable { .. }) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                    continue;
                }
                other => other?,
            };
            // The YAML is read first, the base and the log after it; a fold
            // or compaction meanwhile replaces the YAML, so "still the same
            // file" means the three belong together.
            if fs.stat(&self.paths.yaml).ok() == Some(loaded.yaml_id) {
                self.loaded(&loaded);
                if let Some(m) = &loaded.merge {
                    self.report_merge(m, None);
                }
                if let (true, Some(path)) = (loaded.cache_due, self.paths.cache()) {
                    let entry = cache::Entry {
                        key: loaded.yaml_key,
                        stamp: loaded.yaml_stamp,
                        seen_ns: loaded.yaml_seen_ns,
                        extras: loaded.extras.is_some(),
                        doc: loaded.doc,
                    };
                    // Best effort, and only when it spares the next reader
                    // something: the parser, or hashing the YAML.
                    if loaded.parsed || entry.vouches(&entry.stamp) {
                        let _ = cache::write(fs, &path, &entry, cache::Sync::None);
                    }
                }
                return Ok(loaded.project);
            }
            // The YAML changed while we read: a fold swapped it.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Err(StoreError::Unstable {
            path: self.paths.dir.clone(),
        })
    }

    /// Under the lock: brings the state up to date, lets `f` look at it and
    /// choose mutations, applies and appends them, and returns after the
    /// fdatasync (then folds or compacts, best effort). `f`'s error aborts
    /// with nothing written.
    pub fn commit<T, E>(
        &mut self,
        f: impl FnOnce(&Project) -> Result<(Vec<Mutation>, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.commit_as(f, |ms| vec![ms])
    }

    /// [`Store::commit`] for a change too big for one record whose parts
    /// stand alone (`doctor --fix` adopting thousands of snapshots): the
    /// mutations are appended in order as several records under one hold
    /// of the lock, each record all or nothing. A crash in between keeps a
    /// prefix of whole parts, which the next `--fix` completes.
    pub fn commit_in_parts<T, E>(
        &mut self,
        f: impl FnOnce(&Project) -> Result<(Vec<Mutation>, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.commit_as(f, append::parts)
    }

    /// A commit whose mutations `split` cuts into records.
    fn commit_as<T, E>(
        &mut self,
        f: impl FnOnce(&Project) -> Result<(Vec<Mutation>, T), E>,
        split: fn(&[Mutation]) -> Vec<&[Mutation]>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let guard = self.lock()?;
        let mut go = self.try_go()?;
        self.sync_view(&mut go)?;
        let view = self.view_mut()?;
        let (mutations, out) = f(&view.project)?;
        if mutations.is_empty() {
            return Ok(out);
        }
        for part in split(&mutations) {
            guard.check().map_err(StoreError::from)?;
            self.append(part)?;
            self.owed = true;
        }
        drop(go);
        Ok(out)
    }

    /// Compacts now, under both locks (`ldm compact`). Returns the new mark.
    pub fn compact(&mut self) -> Result<Mark, StoreError> {
        let _guard = self.lock()?;
        let mut go = Some(self.go()?);
        self.sync_view(&mut go)?;
        self.compact_locked()
    }

    /// Takes the lock and recovers (folding another writer's YAML if need
    /// be), changing nothing else; for `doctor`.
    pub fn recover(&mut self) -> Result<Project, StoreError> {
        let _guard = self.lock()?;
        let mut go = self.try_go()?;
        self.sync_view(&mut go)?;
        Ok(self.view_mut()?.project.clone())
    }

    /// Under both locks: backs up and rebuilds a damaged log (`ldm doctor
    /// --repair`); `force` also drops records of a newer ldm.
    pub fn repair(&mut self, force: bool) -> Result<repair::RepairReport, StoreError> {
        let _guard = self.lock()?;
        let _go = self.go()?;
        self.view = None;
        for n in cleanup::remove_temps(&*self.opts.fs, &self.paths)? {
            (self.opts.notify)(&n);
        }
        repair::repair(&*self.opts.fs, &self.paths, force)
    }

    /// Under both locks: deletes the project's files (`ldm project delete`).
    /// Compacts first, so that a crash between the removals leaves either a
    /// consistent project or nothing: the log goes first (empty after the
    /// compaction), then the base and cache, then `containers.yaml`; the
    /// lock files stay.
    pub fn destroy(&mut self) -> Result<(), StoreError> {
        let _guard = self.lock()?;
        let mut go = Some(self.go()?);
        self.sync_view(&mut go)?;
        self.compact_locked()?;
        create::remove_files(&*self.opts.fs, &self.paths)?;
        self.view = None;
        Ok(())
    }

    /// Reads `rel`, another file of the project folder (a setup script),
    /// with the checks of the store's own files: at most `limit` bytes, no
    /// symbolic link or FIFO, only the owners the project's trust allows,
    /// never outside the folder.
    pub fn read_project_file(&self, rel: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
        project_file::read(&self.paths.dir, rel, limit, self.opts.trust)
    }

    /// The identity of the project's log from its header, a read-only look
    /// at its first 52 bytes: `None` when there is no log, or its header has
    /// no identity (version 1) or cannot be read as one (the load says
    /// why). Commands remember which logs ldm made in a checkout, to tell a
    /// log that came with the folder (DESIGN.md, "What ldm trusts").
    pub fn log_identity(&self) -> Result<Option<LogIdentity>, StoreError> {
        use std::io::Read;
        let path = &self.paths.log;
        let file = match fs::open_checked(
            path,
            std::fs::OpenOptions::new().read(true),
            self.opts.trust,
        ) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", path, e)),
        };
        let mut head = Vec::with_capacity(record::HEADER_LEN);
        file.take(record::HEADER_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|e| StoreError::io("read", path, e))?;
        Ok(record::decode_header(&head).ok().and_then(|h| {
            h.id.map(|id| LogIdentity {
                id: snapshot::hex(&id),
                generation: h.generation,
            })
        }))
    }

    /// Read-only health check of the files (`ldm doctor`).
    pub fn inspect(&self) -> Vec<repair::Finding> {
        repair::inspect(&*self.opts.fs, &self.paths)
    }

    /// Who runs long operations on this project, and whether they live.
    pub fn owners(&self) -> Owners {
        Owners {
            lock: self.paths.lock.clone(),
            trust: self.opts.trust,
        }
    }

    fn lock(&self) -> Result<lock::LockGuard, StoreError> {
        Ok(lock::acquire(
            &self.paths.lock,
            self.opts.lock_timeout,
            &self.opts.holder,
            self.opts.trust,
        )?)
    }

    /// lxc-dev-manager's lock, waiting at most the lock timeout.
    fn go(&self) -> Result<lock::LockGuard, StoreError> {
        Ok(lock::acquire_go(
            &self.paths.dir,
            self.opts.lock_timeout,
            self.opts.trust,
        )?)
    }

    /// lxc-dev-manager's lock if it is free now.
    fn try_go(&self) -> Result<Option<lock::LockGuard>, StoreError> {
        Ok(lock::try_go(&self.paths.dir, self.opts.trust)?)
    }

    fn view_mut(&mut self) -> Result<&mut View, StoreError> {
        // sync_view always leaves a view; this only guards the invariant.
        self.view.as_mut().ok_or_else(|| StoreError::Unstable {
            path: self.paths.dir.clone(),
        })
    }
}
