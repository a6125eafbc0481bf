//! Files in an instance: `POST .../files?path=P` writes one file, folder or
//! symlink (`X-LXD-type`, `X-LXD-mode`, `X-LXD-write: overwrite`); `GET`
//! reads one (a file's bytes, a folder's names, a symlink's target). A
//! folder is copied entry by entry, as `lxc file push/pull -r` does:
//! `push -r SRC DIR` makes `DIR/NAME`, `pull -r PATH DEST` makes
//! `DEST/NAME` when `DEST` is a folder, else `DEST`.
//!
//! What comes out of the container is untrusted: names are single path
//! components (no `/`, `.`, `..`), symlinks are made as symlinks and never
//! followed, files are created without following a symlink at their place,
//! and a folder tree deeper than [`MAX_DEPTH`] is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::request::{encode, status, Body, Reply};
use super::Api;
use crate::LxdError;

/// How deep a folder tree ldm copies out of a container.
const MAX_DEPTH: usize = 256;

impl Api {
    fn files_path(&self, name: &str, path: &str) -> String {
        self.scoped(&format!(
            "{}/files?path={}",
            self.instance_path(name),
            encode(path)
        ))
    }

    fn missing(name: &str, path: &str) -> LxdError {
        LxdError::NotFound {
            what: format!("{name}:{path}"),
        }
    }

    fn host_error(&self, doing: &str, path: &Path, e: io::Error) -> LxdError {
        LxdError::HostFile {
            action: doing.to_string(),
            path: path.to_path_buf(),
            source: e,
        }
    }

    /// Writes one entry at `path` in `name`.
    fn put(
        &self,
        name: &str,
        path: &str,
        kind: &str,
        mode: u32,
        body: Box<dyn Read + Send + '_>,
        len: u64,
    ) -> Result<(), LxdError> {
        let headers = vec![
            ("X-LXD-type".to_string(), kind.to_string()),
            ("X-LXD-mode".to_string(), format!("{:04o}", mode & 0o7777)),
            ("X-LXD-write".to_string(), "overwrite".to_string()),
        ];
        let url = self.files_path(name, path);
        let reply = self.send(
            "POST",
            &url,
            Body::File {
                reader: body,
                len,
                headers,
            },
            None,
        )?;
        let request = format!("POST {}/files", self.instance_path(name));
        self.envelope(&request, reply)
            .map(drop)
            .map_err(|e| match status(&e) {
                Some(404) => Self::missing(name, path),
                _ => e,
            })
    }

    /// Copies host `src` to `path` in `name` (a folder, with `recursive`,
    /// into `path/NAME`).
    pub(super) fn push_files(
        &self,
        name: &str,
        src: &Path,
        path: &str,
        recursive: bool,
    ) -> Result<(), LxdError> {
        self.patiently(name, || {
            if !recursive {
                return self.push_one(name, src, path);
            }
            let base = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = format!("{}/{base}", path.trim_end_matches('/'));
            self.push_tree(name, src, &target, 0)
        })
    }

    fn push_one(&self, name: &str, src: &Path, path: &str) -> Result<(), LxdError> {
        let f = File::open(src).map_err(|e| self.host_error("read", src, e))?;
        let meta = f.metadata().map_err(|e| self.host_error("read", src, e))?;
        self.put(name, path, "file", meta.mode(), Box::new(f), meta.len())
    }

