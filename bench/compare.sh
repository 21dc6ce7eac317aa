#!/usr/bin/env bash
# Benchmark, not a test: teems beside Redis and etcd on this machine, on loopback, in one run,
# driven the same way (bench/README.md says how to read the table).
#
#   bench/compare.sh [--quick] [--reps R] [--seconds S] [--only redis,etcd,teems] [--no-tls]
#                    [--no-check-perf] [--peer-rtt US]
#
#   --quick          1 repetition, ~0.7 s per measured test, no `etcdctl check perf`, no CFT
#                    sync=rr row: the whole run stays under 2 minutes
#   --reps R         repetitions of every row (default 3, quick 1); the table shows medians
#   --seconds S      target duration of one measured test (default 3, quick 0.7); -n is
#                    calibrated from a short pilot run so each test takes about that long
#   --only LIST      systems to run (default redis,etcd,teems)
#   --no-tls         plaintext rows only
#   --no-check-perf  skip `etcdctl check perf` (it runs 60 s at a fixed 150 puts/s)
#   --peer-rtt US    round trip added between teems replicas for the lease-versus-read-index
#                    rows (default 1000 = 1 ms; 0 leaves those rows out): bench-delay-proxy
#                    (bench/delay_proxy.c) in front of every peer port, US/2 each way
#
# Environment: TEEMSD (teemsd binary; default the newest build*/teemsd that answers --help),
# TEEMS_CLI (the `teems` CLI, used only to mint the client-TLS service CA; default the `teems`
# beside TEEMSD), BUILD_DIR (default build: etcd_put is compiled to $BUILD_DIR/bench-etcd-put),
# TMPDIR (where the servers keep their data; must not be tmpfs, where fsync costs nothing),
# COMPARE_REDIS_TLS=1 (Redis TLS rows even when teems has none).
#
# Rows (each a server or cluster started here, on 127.0.0.1 ports that were free, data in a
# temporary directory, everything stopped and removed at exit, Ctrl-C included):
#   redis   single node, `appendonly no`, and `appendonly yes` + `appendfsync always`;
#           plaintext, and over TLS 1.3 when teems is measured over TLS too
#   teems   3 replicas (F=1, M_R=1: BFT-ish rollback tolerance) with sync=rr and sync=always;
#           CFT (F=1, M_R=0, still N=3) with sync=always (and sync=rr unless --quick); clients go
#           to the leader's RESP port; plaintext (client_tls=off, allowed on loopback), and TLS
#           when a service CA can be minted (see teems_tls_material)
#   etcd    3 members (Debian's etcd-server), driven by bench/etcd_put.c over the JSON gateway
#           (etcd's own `benchmark` tool cannot be built from Debian's packages: the source
#           package golang-etcd-server-dev ships no tools/benchmark) and `etcdctl check perf`
# redis and teems are driven by the same redis-benchmark command lines:
#   -t set,get -d 64 -r 100000 -c 50;  the same with -P 16;  -c 1 (latency)
# etcd_put runs the same shapes (put/range, 64-byte values, 100000 keys, 50 or 1 connections);
# HTTP/1.1 has no pipelining, so etcd has no -P 16 rows.
#
# Output: one table on stdout, the same rows in bench/results/compare.csv, the table also in
# bench/results/compare.txt. Exit 0 even when a system could not be measured (its rows say
# why); exit 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
reps=""
seconds=""
only="redis,etcd,teems"
tls=1
check_perf=1
peer_rtt=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --reps) reps=${2:?--reps needs a number}; shift ;;
    --seconds) seconds=${2:?--seconds needs a number}; shift ;;
    --only) only=${2:?--only needs a list}; shift ;;
    --no-tls) tls=0 ;;
    --no-check-perf) check_perf=0 ;;
    --peer-rtt) peer_rtt=${2:?--peer-rtt needs microseconds}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" -eq 1 ]; then
  reps=${reps:-1}; seconds=${seconds:-0.7}; check_perf=0
else
  reps=${reps:-3}; seconds=${seconds:-3}
fi
case "$reps" in ''|*[!0-9]*) echo "compare.sh: --reps must be a whole number" >&2; exit 2 ;; esac
[ "$reps" -ge 1 ] && [ "$reps" -le 15 ] || { echo "compare.sh: --reps must be 1..15" >&2; exit 2; }
awk -v s="$seconds" 'BEGIN { exit !(s + 0 > 0 && s + 0 <= 60) }' ||
  { echo "compare.sh: --seconds must be in (0, 60]" >&2; exit 2; }
