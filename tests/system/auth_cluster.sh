#!/bin/sh
# Users and permissions on a real local cluster (docs/OPERATIONS.md, "Users and permissions"):
# with redis-cli --tls and the teems CLI against every replica, show NOAUTH once "default" has
# a password, WRONGPASS for bad credentials, NOPERM for a command outside a user's categories,
# for a key outside its patterns and for a key whose policy excludes the user, and success for
# the rest; a user created through one replica authenticates at once on another; `cluster
# status` and `cluster up` with and without credentials.
#
# usage: auth_cluster.sh TEEMS TEEMSD    exit 77 (skipped) without redis-cli or teemsd.
set -u
TEEMS=$1
TEEMSD=$2
[ -x "$TEEMSD" ] || { echo "teemsd not built: skipped"; exit 77; }
command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli not installed: skipped"; exit 77; }
export TEEMS_TEEMSD="$TEEMSD"
unset TEEMS_USER TEEMS_PASS

LIB_SH="$(dirname "$0")/lib.sh"
. "$LIB_SH"
cluster_tmp auth

# rc PORT [redis-cli options and command...]: redis-cli over TLS to one replica, stderr too.
rc() {
	port=$1
	shift
	timeout 10 redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "$port" --no-auth-warning \
		"$@" 2>&1
}
# expect DESCRIPTION WANT PORT ARGS...: the reply must be exactly WANT.
expect() {
	what=$1
	want=$2
	shift 2
	got=$(rc "$@")
	if [ "$got" = "$want" ]; then
		echo "ok: $what"
	else
		fail "$what: got \"$got\", want \"$want\""
	fi
}

"$TEEMS" --dir "$D" cluster up --replicas 3 >"$T/up" 2>&1 || {
	cat "$T/up"
	exit 1
}
P0=$(sed -n 1p "$D/cluster.conf" | awk '{print $3}' | sed 's/.*://')
P1=$(sed -n 2p "$D/cluster.conf" | awk '{print $3}' | sed 's/.*://')
P2=$(sed -n 3p "$D/cluster.conf" | awk '{print $3}' | sed 's/.*://')
# wait for a leader: a write goes through
i=0
until [ "$(rc "$P0" SET ready 1)" = OK ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || { fail "no leader"; exit 1; }
	sleep 0.1
done

NOAUTH="NOAUTH Authentication required."
WRONGPASS="WRONGPASS invalid username-password pair or user is disabled."
NOPERM_KEY="NOPERM this user has no permissions to access one of the keys used as arguments"

expect "nobody configured: default works" "default" "$P1" ACL WHOAMI
expect "create alice" OK "$P1" ACL SETUSER alice on '>apw' '~app:*' +@read +@write
expect "create bob" OK "$P2" ACL SETUSER bob on '>bpw' '~app:*' +@read +@write
expect "alice authenticates on another replica at once" OK "$P0" AUTH alice apw
expect "default needs a password" OK "$P0" ACL SETUSER default '>adminpw'
expect "NOAUTH without credentials" "$NOAUTH" "$P1" GET app:1
expect "NOAUTH on every replica" "$NOAUTH" "$P2" SET app:1 x
# redis-cli goes on after a failed AUTH: the command then meets NOAUTH
expect "WRONGPASS" "AUTH failed: $WRONGPASS
$NOAUTH" "$P1" --user alice --pass nope GET app:1
expect "WRONGPASS for an unknown user" "AUTH failed: $WRONGPASS
$NOAUTH" "$P1" --user carol --pass x PING
expect "alice writes under app:" OK "$P1" --user alice --pass apw SET app:1 hello
expect "alice reads it through another replica" hello "$P2" --user alice --pass apw GET app:1
expect "NOPERM for a key" "$NOPERM_KEY" "$P2" --user alice --pass apw SET other x
expect "NOPERM for a command" \
	"NOPERM this user has no permissions to run the 'acl|list' command" "$P0" \
	--user alice --pass apw ACL LIST
expect "the admin (default) reads what it likes" hello "$P0" -a adminpw GET app:1
expect "ACL WHOAMI" alice "$P2" --user alice --pass apw ACL WHOAMI
# a policy: alice owns app:doc, bob reads it, nobody else writes it
expect "policy set by its owner" OK "$P1" --user alice --pass apw \
	TEEMS.POLICY.SET app:doc alice bob -
expect "the owner writes" OK "$P1" --user alice --pass apw SET app:doc secret
expect "a reader reads" secret "$P2" --user bob --pass bpw GET app:doc
expect "a reader does not write" "$NOPERM_KEY" "$P0" --user bob --pass bpw SET app:doc x
expect "only the owner changes the policy" "$NOPERM_KEY" "$P0" --user bob --pass bpw \
	TEEMS.POLICY.SET app:doc bob bob bob
expect "not even the admin reads it" "$NOPERM_KEY" "$P2" -a adminpw GET app:doc
# HELLO 3 AUTH
got=$(rc "$P1" HELLO 3 AUTH alice nope)
[ "$got" = "$WRONGPASS" ] || fail "HELLO 3 AUTH with a bad password: \"$got\""
got=$(rc "$P1" HELLO 3 AUTH alice apw | head -2 | tr '\n' ' ')
case "$got" in
server*redis*) echo "ok: HELLO 3 AUTH" ;;
*) fail "HELLO 3 AUTH: \"$got\"" ;;
esac

