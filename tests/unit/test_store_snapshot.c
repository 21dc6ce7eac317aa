/* Sealed snapshots: round trip, tampering, crashes while installing, and splicing with a WAL
 * from another history (DESIGN.md section 7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "store/memvfs.h"
#include "store/snapshot.h"
#include "store/wal.h"
#include "teems/err.h"
#include "test_store.h"

#define SNAP_PATH TS_DIR "/" STORE_SNAPSHOT_NAME

static uint8_t key1[32], key2[32];

static int setup(void **state)
{
	ts_key(key1, 1);
	ts_key(key2, 2);
	return 0;
}

static struct store_wal_pos some_pos(uint64_t index)
{
	struct store_wal_pos p = {.segment = 3, .offset = 1234, .index = index};

	for (int i = 0; i < STORE_WAL_CHAIN_LEN; i++)
		p.chain[i] = (uint8_t)(index + (uint64_t)i);
	return p;
}

static void expect_snapshot(struct store_vfs *vfs, const void *payload, size_t len,
			    const struct store_wal_pos *covers)
{
	struct store_wal_pos got;
	void *p = NULL;
	size_t n = 99;

	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, NULL),
			 TEEMS_OK);
	assert_non_null(p);
	assert_int_equal(n, len);
	if (len > 0)
		assert_memory_equal(p, payload, len);
	assert_memory_equal(&got, covers, sizeof(got));
	teems_free(p);
}

static void test_store_snapshot_roundtrip(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_pos a = some_pos(10), b = some_pos(20), got;
	char err[TEEMS_ERRBUF_LEN] = "";
	void *p;
	size_t n;

	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, err),
			 TEEMS_ENOTFOUND);
	assert_true(strlen(err) > 0);
	assert_int_equal(store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &a, "hello", 5, NULL),
			 TEEMS_OK);
	expect_snapshot(vfs, "hello", 5, &a);
	/* A new snapshot replaces the old one; an empty payload is fine. */
	assert_int_equal(store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &b, NULL, 0, NULL), 0);
	expect_snapshot(vfs, NULL, 0, &b);
	assert_int_equal(store_snapshot_write(vfs, "nodir", TS_REPLICA, key1, &b, "x", 1, NULL),
			 TEEMS_ENOTFOUND);
	assert_int_equal(store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &b, NULL, 1, NULL),
			 TEEMS_EINVAL);
	expect_snapshot(vfs, NULL, 0, &b);
	store_vfs_destroy(vfs);
}

/* Every flipped byte and every truncation is refused; another key or replica is refused. */
static void test_store_snapshot_tamper(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_pos a = some_pos(10), got;
	uint8_t payload[300], *file, *copy;
	size_t size;
	void *p;
	size_t n;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	assert_int_equal(store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &a, payload,
					      sizeof(payload), NULL),
			 TEEMS_OK);
	assert_int_equal(memvfs_get(vfs, SNAP_PATH, &file, &size), TEEMS_OK);
	assert_int_equal(size, STORE_SNAPSHOT_HEADER_LEN + sizeof(payload) + 16);
	copy = malloc(size);
	assert_non_null(copy);
	for (size_t i = 0; i < size; i++) {
		int rv;

		memcpy(copy, file, size);
		copy[i] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(memvfs_put(vfs, SNAP_PATH, copy, size), TEEMS_OK);
		rv = store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, NULL);
		assert_true(rv == TEEMS_EAUTH || rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION);
	}
	for (size_t len = 0; len < size; len++) {
		assert_int_equal(memvfs_put(vfs, SNAP_PATH, file, len), TEEMS_OK);
		assert_int_equal(
			store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, NULL),
			TEEMS_ECORRUPT);
	}
	assert_int_equal(memvfs_put(vfs, SNAP_PATH, file, size), TEEMS_OK);
	expect_snapshot(vfs, payload, sizeof(payload), &a);
	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key2, &p, &n, &got, NULL),
			 TEEMS_EAUTH);
	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA + 1, key1, &p, &n, &got, NULL),
			 TEEMS_EAUTH);
	free(copy);
	teems_free(file);
	store_vfs_destroy(vfs);
}

/* A power loss at any sync while a new snapshot is installed leaves the old one or the new
 * one, whole. */
static void test_store_snapshot_power_loss(void **state)
{
	static const enum memvfs_crash_mode modes[] = {MEMVFS_DROP, MEMVFS_KEEP, MEMVFS_GARBLE,
						       MEMVFS_RANDOM};
	struct store_wal_pos a = some_pos(10), b = some_pos(20);
	uint8_t big[5000];
	unsigned old_seen = 0, new_seen = 0;

	memset(big, 0x5a, sizeof(big));
	for (size_t m = 0; m < 4; m++) {
		for (uint64_t seed = 0; seed < 8; seed++) {
			for (uint64_t k = 1; k <= 2; k++) {
				for (int action = MEMVFS_HOOK_CRASH_BEFORE;
				     action <= MEMVFS_HOOK_CRASH_AFTER; action++) {
					struct store_vfs *vfs = ts_memvfs(seed, 0);
					struct store_wal_pos got;
					void *p = NULL;
					size_t n;
					uint64_t base;

					assert_int_equal(store_snapshot_write(vfs, TS_DIR,
									      TS_REPLICA, key1, &a,
									      "old", 3, NULL),
							 0);
					base = memvfs_sync_count(vfs);
					memvfs_crash_at_sync(vfs, base + k, action, modes[m]);
					assert_int_equal(
						store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1,
								     &b, big, sizeof(big), NULL),
						TEEMS_EIO);
					assert_int_equal(store_snapshot_load(vfs, TS_DIR,
									     TS_REPLICA, key1, &p,
									     &n, &got, NULL),
							 TEEMS_OK);
					if (n == 3) {
						assert_memory_equal(p, "old", 3);
						assert_int_equal(got.index, 10);
						old_seen++;
					} else {
						assert_int_equal(n, sizeof(big));
						assert_memory_equal(p, big, sizeof(big));
						assert_int_equal(got.index, 20);
						new_seen++;
					}
					teems_free(p);
					store_vfs_destroy(vfs);
				}
			}
		}
	}
	assert_true(old_seen > 0 && new_seen > 0);
}

