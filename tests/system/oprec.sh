#!/usr/bin/env bash
# Operator-authorized recovery with real processes (issue 5 item 4; DESIGN.md section 6,
# "Authorization"; docs/OPERATIONS.md "Operator-authorized recovery").
#
#	oprec.sh BUILD_DIR
#
# `teems cluster up` (3 replicas, TLS), `teems init` (operator key; every replica config gets
# recovery = operator), writes, kill -9 of every replica, restart of all. Then:
#   - until the stuck replicas propose, and for 5 s after, no replica leads and no write is
#     accepted;
#   - `teems recover --status` shows the pending proposal (epoch 0 -> 1, one member per
#     replica);
#   - `teems recover --authorize` with another key is refused (exit 1, "does not verify", a log
#     line), so is a hand-made stale authorization; still no leader;
#   - `teems recover --authorize` with the operator key: a leader within 60 s, epoch 1 on every
#     replica, every write read back, new writes accepted.
# Exit: 0 pass, 1 fail, 77 skipped (binaries or redis-cli missing). OPREC_KEEP=1 keeps the
# temporary directory; on failure the logs are printed.
set -u
BUILD=$(cd "${1:?usage: oprec.sh BUILD_DIR}" && pwd) || exit 2
TEEMS=$BUILD/teems
TEEMSD=$BUILD/teemsd
for b in "$TEEMS" "$TEEMSD"; do
	[ -x "$b" ] || { echo "$b not built: skipped"; exit 77; }
