/* The key-value state machine (src/kv/kv.h): the model ops of tests/sim/history.h (versions +1
 * per successful write, CAS on versions, DEL tombstones), the RESP ops (expiry against the
 * command's time, versions of expired keys, SCAN's cursor over the hash order, INCRBY's
 * errors, MSET's all-or-nothing), the encodings (round trips, canonical form, every truncation
 * and corruption refused), the glob, snapshots, allocation failures, and a property test:
 * random command sequences on two maps, one restored from a snapshot midway, agree byte for
 * byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "kv/kv.h"
#include "teems/err.h"

static struct kv_cmd mk(enum kv_op op, const char *key, uint64_t expected, const char *value)
{
	struct kv_cmd c = {0};

	c.op = op;
	c.key = (const uint8_t *)key;
	c.key_len = (uint16_t)strlen(key);
	c.expected_version = expected;
	if (value != NULL) {
		c.value = (const uint8_t *)value;
		c.value_len = (uint32_t)strlen(value);
	}
	return c;
}

static struct kv_result apply(struct kv *kv, enum kv_op op, const char *key, uint64_t expected,
			      const char *value)
{
	struct kv_cmd c = mk(op, key, expected, value);
	struct kv_result r;

	assert_int_equal(kv_apply(kv, &c, &r), TEEMS_OK);
	return r;
}

/* Encodes c, applies it, decodes the result into *r; the result's bytes stay valid until the
 * next call. */
static uint8_t *last_result;

static struct kv_result run(struct kv *kv, const struct kv_cmd *c)
{
	uint8_t *cmd;
	size_t n = kv_cmd_size(c), rn;
	struct kv_result r;

	assert_int_not_equal(n, 0);
	cmd = malloc(n);
	assert_non_null(cmd);
	assert_int_equal(kv_cmd_encode(c, cmd, n, &n), TEEMS_OK);
	teems_free(last_result);
	assert_int_equal(kv_apply_encoded(kv, cmd, n, &last_result, &rn), TEEMS_OK);
	assert_int_equal(kv_result_decode(last_result, rn, &r), TEEMS_OK);
	assert_int_equal(r.op, c->op >= KV_R_GET ? c->op : 0);
	free(cmd);
	return r;
}

static struct kv_result r_get(struct kv *kv, const char *key, uint64_t now)
{
	struct kv_cmd c = mk(KV_R_GET, key, 0, NULL);

	c.now_ms = now;
	return run(kv, &c);
}

static struct kv_result r_set(struct kv *kv, const char *key, const char *value, unsigned flags,
			      uint64_t expire_at, uint64_t now)
{
	struct kv_cmd c = mk(KV_R_SET, key, 0, value);

	c.flags = flags | (expire_at ? KV_SET_EXPIRE : 0);
	c.expire_at_ms = expire_at;
	c.now_ms = now;
	return run(kv, &c);
}

static struct kv_result r_incr(struct kv *kv, const char *key, int64_t delta, uint64_t now)
{
	struct kv_cmd c = mk(KV_R_INCRBY, key, 0, NULL);

	c.delta = delta;
	c.now_ms = now;
	return run(kv, &c);
}

static struct kv_result r_vset(struct kv *kv, const char *key, const char *value, uint64_t expected,
			       uint64_t now)
{
	struct kv_cmd c = mk(KV_R_VSET, key, expected, value);

	c.now_ms = now;
	return run(kv, &c);
}

/* A multi-key op over NULL-terminated keys (MSET: key, value, key, value...). */
static struct kv_result r_multi(struct kv *kv, enum kv_op op, uint64_t now, ...)
{
	struct kv_item items[16];
	struct kv_cmd c = {0};
	const char *k;
	va_list ap;

	va_start(ap, now);
	while ((k = va_arg(ap, const char *)) != NULL) {
		struct kv_item *it = &items[c.n_items++];

		memset(it, 0, sizeof(*it));
		it->key = (const uint8_t *)k;
		it->key_len = (uint16_t)strlen(k);
		if (op == KV_R_MSET) {
			const char *v = va_arg(ap, const char *);

			it->value = (const uint8_t *)v;
			it->value_len = (uint32_t)strlen(v);
		}
	}
	va_end(ap);
	c.op = op;
	c.now_ms = now;
	c.items = items;
	return run(kv, &c);
}

static void assert_value(const struct kv_result *r, const char *v)
{
	assert_true(r->found);
	assert_int_equal(r->value_len, strlen(v));
	assert_memory_equal(r->value, v, r->value_len);
}

static void test_model(void **state)
{
	struct kv *kv;
	struct kv_result r;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = apply(kv, KV_GET, "a", 0, NULL);
	assert_false(r.found);
	assert_int_equal(r.version, 0);
	r = apply(kv, KV_SET, "a", 0, "x");
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.version, 1);
	r = apply(kv, KV_GET, "a", 0, NULL);
	assert_true(r.found);
	assert_int_equal(r.version, 1);
	assert_memory_equal(r.value, "x", 1);
	r = apply(kv, KV_CAS, "a", 0, "y"); /* stale expected version */
	assert_int_equal(r.status, KV_CAS_FAILED);
	assert_int_equal(r.version, 1);
	r = apply(kv, KV_CAS, "a", 1, "yy");
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.version, 2);
	r = apply(kv, KV_DEL, "a", 0, NULL);
	assert_int_equal(r.version, 3);
	r = apply(kv, KV_GET, "a", 0, NULL);
	assert_false(r.found);
	assert_int_equal(r.version, 3);	     /* the tombstone keeps the version */
	r = apply(kv, KV_DEL, "b", 0, NULL); /* DEL of an absent key still counts */
	assert_int_equal(r.version, 1);
	r = apply(kv, KV_CAS, "c", 0, "new"); /* CAS on a never-written key at version 0 */
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.version, 1);
	r = apply(kv, KV_SET, "e", 0, ""); /* empty value is a value */
	r = apply(kv, KV_GET, "e", 0, NULL);
	assert_true(r.found);
	assert_int_equal(r.value_len, 0);
	r = apply(kv, KV_SET, "", 0, "empty key"); /* as in Redis */
	assert_int_equal(r.version, 1);
	assert_int_equal(kv_count(kv), 5);
	{
		struct kv_cmd scan = {0};

		scan.op = KV_R_SCAN;
		scan.count = 1;
		assert_int_equal(kv_apply(kv, &scan, &r), TEEMS_EINVAL); /* R ops: encoded */
	}
	kv_free(kv);
}

static void test_set_options(void **state)
{
	struct kv *kv;
	struct kv_result r;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = r_set(kv, "k", "1", KV_SET_XX, 0, 100); /* XX on an absent key */
	assert_int_equal(r.status, KV_NOT_DONE);
	assert_false(r.asked);
	assert_int_equal(r.version, 0);
	assert_int_equal(kv_count(kv), 0); /* nothing created */
	r = r_set(kv, "k", "1", KV_SET_NX | KV_SET_GET, 0, 100);
	assert_int_equal(r.status, KV_OK);
	assert_true(r.asked);
	assert_false(r.found);
	assert_int_equal(r.version, 1);
	r = r_set(kv, "k", "2", KV_SET_NX | KV_SET_GET, 0, 100); /* NX fails, GET still answers */
	assert_int_equal(r.status, KV_NOT_DONE);
	assert_value(&r, "1");
	assert_int_equal(r.version, 1);
	r = r_set(kv, "k", "3", KV_SET_XX | KV_SET_GET, 0, 100);
	assert_int_equal(r.status, KV_OK);
	assert_value(&r, "1");
	assert_int_equal(r.version, 2);
	r = r_get(kv, "k", 100);
	assert_value(&r, "3");
	r = r_set(kv, "k", "4", 0, 0, 100);
	assert_int_equal(r.status, KV_OK);
	assert_false(r.asked);
	assert_int_equal(r.version, 3);
	kv_free(kv);
}

