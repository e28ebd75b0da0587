# redis-stop-all.sh - sourced by redis-test-servers.sh and redis-cluster-servers.sh:
# stop_all stops every redis-server whose pid file is in "$dir" (redis-*.pid).

stop_all() {
    pids=""
    for pidfile in "$dir"/redis-*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        rm -f "$pidfile"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            # A paused server (a test that SIGSTOPped it and died) ignores TERM.
            kill -CONT "$pid" 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
            pids="$pids $pid"
        fi
    done
    # All at once: each takes a second or two to shut down.
    i=0
    while [ $i -lt 50 ]; do
        alive=""
        for pid in $pids; do
            kill -0 "$pid" 2>/dev/null && alive="$alive $pid"
        done
        pids=$alive
        [ -z "$pids" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    for pid in $pids; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}
