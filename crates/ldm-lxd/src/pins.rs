//! Where each of a checkout's containers was made: the server (how the
//! client reached it: its socket, or its HTTPS address, never the remote's
//! name alone) and the LXD project. Kept in the user's own state folder
//! (`checkouts/ID/where/INSTANCE`, one small file each, so parallel
//! creates never race), not in the project folder: a copy or a clone has
//! no record and makes its own containers, while this checkout, after
//! `lxc remote switch`, is told where its containers are instead of losing
//! or re-creating them. DESIGN.md, "Ownership".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Target;
use ldm_user_state::{self as user_state, CheckoutId, UserDirs};

/// Where one container was made, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The server's identity ([`Target::server`]).
    pub server: String,
    /// The server in words ([`Target::what`]).
    pub what: String,
    /// The command that makes it the client's default again.
    pub switch: String,
    /// The LXD project.
    pub project: String,
}

impl Pin {
    /// The record of a container made at `t`.
    pub fn at(t: &Target) -> Pin {
        Pin {
            server: t.server.clone(),
            what: t.what.clone(),
            switch: t.switch.clone(),
            project: t.project.clone(),
        }
    }
}

/// The records of one checkout.
pub struct Pins {
    dir: Option<PathBuf>,
}

impl Pins {
    /// Checkout `checkout`'s records (none when the user's folders are
    /// unknown: nothing is recorded or checked).
    pub fn of(users: Option<&UserDirs>, checkout: &str) -> Pins {
        let dir = users.zip(CheckoutId::parse(checkout)).and_then(|(u, id)| {
            let d = u.checkout_state(id).ok()?.join("where");
            user_state::make_dir(&d).ok()?;
            Some(d)
        });
        Pins { dir }
    }

    fn file(&self, instance: &str) -> Option<PathBuf> {
        let ok = !instance.is_empty()
            && instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        self.dir.as_ref().filter(|_| ok).map(|d| d.join(instance))
    }

    /// Records that `instance` is at `pin`; best effort (a record that
    /// cannot be written only loses the check it allows later).
    pub fn record(&self, instance: &str, pin: &Pin) {
        let Some(path) = self.file(instance) else {
            return;
        };
        if read(&path).as_ref() == Some(pin) {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(pin) {
            let _ = user_state::replace(&path, &bytes);
        }
    }

    /// Forgets `instance` (deleted, or renamed away).
    pub fn forget(&self, instance: &str) {
        if let Some(path) = self.file(instance) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Every record, by instance name.
    pub fn all(&self) -> Vec<(String, Pin)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Pin)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let pin = read(&self.file(&name)?)?;
                Some((name, pin))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn read(path: &Path) -> Option<Pin> {
    let bytes = user_state::read_small(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(server: &str) -> Target {
        Target {
            server: server.into(),
            what: format!("remote `x` ({server})"),
            switch: "lxc remote switch x".into(),
            project: "default".into(),
        }
    }

    #[test]
    fn records_are_per_checkout_and_per_instance() {
        let tmp = tempfile::tempdir().unwrap();
        let users = UserDirs::in_dir(tmp.path());
        let id = users.checkout(tmp.path()).unwrap().id.to_string();
        let pins = Pins::of(Some(&users), &id);
        pins.record("p-a", &Pin::at(&target("/s1")));
        pins.record("p-b", &Pin::at(&target("/s2")));
        pins.record("../evil", &Pin::at(&target("/s3")));
        let all = pins.all();
        assert_eq!(
            all.iter()
                .map(|(n, p)| (n.as_str(), p.server.as_str()))
                .collect::<Vec<_>>(),
            [("p-a", "/s1"), ("p-b", "/s2")]
        );
        pins.forget("p-a");
        assert_eq!(pins.all().len(), 1);
        let other = Pins::of(Some(&users), &"0".repeat(32));
        assert!(other.all().is_empty());
        assert!(Pins::of(None, &id).all().is_empty());
    }
}
