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

#include "common/alloc.h"
#include "net/commands.h"
#include "kv/lease_table.h"
#include "teems/err.h"

#define MAXA 24

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
		/* subcommands ("acl|setuser") are reached through their container only */
		if (strchr(t[i].name, '|') != NULL)
			assert_null(cmd_lookup((const uint8_t *)t[i].name, strlen(t[i].name)));
		else
			assert_ptr_equal(cmd_lookup((const uint8_t *)t[i].name, strlen(t[i].name)),
					 &t[i]);
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
	/* Redis 7: a repeated option is fine (the last expiry wins), the syntax is checked
	 * before the expiry's value, and EXAT/PXAT are absolute */
	c = mk("SET", "k", "v", "EX", "1", "GET", "EX", "2", "GET", NULL);
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), 0);
	assert_int_equal(o.expire_ms, 2000);
	assert_false(o.absolute);
	c = mk("SET", "k", "v", "EXAT", "1700000000", NULL);
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), 0);
	assert_true(o.absolute);
	assert_int_equal(o.expire_ms, 1700000000000ull);
	c = mk("SET", "k", "v", "pxat", "5", "KEEPTTL", NULL);
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), -1);
	c = mk("SET", "k", "v", "PXAT", "5", NULL);
	assert_int_equal(cmd_parse_set(c.a, c.n, &o, err), 0);
	assert_int_equal(o.expire_ms, 5);
	set_err(mk("SET", "k", "v", "EX", "abc", "NX", "XX", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "PX", "KEEPTTL", "PX", "-1", NULL),
		"ERR invalid expire time in 'set' command");
	set_err(mk("SET", "k", "v", "EXAT", "1", "PXAT", "1", NULL), "ERR syntax error");
	set_err(mk("SET", "k", "v", "EXAT", "9223372036854776", NULL),
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
	/* the cursor as Redis reads it (strtoul) */
	{
		static const struct {
			const char *in;
			uint64_t v;
			bool ok;
		} cur[] = {{"", 0, true},
			   {"007", 7, true},
			   {"+5", 5, true},
			   {"-1", UINT64_MAX, true},
			   {"18446744073709551615", UINT64_MAX, true},
			   {"18446744073709551616", 0, false},
			   {" 1", 0, false},
			   {"1 ", 0, false},
			   {"-", 0, false},
			   {"0x1", 0, false}};

		for (size_t i = 0; i < sizeof(cur) / sizeof(cur[0]); i++) {
			c = mk("SCAN", cur[i].in, NULL);
			assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), cur[i].ok ? 0 : -1);
			if (cur[i].ok)
				assert_true(s.cursor == cur[i].v);
			else
				assert_string_equal(err, "ERR invalid cursor");
		}
	}
	c = mk("SCAN", "0", "TYPE", "string", "MATCH", "a", "MATCH", "b", NULL);
	assert_int_equal(cmd_parse_scan(c.a, c.n, &s, err), 0);
	assert_memory_equal(s.type->p, "string", 6);
	assert_memory_equal(s.match->p, "b", 1); /* the last one wins */
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

/* ---- cmd_request / cmd_response: one RESP command as one state-machine command ---- */

/* Runs a command through the engine's path: cmd_check, cmd_request at now_ms,
 * kv_apply_encoded, cmd_response. Returns the reply's bytes (NUL-terminated, for comparing
 * with what redis-server sends); a refused request gives its error as the reply. */
static char reply_buf[4096];

/* The whole path of one command run as `user` (NULL: unwrapped): check, request, apply,
 * response. */
static const char *exec_as(struct kv *kv, int proto, uint64_t now, const char *user, struct call c)
{
	char err[CMD_ERR_LEN];
	const struct cmd_spec *s = cmd_check(c.a, c.n, err);
	struct resp_out o;
	uint8_t *cmd, *res;
	size_t len, rlen;

	resp_out_init(&o, proto);
	if (s == NULL) {
		resp_add_error(&o, err);
	} else if (cmd_request_as(s, c.a, c.n, now, user, &cmd, &len, err) != 0) {
		assert_null(cmd);
		resp_add_error(&o, err);
	} else {
		assert_int_equal(kv_apply_encoded(kv, cmd, len, &res, &rlen), TEEMS_OK);
		assert_int_equal(cmd_response(s, res, rlen, &o), 0);
		teems_free(res);
		teems_free(cmd);
	}
	assert_int_equal(o.err, TEEMS_OK);
	assert_true(o.len < sizeof(reply_buf));
	memcpy(reply_buf, o.buf, o.len);
	reply_buf[o.len] = '\0';
	resp_out_free(&o);
	return reply_buf;
}

static const char *exec(struct kv *kv, int proto, uint64_t now, struct call c)
{
	return exec_as(kv, proto, now, NULL, c);
}

#define EXPECT(kv, now, want, ...) \
	assert_string_equal(exec(kv, 2, now, mk(__VA_ARGS__, NULL)), want)
#define EXPECT3(kv, now, want, ...) \
	assert_string_equal(exec(kv, 3, now, mk(__VA_ARGS__, NULL)), want)

