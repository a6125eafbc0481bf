//! `FaultFs`: an in-memory [`ldm::store::Fs`] that models what survives a
//! power loss, and injects crashes, full disks and I/O errors.
//!
//! Durability model (what POSIX promises and ext4/xfs deliver, no more):
//! - Each file (inode) has *live* bytes (what reads see) and *durable* bytes
//!   (what a power loss keeps). `write_new`, `append` and `set_len` change
//!   the live bytes only; `sync` (fdatasync) copies live to durable.
//! - Each folder has a *live* name→inode map and a *durable* one. Creations
//!   (`write_new` of a new name), renames and removals change the live map
//!   and are queued; `sync_dir` makes the queue durable. A file's `sync` does
//!   not make its name durable.
//! - [`FaultFs::power_loss`] builds the machine after the power comes back:
//!   each folder is its durable map plus a random prefix of the queued name
//!   operations (the metadata journal commits in order), or none of them;
//!   each reachable file is its durable bytes, plus, at the chosen
//!   [`Torn`] level, any prefix of the unsynced bytes appended after them,
//!   optionally ending in garbage.
//!
//! Every mutating call (`write_new`, `append`, `sync`, `set_len`, `rename`,
//! `sync_dir`, `remove`) is an *op* with a number; [`FaultFs::arm_crash`]
//! makes op N fail without effect and freezes the file system (every later
//! call fails too): the process died as it issued op N. Syncs, folder syncs
//! and renames are also counted as *sync points*.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ldm::store::fs::{FileId, Fs};

/// Where a FaultFs test keeps the derived files of the project in `dir`:
/// two folders beside it, in the same in-memory file system.
pub fn derived_of(dir: &Path) -> ldm::store::Derived {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    ldm::store::Derived {
        state: parent.join(format!("{name}.state")),
        cache: parent.join(format!("{name}.cache")),
    }
}

/// The project files of `dir` with derived files in [`derived_of`].
pub fn paths_of(dir: &Path) -> ldm::store::Paths {
    ldm::store::Paths::with_derived(dir, derived_of(dir))
}

/// SplitMix64: small, deterministic, good enough to pick schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a power loss keeps of a file's unsynced bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// Nothing: only fdatasynced bytes survive.
    Drop,
    /// A random prefix of the unsynced appended bytes (a write torn at any byte).
    Prefix,
    /// A random prefix whose end is garbage (the size reached the disk
    /// before the data did): random bytes or zeros.
    Garbage,
    /// Everything: the kernel happened to write it all back in time.
    KeepAll,
}

