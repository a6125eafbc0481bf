//! An in-process FAKE of LXD for unit tests of command logic: instances,
//! snapshots and images in memory, every call recorded as `"verb arg"`, and
//! knobs to make a verb refuse as busy (LXD's operation lock) or fail. It
//! keeps LXD's rules that the commands rely on (a stopped instance cannot
//! exec, names are unique), not its text: command lines and the client's
//! messages are tested against the python TEST DOUBLE (`tests/lxd_double`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::cli::CliError;
use super::{Disk, ExecOutput, Idmapping, Image, Instance, Lxd, LxdError, SnapshotInfo, Stop};

/// The fake's state; tests read and set it through [`Fake::server`].
#[derive(Debug, Default)]
pub struct State {
    /// Instances by full LXD name.
    pub instances: BTreeMap<String, Instance>,
    /// Images.
    pub images: Vec<Image>,
    /// Every call, `"verb first-argument"`, in order.
    pub calls: Vec<String>,
    /// Verb -> how many more calls of it LXD refuses as busy.
    pub busy: BTreeMap<&'static str, usize>,
    /// Verbs that fail (as `LxdError::Failed`) every time.
    pub fail: Vec<&'static str>,
    /// Instances LXD is still creating (the server side of a killed
    /// launch): name -> how many `operations` calls still see the create;
    /// the instance appears, running, when the count runs out.
    pub creating: BTreeMap<String, usize>,
    /// The server can idmap mounts (`shift=true`).
    pub shift: bool,
    /// What `id -u` and `id -g` print for the container user (default
    /// 1000 and 1000).
    pub user_ids: Option<(u32, u32)>,
    /// Instance -> the pid its state reports (none unless set here).
    pub pids: BTreeMap<String, u32>,
    /// Instances in other LXD projects.
    pub elsewhere: Vec<super::Away>,
    /// The remote's name when the server is on another machine.
    pub remote_server: Option<String>,
    /// `raw.idmap` every launched instance gets (as from a profile).
    pub launch_raw_idmap: Option<String>,
}

/// The fake LXD.
#[derive(Debug, Default)]
pub struct Fake {
    state: Mutex<State>,
}

impl Fake {
    /// An LXD with nothing in it.
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Adds instance `name`, running or stopped, with `snapshots`.
    pub fn with_instance(self, name: &str, running: bool, snapshots: &[&str]) -> Fake {
        self.server()
            .instances
            .insert(name.to_string(), instance(name, running, snapshots));
        self
    }

    /// The first `n` calls of `verb` are refused as busy.
    pub fn busy(self, verb: &'static str, n: usize) -> Fake {
        self.server().busy.insert(verb, n);
        self
    }

    /// The server's state, locked.
    pub fn server(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.server().calls.clone()
    }

    /// Records the call and applies the knobs; then `f` on the state.
    fn call<T>(
        &self,
        verb: &'static str,
        arg: &str,
        f: impl FnOnce(&mut State) -> Result<T, LxdError>,
    ) -> Result<T, LxdError> {
        let mut st = self.server();
        st.calls.push(format!("{verb} {arg}"));
        if let Some(n) = st.busy.get_mut(verb).filter(|n| **n > 0) {
            *n -= 1;
            return Err(LxdError::Busy {
                what: arg.to_string(),
                waited: Duration::ZERO,
            });
        }
        if st.fail.contains(&verb) {
            return Err(LxdError::from(CliError::Failed {
                cmd: format!("fake {verb} {arg}"),
                code: Some(1),
                stderr: "Error: simulated failure".into(),
            }));
        }
        f(&mut st)
    }
}

fn instance(name: &str, running: bool, snapshots: &[&str]) -> Instance {
    Instance {
        name: name.to_string(),
        status: if running { "Running" } else { "Stopped" }.to_string(),
        ipv4: running.then(|| "10.0.0.2".to_string()),
        snapshots: snapshots
            .iter()
            .map(|s| SnapshotInfo {
                name: s.to_string(),
                created_at: "2026-01-01T00:00:00Z".into(),
            })
            .collect(),
        image: Some("fake image".into()),
        disks: Vec::new(),
        raw_idmap: None,
        idmap_current: None,
        user: Default::default(),
        owner: Default::default(),
    }
}

fn not_found(what: &str) -> LxdError {
    LxdError::NotFound {
        what: what.to_string(),
    }
}

