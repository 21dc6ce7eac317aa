/* The sealed WAL against crashes, rollbacks and tampering (DESIGN.md sections 2 and 7;
 * SCENARIOS.md S16 and S17). Every test runs on memvfs, which models what a power loss and a
 * rollback do to files. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "store/memvfs.h"
#include "store/wal.h"
#include "teems/err.h"
#include "test_store.h"

#define SEG_SMALL STORE_WAL_SEGMENT_MIN

/* The files of a WAL, parsed with the format of wal.h (only genuine files are parsed). */
struct seg_file {
	char name[32];
	uint8_t *data;
	size_t size;
	uint64_t first_index;
	size_t nrec;
	size_t off[512];   /* record offsets */
	size_t total[512]; /* record sizes on disk */
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every wal-* file of TS_DIR, sorted by number (fixed-width hex sorts as text). */
static size_t load_segs(struct store_vfs *vfs, struct seg_file *segs, size_t max)
{
	struct store_dirlist l = {0};
	size_t n = 0;

	assert_int_equal(store_vfs_list(vfs, TS_DIR, &l), TEEMS_OK);
	qsort(l.names, l.n, sizeof(*l.names), name_cmp);
	for (size_t i = 0; i < l.n; i++) {
		char path[64];
		struct seg_file *s;

		if (strncmp(l.names[i], "wal-", 4) != 0)
			continue;
		assert_true(n < max);
		s = &segs[n++];
		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", l.names[i]);
		snprintf(path, sizeof(path), "%s/%s", TS_DIR, s->name);
		assert_int_equal(memvfs_get(vfs, path, &s->data, &s->size), TEEMS_OK);
		assert_true(s->size >= STORE_WAL_HEADER_LEN);
		s->first_index = get_le64(s->data + 32);
		for (size_t off = STORE_WAL_HEADER_LEN; off < s->size;) {
			size_t total = STORE_WAL_RECORD_OVERHEAD + get_le32(s->data + off);

			assert_true(s->nrec < 512);
			s->off[s->nrec] = off;
			s->total[s->nrec++] = total;
			off += total;
		}
	}
	store_dirlist_free(&l);
	return n;
}

static void free_segs(struct seg_file *segs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		teems_free(segs[i].data);
}

/* A fresh memvfs holding segs, with file k replaced by data[0..size) (k == n: none), or
 * removed when data is NULL. */
static struct store_vfs *vfs_with(const struct seg_file *segs, size_t n, size_t k,
				  const uint8_t *data, size_t size)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);

	for (size_t i = 0; i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "%s/%s", TS_DIR, segs[i].name);
		if (i != k)
			assert_int_equal(memvfs_put(vfs, path, segs[i].data, segs[i].size), 0);
		else if (data != NULL)
			assert_int_equal(memvfs_put(vfs, path, data, size), 0);
	}
	return vfs;
}

static uint8_t key1[32], key2[32];

static int setup(void **state)
{
	ts_key(key1, 1);
	ts_key(key2, 2);
	return 0;
}

/* Round trip, rollover, and a second incarnation continuing the first. */
static void test_store_wal_roundtrip(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct store_wal_pos app, syn;
	struct ts_log log = {0};

	ts_write_wal(vfs, key1, SEG_SMALL, 1, 200, 7);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 200);
	assert_int_equal(info.records, 200);
	assert_int_equal(info.end.index, 200);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	assert_true(info.segments >= 3); /* 200 records of ~51 bytes in 4 KiB segments */
	assert_int_equal(info.ignored_segments, 0);
	assert_int_equal(info.tail_bytes, 0);
	ts_log_free(&log);

	o.segment_size = SEG_SMALL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	store_wal_position(wal, &app, &syn);
	assert_int_equal(app.index, 200);
	assert_int_equal(syn.index, 200);
	assert_int_equal(app.segment, info.end.segment + 1); /* every open starts a segment */
	assert_int_equal(app.offset, STORE_WAL_HEADER_LEN);
	ts_append(wal, 1, 201, 50, 50);
	/* Appended but not synced is not synced. */
	assert_int_equal(store_wal_append(wal, "x", 1, NULL), TEEMS_OK);
	store_wal_position(wal, &app, &syn);
	assert_int_equal(app.index, 251);
	assert_int_equal(syn.index, 250);
	store_wal_close(wal);

	/* The unsynced record was only sealed into memory: close does not write it. */
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 250);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
}

/* A non-zero callback result stops the open and is returned as is. */
static int stop_at_3(void *arg, uint64_t index, const void *data, size_t len)
{
	return index == 3 ? 42 : 0;
}

static void test_store_wal_empty_and_args(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	char err[TEEMS_ERRBUF_LEN];
	uint8_t big[1];

	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, NULL, &info), TEEMS_OK);
	assert_int_equal(info.end.index, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	assert_int_equal(store_wal_open(vfs, "nodir", &o, NULL, &info, err), TEEMS_ENOTFOUND);
	assert_int_equal(store_wal_open(vfs, "", &o, NULL, &info, err), TEEMS_EINVAL);
	o.segment_size = 100;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, NULL, &info, err), TEEMS_EINVAL);
	o.segment_size = 0;
	o.root_key = NULL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, NULL, &info, err), TEEMS_EINVAL);
	o.root_key = key1;

	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, err), TEEMS_OK);
	assert_int_equal(store_wal_append(wal, big, (size_t)STORE_WAL_RECORD_MAX + 1, NULL),
			 TEEMS_EINVAL);
	assert_int_equal(store_wal_append(wal, NULL, 0, NULL), TEEMS_OK); /* empty record */
	ts_append(wal, 1, 2, 5, 5);
	store_wal_close(wal);

	o.on_record = stop_at_3;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, NULL, &info, err), 42);
	store_vfs_destroy(vfs);
}

/* A record larger than the rollover size gets a segment of its own; the largest record size
 * round-trips. */
