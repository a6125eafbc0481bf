//! `ldm config get|set|unset KEY [VALUE]`: the hand-editable settings of
//! `containers.yaml`, through the store so that parallel commands never lose
//! each other's changes.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::cli::ConfigCommand;
use crate::commands::{gate, text, Ctx};
use crate::model::{validate, Mutation, Project, Scope, DEFAULT_USER};
use crate::store::StoreError;
use crate::trust::{Item, Need};
use crate::{say, Error};

const KEYS: &str = "remote, defaults.ports, defaults.user.name, defaults.user.password, containers.NAME.ports, containers.NAME.user.name, containers.NAME.user.password";

/// Which setting a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Remote,
    Ports,
    UserName,
    UserPassword,
}

/// A parsed KEY.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    scope: Scope,
    field: Field,
}

fn parse_key(key: &str) -> Result<Key, Error> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts == ["remote"] {
        return Ok(Key {
            scope: Scope::Defaults,
            field: Field::Remote,
        });
    }
    let (scope, rest) = match parts.as_slice() {
        ["defaults", rest @ ..] => (Scope::Defaults, rest),
        ["containers", name, rest @ ..] if !name.is_empty() => {
            (Scope::Container((*name).to_string()), rest)
        }
        _ => return Err(unknown(key)),
    };
    let field = match rest {
        ["ports"] => Field::Ports,
        ["user", "name"] => Field::UserName,
        ["user", "password"] => Field::UserPassword,
        _ => return Err(unknown(key)),
    };
    Ok(Key { scope, field })
}

fn unknown(key: &str) -> Error {
    Error::Usage(format!("unknown key {key:?}; keys are {KEYS}"))
}

/// Runs one `config` subcommand.
pub fn run(ctx: &Ctx, cmd: ConfigCommand, out: &mut dyn Write) -> Result<(), Error> {
    match cmd {
        ConfigCommand::Get { key, json } => get(ctx, &key, json, out),
        ConfigCommand::Set { key, value } => {
            let key = parse_key(&key)?;
            let value = Some(parse_value(key.field, &value)?);
            change(ctx, key, value)
        }
        ConfigCommand::Unset { key } => change(ctx, parse_key(&key)?, None),
    }
}

/// A validated value to store.
enum Value {
    Ports(Vec<u16>),
    Text(String),
}

fn parse_value(field: Field, text: &str) -> Result<Value, Error> {
    match field {
        Field::Remote => {
            validate::remote(text)?;
            Ok(Value::Text(text.to_string()))
        }
        Field::Ports => {
            let ports = validate::parse_ports(text)?;
            if ports.is_empty() {
                return Err(Error::Usage(
                    "no ports given; to clear the setting use `ldm config unset KEY`".into(),
                ));
            }
            Ok(Value::Ports(ports))
        }
        Field::UserName => {
            validate::user_name(text)?;
            Ok(Value::Text(text.to_string()))
        }
        Field::UserPassword => {
            validate::password(text)?;
            Ok(Value::Text(text.to_string()))
        }
    }
}

