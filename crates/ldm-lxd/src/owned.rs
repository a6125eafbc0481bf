//! [`Owned`]: the client every command gets, which knows whose each
//! instance is ([`super::owner`]): reads classify what they return, and
//! every call that acts on another checkout's instance is refused before
//! it reaches LXD. DESIGN.md, "Ownership".

// Over 400 lines: each Lxd method written out with its own ownership rule
// (refuse, guard, mark, or pass through), so that a new trait method needs
// a decision here rather than inheriting one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::owner::{Me, Owner, PREFIX};
use super::pins::{Pin, Pins};
use super::{
    Away, Disk, ExecOutput, Image, Instance, Lxd, LxdError, Server, SnapshotInfo, State, Target,
};

/// A client that knows whose each instance is: reads note the owner of
/// what they return, and every call that acts on an instance of another
/// checkout fails with [`LxdError::NotOurs`] without reaching LXD. An
/// action on an instance no read of the command returned first asks LXD
/// for its marks (one request: `snapshot create` and `mv`, which read
/// nothing else; DESIGN.md, "Ownership", has the counts).
pub struct Owned {
    inner: Arc<dyn Lxd>,
    me: Me,
    seen: Seen,
    quiet: bool,
    pins: Pins,
}

/// The owners one command's clients have seen, by instance name (a
/// command makes several clients, all for its project's one server).
pub type Seen = Arc<Mutex<HashMap<String, Owner>>>;

impl Owned {
    /// Wraps `inner` for the checkout `me`, sharing what it sees in `seen`.
    /// `quiet`: no line when an instance is marked (`-q`).
    pub fn new(inner: Arc<dyn Lxd>, me: Me, seen: Seen, quiet: bool) -> Owned {
        let pins = Pins::of(me.users.as_ref(), &me.checkout);
        Owned {
            inner,
            me,
            seen,
            quiet,
            pins,
        }
    }

    /// Records where `name`, this checkout's, is (best effort).
    fn pin(&self, name: &str) {
        if let Ok(t) = self.inner.target() {
            self.pins.record(name, &Pin::at(&t));
        }
    }

    /// `r` of a change to `name`: when it succeeded on an unmarked or moved
    /// instance, that instance gets this checkout's marks (one request,
    /// once per instance), said in one line. A failure to mark is said
    /// and changes nothing else: the next change tries again.
    fn changed<T>(&self, name: &str, r: Result<T, LxdError>) -> Result<T, LxdError> {
        let Ok(_) = &r else {
            return r;
        };
        let why = match self.known(name) {
            Some(Owner::Unmarked) => {
                "made before ldm marked its containers, or by another tool".to_string()
            }
            Some(Owner::Moved { from }) => {
                format!("its marks named {from}, which no longer is that checkout")
            }
            _ => return r,
        };
        let marks = self.marks(name);
        let keys: Vec<(&str, &str)> = marks.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match self.inner.set_configs(name, &keys) {
            Ok(()) => {
                self.made(name);
                if !self.quiet {
                    eprintln!(
                        "ldm: marked {name} as this folder's ({}): {why}",
                        self.me.folder
                    );
                }
            }
            Err(e) if !self.quiet => {
                eprintln!("ldm: could not mark {name} as this folder's ({e}); the next change tries again");
            }
            Err(_) => {}
        }
        r
    }

    fn note(&self, inst: &Instance) -> Owner {
        let owner = self.me.owner(&inst.user);
        if owner == Owner::Ours {
            self.pin(&inst.name);
        }
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(inst.name.clone(), owner.clone());
        owner
    }

