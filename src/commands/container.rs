//! `ldm container create`, and the intent and outcome steps it shares with
//! `clone` (`clone.rs`): the operations that bring a container into the
//! project. Each records its intent (the name is taken, with an owner),
//! runs its LXD steps with no lock held, and records the outcome; an
//! interrupted one is finished by running it again (DESIGN.md, "Long
//! operations"). What happens inside the container is `setup.rs`.

use std::io::Write;

use crate::cli::ContainerCreate;
use crate::commands::first_boot;
use crate::commands::mounts::Ids;
use crate::commands::op::{self, Progress};
use crate::commands::provision;
use crate::commands::setup::INITIAL_STATE;
use crate::commands::{gate, Ctx};
use crate::lxd::{Lxd, LxdError};
use crate::model::{validate, Container, Mount, Mutation, Op, Pending, Project, Setting, Step};
use crate::store::{Owners, Store};
use crate::trust::Need;
use crate::Error;

/// What the intent commit tells the LXD steps.
pub(super) struct Started {
    pub project: String,
    pub remote: Option<String>,
    pub lxd_name: String,
    pub user: String,
    pub password: String,
    pub resumed: bool,
    /// The intent as committed (a resumed one keeps how far setup ran).
    pub pending: Pending,
    /// Mounts recorded for it already (a resumed or re-created container).
    pub mounts: Vec<Mount>,
    /// What a new container mounts by default.
    pub default_mounts: Vec<Mount>,
    /// Its setup steps.
    pub steps: Vec<Step>,
    /// `ldm up` re-creates a recorded container LXD no longer has.
    pub recreate: bool,
    /// Its LXD settings (`security:`), each on or off.
    pub settings: Vec<(Setting, bool)>,
}

impl Started {
    /// What provisioning `name` of `p` under `pending` needs. A re-created
    /// container (`recreate`) gets its recorded mounts only, never the
    /// defaults for new ones.
    pub(super) fn of(
        p: &Project,
        name: &str,
        pending: Pending,
        resumed: bool,
        recreate: bool,
    ) -> Started {
        let (user, password) = p.effective_user(name);
        let default_mounts = if recreate {
            Vec::new()
        } else {
            p.new_container_mounts(&user)
        };
        Started {
            project: p.project.clone(),
            remote: p.remote.clone(),
            lxd_name: p.lxd_name(name),
            user,
            password,
            resumed,
            pending,
            mounts: p
                .containers
                .get(name)
                .map(|c| c.mounts.clone())
                .unwrap_or_default(),
            default_mounts,
            steps: p.effective_setup(name).to_vec(),
            recreate,
            settings: Setting::ALL
                .iter()
                .map(|s| (*s, p.effective_setting(Some(name), *s)))
                .collect(),
        }
    }
}

/// Whether `pending` may go on with the container `name` already recorded
/// as `c`: only the very same operation (same source for a clone), taken
/// over from an owner that died. `None` is a fresh name.
pub(super) fn resumes(
    owners: &Owners,
    project: &Project,
    name: &str,
    c: Option<&Container>,
    pending: &Pending,
) -> Result<bool, Error> {
    let Some(c) = c else {
        return Ok(false);
    };
    match op::check_free(owners, name, c)? {
        Some(old) if old.op == pending.op => Ok(true),
        Some(old) => Err(op::interrupted(
            name,
            &old,
            &format!(", or `ldm remove {name}`"),
        )),
        None => Err(Error::Conflict {
            what: format!(
                "container {name} already exists in project {}",
                project.project
            ),
            next: "see `ldm list`, or pick another name".into(),
        }),
    }
}

