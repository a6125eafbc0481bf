//! What a command would apply of what a project asks for ([`Need`]), and
//! so which waiting items stop it (DESIGN.md, "What ldm trusts", the
//! per-command table).

use super::{Found, Item, Use};

/// What a command would apply, and so what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// It calls LXD: the remote must be allowed.
    pub remote: bool,
    /// Whose mounts, steps and settings it applies.
    pub who: Who,
    /// It adds mounts to LXD.
    pub mounts: bool,
    /// It runs setup steps.
    pub steps: bool,
    /// It launches containers with their settings.
    pub settings: bool,
}

/// Whose items a command applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Nobody's.
    Nobody,
    /// Every recorded container's.
    All,
    /// These containers'.
    These(Vec<String>),
    /// A new container's (its own, recorded by an interrupted create, and
    /// the defaults').
    New(String),
}

impl Need {
    /// Reads only: waits for nothing.
    pub fn nothing() -> Need {
        Need {
            remote: false,
            who: Who::Nobody,
            mounts: false,
            steps: false,
            settings: false,
        }
    }

    /// Calls LXD but applies nothing of the file: the remote only.
    pub fn lxd() -> Need {
        Need {
            remote: true,
            ..Need::nothing()
        }
    }

    /// `container create NAME`: a new container's mounts (unless it gets
    /// none), steps and settings.
    pub fn create(name: &str, mounts: bool) -> Need {
        Need {
            remote: true,
            who: Who::New(name.to_string()),
            mounts,
            steps: true,
            settings: true,
        }
    }

    /// `ldm up`: whatever a re-create of these containers (`None`: all of
    /// them) would apply; which ones LXD lacks is known only after asking it.
    pub fn up(names: Option<Vec<String>>) -> Need {
        Need {
            remote: true,
            who: names.map_or(Who::All, Who::These),
            mounts: true,
            steps: true,
            settings: true,
        }
    }

    /// `ldm container setup NAME`: its steps.
    pub fn setup(name: &str) -> Need {
        Need {
            remote: true,
            who: Who::These(vec![name.to_string()]),
            steps: true,
            ..Need::nothing()
        }
    }

    /// `ldm doctor --fix`: every recorded mount LXD lacks is added.
    pub fn fix() -> Need {
        Need {
            remote: true,
            who: Who::All,
            mounts: true,
            ..Need::nothing()
        }
    }

    /// True if `f` is something this command would apply.
    pub fn concerns(&self, f: &Found) -> bool {
        let whose = |u: &Use| match (&self.who, u) {
            (Who::Nobody, _) => false,
            (Who::All, u) => matches!(u, Use::Container(_)),
            (Who::These(names), Use::Container(c)) => names.contains(c),
            (Who::These(_), Use::New) => false,
            (Who::New(_), Use::New) => true,
            (Who::New(name), Use::Container(c)) => c == name,
        };
        match &f.item {
            // Where the containers live, as the remote says which server.
            Item::Remote { .. } | Item::LxdProject { .. } => self.remote,
            Item::Mount { .. } => self.mounts && f.uses.iter().any(whose),
            Item::Step { .. } | Item::Script { .. } => self.steps && f.uses.iter().any(whose),
            Item::Setting { .. } => self.settings && f.uses.iter().any(whose),
        }
    }
}
