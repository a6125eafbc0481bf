//! [`Client`]: the LXD backend that runs the client program (`lxc`/`incus`).
//!
//! Every client call is an [`Invocation`]: program, arguments and stdin bytes,
//! never a shell string, so names, images and passwords reach LXD as single
//! arguments or stdin whatever they contain. Its `Display` is the quoted
//! command line for error messages. A failure keeps the client's stderr;
//! known messages ("not found", "already exists") become typed errors here
//! and nowhere else. Machine-readable output (`--format json`, `query`) is
//! preferred over tables.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::process::{on_path, Invocation};
use super::{ExecOutput, Image, Instance, Lxd, LxdError, SnapshotInfo};

/// Runs the LXD client program.
#[derive(Debug, Clone)]
pub struct Client {
    program: OsString,
    profile: Option<String>,
    remote: Remote,
}

/// The LXD remote every call addresses, learnt at most once: given up front,
/// or asked of a closure when the first call needs it (by then the command
/// has usually loaded the project and filled the cell itself).
#[derive(Clone, Default)]
pub struct Remote {
    cell: Arc<OnceLock<Option<String>>>,
    learn: Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>,
}

impl Remote {
    /// A remote learnt from `cell` if something fills it first, else from `learn`.
    pub fn lazy(
        cell: Arc<OnceLock<Option<String>>>,
        learn: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Remote {
        Remote {
            cell,
            learn: Some(Arc::new(learn)),
        }
    }

    fn get(&self) -> Option<&str> {
        self.cell
            .get_or_init(|| self.learn.as_ref().and_then(|f| f()))
            .as_deref()
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Remote").field(&self.cell.get()).finish()
    }
}

impl Client {
    /// The client named by `LDM_LXC` (a name on PATH or a path); else
    /// `lxc`, or `incus` when only that is installed, with a note saying so.
    /// `LDM_PROFILE` adds `--profile` to launches.
    pub fn from_env() -> (Client, Option<String>) {
        let (program, note) = match std::env::var_os("LDM_LXC").filter(|p| !p.is_empty()) {
            Some(p) => (p, None),
            None if !on_path("lxc") && on_path("incus") => (
                "incus".into(),
                Some("lxc is not installed; using incus (set LDM_LXC to choose)".to_string()),
            ),
            None => ("lxc".into(), None),
        };
        let client = Client {
            program,
            profile: std::env::var("LDM_PROFILE").ok().filter(|p| !p.is_empty()),
            remote: Remote::default(),
        };
        (client, note)
    }

    /// Addresses every call to `remote` (an LXD remote name), as set by the
    /// project's `remote:` key.
    pub fn with_remote(mut self, remote: Remote) -> Client {
        self.remote = remote;
        self
    }

    /// `REMOTE:name` when a remote is set, else `name`.
    fn at(&self, name: &str) -> String {
        match self.remote.get() {
            Some(r) => format!("{r}:{name}"),
            None => name.to_string(),
        }
    }

    /// The client program, for messages.
    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn call(&self, args: &[&str]) -> Invocation {
        Invocation {
            program: self.program.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: Vec::new(),
        }
    }