static void test_request_strings(void **state)
{
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	EXPECT(kv, 0, "$-1\r\n", "GET", "a");
	EXPECT3(kv, 0, "_\r\n", "GET", "a");
	EXPECT(kv, 0, "+OK\r\n", "SET", "a", "1");
	EXPECT(kv, 0, "$1\r\n1\r\n", "GET", "a");
	EXPECT(kv, 0, "+OK\r\n", "set", "", "empty key");
	EXPECT(kv, 0, "$9\r\nempty key\r\n", "GET", "");
	/* NX, XX, GET (Redis 7: NX and GET together; GET answers even when nothing is set) */
	EXPECT(kv, 0, "$-1\r\n", "SET", "a", "2", "NX");
	EXPECT3(kv, 0, "_\r\n", "SET", "a", "2", "NX");
	EXPECT(kv, 0, "$1\r\n1\r\n", "SET", "a", "2", "NX", "GET");
	EXPECT(kv, 0, "$1\r\n1\r\n", "GET", "a");
	EXPECT(kv, 0, "$-1\r\n", "SET", "b", "2", "XX");
	EXPECT(kv, 0, "$-1\r\n", "SET", "b", "2", "XX", "GET");
	EXPECT(kv, 0, "$-1\r\n", "GET", "b");
	EXPECT(kv, 0, "$-1\r\n", "SET", "b", "2", "NX", "GET");
	EXPECT(kv, 0, "$1\r\n2\r\n", "GET", "b");
	EXPECT(kv, 0, "+OK\r\n", "SET", "b", "3", "XX");
	EXPECT(kv, 0, "$1\r\n3\r\n", "SET", "b", "4", "GET");
	/* VGET / VSET */
	EXPECT(kv, 0, "*2\r\n$1\r\n4\r\n:3\r\n", "VGET", "b");
	EXPECT(kv, 0, "*2\r\n$-1\r\n:0\r\n", "VGET", "nope");
	EXPECT3(kv, 0, "*2\r\n_\r\n:0\r\n", "VGET", "nope");
	EXPECT(kv, 0, "*2\r\n:0\r\n:3\r\n", "VSET", "b", "x", "2");
	EXPECT(kv, 0, "*2\r\n:1\r\n:4\r\n", "VSET", "b", "x", "3");
	EXPECT(kv, 0, "*2\r\n:1\r\n:1\r\n", "VSET", "new", "x", "0");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "VSET", "b", "x", "-1");
	/* DEL, EXISTS, MGET, MSET */
	EXPECT(kv, 0, ":2\r\n", "EXISTS", "a", "a", "zz");
	EXPECT(kv, 0, ":2\r\n", "DEL", "a", "a", "b", "zz");
	EXPECT(kv, 0, ":0\r\n", "DEL", "a");
	EXPECT(kv, 0, "*2\r\n:0\r\n:2\r\n", "VSET", "a", "again", "0"); /* tombstone's version */
	EXPECT(kv, 0, "+OK\r\n", "MSET", "m1", "x", "m2", "y", "m1", "z");
	EXPECT(kv, 0, "*3\r\n$1\r\nz\r\n$-1\r\n$1\r\ny\r\n", "MGET", "m1", "zz", "m2");
	EXPECT3(kv, 0, "*3\r\n$1\r\nz\r\n_\r\n$1\r\ny\r\n", "MGET", "m1", "zz", "m2");
	EXPECT(kv, 0, "-ERR wrong number of arguments for 'mset' command\r\n", "MSET", "a", "1",
	       "b");
	kv_free(kv);
}

static void test_request_incr(void **state)
{
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	EXPECT(kv, 0, ":1\r\n", "INCR", "n");
	EXPECT(kv, 0, ":11\r\n", "INCRBY", "n", "10");
	EXPECT(kv, 0, ":10\r\n", "DECR", "n");
	EXPECT(kv, 0, ":-5\r\n", "DECRBY", "n", "15");
	EXPECT(kv, 0, "$2\r\n-5\r\n", "GET", "n");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "INCRBY", "n", "1.5");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "INCRBY", "n", "");
	EXPECT(kv, 0, "-ERR decrement would overflow\r\n", "DECRBY", "n", "-9223372036854775808");
	EXPECT(kv, 0, "+OK\r\n", "SET", "s", " 1");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "INCR", "s");
	EXPECT(kv, 0, "+OK\r\n", "SET", "big", "9223372036854775807");
	EXPECT(kv, 0, "-ERR increment or decrement would overflow\r\n", "INCR", "big");
	EXPECT(kv, 0, "-ERR increment or decrement would overflow\r\n", "DECRBY", "n",
	       "9223372036854775807");
	EXPECT(kv, 0, "$19\r\n9223372036854775807\r\n", "GET", "big");
	EXPECT(kv, 0, "-ERR wrong number of arguments for 'decr' command\r\n", "DECR");
	kv_free(kv);
}

