//! The `[cookie]` and `[session]` tables: cookie attributes, secrets,
//! lifetimes, size limits and the session headers sent upstream.

use std::time::Duration;

use http::header::HeaderName;

use super::raw::{RawConfig, RawCookie, RawSecure, RawSession};
use super::{
    secrets, Checker, CookieSettings, SameSite, Secure, SessionConfig, SessionLifetime,
    RECOMMENDED_SECRET_BYTES,
};
use crate::domain::headers;

pub(super) fn build_cookie(raw: &RawConfig, check: &mut Checker) -> CookieSettings {
    let c = &raw.cookie;
    let name_ok = !c.name.is_empty()
        && c.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b));
    if !name_ok {
        check.fail(
            "cookie.name",
            format!(
                "`{}` is not a valid cookie name; use letters, digits, `-`, `_` or `.`",
                c.name
            ),
        );
    }
    if !c.path.starts_with('/') || c.path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        check.fail("cookie.path", "must start with `/` and contain no `;`");
    }
    if let Some(domain) = &c.domain {
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            check.fail(
                "cookie.domain",
                format!("`{domain}` is not a domain name; remove the key for a host-only cookie"),
            );
        }
    }
    let same_site = match c.same_site.to_ascii_lowercase().as_str() {
        "lax" => SameSite::Lax,
        "strict" => SameSite::Strict,
        "none" => SameSite::None,
        other => {
            check.fail(
                "cookie.same_site",
                format!("`{other}` is not one of \"lax\", \"strict\", \"none\""),
            );
            SameSite::Lax
        }
    };
    let secure = match &c.secure {
        RawSecure::Flag(true) => Secure::Always,
        RawSecure::Flag(false) => Secure::Never,
        RawSecure::Word(w) if w == "auto" => Secure::Auto,
        RawSecure::Word(w) => {
            check.fail(
                "cookie.secure",
                format!("`{w}` is not true, false or \"auto\""),
            );
            Secure::Auto
        }
    };
    if same_site == SameSite::None && secure == Secure::Never {
        check.fail("cookie.same_site", "\"none\" needs a Secure cookie (browsers drop it otherwise); set cookie.secure to true or \"auto\"");
    }
    check_prefix_rules(c, secure, check);
    if !c.http_only {
        check.warnings.push(
            "cookie.http_only = false lets the page's scripts read the session cookie: any XSS can steal the session".into(),
        );
    }
    let max_age = c
        .max_age
        .as_deref()
        .map(|text| check.positive_duration("cookie.max_age", text));
    CookieSettings {
        name: c.name.clone(),
        path: c.path.clone(),
        domain: c.domain.clone(),
        http_only: c.http_only,
        same_site,
        secure,
        max_age,
        rolling: c.rolling,
        forward_to_upstream: c.forward_to_upstream,
        clear_site_data: c.clear_site_data,
    }
}

/// Cookie name prefixes (RFC 6265bis §4.1.3): browsers silently drop a
/// `__Secure-` cookie without `Secure`, and a `__Host-` cookie without
/// `Secure`, with a `Domain`, or with a path other than `/`. Browsers match
/// the prefixes without regard to case.
fn check_prefix_rules(c: &RawCookie, secure: Secure, check: &mut Checker) {
    let name = c.name.to_ascii_lowercase();
    let host = name.starts_with("__host-");
    if (host || name.starts_with("__secure-")) && secure != Secure::Always {
        let prefix = if host { "__Host-" } else { "__Secure-" };
        check.fail(
            "cookie.secure",
            format!("a cookie named `{prefix}…` must be Secure (browsers drop it otherwise); set cookie.secure = true, or rename the cookie"),
        );
    }
    if host && c.domain.is_some() {
        check.fail(
            "cookie.domain",
            "a `__Host-` cookie may not have a domain (browsers drop it); remove cookie.domain, or rename the cookie",
        );
    }
    if host && c.path != "/" {
        check.fail(
            "cookie.path",
            "a `__Host-` cookie must have path \"/\" (browsers drop it otherwise); set cookie.path = \"/\", or rename the cookie",
        );
    }
}