static void test_store_wal_large_records(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	size_t big = STORE_WAL_RECORD_MAX;
	uint8_t *buf = malloc(big);

	assert_non_null(buf);
	for (size_t i = 0; i < big; i++)
		buf[i] = (uint8_t)(i * 13);
	o.segment_size = SEG_SMALL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(store_wal_append(wal, buf, 1, NULL), TEEMS_OK);
	assert_int_equal(store_wal_append(wal, buf, big, NULL), TEEMS_OK);
	assert_int_equal(store_wal_append(wal, buf, 10000, NULL), TEEMS_OK);
	assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_OK);
	store_wal_close(wal);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	assert_int_equal(log.n, 3);
	assert_int_equal(info.segments, 3);
	assert_int_equal(log.len[1], big);
	assert_memory_equal(log.data[1], buf, big);
	assert_int_equal(log.len[2], 10000);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
	free(buf);
}

/* Power loss at every fsync point, with unsynced writes kept, dropped, garbled or torn: the
 * WAL recovers every acknowledged record and then only authentic records in order. */
struct run {
	uint64_t acked;	       /* highest index whose sync returned */
	uint64_t appended;     /* highest index appended */
	int crash_in_plain;    /* the crash hit a sync whose group stayed in one segment */
	uint64_t plain_acked;  /* acked at that moment */
	uint64_t plain_append; /* appended at that moment */
};

/* Two incarnations, each writing ~6 KiB in groups of 1..20 records into 4 KiB segments, so
 * crashes also hit rollovers (old segment sync, new segment sync, directory sync). */
static void crash_workload(struct store_vfs *vfs, struct run *r)
{
	static const size_t groups[] = {1, 3, 2, 20, 1, 8, 4, 1, 2, 15, 6, 3, 9, 1, 30, 2};
	uint8_t buf[TS_RECORD_MAX];

	memset(r, 0, sizeof(*r));

	for (int inc = 0; inc < 2; inc++) {
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;
		struct store_wal_info info;

		o.segment_size = SEG_SMALL;
		if (store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL) != TEEMS_OK)
			return;
		assert_int_equal(info.end.index, r->acked);
		for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
			struct store_wal_pos app, syn;
			int rv;

			for (size_t i = 0; i < groups[g]; i++) {
				size_t len = ts_record(1, r->appended + 1, buf);

				assert_int_equal(store_wal_append(wal, buf, len, NULL), 0);
				r->appended++;
			}
			store_wal_position(wal, &app, &syn);
			rv = store_wal_sync(wal, NULL, NULL);
			if (rv != TEEMS_OK) {
				assert_int_equal(rv, TEEMS_EIO);
				r->crash_in_plain = app.segment == syn.segment;
				r->plain_acked = r->acked;
				r->plain_append = r->appended;
				/* Dead now: every later call fails, nothing is written. */
				assert_int_equal(store_wal_append(wal, buf, 1, NULL), TEEMS_EIO);
				assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_EIO);
				store_wal_close(wal);
				return;
			}
			r->acked = r->appended;
		}
		store_wal_close(wal);
	}
}

static void test_store_wal_power_loss_every_sync(void **state)
{
	static const enum memvfs_crash_mode modes[] = {MEMVFS_DROP, MEMVFS_KEEP, MEMVFS_GARBLE,
						       MEMVFS_RANDOM};
	static const int actions[] = {MEMVFS_HOOK_CRASH_BEFORE, MEMVFS_HOOK_CRASH_AFTER};
	struct store_vfs *vfs = ts_memvfs(0, 0);
	uint64_t nsyncs, runs = 0, kept_unsynced = 0, lost_unsynced = 0;
	struct store_wal_info whole;
	struct run r;

	crash_workload(vfs, &r);
	nsyncs = memvfs_sync_count(vfs);
	assert_int_equal(r.acked, r.appended);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, NULL, &whole), TEEMS_OK);
	assert_true(whole.segments >= 4); /* rollovers happened in both incarnations */
	store_vfs_destroy(vfs);
	assert_true(nsyncs > 40);

	for (size_t m = 0; m < 4; m++) {
		unsigned nseeds = modes[m] == MEMVFS_RANDOM ? 48 : 2;

		for (unsigned seed = 0; seed < nseeds; seed++) {
			for (uint64_t k = 1; k <= nsyncs; k++) {
				for (size_t a = 0; a < 2; a++) {
					struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
					struct store_wal *wal = NULL;
					struct store_wal_info info;
					struct ts_log log = {0};

					vfs = ts_memvfs(seed * 1000 + k, 0);
					memvfs_crash_at_sync(vfs, k, actions[a], modes[m]);
					crash_workload(vfs, &r);
					memvfs_crash_at_sync(vfs, 0, 0, MEMVFS_DROP);
					assert_int_equal(
						ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info),
						TEEMS_OK);
					/* Every acknowledged record, then a prefix of the rest. */
					assert_true(log.n >= r.acked);
					assert_true(log.n <= r.appended);
					ts_log_expect(&log, 1, 1, log.n);
					if (r.crash_in_plain &&
					    actions[a] == MEMVFS_HOOK_CRASH_BEFORE) {
						/* The fsync never happened: only the mode decides.
						 */
						if (modes[m] == MEMVFS_DROP ||
						    modes[m] == MEMVFS_GARBLE)
							assert_int_equal(log.n, r.plain_acked);
						if (modes[m] == MEMVFS_KEEP)
							assert_int_equal(log.n, r.plain_append);
						kept_unsynced += log.n > r.plain_acked;
						lost_unsynced += log.n < r.plain_append;
					}
					/* A new incarnation continues exactly where the prefix
					 * ends. */
					if (seed == 0) {
						o.segment_size = SEG_SMALL;
						assert_int_equal(store_wal_open(vfs, TS_DIR, &o,
										&wal, &info, NULL),
								 TEEMS_OK);
						assert_int_equal(info.end.index, log.n);
						ts_append(wal, 1, log.n + 1, 3, 3);
						store_wal_close(wal);
						ts_log_free(&log);
						assert_int_equal(ts_read(vfs, key1, TS_REPLICA,
									 NULL, &log, &info),
								 TEEMS_OK);
						ts_log_expect(&log, 1, 1, log.n);
						assert_true(log.n >= 3);
						assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
					}
					ts_log_free(&log);
					store_vfs_destroy(vfs);
					runs++;
				}
			}
		}
	}
	/* Negative control: the model really loses and really keeps unsynced data, so the
	 * checks above could have failed. */
	assert_true(kept_unsynced > 0);
	assert_true(lost_unsynced > 0);
	print_message("power loss: %llu runs over %llu sync points\n", (unsigned long long)runs,
		      (unsigned long long)nsyncs);
}

