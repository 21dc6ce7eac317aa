#!/bin/sh
# `teems obj` against a real local cluster (`teems cluster up`), for the dir store and the s3
# store (s3rver on loopback behind s3rver_sigv4.js): round trips of 0 B, 1 B, 1 MiB and
# 256 MiB (peak RSS of the 256 MiB put and get printed and bounded); a blob replaced, cut,
# deleted, rolled back or swapped in the store is reported as tampered / missing / stale and
# never written out; concurrent puts to one id lose no update (every success is its own
# version; losers are told "conflict" and leave no blob); orphan gc honours its grace period.
# Once (dir store): policies as the client checks them, and a read through a follower that was
# restarted on a rolled-back copy of its data directory returns the newest version.
#
# usage: obj_cluster.sh TEEMS TEEMSD BUILD_DIR SOURCE_DIR
# Exit 77 (skipped) when TEEMSD is not built, outside CI. Without node/npm the s3 half is
# skipped (a failure under CI).
set -u
TEEMS=$1
TEEMSD=$2
BUILD=$3
SRC=$4
if [ ! -x "$TEEMSD" ]; then
	echo "teemsd not built"
	[ -z "${CI:-}" ] || exit 1
	exit 77
fi
export TEEMS_TEEMSD="$TEEMSD"
LIB_SH="$SRC/tests/system/lib.sh"
. "$LIB_SH"

cluster_tmp obj
S3_PID=""
cleanup() {
	s3rver_stop
	cluster_cleanup
}
trap cleanup EXIT INT TERM
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
START=$(date +%s)
# Peak RSS through GNU time when installed; without it the transfers still run, unmeasured.
TIME="/usr/bin/time -f %M -o"
[ -x /usr/bin/time ] || TIME="env RSS_FILE="

ok() {
	echo "ok: $*"
}

# obj ARGS...: teems obj against the current store; stdout in $T/out, stderr in $T/err;
# returns teems' exit status.
obj() {
	_sub=$1
	shift
	# shellcheck disable=SC2086
	"$TEEMS" obj "$_sub" "$@" --dir "$D" $STORE_ARGS >"$T/out" 2>"$T/err"
}
# expect_ok DESCRIPTION ARGS...
expect_ok() {
	_what=$1
	shift
	if obj "$@"; then
		ok "$STORE: $_what"
	else
		fail "$STORE: $_what: exit $?: $(cat "$T/err")"
	fi
}
# expect_fail DESCRIPTION EXIT WORDS ARGS...: exits EXIT with WORDS in the message.
expect_fail() {
	_what=$1
	_code=$2
	_words=$3
	shift 3
	obj "$@"
	_rc=$?
	if [ $_rc -eq "$_code" ] && grep -q "$_words" "$T/err"; then
		ok "$STORE: $_what: $(head -c 160 "$T/err")"
	else
		fail "$STORE: $_what: exit $_rc (want $_code, \"$_words\"): $(cat "$T/err")"
	fi
}
store_name() {
	obj stat "$1" && sed -n 's/^store_name: //p' "$T/out"
}
version_of() {
	obj stat "$1" && sed -n 's/^version: //p' "$T/out"
}

# The store, seen as the adversary who owns it sees it.
blob_read() { # NAME FILE
	if [ "$STORE" = dir ]; then cp "$D/store/$1" "$2"; else s3_curl GET "$S3_BASE/$1" -o "$2"; fi
}
blob_write() { # NAME FILE
	if [ "$STORE" = dir ]; then
		cp "$2" "$D/store/$1"
	else
		s3_curl PUT "$S3_BASE/$1" -T "$2" >/dev/null
	fi
}
blob_delete() { # NAME
	if [ "$STORE" = dir ]; then rm -f "$D/store/$1"; else s3_curl DELETE "$S3_BASE/$1"; fi
}
blob_exists() { # NAME
	if [ "$STORE" = dir ]; then
		[ -f "$D/store/$1" ]
	else
		s3_curl GET "$S3_BASE/$1" -o /dev/null 2>/dev/null
	fi
}

# ---- the cluster and the inputs ---------------------------------------------------------
if ! "$TEEMS" --dir "$D" cluster up >"$T/out" 2>&1; then
	cat "$T/out"
	for l in "$D"/r*/teemsd.log; do tail -n 20 "$l"; done
	exit 1
