/* Lease module (src/core/lease.h, include/teems/lease.h; DESIGN.md section 8; docs/LEASES.md).
 *
 * Rule by rule: arithmetic at the exact expiry instants, rho padding and saturation; grantor
 * promises, renewals, fences, taints, releases; quorum holders; the leader lease, the
 * configuration lease (S15) and client leases (state machine and leader timers). Then the
 * property: over many random real-time schedules whose clock readings obey the bounds (tee.h
 * bounds, or a raw clock with rate within rho), two holders are never valid at one real time;
 * and the negative controls: with clocks out of bounds, or with trust_host_clock and a jumping
 * host clock (S13) or a replica-specific offset with times in the log (S12), violations are
 * found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "core/lease.h"
#include "teems/err.h"
#include "teems/lease.h"

#define MS 1000000ull

static struct lease_time at(uint64_t lo, uint64_t hi, uint64_t epoch)
{
	struct lease_time t = {.lo_ns = lo, .hi_ns = hi, .epoch = epoch};
	return t;
}

static struct lease_time same(uint64_t ns)
{
	return at(ns, ns, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Arithmetic
 * ------------------------------------------------------------------------------------------- */

static void test_arithmetic(void **state)
{
	(void)state;
	/* rho = 1000 ppm (0.1%) */
	assert_int_equal(lease_grantor_wait_ns(1000 * MS, 1000), 1001 * MS);
	assert_int_equal(lease_holder_span_ns(1000 * MS, 1000), 999 * MS);
	/* rounding: the grantor rounds up, the holder down */
	assert_int_equal(lease_grantor_wait_ns(1, 1), 2);
	assert_int_equal(lease_holder_span_ns(1, 1), 0);
	assert_int_equal(lease_grantor_wait_ns(999999, 1), 1000000);
	assert_int_equal(lease_holder_span_ns(999999, 1), 999998);
	assert_int_equal(lease_grantor_wait_ns(1000000, 1), 1000001);
	assert_int_equal(lease_holder_span_ns(1000000, 1), 999999);
	/* rho 0: no padding */
	assert_int_equal(lease_grantor_wait_ns(12345, 0), 12345);
	assert_int_equal(lease_holder_span_ns(12345, 0), 12345);
	/* saturation: no overflow, a promise that never ends */
	assert_int_equal(lease_grantor_wait_ns(UINT64_MAX, 1000), UINT64_MAX);
	assert_int_equal(lease_grantor_wait_ns(UINT64_MAX - 5, 1), UINT64_MAX);
	uint64_t span = lease_holder_span_ns(UINT64_MAX, 1000);
	assert_true(span < UINT64_MAX && span > UINT64_MAX / 2);
	/* cut = ceil(D * rho): q * 1000 + ceil(551615 * 1000 / 1e6) */
	assert_int_equal(UINT64_MAX - span, (UINT64_MAX / 1000000) * 1000 + 552);
	/* rho is clamped below 50% */
	assert_int_equal(lease_grantor_wait_ns(1000000, 2000000),
			 lease_grantor_wait_ns(1000000, LEASE_RHO_MAX_PPM));
	assert_true(lease_holder_span_ns(1000000, 2000000) > 0);
	assert_int_equal(teems_lease_ms_to_ns(UINT64_MAX), UINT64_MAX);
	/* the public and the core holder arithmetic are the same */
	for (uint64_t d = 0; d < 3000000; d += 99991)
		assert_int_equal(teems_lease_holder_span_ns(d, 1234),
				 lease_holder_span_ns(d, 1234));
}

/* ---------------------------------------------------------------------------------------------
 * Restartable waits (fences, S14) and grantor promises
 * ------------------------------------------------------------------------------------------- */

static void test_wait_and_taint(void **state)
{
	(void)state;
	struct lease_wait w;
	memset(&w, 0, sizeof(w));
	assert_false(lease_wait_done(&w, same(5)));
	lease_wait_start(&w, 1000, at(100, 200, 3));
	assert_false(lease_wait_done(&w, at(1099, 5000, 3))); /* lo counts, not hi */
	assert_int_equal(lease_wait_remaining_ns(&w, at(1099, 0, 3)), 1);
	assert_true(lease_wait_done(&w, at(1100, 1100, 3))); /* exact instant: done */
	assert_true(lease_wait_done(&w, at(1200, 1200, 3)));
	assert_true(lease_wait_done(&w, at(1201, 1201, 4))); /* a later taint does not reopen it */

	/* S14: a fence of 1000 tainted halfway restarts in full from the first new reading */
	lease_wait_start(&w, 1000, at(0, 0, 0));
	assert_false(lease_wait_done(&w, at(500, 500, 0)));
	assert_false(lease_wait_done(&w, at(100000, 100000, 1))); /* lo jumped with the taint */
	assert_false(lease_wait_done(&w, at(100999, 100999, 1)));
	assert_true(lease_wait_done(&w, at(101000, 101000, 1)));
	/* taints keep restarting it */
	lease_wait_start(&w, 1000, at(0, 0, 0));
	for (uint64_t e = 1; e < 10; e++)
		assert_false(lease_wait_done(&w, at(e * 900, e * 900, e)));
	assert_false(lease_wait_done(&w, at(9 * 900 + 999, 0, 9)));
	assert_true(lease_wait_done(&w, at(9 * 900 + 1000, 0, 9)));
	/* a saturated wait never ends */
	lease_wait_start(&w, UINT64_MAX, at(10, 10, 0));
	assert_false(lease_wait_done(&w, at(UINT64_MAX, UINT64_MAX, 0)));
}

