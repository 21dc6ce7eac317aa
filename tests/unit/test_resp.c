/* RESP parser and encoder (src/net/resp.h): multibulk and inline requests, pipelining,
 * requests split at every byte, Redis's protocol errors and limits, zero-copy views, and the
 * encoder's output read back by hiredis (the client-side reader real clients use). */
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
#include "net/resp.h"
#include "teems/err.h"

/* Parses one request from s (copied to a writable exact-size buffer). */
static int parse1(struct resp_parser *p, const char *s, size_t len, uint8_t **buf,
		  struct resp_request *req)
{
	*buf = malloc(len ? len : 1);
	assert_non_null(*buf);
	memcpy(*buf, s, len);
	return resp_parse(p, *buf, len, req);
}

static void assert_arg(const struct resp_request *r, size_t i, const char *s)
{
	assert_true(i < r->argc);
	assert_int_equal(r->argv[i].len, strlen(s));
	assert_memory_equal(r->argv[i].p, s, strlen(s));
}

static void test_multibulk(void **state)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;
	const char in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";

	(void)state;
	resp_parser_init(&p, NULL);
	assert_int_equal(parse1(&p, in, sizeof(in) - 1, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.argc, 3);
	assert_int_equal(r.consumed, sizeof(in) - 1);
	assert_arg(&r, 0, "SET");
	assert_arg(&r, 1, "k");
	assert_arg(&r, 2, "");
	/* zero copy: the views point into the buffer */
	assert_ptr_equal(r.argv[0].p, buf + 8);
	assert_ptr_equal(r.argv[1].p, buf + 17);
	free(buf);
	resp_parser_free(&p);
}

static void test_binary_bulk(void **state)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;
	const char in[] = "*2\r\n$3\r\nGET\r\n$4\r\n\r\n\0*\r\n";

	(void)state;
	resp_parser_init(&p, NULL);
	assert_int_equal(parse1(&p, in, sizeof(in) - 1, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.argc, 2);
	assert_int_equal(r.argv[1].len, 4);
	assert_memory_equal(r.argv[1].p, "\r\n\0*", 4);
	free(buf);
	resp_parser_free(&p);
}

/* A pipeline of several requests, multibulk and inline, fed with every possible split into
 * two reads; and fed one byte at a time. The same requests come out every time. */
static const char pipeline[] = "*1\r\n$4\r\nPING\r\n"
			       "GET k\r\n"
			       "*0\r\n"
			       "\r\n"
			       "*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n"
			       "set \"a b\" 'c d'\n";
static const char *const expect[][3] = {
	{"PING", NULL, NULL}, {"GET", "k", NULL},	   {NULL, NULL, NULL},
	{NULL, NULL, NULL},   {"GET", "0123456789", NULL}, {"set", "a b", "c d"},
};

/* Feeds `pipeline` so that at most `avail` bytes are visible in each call (growing by step),
 * and checks the requests. */
static void run_pipeline(size_t first, size_t step)
{
	struct resp_parser p;
	uint8_t buf[sizeof(pipeline)];
	size_t total = sizeof(pipeline) - 1, start = 0, avail = first, got = 0;

	memcpy(buf, pipeline, total);
	resp_parser_init(&p, NULL);
	while (start < total) {
		struct resp_request r;
		size_t vis = (avail < total ? avail : total) - start;
		int rc = resp_parse(&p, buf + start, vis, &r);

		if (rc == RESP_INCOMPLETE) {
			assert_true(avail < total);
			avail += step;
			continue;
		}
		assert_int_equal(rc, RESP_REQUEST);
		assert_true(got < sizeof(expect) / sizeof(expect[0]));
		for (size_t i = 0; i < 3; i++) {
			if (expect[got][i] == NULL) {
				assert_int_equal(r.argc, i);
				break;
			}
			assert_arg(&r, i, expect[got][i]);
		}
		got++;
		start += r.consumed;
		if (avail < start)
			avail = start;
	}
	assert_int_equal(got, sizeof(expect) / sizeof(expect[0]));
	resp_parser_free(&p);
}

