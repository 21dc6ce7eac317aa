/* Snapshots in the replica engine (src/server/replica_snap.c) with three in-process replicas:
 * real sim platforms, real sealed WALs and snapshot files on the posix VFS, frames delivered by
 * the test, fsync jobs (which also seal snapshots and compact the WAL) run inline.
 *
 * The harness is tests/unit/replica_harness.c. Each replica runs with snapshot_every = 20
 * and, where the WAL must visibly shrink, 4 KiB WAL segments.
 *
 * Checks: 200 writes leave a snapshot file, a compacted WAL (its first segment gone) and a log
 * whose base moved; a restarted replica boots from snapshot + WAL and holds exactly the
 * leader's map; a follower that was down during 200 writes catches up by installing a snapshot;
 * a follower restarted on a copy of its data directory from before any snapshot (a rollback)
 * recovers and holds the newest values; a snapshot file from before a rollback beside a newer
 * WAL starts from the snapshot alone; a tampered snapshot is refused with a clear error when
 * the WAL was compacted, and ignored for the WAL alone when the WAL still starts at record 1;
 * a snapshot the disk refuses is counted, not fatal, and compacts nothing; allocation failures
 * during a boot from a snapshot; a restart of every replica (epoch restart) from snapshots. */
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
#include "server/replica_internal.h" /* the core, the kv, the applied slot */
#include "server/replica_snap.h"
#include "teems/err.h"

#include "replica_harness.h"

#define WRITES 200

/* Every replica takes a snapshot every 20 slots; `segment` is wal_segment_bytes. */
static struct cluster *cluster_new(const char *segment)
{
	const struct cluster_opts o = {
		.dir_prefix = "teems-snap",
		.snapshot_every = "20",
		.wal_segment_bytes = segment,
		.pump_sleep_us = 300,
		.probe_core = true,
	};

	return cluster_new_opts(&o);
}

/* Waits until replica i has applied everything the leader applied, then checks their maps
 * hold the same keys, values, versions and clock. */
static void wait_same_state(struct cluster *c, int l, int i, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		pump_ms(c, 10);
		if (alive(c, i) && c->nodes[i].r->applied_index >= c->nodes[l].r->applied_index)
			break;
	}
	assert_true(alive(c, i));
	if (c->nodes[i].r->applied_index != c->nodes[l].r->applied_index)
		fail_msg("r%d applied %llu, the leader r%d %llu", i,
			 (unsigned long long)c->nodes[i].r->applied_index, l,
			 (unsigned long long)c->nodes[l].r->applied_index);
	assert_true(kv_equal(c->nodes[i].r->kv, c->nodes[l].r->kv));
}

/* WRITES keys k0.. with values `prefix`-i, through the leader l. */
static void write_keys(struct cluster *c, int l, const char *prefix)
{
	char k[32], v[64];

	for (int i = 0; i < WRITES; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "%s-%d", prefix, i);
		assert_string_equal(CMD(c, l, "SET", k, v), "+OK\r\n");
	}
}

/* Every key read through replica i (a read on a follower goes to the leader's read index, so
 * wait_same_state is what checks the follower's own map). */
static void check_keys(struct cluster *c, int i, const char *prefix)
{
	char k[32], want[96], v[64];

	for (int j = 0; j < WRITES; j += 7) {
		snprintf(k, sizeof(k), "k%d", j);
		snprintf(v, sizeof(v), "%s-%d", prefix, j);
		snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(v), v);
		assert_string_equal(CMD(c, i, "GET", k), want);
	}
}

