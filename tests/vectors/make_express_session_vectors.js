// Generates express-session interoperability vectors for Cloakroom's Rust tests.
// Needs only: npm install express-session@1 cookie-signature cookie
// Usage:      node make_express_session_vectors.js > express_session.json
//
// Every positive case is produced by running the real express-session middleware
// (behind a throwaway http server on 127.0.0.1) with a fixed `genid`, capturing
// the Set-Cookie header it emits, then replaying that cookie to a middleware
// configured with `secrets` to confirm express-session accepts it.
'use strict';
const http = require('http');
const path = require('path');
const crypto = require('crypto');
const assert = require('assert');
const session = require('express-session');
const cookieSignature = require('cookie-signature'); // top-level install
// The copy express-session itself requires (may be a different, nested version).
const esDir = path.dirname(require.resolve('express-session'));
const esRequire = (m) => require(require.resolve(m, { paths: [esDir] }));
const esSignature = esRequire('cookie-signature');
const version = (m, from) =>
  require(require.resolve(m + '/package.json', from ? { paths: [from] } : undefined)).version;

const store = new session.MemoryStore(); // shared, so a minted session can be re-loaded
store.setMaxListeners(0); // every middleware instance adds listeners to it
let current; // { mw } for the request in flight

const server = http.createServer((req, res) => {
  current.mw(req, res, (err) => {
    if (err) { res.statusCode = 500; return res.end(String(err)); }
    const loaded = req.session.tag === 'minted'; // true only if loaded from the store
    req.session.tag = 'minted';
    res.end(JSON.stringify({ sessionID: req.sessionID, loaded }));
  });
});

let fresh = 0;
function request(secrets, genid, cookieValue) {
  current = {
    mw: session({ secret: secrets, genid: () => genid || 'fresh-' + fresh++, store,
      resave: false, saveUninitialized: true, cookie: {} }), // default name connect.sid
  };
  const headers = cookieValue === undefined ? {} : { cookie: 'connect.sid=' + cookieValue };
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.address().port, path: '/', headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ setCookie: res.headers['set-cookie'], body: JSON.parse(body) }));
    }).on('error', reject);
  });
}

// Ask express-session (configured with `secrets`) whether it accepts the cookie for `id`.
async function accepts(secrets, cookieValue, id) {
  const { body } = await request(secrets, null, cookieValue);
  return body.loaded && body.sessionID === id;
}

const b64url = (s) => crypto.createHash('sha256').update(s).digest('base64url');
const sigOf = (id, secret) => cookieSignature.sign(id, secret).slice(id.length + 1);

// Deterministic search for a 32-char id (uid-safe's default length) whose
// signature contains both '+' and '/', so %2B and %2F get exercised.
const LONG_SECRET = 'cloakroom-interop-secret-0123456789abcdef'; // 41 chars
let plusSlashId;
for (let n = 0; !plusSlashId; n++) {
  const id = b64url('plus-slash-' + n).slice(0, 32);
  const s = sigOf(id, LONG_SECRET);
  if (s.includes('+') && s.includes('/')) plusSlashId = id;
}
// 43-char URL-safe base64 id (32 random-looking bytes), chosen to contain '-' and '_'.
let id43;
for (let n = 0; !id43; n++) {
  const id = b64url('id43-' + n);
  if (id.includes('-') && id.includes('_')) id43 = id;
}

const OLD = 'old-secret-rotated-out', NEW = 'new-secret-rotated-in';
const specs = [
  { name: 'keyboard cat', secrets: ['keyboard cat'], id: 'tXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj' },
  { name: 'long secret, signature has + and /', secrets: [LONG_SECRET], id: plusSlashId },
  { name: 'non-ASCII UTF-8 secret', secrets: ['sécret-ü-✓'], id: 'Zq3vYp0mN8xW2rT6kL1bH9cF4dJ7sA5e' },
  { name: '43-char base64url id', secrets: [LONG_SECRET], id: id43 },
  { name: 'id containing a dot (split at last dot)', secrets: ['keyboard cat'], id: 'abc.def' },
  // Rotation: with [NEW, OLD] express-session signs with NEW ...
  { name: 'rotation: signs with first secret', secrets: [NEW, OLD], id: 'rot-signs-with-new-0123456789abcd' },
  // ... and still accepts a cookie that was signed (minted) with OLD alone.
  { name: 'rotation: old-secret cookie accepted', secrets: [NEW, OLD], mintWith: [OLD],
    id: 'rot-minted-with-old-0123456789ab' },
];

