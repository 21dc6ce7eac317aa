/* The history checkers and the history file format (tests/sim/lincheck.h, history.h).
 *
 * Every checker has a negative control: hand-written violations, and random linearizable
 * histories mutated in ways that are provably violations, which the checker must catch every
 * time. Small random histories are also checked against a brute-force search over all orders. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "teems/err.h"

#include "history.h"
#include "lincheck.h"

/* ---- Helpers ---- */

static void parse_ok(struct history *h, const char *text)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	int rv;

	history_init(h);
	rv = history_parse(h, text, strlen(text), errbuf);
	if (rv != 0)
		fail_msg("parse: %s", errbuf);
}

/* Checks a history given as text; returns the verdict (and asserts the call succeeded). */
static enum lincheck_verdict check_text_opt(const char *text, uint64_t max_states,
					    struct lincheck_result *out)
{
	struct lincheck_options opt = {.max_states_per_key = max_states};
	struct lincheck_result res;
	struct history h;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	enum lincheck_verdict v;

	parse_ok(&h, text);
	if (lincheck_check(&h, &opt, &res, errbuf) != 0)
		fail_msg("lincheck_check: %s", errbuf);
	v = res.verdict;
	if (v == LINCHECK_OK)
		assert_null(res.explanation);
	else
		assert_non_null(res.explanation);
	if (out != NULL)
		*out = res;
	else
		lincheck_result_free(&res);
	history_free(&h);
	return v;
}

static enum lincheck_verdict check_text(const char *text)
{
	return check_text_opt(text, 0, NULL);
}

static enum lincheck_verdict monotonic_text(const char *text)
{
	struct lincheck_result res;
	struct history h;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	enum lincheck_verdict v;

	parse_ok(&h, text);
	if (lincheck_monotonic_reads(&h, &res, errbuf) != 0)
		fail_msg("lincheck_monotonic_reads: %s", errbuf);
	v = res.verdict;
	lincheck_result_free(&res);
	history_free(&h);
	return v;
}

#define LIN(text) assert_int_equal(check_text(text), LINCHECK_OK)
#define NOT_LIN(text) assert_int_equal(check_text(text), LINCHECK_VIOLATION)

/* ---- Hand-written histories ---- */

static void test_empty(void **state)
{
	(void)state;
	LIN("");
	LIN("# only a comment\n\n");
	LIN("1 1 0 - unknown SET k a\n2 1 0 - unknown GET k\n3 1 0 5 fail SET k b\n");
}

static void test_stale_read_after_completed_write(void **state)
{
	(void)state;
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"1 2 20 30 ok SET x b -> 2\n"
		"2 1 40 50 ok GET x -> value a 1\n");
	/* The same, without versions (ABD). */
	NOT_LIN("1 1 0 10 ok SET x a -> ?\n"
		"1 2 20 30 ok SET x b -> ?\n"
		"2 1 40 50 ok GET x -> value a ?\n");
	/* A read of the initial state after a completed write. */
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"2 1 20 30 ok GET x -> absent 0\n");
	/* Reads by one client may not go back either. */
	NOT_LIN("1 1 0 100 ok SET x a -> 1\n"
		"2 1 10 20 ok GET x -> value a 1\n"
		"2 2 30 40 ok GET x -> absent 0\n");
}

static void test_concurrent_read_sees_either(void **state)
{
	(void)state;
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "1 2 20 60 ok SET x b -> 2\n"
	    "2 1 30 50 ok GET x -> value a 1\n");
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "1 2 20 60 ok SET x b -> 2\n"
	    "2 1 30 50 ok GET x -> value b 2\n");
	/* Intervals are closed: ops that touch at one instant are concurrent. */
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "2 1 10 20 ok GET x -> absent 0\n");
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"2 1 11 20 ok GET x -> absent 0\n");
	/* Two concurrent reads may each see a different side, but not new-then-old in real time. */
	LIN("1 1 0 100 ok SET x a -> 1\n"
	    "2 1 10 20 ok GET x -> absent 0\n"
	    "3 1 10 20 ok GET x -> value a 1\n");
	NOT_LIN("1 1 0 100 ok SET x a -> 1\n"
		"3 1 10 20 ok GET x -> value a 1\n"
		"2 1 30 40 ok GET x -> absent 0\n");
}

static void test_cas(void **state)
{
	(void)state;
	/* Sequential CAS chain, and a failed CAS reporting the current version. */
	LIN("1 1 0 10 ok CAS x 0 a -> ok 1\n"
	    "1 2 20 30 ok CAS x 1 b -> ok 2\n"
	    "2 1 40 50 ok CAS x 1 c -> fail 2\n"
	    "2 2 60 70 ok GET x -> value b 2\n");
	/* Lost update: b's CAS succeeded on version 2, but a later read sees a at version 2. */
	NOT_LIN("1 1 0 10 ok SET x v -> 1\n"
		"1 2 20 30 ok CAS x 1 a -> ok 2\n"
		"2 1 40 50 ok CAS x 2 b -> ok 3\n"
		"3 1 60 70 ok GET x -> value a 2\n");
	/* Two concurrent CAS both succeeding on the same expected version. */
	NOT_LIN("1 1 0 10 ok SET x v -> 1\n"
		"1 2 20 50 ok CAS x 1 a -> ok 2\n"
		"2 1 20 50 ok CAS x 1 b -> ok 2\n");
	/* ... of which exactly one may succeed. */
	LIN("1 1 0 10 ok SET x v -> 1\n"
	    "1 2 20 50 ok CAS x 1 a -> fail 2\n"
	    "2 1 20 50 ok CAS x 1 b -> ok 2\n");
	/* A failed CAS must see a different version, and report the key's. */
	NOT_LIN("1 1 0 10 ok SET x v -> 1\n"
		"2 1 20 30 ok CAS x 1 a -> fail 1\n");
	NOT_LIN("1 1 0 10 ok SET x v -> 1\n"
		"2 1 20 30 ok CAS x 5 a -> fail 2\n");
	/* A successful CAS returns expected + 1. */
	NOT_LIN("1 1 0 10 ok CAS x 0 a -> ok 2\n");
	/* CAS compares versions only, also on an absent (deleted) key. */
	LIN("1 1 0 10 ok SET x v -> 1\n"
	    "1 2 20 30 ok DEL x -> 2\n"
	    "1 3 40 50 ok CAS x 2 w -> ok 3\n"
	    "1 4 60 70 ok GET x -> value w 3\n");
}

