//! `cargo bench --bench proxy`: `ldm::proxy` against a direct connection to
//! the same server, in the same run, laid out as in real use: three processes.
//!
//! - the server (this binary re-run with `--role sink|echo`) listens on
//!   127.0.0.2, standing in for a container;
//! - the proxy (this binary re-run with `--role proxy`) runs `ldm::proxy` in
//!   its own process, as `ldm proxy` does;
//! - the client is this process.
//!
//! Direct and proxied runs alternate, ABBA...: round r runs direct first
//! when r is even and the proxy first when it is odd, so neither arm always
//! gets the warmer (or the noisier) slot. Ratios are computed one way: the
//! proxy's median over the direct arm's median, of the same rounds.
//!
//! It prints, as ratios to direct: one-way throughput (client → sink, which
//! acknowledges the byte count at the end, like iperf3), echo throughput
//! (both directions of one connection at once), CPU per MiB of all three
//! processes, and 64-byte round-trip latency. Then a PASS/FAIL line: PASS
//! when the proxy keeps >= 80% of direct throughput one-way and echoed.
//!
//! `benches/proxy-others.sh` runs the one-way figure through socat and
//! haproxy too, for comparison with other user-space forwarders.
//!
//! `PROXY_BENCH_MIB` sets the bytes per throughput run (default 1024 one-way,
//! half that echoed); `PROXY_BENCH_ROUNDS` the runs per figure (default 7).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ldm::proxy::{self, Config, PortMap};

const CONTAINER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PINGS: usize = 20_000;
const TARGET: f64 = 0.80;
const BUF: usize = 256 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--role") {
        return role(&args[i + 1..]);
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mib = env("PROXY_BENCH_MIB", 1024);
    let rounds = env("PROXY_BENCH_ROUNDS", 7).max(1);

    let sink = Server::spawn(&["sink"]);
    let echo = Server::spawn(&["echo"]);
    let via = |to: &Server| Server::spawn(&["proxy", &to.addr.port().to_string()]);
    let (sink_p, echo_p) = (via(&sink), via(&echo));

    println!(
        "proxy bench: 3 processes (client, ldm::proxy, server on 127.0.0.2); median of {rounds} \
         interleaved runs; {mib} MiB one-way, {} MiB echoed; {PINGS} round trips of 64 bytes",
        mib / 2
    );
    let one = measure(rounds, [&sink, &sink_p], |to| oneway(to, mib << 20));
    let two = measure(rounds, [&echo, &echo_p], |to| echoed(to, mib << 19));
    println!("{:<22} {:>10} {:>10} {:>9}", "", "direct", "proxy", "ratio");
    one.print("one-way MiB/s");
    two.print("echo MiB/s");
    let lat = latency([&echo, &echo_p].map(|s| s.addr));
    for (name, q) in [("latency p50 us", 0.50), ("latency p99 us", 0.99)] {
        let [d, p] = [0, 1].map(|i| quantile(&lat[i], q));
        println!("{name:<22} {d:>10.1} {p:>10.1} {:>+7.1}us", p - d);
    }
    let worst = one.ratio().min(two.ratio());
    let verdict = if worst >= TARGET { "PASS" } else { "FAIL" };
    println!(
        "{verdict}: proxy throughput is {:.1}% (one-way) and {:.1}% (echo) of direct (target >= {:.0}%)",
        one.ratio() * 100.0,
        two.ratio() * 100.0,
        TARGET * 100.0
    );
}

/// The median MiB/s and CPU ms per MiB of direct and proxied runs.
struct Figures {
    speed: [f64; 2],
    best: [f64; 2],
    cpu: [f64; 2],
}

impl Figures {
    fn ratio(&self) -> f64 {
        self.speed[1] / self.speed[0]
    }
    fn print(&self, name: &str) {
        let [d, p] = self.speed;
        println!(
            "{name:<22} {d:>10.0} {p:>10.0} {:>8.1}%",
            self.ratio() * 100.0
        );
        let [d, p] = self.best;
        println!("{:<22} {d:>10.0} {p:>10.0}", "  best run");
        let [d, p] = self.cpu;
        println!(
            "{:<22} {d:>10.3} {p:>10.3} {:>8.2}x",
            "  CPU ms per MiB",
            p / d
        );
    }
}

/// Runs `run` against direct and proxy in turn, `rounds` times, so machine
/// noise hits both alike; the arm that goes first alternates each round.
/// CPU counts the client, server and proxy processes.
fn measure(rounds: usize, to: [&Server; 2], run: impl Fn(SocketAddr) -> f64) -> Figures {
    let mut speed = [vec![], vec![]];
    let mut cpu = [vec![], vec![]];
    // Warm up caches and the page allocator, through both arms.
    for target in to {
        let _ = run(target.addr);
    }
    for round in 0..rounds {
        for i in order(round) {
            let target = to[i];
            let mut pids = vec![to[0].pid()];
            if i > 0 {
                pids.push(target.pid());
            }
            let c0 = cpu_seconds(&pids);
            let (mib_s, mib) = {
                let t0 = Instant::now();
                let mib = run(target.addr);
                (mib / t0.elapsed().as_secs_f64(), mib)
            };
            speed[i].push(mib_s);
            cpu[i].push((cpu_seconds(&pids) - c0) * 1e3 / mib);
        }
    }
    let pick = |v: &mut [Vec<f64>; 2], f: fn(&mut [f64]) -> f64| [f(&mut v[0]), f(&mut v[1])];
    Figures {
        best: pick(&mut speed, |v| v.iter().copied().fold(0.0, f64::max)),
        speed: pick(&mut speed, median),
        cpu: pick(&mut cpu, median),
    }
}