static void test_request_expiry(void **state)
{
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	EXPECT(kv, 1000, "+OK\r\n", "SET", "k", "v", "PX", "500");
	EXPECT(kv, 1499, "$1\r\nv\r\n", "GET", "k");
	EXPECT(kv, 1500, "$-1\r\n", "GET", "k");
	EXPECT(kv, 1000, "+OK\r\n", "SET", "k", "v", "EX", "2");
	EXPECT(kv, 2999, ":1\r\n", "EXISTS", "k");
	EXPECT(kv, 3000, ":0\r\n", "EXISTS", "k");
	EXPECT(kv, 1000, "+OK\r\n", "SET", "k", "w", "KEEPTTL");
	EXPECT(kv, 3000, "$-1\r\n", "GET", "k");
	EXPECT(kv, 1000, ":1\r\n", "INCR", "n");
	EXPECT(kv, 1000, "+OK\r\n", "SET", "k", "v", "PXAT", "4000");
	EXPECT(kv, 3999, "$1\r\nv\r\n", "GET", "k");
	EXPECT(kv, 4000, "$-1\r\n", "GET", "k");
	EXPECT(kv, 1000, "+OK\r\n", "SET", "k", "v", "EXAT", "4");
	EXPECT(kv, 4000, "$-1\r\n", "GET", "k");
	/* an expired key is absent to XX and present to nothing */
	EXPECT(kv, 5000, "$-1\r\n", "SET", "k", "x", "XX");
	EXPECT(kv, 5000, "$-1\r\n", "SET", "k", "x", "NX", "GET");
	EXPECT(kv, 5000, ":0\r\n", "DEL", "zz");
	/* EX whose deadline would pass LLONG_MAX ms is refused (as Redis) */
	EXPECT(kv, 1000, "-ERR invalid expire time in 'set' command\r\n", "SET", "k", "v", "PX",
	       "9223372036854775000");
	EXPECT(kv, 0, "+OK\r\n", "SET", "k", "v", "PX", "9223372036854775000");
	EXPECT(kv, 0, "-ERR invalid expire time in 'set' command\r\n", "SET", "k", "v", "EX", "0");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "SET", "k", "v", "EX",
	       "x");
	EXPECT(kv, 0, "-ERR syntax error\r\n", "SET", "k", "v", "EX", "1", "PX", "1");
	kv_free(kv);
}

static void test_request_limits(void **state)
{
	struct kv *kv;
	char *big = malloc(KV_MAX_VALUE + 2);
	struct call c;
	char err[CMD_ERR_LEN];
	uint8_t *out = (uint8_t *)"x";
	size_t len = 1;

	(void)state;
	assert_non_null(big);
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	memset(big, 'v', KV_MAX_VALUE + 1);
	big[KV_MAX_VALUE + 1] = '\0';
	/* MSET is all or nothing: an invalid pair refuses the whole command */
	EXPECT(kv, 0, "-ERR value is too large\r\n", "MSET", "a", "1", "b", big);
	EXPECT(kv, 0, "*2\r\n$-1\r\n$-1\r\n", "MGET", "a", "b");
	big[KV_MAX_KEY + 1] = '\0';
	EXPECT(kv, 0, "-ERR key is too long\r\n", "MSET", "a", "1", big, "2");
	EXPECT(kv, 0, "$-1\r\n", "GET", "a");
	EXPECT(kv, 0, "-ERR key is too long\r\n", "GET", big);
	EXPECT(kv, 0, "-ERR key is too long\r\n", "DEL", "a", big);
	EXPECT(kv, 0, "-ERR key is too long\r\n", "INCR", big);
	big[KV_MAX_KEY] = '\0';
	EXPECT(kv, 0, "+OK\r\n", "SET", big, "longest key");
	big[KV_MAX_KEY] = 'v';
	big[KV_MAX_PATTERN + 1] = '\0';
	EXPECT(kv, 0, "-ERR pattern is too long\r\n", "SCAN", "0", "MATCH", big);
	/* a command over KV_MAX_COMMAND (8 MiB: the largest log entry) */
	memset(big, 'v', KV_MAX_VALUE);
	big[KV_MAX_VALUE] = '\0';
	c = mk("MSET", "a", big, "b", big, "c", big, "d", big, "e", big, "f", big, "g", big, "h",
	       big, NULL);
	assert_int_equal(cmd_request(check_ok(c), c.a, c.n, 0, &out, &len, err), -1);
	assert_string_equal(err, "ERR command is too large");
	assert_null(out);
	assert_int_equal(len, 0);
	/* commands that are not the state machine's */
	c = mk("PING", NULL);
	assert_int_equal(cmd_request(check_ok(c), c.a, c.n, 0, &out, &len, err), -1);
	assert_string_equal(err, "ERR 'ping' is not a key-value command");
	/* LEASE.* are state-machine commands of their own format (kv.h KV_FORMAT_LEASE) */
	c = mk("LEASE.INFO", "x", NULL);
	assert_int_equal(cmd_request(check_ok(c), c.a, c.n, 0, &out, &len, err), 0);
	assert_int_equal(out[0], KV_FORMAT_LEASE);
	teems_free(out);
	out = NULL;
	c = mk("LEASE.ACQUIRE", "x", "0", NULL);
	assert_int_equal(cmd_request(check_ok(c), c.a, c.n, 0, &out, &len, err), -1);
	assert_string_equal(err, "ERR ttl_ms must be an integer in 1..86400000");
	assert_null(out);
	/* MGET whose reply would pass KV_MAX_RESULT */
	EXPECT(kv, 0, "+OK\r\n", "MSET", "a", big, "b", big, "c", big, "d", big);
	EXPECT(kv, 0, "-ERR reply is too large\r\n", "MGET", "a", "b", "c", "d", "a", "b", "c", "d",
	       "a");
	free(big);
	kv_free(kv);
}

