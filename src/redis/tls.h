/*
 * tls - client-side TLS (OpenSSL) for connections the gateway opens itself
 * (Redis over rediss://): context factory, per-connection setup, non-blocking
 * handshake and I/O, and failure reasons a user can act on.
 *
 * A context enforces TLS 1.2 or newer and, unless created insecure, verifies
 * the peer against the system CA store (or the given CA file) and checks that
 * the certificate names the host we dialled (DNS name, or IP address for IP
 * literals).  SNI is sent for DNS names.  An optional client certificate and key
 * give mutual TLS.  The insecure mode skips every check; whoever enables it must
 * log that loudly (redis_pool does).
 *
 * Sockets are driven through a small BIO of our own that sends with
 * MSG_NOSIGNAL, so writing to a peer that has gone away returns EPIPE instead of
 * raising SIGPIPE, whatever the process's signal disposition.
 *
 * Ownership: tls_client_ctx_create returns a context the caller frees with
 * tls_ctx_free; tls_client_new returns an SSL the caller frees with SSL_free
 * (the fd stays the caller's: it is not closed by SSL_free).
 * Thread-safety: a context is immutable after creation and may be shared by
 * connections on any thread; one SSL is confined to one thread.
 */
#ifndef CACHEGW_TLS_H
#define CACHEGW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct tls_client_options {
    const char *ca_file; /* PEM bundle to trust; NULL: the system CA store */
    const char *cert_file; /* client certificate chain (PEM) for mTLS; NULL: none */
    const char *key_file; /* its private key; NULL: taken from cert_file */
    bool insecure; /* no peer or hostname verification at all */
};

/* Creates a client context.  Returns 0, or -EINVAL with a reason in err (an
 * unreadable CA file, a certificate and key that do not match, ...), or
 * -ENOMEM.  err may be NULL. */
int tls_client_ctx_create(const struct tls_client_options *o, SSL_CTX **out, char *err,
                          size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* Prepares a client SSL on a connected non-blocking socket for host (a DNS name
 * or an IP literal, IPv6 without brackets): SNI for names, name or IP
 * verification unless the context is insecure.  Returns 0 or -ENOMEM/-EINVAL
 * (reason in err). */
int tls_client_new(SSL_CTX *ctx, int fd, const char *host, SSL **out, char *err, size_t errlen);

/* Advances the handshake.  Returns 0 when it is complete, -EAGAIN when it must
 * be called again once the socket is ready for *want (EPOLLIN or EPOLLOUT), or
 * a negative errno with a reason in err: -EKEYREJECTED when the peer failed
 * verification ("certificate verify failed: unable to get local issuer
 * certificate", "hostname mismatch (certificate is not valid for this IP
 * address)"), -ECONNRESET when the peer went away, -EPROTO / -EIO otherwise. */
int tls_handshake(SSL *ssl, uint32_t *want, char *err, size_t errlen);

/* Non-blocking read and write.  Return bytes transferred (> 0), 0 on an orderly
 * close (read only), -EAGAIN with *want set (EPOLLIN / EPOLLOUT: a read may
 * need the socket writable and a write readable), or another negative errno
 * with a reason in err.  tls_write may transfer part of the buffer; call it
 * again with the rest (the buffer may move between calls). */
ssize_t tls_read(SSL *ssl, void *buf, size_t len, uint32_t *want, char *err, size_t errlen);
ssize_t tls_write(SSL *ssl, const void *buf, size_t len, uint32_t *want, char *err, size_t errlen);

/* True if host is an IPv4 or IPv6 literal (no brackets). */
bool tls_host_is_ip(const char *host);

#endif
