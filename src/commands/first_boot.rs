//! Mounting without a second boot (DESIGN.md, "Mounts"): a new container
//! that gets mounts is created stopped with `raw.idmap` already mapping the
//! host user to the uid and gid ldm chose for the container user, so its
//! first boot is the only one. LXD applies `raw.idmap` only at a start:
//! set after the first boot it cost a restart (2-2.7 s on LXD 5.0.2).
//!
//! The ids are chosen before anything runs in the container: the host
//! user's when the image's `/etc/passwd` and `/etc/group` (read through the
//! files API from the stopped instance) do not use them, else the first
//! free ones from 1000; the container user is then made with them. The
//! create request carries the mapping for the host user's own ids, so an
//! image that does not use them (the common case) is never remapped; one
//! that does gets the corrected `raw.idmap` before its first start (LXD
//! then shifts the container's files once, at that start).

use std::collections::BTreeSet;
use std::path::Path;

use crate::commands::idmap;
use crate::commands::mounts::{self, Ids};
use crate::commands::op::{self, Progress};
use crate::lxd::{Lxd, LxdError};
use crate::Error;

/// The lowest id `useradd` gives a user (Debian's `UID_MIN`).
const FIRST: u32 = 1000;
/// The highest (`UID_MAX`): a host id above it is not reused inside.
const LAST: u32 = 60000;
/// How much of `/etc/passwd` and `/etc/group` ldm reads.
const LIMIT: u64 = 1 << 20;
/// Where an image has cloud-init, whose default user (Ubuntu's cloud
/// images make `ubuntu` at first boot) takes the first free id.
const CLOUD_INIT: &str = "/usr/bin/cloud-init";

/// The ids the container user `user` gets in an image whose files are
/// `passwd` and `group`: its own if the image has the user; else the host
/// user's `host` where the image does not use them, else the first free
/// ones from 1000. With `first_boot_user` (cloud-init), the first free
/// id is left to the user the image makes at its first boot.
pub fn choose(passwd: &str, group: &str, user: &str, host: Ids, first_boot_user: bool) -> Ids {
    let fields = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
            .collect()
    };
    let (users, groups) = (fields(passwd), fields(group));
    let num = |f: &[String], i: usize| f.get(i).and_then(|v| v.parse::<u32>().ok());
    if let Some(u) = users.iter().find(|f| f[0] == user) {
        if let (Some(uid), Some(gid)) = (num(u, 2), num(u, 3)) {
            return Ids { uid, gid };
        }
    }
    let mut uids: BTreeSet<u32> = users.iter().filter_map(|f| num(f, 2)).collect();
    let mut gids: BTreeSet<u32> = groups.iter().filter_map(|f| num(f, 2)).collect();
    gids.extend(users.iter().filter_map(|f| num(f, 3)));
    let free = |used: &BTreeSet<u32>| (FIRST..).find(|i| !used.contains(i)).unwrap_or(FIRST);
    if first_boot_user {
        uids.insert(free(&uids));
        gids.insert(free(&gids));
    }
    let pick = |want: u32, used: &BTreeSet<u32>| {
        if (FIRST..=LAST).contains(&want) && !used.contains(&want) {
            want
        } else {
            free(used)
        }
    };
    let gid = match groups.iter().find(|f| f[0] == user).and_then(|f| num(f, 2)) {
        Some(g) => g,
        None => pick(host.gid, &gids),
    };
    Ids {
        uid: pick(host.uid, &uids),
        gid,
    }
}

/// The host user whose files a new container's mounts show, when they can
/// be mapped before its first boot: a local server, a host user who is not
/// root, and the one-time root step done. `None`: the create takes the
/// usual way, and mounting says why (or mounts nothing).
pub fn host_for(lxd: &dyn Lxd, dir: &Path) -> Result<Option<Ids>, Error> {
    let host = mounts::host_ids(dir);
    if host.uid == 0 || host.gid == 0 || mounts::root_step(host).is_some() {
        return Ok(None);
    }
    if lxd
        .remote_server()
        .map_err(Error::lxd("asking the LXD client where its server is"))?
        .is_some()
    {
        return Ok(None);
    }
    Ok(Some(host))
}

