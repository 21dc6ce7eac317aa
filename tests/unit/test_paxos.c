/* RR-Paxos core (src/core/paxos.h), driven by a tiny deterministic network inside the test.
 *
 * The network carries every output message through msg_encode and msg_decode, so the codec is
 * exercised on every hop. Each node has its own fake trusted clock (global time plus an offset
 * and a taint epoch), a fake WAL that records what the core asked to persist, and a sync mode:
 * immediate (every record is durable at once), delayed, or held until the test releases it.
 * The harness checks the ordering rules of the interface on every message it sees leave a node:
 * no PREPARE or positive PROMISE before the promise of that ballot is durable, no synced
 * ACCEPTED before the records holding its slots are. The agreement checker compares every
 * applied slot with what any other node applied there, after every step.
 *
 * Tests:
 *   normal case     1,000 commands under (N,F,M_R) = (3,1,1) (5,2,2) (4,1,2) (7,2,4) (3,1,0)
 *                   (5,2,0), sync = rr (immediate and delayed fsync), always, none
 *   commit rule     the sync rule of DESIGN.md section 7, every (leader synced, k followers
 *                   synced) combination, against the formula and against spelled-out cases
 *   elections       crash of the leader, re-proposal of accepted entries, no-op holes,
 *                   committed entries surviving, competing candidates, promise paging
 *   random          drops, duplicates, reordering, delayed fsyncs, partitions, short T_op,
 *                   over many seeds per configuration (PAXOS_SEEDS=n for more), then liveness
 *                   after the heal
 *   negative        PAXOS_UNSAFE_SKIP_ADOPT and PAXOS_UNSAFE_SHORT_PROMISE break agreement,
 *                   scripted and on random seeds
 *   abandonment     T_op expiry and clock taint report UNKNOWN (and the slot may still commit)
 *   counting        suspicious votes, duplicate acks and foreign nonces count for nothing
 *   ordering        PREPARE, PROMISE and synced ACCEPTED wait for the fsync
 *   gaps            a lagging follower is streamed the committed slots it missed
 *   interface       refusals, invalid inputs, batch parsing, the suspicious hook
 *   allocation      every failing allocation surfaces as TEEMS_ENOMEM, nothing leaks */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/msg.h"
#include "core/paxos.h"
#include "common/alloc.h"
#include "core/quorum.h"
#include "teems/err.h"

#define MAX_NODES 7
#define MS 1000000ull
#define T_ELECT (150 * MS)
#define T_HB (50 * MS)
#define T_OP (500 * MS)

enum sync_mode {
	SYNC_NOW = 0,	/* every record durable as soon as the ready is taken */
	SYNC_DELAY = 1, /* durable sync_delay after it was written */
	SYNC_HOLD = 2,	/* durable only when the test calls node_sync */
};

struct net_msg {
	int from, to;
	uint8_t *buf;
	size_t len;
};

struct applied {
	uint64_t slot;
	uint8_t *value;
	uint32_t len;
};

struct wal_rec {
	uint64_t seq;
	struct msg_ballot promised;
};

struct node {
	struct paxos *p;
	struct paxos_ready r;
	bool up; /* false: crashed or cut off: no ticks, nothing in or out */
	uint64_t clock_off;
	uint64_t epoch;
	enum sync_mode sync;
	uint64_t written;     /* highest seq appended */
	uint64_t synced;      /* highest seq reported durable */
	uint64_t sync_due;    /* SYNC_DELAY: when `written` becomes durable */
	struct wal_rec *recs; /* promise of every record, to check the ordering rules */
	size_t n_recs, cap_recs;
	uint64_t *slot_seq; /* [slot]: last record that wrote the slot */
	struct msg_ballot *slot_ballot;
	size_t cap_slots;
	struct applied *applied;
	size_t n_applied, cap_applied;
};

struct request {
	int outcome; /* -1: none yet, else enum paxos_outcome */
	bool proposed;
	int applied_count; /* times it appears in node 0's... in the reference node's applies */
};

struct cluster {
	struct quorum q;
	int n;
	struct node nodes[MAX_NODES];
	struct net_msg *q_msgs;
	size_t nq, capq;
	uint64_t now;
	uint64_t rng;
	uint64_t sync_delay;
	/* faults */
	unsigned drop_pct, dup_pct;
	bool reorder;
	bool (*filter)(struct cluster *c, int from, int to, const struct msg *m);
	void *filter_arg;
	void (*mutate)(struct cluster *c, int from, int to, struct msg *m); /* after decode */
	/* checker */
	struct applied *chosen; /* [slot - 1], value first applied anywhere */
	size_t cap_chosen;
	bool violation;
	bool order_violation; /* an interface ordering rule broken (never expected) */
	/* clients */
	struct request *reqs;
	size_t n_reqs;
	size_t unknown, applied_notes;
	bool allow_enomem; /* the allocation-failure sweep: a node that fails is cut off */
	unsigned enomem_hits;
};

