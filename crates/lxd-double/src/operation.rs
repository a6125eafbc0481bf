//! Operations as the API shows them and a test inspects them: their
//! status, resources, metadata, and the instance lock actions of LXD's
//! `operationlock` with its "busy" texts.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

/// The instance lock actions of LXD's `operationlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Creating the instance.
    Create,
    /// Starting it.
    Start,
    /// Stopping it.
    Stop,
    /// Restarting it.
    Restart,
    /// Restoring a snapshot.
    Restore,
    /// Changing its config or devices.
    Update,
    /// Deleting it.
    Delete,
}

impl Action {
    /// LXD's word for it (`Instance is busy running a "create" operation`).
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Restore => "restore",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// The description of an operation doing it.
    pub fn description(self) -> &'static str {
        match self {
            Action::Create => "Creating instance",
            Action::Start => "Starting instance",
            Action::Stop => "Stopping instance",
            Action::Restart => "Restarting instance",
            Action::Restore => "Restoring snapshot",
            Action::Update => "Updating instance",
            Action::Delete => "Deleting instance",
        }
    }

    /// LXD 5.0.2's text when another operation holds the instance.
    pub fn busy_text(self, holder: Action) -> String {
        let busy = format!("Instance is busy running a {:?} operation", holder.word());
        match self {
            Action::Stop => busy,
            Action::Restart => format!("Create restart operation: {busy}"),
            Action::Create => format!("Failed creating instance record: {busy}"),
            a => format!("Failed to create instance {} operation: {busy}", a.word()),
        }
    }

    /// LXD waits for a running operation of the same kind instead of
    /// refusing (`CreateWaitGet`), and takes its success for its own.
    pub(crate) fn waits_for_same(self) -> bool {
        matches!(
            self,
            Action::Start | Action::Stop | Action::Update | Action::Delete
        )
    }
}

/// An operation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    /// Running (103).
    Running,
    /// Success (200).
    Success,
    /// Failure (400).
    Failure,
    /// Cancelled (401).
    Cancelled,
}

impl OpStatus {
    /// LXD's word and code.
    pub fn api(self) -> (&'static str, u16) {
        match self {
            OpStatus::Running => ("Running", 103),
            OpStatus::Success => ("Success", 200),
            OpStatus::Failure => ("Failure", 400),
            OpStatus::Cancelled => ("Cancelled", 401),
        }
    }
}

/// One operation, as a test inspects it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its id.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: &'static str,
    /// `Creating instance`, ...
    pub description: String,
    /// The LXD project it belongs to.
    pub project: String,
    /// Where it stands.
    pub status: OpStatus,
    /// `resources` (kind -> URLs).
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    /// `metadata`.
    pub metadata: Value,
    /// `err` of a failed one.
    pub err: String,
    /// Can it be cancelled?
    pub may_cancel: bool,
    /// The instance lock it holds or wants.
    pub lock: Option<(String, Action)>,
    /// RFC 3339 times.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    pub finished: Option<Instant>,
    pub(crate) cancel: bool,
}

impl Operation {
    /// LXD's JSON for it.
    pub fn render(&self) -> Value {
        let (status, code) = self.status.api();
        json!({
            "id": self.id,
            "class": self.class,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": status,
            "status_code": code,
            "resources": self.resources,
            "metadata": self.metadata,
            "may_cancel": self.may_cancel && self.status == OpStatus::Running,
            "err": self.err,
            "location": "none",
        })
    }

    /// `/1.0/operations/ID`.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }

    /// True while it runs.
    pub fn is_running(&self) -> bool {
        self.status == OpStatus::Running
    }
}
