#!/usr/bin/env bash
# bench/run.sh: plain-proxy load test of moat against nginx, loopback only.
#
# Targets, all serving GET /bench with the same ~100-byte JSON body:
#   direct             wrk -> upstream nginx
#   nginx              wrk -> nginx reverse proxy -> upstream nginx
#   moat (defaults)    wrk -> moat (default config, access log on) -> upstream
#   moat (access log off)  same with log: {access: false}
#   Go ReverseProxy    wrk -> bench/goproxy (bare net/http + httputil.ReverseProxy),
#                      a reference for what the Go standard library alone costs
# With LIMITS=1, also (both with the access log off, like "moat (access log off)"):
#   moat + rate limit (memory)  one client_ip limit on the route, far above the load
#   moat + rate limit (redis)   the same limit kept in Redis at REDIS_ADDR (skipped,
#                      with a note, when redis-cli cannot ping it)
#
# Parameters (environment, defaults in brackets):
#   DURATION [10s]  measured wrk run per target and run (s or m suffix)
#   WARMUP [2s]     wrk run before each measured run, not counted
#   CONNECTIONS [50] wrk -c;  THREADS [1] wrk -t
#   RUNS [3]        measured runs per target; the table reports medians
#   GOMAXPROCS [1]  for moat and goproxy (1 = comparable with nginx's single worker)
#   WRK_CPU [0] UPSTREAM_CPU [0, or 2 with 3+ cores] PROXY_CPU [1]  taskset pinning
#   PORT_BASE [18080] first port tried; five free ports on 127.0.0.1 are used
#   MOAT_LOG [<tmp>/moat-*.log] where moat's stderr (its logs) goes
#   MAX_SECONDS [derived]  hard cap on the run once moat is built
#   GO_BASELINE [1] 0 skips the bench/goproxy reference target
#   KEEP_TMP [0]    1 keeps the temporary directory (configs, logs)
#   PERF [0]        1 adds one extra, unmeasured DURATION run against moat (defaults)
#                   under `perf record -g` and puts the hottest symbols in the report
#   LIMITS [0]      1 adds the two rate-limited moat targets above
#   REDIS_ADDR [127.0.0.1:6379]  Redis for LIMITS=1 (its redis-server's CPU is reported
#                   too when its pid can be found; it is not pinned)
#
# Output: a markdown report on stdout, also appended to
# bench/out/results-<timestamp>.md. See bench/RESULTS.md for the method.
set -euo pipefail

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "[bench] $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMDLINE="$0${*:+ $*}"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
RUNS=${RUNS:-3}
MOAT_GOMAXPROCS=${GOMAXPROCS:-1}
PORT_BASE=${PORT_BASE:-18080}
KEEP_TMP=${KEEP_TMP:-0}
GO_BASELINE=${GO_BASELINE:-1}
LIMITS=${LIMITS:-0}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}

secs() { # 10s, 2m, 500ms (rounded up), 7 -> seconds
  case $1 in
    *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *) echo "$1" ;;
  esac
}
for v in CONNECTIONS THREADS RUNS MOAT_GOMAXPROCS PORT_BASE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
DUR_S=$(secs "$DURATION"); WARM_S=$(secs "$WARMUP")
[[ $DUR_S =~ ^[1-9][0-9]*$ ]] || die "DURATION must look like 10s or 1m, got '$DURATION'"
[[ $WARM_S =~ ^[0-9]+$ ]] || die "WARMUP must look like 2s, got '$WARMUP'"
(( THREADS <= CONNECTIONS )) || die "THREADS must not exceed CONNECTIONS"
[[ $LIMITS == 0 || $LIMITS == 1 ]] || die "LIMITS must be 0 or 1, got '$LIMITS'"
[[ $REDIS_ADDR =~ ^[^:]+:[0-9]+$ ]] || die "REDIS_ADDR must be host:port, got '$REDIS_ADDR'"

# ---------------------------------------------------------------- tools
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
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
for t in wrk "$NGINX" go curl ss taskset getconf awk; do
  command -v "$t" >/dev/null || die "required tool not found: $t"