    fn query(&self, path: &str) -> Result<Value, LxdError> {
        let inv = self.call(&["query", path]);
        let out = inv.run()?;
        serde_json::from_slice(&out).map_err(|e| LxdError::Parse {
            cmd: inv.to_string(),
            why: e.to_string(),
        })
    }
}

fn parse_snapshot(s: &Value) -> SnapshotInfo {
    let name = s["name"].as_str().unwrap_or_default();
    SnapshotInfo {
        name: name.rsplit('/').next().unwrap_or(name).to_string(),
        created_at: s["created_at"].as_str().unwrap_or_default().to_string(),
    }
}

fn parse_instance(v: &Value) -> Instance {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let state = &v["state"];
    let ipv4 = state["network"].as_object().and_then(|nics| {
        nics.iter()
            .filter(|(name, _)| name.as_str() != "lo")
            .flat_map(|(_, nic)| nic["addresses"].as_array().into_iter().flatten())
            .find(|a| a["family"] == "inet" && a["scope"] == "global")
            .and_then(|a| text(&a["address"]))
    });
    let snapshots = v["snapshots"]
        .as_array()
        .map(|a| a.iter().map(parse_snapshot).collect())
        .unwrap_or_default();
    Instance {
        name: text(&v["name"]).unwrap_or_default(),
        status: text(&v["status"])
            .or_else(|| text(&state["status"]))
            .unwrap_or_else(|| "Unknown".into()),
        ipv4,
        snapshots,
        image: text(&v["config"]["image.description"]),
    }
}

impl Lxd for Client {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        let server = self.at("");
        let mut inv = self.call(&["list", "--format", "json"]);
        if !server.is_empty() {
            inv.args.insert(1, server);
        }
        let out = inv.run()?;
        let v: Value = serde_json::from_slice(&out).map_err(|e| LxdError::Parse {
            cmd: inv.to_string(),
            why: e.to_string(),
        })?;
        let items = v.as_array().ok_or_else(|| LxdError::Parse {
            cmd: inv.to_string(),
            why: "expected a JSON list".into(),
        })?;
        Ok(items.iter().map(parse_instance).collect())
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        match self.query(&self.at(&format!("/1.0/instances/{name}?recursion=1"))) {
            Ok(v) => Ok(Some(parse_instance(&v))),
            Err(LxdError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        let image = match self.remote.get() {
            // A bare alias means an image on the project's server.
            Some(_) if !image.contains(':') => self.at(image),
            _ => image.to_string(),
        };
        let image = image.as_str();
        let mut args = vec!["launch".to_string(), image.to_string(), self.at(name)];
        for (k, v) in config {
            args.push("--config".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(p) = &self.profile {
            args.push("--profile".into());
            args.push(p.clone());
        }
        let inv = Invocation {
            program: self.program.clone(),
            args,
            stdin: Vec::new(),
        };
        inv.run().map(drop).map_err(|e| match e {
            LxdError::NotFound { .. } => LxdError::NotFound {
                what: format!("image {image}"),
            },
            LxdError::AlreadyExists { .. } => LxdError::AlreadyExists {
                what: format!("instance {name}"),
            },
            LxdError::Busy { .. } => LxdError::Busy {
                what: format!("instance {name}"),
            },
            e => e,
        })
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.call(&["start", &self.at(name)]).run().map(drop)
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.call(&["stop", &self.at(name)]).run().map(drop)
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.call(&["delete", &self.at(name), "--force"])
            .run()
            .map(drop)
    }

    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        let mut inv = self.call(&["exec", &self.at(name), "--"]);
        inv.args.extend(argv.iter().map(|a| a.to_string()));
        inv.stdin = stdin.to_vec();
        let (code, stdout, stderr) = inv.output()?;
        Ok(ExecOutput {
            code: code.unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        let v = self.query(&self.at(&format!("/1.0/instances/{name}/snapshots?recursion=1")))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(parse_snapshot)
            .collect())
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call(&["snapshot", &self.at(name), snap])
            .run()
            .map(drop)
            .map_err(|e| match e {
                LxdError::NotFound { .. } => LxdError::NotFound {
                    what: format!("instance {name}"),
                },
                e => e,
            })
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call(&["restore", &self.at(name), snap])
            .run()
            .map(drop)
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.call(&["delete", &self.at(&format!("{name}/{snap}"))])
            .run()
            .map(drop)
    }

    fn copy(&self, source: &str, snap: Option<&str>, target: &str) -> Result<(), LxdError> {
        let from = match snap {
            Some(s) => format!("{source}/{s}"),
            None => source.to_string(),
        };
        let mut inv = self.call(&["copy", &self.at(&from), &self.at(target)]);
        // A snapshot source has no snapshots to leave behind, and LXD
        // refuses --instance-only for it.
        if snap.is_none() {
            inv.args.push("--instance-only".into());
        }
        inv.run().map(drop).map_err(|e| match e {
            LxdError::NotFound { .. } => LxdError::NotFound { what: from.clone() },
            e => e,
        })
    }

    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        let mut inv = self.call(&["exec", &self.at(name), "--"]);
        inv.args.extend(argv.iter().map(|a| a.to_string()));
        Ok(inv.attached()?.unwrap_or(128 + 9))
    }

    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        let mut inv = self.call(&["exec", &self.at(name), "--"]);
        inv.args.extend(argv.iter().map(|a| a.to_string()));
        let source = Command::new(&inv.program).args(&inv.args).exec();
        LxdError::Spawn {
            cmd: inv.to_string(),
            source,
        }
    }

    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        let mut inv = self.call(&["file", "push"]);
        if recursive {
            inv.args.push("--recursive".into());
        }
        inv.args.push(src.to_string_lossy().into_owned());
        inv.args.push(self.at(&format!("{name}{path}")));
        inv.run().map(drop)
    }

    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        let mut inv = self.call(&["file", "pull"]);
        if recursive {
            inv.args.push("--recursive".into());
        }
        inv.args.push(self.at(&format!("{name}{path}")));
        inv.args.push(dest.to_string_lossy().into_owned());
        inv.run().map(drop)
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        let server = self.at("");
        let mut inv = self.call(&["image", "list", "--format", "json"]);
        if !server.is_empty() {
            inv.args.insert(2, server);
        }
        let out = inv.run()?;
        let v: Value = serde_json::from_slice(&out).map_err(|e| LxdError::Parse {
            cmd: inv.to_string(),
            why: e.to_string(),
        })?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|i| Image {
                aliases: i["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["name"].as_str().map(str::to_string))
                    .collect(),
                fingerprint: i["fingerprint"].as_str().unwrap_or_default().to_string(),
                size: i["size"].as_u64().unwrap_or(0),
                description: i["properties"]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect())
    }

