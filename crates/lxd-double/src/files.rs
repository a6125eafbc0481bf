//! An instance's file tree in memory: what file push and pull see.
//!
//! Paths are absolute and lexically normalised (`//`, `.` and `..` fold;
//! nothing climbs above `/`). Symlinks are stored, never followed.

use std::collections::BTreeMap;

/// One file, folder or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is, with its content.
    pub kind: Kind,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
}

/// The kind of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A folder (its entries are the paths below it).
    Dir,
    /// A symlink and its target.
    Symlink(String),
}

impl Kind {
    /// LXD's name for it (`X-LXD-type`).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File(_) => "file",
            Kind::Dir => "directory",
            Kind::Symlink(_) => "symlink",
        }
    }
}

/// The tree, by normalised absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files(pub BTreeMap<String, Node>);

impl Default for Files {
    /// `/` and the folders of a small Linux root (etc, home, mnt, root, tmp).
    fn default() -> Files {
        let mut f = Files(BTreeMap::new());
        for (p, mode) in [
            ("/", 0o755),
            ("/etc", 0o755),
            ("/home", 0o755),
            ("/mnt", 0o755),
            ("/root", 0o700),
            ("/tmp", 0o1777),
        ] {
            f.0.insert(p.into(), dir(mode, 0, 0));
        }
        f
    }
}

fn dir(mode: u32, uid: i64, gid: i64) -> Node {
    Node {
        kind: Kind::Dir,
        mode,
        uid,
        gid,
    }
}

/// `p` as an absolute path without `.`, `..` or repeated slashes.
pub fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The folder holding `p` (normalised), `None` for `/`.
pub fn parent(p: &str) -> Option<&str> {
    if p == "/" {
        return None;
    }
    let i = p.rfind('/')?;
    Some(if i == 0 { "/" } else { &p[..i] })
}

impl Files {
    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.0.get(&normalize(path))
    }

    /// The bytes of the regular file at `path`.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        match &self.get(path)?.kind {
            Kind::File(b) => Some(b),
            _ => None,
        }
    }

    /// Writes a file (mode 0644, root), making its folders: for seeding.
    pub fn write(&mut self, path: &str, data: &[u8]) {
        let path = normalize(path);
        if let Some(p) = parent(&path) {
            self.mkdir_p(p);
        }
        self.0.insert(
            path,
            Node {
                kind: Kind::File(data.to_vec()),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
    }

    /// Makes folder `path` and its parents (0755, root): for seeding.
    pub fn mkdir_p(&mut self, path: &str) {
        let path = normalize(path);
        let mut cur = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(c);
            self.0.entry(cur.clone()).or_insert(dir(0o755, 0, 0));
        }
        self.0.entry("/".into()).or_insert(dir(0o755, 0, 0));
    }

    /// Names directly inside folder `path`, sorted.
    pub fn list(&self, path: &str) -> Vec<String> {
        let path = normalize(path);
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// Removes `path` and everything under it; false if it was absent.
    pub fn remove(&mut self, path: &str) -> bool {
        let path = normalize(path);
        let prefix = format!("{path}/");
        let had = self.0.remove(&path).is_some();
        self.0.retain(|k, _| !k.starts_with(&prefix));
        had
    }
}

/// What a push asks for (the parsed `X-LXD-*` headers).
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub kind: String,
    pub mode: Option<u32>,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub append: bool,
}

/// Why a push failed: HTTP status and LXD's text.
pub(crate) type PushError = (u16, String);

