/* Unit tests for tls: context creation errors, and real handshakes against the
 * TLS redis-server of the test fixture (right CA, wrong CA, wrong host name,
 * insecure mode, client certificates), driven non-blocking with poll(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "test_redis_helpers.h"
#include "tls.h"

static int connect_to(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static bool wait_fd(int fd, uint32_t want)
{
    struct pollfd p = {.fd = fd, .events = (want & EPOLLIN) ? POLLIN : POLLOUT};
    return poll(&p, 1, 3000) == 1;
}

/* Handshakes with ctx as host over ip:port; returns tls_handshake's result and
 * leaves the reason in err.  On success, talks RESP to prove the channel. */
static int handshake(SSL_CTX *ctx, const char *ip, const char *host, char *err, size_t errlen,
                     char *answer, size_t answer_len)
{
    int fd = connect_to(ip, TLS_PORT);
    CHECK(fd >= 0);
    if (fd < 0) return -ECONNREFUSED;
    SSL *ssl = NULL;
    int rc = tls_client_new(ctx, fd, host, &ssl, err, errlen);
    CHECK_EQ_INT(rc, 0);
    uint32_t want = 0;
    while ((rc = tls_handshake(ssl, &want, err, errlen)) == -EAGAIN)
        if (!wait_fd(fd, want)) break;
    if (rc == 0 && answer != NULL) {
        const char cmd[] = "*2\r\n$4\r\nAUTH\r\n$11\r\n" TEST_PASSWORD "\r\n*1\r\n$4\r\nPING\r\n";
        ssize_t n;
        while ((n = tls_write(ssl, cmd, sizeof cmd - 1, &want, err, errlen)) == -EAGAIN)
            wait_fd(fd, want);
        size_t got = 0;
        answer[0] = '\0';
        if (n != (ssize_t)sizeof cmd - 1) rc = n < 0 ? (int)n : -EIO;
        while (rc == 0 && got < 12 && got + 1 < answer_len) {
            n = tls_read(ssl, answer + got, answer_len - got - 1, &want, err, errlen);
            if (n == -EAGAIN) {
                if (!wait_fd(fd, want)) break;
                continue;
            }
            if (n <= 0) {
                rc = n == 0 ? -ECONNRESET : (int)n;
                break;
            }
            got += (size_t)n;
            answer[got] = '\0';
        }
    }
    SSL_free(ssl);
    close(fd);
    return rc;
}

static SSL_CTX *make_ctx(const char *ca, const char *cert, const char *key, bool insecure)
{
    struct tls_client_options o = {
        .ca_file = ca, .cert_file = cert, .key_file = key, .insecure = insecure};
    SSL_CTX *ctx = NULL;
    char err[256] = "";
    int rc = tls_client_ctx_create(&o, &ctx, err, sizeof err);
    if (rc != 0) fprintf(stderr, "ctx: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    return ctx;
}

TEST(ctx_errors_name_the_problem)
{
    SSL_CTX *ctx = NULL;
    char err[256] = "";
    struct tls_client_options o = {.ca_file = "/nonexistent/ca.pem"};
    CHECK_EQ_INT(tls_client_ctx_create(&o, &ctx, err, sizeof err), -EINVAL);
    CHECK(ctx == NULL);
    CHECK(strstr(err, "cannot load CA file /nonexistent/ca.pem") != NULL);

    /* A certificate with another certificate's key. */
    o = (struct tls_client_options){.ca_file = cert_path("ca.crt"),
                                    .cert_file = cert_path("client.crt"),
                                    .key_file = cert_path("server.key")};
    CHECK_EQ_INT(tls_client_ctx_create(&o, &ctx, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "does not match") != NULL || strstr(err, "cannot load client key") != NULL);

    o = (struct tls_client_options){.key_file = cert_path("client.key")};
    CHECK_EQ_INT(tls_client_ctx_create(&o, &ctx, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "without a client certificate") != NULL);

    /* The system store loads. */
    o = (struct tls_client_options){0};
    CHECK_EQ_INT(tls_client_ctx_create(&o, &ctx, err, sizeof err), 0);
    tls_ctx_free(ctx);
}

TEST(host_is_ip)
{
    CHECK(tls_host_is_ip("127.0.0.1"));
    CHECK(tls_host_is_ip("::1"));
    CHECK(!tls_host_is_ip("localhost"));
    CHECK(!tls_host_is_ip("[::1]"));
    CHECK(!tls_host_is_ip("10.0.0.1.example"));
}

TEST(handshake_verifies_with_the_right_ca)
{
    SSL_CTX *ctx = make_ctx(cert_path("ca.crt"), NULL, NULL, false);
    char err[256] = "", answer[64];
    /* By IP (the certificate has IP:127.0.0.1) and by name (DNS:localhost). */
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "127.0.0.1", err, sizeof err, answer, sizeof answer),
                 0);
    CHECK_EQ_STR(answer, "+OK\r\n+PONG\r\n");
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "localhost", err, sizeof err, answer, sizeof answer),
                 0);
    CHECK_EQ_STR(answer, "+OK\r\n+PONG\r\n");
    tls_ctx_free(ctx);
}