/// Records the intent for `name`, or takes over an interrupted `op` of the
/// same kind. `check` validates the request and builds the intent mutation
/// for a fresh name.
pub(super) fn begin(
    store: &mut Store,
    name: &str,
    pending: &Pending,
    check: impl FnOnce(&Project) -> Result<Mutation, Error>,
) -> Result<Started, Error> {
    let owners = store.owners();
    store.commit(|p| {
        validate::container_name(&p.project, name)?;
        let resumed = resumes(&owners, p, name, p.containers.get(name), pending)?;
        // The command's own checks run on both paths: a resumed create must
        // use the same image, a resumed clone the same source.
        let fresh = check(p)?;
        let recorded = p.containers.get(name);
        let mut pending = pending.clone();
        let mutation = if resumed {
            // Setup steps finished by the interrupted run stay done.
            pending.setup = recorded
                .and_then(|c| c.pending.as_ref())
                .and_then(|o| o.setup.clone());
            Mutation::OperationStarted {
                container: name.to_string(),
                snapshot: None,
                pending: pending.clone(),
            }
        } else {
            fresh
        };
        let started = Started::of(p, name, pending, resumed, false);
        Ok((vec![mutation], started))
    })
}

/// Records the outcome: operation finished, `initial-state` recorded.
pub(super) fn finish(store: &mut Store, name: &str) -> Result<(), Error> {
    store.commit(|p| {
        let mut m = vec![Mutation::OperationFinished {
            container: name.to_string(),
            snapshot: None,
        }];
        let has_initial = p
            .containers
            .get(name)
            .is_some_and(|c| c.snapshots.contains_key(INITIAL_STATE));
        if !has_initial {
            m.push(Mutation::SnapshotAdded {
                container: name.to_string(),
                name: INITIAL_STATE.to_string(),
                description: "Initial state after setup".to_string(),
                created_at: op::now(),
                pending: None,
            });
        }
        Ok::<_, Error>((m, ()))
    })
}

/// Undoes an intent whose LXD step created nothing, so the name is free again.
pub(super) fn forget(
    store: &mut Store,
    lxd: &dyn Lxd,
    lxd_name: &str,
    name: &str,
) -> Result<bool, Error> {
    if lxd
        .instance(lxd_name)
        .map_err(Error::lxd(format!("checking {lxd_name}")))?
        .is_some()
    {
        return Ok(false);
    }
    unrecord(store, name)?;
    Ok(true)
}

/// Hint appended to errors that leave an interrupted operation behind.
pub(super) fn rerun_hint(name: &str, op: &Op) -> String {
    format!(
        "; the project shows it as interrupted: run `{}` again to finish, or `ldm remove {name}`",
        op.command(name)
    )
}

/// Forgets a container whose intent must not stay behind.
fn unrecord(store: &mut Store, name: &str) -> Result<(), Error> {
    op::record(
        store,
        vec![Mutation::ContainerRemoved {
            name: name.to_string(),
        }],
    )
}

/// `ldm container create NAME [IMAGE]`: IMAGE may be left out to finish
/// an interrupted create (it resumes at the setup step that failed).
pub fn create(ctx: &Ctx, args: &ContainerCreate, out: &mut dyn Write) -> Result<(), Error> {
    let name = args.name.as_str();
    let mut store = ctx.store()?;
    let project = store.read()?;
    // A resumed create keeps the mounts recorded for it, --no-mount or not.
    let recorded = project
        .containers
        .get(name)
        .is_some_and(|c| !c.mounts.is_empty());
    let need = Need::create(name, !args.no_mount || recorded);
    let gated = gate::check(ctx, &store, &project, &need)?;
    let image = match &args.image {
        Some(image) => image.clone(),
        None => recorded_image(&project, name)?,
    };
    let image = image.as_str();
    validate::image(image)?;
    let (_owner, pending) = op::claim(&store, Op::Create)?;
    let s = begin(&mut store, name, &pending, |p| {
        gated.recheck(p, &need)?;
        if let Some(c) = p.containers.get(name).filter(|c| c.image != image) {
            return Err(Error::Conflict {
                what: format!(
                    "container {name} was being created from {}",
                    crate::model::quote(&c.image)
                ),
                // The recorded image is the file's, which anyone who writes
                // the folder can forge: the command leaves it out.
                next: format!(
                    "run `ldm container create {name}` to finish with that image, or `ldm remove {name}`"
                ),
            });
        }
        Ok(Mutation::ContainerAdded {
            name: name.to_string(),
            image: image.to_string(),
            pending: Some(pending.clone()),
        })
    })?;
    let plan = provision::Plan {
        name,
        image,
        mounts: if args.no_mount {
            provision::Mounts::None
        } else {
            provision::Mounts::Default
        },
        force: args.force,
        forced: &gated.forced,
        timeout: args.timeout,
        quiet: ctx.quiet,
    };
    provision::run(ctx, &mut store, s, &plan, out)
}

