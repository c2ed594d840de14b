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
fn a_field_header_named_twice_in_two_spellings_is_refused() {
    let text = format!(
        "{MINIMAL}\n[session.headers.fields]\n\"X-User\" = \"/user\"\n\"x-user\" = \"/name\"\n\"X-Role\" = \"/role\"\n"
    );
    let error = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(error.issues.len(), 1, "{:?}", error.issues);
    // The map's order: `X-Role`, `X-User`, then its other spelling.
    assert_eq!(error.issues[0].key, "session.headers.fields.\"x-user\"");
    assert!(
        error.issues[0].message.contains("already"),
        "{}",
        error.issues[0].message
    );
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
fn websocket_origins_are_normalised_and_paths_refused() {
    let text = format!("{MINIMAL}\n[auth]\nwebsocket_origins = [\"HTTPS://App.Example/\", \"http://localhost:3000\"]\n");
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(
        config.auth.websocket_origins,
        ["https://app.example", "http://localhost:3000"]
    );
    for bad in [
        "app.example",
        "https://app.example/chat",
        "ftp://app.example",
    ] {
        let text = format!("{MINIMAL}\n[auth]\nwebsocket_origins = [\"ok\", \"{bad}\"]\n");
        let error = Config::from_toml_str(&text).unwrap_err();
        assert!(
            issue_keys(&error).contains(&"auth.websocket_origins[1]"),
            "{bad}: {error:?}"
        );
    }
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

fn redis_store(text: &str) -> Result<RedisConfig, ConfigError> {
    let config = Config::from_toml_str(&format!("{MINIMAL}\n[store]\nkind = \"redis\"\n{text}"))?;
    match config.store {
        StoreConfig::Redis(redis) => Ok(redis),
        other => panic!("not a Redis store: {other:?}"),
    }
}

fn issue_keys(error: &ConfigError) -> Vec<&str> {
    error.issues.iter().map(|i| i.key.as_str()).collect()
}

#[test]
fn a_redis_store_takes_connect_redis_defaults() {
    let redis = redis_store("url = \"redis://127.0.0.1:6379\"").unwrap();
    assert_eq!(redis.prefix, "sess:");
    assert_eq!(redis.connect_timeout, Duration::from_secs(2));
    assert_eq!(redis.command_timeout, Duration::from_millis(500));
    assert!(matches!(redis.endpoint, RedisEndpoint::Single(_)));
    assert!(redis.password.is_none());
    let cookie = &redis.record_cookie;
    assert_eq!(
        (cookie.path.as_str(), cookie.same_site.as_str()),
        ("/", "lax")
    );
    assert!(cookie.http_only && !cookie.persistent && cookie.secure.is_none());

    let cluster = redis_store(
        "cluster_urls = [\"rediss://10.0.0.1:6379\", \"rediss://10.0.0.2:6379\"]\nprefix = \"app:\"",
    )
    .unwrap();
    assert!(matches!(cluster.endpoint, RedisEndpoint::Cluster(ref urls) if urls.len() == 2));
    assert_eq!(cluster.prefix, "app:");
    assert_eq!(redis.cache_sessions, 100_000, "one server: cached");
    assert_eq!(cluster.cache_sessions, 0, "a cluster: not cached");
    let off = redis_store("url = \"redis://127.0.0.1:6379\"\ncache_sessions = 0").unwrap();
    assert_eq!(off.cache_sessions, 0);
}

#[test]
fn the_client_side_cache_is_refused_on_a_cluster_and_the_memory_store() {
    let error = redis_store("cluster_urls = [\"redis://a:1\"]\ncache_sessions = 10").unwrap_err();
    assert_eq!(issue_keys(&error), ["store.cache_sessions"]);
    assert!(
        error.issues[0].message.contains("one Redis server"),
        "{error}"
    );
    let text = format!("{MINIMAL}\n[store]\ncache_sessions = 10\n");
    let error = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(issue_keys(&error), ["store.cache_sessions"]);
}

#[test]
fn every_redis_store_problem_is_reported_with_its_key() {
    let error = redis_store(
        "url = \"http://x:1\"\ncluster_urls = []\nmax_sessions = 5\ncommand_timeout = \"0ms\"\nconnect_timeout = \"soon\"\npassword_env = \"CLOAKROOM_TEST_UNSET_VARIABLE\"",
    )
    .unwrap_err();
    let keys = issue_keys(&error);
    for key in [
        "store.cluster_urls",
        "store.max_sessions",
        "store.command_timeout",
        "store.connect_timeout",
        "store.password_env",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let shown = error.to_string();
    assert!(shown.contains("not both"), "{shown}");
    assert!(shown.contains("CLOAKROOM_TEST_UNSET_VARIABLE"), "{shown}");

    for (text, key, says) in [
        ("", "store.url", "is required"),
        ("url = \"http://127.0.0.1:6379\"", "store.url", "redis://"),
        ("url = \"http://127.0.0.1:6379\"", "store.url", "unix://"),
        ("url = \"redis://\"", "store.url", "not a usable Redis URL"),
        (
            "cluster_urls = [\"redis://a:1\", \"rediss://b:1\"]",
            "store.cluster_urls",
            "same scheme",
        ),
    ] {
        let error = redis_store(text).unwrap_err();
        assert_eq!(issue_keys(&error), [key], "{text}");
        assert!(error.issues[0].message.contains(says), "{text}: {error}");
    }
}

#[test]
fn redis_keys_on_the_memory_store_are_refused() {
    let text = format!("{MINIMAL}\n[store]\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"x:\"\n");
    let error = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(issue_keys(&error), ["store.url", "store.prefix"]);
    assert!(error.issues[0].message.contains("kind = \"redis\""));
}

#[test]
fn redis_passwords_never_show() {
    let redis = redis_store("url = \"redis://app:hunter2@cache.internal:6380/2\"").unwrap();
    let RedisEndpoint::Single(url) = &redis.endpoint else {
        unreachable!()
    };
    assert_eq!(url.redacted(), "redis://app:***@cache.internal:6380/2");
    assert!(!format!("{redis:?}").contains("hunter2"));
    let error = redis_store("url = \"ftp://app:hunter2@cache.internal\"").unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn a_unix_socket_names_one_redis_server_and_its_password_never_shows() {
    for scheme in ["unix", "redis+unix"] {
        let redis = redis_store(&format!(
            "url = \"{scheme}:///run/redis/redis.sock?db=2&pass=hunter2\""
        ))
        .unwrap();
        let RedisEndpoint::Single(url) = &redis.endpoint else {
            unreachable!()
        };
        assert!(url.is_unix_socket());
        assert_eq!(
            url.redacted(),
            format!("{scheme}:///run/redis/redis.sock?db=2&pass=***")
        );
        assert!(!format!("{redis:?}").contains("hunter2"));
        assert_eq!(redis.cache_sessions, 100_000, "one server: cached");
    }

    for (text, says) in [
        (
            "url = \"unix://redis.sock\"",
            "write it like \"unix:///run/redis/redis.sock?db=0\"",
        ),
        (
            "url = \"unix:///run/redis.sock?db=x\"",
            "not a usable Redis URL",
        ),
        (
            "cluster_urls = [\"unix:///run/redis.sock\"]",
            "names one server",
        ),
    ] {
        let error = redis_store(text).unwrap_err();
        assert_eq!(error.issues.len(), 1, "{text}: {error}");
        assert!(error.issues[0].message.contains(says), "{text}: {error}");
    }
    let error = redis_store("url = \"unix:///run/redis.sock?pass=hunter2&db=x\"").unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn the_redis_example_in_proxy_toml_is_valid_once_uncommented() {
    let example = include_str!("../../proxy.toml");
    let text: String = example
        .lines()
        .filter(|line| !line.starts_with("max_sessions") && !line.starts_with("sweep_interval"))
        .map(|line| {
            let uncommented = [
                "# url",
                "# prefix",
                "# connect_timeout",
                "# command_timeout",
            ]
            .iter()
            .any(|key| line.starts_with(key));
            match line {
                "kind = \"memory\"" => "kind = \"redis\"".to_owned(),
                _ if uncommented => line.trim_start_matches("# ").to_owned(),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::from_toml_str(&text).unwrap();
    let StoreConfig::Redis(redis) = config.store else {
        panic!("not a Redis store")
    };
    assert_eq!(redis.endpoint.redacted(), "redis://127.0.0.1:6379/0");
    assert_eq!(redis.prefix, "sess:");
}

fn with_cookie(cookie: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(&format!("{MINIMAL}[cookie]\n{cookie}\n"))
}

fn failing_keys(cookie: &str) -> Vec<String> {
    match with_cookie(cookie) {
        Ok(_) => Vec::new(),
        Err(error) => error.issues.into_iter().map(|i| i.key).collect(),
    }
}

#[test]
fn cookie_prefixes_follow_the_browsers_rules() {
    // `__Host-`: Secure, no domain, path `/`, each a problem of its own.
    assert_eq!(
        failing_keys(
            "name = \"__Host-sid\"\nsecure = \"auto\"\ndomain = \"example.com\"\npath = \"/app\""
        ),
        ["cookie.secure", "cookie.domain", "cookie.path"]
    );
    assert_eq!(
        failing_keys("name = \"__host-sid\"\nsecure = false"),
        ["cookie.secure"]
    );
    assert!(with_cookie("name = \"__Host-sid\"\nsecure = true").is_ok());
    // `__Secure-`: Secure only.
    assert_eq!(failing_keys("name = \"__Secure-sid\""), ["cookie.secure"]);
    assert!(
        with_cookie("name = \"__Secure-sid\"\nsecure = true\ndomain = \"example.com\"").is_ok()
    );
    let error = with_cookie("name = \"__Host-sid\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("must be Secure"), "{error}");
}

#[test]
fn a_cookie_scripts_can_read_draws_a_warning() {
    let config = with_cookie("http_only = false").unwrap();
    assert!(
        config.warnings.iter().any(|w| w.contains("http_only")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn the_identity_pointer_follows_the_identity_key_unless_set() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.auth.identity_pointer, "/user");
    assert_eq!(config.auth.max_sessions_per_user, None);
    assert_eq!(config.auth.session_limit_policy, LimitPolicy::EvictOldest);
    let text = format!("{MINIMAL}[auth]\nidentity_key = \"a/b\"\n");
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(
        config.auth.identity_pointer, "/a~1b",
        "escaped as RFC 6901 says"
    );
    let text = format!(
        "{MINIMAL}[auth]\nidentity_pointer = \"/user/id\"\nmax_sessions_per_user = 3\nsession_limit_policy = \"refuse\"\n"
    );
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.auth.identity_pointer, "/user/id");
    assert_eq!(config.auth.max_sessions_per_user, Some(3));
    assert_eq!(config.auth.session_limit_policy, LimitPolicy::Refuse);
}

#[test]
fn bad_session_limits_and_pointers_are_refused() {
    let text = format!(
        "{MINIMAL}[auth]\nidentity_pointer = \"user\"\nmax_sessions_per_user = 0\nsession_limit_policy = \"newest\"\n"
    );
    let error = Config::from_toml_str(&text).unwrap_err();
    let keys = issue_keys(&error);
    for key in [
        "auth.identity_pointer",
        "auth.max_sessions_per_user",
        "auth.session_limit_policy",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

#[test]
fn the_admin_token_comes_from_exactly_one_place() {
    let token = "tok-0123456789abcdef0123456789abcdef";
    let path = std::env::temp_dir().join(format!("cloakroom-admin-token-{}", std::process::id()));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let file_key = format!("admin_token_file = \"{}\"\n", path.display());
    let config = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{file_key}")).unwrap();
    let admin = config.ops.admin_token.expect("a token");
    assert!(admin.matches(token.as_bytes()));
    assert!(!format!("{admin:?}").contains(token));
    assert!(Config::from_toml_str(MINIMAL)
        .unwrap()
        .ops
        .admin_token
        .is_none());

    // A variable no other test sets.
    let name = format!("CLOAKROOM_TEST_ADMIN_TOKEN_{}", std::process::id());
    std::env::set_var(&name, token);
    let env_key = format!("admin_token_env = \"{name}\"\n");
    let config = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{env_key}")).unwrap();
    assert!(config
        .ops
        .admin_token
        .expect("a token")
        .matches(token.as_bytes()));

    let both = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{env_key}{file_key}"));
    assert!(issue_keys(&both.unwrap_err()).contains(&"ops.admin_token_env"));
    std::fs::write(&path, "short\n").unwrap();
    let short = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{file_key}"));
    assert!(issue_keys(&short.unwrap_err()).contains(&"ops.admin_token_file"));
    std::fs::remove_file(&path).unwrap();
    let missing = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{file_key}"));
    assert!(issue_keys(&missing.unwrap_err()).contains(&"ops.admin_token_file"));
    let unset = "admin_token_env = \"CLOAKROOM_TEST_NO_SUCH_VARIABLE\"\n";
    let unset = Config::from_toml_str(&format!("{MINIMAL}[ops]\n{unset}"));
    assert!(issue_keys(&unset.unwrap_err()).contains(&"ops.admin_token_env"));
}
