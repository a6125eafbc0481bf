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
use crate::lxd::{Lxd, LxdError};
use crate::model::{Mutation, Op, Project};
use crate::trust::Need;
use crate::{say, Error};

use super::updown_plan::{describe, not_elsewhere, plan, Action};

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
