//! A TEST DOUBLE of LXD's REST API (LXD 5.0.2, or Incus 6.0.4), for ldm's
//! tests: a small HTTP server on `DIR/unix.socket`, so ldm pointed at it
//! with `LXD_DIR=DIR` speaks to it as to LXD.
//!
//! It is not LXD. It keeps a server state in memory ([`State`]: projects,
//! instances with status, config, devices, snapshots, addresses and files;
//! images and aliases; profiles), answers the subset of the API ldm speaks
//! (/work/notes/api-catalogue.md) with LXD's shapes, status codes and
//! texts, runs async requests as operations ([`Operation`]) and exec
//! commands over websockets as rules say ([`ExecRule`]), and logs every
//! request ([`Request`], with the pid of the process that sent it).
//!
//! The test drives it from its own process at any time: it seeds and
//! inspects the state ([`Double::state`]), makes requests slow, fail or
//! hang ([`Match`], [`HangAt`]), keeps an instance busy with an operation
//! ([`Double::busy`]), or plays a server without idmapped mounts or of the
//! other family. Dropping the double stops it.
//!
//! ```
//! use std::time::Duration;
//! use lxd_double::{Double, HangAt, Instance, Match};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let double = Double::start(dir.path()).unwrap();
//! double.seed("default", "p-dev", Instance::running().snapshot("initial-state"));
//! double.slow(Match::new("PUT", "/1.0/instances/*/state"), Duration::from_secs(2));
//! double.hang(Match::new("DELETE", "/1.0/instances/*").nth(1), HangAt::Request);
//! // Run ldm with LXD_DIR=dir (and LXD_CONF holding Double::client_config),
//! // then look at what it asked and what the server holds:
//! assert!(double.requests().is_empty());
//! assert_eq!(double.instance("default", "p-dev").unwrap().snapshot_names(), ["initial-state"]);
//! ```
//!
//! An instance made from an image starts with the image's files
//! ([`Image::file`]; a small Linux root without `/etc/passwd` unless the
//! test writes one), and its files can be read while it is stopped, as
//! LXD 5.0.2 and Incus 6.0.4 allow.
//!
//! Where LXD's spec is silent, LXD 5.0.2 as it answered on this machine
//! decided (status codes, texts, which refusals are HTTP errors and which
//! are failed operations); /work/notes/api-catalogue.md's "Additions" lists
//! what was found.
//!
//! HTTPS ([`Double::serve_https`]) is a TLS front end to the same socket,
//! with a fixed TEST-ONLY certificate and no authentication.
//!
//! Not modelled: authentication and trust (`/1.0/certificates`);
//! virtual machines, storage, networks beyond one `eth0` address, clusters,
//! `/1.0/events`, backups, logs, console, migration, image upload and copy
//! between servers; moving instances (`POST /1.0/instances/NAME` with
//! `migration`; a plain rename is modelled) and renaming snapshots, stateful snapshots,
//! expiry; writing profiles; following symlinks inside an instance's files;
//! commands changing the state (an exec rule only answers); `record-output`
//! and window sizes; cancelling (no operation of the double can be
//! cancelled, as most of LXD's). The ETag is a stable hash of what a PUT
//! can change, not LXD's own digest.

mod api;
mod config;
mod control;
mod exec;
mod files;
mod http;
mod knobs;
mod log;
mod model;
mod operation;
mod ops;
mod render;
mod rules;
mod server;
mod shared;
mod state;
mod tls;
mod util;
mod ws;

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use exec::{Exec, ExecRule};
pub use files::{Files, Kind, Node};
pub use knobs::{HangAt, Match};
pub use log::{Body, Request};
pub use model::{Device, Image, Instance, Profile, Snapshot, Status};
pub use operation::{Action, OpStatus, Operation};
pub use shared::Hang;
pub use state::{Behaviour, Family, Project, Server, State};
pub use tls::{CLIENT_CRT, CLIENT_KEY, SERVER_CRT};

use shared::{Inner, Shared};

/// How long an operation the test starts stays running.
#[derive(Debug, Clone, Copy)]
pub enum Hold {
    /// This long.
    For(Duration),
    /// Until [`Double::release_operation`].
    UntilReleased,
}

