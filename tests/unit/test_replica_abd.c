/* engine = abd in the replica engine (src/server/replica_abd.c) with three in-process replicas:
 * real sim platforms, real sealed WALs (the Paxos control plane's and the ABD data plane's) on
 * the posix VFS, frames delivered by the test, fsync jobs run inline. The harness is
 * tests/unit/replica_harness.c.
 *
 * Checks: SET then GET through each replica (every replica coordinates; nothing is forwarded);
 * DEL answers the count and reads find nothing afterwards; a follower restarted while writes
 * went on (and one restarted on a copy of its data directory from before them: a rollback)
 * registers through the Paxos control plane, fences, recovers by range digests (it fetches the
 * differing ranges and adopts registers) and then serves the newest values; a crash of every
 * replica goes through the epoch restart and loses nothing acknowledged; commands ABD cannot
 * do atomically get "ERR '<cmd>' is not supported with engine = abd"; TEEMS.STATUS says
 * engine:abd with the ABD core's state. */
#include <limits.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "core/paxos.h"
#include "kv/kv.h"
#include "server/config.h"
#include "server/replica.h"
#include "server/replica_internal.h" /* the Paxos core */
#include "teems/err.h"

#include "replica_harness.h"

static struct cluster *cluster_new(void)
{
	const struct cluster_opts o = {
		.dir_prefix = "teems-abd",
		.engine = "abd",
		.pump_sleep_us = 300,
		.probe_core = true,
	};

	return cluster_new_opts(&o);
}

/* Until every live replica is fresh in both planes and holds its configuration lease. */
static void wait_abd_ready(struct cluster *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		bool all = true;

		pump_ms(c, 20);
		for (int i = 0; i < N; i++)
			if (alive(c, i) && (!status_has(c, i, "\nabd_state:fresh\r\n") ||
					    !status_has(c, i, "\nabd_lease:1\r\n") ||
					    paxos_lifecycle(c->nodes[i].r->p) != PAXOS_LC_FRESH))
				all = false;
		if (all)
			return;
	}
	for (int i = 0; i < N; i++)
		if (alive(c, i))
			fprintf(stderr, "r%d:\n%s\n", i, CMD(c, i, "TEEMS.STATUS"));
	fail_msg("the ABD cluster is not ready within %llu ms", (unsigned long long)timeout_ms);
}

static void expect_get(struct cluster *c, int i, const char *key, const char *value)
{
	char want[256];

	if (value == NULL)
		snprintf(want, sizeof(want), "$-1\r\n");
	else
		snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(value), value);
	assert_string_equal(CMD(c, i, "GET", key), want);
}

static void test_set_get_del(void **state)
{
	struct cluster *c = cluster_new();
	char k[16], v[32];

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	assert_true(status_has(c, 0, "\nengine:abd\r\n"));
	/* Through each replica, read back through every replica. */
	for (int i = 0; i < N; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d-from-r%d", i, i);
		assert_string_equal(CMD(c, i, "SET", k, v), "+OK\r\n");
		for (int j = 0; j < N; j++)
			expect_get(c, j, k, v);
	}
	/* Overwrite through another replica: every reader sees the newer value. */
	assert_string_equal(CMD(c, 2, "SET", "k0", "newer"), "+OK\r\n");
	for (int j = 0; j < N; j++)
		expect_get(c, j, "k0", "newer");
	expect_get(c, 1, "never-written", NULL);
	/* DEL: the count, then absent everywhere; a second DEL deletes nothing. */
	assert_string_equal(CMD(c, 1, "DEL", "k1"), ":1\r\n");
	for (int j = 0; j < N; j++)
		expect_get(c, j, "k1", NULL);
	assert_string_equal(CMD(c, 0, "DEL", "k1"), ":0\r\n");
	assert_string_equal(CMD(c, 0, "SET", "k1", "again"), "+OK\r\n");
	expect_get(c, 2, "k1", "again");
	/* Every replica coordinated: nothing was forwarded to a leader. */
	for (int i = 0; i < N; i++) {
		assert_int_equal(c->nodes[i].r->stats.forwarded, 0);
		assert_true(status_u64(c, i, "abd_writes") >= 1);
		assert_true(status_u64(c, i, "abd_reads") >= 1);
	}
	/* Paxos committed no client command: its state machine holds nothing. */
	assert_int_equal(kv_count(c->nodes[0].r->kv), 0);
	cluster_free(c);
}

