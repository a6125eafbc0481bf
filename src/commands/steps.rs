//! Setup steps (`setup:` in `containers.yaml`): shell commands or project
//! scripts run once, as root, after the container's user exists. Output
//! is streamed line by line with the container's name in front. Progress
//! is kept in the intent of the operation running them (`Pending.setup`),
//! one short commit per step, so that a failed or killed run resumes at
//! the step that did not finish.
//!
//! Each step has a time limit (`--step-timeout`, default 30 min): at it,
//! the step gets SIGTERM, then SIGKILL, and fails. Ctrl+C or SIGTERM to
//! ldm is passed on to the step the same way ([`crate::interrupt`]); the
//! step is recorded as failed (not finished) and ldm exits with 128 + the
//! signal. Each step records its process id in the container
//! (`/run/ldm-setup-step.pid`), so that a resume does not start a second copy of a
//! step an earlier run left running (a killed ldm cannot stop it).

use std::cell::Cell;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::commands::{op, setup, text};
use crate::lxd::{Lxd, LxdError};
use crate::model::{Mount, Mutation, Pending, SetupProgress, Step};
use crate::store::{Store, StoreError};
use crate::{interrupt, Error};

/// Largest script file a step may run.
const MAX_SCRIPT: u64 = 1024 * 1024;

/// Runs a step (`$1`) in a process group of its own (`setsid`, where the
/// image has it) and stays with it: a signal LXD delivers (to this
/// process only) becomes SIGTERM to the step's whole group, a second one
/// SIGKILL, so no child of the step is left running (a shell waiting for
/// `sleep` would otherwise outlive SIGINT, and SIGKILL to it alone would
/// orphan the `sleep`, as seen on LXD 5.0.2). Its pid is noted in
/// `/run/ldm-setup-step.pid` (`/run` is emptied at each boot, so no pid of
/// an earlier boot is seen), and `LDM_STEP` in its environment tells it
/// from a later process that got the same pid. Stdin goes on to the step
/// (fd 3: a background job's stdin would be /dev/null).
const WRAP: &str = r#"{ echo $$ > /run/ldm-setup-step.pid; } 2>/dev/null
exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid sh -c "$1" <&3 3<&- & else sh -c "$1" <&3 3<&- & fi
c=$!
exec 3<&-
n=0
stop() { n=$((n+1)); s=TERM; [ $n -gt 1 ] && s=KILL; kill -$s -$c 2>/dev/null || kill -$s $c 2>/dev/null; }
trap stop INT TERM HUP
while :; do wait $c; r=$?; kill -0 $c 2>/dev/null || exit $r; done"#;

/// Exits 3 if a step of an earlier run still runs (its pid is alive and
/// has `LDM_STEP` in its environment), printing its pid; else 0.
const STILL_RUNNING: &str = r#"p=/run/ldm-setup-step.pid
[ -r "$p" ] || exit 0
pid=$(cat "$p") || exit 0
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || exit 0
tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q '^LDM_STEP=' || exit 0
echo "$pid"; exit 3"#;

/// The exit code of [`STILL_RUNNING`] when a step still runs.
const RUNNING: i32 = 3;

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
    /// Longest a step may run (`--step-timeout`).
    pub timeout: Duration,
}