static void test_pipeline_splits(void **state)
{
	(void)state;
	for (size_t first = 0; first <= sizeof(pipeline) - 1; first++)
		run_pipeline(first, sizeof(pipeline));
	run_pipeline(0, 1);
	run_pipeline(1, 3);
}

static void test_inline(void **state)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;
	const char in[] = "  SET  \"x\\x41\\n\\\"\"   'it\\'s' plain\r\n";

	(void)state;
	resp_parser_init(&p, NULL);
	assert_int_equal(parse1(&p, in, sizeof(in) - 1, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.consumed, sizeof(in) - 1);
	assert_int_equal(r.argc, 4);
	assert_arg(&r, 0, "SET");
	assert_arg(&r, 1, "xA\n\"");
	assert_arg(&r, 2, "it's");
	assert_arg(&r, 3, "plain");
	free(buf);

	/* an empty line and a line of blanks are empty requests */
	assert_int_equal(parse1(&p, "\n", 1, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.argc, 0);
	assert_int_equal(r.consumed, 1);
	free(buf);
	assert_int_equal(parse1(&p, " \t \r\n", 5, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.argc, 0);
	free(buf);
	/* a line without its newline yet */
	assert_int_equal(parse1(&p, "PING", 4, &buf, &r), RESP_INCOMPLETE);
	free(buf);
	resp_parser_free(&p);
}

/* Each input, fed whole, gives exactly this protocol error. */
static void expect_error(const struct resp_limits *l, const char *in, size_t len, const char *msg)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;

	resp_parser_init(&p, l);
	assert_int_equal(parse1(&p, in, len, &buf, &r), RESP_PROTOCOL_ERROR);
	assert_string_equal(resp_parser_error(&p), msg);
	/* the verdict sticks: the connection is to be closed */
	assert_int_equal(resp_parse(&p, buf, len, &r), RESP_PROTOCOL_ERROR);
	free(buf);
	resp_parser_free(&p);
}

#define ERR(in, msg) expect_error(NULL, in, sizeof(in) - 1, "ERR Protocol error: " msg)

static void test_protocol_errors(void **state)
{
	(void)state;
	ERR("*abc\r\n", "invalid multibulk length");
	ERR("*+1\r\n", "invalid multibulk length");
	ERR("*01\r\n", "invalid multibulk length");
	ERR("* 1\r\n", "invalid multibulk length");
	ERR("*1\rx", "invalid multibulk length");
	ERR("*1048577\r\n", "invalid multibulk length");
	ERR("*99999999999999999999999\r\n", "invalid multibulk length");
	ERR("*2\r\nx\r\n", "expected '$', got 'x'");
	ERR("*2\r\n\x01\r\n", "expected '$', got '\\x01'");
	ERR("*1\r\n$-1\r\n", "invalid bulk length");
	ERR("*1\r\n$abc\r\n", "invalid bulk length");
	ERR("*1\r\n$67108865\r\n", "invalid bulk length");
	ERR("*1\r\n$3\r\nabcXY", "bulk not followed by CRLF");
	ERR("SET \"a\n", "unbalanced quotes in request");
	ERR("SET 'a\n", "unbalanced quotes in request");
	ERR("SET \"a\"b\n", "unbalanced quotes in request");
	ERR("SET 'a'b\n", "unbalanced quotes in request");
	ERR("\x80\x81 \"\n", "unbalanced quotes in request");
}

static void test_limits(void **state)
{
	struct resp_limits l;
	char big[2048];

	(void)state;
	resp_limits_default(&l);
	assert_int_equal(l.max_args, 1024 * 1024);
	assert_int_equal(l.max_bulk, 64u << 20);
	assert_int_equal(l.max_inline, 64u << 10);

	l.max_inline = 16;
	l.max_args = 2;
	l.max_bulk = 8;
	l.max_request = 30;
	memset(big, 'a', sizeof(big));
	expect_error(&l, big, 17, "ERR Protocol error: too big inline request");
	big[17] = '\n';
	expect_error(&l, big, 18, "ERR Protocol error: too big inline request");
	expect_error(&l, "*3\r\n", 4, "ERR Protocol error: invalid multibulk length");
	expect_error(&l, "a b c\n", 6, "ERR Protocol error: invalid multibulk length");
	expect_error(&l, "*1\r\n$9\r\n", 8, "ERR Protocol error: invalid bulk length");
	big[0] = '*';
	expect_error(&l, big, 17, "ERR Protocol error: too big mbulk count string");
	memcpy(big, "*1\r\n$", 5);
	memset(big + 5, '1', 20);
	expect_error(&l, big, 25, "ERR Protocol error: too big bulk count string");
	expect_error(&l, "*2\r\n$8\r\n12345678\r\n$8\r\n", 22,
		     "ERR Protocol error: too big request");

	/* exactly at the limits is fine */
	{
		struct resp_parser p;
		struct resp_request r;
		uint8_t *buf;
		const char in[] = "*2\r\n$8\r\n12345678\r\n$1\r\nx\r\n";

		resp_parser_init(&p, &l);
		assert_int_equal(parse1(&p, in, sizeof(in) - 1, &buf, &r), RESP_REQUEST);
		assert_int_equal(r.argc, 2);
		free(buf);
		resp_parser_free(&p);
	}
}

static void test_empty_multibulk(void **state)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;

	(void)state;
	resp_parser_init(&p, NULL);
	assert_int_equal(parse1(&p, "*-1\r\n", 5, &buf, &r), RESP_REQUEST);
	assert_int_equal(r.argc, 0);
	assert_int_equal(r.consumed, 5);
	free(buf);
	resp_parser_free(&p);
}