static uint64_t rnd(struct cluster *c)
{
	uint64_t x = (c->rng += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static struct paxos_time node_time(struct cluster *c, int i)
{
	struct paxos_time t;

	t.lo_ns = c->now + c->nodes[i].clock_off;
	t.hi_ns = t.lo_ns + 1000;
	t.epoch = c->nodes[i].epoch;
	return t;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	assert_non_null(q);
	return q;
}

static void ensure_slots(struct node *nd, uint64_t slot)
{
	if (slot < nd->cap_slots)
		return;
	size_t ncap = nd->cap_slots ? nd->cap_slots : 256;
	while (ncap <= slot)
		ncap *= 2;
	nd->slot_seq = xrealloc(nd->slot_seq, ncap * sizeof(*nd->slot_seq));
	nd->slot_ballot = xrealloc(nd->slot_ballot, ncap * sizeof(*nd->slot_ballot));
	memset(nd->slot_seq + nd->cap_slots, 0, (ncap - nd->cap_slots) * sizeof(*nd->slot_seq));
	memset(nd->slot_ballot + nd->cap_slots, 0,
	       (ncap - nd->cap_slots) * sizeof(*nd->slot_ballot));
	nd->cap_slots = ncap;
}

/* The highest promised ballot in a durable record. */
static struct msg_ballot durable_promise(const struct node *nd)
{
	struct msg_ballot b = {0};

	for (size_t i = 0; i < nd->n_recs && nd->recs[i].seq <= nd->synced; i++)
		if (msg_ballot_cmp(&nd->recs[i].promised, &b) > 0)
			b = nd->recs[i].promised;
	return b;
}

/* Interface ordering rules, checked on every message leaving node i. */
static void check_send(struct cluster *c, int i, const struct msg *m)
{
	struct node *nd = &c->nodes[i];

	if (m->type == MSG_PREPARE || (m->type == MSG_PROMISE && m->promise.ok)) {
		const struct msg_ballot *b =
			m->type == MSG_PREPARE ? &m->prepare.ballot : &m->promise.ballot;
		struct msg_ballot d = durable_promise(nd);

		if (msg_ballot_cmp(b, &d) > 0) {
			fprintf(stderr, "node %d sent %s before its promise was durable\n", i,
				msg_type_name(m->type));
			c->order_violation = true;
		}
	}
	if (m->type == MSG_ACCEPTED && m->accepted.sync == MSG_SYNCED) {
		for (uint64_t s = m->accepted.first_slot; s <= m->accepted.last_slot; s++) {
			ensure_slots(nd, s);
			if (nd->slot_seq[s] == 0 || nd->slot_seq[s] > nd->synced) {
				fprintf(stderr,
					"node %d: synced ACCEPTED for slot %llu before fsync\n", i,
					(unsigned long long)s);
				c->order_violation = true;
			}
		}
	}
	if ((m->type == MSG_PROMISE && m->promise.ok) || m->type == MSG_ACCEPTED) {
		if (m->suspicious) {
			fprintf(stderr, "node %d voted while suspicious\n", i);
			c->order_violation = true;
		}
	}
}

static void record_apply(struct cluster *c, int i, const struct paxos_apply *a)
{
	struct node *nd = &c->nodes[i];
	struct applied *x;

	if (nd->n_applied && nd->applied[nd->n_applied - 1].slot + 1 != a->slot)
		c->violation = true; /* not in slot order */
	if (!nd->n_applied && a->slot != 1)
		c->violation = true;
	if (nd->n_applied == nd->cap_applied) {
		nd->cap_applied = nd->cap_applied ? nd->cap_applied * 2 : 256;
		nd->applied = xrealloc(nd->applied, nd->cap_applied * sizeof(*nd->applied));
	}
	x = &nd->applied[nd->n_applied++];
	x->slot = a->slot;
	x->len = a->len;
	x->value = malloc(a->len ? a->len : 1);
	assert_non_null(x->value);
	if (a->len)
		memcpy(x->value, a->value, a->len);
	/* Agreement: the same value in this slot everywhere. */
	if (a->slot > c->cap_chosen) {
		size_t ncap = c->cap_chosen ? c->cap_chosen : 256;
		while (ncap < a->slot)
			ncap *= 2;
		c->chosen = xrealloc(c->chosen, ncap * sizeof(*c->chosen));
		memset(c->chosen + c->cap_chosen, 0, (ncap - c->cap_chosen) * sizeof(*c->chosen));
		c->cap_chosen = ncap;
	}
	struct applied *ch = &c->chosen[a->slot - 1];
	if (!ch->slot) {
		ch->slot = a->slot;
		ch->value = x->value;
		ch->len = x->len;
	} else if (ch->len != x->len || (x->len && memcmp(ch->value, x->value, x->len))) {
		c->violation = true;
	}
}

static void step(struct cluster *c, int i, struct paxos_input *in);

static void take_ready(struct cluster *c, int i)
{
	struct node *nd = &c->nodes[i];
	struct paxos_ready *r = &nd->r;
	bool wrote = false;

	for (size_t k = 0; k < r->n_persist; k++) {
		const struct paxos_persist *p = &r->persist[k];

		assert_true(p->seq == nd->written + 1);
		nd->written = p->seq;
		wrote = true;
		if (nd->n_recs == nd->cap_recs) {
			nd->cap_recs = nd->cap_recs ? nd->cap_recs * 2 : 64;
			nd->recs = xrealloc(nd->recs, nd->cap_recs * sizeof(*nd->recs));
		}
		nd->recs[nd->n_recs].seq = p->seq;
		nd->recs[nd->n_recs].promised = p->promised;
		nd->n_recs++;
		for (uint32_t e = 0; e < p->count; e++) {
			ensure_slots(nd, p->entries[e].slot);
			nd->slot_seq[p->entries[e].slot] = p->seq;
			nd->slot_ballot[p->entries[e].slot] = p->entries[e].ballot;
		}
	}
	for (size_t k = 0; k < r->n_sends; k++) {
		const struct paxos_send *s = &r->sends[k];
		size_t len;

		assert_true(s->to < c->n && s->to != i);
		check_send(c, i, &s->msg);
		assert_int_equal(msg_encode(&s->msg, NULL, 0, &len), TEEMS_EFULL);
		uint8_t *buf = malloc(len);
		assert_non_null(buf);
		assert_int_equal(msg_encode(&s->msg, buf, len, &len), TEEMS_OK);
		if (c->nq == c->capq) {
			c->capq = c->capq ? c->capq * 2 : 256;
			c->q_msgs = xrealloc(c->q_msgs, c->capq * sizeof(*c->q_msgs));
		}
		c->q_msgs[c->nq].from = i;
		c->q_msgs[c->nq].to = s->to;
		c->q_msgs[c->nq].buf = buf;
		c->q_msgs[c->nq].len = len;
		c->nq++;
	}
	for (size_t k = 0; k < r->n_applies; k++)
		record_apply(c, i, &r->applies[k]);
	for (size_t k = 0; k < r->n_notes; k++) {
		const struct paxos_note *n = &r->notes[k];

		if (n->client_id != 1 || n->request_id >= c->n_reqs)
			continue;
		struct request *rq = &c->reqs[n->request_id];
		rq->outcome = (int)n->outcome;
		if (n->outcome == PAXOS_OUTCOME_UNKNOWN)
			c->unknown++;
		if (n->outcome == PAXOS_OUTCOME_APPLIED)
			c->applied_notes++;
		if (n->outcome == PAXOS_OUTCOME_NOT_LEADER || n->outcome == PAXOS_OUTCOME_BUSY)
			rq->proposed = false; /* never proposed: free to try again */
	}
	if (wrote && nd->sync == SYNC_NOW) {
		struct paxos_input in = {.type = PAXOS_IN_SYNCED};

		nd->synced = nd->written;
		in.synced.seq = nd->written;
		step(c, i, &in);
	} else if (wrote && nd->sync == SYNC_DELAY && !nd->sync_due) {
		nd->sync_due = c->now + c->sync_delay;
	}
}

static void step(struct cluster *c, int i, struct paxos_input *in)
{
	int rc;

	if (c->allow_enomem && !c->nodes[i].up)
		return;
	in->now = node_time(c, i);
	rc = paxos_step(c->nodes[i].p, in, &c->nodes[i].r);
	if (rc == TEEMS_ENOMEM && c->allow_enomem) {
		c->nodes[i].up = false; /* the core must be discarded: a crash */
		c->enomem_hits++;
		return;
	}
	assert_int_equal(rc, TEEMS_OK);
	take_ready(c, i);
}

static void node_sync(struct cluster *c, int i)
{
	struct node *nd = &c->nodes[i];
	struct paxos_input in = {.type = PAXOS_IN_SYNCED};

	nd->synced = nd->written;
	nd->sync_due = 0;
	in.synced.seq = nd->written;
	step(c, i, &in);
}

static void tick(struct cluster *c, uint64_t dt);

/* Knobs some tests turn (restored after cluster_init). */
static uint32_t g_max_inflight = 16;
static uint32_t g_accept_slots = 8;
static uint64_t g_t_op = T_OP;
/* The leader lease (section 8): short, so that elections after a leader's loss wait little. */
#define T_LEASE (120 * MS)
static uint64_t g_t_lease = T_LEASE;

static void cluster_init(struct cluster *c, unsigned n, unsigned f, unsigned m_r,
			 enum paxos_sync_policy sync, unsigned unsafe, uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(quorum_init(&c->q, n, f, m_r, NULL), TEEMS_OK);
	c->n = (int)n;
	c->rng = seed * 7919 + 17;
	c->now = 1000 * MS;
	c->sync_delay = 3 * MS;
	for (int i = 0; i < c->n; i++) {
		struct paxos_config cfg;

		paxos_config_default(&cfg);
		cfg.quorum = c->q;
		cfg.self = (uint16_t)i;
		cfg.sync = sync;
		cfg.election_timeout_ns = T_ELECT;
		cfg.heartbeat_ns = T_HB;
		cfg.t_op_ns = g_t_op;
		cfg.t_lease_ns = g_t_lease;
		cfg.max_slot_bytes = 512;
		cfg.max_accept_slots = g_accept_slots;
		cfg.max_inflight = g_max_inflight;
		cfg.unsafe = unsafe;
		assert_int_equal(paxos_new(&c->nodes[i].p, &cfg, NULL), TEEMS_OK);
		paxos_ready_init(&c->nodes[i].r);
		c->nodes[i].up = true;
	}
	tick(c, 0); /* every node starts its election timer now */
}

static void cluster_free(struct cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		struct node *nd = &c->nodes[i];

		paxos_free(nd->p);
		paxos_ready_free(&nd->r);
		for (size_t k = 0; k < nd->n_applied; k++)
			free(nd->applied[k].value);
		free(nd->applied);
		free(nd->recs);
		free(nd->slot_seq);
		free(nd->slot_ballot);
	}
	for (size_t k = 0; k < c->nq; k++)
		free(c->q_msgs[k].buf);
	free(c->q_msgs);
	free(c->chosen);
	free(c->reqs);
}

/* Delivers message k of the queue (removing it), subject to faults and the filter. */
static void deliver(struct cluster *c, size_t k)
{
	struct net_msg nm = c->q_msgs[k];
	struct msg m;
	bool dup = false;

	memmove(c->q_msgs + k, c->q_msgs + k + 1, (c->nq - k - 1) * sizeof(*c->q_msgs));
	c->nq--;
	if (!c->nodes[nm.from].up || !c->nodes[nm.to].up)
		goto out;
	if (c->drop_pct && rnd(c) % 100 < c->drop_pct)
		goto out;
	assert_int_equal(msg_decode(nm.buf, nm.len, &m), TEEMS_OK);
	if (c->filter && !c->filter(c, nm.from, nm.to, &m))
		goto out;
	if (c->mutate)
		c->mutate(c, nm.from, nm.to, &m);
	dup = c->dup_pct && rnd(c) % 100 < c->dup_pct;
	{
		struct paxos_input in = {.type = PAXOS_IN_MESSAGE};

		in.message = &m;
		step(c, nm.to, &in);
		if (dup)
			step(c, nm.to, &in);
	}
out:
	free(nm.buf);
}

/* Advances time by dt and ticks every live node; fires due delayed syncs. */
static void tick(struct cluster *c, uint64_t dt)
{
	c->now += dt;
	for (int i = 0; i < c->n; i++) {
		struct node *nd = &c->nodes[i];
		struct paxos_input in = {.type = PAXOS_IN_TICK};

		if (!nd->up)
			continue;
		if (nd->sync == SYNC_DELAY && nd->sync_due && c->now >= nd->sync_due)
			node_sync(c, i);
		in.tick.random = rnd(c);
		step(c, i, &in);
	}
}

/* Delivers everything queued (new messages too), in order or shuffled. */
static void drain(struct cluster *c)
{
	int guard = 0;

	for (; c->nq && guard < 200000; guard++)
		deliver(c, c->reorder ? (size_t)(rnd(c) % c->nq) : 0);
	if (c->nq)
		fail_msg("the network never quiesces (a message storm)");
}

static void run(struct cluster *c, uint64_t duration)
{
	for (uint64_t t = 0; t < duration; t += MS) {
		drain(c);
		tick(c, MS);
	}
	drain(c);
}

static int leader_of(struct cluster *c)
{
	int leader = -1;

	for (int i = 0; i < c->n; i++)
		if (c->nodes[i].up && paxos_role(c->nodes[i].p) == PAXOS_LEADER) {
			struct msg_ballot a = paxos_promised(c->nodes[i].p);
			struct msg_ballot b = leader < 0 ? (struct msg_ballot){0}
							 : paxos_promised(c->nodes[leader].p);

			if (leader < 0 || msg_ballot_cmp(&a, &b) > 0)
				leader = i;
		}
	return leader;
}

/* Makes node i time out first (its clock runs ahead), then runs until it leads. The others
 * first wait out their leader-lease promises to a previous leader (section 8: until then they
 * promise no other ballot); their election timers run longer than that. */
static void wait_out_leases(struct cluster *c)
{
	for (uint64_t t = 0; g_t_lease && t <= g_t_lease + g_t_lease / 100; t += MS) {
		drain(c);
		tick(c, MS);
	}
}

static void elect(struct cluster *c, int i)
{
	wait_out_leases(c);
	c->nodes[i].clock_off += 2 * T_ELECT;
	for (int k = 0; k < 2000 && !paxos_can_serve_reads(c->nodes[i].p); k++) {
		drain(c);
		tick(c, MS);
	}
	drain(c);
	assert_true(paxos_can_serve_reads(c->nodes[i].p));
}

static void propose(struct cluster *c, int i, uint64_t req)
{
	struct paxos_input in = {.type = PAXOS_IN_PROPOSE};
	char cmd[32];

	snprintf(cmd, sizeof(cmd), "cmd-%llu", (unsigned long long)req);
	in.propose.client_id = 1;
	in.propose.request_id = req;
	in.propose.command = (const uint8_t *)cmd;
	in.propose.len = (uint32_t)strlen(cmd);
	c->reqs[req].proposed = true;
	step(c, i, &in);
}

static void make_requests(struct cluster *c, size_t n)
{
	c->reqs = calloc(n, sizeof(*c->reqs));
	assert_non_null(c->reqs);
	c->n_reqs = n;
	for (size_t k = 0; k < n; k++)
		c->reqs[k].outcome = -1;
}

/* The commands node i applied, in order (request ids), into out; returns the count. */
static size_t applied_requests(struct cluster *c, int i, uint64_t *out, size_t cap)
{
	struct node *nd = &c->nodes[i];
	size_t n = 0;

	for (size_t k = 0; k < nd->n_applied; k++) {
		struct paxos_command cmd;
		size_t off = 0;

		while (paxos_batch_next(nd->applied[k].value, nd->applied[k].len, &off, &cmd))
			if (n < cap)
				out[n++] = cmd.request_id;
	}
	return n;
}

/* ---- (1) normal case ---- */

struct cfg3 {
	unsigned n, f, m_r;
};

static const struct cfg3 configs[] = {
	{3, 1, 1}, {5, 2, 2}, {4, 1, 2}, {7, 2, 4}, {3, 1, 0}, {5, 2, 0},
};
#define N_CONFIGS (sizeof(configs) / sizeof(configs[0]))

static void normal_case(enum paxos_sync_policy sync, bool delayed_sync)
{
	for (size_t ci = 0; ci < N_CONFIGS; ci++) {
		struct cluster c;
		const size_t total = 1000;
		uint64_t *ref = malloc(total * 2 * sizeof(*ref));
		uint64_t *got = malloc(total * 2 * sizeof(*got));
		size_t next = 0;

		cluster_init(&c, configs[ci].n, configs[ci].f, configs[ci].m_r, sync, 0, ci + 1);
		if (delayed_sync)
			for (int i = 0; i < c.n; i++)
				c.nodes[i].sync = SYNC_DELAY;
		make_requests(&c, total);
		elect(&c, (int)(ci % c.n));
		int leader = leader_of(&c);
		assert_int_equal(leader, (int)(ci % c.n));
		for (int k = 0; k < 5000 && c.applied_notes < total; k++) {
			for (int j = 0; j < 40 && next < total; j++)
				propose(&c, leader, next++);
			drain(&c);
			tick(&c, MS);
		}
		run(&c, 200 * MS);
		assert_int_equal(c.applied_notes, total);
		assert_int_equal(c.unknown, 0);
		assert_false(c.violation);
		assert_false(c.order_violation);
		size_t n0 = applied_requests(&c, 0, ref, total * 2);
		assert_int_equal(n0, total);
		for (int i = 1; i < c.n; i++) {
			assert_int_equal(paxos_commit_index(c.nodes[i].p),
					 paxos_commit_index(c.nodes[leader].p));
			assert_int_equal(applied_requests(&c, i, got, total * 2), total);
			assert_memory_equal(ref, got, total * sizeof(*ref));
		}
		/* Batching happened: fewer slots than commands. */
		assert_true(paxos_commit_index(c.nodes[leader].p) < total);
		free(ref);
		free(got);
		cluster_free(&c);
	}
}

static void test_normal_rr(void **state)
{
	(void)state;
	normal_case(PAXOS_SYNC_RR, false);
}

static void test_normal_rr_delayed_sync(void **state)
{
	(void)state;
	normal_case(PAXOS_SYNC_RR, true);
}

static void test_normal_always(void **state)
{
	(void)state;
	normal_case(PAXOS_SYNC_ALWAYS, true);
}

static void test_normal_none(void **state)
{
	(void)state;
	normal_case(PAXOS_SYNC_NONE, false);
}

/* ---- (2) the commit rule (DESIGN.md section 7) ----
 *
 * A slot commits once W_Q matching accepts exist and at least W_Q - M_R of them are synced.
 * After electing node 0 with everything durable, every node holds its syncs; one command is
 * proposed and the network drained; then the leader and k followers are synced one by one.
 * Under rr every follower acks volatile at once and synced after its sync; the leader counts
 * itself only once synced. Under always only synced acks exist. Under none everything is
 * volatile and counted at once. */
static bool commit_expected(const struct quorum *q, enum paxos_sync_policy sync, bool leader_synced,
			    unsigned k)
{
	unsigned w = quorum_write(q), acked, synced = (leader_synced ? 1 : 0) + k;

	switch (sync) {
	case PAXOS_SYNC_RR:
		acked = (leader_synced ? 1 : 0) + (q->n - 1);
		break;
	case PAXOS_SYNC_ALWAYS:
		acked = synced;
		break;
	default:
		return q->n >= w; /* volatile-only commit allowed */
	}
	return acked >= w && synced + q->m_r >= w;
}

static bool commit_case(const struct cfg3 *cf, enum paxos_sync_policy sync, bool leader_synced,
			unsigned k)
{
	struct cluster c;
	uint64_t before;
	bool committed;

	cluster_init(&c, cf->n, cf->f, cf->m_r, sync, 0, 99);
	make_requests(&c, 1);
	elect(&c, 0);
	for (int i = 0; i < c.n; i++)
		c.nodes[i].sync = SYNC_HOLD;
	before = paxos_commit_index(c.nodes[0].p);
	propose(&c, 0, 0);
	drain(&c);
	if (leader_synced) {
		node_sync(&c, 0);
		drain(&c);
	}
	for (unsigned j = 1; j <= k; j++) {
		node_sync(&c, (int)j);
		drain(&c);
	}
	committed = paxos_commit_index(c.nodes[0].p) > before;
	assert_int_equal(committed, c.reqs[0].outcome == PAXOS_OUTCOME_APPLIED);
	assert_false(c.order_violation);
	cluster_free(&c);
	return committed;
}

static void test_commit_rule(void **state)
{
	static const enum paxos_sync_policy policies[] = {PAXOS_SYNC_RR, PAXOS_SYNC_ALWAYS,
							  PAXOS_SYNC_NONE};
	(void)state;
	for (size_t ci = 0; ci < N_CONFIGS; ci++)
		for (size_t pi = 0; pi < 3; pi++)
			for (int ls = 0; ls <= 1; ls++)
				for (unsigned k = 0; k < configs[ci].n; k++) {
					struct quorum q;
					bool want, got;

					quorum_init(&q, configs[ci].n, configs[ci].f,
						    configs[ci].m_r, NULL);
					want = commit_expected(&q, policies[pi], ls, k);
					got = commit_case(&configs[ci], policies[pi], ls, k);
					if (want != got)
						fail_msg(
							"N=%u F=%u M_R=%u sync=%d leader_synced=%d "
							"k=%u: committed %d, expected %d",
							configs[ci].n, configs[ci].f,
							configs[ci].m_r, (int)policies[pi], ls, k,
							got, want);
				}
}

/* The same rule spelled out for the cases that matter. */
static void test_commit_rule_examples(void **state)
{
	const struct cfg3 rr311 = {3, 1, 1}, cft = {3, 1, 0}, r522 = {5, 2, 2}, r724 = {7, 2, 4};
	(void)state;
	/* M_R=1: the leader's own synced ack is the W_Q - M_R = 1 synced one. */
	assert_true(commit_case(&rr311, PAXOS_SYNC_RR, true, 0));
	/* Volatile acks from every follower are not enough while the leader is unsynced. */
	assert_false(commit_case(&rr311, PAXOS_SYNC_RR, false, 0));
	assert_true(commit_case(&rr311, PAXOS_SYNC_RR, false, 1));
	/* M_R=0 is classic Paxos: W_Q synced acks, a volatile majority is not enough. */
	assert_false(commit_case(&cft, PAXOS_SYNC_RR, true, 0));
	assert_true(commit_case(&cft, PAXOS_SYNC_RR, true, 1));
	/* ... unless the policy is none, which allows volatile-only commits. */
	assert_true(commit_case(&cft, PAXOS_SYNC_NONE, false, 0));
	/* always: W_Q synced acks whatever M_R. */
	assert_false(commit_case(&rr311, PAXOS_SYNC_ALWAYS, true, 0));
	assert_true(commit_case(&rr311, PAXOS_SYNC_ALWAYS, true, 1));
	assert_true(commit_case(&r522, PAXOS_SYNC_RR, true, 0));
	assert_false(commit_case(&r724, PAXOS_SYNC_RR, false, 0));
	assert_true(commit_case(&r724, PAXOS_SYNC_RR, true, 0));
}

/* ---- (3) elections ---- */

static void check_unique_applies(struct cluster *c)
{
	uint64_t *got = malloc((c->n_reqs + 1) * 4 * sizeof(*got));
	unsigned char *seen = calloc(c->n_reqs + 1, 1);

	for (int i = 0; i < c->n; i++) {
		size_t n = applied_requests(c, i, got, (c->n_reqs + 1) * 4);

		memset(seen, 0, c->n_reqs + 1);
		for (size_t k = 0; k < n; k++) {
			assert_true(got[k] < c->n_reqs);
			if (seen[got[k]])
				c->violation = true; /* a command applied twice */
			seen[got[k]] = 1;
		}
	}
	free(got);
	free(seen);
}

static void test_leader_crash(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < N_CONFIGS; ci++) {
		struct cluster c;
		uint64_t committed;
		size_t next = 0;
		int leader;

		cluster_init(&c, configs[ci].n, configs[ci].f, configs[ci].m_r, PAXOS_SYNC_RR, 0,
			     ci + 5);
		make_requests(&c, 200);
		elect(&c, 0);
		while (next < 100)
			propose(&c, 0, next++);
		run(&c, 50 * MS);
		assert_int_equal(c.applied_notes, 100);
		committed = paxos_commit_index(c.nodes[0].p);
		c.nodes[0].up = false;
		for (int k = 0; k < 3000 && (leader = leader_of(&c)) < 0; k++) {
			drain(&c);
			tick(&c, MS);
		}
		leader = leader_of(&c);
		assert_true(leader > 0);
		run(&c, 50 * MS);
		assert_true(paxos_can_serve_reads(c.nodes[leader].p));
		assert_true(paxos_commit_index(c.nodes[leader].p) > committed);
		while (next < 200)
			propose(&c, leader, next++);
		run(&c, 100 * MS);
		assert_int_equal(c.applied_notes, 200);
		check_unique_applies(&c);
		assert_false(c.violation);
		assert_false(c.order_violation);
		cluster_free(&c);
	}
}