static void test_expiry(void **state)
{
	struct kv *kv;
	struct kv_result r;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = r_set(kv, "k", "v", 0, 1000, 100); /* PX 900 at t = 100 */
	assert_int_equal(r.version, 1);
	assert_int_equal(kv_clock(kv), 100);
	r = r_get(kv, "k", 999);
	assert_value(&r, "v");
	assert_int_equal(r.version, 1);
	r = r_get(kv, "k", 1000); /* expiry <= now: absent, and the expiry is a change */
	assert_false(r.found);
	assert_int_equal(r.version, 2);
	r = r_get(kv, "k", 500); /* reads never change anything */
	assert_value(&r, "v");
	/* KEEPTTL keeps it, a plain SET drops it, INCR keeps it */
	r = r_set(kv, "k", "w", KV_SET_KEEPTTL, 0, 200);
	assert_int_equal(r.version, 2);
	r = r_get(kv, "k", 1000);
	assert_false(r.found);
	r = r_set(kv, "n", "5", 0, 2000, 200);
	r = r_incr(kv, "n", 2, 300);
	assert_int_equal(r.integer, 7);
	r = r_get(kv, "n", 1999);
	assert_value(&r, "7");
	r = r_get(kv, "n", 2000);
	assert_false(r.found);
	r = r_set(kv, "n", "9", 0, 0, 300);
	r = r_get(kv, "n", UINT64_MAX);
	assert_value(&r, "9");

	/* A write at t = 1500 materializes k's expiry: the tombstone has the version reads saw,
	 * and the clock makes an older proposer's time irrelevant from now on. */
	r = r_vset(kv, "k", "new", 2, 1500); /* k was at version 2; expired it reads 3 */
	assert_int_equal(r.status, KV_NOT_DONE);
	assert_int_equal(r.version, 3);
	assert_int_equal(kv_clock(kv), 1500);
	r = r_get(kv, "k", 10); /* runs at max(clock, 10) */
	assert_false(r.found);
	assert_int_equal(r.version, 3);
	r = r_vset(kv, "k", "new", 3, 10);
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.version, 4);
	assert_int_equal(kv_clock(kv), 1500);

	/* An already expired deadline (EXAT in the past): set, and gone at once. */
	r = r_set(kv, "gone", "v", KV_SET_GET, 5, 1600);
	assert_int_equal(r.status, KV_OK);
	r = r_get(kv, "gone", 1600);
	assert_false(r.found);
	assert_int_equal(r.version, 2);
	/* NX on an expired key: it is absent, so NX writes (expire, then write: version + 2) */
	r = r_set(kv, "gone", "again", KV_SET_NX, 0, 1600);
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.version, 3);

	/* DEL of an expired key counts 0 (Redis) but turns it into a tombstone */
	r_set(kv, "d", "v", 0, 1700, 1600);
	r = r_multi(kv, KV_R_EXISTS, 1700, "d", "gone", "gone", NULL);
	assert_int_equal(r.integer, 2);
	r = r_multi(kv, KV_R_DEL, 1700, "d", "gone", "gone", "nope", NULL);
	assert_int_equal(r.integer, 1);
	r = r_get(kv, "d", 1700);
	assert_int_equal(r.version, 2);
	assert_int_equal(kv_count(kv), 4); /* "nope" was not created */
	/* the model ops run at the clock */
	r = apply(kv, KV_GET, "d", 0, NULL);
	assert_int_equal(r.version, 2);
	kv_free(kv);
}

static void test_incr(void **state)
{
	struct kv *kv;
	struct kv_result r;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = r_incr(kv, "n", 1, 0);
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.integer, 1);
	assert_int_equal(r.version, 1);
	r = r_incr(kv, "n", -11, 0);
	assert_int_equal(r.integer, -10);
	r = r_get(kv, "n", 0);
	assert_value(&r, "-10");
	r_set(kv, "n", "9223372036854775806", 0, 0, 0);
	r = r_incr(kv, "n", 1, 0);
	assert_int_equal(r.integer, INT64_MAX);
	r = r_incr(kv, "n", 1, 0);
	assert_int_equal(r.status, KV_ERR_OVERFLOW);
	r = r_get(kv, "n", 0);
	assert_value(&r, "9223372036854775807");
	assert_int_equal(r.version, 4); /* the failed INCR changed nothing */
	r_set(kv, "n", "-9223372036854775808", 0, 0, 0);
	r = r_incr(kv, "n", -1, 0);
	assert_int_equal(r.status, KV_ERR_OVERFLOW);
	r = r_incr(kv, "n", INT64_MAX, 0);
	assert_int_equal(r.integer, -1);
	static const char *const bad[] = {"abc",
					  " 1",
					  "1 ",
					  "01",
					  "-0",
					  "+1",
					  "",
					  "1.5",
					  "9223372036854775808",
					  "-9223372036854775809",
					  "123456789012345678901"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r_set(kv, "s", bad[i], 0, 0, 0);
		r = r_incr(kv, "s", 1, 0);
		assert_int_equal(r.status, KV_ERR_NOT_INTEGER);
	}
	r_set(kv, "s", "0", 0, 0, 0);
	r = r_incr(kv, "s", 0, 0);
	assert_int_equal(r.integer, 0);
	kv_free(kv);
}

static void test_multi(void **state)
{
	struct kv *kv;
	struct kv_result r;
	struct kv_item it;
	size_t pos = 0;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = r_multi(kv, KV_R_MSET, 10, "a", "1", "b", "2", "a", "3", NULL);
	assert_int_equal(r.status, KV_OK);
	r = r_get(kv, "a", 10);
	assert_value(&r, "3"); /* the last of a repeated key wins */
	assert_int_equal(r.version, 2);
	r = r_multi(kv, KV_R_MGET, 10, "a", "zz", "b", "", NULL);
	assert_int_equal(r.n_items, 4);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_true(it.found);
	assert_memory_equal(it.value, "3", 1);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_false(it.found);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_memory_equal(it.value, "2", 1);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_false(it.found);
	assert_false(kv_result_item(&r, &pos, &it));
	r = r_multi(kv, KV_R_EXISTS, 10, "a", "a", "zz", NULL);
	assert_int_equal(r.integer, 2); /* twice counts twice */
	r = r_multi(kv, KV_R_DEL, 10, "a", "a", "zz", NULL);
	assert_int_equal(r.integer, 1); /* gone the second time */
	r = r_get(kv, "a", 10);
	assert_false(r.found);
	assert_int_equal(r.version, 3);
	kv_free(kv);
}

/* SCAN from cursor 0 to 0, alternating between maps, each call's cursor from the previous
 * reply; returns the keys seen (each flagged in seen[], which must be clear). */
static size_t scan_all(struct kv *const *maps, size_t n_maps, uint32_t count, const char *match,
		       char (*names)[16], size_t n_names, int *seen, uint64_t now)
{
	uint64_t cursor = 0;
	size_t calls = 0, total = 0;

	do {
		struct kv_cmd c = {0};
		struct kv_result r;
		struct kv_item it;
		size_t pos = 0;

		c.op = KV_R_SCAN;
		c.cursor = cursor;
		c.count = count;
		c.now_ms = now;
		if (match != NULL) {
			c.flags = KV_SCAN_MATCH;
			c.pattern = (const uint8_t *)match;
			c.pattern_len = (uint32_t)strlen(match);
		}
		r = run(maps[calls % n_maps], &c);
		while (kv_result_item(&r, &pos, &it)) {
			size_t i;

			for (i = 0; i < n_names; i++)
				if (strlen(names[i]) == it.key_len &&
				    memcmp(names[i], it.key, it.key_len) == 0)
					break;
			assert_true(i < n_names);
			assert_int_equal(seen[i], 0); /* exactly once */
			seen[i] = 1;
			total++;
		}
		cursor = r.cursor;
		calls++;
		assert_true(calls < 100000);
	} while (cursor != 0);
	return total;
}

