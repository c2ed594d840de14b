//! Smoke tests of the real `cloakroom` binary: `check`, `secret`, serving
//! and draining on SIGTERM, and logs that hold no session secrets.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cloakroom");

/// The binary with a predictable environment: no secrets or log filter
/// inherited from whoever runs the tests.
fn cloakroom() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("CLOAKROOM_SECRETS")
        .env_remove("RUST_LOG");
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `decodeURIComponent` for the ASCII a cookie value holds.
fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(byte);
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn check_accepts_the_example_proxy_toml() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let (code, stdout, stderr) = run(cloakroom().arg("check").arg("--config").arg(&example));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}

#[test]
fn check_names_every_bad_key_and_exits_64() {
    let config = TempFile::new(
        "bad",
        r#"
[server]
listen = "nowhere"
max_headers = 3
[upstream]
url = "ftp://app.internal"
[cookie]
same_site = "sometimes"
[session]
secrets = ["0123456789abcdef0123456789abcdef"]
ttl = "forever"
"#,
    );
    let (code, _, stderr) = run(cloakroom().arg("check").arg("--config").arg(config.path()));
    assert_eq!(code, Some(64), "stderr: {stderr}");
    for key in [
        "server.listen",
        "server.max_headers",
        "upstream.url",
        "cookie.same_site",
        "session.ttl",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

#[test]
fn check_names_a_missing_upstream_ca_file_and_exits_64() {
    let config = TempFile::new(
        "ca",
        r#"
[upstream]
url = "https://app.internal:8443"
ca_file = "/nonexistent/cloakroom-upstream-ca.pem"
[session]
secrets = ["0123456789abcdef0123456789abcdef"]
"#,
    );
    let (code, _, stderr) = run(cloakroom().arg("check").arg("--config").arg(config.path()));
    assert_eq!(code, Some(64), "stderr: {stderr}");
    assert!(
        stderr.contains("upstream.ca_file: /nonexistent/cloakroom-upstream-ca.pem: does not exist"),
        "{stderr}"
    );
}

#[test]
fn check_names_a_missing_config_file_and_exits_64() {
    let missing = TempFile::new("missing", "");
    let path = missing.path().to_owned();
    drop(missing);
    let (code, _, stderr) = run(cloakroom().arg("check").arg("--config").arg(&path));
    assert_eq!(code, Some(64), "stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "the path is not named in: {stderr}"
    );
}

#[test]
fn secret_prints_a_fresh_url_safe_secret_each_time() {
    let secret = || {
        let (code, stdout, stderr) = run(cloakroom().arg("secret"));
        assert_eq!(code, Some(0), "stderr: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stdout:?}");
        let secret = lines[0].to_owned();
        assert_eq!(secret.len(), 43, "{secret}");
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe base64 without padding: {secret}"
        );
        secret
    };
    assert_ne!(secret(), secret());
}

#[test]
fn check_without_config_uses_the_embedded_one_and_warns_of_the_ephemeral_secret() {
    let (code, stdout, stderr) = run(cloakroom().arg("check"));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("ephemeral"), "{stderr}");
}

