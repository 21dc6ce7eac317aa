#!/usr/bin/env bash
# Leases under a lying host clock (issue #6 item 4; DESIGN.md section 8; docs/LEASES.md).
#
#	lease_faketime.sh BUILD_DIR
#
# A 3-replica cluster (`teems cluster up`, TLS, sync = rr). teems-loadgen records a history of
# VGET/SET/VSET/DEL while two lease clients compete for one client lease (LEASE.ACQUIRE,
# RENEW every 300 ms, RELEASE after three renewals; a third of the holds are abandoned without
# RELEASE, so the leader must expire them), recording when each request left and when its
# answer came back. The replicas are moved under libfaketime one at a time (stop, restart
# with LD_PRELOAD and FAKETIME_TIMESTAMP_FILE holding "+0", i.e. the true time, so that the TSC
# calibration at start sees an honest clock), then:
#   - the leader's host clock is sped up ("+0 x2"), slowed down ("+0 x0.5") and jumped
#     ("+120"), a few seconds each, while it leads;
#   - then a follower's, the same way.
# Checks: teems-check accepts the history; no two lease holders were ever valid at once (each
# holder counts from the send time of its last successful ACQUIRE or RENEW, ttl (1 - rho), and
# stops at its RELEASE's send) and fencing tokens strictly increase in holder order; each faked
# replica reports clock_taints > 0 (clock_state tainted) in TEEMS.STATUS.
#
# What libfaketime does here: it replaces clock_gettime for CLOCK_REALTIME and, by default
# (FAKETIME_DONT_FAKE_MONOTONIC unset), CLOCK_MONOTONIC too; it cannot touch the TSC (rdtsc).
# The sim platform's trusted clock counts TSC ticks and cross-checks them against
# CLOCK_MONOTONIC on every read, so a speed change or a jump of the faked CLOCK_MONOTONIC is a
# disagreement it detects (a rate or jump taint), and the leases keep counting on the TSC.
# The script records which taint kinds each faked replica saw (clock_taints_<kind>).
#
# Bounded (about 80 s), loopback only; everything it started is stopped on exit.
# Exit: 0 pass, 1 fail, 77 skipped (libfaketime, redis-cli or the binaries missing).
set -u
BUILD=$(cd "${1:?usage: lease_faketime.sh BUILD_DIR}" && pwd) || exit 2
TEEMS=$BUILD/teems
TEEMSD=$BUILD/teemsd
LOADGEN=$BUILD/teems-loadgen
CHECK=$BUILD/teems-check
FAKETIME_LIB=${FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1}
for b in "$TEEMS" "$TEEMSD" "$LOADGEN" "$CHECK"; do
	[ -x "$b" ] || { echo "$b not built: skipped"; exit 77; }
