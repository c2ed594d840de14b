//! Connecting: start-up errors, an outage and recovery, passwords, TLS.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test]
async fn an_unreachable_redis_fails_start_up_naming_the_url_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = redis_config(
        &format!("url = \"redis://app:hunter2@127.0.0.1:{port}\"\nconnect_timeout = \"300ms\""),
        "",
    );
    let started = std::time::Instant::now();
    let error = RedisStore::connect(&config)
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("redis://app:***@127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.contains("store.url"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn a_dead_redis_is_unavailable_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start_persistent("a_dead_redis_is_unavailable") else {
        return;
    };
    let config = redis_config(
        &format!("url = \"{}\"\ncommand_timeout = \"300ms\"", server.url()),
        "",
    );
    let store = RedisStore::connect(&config).await.unwrap();
    let id = conformance::create(&store, json!({"user": "ada"}), Duration::from_secs(60)).await;
    server.kill();
    let started = std::time::Instant::now();
    assert!(matches!(
        store.load(&id, true).await,
        Err(StoreError::Unavailable(_))
    ));
    let ops = [SessionOp::Destroy];
    let commit = Commit {
        current: Some(&id),
        ops: &ops,
        fresh_id: None,
        ttl: Duration::from_secs(60),
        max_bytes: 65536,
        rotate_on: None,
        lifetimes: Default::default(),
    };
    assert!(matches!(
        store.commit(commit).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.load(&id, true).await {
            Ok(Loaded::Live(stored)) => {
                assert_eq!(stored.data.map()["user"], json!("ada"));
                break;
            }
            Ok(_) => panic!("the session was lost across the restart"),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("still unavailable 10 s after the restart: {error}"),
        }
    }
}

#[tokio::test]
async fn the_password_comes_from_password_env_and_a_wrong_one_fails_start_up() {
    let Some(server) = RedisServer::start("the_password_comes_from_password_env") else {
        return;
    };
    // A variable every environment has, so the test sets none (setting
    // variables races with other threads reading them).
    let variable = "PATH";
    let password = std::env::var(variable).unwrap();
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "requirepass", &password])
            .unwrap(),
        "+OK"
    );
    // The URL's password is wrong; the environment's wins.
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port);
    let config = redis_config(
        &format!("url = \"{url}\"\npassword_env = \"{variable}\""),
        "",
    );
    let store = RedisStore::connect(&config).await.unwrap();
    assert!(store
        .load(&SessionId::generate(), true)
        .await
        .unwrap()
        .live()
        .is_none());

    let without = redis_config(&format!("url = \"{url}\""), "");
    let error = RedisStore::connect(&without)
        .await
        .err()
        .expect("wrong password");
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("redis://:***@127.0.0.1:{}", server.port)),
        "{shown}"
    );
    assert!(!shown.contains("wrong@"), "{shown}");
}

#[tokio::test]
async fn a_unix_socket_takes_its_password_from_the_url_and_never_shows_it() {
    let Some(server) = RedisServer::start_with_socket("a_unix_socket_takes_its_password") else {
        return;
    };
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "requirepass", "hunter2"])
            .unwrap(),
        "+OK"
    );
    let socket = server.socket_url();
    let config = redis_config(&format!("url = \"{socket}?db=3&pass=hunter2\""), "");
    let store = RedisStore::connect(&config).await.unwrap();
    let id = conformance::create(&store, json!({"user": "ada"}), Duration::from_secs(60)).await;
    let live = store.load(&id, true).await.unwrap();
    assert_eq!(live.live().unwrap().map()["user"], json!("ada"));
    // In the database the URL names, under connect-redis's key.
    let key = format!("sess:{}", id.as_str());
    for (db, expected) in [(0, false), (3, true)] {
        let url = format!("redis://:hunter2@127.0.0.1:{}/{db}", server.port);
        let mut plain = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut plain)
            .await
            .unwrap();
        assert_eq!(exists, expected, "db {db}");
    }

    let wrong = redis_config(&format!("url = \"{socket}?pass=not-the-password-7c1\""), "");
    let shown = RedisStore::connect(&wrong)
        .await
        .err()
        .expect("wrong password")
        .to_string();
    assert!(shown.contains(&format!("{socket}?pass=***")), "{shown}");
    assert!(!shown.contains("not-the-password"), "{shown}");

    let missing = redis_config(
        "url = \"unix:///nonexistent/redis.sock\"\nconnect_timeout = \"300ms\"",
        "",
    );
    let shown = RedisStore::connect(&missing)
        .await
        .err()
        .expect("no socket there")
        .to_string();
    assert!(shown.contains("unix:///nonexistent/redis.sock"), "{shown}");
    assert!(shown.contains("store.url"), "{shown}");
}

/// A test CA and a certificate for 127.0.0.1 signed by it, made with
/// openssl in `dir`: (CA, server certificate, server key).
fn test_certificates(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=cloakroom test CA",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.pem"),
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ],
        &[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &path("ext.cnf"),
            "-out",
            &path("server.pem"),
        ],
    ];
    for args in steps {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    }
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[tokio::test]
async fn rediss_urls_speak_tls_and_verify_the_server() {
    let test = "rediss_urls_speak_tls_and_verify_the_server";
    if !super::test_server::require("redis-server", test)
        || !super::test_server::require("openssl", test)
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-tls-{}-{}",
        std::process::id(),
        super::test_server::free_port(false)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = test_certificates(&dir);
    let tls_port = super::test_server::free_port(false).to_string();
    let _server = RedisServer::spawn(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let config = redis_config(&format!("url = \"rediss://127.0.0.1:{tls_port}\""), "");
    // The system's roots do not know the test CA: refused.
    let refused = RedisStore::connect(&config)
        .await
        .err()
        .expect("an unknown CA");
    assert!(
        refused.to_string().contains("rediss://127.0.0.1"),
        "{refused}"
    );
    // rustls-native-certs reads SSL_CERT_FILE, as OpenSSL does: that is how
    // a private CA is trusted. (Only this test uses TLS, and no other thread
    // of the test process reads the variable through libc meanwhile.)
    std::env::set_var("SSL_CERT_FILE", &ca);
    let store = RedisStore::connect(&config).await.unwrap();
    let id = conformance::create(&store, json!({"user": "ada"}), Duration::from_secs(60)).await;
    assert!(store.load(&id, true).await.unwrap().live().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
