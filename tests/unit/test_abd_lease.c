/* The configuration lease of ABD coordinators (src/core/abd_lease.h): SCENARIOS.md S15 as a
 * scripted schedule on five replicas, with the RR-ABD cores of the in-test network
 * (abd_harness.h) as the data plane and the lease messages passed through the codec by hand;
 * its negative control (grantors that ignore the index); and the glue's rules one by one:
 * fenced grantors, the discard rule for grants, nonces, a new applied index, taints, renewal
 * timing, index encoding, configuration errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "abd_harness.h"
#include "core/abd_lease.h"
#include "teems/err.h"

#define N 5
#define T_CFG (300 * H_MS)
#define RHO_PPM 10000u
#define T_OP (500 * H_MS) /* the harness's abd_config_default */

struct lnet {
	struct abd_lease l[N];
	unsigned unsafe;
};

/* Node i's clock as the harness gives it to the ABD core (abd_harness.c node_time). */
static struct lease_time now_of(const struct h_cluster *c, int i)
{
	struct lease_time t;

	t.lo_ns = c->now + c->nodes[i].clock_off;
	t.hi_ns = t.lo_ns + 10;
	t.epoch = c->nodes[i].epoch;
	return t;
}

static void lnet_init(struct lnet *ln, struct h_cluster *c, unsigned grantor_unsafe)
{
	char err[TEEMS_ERRBUF_LEN];

	memset(ln, 0, sizeof(*ln));
	for (int i = 0; i < N; i++) {
		struct abd_lease_config cfg;
		struct msg_incarnation self = {(uint16_t)i, {0, 0}};

		memset(&cfg, 0, sizeof(cfg));
		cfg.self = (uint16_t)i;
		cfg.n = N;
		cfg.w_q = quorum_write(&c->q);
		cfg.t_cfg_ns = T_CFG;
		cfg.rho_ppm = RHO_PPM;
		cfg.nonce_key = 0x1234567800000000ull * (uint64_t)(i + 1);
		cfg.unsafe = grantor_unsafe;
		assert_int_equal(abd_lease_init(&ln->l[i], &cfg, err), TEEMS_OK);
		abd_lease_configure(&ln->l[i], 0, 0, self, NULL, 0, false);
	}
}

/* The frame as the peer decodes it. */
static void wire(const struct msg *in, struct msg *out, uint8_t *buf, size_t cap)
{
	size_t len = 0;

	assert_int_equal(msg_encode(in, buf, cap, &len), TEEMS_OK);
	assert_int_equal(msg_decode(buf, len, out), TEEMS_OK);
}

/* Node i renews; the peers in `mask` answer at once; node i's ABD core gets the result. */
static void renew(struct lnet *ln, struct h_cluster *c, int i, unsigned mask)
{
	struct msg m, rx, reply, back;
	uint8_t b1[256], b2[256];

	abd_lease_renew(&ln->l[i], now_of(c, i), &m);
	for (int j = 0; j < N; j++) {
		if (j == i || !(mask & (1u << j)))
			continue;
		wire(&m, &rx, b1, sizeof(b1));
		if (!abd_lease_on_renew(&ln->l[j], &rx, &reply))
			continue;
		wire(&reply, &back, b2, sizeof(b2));
		(void)abd_lease_on_reply(&ln->l[i], &back, now_of(c, i));
	}
	abd_set_lease(c->nodes[i].a, abd_lease_valid_until(&ln->l[i], now_of(c, i)));
}

static void configure(struct lnet *ln, int i, uint64_t applied, uint64_t accepted, bool fenced)
{
	struct msg_incarnation self = {(uint16_t)i, {0, 0}};

	abd_lease_configure(&ln->l[i], applied, accepted, self, NULL, 0, fenced);
}

/* S15, N = 5: coordinator A (node 0, the deposed leader) holds its configuration lease. A
 * configuration entry j (a revocation) is accepted by W_Q = 3 replicas {1, 2, 3} and commits
 * at tc; A does not learn it. A keeps renewing every T_cfg / 3 and keeps writing. The grantors
 * that accepted j refuse, so A cannot gather W_Q grants again; the revocation is acknowledged
 * T_cfg (1 + rho) after it committed, on the committer's lo. Returns how many of A's writes
 * were acknowledged at or after that acknowledgement (0 is the rule). */