/// How a step ended.
enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// ldm got this signal and passed it on.
    Interrupted(i32),
    /// It outlived the timeout.
    TimedOut,
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
    if pending.setup.is_some() {
        // A resume: an earlier run may have left its step running.
        still_running(lxd, r)?;
    }
    let _watch = interrupt::Watch::new();
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
        if let Some(sig) = interrupt::received() {
            // Between steps: none is running; the next does not start.
            record(store, r.name, pending, progress)?;
            return Err(interrupted(r, None, sig));
        }
        let ran = one(lxd, step, script, digest, r);
        let (code, tail) = match ran {
            Ok((Ended::Exited(code), tail)) => (code, tail),
            Ok((Ended::Interrupted(sig), _)) => {
                progress.failed = Some(k);
                record(store, r.name, pending, progress)?;
                return Err(interrupted(r, Some(k), sig));
            }
            Ok((Ended::TimedOut, tail)) => {
                progress.failed = Some(k);
                record(store, r.name, pending, progress)?;
                return Err(Error::InContainer {
                    doing: format!(
                        "setup step {k} ({}) ran longer than --step-timeout ({}) and was stopped; it",
                        text::escape(&step.to_string()),
                        humantime::format_duration(r.timeout)
                    ),
                    instance: r.lxd_name.to_string(),
                    code: 128 + libc::SIGTERM,
                    stderr: tail,
                    hint: format!("{}; a step that needs longer: --step-timeout SECS", r.hint),
                });
            }
            Err(e) => {
                // Not finished, whatever happened to it.
                progress.failed = Some(k);
                record(store, r.name, pending, progress)?;
                return Err(e);
            }
        };
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

/// The error of a run stopped by signal `sig` (in step `k`, if one ran):
/// said here, so the exit code is 128 + `sig`, as a shell reports it.
fn interrupted(r: &Run, k: Option<u32>, sig: i32) -> Error {
    let what = match k {
        Some(k) => format!(
            "setup step {k} was stopped in {} and is recorded as not finished",
            r.lxd_name
        ),
        None => "no further setup step was started".to_string(),
    };
    eprintln!(
        "error: {}: interrupted (signal {sig}); {what}{}",
        r.name, r.hint
    );
    Error::Exit(128 + sig)
}

/// Refuses to go on while a step of an earlier run still runs in the
/// container: a second copy of it would race the first.
fn still_running(lxd: &dyn Lxd, r: &Run) -> Result<(), Error> {
    let argv = ["sh", "-c", STILL_RUNNING];
    let out = setup::exec_when_ready(lxd, r.lxd_name, &argv, b"", setup::EXEC_START).map_err(
        Error::lxd(format!(
            "checking for a setup step still running in {}{}",
            r.lxd_name, r.hint
        )),
    )?;
    if out.code != RUNNING {
        return Ok(());
    }
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Err(Error::Refused(format!(
        "a setup step of an earlier run is still running in {} (pid {}); wait for it to end, or stop it (`ldm ssh {} -- sudo kill {}`), then run the command again",
        r.lxd_name,
        text::escape(&pid),
        r.name,
        text::escape(&pid)
    )))
}

/// Runs one step (a script's bytes in `script`); returns how it ended and
/// its last output lines.
fn one(
    lxd: &dyn Lxd,
    step: &Step,
    script: Vec<u8>,
    digest: &str,
    r: &Run,
) -> Result<(Ended, String), Error> {
    let user = format!("LDM_USER={}", r.user);
    let workdir = format!("LDM_WORKDIR={}", r.workdir);
    let marker = format!("LDM_STEP={digest}");
    let head = [
        "env", &user, &workdir, &marker, "sh", "-c", WRAP, "ldm-step",
    ];
    let (body, stdin): (&str, Vec<u8>) = match step {
        Step::Command(c) => (c, Vec::new()),
        Step::Script { .. } => (RUN_SCRIPT, script),
    };
    let argv: Vec<&str> = head.iter().copied().chain([body]).collect();
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
    let start = Instant::now();
    let deadline = start + r.timeout;
    let timed_out = Cell::new(false);
    let stop = || {
        if let Some(sig) = interrupt::received() {
            return Some(sig);
        }
        if Instant::now() >= deadline {
            timed_out.set(true);
            return Some(libc::SIGTERM);
        }
        None
    };
    let code = loop {
        if let Some(sig) = interrupt::received() {
            return Ok((Ended::Interrupted(sig), String::new()));
        }
        match lxd.exec_lines(r.lxd_name, &argv, &stdin, &mut each, &stop) {
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
    let ended = match interrupt::received() {
        Some(sig) => Ended::Interrupted(sig),
        None if timed_out.get() => Ended::TimedOut,
        None => Ended::Exited(code),
    };
    Ok((ended, tail.join("\n")))
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