/* A flipped byte anywhere ends the valid prefix before the record (or segment) holding it. */
static void test_store_wal_flip_every_byte(void **state)
{
	struct store_vfs *base = ts_memvfs(1, 0);
	struct seg_file segs[8];
	size_t n, trials = 0;

	ts_write_wal(base, key1, SEG_SMALL, 1, 100, 4);
	n = load_segs(base, segs, 8);
	assert_true(n >= 2);
	for (size_t k = 0; k < n; k++) {
		uint8_t *copy = malloc(segs[k].size);

		assert_non_null(copy);
		for (size_t p = 0; p < segs[k].size; p++) {
			struct store_wal_info info;
			struct ts_log log = {0};
			struct store_vfs *vfs;
			uint64_t expect = segs[k].first_index - 1;

			for (size_t r = 0; p >= STORE_WAL_HEADER_LEN && r < segs[k].nrec; r++)
				if (p < segs[k].off[r] + segs[k].total[r]) {
					expect = segs[k].first_index + r - 1;
					break;
				}
			memcpy(copy, segs[k].data, segs[k].size);
			copy[p] ^= (uint8_t)(1u << (p % 8));
			vfs = vfs_with(segs, n, k, copy, segs[k].size);
			assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
			ts_log_expect(&log, 1, 1, expect);
			assert_int_equal(info.end.index, expect);
			assert_int_not_equal(info.stop, STORE_WAL_STOP_CLEAN);
			ts_log_free(&log);
			store_vfs_destroy(vfs);
			trials++;
		}
		free(copy);
	}
	free_segs(segs, n);
	store_vfs_destroy(base);
	assert_true(trials > 4000);
}

/* Truncating any segment at any length keeps exactly the whole records before the cut. */
static void test_store_wal_truncate_every_byte(void **state)
{
	struct store_vfs *base = ts_memvfs(1, 0);
	struct seg_file segs[8];
	size_t n;

	ts_write_wal(base, key1, SEG_SMALL, 1, 100, 4);
	n = load_segs(base, segs, 8);
	for (size_t k = 0; k < n; k++) {
		for (size_t len = 0; len < segs[k].size; len++) {
			struct store_wal_info info;
			struct ts_log log = {0};
			struct store_vfs *vfs = vfs_with(segs, n, k, segs[k].data, len);
			uint64_t expect = segs[k].first_index - 1;
			int boundary = len == STORE_WAL_HEADER_LEN;

			for (size_t r = 0; len >= STORE_WAL_HEADER_LEN && r < segs[k].nrec; r++) {
				if (segs[k].off[r] + segs[k].total[r] > len)
					break;
				expect++;
				boundary = segs[k].off[r] + segs[k].total[r] == len;
			}
			assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
			ts_log_expect(&log, 1, 1, expect);
			assert_int_equal(info.end.index, expect);
			if (len < STORE_WAL_HEADER_LEN)
				assert_true(info.stop == STORE_WAL_STOP_SPLICE ||
					    info.stop == STORE_WAL_STOP_ANCHOR ||
					    info.stop == STORE_WAL_STOP_CLEAN);
			else if (!boundary)
				assert_int_equal(info.stop, STORE_WAL_STOP_TORN);
			else if (k + 1 < n)
				assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
			else
				assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
			ts_log_free(&log);
			store_vfs_destroy(vfs);
		}
	}
	free_segs(segs, n);
	store_vfs_destroy(base);
}

/* Restarting on every earlier synced version opens cleanly, reports exactly its position,
 * and a new incarnation continues from it. */
static void test_store_wal_rollback_every_version(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	uint64_t ver[256], idx[256], last;
	size_t nsync = 0;
	uint64_t next = 1;
	uint8_t buf[TS_RECORD_MAX];

	for (int inc = 0; inc < 2; inc++) {
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;
		struct store_wal_info info;

		o.segment_size = SEG_SMALL;
		assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
		ver[nsync] = memvfs_version(vfs);
		idx[nsync++] = next - 1;
		for (int g = 0; g < 40; g++) {
			struct store_wal_pos pos;

			for (int i = 0; i <= g % 4; i++) {
				size_t len = ts_record(1, next, buf);

				assert_int_equal(store_wal_append(wal, buf, len, NULL), 0);
				next++;
			}
			assert_int_equal(store_wal_sync(wal, &pos, NULL), TEEMS_OK);
			ver[nsync] = memvfs_version(vfs);
			idx[nsync++] = pos.index;
		}
		store_wal_close(wal);
	}
	last = memvfs_version(vfs);
	for (uint64_t v = 0; v <= last; v++) {
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;
		struct store_wal_info info;
		struct ts_log log = {0};
		uint64_t lo = 0, hi = next - 1;

		/* Between the last sync that had returned by version v and the next one. */
		for (size_t s = 0; s < nsync; s++) {
			if (ver[s] <= v && idx[s] > lo)
				lo = idx[s];
			if (ver[s] >= v && idx[s] < hi)
				hi = idx[s];
		}
		assert_int_equal(memvfs_rollback(vfs, v), TEEMS_OK);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
		assert_true(log.n >= lo && log.n <= hi);
		ts_log_expect(&log, 1, 1, log.n);
		assert_int_equal(info.end.index, log.n);
		assert_int_equal(info.tail_bytes, 0); /* synced states hold whole records only */

		assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
		assert_int_equal(info.end.index, log.n);
		ts_append(wal, 1, log.n + 1, 2, 2);
		store_wal_close(wal);
		ts_log_free(&log);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
		ts_log_expect(&log, 1, 1, log.n);
		ts_log_free(&log);
	}
	assert_int_equal(memvfs_rollback(vfs, memvfs_version(vfs) + 1), TEEMS_EINVAL);
	store_vfs_destroy(vfs);
}