static void test_scan(void **state)
{
	enum { N = 2000 };
	static char names[N][16];
	static int seen[N];
	struct kv *a, *big, *maps[2];
	struct kv_result r;
	size_t got, want;

	(void)state;
	assert_int_equal(kv_new(&a), TEEMS_OK);
	assert_int_equal(kv_new(&big), TEEMS_OK);
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "%s:%d", i % 3 ? "user" : "item", i);
		r_set(a, names[i], "v", 0, i % 10 == 9 ? 50 : 0, 1);
		r_set(big, names[i], "v", 0, i % 10 == 9 ? 50 : 0, 1);
	}
	/* big has the same live keys but a 4x bigger table (tombstones): cursors must carry
	 * over between replicas whatever their tables look like */
	for (int i = 0; i < 3 * N; i++) {
		char k[16];

		snprintf(k, sizeof(k), "gone%d", i);
		r_set(big, k, "v", 0, 0, 1);
		r_multi(big, KV_R_DEL, 1, k, NULL);
	}
	r_multi(a, KV_R_DEL, 1, names[0], NULL);
	r_multi(big, KV_R_DEL, 1, names[0], NULL);
	maps[0] = a;
	maps[1] = big;
	for (uint32_t count = 1; count <= 1000; count *= 10) {
		memset(seen, 0, sizeof(seen));
		got = scan_all(maps, 2, count, NULL, names, N, seen, 10);
		assert_int_equal(got, N - 1);
		assert_int_equal(seen[0], 0);
		/* at t = 50 the keys given an expiry are gone */
		memset(seen, 0, sizeof(seen));
		got = scan_all(maps, 2, count, "user:*", names, N, seen, 50);
		want = 0;
		for (int i = 1; i < N; i++)
			if (i % 3 && i % 10 != 9)
				want++;
		assert_int_equal(got, want);
		for (int i = 1; i < N; i++)
			assert_int_equal(seen[i], (i % 3 && i % 10 != 9) ? 1 : 0);
	}
	/* Replies do not depend on the table: a map whose table grew for an MSET of 40 copies of
	 * one new key (room was reserved for 40) and its restored copy (sized for what it holds)
	 * give the same bytes for every SCAN. */
	{
		struct kv *wide, *tight;
		struct kv_item dup[40];
		struct kv_cmd m = {0};
		uint8_t *snap;
		size_t n;

		for (int i = 0; i < 40; i++)
			dup[i] = (struct kv_item){(const uint8_t *)"dup", 3, false,
						  (const uint8_t *)"v", 1};
		assert_int_equal(kv_new(&wide), TEEMS_OK);
		m.op = KV_R_MSET;
		m.items = dup;
		m.n_items = 40;
		run(wide, &m);
		for (int i = 0; i < 14; i++)
			r_set(wide, names[i], "v", 0, 0, 1);
		assert_int_equal(kv_snapshot(wide, &snap, &n), TEEMS_OK);
		assert_int_equal(kv_new(&tight), TEEMS_OK);
		assert_int_equal(kv_restore(tight, snap, n), TEEMS_OK);
		teems_free(snap);
		for (uint32_t count = 1; count < 5; count++) {
			uint64_t cursor = 0;

			do {
				struct kv_cmd c = {0};
				struct kv_result x;
				uint8_t *bytes;
				size_t len;

				c.op = KV_R_SCAN;
				c.cursor = cursor;
				c.count = count;
				x = run(wide, &c);
				len = kv_result_size(&x);
				bytes = malloc(len);
				memcpy(bytes, last_result, len);
				x = run(tight, &c);
				assert_int_equal(kv_result_size(&x), len);
				assert_memory_equal(last_result, bytes, len);
				free(bytes);
				cursor = x.cursor;
			} while (cursor != 0);
		}
		kv_free(wide);
		kv_free(tight);
	}
	/* one call with a big COUNT returns everything and cursor 0 */
	{
		struct kv_cmd c = {0};

		c.op = KV_R_SCAN;
		c.count = 1u << 20;
		c.now_ms = 10;
		r = run(a, &c);
		assert_int_equal(r.cursor, 0);
		assert_int_equal(r.n_items, N - 1);
		c.flags = KV_SCAN_NOTHING; /* TYPE hash: nothing is */
		r = run(a, &c);
		assert_int_equal(r.n_items, 0);
		c.flags = KV_SCAN_MATCH;
		c.pattern = (const uint8_t *)"item:1?";
		c.pattern_len = 7;
		r = run(a, &c);
		assert_int_equal(r.n_items, 3); /* item:12, item:15, item:18 */
	}
	kv_free(a);
	kv_free(big);
}

static void test_glob(void **state)
{
	/* pattern, string, match: Redis 7.0's answers (checked against redis-server KEYS) */
	static const struct {
		const char *p, *s;
		bool m;
	} cases[] = {
		{"*", "abc", true},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "abcd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[abc]", "b", true},
		{"[^abc]", "b", false},
		{"[^abc]", "d", true},
		{"[a-c]x", "bx", true},
		{"[c-a]x", "bx", true},
		{"[a-c]", "d", false},
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"[\\]]", "]", true},
		{"[abc", "a", true},
		{"[abc", "d", false},
		{"[a-]", "]", true},
		{"[a-]", "-", false},
		{"a\\", "a\\", true},
		{"[]a]", "a", false},
		{"[]a]", "]", false},
		{"*a*b*", "xaxbx", true},
		{"*a*b*", "xbxax", false},
		{"**", "", false},
		{"", "", true},
		{"*?", "a", true},
		{"*??", "a", false},
		{"h*llo", "hllo", true},
		{"[^]", "x", true},
		{"*[", "a[", false},
		{"?*", "a", true},
		{"a*b*c*d*e*f", "aXbXcXdXeXf", true},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool m = kv_glob_match((const uint8_t *)cases[i].p, strlen(cases[i].p),
				       (const uint8_t *)cases[i].s, strlen(cases[i].s));

		if (m != cases[i].m)
			fail_msg("'%s' on '%s': %d", cases[i].p, cases[i].s, m);
	}
	/* no exponential blow-up on the classic bad case */
	{
		char p[201], s[4001];

		memset(s, 'a', 4000);
		s[4000] = '\0';
		for (int i = 0; i < 100; i++) {
			p[2 * i] = '*';
			p[2 * i + 1] = 'a';
		}
		p[200] = 'b';
		assert_false(kv_glob_match((const uint8_t *)p, 201, (const uint8_t *)s, 4000));
	}
}

static void test_many_keys_and_snapshot(void **state)
{
	struct kv *kv, *copy;
	uint8_t *snap, *snap2;
	size_t n, n2;
	char key[32], val[32];

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i % 300);
		snprintf(val, sizeof(val), "v%d", i);
		if (i % 11 == 0)
			r_set(kv, key, val, 0, 5000 + (uint64_t)i, (uint64_t)i); /* with expiry */
		else
			apply(kv, i % 7 == 0 ? KV_DEL : KV_SET, key, 0, val);
	}
	r_set(kv, "past", "v", 0, 10, 999); /* expired, not yet materialized */
	assert_int_equal(kv_count(kv), 301);
	assert_int_equal(kv_snapshot(kv, &snap, &n), TEEMS_OK);
	assert_int_equal(kv_new(&copy), TEEMS_OK);
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_OK);
	assert_true(kv_equal(kv, copy));
	assert_true(kv_equal(copy, kv));
	assert_int_equal(kv_clock(copy), 999);
	assert_int_equal(kv_snapshot(copy, &snap2, &n2), TEEMS_OK);
	assert_int_equal(n, n2);
	assert_memory_equal(snap, snap2, n); /* canonical: sorted keys */
	{
		/* k90's last write (i = 990) gave it expiry 5990 */
		struct kv_result a = r_get(kv, "k90", 5990), b = r_get(copy, "k90", 5990);

		assert_true(r_get(copy, "k90", 5989).found);
		assert_false(a.found); /* k90's expiry survived the snapshot */
		assert_false(b.found);
		assert_int_equal(a.version, b.version);
		r_set(copy, "k90", "changed", 0, 0, 1000);
		assert_false(kv_equal(kv, copy));
	}
	/* every truncation is refused and leaves the map as it was */
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_OK);
	for (size_t cut = 0; cut < n; cut += (n / 200) + 1) {
		assert_int_equal(kv_restore(copy, snap, cut), TEEMS_ECORRUPT);
		assert_true(kv_equal(kv, copy));
	}
	/* trailing garbage, bad magic, the old format */
	uint8_t *longer = malloc(n + 1);
	memcpy(longer, snap, n);
	longer[n] = 0;
	assert_int_equal(kv_restore(copy, longer, n + 1), TEEMS_ECORRUPT);
	longer[4] = 1;
	assert_int_equal(kv_restore(copy, longer, n), TEEMS_ECORRUPT);
	longer[4] = 2;
	longer[0] = 'X';
	assert_int_equal(kv_restore(copy, longer, n), TEEMS_ECORRUPT);
	assert_true(kv_equal(kv, copy));
	free(longer);
	teems_free(snap);
	teems_free(snap2);
	kv_free(copy);
	kv_free(kv);
}

