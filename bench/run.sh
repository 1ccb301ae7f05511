#!/usr/bin/env bash
# bench/run.sh: moat's load harness, loopback only. One command runs every
# scenario of the performance issue against nginx in the same run and prints
# one summary (see bench/RESULTS.md, "What is measured, and how").
#
# Load scenarios (wrk, interleaved runs, medians of RUNS), by SCENARIOS group.
# Every target answers with the same ~90-byte JSON body from an upstream nginx:
#   plain   direct             wrk -> upstream nginx (GET /bench)
#           nginx proxy        wrk -> nginx reverse proxy -> upstream (the baseline of every ratio)
#           moat (defaults)    wrk -> moat (default config, access log on) -> upstream
#           moat (access log off)  same with log: {access: false}
#           Go ReverseProxy    wrk -> bench/goproxy (bare net/http + httputil.ReverseProxy),
#                              a reference for what the Go standard library alone costs
#   full    nginx proxy (POST 1 KB JSON)  the POST baseline of the WAF row
#           moat full stack    API key, one rate limit (memory, far above the load), strict
#                              OpenAPI request validation, security headers (default), audit to
#                              a file sink, access log on; GET /bench with X-API-Key
#           moat full stack + WAF  the same plus waf: {paranoia_level: 1} (CRS, request
#                              phases); POST /bench with a benign 1 KB JSON body
#   scale   moat, 10 routes / moat, SCALE_ROUTES routes (10000)  access log off, /bench is
#                              the route in the middle; reported as the ratio of CPU/request
#   limits  (or LIMITS=1) moat + rate limit (memory) and (redis), access log off
# Other scenarios:
#   idle    a fresh moat (defaults, server.max_connections above IDLE_CONNS) holding
#           IDLE_CONNS (10000) idle keep-alive connections from bench/idleconns: its VmRSS
#   micro   Go micro-benchmarks: internal/keys BenchmarkLookup1M (1M API keys),
#           internal/ratelimit BenchmarkMemoryKeys1M (1M limiter keys), and
#           BenchmarkPipeline in internal/pipeline or internal/server when it exists
#
# Parameters (environment, defaults in brackets):
#   SCENARIOS [all] comma-separated groups above; all = plain,full,scale,idle,micro
#   RESULTS [1]     1 appends the summary to bench/RESULTS.md ("## Harness run <date>");
#                   0 for trial runs
#   DURATION [10s]  measured wrk run per target and run (s or m suffix)
#   WARMUP [2s]     wrk run before each measured run, not counted
#   CONNECTIONS [50] wrk -c;  THREADS [1] wrk -t
#   WAF_CONNECTIONS [10] wrk -c for the WAF target only: at ~12 ms of CPU per request,
#                   50 connections would queue for 0.6 s or more and hit wrk's 5 s timeout
#                   under background load
#   RUNS [3]        measured runs per target; the tables report medians
#   GOMAXPROCS [1]  for moat, goproxy and the micro-benchmarks (1 = comparable with
#                   nginx's single worker)
#   WRK_CPU [0] UPSTREAM_CPU [0, or 2 with 3+ cores] PROXY_CPU [1]  taskset pinning
#   IDLE_CONNS [10000] connections of the idle scenario
#   SCALE_ROUTES [10000] routes of the large scale target (the small one has 10)
#   MICRO_BENCHTIME [1s] -benchtime of the lookup and pipeline micro-benchmarks
#   PORT_BASE [18080] first port tried; free ports on 127.0.0.1 are used
#   MOAT_LOG [<tmp>/moat-*.log] where moat's stderr (its logs) goes
#   MAX_SECONDS [derived]  hard cap on the run once everything is built
#   GO_BASELINE [1] 0 skips the bench/goproxy reference target
#   KEEP_TMP [0]    1 keeps the temporary directory (configs, logs)
#   PERF [0]        1 adds one extra, unmeasured DURATION run against moat (defaults)
#                   under `perf record -g` and puts the hottest symbols in the report
#   LIMITS [0]      1 adds the limits group
#   REDIS_ADDR [127.0.0.1:6379]  Redis for the limits group (its redis-server's CPU is
#                   reported too when its pid can be found; it is not pinned)
#
# Output: a markdown report on stdout, also written to
# bench/out/results-<timestamp>.md; with RESULTS=1 its summary is appended to
# bench/RESULTS.md. Default wall time: about 8-9 minutes (10 load targets x 3
# runs x 12 s, plus builds, startup, the idle and micro scenarios).
set -euo pipefail

die() { echo "bench/run.sh: $*" >&2; exit 1; }
WALL0=$(date +%s)
log() { echo "[bench +$(( $(date +%s) - WALL0 ))s] $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMDLINE="$0${*:+ $*}"

SCENARIOS=${SCENARIOS:-all}
RESULTS=${RESULTS:-1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-50}
WAF_CONNECTIONS=${WAF_CONNECTIONS:-10}
THREADS=${THREADS:-1}
RUNS=${RUNS:-3}
MOAT_GOMAXPROCS=${GOMAXPROCS:-1}
PORT_BASE=${PORT_BASE:-18080}
KEEP_TMP=${KEEP_TMP:-0}
GO_BASELINE=${GO_BASELINE:-1}
LIMITS=${LIMITS:-0}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
IDLE_CONNS=${IDLE_CONNS:-10000}
SCALE_ROUTES=${SCALE_ROUTES:-10000}
SCALE_BASE_ROUTES=10
MICRO_BENCHTIME=${MICRO_BENCHTIME:-1s}
POST_BYTES=1024

secs() { # 10s, 2m, 500ms (rounded up), 7 -> seconds
  case $1 in
    *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *) echo "$1" ;;
  esac
}
for v in CONNECTIONS WAF_CONNECTIONS THREADS RUNS MOAT_GOMAXPROCS PORT_BASE IDLE_CONNS SCALE_ROUTES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
DUR_S=$(secs "$DURATION"); WARM_S=$(secs "$WARMUP")
[[ $DUR_S =~ ^[1-9][0-9]*$ ]] || die "DURATION must look like 10s or 1m, got '$DURATION'"
[[ $WARM_S =~ ^[0-9]+$ ]] || die "WARMUP must look like 2s, got '$WARMUP'"
(( THREADS <= CONNECTIONS && THREADS <= WAF_CONNECTIONS )) || die "THREADS must not exceed CONNECTIONS or WAF_CONNECTIONS"
[[ $LIMITS == 0 || $LIMITS == 1 ]] || die "LIMITS must be 0 or 1, got '$LIMITS'"
[[ $RESULTS == 0 || $RESULTS == 1 ]] || die "RESULTS must be 0 or 1, got '$RESULTS'"
[[ $REDIS_ADDR =~ ^[^:]+:[0-9]+$ ]] || die "REDIS_ADDR must be host:port, got '$REDIS_ADDR'"
[[ $MICRO_BENCHTIME =~ ^[0-9]+(x|s|ms)$ ]] || die "MICRO_BENCHTIME must look like 1s or 100000x, got '$MICRO_BENCHTIME'"
(( SCALE_ROUTES > SCALE_BASE_ROUTES )) || die "SCALE_ROUTES must be above $SCALE_BASE_ROUTES"

declare -A WANT=()
IFS=', ' read -r -a _groups <<< "$SCENARIOS"
for g in "${_groups[@]}"; do
  case $g in
    all) for x in plain full scale idle micro; do WANT[$x]=1; done ;;
    plain|full|scale|idle|micro|limits) WANT[$g]=1 ;;
    '') ;;
    *) die "SCENARIOS: unknown group '$g' (known: all, plain, full, scale, idle, micro, limits)" ;;
  esac