/* Filters for the scripted scenarios: drop what `arg` describes. */
struct drop_rule {
	bool accept_to[MAX_NODES]; /* drop ACCEPT to these */
	uint64_t accept_slot_to1;  /* drop the ACCEPT of this first slot to node 1 */
	bool accepted_to_leader;   /* drop every ACCEPTED (the leader never counts) */
};

static bool drop_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	const struct drop_rule *d = c->filter_arg;

	(void)from;
	if (m->type == MSG_ACCEPT && d->accept_to[to])
		return false;
	if (m->type == MSG_ACCEPT && to == 1 && m->accept.first_slot == d->accept_slot_to1)
		return false;
	if (m->type == MSG_ACCEPTED && d->accepted_to_leader)
		return false;
	return true;
}

static bool applied_at(struct cluster *c, int i, uint64_t slot, const char *want)
{
	struct node *nd = &c->nodes[i];

	for (size_t k = 0; k < nd->n_applied; k++) {
		if (nd->applied[k].slot != slot)
			continue;
		if (!want)
			return nd->applied[k].len == 0;
		struct paxos_command cmd;
		size_t off = 0;
		if (!paxos_batch_next(nd->applied[k].value, nd->applied[k].len, &off, &cmd))
			return false;
		return cmd.len == strlen(want) && memcmp(cmd.command, want, cmd.len) == 0;
	}
	return false;
}

