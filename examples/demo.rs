//! A complete Cloakroom demo on one machine: a tiny web app, and Cloakroom in
//! front of it giving it sessions.
//!
//! The app (plain hyper, no framework) never sees a cookie and keeps no state.
//! Cloakroom, configured by the example `proxy.toml`, tells it who the visitor
//! is with request headers, and the app changes the session with response
//! headers:
//!
//! * `X-Session-Id` and `X-Session` (the session as ASCII JSON) arrive when the
//!   visitor has a session; `X-User` carries the session field `/user/name`,
//!   as is when it is plain visible ASCII, else as `json:` and its JSON.
//! * `Set-Session: {json}` merges a JSON merge patch (RFC 7396) into the
//!   session, `Set-Session: regenerate` gives it a new id (done at login,
//!   against session fixation) and `Set-Session: destroy` ends it.
//! * `/account` is login-only in `proxy.toml`: Cloakroom redirects anonymous
//!   browsers to `/login?next=/account` before the app sees the request.
//!
//! The app's pages: `GET /` (who you are, and the session the app received),
//! `GET /login` and `POST /login` (a username, no password: it is a demo),
//! `GET /account` (a greeting and a visit counter kept in the session) and
//! `POST /logout`.
//!
//! Run it, then open <http://127.0.0.1:8080/> or use curl. Cloakroom redirects
//! only browsers (requests that accept `text/html`) to the login page; any
//! other client gets a 401, hence the `Accept` header on the first line.
//!
//! ```text
//! cargo run --release --example demo
//!
//! curl -i -H 'Accept: text/html' http://127.0.0.1:8080/account   # 302 to /login?next=%2Faccount
//! curl -i -c jar -b jar -d username=ada http://127.0.0.1:8080/login  # 303, Set-Cookie: sid=...
//! curl -b jar http://127.0.0.1:8080/account                       # Hello, ada: 1 (again: 2, 3...)
//! curl -i -c jar -b jar -X POST http://127.0.0.1:8080/logout      # 303, the cookie is cleared
//! curl -i -b jar http://127.0.0.1:8080/account                    # 401: signed out again
//! ```
//!
//! `--app-only` starts the app alone, without Cloakroom, on the address in
//! `DEMO_APP_LISTEN` (default: where `proxy.toml`'s upstream points,
//! 127.0.0.1:3000), until SIGTERM or Ctrl-C. The container image's `demo`
//! target and `compose.yaml` run it so, with Cloakroom in another container:
//!
//! ```text
//! DEMO_APP_LISTEN=0.0.0.0:3000 cargo run --release --example demo -- --app-only
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The session headers Cloakroom sends to the app.
const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
const X_SESSION: HeaderName = HeaderName::from_static("x-session");
const X_USER: HeaderName = HeaderName::from_static("x-user");
/// The response header the app changes its session with.
const SET_SESSION: HeaderName = HeaderName::from_static("set-session");

/// `[auth] identity_key` in `proxy.toml`: signed in = this key is non-null.
const IDENTITY_KEY: &str = "user";
/// Where the app listens when the upstream URL names no usable address.
const FALLBACK_APP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);
/// The argument that starts the app alone, without Cloakroom.
const APP_ONLY: &str = "--app-only";
/// With `--app-only`: the address the app listens on.
const APP_LISTEN_ENV: &str = "DEMO_APP_LISTEN";
/// The largest login form body the app reads.
const MAX_FORM_BYTES: usize = 16 * 1024;
const MAX_USERNAME_CHARS: usize = 64;

type Body = Full<Bytes>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let app_only = app_only(std::env::args().skip(1))?;
    let config = cloakroom::config::Config::from_toml_str(include_str!("../proxy.toml"))
        .context("the example proxy.toml is invalid")?;
    if app_only {
        let app_addr = match std::env::var(APP_LISTEN_ENV) {
            Ok(text) => listen_addr(&text)?,
            Err(_) => app_addr(&config.upstream.url),
        };
        let app_listener = TcpListener::bind(app_addr)
            .await
            .with_context(|| format!("cannot listen on {app_addr} for the demo app"))?;
        println!("Cloakroom demo app alone on http://{app_addr}/ (put Cloakroom in front of it)");
        tokio::select! {
            () = serve_app(app_listener) => {},
            () = terminated() => {},
        }
        return Ok(());
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let app_addr = app_addr(&config.upstream.url);
    let app_listener = TcpListener::bind(app_addr)
        .await
        .with_context(|| format!("cannot listen on {app_addr} for the demo app"))?;
    let proxy_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} for Cloakroom", config.listen))?;

    tokio::spawn(serve_app(app_listener));
    println!(
        "Cloakroom demo: open http://{}/ (the app itself listens on {app_addr})",
        config.listen
    );
    cloakroom::run(config, proxy_listener, ctrl_c()).await?;
    Ok(())
}

