//! [`Client`]: the LXD backend that runs the client program (`lxc`/`incus`).
//!
//! Every client call is an [`Invocation`]: program, arguments and stdin bytes,
//! never a shell string, so names, images and passwords reach LXD as single
//! arguments or stdin whatever they contain. Flags come first, then `--`,
//! then every value (instance, snapshot, image, path), so that no value can
//! be read as a flag (the client's parser, cobra, takes everything after
//! `--` as an argument; checked against LXD 5.0.2's `lxc`). Its `Display` is
//! the quoted command line for error messages. This module is the only
//! place that reads the client's English: `messages.rs` turns the messages
//! LXD is known to print into typed errors (with `LC_ALL=C`).
//! Machine-readable output (`--format json`, `query`) is preferred over
//! tables (`../json.rs`).

mod messages;
mod project;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::process::{on_path, Invocation};
use super::{
    json, Away, Disk, ExecOutput, Idmapping, Image, Instance, Lxd, LxdError, SnapshotInfo, State,
    Stop,
};
use messages::{classify, exec_failure};

/// A failure of the client program itself (the errors only this backend
/// has). `cmd` is the client command line, shell-quoted.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The client program could not be started.
    #[error("cannot run `{cmd}`: {source}; is LXD installed? (set LDM_LXC to the client, e.g. LDM_LXC=incus)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// The client ran and failed.
    #[error("`{cmd}` failed{}: {}", code.map(|c| format!(" (exit {c})")).unwrap_or_else(|| " (killed by a signal)".into()), stderr.trim())]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit code, `None` if killed by a signal.
        code: Option<i32>,
        /// What the client printed on stderr.
        stderr: String,
    },
    /// The client's output was not what ldm expected.
    #[error("cannot understand the output of `{cmd}`: {why}")]
    Parse {
        /// The command line.
        cmd: String,
        /// What was wrong.
        why: String,
    },
}

/// Runs the LXD client program, addressed to one remote (or the local LXD).
#[derive(Debug, Clone)]
pub struct Client {
    program: OsString,
    profile: Option<String>,
    remote: Option<String>,
}

