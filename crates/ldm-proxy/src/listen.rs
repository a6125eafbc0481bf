//! The running proxy: its listeners, their accept loops, and stopping.
//!
//! Owns the state every thread shares ([`Shared`]): the stop flag and the
//! wake-up socket the accept loops poll, the registry of open connections'
//! sockets (so a stop can shut them all at once), and the counters that
//! [`Proxy::wait`] and shutdown wait on. The per-port connection cap is
//! enforced here, at accept time.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::upstream::Upstream;
use super::{conn, Config, Event, Events, PortMap, ProxyError, Resolve};

/// State shared by the accept loops, the connection threads and the [`Proxy`] handle.
pub(crate) struct Shared {
    pub(crate) events: Events,
    pub(crate) upstream: Upstream,
    pub(crate) idle_timeout: Duration,
    max_conns: usize,
    pub(crate) stopping: AtomicBool,
    /// Its peer is written once on stop; the accept loops poll this end.
    wake_rx: UnixStream,
    wake_tx: UnixStream,
    /// Sockets of open connections, so stop can shut them down.
    conns: Mutex<HashMap<u64, Vec<Arc<TcpStream>>>>,
    next_id: AtomicU64,
    /// Running accept loops; [`Proxy::wait`] waits for zero.
    loops: Counter,
    /// Running connection threads; shutdown waits (briefly) for zero.
    live: Counter,
}

struct Counter {
    n: Mutex<usize>,
    zero: Condvar,
}

impl Counter {
    fn new(n: usize) -> Counter {
        Counter {
            n: Mutex::new(n),
            zero: Condvar::new(),
        }
    }
    fn add(&self, d: isize) {
        let mut n = lock(&self.n);
        *n = n.saturating_add_signed(d);
        if *n == 0 {
            self.zero.notify_all();
        }
    }
    /// Waits until zero or `limit` passed (`None`: no limit).
    fn wait_zero(&self, limit: Option<Duration>) {
        let end = limit.map(|l| Instant::now() + l);
        let mut n = lock(&self.n);
        while *n > 0 {
            n = match end {
                None => self.zero.wait(n).unwrap_or_else(|p| p.into_inner()),
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    match self.zero.wait_timeout(n, left) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                }
            };
        }
    }
}

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn emit(&self, e: Event) {
        (self.events)(e)
    }

    fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // The wake end stays readable from now on; every accept loop sees it.
        let _ = (&self.wake_tx).write(&[1]);
        for socks in lock(&self.conns).values() {
            for s in socks {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Registers a connection's socket; `false` (and the socket is shut) if stopping.
    pub(crate) fn register(&self, id: u64, s: &Arc<TcpStream>) -> bool {
        let mut conns = lock(&self.conns);
        // Checked under the lock: stop() shuts what it finds under the same lock.
        if self.stopping.load(Ordering::SeqCst) {
            let _ = s.shutdown(std::net::Shutdown::Both);
            return false;
        }
        conns.entry(id).or_default().push(Arc::clone(s));
        true
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }
}

/// A running proxy. Dropping it (or [`Proxy::shutdown`]) stops it.
pub struct Proxy {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a [`Proxy`] from another thread; cheap to clone.
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Stops accepting, closes every open connection, wakes [`Proxy::wait`].
    pub fn stop(&self) {
        self.0.stop()
    }
}

/// Binds every port of `cfg` it can and starts forwarding.
///
/// A port that cannot be bound is reported ([`Event::PortBusy`]) and the
/// others still start; the error comes only when none could be bound. Each
/// bound port is announced with [`Event::Listening`]. `resolve` is first
/// called when the first client connects, not here.
pub fn start(cfg: &Config, resolve: Resolve, events: Events) -> Result<Proxy, ProxyError> {
    if cfg.ports.is_empty() {
        return Err(ProxyError::NoPorts);
    }
    let mut bound = Vec::new();
    let mut failed = Vec::new();
    for map in &cfg.ports {
        match bind(cfg.bind, map.local) {
            Ok((l, addr)) => bound.push((l, addr, *map)),
            Err(error) => {
                let again = io::Error::new(error.kind(), error.to_string());
                events(Event::PortBusy {
                    port: map.local,
                    error,
                });
                failed.push((map.local, again));
            }
        }
    }
    if bound.is_empty() {
        return Err(ProxyError::NothingBound(failed));
    }
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        events,
        upstream: Upstream::new(resolve),
        idle_timeout: cfg.idle_timeout.max(Duration::from_millis(1)),
        max_conns: cfg.max_conns,
        stopping: AtomicBool::new(false),
        wake_rx,
        wake_tx,
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        loops: Counter::new(0),
        live: Counter::new(0),
    });
    let mut proxy = Proxy {
        shared: Arc::clone(&shared),
        addrs: Vec::new(),
        threads: Vec::new(),
    };
    for (listener, addr, map) in bound {
        let sh = Arc::clone(&shared);
        sh.loops.add(1);
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                // Counted down even if an event callback panics, so wait() returns.
                let _counted = LoopGuard(Arc::clone(&sh));
                accept_loop(&sh, &listener, map);
            });
        match spawned {
            Ok(t) => proxy.threads.push(t),
            Err(e) => {
                shared.loops.add(-1);
                return Err(e.into()); // dropping `proxy` stops the loops already started
            }
        }
        proxy.addrs.push(addr);
        shared.emit(Event::Listening {
            local: addr,
            remote: map.remote,
        });
    }
    Ok(proxy)
}

