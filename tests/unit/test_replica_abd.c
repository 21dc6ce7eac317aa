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
 * engine:abd with the ABD core's state.
 *
 * WAL compaction (docs/ABD.md "WAL compaction"), groups `snap`, `snapcrash` and `disk`: overwriting
 * a few keys many times with a small snapshot_every keeps the number of ABD WAL segments bounded
 * and every value readable, across a restart of every replica; a tombstone compacted into a
 * snapshot keeps a stale value on a replica that missed the DEL from coming back after a crash
 * of all three; a tampered snapshot is refused with the operator's message (the WAL was
 * compacted) while the others serve, and moving the directory aside lets the replica recover
 * from its peers. On memvfs, with the replica's own storage functions (rp_abd_snap_build,
 * rp_abd_snap_persist, rp_abd_disk_open): a power loss at every sync of a run of appends and
 * snapshots restarts on exactly the state of the WAL prefix it finds, never shorter than what
 * was synced; a tampered snapshot over an uncompacted WAL falls back to the WAL alone. And a
 * power loss at every sync of one snapshot of a real replica's directory (copied into memvfs
 * and back) restores exactly the state from before it, and the replica restarts on it and
 * serves. */
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
#include <dirent.h>

#include "common/alloc.h"
#include "core/abd.h"
#include "core/paxos.h"
#include "kv/kv.h"
#include "server/config.h"
#include "server/replica.h"
#include "server/replica_abd.h"
#include "server/replica_internal.h" /* the Paxos core */
#include "store/memvfs.h"
#include "store/snapshot.h"
#include "store/wal.h"
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

/* ---- WAL compaction: the replica engine (posix) ---- */

static struct cluster *snap_cluster_new(void)
{
	const struct cluster_opts o = {
		.dir_prefix = "teems-abdsnap",
		.engine = "abd",
		.snapshot_every = "20",
		.wal_segment_bytes = "4KiB",
		.pump_sleep_us = 300,
		.probe_core = true,
	};

	return cluster_new_opts(&o);
}

static int wal_segments(struct cluster *c, int i)
{
	char path[PATH_MAX + 32];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/r%d/data/abd", c->dir, i);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "wal-", 4) == 0;
	closedir(d);
	return n;
}

#define SNAP_KEYS 5

static void snap_value(char *v, size_t len, int key, int round)
{
	/* ~100 bytes, so that a 4 KiB segment holds a few dozen records */
	snprintf(v, len, "value-%d-%d-%080d", key, round, round);
}

static void test_snap_bounded(void **state)
{
	struct cluster *c = snap_cluster_new();
	char k[16], v[128];
	int max_segs = 0;

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	for (int round = 0; round < 60; round++) {
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			snap_value(v, sizeof(v), key, round);
			assert_string_equal(CMD(c, (round + key) % N, "SET", k, v), "+OK\r\n");
		}
		for (int i = 0; i < N; i++)
			if (wal_segments(c, i) > max_segs)
				max_segs = wal_segments(c, i);
	}
	pump_ms(c, 50);
	/* 300 records of ~150 bytes at every replica: 11 or more 4 KiB segments without
	 * compaction; a snapshot every 20 records keeps a handful. */
	assert_true(max_segs <= 4);
	for (int i = 0; i < N; i++) {
		assert_true(status_u64(c, i, "abd_snapshots_persisted") >= 5);
		assert_int_equal(status_u64(c, i, "abd_snapshots_failed"), 0);
		assert_true(status_u64(c, i, "abd_snapshot_index") >= 200);
		assert_true(status_u64(c, i, "abd_wal_since_snapshot") < 40);
	}
	assert_string_equal(CMD(c, 1, "DEL", "key4"), ":1\r\n");
	/* Restart every replica in turn: each comes back from its snapshot and WAL tail. */
	for (int i = 0; i < N; i++) {
		node_close(c, i);
		node_open(c, i);
		assert_true(status_has(c, i, "\nabd_state:suspicious\r\n"));
		assert_true(status_u64(c, i, "abd_snapshot_restored") >= SNAP_KEYS);
		/* Its own copy, before it talks to anyone: every key (key4's tombstone too). */
		assert_int_equal(status_u64(c, i, "abd_keys"), SNAP_KEYS);
		wait_abd_ready(c, 10000);
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			snap_value(v, sizeof(v), key, 59);
			expect_get(c, i, k, key == 4 ? NULL : v);
		}
	}
	cluster_free(c);
}

/* A replica (2) keeps an old value of `gone` while the two others delete it and compact the
 * tombstone's record away into their snapshots; then all three crash. Recovery adopts the
 * highest timestamp per key: only the snapshot's tombstone keeps the old value from coming
 * back. The GET answers after the restart are those from before it. */
