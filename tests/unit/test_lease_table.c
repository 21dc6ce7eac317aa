/* Client leases as state-machine commands (src/kv/lease_table.c): RESP parsing, the log
 * encoding, deterministic application (fencing tokens, generations, expiry), replies, snapshot
 * bytes, a new leader honouring its predecessor's leases, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "kv/lease_table.h"
#include "teems/err.h"

#define MS 1000000ull

static int parse(struct kv_lease_req *req, char *errbuf, ...)
{
	const uint8_t *argv[8];
	size_t lens[8], argc = 0;
	va_list ap;
	const char *a;

	va_start(ap, errbuf);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 8) {
		argv[argc] = (const uint8_t *)a;
		lens[argc++] = strlen(a);
	}
	va_end(ap);
	return kv_lease_parse(argc, argv, lens, req, errbuf);
}

static void test_parse(void **state)
{
	struct kv_lease_req q;
	char eb[TEEMS_ERRBUF_LEN];

	(void)state;
	assert_int_equal(parse(&q, eb, "lease.acquire", "db-primary", "5000", NULL), TEEMS_OK);
	assert_false(q.info);
	assert_int_equal(q.cmd.type, LEASE_CMD_ACQUIRE);
	assert_int_equal(q.cmd.name_len, 10);
	assert_memory_equal(q.cmd.name, "db-primary", 10);
	assert_int_equal(q.cmd.ttl_ms, 5000);
	assert_int_equal(parse(&q, eb, "LEASE.RENEW", "x", "17", NULL), TEEMS_OK);
	assert_int_equal(q.cmd.type, LEASE_CMD_RENEW);
	assert_int_equal(q.cmd.token, 17);
	assert_int_equal(parse(&q, eb, "Lease.Release", "x", "0", NULL), TEEMS_OK);
	assert_int_equal(q.cmd.type, LEASE_CMD_RELEASE);
	assert_int_equal(parse(&q, eb, "LEASE.INFO", "x", NULL), TEEMS_OK);
	assert_true(q.info);
	/* refusals */
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "x", "0", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "x", "86400001", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "x", "-5", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "x", "5s", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "x", NULL), TEEMS_EINVAL);
	assert_non_null(strstr(eb, "wrong number of arguments"));
	assert_int_equal(parse(&q, eb, "LEASE.ACQUIRE", "", "5", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.RENEW", "x", "18446744073709551616", NULL),
			 TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.RENEW", "x", "18446744073709551615", NULL), TEEMS_OK);
	assert_int_equal(q.cmd.token, UINT64_MAX);
	assert_int_equal(parse(&q, eb, "LEASE.EXPIRE", "x", "1", NULL), TEEMS_EINVAL);
	assert_int_equal(parse(&q, eb, "LEASE.INFO", "x", "y", NULL), TEEMS_EINVAL);
	assert_int_equal(kv_lease_parse(0, NULL, NULL, &q, eb), TEEMS_EINVAL);
	{
		char longname[LEASE_NAME_MAX + 2];

		memset(longname, 'n', sizeof(longname) - 1);
		longname[LEASE_NAME_MAX + 1] = 0;
		assert_int_equal(parse(&q, eb, "LEASE.INFO", longname, NULL), TEEMS_EINVAL);
		longname[LEASE_NAME_MAX] = 0;
		assert_int_equal(parse(&q, eb, "LEASE.INFO", longname, NULL), TEEMS_OK);
	}
}

static size_t enc(const struct lease_cmd *c, uint8_t *buf, size_t cap)
{
	size_t len = 0;

	assert_int_equal(kv_lease_cmd_encode(c, buf, cap, &len), TEEMS_OK);
	return len;
}

static void test_encoding(void **state)
{
	struct lease_cmd c = {.type = LEASE_CMD_RENEW,
			      .name = "abc",
			      .name_len = 3,
			      .ttl_ms = 7,
			      .token = 9,
			      .generation = 11,
			      .unsafe_host_ns = 13};
	struct lease_cmd d;
	uint8_t buf[128], bad[128];
	size_t len = enc(&c, buf, sizeof(buf)), need = 0;

	(void)state;
	assert_int_equal(len, KV_LEASE_CMD_FIXED + 3);
	assert_true(kv_lease_is_cmd(buf, len));
	assert_int_equal(kv_lease_cmd_decode(buf, len, &d), TEEMS_OK);
	assert_int_equal(d.type, LEASE_CMD_RENEW);
	assert_int_equal(d.name_len, 3);
	assert_memory_equal(d.name, "abc", 3);
	assert_int_equal(d.ttl_ms, 7);
	assert_int_equal(d.token, 9);
	assert_int_equal(d.generation, 11);
	assert_int_equal(d.unsafe_host_ns, 13);
	assert_int_equal(kv_lease_cmd_encode(&c, buf, 4, &need), TEEMS_EFULL);
	assert_int_equal(need, len);
	/* every truncation and extension is refused */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(kv_lease_cmd_decode(buf, n, &d), TEEMS_ECORRUPT);
	memcpy(bad, buf, len);
	bad[len] = 0;
	assert_int_equal(kv_lease_cmd_decode(bad, len + 1, &d), TEEMS_ECORRUPT);
	/* a wrong tag, type or name length */
	memcpy(bad, buf, len);
	bad[0] = 0x81;
	assert_int_equal(kv_lease_cmd_decode(bad, len, &d), TEEMS_ECORRUPT);
	assert_false(kv_lease_is_cmd(bad, len));
	memcpy(bad, buf, len);
	bad[1] = 9;
	assert_int_equal(kv_lease_cmd_decode(bad, len, &d), TEEMS_ECORRUPT);
	memcpy(bad, buf, len);
	bad[2] = 0;
	assert_int_equal(kv_lease_cmd_decode(bad, len, &d), TEEMS_ECORRUPT);
	/* random bytes never crash */
	srand(5);
	for (int k = 0; k < 20000; k++) {
		size_t n = (size_t)rand() % sizeof(bad);

		for (size_t i = 0; i < n; i++)
			bad[i] = (uint8_t)rand();
		if (n && rand() % 2)
			bad[0] = KV_LEASE_FORMAT;
		(void)kv_lease_cmd_decode(bad, n, &d);
	}
	c.name_len = 0;
	assert_int_equal(kv_lease_cmd_encode(&c, buf, sizeof(buf), &len), TEEMS_EINVAL);
}

/* Applies one command to a replica; returns the result. */
static struct lease_result apply(struct kv_leases *l, enum lease_cmd_type type, const char *name,
				 uint64_t arg)
{
	struct lease_cmd c = {.type = type, .name = name, .name_len = strlen(name)};
	struct lease_result res;
	uint8_t buf[300];
	size_t len;

	if (type == LEASE_CMD_ACQUIRE)
		c.ttl_ms = arg;
	else if (type == LEASE_CMD_EXPIRE)
		c.generation = arg;
	else
		c.token = arg;
	len = enc(&c, buf, sizeof(buf));
	assert_int_equal(kv_leases_apply(l, buf, len, &res, NULL), TEEMS_OK);
	return res;
}

static void reply_is(bool info, enum lease_cmd_type type, const struct lease_result *res,
		     int64_t remaining, const char *want)
{
	uint8_t buf[200];
	size_t n = kv_lease_reply(info, type, res, remaining, NULL, 0);

	assert_int_equal(n, strlen(want));
	assert_int_equal(kv_lease_reply(info, type, res, remaining, buf, sizeof(buf)), n);
	assert_memory_equal(buf, want, n);
}

static void test_state_machine(void **state)
{
	struct kv_leases *a, *b;
	struct lease_result r, g;
	struct lease_cmd info = {.name = "m", .name_len = 1};
	uint64_t gen;

	(void)state;
	assert_int_equal(kv_leases_new(&a), TEEMS_OK);
	kv_leases_info(a, &info, &r);
	assert_int_equal(r.status, LEASE_NOT_FOUND);
	reply_is(true, 0, &r, -1, "$-1\r\n");
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 3000);
	assert_int_equal(r.status, LEASE_OK);
	assert_int_equal(r.token, 1);
	reply_is(false, LEASE_CMD_ACQUIRE, &r, -1, "*2\r\n:1\r\n:3000\r\n");
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 100); /* held: refused, the holder's time shown */
	assert_int_equal(r.status, LEASE_HELD);
	reply_is(false, LEASE_CMD_ACQUIRE, &r, 1234,
		 "-LEASEHELD the lease is held by another holder, remaining_ms 1234\r\n");
	reply_is(false, LEASE_CMD_ACQUIRE, &r, -1,
		 "-LEASEHELD the lease is held by another holder, remaining_ms at most 3000\r\n");
	r = apply(a, LEASE_CMD_RENEW, "m", 2); /* wrong token */
	assert_int_equal(r.status, LEASE_STALE);
	reply_is(false, LEASE_CMD_RENEW, &r, -1,
		 "-LEASESTALE the token is not the lease's current token\r\n");
	r = apply(a, LEASE_CMD_RENEW, "m", 1);
	assert_int_equal(r.status, LEASE_OK);
	gen = r.generation;
	/* an expiry that raced the renewal (an older generation) is a no-op */
	r = apply(a, LEASE_CMD_EXPIRE, "m", gen - 1);
	assert_int_equal(r.status, LEASE_STALE);
	kv_leases_info(a, &info, &r);
	assert_true(r.held);
	reply_is(true, 0, &r, 900, "*4\r\n:1\r\n:1\r\n:3000\r\n:900\r\n");
	r = apply(a, LEASE_CMD_EXPIRE, "m", gen);
	assert_int_equal(r.status, LEASE_OK);
	r = apply(a, LEASE_CMD_RELEASE, "m", 1); /* expired: the old holder is fenced out */
	assert_int_equal(r.status, LEASE_STALE);
	/* tokens only grow, also after release: fencing tokens */
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 500);
	assert_int_equal(r.token, 2);
	r = apply(a, LEASE_CMD_RELEASE, "m", 2);
	assert_int_equal(r.status, LEASE_OK);
	reply_is(false, LEASE_CMD_RELEASE, &r, -1, "+OK\r\n");
	kv_leases_info(a, &info, &r);
	assert_false(r.held);
	reply_is(true, 0, &r, 5, "*4\r\n:0\r\n:2\r\n:0\r\n:-1\r\n");
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 500);
	assert_int_equal(r.token, 3);
	r = apply(a, LEASE_CMD_ACQUIRE, "other", 10);
	assert_int_equal(r.token, 1);
	/* another replica applying the same commands in another table order encodes the same
	 * bytes, and a restored copy continues identically */
	assert_int_equal(kv_leases_new(&b), TEEMS_OK);
	{
		uint8_t *sa, *sb;
		size_t la, lb;

		assert_int_equal(kv_leases_serialize(a, &sa, &la), TEEMS_OK);
		assert_int_equal(kv_leases_restore(b, sa, la), TEEMS_OK);
		assert_int_equal(kv_leases_serialize(b, &sb, &lb), TEEMS_OK);
		assert_int_equal(la, lb);
		assert_memory_equal(sa, sb, la);
		/* every truncation of the bytes is refused, and leaves b unchanged */
		for (size_t n = 0; n < la; n++)
			assert_int_equal(kv_leases_restore(b, sa, n), TEEMS_ECORRUPT);
		teems_free(sb);
		assert_int_equal(kv_leases_serialize(b, &sb, &lb), TEEMS_OK);
		assert_memory_equal(sa, sb, la);
		teems_free(sa);
		teems_free(sb);
	}
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 500);
	g = apply(b, LEASE_CMD_ACQUIRE, "m", 500);
	assert_memory_equal(&r, &g, sizeof(r));
	r = apply(a, LEASE_CMD_RELEASE, "m", 3);
	g = apply(b, LEASE_CMD_RELEASE, "m", 3);
	assert_memory_equal(&r, &g, sizeof(r));
	r = apply(a, LEASE_CMD_ACQUIRE, "m", 500);
	g = apply(b, LEASE_CMD_ACQUIRE, "m", 500);
	assert_int_equal(r.token, 4);
	assert_memory_equal(&r, &g, sizeof(r));
	kv_leases_free(a);
	kv_leases_free(b);
}

