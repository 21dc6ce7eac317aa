# Shell functions shared by the system tests and bench/objects.sh (POSIX sh; source it).
#
#   cluster_tmp NAME                   T, a new temporary directory, and D=$T/cluster for
#                                      `teems cluster up --dir`; at exit (trap) cluster_cleanup
#   cluster_cleanup                    kills every teemsd of $D and removes $T
#   fail MESSAGE                       prints FAIL: MESSAGE and counts it in $fails
#   s3rver_find BUILD_DIR SOURCE_DIR   sets S3RVER to s3rver's bin/s3rver.js, installing
#                                      s3rver@3 into BUILD_DIR/npm when it is missing;
#                                      returns 77 without node/npm (outside CI), 1 on failure
#   s3rver_start DATA_DIR              starts it behind s3rver_sigv4.js on a free loopback
#                                      port; sets S3_PID, S3_PORT, S3_ENDPOINT
#   s3rver_stop                        stops it
#   s3_curl METHOD URL [CURL ARGS...]  a SigV4-signed request as the built-in account
#                                      (S3RVER/S3RVER), payload unsigned like teems' own
#   loopback_host                      prints a random address in 127.0.0.0/8 other than
#                                      127.0.0.1: a test that listens on fixed ports there
#                                      cannot meet another test's listeners or the source
#                                      ports of connections to 127.0.0.1
LIB_DIR=$(cd "$(dirname "${LIB_SH:-$0}")" && pwd)

s3rver_find() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "SKIP: node and npm are needed to run the S3-compatible test server (s3rver)"
		# In CI scripts/setup installs them, so their absence there is a failure.
		[ -z "${CI:-}" ] || return 1
		return 77
	fi
	S3RVER=""
	if [ -n "${TEEMS_S3RVER:-}" ] && [ -f "$TEEMS_S3RVER" ]; then
		S3RVER=$TEEMS_S3RVER
		return 0
	fi
	# Under a lock: ctest -j runs the S3 tests side by side, and none may install over
	# another's install or start a server the other is still installing.
	mkdir -p "$1" || return 1
	S3RVER=$(
		exec 9>"$1/npm.lock"
		flock 9 || exit 1
		for p in "$1/npm/node_modules/s3rver/bin/s3rver.js" \
			"$2/build/npm/node_modules/s3rver/bin/s3rver.js"; do
			[ -f "$p" ] && { echo "$p"; exit 0; }
		done
		echo "installing s3rver@3 into $1/npm" >&2
		timeout 300 npm install --no-audit --no-fund --prefix "$1/npm" s3rver@3 >/dev/null ||
			exit 1
		echo "$1/npm/node_modules/s3rver/bin/s3rver.js"
	) || return 1
}

s3rver_start() {
	mkdir -p "$1/data"
	: >"$1/s3rver.out"
	node "$LIB_DIR/s3rver_sigv4.js" "$(dirname "$(dirname "$S3RVER")")" "$1/data" \
		>"$1/s3rver.out" 2>&1 &
	S3_PID=$!
	S3_PORT=""
	for _ in $(seq 1 150); do
		S3_PORT=$(sed -n 's/^port \([0-9][0-9]*\)$/\1/p' "$1/s3rver.out")
		[ -n "$S3_PORT" ] && break
		if ! kill -0 "$S3_PID" 2>/dev/null; then
			echo "s3rver exited early:"
			cat "$1/s3rver.out"
			S3_PID=""
			return 1
		fi
		sleep 0.1
	done
	if [ -z "$S3_PORT" ]; then
		echo "s3rver did not start within 15 s"
		return 1
	fi
	S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
}

s3rver_stop() {
	if [ -n "${S3_PID:-}" ]; then
		kill "$S3_PID" 2>/dev/null
		wait "$S3_PID" 2>/dev/null
		S3_PID=""
	fi
	return 0
}

s3_curl() {
	_m=$1
	_u=$2
	shift 2
	curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X "$_m" "$@" "$_u"
}

loopback_host() {
	od -An -N3 -tu1 /dev/urandom |
		awk '{ printf "127.%d.%d.%d\n", $1 % 254 + 1, $2 % 254 + 1, $3 % 254 + 1 }'
}

cluster_cleanup() {
	for f in "$D"/r*/teemsd.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$T"
}

cluster_tmp() {
	T=$(mktemp -d "/tmp/teems-$1-XXXXXX")
	D="$T/cluster"
	trap cluster_cleanup EXIT INT TERM
}

fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
