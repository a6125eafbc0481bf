//! What `container create` and `clone` do inside a new container: wait for
//! it to boot, create the user with passwordless sudo, enable SSH, take
//! `initial-state`, wait for an IPv4; and the access lines they print. The
//! scripts are constants: user values reach them only as `$1` or stdin.

use std::io::Write;
use std::time::{Duration, Instant};

use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::commands::text;
use crate::lxd::{ExecOutput, Lxd, LxdError};
use crate::model::{Setting, ValidationError};
use crate::{say, Error};

/// The snapshot every new container gets.
pub const INITIAL_STATE: &str = "initial-state";

/// Config keys set at launch (not as separate calls afterwards): nesting and
/// syscall interception unless the project turns them off, so that Docker
/// and friends work inside (DESIGN.md, "Container settings"). An explicit
/// `false` is passed too, so that a profile cannot turn one back on.
pub fn launch_config(settings: &[(Setting, bool)]) -> Vec<(&'static str, &'static str)> {
    settings
        .iter()
        .map(|(s, on)| (s.lxd_key(), if *on { "true" } else { "false" }))
        .collect()
}

/// Waits for systemd to finish booting and for cloud-init, where the image
/// has them. `$1` is the timeout in seconds.
const READY_SCRIPT: &str = r#"if command -v systemctl >/dev/null 2>&1; then
  timeout "$1" systemctl is-system-running --wait >/dev/null 2>&1 || true
fi
command -v cloud-init >/dev/null 2>&1 || exit 0
timeout "$1" cloud-init status --wait >/dev/null 2>&1
[ $? -eq 124 ] && { echo "cloud-init did not finish within $1 s" >&2; exit 124; }
exit 0"#;

/// Creates user `$1` (idempotent), sets its password from `user:HASH` on
/// stdin, gives it passwordless sudo, and enables SSH. `$2` and `$3`, when
/// not empty, are the uid and gid ldm chose before the first boot
/// (`first_boot.rs`): used while still free (a user the image made at its
/// first boot, cloud-init's, may have taken them; then `useradd` picks and
/// mounting restarts the container to map what it picked). The script is a
/// constant: user input arrives only as `$1` (validated), ids ldm computed
/// as `$2` and `$3`, and stdin.
const SETUP_SCRIPT: &str = r#"set -eu
u="$1" uid="${2:-}" gid="${3:-}"
taken() { cut -d: -f3 "$1" | grep -qx -- "$2"; }
if ! id -u "$u" >/dev/null 2>&1; then
  opts=""
  if [ -n "$uid" ] && ! taken /etc/passwd "$uid"; then opts="-u $uid"; fi
  if [ -n "$gid" ] && ! grep -q "^$u:" /etc/group && ! taken /etc/group "$gid"; then
    groupadd -g "$gid" "$u"
  fi
  if grep -q "^$u:" /etc/group; then opts="$opts -g $u"; fi
  useradd --create-home --shell /bin/bash $opts "$u"
fi
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

