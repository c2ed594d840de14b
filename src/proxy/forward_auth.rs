//! Forward-auth: the decision alone, for an edge that stays in front
//! (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`).
//! A request to `auth.forward_auth_path` from a trusted proxy names the
//! original request (`X-Original-URI` or `X-Forwarded-Uri`, and
//! `X-Forwarded-Method` or `X-Original-Method`); it runs through the same
//! phases as a proxied one up to the authorise phase, with the original
//! method and target, and is answered:
//!
//! - 200, with the session headers (`X-Session-Id`, `X-Session`, field
//!   headers) when the route is allowed, the session being loaded;
//! - the proxy's own denial otherwise: a 401, or a 302 to the login page.
//!   nginx's `auth_request` takes only 2xx, 401 and 403, so when the target
//!   came in `X-Original-URI` (nginx's convention) the redirect is a 401
//!   that still carries the `Location`, for an `error_page 401` to follow.
//!
//! Nothing is written: no session is made, rolled or changed here.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};

use super::context::{Context, Outgoing};
use super::error::ProxyError;
use super::respond::ProxyBody;
use super::Proxy;

const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Proxy {
    /// Whether `request` is a forward-auth request (its path is
    /// `auth.forward_auth_path`).
    #[inline]
    pub(super) fn is_forward_auth(&self, request: &Outgoing) -> bool {
        self.forward_auth_path
            .as_deref()
            .is_some_and(|path| request.original.path() == path)
    }

    /// Answers a forward-auth request: the decision for the original
    /// request it names.
    pub(super) async fn forward_auth(
        &self,
        mut request: Outgoing,
        context: &mut Context<'_>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if !context.client.trusted {
            return Err(ProxyError::ForwardAuthUntrusted);
        }
        let headers = &request.parts.headers;
        let nginx = headers.contains_key(X_ORIGINAL_URI);
        let target = headers
            .get(X_ORIGINAL_URI)
            .or_else(|| headers.get(X_FORWARDED_URI))
            .and_then(|value| Uri::try_from(value.as_bytes()).ok())
            .filter(|uri| uri.path().starts_with('/'))
            .ok_or(ProxyError::ForwardAuthNoTarget)?;
        let method = headers
            .get(X_FORWARDED_METHOD)
            .or_else(|| headers.get(X_ORIGINAL_METHOD))
            .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
            .unwrap_or(Method::GET);
        // The original host, for the cross-origin check.
        if let Some(host) = headers.get(X_FORWARDED_HOST).cloned() {
            request.host = Some(host);
        }
        request.original = target;
        request.parts.method = method.clone();
        context.method = method;

        self.canonicalise(&mut request, context)?;
        let mut ticket = self.identify(&request, context);
        if !ticket.candidates.is_empty() {
            self.load(std::mem::take(&mut ticket.candidates), context)
                .await?;
        }
        if let Some(denial) = self.authorise(&request, context)? {
            let mut response = self.respond.denied(denial);
            if nginx && response.status().is_redirection() {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            return Ok(response);
        }
        let mut response = Response::new(super::respond::empty());
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(current) = &context.session {
            let omissions = self
                .session_headers
                .inject(headers, &current.id, &current.data);
            if omissions.any() {
                tracing::error!(
                    session = %self.cookie.signer().log_tag(&current.id),
                    "forward-auth: session headers over [session.headers] max_bytes were not sent"
                );
            }
        }
        Ok(response)
    }
}