static void test_grantor_promise(void **state)
{
	(void)state;
	struct lease_grantor g;
	uint64_t gen = 0, who = 0;
	lease_grantor_init(&g, 100000); /* rho 10%: D = 1000 -> wait 1100 */
	assert_false(lease_grantor_bound(&g, same(0), NULL));
	assert_int_equal(lease_grant(&g, 7, 1000, at(1000, 9999, 0), &gen), LEASE_GRANTED);
	assert_int_equal(gen, 1);
	assert_true(lease_grantor_bound(&g, at(2099, 0, 0), &who));
	assert_int_equal(who, 7);
	/* another holder is refused while the promise is live, up to the exact instant */
	assert_int_equal(lease_grant(&g, 8, 1000, at(2099, 0, 0), NULL), LEASE_REFUSED_LIVE);
	assert_false(lease_grantor_bound(&g, at(2100, 0, 0), NULL));
	assert_int_equal(lease_grant(&g, 8, 1000, at(2100, 0, 0), &gen), LEASE_GRANTED);
	assert_int_equal(gen, 2);

	/* renewal by the bound holder keeps the later end; a shorter renewal does not shorten */
	assert_int_equal(lease_grant(&g, 8, 1000, at(2600, 0, 0), NULL), LEASE_GRANTED);
	assert_true(lease_grantor_bound(&g, at(3699, 0, 0), NULL));
	assert_int_equal(lease_grant(&g, 8, 10, at(2700, 0, 0), &gen), LEASE_GRANTED);
	assert_int_equal(gen, 2); /* same promise */
	assert_true(lease_grantor_bound(&g, at(3699, 0, 0), NULL));
	assert_false(lease_grantor_bound(&g, at(3700, 0, 0), NULL));

	/* a taint restarts the promise in full (from the first reading of the new epoch) */
	assert_int_equal(lease_grant(&g, 9, 1000, at(5000, 0, 0), NULL), LEASE_GRANTED);
	assert_true(lease_grantor_bound(&g, at(5500, 0, 1), NULL)); /* restarts at 5500 */
	assert_int_equal(lease_grant(&g, 10, 1000, at(6599, 0, 1), NULL), LEASE_REFUSED_LIVE);
	assert_int_equal(lease_grant(&g, 10, 1000, at(6600, 0, 1), NULL), LEASE_GRANTED);

	/* fence: nothing is granted, not even a renewal; a live promise stays live */
	lease_grantor_fence(&g, true);
	assert_int_equal(lease_grant(&g, 10, 1000, at(6700, 0, 1), NULL), LEASE_REFUSED_FENCED);
	assert_int_equal(lease_grant(&g, 11, 1000, at(99999, 0, 1), NULL), LEASE_REFUSED_FENCED);
	assert_false(lease_grantor_bound(&g, at(99999, 0, 1), NULL));
	lease_grantor_fence(&g, false);
	assert_int_equal(lease_grant(&g, 11, 1000, at(99999, 0, 1), &gen), LEASE_GRANTED);

	/* release by generation: a stale release is ignored, the current one frees */
	lease_grantor_release(&g, gen - 1);
	assert_true(lease_grantor_bound(&g, at(100000, 0, 1), NULL));
	lease_grantor_release(&g, gen);
	assert_false(lease_grantor_bound(&g, at(100000, 0, 1), NULL));
	assert_int_equal(lease_grant(&g, 12, 1000, at(100000, 0, 1), NULL), LEASE_GRANTED);

	/* a saturated promise never ends */
	lease_grantor_init(&g, 1000);
	assert_int_equal(lease_grant(&g, 1, UINT64_MAX, same(1), NULL), LEASE_GRANTED);
	assert_int_equal(lease_grant(&g, 2, 1, same(UINT64_MAX), NULL), LEASE_REFUSED_LIVE);
}

/* ---------------------------------------------------------------------------------------------
 * Holders
 * ------------------------------------------------------------------------------------------- */

static void test_holder_single(void **state)
{
	(void)state;
	struct lease_quorum q;
	assert_int_equal(lease_quorum_init(&q, 0, LEASE_NO_SELF, 1000, 0), TEEMS_EINVAL);
	assert_int_equal(lease_quorum_init(&q, 65, LEASE_NO_SELF, 1000, 0), TEEMS_EINVAL);
	assert_int_equal(lease_quorum_init(&q, 1, 64, 1000, 0), TEEMS_EINVAL);
	assert_int_equal(lease_quorum_init(&q, 1, LEASE_NO_SELF, 1000, 500000), TEEMS_EINVAL);
	/* rho 10%: span 900 on hi from the send reading */
	assert_int_equal(lease_quorum_init(&q, 1, LEASE_NO_SELF, 1000, 100000), 0);
	uint64_t r = lease_quorum_send(&q, at(0, 500, 0));
	assert_false(lease_quorum_valid(&q, at(0, 500, 0)));
	/* the grant arrives late: still counted from the send time */
	assert_true(lease_quorum_grant(&q, 3, r, at(0, 800, 0)));
	assert_true(lease_quorum_valid(&q, at(0, 1399, 0)));
	assert_int_equal(lease_quorum_remaining_ns(&q, at(0, 1399, 0)), 1);
	assert_false(lease_quorum_valid(&q, at(0, 1400, 0))); /* exact instant: invalid */
	/* a grant arriving after the span still yields no lease */
	r = lease_quorum_send(&q, at(0, 2000, 0));
	assert_true(lease_quorum_grant(&q, 3, r, at(0, 3000, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 3000, 0)));
	/* a taint drops it at once, and grants of rounds sent before it are never counted */
	r = lease_quorum_send(&q, at(0, 4000, 0));
	assert_true(lease_quorum_grant(&q, 3, r, at(0, 4001, 0)));
	assert_true(lease_quorum_valid(&q, at(0, 4002, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 4002, 1)));
	assert_false(lease_quorum_grant(&q, 3, r, at(0, 4003, 1)));
	assert_false(lease_quorum_valid(&q, at(0, 4003, 1)));
	/* explicit drop (promised a higher ballot): late grants of earlier rounds do not revive */
	r = lease_quorum_send(&q, at(0, 5000, 1));
	assert_true(lease_quorum_grant(&q, 3, r, at(0, 5001, 1)));
	lease_quorum_drop(&q);
	assert_false(lease_quorum_valid(&q, at(0, 5002, 1)));
	assert_false(lease_quorum_grant(&q, 3, r, at(0, 5003, 1)));
	assert_false(lease_quorum_valid(&q, at(0, 5003, 1)));
	/* unknown rounds, round 0, replica ids out of range */
	assert_false(lease_quorum_grant(&q, 3, 0, at(0, 5004, 1)));
	assert_false(lease_quorum_grant(&q, 3, 12345, at(0, 5004, 1)));
	r = lease_quorum_send(&q, at(0, 6000, 1));
	assert_false(lease_quorum_grant(&q, 64, r, at(0, 6001, 1)));
	/* only the last LEASE_ROUNDS rounds are remembered */
	uint64_t first = r;
	for (int i = 0; i < LEASE_ROUNDS; i++)
		(void)lease_quorum_send(&q, at(0, 6002 + (uint64_t)i, 1));
	assert_false(lease_quorum_grant(&q, 3, first, at(0, 6100, 1)));
}

static void test_holder_quorum(void **state)
{
	(void)state;
	struct lease_quorum q;
	/* W_Q = 3 of 5, the holder is replica 0 and counts itself at each send; rho 0, D 1000 */
	assert_int_equal(lease_quorum_init(&q, 3, 0, 1000, 0), 0);
	uint64_t r1 = lease_quorum_send(&q, at(0, 100, 0));
	uint64_t r2 = lease_quorum_send(&q, at(0, 300, 0));
	assert_true(lease_quorum_grant(&q, 1, r1, at(0, 400, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 400, 0))); /* 2 of 3 */
	assert_true(lease_quorum_grant(&q, 1, r1, at(0, 401, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 401, 0))); /* one replica counts once */
	assert_true(lease_quorum_grant(&q, 2, r2, at(0, 500, 0)));
	/* counted: self@300, 1@100, 2@300 -> starts at the earliest: 100 */
	assert_true(lease_quorum_valid(&q, at(0, 1099, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 1100, 0)));
	/* replica 1 acks the newer round: now self@300, 1@300, 2@300 */
	assert_true(lease_quorum_grant(&q, 1, r2, at(0, 1100, 0)));
	assert_true(lease_quorum_valid(&q, at(0, 1299, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 1300, 0)));
	/* the best W_Q are chosen: a late round acked by 3 and 4 */
	uint64_t r3 = lease_quorum_send(&q, at(0, 2000, 0));
	assert_true(lease_quorum_grant(&q, 3, r3, at(0, 2001, 0)));
	assert_true(lease_quorum_grant(&q, 4, r3, at(0, 2002, 0)));
	assert_true(lease_quorum_valid(&q, at(0, 2999, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 3000, 0)));
	/* an older grant of replica 3 does not move its counted send time backwards */
	uint64_t r4 = lease_quorum_send(&q, at(0, 3100, 0));
	uint64_t r5 = lease_quorum_send(&q, at(0, 3200, 0));
	assert_true(lease_quorum_grant(&q, 3, r5, at(0, 3300, 0)));
	assert_true(lease_quorum_grant(&q, 3, r4, at(0, 3301, 0)));
	assert_true(lease_quorum_grant(&q, 4, r5, at(0, 3302, 0)));
	assert_true(lease_quorum_valid(&q, at(0, 4199, 0)));
	assert_false(lease_quorum_valid(&q, at(0, 4200, 0)));
}

