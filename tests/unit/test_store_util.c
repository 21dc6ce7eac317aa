/* Helpers shared by the store tests; see test_store.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "teems/err.h"
#include "test_store.h"

void ts_key(uint8_t key[32], unsigned seed)
{
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(seed * 131 + (unsigned)i * 7 + 1);
}

size_t ts_record(unsigned gen, uint64_t index, uint8_t *buf)
{
	size_t len = (size_t)((index * 7 + gen * 3) % 61) + 1;

	for (size_t j = 0; j < len; j++)
		buf[j] = (uint8_t)(index * 31 + j + gen * 101);
	return len;
}

int ts_log_cb(void *arg, uint64_t index, const void *data, size_t len)
{
	struct ts_log *log = arg;

	if (log->n == log->cap) {
		size_t cap = log->cap ? 2 * log->cap : 64;

		log->index = realloc(log->index, cap * sizeof(*log->index));
		log->data = realloc(log->data, cap * sizeof(*log->data));
		log->len = realloc(log->len, cap * sizeof(*log->len));
		assert_non_null(log->index);
		assert_non_null(log->data);
		assert_non_null(log->len);
		log->cap = cap;
	}
	log->index[log->n] = index;
	log->data[log->n] = malloc(len + 1);
	assert_non_null(log->data[log->n]);
	memcpy(log->data[log->n], data, len);
	log->len[log->n] = len;
	log->n++;
	return 0;
}

void ts_log_free(struct ts_log *log)
{
	for (size_t i = 0; i < log->n; i++)
		free(log->data[i]);
	free(log->index);
	free(log->data);
	free(log->len);
	memset(log, 0, sizeof(*log));
}

void ts_log_expect_at(const struct ts_log *log, size_t at, unsigned gen, uint64_t first, size_t n)
{
	uint8_t buf[TS_RECORD_MAX];

	assert_true(at + n <= log->n);
	for (size_t i = 0; i < n; i++) {
		size_t len = ts_record(gen, first + i, buf);

		assert_int_equal(log->index[at + i], first + i);
		assert_int_equal(log->len[at + i], len);
		assert_memory_equal(log->data[at + i], buf, len);
	}
}

void ts_log_expect(const struct ts_log *log, unsigned gen, uint64_t first, size_t n)
{
	assert_int_equal(log->n, n);
	ts_log_expect_at(log, 0, gen, first, n);
}

struct store_wal_opts ts_opts(const uint8_t *key, uint64_t replica, struct ts_log *log)
{
	return (struct store_wal_opts){
		.replica_id = replica,
		.root_key = key,
		.on_record = log != NULL ? ts_log_cb : NULL,
		.arg = log,
	};
}

int ts_read(struct store_vfs *vfs, const uint8_t *key, uint64_t replica,
	    const struct store_wal_pos *anchor, struct ts_log *log, struct store_wal_info *info)
{
	struct store_wal_opts o = ts_opts(key, replica, log);

	o.anchor = anchor;
	return store_wal_open(vfs, TS_DIR, &o, NULL, info, NULL);
}

void ts_append(struct store_wal *wal, unsigned gen, uint64_t first, size_t n, size_t group)
{
	uint8_t buf[TS_RECORD_MAX];
	struct store_wal_pos pos;

	for (size_t i = 0; i < n; i++) {
		uint64_t index;
		size_t len = ts_record(gen, first + i, buf);

		assert_int_equal(store_wal_append(wal, buf, len, &index), TEEMS_OK);
		assert_int_equal(index, first + i);
		if ((i + 1) % group == 0 || i + 1 == n) {
			assert_int_equal(store_wal_sync(wal, &pos, NULL), TEEMS_OK);
			assert_int_equal(pos.index, first + i);
		}
	}
}

struct store_vfs *ts_memvfs(uint64_t seed, int history)
{
	struct store_vfs *vfs = memvfs_new(seed, history);

	assert_non_null(vfs);
	assert_int_equal(store_vfs_mkdir(vfs, TS_DIR), TEEMS_OK);
	return vfs;
}

void ts_write_wal(struct store_vfs *vfs, const uint8_t *key, uint64_t segment_size, unsigned gen,
		  size_t n, size_t group)
{
	struct store_wal_opts o = ts_opts(key, TS_REPLICA, NULL);
	struct store_wal *wal = NULL;
	struct store_wal_info info;

	o.segment_size = segment_size;
	assert_int_equal(store_wal_open(vfs, TS_DIR, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, gen, info.end.index + 1, n, group);
	store_wal_close(wal);
}
