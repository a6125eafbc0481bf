//! `ldm trust [--yes] [--show [--json]] [--revoke]`: what the project asks
//! for beyond its folder, and the user's word on it for this checkout, as
//! `direnv allow` does for an `.envrc` (DESIGN.md, "What ldm trusts").

use std::io::Write;

use serde::Serialize;

use crate::cli::TrustArgs;
use crate::commands::gate::{self, Review};
use crate::commands::{op, text, Ctx};
use crate::trust::{self, Found, Item};
use crate::{say, Error};

/// `ldm trust`.
pub fn run(ctx: &Ctx, args: &TrustArgs, out: &mut dyn Write) -> Result<(), Error> {
    let store = ctx.store()?;
    let project = store.read()?;
    let r = gate::review(ctx, &store, &project)?;
    if args.revoke {
        let had = r.folder.revoke()?;
        return say(
            out,
            &if had {
                format!(
                    "Forgot what you allowed for {}; commands that would apply what the project asks for wait for `ldm trust` again",
                    r.dir.display()
                )
            } else {
                format!("Nothing was allowed for {}", r.dir.display())
            },
        );
    }
    let v = trust::judge(&r.found, &r.settings, &r.allowed);
    if args.show {
        return show(&r, &v.waiting, args.json, out);
    }
    if v.waiting.is_empty() {
        if !v.newly_off.is_empty() || !v.newly_seen.is_empty() {
            let (off, seen) = (v.newly_off.clone(), v.newly_seen.clone());
            r.folder.update_allowed(|a| {
                a.off.extend(off);
                a.seen.extend(seen);
            })?;
        }
        return say(
            out,
            &format!(
                "Nothing waits for your trust in {}: everything the project asks for beyond its folder is allowed",
                r.dir.display()
            ),
        );
    }
    say(
        out,
        &format!(
            "The project in {} asks for this beyond its folder:",
            r.dir.display()
        ),
    )?;
    for l in v.waiting.iter().flat_map(|f| f.lines()) {
        say(out, &format!("  - {}", text::escape(&l)))?;
    }
    out.flush().map_err(Error::Output)?;
    if !op::confirm("Allow these for this folder?", args.yes, "--yes")? {
        return Err(Error::Usage(
            "nothing was allowed; the commands that would apply them stay refused".into(),
        ));
    }
    let allowed = r
        .folder
        .update_allowed(|a| trust::allow_all(a, &r.found, &r.settings))?;
    say(
        out,
        &format!(
            "Allowed for {} (fingerprint {}); it asks again when the project asks for more",
            r.dir.display(),
            &allowed.digest[..16.min(allowed.digest.len())]
        ),
    )
}

#[derive(Serialize)]
struct Shown<'a> {
    dir: String,
    state: String,
    fingerprint: &'a str,
    allowed: Vec<&'a Item>,
    forced: Vec<String>,
    waiting: Vec<Waiting<'a>>,
}

#[derive(Serialize)]
struct Waiting<'a> {
    #[serde(flatten)]
    item: &'a Item,
    used_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<&'a str>,
}

fn show(r: &Review, waiting: &[Found], json: bool, out: &mut dyn Write) -> Result<(), Error> {
    if json {
        let shown = Shown {
            dir: r.dir.display().to_string(),
            state: r.folder.path().display().to_string(),
            fingerprint: &r.allowed.digest,
            allowed: r.allowed.items.iter().collect(),
            forced: r
                .allowed
                .forced
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            waiting: waiting
                .iter()
                .map(|f| Waiting {
                    item: &f.item,
                    used_by: f.uses.iter().map(|u| u.to_string()).collect(),
                    refused: f.refused.as_deref(),
                })
                .collect(),
        };
        return say(
            out,
            &serde_json::to_string_pretty(&shown).unwrap_or_default(),
        );
    }
    say(out, &format!("Project folder: {}", r.dir.display()))?;
    say(
        out,
        &format!("Kept in:        {}", r.folder.path().display()),
    )?;
    if r.allowed.is_empty() {
        say(out, "Allowed:        nothing")?;
    } else {
        say(out, "Allowed:")?;
        for i in &r.allowed.items {
            let forced = match i {
                Item::Mount { source, .. } if r.allowed.forced.contains(source) => {
                    " (you typed --force)"
                }
                _ => "",
            };
            say(
                out,
                &format!("  - {}{forced}", text::escape(&allowed_line(i))),
            )?;
        }
    }
    if waiting.is_empty() {
        say(out, "Waiting:        nothing")
    } else {
        say(out, "Waiting (`ldm trust` allows them):")?;
        for l in waiting.iter().flat_map(|f| f.lines()) {
            say(out, &format!("  - {}", text::escape(&l)))?;
        }
        Ok(())
    }
}

/// An allowed item in one line.
fn allowed_line(i: &Item) -> String {
    match i {
        Item::Remote { name } => format!("remote {name}"),
        Item::LxdProject { name } => format!("LXD project {name}"),
        Item::Mount { source, readonly } => format!(
            "mount {}{}",
            source.display(),
            if *readonly { " read-only" } else { "" }
        ),
        Item::Step { command } => format!("setup step: {command}"),
        Item::Script { path } => format!("setup script: {path}"),
        Item::Setting { scope, key } => format!("security.{key} for {scope}"),
    }
}