    fn known(&self, name: &str) -> Option<Owner> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Fails unless `name` is ours, unmarked or absent.
    fn guard(&self, name: &str) -> Result<(), LxdError> {
        let owner = match self.known(name) {
            Some(o) => o,
            None => match self.inner.user_keys(name)? {
                Some(user) => {
                    let owner = self.me.owner(&user);
                    self.seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.to_string(), owner.clone());
                    owner
                }
                None => return Ok(()),
            },
        };
        match owner {
            Owner::Other(theirs) => Err(self.me.refusal(name, &theirs)),
            _ => Ok(()),
        }
    }

    /// A create that LXD refused because the name is taken: another
    /// checkout's instance is said as such.
    fn taken(&self, name: &str, e: LxdError) -> LxdError {
        if !matches!(e, LxdError::AlreadyExists { .. }) {
            return e;
        }
        match self.inner.user_keys(name) {
            Ok(Some(user)) => match self.me.owner(&user) {
                Owner::Other(theirs) => self.me.refusal(name, &theirs),
                _ => e,
            },
            _ => e,
        }
    }

    /// Gives `name` (just renamed; `before` is whose it was) this
    /// checkout's marks, naming its new project and container.
    fn remark(&self, name: &str, before: Option<Owner>) -> Result<(), LxdError> {
        let marks = self.marks(name);
        let keys: Vec<(&str, &str)> = marks.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.inner.set_configs(name, &keys)?;
        self.made(name);
        if matches!(before, Some(Owner::Unmarked) | Some(Owner::Moved { .. })) && !self.quiet {
            eprintln!("ldm: marked {name} as this folder's ({})", self.me.folder);
        }
        Ok(())
    }

    /// `name` was just made with this checkout's marks.
    fn made(&self, name: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Owner::Ours);
        self.pin(name);
    }

    fn marks(&self, name: &str) -> Vec<(&'static str, String)> {
        self.me.marks(name)
    }
}

fn with<'a>(
    config: &[(&'a str, &'a str)],
    marks: &'a [(&'static str, String)],
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = config
        .iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .copied()
        .collect();
    all.extend(marks.iter().map(|(k, v)| (*k, v.as_str())));
    all
}

