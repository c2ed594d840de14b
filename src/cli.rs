//! The command line: `cloakroom [--config FILE]` serves, `cloakroom check`
//! validates a configuration, `cloakroom secret` prints a fresh secret.
//! Without `--config` the example `proxy.toml` embedded in the binary is used.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Secret};

/// The example configuration, compiled in: what runs without `--config`.
pub const EMBEDDED_CONFIG: &str = include_str!("../proxy.toml");

/// Exit code for a bad configuration (EX_CONFIG would be 78; 64 is
/// EX_USAGE, which is what operators and init systems expect here).
pub const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "cloakroom",
    version,
    about = "A reverse proxy that gives any web app server-side sessions"
)]
pub struct Cli {
    /// Configuration file (default: the embedded example proxy.toml).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and report every problem; exit 64 if any.
    Check,
    /// Print a fresh random secret for [session] secrets.
    Secret,
}

/// Loads the configuration named on the command line, or the embedded one.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::from_file(path),
        None => Config::from_toml_str(EMBEDDED_CONFIG),
    }
}

/// A fresh secret, as printed by `cloakroom secret`.
pub fn new_secret() -> Result<String, getrandom::Error> {
    Secret::generate().map(|s| s.expose_str().to_owned())
}