# the teems CLI: --user/--pass, TEEMS_USER/TEEMS_PASS
if out=$("$TEEMS" --dir "$D" --user alice --pass apw get app:1 2>&1) && [ "$out" = hello ]; then
	echo "ok: teems --user --pass get"
else
	fail "teems --user alice --pass apw get: $out"
fi
if out=$(TEEMS_USER=alice TEEMS_PASS=apw "$TEEMS" --dir "$D" set app:2 two 2>&1) &&
	[ "$out" = OK ]; then
	echo "ok: teems with TEEMS_USER/TEEMS_PASS"
else
	fail "TEEMS_USER=alice teems set: $out"
fi
out=$("$TEEMS" --dir "$D" --user alice --pass nope get app:1 2>&1)
st=$?
case "$st:$out" in
1:*WRONGPASS*) echo "ok: teems with a bad password fails" ;;
*) fail "teems with a bad password: exit $st: $out" ;;
esac
out=$("$TEEMS" --dir "$D" get app:1 2>&1)
st=$?
case "$st:$out" in
1:*NOAUTH*) echo "ok: teems without credentials: NOAUTH" ;;
*) fail "teems without credentials: exit $st: $out" ;;
esac

# cluster status and cluster up log in as the other commands do
out=$("$TEEMS" --dir "$D" cluster status 2>&1)
st=$?
case "$st:$out" in
1:*"refuse commands without credentials"*NOAUTH*--user*) echo "ok: cluster status without credentials says why" ;;
*) fail "cluster status without credentials: exit $st: $out" ;;
esac
out=$("$TEEMS" --dir "$D" --user default --pass adminpw cluster status 2>&1)
st=$?
case "$st:$out" in
0:*leader*) echo "ok: cluster status with credentials" ;;
*) fail "cluster status --user default: exit $st: $out" ;;
esac
"$TEEMS" --dir "$D" cluster down >/dev/null 2>&1 || fail "cluster down"
out=$(timeout 20 "$TEEMS" --dir "$D" --user alice --pass apw cluster up 2>&1)
st=$?
case "$st:$out" in
1:*"refuse these credentials"*NOPERM*) echo "ok: cluster up as a user who is no admin fails at once" ;;
*) fail "cluster up --user alice: exit $st: $out" ;;
esac
out=$(timeout 20 "$TEEMS" --dir "$D" cluster up 2>&1)
st=$?
case "$st:$out" in
1:*"refuse commands without credentials"*) echo "ok: cluster up without credentials fails at once" ;;
*) fail "cluster up without credentials: exit $st: $out" ;;
esac
if out=$(TEEMS_USER=default TEEMS_PASS=adminpw "$TEEMS" --dir "$D" cluster up 2>&1) &&
	out=$("$TEEMS" --dir "$D" --user alice --pass apw get app:1 2>&1) && [ "$out" = hello ]; then
	echo "ok: cluster up with credentials restarts it, data kept"
else
	fail "cluster up with credentials: $out"
fi

"$TEEMS" --dir "$D" cluster down >/dev/null 2>&1 || fail "cluster down"
if [ $fails -ne 0 ]; then
	for l in "$D"/r*/teemsd.log; do
		echo "--- $l"
		tail -n 20 "$l"
	done
	exit 1
fi
echo "auth_cluster: all passed"