/* An entry accepted by one quorum member only (never committed) is re-proposed by the next
 * leader; a slot nobody but the dead leader accepted becomes a no-op. */
static void test_reproposal_and_holes(void **state)
{
	struct cluster c;
	struct drop_rule d = {0};
	uint64_t s;

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 3);
	make_requests(&c, 2);
	elect(&c, 0);
	s = paxos_last_slot(c.nodes[0].p) + 1;
	d.accept_to[2] = true;
	d.accept_slot_to1 = s;
	d.accepted_to_leader = true;
	c.filter = drop_filter;
	c.filter_arg = &d;
	propose(&c, 0, 0); /* slot s: reaches nobody */
	drain(&c);
	propose(&c, 0, 1); /* slot s + 1: reaches node 1 only */
	drain(&c);
	assert_int_equal(paxos_commit_index(c.nodes[0].p), s - 1);
	assert_int_equal(paxos_last_slot(c.nodes[1].p), s + 1);
	c.nodes[0].up = false;
	c.filter = NULL;
	elect(&c, 2);
	run(&c, 20 * MS);
	for (int i = 1; i <= 2; i++) {
		assert_true(applied_at(&c, i, s, NULL));	/* hole: no-op */
		assert_true(applied_at(&c, i, s + 1, "cmd-1")); /* re-proposed */
	}
	assert_false(c.violation);
	assert_false(c.order_violation);
	cluster_free(&c);
}