/* ---------------------------------------------------------------------------------------------
 * Leader lease
 * ------------------------------------------------------------------------------------------- */

static void test_leader_lease(void **state)
{
	(void)state;
	const uint64_t t_lease = 100 * MS;
	const uint32_t rho = 10000; /* 1% */
	struct lease_leader a;
	struct lease_follower b, c;
	assert_int_equal(lease_leader_init(&a, 2, LEASE_NO_SELF, t_lease, rho), TEEMS_EINVAL);
	assert_int_equal(lease_leader_init(&a, 2, 0, t_lease, rho), 0);
	lease_follower_init(&b, t_lease, rho);
	lease_follower_init(&c, t_lease, rho);

	/* A sends a heartbeat at hi = 1000 ms; B acks at its own clock (offset 7 s) */
	uint64_t hb = lease_leader_heartbeat(&a, same(1000 * MS));
	assert_false(lease_leader_read_ok(&a, same(1000 * MS))); /* only itself */
	assert_true(lease_follower_ack(&b, 1, same(8000 * MS)));
	lease_leader_ack(&a, 1, hb, same(1005 * MS));
	/* lease: 99 ms from the heartbeat's send time */
	assert_true(lease_leader_read_ok(&a, same(1098 * MS)));
	assert_false(lease_leader_read_ok(&a, same(1099 * MS)));

	/* B is bound to ballot 1 for 101 ms of its lo since its ack */
	assert_true(lease_follower_may_support(&b, 1, same(8050 * MS)));
	assert_false(lease_follower_may_support(&b, 2, same(8100 * MS)));
	assert_false(lease_follower_ack(&b, 2, same(8100 * MS)));
	assert_true(lease_follower_may_support(&b, 2, same(8101 * MS)));

	/* promising a higher ballot drops the lease at once; late acks do not revive it */
	hb = lease_leader_heartbeat(&a, same(2000 * MS));
	assert_true(lease_follower_ack(&c, 1, same(50 * MS)));
	lease_leader_ack(&a, 2, hb, same(2001 * MS));
	assert_true(lease_leader_read_ok(&a, same(2002 * MS)));
	lease_leader_promised_higher(&a);
	assert_false(lease_leader_read_ok(&a, same(2003 * MS)));
	lease_leader_ack(&a, 1, hb, same(2004 * MS));
	assert_false(lease_leader_read_ok(&a, same(2004 * MS)));

	/* lease read protocol: read the state, then read hi, serve only if still inside */
	hb = lease_leader_heartbeat(&a, same(3000 * MS));
	lease_leader_ack(&a, 1, hb, same(3001 * MS));
	struct lease_time before = same(3098 * MS),
			  after = same(3099 * MS); /* the read took 1 ms */
	assert_true(lease_leader_read_ok(&a, before));
	assert_false(lease_leader_read_ok(&a, after)); /* must not serve */
	/* a taint at the leader stops lease reads */
	assert_false(lease_leader_read_ok(&a, at(3010 * MS, 3010 * MS, 1)));
}

/* ---------------------------------------------------------------------------------------------
 * Configuration lease (S15)
 * ------------------------------------------------------------------------------------------- */

static void test_cfg_lease_s15(void **state)
{
	(void)state;
	/* N = 5, W_Q = 3. Deposed leader D holds a configuration lease bound to index 10. */
	const uint64_t t_cfg = 200 * MS;
	struct lease_cfg_holder d;
	struct lease_cfg_grantor gr[5];
	memset(gr, 0, sizeof(gr));
	assert_int_equal(lease_cfg_holder_init(&d, 3, 0, t_cfg, 1000), 0);
	for (int i = 0; i < 5; i++)
		lease_cfg_grantor_accepted(&gr[i], 10);

	uint64_t n = lease_cfg_request(&d, 10, same(1000 * MS));
	for (uint32_t i = 1; i <= 2; i++) {
		assert_int_equal(lease_cfg_grant(&gr[i], 10), LEASE_GRANTED);
		assert_true(lease_cfg_granted(&d, i, n, 10, same(1010 * MS)));
	}
	assert_true(lease_cfg_valid(&d, 10, same(1100 * MS)));
	assert_false(lease_cfg_valid(&d, 11, same(1100 * MS))); /* bound to the applied index */
	assert_false(lease_cfg_valid(&d, 10, same(1000 * MS + lease_holder_span_ns(t_cfg, 1000))));

	/* A revocation commits at index 12: accepted by replicas 2, 3, 4 (a W_Q) */
	for (int i = 2; i < 5; i++)
		lease_cfg_grantor_accepted(&gr[i], 12);
	lease_cfg_grantor_accepted(&gr[2], 11); /* never moves backwards */
	assert_int_equal(gr[2].accepted_cfg_index, 12);
	/* the deposed leader asks for a renewal still bound to 10: only replica 1 grants */
	n = lease_cfg_request(&d, 10, same(1300 * MS));
	int grants = 1; /* itself */
	for (uint32_t i = 1; i < 5; i++) {
		enum lease_verdict v = lease_cfg_grant(&gr[i], 10);
		if (i >= 2)
			assert_int_equal(v, LEASE_REFUSED_STALE);
		if (v == LEASE_GRANTED && lease_cfg_granted(&d, i, n, 10, same(1310 * MS)))
			grants++;
	}
	assert_int_equal(grants, 2);
	assert_false(lease_cfg_valid(&d, 10, same(1310 * MS))); /* lacks W_Q: renewal fails */

	/* a grant echoing another index is not counted; a new index drops the old count */
	assert_false(lease_cfg_granted(&d, 3, n, 12, same(1311 * MS)));
	n = lease_cfg_request(&d, 12, same(1400 * MS));
	assert_false(lease_cfg_granted(&d, 1, n, 10, same(1401 * MS)));
	for (uint32_t i = 2; i <= 3; i++) {
		assert_int_equal(lease_cfg_grant(&gr[i], 12), LEASE_GRANTED);
		assert_true(lease_cfg_granted(&d, i, n, 12, same(1402 * MS)));
	}
	assert_true(lease_cfg_valid(&d, 12, same(1403 * MS)));
	/* a fenced grantor grants nothing */
	gr[4].fenced = true;
	assert_int_equal(lease_cfg_grant(&gr[4], 12), LEASE_REFUSED_FENCED);

	/* Revocation is acknowledged only T_cfg (1 + rho) after it commits, on lo: by then every
	 * lease counted from a send before the commit has expired at its holder. */
	assert_int_equal(lease_cfg_revoke_wait_ns(t_cfg, 1000), 200200000ull);
	struct lease_wait w;
	lease_wait_start(&w, lease_cfg_revoke_wait_ns(t_cfg, 1000), same(1250 * MS));
	assert_false(lease_wait_done(&w, same(1450 * MS)));
	assert_true(lease_wait_done(&w, same(1450 * MS + 200000)));
}

