//! `ldm create` / `ldm project create`.

use std::io::Write;

use crate::cli::{ProjectCreate, DEFAULT_WAIT};
use crate::commands::{gate, ignore, Ctx};
use crate::model::{validate, Project};
use crate::store::Store;
use crate::trust::Item;
use crate::{say, Error};

/// Writes a new `containers.yaml` (and an empty log) in the start folder.
pub fn create(ctx: &Ctx, args: &ProjectCreate, out: &mut dyn Write) -> Result<(), Error> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(ctx)?,
    };
    validate::project_name(&name)?;
    let ports = match &args.ports {
        Some(p) => validate::parse_ports(p)?,
        None => Vec::new(),
    };
    let mut project = Project::new(&name, ports);
    if let Some(r) = &args.remote {
        validate::remote(r)?;
        project.remote = Some(r.clone());
    }
    if let Some(p) = &args.lxd_project {
        validate::lxd_project(p)?;
        project.lxd_project = Some(p.clone());
        // Before the file: a server that will not make it leaves nothing.
        let lxd = ctx.lxd_at(project.remote.as_deref(), DEFAULT_WAIT);
        let made = lxd.ensure_project(p).map_err(Error::lxd(format!(
            "making LXD project {p} (nothing was created; without --lxd-project the containers go in the client's current project)"
        )))?;
        if made && !ctx.quiet {
            eprintln!("Made LXD project {p} (it shares the default project's images and profiles)");
        }
    }
    let store = Store::create(&ctx.start, &project, ctx.opts.clone())?;
    let dir = store.paths().dir.clone();
    // This log is ldm's own in this checkout; a remote typed here is allowed.
    if let Ok(Some(log)) = store.log_identity() {
        gate::remember_log(ctx, &dir, &log);
    }
    // A remote and an LXD project typed here are allowed.
    let typed: Vec<Item> = (args.remote.iter().map(|r| Item::Remote { name: r.clone() }))
        .chain(
            args.lxd_project
                .iter()
                .map(|p| Item::LxdProject { name: p.clone() }),
        )
        .collect();
    if !typed.is_empty() {
        gate::allow_typed(ctx, &dir, typed, Vec::new())?;
    }
    say(
        out,
        &format!("Created project {name} in {}", store.paths().yaml.display()),
    )?;
    if ignore::in_git_work_tree(&dir) {
        match ignore::write(&dir) {
            Ok(Some(path)) if !ctx.quiet => eprintln!(
                "Wrote rules to {} so that git ignores ldm's own files (containers.log, the locks, temporary files, backups); commit it with containers.yaml",
                path.display()
            ),
            Ok(_) => {}
            Err(e) => eprintln!(
                "ldm: could not add ignore rules to {}: {e}; add these lines so that `git add -A` does not commit ldm's own files:\n{}",
                dir.join(".gitignore").display(),
                ignore::rules()
            ),
        }
    }
    if !ctx.quiet {
        eprintln!("Next: ldm container create NAME IMAGE");
    }
    Ok(())
}

fn default_name(ctx: &Ctx) -> Result<String, Error> {
    let folder = ctx.start.file_name().ok_or_else(|| {
        Error::Usage("this folder has no name to use as the project name; pass --name NAME".into())
    })?;
    let name = folder.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "the folder name {} is not valid UTF-8; pass --name NAME",
            folder.to_string_lossy()
        ))
    })?;
    validate::project_name(name).map_err(|e| {
        Error::Usage(format!(
            "the folder name cannot be the project name ({e}); pass --name NAME"
        ))
    })?;
    Ok(name.to_string())
}
