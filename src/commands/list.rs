//! `ldm list [--json]`: the project's containers with LXD's view of them,
//! in one LXD call however many containers there are.

use std::io::Write;

use serde::Serialize;

use crate::cli::DEFAULT_WAIT;
use crate::commands::{gate, op, style, table, text, Ctx};
use crate::lxd::owner::Owner;
use crate::lxd::{Instance, Lxd};
use crate::model::Project;
use crate::store::Owners;
use crate::trust::Need;
use crate::{say, Error};

/// The status of a recorded container LXD does not have.
const NOT_FOUND: &str = "NOT FOUND";
/// The status of a recorded name another checkout's instance has.
const ANOTHERS: &str = "ANOTHER CHECKOUT'S";

/// One container in `list --json` (schema documented in README).
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    lxd_name: String,
    image: String,
    /// LXD status upper-cased, `NOT FOUND`, or the pending operation.
    status: String,
    ipv4: Option<String>,
    ports: Vec<u16>,
    snapshots: usize,
    /// Recorded mounts, `HOST:CONTAINER[:ro]`.
    mounts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<PendingRow>,
    /// The setup step that failed, if the last run stopped at one.
    #[serde(skip_serializing_if = "Option::is_none")]
    setup_failed_at: Option<u32>,
}

#[derive(Debug, Serialize)]
struct PendingRow {
    op: String,
    pid: u32,
    started_at: String,
    interrupted: bool,
}

/// Prints the table (or JSON).
pub fn run(ctx: &Ctx, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let (store, project, _) = gate::load(ctx, &Need::nothing())?;
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    let instances = lxd.list().map_err(Error::lxd("listing LXD instances"))?;
    let rows = rows(&store.owners(), &project, &instances);
    note_strays(ctx, &project, &instances);
    note_theirs(ctx, &project, &instances);
    note_elsewhere(ctx, &*lxd, &rows);
    if json {
        return say(
            out,
            &serde_json::to_string_pretty(&rows).unwrap_or_default(),
        );
    }
    if rows.is_empty() {
        return say(out, &format!("No containers in project {} yet; create one with `ldm container create NAME IMAGE`", project.project));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let ports = r
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            vec![
                r.name.clone(),
                r.image.clone(),
                r.status.clone(),
                r.ipv4.clone().unwrap_or_else(|| "-".into()),
                ports,
                if r.mounts.is_empty() {
                    "-".into()
                } else {
                    r.mounts.join(",")
                },
            ]
        })
        .collect();
    table::print_styled(
        out,
        &["NAME", "IMAGE", "STATUS", "IPV4", "PORTS", "MOUNTS"],
        &cells,
        ctx.style,
        &|col, text| (col == 2).then(|| style::status_color(text)).flatten(),
    )
}

/// One row per recorded container, with LXD's view and any operation.
fn rows(owners: &Owners, project: &Project, instances: &[Instance]) -> Vec<Row> {
    project
        .containers
        .iter()
        .map(|(name, c)| {
            let lxd_name = project.lxd_name(name);
            let inst = instances.iter().find(|i| i.name == lxd_name);
            // The container's own operation, else one on a snapshot.
            let busy = c
                .pending
                .as_ref()
                .or_else(|| c.snapshots.values().find_map(|s| s.pending.as_ref()));
            let pending = busy.map(|p| PendingRow {
                op: p.op.noun().to_string(),
                pid: p.owner.pid,
                started_at: p.started_at.clone(),
                interrupted: !op::is_alive(owners, p),
            });
            let theirs = inst.is_some_and(|i| matches!(i.owner, Owner::Other(_)));
            let inst = inst.filter(|_| !theirs);
            let status = match (busy, inst) {
                _ if theirs => ANOTHERS.to_string(),
                (Some(p), _) => op::describe(owners, p),
                (None, Some(i)) => i.status.to_uppercase(),
                (None, None) => NOT_FOUND.to_string(),
            };
            Row {
                name: name.clone(),
                image: c.image.clone(),
                status,
                ipv4: inst.and_then(|i| i.ipv4.clone()),
                ports: project.effective_ports(name).to_vec(),
                snapshots: c.snapshots.len(),
                mounts: c.mounts.iter().map(|m| m.to_string()).collect(),
                setup_failed_at: c
                    .pending
                    .as_ref()
                    .and_then(|p| p.setup.clone())
                    .and_then(|s| s.failed),
                pending,
                lxd_name,
            }
        })
        .collect()
}

/// One stderr note when containers LXD lacks are in another LXD project
/// (the client's current project changed since they were made). Asks LXD
/// only when a row is NOT FOUND; a failure to ask is said, not fatal.
fn note_elsewhere(ctx: &Ctx, lxd: &dyn Lxd, rows: &[Row]) {
    if ctx.quiet || !rows.iter().any(|r| r.status == NOT_FOUND) {
        return;
    }
    let other = match lxd.elsewhere() {
        Ok(other) => other,
        Err(e) => {
            op::note_unchecked(&e);
            return;
        }
    };
    for r in rows.iter().filter(|r| r.status == NOT_FOUND) {
        if let Some(a) = op::find_away(&other, &r.lxd_name) {
            eprintln!("note: {} is NOT FOUND: {}", r.name, op::away(a));
        }
    }
}

/// One stderr line per recorded container whose LXD name another
/// checkout's instance has: whose, and what to do.
fn note_theirs(ctx: &Ctx, project: &Project, instances: &[Instance]) {
    if ctx.quiet {
        return;
    }
    for name in project.containers.keys() {
        let full = project.lxd_name(name);
        let found = instances.iter().find(|i| i.name == full);
        if let Some(Owner::Other(theirs)) = found.map(|i| &i.owner) {
            let line = format!("note: LXD's {full} {}", theirs.said);
            eprintln!("{}", text::escape(&line));
        }
    }
}

/// One stderr note for instances named like the project's that it does
/// not record (`doctor` says what to do with them).
fn note_strays(ctx: &Ctx, project: &Project, instances: &[Instance]) {
    let prefix = format!("{}-", project.project);
    // Never another checkout's or an unmarked one: `doctor` adopts only
    // this checkout's own by their marks.
    let strays: Vec<&str> = instances
        .iter()
        .filter(|i| matches!(i.owner, Owner::Ours | Owner::Moved { .. } | Owner::Unknown))
        .map(|i| i.name.as_str())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|c| !project.containers.contains_key(c))
        })
        .collect();
    if !strays.is_empty() && !ctx.quiet {
        eprintln!(
            "note: LXD has {} instance(s) named like this project's but not recorded ({}); see `ldm doctor`",
            strays.len(),
            text::escape(&strays.join(", "))
        );
    }
}