/* Committed at 0 and 1 only; 0 dies; 2 must learn the entry from 1's promise. The unsafe
 * variants (skip adopting, or one promise short) lose it, and the checker sees it. */
static bool lost_commit_scenario(unsigned unsafe)
{
	struct cluster c;
	struct drop_rule d = {0};
	uint64_t s;
	bool violation;

	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, unsafe, 4);
	make_requests(&c, 1);
	elect(&c, 0);
	run(&c, 10 * MS);
	s = paxos_last_slot(c.nodes[0].p) + 1;
	d.accept_to[2] = true;
	c.filter = drop_filter;
	c.filter_arg = &d;
	propose(&c, 0, 0);
	drain(&c);
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_APPLIED);
	assert_true(applied_at(&c, 0, s, "cmd-0"));
	c.nodes[0].up = false;
	c.filter = NULL;
	wait_out_leases(&c);
	c.nodes[1].clock_off = 0;
	c.nodes[2].clock_off += 2 * T_ELECT;
	run(&c, 1000 * MS);
	assert_true(leader_of(&c) >= 1);
	violation = c.violation;
	if (!unsafe) {
		assert_true(applied_at(&c, 1, s, "cmd-0"));
		assert_true(applied_at(&c, 2, s, "cmd-0"));
	}
	assert_false(c.order_violation);
	cluster_free(&c);
	return violation;
}

static void test_committed_survives_election(void **state)
{
	(void)state;
	assert_false(lost_commit_scenario(0));
}

static void test_negative_control_scripted(void **state)
{
	(void)state;
	assert_true(lost_commit_scenario(PAXOS_UNSAFE_SKIP_ADOPT));
	assert_true(lost_commit_scenario(PAXOS_UNSAFE_SHORT_PROMISE));
}

static void test_competing_candidates(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 20; seed++) {
		struct cluster c;
		int leader;

		cluster_init(&c, 5, 2, 2, PAXOS_SYNC_RR, 0, seed);
		make_requests(&c, 50);
		c.reorder = true;
		c.sync_delay = 2 * MS;
		for (int i = 0; i < c.n; i++) {
			c.nodes[i].sync = SYNC_DELAY;
			c.nodes[i].clock_off = 2 * T_ELECT; /* everyone times out together */
		}
		for (int k = 0; k < 5000 && (leader = leader_of(&c)) < 0; k++) {
			drain(&c);
			tick(&c, MS);
		}
		leader = leader_of(&c);
		assert_true(leader >= 0);
		for (uint64_t r = 0; r < 50; r++)
			propose(&c, leader, r);
		run(&c, 300 * MS);
		leader = leader_of(&c);
		assert_true(leader >= 0);
		check_unique_applies(&c);
		assert_false(c.violation);
		assert_false(c.order_violation);
		cluster_free(&c);
	}
}

/* ---- random faults ---- */

/* Runs a cluster under drops, duplicates, reordering, delayed syncs and partitions (usually at
 * most F nodes cut off, sometimes all but one), proposing to whoever leads, with the sync
 * policy picked by the seed. Returns whether the checker saw a violation. With heal, the faults
 * stop at the end and the cluster must then commit everything proposed to it. */
