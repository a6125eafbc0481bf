//! Host folders shown in containers, shared by `container create`, `ldm
//! mount`, `ldm up` and `doctor --fix`: whose files the container gets, and
//! how it sees them with its user's ids (DESIGN.md, "Mounts"); which host
//! paths may be mounted is `sources.rs`.
//!
//! Ids: `raw.idmap` mapping the host user to the container user, never
//! LXD's idmapped mounts (`shift=true`, which make the container's root
//! host root inside the mount), host root never; `raw.idmap` is what
//! the kernel's newuidmap allows only when /etc/subuid and
//! /etc/subgid give root that id (`root:UID:1`). That one-time step needs
//! root: ldm says the exact command and leaves the mount out.

// Over 400 lines with its tests (about 110): the id mapping and its
// refusals, with the cases that pin them.

use std::path::{Path, PathBuf};

use crate::commands::idmap;
use crate::commands::op::Progress;
use crate::commands::setup;
use crate::lxd::{Disk, Instance, Lxd, LxdError};
use crate::model::Mount;
use crate::Error;

/// A user and group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The host user whose files the container user gets: the user running
/// ldm, or, when that is root (`sudo ldm`), the owner of the project
/// folder `dir`.
pub fn host_ids(dir: &Path) -> Ids {
    use std::os::unix::fs::MetadataExt;
    let me = Ids {
        uid: ldm_sys::euid(),
        gid: ldm_sys::egid(),
    };
    if me.uid != 0 {
        return me;
    }
    match std::fs::metadata(dir) {
        Ok(m) => Ids {
            uid: m.uid(),
            gid: m.gid(),
        },
        Err(_) => me,
    }
}

/// `raw.idmap` mapping the host user and group to the container's.
pub fn raw_idmap(host: Ids, user: Ids) -> String {
    format!(
        "uid {} {}\ngid {} {}",
        host.uid, user.uid, host.gid, user.gid
    )
}

/// True if `value` is a `raw.idmap` as ldm writes it for `host` (to any
/// container ids): the one a create ldm is making set before the first boot.
pub fn is_own_idmap(value: &str, host: Ids) -> bool {
    let lines: Vec<Vec<&str>> = value
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let is = |l: &Vec<&str>, kind: &str, id: u32| {
        l.len() == 3 && l[0] == kind && l[1] == id.to_string() && l[2].parse::<u32>().is_ok()
    };
    lines.len() == 2 && is(&lines[0], "uid", host.uid) && is(&lines[1], "gid", host.gid)
}

/// True if `text` (an /etc/subuid or /etc/subgid) lets root map `id`.
pub fn subid_allows(text: &str, id: u32) -> bool {
    text.lines().any(|l| {
        let mut f = l.trim().split(':');
        let (Some(who), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else {
            return false;
        };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
            return false;
        };
        (who == "root" || who == "0") && start <= u64::from(id) && u64::from(id) < start + count
    })
}

/// The one-time root command that lets LXD map `host` into containers, or
/// `None` when /etc/subuid and /etc/subgid allow it already.
/// `LDM_SUBID_DIR` replaces /etc for the tests with the LXD test double.
pub fn root_step(host: Ids) -> Option<String> {
    let dir = std::env::var_os("LDM_SUBID_DIR").unwrap_or_else(|| "/etc".into());
    let dir = Path::new(&dir);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let mut lines = Vec::new();
    if !subid_allows(&read("subuid"), host.uid) {
        lines.push(format!("echo root:{}:1 >> /etc/subuid", host.uid));
    }
    if !subid_allows(&read("subgid"), host.gid) {
        lines.push(format!("echo root:{}:1 >> /etc/subgid", host.gid));
    }
    if lines.is_empty() {
        return None;
    }
    Some(format!("sudo sh -c '{}'", lines.join("; ")))
}

/// How a mount was (or could not be) added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    /// Every mount is in place; `how` says which id mapping it uses.
    Done {
        /// `"raw.idmap"` (the only mapping ldm uses now).
        how: &'static str,
        /// The container was restarted to apply `raw.idmap`.
        restarted: bool,
    },
    /// Mounting needs the one-time root step; nothing was changed.
    NeedsRoot {
        /// The command to run as root.
        command: String,
    },
    /// Mapping would join root of one side to the other: the host user is
    /// root (the container would get root's files), or the container user
    /// is root inside (the container's root would run as the host user).
    /// Nothing was changed; the words say which.
    Root(String),
    /// The LXD server is on another machine (the client's default remote
    /// `remote`): the host folders are not there. Nothing was changed.
    Remote {
        /// The remote's name.
        remote: String,
    },
}