/* A snapshot from before a rollback paired with a WAL written after it: the WAL does not
 * continue the snapshot's history, so nothing of it is delivered, and a new writer continues
 * from the snapshot. The matching pair reads through. */
static void test_store_snapshot_splice_with_wal(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct store_wal_pos at20, covers;
	struct ts_log log = {0};
	uint64_t v10 = 0;
	uint8_t *snap_a = NULL;
	size_t snap_a_len = 0;
	void *p;
	size_t n;

	/* History A: 30 records; a snapshot covering 20. */
	o.segment_size = STORE_WAL_SEGMENT_MIN;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 1, 1, 10, 10);
	v10 = memvfs_version(vfs);
	ts_append(wal, 1, 11, 10, 10);
	store_wal_position(wal, NULL, &at20);
	ts_append(wal, 1, 21, 10, 10);
	store_wal_close(wal);
	assert_int_equal(store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &at20, "A20", 3, NULL),
			 TEEMS_OK);

	/* The matching pair: the records after 20, from A. */
	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &covers, NULL),
			 TEEMS_OK);
	teems_free(p);
	assert_int_equal(memvfs_get(vfs, SNAP_PATH, &snap_a, &snap_a_len), TEEMS_OK);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &covers, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 21, 10);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	ts_log_free(&log);

	/* Roll the WAL (and the snapshot) back to 10 records; history B writes 11..30. */
	assert_int_equal(memvfs_rollback(vfs, v10), TEEMS_OK);
	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &covers, NULL),
			 TEEMS_ENOTFOUND);
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.end.index, 10);
	ts_append(wal, 2, 11, 20, 5);
	store_wal_close(wal);

	/* The host puts A's snapshot file back beside B's WAL. */
	assert_int_equal(memvfs_put(vfs, SNAP_PATH, snap_a, snap_a_len), TEEMS_OK);
	assert_int_equal(store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &covers, NULL),
			 TEEMS_OK);
	teems_free(p);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &covers, &log, &info), TEEMS_OK);
	assert_int_equal(log.n, 0); /* nothing of B's history is delivered */
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);
	assert_int_equal(info.end.index, 20);
	assert_memory_equal(info.end.chain, at20.chain, STORE_WAL_CHAIN_LEN);
	/* Without the snapshot, B's WAL alone reads whole (negative control). */
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	assert_int_equal(log.n, 30);
	ts_log_expect_at(&log, 0, 1, 1, 10);
	ts_log_expect_at(&log, 10, 2, 11, 20);
	ts_log_free(&log);

	/* A writer starting from A's snapshot continues A's history. */
	o.anchor = &covers;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.end.index, 20);
	ts_append(wal, 3, 21, 5, 5);
	store_wal_close(wal);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &covers, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 3, 21, 5);
	ts_log_free(&log);
	teems_free(snap_a);
	store_vfs_destroy(vfs);
}

static void test_store_snapshot_alloc_faults(void **state)
{
	struct store_wal_pos a = some_pos(10);
	int clean = 0;

	for (long nth = 0; !clean && nth < 10000; nth++) {
		struct store_vfs *vfs = ts_memvfs(1, 0);
		struct store_wal_pos got;
		void *p = NULL;
		size_t n;
		int rv, written;

		assert_int_equal(
			store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &a, "old", 3, NULL), 0);
		teems_alloc_fault(nth, 1);
		rv = store_snapshot_write(vfs, TS_DIR, TS_REPLICA, key1, &a, "new", 3, NULL);
		assert_true(rv == TEEMS_OK || rv == TEEMS_ENOMEM);
		written = rv == TEEMS_OK;
		rv = store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, NULL);
		assert_true(rv == TEEMS_OK || rv == TEEMS_ENOMEM);
		clean = written && rv == TEEMS_OK;
		teems_alloc_fault(-1, 0);
		teems_free(p);
		/* A failed install leaves the old snapshot, or the new one when only the
		 * directory sync after the rename failed; never anything else. */
		p = NULL;
		assert_int_equal(
			store_snapshot_load(vfs, TS_DIR, TS_REPLICA, key1, &p, &n, &got, NULL),
			TEEMS_OK);
		assert_int_equal(n, 3);
		if (written)
			assert_memory_equal(p, "new", 3);
		else
			assert_true(memcmp(p, "old", 3) == 0 || memcmp(p, "new", 3) == 0);
		teems_free(p);
		store_vfs_destroy(vfs);
	}
	assert_true(clean);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_snapshot_roundtrip),
		cmocka_unit_test(test_store_snapshot_tamper),
		cmocka_unit_test(test_store_snapshot_power_loss),
		cmocka_unit_test(test_store_snapshot_splice_with_wal),
		cmocka_unit_test(test_store_snapshot_alloc_faults),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