/// A running double.
pub struct Double {
    shared: Arc<Shared>,
    dir: PathBuf,
    socket: PathBuf,
    accept: Option<JoinHandle<()>>,
    /// The HTTPS addresses it also serves ([`Double::serve_https`]).
    https: std::sync::Mutex<Vec<std::net::SocketAddr>>,
}

/// The state, locked; changes are seen by the next request.
pub struct StateGuard<'a> {
    g: MutexGuard<'a, Inner>,
    shared: &'a Shared,
}

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.g.state
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.g.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.shared.notify();
    }
}

impl Double {
    /// An LXD 5.0.2 listening on `dir/unix.socket`.
    pub fn start(dir: &Path) -> io::Result<Double> {
        Double::start_with(dir, State::new(Family::Lxd))
    }

    /// A double with `state`, listening on `dir/unix.socket`.
    pub fn start_with(dir: &Path, state: State) -> io::Result<Double> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("unix.socket");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let shared = Arc::new(Shared::new(state));
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || server::accept_loop(s, listener));
        Ok(Double {
            shared,
            dir: dir.to_path_buf(),
            socket,
            accept: Some(accept),
            https: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The folder it serves (`LXD_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The state, locked until the guard drops.
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard {
            g: self.shared.lock(),
            shared: &self.shared,
        }
    }

    /// A copy of instance `name` of `project`.
    pub fn instance(&self, project: &str, name: &str) -> Option<Instance> {
        self.state().instance(project, name).cloned()
    }

    /// Puts `inst` into `project` (made, with every feature on, if
    /// missing). A running one without an address gets one.
    pub fn seed(&self, project: &str, name: &str, mut inst: Instance) {
        let mut st = self.state();
        if inst.is_running() {
            if inst.ipv4.is_none() {
                inst.ipv4 = Some(st.alloc_ip());
            }
            if inst.pid == 0 {
                inst.pid = 4000 + (util::hash64(name) % 1000) as u32;
            }
        }
        st.projects
            .entry(project.into())
            .or_insert_with(|| Project::new(all_features()))
            .instances
            .insert(name.into(), inst);
    }

    /// Adds `img` to the images `project` sees.
    pub fn add_image(&self, project: &str, img: Image) {
        if let Some(images) = self.state().images_mut(project) {
            images.push(img);
        }
    }

    /// Adds LXD project `name` with `config` (features not named are on).
    pub fn add_project(&self, name: &str, config: &[(&str, &str)]) {
        let mut c = all_features();
        c.extend(config.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.state().projects.insert(name.into(), Project::new(c));
    }

    /// Plays a server that cannot idmap mounts: `GET /1.0` says so and a
    /// disk with `shift=true` fails to start.
    pub fn no_shift(&self) {
        let mut st = self.state();
        st.server.idmapped_mounts_reported = false;
        st.server.shift_works = false;
    }

    /// Plays LXD or Incus.
    pub fn set_family(&self, family: Family) {
        self.state().server = Server::new(family);
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().log.clone()
    }

    /// Every request so far, forgotten.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.shared.lock().log)
    }

    /// Every command run so far.
    pub fn execs(&self) -> Vec<Exec> {
        self.shared.lock().execs.clone()
    }

    /// Every operation so far (finished ones too, however old).
    pub fn operations(&self) -> Vec<Operation> {
        self.shared.lock().ops.clone()
    }

    /// Waits up to `limit` until no operation runs; true if none does.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let g = self.shared.lock();
        let busy = |i: &Inner| i.ops.iter().any(Operation::is_running);
        let g = self
            .shared
            .wait_while(g, Some(Instant::now() + limit), busy);
        !busy(&g)
    }
}

fn all_features() -> std::collections::BTreeMap<String, String> {
    [
        "features.images",
        "features.profiles",
        "features.storage.volumes",
    ]
    .map(|k| (k.to_string(), "true".to_string()))
    .into()
}

impl Drop for Double {
    fn drop(&mut self) {
        self.shared.set_stopping();
        {
            let mut g = self.shared.lock();
            for h in &mut g.hangs {
                h.released = true;
            }
            for (_, c) in std::mem::take(&mut g.conns) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            self.shared.notify();
        }
        // Wake the accept loops so they see the stop.
        let _ = UnixStream::connect(&self.socket);
        for a in self.https.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::net::TcpStream::connect(a);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
