#!/usr/bin/env bash
# teemsd's shell against the fake engine (teemsd-echo; tests/system/fake_replica.c):
# configuration refusals, pipelining and reply order, HELLO 3, protocol errors, oversized
# requests, connection-level commands, 200 clients, garbage on the peer port, two daemons
# exchanging frames and redialing, redis-cli and redis-benchmark, HALT, SIGINT and SIGTERM exit
# 0, attested TLS between replicas and TLS clients.
#
#	daemon_echo.sh TEEMSD_ECHO DAEMON_PROBE
set -u
ECHO_BIN=$1
PROBE=$2
command -v redis-cli >/dev/null || { echo "redis-cli missing: skipped"; exit 77; }
LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"

DIR=$(mktemp -d /tmp/teemsd-echo.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$DIR"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$DIR"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
	exit 1
}

# Ports: a random base below the ephemeral range (32768+), on an address of this run's own, so
# tests running side by side cannot take each other's ports.
HOST=$(loopback_host)
export PROBE_HOST=$HOST
rcli() { redis-cli -h "$HOST" "$@"; }
BASE=$((10000 + RANDOM % 20000))
C0=$BASE; P0=$((BASE + 1)); C1=$((BASE + 2)); P1=$((BASE + 3))
# N=2 fits F=0, M_R=1 (N = max(M_R, F) + F + 1); the fake engine does no quorum math anyway.
CLUSTER="--peers 0@$HOST:$P0,1@$HOST:$P1 --f 0 --m-r 1 --client-tls off"
LIMITS="--max-bulk 1KiB --max-request 4KiB --max-inline 1KiB"