static void test_snap_tombstone(void **state)
{
	struct cluster *c = snap_cluster_new();
	char k[16], v[128];
	char before[SNAP_KEYS][160];
	uint64_t restored;

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	assert_string_equal(CMD(c, 0, "SET", "gone", "stale-value"), "+OK\r\n");
	pump_ms(c, 100);
	node_close(c, 2);
	assert_string_equal(CMD(c, 0, "DEL", "gone"), ":1\r\n");
	for (int round = 0; round < 16; round++)
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			snap_value(v, sizeof(v), key, round);
			assert_string_equal(CMD(c, (round + key) % 2, "SET", k, v), "+OK\r\n");
		}
	pump_ms(c, 50);
	for (int i = 0; i < 2; i++) {
		assert_true(status_u64(c, i, "abd_snapshots_persisted") >= 2);
		/* the DEL's record (about the third) is compacted away */
		assert_true(status_u64(c, i, "abd_snapshot_index") >= 40);
	}
	expect_get(c, 0, "gone", NULL);
	for (int key = 0; key < SNAP_KEYS; key++) {
		snprintf(k, sizeof(k), "key%d", key);
		snprintf(before[key], sizeof(before[key]), "%s", CMD(c, key % 2, "GET", k));
	}
	node_close(c, 0);
	node_close(c, 1);
	for (int i = 0; i < N; i++)
		node_open(c, i);
	restored = status_u64(c, 0, "abd_snapshot_restored");
	wait_abd_ready(c, 30000);
	for (int i = 0; i < N; i++) {
		expect_get(c, i, "gone", NULL);
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			assert_string_equal(CMD(c, i, "GET", k), before[key]);
		}
	}
	/* Checked last, so that the GETs above show the symptom of a lost tombstone first. */
	assert_true(restored >= SNAP_KEYS + 1);
	cluster_free(c);
}

/* A tampered snapshot over a compacted WAL: refused with the operator's message, no crash; the
 * others keep serving; moving the data plane's directory aside (the message's way out) lets
 * the replica restart empty and recover every value from its peers. */
static void test_snap_tampered(void **state)
{
	struct cluster *c = snap_cluster_new();
	char err[TEEMS_ERRBUF_LEN] = "", path[PATH_MAX + 64], k[16], v[128];
	FILE *f;
	int ch;

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	for (int round = 0; round < 12; round++)
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			snap_value(v, sizeof(v), key, round);
			assert_string_equal(CMD(c, key % N, "SET", k, v), "+OK\r\n");
		}
	pump_ms(c, 50);
	assert_true(status_u64(c, 1, "abd_snapshots_persisted") >= 2);
	node_close(c, 1);
	snprintf(path, sizeof(path), "%s/r1/data/abd/" STORE_SNAPSHOT_NAME, c->dir);
	f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, STORE_SNAPSHOT_HEADER_LEN + 3, SEEK_SET), 0);
	ch = fgetc(f);
	assert_int_equal(fseek(f, STORE_SNAPSHOT_HEADER_LEN + 3, SEEK_SET), 0);
	fputc(ch ^ 0x40, f);
	fclose(f);
	assert_int_equal(node_try_open(c, 1, err), TEEMS_ECORRUPT);
	assert_non_null(strstr(err, "does not authenticate"));
	assert_non_null(strstr(err, "no longer starts at its first record"));
	c->nodes[1].r = NULL;
	/* The two others serve on. */
	assert_string_equal(CMD(c, 0, "SET", "key0", "while-r1-is-down"), "+OK\r\n");
	expect_get(c, 2, "key0", "while-r1-is-down");
	/* The operator's way out. */
	shell("mv %s/r1/data/abd %s/r1/abd-aside", c->dir, c->dir);
	node_open(c, 1);
	wait_abd_ready(c, 10000);
	expect_get(c, 1, "key0", "while-r1-is-down");
	for (int key = 1; key < SNAP_KEYS; key++) {
		snprintf(k, sizeof(k), "key%d", key);
		snap_value(v, sizeof(v), key, 11);
		expect_get(c, 1, k, v);
	}
	cluster_free(c);
}

/* ---- WAL compaction: the storage steps on memvfs ---- */

#define DK_KEYS 6
#define DK_DIR "abd"

struct dk {
	struct store_vfs *vfs;
	struct rp_abd_disk d;
	uint8_t wal_key[STORE_WAL_ROOT_KEY_LEN], snap_key[STORE_WAL_ROOT_KEY_LEN];
	uint8_t **recs; /* every record appended, recs[i] has WAL index i + 1 */
	size_t *lens;
	size_t n, cap;
	uint64_t ts_seq, rng;
	uint64_t durable; /* WAL index the last successful sync reached */
	uint64_t snapshots;
	int force; /* dk_append: 0 random, 1 a register, 2 a RECOVERED marker */
};

