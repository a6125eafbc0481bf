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
//! Where LXD's spec is silent, LXD 5.0.2 as it answered on this machine
//! decided (status codes, texts, which refusals are HTTP errors and which
//! are failed operations); /work/notes/api-catalogue.md's "Additions" lists
//! what was found.
//!
//! Not modelled: HTTPS remotes and authentication (only the unix socket);
//! virtual machines, storage, networks beyond one `eth0` address, clusters,
//! `/1.0/events`, backups, logs, console, migration, image upload and copy
//! between servers; renaming instances or snapshots, stateful snapshots,
//! expiry; writing profiles; following symlinks inside an instance's files;
//! commands changing the state (an exec rule only answers); `record-output`
//! and window sizes; cancelling (no operation of the double can be
//! cancelled, as most of LXD's). The ETag is a stable hash of what a PUT
//! can change, not LXD's own digest.

mod api;
mod exec;
mod files;
mod http;
mod knobs;
mod log;
mod model;
mod ops;
mod render;
mod server;
mod shared;
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
pub use model::{
    Behaviour, Device, Family, Image, Instance, Profile, Project, Server, Snapshot, State, Status,
};
pub use ops::{Action, OpStatus, Operation};
pub use shared::Hang;

use knobs::Effect;
use ops::{OpKnobs, Work};
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

    fn knob(&self, when: Match, effect: Effect) {
        self.shared.lock().knobs.add(when, effect);
    }

    /// Matching sync requests are answered `t` later (their effect made);
    /// matching async requests' operations take `t`.
    pub fn slow(&self, when: Match, t: Duration) {
        self.knob(when, Effect::Slow(t));
    }

    /// Matching requests fail at once with HTTP `status` and LXD `text`,
    /// without effect.
    pub fn fail(&self, when: Match, status: u16, text: &str) {
        self.knob(when, Effect::Fail(status, text.into()));
    }

    /// Matching requests' operations fail (status 400, `err` = `text`)
    /// without effect.
    pub fn fail_operation(&self, when: Match, text: &str) {
        self.knob(when, Effect::FailOperation(text.into()));
    }

    /// Matching requests are held at `at` until released; each shows in
    /// [`Double::wait_hang`].
    pub fn hang(&self, when: Match, at: HangAt) {
        self.knob(when, Effect::Hang(at));
    }

    /// Forgets every knob (held requests stay held until released).
    pub fn clear_knobs(&self) {
        self.shared.lock().knobs.clear();
    }

    /// Adds an exec rule (rules are tried in the order added).
    pub fn exec_rule(&self, rule: ExecRule) {
        self.shared.lock().rules.push(rule);
    }

    /// Forgets the exec rules.
    pub fn clear_exec_rules(&self) {
        self.shared.lock().rules.clear();
    }

    /// Waits up to `limit` for a held request or operation not reported
    /// before; reports it.
    pub fn wait_hang(&self, limit: Duration) -> Option<Hang> {
        let g = self.shared.lock();
        let pending = |i: &Inner| {
            i.hangs
                .iter()
                .any(|h| !h.reported && !h.released && held(i, h))
        };
        let mut g = self
            .shared
            .wait_while(g, Some(Instant::now() + limit), |i| !pending(i));
        let found = g
            .hangs
            .iter()
            .position(|h| !h.reported && !h.released && held(&g, h))?;
        g.hangs[found].reported = true;
        Some(g.hangs[found].clone())
    }

    /// Every hang point so far.
    pub fn hangs(&self) -> Vec<Hang> {
        self.shared.lock().hangs.clone()
    }

    /// Lets hang `id` go on.
    pub fn release(&self, id: u64) {
        let mut g = self.shared.lock();
        for h in g.hangs.iter_mut().filter(|h| h.id == id) {
            h.released = true;
        }
        self.shared.notify();
    }

    /// Lets every held request and operation go on.
    pub fn release_all(&self) {
        let mut g = self.shared.lock();
        for h in &mut g.hangs {
            h.released = true;
        }
        self.shared.notify();
    }

    /// Lets held operation `id` end.
    pub fn release_operation(&self, id: &str) {
        let mut g = self.shared.lock();
        for h in g
            .hangs
            .iter_mut()
            .filter(|h| h.operation.as_deref() == Some(id))
        {
            h.released = true;
        }
        self.shared.notify();
    }

    fn hold(&self, hold: Hold, what: &str) -> OpKnobs {
        match hold {
            Hold::For(t) => OpKnobs {
                duration: t,
                ..OpKnobs::default()
            },
            Hold::UntilReleased => {
                let id = self
                    .shared
                    .lock()
                    .add_hang(HangAt::Operation, "", what, None);
                OpKnobs {
                    hold: Some(id),
                    ..OpKnobs::default()
                }
            }
        }
    }

    fn start_op(&self, work: Work, knobs: OpKnobs) -> String {
        let hold = knobs.hold;
        let op = ops::spawn(&self.shared, work, knobs);
        if let Some(h) = hold {
            let mut g = self.shared.lock();
            if let Some(hp) = g.hangs.iter_mut().find(|x| x.id == h) {
                hp.operation = Some(op.id.clone());
            }
        }
        op.id
    }

    /// An operation doing `action` on `instance` of `project` (as another
    /// client's, or the server side of a killed one), holding the instance
    /// for `hold`; it ends without changing anything. Returns its id.
    pub fn busy(&self, project: &str, instance: &str, action: Action, hold: Hold) -> String {
        let resources = ops::instance_resources(&self.state(), &[instance]);
        let work = Work {
            description: action.description().into(),
            project: project.into(),
            resources,
            lock: Some((instance.into(), action)),
            stages: Vec::new(),
            may_cancel: false,
            begin: None,
            undo: None,
            effect: Box::new(|_| Ok(None)),
        };
        let knobs = self.hold(hold, &format!("{} {instance}", action.word()));
        self.start_op(work, knobs)
    }

    /// An operation creating `name` in `project` (the server side of a
    /// killed create): the instance is absent (404) until it ends (or a
    /// Stopped record with [`Behaviour::create_record_early`]), then there
    /// as `inst`. Returns its id.
    pub fn creating(&self, project: &str, name: &str, inst: Instance, hold: Hold) -> String {
        let (early, resources) = {
            let st = self.state();
            (
                st.behaviour.create_record_early,
                ops::instance_resources(&st, &[name]),
            )
        };
        let (p1, p2, n1, n2) = (
            project.to_string(),
            project.to_string(),
            name.to_string(),
            name.to_string(),
        );
        let record = Instance {
            status: Status::Stopped,
            ..inst.clone()
        };
        let work = Work {
            description: Action::Create.description().into(),
            project: project.into(),
            resources,
            lock: Some((name.into(), Action::Create)),
            stages: Vec::new(),
            may_cancel: false,
            begin: Some(Box::new(move |st: &mut State| {
                if early {
                    if let Some(p) = st.projects.get_mut(&p1) {
                        p.instances.insert(n1, record);
                    }
                }
                Ok(())
            })),
            undo: None,
            effect: Box::new(move |st: &mut State| {
                let p = st.projects.get_mut(&p2).ok_or("Project not found")?;
                p.instances.insert(n2, inst);
                Ok(None)
            }),
        };
        let knobs = self.hold(hold, &format!("create {name}"));
        self.start_op(work, knobs)
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

    /// The client configuration (`LXD_CONF/config.yml`) of a client whose
    /// default remote is `remote` with current project `project`: `local`
    /// is this double (`unix://`); any other name is an HTTPS server on
    /// another machine.
    pub fn client_config(remote: &str, project: &str) -> String {
        let mut out = format!(
            "default-remote: {remote}\nremotes:\n  local:\n    addr: unix://\n    public: false\n"
        );
        let proj = |p: &str| {
            if p == "default" {
                String::new()
            } else {
                format!("    project: {p}\n")
            }
        };
        if remote == "local" {
            out.push_str(&proj(project));
        } else {
            out.push_str(&format!(
                "  {remote}:\n    addr: https://198.51.100.7:8443\n    auth_type: tls\n    protocol: lxd\n    public: false\n{}",
                proj(project)
            ));
        }
        // The remotes the client ships with.
        for (name, addr) in [
            ("images", "https://images.linuxcontainers.org"),
            ("ubuntu", "https://cloud-images.ubuntu.com/releases"),
            ("ubuntu-daily", "https://cloud-images.ubuntu.com/daily"),
        ] {
            out.push_str(&format!(
                "  {name}:\n    addr: {addr}\n    protocol: simplestreams\n    public: true\n"
            ));
        }
        out.push_str("aliases: {}\n");
        out
    }
}

/// Does hang point `h` still hold something (its operation runs, for an
/// operation hold)?
fn held(i: &Inner, h: &Hang) -> bool {
    match (&h.at, &h.operation) {
        (HangAt::Operation, Some(op)) => i.op(op).is_some_and(Operation::is_running),
        (HangAt::Operation, None) => false,
        _ => true,
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
        // Wake the accept loop so it sees the stop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
