//! Live reloads of the real binary's `proxy.toml` on SIGHUP: routes and
//! secrets change without dropping a connection (a keep-alive connection
//! opened before serves its next request on the new configuration), a bad
//! file is refused and the old configuration keeps serving, and keys that
//! need a restart are named and kept.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

struct Ports {
    proxy: u16,
    ops: u16,
}

fn config_text(ports: &Ports, upstream: &Upstream, secrets: &[&str], protect: &[&str]) -> String {
    let secrets = secrets
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\nshutdown_grace = \"5s\"\n\
         [upstream]\nurl = \"{}\"\n[session]\nsecrets = [{secrets}]\n\
         [ops]\nlisten = \"127.0.0.1:{}\"\n",
        ports.proxy,
        upstream.url(),
        ports.ops
    );
    for prefix in protect {
        text.push_str(&format!("[[auth.protect]]\nprefix = \"{prefix}\"\n"));
    }
    text
}

/// One request on an open connection; its status.
async fn status_on(connection: &mut TcpStream, path: &str) -> u16 {
    connection
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(connection.read(&mut byte).await.unwrap(), 1, "closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    connection.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

/// Waits until `/metrics` shows `count` reloads with `result`.
async fn reloads(ops: u16, result: &str, count: u32) -> String {
    let sample = format!("cloakroom_config_reloads_total{{result=\"{result}\"}} {count}");
    for _ in 0..100 {
        let text = metrics_text(SocketAddr::from(([127, 0, 0, 1], ops))).await;
        if text.contains(&sample) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never saw {sample}");
}

#[tokio::test]
async fn sighup_reloads_routes_and_secrets_and_refuses_a_bad_file() {
    let upstream = Upstream::start().await;
    let ports = Ports {
        proxy: free_port(),
        ops: free_port(),
    };
    let (old, new) = (
        "reload-old-secret-0123456789abcdef-0123",
        "reload-new-secret-0123456789abcdef-4567",
    );
    let file = TempFile::new(
        "reload",
        &config_text(&ports, &upstream, &[old], &["/account"]),
    );
    let (mut child, log) = spawn_logging_binary(file.path());
    wait_for_port(ports.proxy, &mut child).await;
    let base = format!("http://127.0.0.1:{}", ports.proxy);

    let client = browser();
    let login = client
        .post(format!("{base}/login"))
        .header("x-test-set-session", "{\"user\":{\"name\":\"ada\"}}")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let mut connection = TcpStream::connect(("127.0.0.1", ports.proxy))
        .await
        .unwrap();
    assert_eq!(status_on(&mut connection, "/admin").await, 200);

    // A new secret first, the old one still verifying; a new login-only route.
    std::fs::write(
        file.path(),
        config_text(&ports, &upstream, &[new, old], &["/account", "/admin"]),
    )
    .unwrap();
    hang_up(&child);
    reloads(ports.ops, "applied", 1).await;
    assert_eq!(
        status_on(&mut connection, "/admin").await,
        401,
        "the open connection serves its next request on the new routes"
    );
    let account = client.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(account.status(), 200, "the old secret still verifies");
    let regenerated = client
        .post(format!("{base}/login"))
        .header("x-test-set-session", "regenerate")
        .send()
        .await
        .unwrap();
    let cookie = sid_pair(&regenerated);
    client.get(format!("{base}/me")).send().await.unwrap();
    let id = upstream.last().header("x-session-id").unwrap().to_owned();
    let signed_with_new = cloakroom::Signer::new(&[cloakroom::config::Secret::new(new.into())])
        .sign(&cloakroom::SessionId::parse(&id).unwrap());
    assert_eq!(
        cookie
            .strip_prefix("sid=")
            .unwrap()
            .replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2B", "+"),
        signed_with_new,
        "new cookies are signed with the new secret"
    );

    // A bad file: refused, each problem logged, the old configuration serves.
    std::fs::write(
        file.path(),
        config_text(&ports, &upstream, &[new], &["account"]).replace("http://", "ftp://"),
    )
    .unwrap();
    hang_up(&child);
    let metrics = reloads(ports.ops, "refused", 1).await;
    assert!(
        metrics.contains("cloakroom_config_last_reload_success 0"),
        "{metrics}"
    );
    assert_eq!(status_on(&mut connection, "/admin").await, 401);
    let account = client.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(
        account.status(),
        200,
        "the configuration in force still serves"
    );

    // A key that needs a restart: named, and kept.
    let moved = free_port();
    std::fs::write(
        file.path(),
        config_text(&ports, &upstream, &[new, old], &["/account"]).replace(
            &format!("127.0.0.1:{}", ports.proxy),
            &format!("127.0.0.1:{moved}"),
        ),
    )
    .unwrap();
    hang_up(&child);
    reloads(ports.ops, "applied", 2).await;
    assert_eq!(
        status_on(&mut connection, "/admin").await,
        200,
        "routes applied"
    );
    assert!(TcpStream::connect(("127.0.0.1", moved)).await.is_err());

    drop(connection);
    let status = terminate(&mut child).await;
    assert!(status.success(), "{status}");
    let log = log.await.unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("upstream.url"), "the bad key is named: {log}");
    assert!(
        log.contains("auth.protect[0].prefix"),
        "each problem is named: {log}"
    );
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(
        log.contains("server.listen"),
        "the restart-only key is named: {log}"
    );
    for secret in [old, new] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn watch_config_reloads_when_the_file_changes() {
    let upstream = Upstream::start().await;
    let ports = Ports {
        proxy: free_port(),
        ops: free_port(),
    };
    let secret = "watch-secret-0123456789abcdef-0123456789";
    let file = TempFile::new("watch", &config_text(&ports, &upstream, &[secret], &[]));
    let (mut child, _log) = spawn_logging_binary_with(file.path(), &["--watch-config"]);
    wait_for_port(ports.proxy, &mut child).await;
    let mut connection = TcpStream::connect(("127.0.0.1", ports.proxy))
        .await
        .unwrap();
    assert_eq!(status_on(&mut connection, "/private").await, 200);
    // Written without a signal: the watch notices within seconds.
    std::fs::write(
        file.path(),
        config_text(&ports, &upstream, &[secret], &["/private"]),
    )
    .unwrap();
    for _ in 0..100 {
        if status_on(&mut connection, "/private").await == 401 {
            let status = terminate(&mut child).await;
            assert!(status.success(), "{status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the changed file was not reloaded within 10 s");
}
