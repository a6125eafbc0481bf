//! The project state and the mutations that change it. No I/O.
//!
//! [`Project`] is what `containers.yaml` holds (same keys as the Go tool);
//! [`Mutation`] is what one log record holds. [`Project::apply`] is the only
//! way state changes: the store calls it when a command commits and again
//! when the log is replayed, so both paths enforce the same rules.

pub mod merge;
mod mount;
mod mutation;
mod pending;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use mount::{Mount, SetupProgress, Step};
pub use mutation::{ApplyError, Mutation};
pub use pending::{quote, Op, Owner, Pending, OP_KINDS};
pub use validate::ValidationError;

/// Default user name and password when neither container nor defaults set one.
pub const DEFAULT_USER: &str = "dev";

/// One project: the containers of one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project name; prefix of every LXD name (`project-container`).
    pub project: String,
    /// LXD remote (server or cluster) every client call addresses; `None`
    /// for the local LXD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The LXD project the containers live in (`ldm create --lxd-project`):
    /// every request names it, whatever the client's current project;
    /// `None`: the client's current project, as lxc-dev-manager did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd_project: Option<String>,
    /// Values containers fall back to.
    #[serde(default, skip_serializing_if = "Defaults::is_empty")]
    pub defaults: Defaults,
    /// Containers by name.
    #[serde(default)]
    pub containers: BTreeMap<String, Container>,
}

/// Project-wide defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// Ports `proxy` forwards for containers that have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Default user inside containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// What new containers mount; absent: the project folder at
    /// `/home/USER/PROJECT` (see [`Project::new_container_mounts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Setup steps of containers that have none of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<Step>,
    /// The LXD settings of new containers that have none of their own.
    #[serde(default, skip_serializing_if = "Security::is_empty")]
    pub security: Security,
}

impl Defaults {
    /// True when nothing is set (the YAML leaves `defaults:` out).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
            && self.user.is_none()
            && self.mounts.is_none()
            && self.setup.is_empty()
            && self.security.is_empty()
    }
}

/// A user inside a container; either field may fall back to the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Password, stored in clear as the Go tool does (hence files are 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl User {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.password.is_none()
    }
}

/// One recorded container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Image it was created from.
    pub image: String,
    /// Ports to forward; empty means "use the defaults".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// User override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Host folders mounted in it (recorded when they are added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Its own setup steps, instead of the defaults'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<Vec<Step>>,
    /// Its own LXD settings, each falling back on the defaults'.
    #[serde(default, skip_serializing_if = "Security::is_empty")]
    pub security: Security,
    /// Snapshots ldm knows about, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, Snapshot>,
    /// A long operation under way (or interrupted) on this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// The LXD settings ldm gives every container so that Docker (and other
/// container engines) run inside, each of which weakens its isolation
/// (DESIGN.md, "Container settings"). Absent: on, as lxc-dev-manager did;
/// `false` turns one off for a project (`defaults.security`) or a container.
/// Read from `containers.yaml` only: no command sets them, so they need no
/// log record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// `security.nesting`: containers inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesting: Option<bool>,
    /// `security.syscalls.intercept.mknod`: LXD makes device nodes for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept_mknod: Option<bool>,
    /// `security.syscalls.intercept.setxattr`: LXD sets trusted xattrs for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept_setxattr: Option<bool>,
}

/// One of the [`Security`] settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// `security.nesting`.
    Nesting,
    /// `security.syscalls.intercept.mknod`.
    InterceptMknod,
    /// `security.syscalls.intercept.setxattr`.
    InterceptSetxattr,
}

impl Setting {
    /// Every setting, in the order LXD is given them.
    pub const ALL: [Setting; 3] = [
        Setting::Nesting,
        Setting::InterceptMknod,
        Setting::InterceptSetxattr,
    ];

    /// Its key under `security:` in `containers.yaml`.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Nesting => "nesting",
            Setting::InterceptMknod => "intercept_mknod",
            Setting::InterceptSetxattr => "intercept_setxattr",
        }
    }

    /// LXD's config key.
    pub fn lxd_key(self) -> &'static str {
        match self {
            Setting::Nesting => "security.nesting",
            Setting::InterceptMknod => "security.syscalls.intercept.mknod",
            Setting::InterceptSetxattr => "security.syscalls.intercept.setxattr",
        }
    }
}

impl Security {
    /// True when nothing is set (the YAML leaves `security:` out).
    pub fn is_empty(&self) -> bool {
        *self == Security::default()
    }

    /// The value written for `s`, if any.
    pub fn get(&self, s: Setting) -> Option<bool> {
        match s {
            Setting::Nesting => self.nesting,
            Setting::InterceptMknod => self.intercept_mknod,
            Setting::InterceptSetxattr => self.intercept_setxattr,
        }
    }
}

/// Metadata of one snapshot; LXD holds the snapshot itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Free text given with `-d`.
    #[serde(default)]
    pub description: String,
    /// RFC 3339 time of creation, UTC.
    #[serde(default)]
    pub created_at: String,
    /// A snapshot operation under way (or interrupted) on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// Which part of the project a setting belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `defaults.*`
    Defaults,
    /// `containers.NAME.*`
    Container(String),
}

impl Project {
    /// A new, empty project.
    pub fn new(name: &str, ports: Vec<u16>) -> Project {
        Project {
            project: name.to_string(),
            remote: None,
            lxd_project: None,
            defaults: Defaults {
                ports,
                ..Defaults::default()
            },
            containers: BTreeMap::new(),
        }
    }