/// Why [`Attached::Remote`] mounts nothing, for messages.
pub fn remote_words(remote: &str) -> String {
    format!(
        "the LXD client's default remote is {remote}, a server on another machine, so the host's folders are not there; copy files with `ldm mv`, or make `local` the client's default remote again"
    )
}

/// Why [`Attached::Root`] mounts nothing when the container user of
/// `lxd_name` is root inside (uid or gid 0: an image whose user is root, or
/// `user: root`).
pub fn user_root(lxd_name: &str) -> String {
    format!("the container user of {lxd_name} has uid or gid 0 (root) inside, and mapping your uid to it would run every root process of the container as you on the host, which ldm never does; use an image whose user is not root, or another `user:`")
}

/// Why [`Attached::Root`] mounts nothing when ldm runs as root.
pub const HOST_ROOT: &str = "ldm runs as root and the project folder belongs to root, so its files cannot be mapped to the container user without mapping host root into the container, which ldm never does; run ldm as the folder's owner (a user in group lxd)";

/// What [`attach`] mounts into which instance.
pub struct Target<'a> {
    /// Full LXD name.
    pub lxd_name: &'a str,
    /// The host user whose files the container user gets ([`host_ids`]).
    pub host: Ids,
    /// The container user's ids.
    pub user: Ids,
    /// Each mount with its resolved host folder.
    pub mounts: &'a [(Mount, PathBuf)],
    /// A `raw.idmap` of ldm's form for `host` ([`is_own_idmap`]) is ldm's
    /// own and may be replaced: set by the create being finished, before
    /// its first boot, for ids the container user did not get.
    pub replace_own: bool,
}

/// The disk device of a mount.
pub fn disk(m: &Mount, source: &Path, shift: bool) -> Disk {
    Disk {
        device: m.device_name(),
        source: source.to_string_lossy().into_owned(),
        path: m.path.clone(),
        readonly: m.readonly,
        shift,
    }
}

/// True if `d` is the device of `m` from `source`, as ldm adds it.
pub fn same(d: &Disk, m: &Mount, source: &Path) -> bool {
    // An idmapped device (an older ldm's) is replaced by a plain one.
    !d.shift
        && d.device == m.device_name()
        && Path::new(&d.source) == source
        && d.path == m.path
        && d.readonly == m.readonly
}

