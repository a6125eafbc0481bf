//! Making instances: from an image (a local alias, or `REMOTE:ALIAS` of an
//! image server the client knows; the download and unpack shown as
//! progress) and as a copy of an instance or snapshot. "Already exists" is
//! the instance there with a `created_at` older than the operation that
//! failed to make it; a 404 is the image (or the source), unless the LXD
//! project is what the server lacks.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::progress::Progress;
use super::request::{encode, status};
use super::types::{InstancesPost, Operation, Source};
use super::{Api, ShowProgress};
use crate::LxdError;

impl Api {
    /// Creates `name` from `image`, stopped, with its download and unpack
    /// progress shown; a launch starts it after (a second operation: LXD
    /// 5.0 cannot start at creation).
    pub(super) fn create_from(
        &self,
        image: &str,
        name: &str,
        config: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        let source = self.image_source(image)?;
        let body = serde_json::to_value(InstancesPost {
            name,
            kind: "container",
            source,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            profiles: self.profile.clone().map(|p| vec![p]),
        })
        .map_err(|e| self.protocol("POST /1.0/instances", e))?;
        let failed = RefCell::new(None);
        let made = self.patiently(name, || {
            let mut shown = self.progress_for_launch();
            self.create(
                &self.scoped("/1.0/instances"),
                &body,
                shown.as_mut(),
                &failed,
            )
        });
        match made {
            Ok(_) => self.note_running(name, Some(false)),
            Err(e) if status(&e) == Some(404) => return Err(self.missing_image(image)),
            Err(e) => return Err(self.existed_before(name, failed.take().as_ref(), e)?),
        }
        Ok(())
    }

    fn progress_for_launch(&self) -> Option<Progress> {
        match self.progress {
            ShowProgress::Off => None,
            ShowProgress::Terminal => Some(Progress::new(true)),
            ShowProgress::Lines => Some(Progress::new(false)),
        }
    }

    /// A create that failed: [`LxdError::AlreadyExists`] when the instance
    /// is there and older than the operation (someone else's, or an earlier
    /// run's), else the failure `e`.
    pub(super) fn existed_before(
        &self,
        name: &str,
        op: Option<&Operation>,
        e: LxdError,
    ) -> Result<LxdError, LxdError> {
        let Some(op) = op else {
            return Ok(e);
        };
        Ok(match self.object(name)? {
            Some(o) if super::time::before(&o.created_at, &op.created_at) => {
                LxdError::AlreadyExists {
                    what: format!("instance {name}"),
                }
            }
            _ => e,
        })
    }

    /// A 404 of a create from an image: the image, unless the project is
    /// what the server lacks.
    fn missing_image(&self, image: &str) -> LxdError {
        let project = format!("/1.0/projects/{}", encode(&self.project));
        match self.get::<serde_json::Value>(&project) {
            Err(e) if status(&e) == Some(404) => LxdError::NotFound {
                what: if self.pinned {
                    format!(
                        "project {} (the project file's lxd_project:; `ldm create --lxd-project {}` in a new folder makes it, or an admin with `lxc project create`)",
                        self.project, self.project
                    )
                } else {
                    format!(
                        "project {} (the client's current LXD project)",
                        self.project
                    )
                },
            },
            _ => LxdError::NotFound {
                what: format!("image {image}"),
            },
        }
    }

    /// The image source of `image`: a local alias, or `REMOTE:ALIAS` of an
    /// image server (or another LXD) the client knows.
    fn image_source(&self, image: &str) -> Result<Source, LxdError> {
        let local = |alias: &str| Source {
            kind: "image".into(),
            alias: Some(alias.to_string()),
            ..Source::default()
        };
        let Some((remote, alias)) = image.split_once(':') else {
            return Ok(local(image));
        };
        let Some(r) = self.config.remotes.get(remote) else {
            return Err(LxdError::NotFound {
                what: format!(
                    "image server {remote} (no remote of that name; see `{} remote list`)",
                    self.family.program()
                ),
            });
        };
        // The server ldm talks to, by its name or as the local socket.
        if remote == self.remote || (r.addr.starts_with("unix:") && !self.far) {
            return Ok(local(alias));
        }
        let certificate = self
            .config
            .server_cert(remote)
            .and_then(|p| std::fs::read_to_string(p).ok());
        Ok(Source {
            kind: "image".into(),
            alias: Some(alias.to_string()),
            server: Some(r.addr.clone()),
            protocol: Some(if r.protocol.is_empty() {
                "lxd".into()
            } else {
                r.protocol.clone()
            }),
            certificate,
            mode: Some("pull".into()),
            ..Source::default()
        })
    }

    /// Copies `source` (or its snapshot `snap`) to a new stopped instance
    /// `target`, without the source's snapshots.
    pub(super) fn copy_instance(
        &self,
        source: &str,
        snap: Option<&str>,
        target: &str,
        marks: &[(&str, &str)],
    ) -> Result<(), LxdError> {
        let from = match snap {
            Some(s) => format!("{source}/{s}"),
            None => source.to_string(),
        };
        // LXD 5.0 takes the new instance's profiles, config and devices
        // from the request, as `lxc copy` sends them: the source's, without
        // its volatile keys but the base image.
        let src_path = match snap {
            Some(s) => format!("{}/snapshots/{}", self.instance_path(source), encode(s)),
            None => self.instance_path(source),
        };
        let src: serde_json::Value = self
            .patiently(source, || self.get(&self.scoped(&src_path)))
            .map_err(|e| match status(&e) {
                Some(404) => LxdError::NotFound { what: from.clone() },
                _ => e,
            })?;
        let mut config = src["config"].as_object().cloned().unwrap_or_default();
        config.retain(|k, _| !k.starts_with("volatile.") || k == "volatile.base_image");
        // The copy is the target's own: the source's owner marks are not.
        config.retain(|k, _| !k.starts_with(crate::owner::PREFIX));
        for (k, v) in marks {
            config.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
        let mut body = serde_json::to_value(InstancesPost {
            name: target,
            kind: "container",
            source: Source {
                kind: "copy".into(),
                source: Some(from.clone()),
                // A snapshot has no snapshots to leave behind.
                instance_only: snap.is_none().then_some(true),
                ..Source::default()
            },
            config: BTreeMap::new(),
            profiles: None,
        })
        .map_err(|e| self.protocol("POST /1.0/instances", e))?;
        body["config"] = serde_json::Value::Object(config);
        for key in ["architecture", "profiles", "devices", "ephemeral"] {
            if !src[key].is_null() {
                body[key] = src[key].clone();
            }
        }
        let failed = RefCell::new(None);
        let made = self.patiently(source, || {
            self.create(&self.scoped("/1.0/instances"), &body, None, &failed)
        });
        match made {
            Ok(_) => {
                self.note_running(target, Some(false));
                Ok(())
            }
            Err(e) if status(&e) == Some(404) => Err(LxdError::NotFound { what: from }),
            Err(e) => Err(self.existed_before(target, failed.take().as_ref(), e)?),
        }
    }
}