/* ---------------------------------------------------------------------------------------------
 * Client leases: state machine
 * ------------------------------------------------------------------------------------------- */

static struct lease_cmd cmd(enum lease_cmd_type type, const char *name, uint64_t arg)
{
	struct lease_cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.name = name;
	c.name_len = strlen(name);
	if (type == LEASE_CMD_ACQUIRE)
		c.ttl_ms = arg;
	else if (type == LEASE_CMD_EXPIRE)
		c.generation = arg;
	else
		c.token = arg;
	return c;
}

static struct lease_result apply(struct lease_table *t, struct lease_cmd c)
{
	struct lease_result r;
	assert_int_equal(lease_table_apply(t, &c, &r), 0);
	return r;
}

static void test_client_state_machine(void **state)
{
	(void)state;
	struct lease_table *t;
	struct lease_result r;
	assert_int_equal(lease_table_new(&t), 0);

	lease_table_info(t, "L", 1, &r);
	assert_int_equal(r.status, LEASE_NOT_FOUND);
	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "L", 0));
	assert_int_equal(r.status, LEASE_BAD_ARG);
	struct lease_cmd bad = cmd(LEASE_CMD_ACQUIRE, "", 10);
	assert_int_equal(apply(t, bad).status, LEASE_BAD_ARG);
	char longname[LEASE_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(apply(t, cmd(LEASE_CMD_ACQUIRE, longname, 10)).status, LEASE_BAD_ARG);
	longname[LEASE_NAME_MAX] = 0;
	assert_int_equal(apply(t, cmd(LEASE_CMD_ACQUIRE, longname, 10)).status, LEASE_OK);
	bad = cmd(LEASE_CMD_ACQUIRE, "L", 10);
	bad.type = (enum lease_cmd_type)99;
	assert_int_equal(apply(t, bad).status, LEASE_BAD_ARG);

	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "L", 5000));
	assert_int_equal(r.status, LEASE_OK);
	assert_true(r.held);
	assert_int_equal(r.token, 1);
	assert_int_equal(r.ttl_ms, 5000);
	uint64_t gen1 = r.generation;
	/* held: a second acquire is refused and changes nothing */
	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "L", 100));
	assert_int_equal(r.status, LEASE_HELD);
	lease_table_info(t, "L", 1, &r);
	assert_int_equal(r.status, LEASE_OK);
	assert_true(r.held);
	assert_int_equal(r.token, 1);
	assert_int_equal(r.ttl_ms, 5000);
	assert_int_equal(r.generation, gen1);
	/* renew: the right token only; the generation moves */
	assert_int_equal(apply(t, cmd(LEASE_CMD_RENEW, "L", 2)).status, LEASE_STALE);
	r = apply(t, cmd(LEASE_CMD_RENEW, "L", 1));
	assert_int_equal(r.status, LEASE_OK);
	assert_int_equal(r.token, 1);
	assert_int_equal(r.ttl_ms, 5000);
	assert_true(r.generation > gen1);
	uint64_t gen2 = r.generation;
	/* an expiry naming the old generation raced the renewal: the renewal wins */
	r = apply(t, cmd(LEASE_CMD_EXPIRE, "L", gen1));
	assert_int_equal(r.status, LEASE_STALE);
	lease_table_info(t, "L", 1, &r);
	assert_true(r.held);
	/* the current generation expires it */
	r = apply(t, cmd(LEASE_CMD_EXPIRE, "L", gen2));
	assert_int_equal(r.status, LEASE_OK);
	assert_false(r.held);
	assert_int_equal(apply(t, cmd(LEASE_CMD_EXPIRE, "L", r.generation)).status, LEASE_STALE);
	assert_int_equal(apply(t, cmd(LEASE_CMD_RENEW, "L", 1)).status, LEASE_STALE);
	assert_int_equal(apply(t, cmd(LEASE_CMD_RELEASE, "L", 1)).status, LEASE_STALE);
	/* tokens increase, also across release */
	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "L", 10));
	assert_int_equal(r.token, 2);
	assert_int_equal(apply(t, cmd(LEASE_CMD_RELEASE, "L", 1)).status, LEASE_STALE);
	r = apply(t, cmd(LEASE_CMD_RELEASE, "L", 2));
	assert_int_equal(r.status, LEASE_OK);
	assert_false(r.held);
	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "L", 10));
	assert_int_equal(r.token, 3);
	/* names are independent; unknown names */
	r = apply(t, cmd(LEASE_CMD_ACQUIRE, "M", 10));
	assert_int_equal(r.token, 1);
	assert_int_equal(apply(t, cmd(LEASE_CMD_RENEW, "N", 1)).status, LEASE_STALE);
	assert_int_equal(apply(t, cmd(LEASE_CMD_EXPIRE, "N", 1)).status, LEASE_STALE);
	lease_table_info(t, NULL, 0, &r);
	assert_int_equal(r.status, LEASE_NOT_FOUND);

	/* determinism: two replicas applying one log agree on every result */
	struct lease_table *u, *v;
	assert_int_equal(lease_table_new(&u), 0);
	assert_int_equal(lease_table_new(&v), 0);
	srand(7);
	for (int i = 0; i < 2000; i++) {
		char name[4] = {(char)('a' + rand() % 20), 0};
		struct lease_cmd c =
			cmd((enum lease_cmd_type)(1 + rand() % 4), name, (uint64_t)(rand() % 6));
		struct lease_result ru = apply(u, c), rv = apply(v, c);
		assert_memory_equal(&ru, &rv, sizeof(ru));
		if (c.type == LEASE_CMD_ACQUIRE && ru.status == LEASE_OK) {
			lease_table_info(u, name, 1, &r);
			assert_int_equal(r.token, ru.token);
		}
	}
	lease_table_free(u);
	lease_table_free(v);
	lease_table_free(t);
	lease_table_free(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Client leases: the leader's expiry timers
 * ------------------------------------------------------------------------------------------- */

static void test_client_timers(void **state)
{
	(void)state;
	struct lease_table *t;
	struct lease_timers tm;
	struct lease_expiry due[8];
	assert_int_equal(lease_table_new(&t), 0);
	lease_timers_init(&tm, 10000, false); /* rho 1%: TTL 100 ms -> 101 ms */

	/* out of office: nothing is armed or due */
	struct lease_cmd c = cmd(LEASE_CMD_ACQUIRE, "L", 100);
	struct lease_result r = apply(t, c);
	assert_int_equal(lease_timers_applied(&tm, &c, &r, same(0)), 0);
	assert_int_equal(lease_timers_due(&tm, same(10000 * MS), due, 8), 0);

	/* take office at lo = 1000 ms: every held lease's timer starts now */
	assert_int_equal(lease_timers_take_office(&tm, t, same(1000 * MS)), 0);
	assert_int_equal(lease_timers_due(&tm, same(1101 * MS - 1), due, 8), 0);
	/* a renewal applied at 1050 restarts the timer from 1050 */
	c = cmd(LEASE_CMD_RENEW, "L", r.token);
	r = apply(t, c);
	assert_int_equal(lease_timers_applied(&tm, &c, &r, same(1050 * MS)), 0);
	assert_int_equal(lease_timers_due(&tm, same(1151 * MS - 1), due, 8), 0);
	assert_int_equal(lease_timers_due(&tm, same(1151 * MS), due, 8), 1);
	assert_memory_equal(due[0].name, "L", 1);
	assert_int_equal(due[0].name_len, 1);
	assert_int_equal(due[0].generation, r.generation);
	/* reported once */
	assert_int_equal(lease_timers_due(&tm, same(1200 * MS), due, 8), 0);
	/* the expiry proposal raced a renewal: the renewal wins and re-arms */
	struct lease_cmd ex = cmd(LEASE_CMD_EXPIRE, "L", due[0].generation);
	c = cmd(LEASE_CMD_RENEW, "L", r.token);
	r = apply(t, c);
	assert_int_equal(lease_timers_applied(&tm, &c, &r, same(1210 * MS)), 0);
	struct lease_result rex = apply(t, ex);
	assert_int_equal(rex.status, LEASE_STALE);
	assert_int_equal(lease_timers_applied(&tm, &ex, &rex, same(1211 * MS)), 0);
	assert_int_equal(lease_timers_due(&tm, same(1311 * MS - 1), due, 8), 0);
	/* a taint restarts the timer in full */
	assert_int_equal(lease_timers_due(&tm, at(1300 * MS, 0, 1), due, 8), 0);
	assert_int_equal(lease_timers_due(&tm, at(1401 * MS - 1, 0, 1), due, 8), 0);
	assert_int_equal(lease_timers_due(&tm, at(1401 * MS, 0, 1), due, 8), 1);
	ex = cmd(LEASE_CMD_EXPIRE, "L", due[0].generation);
	rex = apply(t, ex);
	assert_int_equal(rex.status, LEASE_OK);
	assert_int_equal(lease_timers_applied(&tm, &ex, &rex, at(1402 * MS, 0, 1)), 0);
	assert_int_equal(tm.n, 0);

	/* release disarms; capacity limits the batch; the rest comes next call */
	for (int i = 0; i < 5; i++) {
		char name[2] = {(char)('a' + i), 0};
		c = cmd(LEASE_CMD_ACQUIRE, name, 10);
		r = apply(t, c);
		assert_int_equal(lease_timers_applied(&tm, &c, &r, at(2000 * MS, 0, 1)), 0);
	}
	c = cmd(LEASE_CMD_RELEASE, "c", 1);
	r = apply(t, c);
	assert_int_equal(r.status, LEASE_OK);
	assert_int_equal(lease_timers_applied(&tm, &c, &r, at(2001 * MS, 0, 1)), 0);
	assert_int_equal(lease_timers_due(&tm, at(2100 * MS, 0, 1), due, 3), 3);
	assert_int_equal(lease_timers_due(&tm, at(2100 * MS, 0, 1), due, 3), 1);
	assert_int_equal(lease_timers_due(&tm, at(2100 * MS, 0, 1), due, 3), 0);

	/* a new leader restarts every timer: nothing due before TTL (1 + rho) after office */
	lease_timers_step_down(&tm);
	assert_int_equal(lease_timers_due(&tm, at(9999 * MS, 0, 1), due, 8), 0);
	assert_int_equal(lease_timers_take_office(&tm, t, same(5 * MS)), 0);
	assert_int_equal(tm.n, 4); /* a, b, d, e held; L expired, c released */
	assert_int_equal(lease_timers_due(&tm,
					  same(5 * MS + lease_grantor_wait_ns(10 * MS, 10000) - 1),
					  due, 8),
			 0);
	assert_int_equal(
		lease_timers_due(&tm, same(5 * MS + lease_grantor_wait_ns(10 * MS, 10000)), due, 8),
		4);
	lease_timers_free(&tm);
	lease_table_free(t);
}

/* ---------------------------------------------------------------------------------------------
 * The public holder API
 * ------------------------------------------------------------------------------------------- */

static void test_public_holder_api(void **state)
{
	(void)state;
	struct teems_lease l;
	memset(&l, 0, sizeof(l));
	struct teems_lease_clock sent = {.lo_ns = 0, .hi_ns = 10 * MS, .epoch = 2};
	struct teems_lease_clock now = sent;
	assert_false(teems_lease_valid(&l, &now));
	teems_lease_granted(&l, &sent, 100, 10000, 42); /* 100 ms, rho 1% -> 99 ms */
	assert_int_equal(l.token, 42);
	now.hi_ns = 109 * MS - 1;
	assert_true(teems_lease_valid(&l, &now));
	assert_int_equal(teems_lease_remaining_ns(&l, &now), 1);
	now.hi_ns = 109 * MS;
	assert_false(teems_lease_valid(&l, &now));
	now.hi_ns = 50 * MS;
	now.epoch = 3; /* taint */
	assert_false(teems_lease_valid(&l, &now));
	now.epoch = 2;
	now.hi_ns = 5 * MS; /* a reading before the send: not trusted */
	assert_false(teems_lease_valid(&l, &now));
	now.hi_ns = 50 * MS;
	assert_true(teems_lease_valid(&l, &now));
	teems_lease_drop(&l);
	assert_false(teems_lease_valid(&l, &now));
}

/* ---------------------------------------------------------------------------------------------
 * Random schedules: clocks within and out of bounds
 * ------------------------------------------------------------------------------------------- */

/* xorshift64*: deterministic per seed */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}
static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

