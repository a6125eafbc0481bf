//! Operations: async requests become operations with ids and resources,
//! run on a thread of their own, hold the instance's operation lock as
//! LXD's `operationlock` does, report progress, and end in Success,
//! Failure (400 + `err`) or Cancelled. Finished ones stay listed for
//! [`crate::Behaviour::operation_retention`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::shared::{Inner, Shared};
use crate::state::State;
use crate::util;

pub use crate::operation::{Action, OpStatus, Operation};

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

/// The `resources` of an operation on instances `names` of `project`:
/// LXD 5.0 lists them as containers too and names no project; Incus lists
/// instances only, with `?project=` outside `default`.
pub(crate) fn instance_resources(
    st: &State,
    project: &str,
    names: &[&str],
) -> Option<BTreeMap<String, Vec<String>>> {
    let incus = st.server.family == crate::Family::Incus;
    let q = if incus && project != "default" {
        format!("?project={}", util::percent_encode(project))
    } else {
        String::new()
    };
    let urls = |kind: &str| {
        names
            .iter()
            .map(|n| format!("/1.0/{kind}/{n}{q}"))
            .collect::<Vec<_>>()
    };
    let mut r = BTreeMap::from([("instances".to_string(), urls("instances"))]);
    if !incus {
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
    // A free lock is taken at once, so that whoever saw the 202 (or the
    // test that started it) finds the instance busy; a held one is the
    // operation's own business (it waits or fails).
    if let Some((inst, action)) = &work.lock {
        let key = (work.project.clone(), inst.clone());
        g.locks
            .entry(key)
            .or_insert_with(|| (*action, op.id.clone()));
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
            if holder == id {
                break;
            }
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
            g.reach(h);
            shared.notify();
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