/// Whether the arguments ask for the app alone; anything else is refused.
fn app_only(mut args: impl Iterator<Item = String>) -> anyhow::Result<bool> {
    match (args.next(), args.next()) {
        (None, _) => Ok(false),
        (Some(arg), None) if arg == APP_ONLY => Ok(true),
        (Some(arg), _) => anyhow::bail!(
            "unexpected argument {arg:?}; usage: demo [{APP_ONLY}] (the app alone, on ${APP_LISTEN_ENV})"
        ),
    }
}

/// `DEMO_APP_LISTEN`'s value: an IP address and a port.
fn listen_addr(text: &str) -> anyhow::Result<SocketAddr> {
    text.trim().parse().with_context(|| {
        format!("{APP_LISTEN_ENV}={text:?} is not an address and port such as 0.0.0.0:3000")
    })
}

/// The address the proxy will connect to: host and port of `[upstream] url`.
fn app_addr(url: &Uri) -> SocketAddr {
    let host = url
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    let ip = match host {
        Some("localhost") => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(host) => host.parse().ok(),
        None => None,
    };
    let port = url.port_u16().or(match url.scheme_str() {
        Some("http") => Some(80),
        _ => None,
    });
    match (ip, port) {
        (Some(ip), Some(port)) => SocketAddr::new(ip, port),
        _ => FALLBACK_APP_ADDR,
    }
}

/// Completes on Ctrl-C; never, if the signal cannot be listened for.
async fn ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(%err, "cannot listen for Ctrl-C; stop the demo another way");
        std::future::pending::<()>().await;
    }
}

/// Completes on SIGTERM (`docker stop`: the app alone is a container's
/// PID 1, which ignores signals it has no handler for) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    () = ctrl_c() => {},
                }
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

// ---------------------------------------------------------------------------
// The demo app: serving loop and routes
// ---------------------------------------------------------------------------

/// Serves the demo app until the process ends.
async fn serve_app(listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(%err, "demo app: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
            if let Err(err) = served {
                tracing::debug!(%peer, %err, "demo app: connection ended with an error");
            }
        });
    }
}

/// Routes a request, and turns a response that could not be built into a 500.
async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = route(req).await.unwrap_or_else(|err| {
        tracing::error!(%path, %err, "demo app: could not build the response");
        let mut response = Response::new(Body::from("internal error\n"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    });
    Ok(response)
}

async fn route(req: Request<Incoming>) -> Result<Response<Body>, hyper::http::Error> {
    let visitor = Visitor::from_headers(req.headers());
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => home(&visitor),
        (&Method::GET, "/login") => {
            let query = parse_form(req.uri().query().unwrap_or(""));
            let next = field(&query, "next").unwrap_or("");
            html(StatusCode::OK, login_page(&visitor, next, None))
        }
        (&Method::POST, "/login") => login(&visitor, req.into_body()).await,
        (&Method::GET, "/account") => account(&visitor),
        (&Method::POST, "/logout") => logout(),
        _ => html(
            StatusCode::NOT_FOUND,
            layout("Not found", "<p>No such page.</p>"),
        ),
    }
}

// ---------------------------------------------------------------------------
// What Cloakroom told the app about the visitor
// ---------------------------------------------------------------------------

/// The session headers of one request.
struct Visitor {
    session_id: Option<String>,
    /// `X-Session` parsed; `None` without a session (or if it is not JSON).
    session: Option<Value>,
    /// `X-User` decoded: the session's `/user/name`.
    name: Option<String>,
}

impl Visitor {
    fn from_headers(headers: &HeaderMap) -> Self {
        let session = header_text(headers, &X_SESSION).and_then(|text| {
            serde_json::from_str(&text)
                .inspect_err(|err| tracing::warn!(%err, "demo app: X-Session is not JSON"))
                .ok()
        });
        Visitor {
            session_id: header_text(headers, &X_SESSION_ID),
            session,
            name: header_text(headers, &X_USER).map(|raw| decode_field(&raw)),
        }
    }

    fn signed_in(&self) -> bool {
        let identity = self.session.as_ref().and_then(|s| s.get(IDENTITY_KEY));
        identity.is_some_and(|user| !user.is_null())
    }

    fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("(someone without a name)")
    }

    fn visits(&self) -> u64 {
        let visits = self.session.as_ref().and_then(|s| s.get("visits"));
        visits.and_then(Value::as_u64).unwrap_or(0)
    }
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Decodes a per-field header such as `X-User`: `json:` and JSON, or plain text.
fn decode_field(raw: &str) -> String {
    let Some(json) = raw.strip_prefix("json:") else {
        return raw.to_owned();
    };
    match serde_json::from_str(json) {
        Ok(Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => raw.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

fn home(visitor: &Visitor) -> Result<Response<Body>, hyper::http::Error> {
    let mut body = String::new();
    if visitor.signed_in() {
        let _ = write!(
            body,
            "<p>You are signed in as <b>{}</b>.</p>\n\
             <form method=post action=/logout><button>Log out</button></form>\n",
            escape(visitor.display_name())
        );
    } else {
        body.push_str("<p>You are not signed in. <a href=/login>Log in</a>.</p>\n");
    }
    body.push_str(
        "<p>Try <a href=/account>your account</a>: it is login-only, so Cloakroom \
         sends you to the login page first if you are not signed in.</p>\n",
    );
    body.push_str(&received_headers(visitor));
    html(StatusCode::OK, layout("Cloakroom demo", &body))
}

/// Shows the session headers this request brought, to teach the protocol.
fn received_headers(visitor: &Visitor) -> String {
    let mut out = String::from("<h2>What the app received from Cloakroom</h2>\n");
    let (Some(id), Some(session)) = (&visitor.session_id, &visitor.session) else {
        out.push_str("<p>No <code>X-Session</code> header: you have no session yet.</p>\n");
        return out;
    };
    let pretty = serde_json::to_string_pretty(session).unwrap_or_else(|_| session.to_string());
    let _ = write!(
        out,
        "<p><code>X-Session-Id: {}</code><br><code>X-User</code>, decoded: {}</p>\n\
         <p><code>X-Session</code>, pretty-printed:</p>\n<pre>{}</pre>\n",
        escape(id),
        escape(visitor.name.as_deref().unwrap_or("(absent)")),
        escape(&pretty),
    );
    out
}

fn login_page(visitor: &Visitor, next: &str, error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(error) = error {
        let _ = writeln!(body, "<p class=error>{}</p>", escape(error));
    }
    if visitor.signed_in() {
        let _ = writeln!(
            body,
            "<p>You are already signed in as <b>{}</b>; logging in again replaces that.</p>",
            escape(visitor.display_name())
        );
    }
    let _ = write!(
        body,
        "<p>This is a demo: any username logs you in, and there is no password.</p>\n\
         <form method=post action=/login>\n\
         <input type=hidden name=next value=\"{}\">\n\
         <label>Username <input name=username maxlength={MAX_USERNAME_CHARS} required autofocus></label> \
         <button>Log in</button></form>\n",
        escape(next)
    );
    layout("Log in", &body)
}

async fn login(visitor: &Visitor, body: Incoming) -> Result<Response<Body>, hyper::http::Error> {
    let form = match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(collected) => parse_form(&String::from_utf8_lossy(&collected.to_bytes())),
        Err(err) if err.is::<LengthLimitError>() => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                layout("Too large", "<p>Form too large.</p>"),
            );
        }
        Err(err) => {
            tracing::debug!(%err, "demo app: could not read the login form");
            return html(
                StatusCode::BAD_REQUEST,
                layout("Bad request", "<p>Unreadable form.</p>"),
            );
        }
    };
    let next = field(&form, "next").unwrap_or("");
    let username = field(&form, "username").unwrap_or("").trim();
    if !(1..=MAX_USERNAME_CHARS).contains(&username.chars().count()) {
        let error = format!("Please enter a username of 1 to {MAX_USERNAME_CHARS} characters.");
        return html(
            StatusCode::BAD_REQUEST,
            login_page(visitor, next, Some(&error)),
        );
    }
    let session = json!({ "user": { "name": username }, "visits": 0 });
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, safe_next(next))
        // Order matters: a new id first (against session fixation), then the data.
        .header(SET_SESSION, "regenerate")
        .header(SET_SESSION, ascii_json(&session))
        .body(Body::default())
}

/// Where to go after login: a local path only, never another site.
///
/// `//evil.example` and `/\evil.example` are read by browsers as other hosts.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\");
    if local && next.bytes().all(|b| b.is_ascii_graphic()) {
        next
    } else {
        "/account"
    }
}

