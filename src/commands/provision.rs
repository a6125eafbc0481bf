//! The LXD steps that make a recorded container real, shared by `container
//! create` (and its resumption) and `ldm up` (re-creating a container LXD
//! no longer has): launch, boot, user, mounts, setup steps,
//! `initial-state`, IPv4. Each step is idempotent, so a re-run after a
//! crash or a failed setup step goes on where the last one stopped.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::commands::container::{finish, launch, rerun_hint, Started};
use crate::commands::first_boot;
use crate::commands::mounts::{self, Attached, Ids};
use crate::commands::op::{self, Progress};
use crate::commands::setup::{self, launch_config};
use crate::commands::sources::{self, Judged};
use crate::commands::steps;
use crate::commands::{gate, text, Ctx};
use crate::lxd::Lxd;
use crate::model::{Mount, Mutation, Op};
use crate::store::Store;
use crate::trust::Item;
use crate::{say, Error};

/// Which mounts a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounts {
    /// Those recorded for it, else the project's defaults.
    Default,
    /// None (`--no-mount`), except those recorded already.
    None,
}

/// What to provision.
pub struct Plan<'a> {
    /// Container name.
    pub name: &'a str,
    /// Image to launch.
    pub image: &'a str,
    /// Which mounts.
    pub mounts: Mounts,
    /// Mount refused host folders anyway (`--force` typed).
    pub force: bool,
    /// Refused host folders the user forced before (what they allowed).
    pub forced: &'a BTreeSet<PathBuf>,
    /// Boot wait.
    pub timeout: Duration,
    /// No progress lines (`-q`, or one of many in parallel); setup
    /// output still shows unless `-q`.
    pub quiet: bool,
}

/// Runs every step for `s` and records the outcome; prints how to get in.
pub fn run(
    ctx: &Ctx,
    store: &mut Store,
    mut s: Started,
    plan: &Plan,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (name, image) = (plan.name, plan.image);
    let lxd = ctx.lxd_at(s.remote.as_deref(), plan.timeout);
    let hint = rerun_hint(name, &Op::Create);
    let lxd_name = s.lxd_name.clone();
    let lxd_name = lxd_name.as_str();
    let dir = store.paths().dir.clone();
    let wanted = wanted_mounts(&s, plan, &dir);
    let mut progress = Progress::new(
        plan.quiet,
        5 + usize::from(!wanted.is_empty()) + usize::from(!s.steps.is_empty()),
    );
    progress.step(&format!(
        "Launching {lxd_name} from {}",
        text::escape(image)
    ));
    let config = launch_config(&s.settings);
    // The host folders are judged before the launch: only a container
    // that gets mounts has its user's ids mapped before its first boot.
    let resolved = judge(ctx, &dir, &wanted, plan)?;
    let one_boot = match resolved.is_empty() {
        true => None,
        false => first_boot::host_for(&*lxd, &dir)?.map(|host| first_boot::OneBoot {
            host,
            quiet: plan.quiet,
        }),
    };
    let planned = launch(
        store,
        &*lxd,
        &s,
        name,
        image,
        &config,
        &progress,
        one_boot.as_ref(),
    )?;
    progress.step(&format!("Waiting for {lxd_name} to finish booting"));
    setup::wait_ready(&*lxd, lxd_name, plan.timeout, &hint)?;
    progress.step(&format!("Creating user {} with sudo, enabling SSH", s.user));
    setup::user(&*lxd, lxd_name, &s.user, &s.password, planned, &hint)?;
    let mut later = None;
    if !wanted.is_empty() {
        progress.step(&format!("Mounting {}", list(&wanted)));
        later = mount(store, &*lxd, &s, &resolved, plan, &progress, planned)?;
    }
    if !s.steps.is_empty() {
        progress.step(&format!("Running {} setup step(s)", s.steps.len()));
        // A mount left for later (the one-time root step) is not there yet.
        let workdir = match later {
            None => steps::workdir(&wanted),
            Some(_) => String::new(),
        };
        let run = steps::Run {
            name,
            timeout: ctx.step_timeout,
            lxd_name,
            user: &s.user,
            workdir: &workdir,
            quiet: ctx.quiet,
            hint: format!(
                "; {name} is kept: fix the step and run `ldm container create {name}` to resume at it, or `ldm remove {name}`"
            ),
        };
        let steps = s.steps.clone();
        steps::run(&*lxd, store, &mut s.pending, &steps, &run)?;
    }
    progress.step(&format!("Taking snapshot {}", setup::INITIAL_STATE));
    setup::snapshot_initial(&*lxd, lxd_name, s.resumed, &hint)?;
    progress.step("Waiting for an IPv4 address");
    let ip = setup::wait_ipv4(&*lxd, lxd_name, Duration::from_secs(30))?;
    finish(store, name)?;
    let verb = if s.recreate { "Re-created" } else { "Created" };
    say(
        out,
        &format!("{verb} {name} ({lxd_name}) from {}", text::escape(image)),
    )?;
    setup::print_access(out, name, ip.as_deref(), &s.user, &s.password)?;
    if let Some(note) = later {
        say(out, &note)?;
    }
    Ok(())
}

