/* RESP command table (src/net/commands.h): lookup, arity and unknown-command errors with
 * Redis's exact texts, SET/HELLO/AUTH/SCAN option parsing, key positions, and translation to
 * src/kv commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "net/commands.h"
#include "teems/err.h"

#define MAXA 16

struct call {
	struct resp_arg a[MAXA];
	size_t n;
};

/* Builds argv from a NULL-terminated list of C strings. */
static struct call mk(const char *first, ...)
{
	struct call c = {0};
	va_list ap;
	const char *s = first;

	va_start(ap, first);
	while (s != NULL && c.n < MAXA) {
		c.a[c.n].p = (const uint8_t *)s;
		c.a[c.n].len = strlen(s);
		c.n++;
		s = va_arg(ap, const char *);
	}
	va_end(ap);
	return c;
}

static void check_err(struct call c, const char *want)
{
	char err[CMD_ERR_LEN];

	assert_null(cmd_check(c.a, c.n, err));
	assert_string_equal(err, want);
}

static const struct cmd_spec *check_ok(struct call c)
{
	char err[CMD_ERR_LEN];
	const struct cmd_spec *s = cmd_check(c.a, c.n, err);

	assert_non_null(s);
	return s;
}

static void test_table(void **state)
{
	const struct cmd_spec *t = cmd_table();

	(void)state;
	for (size_t i = 0; i < CMD_COUNT_; i++) {
		assert_int_equal(t[i].id, i);
		assert_non_null(t[i].name);
		assert_ptr_equal(cmd_lookup((const uint8_t *)t[i].name, strlen(t[i].name)), &t[i]);
	}
	assert_ptr_equal(cmd_lookup((const uint8_t *)"GeT", 3), &t[CMD_GET]);
	assert_ptr_equal(cmd_lookup((const uint8_t *)"LEASE.ACQUIRE", 13), &t[CMD_LEASE_ACQUIRE]);
	assert_null(cmd_lookup((const uint8_t *)"GETX", 4));
	assert_null(cmd_lookup((const uint8_t *)"GE", 2));
	assert_true(t[CMD_SET].flags & CMD_F_WRITE);
	assert_true(t[CMD_GET].flags & CMD_F_READ);
	assert_true(t[CMD_AUTH].flags & CMD_F_NOAUTH);
	assert_true(t[CMD_HELLO].flags & CMD_F_NOAUTH);
	assert_false(t[CMD_PING].flags & CMD_F_NOAUTH);
}

static void test_errors(void **state)
{
	(void)state;
	check_err(mk("foo", NULL), "ERR unknown command 'foo', with args beginning with: ");
	check_err(mk("foo", "a", "b", NULL),
		  "ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
	check_err(mk("GET", NULL), "ERR wrong number of arguments for 'get' command");
	check_err(mk("get", "a", "b", NULL), "ERR wrong number of arguments for 'get' command");
	check_err(mk("SET", "k", NULL), "ERR wrong number of arguments for 'set' command");
	check_err(mk("mset", "a", "1", "b", NULL),
		  "ERR wrong number of arguments for 'mset' command");
	check_err(mk("vset", "k", "v", NULL), "ERR wrong number of arguments for 'vset' command");
	check_err(mk("teems.status", "x", NULL),
		  "ERR wrong number of arguments for 'teems.status' command");
	check_ok(mk("PING", NULL));
	check_ok(mk("ping", "hello", NULL));
	check_ok(mk("DEL", "a", "b", "c", NULL));

	/* the args part is capped near 128 bytes, non-printable bytes become spaces */
	{
		char big[300];
		char err[CMD_ERR_LEN];
		struct call c;

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[0] = '\n';
		c = mk("nope", big, big, NULL);
		assert_null(cmd_check(c.a, c.n, err));
		assert_int_equal(strlen(err),
				 strlen("ERR unknown command 'nope', with args beginning with: ") +
					 1 + 128 + 2);
		assert_non_null(strstr(err, "' xxx"));
	}
}

static void test_keys(void **state)
{
	size_t idx[8];
	struct call c = mk("MSET", "a", "1", "b", "2", NULL);
	const struct cmd_spec *s = check_ok(c);

	(void)state;
	assert_int_equal(cmd_keys(s, c.n, idx, 8), 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 3);
	c = mk("DEL", "a", "b", "c", NULL);
	assert_int_equal(cmd_keys(check_ok(c), c.n, idx, 8), 3);
	assert_int_equal(idx[2], 3);
	c = mk("GET", "a", NULL);
	assert_int_equal(cmd_keys(check_ok(c), c.n, idx, 8), 1);
	c = mk("PING", NULL);
	assert_int_equal(cmd_keys(check_ok(c), c.n, idx, 8), 0);
	c = mk("DEL", "a", "b", "c", NULL);
	assert_int_equal(cmd_keys(check_ok(c), c.n, idx, 2), 2);
}

static void set_err(struct call c, const char *want)
{
	struct cmd_set_opts o;
	char err[CMD_ERR_LEN];

	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), -1);
	assert_string_equal(err, want);
}