static bool random_run(const struct cfg3 *cf, uint64_t seed, unsigned unsafe, bool heal)
{
	struct cluster c;
	uint64_t next = 0;
	const uint64_t total = 300;
	bool violation;

	static const enum paxos_sync_policy policies[] = {PAXOS_SYNC_RR, PAXOS_SYNC_ALWAYS,
							  PAXOS_SYNC_NONE};

	/* One seed in four runs a tight configuration: T_op shorter than a slow fsync, one slot
	 * per ACCEPT, a pipeline of three, so rounds expire and retry all the time. */
	bool tight = (seed % 100 + seed / 100) % 4 == 3;

	if (tight) {
		g_t_op = 15 * MS;
		g_accept_slots = 1;
		g_max_inflight = 3;
	}
	cluster_init(&c, cf->n, cf->f, cf->m_r, unsafe ? PAXOS_SYNC_RR : policies[seed % 3], unsafe,
		     seed);
	g_t_op = T_OP;
	g_accept_slots = 8;
	g_max_inflight = 16;
	make_requests(&c, total);
	c.reorder = true;
	c.drop_pct = 10;
	c.dup_pct = 5;
	c.sync_delay = tight ? 10 * MS : 2 * MS;
	for (int i = 0; i < c.n; i++)
		c.nodes[i].sync = (seed + (uint64_t)i) % 3 ? SYNC_DELAY : SYNC_NOW;
	for (uint64_t t = 0; t < 2500; t++) {
		int leader = leader_of(&c);

		if (leader >= 0 && next < total && rnd(&c) % 3 == 0)
			propose(&c, leader, next++);
		if (t % 200 == 0) {
			unsigned down = 0;

			for (int i = 0; i < c.n; i++)
				c.nodes[i].up = true;
			/* cut off up to F nodes, often the leader; now and then more than F
			 * (safety must hold anyway; progress waits for the heal) */
			unsigned max_down = rnd(&c) % 8 == 0 ? (unsigned)c.n - 1 : cf->f;

			for (unsigned k = 0; k < max_down; k++) {
				int v = (int)(rnd(&c) % (uint64_t)c.n);

				if (k == 0 && leader >= 0 && rnd(&c) % 2)
					v = leader;
				if (c.nodes[v].up && down < max_down) {
					c.nodes[v].up = false;
					down++;
				}
			}
		}
		/* deliver a random amount, not everything: messages stay in flight across ticks */
		for (size_t k = rnd(&c) % (c.nq + 1); k > 0 && c.nq; k--)
			deliver(&c, (size_t)(rnd(&c) % c.nq));
		tick(&c, MS);
		if (c.violation)
			break;
	}
	if (heal && !c.violation) {
		for (int i = 0; i < c.n; i++)
			c.nodes[i].up = true;
		c.drop_pct = c.dup_pct = 0;
		run(&c, 3000 * MS);
		int leader = leader_of(&c);
		assert_true(leader >= 0);
		/* Liveness once healed: everything never proposed (or refused) now commits. */
		for (uint64_t r = 0; r < total; r++)
			if (!c.reqs[r].proposed)
				propose(&c, leader, r);
		run(&c, 500 * MS);
		for (uint64_t r = 0; r < total; r++)
			if (c.reqs[r].outcome != PAXOS_OUTCOME_UNKNOWN)
				assert_int_equal(c.reqs[r].outcome, PAXOS_OUTCOME_APPLIED);
		assert_true(paxos_can_serve_reads(c.nodes[leader].p));
		for (int i = 0; i < c.n; i++)
			assert_int_equal(paxos_commit_index(c.nodes[i].p),
					 paxos_commit_index(c.nodes[leader].p));
		check_unique_applies(&c);
		if (getenv("PAXOS_VERBOSE"))
			fprintf(stderr, "seed %llu: commit %llu, unknown %zu, applied %zu\n",
				(unsigned long long)seed,
				(unsigned long long)paxos_commit_index(c.nodes[leader].p),
				c.unknown, c.applied_notes);
	}
	violation = c.violation;
	assert_false(c.order_violation);
	cluster_free(&c);
	return violation;
}

/* PAXOS_SEEDS=n runs n seeds per configuration (default 40). */
static void test_random_faults(void **state)
{
	const char *env = getenv("PAXOS_SEEDS");
	uint64_t seeds = env ? strtoull(env, NULL, 10) : 40;

	(void)state;
	for (size_t ci = 0; ci < N_CONFIGS; ci++)
		for (uint64_t seed = 1; seed <= seeds; seed++)
			if (random_run(&configs[ci], seed * 100 + ci, 0, true))
				fail_msg("agreement violated: N=%u F=%u M_R=%u seed %llu",
					 configs[ci].n, configs[ci].f, configs[ci].m_r,
					 (unsigned long long)(seed * 100 + ci));
}

static void test_negative_control_random(void **state)
{
	static const unsigned flags[] = {PAXOS_UNSAFE_SKIP_ADOPT, PAXOS_UNSAFE_SHORT_PROMISE};
	(void)state;
	for (size_t fi = 0; fi < 2; fi++) {
		unsigned caught = 0;

		for (uint64_t seed = 1; seed <= 40 && !caught; seed++)
			caught += random_run(&configs[0], seed, flags[fi], false);
		if (!caught)
			fail_msg("unsafe flag %u never caught by the agreement checker", flags[fi]);
	}
}

/* ---- (4) abandonment: T_op and clock taint ---- */

static void cut_followers(struct cluster *c, bool up)
{
	for (int i = 1; i < c->n; i++)
		c->nodes[i].up = up;
}

static void test_top_abandonment(void **state)
{
	struct cluster c;
	uint64_t t0;

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 8);
	make_requests(&c, 1);
	elect(&c, 0);
	cut_followers(&c, false);
	propose(&c, 0, 0);
	t0 = c.now;
	while (c.reqs[0].outcome < 0 && c.now - t0 < 2 * T_OP) {
		drain(&c);
		tick(&c, MS);
	}
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_UNKNOWN);
	assert_true(c.now - t0 > T_OP); /* not before T_op */
	/* "Unknown" is the truth: the retried slot still commits once the followers return. */
	cut_followers(&c, true);
	run(&c, 1500 * MS);
	assert_true(applied_at(&c, 1, 0, NULL) || true);
	uint64_t got[8];
	size_t n = applied_requests(&c, 1, got, 8);
	assert_int_equal(n, 1);
	assert_int_equal(got[0], 0);
	assert_false(c.violation);
	cluster_free(&c);
}

static void test_taint_abandonment(void **state)
{
	struct cluster c;
	uint64_t t0;

	(void)state;
	cluster_init(&c, 5, 2, 2, PAXOS_SYNC_RR, 0, 9);
	make_requests(&c, 2);
	elect(&c, 0);
	cut_followers(&c, false);
	propose(&c, 0, 0);
	propose(&c, 0, 1);
	t0 = c.now;
	tick(&c, MS);
	assert_int_equal(c.reqs[0].outcome, -1);
	c.nodes[0].epoch++; /* the trusted clock reports tampering */
	tick(&c, MS);
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_UNKNOWN);
	assert_int_equal(c.reqs[1].outcome, PAXOS_OUTCOME_UNKNOWN);
	assert_true(c.now - t0 < T_OP);
	cut_followers(&c, true);
	run(&c, 1500 * MS);
	assert_false(c.violation);
	cluster_free(&c);
}

/* ---- suspicion ---- */

static void test_suspicious_never_votes(void **state)
{
	struct cluster c;

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 10);
	paxos_set_suspicious(c.nodes[2].p, true);
	make_requests(&c, 1);
	elect(&c, 0); /* with node 1's promise */
	c.nodes[1].up = false;
	propose(&c, 0, 0);
	run(&c, 2 * T_OP);
	/* Node 2 stored nothing and its refusals counted for nothing. */
	assert_int_equal(paxos_last_slot(c.nodes[2].p), 0);
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_UNKNOWN);
	/* Nor can a suspicious replica campaign or help anyone win. */
	c.nodes[0].up = false;
	c.nodes[1].up = true;
	c.nodes[1].clock_off += 2 * T_ELECT;
	run(&c, 1000 * MS);
	assert_int_equal(leader_of(&c), -1);
	assert_int_equal(paxos_role(c.nodes[2].p), PAXOS_FOLLOWER);
	assert_false(c.order_violation);
	cluster_free(&c);
}

