#!/bin/bash
# Object put/get latency and throughput (docs/OBJECTS.md, "Performance"): `teems obj put|get`
# of 4 KiB and 16 MiB objects on a local 3-replica cluster, with the dir store beside plain `cp`
# of the same bytes, and with the s3 store (s3rver on loopback) beside plain signed curl
# uploads and downloads to the same server. Each figure is the median wall time of R runs of
# the whole command (process start, TLS handshake with the service, metadata read and
# compare-and-set, encryption, store transfer). Targets (issue 7): get within 1.3x plain for
# 16 MiB, put within 2x.
#
# The baselines, as they are (printed with the table):
# - dir: GNU cp, which copies inside the kernel (copy_file_range, after a refused FICLONE; one
#   page-cache copy, no user-space copy) into an existing file it truncates, and never syncs.
#   teems' put makes the blob durable before it commits (fdatasync of the blob, fsync of the
#   directory) and its get writes a new file renamed into place. For scale, a second put
#   baseline, `cp` then `sync FILE` (an fsync of the copy), is printed below the table.
# - s3: curl --aws-sigv4 (UNSIGNED-PAYLOAD, like teems) PUT and GET of the same bytes.
# - each command replaces its own output of the run before (teems get: out, plain: out.plain),
#   so neither pays for the page cache or writeback state the other left behind. Both pay for
#   dropping their old copy: cp truncates it (open with O_TRUNC, ~6 ms for 16 MiB here), teems
#   swaps the names and unlinks it (src/cli/teems_obj.c, replace_file). For scale, cp to a new
#   file (no old copy) is printed below the table as well.
# - fixed cost: `teems obj stat` of the 16 MiB object (process start, OpenSSL, the TLS
#   handshake, one VGET), which every teems row includes and no plain row does.
# - op/lib rows: the same put and get through one libteems client that stays open
#   (bench-obj-client, bench/obj_client.c), as an application using the library does: what the
#   object layer costs without the per-command fixed cost. Its get writes into a truncated
#   file, as cp does.
# - every timed command starts after a `sync`, so that none pays for the writeback of the one
#   before (a put's fdatasync, or cp's truncation, would otherwise wait for it).
#
#   bench/objects.sh [BUILD_DIR] [R]       (defaults: ./build, 5)
set -u
BUILD=$(cd "${1:-build}" && pwd)
R=${2:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
TEEMS="$BUILD/teems"
LIB_CLIENT="$BUILD/bench-obj-client"
export TEEMS_TEEMSD="$BUILD/teemsd"
LIB_SH="$SRC/tests/system/lib.sh"
. "$LIB_SH"
[ -x "$TEEMS" ] && [ -x "$TEEMS_TEEMSD" ] && [ -x "$LIB_CLIENT" ] || {
	echo "build teems, teemsd and bench-obj-client first ($BUILD)"
	exit 2
}

T=$(mktemp -d /tmp/teems-bench-obj-XXXXXX)
D="$T/cluster"
S3_PID=""
cleanup() {
	"$TEEMS" --dir "$D" cluster down >/dev/null 2>&1
	for f in "$D"/r*/teemsd.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	s3rver_stop
	rm -rf "$T"
}
trap cleanup EXIT INT TERM
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER

"$TEEMS" --dir "$D" cluster up >/dev/null || exit 1
mkdir -p "$T/plain"
head -c 4096 /dev/urandom >"$T/4k"
head -c 16777216 /dev/urandom >"$T/16m"

# median of the numbers on stdin
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# timed FILE COMMAND...: appends the command's wall time in ms to FILE
timed() {
	_f=$1
	shift
	# Start every command from the same state: no dirty pages left by the one before, whose
	# writeback the next fsync (teems put) or truncation (cp over its old copy) would pay for.
	sync
	# bash's $EPOCHREALTIME (microseconds), read without starting a process: `date` would add
	# its own ~1 ms start-up to every figure, the plain ones included, and flatter the ratios.
	_t0=${EPOCHREALTIME/./}
	"$@" >/dev/null 2>"$T/err" || {
		echo "failed: $*: $(cat "$T/err")" >&2
		exit 1
	}
	_t1=${EPOCHREALTIME/./}
	echo "$((_t1 - _t0)) " | awk '{printf "%.3f\n", $1 / 1000}' >>"$_f"
}

# cp_sync FROM TO: cp, then an fsync of the copy (coreutils sync FILE)
cp_sync() { cp "$1" "$2" && sync "$2"; }

ROWS="$T/rows"
: >"$T/stat"
: >"$ROWS"
# row STORE SIZE_NAME BYTES OP TEEMS_FILE PLAIN_FILE TARGET
row() {
	tm=$(median <"$5")
	pm=$(median <"$6")
	echo "$1 $2 $3 $4 $tm $pm $7" >>"$ROWS"
}

bench_store() { # STORE STORE_ARGS...
	store=$1
	shift
	for size in 4k 16m; do
		bytes=$(wc -c <"$T/$size")
		for f in tput tget pput pget psync pnew; do : >"$T/$store.$size.$f"; done
		for i in $(seq 1 "$R"); do
			timed "$T/$store.$size.tput" "$TEEMS" obj put "$T/$size" "bench/$size" \
				--dir "$D" --quiet "$@"
			timed "$T/$store.$size.tget" "$TEEMS" obj get "bench/$size" "$T/out" \
				--dir "$D" --quiet "$@"
			cmp -s "$T/$size" "$T/out" || {
				echo "bench/$size came back different" >&2
				exit 1
			}
			if [ "$store" = dir ]; then
				timed "$T/$store.$size.pput" cp "$T/$size" "$T/plain/$size"
				timed "$T/$store.$size.pget" cp "$T/plain/$size" "$T/out.plain"
				timed "$T/$store.$size.psync" cp_sync "$T/$size" "$T/plain/$size"
				rm -f "$T/out.new"
				timed "$T/$store.$size.pnew" cp "$T/plain/$size" "$T/out.new"
				[ "$size" = 16m ] && timed "$T/stat" "$TEEMS" obj stat bench/16m \
					--dir "$D"
			else
				timed "$T/$store.$size.pput" s3_curl PUT "$S3_ENDPOINT/plain/$size" \
					-T "$T/$size"
				timed "$T/$store.$size.pget" s3_curl GET "$S3_ENDPOINT/plain/$size" \
					-o "$T/out.plain"
			fi
		done
		row "$store" "$size" "$bytes" put "$T/$store.$size.tput" "$T/$store.$size.pput" 2
		row "$store" "$size" "$bytes" get "$T/$store.$size.tget" "$T/$store.$size.pget" 1.3
		# The same operations through one long-lived libteems client (bench/obj_client.c),
		# against the same plain medians.
		"$LIB_CLIENT" "$D" "$T/$size" "lib/$size" "$R" ${url:+"$url"} >"$T/lib" || exit 1
		awk '$1 == "put" {print $2}' "$T/lib" >"$T/$store.$size.lput"
		awk '$1 == "get" {print $2}' "$T/lib" >"$T/$store.$size.lget"
		row "$store" "$size" "$bytes" put/lib "$T/$store.$size.lput" \
			"$T/$store.$size.pput" 2
		row "$store" "$size" "$bytes" get/lib "$T/$store.$size.lget" \
			"$T/$store.$size.pget" 1.3
	done
}

url=""
bench_store dir
rc=0
s3rver_find "$BUILD" "$SRC" >/dev/null || rc=$?
if [ $rc -eq 0 ] && s3rver_start "$T/s3" >/dev/null; then
	s3_curl PUT "$S3_ENDPOINT/plain" >/dev/null 2>&1 # the bucket for the plain uploads
	url="s3://bench/o?endpoint=$S3_ENDPOINT"
	bench_store s3 --store "$url"
else
	echo "(s3: s3rver not available, skipped)"
fi

echo "teems obj vs plain copies: median of $R runs, wall time of the whole command; op/lib:"
echo "the same put or get through one libteems client kept open (no per-command start-up)"
echo "(dir: plain = GNU cp: in-kernel copy_file_range, no fsync, while teems' put syncs the"
echo " blob and the directory; s3: plain = curl --aws-sigv4 to the same s3rver)"
echo
awk '{
	mib = $3 / 1048576
	ratio = $6 > 0 ? $5 / $6 : 0
	tgt = ($2 == "16m") ? sprintf("%s %.1fx", (ratio <= $7 ? "met" : "MISSED"), $7) : "-"
	printf "| %-5s | %-6s | %-7s | %9.2f | %9.2f | %11.1f | %11.1f | %5.2fx | %-12s |\n",
		$1, ($2 == "4k" ? "4 KiB" : "16 MiB"), $4, $5, $6,
		mib / ($5 / 1000), mib / ($6 / 1000), ratio, tgt
}' "$ROWS" | {
	echo "| store | size   | op      |  teems ms |  plain ms | teems MiB/s | plain MiB/s |  ratio | target       |"
	echo "|-------|--------|---------|-----------|-----------|-------------|-------------|--------|--------------|"
	cat
}
echo
ps=$(median <"$T/dir.16m.psync")
tp=$(awk '$1 == "dir" && $2 == "16m" && $4 == "put" {print $5}' "$ROWS")
echo "dir 16 MiB put against cp + fsync of the copy (sync FILE): $ps ms, ratio" \
	"$(awk -v t="$tp" -v p="$ps" 'BEGIN {printf "%.2fx", t / p}')"
pn=$(median <"$T/dir.16m.pnew")
tg=$(awk '$1 == "dir" && $2 == "16m" && $4 == "get" {print $5}' "$ROWS")
echo "dir 16 MiB get against cp to a new file (no earlier copy to truncate): $pn ms, ratio" \
	"$(awk -v t="$tg" -v p="$pn" 'BEGIN {printf "%.2fx", t / p}')"
echo "fixed cost in every teems row (teems obj stat: process start, OpenSSL, TLS, VGET):" \
	"$(median <"$T/stat") ms"
