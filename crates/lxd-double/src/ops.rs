//! Operations: async requests become operations with ids and resources,
//! run on a thread of their own, hold the instance's operation lock as
//! LXD's `operationlock` does, report progress, and end in Success,
//! Failure (400 + `err`) or Cancelled. Finished ones stay listed for
//! [`crate::Behaviour::operation_retention`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::model::State;
use crate::shared::{Inner, Shared};
use crate::util;

/// The instance lock actions of LXD's `operationlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Creating the instance.
    Create,
    /// Starting it.
    Start,
    /// Stopping it.
    Stop,
    /// Restarting it.
    Restart,
    /// Restoring a snapshot.
    Restore,
    /// Changing its config or devices.
    Update,
    /// Deleting it.
    Delete,
}

impl Action {
    /// LXD's word for it (`Instance is busy running a "create" operation`).
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Restore => "restore",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// The description of an operation doing it.
    pub fn description(self) -> &'static str {
        match self {
            Action::Create => "Creating instance",
            Action::Start => "Starting instance",
            Action::Stop => "Stopping instance",
            Action::Restart => "Restarting instance",
            Action::Restore => "Restoring snapshot",
            Action::Update => "Updating instance",
            Action::Delete => "Deleting instance",
        }
    }

    /// LXD 5.0.2's text when another operation holds the instance.
    pub fn busy_text(self, holder: Action) -> String {
        let busy = format!("Instance is busy running a {:?} operation", holder.word());
        match self {
            Action::Stop => busy,
            Action::Restart => format!("Create restart operation: {busy}"),
            Action::Create => format!("Failed creating instance record: {busy}"),
            a => format!("Failed to create instance {} operation: {busy}", a.word()),
        }
    }

    /// LXD waits for a running operation of the same kind instead of
    /// refusing (`CreateWaitGet`), and takes its success for its own.
    fn waits_for_same(self) -> bool {
        matches!(
            self,
            Action::Start | Action::Stop | Action::Update | Action::Delete
        )
    }
}

/// An operation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    /// Running (103).
    Running,
    /// Success (200).
    Success,
    /// Failure (400).
    Failure,
    /// Cancelled (401).
    Cancelled,
}

impl OpStatus {
    /// LXD's word and code.
    pub fn api(self) -> (&'static str, u16) {
        match self {
            OpStatus::Running => ("Running", 103),
            OpStatus::Success => ("Success", 200),
            OpStatus::Failure => ("Failure", 400),
            OpStatus::Cancelled => ("Cancelled", 401),
        }
    }
}

/// One operation, as a test inspects it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its id.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: &'static str,
    /// `Creating instance`, ...
    pub description: String,
    /// The LXD project it belongs to.
    pub project: String,
    /// Where it stands.
    pub status: OpStatus,
    /// `resources` (kind -> URLs).
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    /// `metadata`.
    pub metadata: Value,
    /// `err` of a failed one.
    pub err: String,
    /// Can it be cancelled?
    pub may_cancel: bool,
    /// The instance lock it holds or wants.
    pub lock: Option<(String, Action)>,
    /// RFC 3339 times.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    pub finished: Option<Instant>,
    pub(crate) cancel: bool,
}

impl Operation {
    /// LXD's JSON for it.
    pub fn render(&self) -> Value {
        let (status, code) = self.status.api();
        json!({
            "id": self.id,
            "class": self.class,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": status,
            "status_code": code,
            "resources": self.resources,
            "metadata": self.metadata,
            "may_cancel": self.may_cancel && self.status == OpStatus::Running,
            "err": self.err,
            "location": "none",
        })
    }

    /// `/1.0/operations/ID`.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }

    /// True while it runs.
    pub fn is_running(&self) -> bool {
        self.status == OpStatus::Running
    }
}

/// A state change an operation makes when it ends well: new metadata
/// (replacing the progress) or `None` to keep it; `Err` fails it.
pub(crate) type Effect = Box<dyn FnOnce(&mut State) -> Result<Option<Value>, String> + Send>;

/// A state change without a result (an undo).
pub(crate) type Change = Box<dyn FnOnce(&mut State) + Send>;

/// A check and change when an operation starts.
pub(crate) type Begin = Box<dyn FnOnce(&mut State) -> Result<(), String> + Send>;

