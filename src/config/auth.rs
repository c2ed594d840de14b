//! The `[auth]` table: the identity key, the login URL and the login-only
//! prefixes, compiled to canonical paths.

use http::Uri;

use super::raw::RawConfig;
use super::{AuthConfig, Checker, Deny, ProtectRule};
use crate::domain::cross_origin::CrossOrigin;
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
            let prefix = canonical_prefix(&format!("{key}.prefix"), &rule.prefix, check)?;
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
    let websocket_origins = origins("auth.websocket_origins", &a.websocket_origins, check);
    let c = &a.cross_origin;
    let bypass = c
        .bypass
        .iter()
        .enumerate()
        .filter_map(|(index, prefix)| {
            let key = format!("auth.cross_origin.bypass[{index}]");
            canonical_prefix(&key, prefix, check)
        })
        .collect();
    let cross_origin = CrossOrigin {
        enabled: c.enabled,
        trusted_origins: origins(
            "auth.cross_origin.trusted_origins",
            &c.trusted_origins,
            check,
        ),
        bypass,
    };
    let forward_auth_path = a.forward_auth_path.as_ref().and_then(|text| {
        let valid = text.starts_with('/')
            && path::canonicalize(text).is_ok_and(|canonical| canonical == text.as_str());
        if !valid {
            check.fail(
                "auth.forward_auth_path",
                format!("`{text}` is not a plain path like \"/_cloakroom/auth\""),
            );
            return None;
        }
        if text == login_path {
            check.fail(
                "auth.forward_auth_path",
                "must differ from auth.login_url's path",
            );
            return None;
        }
        Some(text.clone())
    });
    AuthConfig {
        identity_key: a.identity_key.clone(),
        login_url: a.login_url.clone(),
        case_sensitive: a.case_sensitive,
        protect,
        websocket_origins,
        cross_origin,
        forward_auth_path,
        rotate_on_login: a.rotate_on_login,
    }
}

/// Origins (`scheme://host[:port]`), lower case, each checked.
fn origins(key: &str, list: &[String], check: &mut Checker) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(index, origin)| {
            let valid = origin.parse::<Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
            });
            if !valid {
                check.fail(
                    &format!("{key}[{index}]"),
                    format!("`{origin}` is not an origin like \"https://app.example\" (scheme, host and optional port only)"),
                );
                return None;
            }
            Some(origin.trim_end_matches('/').to_ascii_lowercase())
        })
        .collect()
}

/// A path prefix in canonical form, without a trailing slash (but `/`).
fn canonical_prefix(key: &str, prefix: &str, check: &mut Checker) -> Option<String> {
    match path::canonicalize(prefix) {
        Ok(p) if p != "*" => {
            let trimmed = p.trim_end_matches('/');
            Some(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        _ => {
            check.fail(
                key,
                format!("`{prefix}` is not a plain path like \"/account\""),
            );
            None
        }
    }
}