case "$peer_rtt" in ''|*[!0-9]*) echo "compare.sh: --peer-rtt must be whole microseconds" >&2; exit 2 ;; esac
[ "$peer_rtt" -le 100000 ] || { echo "compare.sh: --peer-rtt must be at most 100000" >&2; exit 2; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

build=${BUILD_DIR:-build}
results="$repo/bench/results"
mkdir -p "$results"
bench_start=$(date +%s)

log() { printf 'compare: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes and temporary files: every process this script starts is recorded, and the EXIT
# trap stops them (TERM, then KILL after 10 s) and removes the temporary directory.
# ---------------------------------------------------------------------------------------------
all_pids=()
tmp=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${#all_pids[@]}" -gt 0 ]; then
    stop_pids "${all_pids[@]}"
  fi
  [ -n "$tmp" ] && rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
on_signal() { log "interrupted"; exit 130; }
trap on_signal INT TERM

# alive PID: the process exists and is not a zombie (daemons started by the teems CLI are
# reparented to an init that may be slow to reap them).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)
  [ "$state" != Z ]
}

# stop_pids PID...: TERM, wait up to 10 s for all, KILL the rest. Only processes this script
# started (never 0 or 1, which kill would take as a process group or every process).
stop_pids() {
  local pid any i
  for pid in "$@"; do
    case "$pid" in ''|*[!0-9]*|0|1) log "refusing to signal pid '$pid'"; return 1 ;; esac
  done
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 100); do
    any=0
    for pid in "$@"; do alive "$pid" && any=1; done
    [ "$any" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do
    if alive "$pid"; then
      log "pid $pid did not stop on TERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  forget "$@"
}

# spawn LOG CMD...: starts CMD in the background with its output in LOG; sets $spawned.
spawn() {
  local out=$1; shift
  "$@" >"$out" 2>&1 </dev/null &
  spawned=$!
  all_pids+=("$spawned")
}

# forget PID...: drops stopped processes from all_pids, so a reused pid is never signalled.
forget() {
  local keep=() p q drop
  for p in "${all_pids[@]}"; do
    drop=0
    for q in "$@"; do [ "$p" = "$q" ] && drop=1; done
    [ "$drop" -eq 1 ] || keep+=("$p")
  done
  all_pids=("${keep[@]}")
}

# run OUT CMD...: runs a client (redis-benchmark, etcd_put) to completion with its output in OUT,
# returning its status. In the background plus `wait` so that a TERM to this script is acted on
# at once rather than when the client ends.
run() {
  local out=$1 pid rc=0; shift
  "$@" >"$out" 2>&1 </dev/null &
  pid=$!
  all_pids+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  return "$rc"
}

# free_port: sets $port to a random port in 20000-59999 that no socket uses and that this run has
# not handed out yet (not called in $(...), whose subshell would forget the handed-out list).
used_ports=" "
port=""
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    case "$used_ports" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
      used_ports+="$p "
      port=$p
      return 0
    fi
  done
  log "no free port found"; return 1
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s; fails after SECONDS.
wait_until() {
  local limit=$1 i; shift
  for i in $(seq $((limit * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/teems-compare.XXXXXX")
fstype=$(stat -f -c %T "$tmp")
case "$fstype" in
  tmpfs|ramfs)
    log "$tmp is on $fstype, where fsync costs nothing; set TMPDIR to a directory on a disk"
    exit 1 ;;
esac

# ---------------------------------------------------------------------------------------------
# Rows. One row: system, mode, transport (plain|tls), test, ops/s, p50 ms, p99 ms, note.
# ---------------------------------------------------------------------------------------------
rows=()
add_row() { rows+=("$(printf '%s\t' "$@")"); }

# median of the numbers on stdin (the mean of the two middle ones for an even count)
median() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit 1
    if (NR % 2) printf "%s\n", v[(NR + 1) / 2]
    else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The shapes every RESP system runs: name, clients, pipeline, pilot requests.
shapes=("c50:50:1:2000" "c50 P16:50:16:20000" "c1:1:1:300")

# calibrate RPS PILOT_MIN: -n so that one test runs about $seconds at RPS ops/s.
calibrate() {
  awk -v r="$1" -v s="$seconds" -v lo="$2" 'BEGIN {
    n = int(r * s); if (n < lo) n = lo; if (n > 5000000) n = 5000000
    if (n >= 1000) { e = 10 ^ (int(log(n) / log(10)) - 1); n = int(n / e) * e }
    print n }'
}

# csv_field OUTPUT TEST COLUMN: a field of redis-benchmark's --csv line for TEST (rps = 2,
# p50 = 5, p99 = 7).
csv_field() {
  printf '%s\n' "$1" | awk -F'","' -v t="\"$2" -v c="$3" '$1 == t { gsub(/"/, "", $c); print $c }'
}

# rb_measure SYSTEM MODE TRANSPORT PORT [EXTRA redis-benchmark ARGS...]: the three shapes, SET
# then GET, each $reps times; adds six rows. Each test has its own -n, from a pilot run of that
# test (not reported; it also warms the server up and, for SET, writes the keys GET reads).
rb_measure() {
  local system=$1 mode=$2 transport=$3 port=$4; shift 4
  local shape name c p pilot rps n t test per_run_limit ok
  per_run_limit=$(awk -v s="$seconds" 'BEGIN { print int(s * 10 + 30) }')
  for shape in "${shapes[@]}"; do
    IFS=: read -r name c p pilot <<<"$shape"
    # redis-benchmark 7.0 stops at the first error reply ("Error from server: ..."), so an
    # error is never counted as an answer; the check below catches one all the same.
    local rb=(redis-benchmark -h 127.0.0.1 -p "$port" "$@" -d 64 -r 100000 -c "$c" -P "$p" --csv)
    for t in SET GET; do
      test=${t,,}
      if ! run "$tmp/out" timeout -k 5 60 "${rb[@]}" -t "$test" -n "$pilot" ||
         ! rps=$(csv_field "$(cat "$tmp/out")" "$t" 2) || [ -z "$rps" ]; then
        log "$system $mode $transport $t $name: pilot failed: $(tail -2 "$tmp/out" | tr '\n' ' ')"
        add_row "$system" "$mode" "$transport" "$t $name" "" "" "" "failed (pilot)"
        continue
      fi
      n=$(calibrate "$rps" $((c * p * 10)))
      : >"$tmp/rb.runs"; ok=1
      for _ in $(seq "$reps"); do
        if ! run "$tmp/out" timeout -k 5 "$per_run_limit" "${rb[@]}" -t "$test" -n "$n"; then
          log "$system $mode $transport $t $name: redis-benchmark failed: $(tail -2 "$tmp/out" | tr '\n' ' ')"
          ok=0; break
        fi
        if grep -q '^Error from server' "$tmp/out"; then
          log "$system $mode $transport $t $name: $(grep -m1 '^Error from server' "$tmp/out")"
          ok=0; break
        fi
        rps=$(csv_field "$(cat "$tmp/out")" "$t" 2)
        if [ -z "$rps" ]; then
          log "$system $mode $transport $t $name: no $t line in: $(cat "$tmp/out")"
          ok=0; break
        fi
        echo "$rps $(csv_field "$(cat "$tmp/out")" "$t" 5) $(csv_field "$(cat "$tmp/out")" "$t" 7)" \
          >>"$tmp/rb.runs"
      done
      if [ "$ok" -eq 1 ]; then
        add_row "$system" "$mode" "$transport" "$t $name" \
          "$(awk '{print $1}' "$tmp/rb.runs" | median)" "$(awk '{print $2}' "$tmp/rb.runs" | median)" \
          "$(awk '{print $3}' "$tmp/rb.runs" | median)" "n=$n"
      else
        add_row "$system" "$mode" "$transport" "$t $name" "" "" "" "failed"
      fi
    done
  done
}

# ---------------------------------------------------------------------------------------------
# TLS material for Redis: a throwaway P-256 CA and a server certificate for 127.0.0.1, the
# same key type as the teems service CA, so both sides do the same TLS 1.3 work.
# ---------------------------------------------------------------------------------------------
make_redis_tls() {
  local d=$tmp/redis-tls
  mkdir -p "$d"
  (
    cd "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -subj /CN=compare-ca -days 2 -out ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out server.key
    openssl req -new -key server.key -subj /CN=127.0.0.1 -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile ext.cnf -out server.pem
  ) >"$d/openssl.log" 2>&1
}

redis_row() {
  local mode=$1 transport=$2 dir pid args
  free_port
  dir=$tmp/redis-$mode-$transport
  mkdir -p "$dir"
  args=(--bind 127.0.0.1 --save "" --dir "$dir" --daemonize no --logfile "$dir/redis.log")
  if [ "$mode" = "aof-always" ]; then
    args+=(--appendonly yes --appendfsync always)
  else
    args+=(--appendonly no)
  fi
  local cli=(redis-cli -h 127.0.0.1 -p "$port")
  if [ "$transport" = tls ]; then
    args+=(--port 0 --tls-port "$port" --tls-cert-file "$tmp/redis-tls/server.pem"
           --tls-key-file "$tmp/redis-tls/server.key" --tls-ca-cert-file "$tmp/redis-tls/ca.pem"
           --tls-auth-clients no)
    cli+=(--tls --cacert "$tmp/redis-tls/ca.pem")
  else
    args+=(--port "$port")
  fi
  spawn "$dir/stdout.log" redis-server "${args[@]}"
  pid=$spawned
  if ! wait_until 10 "${cli[@]}" ping; then
    log "redis $mode $transport did not start: $(tail -3 "$dir/redis.log" 2>/dev/null)"
    for t in SET GET; do add_row redis "$mode" "$transport" "$t" "" "" "" "did not start"; done
  else
    local tlsargs=()
    [ "$transport" = tls ] && tlsargs=(--tls --cacert "$tmp/redis-tls/ca.pem")
    rb_measure redis "$mode" "$transport" "$port" "${tlsargs[@]}"
  fi
  stop_pids "$pid"
  rm -rf "$dir"
}

# ---------------------------------------------------------------------------------------------
# etcd: a 3-member cluster on loopback
# ---------------------------------------------------------------------------------------------
ensure_etcd() {
  command -v etcd >/dev/null && command -v etcdctl >/dev/null && return 0
  log "installing Debian's etcd-server and etcd-client"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get install -y -q --no-install-recommends \
    etcd-server etcd-client >"$tmp/apt.log" 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get update -q >>"$tmp/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get install -y -q \
        --no-install-recommends etcd-server etcd-client >>"$tmp/apt.log" 2>&1; } ||
    { log "apt-get install etcd failed: $(tail -2 "$tmp/apt.log")"; return 1; }
}

# build_delay_proxy: bench-delay-proxy beside teemsd (a CMake target), else compiled here.
proxy_bin=""
proxy_why=""
build_delay_proxy() {
  [ -n "$proxy_bin" ] && return 0
  if [ -x "$(dirname "$teemsd")/bench-delay-proxy" ]; then
    proxy_bin=$(dirname "$teemsd")/bench-delay-proxy
    return 0
  fi
  mkdir -p "$repo/$build"
  if cc -O2 -std=gnu11 -Wall -Wextra -o "$repo/$build/bench-delay-proxy" bench/delay_proxy.c \
    2>"$tmp/delay_proxy.cc.log"; then
    proxy_bin=$repo/$build/bench-delay-proxy
    return 0
  fi
  proxy_why="cc failed: $(head -1 "$tmp/delay_proxy.cc.log")"
  return 1
}

etcd_put_bin=$repo/$build/bench-etcd-put
build_etcd_put() {
  [ -x "$etcd_put_bin" ] && [ "$etcd_put_bin" -nt bench/etcd_put.c ] && return 0
  mkdir -p "$(dirname "$etcd_put_bin")"
  cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$etcd_put_bin" bench/etcd_put.c \
    -lcurl 2>"$tmp/etcd_put.cc.log" ||
    { log "cannot build bench/etcd_put.c (libcurl4-openssl-dev?): $(head -3 "$tmp/etcd_put.cc.log")"; return 1; }
}

etcd_rows() {
  local why=""
  ensure_etcd || why="etcd not installed"
  [ -n "$why" ] || build_etcd_put || why="etcd_put not built"
  if [ -n "$why" ]; then
    add_row etcd "3 members" plain "-" "" "" "" "$why"
    return
  fi
  local i cp=() pp=() pids=() cluster="" endpoints="" leader="" d=$tmp/etcd
  for i in 0 1 2; do
    free_port; cp[i]=$port
    free_port; pp[i]=$port
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${pp[$i]}"
    endpoints+="${endpoints:+,}http://127.0.0.1:${cp[$i]}"
  done
  mkdir -p "$d"
  for i in 0 1 2; do
    spawn "$d/e$i.log" etcd --name "e$i" --data-dir "$d/e$i" \
      --listen-client-urls "http://127.0.0.1:${cp[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${cp[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${pp[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pp[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "compare-$$" --logger zap --log-level warn
    pids+=("$spawned")
  done
  etcd_leader() {
    leader=$(ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$endpoints" endpoint status \
      -w simple 2>/dev/null | awk -F', ' '$5 == "true" { print $1 }' | head -1)
    [ -n "$leader" ]
  }
  if ! wait_until 30 etcd_leader; then
    log "etcd cluster elected no leader: $(tail -2 "$d/e0.log")"
    add_row etcd "3 members" plain "-" "" "" "" "no leader"
  else
    etcd_leader
    log "etcd leader at $leader"
    local name c pilot op t out rps n per_run_limit ok
    for name in "c50:50:2000" "c50 P16" "c1:1:300"; do
      if [ "$name" = "c50 P16" ]; then
        for t in SET GET; do
          add_row etcd "3 members" plain "$t c50 P16" "" "" "" "n/a: no pipelining over HTTP/1.1"
        done
        continue
      fi
      IFS=: read -r name c pilot <<<"$name"
      for op in put get; do
        t=SET; [ "$op" = get ] && t=GET
        local drv=("$etcd_put_bin" -u "$leader" -t "$op" -c "$c" -d 64 -r 100000)
        if ! run "$tmp/out" "${drv[@]}" -n "$pilot" -T 60 || ! out=$(cat "$tmp/out") ||
           ! rps=$(printf '%s\n' "$out" | awk -F'","' 'NR == 2 { print $2 }') || [ -z "$rps" ]; then
          log "etcd $op $name pilot failed: $(tail -2 "$tmp/out")"
          add_row etcd "3 members" plain "$t $name" "" "" "" "failed (pilot)"
          continue
        fi
        n=$(calibrate "$rps" $((c * 10)))
        per_run_limit=$(awk -v s="$seconds" 'BEGIN { print int(s * 10 + 30) }')
        : >"$tmp/etcd.runs"; ok=1
        for _ in $(seq "$reps"); do
          if ! run "$tmp/out" "${drv[@]}" -n "$n" -T "$per_run_limit"; then
            log "etcd $op $name failed: $(cat "$tmp/out")"; ok=0; break
          fi
          out=$(cat "$tmp/out")
          printf '%s\n' "$out" | awk -F'","' 'NR == 2 { print $2, $5, $7 }' >>"$tmp/etcd.runs"
        done
        if [ "$ok" -eq 1 ]; then
          add_row etcd "3 members" plain "$t $name" \
            "$(awk '{print $1}' "$tmp/etcd.runs" | median)" \
            "$(awk '{print $2}' "$tmp/etcd.runs" | median)" \
            "$(awk '{print $3}' "$tmp/etcd.runs" | median)" \
            "n=$n; $( [ "$op" = put ] && echo "PUT" || echo "RANGE, linearizable") via JSON gateway"
        else
          add_row etcd "3 members" plain "$t $name" "" "" "" "failed"
        fi
      done
    done
    if [ "$check_perf" -eq 1 ]; then
      # Fixed load (50 clients, 150 puts/s cap, 60 s): a sanity check that the disk and network
      # can carry etcd, not a throughput measurement; reported once, not repeated.
      log "etcdctl check perf --load s (60 s)"
      run "$tmp/out" env ETCDCTL_API=3 timeout 120 etcdctl --endpoints="$endpoints" check perf \
        --load s || true
      out=$(tr '\r' '\n' <"$tmp/out" | grep -E '^(PASS|FAIL|Slowest|Stddev)' || true)
      rps=$(printf '%s\n' "$out" | sed -n 's/.*Throughput is \([0-9]*\) writes\/s.*/\1/p')
      local slow
      slow=$(printf '%s\n' "$out" | sed -n 's/.*Slowest request took \([0-9.]*\)s.*/\1/p')
      add_row etcd "3 members" plain "PUT perf-s" "$rps" "" "" \
        "etcdctl check perf: 150/s cap; slowest ${slow:-?} s; $(printf '%s' "$out" | tail -1)"
    fi
  fi
  stop_pids "${pids[@]}"
  rm -rf "$d"
}

# ---------------------------------------------------------------------------------------------
# teems: three teemsd processes with configuration files written here (docs/OPERATIONS.md keys
# only; the `teems cluster up` layout of contracts.md item 6 is followed for the directories).
# ---------------------------------------------------------------------------------------------
teemsd=""
# A teemsd that runs and lists its settings (config_usage) on --help.
teemsd_runs() {
  local help
  [ -f "$1" ] && [ -x "$1" ] || return 1
  help=$(timeout 5 "$1" --help 2>&1 || true)
  grep -q replica_id <<<"$help"
}
# An optimised build without sanitizers: anything else would measure the instrumentation.
teemsd_optimised() {
  local cache
  cache=$(dirname "$1")/CMakeCache.txt
  if [ -f "$cache" ] && grep -Eq '^(CMAKE_BUILD_TYPE:STRING=Debug|TEEMS_SANITIZE:BOOL=ON)' "$cache"; then
    return 1
  fi
  ! grep -q -a -m1 -e __asan_init -e __ubsan_handle "$1"
}
find_teemsd() {
  local c
  [ -z "$teemsd" ] || return 0
  if [ -n "${TEEMSD:-}" ]; then
    teemsd_runs "$TEEMSD" || { log "TEEMSD=$TEEMSD does not run"; return 1; }
    teemsd_optimised "$TEEMSD" ||
      log "warning: $TEEMSD is a Debug or sanitizer build; its numbers mean little"
    teemsd=$TEEMSD
    return 0
  fi
  # Newest first: ls -t (build directory names have no blanks).
  # shellcheck disable=SC2045
  for c in $(ls -t "$repo"/build*/teemsd 2>/dev/null); do
    teemsd_optimised "$c" && teemsd_runs "$c" && { teemsd=$c; return 0; }
  done
  return 1
}

# True when this teemsd knows the configuration key (its --help lists every setting).
teemsd_has_key() { grep -q -- "$1" "$tmp/teemsd.help"; }

# teems_tls_material: the client-TLS service CA of contracts.md item 6 (ca.pem, and the CA key
# sealed for each replica) is made by the `teems` CLI with tls_ca_create; nothing else can make
# it. So: run `teems cluster up` once into $tmp/teems-ca, stop that cluster, and keep its ca.pem,
# platform directory, cluster_id and sealed CA keys for the clusters started below. Sealing binds
# the key to replica id, cluster id and the teemsd measurement, not to F, M_R or sync, so the
# CFT clusters can use them too. Sets tls_ok=1 and tls_why.
tls_ok=0
tls_why=""
teems_tls_material() {
  local teems_cli=${TEEMS_CLI:-$(dirname "$teemsd")/teems} d=$tmp/teems-ca i pid
  if ! [ -x "$teems_cli" ]; then tls_why="no teems CLI beside $teemsd to mint the service CA"; return 1; fi
  if ! teemsd_has_key service_ca_sealed || ! teemsd_has_key cluster_id; then
    tls_why="this teemsd has no service_ca_sealed/cluster_id keys"; return 1
  fi
  # TEEMS_TEEMSD: the CLI seals to the measurement of the teemsd the rows below run.
  if ! TEEMS_TEEMSD=$teemsd timeout 60 "$teems_cli" --dir "$d" cluster up --replicas 3 \
       >"$tmp/teems-ca.log" 2>&1; then
    tls_why="teems cluster up failed: $(grep -v '^teems: stopping' "$tmp/teems-ca.log" |
      tail -1 | sed 's/^[[:space:]]*//' | cut -c1-240)"
  fi
  # Stop what it started, whatever happened (pids from DIR/r<i>/teemsd.pid or DIR/cluster.conf).
  local started=()
  for i in 0 1 2; do
    pid=$(cat "$d/r$i/teemsd.pid" 2>/dev/null ||
          awk -v i="$i" '$1 == i { print $2 }' "$d/cluster.conf" 2>/dev/null || true)
    # Only a live teemsd: cluster.conf says 0 for a replica that never started, and a pid of 0
    # or 1 given to kill would signal this script's process group or everything.
    case "$pid" in ''|*[!0-9]*|0|1) continue ;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = teemsd ] || continue
    started+=("$pid")
    all_pids+=("$pid")
  done
  [ "${#started[@]}" -eq 0 ] || stop_pids "${started[@]}"
  [ -z "$tls_why" ] || return 1
  for i in 0 1 2; do
    [ -s "$d/r$i/data/service-ca.sealed" ] ||
      { tls_why="teems cluster up left no r$i/data/service-ca.sealed"; return 1; }
    cp "$d/r$i/data/service-ca.sealed" "$tmp/service-ca.r$i.sealed"
  done
  [ -s "$d/ca.pem" ] || { tls_why="teems cluster up left no ca.pem"; return 1; }
  cp "$d/ca.pem" "$tmp/teems-ca.pem"
  tls_cluster_id=$(sed -n 's/^[[:space:]]*cluster_id[[:space:]]*=[[:space:]]*"\{0,1\}\([0-9a-fA-F]\{32\}\)"\{0,1\}.*/\1/p' "$d/r0/teemsd.conf" | head -1)
  [ -n "$tls_cluster_id" ] || { tls_why="no cluster_id in the CLI's r0/teemsd.conf"; return 1; }
  mkdir -p "$tmp/teems-platform"
  cp -a "$d/platform/." "$tmp/teems-platform/" 2>/dev/null ||
    { tls_why="no platform/ in the CLI's cluster directory"; return 1; }
  rm -rf "$d"
  tls_ok=1
}

# teems_row LABEL M_R SYNC TRANSPORT [LEASES [RTT_US]]: one cluster, measured, stopped.
# LEASES=off turns the leader lease's reads off (issue #6's lease-versus-read-index rows):
# t_lease = 0, so every GET takes the read index. RTT_US > 0 puts bench-delay-proxy between
# the replicas (--peer-rtt).
teems_row() {
  local label=$1 m_r=$2 sync=$3 transport=$4 leases=${5:-on} rtt=${6:-0}
  local d=$tmp/teems-$label-$transport i j pp=() xp=() cp=() pids=() peers=() cid leader_port=""
  local maps=() proxy_pid=""
  for i in 0 1 2; do
    free_port; pp[i]=$port
    free_port; cp[i]=$port
    xp[i]=${pp[$i]}
    if [ "$rtt" -gt 0 ]; then
      free_port; xp[i]=$port
      maps+=("${xp[$i]}:${pp[$i]}")
    fi
  done
  # Replica j listens on its own peer port and reaches the others through their proxy ports
  # (the same ports when there is no proxy).
  for j in 0 1 2; do
    peers[j]=""
    for i in 0 1 2; do
      if [ "$i" -eq "$j" ]; then
        peers[j]+="${peers[$j]:+, }$i@127.0.0.1:${pp[$i]}"
      else
        peers[j]+="${peers[$j]:+, }$i@127.0.0.1:${xp[$i]}"
      fi
    done
  done
  local mode="3r m_r=$m_r sync=$sync"
  [ "$leases" = off ] && mode+=" nolease"
  [ "$rtt" -gt 0 ] && mode+=" rtt=$(awk -v u="$rtt" 'BEGIN { printf "%gms", u / 1000 }')"
  if [ "$rtt" -gt 0 ]; then
    if ! build_delay_proxy; then
      add_row teems "$mode" "$transport" "-" "" "" "" "no bench-delay-proxy: $proxy_why"
      return
    fi
    spawn "$d.proxy.log" "$proxy_bin" --seconds 3600 $((rtt / 2)) "${maps[@]}"
    proxy_pid=$spawned
  fi
  if [ "$transport" = tls ]; then
    cid=$tls_cluster_id
    mkdir -p "$d"; cp -a "$tmp/teems-platform" "$d/platform"
  else
    cid=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    mkdir -p "$d/platform"
  fi
  for i in 0 1 2; do
    mkdir -p "$d/r$i/data"
    {
      echo "# written by bench/compare.sh"
      echo "replica_id = $i"
      echo "peers = ${peers[$i]}"
      echo "f = 1"
      echo "m_r = $m_r"
      echo "engine = paxos"
      echo "sync = $sync"
      echo "data_dir = \"$d/r$i/data\""
      echo "listen = 127.0.0.1:${cp[$i]}"
      [ "$leases" = off ] && echo "t_lease = 0"
      teemsd_has_key cluster_id && echo "cluster_id = $cid"
      teemsd_has_key platform_dir && echo "platform_dir = \"$d/platform\""
      if [ "$transport" = tls ]; then
        cp "$tmp/service-ca.r$i.sealed" "$d/r$i/data/service-ca.sealed"
        echo "client_tls = on"
        echo "service_ca_sealed = \"$d/r$i/data/service-ca.sealed\""
      elif teemsd_has_key client_tls; then
        echo "client_tls = off"
      fi
    } >"$d/r$i/teemsd.conf"
  done
  for i in 0 1 2; do
    # TEEMS_SIM_DIR too, for a teemsd that predates the platform_dir key.
    spawn "$d/r$i/teemsd.log" env TEEMS_SIM_DIR="$d/platform" "$teemsd" --config "$d/r$i/teemsd.conf"
    pids+=("$spawned")
    echo "$spawned" >"$d/r$i/teemsd.pid"
  done
  local cli_tls=()
  [ "$transport" = tls ] && cli_tls=(--tls --cacert "$tmp/teems-ca.pem")
  teems_leader() {
    local j
    for j in 0 1 2; do
      if timeout 2 redis-cli -h 127.0.0.1 -p "${cp[$j]}" "${cli_tls[@]}" TEEMS.STATUS 2>/dev/null |
         tr -d '\r' | grep -x 'role:leader' >/dev/null; then
        leader_port=${cp[$j]}
        # Leader elected: it takes writes once its lease and registration are done.
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$leader_port" "${cli_tls[@]}" SET compare:probe x 2>/dev/null)" = OK ]
        return
      fi
    done
    return 1
  }
  if ! wait_until 30 teems_leader; then
    local dead=""
    for i in 0 1 2; do kill -0 "${pids[$i]}" 2>/dev/null || dead+=" r$i"; done
    log "teems $mode $transport: no leader taking writes within 30 s${dead:+ (exited:$dead)}"
    for i in 0 1 2; do log "  r$i: $(tail -2 "$d/r$i/teemsd.log" | tr '\n' ' ')"; done
    add_row teems "$mode" "$transport" "-" "" "" "" "no leader${dead:+; exited:$dead}"
  else
    log "teems $mode $transport: leader at 127.0.0.1:$leader_port"
    rb_measure teems "$mode" "$transport" "$leader_port" "${cli_tls[@]}"
  fi
  stop_pids "${pids[@]}" ${proxy_pid:+"$proxy_pid"}
  rm -rf "$d"
}

