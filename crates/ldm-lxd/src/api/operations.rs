//! Background operations: ldm's own are awaited by id
//! (`/1.0/operations/ID/wait?timeout=N`) with their progress shown; and
//! LXD's "busy" is a wait for the *other* operations on the instance.
//!
//! LXD refuses to act on an instance while another operation holds it: the
//! server side of a create whose ldm was killed goes on for seconds, and
//! the instance is "not found" (404) until it is made. Neither refusal has
//! a code of its own (a 400 operation failure, a 500, a 404), so ldm does
//! not guess from them: when a call on an instance fails, it asks the
//! server for its running operations on that instance (`GET
//! /1.0/operations?recursion=1`, `resources.instances`). With none, the
//! failure stands as it is. With some, ldm waits for each by id, for at
//! most the command's `--timeout` in all, then tries the call again; at the
//! timeout it fails with [`LxdError::Busy`]. Interactive sessions
//! (`websocket` operations: an `ldm ssh` open on it) never hold an
//! instance, so they are not waited for.

use std::time::{Duration, Instant};

use super::progress::Progress;
use super::request::{encode, status, Started};
use super::types::{Operation, Operations};
use super::Api;
use crate::LxdError;

/// How long one `wait` request asks the server to hold the answer: ldm's
/// own operations are shown every second when progress is on.
const WAIT_CHUNK: Duration = Duration::from_secs(30);

impl Api {
    /// Waits for ldm's own operation `s` to end; a failure is
    /// [`LxdError::OperationFailed`] with LXD's words. With `progress`, its
    /// progress metadata is shown meanwhile.
    pub(super) fn finish(
        &self,
        s: Started,
        progress: Option<&mut Progress>,
    ) -> Result<Operation, LxdError> {
        let request = s.request.clone();
        let op = self.wait_done(s, progress)?;
        if op.succeeded() {
            Ok(op)
        } else {
            Err(self.failed(&request, &op))
        }
    }

    /// Waits for ldm's own operation `s` to end, whatever its outcome.
    pub(super) fn wait_done(
        &self,
        s: Started,
        mut progress: Option<&mut Progress>,
    ) -> Result<Operation, LxdError> {
        let Started { mut op, .. } = s;
        let chunk = match progress {
            Some(_) => Duration::from_secs(1),
            None => WAIT_CHUNK,
        };
        while op.running() {
            op = self.wait_once(&op.id, chunk.as_secs())?;
            if let Some(p) = progress.as_deref_mut() {
                p.show(&op.metadata);
            }
        }
        if let Some(p) = progress {
            p.done();
        }
        Ok(op)
    }

