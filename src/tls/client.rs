//! The TLS client side, for an `https://` upstream: the CAs it is checked
//! against (a PEM bundle from `upstream.ca_file`, or the system's) and the
//! rustls client configuration (TLS 1.2 and 1.3, the `ring` provider, ALPN
//! `http/1.1` only, no client certificate). Built once while the
//! configuration is validated; every connection shares it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The validated TLS settings of an `https://` upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The name sent as SNI and checked in the upstream's certificate.
    pub server_name: ServerName<'static>,
    pub client: Arc<ClientConfig>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The CAs in a PEM bundle. The message names what is wrong, not the file.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        _ => format!("cannot be read: {e}"),
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate (no -----BEGIN CERTIFICATE----- block)".into());
    }
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("certificate #{} is not a usable CA: {e}", index + 1))?;
    }
    Ok(roots)
}

/// The system's CAs. Certificates the system store holds but rustls cannot
/// use are skipped; none at all is an error.
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _skipped) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or(String::new(), |e| format!(" ({e})"));
        return Err(format!("no system CA certificates were found{why}"));
    }
    Ok(roots)
}

/// The client configuration for connections to the upstream.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The pool speaks HTTP/1.1 only; an upstream must not pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The name to check in the certificate: a DNS name or an IP address
/// (brackets of an IPv6 URL host removed).
pub fn server_name(text: &str) -> Result<ServerName<'static>, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    ServerName::try_from(bare.to_owned())
        .map_err(|_| format!("`{text}` is not a DNS name or an IP address"))
}