enum clock_model {
	CLOCK_TEE,	    /* tee.h bounds: lo rate <= 1 <= hi rate; taints with detected jumps */
	CLOCK_RAW,	    /* lo = hi, rate within [1 - rho, 1 + rho], no taints */
	CLOCK_FAST_GRANTOR, /* out of bounds: grantors' lo = hi runs 40% fast */
	CLOCK_SLOW_HOLDER,  /* out of bounds: holders' hi runs 40% slow */
	CLOCK_HOST_JUMPS,   /* trust_host_clock: grantors' host clocks jump, undetected */
};

#define STEP_NS 100000ull /* 0.1 ms of real time per step */
#define SIM_RHO 10000u	  /* 1% */
#define SIM_D (20 * MS)
#define SIM_G 3
#define SIM_WQ 2
#define SIM_H 2
#define SIM_STEPS 20000
#define SIM_MSGS 4096

struct sim_clock {
	struct lease_time now;
	uint64_t lo_rate, hi_rate; /* ppm of real time */
};

struct sim_msg {
	uint64_t deliver;
	int grant; /* 0: request holder -> grantor; 1: grant grantor -> holder */
	uint32_t holder, grantor;
	uint64_t round;
};

struct sim {
	enum clock_model model;
	struct sim_clock gc[SIM_G], hc[SIM_H];
	struct lease_grantor g[SIM_G];
	struct lease_quorum h[SIM_H];
	bool wants[SIM_H];
	struct sim_msg msgs[SIM_MSGS]; /* in flight, unordered */
	size_t n_msgs;
	uint64_t valid_steps[SIM_H];
};

