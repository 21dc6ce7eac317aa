/* RR-ABD core (src/core/abd.h), driven by the deterministic in-test network of abd_harness.h.
 * Every message goes through msg_encode/msg_decode; every synced WRITE_ACK is checked against
 * the sender's durable WAL; client histories are checked with teems_lincheck (linearizability
 * and monotonic reads).
 *
 * Tests:
 *   normal          reads and writes under (3,1,1) (4,1,2) (5,2,2) (7,2,4) (3,1,0) (5,2,0),
 *                   sync rr/always/none; rounds per read and write measured (printed)
 *   random          drops, duplicates, delays, delayed fsync over seeds (ABD_SEEDS=n for more),
 *                   also with restarts on rolled-back WALs, register, fence, recovery (one
 *                   replica at a time); ABD_UNSAFE=<flags> runs them with unsafe switches
 *                   (a manual negative control: they must then fail)
 *   S18             two writes through one coordinator after the same highest timestamp
 *   sync rule       both sides: synced acks wait for the fsync; the coordinator counts its own
 *                   ack only after its own fsync (rr); W_Q - M_R synced acks needed; always/none
 *   stabilization   a read of a stable value completes in one round from R_Q(0) replies; the
 *                   same read of an unstabilized value cannot
 *   negative        (4,1,2) with ABD_UNSAFE_NO_STABILIZE: disjoint read quorums make reads go
 *                   backwards (the checker catches it); with stabilization they do not
 *                   (3,1,1) rollback of B: ABD_UNSAFE_NO_RECOVERY and ABD_UNSAFE_CFT_QUORUMS
 *                   count the rolled-back B in a read quorum and lose a write; safe otherwise
 *   unanimous       W_Q fresh replies at the highest timestamp: one round, then stable
 *   S1              late ack of a previous incarnation: safe with the fence (begin recovery
 *                   T_fence later), caught without it; also saved by the discard rule alone
 *   S6              a read through a forked old incarnation discards it (breaks with
 *                   ABD_UNSAFE_NO_INCARNATION_CHECK)
 *   recovery        digests first; only differing ranges are transferred (counted), paged
 *   suspicious      a suspicious replica never stores or acks; its replies are flagged
 *   interface       configuration lease (refused without it; an op whose lease lapses is
 *                   abandoned: the core's half of S15), halt (configuration and registration
 *                   vectors), taint, T_op, persist records, restart on every prefix, bad input
 *   discard on configuration   a reply of (X, old) counted, then abd_set_config shows
 *                   (X, new), then the quorum decides: write, read and recovery quorums never
 *                   count (X, old); they wait for (X, new)
 *   allocation      every failing allocation surfaces as TEEMS_ENOMEM, nothing leaks */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "abd_harness.h"
#include "common/alloc.h"
#include "teems/err.h"

#define T_OP (500 * H_MS)
#define T_FENCE (600 * H_MS) /* > T_op: the ABD part of (T_op + T_lease + T_cfg)(1 + rho) */

static const unsigned configs[][3] = {{3, 1, 1}, {4, 1, 2}, {5, 2, 2},
				      {7, 2, 4}, {3, 1, 0}, {5, 2, 0}};

static bool get_is(struct h_cluster *c, uint64_t id, const char *want)
{
	struct h_pending *p = h_req(c, id);

	if (!p->done || p->outcome != ABD_OUTCOME_OK)
		return false;
	if (!want)
		return !p->found;
	return p->found && p->len == strlen(want) && !memcmp(p->value, want, p->len);
}

static uint64_t run_op(struct h_cluster *c, int node, uint64_t client, enum abd_op op,
		       const char *key, const char *value)
{
	uint64_t id = h_op(c, node, client, op, key, value);

	h_run_until_done(c, id, 2 * T_OP);
	return id;
}

/* ---- normal case ---- */

static void normal_case(unsigned n, unsigned f, unsigned m_r, enum abd_sync_policy sync, bool print)
{
	struct h_cluster c;
	uint64_t id;
	char val[32];
	unsigned w_rounds = 0, writes = 0, r_rounds = 0, reads = 0, r1 = 0;

	h_init(&c, n, f, m_r, 1, sync, 0);
	c.max_delay = 2 * H_MS;
	for (int k = 0; k < 30; k++) {
		int node = k % (int)n;
		const char *key = (k % 3) ? "x" : "y";

		snprintf(val, sizeof(val), "v%d", k);
		id = run_op(&c, node, 1, ABD_SET, key, val);
		assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
		w_rounds += h_req(&c, id)->rounds;
		writes++;
		h_run(&c, 5 * H_MS); /* STABILIZE arrives */
		id = run_op(&c, (node + 1) % (int)n, 2, ABD_GET, key, NULL);
		assert_true(get_is(&c, id, val));
		r_rounds += h_req(&c, id)->rounds;
		r1 += h_req(&c, id)->rounds == 1;
		reads++;
		if (k % 10 == 9) {
			id = run_op(&c, node, 3, ABD_DEL, key, NULL);
			assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
			id = run_op(&c, (node + 2) % (int)n, 2, ABD_GET, key, NULL);
			assert_true(get_is(&c, id, NULL));
		}
	}
	/* concurrent clients on one key */
	for (int round = 0; round < 5; round++) {
		uint64_t ids[8];
		int m = 0;

		for (unsigned i = 0; i < n && m < 8; i++) {
			snprintf(val, sizeof(val), "c%d-%u", round, i);
			ids[m++] = h_op(&c, (int)i, 10 + i, i % 2 ? ABD_SET : ABD_GET, "z",
					i % 2 ? val : NULL);
		}
		for (int k = 0; k < m; k++)
			assert_true(h_run_until_done(&c, ids[k], 2 * T_OP));
	}
	assert_false(c.order_violation);
	assert_int_equal(h_check(&c, true), 0);
	assert_int_equal(w_rounds, 2 * writes);
	assert_int_equal(r1, reads); /* every read of a stabilized value: one round */
	if (print)
		printf("# rounds (N=%u,F=%u,M_R=%u, sync=%d): write %.2f, read %.2f "
		       "(stable one-round reads %u/%u)\n",
		       n, f, m_r, (int)sync, (double)w_rounds / writes, (double)r_rounds / reads,
		       r1, reads);
	h_free(&c);
}

static void test_normal(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++) {
		normal_case(configs[k][0], configs[k][1], configs[k][2], ABD_SYNC_RR, true);
		normal_case(configs[k][0], configs[k][1], configs[k][2], ABD_SYNC_ALWAYS, false);
		normal_case(configs[k][0], configs[k][1], configs[k][2], ABD_SYNC_NONE, false);
	}
}

/* Reads right after writes, without waiting for STABILIZE: some take the unanimous path or
 * write back; all are linearizable. Rounds of the whole mix are printed. */
static void test_rounds_mix(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++) {
		struct h_cluster c;
		const struct abd_stats *st;
		uint64_t reads = 0, rr = 0, writes = 0, wr = 0, stable = 0, unan = 0, wb = 0;
		char val[32];

		h_init(&c, configs[k][0], configs[k][1], configs[k][2], 2, ABD_SYNC_RR, 0);
		c.max_delay = 3 * H_MS;
		for (int i = 0; i < 40; i++) {
			uint64_t w, r;

			snprintf(val, sizeof(val), "m%d", i);
			w = h_op(&c, i % c.n, 1, ABD_SET, "k", val);
			h_run(&c, 2 * H_MS);
			r = h_op(&c, (i + 1) % c.n, 2, ABD_GET, "k", NULL);
			assert_true(h_run_until_done(&c, w, 2 * T_OP));
			assert_true(h_run_until_done(&c, r, 2 * T_OP));
		}
		for (int i = 0; i < c.n; i++) {
			st = abd_stats(c.nodes[i].a);
			reads += st->reads;
			rr += st->read_rounds;
			writes += st->writes;
			wr += st->write_rounds;
			stable += st->reads_stable;
			unan += st->reads_unanimous;
			wb += st->reads_write_back;
		}
		assert_int_equal(h_check(&c, true), 0);
		printf("# concurrent mix (N=%u,F=%u,M_R=%u): write %.2f rounds, read %.2f rounds "
		       "(stable %llu, unanimous %llu, write-back %llu)\n",
		       configs[k][0], configs[k][1], configs[k][2], (double)wr / (double)writes,
		       (double)rr / (double)reads, (unsigned long long)stable,
		       (unsigned long long)unan, (unsigned long long)wb);
		h_free(&c);
	}
}

