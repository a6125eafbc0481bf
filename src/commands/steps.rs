//! Setup steps (`setup:` in `containers.yaml`): shell commands or project
//! scripts run once, as root, after the container's user exists. Output
//! is streamed line by line with the container's name in front. Progress
//! is kept in the intent of the operation running them (`Pending.setup`),
//! one short commit per step, so that a failed or killed run resumes at
//! the step that did not finish.

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use crate::commands::{op, text};
use crate::lxd::{Lxd, LxdError};
use crate::model::{Mount, Mutation, Pending, SetupProgress, Step};
use crate::store::{Store, StoreError};
use crate::Error;

/// Largest script file a step may run.
const MAX_SCRIPT: u64 = 1024 * 1024;

/// Runs a script read from stdin as a file, so that its `#!` line counts;
/// a script without one runs under `sh`.
const RUN_SCRIPT: &str = r#"f=$(mktemp) || exit 1
cat > "$f"; chmod 700 "$f"
"$f"; r=$?; rm -f "$f"; exit $r"#;

/// Where and for whom steps run.
pub struct Run<'a> {
    /// Container name, printed in front of each line.
    pub name: &'a str,
    /// Full LXD name.
    pub lxd_name: &'a str,
    /// `LDM_USER` in the steps' environment.
    pub user: &'a str,
    /// `LDM_WORKDIR`: where the project folder is mounted, or empty.
    pub workdir: &'a str,
    /// No output lines (`-q`).
    pub quiet: bool,
    /// Rerun hint for errors.
    pub hint: String,
}

/// `LDM_WORKDIR` for containers with `mounts`: where the project folder
/// is mounted, or empty.
pub fn workdir(mounts: &[Mount]) -> String {
    mounts
        .iter()
        .find(|m| m.host == ".")
        .map(|m| m.path.clone())
        .unwrap_or_default()
}

/// Runs the `steps` that have not run yet (by content: see
/// [`SetupProgress::to_run`]), recording each finished step in the intent;
/// a failing step is recorded as failed and stops the run with an error
/// that names it.
pub fn run(
    lxd: &dyn Lxd,
    store: &mut Store,
    pending: &mut Pending,
    steps: &[Step],
    r: &Run,
) -> Result<(), Error> {
    // Scripts are read once, up front: their bytes are part of what a
    // step is, and what runs is what was hashed.
    let scripts: Vec<Option<Result<Vec<u8>, Error>>> = steps
        .iter()
        .map(|step| match step {
            Step::Command(_) => None,
            Step::Script { script } => Some(read_script(store, script)),
        })
        .collect();
    let digests: Vec<String> = steps
        .iter()
        .zip(&scripts)
        .map(|(step, script)| {
            let bytes = script.as_ref().and_then(|s| s.as_ref().ok());
            step.digest(bytes.map(Vec::as_slice))
        })
        .collect();
    let mut progress = pending.setup.clone().unwrap_or_default();
    let to_run = progress.to_run(&digests);
    if progress.finished.is_empty() {
        // A record from before digests: what it skips counts as finished.
        progress.finished = digests
            .iter()
            .zip(&to_run)
            .filter(|(_, run)| !**run)
            .map(|(d, _)| d.clone())
            .collect();
    }
    progress.failed = None;
    for (i, ((step, script), digest)) in steps.iter().zip(scripts).zip(&digests).enumerate() {
        let k = i as u32 + 1;
        if !to_run[i] {
            continue;
        }
        if !r.quiet {
            eprintln!(
                "==> {}: setup step {k} of {}: {}",
                r.name,
                steps.len(),
                text::escape(&step.to_string())
            );
        }
        let script = match script {
            None => Vec::new(),
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                // A script that cannot be read fails its step, as one
                // that ran and failed: fixed, the create resumes at it.
                progress.failed = Some(k);
                record(store, r.name, pending, progress)?;
                return Err(e);
            }
        };
        let (code, tail) = one(lxd, step, script, r)?;
        if code == 0 {
            progress.finished.push(digest.clone());
            progress.done = progress.finished.len() as u32;
        } else {
            progress.failed = Some(k);
        }
        record(store, r.name, pending, progress.clone())?;
        if code != 0 {
            return Err(Error::InContainer {
                doing: format!("setup step {k} ({})", text::escape(&step.to_string())),
                instance: r.lxd_name.to_string(),
                code,
                stderr: tail,
                hint: r.hint.clone(),
            });
        }
    }
    Ok(())
}

/// Records how far the steps ran in the operation's intent.
fn record(
    store: &mut Store,
    name: &str,
    pending: &mut Pending,
    progress: SetupProgress,
) -> Result<(), Error> {
    pending.setup = Some(progress);
    op::record(
        store,
        vec![Mutation::OperationStarted {
            container: name.to_string(),
            snapshot: None,
            pending: pending.clone(),
        }],
    )
}

/// Runs one step (a script's bytes in `script`); returns its exit code and
/// its last output lines.
fn one(lxd: &dyn Lxd, step: &Step, script: Vec<u8>, r: &Run) -> Result<(i32, String), Error> {
    let user = format!("LDM_USER={}", r.user);
    let workdir = format!("LDM_WORKDIR={}", r.workdir);
    let (argv, stdin): (Vec<&str>, Vec<u8>) = match step {
        Step::Command(c) => (vec!["env", &user, &workdir, "sh", "-c", c], Vec::new()),
        Step::Script { .. } => (vec!["env", &user, &workdir, "sh", "-c", RUN_SCRIPT], script),
    };
    let mut tail: Vec<String> = Vec::new();
    let mut each = |line: &str| {
        if !r.quiet {
            eprintln!("{} | {}", r.name, text::escape(line));
        }
        tail.push(line.to_string());
        if tail.len() > 20 {
            tail.remove(0);
        }
    };
    let start = std::time::Instant::now();
    let code = loop {
        match lxd.exec_lines(r.lxd_name, &argv, &stdin, &mut each) {
            // LXD could not start the command yet: it never ran.
            Err(LxdError::NotReady { .. }) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(code) => break code,
            Err(e) => {
                return Err(Error::lxd(format!(
                    "running a setup step in {}{}",
                    r.lxd_name, r.hint
                ))(e))
            }
        }
    };
    Ok((code, tail.join("\n")))
}

/// A step's script: a regular file of the project, at most 1 MiB, read
/// with the checks of the project's own files.
fn read_script(store: &Store, script: &str) -> Result<Vec<u8>, Error> {
    // Checked when containers.yaml was read (`Project::validate`); again
    // here, as this is what names the file to open.
    crate::model::validate::setup_script(script)?;
    let rel = Path::new(script);
    store
        .read_project_file(rel, MAX_SCRIPT)
        .map_err(|e| match e {
            StoreError::Io { path, source, .. } if source.kind() == ErrorKind::NotFound => {
                Error::NotFound {
                    what: format!("setup script {} ({source})", path.display()),
                    next: "fix `setup:` in containers.yaml, or create the script".into(),
                }
            }
            e => e.into(),
        })
}
