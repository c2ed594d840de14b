//! The operations listener: `/healthz`, `/readyz` with its reasons, and
//! `/metrics` counting what happened, on a listener of its own.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::*;

/// The proxy with an operations listener; stopped on drop. `proxy` is its
/// address.
pub struct Operated {
    pub proxy: SocketAddr,
    ops: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Operated {
    pub async fn start(toml: &str) -> Self {
        let config = config(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (proxy, ops) = (
            listener.local_addr().unwrap(),
            ops_listener.local_addr().unwrap(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let options = cloakroom::Options {
            ops_listener: Some(ops_listener),
            ..Default::default()
        };
        tokio::spawn(async move {
            cloakroom::run_with(config, listener, options, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            proxy,
            ops,
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub async fn ops(&self, path: &str) -> (u16, String) {
        let response = bare()
            .get(format!("http://{}{path}", self.ops))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The value of one sample line of `/metrics` (`name{labels}`).
    pub async fn metric(&self, sample: &str) -> f64 {
        let (status, text) = self.ops("/metrics").await;
        assert_eq!(status, 200);
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
            .parse()
            .unwrap()
    }
}

fn base(upstream: &str) -> String {
    format!(
        "upstream.url = \"{upstream}\"\nsession.secrets = [\"{SECRET}\"]\n[[auth.protect]]\nprefix = \"/account\"\n"
    )
}

#[tokio::test]
async fn health_readiness_and_metrics_count_what_happened() {
    let upstream = Upstream::start().await;
    let proxy = Operated::start(&base(&upstream.url())).await;
    assert_eq!(proxy.ops("/healthz").await, (200, "ok\n".into()));
    assert_eq!(proxy.ops("/readyz").await, (200, "ready\n".into()));
    assert_eq!(proxy.ops("/nothing").await.0, 404);

    let client = browser();
    // A public page, a denied login-only page, a forged cookie.
    let public = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    let denied = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let forged = bare()
        .get(proxy.url("/"))
        .header(
            "cookie",
            "sid=s%3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.forged",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    // A login (a session created), the login-only page, a logout.
    let patch = serde_json::json!({"user": {"name": "ada"}}).to_string();
    let login = client
        .post(proxy.url("/login"))
        .header("x-test-set-session", patch)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let account = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let rotate = client
        .post(proxy.url("/login"))
        .header("x-test-set-session", "regenerate")
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 200);
    let logout = client
        .post(proxy.url("/logout"))
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);

    let requests = |class: &str, route: &str| {
        format!("cloakroom_requests_total{{class=\"{class}\",route=\"{route}\"}}")
    };
    assert_eq!(proxy.metric(&requests("2xx", "public")).await, 5.0);
    assert_eq!(proxy.metric(&requests("2xx", "login-only")).await, 1.0);
    assert_eq!(proxy.metric(&requests("4xx", "login-only")).await, 1.0);
    assert_eq!(proxy.metric("cloakroom_denials_total").await, 1.0);
    assert_eq!(proxy.metric("cloakroom_bad_signatures_total").await, 1.0);
    for (event, count) in [("created", 1.0), ("rotated", 1.0), ("destroyed", 1.0)] {
        let sample = format!("cloakroom_sessions_total{{event=\"{event}\"}}");
        assert_eq!(proxy.metric(&sample).await, count, "{event}");
    }
    assert_eq!(proxy.metric("cloakroom_live_sessions").await, 0.0);
    assert_eq!(
        proxy
            .metric("cloakroom_store_operation_seconds_count{store=\"memory\",op=\"commit\"}")
            .await,
        3.0
    );
    assert_eq!(
        proxy
            .metric("cloakroom_upstream_response_seconds_count")
            .await,
        6.0
    );
    // The browser's keep-alive connection is still open.
    assert!(proxy.metric("cloakroom_open_connections").await >= 1.0);
    let (_, text) = proxy.ops("/metrics").await;
    assert!(text.contains("cloakroom_build_info{version=\""), "{text}");

    // The operations paths are not in the proxied path space.
    let through = client.get(proxy.url("/metrics")).send().await.unwrap();
    assert_eq!(through.status(), 200);
    assert_eq!(upstream.last().uri.path(), "/metrics");
}

#[tokio::test]
async fn readiness_names_an_upstream_that_refuses_connections() {
    let port = free_port();
    let proxy = Operated::start(&base(&format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(proxy.ops("/healthz").await.0, 200);
    let (status, text) = proxy.ops("/readyz").await;
    assert_eq!(status, 503);
    assert!(text.starts_with("not ready: upstream:"), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");
    let failed = bare().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(failed.status(), 502);
    assert_eq!(proxy.metric("cloakroom_upstream_errors_total").await, 1.0);
}

#[tokio::test]
async fn readiness_names_a_store_that_does_not_answer() {
    let test = "operations::readiness_names_a_store_that_does_not_answer";
    let Some(mut redis) = crate::test_server::RedisServer::start(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let proxy = Operated::start(&format!(
        "{}[store]\nkind = \"redis\"\nurl = \"{}\"\ncommand_timeout = \"200ms\"\n",
        base(&upstream.url()),
        redis.url()
    ))
    .await;
    assert_eq!(proxy.ops("/readyz").await, (200, "ready\n".into()));
    let (_, text) = proxy.ops("/metrics").await;
    assert!(
        !text.contains("cloakroom_live_sessions"),
        "live sessions are counted by the memory store only:\n{text}"
    );
    redis.kill();
    let (status, text) = proxy.ops("/readyz").await;
    assert_eq!(status, 503);
    assert!(text.starts_with("not ready: store:"), "{text}");
}