/* SCAN through the RESP layer, to the end, with MATCH and COUNT: each key exactly once. */
static void test_request_scan(void **state)
{
	enum { N = 500 };
	struct kv *kv;
	static int seen[N];
	char key[16], cursor[24] = "0";
	redisReader *rd;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "%s%d", i % 2 ? "odd:" : "even:", i);
		EXPECT(kv, 0, "+OK\r\n", "SET", key, "v");
	}
	EXPECT(kv, 0, "*2\r\n$1\r\n0\r\n*0\r\n", "SCAN", "0", "TYPE", "hash", "COUNT", "100000");
	EXPECT(kv, 0, "*2\r\n$1\r\n0\r\n*1\r\n$6\r\neven:0\r\n", "SCAN", "0", "MATCH", "even:0",
	       "COUNT", "100000", "TYPE", "STRING");
	EXPECT(kv, 0, "-ERR invalid cursor\r\n", "SCAN", "zero");
	EXPECT(kv, 0, "-ERR syntax error\r\n", "SCAN", "0", "COUNT", "0");
	EXPECT(kv, 0, "-ERR syntax error\r\n", "SCAN", "0", "MATCH");
	EXPECT(kv, 0, "-ERR value is not an integer or out of range\r\n", "SCAN", "0", "COUNT",
	       "many");
	rd = redisReaderCreate();
	do {
		void *v = NULL;
		redisReply *r;
		const char *raw =
			exec(kv, 2, 0, mk("SCAN", cursor, "MATCH", "odd:*", "COUNT", "7", NULL));

		assert_int_equal(redisReaderFeed(rd, raw, strlen(raw)), REDIS_OK);
		assert_int_equal(redisReaderGetReply(rd, &v), REDIS_OK);
		r = v;
		assert_int_equal(r->type, REDIS_REPLY_ARRAY);
		assert_int_equal(r->elements, 2);
		assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			int k;

			assert_int_equal(sscanf(r->element[1]->element[i]->str, "odd:%d", &k), 1);
			assert_true(k >= 0 && k < N && k % 2 == 1);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], i % 2);
	redisReaderFree(rd);
	kv_free(kv);
}

static void test_response_checks(void **state)
{
	struct kv *kv;
	struct call c = mk("GET", "a", NULL);
	char err[CMD_ERR_LEN];
	uint8_t *cmd, *res;
	size_t len, rlen;
	struct resp_out o;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	assert_int_equal(cmd_request(check_ok(c), c.a, c.n, 0, &cmd, &len, err), 0);
	assert_int_equal(kv_apply_encoded(kv, cmd, len, &res, &rlen), TEEMS_OK);
	/* the result of GET is not a result of DEL, and half a result is not a result */
	resp_out_init(&o, 2);
	assert_int_equal(cmd_response(&cmd_table()[CMD_DEL], res, rlen, &o), -1);
	assert_int_equal(o.buf[0], '-');
	resp_out_free(&o);
	resp_out_init(&o, 2);
	assert_int_equal(cmd_response(&cmd_table()[CMD_GET], res, rlen - 1, &o), -1);
	assert_int_equal(o.buf[0], '-');
	resp_out_free(&o);
	resp_out_init(&o, 2);
	assert_int_equal(cmd_response(&cmd_table()[CMD_PING], res, rlen, &o), -1);
	resp_out_free(&o);
	/* a truncated command is refused by the state machine, which does not change */
	teems_free(res);
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(kv_apply_encoded(kv, cmd, cut, &res, &rlen), TEEMS_ECORRUPT);
		assert_null(res);
	}
	assert_int_equal(kv_count(kv), 0);
	teems_free(cmd);
	kv_free(kv);
}

/* Run as a user, in RESP2 and RESP3 (errors read the same in both). */
#define AS(kv, user, want, ...)                                                            \
	do {                                                                               \
		assert_string_equal(exec_as(kv, 2, 0, user, mk(__VA_ARGS__, NULL)), want); \
		assert_string_equal(exec_as(kv, 3, 0, user, mk(__VA_ARGS__, NULL)), want); \
	} while (0)

#define NOAUTH "-NOAUTH Authentication required.\r\n"
#define NOPERM_KEY \
	"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

