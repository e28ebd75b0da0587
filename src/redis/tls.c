/* tls.c - see tls.h. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* ---- a socket BIO that never raises SIGPIPE ----
 *
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a
 * connection the peer has closed.  Ours sends with MSG_NOSIGNAL.  The method
 * table is created once (pthread_once) and never changes afterwards. */

static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static int sock_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int sock_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(sock_fd(b), data, len, MSG_NOSIGNAL);
    if (n >= 0) {
        *written = (size_t)n;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(b);
    *written = 0;
    return 0;
}

static int sock_read_ex(BIO *b, char *data, size_t len, size_t *readbytes)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(sock_fd(b), data, len, 0);
    if (n > 0) {
        *readbytes = (size_t)n;
        return 1;
    }
    *readbytes = 0;
    if (n == 0) {
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        BIO_set_retry_read(b);
    }
    return 0;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr != NULL) *(int *)ptr = sock_fd(b);
        return sock_fd(b);
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default: return 0;
    }
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void sock_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "cachegw socket");
    if (m == NULL) return;
    BIO_meth_set_write_ex(m, sock_write_ex);
    BIO_meth_set_read_ex(m, sock_read_ex);
    BIO_meth_set_ctrl(m, sock_ctrl);
    BIO_meth_set_create(m, sock_create);
    sock_method = m;
}

/* ---- failure reasons ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The reason of the most recent OpenSSL error on this thread, or fallback. */
static const char *openssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

/* Describes why an SSL call failed with SSL_get_error code e (not a want-retry).
 * saved_errno is errno right after the call. */
static int describe_failure(SSL *ssl, int e, int saved_errno, const char *during, char *err,
                            size_t errlen)
{
    /* With verification off the chain is still checked and its result kept;
     * it did not cause the failure then. */
    long v = (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) ? SSL_get_verify_result(ssl) : X509_V_OK;
    int ret = -EPROTO;
    if (e == SSL_ERROR_SSL && v != X509_V_OK) {
        ret = -EKEYREJECTED;
        if (v == X509_V_ERR_HOSTNAME_MISMATCH)
            set_err(err, errlen, "%s",
                    "hostname mismatch (certificate is not valid for this host name)");
        else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            set_err(err, errlen, "%s",
                    "hostname mismatch (certificate is not valid for this IP address)");
        else
            set_err(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SSL) {
        set_err(err, errlen, "TLS error %s: %s", during, openssl_reason("unknown error"));
        unsigned long l = ERR_peek_last_error();
        if (ERR_GET_REASON(l) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            set_err(err, errlen, "connection closed by server %s", during);
            ret = -ECONNRESET;
        }
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        set_err(err, errlen, "connection closed by server %s", during);
        ret = -ECONNRESET;
    } else if (e == SSL_ERROR_SYSCALL) {
        if (saved_errno == ECONNRESET || saved_errno == EPIPE) {
            set_err(err, errlen, "connection %s by server %s",
                    saved_errno == EPIPE ? "closed" : "reset", during);
            ret = -ECONNRESET;
        } else if (saved_errno != 0) {
            set_err(err, errlen, "%s %s", strerror(saved_errno), during);
            ret = -EIO;
        } else {
            set_err(err, errlen, "connection closed by server %s", during);
            ret = -ECONNRESET;
        }
    } else {
        set_err(err, errlen, "TLS error %s", during);
        ret = -EIO;
    }
    ERR_clear_error();
    return ret;
}

/* ---- public API ---- */

bool tls_host_is_ip(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

int tls_client_ctx_create(const struct tls_client_options *o, SSL_CTX **out, char *err,
                          size_t errlen)
{
    int rc = -EINVAL;
    *out = NULL;
    pthread_once(&sock_method_once, sock_method_init);
    if (sock_method == NULL) {
        set_err(err, errlen, "%s", "cannot create the TLS socket method");
        return -ENOMEM;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        set_err(err, errlen, "cannot create a TLS context: %s", openssl_reason("out of memory"));
        rc = -ENOMEM;
        goto done;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* A CA file replaces the system store: a private CA should vouch only
         * for its own servers, and a public CA should not vouch for them. */
        if (o->ca_file != NULL) {
            if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
                set_err(err, errlen, "cannot load CA file %.200s: %s", o->ca_file,
                        openssl_reason("unreadable or not PEM"));
                goto done;
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            set_err(err, errlen, "cannot load the system CA store: %s",
                    openssl_reason("unknown error"));
            goto done;
        }
    }

    if (o->cert_file != NULL) {
        const char *key = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            set_err(err, errlen, "cannot load client certificate %.200s: %s", o->cert_file,
                    openssl_reason("unreadable or not PEM"));
            goto done;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            set_err(err, errlen, "cannot load client key %.200s: %s", key,
                    openssl_reason("unreadable or not PEM"));
            goto done;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            set_err(err, errlen, "client key does not match the client certificate: %s",
                    openssl_reason("mismatch"));
            goto done;
        }
    } else if (o->key_file != NULL) {
        set_err(err, errlen, "%s", "a client key was given without a client certificate");
        goto done;
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
done:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

void tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

int tls_client_new(SSL_CTX *ctx, int fd, const char *host, SSL **out, char *err, size_t errlen)
{
    int rc = -ENOMEM;
    *out = NULL;
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    BIO *bio = BIO_new(sock_method);
    if (ssl == NULL || bio == NULL) {
        set_err(err, errlen, "%s", "out of memory creating the TLS session");
        BIO_free(bio);
        goto done;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, bio, bio);

    bool ip = tls_host_is_ip(host);
    /* RFC 6066: SNI carries DNS names only, never address literals. */
    if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
        set_err(err, errlen, "cannot set the TLS server name: %s", openssl_reason("invalid"));
        rc = -EINVAL;
        goto done;
    }
    if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
        int ok;
        if (ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, host);
        }
        if (ok != 1) {
            set_err(err, errlen, "cannot set the host to verify: %s", openssl_reason("invalid"));
            rc = -EINVAL;
            goto done;
        }
    }
    SSL_set_connect_state(ssl);
    *out = ssl;
    ssl = NULL;
    rc = 0;
done:
    SSL_free(ssl);
    ERR_clear_error();
    return rc;
}

int tls_handshake(SSL *ssl, uint32_t *want, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(ssl);
    int saved_errno = errno;
    if (rc == 1) return 0;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return -EAGAIN;
    }
    return describe_failure(ssl, e, saved_errno, "during the TLS handshake", err, errlen);
}

ssize_t tls_read(SSL *ssl, void *buf, size_t len, uint32_t *want, char *err, size_t errlen)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(ssl, buf, len, &n);
    int saved_errno = errno;
    if (rc == 1) return (ssize_t)n;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    return describe_failure(ssl, e, saved_errno, "while reading", err, errlen);
}

ssize_t tls_write(SSL *ssl, const void *buf, size_t len, uint32_t *want, char *err, size_t errlen)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(ssl, buf, len, &n);
    int saved_errno = errno;
    if (rc == 1) return (ssize_t)n;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return -EAGAIN;
    }
    return describe_failure(ssl, e, saved_errno, "while writing", err, errlen);
}
