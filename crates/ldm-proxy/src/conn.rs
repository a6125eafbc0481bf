//! One forwarded connection: join the client to the container, then move
//! bytes both ways until both sides finish, the link idles out, or the proxy
//! stops.
//!
//! Owns the byte moving. Each direction runs on its own thread, blocking
//! `read`/`write` with a 256 KiB buffer. (`splice(2)` through a pipe was
//! measured too: no faster and no less CPU per byte on loopback, where TCP
//! processing and wake-ups cost more than the copies; see DESIGN.md, "The
//! proxy".) End of file in one direction becomes `shutdown(Write)` on the
//! other socket (half-close passes through); an error in either direction
//! shuts both sockets down. Reads and writes time out every tick so a
//! thread can notice that *neither* direction moved a byte for the idle
//! timeout: the timeout is on silence, not on the connection's age.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CloseReason, Event, Shared, CONNECT_TIMEOUT};

/// Stack size of connection threads; buffers live on the heap.
pub(crate) const STACK: usize = 128 * 1024;
/// Buffer of each direction: large, so a busy link costs few system calls.
const BUF: usize = 256 * 1024;

/// What the accept loop hands a connection thread.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) port: u16,
    pub(crate) remote: u16,
    pub(crate) peer: SocketAddr,
}

/// Serves one accepted client until the connection ends; emits its events.
pub(crate) fn serve(shared: &Arc<Shared>, client: TcpStream, job: Job) {
    let client = Arc::new(client);
    if !shared.register(job.id, &client) {
        return;
    }
    let server = match connect(shared, &job).map(Arc::new) {
        Some(s) if shared.register(job.id, &s) => s,
        _ => {
            shared.unregister(job.id);
            return;
        }
    };
    if let Ok(upstream) = server.peer_addr() {
        shared.emit(Event::Opened {
            port: job.port,
            peer: job.peer,
            upstream,
        });
    }
    let (sent, received, reason) = forward(shared, &client, &server);
    shared.unregister(job.id);
    shared.emit(Event::Closed {
        port: job.port,
        peer: job.peer,
        sent,
        received,
        reason,
    });
}

/// Connects to the container; after a failure, once more if a fresh lookup
/// gives another address. Reports failures as events.
fn connect(shared: &Shared, job: &Job) -> Option<TcpStream> {
    let port = job.port;
    let Some(ip) = shared.upstream.current(shared) else {
        shared.emit(Event::NoAddress { port });
        return None;
    };
    let first = SocketAddr::new(ip, job.remote);
    let error = match TcpStream::connect_timeout(&first, CONNECT_TIMEOUT) {
        Ok(s) => return Some(s),
        Err(e) => e,
    };
    if shared.stopping.load(Ordering::SeqCst) {
        return None;
    }
    let (upstream, error) = match shared.upstream.refresh(ip, shared) {
        None => {
            shared.emit(Event::NoAddress { port });
            return None;
        }
        Some(new) if new != ip => {
            let again = SocketAddr::new(new, job.remote);
            match TcpStream::connect_timeout(&again, CONNECT_TIMEOUT) {
                Ok(s) => return Some(s),
                Err(e) => (again, e),
            }
        }
        Some(_) => (first, error),
    };
    shared.emit(Event::ConnectFailed {
        port,
        upstream,
        error,
    });
    None
}

/// Activity shared by the two directions of one connection.
struct Link {
    start: Instant,
    /// Milliseconds since `start` of the last byte moved either way.
    last: AtomicU64,
    idle_ms: u64,
    /// Set by the direction that found the link idle.
    idled: AtomicBool,
}

impl Link {
    fn new(idle: Duration) -> Link {
        Link {
            start: Instant::now(),
            last: AtomicU64::new(0),
            idle_ms: (idle.as_millis() as u64).max(1),
            idled: AtomicBool::new(false),
        }
    }
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }
    fn expired(&self) -> bool {
        let idle = self
            .now_ms()
            .saturating_sub(self.last.load(Ordering::Relaxed))
            >= self.idle_ms;
        if idle {
            self.idled.store(true, Ordering::Relaxed);
        }
        idle
    }
}

/// Moves bytes both ways; returns (client → server, server → client, why it ended).
fn forward(
    shared: &Shared,
    client: &Arc<TcpStream>,
    server: &Arc<TcpStream>,
) -> (u64, u64, CloseReason) {
    let idle = shared.idle_timeout;
    // How often a blocked thread looks at the clock.
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let link = Arc::new(Link::new(idle));
    let setup = [client, server].iter().try_for_each(|s| {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(tick))?;
        s.set_write_timeout(Some(tick))
    });
    if let Err(e) = setup {
        shut_both(client, server);
        return (0, 0, CloseReason::Error(e));
    }
    let (c, s, l) = (Arc::clone(client), Arc::clone(server), Arc::clone(&link));
    let up = std::thread::Builder::new()
        .name("proxy-up".into())
        .stack_size(STACK)
        .spawn(move || pump(&c, &s, &l));
    let up = match up {
        Ok(t) => t,
        Err(e) => {
            shut_both(client, server);
            return (0, 0, CloseReason::Error(e));
        }
    };
    let (received, down) = pump(server, client, &link);
    let (sent, up) = up
        .join()
        .unwrap_or_else(|_| (0, Err(io::Error::other("forwarding thread panicked"))));
    let reason = if shared.stopping.load(Ordering::SeqCst) {
        CloseReason::Shutdown
    } else if link.idled.load(Ordering::Relaxed) {
        CloseReason::Idle
    } else {
        match up.and(down) {
            Ok(()) => CloseReason::Done,
            Err(e) => CloseReason::Error(e),
        }
    };
    (sent, received, reason)
}

fn shut_both(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// One direction, `from` → `to`, until end of file (passed on as
/// `shutdown(Write)`), an error or idleness (both sockets shut down).
fn pump(from: &TcpStream, to: &TcpStream, link: &Link) -> (u64, io::Result<()>) {
    let mut moved = 0;
    let result =
        copy(from, to, link, &mut moved).and_then(|()| match to.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        });
    if result.is_err() {
        shut_both(from, to);
    }
    (moved, result)
}

/// Runs one transfer until it moves bytes, sees end of file (0) or fails;
/// a timeout only checks the link's idleness, then tries again.
fn retry(link: &Link, mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match op() {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if link.expired() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn copy(mut from: &TcpStream, mut to: &TcpStream, link: &Link, moved: &mut u64) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = retry(link, || from.read(&mut buf))?;
        if n == 0 {
            return Ok(());
        }
        link.touch();
        let mut off = 0;
        while off < n {
            let m = retry(link, || to.write(&buf[off..n]))?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            off += m;
            *moved += m as u64;
            link.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Two connected loopback sockets.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn pump_moves_bytes_exactly_and_passes_end_of_file() {
        let total = 9 << 20 | 12_345;
        let (mut writer, from) = pair();
        let (to, mut reader) = pair();
        let link = Arc::new(Link::new(Duration::from_secs(30)));
        let l = Arc::clone(&link);
        let pumper = std::thread::spawn(move || pump(&from, &to, &l));
        let feeder = std::thread::spawn(move || {
            let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4093) as u8).collect();
            writer.write_all(&data).expect("write");
            writer.shutdown(Shutdown::Write).expect("half-close");
            data
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read to end of file");
        let (moved, result) = pumper.join().expect("pump thread");
        let data = feeder.join().expect("feeder");
        result.expect("pump ends cleanly");
        assert_eq!(moved, total as u64);
        assert!(
            got == data,
            "bytes differ ({} of {} arrived)",
            got.len(),
            total
        );
    }
}
