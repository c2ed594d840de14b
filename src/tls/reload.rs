//! Reloading the certificates without a restart: when a trigger fires
//! (the binary fires it on SIGHUP) and when the files' modification times
//! or sizes change, polled every `server.tls.watch_interval`.
//!
//! A new set replaces the old one only if every entry loads and checks; a
//! bad one is refused with an error log naming the file, and the old set
//! keeps serving. Connections already up keep the certificate they got.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::{load, CertificatePaths, Certificates};

/// What the poll compares: each file's modification time and size.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(entries: &[CertificatePaths]) -> Stamp {
    let one = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    entries
        .iter()
        .flat_map(|e| [one(&e.cert), one(&e.key)])
        .collect()
}

/// Loads the files again and swaps them in if they are all good. Returns
/// whether the new set is now served.
pub fn reload(entries: &[CertificatePaths], certificates: &Certificates) -> bool {
    match load(entries) {
        Ok(set) => {
            tracing::info!(names = ?set.names(), "TLS certificates reloaded");
            certificates.replace(set);
            true
        }
        Err(problems) => {
            for problem in problems {
                tracing::error!(
                    file = %problem.file.display(),
                    problem = %problem.message,
                    "new TLS certificate refused; the previous one keeps serving"
                );
            }
            false
        }
    }
}

/// Watches the files and the trigger forever; the caller aborts the task.
pub async fn watch(
    entries: Vec<CertificatePaths>,
    certificates: Arc<Certificates>,
    interval: Duration,
    trigger: Arc<Notify>,
) {
    let mut last = stamp(&entries);
    loop {
        tokio::select! {
            () = trigger.notified() => {
                tracing::info!("reloading TLS certificates on request");
                last = stamp(&entries);
                reload(&entries, &certificates);
            }
            () = tokio::time::sleep(interval) => {
                let now = stamp(&entries);
                if now != last {
                    tracing::info!("TLS certificate files changed; reloading");
                    last = now;
                    reload(&entries, &certificates);
                }
            }
        }
    }
}
