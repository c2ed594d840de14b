//! `upstream.ca_file` and `upstream.server_name`: the TLS client settings of
//! an `https://` upstream. The CA bundle is read and checked here and the
//! rustls client configuration built here, once, so a bad bundle is a
//! configuration error (exit 64) naming the file, before anything is bound.

use std::path::Path;
use std::sync::Arc;

use http::Uri;

use super::raw::RawUpstream;
use super::Checker;
use crate::tls::client::{self, UpstreamTls};

/// The TLS settings for `url`; `None` for an http:// upstream (or when
/// something is wrong, reported to `check`).
pub(super) fn build(
    u: &RawUpstream,
    url: Option<&Uri>,
    check: &mut Checker,
) -> Option<UpstreamTls> {
    let url = url?;
    if url.scheme_str() != Some("https") {
        for (key, set) in [
            ("upstream.ca_file", u.ca_file.is_some()),
            ("upstream.server_name", u.server_name.is_some()),
        ] {
            if set {
                check.fail(
                    key,
                    "is used only with an https:// upstream; drop it, or make upstream.url https://",
                );
            }
        }
        return None;
    }
    let host = url.host().unwrap_or_default();
    let server_name = match &u.server_name {
        Some(name) => client::server_name(name).map_err(|m| check.fail("upstream.server_name", m)),
        None => client::server_name(host).map_err(|m| check.fail("upstream.url", m)),
    };
    let roots = match &u.ca_file {
        Some(file) => client::roots_from_file(Path::new(file))
            .map_err(|m| check.fail("upstream.ca_file", format!("{file}: {m}"))),
        None => client::system_roots().map_err(|m| {
            check.fail(
                "upstream.ca_file",
                format!("is unset and {m}; set it to a PEM bundle of the CAs that sign the upstream's certificate"),
            )
        }),
    };
    let config = client::client_config(roots.ok()?)
        .map_err(|e| check.fail("upstream.url", format!("cannot build the TLS client: {e}")))
        .ok()?;
    Some(UpstreamTls {
        server_name: server_name.ok()?,
        client: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;

    use super::super::Config;

    /// A self-signed CA certificate written to a fresh file.
    fn ca_file(label: &str) -> std::path::PathBuf {
        let generated = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        let path = std::env::temp_dir().join(format!(
            "cloakroom-config-upstream-ca-{}-{label}.pem",
            std::process::id()
        ));
        std::fs::write(&path, generated.cert.pem()).unwrap();
        path
    }

    fn https(url: &str, extra: &str, ca: &std::path::Path) -> String {
        format!(
            "upstream.url = \"{url}\"\nupstream.ca_file = {:?}\n{extra}session.secrets = [\"0123456789abcdef0123456789abcdef\"]\n",
            ca.display().to_string()
        )
    }

    #[test]
    fn the_name_checked_is_the_url_host_unless_server_name_is_set() {
        let ca = ca_file("names");
        let by_host = Config::from_toml_str(&https("https://[::1]:8443", "", &ca));
        let by_name = Config::from_toml_str(&https(
            "https://10.0.0.5",
            "upstream.server_name = \"app.internal\"\n",
            &ca,
        ));
        let _ = std::fs::remove_file(&ca);
        let tls = by_host.unwrap().upstream.tls.unwrap();
        assert_eq!(tls.server_name, ServerName::try_from("::1").unwrap());
        assert_eq!(tls.client.alpn_protocols, [b"http/1.1".to_vec()]);
        let tls = by_name.unwrap().upstream.tls.unwrap();
        assert_eq!(
            tls.server_name,
            ServerName::try_from("app.internal").unwrap()
        );
    }

    #[test]
    fn an_http_upstream_has_no_tls() {
        let config = Config::from_toml_str(
            "upstream.url = \"http://127.0.0.1:3000\"\nsession.secrets = [\"0123456789abcdef0123456789abcdef\"]\n",
        )
        .unwrap();
        assert!(config.upstream.tls.is_none());
    }

    #[test]
    fn a_bad_server_name_is_a_config_error() {
        let ca = ca_file("bad-name");
        let error = Config::from_toml_str(&https(
            "https://127.0.0.1",
            "upstream.server_name = \"not a name\"\n",
            &ca,
        ))
        .unwrap_err();
        let _ = std::fs::remove_file(&ca);
        assert_eq!(error.issues[0].key, "upstream.server_name");
    }
}
