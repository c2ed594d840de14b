//! TLS termination: the served certificates, chosen by SNI, and the rustls
//! configuration of the listener (TLS 1.2 and 1.3, rustls' default safe
//! suites with the `ring` provider, ALPN `h2` and `http/1.1`, no 0-RTT).
//!
//! Certificates are loaded from PEM files ([`load`]), checked (the key
//! matches, the certificate has not expired) and kept in [`Certificates`],
//! whose current set is swapped whole by [`reload`] without touching the
//! connections that are already up. Nothing here logs or shows key material.
//! [`client`] is the other direction: TLS to an `https://` upstream.

pub mod client;
mod expiry;
pub mod reload;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// One `{cert, key}` entry of `server.tls.certificates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub key: PathBuf,
}

/// Which file of an entry a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

/// Why an entry could not be loaded; names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProblem {
    /// Index in `server.tls.certificates`.
    pub index: usize,
    pub part: Part,
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for CertProblem {}

/// A loaded set of certificates: the SNI names of each, and the default
/// (the first entry) for clients that send no name or an unknown one.
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    names: Vec<String>,
    /// Each entry's first name (or `#index` without one) and the end of
    /// its validity.
    expiries: Vec<(String, SystemTime)>,
}

impl fmt::Debug for CertSet {
    // Names only: the keys stay out of every log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSet")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl CertSet {
    /// The certificate for a client's SNI name (exact name first, then a
    /// wildcard one label up), or the default.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }

    /// Each certificate's first name and the end of its validity.
    pub fn expiries(&self) -> &[(String, SystemTime)] {
        &self.expiries
    }

    /// Every DNS name the set serves, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Loads and checks every entry; the first problem found in each entry is
/// reported, for every entry at once.
pub fn load(entries: &[CertificatePaths]) -> Result<CertSet, Vec<CertProblem>> {
    let provider = provider();
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (index, paths) in entries.iter().enumerate() {
        match load_entry(index, paths, &provider) {
            Ok(entry) => loaded.push(entry),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some((_, default)) = loaded.first().cloned() else {
        return Err(vec![CertProblem {
            index: 0,
            part: Part::Cert,
            file: PathBuf::new(),
            message: "no certificates configured".into(),
        }]);
    };
    let mut set = CertSet {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default,
        names: Vec::new(),
        expiries: Vec::new(),
    };
    for (index, (names, key)) in loaded.into_iter().enumerate() {
        let not_after = key.cert.first().and_then(|leaf| expiry::not_after(leaf));
        if let Some(not_after) = not_after {
            let label = names
                .first()
                .cloned()
                .unwrap_or_else(|| format!("#{index}"));
            set.expiries.push((label, not_after));
        }
        for name in names {
            // The first entry that names a host serves it.
            let table = match name.strip_prefix("*.") {
                Some(parent) => set.wildcard.entry(parent.to_owned()),
                None => set.exact.entry(name.clone()),
            };
            table.or_insert_with(|| key.clone());
            set.names.push(name);
        }
    }
    Ok(set)
}

type Entry = (Vec<String>, Arc<CertifiedKey>);

fn load_entry(
    index: usize,
    paths: &CertificatePaths,
    provider: &CryptoProvider,
) -> Result<Entry, CertProblem> {
    let problem = |part: Part, message: String| CertProblem {
        index,
        part,
        file: match part {
            Part::Cert => paths.cert.clone(),
            Part::Key => paths.key.clone(),
        },
        message,
    };
    let cert_pem = read(&paths.cert).map_err(|m| problem(Part::Cert, m))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            problem(
                Part::Cert,
                format!("is not a valid PEM certificate file: {e}"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(problem(
            Part::Cert,
            "holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
        ));
    };
    let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|e| {
        problem(
            Part::Cert,
            format!("the first certificate cannot be parsed: {e}"),
        )
    })?;
    let names: Vec<String> = parsed
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    match expiry::not_after(leaf) {
        Some(not_after) if not_after < SystemTime::now() => {
            return Err(problem(
                Part::Cert,
                format!(
                    "the certificate expired on {}; renew it",
                    expiry::describe(not_after)
                ),
            ))
        }
        Some(_) => {}
        None => {
            return Err(problem(
                Part::Cert,
                "the certificate's validity period cannot be read".into(),
            ))
        }
    }
    let key_pem = read(&paths.key).map_err(|m| problem(Part::Key, m))?;
    // The PEM error is not shown: it could quote part of the key file.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => problem(
            Part::Key,
            "holds no private key (expected a PKCS#8, SEC1 or PKCS#1 PEM block)".into(),
        ),
        _ => problem(Part::Key, "is not a valid PEM private key file".into()),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => problem(
            Part::Key,
            format!(
                "this key does not match the certificate in {}",
                paths.cert.display()
            ),
        ),
        _ => problem(
            Part::Key,
            "the private key is not usable (supported: RSA, ECDSA P-256/P-384, Ed25519)".into(),
        ),
    })?;
    Ok((names, Arc::new(certified)))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        _ => format!("cannot be read: {e}"),
    })
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificates being served; the current set is swapped whole on a
/// reload.
///
/// Why a `std::sync::RwLock<Arc<CertSet>>`: a handshake only clones the
/// `Arc` under the read lock (no `.await` while it is held, so a blocking
/// lock is right), and a reload takes the write lock for one pointer swap.
/// A connection keeps the `CertifiedKey` it got, so a swap never touches a
/// connection that is already up.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertSet>>,
}

impl Certificates {
    pub fn new(set: Arc<CertSet>) -> Self {
        Self {
            current: RwLock::new(set),
        }
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, set: CertSet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().pick(hello.server_name()))
    }
}

/// The listener's TLS acceptor over `certificates`.
pub fn acceptor(certificates: Arc<Certificates>) -> Result<TlsAcceptor, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    // Order is preference: browsers that can speak HTTP/2 get it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // 0-RTT data can be replayed; a proxy that forwards POSTs must not take it.
    config.max_early_data_size = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