done

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

# ---------------------------------------------------------------- ports
port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
pick_port() {
  local p=$NEXT_PORT
  while ! port_free "$p"; do
    p=$((p + 1)); (( p < PORT_BASE + 200 )) || die "no free port in $PORT_BASE..$((PORT_BASE + 200))"
  done
  NEXT_PORT=$((p + 1)); echo "$p"
}
NEXT_PORT=$PORT_BASE
UP_PORT=$(pick_port); NEXT_PORT=$((UP_PORT + 1))
NGX_PORT=$(pick_port); NEXT_PORT=$((NGX_PORT + 1))
MOAT_PORT=$(pick_port); NEXT_PORT=$((MOAT_PORT + 1))
MOATQ_PORT=$(pick_port); NEXT_PORT=$((MOATQ_PORT + 1))
GOP_PORT=$(pick_port)
if [[ $LIMITS == 1 ]]; then
  NEXT_PORT=$((GOP_PORT + 1)); RLM_PORT=$(pick_port)
  NEXT_PORT=$((RLM_PORT + 1)); RLR_PORT=$(pick_port)
fi

# ---------------------------------------------------------------- redis (LIMITS=1)
# The Redis target needs a Redis that answers; without one it is skipped and
# the report says why. redis-server is not ours: never started, pinned or
# stopped here. Its pid (if it listens on this machine) is used to read its CPU.
RL_REDIS=0; REDIS_NOTE=""; REDIS_PID=""
if [[ $LIMITS == 1 ]]; then
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
fi

# ---------------------------------------------------------------- build moat
log "building moat"
GIT_REV=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then GIT_REV+=" (dirty tree)"; fi
(cd "$ROOT" && timeout 600 go build -o "$WORK/moat" ./cmd/moat) || die "go build ./cmd/moat failed"
if [[ $GO_BASELINE == 1 ]]; then
  (cd "$ROOT" && timeout 600 go build -o "$WORK/goproxy" ./bench/goproxy) || die "go build ./bench/goproxy failed"
fi
NTARGETS=$(( (GO_BASELINE == 1 ? 5 : 4) + (LIMITS == 1 ? 1 + RL_REDIS : 0) ))

# Hard cap from here: targets x RUNS x (warmup + run + slack) + startup slack.
MAX_SECONDS=${MAX_SECONDS:-$(( NTARGETS * RUNS * (WARM_S + DUR_S + 20) + 120 ))}
( sleep "$MAX_SECONDS"; echo "[bench] time limit of ${MAX_SECONDS}s reached, aborting" >&2; kill -TERM $$ ) &
WATCHDOG=$!

# ---------------------------------------------------------------- configs
BODY='{"id":42,"name":"moat-bench","status":"ok","tags":["a","b","c"],"price":12.5,"stock":true}'
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
{ nginx_conf "$NGXDIR"; cat <<EOF
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} > "$WORK/nginx-proxy.conf"

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
moat_conf "$MOAT_PORT" "" > "$WORK/moat-defaults.yaml"
moat_conf "$MOATQ_PORT" "log: {access: false}" > "$WORK/moat-accesslog-off.yaml"
# LIMITS=1: one limit the load never reaches (rate 1e8/s, burst = rate: one
# request every 10 ns). The Redis limit's name is unique per run, so counters
# left in Redis by earlier runs (or anyone else) do not matter.
RL_SPEC="{rate: 100000000, per: 1s, key: client_ip}"
RL_NAME_M=bench
RL_NAME_R="bench_$STAMP"
if [[ $LIMITS == 1 ]]; then
  moat_conf "$RLM_PORT" "log: {access: false}
rate_limits: {$RL_NAME_M: $RL_SPEC}" "rate_limits: [$RL_NAME_M]" > "$WORK/moat-ratelimit-memory.yaml"
  moat_conf "$RLR_PORT" "log: {access: false}