static void node_path(struct cluster *c, int i, const char *rel, char *out, size_t len)
{
	snprintf(out, len, "%s/r%d/data%s%s", c->dir, i, rel[0] ? "/" : "", rel);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static uint64_t snap_stat(struct cluster *c, int i, const char *key)
{
	const char *s = replica_snap_status(c->nodes[i].r), *p = strstr(s, key);

	if (p == NULL || p[strlen(key)] != ':')
		fail_msg("r%d: no %s in \"%s\"", i, key, s);
	return strtoull(p + strlen(key) + 1, NULL, 10);
}

/* 200 writes with a snapshot every 20 slots: a sealed snapshot, a compacted WAL, a moved log
 * base at every replica; a restarted follower boots from snapshot + WAL. */
static void test_take_compact_restart(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	char path[PATH_MAX + 64];
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	write_keys(c, l, "v");
	for (int i = 0; i < N; i++) {
		struct paxos_snapshot_stats st;

		wait_same_state(c, l, i, 3000);
		pump_ms(c, 20); /* the last snapshot's job */
		paxos_snapshot_stats(c->nodes[i].r->p, &st);
		assert_true(st.taken >= WRITES / 20 - 1);
		assert_true(paxos_snapshot_index(c->nodes[i].r->p) >= WRITES - 20);
		assert_true(snap_stat(c, i, "snapshot_index") >= WRITES - 20);
		assert_true(snap_stat(c, i, "snapshots_persisted") >= WRITES / 20 - 1);
		assert_int_equal(snap_stat(c, i, "snapshots_failed"), 0);
		node_path(c, i, "snapshot", path, sizeof(path));
		assert_true(exists(path));
		/* the first WAL segments went with compaction */
		node_path(c, i, "wal/wal-0000000000000001", path, sizeof(path));
		assert_false(exists(path));
	}
	/* a restart: the snapshot, then only the WAL records after it */
	node_close(c, f);
	node_open(c, f);
	assert_true(snap_stat(c, f, "snapshot_restored") >= WRITES - 20);
	assert_true(c->nodes[f].r->restored_records < 100);
	assert_true(kv_count(c->nodes[f].r->kv) > 0);
	wait_fresh(c, f, 5000);
	wait_same_state(c, l, f, 3000);
	check_keys(c, f, "v");
	assert_string_equal(CMD(c, f, "SET", "after", "1"), "+OK\r\n");
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

/* A snapshot that cannot be written (the host put a directory where its temporary file goes)
 * is counted, not fatal, and compacts nothing; once the disk lets it, the next one goes
 * through. */
static void test_write_fails(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	char tmp[PATH_MAX + 64], seg1[PATH_MAX + 64];
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	node_path(c, f, "snapshot.tmp", tmp, sizeof(tmp));
	node_path(c, f, "wal/wal-0000000000000001", seg1, sizeof(seg1));
	assert_int_equal(mkdir(tmp, 0700), 0);
	write_keys(c, l, "x");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);
	assert_true(snap_stat(c, f, "snapshots_failed") >= 1);
	assert_int_equal(snap_stat(c, f, "snapshots_persisted"), 0);
	assert_true(exists(seg1)); /* nothing compacted without a durable snapshot */
	assert_false(c->nodes[f].halted);
	assert_int_equal(rmdir(tmp), 0);
	write_keys(c, l, "y");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);
	assert_true(snap_stat(c, f, "snapshots_persisted") >= 1);
	assert_false(exists(seg1));
	check_keys(c, f, "y");
	cluster_free(c);
}

/* A boot from snapshot + WAL under allocation failures. */
static void test_alloc_failures(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	write_keys(c, l, "a");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);
	assert_true(snap_stat(c, f, "snapshots_persisted") >= 1);
	/* Allocations of a boot from snapshot + WAL fail (every fourth one: each open costs the
	 * platform's clock start, tens of ms): replica_open then returns an error and hands back
	 * nothing (the ASan build checks for leaks), and a later boot still finds the same state.
	 * The platform's allocations come first and are swept by test_replica's
	 * test_open_alloc_failures; they are counted here by an open that fails right after them (a
	 * file where the data directory should be), and skipped. */
	node_close(c, f);
	{
		char err[TEEMS_ERRBUF_LEN], data[PATH_MAX + 64];
		unsigned long before, platform, needed;
		FILE *fp;
		int rc;

		node_path(c, f, "", data, sizeof(data));
		shell("mv '%s' '%s.away'", data, data);
		fp = fopen(data, "w");
		assert_non_null(fp);
		fclose(fp);
		before = teems_alloc_count();
		assert_int_equal(node_try_open(c, f, err), TEEMS_EIO);
		platform = teems_alloc_count() - before;
		shell("rm '%s' && mv '%s.away' '%s'", data, data, data);
		before = teems_alloc_count();
		node_open(c, f);
		needed = teems_alloc_count() - before;
		node_close(c, f);
		assert_true(needed > platform + 10);
		for (unsigned long nth = platform > 5 ? platform - 5 : 0; nth < needed; nth += 4) {
			teems_alloc_fault((long)nth, 0);
			rc = node_try_open(c, f, err);
			teems_alloc_fault(-1, 0);
			if (rc == TEEMS_OK) { /* a fallback, or not reached */
				node_close(c, f);
				continue;
			}
			assert_null(c->nodes[f].r);
			if (rc != TEEMS_ENOMEM && rc != TEEMS_ECRYPTO)
				fail_msg("allocation %lu failed: %s (%s)", nth, teems_strerror(rc),
					 err);
		}
	}
	node_open(c, f);
	assert_true(snap_stat(c, f, "snapshot_restored") >= WRITES - 20);
	wait_fresh(c, f, 5000);
	wait_same_state(c, l, f, 3000);
	cluster_free(c);
}