#[tokio::test]
async fn the_binary_serves_drains_on_sigterm_and_logs_no_session_secrets() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let secret = format!(
        "log-hygiene-secret-{}-{port}-0123456789abcdef",
        std::process::id()
    );
    let user = format!("hygiene-user-{port}");
    let config = TempFile::new(
        "serve",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n\
             [upstream]\nurl = \"{}\"\n[session]\nsecrets = [\"{secret}\"]\n",
            upstream.url()
        ),
    );
    let (mut child, log) = spawn_logging_binary(config.path());
    wait_for_port(port, &mut child).await;

    let base = format!("http://127.0.0.1:{port}");
    let client = browser();
    let login = client
        .post(format!("{base}/login"))
        .header("x-test-set-session", "regenerate")
        .header(
            "x-test-set-session",
            json!({"user": {"name": user}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let pair = sid_pair(&login);
    let cookie_value = pair.strip_prefix("sid=").unwrap().to_owned();

    client.get(format!("{base}/me")).send().await.unwrap();
    let seen = upstream.last();
    assert_eq!(seen.session(), Some(json!({"user": {"name": user}})));
    let id = seen.header("x-session-id").unwrap().to_owned();

    // Paths that log: a refused Set-Session and a tampered cookie.
    let refused = client
        .get(format!("{base}/save"))
        .header("x-test-set-session", format!("{{\"user\":\"{user}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let last = if pair.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &pair[..pair.len() - 1]);
    bare()
        .get(format!("{base}/"))
        .header("cookie", &tampered)
        .send()
        .await
        .unwrap();
    drop(client);

    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let log = log.await.unwrap();
    assert!(log.contains("listening"), "the log was captured: {log}");
    assert!(
        log.contains("session saved under a new id"),
        "debug logging was on: {log}"
    );
    assert!(log.contains("Set-Session refused"), "{log}");
    assert!(log.contains("forged signature"), "{log}");
    let decoded = percent_decode(&cookie_value);
    let signature = decoded.rsplit('.').next().unwrap().to_owned();
    for (what, needle) in [
        ("session id", id.as_str()),
        ("cookie value", cookie_value.as_str()),
        ("decoded cookie value", decoded.as_str()),
        ("cookie signature", signature.as_str()),
        ("secret", secret.as_str()),
        ("user name", user.as_str()),
    ] {
        assert!(!log.contains(needle), "the log holds the {what}: {log}");
    }
}

#[tokio::test]
async fn a_flood_of_forged_cookies_does_not_flood_the_log() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let config = TempFile::new(
        "forged",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"1s\"\n\
             [upstream]\nurl = \"{}\"\n[session]\nsecrets = [\"{SECRET}\"]\n",
            upstream.url()
        ),
    );
    let (mut child, log) = spawn_logging_binary(config.path());
    wait_for_port(port, &mut child).await;
    let client = bare();
    for n in 0..300 {
        let forged = format!("sid=s%3A{n:043}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let response = client
            .get(format!("http://127.0.0.1:{port}/"))
            .header("cookie", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    terminate(&mut child).await;
    let log = log.await.unwrap();
    let lines = log
        .lines()
        .filter(|l| l.contains("forged signature"))
        .count();
    assert!(lines >= 1, "the first forged cookie is logged: {log}");
    assert!(lines <= 2, "{lines} lines for 300 forged cookies: {log}");
}

#[tokio::test]
async fn the_access_log_is_one_json_line_per_request_without_secrets() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let secret = format!("access-log-secret-{port}-0123456789abcdef");
    let config = TempFile::new(
        "access",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\n\
             [session]\nsecrets = [\"{secret}\"]\n[log]\nformat = \"json\"\n\
             [[auth.protect]]\nprefix = \"/account\"\n",
            upstream.url()
        ),
    );
    let (mut child, log) = spawn_logging_binary(config.path());
    wait_for_port(port, &mut child).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = browser();
    let login = client
        .post(format!("{base}/login?token=query-secret-{port}"))
        .header("authorization", format!("Bearer bearer-secret-{port}"))
        .header("x-test-set-session", "{\"user\":{\"name\":\"ada\"}}")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = sid_pair(&login);
    client.get(format!("{base}/account")).send().await.unwrap();
    let id = upstream.last().header("x-session-id").unwrap().to_owned();
    bare().get(format!("{base}/account")).send().await.unwrap();
    assert!(terminate(&mut child).await.success());

    let log = log.await.unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .filter(|line: &serde_json::Value| line["target"] == "cloakroom::access")
        .collect();
    assert_eq!(lines.len(), 3, "one line per request: {log}");
    let (login, account, denied) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(login["method"], "POST");
    assert_eq!(login["path"], "/login", "no query by default");
    assert_eq!(login["status"], 200);
    assert_eq!(login["session"], "created");
    assert_eq!(login["protocol"], "HTTP/1.1");
    assert!(login["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(login["upstream_ms"].as_f64().unwrap() > 0.0);
    let tag = login["sid"].as_str().unwrap();
    assert_eq!(tag.len(), 12);
    assert_eq!(account["session"], "loaded");
    assert_eq!(account["sid"], tag, "one session, one tag");
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["session"], "denied");
    assert!(denied.get("upstream_ms").is_none(), "never went upstream");
    for (what, needle) in [
        ("session id", id.as_str()),
        ("cookie", cookie.strip_prefix("sid=").unwrap()),
        ("query", "query-secret"),
        ("authorization", "bearer-secret"),
        ("secret", secret.as_str()),
        ("session data", "ada"),
    ] {
        assert!(!log.contains(needle), "the log holds the {what}: {log}");
    }
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let config = TempFile::new(
        "no-access",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\n[log]\naccess = false\n",
            upstream.url()
        ),
    );
    let (mut child, log) = spawn_logging_binary(config.path());
    wait_for_port(port, &mut child).await;
    let response = bare()
        .get(format!("http://127.0.0.1:{port}/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(terminate(&mut child).await.success());
    let log = log.await.unwrap();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains("cloakroom::access"), "{log}");
}
