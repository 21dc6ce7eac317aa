/* libFuzzer target for the RESP parser, encoder and command table (src/net/resp.h,
 * src/net/commands.h).
 *
 * The first byte picks the limits (small ones, so every limit is reachable) and the size of
 * the reads; the rest is a byte stream from a client. Properties:
 *   - never crash, never read outside the bytes given (each call sees an exact-size copy);
 *   - parsing the stream whole and parsing it in reads of any size give the same requests and
 *     the same verdict (pipelining and partial requests are handled alike);
 *   - each request, re-encoded as a multibulk of bulks, parses back to the same arguments;
 *   - the command layer's checks never fail without an error text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/commands.h"
#include "net/resp.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

/* A running digest of the requests seen, to compare two ways of parsing. */
static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (h ^ n) * 1099511628211ull;
}

/* One map for the whole run: commands from every input apply to it (bounded by the corpus). */
static struct kv *fuzz_kv;

static void exercise_command(const struct resp_request *r)
{
	char err[CMD_ERR_LEN];
	const struct cmd_spec *s;
	struct kv_cmd ops[8];
	union {
		struct cmd_set_opts set;
		struct cmd_hello hello;
		struct cmd_scan scan;
	} u;
	const struct resp_arg *user, *pass;

	err[0] = '\0';
	s = cmd_check(r->argv, r->argc, err);
	if (s == NULL) {
		CHECK(err[0] != '\0' && strchr(err, '\r') == NULL && strchr(err, '\n') == NULL);
		return;
	}
	switch (s->id) {
	case CMD_SET:
		(void)cmd_parse_set(r->argv, r->argc, &u.set, err);
		break;
	case CMD_HELLO:
		(void)cmd_parse_hello(r->argv, r->argc, &u.hello, err);
		break;
	case CMD_SCAN:
		(void)cmd_parse_scan(r->argv, r->argc, &u.scan, err);
		break;
	case CMD_AUTH:
		(void)cmd_parse_auth(r->argv, r->argc, &user, &pass, err);
		break;
	default:
		break;
	}
	{
		size_t idx[8];

		CHECK(cmd_keys(s, r->argc, idx, 8) <= 8);
	}
	{
		int n = cmd_to_kv(s, r->argv, r->argc, ops, 8, err);

		struct kv_result res[8];
		struct resp_out o;

		CHECK(n >= -1 && n <= 8);
		for (int i = 0; i < n; i++) {
			CHECK(kv_cmd_size(&ops[i]) != 0);
			CHECK(kv_apply(fuzz_kv, &ops[i], &res[i]) == TEEMS_OK);
		}
		if (n > 0) {
			resp_out_init(&o, r->argc % 2 ? 3 : 2);
			(void)cmd_reply(s, res, (size_t)n, &o);
			CHECK(o.err == TEEMS_OK);
			resp_out_free(&o);
		}
	}
}

/* Re-encodes r as a client would send it and parses it back. */
static void roundtrip(const struct resp_request *r, const struct resp_limits *l)
{
	struct resp_out o;
	struct resp_parser p;
	struct resp_request back;
	uint8_t *copy;

	resp_out_init(&o, 2);
	resp_add_array(&o, r->argc);
	for (size_t i = 0; i < r->argc; i++)
		resp_add_bulk(&o, r->argv[i].p, r->argv[i].len);
	CHECK(o.err == TEEMS_OK);
	copy = malloc(o.len);
	CHECK(copy != NULL);
	memcpy(copy, o.buf, o.len);
	resp_parser_init(&p, l);
	if (resp_parse(&p, copy, o.len, &back) == RESP_REQUEST) {
		CHECK(back.consumed == o.len && back.argc == r->argc);
		for (size_t i = 0; i < r->argc; i++)
			CHECK(back.argv[i].len == r->argv[i].len &&
			      memcmp(back.argv[i].p, r->argv[i].p, r->argv[i].len) == 0);
	}
	resp_parser_free(&p);
	free(copy);
	resp_out_free(&o);
}

/* Parses the stream showing at most `step` new bytes per call (0: all at once). Returns the
 * digest of the requests and the final verdict. */
static uint64_t run(const uint8_t *in, size_t len, const struct resp_limits *l, size_t step,
		    int *verdict, bool deep)
{
	struct resp_parser p;
	uint8_t *stream = malloc(len ? len : 1);
	size_t start = 0, avail = step ? 0 : len;
	uint64_t h = 14695981039346656037ull;

	CHECK(stream != NULL);
	memcpy(stream, in, len);
	resp_parser_init(&p, l);
	*verdict = RESP_INCOMPLETE;
	for (;;) {
		struct resp_request r;
		size_t vis = (avail < len ? avail : len) - start;
		uint8_t *view = malloc(vis ? vis : 1); /* exact size: ASan sees any overread */
		int rc;

		CHECK(view != NULL);
		memcpy(view, stream + start, vis);
		rc = resp_parse(&p, view, vis, &r);
		CHECK(rc == RESP_INCOMPLETE || rc == RESP_REQUEST || rc == RESP_PROTOCOL_ERROR);
		if (rc == RESP_REQUEST) {
			CHECK(r.consumed > 0 && r.consumed <= vis);
			CHECK(r.argc <= l->max_args);
			h = mix(h, (const uint8_t *)&r.argc, sizeof(r.argc));
			for (size_t i = 0; i < r.argc; i++) {
				CHECK(r.argv[i].p >= view &&
				      r.argv[i].p + r.argv[i].len <= view + vis);
				CHECK(r.argv[i].len <= l->max_bulk ||
				      r.argv[i].len <= l->max_inline);
				h = mix(h, r.argv[i].p, r.argv[i].len);
			}
			if (deep && r.argc > 0) {
				exercise_command(&r);
				roundtrip(&r, l);
			}
			/* in-place inline decoding: keep the stream as the parser left it */
			memcpy(stream + start, view, r.consumed);
			start += r.consumed;
			if (avail < start)
				avail = start;
			free(view);
			continue;
		}
		free(view);
		if (rc == RESP_PROTOCOL_ERROR) {
			CHECK(strncmp(resp_parser_error(&p), "ERR Protocol error: ", 20) == 0);
			*verdict = rc;
			break;
		}
		if (avail >= len)
			break;
		avail += step;
	}
	resp_parser_free(&p);
	free(stream);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct resp_limits l;
	int v1, v2;
	uint64_t h1, h2;
	size_t step;

	if (size < 1)
		return 0;
	if (fuzz_kv == NULL)
		CHECK(kv_new(&fuzz_kv) == TEEMS_OK);
	resp_limits_default(&l);
	if (data[0] & 1) {
		l.max_args = 4;
		l.max_bulk = 16;
		l.max_inline = 24;
		l.max_request = 64;
	}
	step = (size_t)(data[0] >> 1) % 17 + 1;
	data++;
	size--;
	h1 = run(data, size, &l, 0, &v1, true);
	h2 = run(data, size, &l, step, &v2, false);
	/* A protocol error found on a partial view (a header line already too long) is the same
	 * verdict as on the whole stream; the requests before it are the same. */
	CHECK(v1 == v2);
	CHECK(h1 == h2);
	return 0;
}
