//! `ldm mv SRC DST [-y]`: copy files between the host and containers, or
//! between containers. `NAME:/path` names a container path; NAME may be `*`
//! or `prefix*` to fan out; `~` is the container user's home. Files end up
//! owned by the container's user. Every path travels as one argv element.

// Over 400 lines with its tests (about 35): copying both ways, with the
// path rules they pin.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Mv, DEFAULT_WAIT};
use crate::commands::style::Color;
use crate::commands::{gate, op, setup, text, Ctx};
use crate::lxd::{Lxd, LxdError};
use crate::model::Project;
use crate::trust::Need;
use crate::{say, Error};

/// Says what a container path is: `dir`, `parent` (missing, parent exists)
/// or `missing` (parent missing too). The path is `$1`, never spliced in.
const PROBE: &str = r#"if [ -d "$1" ]; then echo dir; elif [ -e "$1" ]; then echo file; elif [ -d "$(dirname "$1")" ]; then echo parent; else echo missing; fi"#;

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Host(PathBuf),
    Container { pattern: String, path: String },
}

fn parse(arg: &str) -> End {
    if let Some((name, path)) = arg.split_once(':') {
        let plausible = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*');
        if plausible && !path.is_empty() {
            return End::Container {
                pattern: name.to_string(),
                path: path.to_string(),
            };
        }
    }
    End::Host(PathBuf::from(arg))
}

/// Containers matching `*`, `prefix*` or an exact name.
fn expand(project: &Project, pattern: &str) -> Result<Vec<String>, Error> {
    if let Some(prefix) = pattern.strip_suffix('*') {
        let names: Vec<String> = project
            .containers
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        if names.is_empty() {
            return Err(Error::NotFound {
                what: format!("no container matches {pattern}"),
                next: "see `ldm list`".into(),
            });
        }
        return Ok(names);
    }
    op::container(project, pattern).map_err(|e| match e {
        Error::NotFound { what, next } => Error::NotFound {
            what,
            next: format!(
                "{next}; for a file on this machine whose name has a ':', write ./{pattern}:..."
            ),
        },
        e => e,
    })?;
    Ok(vec![pattern.to_string()])
}

/// The absolute path `path` means in `container`: `~` is the user's home,
/// relative paths start there too.
fn resolve(project: &Project, container: &str, path: &str) -> String {
    let user = project.effective_user(container).0;
    let home = if user == "root" {
        "/root".to_string()
    } else {
        format!("/home/{user}")
    };
    if path == "~" {
        home
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{home}/{path}")
    }
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    }
}

fn base(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs the copy; prints one ✓/✗ line per destination container.
pub fn run(ctx: &Ctx, args: &Mv, out: &mut dyn Write) -> Result<(), Error> {
    let (src, dst) = (parse(&args.src), parse(&args.dst));
    let project = match (&src, &dst) {
        (End::Host(_), End::Host(_)) => {
            return Err(Error::Usage(format!(
                "neither {} nor {} names a container; write container paths as NAME:/path, e.g. dev:/home/dev/{}",
                args.src,
                args.dst,
                Path::new(&args.dst).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into())
            )))
        }
        _ => gate::load(ctx, &Need::lxd())?.1,
    };
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    let lxd = &*lxd;
    match (src, dst) {
        (End::Host(from), End::Container { pattern, path }) => {
            if !from.exists() {
                return Err(Error::NotFound {
                    what: format!("{}: no such file or folder on this machine", from.display()),
                    next: "check the path".into(),
                });
            }
            fan_out(ctx, lxd, &project, &from, &pattern, &path, args.yes, out)
        }
        (End::Container { pattern, path }, End::Host(to)) => {
            let name = single(&project, &pattern)?;
            pull(lxd, &project, &name, &path, &to)?;
            say(
                out,
                &format!(
                    "✓ {name}:{} -> {}",
                    text::escape(&resolve(&project, &name, &path)),
                    text::escape(&to.display().to_string())
                ),
            )
        }
        (
            End::Container {
                pattern: sp,
                path: spath,
            },
            End::Container { pattern, path },
        ) => {
            let name = single(&project, &sp)?;
            // A fresh private folder (0700, random name): nobody else can
            // plant or read files in it.
            let tmp_dir = tempfile::Builder::new()
                .prefix("ldm-mv-")
                .tempdir()
                .map_err(Error::io(
                    "create a temporary folder in",
                    Some(&std::env::temp_dir()),
                ))?;
            let tmp = tmp_dir.path().to_path_buf();
            let from_path = resolve(&project, &name, &spath);
            let local = tmp.join(base(Path::new(&from_path)));
            let result = pull(lxd, &project, &name, &spath, &tmp)
                .and_then(|()| fan_out(ctx, lxd, &project, &local, &pattern, &path, args.yes, out));
            drop(tmp_dir);
            result
        }
        (End::Host(_), End::Host(_)) => Ok(()),
    }
}