fi
ok "cluster up"
: >"$T/f0"
printf 'x' >"$T/f1"
head -c 1048576 /dev/urandom >"$T/f1m"
head -c 268435456 /dev/urandom >"$T/f256m"
for i in 1 2 3 4 5 6; do head -c 16777216 /dev/urandom >"$T/race$i"; done

run_store() {
	STORE=$1
	echo "== store $STORE"

	# ---- round trips -------------------------------------------------------------
	for f in f0 f1 f1m; do
		expect_ok "put $f" put "$T/$f" "$STORE/rt/$f"
		expect_ok "get $f" get "$STORE/rt/$f" "$T/got"
		cmp -s "$T/$f" "$T/got" || fail "$STORE: $f came back different"
	done
	obj get $STORE/rt/f1m && cmp -s "$T/f1m" "$T/out" && ok "$STORE: get 1 MiB to stdout" ||
		fail "$STORE: get 1 MiB to stdout"
	# shellcheck disable=SC2086
	cat "$T/f1m" | "$TEEMS" obj put - $STORE/rt/stdin --dir "$D" $STORE_ARGS >/dev/null 2>"$T/err" &&
		obj get $STORE/rt/stdin "$T/got" && cmp -s "$T/f1m" "$T/got" &&
		ok "$STORE: put from stdin (spooled)" || fail "$STORE: put from stdin: $(cat "$T/err")"
	# shellcheck disable=SC2086
	echo 0 >"$T/rss"
	if $TIME"$T/rss" "$TEEMS" obj put "$T/f256m" $STORE/rt/f256m --dir "$D" \
		$STORE_ARGS >"$T/out" 2>"$T/err"; then
		rss=$(tail -n 1 "$T/rss")
		echo "peak RSS of teems obj put, 256 MiB, $STORE store: $rss KiB (0: not measured)"
		[ "$rss" -lt 65536 ] || fail "$STORE: put of 256 MiB used $rss KiB (bound 64 MiB)"
	else
		fail "$STORE: put 256 MiB: $(cat "$T/err")"
	fi
	# shellcheck disable=SC2086
	echo 0 >"$T/rss"
	if $TIME"$T/rss" "$TEEMS" obj get $STORE/rt/f256m "$T/got" --dir "$D" \
		$STORE_ARGS >"$T/out" 2>"$T/err"; then
		rss=$(tail -n 1 "$T/rss")
		echo "peak RSS of teems obj get, 256 MiB, $STORE store: $rss KiB (0: not measured)"
		[ "$rss" -lt 65536 ] || fail "$STORE: get of 256 MiB used $rss KiB (bound 64 MiB)"
		cmp -s "$T/f256m" "$T/got" && ok "$STORE: 256 MiB round trip" ||
			fail "$STORE: 256 MiB came back different"
	else
		fail "$STORE: get 256 MiB: $(cat "$T/err")"
	fi
	rm -f "$T/got"
	expect_ok "rm 256 MiB" rm $STORE/rt/f256m
	expect_fail "get after rm" 1 "not found" get $STORE/rt/f256m "$T/got"

	# ---- the store attacks ------------------------------------------------------
	expect_ok "put victim (16 chunks)" put "$T/f1m" $STORE/victim --chunk-size 65536
	name=$(store_name $STORE/victim)
	blob_read "$name" "$T/orig"
	# a changed byte in the middle of a chunk
	cp "$T/orig" "$T/bad"
	printf '\001' | dd of="$T/bad" bs=1 seek=300000 conv=notrunc 2>/dev/null
	cmp -s "$T/orig" "$T/bad" && printf '\002' | dd of="$T/bad" bs=1 seek=300000 conv=notrunc 2>/dev/null
	blob_write "$name" "$T/bad"
	expect_fail "replaced byte" 1 "blob tampered" get $STORE/victim "$T/got"
	[ -e "$T/got" ] && fail "$STORE: a tampered get left $T/got behind"
	expect_fail "replaced byte, to stdout" 1 "blob tampered" get $STORE/victim
	[ -s "$T/out" ] && fail "$STORE: a tampered get wrote $(wc -c <"$T/out") bytes to stdout"
	# cut at a chunk boundary and inside a chunk
	for len in 500000 $((96 + 8 * (65536 + 16))); do
		head -c "$len" "$T/orig" >"$T/bad"
		blob_write "$name" "$T/bad"
		expect_fail "truncated to $len" 1 "blob tampered" get $STORE/victim "$T/got"
	done
	[ -e "$T/got" ] && fail "$STORE: a truncated get left $T/got behind"
	# another object's blob under this name
	blob_read "$(store_name $STORE/rt/f1m)" "$T/other"
	blob_write "$name" "$T/other"
	expect_fail "another object's blob" 1 "blob tampered" get $STORE/victim "$T/got"
	blob_delete "$name"
	expect_fail "deleted blob" 1 "blob missing" get $STORE/victim "$T/got"
	blob_write "$name" "$T/orig"
	expect_ok "restored blob" get $STORE/victim "$T/got"
	cmp -s "$T/f1m" "$T/got" || fail "$STORE: restored blob came back different"
	# rollback: the old version's bytes under the new version's name
	expect_ok "put victim again" put "$T/f1" $STORE/victim
	blob_exists "$name" && fail "$STORE: the superseded blob $name was not deleted"
	name2=$(store_name $STORE/victim)
	blob_write "$name2" "$T/orig"
	rm -f "$T/got"
	expect_fail "rolled-back blob" 1 "blob stale" get $STORE/victim "$T/got"
	[ -e "$T/got" ] && fail "$STORE: a stale get left $T/got behind"

	# ---- concurrent writers ------------------------------------------------------
	expect_ok "put race base" put "$T/f1" $STORE/race
	v0=$(version_of $STORE/race)
	pids=""
	for i in 1 2 3 4 5 6; do
		# shellcheck disable=SC2086
		"$TEEMS" obj put "$T/race$i" $STORE/race --dir "$D" $STORE_ARGS >"$T/race$i.out" \
			2>"$T/race$i.err" &
		pids="$pids $!"
	done
	wins=0 conflicts=0 i=0
	for p in $pids; do
		i=$((i + 1))
		wait "$p"
		rc=$?
		if [ $rc -eq 0 ]; then
			wins=$((wins + 1))
		elif [ $rc -eq 1 ] && grep -q "put $STORE/race: conflict" "$T/race$i.err"; then
			conflicts=$((conflicts + 1))
		else
			fail "$STORE: racing put $i: exit $rc: $(cat "$T/race$i.err")"
		fi
	done
	echo "$STORE: 6 concurrent puts: $wins won, $conflicts lost with \"conflict\""
	v1=$(version_of $STORE/race)
	[ $wins -ge 1 ] || fail "$STORE: no racing put won"
	[ $conflicts -ge 1 ] || fail "$STORE: no racing put lost (the race did not happen?)"
	[ "$v1" -eq $((v0 + wins)) ] && ok "$STORE: version $v0 -> $v1 = one per winner" ||
		fail "$STORE: version $v0 -> $v1 after $wins wins: a lost update"
	obj get $STORE/race "$T/got"
	match=0
	for i in 1 2 3 4 5 6; do cmp -s "$T/got" "$T/race$i" && match=1; done
	[ $match -eq 1 ] || fail "$STORE: the raced object is none of the writers' bytes"
	pids=""
	for i in 1 2 3 4; do
		# shellcheck disable=SC2086
		"$TEEMS" obj put "$T/race$i" $STORE/race --retry --dir "$D" $STORE_ARGS >/dev/null \
			2>"$T/race$i.err" &
		pids="$pids $!"
	done
	i=0
	for p in $pids; do
		i=$((i + 1))
		wait "$p" || fail "$STORE: put --retry $i: $(cat "$T/race$i.err")"
	done
	v2=$(version_of $STORE/race)
	[ "$v2" -eq $((v1 + 4)) ] && ok "$STORE: 4 concurrent puts --retry all won" ||
		fail "$STORE: 4 puts --retry took the version from $v1 to $v2"
	# losers deleted their blobs: nothing for gc
	expect_ok "gc after the race" gc --grace 0
	grep -q "^gc: 0 orphan" "$T/out" || fail "$STORE: the race left orphans: $(cat "$T/out")"

	# ---- orphans -----------------------------------------------------------------
	# An upload whose commit never happened (a crash between the two) leaves a blob that
	# no record names: make one.
	orphan=0123456789abcdef0123456789abcdef
	blob_write $orphan "$T/orig"
	expect_ok "gc with the default grace" gc
	blob_exists $orphan && ok "$STORE: a young orphan survives gc" ||
		fail "$STORE: gc removed a blob younger than its grace period"
	expect_ok "gc --grace 0" gc --grace 0
	grep -q "^removed $orphan" "$T/out" || fail "$STORE: gc did not report the orphan"
	blob_exists $orphan && fail "$STORE: gc --grace 0 left the orphan"
	expect_ok "objects intact after gc" get $STORE/rt/f1m "$T/got"
	cmp -s "$T/f1m" "$T/got" || fail "$STORE: rt/f1m damaged by gc"
	# A put killed in the middle of its upload: the object keeps its old version, and gc
	# removes whatever the upload left (the dir store's temporary file).
	expect_ok "put crash base" put "$T/f1m" $STORE/crash
	# shellcheck disable=SC2086
	"$TEEMS" obj put "$T/f256m" $STORE/crash --dir "$D" $STORE_ARGS >/dev/null 2>&1 &
	p=$!
	# Kill it in the middle of its upload, not after a fixed time (a 256 MiB put to the dir
	# store can finish within half a second): for dir, once its temporary file holds 32 MiB.
	if [ "$STORE" = dir ]; then
		i=0
		while [ $i -lt 500 ] && [ "$(find "$D/store" -name '.tmp-*' -size +32M | wc -l)" -eq 0 ]; do
			sleep 0.01
			i=$((i + 1))
		done
	else
		sleep 0.5
	fi
	kill -9 $p 2>/dev/null
	wait $p 2>/dev/null
	[ "$STORE" = dir ] && echo "dir: temporary files left by the killed put: $(ls -a "$D/store" | grep -c '^\.tmp-')"
	expect_ok "get after a killed put" get $STORE/crash "$T/got"
	cmp -s "$T/f1m" "$T/got" || fail "$STORE: a killed put broke the object"
	expect_ok "gc after a killed put" gc --grace 0
	[ "$STORE" = dir ] && [ "$(ls -a "$D/store" | grep -c '^\.tmp-')" -ne 0 ] &&
		fail "dir: gc left temporary files"
	expect_ok "get after gc" get $STORE/crash "$T/got"
	cmp -s "$T/f1m" "$T/got" || fail "$STORE: gc broke the object"
	expect_ok "rm crash" rm $STORE/crash
	expect_ok "ls" ls "$STORE/rt/"
	[ "$(sort "$T/out" | tr '\n' ' ')" = "$STORE/rt/f0 $STORE/rt/f1 $STORE/rt/f1m $STORE/rt/stdin " ] ||
		fail "$STORE: ls rt/ printed $(tr '\n' ' ' <"$T/out")"
}