wait_port() { # port
	for _ in $(seq 100); do
		[ "$(rcli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
		sleep 0.05
	done
	return 1
}

echo "--- configuration and startup refusals"
"$ECHO_BIN" --help | grep -q -- "data_dir" || fail "--help does not list the settings"
out=$("$ECHO_BIN" --sync sometimes 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'sync' <<<"$out" || fail "bad sync: rc=$rc: $out"
touch "$DIR/afile"
out=$("$ECHO_BIN" --data-dir "$DIR/afile" --listen $HOST:$C0 --peers 0@$HOST:$P0 --client-tls off 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'data_dir' <<<"$out" || fail "data_dir is a file: rc=$rc: $out"
out=$("$ECHO_BIN" --data-dir "$DIR/no/such" --listen $HOST:$C0 --peers 0@$HOST:$P0 --client-tls off 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'data_dir' <<<"$out" || fail "data_dir without parent: rc=$rc: $out"
echo ok

echo "--- two daemons"
start() { # id client_port
	"$ECHO_BIN" --replica-id "$1" $CLUSTER --listen $HOST:$2 --data-dir "$DIR/d$1" \
		$LIMITS 2>>"$DIR/r$1.log" &
	PIDS[$1]=$!
}
start 0 $C0
start 1 $C1
wait_port $C0 || fail "r0 does not answer"
wait_port $C1 || fail "r1 does not answer"
# the fake engines send a frame to each other every ~100 ms
sleep 0.5
f01=$(rcli -p $C1 FRAMES 0); f10=$(rcli -p $C0 FRAMES 1)
[ "${f01:-0}" -gt 0 ] && [ "${f10:-0}" -gt 0 ] || fail "no frames between the daemons ($f01, $f10)"
grep -F -q "peer r1 $HOST:$P1 connected" "$DIR/r0.log" || fail "r0 did not log the peer"
echo "ok: frames r0->r1 $f01, r1->r0 $f10"

for s in pipeline hello protoerr oversized conncmds many maxclients; do
	"$PROBE" $s $C0 || fail "probe $s"
done
"$PROBE" garbage $C0 $P0 || fail "probe garbage"
grep -q 'frame length out of range; closing' "$DIR/r0.log" || fail "no log line for a bad frame"

echo "--- redis-cli and redis-benchmark"
[ "$(rcli -p $C0 -3 PING)" = PONG ] || fail "redis-cli -3"
[ "$(rcli -p $C0 SET k v)" = OK ] || fail "redis-cli SET"
[ "$(rcli -p $C0 ECHO 'hello world')" = "hello world" ] || fail "redis-cli ECHO"
if command -v redis-benchmark >/dev/null; then
	timeout 30 redis-benchmark -h "$HOST" -p $C0 -n 20000 -c 20 -P 16 -t set,get -q >"$DIR/bench.out" 2>&1 ||
		{ cat "$DIR/bench.out"; fail "redis-benchmark"; }
	grep -q 'WARN\|ERR' "$DIR/bench.out" && { cat "$DIR/bench.out"; fail "redis-benchmark warned"; }
	cat "$DIR/bench.out" | tr '\r' '\n' | grep 'requests per second' | tail -2
fi

echo "--- half-open clients: a request cut in the middle, then silence, does not hold anyone up"
exec 7<>/dev/tcp/$HOST/$C0
printf '*2\r\n$3\r\nGET\r\n' >&7 # the key never comes
exec 8<>/dev/tcp/$HOST/$C0
printf '*3\r\n$3\r\nSET\r\n$1\r\nh\r\n$3' >&8 # cut inside a bulk length
[ "$(rcli -p $C0 PING)" = PONG ] || fail "a half-open client blocks others"
printf '\r\nabc\r\n' >&8 # the rest arrives late: the request completes
IFS= read -r -t 5 line <&8
[ "${line%$'\r'}" = "+OK" ] || fail "a request completed late got \"$line\""
exec 7>&- 8>&- # both vanish without a word
[ "$(rcli -p $C0 PING)" = PONG ] || fail "r0 after two clients vanished"

echo "--- r1 goes away and comes back: r0 redials"
kill -INT "${PIDS[1]}"
wait "${PIDS[1]}"; rc=$?
[ $rc -eq 0 ] || fail "SIGINT: r1 exited $rc"
grep -q 'SIGINT: stopping' "$DIR/r1.log" || fail "no SIGINT log line"
before=$(rcli -p $C1 FRAMES 0 2>/dev/null)
[ -z "$before" ] || fail "r1 still answers after SIGINT"
start 1 $C1
wait_port $C1 || fail "r1 does not come back"
sleep 1.5
f01=$(rcli -p $C1 FRAMES 0)
[ "${f01:-0}" -gt 0 ] || fail "r0 did not redial r1"
echo ok

echo "--- HALT: the engine stops the daemon with a non-zero status"
rcli -p $C1 HALT >/dev/null 2>&1
wait "${PIDS[1]}"; rc=$?
[ $rc -ne 0 ] || fail "HALT: exit status 0"
grep -q 'halting: asked to halt' "$DIR/r1.log" || fail "no halting log line"

echo "--- SIGTERM with clients connected exits 0"
(exec 3<>/dev/tcp/$HOST/$C0; sleep 5) &
holder=$!
sleep 0.2
kill -TERM "${PIDS[0]}"
wait "${PIDS[0]}"; rc=$?
kill $holder 2>/dev/null
[ $rc -eq 0 ] || fail "SIGTERM: r0 exited $rc"
grep -E -q '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z r0 ' "$DIR/r0.log" || fail "log line format"

echo "--- TLS: attested peer channels, clients through the service CA"
# Three replicas; r0's peer list has the addresses of r1 and r2 swapped, so what r0 dials as
# "r1" proves to be replica 2 and must be refused. r1 and r2 talk normally.
PT=$((BASE + 10))
C=($PT $((PT + 2)) $((PT + 4))); P=($((PT + 1)) $((PT + 3)) $((PT + 5)))
GOOD="0@$HOST:${P[0]},1@$HOST:${P[1]},2@$HOST:${P[2]}"
SWAPPED="0@$HOST:${P[0]},1@$HOST:${P[2]},2@$HOST:${P[1]}"
tls_start() { # id peers
	TEEMSD_ECHO_MAKE_CA="$DIR/ca$1.pem" "$ECHO_BIN" --replica-id "$1" --peers "$2" --f 1 \
		--m-r 1 --listen $HOST:${C[$1]} --data-dir "$DIR/t$1" \
		--platform-dir "$DIR/platform" 2>>"$DIR/t$1.log" &
	PIDS[$((10 + $1))]=$!
}
tls_start 0 "$SWAPPED"
sleep 0.3
if grep -q 'built without TLS' "$DIR/t0.log"; then
	echo "teemsd-echo has no TLS: TLS part skipped"
	echo PASS
	exit 0
fi
tls_start 1 "$GOOD"
tls_start 2 "$GOOD"
tcli() { rcli --tls --cacert "$DIR/ca$1.pem" -p "${C[$1]}" "${@:2}"; }
for i in 0 1 2; do
	for _ in $(seq 100); do [ "$(tcli $i PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
	[ "$(tcli $i PING 2>/dev/null)" = PONG ] || fail "TLS client to t$i"
done
sleep 0.5
[ "$(tcli 2 FRAMES 1)" -gt 0 ] && [ "$(tcli 1 FRAMES 2)" -gt 0 ] || fail "no frames over TLS between r1 and r2"
grep -q 'proved to be replica 2; closing' "$DIR/t0.log" || fail "r0 accepted the wrong replica"
[ "$(tcli 1 FRAMES 0)" = 0 ] || fail "r1 got frames from r0, which dialed it as r2"
# plaintext on a TLS port: refused, the daemon goes on
out=$(rcli -p ${C[1]} PING 2>&1)
[ "$out" != PONG ] || fail "plaintext client accepted on a TLS port"
"$PROBE" garbage ${C[1]} ${P[1]} >/dev/null 2>&1
[ "$(tcli 1 PING)" = PONG ] || fail "t1 after garbage on its TLS peer port"
# a protocol error over TLS: answered, then closed
if command -v openssl >/dev/null; then
	out=$( (printf 'PING\r\n*1\r\n$x\r\n'; sleep 1) | timeout 5 openssl s_client -quiet \
		-connect $HOST:${C[1]} -CAfile "$DIR/ca1.pem" 2>/dev/null | tr -d '\r')
	[ "$out" = "+PONG
-ERR Protocol error: invalid bulk length" ] || fail "protocol error over TLS: $out"
fi
# the wrong CA is refused by the client
rcli --tls --cacert "$DIR/ca2.pem" -p ${C[1]} PING >/dev/null 2>&1 &&
	fail "a client trusted t1 with another CA"
for i in 0 1 2; do kill -TERM "${PIDS[$((10 + i))]}"; done
for i in 0 1 2; do
	wait "${PIDS[$((10 + i))]}"; rc=$?
	[ $rc -eq 0 ] || fail "t$i exited $rc after SIGTERM"
done
echo "PASS"