static void test_acl_commands(void **state)
{
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	/* the default user: AUTH's one-argument form is refused while it needs no password */
	AS(kv, NULL,
	   "-ERR AUTH <password> called without any password configured for the default user. "
	   "Are you sure your configuration is correct?\r\n",
	   "AUTH", "pw");
	AS(kv, NULL, "+OK\r\n", "AUTH", "default", "anything");
	AS(kv, "default", "*1\r\n$31\r\nuser default on nopass ~* +@all\r\n", "ACL", "LIST");
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "alice", "on", ">pw", "~app:*", "+@read");
	AS(kv, "default", "+OK\r\n", "acl", "setuser", "bob", "ON",
	   "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "%R~r:*", "%W~w:*",
	   "allchannels", "&*", "+@all", "-@admin");
	AS(kv, "default",
	   "*3\r\n$99\r\nuser alice on "
	   "#30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~app:* -@all "
	   "+@read\r\n"
	   "$112\r\nuser bob on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 "
	   "%R~r:* %W~w:* -@all +@read +@write\r\n"
	   "$31\r\nuser default on nopass ~* +@all\r\n",
	   "ACL", "LIST");
	/* ACL GETUSER: Redis 7's map, a flat array in RESP2 */
	assert_string_equal(
		exec_as(kv, 2, 0, "default", mk("ACL", "GETUSER", "bob", NULL)),
		"*12\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$9\r\npasswords\r\n*1\r\n$64\r\n"
		"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\r\n$"
		"8\r\ncommands\r\n"
		"$20\r\n-@all +@read +@write\r\n$4\r\nkeys\r\n$13\r\n%R~r:* "
		"%W~w:*\r\n$8\r\nchannels\r\n$0\r\n\r\n"
		"$9\r\nselectors\r\n*0\r\n");
	assert_string_equal(
		exec_as(kv, 3, 0, "default", mk("ACL", "GETUSER", "default", NULL)),
		"%6\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$6\r\nnopass\r\n$9\r\npasswords\r\n"
		"*0\r\n$8\r\ncommands\r\n$5\r\n+@all\r\n$4\r\nkeys\r\n$2\r\n~*\r\n$8\r\n"
		"channels\r\n$0\r\n\r\n$9\r\nselectors\r\n*0\r\n");
	assert_string_equal(exec_as(kv, 2, 0, "default", mk("ACL", "GETUSER", "nobody", NULL)),
			    "$-1\r\n");
	AS(kv, "alice", "-NOPERM this user has no permissions to run the 'acl|getuser' command\r\n",
	   "ACL", "GETUSER", "alice");
	/* the same hashes as redis-server 7.0.15 prints for ">pw" and "#<sha256 of password>" */
	AS(kv, NULL, "+OK\r\n", "AUTH", "alice", "pw");
	AS(kv, NULL, "+OK\r\n", "AUTH", "bob", "password");
	AS(kv, NULL, WRONGPASS, "AUTH", "alice", "nope");
	AS(kv, NULL, WRONGPASS, "AUTH", "nobody", "pw");
	/* NOPERM, for a command and for a key */
	AS(kv, "alice", "-NOPERM this user has no permissions to run the 'set' command\r\n", "SET",
	   "app:1", "x");
	AS(kv, "alice", "-NOPERM this user has no permissions to run the 'acl|list' command\r\n",
	   "ACL", "LIST");
	AS(kv, "alice", "-NOPERM this user has no permissions to run the 'acl|setuser' command\r\n",
	   "ACL", "SETUSER", "alice", "+@all");
	assert_string_equal(exec_as(kv, 2, 0, "alice", mk("GET", "app:1", NULL)), "$-1\r\n");
	AS(kv, "alice", NOPERM_KEY, "GET", "other");
	AS(kv, "alice", NOPERM_KEY, "MGET", "app:1", "other");
	AS(kv, "bob", "+OK\r\n", "SET", "w:1", "1");
	AS(kv, "bob", NOPERM_KEY, "GET", "w:1");
	AS(kv, "bob", NOPERM_KEY, "INCR", "w:1");
	AS(kv, "bob", NOPERM_KEY, "SET", "w:1", "2", "GET");
	AS(kv, "ghost", NOAUTH, "GET", "app:1");
	/* DELUSER */
	AS(kv, "default", "-ERR The 'default' user cannot be removed\r\n", "ACL", "DELUSER",
	   "default");
	assert_string_equal(
		exec_as(kv, 2, 0, "default", mk("ACL", "DELUSER", "bob", "nobody", NULL)),
		":1\r\n");
	AS(kv, "bob", NOAUTH, "SET", "w:1", "1");
	/* default with a password */
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "default", ">secret");
	assert_false(kv_acl_default_open(kv));
	AS(kv, NULL, WRONGPASS, "AUTH", "wrong");
	AS(kv, NULL, "+OK\r\n", "AUTH", "secret");
	AS(kv, "default",
	   "-ERR Error in ACL SETUSER modifier '<...>': The password you are trying to remove from "
	   "the user does not exist\r\n",
	   "ACL", "SETUSER", "alice", "<nope");

	/* policies */
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "carol", "on", "nopass", "~app:*", "+@read",
	   "+@write");
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "alice", "+@write");
	AS(kv, "alice", "-NOPERM a new policy must name its creator as the owner\r\n",
	   "TEEMS.POLICY.SET", "app:o", "carol", "-", "-");
	AS(kv, "alice", "+OK\r\n", "TEEMS.POLICY.SET", "app:o", "alice", "carol", "-");
	AS(kv, "alice", "*3\r\n$5\r\nalice\r\n$5\r\ncarol\r\n$1\r\n-\r\n", "TEEMS.POLICY.GET",
	   "app:o");
	assert_string_equal(exec_as(kv, 2, 0, "alice", mk("TEEMS.POLICY.GET", "app:none", NULL)),
			    "$-1\r\n");
	assert_string_equal(exec_as(kv, 3, 0, "alice", mk("TEEMS.POLICY.GET", "app:none", NULL)),
			    "_\r\n");
	AS(kv, "alice", "+OK\r\n", "SET", "app:o", "v");
	AS(kv, "carol", "$1\r\nv\r\n", "GET", "app:o");
	AS(kv, "carol", NOPERM_KEY, "SET", "app:o", "w");
	AS(kv, "carol", NOPERM_KEY, "DEL", "app:o");
	AS(kv, "carol", NOPERM_KEY, "TEEMS.POLICY.SET", "app:o", "carol", "-", "-");
	AS(kv, "carol", "*2\r\n$1\r\n0\r\n*0\r\n", "SCAN", "0", "MATCH", "app:x*");
	AS(kv, "alice", "+OK\r\n", "TEEMS.POLICY.SET", "app:o", "alice", "-", "carol,alice");
	AS(kv, "carol", NOPERM_KEY, "GET", "app:o");
	AS(kv, "carol", "*2\r\n$1\r\n0\r\n*0\r\n", "SCAN", "0");
	AS(kv, "alice", "*2\r\n$1\r\n0\r\n*1\r\n$5\r\napp:o\r\n", "SCAN", "0");
	assert_string_equal(exec_as(kv, 3, 0, "carol", mk("DEL", "app:o", NULL)), ":1\r\n");
	kv_free(kv);
}