/* ---- random faults ---- */

static void random_case(unsigned n, unsigned f, unsigned m_r, uint64_t seed,
			enum abd_sync_policy sync, bool restarts)
{
	struct h_cluster c;
	uint64_t cur[4] = {0};
	int issued = 0, ok = 0, restarting = -1, n_restarts = 0;
	uint64_t begin_at = 0, next_restart;
	char val[32];

	/* ABD_UNSAFE=<flags> (manual negative control): the random tests then fail */
	h_init(&c, n, f, m_r, seed, sync,
	       getenv("ABD_UNSAFE") ? (unsigned)strtoul(getenv("ABD_UNSAFE"), NULL, 0) : 0);
	c.drop_pct = 8;
	c.dup_pct = 5;
	c.max_delay = 20 * H_MS;
	for (int i = 0; i < c.n; i++)
		c.nodes[i].sync = (h_rand(&c) % 2) ? H_SYNC_DELAY : H_SYNC_NOW;
	next_restart = c.now + 100 * H_MS;
	while (issued < 120 || cur[0] || cur[1] || cur[2] || cur[3]) {
		/* one replica at a time crashes and restarts on a random synced prefix (a rollback,
		 * within M_R), registers, fences, recovers */
		if (restarts && restarting < 0 && c.now >= next_restart) {
			int i = (int)(h_rand(&c) % n);
			size_t synced = 0;

			while (synced < c.nodes[i].n_wal &&
			       c.nodes[i].wal[synced].seq <= c.nodes[i].synced)
				synced++;
			h_restart(&c, i, (long)(synced ? h_rand(&c) % (synced + 1) : 0));
			h_register(&c, i, 1000 + (uint64_t)n_restarts++, (1ull << c.n) - 1);
			restarting = i;
			begin_at = c.now + T_FENCE;
		}
		if (restarting >= 0 && begin_at && c.now >= begin_at) {
			h_begin_recovery(&c, restarting);
			begin_at = 0;
		}
		if (restarting >= 0 && c.nodes[restarting].recovered) {
			restarting = -1;
			next_restart = c.now + (50 + h_rand(&c) % 200) * H_MS;
		}
		for (int cl = 0; cl < 4; cl++) {
			struct h_pending *p = cur[cl] ? h_req(&c, cur[cl]) : NULL;

			if (p && !p->done)
				continue;
			if (p && p->outcome == ABD_OUTCOME_OK)
				ok++;
			cur[cl] = 0;
			if (issued >= 120)
				continue;
			{
				uint64_t r = h_rand(&c);
				const char *key = (r >> 8) % 2 ? "a" : "b";
				enum abd_op op = r % 5 == 0  ? ABD_DEL
						 : r % 5 < 3 ? ABD_SET
							     : ABD_GET;

				snprintf(val, sizeof(val), "s%llu-%d", (unsigned long long)seed,
					 issued);
				cur[cl] = h_op(&c, (int)((r >> 16) % n), (uint64_t)cl + 1, op, key,
					       op == ABD_SET ? val : NULL);
				issued++;
			}
		}
		h_run(&c, H_MS);
	}
	assert_false(c.order_violation);
	if (h_check(&c, true)) {
		fprintf(stderr, "seed %llu config (%u,%u,%u)\n", (unsigned long long)seed, n, f,
			m_r);
		fail();
	}
	assert_true(ok > (restarts ? 30 : 60));
	if (restarts)
		assert_true(n_restarts >= 1);
	h_free(&c);
}

static void test_random(void **state)
{
	unsigned seeds = getenv("ABD_SEEDS") ? (unsigned)atoi(getenv("ABD_SEEDS")) : 6;

	(void)state;
	for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++)
		for (unsigned s = 1; s <= seeds; s++)
			random_case(configs[k][0], configs[k][1], configs[k][2], s,
				    s % 3 == 0 ? ABD_SYNC_ALWAYS : ABD_SYNC_RR, false);
}

/* Random faults plus restarts with rollbacks (one replica at a time, M_R >= 1). */
static void test_random_restarts(void **state)
{
	unsigned seeds = getenv("ABD_SEEDS") ? (unsigned)atoi(getenv("ABD_SEEDS")) : 6;

	(void)state;
	for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++)
		for (unsigned s = 1; s <= seeds && configs[k][2] > 0; s++)
			random_case(configs[k][0], configs[k][1], configs[k][2], 100 + s,
				    s % 3 == 0 ? ABD_SYNC_ALWAYS : ABD_SYNC_RR, true);
}

/* ---- S18 ---- */

static void test_s18(void **state)
{
	struct h_cluster c;
	uint64_t w1, w2, id;
	struct h_pending *p1, *p2;
	struct msg_timestamp t1, t2;
	char val[8];

	(void)state;
	h_init(&c, 3, 1, 1, 3, ABD_SYNC_RR, 0);
	for (int k = 1; k <= 4; k++) {
		snprintf(val, sizeof(val), "b%d", k);
		assert_int_equal(h_req(&c, run_op(&c, 1, 9, ABD_SET, "k", val))->outcome,
				 ABD_OUTCOME_OK);
	}
	h_run(&c, 5 * H_MS);
	/* both writes through A, in the same instant: both read (4, B) */
	w1 = h_op(&c, 0, 1, ABD_SET, "k", "one");
	w2 = h_op(&c, 0, 2, ABD_SET, "k", "two");
	assert_true(h_run_until_done(&c, w1, T_OP));
	assert_true(h_run_until_done(&c, w2, T_OP));
	p1 = h_req(&c, w1);
	p2 = h_req(&c, w2);
	assert_int_equal(p1->outcome, ABD_OUTCOME_OK);
	assert_int_equal(p2->outcome, ABD_OUTCOME_OK);
	/* the timestamps: recover them from the WAL of A (the reply's ts) */
	t1 = c.nodes[0].wal[c.nodes[0].n_wal - 2].ts;
	t2 = c.nodes[0].wal[c.nodes[0].n_wal - 1].ts;
	assert_int_equal(t1.seq, 5);
	assert_int_equal(t2.seq, 5);
	assert_int_not_equal(msg_timestamp_cmp(&t1, &t2), 0);
	/* successive reads never alternate */
	for (int k = 0; k < 9; k++) {
		id = run_op(&c, k % 3, 3, ABD_GET, "k", NULL);
		assert_true(get_is(&c, id, "two"));
		h_run(&c, 2 * H_MS);
	}
	assert_int_equal(h_check(&c, true), 0);
	h_free(&c);
}

/* ---- sync rule ---- */

static enum h_verdict drop_to_2(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)m;
	return to_node == 2 ? H_DROP : H_DELIVER;
}

