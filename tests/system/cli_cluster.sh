#!/bin/sh
# A real local cluster through the teems CLI: `cluster up` in a temporary directory, set a key,
# read it back through each replica (with teems --host and with redis-cli --tls), compare-and-
# set, `cluster status` lists every replica with exactly one leader, a crashed replica is
# skipped, `cluster down` leaves no teemsd running, and `cluster up` again restarts the same
# cluster with its data.
#
# usage: cli_cluster.sh TEEMS TEEMSD    exit 77 (skipped) when TEEMSD is not built.
set -u
TEEMS=$1
TEEMSD=$2
[ -x "$TEEMSD" ] || { echo "teemsd not built: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"

LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"
cluster_tmp cli-cluster

# run DESCRIPTION COMMAND...: must exit 0; stdout in $T/out, stderr in $T/err.
run() {
	what=$1
	shift
	if "$@" >"$T/out" 2>"$T/err"; then
		echo "ok: $what"
	else
		fail "$what: exit $?"
		sed 's/^/  out: /' "$T/out"
		sed 's/^/  err: /' "$T/err"
	fi
}
show_logs() {
	for l in "$D"/r*/teemsd.log; do
		echo "--- $l"
		tail -n 20 "$l"
	done
}

run "cluster up" "$TEEMS" --dir "$D" cluster up --replicas 3
cat "$T/out"
if [ $fails -ne 0 ]; then
	show_logs
	exit 1
fi
for f in ca.pem cluster.conf r0/teemsd.conf r1/data r2/teemsd.pid platform store \
	r0/data/service-ca.sealed; do
	[ -e "$D/$f" ] || fail "layout: $D/$f missing"
done
[ "$(wc -l <"$D/cluster.conf")" -eq 3 ] || fail "cluster.conf does not list 3 replicas"
# Every port below the ephemeral range, where no outgoing connection can hold it when a replica
# restarts and binds it again.
eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
while read -r id _pid client peer; do
	for port in "${client##*:}" "${peer##*:}"; do
		[ "$eph" -lt 11024 ] || [ "$port" -lt "$eph" ] ||
			fail "r$id: port $port is in the ephemeral range ($eph and up)"
	done
done <"$D/cluster.conf"

run "a second cluster up is refused" sh -c "! '$TEEMS' --dir '$D' cluster up"

run "set" "$TEEMS" --dir "$D" set greeting "hello teems"
[ "$(cat "$T/out")" = OK ] || fail "set printed $(cat "$T/out")"

# Read it back through every replica, each addressed alone.
while read -r id _pid client _peer; do
	port=${client##*:}
	run "get through r$id" "$TEEMS" --host 127.0.0.1 --port "$port" --cacert "$D/ca.pem" \
		get greeting
	[ "$(cat "$T/out")" = "hello teems" ] || fail "r$id returned \"$(cat "$T/out")\""
	if command -v redis-cli >/dev/null 2>&1; then
		got=$(redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "$port" GET greeting 2>&1)
		[ "$got" = "hello teems" ] || fail "redis-cli through r$id: \"$got\""
	fi
done <"$D/cluster.conf"

# Compare-and-set: win at the current version, lose at an old one.
run "vget" "$TEEMS" --dir "$D" vget greeting
v=$(sed -n 's/^version //p' "$T/out")
[ -n "$v" ] || fail "vget printed no version"
run "cas at the current version" "$TEEMS" --dir "$D" cas greeting again "$v"
grep -q "^ok version " "$T/out" || fail "cas printed $(cat "$T/out")"
"$TEEMS" --dir "$D" cas greeting lost "$v" >"$T/out" 2>"$T/err"
[ $? -eq 1 ] || fail "a stale cas did not exit 1"
grep -q "^conflict: current version " "$T/out" || fail "stale cas printed $(cat "$T/out")"
run "del" "$TEEMS" --dir "$D" del greeting
[ "$(cat "$T/out")" = 1 ] || fail "del printed $(cat "$T/out")"

run "cluster status" "$TEEMS" --dir "$D" cluster status
cat "$T/out"
[ "$(grep -c '^r[0-9]' "$T/out")" -eq 3 ] || fail "status does not list 3 replicas"
[ "$(grep -c ' leader ' "$T/out")" -eq 1 ] || fail "status does not show exactly one leader"
[ "$(grep -c '(alive)' "$T/out")" -eq 3 ] || fail "status does not show 3 live processes"
run "status" "$TEEMS" --dir "$D" status
[ "$(grep -c '^role:' "$T/out")" -eq 3 ] || fail "status does not show 3 TEEMS.STATUS replies"

# One replica crashes (F=1): once the others have a leader (an election, if r0 led), requests
# skip r0. (A write caught by the election itself may be answered "outcome unknown": that is
# the service's answer, not the CLI's business.)
kill -9 "$(cat "$D/r0/teemsd.pid")"
i=0
until "$TEEMS" --dir "$D" cluster status 2>/dev/null | grep -q '(alive) *leader '; do
	i=$((i + 1))
	[ $i -gt 100 ] && { fail "no new leader within 20 s of r0's crash"; break; }
	sleep 0.2
done
run "set with r0 killed" "$TEEMS" --dir "$D" set after-crash yes
run "get with r0 killed" "$TEEMS" --dir "$D" get after-crash
[ "$(cat "$T/out")" = yes ] || fail "get with r0 killed returned \"$(cat "$T/out")\""
run "cluster status with r0 killed" "$TEEMS" --dir "$D" cluster status
cat "$T/out"
grep -q '^r0 .*(dead)' "$T/out" || fail "status does not show r0 dead"
[ "$(grep -c '(alive)' "$T/out")" -eq 2 ] || fail "status does not show 2 live processes"

pids=$(cat "$D"/r*/teemsd.pid)
run "cluster down" "$TEEMS" --dir "$D" cluster down
for p in $pids; do
	if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
		fail "teemsd pid $p still running after cluster down"
	fi
done
ls "$D"/r*/teemsd.pid >/dev/null 2>&1 && fail "pid files left after cluster down"
"$TEEMS" --dir "$D" cluster status >"$T/out" 2>&1
[ $? -eq 3 ] || fail "cluster status of a stopped cluster did not exit 3"

# Restart with the data kept.
run "cluster up again" "$TEEMS" --dir "$D" cluster up
grep -q restarted "$T/out" || fail "the second cluster up did not restart: $(cat "$T/out")"
run "set after restart" "$TEEMS" --dir "$D" set after restart
run "cluster down again" "$TEEMS" --dir "$D" cluster down

if [ $fails -ne 0 ]; then
	show_logs
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