/// Adds the mounts LXD does not have yet to `t.lxd_name` with `raw.idmap`
/// (set, and the instance restarted if it runs) when the one-time root
/// step was done. Idempotent: a re-run after a crash finds
/// the devices an earlier run added.
pub fn attach(
    lxd: &dyn Lxd,
    t: &Target,
    wait: std::time::Duration,
    progress: &Progress,
) -> Result<Attached, Error> {
    // A `remote:` project never gets here; the client's default remote may
    // still be another machine, where the same path is another folder.
    if let Some(remote) = lxd
        .remote_server()
        .map_err(Error::lxd("asking the LXD client where its server is"))?
    {
        return Ok(Attached::Remote { remote });
    }
    let inst = instance(lxd, t.lxd_name)?;
    let todo: Vec<&(Mount, PathBuf)> = t
        .mounts
        .iter()
        .filter(|(m, s)| !inst.disks.iter().any(|d| same(d, m, s)))
        .collect();
    let idmap = raw_idmap(t.host, t.user);
    if todo.is_empty() {
        return Ok(Attached::Done {
            how: RAW,
            restarted: false,
        });
    }
    // Host root's files are never shown to a container: mapping host root
    // into it would give the container root's files.
    if t.host.uid == 0 || t.host.gid == 0 {
        return Ok(Attached::Root(HOST_ROOT.into()));
    }
    // Nor is the host user made the container's root: every root process
    // of the container would run as the host user on the host.
    if t.user.uid == 0 || t.user.gid == 0 {
        return Ok(Attached::Root(user_root(t.lxd_name)));
    }
    // A device at the same name with other values is an older mount at
    // this path: replace it.
    for (m, _) in &todo {
        if inst.disks.iter().any(|d| d.device == m.device_name()) {
            remove(lxd, t.lxd_name, &m.device_name())?;
        }
    }
    // Never an idmapped mount (`shift=true`): it maps every id of the
    // container onto the same id on the host inside the mount, so the
    // container's root would create files there as host root (a set-user-id
    // root shell in the project folder: seen on Incus 6.0.4), whoever owns
    // the source. `raw.idmap` maps the host user alone; the container's
    // root stays an unprivileged id on the host.
    let use_raw = inst.raw_idmap.as_deref() == Some(idmap.as_str());
    let mut restarted = false;
    // Set by an earlier run that stopped before its restart, raw.idmap is
    // not in effect yet: the files would show as nobody's.
    let stale =
        use_raw && inst.is_running() && idmap::in_effect(&inst, t.host, t.user) == Some(false);
    if !use_raw {
        if let Some(other) = inst
            .raw_idmap
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .filter(|v| !(t.replace_own && is_own_idmap(v, t.host)))
        {
            return Err(Error::Conflict {
                what: format!(
                    "{} has raw.idmap set to {:?}, and ldm would set {:?}",
                    t.lxd_name, other, idmap
                ),
                next: format!(
                    "unset it (`lxc config unset {} raw.idmap`) and run the command again",
                    t.lxd_name
                ),
            });
        }
        if let Some(command) = root_step(t.host) {
            return Ok(Attached::NeedsRoot { command });
        }
        progress.note(&format!(
            "mapping host uid {} to uid {} in {} (raw.idmap)",
            t.host.uid, t.user.uid, t.lxd_name
        ));
        lxd.set_config(t.lxd_name, "raw.idmap", &idmap)
            .map_err(Error::lxd(format!("setting raw.idmap of {}", t.lxd_name)))?;
    }
    if inst.is_running() && (!use_raw || stale) {
        let why = if stale {
            "raw.idmap is set but not in effect (an earlier run stopped before restarting it)"
        } else {
            "to apply it"
        };
        progress.note(&format!("restarting {} {why}", t.lxd_name));
        if let Err(e) = lxd.restart(t.lxd_name) {
            // LXD would not start it with the mapping: put it back as it
            // was, running, before saying so; say so only if it was.
            let back = idmap::set_back(lxd, t.lxd_name);
            return Err(Error::lxd(format!(
                "restarting {} with raw.idmap {idmap:?} ({back})",
                t.lxd_name
            ))(e));
        }
        setup::wait_ready(lxd, t.lxd_name, wait, "")?;
        restarted = true;
    }
    for (m, s) in &todo {
        add(lxd, t.lxd_name, &disk(m, s, false))?;
    }
    Ok(Attached::Done {
        how: RAW,
        restarted,
    })
}

const RAW: &str = "raw.idmap";

fn instance(lxd: &dyn Lxd, lxd_name: &str) -> Result<Instance, Error> {
    crate::commands::op::instance(lxd, lxd_name)
}

