/* Fuzzes store_wal_open() on hostile segment files (DESIGN.md section 2: the host may hand us
 * any bytes). Two shapes of input, chosen by the first byte:
 *
 * - raw (bit 0 clear): the rest is the bytes of one or two segment files, split at a point the
 *   input chooses. Without the key these cannot authenticate, so this shape exercises the
 *   header, name and length checks.
 * - genuine (bit 0 set): a real WAL is written first (records and incarnations shaped by the
 *   input, fixed key), then the rest of the input is a list of edits (flip, truncate, delete,
 *   swap, duplicate) applied to its files. This reaches the record, chain and splice logic.
 *
 * Then the WAL is opened read-only (optionally from an anchor the input describes), and opened
 * for writing, one record appended and synced, and read again. Beyond "no crash, no leak"
 * (ASan), it checks: indexes are delivered consecutively from the anchor, info.records counts
 * them, and the writer continues exactly at the end of the valid prefix. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "store/memvfs.h"
#include "store/wal.h"
#include "teems/err.h"

#define DIR "w"
#define REPLICA 3
#define MAX_FILES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t root_key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

struct seen {
	uint64_t next; /* the index the next record must have */
	uint64_t count;
};

static int on_record(void *arg, uint64_t index, const void *rec, size_t len)
{
	struct seen *s = arg;

	if (index != s->next || len > STORE_WAL_RECORD_MAX)
		abort();
	s->next++;
	s->count++;
	return 0;
}

static struct store_wal_opts opts(struct seen *s, const uint8_t *inc)
{
	return (struct store_wal_opts){
		.replica_id = REPLICA,
		.root_key = root_key,
		.segment_size = STORE_WAL_SEGMENT_MIN,
		.on_record = on_record,
		.arg = s,
		.test_incarnation = inc,
	};
}

/* Writes a genuine WAL: the input's first byte says how many incarnations (1..3) and records;
 * the following bytes are record lengths. Returns the bytes consumed. */
static size_t genuine(struct store_vfs *vfs, const uint8_t *data, size_t size)
{
	static uint8_t payload[512];
	size_t used = 0;
	unsigned incs, recs;

	if (size < 1)
		return 0;
	incs = 1 + data[0] % 3;
	recs = (data[0] >> 2) % 40;
	used = 1;
	for (unsigned i = 0; i < incs; i++) {
		uint8_t inc[STORE_WAL_INCARNATION_LEN] = {0xee, (uint8_t)i};
		struct store_wal_opts o = opts(NULL, inc);
		struct store_wal *wal = NULL;

		o.on_record = NULL;
		if (store_wal_open(vfs, DIR, &o, &wal, NULL, NULL) != TEEMS_OK)
			abort();
		for (unsigned r = 0; r < recs; r++) {
			size_t len = used < size ? (size_t)data[used++] * 2 : r;

			memset(payload, (int)r, len);
			if (store_wal_append(wal, payload, len, NULL) != TEEMS_OK)
				abort();
			if (r % 7 == 6 && store_wal_sync(wal, NULL, NULL) != TEEMS_OK)
				abort();
		}
		if (store_wal_sync(wal, NULL, NULL) != TEEMS_OK)
			abort();
		store_wal_close(wal);
	}
	return used;
}

static size_t list_files(struct store_vfs *vfs, char names[MAX_FILES][64])
{
	struct store_dirlist l = {0};
	size_t n = 0;

	if (store_vfs_list(vfs, DIR, &l) != TEEMS_OK)
		abort();
	for (size_t i = 0; i < l.n && n < MAX_FILES; i++)
		snprintf(names[n++], 64, DIR "/%s", l.names[i]);
	store_dirlist_free(&l);
	return n;
}