fn single(project: &Project, pattern: &str) -> Result<String, Error> {
    let names = expand(project, pattern)?;
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Usage(format!(
            "a source must be one container, but {pattern} matches {}",
            names.join(", ")
        ))),
    }
}

fn pull(lxd: &dyn Lxd, project: &Project, name: &str, path: &str, to: &Path) -> Result<(), Error> {
    let lxd_name = project.lxd_name(name);
    let path = resolve(project, name, path);
    let kind = probe(lxd, name, &lxd_name, &path)?;
    if kind != "dir" && kind != "file" {
        return Err(Error::NotFound {
            what: format!("{name}:{}: no such file or folder", text::escape(&path)),
            next: format!(
                "see `ldm ssh {name} -- ls -la {}`",
                text::escape(&parent(&path))
            ),
        });
    }
    lxd.pull(&lxd_name, &path, to, kind == "dir")
        .map_err(Error::lxd(format!(
            "copying {name}:{path} to {}",
            to.display()
        )))
}

fn probe(lxd: &dyn Lxd, name: &str, lxd_name: &str, path: &str) -> Result<String, Error> {
    let argv = ["sh", "-c", PROBE, "sh", path];
    let out = match setup::exec_when_ready(lxd, lxd_name, &argv, b"", setup::EXEC_START) {
        Err(LxdError::NotRunning { .. }) => {
            return Err(Error::NotRunning {
                name: name.to_string(),
                status: "not running".into(),
            })
        }
        r => r.map_err(Error::lxd(format!("looking at {path} in {lxd_name}")))?,
    };
    if out.code != 0 {
        return Err(in_container(&format!("looking at {path}"), lxd_name, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn in_container(doing: &str, lxd_name: &str, out: &crate::lxd::ExecOutput) -> Error {
    Error::InContainer {
        doing: text::escape(doing),
        instance: lxd_name.to_string(),
        code: out.code,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        hint: String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn fan_out(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    project: &Project,
    from: &Path,
    pattern: &str,
    path: &str,
    yes: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let names = expand(project, pattern)?;
    let mut failed = 0;
    for name in &names {
        match push(ctx, lxd, project, from, name, path, yes) {
            Ok(Some(dest)) => say(
                out,
                &format!(
                    "{} {name}:{}",
                    ctx.style.paint("✓", Some(Color::Green)),
                    text::escape(&dest)
                ),
            )?,
            Ok(None) => say(
                out,
                &format!(
                    "{} {name}: skipped (folder not created)",
                    ctx.style.paint("✗", Some(Color::Yellow))
                ),
            )?,
            Err(e) => {
                failed += 1;
                say(
                    out,
                    &format!(
                        "{} {name}: {}",
                        ctx.style.paint("✗", Some(Color::Red)),
                        text::escape_lines(&e.to_string())
                    ),
                )?;
            }
        }
    }
    match failed {
        0 => Ok(()),
        failed => Err(Error::SomeFailed {
            failed,
            total: names.len(),
        }),
    }
}

/// Copies host `from` into `name`; `None` if the user declined to create the folder.
fn push(
    _ctx: &Ctx,
    lxd: &dyn Lxd,
    project: &Project,
    from: &Path,
    name: &str,
    path: &str,
    yes: bool,
) -> Result<Option<String>, Error> {
    let lxd_name = project.lxd_name(name);
    let user = project.effective_user(name).0;
    let path = resolve(project, name, path);
    let into_dir = path.ends_with('/') || probe(lxd, name, &lxd_name, &path)? == "dir";
    let (dir, dest) = if into_dir {
        let dir = path.trim_end_matches('/').to_string();
        let dir = if dir.is_empty() { "/".to_string() } else { dir };
        let dest = format!("{}/{}", dir.trim_end_matches('/'), base(from));
        (dir, dest)
    } else {
        (parent(&path), path.clone())
    };
    if probe(lxd, name, &lxd_name, &dir)? != "dir" {
        if !op::confirm(
            &format!("{dir} does not exist in {name}; create it?"),
            yes,
            "-y",
        )? {
            return Ok(None);
        }
        exec_ok(lxd, &lxd_name, &["mkdir", "-p", &dir])?;
        if user != "root" {
            exec_ok(lxd, &lxd_name, &["chown", &format!("{user}:"), &dir])?;
        }
    }
    let recursive = from.is_dir();
    if recursive && !into_dir {
        // `file push -r` keeps the folder's own name inside the target; to
        // give it the new name, push into a temp folder beside it and move.
        let tmp = format!(
            "{}/.ldm-mv-{}",
            dir.trim_end_matches('/'),
            std::process::id()
        );
        exec_ok(lxd, &lxd_name, &["mkdir", "-p", &tmp])?;
        lxd.push(&lxd_name, from, &tmp, true)
            .map_err(Error::lxd(format!(
                "copying {} to {name}:{tmp}",
                from.display()
            )))?;
        let pushed = format!("{tmp}/{}", base(from));
        exec_ok(
            lxd,
            &lxd_name,
            &[
                "sh",
                "-c",
                r#"mv "$1" "$2" && rmdir "$3""#,
                "sh",
                &pushed,
                &dest,
                &tmp,
            ],
        )?;
    } else {
        let target = if recursive { dir.clone() } else { dest.clone() };
        lxd.push(&lxd_name, from, &target, recursive)
            .map_err(Error::lxd(format!(
                "copying {} to {name}:{target}",
                from.display()
            )))?;
    }
    if user != "root" {
        exec_ok(lxd, &lxd_name, &["chown", "-R", &format!("{user}:"), &dest])?;
    }
    Ok(Some(dest))
}

fn exec_ok(lxd: &dyn Lxd, lxd_name: &str, argv: &[&str]) -> Result<(), Error> {
    let out = setup::exec_when_ready(lxd, lxd_name, argv, b"", setup::EXEC_START)
        .map_err(Error::lxd(format!("running {} in {lxd_name}", argv[0])))?;
    if out.code != 0 {
        return Err(in_container(
            &format!("`{}`", argv.join(" ")),
            lxd_name,
            &out,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_parse() {
        assert_eq!(
            parse("dev:/tmp/x"),
            End::Container {
                pattern: "dev".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse("web*:~/a b"),
            End::Container {
                pattern: "web*".into(),
                path: "~/a b".into()
            }
        );
        assert_eq!(parse("a/b"), End::Host("a/b".into()));
        assert_eq!(parse("./x:y"), End::Host("./x:y".into()));
    }

    #[test]
    fn home_and_parents() {
        let mut p = Project::new("p", vec![]);
        p.containers.insert("dev".into(), Default::default());
        assert_eq!(resolve(&p, "dev", "~/x"), "/home/dev/x");
        assert_eq!(resolve(&p, "dev", "x"), "/home/dev/x");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
    }
}