/* Records swapped, dropped or replayed inside a segment end the prefix there. */
static void test_store_wal_reorder_records(void **state)
{
	struct store_vfs *base = ts_memvfs(1, 0);
	struct seg_file segs[4];
	size_t n;

	ts_write_wal(base, key1, 0, 1, 30, 30);
	n = load_segs(base, segs, 4);
	assert_int_equal(n, 1);
	for (size_t r = 0; r + 1 < segs[0].nrec; r++) {
		struct seg_file *s = &segs[0];
		size_t a = s->off[r], la = s->total[r], lb = s->total[r + 1];
		uint8_t *copy = malloc(s->size + la);
		struct store_wal_info info;
		struct ts_log log = {0};
		struct store_vfs *vfs;

		assert_non_null(copy);
		/* Swap records r and r+1: the prefix ends before r. */
		memcpy(copy, s->data, s->size);
		memcpy(copy + a, s->data + a + la, lb);
		memcpy(copy + a + lb, s->data + a, la);
		vfs = vfs_with(segs, n, 0, copy, s->size);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
		ts_log_expect(&log, 1, 1, r);
		assert_int_equal(info.stop, STORE_WAL_STOP_AUTH);
		ts_log_free(&log);
		store_vfs_destroy(vfs);

		/* Drop record r: same. */
		memcpy(copy, s->data, a);
		memcpy(copy + a, s->data + a + la, s->size - a - la);
		vfs = vfs_with(segs, n, 0, copy, s->size - la);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
		ts_log_expect(&log, 1, 1, r);
		ts_log_free(&log);
		store_vfs_destroy(vfs);

		/* Replay record r right after itself: r survives, its copy does not. */
		memcpy(copy, s->data, a + la);
		memcpy(copy + a + la, s->data + a, s->size - a);
		vfs = vfs_with(segs, n, 0, copy, s->size + la);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
		ts_log_expect(&log, 1, 1, r + 1);
		assert_int_equal(info.tail_bytes, s->size - a);
		ts_log_free(&log);
		store_vfs_destroy(vfs);
		free(copy);
	}
	/* An impossible length (beyond STORE_WAL_RECORD_MAX) is corruption, not a torn write;
	 * a length that runs past the end of the file is a torn write. */
	{
		uint8_t *copy = malloc(segs[0].size);
		struct store_wal_info info;
		struct store_vfs *vfs;

		assert_non_null(copy);
		memcpy(copy, segs[0].data, segs[0].size);
		put_le32(copy + segs[0].off[5], 0xffffffffu);
		vfs = vfs_with(segs, n, 0, copy, segs[0].size);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, NULL, &info), 0);
		assert_int_equal(info.end.index, 5);
		assert_int_equal(info.stop, STORE_WAL_STOP_AUTH);
		store_vfs_destroy(vfs);
		put_le32(copy + segs[0].off[5], (uint32_t)segs[0].size);
		vfs = vfs_with(segs, n, 0, copy, segs[0].size);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, NULL, &info), 0);
		assert_int_equal(info.end.index, 5);
		assert_int_equal(info.stop, STORE_WAL_STOP_TORN);
		store_vfs_destroy(vfs);
		free(copy);
	}
	free_segs(segs, n);
	store_vfs_destroy(base);
}

/* Segments renamed, swapped, dropped or duplicated end the prefix at the last segment that
 * chains. */
static void test_store_wal_reorder_segments(void **state)
{
	struct store_vfs *base = ts_memvfs(1, 0);
	struct seg_file segs[8], swapped[8];
	struct store_wal_info info;
	struct ts_log log = {0};
	struct store_vfs *vfs;
	uint64_t end1;
	size_t n;

	ts_write_wal(base, key1, SEG_SMALL, 1, 250, 5);
	n = load_segs(base, segs, 8);
	assert_true(n >= 4);
	end1 = segs[1].first_index - 1;

	/* Swap the contents of segments 2 and 3. */
	memcpy(swapped, segs, sizeof(segs));
	swapped[1].data = segs[2].data;
	swapped[1].size = segs[2].size;
	swapped[2].data = segs[1].data;
	swapped[2].size = segs[1].size;
	vfs = vfs_with(swapped, n, n, NULL, 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, end1);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.end.segment, 1);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	/* Drop segment 2. */
	vfs = vfs_with(segs, n, 1, NULL, 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, end1);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.ignored_segments, n - 2);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	/* Segment 1's content under segment 2's name (a replayed segment). */
	vfs = vfs_with(segs, n, 1, segs[0].data, segs[0].size);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, end1);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	/* The last segment duplicated under a higher number: ignored, everything else valid. */
	vfs = vfs_with(segs, n, n, NULL, 0);
	assert_int_equal(
		memvfs_put(vfs, TS_DIR "/wal-00000000000000ff", segs[n - 1].data, segs[n - 1].size),
		0);
	assert_int_equal(memvfs_put(vfs, TS_DIR "/wal-junk", "x", 1), 0);
	assert_int_equal(memvfs_put(vfs, TS_DIR "/wal-000000000000000G", "x", 1), 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 250);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.ignored_segments, 1);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	free_segs(segs, n);
	store_vfs_destroy(base);
}

/* Another replica's WAL, or one under another key, authenticates nothing; writing there never
 * deletes those files. */