fn change(ctx: &Ctx, key: Key, value: Option<Value>) -> Result<(), Error> {
    let container = match &key.scope {
        Scope::Defaults => None,
        Scope::Container(c) => Some(c.clone()),
    };
    let mutation = match (key.field, value) {
        (Field::Remote, v) => Mutation::RemoteSet { remote: text(v) },
        (Field::Ports, Some(Value::Ports(ports))) => Mutation::PortsSet { container, ports },
        (Field::Ports, _) => Mutation::PortsSet {
            container,
            ports: Vec::new(),
        },
        (Field::UserName, v) => Mutation::UserNameSet {
            container,
            name: text(v),
        },
        (Field::UserPassword, v) => Mutation::UserPasswordSet {
            container,
            password: text(v),
        },
    };
    let (mut store, _, _) = gate::load(ctx, &Need::nothing())?;
    let remote = match &mutation {
        Mutation::RemoteSet {
            remote: Some(remote),
        } => Some(remote.clone()),
        _ => None,
    };
    let replaced = store.commit(|p| {
        // A password changed or removed: the old one is in the log's
        // earlier records (a fold keeps them there).
        let replaced = match &mutation {
            Mutation::UserPasswordSet {
                container,
                password,
            } => {
                let user = match container {
                    Some(c) => p.containers.get(c).and_then(|c| c.user.as_ref()),
                    None => p.defaults.user.as_ref(),
                };
                let old = user.and_then(|u| u.password.as_ref());
                old.is_some() && old != password.as_ref()
            }
            _ => false,
        };
        Ok::<_, StoreError>((vec![mutation], replaced))
    })?;
    if let Some(name) = remote {
        // Typed by the user: allowed as typed.
        gate::allow_typed(
            ctx,
            &store.paths().dir,
            vec![Item::Remote { name }],
            Vec::new(),
        )?;
    }
    if replaced {
        // Compacting now leaves no record of the old one: the log starts
        // afresh after the new state, which containers.yaml holds.
        if let Err(e) = store.compact() {
            eprintln!(
                "ldm: the password is changed, but the old one stays in {} until `ldm compact` succeeds: {}",
                store.paths().log.display(),
                text::escape(&e.to_string())
            );
        }
    }
    Ok(())
}

fn text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

#[derive(Serialize)]
struct Got {
    key: String,
    value: serde_json::Value,
    /// Where the value comes from: container, defaults or builtin.
    source: &'static str,
}

fn get(ctx: &Ctx, key_text: &str, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let key = parse_key(key_text)?;
    let (_, project, _) = gate::load(ctx, &Need::nothing())?;
    let (value, source) = effective(&project, &key)?;
    if json {
        let got = Got {
            key: key_text.to_string(),
            value,
            source,
        };
        say(out, &serde_json::to_string(&got).unwrap_or_default())
    } else {
        let text = match value {
            serde_json::Value::Array(a) => a
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        // Scripts read the bare value (`$(ldm config get KEY)`): exact on
        // a pipe, escaped only for a person's terminal.
        if std::io::stdout().is_terminal() {
            say(out, &text::escape(&text))
        } else {
            say(out, &text)
        }
    }
}

fn effective(project: &Project, key: &Key) -> Result<(serde_json::Value, &'static str), Error> {
    let own = match &key.scope {
        Scope::Defaults => None,
        Scope::Container(name) => Some(crate::commands::op::container(project, name)?),
    };
    let def = &project.defaults;
    Ok(match key.field {
        Field::Remote => match &project.remote {
            Some(r) => (serde_json::json!(r), "project"),
            None => (serde_json::json!(""), "builtin"),
        },
        Field::Ports => match own {
            Some(c) if !c.ports.is_empty() => (serde_json::json!(c.ports), "container"),
            _ if !def.ports.is_empty() => (serde_json::json!(def.ports), "defaults"),
            _ => (serde_json::json!([]), "builtin"),
        },
        Field::UserName | Field::UserPassword => {
            let pick = |u: &crate::model::User| {
                if key.field == Field::UserName {
                    u.name.clone()
                } else {
                    u.password.clone()
                }
            };
            if let Some(v) = own.and_then(|c| c.user.as_ref()).and_then(pick) {
                (serde_json::json!(v), "container")
            } else if let Some(v) = def.user.as_ref().and_then(pick) {
                (serde_json::json!(v), "defaults")
            } else {
                (serde_json::json!(DEFAULT_USER), "builtin")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(
            parse_key("containers.dev.user.name").unwrap(),
            Key {
                scope: Scope::Container("dev".into()),
                field: Field::UserName
            }
        );
        assert!(parse_key("defaults.port").is_err());
        assert!(parse_key("containers..ports").is_err());
        assert!(parse_key("defaults.user").is_err());
    }
}
