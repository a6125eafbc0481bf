//! The command line, as clap structs: the raw layer. Commands turn these
//! into validated `model` values before taking any lock.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Per-project LXD development containers, with a crash-safe project store.
#[derive(Debug, Parser)]
#[command(name = "ldm", version, about, propagate_version = true)]
pub struct Cli {
    /// Run as if ldm was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Seconds to wait for another ldm to release the project lock.
    #[arg(long, global = true, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    pub lock_timeout: Duration,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project in this folder (same as `ldm project create`).
    Create(ProjectCreate),
    /// Project-level commands.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Read and change settings in containers.yaml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Fold containers.log into containers.yaml now.
    Compact,
    /// Check containers.yaml and containers.log; repair a damaged log.
    Doctor(Doctor),
}

/// `ldm project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Start a project in this folder: writes containers.yaml.
    Create(ProjectCreate),
}

/// Arguments of `ldm create`.
#[derive(Debug, Args)]
pub struct ProjectCreate {
    /// Project name, the prefix of every LXD container name [default: folder name].
    #[arg(long)]
    pub name: Option<String>,
    /// Default ports to forward, e.g. 5173,8000.
    #[arg(long, value_name = "PORTS")]
    pub ports: Option<String>,
}

/// `ldm config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective value of KEY.
    Get {
        /// One of defaults.ports, defaults.user.name, defaults.user.password,
        /// containers.NAME.ports, containers.NAME.user.name, containers.NAME.user.password.
        key: String,
        /// Print JSON: {"key", "value", "source"}.
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE (ports as 3000,4000).
    Set {
        /// The key (see `ldm config get --help`).
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove KEY, so that it falls back to the defaults.
    Unset {
        /// The key (see `ldm config get --help`).
        key: String,
    },
}

/// Arguments of `ldm doctor`.
#[derive(Debug, Args)]
pub struct Doctor {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Back up and rebuild a damaged log, keeping every valid record.
    #[arg(long)]
    pub repair: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s} is outside 0..86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_rejects_negative_and_garbage() {
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("abc").is_err());
        assert_eq!(parse_timeout("0.5").unwrap(), Duration::from_millis(500));
    }
}