static void test_unknown_outcomes(void **state)
{
	(void)state;
	/* An unknown write that later appears. */
	LIN("1 1 0 - unknown SET x a\n"
	    "2 1 100 110 ok GET x -> value a 1\n");
	/* ... even long after the client gave up. */
	LIN("1 1 0 5 unknown SET x a\n"
	    "1 2 10 20 ok GET x -> absent 0\n"
	    "2 1 100 110 ok GET x -> value a 1\n");
	/* An unknown write that never appears. */
	LIN("1 1 0 - unknown SET x a\n"
	    "2 1 100 110 ok GET x -> absent 0\n"
	    "2 2 120 130 ok SET x b -> 1\n"
	    "2 3 140 150 ok GET x -> value b 1\n");
	/* It cannot take effect before it was invoked. */
	NOT_LIN("2 1 0 10 ok GET x -> value a 1\n"
		"1 1 20 - unknown SET x a\n");
	/* Nor appear, disappear and appear again. */
	NOT_LIN("1 1 0 - unknown SET x a\n"
		"2 1 10 20 ok GET x -> value a 1\n"
		"2 2 30 40 ok GET x -> absent 0\n");
	/* A failed write never happened. */
	NOT_LIN("1 1 0 10 fail SET x a\n"
		"2 1 20 30 ok GET x -> value a 1\n");
	/* An unknown CAS applies only where the version matches. */
	LIN("1 1 0 10 ok SET x v -> 1\n"
	    "2 1 20 - unknown CAS x 1 a\n"
	    "3 1 30 40 ok GET x -> value a 2\n");
	NOT_LIN("1 1 0 10 ok SET x v -> 1\n"
		"2 1 20 - unknown CAS x 7 a\n"
		"3 1 30 40 ok GET x -> value a 2\n");
	/* Unknown writes whose values nobody reads still count for versions: three of them at
	 * most, so the version after b can be 2..5 but not 6. */
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "2 1 20 - unknown SET x p\n"
	    "3 1 20 - unknown SET x q\n"
	    "4 1 20 - unknown SET x r\n"
	    "1 2 30 40 ok SET x b -> 5\n");
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "2 1 20 - unknown SET x p\n"
	    "3 1 20 - unknown SET x q\n"
	    "4 1 20 - unknown SET x r\n"
	    "1 2 30 40 ok SET x b -> 3\n"
	    "1 3 50 60 ok GET x -> value b 3\n");
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"2 1 20 - unknown SET x p\n"
		"3 1 20 - unknown SET x q\n"
		"4 1 20 - unknown SET x r\n"
		"1 2 30 40 ok SET x b -> 6\n");
	/* Without versions an unread unknown write is harmless. */
	LIN("1 1 0 10 ok SET x a -> ?\n"
	    "2 1 20 - unknown SET x p\n"
	    "1 2 30 40 ok GET x -> value a ?\n");
	/* An unknown DEL may explain an absent read. */
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "2 1 20 - unknown DEL x\n"
	    "1 2 30 40 ok GET x -> absent 2\n");
}

static void test_value_nobody_wrote(void **state)
{
	(void)state;
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"2 1 20 30 ok GET x -> value zzz 1\n");
	NOT_LIN("2 1 20 30 ok GET x -> value zzz ?\n");
	/* A value written to another key. */
	NOT_LIN("1 1 0 10 ok SET y a -> 1\n"
		"2 1 20 30 ok GET x -> value a ?\n");
}

static void test_versions(void **state)
{
	(void)state;
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"2 1 20 30 ok GET x -> value a 2\n");
	NOT_LIN("1 1 0 10 ok SET x a -> 2\n");
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"1 2 20 30 ok DEL x -> 3\n");
	/* DEL bumps the version even on an absent key. */
	LIN("1 1 0 10 ok DEL x -> 1\n"
	    "1 2 20 30 ok GET x -> absent 1\n");
	NOT_LIN("1 1 0 10 ok DEL x -> 1\n"
		"1 2 20 30 ok GET x -> absent 0\n");
	/* Unknown versions are not checked, but values are. */
	LIN("1 1 0 10 ok SET x a -> ?\n"
	    "1 2 20 30 ok SET x b -> 2\n"
	    "2 1 40 50 ok GET x -> value b ?\n"
	    "2 2 60 70 ok DEL x -> ?\n"
	    "2 3 80 90 ok GET x -> absent 3\n");
	NOT_LIN("1 1 0 10 ok SET x a -> ?\n"
		"1 2 20 30 ok SET x b -> ?\n"
		"2 1 40 50 ok GET x -> value b 1\n");
	/* Equal values written twice: the read is explained by the right one. */
	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "1 2 20 30 ok SET x b -> 2\n"
	    "1 3 40 50 ok SET x a -> 3\n"
	    "2 1 60 70 ok GET x -> value a 3\n");
	NOT_LIN("1 1 0 10 ok SET x a -> 1\n"
		"1 2 20 30 ok SET x b -> 2\n"
		"1 3 40 50 ok SET x a -> 3\n"
		"2 1 60 70 ok GET x -> value a 1\n");
}

static void test_keys_are_independent(void **state)
{
	struct lincheck_result res;
	(void)state;

	LIN("1 1 0 10 ok SET x a -> 1\n"
	    "2 1 0 10 ok SET y a -> 1\n"
	    "3 1 20 30 ok GET x -> value a 1\n"
	    "3 2 40 50 ok GET y -> value a 1\n"
	    "3 3 60 70 ok GET z -> absent 0\n");
	assert_int_equal(check_text_opt("1 1 0 10 ok SET a v -> 1\n"
					"1 2 20 30 ok SET b v -> 1\n"
					"2 1 40 50 ok GET b -> absent 0\n"
					"2 2 60 70 ok GET a -> value v 1\n",
					0, &res),
			 LINCHECK_VIOLATION);
	assert_int_equal(res.key.len, 1);
	assert_memory_equal(res.key.data, "b", 1);
	assert_int_equal(res.ops, 4);
	assert_int_equal(res.keys, 2);
	lincheck_result_free(&res);
}

static void test_explanation(void **state)
{
	struct lincheck_result res;
	(void)state;

	assert_int_equal(check_text_opt("1 1 0 10 ok SET x a -> 1\n"
					"1 2 20 30 ok SET x b -> 2\n"
					"3 1 25 35 ok GET x -> value b 2\n"
					"2 1 40 50 ok GET x -> value a 1\n",
					0, &res),
			 LINCHECK_VIOLATION);
	printf("%s", res.explanation);
	assert_non_null(strstr(res.explanation, "key x: no linearization"));
	assert_non_null(strstr(res.explanation, "longest linearizable prefix: 1 of the key's 4"));
	assert_non_null(strstr(res.explanation, "  1. 1 1 0 10 ok SET x a -> 1\n"));
	assert_non_null(strstr(res.explanation, "state after it: value a, version 1"));
	assert_non_null(strstr(res.explanation,
			       "could not place (it returned before anything else pending):\n"
			       "  1 2 20 30 ok SET x b -> 2\n"
			       "    fits here, but then this op could never be placed (it needs "
			       "version 1):\n"
			       "      2 1 40 50 ok GET x -> value a 1\n"));
	assert_non_null(strstr(res.explanation, "other candidates at that point:\n"
						"  3 1 25 35 ok GET x -> value b 2\n"
						"    reads a value other than the key's\n"));
	lincheck_result_free(&res);
	/* Without versions, the search gets as far as it can. */
	assert_int_equal(check_text_opt("1 1 0 10 ok SET x a -> ?\n"
					"1 2 20 30 ok SET x b -> ?\n"
					"3 1 25 35 ok GET x -> value b ?\n"
					"2 1 40 50 ok GET x -> value a ?\n",
					0, &res),
			 LINCHECK_VIOLATION);
	printf("%s", res.explanation);
	assert_non_null(strstr(res.explanation, "longest linearizable prefix: 3 of the key's 4"));
	assert_non_null(strstr(res.explanation, "state after it: value b (no versions recorded"));
	assert_non_null(strstr(res.explanation, "  2 1 40 50 ok GET x -> value a ?\n"
						"    reads a value other than the key's\n"));
	lincheck_result_free(&res);
}

