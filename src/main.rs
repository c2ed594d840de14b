//! The `cloakroom` binary: parse the command line, load the configuration
//! (exit 64 before binding anything if it is bad), start logging, connect
//! the session store, bind, serve, reload on SIGHUP, drain on SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use cloakroom::cli::{self, Cli, Command, EXIT_BAD_CONFIG};
use cloakroom::config::LogFormat;

mod allocator;

/// mimalloc: a proxy allocates and frees many small buffers per request;
/// glibc's allocator spent a measurable share of CPU on them. Called
/// through [`allocator::Allocator`], which uses its bins as they are meant.
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Some(Command::Secret) = cli.command {
        return match cli::new_secret() {
            Ok(secret) => {
                println!("{secret}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cloakroom: no randomness available: {error}");
                ExitCode::FAILURE
            }
        };
    }

    let config = match cli::load_config(cli.config.as_ref()) {
        Ok(config) => config,
        Err(error) => {
            eprint!("cloakroom: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let access_log = cli::logging::init(cli.log_json || config.log.format == LogFormat::Json);
    if let Some(Command::Health) = cli.command {
        let Some(address) = config.ops.listen else {
            eprintln!("cloakroom: [ops] listen is not set, so there is no /healthz to ask");
            return ExitCode::FAILURE;
        };
        return match cli::health(address) {
            Ok(status) => {
                println!("healthy: {status}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("cloakroom: unhealthy: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(Command::Check) = cli.command {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }

    let source = cli.config.map(|path| cloakroom::ConfigSource {
        path,
        watch: cli
            .watch_config
            .then_some(std::time::Duration::from_secs(2)),
    });
    let served = serve(config, source);
    access_log.flush();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloakroom: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(
    config: cloakroom::config::Config,
    config_source: Option<cloakroom::ConfigSource>,
) -> anyhow::Result<()> {
    // The main runtime accepts connections and runs background tasks (the
    // store's sweeper and Redis connection, certificate reloads); requests
    // run on the worker threads' own runtimes (see cloakroom::workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // The store first: a Redis that cannot be reached ends start-up
        // before any port is open.
        let store = cloakroom::build_store(&config)
            .await
            .context("connecting the session store ([store])")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {} (server.listen)", config.listen))?;
        let redirect_listener = match config.server.redirect_http_from {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} (server.redirect_http_from)"))?,
            ),
            None => None,
        };
        let ops_listener = match config.ops.listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding {address} (ops.listen)"))?,
            ),
            None => None,
        };
        let reload = std::sync::Arc::new(tokio::sync::Notify::new());
        tokio::spawn(reload_on_sighup(reload.clone()));
        tracing::info!(upstream = %config.upstream.url, tls = config.server.tls.is_some(), "cloakroom starting");
        let options = cloakroom::Options {
            redirect_listener,
            reload: Some(reload),
            store: Some(store),
            ops_listener,
            config_source,
        };
        cloakroom::run_with(config, listener, options, shutdown_signal()).await?;
        Ok(())
    })
}

/// Each SIGHUP reloads the configuration file and the TLS certificates.
async fn reload_on_sighup(reload: std::sync::Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while hangup.recv().await.is_some() {
            reload.notify_one();
        }
    }
    #[cfg(not(unix))]
    let _ = reload;
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
