//! `ldm container create` and `ldm container clone`: the operations that
//! bring a container into the project. Each records its intent (the name is
//! taken, with an owner), runs its LXD steps with no lock held, and records
//! the outcome; an interrupted one is finished by running it again.

use std::io::Write;
use std::time::Duration;

use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::cli::{ContainerClone, ContainerCreate};
use crate::commands::op::{self, Progress};
use crate::commands::Ctx;
use crate::lxd::{Lxd, LxdError};
use crate::model::{validate, Mutation, Op, Pending, Project};
use crate::store::Store;
use crate::{say, Error};

/// The snapshot every new container gets.
pub const INITIAL_STATE: &str = "initial-state";

/// Config keys set at launch (not as separate calls afterwards): nesting and
/// syscall interception, so Docker and friends work inside.
const LAUNCH_CONFIG: &[(&str, &str)] = &[
    ("security.nesting", "true"),
    ("security.syscalls.intercept.mknod", "true"),
    ("security.syscalls.intercept.setxattr", "true"),
];

/// Waits for systemd to finish booting and for cloud-init, where the image
/// has them. `$1` is the timeout in seconds.
const READY_SCRIPT: &str = r#"if command -v systemctl >/dev/null 2>&1; then
  timeout "$1" systemctl is-system-running --wait >/dev/null 2>&1 || true
fi
command -v cloud-init >/dev/null 2>&1 || exit 0
timeout "$1" cloud-init status --wait >/dev/null 2>&1
[ $? -eq 124 ] && { echo "cloud-init did not finish within $1 s" >&2; exit 124; }
exit 0"#;

/// Retries `f` while LXD says the instance is busy (the server-side part of
/// an interrupted run may still be going), for at most `limit`.
fn while_busy<T>(
    limit: Duration,
    mut f: impl FnMut() -> Result<T, LxdError>,
) -> Result<T, LxdError> {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Err(LxdError::Busy { .. }) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// Runs the readiness script, retrying while LXD cannot exec yet (it fails
/// transiently for a moment right after boot).
fn wait_ready(lxd: &dyn Lxd, lxd_name: &str, limit: Duration, hint: &str) -> Result<(), Error> {
    let start = std::time::Instant::now();
    let secs = limit.as_secs().max(1).to_string();
    loop {
        let out = lxd
            .exec(lxd_name, &["sh", "-c", READY_SCRIPT, "sh", &secs], b"")
            .map_err(Error::lxd(format!("waiting for {lxd_name}{hint}")))?;
        if out.lxd_failed_transiently() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if out.code != 0 {
            return Err(exec_failed(lxd_name, "waiting for boot", &out, hint));
        }
        return Ok(());
    }
}

/// Creates user `$1` (idempotent), sets its password from `user:HASH` on
/// stdin, gives it passwordless sudo, and enables SSH. The script is a
/// constant: user input arrives only as `$1` (validated) and stdin.
const SETUP_SCRIPT: &str = r#"set -eu
u="$1"
id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
chpasswd -e
mkdir -p /etc/sudoers.d
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$u" > "/etc/sudoers.d/90-ldm-$u"
chmod 0440 "/etc/sudoers.d/90-ldm-$u"
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq openssh-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null; }
fi
if command -v systemctl >/dev/null 2>&1; then
  systemctl enable --now ssh >/dev/null 2>&1 || systemctl enable --now sshd >/dev/null 2>&1 || true
fi"#;

/// What the intent commit tells the LXD steps.
struct Started {
    project: String,
    lxd_name: String,
    user: String,
    password: String,
    resumed: bool,
}

/// Records the intent for `name`, or takes over an interrupted `op` of the
/// same kind. `check` validates the request and builds the intent mutation
/// for a fresh name.
fn begin(
    store: &mut Store,
    name: &str,
    pending: &Pending,
    check: impl FnOnce(&Project) -> Result<Mutation, Error>,
) -> Result<Started, Error> {
    let owners = store.owners();
    store.commit(|p| {
        validate::container_name(&p.project, name)?;
        let resumed = match p.containers.get(name) {
            None => false,
            Some(c) => match op::check_free(&owners, name, c)? {
                // Resume only the very same operation (same source for a clone).
                Some(old) if old.op == pending.op => true,
                Some(old) => {
                    return Err(Error::Usage(format!(
                        "container {name} has an interrupted {}; run `{}` to finish it, or `ldm remove {name}`",
                        old.op.noun(),
                        old.op.command(name, &c.image)
                    )))
                }
                None => {
                    return Err(Error::Usage(format!(
                        "container {name} already exists in project {}; see `ldm list`, or pick another name",
                        p.project
                    )))
                }
            },
        };
        // The command's own checks run on both paths: a resumed create must
        // use the same image, a resumed clone the same source.
        let fresh = check(p)?;
        let mutation = if resumed {
            Mutation::OperationStarted {
                container: name.to_string(),
                snapshot: None,
                pending: pending.clone(),
            }
        } else {
            fresh
        };
        let (user, password) = p.effective_user(name);
        let started = Started {
            project: p.project.clone(),
            lxd_name: p.lxd_name(name),
            user,
            password,
            resumed,
        };
        Ok((vec![mutation], started))
    })
}