/* Client leases through the command table and the state machine (kv.h KV_FORMAT_LEASE): the
 * replies, fencing tokens, permissions on lease names, EXPIRE by generation, snapshots. The
 * replica engine's part (the leader's timers, remaining_ms) is tested in test_replica. */
static void test_lease_commands(void **state)
{
	struct kv *kv, *copy;
	struct lease_cmd ex;
	uint8_t buf[64], *res = NULL, *snap = NULL;
	size_t n, res_len = 0, snap_len = 0;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	EXPECT(kv, 0, "$-1\r\n", "LEASE.INFO", "l");
	EXPECT3(kv, 0, "_\r\n", "LEASE.INFO", "l");
	EXPECT(kv, 0, "*2\r\n:1\r\n:1000\r\n", "LEASE.ACQUIRE", "l", "1000");
	EXPECT(kv, 0,
	       "-LEASEHELD the lease is held by another holder, remaining_ms at most 1000\r\n",
	       "lease.acquire", "l", "50");
	EXPECT(kv, 0, "*4\r\n:1\r\n:1\r\n:1000\r\n:-1\r\n", "LEASE.INFO", "l");
	EXPECT(kv, 0, "*2\r\n:1\r\n:1000\r\n", "LEASE.RENEW", "l", "1");
	EXPECT(kv, 0, "-LEASESTALE the token is not the lease's current token\r\n", "LEASE.RENEW",
	       "l", "2");
	EXPECT(kv, 0, "-LEASESTALE the token is not the lease's current token\r\n", "LEASE.RELEASE",
	       "l", "0");
	EXPECT(kv, 0, "+OK\r\n", "LEASE.RELEASE", "l", "1");
	EXPECT(kv, 0, "*4\r\n:0\r\n:1\r\n:0\r\n:-1\r\n", "LEASE.INFO", "l");
	EXPECT(kv, 0, "-LEASESTALE the token is not the lease's current token\r\n", "LEASE.RELEASE",
	       "l", "1");
	/* tokens never go back: the next holder gets 2 */
	EXPECT(kv, 0, "*2\r\n:2\r\n:500\r\n", "LEASE.ACQUIRE", "l", "500");
	/* argument errors */
	EXPECT(kv, 0, "-ERR ttl_ms must be an integer in 1..86400000\r\n", "LEASE.ACQUIRE", "l",
	       "-1");
	EXPECT(kv, 0, "-ERR token must be a non-negative integer\r\n", "LEASE.RENEW", "l", "x");
	EXPECT(kv, 0, "-ERR lease name must be 1..255 bytes\r\n", "LEASE.INFO", "");
	EXPECT(kv, 0, "-ERR wrong number of arguments for 'lease.renew' command\r\n", "LEASE.RENEW",
	       "l", "2", "1000");
	/* EXPIRE (the leader's) takes effect only at the current generation: ACQUIRE 1, RENEW 2,
	 * RELEASE 3, ACQUIRE 4 */
	memset(&ex, 0, sizeof(ex));
	ex.type = LEASE_CMD_EXPIRE;
	ex.name = "l";
	ex.name_len = 1;
	ex.generation = 3;
	assert_int_equal(kv_lease_cmd_encode(&ex, buf, sizeof(buf), &n), TEEMS_OK);
	assert_int_equal(kv_apply_encoded(kv, buf, n, &res, &res_len), TEEMS_OK);
	assert_int_equal(res_len, KV_LEASE_RESULT_LEN);
	assert_int_equal(res[2], LEASE_STALE);
	teems_free(res);
	EXPECT(kv, 0, "*4\r\n:1\r\n:2\r\n:500\r\n:-1\r\n", "LEASE.INFO", "l");
	ex.generation = 4;
	assert_int_equal(kv_lease_cmd_encode(&ex, buf, sizeof(buf), &n), TEEMS_OK);
	assert_int_equal(kv_apply_encoded(kv, buf, n, &res, &res_len), TEEMS_OK);
	assert_int_equal(res[2], LEASE_OK);
	teems_free(res);
	EXPECT(kv, 0, "*4\r\n:0\r\n:2\r\n:0\r\n:-1\r\n", "LEASE.INFO", "l");
	/* a truncated lease command is refused, and changes nothing */
	assert_int_equal(kv_apply_encoded(kv, buf, n - 1, &res, &res_len), TEEMS_ECORRUPT);
	assert_null(res);
	/* snapshots carry the table */
	EXPECT(kv, 0, "*2\r\n:1\r\n:100\r\n", "LEASE.ACQUIRE", "m", "100");
	assert_int_equal(kv_snapshot(kv, &snap, &snap_len), TEEMS_OK);
	assert_int_equal(kv_new(&copy), TEEMS_OK);
	assert_false(kv_equal(kv, copy));
	assert_int_equal(kv_restore(copy, snap, snap_len), TEEMS_OK);
	assert_true(kv_equal(kv, copy));
	EXPECT(copy, 0, "*4\r\n:1\r\n:1\r\n:100\r\n:-1\r\n", "LEASE.INFO", "m");
	EXPECT(copy, 0, "*2\r\n:3\r\n:9\r\n", "LEASE.ACQUIRE", "l", "9");
	assert_false(kv_equal(kv, copy));
	/* the table's bytes end the snapshot: "l" then "m", 36 bytes each; swapped, they are not
	 * canonical; and format 3 (before leases) is refused */
	{
		uint8_t tmp[36];

		memcpy(tmp, snap + snap_len - 72, 36);
		memcpy(snap + snap_len - 72, snap + snap_len - 36, 36);
		memcpy(snap + snap_len - 36, tmp, 36);
		assert_int_equal(kv_restore(copy, snap, snap_len), TEEMS_ECORRUPT);
		memcpy(snap + snap_len - 36, snap + snap_len - 72, 36);
		memcpy(snap + snap_len - 72, tmp, 36);
		assert_int_equal(kv_restore(copy, snap, snap_len), TEEMS_OK);
		snap[4] = 3;
		assert_int_equal(kv_restore(copy, snap, snap_len), TEEMS_ECORRUPT);
		assert_true(kv_equal(kv, copy));
	}
	teems_free(snap);
	kv_free(copy);
	/* lease names are keys for permissions */
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "alice", "on", ">pw", "~app:*", "+@read");
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "bob", "on", ">pw", "%R~r:*", "%W~w:*",
	   "+@all", "-@admin");
	AS(kv, "alice",
	   "-NOPERM this user has no permissions to run the 'lease.acquire' command\r\n",
	   "LEASE.ACQUIRE", "app:x", "100");
	assert_string_equal(exec_as(kv, 2, 0, "alice", mk("LEASE.INFO", "app:x", NULL)), "$-1\r\n");
	AS(kv, "alice",
	   "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n",
	   "LEASE.INFO", "other");
	AS(kv, "bob",
	   "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n",
	   "LEASE.ACQUIRE", "r:x", "100");
	assert_string_equal(exec_as(kv, 2, 0, "bob", mk("LEASE.ACQUIRE", "w:x", "100", NULL)),
			    "*2\r\n:1\r\n:100\r\n");
	AS(kv, "bob",
	   "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n",
	   "LEASE.INFO", "w:x");
	AS(kv, "nobody", "-NOAUTH Authentication required.\r\n", "LEASE.INFO", "w:x");
	kv_free(kv);
}