done
[ -f "$FAKETIME_LIB" ] || { echo "libfaketime missing ($FAKETIME_LIB; Debian: faketime): skipped"; exit 77; }
command -v redis-cli >/dev/null || { echo "redis-cli missing: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"

T=$(mktemp -d /tmp/teems-leaseft-XXXXXX)
D="$T/cluster"
T0=$(date +%s%N)
declare -a CPORT PID
declare -a EXTRA
N=3
FAILED=0
TTL=1000       # ms, the lease clients' ttl
RHO_PPM=10000  # the cluster's rho (0.01, the default)

log() { printf '[%6.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }
now_ns() { date +%s%N; }

cleanup() {
	touch "$T/stop"
	for p in "${PID[@]}" "${EXTRA[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null
	done
	for f in "$D"/r*/teemsd.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$FAILED" -ne 0 ]; then
		keep="$BUILD/lease-faketime-failure"
		rm -rf "$keep"
		mkdir -p "$keep"
		cp "$T"/*.hist "$T"/*.log "$T"/*.events "$keep"/ 2>/dev/null
		for i in 0 1 2; do cp "$D/r$i/teemsd.log" "$keep/r$i.teemsd.log" 2>/dev/null; done
		echo "history and logs kept in $keep"
	fi
	[ -n "${LEASE_FT_KEEP:-}" ] && { echo "kept $T"; return; }
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

rcli() { # id args...: one command to replica id over TLS, bounded
	local id=$1
	shift
	timeout 3 redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "${CPORT[$id]}" "$@" 2>/dev/null
}
status() { rcli "$1" TEEMS.STATUS | tr -d '\r' | sed -n "s/^$2://p"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

fail() {
	FAILED=1
	log "FAIL: $*"
	for i in 0 1 2; do
		echo "== r$i (pid ${PID[$i]:-}) $(status "$i" role) $(status "$i" lifecycle)"
		tail -n 12 "$D/r$i/teemsd.log"
	done
	exit 1
}

leader_of() {
	local i
	for i in 0 1 2; do
		alive "${PID[$i]}" || continue
		[ "$(status "$i" role)" = leader ] && { echo "$i"; return 0; }
	done
	return 1
}
wait_leader() { # seconds [excluded id]
	local not=${2:--1} t=$(($(date +%s) + $1)) l
	while [ "$(date +%s)" -lt "$t" ]; do
		l=$(leader_of) && [ "$l" != "$not" ] && { echo "$l"; return 0; }
		sleep 0.2
	done
	return 1
}
wait_fresh() { # id seconds
	local t=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$t" ]; do
		[ "$(status "$1" lifecycle)" = fresh ] && return 0
		alive "${PID[$1]}" || fail "r$1 exited while rejoining"
		sleep 0.2
	done
	fail "r$1 not fresh within $2 s (lifecycle $(status "$1" lifecycle))"
}

# restart id faked|plain: SIGTERM, then the same teemsd again, under libfaketime reading
# $T/ft<id> (true time for now) or without it.
restart() {
	local id=$1 how=$2 p=${PID[$1]}
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do alive "$p" || break; sleep 0.05; done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	if [ "$how" = faked ]; then
		echo "+0" >"$T/ft$id"
		(cd "$D/r$id" && exec env LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$T/ft$id" \
			FAKETIME_CACHE_DURATION=1 "$TEEMSD" --config teemsd.conf >>teemsd.log 2>&1 </dev/null) &
	else
		(cd "$D/r$id" && exec "$TEEMSD" --config teemsd.conf >>teemsd.log 2>&1 </dev/null) &
	fi
	PID[$id]=$!
	echo "${PID[$id]}" >"$D/r$id/teemsd.pid"
	log "r$id restarted ($how, pid ${PID[$id]})"
	wait_fresh "$id" 30
	log "r$id is fresh again"
}

# One lease client: ACQUIRE lk, RENEW 3 times 300 ms apart, RELEASE, pause; through a random
# replica each time. Events: KIND client send_ns recv_ns token (A acquired, R renewed,
# X renew refused or failed, L release sent).
lease_client() {
	local me=$1 id s e r tok
	local out=$T/lease$me.events
	while [ ! -e "$T/stop" ]; do
		id=$((RANDOM % N))
		s=$(now_ns)
		r=$(rcli "$id" LEASE.ACQUIRE lk "$TTL" | tr -d '\r')
		e=$(now_ns)
		tok=$(sed -n 1p <<<"$r")
		if ! [[ "$tok" =~ ^[0-9]+$ ]] || [ "$(sed -n 2p <<<"$r")" != "$TTL" ]; then
			sleep 0.0$((RANDOM % 10))
			continue
		fi
		echo "A $me $s $e $tok" >>"$out"
		for _ in 1 2 3; do
			sleep 0.3
			id=$((RANDOM % N))
			s=$(now_ns)
			r=$(rcli "$id" LEASE.RENEW lk "$tok" | tr -d '\r')
			e=$(now_ns)
			if [ "$(sed -n 1p <<<"$r")" = "$tok" ]; then
				echo "R $me $s $e $tok" >>"$out"
			else
				echo "X $me $s $e $tok" >>"$out"
				break
			fi
		done
		# One hold in three is abandoned without a RELEASE (a holder that crashed): the
		# other client then gets the lease only through the leader's EXPIRE.
		if [ $((RANDOM % 3)) -eq 0 ]; then
			sleep 0.$((RANDOM % 10))
			continue
		fi
		s=$(now_ns)
		echo "L $me $s $s $tok" >>"$out"
		rcli "$((RANDOM % N))" LEASE.RELEASE lk "$tok" >/dev/null
		sleep 0.0$((RANDOM % 10))
	done
}

# attack id: speed up, slow down, jump its host clock, a few seconds each.
attack() {
	local id=$1 spec
	for spec in "+0 x2" "+0 x0.5" "+120"; do
		echo "$spec" >"$T/ft$id"
		log "r$id host clock: FAKETIME \"$spec\""
		sleep 4
	done
	echo "+120" >"$T/ft$id"
	alive "${PID[$id]}" || fail "r$id exited under libfaketime"
}

# ---- the run ----
"$TEEMS" --dir "$D" cluster up --replicas 3 >"$T/up.log" 2>&1 || { cat "$T/up.log"; fail "cluster up"; }
while read -r id pid client _; do
	PID[$id]=$pid
	CPORT[$id]=${client##*:}
done <"$D/cluster.conf"
log "cluster up: pids ${PID[*]}"
L=$(wait_leader 10) || fail "no leader"

ADDRS="127.0.0.1:${CPORT[0]},127.0.0.1:${CPORT[1]},127.0.0.1:${CPORT[2]}"
"$LOADGEN" --addr "$ADDRS" --ca "$D/ca.pem" --history "$T/h.hist" --clients 3 --duration 200 \
	--think-us 2000 --reconnect-every 300 --seed "${LEASE_FT_SEED:-$$}" >"$T/load.log" 2>&1 &
LOAD=$!
EXTRA+=("$LOAD")
lease_client 1 &
EXTRA+=("$!")
lease_client 2 &
EXTRA+=("$!")
log "load and two lease clients started; leader r$L"

# Every replica under libfaketime (true time), the leader last, so that the next leader is a
# faked replica too.
for i in 0 1 2; do [ "$i" != "$L" ] && restart "$i" faked; done
restart "$L" faked
L=$(wait_leader 10) || fail "no leader after the restarts"
F=$(( (L + 1) % N ))
log "leader r$L, follower r$F: both under libfaketime"

attack "$L"
log "after the leader's attack: r$L clock_taints=$(status "$L" clock_taints) role=$(status "$L" role)"
attack "$F"

touch "$T/stop"
kill -TERM "$LOAD"
wait "$LOAD"
rc=$?
cat "$T/load.log"
[ $rc -eq 0 ] || fail "the load client exited $rc"
for p in "${EXTRA[@]}"; do [ "$p" != "$LOAD" ] && wait "$p" 2>/dev/null; done
log "load and lease clients stopped"

"$CHECK" "$T/h.hist" >"$T/h.check" 2>&1
rc=$?
head -n 20 "$T/h.check"
[ $rc -eq 0 ] || fail "teems-check exited $rc"
log "history is linearizable"

# Holder intervals: from the ACQUIRE's answer to min(RELEASE send, the last successful send +
# ttl (1 - rho)). Sorted by start, each must start after every earlier one ended, with a
# higher token.
check_leases() { # events file (sorted by send time)
awk -v ttl_ns=$((TTL * 1000000)) -v rho="$RHO_PPM" '
	function close_hold(c) {
		if (!(c in start)) return
		end = last[c] + int(ttl_ns * (1000000 - rho) / 1000000)
		if ((c in rel) && rel[c] < end) end = rel[c]
		n++; hs[n] = start[c]; he[n] = end; ht[n] = tok[c]; hc[n] = c; hr[n] = (c in rel)
		delete start[c]; delete rel[c]
	}
	$1 == "A" { close_hold($2); start[$2] = $4; last[$2] = $3; tok[$2] = $5 }
	$1 == "R" { if (($2 in start) && tok[$2] == $5) last[$2] = $3 }
	$1 == "L" { if (($2 in start) && tok[$2] == $5) { rel[$2] = $3; close_hold($2) } }
	END {
		for (c in start) close_hold(c)
		# insertion sort by start (a few hundred holds at most)
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && hs[j] < hs[j - 1]; j--) {
				t = hs[j]; hs[j] = hs[j - 1]; hs[j - 1] = t
				t = he[j]; he[j] = he[j - 1]; he[j - 1] = t
				t = ht[j]; ht[j] = ht[j - 1]; ht[j - 1] = t
				t = hc[j]; hc[j] = hc[j - 1]; hc[j - 1] = t
				t = hr[j]; hr[j] = hr[j - 1]; hr[j - 1] = t
			}
		bad = 0; maxend = 0; holders[1] = 0; holders[2] = 0
		for (i = 1; i <= n; i++) {
			holders[hc[i]]++
			if (i > 1 && hs[i] < maxend) {
				printf "OVERLAP: client %s token %s starts %.3f ms before an earlier hold ends\n", hc[i], ht[i], (maxend - hs[i]) / 1e6
				bad = 1
			}
			if (i > 1 && ht[i] + 0 <= ht[i - 1] + 0) {
				printf "TOKEN: %s after %s\n", ht[i], ht[i - 1]
				bad = 1
			}
			if (he[i] > maxend) maxend = he[i]
			if (i > 1 && !hr[i - 1]) expired++
		}
		printf "lease holds: %d (client 1: %d, client 2: %d), %d taken after an abandoned one (expired), last token %s\n", n, holders[1], holders[2], expired + 0, ht[n]
		if (n < 4 || expired < 1) { print "too few lease holds (or expiries) to mean anything"; bad = 1 }
		exit bad
	}' "$1"
}
cat "$T"/lease*.events 2>/dev/null | sort -k3,3n >"$T/all.events"
check_leases "$T/all.events" >"$T/lease.check"
rc=$?
cat "$T/lease.check"
[ $rc -eq 0 ] || fail "lease exclusivity or fencing tokens violated"
log "no two lease holders overlapped; tokens increase"
# Negative control: a second holder of the first hold's token, 1 ms into it, must be caught.
awk '$1 == "A" && !done { print; o = ($2 == 1 ? 2 : 1)
	printf "A %s %d %d %s\nL %s %d %d %s\n", o, $3 + 1000000, $4 + 1000000, $5, o, $4 + 2000000, $4 + 2000000, $5
	done = 1; next } { print }' "$T/all.events" | sort -k3,3n >"$T/bad.events"
if check_leases "$T/bad.events" >"$T/bad.check"; then
	cat "$T/bad.check"
	fail "negative control: an overlapping holder was not caught"
fi
grep -m1 OVERLAP "$T/bad.check"
log "negative control: the overlapping holder is caught"

for i in "$L" "$F"; do
	taints=$(status "$i" clock_taints)
	state=$(status "$i" clock_state)
	kinds=$(rcli "$i" TEEMS.STATUS | tr -d '\r' | sed -n 's/^clock_taints_\([a-z-]*\):\([1-9][0-9]*\)$/\1=\2/p' | tr '\n' ' ')
	log "r$i: clock_taints=$taints clock_state=$state last=$(status "$i" clock_last_taint) kinds: ${kinds:-none} lease_reads=$(status "$i" lease_reads)"
	[ -n "$taints" ] && [ "$taints" -gt 0 ] || fail "r$i saw no clock taint under libfaketime"
	[ "$state" = tainted ] || fail "r$i clock_state is $state"
done
log "PASS"