STORE_ARGS=""
run_store dir

s3rver_find "$BUILD" "$SRC"
rc=$?
if [ $rc -eq 0 ] && s3rver_start "$T/s3"; then
	S3_BASE="$S3_ENDPOINT/teems-obj/t"
	STORE_ARGS="--store s3://teems-obj/t?endpoint=$S3_ENDPOINT"
	run_store s3

	# Incomplete multipart uploads (a killed put's): gc aborts those of our names under our
	# prefix that started more than a day and more than --grace ago. s3rver_sigv4.js dates an
	# upload by its key file and lists two per page, so four of ours take two pages.
	mp_start() {
		s3_curl POST "$S3_ENDPOINT/teems-obj/$1?uploads=" |
			sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p'
	}
	mp_dir() { find "$T/s3/data" -type d -name "$1" | head -n 1; }
	mp_age() { touch -d "$2 ago" "$(mp_dir "$1")/key"; }
	old1=$(mp_start t/gcold1)
	old2=$(mp_start t/gcold2)
	old3=$(mp_start t/gcold3)
	young=$(mp_start t/gcyoung)
	theirs=$(mp_start u/gcold)
	for id in "$old1" "$old2" "$old3" "$theirs"; do
		[ -n "$id" ] && [ -n "$(mp_dir "$id")" ] || fail "s3: upload not started: $id"
		mp_age "$id" "2 days"
	done
	mp_age "$young" "2 hours" # older than --grace 0, younger than a day
	expect_ok "gc --grace 3d" gc --grace 3d
	[ -n "$(mp_dir "$old1")" ] && [ -n "$(mp_dir "$old3")" ] &&
		ok "s3: uploads younger than the grace survive gc" ||
		fail "s3: gc --grace 3d aborted an upload started 2 days ago"
	expect_ok "gc --grace 0" gc --grace 0
	for id in "$old1" "$old2" "$old3"; do
		[ -z "$(mp_dir "$id")" ] || fail "s3: gc left the stale upload $id"
	done
	[ -n "$(mp_dir "$young")" ] || fail "s3: gc aborted an upload younger than a day"
	[ -n "$(mp_dir "$theirs")" ] || fail "s3: gc aborted an upload outside its prefix"
	grep -q "^gc: [3-9] orphan" "$T/out" && ok "s3: gc aborted the stale uploads: $(cat "$T/out")" ||
		fail "s3: gc did not count the aborted uploads: $(cat "$T/out")"