done
if [[ $LIMITS == 1 ]]; then WANT[limits]=1; fi
want() { [[ -n ${WANT[$1]:-} ]]; }
(( ${#WANT[@]} )) || die "SCENARIOS names no group"
LOAD=0
if want plain || want full || want scale || want limits; then LOAD=1; fi
NEED_MOAT=$LOAD
if want idle; then NEED_MOAT=1; fi

# ---------------------------------------------------------------- tools
need_apt=()
if (( NEED_MOAT )); then
  if (( LOAD )); then command -v wrk >/dev/null || need_apt+=(wrk); fi
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
fi
if ((${#need_apt[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need_apt[*]}: install with 'apt-get install ${need_apt[*]}' (needs root)"
  command -v apt-get >/dev/null || die "missing ${need_apt[*]} and no apt-get: install them by hand"
  log "installing ${need_apt[*]} with apt-get"
  timeout 600 apt-get update -qq || die "apt-get update failed"
  # The nginx package may try to start the system service; we never use it.
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2 \
    || die "apt-get install ${need_apt[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in go curl ss taskset getconf awk; do
  command -v "$t" >/dev/null || die "required tool not found: $t"
done
if (( NEED_MOAT )); then command -v "$NGINX" >/dev/null || die "required tool not found: nginx"; fi
if (( LOAD )); then command -v wrk >/dev/null || die "required tool not found: wrk"; fi

# Idle connections: every socket is a descriptor in moat and in the client.
# Raise the soft limit to the hard one (inherited by everything started
# below; Go programs raise their own soft limit to the hard one anyway).
IDLE_NOTE=""
if want idle; then
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited ]] && (( hard < IDLE_CONNS + 1024 )); then
    IDLE_NOTE="skipped: the hard limit on open files ($hard) is below IDLE_CONNS + 1024 = $((IDLE_CONNS + 1024)); raise it (ulimit -Hn, as root)"
    log "idle connections $IDLE_NOTE"
    unset 'WANT[idle]'
  elif [[ $hard == unlimited ]]; then
    ulimit -Sn $(( 2 * IDLE_CONNS + 4096 ))
  else
    ulimit -Sn "$hard"
  fi
fi

# ---------------------------------------------------------------- layout
NPROC=$(nproc)
PIN=1
if (( NPROC < 2 )); then
  PIN=0
  WRK_CPU=- UPSTREAM_CPU=- PROXY_CPU=-
else
  WRK_CPU=${WRK_CPU:-0}
  PROXY_CPU=${PROXY_CPU:-1}
  if (( NPROC >= 3 )); then UPSTREAM_CPU=${UPSTREAM_CPU:-2}; else UPSTREAM_CPU=${UPSTREAM_CPU:-0}; fi
fi
pin() { # pin CPU cmd...: run cmd pinned
  local cpu=$1; shift
  if (( PIN )); then taskset -c "$cpu" "$@"; else "$@"; fi
}
pin_exec() { # pin_exec CPU cmd... &: same, but exec'd so that $! is the command's pid
  local cpu=$1; shift
  if (( PIN )); then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
DATE_UTC=$(date -u '+%Y-%m-%d %H:%M UTC')
OUTDIR="$ROOT/bench/out"
mkdir -p "$OUTDIR"
REPORT="$OUTDIR/results-$STAMP.md"
WORK=$(mktemp -d /tmp/moat-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers drop to an unprivileged user

PIDS=()      # processes we started, killed on exit
WATCHDOG=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $WATCHDOG ]]; then kill $(pgrep -P "$WATCHDOG") "$WATCHDOG" 2>/dev/null || true; fi
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.2
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP_TMP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- targets
# A load target is a key; NAME, PORT, MPID (process measured), LUA (wrk
# script: method, headers, body), BASE (the nginx target its ratios are to).
TARGETS=()
declare -A NAME=(
  [direct]="direct (upstream nginx)" [nginx]="nginx proxy" [nginxpost]="nginx proxy, POST 1 KB JSON"
  [moat]="moat (defaults)" [moatq]="moat (access log off)" [gop]="Go ReverseProxy (reference)"
  [full]="moat full stack, no WAF" [waf]="moat full stack + WAF, POST 1 KB JSON"
  [routes10]="moat, $SCALE_BASE_ROUTES routes (access log off)" [routes10k]="moat, $SCALE_ROUTES routes (access log off)"
  [rlmem]="moat + rate limit (memory)" [rlredis]="moat + rate limit (redis)")
declare -A PORT=() MPID=() LUA=() BASE=() AUTH=() BODYF=()
declare -A TCPU=([moat]=2.0 [moatq]=2.0 [full]=3.0 [waf]=12) TP99=([moat]=2 [moatq]=2)
if (( LOAD )); then
  if want plain; then TARGETS+=(direct); fi
  TARGETS+=(nginx)
  if want full; then TARGETS+=(nginxpost); fi
  if want plain; then TARGETS+=(moat); fi
  if want plain || want limits; then TARGETS+=(moatq); fi
  if want plain && [[ $GO_BASELINE == 1 ]]; then TARGETS+=(gop); fi
  if want full; then TARGETS+=(full waf); fi
  if want scale; then TARGETS+=(routes10 routes10k); fi
fi
for t in "${TARGETS[@]}"; do BASE[$t]=nginx; done
BASE[waf]=nginxpost; BASE[nginxpost]=nginxpost
has() { local t; for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- ports
port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
NEXT_PORT=$PORT_BASE
pick_port() { # pick_port VAR: the next free port into VAR
  local _port=$NEXT_PORT
  while ! port_free "$_port"; do
    _port=$((_port + 1)); (( _port < PORT_BASE + 200 )) || die "no free port in $PORT_BASE..$((PORT_BASE + 200))"
  done
  NEXT_PORT=$((_port + 1)); printf -v "$1" '%s' "$_port"
}
UP_PORT=""
if (( NEED_MOAT )); then pick_port UP_PORT; fi
for t in "${TARGETS[@]}"; do
  case $t in
    direct) PORT[$t]=$UP_PORT ;;
    nginxpost) ;; # the nginx proxy's port, below
    *) pick_port p; PORT[$t]=$p ;;
  esac
done
if has nginxpost; then PORT[nginxpost]=${PORT[nginx]}; fi
IDLE_PORT=""
if want idle; then pick_port IDLE_PORT; fi

# ---------------------------------------------------------------- redis (limits)
# The Redis target needs a Redis that answers; without one it is skipped and
# the report says why. redis-server is not ours: never started, pinned or
# stopped here. Its pid (if it listens on this machine) is used to read its CPU.
RL_REDIS=0; REDIS_NOTE=""; REDIS_PID=""
if want limits; then
  if ! command -v redis-cli >/dev/null; then
    REDIS_NOTE="skipped: redis-cli not found, so Redis at $REDIS_ADDR could not be checked"
  elif [[ $(timeout 5 redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}" ping 2>&1) != PONG ]]; then
    REDIS_NOTE="skipped: \`redis-cli -h ${REDIS_ADDR%:*} -p ${REDIS_ADDR##*:} ping\` did not answer PONG"
  else
    RL_REDIS=1
    REDIS_PID=$(ss -Htlnp "sport = :${REDIS_ADDR##*:}" 2>/dev/null | grep -o 'redis-server",pid=[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
    [[ -n $REDIS_PID && -r /proc/$REDIS_PID/stat ]] || REDIS_PID=""
  fi
  [[ -z $REDIS_NOTE ]] || log "rate limit (redis) target $REDIS_NOTE"
  TARGETS+=(rlmem); pick_port p; PORT[rlmem]=$p; BASE[rlmem]=nginx
  if (( RL_REDIS )); then TARGETS+=(rlredis); pick_port p; PORT[rlredis]=$p; BASE[rlredis]=nginx; fi
fi

# ---------------------------------------------------------------- build
GIT_REV=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then GIT_REV+=" (dirty tree)"; fi
if (( NEED_MOAT )); then
  log "building moat"
  (cd "$ROOT" && timeout 600 go build -o "$WORK/moat" ./cmd/moat) || die "go build ./cmd/moat failed"
fi
if has gop; then
  (cd "$ROOT" && timeout 600 go build -o "$WORK/goproxy" ./bench/goproxy) || die "go build ./bench/goproxy failed"
fi
if want idle; then
  (cd "$ROOT" && timeout 600 go build -o "$WORK/idleconns" ./bench/idleconns) || die "go build ./bench/idleconns failed"
fi
# Micro-benchmarks: test binaries built now, run after the load. A package
# that does not build (someone's work in progress) is reported, not fatal.
MICRO_PKGS=()   # "pkg|regexp|benchtime|label" of each micro-benchmark to run
declare -A MICRO_NOTE=()
if want micro; then
  MICRO_PKGS+=("internal/keys|^BenchmarkLookup1M\$|$MICRO_BENCHTIME|keys")
  MICRO_PKGS+=("internal/ratelimit|^BenchmarkMemoryKeys1M\$|1x|ratelimit")
  for pkg in internal/pipeline internal/server; do
    if grep -qs '^func BenchmarkPipeline' "$ROOT/$pkg"/*_test.go; then
      MICRO_PKGS+=("$pkg|^BenchmarkPipeline|$MICRO_BENCHTIME|${pkg##*/}")
    fi
  done
  if (( ${#MICRO_PKGS[@]} == 2 )); then MICRO_NOTE[pipeline]="skipped: no BenchmarkPipeline in internal/pipeline or internal/server"; fi
  for m in "${MICRO_PKGS[@]}"; do
    IFS='|' read -r pkg _ _ label <<< "$m"
    log "building the $pkg test binary"
    if ! (cd "$ROOT" && timeout 600 go test -c -o "$WORK/$label.test" "./$pkg") > "$WORK/build-$label.log" 2>&1; then
      MICRO_NOTE[$label]="\`go test -c ./$pkg\` failed: $(head -3 "$WORK/build-$label.log" | tr '\n' ' ')"
      log "WARNING: ${MICRO_NOTE[$label]}"
    fi
  done
fi

# Hard cap from here: targets x RUNS x (warmup + run + slack) + startup slack,
# plus the idle and micro scenarios' own limits.
NTARGETS=${#TARGETS[@]}
MAX_SECONDS=${MAX_SECONDS:-$(( NTARGETS * RUNS * (WARM_S + DUR_S + 20) + 180 + (${WANT[idle]:-0} ? 240 : 0) + ${#MICRO_PKGS[@]} * 300 ))}
( sleep "$MAX_SECONDS"; echo "[bench] time limit of ${MAX_SECONDS}s reached, aborting" >&2; kill -TERM $$ ) &
WATCHDOG=$!

# ---------------------------------------------------------------- configs
BODY='{"id":42,"name":"moat-bench","status":"ok","tags":["a","b","c"],"price":12.5,"stock":true}'
# The POST body: an order, benign for the CRS (no quotes, markup or SQL
# words), padded with prose to exactly POST_BYTES bytes.
POST_HEAD='{"customer_id":"cus_9f8e7d6c","email":"mary.hara@example.ie","shipping_address":{"name":"Mary Hara","line1":"12 Stephens Green","city":"Dublin","postal_code":"D02 XY45","country":"IE"},"items":[{"sku":"BK-00001-PB","title":"The Left Hand of Darkness","quantity":1,"unit_price":"15.99"},{"sku":"BK-00002-PB","title":"A Wizard of Earthsea","quantity":2,"unit_price":"9.99"},{"sku":"BK-00003-HC","title":"The Dispossessed","quantity":1,"unit_price":"24.50"}],"comment":"'
PROSE="Thanks for the quick delivery last time. The books arrived in perfect condition and the handwritten note was a lovely touch. "
pad=$(( POST_BYTES - ${#POST_HEAD} - 2 )); comment=""
while (( ${#comment} < pad )); do comment+=$PROSE; done
printf '%s%s"}' "$POST_HEAD" "${comment:0:pad}" > "$WORK/post.json"
(( $(stat -c %s "$WORK/post.json") == POST_BYTES )) || die "the POST body is not $POST_BYTES bytes"

nginx_conf() { # nginx_conf DIR: the common part of both nginx configurations
  mkdir -p "$1"
  cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
EOF
}
# The upstream answers any method; with a POST, `return` reads and discards
# the body (ngx_http_discard_request_body) before answering, keeping the
# connection alive.
UPDIR=$WORK/nginx-upstream
{ nginx_conf "$UPDIR"; cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT;
        default_type application/json;
        location / { return 200 '$BODY'; }
    }
}
EOF
} > "$WORK/nginx-upstream.conf"

NGXDIR=$WORK/nginx-proxy
if has nginx; then
  { nginx_conf "$NGXDIR"; cat <<EOF
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  } > "$WORK/nginx-proxy.conf"
fi

moat_conf() { # moat_conf PORT EXTRA [ROUTE_EXTRA]: EXTRA is top-level YAML, ROUTE_EXTRA a key of the route
  cat <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$1
upstreams:
  up:
    targets: [http://127.0.0.1:$UP_PORT]
routes:
  - name: bench
    path: /bench
    methods: [GET]
    upstream: up
    public: true
EOF
  if [[ -n ${3:-} ]]; then echo "    $3"; fi
  echo "$2"
}
# scale_conf PORT N: N public routes with the access log off; /bench is
# route N/2, the others alternate between a static path (GET, POST) and one
# with a path parameter (GET).
scale_conf() {
  cat <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$1
log: {access: false}
upstreams:
  up:
    targets: [http://127.0.0.1:$UP_PORT]
routes:
EOF
  awk -v n="$2" 'BEGIN {
    for (i = 0; i < n; i++) {
      if (i == int(n / 2)) print "  - {name: bench, path: /bench, methods: [GET], upstream: up, public: true}"
      else if (i % 2) printf "  - {name: r%d, path: \"/api/v1/r%d/items/{id}\", methods: [GET], upstream: up, public: true}\n", i, i
      else printf "  - {name: r%d, path: /api/v1/r%d/items, methods: [GET, POST], upstream: up, public: true}\n", i, i
    } }'
}
# full_conf PORT WAF(0|1): the full stack, relative paths from the
# configuration's own directory (keys.db, audit/, audit.jsonl).
AUDIT_KEY_ENV=MOAT_BENCH_AUDIT_KEY
full_conf() {
  cat <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$1
state: {keys_file: keys.db}
audit:
  dir: audit
  key: env:$AUDIT_KEY_ENV
  sinks:
    - {type: file, file: {path: audit.jsonl}}
authenticators:
  keys: {api_key: {}}
rate_limits:
  bench: {rate: 100000000, per: 1s, key: api_key}
upstreams:
  up:
    targets: [http://127.0.0.1:$UP_PORT]
routes:
  - name: bench
    path: /bench
    methods: [GET, POST]
    upstream: up
    auth: {authenticators: [keys], roles: {any_of: [bench]}}
    rate_limits: [bench]
    openapi: {spec: $WORK/bench.openapi.yaml, strict: true}
EOF
  if [[ $2 == 1 ]]; then echo "    waf: {paranoia_level: 1}"; fi
}
cat > "$WORK/bench.openapi.yaml" <<'EOF'
openapi: 3.1.0
info: {title: moat bench, version: "1"}
paths:
  /bench:
    get:
      operationId: getBench
      responses: {"200": {description: ok}}
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [customer_id, items]
              properties:
                customer_id: {type: string, maxLength: 64}
                email: {type: string, maxLength: 254}
                shipping_address:
                  type: object
                  properties:
                    name: {type: string, maxLength: 200}
                    line1: {type: string, maxLength: 200}
                    city: {type: string, maxLength: 100}
                    postal_code: {type: string, maxLength: 20}
                    country: {type: string, minLength: 2, maxLength: 2}
                items:
                  type: array
                  minItems: 1
                  maxItems: 100
                  items:
                    type: object
                    required: [sku, quantity]
                    properties:
                      sku: {type: string, pattern: "^[A-Z]{2}-[0-9]{5}-[A-Z]{2}$"}
                      title: {type: string, maxLength: 200}
                      quantity: {type: integer, minimum: 1, maximum: 1000}
                      unit_price: {type: string, pattern: "^[0-9]+\\.[0-9]{2}$"}
                comment: {type: string, maxLength: 4096}
      responses: {"200": {description: ok}}
EOF

# LIMITS: one limit the load never reaches (rate 1e8/s, burst = rate: one
# request every 10 ns). The Redis limit's name is unique per run, so counters
# left in Redis by earlier runs (or anyone else) do not matter.
RL_SPEC="{rate: 100000000, per: 1s, key: client_ip}"
RL_NAME_M=bench
RL_NAME_R="bench_$STAMP"
declare -A CONF=()
for t in "${TARGETS[@]}"; do
  case $t in
    direct|nginx|nginxpost|gop) continue ;;
  esac
  mkdir -p "$WORK/cfg-$t"; CONF[$t]=$WORK/cfg-$t/moat.yaml
  case $t in
    moat) moat_conf "${PORT[$t]}" "" ;;
    moatq) moat_conf "${PORT[$t]}" "log: {access: false}" ;;
    full) full_conf "${PORT[$t]}" 0 ;;
    waf) full_conf "${PORT[$t]}" 1 ;;
    routes10) scale_conf "${PORT[$t]}" "$SCALE_BASE_ROUTES" ;;
    routes10k) scale_conf "${PORT[$t]}" "$SCALE_ROUTES" ;;
    rlmem) moat_conf "${PORT[$t]}" "log: {access: false}
rate_limits: {$RL_NAME_M: $RL_SPEC}" "rate_limits: [$RL_NAME_M]" ;;
    rlredis) moat_conf "${PORT[$t]}" "log: {access: false}
state: {redis: {addresses: [\"$REDIS_ADDR\"]}}
rate_limits: {$RL_NAME_R: $RL_SPEC}" "rate_limits: [$RL_NAME_R]" ;;
  esac > "${CONF[$t]}"
done
if want idle; then
  mkdir -p "$WORK/cfg-idle"
  moat_conf "$IDLE_PORT" "server: {max_connections: $((IDLE_CONNS + 1000))}" > "$WORK/cfg-idle/moat.yaml"
fi
# The full stack's audit key (random, this run only) and API key: one key
# (subject bench, role bench) in the full target's store, the store copied to
# the WAF target before either starts.
if has full; then
  export "$AUDIT_KEY_ENV"="$(head -c 48 /dev/urandom | base64 -w0)"
  API_KEY=$("$WORK/moat" keys create -c "${CONF[full]}" --name bench --subject bench --roles bench 2>"$WORK/keys-create.log") \
    || { cat "$WORK/keys-create.log" >&2; die "moat keys create failed"; }
  [[ $API_KEY =~ ^moat_[0-9A-Za-z_]+$ ]] || die "moat keys create printed no key"
  cp "$WORK/cfg-full/keys.db" "$WORK/cfg-waf/keys.db"
  AUTH[full]=$API_KEY; AUTH[waf]=$API_KEY; AUTH[nginxpost]=$API_KEY
  BODYF[waf]=$WORK/post.json; BODYF[nginxpost]=$WORK/post.json
fi

# wrk scripts. The done() hook prints one machine-readable line; there is no
# request() hook, so wrk sends one static request built once from
# wrk.method, wrk.headers and wrk.body (no per-request Lua cost).
cat > "$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
EOF
for t in "${TARGETS[@]}"; do
  LUA[$t]=$WORK/report.lua
  [[ -n ${AUTH[$t]:-} ]] || continue
  LUA[$t]=$WORK/wrk-$t.lua
  {
    echo 'wrk.headers["Host"] = "api.example.com"'
    echo 'wrk.headers["User-Agent"] = "moat-bench/1 (wrk)"'
    echo 'wrk.headers["Accept"] = "application/json"'
    echo "wrk.headers[\"X-API-Key\"] = \"${AUTH[$t]}\""
    if [[ -n ${BODYF[$t]:-} ]]; then
      echo 'wrk.method = "POST"'
      echo 'wrk.headers["Content-Type"] = "application/json"'
      echo "local f = assert(io.open(\"${BODYF[$t]}\", \"rb\")); wrk.body = f:read(\"*a\"); f:close()"
    fi
    cat "$WORK/report.lua"
  } > "${LUA[$t]}"
done
# curl_target T CURL_ARGS...: the target's request, as wrk sends it.
curl_target() {
  local t=$1; shift
  local a=(-sS --max-time 5)
  if [[ -n ${AUTH[$t]:-} ]]; then
    a+=(-H "Host: api.example.com" -A "moat-bench/1 (wrk)" -H "Accept: application/json" -H "X-API-Key: ${AUTH[$t]}")
  fi
  if [[ -n ${BODYF[$t]:-} ]]; then a+=(-H "Content-Type: application/json" --data-binary "@${BODYF[$t]}"); fi
  curl "${a[@]}" "$@" "http://127.0.0.1:${PORT[$t]}/bench"
}

# ---------------------------------------------------------------- start
wait_ready() { # wait_ready NAME PORT PID LOG: until the port answers HTTP (any status), 60 s at most
  local i
  for i in $(seq 1 600); do
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2 || true; die "$1 exited during startup (log: $4)"; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/bench" 2>/dev/null) != 000 ]]; then return 0; fi
    sleep 0.1
  done
  tail -20 "$4" >&2 || true
  die "$1 did not answer on 127.0.0.1:$2 within 60s"
}
start_nginx() { # start_nginx NAME CPU CONF DIR PORT -> sets STARTED_PID
  "$NGINX" -t -q -p "$4" -e "$4/error.log" -c "$3" || die "nginx rejected $3"
  pin_exec "$2" "$NGINX" -p "$4" -e "$4/error.log" -c "$3" >"$4/stdout.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$1" "$5" "$STARTED_PID" "$4/error.log"
}
declare -A MLOG=()
start_moat() { # start_moat NAME CONF PORT LOG -> sets STARTED_PID
  GOMAXPROCS=$MOAT_GOMAXPROCS pin_exec "$PROXY_CPU" "$WORK/moat" serve -c "$2" >>"$4" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$1" "$3" "$STARTED_PID" "$4"
}

UP_PID=""
if (( NEED_MOAT )); then
  log "starting upstream nginx on 127.0.0.1:$UP_PORT"
  start_nginx upstream "$UPSTREAM_CPU" "$WORK/nginx-upstream.conf" "$UPDIR" "$UP_PORT"; UP_PID=$STARTED_PID
fi
for t in "${TARGETS[@]}"; do
  case $t in
    direct) MPID[$t]=$UP_PID ;;
    nginx)
      log "starting ${NAME[$t]} on :${PORT[$t]}"
      start_nginx "${NAME[$t]}" "$PROXY_CPU" "$WORK/nginx-proxy.conf" "$NGXDIR" "${PORT[$t]}"; MPID[$t]=$STARTED_PID ;;
    nginxpost) MPID[$t]=${MPID[nginx]} ;;
    gop)
      log "starting ${NAME[$t]} on :${PORT[$t]}"
      GOMAXPROCS=$MOAT_GOMAXPROCS pin_exec "$PROXY_CPU" "$WORK/goproxy" -listen "127.0.0.1:${PORT[$t]}" \
        -upstream "http://127.0.0.1:$UP_PORT" >"$WORK/goproxy.log" 2>&1 &
      MPID[$t]=$!; PIDS+=("${MPID[$t]}")
      wait_ready "${NAME[$t]}" "${PORT[$t]}" "${MPID[$t]}" "$WORK/goproxy.log" ;;
    *)
      MLOG[$t]=${MOAT_LOG:-$WORK/moat-$t.log}
      log "starting ${NAME[$t]} on :${PORT[$t]}"
      start_moat "${NAME[$t]}" "${CONF[$t]}" "${PORT[$t]}" "${MLOG[$t]}"; MPID[$t]=$STARTED_PID ;;
  esac
done

# Sanity: every target answers 2xx with the upstream's body to the request
# wrk will send.
for t in "${TARGETS[@]}"; do
  got=$(curl_target "$t" -f) || die "${NAME[$t]}: request to 127.0.0.1:${PORT[$t]}/bench failed: $(curl_target "$t" 2>&1 | head -c 300)"
  [[ $got == "$BODY" ]] || die "${NAME[$t]} (127.0.0.1:${PORT[$t]}/bench) returned an unexpected body: $got"
done
headers_of() { curl_target "$1" -D - -o /dev/null | tr -d '\r' | sed '1d;/^$/d' | sort; }
MOAT_HEADERS=""; FULL_HEADERS=""
if has moat; then MOAT_HEADERS=$(headers_of moat); fi
if has full; then FULL_HEADERS=$(headers_of full); fi
# The full stack must really check what it claims: no key -> 401, a body
# property the schema does not declare -> 400 (strict validation), an attack
# in the body -> 403 on the WAF target, and the audit file fills.
if has full; then
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${PORT[full]}/bench")
  [[ $code == 401 ]] || die "${NAME[full]}: a request without the API key got $code, want 401"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-API-Key: $API_KEY" -H 'Content-Type: application/json' \
    --data-binary '{"customer_id":"c1","items":[{"sku":"BK-00001-PB","quantity":1}],"undeclared":1}' "http://127.0.0.1:${PORT[full]}/bench")
  [[ $code == 400 ]] || die "${NAME[full]}: a body with an undeclared property got $code, want 400 (strict OpenAPI validation)"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-API-Key: $API_KEY" -H 'Content-Type: application/json' \
    --data-binary '{"customer_id":"1 UNION SELECT password FROM users--","items":[{"sku":"BK-00001-PB","quantity":1}],"comment":"<script>alert(1)</script>"}' \
    "http://127.0.0.1:${PORT[waf]}/bench")
  [[ $code == 403 ]] || die "${NAME[waf]}: an SQL injection and XSS body got $code, want 403 (WAF)"
  curl_target full -fo /dev/null || die "${NAME[full]}: second request failed"
  for _ in $(seq 1 50); do [[ -s $WORK/cfg-full/audit.jsonl ]] && break; sleep 0.1; done
  [[ -s $WORK/cfg-full/audit.jsonl ]] || die "${NAME[full]}: nothing in the audit file $WORK/cfg-full/audit.jsonl"
fi
# The limited targets must really check their limit: allowed responses carry
# the RateLimit headers (headers: true is the default).
RL_HEADERS=""
for t in rlmem rlredis; do
  has "$t" || continue
  h=$(curl_target "$t" -D - -o /dev/null | tr -d '\r' | grep -i '^ratelimit') \
    || die "${NAME[$t]} answered without RateLimit headers: is the limit applied?"
  RL_HEADERS+="${NAME[$t]}"$'\n'"$h"$'\n'
done

# ---------------------------------------------------------------- measure
# proc_ticks PID...: utime+stime (clock ticks) of the processes and, for
# each, its direct children (nginx: master + workers). Fields 14 and 15 of
# /proc/PID/stat, counted after the ")" closing the command name.
proc_ticks() {
  local p all=() t=0 f
  for p in "$@"; do
    all+=("$p")
    for f in $(pgrep -P "$p"); do all+=("$f"); done
  done
  for p in "${all[@]}"; do
    f=$(sed 's/^.*) //' "/proc/$p/stat") || die "process $p is gone"
    set -- $f
    t=$(( t + ${12} + ${13} ))
  done
  echo "$t"
}
# proc_rss PID: VmRSS in KiB of the process and its direct children.
proc_rss() {
  local p t=0 v
  for p in "$1" $(pgrep -P "$1"); do
    v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null) || v=0
    t=$(( t + ${v:-0} ))
  done
  echo "$t"
}

# pid_ticks PID: utime+stime of one process (all its threads), no children:
# for redis-server, whose short-lived children (BGSAVE) could vanish mid-read.
pid_ticks() {
  local f
  f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
  set -- $f
  echo $(( ${12} + ${13} ))
}

# core_ticks CPU: "busy total" clock ticks of one CPU from /proc/stat (busy
# includes steal), to see how much of the proxy's core went to other processes.
core_ticks() {
  if (( ! PIN )); then echo "0 0"; return; fi
  awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat
}

# With the Redis target, redis-server's CPU is read around every measured run
# (of every target: the others show its background load, from anyone).
REDIS_RAW=$WORK/redis.tsv
printf 'target\trun\tredis_ticks\trequests\tseconds\tredis_us_per_req\tredis_cpu_pct\n' > "$REDIS_RAW"
RAW=$WORK/raw.tsv
printf 'target\trun\trps\tp50_us\tp90_us\tp99_us\tmax_us\tcpu_us_per_req\trequests\terrors\tticks\tother_on_proxy_cpu_pct\trss_kib\n' > "$RAW"

run_wrk() { # run_wrk TARGET SECONDS OUTFILE
  local c=$CONNECTIONS
  if [[ $1 == waf ]]; then c=$WAF_CONNECTIONS; fi
  pin "$WRK_CPU" timeout $(( $2 + 30 )) wrk -t"$THREADS" -c"$c" -d"$2s" --timeout 5s --latency \
    -s "${LUA[$1]}" "http://127.0.0.1:${PORT[$1]}/bench" > "$3" 2>&1 || { cat "$3" >&2; die "wrk failed against ${NAME[$1]}"; }
}

declare -A NONE=() # runs in which a target completed no request
LOAD_BEFORE=$(cat /proc/loadavg)
T0=$(date +%s)
log "load before: $LOAD_BEFORE"
# Runs are interleaved (run 1 of every target, then run 2, ...) so that
# background load drifting during the run hits every target alike.
if (( LOAD )); then
for run in $(seq 1 "$RUNS"); do
  for t in "${TARGETS[@]}"; do
    pid=${MPID[$t]}
    log "run $run/$RUNS: ${NAME[$t]} (:${PORT[$t]})"
    if (( WARM_S > 0 )); then run_wrk "$t" "$WARM_S" "$WORK/warmup.txt"; fi
    # direct: the measured process sits on the upstream's core, not PROXY_CPU,
    # so "other" there is just the proxy core's background load.
    read -r b0 a0 < <(core_ticks "$PROXY_CPU")
    if [[ -n $REDIS_PID ]]; then r0=$(pid_ticks "$REDIS_PID"); fi
    c0=$(proc_ticks "$pid")
    run_wrk "$t" "$DUR_S" "$WORK/wrk-$t-$run.txt"
    c1=$(proc_ticks "$pid")
    if [[ -n $REDIS_PID ]]; then r1=$(pid_ticks "$REDIS_PID"); fi
    read -r b1 a1 < <(core_ticks "$PROXY_CPU")
    rss=$(proc_rss "$pid")
    own=$((c1 - c0)); [[ $t == direct ]] && own=0
    line=$(grep '^BENCH ' "$WORK/wrk-$t-$run.txt") || { cat "$WORK/wrk-$t-$run.txt" >&2; die "no BENCH line from wrk"; }
    declare -A M=()
    for kv in ${line#BENCH }; do M[${kv%%=*}]=${kv#*=}; done
    errs=$(( M[err_connect] + M[err_read] + M[err_write] + M[err_status] + M[err_timeout] ))
    if (( M[requests] == 0 )); then
      # Nothing finished within DURATION (a very slow target under load):
      # no figures for this run, counted apart and reported.
      log "WARNING: ${NAME[$t]} run $run completed no request (${line#BENCH })"
      NONE[$t]=$(( ${NONE[$t]:-0} + 1 )); unset M; continue
    fi
    awk -v t="$t" -v r="$run" -v n="${M[requests]}" -v d="${M[duration_us]}" -v p50="${M[p50_us]}" \
        -v p90="${M[p90_us]}" -v p99="${M[p99_us]}" -v mx="${M[max_us]}" -v dt=$((c1 - c0)) -v hz="$CLK_TCK" -v e="$errs" \
        -v ob=$((b1 - b0 - own)) -v oa=$((a1 - a0)) -v rss="$rss" \
        'BEGIN { o = oa > 0 ? 100 * ob / oa : 0; if (o < 0) o = 0
                 printf "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%.2f\t%d\t%d\t%d\t%.0f\t%d\n", t, r, n / (d / 1e6), p50, p90, p99, mx, dt * 1e6 / hz / n, n, e, dt, o, rss }' >> "$RAW"
    (( errs == 0 )) || log "WARNING: ${NAME[$t]} run $run had $errs errors (${line#BENCH })"
    if [[ -n $REDIS_PID ]] && (( r0 >= 0 && r1 >= 0 )); then
      awk -v t="$t" -v r="$run" -v n="${M[requests]}" -v d="${M[duration_us]}" -v dt=$((r1 - r0)) -v hz="$CLK_TCK" \
        'BEGIN { printf "%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\n", t, r, dt, n, d / 1e6, dt * 1e6 / hz / n, 100 * dt / hz / (d / 1e6) }' >> "$REDIS_RAW"
    fi
    unset M
  done
done
fi
T1=$(date +%s)
LOAD_AFTER=$(cat /proc/loadavg)
log "load after: $LOAD_AFTER"

for t in "${TARGETS[@]}"; do
  kill -0 "${MPID[$t]}" 2>/dev/null || die "${NAME[$t]} died during the run"
done
# Audit events written by the full-stack targets (every answered request is
# one http_request event; drops under load are counted by moat, not here).
declare -A AUDIT_LINES=()
for t in full waf; do
  has "$t" || continue
  AUDIT_LINES[$t]=$(find "$WORK/cfg-$t" -maxdepth 1 -name 'audit*.jsonl*' -type f -exec cat {} + 2>/dev/null | wc -l)
done
# Statuses and reasons in the full-stack targets' access logs: the sanity
# checks' 401, 400 and 403 once each, then only 200s (wrk counts any
# non-2xx as an error too).
declare -A STATUSES=()
for t in full waf; do
  has "$t" || continue
  STATUSES[$t]=$(grep -o '"status":[0-9]*\|"reason_id":"[a-z_]*"' "${MLOG[$t]}" 2>/dev/null | sort | uniq -c | sort -rn | head -12 || true)
done

# Optional profile of moat (defaults), after and apart from the measured runs.
PERF_TXT=""
if [[ ${PERF:-0} == 1 ]] && has moat; then
  command -v perf >/dev/null || die "PERF=1 needs perf (apt-get install linux-perf)"
  log "profiling moat (defaults) with perf for ${DUR_S}s (not part of the figures)"
  pin_exec "$WRK_CPU" perf record -q -F 999 -g -o "$WORK/perf.data" -p "${MPID[moat]}" -- sleep "$DUR_S" >"$WORK/perf.log" 2>&1 &
  PERF_PID=$!; PIDS+=("$PERF_PID")
  run_wrk moat "$DUR_S" "$WORK/wrk-perf.txt"
  wait "$PERF_PID" || true
  PERF_TXT=$WORK/perf.txt
  {
    echo "self (flat), top symbols:"
    timeout 120 perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort symbol --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' | head -40
    echo
    echo "inclusive (children), top symbols:"
    timeout 120 perf report -i "$WORK/perf.data" --stdio --children -g none --sort symbol --percent-limit 4 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' | head -50
  } > "$PERF_TXT" || true
fi

# ---------------------------------------------------------------- idle connections
# A fresh moat (defaults) that has answered one request; then IDLE_CONNS
# connections, each with one GET answered, held open and idle.
declare -A IDLE=()
if want idle; then
  log "idle connections: starting a fresh moat on :$IDLE_PORT"
  start_moat "moat (idle connections)" "$WORK/cfg-idle/moat.yaml" "$IDLE_PORT" "${MOAT_LOG:-$WORK/moat-idle.log}"; IDLE_PID=$STARTED_PID
  curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$IDLE_PORT/bench" || die "moat (idle connections) does not answer GET /bench"
  sleep 1
  log "idle connections: opening $IDLE_CONNS keep-alive connections"
  if pin "$WRK_CPU" timeout 150 "$WORK/idleconns" -addr "127.0.0.1:$IDLE_PORT" -n "$IDLE_CONNS" -pid "$IDLE_PID" \
      -settle 2s -timeout 120s > "$WORK/idle.txt" 2> "$WORK/idle.err"; then
    :
  else
    IDLE_NOTE="bench/idleconns failed: $(head -c 300 "$WORK/idle.err" | tr '\n' ' ')"
    log "WARNING: idle connections $IDLE_NOTE"
  fi
  line=$(grep '^IDLE ' "$WORK/idle.txt" || true)
  for kv in ${line#IDLE }; do IDLE[${kv%%=*}]=${kv#*=}; done
  kill -TERM "$IDLE_PID" 2>/dev/null || true
  wait "$IDLE_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------- micro-benchmarks
# Run pinned on the proxy CPU with GOMAXPROCS like moat, after the load, from
# the package directory. Results: label, benchmark, unit, value.
MICRO=$WORK/micro.tsv
: > "$MICRO"
if want micro; then
  for m in "${MICRO_PKGS[@]}"; do
    IFS='|' read -r pkg re bt label <<< "$m"
    [[ -x $WORK/$label.test ]] || continue
    log "micro-benchmark: $pkg $re (-benchtime $bt)"
    if (cd "$ROOT/$pkg" && GOMAXPROCS=$MOAT_GOMAXPROCS pin "$PROXY_CPU" timeout 300 "$WORK/$label.test" \
        -test.run '^$' -test.bench "$re" -test.benchtime "$bt" -test.benchmem -test.timeout 280s) > "$WORK/micro-$label.txt" 2>&1; then
      # go test names a benchmark NAME-P when GOMAXPROCS P is not 1: strip
      # exactly that suffix, not a -10 that is part of the name (routes-10).
      awk -v l="$label" -v p="$MOAT_GOMAXPROCS" '/^Benchmark/ && NF >= 4 { n = $1; if (p != 1) sub("-" p "$", "", n)
        for (i = 3; i < NF; i += 2) printf "%s\t%s\t%s\t%s\n", l, n, $(i + 1), $i }' "$WORK/micro-$label.txt" >> "$MICRO"
    else
      MICRO_NOTE[$label]="$pkg $re failed: $(grep -m3 -E 'FAIL|panic|Error|error' "$WORK/micro-$label.txt" | tr '\n' ' ' | head -c 300)"
      log "WARNING: ${MICRO_NOTE[$label]}"
    fi
  done
fi
micro() { # micro LABEL BENCH UNIT: the value, or empty
  awk -F'\t' -v l="$1" -v b="$2" -v u="$3" '$1 == l && $2 == b && $3 == u { print $4; exit }' "$MICRO"
}

# ---------------------------------------------------------------- report
median() { # median TARGET COLUMN
  awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t { print $c }' "$RAW" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A RPS P50 P99 CPU ERR OTHER RSS
for t in "${TARGETS[@]}"; do
  RPS[$t]=$(median "$t" 3); P50[$t]=$(median "$t" 4); P99[$t]=$(median "$t" 6); CPU[$t]=$(median "$t" 8)
  OTHER[$t]=$(median "$t" 12); RSS[$t]=$(median "$t" 13)
  ERR[$t]=$(awk -F'\t' -v t="$t" 'NR > 1 && $1 == t { s += $10 } END { print s + 0 }' "$RAW")
  ERR[$t]=$(( ERR[$t] + ${NONE[$t]:-0} ))
done
# paired_added TARGET [clean]: "min..max" over runs of CPU µs/req(TARGET, run) - CPU µs/req(moatq, run);
# with clean, only runs where neither had errors, as "median (min..max, n runs)".
paired_added() {
  awk -F'\t' -v t="$1" -v clean="${2:-}" '
    NR > 1 && $1 == t && (!clean || $10 == 0) { a[$2] = $8 }
    NR > 1 && $1 == "moatq" && (!clean || $10 == 0) { b[$2] = $8 }
    END { n = 0; for (r in a) if (r in b) { d[++n] = a[r] - b[r] }
          if (!n) { print "n/a (no error-free run)"; exit }
          for (i = 2; i <= n; i++) { x = d[i]; for (j = i - 1; j >= 1 && d[j] > x; j--) d[j + 1] = d[j]; d[j + 1] = x }
          if (!clean) { printf "%+.1f..%+.1f", d[1], d[n]; exit }
          m = n % 2 ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2
          printf "%+.1f µs/req (%+.1f..%+.1f, %d run%s)", m, d[1], d[n], n, (n > 1 ? "s" : "") }' "$RAW"
}
# paired_ratio A B: "min..max" over runs of CPU µs/req(A, run) / CPU µs/req(B, run).
paired_ratio() {
  awk -F'\t' -v a="$1" -v b="$2" '
    NR > 1 && $1 == a { x[$2] = $8 } NR > 1 && $1 == b { y[$2] = $8 }
    END { n = 0; for (r in x) if ((r in y) && y[r] > 0) { q = x[r] / y[r]; if (!n || q < lo) lo = q; if (!n || q > hi) hi = q; n++ }
          if (n) printf "%.2fx..%.2fx", lo, hi; else print "n/a" }' "$RAW"
}
redis_median() { # redis_median TARGET COLUMN (of redis.tsv)
  awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t { print $c }' "$REDIS_RAW" | sort -g |
    awk '{ v[NR] = $1 } END { if (!NR) print "n/a"; else if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
redis_range() { # redis_range TARGET COLUMN
  awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t { if (!n || $c < lo) lo = $c; if (!n || $c > hi) hi = $c; n++ }
    END { if (n) printf "%.1f-%.1f", lo, hi; else print "n/a" }' "$REDIS_RAW"
}
redis_bg() { # redis-server's CPU share over the other targets' runs: "median% (min-max%)"
  awk -F'\t' 'NR > 1 && $1 != "rlredis" { print $7 }' "$REDIS_RAW" | sort -g |
    awk '{ v[NR] = $1 } END { if (!NR) print "n/a"; else printf "%.1f%% (%.1f-%.1f%%)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# target_of T / met_of T: the issue's target for a load row, and whether it is met.
target_of() {
  local t=$1 s=""
  if [[ -n ${TCPU[$t]:-} ]]; then s="CPU ≤ ${TCPU[$t]}x"; fi
  if [[ -n ${TP99[$t]:-} ]]; then s+="${s:+, }p99 ≤ ${TP99[$t]}x"; fi
  echo "${s:-}"
}
met_of() {
  local t=$1 b=${BASE[$1]}
  [[ -n ${TCPU[$t]:-}${TP99[$t]:-} ]] || { echo ""; return; }
  (( ERR[$t] == 0 )) || { echo "n/a (${ERR[$t]} errors)"; return; }
  awk -v c="${CPU[$t]}" -v cb="${CPU[$b]}" -v p="${P99[$t]}" -v pb="${P99[$b]}" -v tc="${TCPU[$t]:-}" -v tp="${TP99[$t]:-}" 'BEGIN {
    ok = 1; why = ""
    if (tc != "" && !(cb > 0 && c / cb <= tc + 0)) { ok = 0; why = "CPU" }
    if (tp != "" && !(pb > 0 && p / pb <= tp + 0)) { ok = 0; why = why (why != "" ? ", " : "") "p99" }
    if (ok) print "yes"; else print "**no** (" why ")" }'
}
yesno() { # yesno VALUE OP LIMIT -> yes / **no**
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<" ? v < l : v <= l); print (ok ? "yes" : "**no**") }'
}

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GOVER=$(go version)
NGXVER=$( (( NEED_MOAT )) && "$NGINX" -v 2>&1 || echo "nginx not used")
WRKVER=$( (( LOAD )) && { wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }' || echo "wrk not used")
if (( PIN )); then
  PINNING="wrk and bench/idleconns on CPU $WRK_CPU, the upstream nginx on CPU $UPSTREAM_CPU, every proxy under test (nginx proxy, moat, goproxy) and the micro-benchmarks on CPU $PROXY_CPU (taskset)"
else
  PINNING="none (only $NPROC CPU): every process shares the one CPU"
fi
ENVS=$(env | grep -E '^(SCENARIOS|RESULTS|DURATION|WARMUP|CONNECTIONS|THREADS|RUNS|GOMAXPROCS|WRK_CPU|UPSTREAM_CPU|PROXY_CPU|PORT_BASE|MOAT_LOG|GO_BASELINE|PERF|MAX_SECONDS|LIMITS|REDIS_ADDR|IDLE_CONNS|SCALE_ROUTES|MICRO_BENCHTIME|KEEP_TMP)=' | sort | tr '\n' ' ' || true)
COMMAND="${ENVS}${CMDLINE}"
WALL=$(( $(date +%s) - WALL0 ))

# summary: what goes to bench/RESULTS.md (and heads the full report).
summary() {
  echo "## Harness run $DATE_UTC"
  echo
  echo "- command: \`$COMMAND\` (SCENARIOS=$SCENARIOS$( [[ $LIMITS == 1 ]] && echo ", LIMITS=1"))"
  echo "- moat revision: $GIT_REV; full report: \`bench/out/results-$STAMP.md\` (git-ignored)"
  echo "- machine: nproc $NPROC, $CPU_MODEL, $(uname -srm); $GOVER; $NGXVER; $WRKVER"
  if (( LOAD )); then
    echo "- DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS (WAF target: $WAF_CONNECTIONS) THREADS=$THREADS RUNS=$RUNS GOMAXPROCS=$MOAT_GOMAXPROCS; pinning: $PINNING"
    echo "- load average before: \`$LOAD_BEFORE\`, after the load: \`$LOAD_AFTER\`; load measurement $((T1 - T0)) s, whole run $WALL s"
  else
    echo "- GOMAXPROCS=$MOAT_GOMAXPROCS; pinning: $PINNING"
    echo "- load average at the start: \`$LOAD_BEFORE\`; whole run $WALL s"
  fi
  echo
  if (( LOAD )); then
    echo "| scenario | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | CPU ratio to nginx | p99 ratio to nginx | target | met? | errors | other load on proxy CPU |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"
    for t in "${TARGETS[@]}"; do
      local b=${BASE[$t]} cr pr
      if (( ${NONE[$t]:-0} >= RUNS )); then
        printf '| %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | %s | n/a (no run completed a request) | %d | |\n' "${NAME[$t]}" "$(target_of "$t")" "${ERR[$t]}"
        continue
      fi
      if [[ $t == "$b" ]]; then cr="(baseline)"; pr="(baseline)"
      else cr=$(ratio "${CPU[$t]}" "${CPU[$b]}"); pr=$(ratio "${P99[$t]}" "${P99[$b]}"); fi
      printf '| %s | %.0f | %s | %s | %.1f | %s | %s | %s | %s | %s | %d | %s |\n' "${NAME[$t]}" "${RPS[$t]}" "$(ms "${P50[$t]}")" \
        "$(ms "${P99[$t]}")" "${CPU[$t]}" "$(mib "${RSS[$t]}")" "$cr" "$pr" "$(target_of "$t")" "$(met_of "$t")" "${ERR[$t]}" \
        "$( (( PIN )) && printf '%.0f%%' "${OTHER[$t]}" || echo n/a)"
    done
    echo
    echo "Medians of $RUNS interleaved runs per target, each column on its own. Ratios are to \"nginx proxy\""
    echo "of the same run (GET), except the POST rows, whose ratios are to \"nginx proxy, POST 1 KB JSON\"."
    echo "CPU µs/req: utime+stime of the process under test over the measured run (nginx: master + worker;"
    echo "direct: the upstream nginx) per request completed. RSS: its VmRSS after the run. Other load: the"
    echo "share of the proxy CPU that went to other processes during the run (noise). Errors: non-2xx"
    echo "responses and socket errors, plus runs that completed no request at all (no figures from those)."
    if has full; then
      echo "Full stack: API key (X-API-Key), one memory rate limit far above the load, strict OpenAPI request"
      echo "validation, default security headers, audit to a file sink, access log on; the WAF row adds CRS"
      echo "paranoia level 1 (request phases) and sends a benign $POST_BYTES-byte JSON POST over $WAF_CONNECTIONS connections"
      echo "(WAF_CONNECTIONS; every other row: $CONNECTIONS). Audit events written:"
      echo "${AUDIT_LINES[full]:-?} (no WAF), ${AUDIT_LINES[waf]:-?} (WAF), against the requests the raw runs count plus warmups."
    fi
    echo
  fi
  if want scale || want idle || want micro || [[ -n $IDLE_NOTE ]]; then
    echo "| scale and micro figure | value | target | met? |"
    echo "|---|---|---|---|"
    if has routes10k; then
      local m
      if (( SCALE_ROUTES != 10000 )); then m="n/a (SCALE_ROUTES is not 10000)"
      elif (( ERR[routes10k] + ERR[routes10] > 0 )); then m="n/a (errors)"
      else m=$(yesno "$(awk -v a="${CPU[routes10k]}" -v b="${CPU[routes10]}" 'BEGIN { print (b > 0 ? a / b : 1e9) }')" '<=' 1.10); fi
      printf '| %s routes against %s: CPU per request | %s (%.1f vs %.1f µs/req; per run %s) | ≤ 1.10x | %s |\n' \
        "$SCALE_ROUTES" "$SCALE_BASE_ROUTES" "$(ratio "${CPU[routes10k]}" "${CPU[routes10]}")" "${CPU[routes10k]}" "${CPU[routes10]}" \
        "$(paired_ratio routes10k routes10)" "$m"
      printf '| %s routes against %s: p99, RSS | %s vs %s ms; %s vs %s MiB | | |\n' "$SCALE_ROUTES" "$SCALE_BASE_ROUTES" \
        "$(ms "${P99[routes10k]}")" "$(ms "${P99[routes10]}")" "$(mib "${RSS[routes10k]}")" "$(mib "${RSS[routes10]}")"
    fi
    if [[ -n ${IDLE[rss_kib]:-} ]]; then
      local mb m
      mb=$(awk -v k="${IDLE[rss_kib]}" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
      if (( IDLE_CONNS != 10000 )); then m="n/a (IDLE_CONNS is not 10000)"
      elif (( IDLE[failed] > 0 || IDLE[conns] != IDLE_CONNS )); then m="n/a (connections failed)"
      else m=$(yesno "$mb" '<' 150); fi
      printf '| %s idle keep-alive connections: moat RSS | %s MB (%s MiB; %s MiB before, %.1f KiB per connection; %s connections open, %s failed, moat held %s descriptors) | < 150 MB | %s |\n' \
        "$IDLE_CONNS" "$mb" "$(mib "${IDLE[rss_kib]}")" "$(mib "${IDLE[rss_before_kib]}")" \
        "$(awk -v a="${IDLE[rss_kib]}" -v b="${IDLE[rss_before_kib]}" -v n="${IDLE[conns]}" 'BEGIN { print (n > 0 ? (a - b) / n : 0) }')" \
        "${IDLE[conns]}" "${IDLE[failed]}" "${IDLE[fds]}" "$m"
    fi
    if [[ -n $IDLE_NOTE ]]; then echo "| $IDLE_CONNS idle keep-alive connections | $IDLE_NOTE | < 150 MB | n/a |"; fi
    if want micro; then
      local v
      v=$(micro keys BenchmarkLookup1M/lookup ns/op)
      printf '| 1,000,000 API keys: lookup by key ID | %s | < 1 µs | %s |\n' "${v:+$v ns/op}" "${v:+$(yesno "$v" '<' 1000)}"
      v=$(micro keys BenchmarkLookup1M/verify ns/op)
      printf '| 1,000,000 API keys: whole check (parse, lookup, SHA-256, constant-time compare) | %s | < 1 µs | %s |\n' "${v:+$v ns/op}" "${v:+$(yesno "$v" '<' 1000)}"
      v=$(micro keys BenchmarkLookup1M/lookup bytes/key)
      printf '| 1,000,000 API keys: cache heap per key | %s | | |\n' "${v:+$v bytes/key, $(awk -v b="$v" 'BEGIN { printf "%.0f", b }') MB in all}"
      v=$(micro ratelimit BenchmarkMemoryKeys1M MB)
      printf '| 1,000,000 limiter keys: heap | %s | ≤ 200 MB | %s |\n' "${v:+$v MB ($(micro ratelimit BenchmarkMemoryKeys1M B/key) B/key)}" "${v:+$(yesno "$v" '<=' 200)}"
      for label in pipeline server; do
        awk -F'\t' -v l="$label" '$1 == l { print $2 }' "$MICRO" | awk '!seen[$0]++' | while read -r b; do
          local cpu; cpu=$(micro "$label" "$b" cpu-ns/op)
          printf '| %s (./internal/%s): per request | %s ns/op, %s%s B/op, %s allocs/op | | |\n' "$b" "$label" \
            "$(micro "$label" "$b" ns/op)" "${cpu:+$cpu CPU ns/op, }" "$(micro "$label" "$b" B/op)" "$(micro "$label" "$b" allocs/op)"
        done
      done
      for label in keys ratelimit pipeline server; do
        if [[ -n ${MICRO_NOTE[$label]:-} ]]; then echo "| $label micro-benchmark | ${MICRO_NOTE[$label]} | | |"; fi
      done
    fi
    echo
    if want micro; then
      echo "Micro-benchmarks: \`go test -run '^\$' -bench <name> -benchmem\` test binaries, pinned to the proxy CPU with"
      echo "GOMAXPROCS=$MOAT_GOMAXPROCS; BenchmarkLookup1M and BenchmarkPipeline with -benchtime $MICRO_BENCHTIME, BenchmarkMemoryKeys1M"
      echo "with -benchtime 1x (one build of a million keys). MB is 10^6 bytes."
    fi
    if want idle || [[ -n $IDLE_NOTE ]]; then
      echo "Idle connections: a fresh moat (defaults, server.max_connections $((IDLE_CONNS + 1000))), VmRSS before and"
      echo "2 s after bench/idleconns opened the connections, each after one GET answered on it."
    fi
    echo
  fi
}

details() {
  echo "## Details of the run $STAMP"
  echo
  if [[ $LIMITS == 1 ]] || want limits; then
    echo "| rate limit vs moat (access log off) | CPU µs/req | added µs/req (medians) | added µs/req, per run | CPU/req | p99 | req/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in rlmem rlredis; do
      has "$t" || continue
      printf '| %s | %.1f | %+.1f | %s | %s | %s | %s |\n' "${NAME[$t]}" "${CPU[$t]}" \
        "$(awk -v a="${CPU[$t]}" -v b="${CPU[moatq]}" 'BEGIN { print a - b }')" "$(paired_added "$t")" \
        "$(ratio "${CPU[$t]}" "${CPU[moatq]}")" "$(ratio "${P99[$t]}" "${P99[moatq]}")" "$(ratio "${RPS[$t]}" "${RPS[moatq]}")"
    done
    echo
    echo "Rate-limited targets (LIMITS=1): moat with \`log: {access: false}\` plus one limit"
    echo "\`$RL_SPEC\` (burst defaults to rate) on the /bench route, which the load never"
    echo "reaches, so every request is checked and admitted. \"added µs/req (medians)\" is the"
    echo "target's median CPU µs/req minus that of moat (access log off); \"per run\" is the"
    echo "range of the same difference within each run (runs are interleaved, so run i of both"
    echo "targets saw similar background load)."
    for t in rlmem rlredis; do
      has "$t" || continue
      (( ERR[$t] > 0 )) || continue
      echo
      echo "**${NAME[$t]}: ${ERR[$t]} non-2xx responses.** A refused request (429, or 503"
      echo "limiter_unavailable) skips the upstream and is much cheaper than a proxied one, so this"
      echo "row's CPU µs/req and req/s are not comparable. Added µs/req over the error-free runs"
      echo "only: $(paired_added "$t" clean)."
    done
    echo
    if has rlredis; then
      echo "The Redis limit \`$RL_NAME_R\` (store: redis, on_redis_error: fail_closed by default) is kept"
      echo "in Redis at $REDIS_ADDR; its key is unique to this run. redis-server is not pinned and"
      echo "not counted in \"CPU µs/req\". moat's log for this target shows"
      echo "$(grep -c 'rate limit store unreachable' "${MLOG[rlredis]}" || true) breaker opening(s) (\"rate limit store unreachable\": 5 Redis calls in a row failed or"
      echo "missed the state.redis.budget, 50ms by default; fail_closed then answers 503 for 1s)."
      if [[ -n $REDIS_PID ]]; then
        echo "redis-server (pid $REDIS_PID) used a median **$(redis_median rlredis 6) µs of CPU per request**"
        echo "during the Redis target's runs ($(redis_range rlredis 6) across runs; $(redis_median rlredis 7)% of a CPU),"
        echo "against $(redis_bg) of a CPU during the other targets' runs (its background: anyone else using"
        echo "this Redis, and its own timers). When it runs on the proxy CPU it also shows in that row's"
        echo "\"other load\" column."
      else
        echo "redis-server's pid could not be found (not listening on this machine, or no /proc access), so"
        echo "its CPU per request is not reported."
      fi
    else
      echo "moat + rate limit (redis): $REDIS_NOTE."
    fi
    echo
  fi
  if (( LOAD )); then
    echo "### Parameters"
    echo
    echo "- wrk: \`wrk -t$THREADS -c$CONNECTIONS -d${DUR_S}s --timeout 5s --latency -s <script> http://127.0.0.1:PORT/bench\`, HTTP/1.1 keep-alive; WARMUP=$WARMUP before every measured run"
    echo "- moat: GOMAXPROCS=$MOAT_GOMAXPROCS, one listener and upstream; its logs (stderr, JSON access log) go to files in the temporary directory"
    if has gop; then
      echo "- Go ReverseProxy (reference): bench/goproxy, net/http server + httputil.ReverseProxy, GOMAXPROCS=$MOAT_GOMAXPROCS, pinned like moat; none of moat's stages"
    fi
    echo "- nginx proxy: worker_processes 1, access_log off, upstream keepalive 64, proxy_http_version 1.1, Connection \"\""
    echo "- upstream: a second nginx (worker_processes 1, access_log off) answering \`return 200\` with a ${#BODY}-byte JSON body to any method"
    if has full; then
      echo "- full stack requests: Host api.example.com, User-Agent, Accept: application/json, X-API-Key; the POST adds Content-Type: application/json and the $POST_BYTES-byte body (the nginx POST row sends the same request)"
    fi
    echo "- hard time limit: ${MAX_SECONDS}s"
    echo
    echo "### Raw runs"
    echo
    echo '```'
    column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
    echo '```'
    echo
  fi
  if [[ -s $MICRO ]]; then
    echo "### Micro-benchmark output"
    echo
    echo '```'
    cat "$WORK"/micro-*.txt 2>/dev/null | grep -E '^(Benchmark|goos|goarch|cpu|pkg)' || true
    echo '```'
    echo
  fi
  if [[ -n $PERF_TXT ]]; then
    echo "### perf profile of moat (defaults), extra unmeasured run"
    echo
    echo '```'
    cat "$PERF_TXT"
    echo '```'
    echo
  fi
  if has rlredis && [[ -n $REDIS_PID ]]; then
    echo "### redis-server CPU per measured run (pid $REDIS_PID, not pinned)"
    echo
    echo '```'
    column -t -s $'\t' "$REDIS_RAW" 2>/dev/null || cat "$REDIS_RAW"
    echo '```'
    echo
  fi
  if [[ -n $MOAT_HEADERS ]]; then
    echo "### moat response headers (defaults)"
    echo
    echo '```'
    echo "$MOAT_HEADERS"
    echo '```'
    echo
  fi
  if [[ -n $FULL_HEADERS ]]; then
    echo "### moat response headers (full stack)"
    echo
    echo '```'
    echo "$FULL_HEADERS"
    echo '```'
    echo
    for t in full waf; do
      has "$t" || continue
      echo "Statuses and reasons in the access log of ${NAME[$t]} (the readiness probe and sanity checks add"
      echo "a few 401s and one 400 or 403; 499s are requests in flight when a wrk run ended):"
      echo
      echo '```'
      echo "${STATUSES[$t]:-(none)}"
      echo '```'
      echo
    done
  fi
  if [[ -n $RL_HEADERS ]]; then
    echo "### RateLimit headers of the rate-limited targets"
    echo
    echo '```'
    printf '%s' "$RL_HEADERS"
    echo '```'
    echo
  fi
}

summary > "$WORK/summary.md"
{ cat "$WORK/summary.md"; details; } | tee "$REPORT"
log "report written to ${REPORT#"$ROOT"/}"
if [[ $RESULTS == 1 ]]; then
  { echo; cat "$WORK/summary.md"; } >> "$ROOT/bench/RESULTS.md"
  log "summary appended to bench/RESULTS.md (RESULTS=0 to skip)"
fi
log "wall time ${WALL}s"
