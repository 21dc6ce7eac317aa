#!/bin/sh
# engine = abd as a user runs it: `teems cluster up --engine abd`, redis-cli --tls SET/GET
# through every replica (each coordinates; nothing is forwarded), a command ABD cannot do
# gets the clear error, kill -9 of one replica while writes go on, `teems cluster up` restarts
# it (a new incarnation: it registers through the Paxos control plane, fences, recovers by
# range digests), the newest values are read through it, `cluster down` stops everything.
# On the way: all three restarted with WAL compaction every 20 records, and checked to seal
# snapshots, keep few segments and keep a deleted key deleted.
#
# usage: abd_cluster.sh TEEMS TEEMSD    exit 77 (skipped) without TEEMSD or redis-cli.
set -u
TEEMS=$1
TEEMSD=$2
[ -x "$TEEMSD" ] || { echo "teemsd not built: skipped"; exit 77; }
command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli not installed: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"

LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"
cluster_tmp abd-cluster

show_logs() {
	for l in "$D"/r*/teemsd.log; do
		echo "--- $l"
		tail -n 30 "$l"
	done
}
port_of() { # replica id -> client port, from cluster.conf ("id pid host:port peer")
	awk -v id="$1" '$1 == id { n = split($3, a, ":"); print a[n] }' "$D/cluster.conf"
}
rc() { # replica id, then a redis-cli command
	id=$1
	shift
	timeout 10 redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "$(port_of "$id")" "$@" 2>&1
}
# until_ok SECONDS EXPECTED ID CMD...: repeat the command until it prints EXPECTED while it
# answers TRYAGAIN (a replica recovering, or before its first configuration lease) or cannot
# be reached (restarting); any other answer fails at once.
until_ok() {
	secs=$1
	want=$2
	shift 2
	end=$(($(date +%s) + secs))
	while :; do
		got=$(rc "$@")
		[ "$got" = "$want" ] && return 0
		case "$got" in
		TRYAGAIN* | *"Connection refused"* | *"I/O error"* | "") ;;
		*) echo "$got"; return 1 ;;
		esac
		[ "$(date +%s)" -ge "$end" ] && { echo "$got"; return 1; }
		sleep 0.2
	done
}

if ! "$TEEMS" --dir "$D" cluster up --engine abd >"$T/out" 2>&1; then
	cat "$T/out"
	show_logs
	exit 1
fi
cat "$T/out"
grep -q '^engine = abd' "$D/r0/teemsd.conf" || fail "r0/teemsd.conf does not say engine = abd"

# A SET through every replica, each read back through every replica.
for i in 0 1 2; do
	got=$(until_ok 20 OK "$i" SET "key$i" "value-$i") || fail "SET through r$i: $got"
	for j in 0 1 2; do
		got=$(rc "$j" GET "key$i")
		[ "$got" = "value-$i" ] || fail "GET key$i through r$j: \"$got\""
	done
done
rc 1 TEEMS.STATUS | grep -q '^engine:abd' || fail "TEEMS.STATUS does not say engine:abd"
got=$(rc 2 INCR counter)
[ "$got" = "ERR 'incr' is not supported with engine = abd" ] || fail "INCR answered \"$got\""
got=$(rc 0 DEL key0)
[ "$got" = 1 ] || fail "DEL key0 answered \"$got\""
got=$(rc 2 GET key0)
[ -z "$got" ] || fail "GET key0 after DEL answered \"$got\""

# WAL compaction: the whole cluster restarted with a snapshot every 20 ABD records and 4 KiB
# WAL segments, a few hundred writes over a few keys; every replica seals snapshots and keeps
# a few segments only. A deleted key stays deleted through them (its tombstone is compacted
# into a snapshot), which the restart of r1 below checks again.
got=$(until_ok 20 OK 0 SET gone soon) || fail "SET gone: $got"
got=$(rc 1 DEL gone)
[ "$got" = 1 ] || fail "DEL gone answered \"$got\""
"$TEEMS" --dir "$D" cluster down >"$T/out" 2>&1 || fail "cluster down: $(cat "$T/out")"
for i in 0 1 2; do
	printf 'snapshot_every = 20\nwal_segment_bytes = 4KiB\n' >>"$D/r$i/teemsd.conf"
done
if ! "$TEEMS" --dir "$D" cluster up >"$T/out" 2>&1; then
	cat "$T/out"
	fail "cluster up (all three restarted, compaction on)"
fi
for i in 0 1 2; do
	got=$(until_ok 60 OK "$i" SET "hot$i" start) || fail "SET through r$i after the restart: $got"
	ok=$(seq 1 100 | awk -v i="$i" '{ print "SET hot" ($1 % 4) " v" i "-" $1 }' | rc "$i" |
		grep -c '^OK$')
	[ "$ok" -eq 100 ] || fail "r$i: $ok of 100 pipelined SETs answered OK"
done
sleep 1 # the snapshots go out with the next sync job
for i in 0 1 2; do
	st=$(rc "$i" TEEMS.STATUS | tr -d '\r')
	persisted=$(echo "$st" | sed -n 's/^abd_snapshots_persisted://p')
	segs=$(find "$D/r$i/data/abd" -name 'wal-*' | wc -l)
	[ "${persisted:-0}" -ge 1 ] && [ "$segs" -le 4 ] &&
		echo "ok: r$i: $persisted snapshots sealed, $segs WAL segments" ||
		fail "r$i: abd_snapshots_persisted ${persisted:-none}, $segs WAL segments"
	got=$(rc "$i" GET gone)
	[ -z "$got" ] || fail "GET gone through r$i after compaction: \"$got\""
done

# kill -9 of r1; writes go on through r0 and r2 (F = 1).
kill -9 "$(cat "$D/r1/teemsd.pid")"
for i in 0 1 2; do
	via=$((i % 2 == 0 ? 0 : 2))
	got=$(until_ok 20 OK "$via" SET "key$i" "newer-$i") || fail "SET key$i through r$via: $got"
done
if ! "$TEEMS" --dir "$D" cluster up >"$T/out" 2>&1; then
	fail "cluster up (restart of r1) failed"
	cat "$T/out"
fi
# r1 is a new incarnation: refused (TRYAGAIN) until it registered, fenced and recovered, then
# it serves the newest values.
for i in 0 1 2; do
	got=$(until_ok 60 "newer-$i" 1 GET "key$i") || fail "GET key$i through restarted r1: $got"
done
st=$(rc 1 TEEMS.STATUS)
echo "$st" | grep -q '^abd_state:fresh' || fail "r1 is not fresh: $st"
echo "$st" | grep -q '^abd_snapshot_restored:[1-9]' ||
	fail "r1 did not restart from its snapshot: $(echo "$st" | grep snapshot)"
got=$(rc 1 GET gone)
[ -z "$got" ] || fail "GET gone through restarted r1: \"$got\""
echo "$st" | grep -q '^registration:0\.0' && fail "r1 did not register a new incarnation"
got=$(until_ok 20 OK 1 SET after restart) || fail "SET through restarted r1: $got"
got=$(rc 0 GET after)
[ "$got" = restart ] || fail "GET after through r0: \"$got\""

pids=$(cat "$D"/r*/teemsd.pid)
"$TEEMS" --dir "$D" cluster down >"$T/out" 2>&1 || fail "cluster down: $(cat "$T/out")"
for p in $pids; do
	if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
		fail "teemsd pid $p still running after cluster down"
	fi
done

if [ $fails -ne 0 ]; then
	show_logs
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
