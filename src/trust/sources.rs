//! Where a mount's host side really is, and which host paths no mount
//! shows unless the user types `--force` (DESIGN.md, "Mounts"): the
//! system's folders, LXD's and the container engines' state, the home
//! folder with its parents and its dot-files, device files and sockets. A
//! container that can write one of those can take over the host account or
//! the host.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Folders no mount shows, with everything inside them: the system, root's
/// home, and the state of LXD, LXC, Incus and Docker (a container that sees
/// them can take over the host). `/var/lib` as a whole: every service's
/// state lives there.
const SYSTEM: &[&str] = &[
    "/etc",
    "/usr",
    "/boot",
    "/run",
    "/dev",
    "/proc",
    "/sys",
    "/root",
    "/var/lib",
    "/var/spool",
    "/var/snap/lxd",
    "/var/log/lxd",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
];

/// Folders refused themselves, not what is inside them: everyone's homes,
/// and the shared temporary folders, which hold the user's live sockets
/// (tmux's `/tmp/tmux-UID`, X11's `/tmp/.X11-unix`, ssh-agent's
/// `/tmp/ssh-*`): a container process mapped to the host user could
/// connect to them and type into the user's sessions.
const FOLDERS: &[&str] = &["/home", "/tmp", "/var/tmp"];

/// Folders directly in `/tmp` or `/var/tmp` whose names start so hold a
/// user's or a service's sockets: refused with what is inside them, as
/// are the X11 ones (`.X11-unix`, `.ICE-unix`: names ending in `-unix`).
const TMP_SOCKETS: &[&str] = &["tmux-", "ssh-", "systemd-private-"];

/// Folders of the home folder refused with everything inside them besides
/// its dot-entries: `~/bin` is on `PATH` in Debian's default `~/.profile`,
/// so what a container writes there runs as the user.
const HOME_FOLDERS: &[&str] = &["bin"];

/// A mount's host side, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The real path: every link resolved (the path as joined, without `.`
    /// and `..`, when it does not exist).
    pub path: PathBuf,
    /// It exists.
    pub exists: bool,
    /// It is the project folder or inside it, once every link is resolved.
    pub inside: bool,
    /// It is a folder.
    pub is_dir: bool,
    /// What it is when it is neither a folder nor a regular file ("a device
    /// file", "a socket").
    pub special: Option<&'static str>,
}

/// The home folders a mount must not show: the user's (`HOME`) and the
/// host user's, resolved; looked up once per command, when first needed.
#[derive(Debug, Clone, Default)]
pub struct Homes {
    uid: Option<u32>,
    found: std::sync::OnceLock<Vec<PathBuf>>,
}

impl Homes {
    /// `HOME` and the home folder of user `uid` (the host user of the
    /// project: see `commands::mounts::host_ids`) when that is another user
    /// or `HOME` is unset.
    pub fn of(uid: u32) -> Homes {
        Homes {
            uid: Some(uid),
            found: std::sync::OnceLock::new(),
        }
    }

    /// These folders (tests).
    pub fn these(homes: Vec<PathBuf>) -> Homes {
        Homes {
            uid: None,
            found: std::sync::OnceLock::from(homes),
        }
    }

    fn get(&self) -> &[PathBuf] {
        self.found.get_or_init(|| {
            let mine = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from);
            let me = ldm_sys::euid();
            // A user running ldm for themselves has HOME; the database (a
            // lookup that costs a fresh process ~0.1 ms) is asked for
            // another host user (ldm run as root) or without HOME.
            let host = self
                .uid
                .filter(|u| *u != me || mine.is_none())
                .and_then(crate::users::by_uid)
                .map(|u| u.home);
            let mut homes: Vec<PathBuf> = [mine, host]
                .into_iter()
                .flatten()
                .filter_map(|h| std::fs::canonicalize(h).ok())
                .filter(|h| h != Path::new("/"))
                .collect();
            homes.dedup();
            homes
        })
    }
}

