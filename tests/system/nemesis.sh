#!/usr/bin/env bash
# Real-process fault tests (DESIGN.md sections 2 and 11; docs/TESTING.md, "Real-process tests").
#
#	nemesis.sh SCENARIO BUILD_DIR
#
# A local cluster made by `teems cluster up` (TLS everywhere, sync = rr), teems-loadgen recording
# a history of VGET/SET/VSET/DEL from 4 connections, one fault scenario during the load, then:
# the load stops, every key is read through every replica (so a lost acknowledged write is a
# linearizability violation), and `teems-check` must accept the history.
#
# Scenarios (each under a minute):
#   control      no fault. Then the negative control: the same history with one final read
#                rewritten to an older value and version (an acknowledged write "lost") must
#                make teems-check report a violation.
#   kill         kill -9 of the leader, restart; kill -9 of a follower, restart (3 replicas)
#   kill_5       5 replicas: kill -9 of the leader, restart; then of two followers at once
#   rollback     a follower, then the leader, restarted on a copy of its data directory taken
#                seconds earlier (SIGSTOP, copy, SIGCONT: a consistent earlier version)
#   rollback_empty
#                a follower restarted on the state `cluster up` gave it before its first start,
#                while the other follower lags and the leader is paused (fails today: see
#                docs/TESTING.md, "Real-process tests"; disabled in ctest)
#   fork         a second teemsd of one replica id started from an earlier copy of its data
#                directory while the original runs (see "The fork" below)
#   pause        SIGSTOP of the leader for 3 s (beyond the election timeout), SIGCONT; then of
#                a follower
#   total_crash  kill -9 of every replica, restart of all (recovery = auto: the epoch restart
#                brings the cluster back), load continues
#   total_crash_operator
#                the cluster runs with recovery = operator; after kill -9 of every replica and
#                a restart of all, no replica may become leader and no write may succeed for
#                15 s: nobody authorizes the restart (`teems recover --authorize`), so waiting
#                is the only safe behaviour
#
# The fork. Every replica listens for peers on its own address in `peers` and sends only on
# connections it dialed (src/server/teemsd_peer.c). The fork gets the same replica_id, cluster
# id, platform and peers list, except that its own entry (its peer listen address) and its
# client address are new ports, since the original still holds its own. So the fork dials every
# other replica as that replica id (exactly a fork from their point of view: its frames, votes
# and REGISTER request arrive as from that id), but what the others send to that id goes to the
# original's address. The fork can: ask to register (and so make the original halt when the
# registration commits, DESIGN.md section 4), vote and campaign with a stale state, take client
# connections (the load client includes its address) and forward them. It cannot: hear the
# answers to anything it sends, so it never completes a registration or an election. Routing
# the other replicas' frames to either process would need a proxy in front of the peer port.
#
# Exit: 0 pass, 1 fail, 77 skipped (redis-cli or the binaries missing). On failure the history
# and the logs are copied to BUILD_DIR/nemesis-failures/SCENARIO/. NEMESIS_KEEP=1 keeps the
# temporary directory.
set -u
SCENARIO=${1:?usage: nemesis.sh SCENARIO BUILD_DIR}
BUILD=$(cd "${2:?usage: nemesis.sh SCENARIO BUILD_DIR}" && pwd) || exit 2
TEEMS=$BUILD/teems
TEEMSD=$BUILD/teemsd
LOADGEN=$BUILD/teems-loadgen
CHECK=$BUILD/teems-check
for b in "$TEEMS" "$TEEMSD" "$LOADGEN" "$CHECK"; do
	[ -x "$b" ] || { echo "$b not built: skipped"; exit 77; }