pub(super) fn build_session(
    raw: &RawConfig,
    max_age: Option<Duration>,
    check: &mut Checker,
) -> Option<SessionConfig> {
    let s = &raw.session;
    let env_value = s
        .secrets_env
        .as_deref()
        .and_then(|name| std::env::var(name).ok());
    let secrets = secrets::resolve(secrets::SecretSources {
        inline: &s.secrets,
        env_value,
        file: s.secrets_file.as_deref(),
    })
    .map_err(|p| check.fail(p.key, p.message))
    .ok();
    if let Some(secrets) = &secrets {
        if secrets.ephemeral {
            let from = s
                .secrets_env
                .as_deref()
                .map_or(String::new(), |n| format!(" (set {n})"));
            check.warnings.push(format!(
                "no session secret configured{from}: using an ephemeral one; every session ends when the proxy restarts. Generate one with `cloakroom secret`"
            ));
        } else if secrets
            .list
            .iter()
            .any(|x| x.expose().len() < RECOMMENDED_SECRET_BYTES)
        {
            check.warnings.push(format!("a session secret is shorter than {RECOMMENDED_SECRET_BYTES} bytes; rotate to one from `cloakroom secret`"));
        }
    }
    let ttl = check.positive_duration("session.ttl", &s.ttl);
    let lifetime = build_lifetime(s, check);
    let mut fields: Vec<(HeaderName, String)> = Vec::new();
    for (name, pointer) in &s.headers.fields {
        let at = format!("session.headers.fields.\"{name}\"");
        match field_header(name, pointer) {
            // Names are case-insensitive: `X-User` and `x-user` are one
            // header, which would be sent twice.
            Ok((header, _)) if fields.iter().any(|(seen, _)| *seen == header) => {
                check.fail(
                    &at,
                    format!(
                        "`{name}` names a header already in the list (header names ignore case)"
                    ),
                );
            }
            Ok(field) => fields.push(field),
            Err(message) => check.fail(&at, message),
        }
    }
    Some(SessionConfig {
        secrets: secrets?,
        save_uninitialized: s.save_uninitialized,
        ttl: max_age.unwrap_or(ttl),
        lifetime,
        max_bytes: check.at_least("session.max_bytes", s.max_bytes, 2),
        max_set_session_bytes: check.at_least(
            "session.max_set_session_bytes",
            s.max_set_session_bytes,
            16,
        ),
        header_max_bytes: check.at_least("session.headers.max_bytes", s.headers.max_bytes, 2),
        header_keys: s.headers.keys.clone(),
        fields,
    })
}

/// The idle and absolute timeouts, the touch interval (a tenth of the idle
/// timeout by default, at least a second) and the "remember me" bound.
fn build_lifetime(s: &RawSession, check: &mut Checker) -> SessionLifetime {
    let mut optional = |key: &str, text: &Option<String>| {
        text.as_ref().map(|text| check.positive_duration(key, text))
    };
    let idle = optional("session.idle_timeout", &s.idle_timeout);
    let absolute = optional("session.absolute_timeout", &s.absolute_timeout);
    let touch = optional("session.touch_interval", &s.touch_interval);
    if let (Some(idle), Some(absolute)) = (idle, absolute) {
        if idle > absolute {
            check.warnings.push(
                "session.idle_timeout is longer than session.absolute_timeout, so it never ends a session by itself".into(),
            );
        }
    }
    let touch_interval = match (touch, idle) {
        (Some(touch), Some(idle)) if touch >= idle => {
            check.fail(
                "session.touch_interval",
                "must be shorter than session.idle_timeout (a tenth of it is the default)",
            );
            touch
        }
        (Some(touch), _) => touch,
        (None, Some(idle)) => (idle / 10).max(Duration::from_secs(1)).min(idle / 2),
        (None, None) => Duration::from_secs(60),
    };
    let remember_max = check.positive_duration("session.remember_max", &s.remember_max);
    SessionLifetime {
        idle,
        absolute,
        touch_interval,
        remember_max,
    }
}

fn field_header(name: &str, pointer: &str) -> Result<(HeaderName, String), String> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    if headers::is_reserved_name(header.as_str()) {
        return Err(format!(
            "`{name}` is a header Cloakroom manages itself; pick another name such as X-App-User"
        ));
    }
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON pointer; write it like \"/user/name\""
        ));
    }
    Ok((header, pointer.to_owned()))
}
