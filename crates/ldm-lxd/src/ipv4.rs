//! Waiting for an instance's IPv4 address without spending a core on it.
//!
//! Each ask is a client process plus LXD's own look into the instance's
//! network namespace: about 20 ms of CPU (LXD 5.0.2, DESIGN.md "Waiting
//! for an address"). Asked every 100 ms, one waiting container costs a
//! fifth of a core, and containers started together on a small machine
//! slow each other's boots with it. When the instance runs on this
//! machine's LXD, the kernel shows its addresses in
//! `/proc/PID/net/fib_trie` (PID: its init), readable by any user for
//! about 30 µs. So ldm reads that every 20 ms and asks LXD when it shows
//! an address, and at least every second. The address ldm reports is
//! always LXD's. Where the file cannot be read (a remote LXD, `hidepid`),
//! or shows an address while LXD reports none (a pid of another pid
//! namespace, a link-local address), ldm asks LXD every 100 ms instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Lxd, LxdError, State};

/// How often LXD is asked when nothing better is known; after
/// [`POLL_FAST_FOR`] the pause doubles up to a second. The wait this adds
/// is at most this, where a doubling backoff from the start added up to
/// 0.4 s to `ldm up` (measured on real LXD).
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long LXD is asked that often.
const POLL_FAST_FOR: Duration = Duration::from_secs(5);
/// How often the kernel's view is read while it is trusted.
const HINT_EVERY: Duration = Duration::from_millis(20);
/// The longest ldm goes without asking LXD, whatever the kernel shows.
const HINT_BACKSTOP: Duration = Duration::from_secs(1);

/// Waits until LXD reports a global IPv4 address for instance `name`, for
/// at most `limit`; `None` if it has none by then. An instance LXD does
/// not have (yet) counts as one without an address.
pub fn wait_ipv4(lxd: &dyn Lxd, name: &str, limit: Duration) -> Result<Option<String>, LxdError> {
    wait_with(lxd, name, limit, Path::new("/proc"))
}

fn wait_with(
    lxd: &dyn Lxd,
    name: &str,
    limit: Duration,
    proc: &Path,
) -> Result<Option<String>, LxdError> {
    let start = Instant::now();
    let mut waiter = Waiter::new(proc);
    loop {
        let state = lxd.state(name)?;
        if let Some(ip) = state.as_ref().and_then(|s| s.ipv4.clone()) {
            return Ok(Some(ip));
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Ok(None);
        }
        let next = waiter.after(state.as_ref(), elapsed);
        let until = Instant::now() + next.longest().min(limit - elapsed);
        match next {
            Next::Sleep(_) => std::thread::sleep(until.saturating_duration_since(Instant::now())),
            Next::Watch(fib) => watch(&fib, until),
        }
    }
}

/// How to wait before the next ask.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// Ask again after this long.
    Sleep(Duration),
    /// Read this `fib_trie` until it shows an address, for at most
    /// [`HINT_BACKSTOP`].
    Watch(PathBuf),
}

impl Next {
    fn longest(&self) -> Duration {
        match self {
            Next::Sleep(d) => *d,
            Next::Watch(_) => HINT_BACKSTOP,
        }
    }
}

/// Whether the kernel's view of the instance may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hint {
    /// Not looked at yet, or the instance had no pid at the last ask.
    Unknown,
    /// Trusted for the instance whose init is `pid`.
    Trusted { pid: u32 },
    /// Cannot be used for this wait.
    Off,
}

/// The decisions of one wait, apart from the clock and LXD.
struct Waiter<'a> {
    proc: &'a Path,
    hint: Hint,
    /// The pause when the hint is not trusted.
    pause: Duration,
}

impl<'a> Waiter<'a> {
    fn new(proc: &'a Path) -> Waiter<'a> {
        Waiter {
            proc,
            hint: Hint::Unknown,
            pause: POLL_EVERY,
        }
    }

    /// LXD answered `state` without an address, `elapsed` into the wait.
    fn after(&mut self, state: Option<&State>, elapsed: Duration) -> Next {
        let pid = state.and_then(|s| s.pid);
        let fib = |pid: u32| self.proc.join(pid.to_string()).join("net/fib_trie");
        self.hint = match (&self.hint, pid) {
            (Hint::Off, _) => Hint::Off,
            (_, None) => Hint::Unknown,
            (_, Some(pid)) => match shows_address(&fib(pid)) {
                // Readable and, like LXD, without an address: watch it.
                Some(false) => Hint::Trusted { pid },
                // An address LXD does not report, or nothing to read.
                Some(true) | None => Hint::Off,
            },
        };
        match self.hint {
            Hint::Trusted { pid } => Next::Watch(fib(pid)),
            _ => {
                if elapsed > POLL_FAST_FOR {
                    self.pause = (self.pause * 2).min(Duration::from_secs(1));
                }
                Next::Sleep(self.pause)
            }
        }
    }
}

/// Reads `fib` every [`HINT_EVERY`] until it shows an address, cannot be
/// read, or `until` passes.
fn watch(fib: &Path, until: Instant) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep(HINT_EVERY.min(until - now));
        if shows_address(fib) != Some(false) {
            return;
        }
    }
}

/// Whether the kernel's routing view `fib` (`/proc/PID/net/fib_trie`)
/// holds a local IPv4 address outside 127.0.0.0/8; `None` if it cannot be
/// read.
fn shows_address(fib: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(fib).ok()?;
    Some(has_address(&text))
}