fn get<'a>(st: &'a mut State, name: &str) -> Result<&'a mut Instance, LxdError> {
    st.instances.get_mut(name).ok_or_else(|| not_found(name))
}

fn set_running(i: &mut Instance, running: bool) -> Result<(), LxdError> {
    if i.is_running() == running {
        return Err(LxdError::AlreadyInState {
            what: i.name.clone(),
        });
    }
    let fresh = instance(&i.name, running, &[]);
    i.status = fresh.status;
    i.ipv4 = fresh.ipv4;
    Ok(())
}

impl Lxd for Fake {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        self.call("list", "", |st| {
            Ok(st.instances.values().cloned().collect())
        })
    }

    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        self.call("statuses", "", |st| {
            Ok(st
                .instances
                .values()
                .map(|i| Instance {
                    ipv4: None,
                    snapshots: Vec::new(),
                    ..i.clone()
                })
                .collect())
        })
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.call("instance", name, |st| Ok(st.instances.get(name).cloned()))
    }

    fn state(&self, name: &str) -> Result<Option<super::State>, LxdError> {
        self.call("state", name, |st| {
            Ok(st.instances.get(name).map(|i| super::State {
                status: i.status.clone(),
                ipv4: i.ipv4.clone(),
                pid: st.pids.get(name).copied(),
            }))
        })
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        self.call("launch", name, |st| {
            if st.instances.contains_key(name) {
                return Err(LxdError::AlreadyExists {
                    what: format!("instance {name}"),
                });
            }
            if image.starts_with("missing") {
                return Err(not_found(&format!("image {image}")));
            }
            let mut made = instance(name, true, &[]);
            made.raw_idmap = st.launch_raw_idmap.clone();
            made.user = config
                .iter()
                .filter(|(k, _)| k.starts_with("user."))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            st.instances.insert(name.to_string(), made);
            Ok(())
        })
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.call("start", name, |st| set_running(get(st, name)?, true))
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.call("stop", name, |st| set_running(get(st, name)?, false))
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.call("delete", name, |st| {
            st.instances
                .remove(name)
                .map(drop)
                .ok_or_else(|| not_found(name))
        })
    }

    fn exec(&self, name: &str, argv: &[&str], _stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        self.call("exec", name, |st| {
            if !get(st, name)?.is_running() {
                return Err(LxdError::NotRunning {
                    what: name.to_string(),
                });
            }
            // The user's ids, as `id -u` and `id -g` print them.
            let ids = argv.iter().any(|a| a.contains("id -u"));
            let (uid, gid) = st.user_ids.unwrap_or((1000, 1000));
            Ok(ExecOutput {
                code: 0,
                stdout: if ids {
                    format!("{uid}\n{gid}\n").into_bytes()
                } else {
                    Vec::new()
                },
                stderr: Vec::new(),
            })
        })
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        self.call("snapshots", name, |st| Ok(get(st, name)?.snapshots.clone()))
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call("snapshot", name, |st| {
            let i = get(st, name)?;
            if i.snapshots.iter().any(|s| s.name == snap) {
                return Err(LxdError::AlreadyExists {
                    what: format!("snapshot {name}/{snap}"),
                });
            }
            i.snapshots
                .push(instance(name, false, &[snap]).snapshots.remove(0));
            Ok(())
        })
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call("restore", name, |st| {
            let i = get(st, name)?;
            if !i.snapshots.iter().any(|s| s.name == snap) {
                return Err(not_found(&format!("snapshot {name}/{snap}")));
            }
            Ok(())
        })
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call("delete_snapshot", name, |st| {
            let i = get(st, name)?;
            let before = i.snapshots.len();
            i.snapshots.retain(|s| s.name != snap);
            if i.snapshots.len() == before {
                return Err(not_found(&format!("snapshot {name}/{snap}")));
            }
            Ok(())
        })
    }

    fn copy(
        &self,
        source: &str,
        _snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        self.call("copy", source, |st| {
            get(st, source)?;
            if st.instances.contains_key(target) {
                return Err(LxdError::AlreadyExists {
                    what: format!("instance {target}"),
                });
            }
            let mut made = instance(target, false, &[]);
            made.user = config
                .iter()
                .filter(|(k, _)| k.starts_with("user."))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            st.instances.insert(target.to_string(), made);
            Ok(())
        })
    }

    fn exec_attached(&self, name: &str, _argv: &[&str]) -> Result<i32, LxdError> {
        self.call("exec_attached", name, |st| get(st, name).map(|_| 0))
    }

    fn exec_replace(&self, name: &str, _argv: &[&str]) -> LxdError {
        let _ = self.call("exec_replace", name, |_| Ok(()));
        LxdError::from(CliError::Spawn {
            cmd: format!("fake exec {name}"),
            source: std::io::Error::other("the fake cannot replace the process"),
        })
    }

    fn push(&self, name: &str, _src: &Path, _path: &str, _recursive: bool) -> Result<(), LxdError> {
        self.call("push", name, |st| get(st, name).map(drop))
    }

    fn pull(
        &self,
        name: &str,
        _path: &str,
        _dest: &Path,
        _recursive: bool,
    ) -> Result<(), LxdError> {
        self.call("pull", name, |st| get(st, name).map(drop))
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        self.call("images", "", |st| Ok(st.images.clone()))
    }

    fn publish(
        &self,
        name: &str,
        _snap: &str,
        alias: &str,
        _progress: bool,
    ) -> Result<(), LxdError> {
        self.call("publish", name, |st| {
            if st
                .images
                .iter()
                .any(|i| i.aliases.iter().any(|a| a == alias))
            {
                return Err(LxdError::AlreadyExists {
                    what: format!("image alias {alias}"),
                });
            }
            st.images.push(Image {
                aliases: vec![alias.to_string()],
                fingerprint: format!("fake{}", st.images.len()),
                size: 1,
                description: format!("published from {name}"),
            });
            Ok(())
        })
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.call("delete_image", alias, |st| {
            let before = st.images.len();
            st.images.retain(|i| !i.aliases.iter().any(|a| a == alias));
            if st.images.len() == before {
                return Err(not_found(&format!("image {alias}")));
            }
            Ok(())
        })
    }

    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        self.call("remote_server", "", |st| Ok(st.remote_server.clone()))
    }

    fn elsewhere(&self) -> Result<Vec<super::Away>, LxdError> {
        self.call("elsewhere", "", |st| Ok(st.elsewhere.clone()))
    }

    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        self.call("operations", name, |st| {
            let Some(n) = st.creating.get_mut(name) else {
                return Ok(Vec::new());
            };
            *n = n.saturating_sub(1);
            if *n > 0 {
                return Ok(vec!["Creating instance".to_string()]);
            }
            st.creating.remove(name);
            st.instances
                .insert(name.to_string(), instance(name, true, &[]));
            Ok(Vec::new())
        })
    }

    fn idmapping(&self) -> Result<Idmapping, LxdError> {
        self.call("idmapping", "", |st| Ok(Idmapping { shift: st.shift }))
    }

    fn identity(&self) -> Result<super::Server, LxdError> {
        self.call("identity", "", |_| {
            Ok(super::Server {
                family: "lxd".into(),
                name: "fake".into(),
                version: "5.0.2".into(),
                fingerprint: "f".repeat(64),
                project: "default".into(),
                remote: "local".into(),
            })
        })
    }

    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        self.call("add_disk", name, |st| {
            let i = get(st, name)?;
            if i.disks.iter().any(|d| d.device == disk.device) {
                return Err(LxdError::AlreadyExists {
                    what: format!("device {}", disk.device),
                });
            }
            i.disks.push(disk.clone());
            Ok(())
        })
    }

    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        self.call("remove_device", name, |st| {
            let i = get(st, name)?;
            let before = i.disks.len();
            i.disks.retain(|d| d.device != device);
            if i.disks.len() == before {
                return Err(LxdError::NotFound {
                    what: format!("device {device}"),
                });
            }
            Ok(())
        })
    }

    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        self.call("set_config", name, |st| {
            let i = get(st, name)?;
            if key == "raw.idmap" {
                i.raw_idmap = Some(value.to_string());
            }
            Ok(())
        })
    }

    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.call("restart", name, |st| {
            get(st, name)?;
            Ok(())
        })
    }

    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        _stop: Stop,
    ) -> Result<i32, LxdError> {
        let out = self.exec(name, argv, stdin)?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            line(l);
        }
        Ok(out.code)
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.call("rename_alias", old, |st| {
            let img = st
                .images
                .iter_mut()
                .find(|i| i.aliases.iter().any(|a| a == old))
                .ok_or_else(|| not_found(&format!("image alias {old}")))?;
            for a in &mut img.aliases {
                if a == old {
                    *a = new.to_string();
                }
            }
            Ok(())
        })
    }
}