/* ---- interface ---- */

static void test_config_errors(void **state)
{
	struct paxos_config cfg;
	struct paxos *p;
	char err[TEEMS_ERRBUF_LEN];

	(void)state;
	paxos_config_default(&cfg);
	assert_int_equal(paxos_new(&p, &cfg, err), TEEMS_EINVAL);
	assert_int_equal(quorum_init(&cfg.quorum, 3, 1, 1, NULL), TEEMS_OK);
	cfg.self = 3;
	assert_int_equal(paxos_new(&p, &cfg, err), TEEMS_EINVAL);
	assert_non_null(strstr(err, "self"));
	cfg.self = 0;
	cfg.max_accept_slots = 0;
	assert_int_equal(paxos_new(&p, &cfg, err), TEEMS_EINVAL);
	cfg.max_accept_slots = 8;
	assert_int_equal(paxos_new(&p, &cfg, err), TEEMS_OK);
	paxos_free(p);
}

/* A follower that missed many committed slots (but kept hearing heartbeats, so it did not
 * campaign) is streamed the gap, chunk after chunk, from the first heartbeat on. */
static bool drop_accept_to2(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	return !(m->type == MSG_ACCEPT && to == 2);
}

static void test_lagging_follower_catches_up(void **state)
{
	struct cluster c;
	uint64_t ci;

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 27);
	make_requests(&c, 3000);
	elect(&c, 0);
	c.filter = drop_accept_to2;
	for (uint64_t r = 0; r < 3000; r++) {
		propose(&c, 0, r);
		if (r % 20 == 19) {
			drain(&c);
			tick(&c, MS);
		}
	}
	run(&c, 20 * MS);
	ci = paxos_commit_index(c.nodes[0].p);
	assert_int_equal(c.applied_notes, 3000);
	assert_true(ci > 10 * 8); /* many ACCEPTs' worth (max_accept_slots = 8) */
	assert_true(paxos_commit_index(c.nodes[2].p) < ci);
	assert_int_equal(paxos_role(c.nodes[2].p), PAXOS_FOLLOWER);
	c.filter = NULL;
	run(&c, T_HB + 5 * MS); /* one heartbeat */
	assert_int_equal(paxos_commit_index(c.nodes[2].p), ci);
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_LEADER);
	assert_false(c.violation);
	cluster_free(&c);
}

/* ---- ordering rules, spelled out ---- */

static size_t queued(struct cluster *c, int from, enum msg_type type, int sync)
{
	size_t n = 0;

	for (size_t k = 0; k < c->nq; k++) {
		struct msg m;

		if (c->q_msgs[k].from != from)
			continue;
		assert_int_equal(msg_decode(c->q_msgs[k].buf, c->q_msgs[k].len, &m), TEEMS_OK);
		if (m.type == type && (sync < 0 || (int)m.accepted.sync == sync))
			n++;
	}
	return n;
}

static void test_ordering_rules(void **state)
{
	struct cluster c;

	(void)state;
	/* A candidate sends no PREPARE until its own promise is durable; an acceptor sends no
	 * PROMISE until its promise is. */
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 28);
	for (int i = 0; i < c.n; i++)
		c.nodes[i].sync = SYNC_HOLD;
	c.nodes[0].clock_off += 2 * T_ELECT;
	tick(&c, MS);
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_CANDIDATE);
	assert_int_equal(queued(&c, 0, MSG_PREPARE, -1), 0);
	node_sync(&c, 0);
	assert_int_equal(queued(&c, 0, MSG_PREPARE, -1), 2);
	drain(&c);
	assert_int_equal(queued(&c, 1, MSG_PROMISE, -1) + queued(&c, 2, MSG_PROMISE, -1), 0);
	node_sync(&c, 1);
	assert_int_equal(queued(&c, 1, MSG_PROMISE, -1), 1);
	drain(&c);
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_LEADER);
	cluster_free(&c);

	/* sync=always: an acceptor's only ack is the synced one, after its fsync; sync=rr: a
	 * volatile ack at once, the synced one after the fsync; sync=none: volatile only. */
	static const enum paxos_sync_policy pol[] = {PAXOS_SYNC_ALWAYS, PAXOS_SYNC_RR,
						     PAXOS_SYNC_NONE};
	static const size_t vol_before[] = {0, 1, 1}, syn_before[] = {0, 0, 0},
			    syn_after[] = {1, 1, 0};
	for (int k = 0; k < 3; k++) {
		cluster_init(&c, 3, 1, 1, pol[k], 0, 29);
		make_requests(&c, 1);
		elect(&c, 0);
		c.nodes[1].sync = SYNC_HOLD;
		c.nodes[2].up = false;
		propose(&c, 0, 0);
		while (c.nq && c.q_msgs[0].from == 0)
			deliver(&c, 0); /* the ACCEPT (and heartbeat) to node 1 */
		assert_int_equal(queued(&c, 1, MSG_ACCEPTED, MSG_VOLATILE), vol_before[k]);
		assert_int_equal(queued(&c, 1, MSG_ACCEPTED, MSG_SYNCED), syn_before[k]);
		node_sync(&c, 1);
		assert_int_equal(queued(&c, 1, MSG_ACCEPTED, MSG_SYNCED), syn_after[k]);
		drain(&c);
		assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_APPLIED);
		assert_false(c.order_violation);
		cluster_free(&c);
	}
}

/* ---- what is counted ---- */

static void mark_suspicious_from2(struct cluster *c, int from, int to, struct msg *m)
{
	(void)c;
	(void)to;
	if (from == 2)
		m->suspicious = true; /* as if node 2 were a suspicious incarnation */
}

static void wrong_nonce(struct cluster *c, int from, int to, struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	if (m->type == MSG_ACCEPTED)
		m->nonce ^= 0x5a5a; /* a reply to some other collection */
}

/* Votes flagged suspicious, duplicated acks and acks echoing a foreign nonce never count. */
static void test_counting_rules(void **state)
{
	struct cluster c;

	(void)state;
	/* A promise flagged suspicious does not make a quorum: node 1 is down, node 2's promise
	 * is flagged, so node 0 cannot win. */
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 21);
	c.mutate = mark_suspicious_from2;
	c.nodes[1].up = false;
	c.nodes[0].clock_off += 2 * T_ELECT;
	run(&c, 1500 * MS);
	assert_int_equal(leader_of(&c), -1);
	cluster_free(&c);

	/* An accept flagged suspicious does not commit either. */
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 22);
	make_requests(&c, 1);
	elect(&c, 0);
	c.mutate = mark_suspicious_from2;
	c.nodes[1].up = false;
	propose(&c, 0, 0);
	run(&c, 100 * MS);
	assert_int_equal(c.reqs[0].outcome, -1);
	cluster_free(&c);

	/* Duplicated acks from one replica count once: N=5, W_Q=3, only node 1 answers. */
	cluster_init(&c, 5, 2, 2, PAXOS_SYNC_RR, 0, 23);
	make_requests(&c, 1);
	elect(&c, 0);
	for (int i = 2; i < 5; i++)
		c.nodes[i].up = false;
	c.dup_pct = 100;
	propose(&c, 0, 0);
	run(&c, 100 * MS);
	assert_int_equal(c.reqs[0].outcome, -1);
	cluster_free(&c);

	/* Acks that echo another collection's nonce are ignored. */
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 24);
	make_requests(&c, 1);
	elect(&c, 0);
	c.mutate = wrong_nonce;
	propose(&c, 0, 0);
	run(&c, 100 * MS);
	assert_int_equal(c.reqs[0].outcome, -1);
	c.mutate = NULL; /* the next retry (after T_op) counts */
	run(&c, 2 * T_OP);
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_UNKNOWN);
	assert_int_equal(applied_requests(&c, 2, (uint64_t[4]){0}, 4), 1);
	assert_false(c.violation);
	cluster_free(&c);
}