static void test_snapshot_checks(void **state)
{
	struct kv *kv, *copy;
	uint8_t *snap;
	size_t n;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	assert_int_equal(kv_new(&copy), TEEMS_OK);
	/* two tombstones "a" and "b" (12 bytes each after the 24-byte header), swapped: out of
	 * order */
	apply(kv, KV_DEL, "a", 0, NULL);
	apply(kv, KV_DEL, "b", 0, NULL);
	assert_int_equal(kv_snapshot(kv, &snap, &n), TEEMS_OK);
	/* + the users section (u32 count, "default" and its 8-byte record), the empty
	 * policies section and the empty lease table (u32 length, then its u32 count) */
	assert_int_equal(n, 48 + 25 + 4 + 4 + 4);
	assert_int_equal(snap[26], 'a');
	{
		uint8_t tmp[12];

		memcpy(tmp, snap + 24, 12);
		memcpy(snap + 24, snap + 36, 12);
		memcpy(snap + 36, tmp, 12);
	}
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_ECORRUPT);
	teems_free(snap);
	kv_free(kv);

	/* one key "a" with expiry 7: state 2 at byte 35, the expiry at 36 */
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r_set(kv, "a", "", 0, 7, 0);
	assert_int_equal(kv_snapshot(kv, &snap, &n), TEEMS_OK);
	assert_int_equal(snap[35], 2);
	assert_int_equal(snap[36], 7);
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_OK);
	assert_true(kv_equal(kv, copy));
	assert_false(r_get(copy, "a", 7).found);
	assert_true(r_get(copy, "a", 6).found);
	snap[36] = 0; /* an expiry of 0 would mean none: not canonical */
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_ECORRUPT);
	snap[36] = 7;
	snap[35] = 3; /* no such state */
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_ECORRUPT);
	snap[35] = 2;
	snap[27] = 0; /* version 0: an entry exists only once written */
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_ECORRUPT);
	assert_true(kv_equal(kv, copy));
	teems_free(snap);
	kv_free(kv);
	kv_free(copy);
}

/* Every command kind, for the codec tests. */
static size_t sample_cmds(struct kv_cmd *out, struct kv_item *items)
{
	size_t n = 0;

	out[n++] = mk(KV_GET, "key", 0, NULL);
	out[n++] = mk(KV_SET, "key", 0, "value");
	out[n++] = mk(KV_CAS, "k", 77, "v");
	out[n++] = mk(KV_DEL, "key2", 0, NULL);
	out[n] = mk(KV_R_GET, "key", 0, NULL);
	out[n++].now_ms = 123456789;
	out[n] = mk(KV_R_SET, "key", 0, "value");
	out[n].flags = KV_SET_NX | KV_SET_GET | KV_SET_EXPIRE;
	out[n++].expire_at_ms = 99;
	out[n] = mk(KV_R_SET, "", 0, "");
	out[n++].flags = KV_SET_XX | KV_SET_KEEPTTL;
	out[n] = mk(KV_R_INCRBY, "n", 0, NULL);
	out[n++].delta = -5;
	out[n++] = mk(KV_R_VSET, "key", 7, "v");
	items[0] = (struct kv_item){(const uint8_t *)"a", 1, false, (const uint8_t *)"1", 1};
	items[1] = (struct kv_item){(const uint8_t *)"bb", 2, false, NULL, 0};
	for (enum kv_op op = KV_R_DEL; op <= KV_R_MSET; op++) {
		memset(&out[n], 0, sizeof(out[n]));
		out[n].op = op;
		out[n].items = items;
		out[n++].n_items = 2;
	}
	memset(&out[n], 0, sizeof(out[n]));
	out[n].op = KV_R_SCAN;
	out[n].cursor = 1ull << 60;
	out[n].count = 10;
	out[n].flags = KV_SCAN_MATCH;
	out[n].pattern = (const uint8_t *)"a*";
	out[n++].pattern_len = 2;
	return n;
}

