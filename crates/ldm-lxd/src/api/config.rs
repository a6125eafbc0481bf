//! Which server family, which server and which LXD project: read from the
//! environment and from the client program's own configuration, so that the
//! remotes a user adds, trusts and switches with `lxc` (or `incus`) are the
//! ones ldm uses.
//!
//! - Family: `LDM_LXC` (`incus`, or a path to either client program) names
//!   it; else `LXD_DIR`/`INCUS_DIR`; else the one installed (its socket,
//!   else its client program), LXD when both are.
//! - Configuration folder: LXD `LXD_CONF`, else `~/.config/lxc`, else the
//!   snap's `~/snap/lxd/common/config`; Incus `INCUS_CONF`, else
//!   `~/.config/incus`. `config.yml` there (`default-remote`, `remotes` with
//!   `addr`, `protocol`, `public` and the remote's current `project`) is
//!   parsed through `yaml.rs` with its bounds; a missing file is the
//!   client's defaults.
//! - The local socket: LXD `$LXD_DIR/unix.socket`, else the snap's, else
//!   `/var/lib/lxd/unix.socket`; Incus `$INCUS_DIR/unix.socket`, else
//!   `/var/lib/incus/unix.socket`, else `/run/incus/unix.socket`.

// Over 400 lines with its tests (about 70): LXD's and Incus's client
// configurations are read by the same rules, kept together.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The two server families ldm speaks to: one API, two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Canonical's LXD (`lxc`).
    Lxd,
    /// Incus (`incus`).
    Incus,
}

impl Family {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::Lxd => "LXD",
            Family::Incus => "Incus",
        }
    }

    /// Its client program.
    pub fn program(self) -> &'static str {
        match self {
            Family::Lxd => "lxc",
            Family::Incus => "incus",
        }
    }

    /// The group whose members may use its local socket.
    pub fn group(self) -> &'static str {
        match self {
            Family::Lxd => "lxd",
            Family::Incus => "incus-admin",
        }
    }

    /// Where its local socket may be, best first.
    pub fn sockets(self) -> Vec<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        match self {
            Family::Lxd => match var("LXD_DIR") {
                Some(d) => vec![PathBuf::from(d).join("unix.socket")],
                None => vec![
                    "/var/snap/lxd/common/lxd/unix.socket".into(),
                    "/var/lib/lxd/unix.socket".into(),
                ],
            },
            Family::Incus => match var("INCUS_DIR") {
                Some(d) => vec![PathBuf::from(d).join("unix.socket")],
                None => vec![
                    "/var/lib/incus/unix.socket".into(),
                    "/run/incus/unix.socket".into(),
                ],
            },
        }
    }

    /// The local socket: the first of [`Family::sockets`] that exists, else
    /// the last (the connection error then names it).
    pub fn socket(self) -> PathBuf {
        let all = self.sockets();
        all.iter()
            .find(|p| p.exists())
            .or(all.last())
            .cloned()
            .unwrap_or_default()
    }

    /// The client's configuration folder.
    pub fn config_dir(self, home: Option<&Path>) -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        match self {
            Family::Lxd => {
                if let Some(d) = var("LXD_CONF") {
                    return Some(d.into());
                }
                let home = home?;
                let plain = home.join(".config/lxc");
                let snap = home.join("snap/lxd/common/config");
                Some(if !plain.exists() && snap.exists() {
                    snap
                } else {
                    plain
                })
            }
            Family::Incus => match var("INCUS_CONF") {
                Some(d) => Some(d.into()),
                None => Some(home?.join(".config/incus")),
            },
        }
    }
}

/// The family to use and the client program for interactive shells.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The server family.
    pub family: Family,
    /// The client program (`LDM_LXC`, or the family's) for `ldm ssh`.
    pub program: OsString,
    /// Said once per user when ldm picked the family itself: (key, text).
    pub note: Option<(&'static str, String)>,
}

/// What [`choose`] looks at, apart from the process environment (tests).
pub struct Installed {
    /// The family's socket exists.
    pub socket: fn(Family) -> bool,
    /// The family's client program is on PATH.
    pub program: fn(Family) -> bool,
}

/// The real machine.
pub const MACHINE: Installed = Installed {
    socket: |f| f.sockets().iter().any(|p| p.exists()),
    program: |f| on_path(f.program()),
};

