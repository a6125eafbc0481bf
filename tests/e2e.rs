//! End-to-end suite (issue 7): the real `ldm` binary against a real LXD,
//! through the whole workflow on the Debian image that
//! `tests/e2e/setup-lxd.sh` imports; and the same workflow again against a
//! real Incus (issue 24; `tests/e2e/setup-incus.sh` installs it beside LXD
//! and imports the same image). Each server is one `#[test]` running the
//! same body ([`workflow`]); the server of the run under way is global
//! ([`server`]), so `lxc(...)` below is `incus ...` in the Incus run (with
//! the snapshot verbs Incus moved under `snapshot`), and ldm is pointed at
//! it with `LDM_LXC`. The two runs take turns (a lock), whatever the test
//! harness's thread count. Every step is checked three ways: what
//! ldm printed, what LXD itself reports (`lxc list --format json`,
//! `lxc query`, `lxc exec`), and what the project files hold (read through
//! the library's store).
//!
//! Each ldm command is timed beside the same operation done with bare `lxc`
//! calls in the same run, on instances of its own (`STEMx-*`); the long ones
//! (create, clone, image create) run alongside their ldm counterpart so that
//! both see the same load on a shared machine. The table at the end is ldm's
//! overhead (`--nocapture` to see it).
//!
//! Every check is strict: a step that fails is a failed test, never a
//! warning worked around.
//!
//! When it runs: it needs a real LXD with the Debian image, so it is
//! `#[ignore]`d and `cargo test --locked` lists it as ignored with the
//! reason. `bash tests/e2e/run.sh` (as root) sets LXD up and runs it;
//! `cargo test --test e2e -- --ignored` runs it against an LXD that is
//! already set up. Run that way without a reachable LXD or without the
//! image, it fails and says which is missing.
//!
//! Knobs: `LDM_E2E_BENCH=1|0` (the measurements that check nothing; by
//! default in the LXD run only), `LDM_E2E_DEBIAN_ALIAS` (image, default
//! `ldm-debian`),
//! `LDM_E2E_ONLY=STEP` (one self-contained step: `two_checkouts`,
//! `in_another_lxd_project`, `lxd_project_per_person`, `mount_create_cost`),
//! `LDM_E2E_PROFILE` (profile for launches, default `ldm-e2e` when it
//! exists), `LDM_E2E_KEEP=1` (leave instances, images and files behind for
//! debugging), `LDM_E2E_LDM` (the ldm binary to test; default the one cargo
//! built, whose path is compiled in: `.ci/run` sets it to run the suite as a
//! non-root user from a copy it can read).
//!
//! Names: every run takes a unique stem `ldme2e-XXXXXX`; the project is the
//! stem, the bare-lxc instances are `STEMx-...`, images `STEM-...`. A drop
//! guard deletes everything starting with the stem, pass or fail; a run that
//! was killed outright is swept by a later run once it is 3 hours old.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ldm::model::Project;
use ldm::store::{Options, Paths, Store};
use serde_json::Value;

/// The ldm binary under test: `LDM_E2E_LDM`, or the one cargo built.
fn ldm_bin() -> PathBuf {
    std::env::var_os("LDM_E2E_LDM")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ldm")), PathBuf::from)
}
/// Prefix of every name this suite gives to LXD objects.
const STEM_PREFIX: &str = "ldme2e-";
/// Leftovers of killed runs older than this are deleted at start.
const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);
/// What `lxc exec` may say when it runs too early in a container's boot
/// (LXD 5.0; canonical/lxd#8577, #12084): transient, worth a retry.
const TRANSIENT_EXEC: &str = "Failed to retrieve PID of executing child process";
/// The user the project configures (not the built-in `dev`).
const USER: &str = "tester";
/// Its password: quotes, `$(...)`, spaces reach `chpasswd` intact.
const PASSWORD: &str = "it's $(not run) ok";

// ---------------------------------------------------------------- servers

/// The server family a run of the suite is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Lxd,
    Incus,
}

/// The server of the run under way (0 LXD, 1 Incus): set while the run
/// holds [`ONE_AT_A_TIME`], read by every thread it spawns.
static SERVER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The server of the run under way.
fn server() -> Server {
    match SERVER.load(std::sync::atomic::Ordering::SeqCst) {
        1 => Server::Incus,
        _ => Server::Lxd,
    }
}

/// The two runs take turns: each loads the machine as much as it can, and
/// [`SERVER`] names one server at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Server {
    /// Its client program (and ldm's `LDM_LXC`).
    fn program(self) -> &'static str {
        match self {
            Server::Lxd => "lxc",
            Server::Incus => "incus",
        }
    }

    /// Its name in messages.
    fn name(self) -> &'static str {
        match self {
            Server::Lxd => "LXD",
            Server::Incus => "Incus",
        }
    }

    /// The group whose members may use it.
    fn group(self) -> &'static str {
        match self {
            Server::Lxd => "lxd",
            Server::Incus => "incus-admin",
        }
    }

    /// Its local socket, as ldm finds it.
    fn socket(self) -> PathBuf {
        let all: &[&str] = match self {
            Server::Lxd => &[
                "/var/snap/lxd/common/lxd/unix.socket",
                "/var/lib/lxd/unix.socket",
            ],
            Server::Incus => &["/var/lib/incus/unix.socket", "/run/incus/unix.socket"],
        };
        all.iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(all[all.len() - 1]))
    }

    /// The configuration folder variable of its clients.
    fn conf_var(self) -> &'static str {
        match self {
            Server::Lxd => "LXD_CONF",
            Server::Incus => "INCUS_CONF",
        }
    }

    /// The socket folder variable of its clients (`LXD_DIR`, `INCUS_DIR`).
    fn dir_var(self) -> &'static str {
        match self {
            Server::Lxd => "LXD_DIR",
            Server::Incus => "INCUS_DIR",
        }
    }

    /// `args` of an `lxc` command line as this server's client takes them:
    /// Incus moved the snapshot verbs under `snapshot` (`incus snapshot
    /// create NAME SNAP`, `restore`, `delete NAME SNAP`).
    fn argv(self, args: &[&str]) -> Vec<String> {
        let own = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        if self == Server::Lxd {
            return own(args);
        }
        match args {
            ["snapshot", rest @ ..] => own(&[&["snapshot", "create"], rest].concat()),
            ["restore", rest @ ..] => own(&[&["snapshot", "restore"], rest].concat()),
            ["delete", one] if one.contains('/') => {
                let (inst, snap) = one.split_once('/').unwrap_or((one, ""));
                own(&["snapshot", "delete", inst, snap])
            }
            _ => own(args),
        }
    }
}

// ---------------------------------------------------------------- processes

/// One finished command: exit code, both streams, wall time.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    took: Duration,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited {:?} after {:.1}s\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.code,
            self.took.as_secs_f64(),
            self.out().trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics unless it exited 0.
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        self
    }

    /// Panics unless it exited `code`.
    fn expect_code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }
}

fn run(cmd: &mut Command, what: String) -> Run {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    Run {
        what,
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// The server's client program (`lxc`, or `incus` in the Incus run).
///
/// An `exec` that LXD could not attach to the instance (its forkexec
/// failed: the client exits 255 with [`TRANSIENT_EXEC`], nothing ran; a
/// known LXD flake, canonical/lxd#12084, seen in CI on a running instance)
/// is tried again, at most 5 times a second apart, and said on stderr.
fn lxc(args: &[&str]) -> Run {
    let s = server();
    let argv = s.argv(args);
    let once = || {
        run(
            Command::new(s.program()).args(&argv).env("LC_ALL", "C"),
            format!("{} {}", s.program(), argv.join(" ")),
        )
    };
    let mut r = once();
    for _ in 0..5 {
        if args.first() != Some(&"exec")
            || r.code != Some(255)
            || !r.stderr.contains(TRANSIENT_EXEC)
        {
            break;
        }
        eprintln!(
            "e2e: `{}` hit LXD's transient exec error; trying again",
            r.what
        );
        std::thread::sleep(Duration::from_secs(1));
        r = once();
    }
    r
}

fn lxc_json(args: &[&str]) -> Value {
    let r = lxc(args).ok();
    serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {}", r.what, r.out()))
}

/// `lxc query PATH`, `None` if LXD says it does not exist.
fn query(path: &str) -> Option<Value> {
    let r = lxc(&["query", path]);
    if r.code != Some(0) {
        assert!(
            r.stderr.to_lowercase().contains("not found"),
            "{}",
            r.describe()
        );
        return None;
    }
    Some(serde_json::from_slice(&r.stdout).expect("lxc query prints JSON"))
}

/// Runs `program args` with a time limit: its exit status, or why there is none.
fn run_limited(
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let what = format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what} did not answer within {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Spawns `cmd` (`what` names it) with no stdin, its stdout and stderr
    /// into `log`, or nowhere.
    fn spawn(cmd: &mut Command, log: Option<&std::path::Path>, what: &str) -> ChildGuard {
        let out = || match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        ChildGuard(Some(child))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// First global IPv4 of an instance JSON (`lxc list --format json` or a
/// recursive `lxc query`), as ldm reads it.
fn ipv4(inst: &Value) -> Option<String> {
    inst["state"]["network"]
        .as_object()?
        .iter()
        .filter(|(nic, _)| nic.as_str() != "lo")
        .flat_map(|(_, n)| n["addresses"].as_array().into_iter().flatten())
        .find(|a| a["family"] == "inet" && a["scope"] == "global")
        .and_then(|a| a["address"].as_str().map(str::to_string))
}

/// Polls as ldm does (every 100 ms for 5 s, then backing off to 1 s) until
/// `f` gives a value.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(wait);
        if start.elapsed() > Duration::from_secs(5) {
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

/// Bare lxc doing what `ldm up` of `lxd_names` does: each started in its
/// own thread, then its IPv4 waited for. The wall time of the whole.
fn bare_up(lxd_names: &[String]) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for n in lxd_names {
            s.spawn(move || {
                lxc(&["start", n]).ok();
                wait_ipv4(n);
            });
        }
    });
    t.elapsed()
}

/// CPU time the whole machine has spent busy so far (all cores, from
/// /proc/stat in USER_HZ = 100 ticks a second).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        // user nice system [idle iowait] irq softirq steal
        .filter(|(i, _)| ![3, 4].contains(i) && *i < 8)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time (user + system) of this process's children that have ended
/// and been waited for: an `ldm` run and every client call it made.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The machine's cores, as a factor.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The median of three or more durations.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Waits for an IPv4 on `lxd_name` as a script would: the instance query
/// every 100 ms (ldm asks LXD only when the kernel shows an address).
fn wait_ipv4(lxd_name: &str) -> String {
    poll(Duration::from_secs(60), || {
        query(&format!("/1.0/instances/{lxd_name}?recursion=1")).and_then(|v| ipv4(&v))
    })
    .unwrap_or_else(|| panic!("{lxd_name} got no IPv4 address within 60 s"))
}

/// Some deterministic bytes (xorshift), so no two runs share a payload.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// Sends `len` bytes to a counting sink, half-closes, and returns the count
/// the sink answers with.
fn send_counted(to: SocketAddr, len: usize) -> std::io::Result<u64> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let buf = vec![0x5au8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        s.write_all(&buf[..n])?;
        left -= n;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    Ok(u64::from_le_bytes(count))
}

/// Connects and reads until the server closes; `None` on any failure.
fn fetch(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

fn rfc3339_age(text: &str) -> Option<Duration> {
    // LXD prints nanoseconds; humantime takes up to 9 digits.
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// A unix socket standing in for the server's (ldm is pointed at its
/// folder with `LXD_DIR`/`INCUS_DIR`): every connection is passed through,
/// except that the first request body naming `path` (and, with
/// `without_shift`, not `shift`) is held for `hold` after `begun` is
/// written. A held request still reaches the server once the ldm that sent
/// it was killed, and the connection stays open until the server answered,
/// as a client program's would have.
struct SlowSocket {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowSocket {
    fn start(
        dir: &std::path::Path,
        path: String,
        without_shift: bool,
        begun: PathBuf,
        hold: Duration,
    ) -> SlowSocket {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // In a 0700 folder: this socket reaches the server as this user.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let listener = UnixListener::bind(dir.join("unix.socket")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (quit, held) = (Arc::clone(&stop), Arc::new(AtomicBool::new(false)));
        let upstream = server().socket();
        std::thread::spawn(move || {
            while !quit.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(up) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut u_out) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                let (mut u_in, mut c_out) = (up, client);
                let (held, path, begun) = (Arc::clone(&held), path.clone(), begun.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    // Until the client ends; the server's side stays open
                    // for its answer.
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buf[..n];
                        let has = |w: &[u8]| chunk.windows(w.len()).any(|x| x == w);
                        if has(path.as_bytes())
                            && !(without_shift && has(b"shift"))
                            && !held.swap(true, Ordering::SeqCst)
                        {
                            std::fs::write(&begun, b"").unwrap();
                            std::thread::sleep(hold);
                        }
                        if u_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u_in, &mut c_out);
                });
            }
        });
        SlowSocket { stop }
    }
}

impl Drop for SlowSocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------- cleanup

/// Deletes every instance and image alias whose name starts with `stem`
/// (and, with `stale`, any suite leftovers older than [`STALE_AFTER`]).
fn sweep(stem: &str, stale: bool) {
    let Ok(list) = serde_json::from_slice::<Value>(&lxc(&["list", "--format", "json"]).stdout)
    else {
        return;
    };
    let doomed: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let name = i["name"].as_str()?;
            let old = stale
                && name.starts_with(STEM_PREFIX)
                && i["created_at"]
                    .as_str()
                    .and_then(rfc3339_age)
                    .is_some_and(|age| age > STALE_AFTER);
            (name.starts_with(stem) || old).then(|| name.to_string())
        })
        .collect();
    std::thread::scope(|s| {
        for name in &doomed {
            s.spawn(move || {
                // An instance LXD is still creating (a killed launch) cannot
                // be deleted yet: retry for up to a minute.
                let start = Instant::now();
                loop {
                    let r = lxc(&["delete", "--force", name]);
                    if r.code == Some(0) || !r.stderr.contains("busy") {
                        eprintln!("e2e cleanup: deleted instance {name} (exit {:?})", r.code);
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(60) {
                        eprintln!("e2e cleanup: cannot delete {name}: {}", r.stderr.trim());
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
        }
    });
    // LXD projects of the step `in_another_lxd_project`: their instances,
    // then the project.
    let projects = query("/1.0/projects").unwrap_or_default();
    for path in projects.as_array().into_iter().flatten() {
        let Some(p) = path.as_str().and_then(|p| p.rsplit('/').next()) else {
            continue;
        };
        if !(p.starts_with(stem) || (stale && p.starts_with(STEM_PREFIX))) {
            continue;
        }
        let names = query(&format!("/1.0/instances?project={p}")).unwrap_or_default();
        for i in names.as_array().into_iter().flatten() {
            let Some(name) = i.as_str().and_then(|i| i.rsplit('/').next()) else {
                continue;
            };
            let name = name.split('?').next().unwrap_or(name);
            let r = lxc(&["delete", "--force", "--project", p, name]);
            eprintln!(
                "e2e cleanup: deleted instance {name} of LXD project {p} (exit {:?})",
                r.code
            );
        }
        let r = lxc(&["project", "delete", p]);
        eprintln!("e2e cleanup: deleted LXD project {p} (exit {:?})", r.code);
    }
    // The profile and network of the step `lxd_project_per_person`
    // (profile first: it names the network). Stale ones go too: the
    // network's fixed address would refuse the next run's.
    for (kind, list) in [("profile", "/1.0/profiles"), ("network", "/1.0/networks")] {
        let all = query(list).unwrap_or_default();
        for path in all.as_array().into_iter().flatten() {
            let Some(n) = path.as_str().and_then(|p| p.rsplit('/').next()) else {
                continue;
            };
            if n.starts_with(stem) || (stale && n.starts_with(STEM_PREFIX)) {
                let r = lxc(&[kind, "delete", n]);
                eprintln!("e2e cleanup: deleted {kind} {n} (exit {:?})", r.code);
            }
        }
    }
    let images = query("/1.0/images?recursion=1").unwrap_or_default();
    for img in images.as_array().into_iter().flatten() {
        let old = stale
            && img["uploaded_at"]
                .as_str()
                .and_then(rfc3339_age)
                .is_some_and(|age| age > STALE_AFTER);
        for alias in img["aliases"].as_array().into_iter().flatten() {
            let Some(name) = alias["name"].as_str() else {
                continue;
            };
            if name.starts_with(stem) || (old && name.starts_with(STEM_PREFIX)) {
                let r = lxc(&["image", "delete", name]);
                eprintln!("e2e cleanup: deleted image {name} (exit {:?})", r.code);
            }
        }
    }
}

/// Deletes this run's LXD instances and images when dropped, pass or fail.
struct Cleanup {
    stem: String,
    keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "e2e: LDM_E2E_KEEP=1: leaving instances and images named {}* behind",
                self.stem
            );
            return;
        }
        sweep(&self.stem, false);
    }
}

// ---------------------------------------------------------------- the suite

/// One row of the timing table.
struct Timing {
    op: String,
    ldm: Duration,
    bare: Option<Duration>,
    bare_is: &'static str,
}

struct Suite {
    /// The project folder.
    dir: PathBuf,
    /// Host files for `mv`.
    scratch: PathBuf,
    project: String,
    /// Prefix of the bare-lxc instances.
    bare: String,
    image: String,
    profile: Option<String>,
    t0: Instant,
    timings: Vec<Timing>,
    /// What `container create a` and `b` printed on stdout (parallel_create).
    create_out: Vec<String>,
    /// Run the measurements that check nothing (proxy throughput, the up
    /// timing rounds, ldm list of 10 against curl): `LDM_E2E_BENCH`, by
    /// default in the LXD run only, so that CI's four runs (two servers,
    /// root and not) fit its time.
    bench: bool,
}

/// Prints a line on the real stderr: the test harness captures `eprintln!`,
/// and the throughput figures must be visible without `--nocapture`.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
#[ignore = "needs a real LXD with the ldm-debian image; run as root: bash tests/e2e/run.sh (sets LXD up, then runs this)"]
fn workflow_on_a_real_lxd() {
    workflow(Server::Lxd);
}

#[test]
#[ignore = "needs a real Incus with the ldm-debian image; run as root: bash tests/e2e/run.sh (sets LXD and Incus up, then runs this)"]
fn workflow_on_a_real_incus() {
    workflow(Server::Incus);
}

/// The whole workflow on `on`.
fn workflow(on: Server) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    SERVER.store(
        match on {
            Server::Lxd => 0,
            Server::Incus => 1,
        },
        std::sync::atomic::Ordering::SeqCst,
    );
    let image = std::env::var("LDM_E2E_DEBIAN_ALIAS").unwrap_or_else(|_| "ldm-debian".into());
    let ldm = ldm_bin();
    assert!(
        ldm.is_file(),
        "the ldm binary {} is missing (LDM_E2E_LDM or cargo's build)",
        ldm.display()
    );
    let (program, name) = (on.program(), on.name());
    let setup = match on {
        Server::Lxd => "bash tests/e2e/setup-lxd.sh",
        Server::Incus => "bash tests/e2e/setup-lxd.sh && bash tests/e2e/setup-incus.sh",
    };
    match run_limited(program, &["info"], Duration::from_secs(20)) {
        Ok(s) if s.success() => {}
        other => {
            let why = match other {
                Err(why) => why,
                Ok(s) => format!(
                    "`{program} info` failed ({s}); is {name} installed and running, and may this user use it (root or group {})?",
                    on.group()
                ),
            };
            panic!(
                "this test needs a real {name}, and none is reachable: {why}; `{setup}` (as root) sets one up"
            );
        }
    }
    assert!(
        query(&format!("/1.0/images/aliases/{image}")).is_some(),
        "this test needs the {name} image {image}, and {name} has none of that name; `{setup}` (as root) imports it (or set LDM_E2E_DEBIAN_ALIAS)"
    );
    let profile = std::env::var("LDM_E2E_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| Some("ldm-e2e".to_string()))
        .filter(|p| query(&format!("/1.0/profiles/{p}")).is_some());

    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let id = (nanos ^ (u64::from(std::process::id()) << 20)) & 0xff_ffff;
    let stem = format!("{STEM_PREFIX}{id:06x}");
    let keep = std::env::var("LDM_E2E_KEEP").is_ok_and(|v| v == "1");
    sweep(&stem, true);
    let _cleanup = Cleanup {
        stem: stem.clone(),
        keep,
    };
    let root = tempfile::Builder::new()
        .prefix("ldm-e2e-")
        .tempdir()
        .unwrap();
    // With LDM_E2E_KEEP=1 the files stay, pass or fail.
    let (root_path, _root) = if keep {
        (root.keep(), None)
    } else {
        (root.path().to_path_buf(), Some(root))
    };
    let dir = root_path.join("project");
    let scratch = root_path.join("host");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut s = Suite {
        dir,
        scratch,
        project: stem.clone(),
        bare: format!("{stem}x"),
        image,
        profile,
        t0: Instant::now(),
        timings: Vec::new(),
        create_out: Vec::new(),
        bench: match std::env::var("LDM_E2E_BENCH").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => on == Server::Lxd,
        },
    };
    eprintln!(
        "e2e: {} ({}), project {} in {}, image {}, profile {}, ldm {}, uid {}",
        on.name(),
        on.socket().display(),
        s.project,
        s.dir.display(),
        s.image,
        s.profile.as_deref().unwrap_or("(LXD default)"),
        ldm.display(),
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    );

    // For a developer's quick run of one self-contained step (CI runs all).
    if let Ok(only) = std::env::var("LDM_E2E_ONLY") {
        match only.as_str() {
            "two_checkouts" => s.two_checkouts(),
            "in_another_lxd_project" => s.in_another_lxd_project(),
            "lxd_project_per_person" => s.lxd_project_per_person(),
            "mount_create_cost" => {
                s.project_create();
                s.mount_create_cost()
            }
            other => panic!("LDM_E2E_ONLY={other}: not a self-contained step"),
        }
        return;
    }
    s.project_create();
    s.parallel_create();
    s.list();
    s.ssh();
    s.proxy();
    s.snapshot();
    s.reset();
    s.clone_container();
    s.mv();
    s.images();
    s.down_up();
    s.remove();
    s.two_checkouts();
    s.requests_per_command();
    s.in_another_lxd_project();
    s.lxd_project_per_person();
    s.interrupted_create();
    s.killed_then_acted_on_at_once();
    s.killed_create_at_each_step_then_removed();
    s.mounts();
    s.mount_create_cost();
    s.setup_resume();
    s.up_all();
    s.killed_up_all_and_mount();
    s.remove_mount_files();
    s.hostile_clone();
    s.container_rewrites_project_file();
    s.project_delete();

    s.print_timings();
    if keep {
        eprintln!("e2e: LDM_E2E_KEEP=1: files kept in {}", root_path.display());
    }
}