static uint64_t dk_rand(struct dk *k)
{
	uint64_t z = (k->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct dk *dk_new(uint64_t seed, uint64_t segment_size)
{
	struct dk *k = calloc(1, sizeof(*k));

	assert_non_null(k);
	k->vfs = memvfs_new(seed, 0);
	assert_non_null(k->vfs);
	assert_int_equal(store_vfs_mkdir(k->vfs, DK_DIR), TEEMS_OK);
	k->rng = seed;
	memset(k->wal_key, 0x11, sizeof(k->wal_key));
	memset(k->snap_key, 0x22, sizeof(k->snap_key));
	k->d.vfs = k->vfs;
	k->d.dir = DK_DIR;
	k->d.replica_id = 0;
	k->d.wal_key = k->wal_key;
	k->d.snap_key = k->snap_key;
	k->d.segment_size = segment_size;
	return k;
}

static void dk_truncate(struct dk *k, size_t n)
{
	while (k->n > n)
		free(k->recs[--k->n]);
}

static void dk_free(struct dk *k)
{
	dk_truncate(k, 0);
	free(k->recs);
	free(k->lens);
	store_vfs_destroy(k->vfs);
	free(k);
}

static struct abd *dk_core(void)
{
	struct abd_config ac;
	struct abd *a = NULL;
	char err[TEEMS_ERRBUF_LEN];

	abd_config_default(&ac);
	assert_int_equal(quorum_init(&ac.quorum, 3, 1, 1, err), TEEMS_OK);
	ac.self = 0;
	ac.restarted = true;
	/* A restored core is then fresh at once and stores what a peer writes: next_seq_probe
	 * can see the seq it continues from without trusting abd_snapshot_records. */
	ac.unsafe = ABD_UNSAFE_NO_RECOVERY;
	assert_int_equal(abd_new(&a, &ac, err), TEEMS_OK);
	return a;
}

/* One register record (now and then a RECOVERED marker) with seq = its WAL index, appended to
 * the WAL and restored into `live` (what the core would hold). */
static int dk_append(struct dk *k, struct store_wal *wal, struct abd *live)
{
	struct abd_persist p;
	char key[8], val[160];
	uint8_t buf[512];
	size_t len = 0;
	uint64_t index = 0;
	int rc;

	memset(&p, 0, sizeof(p));
	p.seq = k->n + 1;
	if (k->force == 2 || (k->force == 0 && dk_rand(k) % 12 == 0)) {
		p.flags = ABD_REC_RECOVERED;
	} else {
		snprintf(key, sizeof(key), "k%u", (unsigned)(dk_rand(k) % DK_KEYS));
		snprintf(val, sizeof(val), "v%llu-%0*d", (unsigned long long)p.seq,
			 (int)(dk_rand(k) % 100), 7);
		p.flags = ABD_REC_REGISTER;
		p.key = (const uint8_t *)key;
		p.key_len = (uint32_t)strlen(key);
		p.ts.seq = ++k->ts_seq;
		p.ts.replica = (uint16_t)(dk_rand(k) % 3);
		p.ts.op = p.seq;
		p.tombstone = dk_rand(k) % 5 == 0;
		p.value = p.tombstone ? NULL : (const uint8_t *)val;
		p.len = p.tombstone ? 0 : (uint32_t)strlen(val);
	}
	assert_int_equal(abd_persist_encode(&p, buf, sizeof(buf), &len), TEEMS_OK);
	rc = store_wal_append(wal, buf, len, &index);
	if (rc != TEEMS_OK)
		return rc;
	assert_int_equal(index, k->n + 1);
	assert_int_equal(abd_restore(live, buf, len), TEEMS_OK);
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 64;
		k->recs = realloc(k->recs, k->cap * sizeof(*k->recs));
		k->lens = realloc(k->lens, k->cap * sizeof(*k->lens));
		assert_true(k->recs != NULL && k->lens != NULL);
	}
	k->recs[k->n] = malloc(len);
	assert_non_null(k->recs[k->n]);
	memcpy(k->recs[k->n], buf, len);
	k->lens[k->n++] = len;
	return TEEMS_OK;
}

static int dk_sync(struct dk *k, struct store_wal *wal, struct store_wal_pos *synced)
{
	char err[TEEMS_ERRBUF_LEN];
	int rc = store_wal_sync(wal, synced, err);

	if (rc == TEEMS_OK)
		k->durable = synced->index;
	return rc;
}

/* The replica's order: build on the "loop" bound to the appended position, more appends, the
 * job's WAL sync, then rp_abd_snap_persist (seal, compact). */
static int dk_snapshot(struct dk *k, struct store_wal *wal, struct abd *live)
{
	struct store_wal_pos covers, synced;
	char err[TEEMS_ERRBUF_LEN] = "";
	uint8_t *payload = NULL;
	size_t len = 0;
	uint64_t n = 0;
	bool written = false;
	int rc;

	assert_int_equal(rp_abd_snap_build(live, &payload, &len, &n), TEEMS_OK);
	store_wal_position(wal, &covers, NULL);
	assert_int_equal(covers.index, k->n);
	rc = dk_append(k, wal, live);
	if (rc == TEEMS_OK)
		rc = dk_append(k, wal, live);
	if (rc == TEEMS_OK)
		rc = dk_sync(k, wal, &synced);
	if (rc == TEEMS_OK)
		rc = rp_abd_snap_persist(&k->d, wal, &synced, &covers, payload, len, &written, err);
	if (rc == TEEMS_OK)
		k->snapshots++;
	teems_free(payload);
	return rc;
}

/* nrec appends with a sync every 7 and a snapshot every 25; stops at the first error. */
static int dk_run(struct dk *k, struct store_wal *wal, struct abd *live, int nrec)
{
	struct store_wal_pos synced;
	int rc = TEEMS_OK;

	for (int i = 1; i <= nrec && rc == TEEMS_OK; i++) {
		rc = dk_append(k, wal, live);
		if (rc == TEEMS_OK && i % 7 == 0)
			rc = dk_sync(k, wal, &synced);
		if (rc == TEEMS_OK && i % 25 == 0)
			rc = dk_snapshot(k, wal, live);
	}
	return rc;
}

struct canon {
	char **lines;
	size_t n, cap;
};

static int canon_add(void *arg, const struct abd_persist *p)
{
	struct canon *c = arg;
	char line[512];
	int off;

	off = snprintf(line, sizeof(line), "%u %llu %.*s %llu.%u.%llu.%llu.%llu %d ", p->flags,
		       (unsigned long long)p->seq, (int)p->key_len, (const char *)p->key,
		       (unsigned long long)p->ts.seq, p->ts.replica,
		       (unsigned long long)p->ts.reg.epoch, (unsigned long long)p->ts.reg.slot,
		       (unsigned long long)p->ts.op, p->tombstone);
	snprintf(line + off, sizeof(line) - (size_t)off, "%.*s", (int)p->len,
		 p->len ? (const char *)p->value : "");
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->lines = realloc(c->lines, c->cap * sizeof(*c->lines));
		assert_non_null(c->lines);
	}
	c->lines[c->n] = strdup(line);
	assert_non_null(c->lines[c->n]);
	c->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What a restore derives, as one string: suspicion, the number of registers, every register
 * with its timestamp, value or tombstone and record seq, and the seq the core continues from
 * when no register holds it (abd_snapshot_records' RECOVERED record; next_seq_probe checks
 * that seq without trusting this function). */
static char *canon(struct abd *a)
{
	struct canon c = {0};
	size_t total = 64;
	char *out, *p;

	assert_int_equal(abd_snapshot_records(a, canon_add, &c), 0);
	if (c.n > 0)
		qsort(c.lines, c.n, sizeof(*c.lines), cmp_str);
	for (size_t i = 0; i < c.n; i++)
		total += strlen(c.lines[i]) + 1;
	out = malloc(total);
	assert_non_null(out);
	p = out + sprintf(out, "suspicious=%d keys=%zu\n", abd_suspicious(a), abd_keys(a));
	for (size_t i = 0; i < c.n; i++) {
		p += sprintf(p, "%s\n", c.lines[i]);
		free(c.lines[i]);
	}
	free(c.lines);
	return out;
}

/* The seq of the next record core a writes (it is stepped afterwards: the last use of a). */
static uint64_t next_seq_probe(struct abd *a)
{
	struct abd_input in;
	struct abd_ready rd;
	struct msg m;
	uint64_t seq;

	memset(&m, 0, sizeof(m));
	m.type = MSG_ABD_WRITE;
	m.from.replica = 1;
	m.nonce = 1;
	m.abd_write.key.p = (const uint8_t *)"probe";
	m.abd_write.key.len = 5;
	m.abd_write.ts.seq = 1ull << 40;
	m.abd_write.ts.replica = 1;
	m.abd_write.value.p = (const uint8_t *)"x";
	m.abd_write.value.len = 1;
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_MESSAGE;
	in.message = &m;
	abd_ready_init(&rd);
	assert_int_equal(abd_step(a, &in, &rd), TEEMS_OK);
	assert_int_equal(rd.n_persist, 1);
	seq = rd.persist[0].seq;
	abd_ready_free(&rd);
	return seq;
}

/* The core abd_restore of WAL records 1..e gives. */
static char *dk_model(struct dk *k, size_t e)
{
	struct abd *m = dk_core();
	char *s;

	for (size_t i = 0; i < e; i++)
		assert_int_equal(abd_restore(m, k->recs[i], k->lens[i]), TEEMS_OK);
	s = canon(m);
	abd_free(m);
	return s;
}

/* Reopens, checks the restored core against the model of the prefix it found (never shorter
 * than what was synced), and leaves k's record list at that prefix. */
static void dk_reopen_check(struct dk *k, struct abd **live, struct store_wal **wal,
			    struct rp_abd_opened *o)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	char *got, *want;
	int rc;

	*live = dk_core();
	rc = rp_abd_disk_open(&k->d, *live, wal, o, err);
	if (rc != TEEMS_OK)
		fail_msg("reopen: %s (%s)", teems_strerror(rc), err);
	assert_true(o->info.end.index >= k->durable);
	assert_true(o->info.end.index <= k->n);
	dk_truncate(k, (size_t)o->info.end.index);
	k->durable = o->info.end.index; /* the open synced what it found */
	got = canon(*live);
	want = dk_model(k, k->n);
	assert_string_equal(got, want);
	free(got);
	free(want);
	/* The seq continues above every record found (dk_append: seq == WAL index). The probe
	 * steps the core: the run goes on with the model's core, equal to it as just checked. */
	assert_int_equal(next_seq_probe(*live), k->n + 1);
	abd_free(*live);
	*live = dk_core();
	for (size_t i = 0; i < k->n; i++)
		assert_int_equal(abd_restore(*live, k->recs[i], k->lens[i]), TEEMS_OK);
}