/// True if an executable named `program` is in a `PATH` folder.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The process environment.
pub fn env_var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The family from `LDM_LXC`, `LXD_DIR`/`INCUS_DIR`, or what is installed;
/// `env` reads the environment ([`env_var`]).
pub fn choose(env: &dyn Fn(&str) -> Option<OsString>, installed: &Installed) -> Choice {
    let var = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if let Some(program) = env("LDM_LXC").filter(|p| !p.is_empty()) {
        let base = Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let family = if base.contains("incus") {
            Family::Incus
        } else {
            Family::Lxd
        };
        return Choice {
            family,
            program,
            note: None,
        };
    }
    let pick = |family: Family, note: Option<(&'static str, String)>| Choice {
        family,
        program: family.program().into(),
        note,
    };
    if var("LXD_DIR") || (var("LXD_CONF") && !var("INCUS_DIR")) {
        return pick(Family::Lxd, None);
    }
    if var("INCUS_DIR") || var("INCUS_CONF") {
        return pick(Family::Incus, None);
    }
    let has = |f: Family| (installed.socket)(f) || (installed.program)(f);
    match (has(Family::Lxd), has(Family::Incus)) {
        (true, true) => pick(
            Family::Lxd,
            Some((
                "both-lxd-and-incus",
                "both LXD and Incus are installed; using LXD (set LDM_LXC=incus to use Incus)"
                    .into(),
            )),
        ),
        (false, true) => pick(
            Family::Incus,
            Some((
                "incus",
                "LXD is not installed; using Incus (set LDM_LXC to choose)".into(),
            )),
        ),
        _ => pick(Family::Lxd, None),
    }
}

/// One remote of the client's configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Remote {
    /// `unix://`, `unix:///path/to/socket` or `https://host:port`.
    pub addr: String,
    /// `lxd`/`incus` (a server) or `simplestreams` (an image server).
    pub protocol: String,
    /// Readable without a certificate (an image server).
    pub public: bool,
    /// Its current LXD project (`lxc project switch`); empty: `default`.
    pub project: String,
}

/// The client's `config.yml`, the parts ldm uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    #[serde(rename = "default-remote")]
    default_remote: String,
    remotes: BTreeMap<String, Remote>,
}

/// The client's configuration: its folder, remotes and default remote.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The folder (`client.crt`, `servercerts/`); `None` without a home.
    pub dir: Option<PathBuf>,
    /// The default remote (`local` unless the user switched).
    pub default_remote: String,
    /// Every remote, the client's built-in ones included.
    pub remotes: BTreeMap<String, Remote>,
}

/// A damaged or unreadable `config.yml`.
#[derive(Debug)]
pub struct ConfigProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

fn remote(addr: &str, protocol: &str, public: bool) -> Remote {
    Remote {
        addr: addr.into(),
        protocol: protocol.into(),
        public,
        project: String::new(),
    }
}

/// The remotes the client knows without a config file (LXD 5.0's `lxc`,
/// Incus 6.0's `incus`): the local socket and the public image servers.
fn builtin(family: Family) -> BTreeMap<String, Remote> {
    let mut r = BTreeMap::new();
    r.insert(
        "local".into(),
        remote("unix://", family.program_protocol(), false),
    );
    r.insert(
        "images".into(),
        remote("https://images.linuxcontainers.org", "simplestreams", true),
    );
    if family == Family::Lxd {
        r.insert(
            "ubuntu".into(),
            remote(
                "https://cloud-images.ubuntu.com/releases",
                "simplestreams",
                true,
            ),
        );
        r.insert(
            "ubuntu-daily".into(),
            remote(
                "https://cloud-images.ubuntu.com/daily",
                "simplestreams",
                true,
            ),
        );
    }
    r
}

impl Family {
    /// The `protocol` of a remote that is a server of this family.
    fn program_protocol(self) -> &'static str {
        match self {
            Family::Lxd => "lxd",
            Family::Incus => "incus",
        }
    }
}

/// The longest `config.yml` ldm reads (the client's own are a few KiB).
const MAX_CONFIG: u64 = 1 << 20;