teems_rows() {
  local configs=("1 rr" "1 always" "0 always")
  [ "$quick" -eq 1 ] || configs+=("0 rr")
  local cfg m_r sync
  if ! find_teemsd; then
    for cfg in "${configs[@]}"; do
      read -r m_r sync <<<"$cfg"
      add_row teems "3r m_r=$m_r sync=$sync" plain "-" "" "" "" "teems: not built"
    done
    return
  fi
  for cfg in "${configs[@]}"; do
    read -r m_r sync <<<"$cfg"
    teems_row "m$m_r-$sync" "$m_r" "$sync" plain
  done
  # GET with lease reads (the rows above: leases on by default) versus read-index reads, on
  # loopback and with a round trip between the replicas (--peer-rtt), where a read-index read
  # pays it and a lease read does not
  teems_row "m1-rr-nolease" 1 rr plain off
  if [ "$peer_rtt" -gt 0 ]; then
    teems_row "m1-rr-rtt" 1 rr plain on "$peer_rtt"
    teems_row "m1-rr-nolease-rtt" 1 rr plain off "$peer_rtt"
  fi
  if [ "$tls" -eq 1 ]; then
    if [ "$tls_ok" -eq 1 ]; then
      for cfg in "${configs[@]}"; do
        read -r m_r sync <<<"$cfg"
        teems_row "m$m_r-$sync" "$m_r" "$sync" tls
      done
    else
      add_row teems "-" tls "-" "" "" "" "not measured: $tls_why"
    fi
  fi
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
for tool in redis-server redis-benchmark redis-cli openssl cc ss; do
  command -v "$tool" >/dev/null || { log "$tool is missing (scripts/setup installs it)"; exit 1; }
done

# Redis over TLS is measured only when teems is (so ratios compare like with like): find out
# first whether a teemsd exists and whether its service CA can be made.
redis_tls=0
if want teems && find_teemsd; then
  log "teemsd: $teemsd"
  "$teemsd" --help >"$tmp/teemsd.help" 2>&1 || true
  if [ "$tls" -eq 1 ]; then
    if teems_tls_material; then
      redis_tls=1
    else
      log "teems TLS rows skipped: $tls_why"
    fi
  fi
fi
# COMPARE_REDIS_TLS=1: Redis over TLS regardless (to try the TLS rows without teems).
[ "$tls" -eq 1 ] && [ "${COMPARE_REDIS_TLS:-}" = 1 ] && redis_tls=1

if want redis; then
  for mode in no-aof aof-always; do redis_row "$mode" plain; done
  if [ "$redis_tls" -eq 1 ]; then
    if make_redis_tls; then
      for mode in no-aof aof-always; do redis_row "$mode" tls; done
    else
      log "openssl failed: $(tail -2 "$tmp/redis-tls/openssl.log")"
    fi
  fi
fi
want etcd && etcd_rows
want teems && teems_rows

# ---------------------------------------------------------------------------------------------
# The table: ratios are ops/s over the ops/s of the Redis row with the same test and the same
# transport: x_redis against `appendonly no`, x_aof against `appendfsync always`.
# ---------------------------------------------------------------------------------------------
elapsed=$(($(date +%s) - bench_start))
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -sr), $(nproc) CPUs," \
       "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//')"
  echo "# data on $fstype ($(df --output=source "$tmp" | tail -1)); loopback;" \
       "$(redis-server --version | awk '{print $3}' | tr -d v=) redis;" \
       "etcd $(etcd --version 2>/dev/null | awk 'NR == 1 { print $3 }');" \
       "teemsd ${teemsd:-not measured}"
  echo "# command: bench/compare.sh $([ "$quick" -eq 1 ] && echo --quick) --reps $reps" \
       "--seconds $seconds --only $only; ${elapsed}s"
  echo "# redis-benchmark -t set,get -d 64 -r 100000 -c 50 [-P 16] | -c 1; etcd: bench/etcd_put.c"
  echo "# medians of $reps run(s); x_redis = ops/s / redis no-aof, x_aof = ops/s / redis aof-always,"
  echo "# both of the same test over the same transport (plain or tls)"
} >"$tmp/header"

