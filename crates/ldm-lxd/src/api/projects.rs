//! LXD projects: making the one a project's containers live in
//! (`ldm create --lxd-project`), if it is missing.

use serde_json::json;

use super::request::{encode, status, Body};
use super::Api;
use crate::LxdError;

impl Api {
    /// Makes LXD project `name` unless the server has it; true when made.
    /// A new one shares the `default` project's images and profiles
    /// (`features.images` and `features.profiles` off: the images ldm
    /// launches and the profiles it names are found there, as LXD 5.0 and
    /// Incus 6.0 both allow); its instances and their volumes are its own.
    pub(super) fn ensure_lxd_project(&self, name: &str) -> Result<bool, LxdError> {
        let path = format!("/1.0/projects/{}", encode(name));
        match self.get::<serde_json::Value>(&path) {
            Ok(_) => return Ok(false),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
        let body = json!({
            "name": name,
            "description": "made by ldm create --lxd-project",
            "config": {
                "features.images": "false",
                "features.profiles": "false",
            },
        });
        match self.sync("POST", "/1.0/projects", Body::Json(&body), None) {
            Ok(_) => Ok(true),
            // Made meanwhile by another ldm: there it is.
            Err(e) if status(&e) == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
