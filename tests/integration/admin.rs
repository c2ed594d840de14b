//! The admin API on the operations listener: off without a token (404),
//! 401 without the right one, and with it, on both stores: a user's
//! sessions listed by revoke handle (never by id), revoked one by one or
//! all at once, and the live sessions counted.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;
use crate::users::*;

#[tokio::test]
async fn the_admin_api_is_off_without_a_token_and_refuses_a_wrong_one() {
    let upstream = Upstream::start().await;
    let (_proxy, ops) = Proxy::start_with_ops(&upstream, USERS).await;
    let (status, _, _) = admin(ops, Method::GET, "/admin/sessions/count", Some(TOKEN)).await;
    assert_eq!(status, 404, "no token configured: no admin API");

    let (_token, token_keys) = token_file();
    let (_proxy, ops) = Proxy::start_with_ops(&upstream, &format!("{USERS}{token_keys}")).await;
    for token in [
        None,
        Some("wrong-token-0123456789abcdef0123456789"),
        Some(""),
    ] {
        for (method, path) in [
            (Method::GET, "/admin/sessions/count"),
            (Method::GET, "/admin/users/7/sessions"),
            (Method::DELETE, "/admin/users/7/sessions"),
            (Method::GET, "/admin/no/such/call"),
        ] {
            let (status, headers, _) = admin(ops, method, path, token).await;
            assert_eq!(status, 401, "{path} with {token:?}");
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    let (status, _, body) = admin(ops, Method::GET, "/admin/sessions/count", Some(TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"sessions":0}"#));
    let (status, _, _) = admin(ops, Method::GET, "/admin/no/such/call", Some(TOKEN)).await;
    assert_eq!(status, 404);
    // The probes stay as they were: no token needed.
    let (status, _, body) = admin(ops, Method::GET, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

async fn the_admin_api_lists_revokes_and_counts(redis: bool) {
    let test = "admin::the_admin_api_lists_revokes_and_counts";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    // The identity is a string with characters a path must escape.
    let extra = format!(
        "auth.identity_pointer = \"/user/email\"\n{token_keys}{}",
        store_table(&server, "")
    );
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let log_in = |client: reqwest::Client, email: &'static str| {
        let url = proxy.url("/login");
        async move {
            let response = client
                .post(url)
                .header(
                    "x-test-set-session",
                    json!({"user": {"email": email}}).to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            client
        }
    };
    let phone = log_in(browser_as("Phone/1.0"), "ada@example.com").await;
    let laptop = log_in(browser_as("Laptop/2.0"), "ada@example.com").await;
    let grace = log_in(browser_as("Other/3.0"), "grace@example.com").await;
    let phone_id = session_of(&phone, &proxy, &upstream).await.unwrap();
    let laptop_id = session_of(&laptop, &proxy, &upstream).await.unwrap();

    let path = "/admin/users/ada%40example.com/sessions";
    let (status, headers, body) = admin(ops, Method::GET, path, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        !body.contains(&phone_id) && !body.contains(&laptop_id),
        "no id in {body}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["identity"], "ada@example.com");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut agents = Vec::new();
    for session in sessions {
        let handle = session["handle"].as_str().unwrap();
        assert_eq!(handle.len(), 43, "{session}");
        assert_eq!(session["ip"], "127.0.0.1");
        assert_eq!(session["last_seen"], Value::Null);
        let created = session["created"].as_u64().unwrap();
        assert!(created <= now && now - created < 60_000, "{session}");
        let expires = session["expires"].as_u64().unwrap();
        let day = 86_400_000;
        assert!(
            expires > now + day - 60_000 && expires <= now + day + 1000,
            "{session}"
        );
        agents.push(session["user_agent"].as_str().unwrap().to_owned());
    }
    agents.sort();
    assert_eq!(agents, ["Laptop/2.0", "Phone/1.0"]);
    let phone_handle = sessions
        .iter()
        .find(|s| s["user_agent"] == "Phone/1.0")
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = admin(ops, Method::GET, "/admin/sessions/count", Some(TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"sessions":3}"#));

    // Revoke the phone's session by its handle.
    let revoke = format!("{path}/{phone_handle}");
    let (status, _, body) = admin(ops, Method::DELETE, &revoke, Some(TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"revoked":1}"#));
    assert_eq!(session_of(&phone, &proxy, &upstream).await, None);
    assert!(session_of(&laptop, &proxy, &upstream).await.is_some());
    let (status, _, _) = admin(ops, Method::DELETE, &revoke, Some(TOKEN)).await;
    assert_eq!(status, 404, "the handle is gone with its session");
    let unknown = format!("{path}/{}", "A".repeat(43));
    let (status, _, _) = admin(ops, Method::DELETE, &unknown, Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert_eq!(listed(ops, "ada%40example.com").await.len(), 1);

    // Revoke all of ada's sessions: grace keeps hers.
    let (status, _, body) = admin(ops, Method::DELETE, path, Some(TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"revoked":1}"#));
    assert_eq!(session_of(&laptop, &proxy, &upstream).await, None);
    assert!(session_of(&grace, &proxy, &upstream).await.is_some());
    assert!(listed(ops, "ada%40example.com").await.is_empty());
    let (status, _, body) = admin(ops, Method::GET, "/admin/sessions/count", Some(TOKEN)).await;
    assert_eq!((status, body.trim()), (200, r#"{"sessions":1}"#));
    let (_, _, metrics) = admin(ops, Method::GET, "/metrics", None).await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "cloakroom_sessions_total{event=\"destroyed\"} 2"),
        "revocations are counted as destroyed sessions:\n{metrics}"
    );
}

#[tokio::test]
async fn the_admin_api_lists_revokes_and_counts_memory() {
    the_admin_api_lists_revokes_and_counts(false).await;
}

#[tokio::test]
async fn the_admin_api_lists_revokes_and_counts_redis() {
    the_admin_api_lists_revokes_and_counts(true).await;
}

#[tokio::test]
async fn a_member_whose_session_vanished_is_dropped_when_the_index_is_read() {
    let test = "admin::a_member_whose_session_vanished_is_dropped_when_the_index_is_read";
    let Ok(Some(server)) = store_for(true, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let server = Some(server);
    let extra = format!("{USERS}{token_keys}{}", store_table(&server, ""));
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let (kept, dropped) = (browser(), browser());
    log_in_as(&kept, &proxy, 7).await;
    log_in_as(&dropped, &proxy, 7).await;
    let dropped_id = session_of(&dropped, &proxy, &upstream).await.unwrap();
    let url = extra
        .lines()
        .find_map(|line| line.strip_prefix("url = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let hlen = |redis: &mut redis::aio::MultiplexedConnection| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("HLEN")
                .arg("sess:user:7")
                .query_async::<i64>(&mut redis)
                .await
                .unwrap()
        }
    };
    assert_eq!(hlen(&mut redis).await, 2);
    // The session ends behind the proxy's back (an Express app's logout).
    let _: i64 = redis::cmd("DEL")
        .arg(format!("sess:{dropped_id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(listed(ops, "7").await.len(), 1);
    assert_eq!(hlen(&mut redis).await, 1, "the stale field was removed");
}

async fn a_regenerate_moves_the_index_entry_with_what_it_recorded(redis: bool) {
    let test = "admin::a_regenerate_moves_the_index_entry_with_what_it_recorded";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let extra = format!("{USERS}{token_keys}{}", store_table(&server, ""));
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let client = browser_as("First/1");
    assert_eq!(log_in_as(&client, &proxy, 7).await.status(), 200);
    let before = listed(ops, "7").await;
    assert_eq!(before.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let regenerate = client
        .post(proxy.url("/elevate"))
        .header("user-agent", "Second/2")
        .header("x-test-set-session", "regenerate")
        .send()
        .await
        .unwrap();
    assert_eq!(regenerate.status(), 200);
    let after = listed(ops, "7").await;
    assert_eq!(after.len(), 1, "the old id left the index");
    assert_ne!(after[0]["handle"], before[0]["handle"], "a new id");
    assert_eq!(after[0]["created"], before[0]["created"]);
    assert_eq!(after[0]["user_agent"], "First/1");
}

#[tokio::test]
async fn a_regenerate_moves_the_index_entry_with_what_it_recorded_memory() {
    a_regenerate_moves_the_index_entry_with_what_it_recorded(false).await;
}

#[tokio::test]
async fn a_regenerate_moves_the_index_entry_with_what_it_recorded_redis() {
    a_regenerate_moves_the_index_entry_with_what_it_recorded(true).await;
}

#[tokio::test]
async fn a_revoked_sessions_tunnels_close_at_once() {
    use crate::websocket::{closed_within, echo, open, WsUpstream};
    let upstream = WsUpstream::start().await;
    let (_token, token_keys) = token_file();
    let (proxy, ops) = Proxy::start_toml_with_ops(&format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\nauth.identity_pointer = \"/user/name\"\n{token_keys}",
        upstream.url()
    ))
    .await;
    // The upstream logs `ann` in on the `101` of a handshake to /login.
    let (_login, response) = open(&proxy, "/login", &[]).await.unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .expect("the 101 carries the new session cookie");
    let sid = cookie.split(';').next().unwrap().to_owned();
    let (mut ws, _) = open(&proxy, "/echo", &[("cookie", &sid)]).await.unwrap();
    echo(&mut ws, "before the revocation").await;
    let (mut anonymous, _) = open(&proxy, "/echo", &[]).await.unwrap();

    let (status, _, body) = admin(
        ops,
        Method::DELETE,
        "/admin/users/ann/sessions",
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, body.trim()), (200, r#"{"revoked":1}"#));
    assert!(
        // At once, not at the tunnel's next lookup (every second).
        closed_within(&mut ws, std::time::Duration::from_millis(500)).await,
        "the revoked session's tunnel is still open"
    );
    echo(&mut anonymous, "a tunnel without a session stays open").await;
}

async fn last_seen_follows_the_idle_timeout(redis: bool) {
    let test = "admin::last_seen_follows_the_idle_timeout";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let extra = format!(
        "{USERS}session.idle_timeout = \"1h\"\n{token_keys}{}",
        store_table(&server, "")
    );
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let login = bare()
        .post(proxy.url("/login"))
        .header("x-test-set-session", json!({"user": {"id": 7}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let (status, _, body) = admin(ops, Method::GET, "/admin/users/7/sessions", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let session = &body["sessions"][0];
    let last_seen = session["last_seen"]
        .as_u64()
        .unwrap_or_else(|| panic!("{session}"));
    assert!(
        last_seen + 1000 >= before && last_seen <= before + 60_000,
        "last seen at the login: {session}"
    );
    assert_eq!(session["expires"].as_u64().unwrap() - last_seen, 3_600_000);
}

#[tokio::test]
async fn last_seen_follows_the_idle_timeout_memory() {
    last_seen_follows_the_idle_timeout(false).await;
}

#[tokio::test]
async fn last_seen_follows_the_idle_timeout_redis() {
    last_seen_follows_the_idle_timeout(true).await;
}

/// With rotation at login off, a patch moves the identity in place: the
/// index follows what each write does to the identity, and only that.
async fn without_rotation_the_index_follows_the_identity_in_place(redis: bool) {
    let test = "admin::without_rotation_the_index_follows_the_identity_in_place";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let extra = format!(
        "{USERS}auth.rotate_on_login = false\n{token_keys}{}",
        store_table(&server, "")
    );
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let client = browser();
    let write = |path: &'static str, patch: Value| {
        let request = client
            .post(proxy.url(path))
            .header("x-test-set-session", patch.to_string());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
    };
    write("/cart", json!({"cart": 1})).await;
    let id = session_of(&client, &proxy, &upstream).await;
    assert!(id.is_some());
    assert!(listed(ops, "7").await.is_empty(), "anonymous: not indexed");
    // The entries, but their expiry (which each write extends).
    let entries = |identity: &'static str| async move {
        let mut listed = listed(ops, identity).await;
        for entry in &mut listed {
            entry.as_object_mut().unwrap().remove("expires");
        }
        listed
    };
    write("/login", json!({"user": {"id": 7}})).await;
    let indexed = entries("7").await;
    assert_eq!(indexed.len(), 1, "the login is indexed");
    // Writes that leave the identity alone leave the index alone.
    write("/cart", json!({"cart": 2})).await;
    write("/prefs", json!({"theme": "dark", "cart": null})).await;
    assert_eq!(entries("7").await, indexed);
    // A patch naming the identity's key, to the same identity: unchanged.
    write("/profile", json!({"user": {"id": 7, "name": "ada"}})).await;
    assert_eq!(entries("7").await, indexed);
    // To another identity: moved.
    write("/switch", json!({"user": {"id": 8}})).await;
    assert!(listed(ops, "7").await.is_empty(), "left user 7's index");
    assert_eq!(listed(ops, "8").await.len(), 1, "joined user 8's");
    // Logged out: gone, the session kept.
    write("/logout", json!({"user": null})).await;
    assert!(listed(ops, "8").await.is_empty(), "left user 8's index");
    assert_eq!(
        session_of(&client, &proxy, &upstream).await,
        id,
        "one id all along"
    );
}

#[tokio::test]
async fn without_rotation_the_index_follows_the_identity_in_place_memory() {
    without_rotation_the_index_follows_the_identity_in_place(false).await;
}

#[tokio::test]
async fn without_rotation_the_index_follows_the_identity_in_place_redis() {
    without_rotation_the_index_follows_the_identity_in_place(true).await;
}
