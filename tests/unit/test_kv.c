/* The key-value state machine (src/kv/kv.h): the model of tests/sim/history.h (versions +1 per
 * successful write, CAS on versions, DEL tombstones), the encodings (round trips, canonical
 * form, every truncation and corruption refused), snapshots, and allocation failures. */
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
	assert_int_equal(kv_count(kv), 4);
	kv_free(kv);
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
		apply(kv, i % 7 == 0 ? KV_DEL : KV_SET, key, 0, val);
	}
	assert_int_equal(kv_count(kv), 300);
	assert_int_equal(kv_snapshot(kv, &snap, &n), TEEMS_OK);
	assert_int_equal(kv_new(&copy), TEEMS_OK);
	assert_int_equal(kv_restore(copy, snap, n), TEEMS_OK);
	assert_true(kv_equal(kv, copy));
	assert_int_equal(kv_snapshot(copy, &snap2, &n2), TEEMS_OK);
	assert_int_equal(n, n2);
	assert_memory_equal(snap, snap2, n); /* canonical: sorted keys */
	/* every truncation is refused and leaves the map as it was */
	for (size_t cut = 0; cut < n; cut += (n / 200) + 1) {
		assert_int_equal(kv_restore(copy, snap, cut), TEEMS_ECORRUPT);
		assert_true(kv_equal(kv, copy));
	}
	/* trailing garbage, bad magic */
	uint8_t *longer = malloc(n + 1);
	memcpy(longer, snap, n);
	longer[n] = 0;
	assert_int_equal(kv_restore(copy, longer, n + 1), TEEMS_ECORRUPT);
	longer[0] = 'X';
	assert_int_equal(kv_restore(copy, longer, n), TEEMS_ECORRUPT);
	free(longer);
	teems_free(snap);
	teems_free(snap2);
	kv_free(copy);
	kv_free(kv);
}

static void test_snapshot_order_enforced(void **state)
{
	/* two keys "b" then "a": out of order */
	static const uint8_t bad[] = {'T', 'K', 'V', 'S', 1,   0, 0, 0, 2, 0, 0, 0, 0, 0,
				      0,   0,	1,   0,	  'b', 1, 0, 0, 0, 0, 0, 0, 0, 0,
				      1,   0,	'a', 1,	  0,   0, 0, 0, 0, 0, 0, 0};
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	assert_int_equal(kv_restore(kv, bad, sizeof(bad)), TEEMS_ECORRUPT);
	assert_int_equal(kv_count(kv), 0);
	kv_free(kv);
}

static void test_cmd_codec(void **state)
{
	struct kv_cmd cmds[4] = {mk(KV_GET, "key", 0, NULL), mk(KV_SET, "key", 0, "value"),
				 mk(KV_CAS, "k", 77, "v"), mk(KV_DEL, "key2", 0, NULL)};
	uint8_t buf[64];
	size_t len;
	struct kv_cmd d;

	(void)state;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(kv_cmd_encode(&cmds[i], buf, 2, &len), TEEMS_EFULL);
		assert_int_equal(kv_cmd_encode(&cmds[i], buf, sizeof(buf), &len), TEEMS_OK);
		assert_int_equal(kv_cmd_decode(buf, len, &d), TEEMS_OK);
		assert_int_equal(d.op, cmds[i].op);
		assert_int_equal(d.key_len, cmds[i].key_len);
		assert_memory_equal(d.key, cmds[i].key, d.key_len);
		assert_int_equal(d.expected_version, cmds[i].expected_version);
		assert_int_equal(d.value_len, cmds[i].value_len);
		for (size_t cut = 0; cut < len; cut++)
			assert_int_equal(kv_cmd_decode(buf, cut, &d), TEEMS_ECORRUPT);
		assert_int_equal(kv_cmd_decode(buf, len + 1, &d), TEEMS_ECORRUPT);
	}
	buf[0] = 9;
	assert_int_equal(kv_cmd_decode(buf, len, &d), TEEMS_ECORRUPT);
	struct kv_cmd empty = mk(KV_GET, "", 0, NULL);
	assert_int_equal(kv_cmd_encode(&empty, buf, sizeof(buf), &len), TEEMS_EINVAL);
	struct kv_cmd badop = mk(KV_GET, "a", 0, NULL);
	badop.op = (enum kv_op)0;
	assert_int_equal(kv_cmd_encode(&badop, buf, sizeof(buf), &len), TEEMS_EINVAL);
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
	kv_free(kv);
}

static void test_enomem(void **state)
{
	(void)state;
	for (long nth = 0; nth < 64; nth++) {
		struct kv *kv = NULL, *before = NULL;
		struct kv_cmd c = mk(KV_SET, "key", 0, "val");
		uint8_t cmd[64], *res;
		size_t len, rlen;
		int rc;

		assert_int_equal(kv_new(&kv), TEEMS_OK);
		assert_int_equal(kv_new(&before), TEEMS_OK);
		for (int i = 0; i < 20; i++) {
			char key[8];
			snprintf(key, sizeof(key), "p%d", i);
			apply(kv, KV_SET, key, 0, "x");
			apply(before, KV_SET, key, 0, "x");
		}
		assert_int_equal(kv_cmd_encode(&c, cmd, sizeof(cmd), &len), TEEMS_OK);
		teems_alloc_fault(nth, 0);
		rc = kv_apply_encoded(kv, cmd, len, &res, &rlen);
		teems_alloc_fault(-1, 0);
		if (rc == TEEMS_OK) {
			teems_free(res);
		} else {
			assert_int_equal(rc, TEEMS_ENOMEM);
			assert_true(kv_equal(kv, before)); /* nothing changed */
		}
		kv_free(kv);
		kv_free(before);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_many_keys_and_snapshot),
		cmocka_unit_test(test_snapshot_order_enforced),
		cmocka_unit_test(test_cmd_codec),
		cmocka_unit_test(test_result_codec_and_apply_encoded),
		cmocka_unit_test(test_enomem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
