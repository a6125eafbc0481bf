//! `ldm create` / `ldm project create`.

use std::io::Write;

use crate::cli::ProjectCreate;
use crate::commands::Ctx;
use crate::model::{validate, Project};
use crate::store::Store;
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
    let store = Store::create(&ctx.start, &project, ctx.opts.clone())?;
    say(
        out,
        &format!("Created project {name} in {}", store.paths().yaml.display()),
    )?;
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
