//! The double as a remote server: HTTPS on 127.0.0.1, as `lxc remote add`
//! reaches an LXD on another machine. A TLS front end only: each
//! connection is decrypted and passed to the double's own unix socket, so
//! the same state, knobs and log serve both (a request over HTTPS is
//! logged with the test process as its peer).
//!
//! The server certificate and a client certificate are fixed TEST-ONLY
//! pairs in `src/data/tls/` (ECDSA P-256, made with `openssl req -x509`,
//! valid until 2126); the client's is what a harness gives ldm as the
//! user's `client.crt`. No client certificate is asked for: the double
//! does not authenticate.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::shared::Shared;
use crate::Double;

/// The server's certificate (PEM): what a client pins.
pub const SERVER_CRT: &str = include_str!("data/tls/server.crt");
const SERVER_KEY: &str = include_str!("data/tls/server.key");
/// A client certificate and its key (PEM), TEST ONLY.
pub const CLIENT_CRT: &str = include_str!("data/tls/client.crt");
/// The key of [`CLIENT_CRT`].
pub const CLIENT_KEY: &str = include_str!("data/tls/client.key");

#[allow(deprecated)]
fn config() -> io::Result<Arc<rustls::ServerConfig>> {
    let bad = |e: &dyn std::fmt::Display| io::Error::new(ErrorKind::InvalidData, e.to_string());
    let certs = CertificateDer::pem_slice_iter(SERVER_CRT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    Ok(Arc::new(cfg))
}

impl Double {
    /// Also serves HTTPS on 127.0.0.1 (a port of its own, kept until the
    /// double stops); returns the address. A client pins [`SERVER_CRT`].
    pub fn serve_https(&self) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let cfg = config()?;
        let (shared, socket) = (Arc::clone(&self.shared), self.socket.clone());
        std::thread::spawn(move || accept(&shared, listener, &cfg, &socket));
        self.https
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(addr);
        Ok(addr)
    }
}

fn accept(shared: &Shared, listener: TcpListener, cfg: &Arc<rustls::ServerConfig>, socket: &Path) {
    for tcp in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(tcp) = tcp else { continue };
        let (cfg, socket) = (Arc::clone(cfg), socket.to_path_buf());
        std::thread::spawn(move || {
            let _ = relay(tcp, &cfg, &socket);
        });
    }
}

/// Passes one connection's bytes both ways until either side ends.
fn relay(tcp: TcpStream, cfg: &Arc<rustls::ServerConfig>, socket: &Path) -> io::Result<()> {
    let conn = rustls::ServerConnection::new(Arc::clone(cfg))
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
    let tick = Some(Duration::from_millis(2));
    tcp.set_read_timeout(tick)?;
    tcp.set_nodelay(true)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut unix = UnixStream::connect(socket)?;
    unix.set_read_timeout(tick)?;
    let mut buf = vec![0u8; 64 * 1024];
    let idle = |e: &io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => unix.write_all(&buf[..n])?,
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
        match unix.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                return Ok(());
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