static void test_set_options(void **state)
{
	struct cmd_set_opts o;
	char err[CMD_ERR_LEN];
	struct call c = mk("SET", "k", "v", "nx", "GET", "PX", "1500", NULL);

	(void)state;
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), 0);
	assert_true(o.nx && o.get && o.has_expire);
	assert_false(o.xx);
	assert_int_equal(o.expire_ms, 1500);
	c = mk("SET", "k", "v", "EX", "2", "XX", NULL);
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), 0);
	assert_int_equal(o.expire_ms, 2000);
	assert_true(o.xx);

	set_err(mk("SET", "k", "v", "NX", "XX", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "XX", "NX", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "PX", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "PX", "10", "EX", "1", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "KEEPTTL", "PX", "1", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "bogus", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "PX", "abc", NULL),
		"ERR value is not an integer or out of range");
	set_err(mk("SET", "k", "v", "PX", " 1", NULL),
		"ERR value is not an integer or out of range");
	set_err(mk("SET", "k", "v", "PX", "0", NULL), "ERR invalid expire time in 'set' command");
	set_err(mk("SET", "k", "v", "PX", "-5", NULL), "ERR invalid expire time in 'set' command");
	set_err(mk("SET", "k", "v", "EX", "9223372036854775807", NULL),
		"ERR invalid expire time in 'set' command");
}