static void test_store_wal_foreign(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key2, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	struct seg_file segs[8];
	size_t n;

	ts_write_wal(vfs, key1, SEG_SMALL, 1, 120, 10);
	n = load_segs(vfs, segs, 8);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA + 1, NULL, &log, &info), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);
	assert_int_equal(info.ignored_segments, n);
	assert_int_equal(ts_read(vfs, key2, TS_REPLICA, NULL, &log, &info), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);

	/* A writer with the wrong key starts over beside the files it cannot read. */
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 2, 1, 3, 3);
	store_wal_close(wal);
	assert_int_equal(ts_read(vfs, key2, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 2, 1, 3);
	ts_log_free(&log);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 120);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	ts_log_free(&log);
	/* Nor does its compaction delete them. */
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(store_wal_compact(wal, UINT64_MAX, NULL), TEEMS_OK);
	store_wal_close(wal);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 120);
	ts_log_free(&log);
	free_segs(segs, n);
	store_vfs_destroy(vfs);

	/* Replica 8's second segment spliced into replica 7's WAL. */
	{
		struct store_vfs *v7 = ts_memvfs(1, 0), *v8 = ts_memvfs(2, 0);
		struct seg_file s7[8], s8[8];
		size_t n7, n8;
		struct store_wal_opts o8 = ts_opts(key1, TS_REPLICA + 1, NULL);

		ts_write_wal(v7, key1, SEG_SMALL, 1, 120, 10);
		o8.segment_size = SEG_SMALL;
		assert_int_equal(store_wal_open(v8, TS_DIR, &o8, &wal, &info, NULL), 0);
		ts_append(wal, 1, 1, 120, 10);
		store_wal_close(wal);
		n7 = load_segs(v7, s7, 8);
		n8 = load_segs(v8, s8, 8);
		assert_true(n7 >= 2 && n8 >= 2);
		vfs = vfs_with(s7, n7, 1, s8[1].data, s8[1].size);
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
		ts_log_expect(&log, 1, 1, s7[1].first_index - 1);
		ts_log_free(&log);
		store_vfs_destroy(vfs);
		free_segs(s7, n7);
		free_segs(s8, n8);
		store_vfs_destroy(v7);
		store_vfs_destroy(v8);
	}
}

/* S16: write, roll back, write again: no (key, nonce) pair is ever used twice. */
struct nonce_log {
	uint8_t (*pairs)[44];
	size_t n, cap;
};

static void record_nonce(void *arg, const uint8_t key[32], const uint8_t nonce[12])
{
	struct nonce_log *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->pairs = realloc(l->pairs, l->cap * sizeof(*l->pairs));
		assert_non_null(l->pairs);
	}
	memcpy(l->pairs[l->n], key, 32);
	memcpy(l->pairs[l->n] + 32, nonce, 12);
	l->n++;
}

static int pair_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 44);
}

static size_t count_repeats(struct nonce_log *l)
{
	size_t dups = 0;

	qsort(l->pairs, l->n, sizeof(*l->pairs), pair_cmp);
	for (size_t i = 1; i < l->n; i++)
		dups += memcmp(l->pairs[i - 1], l->pairs[i], 44) == 0;
	return dups;
}

/* Writes, rolls back to earlier versions and writes again, recording every pair. */
static void s16_schedule(struct nonce_log *l, const uint8_t *fixed_incarnation)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	uint64_t rollback_to[3] = {0, 0, 0};
	size_t seals = 0;

	for (int round = 0; round < 4; round++) {
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;
		struct store_wal_info info;

		o.segment_size = SEG_SMALL;
		o.nonce_hook = record_nonce;
		o.nonce_arg = l;
		o.test_incarnation = fixed_incarnation;
		assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
		seals++; /* the new segment's header */
		for (int g = 0; g < 10; g++) {
			struct store_wal_pos before, after;

			store_wal_position(wal, &before, NULL);
			ts_append(wal, (unsigned)round, info.end.index + 1 + (uint64_t)g * 10, 10,
				  10);
			store_wal_position(wal, &after, NULL);
			seals += 10 + (after.segment - before.segment); /* rollover headers */
			if (g == 3 && round < 3)
				rollback_to[round] = memvfs_version(vfs);
		}
		store_wal_close(wal);
		/* Round 1 and 2 roll back into the middle of what round 0 wrote; round 3
		 * starts after a rollback to nothing at all. */
		if (round == 0 || round == 1)
			assert_int_equal(memvfs_rollback(vfs, rollback_to[0]), TEEMS_OK);
		else if (round == 2)
			assert_int_equal(memvfs_rollback(vfs, 0), TEEMS_OK);
	}
	assert_int_equal(l->n, seals);
	store_vfs_destroy(vfs);
}

static void test_store_wal_s16_nonce_reuse(void **state)
{
	struct nonce_log l = {0};
	uint8_t fixed[STORE_WAL_INCARNATION_LEN] = {1, 2, 3};

	s16_schedule(&l, NULL);
	assert_true(l.n > 400);
	assert_int_equal(count_repeats(&l), 0);
	free(l.pairs);

	/* Negative control: an incarnation id reused after a rollback repeats pairs, and the
	 * check sees it. */
	memset(&l, 0, sizeof(l));
	s16_schedule(&l, fixed);
	assert_true(count_repeats(&l) > 0);
	free(l.pairs);
}

/* S17: segment 1 from before a rollback and segment 2 from after it. */
static void test_store_wal_s17_spliced_segments(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	struct seg_file before[4], after[4], mix[2];
	uint64_t v40 = 0;
	size_t nb, na;

	/* History A: segment 1 fills up (~80 records), segment 2 follows. */
	o.segment_size = SEG_SMALL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	for (uint64_t i = 1; i <= 120; i += 10) {
		ts_append(wal, 1, i, 10, 10);
		if (i + 9 == 40)
			v40 = memvfs_version(vfs);
	}
	store_wal_close(wal);
	nb = load_segs(vfs, before, 4);
	assert_int_equal(nb, 2);
	assert_true(before[0].nrec > 40);

	/* Roll back to 40 records; history B continues in a new segment 2. */
	assert_int_equal(memvfs_rollback(vfs, v40), TEEMS_OK);
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.end.index, 40);
	ts_append(wal, 2, 41, 30, 10);
	store_wal_close(wal);
	na = load_segs(vfs, after, 4);
	assert_int_equal(na, 2);
	assert_string_equal(after[1].name, before[1].name);

	/* Segment 1 from before the rollback + segment 2 from after: A's segment 1, whole. */
	mix[0] = before[0];
	mix[1] = after[1];
	store_vfs_destroy(vfs);
	vfs = vfs_with(mix, 2, 2, NULL, 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, before[0].nrec);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.end.segment, 1);
	assert_int_equal(info.end.offset, before[0].size);
	assert_int_equal(info.end.index, before[0].nrec);
	assert_int_equal(info.ignored_segments, 1);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	/* Segment 1 from after (40 records) + segment 2 from before (starts at ~81). */
	mix[0] = after[0];
	mix[1] = before[1];
	vfs = vfs_with(mix, 2, 2, NULL, 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 40);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.end.segment, 1);
	assert_int_equal(info.end.offset, after[0].size);
	assert_int_equal(info.end.index, 40);
	ts_log_free(&log);
	store_vfs_destroy(vfs);

	/* Control: the unspliced pairs read whole. */
	vfs = vfs_with(after, 2, 2, NULL, 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	assert_int_equal(log.n, 70);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
	free_segs(before, nb);
	free_segs(after, na);
}

