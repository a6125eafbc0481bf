//! Whether `raw.idmap` is in effect in a running instance, and putting it
//! back after a restart that failed (DESIGN.md, "Mounts"). LXD applies
//! `raw.idmap` only at a start: a run that set it and died before its
//! restart leaves an instance whose mounts would show the host user's
//! files as nobody's.

use crate::commands::mounts::Ids;
use crate::lxd::{Instance, Lxd, LxdError};

/// Whether the id map `inst` runs with (`volatile.idmap.current`) maps
/// `host` to `user`, uid and gid; `None` when LXD does not say.
pub fn in_effect(inst: &Instance, host: Ids, user: Ids) -> Option<bool> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(inst.idmap_current.as_deref()?).ok()?;
    let maps = |kind: &str, h: u32, u: u32| {
        entries.iter().any(|e| {
            let (Some(hostid), Some(nsid), Some(range)) = (
                e["Hostid"].as_i64(),
                e["Nsid"].as_i64(),
                e["Maprange"].as_i64(),
            ) else {
                return false;
            };
            let (h, u) = (i64::from(h), i64::from(u));
            e[kind] == true && hostid <= h && h < hostid + range && nsid + (h - hostid) == u
        })
    };
    Some(maps("Isuid", host.uid, user.uid) && maps("Isgid", host.gid, user.gid))
}

/// After a failed restart with raw.idmap: unsets it and starts the
/// instance again; says what became of it, for the error.
pub fn set_back(lxd: &dyn Lxd, lxd_name: &str) -> String {
    let unset = lxd.set_config(lxd_name, "raw.idmap", "");
    let started = match lxd.start(lxd_name) {
        Err(LxdError::AlreadyInState { .. }) => Ok(()),
        r => r,
    };
    match (unset, started) {
        (Ok(()), Ok(())) => "it was set back and the container started again".into(),
        (Err(e), _) => format!(
            "setting it back failed too: {e}; run `lxc config unset {lxd_name} raw.idmap` and `lxc start {lxd_name}`"
        ),
        (Ok(()), Err(e)) => format!(
            "it was set back, but starting the container again failed: {e}; run `lxc start {lxd_name}`"
        ),
    }
}