fn account(visitor: &Visitor) -> Result<Response<Body>, hyper::http::Error> {
    if !visitor.signed_in() {
        // Cloakroom already redirects here; this covers a visit to the app directly.
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(LOCATION, "/login?next=/account")
            .body(Body::default());
    }
    let visits = visitor.visits().saturating_add(1);
    let body = format!(
        "<p class=big>Hello, <b>{name}</b>!</p>\n\
         <p>You have opened this page <b>{visits}</b> time(s) since you logged in.</p>\n\
         <p>The app read <code>visits</code> from <code>X-Session</code> and answered \
         <code>Set-Session: {{\"visits\":{visits}}}</code>: Cloakroom merged that into \
         the session. Reload to count.</p>\n\
         <form method=post action=/logout><button>Log out</button></form>\n",
        name = escape(visitor.display_name()),
    );
    let mut response = html(StatusCode::OK, layout("Your account", &body))?;
    let patch = ascii_json(&json!({ "visits": visits }));
    response.headers_mut().append(SET_SESSION, patch.parse()?);
    Ok(response)
}

fn logout() -> Result<Response<Body>, hyper::http::Error> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, "/")
        .header(SET_SESSION, "destroy")
        .body(Body::default())
}

// ---------------------------------------------------------------------------
// HTML, JSON and form helpers
// ---------------------------------------------------------------------------

fn html(status: StatusCode, page: String) -> Result<Response<Body>, hyper::http::Error> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        // Every page depends on the session: no cache may keep it.
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from(page))
}

/// A whole page around `body` (HTML); `title` is text and is escaped here.
fn layout(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Cloakroom demo</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
  nav a {{ margin-right: 1rem; }}
  pre {{ background: #f4f4f4; padding: .75rem; border-radius: 4px; overflow-x: auto; }}
  .error {{ color: #b00020; font-weight: bold; }}
  .big {{ font-size: 1.5rem; }}
  button, input {{ font: inherit; padding: .2rem .6rem; }}
</style></head>
<body><nav><a href="/">Home</a><a href="/account">Account</a><a href="/login">Log in</a></nav>
<h1>{title}</h1>
{body}
</body></html>
"#,
        title = escape(title),
    )
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON with every non-ASCII character written as `\uXXXX`, so it fits a header.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    // serde_json leaves non-ASCII only inside strings, where \u escapes are valid.
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// Parses `application/x-www-form-urlencoded` text (a body or a query).
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// The first value of the field `name`.
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes and `+` (a space); a broken `%` is kept as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_escapes_and_broken_percent() {
        let form = parse_form("username=Ada+L%C3%B6w&next=%2Faccount%3Fa%3D1&x=100%&flag");
        assert_eq!(field(&form, "username"), Some("Ada Löw"));
        assert_eq!(field(&form, "next"), Some("/account?a=1"));
        assert_eq!(field(&form, "x"), Some("100%"));
        assert_eq!(field(&form, "flag"), Some(""));
    }

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(safe_next("/account/x?y=1"), "/account/x?y=1");
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "https://x",
            "/a b",
        ] {
            assert_eq!(safe_next(bad), "/account", "{bad:?}");
        }
    }

    #[test]
    fn user_field_header_decodes_json_form() {
        assert_eq!(decode_field("ada"), "ada");
        assert_eq!(decode_field(r#"json:"Zo\u00eb""#), "Zoë");
        assert_eq!(decode_field("json:42"), "42");
    }

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let json = ascii_json(&json!({ "name": "Zoë 🦀" }));
        assert_eq!(json, r#"{"name":"Zo\u00eb \ud83e\udd80"}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&json).ok(),
            Some(json!({ "name": "Zoë 🦀" }))
        );
    }

    #[test]
    fn escape_covers_html_specials() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn only_app_only_is_an_argument() {
        let args = |list: &[&str]| app_only(list.iter().map(|a| (*a).to_owned()));
        assert!(!args(&[]).unwrap());
        assert!(args(&["--app-only"]).unwrap());
        assert!(args(&["--app"]).is_err());
        assert!(args(&["--app-only", "0.0.0.0:3000"]).is_err());
    }

    #[test]
    fn the_app_alone_listens_on_an_address_and_port() {
        assert_eq!(
            listen_addr("0.0.0.0:3000").unwrap().to_string(),
            "0.0.0.0:3000"
        );
        assert_eq!(listen_addr("[::]:80").unwrap().to_string(), "[::]:80");
        let error = listen_addr("app:3000").unwrap_err().to_string();
        assert!(error.contains("DEMO_APP_LISTEN"), "{error}");
    }

    #[test]
    fn app_listens_where_the_proxy_connects() {
        let addr = |url: &str| app_addr(&url.parse().expect("test URL"));
        assert_eq!(addr("http://127.0.0.1:3000"), FALLBACK_APP_ADDR);
        assert_eq!(addr("http://[::1]:4000").to_string(), "[::1]:4000");
        assert_eq!(addr("http://localhost:5000").to_string(), "127.0.0.1:5000");
        assert_eq!(addr("http://app.internal:3000"), FALLBACK_APP_ADDR);
    }
}