/// Runs `argv` in `lxd_name`, retrying while LXD cannot start the command
/// yet (for a moment right after a boot it fails to retrieve the child's
/// pid: the command never ran, so running it again is safe), at most
/// `limit`.
pub fn exec_when_ready(
    lxd: &dyn Lxd,
    lxd_name: &str,
    argv: &[&str],
    stdin: &[u8],
    limit: Duration,
) -> Result<ExecOutput, LxdError> {
    let start = Instant::now();
    loop {
        match lxd.exec(lxd_name, argv, stdin) {
            Err(LxdError::NotReady { .. }) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// How long the steps after the boot wait for LXD to start a command.
const EXEC_READY: Duration = Duration::from_secs(30);

/// How long a command in an instance that has long been running waits for
/// LXD to start it: LXD 5.0 sometimes fails to on a busy machine, for
/// moments (canonical/lxd#11422).
pub const EXEC_START: Duration = Duration::from_secs(10);

/// Runs the readiness script, retrying while LXD cannot exec yet.
pub fn wait_ready(lxd: &dyn Lxd, lxd_name: &str, limit: Duration, hint: &str) -> Result<(), Error> {
    let secs = limit.as_secs().max(1).to_string();
    let out = exec_when_ready(
        lxd,
        lxd_name,
        &["sh", "-c", READY_SCRIPT, "sh", &secs],
        b"",
        limit,
    )
    .map_err(Error::lxd(format!("waiting for {lxd_name}{hint}")))?;
    if out.code != 0 {
        return Err(exec_failed(
            lxd_name,
            "waiting for boot",
            &stopped(lxd, lxd_name, out),
            hint,
        ));
    }
    Ok(())
}

/// A container whose init exits while it boots (a broken image, the
/// host's inotify limits: "Too many open files" on its console) takes the
/// command LXD runs in it along (exit 137, nothing printed): that the
/// container stopped is what to say, and where its console says why.
fn stopped(lxd: &dyn Lxd, lxd_name: &str, mut out: ExecOutput) -> ExecOutput {
    let down = matches!(lxd.instance(lxd_name), Ok(Some(i)) if !i.is_running());
    if down && out.stderr.iter().all(u8::is_ascii_whitespace) {
        out.stderr = format!(
            "the container stopped while it booted (its init exited); its console log says why: `lxc console {lxd_name} --show-log` (`incus console` on Incus)"
        )
        .into_bytes();
    }
    out
}

/// Creates the user with its password (hashed, on stdin), sudo and SSH,
/// with the ids `ids` when given and still free. The script is
/// idempotent, and a command LXD could not start never ran: both make the
/// retry safe.
pub fn user(
    lxd: &dyn Lxd,
    lxd_name: &str,
    user: &str,
    password: &str,
    ids: Option<crate::commands::mounts::Ids>,
    hint: &str,
) -> Result<(), Error> {
    let stdin = format!("{user}:{}\n", crypt(password)?);
    let ids = ids.map(|i| [i.uid.to_string(), i.gid.to_string()]);
    let mut argv = vec!["sh", "-c", SETUP_SCRIPT, "sh", user];
    argv.extend(ids.iter().flatten().map(String::as_str));
    let setup = exec_when_ready(lxd, lxd_name, &argv, stdin.as_bytes(), EXEC_READY)
        .map_err(Error::lxd(format!("setting up {lxd_name}{hint}")))?;
    if setup.code != 0 {
        return Err(exec_failed(lxd_name, "setting up the user", &setup, hint));
    }
    Ok(())
}

/// Takes `initial-state`; a resumed run finds it taken already.
pub fn snapshot_initial(
    lxd: &dyn Lxd,
    lxd_name: &str,
    resumed: bool,
    hint: &str,
) -> Result<(), Error> {
    match lxd.snapshot(lxd_name, INITIAL_STATE) {
        Ok(()) => Ok(()),
        Err(LxdError::AlreadyExists { .. }) if resumed => Ok(()),
        Err(e) => Err(Error::lxd(format!("snapshotting {lxd_name}{hint}"))(e)),
    }
}

/// Waits for the instance's IPv4 ([`crate::lxd::wait_ipv4`]); `None` if it
/// has none in time.
pub fn wait_ipv4(lxd: &dyn Lxd, lxd_name: &str, limit: Duration) -> Result<Option<String>, Error> {
    crate::lxd::wait_ipv4(lxd, lxd_name, limit)
        .map_err(Error::lxd(format!("reading the state of {lxd_name}")))
}

/// The lines that tell the user how to get in.
pub fn print_access(
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
    // Both may come from a cloned containers.yaml: shown escaped.
    say(out, &format!("  user:      {}", text::escape(user)))?;
    say(out, &format!("  password:  {}", text::escape(password)))?;
    say(out, &format!("  shell:     ldm ssh {name}"))
}

fn exec_failed(lxd_name: &str, doing: &str, out: &ExecOutput, hint: &str) -> Error {
    Error::InContainer {
        doing: doing.to_string(),
        instance: lxd_name.to_string(),
        code: out.code,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        hint: hint.to_string(),
    }
}

/// SHA-512 crypt of `password` with a random salt, for `chpasswd -e`: the
/// password itself never leaves ldm, and no character in it is special.
fn crypt(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 12];
    ldm_sys::random_bytes(&mut salt).map_err(|source| Error::Io {
        action: "read random bytes (getrandom) for the password salt".into(),
        path: None,
        source,
    })?;
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            Error::Invalid(ValidationError::Password {
                why: format!("it cannot be hashed: {e}"),
            })
        })
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
