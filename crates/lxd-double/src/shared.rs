//! What the server threads and the test share: one mutex over everything
//! and one condition variable that every change notifies (operations
//! ending, hangs released, websockets connecting). The double is small and
//! slow paths sleep outside the lock, so one lock is simplest to reason
//! about.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::exec::{Exec, ExecRule, Session};
use crate::knobs::{HangAt, Knobs};
use crate::log::Request;
use crate::ops::{Action, Operation};
use crate::state::State;

/// A request or operation held by a hang knob (or a held operation).
#[derive(Debug, Clone)]
pub struct Hang {
    /// Its id, for [`crate::Double::release`].
    pub id: u64,
    /// Where it is held.
    pub at: HangAt,
    /// The request's method (empty for an operation the test started).
    pub method: String,
    /// The request's target.
    pub target: String,
    /// The pid of the process that sent the request.
    pub peer_pid: Option<i32>,
    /// The operation held, for [`HangAt::Operation`].
    pub operation: Option<String>,
    pub(crate) released: bool,
    pub(crate) reported: bool,
    /// The held request or operation has got there (an operation once
    /// its start and its time are behind it).
    pub(crate) reached: bool,
}

/// Everything behind the lock.
pub(crate) struct Inner {
    pub state: State,
    pub knobs: Knobs,
    pub rules: Vec<ExecRule>,
    pub log: Vec<Request>,
    pub seq: u64,
    pub ops: Vec<Operation>,
    /// (project, instance) -> the action and operation holding it.
    pub locks: BTreeMap<(String, String), (Action, String)>,
    pub hangs: Vec<Hang>,
    pub next_hang: u64,
    pub sessions: BTreeMap<String, Session>,
    pub execs: Vec<Exec>,
    /// Clones of the open connections, shut down when the double stops.
    pub conns: BTreeMap<u64, std::os::unix::net::UnixStream>,
    pub next_conn: u64,
}

impl Inner {
    pub fn new(state: State) -> Inner {
        Inner {
            state,
            knobs: Knobs::default(),
            rules: Vec::new(),
            log: Vec::new(),
            seq: 0,
            ops: Vec::new(),
            locks: BTreeMap::new(),
            hangs: Vec::new(),
            next_hang: 1,
            sessions: BTreeMap::new(),
            execs: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
        }
    }

    /// Operation `id`.
    pub fn op(&self, id: &str) -> Option<&Operation> {
        self.ops.iter().find(|o| o.id == id)
    }

    /// Operation `id`, to change.
    pub fn op_mut(&mut self, id: &str) -> Option<&mut Operation> {
        self.ops.iter_mut().find(|o| o.id == id)
    }

    /// Has hang `id` been released (or forgotten)?
    pub fn released(&self, id: u64) -> bool {
        self.hangs
            .iter()
            .find(|h| h.id == id)
            .is_none_or(|h| h.released)
    }

    /// Registers a hang point; returns its id.
    pub fn add_hang(&mut self, at: HangAt, method: &str, target: &str, peer: Option<i32>) -> u64 {
        let id = self.next_hang;
        self.next_hang += 1;
        self.hangs.push(Hang {
            id,
            at,
            method: method.into(),
            target: target.into(),
            peer_pid: peer,
            operation: None,
            released: false,
            reported: false,
            reached: at != HangAt::Operation,
        });
        id
    }

    /// Marks hang `id` as reached, for [`crate::Double::wait_hang`].
    pub fn reach(&mut self, id: u64) {
        if let Some(h) = self.hangs.iter_mut().find(|h| h.id == id) {
            h.reached = true;
        }
    }

    /// The log entry of request `seq`.
    pub fn request_mut(&mut self, seq: u64) -> Option<&mut Request> {
        self.log.iter_mut().rev().find(|r| r.seq == seq)
    }
}

/// The shared part of a running double.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    stop: AtomicBool,
}

impl Shared {
    pub fn new(state: State) -> Shared {
        Shared {
            inner: Mutex::new(Inner::new(state)),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// The lock (a panicking thread does not poison the double for the
    /// test).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every waiter to look again.
    pub fn notify(&self) {
        self.cond.notify_all();
    }

    /// True once the double is being dropped.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Marks the double as stopping and wakes everyone.
    pub fn set_stopping(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _g = self.lock();
        self.notify();
    }

    /// Waits while `busy` holds, until `deadline` if any, or until the
    /// double stops.
    pub fn wait_while<'a>(
        &self,
        mut g: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
        mut busy: impl FnMut(&Inner) -> bool,
    ) -> MutexGuard<'a, Inner> {
        while busy(&g) && !self.stopping() {
            // A bounded wait: the stop flag is set without the lock.
            let mut step = Duration::from_millis(200);
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    break;
                }
                step = step.min(d - now);
            }
            g = self
                .cond
                .wait_timeout(g, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        g
    }
}