/// Resolves `host` (relative to the project folder `dir`, canonical, or
/// absolute).
pub fn resolve(dir: &Path, host: &str) -> Source {
    let joined = dir.join(host);
    let (path, meta) = match std::fs::canonicalize(&joined) {
        Ok(p) => {
            let meta = std::fs::metadata(&p).ok();
            (p, meta)
        }
        Err(_) => (lexical(&joined), None),
    };
    let special = meta.as_ref().and_then(|m| {
        let t = m.file_type();
        if t.is_block_device() || t.is_char_device() {
            Some("a device file")
        } else if t.is_socket() {
            Some("a socket of a host service")
        } else if t.is_fifo() {
            Some("a FIFO")
        } else {
            None
        }
    });
    Source {
        inside: path.starts_with(dir),
        exists: meta.is_some(),
        is_dir: meta.as_ref().is_some_and(|m| m.is_dir()),
        special,
        path,
    }
}

/// `path` without `.` and `..` (a `..` at the top stays at `/`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Why `s` may not be mounted without `--force` typed by the user.
pub fn refused(s: &Source, homes: &Homes) -> Option<String> {
    let path = s.path.as_path();
    let shown = path.display();
    if path == Path::new("/") {
        return Some("/ is the whole host".into());
    }
    for r in SYSTEM.iter().map(Path::new) {
        if path.starts_with(r) {
            return Some(format!(
                "{shown} is {} {}, the host's own",
                if path == r {
                    "the system folder"
                } else {
                    "inside"
                },
                r.display()
            ));
        }
    }
    for r in SYSTEM.iter().chain(FOLDERS).map(Path::new) {
        if path == r && r == Path::new("/home") {
            return Some(format!("{shown} holds everyone's home folders"));
        }
        if path == r {
            return Some(format!(
                "{shown} is a shared temporary folder (the user's live sockets: tmux, X11, ssh-agent)"
            ));
        }
        if r.starts_with(path) {
            return Some(format!("{shown} holds {}", r.display()));
        }
    }
    for tmp in ["/tmp", "/var/tmp"].map(Path::new) {
        let first = path
            .strip_prefix(tmp)
            .ok()
            .and_then(|r| r.components().next());
        let name = first.map(|c| c.as_os_str().to_string_lossy());
        if name
            .is_some_and(|n| TMP_SOCKETS.iter().any(|p| n.starts_with(p)) || n.ends_with("-unix"))
        {
            return Some(format!(
                "{shown} is or is inside a folder of {} that holds live sockets (tmux, X11, ssh-agent, a service's)",
                tmp.display()
            ));
        }
    }
    for h in homes.get() {
        if path == h {
            return Some(format!(
                "{shown} is a home folder (its shell startup files, SSH keys and credentials)"
            ));
        }
        if h.starts_with(path) {
            return Some(format!("{shown} holds the home folder {}", h.display()));
        }
        if let Ok(rest) = path.strip_prefix(h) {
            let first = rest.components().next();
            if first.is_some_and(|c| c.as_os_str().as_encoded_bytes().starts_with(b".")) {
                return Some(format!(
                    "{shown} is a dot-file or dot-folder of the home folder {} (shell startup files, SSH keys, credentials, keyrings)",
                    h.display()
                ));
            }
            if first.is_some_and(|c| HOME_FOLDERS.iter().any(|f| c.as_os_str() == *f)) {
                return Some(format!(
                    "{shown} is or is inside a folder of the home folder {} on the user's PATH (what is written there runs as the user)",
                    h.display()
                ));
            }
            if rest.components().count() == 1 && s.exists && !s.is_dir {
                return Some(format!(
                    "{shown} is a file directly in the home folder {}",
                    h.display()
                ));
            }
        }
    }
    s.special.map(|what| format!("{shown} is {what}"))
}