static void test_disk_power_loss(void **state)
{
	static const int actions[] = {MEMVFS_HOOK_CRASH_BEFORE, MEMVFS_HOOK_CRASH_AFTER};
	static const enum memvfs_crash_mode modes[] = {MEMVFS_DROP, MEMVFS_RANDOM};
	uint64_t runs = 0, from_snapshot = 0;

	(void)state;
	for (size_t m = 0; m < 2; m++)
		for (size_t a = 0; a < 2; a++)
			for (uint64_t nth = 1;; nth++) {
				struct dk *k = dk_new(nth * 7 + m * 3 + a, 4096);
				struct store_wal *wal = NULL;
				struct rp_abd_opened o;
				struct abd *live = dk_core();
				char err[TEEMS_ERRBUF_LEN] = "";
				int rc;

				memvfs_crash_at_sync(k->vfs, nth, actions[a], modes[m]);
				rc = rp_abd_disk_open(&k->d, live, &wal, &o, err);
				if (rc == TEEMS_OK)
					rc = dk_run(k, wal, live, 120);
				store_wal_close(wal);
				abd_free(live);
				memvfs_crash_at_sync(k->vfs, 0, 0, MEMVFS_DROP);
				if (rc == TEEMS_OK) { /* nth is past the last sync: done */
					dk_free(k);
					assert_true(nth > 30); /* the run's syncs */
					break;
				}
				runs++;
				dk_reopen_check(k, &live, &wal, &o);
				from_snapshot += o.snapshot;
				/* It goes on from there, snapshots and compacts again, and a clean
				 * restart finds everything. */
				assert_int_equal(dk_run(k, wal, live, 60), TEEMS_OK);
				store_wal_close(wal);
				abd_free(live);
				dk_reopen_check(k, &live, &wal, &o);
				assert_true(o.snapshot);
				store_wal_close(wal);
				abd_free(live);
				dk_free(k);
			}
	/* Crashes early in a run restart from the WAL alone, later ones from a snapshot. */
	assert_true(runs >= 120);
	assert_true(from_snapshot >= runs / 2);
}

