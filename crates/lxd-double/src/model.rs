//! The objects of the server's state (instances, snapshots, images,
//! profiles) that a test seeds and inspects through
//! [`crate::Double::state`]. Plain data; the API handlers keep LXD's rules.

use std::collections::BTreeMap;

use crate::files::Files;

/// An instance's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Running (103).
    Running,
    /// Stopped (102).
    Stopped,
    /// Frozen (110).
    Frozen,
}

impl Status {
    /// LXD's word and status code.
    pub fn api(self) -> (&'static str, u16) {
        match self {
            Status::Running => ("Running", 103),
            Status::Stopped => ("Stopped", 102),
            Status::Frozen => ("Frozen", 110),
        }
    }
}

/// A device: its keys (`type`, `source`, `path`, `shift`, ...).
pub type Device = BTreeMap<String, String>;

/// One instance (a container).
#[derive(Debug, Clone)]
pub struct Instance {
    /// Running, stopped or frozen.
    pub status: Status,
    /// Its own config (`user.*` keys included), not the profiles'.
    pub config: BTreeMap<String, String>,
    /// Its own devices, not the profiles'.
    pub devices: BTreeMap<String, Device>,
    /// Profiles applied, in order.
    pub profiles: Vec<String>,
    /// Snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// The global IPv4 on `eth0` while running (`None`: no address yet).
    pub ipv4: Option<String>,
    /// Its init's pid while running.
    pub pid: u32,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// `description`.
    pub description: String,
    /// `ephemeral`.
    pub ephemeral: bool,
    /// Its files.
    pub files: Files,
    /// Not in the API: what it was made from (`image ALIAS`, `copy SRC`,
    /// `seeded`), for tests.
    pub origin: String,
    /// Not in the API: the snapshots restored into it, in order.
    pub restored: Vec<String>,
}

impl Instance {
    /// A stopped instance with the `default` profile and no snapshots.
    pub fn stopped() -> Instance {
        Instance {
            status: Status::Stopped,
            config: BTreeMap::new(),
            devices: BTreeMap::new(),
            profiles: vec!["default".into()],
            snapshots: Vec::new(),
            ipv4: None,
            pid: 0,
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
            description: String::new(),
            ephemeral: false,
            files: Files::default(),
            origin: "seeded".into(),
            restored: Vec::new(),
        }
    }

    /// A running instance (an address is given when it is seeded unless
    /// [`Instance::ipv4`] says one).
    pub fn running() -> Instance {
        Instance {
            status: Status::Running,
            ..Instance::stopped()
        }
    }

    /// With config key `k` = `v`.
    pub fn config(mut self, k: &str, v: &str) -> Instance {
        self.config.insert(k.into(), v.into());
        self
    }

    /// With device `name` of `keys`.
    pub fn device(mut self, name: &str, keys: &[(&str, &str)]) -> Instance {
        let d = keys.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        self.devices.insert(name.into(), d.collect());
        self
    }

    /// With a snapshot `name` of its current config and files.
    pub fn snapshot(mut self, name: &str) -> Instance {
        let s = Snapshot::of(&self, name, "2026-01-01T00:00:01.000000000Z");
        self.snapshots.push(s);
        self
    }

    /// With IPv4 `ip`.
    pub fn ipv4(mut self, ip: &str) -> Instance {
        self.ipv4 = Some(ip.into());
        self
    }

    /// With a file at `path`.
    pub fn file(mut self, path: &str, data: &[u8]) -> Instance {
        self.files.write(path, data);
        self
    }

    /// True when running.
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    /// The snapshot named `name`.
    pub fn find_snapshot(&self, name: &str) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.name == name)
    }

    /// The snapshot names, oldest first.
    pub fn snapshot_names(&self) -> Vec<String> {
        self.snapshots.iter().map(|s| s.name.clone()).collect()
    }
}

/// One snapshot: the instance's config, devices and files when taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its name (without the instance's).
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Config then.
    pub config: BTreeMap<String, String>,
    /// Devices then.
    pub devices: BTreeMap<String, Device>,
    /// Files then.
    pub files: Files,
}

impl Snapshot {
    /// A snapshot `name` of `inst` as it is now.
    pub fn of(inst: &Instance, name: &str, created_at: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            created_at: created_at.into(),
            config: inst.config.clone(),
            devices: inst.devices.clone(),
            files: inst.files.clone(),
        }
    }
}

/// One image in a project's image store.
#[derive(Debug, Clone)]
pub struct Image {
    /// Full fingerprint (64 hex digits).
    pub fingerprint: String,
    /// Alias names.
    pub aliases: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// `properties` (`description`, `os`, ...).
    pub properties: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: String,
    /// Downloaded from a remote to create an instance (`cached`).
    pub cached: bool,
    /// Not in the API: the files an instance made from it starts with
    /// (a small Linux root unless a test writes more, e.g. an
    /// `/etc/passwd` that uses uid 1000).
    pub files: Files,
}

impl Image {
    /// An image with alias `alias` (fingerprint derived from it).
    pub fn new(alias: &str) -> Image {
        Image {
            fingerprint: crate::util::hex64(&("image", alias)),
            aliases: vec![alias.into()],
            size: 1_037_006,
            properties: [("description".to_string(), format!("Double image {alias}"))].into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            cached: false,
            files: Files::default(),
        }
    }

    /// With a file at `path` in the instances made from it.
    pub fn file(mut self, path: &str, data: &[u8]) -> Image {
        self.files.write(path, data);
        self
    }

    /// The `description` property.
    pub fn description(&self) -> &str {
        self.properties
            .get("description")
            .map_or("", String::as_str)
    }
}

/// A profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// `description`.
    pub description: String,
    /// Config keys instances inherit.
    pub config: BTreeMap<String, String>,
    /// Devices instances inherit.
    pub devices: BTreeMap<String, Device>,
}