static void test_budget(void **state)
{
	struct lincheck_result res;
	(void)state;

	/* Never a pass when the budget runs out, on a good or a bad history. */
	assert_int_equal(check_text_opt("1 1 0 10 ok SET x a -> 1\n"
					"2 1 0 10 ok SET x b -> 2\n"
					"3 1 0 10 ok GET x -> value b 2\n",
					1, &res),
			 LINCHECK_UNKNOWN);
	assert_non_null(strstr(res.explanation, "budget of 1 states exceeded"));
	assert_int_equal(res.key.len, 1);
	lincheck_result_free(&res);
	assert_int_equal(check_text_opt("1 1 0 10 ok SET x a -> ?\n"
					"2 1 0 10 ok SET x b -> ?\n"
					"4 1 0 10 ok SET x c -> ?\n"
					"3 1 20 30 ok GET x -> value zzz ?\n",
					1, NULL),
			 LINCHECK_UNKNOWN);
	/* A violation on one key wins over an exceeded budget on another. */
	assert_int_equal(check_text_opt("1 1 0 10 ok SET a a -> 1\n"
					"2 1 0 10 ok SET a b -> 2\n"
					"3 1 0 10 ok GET a -> value b 2\n"
					"1 2 20 30 ok GET b -> value zzz 1\n",
					1, &res),
			 LINCHECK_VIOLATION);
	assert_memory_equal(res.key.data, "b", 1);
	lincheck_result_free(&res);
}

static void test_invalid_history_is_refused(void **state)
{
	struct history h;
	struct history_op op = {.client = 1, .op_id = 1, .invoke = 10, .complete = 5};
	struct lincheck_result res;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	(void)state;

	history_init(&h);
	assert_int_equal(history_add(&h, &op), 0);
	assert_int_equal(lincheck_check(&h, NULL, &res, errbuf), TEEMS_ECORRUPT);
	assert_non_null(strstr(errbuf, "completes before it is invoked"));
	assert_null(res.explanation);
	assert_int_equal(lincheck_monotonic_reads(&h, &res, errbuf), TEEMS_ECORRUPT);
	history_free(&h);
}

static void test_record_api(void **state)
{
	struct history h;
	struct history_op get = {.client = 1, .op_id = 1, .invoke = 5, .type = HISTORY_GET};
	struct history_op set = {.client = 2, .op_id = 1, .invoke = 0, .type = HISTORY_SET};
	struct history_result r = {.version_known = true, .found = true, .version = 1};
	struct lincheck_result res;
	char errbuf[TEEMS_ERRBUF_LEN];
	size_t a, b;
	(void)state;

	get.key = (struct history_bytes){(const uint8_t *)"k", 1};
	set.key = get.key;
	set.value = (struct history_bytes){(const uint8_t *)"v", 1};
	r.value = set.value;
	history_init(&h);
	assert_int_equal(history_invoke(&h, &set, &a), 0);
	assert_int_equal(history_invoke(&h, &get, &b), 0);
	assert_int_equal(h.ops[a].outcome, HISTORY_UNKNOWN);
	assert_int_equal(h.ops[a].complete, HISTORY_OPEN);
	assert_int_equal(history_complete(&h, b, 20, HISTORY_OK, &r), 0);
	assert_int_equal(history_complete(&h, 7, 20, HISTORY_OK, &r), TEEMS_EINVAL);
	/* The SET never completes: an unknown outcome the read explains. */
	assert_int_equal(lincheck_check(&h, NULL, &res, errbuf), 0);
	assert_int_equal(res.verdict, LINCHECK_OK);
	lincheck_result_free(&res);
	/* Completing it as failed makes the read impossible. */
	assert_int_equal(history_complete(&h, a, 30, HISTORY_FAIL, NULL), 0);
	assert_int_equal(lincheck_check(&h, NULL, &res, errbuf), 0);
	assert_int_equal(res.verdict, LINCHECK_VIOLATION);
	lincheck_result_free(&res);
	history_free(&h);
}

/* ---- Monotonic reads ---- */

static void test_monotonic_reads(void **state)
{
	(void)state;
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> 1\n"
					"1 2 20 30 ok SET x b -> 2\n"
					"2 1 40 50 ok GET x -> value a 1\n"
					"2 2 60 70 ok GET x -> value b 2\n"
					"3 1 60 70 ok GET x -> value a 1\n"),
			 LINCHECK_OK);
	/* Versions go backwards for client 2. */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> 1\n"
					"1 2 20 30 ok SET x b -> 2\n"
					"2 1 40 50 ok GET x -> value b 2\n"
					"2 2 60 70 ok GET x -> value a 1\n"),
			 LINCHECK_VIOLATION);
	/* Without versions: the writer of a completed before the writer of b was invoked. */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> ?\n"
					"1 2 20 30 ok SET x b -> ?\n"
					"2 1 40 50 ok GET x -> value b ?\n"
					"2 2 60 70 ok GET x -> value a ?\n"),
			 LINCHECK_VIOLATION);
	/* ... but concurrent writers may be ordered either way. */
	assert_int_equal(monotonic_text("1 1 0 30 ok SET x a -> ?\n"
					"3 1 20 30 ok SET x b -> ?\n"
					"2 1 40 50 ok GET x -> value b ?\n"
					"2 2 60 70 ok GET x -> value a ?\n"),
			 LINCHECK_OK);
	/* Back to the initial state after a write (no DEL on the key). */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> ?\n"
					"2 1 40 50 ok GET x -> value a ?\n"
					"2 2 60 70 ok GET x -> absent ?\n"),
			 LINCHECK_VIOLATION);
	/* With a DEL the absent read is not attributed. */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> ?\n"
					"1 2 20 30 ok DEL x -> ?\n"
					"2 1 40 50 ok GET x -> value a ?\n"
					"2 2 60 70 ok GET x -> absent ?\n"),
			 LINCHECK_OK);
	/* A value written twice is not attributed (the unique-values assumption). */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> ?\n"
					"1 2 20 30 ok SET x b -> ?\n"
					"1 3 35 38 ok SET x a -> ?\n"
					"2 1 40 50 ok GET x -> value b ?\n"
					"2 2 60 70 ok GET x -> value a ?\n"),
			 LINCHECK_OK);
	/* Different clients and different keys are separate. */
	assert_int_equal(monotonic_text("1 1 0 10 ok SET x a -> 1\n"
					"1 2 20 30 ok SET x b -> 2\n"
					"2 1 40 50 ok GET x -> value b 2\n"
					"3 1 60 70 ok GET x -> value a 1\n"
					"2 2 60 70 ok GET y -> absent 0\n"),
			 LINCHECK_OK);
}

/* ---- Random histories ---- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

#define MAX_CLIENTS 16
#define MAX_KEYS 16

/* An op with keys and values as small integers ("k3", "v17"; value 0 is "absent"). */
struct gen_op {
	uint64_t client, op_id, invoke, complete;
	enum history_outcome outcome;
	enum history_type type;
	int key;
	int value; /* SET, CAS: the value written */
	uint64_t expected;
	bool version_known, cas_ok;
	int read; /* GET: the value read, 0 for absent */
	uint64_t version;
};

struct gen_cfg {
	size_t ops;
	int clients, keys;
	uint64_t step, jitter;
	int p_unknown, p_fail, p_noversion; /* percent */
	bool abd;			    /* GET and SET only, no versions */
	int pool;			    /* 0: every write a fresh value; else values 1..pool */
};

/* A linearizable history: a random sequential execution whose ops get intervals around their
 * linearization points, under the one-op-per-client rule. */