static void test_sync_rule(void **state)
{
	struct h_cluster c;
	uint64_t id;

	(void)state;
	/* (3,1,1) rr: W_Q = 2, one synced ack needed; the coordinator A counts itself only after
	 * its own fsync */
	h_init(&c, 3, 1, 1, 4, ABD_SYNC_RR, 0);
	for (int i = 0; i < 3; i++)
		c.nodes[i].sync = H_SYNC_HOLD;
	c.filter = drop_to_2;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v"); /* timestamps: no fsync needed */
	h_run(&c, 10 * H_MS);
	assert_false(h_req(&c, id)->done); /* B acked volatile only, A not synced */
	assert_true(c.sent_by_type[MSG_ABD_WRITE_ACK] >= 1);
	h_sync(&c, 0);
	h_run(&c, 5 * H_MS);
	assert_true(h_req(&c, id)->done); /* {A synced, B volatile}: 1 >= W_Q - M_R */
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
	assert_false(c.order_violation);
	h_free(&c);

	/* the other side: B's synced ack leaves only after B's fsync; A synced at once */
	h_init(&c, 3, 1, 1, 4, ABD_SYNC_RR, 0);
	c.nodes[1].sync = H_SYNC_HOLD;
	c.nodes[2].sync = H_SYNC_HOLD;
	c.filter = drop_to_2;
	id = h_op(&c, 1, 1, ABD_SET, "k", "v"); /* coordinator B: not synced */
	h_run(&c, 10 * H_MS);
	assert_false(h_req(&c, id)->done); /* A's synced ack, B itself not counted */
	h_sync(&c, 1);
	h_run(&c, 5 * H_MS);
	assert_true(h_req(&c, id)->done);
	assert_false(c.order_violation);
	h_free(&c);

	/* (4,1,2): W_Q = 3, M_R = 2: one synced ack of three; always: no volatile acks at all */
	h_init(&c, 4, 1, 2, 5, ABD_SYNC_ALWAYS, 0);
	for (int i = 1; i < 4; i++)
		c.nodes[i].sync = H_SYNC_HOLD;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, 10 * H_MS);
	assert_false(h_req(&c, id)->done);
	assert_int_equal(c.sent_by_type[MSG_ABD_WRITE_ACK], 0);
	h_sync(&c, 1);
	h_run(&c, 5 * H_MS);
	assert_false(h_req(&c, id)->done); /* {A, B}: 2 < W_Q */
	h_sync(&c, 2);
	h_run(&c, 5 * H_MS);
	assert_true(h_req(&c, id)->done);
	assert_false(c.order_violation);
	h_free(&c);

	/* a coordinator whose own copy is not durable reads from the others */
	h_init(&c, 3, 1, 1, 4, ABD_SYNC_RR, 0);
	run_op(&c, 0, 1, ABD_SET, "k", "v0");
	c.nodes[0].sync = H_SYNC_HOLD;
	c.nodes[2].sync = H_SYNC_HOLD;
	c.filter = drop_to_2;
	id = run_op(&c, 1, 1, ABD_SET, "k", "v1"); /* A holds v1 volatile */
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
	c.filter = NULL;
	id = run_op(&c, 0, 2, ABD_GET, "k", NULL);
	assert_true(get_is(&c, id, "v1"));
	assert_int_equal(h_check(&c, true), 0);
	assert_false(c.order_violation);
	h_free(&c);

	/* none: volatile acks suffice, nobody syncs */
	h_init(&c, 4, 1, 2, 5, ABD_SYNC_NONE, 0);
	for (int i = 0; i < 4; i++)
		c.nodes[i].sync = H_SYNC_HOLD;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, 10 * H_MS);
	assert_true(h_req(&c, id)->done);
	h_free(&c);

	/* rr, (4,1,2): W_Q - M_R = 1 synced among the three acks; nobody synced: no commit */
	h_init(&c, 4, 1, 2, 5, ABD_SYNC_RR, 0);
	for (int i = 0; i < 4; i++)
		c.nodes[i].sync = H_SYNC_HOLD;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, 10 * H_MS);
	assert_false(h_req(&c, id)->done); /* three volatile acks */
	h_sync(&c, 3);
	h_run(&c, 5 * H_MS);
	assert_true(h_req(&c, id)->done);
	assert_false(c.order_violation);
	h_free(&c);
}

/* ---- stabilization ---- */

static int only_peer = -1;
static bool drop_stabilize;

static enum h_verdict reads_to_one(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	if (m->type == MSG_ABD_STABILIZE && drop_stabilize)
		return H_DROP;
	if (m->type == MSG_ABD_QUERY && from == 3 && to_node != only_peer)
		return H_DROP;
	return H_DELIVER;
}

static void test_stabilize_one_round(void **state)
{
	for (int stab = 1; stab >= 0; stab--) {
		struct h_cluster c;
		uint64_t id;

		(void)state;
		/* (4,1,2): W_Q = 3, R_Q(0) = 2; D (3) reads with replies from itself and A */
		h_init(&c, 4, 1, 2, 6, ABD_SYNC_RR, 0);
		only_peer = 0;
		drop_stabilize = !stab;
		c.filter = reads_to_one;
		assert_int_equal(h_req(&c, run_op(&c, 1, 1, ABD_SET, "k", "v"))->outcome,
				 ABD_OUTCOME_OK);
		h_run(&c, 5 * H_MS);
		id = h_op(&c, 3, 2, ABD_GET, "k", NULL);
		h_run_until_done(&c, id, 2 * T_OP);
		if (stab) {
			assert_true(get_is(&c, id, "v"));
			assert_int_equal(h_req(&c, id)->rounds, 1);
			assert_int_equal(abd_stats(c.nodes[3].a)->reads_stable, 1);
		} else {
			/* two replies of an unstable value: neither stable nor W_Q unanimous */
			assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
		}
		assert_int_equal(h_check(&c, true), 0);
		h_free(&c);
	}
	drop_stabilize = false;
}

/* ---- negative control: ABD_UNSAFE_NO_STABILIZE with F < M_R ---- */

static enum h_verdict neg_filter(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	/* D's write of v2 reaches nobody */
	if (m->type == MSG_ABD_WRITE && from == 3)
		return H_DROP;
	/* read 1 at C: D answers first, A and B later */
	if (m->type == MSG_ABD_QUERY && from == 2 && to_node != 3)
		return H_PARK;
	/* read 2 at A: only B answers at first */
	if (m->type == MSG_ABD_QUERY && from == 0 && to_node != 1)
		return H_PARK;
	return H_DELIVER;
}

static int negative_run(unsigned unsafe)
{
	struct h_cluster c;
	uint64_t w2, r1, r2;
	int bad;

	h_init(&c, 4, 1, 2, 7, ABD_SYNC_RR, unsafe);
	assert_int_equal(h_req(&c, run_op(&c, 0, 1, ABD_SET, "k", "v1"))->outcome, ABD_OUTCOME_OK);
	h_run(&c, 5 * H_MS);
	c.filter = neg_filter;
	w2 = h_op(&c, 3, 2, ABD_SET, "k", "v2"); /* stored at D only */
	h_run(&c, 5 * H_MS);
	r1 = h_op(&c, 2, 3, ABD_GET, "k", NULL);
	h_run(&c, 3 * H_MS);
	h_unpark(&c, 2, -1, MSG_ABD_QUERY);
	h_run_until_done(&c, r1, T_OP);
	h_run(&c, 10 * H_MS);
	r2 = h_op(&c, 0, 3, ABD_GET, "k", NULL);
	h_run(&c, 3 * H_MS);
	h_unpark(&c, 0, -1, MSG_ABD_QUERY);
	h_run_until_done(&c, r2, T_OP);
	h_run_until_done(&c, w2, 2 * T_OP);
	if (!unsafe) {
		assert_true(get_is(&c, r1, "v2"));
		assert_true(get_is(&c, r2, "v2"));
		assert_int_equal(h_req(&c, r2)->rounds, 1);
	} else {
		assert_true(get_is(&c, r1, "v2"));
		assert_true(get_is(&c, r2, "v1")); /* backwards */
	}
	bad = h_check(&c, false);
	h_free(&c);
	return bad;
}

static void test_negative_no_stabilize(void **state)
{
	(void)state;
	assert_int_equal(negative_run(0), 0);
	assert_int_equal(negative_run(ABD_UNSAFE_NO_STABILIZE), 1);
}

/* ---- negative controls: no recovery, CFT quorums ---- */

static enum h_verdict nr_filter(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	if (m->type == MSG_ABD_WRITE && to_node == 2)
		return H_DROP; /* v1 reaches A and B only */
	if (m->type == MSG_ABD_QUERY && from == 2 && to_node == 0)
		return H_PARK; /* C's read: A answers late */
	return H_DELIVER;
}

static int rollback_run(unsigned unsafe, bool expect_v1)
{
	struct h_cluster c;
	uint64_t r;
	int bad;

	h_init(&c, 3, 1, 1, 18, ABD_SYNC_RR, unsafe);
	c.filter = nr_filter;
	assert_int_equal(h_req(&c, run_op(&c, 0, 1, ABD_SET, "k", "v1"))->outcome, ABD_OUTCOME_OK);
	h_run(&c, 5 * H_MS);
	h_restart(&c, 1, 0); /* B rolled back to nothing (M_R = 1) */
	r = h_op(&c, 2, 2, ABD_GET, "k", NULL);
	h_run(&c, 10 * H_MS);
	h_unpark(&c, 2, 0, MSG_ABD_QUERY);
	h_run_until_done(&c, r, T_OP);
	if (expect_v1)
		assert_true(get_is(&c, r, "v1"));
	else
		assert_true(get_is(&c, r, NULL));
	bad = h_check(&c, false);
	h_free(&c);
	return bad;
}