impl Files {
    /// File push as LXD 5.0.2 does it: the parent folder must exist (404);
    /// a file onto a folder fails (500); a folder onto anything existing
    /// succeeds without change; an existing file keeps its mode and owner
    /// (headers apply only to new files) and is truncated unless appended.
    pub(crate) fn push(&mut self, path: &str, req: &Push, body: &[u8]) -> Result<(), PushError> {
        let path = normalize(path);
        let parent_ok = parent(&path)
            .map(|p| {
                matches!(
                    self.0.get(p),
                    Some(Node {
                        kind: Kind::Dir,
                        ..
                    })
                )
            })
            .unwrap_or(true);
        if !parent_ok {
            return Err((404, "Not Found".into()));
        }
        let (uid, gid) = (req.uid.unwrap_or(0), req.gid.unwrap_or(0));
        match req.kind.as_str() {
            "directory" => {
                self.0
                    .entry(path)
                    .or_insert(dir(req.mode.unwrap_or(0o755), uid, gid));
                Ok(())
            }
            "symlink" => {
                let target = String::from_utf8_lossy(body).into_owned();
                self.0.insert(
                    path,
                    Node {
                        kind: Kind::Symlink(target),
                        mode: 0o777,
                        uid,
                        gid,
                    },
                );
                Ok(())
            }
            "file" => match self.0.get_mut(&path) {
                Some(Node {
                    kind: Kind::Dir, ..
                }) => Err((
                    500,
                    format!("sftp: \"open {path}: is a directory\" (SSH_FX_FAILURE)"),
                )),
                Some(Node {
                    kind: Kind::File(data),
                    ..
                }) => {
                    if !req.append {
                        data.clear();
                    }
                    data.extend_from_slice(body);
                    Ok(())
                }
                _ => {
                    self.0.insert(
                        path,
                        Node {
                            kind: Kind::File(body.to_vec()),
                            mode: req.mode.unwrap_or(0o644),
                            uid,
                            gid,
                        },
                    );
                    Ok(())
                }
            },
            other => Err((400, format!("Bad file type: {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: &str) -> Push {
        Push {
            kind: kind.into(),
            mode: Some(0o600),
            uid: Some(5),
            gid: Some(6),
            append: false,
        }
    }

    #[test]
    fn paths_normalise_and_never_climb_above_root() {
        assert_eq!(normalize("tmp//a/./b/../c"), "/tmp/a/c");
        assert_eq!(normalize("/../../etc"), "/etc");
        assert_eq!(normalize(""), "/");
        assert_eq!(parent("/tmp/a"), Some("/tmp"));
        assert_eq!(parent("/tmp"), Some("/"));
        assert_eq!(parent("/"), None);
    }

    #[test]
    fn push_follows_lxd_rules() {
        let mut f = Files::default();
        assert_eq!(f.push("/nope/x", &push("file"), b"x").unwrap_err().0, 404);
        f.push("/tmp/x", &push("file"), b"hello").unwrap();
        let n = f.get("/tmp/x").unwrap();
        assert_eq!((n.mode, n.uid, n.gid), (0o600, 5, 6));
        // An existing file keeps its mode and owner; it is truncated...
        let mut again = push("file");
        again.mode = Some(0o644);
        again.uid = Some(0);
        f.push("/tmp/x", &again, b"ab").unwrap();
        let n = f.get("/tmp/x").unwrap();
        assert_eq!(
            (n.mode, n.uid, f.read("/tmp/x").unwrap()),
            (0o600, 5, &b"ab"[..])
        );
        // ...or appended to.
        again.append = true;
        f.push("/tmp/x", &again, b"cd").unwrap();
        assert_eq!(f.read("/tmp/x").unwrap(), b"abcd");
        f.push("/tmp/d", &push("directory"), b"").unwrap();
        assert_eq!(f.push("/tmp/d", &push("file"), b"").unwrap_err().0, 500);
        f.push("/tmp/x", &push("directory"), b"").unwrap();
        assert_eq!(
            f.read("/tmp/x").unwrap(),
            b"abcd",
            "a folder onto a file is a no-op"
        );
        assert_eq!(f.push("/tmp/q", &push("fifo"), b"").unwrap_err().0, 400);
        f.push("/tmp/l", &push("symlink"), b"/etc/passwd").unwrap();
        assert_eq!(
            f.get("/tmp/l").unwrap().kind,
            Kind::Symlink("/etc/passwd".into())
        );
        assert_eq!(f.list("/tmp"), ["d", "l", "x"]);
        assert!(f.remove("/tmp"));
        assert!(f.get("/tmp/x").is_none());
        assert_eq!(f.list("/"), ["etc", "home", "mnt", "root"]);
    }
}