impl Client {
    /// The client named by `LDM_LXC` (a name on PATH or a path); else
    /// `lxc`, or `incus` when only that is installed, with a note saying so.
    /// `LDM_PROFILE` adds `--profile` to launches. Addresses the local LXD
    /// until [`Client::with_remote`].
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
            remote: None,
        };
        (client, note)
    }

    /// Addresses every call to `remote` (an LXD remote name, validated by
    /// the caller: `model::validate::remote`), or to the local LXD for `None`.
    pub fn with_remote(mut self, remote: Option<String>) -> Client {
        self.remote = remote;
        self
    }

    /// `REMOTE:name` when a remote is set, else `name`.
    fn at(&self, name: &str) -> String {
        match &self.remote {
            Some(r) => format!("{r}:{name}"),
            None => name.to_string(),
        }
    }

    /// `REMOTE:` for commands that take a server, when a remote is set.
    fn server(&self) -> Option<String> {
        self.remote.as_ref().map(|r| format!("{r}:"))
    }

    /// `program FLAGS -- VALUES`: the flags ldm chose, then every value.
    fn call(&self, flags: &[&str], values: &[String]) -> Invocation {
        let mut args: Vec<String> = flags.iter().map(|a| a.to_string()).collect();
        if !values.is_empty() {
            args.push("--".into());
            args.extend(values.iter().cloned());
        }
        Invocation {
            program: self.program.clone(),
            args,
            stdin: Vec::new(),
        }
    }

    /// Runs `call(flags, values)`; a failure is typed by [`classify`] as
    /// being about `what`.
    fn run(&self, flags: &[&str], values: &[String], what: &str) -> Result<Vec<u8>, LxdError> {
        self.call(flags, values)
            .run()
            .map_err(|e| classify(e, what))
    }

    fn json(&self, inv: &Invocation, bytes: &[u8]) -> Result<Value, LxdError> {
        serde_json::from_slice(bytes).map_err(|e| {
            LxdError::from(CliError::Parse {
                cmd: inv.to_string(),
                why: e.to_string(),
            })
        })
    }

    fn query(&self, path: &str, what: &str) -> Result<Value, LxdError> {
        let inv = self.query_call(path)?;
        let out = inv.run().map_err(|e| classify(e, what))?;
        self.json(&inv, &out)
    }

    /// `query -- [REMOTE:]PATH`, in the client's current project.
    fn query_call(&self, path: &str) -> Result<Invocation, LxdError> {
        let path = project::scoped(path, self.project()?.as_deref());
        Ok(self.call(&["query"], &[self.at(&path)]))
    }

    /// The client's current project on the remote (`None`: default): asked
    /// once per run, because `query` alone does not apply it. Its failure
    /// stays the client's own (never read as "no such instance").
    fn project(&self) -> Result<Option<String>, LxdError> {
        project::cached(
            &project::CURRENT,
            (self.program.clone(), self.remote.clone()),
            || {
                let inv = self.call(
                    &["project", "list", "--format", "csv"],
                    &Vec::from_iter(self.server()),
                );
                let csv = inv.run()?;
                project::current(&csv).map_err(|why| {
                    LxdError::from(CliError::Parse {
                        cmd: inv.to_string(),
                        why,
                    })
                })
            },
        )
    }

    /// The command that makes `project` the client's current one.
    fn switch(&self, project: &str) -> String {
        let program = Path::new(&self.program)
            .file_name()
            .map_or_else(|| "lxc".into(), |p| p.to_string_lossy().into_owned());
        format!("{program} project switch {}", self.at(project))
    }

    /// Runs `inv`, which prints a JSON list of instance objects.
    fn instances(&self, inv: &Invocation) -> Result<Vec<Instance>, LxdError> {
        let out = inv.run().map_err(|e| classify(e, "the instance list"))?;
        let v = self.json(inv, &out)?;
        let items = v.as_array().ok_or_else(|| {
            LxdError::from(CliError::Parse {
                cmd: inv.to_string(),
                why: "expected a JSON list".into(),
            })
        })?;
        Ok(items.iter().map(json::instance).collect())
    }

    /// `exec -- NAME ARGV...`.
    fn exec_call(&self, name: &str, argv: &[&str]) -> Invocation {
        let mut values = vec![self.at(name)];
        values.extend(argv.iter().map(|a| a.to_string()));
        self.call(&["exec"], &values)
    }
}

