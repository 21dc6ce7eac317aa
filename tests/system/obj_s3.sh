#!/usr/bin/env bash
# Runs test_obj_s3 against s3rver (npm package, S3-compatible) behind s3rver_sigv4.js, which
# verifies every SigV4 signature, on a random free loopback port, and stops it afterwards.
# Exit 77 (ctest SKIP_RETURN_CODE) only when node or npm is not installed, outside CI; a missing s3rver is installed into the build directory first.
#
#   obj_s3.sh TEST_BINARY BUILD_DIR SOURCE_DIR
set -euo pipefail
bin=$1 build=$2 src=$3

LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"
rc=0
s3rver_find "$build" "$src" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

tmp=$(mktemp -d)
S3_PID=""
cleanup() {
  s3rver_stop
  rm -rf "$tmp"
}
trap cleanup EXIT

s3rver_start "$tmp" || exit 1
s3rver=$S3RVER port=$S3_PORT
echo "obj_s3: s3rver $(node "$s3rver" --version) (SigV4 verified by s3rver_sigv4.js) on 127.0.0.1:$port"
"$bin" "http://127.0.0.1:$port"
