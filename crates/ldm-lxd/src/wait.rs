//! What the backend tells a command while it waits out LXD's busy state
//! ([`OnWait`]; the waiting is `api/operations.rs`'s), and the [`Lxd`] of
//! a shared client (commands hold `Arc<dyn Lxd>`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    Away, Disk, ExecOutput, Image, Instance, Lxd, LxdError, Server, SnapshotInfo, State, Stop,
    Target,
};

/// Told once per instance, when ldm starts waiting for LXD on it: the
/// instance, and what LXD is doing to it when known ("Creating instance").
pub type OnWait = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

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
    fn create(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        (**self).create(image, name, config)
    }
    fn read_file(&self, name: &str, path: &str, limit: u64) -> Result<Vec<u8>, LxdError> {
        (**self).read_file(name, path, limit)
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
    fn publish(&self, name: &str, snap: &str, alias: &str) -> Result<(), LxdError> {
        (**self).publish(name, snap, alias)
    }
    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        (**self).delete_image(alias)
    }
    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        (**self).rename_alias(old, new)
    }
    fn rename(&self, name: &str, new: &str) -> Result<(), LxdError> {
        (**self).rename(name, new)
    }
    fn ensure_project(&self, name: &str) -> Result<bool, LxdError> {
        (**self).ensure_project(name)
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
    fn identity(&self) -> Result<Server, LxdError> {
        (**self).identity()
    }
    fn target(&self) -> Result<Target, LxdError> {
        (**self).target()
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