impl Lxd for Client {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        let inv = self.call(
            &["list", "--format", "json"],
            &Vec::from_iter(self.server()),
        );
        self.instances(&inv)
    }

    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        // recursion=1: instance objects without `state`, which LXD would
        // read from each running container (recursion=2, as `list` does).
        self.instances(&self.query_call("/1.0/instances?recursion=1")?)
    }

    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        let path = format!("/1.0/instances/{name}?recursion=1");
        match self.query(&path, &format!("instance {name}")) {
            Ok(v) => Ok(Some(json::instance(&v))),
            Err(LxdError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        let path = format!("/1.0/instances/{name}/state");
        match self.query(&path, &format!("instance {name}")) {
            Ok(v) => Ok(Some(json::state(&v, self.remote.is_none()))),
            Err(LxdError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        let image = match &self.remote {
            // A bare alias means an image on the project's server.
            Some(_) if !image.contains(':') => self.at(image),
            _ => image.to_string(),
        };
        // `--flag=value`: a value never parses as a flag of its own.
        let mut flags = vec!["launch".to_string()];
        flags.extend(config.iter().map(|(k, v)| format!("--config={k}={v}")));
        if let Some(p) = &self.profile {
            flags.push(format!("--profile={p}"));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = self.call(&flags, &[image.clone(), self.at(name)]).run();
        out.map(drop)
            .map_err(|e| match classify(e, &format!("instance {name}")) {
                LxdError::NotFound { .. } => LxdError::NotFound {
                    what: format!("image {image}"),
                },
                e => e,
            })
    }

    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.run(&["start"], &[self.at(name)], name).map(drop)
    }

    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.run(&["stop"], &[self.at(name)], name).map(drop)
    }

    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.run(&["delete", "--force"], &[self.at(name)], name)
            .map(drop)
    }

    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        let mut inv = self.exec_call(name, argv);
        inv.stdin = stdin.to_vec();
        let (code, stdout, stderr) = inv.output()?;
        let code = code.unwrap_or(-1);
        if let Some(e) = exec_failure(&inv, name, code, &stderr) {
            return Err(e);
        }
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
        })
    }

    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        let path = format!("/1.0/instances/{name}/snapshots?recursion=1");
        let v = self.query(&path, &format!("instance {name}"))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(json::snapshot)
            .collect())
    }

    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.run(&["snapshot"], &[self.at(name), snap.to_string()], name)
            .map(drop)
            .map_err(|e| match e {
                LxdError::NotFound { .. } => LxdError::NotFound {
                    what: format!("instance {name}"),
                },
                LxdError::AlreadyExists { .. } => LxdError::AlreadyExists {
                    what: format!("snapshot {name}/{snap}"),
                },
                e => e,
            })
    }

    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        let what = format!("snapshot {name}/{snap}");
        self.run(&["restore"], &[self.at(name), snap.to_string()], &what)
            .map(drop)
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        let what = format!("snapshot {name}/{snap}");
        self.run(&["delete"], &[self.at(&format!("{name}/{snap}"))], &what)
            .map(drop)
    }

    /// The CLI backend (going away) sets no owner marks: `config` is unused.
    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        _config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        let from = match snap {
            Some(s) => format!("{source}/{s}"),
            None => source.to_string(),
        };
        // A snapshot source has no snapshots to leave behind, and LXD
        // refuses --instance-only for it.
        let flags: &[&str] = match snap {
            Some(_) => &["copy"],
            None => &["copy", "--instance-only"],
        };
        self.call(flags, &[self.at(&from), self.at(target)])
            .run()
            .map(drop)
            .map_err(|e| match classify(e, target) {
                LxdError::NotFound { .. } => LxdError::NotFound { what: from.clone() },
                LxdError::AlreadyExists { .. } => LxdError::AlreadyExists {
                    what: format!("instance {target}"),
                },
                e => e,
            })
    }

    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        Ok(self.exec_call(name, argv).attached()?.unwrap_or(128 + 9))
    }

    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        let inv = self.exec_call(name, argv);
        let source = Command::new(&inv.program).args(&inv.args).exec();
        LxdError::from(CliError::Spawn {
            cmd: inv.to_string(),
            source,
        })
    }

    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        let flags: &[&str] = if recursive {
            &["file", "push", "--recursive"]
        } else {
            &["file", "push"]
        };
        let values = [
            src.to_string_lossy().into_owned(),
            self.at(&format!("{name}{path}")),
        ];
        self.run(flags, &values, &format!("{name}:{path}"))
            .map(drop)
    }

    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        let flags: &[&str] = if recursive {
            &["file", "pull", "--recursive"]
        } else {
            &["file", "pull"]
        };
        let values = [
            self.at(&format!("{name}{path}")),
            dest.to_string_lossy().into_owned(),
        ];
        self.run(flags, &values, &format!("{name}:{path}"))
            .map(drop)
    }

    fn images(&self) -> Result<Vec<Image>, LxdError> {
        let flags = ["image", "list", "--format", "json"];
        let inv = self.call(&flags, &Vec::from_iter(self.server()));
        let out = inv.run().map_err(|e| classify(e, "the image list"))?;
        let v = self.json(&inv, &out)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(json::image)
            .collect())
    }

    fn publish(&self, name: &str, snap: &str, alias: &str, progress: bool) -> Result<(), LxdError> {
        let alias_flag = format!("--alias={alias}");
        let mut values = vec![self.at(&format!("{name}/{snap}"))];
        // Publish onto the project's server, not the local store.
        values.extend(self.server());
        let inv = self.call(&["publish", &alias_flag], &values);
        let result = if progress {
            inv.run_with_progress()
        } else {
            inv.run().map(drop)
        };
        result.map_err(|e| match classify(e, &format!("snapshot {name}/{snap}")) {
            LxdError::AlreadyExists { .. } => LxdError::AlreadyExists {
                what: format!("image alias {alias}"),
            },
            e => e,
        })
    }

    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        let what = format!("image {alias}");
        self.run(&["image", "delete"], &[self.at(alias)], &what)
            .map(drop)
    }

    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        let v = self.query("/1.0/operations?recursion=1", "LXD's operations")?;
        Ok(json::operations_on(&v, name))
    }

    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        let current = self.project()?.unwrap_or_else(|| "default".into());
        // Not `query_call`: LXD refuses a project beside all-projects.
        let inv = self.call(&["query"], &[self.at("/1.0/instances?all-projects=true")]);
        let out = inv.run()?;
        let v = self.json(&inv, &out)?;
        Ok(project::elsewhere(&v, &current)
            .into_iter()
            .map(|(instance, project)| Away {
                switch: self.switch(&project),
                instance,
                project,
            })
            .collect())
    }

    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        let key = (self.program.clone(), self.remote.clone());
        project::cached(&project::SERVER, key, || {
            let name = match &self.remote {
                Some(r) => r.clone(),
                None => {
                    let out = self.call(&["remote", "get-default"], &[]).run()?;
                    String::from_utf8_lossy(&out).trim().to_string()
                }
            };
            let inv = self.call(&["remote", "list", "--format", "json"], &[]);
            let v = self.json(&inv, &inv.run()?)?;
            match project::is_another_machine(&v, &name) {
                Some(far) => Ok(far.then_some(name)),
                None => Err(LxdError::from(CliError::Parse {
                    cmd: inv.to_string(),
                    why: format!("it lists no remote {name}"),
                })),
            }
        })
    }

    fn idmapping(&self) -> Result<Idmapping, LxdError> {
        let v = self.query("/1.0", "the LXD server")?;
        Ok(json::idmapping(&v))
    }

    fn identity(&self) -> Result<super::Server, LxdError> {
        let v = self.query("/1.0", "the LXD server")?;
        Ok(json::server(
            &v,
            self.project()?.as_deref(),
            self.remote.as_deref(),
        ))
    }

    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        let mut values = vec![
            self.at(name),
            disk.device.clone(),
            "disk".into(),
            format!("source={}", disk.source),
            format!("path={}", disk.path),
        ];
        if disk.readonly {
            values.push("readonly=true".into());
        }
        if disk.shift {
            values.push("shift=true".into());
        }
        let what = format!("device {} of {name}", disk.device);
        self.call(&["config", "device", "add"], &values)
            .run()
            .map(drop)
            .map_err(|e| messages::device_failure(e, name, &what))
    }

    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        let values = [self.at(name), device.to_string()];
        self.run(
            &["config", "device", "remove"],
            &values,
            &format!("device {device} of {name}"),
        )
        .map(drop)
    }

    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        let values = [self.at(name), key.to_string(), value.to_string()];
        self.call(&["config", "set"], &values)
            .run()
            .map(drop)
            .map_err(|e| messages::device_failure(e, name, &format!("instance {name}")))
    }

    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.call(&["restart"], &[self.at(name)])
            .run()
            .map(drop)
            .map_err(|e| messages::device_failure(e, name, name))
    }

    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: Stop,
    ) -> Result<i32, LxdError> {
        let mut inv = self.exec_call(name, argv);
        inv.stdin = stdin.to_vec();
        let (code, stderr) = inv.lines(line, Some(stop))?;
        let code = code.unwrap_or(-1);
        match exec_failure(&inv, name, code, &stderr) {
            Some(e) => Err(e),
            None => Ok(code),
        }
    }

    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        let values = [self.at(old), new.to_string()];
        self.call(&["image", "alias", "rename"], &values)
            .run()
            .map(drop)
            .map_err(|e| match classify(e, &format!("image alias {old}")) {
                LxdError::AlreadyExists { .. } => LxdError::AlreadyExists {
                    what: format!("image alias {new}"),
                },
                e => e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_a_double_dash_and_carry_the_remote() {
        let c = Client::from_env().0.with_remote(Some("shared".into()));
        let inv = c.exec_call("p-a", &["sh", "-c", "x"]);
        assert_eq!(inv.args, ["exec", "--", "shared:p-a", "sh", "-c", "x"]);
        let inv = c.call(&["list", "--format", "json"], &Vec::from_iter(c.server()));
        assert_eq!(inv.args, ["list", "--format", "json", "--", "shared:"]);
        let local = Client::from_env().0;
        let inv = local.call(
            &["list", "--format", "json"],
            &Vec::from_iter(local.server()),
        );
        assert_eq!(inv.args, ["list", "--format", "json"]);
    }
}