    /// One `wait?timeout=SECS` for operation `id`: the operation when it
    /// ended, or as it is after `SECS`. LXD answers both with the operation;
    /// Incus answers a failed one, and one still running at the timeout,
    /// with an error (HTTP 200 and an error body): then the operation is
    /// read on its own (`GET /1.0/operations/ID`), and its state decides.
    fn wait_once(&self, id: &str, secs: u64) -> Result<Operation, LxdError> {
        let path = self.scoped(&format!(
            "/1.0/operations/{}/wait?timeout={secs}",
            encode(id)
        ));
        match self.get::<Operation>(&path) {
            Ok(op) => Ok(op),
            Err(e @ LxdError::Refused { .. }) if status(&e) != Some(404) => self
                .get(&self.scoped(&format!("/1.0/operations/{}", encode(id))))
                .map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    /// The error of a failed operation `op` started by `request`.
    pub(super) fn failed(&self, request: &str, op: &Operation) -> LxdError {
        LxdError::OperationFailed {
            server: self.who(),
            request: request.to_string(),
            description: op.description.clone(),
            message: if op.err.is_empty() {
                format!("status {}", op.status_code)
            } else {
                op.err.clone()
            },
        }
    }

    /// Starts a create (or a snapshot) and waits for it; a failed one is
    /// also kept in `failed`, so that the caller can tell from its start
    /// whether what it made was there before.
    pub(super) fn create(
        &self,
        path: &str,
        body: &serde_json::Value,
        progress: Option<&mut Progress>,
        failed: &std::cell::RefCell<Option<Operation>>,
    ) -> Result<Operation, LxdError> {
        let s = self.start("POST", path, super::request::Body::Json(body), None)?;
        let request = s.request.clone();
        let op = self.wait_done(s, progress)?;
        if op.succeeded() {
            return Ok(op);
        }
        let e = self.failed(&request, &op);
        *failed.borrow_mut() = Some(op);
        Err(e)
    }

    /// Starts an operation and waits for it.
    pub(super) fn run_op(
        &self,
        method: &str,
        path: &str,
        body: super::request::Body,
    ) -> Result<Operation, LxdError> {
        let s = self.start(method, path, body, None)?;
        self.finish(s, None)
    }

    /// The running operations on instance `name` that may hold it (not
    /// interactive sessions).
    pub(super) fn running_on(&self, name: &str) -> Result<Vec<Operation>, LxdError> {
        let all: Operations = self.get(&self.scoped("/1.0/operations?recursion=1"))?;
        let path = format!("/1.0/instances/{}", encode(name));
        Ok(all
            .running
            .into_iter()
            .filter(|op| op.class != "websocket" && op.running())
            .filter(|op| {
                op.resources.get("instances").is_some_and(|list| {
                    list.iter().any(|r| {
                        r == &path
                            || r.strip_prefix(&path)
                                .is_some_and(|rest| rest.starts_with('?'))
                    })
                })
            })
            .collect())
    }

    /// Runs `f`, a call that acts on instance `name`; while it fails with
    /// other operations running on the instance, waits for them (by id,
    /// until the command's limit) and runs it again. See the module
    /// comment.
    pub(super) fn patiently<T>(
        &self,
        name: &str,
        mut f: impl FnMut() -> Result<T, LxdError>,
    ) -> Result<T, LxdError> {
        let start = Instant::now();
        loop {
            let err = match f() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let may_be_held = matches!(
                err,
                LxdError::Refused { .. }
                    | LxdError::OperationFailed { .. }
                    | LxdError::NotFound { .. }
            );
            if !may_be_held {
                return Err(err);
            }
            // No word on the operations: the call's own answer stands.
            let Ok(others) = self.running_on(name) else {
                return Err(err);
            };
            if others.is_empty() {
                return Err(err);
            }
            self.tell(name, &others[0].description);
            for op in &others {
                if !self.await_other(op, start)? {
                    return Err(LxdError::Busy {
                        what: name.to_string(),
                        waited: start.elapsed(),
                    });
                }
            }
        }
    }

    /// Waits for the operations running on instance `name` (not interactive
    /// sessions), up to the command's limit; [`LxdError::Busy`] at the
    /// limit. One request when none runs.
    pub(super) fn settle(&self, name: &str) -> Result<(), LxdError> {
        let start = Instant::now();
        let others = self.running_on(name)?;
        if let Some(first) = others.first() {
            self.tell(name, &first.description);
        }
        for op in &others {
            if !self.await_other(op, start)? {
                return Err(LxdError::Busy {
                    what: name.to_string(),
                    waited: start.elapsed(),
                });
            }
        }
        Ok(())
    }

    /// Waits for another's operation `op` until the limit counted from
    /// `start`: true when it ended (or is gone), false at the limit.
    fn await_other(&self, op: &Operation, start: Instant) -> Result<bool, LxdError> {
        loop {
            let left = self.patience.limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            // Whole seconds, at least one: the server's unit.
            let secs = left.min(WAIT_CHUNK).as_secs().max(1);
            let path = self.scoped(&format!(
                "/1.0/operations/{}/wait?timeout={secs}",
                encode(&op.id)
            ));
            match self.get::<Operation>(&path) {
                Ok(now) if now.running() => continue,
                Ok(_) => return Ok(true),
                // Ended a while ago and forgotten by the server.
                Err(LxdError::Refused { status: 404, .. }) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Says once per instance that ldm waits for LXD on it; nothing with
    /// `--timeout 0`, which never waits.
    fn tell(&self, name: &str, doing: &str) {
        if self.patience.limit.is_zero() {
            return;
        }
        // A poisoned set only means another thread panicked while telling.
        let mut told = self.patience.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.insert(name.to_string()) {
            (self.patience.on_wait)(name, Some(doing).filter(|d| !d.is_empty()));
        }
    }
}

/// LXD's busy state, against the API TEST DOUBLE: other operations on an
/// instance are waited for by id.
#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use lxd_double::{Action, Hold, Instance};

    use crate::double::Served;
    use crate::{Lxd, LxdError};

    /// The waits by id on operation `op` among `calls`.
    fn waits_on(calls: &[String], op: &str) -> usize {
        let wait = format!("GET /1.0/operations/{op}/wait");
        calls.iter().filter(|c| **c == wait).count()
    }

    #[test]
    fn a_call_on_a_busy_instance_waits_for_the_operation_and_tells_once() {
        let served = Served::new();
        served.seed("p-a", Instance::running());
        let (lxd, told) = served.api_told(Duration::from_secs(30));
        let hold = Hold::For(Duration::from_millis(300));
        let op = served.double.busy("default", "p-a", Action::Update, hold);
        let start = Instant::now();
        lxd.stop("p-a").unwrap();
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert!(!served
            .double
            .instance("default", "p-a")
            .unwrap()
            .is_running());
        let calls = served.take_calls();
        assert_eq!(waits_on(&calls, &op), 1, "waited by id: {calls:?}");
        // Refused once, then done once the operation ended.
        let puts = calls
            .iter()
            .filter(|c| *c == "PUT /1.0/instances/p-a/state")
            .count();
        assert_eq!(puts, 2, "{calls:?}");
        // Busy again: waited for, told once per instance.
        let op = served.double.busy("default", "p-a", Action::Update, hold);
        Lxd::start(&lxd, "p-a").unwrap();
        assert_eq!(waits_on(&served.take_calls(), &op), 1);
        assert_eq!(*told.lock().unwrap(), ["p-a Updating instance"]);
        // Other refusals are not waited for: one try (its own operation
        // awaited), one look at the others, none running.
        assert!(matches!(
            Lxd::start(&lxd, "p-a"),
            Err(LxdError::AlreadyInState { .. })
        ));
        let calls = served.take_calls();
        let count = |c: &str| calls.iter().filter(|x| *x == c).count();
        assert_eq!(count("PUT /1.0/instances/p-a/state"), 1, "{calls:?}");
        assert_eq!(count("GET /1.0/operations"), 1, "{calls:?}");
        assert!(calls.len() <= 4, "{calls:?}");
    }

    #[test]
    fn the_wait_gives_up_at_its_limit_saying_how_long_it_waited() {
        let served = Served::new();
        served.seed("p-a", Instance::running());
        let (lxd, _) = served.api_told(Duration::from_secs(1));
        let op = served
            .double
            .busy("default", "p-a", Action::Start, Hold::UntilReleased);
        let start = Instant::now();
        match lxd.delete("p-a") {
            Err(LxdError::Busy { what, waited }) => {
                assert_eq!(what, "p-a");
                assert!(waited >= Duration::from_secs(1), "{waited:?}");
                assert!(waited < Duration::from_secs(3), "{waited:?}");
            }
            r => panic!("{r:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(3));
        // One wait on the server for the whole limit, not a poll.
        let calls = served.calls();
        assert_eq!(waits_on(&calls, &op), 1, "{calls:?}");
        assert!(served.double.instance("default", "p-a").is_some());
        served.double.release_all();
    }

    #[test]
    fn a_call_on_an_instance_lxd_is_still_creating_waits_for_the_create() {
        // The killed create's server side: "not found" until it is done.
        let served = Served::new();
        let (lxd, told) = served.api_told(Duration::from_secs(30));
        let op = served.double.creating(
            "default",
            "p-a",
            Instance::running(),
            Hold::For(Duration::from_millis(300)),
        );
        lxd.delete("p-a").unwrap();
        assert_eq!(*told.lock().unwrap(), ["p-a Creating instance"]);
        assert!(
            served.double.instance("default", "p-a").is_none(),
            "deleted once created"
        );
        let calls = served.take_calls();
        assert_eq!(waits_on(&calls, &op), 1, "{calls:?}");
        // The delete came after the wait for the create.
        let waited = calls
            .iter()
            .position(|c| *c == format!("GET /1.0/operations/{op}/wait"));
        let deleted = calls.iter().rposition(|c| c == "DELETE /1.0/instances/p-a");
        assert!(waited < deleted && waited.is_some(), "{calls:?}");
        // Missing, with nothing under way: not found at once.
        assert!(served.double.wait_idle(Duration::from_secs(5)));
        let start = Instant::now();
        assert!(matches!(lxd.delete("p-a"), Err(LxdError::NotFound { .. })));
        assert!(start.elapsed() < Duration::from_secs(1));
        let calls = served.take_calls();
        assert!(!calls.iter().any(|c| c.ends_with("/wait")), "{calls:?}");
    }

    #[test]
    fn reads_go_straight_through() {
        let served = Served::new();
        served.seed("p-a", Instance::running());
        let (lxd, told) = served.api_told(Duration::from_secs(30));
        served
            .double
            .busy("default", "p-a", Action::Update, Hold::UntilReleased);
        // (`instance` is not among them: it reads the instance once its
        // operations ended, `Api::one`.)
        let start = Instant::now();
        assert_eq!(lxd.list().unwrap().len(), 1);
        assert_eq!(lxd.statuses().unwrap().len(), 1);
        assert!(lxd.state("p-a").unwrap().is_some());
        assert!(lxd.snapshots("p-a").unwrap().is_empty());
        assert!(lxd.images().unwrap().is_empty());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(told.lock().unwrap().is_empty());
        assert!(!served.calls().iter().any(|c| c.contains("/operations")));
        served.double.release_all();
    }
}
