// An Express app behind Cloakroom, without session middleware: the session
// arrives in request headers and changes through Set-Session response headers.
const express = require("express");
const app = express();
app.use(express.urlencoded({ extended: false }));

// X-Session: the whole session as ASCII JSON (absent without a session).
const session = (req) => JSON.parse(req.get("X-Session") || "{}");
// X-User (proxy.toml: /user/name): plain text, or "json:" and JSON.
function userName(req) {
  const raw = req.get("X-User");
  if (raw === undefined) return null;
  return raw.startsWith("json:") ? String(JSON.parse(raw.slice(5))) : raw;
}
// Header values must be ASCII: escape the rest as \uXXXX, which JSON allows.
const asciiJson = (value) =>
  JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page(res, body) {
  res.type("html").set("Cache-Control", "no-store");
  res.send(`<!doctype html><meta charset=utf-8><title>Cloakroom example</title>\n${body}\n`);
}

// The home page; Cloakroom sends browsers denied a login-only page to /login.
app.get(["/", "/login"], (req, res) => {
  const name = userName(req);
  const who = name === null
    ? "<p>Not signed in.</p><form method=post action=/login><input name=username><button>Log in</button></form>"
    : `<p>Signed in as <b>${escapeHtml(name)}</b>.</p><form method=post action=/logout><button>Log out</button></form>`;
  page(res, `${who}\n<form method=post action=/cart><input name=item><button>Add to cart</button></form>\n<p><a href=/cart>Cart</a> <a href=/account>Account</a></p>`);
});

// Login-only in proxy.toml: only signed-in visitors get here.
app.get("/account", (req, res) => page(res, `<p>Account of <b>${escapeHtml(userName(req) ?? "")}</b>.</p>`));

app.post("/login", (req, res) => {
  const username = (req.body.username || "").trim();
  if (!username) return res.status(400).type("text").send("username required\n");
  // A new session id first (against session fixation), then the data.
  res.append("Set-Session", ["regenerate", asciiJson({ user: { name: username } })]);
  res.redirect(303, "/");
});

app.post("/logout", (req, res) => res.set("Set-Session", "destroy").redirect(303, "/"));
app.get("/cart", (req, res) => res.json(session(req).cart || {}));

app.post("/cart", (req, res) => {
  const item = (req.body.item || "").trim();
  if (!item) return res.status(400).type("text").send("item required\n");
  const cart = session(req).cart || {};
  const count = (Object.hasOwn(cart, item) ? cart[item] : 0) + 1;
  // A merge patch: only this item's count changes; the rest of the session stays.
  res.append("Set-Session", asciiJson({ cart: { [item]: count } }));
  res.redirect(303, "/cart");
});
const port = Number(process.env.PORT || 3000);
app.listen(port, "127.0.0.1");