/// A child process of this binary serving one role; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(role: &[&str]) -> Server {
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .arg("--role")
            .args(role)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn role");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out).read_line(&mut line).expect("address");
        let addr = line.trim().parse().expect("role prints its address");
        Server { child, addr }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's job: print the listening address, then serve until killed.
fn role(args: &[String]) {
    let serve = |handler: fn(TcpStream)| {
        let l = TcpListener::bind((CONTAINER, 0)).expect("bind 127.0.0.2");
        println!("{}", l.local_addr().expect("addr"));
        for s in l.incoming().flatten() {
            thread::spawn(move || handler(s));
        }
    };
    match args[0].as_str() {
        "sink" => serve(|mut s| {
            let mut buf = vec![0u8; BUF];
            let mut got = 0u64;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            let _ = s.write_all(&got.to_le_bytes());
        }),
        "echo" => serve(|mut s| {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; BUF];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        }),
        "proxy" => {
            let port: u16 = args[1].parse().expect("port");
            let cfg = Config::new(vec![PortMap {
                local: 0,
                remote: port,
            }]);
            let p = proxy::start(&cfg, Arc::new(|_| Some(CONTAINER)), Arc::new(|_| {}))
                .expect("proxy starts");
            println!("{}", p.local_addrs()[0]);
            p.wait();
        }
        // For benches/proxy-others.sh: one one-way run against any forwarder.
        "client" => {
            let to: SocketAddr = args[1].parse().expect("address");
            let mib: usize = args[2].parse().expect("MiB");
            let t0 = Instant::now();
            let moved = oneway(to, mib << 20);
            println!("{:.0}", moved / t0.elapsed().as_secs_f64());
        }
        other => panic!("unknown role {other}"),
    }
}

/// Sends `total` bytes and waits for the sink's count; returns MiB moved.
fn oneway(to: SocketAddr, total: usize) -> f64 {
    let mut s = TcpStream::connect(to).expect("connect");
    let buf = vec![0x5au8; BUF];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        s.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = [0u8; 8];
    s.read_exact(&mut got).expect("count");
    assert_eq!(u64::from_le_bytes(got), total as u64, "sink lost bytes");
    total as f64 / (1 << 20) as f64
}

/// Sends `total` bytes and reads them back at the same time; returns MiB one way.
fn echoed(to: SocketAddr, total: usize) -> f64 {
    let s = TcpStream::connect(to).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let buf = vec![0x5au8; BUF];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            w.write_all(&buf[..n]).expect("write");
            left -= n;
        }
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let (mut r, mut buf, mut got) = (s, vec![0u8; BUF], 0);
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    writer.join().expect("writer");
    assert_eq!(got, total, "echo lost bytes");
    total as f64 / (1 << 20) as f64
}

/// CPU seconds of this process plus the given children (user + system).
fn cpu_seconds(children: &[u32]) -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF counts every thread of this process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let child = |pid: &u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the ")" closing the command name; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|x| x.parse().ok())
            .collect();
        f.iter().sum::<f64>() / hz
    };
    t(ru.ru_utime) + t(ru.ru_stime) + children.iter().map(child).sum::<f64>()
}

/// The arm indices (0 direct, 1 proxy) in the order round `round` runs them.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Round-trip times of 64-byte messages through each of the two addresses,
/// in microseconds, sorted: [`PINGS`] each after 1000 warm-up round trips,
/// in 20 rounds that alternate which address goes first, like [`measure`].
fn latency(to: [SocketAddr; 2]) -> [Vec<f64>; 2] {
    const ROUNDS: usize = 20;
    let mut socks = to.map(|a| {
        let s = TcpStream::connect(a).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s
    });
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut ping = |s: &mut TcpStream| {
        let t0 = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut back).expect("read");
        t0.elapsed().as_secs_f64() * 1e6
    };
    for s in &mut socks {
        for _ in 0..1000 {
            ping(s);
        }
    }
    let mut out = [Vec::with_capacity(PINGS), Vec::with_capacity(PINGS)];
    for round in 0..ROUNDS {
        for i in order(round) {
            for _ in 0..PINGS / ROUNDS {
                let t = ping(&mut socks[i]);
                out[i].push(t);
            }
        }
    }
    for v in &mut out {
        v.sort_by(f64::total_cmp);
    }
    thread::sleep(Duration::from_millis(10));
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}
