//! The server as a whole: which server it plays, its LXD projects, the
//! behaviour a test tunes, and look-ups across projects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::{Image, Instance, Profile};

/// Which server the double plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// LXD 5.0.2 (`environment.server` "lxd", `X-LXD-*` file headers).
    Lxd,
    /// Incus 6.0.4 (`environment.server` "incus", `X-Incus-*` file headers).
    Incus,
}

/// What `GET /1.0` says of the server, and what it can do.
#[derive(Debug, Clone)]
pub struct Server {
    /// LXD or Incus.
    pub family: Family,
    /// `environment.server_version`.
    pub version: String,
    /// `environment.server_name`.
    pub server_name: String,
    /// `environment.certificate_fingerprint`.
    pub certificate_fingerprint: String,
    /// What `environment.kernel_features.idmapped_mounts` and
    /// `lxc_features.idmapped_mounts_v2` say.
    pub idmapped_mounts_reported: bool,
    /// Whether a disk device with `shift=true` starts (LXD 5.0.2 on this
    /// machine reports idmapped mounts and still refuses them).
    pub shift_works: bool,
}

impl Server {
    /// The server of `family` at the version this machine runs.
    pub fn new(family: Family) -> Server {
        Server {
            family,
            version: match family {
                Family::Lxd => "5.0.2",
                Family::Incus => "6.0.4",
            }
            .into(),
            server_name: "double".into(),
            certificate_fingerprint: crate::util::hex64("lxd-double certificate"),
            idmapped_mounts_reported: true,
            shift_works: true,
        }
    }
}

/// An LXD project.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// `description`.
    pub description: String,
    /// `config` (`features.images`, `features.profiles`, ...).
    pub config: BTreeMap<String, String>,
    /// Its instances by name.
    pub instances: BTreeMap<String, Instance>,
    /// Its own images (used when `features.images` is "true").
    pub images: Vec<Image>,
    /// Its own profiles (used when `features.profiles` is "true").
    pub profiles: BTreeMap<String, Profile>,
}

impl Project {
    /// A project with `config`; its own images and profiles where its
    /// features say so (LXD gives a new project's `default` profile no
    /// devices).
    pub fn new(config: BTreeMap<String, String>) -> Project {
        let mut p = Project {
            config,
            ..Project::default()
        };
        if p.feature("features.profiles") {
            p.profiles.insert("default".into(), Profile::default());
        }
        p
    }

    /// True when `key` is "true" in its config.
    pub fn feature(&self, key: &str) -> bool {
        self.config.get(key).is_some_and(|v| v == "true")
    }
}

/// Behaviour the test may tune: how long things take and what shows when.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// An instance being created has a record (status Stopped) from the
    /// start of its create operation, as LXD has while unpacking a local
    /// image; `false` (default): 404 until the operation ends, as while LXD
    /// downloads an image.
    pub create_record_early: bool,
    /// How many progress updates a slow download, unpack or publish makes.
    pub progress_steps: u32,
    /// How long a finished operation stays listed (LXD: 5 s).
    pub operation_retention: Duration,
    /// How long an exec waits for its websockets (LXD: 5 s).
    pub websocket_timeout: Duration,
    /// A started instance gets an IPv4 at once (`false`: a test gives one
    /// later through the state, as DHCP would).
    pub addresses: bool,
    /// A create naming a local alias the project lacks finds it anyway
    /// (made on the spot), unless the alias starts with "missing": for
    /// tests that do not care which images exist.
    pub images_on_demand: bool,
    /// Not LXD: config keys every instance made from an image gets besides
    /// the request's, for state a user or an earlier run would have set by
    /// the time a test looks (`raw.idmap`). Empty by default.
    pub create_config: BTreeMap<String, String>,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            create_record_early: false,
            progress_steps: 4,
            operation_retention: Duration::from_secs(5),
            websocket_timeout: Duration::from_secs(5),
            addresses: true,
            images_on_demand: false,
            create_config: BTreeMap::new(),
        }
    }
}

/// Everything the server holds.
#[derive(Debug, Clone)]
pub struct State {
    /// The server's identity and abilities.
    pub server: Server,
    /// LXD projects by name (`default` always there).
    pub projects: BTreeMap<String, Project>,
    /// Aliases a remote image server (a create's `source.server`) has;
    /// `None`: all but those starting with "missing".
    pub remote_images: Option<BTreeSet<String>>,
    /// Timing and visibility.
    pub behaviour: Behaviour,
    /// The next address to give (198.18.77.N).
    pub next_ip: u32,
}

impl State {
    /// An LXD with project `default` (its `default` profile has `eth0` and
    /// a root disk) and no instances or images.
    pub fn new(family: Family) -> State {
        let features = [
            "features.images",
            "features.profiles",
            "features.storage.volumes",
        ]
        .map(|k| (k.to_string(), "true".to_string()));
        let mut default = Project::new(features.into());
        default.description = "Default LXD project".into();
        let profile = default.profiles.entry("default".into()).or_default();
        profile.description = "Default LXD profile".into();
        profile.devices = [
            (
                "eth0",
                &[("name", "eth0"), ("network", "lxdbr0"), ("type", "nic")],
            ),
            (
                "root",
                &[("path", "/"), ("pool", "default"), ("type", "disk")],
            ),
        ]
        .into_iter()
        .map(|(n, kv)| {
            (
                n.to_string(),
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect();
        State {
            server: Server::new(family),
            projects: [("default".to_string(), default)].into(),
            remote_images: None,
            behaviour: Behaviour::default(),
            next_ip: 10,
        }
    }

    /// Instance `name` of `project`.
    pub fn instance(&self, project: &str, name: &str) -> Option<&Instance> {
        self.projects.get(project)?.instances.get(name)
    }

    /// Instance `name` of `project`, to change.
    pub fn instance_mut(&mut self, project: &str, name: &str) -> Option<&mut Instance> {
        self.projects.get_mut(project)?.instances.get_mut(name)
    }

    /// The project whose images `project` uses (itself, or `default`
    /// when its `features.images` is off).
    pub fn images_project(&self, project: &str) -> String {
        match self.projects.get(project) {
            Some(p) if !p.feature("features.images") => "default".into(),
            _ => project.into(),
        }
    }

    /// The project whose profiles `project` uses.
    pub fn profiles_project(&self, project: &str) -> String {
        match self.projects.get(project) {
            Some(p) if !p.feature("features.profiles") => "default".into(),
            _ => project.into(),
        }
    }

    /// The images `project` sees.
    pub fn images(&self, project: &str) -> &[Image] {
        self.projects
            .get(&self.images_project(project))
            .map_or(&[], |p| &p.images)
    }

    /// The images `project` sees, to change.
    pub fn images_mut(&mut self, project: &str) -> Option<&mut Vec<Image>> {
        let p = self.images_project(project);
        self.projects.get_mut(&p).map(|p| &mut p.images)
    }

    /// A new address in 198.18.77.10-249.
    pub fn alloc_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip = 10 + (n - 9) % 240;
        format!("198.18.77.{n}")
    }

    /// Does the remote image server have `alias`?
    pub fn remote_has(&self, alias: &str) -> bool {
        match &self.remote_images {
            Some(set) => set.contains(alias),
            None => !alias.starts_with("missing"),
        }
    }
}
