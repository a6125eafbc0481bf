//! HTTP/1.1 to one LXD server: over its unix socket, or TLS with the
//! client's certificate to a remote. `ureq` does the HTTP (keep-alive, one
//! pooled connection per thread that asks); the streams are ldm's own
//! ([`Stream`]), so that the exec websockets (`tungstenite`) run over the
//! same two kinds of stream, and TLS is `rustls` with the server's
//! certificate pinned (`tls.rs`). DESIGN.md, "The LXD backend".

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

use super::tls::Tls;

/// Where the server listens.
#[derive(Clone)]
pub enum Endpoint {
    /// Its unix socket.
    Unix(PathBuf),
    /// `host:port` over TLS.
    Https {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Client certificate and the pinned server certificate.
        tls: Arc<Tls>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Https { host, port, .. } => write!(f, "https://{host}:{port}"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// How long a connection may take to open: a local socket answers at once,
/// a remote within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    /// A new connection to the server.
    pub fn open(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Https { host, port, tls } => {
                let mut last = None;
                for addr in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(tcp) => {
                            tcp.set_nodelay(true)?;
                            let conn = tls.connection(host)?;
                            return Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                }))
            }
        }
    }

    /// The URL prefix of requests. The stream is ldm's own (a socket, or
    /// TLS it made), so the URL is only a label: always `http://lxd`, as
    /// ureq would otherwise insist on doing TLS itself for `https`.
    pub fn base(&self) -> &'static str {
        "http://lxd"
    }

    /// The same for websockets (tungstenite only sends it as the path and
    /// Host of its handshake, over the stream it is given).
    pub fn ws_base(&self) -> &'static str {
        "ws://lxd"
    }
}

/// A connection to LXD: a unix socket or TLS over TCP.
pub enum Stream {
    /// The local socket.
    Unix(UnixStream),
    /// TLS to a remote.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Unix(_) => "Stream::Unix",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl Stream {
    /// Sets the read timeout of the socket underneath.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    /// Sets the write timeout of the socket underneath.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// ureq's view of a [`Stream`].
struct StreamTransport {
    stream: Stream,
    buffers: LazyBuffers,
}

impl fmt::Debug for StreamTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stream.fmt(f)
    }
}

fn timed_out(e: io::Error, timeout: &NextTimeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ureq::Error::Timeout(timeout.reason),
        _ => ureq::Error::Io(e),
    }
}

impl Transport for StreamTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let t = timeout.not_zero().map(|t| *t);
        self.stream.set_write_timeout(t)?;
        let out = &self.buffers.output()[..amount];
        self.stream
            .write_all(out)
            .and_then(|()| self.stream.flush())
            .map_err(|e| timed_out(e, &timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let t = timeout.not_zero().map(|t| *t);
        self.stream.set_read_timeout(t)?;
        let buf = self.buffers.input_append_buf();
        let n = loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| timed_out(e, &timeout))?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // A pooled connection the server closed would fail the next
        // request: look without blocking or consuming, as ureq's own TCP
        // transport does. Nothing waiting is an idle, open connection;
        // bytes or the end are not.
        use std::os::fd::AsRawFd;
        let fd = match &self.stream {
            Stream::Unix(u) => u.as_raw_fd(),
            Stream::Tls(t) => t.sock.as_raw_fd(),
        };
        let mut byte = 0u8;
        // SAFETY: recv writes at most 1 byte into `byte`, which outlives
        // the call; fd is open for as long as self.stream.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

/// Opens [`Stream`]s to one endpoint for ureq.
#[derive(Debug)]
struct Opener(Endpoint);

impl Connector<()> for Opener {
    type Out = StreamTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<StreamTransport>, ureq::Error> {
        Ok(Some(StreamTransport {
            stream: self.0.open()?,
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
        }))
    }
}

/// The endpoint is known already: no name to look up.
#[derive(Debug)]
struct NoLookup;

impl Resolver for NoLookup {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        Ok(addrs)
    }
}

/// The ureq agent for `endpoint`: LXD's answers are read whatever their
/// status (its errors carry its words), no redirects, and a bound on the
/// wait for an answer (long waits are the server's: `wait?timeout=N`).
pub fn agent(endpoint: &Endpoint) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .https_only(false)
        .user_agent(concat!("ldm/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RECV_TIMEOUT))
        .max_idle_connections_per_host(4)
        .build();
    ureq::Agent::with_parts(config, Opener(endpoint.clone()), NoLookup)
}

/// The longest ldm waits for the head of an answer. LXD answers at once
/// except to `wait?timeout=N`, which ldm keeps far below this.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(120);