impl Lxd for Owned {
    fn list(&self) -> Result<Vec<Instance>, LxdError> {
        let mut all = self.inner.list()?;
        all.iter_mut().for_each(|i| i.owner = self.note(i));
        Ok(all)
    }
    fn statuses(&self) -> Result<Vec<Instance>, LxdError> {
        let mut all = self.inner.statuses()?;
        all.iter_mut().for_each(|i| i.owner = self.note(i));
        Ok(all)
    }
    /// Another checkout's instance is [`LxdError::NotOurs`]: a command
    /// that looks one instance up acts on it.
    fn instance(&self, name: &str) -> Result<Option<Instance>, LxdError> {
        let Some(mut inst) = self.inner.instance(name)? else {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            return Ok(None);
        };
        inst.owner = self.note(&inst);
        match &inst.owner {
            Owner::Other(theirs) => Err(self.me.refusal(name, theirs)),
            _ => Ok(Some(inst)),
        }
    }
    fn state(&self, name: &str) -> Result<Option<State>, LxdError> {
        self.inner.state(name)
    }
    fn launch(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        if let Some(Owner::Other(theirs)) = self.known(name) {
            return Err(self.me.refusal(name, &theirs));
        }
        let marks = self.marks(name);
        self.inner
            .launch(image, name, &with(config, &marks))
            .map_err(|e| self.taken(name, e))?;
        self.made(name);
        Ok(())
    }
    fn create(&self, image: &str, name: &str, config: &[(&str, &str)]) -> Result<(), LxdError> {
        if let Some(Owner::Other(theirs)) = self.known(name) {
            return Err(self.me.refusal(name, &theirs));
        }
        let marks = self.marks(name);
        self.inner
            .create(image, name, &with(config, &marks))
            .map_err(|e| self.taken(name, e))?;
        self.made(name);
        Ok(())
    }
    fn read_file(&self, name: &str, path: &str, limit: u64) -> Result<Vec<u8>, LxdError> {
        self.guard(name)?;
        self.inner.read_file(name, path, limit)
    }
    fn start(&self, name: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.start(name))
    }
    fn stop(&self, name: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.stop(name))
    }
    fn delete(&self, name: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.inner.delete(name)?;
        self.pins.forget(name);
        Ok(())
    }
    fn exec(&self, name: &str, argv: &[&str], stdin: &[u8]) -> Result<ExecOutput, LxdError> {
        self.guard(name)?;
        self.inner.exec(name, argv, stdin)
    }
    fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, LxdError> {
        self.inner.snapshots(name)
    }
    fn snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.snapshot(name, snap))
    }
    fn restore(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.restore(name, snap))
    }
    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.delete_snapshot(name, snap))
    }
    fn copy(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        self.guard(source)?;
        if let Some(Owner::Other(theirs)) = self.known(target) {
            return Err(self.me.refusal(target, &theirs));
        }
        let marks = self.marks(target);
        self.inner
            .copy(source, snap, target, &with(config, &marks))
            .map_err(|e| self.taken(target, e))?;
        self.made(target);
        Ok(())
    }
    fn exec_attached(&self, name: &str, argv: &[&str]) -> Result<i32, LxdError> {
        self.guard(name)?;
        self.inner.exec_attached(name, argv)
    }
    fn exec_replace(&self, name: &str, argv: &[&str]) -> LxdError {
        if let Err(e) = self.guard(name) {
            return e;
        }
        self.inner.exec_replace(name, argv)
    }
    fn push(&self, name: &str, src: &Path, path: &str, recursive: bool) -> Result<(), LxdError> {
        self.guard(name)?;
        self.inner.push(name, src, path, recursive)
    }
    fn pull(&self, name: &str, path: &str, dest: &Path, recursive: bool) -> Result<(), LxdError> {
        self.guard(name)?;
        self.inner.pull(name, path, dest, recursive)
    }
    fn images(&self) -> Result<Vec<Image>, LxdError> {
        self.inner.images()
    }
    fn publish(&self, name: &str, snap: &str, alias: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.inner.publish(name, snap, alias)
    }
    fn delete_image(&self, alias: &str) -> Result<(), LxdError> {
        self.inner.delete_image(alias)
    }
    fn rename_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        self.inner.rename_alias(old, new)
    }
    fn ensure_project(&self, name: &str) -> Result<bool, LxdError> {
        self.inner.ensure_project(name)
    }
    fn operations(&self, name: &str) -> Result<Vec<String>, LxdError> {
        self.inner.operations(name)
    }
    /// Also this checkout's containers that its records put on another
    /// server than the one the client points at now (`lxc remote switch`):
    /// no request, and said even when the new server cannot be asked.
    fn elsewhere(&self) -> Result<Vec<Away>, LxdError> {
        let here = self.inner.target()?;
        let mut away: Vec<Away> = self
            .pins
            .all()
            .into_iter()
            .filter(|(_, p)| p.server != here.server)
            .map(|(instance, p)| Away {
                instance,
                project: p.project,
                switch: p.switch,
                server: Some((p.what, here.what.clone())),
            })
            .collect();
        match self.inner.elsewhere() {
            Ok(more) => {
                let pinned: Vec<String> = away.iter().map(|a| a.instance.clone()).collect();
                away.extend(more.into_iter().filter(|m| !pinned.contains(&m.instance)));
            }
            Err(_) if !away.is_empty() => {}
            Err(e) => return Err(e),
        }
        Ok(away)
    }
    fn target(&self) -> Result<Target, LxdError> {
        self.inner.target()
    }
    fn remote_server(&self) -> Result<Option<String>, LxdError> {
        self.inner.remote_server()
    }
    fn identity(&self) -> Result<Server, LxdError> {
        self.inner.identity()
    }
    fn add_disk(&self, name: &str, disk: &Disk) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.add_disk(name, disk))
    }
    fn remove_device(&self, name: &str, device: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.remove_device(name, device))
    }
    fn set_config(&self, name: &str, key: &str, value: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.set_config(name, key, value))
    }
    fn restart(&self, name: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        self.changed(name, self.inner.restart(name))
    }
    /// Another checkout's instance is refused; a renamed one gets this
    /// checkout's marks under its new name (one `PATCH`: the project and
    /// container marks change with the name, and an unmarked or moved
    /// instance becomes this folder's, as at any change).
    fn rename(&self, name: &str, new: &str) -> Result<(), LxdError> {
        self.guard(name)?;
        if let Some(Owner::Other(theirs)) = self.known(new) {
            return Err(self.me.refusal(new, &theirs));
        }
        let before = self.known(name);
        self.inner
            .rename(name, new)
            .map_err(|e| self.taken(new, e))?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.pins.forget(name);
        self.remark(new, before)
    }
    fn exec_lines(
        &self,
        name: &str,
        argv: &[&str],
        stdin: &[u8],
        line: &mut dyn FnMut(&str),
        stop: super::Stop,
    ) -> Result<i32, LxdError> {
        self.guard(name)?;
        self.inner.exec_lines(name, argv, stdin, line, stop)
    }
}