/* Rates in ppm multiples of 10 so that one step's increment is exact. */
static uint64_t pick_rate(uint64_t lo_ppm, uint64_t hi_ppm)
{
	return lo_ppm + 10 * rnd_below((hi_ppm - lo_ppm) / 10 + 1);
}

static void clock_rerate(struct sim_clock *c, enum clock_model m, bool grantor)
{
	const uint64_t one = 1000000, r = SIM_RHO;
	switch (m) {
	case CLOCK_TEE:
		c->lo_rate = pick_rate(one - 3 * r, one);
		c->hi_rate = pick_rate(one, one + 3 * r);
		break;
	case CLOCK_RAW:
	case CLOCK_HOST_JUMPS:
		c->lo_rate = c->hi_rate = pick_rate(one - r, one + r);
		break;
	case CLOCK_FAST_GRANTOR:
		c->lo_rate = c->hi_rate = grantor ? pick_rate(one + 30 * r, one + 40 * r) : one;
		break;
	case CLOCK_SLOW_HOLDER:
		c->lo_rate = c->hi_rate = grantor ? one : pick_rate(one - 40 * r, one - 30 * r);
		break;
	}
}

static void clock_step(struct sim_clock *c, enum clock_model m, bool grantor)
{
	if (rnd_below(200) == 0)
		clock_rerate(c, m, grantor);
	c->now.lo_ns += STEP_NS * c->lo_rate / 1000000;
	c->now.hi_ns += STEP_NS * c->hi_rate / 1000000;
	if (m == CLOCK_TEE && rnd_below(5000) == 0) {
		/* a detected manipulation: the epoch moves, the values may leap */
		uint64_t leap = rnd_below(10 * SIM_D);
		c->now.epoch++;
		c->now.lo_ns += leap;
		c->now.hi_ns += leap + rnd_below(SIM_D);
	}
	if (m == CLOCK_HOST_JUMPS && grantor && rnd_below(3000) == 0) {
		uint64_t leap = 10 * SIM_D; /* S13: undetected, the host is trusted */
		c->now.lo_ns += leap;
		c->now.hi_ns += leap;
	}
}

static void sim_send(struct sim *s, uint64_t t, int grant, uint32_t holder, uint32_t grantor,
		     uint64_t round)
{
	if (rnd_below(10) == 0 || s->n_msgs == SIM_MSGS)
		return; /* lost */
	s->msgs[s->n_msgs++] = (struct sim_msg){.deliver = t + rnd_below(SIM_D / STEP_NS / 2),
						.grant = grant,
						.holder = holder,
						.grantor = grantor,
						.round = round};
}

/* Runs one schedule; returns the number of steps at which two holders were valid at once. */
/* self_grant: holder i is replica i, a grantor too (the leader lease): it counts itself, after
 * binding its own grantor at the same reading of its one clock, and asks the others. */
static unsigned sim_run(enum clock_model model, uint32_t module_rho, uint64_t seed, struct sim *s,
			bool self_grant)
{
	memset(s, 0, sizeof(*s));
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	s->model = model;
	for (int i = 0; i < SIM_G; i++) {
		uint64_t off = rnd_below(1000000 * MS); /* arbitrary offsets between replicas */
		s->gc[i].now = at(off, off + rnd_below(MS), 0);
		clock_rerate(&s->gc[i], model, true);
		lease_grantor_init(&s->g[i], module_rho);
	}
	for (int i = 0; i < SIM_H; i++) {
		uint64_t off = rnd_below(1000000 * MS);
		s->hc[i].now = at(off, off + rnd_below(MS), 0);
		clock_rerate(&s->hc[i], model, false);
		assert_int_equal(lease_quorum_init(&s->h[i], SIM_WQ,
						   self_grant ? (uint32_t)i : LEASE_NO_SELF, SIM_D,
						   module_rho),
				 0);
	}
	unsigned overlaps = 0;
	for (uint64_t t = 0; t < SIM_STEPS; t++) {
		for (int i = 0; i < SIM_G; i++)
			clock_step(&s->gc[i], model, true);
		for (uint32_t i = 0; i < SIM_H; i++) {
			clock_step(&s->hc[i], model, false);
			if (rnd_below(300) == 0)
				s->wants[i] = !s->wants[i];
			/* a holder that stops wanting stops renewing; its lease runs out */
			if (s->wants[i] && rnd_below(20) == 0) {
				struct sim_clock *c = self_grant ? &s->gc[i] : &s->hc[i];
				if (self_grant &&
				    lease_grant(&s->g[i], i, SIM_D, c->now, NULL) != LEASE_GRANTED)
					continue; /* bound to another holder: cannot lead */
				uint64_t round = lease_quorum_send(&s->h[i], c->now);
				for (uint32_t j = 0; j < SIM_G; j++)
					if (!self_grant || j != i)
						sim_send(s, t, 0, i, j, round);
			}
		}
		for (size_t k = 0; k < s->n_msgs;) {
			struct sim_msg m = s->msgs[k];
			if (m.deliver > t) {
				k++;
				continue;
			}
			s->msgs[k] = s->msgs[--s->n_msgs];
			if (!m.grant) {
				if (lease_grant(&s->g[m.grantor], m.holder, SIM_D,
						s->gc[m.grantor].now, NULL) == LEASE_GRANTED)
					sim_send(s, t, 1, m.holder, m.grantor, m.round);
			} else {
				struct sim_clock *c =
					self_grant ? &s->gc[m.holder] : &s->hc[m.holder];
				(void)lease_quorum_grant(&s->h[m.holder], m.grantor, m.round,
							 c->now);
			}
		}
		unsigned valid = 0;
		for (int i = 0; i < SIM_H; i++) {
			struct sim_clock *c = self_grant ? &s->gc[i] : &s->hc[i];
			if (lease_quorum_valid(&s->h[i], c->now)) {
				valid++;
				s->valid_steps[i]++;
			}
		}
		if (valid > 1)
			overlaps++;
	}
	return overlaps;
}

static void test_exclusivity_within_bounds(void **state)
{
	(void)state;
	struct sim *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	/* separate holders on the tee.h clock and on a raw clock; leaders granting to themselves */
	const enum clock_model models[] = {CLOCK_TEE, CLOCK_RAW, CLOCK_TEE, CLOCK_RAW};
	for (size_t m = 0; m < 4; m++) {
		uint64_t held[SIM_H] = {0};
		for (uint64_t seed = 1; seed <= 60; seed++) {
			unsigned overlaps = sim_run(models[m], SIM_RHO, seed, s, m >= 2);
			if (overlaps)
				fail_msg("model %zu seed %llu: %u steps with two holders", m,
					 (unsigned long long)seed, overlaps);
			for (int i = 0; i < SIM_H; i++)
				held[i] += s->valid_steps[i];
		}
		/* not vacuous: both holders held the lease for a good share of the time */
		for (int i = 0; i < SIM_H; i++)
			assert_true(held[i] > 60 * SIM_STEPS / 20);
	}
	free(s);
}