/// The owner of `path`, if it exists.
pub fn owner(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(path: &str, homes: &[&str]) -> Option<String> {
        let homes = Homes::these(homes.iter().map(PathBuf::from).collect());
        let s = Source {
            path: PathBuf::from(path),
            exists: false,
            inside: false,
            is_dir: false,
            special: None,
        };
        refused(&s, &homes)
    }

    /// Finding 3 of issue 22 (and of its review): every one of these was
    /// accepted without
    /// `--force`.
    #[test]
    fn system_folders_their_insides_parents_and_home_dot_files_are_refused() {
        for p in [
            "/",
            "/home",
            "/var",
            "/var/lib",
            "/var/lib/lxd",
            "/var/lib/lxd/containers",
            "/var/lib/lxc",
            "/var/lib/incus",
            "/var/lib/docker/volumes",
            "/var/snap/lxd/common",
            "/etc",
            "/etc/cron.d",
            "/etc/shadow",
            "/usr",
            "/usr/local/bin",
            "/boot",
            "/run",
            "/run/user/1000",
            "/dev",
            "/dev/vda",
            "/proc",
            "/sys/kernel",
            "/root",
            "/root/.ssh",
            "/tmp",
            "/tmp/.X11-unix",
            "/tmp/tmux-1000",
            "/tmp/ssh-XXXXabc/agent.12",
            "/var/tmp",
            "/var/tmp/systemd-private-1-x",
            "/var/spool",
            "/var/spool/cron",
            "/var/spool/cron/crontabs/ann",
        ] {
            assert!(judged(p, &[]).is_some(), "{p}");
        }
        let home = ["/home/ann"];
        for p in [
            "/home/ann",
            "/home/ann/.ssh",
            "/home/ann/.ssh/authorized_keys",
            "/home/ann/.gnupg",
            "/home/ann/.aws",
            "/home/ann/.config",
            "/home/ann/.config/gh",
            "/home/ann/.kube",
            "/home/ann/.docker",
            "/home/ann/.bashrc",
            "/home/ann/.profile",
            "/home/ann/.local/share/keyrings",
            "/home/ann/bin",
            "/home/ann/bin/make",
        ] {
            let why = judged(p, &home).unwrap_or_else(|| panic!("{p} accepted"));
            assert!(why.contains("home folder"), "{p}: {why}");
        }
        for p in [
            "/home/ann/webapp",
            "/home/ann/src/app/.git",
            "/home/ann/binaries",
            "/home/ann/src/bin",
            "/srv/data",
            "/tmp/x",
            "/var/tmp/p",
            "/opt/cache",
        ] {
            assert_eq!(judged(p, &home), None, "{p}");
        }
    }

    #[test]
    fn links_are_resolved_and_files_in_the_home_folder_and_devices_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let (home, proj) = (root.join("home"), root.join("home/proj"));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(proj.join("sub")).unwrap();
        std::fs::write(home.join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink(home.join(".ssh"), proj.join("cache")).unwrap();
        std::os::unix::fs::symlink(proj.join("sub"), proj.join("inner")).unwrap();
        let homes = Homes::these(vec![home.clone()]);
        let s = resolve(&proj, "cache");
        assert_eq!(s.path, home.join(".ssh"));
        assert!(
            !s.inside && s.exists && refused(&s, &homes).is_some(),
            "{s:?}"
        );
        let s = resolve(&proj, "inner");
        assert!(s.inside && refused(&s, &homes).is_none(), "{s:?}");
        let s = resolve(&proj, ".");
        assert!(s.inside && s.path == proj, "{s:?}");
        let s = resolve(&proj, &home.join("notes.txt").to_string_lossy());
        assert!(refused(&s, &homes).is_some_and(|w| w.contains("directly in the home folder")));
        let s = resolve(&proj, "missing/x");
        assert_eq!((s.exists, s.inside), (false, true));
        let s = resolve(&proj, "/dev/null");
        assert_eq!(s.special, Some("a device file"));
        assert!(refused(&s, &homes).is_some());
    }
}
