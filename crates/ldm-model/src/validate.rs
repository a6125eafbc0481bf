//! Validation of everything a user types: names, ports, users.
//!
//! The rules are the Go tool's (see `shared/reference/lxc-dev-manager.md`) so
//! that a project valid there is valid here. Every error says what is wrong
//! and what is allowed.

// Over 400 lines with its tests: one small function per thing a user types,
// all the Go tool's rules in one place.

use thiserror::Error;

/// Names the Go tool reserves because they read like subcommands.
const RESERVED: &[&str] = &[
    "list", "create", "delete", "start", "stop", "snapshot", "image", "config",
];

/// LXD limits instance names to 63 characters (a DNS label).
pub const MAX_LXD_NAME: usize = 63;

/// A value the user gave that ldm cannot accept.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// Bad project name.
    #[error("invalid project name {name:?}: {why}")]
    ProjectName {
        /// The name given.
        name: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad container name.
    #[error("invalid container name {name:?}: {why}")]
    ContainerName {
        /// The name given.
        name: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad snapshot name.
    #[error("invalid snapshot name {name:?}: {why}")]
    SnapshotName {
        /// The name given.
        name: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad port or port list.
    #[error("invalid ports {given:?}: {why}")]
    Ports {
        /// The text or list given.
        given: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad user name.
    #[error("invalid user name {name:?}: {why}")]
    UserName {
        /// The name given.
        name: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad image reference.
    #[error("invalid image {image:?}: {why}")]
    Image {
        /// The image given.
        image: String,
        /// What is wrong.
        why: String,
    },
    /// Bad remote name.
    #[error("invalid remote {remote:?}: {why}")]
    Remote {
        /// The name given.
        remote: String,
        /// What is wrong.
        why: String,
    },
    /// Bad LXD project name.
    #[error("invalid LXD project {name:?}: {why}")]
    LxdProject {
        /// The name given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// Bad mount.
    #[error("invalid mount {given:?}: {why}")]
    Mount {
        /// The text given.
        given: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// Bad password.
    #[error("invalid password: {why}")]
    Password {
        /// What is wrong.
        why: String,
    },
    /// A setup step's script path that is not a file of the project.
    #[error("invalid setup script {script:?}: {why}")]
    SetupScript {
        /// The path given.
        script: String,
        /// What is wrong and what is allowed.
        why: String,
    },
}

/// Checks a project name: letters, digits, `-`, `_`, and short enough that
/// `PROJECT-c` still fits LXD's 63-character limit.
pub fn project_name(name: &str) -> Result<(), ValidationError> {
    let err = |why: &str| ValidationError::ProjectName {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(err("it is empty; use letters, digits, '-' and '_'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(err(&format!(
            "{c:?} is not allowed; use letters, digits, '-' and '_'"
        )));
    }
    if name.len() > MAX_LXD_NAME - 2 {
        return Err(err(&format!(
            "it is {} characters; at most {} leave room for container names",
            name.len(),
            MAX_LXD_NAME - 2
        )));
    }
    Ok(())
}

/// Checks a container name, alone and joined to its project as `project-name`.
pub fn container_name(project: &str, name: &str) -> Result<(), ValidationError> {
    let err = |why: String| ValidationError::ContainerName {
        name: name.to_string(),
        why,
    };
    let rule = "names start with a letter and use letters, digits and single hyphens";
    let Some(first) = name.chars().next() else {
        return Err(err(format!("it is empty; {rule}")));
    };
    if !first.is_ascii_alphabetic() {
        return Err(err(format!("it must start with a letter; {rule}")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(err(format!("{c:?} is not allowed; {rule}")));
    }
    if name.contains("--") {
        return Err(err(format!("it has a double hyphen; {rule}")));
    }
    if name.ends_with('-') {
        return Err(err(format!("it ends with a hyphen; {rule}")));
    }
    if name.len() > MAX_LXD_NAME {
        return Err(err(format!(
            "it is {} characters; at most {MAX_LXD_NAME}",
            name.len()
        )));
    }
    if project.len() + 1 + name.len() > MAX_LXD_NAME {
        return Err(err(format!(
            "the LXD name {project}-{name} would be {} characters; at most {MAX_LXD_NAME}",
            project.len() + 1 + name.len()
        )));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(err(format!(
            "it is reserved (reserved: {})",
            RESERVED.join(", ")
        )));
    }
    Ok(())
}

/// Checks a snapshot name as LXD accepts it: no `/`, no spaces, not empty.
pub fn snapshot_name(name: &str) -> Result<(), ValidationError> {
    let err = |why: &str| ValidationError::SnapshotName {
        name: name.to_string(),
        why: why.to_string(),
    };
    let rule = "use letters, digits, '-', '_' and '.'";
    if name.is_empty() {
        return Err(err(&format!("it is empty; {rule}")));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(err(&format!("it has a character LXD refuses; {rule}")));
    }
    if name.starts_with('.') || name.len() > MAX_LXD_NAME {
        return Err(err(&format!(
            "it must not start with '.' and has at most {MAX_LXD_NAME} characters"
        )));
    }
    Ok(())
}

/// Parses a comma-separated port list such as `3000,4000`. An empty string
/// is an empty list.
pub fn parse_ports(text: &str) -> Result<Vec<u16>, ValidationError> {
    let err = |why: String| ValidationError::Ports {
        given: text.to_string(),
        why,
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let mut ports = Vec::new();
    for part in text_trimmed.split(',') {
        let part = part.trim();
        let n: u32 = part.parse().map_err(|_| {
            err(format!(
                "{part:?} is not a number; write ports as 3000,4000"
            ))
        })?;
        if !(1..=65535).contains(&n) {
            return Err(err(format!("{n} is outside 1..65535")));
        }
        ports.push(n as u16);
    }
    ports_list(&ports).map_err(|_| err("a port is listed twice".to_string()))?;
    Ok(ports)
}

/// Checks an already-parsed port list: 1..65535, no duplicates.
pub fn ports_list(ports: &[u16]) -> Result<(), ValidationError> {
    let err = |why: String| ValidationError::Ports {
        given: format!("{ports:?}"),
        why,
    };
    for (i, p) in ports.iter().enumerate() {
        if *p == 0 {
            return Err(err("port 0 is outside 1..65535".to_string()));
        }
        if ports[..i].contains(p) {
            return Err(err(format!("port {p} is listed twice")));
        }
    }
    Ok(())
}

/// Checks a Linux user name as `useradd` accepts it by default.
pub fn user_name(name: &str) -> Result<(), ValidationError> {
    let err = |why: &str| ValidationError::UserName {
        name: name.to_string(),
        why: why.to_string(),
    };
    let rule = "start with a lowercase letter or '_', then lowercase letters, digits, '_' or '-'; at most 32 characters";
    let mut chars = name.chars();
    let ok_first = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_');
    let ok_rest =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok_first || !ok_rest || name.len() > 32 {
        return Err(err(rule));
    }
    Ok(())
}

/// Checks a password: anything but NUL, which no C program can take. It
/// reaches the container hashed, on stdin, so quotes and newlines are fine.
pub fn password(pw: &str) -> Result<(), ValidationError> {
    if pw.is_empty() {
        return Err(ValidationError::Password {
            why: "it is empty".into(),
        });
    }
    if pw.contains('\0') {
        return Err(ValidationError::Password {
            why: "it contains a NUL byte".into(),
        });
    }
    Ok(())
}

/// Checks an LXD project name (`ldm create --lxd-project`, `lxd_project:`
/// in `containers.yaml`). LXD refuses `/`, spaces and names over 63
/// characters; ldm keeps to letters, digits, '-' and '_' (no leading '-')
/// so that it is one plain word in a request's query and in the
/// `lxc project switch` command ldm prints.
pub fn lxd_project(name: &str) -> Result<(), ValidationError> {
    let err = |why: String| ValidationError::LxdProject {
        name: name.to_string(),
        why: format!("{why}; use letters, digits, '-' and '_'"),
    };
    if name.is_empty() || name.len() > MAX_LXD_NAME {
        return Err(err(format!("it must be 1 to {MAX_LXD_NAME} characters")));
    }
    if name.starts_with('-') {
        return Err(err("it starts with '-'".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(err(format!("{c:?} is not allowed")));
    }
    Ok(())
}

/// Checks an LXD remote name (as listed by `lxc remote list`), the one
/// place the rule lives (commands, the log's `remote_set`, a hand-edited
/// `containers.yaml`). LXD itself refuses only a `:` (`lxc remote add`: it
/// separates the remote from the name in `REMOTE:name`); ldm also refuses a
/// leading `-`, which the client would read as a flag (`lxc remote add` of
/// such a name needs `--`, and `REMOTE:` arguments cannot all follow one),
/// and keeps to the characters of a host name so that a remote reaches the
/// client as one plain argument.
pub fn remote(name: &str) -> Result<(), ValidationError> {
    let err = |why: &str| ValidationError::Remote {
        remote: name.to_string(),
        why: format!(
            "{why}; use the name `lxc remote list` shows (letters, digits, '-', '_', '.')"
        ),
    };
    if name.is_empty() {
        return Err(err("it is empty"));
    }
    if name.starts_with('-') {
        return Err(err(
            "it starts with '-', which the LXD client reads as a flag",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(err(&format!("{c:?} is not allowed")));
    }
    Ok(())
}

/// The error for mount text `given`.
pub fn mount_error(given: &str, why: &str) -> ValidationError {
    ValidationError::Mount {
        given: given.to_string(),
        why: why.to_string(),
    }
}

/// Checks a mount's two paths; `Err` says what is wrong.
pub fn mount(m: &super::Mount) -> Result<(), String> {
    let bad_char = |s: &str| s.chars().any(|c| c.is_control());
    if m.host.is_empty() || bad_char(&m.host) {
        return Err("the host folder is empty or has control characters; write a folder of the project (`.` for all of it) or an absolute path".into());
    }
    if !m.path.starts_with('/') || m.path == "/" || bad_char(&m.path) {
        return Err(
            "the container path must be an absolute path other than `/`, e.g. /home/dev/webapp"
                .into(),
        );
    }
    let dotdot = |s: &str| s.split('/').any(|part| part == "..");
    if dotdot(&m.path) || dotdot(&m.host) {
        return Err("a path with `..` is ambiguous; write the folder itself".into());
    }
    if m.path.contains(':') || m.host.contains(':') {
        return Err(
            "`:` separates the host folder from the container path, so neither may contain one"
                .into(),
        );
    }
    Ok(())
}

/// Checks a setup step's script path: relative to the project folder,
/// down into it only (no `..`, `.` or empty parts, no leading `/`), no
/// control characters. Checked when the file is read, so a bad path is
/// refused before any command calls LXD, not when the step's turn comes.
pub fn setup_script(script: &str) -> Result<(), ValidationError> {
    let why = if script.is_empty() || script.chars().any(char::is_control) {
        Some("it is empty or has control characters")
    } else if script.starts_with('/') {
        Some("it must be a path inside the project folder, relative to it")
    } else if script
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        Some("write the path down from the project folder, without `.`, `..` or `//`")
    } else {
        None
    };
    match why {
        Some(why) => Err(ValidationError::SetupScript {
            script: script.to_string(),
            why: format!("{why}, like setup/dev.sh"),
        }),
        None => Ok(()),
    }
}

/// Checks an image reference: non-empty and free of control characters.
pub fn image(image: &str) -> Result<(), ValidationError> {
    if image.trim().is_empty() || image.chars().any(char::is_control) {
        return Err(ValidationError::Image {
            image: image.to_string(),
            why: "it is empty or has control characters; use e.g. ubuntu:24.04".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_go_rules() {
        for ok in ["dev", "a1", "web-2", "A-b-c"] {
            assert!(container_name("p", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "1dev", "-dev", "dev-", "de--v", "de_v", "dé", "LIST", "config", "a b",
        ] {
            assert!(container_name("p", bad).is_err(), "{bad}");
        }
        let long = "a".repeat(62);
        assert!(container_name("p", &long).is_err());
        assert!(container_name("p", &"a".repeat(61)).is_ok());
    }

    #[test]
    fn project_names() {
        assert!(project_name("web_app-2").is_ok());
        for bad in ["", "a b", "a/b", "ü"] {
            assert!(project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_parse_and_reject() {
        assert_eq!(parse_ports("3000, 4000").unwrap(), vec![3000, 4000]);
        assert_eq!(parse_ports("").unwrap(), Vec::<u16>::new());
        for bad in ["0", "65536", "abc", "3000,3000", "3000,,4000", "-1"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_names_are_refused_where_the_client_would_misread_them() {
        for ok in ["shared", "lab-2", "my_remote.x", "a-"] {
            assert!(remote(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-evil", "--force", "a:b", "a b", "a/b", "ü", "a\nb"] {
            assert!(remote(bad).is_err(), "{bad}");
        }
        let msg = remote("-evil").unwrap_err().to_string();
        assert!(msg.contains("flag"), "{msg}");
    }

    #[test]
    fn user_names_and_passwords() {
        assert!(user_name("dev").is_ok());
        assert!(user_name("Dev").is_err());
        assert!(user_name("a;b").is_err());
        assert!(password("it's $(x) ok").is_ok());
        assert!(password("a\nb").is_ok());
        assert!(password("a\0b").is_err());
    }
}