/* A new leader honours the leases granted under the previous one: it proposes no expiry
 * before TTL (1 + rho) has passed on its own lo since it took office, whatever its clock's
 * offset (S12: times never enter the log), and a taint restarts that wait. */
static void test_new_leader_honours(void **state)
{
	struct kv_leases *l;
	struct lease_timers tm;
	struct lease_expiry due[4];
	struct lease_time t0 = {.lo_ns = 5 * MS, .hi_ns = 5 * MS + 10, .epoch = 1};
	struct lease_time t;
	struct lease_result r;
	uint64_t rem;

	(void)state;
	assert_int_equal(kv_leases_new(&l), TEEMS_OK);
	r = apply(l, LEASE_CMD_ACQUIRE, "m", 1000); /* granted under the old leader */
	assert_int_equal(r.status, LEASE_OK);
	lease_timers_init(&tm, 10000, false); /* rho 1% */
	assert_int_equal(lease_timers_take_office(&tm, kv_leases_table(l), t0), 0);
	t = t0;
	t.lo_ns += 1000 * MS; /* TTL on lo: not yet, the padding runs */
	t.hi_ns += 1000 * MS;
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 0);
	assert_true(lease_timers_remaining_ns(&tm, "m", 1, t, &rem));
	assert_int_equal(rem, 10 * MS);
	t.epoch = 2; /* a taint: the wait restarts in full from here */
	t.lo_ns += 20 * MS;
	t.hi_ns += 20 * MS;
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 0);
	t.lo_ns += 1009 * MS;
	t.hi_ns += 1009 * MS;
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 0);
	t.lo_ns += 1 * MS;
	t.hi_ns += 1 * MS;
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 1);
	assert_int_equal(due[0].generation, r.generation);
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 0); /* reported once */
	lease_timers_retry(&tm);			       /* the proposal was lost */
	assert_int_equal(lease_timers_due(&tm, t, due, 4), 1);
	r = apply(l, LEASE_CMD_EXPIRE, "m", due[0].generation);
	assert_int_equal(r.status, LEASE_OK);
	lease_timers_step_down(&tm);
	assert_false(lease_timers_remaining_ns(&tm, "m", 1, t, &rem));
	lease_timers_free(&tm);
	kv_leases_free(l);
}