impl Suite {
    // ------------------------------------------------------------ helpers

    fn step(&self, what: &str) {
        eprintln!("e2e [{:6.1}s] {what}", self.t0.elapsed().as_secs_f64());
    }

    fn ldm_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ldm_bin());
        // The server of this run, named (ldm would say once which it picked).
        cmd.current_dir(&self.dir)
            .args(args)
            .env("NO_COLOR", "1")
            .env("LDM_LXC", server().program());
        match &self.profile {
            Some(p) => cmd.env("LDM_PROFILE", p),
            None => cmd.env_remove("LDM_PROFILE"),
        };
        cmd
    }

    fn ldm(&self, args: &[&str]) -> Run {
        run(&mut self.ldm_cmd(args), format!("ldm {}", args.join(" ")))
    }

    fn lxd_name(&self, c: &str) -> String {
        format!("{}-{c}", self.project)
    }

    fn bare_name(&self, c: &str) -> String {
        format!("{}-{c}", self.bare)
    }

    /// The project as its files hold it, read through the library.
    fn stored(&self) -> Project {
        Store::open(Paths::in_dir(&self.dir), Options::default())
            .read()
            .expect("the project files read back")
    }

    /// LXD's own list, this project's instances only.
    fn lxd_list(&self) -> Vec<Value> {
        let prefix = format!("{}-", self.project);
        lxc_json(&["list", "--format", "json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .cloned()
            .collect()
    }

    fn lxd_instance(&self, lxd_name: &str) -> Value {
        self.lxd_list()
            .into_iter()
            .find(|i| i["name"] == lxd_name)
            .unwrap_or_else(|| panic!("`lxc list` does not show {lxd_name}"))
    }

    /// Snapshot names from `lxc query /1.0/instances/NAME/snapshots`.
    fn lxd_snapshots(&self, lxd_name: &str) -> Vec<String> {
        let mut names: Vec<String> = query(&format!("/1.0/instances/{lxd_name}/snapshots"))
            .unwrap_or_else(|| panic!("LXD has no instance {lxd_name}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// `ldm list --json`, by container name.
    fn ldm_list(&self) -> (Run, Vec<Value>) {
        let r = self.ldm(&["list", "--json"]).ok();
        let v: Value = serde_json::from_slice(&r.stdout).expect("list --json prints JSON");
        let rows = v.as_array().expect("a JSON list").clone();
        (r, rows)
    }

    fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("`ldm list --json` has no row {name}: {rows:?}"))
    }

    /// Runs `script` (with `args` as $1...) as root in an instance, via bare
    /// lxc; retried on LXD's transient exec error.
    ///
    /// The script's output goes to files in the instance, read back with
    /// `file pull`: LXD 5.0's client sometimes returns no output at all from
    /// `exec` on a busy machine (canonical/lxd#11422), and CI runs the LXD
    /// and Incus suites side by side. The exit code is the operation's.
    fn exec(&self, lxd_name: &str, script: &str, args: &[&str]) -> Run {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = format!("/tmp/.ldm-e2e-{}-{n}", std::process::id());
        let wrapped = format!("{{\n{script}\n}} >{out}.out 2>{out}.err");
        let mut argv = vec!["exec", lxd_name, "--", "sh", "-c", &wrapped, "sh"];
        argv.extend(args);
        let mut r = lxc(&argv);
        if r.code == Some(255) {
            return r; // the client's own failure: nothing ran
        }
        // No files (the instance could not run the script): the client's
        // own output is all there is.
        let pull = |suffix: &str| {
            let p = lxc(&["file", "pull", &format!("{lxd_name}{out}.{suffix}"), "-"]);
            (p.code == Some(0)).then_some(p.stdout)
        };
        if let (Some(o), Some(e)) = (pull("out"), pull("err")) {
            r.stdout = o;
            r.stderr = String::from_utf8_lossy(&e).into_owned();
        }
        let _ = lxc(&[
            "exec",
            lxd_name,
            "--",
            "rm",
            "-f",
            &format!("{out}.out"),
            &format!("{out}.err"),
        ]);
        r
    }

    fn home(&self) -> String {
        format!("/home/{USER}")
    }

    fn time(&mut self, op: &str, ldm: Duration, bare: Option<Duration>, bare_is: &'static str) {
        self.timings.push(Timing {
            op: op.to_string(),
            ldm,
            bare,
            bare_is,
        });
    }

    /// Echoes ldm's own progress lines (`[2/5] ... (3.1s)`): where its time went.
    fn show_progress(&self, r: &Run) {
        for l in r.stderr.lines().filter(|l| l.starts_with('[')) {
            eprintln!("      {}: {l}", r.what);
        }
    }

    /// What `ldm container create` does, with bare lxc: launch with the
    /// same config, wait for cloud-init if any, create the user, snapshot,
    /// wait for an IPv4.
    fn bare_create(&self, name: &str, image: &str) -> Duration {
        let t = Instant::now();
        let mut marks = Vec::new();
        let mut mark = |what: &str| marks.push(format!("{what} {:.1}s", t.elapsed().as_secs_f64()));
        let mut args = vec![
            "launch",
            image,
            name,
            "--config",
            "security.nesting=true",
            "--config",
            "security.syscalls.intercept.mknod=true",
            "--config",
            "security.syscalls.intercept.setxattr=true",
        ];
        if let Some(p) = &self.profile {
            args.extend(["--profile", p]);
        }
        lxc(&args).ok();
        mark("launched");
        self.exec(
            name,
            "command -v cloud-init >/dev/null 2>&1 || exit 0; cloud-init status --wait",
            &[],
        )
        .ok();
        self.exec(
            name,
            r#"set -eu
id -u "$1" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$1"
printf '%s:%s\n' "$1" "$2" | chpasswd
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$1" > "/etc/sudoers.d/90-ldm-$1"
chmod 0440 "/etc/sudoers.d/90-ldm-$1"
systemctl enable --now ssh >/dev/null 2>&1 || true"#,
            &[USER, PASSWORD],
        )
        .ok();
        mark("user set up");
        lxc(&["snapshot", name, "initial-state"]).ok();
        mark("snapshot taken");
        wait_ipv4(name);
        mark("IPv4");
        eprintln!("      bare create {name}: {}", marks.join(", "));
        t.elapsed()
    }

    // ------------------------------------------------------------ steps

    fn project_create(&mut self) {
        self.step("create project, configure user");
        let r = self.ldm(&["create", "--name", &self.project]).ok();
        assert!(r.out().contains("Created project"), "{}", r.describe());
        self.ldm(&["config", "set", "defaults.user.name", USER])
            .ok();
        self.ldm(&["config", "set", "defaults.user.password", PASSWORD])
            .ok();
        let p = self.stored();
        assert_eq!(p.project, self.project);
        assert!(p.containers.is_empty());
        assert_eq!(
            p.effective_user("any"),
            (USER.to_string(), PASSWORD.to_string())
        );
        for f in ["containers.yaml", "containers.log", "containers.lock"] {
            assert!(self.dir.join(f).exists(), "{f} missing after create");
        }
    }

    fn parallel_create(&mut self) {
        // ldm's two creates run in parallel with the two bare-lxc ones, so
        // that both sides see the same load on a shared machine.
        self.step("container create a, b in parallel (with 2 bare-lxc creates alongside)");
        let image = self.image.clone();
        let (b1, b2) = (self.bare_name("one"), self.bare_name("two"));
        let me = &*self;
        let t = Instant::now();
        let (ra, rb, bare_took) = std::thread::scope(|sc| {
            let a = sc.spawn(|| me.ldm(&["container", "create", "a", &image]));
            let b = sc.spawn(|| me.ldm(&["container", "create", "b", &image]));
            let x = sc.spawn(|| me.bare_create(&b1, &image));
            let y = sc.spawn(|| me.bare_create(&b2, &image));
            let bare = x.join().unwrap().max(y.join().unwrap());
            (a.join().unwrap(), b.join().unwrap(), bare)
        });
        let ldm_took = ra.took.max(rb.took);
        eprintln!(
            "e2e: all four creates done after {:.1}s",
            t.elapsed().as_secs_f64()
        );
        for (r, c) in [(ra.ok(), "a"), (rb.ok(), "b")] {
            self.show_progress(&r);
            self.create_out.push(r.out());
            assert!(
                r.out()
                    .contains(&format!("Created {c} ({})", self.lxd_name(c))),
                "{}",
                r.describe()
            );
            assert!(
                r.out().contains(&format!("user:      {USER}")),
                "{}",
                r.describe()
            );
        }
        let p = self.stored();
        for c in ["a", "b"] {
            let rec = p.containers.get(c).expect("recorded");
            assert_eq!(rec.image, self.image);
            assert!(
                rec.pending.is_none(),
                "{c} still pending: {:?}",
                rec.pending
            );
            assert_eq!(
                rec.snapshots.keys().collect::<Vec<_>>(),
                ["initial-state"],
                "{c}"
            );
            let inst = self.lxd_instance(&self.lxd_name(c));
            assert_eq!(inst["status"], "Running", "{c}");
            assert_eq!(inst["config"]["security.nesting"], "true", "{c}");
            assert_eq!(self.lxd_snapshots(&self.lxd_name(c)), ["initial-state"]);
            // The user exists with the configured password and passwordless sudo.
            let shadow = self
                .exec(
                    &self.lxd_name(c),
                    "getent shadow \"$1\" | cut -d: -f2",
                    &[USER],
                )
                .ok()
                .out();
            let check = self
                .exec(
                    &self.lxd_name(c),
                    r#"perl -e 'print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? "match" : "differs"' "$1" "$2""#,
                    &[PASSWORD, shadow.trim()],
                )
                .ok()
                .out();
            assert_eq!(
                check, "match",
                "{c}: the password hash {shadow:?} is not of {PASSWORD:?}"
            );
            assert!(shadow.starts_with("$6$"), "{c}: {shadow}");
        }

        self.time(
            "container create (2 in parallel)",
            ldm_took,
            Some(bare_took),
            "launch + exec setup + snapshot + IPv4 wait; x2, alongside ldm's",
        );
    }

    fn list(&mut self) {
        self.step("list --json: both RUNNING with an IPv4");
        let (r, rows) = self.ldm_list();
        assert_eq!(rows.len(), 2, "{rows:?}");
        for c in ["a", "b"] {
            let row = Self::row(&rows, c);
            let inst = self.lxd_instance(&self.lxd_name(c));
            assert_eq!(row["status"], "RUNNING", "{row}");
            assert_eq!(row["lxd_name"], self.lxd_name(c).as_str());
            assert_eq!(row["snapshots"], 1);
            let ip = row["ipv4"]
                .as_str()
                .unwrap_or_else(|| panic!("{c} has no IPv4: {row}"));
            assert_eq!(
                Some(ip.to_string()),
                ipv4(&inst),
                "ldm and LXD disagree on {c}'s IPv4"
            );
        }
        let text = self.ldm(&["list"]).ok().out();
        for c in ["a", "b"] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{c} ")))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(line.contains("RUNNING"), "{line}");
        }
        let bare = lxc(&["list", "--format", "json"]).ok();
        self.time(
            "list --json",
            r.took,
            Some(bare.took),
            "lxc list --format json",
        );
    }

    fn ssh(&mut self) {
        self.step("ssh: user, root, exit code, argv, sudo");
        let r = self.ldm(&["ssh", "a", "--", "id", "-un"]).ok();
        assert_eq!(r.out().trim(), USER);
        let ldm_took = r.took;
        let r = self.ldm(&["ssh", "a", "-u", "root", "--", "id", "-u"]).ok();
        assert_eq!(r.out().trim(), "0");
        self.ldm(&["ssh", "a", "--", "sh", "-c", "exit 3"])
            .expect_code(3);
        let r = self
            .ldm(&["ssh", "a", "--", "printf", "%s|", "a b", "c'd", "$HOME", ""])
            .ok();
        assert_eq!(r.out(), "a b|c'd|$HOME||");
        let r = self.ldm(&["ssh", "b", "--", "sudo", "-n", "id", "-u"]).ok();
        assert_eq!(r.out().trim(), "0");
        let r = self.ldm(&["ssh", "a", "--", "sh", "-c", "echo $HOME"]).ok();
        assert_eq!(r.out().trim(), self.home());
        let bare = lxc(&[
            "exec",
            &self.bare_name("one"),
            "--",
            "su",
            "-l",
            USER,
            "-c",
            "id -un",
        ])
        .ok();
        assert_eq!(bare.out().trim(), USER);
        self.time(
            "ssh NAME -- id -un",
            ldm_took,
            Some(bare.took),
            "lxc exec su -l USER -c 'id -un'",
        );
    }

    fn proxy(&mut self) {
        self.step("config set ports, proxy to a server in the container");
        let port = free_port();
        let port_s = port.to_string();
        self.ldm(&["config", "set", "containers.a.ports", &port_s])
            .ok();
        assert_eq!(self.stored().containers["a"].ports, [port]);
        let got = self.ldm(&["config", "get", "containers.a.ports"]).ok();
        assert_eq!(got.out().trim(), port_s);
        let (_, rows) = self.ldm_list();
        assert_eq!(Self::row(&rows, "a")["ports"], serde_json::json!([port]));

        // A tiny server: perl is in every Debian (perl-base is essential);
        // python3, nc and busybox are not in the minbase image.
        const SERVER: &str = r#"my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1) or die "listen: $!";
chomp(my $h = `hostname`);
while (my $c = $s->accept) { print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nldm-e2e-proxy $h\n"; close $c }"#;
        self.ldm(&[
            "ssh",
            "a",
            "-u",
            "root",
            "--",
            "sh",
            "-c",
            r#"setsid perl -MIO::Socket::INET -e "$1" "$2" </dev/null >/dev/null 2>&1 &"#,
            "sh",
            SERVER,
            &port_s,
        ])
        .ok();
        let ip: std::net::IpAddr = ipv4(&self.lxd_instance(&self.lxd_name("a")))
            .expect("a has an IPv4")
            .parse()
            .unwrap();
        let want = format!("ldm-e2e-proxy {}", self.lxd_name("a"));
        let direct = poll(Duration::from_secs(10), || {
            fetch(SocketAddr::new(ip, port)).filter(|t| t.contains(&want))
        });
        assert!(
            direct.is_some(),
            "the test server in a does not answer on {ip}:{port}"
        );

        let log = self.scratch.join("proxy.log");
        let mut guard = ChildGuard::spawn(
            &mut self.ldm_cmd(&["proxy", "a"]),
            Some(log.as_path()),
            "ldm proxy",
        );
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        let (text, took) = loop {
            if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "`ldm proxy a` exited ({status}) instead of forwarding:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Some(t) = fetch(local).filter(|t| t.contains(&want)) {
                break (t, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nothing answered {want:?} on {local} through `ldm proxy a` within 20 s; its output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        drop(guard);
        assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
        eprintln!(
            "e2e: proxy answered through {local} after {:.1}s",
            took.as_secs_f64()
        );
        // An explicit LOCAL:REMOTE pair on another local port.
        let other = free_port();
        let pair = format!("{other}:{port}");
        let _guard = ChildGuard::spawn(
            &mut self.ldm_cmd(&["proxy", "a", "--bind", "127.0.0.1", "-p", &pair]),
            None,
            "ldm proxy -p",
        );
        let got = poll(Duration::from_secs(20), || {
            fetch(SocketAddr::from(([127, 0, 0, 1], other))).filter(|t| t.contains(&want))
        });
        assert!(got.is_some(), "`ldm proxy a -p {pair}` did not forward");
        if self.bench {
            self.proxy_throughput(ip);
        }
    }

    /// Bulk bytes host → container, direct and through `ldm proxy`, to a
    /// sink in the container that answers with the count it received: the
    /// count must match (byte-exact on real LXD), and the speeds are printed
    /// (the loopback figure of `cargo bench --bench proxy`, for a real bridge).
    fn proxy_throughput(&mut self, ip: std::net::IpAddr) {
        const SINK: &str = r#"my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { if (fork() == 0) { my ($b, $n, $t) = ("", 0, 0); while (($n = sysread($c, $b, 262144)) > 0) { $t += $n } syswrite($c, pack("Q<", $t)); exit 0 } close $c }"#;
        let port = free_port();
        let port_s = port.to_string();
        self.ldm(&[
            "ssh",
            "a",
            "-u",
            "root",
            "--",
            "sh",
            "-c",
            r#"setsid perl -MIO::Socket::INET -e "$1" "$2" </dev/null >/dev/null 2>&1 &"#,
            "sh",
            SINK,
            &port_s,
        ])
        .ok();
        let local = free_port();
        let _guard = ChildGuard::spawn(
            &mut self.ldm_cmd(&["proxy", "a", "-p", &format!("{local}:{port}")]),
            None,
            "ldm proxy -p",
        );
        let (direct, via) = (
            SocketAddr::new(ip, port),
            SocketAddr::from(([127, 0, 0, 1], local)),
        );
        let ready = |to| poll(Duration::from_secs(20), || send_counted(to, 1).ok());
        assert!(
            ready(direct).is_some(),
            "the sink in a does not answer on {direct}"
        );
        assert!(
            ready(via).is_some(),
            "`ldm proxy a -p {local}:{port}` does not forward to the sink"
        );
        const MIB: usize = 512;
        let (mut d, mut p) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            for (to, out) in [(direct, &mut d), (via, &mut p)] {
                let t = Instant::now();
                let got = send_counted(to, MIB << 20).expect("bulk transfer");
                assert_eq!(
                    got,
                    (MIB << 20) as u64,
                    "the sink counted other bytes via {to}"
                );
                out.push(MIB as f64 / t.elapsed().as_secs_f64());
            }
        }
        d.sort_by(f64::total_cmp);
        p.sort_by(f64::total_cmp);
        loud(&format!(
            "e2e: proxy throughput host -> container ({MIB} MiB, median of 5): direct {:.0} MiB/s, ldm proxy {:.0} MiB/s ({:.0}%)",
            d[2],
            p[2],
            100.0 * p[2] / d[2]
        ));
    }

    fn snapshot(&mut self) {
        self.step("snapshot create/list with a description");
        let a = self.lxd_name("a");
        // Only s1 holds this file: a clone from s1 must have it.
        self.ldm(&["ssh", "a", "--", "sh", "-c", "echo s1 > ~/in-s1"])
            .ok();
        let r = self
            .ldm(&[
                "container",
                "snapshot",
                "create",
                "a",
                "s1",
                "-d",
                "before the change",
            ])
            .ok();
        assert!(
            r.out().contains("Created snapshot s1 of a"),
            "{}",
            r.describe()
        );
        assert_eq!(self.lxd_snapshots(&a), ["initial-state", "s1"]);
        let p = self.stored();
        let s1 = &p.containers["a"].snapshots["s1"];
        assert_eq!(s1.description, "before the change");
        assert!(s1.pending.is_none());
        let text = self.ldm(&["container", "snapshot", "list", "a"]).ok().out();
        let line = text
            .lines()
            .find(|l| l.starts_with("s1 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("before the change"), "{text}");
        let json: Value = serde_json::from_slice(
            &self
                .ldm(&["container", "snapshot", "list", "a", "--json"])
                .ok()
                .stdout,
        )
        .unwrap();
        let row = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "s1")
            .expect("s1 row");
        assert_eq!(row["description"], "before the change");
        assert_eq!(row["in_lxd"], true);
        assert_eq!(row["recorded"], true);
        let bare = lxc(&["snapshot", &self.bare_name("one"), "s1"]).ok();
        self.time(
            "container snapshot create",
            r.took,
            Some(bare.took),
            "lxc snapshot",
        );

        self.step("snapshot delete (and initial-state is refused)");
        self.ldm(&["container", "snapshot", "create", "a", "s2"])
            .ok();
        assert_eq!(self.lxd_snapshots(&a), ["initial-state", "s1", "s2"]);
        let r = self
            .ldm(&["container", "snapshot", "delete", "a", "s2"])
            .ok();
        assert_eq!(self.lxd_snapshots(&a), ["initial-state", "s1"]);
        assert!(!self.stored().containers["a"].snapshots.contains_key("s2"));
        let refused = self
            .ldm(&["container", "snapshot", "delete", "a", "initial-state"])
            .expect_code(1);
        assert!(
            refused.stderr.contains("cannot be deleted"),
            "{}",
            refused.describe()
        );
        assert_eq!(self.lxd_snapshots(&a), ["initial-state", "s1"]);
        let bare = lxc(&["delete", &format!("{}/s1", self.bare_name("one"))]).ok();
        self.time(
            "container snapshot delete",
            r.took,
            Some(bare.took),
            "lxc delete NAME/SNAP",
        );
    }

    fn reset(&mut self) {
        self.step("change a file, container reset");
        let a = self.lxd_name("a");
        self.ldm(&["ssh", "a", "--", "sh", "-c", "echo changed > ~/marker"])
            .ok();
        self.exec(&a, "test -f \"$1/marker\"", &[&self.home()]).ok();
        let r = self.ldm(&["container", "reset", "a"]).ok();
        assert!(
            r.out().contains("Reset a to initial-state (running)"),
            "{}",
            r.describe()
        );
        self.exec(&a, "test ! -e \"$1/marker\"", &[&self.home()])
            .ok();
        assert_eq!(self.lxd_instance(&a)["status"], "Running");
        assert_eq!(self.lxd_snapshots(&a), ["initial-state", "s1"]);
        assert!(self.stored().containers["a"].pending.is_none());
        self.exec(&a, "test ! -e \"$1/in-s1\"", &[&self.home()])
            .ok();

        self.step("container reset to a snapshot that does not exist");
        let r2 = self
            .ldm(&["container", "reset", "a", "no-such-snap"])
            .expect_code(1);
        assert!(
            r2.stderr.contains("ldm container snapshot list a`"),
            "the hint must name the container a, not the LXD instance: {}",
            r2.describe()
        );
        assert_eq!(
            self.lxd_instance(&a)["status"],
            "Running",
            "`ldm container reset a no-such-snap` must not stop the running container"
        );
        assert!(self.stored().containers["a"].pending.is_none());

        let one = self.bare_name("one");
        let t = Instant::now();
        lxc(&["stop", &one]).ok();
        lxc(&["restore", &one, "initial-state"]).ok();
        lxc(&["start", &one]).ok();
        self.time(
            "container reset",
            r.took,
            Some(t.elapsed()),
            "stop + restore + start",
        );
    }

    fn clone_container(&mut self) {
        self.step("container clone a d: own initial-state, none of a's snapshots");
        // The bare-lxc clone runs alongside, under the same load.
        let me = &*self;
        let (r, bare_clone) = std::thread::scope(|sc| {
            let bare = sc.spawn(|| me.bare_clone());
            let r = me.ldm(&["container", "clone", "a", "d"]);
            (r, bare.join().unwrap())
        });
        let r = r.ok();
        self.show_progress(&r);
        assert!(r.out().contains("Cloned a to d"), "{}", r.describe());
        let d = self.lxd_name("d");
        let inst = self.lxd_instance(&d);
        assert_eq!(inst["status"], "Running");
        assert!(ipv4(&inst).is_some(), "d has no IPv4 after clone: {inst}");
        let snaps = query(&format!("/1.0/instances/{d}/snapshots")).unwrap();
        assert_eq!(
            snaps,
            serde_json::json!([format!("/1.0/instances/{d}/snapshots/initial-state")]),
            "the clone must have its own initial-state and nothing else"
        );
        assert_eq!(
            self.lxd_snapshots(&self.lxd_name("a")),
            ["initial-state", "s1"]
        );
        let p = self.stored();
        let rec = &p.containers["d"];
        assert_eq!(rec.snapshots.keys().collect::<Vec<_>>(), ["initial-state"]);
        assert!(rec.pending.is_none());
        assert_eq!(rec.image, format!("{}:cloned-from-a", self.image));
        // The clone's initial-state is its own: a snapshot taken now differs.
        let created =
            &query(&format!("/1.0/instances/{d}/snapshots/initial-state")).unwrap()["created_at"];
        let src = &query(&format!(
            "/1.0/instances/{}/snapshots/initial-state",
            self.lxd_name("a")
        ))
        .unwrap()["created_at"];
        assert_ne!(created, src);

        self.step("container clone -s s1 a e: the state of s1");
        let r_snap = self.ldm(&["container", "clone", "a", "e", "-s", "s1"]).ok();
        assert!(
            r_snap.out().contains("Cloned a/s1 to e"),
            "{}",
            r_snap.describe()
        );
        let e = self.lxd_name("e");
        assert_eq!(self.lxd_snapshots(&e), ["initial-state"]);
        assert_eq!(self.lxd_instance(&e)["status"], "Running");
        let got = self
            .exec(&e, "cat \"$1/in-s1\"", &[&self.home()])
            .ok()
            .out();
        assert_eq!(got, "s1\n", "the clone from s1 does not hold s1's files");
        let p = self.stored();
        assert_eq!(
            p.containers["e"].snapshots.keys().collect::<Vec<_>>(),
            ["initial-state"]
        );
        assert!(p.containers["e"].pending.is_none());

        self.time(
            "container clone",
            r.took,
            Some(bare_clone),
            "copy --instance-only + snapshot + start + IPv4 wait; alongside",
        );
    }

    /// What `ldm container clone` does, with bare lxc.
    fn bare_clone(&self) -> Duration {
        let (one, copy) = (self.bare_name("one"), self.bare_name("copy"));
        let t = Instant::now();
        lxc(&["copy", &one, &copy, "--instance-only"]).ok();
        lxc(&["snapshot", &copy, "initial-state"]).ok();
        lxc(&["start", &copy]).ok();
        wait_ipv4(&copy);
        t.elapsed()
    }

    /// What `ldm image create` does, with bare lxc.
    fn bare_publish(&self, alias: &str) -> Duration {
        let one = self.bare_name("one");
        let t = Instant::now();
        lxc(&["stop", &one]).ok();
        lxc(&["snapshot", &one, "publish-tmp"]).ok();
        lxc(&["publish", &format!("{one}/publish-tmp"), "--alias", alias]).ok();
        lxc(&["delete", &format!("{one}/publish-tmp")]).ok();
        lxc(&["start", &one]).ok();
        t.elapsed()
    }

    fn mv(&mut self) {
        self.step("mv host -> container -> host");
        let a = self.lxd_name("a");
        let bytes = payload(256 * 1024, 0x5eed ^ u64::from(std::process::id()));
        let src = self.scratch.join("pay load.bin");
        std::fs::write(&src, &bytes).unwrap();
        let src_s = src.to_str().unwrap().to_string();
        let r = self.ldm(&["mv", &src_s, "a:~/"]).ok();
        let dest = format!("{}/pay load.bin", self.home());
        assert!(r.out().contains(&format!("a:{dest}")), "{}", r.describe());
        let st = self
            .exec(&a, "stat -c '%U:%G %s' \"$1\"", &[&dest])
            .ok()
            .out();
        assert_eq!(st.trim(), format!("{USER}:{USER} {}", bytes.len()));
        let inside = self.exec(&a, "cat \"$1\"", &[&dest]).ok();
        assert!(inside.stdout == bytes, "the bytes in the container differ");
        let push_took = r.took;

        let back = self.scratch.join("back");
        std::fs::create_dir_all(&back).unwrap();
        let back_s = format!("{}/", back.display());
        let r = self.ldm(&["mv", "a:~/pay load.bin", &back_s]).ok();
        let pulled = back.join("pay load.bin");
        assert!(
            std::fs::read(&pulled).unwrap() == bytes,
            "the bytes pulled back differ"
        );
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(std::fs::metadata(&pulled).unwrap().uid(), me);
        let pull_took = r.took;
        let renamed = self.scratch.join("renamed.bin");
        self.ldm(&["mv", &format!("a:{dest}"), renamed.to_str().unwrap()])
            .ok();
        assert!(std::fs::read(&renamed).unwrap() == bytes);

        // A folder, into an existing folder, then under a new name (cp -r semantics).
        let tree = self.scratch.join("tree");
        std::fs::create_dir_all(tree.join("sub dir")).unwrap();
        std::fs::write(tree.join("sub dir/f 1.txt"), b"one\n").unwrap();
        std::fs::write(tree.join("top"), b"top\n").unwrap();
        self.ldm(&["mv", tree.to_str().unwrap(), "a:~/"]).ok();
        let owners = self
            .exec(
                &a,
                "find \"$1\" -printf '%u:%g %P\\n' | sort",
                &[&format!("{}/tree", self.home())],
            )
            .ok()
            .out();
        assert_eq!(
            owners,
            format!("{USER}:{USER} \n{USER}:{USER} sub dir\n{USER}:{USER} sub dir/f 1.txt\n{USER}:{USER} top\n")
        );
        let r = self
            .ldm(&["mv", tree.to_str().unwrap(), "a:~/tree-copy"])
            .ok();
        assert!(
            r.out().contains(&format!("a:{}/tree-copy", self.home())),
            "{}",
            r.describe()
        );
        // A folder to a path that does not exist yet: the folder takes that
        // name (cp -r), and nothing lands inside the earlier copy.
        let copied = self
            .exec(
                &a,
                "cd \"$1\" && find tree-copy tree -printf '%u %p\\n' | sort",
                &[&self.home()],
            )
            .ok()
            .out();
        assert_eq!(
            copied,
            format!(
                "{USER} tree\n{USER} tree-copy\n{USER} tree-copy/sub dir\n{USER} tree-copy/sub dir/f 1.txt\n{USER} tree-copy/top\n{USER} tree/sub dir\n{USER} tree/sub dir/f 1.txt\n{USER} tree/top\n"
            )
        );
        let got = self
            .exec(&a, "cat \"$1/tree-copy/sub dir/f 1.txt\"", &[&self.home()])
            .ok()
            .out();
        assert_eq!(got, "one\n");

        self.step("mv container -> container, and fan-out to *");
        let d = self.lxd_name("d");
        self.ldm(&["mv", "a:~/pay load.bin", "d:~/"]).ok();
        let copied = self.exec(&d, "cat \"$1\"", &[&dest]).ok();
        assert!(copied.stdout == bytes, "the bytes copied a -> d differ");
        let owner = self.exec(&d, "stat -c %U:%G \"$1\"", &[&dest]).ok().out();
        assert_eq!(owner.trim(), format!("{USER}:{USER}"));
        let fan = self.scratch.join("fan.txt");
        std::fs::write(&fan, b"to every container\n").unwrap();
        let r = self.ldm(&["mv", fan.to_str().unwrap(), "*:/tmp/"]).ok();
        for c in ["a", "b", "d"] {
            assert!(
                r.out().contains(&format!("{c}:/tmp/fan.txt")),
                "{}",
                r.describe()
            );
            let got = self
                .exec(
                    &self.lxd_name(c),
                    "stat -c %U /tmp/fan.txt; cat /tmp/fan.txt",
                    &[],
                )
                .ok()
                .out();
            assert_eq!(got, format!("{USER}\nto every container\n"), "{c}");
        }

        let one = self.bare_name("one");
        let t = Instant::now();
        lxc(&[
            "file",
            "push",
            &src_s,
            &format!("{one}/home/{USER}/pay load.bin"),
        ])
        .ok();
        lxc(&[
            "exec",
            &one,
            "--",
            "chown",
            &format!("{USER}:"),
            &format!("/home/{USER}/pay load.bin"),
        ])
        .ok();
        self.time(
            "mv host -> container",
            push_took,
            Some(t.elapsed()),
            "lxc file push + exec chown",
        );
        let to = self.scratch.join("bare-pulled.bin");
        let bare = lxc(&[
            "file",
            "pull",
            &format!("{one}/home/{USER}/pay load.bin"),
            to.to_str().unwrap(),
        ])
        .ok();
        self.time(
            "mv container -> host",
            pull_took,
            Some(bare.took),
            "lxc file pull",
        );
    }

    fn images(&mut self) {
        self.step("image create, container create from it, rename, delete");
        let a = self.lxd_name("a");
        let img = format!("{}-img", self.project);
        let img2 = format!("{}-img2", self.project);
        let (bimg, bimg2) = (format!("{}-img", self.bare), format!("{}-img2", self.bare));
        // The bare-lxc publish runs alongside, under the same load.
        let me = &*self;
        let (r, bare_publish) = std::thread::scope(|sc| {
            let bare = sc.spawn(|| me.bare_publish(&bimg));
            let r = me.ldm(&["image", "create", "a", &img]);
            (r, bare.join().unwrap())
        });
        let r = r.ok();
        self.show_progress(&r);
        assert!(
            r.out().contains(&format!("Created image {img} from a")),
            "{}",
            r.describe()
        );
        let alias = query(&format!("/1.0/images/aliases/{img}")).expect("the alias exists in LXD");
        let fingerprint = alias["target"].as_str().unwrap().to_string();
        let size = |alias: &str| {
            query(&format!("/1.0/images/aliases/{alias}"))
                .and_then(|a| query(&format!("/1.0/images/{}", a["target"].as_str()?)))
                .and_then(|i| i["size"].as_u64())
                .map_or("?".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6))
        };
        eprintln!(
            "e2e: published images: ldm's {img} {}, bare lxc's {bimg} {}",
            size(&img),
            size(&bimg)
        );
        assert_eq!(
            self.lxd_instance(&a)["status"],
            "Running",
            "a was running, so it is restarted"
        );
        assert_eq!(
            self.lxd_snapshots(&a),
            ["initial-state", "s1"],
            "no temporary snapshot left"
        );
        assert!(self.stored().containers["a"].pending.is_none());
        let listed: Value =
            serde_json::from_slice(&self.ldm(&["image", "list", "--json"]).ok().stdout).unwrap();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["fingerprint"] == fingerprint.as_str()
                    && i["aliases"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x == img.as_str())),
            "{listed}"
        );
        let ldm_image = r.took;

        let rc = self.ldm(&["container", "create", "c", &img]).ok();
        let c = self.lxd_name("c");
        assert_eq!(self.lxd_instance(&c)["status"], "Running");
        // The image is a's state: the file copied into a is there.
        let size = self
            .exec(&c, "stat -c %s \"$1/pay load.bin\"", &[&self.home()])
            .ok()
            .out();
        assert_eq!(size.trim(), (256 * 1024).to_string());
        let p = self.stored();
        assert_eq!(p.containers["c"].image, img);
        assert_eq!(
            p.containers["c"].snapshots.keys().collect::<Vec<_>>(),
            ["initial-state"]
        );

        let r = self.ldm(&["image", "rename", &img, &img2]).ok();
        assert!(query(&format!("/1.0/images/aliases/{img}")).is_none());
        assert_eq!(
            query(&format!("/1.0/images/aliases/{img2}")).expect("renamed alias")["target"],
            fingerprint.as_str()
        );
        let ldm_rename = r.took;
        let r = self.ldm(&["image", "delete", "-f", &img2]).ok();
        assert!(query(&format!("/1.0/images/aliases/{img2}")).is_none());
        assert!(
            query(&format!("/1.0/images/{fingerprint}")).is_none(),
            "the image itself is gone"
        );
        let ldm_delete = r.took;

        self.time(
            "image create",
            ldm_image,
            Some(bare_publish),
            "stop + snapshot + publish + delete snapshot + start; alongside",
        );
        self.time("container create (from that image)", rc.took, None, "-");
        let bare = lxc(&["image", "alias", "rename", &bimg, &bimg2]).ok();
        self.time(
            "image rename",
            ldm_rename,
            Some(bare.took),
            "lxc image alias rename",
        );
        let bare = lxc(&["image", "delete", &bimg2]).ok();
        self.time(
            "image delete -f",
            ldm_delete,
            Some(bare.took),
            "lxc image delete",
        );
    }

    fn down_up(&mut self) {
        self.step("down / up");
        let c = self.lxd_name("c");
        let r = self.ldm(&["down", "c"]).ok();
        assert!(r.out().contains("c is stopped"), "{}", r.describe());
        assert_eq!(self.lxd_instance(&c)["status"], "Stopped");
        let (_, rows) = self.ldm_list();
        assert_eq!(Self::row(&rows, "c")["status"], "STOPPED");
        let rec = &self.stored().containers["c"];
        assert!(rec.pending.is_none(), "{:?}", rec.pending);
        let refused = self.ldm(&["ssh", "c", "--", "true"]).expect_code(1);
        assert!(
            refused.stderr.contains("ldm up c"),
            "{}",
            refused.describe()
        );
        let ldm_down = r.took;
        let r = self.ldm(&["up", "c"]).ok();
        let inst = self.lxd_instance(&c);
        assert_eq!(inst["status"], "Running");
        let ip = ipv4(&inst).expect("c has an IPv4 after up");
        assert!(
            r.out().contains(&format!("c is running at {ip}")),
            "{}",
            r.describe()
        );
        let ldm_up = r.took;

        let two = self.bare_name("two");
        let bare = lxc(&["stop", &two]).ok();
        self.time("down", ldm_down, Some(bare.took), "lxc stop");
        let t = Instant::now();
        lxc(&["start", &two]).ok();
        wait_ipv4(&two);
        self.time("up", ldm_up, Some(t.elapsed()), "lxc start + IPv4 wait");
    }

    /// Issue 23: two folders with one containers.yaml. Every command of the
    /// copy leaves the first checkout's container running with its data;
    /// the first folder keeps working, also after a `mv`; a container made
    /// with plain `lxc` and named in an lxc-dev-manager style file is
    /// still managed.
    fn two_checkouts(&mut self) {
        self.step("two checkouts of one project: the copy never acts on the first's container");
        let (a, b) = (self.scratch.join("own-a"), self.scratch.join("own-b"));
        std::fs::create_dir_all(&a).unwrap();
        let project = format!("{}o", self.project);
        let inst = format!("{project}-dev");
        let ldm = |dir: &std::path::Path, args: &[&str]| {
            let mut cmd = self.ldm_cmd(args);
            cmd.current_dir(dir);
            run(
                &mut cmd,
                format!("ldm {} (in {})", args.join(" "), dir.display()),
            )
        };
        ldm(&a, &["create", "--name", &project]).ok();
        ldm(
            &a,
            &["container", "create", "dev", &self.image, "--no-mount"],
        )
        .ok();
        lxc(&[
            "exec",
            &inst,
            "--",
            "sh",
            "-c",
            "echo mine > /srv/data && chmod 644 /srv/data",
        ])
        .ok();
        let alive = |what: &str| {
            let i = query(&format!("/1.0/instances/{inst}"))
                .unwrap_or_else(|| panic!("{what} deleted {inst}"));
            assert_eq!(i["status"], "Running", "{what} stopped {inst}");
            let r = lxc(&["exec", &inst, "--", "cat", "/srv/data"]).ok();
            assert_eq!(r.out().trim(), "mine", "{what} lost the data in {inst}");
        };
        let st = Command::new("cp")
            .arg("-r")
            .arg(&a)
            .arg(&b)
            .status()
            .unwrap();
        assert!(st.success());
        let first = std::fs::canonicalize(&a).unwrap().display().to_string();
        for args in [
            &["down"][..],
            &["up"],
            &["container", "reset", "dev"],
            &["remove", "dev", "-f"],
        ] {
            let r = ldm(&b, args);
            assert_ne!(r.code, Some(0), "{}", r.describe());
            assert!(
                format!("{}{}", r.out(), r.stderr).contains(&first),
                "{}",
                r.describe()
            );
            alive(&format!("ldm {} in the copy", args.join(" ")));
        }
        ldm(&b, &["doctor", "--fix", "--force"]);
        alive("ldm doctor --fix --force in the copy");
        ldm(&b, &["project", "delete", "-f"]).ok();
        alive("ldm project delete -f in the copy");
        ldm(&a, &["down", "dev"]).ok();
        ldm(&a, &["up", "dev"]).ok();
        alive("the first checkout's down and up");
        let moved = self.scratch.join("own-a-moved");
        std::fs::rename(&a, &moved).unwrap();
        let r = ldm(&moved, &["ssh", "dev", "--", "cat", "/srv/data"]).ok();
        assert_eq!(r.out().trim(), "mine", "{}", r.describe());
        ldm(&moved, &["down", "dev"]).ok();
        ldm(&moved, &["up", "dev"]).ok();
        alive("down and up after mv");
        ldm(&moved, &["project", "delete", "-f"]).ok();
        assert!(query(&format!("/1.0/instances/{inst}")).is_none());

        self.step("a container made with plain lxc, named in an lxc-dev-manager file, is managed");
        let old = self.scratch.join("own-ldm");
        std::fs::create_dir_all(&old).unwrap();
        let project = format!("{}u", self.project);
        let inst = format!("{project}-web");
        let mut launch = vec!["launch", self.image.as_str(), inst.as_str()];
        if let Some(p) = &self.profile {
            // Incus's default profile here has no root disk.
            launch.extend(["--profile", p.as_str()]);
        }
        lxc(&launch).ok();
        lxc(&["stop", "--force", &inst]).ok();
        std::fs::write(
            old.join("containers.yaml"),
            format!(
                "project: {project}\ncontainers:\n  web:\n    image: {}\n",
                self.image
            ),
        )
        .unwrap();
        let r = ldm(&old, &["up", "web"]).ok();
        assert!(
            r.stderr.contains(&format!("marked {inst}")),
            "{}",
            r.describe()
        );
        assert_eq!(
            lxc_json(&["list", &inst, "--format", "json"])[0]["status"],
            "Running"
        );
        ldm(&old, &["remove", "web", "-f"]).ok();
        assert!(query(&format!("/1.0/instances/{inst}")).is_none());
    }

    fn remove(&mut self) {
        self.step("remove without -f refuses without a terminal; remove -f c");
        let c = self.lxd_name("c");
        let refused = self.ldm(&["remove", "c"]).expect_code(1);
        assert!(refused.stderr.contains("--force"), "{}", refused.describe());
        assert!(query(&format!("/1.0/instances/{c}")).is_some());
        assert!(self.stored().containers.contains_key("c"));
        let r = self.ldm(&["remove", "-f", "c"]).ok();
        assert!(r.out().contains("Removed c"), "{}", r.describe());
        assert!(query(&format!("/1.0/instances/{}", self.lxd_name("c"))).is_none());
        assert!(!self.stored().containers.contains_key("c"));
        let (_, rows) = self.ldm_list();
        assert!(rows.iter().all(|r| r["name"] != "c"), "{rows:?}");
        let bare = lxc(&["delete", "--force", &self.bare_name("two")]).ok();
        self.time(
            "remove -f (running)",
            r.took,
            Some(bare.took),
            "lxc delete --force",
        );
    }

    /// A client whose current LXD project is not `default` (its own
    /// LXD_CONF, so the machine's client config is untouched): ldm's queries
    /// must read that project, as its other calls do.
    fn in_another_lxd_project(&mut self) {
        if !self.in_root_run("a client whose current LXD project is not default") {
            return;
        }
        self.step(
            "a client whose current LXD project is not default: create, down, up, doctor, remove",
        );
        let proj = format!("{}p", self.project);
        lxc(&[
            "project",
            "create",
            &proj,
            "-c",
            "features.images=false",
            "-c",
            "features.profiles=false",
            "-c",
            "features.storage.volumes=false",
        ])
        .ok();
        let conf = self.scratch.join("lxd-conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("config.yml"),
            format!("default-remote: local\nremotes:\n  local:\n    addr: unix://\n    project: {proj}\n    public: false\n"),
        )
        .unwrap();
        let dir = self.scratch.join("in-lxd-project");
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("{}q", self.project);
        let conf_var = server().conf_var();
        let ldm = |args: &[&str]| {
            let mut cmd = self.ldm_cmd(args);
            cmd.current_dir(&dir).env(conf_var, &conf);
            run(
                &mut cmd,
                format!("{conf_var}={} ldm {}", conf.display(), args.join(" ")),
            )
        };
        let status = |lxd: &str| {
            query(&format!("/1.0/instances/{lxd}?project={proj}")).map(|i| i["status"].clone())
        };
        ldm(&["create", "--name", &name]).ok();
        let lxd = format!("{name}-p1");
        let r = ldm(&["container", "create", "p1", &self.image, "--no-mount"]).ok();
        // The address comes from a query: before the fix, "none yet" after 30 s.
        let inst = query(&format!("/1.0/instances/{lxd}?recursion=1&project={proj}"))
            .expect("the container is in the client's current LXD project");
        let ip = ipv4(&inst).expect("p1 has an IPv4");
        assert!(
            r.out().contains(&format!("IPv4:      {ip}")),
            "{}",
            r.describe()
        );
        assert!(
            query(&format!("/1.0/instances/{lxd}")).is_none(),
            "p1 is in the default project too"
        );
        // The machine's client (current project: default) sees no p1: `up`
        // must not make a second one there, and `list` says where it is.
        let mut cmd = self.ldm_cmd(&["up", "--dry-run"]);
        cmd.current_dir(&dir);
        let r = run(
            &mut cmd,
            "ldm up --dry-run (current project default)".into(),
        )
        .ok();
        assert!(
            r.out().contains(&format!(
                "p1: cannot: is not in LXD's current project: LXD project {proj} has an instance named {lxd}, and the client's current project has none; if it is this container, switch back with `{} project switch {proj}`",
                server().program()
            )),
            "{}",
            r.describe()
        );
        let mut cmd = self.ldm_cmd(&["list"]);
        cmd.current_dir(&dir);
        let r = run(&mut cmd, "ldm list (current project default)".into()).ok();
        assert!(
            r.stderr.contains(&format!(
                "note: p1 is NOT FOUND: LXD project {proj} has an instance named {lxd}"
            )),
            "{}",
            r.describe()
        );
        // `doctor --fix` must not forget p1 (exit 1: drift remains).
        let mut cmd = self.ldm_cmd(&["doctor", "--fix"]);
        cmd.current_dir(&dir);
        let r = run(
            &mut cmd,
            "ldm doctor --fix (current project default)".into(),
        )
        .expect_code(1);
        assert!(
            r.out()
                .contains(&format!("LXD project {proj} has an instance named {lxd}")),
            "{}",
            r.describe()
        );
        let r = ldm(&["down"]).ok();
        assert!(r.out().contains("p1: is stopped"), "{}", r.describe());
        assert_eq!(status(&lxd), Some("Stopped".into()));
        let r = ldm(&["up"]).ok();
        assert!(r.out().contains("p1: is running at "), "{}", r.describe());
        assert_eq!(status(&lxd), Some("Running".into()));
        let r = ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );
        ldm(&["remove", "-f", "p1"]).ok();
        assert_eq!(status(&lxd), None);
        lxc(&["project", "delete", &proj]).ok();
    }

    /// An LXD project per team member on one server (`ldm create
    /// --lxd-project`): two checkouts of one project, so two `PROJECT-dev`.
    /// On the one managed bridge with DNS, LXD refuses to start the second
    /// (one instance of a name per network) and ldm says why and what to
    /// do; with the second person's containers on a network of their own
    /// (LDM_PROFILE), both run side by side and neither's commands touch
    /// the other's.
    fn lxd_project_per_person(&mut self) {
        if !self.in_root_run("an LXD project per team member") {
            return;
        }
        self.step("an LXD project per person: two PROJECT-dev side by side");
        let (mine, theirs) = (format!("{}a", self.project), format!("{}b", self.project));
        let name = format!("{}t", self.project);
        let inst = format!("{name}-dev");
        // The second person's network (no DNS) and a profile on it, made
        // from the suite's; deleted at the end, and by name if left.
        let net = format!("{}n", self.project);
        let profile = format!("{}-nodns", self.project);
        let base = self.profile.clone().unwrap_or_else(|| "default".into());
        let address = match server() {
            Server::Lxd => "198.18.90.1/24",
            Server::Incus => "198.18.91.1/24",
        };
        lxc(&[
            "network",
            "create",
            &net,
            "--type=bridge",
            &format!("ipv4.address={address}"),
            "ipv4.nat=false",
            "ipv6.address=none",
            "dns.mode=none",
        ])
        .ok();
        lxc(&["profile", "copy", &base, &profile]).ok();
        lxc(&[
            "profile", "device", "set", &profile, "eth0", "network", &net,
        ])
        .ok();
        let folder = |who: &str| {
            let d = self.scratch.join(format!("person-{who}"));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let (a, b) = (folder("a"), folder("b"));
        let ldm = |dir: &std::path::Path, args: &[&str], profile: Option<&str>| {
            let mut cmd = self.ldm_cmd(args);
            cmd.current_dir(dir);
            if let Some(p) = profile {
                cmd.env("LDM_PROFILE", p);
            }
            run(
                &mut cmd,
                format!("ldm {} (in {})", args.join(" "), dir.display()),
            )
        };
        let status = |project: &str| {
            query(&format!("/1.0/instances/{inst}?project={project}"))
                .map(|i| i["status"].as_str().unwrap_or("").to_string())
        };
        ldm(
            &a,
            &["create", "--name", &name, "--lxd-project", &mine],
            None,
        )
        .ok();
        ldm(
            &b,
            &["create", "--name", &name, "--lxd-project", &theirs],
            None,
        )
        .ok();
        let create = ["container", "create", "dev", &self.image, "--no-mount"];
        ldm(&a, &create, None).ok();
        // On the same bridge: LXD refuses the start; ldm says why.
        let r = ldm(&b, &create, None).expect_code(1);
        assert!(
            r.stderr.contains(&format!(
                "LXD project {mine} has an instance named {inst} too, and on one managed network with DNS"
            )) && r.stderr.contains("LDM_PROFILE=PROFILE"),
            "{}",
            r.describe()
        );
        assert_eq!(status(&mine).as_deref(), Some("Running"));
        ldm(&b, &["remove", "-f", "dev"], None).ok();
        assert_eq!(status(&theirs), None);
        // On a network of their own: side by side.
        ldm(&b, &create, Some(&profile)).ok();
        assert_eq!(status(&mine).as_deref(), Some("Running"));
        assert_eq!(status(&theirs).as_deref(), Some("Running"));
        for (dir, other) in [(&a, &theirs), (&b, &mine)] {
            let r = ldm(dir, &["list", "--json"], None).ok();
            let v: Value = serde_json::from_slice(&r.stdout).unwrap();
            assert_eq!(v[0]["name"], "dev", "{}", r.describe());
            assert!(!r.out().contains(other.as_str()), "{}", r.describe());
        }
        ldm(&b, &["down"], None).ok();
        assert_eq!(status(&theirs).as_deref(), Some("Stopped"));
        assert_eq!(status(&mine).as_deref(), Some("Running"));
        ldm(&b, &["up"], None).ok();
        assert_eq!(status(&theirs).as_deref(), Some("Running"));
        ldm(&b, &["project", "delete", "-f"], None).ok();
        assert_eq!(status(&theirs), None);
        assert_eq!(status(&mine).as_deref(), Some("Running"));
        ldm(&a, &["project", "delete", "-f"], None).ok();
        assert_eq!(status(&mine), None);
        for p in [&mine, &theirs] {
            lxc(&["project", "delete", p]).ok();
        }
        lxc(&["profile", "delete", &profile]).ok();
        lxc(&["network", "delete", &net]).ok();
    }

    fn interrupted_create(&mut self) {
        self.step("kill -9 during container create k, list, doctor, re-run");
        let k = self.lxd_name("k");
        let log = self.scratch.join("killed-create.log");
        let mut guard = ChildGuard::spawn(
            &mut self.ldm_cmd(&["container", "create", "k", &self.image]),
            Some(log.as_path()),
            "ldm container create k",
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if query(&format!("/1.0/instances/{k}")).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // While it runs, `list` names the live owner.
        let (_, rows) = self.ldm_list();
        let live = Self::row(&rows, "k");
        let mut child = guard.0.take().unwrap();
        child.kill().expect("SIGKILL ldm");
        assert_eq!(live["pending"]["interrupted"], false, "{live}");
        assert_eq!(live["pending"]["pid"], child.id(), "{live}");
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "ldm finished before it could be killed ({status}); output:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        eprintln!(
            "e2e: killed ldm after {:.1}s; LXD has {k}: {}",
            start.elapsed().as_secs_f64(),
            query(&format!("/1.0/instances/{k}")).is_some()
        );

        let text = self.ldm(&["list"]).ok().out();
        let line = text
            .lines()
            .find(|l| l.starts_with("k "))
            .unwrap_or_else(|| panic!("`ldm list` does not show k:\n{text}"));
        assert!(line.contains("CREATING (interrupted)"), "{line}");
        let (_, rows) = self.ldm_list();
        let row = Self::row(&rows, "k");
        // "create" (the operation's kind) or "creating" (its verb).
        let op = row["pending"]["op"].as_str().unwrap_or_default();
        assert!(op.starts_with("creat"), "{row}");
        assert_eq!(row["pending"]["interrupted"], true, "{row}");
        let pending = self.stored().containers["k"]
            .pending
            .clone()
            .expect("k is pending in the files");
        assert_eq!(pending.op, ldm::model::Op::Create);

        let r = self.ldm(&["doctor"]).expect_code(1);
        assert!(
            r.out().contains("k: interrupted creating"),
            "{}",
            r.describe()
        );
        let json: Value =
            serde_json::from_slice(&self.ldm(&["doctor", "--json"]).expect_code(1).stdout).unwrap();
        assert_eq!(json["healthy"], true);
        assert!(
            json["drift"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["container"] == "k"),
            "{json}"
        );

        // Re-running the same command at once finishes the job: it waits
        // out LXD's work on the killed launch, and fails nowhere.
        let r = self.ldm(&["container", "create", "k", &self.image]).ok();
        assert!(r.out().contains("Created k"), "{}", r.describe());
        let inst = self.lxd_instance(&k);
        assert_eq!(inst["status"], "Running");
        assert!(ipv4(&inst).is_some(), "{inst}");
        assert_eq!(self.lxd_snapshots(&k), ["initial-state"]);
        self.exec(&k, "id -u \"$1\"", &[USER]).ok();
        let rec = &self.stored().containers["k"];
        assert!(rec.pending.is_none(), "{:?}", rec.pending);
        assert_eq!(rec.snapshots.keys().collect::<Vec<_>>(), ["initial-state"]);
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );
    }

    /// Starts `ldm ARGS` and kills it with SIGKILL `after` later, whatever
    /// it is doing then; fails if it had already finished (then nothing was
    /// interrupted).
    fn kill_after(&self, args: &[&str], after: Duration) {
        let mut guard = ChildGuard::spawn(&mut self.ldm_cmd(args), None, &format!("ldm {args:?}"));
        let start = Instant::now();
        std::thread::sleep(after);
        let mut child = guard.0.take().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "ldm {args:?} finished ({status}) before it could be killed after {after:?}"
        );
        eprintln!(
            "e2e: ldm {} killed after {:.2}s",
            args.join(" "),
            start.elapsed().as_secs_f64()
        );
    }

    /// Issue 13: a command killed a second in (Ctrl+C, kill -9), then at
    /// once another command on the same container: it waits for LXD's
    /// in-flight operation instead of failing "busy", and afterwards LXD and
    /// the project agree.
    fn killed_then_acted_on_at_once(&mut self) {
        self.step("kill -9 a create 1 s in, remove -f at once; down and snapshot create right after a killed up");
        let r = self.lxd_name("r");
        self.kill_after(
            &["container", "create", "r", &self.image],
            Duration::from_secs(1),
        );
        let removed = self.ldm(&["remove", "r", "-f"]).ok();
        assert!(
            removed.out().contains("Removed r"),
            "{}",
            removed.describe()
        );
        // LXD may still have been creating it: it must not appear later.
        for _ in 0..10 {
            assert!(
                query(&format!("/1.0/instances/{r}")).is_none(),
                "LXD has {r} after remove -f"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(!self.stored().containers.contains_key("r"));
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );

        let a = self.lxd_name("a");
        self.ldm(&["down", "a"]).ok();
        // `up` takes about half a second here: kill it part way.
        self.kill_after(&["up", "a"], Duration::from_millis(200));
        let down = self.ldm(&["down", "a"]).ok();
        assert!(down.out().contains("a is stopped"), "{}", down.describe());
        let status = poll(Duration::from_secs(10), || {
            let inst = self.lxd_instance(&a);
            (inst["status"] == "Stopped").then_some(())
        });
        assert!(
            status.is_some(),
            "LXD says {} is {}",
            a,
            self.lxd_instance(&a)["status"]
        );

        self.ldm(&["down", "a"]).ok();
        self.kill_after(&["up", "a"], Duration::from_millis(200));
        let snap = self
            .ldm(&["container", "snapshot", "create", "a", "after-killed-up"])
            .ok();
        assert!(
            snap.out().contains("Created snapshot after-killed-up"),
            "{}",
            snap.describe()
        );
        assert!(self
            .lxd_snapshots(&a)
            .iter()
            .any(|s| s == "after-killed-up"));
        assert!(self.stored().containers["a"]
            .snapshots
            .contains_key("after-killed-up"));
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );
    }

    /// Issue 24, finding 4: a `container create` killed during each of its
    /// steps, then `remove --force` at once, every time: it succeeds (it
    /// waits for what the server still does for the killed create, by
    /// operation id), and LXD and the project keep nothing of it. The
    /// first create says how many steps there are; the others run at once,
    /// each killed in its own step.
    fn killed_create_at_each_step_then_removed(&mut self) {
        if !self.in_root_run("kill -9 a create during each of its steps") {
            return;
        }
        self.step("kill -9 a create during each of its steps, remove -f at once, every time");
        let steps = self.kill_create_in_step_then_remove(1, None);
        let me = &*self;
        std::thread::scope(|sc| {
            for step in 2..=steps {
                sc.spawn(move || me.kill_create_in_step_then_remove(step, Some(steps)));
            }
        });
        for step in 1..=steps {
            let lxd_name = self.lxd_name(&format!("r{step}"));
            assert!(
                query(&format!("/1.0/instances/{lxd_name}")).is_none(),
                "{} has {lxd_name} after remove -f",
                server().name()
            );
        }
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );
    }

    /// `container create r{step}` killed once it printed step `step` (of
    /// `steps`, when known), then `remove -f` at once; returns the count of
    /// steps create printed.
    fn kill_create_in_step_then_remove(&self, step: usize, steps: Option<usize>) -> usize {
        let name = format!("r{step}");
        let lxd_name = self.lxd_name(&name);
        let mut cmd = self.ldm_cmd(&["container", "create", &name, &self.image, "--no-mount"]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldm container create");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut guard = ChildGuard(Some(child));
        let want = format!("[{step}/");
        let mut seen = Vec::new();
        let line = loop {
            match rx.recv_timeout(Duration::from_secs(180)) {
                Ok(l) if l.starts_with(&want) => break l,
                Ok(l) => seen.push(l),
                Err(e) => {
                    panic!("ldm container create {name} never reached step {step} ({e}): {seen:?}")
                }
            }
        };
        // "[1/5] Launching ...": the count of steps.
        let count = line[want.len()..]
            .split(']')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no step count in {line:?}"));
        let last = step == steps.unwrap_or(count);
        // Into the step: LXD is at work for it when ldm dies. The last
        // step (the address wait) may end at once: killed as it starts.
        if !last {
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut child = guard.0.take().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() != Some(libc::SIGKILL) {
            assert!(
                last && status.success(),
                "ldm container create {name} ended ({status}) before it could be killed in {line:?}"
            );
            eprintln!("e2e: create {name} finished its last step before the kill");
        }
        let removed = self.ldm(&["remove", &name, "-f"]);
        eprintln!(
            "e2e: create {name} killed in {line:?}; remove -f at once: exit {:?} in {:.1}s",
            removed.code,
            removed.took.as_secs_f64()
        );
        let removed = removed.ok();
        assert!(
            removed.out().contains(&format!("Removed {name}")),
            "{}",
            removed.describe()
        );
        // The server may still have been making it: it must not appear later.
        for _ in 0..6 {
            assert!(
                query(&format!("/1.0/instances/{lxd_name}")).is_none(),
                "{} has {lxd_name} after remove -f",
                server().name()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(!self.stored().containers.contains_key(&name));
        count
    }

    /// Sends `GET /1.0?marker=TAG` straight to the server's socket: a line
    /// in its request log that the counting below waits for.
    fn marker(tag: &str) {
        use std::os::unix::net::UnixStream;
        let mut sock = UnixStream::connect(server().socket()).expect("the server's socket");
        write!(
            sock,
            "GET /1.0?marker={tag} HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = Vec::new();
        let _ = sock.read_to_end(&mut answer);
    }

    /// Runs `ldm ARGS` and returns it with the API requests the server
    /// logged for it ("METHOD URL"), counted from the server's own log
    /// (`lxc monitor --type=logging`, "Handling API request"), between two
    /// marker requests; LXD's internal hooks and the monitor's own
    /// connection are not ldm's.
    fn count_requests(&self, args: &[&str]) -> (Run, Vec<String>) {
        use std::io::BufRead;
        let mut mon = Command::new(server().program())
            .args(["monitor", "--type=logging", "--format=json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server's monitor");
        let out = mon.stdout.take().unwrap();
        let guard = ChildGuard(Some(mon));
        let (tx, rx) = std::sync::mpsc::channel::<Value>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["metadata"]["message"] == "Handling API request" && tx.send(v).is_err() {
                    break;
                }
            }
        });
        let tag = format!("{}-{}", self.project, std::process::id());
        let url = |v: &Value| {
            v["metadata"]["context"]["url"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let wait_for = |marker: &str, keep: &mut Vec<Value>| {
            let t = Instant::now();
            loop {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "the server's log never showed {marker}"
                );
                if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
                    if url(&v).contains(marker) {
                        return;
                    }
                    keep.push(v);
                } else if keep.is_empty() && marker.ends_with("start") {
                    // The monitor may not listen yet: ask again.
                    Self::marker(marker);
                }
            }
        };
        let mut before = Vec::new();
        let start = format!("{tag}-start");
        Self::marker(&start);
        wait_for(&start, &mut before);
        let r = self.ldm(args);
        let mut seen = Vec::new();
        let end = format!("{tag}-end");
        Self::marker(&end);
        wait_for(&end, &mut seen);
        // The monitor is done with: end it now (the guard would at the end).
        drop(guard);
        let reqs = seen
            .iter()
            .map(|v| {
                let m = v["metadata"]["context"]["method"].as_str().unwrap_or("?");
                format!("{m} {}", url(v))
            })
            .filter(|r| {
                !r.contains(" /internal") && !r.contains(" /1.0/events") && !r.contains("marker=")
            })
            .collect();
        (r, reqs)
    }

    /// Issue 24, finding 3: the API requests each command makes, counted by
    /// the server, against the issue's targets; and `ldm list` of 10
    /// containers against one bare request of the same data on the socket.
    fn requests_per_command(&mut self) {
        if !self.in_root_run("API requests per command") {
            // What the step leaves: e removed.
            self.ldm(&["remove", "e", "-f"]).ok();
            return;
        }
        self.step(
            "API requests per command, counted by the server; ldm list of 10 vs a bare request",
        );
        self.ldm(&["up", "e"]).ok();
        let e = self.lxd_name("e");
        let cases: [(&str, Vec<&str>, usize); 6] = [
            ("list", vec!["list"], 2),
            (
                "snapshot create",
                vec!["container", "snapshot", "create", "e", "s-req"],
                3,
            ),
            ("down", vec!["down", "e"], 4),
            ("up (without the address polls)", vec!["up", "e"], 6),
            (
                "reset (running)",
                vec!["container", "reset", "e", "s-req"],
                9,
            ),
            ("remove -f (running)", vec!["remove", "e", "-f"], 6),
        ];
        let mut table = Vec::new();
        for (what, args, target) in cases {
            let (r, reqs) = self.count_requests(&args);
            let r = r.ok();
            // The address wait asks the state until it has one: counted apart.
            // So is a wait that ran past its long-poll timeout (30 s) and
            // was asked again for the same operation (a slow server).
            let polls = reqs
                .iter()
                .enumerate()
                .filter(|(i, q)| {
                    (what.starts_with("up")
                        && q.starts_with("GET ")
                        && q.contains(&format!("/1.0/instances/{e}/state")))
                        || (q.contains("/wait?") && reqs[..*i].contains(q))
                })
                .count();
            let n = reqs.len() - polls;
            eprintln!(
                "e2e requests: {what}: {n} (target {target}){}; {reqs:?}",
                if polls > 0 {
                    format!(" + {polls} polls (address, or a wait asked again)")
                } else {
                    String::new()
                }
            );
            table.push(format!(
                "{what} {n}{}",
                if polls > 0 {
                    format!(" (+{polls} polls)")
                } else {
                    String::new()
                }
            ));
            assert!(
                n <= target,
                "ldm {} made {n} API requests, the target is {target}: {reqs:?}\n{}",
                args.join(" "),
                r.describe()
            );
        }
        assert!(
            query(&format!("/1.0/instances/{e}")).is_none(),
            "remove -f left {e}"
        );
        loud(&format!(
            "e2e: API requests per command on {} (target): {}",
            server().name(),
            table.join(", ")
        ));

        if !self.bench {
            return;
        }
        // `ldm list` of a project of 10 containers, beside one request of
        // the same data (the instances with their state) on the socket.
        let dir = self.scratch.join("ten");
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("{}t", self.project);
        let ldm = |args: &[&str]| {
            let mut cmd = self.ldm_cmd(args);
            cmd.current_dir(&dir);
            run(&mut cmd, format!("ldm {} (in {name})", args.join(" ")))
        };
        // An lxc-dev-manager style file naming them: ldm manages the
        // unmarked instances it names exactly (doctor adopts only what ldm
        // marked, issue 23).
        let listed: String = (0..10)
            .map(|i| format!("  l{i}:\n    image: ldm-busybox\n"))
            .collect();
        std::fs::write(
            dir.join("containers.yaml"),
            format!("project: {name}\ncontainers:\n{listed}"),
        )
        .unwrap();
        let ten: Vec<String> = (0..10).map(|i| format!("{name}-l{i}")).collect();
        std::thread::scope(|sc| {
            for n in &ten {
                let mut args = vec!["launch", "ldm-busybox", n.as_str()];
                if let Some(p) = &self.profile {
                    args.extend(["--profile", p.as_str()]);
                }
                sc.spawn(move || lxc(&args).ok());
            }
        });
        let (_, rows): (Run, Vec<Value>) = {
            let r = ldm(&["list", "--json"]).ok();
            let v: Value = serde_json::from_slice(&r.stdout).unwrap();
            (r, v.as_array().unwrap().clone())
        };
        assert_eq!(rows.len(), 10, "{rows:?}");
        let bare = || {
            let t = Instant::now();
            let out = Command::new("curl")
                .args(["-sf", "--unix-socket"])
                .arg(server().socket())
                .arg("http://lxd/1.0/instances?recursion=2&project=default")
                .output()
                .expect("run curl");
            assert!(out.status.success(), "curl failed");
            t.elapsed()
        };
        let mut l = Vec::new();
        let mut b = Vec::new();
        for _ in 0..7 {
            l.push(ldm(&["list"]).ok().took);
            b.push(bare());
        }
        let (l, b) = (median(l), median(b));
        let ratio = l.as_secs_f64() / b.as_secs_f64();
        loud(&format!(
            "e2e: ldm list of 10 containers on {}: {:.1} ms, curl of the same GET on the socket {:.1} ms (ratio {ratio:.2}, target <= 1.3; median of 7)",
            server().name(),
            l.as_secs_f64() * 1000.0,
            b.as_secs_f64() * 1000.0
        ));
        assert!(ratio <= 1.3, "ldm list took {ratio:.2}x a bare request");
        ldm(&["project", "delete", "-f"]).ok();
    }

    // ------------------------------------------------- issue 14 steps

    /// Whether a step that checks the server rather than the user runs
    /// here: in the root run of each server (or any bench run), not again
    /// in CI's non-root runs, which check what depends on the user (the
    /// lifecycle, mounts, setup, trust) within CI's 30 minutes. Says so
    /// when it does not.
    fn in_root_run(&self, what: &str) -> bool {
        let here = Self::euid() == 0 || self.bench;
        if !here {
            loud(&format!(
                "e2e: {what}: checked in the root run of {}, not again as this user",
                server().name()
            ));
        }
        here
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    /// LXD's disk devices of an instance (its own, not its profiles'):
    /// (device name, source, path).
    fn disks(&self, lxd_name: &str) -> Vec<(String, String, String)> {
        let inst = self.lxd_instance(lxd_name);
        let mut v: Vec<(String, String, String)> = inst["devices"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, d)| d["type"] == "disk" && d["path"] != "/")
                    .map(|(n, d)| {
                        (
                            n.clone(),
                            d["source"].as_str().unwrap_or_default().to_string(),
                            d["path"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The recorded mounts of container `c` agree with LXD's ldm-mount-*
    /// disk devices (by container path).
    fn assert_mounts_agree(&self, c: &str) {
        let mut recorded: Vec<String> = self.stored().containers[c]
            .mounts
            .iter()
            .map(|m| m.path.clone())
            .collect();
        recorded.sort();
        let mut lxd: Vec<String> = self
            .disks(&self.lxd_name(c))
            .into_iter()
            .filter(|(n, _, _)| n.starts_with("ldm-mount-"))
            .map(|(_, _, p)| p)
            .collect();
        lxd.sort();
        assert_eq!(recorded, lxd, "{c}: recorded mounts vs LXD's devices");
    }

    /// Sets (`Some`) or removes (`None`) `defaults.setup` in containers.yaml,
    /// by editing the text.
    fn set_default_setup(&self, steps: Option<&[&str]>) {
        let path = self.dir.join("containers.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Drop any `setup:` block at indent 2 under `defaults:`.
        let mut lines: Vec<String> = Vec::new();
        let (mut in_defaults, mut skipping) = (false, false);
        for l in text.lines() {
            let indent = l.len() - l.trim_start().len();
            if indent == 0 && !l.trim().is_empty() {
                in_defaults = l.starts_with("defaults:");
                skipping = false;
            }
            if skipping {
                let t = l.trim_start();
                if indent > 2 || (indent == 2 && t.starts_with("- ")) {
                    continue;
                }
                skipping = false;
            }
            if in_defaults && indent == 2 && l.trim_start().starts_with("setup:") {
                skipping = true;
                continue;
            }
            lines.push(l.to_string());
        }
        if let Some(steps) = steps {
            let mut block = vec!["  setup:".to_string()];
            for s in steps {
                block.push(format!("    - '{}'", s.replace('\'', "''")));
            }
            match lines.iter().position(|l| l.starts_with("defaults:")) {
                Some(i) if lines[i].trim_end() == "defaults:" => {
                    lines.splice(i + 1..i + 1, block);
                }
                Some(i) => panic!("cannot edit {:?} in containers.yaml", lines[i]),
                None => {
                    lines.push("defaults:".into());
                    lines.extend(block);
                }
            }
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        // Steps written by hand wait for the user's word (issue 22).
        if steps.is_some() {
            self.ldm(&["trust", "--yes"]).ok();
        }
        // It still reads back.
        let p = self.stored();
        match steps {
            Some(s) => assert_eq!(p.effective_setup("no-such").len(), s.len()),
            None => assert!(p.effective_setup("no-such").is_empty()),
        }
    }

    fn mounts(&mut self) {
        let (a, b) = (self.lxd_name("a"), self.lxd_name("b"));
        for c in ["a", "b"] {
            self.ldm(&["up", c]).ok();
        }
        let scratch = self.dir.join("scratchdir");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("seen"), "scratch\n").unwrap();
        let (_, rows) = self.ldm_list();
        if Self::euid() == 0 {
            self.step("mounts as root: none made on create, said why; ldm mount refused");
            for (out, c) in self.create_out.iter().zip(["a", "b"]) {
                assert!(
                    out.contains("Not mounted: ldm runs as root"),
                    "{c}: create printed:\n{out}"
                );
                assert_eq!(Self::row(&rows, c)["mounts"], serde_json::json!([]), "{c}");
                assert!(self.stored().containers[c].mounts.is_empty(), "{c}");
                self.assert_mounts_agree(c);
            }
            let r = self.ldm(&["mount", "b", "scratchdir:/srv/extra"]);
            assert!(r.code.is_some_and(|c| c != 0), "{}", r.describe());
            assert!(r.stderr.contains("root"), "{}", r.describe());
            assert!(self.stored().containers["b"].mounts.is_empty());
            let rec = &self.stored().containers["b"];
            assert!(rec.pending.is_none(), "{:?}", rec.pending);
            self.assert_mounts_agree("b");
            return;
        }
        self.step("mounts: project folder shared both ways with the right owners; mount / umount");
        let target = format!("{}/{}", self.home(), self.project);
        for (c, l) in [("a", &a), ("b", &b)] {
            let listed = Self::row(&rows, c)["mounts"].clone();
            let listed = listed.as_array().expect("mounts is a list");
            assert_eq!(listed.len(), 1, "{c}: {listed:?}");
            assert!(
                listed[0].as_str().unwrap().contains(&format!(":{target}")),
                "{c}: {listed:?}"
            );
            self.assert_mounts_agree(c);
            std::fs::write(
                self.dir.join(format!("from-host-{c}")),
                format!("hello {c}\n"),
            )
            .unwrap();
            let seen = self
                .exec(l, "cat \"$1\"", &[&format!("{target}/from-host-{c}")])
                .ok()
                .out();
            assert_eq!(seen.trim(), format!("hello {c}"));
            let owner = self
                .exec(
                    l,
                    "stat -c %U \"$1\"",
                    &[&format!("{target}/from-host-{c}")],
                )
                .ok()
                .out();
            assert_eq!(owner.trim(), USER, "{c}: owner inside of a host file");
            self.exec(
                l,
                "runuser -u \"$1\" -- sh -c 'echo x > \"$1\"' sh \"$2\"",
                &[USER, &format!("{target}/from-container-{c}")],
            )
            .ok();
            let meta = std::fs::metadata(self.dir.join(format!("from-container-{c}")))
                .expect("the file written inside is on the host");
            assert_eq!(
                meta.uid(),
                Self::euid(),
                "{c}: host owner of a file written inside"
            );
        }
        let r = self.ldm(&["mount", "b", "scratchdir:/srv/extra"]).ok();
        assert!(r.out().contains("Mounted"), "{}", r.describe());
        let seen = self.exec(&b, "cat /srv/extra/seen", &[]).ok().out();
        assert_eq!(seen.trim(), "scratch");
        assert!(self.stored().containers["b"]
            .mounts
            .iter()
            .any(|m| m.path == "/srv/extra"));
        self.assert_mounts_agree("b");
        self.time("mount (running container)", r.took, None, "");
        let r = self.ldm(&["umount", "b", "/srv/extra"]).ok();
        assert!(!self.stored().containers["b"]
            .mounts
            .iter()
            .any(|m| m.path == "/srv/extra"));
        assert!(
            !self.disks(&b).iter().any(|(_, _, p)| p == "/srv/extra"),
            "{}",
            r.describe()
        );
        self.assert_mounts_agree("b");
    }

    /// Issue 26: `container create` with the project folder mounted costs
    /// one boot, as `--no-mount` does (raw.idmap is in the create request
    /// and the container user gets the ids it maps). Timed alternating
    /// with `--no-mount` in this run (3 pairs with LDM_E2E_BENCH, else 1);
    /// the table shows the ratio. As root nothing is mounted (host root
    /// is never mapped), so the figure is the non-root run's.
    fn mount_create_cost(&mut self) {
        if Self::euid() == 0 {
            loud("e2e: container create with a mount vs --no-mount: timed in the non-root run (as root nothing is mounted)");
            return;
        }
        // Which goes first alternates too, and each starts from a quiet
        // disk: the first create of a pair ran while LXD still deleted the
        // last pair's files (seen: the mounted create, always first, took
        // 2-3 s more from the second pair on, in its launch alone).
        let rounds: u32 = if self.bench { 4 } else { 1 };
        self.step(&format!(
            "container create with the mount vs --no-mount, alternating (and which goes first), {rounds} pair(s)"
        ));
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let (m, n) = (format!("mc{i}"), format!("nc{i}"));
            // Each create starts from a quiet disk: the host's dirty pages
            // written (LXD's deletes of earlier containers), a second's rest.
            let settle = || {
                let _ = Command::new("sync").status();
                std::thread::sleep(Duration::from_secs(1));
            };
            let mounted = |s: &Self| {
                settle();
                let r = s.ldm(&["container", "create", &m, &s.image]).ok();
                s.show_progress(&r);
                assert!(
                    !r.stderr.contains("restart"),
                    "a create with a mount took the restart path: {}",
                    r.describe()
                );
                assert!(
                    !s.stored().containers[m.as_str()].mounts.is_empty(),
                    "{}",
                    r.describe()
                );
                s.assert_mounts_agree(&m);
                r.took
            };
            let plain = |s: &Self| {
                settle();
                let r = s
                    .ldm(&["container", "create", &n, &s.image, "--no-mount"])
                    .ok();
                s.show_progress(&r);
                r.took
            };
            if i.is_multiple_of(2) {
                with.push(mounted(self));
                without.push(plain(self));
            } else {
                without.push(plain(self));
                with.push(mounted(self));
            }
            for c in [&m, &n] {
                self.ldm(&["remove", "-f", c]).ok();
            }
        }
        // The median; of an even count, the mean of the middle two.
        let med = |mut v: Vec<Duration>| {
            v.sort();
            let n = v.len();
            if n.is_multiple_of(2) {
                (v[n / 2 - 1] + v[n / 2]) / 2
            } else {
                v[n / 2]
            }
        };
        let (w, wo) = (med(with), med(without));
        let ratio = w.as_secs_f64() / wo.as_secs_f64();
        loud(&format!(
            "e2e: container create with the mount {:.2}s, --no-mount {:.2}s: {ratio:.2}x (median of {rounds}, alternating)",
            w.as_secs_f64(),
            wo.as_secs_f64()
        ));
        // The table's words are static: this one line is leaked, once.
        let said: &'static str = Box::leak(
            format!(
                "{ratio:.2}x of `container create --no-mount`, alternating (median of {rounds})"
            )
            .into_boxed_str(),
        );
        self.time("container create, mount", w, Some(wo), said);
    }

    fn setup_resume(&mut self) {
        self.step(
            "setup steps: step 2 fails, create stops; fixed, create resumes at step 2; setup again",
        );
        let l = self.lxd_name("s");
        self.set_default_setup(Some(&[
            "echo one | tee -a /root/one",
            "test -f /root/go",
            "echo three > /root/three",
        ]));
        let r = self
            .ldm(&["container", "create", "s", &self.image])
            .expect_code(1);
        assert!(r.stderr.contains("s | one"), "{}", r.describe());
        assert!(
            query(&format!("/1.0/instances/{l}")).is_some(),
            "s was not kept"
        );
        let (_, rows) = self.ldm_list();
        let row = Self::row(&rows, "s");
        assert_eq!(row["setup_failed_at"], 2, "{row}");
        assert_eq!(row["status"], "SETUP FAILED AT STEP 2", "{row}");
        self.exec(&l, "test -f /root/one && test ! -e /root/three", &[])
            .ok();
        self.exec(&l, "touch /root/go", &[]).ok();
        let r = self.ldm(&["container", "create", "s"]).ok();
        assert!(
            !r.stderr.contains("s | one"),
            "step 1 ran again: {}",
            r.describe()
        );
        let ones = self.exec(&l, "cat /root/one", &[]).ok().out();
        assert_eq!(ones.trim(), "one", "step 1 ran again");
        self.exec(&l, "test -f /root/three", &[]).ok();
        let (_, rows) = self.ldm_list();
        let row = Self::row(&rows, "s");
        assert!(row["setup_failed_at"].is_null(), "{row}");
        assert_eq!(row["status"], "RUNNING", "{row}");
        self.exec(&l, "rm /root/three", &[]).ok();
        let r = self.ldm(&["container", "setup", "s"]).ok();
        assert!(r.stderr.contains("s | one"), "{}", r.describe());
        let ones = self.exec(&l, "cat /root/one", &[]).ok().out();
        assert_eq!(ones.trim(), "one\none");
        self.exec(&l, "test -f /root/three", &[]).ok();
        // New containers of later steps get no setup steps.
        self.set_default_setup(None);
        self.ldm(&["remove", "-f", "s"]).ok();
        assert!(query(&format!("/1.0/instances/{l}")).is_none());
    }

    fn assert_all_running(&self, names: &[String]) {
        for c in names {
            let inst = self.lxd_instance(&self.lxd_name(c));
            assert_eq!(inst["status"], "Running", "{c}");
        }
        let (_, rows) = self.ldm_list();
        for c in names {
            assert_eq!(Self::row(&rows, c)["status"], "RUNNING", "{c}: {rows:?}");
        }
    }

    /// The issue's figure: `ldm up` of 4 stopped containers beside one
    /// alone, and 2 (one per core) beside one, each beside bare lxc doing the
    /// same in this run; the median of 3 rounds. Beside them, what the up of
    /// 4 cost the machine: the CPU ldm and its client calls used, and the
    /// rest (LXD and the booting containers), which alone takes at least
    /// rest / cores of wall time whatever ldm does. Every container named is
    /// stopped before and after.
    fn time_up_in_parallel(&mut self, four: &[String]) {
        let lxd: Vec<String> = four.iter().map(|c| self.lxd_name(c)).collect();
        // (wall, machine busy, ldm's own and its children's CPU)
        let up = |s: &Self, names: &[String]| {
            let mut args = vec!["up"];
            args.extend(names.iter().map(String::as_str));
            let (busy, ours) = (machine_busy(), children_cpu());
            let r = s.ldm(&args).ok();
            let cost = (machine_busy() - busy, children_cpu() - ours);
            let want = match names {
                [one] => format!("{one} is running at "),
                _ => format!("{0} of {0} containers running", names.len()),
            };
            assert!(r.out().contains(&want), "{}", r.describe());
            let mut down = vec!["down"];
            down.extend(names.iter().map(String::as_str));
            s.ldm(&down).ok();
            (r.took, cost)
        };
        let stop = |names: &[String]| {
            let mut args = vec!["stop"];
            args.extend(names.iter().map(String::as_str));
            lxc(&args).ok();
        };
        // [ldm 1, ldm 2, ldm 4, bare 1, bare 2, bare 4], and bare 4's CPU.
        let mut rounds: Vec<[Duration; 6]> = Vec::new();
        let mut cpu = Vec::new();
        // ldm's up of 4: (machine busy, ldm's share)
        let mut costs: Vec<(Duration, Duration)> = Vec::new();
        for _ in 0..3 {
            let (l1, _) = up(self, &four[..1]);
            let b1 = bare_up(&lxd[..1]);
            stop(&lxd[..1]);
            let (l2, _) = up(self, &four[..2]);
            let b2 = bare_up(&lxd[..2]);
            stop(&lxd[..2]);
            let (l4, cost) = up(self, four);
            costs.push(cost);
            let busy = machine_busy();
            let b4 = bare_up(&lxd);
            cpu.push((machine_busy() - busy).as_secs_f64() / (cores() * b4.as_secs_f64()));
            stop(&lxd);
            rounds.push([l1, l2, l4, b1, b2, b4]);
        }
        let m: Vec<f64> = (0..6)
            .map(|i| median(rounds.iter().map(|r| r[i]).collect()).as_secs_f64())
            .collect();
        cpu.sort_by(f64::total_cmp);
        let busy = median(costs.iter().map(|c| c.0).collect()).as_secs_f64();
        let ours = median(costs.iter().map(|c| c.1).collect()).as_secs_f64();
        let rest = (busy - ours).max(0.0);
        loud(&format!(
            "e2e timing: up of 4 stopped containers {:.2} s vs 1 alone {:.2} s (ratio {:.2}, target <= 1.5); \
             during the up of 4 the machine spent {busy:.2} CPU-s, ldm and its lxc calls {ours:.2}, \
             LXD and the containers {rest:.2}: on {} cores at least {:.2} s, {:.2}x one alone, whatever ldm does; \
             bare lxc start + IPv4 query every 100 ms of the same: {:.2} s vs {:.2} s (ratio {:.2}, all cores {:.0}% busy); \
             2 stopped (one per core): ldm ratio {:.2}, bare lxc {:.2}; median of 3 rounds",
            m[2], m[0], m[2] / m[0], cores(), rest / cores(), rest / cores() / m[0],
            m[5], m[3], m[5] / m[3], cpu[1] * 100.0, m[1] / m[0], m[4] / m[3]
        ));
        self.time(
            "up, 4 stopped (parallel)",
            Duration::from_secs_f64(m[2]),
            Some(Duration::from_secs_f64(m[5])),
            "lxc start x4 + IPv4 waits, in parallel",
        );
        self.time(
            "up, one alone",
            Duration::from_secs_f64(m[0]),
            Some(Duration::from_secs_f64(m[3])),
            "lxc start + IPv4 wait",
        );
        self.time(
            "up, 2 stopped (parallel)",
            Duration::from_secs_f64(m[1]),
            Some(Duration::from_secs_f64(m[4])),
            "lxc start x2 + IPv4 waits, in parallel",
        );
    }

    fn up_all(&mut self) {
        let names: Vec<String> = self.stored().containers.keys().cloned().collect();
        let n = names.len();
        assert!(n >= 4, "up_all wants 4 containers: {names:?}");
        self.step(&format!(
            "up / down of all {n} containers in parallel; up re-creates one LXD lost"
        ));
        let r = self.ldm(&["down"]).ok();
        assert!(
            r.out().contains(&format!("{n} of {n} containers stopped")),
            "{}",
            r.describe()
        );
        for c in &names {
            assert_eq!(
                self.lxd_instance(&self.lxd_name(c))["status"],
                "Stopped",
                "{c}"
            );
        }
        if self.bench {
            self.time_up_in_parallel(&names[..4]);
        }
        let dry = self.ldm(&["up", "--dry-run"]).ok();
        for c in &names {
            assert!(
                dry.out().contains(&format!("{c}: start")),
                "{}",
                dry.describe()
            );
            assert_eq!(
                self.lxd_instance(&self.lxd_name(c))["status"],
                "Stopped",
                "dry run started {c}"
            );
        }
        let all = self.ldm(&["up"]).ok();
        assert!(
            all.out()
                .contains(&format!("{n} of {n} containers running")),
            "{}",
            all.describe()
        );
        for c in &names {
            assert!(
                all.out().lines().any(|l| l.starts_with(&format!("{c}: "))),
                "{}",
                all.describe()
            );
        }
        self.assert_all_running(&names);
        self.time(&format!("up, all {n} (parallel)"), all.took, None, "");

        let lost = "k";
        let l = self.lxd_name(lost);
        lxc(&["delete", "-f", &l]).ok();
        let dry = self.ldm(&["up", "--dry-run"]).ok();
        assert!(
            dry.out().contains(&format!("{lost}: re-create from")),
            "{}",
            dry.describe()
        );
        assert!(query(&format!("/1.0/instances/{l}")).is_none());
        let r = self.ldm(&["up"]).ok();
        assert!(
            r.out().contains(&format!("{n} of {n} containers running")),
            "{}",
            r.describe()
        );
        assert!(
            ipv4(&self.lxd_instance(&l)).is_some(),
            "re-created {l} has no IPv4"
        );
        self.assert_all_running(&names);
        self.exec(&l, "id -u \"$1\"", &[USER]).ok();
        self.assert_mounts_agree(lost);
        let rec = &self.stored().containers[lost];
        assert!(rec.pending.is_none(), "{:?}", rec.pending);
    }

    /// After a killed command: every row is consistent (no pending) or
    /// shows the operation as interrupted.
    fn assert_consistent_or_interrupted(&self) {
        let (_, rows) = self.ldm_list();
        for row in &rows {
            let p = &row["pending"];
            assert!(p.is_null() || p["interrupted"] == true, "{row}");
        }
    }

    fn killed_up_all_and_mount(&mut self) {
        self.step("kill -9 during up (all) and during mount; re-run; LXD agrees");
        let names: Vec<String> = self.stored().containers.keys().cloned().collect();
        self.ldm(&["down"]).ok();
        self.kill_after(&["up"], Duration::from_millis(300));
        self.assert_consistent_or_interrupted();
        let r = self.ldm(&["up"]).ok();
        let n = names.len();
        assert!(
            r.out().contains(&format!("{n} of {n} containers running")),
            "{}",
            r.describe()
        );
        self.assert_all_running(&names);
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );

        if Self::euid() == 0 {
            return; // ldm mount is refused as root (see `mounts`).
        }
        self.kill_mount_midway("b", "scratchdir:/srv/extra2");
        let r = self.ldm(&["mount", "b", "scratchdir:/srv/extra2"]).ok();
        assert!(r.out().contains("/srv/extra2"), "{}", r.describe());
        let b = self.lxd_name("b");
        let seen = self.exec(&b, "cat /srv/extra2/seen", &[]).ok().out();
        assert_eq!(seen.trim(), "scratch");
        let rec = &self.stored().containers["b"];
        assert!(rec.pending.is_none(), "{:?}", rec.pending);
        assert!(rec.mounts.iter().any(|m| m.path == "/srv/extra2"));
        self.assert_mounts_agree("b");
        self.ldm(&["umount", "b", "/srv/extra2"]).ok();
        self.assert_mounts_agree("b");
        let r = self.ldm(&["doctor"]).ok();
        assert!(
            r.out().contains("the project and LXD agree"),
            "{}",
            r.describe()
        );
    }

    /// `ldm mount NAME SPEC` killed (SIGKILL) while the real client adds
    /// the device: the client is slowed by a wrapper (`LDM_LXC`) that says
    /// when it has begun, so the kill always lands midway, and the client
    /// goes on after ldm died, as a client does. The project shows the
    /// mount as interrupted while LXD gets the device behind its back.
    fn kill_mount_midway(&self, name: &str, spec: &str) {
        let dir = std::env::temp_dir().join(format!("ldm-e2e-slow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let begun = dir.join("begun");
        let path = spec.rsplit(':').next().unwrap_or(spec).to_string();
        // The device add is the one held (ldm never asks for shift=true:
        // review-trust finding 1).
        let held = SlowSocket::start(
            &dir,
            path.clone(),
            true,
            begun.clone(),
            Duration::from_secs(3),
        );
        let mut guard = ChildGuard::spawn(
            self.ldm_cmd(&["mount", name, spec])
                .env(server().dir_var(), &dir),
            None,
            "ldm mount",
        );
        let started = poll(Duration::from_secs(30), || begun.exists().then_some(()));
        let mut child = guard.0.take().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(started.is_some(), "ldm mount never reached the device add");
        drop(held);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "ldm mount finished ({status}) before the kill"
        );
        eprintln!(
            "e2e: ldm mount {name} {spec} killed while its request to add the device was held"
        );
        let (_, rows) = self.ldm_list();
        let p = &Self::row(&rows, name)["pending"];
        assert_eq!(p["op"], "mount", "{rows:?}");
        assert_eq!(p["interrupted"], true, "{rows:?}");
        let lxd_name = self.lxd_name(name);
        // The held request reaches the server after ldm died.
        let added = poll(Duration::from_secs(30), || {
            let inst = query(&format!("/1.0/instances/{lxd_name}"))?;
            inst["devices"]
                .as_object()?
                .values()
                .any(|d| d["path"] == path.as_str())
                .then_some(())
        });
        assert!(
            added.is_some(),
            "the killed mount's client never added {path} in LXD"
        );
        let list = self.ldm(&["list"]).ok();
        assert!(
            list.out().contains("MOUNTING (interrupted)"),
            "{}",
            list.describe()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The files `mounts` left in the project folder (project delete
    /// checks that it leaves nothing of its own).
    fn remove_mount_files(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.join("scratchdir"));
        for c in ["a", "b"] {
            let _ = std::fs::remove_file(self.dir.join(format!("from-host-{c}")));
            let _ = std::fs::remove_file(self.dir.join(format!("from-container-{c}")));
        }
    }

    // ------------------------------------------------- issue 22: trust

    /// `ldm ARGS` in `dir` with `home` as HOME (its state folder with it):
    /// the hostile files below name that home's dot-files, never the real
    /// user's.
    fn ldm_in(&self, dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Run {
        let mut cmd = self.ldm_cmd(args);
        cmd.current_dir(dir)
            .env("HOME", home)
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME");
        run(
            &mut cmd,
            format!("ldm {} (in {})", args.join(" "), dir.display()),
        )
    }

    /// A folder `name` beside the project, with a home folder holding
    /// `.ssh/authorized_keys` and `.bashrc` of its own.
    fn trust_folders(&self, name: &str) -> (PathBuf, PathBuf) {
        let root = self.dir.parent().unwrap().join(name);
        let (dir, home) = (root.join("project"), root.join("home"));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(home.join(".ssh/authorized_keys"), "ssh-ed25519 AAAA mine\n").unwrap();
        std::fs::write(home.join(".bashrc"), "# mine\n").unwrap();
        (dir, home)
    }

    /// Issue 22's acceptance, finding 1: a fresh clone whose containers.yaml
    /// mounts a shipped link `vendor/cache -> ~/.ssh`, `~/.ssh` by path and
    /// `~/.bashrc`, with a step appending to them. `ldm up` exits 1 before
    /// any LXD call, listing the three mounts and the step, host files
    /// unchanged; after `ldm trust --yes` it goes on, without the refused
    /// mounts.
    fn hostile_clone(&mut self) {
        self.step("trust: a fresh clone with a hostile containers.yaml asks first; trusted, it never mounts ~/.ssh");
        let (dir, home) = self.trust_folders("clone");
        let home = home.canonicalize().unwrap();
        let project = format!("{}c", self.project);
        let step = "mkdir -p /root/.ssh; echo evil-key >> /root/.ssh/authorized_keys; echo evil-line >> /root/.bashrc";
        std::fs::write(
            dir.join("containers.yaml"),
            format!(
                "project: {project}\ncontainers:\n  dev:\n    image: {image}\n    mounts:\n    - vendor/cache:/home/dev/cache\n    - {h}/.ssh:/root/.ssh\n    - {h}/.bashrc:/root/.bashrc\n    setup:\n    - \"{step}\"\n",
                image = self.image,
                h = home.display()
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.join("vendor")).unwrap();
        std::os::unix::fs::symlink(home.join(".ssh"), dir.join("vendor/cache")).unwrap();
        let host_files = || {
            (
                std::fs::read(home.join(".ssh/authorized_keys")).unwrap(),
                std::fs::read(home.join(".bashrc")).unwrap(),
            )
        };
        let before = host_files();
        let lxd_name = format!("{project}-dev");

        // No LXD call: with no client at all it fails the same way.
        let mut cmd = self.ldm_cmd(&["up"]);
        cmd.current_dir(&dir)
            .env("HOME", &home)
            .env("LDM_LXC", "/nonexistent/lxc-never-called");
        let r = run(&mut cmd, "ldm up (no client)".into()).expect_code(1);
        assert!(r.stderr.contains("ldm trust"), "{}", r.describe());
        let r = self.ldm_in(&dir, &home, &["up"]).expect_code(1);
        for want in [
            "mount vendor/cache:/home/dev/cache into dev".to_string(),
            format!("mount {}/.ssh:/root/.ssh into dev", home.display()),
            format!("mount {}/.bashrc:/root/.bashrc into dev", home.display()),
            format!("setup step for dev: {step}"),
        ] {
            assert!(r.stderr.contains(&want), "lacks {want:?}: {}", r.describe());
        }
        assert!(
            query(&format!("/1.0/instances/{lxd_name}")).is_none(),
            "up made {lxd_name}"
        );
        assert_eq!(host_files(), before, "host files changed");

        self.ldm_in(&dir, &home, &["trust", "--yes"]).ok();
        let r = self.ldm_in(&dir, &home, &["up"]).ok();
        assert!(
            r.out().contains("1 of 1 containers running"),
            "{}",
            r.describe()
        );
        assert!(
            r.stderr
                .contains("not mounting vendor/cache:/home/dev/cache"),
            "{}",
            r.describe()
        );
        let inst = query(&format!("/1.0/instances/{lxd_name}")).expect("up made it");
        let sources: Vec<&str> = inst["devices"]
            .as_object()
            .map(|d| d.values().filter_map(|v| v["source"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            sources
                .iter()
                .all(|s| !s.starts_with(home.to_str().unwrap())),
            "a home dot-file reached LXD: {sources:?}"
        );
        // The step ran, in the container only.
        self.exec(
            &lxd_name,
            "grep -q evil-key /root/.ssh/authorized_keys && grep -q evil-line /root/.bashrc",
            &[],
        )
        .ok();
        assert_eq!(host_files(), before, "host files changed");
        self.ldm_in(&dir, &home, &["remove", "-f", "dev"]).ok();
    }

    /// Issue 22's acceptance, finding 2: a container rewrites containers.yaml
    /// through its mount, adding a mount of an outside folder and of
    /// `~/.ssh` and a setup step. The next `doctor --fix`, `container setup`
    /// and `up` refuse until the user allows it; then the step runs and the
    /// allowed mount is added, `~/.ssh` never.
    fn container_rewrites_project_file(&mut self) {
        self.step("trust: a container rewriting containers.yaml through its mount reaches nothing until trusted");
        let (dir, home) = self.trust_folders("rewrite");
        let home = home.canonicalize().unwrap();
        let shared = self.dir.parent().unwrap().join("rewrite/shared");
        std::fs::create_dir_all(&shared).unwrap();
        let project = format!("{}w", self.project);
        let lxd_name = format!("{project}-w");
        self.ldm_in(&dir, &home, &["create", "--name", &project])
            .ok();
        self.ldm_in(&dir, &home, &["container", "create", "w", &self.image])
            .ok();
        let path = dir.join("containers.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        // As root ldm mounts nothing, so the container has no mounts yet.
        let mounted = Self::euid() != 0;
        let (after, mut lines) = match mounted {
            true => (format!("    - .:/home/dev/{project}\n"), String::new()),
            false => (
                format!("    image: {}\n", self.image),
                "    mounts:\n".into(),
            ),
        };
        assert!(text.contains(&after), "{text}");
        lines.push_str(&format!(
            "    - {}:/srv/shared\n    - {}/.ssh:/root/.ssh\n    setup:\n    - touch /root/pwned\n",
            shared.canonicalize().unwrap().display(),
            home.display()
        ));
        let rewritten = text.replacen(&after, &format!("{after}{lines}"), 1);
        if mounted {
            // From inside, as the container's user, through the mount.
            let target = format!("/home/dev/{project}/containers.yaml");
            // The user's ids are the ones ldm chose for it (the host
            // user's, where the image does not use them).
            let ids = self
                .exec(&lxd_name, "id -u dev && id -g dev", &[])
                .ok()
                .out();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            assert_eq!(ids.len(), 2, "{ids:?}");
            let mut cmd = Command::new(server().program());
            cmd.args([
                "exec",
                &lxd_name,
                "--user",
                ids[0],
                "--group",
                ids[1],
                "--",
                "sh",
                "-c",
                "cat > \"$1\"",
                "sh",
                &target,
            ])
            .stdin(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(rewritten.as_bytes())
                .unwrap();
            assert!(
                child.wait().unwrap().success(),
                "the container could not write {target}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), rewritten);
        } else {
            // As root ldm mounts nothing: the same bytes, written on the host.
            std::fs::write(&path, &rewritten).unwrap();
        }
        let devices = |_: &Self| -> Vec<String> {
            query(&format!("/1.0/instances/{lxd_name}")).unwrap()["devices"]
                .as_object()
                .map(|d| {
                    d.values()
                        .filter_map(|v| v["source"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = devices(self);
        for args in [
            &["doctor", "--fix"][..],
            &["container", "setup", "w"],
            &["up"],
        ] {
            let r = self.ldm_in(&dir, &home, args).expect_code(1);
            assert!(r.stderr.contains("ldm trust"), "{}", r.describe());
        }
        assert_eq!(devices(self), before, "a device was added before trust");
        self.exec(&lxd_name, "test ! -e /root/pwned", &[]).ok();
        let r = self.ldm_in(&dir, &home, &["list"]).ok();
        assert!(
            r.stderr.contains("waiting for your trust"),
            "{}",
            r.describe()
        );

        self.ldm_in(&dir, &home, &["trust", "--yes"]).ok();
        self.ldm_in(&dir, &home, &["container", "setup", "w"]).ok();
        self.exec(&lxd_name, "test -e /root/pwned", &[]).ok();
        if mounted {
            let r = self.ldm_in(&dir, &home, &["doctor", "--fix"]);
            let now = devices(self);
            assert!(
                now.iter().any(|s| s.ends_with("/rewrite/shared")),
                "the allowed mount was not added: {now:?}\n{}",
                r.describe()
            );
            assert!(
                now.iter().all(|s| !s.starts_with(home.to_str().unwrap())),
                "~/.ssh reached LXD: {now:?}"
            );
        }
        self.ldm_in(&dir, &home, &["remove", "-f", "w"]).ok();
    }

    fn project_delete(&mut self) {
        self.step("project delete -f");
        let names: Vec<String> = self.stored().containers.keys().cloned().collect();
        for c in ["a", "b", "d", "k"] {
            assert!(
                names.iter().any(|n| n == c),
                "{c} is not recorded: {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n == "c"), "c was removed: {names:?}");
        let refused = self.ldm(&["project", "delete"]).expect_code(1);
        assert!(refused.stderr.contains("--force"), "{}", refused.describe());
        assert_eq!(self.lxd_list().len(), names.len());
        let r = self.ldm(&["project", "delete", "-f"]).ok();
        assert!(
            r.out()
                .contains(&format!("Deleted project {}", self.project)),
            "{}",
            r.describe()
        );
        let left = self.lxd_list();
        assert!(
            left.is_empty(),
            "LXD still has {:?}",
            left.iter().map(|i| &i["name"]).collect::<Vec<_>>()
        );
        // The lock files stay by design (removing a lock file someone may
        // hold would let two processes "hold" it): ldm's containers.lock and
        // lxc-dev-manager's containers.yaml.lock, which ldm takes too.
        // Everything else of ldm's goes.
        let left: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "containers.lock" && n != "containers.yaml.lock")
            .collect();
        assert!(left.is_empty(), "project delete left {left:?}");
        self.ldm(&["list"]).expect_code(1);

        let bare: Vec<String> = ["one", "copy"].iter().map(|c| self.bare_name(c)).collect();
        let t = Instant::now();
        for b in &bare {
            lxc(&["delete", "--force", b]).ok();
        }
        let per = |d: Duration, n: usize| d / n as u32;
        self.time(
            "project delete -f, per container",
            per(r.took, names.len()),
            Some(per(t.elapsed(), bare.len())),
            "lxc delete --force, one after another",
        );
    }

    fn print_timings(&self) {
        eprintln!();
        eprintln!("e2e: wall time of each ldm command beside the same work done with bare lxc (same run, same machine)");
        eprintln!(
            "{:<36} {:>8} {:>9} {:>9}  bare lxc =",
            "operation", "ldm", "bare lxc", "overhead"
        );
        for t in &self.timings {
            let (bare, over) = match t.bare {
                Some(b) => (
                    format!("{:.2}s", b.as_secs_f64()),
                    format!("{:+.2}s", t.ldm.as_secs_f64() - b.as_secs_f64()),
                ),
                None => ("-".into(), "-".into()),
            };
            eprintln!(
                "{:<36} {:>7.2}s {:>9} {:>9}  {}",
                t.op,
                t.ldm.as_secs_f64(),
                bare,
                over,
                t.bare_is
            );
        }
        eprintln!("e2e: whole suite {:.1}s", self.t0.elapsed().as_secs_f64());
    }
}
