#!/bin/sh
# The teems CLI's key-value commands, target selection and exit codes, against a real
# redis-server on loopback (plaintext and TLS 1.3 with certificates made here), so they are
# tested independently of teemsd. Commands Redis lacks (VGET, VSET, TEEMS.STATUS) show up as
# error replies, which is itself the "operation failed" path (exit 1).
#
# usage: cli_redis.sh TEEMS      exit 77 (skipped) without redis-server or openssl.
#
# $P and $S (target options) are split on purpose; the paths in them come from mktemp.
# shellcheck disable=SC2086
set -u
TEEMS=$1
command -v redis-server >/dev/null 2>&1 || { echo "redis-server missing: skipped"; exit 77; }
command -v openssl >/dev/null 2>&1 || { echo "openssl missing: skipped"; exit 77; }

T=$(mktemp -d /tmp/teems-cli-redis-XXXXXX)
REDIS_PID=
TRY_PID=
cleanup() {
	[ -n "$REDIS_PID" ] && kill -9 "$REDIS_PID" 2>/dev/null
	[ -n "$TRY_PID" ] && kill -9 "$TRY_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

fails=0
# expect CODE DESCRIPTION COMMAND...: runs the command, checks its exit code, keeps its
# stdout in $T/out and stderr in $T/err.
expect() {
	want=$1 what=$2
	shift 2
	"$@" >"$T/out" 2>"$T/err"
	got=$?
	if [ "$got" != "$want" ]; then
		echo "FAIL: $what: exit $got, expected $want"
		sed 's/^/  out: /' "$T/out"
		sed 's/^/  err: /' "$T/err"
		fails=$((fails + 1))
	else
		echo "ok: $what"
	fi
}
# out_is TEXT / err_has TEXT: checks the last command's output.
out_is() {
	if [ "$(cat "$T/out")" != "$1" ]; then
		echo "FAIL: stdout is \"$(cat "$T/out")\", expected \"$1\""
		fails=$((fails + 1))
	fi
}
err_has() {
	if ! grep -q -- "$1" "$T/err"; then
		echo "FAIL: stderr lacks \"$1\":"
		sed 's/^/  err: /' "$T/err"
		fails=$((fails + 1))
	fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

(
	cd "$T" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj /CN=test-ca -keyout ca.key -out ca.pem &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj /CN=other -keyout other.key -out other.pem &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=server \
			-keyout server.key -out server.csr &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile san.ext -out server.pem
) >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log"; exit 1; }

PORT=$(free_port)
TLS_PORT=$(free_port)
DEAD_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$PORT" --tls-port "$TLS_PORT" \
	--tls-cert-file "$T/server.pem" --tls-key-file "$T/server.key" \
	--tls-ca-cert-file "$T/ca.pem" --tls-auth-clients no --dir "$T" --save "" \
	--appendonly no >"$T/redis.log" 2>&1 &
REDIS_PID=$!
i=0
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "redis-server did not start"; cat "$T/redis.log"; exit 1; }
	sleep 0.1
done

P="--host 127.0.0.1 --port $PORT --plaintext"
S="--host 127.0.0.1 --port $TLS_PORT --cacert $T/ca.pem"

# Plaintext and TLS round trips.
expect 0 "set (plaintext)" "$TEEMS" $P set k1 hello
out_is OK
expect 0 "get (plaintext)" "$TEEMS" $P get k1
out_is hello
expect 0 "set (TLS)" "$TEEMS" $S set k2 "two words"
expect 0 "get (TLS)" "$TEEMS" $S get k2
out_is "two words"
expect 1 "get of a missing key" "$TEEMS" $S get nope
err_has "teems: nope: not found"
expect 0 "del" "$TEEMS" $S del k1 k2 nope
out_is 2
expect 1 "get after del" "$TEEMS" $S get k1

# Error replies are exit 1 with the server's text.
expect 1 "cas on a server without VSET" "$TEEMS" $S cas k 1 0
err_has "teems: ERR unknown command"
expect 1 "status on a server without TEEMS.STATUS" "$TEEMS" $S status
grep -q "error: ERR unknown command" "$T/out" || { echo "FAIL: status output"; fails=$((fails + 1)); }

# Unreachable and refused TLS are exit 3.
expect 3 "connection refused" "$TEEMS" --host 127.0.0.1 --port "$DEAD_PORT" --plaintext get k
err_has "Connection refused"
expect 3 "wrong CA" "$TEEMS" --host 127.0.0.1 --port "$TLS_PORT" --cacert "$T/other.pem" get k
err_has "certificate verify failed"

# A cluster directory: the first replica is down, the second serves.
mkdir -p "$T/dir"
cp "$T/ca.pem" "$T/dir/ca.pem"
printf '0 0 127.0.0.1:%s 127.0.0.1:1\n1 0 127.0.0.1:%s 127.0.0.1:2\n' "$DEAD_PORT" "$TLS_PORT" \
	>"$T/dir/cluster.conf"
expect 0 "--dir falls over to the next replica" "$TEEMS" --dir "$T/dir" set k3 v3
err_has "trying the next replica"
expect 0 "--dir get" "$TEEMS" --dir "$T/dir" get k3
out_is v3
printf '0 0 127.0.0.1:%s 127.0.0.1:1\n' "$DEAD_PORT" >"$T/dir/cluster.conf"
expect 3 "--dir with no replica up" "$TEEMS" --dir "$T/dir" get k3
expect 3 "--dir without a cluster" "$TEEMS" --dir "$T/nothing-here" get k3
err_has "no cluster in"
expect 3 "cluster status with no replica up" "$TEEMS" --dir "$T/dir" cluster status
grep -q "^r0 " "$T/out" || { echo "FAIL: cluster status lists r0"; fails=$((fails + 1)); }

# A server that answers TRYAGAIN (no leader yet): the CLI retries until its timeout, then gives
# up with exit 3.
TRY_PORT=$(free_port)
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); s.settimeout(30)
while True:
    c, _ = s.accept(); c.settimeout(5)
    try:
        if c.recv(65536):
            c.sendall(b"-TRYAGAIN teems: no leader; retry later\r\n"); print("served", flush=True)
    except OSError: pass
    c.close()
