//! The example apps of `examples/` (Node, Python, Go) and the migration from
//! express-session + connect-redis, each run for real: the app as a child
//! process on a free port, the real proxy in front of it (configured by the
//! example `proxy.toml`, or for the migration like README's guide), and a
//! client with a cookie jar doing what a user would.
//!
//! Node and Python are required: without `node`, `npm` or `python3` a test
//! is skipped with a loud `SKIPPED` line, except under `CI=true`, where it
//! fails. Go is optional everywhere: without `go`, its test is skipped
//! loudly. A missing `node_modules` is installed with `npm ci` from the
//! committed lock file first. The migration test also needs `redis-server`
//! (see `test_server`), or `REDIS_URL`.

/// The proxy serves with its fast paths, as in production.
const FAST_PATHS: bool = true;

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../src/store/redis/test_server.rs"]
mod test_server;

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{bare, browser, free_port, set_cookies, sid_pair, Proxy, SECRET};

// ---------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Whether `program` runs. If not: a loud skip, or a failure when the tool
/// is `required` and `CI=true`.
fn have(program: &str, test: &str, required: bool) -> bool {
    // `go` has no --version option.
    let version = if program == "go" {
        "version"
    } else {
        "--version"
    };
    let runs = Command::new(program)
        .arg(version)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        if required && ci() {
            panic!("{test}: {program} is not installed, and CI=true requires this test to run (apt-get install nodejs npm python3)");
        }
        // Straight to the process's stderr: the harness captures the
        // `eprintln!` of passing tests, and this must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: {program} is not installed ***\n"
        );
    }
    runs
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `npm ci` in `dir` unless its `node_modules` is complete (npm writes
/// `node_modules/.package-lock.json` when an install finishes). Tests run
/// in parallel threads, and two `npm ci` in one directory at once break
/// each other (one removes what the other writes), so installs take turns
/// and the second one finds the first one's finished tree.
fn npm_ci(dir: &Path) {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _turn = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if dir.join("node_modules/.package-lock.json").is_file() {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "npm ci failed in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// An app as a child process
// ---------------------------------------------------------------------------

/// An app listening on `127.0.0.1:port`, killed on drop. Its output goes to
/// a log file, printed if the test fails.
struct App {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl App {
    /// Starts `program args` in `dir` with `PORT` set to a free port and
    /// `env`, and waits until the port accepts connections. An app that
    /// exits first (another process took the port) is tried again on
    /// another port.
    fn start(label: &str, program: &Path, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!(
                "cloakroom-example-{label}-{}-{}.log",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let output = std::fs::File::create(&log).unwrap();
            let child = Command::new(program)
                .args(args)
                .current_dir(dir)
                .env("PORT", port.to_string())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut app = App { port, child, log };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return app;
                }
                if let Ok(Some(status)) = app.child.try_wait() {
                    last_log = format!("exited with {status}: {}", app.output());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if app.child.try_wait().is_ok_and(|status| status.is_none()) {
                panic!("{label} did not listen within 30 s: {}", app.output());
            }
        }
        panic!("{label} did not start: {last_log}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- output of the app on port {} ---\n{}",
                self.port,
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------
// The example apps: one visit, from anonymous to logged out
// ---------------------------------------------------------------------------

/// The example `proxy.toml`, forwarding to `app` and with a fixed secret.
fn example_proxy_toml(app: &App) -> String {
    let toml = std::fs::read_to_string(repo().join("proxy.toml")).unwrap();
    let toml = replace_once(
        &toml,
        "url = \"http://127.0.0.1:3000\"",
        &format!("url = \"{}\"", app.url()),
    );
    replace_once(
        &toml,
        "secrets_env = \"CLOAKROOM_SECRETS\"",
        &format!("secrets = [\"{SECRET}\"]"),
    )
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "proxy.toml should hold `{from}` once"
    );
    text.replacen(from, to, 1)
}

fn location(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `GET /` as the user sees it.
async fn home(client: &reqwest::Client, proxy: &Proxy) -> String {
    let response = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /");
    response.text().await.unwrap()
}

/// `GET /cart`, parsed.
async fn cart(client: &reqwest::Client, proxy: &Proxy) -> Value {
    let response = client.get(proxy.url("/cart")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /cart");
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET /cart is not JSON ({e}): {text}"))
}

/// Posts a form and expects a 303 to `to`.
async fn post(
    client: &reqwest::Client,
    proxy: &Proxy,
    path: &str,
    form: &[(&str, &str)],
    to: &str,
) -> reqwest::Response {
    let response = client
        .post(proxy.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "POST {path} {form:?}");
    assert_eq!(location(&response), to, "POST {path} {form:?}");
    response
}

/// The login-only `/account` (proxy.toml) as an anonymous visitor: a
/// browser is sent to the login page, any other client gets a 401.
async fn assert_account_refused(client: &reqwest::Client, proxy: &Proxy) {
    let page = client
        .get(proxy.url("/account"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 302);
    assert_eq!(location(&page), "/login?next=%2Faccount");
    let api = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(api.status(), 401);
}

async fn a_visit_from_anonymous_to_logged_out(app: App) {
    let proxy = Proxy::start_with(&example_proxy_toml(&app)).await;
    let user = browser();

    // Anonymous: no cookie, no name, an empty cart, /account refused.
    let first = user.get(proxy.url("/")).send().await.unwrap();
    assert!(
        set_cookies(&first, "sid").is_empty(),
        "a visit alone sets no cookie"
    );
    let page = first.text().await.unwrap();
    assert!(page.contains("Not signed in"), "{page}");
    assert_eq!(cart(&user, &proxy).await, json!({}));
    assert_account_refused(&user, &proxy).await;
    let login_page = user
        .get(proxy.url("/login?next=%2Faccount"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login_page.status(),
        200,
        "where the proxy sends browsers to log in"
    );
    assert!(login_page.text().await.unwrap().contains("action=/login"));

    // A cart before logging in: the first patch creates the session.
    let added = post(&user, &proxy, "/cart", &[("item", "apple")], "/cart").await;
    let anonymous_cookie = sid_pair(&added);
    assert_eq!(cart(&user, &proxy).await, json!({"apple": 1}));
    let page = home(&user, &proxy).await;
    assert!(page.contains("Not signed in"), "a cart is no login: {page}");

    // Login: a new session id (the old one is dead), the cart kept, the
    // user greeted by the name the app read from X-User.
    let login = post(&user, &proxy, "/login", &[("username", "ada")], "/").await;
    let cookie = sid_pair(&login);
    assert_ne!(
        cookie, anonymous_cookie,
        "login must move the session to a new id"
    );
    let page = home(&user, &proxy).await;
    assert!(page.contains("Signed in as <b>ada</b>"), "{page}");
    let account = user
        .get(proxy.url("/account"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 200);
    let account = account.text().await.unwrap();
    assert!(account.contains("Account of <b>ada</b>"), "{account}");
    assert_eq!(cart(&user, &proxy).await, json!({"apple": 1}));
    let stale = bare()
        .get(proxy.url("/cart"))
        .header("cookie", &anonymous_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.text().await.unwrap().trim(),
        "{}",
        "the pre-login id must be dead"
    );

    // The cart: each add is a merge patch of one count; the counts add up,
    // the other items and the user stay.
    post(&user, &proxy, "/cart", &[("item", "apple")], "/cart").await;
    post(&user, &proxy, "/cart", &[("item", "pear")], "/cart").await;
    post(&user, &proxy, "/cart", &[("item", "apple")], "/cart").await;
    assert_eq!(cart(&user, &proxy).await, json!({"apple": 3, "pear": 1}));
    assert!(home(&user, &proxy)
        .await
        .contains("Signed in as <b>ada</b>"));

    // A name outside ASCII reaches the app as `json:` and JSON in X-User,
    // and the app decodes it (and escapes it in HTML).
    let relogin = post(&user, &proxy, "/login", &[("username", "Zoë <3")], "/").await;
    let logged_in_cookie = sid_pair(&relogin);
    let page = home(&user, &proxy).await;
    assert!(page.contains("Signed in as <b>Zoë &lt;3</b>"), "{page}");
    assert_eq!(cart(&user, &proxy).await, json!({"apple": 3, "pear": 1}));

    // Logout: the cookie is cleared, the session is gone from the store.
    let logout = post(&user, &proxy, "/logout", &[], "/").await;
    let cleared = set_cookies(&logout, "sid");
    assert!(
        cleared.len() == 1 && cleared[0].starts_with("sid=;") && cleared[0].contains("Max-Age=0"),
        "logout must clear the cookie: {cleared:?}"
    );
    let page = home(&user, &proxy).await;
    assert!(page.contains("Not signed in"), "{page}");
    assert_eq!(cart(&user, &proxy).await, json!({}));
    assert_account_refused(&user, &proxy).await;

    // The logged-in cookie, kept and sent again, no longer works either.
    let replayed = bare()
        .get(proxy.url("/"))
        .header("cookie", &logged_in_cookie)
        .send()
        .await
        .unwrap();
    let page = replayed.text().await.unwrap();
    assert!(
        page.contains("Not signed in"),
        "a logout must end the session, not only drop the cookie: {page}"
    );
}

#[tokio::test]
async fn node_example_from_anonymous_to_logged_out() {
    let test = "node_example_from_anonymous_to_logged_out";
    if !have("node", test, true) || !have("npm", test, true) {
        return;
    }
    let dir = repo().join("examples/node");
    npm_ci(&dir);
    let app = App::start("node", Path::new("node"), &["app.js"], &dir, &[]);
    a_visit_from_anonymous_to_logged_out(app).await;
}

#[tokio::test]
async fn python_example_from_anonymous_to_logged_out() {
    let test = "python_example_from_anonymous_to_logged_out";
    if !have("python3", test, true) {
        return;
    }
    let dir = repo().join("examples/python");
    let app = App::start("python", Path::new("python3"), &["app.py"], &dir, &[]);
    a_visit_from_anonymous_to_logged_out(app).await;
}

#[tokio::test]
async fn go_example_from_anonymous_to_logged_out() {
    let test = "go_example_from_anonymous_to_logged_out";
    if !have("go", test, false) {
        return;
    }
    // Built, then run: killing `go run` would leave the app running.
    let dir = repo().join("examples/go");
    let binary = std::env::temp_dir().join(format!("cloakroom-example-go-{}", std::process::id()));
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let app = App::start("go", &binary, &[], &dir, &[]);
    // The running app keeps its file open; the name can go now.
    let _ = std::fs::remove_file(&binary);
    a_visit_from_anonymous_to_logged_out(app).await;
}

// ---------------------------------------------------------------------------
// Migrating from express-session + connect-redis
// ---------------------------------------------------------------------------

/// The secret express-session and Cloakroom both sign with.
const MIGRATION_SECRET: &str = "migration-test-secret-0123456789abcdef";

/// Sends `request`, expects a 200 with JSON, and returns the response's
/// `connect.sid` Set-Cookies and the JSON.
async fn exchange(request: reqwest::RequestBuilder) -> (Vec<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let cookies = set_cookies(&response, "connect.sid");
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (cookies, body)
}

/// `GET url` through Cloakroom until it answers `expected` (3 s at most),
/// after a write by the Express app. A read sent at once may be taken by
/// a worker other than the one whose tracking connection is about to
/// deliver Redis's invalidation, and get the session as it was for that
/// moment (README, "The window"); what must never happen is that the
/// write stays unseen.
async fn seen_through_cloakroom(user: &reqwest::Client, url: String, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, me) = exchange(user.get(url.as_str())).await;
        if me == expected || Instant::now() > deadline {
            assert_eq!(
                me, expected,
                "the app's write is not seen through Cloakroom"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one `connect.sid` cookie issued, as a `name=value` pair.
fn issued(cookies: &[String]) -> String {
    assert_eq!(cookies.len(), 1, "expected one session cookie: {cookies:?}");
    cookies[0].split(';').next().unwrap().to_owned()
}

fn cleared(cookies: &[String]) -> bool {
    cookies.len() == 1
        && cookies[0].starts_with("connect.sid=;")
        && cookies[0].contains("Expires=Thu, 01 Jan 1970")
}

/// The session id in a `connect.sid=s%3A<id>.<signature>` pair.
fn session_id(pair: &str) -> String {
    let signed = pair
        .strip_prefix("connect.sid=s%3A")
        .unwrap_or_else(|| panic!("not a signed cookie: {pair}"));
    signed.split('.').next().unwrap().to_owned()
}

/// The session record connect-redis and Cloakroom share, parsed.
async fn record(redis_url: &str, id: &str) -> Option<Value> {
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg(format!("sess:{id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    stored.map(|text| serde_json::from_str(&text).unwrap())
}

/// The migration fixture (express-session + connect-redis) on a Redis of
/// its own, and Cloakroom on the same Redis with the guide's settings plus
/// `session_extra` (`[session]` keys). `None` when node, npm or Redis
/// cannot be had (skipped loudly, or failed under CI=true).
async fn migration(
    test: &str,
    session_extra: &str,
) -> Option<(App, Proxy, String, Option<test_server::RedisServer>)> {
    if !have("node", test, true) || !have("npm", test, true) {
        return None;
    }
    let (redis_url, redis_server) = match test_server::external_url() {
        Some(url) => (url, None),
        None => {
            let server = test_server::RedisServer::start(test)?;
            (server.url(), Some(server))
        }
    };
    let dir = repo().join("tests/fixtures/express_migration");
    npm_ci(&dir);
    let express = App::start(
        "express",
        Path::new("node"),
        &["app.js"],
        &dir,
        &[
            ("REDIS_URL", &redis_url),
            ("SESSION_SECRET", MIGRATION_SECRET),
        ],
    );
    // The guide's settings: the same Redis, key prefix, secret and cookie name.
    let proxy = Proxy::start_with(&format!(
        "[upstream]\nurl = \"{}\"\n\
         [cookie]\nname = \"connect.sid\"\n\
         [session]\nsecrets = [\"{MIGRATION_SECRET}\"]\n{session_extra}\
         [store]\nkind = \"redis\"\nurl = \"{redis_url}\"\nprefix = \"sess:\"\n",
        express.url()
    ))
    .await;
    Some((express, proxy, redis_url, redis_server))
}

/// An Express app with express-session + connect-redis serves `/legacy/*`
/// (reached directly); Cloakroom, on the same Redis with the same secret
/// and cookie name, serves the migrated routes of the same app (`/me`,
/// `/cart`, `/login`, `/logout`, which read X-Session). One cookie jar goes
/// to both, as a browser would behind a router that splits by path.
#[tokio::test]
async fn express_session_and_cloakroom_share_one_session_both_ways() {
    let test = "express_session_and_cloakroom_share_one_session_both_ways";
    let Some((express, proxy, redis_url, _redis_server)) = migration(test, "").await else {
        return;
    };
    let legacy = |path: &str| format!("{}/legacy{path}", express.url());
    let user = browser();

    // Logged in by express-session: still logged in where Cloakroom serves.
    let (cookies, me) = exchange(user.post(legacy("/login")).form(&[("username", "ada")])).await;
    assert_eq!(me, json!({"user": {"name": "ada"}, "cart": {}}));
    let express_cookie = issued(&cookies);
    let id = session_id(&express_cookie);
    let (_, me) = exchange(user.get(proxy.url("/me"))).await;
    assert_eq!(
        me,
        json!({"user": {"name": "ada"}, "cart": {}}),
        "Cloakroom's upstream must see express-session's user"
    );

    // Changed through Cloakroom: express-session's req.session has it, and
    // the record kept express-session's cookie settings.
    let (cookies, _) = exchange(user.post(proxy.url("/cart")).form(&[("item", "apple")])).await;
    assert!(cookies.is_empty(), "a patch keeps the cookie: {cookies:?}");
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(me, json!({"user": {"name": "ada"}, "cart": {"apple": 1}}));
    let stored = record(&redis_url, &id)
        .await
        .expect("the session is in Redis under sess:<id>");
    assert_eq!(stored["cookie"]["httpOnly"], json!(true), "{stored}");
    assert_eq!(stored["cookie"]["path"], json!("/"), "{stored}");

    // Changed through express-session: Cloakroom's upstream sees it.
    exchange(user.post(legacy("/cart")).form(&[("item", "apple")])).await;
    exchange(user.post(legacy("/cart")).form(&[("item", "pear")])).await;
    seen_through_cloakroom(
        &user,
        proxy.url("/me"),
        json!({"user": {"name": "ada"}, "cart": {"apple": 2, "pear": 1}}),
    )
    .await;

    // Logged out through Cloakroom: gone for express-session too.
    let (cookies, _) = exchange(user.post(proxy.url("/logout"))).await;
    assert!(cleared(&cookies), "{cookies:?}");
    assert_eq!(record(&redis_url, &id).await, None);
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(me, json!({"user": null, "cart": {}}));
    let (_, me) = exchange(bare().get(legacy("/me")).header("cookie", &express_cookie)).await;
    assert_eq!(
        me,
        json!({"user": null, "cart": {}}),
        "the old cookie must be dead"
    );

    // Logged in through Cloakroom: express-session's req.session has the user.
    let (cookies, _) = exchange(
        user.post(proxy.url("/login"))
            .form(&[("username", "grace")]),
    )
    .await;
    let cloakroom_cookie = issued(&cookies);
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(
        me,
        json!({"user": {"name": "grace"}, "cart": {}}),
        "express-session must read Cloakroom's session"
    );
    exchange(user.post(legacy("/cart")).form(&[("item", "pear")])).await;
    exchange(user.post(proxy.url("/cart")).form(&[("item", "pear")])).await;
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(me, json!({"user": {"name": "grace"}, "cart": {"pear": 2}}));
    let (_, me) = exchange(user.get(proxy.url("/me"))).await;
    assert_eq!(me, json!({"user": {"name": "grace"}, "cart": {"pear": 2}}));

    // Logged out through express-session: gone for Cloakroom too.
    let (cookies, _) = exchange(user.post(legacy("/logout"))).await;
    assert!(cleared(&cookies), "{cookies:?}");
    assert_eq!(
        record(&redis_url, &session_id(&cloakroom_cookie)).await,
        None
    );
    seen_through_cloakroom(&user, proxy.url("/me"), json!({"user": null, "cart": {}})).await;
    let (_, me) = exchange(
        bare()
            .get(proxy.url("/me"))
            .header("cookie", &cloakroom_cookie),
    )
    .await;
    assert_eq!(
        me,
        json!({"user": null, "cart": {}}),
        "the old cookie must be dead"
    );
}

#[tokio::test]
async fn express_session_keeps_cloakrooms_deadlines_and_nothing_is_lost() {
    let test = "express_session_keeps_cloakrooms_deadlines_and_nothing_is_lost";
    let deadlines = "idle_timeout = \"1h\"\nabsolute_timeout = \"3s\"\n";
    let Some((express, proxy, redis_url, _redis_server)) = migration(test, deadlines).await else {
        return;
    };
    let legacy = |path: &str| format!("{}/legacy{path}", express.url());
    let user = browser();

    // Logged in through Cloakroom: the record carries the stamp.
    let (cookies, _) = exchange(user.post(proxy.url("/login")).form(&[("username", "ada")])).await;
    let id = session_id(&issued(&cookies));
    let stored = record(&redis_url, &id)
        .await
        .expect("the session is in Redis");
    let stamp = stored["__cloakroom"].clone();
    assert!(stamp["absolute"].is_u64(), "{stored}");
    assert_eq!(stamp["idle"], json!(3_600_000), "{stored}");

    // express-session reads and writes it: the stamp survives its save, and
    // the upstream never sees the stamp.
    exchange(user.post(legacy("/cart")).form(&[("item", "tea")])).await;
    let stored = record(&redis_url, &id).await.expect("still in Redis");
    assert_eq!(
        stored["__cloakroom"], stamp,
        "express-session kept the stamp: {stored}"
    );
    assert_eq!(stored["cart"], json!({"tea": 1}));
    let (_, raw) = exchange(user.get(proxy.url("/raw"))).await;
    assert_eq!(
        raw,
        json!({"user": {"name": "ada"}, "cart": {"tea": 1}}),
        "no stamp in X-Session"
    );

    // Nothing lost in either direction.
    exchange(user.post(proxy.url("/cart")).form(&[("item", "tea")])).await;
    exchange(user.post(legacy("/cart")).form(&[("item", "jam")])).await;
    seen_through_cloakroom(
        &user,
        proxy.url("/me"),
        json!({"user": {"name": "ada"}, "cart": {"tea": 2, "jam": 1}}),
    )
    .await;
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(
        me,
        json!({"user": {"name": "ada"}, "cart": {"tea": 2, "jam": 1}})
    );

    // An app's own session (no stamp) reads as before, and gets a stamp at
    // Cloakroom's first write.
    let app_user = browser();
    let (cookies, _) = exchange(
        app_user
            .post(legacy("/login"))
            .form(&[("username", "grace")]),
    )
    .await;
    let app_id = session_id(&issued(&cookies));
    assert!(record(&redis_url, &app_id)
        .await
        .unwrap()
        .get("__cloakroom")
        .is_none());
    let (_, me) = exchange(app_user.get(proxy.url("/me"))).await;
    assert_eq!(me["user"]["name"], "grace");
    exchange(app_user.post(proxy.url("/cart")).form(&[("item", "tea")])).await;
    assert!(record(&redis_url, &app_id).await.unwrap()["__cloakroom"]["absolute"].is_u64());

    // Past the absolute deadline, although express-session's last save gave
    // the key a day to live: Cloakroom treats it as none and deletes it, and
    // the app then has no session either.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (_, me) = exchange(user.get(proxy.url("/me"))).await;
    assert_eq!(me, json!({"user": null, "cart": {}}));
    assert_eq!(
        record(&redis_url, &id).await,
        None,
        "deleted at its deadline"
    );
    let (_, me) = exchange(user.get(legacy("/me"))).await;
    assert_eq!(me, json!({"user": null, "cart": {}}));
}
