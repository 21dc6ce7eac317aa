/* The storage VFS: the memvfs crash and rollback model (which every other store test trusts,
 * so it is tested first, with negative controls) and the POSIX implementation on a real
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "store/memvfs.h"
#include "store/snapshot.h"
#include "store/vfs.h"
#include "store/wal.h"
#include "teems/err.h"
#include "test_store.h"

/* Small helpers over any VFS. */

static void put(struct store_vfs *vfs, const char *path, uint64_t off, const char *s, int sync)
{
	struct store_file *f;

	assert_int_equal(store_vfs_open(vfs, path, STORE_OPEN_WRITE | STORE_OPEN_CREATE, &f), 0);
	assert_int_equal(store_file_write(f, s, strlen(s), off), TEEMS_OK);
	if (sync)
		assert_int_equal(store_file_sync(f), TEEMS_OK);
	store_file_close(f);
}

/* The file's content as a string ("<none>" when missing). */
static const char *content(struct store_vfs *vfs, const char *path)
{
	static char out[4096];
	struct store_file *f;
	size_t n;

	if (store_vfs_open(vfs, path, 0, &f) != TEEMS_OK)
		return "<none>";
	assert_int_equal(store_file_read(f, out, sizeof(out) - 1, 0, &n), TEEMS_OK);
	out[n] = '\0';
	store_file_close(f);
	return out;
}

static int has_name(struct store_vfs *vfs, const char *dir, const char *name)
{
	struct store_dirlist l = {0};
	int found = 0;

	assert_int_equal(store_vfs_list(vfs, dir, &l), TEEMS_OK);
	for (size_t i = 0; i < l.n; i++)
		found |= strcmp(l.names[i], name) == 0;
	store_dirlist_free(&l);
	return found;
}

/* The operations every VFS implements, with their errors. */
static void vfs_contract(struct store_vfs *vfs, const char *d)
{
	char a[512], b[512];
	struct store_file *f, *g;
	struct store_dirlist l = {0};
	uint8_t buf[64];
	uint64_t size;
	size_t n;

	snprintf(a, sizeof(a), "%s/a", d);
	snprintf(b, sizeof(b), "%s/b", d);
	assert_int_equal(store_vfs_mkdir(vfs, d), TEEMS_OK);
	assert_int_equal(store_vfs_mkdir(vfs, d), TEEMS_EEXIST);
	assert_int_equal(store_vfs_open(vfs, a, 0, &f), TEEMS_ENOTFOUND);
	assert_int_equal(store_vfs_open(vfs, a, STORE_OPEN_CREATE, &f), TEEMS_EINVAL);
	assert_int_equal(
		store_vfs_open(vfs, a, STORE_OPEN_WRITE | STORE_OPEN_CREATE | STORE_OPEN_EXCL, &f),
		TEEMS_OK);
	assert_int_equal(
		store_vfs_open(vfs, a, STORE_OPEN_WRITE | STORE_OPEN_CREATE | STORE_OPEN_EXCL, &g),
		TEEMS_EEXIST);
	assert_int_equal(store_file_write(f, "hello", 5, 0), TEEMS_OK);
	assert_int_equal(store_file_write(f, "x", 1, 10), TEEMS_OK); /* a hole reads as zeros */
	assert_int_equal(store_file_size(f, &size), TEEMS_OK);
	assert_int_equal(size, 11);
	assert_int_equal(store_file_read(f, buf, sizeof(buf), 0, &n), TEEMS_OK);
	assert_int_equal(n, 11);
	assert_memory_equal(buf, "hello\0\0\0\0\0x", 11);
	assert_int_equal(store_file_read(f, buf, sizeof(buf), 20, &n), TEEMS_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_file_truncate(f, 3), TEEMS_OK);
	assert_int_equal(store_file_size(f, &size), TEEMS_OK);
	assert_int_equal(size, 3);
	assert_int_equal(store_file_sync(f), TEEMS_OK);
	store_file_close(f);
	assert_string_equal(content(vfs, a), "hel");
	/* A read-only handle cannot write. */
	assert_int_equal(store_vfs_open(vfs, a, 0, &f), TEEMS_OK);
	assert_int_not_equal(store_file_write(f, "z", 1, 0), TEEMS_OK);
	store_file_close(f);
	/* Truncate on open. */
	assert_int_equal(store_vfs_open(vfs, a, STORE_OPEN_WRITE | STORE_OPEN_TRUNC, &f), 0);
	assert_int_equal(store_file_size(f, &size), TEEMS_OK);
	assert_int_equal(size, 0);
	assert_int_equal(store_file_write(f, "abc", 3, 0), TEEMS_OK);
	store_file_close(f);

	assert_int_equal(store_vfs_rename(vfs, a, b), TEEMS_OK);
	assert_string_equal(content(vfs, a), "<none>");
	assert_string_equal(content(vfs, b), "abc");
	assert_int_equal(store_vfs_rename(vfs, a, b), TEEMS_ENOTFOUND);
	put(vfs, a, 0, "new", 1);
	assert_int_equal(store_vfs_rename(vfs, a, b), TEEMS_OK); /* replaces */
	assert_string_equal(content(vfs, b), "new");
	assert_int_equal(store_vfs_sync_dir(vfs, d), TEEMS_OK);
	assert_int_equal(store_vfs_list(vfs, d, &l), TEEMS_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.names[0], "b");
	store_dirlist_free(&l);
	assert_int_equal(store_vfs_unlink(vfs, b), TEEMS_OK);
	assert_int_equal(store_vfs_unlink(vfs, b), TEEMS_ENOTFOUND);
	assert_int_equal(store_vfs_sync_dir(vfs, d), TEEMS_OK);
	assert_false(has_name(vfs, d, "b"));
	snprintf(a, sizeof(a), "%s/nodir", d);
	assert_int_equal(store_vfs_list(vfs, a, &l), TEEMS_ENOTFOUND);
	assert_int_equal(store_vfs_sync_dir(vfs, a), TEEMS_ENOTFOUND);
}