static unsigned s15(unsigned grantor_unsafe, uint64_t *refused_stale, uint64_t *ok_writes)
{
	struct h_cluster c;
	struct lnet ln;
	const uint64_t j = abd_lease_index((struct msg_regidx){0, 7});
	uint64_t tc, acked_at, next_renew, ids[64];
	unsigned n_ids = 0, late = 0;

	h_init(&c, N, 2, 2, 15, ABD_SYNC_RR, 0);
	lnet_init(&ln, &c, grantor_unsafe);
	for (int i = 0; i < N; i++)
		abd_set_lease(c.nodes[i].a, 0); /* from now on only the lease module decides */
	/* A holds the lease and writes. */
	renew(&ln, &c, 0, 0x1e);
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > now_of(&c, 0).hi_ns);
	ids[n_ids++] = h_op(&c, 0, 1, ABD_SET, "k", "before");
	assert_true(h_run_until_done(&c, ids[0], 2 * T_OP));
	assert_int_equal(h_req(&c, ids[0])->outcome, ABD_OUTCOME_OK);
	/* A's last renewal that every replica grants, just before j is accepted. */
	h_run(&c, 50 * H_MS);
	renew(&ln, &c, 0, 0x1e);
	h_run(&c, 5 * H_MS);
	/* j is accepted by {1, 2, 3} and commits; they apply it. Replica 4 never hears of it. */
	for (int i = 1; i <= 3; i++)
		configure(&ln, i, 0, j, false);
	h_run(&c, 2 * H_MS);
	tc = c.now;
	for (int i = 1; i <= 3; i++)
		configure(&ln, i, j, j, false);
	acked_at = tc + lease_cfg_revoke_wait_ns(T_CFG, RHO_PPM);
	/* The deposed coordinator goes on: renewals every T_cfg / 3, a write every 20 ms. */
	next_renew = c.now;
	for (uint64_t t = 0; t < 3 * T_CFG; t += 20 * H_MS) {
		if (c.now >= next_renew) {
			renew(&ln, &c, 0, 0x1e);
			next_renew = c.now + T_CFG / 3;
		}
		if (n_ids < 64)
			ids[n_ids++] = h_op(&c, 0, 1, ABD_SET, "k", "during");
		h_run(&c, 20 * H_MS);
		abd_set_lease(c.nodes[0].a, abd_lease_valid_until(&ln.l[0], now_of(&c, 0)));
	}
	h_run(&c, 2 * T_OP);
	*ok_writes = 0;
	for (unsigned k = 1; k < n_ids; k++) {
		struct h_pending *p = h_req(&c, ids[k]);

		if (p->done && p->outcome == ABD_OUTCOME_OK) {
			(*ok_writes)++;
			if (c.hist.ops[p->hist].complete >= acked_at)
				late++;
		}
	}
	*refused_stale = ln.l[1].stats.refused_stale + ln.l[2].stats.refused_stale +
			 ln.l[3].stats.refused_stale;
	if (!grantor_unsafe) {
		/* Not valid any more; and after A applies j, it gets its lease back. */
		assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
		assert_true(ln.l[0].stats.refusals_seen >= 3);
		configure(&ln, 0, j, j, false);
		renew(&ln, &c, 0, 0x1e);
		assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
		ids[0] = h_op(&c, 0, 1, ABD_SET, "k", "after");
		assert_true(h_run_until_done(&c, ids[0], 2 * T_OP));
		assert_int_equal(h_req(&c, ids[0])->outcome, ABD_OUTCOME_OK);
	}
	assert_int_equal(h_check(&c, false), 0);
	h_free(&c);
	return late;
}

static void test_s15(void **state)
{
	uint64_t refused, ok;

	(void)state;
	assert_int_equal(s15(0, &refused, &ok), 0);
	print_message("S15: %llu writes acknowledged while A's last lease ran, none after the "
		      "revocation was; %llu renewals refused as stale\n",
		      (unsigned long long)ok, (unsigned long long)refused);
	assert_true(refused >= 3); /* each of {1, 2, 3} refused A at least once */
	assert_true(ok >= 1);	   /* A wrote while its last lease ran */
}

/* The negative control: grantors that ignore the index keep A's lease alive, and A's writes
 * are acknowledged long after the revocation was. */
static void test_s15_negative_no_index(void **state)
{
	uint64_t refused, ok;

	(void)state;
	unsigned late = s15(ABD_LEASE_UNSAFE_NO_INDEX, &refused, &ok);

	print_message("S15 without the index: %u of %llu writes acknowledged after the "
		      "revocation was\n",
		      late, (unsigned long long)ok);
	assert_true(late > 0);
	assert_int_equal(refused, 0);
}

static struct h_cluster *small(struct h_cluster *c, struct lnet *ln)
{
	h_init(c, N, 2, 2, 16, ABD_SYNC_RR, 0);
	lnet_init(ln, c, 0);
	return c;
}