static void test_negative_rollback(void **state)
{
	(void)state;
	/* B is suspicious: R_Q(1) = 3 needs A, which has v1 */
	assert_int_equal(rollback_run(0, true), 0);
	/* fresh at once, or suspicion ignored: {C, B} is a quorum and misses v1 */
	assert_int_equal(rollback_run(ABD_UNSAFE_NO_RECOVERY, false), 1);
	assert_int_equal(rollback_run(ABD_UNSAFE_CFT_QUORUMS, false), 1);
}

/* ---- the unanimous read ---- */

static enum h_verdict no_stabilize(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)from;
	if (c->arg && m->type == MSG_ABD_QUERY && to_node == 0)
		return H_DROP; /* the coordinator's copy is stable: keep it out of the read */
	return m->type == MSG_ABD_STABILIZE ? H_DROP : H_DELIVER;
}

static void test_unanimous_read(void **state)
{
	struct h_cluster c;
	uint64_t id;

	(void)state;
	/* (3,1,1): W_Q = 2. The write's STABILIZE is lost; every replica holds the value */
	h_init(&c, 3, 1, 1, 19, ABD_SYNC_RR, 0);
	c.filter = no_stabilize;
	run_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, 10 * H_MS);
	c.arg = &c;
	id = run_op(&c, 1, 2, ABD_GET, "k", NULL);
	c.filter = NULL;
	assert_true(get_is(&c, id, "v"));
	assert_int_equal(h_req(&c, id)->rounds, 1);
	assert_int_equal(abd_stats(c.nodes[1].a)->reads_unanimous, 1);
	h_run(&c, 5 * H_MS);
	/* that read stabilized it: the next read is stable */
	id = run_op(&c, 2, 2, ABD_GET, "k", NULL);
	assert_true(get_is(&c, id, "v"));
	assert_int_equal(abd_stats(c.nodes[2].a)->reads_stable, 1);
	assert_int_equal(h_check(&c, true), 0);
	h_free(&c);
}

/* ---- S1: late ack from the previous incarnation ---- */

static enum h_verdict s1_filter(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	(void)to_node;
	/* B' recovers from {B', C, D, E} */
	if (m->type == MSG_ABD_DIGEST_REQUEST && to_node == 0)
		return H_DROP;
	if (m->type == MSG_ABD_WRITE && from == 0) {
		if (to_node == 1 || to_node == 3)
			return H_PARK; /* B's write (and its ack) and D's write are delayed */
		return H_DROP;	       /* C and E: lost */
	}
	return H_DELIVER;
}

/* mode 0: fence; 1: no fence (violation expected); 2: no fence but A's configuration knows B'
 * (the discard rule alone saves it). */
static int s1_run(int mode)
{
	struct h_cluster c;
	uint64_t w, r, mask;
	int bad;

	h_init(&c, 5, 2, 2, 8, ABD_SYNC_RR, 0);
	c.filter = s1_filter;
	w = h_op(&c, 0, 1, ABD_SET, "k", "w");
	h_run(&c, 5 * H_MS);
	/* B stores w (its ack to A is parked in the network), then crashes and restarts on a
	 * state without w */
	h_unpark(&c, 0, 1, MSG_ABD_WRITE);
	c.filter = NULL;
	h_run(&c, H_MS);
	{
		/* park B's ack: it left B already; find it and park it */
		for (size_t k = 0; k < c.nq; k++)
			if (c.msgs[k].from == 1 && c.msgs[k].type == MSG_ABD_WRITE_ACK)
				c.msgs[k].parked = true;
	}
	c.filter = s1_filter;
	h_restart(&c, 1, 0);
	/* B' registers; the REGISTER's accept quorum leaves out D; A's shell has not fed the
	 * configuration to its ABD core yet (modes 0, 1) */
	mask = (1u << 1) | (1u << 2) | (1u << 4);
	if (mode == 2)
		mask |= 1u << 0;
	h_register(&c, 1, 100, mask);
	if (mode == 0)
		h_run(&c, T_FENCE);
	h_begin_recovery(&c, 1);
	h_run(&c, 50 * H_MS);
	assert_true(c.nodes[1].recovered);
	/* D now receives w and acks; old B's ack arrives too */
	h_unpark(&c, 0, 3, MSG_ABD_WRITE);
	h_unpark(&c, 1, 0, MSG_ABD_WRITE_ACK);
	h_run(&c, 10 * H_MS);
	if (mode == 1)
		assert_int_equal(h_req(&c, w)->outcome, ABD_OUTCOME_OK);
	else if (h_req(&c, w)->done)
		assert_int_not_equal(h_req(&c, w)->outcome, ABD_OUTCOME_OK);
	/* a read from {B', C, E} */
	c.filter = NULL;
	r = h_op(&c, 1, 2, ABD_GET, "k", NULL);
	/* queries to A and D are lost */
	for (size_t k = 0; k < c.nq;)
		if (c.msgs[k].from == 1 && c.msgs[k].type == MSG_ABD_QUERY &&
		    (c.msgs[k].to == 0 || c.msgs[k].to == 3)) {
			free(c.msgs[k].buf);
			c.msgs[k] = c.msgs[--c.nq];
		} else {
			k++;
		}
	c.nodes[0].up = false;
	c.nodes[3].up = false;
	h_run_until_done(&c, r, T_OP);
	c.nodes[0].up = true;
	c.nodes[3].up = true;
	h_run_until_done(&c, w, 2 * T_OP);
	bad = h_check(&c, false);
	h_free(&c);
	return bad;
}

static void test_s1(void **state)
{
	(void)state;
	assert_int_equal(s1_run(0), 0);
	assert_int_equal(s1_run(2), 0);
	assert_int_equal(s1_run(1), 1);
}

/* ---- S6: a read through the old incarnation ---- */

static int s6_fork_node;

static int s6_route(struct h_cluster *c, int from_node, uint16_t to)
{
	(void)c;
	/* X = replica 4. D (3) still reaches the old X; everyone else the new X' */
	if (to == 4)
		return from_node == 3 ? 4 : s6_fork_node;
	return to;
}

static enum h_verdict s6_filter(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)c;
	/* w reaches A, B, X' only */
	if (m->type == MSG_ABD_WRITE && from == 0 && (to_node == 2 || to_node == 3))
		return H_DROP;
	/* D's read reaches C and old X first; A and B later */
	if (m->type == MSG_ABD_QUERY && from == 3 && (to_node == 0 || to_node == 1))
		return H_PARK;
	return H_DELIVER;
}

static int s6_run(unsigned unsafe)
{
	struct h_cluster c;
	uint64_t w, r;
	int bad;

	h_init(&c, 5, 2, 2, 9, ABD_SYNC_RR, unsafe);
	assert_int_equal(h_req(&c, run_op(&c, 0, 1, ABD_SET, "k", "old"))->outcome, ABD_OUTCOME_OK);
	h_run(&c, 5 * H_MS);
	s6_fork_node = h_fork(&c, 4);
	c.route_fn = s6_route;
	/* REGISTER(X') accepted by {A, B, C} */
	h_register(&c, s6_fork_node, 50, (1u << 0) | (1u << 1) | (1u << 2) | (1u << s6_fork_node));
	h_begin_recovery(&c, s6_fork_node);
	h_run(&c, 50 * H_MS);
	assert_true(c.nodes[s6_fork_node].recovered);
	c.filter = s6_filter;
	w = run_op(&c, 0, 1, ABD_SET, "k", "w");
	assert_int_equal(h_req(&c, w)->outcome, ABD_OUTCOME_OK);
	h_drop(&c, -1, -1, MSG_ABD_STABILIZE);
	h_run(&c, 5 * H_MS);
	r = h_op(&c, 3, 2, ABD_GET, "k", NULL);
	h_run(&c, 20 * H_MS);
	h_unpark(&c, 3, -1, MSG_ABD_QUERY);
	h_run_until_done(&c, r, T_OP);
	if (!unsafe) {
		assert_true(get_is(&c, r, "w"));
		assert_true(abd_stats(c.nodes[3].a)->discarded >= 1);
	} else {
		assert_true(get_is(&c, r, "old"));
	}
	bad = h_check(&c, false);
	h_free(&c);
	return bad;
}