impl ClientConfig {
    /// Reads `dir/config.yml`; a missing folder or file is the defaults.
    pub fn read(family: Family, dir: Option<PathBuf>) -> Result<ClientConfig, ConfigProblem> {
        let mut remotes = builtin(family);
        let mut default_remote = "local".to_string();
        if let Some(path) = dir.as_ref().map(|d| d.join("config.yml")) {
            match read_small(&path) {
                Ok(Some(text)) => {
                    let file: ConfigFile =
                        ldm_yaml::from_str(&text).map_err(|e| ConfigProblem {
                            path: path.clone(),
                            why: e.to_string(),
                        })?;
                    if !file.default_remote.is_empty() {
                        default_remote = file.default_remote;
                    }
                    // The file's remotes replace the built-in ones of the
                    // same name; the built-in ones stay available.
                    remotes.extend(file.remotes);
                }
                Ok(None) => {}
                Err(why) => return Err(ConfigProblem { path, why }),
            }
        }
        Ok(ClientConfig {
            dir,
            default_remote,
            remotes,
        })
    }

    /// The file with the server certificate the client pinned for `remote`.
    pub fn server_cert(&self, remote: &str) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join("servercerts")
                .join(format!("{remote}.crt")),
        )
    }

    /// The client certificate and key.
    pub fn client_cert(&self) -> Option<(PathBuf, PathBuf)> {
        let d = self.dir.as_ref()?;
        Some((d.join("client.crt"), d.join("client.key")))
    }
}

/// The file's text, `None` if it does not exist; at most [`MAX_CONFIG`]
/// bytes, valid UTF-8.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(format!("it is larger than {MAX_CONFIG} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "it is not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Installed = Installed {
        socket: |_| false,
        program: |_| false,
    };
    const BOTH: Installed = Installed {
        socket: |_| true,
        program: |_| true,
    };
    const INCUS_ONLY: Installed = Installed {
        socket: |f| f == Family::Incus,
        program: |_| false,
    };

    /// An environment of `pairs` only.
    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
    }

    #[test]
    fn ldm_lxc_names_the_family_by_its_program() {
        let c = choose(&env(&[("LDM_LXC", "incus")]), &NONE);
        assert_eq!((c.family, c.note.is_none()), (Family::Incus, true));
        let c = choose(&env(&[("LDM_LXC", "/usr/local/bin/incus")]), &BOTH);
        assert_eq!(c.family, Family::Incus);
        assert_eq!(c.program, OsString::from("/usr/local/bin/incus"));
        let c = choose(&env(&[("LDM_LXC", "/snap/bin/lxc")]), &INCUS_ONLY);
        assert_eq!(c.family, Family::Lxd);
    }

    #[test]
    fn without_ldm_lxc_the_installed_one_is_used_and_said() {
        let c = choose(&env(&[]), &INCUS_ONLY);
        assert_eq!(c.family, Family::Incus);
        assert_eq!(c.note.as_ref().map(|n| n.0), Some("incus"));
        let c = choose(&env(&[]), &BOTH);
        assert_eq!(c.family, Family::Lxd);
        assert!(c.note.unwrap().1.contains("LDM_LXC=incus"));
        let c = choose(&env(&[]), &NONE);
        assert_eq!((c.family, c.note.is_none()), (Family::Lxd, true));
        // A socket folder named in the environment decides, silently.
        let c = choose(&env(&[("INCUS_DIR", "/x")]), &BOTH);
        assert_eq!((c.family, c.note.is_none()), (Family::Incus, true));
        let c = choose(&env(&[("LXD_DIR", "/x")]), &INCUS_ONLY);
        assert_eq!((c.family, c.note.is_none()), (Family::Lxd, true));
    }

    #[test]
    fn config_yml_adds_remotes_to_the_builtin_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.yml"),
            "default-remote: far\nremotes:\n  far:\n    addr: https://198.51.100.7:8443\n    protocol: lxd\n    project: dev\n  local:\n    addr: unix://\n    public: false\n    project: ptest\naliases: {}\n",
        )
        .unwrap();
        let c = ClientConfig::read(Family::Lxd, Some(dir.path().into())).unwrap();
        assert_eq!(c.default_remote, "far");
        assert_eq!(c.remotes["far"].project, "dev");
        assert_eq!(c.remotes["local"].project, "ptest");
        assert_eq!(c.remotes["ubuntu"].protocol, "simplestreams");
        let none = ClientConfig::read(Family::Incus, Some(dir.path().join("nope"))).unwrap();
        assert_eq!(none.default_remote, "local");
        assert!(!none.remotes.contains_key("ubuntu"));
        std::fs::write(dir.path().join("config.yml"), "remotes: [").unwrap();
        let e = ClientConfig::read(Family::Lxd, Some(dir.path().into())).unwrap_err();
        assert!(e.path.ends_with("config.yml"));
    }
}