/* A writer that crashed after writing but before its fsync returned leaves records in the page
 * cache; the next incarnation reads them and chains to them, so it must make them durable
 * before it acknowledges anything, or a power loss would cut its own records off. */
static void test_store_wal_restart_on_unsynced_prefix(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	uint8_t buf[TS_RECORD_MAX];

	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 1, 1, 10, 10);
	for (uint64_t i = 11; i <= 15; i++)
		assert_int_equal(store_wal_append(wal, buf, ts_record(1, i, buf), NULL), 0);
	memvfs_crash_at_sync(vfs, memvfs_sync_count(vfs) + 1, MEMVFS_HOOK_FAIL, MEMVFS_DROP);
	assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_EIO);
	store_wal_close(wal); /* the process dies; the page cache keeps 11..15 */
	memvfs_crash_at_sync(vfs, 0, 0, MEMVFS_DROP);

	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.end.index, 15);
	ts_append(wal, 1, 16, 5, 5); /* acknowledged */
	store_wal_close(wal);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 20);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
}

/* S17, harder: a segment from another history that starts at exactly the right index. Only
 * the chain value in its header (and in its records) tells the histories apart. */
static void test_store_wal_s17_same_index(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	struct seg_file a[4], b[4];
	struct store_wal_info info;
	struct ts_log log = {0};
	uint64_t v30;
	size_t na, nb;

	/* History A: segment 1 = 1..30, then a second incarnation writes segment 2 = 31..40. */
	ts_write_wal(vfs, key1, 0, 1, 30, 10);
	v30 = memvfs_version(vfs);
	ts_write_wal(vfs, key1, 0, 1, 10, 10);
	na = load_segs(vfs, a, 4);
	assert_int_equal(na, 2);
	assert_int_equal(a[1].first_index, 31);

	/* History B after a rollback to 30 records: 31..40 in segment 2, 41..50 in 3. */
	assert_int_equal(memvfs_rollback(vfs, v30), TEEMS_OK);
	{
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;

		assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
		ts_append(wal, 2, 31, 10, 10);
		store_wal_close(wal);
		assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
		ts_append(wal, 2, 41, 10, 10);
		store_wal_close(wal);
	}
	nb = load_segs(vfs, b, 4);
	assert_int_equal(nb, 3);
	assert_int_equal(b[2].first_index, 41);

	/* A's segments 1 and 2 (1..40) followed by B's segment 3 (starts at 41, B's chain). */
	store_vfs_destroy(vfs);
	vfs = vfs_with(a, na, na, NULL, 0);
	assert_int_equal(memvfs_put(vfs, TS_DIR "/wal-0000000000000003", b[2].data, b[2].size), 0);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 40);
	assert_int_equal(info.stop, STORE_WAL_STOP_SPLICE);
	assert_int_equal(info.end.segment, 2);
	assert_int_equal(info.segments, 2);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
	free_segs(a, na);
	free_segs(b, nb);
}

/* Compaction and anchors: after deleting covered segments, the snapshot's position is the
 * only way in; a wrong or too-new anchor ends the prefix at the anchor. */
static void test_store_wal_compact_and_anchor(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	struct store_wal_pos pos[301], bad;
	struct seg_file segs[8];
	size_t n, m;
	uint64_t cut;
	bool yes;

	o.segment_size = SEG_SMALL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(store_wal_starts_at_genesis(vfs, TS_DIR, TS_REPLICA, key1, &yes, NULL),
			 TEEMS_OK);
	assert_false(yes); /* no record yet */
	store_wal_position(wal, NULL, &pos[0]);
	for (uint64_t i = 1; i <= 300; i++) {
		ts_append(wal, 1, i, 1, 1);
		store_wal_position(wal, NULL, &pos[i]);
	}
	n = load_segs(vfs, segs, 8);
	assert_true(n >= 4);
	assert_int_equal(store_wal_starts_at_genesis(vfs, TS_DIR, TS_REPLICA, key1, &yes, NULL),
			 TEEMS_OK);
	assert_true(yes);
	/* Every anchor, inside a segment or at its end, delivers exactly what follows. */
	for (uint64_t a = 0; a <= 300; a += 1) {
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &pos[a], &log, &info), 0);
		ts_log_expect(&log, 1, a + 1, 300 - a);
		assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
		ts_log_free(&log);
	}
	/* Compact up to the middle of segment 3. */
	cut = segs[2].first_index + 2;
	assert_int_equal(store_wal_compact(wal, cut, NULL), TEEMS_OK);
	free_segs(segs, n);
	m = load_segs(vfs, segs, 8);
	assert_int_equal(m, n - 2);
	assert_int_equal(segs[0].first_index, cut - 2);
	assert_int_equal(store_wal_starts_at_genesis(vfs, TS_DIR, TS_REPLICA, key1, &yes, NULL),
			 TEEMS_OK);
	assert_false(yes);						/* compacted */
	assert_int_equal(store_wal_compact(wal, 1000, NULL), TEEMS_OK); /* keeps the last */
	assert_int_equal(load_segs(vfs, segs + 4, 4), 1);
	free_segs(segs + 4, 1);
	store_wal_close(wal);
	free_segs(segs, m);

	/* Genesis no longer reaches anything; the anchor does. */
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &pos[300], &log, &info), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	assert_int_equal(info.end.index, 300);

	/* A snapshot from another history (wrong chain) or ahead of the WAL. */
	bad = pos[300];
	bad.chain[0] ^= 1;
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &bad, &log, &info), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);
	assert_int_equal(info.end.index, 300);
	assert_memory_equal(info.end.chain, bad.chain, STORE_WAL_CHAIN_LEN);
	bad = pos[300];
	bad.index = 400;
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &bad, &log, &info), 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR);

	/* Writing on top of an anchor ahead of the WAL continues from the anchor. */
	o.anchor = &bad;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 1, 401, 5, 5);
	store_wal_close(wal);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, &bad, &log, &info), 0);
	ts_log_expect(&log, 1, 401, 5);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
}