static void test_s6(void **state)
{
	(void)state;
	assert_int_equal(s6_run(0), 0);
	assert_int_equal(s6_run(ABD_UNSAFE_NO_INCARNATION_CHECK), 1);
}

/* ---- recovery by digests ---- */

static void small_pages(struct abd_config *cfg)
{
	cfg->page_items = 2;
}

static void test_recovery_digests(void **state)
{
	struct h_cluster c;
	char key[16], val[16];
	size_t keep;
	uint32_t missing_ranges[8];
	int n_missing = 0;
	const struct abd_stats *st;

	(void)state;
	h_cfg_hook = small_pages;
	h_init(&c, 3, 1, 1, 10, ABD_SYNC_RR, 0);
	h_cfg_hook = NULL;
	for (int k = 0; k < 40; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		snprintf(val, sizeof(val), "val%d", k);
		assert_int_equal(h_req(&c, run_op(&c, k % 3, 1, ABD_SET, key, val))->outcome,
				 ABD_OUTCOME_OK);
	}
	h_run(&c, 10 * H_MS);
	keep = c.nodes[2].n_wal;
	/* five more keys, plus two in the same range as key5 */
	for (int k = 40; k < 45; k++) {
		uint32_t rg;
		bool seen = false;

		snprintf(key, sizeof(key), "key%d", k);
		snprintf(val, sizeof(val), "val%d", k);
		assert_int_equal(h_req(&c, run_op(&c, 0, 1, ABD_SET, key, val))->outcome,
				 ABD_OUTCOME_OK);
		rg = abd_range_of(c.nodes[0].a, (const uint8_t *)key, (uint32_t)strlen(key));
		for (int i = 0; i < n_missing; i++)
			seen |= missing_ranges[i] == rg;
		if (!seen)
			missing_ranges[n_missing++] = rg;
	}
	h_run(&c, 10 * H_MS);
	/* C is rolled back to before the five writes */
	h_restart(&c, 2, (long)keep);
	assert_true(abd_suspicious(c.nodes[2].a));
	h_register(&c, 2, 7, 7);
	h_begin_recovery(&c, 2);
	h_run(&c, 100 * H_MS);
	assert_true(c.nodes[2].recovered);
	assert_false(abd_suspicious(c.nodes[2].a));
	st = abd_stats(c.nodes[2].a);
	/* A and B have identical digests: each differing range is fetched once */
	assert_int_equal(st->ranges_fetched, (uint64_t)n_missing);
	assert_int_equal(st->ranges_differing, 2 * (uint64_t)n_missing);
	assert_int_equal(st->items_adopted, 5);
	assert_true(st->range_pages >= st->ranges_fetched);
	assert_int_equal(abd_keys(c.nodes[2].a), 45);
	for (int k = 0; k < 45; k++) {
		bool stable;
		const uint8_t *v;
		uint32_t len;

		snprintf(key, sizeof(key), "key%d", k);
		snprintf(val, sizeof(val), "val%d", k);
		assert_true(abd_lookup(c.nodes[2].a, (const uint8_t *)key, (uint32_t)strlen(key),
				       NULL, &stable, NULL, &v, &len));
		assert_int_equal(len, strlen(val));
		assert_memory_equal(v, val, len);
		assert_false(stable); /* restored or adopted: never stable */
	}
	printf("# recovery: %d of 64 ranges differed, %llu fetched, %llu pages, %llu adopted\n",
	       n_missing, (unsigned long long)st->ranges_fetched,
	       (unsigned long long)st->range_pages, (unsigned long long)st->items_adopted);
	/* C coordinates again; its writes get timestamps of its new registration */
	assert_int_equal(h_req(&c, run_op(&c, 2, 1, ABD_SET, "key1", "new"))->outcome,
			 ABD_OUTCOME_OK);
	{
		struct msg_timestamp ts;

		assert_true(abd_lookup(c.nodes[2].a, (const uint8_t *)"key1", 4, &ts, NULL, NULL,
				       NULL, NULL));
		assert_int_equal(ts.reg.slot, 7);
	}
	assert_int_equal(h_check(&c, true), 0);
	h_free(&c);
}

/* Paging across many keys of one range, and a tombstone transferred by recovery. */
static void one_range(struct abd_config *cfg)
{
	cfg->ranges = 1;
	cfg->page_items = 3;
}

static void test_recovery_paging_tombstone(void **state)
{
	struct h_cluster c;
	char key[16];
	bool tomb;

	(void)state;
	h_cfg_hook = one_range;
	h_init(&c, 3, 1, 1, 11, ABD_SYNC_RR, 0);
	h_cfg_hook = NULL;
	c.nodes[2].up = false;
	for (int k = 0; k < 10; k++) {
		snprintf(key, sizeof(key), "p%d", k);
		run_op(&c, 0, 1, ABD_SET, key, "x");
	}
	run_op(&c, 0, 1, ABD_DEL, "p3", NULL);
	h_restart(&c, 2, 0);
	h_register(&c, 2, 9, 7);
	h_begin_recovery(&c, 2);
	h_run(&c, 100 * H_MS);
	assert_true(c.nodes[2].recovered);
	assert_int_equal(abd_stats(c.nodes[2].a)->range_pages, 4); /* 10 keys, 3 per page */
	assert_int_equal(abd_keys(c.nodes[2].a), 10);
	assert_true(
		abd_lookup(c.nodes[2].a, (const uint8_t *)"p3", 2, NULL, NULL, &tomb, NULL, NULL));
	assert_true(tomb);
	/* only C and B answer: the tombstone is read from the recovered state */
	c.nodes[0].up = false;
	assert_true(get_is(&c, run_op(&c, 2, 2, ABD_GET, "p3", NULL), NULL));
	assert_true(get_is(&c, run_op(&c, 2, 2, ABD_GET, "p4", NULL), "x"));
	assert_int_equal(h_check(&c, true), 0);
	h_free(&c);
}

/* ---- suspicious replicas ---- */

static void test_suspicious_never_acks(void **state)
{
	struct h_cluster c;
	uint64_t id;

	(void)state;
	h_init(&c, 3, 1, 1, 12, ABD_SYNC_RR, 0);
	h_restart(&c, 2, 0); /* C: restarted, suspicious, not recovering */
	c.nodes[1].up = false;
	memset(c.sent_by_type, 0, sizeof(c.sent_by_type));
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, T_OP + 50 * H_MS);
	/* R_Q(1) = 3 timestamp replies never come (B down): abandoned */
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	/* with B up for the query, then down for the write */
	c.nodes[1].up = true;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v2");
	h_run(&c, 3 * H_MS);
	c.nodes[1].up = false;
	h_drop(&c, -1, 1, 0);
	h_run(&c, T_OP + 50 * H_MS);
	assert_false(
		abd_lookup(c.nodes[2].a, (const uint8_t *)"k", 1, NULL, NULL, NULL, NULL, NULL));
	assert_true(c.sent_by_type[MSG_ABD_QUERY_REPLY] >= 1);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	/* a suspicious replica coordinates nothing */
	id = h_op(&c, 2, 2, ABD_GET, "k", NULL);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_REFUSED);
	h_free(&c);

	/* CFT quorums ignore suspicion: the same C stores and acks */
	h_init(&c, 3, 1, 1, 12, ABD_SYNC_RR, ABD_UNSAFE_CFT_QUORUMS);
	h_restart(&c, 2, 0);
	c.nodes[1].up = false;
	id = run_op(&c, 0, 1, ABD_SET, "k", "v");
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
	assert_true(
		abd_lookup(c.nodes[2].a, (const uint8_t *)"k", 1, NULL, NULL, NULL, NULL, NULL));
	h_free(&c);
}

static enum h_verdict count_c_acks(struct h_cluster *c, int from, int to_node, const struct msg *m)
{
	(void)to_node;
	if (from == 2 && m->type == MSG_ABD_WRITE_ACK)
		c->arg = (void *)((uintptr_t)c->arg + 1);
	if (from == 2 && m->type == MSG_ABD_QUERY_REPLY && !m->suspicious)
		c->order_violation = true; /* C's replies must be flagged */
	return H_DELIVER;
}

