/*
 * LD_PRELOAD shim for the tls-handshake scenario of bench/run.sh: makes wrk
 * do a full TLS handshake on every connection.
 *
 * wrk, on a `Connection: close` reconnect, reuses its SSL object with
 * SSL_clear(), which keeps the last session, so the next handshake offers
 * it (TLS 1.2 session ID or TLS 1.3 ticket) and a server with a session
 * cache resumes it without signing anything. Cloakroom's rustls keeps a
 * session cache that its configuration cannot turn off, so to compare full
 * handshakes the client must not offer one: this drops the session after
 * every SSL_clear(). run.sh compiles it into bench/results/last-run/.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *ssl, SSL_SESSION *session);

int SSL_clear(SSL *ssl) {
    static int (*real_clear)(SSL *);
    if (real_clear == NULL) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        if (real_clear == NULL) return 0;
    }
    int ok = real_clear(ssl);
    if (ok == 1) SSL_set_session(ssl, NULL);
    return ok;
}