/// How a power loss treats unsynced data and unsynced folder changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Fate of unsynced file bytes.
    pub data: Torn,
    /// True: every create/rename/remove not followed by `sync_dir` is lost.
    /// False: a random prefix of them survives (ordered metadata journal).
    pub lose_unsynced_names: bool,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Loss {
    /// The strictest loss: only what was synced survives.
    pub fn strict() -> Loss {
        Loss {
            data: Torn::Drop,
            lose_unsynced_names: true,
            seed: 0,
        }
    }

    /// All eight combinations of [`Torn`] and name loss, for sweeps.
    pub fn variant(i: u64, seed: u64) -> Loss {
        const DATA: [Torn; 4] = [Torn::Drop, Torn::Prefix, Torn::Garbage, Torn::KeepAll];
        Loss {
            data: DATA[(i % 4) as usize],
            lose_unsynced_names: (i / 4).is_multiple_of(2),
            seed,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    mtime: u64,
}

#[derive(Debug, Clone)]
enum NameOp {
    Link(OsString, u64),
    Unlink(OsString),
    Rename(OsString, OsString),
    Exchange(OsString, OsString),
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
    queued: Vec<NameOp>,
}

impl NameOp {
    fn apply(&self, map: &mut BTreeMap<OsString, u64>) {
        match self {
            NameOp::Link(name, ino) => {
                map.insert(name.clone(), *ino);
            }
            NameOp::Unlink(name) => {
                map.remove(name);
            }
            NameOp::Rename(from, to) => {
                if let Some(ino) = map.remove(from) {
                    map.insert(to.clone(), ino);
                }
            }
            NameOp::Exchange(a, b) => {
                let (x, y) = (map.remove(a), map.remove(b));
                if let Some(y) = y {
                    map.insert(a.clone(), y);
                }
                if let Some(x) = x {
                    map.insert(b.clone(), x);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_ino: u64,
    clock: u64,
    /// Which boot this is: a power loss starts the next one.
    boot: u8,
    ops: u64,
    sync_points: u64,
    crash_at: Option<u64>,
    crashed: bool,
    /// Bytes that may still be written before ENOSPC.
    space_left: Option<u64>,
    /// (syncs that still succeed, then syncs that fail with EIO), for files.
    failing_syncs: (u32, u32),
    /// The same for folder syncs.
    failing_dir_syncs: (u32, u32),
    trace: Vec<String>,
}

/// What another program does at a chosen moment (see
/// [`FaultFs::before_next_exchange`]).
pub type Hook = Box<dyn FnOnce(&FaultFs) + Send>;

/// The fault-injecting file system. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct FaultFs {
    st: Mutex<State>,
    hook: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFs").finish_non_exhaustive()
    }
}

fn crash_error() -> io::Error {
    io::Error::other("FaultFs: simulated crash (the process is dead)")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("FaultFs: {} not found", path.display()),
    )
}

fn split(path: &Path) -> (PathBuf, OsString) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(OsString::from).unwrap_or_default();
    (dir, name)
}

impl State {
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        if self.crashed {
            return Err(crash_error());
        }
        let (dir, name) = split(path);
        self.dirs
            .get(&dir)
            .and_then(|d| d.live.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    /// Counts a mutating op; fails (and freezes) at the armed one.
    fn op(&mut self, what: &str, path: &Path, sync_point: bool) -> io::Result<()> {
        if self.crashed {
            return Err(crash_error());
        }
        let n = self.ops;
        if self.crash_at == Some(n) {
            self.crashed = true;
            self.trace
                .push(format!("#{n} CRASH at {what} {}", path.display()));
            return Err(crash_error());
        }
        self.ops += 1;
        if sync_point {
            self.sync_points += 1;
        }
        self.clock += 1;
        self.trace.push(format!("#{n} {what} {}", path.display()));
        Ok(())
    }

    /// Appends to `ino`'s live bytes, honouring the space budget.
    fn write(&mut self, ino: u64, bytes: &[u8]) -> io::Result<()> {
        let (n, full) = match self.space_left {
            Some(left) if (bytes.len() as u64) > left => (left as usize, true),
            _ => (bytes.len(), false),
        };
        if let Some(left) = &mut self.space_left {
            *left -= n as u64;
        }
        let clock = self.clock;
        let inode = self.inodes.get_mut(&ino).expect("linked inode exists");
        inode.live.extend_from_slice(&bytes[..n]);
        inode.mtime = clock;
        if full {
            self.trace.push(format!("  ENOSPC after {n} bytes"));
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }
}

impl FaultFs {
    /// An empty file system with the folder `dir` (durable).
    pub fn new(dir: &Path) -> FaultFs {
        let fs = FaultFs::default();
        fs.st
            .lock()
            .unwrap()
            .dirs
            .insert(dir.to_path_buf(), Dir::default());
        fs
    }

    /// An empty file system with the project folder `dir` and the folders
    /// of its derived files ([`derived_of`]), all durable.
    pub fn with_derived(dir: &Path) -> FaultFs {
        let fs = FaultFs::new(dir);
        let d = derived_of(dir);
        for folder in [d.state, d.cache] {
            fs.st.lock().unwrap().dirs.insert(folder, Dir::default());
        }
        fs
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `hook` just before the next `exchange` (a fold's swap of
    /// `containers.yaml`): another program's save landing between ldm's load
    /// and its fold. Returns the hook not run yet, if any, when `None` is given.
    pub fn before_next_exchange(&self, hook: Option<Hook>) -> Option<Hook> {
        std::mem::replace(&mut *self.hook.lock().unwrap(), hook)
    }

    /// Makes op number `n` (counting from 0 since this file system was
    /// built) crash; `None` disarms.
    pub fn arm_crash(&self, n: Option<u64>) {
        self.state().crash_at = n;
    }

    /// Mutating ops performed so far (the number the next one gets).
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Syncs, folder syncs and renames performed so far.
    pub fn sync_points(&self) -> u64 {
        self.state().sync_points
    }

    /// True once the armed crash has fired.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// After `bytes` more bytes of writes, writes stop part way with ENOSPC.
    pub fn fail_space_after(&self, bytes: u64) {
        self.state().space_left = Some(bytes);
    }

    /// The next `n` file syncs fail with EIO (and make nothing durable).
    pub fn fail_syncs(&self, n: u32) {
        self.fail_syncs_after(0, n);
    }

    /// After `ok` more successful file syncs, `n` fail with EIO.
    pub fn fail_syncs_after(&self, ok: u32, n: u32) {
        self.state().failing_syncs = (ok, n);
    }

    /// After `ok` more successful folder syncs, `n` fail with EIO.
    pub fn fail_dir_syncs_after(&self, ok: u32, n: u32) {
        self.state().failing_dir_syncs = (ok, n);
    }

    /// Removes every injected error (not a crash: the dead stay dead).
    pub fn clear_faults(&self) {
        let mut st = self.state();
        st.space_left = None;
        st.failing_syncs = (0, 0);
        st.failing_dir_syncs = (0, 0);
    }

    /// What a reader sees in `path` now, ignoring crashes.
    pub fn live_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        let (dir, name) = split(path);
        let ino = st.dirs.get(&dir)?.live.get(&name)?;
        Some(st.inodes[ino].live.clone())
    }

    /// What a strict power loss would leave in `path`.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        let (dir, name) = split(path);
        let ino = st.dirs.get(&dir)?.durable.get(&name)?;
        Some(st.inodes[ino].durable.clone())
    }

    /// Names in `dir` now, ignoring crashes.
    pub fn live_names(&self, dir: &Path) -> Vec<String> {
        let st = self.state();
        st.dirs
            .get(dir)
            .map(|d| {
                d.live
                    .keys()
                    .map(|k| k.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last `n` ops, for failure messages.
    pub fn trace_tail(&self, n: usize) -> String {
        let st = self.state();
        let from = st.trace.len().saturating_sub(n);
        st.trace[from..].join("\n")
    }

    /// The machine after the power comes back: only what `loss` keeps.
    /// Injected errors and the crash are not carried over.
    pub fn power_loss(&self, loss: Loss) -> FaultFs {
        let st = self.state();
        let mut rng = Rng::new(loss.seed);
        let mut out = State {
            next_ino: st.next_ino,
            clock: st.clock,
            boot: st.boot.wrapping_add(1),
            ..State::default()
        };
        for (path, dir) in &st.dirs {
            let mut names = dir.durable.clone();
            if !loss.lose_unsynced_names {
                let keep = rng.below(dir.queued.len() as u64 + 1) as usize;
                for op in &dir.queued[..keep] {
                    op.apply(&mut names);
                }
            }
            for ino in names.values() {
                if out.inodes.contains_key(ino) {
                    continue;
                }
                let old = &st.inodes[ino];
                let bytes = survivor(old, loss.data, &mut rng);
                out.inodes.insert(
                    *ino,
                    Inode {
                        live: bytes.clone(),
                        durable: bytes,
                        mtime: 0,
                    },
                );
            }
            out.dirs.insert(
                path.clone(),
                Dir {
                    live: names.clone(),
                    durable: names,
                    queued: Vec::new(),
                },
            );
        }
        FaultFs {
            st: Mutex::new(out),
            hook: Mutex::new(None),
        }
    }
}

/// Whether this sync fails, counting down `(ok, failing)`.
fn eio(plan: &mut (u32, u32)) -> bool {
    match plan {
        (0, 0) => false,
        (0, n) => {
            *n -= 1;
            true
        }
        (ok, _) => {
            *ok -= 1;
            false
        }
    }
}

/// The bytes of one file after a power loss.
fn survivor(inode: &Inode, data: Torn, rng: &mut Rng) -> Vec<u8> {
    let (durable, live) = (&inode.durable, &inode.live);
    if data == Torn::Drop || durable == live {
        return durable.clone();
    }
    if data == Torn::KeepAll {
        return live.clone();
    }
    if !live.starts_with(durable) {
        // Truncated or rewritten since the last sync: either version.
        return if rng.chance(50) {
            durable.clone()
        } else {
            live.clone()
        };
    }
    let extra = live.len() - durable.len();
    let keep = durable.len() + rng.below(extra as u64 + 1) as usize;
    let mut bytes = live[..keep].to_vec();
    if data == Torn::Garbage && keep > durable.len() {
        let from = rng.range(durable.len() as u64, keep as u64 - 1) as usize;
        let zeros = rng.chance(50);
        for b in &mut bytes[from..] {
            *b = if zeros { 0 } else { rng.next_u64() as u8 };
        }
    }
    bytes
}

impl Fs for FaultFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state();
        let ino = st.lookup(path)?;
        Ok(st.inodes[&ino].live.clone())
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let st = self.state();
        let ino = st.lookup(path)?;
        let live = &st.inodes[&ino].live;
        let from = (offset as usize).min(live.len());
        Ok(live[from..].to_vec())
    }

    fn stat(&self, path: &Path) -> io::Result<FileId> {
        let st = self.state();
        let ino = st.lookup(path)?;
        let inode = &st.inodes[&ino];
        // One second per op, and a sub-second part so that times read as
        // fine-grained: a file written at op k is not racy from op k + 1 on.
        let t = i128::from(inode.mtime) * 1_000_000_000 + 1;
        Ok(FileId {
            dev_ino: (1, ino),
            len: inode.live.len() as u64,
            mtime_ns: t,
            ctime_ns: t,
        })
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state();
        st.op("write_new", path, false)?;
        let (dir, name) = split(path);
        let existing = st.dir_mut(&dir)?.live.get(&name).copied();
        let ino = match existing {
            Some(ino) => {
                st.inodes.get_mut(&ino).expect("linked").live.clear();
                ino
            }
            None => {
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(ino, Inode::default());
                let d = st.dir_mut(&dir)?;
                d.live.insert(name.clone(), ino);
                d.queued.push(NameOp::Link(name, ino));
                ino
            }
        };
        st.write(ino, bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state();
        let ino = st.lookup(path)?;
        st.op("append", path, false)?;
        st.write(ino, bytes)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        let ino = st.lookup(path)?;
        st.op("sync", path, true)?;
        if eio(&mut st.failing_syncs) {
            st.trace.push("  EIO".to_string());
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let inode = st.inodes.get_mut(&ino).expect("linked");
        inode.durable = inode.live.clone();
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.state();
        let ino = st.lookup(path)?;
        st.op("set_len", path, false)?;
        let clock = st.clock;
        let inode = st.inodes.get_mut(&ino).expect("linked");
        inode.live.resize(len as usize, 0);
        inode.mtime = clock;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.lookup(from)?;
        let (dir, from_name) = split(from);
        let (to_dir, to_name) = split(to);
        if dir != to_dir {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        st.op("rename", from, true)?;
        let d = st.dir_mut(&dir)?;
        let ino = d.live.remove(&from_name).expect("looked up");
        d.live.insert(to_name.clone(), ino);
        d.queued.push(NameOp::Rename(from_name, to_name));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        if st.crashed {
            return Err(crash_error());
        }
        st.dir_mut(dir)?;
        st.op("sync_dir", dir, true)?;
        if eio(&mut st.failing_dir_syncs) {
            st.trace.push("  EIO".to_string());
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let d = st.dir_mut(dir)?;
        d.durable = d.live.clone();
        d.queued.clear();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.lookup(path)?;
        st.op("remove", path, false)?;
        let (dir, name) = split(path);
        let d = st.dir_mut(&dir)?;
        d.live.remove(&name);
        d.queued.push(NameOp::Unlink(name));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let st = self.state();
        if st.crashed {
            return Err(crash_error());
        }
        st.dirs
            .get(dir)
            .map(|d| d.live.keys().cloned().collect())
            .ok_or_else(|| not_found(dir))
    }

    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(self);
        }
        let mut st = self.state();
        st.lookup(a)?;
        st.lookup(b)?;
        let (dir, a_name) = split(a);
        let (b_dir, b_name) = split(b);
        if dir != b_dir {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        st.op("exchange", a, true)?;
        let d = st.dir_mut(&dir)?;
        let x = d.live.remove(&a_name).expect("looked up");
        let y = d.live.remove(&b_name).expect("looked up");
        d.live.insert(a_name.clone(), y);
        d.live.insert(b_name.clone(), x);
        d.queued.push(NameOp::Exchange(a_name, b_name));
        Ok(())
    }

    fn now_ns(&self) -> i128 {
        i128::from(self.state().clock) * 1_000_000_000 + 1
    }

    fn boot_id(&self) -> [u8; 16] {
        [self.state().boot.wrapping_add(1); 16]
    }
}
