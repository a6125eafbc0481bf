//! Reaching the server a remote names: the home folder, the client's
//! configuration, and the endpoint (the local socket, or TLS to
//! `https://HOST[:PORT]` with the client's certificate and the server's
//! pinned); a configuration that cannot be used is an error kept for every
//! call (`Api::conn`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::{ClientConfig, Family, Remote};
use super::transport::{self, Endpoint};
use super::{tls, Conn};

/// The home folder: `HOME`, else the user database's.
pub(super) fn home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    ldm_sys::users::by_uid(ldm_sys::euid()).map(|u| u.home)
}

/// A config that names only the local socket (when even the defaults fail).
pub(super) fn unreachable_config(family: Family) -> ClientConfig {
    ClientConfig {
        dir: None,
        default_remote: "local".into(),
        remotes: BTreeMap::from([(
            "local".to_string(),
            Remote {
                addr: "unix://".into(),
                protocol: family.program().into(),
                public: false,
                project: String::new(),
            },
        )]),
    }
}

/// The client's `config.yml` (for messages).
pub(super) fn config_file(config: &ClientConfig) -> PathBuf {
    config
        .dir
        .as_ref()
        .map(|d| d.join("config.yml"))
        .unwrap_or_else(|| PathBuf::from("config.yml"))
}

/// The connection to remote `name`.
pub(super) fn connect(
    family: Family,
    config: &ClientConfig,
    name: &str,
    r: &Remote,
) -> Result<Conn, (PathBuf, String)> {
    let endpoint = endpoint(family, config, name, r)?;
    Ok(Conn {
        agent: transport::agent(&endpoint),
        endpoint,
    })
}

fn endpoint(
    family: Family,
    config: &ClientConfig,
    name: &str,
    r: &Remote,
) -> Result<Endpoint, (PathBuf, String)> {
    let file = config_file(config);
    if let Some(rest) = r.addr.strip_prefix("unix:") {
        let path = rest.trim_start_matches("//");
        return Ok(Endpoint::Unix(if path.is_empty() {
            family.socket()
        } else {
            PathBuf::from(path)
        }));
    }
    if r.protocol == "simplestreams" {
        return Err((
            file,
            format!(
                "the remote {name} is an image server ({}), not an {} server; name a server remote",
                r.addr,
                family.name()
            ),
        ));
    }
    let Some(hostport) = r.addr.strip_prefix("https://") else {
        return Err((
            file,
            format!(
                "the remote {name} has the address {:?}, which is neither unix:// nor https://",
                r.addr
            ),
        ));
    };
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = split_host_port(hostport).ok_or_else(|| {
        (
            file.clone(),
            format!(
                "the remote {name} has an address ldm cannot read: {:?}",
                r.addr
            ),
        )
    })?;
    let (Some((crt, key)), Some(server)) = (config.client_cert(), config.server_cert(name)) else {
        return Err((file, "no configuration folder (HOME is not set)".into()));
    };
    let tls = tls::Tls::load(&crt, &key, &server).map_err(|p| {
        let next = if p.path == server {
            format!(
                "the {} client keeps no certificate for the remote {name}; add it with `{} remote add {name} {}` and accept its fingerprint",
                family.name(),
                family.program(),
                r.addr
            )
        } else {
            format!("make a client certificate with `{} remote add` (or `{} info`)", family.program(), family.program())
        };
        (p.path, format!("{}; {next}", p.why))
    })?;
    Ok(Endpoint::Https {
        host,
        port,
        tls: Arc::new(tls),
    })
}

/// `host:port`, `host` (port 8443), `[v6]:port` or `[v6]`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 8443,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_string(), 8443)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_are_split_into_host_and_port() {
        let hp = |s: &str| split_host_port(s);
        assert_eq!(hp("198.51.100.7:8443"), Some(("198.51.100.7".into(), 8443)));
        assert_eq!(hp("lxd.example"), Some(("lxd.example".into(), 8443)));
        assert_eq!(hp("[2001:db8::1]:9443"), Some(("2001:db8::1".into(), 9443)));
        assert_eq!(hp("[2001:db8::1]"), Some(("2001:db8::1".into(), 8443)));
        assert_eq!(hp("2001:db8::1"), None);
        assert_eq!(hp("h:x"), None);
    }
}
