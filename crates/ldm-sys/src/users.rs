//! The user database (`getpwuid_r`, so NSS users count too): names for the
//! messages about files owned by others, home folders for the mounts ldm
//! refuses. Knows nothing else of ldm.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One user's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Home folder.
    pub home: PathBuf,
}

/// The entry of user `uid`, if the database has one.
pub fn by_uid(uid: u32) -> Option<User> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: libc::passwd is a plain C struct; all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf` (of the length given)
    // and sets `result` to `&pwd` or null; both outlive the call.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success both point at NUL-terminated strings in `buf`.
    let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    Some(User {
        name: name.to_string_lossy().into_owned(),
        home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
    })
}

/// `name (uid N)`, or `uid N` when the database has no such user.
pub fn describe(uid: u32) -> String {
    match by_uid(uid) {
        Some(u) => format!("{} (uid {uid})", u.name),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_every_database() {
        let root = by_uid(0).expect("uid 0 has an entry");
        assert_eq!(root.name, "root");
        assert_eq!(describe(0), "root (uid 0)");
    }

    #[test]
    fn an_unknown_uid_is_described_by_its_number() {
        assert_eq!(by_uid(4_000_000_123), None);
        assert_eq!(describe(4_000_000_123), "uid 4000000123");
    }
}