static size_t gen_history(const struct gen_cfg *cfg, uint64_t seed, struct gen_op *ops)
{
	struct rng r = {seed};
	uint64_t free_at[MAX_CLIENTS] = {0}, next_id[MAX_CLIENTS] = {0};
	struct {
		int value;
		uint64_t version;
	} st[MAX_KEYS] = {{0, 0}};
	uint64_t t = 0;
	int fresh = 1;

	for (size_t i = 0; i < cfg->ops; i++) {
		struct gen_op *o = &ops[i];
		int c = -1, start = (int)below(&r, (uint64_t)cfg->clients), p;
		bool applied;

		memset(o, 0, sizeof(*o));
		t += 1 + below(&r, cfg->step);
		for (int k = 0; k < cfg->clients && c < 0; k++)
			if (free_at[(start + k) % cfg->clients] <= t)
				c = (start + k) % cfg->clients;
		if (c < 0) {
			c = 0;
			for (int k = 1; k < cfg->clients; k++)
				if (free_at[k] < free_at[c])
					c = k;
			t = free_at[c];
		}
		o->client = (uint64_t)c + 1;
		o->op_id = ++next_id[c];
		{
			uint64_t back = below(&r, cfg->jitter + 1);

			o->invoke = t - (back < t - free_at[c] ? back : t - free_at[c]);
		}
		o->complete = t + below(&r, cfg->jitter + 1);
		o->key = (int)below(&r, (uint64_t)cfg->keys);
		p = (int)below(&r, 100);
		if (cfg->abd)
			o->type = p < 55 ? HISTORY_GET : HISTORY_SET;
		else
			o->type = p < 40   ? HISTORY_GET
				  : p < 70 ? HISTORY_SET
				  : p < 90 ? HISTORY_CAS
					   : HISTORY_DEL;
		p = (int)below(&r, 100);
		o->outcome = p < cfg->p_unknown			? HISTORY_UNKNOWN
			     : p < cfg->p_unknown + cfg->p_fail ? HISTORY_FAIL
								: HISTORY_OK;
		applied = o->outcome == HISTORY_OK ||
			  (o->outcome == HISTORY_UNKNOWN && below(&r, 2) == 0);
		o->version_known = !cfg->abd && (int)below(&r, 100) >= cfg->p_noversion;
		if (o->type == HISTORY_SET || o->type == HISTORY_CAS)
			o->value = cfg->pool ? 1 + (int)below(&r, (uint64_t)cfg->pool) : fresh++;
		switch (o->type) {
		case HISTORY_GET:
			o->read = st[o->key].value;
			o->version = st[o->key].version;
			break;
		case HISTORY_SET:
		case HISTORY_DEL:
			if (applied) {
				st[o->key].value = o->type == HISTORY_SET ? o->value : 0;
				st[o->key].version++;
			}
			o->version = st[o->key].version;
			break;
		case HISTORY_CAS:
			o->version_known = true;
			o->expected = st[o->key].version;
			if (below(&r, 2) == 0)
				o->expected += below(&r, 3);
			if (o->expected > 0 && below(&r, 4) == 0)
				o->expected--;
			if (applied && o->expected == st[o->key].version) {
				st[o->key].value = o->value;
				st[o->key].version++;
				o->cas_ok = true;
			}
			o->version = st[o->key].version;
			break;
		}
		if (o->outcome == HISTORY_UNKNOWN) {
			o->complete = below(&r, 2) ? HISTORY_OPEN : o->complete;
			free_at[c] = o->invoke + below(&r, cfg->jitter + 1);
		} else {
			free_at[c] = o->complete;
		}
	}
	return cfg->ops;
}

static void gen_build(const struct gen_op *ops, size_t n, struct history *h)
{
	history_init(h);
	for (size_t i = 0; i < n; i++) {
		const struct gen_op *g = &ops[i];
		char key[16], value[16], read[16];
		struct history_op op = {
			.client = g->client,
			.op_id = g->op_id,
			.invoke = g->invoke,
			.complete = g->complete,
			.outcome = g->outcome,
			.type = g->type,
			.expected_version = g->expected,
		};

		snprintf(key, sizeof(key), "k%d", g->key);
		snprintf(value, sizeof(value), "v%d", g->value);
		snprintf(read, sizeof(read), "v%d", g->read);
		op.key = (struct history_bytes){(const uint8_t *)key, strlen(key)};
		op.value = (struct history_bytes){(const uint8_t *)value, strlen(value)};
		op.result.version_known = g->version_known;
		op.result.cas_ok = g->cas_ok;
		op.result.version = g->version;
		op.result.found = g->read != 0;
		op.result.value = (struct history_bytes){(const uint8_t *)read, strlen(read)};
		assert_int_equal(history_add(h, &op), 0);
	}
}

static enum lincheck_verdict gen_check_opt(const struct gen_op *ops, size_t n, uint64_t max_states,
					   bool no_reductions, uint64_t *states)
{
	struct lincheck_options opt = {.max_states_per_key = max_states,
				       .no_reductions = no_reductions};
	struct lincheck_result res;
	struct history h;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	enum lincheck_verdict v;

	gen_build(ops, n, &h);
	if (lincheck_check(&h, &opt, &res, errbuf) != 0)
		fail_msg("lincheck_check: %s", errbuf);
	v = res.verdict;
	if (states != NULL)
		*states = res.states;
	lincheck_result_free(&res);
	history_free(&h);
	return v;
}

static enum lincheck_verdict gen_check(const struct gen_op *ops, size_t n, uint64_t max_states,
				       uint64_t *states)
{
	return gen_check_opt(ops, n, max_states, false, states);
}

/* May w have written value x (> 0) to key? */
static bool may_write(const struct gen_op *w, int key, int x)
{
	if (w->key != key || w->outcome == HISTORY_FAIL)
		return false;
	if (w->type == HISTORY_SET)
		return w->value == x;
	if (w->type == HISTORY_CAS)
		return w->value == x && (w->outcome == HISTORY_UNKNOWN || w->cas_ok);
	return x == 0 && w->type == HISTORY_DEL;
}

/* Did w2 certainly take effect, leaving the key other than x (0: absent)? */
static bool overwrites(const struct gen_op *w2, int key, int x)
{
	if (w2->key != key || w2->outcome != HISTORY_OK)
		return false;
	if (w2->type == HISTORY_SET || (w2->type == HISTORY_CAS && w2->cas_ok))
		return w2->value != x;
	return w2->type == HISTORY_DEL && x != 0;
}

/* True if a GET r returning x is certainly not linearizable: every op that may have produced x
 * (and the initial state, for absent) completed before some certain overwrite of x that itself
 * completed before r was invoked. Then in any linearization the last write before r is not a
 * producer of x. */
static bool stale_is_certain(const struct gen_op *ops, size_t n, const struct gen_op *r, int x)
{
	bool any_source = false;

	if (x == 0) {
		/* The initial state is a source of "absent": something must have replaced it. */
		for (size_t i = 0; i < n && !any_source; i++)
			any_source = overwrites(&ops[i], r->key, 0) && ops[i].complete < r->invoke;
		if (!any_source)
			return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct gen_op *w = &ops[i];
		bool covered = false;

		if (!may_write(w, r->key, x))
			continue;
		any_source = true;
		if (w->outcome != HISTORY_OK)
			return false;
		for (size_t j = 0; j < n && !covered; j++)
			covered = overwrites(&ops[j], r->key, x) && w->complete < ops[j].invoke &&
				  ops[j].complete < r->invoke;
		if (!covered)
			return false;
	}
	return any_source;
}

/* Mutates one ok GET into a certain stale read. Returns false if none was found. */
static bool mutate_stale(struct gen_op *ops, size_t n, struct rng *rg)
{
	for (int attempt = 0; attempt < 200; attempt++) {
		struct gen_op *r = &ops[below(rg, n)];
		const struct gen_op *w = &ops[below(rg, n)];
		int x;

		if (r->type != HISTORY_GET || r->outcome != HISTORY_OK || w->key != r->key)
			continue;
		if (w->type == HISTORY_DEL)
			x = 0;
		else if (w->type == HISTORY_SET || w->type == HISTORY_CAS)
			x = w->value;
		else
			continue;
		if (x == r->read || !stale_is_certain(ops, n, r, x))
			continue;
		r->read = x;
		return true;
	}
	return false;
}

