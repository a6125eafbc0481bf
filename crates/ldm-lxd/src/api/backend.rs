//! [`Lxd`] over the API: each method is a call of the endpoint modules
//! (`instances.rs`, `exec.rs`, `files.rs`, ...) on the client's
//! connection.

use std::collections::BTreeMap;
use std::path::Path;

use super::Api;
use crate::{
    Away, Disk, ExecOutput, Image, Instance, Lxd, LxdError, Server, SnapshotInfo, State, Stop,
    Target,
};

impl Lxd for Api {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        self.list_all(2)
    }

    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        self.list_all(1)
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.one(name)
    }

    fn user_keys(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, LxdError> {
        Ok(self.object(name)?.map(|o| {
            o.config
                .into_iter()
                .filter(|(k, _)| k.starts_with("user."))
                .collect()
        }))
    }

    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        self.state_of(name)
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        self.create_from(image, name, config)?;
        self.change_state(name, "start")
    }

    fn create(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        self.create_from(image, name, config)
    }

    fn read_file(&self, name: &str, path: &str, limit: u64) -> Result<Vec<u8>, LxdError> {
        self.read_one(name, path, limit)
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "start")
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "stop")
    }

    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.change_state(name, "restart")
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.delete_instance(name)
    }

    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        self.exec_captured(name, argv, stdin)
    }

    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError> {
        self.exec_streamed(name, argv, stdin, line, stop)
    }

    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        self.shell_attached(name, argv)
    }

    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        self.shell_replace(name, argv)
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        self.snapshot_list(name)
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.take_snapshot(name, snap)
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.restore_snapshot(name, snap)
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.remove_snapshot(name, snap)
    }

    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        self.copy_instance(source, snap, target, config)
    }

    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        self.push_files(name, src, path, recursive)
    }

    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        self.pull_files(name, path, dest, recursive)
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        self.image_list()
    }

    fn publish(&self, name: &str, snap: &str, alias: &str) -> Result<(), LxdError> {
        self.publish_snapshot(name, snap, alias)
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.delete_image_alias(alias)
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.rename_image_alias(old, new)
    }

    fn rename(&self, name: &str, new: &str) -> Result<(), LxdError> {
        self.rename_instance(name, new)
    }

    fn ensure_project(&self, name: &str) -> Result<bool, LxdError> {
        self.ensure_lxd_project(name)
    }

    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        Ok(self
            .running_on(name)?
            .into_iter()
            .map(|op| op.description)
            .collect())
    }

    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        self.in_other_projects()
    }

    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        self.conn()?;
        Ok(self.far.then(|| self.remote.clone()))
    }

    fn identity(&self) -> Result<Server, LxdError> {
        let h = self.hello()?;
        Ok(Server {
            family: if h.environment.server == "incus" {
                "incus"
            } else {
                "lxd"
            }
            .into(),
            name: h.environment.server_name.clone(),
            version: h.environment.server_version.clone(),
            fingerprint: h.environment.certificate_fingerprint.clone(),
            project: self.project.clone(),
            remote: self.remote.clone(),
        })
    }

    fn target(&self) -> Result<Target, LxdError> {
        let conn = self.conn()?;
        Ok(Target {
            server: conn.endpoint.to_string(),
            what: format!("remote `{}` ({})", self.remote, conn.endpoint),
            switch: format!("{} remote switch {}", self.family_program(), self.remote),
            project: self.project.clone(),
        })
    }

    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        self.add_disk_device(name, disk)
    }

    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        self.remove_instance_device(name, device)
    }

    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        self.set_instance_config(name, key, value)
    }

    fn set_configs(&self, name: &str, keys: &[(&str, &str)]) -> Result<(), LxdError> {
        let config: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        self.patch(name, &serde_json::json!({ "config": config }))
    }
}