static void test_suspicious_flagged(void **state)
{
	struct h_cluster c;
	uint64_t id;

	(void)state;
	h_init(&c, 3, 1, 1, 13, ABD_SYNC_RR, 0);
	h_restart(&c, 2, 0);
	c.filter = count_c_acks;
	id = run_op(&c, 0, 1, ABD_SET, "k", "v"); /* R_Q(1) = 3 with C flagged; W_Q = {A, B} */
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_OK);
	id = run_op(&c, 1, 1, ABD_GET, "k", NULL);
	assert_true(get_is(&c, id, "v"));
	assert_ptr_equal(c.arg, NULL);
	assert_false(c.order_violation);
	h_free(&c);
}

/* ---- interface: lease, halt, taint, T_op, persist, bad input ---- */

static void test_interface(void **state)
{
	struct h_cluster c;
	uint64_t id;
	struct msg_incarnation inc;

	(void)state;
	h_init(&c, 3, 1, 1, 14, ABD_SYNC_RR, 0);
	/* no lease: refused */
	abd_set_lease(c.nodes[0].a, 0);
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_REFUSED);
	/* the lease runs out during the op: checked on the next counted reply */
	abd_set_lease(c.nodes[0].a, c.now + 10 + H_MS / 4);
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, 10 * H_MS);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	abd_set_lease(c.nodes[0].a, ABD_LEASE_FOREVER);
	/* taint: abandons the op and drops the lease */
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	c.nodes[0].epoch++;
	h_tick(&c, 0);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	id = h_op(&c, 0, 1, ABD_GET, "k", NULL);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_REFUSED);
	abd_set_lease(c.nodes[0].a, ABD_LEASE_FOREVER);
	/* T_op: nobody answers */
	c.nodes[1].up = c.nodes[2].up = false;
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	h_run(&c, T_OP + 10 * H_MS);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	c.nodes[1].up = c.nodes[2].up = true;
	/* bad input */
	{
		struct abd_input in;

		memset(&in, 0, sizeof(in));
		in.type = (enum abd_input_type)99;
		assert_int_equal(abd_step(c.nodes[0].a, &in, &c.nodes[0].r), TEEMS_EINVAL);
		inc.replica = 7;
		inc.reg.epoch = 0;
		inc.reg.slot = 1;
		assert_int_equal(abd_set_config(c.nodes[0].a, &inc, 1), TEEMS_EINVAL);
		assert_int_equal(abd_begin_recovery(c.nodes[0].a, inc.reg), TEEMS_EINVAL);
	}
	/* halt: a newer registration of our own replica */
	id = h_op(&c, 0, 1, ABD_SET, "k", "v");
	inc.replica = 0;
	assert_int_equal(abd_set_config(c.nodes[0].a, &inc, 1), 0);
	assert_true(abd_halted(c.nodes[0].a));
	h_tick(&c, 0);
	assert_true(c.nodes[0].halted);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	h_free(&c);
}

static void test_halt_from_regvec(void **state)
{
	struct h_cluster c;
	uint64_t id;
	int fork;

	(void)state;
	h_init(&c, 3, 1, 1, 15, ABD_SYNC_RR, 0);
	fork = h_fork(&c, 0);
	h_register(&c, fork, 20, (1u << 1) | (1u << 2) | (1u << fork));
	/* old A coordinates; B's reply shows A's newer registration: old A halts */
	id = h_op(&c, 0, 1, ABD_GET, "k", NULL);
	h_run(&c, 5 * H_MS);
	assert_true(c.nodes[0].halted);
	assert_int_equal(h_req(&c, id)->outcome, ABD_OUTCOME_UNKNOWN);
	h_free(&c);
}

