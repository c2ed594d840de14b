//! The optional plain-HTTP listener (`server.redirect_http_from`): it
//! answers every request with `308 Permanent Redirect` to the same host and
//! path over HTTPS, and proxies nothing. 308 keeps the method and body, so a
//! form posted to `http://` is not turned into a GET.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// Serves redirects on `listener` forever; the caller aborts the task.
/// `https_port` is the TLS listener's port, left out of `Location` when 443.
/// At most `max_connections` at once (its own budget, apart from the TLS
/// listener's), each closed after `header_read_timeout` without a request.
pub async fn serve(
    listener: TcpListener,
    https_port: u16,
    header_read_timeout: Duration,
    max_connections: usize,
) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "redirecting plain HTTP to HTTPS");
    }
    super::side_listener::serve(
        listener,
        "redirect",
        max_connections,
        header_read_timeout,
        move |request| std::future::ready(redirect(&request, https_port)),
    )
    .await;
}

fn redirect(request: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let location = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .and_then(host_without_port)
        .map(|host| {
            let port = if https_port == 443 {
                String::new()
            } else {
                format!(":{https_port}")
            };
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            format!("https://{host}{port}{path}")
        })
        .and_then(|location| HeaderValue::from_str(&location).ok());
    let mut response = Response::new(Full::new(Bytes::new()));
    match location {
        Some(location) => {
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response.headers_mut().insert(header::LOCATION, location);
        }
        None => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// The host part of a `Host` value, if it is a plain name or address (no
/// userinfo, path or stray characters that could bend the `Location`).
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b);
    (!name.is_empty() && name.bytes().all(allowed)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_odd_ones_are_refused() {
        assert_eq!(host_without_port("example.com:8080"), Some("example.com"));
        assert_eq!(host_without_port("example.com"), Some("example.com"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("evil.com/x"), None);
        assert_eq!(host_without_port("a@b"), None);
        assert_eq!(host_without_port(""), None);
    }
}