elif [ $rc -eq 77 ]; then
	echo "s3 store: skipped (no node/npm)"
else
	fail "s3rver did not start"
fi

# ---- an s3 store on a machine without libcurl (loaded on demand): a clear error -----------
# A private mount namespace puts /dev/null over the library for one command (root only).
CURL_SO=$(ldconfig -p 2>/dev/null | sed -n 's/^[[:space:]]*libcurl\.so\.4 .* => //p' | head -n 1)
if [ "$(id -u)" = 0 ] && [ -n "$CURL_SO" ] && unshare -m true 2>/dev/null; then
	unshare -m sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh \
		"$(readlink -f "$CURL_SO")" "$TEEMS" obj put "$T/f1" nocurl --dir "$D" \
		--store "s3://teems-obj/t?endpoint=http://127.0.0.1:9" >"$T/out" 2>"$T/err"
	rc=$?
	if [ $rc -eq 1 ] && grep -q "cannot load libcurl (install libcurl4)" "$T/err"; then
		ok "s3 without libcurl: $(cat "$T/err")"
	else
		fail "s3 without libcurl: exit $rc: $(cat "$T/err")"
	fi
else
	echo "s3 without libcurl: skipped (needs root, ldconfig and unshare)"
fi

# ---- policies (checked by the client until the service enforces them) -------------------
STORE=dir
STORE_ARGS=""
expect_ok "alice creates secret" put "$T/f1m" secret --user alice
expect_fail "bob may not read" 1 "access denied" get secret "$T/got" --user bob
expect_fail "anonymous may not read" 1 "access denied" get secret "$T/got"
expect_fail "bob may not write" 1 "access denied" put "$T/f1" secret --user bob
expect_fail "bob may not change the policy" 1 "access denied: only the owner" policy secret \
	--user bob --readers bob
