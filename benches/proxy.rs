//! `cargo bench --bench proxy`: `ldm::proxy` against a direct connection to
//! the same echo server (on 127.0.0.2, standing in for a container), in the
//! same run. Prints throughput and round-trip latency as ratios, then a
//! PASS/FAIL line: PASS when the proxy keeps >= 80% of direct throughput.
//!
//! `PROXY_BENCH_MIB` sets the bytes per throughput run (default 512).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ldm::proxy::{self, Config, PortMap};

const CONTAINER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const ROUNDS: usize = 5;
const PINGS: usize = 20_000;
const TARGET: f64 = 0.80;

fn main() {
    let mib: usize = std::env::var("PROXY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let echo = echo_server();
    let cfg = Config::new(vec![PortMap {
        local: 0,
        remote: echo.port(),
    }]);
    let p =
        proxy::start(&cfg, Arc::new(|_| Some(CONTAINER)), Arc::new(|_| {})).expect("proxy starts");
    let via = p.local_addrs()[0];

    // Alternate direct and proxied runs so machine noise hits both alike.
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        direct.push(throughput(echo, mib << 20));
        proxied.push(throughput(via, mib << 20));
    }
    let (d_lat, p_lat) = (latency(echo), latency(via));

    let speed = |v: &[Run]| v.iter().map(|r| r.mib_s).collect::<Vec<_>>();
    let cost = |v: &[Run]| median(&mut v.iter().map(|r| r.cpu_ms_per_mib).collect::<Vec<_>>());
    let (d_cpu, p_cpu) = (cost(&direct), cost(&proxied));
    let (direct, proxied) = (speed(&direct), speed(&proxied));
    let (d_tp, p_tp) = (median(&mut direct.clone()), median(&mut proxied.clone()));
    let ratio = p_tp / d_tp;
    println!(
        "proxy bench: {mib} MiB echoed per run, median of {ROUNDS} runs; {PINGS} round trips of 64 bytes"
    );
    println!("{:<22} {:>12} {:>12} {:>9}", "", "direct", "proxy", "ratio");
    println!(
        "{:<22} {:>12.0} {:>12.0} {:>8.1}%",
        "throughput MiB/s",
        d_tp,
        p_tp,
        ratio * 100.0
    );
    println!(
        "{:<22} {:>12.0} {:>12.0}",
        "  best of runs MiB/s",
        best(&direct),
        best(&proxied)
    );
    println!(
        "{:<22} {:>12.3} {:>12.3} {:>8.2}x",
        "CPU ms per MiB",
        d_cpu,
        p_cpu,
        p_cpu / d_cpu
    );
    for (name, q) in [("latency p50 us", 0.50), ("latency p99 us", 0.99)] {
        let (d, pr) = (quantile(&d_lat, q), quantile(&p_lat, q));
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>8.2}x  (+{:.1} us)",
            name,
            d,
            pr,
            pr / d,
            pr - d
        );
    }
    let verdict = if ratio >= TARGET { "PASS" } else { "FAIL" };
    println!(
        "{verdict}: proxy throughput is {:.1}% of direct (target >= {:.0}%)",
        ratio * 100.0,
        TARGET * 100.0
    );
    p.shutdown();
}

/// Echoes every connection with a 128 KiB buffer, like a plain service would.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind((CONTAINER, 0)).expect("bind 127.0.0.2");
    let addr = l.local_addr().expect("local addr");
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 128 * 1024];
                let mut s = s;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// CPU time of this whole process (client, echo server and proxy threads), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF counts every thread of the process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// One throughput run: MiB/s one way, and CPU milliseconds per MiB (all threads).
struct Run {
    mib_s: f64,
    cpu_ms_per_mib: f64,
}

/// Sends `total` bytes through `to` and reads them back.
fn throughput(to: SocketAddr, total: usize) -> Run {
    let s = TcpStream::connect(to).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let writer = thread::spawn(move || {
        let buf = vec![0x5au8; 256 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            w.write_all(&buf[..n]).expect("write");
            left -= n;
        }
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut r = s;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    writer.join().expect("writer");
    assert_eq!(got, total, "echo lost bytes");
    let mib = total as f64 / (1 << 20) as f64;
    Run {
        mib_s: mib / t0.elapsed().as_secs_f64(),
        cpu_ms_per_mib: (cpu_seconds() - c0) * 1e3 / mib,
    }
}

/// Round-trip times of 64-byte messages, in microseconds, sorted.
fn latency(to: SocketAddr) -> Vec<f64> {
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(PINGS);
    for i in 0..PINGS + 1000 {
        let t0 = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut back).expect("read");
        if i >= 1000 {
            out.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    out.sort_by(f64::total_cmp);
    thread::sleep(Duration::from_millis(10));
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}
