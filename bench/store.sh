#!/usr/bin/env bash
# Benchmark, not a test: sealed WAL append throughput against raw write+fdatasync of the same
# payload bytes on the same file system (bench/bench_store.c says exactly what each column is).
#
#   bench/store.sh [SECONDS_PER_RUN [REPS]]      defaults 0.4 and 7; the whole run stays < 2 min
#
# Environment: BUILD_DIR (default build). Builds bench-store if needed and measures in
# $BUILD_DIR/bench-store-data, on the disk that holds the repository (refuses tmpfs, where
# fsync costs nothing and the comparison would mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
seconds=${1:-0.4}
reps=${2:-7}

if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target bench-store >/dev/null

data="$build/bench-store-data"
mkdir -p "$data"
trap 'rm -rf "$data"' EXIT
fstype=$(stat -f -c %T "$data")
case "$fstype" in
  tmpfs|ramfs) echo "store.sh: $data is on $fstype; run it on a real disk" >&2; exit 1 ;;
esac

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -sr), $(nproc) CPUs," \
     "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//')"
echo "# file system: $fstype on $(df --output=source "$data" | tail -1)"
echo "# command: bench/store.sh $seconds $reps"
timeout 170 "$build/bench-store" "$data" "$seconds" "$reps"