state: {redis: {addresses: [\"$REDIS_ADDR\"]}}
rate_limits: {$RL_NAME_R: $RL_SPEC}" "rate_limits: [$RL_NAME_R]" > "$WORK/moat-ratelimit-redis.yaml"
fi

# ---------------------------------------------------------------- start
wait_ready() { # wait_ready NAME PORT PID LOG
  local i
  for i in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2 || true; die "$1 exited during startup (log: $4)"; }
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$2/bench" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -20 "$4" >&2 || true
  die "$1 did not answer on 127.0.0.1:$2 within 10s"
}
start_nginx() { # start_nginx NAME CPU CONF DIR PORT -> sets STARTED_PID
  "$NGINX" -t -q -p "$4" -e "$4/error.log" -c "$3" || die "nginx rejected $3"
  pin_exec "$2" "$NGINX" -p "$4" -e "$4/error.log" -c "$3" >"$4/stdout.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$1" "$5" "$STARTED_PID" "$4/error.log"
}
start_moat() { # start_moat NAME CONF PORT LOG -> sets STARTED_PID
  GOMAXPROCS=$MOAT_GOMAXPROCS pin_exec "$PROXY_CPU" "$WORK/moat" serve -c "$2" >>"$4" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$1" "$3" "$STARTED_PID" "$4"
}

log "starting upstream nginx on 127.0.0.1:$UP_PORT, nginx proxy on :$NGX_PORT, moat on :$MOAT_PORT and :$MOATQ_PORT$( [[ $GO_BASELINE == 1 ]] && echo ", Go ReverseProxy on :$GOP_PORT")"
start_nginx upstream "$UPSTREAM_CPU" "$WORK/nginx-upstream.conf" "$UPDIR" "$UP_PORT"; UP_PID=$STARTED_PID
start_nginx "nginx proxy" "$PROXY_CPU" "$WORK/nginx-proxy.conf" "$NGXDIR" "$NGX_PORT"; NGX_PID=$STARTED_PID
MOAT_LOG_D=${MOAT_LOG:-$WORK/moat-defaults.log}
MOAT_LOG_Q=${MOAT_LOG:-$WORK/moat-accesslog-off.log}
start_moat "moat (defaults)" "$WORK/moat-defaults.yaml" "$MOAT_PORT" "$MOAT_LOG_D"; MOAT_PID=$STARTED_PID
start_moat "moat (access log off)" "$WORK/moat-accesslog-off.yaml" "$MOATQ_PORT" "$MOAT_LOG_Q"; MOATQ_PID=$STARTED_PID
GOP_PID=""
if [[ $GO_BASELINE == 1 ]]; then
  GOMAXPROCS=$MOAT_GOMAXPROCS pin_exec "$PROXY_CPU" "$WORK/goproxy" -listen "127.0.0.1:$GOP_PORT" \
    -upstream "http://127.0.0.1:$UP_PORT" >"$WORK/goproxy.log" 2>&1 &
  GOP_PID=$!; PIDS+=("$GOP_PID")
  wait_ready "Go ReverseProxy" "$GOP_PORT" "$GOP_PID" "$WORK/goproxy.log"
fi
RLM_PID="" RLR_PID="" RL_PORTS=()
if [[ $LIMITS == 1 ]]; then
  MOAT_LOG_RM=${MOAT_LOG:-$WORK/moat-ratelimit-memory.log}
  log "starting moat + rate limit (memory) on :$RLM_PORT"
  start_moat "moat + rate limit (memory)" "$WORK/moat-ratelimit-memory.yaml" "$RLM_PORT" "$MOAT_LOG_RM"; RLM_PID=$STARTED_PID
  RL_PORTS+=("$RLM_PORT")
  if (( RL_REDIS )); then
    MOAT_LOG_RR=${MOAT_LOG:-$WORK/moat-ratelimit-redis.log}
    log "starting moat + rate limit (redis) on :$RLR_PORT, limit $RL_NAME_R in Redis at $REDIS_ADDR"
    start_moat "moat + rate limit (redis)" "$WORK/moat-ratelimit-redis.yaml" "$RLR_PORT" "$MOAT_LOG_RR"; RLR_PID=$STARTED_PID
    RL_PORTS+=("$RLR_PORT")
  fi
fi

# Sanity: every target answers 200 with the upstream's body.
for p in "$UP_PORT" "$NGX_PORT" "$MOAT_PORT" "$MOATQ_PORT" ${GOP_PID:+"$GOP_PORT"} ${RL_PORTS[@]+"${RL_PORTS[@]}"}; do
  got=$(curl -fsS --max-time 2 "http://127.0.0.1:$p/bench") || die "GET 127.0.0.1:$p/bench failed"
  [[ $got == "$BODY" ]] || die "127.0.0.1:$p/bench returned an unexpected body: $got"
done
MOAT_HEADERS=$(curl -sS -D - -o /dev/null --max-time 2 "http://127.0.0.1:$MOAT_PORT/bench" | tr -d '\r' | sed '1d;/^$/d' | sort)
# The limited targets must really check their limit: allowed responses carry
# the RateLimit headers (headers: true is the default).
RL_HEADERS=""
for p in ${RL_PORTS[@]+"${RL_PORTS[@]}"}; do
  h=$(curl -sS -D - -o /dev/null --max-time 2 "http://127.0.0.1:$p/bench" | tr -d '\r' | grep -i '^ratelimit') \
    || die "127.0.0.1:$p/bench answered without RateLimit headers: is the limit applied?"
  RL_HEADERS+="127.0.0.1:$p"$'\n'"$h"$'\n'
done

# ---------------------------------------------------------------- measure
# The lua done() hook prints one machine-readable line; no request() hook,
# so wrk keeps sending its static request (no per-request lua cost).
cat > "$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
EOF

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

TARGETS=(direct nginx moat moatq)
declare -A NAME=([direct]="direct (upstream nginx)" [nginx]="nginx proxy" [moat]="moat (defaults)" [moatq]="moat (access log off)" [gop]="Go ReverseProxy (reference)")
declare -A PORT=([direct]=$UP_PORT [nginx]=$NGX_PORT [moat]=$MOAT_PORT [moatq]=$MOATQ_PORT [gop]=$GOP_PORT)
declare -A MPID=([direct]=$UP_PID [nginx]=$NGX_PID [moat]=$MOAT_PID [moatq]=$MOATQ_PID [gop]=$GOP_PID)
if [[ -n $GOP_PID ]]; then TARGETS+=(gop); fi
NAME[rlmem]="moat + rate limit (memory)"; NAME[rlredis]="moat + rate limit (redis)"
if [[ -n $RLM_PID ]]; then TARGETS+=(rlmem); PORT[rlmem]=$RLM_PORT; MPID[rlmem]=$RLM_PID; fi
if [[ -n $RLR_PID ]]; then TARGETS+=(rlredis); PORT[rlredis]=$RLR_PORT; MPID[rlredis]=$RLR_PID; fi
# With the Redis target, redis-server's CPU is read around every measured run
# (of every target: the others show its background load, from anyone).
REDIS_RAW=$WORK/redis.tsv
printf 'target\trun\tredis_ticks\trequests\tseconds\tredis_us_per_req\tredis_cpu_pct\n' > "$REDIS_RAW"
RAW=$WORK/raw.tsv
printf 'target\trun\trps\tp50_us\tp90_us\tp99_us\tmax_us\tcpu_us_per_req\trequests\terrors\tticks\tother_on_proxy_cpu_pct\n' > "$RAW"

run_wrk() { # run_wrk PORT SECONDS OUTFILE
  pin "$WRK_CPU" timeout $(( $2 + 30 )) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2s" --timeout 5s --latency \
    -s "$WORK/report.lua" "http://127.0.0.1:$1/bench" > "$3" 2>&1 || { cat "$3" >&2; die "wrk failed against :$1"; }
}

LOAD_BEFORE=$(cat /proc/loadavg)
T0=$(date +%s)
log "load before: $LOAD_BEFORE"
# Runs are interleaved (run 1 of every target, then run 2, ...) so that
# background load drifting during the run hits every target alike.
for run in $(seq 1 "$RUNS"); do
  for t in "${TARGETS[@]}"; do
    port=${PORT[$t]}; pid=${MPID[$t]}
    log "run $run/$RUNS: ${NAME[$t]} (:$port)"
    if (( WARM_S > 0 )); then run_wrk "$port" "$WARM_S" "$WORK/warmup.txt"; fi
    # direct: the measured process sits on the upstream's core, not PROXY_CPU,
    # so "other" there is just the proxy core's background load.
    read -r b0 a0 < <(core_ticks "$PROXY_CPU")
    if [[ -n $REDIS_PID ]]; then r0=$(pid_ticks "$REDIS_PID"); fi
    c0=$(proc_ticks "$pid")
    run_wrk "$port" "$DUR_S" "$WORK/wrk-$t-$run.txt"
    c1=$(proc_ticks "$pid")
    if [[ -n $REDIS_PID ]]; then r1=$(pid_ticks "$REDIS_PID"); fi
    read -r b1 a1 < <(core_ticks "$PROXY_CPU")
    own=$((c1 - c0)); [[ $t == direct ]] && own=0
    line=$(grep '^BENCH ' "$WORK/wrk-$t-$run.txt") || { cat "$WORK/wrk-$t-$run.txt" >&2; die "no BENCH line from wrk"; }
    declare -A M=()
    for kv in ${line#BENCH }; do M[${kv%%=*}]=${kv#*=}; done
    errs=$(( M[err_connect] + M[err_read] + M[err_write] + M[err_status] + M[err_timeout] ))
    (( M[requests] > 0 )) || die "no requests completed against ${NAME[$t]}"
    awk -v t="$t" -v r="$run" -v n="${M[requests]}" -v d="${M[duration_us]}" -v p50="${M[p50_us]}" \
        -v p90="${M[p90_us]}" -v p99="${M[p99_us]}" -v mx="${M[max_us]}" -v dt=$((c1 - c0)) -v hz="$CLK_TCK" -v e="$errs" \
        -v ob=$((b1 - b0 - own)) -v oa=$((a1 - a0)) \
        'BEGIN { o = oa > 0 ? 100 * ob / oa : 0; if (o < 0) o = 0
                 printf "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%.2f\t%d\t%d\t%d\t%.0f\n", t, r, n / (d / 1e6), p50, p90, p99, mx, dt * 1e6 / hz / n, n, e, dt, o }' >> "$RAW"
    (( errs == 0 )) || log "WARNING: ${NAME[$t]} run $run had $errs errors (${line#BENCH })"
    if [[ -n $REDIS_PID ]] && (( r0 >= 0 && r1 >= 0 )); then
      awk -v t="$t" -v r="$run" -v n="${M[requests]}" -v d="${M[duration_us]}" -v dt=$((r1 - r0)) -v hz="$CLK_TCK" \
        'BEGIN { printf "%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\n", t, r, dt, n, d / 1e6, dt * 1e6 / hz / n, 100 * dt / hz / (d / 1e6) }' >> "$REDIS_RAW"
    fi
    unset M
  done
done
T1=$(date +%s)
LOAD_AFTER=$(cat /proc/loadavg)
log "load after: $LOAD_AFTER"

for t in "${TARGETS[@]}"; do
  kill -0 "${MPID[$t]}" 2>/dev/null || die "${NAME[$t]} died during the run"
done

# Optional profile of moat (defaults), after and apart from the measured runs.
PERF_TXT=""
if [[ ${PERF:-0} == 1 ]]; then
  command -v perf >/dev/null || die "PERF=1 needs perf (apt-get install linux-perf)"
  log "profiling moat (defaults) with perf for ${DUR_S}s (not part of the figures)"
  pin_exec "$WRK_CPU" perf record -q -F 999 -g -o "$WORK/perf.data" -p "$MOAT_PID" -- sleep "$DUR_S" >"$WORK/perf.log" 2>&1 &
  PERF_PID=$!; PIDS+=("$PERF_PID")
  run_wrk "$MOAT_PORT" "$DUR_S" "$WORK/wrk-perf.txt"
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

# ---------------------------------------------------------------- report
median() { # median TARGET COLUMN
  awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $1 == t { print $c }' "$RAW" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A RPS P50 P99 CPU ERR OTHER
for t in "${TARGETS[@]}"; do
  RPS[$t]=$(median "$t" 3); P50[$t]=$(median "$t" 4); P99[$t]=$(median "$t" 6); CPU[$t]=$(median "$t" 8)
  OTHER[$t]=$(median "$t" 12)
  ERR[$t]=$(awk -F'\t' -v t="$t" 'NR > 1 && $1 == t { s += $10 } END { print s + 0 }' "$RAW")
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

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GOVER=$(go version)
NGXVER=$("$NGINX" -v 2>&1)
WRKVER=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')
LOGBYTES=$(stat -c %s "$MOAT_LOG_D" 2>/dev/null || echo "?")
if (( PIN )); then
  PINNING="wrk on CPU $WRK_CPU, upstream nginx on CPU $UPSTREAM_CPU, proxy under test (nginx proxy, moat or goproxy) on CPU $PROXY_CPU (taskset)"
else
  PINNING="none (only $NPROC CPU): every process shares the one CPU"
fi

{
  echo "## moat plain-proxy benchmark, $STAMP"
  echo
  echo "| target | req/s | p50 ms | p99 ms | CPU µs/req (proxy) | errors | other load on proxy CPU |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    printf '| %s | %.0f | %s | %s | %.1f | %d | %s |\n' "${NAME[$t]}" "${RPS[$t]}" "$(ms "${P50[$t]}")" "$(ms "${P99[$t]}")" \
      "${CPU[$t]}" "${ERR[$t]}" "$( (( PIN )) && printf '%.0f%%' "${OTHER[$t]}" || echo n/a)"
  done
  echo
  echo "| ratio vs nginx proxy | CPU/req | p99 | req/s |"
  echo "|---|---:|---:|---:|"
  for t in moat moatq ${GOP_PID:+gop} ${RLM_PID:+rlmem} ${RLR_PID:+rlredis}; do
    echo "| ${NAME[$t]} | $(ratio "${CPU[$t]}" "${CPU[nginx]}") | $(ratio "${P99[$t]}" "${P99[nginx]}") | $(ratio "${RPS[$t]}" "${RPS[nginx]}") |"
  done
  echo
  if [[ $LIMITS == 1 ]]; then
    echo "| rate limit vs moat (access log off) | CPU µs/req | added µs/req (medians) | added µs/req, per run | CPU/req | p99 | req/s |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in ${RLM_PID:+rlmem} ${RLR_PID:+rlredis}; do
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
    for t in ${RLM_PID:+rlmem} ${RLR_PID:+rlredis}; do
      (( ERR[$t] > 0 )) || continue
      echo
      echo "**${NAME[$t]}: ${ERR[$t]} non-2xx responses.** A refused request (429, or 503"
      echo "limiter_unavailable) skips the upstream and is much cheaper than a proxied one, so this"
      echo "row's CPU µs/req and req/s are not comparable. Added µs/req over the error-free runs"
      echo "only: $(paired_added "$t" clean)."
    done
    echo
    if [[ -n $RLR_PID ]]; then
      echo "The Redis limit \`$RL_NAME_R\` (store: redis, on_redis_error: fail_closed by default) is kept"
      echo "in Redis at $REDIS_ADDR; its key is unique to this run. redis-server is not pinned and"
      echo "not counted in \"CPU µs/req (proxy)\". moat's log for this target shows"
      echo "$(grep -c 'rate limit store unreachable' "$MOAT_LOG_RR" || true) breaker opening(s) (\"rate limit store unreachable\": 5 Redis calls in a row failed or"
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
  echo "Medians of $RUNS runs per target (each column independently). \"CPU µs/req\" is the"
  echo "utime+stime of the process under test (direct: the upstream nginx; nginx proxy: master +"
  echo "worker; moat: its one process, all threads) over the measured run, divided by the requests"
  echo "wrk completed (Go ReverseProxy: its one process). \"Other load on proxy CPU\" is the share"
  echo "of the proxy CPU's time (from /proc/stat, steal included) spent on anything but the process under"
  echo "test during the measured run: background noise. Target (perf issue): moat CPU/req <= 2.0x"
  echo "nginx and p99 <= 2x nginx."
  echo
  echo "### Parameters"
  echo
  echo "- command: \`$(env | grep -E '^(DURATION|WARMUP|CONNECTIONS|THREADS|RUNS|GOMAXPROCS|WRK_CPU|UPSTREAM_CPU|PROXY_CPU|PORT_BASE|MOAT_LOG|GO_BASELINE|PERF|MAX_SECONDS|LIMITS|REDIS_ADDR)=' | sort | tr '\n' ' ')$CMDLINE\`"
  echo "- DURATION=$DURATION WARMUP=$WARMUP (before every measured run) CONNECTIONS=$CONNECTIONS THREADS=$THREADS RUNS=$RUNS"
  echo "- wrk: \`wrk -t$THREADS -c$CONNECTIONS -d${DUR_S}s --timeout 5s --latency -s report.lua http://127.0.0.1:PORT/bench\`, HTTP/1.1 keep-alive"
  echo "- moat: GOMAXPROCS=$MOAT_GOMAXPROCS, default configuration plus one public GET route /bench; its logs (stderr, JSON access log) go to a file in the temporary directory ($LOGBYTES bytes for \"moat (defaults)\")"
  if [[ -n $GOP_PID ]]; then
    echo "- Go ReverseProxy (reference): bench/goproxy, net/http server + httputil.ReverseProxy, GOMAXPROCS=$MOAT_GOMAXPROCS, pinned like moat; none of moat's stages"
  fi
  echo "- nginx proxy: worker_processes 1, access_log off, upstream keepalive 64, proxy_http_version 1.1, Connection \"\""
  echo "- upstream: a second nginx (worker_processes 1, access_log off) answering \`return 200\` with a ${#BODY}-byte JSON body"
  echo "- pinning: $PINNING"
  echo "- moat revision: $GIT_REV"
  echo "- load average before: \`$LOAD_BEFORE\`, after: \`$LOAD_AFTER\` (measurement took $((T1 - T0))s)"
  echo
  echo "### Machine"
  echo
  echo "- nproc: $NPROC; CPU: $CPU_MODEL"
  echo "- kernel: $(uname -srm)"
  echo "- $GOVER; $NGXVER; $WRKVER; CLK_TCK=$CLK_TCK"
  echo
  echo "### Raw runs"
  echo
  echo '```'
  column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
  echo '```'
  echo
  if [[ -n $PERF_TXT ]]; then
    echo "### perf profile of moat (defaults), extra unmeasured run"
    echo
    echo '```'
    cat "$PERF_TXT"
    echo '```'
    echo
  fi
  if [[ -n $RLR_PID && -n $REDIS_PID ]]; then
    echo "### redis-server CPU per measured run (pid $REDIS_PID, not pinned)"
    echo
    echo '```'
    column -t -s $'\t' "$REDIS_RAW" 2>/dev/null || cat "$REDIS_RAW"
    echo '```'
    echo
  fi
  echo "### moat response headers (defaults)"
  echo
  echo '```'
  echo "$MOAT_HEADERS"
  echo '```'
  echo
  if [[ -n $RL_HEADERS ]]; then
    echo "### RateLimit headers of the rate-limited targets"
    echo
    echo '```'
    printf '%s' "$RL_HEADERS"
    echo '```'
    echo
  fi
} | tee -a "$REPORT"
log "report appended to ${REPORT#"$ROOT"/}"