static void test_ints(void **state)
{
	char err[CMD_ERR_LEN];
	long long v;
	uint64_t u;
	struct call c =
		mk("9223372036854775807", "-9223372036854775808", "9223372036854775808", "007",
		   "+1", "", "-0", "18446744073709551615", "18446744073709551616", NULL);

	(void)state;
	assert_int_equal(cmd_parse_int(&c.a[0], &v, err), 0);
	assert_true(v == 9223372036854775807LL);
	assert_int_equal(cmd_parse_int(&c.a[1], &v, err), 0);
	assert_true(v == -9223372036854775807LL - 1);
	for (size_t i = 2; i < 7; i++) {
		assert_int_equal(cmd_parse_int(&c.a[i], &v, err), -1);
		assert_string_equal(err, "ERR value is not an integer or out of range");
	}
	assert_int_equal(cmd_parse_u64(&c.a[7], &u, err), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(cmd_parse_u64(&c.a[8], &u, err), -1);
	assert_int_equal(cmd_parse_u64(&c.a[1], &u, err), -1);
}

static void test_hello_auth_scan(void **state)
{
	struct cmd_hello h;
	struct cmd_scan s;
	const struct resp_arg *user, *pass;
	char err[CMD_ERR_LEN];
	struct call c = mk("HELLO", "3", "AUTH", "alice", "pw", "SETNAME", "app", NULL);

	(void)state;
	assert_int_equal(cmd_parse_hello(c.a, c.n, &h, err), 0);
	assert_int_equal(h.proto, 3);
	assert_memory_equal(h.user->p, "alice", 5);
	assert_memory_equal(h.pass->p, "pw", 2);
	assert_memory_equal(h.name->p, "app", 3);
	c = mk("HELLO", NULL);
	assert_int_equal(cmd_parse_hello(c.a, c.n, &h, err), 0);
	assert_int_equal(h.proto, 0);
	c = mk("HELLO", "4", NULL);
	assert_int_equal(cmd_parse_hello(c.a, c.n, &h, err), -1);
	assert_string_equal(err, "NOPROTO unsupported protocol version");
	c = mk("HELLO", "x", NULL);
	assert_int_equal(cmd_parse_hello(c.a, c.n, &h, err), -1);
	assert_string_equal(err, "ERR Protocol version is not an integer or out of range");
	c = mk("HELLO", "2", "AUTH", "alice", NULL);
	assert_int_equal(cmd_parse_hello(c.a, c.n, &h, err), -1);
	assert_string_equal(err, "ERR Syntax error in HELLO option 'AUTH'");

	c = mk("AUTH", "pw", NULL);
	assert_int_equal(cmd_parse_auth(c.a, c.n, &user, &pass, err), 0);
	assert_null(user);
	assert_memory_equal(pass->p, "pw", 2);
	c = mk("AUTH", "u", "pw", NULL);
	assert_int_equal(cmd_parse_auth(c.a, c.n, &user, &pass, err), 0);
	assert_memory_equal(user->p, "u", 1);
	c = mk("AUTH", "u", "pw", "x", NULL);
	assert_int_equal(cmd_parse_auth(c.a, c.n, &user, &pass, err), -1);
	assert_string_equal(err, "ERR syntax error");

	c = mk("SCAN", "0", "MATCH", "user:*", "COUNT", "100", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), 0);
	assert_int_equal(s.cursor, 0);
	assert_int_equal(s.count, 100);
	assert_memory_equal(s.match->p, "user:*", 6);
	c = mk("SCAN", "x", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), -1);
	assert_string_equal(err, "ERR invalid cursor");
	c = mk("SCAN", "0", "COUNT", "0", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), -1);
	assert_string_equal(err, "ERR syntax error");
	c = mk("SCAN", "0", "COUNT", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), -1);
	assert_string_equal(err, "ERR syntax error");
	c = mk("SCAN", "0", "COUNT", "z", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), -1);
	assert_string_equal(err, "ERR value is not an integer or out of range");
}

