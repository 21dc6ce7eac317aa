/* Helpers shared by the store tests (test_store_*.c): deterministic keys and records, a
 * record collector for store_wal_open(), and a few one-liners over memvfs. */
#ifndef TEEMS_TEST_STORE_H
#define TEEMS_TEST_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/memvfs.h"
#include "store/wal.h"

#define TS_DIR "wal"
#define TS_REPLICA 7

/* A deterministic root key per seed. */
void ts_key(uint8_t key[32], unsigned seed);

/* The payload of record `index` in history `gen` (lengths 1..61; histories differ). */
size_t ts_record(unsigned gen, uint64_t index, uint8_t *buf);
#define TS_RECORD_MAX 64

/* Every record delivered by store_wal_open(), in order. */
struct ts_log {
	uint64_t *index;
	uint8_t **data;
	size_t *len;
	size_t n, cap;
};
int ts_log_cb(void *arg, uint64_t index, const void *data, size_t len);
void ts_log_free(struct ts_log *log);

/* Asserts that log holds exactly records first..first+n-1 of history gen. */
void ts_log_expect(const struct ts_log *log, unsigned gen, uint64_t first, size_t n);

/* Asserts that log entries at..at+n-1 are records first..first+n-1 of history gen. */
void ts_log_expect_at(const struct ts_log *log, size_t at, unsigned gen, uint64_t first, size_t n);

/* Options for replica TS_REPLICA (or `replica`) under key, delivering into log (may be NULL). */
struct store_wal_opts ts_opts(const uint8_t *key, uint64_t replica, struct ts_log *log);

/* Opens dir read-only; returns store_wal_open()'s result. */
int ts_read(struct store_vfs *vfs, const uint8_t *key, uint64_t replica,
	    const struct store_wal_pos *anchor, struct ts_log *log, struct store_wal_info *info);

/* Appends records first..first+n-1 of history gen, syncing after every `group` records and at
 * the end; asserts success. */
void ts_append(struct store_wal *wal, unsigned gen, uint64_t first, size_t n, size_t group);

/* A memvfs with directory TS_DIR. */
struct store_vfs *ts_memvfs(uint64_t seed, int history);

/* Writes a WAL of n records of history gen (synced in groups) and closes it. */
void ts_write_wal(struct store_vfs *vfs, const uint8_t *key, uint64_t segment_size, unsigned gen,
		  size_t n, size_t group);

#endif