/* Applies 4-byte edits: file, operation, 16-bit position. */
static void edit(struct store_vfs *vfs, const uint8_t *data, size_t size)
{
	char names[MAX_FILES][64];

	for (size_t at = 0; at + 4 <= size; at += 4) {
		size_t n = list_files(vfs, names);
		const char *f, *g;
		uint8_t *buf, *other;
		size_t len, olen, pos;

		if (n == 0)
			return;
		f = names[data[at] % n];
		g = names[(data[at] / 16) % n];
		pos = get_le16(data + at + 2);
		if (memvfs_get(vfs, f, &buf, &len) != TEEMS_OK)
			abort();
		switch (data[at + 1] % 6) {
		case 0: /* flip a bit */
			if (len > 0)
				buf[pos % len] ^= (uint8_t)(1u << (data[at + 1] / 8 % 8));
			memvfs_put(vfs, f, buf, len);
			break;
		case 1: /* truncate */
			memvfs_put(vfs, f, buf, len > 0 ? pos % len : 0);
			break;
		case 2: /* delete */
			store_vfs_unlink(vfs, f);
			store_vfs_sync_dir(vfs, DIR);
			break;
		case 3: /* swap two files' contents */
			if (memvfs_get(vfs, g, &other, &olen) != TEEMS_OK)
				abort();
			memvfs_put(vfs, f, other, olen);
			memvfs_put(vfs, g, buf, len);
			teems_free(other);
			break;
		case 4: { /* copy a file under another segment number */
			char name[64];

			snprintf(name, sizeof(name), DIR "/wal-%016x", (unsigned)(pos % 16 + 1));
			memvfs_put(vfs, name, buf, len);
			break;
		}
		default: /* cut a range out of the middle */
			if (len > 0) {
				size_t from = pos % len, cut = data[at + 1] / 6 % (len - from + 1);

				memmove(buf + from, buf + from + cut, len - from - cut);
				memvfs_put(vfs, f, buf, len - cut);
			}
			break;
		}
		teems_free(buf);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t writer_inc[STORE_WAL_INCARNATION_LEN] = {0x77};
	struct store_vfs *vfs;
	struct store_wal_pos anchor = {0};
	struct store_wal_info info, again;
	struct store_wal_opts o;
	struct store_wal *wal = NULL;
	struct seen s = {0};
	uint8_t mode;
	int use_anchor;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	vfs = memvfs_new(1, 0);
	if (vfs == NULL || store_vfs_mkdir(vfs, DIR) != TEEMS_OK)
		abort();
	if (mode & 1) {
		size_t used = genuine(vfs, data, size);

		edit(vfs, data + used, size - used);
	} else {
		size_t split = size >= 2 ? get_le16(data) % (size - 1) : 0;
		const uint8_t *rest = data + (size >= 2 ? 2 : 0);
		size_t rlen = size >= 2 ? size - 2 : 0;

		if (split > rlen)
			split = rlen;
		memvfs_put(vfs, DIR "/wal-0000000000000001", rest, split);
		if (mode & 2)
			memvfs_put(vfs, DIR "/wal-0000000000000002", rest + split, rlen - split);
	}
	/* An anchor from the input's mode byte: index only; its chain is zero, so a non-zero
	 * index never matches and must end the prefix at the anchor. */
	use_anchor = (mode & 4) != 0;
	anchor.index = use_anchor ? (mode >> 3) : 0;

	o = opts(&s, writer_inc);
	o.anchor = use_anchor ? &anchor : NULL;
	s.next = anchor.index + 1;
	if (store_wal_open(vfs, DIR, &o, NULL, &info, NULL) != TEEMS_OK)
		abort();
	if (info.records != s.count || info.end.index != anchor.index + s.count)
		abort();

	/* The writer continues exactly at the end of the valid prefix. */
	memset(&s, 0, sizeof(s));
	s.next = anchor.index + 1;
	if (store_wal_open(vfs, DIR, &o, &wal, &again, NULL) != TEEMS_OK)
		abort();
	if (again.end.index != info.end.index ||
	    memcmp(again.end.chain, info.end.chain, STORE_WAL_CHAIN_LEN) != 0)
		abort();
	if (store_wal_append(wal, "x", 1, NULL) != TEEMS_OK ||
	    store_wal_sync(wal, NULL, NULL) != TEEMS_OK)
		abort();
	store_wal_close(wal);
	memset(&s, 0, sizeof(s));
	s.next = anchor.index + 1;
	if (store_wal_open(vfs, DIR, &o, NULL, &again, NULL) != TEEMS_OK)
		abort();
	if (again.end.index != info.end.index + 1 || again.records != info.records + 1)
		abort();
	store_vfs_destroy(vfs);
	return 0;
}