/* Compaction also removes our own abandoned segments (here one from a rolled-back history)
 * once they lie below the chain. */
static void test_store_wal_compact_abandoned(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 1);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	struct seg_file a[4], b[4];
	uint64_t v10;
	size_t na, nb;

	ts_write_wal(vfs, key1, 0, 1, 10, 10); /* A: segment 1 = 1..10 */
	v10 = memvfs_version(vfs);
	ts_write_wal(vfs, key1, 0, 1, 10, 10); /* segment 2 = 11..20 */
	ts_write_wal(vfs, key1, 0, 1, 10, 10); /* segment 3 = 21..30 */
	na = load_segs(vfs, a, 4);
	assert_int_equal(na, 3);
	assert_int_equal(memvfs_rollback(vfs, v10), TEEMS_OK);
	ts_write_wal(vfs, key1, 0, 2, 5, 5); /* B: segment 2 = 11..15 */
	/* The host brings back A's segment 3, which chains to A's segment 2, not to B's. */
	assert_int_equal(memvfs_put(vfs, TS_DIR "/wal-0000000000000003", a[2].data, a[2].size), 0);
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.end.index, 15);
	assert_int_equal(info.ignored_segments, 1);
	ts_append(wal, 2, 16, 5, 5); /* in segment 4 */
	assert_int_equal(store_wal_compact(wal, 15, NULL), TEEMS_OK);
	store_wal_close(wal);
	nb = load_segs(vfs, b, 4);
	assert_int_equal(nb, 1);
	assert_string_equal(b[0].name, "wal-0000000000000004");
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	assert_int_equal(info.stop, STORE_WAL_STOP_ANCHOR); /* compacted: needs the anchor */
	free_segs(a, na);
	free_segs(b, nb);
	store_vfs_destroy(vfs);
}

/* A failed write or fsync fails the WAL for good; reopening finds the durable prefix. */
static void test_store_wal_io_errors(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct ts_log log = {0};
	char err[TEEMS_ERRBUF_LEN] = "";
	uint8_t buf[TS_RECORD_MAX];

	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 1, 1, 5, 5);
	memvfs_fail_write(vfs, 0);
	for (uint64_t i = 6; i <= 8; i++)
		assert_int_equal(store_wal_append(wal, buf, ts_record(1, i, buf), NULL), 0);
	assert_int_equal(store_wal_sync(wal, NULL, err), TEEMS_EIO);
	assert_true(strlen(err) > 0);
	assert_int_equal(store_wal_append(wal, buf, 1, NULL), TEEMS_EIO);
	assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_EIO);
	store_wal_close(wal);
	memvfs_fail_write(vfs, UINT64_MAX);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 5);
	ts_log_free(&log);

	/* fsync fails after the write landed in the "page cache": the bytes are there and
	 * authentic, so a reopen may find them; the WAL still refuses to go on. */
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	for (uint64_t i = 6; i <= 8; i++)
		assert_int_equal(store_wal_append(wal, buf, ts_record(1, i, buf), NULL), 0);
	memvfs_crash_at_sync(vfs, memvfs_sync_count(vfs) + 1, MEMVFS_HOOK_FAIL, MEMVFS_DROP);
	assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_EIO);
	assert_int_equal(store_wal_sync(wal, NULL, NULL), TEEMS_EIO);
	store_wal_close(wal);
	memvfs_crash_at_sync(vfs, 0, 0, MEMVFS_DROP);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 8);
	ts_log_free(&log);

	/* An open for write whose sync fails reports it and leaves nothing half-open. */
	memvfs_crash_at_sync(vfs, memvfs_sync_count(vfs) + 1, MEMVFS_HOOK_FAIL, MEMVFS_DROP);
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, err), TEEMS_EIO);
	memvfs_crash_at_sync(vfs, 0, 0, MEMVFS_DROP);
	store_vfs_destroy(vfs);
}

/* Allocation failures anywhere in open/append/sync return TEEMS_ENOMEM (or, after a failed
 * sync, TEEMS_EIO) and never lose a synced record. */
static void alloc_fault_sweep(int repeat)
{
	struct store_vfs *base = ts_memvfs(1, 0);
	struct seg_file segs[8];
	size_t n;
	long nth;
	int clean = 0;

	ts_write_wal(base, key1, SEG_SMALL, 1, 60, 10);
	n = load_segs(base, segs, 8);
	for (nth = 0; !clean && nth < 100000; nth++) {
		struct store_vfs *vfs = vfs_with(segs, n, n, NULL, 0);
		struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
		struct store_wal *wal = NULL;
		struct store_wal_info info;
		struct ts_log log = {0};
		uint8_t buf[TS_RECORD_MAX];
		uint64_t acked = 60, appended = 60;
		int failed = 0, sync_failed = 0, rv;

		o.segment_size = SEG_SMALL;
		teems_alloc_fault(nth, repeat);
		rv = store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL);
		if (rv == TEEMS_OK) {
			for (uint64_t i = 61; i <= 140; i++) {
				rv = store_wal_append(wal, buf, ts_record(1, i, buf), NULL);
				if (rv != TEEMS_OK) {
					assert_true(rv == TEEMS_ENOMEM ||
						    (sync_failed && rv == TEEMS_EIO));
					failed = 1;
					break;
				}
				appended = i;
				if (i % 20 == 0) {
					rv = store_wal_sync(wal, NULL, NULL);
					if (rv != TEEMS_OK) {
						assert_true(rv == TEEMS_ENOMEM || rv == TEEMS_EIO);
						failed = sync_failed = 1;
						continue;
					}
					acked = i;
				}
			}
			store_wal_close(wal);
		} else {
			assert_int_equal(rv, TEEMS_ENOMEM);
			failed = 1;
		}
		teems_alloc_fault(-1, 0);
		clean = !failed;
		assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
		assert_true(log.n >= acked && log.n <= appended);
		ts_log_expect(&log, 1, 1, log.n);
		ts_log_free(&log);
		store_vfs_destroy(vfs);
	}
	assert_true(clean);
	assert_true(nth > 20);
	free_segs(segs, n);
	store_vfs_destroy(base);
}