static void test_persist_records(void **state)
{
	struct abd_config cfg;
	struct abd *a;
	struct abd_persist rec;
	uint8_t buf[256];
	size_t len;
	struct msg_timestamp ts;
	const uint8_t *v;
	uint32_t vlen;
	bool tomb;

	(void)state;
	abd_config_default(&cfg);
	assert_int_equal(quorum_init(&cfg.quorum, 3, 1, 1, NULL), 0);
	assert_int_equal(abd_new(&a, &cfg, NULL), 0);
	memset(&rec, 0, sizeof(rec));
	rec.seq = 3;
	rec.flags = ABD_REC_REGISTER;
	rec.key = (const uint8_t *)"key";
	rec.key_len = 3;
	rec.ts.seq = 9;
	rec.ts.replica = 2;
	rec.ts.op = 4;
	rec.value = (const uint8_t *)"value";
	rec.len = 5;
	assert_int_equal(abd_persist_encode(&rec, NULL, 0, &len), TEEMS_EFULL);
	assert_int_equal(abd_persist_encode(&rec, buf, sizeof(buf), &len), 0);
	/* every truncation is corrupt, never a crash */
	for (size_t k = 0; k < len; k++)
		assert_int_equal(abd_restore(a, buf, k), TEEMS_ECORRUPT);
	buf[0] = 9;
	assert_int_equal(abd_restore(a, buf, len), TEEMS_EVERSION);
	buf[0] = ABD_PERSIST_VERSION;
	assert_int_equal(abd_restore(a, buf, len), 0);
	rec.seq = 4;
	rec.ts.seq = 8; /* older: ignored */
	rec.value = (const uint8_t *)"older";
	assert_int_equal(abd_persist_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(abd_restore(a, buf, len), 0);
	assert_true(abd_lookup(a, (const uint8_t *)"key", 3, &ts, NULL, &tomb, &v, &vlen));
	assert_int_equal(ts.seq, 9);
	assert_memory_equal(v, "value", 5);
	assert_true(abd_suspicious(a));
	rec.flags = 0x80;
	assert_int_equal(abd_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_EINVAL);
	rec.flags = ABD_REC_RECOVERED;
	assert_int_equal(abd_persist_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(abd_restore(a, buf, len), 0);
	abd_free(a);
	/* bad configurations */
	cfg.ranges = 3;
	assert_int_equal(abd_new(&a, &cfg, NULL), TEEMS_EINVAL);
	cfg.ranges = 64;
	cfg.self = 3;
	assert_int_equal(abd_new(&a, &cfg, NULL), TEEMS_EINVAL);
}

/* Restarting on every synced prefix: a restarted replica that recovers never loses an
 * acknowledged write, and its later writes never reuse a timestamp (S18 across restarts). */
static void test_restart_prefixes(void **state)
{
	(void)state;
	for (long keep = 0; keep < 8; keep++) {
		struct h_cluster c;
		char val[16];

		h_init(&c, 3, 1, 1, 16 + (uint64_t)keep, ABD_SYNC_RR, 0);
		for (int k = 0; k < 4; k++) {
			snprintf(val, sizeof(val), "a%d", k);
			run_op(&c, 0, 1, ABD_SET, "k", val);
			run_op(&c, 0, 1, ABD_SET, "j", val);
		}
		h_restart(&c, 0, keep);
		h_register(&c, 0, 30, 7);
		h_begin_recovery(&c, 0);
		h_run(&c, 50 * H_MS);
		assert_true(c.nodes[0].recovered);
		assert_true(get_is(&c, run_op(&c, 0, 2, ABD_GET, "k", NULL), "a3"));
		run_op(&c, 0, 1, ABD_SET, "k", "after");
		assert_true(get_is(&c, run_op(&c, 1, 2, ABD_GET, "k", NULL), "after"));
		assert_int_equal(h_check(&c, true), 0);
		h_free(&c);
	}
}

/* ---- allocation failures ---- */

static void sweep_scenario(struct h_cluster *c)
{
	h_allow_enomem = true;
	h_init(c, 3, 1, 1, 17, ABD_SYNC_RR, 0);
	h_allow_enomem = false;
	run_op(c, 0, 1, ABD_SET, "k", "v");
	run_op(c, 1, 1, ABD_GET, "k", NULL);
	run_op(c, 1, 1, ABD_DEL, "j", NULL);
	if (c->nodes[2].a && c->nodes[2].up) {
		h_restart(c, 2, 1);
		h_register(c, 2, 5, 7);
		h_begin_recovery(c, 2);
	}
	h_run(c, 30 * H_MS);
	run_op(c, 2, 1, ABD_GET, "k", NULL);
}

static void test_alloc_failures(void **state)
{
	struct h_cluster c;
	unsigned long before, total;
	unsigned hits = 0;

	(void)state;
	before = teems_alloc_count();
	sweep_scenario(&c);
	total = teems_alloc_count() - before;
	h_free(&c);
	for (unsigned long nth = 0; nth < total; nth += 1 + nth / 64) {
		teems_alloc_fault((long)nth, 0);
		sweep_scenario(&c);
		teems_alloc_fault(-1, 0);
		hits += c.enomem;
		h_free(&c);
	}
	assert_true(hits > 0);
}

/* ---- discard rule on a configuration change (scripted, one core) ----
 *
 * A reply from (X, old) is counted; then abd_set_config shows (X, new); then the quorum
 * decides (the coordinator's own record becomes durable, or another reply arrives). The
 * decided quorum must not count (X, old): the op waits, and completes once (X, new) replies.
 * The same for the recovery digest collection, before and after its quorum froze. */

#define DC_X 1u

struct dc {
	struct abd *a;
	struct abd_ready r;
	uint64_t now;
	uint64_t written;	 /* highest persist seq produced */
	bool stale_counted;	 /* some counted quorum held (DC_X, old) */
	unsigned n_counted[3];	 /* per abd_counted_kind */
	struct abd_counted last; /* the last counted quorum */
	uint64_t nonce[MSG_TYPE_MAX_ + 1];
	struct msg_timestamp write_ts; /* of the last ABD_WRITE sent */
	unsigned replies, ok;
	bool recovered;
};

static const struct msg_regidx dc_old = {0, 0};
static const struct msg_regidx dc_new = {0, 7};

static void dc_init(struct dc *d, bool restarted)
{
	struct abd_config cfg;
	char err[TEEMS_ERRBUF_LEN];

	memset(d, 0, sizeof(*d));
	abd_config_default(&cfg);
	assert_int_equal(quorum_init(&cfg.quorum, 3, 1, 1, NULL), 0);
	cfg.self = 0;
	cfg.sync = ABD_SYNC_RR;
	cfg.ranges = 4;
	cfg.restarted = restarted;
	assert_int_equal(abd_new(&d->a, &cfg, err), 0);
	abd_ready_init(&d->r);
	abd_set_lease(d->a, ABD_LEASE_FOREVER);
	d->now = 1000 * H_MS;
}

static void dc_free(struct dc *d)
{
	abd_free(d->a);
	abd_ready_free(&d->r);
}

static void dc_step(struct dc *d, struct abd_input *in)
{
	in->now.lo_ns = d->now;
	in->now.hi_ns = d->now + 10;
	in->now.epoch = 0;
	d->now += H_MS;
	assert_int_equal(abd_step(d->a, in, &d->r), 0);
	for (size_t k = 0; k < d->r.n_persist; k++)
		if (d->r.persist[k].seq > d->written)
			d->written = d->r.persist[k].seq;
	for (size_t k = 0; k < d->r.n_sends; k++) {
		const struct msg *m = &d->r.sends[k].msg;

		d->nonce[m->type] = m->nonce;
		if (m->type == MSG_ABD_WRITE)
			d->write_ts = m->abd_write.ts;
	}
	for (size_t k = 0; k < d->r.n_counted; k++) {
		const struct abd_counted *c = &d->r.counted[k];

		for (uint32_t j = 0; j < c->n; j++)
			if (c->members[j].replica == DC_X &&
			    msg_regidx_cmp(&c->members[j].reg, &dc_old) == 0)
				d->stale_counted = true;
		d->n_counted[c->kind]++;
		d->last = *c;
	}
	for (size_t k = 0; k < d->r.n_replies; k++) {
		d->replies++;
		d->ok += d->r.replies[k].outcome == ABD_OUTCOME_OK;
	}
	if (d->r.recovered)
		d->recovered = true;
}

static void dc_msg(struct dc *d, struct msg *m, uint16_t from, struct msg_regidx reg,
		   enum msg_type type)
{
	struct abd_input in;

	m->type = type;
	m->from.replica = from;
	m->from.reg = reg;
	m->nonce = d->nonce[type == MSG_ABD_QUERY_REPLY	   ? MSG_ABD_QUERY
			    : type == MSG_ABD_WRITE_ACK	   ? MSG_ABD_WRITE
			    : type == MSG_ABD_DIGEST_REPLY ? MSG_ABD_DIGEST_REQUEST
							   : type];
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_MESSAGE;
	in.message = m;
	dc_step(d, &in);
}

static void dc_qreply(struct dc *d, uint16_t from, struct msg_regidx reg,
		      const struct msg_timestamp *ts, bool stable, const char *value)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	if (ts)
		m.abd_query_reply.ts = *ts;
	m.abd_query_reply.stable = stable;
	if (value) {
		m.abd_query_reply.value.p = (const uint8_t *)value;
		m.abd_query_reply.value.len = (uint32_t)strlen(value);
	}
	dc_msg(d, &m, from, reg, MSG_ABD_QUERY_REPLY);
}

static void dc_ack(struct dc *d, uint16_t from, struct msg_regidx reg, const char *key)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.abd_write_ack.key.p = (const uint8_t *)key;
	m.abd_write_ack.key.len = (uint32_t)strlen(key);
	m.abd_write_ack.ts = d->write_ts;
	m.abd_write_ack.sync = MSG_SYNCED;
	dc_msg(d, &m, from, reg, MSG_ABD_WRITE_ACK);
}

/* Digests of an empty replica: all zero, like the recovering core's own. */
static void dc_digests(struct dc *d, uint16_t from, struct msg_regidx reg)
{
	struct msg_range_digest rd[4];
	struct msg m;

	memset(rd, 0, sizeof(rd));
	for (uint32_t i = 0; i < 4; i++)
		rd[i].range = i;
	memset(&m, 0, sizeof(m));
	m.abd_digest_reply.ranges = 4;
	m.abd_digest_reply.digests.count = 4;
	m.abd_digest_reply.digests.items = rd;
	dc_msg(d, &m, from, reg, MSG_ABD_DIGEST_REPLY);
}

static void dc_request(struct dc *d, enum abd_op op, const char *key, const char *value)
{
	struct abd_input in;

	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_REQUEST;
	in.request.client_id = 1;
	in.request.request_id = 1;
	in.request.op = op;
	in.request.key = (const uint8_t *)key;
	in.request.key_len = (uint32_t)strlen(key);
	if (value) {
		in.request.value = (const uint8_t *)value;
		in.request.value_len = (uint32_t)strlen(value);
	}
	dc_step(d, &in);
}

static void dc_synced(struct dc *d)
{
	struct abd_input in;

	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_SYNCED;
	in.synced.seq = d->written;
	dc_step(d, &in);
}

static void dc_tick(struct dc *d)
{
	struct abd_input in;

	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_TICK;
	dc_step(d, &in);
}

static void dc_supersede(struct dc *d)
{
	struct msg_incarnation inc;

	inc.replica = DC_X;
	inc.reg = dc_new;
	assert_int_equal(abd_set_config(d->a, &inc, 1), 0);
}

/* The last counted quorum holds (DC_X, new). */
static bool dc_counts_new(const struct dc *d)
{
	for (uint32_t j = 0; j < d->last.n; j++)
		if (d->last.members[j].replica == DC_X &&
		    msg_regidx_cmp(&d->last.members[j].reg, &dc_new) == 0)
			return true;
	return false;
}