/* A follower down during 200 writes: the others compacted what it misses, so it catches up by
 * installing a snapshot, which it then persists as its own. */
static void test_install_catch_up(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	struct paxos_snapshot_stats st;
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "early", "1"), "+OK\r\n");
	pump_ms(c, 50);
	node_close(c, f);
	write_keys(c, l, "w");
	pump_ms(c, 50);
	assert_true(paxos_snapshot_index(c->nodes[l].r->p) >= WRITES - 20);
	node_open(c, f);
	wait_fresh(c, f, 6000);
	wait_same_state(c, l, f, 3000);
	paxos_snapshot_stats(c->nodes[f].r->p, &st);
	assert_true(st.installed >= 1);
	assert_true(snap_stat(c, f, "snapshots_installed") >= 1);
	pump_ms(c, 50);
	assert_true(snap_stat(c, f, "snapshots_persisted") >= 1);
	check_keys(c, f, "w");
	/* what it installed is on its disk: a second restart boots from it */
	node_close(c, f);
	node_open(c, f);
	assert_true(snap_stat(c, f, "snapshot_restored") >= WRITES - 20);
	wait_fresh(c, f, 5000);
	wait_same_state(c, l, f, 3000);
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

/* Rollbacks. (1) A follower restarted on a copy of its whole data directory from before any
 * snapshot recovers and holds the newest values. (2) Its snapshot file from then put back
 * beside its newer, compacted WAL: the WAL does not continue that snapshot, so it starts from
 * the snapshot alone, and recovers again. */
static void test_rollback(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	char data[PATH_MAX + 64], snap[PATH_MAX + 64];
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "k0", "old"), "+OK\r\n");
	pump_ms(c, 50);
	node_close(c, f);
	node_path(c, f, "", data, sizeof(data));
	node_path(c, f, "snapshot", snap, sizeof(snap));
	assert_false(exists(snap)); /* before any snapshot */
	shell("cp -a '%s' '%s.old'", data, data);
	node_open(c, f);
	wait_fresh(c, f, 5000);
	write_keys(c, l, "new");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);
	shell("cp '%s' '%s.snap-mid'", snap, data);
	write_keys(c, l, "newer");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);

	/* (1) the whole directory rolled back */
	node_close(c, f);
	shell("rm -rf '%s' && mv '%s.old' '%s'", data, data, data);
	node_open(c, f);
	assert_int_equal(snap_stat(c, f, "snapshot_restored"), 0);
	wait_fresh(c, f, 6000);
	wait_same_state(c, l, f, 3000);
	check_keys(c, f, "newer");
	pump_ms(c, 50);

	/* (2) write more so its WAL compacts past the old snapshot, then put that one back */
	write_keys(c, l, "newest");
	wait_same_state(c, l, f, 3000);
	pump_ms(c, 50);
	node_close(c, f);
	shell("mv '%s.snap-mid' '%s'", data, snap);
	node_open(c, f);
	assert_true(snap_stat(c, f, "snapshot_restored") > 0);
	assert_int_equal(c->nodes[f].r->restored_records, 0);
	wait_fresh(c, f, 6000);
	wait_same_state(c, l, f, 3000);
	check_keys(c, f, "newest");
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

static void flip_byte(const char *path, long at)
{
	FILE *fp = fopen(path, "r+b");
	int ch;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, at, SEEK_SET), 0);
	ch = fgetc(fp);
	assert_true(ch != EOF);
	assert_int_equal(fseek(fp, at, SEEK_SET), 0);
	assert_true(fputc(ch ^ 0x20, fp) != EOF);
	assert_int_equal(fclose(fp), 0);
}

