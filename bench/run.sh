#!/usr/bin/env bash
# bench/run.sh (make bench): gemproxy measured side by side with nginx, on
# loopback only. See bench/README.md for what each row means.
#
#   1. builds gemproxy, the bench upstream (testupstream with a few thousand
#      gems), coldload and report into bench/tmp;
#   2. starts the upstream, gemproxy and nginx (a proxy_cache mirror of the
#      same upstream) on fixed 127.0.0.1 ports, warms both caches until every
#      benchmarked URL is a HIT, and checks each answer with curl;
#   3. warm hits (phase "warm"): wrk, same settings for both, runs
#      alternating gemproxy, nginx per row, BENCH_ROUNDS rounds; the report
#      takes the median;
#   4. latency at a steady load (phase "latency"): bench/openloop at 25%,
#      50% and 75% of nginx's saturated requests/s (measured by wrk in the
#      warm phase, or by a wrk run of its own) on /info and the /versions
#      206, against each server in turn;
#   5. cold coalescing and memory (phase "cold"): N concurrent misses of a
#      50 MB gem with upstream latency, against one client alone (fresh data
#      directories); then, in the same gemproxy process, 100 clients
#      download the cached gem and a 200 MiB push streams through, with
#      gemproxy's peak RSS in each;
#   6. prints the report and writes it to bench/results/latest.md.
#
# Both servers run as deployed: access log on (gemproxy's default, written
# to bench/tmp/gemproxy.log; nginx with buffer=64k flush=1s).
#
# Settings (environment): BENCH_DURATION (seconds per wrk run, 10),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (64), BENCH_THREADS (2), BENCH_GEMS
# (3000), BENCH_COLD_CLIENTS (500), BENCH_COLD_LATENCY (200ms),
# BENCH_MEM_CLIENTS (100), BENCH_PUSH_MIB (200), BENCH_COLD_NGINX (1: also
# run the cold test through nginx, for reference), BENCH_COLD_PAIRS (0: that
# many more alternating gemproxy/nginx runs of the N-client cold test, for
# the spread of the ratio; needs BENCH_COLD_NGINX=1), BENCH_LAT_DURATION
# (seconds per openloop run, 10), BENCH_LAT_LOADS (percentages of nginx's
# saturated rate, "25 50 75"), BENCH_LAT_ROUNDS (3: alternating rounds of
# the steady-load runs; the report compares the medians of the rounds),
# BENCH_PHASES (which phases run, "warm latency cold"), BENCH_TIME_LIMIT
# (seconds, 1200: the whole run is stopped past it), BENCH_PORT_BASE
# (19290: the first of the loopback ports used), BENCH_PPROF (1: gemproxy
# serves pprof on BENCH_PORT_BASE+9), BENCH_STRICT (1: exit 1 when a
# target fails).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH=$ROOT/bench
TMP=$BENCH/tmp
RAW=$TMP/results
OUT=$BENCH/results

DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
GEMS=${BENCH_GEMS:-3000}
COLD_CLIENTS=${BENCH_COLD_CLIENTS:-500}
COLD_LATENCY=${BENCH_COLD_LATENCY:-200ms}
MEM_CLIENTS=${BENCH_MEM_CLIENTS:-100}
PUSH_MIB=${BENCH_PUSH_MIB:-200}
COLD_NGINX=${BENCH_COLD_NGINX:-1}
COLD_PAIRS=${BENCH_COLD_PAIRS:-0}
LAT_DURATION=${BENCH_LAT_DURATION:-10}
LAT_LOADS=${BENCH_LAT_LOADS:-25 50 75}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
PHASES=" ${BENCH_PHASES:-warm latency cold} "
TIME_LIMIT=${BENCH_TIME_LIMIT:-1200}
# Disturbed warm runs are repeated only while the run is younger than this.
RETRY_UNTIL=$((TIME_LIMIT * 55 / 100))
RETRY_OTHER_PCT=10

