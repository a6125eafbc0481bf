//! `ldm proxy NAME [--bind ADDR] [-p LOCAL:REMOTE ...]`: forwards the
//! container's ports until Ctrl+C. The forwarding itself is [`crate::proxy`];
//! this file finds the ports and the container's address through LXD.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cli::{Proxy as ProxyArgs, DEFAULT_WAIT};
use crate::commands::{gate, op, Ctx};
use crate::proxy::{self, CloseReason, Config, Event, PortMap};
use crate::trust::Need;
use crate::Error;

/// Starts forwarding and blocks until the process is stopped.
pub fn run(ctx: &Ctx, args: &ProxyArgs) -> Result<(), Error> {
    let (_, project, _) = gate::load(ctx, &Need::lxd())?;
    let name = args.name.as_str();
    op::container(&project, name)?;
    let ports: Vec<PortMap> = if args.ports.is_empty() {
        project
            .effective_ports(name)
            .iter()
            .map(|p| PortMap::same(*p))
            .collect()
    } else {
        args.ports
            .iter()
            .map(|p| {
                p.parse().map_err(|_| {
                    Error::Usage(format!(
                        "bad -p {p:?}: write PORT or LOCAL:REMOTE, e.g. -p 8080:80"
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    if ports.is_empty() {
        return Err(Error::Usage(format!(
            "no ports to forward for {name}: set some with `ldm config set containers.{name}.ports 3000,5173` (or defaults.ports), or pass -p PORT"
        )));
    }
    let lxd_name = project.lxd_name(name);
    // Shared with the proxy's connection threads, which look the address
    // up again when it changes: `Lxd` is `Send + Sync`.
    let lxd = ctx.lxd(&project, DEFAULT_WAIT);
    let inst = op::running(&*lxd, name, &lxd_name)?;
    let first: Option<IpAddr> = inst.ipv4.as_deref().and_then(|ip| ip.parse().ok());
    let client = Arc::clone(&lxd);
    let resolve: proxy::Resolve = Arc::new(move |refresh| {
        if !refresh {
            return first;
        }
        client
            .instance(&lxd_name)
            .ok()
            .flatten()
            .and_then(|i| i.ipv4)
            .and_then(|ip| ip.parse().ok())
    });
    let quiet = ctx.quiet;
    let events: proxy::Events = Arc::new(move |e| report(&e, quiet));
    let cfg = Config {
        bind: args.bind,
        ports,
        max_conns: args.max_conns.max(1),
        idle_timeout: args.idle_timeout,
    };
    if !args.bind.is_loopback() {
        eprintln!(
            "warning: listening on {}: other machines on your network can reach these ports",
            args.bind
        );
    }
    let running = proxy::start(&cfg, resolve, events)?;
    eprintln!("Forwarding to {name} until Ctrl+C");
    running.wait();
    Ok(())
}

/// One stderr line per event worth a user's attention.
fn report(e: &Event, quiet: bool) {
    match e {
        Event::Listening { local, remote } => eprintln!("  {local} -> {remote}"),
        Event::PortBusy { port, error } => eprintln!("warning: port {port} not forwarded: {error}"),
        Event::Refused { port, limit, .. } => {
            eprintln!("warning: port {port}: {limit} connections open already; refused one")
        }
        Event::NoAddress { port } => {
            eprintln!("warning: port {port}: the container has no IPv4 address right now")
        }
        Event::ConnectFailed {
            port,
            upstream,
            error,
        } => eprintln!("warning: port {port}: cannot connect to {upstream}: {error}"),
        Event::AddressChanged {
            from: Some(from),
            to,
        } => eprintln!("note: the container moved from {from} to {to}; new connections go there"),
        Event::Closed {
            reason: CloseReason::Idle,
            port,
            peer,
            ..
        } if !quiet => eprintln!("  port {port}: closed idle connection from {peer}"),
        Event::AcceptFailed { port, error } => {
            eprintln!("warning: port {port}: accept failed: {error}")
        }
        _ => {}
    }
}
