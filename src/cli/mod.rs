//! The command line: `cloakroom [--config FILE]` serves, `cloakroom check`
//! validates a configuration, `cloakroom secret` prints a fresh secret,
//! `cloakroom health` asks a running proxy's `/healthz`.
//! Without `--config` the example `proxy.toml` embedded in the binary is used.

mod access_line;
pub mod logging;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Secret};

/// The example configuration, compiled in: what runs without `--config`.
pub const EMBEDDED_CONFIG: &str = include_str!("../../proxy.toml");

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
    /// Reload the configuration file when it changes (checked every 2 s),
    /// besides on SIGHUP.
    #[arg(long)]
    pub watch_config: bool,
    /// Write log lines as JSON objects (overrides `log.format`).
    #[arg(long)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and report every problem; exit 64 if any.
    Check,
    /// Print a fresh random secret for [session] secrets.
    Secret,
    /// Ask the running proxy's `/healthz` (on `[ops] listen`); exit 0 when
    /// it answers 200, 1 otherwise. For container health checks.
    Health,
}

/// Loads the configuration named on the command line, or the embedded one.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::from_file(path),
        None => Config::from_toml_str(EMBEDDED_CONFIG),
    }
}

/// Asks `/healthz` on the operations listener at `address` (an
/// unspecified address means this host's loopback); `Ok` with the status
/// line when it answers 200.
pub fn health(address: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    use std::time::Duration;

    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = SocketAddr::new(ip, address.port());
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send to {target}: {e}"))?;
    let mut answer = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or("").trim().to_owned();
    if status_line.starts_with("HTTP/1.1 200 ") {
        Ok(status_line)
    } else if status_line.is_empty() {
        Err(format!("no answer from {target}"))
    } else {
        Err(format!("{target} answered {status_line}"))
    }
}

/// A fresh secret, as printed by `cloakroom secret`.
pub fn new_secret() -> Result<String, getrandom::Error> {
    Secret::generate().map(|s| s.expose_str().to_owned())
}
