//! The API TEST DOUBLE (`crates/lxd-double`) for unit tests: a double
//! listening in a fresh folder, and API clients ([`Api`]) on its socket.
//! Unit tests of command logic speak to the same fake of LXD as the
//! command tests in `tests/`, through the real backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lxd_double::{Double, Instance};

use super::api::{Api, Patience};
use super::wait::OnWait;

/// A running double and its folder.
pub struct Served {
    /// The double: seed, inspect and tune it.
    pub double: Double,
    // Dropped after the double: its socket is in here.
    _dir: tempfile::TempDir,
}

impl Default for Served {
    fn default() -> Served {
        Served::new()
    }
}

/// The instances a client told its wait about, `"NAME DOING"`, in order.
pub type Told = Arc<Mutex<Vec<String>>>;

impl Served {
    /// A double (LXD 5.0.2) with nothing in it but project `default`.
    pub fn new() -> Served {
        let dir = tempfile::tempdir().expect("temporary folder");
        let double = Double::start(&dir.path().join("lxd")).expect("start the double");
        Served { double, _dir: dir }
    }

    /// Puts `inst` as `name` into LXD project `default`.
    pub fn seed(&self, name: &str, inst: Instance) -> &Served {
        self.double.seed("default", name, inst);
        self
    }

    /// A client of remote `remote` (default `local`; any name reaches this
    /// double) whose calls on an instance wait up to `limit` for other
    /// operations on it, telling `on_wait`.
    pub fn api_for(&self, remote: Option<&str>, limit: Duration, on_wait: OnWait) -> Api {
        Api::on_socket(self.double.socket(), remote, Patience::new(limit, on_wait))
    }

    /// A client that waits up to `limit`, and what it told its wait.
    pub fn api_told(&self, limit: Duration) -> (Api, Told) {
        let told: Told = Arc::default();
        let t = Arc::clone(&told);
        let on_wait: OnWait = Box::new(move |name, doing| {
            t.lock()
                .unwrap()
                .push(format!("{name} {}", doing.unwrap_or("busy")))
        });
        (self.api_for(None, limit, on_wait), told)
    }

    /// A client that waits up to 30 s, silently.
    pub fn api(&self) -> Api {
        self.api_for(None, Duration::from_secs(30), Box::new(|_, _| {}))
    }

    /// The requests so far, `METHOD PATH` (no query), in order.
    pub fn calls(&self) -> Vec<String> {
        self.double
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }

    /// The requests so far as [`Served::calls`], without the waits for
    /// and websockets of operations (`GET /1.0/operations/ID/...`): what
    /// was asked, not how its answer was awaited.
    pub fn acts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET /1.0/operations/"))
            .collect()
    }

    /// The requests since the last [`Served::take_calls`], as
    /// [`Served::calls`], forgotten.
    pub fn take_calls(&self) -> Vec<String> {
        self.double
            .take_requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect()
    }
}
