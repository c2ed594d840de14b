"""A plain WSGI app (standard library only) behind Cloakroom: the session
arrives in request headers and changes through Set-Session response headers."""
import html, json, os
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

PAGE = "<!doctype html><meta charset=utf-8><title>Cloakroom example</title>\n{}\n"
HOME = ("{}\n<form method=post action=/cart><input name=item><button>Add to cart</button></form>\n"
        "<p><a href=/cart>Cart</a> <a href=/account>Account</a></p>")
LOGGED_OUT = "<p>Not signed in.</p><form method=post action=/login><input name=username><button>Log in</button></form>"
LOGGED_IN = "<p>Signed in as <b>{}</b>.</p><form method=post action=/logout><button>Log out</button></form>"

def user_name(environ):
    """X-User (proxy.toml: /user/name): plain text, or "json:" and JSON."""
    raw = environ.get("HTTP_X_USER")
    return str(json.loads(raw[5:])) if raw and raw.startswith("json:") else raw

def page(body):
    return "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], PAGE.format(body)

def see_other(location, *set_session):
    # json.dumps escapes non-ASCII as \uXXXX, so a patch always fits a header.
    return "303 See Other", [("Location", location)] + [("Set-Session", s) for s in set_session], ""

def route(environ, method, path, form):
    # X-Session: the whole session as ASCII JSON (absent without a session).
    session = json.loads(environ.get("HTTP_X_SESSION") or "{}")
    if method == "GET" and path in ("/", "/login"):  # Cloakroom sends denied browsers to /login
        name = user_name(environ)
        return page(HOME.format(LOGGED_OUT if name is None else LOGGED_IN.format(html.escape(name))))
    if method == "GET" and path == "/account":  # login-only in proxy.toml
        return page(f"<p>Account of <b>{html.escape(user_name(environ) or '')}</b>.</p>")
    if method == "GET" and path == "/cart":
        return "200 OK", [("Content-Type", "application/json")], json.dumps(session.get("cart", {}))
    if method == "POST" and path == "/login" and form.get("username"):
        # A new session id first (against session fixation), then the data.
        return see_other("/", "regenerate", json.dumps({"user": {"name": form["username"]}}))
    if method == "POST" and path == "/logout":
        return see_other("/", "destroy")
    if method == "POST" and path == "/cart" and form.get("item"):
        # A merge patch: only this item's count changes; the rest of the session stays.
        count = session.get("cart", {}).get(form["item"], 0) + 1
        return see_other("/cart", json.dumps({"cart": {form["item"]: count}}))
    if method == "POST" and path in ("/login", "/cart"):
        return "400 Bad Request", [], "username or item required\n"
    return "404 Not Found", [], "not found\n"

def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    size = int(environ.get("CONTENT_LENGTH") or 0) if method == "POST" else 0
    form = {k: v[0].strip() for k, v in parse_qs(environ["wsgi.input"].read(size).decode()).items()}
    status, headers, body = route(environ, method, path, form)
    data = body.encode()
    start_response(status, headers + [("Content-Length", str(len(data)))])
    return [data]

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "3000"))
    make_server("127.0.0.1", port, app).serve_forever()