# Ports: the upstream on BENCH_PORT_BASE (19290), gemproxy on +2, nginx on +3.
PORT_BASE=${BENCH_PORT_BASE:-19290}
UP_PORT=$PORT_BASE
GP_PORT=$((PORT_BASE + 2))
NGX_PORT=$((PORT_BASE + 3))
UP=http://127.0.0.1:$UP_PORT
GP=http://127.0.0.1:$GP_PORT
NGX=http://127.0.0.1:$NGX_PORT

UP_PID= GP_PID= NGX_PID= WATCHDOG_PID=
STARTED=$(date +%s)

log() { printf '[bench %3ds] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# ---------------------------------------------------------------- cleanup

# stop_pid PID: SIGTERM, wait up to 10s, then SIGKILL. Only processes this
# script started are ever signalled.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_pid "$GP_PID"
	stop_pid "$NGX_PID"
	stop_pid "$UP_PID"
	[ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null && wait "$WATCHDOG_PID" 2>/dev/null
	exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------- prerequisites

command -v go >/dev/null || die "go is required (Go 1.26, see go.mod)"
missing=()
for tool in nginx wrk curl; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "installing ${missing[*]} with apt-get"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		die "missing ${missing[*]}: install them (Debian: apt-get install -y nginx wrk curl)"
	fi
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UP_PORT $GP_PORT $NGX_PORT; do
	port_in_use "$p" && die "127.0.0.1:$p is in use (another benchmark still running?)"
done

# The whole run is bounded: past TIME_LIMIT the script is interrupted and
# cleans up.
(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	sleep "$TIME_LIMIT" &
	sleeper=$!
	wait "$sleeper" || exit 0
	echo "[bench] time limit of ${TIME_LIMIT}s reached: stopping" >&2
	kill -TERM $$
) &
WATCHDOG_PID=$!

rm -rf "$TMP"
mkdir -p "$TMP" "$RAW" "$OUT"

# ------------------------------------------------------------------ build

# The revision measured, as built (a dirty tree is marked so).
GEMPROXY_REVISION=$(git describe --always --dirty 2>/dev/null || echo unknown)
log "building gemproxy ($GEMPROXY_REVISION), upstream, coldload, openloop, report"
# BENCH_PPROF=1: a gemproxy that also serves net/http/pprof on
# 127.0.0.1:BENCH_PORT_BASE+9 (build tag benchpprof; never in the product).
if [ "${BENCH_PPROF:-0}" = 1 ]; then
	go build -tags benchpprof -o "$TMP/gemproxy" ./cmd/gemproxy
	export GEMPROXY_PPROF_ADDR=127.0.0.1:$((PORT_BASE + 9))
else
	go build -o "$TMP/gemproxy" ./cmd/gemproxy
fi
go build -o "$TMP/upstream" ./bench/upstream
go build -o "$TMP/coldload" ./bench/coldload
go build -o "$TMP/openloop" ./bench/openloop
go build -o "$TMP/report" ./bench/report

# phase NAME: whether BENCH_PHASES includes NAME.
phase() { [[ $PHASES == *" $1 "* ]]; }

# curl without any proxy from the environment.
CURL=(curl -s --noproxy '*' --max-time 30)

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
	local url=$1 i
	for i in $(seq $(($2 * 10))); do
		"${CURL[@]}" -f -o /dev/null "$url" && return 0
		sleep 0.1
	done
	return 1
}

# --------------------------------------------------------------- upstream

log "starting the bench upstream with $GEMS gems (building them takes a few seconds)"
"$TMP/upstream" -listen "127.0.0.1:$UP_PORT" -gems "$GEMS" -manifest "$TMP/manifest.env" >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
wait_http "$UP/__stats" 180 || die "the upstream did not start: $(tail -5 "$TMP/upstream.log")"
# shellcheck source=/dev/null
. "$TMP/manifest.env"
log "upstream: $(grep published "$TMP/upstream.log")"

# --------------------------------------------------------------- gemproxy

cat >"$TMP/gemproxy.toml" <<EOF
# Written by bench/run.sh.
listen = "127.0.0.1:$GP_PORT"
upstream = "$UP"
data_dir = "$TMP/gemproxy-data"
# The access log stays on (log_level "info", the default), as deployed.

# Every benchmarked object stays fresh for the whole run, as in the nginx
# mirror (proxy_cache_valid 200 1h): the warm rows measure hits only.
[class.versions]
ttl = "1h"
[class.info]
ttl = "1h"
[class.names]
ttl = "1h"
[class.full_index]
ttl = "1h"
[class.api]
ttl = "1h"

[server]
# Restarts between scenarios must not wait for the load-balancer grace.
shutdown_grace = "0s"
drain_timeout = "5s"
EOF

# start_gemproxy DATA_DIR [fresh]: start gemproxy on DATA_DIR (emptied
# first with "fresh") and wait until it answers.
start_gemproxy() {
	[ "${2:-}" = fresh ] && rm -rf "$1"
	"$TMP/gemproxy" --config "$TMP/gemproxy.toml" --data-dir "$1" >>"$TMP/gemproxy.log" 2>&1 &
	GP_PID=$!
	wait_http "$GP/healthz" 20 || die "gemproxy did not start: $(tail -5 "$TMP/gemproxy.log")"
}
stop_gemproxy() {
	stop_pid "$GP_PID"
	GP_PID=
}

# ------------------------------------------------------------------ nginx

mkdir -p "$TMP/nginx/cache" "$TMP/nginx/temp"
cat >"$TMP/nginx/nginx.conf" <<EOF
# Written by bench/run.sh: nginx as a caching mirror of the bench upstream.
worker_processes auto;
# Ignored (with a warning) when not started as root.
user $(id -un) $(id -gn);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;

events {
    worker_connections 4096;
}

http {
    # As deployed: every request logged, in a buffer written at least once
    # a second (gemproxy's access log is buffered and flushed likewise).
    access_log $TMP/nginx/access.log combined buffer=64k flush=1s;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    # No artificial reconnects under wrk (nginx closes after 1000 by default).
    keepalive_requests 1000000;

    client_body_temp_path $TMP/nginx/temp/client;
    proxy_temp_path $TMP/nginx/temp/proxy;
    fastcgi_temp_path $TMP/nginx/temp/fastcgi;
    uwsgi_temp_path $TMP/nginx/temp/uwsgi;
    scgi_temp_path $TMP/nginx/temp/scgi;

    proxy_cache_path $TMP/nginx/cache levels=1:2 keys_zone=gems:32m max_size=4g inactive=2h use_temp_path=off;

    upstream rubygems {
        server 127.0.0.1:$UP_PORT;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:$NGX_PORT;

        location = /__nginx_health {
            return 200 "ok\n";
        }

        location / {
            proxy_pass http://rubygems;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache gems;
            proxy_cache_key \$request_uri;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_valid 200 1h;
            # Use proxy_cache_valid, not the upstream's max-age=60 (as gemproxy's [ttl] 1h).
            proxy_ignore_headers Cache-Control Expires;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
EOF

# start_nginx [fresh]: start nginx (cache emptied first with "fresh").
start_nginx() {
	if [ "${1:-}" = fresh ]; then
		rm -rf "$TMP/nginx/cache"
		mkdir -p "$TMP/nginx/cache"
	fi
	"$NGINX_BIN" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' \
		>>"$TMP/nginx/stdout.log" 2>&1 &
	NGX_PID=$!
	wait_http "$NGX/__nginx_health" 20 || die "nginx did not start: $(tail -5 "$TMP/nginx/error.log" "$TMP/nginx/stdout.log")"
}
stop_nginx() {
	stop_pid "$NGX_PID"
	NGX_PID=
}

# machine_ticks: "TOTAL BUSY" clock ticks of all CPUs since boot (busy:
# everything but idle and iowait; steal counts as busy).
machine_ticks() {
	awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t, t - $5 - $6}' /proc/stat
}

# busy_pct SECONDS: share of CPU time not idle over SECONDS, machine-wide.
busy_pct() {
	local t1 b1 t2 b2
	read -r t1 b1 < <(machine_ticks)
	sleep "$1"
	read -r t2 b2 < <(machine_ticks)
	echo $(((100 * (b2 - b1)) / ((t2 - t1) > 0 ? (t2 - t1) : 1)))
}

# The figures are only meaningful on an otherwise idle machine: wait up to
# a minute for other processes to calm down, then go on with a warning.
IDLE_BUSY=$(busy_pct 2)
for _ in $(seq 30); do
	[ "$IDLE_BUSY" -le 15 ] && break
	log "the machine is ${IDLE_BUSY}% busy with other processes; waiting for it to calm down"
	IDLE_BUSY=$(busy_pct 2)
done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$IDLE_BUSY" -gt 15 ]; then
	log "WARNING: the machine is ${IDLE_BUSY}% busy before the run (load $LOAD_START): other processes will skew the figures"
fi

log "starting gemproxy and nginx"
start_gemproxy "$TMP/gemproxy-data" fresh
start_nginx fresh

# ------------------------------------------------------------- rows, warm

# Rows: id, path, Range header, If-None-Match header, expected status and
# body bytes. bench/report knows the same ids.
ROWS=(info_small api_json versions_206 versions_304 gem_1m)
declare -A R_PATH R_RANGE R_INM R_STATUS R_BYTES
R_PATH[info_small]=$SMALL_INFO_PATH R_STATUS[info_small]=200 R_BYTES[info_small]=$SMALL_INFO_BYTES
R_PATH[api_json]=$API_PATH R_STATUS[api_json]=200 R_BYTES[api_json]=$API_BYTES
# Bundler one publish behind: its copy lacks the last line.
R_PATH[versions_206]=$VERSIONS_PATH R_STATUS[versions_206]=206 R_BYTES[versions_206]=$VERSIONS_TAIL_BYTES
R_RANGE[versions_206]="bytes=$((VERSIONS_OLD_BYTES - 1))-" R_INM[versions_206]=$VERSIONS_OLD_ETAG
# Bundler up to date: its ETag matches.
R_PATH[versions_304]=$VERSIONS_PATH R_STATUS[versions_304]=304 R_BYTES[versions_304]=0
R_RANGE[versions_304]="bytes=$((VERSIONS_BYTES - 1))-" R_INM[versions_304]=$VERSIONS_ETAG
R_PATH[gem_1m]=$GEM1M_PATH R_STATUS[gem_1m]=200 R_BYTES[gem_1m]=$GEM1M_BYTES

base_url() { if [ "$1" = gemproxy ]; then echo "$GP"; else echo "$NGX"; fi; }
cache_header() { if [ "$1" = gemproxy ]; then echo X-Cache; else echo X-Cache-Status; fi; }

# warm SERVER PATH: GET until the answer says HIT.
warm() {
	local server=$1 path=$2 hdr i
	hdr=$(cache_header "$server")
	for i in $(seq 20); do
		if "${CURL[@]}" -o /dev/null -D - "$(base_url "$server")$path" | tr -d '\r' | grep -qi "^$hdr: HIT"; then
			return 0
		fi
		sleep 0.1
	done
	die "$server: $path never became a HIT"
}

log "warming both caches"
for server in gemproxy nginx; do
	for row in "${ROWS[@]}"; do
		warm "$server" "${R_PATH[$row]}"
	done
done

# Verify every row's answer, with the headers wrk will send.
: >"$RAW/verify.txt"
for row in "${ROWS[@]}"; do
	for server in gemproxy nginx; do
		args=(-o "$TMP/verify-$server-$row.body" -w '%{http_code} %{size_download}\n')
		[ -n "${R_RANGE[$row]:-}" ] && args+=(-H "Range: ${R_RANGE[$row]}")
		[ -n "${R_INM[$row]:-}" ] && args+=(-H "If-None-Match: ${R_INM[$row]}")
		read -r status bytes < <("${CURL[@]}" "${args[@]}" "$(base_url "$server")${R_PATH[$row]}")
		ok=ok
		[ "$status" = "${R_STATUS[$row]}" ] && [ "$bytes" = "${R_BYTES[$row]}" ] || ok=MISMATCH
		echo "$row $server: $status, $bytes B ($ok)" >>"$RAW/verify.txt"
		[ "$ok" = ok ] || die "$server answers $row with $status and $bytes bytes; want ${R_STATUS[$row]} and ${R_BYTES[$row]}"
	done
	if [ "${R_BYTES[$row]}" -gt 0 ]; then
		cmp -s "$TMP/verify-gemproxy-$row.body" "$TMP/verify-nginx-$row.body" || die "$row: gemproxy and nginx bodies differ"
	fi
done
log "verified: $(tr '\n' ';' <"$RAW/verify.txt")"

# ---------------------------------------------------------------- wrk runs

CLK_TCK=$(getconf CLK_TCK)

# server_cpu_ticks SERVER: user+system ticks of the server's processes.
server_cpu_ticks() {
	local pids p total=0
	if [ "$1" = gemproxy ]; then
		pids=$GP_PID
	else
		pids="$NGX_PID $(pgrep -P "$NGX_PID" | tr '\n' ' ')"
	fi
	for p in $pids; do
		[ -r "/proc/$p/stat" ] || continue
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$total"
}

# wrk_run ROW SERVER SECONDS: one wrk run; prints the BENCHRESULT fields.
wrk_run() {
	local row=$1 server=$2 secs=$3 out
	out=$(BENCH_RANGE=${R_RANGE[$row]:-} BENCH_IF_NONE_MATCH=${R_INM[$row]:-} \
		timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 5s --latency \
		-s "$BENCH/wrk/bench.lua" "$(base_url "$server")${R_PATH[$row]}") || die "wrk failed for $row on $server"
	grep '^BENCHRESULT' <<<"$out" | sed 's/^BENCHRESULT //'
}

# children_ticks: CPU ticks (user+system) used so far by this shell's
# waited-for children, wrk included. `times` must run in this shell, not in
# a command substitution:
# It sets CHILD_TICKS.
children_ticks() {
	times >"$TMP/times"
	CHILD_TICKS=$(awk -v tck="$CLK_TCK" 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
		printf "%d\n", t * tck
	}' "$TMP/times")
}

if phase warm || phase latency; then
	log "wrk warm-up: 2s per row and server (not recorded)"
	for row in "${ROWS[@]}"; do
		for server in gemproxy nginx; do
			wrk_run "$row" "$server" 2 >/dev/null
		done
	done
fi

: >"$RAW/warm.txt"
if phase warm; then
	"${CURL[@]}" -X POST -o /dev/null "$UP/__reset"
	log "warm runs: ${#ROWS[@]} rows x 2 servers x $ROUNDS rounds x ${DURATION}s (wrk -t$THREADS -c$CONNECTIONS)"
	for round in $(seq "$ROUNDS"); do
		for row in "${ROWS[@]}"; do
			for server in gemproxy nginx; do
				# A run disturbed by other processes (more than
				# RETRY_OTHER_PCT of the machine's CPU used by neither the
				# server nor wrk) is repeated, up to twice, while time allows.
				for attempt in 1 2 3; do
					before=$(server_cpu_ticks "$server")
					read -r m_total1 m_busy1 < <(machine_ticks)
					children_ticks
					c1=$CHILD_TICKS
					fields=$(wrk_run "$row" "$server" "$DURATION")
					children_ticks
					c2=$CHILD_TICKS
					read -r m_total2 m_busy2 < <(machine_ticks)
					after=$(server_cpu_ticks "$server")
					other=$((m_busy2 - m_busy1 - (after - before) - (c2 - c1)))
					m_span=$(((m_total2 - m_total1) > 0 ? (m_total2 - m_total1) : 1))
					other_pct=$(((100 * other + m_span / 2) / m_span)) # rounded, as in the report
					rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$fields")
					p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$fields")
					log "round $round $row $server: $rps req/s, p99 ${p99}us (other CPU ${other_pct}%)"
					if [ "$other_pct" -le "$RETRY_OTHER_PCT" ] || [ "$attempt" = 3 ] ||
						[ $(($(date +%s) - STARTED)) -gt "$RETRY_UNTIL" ]; then
						break
					fi
					log "  disturbed by other processes: running it again"
				done
				echo "row=$row server=$server round=$round attempts=$attempt cpu_ticks=$((after - before)) clk_tck=$CLK_TCK" \
					"client_ticks=$((c2 - c1)) machine_ticks=$((m_total2 - m_total1)) other_ticks=$other $fields" >>"$RAW/warm.txt"
			done
		done
	done
	"${CURL[@]}" "$UP/__stats" >"$RAW/warm-upstream.json"
fi

# ---------------------------------------------------------------- latency

# Rows measured at a steady load: what every Bundler run asks for.
LAT_ROWS=(info_small versions_206)

# nginx_rps ROW: nginx's saturated requests/s on ROW: the median of its
# warm runs, or a wrk run of its own when the warm phase did not run.
nginx_rps() {
	local rates
	rates=$(awk -v row="row=$1" '$1 == row && $2 == "server=nginx" {
		for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) print substr($i, 5)
	}' "$RAW/warm.txt" | sort -n)
	[ -n "$rates" ] || rates=$(wrk_run "$1" nginx "$DURATION" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p')
	awk '{ a[NR] = $1 } END { printf "%d\n", a[int((NR + 1) / 2)] }' <<<"$rates"
}

# openloop_run ROW SERVER PCT RATE ROUND: one open-loop run, its JSON in
# latency-ROW-SERVER-PCT-rROUND.json.
openloop_run() {
	local row=$1 server=$2 pct=$3 rate=$4 round=$5 args=()
	[ -n "${R_RANGE[$row]:-}" ] && args+=(-H "Range: ${R_RANGE[$row]}")
	[ -n "${R_INM[$row]:-}" ] && args+=(-H "If-None-Match: ${R_INM[$row]}")
	"$TMP/openloop" -url "$(base_url "$server")${R_PATH[$row]}" "${args[@]}" -expect-status "${R_STATUS[$row]}" \
		-rate "$rate" -duration "${LAT_DURATION}s" -warmup 1s -label "$row $server $pct% round $round" \
		>"$RAW/latency-$row-$server-$pct-r$round.json" 2>>"$TMP/openloop.log" ||
		log "openloop $row $server $pct% round $round: errors (see the report)"
	tail -1 "$TMP/openloop.log" >&2
}

if phase latency; then
	: >"$RAW/latency-base.txt"
	for row in "${LAT_ROWS[@]}"; do
		base=$(nginx_rps "$row")
		echo "$row=$base" >>"$RAW/latency-base.txt"
		log "latency at a steady load on $row: ${LAT_LOADS// /%, }% of nginx's $base req/s, ${LAT_DURATION}s per run, $LAT_ROUNDS round(s)"
		for round in $(seq "$LAT_ROUNDS"); do
			for pct in $LAT_LOADS; do
				for server in gemproxy nginx; do
					openloop_run "$row" "$server" "$pct" $((base * pct / 100)) "$round"
				done
			done
		done
	done
fi

# ------------------------------------------------ cold coalescing, memory

COLD=("$TMP/coldload" -url "$GP$GEM50M_PATH" -expect-bytes "$GEM50M_BYTES" -stats "$UP/__stats"
	-count-path "$GEM50M_PATH,$GEM50M_INFO_PATH" -timeout 4m)

# coldload_to FILE ARGS...: run coldload, keep its JSON even when some
# clients failed (the report shows it).
coldload_to() {
	local file=$1
	shift
	"$@" >"$RAW/$file" 2>>"$TMP/coldload.log" || log "coldload $file: not every client succeeded (see the report)"
	tail -1 "$TMP/coldload.log" >&2
}

if phase cold; then
	log "cold coalescing: upstream latency $COLD_LATENCY"
	"${CURL[@]}" -X POST -o /dev/null "$UP/__latency?d=$COLD_LATENCY"
	stop_gemproxy
	start_gemproxy "$TMP/gemproxy-cold-1" fresh
	coldload_to cold-gemproxy-1.json "${COLD[@]}" -n 1 -pid "$GP_PID" -label gemproxy-1
	stop_gemproxy
	start_gemproxy "$TMP/gemproxy-cold-N" fresh
	coldload_to cold-gemproxy-N.json "${COLD[@]}" -n "$COLD_CLIENTS" -pid "$GP_PID" -label "gemproxy-$COLD_CLIENTS"
	"${CURL[@]}" -X POST -o /dev/null "$UP/__latency?d=0s"

	# The memory scenarios follow in the same process, as a burst would
	# in production: what the cold fan-out left must not add up.
	log "memory: right after, $MEM_CLIENTS clients download the cached 50 MB gem (same process)"
	sleep 1
	coldload_to mem-get.json "$TMP/coldload" -url "$GP$GEM50M_PATH" -expect-bytes "$GEM50M_BYTES" \
		-n "$MEM_CLIENTS" -pid "$GP_PID" -label "mem-get-$MEM_CLIENTS" -timeout 4m
	log "memory: a ${PUSH_MIB} MiB push streams through (same process)"
	coldload_to mem-push.json "$TMP/coldload" -mode push -url "$GP/api/v1/gems" -size $((PUSH_MIB << 20)) \
		-expect-status 401 -stats "$UP/__stats" -count-path /api/v1/gems -pid "$GP_PID" -label "mem-push-${PUSH_MIB}MiB" -timeout 4m

	if [ "$COLD_NGINX" = 1 ]; then
		log "cold coalescing through nginx (reference)"
		"${CURL[@]}" -X POST -o /dev/null "$UP/__latency?d=$COLD_LATENCY"
		stop_nginx
		start_nginx fresh
		coldload_to cold-nginx-1.json "${COLD[@]/#$GP/$NGX}" -n 1 -preconnect /__nginx_health -label nginx-1
		stop_nginx
		start_nginx fresh
		coldload_to cold-nginx-N.json "${COLD[@]/#$GP/$NGX}" -n "$COLD_CLIENTS" -preconnect /__nginx_health -label "nginx-$COLD_CLIENTS"
		# BENCH_COLD_PAIRS=N: N more N-client runs, alternating a fresh
		# gemproxy and a fresh nginx, for the run-to-run spread of the
		# ratio (one pair says little on a shared machine).
		for pair in $(seq "$COLD_PAIRS"); do
			log "cold pair $pair of $COLD_PAIRS"
			stop_gemproxy
			start_gemproxy "$TMP/gemproxy-cold-pair" fresh
			coldload_to "cold-pair-$pair-gemproxy.json" "${COLD[@]}" -n "$COLD_CLIENTS" -label "pair-$pair-gemproxy"
			stop_gemproxy
			stop_nginx
			start_nginx fresh
			coldload_to "cold-pair-$pair-nginx.json" "${COLD[@]/#$GP/$NGX}" -n "$COLD_CLIENTS" -preconnect /__nginx_health -label "pair-$pair-nginx"
		done
		"${CURL[@]}" -X POST -o /dev/null "$UP/__latency?d=0s"
	fi
fi

# ------------------------------------------------------------------ report

{
	echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "revision=$GEMPROXY_REVISION"
	echo "nproc=$(nproc)"
	echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)"
	echo "mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), Linux $(uname -r)"
	echo "go_version=$(go version | awk '{print $3}')"
	echo "nginx_version=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
	echo "wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
	echo "threads=$THREADS"
	echo "connections=$CONNECTIONS"
	echo "duration=${DURATION}s"
	echo "rounds=$ROUNDS"
	echo "lat_duration=${LAT_DURATION}s"
	echo "lat_loads=$LAT_LOADS"
	echo "lat_rounds=$LAT_ROUNDS"
	echo "phases=$(echo $PHASES)"
	echo "cold_latency=$COLD_LATENCY"
	echo "busy_before=$IDLE_BUSY"
	echo "load_start=$LOAD_START"
	echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RAW/env.txt"

report_status=0
"$TMP/report" -dir "$RAW" -manifest "$TMP/manifest.env" >"$OUT/latest.md" || report_status=$?
cat "$OUT/latest.md"
log "report written to bench/results/latest.md (raw figures in bench/tmp/results)"
exit "$report_status"