static void test_parser_enomem(void **state)
{
	struct resp_parser p;
	struct resp_request r;
	uint8_t *buf;
	const char in[] = "*1\r\n$4\r\nPING\r\n";

	(void)state;
	resp_parser_init(&p, NULL);
	teems_alloc_fault(0, 1);
	assert_int_equal(parse1(&p, in, sizeof(in) - 1, &buf, &r), TEEMS_ENOMEM);
	teems_alloc_fault(-1, 0);
	/* the same bytes again, now with memory */
	assert_int_equal(resp_parse(&p, buf, sizeof(in) - 1, &r), RESP_REQUEST);
	assert_arg(&r, 0, "PING");
	free(buf);
	resp_parser_free(&p);
}

/* ---- encoder ---- */

static redisReply *read_reply(const struct resp_out *o)
{
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;

	assert_non_null(rd);
	assert_int_equal(redisReaderFeed(rd, (const char *)o->buf, o->len), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
	assert_non_null(reply);
	/* exactly one reply in the buffer */
	{
		void *more = NULL;

		assert_int_equal(redisReaderGetReply(rd, &more), REDIS_OK);
		assert_null(more);
	}
	redisReaderFree(rd);
	return reply;
}

static void test_encode_hiredis(void **state)
{
	struct resp_out o;
	redisReply *r;
	const char bin[] = "a\r\nb\0c";

	(void)state;
	resp_out_init(&o, 2);
	resp_add_array(&o, 9);
	resp_add_simple(&o, "OK");
	resp_add_error(&o, "ERR bad\r\nthing");
	resp_add_int(&o, -42);
	resp_add_bulk(&o, bin, sizeof(bin) - 1);
	resp_add_null(&o);
	resp_add_map(&o, 1);
	resp_add_bulk_cstr(&o, "role");
	resp_add_bulk_cstr(&o, "leader");
	resp_add_double(&o, 0.5);
	resp_add_bool(&o, true);
	resp_add_null_array(&o);
	assert_int_equal(o.err, TEEMS_OK);

	r = read_reply(&o);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 9);
	assert_int_equal(r->element[0]->type, REDIS_REPLY_STATUS);
	assert_string_equal(r->element[0]->str, "OK");
	assert_int_equal(r->element[1]->type, REDIS_REPLY_ERROR);
	assert_string_equal(r->element[1]->str, "ERR bad  thing");
	assert_int_equal(r->element[2]->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->element[2]->integer, -42);
	assert_int_equal(r->element[3]->type, REDIS_REPLY_STRING);
	assert_int_equal(r->element[3]->len, sizeof(bin) - 1);
	assert_memory_equal(r->element[3]->str, bin, sizeof(bin) - 1);
	assert_int_equal(r->element[4]->type, REDIS_REPLY_NIL);
	assert_int_equal(r->element[5]->type, REDIS_REPLY_ARRAY); /* map flattened */
	assert_int_equal(r->element[5]->elements, 2);
	assert_string_equal(r->element[5]->element[1]->str, "leader");
	assert_int_equal(r->element[6]->type, REDIS_REPLY_STRING);
	assert_string_equal(r->element[6]->str, "0.5");
	assert_int_equal(r->element[7]->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->element[7]->integer, 1);
	assert_int_equal(r->element[8]->type, REDIS_REPLY_NIL);
	freeReplyObject(r);

	/* consume: what was written leaves the buffer */
	resp_out_consume(&o, o.len - 5);
	assert_int_equal(o.len, 5);
	assert_memory_equal(o.buf, "*-1\r\n", 5);
	resp_out_free(&o);
}