static void test_exclusivity_negative_controls(void **state)
{
	(void)state;
	struct sim *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	/* Out of bounds (clock rates beyond rho, undetected host jumps under trust_host_clock):
	 * each must break exclusivity somewhere. (Dropping the rho padding on a raw clock also
	 * breaks containment, but by a margin too thin for random schedules to hit reliably:
	 * test_containment_random shows it at the rate extremes.) */
	const struct {
		enum clock_model model;
		uint32_t module_rho;
	} cases[] = {{CLOCK_FAST_GRANTOR, SIM_RHO},
		     {CLOCK_SLOW_HOLDER, SIM_RHO},
		     {CLOCK_HOST_JUMPS, SIM_RHO}};
	for (size_t m = 0; m < sizeof(cases) / sizeof(cases[0]); m++) {
		unsigned bad_seeds = 0;
		for (uint64_t seed = 1; seed <= 60; seed++)
			if (sim_run(cases[m].model, cases[m].module_rho, seed, s, false) > 0)
				bad_seeds++;
		print_message("out-of-bounds case %zu: %u of 60 schedules violate exclusivity\n", m,
			      bad_seeds);
		if (bad_seeds == 0)
			fail_msg("case %zu: no violation found", m);
	}
	free(s);
}

/* The invariant directly: one grant, random clocks within the tee.h bounds or a raw rate within
 * rho; the holder's last valid real instant is before the grantor's promise ends. */