/* A fenced grantor (restarted, suspicious, recovering, restart promised) grants nothing and
 * says so in its header; a grant that calls itself suspicious is not counted anyway. */
static void test_fenced(void **state)
{
	struct h_cluster c;
	struct lnet ln;
	struct msg m, reply;

	(void)state;
	small(&c, &ln);
	configure(&ln, 1, 0, 0, true);
	configure(&ln, 2, 0, 0, true);
	configure(&ln, 3, 0, 0, true);
	renew(&ln, &c, 0, 0x1e);
	/* self and 4: two of three */
	assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
	assert_int_equal(ln.l[1].stats.refused_fenced, 1);
	abd_lease_renew(&ln.l[0], now_of(&c, 0), &m);
	assert_true(abd_lease_on_renew(&ln.l[1], &m, &reply));
	assert_false(reply.lease_reply.granted);
	assert_true(reply.suspicious);
	/* forged: granted, but flagged suspicious */
	reply.lease_reply.granted = true;
	reply.lease_reply.config_index = 0;
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	/* the holder's own fenced grantor does not count itself either (new incarnations: what
	 * was counted above would still count, each grant for T_cfg from its request) */
	lnet_init(&ln, &c, 0);
	configure(&ln, 0, 0, 0, true);
	renew(&ln, &c, 0, 0x06); /* 1 and 2 grant: two, without self */
	assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
	renew(&ln, &c, 0, 0x1e); /* 1, 2, 4 */
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
	h_free(&c);
}

/* The discard rule for grants (DESIGN.md section 4): a grant from an incarnation that the
 * holder's configuration shows superseded is not counted. */
static void test_discard(void **state)
{
	struct h_cluster c;
	struct lnet ln;
	struct msg_incarnation regs[1] = {{2, {0, 9}}}, self = {0, {0, 0}};

	(void)state;
	small(&c, &ln);
	/* replica 2 is registered at (0, 9) in A's configuration; its grantor is still (0, 0) */
	abd_lease_configure(&ln.l[0], 9, 9, self, regs, 1, false);
	configure(&ln, 1, 9, 9, false);
	configure(&ln, 2, 9, 9, false);
	renew(&ln, &c, 0, 0x06);
	assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
	assert_int_equal(ln.l[0].stats.grants_ignored, 1);
	/* the new incarnation's grant counts */
	{
		struct msg m, reply;
		struct msg_incarnation s2 = {2, {0, 9}};

		abd_lease_configure(&ln.l[2], 9, 9, s2, NULL, 0, false);
		abd_lease_renew(&ln.l[0], now_of(&c, 0), &m);
		assert_true(abd_lease_on_renew(&ln.l[2], &m, &reply));
		assert_true(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
		assert_true(abd_lease_on_renew(&ln.l[1], &m, &reply));
		assert_true(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	}
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
	h_free(&c);
}

/* Grants must echo this incarnation's nonce and the index it asked for; replies from itself or
 * out of range, and a refusal, count nothing. */
static void test_nonce_and_index(void **state)
{
	struct h_cluster c;
	struct lnet ln;
	struct msg m, reply, r2;
	char err[TEEMS_ERRBUF_LEN];
	struct abd_lease_config cfg;

	(void)state;
	small(&c, &ln);
	abd_lease_renew(&ln.l[0], now_of(&c, 0), &m);
	assert_true(m.nonce != 0);
	assert_true(abd_lease_on_renew(&ln.l[1], &m, &reply));
	assert_true(reply.lease_reply.granted);
	assert_int_equal(reply.nonce, m.nonce);
	/* another incarnation of replica 0 (a new nonce key) does not count the old grant */
	cfg = ln.l[0].cfg;
	cfg.nonce_key = 0x5555;
	assert_int_equal(abd_lease_init(&ln.l[0], &cfg, err), TEEMS_OK);
	configure(&ln, 0, 0, 0, false);
	(void)abd_lease_renew(&ln.l[0], now_of(&c, 0), &r2);
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	/* a grant for another index */
	assert_true(abd_lease_on_renew(&ln.l[1], &r2, &reply));
	reply.lease_reply.config_index = 1;
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	/* from itself, out of range, the wrong type */
	reply.lease_reply.config_index = 0;
	reply.from.replica = 0;
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	reply.from.replica = N;
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	assert_false(abd_lease_on_renew(&ln.l[1], &reply, &r2));
	r2.from.replica = 1;
	assert_false(abd_lease_on_renew(&ln.l[1], &r2, &reply)); /* a renewal from itself */
	/* a refusal */
	reply.type = MSG_LEASE_REPLY;
	reply.from.replica = 1;
	reply.lease_reply.granted = false;
	assert_false(abd_lease_on_reply(&ln.l[0], &reply, now_of(&c, 0)));
	assert_int_equal(ln.l[0].stats.refusals_seen, 1);
	h_free(&c);
}

/* A new applied index drops the lease at once and makes a renewal due; the lease lapses on
 * its own after T_cfg (1 - rho) on hi; a taint drops it; renewals are due every renew_ns. */
static void test_lifecycle(void **state)
{
	struct h_cluster c;
	struct lnet ln;
	uint64_t until;
	struct lease_time t;

	(void)state;
	small(&c, &ln);
	assert_true(abd_lease_renew_due(&ln.l[0], now_of(&c, 0)));
	renew(&ln, &c, 0, 0x1e);
	t = now_of(&c, 0);
	until = abd_lease_valid_until(&ln.l[0], t);
	assert_int_equal(until, t.hi_ns + T_CFG - T_CFG / 100);
	assert_false(abd_lease_renew_due(&ln.l[0], t));
	t.hi_ns += T_CFG / 3;
	assert_true(abd_lease_renew_due(&ln.l[0], t));
	/* expiry: exclusive */
	t.hi_ns = until;
	assert_int_equal(abd_lease_valid_until(&ln.l[0], t), 0);
	t.hi_ns = until - 1;
	assert_int_equal(abd_lease_valid_until(&ln.l[0], t), until);
	/* taint */
	t.epoch++;
	assert_int_equal(abd_lease_valid_until(&ln.l[0], t), 0);
	/* a new applied index */
	renew(&ln, &c, 0, 0x1e);
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
	configure(&ln, 0, 4, 4, false);
	assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
	assert_true(abd_lease_renew_due(&ln.l[0], now_of(&c, 0)));
	/* the grantors have not applied 4 but accepted nothing above it: they grant */
	renew(&ln, &c, 0, 0x1e);
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
	/* an accepted entry that is replaced (never chosen) stops blocking: accepted goes down */
	configure(&ln, 1, 0, 9, false);
	configure(&ln, 2, 0, 9, false);
	configure(&ln, 3, 0, 9, false);
	configure(&ln, 4, 0, 9, false);
	configure(&ln, 0, 5, 5, false);
	renew(&ln, &c, 0, 0x1e);
	assert_int_equal(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)), 0);
	for (int i = 1; i < N; i++)
		configure(&ln, i, 0, 0, false);
	renew(&ln, &c, 0, 0x1e);
	assert_true(abd_lease_valid_until(&ln.l[0], now_of(&c, 0)) > 0);
	h_free(&c);
}