static void test_acl_errors(void **state)
{
	struct kv *kv;

	(void)state;
	assert_int_equal(kv_new(&kv), TEEMS_OK);
	check_err(mk("ACL", NULL), "ERR wrong number of arguments for 'acl' command");
	check_err(mk("ACL", "FOO", NULL), "ERR unknown subcommand 'FOO'. Try ACL HELP.");
	check_err(mk("ACL", "SETUSER", NULL),
		  "ERR wrong number of arguments for 'acl|setuser' command");
	check_err(mk("ACL", "LIST", "x", NULL),
		  "ERR wrong number of arguments for 'acl|list' command");
	check_err(mk("acl|list", NULL),
		  "ERR unknown command 'acl|list', with args beginning with: ");
	assert_int_equal(check_ok(mk("acl", "whoami", NULL))->id, CMD_ACL_WHOAMI);
	assert_int_equal(cmd_resolve(mk("ACL", "DelUser", NULL).a, 2)->id, CMD_ACL_DELUSER);
	assert_null(cmd_resolve(mk("ACL", NULL).a, 1));
	assert_int_equal(cmd_category(check_ok(mk("ACL", "LIST", NULL))), KV_ACL_ADMIN);
	assert_int_equal(cmd_category(check_ok(mk("SET", "k", "v", NULL))), KV_ACL_WRITE);
	assert_int_equal(cmd_category(check_ok(mk("GET", "k", NULL))), KV_ACL_READ);
	assert_int_equal(cmd_category(check_ok(mk("PING", NULL))), 0);
	AS(kv, "default", "-ERR Usernames can't contain spaces or null characters\r\n", "ACL",
	   "SETUSER", "a b");
	AS(kv, "default", "-ERR Error in ACL SETUSER modifier 'bogus': Syntax error\r\n", "ACL",
	   "SETUSER", "x", "bogus");
	AS(kv, "default",
	   "-ERR Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name in "
	   "ACL\r\n",
	   "ACL", "SETUSER", "x", "+@nosuch");
	AS(kv, "default",
	   "-ERR Error in ACL SETUSER modifier '+get': teems grants categories only (@all, @read, "
	   "@write, @admin)\r\n",
	   "ACL", "SETUSER", "x", "+get");
	AS(kv, "default",
	   "-ERR Error in ACL SETUSER modifier '#0123': The password hash must be exactly 64 "
	   "characters and contain only lowercase hexadecimal characters\r\n",
	   "ACL", "SETUSER", "x", "#0123");
	AS(kv, "default", "-ERR Error in ACL SETUSER modifier '%X~a': Syntax error\r\n", "ACL",
	   "SETUSER", "x", "%X~a");
	/* nothing of a refused SETUSER is applied */
	AS(kv, "default", ":0\r\n", "ACL", "DELUSER", "x");
	AS(kv, "default", "-ERR invalid owner 'a b'\r\n", "TEEMS.POLICY.SET", "k", "a b", "-", "-");
	AS(kv, "default", "-ERR invalid user list 'x,,y'\r\n", "TEEMS.POLICY.SET", "k", "me",
	   "x,,y", "-");
	AS(kv, "default", "-ERR invalid user list ''\r\n", "TEEMS.POLICY.SET", "k", "me", "-", "");
	AS(kv, "default", "-ERR syntax error\r\n", "AUTH", "a", "b", "c");
	/* caps: 32 passwords and 64 patterns a user; a refused SETUSER changes nothing */
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "y", ">1", ">2", ">3", ">4", ">5", ">6",
	   ">7", ">8", ">9", ">10", ">11", ">12", ">13", ">14", ">15", ">16", ">17", ">18", ">19",
	   ">20");
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "y", ">21", ">22", ">23", ">24", ">25",
	   ">26", ">27", ">28", ">29", ">30", ">31", ">32", ">1");
	AS(kv, "default", "-ERR Error in ACL SETUSER: a user has at most 32 passwords\r\n", "ACL",
	   "SETUSER", "y", "on", ">33");
	AS(kv, "default", WRONGPASS, "AUTH", "y", "1"); /* still off */
	for (int i = 0; i < 4; i++) {
		char p[16][8];
		struct call c = mk("ACL", "SETUSER", "z", NULL);

		for (int k = 0; k < 16; k++) {
			snprintf(p[k], sizeof(p[k]), "~%d:%d", i, k);
			c.a[c.n].p = (const uint8_t *)p[k];
			c.a[c.n++].len = strlen(p[k]);
		}
		assert_string_equal(exec_as(kv, 2, 0, "default", c), "+OK\r\n");
	}
	AS(kv, "default", "-ERR Error in ACL SETUSER: a user has at most 64 key patterns\r\n",
	   "ACL", "SETUSER", "z", "~one-more");
	AS(kv, "default", "+OK\r\n", "ACL", "SETUSER", "z", "~0:0"); /* already there */
	kv_free(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_set_options),
		cmocka_unit_test(test_ints),
		cmocka_unit_test(test_hello_auth_scan),
		cmocka_unit_test(test_to_kv),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_request_strings),
		cmocka_unit_test(test_request_incr),
		cmocka_unit_test(test_request_expiry),
		cmocka_unit_test(test_request_limits),
		cmocka_unit_test(test_request_scan),
		cmocka_unit_test(test_response_checks),
		cmocka_unit_test(test_acl_commands),
		cmocka_unit_test(test_acl_errors),
		cmocka_unit_test(test_lease_commands),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
