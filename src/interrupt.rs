//! Ctrl+C (SIGINT) and SIGTERM while setup steps run: instead of dying
//! with the step still running in the container, ldm notes the signal,
//! passes it on to the step (LXD's exec control socket), records the step
//! as not finished and exits with 128 + the signal. A second signal while
//! the first is handled kills ldm as before, for a user who does not want
//! to wait.
//!
//! The handlers are in place only while a [`Watch`] lives (they nest:
//! `ldm up` runs steps on several threads); outside, the signals do what
//! they always did.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The signal received while watched (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// How many watches live, and the actions they replaced.
static WATCHES: Mutex<(usize, Option<[libc::sigaction; 2]>)> = Mutex::new((0, None));

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here: an atomic, signal(2), raise(3).
    if RECEIVED
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: resetting a disposition and raising are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// While it lives, SIGINT and SIGTERM are noted for [`received`] instead
/// of ending the process.
pub struct Watch(());

impl Watch {
    /// Installs the handlers (once for nested watches).
    pub fn new() -> Watch {
        let mut g = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
            // SAFETY: sigaction(2) with a handler that only touches an
            // atomic; the old actions are kept to be put back.
            let old = unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: [libc::sigaction; 2] = std::mem::zeroed();
                for (sig, old) in SIGNALS.iter().zip(old.iter_mut()) {
                    libc::sigaction(*sig, &new, old);
                }
                old
            };
            g.1 = Some(old);
        }
        g.0 += 1;
        Watch(())
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut g = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 {
            if let Some(old) = g.1.take() {
                for (sig, old) in SIGNALS.iter().zip(old.iter()) {
                    // SAFETY: puts back the action sigaction(2) returned.
                    unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
                }
            }
        }
    }
}

/// The signal received while watched, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}