/* Every failing allocation is ENOMEM and leaves the table as it was. */
static void test_alloc_failures(void **state)
{
	(void)state;
	for (long nth = 0; nth < 12; nth++) {
		struct kv_leases *l = NULL, *c = NULL;
		struct lease_cmd cmd = {.type = LEASE_CMD_ACQUIRE, .ttl_ms = 5};
		struct lease_result res;
		char name[8];
		uint8_t buf[64], *ser = NULL;
		size_t len, sl;
		int rc;

		teems_alloc_fault(nth, 1);
		rc = kv_leases_new(&l);
		if (rc) {
			assert_int_equal(rc, TEEMS_ENOMEM);
			assert_null(l);
			teems_alloc_fault(-1, 0);
			continue;
		}
		for (int i = 0; i < 10; i++) {
			snprintf(name, sizeof(name), "n%d", i);
			cmd.name = name;
			cmd.name_len = strlen(name);
			len = enc(&cmd, buf, sizeof(buf));
			rc = kv_leases_apply(l, buf, len, &res, NULL);
			assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		}
		rc = kv_leases_serialize(l, &ser, &sl);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		if (rc == TEEMS_OK && kv_leases_new(&c) == TEEMS_OK) {
			rc = kv_leases_restore(c, ser, sl);
			assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		}
		teems_alloc_fault(-1, 0);
		teems_free(ser);
		kv_leases_free(c);
		kv_leases_free(l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),	       cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_state_machine),  cmocka_unit_test(test_new_leader_honours),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