    fn push_tree(&self, name: &str, src: &Path, path: &str, depth: usize) -> Result<(), LxdError> {
        let meta = fs::symlink_metadata(src).map_err(|e| self.host_error("read", src, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(|e| self.host_error("read", src, e))?;
            let bytes = target.as_os_str().as_encoded_bytes().to_vec();
            let len = bytes.len() as u64;
            return self.put(
                name,
                path,
                "symlink",
                0o777,
                Box::new(io::Cursor::new(bytes)),
                len,
            );
        }
        if ft.is_file() {
            return self.push_one(name, src, path);
        }
        if !ft.is_dir() {
            // Sockets, FIFOs and devices are not copied (as `lxc file push -r`).
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(self.host_error(
                "copy",
                src,
                io::Error::other(format!("it is more than {MAX_DEPTH} folders deep")),
            ));
        }
        self.put(
            name,
            path,
            "directory",
            meta.mode(),
            Box::new(io::empty()),
            0,
        )?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(|e| self.host_error("read", src, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.host_error("read", src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let child = format!("{path}/{}", e.file_name().to_string_lossy());
            self.push_tree(name, &e.path(), &child, depth + 1)?;
        }
        Ok(())
    }

    /// `GET` of `path` in `name`: the request (for messages) and a reply
    /// whose status is a success; a 404 is [`Api::missing`], any other
    /// error status LXD's error.
    fn get_file(&self, name: &str, path: &str) -> Result<(String, Reply), LxdError> {
        let url = self.files_path(name, path);
        let request = format!("GET {}/files", self.instance_path(name));
        let reply = self.send("GET", &url, Body::Empty, None)?;
        if reply.status >= 400 {
            return Err(match self.envelope(&request, reply) {
                Err(e) if status(&e) == Some(404) => Self::missing(name, path),
                Err(e) => e,
                Ok(_) => self.protocol(&request, "an error status without an error"),
            });
        }
        Ok((request, reply))
    }

    /// The bytes of the regular file `path` in `name` (running or stopped:
    /// LXD 5.0.2 and Incus 6.0.4 read a stopped container's files too), at
    /// most `limit` of them; a folder, a symlink or a longer file is an
    /// answer ldm does not take.
    pub(super) fn read_one(&self, name: &str, path: &str, limit: u64) -> Result<Vec<u8>, LxdError> {
        let (request, reply) = self.get_file(name, path)?;
        match reply.file.kind.as_deref() {
            Some("file") | None => {}
            Some(other) => {
                return Err(self.protocol(&request, format!("{path} is a {other}, not a file")))
            }
        }
        let mut bytes = Vec::new();
        reply
            .body
            .into_with_config()
            .limit(limit + 1)
            .reader()
            .read_to_end(&mut bytes)
            .map_err(|e| self.protocol(&request, e))?;
        if bytes.len() as u64 > limit {
            return Err(self.protocol(&request, format!("{path} is over {limit} bytes")));
        }
        Ok(bytes)
    }

    /// Copies `path` in `name` to host `dest` (into `dest/NAME` when `dest`
    /// is a folder).
    pub(super) fn pull_files(
        &self,
        name: &str,
        path: &str,
        dest: &Path,
        recursive: bool,
    ) -> Result<(), LxdError> {
        let base = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let target = if dest.is_dir() && !base.is_empty() && safe_name(&base) {
            dest.join(&base)
        } else {
            dest.to_path_buf()
        };
        self.patiently(name, || self.pull_tree(name, path, &target, recursive, 0))
    }

    fn pull_tree(
        &self,
        name: &str,
        path: &str,
        dest: &Path,
        recursive: bool,
        depth: usize,
    ) -> Result<(), LxdError> {
        let (request, reply) = self.get_file(name, path)?;
        let mode = reply.file.mode.unwrap_or(0o644) & 0o7777;
        match reply.file.kind.as_deref() {
            Some("directory") if recursive => {
                if depth > MAX_DEPTH {
                    return Err(self.protocol(
                        &request,
                        format!("{path} is more than {MAX_DEPTH} folders deep"),
                    ));
                }
                let (env, _) = self.envelope(&request, reply)?;
                let names: Vec<String> = serde_json::from_value(env.metadata).map_err(|e| {
                    self.protocol(
                        &request,
                        format!("a folder listing that is not a list of names: {e}"),
                    )
                })?;
                match fs::create_dir(dest) {
                    Ok(()) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::AlreadyExists
                            && dest.is_dir()
                            && !dest.is_symlink() => {}
                    Err(e) => return Err(self.host_error("create the folder", dest, e)),
                }
                let _ = fs::set_permissions(dest, fs::Permissions::from_mode(mode | 0o700));
                for n in names {
                    if !safe_name(&n) {
                        return Err(
                            self.protocol(&request, format!("{path} lists an entry named {n:?}"))
                        );
                    }
                    let child = format!("{}/{n}", path.trim_end_matches('/'));
                    self.pull_tree(name, &child, &dest.join(&n), true, depth + 1)?;
                }
                Ok(())
            }
            Some("directory") => Err(self.protocol(&request, format!("{path} is a folder"))),
            Some("symlink") => {
                let mut target = Vec::new();
                reply
                    .body
                    .into_with_config()
                    .limit(4096)
                    .reader()
                    .read_to_end(&mut target)
                    .map_err(|e| self.protocol(&request, e))?;
                let target = PathBuf::from(std::ffi::OsString::from_vec(target));
                let _ = fs::remove_file(dest);
                std::os::unix::fs::symlink(&target, dest)
                    .map_err(|e| self.host_error("create the symlink", dest, e))
            }
            _ => {
                // O_NOFOLLOW: a symlink at the destination is not written through.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(dest)
                    .map_err(|e| self.host_error("write", dest, e))?;
                let mut body = reply.body.into_reader();
                io::copy(&mut body, &mut f).map_err(|e| self.host_error("write", dest, e))?;
                Ok(())
            }
        }
    }
}

/// One path component, not `.` or `..`.
fn safe_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_container_are_single_components() {
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
        assert!(safe_name(".hidden") && safe_name("a b"));
    }
}
