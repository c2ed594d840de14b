//! Forward-auth: Cloakroom deciding for an edge that stays in front. The
//! nginx configuration the README shows (`examples/nginx/forward-auth.conf`)
//! runs against a real nginx: a login, a protected page and a logout, all
//! through nginx. The Traefik/Caddy form (`X-Forwarded-Uri`) and the
//! refusal of untrusted peers are checked against the proxy directly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const AUTH_PATH: &str = "/_cloakroom/auth";

/// Cloakroom with forward-auth on, `/account` login-only, peers on
/// loopback trusted (`trusted`) or not.
async fn cloakroom(upstream: &Upstream, trusted: bool) -> Proxy {
    let trusted = if trusted { "\"127.0.0.1\"" } else { "" };
    Proxy::start(
        upstream,
        &format!(
            "server.trusted_proxies = [{trusted}]\nauth.forward_auth_path = \"{AUTH_PATH}\"\nsession.headers.fields = {{ \"X-User\" = \"/user/name\" }}\n[[auth.protect]]\nprefix = \"/account\"\n"
        ),
    )
    .await
}

/// nginx's binary, if installed.
fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|program| {
            Command::new(program)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
}

/// A running nginx, stopped (and its prefix removed) on drop.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    port: u16,
}

impl Nginx {
    /// Runs the README's configuration with its three addresses replaced
    /// by the test's.
    fn start(binary: &PathBuf, cloakroom: &Proxy, app: &Upstream) -> Self {
        let port = free_port();
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/nginx/forward-auth.conf"),
        )
        .unwrap();
        let conf = template
            .replace(
                "listen 127.0.0.1:8000;",
                &format!("listen 127.0.0.1:{port};"),
            )
            .replace(
                "server 127.0.0.1:8080;",
                &format!("server {};", cloakroom.addr),
            )
            .replace("server 127.0.0.1:3000;", &format!("server {};", app.addr));
        assert_ne!(
            conf, template,
            "the addresses to replace moved in the nginx example"
        );
        let prefix =
            std::env::temp_dir().join(format!("cloakroom-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&prefix).unwrap();
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {};",
                prefix.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Up when it accepts connections.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    prefix,
                    port,
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start; see {}", prefix.display());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

#[tokio::test]
async fn nginx_auth_request_login_protected_page_and_logout() {
    let test = "forward_auth::nginx_auth_request_login_protected_page_and_logout";
    let Some(binary) = nginx_binary() else {
        crate::test_server::missing("nginx is not installed (apt-get install nginx)", test);
        return;
    };
    let app = Upstream::start().await;
    let proxy = cloakroom(&app, true).await;
    let nginx = Nginx::start(&binary, &proxy, &app);
    let client = browser();

    // Anonymous: a browser is sent to the login page, an API client gets 401,
    // and the app sees neither request.
    let page = client
        .get(nginx.url("/account?tab=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 302);
    let location = page.headers()["location"].to_str().unwrap();
    assert!(
        location.ends_with("/login?next=%2Faccount%3Ftab%3D1"),
        "{location}"
    );
    let api = client.get(nginx.url("/account")).send().await.unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(app.count(), 0, "a denied request reached the app");

    // Public pages pass without a session, and without session headers even
    // when the client sends its own.
    let public = client
        .get(nginx.url("/"))
        .header("x-session", "{\"user\":{\"name\":\"mallory\"}}")
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let seen = app.last();
    assert_eq!(seen.uri.path(), "/");
    assert_eq!(seen.header("x-session"), None);
    assert_eq!(seen.header("x-user"), None);

    // Login through nginx (proxied to Cloakroom, which applies Set-Session).
    let patch = serde_json::json!({"user": {"name": "ada"}}).to_string();
    let login = client
        .post(nginx.url("/login"))
        .header("x-test-set-session", "regenerate")
        .header("x-test-set-session", patch)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(set_cookies(&login, "sid").len(), 1);

    // The protected page, served by the app behind nginx with the session
    // headers Cloakroom answered (a client's own X-User is replaced).
    let served_before = app.count();
    let account = client
        .get(nginx.url("/account"))
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 200);
    assert_eq!(app.count(), served_before + 1, "one request to the app");
    let seen = app.last();
    assert_eq!(seen.uri.path(), "/account");
    assert_eq!(seen.header("x-user"), Some("ada"));
    assert_eq!(seen.session().unwrap()["user"]["name"], "ada");
    assert_eq!(seen.header("x-session-id").map(str::len), Some(43));
    assert_eq!(
        seen.header("cookie").map(|c| c.contains("sid=")),
        Some(true)
    );

    // Logout through nginx: the session ends, the cookie is cleared, and the
    // protected page is denied again.
    let logout = client
        .post(nginx.url("/logout"))
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let cleared = set_cookies(&logout, "sid");
    assert!(
        cleared
            .iter()
            .any(|c| c.contains("Expires=Thu, 01 Jan 1970")),
        "{cleared:?}"
    );
    let again = client.get(nginx.url("/account")).send().await.unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn traefik_style_request_gets_the_proxy_decision_and_session_headers() {
    let app = Upstream::start().await;
    let proxy = cloakroom(&app, true).await;
    let client = browser();
    let ask = |cookie: Option<String>, uri: &'static str| {
        let mut request = bare()
            .get(proxy.url(AUTH_PATH))
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-method", "GET")
            .header("accept", "text/html");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // Anonymous, protected: the same 302 as the proxy (Traefik and Caddy
    // hand it to the browser as it is).
    let denied = ask(None, "/account/settings").await.unwrap();
    assert_eq!(denied.status(), 302);
    assert_eq!(
        denied.headers()["location"],
        "/login?next=%2Faccount%2Fsettings"
    );
    // Anonymous, public: allowed, without session headers.
    let public = ask(None, "/about").await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(public.headers().get("x-session-id").is_none());

    let login = log_in(&client, &proxy, "grace").await;
    let cookie = sid_pair(&login);
    let allowed = ask(Some(cookie), "/account").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-user"], "grace");
    assert_eq!(allowed.headers()["x-session-id"].len(), 43);
    let session: serde_json::Value =
        serde_json::from_slice(allowed.headers()["x-session"].as_bytes()).unwrap();
    assert_eq!(session["user"]["name"], "grace");
    assert_eq!(allowed.headers()["cache-control"], "no-store");
    // Only the login went upstream: the decisions were Cloakroom's alone.
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn untrusted_peers_and_requests_without_a_target_are_refused() {
    let app = Upstream::start().await;
    let untrusted = cloakroom(&app, false).await;
    let response = bare()
        .get(untrusted.url(AUTH_PATH))
        .header("x-forwarded-uri", "/account")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("x-session-id").is_none());

    let trusted = cloakroom(&app, true).await;
    let response = bare().get(trusted.url(AUTH_PATH)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.count(), 0, "forward-auth requests are never forwarded");
}
