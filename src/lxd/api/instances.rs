//! Instances: lists, one instance, its state, create (from an image or a
//! copy), start, stop, restart, delete, and the instances of other LXD
//! projects. "Already exists", "already running/stopped" and "not found"
//! are decided by status codes and by reading the server's state again,
//! never from LXD's words.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::json;

use super::progress::Progress;
use super::request::{encode, status, Body};
use super::types::{InstanceObj, InstancesPost, Operation, Source, StateObj};
use super::{Api, ShowProgress};
use crate::lxd::{Away, Disk, Instance, LxdError, SnapshotInfo, State};

impl Api {
    /// `/1.0/instances/NAME` (not yet scoped).
    pub(super) fn instance_path(&self, name: &str) -> String {
        format!("/1.0/instances/{}", encode(name))
    }

    /// Every instance of the project: `recursion=2` with state and
    /// snapshots, `recursion=1` without.
    pub(super) fn list_all(&self, recursion: u8) -> Result<Vec<Instance>, LxdError> {
        let objs: Vec<InstanceObj> =
            self.get(&self.scoped(&format!("/1.0/instances?recursion={recursion}")))?;
        Ok(objs.iter().map(|o| self.instance_of(o)).collect())
    }

    /// One instance, `None` when the server has none of that name; read
    /// once the operations running on it have ended (a killed `up`'s start,
    /// a killed create), so that what a command decides from it ("already
    /// stopped", "not there") is what the instance is about to be.
    pub(super) fn one(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        self.settle(name)?;
        let path = self.scoped(&format!("{}?recursion=1", self.instance_path(name)));
        match self.get::<InstanceObj>(&path) {
            Ok(o) => Ok(Some(self.instance_of(&o))),
            Err(e) if status(&e) == Some(404) => {
                self.note_running(name, Some(false));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The raw object (for created_at and the like).
    pub(super) fn object(&self, name: &str) -> Result<Option<InstanceObj>, LxdError> {
        match self.get::<InstanceObj>(&self.scoped(&self.instance_path(name))) {
            Ok(o) => Ok(Some(o)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One instance's running state, `None` when it does not exist.
    pub(super) fn state_of(&self, name: &str) -> Result<Option<State>, LxdError> {
        let path = self.scoped(&format!("{}/state", self.instance_path(name)));
        match self.get::<StateObj>(&path) {
            Ok(s) => {
                let st = self.state_from(&s);
                self.note_running(name, Some(is_running(&st.status)));
                Ok(Some(st))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn state_from(&self, s: &StateObj) -> State {
        State {
            status: s.status.clone(),
            ipv4: ipv4(s),
            // The pid means something only on this machine.
            pid: u32::try_from(s.pid).ok().filter(|p| !self.far && *p > 0),
        }
    }

    fn instance_of(&self, o: &InstanceObj) -> Instance {
        let status = if o.status.is_empty() {
            o.state
                .as_ref()
                .map(|s| s.status.clone())
                .unwrap_or_else(|| "Unknown".into())
        } else {
            o.status.clone()
        };
        self.note_running(&o.name, Some(is_running(&status)));
        Instance {
            name: o.name.clone(),
            status,
            ipv4: o.state.as_ref().and_then(ipv4),
            snapshots: o
                .snapshots
                .iter()
                .flatten()
                .map(|s| SnapshotInfo {
                    name: s.name.rsplit('/').next().unwrap_or(&s.name).to_string(),
                    created_at: s.created_at.clone(),
                })
                .collect(),
            image: o.config.get("image.description").cloned(),
            disks: disks(&o.devices),
            raw_idmap: o.config.get("raw.idmap").cloned(),
            user: o
                .config
                .iter()
                .filter(|(k, _)| k.starts_with("user."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Creates `name` from `image` and starts it: two operations (LXD 5.0
    /// cannot start at creation), the first with its download and unpack
    /// progress shown.
    pub(super) fn launch_from(
        &self,
        image: &str,
        name: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        let source = self.image_source(image)?;
        let body = serde_json::to_value(InstancesPost {
            name,
            kind: "container",
            source,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            profiles: self.profile.clone().map(|p| vec![p]),
        })
        .map_err(|e| self.protocol("POST /1.0/instances", e))?;
        let failed = RefCell::new(None);
        let made = self.patiently(name, || {
            let mut shown = self.progress_for_launch();
            self.create(
                &self.scoped("/1.0/instances"),
                &body,
                shown.as_mut(),
                &failed,
            )
        });
        match made {
            Ok(_) => self.note_running(name, Some(false)),
            Err(e) if status(&e) == Some(404) => return Err(self.missing_image(image)),
            Err(e) => return Err(self.existed_before(name, failed.take().as_ref(), e)?),
        }
        self.change_state(name, "start")
    }

    fn progress_for_launch(&self) -> Option<Progress> {
        match self.progress {
            ShowProgress::Off => None,
            ShowProgress::Terminal => Some(Progress::new(true)),
            ShowProgress::Lines => Some(Progress::new(false)),
        }
    }

    /// A create that failed: [`LxdError::AlreadyExists`] when the instance
    /// is there and older than the operation (someone else's, or an earlier
    /// run's), else the failure `e`.
    pub(super) fn existed_before(
        &self,
        name: &str,
        op: Option<&Operation>,
        e: LxdError,
    ) -> Result<LxdError, LxdError> {
        let Some(op) = op else {
            return Ok(e);
        };
        Ok(match self.object(name)? {
            Some(o) if super::time::before(&o.created_at, &op.created_at) => {
                LxdError::AlreadyExists {
                    what: format!("instance {name}"),
                }
            }
            _ => e,
        })
    }

    /// A 404 of a create from an image: the image, unless the project is
    /// what the server lacks.
    fn missing_image(&self, image: &str) -> LxdError {
        let project = format!("/1.0/projects/{}", encode(&self.project));
        match self.get::<serde_json::Value>(&project) {
            Err(e) if status(&e) == Some(404) => LxdError::NotFound {
                what: format!(
                    "project {} (the client's current LXD project)",
                    self.project
                ),
            },
            _ => LxdError::NotFound {
                what: format!("image {image}"),
            },
        }
    }

    /// The image source of `image`: a local alias, or `REMOTE:ALIAS` of an
    /// image server (or another LXD) the client knows.
    fn image_source(&self, image: &str) -> Result<Source, LxdError> {
        let local = |alias: &str| Source {
            kind: "image".into(),
            alias: Some(alias.to_string()),
            ..Source::default()
        };
        let Some((remote, alias)) = image.split_once(':') else {
            return Ok(local(image));
        };
        let Some(r) = self.config.remotes.get(remote) else {
            return Err(LxdError::NotFound {
                what: format!(
                    "image server {remote} (no remote of that name; see `{} remote list`)",
                    self.family.program()
                ),
            });
        };
        // The server ldm talks to, by its name or as the local socket.
        if remote == self.remote || (r.addr.starts_with("unix:") && !self.far) {
            return Ok(local(alias));
        }
        let certificate = self
            .config
            .server_cert(remote)
            .and_then(|p| std::fs::read_to_string(p).ok());
        Ok(Source {
            kind: "image".into(),
            alias: Some(alias.to_string()),
            server: Some(r.addr.clone()),
            protocol: Some(if r.protocol.is_empty() {
                "lxd".into()
            } else {
                r.protocol.clone()
            }),
            certificate,
            mode: Some("pull".into()),
            ..Source::default()
        })
    }

    /// `start`, `stop` or `restart`. A refusal is read against the state
    /// LXD reports afterwards: already in the wanted state is
    /// [`LxdError::AlreadyInState`], gone is [`LxdError::NotFound`].
    pub(super) fn change_state(&self, name: &str, action: &str) -> Result<(), LxdError> {
        let path = self.scoped(&format!("{}/state", self.instance_path(name)));
        let body = json!({"action": action, "timeout": SHUTDOWN_SECS, "force": false});
        let done = self.patiently(name, || {
            self.run_op("PUT", &path, Body::Json(&body)).map(drop)
        });
        let e = match done {
            Ok(()) => {
                self.note_running(name, Some(action != "stop"));
                return Ok(());
            }
            Err(e) => e,
        };
        if !matches!(
            e,
            LxdError::Refused { .. } | LxdError::OperationFailed { .. }
        ) {
            return Err(e);
        }
        match self.state_of(name)? {
            None => Err(LxdError::NotFound {
                what: format!("instance {name}"),
            }),
            Some(s) if action == "start" && is_running(&s.status) => {
                Err(LxdError::AlreadyInState { what: name.into() })
            }
            Some(s) if action == "stop" && !is_running(&s.status) => {
                Err(LxdError::AlreadyInState { what: name.into() })
            }
            // It did not shut down in time (an init that missed the
            // signal while it booted ignores it for good): forcibly.
            Some(s) if action != "start" && is_running(&s.status) => {
                let force = json!({"action": action, "timeout": -1, "force": true});
                self.run_op("PUT", &path, Body::Json(&force))?;
                self.note_running(name, Some(action != "stop"));
                Ok(())
            }
            Some(_) => Err(e),
        }
    }

    /// Deletes `name`, stopping it first (forcibly) if it runs.
    pub(super) fn delete_instance(&self, name: &str) -> Result<(), LxdError> {
        let path = self.scoped(&self.instance_path(name));
        let stop = json!({"action": "stop", "timeout": -1, "force": true});
        let state = self.scoped(&format!("{}/state", self.instance_path(name)));
        let r = self.patiently(name, || {
            let running = match self.seen_running(name) {
                Some(r) => r,
                None => match self.state_of(name)? {
                    Some(s) => is_running(&s.status),
                    None => {
                        return Err(LxdError::NotFound {
                            what: format!("instance {name}"),
                        })
                    }
                },
            };
            if running {
                match self.run_op("PUT", &state, Body::Json(&stop)) {
                    Ok(_) => self.note_running(name, Some(false)),
                    // It stopped meanwhile, or is gone: the delete says which.
                    Err(_) => self.note_running(name, None),
                }
            }
            match self.run_op("DELETE", &path, Body::Empty) {
                Ok(_) => Ok(()),
                Err(e) if status(&e) == Some(404) => Err(LxdError::NotFound {
                    what: format!("instance {name}"),
                }),
                Err(e) => {
                    // Perhaps started since it was read: read it next time.
                    self.note_running(name, None);
                    Err(e)
                }
            }
        });
        if r.is_ok() {
            self.note_running(name, Some(false));
        }
        r
    }

    /// Copies `source` (or its snapshot `snap`) to a new stopped instance
    /// `target`, without the source's snapshots.
    pub(super) fn copy_instance(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
    ) -> Result<(), LxdError> {
        let from = match snap {
            Some(s) => format!("{source}/{s}"),
            None => source.to_string(),
        };
        // LXD 5.0 takes the new instance's profiles, config and devices
        // from the request, as `lxc copy` sends them: the source's, without
        // its volatile keys but the base image.
        let src_path = match snap {
            Some(s) => format!("{}/snapshots/{}", self.instance_path(source), encode(s)),
            None => self.instance_path(source),
        };
        let src: serde_json::Value = self
            .patiently(source, || self.get(&self.scoped(&src_path)))
            .map_err(|e| match status(&e) {
                Some(404) => LxdError::NotFound { what: from.clone() },
                _ => e,
            })?;
        let mut config = src["config"].as_object().cloned().unwrap_or_default();
        config.retain(|k, _| !k.starts_with("volatile.") || k == "volatile.base_image");
        let mut body = serde_json::to_value(InstancesPost {
            name: target,
            kind: "container",
            source: Source {
                kind: "copy".into(),
                source: Some(from.clone()),
                // A snapshot has no snapshots to leave behind.
                instance_only: snap.is_none().then_some(true),
                ..Source::default()
            },
            config: BTreeMap::new(),
            profiles: None,
        })
        .map_err(|e| self.protocol("POST /1.0/instances", e))?;
        body["config"] = serde_json::Value::Object(config);
        for key in ["architecture", "profiles", "devices", "ephemeral"] {
            if !src[key].is_null() {
                body[key] = src[key].clone();
            }
        }
        let failed = RefCell::new(None);
        let made = self.patiently(source, || {
            self.create(&self.scoped("/1.0/instances"), &body, None, &failed)
        });
        match made {
            Ok(_) => {
                self.note_running(target, Some(false));
                Ok(())
            }
            Err(e) if status(&e) == Some(404) => Err(LxdError::NotFound { what: from }),
            Err(e) => Err(self.existed_before(target, failed.take().as_ref(), e)?),
        }
    }

    /// The instances of every other LXD project of the server.
    pub(super) fn in_other_projects(&self) -> Result<Vec<Away>, LxdError> {
        // all-projects names every project; LXD refuses `project=` beside it.
        let objs: Vec<InstanceObj> = self.get("/1.0/instances?recursion=1&all-projects=true")?;
        let remote = if self.named_remote || self.remote != "local" {
            format!("{}:", self.remote)
        } else {
            String::new()
        };
        Ok(objs
            .into_iter()
            .filter(|o| o.project != self.project)
            .map(|o| Away {
                switch: format!(
                    "{} project switch {remote}{}",
                    self.family_program(),
                    o.project
                ),
                instance: o.name,
                project: o.project,
            })
            .collect())
    }

    /// The client program's name, for commands ldm tells the user to run.
    pub(super) fn family_program(&self) -> String {
        std::path::Path::new(&self.program).file_name().map_or_else(
            || self.family.program().into(),
            |p| p.to_string_lossy().into_owned(),
        )
    }
}

/// How long a stop or restart waits for the instance to shut down cleanly
/// before ldm stops it forcibly (LXD's own `boot.host_shutdown_timeout`).
/// `lxc stop` waits forever, and an init that was sent the signal while
/// it booted (a `down` right after a killed `up`) never shuts down.
const SHUTDOWN_SECS: i64 = 30;

/// LXD's status word for a running instance.
pub(super) fn is_running(status: &str) -> bool {
    status.eq_ignore_ascii_case("running")
}

/// A state's first global IPv4 address not on `lo`.
fn ipv4(s: &StateObj) -> Option<String> {
    s.network
        .as_ref()?
        .iter()
        .filter(|(name, _)| name.as_str() != "lo")
        .find_map(|(_, nic)| {
            nic.addresses
                .iter()
                .find(|a| a.family == "inet" && a.scope == "global")
                .map(|a| a.address.clone())
        })
}

/// The instance's own disk devices with a host `source`.
fn disks(devices: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Disk> {
    let yes =
        |v: Option<&String>| matches!(v.map(String::as_str), Some("true" | "1" | "yes" | "on"));
    devices
        .iter()
        .filter(|(_, d)| d.get("type").is_some_and(|t| t == "disk"))
        .filter_map(|(name, d)| {
            Some(Disk {
                device: name.clone(),
                source: d.get("source").filter(|s| !s.is_empty())?.clone(),
                path: d.get("path").cloned().unwrap_or_default(),
                readonly: yes(d.get("readonly")),
                shift: yes(d.get("shift")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_global_ipv4_off_lo_is_the_address() {
        let s: StateObj = serde_json::from_value(json!({"status": "Running", "pid": 42, "network": {
            "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
            "eth0": {"addresses": [{"family": "inet6", "address": "fe80::1", "scope": "link"},
                                    {"family": "inet", "address": "198.18.77.5", "scope": "global"}]}}}))
        .unwrap();
        assert_eq!(ipv4(&s).as_deref(), Some("198.18.77.5"));
        assert!(ipv4(&StateObj::default()).is_none());
    }

    #[test]
    fn disks_with_a_host_source_are_mounts() {
        let d: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_value(json!({
            "root": {"type": "disk", "pool": "default", "path": "/"},
            "proj": {"type": "disk", "source": "/home/u/p", "path": "/p", "shift": "true"},
            "eth0": {"type": "nic"}}))
        .unwrap();
        let v = disks(&d);
        assert_eq!(v.len(), 1);
        assert!(v[0].shift && !v[0].readonly && v[0].device == "proj");
    }
}