/* A tampered snapshot. With the WAL compacted the state cannot be restored: replica_open
 * refuses with a message that says why and what to do (no crash, nothing half started). With
 * 64 MiB segments nothing was ever compacted, the WAL still starts at record 1: it boots from
 * the WAL alone and recovers. */
static void test_tampered(void **state)
{
	const char *segments[2] = {"4KiB", "64MiB"};

	(void)state;
	for (int s = 0; s < 2; s++) {
		struct cluster *c = cluster_new(segments[s]);
		char err[TEEMS_ERRBUF_LEN] = "", snap[PATH_MAX + 64];
		int l, f, rc;

		l = wait_leader(c, 5000);
		f = (l + 1) % N;
		write_keys(c, l, "t");
		wait_same_state(c, l, f, 3000);
		pump_ms(c, 50);
		node_close(c, f);
		node_path(c, f, "snapshot", snap, sizeof(snap));
		assert_true(exists(snap));
		flip_byte(snap, 100); /* in the ciphertext */
		rc = node_try_open(c, f, err);
		if (s == 0) {
			assert_int_equal(rc, TEEMS_ECORRUPT);
			assert_null(c->nodes[f].r);
			assert_non_null(strstr(err, "does not authenticate"));
			assert_non_null(strstr(err, "no longer starts at its first record"));
			/* the header: refused alike */
			flip_byte(snap, 100);
			flip_byte(snap, 60);
			rc = node_try_open(c, f, err);
			assert_int_equal(rc, TEEMS_ECORRUPT);
			assert_non_null(strstr(err, "does not authenticate"));
		} else {
			assert_int_equal(rc, TEEMS_OK);
			assert_int_equal(snap_stat(c, f, "snapshot_restored"), 0);
			assert_true(c->nodes[f].r->restored_records > WRITES);
			wait_fresh(c, f, 5000);
			wait_same_state(c, l, f, 3000);
			check_keys(c, f, "t");
		}
		for (int i = 0; i < N; i++)
			assert_false(c->nodes[i].halted);
		cluster_free(c);
	}
}

/* Every replica closed and reopened after snapshots: all boot from snapshot + WAL, none can
 * register, so they run an epoch restart (recovery = auto, T_restart = 3 s here) and the data is
 * still there. */
static void test_total_restart(void **state)
{
	struct cluster *c = cluster_new("4KiB");
	int l;

	(void)state;
	l = wait_leader(c, 5000);
	write_keys(c, l, "e");
	for (int i = 0; i < N; i++)
		wait_same_state(c, l, i, 3000);
	pump_ms(c, 50);
	for (int i = 0; i < N; i++)
		node_close(c, i);
	for (int i = 0; i < N; i++) {
		node_open(c, i);
		assert_true(snap_stat(c, i, "snapshot_restored") >= WRITES - 20);
	}
	l = wait_leader(c, 8000);
	assert_true(paxos_epoch(c->nodes[l].r->p) >= 1);
	check_keys(c, l, "e");
	assert_string_equal(CMD(c, (l + 1) % N, "SET", "k0", "after"), "+OK\r\n");
	for (int i = 0; i < N; i++)
		if (i != l)
			wait_same_state(c, l, i, 3000);
	cluster_free(c);
}

/* `test_replica_snap take|install|fail|alloc|rollback|tamper|total` (tests/unit/daemon.cmake);
 * none: all.
 */
int main(int argc, char **argv)
{
	const struct {
		const char *name;
		struct CMUnitTest t;
	} tests[] = {
		{"take", cmocka_unit_test(test_take_compact_restart)},
		{"install", cmocka_unit_test(test_install_catch_up)},
		{"fail", cmocka_unit_test(test_write_fails)},
		{"alloc", cmocka_unit_test(test_alloc_failures)},
		{"rollback", cmocka_unit_test(test_rollback)},
		{"tamper", cmocka_unit_test(test_tampered)},
		{"total", cmocka_unit_test(test_total_restart)},
	};
	const char *group = argc > 1 ? argv[1] : "all";
	int failed = 0;

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct CMUnitTest one[] = {tests[i].t};

		if (strcmp(group, "all") == 0 || strcmp(group, tests[i].name) == 0)
			failed += cmocka_run_group_tests_name(tests[i].name, one, NULL, NULL);
	}
	return failed;
}
