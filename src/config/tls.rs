//! `[server.tls]`, `server.redirect_http_from` and `server.hsts`. The
//! certificate files are read and checked here, so a missing file, a key
//! that does not match or an expired certificate is a configuration error
//! (exit 64) naming the file, before anything is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::raw::RawServer;
use super::Checker;
use crate::tls::{self, CertSet, CertificatePaths, Part};

/// The validated TLS settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub certificates: Vec<CertificatePaths>,
    /// A client must finish the TLS handshake within this time.
    pub handshake_timeout: Duration,
    /// How often the certificate files are checked for changes.
    pub watch_interval: Duration,
    /// The certificates as loaded and checked while validating.
    pub loaded: Arc<CertSet>,
}

/// What the TLS-related server keys give.
pub(super) struct TlsParts {
    pub tls: Option<TlsConfig>,
    pub redirect_http_from: Option<SocketAddr>,
    pub hsts: Option<HeaderValue>,
}

pub(super) fn build(server: &RawServer, check: &mut Checker) -> TlsParts {
    let tls = server.tls.as_ref().and_then(|raw| {
        if raw.certificates.is_empty() {
            check.fail(
                "server.tls.certificates",
                "is empty: add a [[server.tls.certificates]] entry with `cert` and `key` PEM files, or remove [server.tls]",
            );
        }
        let handshake_timeout =
            check.positive_duration("server.tls.handshake_timeout", &raw.handshake_timeout);
        let watch_interval =
            check.positive_duration("server.tls.watch_interval", &raw.watch_interval);
        let certificates: Vec<CertificatePaths> = raw
            .certificates
            .iter()
            .map(|c| CertificatePaths {
                cert: PathBuf::from(&c.cert),
                key: PathBuf::from(&c.key),
            })
            .collect();
        if certificates.is_empty() {
            return None;
        }
        match tls::load(&certificates) {
            Ok(set) => Some(TlsConfig {
                certificates,
                handshake_timeout,
                watch_interval,
                loaded: Arc::new(set),
            }),
            Err(problems) => {
                for problem in problems {
                    let part = match problem.part {
                        Part::Cert => "cert",
                        Part::Key => "key",
                    };
                    check.fail(
                        &format!("server.tls.certificates[{}].{part}", problem.index),
                        problem.to_string(),
                    );
                }
                None
            }
        }
    });
    let tls_configured = server.tls.is_some();
    let redirect_http_from = server.redirect_http_from.as_deref().and_then(|text| {
        if !tls_configured {
            check.fail(
                "server.redirect_http_from",
                "redirects to HTTPS, which needs [server.tls]; configure it or remove the key",
            );
        }
        text.parse()
            .map_err(|_| {
                check.fail(
                    "server.redirect_http_from",
                    format!("`{text}` is not an address; write it like \"0.0.0.0:80\""),
                )
            })
            .ok()
    });
    let hsts = server.hsts.as_deref().and_then(|text| {
        if !tls_configured {
            check.fail(
                "server.hsts",
                "is sent over TLS only, which needs [server.tls]; configure it or remove the key",
            );
        }
        hsts_value(text)
            .map_err(|m| check.fail("server.hsts", m))
            .ok()
    });
    TlsParts {
        tls,
        redirect_http_from,
        hsts,
    }
}

/// A duration (`"365d"`) becomes `max-age=<seconds>`; anything else must be
/// a whole header value starting with `max-age=`.
fn hsts_value(text: &str) -> Result<HeaderValue, String> {
    let help = || {
        format!("`{text}` is not an HSTS policy; write a duration like \"365d\" or a header value like \"max-age=31536000; includeSubDomains\"")
    };
    let value = match crate::util::duration::parse_duration(text) {
        Ok(duration) => format!("max-age={}", duration.as_secs()),
        Err(_) if text.to_ascii_lowercase().starts_with("max-age=") => text.to_owned(),
        Err(_) => return Err(help()),
    };
    HeaderValue::from_str(&value).map_err(|_| help())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "upstream.url = \"http://127.0.0.1:3000\"\nsession.secrets = [\"0123456789abcdef0123456789abcdef\"]\n";

    /// A self-signed certificate and its key, written to fresh files.
    fn pair(label: &str) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let base = std::env::temp_dir().join(format!(
            "cloakroom-config-tls-{}-{label}",
            std::process::id()
        ));
        let (cert, key) = (base.with_extension("crt"), base.with_extension("key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn with_tls(cert: &std::path::Path, key: &std::path::Path) -> String {
        format!(
            "{BASE}[[server.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    }

    fn remove(files: &[&std::path::Path]) {
        for file in files {
            let _ = std::fs::remove_file(file);
        }
    }

    #[test]
    fn good_files_load_into_the_config() {
        let (cert, key) = pair("good");
        let config = Config::from_toml_str(&with_tls(&cert, &key)).unwrap();
        remove(&[&cert, &key]);
        let tls = config.server.tls.unwrap();
        assert_eq!(tls.loaded.names(), ["a.test"]);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_mismatched_key_is_a_config_error_naming_the_key_file() {
        let (cert, key) = pair("mismatch-a");
        let (other_cert, other_key) = pair("mismatch-b");
        let error = Config::from_toml_str(&with_tls(&cert, &other_key)).unwrap_err();
        remove(&[&cert, &key, &other_cert, &other_key]);
        let issue = &error.issues[0];
        assert_eq!(issue.key, "server.tls.certificates[0].key");
        assert!(
            issue.message.contains(&other_key.display().to_string()),
            "{issue:?}"
        );
        assert!(issue.message.contains("does not match"), "{issue:?}");
    }

    #[test]
    fn a_missing_certificate_file_is_a_config_error_naming_it() {
        let (real_cert, key) = pair("missing");
        let cert = std::path::Path::new("/nonexistent/cloakroom.crt");
        let error = Config::from_toml_str(&with_tls(cert, &key)).unwrap_err();
        remove(&[&real_cert, &key]);
        let issue = &error.issues[0];
        assert_eq!(issue.key, "server.tls.certificates[0].cert");
        assert!(
            issue
                .message
                .contains("/nonexistent/cloakroom.crt: does not exist"),
            "{issue:?}"
        );
    }

    #[test]
    fn redirect_and_hsts_need_tls() {
        let text =
            format!("{BASE}server.redirect_http_from = \"127.0.0.1:0\"\nserver.hsts = \"1d\"\n");
        let error = Config::from_toml_str(&text).unwrap_err();
        let keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["server.redirect_http_from", "server.hsts"]);
    }

    #[test]
    fn hsts_accepts_a_duration_or_a_policy() {
        assert_eq!(hsts_value("365d").unwrap(), "max-age=31536000");
        assert_eq!(
            hsts_value("max-age=60; includeSubDomains").unwrap(),
            "max-age=60; includeSubDomains"
        );
        assert!(hsts_value("forever").is_err());
        assert!(hsts_value("max-age=1\r\nx: y").is_err());
    }
}