/* Mutates one ok GET with a known version so that it reads its value's only writer's value at
 * another version. */
static bool mutate_version(struct gen_op *ops, size_t n, struct rng *rg)
{
	for (int attempt = 0; attempt < 200; attempt++) {
		struct gen_op *r = &ops[below(rg, n)];
		const struct gen_op *src = NULL;
		int writers = 0;

		if (r->type != HISTORY_GET || r->outcome != HISTORY_OK || !r->version_known ||
		    r->read == 0)
			continue;
		for (size_t i = 0; i < n; i++)
			if (may_write(&ops[i], r->key, r->read)) {
				writers++;
				src = &ops[i];
			}
		if (writers != 1 || src->outcome != HISTORY_OK || !src->version_known)
			continue;
		assert_int_equal(r->version, src->version);
		r->version = src->version + 1 + below(rg, 3);
		return true;
	}
	return false;
}

static const struct gen_cfg random_cfgs[] = {
	/* ops clients keys step jitter unknown fail noversion abd pool */
	{200, 4, 1, 5, 20, 0, 0, 0, false, 0},	{200, 8, 2, 3, 40, 5, 5, 10, false, 0},
	{200, 8, 1, 2, 30, 10, 5, 0, false, 3}, {200, 6, 3, 4, 40, 8, 4, 0, true, 0},
	{200, 5, 1, 3, 25, 5, 5, 0, true, 2},	{300, 10, 4, 2, 60, 15, 5, 30, false, 0},
};

static void test_random_linearizable(void **state)
{
	static struct gen_op ops[400];
	uint64_t states = 0, total = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(random_cfgs) / sizeof(random_cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 150; seed++) {
			size_t n = gen_history(&random_cfgs[c], seed * 1000 + c, ops);
			enum lincheck_verdict v = gen_check(ops, n, 0, &states);

			if (v != LINCHECK_OK)
				fail_msg("config %zu seed %" PRIu64 ": %s", c, seed,
					 lincheck_verdict_name(v));
			total += states;
		}
	}
	printf("random linearizable histories: %" PRIu64 " states in all\n", total);
}

static void test_random_mutations_caught(void **state)
{
	static struct gen_op ops[400];
	size_t stale = 0, version = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(random_cfgs) / sizeof(random_cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 150; seed++) {
			struct rng rg = {seed * 7919 + c};
			size_t n = gen_history(&random_cfgs[c], seed * 1000 + c, ops);

			if (mutate_stale(ops, n, &rg)) {
				enum lincheck_verdict v = gen_check(ops, n, 0, NULL);

				if (v != LINCHECK_VIOLATION)
					fail_msg("stale read missed: config %zu seed %" PRIu64
						 ": %s",
						 c, seed, lincheck_verdict_name(v));
				stale++;
			}
			n = gen_history(&random_cfgs[c], seed * 1000 + c, ops);
			if (mutate_version(ops, n, &rg)) {
				enum lincheck_verdict v = gen_check(ops, n, 0, NULL);

				if (v != LINCHECK_VIOLATION)
					fail_msg("version missed: config %zu seed %" PRIu64 ": %s",
						 c, seed, lincheck_verdict_name(v));
				version++;
			}
		}
	}
	printf("caught %zu stale reads and %zu wrong versions\n", stale, version);
	/* The negative controls must actually run. */
	assert_true(stale > 500);
	assert_true(version > 200);
}

/* A read of a value nobody wrote, in every random history. */
static void test_random_phantom_value_caught(void **state)
{
	static struct gen_op ops[400];
	size_t caught = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(random_cfgs) / sizeof(random_cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 40; seed++) {
			size_t n = gen_history(&random_cfgs[c], seed * 1000 + c, ops);

			for (size_t i = 0; i < n; i++) {
				if (ops[i].type == HISTORY_GET && ops[i].outcome == HISTORY_OK) {
					ops[i].read = 1000000;
					assert_int_equal(gen_check(ops, n, 0, NULL),
							 LINCHECK_VIOLATION);
					caught++;
					break;
				}
			}
		}
	}
	assert_true(caught > 200);
}

static enum lincheck_verdict gen_monotonic(const struct gen_op *ops, size_t n)
{
	struct lincheck_result res;
	struct history h;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	enum lincheck_verdict v;

	gen_build(ops, n, &h);
	if (lincheck_monotonic_reads(&h, &res, errbuf) != 0)
		fail_msg("lincheck_monotonic_reads: %s", errbuf);
	v = res.verdict;
	lincheck_result_free(&res);
	history_free(&h);
	return v;
}

/* The only op that may have written x to key, or NULL. */
static const struct gen_op *only_writer(const struct gen_op *ops, size_t n, int key, int x)
{
	const struct gen_op *w = NULL;

	for (size_t i = 0; i < n; i++) {
		if (!may_write(&ops[i], key, x))
			continue;
		if (w != NULL)
			return NULL;
		w = &ops[i];
	}
	return w;
}

/* Linearizable histories have monotonic reads; and a client's later read turned into a read of
 * a write that completed before the write its earlier read saw was invoked must be caught. */
static void test_random_monotonic_reads(void **state)
{
	static struct gen_op ops[400];
	size_t caught = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(random_cfgs) / sizeof(random_cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 100; seed++) {
			size_t n = gen_history(&random_cfgs[c], seed * 1000 + c, ops);
			struct rng rg = {seed * 31 + c};
			bool done = false;

			assert_int_equal(gen_monotonic(ops, n), LINCHECK_OK);
			for (size_t a = 0; a < n && !done; a++) {
				struct gen_op *r2 = &ops[(a + below(&rg, n)) % n];

				if (r2->type != HISTORY_GET || r2->outcome != HISTORY_OK)
					continue;
				for (size_t i = 0; i < n && !done && &ops[i] < r2; i++) {
					const struct gen_op *r1 = &ops[i], *w2;

					if (r1->client != r2->client || r1->key != r2->key ||
					    r1->type != HISTORY_GET || r1->outcome != HISTORY_OK ||
					    r1->read == 0)
						continue;
					w2 = only_writer(ops, n, r1->key, r1->read);
					for (size_t k = 0; w2 != NULL && k < n && !done; k++) {
						const struct gen_op *w1 = &ops[k];

						if (w1->type != HISTORY_SET || w1->key != r1->key ||
						    w1->outcome != HISTORY_OK ||
						    w1->complete >= w2->invoke ||
						    only_writer(ops, n, r1->key, w1->value) != w1)
							continue;
						r2->read = w1->value;
						r2->version = w1->version;
						done = true;
					}
				}
			}
			if (done) {
				assert_int_equal(gen_monotonic(ops, n), LINCHECK_VIOLATION);
				caught++;
			}
		}
	}
	printf("monotonic reads: caught %zu reads going backwards\n", caught);
	assert_true(caught > 300);
}

/* Brute force: every order of the ops (placing unknown writes anywhere after their invocation,
 * or nowhere), with the model written out again here, independently of lincheck.c. */
struct bf_state {
	int value;
	uint64_t version;
};