fn bind(ip: IpAddr, port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(SocketAddr::new(ip, port))?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

impl Proxy {
    /// The addresses actually bound, one per port that started, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// A handle that stops this proxy from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.shared))
    }

    /// Connections open right now, all ports together.
    pub fn open_connections(&self) -> usize {
        *lock(&self.shared.live.n)
    }

    /// Blocks until the proxy is stopped ([`Stopper::stop`]); the CLI just waits for Ctrl+C here.
    pub fn wait(&self) {
        self.shared.loops.wait_zero(None)
    }

    /// Stops accepting at once, closes every open connection and waits (at
    /// most a second) for their threads to finish.
    pub fn shutdown(self) {}
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.live.wait_zero(Some(Duration::from_secs(1)));
    }
}

/// Accepts on one port until stop.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, map: PortMap) {
    let active = Arc::new(AtomicUsize::new(0));
    let port = listener.local_addr().map_or(map.local, |a| a.port());
    let mut pause = 0;
    while !shared.stopping.load(Ordering::SeqCst) {
        if pause > 0 {
            // After an accept failure: sleep, but wake for stop.
            let _ = poll_in(&[shared.wake_rx.as_raw_fd()], pause);
            pause = 0;
            continue;
        }
        match poll_in(&[listener.as_raw_fd(), shared.wake_rx.as_raw_fd()], -1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                shared.emit(Event::AcceptFailed { port, error });
                pause = 100;
                continue;
            }
        }
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let (stream, peer) = match listener.accept() {
            // Accepted sockets do not inherit O_NONBLOCK on Linux; be sure anyway.
            Ok((s, peer)) if s.set_nonblocking(false).is_ok() => (s, peer),
            Ok(_) => continue,
            Err(e) if is_transient(&e) => continue,
            Err(error) => {
                shared.emit(Event::AcceptFailed { port, error });
                pause = 100;
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= shared.max_conns {
            drop(stream);
            shared.emit(Event::Refused {
                port,
                peer,
                limit: shared.max_conns,
            });
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        shared.live.add(1);
        let guard = ConnGuard {
            shared: Arc::clone(shared),
            active: Arc::clone(&active),
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let job = conn::Job {
            id,
            port,
            remote: map.remote,
            peer,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{port}-{id}"))
            .stack_size(conn::STACK)
            .spawn(move || {
                conn::serve(&guard.shared, stream, job);
                drop(guard);
            });
        if let Err(error) = spawned {
            // The closure (and with it the guard and the client) is dropped.
            shared.emit(Event::AcceptFailed { port, error });
            pause = 100;
        }
    }
}

/// Counts an accept loop as running until dropped.
struct LoopGuard(Arc<Shared>);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        self.0.loops.add(-1);
    }
}

/// Counts a connection as open on its port and in the proxy until dropped.
struct ConnGuard {
    shared: Arc<Shared>,
    active: Arc<AtomicUsize>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.shared.live.add(-1);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// Waits until one of `fds` is readable (or hung up) or `timeout_ms` passed (-1: forever).
fn poll_in(fds: &[std::os::fd::RawFd], timeout_ms: i32) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll reads and writes exactly pfds.len() pollfd structs we own.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