static void test_index_and_config(void **state)
{
	struct abd_lease l;
	struct abd_lease_config cfg;
	char err[TEEMS_ERRBUF_LEN];

	(void)state;
	assert_true(abd_lease_index((struct msg_regidx){0, 5}) <
		    abd_lease_index((struct msg_regidx){1, 0}));
	assert_true(abd_lease_index((struct msg_regidx){1, 0}) <
		    abd_lease_index((struct msg_regidx){1, 1}));
	assert_int_equal(abd_lease_index((struct msg_regidx){0, UINT64_MAX}),
			 abd_lease_index((struct msg_regidx){0, (1ull << 40) - 1}));
	assert_int_equal(abd_lease_index((struct msg_regidx){UINT64_MAX, UINT64_MAX}), UINT64_MAX);
	memset(&cfg, 0, sizeof(cfg));
	cfg.n = 5;
	cfg.w_q = 3;
	cfg.t_cfg_ns = T_CFG;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_OK);
	assert_int_equal(l.cfg.renew_ns, T_CFG / 3);
	/* before the first configure: nothing due, nothing valid, nothing granted */
	assert_false(abd_lease_renew_due(&l, (struct lease_time){1, 1, 0}));
	assert_int_equal(abd_lease_valid_until(&l, (struct lease_time){1, 1, 0}), 0);
	cfg.self = 5;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
	cfg.self = 0;
	cfg.w_q = 6;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
	cfg.w_q = 0;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
	cfg.w_q = 3;
	cfg.n = 0;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
	cfg.n = 5;
	cfg.t_cfg_ns = 0;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
	cfg.t_cfg_ns = T_CFG;
	cfg.rho_ppm = LEASE_RHO_MAX_PPM + 1;
	assert_int_equal(abd_lease_init(&l, &cfg, err), TEEMS_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s15),
		cmocka_unit_test(test_s15_negative_no_index),
		cmocka_unit_test(test_fenced),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_nonce_and_index),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_index_and_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