static void test_encode_resp3(void **state)
{
	struct resp_out o;
	const char want[] = "%1\r\n$5\r\nproto\r\n:3\r\n_\r\n_\r\n,1.5\r\n#f\r\n~1\r\n+x\r\n"
			    ",inf\r\n";

	(void)state;
	resp_out_init(&o, 3);
	resp_add_map(&o, 1);
	resp_add_bulk_cstr(&o, "proto");
	resp_add_int(&o, 3);
	resp_add_null(&o);
	resp_add_null_array(&o);
	resp_add_double(&o, 1.5);
	resp_add_bool(&o, false);
	resp_add_set(&o, 1);
	resp_add_simple(&o, "x");
	resp_add_double(&o, 1.0 / 0.0);
	assert_int_equal(o.err, TEEMS_OK);
	assert_int_equal(o.len, sizeof(want) - 1);
	assert_memory_equal(o.buf, want, sizeof(want) - 1);
	resp_out_free(&o);
}

static void test_encode_large_and_enomem(void **state)
{
	struct resp_out o;
	redisReply *r;
	size_t n = 1 << 20;
	char *big = malloc(n);

	(void)state;
	assert_non_null(big);
	memset(big, 'v', n);
	resp_out_init(&o, 2);
	resp_add_bulk(&o, big, n);
	r = read_reply(&o);
	assert_int_equal(r->len, n);
	assert_memory_equal(r->str, big, n);
	freeReplyObject(r);
	resp_out_free(&o);

	/* a failed allocation sticks and later calls do nothing */
	resp_out_init(&o, 2);
	teems_alloc_fault(0, 1);
	resp_add_bulk(&o, big, n);
	resp_add_simple(&o, "OK");
	teems_alloc_fault(-1, 0);
	resp_add_simple(&o, "OK");
	assert_int_equal(o.err, TEEMS_ENOMEM);
	assert_int_equal(o.len, 0);
	resp_out_free(&o);
	free(big);
}

/* The parser reads back what a client would send: encode a command as an array of bulks
 * (exactly what hiredis's redisFormatCommandArgv produces) and parse it. */
static void test_parse_hiredis_format(void **state)
{
	const char *argv[] = {"MSET", "k1", "v 1", "k2", ""};
	size_t lens[] = {4, 2, 3, 2, 0};
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, 5, argv, lens);
	struct resp_parser p;
	struct resp_request r;

	(void)state;
	assert_true(len > 0);
	resp_parser_init(&p, NULL);
	assert_int_equal(resp_parse(&p, (uint8_t *)cmd, (size_t)len, &r), RESP_REQUEST);
	assert_int_equal(r.consumed, (size_t)len);
	assert_int_equal(r.argc, 5);
	for (size_t i = 0; i < 5; i++)
		assert_arg(&r, i, argv[i]);
	resp_parser_free(&p);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_multibulk),
		cmocka_unit_test(test_binary_bulk),
		cmocka_unit_test(test_pipeline_splits),
		cmocka_unit_test(test_inline),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_empty_multibulk),
		cmocka_unit_test(test_parser_enomem),
		cmocka_unit_test(test_encode_hiredis),
		cmocka_unit_test(test_encode_resp3),
		cmocka_unit_test(test_encode_large_and_enomem),
		cmocka_unit_test(test_parse_hiredis_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