    fn publish(&self, name: &str, snap: &str, alias: &str, progress: bool) -> Result<(), LxdError> {
        let mut inv = self.call(&[
            "publish",
            &self.at(&format!("{name}/{snap}")),
            "--alias",
            alias,
        ]);
        if self.remote.get().is_some() {
            // Publish onto the project's server, not the local store.
            inv.args.insert(2, self.at(""));
        }
        if progress {
            inv.run_with_progress()
        } else {
            inv.run().map(drop)
        }
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.call(&["image", "delete", &self.at(alias)])
            .run()
            .map(drop)
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.call(&["image", "alias", "rename", &self.at(old), new])
            .run()
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let inv = Invocation {
            program: "lxc".into(),
            args: vec!["exec".into(), "p-a".into(), "it's $(x)".into()],
            stdin: Vec::new(),
        };
        assert_eq!(inv.to_string(), r"lxc exec p-a 'it'\''s $(x)'");
    }

    #[test]
    fn instance_json_is_parsed() {
        let v: Value = serde_json::from_str(
            r#"{"name":"p-a","status":"Running","config":{"image.description":"Debian"},
                "state":{"network":{"lo":{"addresses":[{"family":"inet","address":"127.0.0.1","scope":"local"}]},
                "eth0":{"addresses":[{"family":"inet6","address":"fe80::1","scope":"link"},{"family":"inet","address":"198.18.77.5","scope":"global"}]}}},
                "snapshots":[{"name":"initial-state","created_at":"2026-01-01T00:00:00Z"}]}"#,
        )
        .unwrap();
        let i = parse_instance(&v);
        assert_eq!(i.ipv4.as_deref(), Some("198.18.77.5"));
        assert_eq!(i.snapshots[0].name, "initial-state");
        assert!(i.is_running());
        assert_eq!(i.image.as_deref(), Some("Debian"));
    }
}