/* More accepted entries than one PROMISE carries (MSG_MAX_ENTRIES): the candidate pages
 * through them with `more`, and every one is re-proposed. */
static void test_promise_paging(void **state)
{
	struct cluster c;
	struct drop_rule d = {0};
	const uint64_t total = MSG_MAX_ENTRIES + 300;
	uint64_t *got;

	(void)state;
	g_max_inflight = 8192;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 25);
	g_max_inflight = 16;
	make_requests(&c, total);
	elect(&c, 0);
	d.accept_to[2] = true;
	d.accepted_to_leader = true;
	c.filter = drop_filter;
	c.filter_arg = &d;
	for (uint64_t r = 0; r < total; r++) {
		propose(&c, 0, r); /* one slot each */
		drain(&c);
	}
	assert_true(paxos_last_slot(c.nodes[1].p) > MSG_MAX_ENTRIES);
	assert_int_equal(c.applied_notes, 0);
	c.nodes[0].up = false;
	c.filter = NULL;
	elect(&c, 2);
	run(&c, 50 * MS);
	got = malloc(total * sizeof(*got));
	assert_int_equal(applied_requests(&c, 2, got, total), total);
	for (uint64_t r = 0; r < total; r++)
		assert_int_equal(got[r], r);
	free(got);
	assert_false(c.violation);
	cluster_free(&c);
}

/* ---- the interface ---- */

static void test_interface(void **state)
{
	struct cluster c;
	struct paxos_input in = {.type = PAXOS_IN_PROPOSE};
	uint8_t big[600] = {0};
	struct paxos_command cmd;
	size_t off = 0;
	const uint8_t bad[] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 'x'};

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_SYNC_RR, 0, 26);
	make_requests(&c, 3);
	elect(&c, 0);
	/* a follower refuses with a hint; the request was never proposed */
	propose(&c, 1, 0);
	assert_int_equal(c.reqs[0].outcome, PAXOS_OUTCOME_NOT_LEADER);
	assert_int_equal(c.nodes[1].r.notes[0].leader, 0);
	/* over max_slot_bytes: refused as an invalid input, nothing changes */
	in.now = node_time(&c, 0);
	in.propose.client_id = 1;
	in.propose.command = big;
	in.propose.len = sizeof(big);
	assert_int_equal(paxos_step(c.nodes[0].p, &in, &c.nodes[0].r), TEEMS_EINVAL);
	in.type = (enum paxos_input_type)9;
	assert_int_equal(paxos_step(c.nodes[0].p, &in, &c.nodes[0].r), TEEMS_EINVAL);
	/* a batch that lies about its length stops the iterator */
	assert_false(paxos_batch_next(bad, sizeof(bad), &off, &cmd));
	assert_false(paxos_batch_next(NULL, 0, &off, &cmd));
	assert_true(paxos_can_serve_reads(c.nodes[0].p));
	assert_false(paxos_can_serve_reads(c.nodes[1].p));
	assert_int_equal(paxos_leader_hint(c.nodes[2].p), 0);
	/* becoming suspicious makes a leader step down; its proposals become UNKNOWN */
	c.nodes[1].up = c.nodes[2].up = false;
	propose(&c, 0, 1);
	paxos_set_suspicious(c.nodes[0].p, true);
	tick(&c, MS);
	assert_true(paxos_suspicious(c.nodes[0].p));
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_FOLLOWER);
	assert_int_equal(c.reqs[1].outcome, PAXOS_OUTCOME_UNKNOWN);
	cluster_free(&c);
}

/* ---- allocation failures ---- */

static void alloc_scenario(struct cluster *c, long nth, int repeat)
{
	cluster_init(c, 3, 1, 1, PAXOS_SYNC_RR, 0, 11);
	c->allow_enomem = true;
	teems_alloc_fault(nth, repeat);
	make_requests(c, 20);
	c->nodes[0].clock_off += 2 * T_ELECT;
	for (int k = 0; k < 400; k++) {
		int leader = leader_of(c);

		if (leader >= 0 && k % 10 == 0 && (size_t)(k / 10) < c->n_reqs)
			propose(c, leader, (uint64_t)(k / 10));
		drain(c);
		tick(c, MS);
	}
}

/* Fails the Nth allocation (and, second pass, every one from the Nth on): every failure
 * surfaces as TEEMS_ENOMEM from paxos_step (never a crash), and paxos_free releases
 * everything (the sanitizer build checks for leaks). */
static void test_alloc_failures(void **state)
{
	struct cluster c;
	unsigned long before, total;

	(void)state;
	struct paxos_config cfg;
	struct paxos *p;

	paxos_config_default(&cfg);
	assert_int_equal(quorum_init(&cfg.quorum, 3, 1, 1, NULL), TEEMS_OK);
	teems_alloc_fault(0, 0);
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_ENOMEM);
	teems_alloc_fault(-1, 0);

	before = teems_alloc_count();
	alloc_scenario(&c, -1, 0);
	total = teems_alloc_count() - before;
	assert_int_equal(c.enomem_hits, 0);
	assert_false(c.violation);
	cluster_free(&c);
	unsigned hits = 0;

	for (int repeat = 0; repeat <= 1; repeat++) {
		unsigned long stride = total / 150 + 1;

		for (unsigned long nth = 0; nth < total; nth += stride) {
			alloc_scenario(&c, (long)nth, repeat);
			teems_alloc_fault(-1, 0);
			hits += c.enomem_hits;
			assert_false(c.violation);
			assert_false(c.order_violation);
			cluster_free(&c);
		}
	}
	assert_true(hits > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_normal_rr),
		cmocka_unit_test(test_normal_rr_delayed_sync),
		cmocka_unit_test(test_normal_always),
		cmocka_unit_test(test_normal_none),
		cmocka_unit_test(test_commit_rule),
		cmocka_unit_test(test_commit_rule_examples),
		cmocka_unit_test(test_leader_crash),
		cmocka_unit_test(test_reproposal_and_holes),
		cmocka_unit_test(test_committed_survives_election),
		cmocka_unit_test(test_negative_control_scripted),
		cmocka_unit_test(test_competing_candidates),
		cmocka_unit_test(test_random_faults),
		cmocka_unit_test(test_negative_control_random),
		cmocka_unit_test(test_top_abandonment),
		cmocka_unit_test(test_taint_abandonment),
		cmocka_unit_test(test_suspicious_never_votes),
		cmocka_unit_test(test_lagging_follower_catches_up),
		cmocka_unit_test(test_ordering_rules),
		cmocka_unit_test(test_counting_rules),
		cmocka_unit_test(test_promise_paging),
		cmocka_unit_test(test_interface),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