/// Records the outcome: operation finished, `initial-state` recorded.
fn finish(store: &mut Store, name: &str) -> Result<(), Error> {
    store.commit(|p| {
        let mut m = vec![Mutation::OperationFinished {
            container: name.to_string(),
            snapshot: None,
        }];
        let has_initial = p
            .containers
            .get(name)
            .is_some_and(|c| c.snapshots.contains_key(INITIAL_STATE));
        if !has_initial {
            m.push(Mutation::SnapshotAdded {
                container: name.to_string(),
                name: INITIAL_STATE.to_string(),
                description: "Initial state after setup".to_string(),
                created_at: op::now(),
                pending: None,
            });
        }
        Ok::<_, Error>((m, ()))
    })
}

/// Undoes an intent whose LXD step created nothing, so the name is free again.
fn forget(store: &mut Store, lxd: &dyn Lxd, lxd_name: &str, name: &str) -> Result<bool, Error> {
    if lxd
        .instance(lxd_name)
        .map_err(Error::lxd(format!("checking {lxd_name}")))?
        .is_some()
    {
        return Ok(false);
    }
    unrecord(store, name)?;
    Ok(true)
}

/// Hint appended to errors that leave an interrupted operation behind.
fn rerun_hint(name: &str, op: &Op, image: &str) -> String {
    format!(
        "; the project shows it as interrupted: run `{}` again to finish, or `ldm remove {name}`",
        op.command(name, image)
    )
}

/// Forgets a container whose intent must not stay behind.
fn unrecord(store: &mut Store, name: &str) -> Result<(), Error> {
    op::record(
        store,
        vec![Mutation::ContainerRemoved {
            name: name.to_string(),
        }],
    )
}

/// `ldm container create NAME IMAGE`.
pub fn create(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    args: &ContainerCreate,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (name, image) = (args.name.as_str(), args.image.as_str());
    validate::image(image)?;
    let mut store = ctx.store()?;
    let (_owner, pending) = op::claim(&store, Op::Create)?;
    let s = begin(&mut store, name, &pending, |p| {
        if let Some(c) = p.containers.get(name) {
            if c.image != image {
                return Err(Error::Usage(format!("container {name} was being created from {}; run `ldm container create {name} {}` to finish, or `ldm remove {name}`", c.image, c.image)));
            }
        }
        Ok(Mutation::ContainerAdded {
            name: name.to_string(),
            image: image.to_string(),
            pending: Some(pending.clone()),
        })
    })?;
    let hint = rerun_hint(name, &Op::Create, image);
    let lxd_name = s.lxd_name.as_str();
    let mut progress = Progress::new(ctx.quiet, 5);
    progress.step(&format!("Launching {lxd_name} from {image}"));
    match while_busy(args.timeout, || lxd.launch(image, lxd_name, LAUNCH_CONFIG)) {
        Ok(()) => {}
        Err(LxdError::AlreadyExists { .. }) if s.resumed => {
            progress.note("already launched by the interrupted run; continuing");
            match while_busy(args.timeout, || lxd.start(lxd_name)) {
                Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
                Err(e) => return Err(Error::lxd(format!("starting {lxd_name}{hint}"))(e)),
            }
        }
        Err(e) => {
            if matches!(e, LxdError::AlreadyExists { .. }) {
                // Someone else's instance: the name must not stay taken.
                unrecord(&mut store, name)?;
                return Err(Error::Usage(format!("LXD already has an instance {lxd_name} that this project does not record; adopt it with `ldm doctor --fix`, or pick another name")));
            }
            if forget(&mut store, lxd, lxd_name, name)? {
                return Err(Error::lxd(format!("launching {lxd_name} from {image}"))(e));
            }

            return Err(Error::lxd(format!(
                "launching {lxd_name} from {image}{hint}"
            ))(e));
        }
    }
    progress.step(&format!("Waiting for {lxd_name} to finish booting"));
    wait_ready(lxd, lxd_name, args.timeout, &hint)?;
    progress.step(&format!("Creating user {} with sudo, enabling SSH", s.user));
    let stdin = format!("{}:{}\n", s.user, crypt(&s.password)?);
    let setup = lxd
        .exec(
            lxd_name,
            &["sh", "-c", SETUP_SCRIPT, "sh", &s.user],
            stdin.as_bytes(),
        )
        .map_err(Error::lxd(format!("setting up {lxd_name}{hint}")))?;
    if setup.code != 0 {
        return Err(exec_failed(lxd_name, "setting up the user", &setup, &hint));
    }
    progress.step(&format!("Taking snapshot {INITIAL_STATE}"));
    snapshot_initial(lxd, lxd_name, s.resumed, &hint)?;
    progress.step("Waiting for an IPv4 address");
    let ip = wait_ipv4(lxd, lxd_name, Duration::from_secs(30))?;
    finish(&mut store, name)?;
    say(out, &format!("Created {name} ({lxd_name}) from {image}"))?;
    print_access(out, name, ip.as_deref(), &s.user, &s.password)
}