static void test_store_vfs_memvfs_contract(void **state)
{
	struct store_vfs *vfs = memvfs_new(1, 1);

	assert_non_null(vfs);
	vfs_contract(vfs, "d");
	store_vfs_destroy(vfs);
}

/* What survives a power loss: synced bytes, and names only once their directory is synced. */
static void test_store_vfs_memvfs_power_loss(void **state)
{
	struct store_vfs *vfs = memvfs_new(1, 0);
	struct store_file *f;
	char buf[8];
	size_t n;

	assert_int_equal(store_vfs_mkdir(vfs, "d"), TEEMS_OK);
	/* A synced file whose name was never synced is gone. */
	put(vfs, "d/a", 0, "AAAA", 1);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/a"), "<none>");

	/* Synced bytes stay, unsynced ones go (DROP) or stay (KEEP). */
	put(vfs, "d/a", 0, "AAAA", 1);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	put(vfs, "d/a", 4, "BBBB", 0);
	put(vfs, "d/a", 0, "C", 0);
	assert_string_equal(content(vfs, "d/a"), "CAAABBBB");
	assert_int_equal(store_vfs_open(vfs, "d/a", 0, &f), TEEMS_OK);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/a"), "AAAA");
	/* Handles opened before the power loss are dead. */
	assert_int_equal(store_file_read(f, buf, sizeof(buf), 0, &n), TEEMS_EIO);
	assert_int_equal(store_file_sync(f), TEEMS_EIO);
	store_file_close(f);
	put(vfs, "d/a", 4, "BBBB", 0);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_KEEP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/a"), "AAAABBBB");
	/* After a power loss, what is there is durable. */
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/a"), "AAAABBBB");

	/* GARBLE: the synced part intact, the unsynced part the same length but not the data. */
	put(vfs, "d/a", 8, "CCCCCCCCCCCCCCCC", 0);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_GARBLE), TEEMS_OK);
	{
		const char *c = content(vfs, "d/a");

		assert_memory_equal(c, "AAAABBBB", 8);
		assert_int_not_equal(memcmp(c + 8, "CCCCCCCCCCCCCCCC", 16), 0);
	}

	/* An unsynced truncation is undone by DROP. */
	put(vfs, "d/t", 0, "123456", 1);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	assert_int_equal(store_vfs_open(vfs, "d/t", STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_truncate(f, 2), TEEMS_OK);
	store_file_close(f);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/t"), "123456");

	/* Renames and unlinks become durable at the directory sync. */
	assert_int_equal(store_vfs_rename(vfs, "d/t", "d/u"), TEEMS_OK);
	assert_int_equal(store_vfs_unlink(vfs, "d/a"), TEEMS_OK);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/t"), "123456");
	assert_string_equal(content(vfs, "d/u"), "<none>");
	assert_true(has_name(vfs, "d", "a"));
	assert_int_equal(store_vfs_rename(vfs, "d/t", "d/u"), TEEMS_OK);
	assert_int_equal(store_vfs_unlink(vfs, "d/a"), TEEMS_OK);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/t"), "<none>");
	assert_string_equal(content(vfs, "d/u"), "123456");
	assert_false(has_name(vfs, "d", "a"));
	store_vfs_destroy(vfs);
}

