//! [`Patient`]: any [`Lxd`] that waits out LXD's busy state instead of
//! failing. LXD refuses an operation on an instance while another one holds
//! the instance's operation lock (`Instance is busy running a "create"
//! operation`), e.g. the server-side part of a `launch` whose client was
//! killed with Ctrl+C: it goes on for seconds after ldm died. LXD refuses
//! before doing anything, so retrying is safe. Every call that acts on an
//! instance is retried until `limit` has passed; reads (`list`, `instance`,
//! `snapshots`, `images`) never meet the lock and go straight through.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ExecOutput, Image, Instance, Lxd, LxdError, SnapshotInfo};

/// Told once per instance, when ldm starts waiting for LXD on it.
pub type OnWait = Box<dyn Fn(&str) + Send + Sync>;

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

    /// Runs `f` until LXD stops saying `name` is busy or `limit` passes;
    /// then the busy error says how long ldm waited.
    fn retry<T>(
        &self,
        name: &str,
        mut f: impl FnMut() -> Result<T, LxdError>,
    ) -> Result<T, LxdError> {
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            match f() {
                Err(LxdError::Busy { what, .. }) => {
                    let waited = start.elapsed();
                    if waited + pause > self.limit {
                        return Err(LxdError::Busy { what, waited });
                    }
                    self.tell(name);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                r => return r,
            }
        }
    }

    fn tell(&self, name: &str) {
        // A poisoned set only means another thread panicked while telling.
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.insert(name.to_string()) {
            (self.on_wait)(name);
        }
    }
}

impl<L: Lxd> Lxd for Patient<L> {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        self.inner.list()
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.inner.instance(name)
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        self.retry(name, || self.inner.launch(image, name, config))
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

    fn copy(&self, source: &str, snap: Option<&str>, target: &str) -> Result<(), LxdError> {
        self.retry(source, || self.inner.copy(source, snap, target))
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
}

/// A shared client is a client: commands hold `Arc<dyn Lxd>`.
impl<L: Lxd + ?Sized> Lxd for std::sync::Arc<L> {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        (**self).list()
    }
    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        (**self).instance(name)
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
    fn copy(&self, source: &str, snap: Option<&str>, target: &str) -> Result<(), LxdError> {
        (**self).copy(source, snap, target)
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lxd::fake::Fake;

    /// The instances the wait was told about, in order.
    type Told = Arc<Mutex<Vec<String>>>;

    fn patient(fake: Fake, limit: Duration) -> (Patient<Arc<Fake>>, Arc<Fake>, Told) {
        let fake = Arc::new(fake);
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = Arc::clone(&told);
        let on_wait: OnWait = Box::new(move |name| t.lock().unwrap().push(name.to_string()));
        (Patient::new(Arc::clone(&fake), limit, on_wait), fake, told)
    }

    #[test]
    fn busy_calls_are_retried_and_the_wait_told_once_per_instance() {
        let fake = Fake::new().with_instance("p-a", true, &[]).busy("stop", 3);
        let (lxd, fake, told) = patient(fake, Duration::from_secs(30));
        lxd.stop("p-a").unwrap();
        assert_eq!(fake.calls(), ["stop p-a"; 4]);
        assert_eq!(*told.lock().unwrap(), ["p-a"]);
        assert!(!fake.state().instances["p-a"].is_running());
        // Other errors are not retried.
        assert!(matches!(
            lxd.stop("p-a"),
            Err(LxdError::AlreadyInState { .. })
        ));
        assert_eq!(fake.calls().len(), 5);
    }

    #[test]
    fn the_wait_gives_up_at_its_limit_saying_how_long_it_waited() {
        let fake = Fake::new()
            .with_instance("p-a", true, &[])
            .busy("delete", 1000);
        let (lxd, fake, _) = patient(fake, Duration::from_millis(700));
        let start = Instant::now();
        match lxd.delete("p-a") {
            Err(LxdError::Busy { what, waited }) => {
                assert_eq!(what, "p-a");
                assert!(waited <= Duration::from_millis(700), "{waited:?}");
            }
            r => panic!("{r:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        let tries = fake.calls().len();
        assert!(
            (3..=6).contains(&tries),
            "{tries} tries in 0.7 s of 100, 200, 400 ms pauses"
        );
        assert!(fake.state().instances.contains_key("p-a"));
    }

    #[test]
    fn reads_go_straight_through() {
        let fake = Fake::new().with_instance("p-a", true, &[]).busy("list", 5);
        let (lxd, _, told) = patient(fake, Duration::from_secs(30));
        assert!(matches!(lxd.list(), Err(LxdError::Busy { .. })));
        assert!(told.lock().unwrap().is_empty());
    }
}