static void test_containment_random(void **state)
{
	(void)state;
	/* Negative control: without the padding, a raw clock at its rate extremes (holder slow by
	 * rho, grantor fast by rho, granted at the send instant) escapes the promise. */
	{
		const uint64_t d = 100 * MS, rho = 10000, lo_rate = 1000000 + rho,
			       hi_rate = 1000000 - rho;
		uint64_t h_end = (d * 1000000 + hi_rate - 1) / hi_rate; /* unpadded holder */
		uint64_t g_end = (d * 1000000 + lo_rate - 1) / lo_rate; /* unpadded grantor */
		assert_true(h_end > g_end);
		h_end = (lease_holder_span_ns(d, rho) * 1000000 + hi_rate - 1) / hi_rate;
		g_end = (lease_grantor_wait_ns(d, rho) * 1000000 + lo_rate - 1) / lo_rate;
		assert_true(h_end <= g_end);
	}
	rng_state = 12345;
	for (int it = 0; it < 3000; it++) {
		bool raw = it % 2;
		uint32_t rho = (uint32_t)(10 * rnd_below(5000)); /* up to 5% */
		uint64_t d = 1 + rnd_below(50 * MS);
		/* real times in ns: send at 0, grant at g; rates in ppm */
		uint64_t g_real = rnd_below(2 * d);
		uint64_t r = rho;
		uint64_t hi_rate =
			raw ? 1000000 - r + rnd_below(2 * r + 1) : 1000000 + rnd_below(3 * r + 1);
		uint64_t lo_rate =
			raw ? 1000000 - r + rnd_below(2 * r + 1) : 1000000 - rnd_below(3 * r + 1);
		/* holder: valid while hi_rate * t / 1e6 < span; last valid real t */
		uint64_t span = lease_holder_span_ns(d, rho);
		/* smallest t with hi_rate * t >= span * 1e6 */
		unsigned __int128 need = (unsigned __int128)span * 1000000;
		uint64_t h_end = (uint64_t)((need + hi_rate - 1) / hi_rate);
		/* grantor: live while lo_rate * (t - g) / 1e6 < wait, exact rounding down of lo */
		uint64_t wait = lease_grantor_wait_ns(d, rho);
		unsigned __int128 needg = (unsigned __int128)wait * 1000000;
		uint64_t g_end = g_real + (uint64_t)((needg + lo_rate - 1) / lo_rate);
		/* the holder is valid on [max(g, ...), h_end): contained if h_end <= g_end */
		if (h_end > g_real)
			assert_true(h_end <= g_end);
		/* and through the module's own functions at the boundary instant */
		struct lease_quorum q;
		struct lease_grantor gr;
		assert_int_equal(lease_quorum_init(&q, 1, LEASE_NO_SELF, d, rho), 0);
		lease_grantor_init(&gr, rho);
		uint64_t round = lease_quorum_send(&q, at(0, 0, 0));
		assert_int_equal(lease_grant(&gr, 1, d, at(0, 0, 0), NULL), LEASE_GRANTED);
		assert_true(lease_quorum_grant(&q, 0, round, at(0, 0, 0)));
		uint64_t t = h_end ? h_end - 1 : 0; /* last real ns the holder may be valid */
		uint64_t hi = (uint64_t)((unsigned __int128)t * hi_rate / 1000000);
		if (lease_quorum_valid(&q, at(0, hi, 0)) && t >= g_real) {
			uint64_t lo =
				(uint64_t)((unsigned __int128)(t - g_real) * lo_rate / 1000000);
			assert_true(lease_grantor_bound(&gr, at(lo, lo, 0), NULL));
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * S13: a follower's host clock jumps forward (leader lease)
 * ------------------------------------------------------------------------------------------- */

/* Returns the number of real ms at which B supported a new ballot while A could still serve a
 * lease read. */
static unsigned s13_run(bool trust_host_clock)
{
	const uint64_t t_lease = 100 * MS;
	const uint64_t a_off = 3 * MS, b_tsc_off = 900000 * MS, b_host_off = 77 * MS;
	struct lease_leader a;
	struct lease_follower b;
	assert_int_equal(lease_leader_init(&a, 2, 0, t_lease, SIM_RHO), 0);
	lease_follower_init(&b, t_lease, SIM_RHO);
	unsigned bad = 0;
	bool jumped = false, b_supports_new = false;
	for (uint64_t ms = 0; ms < 1000; ms++) {
		uint64_t t = ms * MS;
		struct lease_time at_a = same(t + a_off);
		/* B's trusted clock comes from its TSC; its host clock jumps by 10 leases at 150 ms
		 * and the trusted clock's verifier notices (a taint). */
		if (ms == 150)
			jumped = true;
		struct lease_time at_b =
			trust_host_clock
				? lease_time_from_host(t + b_host_off + (jumped ? 10 * t_lease : 0))
				: at(t + b_tsc_off, t + b_tsc_off, jumped ? 1 : 0);
		/* A heartbeats every 20 ms until 140 ms, B acks at once (same real ms) */
		if (ms <= 140 && ms % 20 == 0) {
			uint64_t hb = lease_leader_heartbeat(&a, at_a);
			if (lease_follower_ack(&b, 1, at_b))
				lease_leader_ack(&a, 1, hb, at_a);
		}
		/* from 150 ms on, candidate C (ballot 2) asks B for support every ms; with B and C
		 * a new leader can commit writes A's lease reads would miss */
		if (ms >= 150 && !b_supports_new && lease_follower_may_support(&b, 2, at_b))
			b_supports_new = true;
		if (b_supports_new && lease_leader_read_ok(&a, at_a))
			bad++;
	}
	return bad;
}

static void test_s13_host_clock_jump(void **state)
{
	(void)state;
	assert_int_equal(s13_run(false), 0);
	assert_true(s13_run(true) > 0);
}

/* ---------------------------------------------------------------------------------------------
 * S12: client lease expiry with replica-specific clocks
 * ------------------------------------------------------------------------------------------- */

static unsigned s12_run(bool trust_host_clock)
{
	const uint64_t ttl_ms = 100;
	const uint64_t a_off = 5 * MS, b_off = 500000 * MS, c1_off = 42 * MS;
	struct lease_table *a_sm, *b_sm; /* replicated state at A and B */
	struct lease_timers a_tm, b_tm;
	struct teems_lease c1;
	assert_int_equal(lease_table_new(&a_sm), 0);
	assert_int_equal(lease_table_new(&b_sm), 0);
	lease_timers_init(&a_tm, SIM_RHO, trust_host_clock);
	lease_timers_init(&b_tm, SIM_RHO, trust_host_clock);
	assert_int_equal(lease_timers_take_office(&a_tm, a_sm, same(a_off)), 0);

	/* t = 10 ms: c1 sends ACQUIRE L 100; A proposes it (stamping its host time only in the
	 * negative control) and it commits and applies at 12 ms at A and B; c1 hears at 13 ms. */
	struct lease_cmd acq = cmd(LEASE_CMD_ACQUIRE, "L", ttl_ms);
	struct teems_lease_clock c1_sent = {10 * MS + c1_off, 10 * MS + c1_off, 0};
	acq.unsafe_host_ns = trust_host_clock ? 11 * MS + a_off : 0;
	struct lease_result ra = apply(a_sm, acq), rb = apply(b_sm, acq);
	assert_int_equal(ra.status, LEASE_OK);
	assert_int_equal(lease_timers_applied(&a_tm, &acq, &ra, same(12 * MS + a_off)), 0);
	(void)rb;
	memset(&c1, 0, sizeof(c1));
	teems_lease_granted(&c1, &c1_sent, ra.ttl_ms, SIM_RHO, ra.token);

	/* A dies at 20 ms; B takes office at 30 ms (B's platform clock started much earlier) */
	unsigned bad = 0;
	bool c2_holds = false;
	for (uint64_t ms = 30; ms < 400; ms++) {
		uint64_t t = ms * MS;
		struct lease_time at_b = same(t + b_off);
		if (ms == 30)
			assert_int_equal(lease_timers_take_office(&b_tm, b_sm, at_b), 0);
		struct lease_expiry due[4];
		size_t n = lease_timers_due(&b_tm, at_b, due, 4);
		for (size_t i = 0; i < n; i++) {
			struct lease_cmd ex = cmd(LEASE_CMD_EXPIRE, "L", due[i].generation);
			struct lease_result r = apply(b_sm, ex);
			assert_int_equal(lease_timers_applied(&b_tm, &ex, &r, at_b), 0);
		}
		/* c2 asks for L every ms */
		if (!c2_holds) {
			struct lease_cmd acq2 = cmd(LEASE_CMD_ACQUIRE, "L", ttl_ms);
			acq2.unsafe_host_ns = trust_host_clock ? t + b_off : 0;
			struct lease_result r = apply(b_sm, acq2);
			if (r.status == LEASE_OK) {
				c2_holds = true;
				assert_int_equal(r.token, 2);
				assert_int_equal(lease_timers_applied(&b_tm, &acq2, &r, at_b), 0);
			}
		}
		struct teems_lease_clock at_c1 = {t + c1_off, t + c1_off, 0};
		if (c2_holds && teems_lease_valid(&c1, &at_c1))
			bad++;
	}
	assert_true(c2_holds); /* not vacuous: c2 got L in the end */
	lease_timers_free(&a_tm);
	lease_timers_free(&b_tm);
	lease_table_free(a_sm);
	lease_table_free(b_sm);
	return bad;
}

static void test_s12_replica_clocks(void **state)
{
	(void)state;
	assert_int_equal(s12_run(false), 0);
	assert_true(s12_run(true) > 0);
}

/* ---------------------------------------------------------------------------------------------
 * Allocation failures
 * ------------------------------------------------------------------------------------------- */

static int alloc_scenario(void)
{
	struct lease_table *t = NULL;
	struct lease_timers tm;
	lease_timers_init(&tm, 1000, false);
	int err = lease_table_new(&t);
	if (err)
		return err;
	for (int i = 0; i < 20 && !err; i++) {
		char name[8];
		snprintf(name, sizeof(name), "n%d", i);
		struct lease_cmd c = cmd(LEASE_CMD_ACQUIRE, name, 10);
		struct lease_result r;
		err = lease_table_apply(t, &c, &r);
		if (err) {
			/* the table is unchanged: the name is unknown */
			lease_table_info(t, name, strlen(name), &r);
			assert_int_equal(r.status, LEASE_NOT_FOUND);
			break;
		}
		assert_int_equal(r.status, LEASE_OK);
	}
	if (!err) {
		err = lease_timers_take_office(&tm, t, same(0));
		if (err) {
			assert_false(tm.in_office);
			assert_int_equal(tm.n, 0);
		} else {
			assert_int_equal(tm.n, 20);
			struct lease_cmd c = cmd(LEASE_CMD_ACQUIRE, "late", 10);
			struct lease_result r;
			err = lease_table_apply(t, &c, &r);
			if (!err)
				err = lease_timers_applied(&tm, &c, &r, same(1));
		}
	}
	lease_timers_free(&tm);
	lease_table_free(t);
	return err;
}

static void test_alloc_failures(void **state)
{
	(void)state;
	unsigned long start = teems_alloc_count();
	assert_int_equal(alloc_scenario(), 0);
	unsigned long total = teems_alloc_count() - start;
	assert_true(total > 10);
	for (unsigned long nth = 0; nth < total; nth++) {
		teems_alloc_fault((long)nth, 0);
		int err = alloc_scenario();
		teems_alloc_fault(-1, 0);
		assert_true(err == 0 || err == TEEMS_ENOMEM);
		/* only the single failed allocation fails: the run reports it */
		assert_int_equal(err, TEEMS_ENOMEM);
	}
	teems_alloc_fault(0, 1);
	assert_int_equal(alloc_scenario(), TEEMS_ENOMEM);
	teems_alloc_fault(-1, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arithmetic),
		cmocka_unit_test(test_wait_and_taint),
		cmocka_unit_test(test_grantor_promise),
		cmocka_unit_test(test_holder_single),
		cmocka_unit_test(test_holder_quorum),
		cmocka_unit_test(test_leader_lease),
		cmocka_unit_test(test_cfg_lease_s15),
		cmocka_unit_test(test_client_state_machine),
		cmocka_unit_test(test_client_timers),
		cmocka_unit_test(test_public_holder_api),
		cmocka_unit_test(test_containment_random),
		cmocka_unit_test(test_exclusivity_within_bounds),
		cmocka_unit_test(test_exclusivity_negative_controls),
		cmocka_unit_test(test_s12_replica_clocks),
		cmocka_unit_test(test_s13_host_clock_jump),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