done
command -v redis-cli >/dev/null || { echo "redis-cli missing: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"

T=$(mktemp -d /tmp/teems-nemesis-XXXXXX)
D="$T/cluster"
T0=$(date +%s%N)
declare -a CPORT PPORT PID
declare -a EXTRA # pids of other processes this script started (fork, load client)
N=0
LOAD=""
FAILED=0

log() { printf '[%6.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }

cleanup() {
	# Whatever happened, nothing this test started survives it.
	for p in "${PID[@]}" "${EXTRA[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null
	done
	for f in "$D"/r*/teemsd.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	if [ "$FAILED" -ne 0 ]; then
		keep="$BUILD/nemesis-failures/$SCENARIO"
		rm -rf "$keep"
		mkdir -p "$keep"
		cp "$T"/*.hist "$T"/*.log "$D"/r*/teemsd.log "$keep"/ 2>/dev/null
		for i in $(seq 0 $((N - 1))); do
			cp "$D/r$i/teemsd.log" "$keep/r$i.teemsd.log" 2>/dev/null
		done
		echo "history and logs kept in $keep"
	fi
	[ -n "${NEMESIS_KEEP:-}" ] && { echo "kept $T"; return; }
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	FAILED=1
	log "FAIL: $*"
	for i in $(seq 0 $((N - 1))); do
		echo "== r$i (pid ${PID[$i]:-}) $(status "$i" role 2>/dev/null) $(status "$i" lifecycle 2>/dev/null)"
		tail -n 15 "$D/r$i/teemsd.log"
	done
	[ -f "$T/fork.log" ] && { echo "== fork"; tail -n 15 "$T/fork.log"; }
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
alive() { # pid
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

cluster_up() { # replicas
	N=$1
	"$TEEMS" --dir "$D" cluster up --replicas "$N" >"$T/up.log" 2>&1 || {
		cat "$T/up.log"
		fail "cluster up"
	}
	while read -r id pid client peer; do
		PID[$id]=$pid
		CPORT[$id]=${client##*:}
		PPORT[$id]=${peer##*:}
	done <"$D/cluster.conf"
	log "cluster of $N replicas up: pids ${PID[*]}"
}

# start_replica id [teemsd flags...]: as `teems cluster up` starts it (cwd r<i>, log appended).
start_replica() {
	local id=$1
	shift
	(cd "$D/r$id" && exec "$TEEMSD" --config teemsd.conf "$@" >>teemsd.log 2>&1 </dev/null) &
	PID[$id]=$!
	echo "${PID[$id]}" >"$D/r$id/teemsd.pid"
	log "r$id started (pid ${PID[$id]})"
}

kill9() { # id
	local p=${PID[$1]}
	kill -9 "$p" 2>/dev/null
	for _ in $(seq 100); do alive "$p" || break; sleep 0.05; done
	wait "$p" 2>/dev/null
	log "r$1 killed (kill -9 $p)"
}

leader_of() { # prints the id of a replica reporting role leader among the live ones
	for i in $(seq 0 $((N - 1))); do
		alive "${PID[$i]}" || continue
		[ "$(status "$i" role)" = leader ] && { echo "$i"; return 0; }
	done
	return 1
}

# wait_leader SECONDS [EXCLUDED_ID]: prints the leader's id once one (other than EXCLUDED)
# reports role leader.
wait_leader() {
	local not=${2:--1} t=$(($(date +%s) + $1)) l
	while [ "$(date +%s)" -lt "$t" ]; do
		l=$(leader_of) && [ "$l" != "$not" ] && { echo "$l"; return 0; }
		sleep 0.2
	done
	return 1
}

follower_of() { # leader [avoid]: a random other live replica, not avoid if there is a choice
	local c=() i
	for i in $(seq 0 $((N - 1))); do
		[ "$i" != "$1" ] && [ "$i" != "${2:--1}" ] && alive "${PID[$i]}" && c+=("$i")
	done
	[ ${#c[@]} -eq 0 ] && [ -n "${2:-}" ] && alive "${PID[$2]}" && c=("$2")
	echo "${c[RANDOM % ${#c[@]}]}"
}

# wait_fresh ID SECONDS: the replica rejoined (registered, fenced, recovered: lifecycle fresh).
wait_fresh() {
	local t=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$t" ]; do
		[ "$(status "$1" lifecycle)" = fresh ] && { log "r$1 is fresh again"; return 0; }
		alive "${PID[$1]}" || fail "r$1 exited while rejoining"
		sleep 0.2
	done
	fail "r$1 not fresh within $2 s (lifecycle $(status "$1" lifecycle))"
}

copy_data() { # id dest: a consistent copy (the replica stopped while copying)
	kill -STOP "${PID[$1]}"
	cp -a "$D/r$1/data" "$2"
	kill -CONT "${PID[$1]}"
	log "copied r$1's data directory ($(du -sk "$2" | cut -f1) KiB)"
}

addrs() { # [EXTRA_PORT...]: every replica's client address (and extra ports), comma-separated
	local a="" i
	for i in $(seq 0 $((N - 1))); do a="$a${a:+,}127.0.0.1:${CPORT[$i]}"; done
	for i in "$@"; do a="$a,127.0.0.1:$i"; done
	echo "$a"
}

# load_start NAME [loadgen flags...]: the load client in the background; its history goes to
# $T/NAME.hist.
load_start() {
	local name=$1
	shift
	"$LOADGEN" --addr "$(addrs)" --ca "$D/ca.pem" --history "$T/$name.hist" --clients 4 \
		--duration 100 --think-us 500 --reconnect-every 300 --seed "${NEMESIS_SEED:-$$}" "$@" >"$T/$name.log" 2>&1 &
	LOAD=$!
	EXTRA+=("$LOAD")
	LOAD_NAME=$name
	log "load started ($name)"
}

# load_stop: stop the load, wait for its final reads and its history; fails unless it exits 0.
load_stop() {
	local rc
	kill -TERM "$LOAD"
	wait "$LOAD"
	rc=$?
	cat "$T/$LOAD_NAME.log"
	[ $rc -eq 0 ] || fail "the load client exited $rc"
	log "load stopped"
}

check_history() { # name
	local rc
	"$CHECK" "$T/$1.hist" >"$T/$1.check" 2>&1
	rc=$?
	head -n 40 "$T/$1.check"
	[ $rc -eq 0 ] || fail "teems-check $1.hist exited $rc"
	log "history $1 is linearizable"
}

free_port() { # a port nothing listens on (checked by connecting), below the ephemeral range
	local p   # (32768+), so no outgoing connection can hold it when the fork binds it
	for _ in $(seq 50); do
		p=$((10000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	fail "no free port"
}

# ---- scenarios ----

sc_control() {
	cluster_up 3
	load_start h
	sleep 8
	load_stop
	check_history h
	# Negative control: the last final read of some key rewritten to an earlier ok read's
	# (value, version), as if the acknowledged writes in between had been lost. The final
	# reads through the other replicas came before it and saw the newer version, so no
	# linearization exists, and the checker must say so.
	awk '
		NR == FNR {
			if ($5 == "ok" && $6 == "GET" && $9 == "value") {
				if ($1 < 1000000 && !($7 in old)) { old[$7] = $10 " " $11; oldv[$7] = $11 }
				if ($1 >= 1000000) { last[$7] = FNR; lastv[$7] = $11 }
			}
			next
		}
		FNR == 1 {
			for (k in last) if ((k in oldv) && oldv[k] + 0 < lastv[k] + 0) { key = k; break }
			if (key == "") { print "no key to corrupt" > "/dev/stderr"; exit 3 }
			split(old[key], o, " ")
		}
		FNR == last[key] { $10 = o[1]; $11 = o[2]; print "# corrupted: " $0 > "/dev/stderr" }
		{ print }
	' "$T/h.hist" "$T/h.hist" >"$T/corrupt.hist" || fail "could not build the corrupted history"
	diff "$T/h.hist" "$T/corrupt.hist" | head -n 4
	"$CHECK" "$T/corrupt.hist" >"$T/corrupt.check" 2>&1
	rc=$?
	head -n 12 "$T/corrupt.check"
	if [ $rc -ne 1 ] || ! grep -q '^NOT linearizable' "$T/corrupt.check"; then
		fail "negative control: teems-check exited $rc on a history with a lost write"
	fi
	log "negative control: the lost write is caught"
}

sc_kill() { # replicas
	local l f f2 l2
	cluster_up "${1:-3}"
	load_start h
	sleep 3
	l=$(wait_leader 5) || fail "no leader"
	kill9 "$l"
	l2=$(wait_leader 10 "$l") || fail "no new leader within 10 s of killing leader r$l"
	log "new leader r$l2"
	sleep 2
	start_replica "$l"
	wait_fresh "$l" 25
	sleep 2
	l2=$l
	l=$(wait_leader 5) || fail "no leader"
	f=$(follower_of "$l" "$l2")
	if [ "$N" -eq 5 ]; then
		# F = 2: two followers at once
		f2=$(for i in $(seq 0 4); do [ "$i" != "$l" ] && [ "$i" != "$f" ] && echo "$i"; done | head -n 1)
		kill9 "$f"
		kill9 "$f2"
		sleep 3
		start_replica "$f"
		start_replica "$f2"
		wait_fresh "$f" 25
		wait_fresh "$f2" 25
	else
		kill9 "$f"
		sleep 3
		start_replica "$f"
		wait_fresh "$f" 25
	fi
	sleep 2
	load_stop
	check_history h
}

rollback_one() { # id
	local id=$1
	copy_data "$id" "$T/r$id-old"
	sleep 4 # writes continue past the copy
	kill9 "$id"
	rm -rf "$D/r$id/data"
	mv "$T/r$id-old" "$D/r$id/data"
	log "r$id's data directory rolled back"
	start_replica "$id"
	wait_fresh "$id" 25
}

sc_rollback() {
	local l f
	cluster_up 3
	load_start h
	sleep 2
	l=$(wait_leader 5) || fail "no leader"
	f=$(follower_of "$l")
	rollback_one "$f"
	sleep 2
	l=$(wait_leader 10) || fail "no leader"
	rollback_one "$l"
	wait_leader 10 >/dev/null || fail "no leader after the rollbacks"
	sleep 2
	load_stop
	check_history h
}

# rollback_empty: the oldest authentic state of a replica's data directory is the one `teems
# cluster up` made, before its first start (DESIGN.md section 2: "any version it ever synced,
# including none"). Follower B is paused while writes commit on the leader L and follower A;
# then L is paused, A is killed, restarted on that first state, and B resumed: A and B are the
# only replicas that answer, and neither holds the writes made during B's pause. They must not
# form a quorum that forgets them (A is a restarted replica; it must be suspicious).
sc_rollback_empty() {
	local l a b lc
	cluster_up 3
	# What `cluster up` wrote before the first start: the sealed service-CA key alone.
	for i in 0 1 2; do
		mkdir -p "$T/initial/r$i"
		cp -a "$D/r$i/data/service-ca.sealed" "$T/initial/r$i/"
	done
	load_start h
	sleep 2
	l=$(wait_leader 5) || fail "no leader"
	a=$(follower_of "$l")
	b=$(follower_of "$l" "$a")
	kill -STOP "${PID[$b]}"
	log "r$b paused; writes go on through r$l and r$a"
	sleep 3
	kill -STOP "${PID[$l]}"
	log "leader r$l paused"
	kill9 "$a"
	rm -rf "$D/r$a/data"
	cp -a "$T/initial/r$a" "$D/r$a/data"
	log "r$a's data directory rolled back to its first state"
	start_replica "$a"
	kill -CONT "${PID[$b]}"
	log "r$b resumed"
	sleep 6
	lc=$(status "$a" lifecycle)
	log "r$a: role $(status "$a" role), lifecycle $lc; r$b: role $(status "$b" role)"
	kill -CONT "${PID[$l]}"
	log "r$l resumed"
	wait_fresh "$a" 30
	wait_leader 10 >/dev/null || fail "no leader"
	sleep 2
	load_stop
	# Whether B drains the frames L sent it during its pause before it promises to a new
	# leader is up to the scheduler, so the loss shows in most runs, not all; a replica
	# that is fresh 6 s after a restart on a rolled-back state, without registering and
	# fencing (T_fence is 9 s here), shows the cause in every run.
	[ "$lc" = fresh ] && grep -q 'first boot' "$D/r$a/teemsd.log" &&
		log "r$a was fresh 6 s after its restart on its first state (first boot: no register, fence or recovery)"
	check_history h
	[ "$lc" = fresh ] && fail "r$a, restarted on a rolled-back state, was fresh 6 s later"
	return 0
}

# fork_one ID: a second process of replica ID from a copy of its data taken 3 s earlier, while
# the original runs; after 8 s the fork is killed and the original, if it halted, restarted.
fork_one() {
	local id=$1 fport fpeer peers fpid i
	fport=$2
	fpeer=$(free_port)
	copy_data "$id" "$T/fork-data"
	sleep 3
	peers=""
	for i in $(seq 0 $((N - 1))); do
		if [ "$i" = "$id" ]; then
			peers="$peers${peers:+,}$i@127.0.0.1:$fpeer"
		else
			peers="$peers${peers:+,}$i@127.0.0.1:${PPORT[$i]}"
		fi
	done
	(cd "$T" && exec "$TEEMSD" --config "$D/r$id/teemsd.conf" --data_dir "$T/fork-data" \
		--service_ca_sealed "$T/fork-data/service-ca.sealed" --peers "$peers" \
		--listen "127.0.0.1:$fport" >>"$T/fork.log" 2>&1 </dev/null) &
	fpid=$!
	EXTRA+=("$fpid")
	log "fork of r$id started (pid $fpid, clients on $fport, peers on $fpeer)"
	sleep 8
	if alive "$fpid"; then
		log "fork of r$id: still running; killed"
		kill -9 "$fpid"
		wait "$fpid" 2>/dev/null
	else
		wait "$fpid"
		log "fork of r$id: exited with status $?"
	fi
	grep -E 'halt|register|suspicious' "$T/fork.log" | tail -n 3 | sed 's/^/  fork: /'
	if alive "${PID[$id]}"; then
		log "original r$id: still running, lifecycle $(status "$id" lifecycle)"
	else
		log "original r$id: exited (halted: a newer registration of r$id exists)"
		tail -n 2 "$D/r$id/teemsd.log" | sed 's/^/  r'"$id"': /'
		start_replica "$id"
	fi
	wait_fresh "$id" 25
	rm -rf "$T/fork-data"
	mv "$T/fork.log" "$T/fork-r$id.log"
}

sc_fork() {
	local l f fport1 fport2
	cluster_up 3
	# The load client also dials the forks' client ports (refused while no fork runs).
	fport1=$(free_port)
	fport2=$(free_port)
	"$LOADGEN" --addr "$(addrs "$fport1" "$fport2")" --final-addr "$(addrs)" --ca "$D/ca.pem" --history "$T/h.hist" \
		--clients 4 --duration 100 --think-us 500 --reconnect-every 300 --seed "${NEMESIS_SEED:-$$}" \
		>"$T/h.log" 2>&1 &
	LOAD=$!
	EXTRA+=("$LOAD")
	LOAD_NAME=h
	log "load started (also through the fork ports $fport1 $fport2)"
	sleep 2
	l=$(wait_leader 5) || fail "no leader"
	f=$(follower_of "$l")
	fork_one "$f" "$fport1"
	l=$(wait_leader 10) || fail "no leader"
	fork_one "$l" "$fport2"
	wait_leader 10 >/dev/null || fail "no leader after the forks"
	sleep 2
	load_stop
	check_history h
}

sc_pause() {
	local l l2 f
	cluster_up 3
	load_start h
	sleep 3
	l=$(wait_leader 5) || fail "no leader"
	kill -STOP "${PID[$l]}"
	log "leader r$l paused (SIGSTOP)"
	l2=$(wait_leader 10 "$l") || fail "no new leader while r$l is paused"
	log "new leader r$l2"
	sleep 3
	kill -CONT "${PID[$l]}"
	log "r$l resumed (SIGCONT)"
	sleep 3
	log "r$l is now $(status "$l" role), lifecycle $(status "$l" lifecycle)"
	l2=$l
	l=$(wait_leader 5) || fail "no leader"
	f=$(follower_of "$l" "$l2")
	kill -STOP "${PID[$f]}"
	log "follower r$f paused (SIGSTOP)"
	sleep 3
	kill -CONT "${PID[$f]}"
	log "r$f resumed (SIGCONT)"
	sleep 3
	wait_leader 5 >/dev/null || fail "no leader"
	load_stop
	check_history h
}

sc_total_crash() {
	local l t
	cluster_up 3
	load_start h
	sleep 4
	for i in 0 1 2; do kill9 "$i"; done
	sleep 1
	for i in 0 1 2; do start_replica "$i"; done
	t=$(date +%s)
	l=$(wait_leader 40) || fail "no leader within 40 s of restarting every replica"
	log "leader r$l after $(($(date +%s) - t)) s (epoch restart)"
	for i in 0 1 2; do wait_fresh "$i" 20; done
	sleep 4
	load_stop
	check_history h
}

sc_total_crash_operator() {
	local l t key
	cluster_up 3
	# Bootstrap again with recovery = operator from the first start: the daemon reads the
	# setting at startup, and only a fresh data directory (no WAL) is not a restart.
	for i in 0 1 2; do kill9 "$i"; done
	for i in 0 1 2; do
		find "$D/r$i/data" -mindepth 1 -maxdepth 1 ! -name service-ca.sealed \
			-exec rm -rf {} +
	done
	# The daemon only checks that operator_key is set today; a real key all the same.
	if ! openssl genpkey -algorithm ed25519 -out "$T/operator.key" 2>/dev/null ||
		! openssl pkey -in "$T/operator.key" -pubout -out "$T/operator.pub" 2>/dev/null; then
		fail "openssl could not make an operator key"
	fi
	for i in 0 1 2; do
		start_replica "$i" --recovery operator --operator_key "$T/operator.pub"
	done
	l=$(wait_leader 20) || fail "no leader at the first start with recovery = operator"
	log "leader r$l (fresh cluster, recovery = operator)"
	load_start h
	sleep 4
	load_stop
	check_history h

	for i in 0 1 2; do kill9 "$i"; done
	sleep 1
	for i in 0 1 2; do
		start_replica "$i" --recovery operator --operator_key "$T/operator.pub"
	done
	# Nobody authorizes the restart: for 15 s (longer than the automatic restart's wait,
	# 10 s with the default T_op) nobody may lead and nothing may be written.
	load_start after --final-reads 0 --prefix a
	t=$(($(date +%s) + 15))
	while [ "$(date +%s)" -lt "$t" ]; do
		l=$(leader_of) && fail "r$l became leader after a total crash with recovery = operator"
		for i in 0 1 2; do
			key="probe$i"
			[ "$(rcli "$i" SET "$key" x)" = OK ] &&
				fail "r$i accepted a write after a total crash with recovery = operator"
		done
		sleep 0.5
	done
	for i in 0 1 2; do
		alive "${PID[$i]}" || fail "r$i exited while waiting for the operator"
		log "r$i: role $(status "$i" role), lifecycle $(status "$i" lifecycle)"
	done
	load_stop
	check_history after
	# Every write of the second load failed or is unknown; none may have succeeded.
	n=$(awk '$5 == "ok" && ($6 == "SET" || $6 == "CAS" || $6 == "DEL")' "$T/after.hist" | wc -l)
	[ "$n" -eq 0 ] || fail "$n writes succeeded without an operator's authorization"
	log "no leader and no write for 15 s after the total crash"
}

case "$SCENARIO" in
control) sc_control ;;
kill) sc_kill 3 ;;
kill_5) sc_kill 5 ;;
rollback) sc_rollback ;;
rollback_empty) sc_rollback_empty ;;
fork) sc_fork ;;
pause) sc_pause ;;
total_crash) sc_total_crash ;;
total_crash_operator) sc_total_crash_operator ;;
*)
	echo "unknown scenario $SCENARIO"
	exit 2
	;;
esac
log "PASS: $SCENARIO"
