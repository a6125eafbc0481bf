//! What a test sets on a running double: knobs (slow, fail, hang), exec
//! rules, hang points and their release, operations it starts itself.

use std::time::{Duration, Instant};

use crate::knobs::{Effect, HangAt, Match};
use crate::model::{Instance, Status};
use crate::ops::{self, Action, OpKnobs, Operation, Work};
use crate::rules::ExecRule;
use crate::shared::{Hang, Inner};
use crate::state::State;
use crate::{Double, Hold};

impl Double {
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
        let resources = ops::instance_resources(&self.state(), project, &[instance]);
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
                ops::instance_resources(&st, project, &[name]),
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
}

/// Does hang point `h` still hold something (its operation runs, for an
/// operation hold)?
fn held(i: &Inner, h: &Hang) -> bool {
    match (&h.at, &h.operation) {
        (HangAt::Operation, Some(op)) => h.reached && i.op(op).is_some_and(Operation::is_running),
        (HangAt::Operation, None) => false,
        _ => true,
    }
}