/* The WAL stays bounded: with 4 KiB segments, 1,000 records leave a few segments. */
static void test_disk_bounded(void **state)
{
	struct dk *k = dk_new(42, 4096);
	struct store_wal *wal = NULL;
	struct rp_abd_opened o;
	struct store_dirlist l = {0};
	struct abd *live = dk_core();
	char err[TEEMS_ERRBUF_LEN] = "";
	size_t segs = 0;

	(void)state;
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_OK);
	assert_int_equal(dk_run(k, wal, live, 1000), TEEMS_OK);
	assert_true(k->snapshots >= 39);
	assert_int_equal(store_vfs_list(k->vfs, DK_DIR, &l), TEEMS_OK);
	for (size_t i = 0; i < l.n; i++)
		segs += strncmp(l.names[i], "wal-", 4) == 0;
	store_dirlist_free(&l);
	assert_true(segs <= 3);
	store_wal_close(wal);
	abd_free(live);
	dk_reopen_check(k, &live, &wal, &o);
	assert_true(o.snapshot);
	assert_true(o.snapshot_records <= DK_KEYS + 1);
	store_wal_close(wal);
	abd_free(live);
	dk_free(k);
}

/* The seq continues across a snapshot that ends on a RECOVERED marker (nothing after it in the
 * WAL): the restored core writes its next record above the marker, not above the highest
 * register. */