/// Creates `lxd_name` stopped, with `raw.idmap` mapping `host` to the ids
/// `user` gets in an image that does not use the host user's.
pub fn create(
    lxd: &dyn Lxd,
    image: &str,
    lxd_name: &str,
    config: &[(&str, &str)],
    host: Ids,
    user: &str,
) -> Result<(), LxdError> {
    let map = mounts::raw_idmap(host, choose("", "", user, host, false));
    let mut all = config.to_vec();
    all.push(("raw.idmap", &map));
    lxd.create(image, lxd_name, &all)
}

/// How a launch maps the host user before the first boot, for a container
/// that gets mounts ([`host_for`]).
pub struct OneBoot {
    /// The host user the mounts show.
    pub host: Ids,
    /// No stderr lines (`-q`).
    pub quiet: bool,
}

/// What is known of the instance when [`start`] is called.
pub enum Known {
    /// Just made by [`create`]: stopped, with its `raw.idmap`.
    Created,
    /// Made by an earlier, interrupted run: asked.
    Ask,
}

/// Chooses the container user's ids from the image's files, corrects
/// `raw.idmap` if the image uses the host user's, and starts the instance
/// (when stopped). Returns the ids `user` is to be made with; `None` when
/// they cannot be chosen (the image's `/etc/passwd` unreadable): then the
/// instance starts without `raw.idmap`, a stderr line says why, and
/// mounting restarts it later as before.
pub fn start(
    lxd: &dyn Lxd,
    lxd_name: &str,
    ob: &OneBoot,
    user: &str,
    known: Known,
    progress: &Progress,
    hint: &str,
) -> Result<Option<Ids>, Error> {
    let (host, quiet) = (ob.host, ob.quiet);
    let guess = mounts::raw_idmap(host, choose("", "", user, host, false));
    let read = image_ids(lxd, lxd_name, user, host);
    let (running, current) = match known {
        Known::Created => (false, Some(guess)),
        Known::Ask => {
            let inst = op::instance(lxd, lxd_name)?;
            (inst.is_running(), inst.raw_idmap)
        }
    };
    let current = current.filter(|v| !v.trim().is_empty());
    let ours = current
        .as_deref()
        .is_none_or(|v| mounts::is_own_idmap(v, host));
    let planned = match read {
        Ok(ids) => Some(ids),
        Err(why) => {
            if !quiet {
                eprintln!(
                    "note: {lxd_name}: the container user's ids cannot be chosen before its first boot ({why}); mounting restarts it once to apply raw.idmap"
                );
            }
            None
        }
    };
    if !running {
        let want = planned.map(|ids| mounts::raw_idmap(host, ids));
        // Another's raw.idmap stays for mounting to name; ldm's own is
        // made what the chosen ids need, or taken away when none are.
        if ours && want != current {
            if let Some(ids) = planned {
                progress.note(&format!(
                    "the image uses uid {} or gid {}: {user} gets uid {} gid {} (raw.idmap; the first start shifts the container's files once)",
                    host.uid, host.gid, ids.uid, ids.gid
                ));
            }
            let value = want.as_deref().unwrap_or("");
            lxd.set_config(lxd_name, "raw.idmap", value)
                .map_err(Error::lxd(format!("setting raw.idmap of {lxd_name}{hint}")))?;
        }
        if let Err(e) = lxd.start(lxd_name) {
            if matches!(e, LxdError::AlreadyInState { .. }) {
                return Ok(planned);
            }
            // Not with the mapping, perhaps: start it without, as a
            // failed restart with raw.idmap does, and say what became of it.
            let back = idmap::set_back(lxd, lxd_name);
            return Err(Error::lxd(format!(
                "starting {lxd_name} with raw.idmap {:?} ({back}){hint}",
                want.unwrap_or_default()
            ))(e));
        }
    }
    Ok(planned)
}