fn add(lxd: &dyn Lxd, lxd_name: &str, d: &Disk) -> Result<(), Error> {
    match lxd.add_disk(lxd_name, d) {
        Ok(()) | Err(LxdError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(Error::lxd(format!("mounting {} in {lxd_name}", d.source))(
            e,
        )),
    }
}

/// Removes device `device`; one LXD no longer has is gone already.
pub fn remove(lxd: &dyn Lxd, lxd_name: &str, device: &str) -> Result<(), Error> {
    match lxd.remove_device(lxd_name, device) {
        Ok(()) | Err(LxdError::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::lxd(format!(
            "removing device {device} of {lxd_name}"
        ))(e)),
    }
}

/// The container user's ids (`id -u`, `id -g` inside).
pub fn user_ids(lxd: &dyn Lxd, lxd_name: &str, user: &str) -> Result<Ids, Error> {
    let argv = ["sh", "-c", r#"id -u "$1" && id -g "$1""#, "sh", user];
    let out = setup::exec_when_ready(
        lxd,
        lxd_name,
        &argv,
        b"",
        std::time::Duration::from_secs(30),
    )
    .map_err(Error::lxd(format!(
        "reading the ids of {user} in {lxd_name}"
    )))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text.split_whitespace().map(str::parse::<u32>);
    match (out.code, nums.next(), nums.next()) {
        (0, Some(Ok(uid)), Some(Ok(gid))) => Ok(Ids { uid, gid }),
        _ => Err(Error::InContainer {
            doing: format!("reading the ids of user {user}"),
            instance: lxd_name.to_string(),
            code: out.code,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            hint: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 3 of issue 22 and finding 1 of its review: an idmapped
    /// mount (shift=true) lets the container's root create files as host
    /// root in it (a set-user-id root shell), so it is never used, not even
    /// on the host user's own files with the container user at the host
    /// user's ids, where LXD would take it; never for host root either.
    #[test]
    fn mounts_are_never_idmapped_and_never_for_host_root() {
        use crate::lxd::double::Served;
        use crate::lxd::Lxd;
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let owner = std::fs::metadata(&src).unwrap().uid();
        let m = Mount::parse("src:/srv/src").unwrap();
        let mounts = [(m, src.clone())];
        let attach_as = |host: u32, user: u32, old_shifted: bool| {
            let served = Served::new();
            served.seed("p-a", lxd_double::Instance::running());
            let lxd = served.api();
            let shifted = || {
                let inst = served.double.instance("default", "p-a").unwrap();
                inst.devices
                    .values()
                    .any(|d| d.get("shift").is_some_and(|v| v == "true"))
            };
            if old_shifted {
                lxd.add_disk("p-a", &disk(&mounts[0].0, &src, true))
                    .unwrap();
                assert!(shifted());
            }
            let t = Target {
                lxd_name: "p-a",
                host: Ids {
                    uid: host,
                    gid: host,
                },
                user: Ids {
                    uid: user,
                    gid: user,
                },
                mounts: &mounts,
                replace_own: false,
            };
            let progress = Progress::new(true, 0);
            let r = attach(&lxd, &t, std::time::Duration::from_secs(1), &progress).unwrap();
            // What the server holds, not what the client says.
            (r, shifted())
        };
        // The owner's source, the container user with the owner's ids:
        // raw.idmap (here it needs the one-time root step), no shift.
        for (host, user) in [(owner, owner), (owner + 1, owner + 1), (owner, owner + 7)] {
            let (r, shifted) = attach_as(host.max(1), user.max(1), false);
            assert!(!shifted, "{r:?}");
        }
        // An older ldm's idmapped device is taken away, never kept.
        let (r, shifted) = attach_as(owner.max(1), owner.max(1), true);
        assert!(!shifted, "{r:?}");
        let (r, shifted) = attach_as(0, 0, false);
        assert!(!shifted && r == Attached::Root(HOST_ROOT.into()), "{r:?}");
    }

    #[test]
    fn subid_ranges_are_read_as_newuidmap_does() {
        let text = "_lxd:100000:10000001\nroot:100000:10000001\nroot:1001:1\n";
        assert!(subid_allows(text, 1001));
        assert!(subid_allows(text, 100000));
        assert!(!subid_allows(text, 1000));
        assert!(!subid_allows("ann:1000:1\n", 1000));
        assert!(!subid_allows("garbage\nroot:x:1\n", 1000));
    }

    #[test]
    fn only_ldms_own_form_for_this_host_user_is_its_own() {
        let host = Ids {
            uid: 1001,
            gid: 1002,
        };
        assert!(is_own_idmap("uid 1001 1000\ngid 1002 1000", host));
        for other in [
            "uid 1001 1000\ngid 1003 1000",
            "uid 1000 1000\ngid 1002 1000",
            "both 1001 1000",
            "uid 1001 1000",
            "uid 1001 1000\ngid 1002 1000\nuid 0 0",
            "uid 1001 x\ngid 1002 1000",
        ] {
            assert!(!is_own_idmap(other, host), "{other:?}");
        }
    }

    #[test]
    fn the_idmap_maps_uid_and_gid_once_each() {
        let v = raw_idmap(
            Ids {
                uid: 1001,
                gid: 1002,
            },
            Ids {
                uid: 1000,
                gid: 1000,
            },
        );
        assert_eq!(v, "uid 1001 1000\ngid 1002 1000");
    }
}