static void test_cmd_codec(void **state)
{
	struct kv_cmd cmds[16], d;
	struct kv_item items[2];
	size_t n = sample_cmds(cmds, items);
	uint8_t buf[128], re[128];
	size_t len, len2;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(kv_cmd_encode(&cmds[i], buf, 2, &len), TEEMS_EFULL);
		assert_int_equal(kv_cmd_encode(&cmds[i], buf, sizeof(buf), &len), TEEMS_OK);
		assert_int_equal(kv_cmd_decode(buf, len, &d), TEEMS_OK);
		assert_int_equal(d.op, cmds[i].op);
		assert_int_equal(d.key_len, cmds[i].key_len);
		assert_int_equal(d.expected_version, cmds[i].expected_version);
		assert_int_equal(d.value_len, cmds[i].value_len);
		assert_int_equal(d.now_ms, cmds[i].op >= KV_R_GET ? cmds[i].now_ms : 0);
		assert_int_equal(d.n_items, cmds[i].n_items);
		/* the decoded form (list instead of items) re-encodes to the same bytes */
		assert_int_equal(kv_cmd_encode(&d, re, sizeof(re), &len2), TEEMS_OK);
		assert_int_equal(len2, len);
		assert_memory_equal(re, buf, len);
		for (size_t cut = 0; cut < len; cut++)
			assert_int_equal(kv_cmd_decode(buf, cut, &d), TEEMS_ECORRUPT);
		assert_int_equal(kv_cmd_decode(buf, len + 1, &d), TEEMS_ECORRUPT);
		/* any single corrupted byte: refused, or a command that re-encodes to exactly
		 * those bytes (canonical) */
		for (size_t at = 0; at < len; at++) {
			for (int x = 1; x < 256; x <<= 1) {
				buf[at] ^= (uint8_t)x;
				if (kv_cmd_decode(buf, len, &d) == TEEMS_OK) {
					assert_int_equal(kv_cmd_encode(&d, re, sizeof(re), &len2),
							 TEEMS_OK);
					assert_int_equal(len2, len);
					assert_memory_equal(re, buf, len);
				}
				buf[at] ^= (uint8_t)x;
			}
		}
	}
	buf[0] = 9;
	assert_int_equal(kv_cmd_decode(buf, len, &d), TEEMS_ECORRUPT);
	struct kv_cmd badop = mk(KV_GET, "a", 0, NULL);
	badop.op = (enum kv_op)0;
	assert_int_equal(kv_cmd_encode(&badop, buf, sizeof(buf), &len), TEEMS_EINVAL);
	/* invalid R commands do not encode */
	struct kv_cmd bad = mk(KV_R_SET, "a", 0, "v");
	bad.flags = KV_SET_NX | KV_SET_XX;
	assert_int_equal(kv_cmd_size(&bad), 0);
	bad.flags = KV_SET_KEEPTTL | KV_SET_EXPIRE;
	bad.expire_at_ms = 5;
	assert_int_equal(kv_cmd_size(&bad), 0);
	bad.flags = KV_SET_EXPIRE;
	bad.expire_at_ms = 0;
	assert_int_equal(kv_cmd_size(&bad), 0);
	bad = cmds[9]; /* DEL with no keys */
	bad.n_items = 0;
	assert_int_equal(kv_cmd_size(&bad), 0);
	bad.n_items = 2;
	assert_int_equal(kv_cmd_encode(&bad, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(kv_cmd_decode(buf, len, &d), TEEMS_OK);
	d.n_items = 3; /* fewer items in the list than said */
	assert_int_equal(kv_cmd_size(&d), 0);
	d.n_items = 1; /* more */
	assert_int_equal(kv_cmd_size(&d), 0);
	bad = cmds[n - 1];
	bad.count = 0;
	assert_int_equal(kv_cmd_size(&bad), 0);
	/* hand-made garbage: R_DEL claiming 2^32-1 keys, R_SET with undefined flags */
	static const uint8_t many[] = {KV_FORMAT_R, KV_R_DEL, 0,    0,	  0,	0, 0, 0,  0,
				       0,	    0xff,     0xff, 0xff, 0xff, 1, 0, 'a'};
	static const uint8_t flags[] = {KV_FORMAT_R, KV_R_SET, 0, 0, 0,	  0, 0, 0, 0,
					0,	     0x40,     1, 0, 'a', 0, 0, 0, 0};
	assert_int_equal(kv_cmd_decode(many, sizeof(many), &d), TEEMS_ECORRUPT);
	assert_int_equal(kv_cmd_decode(flags, sizeof(flags), &d), TEEMS_ECORRUPT);
}

static void test_result_codec_and_apply_encoded(void **state)
{
	struct kv *kv;
	struct kv_cmd c = mk(KV_SET, "k", 0, "hello");
	struct kv_result r;
	uint8_t cmd[64], *res;
	size_t len, rlen;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	assert_int_equal(kv_cmd_encode(&c, cmd, sizeof(cmd), &len), TEEMS_OK);
	assert_int_equal(kv_apply_encoded(kv, cmd, len, &res, &rlen), TEEMS_OK);
	assert_int_equal(kv_result_decode(res, rlen, &r), TEEMS_OK);
	assert_int_equal(r.version, 1);
	teems_free(res);
	c = mk(KV_GET, "k", 0, NULL);
	assert_int_equal(kv_cmd_encode(&c, cmd, sizeof(cmd), &len), TEEMS_OK);
	assert_int_equal(kv_apply_encoded(kv, cmd, len, &res, &rlen), TEEMS_OK);
	assert_int_equal(kv_result_decode(res, rlen, &r), TEEMS_OK);
	assert_true(r.found);
	assert_int_equal(r.value_len, 5);
	assert_memory_equal(r.value, "hello", 5);
	for (size_t cut = 0; cut < rlen; cut++)
		assert_int_equal(kv_result_decode(res, cut, &r), TEEMS_ECORRUPT);
	res[1] = 0; /* not found, but a value: refused */
	assert_int_equal(kv_result_decode(res, rlen, &r), TEEMS_ECORRUPT);
	teems_free(res);
	assert_int_equal(kv_apply_encoded(kv, cmd, 2, &res, &rlen), TEEMS_ECORRUPT);
	assert_null(res);

	/* every R result: truncations refused, re-encoding canonical, single-bit corruption
	 * refused or canonical */
	{
		struct kv_cmd cmds[16];
		struct kv_item items[2];
		size_t n = sample_cmds(cmds, items);

		r_set(kv, "n", "x", 0, 0, 0); /* an INCR error result too */
		c = mk(KV_R_INCRBY, "n", 0, NULL);
		cmds[n++] = c;
		for (size_t i = 4; i < n; i++) {
			uint8_t *re = NULL;
			size_t n2;

			r = run(kv, &cmds[i]);
			rlen = kv_result_size(&r);
			assert_int_not_equal(rlen, 0);
			re = malloc(rlen);
			assert_int_equal(kv_result_encode(&r, re, rlen, &n2), TEEMS_OK);
			assert_int_equal(n2, rlen);
			assert_memory_equal(re, last_result, rlen);
			for (size_t cut = 0; cut < rlen; cut++)
				assert_int_equal(kv_result_decode(re, cut, &r), TEEMS_ECORRUPT);
			for (size_t at = 0; at < rlen; at++) {
				uint8_t *again = malloc(rlen);

				re[at] ^= 0x5a;
				if (kv_result_decode(re, rlen, &r) == TEEMS_OK) {
					assert_int_equal(kv_result_encode(&r, again, rlen, &n2),
							 TEEMS_OK);
					assert_memory_equal(again, re, rlen);
				}
				re[at] ^= 0x5a;
				free(again);
			}
			free(re);
		}
	}
	kv_free(kv);
}

/* Allocation failures: every op either succeeds or changes nothing. */
static void test_enomem(void **state)
{
	struct kv_item items[6] = {
		{(const uint8_t *)"p1", 2, false, (const uint8_t *)"new", 3},
		{(const uint8_t *)"fresh1", 6, false, (const uint8_t *)"v", 1},
		{(const uint8_t *)"fresh2", 6, false, (const uint8_t *)"", 0},
		{(const uint8_t *)"fresh1", 6, false, (const uint8_t *)"w", 1},
		{(const uint8_t *)"p2", 2, false, (const uint8_t *)"x", 1},
		{(const uint8_t *)"fresh3", 6, false, (const uint8_t *)"y", 1},
	};
	struct kv_cmd cmds[8];
	size_t n = 0;

	(void)state;
	cmds[n++] = mk(KV_SET, "key", 0, "val");
	cmds[n] = mk(KV_R_SET, "p3", 0, "val");
	cmds[n++].flags = KV_SET_GET;
	cmds[n] = mk(KV_R_INCRBY, "fresh", 0, NULL);
	cmds[n++].delta = 3;
	cmds[n++] = mk(KV_R_VSET, "p4", 1, "v");
	memset(&cmds[n], 0, sizeof(cmds[n]));
	cmds[n].op = KV_R_MSET;
	cmds[n].items = items;
	cmds[n++].n_items = 6;
	memset(&cmds[n], 0, sizeof(cmds[n]));
	cmds[n].op = KV_R_DEL;
	cmds[n].items = items;
	cmds[n++].n_items = 6;
	memset(&cmds[n], 0, sizeof(cmds[n]));
	cmds[n].op = KV_R_SCAN;
	cmds[n++].count = 100;
	for (size_t k = 0; k < n; k++) {
		uint8_t cmd[256];
		size_t len;

		assert_int_equal(kv_cmd_encode(&cmds[k], cmd, sizeof(cmd), &len), TEEMS_OK);
		for (long nth = 0; nth < 64; nth++) {
			struct kv *kv = NULL, *before = NULL;
			uint8_t *res;
			size_t rlen;
			int rc;

			assert_int_equal(kv_new(&kv), TEEMS_OK);
			assert_int_equal(kv_new(&before), TEEMS_OK);
			for (int i = 0; i < 12; i++) { /* the 13th insert grows the table */
				char key[8];
				snprintf(key, sizeof(key), "p%d", i);
				apply(kv, KV_SET, key, 0, "x");
				apply(before, KV_SET, key, 0, "x");
			}
			teems_alloc_fault(nth, 0);
			rc = kv_apply_encoded(kv, cmd, len, &res, &rlen);
			teems_alloc_fault(-1, 0);
			if (rc == TEEMS_OK) {
				teems_free(res);
			} else {
				assert_int_equal(rc, TEEMS_ENOMEM);
				assert_null(res);
				assert_true(kv_equal(kv, before)); /* nothing changed */
			}
			kv_free(kv);
			kv_free(before);
		}
	}
}

/* ---- the property test ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A random RESP-family command (or now and then a model op) over a small key space, with a
 * clock that mostly advances but sometimes comes from a proposer that lags behind. */
static size_t random_cmd(uint8_t *buf, size_t cap, uint64_t *now, char (*keys)[8], char (*vals)[24],
			 struct kv_item *items)
{
	struct kv_cmd c = {0};
	size_t len;
	int k = (int)(rnd() % 24);

	*now += rnd() % 40;
	c.now_ms = rnd() % 8 == 0 ? *now - rnd() % 100 : *now;
	c.key = (const uint8_t *)keys[k];
	c.key_len = (uint16_t)strlen(keys[k]);
	c.value = (const uint8_t *)vals[rnd() % 8];
	c.value_len = (uint32_t)strlen((const char *)c.value);
	switch (rnd() % 11) {
	case 0:
		c.op = KV_R_GET;
		break;
	case 1:
	case 2:
		c.op = KV_R_SET;
		c.flags = (unsigned)(rnd() % 16) & ~(KV_SET_XX * (rnd() % 2 ? 1u : 0u));
		if ((c.flags & KV_SET_NX) && (c.flags & KV_SET_XX))
			c.flags &= ~KV_SET_NX;
		if (!(c.flags & KV_SET_KEEPTTL) && rnd() % 2) {
			c.flags |= KV_SET_EXPIRE;
			c.expire_at_ms = c.now_ms + 1 + rnd() % 300;
		}
		break;
	case 3:
	case 4:
	case 5:
	case 6:
		c.op = rnd() % 4 == 0	? KV_R_EXISTS
		       : rnd() % 3 == 0 ? KV_R_MGET
		       : rnd() % 2	? KV_R_MSET
					: KV_R_DEL;
		c.n_items = 1 + (uint32_t)(rnd() % 4);
		for (uint32_t i = 0; i < c.n_items; i++) {
			int j = (int)(rnd() % 24);

			items[i].key = (const uint8_t *)keys[j];
			items[i].key_len = (uint16_t)strlen(keys[j]);
			items[i].value = (const uint8_t *)vals[rnd() % 8];
			items[i].value_len = (uint32_t)strlen((const char *)items[i].value);
		}
		c.items = items;
		break;
	case 7:
		c.op = KV_R_INCRBY;
		c.delta = (int64_t)(rnd() % 2000) - 1000;
		if (rnd() % 50 == 0)
			c.delta = rnd() % 2 ? INT64_MAX : INT64_MIN;
		break;
	case 8:
		c.op = KV_R_VSET;
		c.expected_version = rnd() % 6;
		break;
	case 9:
		c.op = KV_R_SCAN;
		c.cursor = rnd() % 3 == 0 ? 0 : rnd();
		c.count = 1 + (uint32_t)(rnd() % 8);
		if (rnd() % 2) {
			c.flags = KV_SCAN_MATCH;
			c.pattern = (const uint8_t *)(rnd() % 2 ? "k1*" : "?[0-5]");
			c.pattern_len = (uint32_t)strlen((const char *)c.pattern);
		}
		break;
	default:
		c.op = (enum kv_op)(KV_GET + (int)(rnd() % 4));
		c.expected_version = rnd() % 4;
		break;
	}
	assert_int_equal(kv_cmd_encode(&c, buf, cap, &len), TEEMS_OK);
	return len;
}

/* ---- users, permissions and policies (kv.h) ---- */

/* One modifier list for ACL SETUSER, built from words: "on", "off", "nopass", "resetpass",
 * "resetkeys", ">pw", "<pw", "~pat", "%R~pat", "%W~pat", "+r" "+w" "+a" "+all", "-all". */
static size_t mods(uint8_t *buf, const char *const *w)
{
	size_t n = 0;

	for (; *w != NULL; w++) {
		const char *m = *w;

		if (strcmp(m, "on") == 0) {
			buf[n++] = KV_ACL_ON;
		} else if (strcmp(m, "off") == 0) {
			buf[n++] = KV_ACL_OFF;
		} else if (strcmp(m, "nopass") == 0) {
			buf[n++] = KV_ACL_NOPASS;
		} else if (strcmp(m, "resetpass") == 0) {
			buf[n++] = KV_ACL_RESETPASS;
		} else if (strcmp(m, "resetkeys") == 0) {
			buf[n++] = KV_ACL_RESETKEYS;
		} else if (m[0] == '>' || m[0] == '<') {
			buf[n++] = m[0] == '>' ? KV_ACL_ADDPASS : KV_ACL_DELPASS;
			kv_password_hash((const uint8_t *)m + 1, strlen(m) - 1, buf + n);
			n += KV_PASSWORD_HASH_LEN;
		} else if (m[0] == '~' || m[0] == '%') {
			const char *p = strchr(m, '~') + 1;
			size_t l = strlen(p);

			buf[n++] = KV_ACL_KEY;
			buf[n++] = m[0] == '~' ? 3 : m[1] == 'R' ? 1 : 2;
			buf[n++] = (uint8_t)l;
			buf[n++] = 0;
			memcpy(buf + n, p, l);
			n += l;
		} else {
			unsigned c = strcmp(m + 1, "r") == 0   ? KV_ACL_READ
				     : strcmp(m + 1, "w") == 0 ? KV_ACL_WRITE
				     : strcmp(m + 1, "a") == 0 ? KV_ACL_ADMIN
							       : KV_ACL_ALL;

			buf[n++] = m[0] == '+' ? KV_ACL_CATS_ADD : KV_ACL_CATS_DEL;
			buf[n++] = (uint8_t)c;
		}
	}
	return n;
}

/* Runs c as `user` (NULL: unwrapped). */
static struct kv_result run_as(struct kv *kv, struct kv_cmd c, const char *user)
{
	if (user != NULL) {
		c.user = (const uint8_t *)user;
		c.user_len = (uint16_t)strlen(user);
	}
	return run(kv, &c);
}

static enum kv_status setuser(struct kv *kv, const char *as, const char *name, ...)
{
	const char *w[32];
	static uint8_t buf[4096];
	size_t n = 0;
	struct kv_cmd c = mk(KV_R_ACL_SETUSER, name, 0, NULL);
	va_list ap;

	va_start(ap, name);
	while ((w[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	c.value = buf;
	c.value_len = (uint32_t)mods(buf, w);
	return run_as(kv, c, as).status;
}

static enum kv_status auth(struct kv *kv, const char *user, const char *pass)
{
	uint8_t h[KV_PASSWORD_HASH_LEN];
	struct kv_cmd c = mk(KV_R_AUTH, user, 0, NULL);

	kv_password_hash((const uint8_t *)pass, strlen(pass), h);
	c.value = h;
	c.value_len = sizeof(h);
	return run(kv, &c).status;
}

static enum kv_status get_as(struct kv *kv, const char *user, const char *key)
{
	return run_as(kv, mk(KV_R_GET, key, 0, NULL), user).status;
}

static enum kv_status set_as(struct kv *kv, const char *user, const char *key, const char *v)
{
	return run_as(kv, mk(KV_R_SET, key, 0, v), user).status;
}

static enum kv_status policy_set(struct kv *kv, const char *user, const char *key,
				 const char *policy)
{
	return run_as(kv, mk(KV_R_POLICY_SET, key, 0, policy), user).status;
}

static void test_users(void **state)
{
	struct kv *kv;
	struct kv_result r;
	struct kv_item it;
	size_t pos = 0;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	/* the default user: on, nopass, every key and category */
	assert_true(kv_acl_default_open(kv));
	assert_int_equal(kv_user_count(kv), 1);
	assert_int_equal(kv_acl_check(kv, "default", KV_ACL_ALL), KV_OK);
	assert_int_equal(kv_acl_check(kv, "nobody", 0), KV_ERR_NOAUTH);
	assert_int_equal(auth(kv, "default", "anything"), KV_OK);
	assert_int_equal(set_as(kv, "default", "k", "v"), KV_OK);

	/* alice: reads and writes under app:, reads only under ro: */
	assert_int_equal(
		setuser(kv, "default", "alice", "on", ">pw", "~app:*", "%R~ro:*", "+r", "+w", NULL),
		KV_OK);
	assert_int_equal(auth(kv, "alice", "pw"), KV_OK);
	assert_int_equal(auth(kv, "alice", "nope"), KV_ERR_WRONGPASS);
	assert_int_equal(auth(kv, "bob", "pw"), KV_ERR_WRONGPASS);
	assert_int_equal(set_as(kv, "alice", "app:1", "x"), KV_OK);
	assert_int_equal(get_as(kv, "alice", "app:1"), KV_OK);
	assert_int_equal(set_as(kv, "alice", "k", "x"), KV_ERR_NOPERM_KEY);
	assert_int_equal(get_as(kv, "alice", "k"), KV_ERR_NOPERM_KEY);
	assert_int_equal(get_as(kv, "alice", "ro:1"), KV_OK);
	assert_int_equal(set_as(kv, "alice", "ro:1", "x"), KV_ERR_NOPERM_KEY);
	/* INCR reads and writes: a read-only pattern is not enough */
	{
		struct kv_cmd c = mk(KV_R_INCRBY, "ro:n", 0, NULL);

		c.delta = 1;
		assert_int_equal(run_as(kv, c, "alice").status, KV_ERR_NOPERM_KEY);
		c = mk(KV_R_INCRBY, "app:n", 0, NULL);
		c.delta = 1;
		assert_int_equal(run_as(kv, c, "alice").status, KV_OK);
	}
	/* a multi-key command is refused whole when one key is out of reach */
	{
		struct kv_item items[2] = {{(const uint8_t *)"app:1", 5, false, NULL, 0},
					   {(const uint8_t *)"k", 1, false, NULL, 0}};
		struct kv_cmd c = {0};

		c.op = KV_R_DEL;
		c.items = items;
		c.n_items = 2;
		assert_int_equal(run_as(kv, c, "alice").status, KV_ERR_NOPERM_KEY);
		assert_int_equal(get_as(kv, "alice", "app:1"), KV_OK);
		r = run_as(kv, mk(KV_R_GET, "app:1", 0, NULL), "alice");
		assert_value(&r, "x");
	}
	/* categories: alice is no admin */
	assert_int_equal(setuser(kv, "alice", "alice", "+all", NULL), KV_ERR_NOPERM_CMD);
	assert_int_equal(run_as(kv, mk(KV_R_ACL_LIST, "", 0, NULL), "alice").status,
			 KV_ERR_NOPERM_CMD);
	/* a permission change committed before a write wins over it */
	assert_int_equal(setuser(kv, "default", "alice", "-w", NULL), KV_OK);
	assert_int_equal(set_as(kv, "alice", "app:1", "y"), KV_ERR_NOPERM_CMD);
	assert_int_equal(get_as(kv, "alice", "app:1"), KV_OK);
	assert_int_equal(setuser(kv, "default", "alice", "off", NULL), KV_OK);
	assert_int_equal(get_as(kv, "alice", "app:1"), KV_ERR_NOAUTH);
	assert_int_equal(auth(kv, "alice", "pw"), KV_ERR_WRONGPASS);
	assert_int_equal(get_as(kv, "ghost", "app:1"), KV_ERR_NOAUTH);

	/* passwords: removing one that is not there is an error and changes nothing */
	assert_int_equal(setuser(kv, "default", "alice", "on", "<other", NULL), KV_ERR_TEXT);
	assert_int_equal(kv_acl_check(kv, "alice", 0), KV_ERR_NOAUTH); /* still off */
	assert_int_equal(setuser(kv, "default", "alice", "on", ">pw2", "<pw", NULL), KV_OK);
	assert_int_equal(auth(kv, "alice", "pw"), KV_ERR_WRONGPASS);
	assert_int_equal(auth(kv, "alice", "pw2"), KV_OK);

	/* ACL LIST, sorted by name, hashes in hex */
	r = run_as(kv, mk(KV_R_ACL_LIST, "", 0, NULL), "default");
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.n_items, 2);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_int_equal(it.value_len,
			 strlen("user alice on #") + 64 + strlen(" ~app:* %R~ro:* -@all +@read"));
	assert_memory_equal(it.value, "user alice on #", 15);
	assert_memory_equal(it.value + 15 + 64, " ~app:* %R~ro:* -@all +@read", 28);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_int_equal(it.value_len, strlen("user default on nopass ~* +@all"));
	assert_memory_equal(it.value, "user default on nopass ~* +@all", it.value_len);

	/* a connection that never authenticated (KV_USER_ANON) acts as default while it is
	 * nopass; "-" is no user name */
	assert_int_equal(set_as(kv, KV_USER_ANON, "k", "anon"), KV_OK);
	assert_int_equal(kv_acl_check(kv, KV_USER_ANON, KV_ACL_ALL), KV_OK);
	assert_int_equal(setuser(kv, "default", "-", "on", NULL), KV_ERR_TEXT);
	assert_false(kv_user_name_ok((const uint8_t *)"-", 1));
	/* default with a password: connections must authenticate, decided when applied */
	assert_int_equal(setuser(kv, "default", "default", ">secret", NULL), KV_OK);
	assert_false(kv_acl_default_open(kv));
	assert_int_equal(set_as(kv, KV_USER_ANON, "k", "anon"), KV_ERR_NOAUTH);
	assert_int_equal(get_as(kv, KV_USER_ANON, "k"), KV_ERR_NOAUTH);
	assert_int_equal(kv_acl_check(kv, KV_USER_ANON, 0), KV_ERR_NOAUTH);
	assert_int_equal(auth(kv, "default", "x"), KV_ERR_WRONGPASS);
	assert_int_equal(auth(kv, "default", "secret"), KV_OK);

	/* DELUSER: default cannot go; a count of those that existed */
	{
		struct kv_item items[3] = {{(const uint8_t *)"alice", 5, false, NULL, 0},
					   {(const uint8_t *)"nobody", 6, false, NULL, 0},
					   {(const uint8_t *)"default", 7, false, NULL, 0}};
		struct kv_cmd c = {0};

		c.op = KV_R_ACL_DELUSER;
		c.items = items;
		c.n_items = 3;
		assert_int_equal(run_as(kv, c, "default").status, KV_ERR_TEXT);
		c.n_items = 2;
		r = run_as(kv, c, "default");
		assert_int_equal(r.status, KV_OK);
		assert_int_equal(r.integer, 1);
		assert_int_equal(kv_user_count(kv), 1);
		assert_int_equal(get_as(kv, "alice", "app:1"), KV_ERR_NOAUTH);
	}
	teems_free(last_result);
	last_result = NULL;
	kv_free(kv);
}

static void test_policies(void **state)
{
	struct kv *kv, *copy;
	struct kv_result r;
	struct kv_item it;
	size_t pos = 0, n;
	uint8_t *snap, *snap2;
	size_t n2;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	for (const char *const *u = (const char *const[]){"alice", "bob", "carol", "eve", NULL};
	     *u != NULL; u++)
		assert_int_equal(setuser(kv, NULL, *u, "on", ">pw", "~obj:*", "+r", "+w", NULL),
				 KV_OK);
	assert_int_equal(setuser(kv, NULL, "admin", "on", ">pw", "~*", "+all", NULL), KV_OK);
	/* a new policy must name its creator as the owner (unless an admin sets it) */
	assert_int_equal(policy_set(kv, "alice", "obj:1", "bob\n\n"), KV_ERR_TEXT);
	assert_int_equal(policy_set(kv, "alice", "obj:1", "alice\nbob\ncarol"), KV_OK);
	/* keys outside the patterns stay out, policy or not */
	assert_int_equal(policy_set(kv, "alice", "other", "alice\n\n"), KV_ERR_NOPERM_KEY);
	assert_int_equal(set_as(kv, "alice", "obj:1", "v1"), KV_OK);
	/* readers read, writers write, nobody else does either */
	assert_int_equal(get_as(kv, "bob", "obj:1"), KV_OK);
	assert_int_equal(set_as(kv, "bob", "obj:1", "x"), KV_ERR_NOPERM_KEY);
	assert_int_equal(set_as(kv, "carol", "obj:1", "v2"), KV_OK);
	assert_int_equal(get_as(kv, "carol", "obj:1"), KV_ERR_NOPERM_KEY);
	assert_int_equal(get_as(kv, "eve", "obj:1"), KV_ERR_NOPERM_KEY);
	assert_int_equal(set_as(kv, "eve", "obj:1", "x"), KV_ERR_NOPERM_KEY);
	/* the admin is no reader either, but may change the policy */
	assert_int_equal(get_as(kv, "admin", "obj:1"), KV_ERR_NOPERM_KEY);
	/* only the owner (or an admin) changes it */
	assert_int_equal(policy_set(kv, "bob", "obj:1", "bob\nbob\nbob"), KV_ERR_NOPERM_KEY);
	assert_int_equal(policy_set(kv, "carol", "obj:1", "carol\n\n"), KV_ERR_NOPERM_KEY);
	/* SCAN shows eve nothing of obj:1, bob sees it */
	{
		struct kv_cmd c = mk(KV_R_SCAN, "", 0, NULL);

		c.count = 100;
		assert_int_equal(set_as(kv, "eve", "obj:eve", "e"), KV_OK);
		r = run_as(kv, c, "eve");
		assert_int_equal(r.n_items, 1);
		r = run_as(kv, c, "bob");
		assert_int_equal(r.n_items, 2);
		r = run_as(kv, c, NULL);
		assert_int_equal(r.n_items, 2);
	}
	/* POLICY.GET: owner, readers, writers; eve may not look */
	assert_int_equal(run_as(kv, mk(KV_R_POLICY_GET, "obj:1", 0, NULL), "eve").status,
			 KV_ERR_NOPERM_KEY);
	r = run_as(kv, mk(KV_R_POLICY_GET, "obj:1", 0, NULL), "bob");
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.n_items, 3);
	assert_true(kv_result_item(&r, &pos, &it));
	assert_int_equal(it.value_len, 5);
	assert_memory_equal(it.value, "alice", 5);
	r = run_as(kv, mk(KV_R_POLICY_GET, "obj:eve", 0, NULL), "eve");
	assert_int_equal(r.status, KV_OK);
	assert_int_equal(r.n_items, 0);
	/* "*": every user; the owner hands the object over */
	assert_int_equal(policy_set(kv, "alice", "obj:1", "alice\n*\n"), KV_OK);
	assert_int_equal(get_as(kv, "eve", "obj:1"), KV_OK);
	assert_int_equal(set_as(kv, "carol", "obj:1", "x"), KV_ERR_NOPERM_KEY);
	assert_int_equal(policy_set(kv, "alice", "obj:1", "bob\n\n"), KV_OK);
	assert_int_equal(policy_set(kv, "alice", "obj:1", "alice\n\n"), KV_ERR_NOPERM_KEY);
	assert_int_equal(policy_set(kv, "admin", "obj:1", "alice\nbob\nbob"), KV_OK);
	assert_int_equal(policy_set(kv, "alice", "obj:1", "alice\nno space\n"), KV_ERR_TEXT);

	/* snapshots carry users and policies: a restored copy decides the same */
	assert_int_equal(kv_snapshot(kv, &snap, &n), TEEMS_OK);
	assert_int_equal(kv_new(&copy), TEEMS_OK);
	assert_false(kv_equal(kv, copy));
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_OK);
	assert_true(kv_equal(kv, copy) && kv_equal(copy, kv));
	assert_int_equal(kv_snapshot(copy, &snap2, &n2), TEEMS_OK);
	assert_int_equal(n, n2);
	assert_memory_equal(snap, snap2, n);
	assert_int_equal(get_as(copy, "bob", "obj:1"), KV_OK);
	assert_int_equal(get_as(copy, "eve", "obj:1"), KV_ERR_NOPERM_KEY);
	assert_int_equal(auth(copy, "alice", "pw"), KV_OK);
	assert_int_equal(kv_user_count(copy), 6); /* default and the five above */
	/* a changed policy shows */
	assert_int_equal(policy_set(copy, "admin", "obj:1", "alice\nbob,eve\n"), KV_OK);
	assert_false(kv_equal(kv, copy));
	/* every truncation of the sections is refused */
	for (size_t cut = n - 60; cut < n; cut++)
		assert_int_equal(kv_restore(copy, snap, cut), TEEMS_ECORRUPT);
	teems_free(snap);
	teems_free(snap2);
	teems_free(last_result);
	last_result = NULL;
	kv_free(copy);
	kv_free(kv);
}

static void test_as_codec(void **state)
{
	struct kv_cmd c = mk(KV_R_GET, "k", 0, NULL), d;
	uint8_t buf[128];
	size_t n;

	(void)state;
	c.user = (const uint8_t *)"alice";
	c.user_len = 5;
	assert_int_equal(kv_cmd_encode(&c, buf, sizeof(buf), &n), TEEMS_OK);
	assert_int_equal(buf[0], KV_FORMAT_AS);
	assert_int_equal(kv_cmd_decode(buf, n, &d), TEEMS_OK);
	assert_int_equal(d.user_len, 5);
	assert_memory_equal(d.user, "alice", 5);
	assert_int_equal(d.op, KV_R_GET);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(kv_cmd_decode(buf, cut, &d), TEEMS_ECORRUPT);
	buf[3] = ' '; /* "al ce": not a user name */
	assert_int_equal(kv_cmd_decode(buf, n, &d), TEEMS_ECORRUPT);
	c.user = (const uint8_t *)"a,b";
	c.user_len = 3;
	assert_int_equal(kv_cmd_size(&c), 0);
	/* model ops are never wrapped */
	c = mk(KV_GET, "k", 0, NULL);
	c.user = (const uint8_t *)"alice";
	c.user_len = 5;
	assert_int_equal(kv_cmd_size(&c), 0);
}

static void test_property_snapshot_midway(void **state)
{
	char keys[24][8], vals[8][24];
	struct kv_item items[4];

	(void)state;
	for (int i = 0; i < 24; i++)
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
	static const char *const v[8] = {"0",  "1", "-7", "abc", "", "9223372036854775800",
					 "12", "x"};
	for (int i = 0; i < 8; i++)
		snprintf(vals[i], sizeof(vals[i]), "%s", v[i]);
	for (uint64_t seed = 1; seed <= 40; seed++) {
		struct kv *a, *b = NULL;
		uint64_t now = 1000;
		size_t steps = 600, mid;
		uint8_t *snap;
		size_t snap_len;

		rng_state = seed * 0x9e3779b97f4a7c15ull;
		mid = (size_t)(rnd() % steps);
		assert_int_equal(kv_new(&a), TEEMS_OK);
		for (size_t i = 0; i < steps; i++) {
			uint8_t cmd[512], *ra, *rb;
			size_t len = random_cmd(cmd, sizeof(cmd), &now, keys, vals, items), la, lb;

			if (i == mid) {
				assert_int_equal(kv_snapshot(a, &snap, &snap_len), TEEMS_OK);
				assert_int_equal(kv_new(&b), TEEMS_OK);
				assert_int_equal(kv_restore(b, snap, snap_len), TEEMS_OK);
				teems_free(snap);
				assert_true(kv_equal(a, b));
			}
			assert_int_equal(kv_apply_encoded(a, cmd, len, &ra, &la), TEEMS_OK);
			if (b != NULL) {
				/* the same command gives the same result on both replicas */
				assert_int_equal(kv_apply_encoded(b, cmd, len, &rb, &lb), TEEMS_OK);
				assert_int_equal(la, lb);
				assert_memory_equal(ra, rb, la);
				teems_free(rb);
			}
			teems_free(ra);
		}
		assert_non_null(b);
		assert_true(kv_equal(a, b));
		assert_true(kv_equal(b, a));
		{
			uint8_t *sa, *sb;
			size_t na, nb;

			assert_int_equal(kv_snapshot(a, &sa, &na), TEEMS_OK);
			assert_int_equal(kv_snapshot(b, &sb, &nb), TEEMS_OK);
			assert_int_equal(na, nb);
			assert_memory_equal(sa, sb, na);
			teems_free(sa);
			teems_free(sb);
		}
		/* negative control: kv_equal does notice a one-key difference */
		r_set(b, "k0", "different", 0, 0, now);
		r_set(a, "k0", "different!", 0, 0, now);
		assert_false(kv_equal(a, b));
		kv_free(a);
		kv_free(b);
	}
}

static int teardown(void **state)
{
	(void)state;
	teems_free(last_result);
	last_result = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_set_options),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_incr),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_many_keys_and_snapshot),
		cmocka_unit_test(test_snapshot_checks),
		cmocka_unit_test(test_cmd_codec),
		cmocka_unit_test(test_result_codec_and_apply_encoded),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_property_snapshot_midway),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_policies),
		cmocka_unit_test(test_as_codec),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
