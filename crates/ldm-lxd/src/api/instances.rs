//! Instances: lists, one instance, its state, start, stop, restart,
//! delete, and the instances of other LXD projects (making them:
//! `create.rs`). "Already exists", "already running/stopped" and "not found"
//! are decided by status codes and by reading the server's state again,
//! never from LXD's words.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::request::{encode, status, Body};
use super::types::{InstanceObj, StateObj};
use super::Api;
use crate::{Away, Disk, Instance, LxdError, SnapshotInfo, State};

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
            idmap_current: o.config.get("volatile.idmap.current").cloned(),
            user: o
                .config
                .iter()
                .filter(|(k, _)| k.starts_with("user."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            owner: Default::default(),
        }
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
            Some(_) if action == "start" => Err(self.start_refused(name, e)),
            Some(_) => Err(e),
        }
    }

    /// A start that failed: [`LxdError::SameNameElsewhere`] when another
    /// LXD project of the server has an instance of that name (one request,
    /// on this failure only; a server that does not let this client list
    /// every project leaves `e` as it is).
    fn start_refused(&self, name: &str, e: LxdError) -> LxdError {
        let Ok(away) = self.in_other_projects() else {
            return e;
        };
        let others: Vec<String> = away
            .into_iter()
            .filter(|a| a.instance == name)
            .map(|a| a.project)
            .collect();
        if others.is_empty() {
            return e;
        }
        LxdError::SameNameElsewhere {
            name: name.to_string(),
            others: others.join(", "),
            program: self.family_program(),
            source: Box::new(e),
        }
    }

    /// Renames stopped instance `name` to `new` (`POST /1.0/instances/NAME
    /// {"name": NEW}`, an operation). A 409 is a taken name; a failed
    /// operation is read against the server's state afterwards: `new`
    /// there and `name` gone is a rename done (by an earlier try whose
    /// answer was lost), `name` gone and `new` absent is "not found".
    pub(super) fn rename_instance(&self, name: &str, new: &str) -> Result<(), LxdError> {
        let path = self.scoped(&self.instance_path(name));
        let body = json!({ "name": new });
        let r = self.patiently(name, || {
            self.run_op("POST", &path, Body::Json(&body)).map(drop)
        });
        let e = match r {
            Ok(()) => {
                self.note_running(name, None);
                self.note_running(new, Some(false));
                return Ok(());
            }
            Err(e) => e,
        };
        match status(&e) {
            Some(409) => {
                return Err(LxdError::AlreadyExists {
                    what: format!("an instance named {new}"),
                })
            }
            Some(404) => {
                return Err(LxdError::NotFound {
                    what: format!("instance {name}"),
                })
            }
            _ => {}
        }
        Err(e)
    }

    /// Deletes `name`, stopping it first (forcibly) if it runs.
    ///
    /// LXD holds an instance's own lock (not an API operation) a moment
    /// past the operation that took it: a `stop` lock is released by the
    /// stop hook, after the stop operation has returned; a DELETE meanwhile
    /// fails as an operation with no other operation to wait for (seen on
    /// LXD 5.0.2 under load: a `remove -f` right after a killed create).
    /// Nothing tells that failure from another but its words, so a failed
    /// DELETE operation is simply tried again, state re-read, for at most
    /// [`DELETE_SETTLE`]; then its failure stands.
    pub(super) fn delete_instance(&self, name: &str) -> Result<(), LxdError> {
        let settle = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.delete_once(name) {
                Err(LxdError::OperationFailed { .. }) if settle.elapsed() < DELETE_SETTLE => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    fn delete_once(&self, name: &str) -> Result<(), LxdError> {
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
                server: None,
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

/// How long a failed DELETE of an instance is tried again: LXD's own lock
/// on it outlives the operation that took it by moments.
const DELETE_SETTLE: Duration = Duration::from_secs(10);

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