/* RANDOM tears writes sector by sector, deterministically for a seed. */
static void random_crash(uint64_t seed, uint8_t *out, size_t *len)
{
	struct store_vfs *vfs = memvfs_new(seed, 0);
	struct store_file *f;
	uint8_t data[4096];
	uint8_t *got;

	memset(data, 0xab, sizeof(data));
	assert_int_equal(store_vfs_mkdir(vfs, "d"), TEEMS_OK);
	assert_int_equal(store_vfs_open(vfs, "d/f", STORE_OPEN_WRITE | STORE_OPEN_CREATE, &f), 0);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	assert_int_equal(store_file_write(f, data, sizeof(data), 0), TEEMS_OK);
	store_file_close(f);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_RANDOM), TEEMS_OK);
	assert_int_equal(memvfs_get(vfs, "d/f", &got, len), TEEMS_OK);
	assert_true(*len <= sizeof(data));
	if (*len > 0)
		memcpy(out, got, *len);
	teems_free(got);
	store_vfs_destroy(vfs);
}

static void test_store_vfs_memvfs_random(void **state)
{
	uint8_t a[4096], b[4096];
	size_t la, lb;
	int torn = 0, differ = 0;

	for (uint64_t seed = 0; seed < 32; seed++) {
		random_crash(seed, a, &la);
		random_crash(seed, b, &lb);
		assert_int_equal(la, lb);
		assert_memory_equal(a, b, la); /* same seed, same disk */
		random_crash(seed + 1000, b, &lb);
		differ |= la != lb || memcmp(a, b, la) != 0;
		/* Torn: some sectors written, some not. */
		if (la == 4096) {
			int kept = 0, lost = 0;

			for (size_t s = 0; s < 8; s++) {
				kept |= a[s * 512] == 0xab;
				lost |= a[s * 512] != 0xab;
			}
			torn |= kept && lost;
		}
	}
	assert_true(differ);
	assert_true(torn);
}

/* Every synced version can be restored exactly; the history can be switched off. */
static void test_store_vfs_memvfs_rollback(void **state)
{
	struct store_vfs *vfs = memvfs_new(1, 1);
	char expect[16][64];
	uint64_t ver[16];
	struct store_file *f;
	size_t n = 0;

	assert_int_equal(store_vfs_mkdir(vfs, "d"), TEEMS_OK);
	ver[n] = memvfs_version(vfs);
	snprintf(expect[n++], 64, "<none>");
	put(vfs, "d/a", 0, "one", 1);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	ver[n] = memvfs_version(vfs);
	snprintf(expect[n++], 64, "one");
	put(vfs, "d/a", 3, "two", 1);
	ver[n] = memvfs_version(vfs);
	snprintf(expect[n++], 64, "onetwo");
	put(vfs, "d/a", 0, "THREE", 0); /* never synced */
	put(vfs, "d/b", 0, "bee", 1);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	ver[n] = memvfs_version(vfs);
	snprintf(expect[n++], 64, "onetwo"); /* a directory sync does not sync d/a's bytes */
	assert_int_equal(store_vfs_unlink(vfs, "d/a"), TEEMS_OK);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	ver[n] = memvfs_version(vfs);
	snprintf(expect[n++], 64, "<none>");

	assert_int_equal(store_vfs_open(vfs, "d/b", 0, &f), TEEMS_OK);
	for (size_t round = 0; round < 2; round++) {
		for (size_t i = n; i-- > 0;) {
			assert_int_equal(memvfs_rollback(vfs, ver[i]), TEEMS_OK);
			assert_string_equal(content(vfs, "d/a"), expect[i]);
			assert_string_equal(content(vfs, "d/b"), i >= 3 ? "bee" : "<none>");
		}
	}
	assert_int_equal(store_file_sync(f), TEEMS_EIO); /* dead since the first rollback */
	store_file_close(f);
	assert_int_equal(memvfs_rollback(vfs, memvfs_version(vfs) + 1), TEEMS_EINVAL);
	store_vfs_destroy(vfs);

	vfs = memvfs_new(1, 0);
	assert_int_equal(memvfs_rollback(vfs, 0), TEEMS_EINVAL);
	store_vfs_destroy(vfs);
}