    /// Checks every value a hand edit could have broken. Errors name the key.
    pub fn validate(&self) -> Result<(), (String, ValidationError)> {
        validate::project_name(&self.project).map_err(|e| ("project".to_string(), e))?;
        if let Some(r) = &self.remote {
            validate::remote(r).map_err(|e| ("remote".to_string(), e))?;
        }
        if let Some(p) = &self.lxd_project {
            validate::lxd_project(p).map_err(|e| ("lxd_project".to_string(), e))?;
        }
        validate::ports_list(&self.defaults.ports)
            .map_err(|e| ("defaults.ports".to_string(), e))?;
        check_user(self.defaults.user.as_ref(), "defaults.user")?;
        check_steps(&self.defaults.setup, "defaults.setup")?;
        for (name, c) in &self.containers {
            let key = format!("containers.{name}");
            validate::container_name(&self.project, name).map_err(|e| (key.clone(), e))?;
            validate::ports_list(&c.ports).map_err(|e| (format!("{key}.ports"), e))?;
            check_user(c.user.as_ref(), &format!("{key}.user"))?;
            if let Some(steps) = &c.setup {
                check_steps(steps, &format!("{key}.setup"))?;
            }
            for snap in c.snapshots.keys() {
                validate::snapshot_name(snap)
                    .map_err(|e| (format!("{key}.snapshots.{snap}"), e))?;
            }
        }
        Ok(())
    }

    /// The ports `proxy` forwards for `container`: its own, else the defaults.
    pub fn effective_ports(&self, container: &str) -> &[u16] {
        match self.containers.get(container) {
            Some(c) if !c.ports.is_empty() => &c.ports,
            _ => &self.defaults.ports,
        }
    }

    /// The user name and password for `container` (container, then defaults,
    /// then `dev`/`dev`), each field falling back on its own.
    pub fn effective_user(&self, container: &str) -> (String, String) {
        let own = self.containers.get(container).and_then(|c| c.user.as_ref());
        let def = self.defaults.user.as_ref();
        let pick = |f: fn(&User) -> &Option<String>| {
            own.and_then(|u| f(u).clone())
                .or_else(|| def.and_then(|u| f(u).clone()))
                .unwrap_or_else(|| DEFAULT_USER.to_string())
        };
        (pick(|u| &u.name), pick(|u| &u.password))
    }

    /// The setup steps of `container`: its own, else the defaults'.
    pub fn effective_setup(&self, container: &str) -> &[Step] {
        match self
            .containers
            .get(container)
            .and_then(|c| c.setup.as_ref())
        {
            Some(own) => own,
            None => &self.defaults.setup,
        }
    }

    /// Whether `s` is on for `container` (its own value, else the
    /// defaults', else on); `None` asks for a new container.
    pub fn effective_setting(&self, container: Option<&str>, s: Setting) -> bool {
        container
            .and_then(|c| self.containers.get(c))
            .and_then(|c| c.security.get(s))
            .or(self.defaults.security.get(s))
            .unwrap_or(true)
    }

    /// What a new container whose user is `user` mounts: `defaults.mounts`,
    /// else the project folder at `/home/USER/PROJECT`.
    pub fn new_container_mounts(&self, user: &str) -> Vec<Mount> {
        match &self.defaults.mounts {
            Some(m) => m.clone(),
            None => vec![Mount {
                host: ".".into(),
                path: format!("/home/{user}/{}", self.project),
                readonly: false,
            }],
        }
    }

    /// The full LXD instance name of `container`.
    pub fn lxd_name(&self, container: &str) -> String {
        format!("{}-{container}", self.project)
    }
}

fn check_steps(steps: &[Step], key: &str) -> Result<(), (String, ValidationError)> {
    for (i, step) in steps.iter().enumerate() {
        if let Step::Script { script } = step {
            validate::setup_script(script).map_err(|e| (format!("{key}[{}]", i + 1), e))?;
        }
    }
    Ok(())
}

fn check_user(user: Option<&User>, key: &str) -> Result<(), (String, ValidationError)> {
    if let Some(u) = user {
        if let Some(n) = &u.name {
            validate::user_name(n).map_err(|e| (format!("{key}.name"), e))?;
        }
        if let Some(p) = &u.password {
            validate::password(p).map_err(|e| (format!("{key}.password"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_precedence_is_container_then_defaults_then_dev() {
        let mut p = Project::new("p", vec![]);
        p.containers.insert("a".into(), Container::default());
        assert_eq!(p.effective_user("a"), ("dev".into(), "dev".into()));
        p.defaults.user = Some(User {
            name: Some("ann".into()),
            password: Some("pw".into()),
        });
        p.containers.get_mut("a").unwrap().user = Some(User {
            name: Some("bob".into()),
            password: None,
        });
        assert_eq!(p.effective_user("a"), ("bob".into(), "pw".into()));
    }

    #[test]
    fn ports_fall_back_to_defaults_when_empty() {
        let mut p = Project::new("p", vec![8000]);
        p.containers.insert("a".into(), Container::default());
        assert_eq!(p.effective_ports("a"), &[8000]);
        p.containers.get_mut("a").unwrap().ports = vec![3000];
        assert_eq!(p.effective_ports("a"), &[3000]);
    }
}