static bool bf_step(const struct gen_op *o, struct bf_state *s)
{
	bool ok = o->outcome == HISTORY_OK;

	switch (o->type) {
	case HISTORY_GET:
		return s->value == o->read && (!o->version_known || s->version == o->version);
	case HISTORY_SET:
	case HISTORY_DEL:
		if (ok && o->version_known && o->version != s->version + 1)
			return false;
		s->value = o->type == HISTORY_SET ? o->value : 0;
		s->version++;
		return true;
	case HISTORY_CAS:
		if (!ok || o->cas_ok) {
			if (s->version != o->expected)
				return !ok; /* an unknown CAS may take place without effect */
			if (ok && o->version != s->version + 1)
				return false;
			s->value = o->value;
			s->version++;
			return true;
		}
		return s->version != o->expected && s->version == o->version;
	}
	return false;
}

static bool bf_search(const struct gen_op *ops, size_t n, uint32_t placed, struct bf_state s)
{
	bool done = true;

	for (size_t i = 0; i < n; i++)
		if (!(placed & (1u << i)) && ops[i].outcome == HISTORY_OK)
			done = false;
	if (done)
		return true;
	for (size_t i = 0; i < n; i++) {
		struct bf_state t = s;
		bool blocked = false;

		if (placed & (1u << i))
			continue;
		for (size_t j = 0; j < n && !blocked; j++)
			blocked = j != i && !(placed & (1u << j)) && ops[j].outcome == HISTORY_OK &&
				  ops[j].complete < ops[i].invoke;
		if (!blocked && bf_step(&ops[i], &t) && bf_search(ops, n, placed | (1u << i), t))
			return true;
	}
	return false;
}

static bool bf_linearizable(const struct gen_op *ops, size_t n)
{
	uint32_t placed = 0;

	/* Failed ops and unknown reads never happened, as far as the model is concerned. */
	for (size_t i = 0; i < n; i++)
		if (ops[i].outcome == HISTORY_FAIL ||
		    (ops[i].outcome == HISTORY_UNKNOWN && ops[i].type == HISTORY_GET))
			placed |= 1u << i;
	return bf_search(ops, n, placed, (struct bf_state){0, 0});
}

static void test_random_small_vs_brute_force(void **state)
{
	static const struct gen_cfg cfgs[] = {
		{7, 4, 1, 2, 12, 20, 10, 20, false, 2},
		{7, 7, 1, 1, 20, 30, 0, 0, false, 0},
		{7, 3, 1, 3, 10, 25, 10, 0, true, 2},
		{6, 6, 1, 1, 15, 40, 0, 50, false, 3},
	};
	struct gen_op ops[8];
	size_t yes = 0, no = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 1500; seed++) {
			struct rng rg = {seed ^ (c << 32)};
			size_t n = gen_history(&cfgs[c], seed * 31 + c, ops);
			struct gen_op *o = &ops[below(&rg, n)];
			bool expect;

			/* Four times in five, disturb one op's result. */
			switch (below(&rg, 5)) {
			case 0:
				o->read = (int)below(&rg, 4);
				break;
			case 1:
				if (o->version > 0 && below(&rg, 2))
					o->version--;
				else
					o->version++;
				break;
			case 2:
				o->cas_ok = !o->cas_ok;
				break;
			case 3:
				if (o->outcome == HISTORY_OK)
					o->outcome = below(&rg, 2) ? HISTORY_FAIL : HISTORY_UNKNOWN;
				else
					o->read = (int)below(&rg, 4);
				break;
			}
			expect = bf_linearizable(ops, n);
			if ((gen_check(ops, n, 0, NULL) == LINCHECK_OK) != expect) {
				struct history h;

				gen_build(ops, n, &h);
				history_write(&h, stdout, NULL);
				history_free(&h);
				fail_msg("config %zu seed %" PRIu64 ": brute force says %d", c,
					 seed, expect);
			}
			*(expect ? &yes : &no) += 1;
		}
	}
	printf("brute force agreed on %zu linearizable and %zu not\n", yes, no);
	assert_true(yes > 1000);
	assert_true(no > 500);
}

/* The reductions of lincheck.c against the plain search, on histories too long for the brute
 * force, with many unknown outcomes, disturbed as above. */
static void test_random_reductions_vs_plain_search(void **state)
{
	static const struct gen_cfg cfgs[] = {
		{50, 5, 1, 2, 15, 30, 5, 10, false, 0}, {50, 6, 1, 2, 20, 40, 5, 0, false, 2},
		{50, 5, 1, 2, 15, 30, 5, 0, true, 0},	{50, 5, 1, 2, 15, 30, 0, 0, true, 2},
		{40, 8, 1, 1, 25, 50, 0, 30, false, 3},
	};
	struct gen_op ops[50];
	size_t yes = 0, no = 0, skipped = 0;
	(void)state;

	for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
		for (uint64_t seed = 1; seed <= 400; seed++) {
			struct rng rg = {seed * 131 + c};
			size_t n = gen_history(&cfgs[c], seed * 17 + c, ops);
			enum lincheck_verdict fast, plain;

			/* Up to two disturbed results. */
			for (uint64_t d = below(&rg, 3); d > 0; d--) {
				struct gen_op *o = &ops[below(&rg, n)];

				/* Prefer results that are checked: ok GETs and CAS. */
				for (int tries = 0; tries < 8 && (o->outcome != HISTORY_OK ||
								  o->type == HISTORY_SET ||
								  o->type == HISTORY_DEL);
				     tries++)
					o = &ops[below(&rg, n)];

				switch (below(&rg, 3)) {
				case 0:
					o->read = (int)below(&rg, 4);
					break;
				case 1:
					if (o->version > 0 && below(&rg, 2))
						o->version--;
					else
						o->version++;
					break;
				case 2:
					o->cas_ok = !o->cas_ok;
					break;
				}
			}
			fast = gen_check(ops, n, 0, NULL);
			plain = gen_check_opt(ops, n, 200000, true, NULL);
			if (plain == LINCHECK_UNKNOWN) {
				skipped++;
				continue;
			}
			if (fast != plain)
				fail_msg("config %zu seed %" PRIu64
					 ": %s with reductions, %s without",
					 c, seed, lincheck_verdict_name(fast),
					 lincheck_verdict_name(plain));
			*(plain == LINCHECK_OK ? &yes : &no) += 1;
		}
	}
	printf("reductions agreed on %zu linearizable and %zu not (%zu too big unreduced)\n", yes,
	       no, skipped);
	assert_true(yes > 500);
	assert_true(no > 400);
	assert_true(skipped < 50);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a timed test: prints how long a 5,000-op, 8-client single-key history takes. */
static void test_bench_5000_ops(void **state)
{
	static struct gen_op ops[5000];
	static const struct {
		const char *name;
		struct gen_cfg cfg;
	} benches[] = {
		{"versions", {5000, 8, 1, 3, 40, 0, 0, 0, false, 0}},
		{"versions, 5% unknown, 5% fail", {5000, 8, 1, 3, 40, 5, 5, 0, false, 0}},
		{"abd (no versions), 5% unknown", {5000, 8, 1, 3, 40, 5, 0, 0, true, 0}},
		{"3 shared values, 2% unknown", {5000, 8, 1, 3, 40, 2, 0, 0, false, 3}},
	};
	(void)state;

	for (size_t b = 0; b < sizeof(benches) / sizeof(benches[0]); b++) {
		size_t n = gen_history(&benches[b].cfg, 42 + b, ops);
		uint64_t states;
		double t0 = now_seconds(), dt;
		enum lincheck_verdict v = gen_check(ops, n, 0, &states);

		dt = now_seconds() - t0;
		printf("bench: 5000 ops, 8 clients, 1 key, %s: %.3f s, %" PRIu64 " states\n",
		       benches[b].name, dt, states);
		assert_int_equal(v, LINCHECK_OK);
	}
	{
		struct rng rg = {99};
		size_t n = gen_history(&benches[0].cfg, 42, ops);
		double t0;
		uint64_t states;
		enum lincheck_verdict v;

		assert_true(mutate_stale(ops, n, &rg));
		t0 = now_seconds();
		v = gen_check(ops, n, 0, &states);
		printf("bench: the same with one stale read: %.3f s, %" PRIu64 " states\n",
		       now_seconds() - t0, states);
		assert_int_equal(v, LINCHECK_VIOLATION);
	}
}