/// The ids `user` gets in `lxd_name`'s image (its files read through the
/// files API, which a stopped container allows); `Err` says why not.
fn image_ids(lxd: &dyn Lxd, lxd_name: &str, user: &str, host: Ids) -> Result<Ids, String> {
    let read = |path: &str| {
        lxd.read_file(lxd_name, path, LIMIT)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("reading the image's {path}: {e}"))
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    let cloud_init = match lxd.read_file(lxd_name, CLOUD_INIT, LIMIT) {
        Err(LxdError::NotFound { .. }) => false,
        Ok(_) | Err(LxdError::Protocol { .. }) => true,
        Err(e) => return Err(format!("looking for {CLOUD_INIT} in the image: {e}")),
    };
    let ids = choose(&passwd, &group, user, host, cloud_init);
    if ids.uid == 0 || ids.gid == 0 {
        // Never mapped (mounts::attach says why, after the boot).
        return Err(format!("the image's {user} is root (uid or gid 0)"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Ids = Ids {
        uid: 1001,
        gid: 1002,
    };
    const DEBIAN: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const DEBIAN_GROUPS: &str = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n";

    fn ids(uid: u32, gid: u32) -> Ids {
        Ids { uid, gid }
    }

    #[test]
    fn the_host_users_ids_when_the_image_does_not_use_them() {
        assert_eq!(choose(DEBIAN, DEBIAN_GROUPS, "dev", HOST, false), HOST);
        assert_eq!(choose("", "", "dev", HOST, false), HOST);
    }

    #[test]
    fn ids_the_image_uses_give_the_first_free_ones_from_1000() {
        let passwd = format!("{DEBIAN}ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\nann:x:1001:1001::/home/ann:/bin/sh\n");
        let group = format!("{DEBIAN_GROUPS}ubuntu:x:1000:\nann:x:1001:\nstaff:x:1002:\n");
        assert_eq!(choose(&passwd, &group, "dev", HOST, false), ids(1002, 1003));
        // A user's primary gid counts as used even without its group line.
        let passwd = "a:x:1001:1002::/:/bin/sh\n";
        assert_eq!(choose(passwd, "", "dev", HOST, false), ids(1000, 1000));
    }

    #[test]
    fn a_user_the_image_has_keeps_its_ids_and_a_group_of_its_name_its_gid() {
        let passwd = format!("{DEBIAN}dev:x:1500:1600::/home/dev:/bin/bash\n");
        assert_eq!(
            choose(&passwd, DEBIAN_GROUPS, "dev", HOST, false),
            ids(1500, 1600)
        );
        let group = format!("{DEBIAN_GROUPS}dev:x:1700:\n");
        assert_eq!(choose(DEBIAN, &group, "dev", HOST, false), ids(1001, 1700));
    }

    #[test]
    fn host_ids_outside_the_user_range_are_not_reused() {
        for host in [ids(0, 0), ids(500, 500), ids(70000, 70000)] {
            assert_eq!(
                choose(DEBIAN, DEBIAN_GROUPS, "dev", host, false),
                ids(1000, 1000)
            );
        }
    }

    #[test]
    fn with_cloud_init_the_first_free_id_is_left_to_its_user() {
        let host = ids(1000, 1000);
        assert_eq!(
            choose(DEBIAN, DEBIAN_GROUPS, "dev", host, true),
            ids(1001, 1001)
        );
        assert_eq!(choose(DEBIAN, DEBIAN_GROUPS, "dev", HOST, true), HOST);
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let passwd = "garbage\n::\nx:y:notanumber:1\n\u{0}\n";
        assert_eq!(choose(passwd, "zz", "dev", HOST, false), HOST);
    }
}