/// In fib_trie's text, a local address is a leaf line (`|-- 10.0.0.2`)
/// followed by `/32 host LOCAL`.
fn has_address(fib_trie: &str) -> bool {
    let mut leaf = "";
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|--") {
            leaf = addr.trim();
        } else if line.starts_with("/32 host LOCAL") && !leaf.starts_with("127.") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::double::Served;
    use lxd_double::Instance;

    /// fib_trie of a container whose eth0 is up without an address yet.
    const NO_ADDRESS: &str = "Main:
  +-- 0.0.0.0/0 1 0 0
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 1 0 0
     |-- 127.0.0.1
        /32 host LOCAL
";

    /// The same after DHCP (as read on LXD 5.0.2).
    const ADDRESS: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 198.18.77.0/24 2 0 1
        |-- 198.18.77.0
           /24 link UNICAST
        |-- 198.18.77.174
           /32 host LOCAL
        |-- 198.18.77.255
           /32 link BROADCAST
Local:
";

    #[test]
    fn only_a_non_loopback_local_address_counts() {
        assert!(!has_address(NO_ADDRESS));
        assert!(has_address(ADDRESS));
        assert!(!has_address(""));
        assert!(!has_address("|-- 198.18.77.0\n   /24 link UNICAST\n"));
    }

    fn proc_with(pid: u32, fib: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join(pid.to_string()).join("net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("fib_trie"), fib).unwrap();
        dir
    }

    fn running(pid: Option<u32>) -> State {
        State {
            status: "Running".into(),
            ipv4: None,
            pid,
        }
    }

    #[test]
    fn a_readable_view_without_an_address_is_watched() {
        let proc = proc_with(42, NO_ADDRESS);
        let mut w = Waiter::new(proc.path());
        let next = w.after(Some(&running(Some(42))), Duration::ZERO);
        assert_eq!(next, Next::Watch(proc.path().join("42/net/fib_trie")));
    }

    #[test]
    fn without_a_usable_view_ldm_asks_every_100_ms() {
        let proc = proc_with(42, NO_ADDRESS);
        // A remote (no pid), a pid whose view cannot be read.
        for pid in [None, Some(7)] {
            let mut w = Waiter::new(proc.path());
            let next = w.after(Some(&running(pid)), Duration::ZERO);
            assert_eq!(next, Next::Sleep(POLL_EVERY), "{pid:?}");
        }
        // Later, the pause doubles up to a second.
        let mut w = Waiter::new(proc.path());
        let later = POLL_FAST_FOR + Duration::from_millis(1);
        let pauses: Vec<Next> = (0..5).map(|_| w.after(None, later)).collect();
        let ms = |n| Next::Sleep(Duration::from_millis(n));
        assert_eq!(pauses, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
    }

    #[test]
    fn a_view_showing_an_address_lxd_does_not_report_is_never_used_again() {
        // A pid of another namespace, or a link-local address: the view
        // disagrees with LXD, so it cannot say when to ask.
        let proc = proc_with(42, ADDRESS);
        let mut w = Waiter::new(proc.path());
        assert_eq!(
            w.after(Some(&running(Some(42))), Duration::ZERO),
            Next::Sleep(POLL_EVERY)
        );
        std::fs::write(proc.path().join("42/net/fib_trie"), NO_ADDRESS).unwrap();
        assert_eq!(
            w.after(Some(&running(Some(42))), Duration::ZERO),
            Next::Sleep(POLL_EVERY)
        );
    }

    #[test]
    fn lxd_is_asked_again_as_soon_as_the_view_shows_an_address() {
        let proc = proc_with(42, NO_ADDRESS);
        let served = Served::new();
        served.seed(
            "p-dev",
            Instance {
                pid: 42,
                ..Instance::running()
            },
        );
        let set_address = |ip: Option<&str>| {
            let mut st = served.double.state();
            st.instance_mut("default", "p-dev").unwrap().ipv4 = ip.map(str::to_string);
        };
        set_address(None);
        let lxd = served.api();
        let fib = proc.path().join("42/net/fib_trie");
        let start = Instant::now();
        let ip = std::thread::scope(|s| {
            s.spawn(|| {
                // DHCP, 600 ms in: the kernel first, then LXD's view of it.
                std::thread::sleep(Duration::from_millis(600));
                set_address(Some("10.0.0.9"));
                std::fs::write(&fib, ADDRESS).unwrap();
            });
            wait_with(&lxd, "p-dev", Duration::from_secs(30), proc.path()).unwrap()
        });
        assert_eq!(ip.as_deref(), Some("10.0.0.9"));
        let calls = served.calls();
        let asks = calls
            .iter()
            .filter(|c| *c == "GET /1.0/instances/p-dev/state")
            .count();
        // Asking every 100 ms would have asked 7 times; the watch asks once
        // at the start and once when the address shows (a third ask only if
        // this machine stalled the writer for the whole backstop).
        assert!(
            asks <= 3 && asks == calls.len(),
            "{asks} asks in {:?}: {calls:?}",
            start.elapsed()
        );
    }

    #[test]
    fn no_address_in_time_is_none_after_a_last_ask() {
        let served = Served::new();
        served.seed("p-dev", Instance::stopped());
        let limit = Duration::from_millis(250);
        let start = Instant::now();
        let ip = wait_with(&served.api(), "p-dev", limit, Path::new("/nonexistent")).unwrap();
        assert_eq!(ip, None);
        assert!(start.elapsed() >= limit);
        // Asked at least once more at the end of the wait.
        let calls = served.calls();
        assert!(calls.len() >= 2, "{calls:?}");
        assert!(
            calls.iter().all(|c| c == "GET /1.0/instances/p-dev/state"),
            "{calls:?}"
        );
    }
}
