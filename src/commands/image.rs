//! `ldm image create|list|delete|rename` and `ldm images`.

use std::io::Write;
use std::time::Duration;

use crate::cli::ImageList;
use crate::commands::op::{self, Progress};
use crate::commands::{gate, table, text, Ctx};
use crate::lxd::{Lxd, LxdError};
use crate::model::{Mutation, Op, Pending};
use crate::store::Store;
use crate::trust::Need;
use crate::{say, Error};

/// Prefix of the temporary snapshot `image create` publishes from.
pub const PUBLISH_PREFIX: &str = "ldm-publish-";

fn check_alias(alias: &str) -> Result<(), Error> {
    if alias.is_empty()
        || alias.starts_with('-')
        || alias.contains('/')
        || alias.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::Usage(format!(
            "invalid image alias {alias:?}: use letters, digits, '-', '_', '.' and ':', not starting with '-'"
        )));
    }
    Ok(())
}

/// "no image with alias X", naming `ldm image list`.
fn no_image(alias: &str) -> Error {
    Error::NotFound {
        what: format!("no image with alias {alias}"),
        next: "see `ldm image list`".into(),
    }
}

/// `ldm image create C ALIAS`: stop if running, snapshot, publish the
/// snapshot, remove the snapshot (even on failure), restart if it was running.
pub fn create(
    ctx: &Ctx,
    container: &str,
    alias: &str,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    check_alias(alias)?;
    let (mut store, _, gated) = gate::load(ctx, &Need::lxd())?;
    let owners = store.owners();
    let (_owner, mut pending) = op::claim(
        &store,
        Op::ImageCreate {
            alias: alias.to_string(),
            restart: false,
        },
    )?;
    let (lxd_name, remote, old) = store.commit(|p| {
        gated.recheck(p, &Need::lxd())?;
        let c = op::container(p, container)?;
        // Over an interrupted operation of its own kind only: its outcome
        // closes the intent, which must not close another's (a create).
        let old = op::may_begin(&owners, container, c, &pending.op)?;
        let m = Mutation::OperationStarted {
            container: container.to_string(),
            snapshot: None,
            pending: pending.clone(),
        };
        Ok::<_, Error>((vec![m], (p.lxd_name(container), p.remote.clone(), old)))
    })?;
    let lxd = ctx.lxd_at(remote.as_deref(), wait);
    let job = Publish {
        container,
        lxd_name: &lxd_name,
        alias,
        // An interrupted run may have stopped it already: its intent says so.
        restart: old.is_some_and(|o| o.op.restart()),
    };
    let result = publish(ctx, &*lxd, &mut store, &mut pending, &job);
    op::record(
        &mut store,
        vec![Mutation::OperationFinished {
            container: container.to_string(),
            snapshot: None,
        }],
    )?;
    result?;
    say(out, &format!("Created image {alias} from {container}; use it with `ldm container create NAME {alias}`"))
}

/// One `image create`: which container, under which alias, and whether an
/// interrupted run left it stopped while it had been running.
struct Publish<'a> {
    container: &'a str,
    lxd_name: &'a str,
    alias: &'a str,
    restart: bool,
}

