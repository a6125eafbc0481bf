//! What `ldm up` and `ldm down` will do to each container, decided before
//! anything is done (and all `--dry-run` shows): start, stop, re-create,
//! finish an interrupted create, or refuse and why.

use crate::commands::op;
use crate::lxd::owner::Owner;
use crate::lxd::{Instance, Lxd};
use crate::model::{Op, Project};
use crate::store::Owners;

/// What `up` or `down` will do to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// LXD no longer has it: launch it again from `image`.
    Recreate {
        /// The recorded image.
        image: String,
    },
    /// An interrupted create (of `ldm container create`, or of an earlier
    /// `up` that was stopped): finish it, resuming its setup steps where
    /// they stopped.
    Finish {
        /// The recorded image.
        image: String,
    },
    /// `up` of a running instance: nothing to do but say where it is;
    /// its IPv4 when LXD's answer had it (a single instance's query does).
    Running {
        /// Its first global IPv4, if known.
        ipv4: Option<String>,
    },
    /// `down` of a container LXD does not have: nothing to stop.
    Missing,
    /// Nothing to do; the words say why.
    Nothing(String),
    /// Cannot be done; the words say why and what to run.
    Refuse(String),
    /// LXD's instance of its name is another checkout's: left alone; the
    /// words say whose and what to do.
    Theirs(String),
}

/// The plan for every container of `project` (sorted by name), given what
/// LXD has.
pub fn plan(
    project: &Project,
    owners: &Owners,
    lxd: &[Instance],
    up: bool,
) -> Vec<(String, Action)> {
    project
        .containers
        .iter()
        .map(|(name, c)| {
            let lxd_name = project.lxd_name(name);
            let inst = lxd.iter().find(|i| i.name == lxd_name);
            let action = match (&c.pending, inst) {
                (
                    _,
                    Some(Instance {
                        owner: Owner::Other(theirs),
                        ..
                    }),
                ) => Action::Theirs(format!("LXD's {lxd_name} {}", theirs.said)),
                (Some(p), _) if op::is_alive(owners, p) => {
                    Action::Refuse(format!("busy: {}", op::doing(p)))
                }
                (Some(p), _) if up && p.op == Op::Create => Action::Finish {
                    image: c.image.clone(),
                },
                (Some(p), _) => Action::Refuse(format!(
                    "has an interrupted {}: run `{}` to finish it",
                    p.op.noun(),
                    p.op.command(name)
                )),
                (None, None) if up => Action::Recreate {
                    image: c.image.clone(),
                },
                (None, None) => Action::Missing,
                (None, Some(i)) if up && i.is_running() => Action::Running {
                    ipv4: i.ipv4.clone(),
                },
                (None, Some(_)) if up => Action::Start,
                (None, Some(i)) if i.is_running() => Action::Stop,
                (None, Some(_)) => Action::Nothing("already stopped".into()),
            };
            (name.clone(), action)
        })
        .collect()
}

/// Refuses to act on a container LXD's current project lacks when another
/// LXD project has an instance of its name: after an `lxc project switch`
/// a re-create would make a second one, and `down` would leave the first
/// running while saying it is not in LXD. Asks LXD only when a container
/// is missing; if LXD will not say (a restricted client), says so and
/// goes on.
pub(super) fn not_elsewhere(
    lxd: &dyn Lxd,
    project: &Project,
    instances: &[Instance],
    plan: &mut [(String, Action)],
) {
    let absent = |name: &str| {
        let lxd_name = project.lxd_name(name);
        !instances.iter().any(|i| i.name == lxd_name)
    };
    let missing = |name: &str, a: &Action| match a {
        Action::Recreate { .. } | Action::Missing => true,
        Action::Finish { .. } => absent(name),
        _ => false,
    };
    if !plan.iter().any(|(n, a)| missing(n, a)) {
        return;
    }
    let other = match lxd.elsewhere() {
        Ok(other) => other,
        Err(e) => {
            // A re-create could duplicate what LXD would not show: refused.
            // `down` changes nothing, so a note does.
            op::note_unchecked(&e);
            for (name, action) in plan.iter_mut() {
                if matches!(action, Action::Recreate { .. })
                    || matches!(action, Action::Finish { .. }) && absent(name)
                {
                    *action = Action::Refuse(format!(
                        "is not in LXD's current project, and LXD would not say whether another project has it ({e}); nothing was changed"
                    ));
                }
            }
            return;
        }
    };
    for (name, action) in plan.iter_mut() {
        if let (true, Some(a)) = (
            missing(name, action),
            op::find_away(&other, &project.lxd_name(name)),
        ) {
            *action = Action::Refuse(op::not_there(a));
        }
    }
}

/// How `--dry-run` words an action.
pub(super) fn describe(project: &Project, name: &str, a: &Action) -> String {
    match a {
        Action::Start => "start".into(),
        Action::Stop => "stop".into(),
        Action::Recreate { image } => {
            let c = &project.containers[name];
            let steps = project.effective_setup(name).len();
            let mut s = format!("re-create from {image} (LXD no longer has it)");
            if !c.mounts.is_empty() {
                let m: Vec<String> = c.mounts.iter().map(|m| m.to_string()).collect();
                s.push_str(&format!(", mount {}", m.join(", ")));
            }
            if steps > 0 {
                s.push_str(&format!(", {steps} setup step(s)"));
            }
            s
        }
        Action::Finish { image } => match project.containers[name]
            .pending
            .as_ref()
            .and_then(|p| p.setup.clone())
        {
            Some(progress) => format!(
                "finish its interrupted create from {image} (setup resumes after step {})",
                progress.done
            ),
            None => format!("finish its interrupted create from {image}"),
        },
        Action::Running { .. } => "nothing (already running)".into(),
        Action::Missing => "nothing (not in LXD)".into(),
        Action::Nothing(why) => format!("nothing ({why})"),
        Action::Refuse(why) => format!("cannot: {why}"),
        Action::Theirs(why) => format!("nothing: {why}"),
    }
}
