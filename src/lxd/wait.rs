//! [`Patient`]: any [`Lxd`] that waits out LXD's busy state instead of
//! failing. LXD refuses an operation on an instance while another one holds
//! the instance's operation lock (`Instance is busy running a "create"
//! operation`), e.g. the server-side part of a `launch` whose client was
//! killed with Ctrl+C: it goes on for seconds after ldm died. LXD refuses
//! before doing anything, so retrying is safe. And an instance LXD is still
//! creating is "not found" until its create is done: a call on an instance
//! that LXD says is missing asks LXD for its running operations on it and,
//! while there are some, waits for them and tries again. Every call that
//! acts on an instance is retried so until `limit` has passed; reads
//! (`list`, `instance`, `snapshots`, `images`) go straight through.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    Away, Disk, ExecOutput, Idmapping, Image, Instance, Lxd, LxdError, Server, SnapshotInfo, State,
    Stop,
};

/// Told once per instance, when ldm starts waiting for LXD on it: the
/// instance, and what LXD is doing to it when known ("Creating instance").
pub type OnWait = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// An [`Lxd`] that retries calls LXD refuses as busy, for at most `limit`.
pub struct Patient<L> {
    inner: L,
    limit: Duration,
    on_wait: OnWait,
    told: Mutex<BTreeSet<String>>,
}

/// First pause between retries; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between retries: LXD's operations end at any moment.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What a call's "not found" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Perhaps the instance is still being created: ask LXD's operations.
    AskOperations,
    /// Something else is missing (`launch`'s image): the answer stands.
    IsAnswer,
}

impl<L: Lxd> Patient<L> {
    /// Wraps `inner`; `on_wait(instance)` is called the first time a call
    /// on that instance has to wait (a progress line; a no-op with `-q`).
    pub fn new(inner: L, limit: Duration, on_wait: OnWait) -> Patient<L> {
        Patient {
            inner,
            limit,
            on_wait,
            told: Mutex::new(BTreeSet::new()),
        }
    }

    /// Runs `f` until LXD stops saying `name` is busy (or missing while an
    /// operation on it runs) or `limit` passes; then the busy error says
    /// how long ldm waited.
    fn retry<T>(&self, name: &str, f: impl FnMut() -> Result<T, LxdError>) -> Result<T, LxdError> {
        self.retry_on(name, Missing::AskOperations, f)
    }

    fn retry_on<T>(
        &self,
        name: &str,
        missing: Missing,
        mut f: impl FnMut() -> Result<T, LxdError>,
    ) -> Result<T, LxdError> {
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        // An operation on the instance was running at the last look.
        let mut under_way = false;
        loop {
            let doing = match f() {
                Err(LxdError::Busy { .. }) => None,
                Err(LxdError::NotFound { what }) if missing == Missing::IsAnswer => {
                    return Err(LxdError::NotFound { what })
                }
                Err(LxdError::NotFound { what }) => match self.inner.operations(name) {
                    // It just ended: try once more, at once.
                    Ok(ops) if ops.is_empty() && under_way => {
                        under_way = false;
                        continue;
                    }
                    // Not being made either: it is missing.
                    Ok(ops) if ops.is_empty() => return Err(LxdError::NotFound { what }),
                    Ok(ops) => {
                        under_way = true;
                        Some(ops.join(", "))
                    }
                    // No word on operations: the call's own answer stands.
                    Err(_) => return Err(LxdError::NotFound { what }),
                },
                r => return r,
            };
            let waited = start.elapsed();
            if waited + pause > self.limit {
                return Err(LxdError::Busy {
                    what: name.to_string(),
                    waited,
                });
            }
            self.tell(name, doing.as_deref());
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    fn tell(&self, name: &str, doing: Option<&str>) {
        // A poisoned set only means another thread panicked while telling.
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.insert(name.to_string()) {
            (self.on_wait)(name, doing);
        }
    }
}

impl<L: Lxd> Lxd for Patient<L> {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        self.inner.list()
    }

    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        self.inner.statuses()
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.inner.instance(name)
    }