printf '%s\n' "${rows[@]}" | awk -F'\t' -v OFS='\t' '
  { sys[NR] = $1; mode[NR] = $2; tr[NR] = $3; test[NR] = $4; ops[NR] = $5; p50[NR] = $6
    p99[NR] = $7; note[NR] = $8
    if ($1 == "redis" && $5 != "") ref[$2 "|" $3 "|" $4] = $5 }
  function ratio(key, v) { return (v != "" && (key in ref) && ref[key] > 0) ? sprintf("%.2f", v / ref[key]) : "" }
  END {
    for (i = 1; i <= NR; i++) {
      r1 = ratio("no-aof|" tr[i] "|" test[i], ops[i])
      r2 = ratio("aof-always|" tr[i] "|" test[i], ops[i])
      if (sys[i] == "redis" && mode[i] == "no-aof") r1 = ""
      if (sys[i] == "redis" && mode[i] == "aof-always") r2 = ""
      print sys[i], mode[i], tr[i], test[i], (ops[i] == "" ? "" : sprintf("%.0f", ops[i])),
        p50[i], p99[i], r1, r2, note[i]
    }
  }' >"$tmp/rows.tsv"

{
  cat "$tmp/header"
  awk -F'\t' '
    BEGIN { fmt = "%-6s %-32s %-5s %-12s %10s %8s %8s %7s %6s  %s\n"
      printf fmt, "system", "mode", "tr", "test", "ops/s", "p50 ms", "p99 ms", "x_redis", "x_aof", "note" }
    { printf fmt, $1, $2, $3, $4, ($5 == "" ? "-" : $5), ($6 == "" ? "-" : $6),
        ($7 == "" ? "-" : $7), ($8 == "" ? "-" : $8), ($9 == "" ? "-" : $9), $10 }' "$tmp/rows.tsv"
  # Issue 6's comparison: GET with lease reads over GET with read-index reads (teems m_r=1
  # sync=rr, plain), on loopback and with the peer round trip, and lease GET over Redis GET.
  awk -F'\t' '
    $3 == "plain" && $1 == "redis" && $2 == "no-aof" { redis[$4] = $5 }
    $3 == "plain" && $1 == "teems" && $4 ~ /^GET/ && $2 ~ /^3r m_r=1 sync=rr( |$)/ {
      rtt = "0"; if (match($2, /rtt=[^ ]*/)) rtt = substr($2, RSTART + 4, RLENGTH - 4)
      k = rtt "|" $4; keys[k] = 1
      if ($2 ~ /nolease/) ri[k] = $5; else le[k] = $5 }
    END {
      n = 0; for (k in keys) if ((k in le) && (k in ri) && le[k] != "" && ri[k] != "") n++
      if (n == 0) exit
      print ""
      print "# GET, lease reads against read-index reads (3r m_r=1 sync=rr, plain); peer rtt 0 = loopback"
      fmt = "%-9s %-12s %12s %16s %13s %12s\n"
      printf fmt, "peer rtt", "test", "lease ops/s", "read-index ops/s", "lease/ri", "lease/redis"
      for (k in keys) {
        if (!(k in le) || !(k in ri) || le[k] == "" || ri[k] == "") continue
        split(k, f, "|")
        t = f[2]
        printf fmt, f[1], t, sprintf("%.0f", le[k]), sprintf("%.0f", ri[k]),
          sprintf("%.2f", le[k] / ri[k]),
          ((t in redis) && redis[t] > 0) ? sprintf("%.2f", le[k] / redis[t]) : "-"
      }
    }' "$tmp/rows.tsv" | { IFS= read -r first || exit 0; echo "$first"; IFS= read -r h; echo "$h"
                          IFS= read -r c; echo "$c"; sort -k1,1 -k2,2; }
} | tee "$results/compare.txt"

{
  echo "system,mode,transport,test,ops_per_s,p50_ms,p99_ms,x_redis_noaof,x_redis_aof_always,note"
  awk -F'\t' -v OFS=',' '{ for (i = 1; i <= 10; i++) { gsub(/"/, "\"\"", $i); $i = "\"" $i "\"" } print }' \
    "$tmp/rows.tsv"
} >"$results/compare.csv"
log "wrote bench/results/compare.csv and compare.txt (${elapsed}s)"