' "$TRY_PORT" >"$T/try.log" &
TRY_PID=$!
i=0
until "$TEEMS" --host 127.0.0.1 --port "$TRY_PORT" --plaintext --timeout 100 get k 2>&1 |
	grep -q TRYAGAIN; do
	i=$((i + 1))
	[ $i -gt 50 ] && break
	sleep 0.1
done
start=$(date +%s)
: >"$T/try.log"
expect 3 "a server that keeps saying TRYAGAIN" "$TEEMS" --host 127.0.0.1 --port "$TRY_PORT" --plaintext \
	--timeout 1000 get k
err_has "TRYAGAIN teems: no leader; retry later; retrying"
[ $(($(date +%s) - start)) -le 5 ] || { echo "FAIL: TRYAGAIN retries outlived the timeout"; fails=$((fails + 1)); }
[ "$(wc -l <"$T/try.log")" -ge 3 ] || { echo "FAIL: TRYAGAIN was not retried"; fails=$((fails + 1)); }
kill "$TRY_PID" 2>/dev/null

# A malformed cluster.conf is reported with its line, never half used.
printf '0 0 127.0.0.1:%s 127.0.0.1:1\n2 0 127.0.0.1:%s 127.0.0.1:2\n' "$DEAD_PORT" "$TLS_PORT" \
	>"$T/dir/cluster.conf"
expect 3 "cluster.conf with a gap in the ids" "$TEEMS" --dir "$T/dir" get k3
err_has "cluster.conf:2: expected"
printf '0 0 127.0.0.1:99999 127.0.0.1:1\n' >"$T/dir/cluster.conf"
expect 3 "cluster.conf with a bad port" "$TEEMS" --dir "$T/dir" get k3
err_has "cluster.conf:1: expected"

# Usage errors are exit 2.
expect 2 "no command" "$TEEMS"
expect 2 "unknown command" "$TEEMS" $S frobnicate
expect 2 "missing argument" "$TEEMS" $S set onlykey
expect 2 "bad version" "$TEEMS" $S cas k v notanumber
expect 2 "--host without --cacert or --plaintext" "$TEEMS" --host 127.0.0.1 --port "$PORT" get k
expect 2 "bad port" "$TEEMS" --host 127.0.0.1 --port 70000 --plaintext get k
expect 2 "--dir and --host" "$TEEMS" --dir "$T/dir" $S get k
expect 2 "cluster up --replicas 4" "$TEEMS" --dir "$T/new" cluster up --replicas 4
expect 3 "recover without a cluster" "$TEEMS" --dir "$T/nocluster" recover
err_has "no cluster"
expect 0 "--help" "$TEEMS" --help
grep -q "\-\-authorize \[--key F\] signs it" "$T/out" || { echo "FAIL: --help is silent about recover"; fails=$((fails + 1)); }
expect 0 "cas --help" "$TEEMS" cas --help
grep -q "conflict: current version" "$T/out" || { echo "FAIL: cas --help"; fails=$((fails + 1)); }

# cluster up refuses a directory that holds something else.
mkdir -p "$T/busy" && echo x >"$T/busy/file"
expect 1 "cluster up into a non-empty directory" env TEEMS_TEEMSD=/bin/true "$TEEMS" --dir "$T/busy" cluster up
err_has "not empty"

if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