static void test_disk_seq_continuity(void **state)
{
	struct dk *k = dk_new(9, 4096);
	struct store_wal *wal = NULL;
	struct store_wal_pos covers, synced;
	struct rp_abd_opened o;
	struct abd *live = dk_core();
	char err[TEEMS_ERRBUF_LEN] = "";
	uint8_t *payload = NULL;
	size_t len = 0;
	uint64_t n = 0;
	bool written = false;

	(void)state;
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_OK);
	k->force = 1;
	for (int i = 0; i < 40; i++)
		assert_int_equal(dk_append(k, wal, live), TEEMS_OK);
	k->force = 2;
	for (int i = 0; i < 3; i++)
		assert_int_equal(dk_append(k, wal, live), TEEMS_OK);
	assert_int_equal(rp_abd_snap_build(live, &payload, &len, &n), TEEMS_OK);
	store_wal_position(wal, &covers, NULL);
	assert_int_equal(dk_sync(k, wal, &synced), TEEMS_OK);
	assert_int_equal(
		rp_abd_snap_persist(&k->d, wal, &synced, &covers, payload, len, &written, err),
		TEEMS_OK);
	assert_true(written);
	teems_free(payload);
	store_wal_close(wal);
	abd_free(live);
	dk_reopen_check(k, &live, &wal, &o); /* probes seq 44 */
	assert_true(o.snapshot);
	assert_int_equal(o.wal_records, 0);
	store_wal_close(wal);
	abd_free(live);
	dk_free(k);
}

/* A tampered snapshot: with the WAL still whole (one large segment, nothing compacted) the WAL
 * alone is restored; once compaction removed records, the open is refused and says what to
 * do. Another replica's snapshot (another key) is refused alike. */
static void test_disk_tampered(void **state)
{
	struct dk *k = dk_new(7, 1u << 20);
	struct store_wal *wal = NULL;
	struct rp_abd_opened o;
	struct abd *live = dk_core();
	char err[TEEMS_ERRBUF_LEN] = "";
	uint8_t *data = NULL;
	size_t len = 0;
	char *got, *want;

	(void)state;
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_OK);
	assert_int_equal(dk_run(k, wal, live, 60), TEEMS_OK);
	assert_true(k->snapshots >= 2);
	store_wal_close(wal);
	abd_free(live);
	assert_int_equal(memvfs_get(k->vfs, DK_DIR "/" STORE_SNAPSHOT_NAME, &data, &len), TEEMS_OK);
	data[len - 1] ^= 1;
	assert_int_equal(memvfs_put(k->vfs, DK_DIR "/" STORE_SNAPSHOT_NAME, data, len), TEEMS_OK);
	live = dk_core();
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_OK);
	assert_false(o.snapshot);
	assert_non_null(strstr(o.why, "does not authenticate"));
	assert_int_equal(o.wal_records, k->durable); /* the records after the last sync are lost */
	dk_truncate(k, (size_t)k->durable);
	got = canon(live);
	want = dk_model(k, k->n);
	assert_string_equal(got, want);
	free(got);
	free(want);
	store_wal_close(wal);
	abd_free(live);
	dk_free(k);

	/* Compacted: refused, nothing restored, no crash. */
	k = dk_new(8, 4096);
	live = dk_core();
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_OK);
	assert_int_equal(dk_run(k, wal, live, 200), TEEMS_OK);
	store_wal_close(wal);
	abd_free(live);
	teems_free(data);
	assert_int_equal(memvfs_get(k->vfs, DK_DIR "/" STORE_SNAPSHOT_NAME, &data, &len), TEEMS_OK);
	data[STORE_SNAPSHOT_HEADER_LEN + 5] ^= 0x80;
	assert_int_equal(memvfs_put(k->vfs, DK_DIR "/" STORE_SNAPSHOT_NAME, data, len), TEEMS_OK);
	live = dk_core();
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_ECORRUPT);
	assert_null(wal);
	assert_non_null(strstr(err, "no longer starts at its first record"));
	assert_int_equal(abd_keys(live), 0);
	abd_free(live);
	/* Another replica's key: refused alike. */
	data[STORE_SNAPSHOT_HEADER_LEN + 5] ^= 0x80;
	assert_int_equal(memvfs_put(k->vfs, DK_DIR "/" STORE_SNAPSHOT_NAME, data, len), TEEMS_OK);
	memset(k->snap_key, 0x33, sizeof(k->snap_key));
	live = dk_core();
	assert_int_equal(rp_abd_disk_open(&k->d, live, &wal, &o, err), TEEMS_ECORRUPT);
	abd_free(live);
	/* The right key again: it loads. */
	memset(k->snap_key, 0x22, sizeof(k->snap_key));
	dk_reopen_check(k, &live, &wal, &o);
	assert_true(o.snapshot);
	store_wal_close(wal);
	abd_free(live);
	teems_free(data);
	dk_free(k);
}

/* ---- a power loss at every sync of a snapshot, then the real replica ---- */

/* Every regular file of posix directory `from` into memvfs directory `to` (created). */
static void copy_in(const char *from, struct store_vfs *vfs, const char *to)
{
	char path[PATH_MAX + 300], mpath[300];
	struct dirent *e;
	DIR *d = opendir(from);

	assert_non_null(d);
	assert_int_equal(store_vfs_mkdir(vfs, to), TEEMS_OK);
	while ((e = readdir(d)) != NULL) {
		static uint8_t buf[1 << 20];
		size_t len;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", from, e->d_name);
		snprintf(mpath, sizeof(mpath), "%s/%s", to, e->d_name);
		f = fopen(path, "rb");
		assert_non_null(f);
		len = fread(buf, 1, sizeof(buf), f);
		assert_true(feof(f));
		fclose(f);
		assert_int_equal(memvfs_put(vfs, mpath, buf, len), TEEMS_OK);
	}
	closedir(d);
}

