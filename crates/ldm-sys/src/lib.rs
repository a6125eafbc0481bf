//! The one place ldm calls the C library for plain facts of the process:
//! who it runs as ([`euid`], [`egid`]), the kernel's randomness
//! ([`random_bytes`]) and the user database ([`users`]). Every `unsafe` of
//! these calls is here, behind safe functions; the store's own file and
//! lock calls (`openat2`, `fcntl` locks) stay with the code they serve.
//! Knows nothing else of ldm. DESIGN.md, "Crates".

use std::io;

pub mod users;

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The effective group id of this process.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions, cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// Fills `buf` from the kernel's randomness (`getrandom(2)`, blocking only
/// until the pool is first initialised, early at boot).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most rest.len() bytes into rest,
        // which is valid for writes of that length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_fill_the_whole_buffer() {
        // 512 bytes: more than one getrandom call may return at once.
        let (mut a, mut b) = ([0u8; 512], [0u8; 512]);
        random_bytes(&mut a).unwrap();
        random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        // A tail left zero would show as a long run of zeros at the end.
        assert!(a[480..].iter().any(|&x| x != 0) && b[480..].iter().any(|&x| x != 0));
    }

    #[test]
    fn euid_is_the_owner_of_a_file_this_process_makes() {
        use std::os::unix::fs::MetadataExt;
        let f = std::env::temp_dir().join(format!("ldm-sys-euid-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap();
        let owner = std::fs::metadata(&f).unwrap().uid();
        std::fs::remove_file(&f).unwrap();
        assert_eq!(euid(), owner);
    }
}
