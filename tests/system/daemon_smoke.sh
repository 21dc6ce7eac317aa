#!/usr/bin/env bash
# Three real teemsd replicas on loopback: a SET on one is read back on the others; kill -9 the
# leader: writes continue within a few seconds; restart it on its data directory: it rejoins
# (registers a new incarnation, recovers) and serves the writes it missed.
#
#	daemon_smoke.sh TEEMSD plain [DAEMON_PROBE]  plaintext development mode (client_tls = off)
#	daemon_smoke.sh TEEMSD tls DAEMON_MKCA       attested TLS between replicas, clients over
#	                                             TLS with the service CA
# With DAEMON_PROBE (plain only), 500 pipelined SET/GET pairs through a follower must come back
# in request order.
# ENGINE (environment, default paxos) picks the engine.
set -u
TEEMSD=$1
MODE=${2:-plain}
MKCA=${3:-}
PROBE=""
[ "$MODE" = plain ] && PROBE=${3:-}
ENGINE=${ENGINE:-paxos}
LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"
command -v redis-cli >/dev/null || { echo "redis-cli missing: skipped"; exit 77; }

DIR=$(mktemp -d /tmp/teemsd-smoke.XXXXXX)
declare -a PIDS
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$DIR"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for i in 0 1 2; do
		echo "== r$i"; tail -25 "$DIR/r$i.log"
		"${RCLI[@]}" -p "${CP[$i]}" TEEMS.STATUS 2>/dev/null | tr -d '\r' | head -12
	done
	exit 1
}

# Ports: a random base below the ephemeral range (32768+), on an address of this run's own, so
# tests running side by side cannot take each other's ports.
HOST=$(loopback_host)
export PROBE_HOST=$HOST
BASE=$((10000 + RANDOM % 20000))
declare -a CP PP
for i in 0 1 2; do CP[$i]=$((BASE + i)); PP[$i]=$((BASE + 10 + i)); done
PEERS="0@$HOST:${PP[0]},1@$HOST:${PP[1]},2@$HOST:${PP[2]}"

RCLI=(redis-cli -h "$HOST")
TLS_OPT="--client-tls off"
if [ "$MODE" = tls ]; then
	mkdir -p "$DIR/r0-data" "$DIR/r1-data" "$DIR/r2-data"
	"$MKCA" "$DIR/platform" "$TEEMSD" "$DIR/ca.pem" "$DIR/r0-data/service-ca.sealed" \
		"$DIR/r1-data/service-ca.sealed" "$DIR/r2-data/service-ca.sealed" ||
		fail "daemon_mkca"
	RCLI=(redis-cli -h "$HOST" --tls --cacert "$DIR/ca.pem")
	TLS_OPT="--client-tls on"
fi
start() { # id
	"$TEEMSD" --replica-id "$1" --peers "$PEERS" --f 1 --m-r 1 --engine "$ENGINE" \
		--listen $HOST:${CP[$1]} $TLS_OPT --data-dir "$DIR/r$1-data" \
		--platform-dir "$DIR/platform" --t-op 1s --t-lease 1s 2>>"$DIR/r$1.log" &
	PIDS[$1]=$!
}
status() { # id key
	"${RCLI[@]}" -p "${CP[$1]}" TEEMS.STATUS 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
# retry CMD on replica id until it prints WANT, for at most SECONDS; prints the elapsed ms
until_eq() { # id seconds want cmd...
	local id=$1 secs=$2 want=$3 t0 got
	shift 3
	t0=$(date +%s%N)
	while :; do
		got=$(timeout 3 "${RCLI[@]}" -p "${CP[$id]}" "$@" 2>/dev/null)
		[ "$got" = "$want" ] && { echo $((($(date +%s%N) - t0) / 1000000)); return 0; }
		[ $((($(date +%s%N) - t0) / 1000000000)) -ge "$secs" ] && { echo "$got"; return 1; }
		sleep 0.05
	done
}

# Every replica's peer listener is up before any of them ticks far: start them together.
for i in 0 1 2; do start $i; done
if [ "$MODE" = tls ]; then
	sleep 0.3
	if grep -q 'built without TLS' "$DIR/r0.log"; then
		echo "teemsd was built without TLS: skipped"
		exit 77
	fi
fi
for i in 0 1 2; do until_eq $i 10 PONG PING >/dev/null || fail "r$i does not answer PING"; done

leader=""
for _ in $(seq 200); do
	for i in 0 1 2; do [ "$(status $i role)" = leader ] && leader=$i; done
	[ -n "$leader" ] && break
	sleep 0.05
done
[ -n "$leader" ] || fail "no leader elected within 10 s"
echo "leader: r$leader"
# the shell tells the engine about its channels (replica_set_net_stats)
for i in 0 1 2; do
	for _ in $(seq 100); do [ "$(status $i peers_connected)" = 2 ] && break; sleep 0.05; done
	[ "$(status $i peers_connected)" = 2 ] || fail "r$i: peers_connected $(status $i peers_connected)"
	[ "$(status $i clients_connected)" -ge 1 ] || fail "r$i: clients_connected"
done

# a write on a follower (forwarded to the leader) and on the leader
f1=$(((leader + 1) % 3)); f2=$(((leader + 2) % 3))
ms=$(until_eq $f1 10 OK SET k1 v1) || fail "SET on follower r$f1: $ms"
echo "SET k1 on r$f1: ok after $ms ms"
for i in 0 1 2; do
	ms=$(until_eq $i 5 v1 GET k1) || fail "GET k1 on r$i: $ms"
done
echo "GET k1 = v1 on r0, r1, r2"
if [ -n "$PROBE" ]; then
	"$PROBE" kvpipe ${CP[$f2]} || fail "pipelined SET/GET through follower r$f2"
	"$PROBE" kvpipe ${CP[$leader]} || fail "pipelined SET/GET on leader r$leader"
fi

# kill -9 the leader: writes go on through the two others
kill -9 "${PIDS[$leader]}"
wait "${PIDS[$leader]}" 2>/dev/null
ms=$(until_eq $f1 10 OK SET k2 v2) || fail "no write within 10 s of killing leader r$leader: $ms"
echo "SET k2 after kill -9 of r$leader: ok after $ms ms"
[ "$ms" -lt 8000 ] || fail "writes resumed only after $ms ms"
ms=$(until_eq $f2 5 v2 GET k2) || fail "GET k2 on r$f2: $ms"

# restart the old leader on its data directory: it rejoins and serves what it missed
start $leader
ms=$(until_eq $leader 20 v2 GET k2) || fail "restarted r$leader does not serve k2: $ms"
echo "restarted r$leader serves k2 after $ms ms"
ms=$(until_eq $leader 10 OK SET k3 v3) || fail "SET through the restarted r$leader: $ms"
for i in 0 1 2; do
	ms=$(until_eq $i 5 v3 GET k3) || fail "GET k3 on r$i: $ms"
done
echo "lifecycle of r$leader: $(status $leader lifecycle), incarnation $(status $leader incarnation)"

# SIGTERM stops every replica cleanly
for i in 0 1 2; do kill -TERM "${PIDS[$i]}"; done
for i in 0 1 2; do
	wait "${PIDS[$i]}"; rc=$?
	[ $rc -eq 0 ] || fail "r$i exited $rc after SIGTERM"
done
PIDS=()
echo PASS