/* memvfs directory `from` (what survived) replaces every file of posix directory `to`. */
static void copy_out(struct store_vfs *vfs, const char *from, const char *to)
{
	char path[PATH_MAX + 300], mpath[300];
	struct store_dirlist l = {0};
	struct dirent *e;
	DIR *d = opendir(to);

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", to, e->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
	assert_int_equal(store_vfs_list(vfs, from, &l), TEEMS_OK);
	for (size_t i = 0; i < l.n; i++) {
		uint8_t *data = NULL;
		size_t len = 0;
		FILE *f;

		snprintf(mpath, sizeof(mpath), "%s/%s", from, l.names[i]);
		snprintf(path, sizeof(path), "%s/%s", to, l.names[i]);
		assert_int_equal(memvfs_get(vfs, mpath, &data, &len), TEEMS_OK);
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(data ? data : (uint8_t *)"", 1, len, f), len);
		fclose(f);
		teems_free(data);
	}
	store_dirlist_free(&l);
}

/* The core replica 1 restores from memvfs directory "abd" of src (opened on a copy: src is
 * left as it is), as a string (canon). */
static char *dir_state(struct store_vfs *src, const uint8_t *wal_key, const uint8_t *snap_key)
{
	struct store_vfs *vfs = memvfs_new(1, 0);
	struct rp_abd_disk d = {
		.vfs = vfs,
		.dir = "abd",
		.replica_id = 1,
		.wal_key = wal_key,
		.snap_key = snap_key,
		.segment_size = 4096,
	};
	char err[TEEMS_ERRBUF_LEN] = "", mpath[300];
	struct store_dirlist l = {0};
	struct store_wal *wal = NULL;
	struct rp_abd_opened o;
	struct abd_config ac;
	struct abd *core = NULL;
	char *state;
	int rc;

	assert_non_null(vfs);
	assert_int_equal(store_vfs_mkdir(vfs, "abd"), TEEMS_OK);
	assert_int_equal(store_vfs_list(src, "abd", &l), TEEMS_OK);
	for (size_t i = 0; i < l.n; i++) {
		uint8_t *data = NULL;
		size_t len = 0;

		snprintf(mpath, sizeof(mpath), "abd/%s", l.names[i]);
		assert_int_equal(memvfs_get(src, mpath, &data, &len), TEEMS_OK);
		assert_int_equal(memvfs_put(vfs, mpath, data ? data : (uint8_t *)"", len),
				 TEEMS_OK);
		teems_free(data);
	}
	store_dirlist_free(&l);
	abd_config_default(&ac);
	assert_int_equal(quorum_init(&ac.quorum, 3, 1, 1, err), TEEMS_OK);
	ac.self = 1;
	ac.restarted = true;
	assert_int_equal(abd_new(&core, &ac, err), TEEMS_OK);
	rc = rp_abd_disk_open(&d, core, &wal, &o, err);
	if (rc != TEEMS_OK)
		fail_msg("the data plane does not open: %s", err);
	state = canon(core);
	store_wal_close(wal);
	abd_free(core);
	store_vfs_destroy(vfs);
	return state;
}

/* Replica 1's data plane, as its last run left it, goes through one more snapshot (open,
 * build, WAL sync, seal, compact: the functions the replica runs) on memvfs, with a power loss
 * at sync nth. What survived restores exactly the state from before the snapshot (a copy is
 * opened to check), becomes its directory, and the real replica restarts on it: its own copy
 * holds every register, and it recovers and serves the current values. */