async function main() {
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const cases = [];
  for (const c of specs) {
    const mintSecrets = c.mintWith || c.secrets;
    const { setCookie } = await request(mintSecrets, c.id);
    assert.strictEqual(setCookie.length, 1);
    const m = /^connect\.sid=([^;]*)/.exec(setCookie[0]);
    const cookieValue = m[1];
    const signed = decodeURIComponent(cookieValue);
    // Cross-check the middleware against the documented recipe.
    assert.strictEqual(signed, 's:' + cookieSignature.sign(c.id, mintSecrets[0]));
    assert.strictEqual(cookieValue, encodeURIComponent(signed));
    assert.ok(await accepts(c.secrets, cookieValue, c.id), c.name + ' not accepted');
    cases.push({
      name: c.name, secrets: c.secrets, signing_secret: mintSecrets[0], id: c.id,
      signed, cookie_value: cookieValue, set_cookie: setCookie[0],
      accepted_by_express_session: true,
      // express-session's cookie parser only percent-decodes values containing '%'.
      unencoded_value_accepted: await accepts(c.secrets, signed, c.id),
    });
  }

  // Negative vectors, derived from the minted cases.
  const kc = cases[0], ps = cases[1], rot = cases[6];
  const sig = kc.signed.slice(kc.signed.lastIndexOf('.') + 1);
  const flip = (ch) => (ch === 'A' ? 'B' : 'A');
  const neg = [
    { name: 'last char of signature changed', base: kc, signed: kc.signed.slice(0, -1) + flip(kc.signed.slice(-1)) },
    { name: "signature with '=' padding appended", base: kc, signed: kc.signed + '=' },
    { name: 'signature with trailing extra char', base: kc, signed: kc.signed + 'A' },
    { name: 'id changed, signature kept', base: kc, signed: 's:uXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj.' + sig },
    { name: 'wrong secret', base: kc, secrets: ['not the secret'], signed: kc.signed },
    { name: "signature with '+' and '/' changed to '-' and '_' (base64url)", base: ps,
      signed: ps.signed.replace(/\+/g, '-').replace(/\//g, '_') },
    { name: 'old-secret cookie after old secret is dropped', base: rot, secrets: [NEW], signed: rot.signed },
    { name: "missing 's:' prefix", base: kc, signed: kc.signed.slice(2) },
  ];
  const negative = [];
  for (const n of neg) {
    const secrets = n.secrets || n.base.secrets;
    const cookieValue = encodeURIComponent(n.signed);
    const hasPrefix = n.signed.startsWith('s:');
    const inner = hasPrefix ? n.signed.slice(2) : n.signed;
    // unsign() over each secret, as express-session's unsigncookie loop does.
    const unsign = (lib) => secrets.map((s) => lib.unsign(inner, s)).find((r) => r !== false) || false;
    negative.push({
      name: n.name, secrets, cookie_value: cookieValue, signed: n.signed,
      cookie_signature_unsign: unsign(cookieSignature),
      express_session_cookie_signature_unsign: unsign(esSignature),
      accepted_by_express_session: await accepts(secrets, cookieValue, n.base.id),
      ...(hasPrefix ? {} : { note: "unsign() of the bare value succeeds, but express-session only unsigns values starting with 's:'" }),
    });
  }
  server.close();

  const out = {
    generated_by: 'tests/vectors/make_express_session_vectors.js (node ' + process.version + ')',
    packages: {
      'express-session': version('express-session'),
      'cookie-signature': version('cookie-signature'),
      cookie: version('cookie'),
      'cookie-signature (used by express-session)': version('cookie-signature', esDir),
      'cookie (used by express-session)': version('cookie', esDir),
    },
    cookie_name: 'connect.sid',
    cases, negative,
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}
main().catch((e) => { console.error(e); process.exit(1); });