fn publish(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    store: &mut Store,
    pending: &mut Pending,
    job: &Publish,
) -> Result<(), Error> {
    let (lxd_name, alias) = (job.lxd_name, job.alias);
    let inst = op::instance(lxd, lxd_name)?;
    // Our claim means no live `image create` owns this container, so any
    // temporary snapshot is a dead one's leftover.
    for s in inst
        .snapshots
        .iter()
        .filter(|s| s.name.starts_with(PUBLISH_PREFIX))
    {
        match lxd.delete_snapshot(lxd_name, &s.name) {
            Ok(()) | Err(LxdError::NotFound { .. }) => {}
            Err(e) => {
                return Err(Error::lxd(format!(
                    "deleting the leftover snapshot {lxd_name}/{}",
                    s.name
                ))(e))
            }
        }
    }
    let running = inst.is_running();
    let was_running = running || job.restart;
    if was_running {
        op::mark_restart(store, job.container, pending)?;
    }
    let mut progress = Progress::new(ctx.quiet, 4);
    progress.step(&format!(
        "Stopping {lxd_name}{}",
        if running { "" } else { " (already stopped)" }
    ));
    if running {
        match lxd.stop(lxd_name) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
            Err(e) => return Err(Error::lxd(format!("stopping {lxd_name}"))(e)),
        }
    }
    let snap = format!("{PUBLISH_PREFIX}{}", std::process::id());
    progress.step(&format!("Taking snapshot {snap}"));
    let taken = lxd
        .snapshot(lxd_name, &snap)
        .map_err(Error::lxd(format!("snapshotting {lxd_name}")));
    let published = taken.and_then(|()| {
        progress.step(&format!("Publishing {lxd_name}/{snap} as {alias}"));
        lxd.publish(lxd_name, &snap, alias).map_err(|e| match e {
            LxdError::AlreadyExists { .. } => Error::Conflict {
                what: format!("an image alias {alias} exists already"),
                next: format!("pick another, or `ldm image delete {alias}` first"),
            },
            e => Error::lxd(format!("publishing {lxd_name}/{snap}"))(e),
        })
    });
    progress.step("Cleaning up");
    let removed = match lxd.delete_snapshot(lxd_name, &snap) {
        Ok(()) | Err(LxdError::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::lxd(format!(
            "deleting the temporary snapshot {lxd_name}/{snap}"
        ))(e)),
    };
    let restarted = if was_running {
        match lxd.start(lxd_name) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => Ok(()),
            Err(e) => Err(Error::lxd(format!("restarting {lxd_name}"))(e)),
        }
    } else {
        Ok(())
    };
    published.and(removed).and(restarted)
}

/// `ldm image list [--all] [--json]`.
pub fn list(ctx: &Ctx, args: &ImageList, out: &mut dyn Write) -> Result<(), Error> {
    let lxd = ctx.lxd_without_project(&Need::nothing())?;
    let mut images = lxd.images().map_err(Error::lxd("listing images"))?;
    if !args.all {
        images.retain(|i| !i.aliases.is_empty());
    }
    if args.json {
        return say(
            out,
            &serde_json::to_string_pretty(&images).unwrap_or_default(),
        );
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            let alias = if i.aliases.is_empty() {
                "-".to_string()
            } else {
                i.aliases.join(", ")
            };
            let fp: String = i.fingerprint.chars().take(12).collect();
            vec![
                alias,
                fp,
                format!("{:.1} MB", i.size as f64 / 1e6),
                i.description.clone(),
            ]
        })
        .collect();
    table::print(out, &["ALIAS", "FINGERPRINT", "SIZE", "DESCRIPTION"], &rows)
}

/// `ldm image delete ALIAS [-f]`.
pub fn delete(ctx: &Ctx, alias: &str, force: bool, out: &mut dyn Write) -> Result<(), Error> {
    let lxd = ctx.lxd_without_project(&Need::lxd())?;
    if !force {
        let images = lxd.images().map_err(Error::lxd("listing images"))?;
        let image = images
            .iter()
            .find(|i| i.aliases.iter().any(|a| a == alias))
            .ok_or_else(|| no_image(alias))?;
        eprintln!(
            "{alias}: {} ({:.1} MB) {}",
            text::escape(&image.fingerprint.chars().take(12).collect::<String>()),
            image.size as f64 / 1e6,
            text::escape(&image.description)
        );
        if !op::confirm(&format!("Delete image {alias}?"), false, "--force")? {
            return say(out, "Cancelled");
        }
    }
    lxd.delete_image(alias).map_err(|e| match e {
        LxdError::NotFound { .. } => no_image(alias),
        e => Error::lxd(format!("deleting image {alias}"))(e),
    })?;
    say(out, &format!("Deleted image {alias}"))
}

/// `ldm image rename OLD NEW`: one server-side alias rename, so a failure
/// never leaves both aliases or neither.
pub fn rename(ctx: &Ctx, old: &str, new: &str, out: &mut dyn Write) -> Result<(), Error> {
    check_alias(new)?;
    let lxd = ctx.lxd_without_project(&Need::lxd())?;
    lxd.rename_alias(old, new).map_err(|e| match e {
        LxdError::NotFound { .. } => no_image(old),
        LxdError::AlreadyExists { .. } => Error::Conflict {
            what: format!("an image alias {new} exists already"),
            next: format!("pick another name, or `ldm image delete {new}` first"),
        },
        e => Error::lxd(format!("renaming image alias {old} to {new}"))(e),
    })?;
    say(out, &format!("Renamed image {old} to {new}"))
}