static void test_unsupported(void **state)
{
	struct cluster *c = cluster_new();

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	assert_string_equal(CMD(c, 0, "INCR", "n"),
			    "-ERR 'incr' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 1, "MSET", "a", "1", "b", "2"),
			    "-ERR 'mset' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 1, "MGET", "a", "b"),
			    "-ERR 'mget' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 2, "SCAN", "0"),
			    "-ERR 'scan' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 2, "VSET", "a", "1", "0"),
			    "-ERR 'vset' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "LEASE.ACQUIRE", "l", "1000"),
			    "-ERR 'lease.acquire' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "SET", "a", "1", "NX"),
			    "-ERR 'set' with options (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL) is "
			    "not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "DEL", "a", "b"),
			    "-ERR 'del' with several keys is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all"),
			    "-ERR 'acl|setuser' is not supported with engine = abd\r\n");
	/* Nothing was written by the refused commands; the supported ones still work. */
	expect_get(c, 1, "a", NULL);
	assert_string_equal(CMD(c, 0, "SET", "a", "1"), "+OK\r\n");
	expect_get(c, 2, "a", "1");
	assert_string_equal(CMD(c, 1, "PING"), "+PONG\r\n");
	cluster_free(c);
}

/* A follower crashes (rollback: it restarts on a copy of its data directory taken before the
 * writes; restart: on its own directory) while the others take new writes: it registers a new
 * incarnation through the Paxos log, fences, recovers by range digests, and serves the newest
 * values. */
static void restart_follower(bool rollback)
{
	struct cluster *c = cluster_new();
	int l, f;
	char k[16], v[32];

	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "old-%d", i);
		assert_string_equal(CMD(c, f, "SET", k, v), "+OK\r\n");
	}
	pump_ms(c, 50);
	if (rollback)
		shell("cp -a %s/r%d/data %s/r%d/copy", c->dir, f, c->dir, f);
	if (!rollback) {
		node_close(c, f);
	}
	for (int i = 0; i < 10; i += 2) {
		int via = (f + 1 + (i / 2) % 2) % N; /* the two others */

		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "new-%d", i);
		assert_string_equal(CMD(c, via, "SET", k, v), "+OK\r\n");
	}
	if (rollback) {
		node_close(c, f);
		shell("rm -rf %s/r%d/data && mv %s/r%d/copy %s/r%d/data", c->dir, f, c->dir, f,
		      c->dir, f);
	}
	node_open(c, f);
	assert_true(status_has(c, f, "\nabd_state:suspicious\r\n"));
	/* Refused while it recovers (retried inside, then TRYAGAIN), never stale. */
	wait_abd_ready(c, 8000);
	assert_true(status_u64(c, f, "abd_wal_records_restored") >= 10);
	/* The digests differed in the ranges of the new writes: fetched and adopted. */
	assert_true(status_u64(c, f, "abd_ranges_fetched") >= 1);
	assert_true(status_u64(c, f, "abd_items_adopted") >= 5);
	{
		struct msg_regidx reg = paxos_registration(c->nodes[f].r->p);

		assert_true(reg.epoch > 0 || reg.slot > 0); /* a registered new incarnation */
	}
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "%s-%d", i % 2 == 0 ? "new" : "old", i);
		expect_get(c, f, k, v);
	}
	/* And it coordinates writes again. */
	assert_string_equal(CMD(c, f, "SET", "key1", "after"), "+OK\r\n");
	expect_get(c, l, "key1", "after");
	cluster_free(c);
}

static void test_restart(void **state)
{
	(void)state;
	restart_follower(false);
}

static void test_rollback(void **state)
{
	(void)state;
	restart_follower(true);
}

/* Every replica crashes at once (recovery = auto): nobody can register, so the control plane
 * takes the epoch-restart path (DESIGN.md section 6); each data plane then recovers at its
 * new registration and the values acknowledged before the crash are read back. */
static void test_total_crash(void **state)
{
	struct cluster *c = cluster_new();
	char k[16], v[32];

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	for (int i = 0; i < 6; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "before-%d", i);
		assert_string_equal(CMD(c, i % N, "SET", k, v), "+OK\r\n");
	}
	for (int i = 0; i < N; i++)
		node_close(c, i);
	for (int i = 0; i < N; i++)
		node_open(c, i);
	wait_abd_ready(c, 30000);
	for (int i = 0; i < N; i++)
		assert_true(paxos_epoch(c->nodes[i].r->p) >= 1);
	for (int i = 0; i < 6; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "before-%d", i);
		expect_get(c, (i + 1) % N, k, v);
	}
	assert_string_equal(CMD(c, 2, "SET", "key0", "after"), "+OK\r\n");
	expect_get(c, 0, "key0", "after");
	cluster_free(c);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest basic[] = {
		cmocka_unit_test(test_set_get_del),
		cmocka_unit_test(test_unsupported),
	};
	const struct CMUnitTest restart[] = {
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_total_crash),
	};
	const char *group = argc > 1 ? argv[1] : "all";
	int rc = 0;

	if (strcmp(group, "basic") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_basic", basic, NULL, NULL);
	if (strcmp(group, "restart") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_restart", restart, NULL, NULL);
	return rc;
}