done
command -v redis-cli >/dev/null || { echo "redis-cli missing: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"

T=$(mktemp -d /tmp/teems-oprec-XXXXXX)
D="$T/cluster"
T0=$(date +%s%N)
declare -a CPORT PID
N=3
FAILED=0

log() { printf '[%6.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }

cleanup() {
	for p in "${PID[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null
	done
	for f in "$D"/r*/teemsd.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	[ -n "${OPREC_KEEP:-}" ] && { echo "kept $T"; return; }
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	FAILED=1
	log "FAIL: $*"
	for i in $(seq 0 $((N - 1))); do
		echo "== r$i (pid ${PID[$i]:-})"
		tail -n 20 "$D/r$i/teemsd.log"
	done
	exit 1
}

rcli() { # id args...: one command to replica id over TLS, bounded
	local id=$1
	shift
	timeout 3 redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "${CPORT[$id]}" "$@" 2>/dev/null
}
status() { # id key
	rcli "$1" TEEMS.STATUS | tr -d '\r' | sed -n "s/^$2://p"
}
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

leader_of() {
	for i in $(seq 0 $((N - 1))); do
		[ "$(status "$i" role)" = leader ] && { echo "$i"; return 0; }
	done
	return 1
}

start_replica() { # id: as `teems cluster up` starts it (cwd r<i>, log appended)
	(cd "$D/r$1" && exec "$TEEMSD" --config teemsd.conf >>teemsd.log 2>&1 </dev/null) &
	PID[$1]=$!
	echo "${PID[$1]}" >"$D/r$1/teemsd.pid"
}

kill9() {
	kill -9 "${PID[$1]}" 2>/dev/null
	for _ in $(seq 100); do alive "${PID[$1]}" || break; sleep 0.05; done
	wait "${PID[$1]}" 2>/dev/null
}

# No leader, no write accepted (checked once).
check_stalled() {
	local l
	l=$(leader_of) && fail "r$l became leader without the operator's authorization"
	for i in $(seq 0 $((N - 1))); do
		[ "$(rcli "$i" SET "probe$i" x)" = OK ] &&
			fail "r$i accepted a write without the operator's authorization"
		alive "${PID[$i]}" || fail "r$i exited while waiting for the operator"
	done
}

"$TEEMS" --dir "$D" cluster up --replicas $N >"$T/up.log" 2>&1 || { cat "$T/up.log"; fail "cluster up"; }
while read -r id pid client _; do
	PID[$id]=$pid
	CPORT[$id]=${client##*:}
done <"$D/cluster.conf"
log "cluster up: pids ${PID[*]}"

"$TEEMS" --dir "$D" init >"$T/init.log" 2>&1 || { cat "$T/init.log"; fail "teems init"; }
[ "$(stat -c %a "$D/operator.key")" = 600 ] || fail "operator.key is not 0600"
grep -q '^recovery = operator$' "$D/r0/teemsd.conf" || fail "init did not set recovery"
grep -q "^operator_key = .*/operator.pub$" "$D/r2/teemsd.conf" || fail "init did not set operator_key"
"$TEEMS" --dir "$D" init >/dev/null 2>&1 && fail "a second init replaced the operator key"
log "teems init: $(head -n 1 "$T/init.log")"

for k in $(seq 1 20); do
	"$TEEMS" --dir "$D" set "key$k" "value$k" >/dev/null || fail "set key$k"
done
log "20 writes acknowledged"

for i in $(seq 0 $((N - 1))); do kill9 "$i"; done
log "every replica killed (kill -9)"
for i in $(seq 0 $((N - 1))); do start_replica "$i"; done
log "every replica restarted, with recovery = operator"

# The replicas are stuck after T_restart (10 s with the default T_op), then one proposes and
# waits. Meanwhile, and for 5 s after, nothing may lead or write.
t=$(($(date +%s) + 60))
until "$TEEMS" --dir "$D" recover --status >"$T/status.log" 2>&1 &&
	grep -q '^pending epoch restart' "$T/status.log"; do
	[ "$(date +%s)" -lt "$t" ] || { cat "$T/status.log"; fail "no proposal waits for the operator within 60 s"; }
	check_stalled
	sleep 1
done
log "a proposal waits for the operator:"
sed 's/^/    /' "$T/status.log"
grep -q 'epoch      0 -> 1' "$T/status.log" || fail "the proposal is not for epoch 1"
[ "$(grep -c 'incarnation tag' "$T/status.log")" -eq 1 ] || fail "no members line"
t=$(($(date +%s) + 5))
while [ "$(date +%s)" -lt "$t" ]; do
	check_stalled
	sleep 0.5
done
log "no leader and no write while waiting"

# Another key: refused, with an error and a log line.
mkdir -p "$T/other"
"$TEEMS" --dir "$T/other" init >/dev/null 2>&1 || fail "init of a second key"
if "$TEEMS" --dir "$D" recover --authorize --key "$T/other/operator.key" >"$T/wrong.log" 2>&1; then
	cat "$T/wrong.log"
	fail "an authorization by another key was accepted"
fi
grep -q "does not verify" "$T/wrong.log" || { cat "$T/wrong.log"; fail "no clear refusal for another key"; }
# The engine's log lines reach teemsd.log once the shell sets replica_io.log ("first boot" is
# the engine's first line); then the refusal must be logged too.
if grep -q "first boot" "$D/r0/teemsd.log"; then
	grep -q "operator authorization refused" "$D"/r*/teemsd.log || fail "no log line for the refusal"
fi
log "another key is refused: $(grep -o 'refused the authorization.*' "$T/wrong.log" | head -c 120)"
# A stale authorization (another proposal, any signature): refused.
for i in $(seq 0 $((N - 1))); do
	r=$(rcli "$i" TEEMS.RECOVER AUTHORIZE 0 1.0.0.1 "$(printf '%0128d' 0)")
	case "$r" in
	ERR*) ;;
	*) fail "r$i accepted a stale authorization: $r" ;;
	esac
done
check_stalled
log "stale authorizations are refused; still no leader"

"$TEEMS" --dir "$D" recover --authorize >"$T/auth.log" 2>&1 || { cat "$T/auth.log"; fail "recover --authorize"; }
log "authorized: $(grep '^authorized' "$T/auth.log")"
t=$(($(date +%s) + 60))
until l=$(leader_of); do
	[ "$(date +%s)" -lt "$t" ] || fail "no leader within 60 s of the authorization"
	sleep 0.5
done
log "leader r$l"
for i in $(seq 0 $((N - 1))); do
	[ "$(status "$i" epoch)" = 1 ] || fail "r$i is not in epoch 1 ($(status "$i" epoch))"
done
for k in $(seq 1 20); do
	v=$("$TEEMS" --dir "$D" get "key$k" 2>/dev/null) || fail "get key$k"
	[ "$v" = "value$k" ] || fail "key$k is \"$v\", not value$k"
done
"$TEEMS" --dir "$D" set after yes >/dev/null || fail "a write after the restart"
[ "$("$TEEMS" --dir "$D" get after)" = yes ] || fail "read after the restart"
log "every write is there; writes are accepted again"
"$TEEMS" --dir "$D" cluster down >/dev/null 2>&1
log "PASS"