/// The mounts this run should have in place: those recorded, else a new
/// container's (with its git folders read-only, [`guard_git`]).
fn wanted_mounts(s: &Started, plan: &Plan, dir: &Path) -> Vec<Mount> {
    if !s.mounts.is_empty() {
        return s.mounts.clone();
    }
    if plan.mounts == Mounts::None || s.recreate {
        return Vec::new();
    }
    if let Some(remote) = &s.remote {
        if !plan.quiet {
            eprintln!(
                "note: the project's LXD is the remote {remote}: the project folder is not on that server, so {} gets no mount (copy files with `ldm mv`)",
                plan.name
            );
        }
        return Vec::new();
    }
    guard_git(dir, &s.default_mounts)
}

/// `mounts` and, for each read-write one of a folder of the project that
/// holds a `.git` (a folder, or a worktree's file), a read-only mount of
/// that `.git` over it. The host's git runs what `.git/config` and
/// `.git/hooks` name (`core.fsmonitor` on every `git status`, which shell
/// prompts run): a container that could write them would run commands as
/// the host user (review-trust finding 4). Git inside the container still
/// reads the repository (`status`, `diff`, `log`); committing is the
/// host's. A `.git` that is a link is left alone (a device would follow
/// it), as is one under a mount from outside the project (its read-only
/// mount would itself wait for trust).
pub fn guard_git(dir: &Path, mounts: &[Mount]) -> Vec<Mount> {
    let mut out = mounts.to_vec();
    for m in mounts.iter().filter(|m| !m.readonly) {
        let src = crate::trust::sources::resolve(dir, &m.host);
        if !src.inside || !src.is_dir {
            continue;
        }
        let is_git = std::fs::symlink_metadata(src.path.join(".git"))
            .is_ok_and(|md| md.is_dir() || md.is_file());
        let path = format!("{}/.git", m.path.trim_end_matches('/'));
        if !is_git || out.iter().any(|x| x.path == path) {
            continue;
        }
        let host = match m.host.trim_end_matches('/') {
            "." | "" => ".git".to_string(),
            h => format!("{h}/.git"),
        };
        out.push(Mount {
            host,
            path,
            readonly: true,
        });
    }
    out
}

