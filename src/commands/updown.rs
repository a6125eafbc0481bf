//! `ldm up` and `ldm down`, for the containers named or, with no name, for
//! every container of the project, in parallel: `up` starts the stopped ones and
//! re-creates (from the recorded image, with its mounts and setup steps)
//! those LXD no longer has. One line per container as each ends, then a
//! summary; any failure makes the exit non-zero and is named.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli::UpDown;
use crate::commands::container::Started;
use crate::commands::gate::{self, Gated};
use crate::commands::op;
use crate::commands::provision::{self, Mounts, Plan};
use crate::commands::setup::wait_ipv4;
use crate::commands::{text, Ctx};
use crate::lxd::owner::Owner;
use crate::lxd::{Instance, Lxd, LxdError};
use crate::model::{Mutation, Op, Project};
use crate::store::Owners;
use crate::trust::Need;
use crate::{say, Error};

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
fn not_elsewhere(
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
fn describe(project: &Project, name: &str, a: &Action) -> String {
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

/// `ldm up [NAME]...`.
pub fn up(ctx: &Ctx, args: &UpDown, out: &mut dyn Write) -> Result<(), Error> {
    run(ctx, args, out, true)
}

/// `ldm down [NAME]...`.
pub fn down(ctx: &Ctx, args: &UpDown, out: &mut dyn Write) -> Result<(), Error> {
    run(ctx, args, out, false)
}

fn run(ctx: &Ctx, args: &UpDown, out: &mut dyn Write, up: bool) -> Result<(), Error> {
    let store = ctx.store()?;
    let project = store.read()?;
    // `up` may re-create any of them, which LXD only says once asked: what
    // a re-create applies is checked for all of them first.
    let need = match (up, args.dry_run) {
        (true, false) => Need::up((!args.names.is_empty()).then(|| args.names.clone())),
        (false, false) => Need::lxd(),
        (_, true) => Need::nothing(),
    };
    let gated = gate::check(ctx, &store, &project, &need)?;
    for name in &args.names {
        op::container(&project, name)?;
    }
    let lxd = ctx.lxd(&project, args.wait.timeout);
    // One container is asked for alone; else one call for every instance
    // on the server, without the state LXD would read from each running one.
    let instances = match args.names.as_slice() {
        [name] => {
            let lxd_name = project.lxd_name(name);
            lxd.instance(&lxd_name)
                .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?
                .into_iter()
                .collect()
        }
        _ => lxd
            .statuses()
            .map_err(Error::lxd("listing LXD's instances"))?,
    };
    let mut plan = plan(&project, &store.owners(), &instances, up);
    if !args.names.is_empty() {
        plan.retain(|(n, _)| args.names.contains(n));
    }
    not_elsewhere(&*lxd, &project, &instances, &mut plan);
    if args.dry_run {
        for (name, a) in &plan {
            say(
                out,
                &format!("{name}: {}", text::escape(&describe(&project, name, a))),
            )?;
        }
        return Ok(());
    }
    if plan.is_empty() {
        return say(
            out,
            "The project has no containers (create one with `ldm container create NAME IMAGE`)",
        );
    }
    let one = args.names.len() == 1;
    let (tx, rx) = mpsc::channel::<(usize, Result<String, Error>)>();
    let mut results: Vec<Option<Result<String, Error>>> = plan.iter().map(|_| None).collect();
    // At most `jobs` at once: 200 containers started together slowed
    // every boot and queued 200 threads on the store lock.
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<(), Error> {
        for _ in 0..args.jobs().min(plan.len()) {
            let (lxd, project, tx, plan, next, gated) =
                (&lxd, &project, tx.clone(), &plan, &next, &gated);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, action)) = plan.get(i) else {
                    break;
                };
                let r = act(
                    ctx,
                    gated,
                    &**lxd,
                    project,
                    name,
                    action,
                    args.wait.timeout,
                    one,
                );
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Lines in the order containers finish, as they finish.
        for (i, r) in rx {
            if !one {
                let name = &plan[i].0;
                let line = match &r {
                    Ok(done) => format!("{name}: {}", text::escape(done)),
                    Err(e) => format!("{name}: failed: {}", text::escape(&e.to_string())),
                };
                say(out, &line)?;
            }
            results[i] = Some(r);
        }
        Ok(())
    })?;
    let results: Vec<(String, Result<String, Error>)> = plan
        .iter()
        .zip(results)
        .map(|((name, _), r)| {
            let r = r.unwrap_or_else(|| {
                Err(Error::Internal(format!(
                    "{name}: the worker thread panicked"
                )))
            });
            (name.clone(), r)
        })
        .collect();
    if one {
        let Some((name, r)) = results.into_iter().next() else {
            return Ok(());
        };
        return match r {
            Ok(done) => say(out, &format!("{name} {}", text::escape(&done))),
            Err(e) => Err(e),
        };
    }
    summary(out, &results, up)
}