expect_ok "alice lets bob read" policy secret --user alice --readers bob
expect_ok "bob reads" get secret "$T/got" --user bob
cmp -s "$T/f1m" "$T/got" || fail "bob read different bytes"
expect_fail "bob still may not write" 1 "access denied" put "$T/f1" secret --user bob
expect_ok "alice lets everyone write" policy secret --user alice --writers '*'
expect_ok "bob writes" put "$T/f1" secret --user bob
obj policy secret --user alice
grep -q "^owner: alice" "$T/out" || fail "a write by bob changed the owner: $(cat "$T/out")"
TEEMS_PASS=nope obj ls --user alice
[ $? -eq 1 ] && grep -q "access denied" "$T/err" && ok "a refused AUTH is access denied" ||
	fail "AUTH as an unknown user: $(cat "$T/err")"

# ---- policies enforced by the service (users with passwords) ------------------------------
# Runs when the service has users (ACL SETUSER) and redis-cli is there to create them.
P0=$(sed -n 's/^0 [0-9]* 127.0.0.1:\([0-9]*\) .*/\1/p' "$D/cluster.conf")
rcli() { redis-cli --no-auth-warning --tls --cacert "$D/ca.pem" -p "$P0" "$@" 2>&1; }
if command -v redis-cli >/dev/null 2>&1 &&
	[ "$(rcli ACL SETUSER alice on '>apw' '~*' '+@all')" = OK ] &&
	[ "$(rcli ACL SETUSER bob on '>bpw' '~*' '+@read' '+@write')" = OK ]; then
	asa() { TEEMS_PASS=apw obj "$@" --user alice; }
	asb() { TEEMS_PASS=bpw obj "$@" --user bob; }
	if asa put "$T/f1m" doc; then ok "alice (authenticated) creates doc"; else fail "alice put: $(cat "$T/err")"; fi
	[ "$(rcli --user alice --pass apw TEEMS.POLICY.GET obj:doc | head -n 1)" = alice ] &&
		ok "the service holds doc's policy, owner alice" ||
		fail "no service policy on obj:doc: $(rcli --user alice --pass apw TEEMS.POLICY.GET obj:doc)"
	asb get doc "$T/got"
	[ $? -eq 1 ] && grep -q "access denied: VGET: NOPERM" "$T/err" &&
		ok "the service refuses bob's get: $(cat "$T/err")" || fail "bob's get: $(cat "$T/err")"
	rcli --user bob --pass bpw VGET obj:doc | grep -q NOPERM &&
		ok "a raw VGET by bob is refused too" || fail "raw VGET obj:doc by bob was served"
	asb put "$T/f1" doc
	[ $? -eq 1 ] && grep -q "NOPERM" "$T/err" && ok "the service refuses bob's put" ||
		fail "bob's put: $(cat "$T/err")"
	asb policy doc --readers bob
	[ $? -eq 1 ] && grep -q "NOPERM" "$T/err" && ok "the service refuses bob's policy change" ||
		fail "bob's policy change: $(cat "$T/err")"
	if asa policy doc --readers bob; then ok "alice lets bob read"; else fail "alice policy: $(cat "$T/err")"; fi
	if asb get doc "$T/got" && cmp -s "$T/f1m" "$T/got"; then ok "bob reads doc"; else fail "bob get after the grant: $(cat "$T/err")"; fi
	# gc as the default user, who cannot see doc: its blob must survive
	name=$(TEEMS_PASS=apw "$TEEMS" obj stat doc --dir "$D" --user alice | sed -n 's/^store_name: //p')
	STORE=dir
	expect_ok "gc by a user who cannot see doc" gc --grace 0
	[ -n "$name" ] && [ -f "$D/store/$name" ] && ok "doc's blob survives: $(cat "$T/out")" ||
		fail "gc removed the blob of an object it could not see"
	if asa get doc "$T/got" && cmp -s "$T/f1m" "$T/got"; then ok "doc intact after gc"; else fail "doc after gc: $(cat "$T/err")"; fi