/// `ldm container clone SRC NEW [-s SNAP]`.
pub fn clone(
    ctx: &Ctx,
    lxd: &dyn Lxd,
    args: &ContainerClone,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (source, name) = (args.source.as_str(), args.name.as_str());
    if let Some(snap) = &args.snapshot {
        validate::snapshot_name(snap)?;
    }
    let from = match &args.snapshot {
        Some(snap) => format!("{source}/{snap}"),
        None => source.to_string(),
    };
    let mut store = ctx.store()?;
    let owners = store.owners();
    let (_owner, pending) = op::claim(
        &store,
        Op::Clone {
            source: from.clone(),
        },
    )?;
    let s = begin(&mut store, name, &pending, |p| {
        let src = op::container(p, source)?;
        op::check_free(&owners, source, src)?;
        Ok(Mutation::ContainerAdded {
            name: name.to_string(),
            image: format!("{}:cloned-from-{source}", src.image),
            pending: Some(pending.clone()),
        })
    })?;
    let src_lxd = format!("{}-{source}", s.project);
    let hint = rerun_hint(name, &pending.op, "");
    let lxd_name = s.lxd_name.as_str();
    let mut progress = Progress::new(ctx.quiet, 4);
    progress.step(&format!(
        "Copying {src_lxd}{} to {lxd_name}",
        args.snapshot
            .as_ref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default()
    ));
    let busy_limit = Duration::from_secs(120);
    match while_busy(busy_limit, || {
        lxd.copy(&src_lxd, args.snapshot.as_deref(), lxd_name)
    }) {
        Ok(()) => {}
        Err(LxdError::AlreadyExists { .. }) if s.resumed => {
            progress.note("already copied by the interrupted run; continuing")
        }
        Err(e) => {
            let forgotten = forget(&mut store, lxd, lxd_name, name)?;
            let hint = if forgotten {
                String::new()
            } else {
                hint.clone()
            };
            return Err(Error::lxd(format!("copying {src_lxd} to {lxd_name}{hint}"))(e));
        }
    }
    // Snapshot before the first start: initial-state is the state right
    // after cloning. The copy has none of the source's snapshots.
    progress.step(&format!("Taking snapshot {INITIAL_STATE}"));
    snapshot_initial(lxd, lxd_name, s.resumed, &hint)?;
    progress.step(&format!("Starting {lxd_name}"));
    match lxd.start(lxd_name) {
        Ok(()) | Err(LxdError::AlreadyInState { .. }) => {}
        Err(e) => return Err(Error::lxd(format!("starting {lxd_name}{hint}"))(e)),
    }
    progress.step("Waiting for an IPv4 address");
    let ip = wait_ipv4(lxd, lxd_name, Duration::from_secs(30))?;
    finish(&mut store, name)?;
    say(out, &format!("Cloned {from} to {name} ({lxd_name})"))?;
    print_access(out, name, ip.as_deref(), &s.user, &s.password)
}

fn snapshot_initial(lxd: &dyn Lxd, lxd_name: &str, resumed: bool, hint: &str) -> Result<(), Error> {
    match lxd.snapshot(lxd_name, INITIAL_STATE) {
        Ok(()) => Ok(()),
        Err(LxdError::AlreadyExists { .. }) if resumed => Ok(()),
        Err(e) => Err(Error::lxd(format!("snapshotting {lxd_name}{hint}"))(e)),
    }
}

/// Polls LXD for the instance's IPv4; `None` if it has none in time.
pub fn wait_ipv4(lxd: &dyn Lxd, lxd_name: &str, limit: Duration) -> Result<Option<String>, Error> {
    op::poll(limit, || {
        let inst = lxd
            .instance(lxd_name)
            .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?;
        Ok(inst.and_then(|i| i.ipv4))
    })
}

fn print_access(
    out: &mut dyn Write,
    name: &str,
    ip: Option<&str>,
    user: &str,
    password: &str,
) -> Result<(), Error> {
    say(
        out,
        &format!("  IPv4:      {}", ip.unwrap_or("none yet (see `ldm list`)")),
    )?;
    say(out, &format!("  user:      {user}"))?;
    say(out, &format!("  password:  {password}"))?;
    say(out, &format!("  shell:     ldm ssh {name}"))
}

fn exec_failed(lxd_name: &str, doing: &str, out: &crate::lxd::ExecOutput, hint: &str) -> Error {
    Error::Usage(format!(
        "{doing} in {lxd_name} failed (exit {}): {}{hint}",
        out.code,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// SHA-512 crypt of `password` with a random salt, for `chpasswd -e`: the
/// password itself never leaves ldm, and no character in it is special.
fn crypt(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 12];
    // SAFETY: getrandom writes at most salt.len() bytes into salt.
    let n = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if n != salt.len() as isize {
        return Err(Error::Usage(
            "cannot read random bytes for the password salt".into(),
        ));
    }
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Usage(format!("cannot hash the password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_gives_a_sha512_crypt_string_without_the_password() {
        let h = crypt("it's $(rm -rf /)\nnext").unwrap();
        assert!(h.starts_with("$6$"), "{h}");
        assert!(!h.contains('\n') && !h.contains("rm -rf"));
    }
}