/* ---- The file format ---- */

static void test_round_trip(void **state)
{
	struct history h, back;
	struct history_str s = {0};
	uint8_t all[256];
	struct history_op op = {.client = UINT64_MAX, .op_id = 0, .invoke = 0, .complete = 1};
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	static const char *const tricky[] = {"->", "-",	     "?",   "\"", "%",
					     "#",  "absent", "a b", "\t", "\r\n"};
	(void)state;

	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	history_init(&h);
	op.type = HISTORY_SET;
	op.outcome = HISTORY_OK;
	op.key = (struct history_bytes){all, 256};
	op.value = (struct history_bytes){NULL, 0};
	op.result = (struct history_result){.version_known = true, .version = UINT64_MAX};
	assert_int_equal(history_add(&h, &op), 0);
	for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
		struct history_bytes b = {(const uint8_t *)tricky[i], strlen(tricky[i])};

		op = (struct history_op){
			.client = 2, .op_id = i, .invoke = 10 * i, .complete = 10 * i + 5};
		op.type = (enum history_type)(i % 4);
		op.outcome = (enum history_outcome)(i % 3);
		if (op.outcome == HISTORY_UNKNOWN && i % 2)
			op.complete = HISTORY_OPEN;
		op.key = b;
		op.value = b;
		op.expected_version = i;
		op.result =
			(struct history_result){.version_known = op.type == HISTORY_CAS || i % 2,
						.found = i % 3 != 2,
						.cas_ok = i % 2,
						.value = b,
						.version = 7};
		assert_int_equal(history_add(&h, &op), 0);
	}
	assert_int_equal(history_format(&h, &s), 0);
	history_init(&back);
	if (history_parse(&back, s.data, s.len, errbuf) != 0)
		fail_msg("%s\n%s", errbuf, s.data);
	assert_int_equal(back.n, h.n);
	for (size_t i = 0; i < h.n; i++)
		assert_true(history_op_equal(&h.ops[i], &back.ops[i]));
	/* Formatting the parsed history gives the same text. */
	{
		struct history_str s2 = {0};

		assert_int_equal(history_format(&back, &s2), 0);
		assert_int_equal(s2.len, s.len);
		assert_memory_equal(s2.data, s.data, s.len);
		history_str_free(&s2);
	}
	/* The parser accepts lower-case escapes, tabs, CRLF and extra blanks. */
	history_free(&back);
	parse_ok(&back, "  # comment\r\n\t1\t1  0 5 ok GET %6b -> value %7e%7E 3\r\n\n");
	assert_int_equal(back.n, 1);
	assert_memory_equal(back.ops[0].key.data, "k", 1);
	assert_int_equal(back.ops[0].result.value.len, 2);
	assert_memory_equal(back.ops[0].result.value.data, "~~", 2);
	history_str_free(&s);
	history_free(&back);
	history_free(&h);
}

static void test_parse_rejects(void **state)
{
	static const struct {
		const char *text;
		const char *reason; /* the message contains it */
	} bad[] = {
		{"x 1 0 1 ok GET k -> absent 0", "line 1: expected a client id"},
		{"1 y 0 1 ok GET k -> absent 0", "expected an op id"},
		{"1 1 -3 1 ok GET k -> absent 0", "expected an invocation time"},
		{"1 1 0 1x ok GET k -> absent 0", "expected a completion time"},
		{"1 1 0 - ok GET k -> absent 0", "only an unknown outcome may lack"},
		{"1 1 0 - fail GET k", "only an unknown outcome may lack"},
		{"1 1 5 4 ok GET k -> absent 0", "completes before it is invoked"},
		{"1 1 0 18446744073709551615 ok GET k -> absent 0", "completion time too large"},
		{"1 1 18446744073709551616 1 ok GET k -> absent 0", "does not fit in 64 bits"},
		{"1 1 0 1 maybe GET k -> absent 0", "expected outcome ok, fail or unknown"},
		{"1 1 0 1 ok PUT k -> absent 0", "expected op GET, SET, CAS or DEL"},
		{"1 1 0 1 ok get k -> absent 0", "expected op GET"},
		{"1 1 0 1 ok GET", "too few fields"},
		{"1 1 0 1 fail SET k", "SET needs a value"},
		{"1 1 0 1 fail CAS k 1", "CAS needs a version and a value"},
		{"1 1 0 1 fail CAS k x v", "expected an expected version"},
		{"1 1 0 1 ok GET k%G1 -> absent 0", "bad percent escape in the key"},
		{"1 1 0 1 ok GET k%4 -> absent 0", "bad percent escape in the key"},
		{"1 1 0 1 ok GET k% -> absent 0", "bad percent escape in the key"},
		{"1 1 0 1 fail SET k a\"b", "the value has a byte that must be percent-encoded"},
		{"1 1 0 1 fail SET k \xc3\xa9", "the value has a byte that must be"},
		{"1 1 0 1 fail SET k a\x01", "the value has a byte"},
		{"1 1 0 1 ok GET k", "an ok op needs '-> result'"},
		{"1 1 0 1 fail GET k -> absent 0", "only an ok op has a result"},
		{"1 1 0 - unknown SET k v -> 1", "only an ok op has a result"},
		{"1 1 0 1 ok GET k => absent 0", "expected '->' or the end of the line"},
		{"1 1 0 1 ok GET k -> present 0", "GET result must be"},
		{"1 1 0 1 ok GET k ->", "GET result must be"},
		{"1 1 0 1 ok GET k -> value x", "GET result must be 'value BYTES VERSION'"},
		{"1 1 0 1 ok GET k -> absent", "GET result must be 'absent VERSION'"},
		{"1 1 0 1 ok GET k -> absent 0 0", "GET result must be 'absent VERSION'"},
		{"1 1 0 1 ok GET k -> value %zz 1", "bad percent escape in the value read"},
		{"1 1 0 1 ok GET k -> absent -1", "expected a version or '?'"},
		{"1 1 0 1 ok SET k v -> a", "expected a version or '?'"},
		{"1 1 0 1 ok SET k v -> 1 2", "SET and DEL results are one version"},
		{"1 1 0 1 ok DEL k ->", "SET and DEL results are one version"},
		{"1 1 0 1 ok CAS k 0 v -> ok ?", "a CAS result needs a version"},
		{"1 1 0 1 ok CAS k 0 v -> maybe 1", "CAS result must be"},
		{"1 1 0 1 ok CAS k 0 v -> ok", "CAS result must be"},
		{"1 1 0 1 ok CAS k 0 v -> ok 1 x", "CAS result must be"},
		{"1 1 0 1 ok SET k v -> 1 2 3 4 5 6 7 8 9 10 11", "too many fields"},
		{"# header\n\n1 1 0 1 ok SET k v -> 1\n1 2 2 3 ok GET k\n",
		 "line 4: an ok op needs"},
		{"1 1 0 10 ok SET k v -> 1\n1 1 20 30 ok GET k -> absent 0\n",
		 "line 1 and line 2: client 1 uses op id 1 twice"},
		{"1 1 0 10 ok SET k v -> 1\n1 2 5 30 ok GET k -> absent 0\n",
		 "line 1 and line 2: client 1 has two ops outstanding"},
		{"1 1 0 10 fail SET k v\n1 2 5 30 ok GET k -> absent 0\n",
		 "client 1 has two ops outstanding"},
	};
	char errbuf[TEEMS_ERRBUF_LEN];
	struct history h;
	(void)state;

	parse_ok(&h, "9 1 0 1 ok SET k v -> 1\n");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errbuf[0] = 0;
		if (history_parse(&h, bad[i].text, strlen(bad[i].text), errbuf) != TEEMS_ECORRUPT)
			fail_msg("accepted: %s", bad[i].text);
		if (strstr(errbuf, bad[i].reason) == NULL)
			fail_msg("%s\n  says: %s\n  want: %s", bad[i].text, errbuf, bad[i].reason);
		if (strncmp(errbuf, "line ", 5) != 0)
			fail_msg("no line number: %s", errbuf);
		/* The history is left as it was. */
		assert_int_equal(h.n, 1);
	}
	/* An unknown op may stay open while its client goes on; a NUL byte is refused. */
	{
		const char *t = "2 1 0 - unknown SET k v\n2 2 5 30 ok GET k -> absent 0";

		assert_int_equal(history_parse(&h, t, strlen(t), errbuf), 0);
	}
	assert_int_equal(h.n, 3);
	assert_int_equal(history_parse(&h, "3 1 0 1 ok GET k\0 -> absent 0\n", 30, errbuf),
			 TEEMS_ECORRUPT);
	assert_non_null(strstr(errbuf, "line 1: NUL byte"));
	assert_int_equal(h.n, 3);
	/* (client, op id) must be unique across calls too. */
	assert_int_equal(history_parse(&h, "9 1 50 60 ok GET k -> absent 0", 30, errbuf),
			 TEEMS_ECORRUPT);
	assert_non_null(strstr(errbuf, "uses op id 1 twice"));
	assert_int_equal(h.n, 3);
	history_free(&h);
}