fn list(mounts: &[Mount]) -> String {
    mounts
        .iter()
        .map(Mount::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mounts of `wanted` whose host folders may be mounted, each with its
/// resolved path; a refused one is left out, said. Sources the user forced
/// by typing `--force` are remembered as allowed.
fn judge(
    ctx: &Ctx,
    dir: &Path,
    wanted: &[Mount],
    plan: &Plan,
) -> Result<Vec<(Mount, PathBuf)>, Error> {
    let mut resolved = Vec::new();
    let mut typed = Vec::new();
    for m in wanted {
        match sources::judge(dir, m, plan.force, plan.forced)? {
            Judged::Mount(path) => resolved.push((m.clone(), path)),
            Judged::Forced { path, typed: t } => {
                if t {
                    typed.push((m.readonly, path.clone()));
                }
                resolved.push((m.clone(), path));
            }
            Judged::Refused { why, forceable, .. } => {
                let how = if forceable {
                    format!(
                        "; if you mean it, mount it yourself with `ldm mount {} {} --force`",
                        plan.name,
                        text::escape(&m.to_string())
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "{}: not mounting {}: {}{how}",
                    plan.name,
                    text::escape(&m.to_string()),
                    text::escape(&why)
                );
            }
        }
    }
    if !typed.is_empty() {
        let items = typed
            .iter()
            .map(|(readonly, source)| Item::Mount {
                source: source.clone(),
                readonly: *readonly,
            })
            .collect();
        gate::allow_typed(ctx, dir, items, typed.into_iter().map(|(_, p)| p).collect())?;
    }
    Ok(resolved)
}

/// Adds the mounts `resolved` and records them. `planned`: the ids the
/// user was to get before the first boot, whose `raw.idmap` is in place;
/// when the user got others, the mapping is replaced and the container
/// restarted, said on stderr. Returns the note to print when the one-time
/// root step is missing (the container is created without them).
fn mount(
    store: &mut Store,
    lxd: &dyn Lxd,
    s: &Started,
    resolved: &[(Mount, PathBuf)],
    plan: &Plan,
    progress: &Progress,
    planned: Option<Ids>,
) -> Result<Option<String>, Error> {
    if resolved.is_empty() {
        return Ok(None);
    }
    let dir = store.paths().dir.clone();
    let user = mounts::user_ids(lxd, &s.lxd_name, &s.user)?;
    if let Some(p) = planned.filter(|p| *p != user) {
        if !plan.quiet {
            eprintln!(
                "note: {}: {} has uid {} gid {}, not the uid {} gid {} mapped before the first boot (a user made at first boot took them?); restarting it once to map them",
                s.lxd_name, s.user, user.uid, user.gid, p.uid, p.gid
            );
        }
    }
    let target = mounts::Target {
        lxd_name: &s.lxd_name,
        host: mounts::host_ids(&dir),
        user,
        mounts: resolved,
        replace_own: true,
    };
    let done: Vec<&Mount> = resolved.iter().map(|(m, _)| m).collect();
    match mounts::attach(lxd, &target, plan.timeout, progress)? {
        Attached::Done { how, .. } => {
            progress.note(&format!("mounted with {how}"));
            let new: Vec<Mutation> = done
                .iter()
                .filter(|m| !s.mounts.contains(m))
                .map(|m| Mutation::MountAdded {
                    container: plan.name.to_string(),
                    mount: m.to_string(),
                })
                .collect();
            if !new.is_empty() {
                op::record(store, new)?;
            }
            Ok(None)
        }
        Attached::NeedsRoot { command } => {
            let done: Vec<Mount> = done.into_iter().cloned().collect();
            Ok(Some(needs_root(plan.name, &done, &command)))
        }
        Attached::Root(why) => Ok(Some(format!("Not mounted: {why}"))),
        Attached::Remote { remote } => Ok(Some(format!(
            "Not mounted: {}",
            mounts::remote_words(&remote)
        ))),
    }
}

/// What to run when mounting needs the one-time root step.
pub fn needs_root(name: &str, wanted: &[Mount], command: &str) -> String {
    let then: Vec<String> = wanted
        .iter()
        .map(|m| format!("  ldm mount {name} {m}"))
        .collect();
    format!(
        "Not mounted: mapping your uid to the container user (raw.idmap; never an idmapped mount, which would let the container's root act as host root in it) needs a one-time step as root:\n  {command}\nthen:\n{}",
        then.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Mount {
        Mount::parse(text).unwrap()
    }

    /// Review-trust finding 4: a `.git` folder or a worktree's `.git` file
    /// of a read-write mount of the project gets a read-only mount over
    /// it; a link, a read-only mount, one from outside the project and a
    /// path already mounted do not.
    #[test]
    fn a_git_folder_or_file_under_a_read_write_project_mount_is_mounted_read_only() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let (dir, out) = (root.join("p"), root.join("out"));
        for d in [
            dir.join(".git"),
            dir.join("wt"),
            dir.join("ln"),
            out.join(".git"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(dir.join("wt/.git"), "gitdir: /elsewhere\n").unwrap();
        std::os::unix::fs::symlink(dir.join(".git"), dir.join("ln/.git")).unwrap();
        let shown = |ms: &[Mount]| -> Vec<String> {
            guard_git(&dir, ms).iter().map(Mount::to_string).collect()
        };
        assert_eq!(
            shown(&[m(".:/home/dev/p")]),
            [".:/home/dev/p", ".git:/home/dev/p/.git:ro"]
        );
        assert_eq!(
            shown(&[m("wt:/srv/wt")]),
            ["wt:/srv/wt", "wt/.git:/srv/wt/.git:ro"]
        );
        for alone in [
            m(".:/srv/p:ro"),
            m("ln:/srv/ln"),
            m(&format!("{}:/srv/out", out.display())),
        ] {
            assert_eq!(shown(std::slice::from_ref(&alone)), [alone.to_string()]);
        }
        let both = [m(".:/srv/p"), m(".git:/srv/p/.git")];
        assert_eq!(shown(&both), [".:/srv/p", ".git:/srv/p/.git"]);
    }
}