/// One progress stage an operation reports while it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// `download_progress` of an image download.
    Download,
    /// `create_instance_from_image_unpack`.
    Unpack,
    /// `create_image_from_container_pack` of a publish.
    Pack,
}

/// What an async request asks to run.
pub(crate) struct Work {
    pub description: String,
    pub project: String,
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    pub lock: Option<(String, Action)>,
    pub stages: Vec<Stage>,
    pub may_cancel: bool,
    /// Checked and applied when the operation starts, once it holds its
    /// lock (e.g. an instance record); an error fails the operation.
    pub begin: Option<Begin>,
    /// Applied if a knob fails it or it is cancelled (the effect never
    /// ran).
    pub undo: Option<Change>,
    pub effect: Effect,
}

/// What the knobs do to one operation.
#[derive(Debug, Default, Clone)]
pub(crate) struct OpKnobs {
    pub duration: Duration,
    pub fail: Option<String>,
    /// Held until this hang point is released.
    pub hold: Option<u64>,
}

/// The `resources` of an operation on instance `name` (LXD 5.0 lists it
/// as a container too; Incus does not).
pub(crate) fn instance_resources(
    st: &State,
    names: &[&str],
) -> Option<BTreeMap<String, Vec<String>>> {
    let urls = |kind: &str| {
        names
            .iter()
            .map(|n| format!("/1.0/{kind}/{n}"))
            .collect::<Vec<_>>()
    };
    let mut r = BTreeMap::from([("instances".to_string(), urls("instances"))]);
    if st.server.family == crate::Family::Lxd {
        r.insert("containers".into(), urls("containers"));
    }
    Some(r)
}

/// Registers a new Running operation; returns it.
pub(crate) fn register(
    inner: &mut Inner,
    class: &'static str,
    description: &str,
    project: &str,
    resources: Option<BTreeMap<String, Vec<String>>>,
    metadata: Value,
) -> Operation {
    let now = util::now();
    let op = Operation {
        id: util::uuid(),
        class,
        description: description.into(),
        project: project.into(),
        status: OpStatus::Running,
        resources,
        metadata,
        err: String::new(),
        may_cancel: false,
        lock: None,
        created_at: now.clone(),
        updated_at: now,
        finished: None,
        cancel: false,
    };
    inner.ops.push(op.clone());
    op
}

/// Ends operation `id`: Success with `metadata` (`None`: keep it), or
/// Failure with the text; releases its instance lock.
pub(crate) fn finish(inner: &mut Inner, id: &str, outcome: Result<Option<Value>, String>) {
    finish_as(inner, id, outcome, OpStatus::Failure);
}

fn finish_as(inner: &mut Inner, id: &str, outcome: Result<Option<Value>, String>, bad: OpStatus) {
    inner.locks.retain(|_, (_, holder)| holder != id);
    if let Some(op) = inner.op_mut(id) {
        match outcome {
            Ok(meta) => {
                op.status = OpStatus::Success;
                if let Some(m) = meta {
                    op.metadata = m;
                }
            }
            Err(text) => {
                op.status = bad;
                op.err = text;
            }
        }
        op.updated_at = util::now();
        op.finished = Some(Instant::now());
    }
}

/// Creates the operation for `work` and starts its thread; returns the
/// operation as it was created (what the 202 answer carries).
pub(crate) fn spawn(shared: &Arc<Shared>, work: Work, knobs: OpKnobs) -> Operation {
    let mut g = shared.lock();
    let mut op = register(
        &mut g,
        "task",
        &work.description,
        &work.project,
        work.resources.clone(),
        Value::Null,
    );
    op.may_cancel = work.may_cancel;
    op.lock = work.lock.clone();
    if let Some(o) = g.op_mut(&op.id) {
        o.may_cancel = op.may_cancel;
        o.lock = op.lock.clone();
    }
    drop(g);
    let (s, id) = (Arc::clone(shared), op.id.clone());
    std::thread::spawn(move || run(&s, &id, work, knobs));
    op
}