    fn user_keys(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, LxdError> {
        self.inner.user_keys(name)
    }
    fn set_configs(&self, name: &str, keys: &[(&str, &str)]) -> Result<(), LxdError> {
        self.retry(name, || self.inner.set_configs(name, keys))
    }
    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        self.inner.state(name)
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        // Its "not found" is the image's, never the instance's: busy only.
        self.retry_on(name, Missing::IsAnswer, || {
            self.inner.launch(image, name, config)
        })
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.start(name))
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.stop(name))
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.delete(name))
    }

    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        self.retry(name, || self.inner.exec(name, argv, stdin))
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        self.inner.snapshots(name)
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.snapshot(name, snap))
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.restore(name, snap))
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.delete_snapshot(name, snap))
    }

    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        self.retry(source, || self.inner.copy(source, snap, target, config))
    }

    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        // The client's own messages go to the terminal: nothing to retry on.
        self.inner.exec_attached(name, argv)
    }

    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        self.inner.exec_replace(name, argv)
    }

    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        self.retry(name, || self.inner.push(name, src, path, recursive))
    }

    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        self.retry(name, || self.inner.pull(name, path, dest, recursive))
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        self.inner.images()
    }

    fn publish(&self, name: &str, snap: &str, alias: &str, progress: bool) -> Result<(), LxdError> {
        self.retry(name, || self.inner.publish(name, snap, alias, progress))
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.inner.delete_image(alias)
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.inner.rename_alias(old, new)
    }

    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        self.inner.operations(name)
    }

    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        self.inner.elsewhere()
    }

    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        self.inner.remote_server()
    }

    fn idmapping(&self) -> Result<Idmapping, LxdError> {
        self.inner.idmapping()
    }

    fn identity(&self) -> Result<Server, LxdError> {
        self.inner.identity()
    }

    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        self.retry(name, || self.inner.add_disk(name, disk))
    }

    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.remove_device(name, device))
    }

    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.set_config(name, key, value))
    }

    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.retry(name, || self.inner.restart(name))
    }

    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError> {
        // LXD refuses before the command runs: a retry never repeats output.
        self.retry(name, || {
            self.inner.exec_lines(name, argv, stdin, line, stop)
        })
    }
}

/// A shared client is a client: commands hold `Arc<dyn Lxd>`.
impl<L: Lxd + ?Sized> Lxd for std::sync::Arc<L> {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        (**self).list()
    }
    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        (**self).statuses()
    }
    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        (**self).instance(name)
    }
    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        (**self).state(name)
    }
    fn user_keys(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, LxdError> {
        (**self).user_keys(name)
    }
    fn set_configs(&self, name: &str, keys: &[(&str, &str)]) -> Result<(), LxdError> {
        (**self).set_configs(name, keys)
    }
    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        (**self).launch(image, name, config)
    }
    fn start(&self, name: &str) -> Result<(), LxdError> {
        (**self).start(name)
    }
    fn stop(&self, name: &str) -> Result<(), LxdError> {
        (**self).stop(name)
    }
    fn delete(&self, name: &str) -> Result<(), LxdError> {
        (**self).delete(name)
    }
    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        (**self).exec(name, argv, stdin)
    }
    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        (**self).snapshots(name)
    }
    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        (**self).snapshot(name, snap)
    }
    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        (**self).restore(name, snap)
    }
    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        (**self).delete_snapshot(name, snap)
    }
    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        (**self).copy(source, snap, target, config)
    }
    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        (**self).exec_attached(name, argv)
    }
    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        (**self).exec_replace(name, argv)
    }
    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        (**self).push(name, src, path, recursive)
    }
    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        (**self).pull(name, path, dest, recursive)
    }
    fn images(&self) -> Result<Vec<Image>, LxdError> {
        (**self).images()
    }
    fn publish(&self, name: &str, snap: &str, alias: &str, progress: bool) -> Result<(), LxdError> {
        (**self).publish(name, snap, alias, progress)
    }
    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        (**self).delete_image(alias)
    }
    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        (**self).rename_alias(old, new)
    }
    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        (**self).operations(name)
    }
    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        (**self).elsewhere()
    }
    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        (**self).remote_server()
    }
    fn idmapping(&self) -> Result<Idmapping, LxdError> {
        (**self).idmapping()
    }
    fn identity(&self) -> Result<Server, LxdError> {
        (**self).identity()
    }
    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        (**self).add_disk(name, disk)
    }
    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        (**self).remove_device(name, device)
    }
    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        (**self).set_config(name, key, value)
    }
    fn restart(&self, name: &str) -> Result<(), LxdError> {
        (**self).restart(name)
    }
    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError> {
        (**self).exec_lines(name, argv, stdin, line, stop)
    }
}