static void test_discard_on_config_write(void **state)
{
	struct dc d;

	(void)state;
	/* (3,1,1), sync=rr: W_Q = 2, R_Q(0) = 2 */
	dc_init(&d, false);
	dc_request(&d, ABD_SET, "k", "v");
	dc_qreply(&d, DC_X, dc_old, NULL, false, NULL); /* query: {self, (X, old)} */
	assert_int_equal(d.n_counted[ABD_COUNTED_QUERY], 1);
	/* write round: (X, old) acks, synced; the coordinator's own record is not durable */
	dc_ack(&d, DC_X, dc_old, "k");
	assert_int_equal(d.n_counted[ABD_COUNTED_WRITE], 0);
	d.stale_counted = false; /* the query quorum above counted (X, old) legitimately */
	dc_supersede(&d);
	/* the own record becomes durable: the write quorum is decided now, or never on old X */
	dc_synced(&d);
	assert_false(d.stale_counted);
	assert_int_equal(d.n_counted[ABD_COUNTED_WRITE], 0);
	assert_int_equal(d.replies, 0);
	/* a resend reaches X's new incarnation; its ack completes the write */
	dc_ack(&d, DC_X, dc_new, "k");
	assert_int_equal(d.n_counted[ABD_COUNTED_WRITE], 1);
	assert_true(dc_counts_new(&d));
	assert_false(d.stale_counted);
	assert_int_equal(d.ok, 1);
	assert_true(abd_stats(d.a)->discarded >= 1);
	dc_free(&d);
}

static void test_discard_on_config_read(void **state)
{
	struct dc d;
	struct msg m;
	struct msg_timestamp ts = {1, 2, {0, 0}, 1};

	(void)state;
	dc_init(&d, false);
	/* replica 2 writes "x" at ts here; under rr the record is not durable yet, so the
	 * coordinator's own reply to a GET waits for it */
	memset(&m, 0, sizeof(m));
	m.abd_write.key.p = (const uint8_t *)"r";
	m.abd_write.key.len = 1;
	m.abd_write.ts = ts;
	m.abd_write.value.p = (const uint8_t *)"x";
	m.abd_write.value.len = 1;
	dc_msg(&d, &m, 2, dc_old, MSG_ABD_WRITE);
	dc_request(&d, ABD_GET, "r", NULL);
	dc_qreply(&d, DC_X, dc_old, &ts, true, "x"); /* counted: 1 of R_Q = 2 */
	assert_int_equal(d.replies, 0);
	dc_supersede(&d);
	dc_synced(&d); /* own reply: {self, (X, old)} would be a quorum */
	assert_false(d.stale_counted);
	assert_int_equal(d.replies, 0);
	dc_qreply(&d, DC_X, dc_new, &ts, true, "x");
	assert_int_equal(d.n_counted[ABD_COUNTED_QUERY], 1);
	assert_true(dc_counts_new(&d));
	assert_false(d.stale_counted);
	assert_int_equal(d.ok, 1);
	dc_free(&d);
}

/* Epoch restart (abd_set_registration): a live incarnation named a member of epoch 1 continues
 * at (1, t): suspicious, its ops abandoned, the sight of (1, t) no longer halts it, it recovers
 * at (1, t); a newer registration still halts it. A core that halted on seeing (1, t) first
 * resumes. */
static void test_epoch_registration(void **state)
{
	struct dc d;
	struct msg_regidx e1 = {1, 3}, later = {1, 9};
	struct msg_incarnation self;

	(void)state;
	dc_init(&d, false);
	dc_request(&d, ABD_GET, "r", NULL); /* in flight: a query is out */
	assert_int_equal(d.replies, 0);
	assert_int_equal(abd_set_registration(d.a, e1), 0);
	assert_true(abd_suspicious(d.a));
	assert_false(abd_halted(d.a));
	assert_int_equal(abd_registration(d.a).epoch, 1);
	assert_int_equal(abd_registration(d.a).slot, 3);
	assert_int_equal(abd_set_registration(d.a, e1), TEEMS_EINVAL); /* not newer */
	self.replica = 0;
	self.reg = e1;
	assert_int_equal(abd_set_config(d.a, &self, 1), 0);
	dc_tick(&d);
	assert_false(d.r.halted);
	assert_int_equal(d.replies, 1); /* the GET: abandoned */
	assert_int_equal(d.ok, 0);
	dc_request(&d, ABD_SET, "r", "v"); /* refused: suspicious */
	assert_int_equal(d.replies, 2);
	assert_int_equal(d.r.replies[0].outcome, ABD_OUTCOME_REFUSED);
	/* recovery at (1, 3): R_Q(1) = 3, itself counted suspicious */
	assert_int_equal(abd_begin_recovery(d.a, e1), 0);
	dc_tick(&d);
	assert_true(abd_recovering(d.a));
	dc_digests(&d, 1, dc_old);
	dc_digests(&d, 2, dc_old);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 1);
	dc_synced(&d);
	assert_true(d.recovered);
	assert_false(abd_suspicious(d.a));
	/* a newer registration of its own replica still halts it, for good */
	self.reg = later;
	assert_int_equal(abd_set_config(d.a, &self, 1), 0);
	dc_tick(&d);
	assert_true(d.r.halted);
	assert_int_equal(abd_set_registration(d.a, e1), TEEMS_EINVAL);
	dc_free(&d);

	/* halted on the sight of (1, 3) before its control plane learned the epoch: resumes */
	dc_init(&d, false);
	self.reg = e1;
	assert_int_equal(abd_set_config(d.a, &self, 1), 0);
	dc_tick(&d);
	assert_true(d.r.halted);
	assert_int_equal(abd_set_registration(d.a, e1), 0);
	assert_false(abd_halted(d.a));
	dc_tick(&d);
	assert_false(d.r.halted);
	assert_true(abd_suspicious(d.a));
	assert_int_equal(abd_begin_recovery(d.a, e1), 0);
	dc_free(&d);
}

static void test_discard_on_config_recovery(void **state)
{
	struct dc d;
	struct msg_regidx me = {0, 9};

	(void)state;
	/* the digest quorum: R_Q(1) = 3 with the recovering core counted suspicious */
	dc_init(&d, true);
	assert_int_equal(abd_begin_recovery(d.a, me), 0);
	dc_tick(&d);
	dc_digests(&d, DC_X, dc_old);
	dc_supersede(&d);
	dc_digests(&d, 2, dc_old); /* {self, (X, old), 2} would be a quorum */
	assert_false(d.stale_counted);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 0);
	dc_digests(&d, DC_X, dc_new);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 1);
	assert_true(dc_counts_new(&d));
	dc_synced(&d);
	assert_true(d.recovered);
	assert_false(d.stale_counted);
	dc_free(&d);

	/* frozen with (X, old), superseded before the marker is durable: the recovery does not
	 * finish on that quorum; a new digest collection does */
	dc_init(&d, true);
	assert_int_equal(abd_begin_recovery(d.a, me), 0);
	dc_tick(&d);
	dc_digests(&d, DC_X, dc_old);
	dc_digests(&d, 2, dc_old);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 1);
	{
		uint64_t first = d.nonce[MSG_ABD_DIGEST_REQUEST];

		dc_supersede(&d);
		dc_synced(&d);
		assert_false(d.recovered);
		assert_true(d.nonce[MSG_ABD_DIGEST_REQUEST] != first);
	}
	d.stale_counted = false;
	dc_digests(&d, DC_X, dc_old); /* the old incarnation's late answer: discarded */
	dc_digests(&d, 2, dc_old);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 1);
	dc_digests(&d, DC_X, dc_new);
	assert_int_equal(d.n_counted[ABD_COUNTED_RECOVERY], 2);
	assert_true(dc_counts_new(&d));
	dc_synced(&d);
	assert_true(d.recovered);
	assert_false(d.stale_counted);
	dc_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normal),
		cmocka_unit_test(test_rounds_mix),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_random_restarts),
		cmocka_unit_test(test_s18),
		cmocka_unit_test(test_sync_rule),
		cmocka_unit_test(test_stabilize_one_round),
		cmocka_unit_test(test_negative_no_stabilize),
		cmocka_unit_test(test_negative_rollback),
		cmocka_unit_test(test_unanimous_read),
		cmocka_unit_test(test_s1),
		cmocka_unit_test(test_s6),
		cmocka_unit_test(test_recovery_digests),
		cmocka_unit_test(test_recovery_paging_tombstone),
		cmocka_unit_test(test_suspicious_never_acks),
		cmocka_unit_test(test_suspicious_flagged),
		cmocka_unit_test(test_interface),
		cmocka_unit_test(test_halt_from_regvec),
		cmocka_unit_test(test_discard_on_config_write),
		cmocka_unit_test(test_discard_on_config_read),
		cmocka_unit_test(test_discard_on_config_recovery),
		cmocka_unit_test(test_epoch_registration),
		cmocka_unit_test(test_persist_records),
		cmocka_unit_test(test_restart_prefixes),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