/// The life of one operation.
fn run(shared: &Arc<Shared>, id: &str, work: Work, knobs: OpKnobs) {
    let mut g = shared.lock();
    if let Some((inst, action)) = work.lock.clone() {
        let key = (work.project.clone(), inst);
        loop {
            let Some((held, holder)) = g.locks.get(&key).cloned() else {
                g.locks.insert(key.clone(), (action, id.to_string()));
                break;
            };
            if held != action || !action.waits_for_same() {
                finish(&mut g, id, Err(action.busy_text(held)));
                shared.notify();
                return;
            }
            g = shared.wait_while(g, None, |i| {
                i.op(&holder).is_some_and(Operation::is_running)
            });
            if g.op(&holder).is_some_and(|o| o.status == OpStatus::Success) {
                finish(&mut g, id, Ok(None));
                shared.notify();
                return;
            }
        }
    }
    if let Some(begin) = work.begin {
        if let Err(text) = begin(&mut g.state) {
            finish(&mut g, id, Err(text));
            shared.notify();
            return;
        }
    }
    shared.notify();
    let steps = g.state.behaviour.progress_steps.max(1);
    drop(g);

    let cancelled = pass_time(shared, id, &work.stages, knobs.duration, steps);
    let mut g = shared.lock();
    if !cancelled {
        if let Some(h) = knobs.hold {
            g = shared.wait_while(g, None, |i| {
                !i.released(h) && !i.op(id).is_some_and(|o| o.cancel)
            });
        }
    }
    let cancelled = cancelled || g.op(id).is_some_and(|o| o.cancel) || shared.stopping();
    let outcome = if cancelled || knobs.fail.is_some() {
        if let Some(undo) = work.undo {
            undo(&mut g.state);
        }
        Err(knobs.fail.unwrap_or_default())
    } else {
        (work.effect)(&mut g.state)
    };
    let bad = if cancelled {
        OpStatus::Cancelled
    } else {
        OpStatus::Failure
    };
    finish_as(&mut g, id, outcome, bad);
    shared.notify();
}

/// Lets `total` pass, reporting progress through `stages`; true if the
/// operation was cancelled (or the double stops) meanwhile.
fn pass_time(
    shared: &Arc<Shared>,
    id: &str,
    stages: &[Stage],
    total: Duration,
    steps: u32,
) -> bool {
    let start = Instant::now();
    let ticks = (stages.len() as u32 * steps).max(1);
    for tick in 1..=ticks {
        let at = start + total.mul_f64(f64::from(tick) / f64::from(ticks));
        let g = shared.lock();
        let g = shared.wait_while(g, Some(at), |i| !i.op(id).is_some_and(|o| o.cancel));
        let mut g = g;
        if g.op(id).is_some_and(|o| o.cancel) || shared.stopping() {
            return true;
        }
        if let Some(stage) = stages.get(((tick - 1) / steps) as usize) {
            let pct = u64::from((tick - 1) % steps + 1) * 100 / u64::from(steps);
            let speed = 25_858_579;
            if let Some(op) = g.op_mut(id) {
                progress(&mut op.metadata, *stage, pct, speed);
                op.updated_at = util::now();
            }
        }
        shared.notify();
    }
    false
}

/// Sets LXD's progress metadata for `stage` at `pct` percent.
fn progress(meta: &mut Value, stage: Stage, pct: u64, speed: u64) {
    if !meta.is_object() {
        *meta = json!({});
    }
    let speed_text = util::byte_size(speed);
    let (key, prefix) = match stage {
        Stage::Download => {
            meta["download_progress"] = json!(format!("rootfs: {pct}% ({speed_text}/s)"));
            return;
        }
        Stage::Unpack => ("create_instance_from_image_unpack", "Unpack"),
        Stage::Pack => ("create_image_from_container_pack", "Image pack"),
    };
    meta["progress"] =
        json!({"stage": key, "percent": pct.to_string(), "speed": speed.to_string()});
    meta[format!("{key}_progress")] = json!(format!("{prefix}: {pct}% ({speed_text}/s)"));
}

/// Drops finished operations older than the retention from the API's view
/// (they stay in the test's history).
pub(crate) fn visible(inner: &Inner, op: &Operation) -> bool {
    let keep = inner.state.behaviour.operation_retention;
    op.finished.is_none_or(|t| t.elapsed() < keep)
}
