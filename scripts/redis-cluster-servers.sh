#!/bin/sh
# redis-cluster-servers.sh start|stop DIR
#
# Starts (or stops) the Redis Cluster and Sentinel setups the cluster tests
# run against (tests/cluster.cmake), all on loopback, all state under DIR:
#
# Ports are REDIS_CLUSTER_PORT_BASE (default 17100) plus:
#
#   127.0.0.1:+1..+6        plain Redis Cluster, 3 masters + 3 replicas
#   127.0.0.1:+11..+16      TLS-only Redis Cluster (port 0, tls-cluster yes,
#                           tls-replication yes), 3 masters + 3 replicas; the
#                           nodes announce the host name "localhost"
#                           (cluster-preferred-endpoint-type hostname), as
#                           managed clusters do, and their certificate names
#                           only DNS:localhost, so reaching a node as
#                           127.0.0.1 is the unverifiable-name case
#   127.0.0.1:+21 / +22     master + replica watched by three sentinels on
#                           +31..+33 as "cachegw-master" (quorum 2)
#
# Every cluster node has cluster-node-timeout 1000 and
# cluster-require-full-coverage no, so that a killed master is replaced
# within about two seconds and the other slot ranges keep answering.
# Certificates (DIR/certs: ca.crt, node.crt/key, client.crt/key) are made here
# with the openssl CLI, never checked in.
#
# Idempotent: start first stops whatever a previous run left in DIR.  Tests
# that kill a node restart it with `redis-server DIR/redis-NAME.conf`.
set -eu

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
B=${REDIS_CLUSTER_PORT_BASE:-17100}
case "$B" in *[!0-9]* | "") echo "REDIS_CLUSTER_PORT_BASE must be a number" >&2; exit 2 ;; esac
PLAIN="$((B + 1)) $((B + 2)) $((B + 3)) $((B + 4)) $((B + 5)) $((B + 6))"
TLSP="$((B + 11)) $((B + 12)) $((B + 13)) $((B + 14)) $((B + 15)) $((B + 16))"
M=$((B + 21))
R=$((B + 22))
SENT="$((B + 31)) $((B + 32)) $((B + 33))"

. "$(dirname "$0")/redis-stop-all.sh" # stop_all

gen_certs() {
    c="$dir/certs"
    rm -rf "$c"
    mkdir -p "$c"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cachegw cluster test CA" \
        -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
    # Nodes use this certificate as servers and as cluster-bus / replication
    # clients; the name is DNS:localhost only (see above).
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$c/node.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$c/node.key" -out "$c/node.csr" 2>/dev/null
    openssl x509 -req -in "$c/node.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
        -CAcreateserial -days 2 -extfile "$c/node.ext" -out "$c/node.crt" 2>/dev/null
    chmod 600 "$c"/*.key
}

# write_conf NAME: settings common to every instance; the caller appends the rest.
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
bind 127.0.0.1
EOF
}

cluster_conf() {
    cat >>"$dir/redis-$1.conf" <<EOF
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 1000
cluster-require-full-coverage no
cluster-replica-validity-factor 0
EOF
}

# wait_until TRIES WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds.
wait_until() {
    tries=$1
    what=$2
    shift 2
    i=0
    while [ $i -lt "$tries" ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "redis-cluster-servers: $what did not happen; logs in $dir" >&2
    tail -n 20 "$dir"/redis-*.log >&2 || true
    return 1
}

ping_ok() { [ "$(redis-cli "$@" PING 2>/dev/null)" = "PONG" ]; }
cluster_ok() { redis-cli "$@" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; }

start_all() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_all
    rm -rf "$dir"/data-* "$dir"/*.conf
    gen_certs
    c="$dir/certs"
    TLS="--tls --cacert $c/ca.crt --cert $c/node.crt --key $c/node.key"

    for port in $PLAIN; do
        write_conf "c$port"
        echo "port $port" >>"$dir/redis-c$port.conf"
        cluster_conf "c$port"
    done
    for port in $TLSP; do
        write_conf "t$port"
        cat >>"$dir/redis-t$port.conf" <<EOF
port 0
tls-port $port
tls-cert-file $c/node.crt
tls-key-file $c/node.key
tls-ca-cert-file $c/ca.crt
tls-auth-clients optional
tls-cluster yes
tls-replication yes
cluster-announce-hostname localhost
cluster-preferred-endpoint-type hostname
EOF
        cluster_conf "t$port"
    done
    write_conf "s$M"
    echo "port $M" >>"$dir/redis-s$M.conf"
    write_conf "s$R"
    printf 'port %s\nreplicaof 127.0.0.1 %s\n' "$R" "$M" >>"$dir/redis-s$R.conf"

    for f in "$dir"/redis-c*.conf "$dir"/redis-t*.conf "$dir"/redis-s*.conf; do
        redis-server "$f"
    done
    for port in $SENT; do
        mkdir -p "$dir/data-sent$port"
        cat >"$dir/sentinel-$port.conf" <<EOF
daemonize yes
pidfile $dir/redis-sentinel-$port.pid
logfile $dir/redis-sentinel-$port.log
dir $dir/data-sent$port
bind 127.0.0.1
port $port
protected-mode no
sentinel monitor cachegw-master 127.0.0.1 $M 2
sentinel down-after-milliseconds cachegw-master 1000
sentinel failover-timeout cachegw-master 5000
sentinel parallel-syncs cachegw-master 1
EOF
        # redis-server is the sentinel too (the redis-sentinel package is a link).
        redis-server "$dir/sentinel-$port.conf" --sentinel
    done

    for port in $PLAIN $M $R $SENT; do
        wait_until 100 "PING of $port" ping_ok -p "$port"
    done
    for port in $TLSP; do
        # shellcheck disable=SC2086
        wait_until 100 "PING of $port (TLS)" ping_ok -p "$port" $TLS --sni localhost
    done

    # shellcheck disable=SC2046
    redis-cli --cluster create $(for p in $PLAIN; do printf '127.0.0.1:%s ' "$p"; done) \
        --cluster-replicas 1 \
        --cluster-yes >"$dir/create-plain.log" 2>&1 ||
        { cat "$dir/create-plain.log" >&2; exit 1; }
    # shellcheck disable=SC2086,SC2046
    redis-cli $TLS --sni localhost --cluster create \
        $(for p in $TLSP; do printf '127.0.0.1:%s ' "$p"; done) --cluster-replicas 1 \
        --cluster-yes >"$dir/create-tls.log" 2>&1 ||
        { cat "$dir/create-tls.log" >&2; exit 1; }
    for port in $PLAIN; do
        wait_until 200 "cluster_state:ok on $port" cluster_ok -p "$port"
    done
    for port in $TLSP; do
        # shellcheck disable=SC2086
        wait_until 200 "cluster_state:ok on $port (TLS)" cluster_ok -p "$port" $TLS --sni localhost
    done
    wait_until 100 "the sentinels' view of cachegw-master" sh -c \
        "redis-cli -p $((B + 31)) SENTINEL get-master-addr-by-name cachegw-master | grep -q $M"
    echo "redis-cluster-servers: started in $dir"
}

case "$cmd" in
start) start_all ;;
stop)
    [ -d "$dir" ] || exit 0
    stop_all
    echo "redis-cluster-servers: stopped"
    ;;
*) usage ;;
esac