static void test_to_kv(void **state)
{
	struct kv_cmd ops[4];
	char err[CMD_ERR_LEN];
	struct call c;

	(void)state;
	c = mk("SET", "k", "v", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 1);
	assert_int_equal(ops[0].op, KV_SET);
	assert_int_equal(ops[0].key_len, 1);
	assert_int_equal(ops[0].value_len, 1);
	assert_int_not_equal(kv_cmd_size(&ops[0]), 0);

	c = mk("VSET", "k", "v", "7", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 1);
	assert_int_equal(ops[0].op, KV_CAS);
	assert_int_equal(ops[0].expected_version, 7);
	c = mk("VSET", "k", "v", "-1", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
	assert_string_equal(err, "ERR value is not an integer or out of range");

	c = mk("MSET", "a", "1", "b", "2", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 2);
	assert_int_equal(ops[1].op, KV_SET);
	assert_memory_equal(ops[1].key, "b", 1);
	c = mk("DEL", "a", "b", "c", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 3);
	assert_int_equal(ops[2].op, KV_DEL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 2, err), -1);
	assert_string_equal(err, "ERR too many keys");
	c = mk("MGET", "a", "b", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 2);
	assert_int_equal(ops[0].op, KV_GET);
	c = mk("VGET", "a", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), 1);

	c = mk("GET", "", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
	assert_string_equal(err, "ERR empty key");
	c = mk("INCR", "a", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
	assert_string_equal(err, "ERR 'incr' is not supported yet");
	c = mk("SET", "k", "v", "NX", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
	c = mk("SET", "k", "v", "NX", "XX", NULL);
	assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
	assert_string_equal(err, "ERR syntax error");

	{
		char *big = malloc(KV_MAX_VALUE + 2);

		assert_non_null(big);
		memset(big, 'k', KV_MAX_VALUE + 1);
		big[KV_MAX_VALUE + 1] = '\0';
		c = mk("SET", "k", big, NULL);
		assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
		assert_string_equal(err, "ERR value is too large");
		big[KV_MAX_KEY + 1] = '\0';
		c = mk("GET", big, NULL);
		assert_int_equal(cmd_to_kv(check_ok(c), c.a, c.n, ops, 4, err), -1);
		assert_string_equal(err, "ERR key is too long");
		free(big);
	}
}

/* Runs a command end to end against a kv map: check, translate, apply, reply; returns what a
 * client (hiredis) reads. */
static redisReply *run(struct kv *kv, struct call c)
{
	struct kv_cmd ops[8];
	struct kv_result res[8];
	char err[CMD_ERR_LEN];
	const struct cmd_spec *s = check_ok(c);
	int n = cmd_to_kv(s, c.a, c.n, ops, 8, err);
	struct resp_out o;
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;

	assert_true(n > 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(kv_apply(kv, &ops[i], &res[i]), TEEMS_OK);
	resp_out_init(&o, 2);
	assert_int_equal(cmd_reply(s, res, (size_t)n, &o), 0);
	assert_int_equal(o.err, TEEMS_OK);
	assert_int_equal(redisReaderFeed(rd, (const char *)o.buf, o.len), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
	assert_non_null(reply);
	redisReaderFree(rd);
	resp_out_free(&o);
	return reply;
}

static void test_reply(void **state)
{
	struct kv *kv;
	redisReply *r;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	r = run(kv, mk("GET", "a", NULL));
	assert_int_equal(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);
	r = run(kv, mk("SET", "a", "x", NULL));
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	assert_string_equal(r->str, "OK");
	freeReplyObject(r);
	r = run(kv, mk("GET", "a", NULL));
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_string_equal(r->str, "x");
	freeReplyObject(r);
	r = run(kv, mk("VGET", "a", NULL));
	assert_int_equal(r->elements, 2);
	assert_string_equal(r->element[0]->str, "x");
	assert_int_equal(r->element[1]->integer, 1);
	freeReplyObject(r);
	r = run(kv, mk("VSET", "a", "y", "0", NULL)); /* stale version: refused, current is 1 */
	assert_int_equal(r->element[0]->integer, 0);
	assert_int_equal(r->element[1]->integer, 1);
	freeReplyObject(r);
	r = run(kv, mk("VSET", "a", "y", "1", NULL));
	assert_int_equal(r->element[0]->integer, 1);
	assert_int_equal(r->element[1]->integer, 2);
	freeReplyObject(r);
	r = run(kv, mk("MSET", "b", "1", "c", "2", NULL));
	assert_string_equal(r->str, "OK");
	freeReplyObject(r);
	r = run(kv, mk("MGET", "a", "nope", "c", NULL));
	assert_int_equal(r->elements, 3);
	assert_string_equal(r->element[0]->str, "y");
	assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
	assert_string_equal(r->element[2]->str, "2");
	freeReplyObject(r);
	r = run(kv, mk("EXISTS", "a", "a", "nope", NULL));
	assert_int_equal(r->integer, 2);
	freeReplyObject(r);
	{
		struct resp_out o;
		struct kv_result res = {0};

		resp_out_init(&o, 2);
		assert_int_equal(cmd_reply(&cmd_table()[CMD_DEL], &res, 1, &o), -1);
		assert_int_equal(cmd_reply(&cmd_table()[CMD_GET], &res, 2, &o), -1);
		resp_out_free(&o);
	}
	kv_free(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table), cmocka_unit_test(test_errors),
		cmocka_unit_test(test_keys),  cmocka_unit_test(test_set_options),
		cmocka_unit_test(test_ints),  cmocka_unit_test(test_hello_auth_scan),
		cmocka_unit_test(test_to_kv), cmocka_unit_test(test_reply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