TEST(handshake_rejects_an_unknown_ca)
{
    SSL_CTX *ctx = make_ctx(cert_path("other-ca.crt"), NULL, NULL, false);
    char err[256] = "";
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "127.0.0.1", err, sizeof err, NULL, 0), -EKEYREJECTED);
    CHECK_EQ_STR(err, "certificate verify failed: unable to get local issuer certificate");
    tls_ctx_free(ctx);

    /* The system store does not know our test CA either. */
    ctx = make_ctx(NULL, NULL, NULL, false);
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "localhost", err, sizeof err, NULL, 0), -EKEYREJECTED);
    CHECK(strstr(err, "certificate verify failed") != NULL);
    tls_ctx_free(ctx);
}

TEST(handshake_rejects_a_wrong_host)
{
    SSL_CTX *ctx = make_ctx(cert_path("ca.crt"), NULL, NULL, false);
    char err[256] = "";
    /* The server listens on 127.0.0.2 too, with the same certificate, which
     * names 127.0.0.1 and localhost only. */
    CHECK_EQ_INT(handshake(ctx, "127.0.0.2", "127.0.0.2", err, sizeof err, NULL, 0), -EKEYREJECTED);
    CHECK(strncmp(err, "hostname mismatch", 17) == 0);
    /* A DNS name the certificate does not carry, on the right address. */
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "redis.example.com", err, sizeof err, NULL, 0),
                 -EKEYREJECTED);
    CHECK(strncmp(err, "hostname mismatch", 17) == 0);
    tls_ctx_free(ctx);
}

TEST(insecure_mode_skips_verification)
{
    SSL_CTX *ctx = make_ctx(cert_path("other-ca.crt"), NULL, NULL, true);
    char err[256] = "", answer[64];
    CHECK_EQ_INT(handshake(ctx, "127.0.0.2", "127.0.0.2", err, sizeof err, answer, sizeof answer),
                 0);
    CHECK_EQ_STR(answer, "+OK\r\n+PONG\r\n");
    tls_ctx_free(ctx);
}

TEST(client_certificates_are_presented)
{
    /* tls-auth-clients optional: no certificate is fine, a good one is fine,
     * one from a CA the server does not trust is refused (which proves the
     * certificate is actually sent). */
    SSL_CTX *ctx =
        make_ctx(cert_path("ca.crt"), cert_path("client.crt"), cert_path("client.key"), false);
    char err[256] = "", answer[64];
    CHECK_EQ_INT(handshake(ctx, "127.0.0.1", "localhost", err, sizeof err, answer, sizeof answer),
                 0);
    CHECK_EQ_STR(answer, "+OK\r\n+PONG\r\n");
    tls_ctx_free(ctx);

    ctx = make_ctx(cert_path("ca.crt"), cert_path("badclient.crt"), cert_path("badclient.key"),
                   false);
    int rc = handshake(ctx, "127.0.0.1", "localhost", err, sizeof err, answer, sizeof answer);
    /* TLS 1.3: the client finishes its side first; the refusal arrives as an
     * alert or a reset on the first write or read. */
    CHECK(rc != 0);
    fprintf(stderr, "  bad client certificate: %s\n", err);
    CHECK(strstr(err, "alert") != NULL || strstr(err, "closed") != NULL ||
          strstr(err, "reset") != NULL);
    CHECK(strstr(answer, "PONG") == NULL);
    tls_ctx_free(ctx);
}

TEST(writing_to_a_closed_peer_returns_an_error_not_sigpipe)
{
    /* SIGPIPE keeps its default action here: if the BIO wrote with write(2),
     * this test would kill the process. */
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    SSL_CTX *ctx = make_ctx(cert_path("ca.crt"), NULL, NULL, false);
    char err[256] = "";
    int fd = connect_to("127.0.0.1", TLS_PORT);
    SSL *ssl = NULL;
    CHECK_EQ_INT(tls_client_new(ctx, fd, "127.0.0.1", &ssl, err, sizeof err), 0);
    uint32_t want = 0;
    int rc;
    while ((rc = tls_handshake(ssl, &want, err, sizeof err)) == -EAGAIN) wait_fd(fd, want);
    CHECK_EQ_INT(rc, 0);
    const char quit[] = "*1\r\n$4\r\nQUIT\r\n";
    CHECK_EQ_INT(tls_write(ssl, quit, sizeof quit - 1, &want, err, sizeof err), sizeof quit - 1);
    sleep_ms(200); /* the server answers +OK and closes */
    ssize_t n = 0;
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 200 && n >= 0; i++) {
        n = tls_write(ssl, chunk, sizeof chunk, &want, err, sizeof err);
        if (n == -EAGAIN) n = 0;
        sleep_ms(1);
    }
    CHECK(n < 0);
    fprintf(stderr, "  write after close: %s\n", err);
    CHECK(strstr(err, "by server") != NULL);
    SSL_free(ssl);
    close(fd);
    tls_ctx_free(ctx);
}

int main(void)
{
    redis_dir();
    RUN(ctx_errors_name_the_problem);
    RUN(host_is_ip);
    RUN(handshake_verifies_with_the_right_ca);
    RUN(handshake_rejects_an_unknown_ca);
    RUN(handshake_rejects_a_wrong_host);
    RUN(insecure_mode_skips_verification);
    RUN(client_certificates_are_presented);
    RUN(writing_to_a_closed_peer_returns_an_error_not_sigpipe);
    return TEST_SUMMARY();
}