/* The sync hook: count, fail, crash before or after. */
static int count_hook(void *arg, uint64_t nth)
{
	*(uint64_t *)arg = nth;
	return MEMVFS_HOOK_CONTINUE;
}

static void test_store_vfs_memvfs_hooks(void **state)
{
	struct store_vfs *vfs = memvfs_new(1, 0);
	struct store_file *f;
	uint64_t seen = 0;

	assert_int_equal(store_vfs_mkdir(vfs, "d"), TEEMS_OK);
	memvfs_set_sync_hook(vfs, count_hook, &seen);
	put(vfs, "d/a", 0, "one", 1);
	assert_int_equal(store_vfs_sync_dir(vfs, "d"), TEEMS_OK);
	assert_int_equal(seen, 2);
	assert_int_equal(memvfs_sync_count(vfs), 2);

	/* FAIL: an error and no effect, but no power loss either. */
	memvfs_crash_at_sync(vfs, 3, MEMVFS_HOOK_FAIL, MEMVFS_DROP);
	put(vfs, "d/a", 3, "two", 0);
	assert_int_equal(store_vfs_open(vfs, "d/a", STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_sync(f), TEEMS_EIO);
	assert_int_equal(store_file_sync(f), TEEMS_OK); /* sync 4: the hook fired once */
	store_file_close(f);
	assert_int_equal(memvfs_power_loss(vfs, MEMVFS_DROP), TEEMS_OK);
	assert_string_equal(content(vfs, "d/a"), "onetwo");

	/* CRASH_BEFORE: power loss instead of the sync. */
	memvfs_crash_at_sync(vfs, 5, MEMVFS_HOOK_CRASH_BEFORE, MEMVFS_DROP);
	assert_int_equal(store_vfs_open(vfs, "d/a", STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_write(f, "three", 5, 6), TEEMS_OK);
	assert_int_equal(store_file_sync(f), TEEMS_EIO);
	assert_int_equal(store_file_write(f, "x", 1, 0), TEEMS_EIO); /* dead */
	store_file_close(f);
	assert_string_equal(content(vfs, "d/a"), "onetwo");

	/* CRASH_AFTER: the sync took effect, then the power went. */
	memvfs_crash_at_sync(vfs, 6, MEMVFS_HOOK_CRASH_AFTER, MEMVFS_DROP);
	assert_int_equal(store_vfs_open(vfs, "d/a", STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_write(f, "three", 5, 6), TEEMS_OK);
	assert_int_equal(store_file_sync(f), TEEMS_EIO);
	store_file_close(f);
	assert_string_equal(content(vfs, "d/a"), "onetwothree");

	/* Injected write failure, once. */
	memvfs_fail_write(vfs, 1);
	assert_int_equal(store_vfs_open(vfs, "d/a", STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_write(f, "1", 1, 0), TEEMS_OK);
	assert_int_equal(store_file_write(f, "2", 1, 0), TEEMS_EIO);
	assert_int_equal(store_file_write(f, "3", 1, 0), TEEMS_OK);
	store_file_close(f);
	store_vfs_destroy(vfs);
}

static int ok_if(int rv, int expected)
{
	return rv == expected ? TEEMS_OK : rv;
}

/* Allocation failures inside memvfs return TEEMS_ENOMEM and leave a usable file system. */
static void test_store_vfs_memvfs_alloc_faults(void **state)
{
	int clean = 0;

	for (long nth = 0; !clean && nth < 10000; nth++) {
		struct store_vfs *vfs = memvfs_new(1, 1);
		struct store_file *f = NULL;
		struct store_dirlist l = {0};
		int rv, failed = 0;

		assert_non_null(vfs);
		assert_int_equal(store_vfs_mkdir(vfs, "d"), TEEMS_OK);
		teems_alloc_fault(nth, 0);
#define STEP(call)                                                 \
	do {                                                       \
		rv = (call);                                       \
		assert_true(rv == TEEMS_OK || rv == TEEMS_ENOMEM); \
		failed |= rv != TEEMS_OK;                          \
	} while (0)
		STEP(store_vfs_open(vfs, "d/a", STORE_OPEN_WRITE | STORE_OPEN_CREATE, &f));
		if (rv == TEEMS_OK) {
			STEP(store_file_write(f, "hello", 5, 0));
			STEP(store_file_sync(f));
			STEP(store_file_truncate(f, 2));
			store_file_close(f);
		}
		STEP(store_vfs_sync_dir(vfs, "d"));
		/* d/a is missing when its creation failed; version 1 when its sync did. */
		STEP(ok_if(store_vfs_rename(vfs, "d/a", "d/b"), TEEMS_ENOTFOUND));
		STEP(store_vfs_list(vfs, "d", &l));
		store_dirlist_free(&l);
		STEP(memvfs_put(vfs, "d/c", "c", 1));
		STEP(ok_if(memvfs_rollback(vfs, 1), TEEMS_EINVAL));
		STEP(memvfs_power_loss(vfs, MEMVFS_RANDOM));
#undef STEP
		teems_alloc_fault(-1, 0);
		clean = !failed;
		/* Still usable. */
		put(vfs, "d/z", 0, "z", 1);
		assert_string_equal(content(vfs, "d/z"), "z");
		store_vfs_destroy(vfs);
	}
	assert_true(clean);
}

/* The POSIX VFS on a real directory. */
static void test_store_vfs_posix(void **state)
{
	char tmpl[] = "/tmp/teems-store-XXXXXX", d[512], p[600];
	struct store_vfs *vfs = store_vfs_posix();
	struct store_file *f;
	uint8_t *big = malloc(1 << 20), *back = malloc(1 << 20);
	size_t n;

	assert_non_null(vfs);
	assert_non_null(big);
	assert_non_null(back);
	assert_non_null(mkdtemp(tmpl));
	snprintf(d, sizeof(d), "%s/d", tmpl);
	vfs_contract(vfs, d);

	/* A large write and read go through whole (short writes and reads are continued). */
	for (size_t i = 0; i < (1 << 20); i++)
		big[i] = (uint8_t)(i * 7);
	snprintf(p, sizeof(p), "%s/big", d);
	assert_int_equal(store_vfs_open(vfs, p, STORE_OPEN_WRITE | STORE_OPEN_CREATE, &f), 0);
	assert_int_equal(store_file_write(f, big, 1 << 20, 4096), TEEMS_OK);
	assert_int_equal(store_file_sync(f), TEEMS_OK);
	assert_int_equal(store_file_read(f, back, 1 << 20, 4096, &n), TEEMS_OK);
	assert_int_equal(n, 1 << 20);
	assert_memory_equal(back, big, 1 << 20);
	store_file_close(f);
	assert_int_equal(store_vfs_unlink(vfs, p), TEEMS_OK);
	snprintf(p, sizeof(p), "%s/nodir/x", tmpl);
	assert_int_equal(store_vfs_mkdir(vfs, p), TEEMS_ENOTFOUND);
	assert_int_equal(rmdir(d), 0);
	assert_int_equal(rmdir(tmpl), 0);
	free(big);
	free(back);
	store_vfs_destroy(vfs);
}

/* The WAL and a snapshot on the POSIX VFS, including the tail a crash leaves behind. */
static void test_store_vfs_posix_wal(void **state)
{
	char tmpl[] = "/tmp/teems-store-XXXXXX", p[600];
	struct store_vfs *vfs = store_vfs_posix();
	struct store_wal *wal = NULL;
	struct store_wal_info info;
	struct store_wal_pos pos, covers;
	struct store_dirlist l = {0};
	struct ts_log log = {0};
	struct store_file *f;
	struct store_wal_opts o;
	uint8_t key[32];
	uint64_t size;
	void *payload;
	size_t n;

	ts_key(key, 3);
	o = ts_opts(key, TS_REPLICA, &log);
	o.segment_size = STORE_WAL_SEGMENT_MIN;
	assert_non_null(mkdtemp(tmpl));
	assert_int_equal(store_wal_open(vfs, tmpl, &o, &wal, &info, NULL), TEEMS_OK);
	ts_append(wal, 1, 1, 300, 16);
	store_wal_position(wal, NULL, &pos);
	store_wal_close(wal);
	assert_int_equal(store_wal_open(vfs, tmpl, &o, NULL, &info, NULL), TEEMS_OK);
	ts_log_expect(&log, 1, 1, 300);
	assert_int_equal(info.stop, STORE_WAL_STOP_CLEAN);
	assert_memory_equal(&info.end, &pos, sizeof(pos));
	ts_log_free(&log);

	/* Tear the last record: the writer cuts the tail and continues after record 299. */
	snprintf(p, sizeof(p), "%s/wal-%016llx", tmpl, (unsigned long long)pos.segment);
	assert_int_equal(store_vfs_open(vfs, p, STORE_OPEN_WRITE, &f), TEEMS_OK);
	assert_int_equal(store_file_truncate(f, pos.offset - 3), TEEMS_OK);
	store_file_close(f);
	assert_int_equal(store_wal_open(vfs, tmpl, &o, &wal, &info, NULL), TEEMS_OK);
	assert_int_equal(info.stop, STORE_WAL_STOP_TORN);
	assert_int_equal(info.end.index, 299);
	assert_true(info.tail_bytes > 0);
	ts_log_free(&log);
	ts_append(wal, 2, 300, 10, 4);
	store_wal_position(wal, NULL, &pos);
	store_wal_close(wal);
	assert_int_equal(store_vfs_open(vfs, p, 0, &f), TEEMS_OK);
	assert_int_equal(store_file_size(f, &size), TEEMS_OK);
	assert_int_equal(size, info.end.offset); /* the torn tail is gone */
	store_file_close(f);

	/* A snapshot beside it, and the WAL read from its position. */
	assert_int_equal(store_snapshot_write(vfs, tmpl, TS_REPLICA, key, &pos, "state", 5, NULL),
			 0);
	assert_int_equal(
		store_snapshot_load(vfs, tmpl, TS_REPLICA, key, &payload, &n, &covers, NULL),
		TEEMS_OK);
	assert_int_equal(n, 5);
	teems_free(payload);
	o.anchor = &covers;
	assert_int_equal(store_wal_open(vfs, tmpl, &o, NULL, &info, NULL), TEEMS_OK);
	assert_int_equal(log.n, 0);
	assert_int_equal(info.end.index, 309);
	o.anchor = NULL;
	assert_int_equal(store_wal_open(vfs, tmpl, &o, NULL, &info, NULL), TEEMS_OK);
	ts_log_expect_at(&log, 0, 1, 1, 299);
	ts_log_expect_at(&log, 299, 2, 300, 10);
	ts_log_free(&log);

	assert_int_equal(store_vfs_list(vfs, tmpl, &l), TEEMS_OK);
	for (size_t i = 0; i < l.n; i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpl, l.names[i]);
		assert_int_equal(store_vfs_unlink(vfs, p), TEEMS_OK);
	}
	store_dirlist_free(&l);
	assert_int_equal(rmdir(tmpl), 0);
	store_vfs_destroy(vfs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_vfs_memvfs_contract),
		cmocka_unit_test(test_store_vfs_memvfs_power_loss),
		cmocka_unit_test(test_store_vfs_memvfs_random),
		cmocka_unit_test(test_store_vfs_memvfs_rollback),
		cmocka_unit_test(test_store_vfs_memvfs_hooks),
		cmocka_unit_test(test_store_vfs_memvfs_alloc_faults),
		cmocka_unit_test(test_store_vfs_posix),
		cmocka_unit_test(test_store_vfs_posix_wal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
