use super::*;

const MINIMAL: &str = r#"
[upstream]
url = "http://127.0.0.1:3000"
[session]
secrets = ["0123456789abcdef0123456789abcdef"]
"#;

#[test]
fn the_example_proxy_toml_is_valid() {
    let config = Config::from_toml_str(include_str!("../../proxy.toml")).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.auth.protect[0].prefix, "/account");
}

#[test]
fn defaults_follow_express_session() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.cookie.name, "sid");
    assert!(config.cookie.http_only);
    assert_eq!(config.cookie.same_site, SameSite::Lax);
    assert_eq!(config.cookie.secure, Secure::Auto);
    assert!(!config.session.save_uninitialized);
    assert_eq!(config.auth.identity_key, "user");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let text = r#"
[server]
listen = "nowhere"
header_read_timeout = "10"
[upstream]
url = "ftp://x"
[cookie]
same_site = "sometimes"
[session]
secrets = ["x"]
[session.headers.fields]
"X-Session-User" = "/user"
[[auth.protect]]
prefix = "/a%2fb"
deny = "maybe"
"#;
    let error = Config::from_toml_str(text).unwrap_err();
    let keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
    for key in [
        "server.listen",
        "server.header_read_timeout",
        "upstream.url",
        "cookie.same_site",
        "session.headers.fields.\"X-Session-User\"",
        "auth.protect[0].deny",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let shown = error.to_string();
    assert!(shown.contains("\"250ms\""), "the fix is named: {shown}");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let error =
        Config::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
    assert_eq!(error.issues.len(), 1);
    assert!(error.issues[0].key.contains("line 3"), "{:?}", error.issues);
    assert!(error.issues[0].message.contains("lisen"));
}

#[test]
fn a_protected_login_page_is_refused() {
    let text = format!("{MINIMAL}\n[auth]\nlogin_url = \"/account/login\"\n[[auth.protect]]\nprefix = \"/account\"\n");
    let error = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(error.issues[0].key, "auth.login_url");
}

#[test]
fn missing_secrets_give_an_ephemeral_one_and_a_warning() {
    let config = Config::from_toml_str("[upstream]\nurl = \"http://127.0.0.1:1\"\n").unwrap();
    assert!(config.session.secrets.ephemeral);
    assert!(config.warnings.iter().any(|w| w.contains("ephemeral")));
}

#[test]
fn cookie_max_age_sets_the_store_ttl() {
    let text = format!("{MINIMAL}\n[cookie]\nmax_age = \"2h\"\n");
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.session.ttl, Duration::from_secs(7200));
}
