//! The `[auth]` table: the identity key, the login URL and the login-only
//! prefixes, compiled to canonical paths.

use http::Uri;

use super::raw::RawConfig;
use super::{AuthConfig, Checker, Deny, ProtectRule};
use crate::domain::path;

pub(super) fn build_auth(raw: &RawConfig, check: &mut Checker) -> AuthConfig {
    let a = &raw.auth;
    if a.identity_key.is_empty() {
        check.fail(
            "auth.identity_key",
            "must not be empty; the default is \"user\"",
        );
    }
    let login_is_path = a.login_url.starts_with('/')
        && !a.login_url.starts_with("//")
        && !a.login_url.contains('\\');
    let login_is_url = a
        .login_url
        .parse::<Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if !(login_is_path || login_is_url)
        || a.login_url
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ')
    {
        check.fail(
            "auth.login_url",
            format!(
                "`{}` must be a path like \"/login\" or an http(s) URL",
                a.login_url
            ),
        );
    }
    let protect: Vec<ProtectRule> = a
        .protect
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let key = format!("auth.protect[{index}]");
            let deny = match rule.deny.as_str() {
                "auto" => Deny::Auto,
                "redirect" => Deny::Redirect,
                "401" => Deny::Unauthorized,
                other => {
                    check.fail(
                        &format!("{key}.deny"),
                        format!("`{other}` is not \"auto\", \"redirect\" or \"401\""),
                    );
                    return None;
                }
            };
            let prefix = match path::canonicalize(&rule.prefix) {
                Ok(p) if p != "*" => p.trim_end_matches('/').to_owned(),
                _ => {
                    check.fail(
                        &format!("{key}.prefix"),
                        format!("`{}` is not a plain path like \"/account\"", rule.prefix),
                    );
                    return None;
                }
            };
            let prefix = if prefix.is_empty() {
                "/".to_owned()
            } else {
                prefix
            };
            Some(ProtectRule { prefix, deny })
        })
        .collect();
    let login_path = a.login_url.split(['?', '#']).next().unwrap_or_default();
    if login_is_path {
        if let Ok(login) = path::canonicalize(login_path) {
            if crate::domain::routes::Routes::new(&protect, a.case_sensitive)
                .rule_for(&login)
                .is_some()
            {
                check.fail("auth.login_url", format!("`{}` is itself login-only: browsers would loop; move it out of the protected prefixes", a.login_url));
            }
        }
    }
    let websocket_origins = a
        .websocket_origins
        .iter()
        .enumerate()
        .filter_map(|(index, origin)| {
            let valid = origin.parse::<Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
            });
            if !valid {
                check.fail(
                    &format!("auth.websocket_origins[{index}]"),
                    format!("`{origin}` is not an origin like \"https://app.example\" (scheme, host and optional port only)"),
                );
                return None;
            }
            Some(origin.trim_end_matches('/').to_ascii_lowercase())
        })
        .collect();
    AuthConfig {
        identity_key: a.identity_key.clone(),
        login_url: a.login_url.clone(),
        case_sensitive: a.case_sensitive,
        protect,
        websocket_origins,
    }
}
