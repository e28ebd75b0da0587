#!/bin/sh
# redis-test-servers.sh start|stop DIR
#
# Starts (or stops) the redis-server instances the Redis tier's tests run
# against, all on loopback, all state (certificates, configs, pidfiles, logs,
# sockets' data dirs) under DIR:
#
#   127.0.0.1:16379            plain, no auth
#   127.0.0.1:16381            plain, requirepass s3cret-test, ACL user app / app-pass
#   127.0.0.1 + 127.0.0.2:16380 TLS only (port 0), requirepass s3cret-test,
#                              tls-auth-clients optional
#
# Certificates are generated here with the openssl CLI, never checked in:
#   ca.crt          the root CA that clients trust; signed int.crt and client.crt
#   int.crt         an intermediate CA that signed the server's certificate
#   server.crt/key  leaf + intermediate; CN localhost, SAN DNS:localhost,
#                   IP:127.0.0.1 (not 127.0.0.2: connecting to 127.0.0.2 is the
#                   hostname-mismatch case)
#   client.crt/key  a client certificate signed by ca.crt (mTLS)
#   other-ca.crt    a CA that signed nothing the server presents (wrong-CA case)
#   badclient.crt/key  a client certificate signed by other-ca (rejected by the server)
#
# Idempotent: start first stops whatever a previous run left in DIR.
set -eu

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

PASS=s3cret-test

. "$(dirname "$0")/redis-stop-all.sh" # stop_all

gen_certs() {
    c="$dir/certs"
    rm -rf "$c"
    mkdir -p "$c"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cachegw test CA" \
        -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cachegw other CA" \
        -keyout "$c/other-ca.key" -out "$c/other-ca.crt" 2>/dev/null

    # The server certificate is issued by an intermediate, as public CAs do,
    # and the server presents leaf + intermediate.  (With a leaf signed by the
    # root directly, OpenSSL's server would also send the root, and a client
    # with the wrong CA would report "self-signed certificate in certificate
    # chain" rather than the usual "unable to get local issuer certificate".)
    printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' \
        >"$c/int.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=cachegw test intermediate CA" \
        -keyout "$c/int.key" -out "$c/int.csr" 2>/dev/null
    openssl x509 -req -in "$c/int.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
        -CAcreateserial -days 2 -extfile "$c/int.ext" -out "$c/int.crt" 2>/dev/null

    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
        >"$c/server.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$c/server.key" -out "$c/server.csr" 2>/dev/null
    openssl x509 -req -in "$c/server.csr" -CA "$c/int.crt" -CAkey "$c/int.key" \
        -CAcreateserial -days 2 -extfile "$c/server.ext" -out "$c/server-leaf.crt" 2>/dev/null
    cat "$c/server-leaf.crt" "$c/int.crt" >"$c/server.crt"

    printf 'extendedKeyUsage=clientAuth\n' >"$c/client.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=cachegw test client" \
        -keyout "$c/client.key" -out "$c/client.csr" 2>/dev/null
    openssl x509 -req -in "$c/client.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
        -CAcreateserial -days 2 -extfile "$c/client.ext" -out "$c/client.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=cachegw bad client" \
        -keyout "$c/badclient.key" -out "$c/badclient.csr" 2>/dev/null
    openssl x509 -req -in "$c/badclient.csr" -CA "$c/other-ca.crt" -CAkey "$c/other-ca.key" \
        -CAcreateserial -days 2 -extfile "$c/client.ext" -out "$c/badclient.crt" 2>/dev/null
    chmod 600 "$c"/*.key
}

# write_conf NAME: common settings for every instance; the caller appends the rest.
write_conf() {
    name=$1
    mkdir -p "$dir/data-$name"
    cat >"$dir/redis-$name.conf" <<EOF
daemonize yes
pidfile $dir/redis-$name.pid
logfile $dir/redis-$name.log
dir $dir/data-$name
save ""
appendonly no
protected-mode no
EOF
}

wait_ping() {
    name=$1
    shift
    i=0
    while [ $i -lt 100 ]; do
        if [ "$(redis-cli "$@" PING 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "redis-test-servers: $name did not answer PING; its log:" >&2
    cat "$dir/redis-$name.log" >&2 || true
    if grep -q "Address already in use" "$dir/redis-$name.log" 2>/dev/null; then
        echo "redis-test-servers: the port is taken, probably by the test servers of another" \
            "build directory: stop them with '$0 stop <that dir>'" >&2
    fi
    return 1
}

start_all() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_all
    gen_certs
    c="$dir/certs"

    write_conf plain
    cat >>"$dir/redis-plain.conf" <<EOF
bind 127.0.0.1
port 16379
EOF

    write_conf auth
    cat >>"$dir/redis-auth.conf" <<EOF
bind 127.0.0.1
port 16381
requirepass $PASS
user app on >app-pass ~* &* +@all
EOF

    write_conf tls
    cat >>"$dir/redis-tls.conf" <<EOF
bind 127.0.0.1 127.0.0.2
port 0
tls-port 16380
tls-cert-file $c/server.crt
tls-key-file $c/server.key
tls-ca-cert-file $c/ca.crt
tls-auth-clients optional
requirepass $PASS
EOF

    for name in plain auth tls; do
        redis-server "$dir/redis-$name.conf"
    done
    wait_ping plain -h 127.0.0.1 -p 16379
    REDISCLI_AUTH=$PASS wait_ping auth -h 127.0.0.1 -p 16381
    REDISCLI_AUTH=$PASS wait_ping tls -h 127.0.0.1 -p 16380 --tls --cacert "$c/ca.crt"
    echo "redis-test-servers: started in $dir"
}

case "$cmd" in
start) start_all ;;
stop)
    [ -d "$dir" ] || exit 0
    stop_all
    echo "redis-test-servers: stopped"
    ;;
*) usage ;;
esac