else
	echo "service-enforced policies: skipped (no redis-cli, or the service has no users yet)"
fi

# ---- a follower restarted on a rolled-back copy of its data -----------------------------
start_replica() { # ID
	(cd "$D/r$1" && exec "$TEEMSD" --config "$D/r$1/teemsd.conf" >>"$D/r$1/teemsd.log" \
		2>&1 </dev/null) &
	echo $! >"$D/r$1/teemsd.pid"
}
"$TEEMS" --dir "$D" cluster status >"$T/status" 2>&1
f=$(sed -n 's/^r\([0-9]*\) .* follower .*/\1/p' "$T/status" | head -n 1)
if [ -z "$f" ]; then
	fail "no follower in: $(cat "$T/status")"
else
	port=$(sed -n "s/^$f [0-9]* 127.0.0.1:\([0-9]*\) .*/\1/p" "$D/cluster.conf")
	expect_ok "put fresh v1" put "$T/f1" fresh
	kill -9 "$(cat "$D/r$f/teemsd.pid")"
	sleep 0.2
	cp -a "$D/r$f/data" "$T/old-data"
	start_replica "$f"
	expect_ok "put fresh v2 (r$f back)" put "$T/f1m" fresh
	sleep 1 # let r$f apply v2, so the rollback below really loses something
	kill -9 "$(cat "$D/r$f/teemsd.pid")"
	sleep 0.2
	rm -rf "$D/r$f/data"
	cp -a "$T/old-data" "$D/r$f/data"
	start_replica "$f"
	got=1
	for _ in 1 2 3; do
		"$TEEMS" obj get fresh "$T/got" --host 127.0.0.1 --port "$port" \
			--cacert "$D/ca.pem" --store "dir://$D/store" >"$T/out" 2>"$T/err"
		got=$?
		[ $got -eq 3 ] || break
		sleep 1 # not listening yet
	done
	if [ $got -eq 0 ] && cmp -s "$T/f1m" "$T/got"; then
		ok "read through r$f restarted on rolled-back data returns the newest version"
	else
		fail "read through rolled-back r$f: exit $got: $(cat "$T/err")"
		tail -n 20 "$D/r$f/teemsd.log"
	fi
fi

"$TEEMS" --dir "$D" cluster down >/dev/null 2>&1
echo "total $(($(date +%s) - START)) s"
if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