fn summary(
    out: &mut dyn Write,
    results: &[(String, Result<String, Error>)],
    up: bool,
) -> Result<(), Error> {
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n.as_str())
        .collect();
    let total = results.len();
    let state = if up { "running" } else { "stopped" };
    say(
        out,
        &format!("{} of {total} containers {state}", total - failed.len()),
    )?;
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::SomeContainersFailed {
        failed: failed.len(),
        total,
        names: failed.join(", "),
    })
}

/// Carries out one container's action; returns what was done, in words.
#[allow(clippy::too_many_arguments)]
fn act(
    ctx: &Ctx,
    gated: &Gated,
    lxd: &dyn Lxd,
    project: &Project,
    name: &str,
    action: &Action,
    wait: Duration,
    one: bool,
) -> Result<String, Error> {
    let lxd_name = project.lxd_name(name);
    match action {
        Action::Start => {
            match lxd.start(&lxd_name) {
                Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
                Err(e) => return Err(Error::lxd(format!("starting {lxd_name}"))(e)),
            }
            running_at(ctx, lxd, &lxd_name, wait, one)
        }
        Action::Stop => match lxd.stop(&lxd_name) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => Ok("is stopped".into()),
            Err(e) => Err(Error::lxd(format!("stopping {lxd_name}"))(e)),
        },
        Action::Recreate { image } => recreate(ctx, gated, name, image, wait, one, false),
        Action::Finish { image } => recreate(ctx, gated, name, image, wait, one, true),
        Action::Missing => Ok("is not in LXD".into()),
        Action::Running { ipv4: Some(ip) } => Ok(format!("is running at {ip}")),
        Action::Running { ipv4: None } => running_at(ctx, lxd, &lxd_name, wait, one),
        Action::Nothing(why) => Ok(format!("is {why}")),
        Action::Refuse(why) => Err(Error::Conflict {
            what: format!("container {name} {why}"),
            next: "then run the command again".into(),
        }),
        Action::Theirs(why) => Err(Error::Refused(why.clone())),
    }
}

fn running_at(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    lxd_name: &str,
    wait: Duration,
    one: bool,
) -> Result<String, Error> {
    if one && !ctx.quiet {
        eprintln!("Waiting for {lxd_name} to get an IPv4 address...");
    }
    Ok(match wait_ipv4(lxd, lxd_name, wait)? {
        Some(ip) => format!("is running at {ip}"),
        None => format!(
            "is running, but has no IPv4 address after {} s",
            wait.as_secs()
        ),
    })
}

/// Launches a recorded container again, as an interrupted create would
/// be finished: its intent first, then every provisioning step. With
/// `take_over`, finishes an interrupted create instead (its setup steps
/// resume after the last one done; a container that was never finished
/// gets the mounts a new one gets).
fn recreate(
    ctx: &Ctx,
    gated: &Gated,
    name: &str,
    image: &str,
    wait: Duration,
    one: bool,
    take_over: bool,
) -> Result<String, Error> {
    let mut store = ctx.store()?;
    let (_owner, mut pending) = op::claim(&store, Op::Create)?;
    let owners = store.owners();
    let s = store.commit(|p| {
        let c = op::container(p, name)?;
        // A container that was created once has `initial-state`; one whose
        // first create was interrupted has not, and is finished as new
        // (with what a new container gets, which trust must allow).
        let mut again = true;
        if let Some(old) = op::check_free(&owners, name, c)? {
            if !take_over || old.op != Op::Create {
                return Err(op::interrupted(name, &old, ""));
            }
            pending.setup = old.setup.clone();
            again = c
                .snapshots
                .contains_key(crate::commands::setup::INITIAL_STATE);
        }
        let need = if again {
            Need::up(Some(vec![name.to_string()]))
        } else {
            Need::create(name, true)
        };
        gated.recheck(p, &need)?;
        let s = Started::of(p, name, pending.clone(), true, again);
        let m = Mutation::OperationStarted {
            container: name.to_string(),
            snapshot: None,
            pending: pending.clone(),
        };
        Ok::<_, Error>((vec![m], s))
    })?;
    let lost = store.read()?.containers.get(name).map_or(0, |c| {
        c.snapshots
            .keys()
            .filter(|k| *k != crate::commands::setup::INITIAL_STATE)
            .count()
    });
    let s_recreate = s.recreate;
    let plan = Plan {
        name,
        image,
        mounts: Mounts::Default,
        force: false,
        forced: &gated.forced,
        timeout: wait.max(Duration::from_secs(300)),
        quiet: ctx.quiet || !one,
    };
    let mut sink = Vec::new();
    provision::run(ctx, &mut store, s, &plan, &mut sink)?;
    let mut done = match (take_over, s_recreate) {
        (true, false) => format!("created from {image} (its interrupted create finished)"),
        _ => format!("re-created from {image}"),
    };
    if let Some(ip) = String::from_utf8_lossy(&sink).lines().find_map(|l| {
        l.trim()
            .strip_prefix("IPv4:")
            .map(|ip| ip.trim().to_string())
    }) {
        done.push_str(&format!(", running at {ip}"));
    }
    if lost > 0 {
        done.push_str(&format!(
            "; its {lost} other snapshot(s) went with the old instance (`ldm doctor` lists them)"
        ));
    }
    Ok(done)
}
