//! TCP port forwarding from the host to a container, for `ldm proxy`.
//!
//! This module owns the listening sockets, the forwarded connections and the
//! threads that move their bytes. It knows nothing of LXD: the container's
//! address comes from a caller-supplied [`Resolve`] closure, and everything
//! worth telling the user arrives as an [`Event`], so the whole module runs
//! (and is tested) on loopback with echo servers standing in for containers.
//!
//! Fixes of lxc-dev-manager's proxy: it binds loopback unless told otherwise
//! (never all interfaces by default), connections end after an *idle* time
//! rather than at an absolute deadline, a busy port is reported while the
//! others still start, and a container that changed address is followed.
//!
//! Threads, not async: one accept thread per port, and per connection one
//! thread per direction copying through a 256 KiB buffer. A developer proxy
//! carries at most a few hundred connections. Threads block in `poll`,
//! `read` and `write` (with timeouts, for the idle check), so nothing spins.

mod conn;
mod listen;
mod upstream;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub(crate) use listen::{lock, Shared};
pub use listen::{start, Proxy, Stopper};

/// Connections allowed at once on each port unless [`Config::max_conns`] says otherwise.
pub const DEFAULT_MAX_CONNS: usize = 100;
/// Time without a byte in either direction after which a connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Age after which a cached container address is looked up again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(3);
/// How long one connect to the container may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Looks up the container's current address; `None` when it has none.
///
/// The argument is `refresh`: `false` on the proxy's very first lookup (the
/// caller may answer with the address it already knows), `true` whenever the
/// proxy wants a fresh answer: its cached address is older than
/// [`REFRESH_AFTER`], or a connect to it just failed. The proxy caches the
/// answer and never runs two lookups at once, so the closure need not cache.
/// It runs on a connection thread, never on an accept thread.
pub type Resolve = Arc<dyn Fn(bool) -> Option<IpAddr> + Send + Sync>;

/// Receives every [`Event`]; called from the proxy's threads, so keep it short.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// One forwarded port: connections to `local` on the host go to `remote` in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMap {
    /// Host port; 0 asks the system for a free one (see [`Proxy::local_addrs`]).
    pub local: u16,
    /// Port in the container.
    pub remote: u16,
}

impl PortMap {
    /// The same port number on both sides.
    pub fn same(port: u16) -> PortMap {
        PortMap {
            local: port,
            remote: port,
        }
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.local, self.remote)
    }
}

impl FromStr for PortMap {
    type Err = ProxyError;

    /// Parses `PORT` or `LOCAL:REMOTE` (the `-p` argument); ports are 1-65535.
    fn from_str(s: &str) -> Result<PortMap, ProxyError> {
        let bad = || ProxyError::BadPortMap(s.to_string());
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad()),
        };
        match s.split_once(':') {
            Some((l, r)) => Ok(PortMap {
                local: port(l)?,
                remote: port(r)?,
            }),
            None => port(s).map(PortMap::same),
        }
    }
}

/// What to forward and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Host address to listen on; 127.0.0.1 by default (never all interfaces unless told).
    pub bind: IpAddr,
    /// Ports to forward.
    pub ports: Vec<PortMap>,
    /// Connections allowed at once on each port; more are closed at once ([`Event::Refused`]).
    pub max_conns: usize,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
}

impl Config {
    /// The defaults, forwarding `ports`.
    pub fn new(ports: Vec<PortMap>) -> Config {
        Config {
            ports,
            ..Config::default()
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Vec::new(),
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why a forwarded connection ended.
#[derive(Debug)]
pub enum CloseReason {
    /// Both sides finished (each direction reached end of file).
    Done,
    /// Nothing moved in either direction for [`Config::idle_timeout`].
    Idle,
    /// The proxy was shut down.
    Shutdown,
    /// A socket failed (typically reset by one side); the first error seen.
    Error(io::Error),
}

/// Something the user may want to know; see [`Events`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Accepting on `local`, forwarding to port `remote` of the container.
    Listening {
        /// The bound host address.
        local: SocketAddr,
        /// The container port.
        remote: u16,
    },
    /// Port `port` could not be bound (in use, or not allowed); the others still run.
    PortBusy {
        /// The host port asked for.
        port: u16,
        /// Why; `AddrInUse` when another program has it.
        error: io::Error,
    },
    /// A client connected and was joined to the container.
    Opened {
        /// Host port.
        port: u16,
        /// The client.
        peer: SocketAddr,
        /// The container address it was joined to.
        upstream: SocketAddr,
    },
    /// A client was closed at once: `limit` connections were already open on `port`.
    Refused {
        /// Host port.
        port: u16,
        /// The client.
        peer: SocketAddr,
        /// The cap, [`Config::max_conns`].
        limit: usize,
    },
    /// The container has no address right now; the client was closed.
    NoAddress {
        /// Host port.
        port: u16,
    },
    /// Connecting to the container failed (also after a fresh lookup); the client was closed.
    ConnectFailed {
        /// Host port.
        port: u16,
        /// The address last tried.
        upstream: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// The container's address changed (or was learnt, `from: None`).
    AddressChanged {
        /// The previous address.
        from: Option<IpAddr>,
        /// The new address.
        to: IpAddr,
    },
    /// A forwarded connection ended.
    Closed {
        /// Host port.
        port: u16,
        /// The client.
        peer: SocketAddr,
        /// Bytes client → container.
        sent: u64,
        /// Bytes container → client.
        received: u64,
        /// Why it ended.
        reason: CloseReason,
    },
    /// `accept` failed (e.g. out of file descriptors); the port retries after a pause.
    AcceptFailed {
        /// Host port.
        port: u16,
        /// Why.
        error: io::Error,
    },
}

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The configuration lists no port.
    #[error("no port to forward")]
    NoPorts,
    /// Not one port could be bound; each failure was also sent as [`Event::PortBusy`].
    #[error("no port could be bound: {}", list_failures(.0))]
    NothingBound(Vec<(u16, io::Error)>),
    /// A `-p` argument that is neither `PORT` nor `LOCAL:REMOTE`.
    #[error("invalid port mapping {0:?}: expected PORT or LOCAL:REMOTE, ports 1-65535")]
    BadPortMap(String),
    /// The system refused a socket or thread the proxy needs.
    #[error("cannot start the proxy: {0}")]
    Io(#[from] io::Error),
}

fn list_failures(fails: &[(u16, io::Error)]) -> String {
    let parts: Vec<String> = fails.iter().map(|(p, e)| format!("{p}: {e}")).collect();
    parts.join("; ")
}
