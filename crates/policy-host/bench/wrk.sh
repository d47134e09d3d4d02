#!/bin/bash
# Requests/s and p99 of the MTA-STS policy host against nginx, same file, same certificate,
# same run, on loopback. Needs: wrk, nginx, openssl, root (for a private /etc/hosts via
# unshare -m, so wrk sends SNI mta-sts.bench.test without touching the real /etc/hosts).
#
#   crates/policy-host/bench/wrk.sh            # 10 s per run
#   DURATION=5s CONNS=32 crates/policy-host/bench/wrk.sh
#
# Pinning: servers on CPU 0 (one nginx worker, one tokio worker), wrk on CPU 1.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-/work/target-policyhost}
BIN=$TARGET/release/examples/serve
OURS_PORT=${OURS_PORT:-18443}
NGINX_PORT=${NGINX_PORT:-18444}
HOST=mta-sts.bench.test

for tool in wrk nginx openssl unshare taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx openssl util-linux)" >&2; exit 2; }
done
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -p mta-sts-policy-host --example serve)
fi

T=$(mktemp -d /tmp/policy-host-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

# ---- test CA + P-256 server certificate for mta-sts.bench.test
chmod 755 "$T" # nginx workers run as www-data and must read www/
cd "$T"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 \
    -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=$HOST" 2>/dev/null
printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$HOST" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -extfile server.ext 2>/dev/null
cat server.crt ca.crt > chain.pem

# ---- the policy host
cat > serve.toml <<CONF
listen = "127.0.0.1:$OURS_PORT"
[[domain]]
name = "bench.test"
mode = "enforce"
mx = ["mx1.bench.test", "*.mail.bench.test"]
max_age = 604800
cert = "$T/chain.pem"
key = "$T/server.key"
[limits]
max_connections = 100000
CONF
RUST_LOG=warn MTA_STS_WORKERS=1 taskset -c 0 "$BIN" serve.toml &
PIDS+=($!)

# ---- nginx with the same body (canonical CRLF), same certificate, same media type
mkdir -p www/$HOST/.well-known logs tmp
chmod -R a+rX www
printf 'version: STSv1\r\nmode: enforce\r\nmx: mx1.bench.test\r\nmx: *.mail.bench.test\r\nmax_age: 604800\r\n' > www/$HOST/.well-known/mta-sts.txt
cat > nginx.conf <<CONF
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $T/tmp/body; proxy_temp_path $T/tmp/proxy;
    fastcgi_temp_path $T/tmp/fastcgi; uwsgi_temp_path $T/tmp/uwsgi; scgi_temp_path $T/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        http2 on;
        server_name $HOST;
        ssl_certificate $T/chain.pem;
        ssl_certificate_key $T/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $T/www/\$host;
        location = /.well-known/mta-sts.txt { default_type text/plain; charset utf-8; }
    }
}
CONF
# nginx < 1.25 has no "http2 on;": fall back to "listen ... ssl http2".
if ! nginx -t -c "$T/nginx.conf" -p "$T/" -e "$T/logs/error.log" >/dev/null 2>&1; then
    sed -i "s/listen 127.0.0.1:$NGINX_PORT ssl;/listen 127.0.0.1:$NGINX_PORT ssl http2;/; /http2 on;/d" nginx.conf
fi
taskset -c 0 nginx -c "$T/nginx.conf" -p "$T/" -e "$T/logs/error.log" &
PIDS+=($!)

echo "127.0.0.1 $HOST" > hosts
for port in $OURS_PORT $NGINX_PORT; do
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

# Sanity: both serve the same bytes.
unshare -m sh -c "mount --bind $T/hosts /etc/hosts && \
    curl -sS --cacert $T/ca.crt https://$HOST:$OURS_PORT/.well-known/mta-sts.txt -o $T/ours.txt && \
    curl -sS --cacert $T/ca.crt https://$HOST:$NGINX_PORT/.well-known/mta-sts.txt -o $T/nginx.txt" || true
if command -v curl >/dev/null && ! cmp -s "$T/ours.txt" "$T/nginx.txt"; then
    echo "warning: the two servers do not serve the same bytes" >&2
fi

run() { # name port extra-args...
    local name=$1 port=$2; shift 2
    local out="$T/run-${name//[^a-zA-Z0-9]/_}.out"
    unshare -m sh -c "mount --bind $T/hosts /etc/hosts && \
        taskset -c 1 wrk -t1 -c$CONNS -d$DURATION --latency $* https://$HOST:$port/.well-known/mta-sts.txt" > "$out" 2>&1
    local rps p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    errors=$(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd ';' - || true)
    printf '%-28s %12s %10s  %s\n' "$name" "$rps" "$p99" "$errors"
}

echo "wrk -t1 -c$CONNS -d$DURATION, servers pinned to CPU 0 (1 worker each), wrk to CPU 1"
printf '%-28s %12s %10s\n' "server / mode" "requests/s" "p99"
run "policy-host keep-alive" $OURS_PORT
run "nginx keep-alive" $NGINX_PORT
run "policy-host handshake/req" $OURS_PORT -H "'Connection: close'"
run "nginx handshake/req" $NGINX_PORT -H "'Connection: close'"