static void read_file(const char *path, char **text, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	*text = malloc((size_t)n + 1);
	assert_non_null(*text);
	assert_int_equal(fread(*text, 1, (size_t)n, f), (size_t)n);
	(*text)[n] = 0;
	*len = (size_t)n;
	fclose(f);
}

/* The files teems-check runs on in ctest (lincheck_cli_*) are exactly what the writer writes. */
static void test_data_files_are_writer_output(void **state)
{
	static const char *const files[] = {"good.hist", "bad.hist", "bad_monotonic.hist"};
	static const enum lincheck_verdict expect[] = {LINCHECK_OK, LINCHECK_VIOLATION,
						       LINCHECK_VIOLATION};
	(void)state;

	for (size_t i = 0; i < 3; i++) {
		char path[512], errbuf[TEEMS_ERRBUF_LEN] = "", *text;
		struct history h;
		struct history_str s = {0};
		size_t len;

		snprintf(path, sizeof(path), "%s/%s", TEEMS_SIM_DATA_DIR, files[i]);
		read_file(path, &text, &len);
		history_init(&h);
		if (history_read_file(&h, path, errbuf) != 0)
			fail_msg("%s", errbuf);
		assert_int_equal(history_format(&h, &s), 0);
		if (s.len != len || memcmp(s.data, text, len) != 0)
			fail_msg("%s is not the writer's output; the writer says:\n%s", path,
				 s.data);
		assert_int_equal(check_text(text), expect[i]);
		history_str_free(&s);
		history_free(&h);
		free(text);
	}
	{
		struct history h;
		char errbuf[TEEMS_ERRBUF_LEN];

		history_init(&h);
		assert_int_equal(history_read_file(&h, TEEMS_SIM_DATA_DIR "/none.hist", errbuf),
				 TEEMS_ENOTFOUND);
	}
}

static void test_write_file(void **state)
{
	char path[] = "/tmp/test_lincheck_XXXXXX", errbuf[TEEMS_ERRBUF_LEN];
	struct history h, back;
	static struct gen_op ops[200];
	int fd = mkstemp(path);
	(void)state;

	assert_true(fd >= 0);
	gen_build(ops, gen_history(&random_cfgs[1], 5, ops), &h);
	assert_int_equal(history_write_file(&h, path, errbuf), 0);
	history_init(&back);
	assert_int_equal(history_read_file(&back, path, errbuf), 0);
	assert_int_equal(back.n, h.n);
	for (size_t i = 0; i < h.n; i++)
		assert_true(history_op_equal(&h.ops[i], &back.ops[i]));
	unlink(path);
	close(fd);
	history_free(&back);
	history_free(&h);
}

/* ---- Allocation failures ---- */

static void test_alloc_failures(void **state)
{
	static struct gen_op ops[200];
	struct gen_cfg cfg = random_cfgs[1];
	struct history h, parsed;
	struct history_str text = {0};
	struct rng rg = {3};
	size_t n, failures = 0;
	(void)state;

	cfg.ops = 120;
	n = gen_history(&cfg, 77, ops);
	assert_true(mutate_stale(ops, n, &rg)); /* so that the explanation is written too */
	gen_build(ops, n, &h);
	assert_int_equal(history_format(&h, &text), 0);

	for (int repeat = 0; repeat < 2; repeat++) {
		for (long i = 0;; i++) {
			struct lincheck_result res, mono;
			char errbuf[TEEMS_ERRBUF_LEN];
			int a, b, c;

			history_init(&parsed);
			teems_alloc_fault(i, repeat);
			a = lincheck_check(&h, NULL, &res, errbuf);
			b = lincheck_monotonic_reads(&h, &mono, errbuf);
			c = history_parse(&parsed, text.data, text.len, errbuf);
			teems_alloc_fault(-1, 0);
			assert_true(a == 0 || a == TEEMS_ENOMEM);
			assert_true(b == 0 || b == TEEMS_ENOMEM);
			assert_true(c == 0 || c == TEEMS_ENOMEM);
			if (a == TEEMS_ENOMEM) {
				assert_null(res.explanation);
				assert_null(res.key.data);
			} else {
				assert_int_equal(res.verdict, LINCHECK_VIOLATION);
			}
			if (c == TEEMS_ENOMEM)
				assert_int_equal(parsed.n, 0);
			else
				assert_int_equal(parsed.n, h.n);
			failures += (a != 0) + (b != 0) + (c != 0);
			lincheck_result_free(&res);
			lincheck_result_free(&mono);
			history_free(&parsed);
			if (a == 0 && b == 0 && c == 0)
				break;
		}
	}
	assert_true(failures > 10);
	history_str_free(&text);
	history_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_stale_read_after_completed_write),
		cmocka_unit_test(test_concurrent_read_sees_either),
		cmocka_unit_test(test_cas),
		cmocka_unit_test(test_unknown_outcomes),
		cmocka_unit_test(test_value_nobody_wrote),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_keys_are_independent),
		cmocka_unit_test(test_explanation),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_invalid_history_is_refused),
		cmocka_unit_test(test_record_api),
		cmocka_unit_test(test_monotonic_reads),
		cmocka_unit_test(test_random_linearizable),
		cmocka_unit_test(test_random_mutations_caught),
		cmocka_unit_test(test_random_phantom_value_caught),
		cmocka_unit_test(test_random_monotonic_reads),
		cmocka_unit_test(test_random_small_vs_brute_force),
		cmocka_unit_test(test_random_reductions_vs_plain_search),
		cmocka_unit_test(test_bench_5000_ops),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_data_files_are_writer_output),
		cmocka_unit_test(test_write_file),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
