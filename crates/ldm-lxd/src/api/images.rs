//! Images of the project's server: list, publish a snapshot (with its
//! progress), delete by alias, rename an alias. An alias that exists is
//! found by asking for it (`GET /1.0/images/aliases/A`: 200 or 404) and a
//! rename onto one is a 409: LXD's words decide nothing.

use serde_json::json;

use super::progress::Progress;
use super::request::{encode, status, Body};
use super::types::{AliasObj, ImageObj};
use super::{Api, ShowProgress};
use crate::{Image, LxdError};

impl Api {
    fn alias_path(&self, alias: &str) -> String {
        self.scoped(&format!("/1.0/images/aliases/{}", encode(alias)))
    }

    /// The alias, `None` if the server has none of that name.
    fn alias(&self, alias: &str) -> Result<Option<AliasObj>, LxdError> {
        match self.get(&self.alias_path(alias)) {
            Ok(a) => Ok(Some(a)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every image.
    pub(super) fn image_list(&self) -> Result<Vec<Image>, LxdError> {
        let list: Vec<ImageObj> = self.get(&self.scoped("/1.0/images?recursion=1"))?;
        Ok(list
            .into_iter()
            .map(|i| Image {
                aliases: i
                    .aliases
                    .into_iter()
                    .map(|a| a.name)
                    .filter(|n| !n.is_empty())
                    .collect(),
                description: i.properties.get("description").cloned().unwrap_or_default(),
                fingerprint: i.fingerprint,
                size: i.size,
            })
            .collect())
    }

    /// Publishes snapshot `snap` of `name` as an image with `alias`, the
    /// packing's progress shown as the client was built to show progress
    /// (terminal, `--progress`, `-q`).
    pub(super) fn publish_snapshot(
        &self,
        name: &str,
        snap: &str,
        alias: &str,
    ) -> Result<(), LxdError> {
        let taken = || LxdError::AlreadyExists {
            what: format!("image alias {alias}"),
        };
        // LXD makes the image and only then refuses the alias, leaving an
        // image without one: ask first.
        if self.alias(alias)?.is_some() {
            return Err(taken());
        }
        let body = json!({
            "source": {"type": "snapshot", "name": format!("{name}/{snap}")},
            "aliases": [{"name": alias}],
        });
        let path = self.scoped("/1.0/images");
        let r = self.patiently(name, || {
            let s = self.start("POST", &path, Body::Json(&body), None)?;
            let mut shown = match self.progress {
                ShowProgress::Off => None,
                ShowProgress::Terminal => Some(Progress::new(true)),
                ShowProgress::Lines => Some(Progress::new(false)),
            };
            self.finish(s, shown.as_mut())
        });
        match r {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(LxdError::NotFound {
                what: format!("snapshot {name}/{snap}"),
            }),
            // Someone else took the alias meanwhile.
            Err(e) => match self.alias(alias)? {
                Some(_) => Err(taken()),
                None => Err(e),
            },
        }
    }

    /// Deletes the image `alias` points to.
    pub(super) fn delete_image_alias(&self, alias: &str) -> Result<(), LxdError> {
        let missing = || LxdError::NotFound {
            what: format!("image {alias}"),
        };
        let Some(a) = self.alias(alias)? else {
            return Err(missing());
        };
        let path = self.scoped(&format!("/1.0/images/{}", encode(&a.target)));
        self.run_op("DELETE", &path, Body::Empty)
            .map(drop)
            .map_err(|e| match status(&e) {
                Some(404) => missing(),
                _ => e,
            })
    }

    /// Renames alias `old` to `new` in one request.
    pub(super) fn rename_image_alias(&self, old: &str, new: &str) -> Result<(), LxdError> {
        let body = json!({"name": new});
        self.sync("POST", &self.alias_path(old), Body::Json(&body), None)
            .map(drop)
            .map_err(|e| match status(&e) {
                Some(404) => LxdError::NotFound {
                    what: format!("image alias {old}"),
                },
                Some(409) => LxdError::AlreadyExists {
                    what: format!("image alias {new}"),
                },
                _ => e,
            })
    }
}
