#!/usr/bin/env bash
# Runs test_obj_s3 against s3rver (npm package, S3-compatible) behind s3rver_sigv4.js, which
# verifies every SigV4 signature, on a random free loopback port, and stops it afterwards.
# Exit 77 (ctest SKIP_RETURN_CODE) only when node or npm is not installed, outside CI; a missing s3rver is installed into the build directory first.
#
#   obj_s3.sh TEST_BINARY BUILD_DIR SOURCE_DIR
set -euo pipefail
bin=$1 build=$2 src=$3

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node and npm are needed to run the S3-compatible test server (s3rver)"
  # In CI scripts/setup installs them, so their absence there is a failure, not a skip.
  [ -z "${CI:-}" ] || exit 1
  exit 77
fi

s3rver=""
for p in "${TEEMS_S3RVER:-}" "$build/npm/node_modules/s3rver/bin/s3rver.js" \
         "$src/build/npm/node_modules/s3rver/bin/s3rver.js"; do
  if [ -n "$p" ] && [ -f "$p" ]; then s3rver=$p; break; fi
done
if [ -z "$s3rver" ]; then
  echo "obj_s3: installing s3rver@3 into $build/npm"
  timeout 300 npm install --no-audit --no-fund --prefix "$build/npm" s3rver@3 >/dev/null
  s3rver="$build/npm/node_modules/s3rver/bin/s3rver.js"
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/data"
: >"$tmp/s3rver.out"
node "$(dirname "$0")/s3rver_sigv4.js" "$(dirname "$(dirname "$s3rver")")" "$tmp/data" \
  >"$tmp/s3rver.out" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 150); do
  port=$(sed -n 's/^port \([0-9][0-9]*\)$/\1/p' "$tmp/s3rver.out")
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "obj_s3: s3rver exited early:"; cat "$tmp/s3rver.out"; exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then echo "obj_s3: s3rver did not start within 15 s"; exit 1; fi
echo "obj_s3: s3rver $(node "$s3rver" --version) (SigV4 verified by s3rver_sigv4.js) on 127.0.0.1:$port"
"$bin" "http://127.0.0.1:$port"