/// The image of a container whose create was interrupted, for a re-run
/// that leaves IMAGE out.
fn recorded_image(p: &Project, name: &str) -> Result<String, Error> {
    match p.containers.get(name) {
        Some(c) if c.pending.as_ref().is_some_and(|o| o.op == Op::Create) => Ok(c.image.clone()),
        Some(_) => Err(Error::Conflict {
            what: format!("container {name} already exists in project {}", p.project),
            next: format!("run its setup steps again with `ldm container setup {name}`, or pick another name"),
        }),
        None => Err(Error::Usage(format!(
            "give the image to create {name} from, e.g. `ldm container create {name} ubuntu:24.04` (see `ldm images`)"
        ))),
    }
}

/// The launch step: a resumed run finds the instance launched already and
/// starts it; a failed launch that made nothing frees the name again. With
/// `one_boot`, the instance is created stopped with `raw.idmap` and started
/// once the container user's ids are chosen; returns those ids.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch(
    store: &mut Store,
    lxd: &dyn Lxd,
    s: &Started,
    name: &str,
    image: &str,
    config: &[(&str, &str)],
    progress: &Progress,
    one_boot: Option<&first_boot::OneBoot>,
) -> Result<Option<Ids>, Error> {
    let lxd_name = s.lxd_name.as_str();
    let hint = rerun_hint(name, &Op::Create);
    let start = |known| match one_boot {
        Some(ob) => first_boot::start(lxd, lxd_name, ob, &s.user, known, progress, &hint),
        None => match lxd.start(lxd_name) {
            Ok(()) | Err(LxdError::AlreadyInState { .. }) => Ok(None),
            Err(e) => Err(Error::lxd(format!("starting {lxd_name}{hint}"))(e)),
        },
    };
    let resume = || {
        progress.note("already launched by the interrupted run; continuing");
        start(first_boot::Known::Ask)
    };
    // A re-create (`ldm up`) asked already, when it planned.
    if s.resumed && !s.recreate {
        let here = lxd
            .instance(lxd_name)
            .map_err(Error::lxd(format!("reading the state of {lxd_name}")))?
            .is_some();
        if here {
            return resume();
        }
        // LXD's current project lacks it: another may have it (`lxc
        // project switch`), and launching would make a second.
        op::not_away(lxd, lxd_name, false)?;
    }
    let made = match one_boot {
        Some(ob) => {
            first_boot::create(lxd, image, lxd_name, config, ob.host, &s.user).map(|()| true)
        }
        None => lxd.launch(image, lxd_name, config).map(|()| false),
    };
    match made {
        Ok(true) => start(first_boot::Known::Created),
        Ok(false) => Ok(None),
        Err(LxdError::AlreadyExists { .. }) if s.resumed => resume(),
        Err(LxdError::AlreadyExists { .. }) => {
            // Someone else's instance: the name must not stay taken.
            unrecord(store, name)?;
            Err(Error::Conflict {
                what: format!(
                    "LXD already has an instance {lxd_name} that this project does not record"
                ),
                next: format!(
                    "pick another name; or, if it is yours, manage it with ldm by naming it in containers.yaml (`{name}:` under `containers:`, with its `image:`): ldm adopts an unmarked instance the file names exactly"
                ),
            })
        }
        // Another checkout's (its owner marks say so): never this one's.
        Err(e @ LxdError::NotOurs { .. }) if !s.resumed => {
            unrecord(store, name)?;
            Err(Error::lxd(format!("launching {lxd_name}"))(e))
        }
        Err(e) => {
            let doing = format!("launching {lxd_name} from {image}");
            if s.recreate {
                // The project's record stays: it is what `up` re-creates from.
                return Err(Error::lxd(doing)(e));
            }
            if forget(store, lxd, lxd_name, name)? {
                return Err(Error::lxd(doing)(e));
            }
            Err(Error::lxd(format!("{doing}{hint}"))(e))
        }
    }
}