static void test_snap_power_loss(void **state)
{
	static const int actions[] = {MEMVFS_HOOK_CRASH_BEFORE, MEMVFS_HOOK_CRASH_AFTER};
	struct cluster *c = snap_cluster_new();
	uint8_t wal_key[TEE_KEY_LEN], snap_key[TEE_KEY_LEN];
	char abd_dir[PATH_MAX + 32], pristine[PATH_MAX + 32], k[16], v[128];
	char *want, *got;
	unsigned restarts = 0;

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	for (int round = 0; round < 9; round++)
		for (int key = 0; key < SNAP_KEYS; key++) {
			snprintf(k, sizeof(k), "key%d", key);
			snap_value(v, sizeof(v), key, round);
			assert_string_equal(CMD(c, key % N, "SET", k, v), "+OK\r\n");
		}
	assert_string_equal(CMD(c, 0, "DEL", "key4"), ":1\r\n");
	pump_ms(c, 50);
	assert_true(status_u64(c, 1, "abd_snapshots_persisted") >= 1);
	assert_int_equal(tee_seal_key(replica_tee(c->nodes[1].r), "abd-wal", wal_key), TEEMS_OK);
	assert_int_equal(tee_seal_key(replica_tee(c->nodes[1].r), "abd-snap", snap_key), TEEMS_OK);
	node_close(c, 1);
	snprintf(abd_dir, sizeof(abd_dir), "%s/r1/data/abd", c->dir);
	snprintf(pristine, sizeof(pristine), "%s/r1/abd-pristine", c->dir);
	shell("cp -a %s %s", abd_dir, pristine);
	{
		struct store_vfs *vfs = memvfs_new(1, 0);

		assert_non_null(vfs);
		copy_in(pristine, vfs, "abd");
		want = dir_state(vfs, wal_key, snap_key);
		store_vfs_destroy(vfs);
	}
	for (size_t a = 0; a < 2; a++) {
		for (uint64_t nth = 1;; nth++) {
			struct store_vfs *vfs = memvfs_new(nth, 0);
			struct rp_abd_disk d = {
				.vfs = vfs,
				.dir = "abd",
				.replica_id = 1,
				.wal_key = wal_key,
				.snap_key = snap_key,
				.segment_size = 4096,
			};
			struct store_wal_pos covers, synced;
			struct store_wal *wal = NULL;
			struct rp_abd_opened o;
			struct abd_config ac;
			struct abd *core = NULL;
			char err[TEEMS_ERRBUF_LEN] = "";
			uint8_t *payload = NULL;
			size_t len = 0;
			uint64_t n = 0;
			bool written = false;
			int rc;

			assert_non_null(vfs);
			copy_in(pristine, vfs, "abd");
			abd_config_default(&ac);
			assert_int_equal(quorum_init(&ac.quorum, 3, 1, 1, err), TEEMS_OK);
			ac.self = 1;
			ac.restarted = true;
			assert_int_equal(abd_new(&core, &ac, err), TEEMS_OK);
			memvfs_crash_at_sync(vfs, nth, actions[a], MEMVFS_RANDOM);
			rc = rp_abd_disk_open(&d, core, &wal, &o, err);
			if (rc == TEEMS_OK) {
				assert_int_equal(abd_keys(core), SNAP_KEYS);
				assert_int_equal(rp_abd_snap_build(core, &payload, &len, &n),
						 TEEMS_OK);
				store_wal_position(wal, &covers, NULL);
				rc = store_wal_sync(wal, &synced, err);
			}
			if (rc == TEEMS_OK)
				rc = rp_abd_snap_persist(&d, wal, &synced, &covers, payload, len,
							 &written, err);
			teems_free(payload);
			store_wal_close(wal);
			abd_free(core);
			memvfs_crash_at_sync(vfs, 0, 0, MEMVFS_DROP);
			if (rc == TEEMS_OK) {
				store_vfs_destroy(vfs);
				assert_true(written);
				assert_true(nth > 3); /* the open's and the snapshot's syncs */
				break;
			}
			/* The snapshot step adds no record: whatever survived restores exactly the
			 * state the directory held before it. */
			got = dir_state(vfs, wal_key, snap_key);
			assert_string_equal(got, want);
			free(got);
			copy_out(vfs, "abd", abd_dir);
			store_vfs_destroy(vfs);
			node_open(c, 1);
			restarts++;
			/* Its own copy, before recovery: every register, the tombstone too. */
			assert_int_equal(status_u64(c, 1, "abd_keys"), SNAP_KEYS);
			wait_abd_ready(c, 10000);
			for (int key = 0; key < SNAP_KEYS; key++) {
				snprintf(k, sizeof(k), "key%d", key);
				snap_value(v, sizeof(v), key, 8);
				expect_get(c, 1, k, key == 4 ? NULL : v);
			}
			node_close(c, 1);
		}
	}
	assert_true(restarts >= 6);
	free(want);
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
	const struct CMUnitTest snap[] = {
		cmocka_unit_test(test_snap_bounded),
		cmocka_unit_test(test_snap_tombstone),
		cmocka_unit_test(test_snap_tampered),
	};
	const struct CMUnitTest snapcrash[] = {
		cmocka_unit_test(test_snap_power_loss),
	};
	const struct CMUnitTest disk[] = {
		cmocka_unit_test(test_disk_power_loss),
		cmocka_unit_test(test_disk_bounded),
		cmocka_unit_test(test_disk_seq_continuity),
		cmocka_unit_test(test_disk_tampered),
	};
	const char *group = argc > 1 ? argv[1] : "all";
	int rc = 0;

	if (strcmp(group, "basic") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_basic", basic, NULL, NULL);
	if (strcmp(group, "restart") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_restart", restart, NULL, NULL);
	if (strcmp(group, "snap") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_snap", snap, NULL, NULL);
	if (strcmp(group, "snapcrash") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_snapcrash", snapcrash, NULL, NULL);
	if (strcmp(group, "disk") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_disk", disk, NULL, NULL);
	return rc;
}