static void test_store_wal_alloc_faults(void **state)
{
	alloc_fault_sweep(0);
	alloc_fault_sweep(1);
}

/* The two halves of a sync: a run makes exactly the groups closed before it durable. */
static void test_store_wal_group_halves(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct store_wal_pos pos;
	struct ts_log log = {0};
	uint8_t buf[TS_RECORD_MAX];
	uint64_t upto;

	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	for (uint64_t i = 1; i <= 5; i++)
		assert_int_equal(store_wal_append(wal, buf, ts_record(1, i, buf), NULL), 0);
	assert_int_equal(store_wal_sync_prepare(wal, &upto), TEEMS_OK);
	assert_int_equal(upto, 5);
	for (uint64_t i = 6; i <= 8; i++)
		assert_int_equal(store_wal_append(wal, buf, ts_record(1, i, buf), NULL), 0);
	assert_int_equal(store_wal_sync_run(wal, &pos, NULL), TEEMS_OK);
	assert_int_equal(pos.index, 5);
	assert_int_equal(store_wal_sync_run(wal, &pos, NULL), TEEMS_OK); /* nothing closed */
	assert_int_equal(pos.index, 5);
	/* Two groups closed, one run. */
	assert_int_equal(store_wal_sync_prepare(wal, &upto), TEEMS_OK);
	assert_int_equal(upto, 8);
	assert_int_equal(store_wal_append(wal, buf, ts_record(1, 9, buf), NULL), 0);
	assert_int_equal(store_wal_sync_prepare(wal, &upto), TEEMS_OK);
	assert_int_equal(upto, 9);
	assert_int_equal(store_wal_sync_prepare(wal, &upto), TEEMS_OK); /* empty: no group */
	assert_int_equal(store_wal_append(wal, buf, ts_record(1, 10, buf), NULL), 0);
	assert_int_equal(store_wal_sync_run(wal, &pos, NULL), TEEMS_OK);
	assert_int_equal(pos.index, 9);
	store_wal_close(wal);
	/* Record 10 was never written: after a power loss exactly 9 remain. */
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_KEEP), TEEMS_OK);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 9);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
}

/* One thread appends and closes groups while another runs the I/O (the daemon's loop and its
 * fsync worker). */
struct th {
	struct store_wal *wal;
	atomic_int done;
	uint64_t syncs;
};

static void *syncer(void *arg)
{
	struct th *t = arg;
	uint64_t last = 0;

	for (;;) {
		struct store_wal_pos pos;
		int done = atomic_load(&t->done);

		assert_int_equal(store_wal_sync_run(t->wal, &pos, NULL), TEEMS_OK);
		assert_true(pos.index >= last);
		assert_true(pos.index % 10 == 0); /* only whole groups */
		last = pos.index;
		t->syncs++;
		if (done)
			break;
	}
	return NULL;
}

static void test_store_wal_threads(void **state)
{
	struct store_vfs *vfs = ts_memvfs(1, 0);
	struct store_wal_opts o = ts_opts(key1, TS_REPLICA, NULL);
	struct store_wal_info info;
	struct ts_log log = {0};
	uint8_t buf[TS_RECORD_MAX];
	struct th t = {0};
	pthread_t tid;

	o.segment_size = SEG_SMALL;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &t.wal, &info, NULL), TEEMS_OK);
	assert_int_equal(pthread_create(&tid, NULL, syncer, &t), 0);
	for (uint64_t i = 1; i <= 3000; i++) {
		uint64_t index;

		assert_int_equal(store_wal_append(t.wal, buf, ts_record(1, i, buf), &index), 0);
		assert_int_equal(index, i);
		if (i % 10 == 0)
			assert_int_equal(store_wal_sync_prepare(t.wal, NULL), TEEMS_OK);
		/* Every 300 records, let the syncer catch up, so that syncs of real groups
		 * interleave with appends whatever the scheduler does. */
		while (i % 300 == 0) {
			struct store_wal_pos synced;

			store_wal_position(t.wal, NULL, &synced);
			if (synced.index >= i)
				break;
			sched_yield();
		}
	}
	atomic_store(&t.done, 1);
	pthread_join(tid, NULL);
	store_wal_close(t.wal);
	assert_true(t.syncs >= 10);
	assert_int_equal(ts_read(vfs, key1, TS_REPLICA, NULL, &log, &info), 0);
	ts_log_expect(&log, 1, 1, 3000);
	ts_log_free(&log);
	store_vfs_destroy(vfs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_wal_roundtrip),
		cmocka_unit_test(test_store_wal_empty_and_args),
		cmocka_unit_test(test_store_wal_large_records),
		cmocka_unit_test(test_store_wal_power_loss_every_sync),
		cmocka_unit_test(test_store_wal_flip_every_byte),
		cmocka_unit_test(test_store_wal_truncate_every_byte),
		cmocka_unit_test(test_store_wal_rollback_every_version),
		cmocka_unit_test(test_store_wal_reorder_records),
		cmocka_unit_test(test_store_wal_reorder_segments),
		cmocka_unit_test(test_store_wal_foreign),
		cmocka_unit_test(test_store_wal_s16_nonce_reuse),
		cmocka_unit_test(test_store_wal_s17_spliced_segments),
		cmocka_unit_test(test_store_wal_s17_same_index),
		cmocka_unit_test(test_store_wal_restart_on_unsynced_prefix),
		cmocka_unit_test(test_store_wal_compact_and_anchor),
		cmocka_unit_test(test_store_wal_compact_abandoned),
		cmocka_unit_test(test_store_wal_io_errors),
		cmocka_unit_test(test_store_wal_alloc_faults),
		cmocka_unit_test(test_store_wal_group_halves),
		cmocka_unit_test(test_store_wal_threads),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
