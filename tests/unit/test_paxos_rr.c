/* RR-Paxos core: persistence, restart and the replica lifecycle of DESIGN.md section 4
 * (register, discard and halt, fence, recover), with a deterministic in-test network.
 *
 * The harness differs from test_paxos.c in one way that matters: a node is an *incarnation*,
 * not a replica. Several nodes may carry the same replica id (a fork: the host runs two copies
 * of one replica), and the network delivers a message addressed to replica t to every live
 * node with id t, unless the test's filter (which sees node indexes) drops it. Each node keeps
 * a fake WAL of the encoded records its core asked to persist (paxos_persist_encode) and how
 * far it is synced; a restart is a new core fed a synced prefix of them (paxos_restore), the
 * whole synced WAL for a plain crash, a shorter prefix for a rollback; a fork is a second
 * node made from a prefix while the first keeps running.
 *
 * Checkers, after every step: agreement (every incarnation applies the same value in each
 * slot, including everything re-applied after a restart), no lost acknowledged command
 * (checked at the end of a schedule), no vote while suspicious, nothing from a halted core,
 * and every quorum the cores report deciding (paxos_counted) counts distinct replicas.
 *
 * Reads are checked too: a read-index or optimized read must reflect every write acknowledged
 * and every read answered before it was issued.
 *
 * Tests:
 *   persist          round trip, EFULL sizing, every truncation and bad byte refused; SHA-256
 *                    digest; T_fence formula; configuration entries in slot values
 *   restart          crash and restart: register, fence, recover, fresh; the cluster keeps
 *                    committing and needs the restarted replica's vote
 *   S2               rollback to before its own last REGISTER, and again while the new
 *                    REGISTER is in flight: ends fresh
 *   S3               ballot resumption: the recovered incarnation wins its own phase 1
 *   S4               restarts in the middle of the fence and of the recovery read
 *   S5               the fork schedule: old B's promise discarded at C, old B halts, x=1 kept
 *                    (and with PAXOS_UNSAFE_NO_INCARNATION_CHECK the agreement checker fires)
 *   rollback         a rolled-back replica never votes while suspicious (and with
 *                    PAXOS_UNSAFE_NO_RECOVERY or PAXOS_UNSAFE_CFT_QUORUMS the checker fires)
 *   late ack         SCENARIOS S1 on the log: the previous incarnation's late ACCEPTED is
 *                    never counted, with and without the fence
 *   fence            a taint restarts the fence in full; PAXOS_UNSAFE_NO_FENCE skips it
 *   reads            read index (suspicious replicas never acknowledge; a deposed leader is
 *                    refused) and the optimized read (unanimity, abort rule, T_op)
 *   epoch restart    (section 6) the RESTART block of a WAL record; S11 total crash after a
 *                    burst of writes under sync=rr with power loss of unsynced records, on
 *                    every configuration, twice in a row; S8 a partitioned proposer is
 *                    ignored and later halts; S9 two proposers share an answerer; S10 a fork
 *                    answers twice; a replica restarts in the middle of the restart round
 *   random           restarts, rollbacks and drops within the bounds over many seeds
 *                    (PAXOS_SEEDS=n for more), with reads; then the same runs with
 *                    PAXOS_UNSAFE_NO_RECOVERY must be caught
 *   allocation       every failing allocation during restore and the lifecycle is ENOMEM
 *   snapshots        compaction bounds; a lagging follower installs the leader's snapshot
 *                    (several chunks) and votes again; restart from snapshot + WAL, and from
 *                    the WAL alone after a rollback to before it; a recovery read whose
 *                    repliers compacted fetches a snapshot before it completes; a candidate
 *                    does not count a promise with compacted slots; torn and mixed transfers
 *                    are refused; the INSTALLED record freezes the restored commit index;
 *                    allocation failures while taking and installing */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "core/quorum.h"
#include "teems/err.h"

#define MAX_NODES 8
#define MS 1000000ull
#define T_ELECT (150 * MS)
#define T_HB (50 * MS)
#define T_OP (200 * MS)
#define T_LEASE (300 * MS)
#define T_CFG (300 * MS)

struct rec {
	uint64_t seq;
	uint8_t *buf;
	size_t len;
};

struct node {
	int id; /* replica id */
	struct paxos *p;
	struct paxos_ready r;
	bool up;
	bool halted;
	uint64_t applied; /* slots applied by this incarnation: the test's state machine */
	uint64_t clock_off;
	uint64_t epoch;
	/* The host's raw clock (paxos_input.host_ns, read under PAXOS_UNSAFE_TRUST_HOST_CLOCK):
	 * the trusted lo, or stuck at host_stop once that is set (a host that stops its clock). */
	uint64_t host_stop;
	uint64_t written, synced;
	struct rec *wal;
	size_t n_wal, cap_wal;
	unsigned incarnation; /* key = (id, incarnation) */
	/* snapshots: the test's state machine is (applied, hash of every applied value); the
	 * newest durable snapshot and the number of WAL records it covers */
	uint64_t sm_hash;
	uint8_t *snap;
	size_t snap_len;
	size_t snap_wal;
};

struct chosen {
	bool set;
	uint8_t *value;
	uint32_t len;
};

struct net_msg {
	int from;
	int to; /* replica id */
	uint8_t *buf;
	size_t len;
};

struct cluster {
	struct quorum q;
	int n;	/* replicas */
	int nn; /* nodes (incarnations slots) */
	unsigned unsafe;
	struct node nodes[MAX_NODES];
	struct net_msg *q_msgs;
	size_t nq, capq;
	uint64_t now;
	uint64_t rng;
	bool (*filter)(struct cluster *c, int from, int to, const struct msg *m);
	void *arg;
	/* messages the filter dropped and `delay` selected wait here for release_delayed */
	bool (*delay)(struct cluster *c, int from, int to, const struct msg *m);
	struct net_msg *delayed;
	size_t n_delayed, cap_delayed;
	struct chosen *chosen;
	size_t cap_chosen;
	bool violation;
	bool rule_violation;
	/* acknowledged commands: request ids with an APPLIED note */
	uint64_t *acked;
	size_t n_acked, cap_acked;
	unsigned counted_elections, counted_recoveries;
	/* an incarnation the test knows is superseded: counting it in any quorum is reported */
	bool stale_set;
	struct msg_incarnation stale;
	unsigned stale_counted;
	/* read-index answers: outcome and slot of the last note for read request id k (< 64) */
	int read_outcome[64];
	uint64_t read_slot[64];
	bool read_lease[64]; /* answered from the leader lease */
	int read_node[64];
	/* optimized reads: outcome, slot and result of the last note for request id k (< 64) */
	int oread_outcome[64];
	uint64_t oread_slot[64];
	char oread_result[64][32];
	/* linearizability of reads: a read must reflect every write acknowledged and every read
	 * answered before it was issued */
	uint64_t seen_slot;	  /* highest slot acknowledged or returned by a read so far */
	uint64_t read_floor[128]; /* seen_slot when read k (opt: k, index: 64 + k) was issued */
	bool read_stale;
	bool allow_enomem; /* the allocation sweep: a core that fails is discarded (a crash) */
	unsigned enomem_hits;
	/* epoch restart tests: records not marked `sync` stay volatile (lost on a power loss)
	 * until a record marked `sync` is written (an fsync makes everything before it durable) */
	bool lazy_sync;
	unsigned restart_accepts; /* non-decided RESTART_ACCEPTs delivered (restart_filter) */
	/* snapshots: every snap_every applied slots (0: never) (chunk size: g_snap_chunk); the
	 * state hash each snapshot of a slot holds (state agreement) */
	uint64_t snap_every;
	uint64_t *state_hash;
	size_t cap_state_hash;
	int depth; /* nested steps (a snapshot is taken only between top-level steps) */
};

/* T_restart for the cores make_config builds (0: no epoch restart, as in most tests). */
static uint64_t g_t_restart;
/* Their snapshot chunk size (0: the default). */
static uint32_t g_snap_chunk;

static uint64_t rnd(struct cluster *c)
{
	uint64_t x = (c->rng += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	assert_non_null(q);
	return q;
}

static void step(struct cluster *c, int i, struct paxos_input *in);

static void record_chosen(struct cluster *c, const struct paxos_apply *a)
{
	struct chosen *ch;

	if (a->slot > c->cap_chosen) {
		size_t ncap = c->cap_chosen ? c->cap_chosen : 256;

		while (ncap < a->slot)
			ncap *= 2;
		c->chosen = xrealloc(c->chosen, ncap * sizeof(*c->chosen));
		memset(c->chosen + c->cap_chosen, 0, (ncap - c->cap_chosen) * sizeof(*c->chosen));
		c->cap_chosen = ncap;
	}
	ch = &c->chosen[a->slot - 1];
	if (!ch->set) {
		ch->set = true;
		ch->len = a->len;
		ch->value = malloc(a->len ? a->len : 1);
		assert_non_null(ch->value);
		if (a->len)
			memcpy(ch->value, a->value, a->len);
	} else if (ch->len != a->len || (a->len && memcmp(ch->value, a->value, a->len))) {
		fprintf(stderr, "agreement violated at slot %llu\n", (unsigned long long)a->slot);
		c->violation = true;
	}
}

static uint64_t sm_mix(uint64_t h, uint64_t slot, const uint8_t *v, uint32_t len)
{
	h = (h ^ slot) * 0x100000001b3ull;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ v[i]) * 0x100000001b3ull;
	return h;
}

static void sm_encode(const struct node *nd, uint8_t out[16])
{
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(nd->applied >> (8 * i));
		out[8 + i] = (uint8_t)(nd->sm_hash >> (8 * i));
	}
}

static void sm_decode(struct node *nd, const uint8_t *in, size_t len)
{
	assert_int_equal(len, 16);
	nd->applied = nd->sm_hash = 0;
	for (int i = 7; i >= 0; i--) {
		nd->applied = (nd->applied << 8) | in[i];
		nd->sm_hash = (nd->sm_hash << 8) | in[8 + i];
	}
}

/* Every snapshot of one slot, taken or installed anywhere, holds the same state. */
static void check_state(struct cluster *c, uint64_t slot, uint64_t hash)
{
	if (slot >= c->cap_state_hash) {
		size_t ncap = c->cap_state_hash ? c->cap_state_hash : 256;

		while (ncap <= slot)
			ncap *= 2;
		c->state_hash = xrealloc(c->state_hash, ncap * sizeof(*c->state_hash));
		memset(c->state_hash + c->cap_state_hash, 0,
		       (ncap - c->cap_state_hash) * sizeof(*c->state_hash));
		c->cap_state_hash = ncap;
	}
	if (!c->state_hash[slot])
		c->state_hash[slot] = hash | 1;
	else if (c->state_hash[slot] != (hash | 1)) {
		fprintf(stderr, "state machines differ at slot %llu\n", (unsigned long long)slot);
		c->violation = true;
	}
}

static void keep_snapshot(struct node *nd, const uint8_t *blob, size_t len)
{
	free(nd->snap);
	nd->snap = malloc(len);
	assert_non_null(nd->snap);
	memcpy(nd->snap, blob, len);
	nd->snap_len = len;
	nd->snap_wal = nd->n_wal; /* every record so far is durable at once here */
}

/* Between two top-level steps: the shell's snapshot, every snap_every applied slots. */
static void maybe_snapshot(struct cluster *c, int i)
{
	struct node *nd = &c->nodes[i];
	const uint8_t *blob;
	uint8_t st[16];
	size_t len;

	if (!c->snap_every || !nd->up || !nd->p || nd->halted ||
	    nd->applied < paxos_snapshot_index(nd->p) + c->snap_every)
		return;
	sm_encode(nd, st);
	check_state(c, nd->applied, nd->sm_hash);
	assert_int_equal(paxos_snapshot_taken(nd->p, nd->applied, st, sizeof(st), &blob, &len),
			 TEEMS_OK);
	keep_snapshot(nd, blob, len);
}

static void wal_append(struct node *nd, const struct paxos_persist *p)
{
	size_t len;
	struct rec *r;

	assert_int_equal(paxos_persist_encode(p, NULL, 0, &len), TEEMS_EFULL);
	if (nd->n_wal == nd->cap_wal) {
		nd->cap_wal = nd->cap_wal ? nd->cap_wal * 2 : 64;
		nd->wal = xrealloc(nd->wal, nd->cap_wal * sizeof(*nd->wal));
	}
	r = &nd->wal[nd->n_wal++];
	r->seq = p->seq;
	r->buf = malloc(len);
	assert_non_null(r->buf);
	assert_int_equal(paxos_persist_encode(p, r->buf, len, &r->len), TEEMS_OK);
	assert_int_equal(r->len, len);
}

static void take_ready(struct cluster *c, int i)
{
	struct node *nd = &c->nodes[i];
	struct paxos_ready *r = &nd->r;
	bool wrote = false;

	if (r->halted) {
		nd->halted = true;
		if (r->n_sends) {
			fprintf(stderr, "node %d sent after halting\n", i);
			c->rule_violation = true;
		}
	}
	for (size_t k = 0; k < r->n_persist; k++) {
		assert_true(r->persist[k].seq == nd->written + 1);
		nd->written = r->persist[k].seq;
		wal_append(nd, &r->persist[k]);
		wrote = true;
	}
	if (r->snapshot.blob) {
		if (r->snapshot.install) {
			sm_decode(nd, r->snapshot.state, r->snapshot.state_len);
			assert_int_equal(nd->applied, r->snapshot.slot);
			check_state(c, nd->applied, nd->sm_hash);
		}
		keep_snapshot(nd, r->snapshot.blob, r->snapshot.blob_len);
	}
	for (size_t k = 0; k < r->n_sends; k++) {
		const struct paxos_send *s = &r->sends[k];
		size_t len;

		assert_true(s->to < c->n && s->to != nd->id);
		if (((s->msg.type == MSG_PROMISE && s->msg.promise.ok) ||
		     s->msg.type == MSG_ACCEPTED) &&
		    s->msg.suspicious && !(c->unsafe & PAXOS_UNSAFE_CFT_QUORUMS)) {
			fprintf(stderr, "node %d voted while suspicious\n", i);
			c->rule_violation = true;
		}
		assert_int_equal(msg_encode(&s->msg, NULL, 0, &len), TEEMS_EFULL);
		if (c->nq == c->capq) {
			c->capq = c->capq ? c->capq * 2 : 256;
			c->q_msgs = xrealloc(c->q_msgs, c->capq * sizeof(*c->q_msgs));
		}
		c->q_msgs[c->nq].from = i;
		c->q_msgs[c->nq].to = s->to;
		c->q_msgs[c->nq].buf = malloc(len);
		assert_non_null(c->q_msgs[c->nq].buf);
		assert_int_equal(msg_encode(&s->msg, c->q_msgs[c->nq].buf, len, &len), TEEMS_OK);
		c->q_msgs[c->nq].len = len;
		c->nq++;
	}
	for (size_t k = 0; k < r->n_applies; k++) {
		record_chosen(c, &r->applies[k]);
		assert_int_equal(r->applies[k].slot, nd->applied + 1);
		nd->applied = r->applies[k].slot;
		nd->sm_hash =
			sm_mix(nd->sm_hash, nd->applied, r->applies[k].value, r->applies[k].len);
	}
	for (size_t k = 0; k < r->n_counted; k++) {
		const struct paxos_counted *ct = &r->counted[k];

		for (uint32_t a = 0; a < ct->n; a++) {
			for (uint32_t b = a + 1; b < ct->n; b++)
				if (ct->members[a].replica == ct->members[b].replica)
					c->rule_violation = true;
			if (c->stale_set && ct->members[a].replica == c->stale.replica &&
			    ct->members[a].reg.epoch == c->stale.reg.epoch &&
			    ct->members[a].reg.slot == c->stale.reg.slot)
				c->stale_counted++;
		}
		if (ct->kind == PAXOS_COUNTED_ELECTION)
			c->counted_elections++;
		if (ct->kind == PAXOS_COUNTED_RECOVERY)
			c->counted_recoveries++;
	}
	for (size_t k = 0; k < r->n_opt_reads; k++) {
		const struct paxos_opt_read_answer *a = &r->opt_reads[k];
		uint64_t id = a->request_id;

		if (id >= 64)
			continue;
		c->oread_outcome[id] = (int)a->status;
		c->oread_slot[id] = a->slot;
		memset(c->oread_result[id], 0, sizeof(c->oread_result[id]));
		if (a->status != PAXOS_OPT_READ_OK)
			continue;
		if (a->result_len && a->result_len < sizeof(c->oread_result[id]))
			memcpy(c->oread_result[id], a->result, a->result_len);
		if (a->slot < c->read_floor[id])
			c->read_stale = true;
		if (a->slot > c->seen_slot)
			c->seen_slot = a->slot;
	}
	for (size_t k = 0; k < r->n_notes; k++) {
		if (r->notes[k].client_id == 2 && r->notes[k].request_id < 64) {
			c->read_outcome[r->notes[k].request_id] = (int)r->notes[k].outcome;
			if (r->notes[k].outcome == PAXOS_OUTCOME_READ) {
				if (r->notes[k].slot < c->read_floor[64 + r->notes[k].request_id])
					c->read_stale = true;
				if (r->notes[k].slot > c->seen_slot)
					c->seen_slot = r->notes[k].slot;
			}
			c->read_slot[r->notes[k].request_id] = r->notes[k].slot;
			c->read_lease[r->notes[k].request_id] = r->notes[k].lease;
			c->read_node[r->notes[k].request_id] = i;
			continue;
		}
		if (r->notes[k].outcome != PAXOS_OUTCOME_APPLIED)
			continue;
		if (r->notes[k].slot > c->seen_slot)
			c->seen_slot = r->notes[k].slot;
		if (c->n_acked == c->cap_acked) {
			c->cap_acked = c->cap_acked ? c->cap_acked * 2 : 64;
			c->acked = xrealloc(c->acked, c->cap_acked * sizeof(*c->acked));
		}
		c->acked[c->n_acked++] = r->notes[k].request_id;
	}
	if (r->n_execs) {
		/* the test's state machine answers "applied:<slots applied>" */
		size_t n = r->n_execs;
		struct paxos_exec *ex = malloc(n * sizeof(*ex));

		assert_non_null(ex);
		memcpy(ex, r->execs, n * sizeof(*ex));
		for (size_t k = 0; k < n; k++) {
			struct paxos_input in = {.type = PAXOS_IN_EXEC_RESULT};
			char res[32];

			snprintf(res, sizeof(res), "applied:%llu", (unsigned long long)nd->applied);
			in.exec_result.to = ex[k].to;
			in.exec_result.nonce = ex[k].nonce;
			in.exec_result.applied = nd->applied;
			in.exec_result.result = (const uint8_t *)res;
			in.exec_result.len = (uint32_t)strlen(res);
			step(c, i, &in);
		}
		free(ex);
	}
	if (wrote && c->lazy_sync) {
		bool urgent = false;

		for (size_t k = 0; k < r->n_persist; k++)
			urgent = urgent || r->persist[k].sync;
		wrote = urgent;
	}
	if (wrote) { /* every record is durable at once (restarts pick synced prefixes) */
		struct paxos_input in = {.type = PAXOS_IN_SYNCED};

		nd->synced = nd->written;
		in.synced.seq = nd->written;
		step(c, i, &in);
	}
}

static struct paxos_time node_time(struct cluster *c, int i)
{
	struct paxos_time t;

	t.lo_ns = c->now + c->nodes[i].clock_off;
	t.hi_ns = t.lo_ns + 1000;
	t.epoch = c->nodes[i].epoch;
	return t;
}

static void step(struct cluster *c, int i, struct paxos_input *in)
{
	int rc;

	if (!c->nodes[i].up || !c->nodes[i].p)
		return;
	in->now = node_time(c, i);
	in->host_ns = c->nodes[i].host_stop ? c->nodes[i].host_stop : in->now.lo_ns;
	rc = paxos_step(c->nodes[i].p, in, &c->nodes[i].r);
	if (rc == TEEMS_ENOMEM && c->allow_enomem) {
		c->nodes[i].up = false;
		c->enomem_hits++;
		return;
	}
	assert_int_equal(rc, TEEMS_OK);
	c->depth++;
	take_ready(c, i);
	c->depth--;
	if (!c->depth)
		maybe_snapshot(c, i);
}

static void tick(struct cluster *c, uint64_t dt)
{
	c->now += dt;
	for (int i = 0; i < c->nn; i++) {
		struct paxos_input in = {.type = PAXOS_IN_TICK};

		in.tick.random = rnd(c);
		step(c, i, &in);
	}
}

/* The leader lease (section 8). Tests that script who wins an election right after a
 * leader's loss, or that exercise the read-index path itself, turn it off (0). */
static uint64_t g_t_lease = T_LEASE;

static void make_config(struct cluster *c, struct paxos_config *cfg, int id, unsigned inc,
			bool restarted)
{
	paxos_config_default(cfg);
	cfg->quorum = c->q;
	cfg->self = (uint16_t)id;
	cfg->sync = PAXOS_SYNC_RR;
	cfg->election_timeout_ns = T_ELECT;
	cfg->heartbeat_ns = T_HB;
	cfg->t_op_ns = T_OP;
	cfg->t_lease_ns = g_t_lease;
	cfg->t_cfg_ns = T_CFG;
	cfg->max_slot_bytes = 512;
	cfg->max_accept_slots = 8;
	cfg->max_inflight = 16;
	cfg->register_retry_ns = 20 * MS;
	cfg->t_restart_ns = g_t_restart;
	cfg->unsafe = c->unsafe;
	cfg->restarted = restarted;
	memset(cfg->public_key, 0, sizeof(cfg->public_key));
	cfg->public_key[0] = (uint8_t)id;
	cfg->public_key[1] = (uint8_t)inc;
	cfg->public_key[2] = 0xee;
	cfg->quote = (const uint8_t *)"fake-quote";
	cfg->quote_len = 10;
	if (g_snap_chunk)
		cfg->snapshot_chunk = g_snap_chunk;
}

static void cluster_init(struct cluster *c, unsigned n, unsigned f, unsigned m_r, unsigned unsafe,
			 uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(quorum_init(&c->q, n, f, m_r, NULL), TEEMS_OK);
	c->n = c->nn = (int)n;
	c->unsafe = unsafe;
	c->rng = seed * 7919 + 17;
	c->now = 1000 * MS;
	for (int i = 0; i < c->n; i++) {
		struct paxos_config cfg;

		make_config(c, &cfg, i, 0, false);
		c->nodes[i].id = i;
		assert_int_equal(paxos_new(&c->nodes[i].p, &cfg, NULL), TEEMS_OK);
		paxos_ready_init(&c->nodes[i].r);
		c->nodes[i].up = true;
	}
	tick(c, 0);
}

static void node_free(struct node *nd)
{
	paxos_free(nd->p);
	nd->p = NULL;
	paxos_ready_free(&nd->r);
	free(nd->snap);
	nd->snap = NULL;
	nd->snap_len = nd->snap_wal = 0;
}

static void wal_free(struct node *nd)
{
	for (size_t k = 0; k < nd->n_wal; k++)
		free(nd->wal[k].buf);
	free(nd->wal);
	nd->wal = NULL;
	nd->n_wal = nd->cap_wal = 0;
}

static void cluster_free(struct cluster *c)
{
	for (int i = 0; i < c->nn; i++) {
		node_free(&c->nodes[i]);
		wal_free(&c->nodes[i]);
	}
	for (size_t k = 0; k < c->nq; k++)
		free(c->q_msgs[k].buf);
	free(c->q_msgs);
	for (size_t k = 0; k < c->n_delayed; k++)
		free(c->delayed[k].buf);
	free(c->delayed);
	for (size_t k = 0; k < c->cap_chosen; k++)
		free(c->chosen[k].value);
	free(c->chosen);
	free(c->acked);
	free(c->state_hash);
}

/* The number of synced records of node i. */
static size_t synced_records(const struct node *nd)
{
	size_t k = 0;

	while (k < nd->n_wal && nd->wal[k].seq <= nd->synced)
		k++;
	return k;
}

/* Starts a new incarnation in node slot `dst` (a new slot for a fork, `src` itself for a
 * restart) from the first `prefix` records of src's WAL. */
static void incarnate(struct cluster *c, int src, int dst, size_t prefix)
{
	struct node *s = &c->nodes[src], *d = &c->nodes[dst];
	struct paxos_config cfg;
	struct rec *wal;
	size_t n, first = 0;
	unsigned inc = s->incarnation + 1;
	int id = s->id;
	uint8_t *snap = NULL;
	size_t snap_len = 0;

	assert_true(prefix <= synced_records(s));
	n = prefix;
	if (s->snap && s->snap_wal <= prefix) {
		/* the newest snapshot and the records after the position it covers (a prefix
		 * that ends before it is an older disk, without that snapshot) */
		snap = malloc(s->snap_len);
		assert_non_null(snap);
		memcpy(snap, s->snap, s->snap_len);
		snap_len = s->snap_len;
		first = s->snap_wal;
	}
	wal = malloc((n ? n : 1) * sizeof(*wal));
	assert_non_null(wal);
	for (size_t k = 0; k < n; k++) {
		wal[k] = s->wal[k];
		wal[k].buf = malloc(s->wal[k].len);
		assert_non_null(wal[k].buf);
		memcpy(wal[k].buf, s->wal[k].buf, s->wal[k].len);
	}
	if (src == dst) {
		node_free(d);
		wal_free(d);
	} else {
		/* a fork: both keep running; the fork gets a fresh slot */
		for (int j = 0; j < c->nn; j++)
			if (c->nodes[j].id == id && c->nodes[j].incarnation >= inc)
				inc = c->nodes[j].incarnation + 1;
	}
	memset(d, 0, sizeof(*d));
	d->id = id;
	d->incarnation = inc;
	d->wal = wal;
	d->n_wal = d->cap_wal = n;
	d->written = d->synced = n ? wal[n - 1].seq : 0;
	make_config(c, &cfg, id, inc, true);
	paxos_ready_init(&d->r);
	d->up = true;
	if (snap) {
		const uint8_t *st;
		size_t st_len;
		uint64_t slot;

		assert_int_equal(paxos_new(&d->p, &cfg, NULL), TEEMS_OK);
		assert_int_equal(paxos_restore_snapshot(d->p, snap, snap_len, &slot, &st, &st_len),
				 TEEMS_OK);
		sm_decode(d, st, st_len);
		assert_int_equal(d->applied, slot);
		d->snap = snap;
		d->snap_len = snap_len;
		d->snap_wal = first;
		for (size_t k = first; k < n; k++)
			assert_int_equal(paxos_restore(d->p, wal[k].buf, wal[k].len), TEEMS_OK);
	} else if (c->allow_enomem) {
		int rc = paxos_new(&d->p, &cfg, NULL);

		for (size_t k = 0; k < n && rc == TEEMS_OK; k++)
			rc = paxos_restore(d->p, wal[k].buf, wal[k].len);
		if (rc) {
			assert_int_equal(rc, TEEMS_ENOMEM);
			c->enomem_hits++;
			d->up = false;
		}
	} else {
		assert_int_equal(paxos_new(&d->p, &cfg, NULL), TEEMS_OK);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(paxos_restore(d->p, wal[k].buf, wal[k].len), TEEMS_OK);
	}
	if (dst >= c->nn)
		c->nn = dst + 1;
}

static void restart(struct cluster *c, int i, size_t prefix)
{
	incarnate(c, i, i, prefix);
}

static int fork_node(struct cluster *c, int i)
{
	int k = c->nn;

	assert_true(k < MAX_NODES);
	incarnate(c, i, k, synced_records(&c->nodes[i]));
	return k;
}

static void deliver(struct cluster *c, size_t k)
{
	struct net_msg nm = c->q_msgs[k];
	struct msg m;

	memmove(c->q_msgs + k, c->q_msgs + k + 1, (c->nq - k - 1) * sizeof(*c->q_msgs));
	c->nq--;
	if (c->nodes[nm.from].up) {
		assert_int_equal(msg_decode(nm.buf, nm.len, &m), TEEMS_OK);
		for (int j = 0; j < c->nn; j++) {
			struct paxos_input in = {.type = PAXOS_IN_MESSAGE};

			if (c->nodes[j].id != nm.to || !c->nodes[j].up || j == nm.from)
				continue;
			if (c->filter && !c->filter(c, nm.from, j, &m)) {
				if (c->delay && c->delay(c, nm.from, j, &m)) {
					struct net_msg *d;

					if (c->n_delayed == c->cap_delayed) {
						c->cap_delayed =
							c->cap_delayed ? 2 * c->cap_delayed : 16;
						c->delayed = xrealloc(c->delayed,
								      c->cap_delayed *
									      sizeof(*c->delayed));
					}
					d = &c->delayed[c->n_delayed++];
					*d = nm;
					d->buf = malloc(nm.len);
					assert_non_null(d->buf);
					memcpy(d->buf, nm.buf, nm.len);
				}
				continue;
			}
			in.message = &m;
			step(c, j, &in);
		}
	}
	free(nm.buf);
}

/* Puts the delayed messages back on the network (the sender may have crashed since: the
 * message still arrives, as from the sender's replica id). */
static void release_delayed(struct cluster *c)
{
	for (size_t k = 0; k < c->n_delayed; k++) {
		if (c->nq == c->capq) {
			c->capq = c->capq ? c->capq * 2 : 256;
			c->q_msgs = xrealloc(c->q_msgs, c->capq * sizeof(*c->q_msgs));
		}
		c->q_msgs[c->nq++] = c->delayed[k];
	}
	c->n_delayed = 0;
	c->delay = NULL;
}

static void drain(struct cluster *c)
{
	int guard = 0;

	for (; c->nq && guard < 200000; guard++)
		deliver(c, 0);
	if (c->nq)
		fail_msg("the network never quiesces");
}

static void run(struct cluster *c, uint64_t duration)
{
	for (uint64_t t = 0; t < duration; t += MS) {
		drain(c);
		tick(c, MS);
	}
	drain(c);
}

/* Runs until cond(c, arg) or the time limit; returns cond. */
static bool run_until(struct cluster *c, uint64_t limit, bool (*cond)(struct cluster *, int),
		      int arg)
{
	for (uint64_t t = 0; t < limit; t += MS) {
		drain(c);
		if (cond(c, arg))
			return true;
		tick(c, MS);
	}
	drain(c);
	return cond(c, arg);
}

static bool is_fresh(struct cluster *c, int i)
{
	return !c->nodes[i].halted && paxos_lifecycle(c->nodes[i].p) == PAXOS_LC_FRESH &&
	       !paxos_suspicious(c->nodes[i].p);
}

static bool can_read(struct cluster *c, int i)
{
	return paxos_can_serve_reads(c->nodes[i].p);
}

/* Makes node i time out first (its clock jumps ahead), again if another node won meanwhile,
 * until it leads and has committed its no-op. */
static void elect(struct cluster *c, int i)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		c->nodes[i].clock_off += 2 * T_ELECT;
		if (run_until(c, 500 * MS, can_read, i))
			return;
	}
	fail_msg("node %d never led", i);
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
	step(c, i, &in);
}

static int leader_of(struct cluster *c)
{
	int best = -1;

	for (int i = 0; i < c->nn; i++) {
		struct msg_ballot a, b;

		if (!c->nodes[i].up || c->nodes[i].halted ||
		    paxos_role(c->nodes[i].p) != PAXOS_LEADER)
			continue;
		a = paxos_promised(c->nodes[i].p);
		if (best >= 0)
			b = paxos_promised(c->nodes[best].p);
		if (best < 0 || msg_ballot_cmp(&a, &b) > 0)
			best = i;
	}
	return best;
}

/* Whether the acknowledged request is in the chosen log (every acknowledged command must be). */
static bool request_chosen(struct cluster *c, uint64_t req)
{
	for (size_t s = 0; s < c->cap_chosen; s++) {
		struct paxos_command cmd;
		size_t off = 0;

		if (!c->chosen[s].set)
			continue;
		while (paxos_batch_next(c->chosen[s].value, c->chosen[s].len, &off, &cmd))
			if (cmd.request_id == req)
				return true;
	}
	return false;
}

/* Every acknowledged command is in the log the live leader finally applies: run the cluster
 * until the leader's commit index covers every chosen slot. */
static bool no_lost_ack(struct cluster *c)
{
	for (size_t k = 0; k < c->n_acked; k++)
		if (!request_chosen(c, c->acked[k]))
			return false;
	return true;
}

/* ---- persistence ---- */

static void test_persist_round_trip(void **state)
{
	struct paxos_config cfg;
	struct paxos *p;
	struct paxos_entry_ref e[3];
	struct paxos_persist rec;
	uint8_t buf[1024], key[MSG_PUBLIC_KEY_SIZE];
	size_t len, len2;
	struct quorum q;
	struct msg_ballot b;

	(void)state;
	assert_int_equal(quorum_init(&q, 3, 1, 1, NULL), TEEMS_OK);
	paxos_config_default(&cfg);
	cfg.quorum = q;
	memset(&rec, 0, sizeof(rec));
	memset(e, 0, sizeof(e));
	rec.seq = 7;
	rec.promised = (struct msg_ballot){5, 1, {0, 3}};
	rec.commit_index = 1;
	rec.flags = PAXOS_REC_REGISTERED;
	rec.own_reg = (struct msg_regidx){0, 3};
	memset(rec.own_key, 0xab, sizeof(rec.own_key));
	e[0] = (struct paxos_entry_ref){1, {4, 0, {0, 0}}, false, (const uint8_t *)"one", 3};
	e[1] = (struct paxos_entry_ref){2, {6, 2, {0, 0}}, true, (const uint8_t *)"two", 3};
	e[2] = (struct paxos_entry_ref){4, {5, 1, {0, 3}}, false, NULL, 0};
	rec.entries = e;
	rec.count = 3;
	assert_int_equal(paxos_persist_encode(&rec, NULL, 0, &len), TEEMS_EFULL);
	assert_int_equal(paxos_persist_encode(&rec, buf, len - 1, &len2), TEEMS_EFULL);
	assert_int_equal(len2, len);
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len2), TEEMS_OK);
	assert_int_equal(len2, len);
	assert_int_equal(buf[0], PAXOS_PERSIST_VERSION);

	/* every truncation, and every extension, is refused and leaves the core unchanged */
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_OK);
	for (size_t k = 0; k < len; k++)
		assert_int_equal(paxos_restore(p, buf, k), TEEMS_ECORRUPT);
	assert_int_equal(paxos_restore(p, NULL, 0), TEEMS_ECORRUPT);
	buf[len] = 0;
	assert_int_equal(paxos_restore(p, buf, len + 1), TEEMS_ECORRUPT);
	assert_int_equal(paxos_last_slot(p), 0);
	assert_int_equal(paxos_promised(p).round, 0);
	assert_false(paxos_suspicious(p));
	/* bad bytes: version, flags, seq 0, adopted byte, slot order */
	{
		uint8_t bad[1024];
		const size_t adopted_at = 48 + 48 + 8 + 26; /* header, reg, first entry's byte */

		memcpy(bad, buf, len);
		bad[0] = PAXOS_PERSIST_VERSION + 1;
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_EVERSION);
		bad[0] = 0;
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_ECORRUPT);
		memcpy(bad, buf, len);
		bad[1] = 0x80;
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_ECORRUPT);
		memcpy(bad, buf, len);
		memset(bad + 2, 0, 8);
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_ECORRUPT);
		memcpy(bad, buf, len);
		bad[adopted_at] = 2;
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_ECORRUPT);
		memcpy(bad, buf, len);
		bad[48 + 48] = 9; /* first entry's slot > the second's */
		assert_int_equal(paxos_restore(p, bad, len), TEEMS_ECORRUPT);
	}
	assert_int_equal(paxos_last_slot(p), 0);

	/* the record restores */
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_OK);
	b = paxos_promised(p);
	assert_int_equal(b.round, 6); /* the max over the record and its entries */
	assert_int_equal(b.replica, 2);
	assert_int_equal(paxos_last_slot(p), 4);
	assert_int_equal(paxos_commit_index(p), 1);
	assert_true(paxos_suspicious(p)); /* a restored core starts suspicious */
	assert_int_equal(paxos_lifecycle(p), PAXOS_LC_REGISTERING);
	assert_false(paxos_config_registration(p, 1, NULL, key));
	/* a later record supersedes slot 2 and raises the commit index */
	rec.seq = 8;
	rec.flags = 0;
	rec.commit_index = 2;
	e[1] = (struct paxos_entry_ref){2, {7, 0, {0, 0}}, false, (const uint8_t *)"TWO", 3};
	rec.entries = &e[1];
	rec.count = 1;
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_OK);
	assert_int_equal(paxos_promised(p).round, 7);
	assert_int_equal(paxos_commit_index(p), 2);
	/* the first step applies the committed prefix with the superseding value */
	{
		struct paxos_ready r;
		struct paxos_input in = {.type = PAXOS_IN_TICK};

		paxos_ready_init(&r);
		in.now.lo_ns = in.now.hi_ns = 1;
		assert_int_equal(paxos_step(p, &in, &r), TEEMS_OK);
		assert_int_equal(r.n_applies, 2);
		assert_memory_equal(r.applies[1].value, "TWO", 3);
		assert_int_equal(paxos_restore(p, buf, len),
				 TEEMS_EINVAL); /* after the first step */
		/* the next record continues the sequence */
		assert_true(r.n_persist == 0 || r.persist[0].seq == 9);
		paxos_ready_free(&r);
	}
	paxos_free(p);
}

/* The epoch-restart block of a WAL record (PAXOS_REC_RESTART, version 2): round trip, the
 * restored epoch and configuration, truncations refused, and version 1 never carries it. */
static void test_persist_restart_block(void **state)
{
	struct paxos_config cfg;
	struct paxos_persist rec;
	struct paxos *p;
	struct cluster c;
	uint8_t buf[512];
	size_t len;
	struct msg_regidx idx;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 1);
	make_config(&c, &cfg, 1, 1, true);
	memset(&rec, 0, sizeof(rec));
	rec.seq = 3;
	rec.flags = PAXOS_REC_RESTART;
	rec.restart.epoch = 2;
	rec.restart.rs_epoch = 1;
	rec.restart.promised = (struct msg_ballot){4, 2, {1, 77}};
	rec.restart.has_accepted = true;
	rec.restart.accepted = rec.restart.promised;
	rec.restart.n_members = 2;
	rec.restart.members[0] = (struct msg_incarnation){0, {2, 5}};
	rec.restart.members[1] = (struct msg_incarnation){2, {2, 9}};
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(buf[0], PAXOS_PERSIST_VERSION);
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_OK);
	for (size_t k = 0; k < len; k++)
		assert_int_equal(paxos_restore(p, buf, k), TEEMS_ECORRUPT);
	buf[0] = 1; /* version 1 has no RESTART flag */
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_ECORRUPT);
	buf[0] = PAXOS_PERSIST_VERSION;
	assert_int_equal(paxos_epoch(p), 0);
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_OK);
	assert_int_equal(paxos_epoch(p), 2);
	/* every replica is registered at (2, 0) until a REGISTER of epoch 2 commits */
	assert_true(paxos_config_registration(p, 0, &idx, NULL));
	assert_int_equal(idx.epoch, 2);
	assert_int_equal(idx.slot, 0);
	assert_true(paxos_suspicious(p));
	paxos_free(p);
	/* members out of order are refused */
	rec.restart.members[1].replica = 0;
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_OK);
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_ECORRUPT);
	paxos_free(p);
	cluster_free(&c);
}

static void test_digest_is_sha256(void **state)
{
	struct paxos_config cfg;
	struct paxos *p;
	struct msg_bytes v = {(const uint8_t *)"abc", 3};
	uint8_t d1[MSG_DIGEST_SIZE], d2[MSG_DIGEST_SIZE];

	(void)state;
	paxos_config_default(&cfg);
	assert_int_equal(quorum_init(&cfg.quorum, 3, 1, 1, NULL), TEEMS_OK);
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_OK);
	assert_int_equal(paxos_digest(p, 5, &v, 1, d1), TEEMS_OK);
	assert_int_equal(paxos_digest(p, 5, &v, 1, d2), TEEMS_OK);
	assert_memory_equal(d1, d2, sizeof(d1));
	assert_int_equal(paxos_digest(p, 6, &v, 1, d2), TEEMS_OK);
	assert_memory_not_equal(d1, d2, sizeof(d1));
	paxos_free(p);
	/* T_fence = (T_op + T_lease + T_cfg) * (1 + rho) */
	cfg.t_op_ns = 1000000;
	cfg.t_lease_ns = 2000000;
	cfg.t_cfg_ns = 3000000;
	cfg.rho_ppm = 1000;
	assert_int_equal(paxos_fence_ns(&cfg), 6006000);
}

static void test_config_entries(void **state)
{
	/* paxos_batch_next skips configuration elements; paxos_config_entry reads them */
	uint8_t v[256];
	struct paxos_register_entry e;
	struct paxos_command cmd;
	size_t off = 0;
	uint32_t plen = 1 + 2 + 32 + 16 + 4 + 5;

	(void)state;
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 8; i++)
		v[i] = 0xff;
	v[8] = 1; /* PAXOS_CONFIG_REGISTER */
	v[16] = (uint8_t)plen;
	v[20] = 1;
	v[21] = 2; /* replica 2 */
	v[23] = 0x42;
	v[23 + 32 + 8] = 9;  /* expected slot 9 */
	v[23 + 32 + 16] = 5; /* quote length */
	memcpy(v + 20 + plen - 5, "quote", 5);
	assert_true(paxos_config_entry(v, 20 + plen, &e));
	assert_int_equal(e.replica, 2);
	assert_int_equal(e.public_key[0], 0x42);
	assert_int_equal(e.expected_previous.slot, 9);
	assert_int_equal(e.quote_len, 5);
	assert_memory_equal(e.quote, "quote", 5);
	assert_false(paxos_batch_next(v, 20 + plen, &off, &cmd));
	assert_false(paxos_config_entry(v, 20 + plen - 1, &e));
	assert_false(paxos_config_entry(NULL, 0, &e));
}

/* ---- the lifecycle ---- */

static void commit_some(struct cluster *c, int leader, uint64_t from, uint64_t n)
{
	for (uint64_t k = from; k < from + n; k++) {
		propose(c, leader, k);
		drain(c);
	}
	run(c, 20 * MS);
}

static bool all_fresh_and_caught_up(struct cluster *c, int i)
{
	int l = leader_of(c);

	return is_fresh(c, i) && l >= 0 &&
	       paxos_commit_index(c->nodes[i].p) == paxos_commit_index(c->nodes[l].p);
}

static void check_clean(struct cluster *c)
{
	assert_false(c->read_stale);
	assert_false(c->violation);
	assert_false(c->rule_violation);
	assert_true(no_lost_ack(c));
}

static void test_restart_lifecycle(void **state)
{
	struct cluster c;
	struct msg_regidx idx;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 1);
	elect(&c, 0);
	commit_some(&c, 0, 0, 20);
	restart(&c, 1, synced_records(&c.nodes[1]));
	assert_true(paxos_suspicious(c.nodes[1].p));
	assert_int_equal(paxos_lifecycle(c.nodes[1].p), PAXOS_LC_REGISTERING);
	/* registering, then fencing for T_fence on lo, then recovering, then fresh */
	run(&c, 100 * MS);
	assert_int_equal(paxos_lifecycle(c.nodes[1].p), PAXOS_LC_FENCING);
	assert_true(paxos_registered(c.nodes[1].p));
	idx = paxos_registration(c.nodes[1].p);
	assert_true(idx.slot > 0);
	assert_true(paxos_config_registration(c.nodes[0].p, 1, &idx, NULL));
	assert_int_equal(idx.slot, paxos_registration(c.nodes[1].p).slot);
	run(&c,
	    paxos_fence_ns(&(struct paxos_config){
		    .t_op_ns = T_OP, .t_lease_ns = T_LEASE, .t_cfg_ns = T_CFG, .rho_ppm = 1000}) -
		    200 * MS);
	assert_true(paxos_suspicious(c.nodes[1].p)); /* still fencing */
	assert_true(run_until(&c, 2000 * MS, all_fresh_and_caught_up, 1));
	assert_true(c.counted_recoveries >= 1);
	/* the cluster keeps committing, and the new incarnation votes */
	commit_some(&c, 0, 20, 20);
	c.nodes[2].up = false; /* now the leader needs node 1's vote */
	commit_some(&c, 0, 40, 5);
	assert_true(run_until(&c, 500 * MS, all_fresh_and_caught_up, 1));
	assert_int_equal(c.n_acked, 45);
	check_clean(&c);
	cluster_free(&c);
}

/* S2: B restarts on sealed state older than its own last REGISTER, and again while its new
 * REGISTER is in flight. */
static bool drop_register_results(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	return m->type != MSG_REGISTER_RESULT;
}

static void test_s2_rollback_before_register(void **state)
{
	struct cluster c;
	size_t before_register;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 2);
	elect(&c, 0);
	commit_some(&c, 0, 0, 10);
	before_register = synced_records(&c.nodes[1]);
	restart(&c, 1, before_register);
	assert_true(run_until(&c, 3000 * MS, all_fresh_and_caught_up, 1));
	commit_some(&c, 0, 10, 10);
	/* roll back to before its own REGISTER: the leader answers MISMATCH first */
	restart(&c, 1, before_register);
	/* and again while the new REGISTER is in flight (its result is lost) */
	c.filter = drop_register_results;
	run(&c, 60 * MS);
	assert_int_equal(paxos_lifecycle(c.nodes[1].p), PAXOS_LC_REGISTERING);
	restart(&c, 1, before_register);
	c.filter = NULL;
	assert_true(run_until(&c, 3000 * MS, all_fresh_and_caught_up, 1));
	commit_some(&c, 0, 20, 10);
	c.nodes[2].up = false;
	commit_some(&c, 0, 30, 3);
	assert_int_equal(c.n_acked, 33);
	check_clean(&c);
	cluster_free(&c);
}

/* S4: restarts in the middle of the fence and of the recovery read. */
static bool drop_recovery_replies(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	return m->type != MSG_RECOVERY_REPLY;
}

static bool lifecycle_is(struct cluster *c, int i)
{
	return paxos_lifecycle(c->nodes[i].p) == (enum paxos_lifecycle)(intptr_t)c->arg;
}

static void test_s4_restarts_during_recovery(void **state)
{
	struct cluster c;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 4);
	elect(&c, 0);
	commit_some(&c, 0, 0, 10);
	restart(&c, 1, synced_records(&c.nodes[1]));
	c.arg = (void *)(intptr_t)PAXOS_LC_FENCING;
	assert_true(run_until(&c, 1000 * MS, lifecycle_is, 1));
	run(&c, 100 * MS);
	commit_some(&c, 0, 10, 5);
	restart(&c, 1, synced_records(&c.nodes[1])); /* mid-fence */
	c.arg = (void *)(intptr_t)PAXOS_LC_RECOVERING;
	c.filter = drop_recovery_replies;
	assert_true(run_until(&c, 3000 * MS, lifecycle_is, 1));
	run(&c, 10 * MS);
	restart(&c, 1, synced_records(&c.nodes[1])); /* mid-recovery */
	c.filter = NULL;
	commit_some(&c, 0, 15, 5);
	assert_true(run_until(&c, 3000 * MS, all_fresh_and_caught_up, 1));
	c.nodes[2].up = false;
	commit_some(&c, 0, 20, 3);
	assert_int_equal(c.n_acked, 23);
	check_clean(&c);
	cluster_free(&c);
}

/* Proposes request req at node i until it is acknowledged (re-electing i when a higher
 * ballot deposed it); returns the slot. */
static uint64_t propose_until_applied(struct cluster *c, int i, uint64_t req)
{
	size_t before = c->n_acked;

	for (int attempt = 0; attempt < 20; attempt++) {
		if (!paxos_can_serve_reads(c->nodes[i].p)) {
			c->nodes[i].clock_off += 2 * T_ELECT;
			if (!run_until(c, 2000 * MS, can_read, i))
				continue;
		}
		propose(c, i, req);
		run(c, 30 * MS);
		if (c->n_acked > before)
			return paxos_commit_index(c->nodes[i].p);
	}
	fail_msg("request %llu never committed", (unsigned long long)req);
	return 0;
}

/* ---- S5: a forked incarnation kept alive while a lagging replica elects itself ----
 * N=3: A=0, old B=1, C=2, B'=3 (a fork of B). Phases follow SCENARIOS.md S5. */
struct s5 {
	int phase;
	uint64_t k; /* REGISTER(B')'s slot */
};

static bool s5_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	struct s5 *st = c->arg;
	const int A = 0, B = 1, C = 2, B2 = 3;

	if (from == B || to == B) {
		/* old B is cut off until phase 5; then it talks to C only */
		return st->phase >= 5 && (from == C || to == C);
	}
	switch (st->phase) {
	case 2: /* REGISTER(B') commits with {A, C}; the commit is withheld from C */
		if (from == A && to == C)
			return m->type == MSG_ACCEPT && m->accept.commit_index < st->k && st->k &&
			       m->accept.first_slot <= st->k;
		if (from == C && to == A)
			return m->type == MSG_ACCEPTED;
		return true;
	case 3: /* B' fences and recovers from {A, B', C}; C hears nothing else */
		if (from == A && to == C)
			return false;
		if (from == C)
			return to == B2 && m->type == MSG_RECOVERY_REPLY;
		return true;
	case 4: /* C cut off; A commits x=1 with {A, B'} */
		return from != C && to != C;
	case 5: /* A isolated; C runs phase 1 and reaches old B (B' cut from C) */
		return from != A && to != A && from != B2 && to != B2;
	default: /* 6: C reconnected to B'; A still isolated */
		return from != A && to != A;
	}
}

static bool s5_registered(struct cluster *c, int i)
{
	return paxos_registered(c->nodes[i].p) &&
	       paxos_lifecycle(c->nodes[i].p) != PAXOS_LC_REGISTERING;
}

/* Returns whether the checkers found a violation. */
static bool s5_schedule(unsigned unsafe, bool *old_b_halted)
{
	struct cluster c;
	struct s5 st = {0, 0};
	int b2;
	bool bad;
	uint64_t x_slot;

	cluster_init(&c, 3, 1, 1, unsafe, 5);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	/* 1. the host forks B into B'; old B keeps running */
	b2 = fork_node(&c, 1);
	assert_int_equal(b2, 3);
	c.filter = s5_filter;
	c.arg = &st;
	st.phase = 2;
	st.k = paxos_last_slot(c.nodes[0].p) + 1;
	/* 2. A commits REGISTER(B') at slot k with {A, C} */
	assert_true(run_until(&c, 2000 * MS, s5_registered, b2));
	assert_int_equal(paxos_registration(c.nodes[b2].p).slot, st.k);
	assert_true(paxos_last_slot(c.nodes[2].p) >= st.k);
	assert_true(paxos_commit_index(c.nodes[2].p) < st.k);
	/* 3. B' fences, recovers from {A, B', C}, becomes fresh */
	st.phase = 3;
	assert_true(run_until(&c, 3000 * MS, is_fresh, b2));
	/* 4. C is cut off; A commits x=1 with {A, B'} and acknowledges it */
	st.phase = 4;
	x_slot = propose_until_applied(&c, 0, 100);
	assert_int_equal(c.n_acked, 6);
	/* 5. A is isolated; C runs phase 1 and gets old B's promise */
	st.phase = 5;
	c.stale_set = true;
	c.stale.replica = 1;
	c.stale.reg = paxos_registration(c.nodes[1].p);
	c.nodes[2].clock_off += 2 * T_ELECT;
	run(&c, (uint64_t)(T_LEASE * 1.001) + 1500 * MS);
	/* 6. C is reconnected to B' */
	st.phase = 6;
	run(&c, 3000 * MS);
	bad = c.violation || !no_lost_ack(&c);
	*old_b_halted = c.nodes[1].halted;
	if (!unsafe) {
		int l = leader_of(&c);

		assert_false(c.rule_violation);
		assert_int_equal(c.stale_counted, 0);
		assert_true(l == 2 || l == b2);
		assert_true(paxos_commit_index(c.nodes[l].p) >= x_slot);
	}
	cluster_free(&c);
	return bad;
}

static void test_s5_fork(void **state)
{
	bool halted;

	(void)state;
	assert_false(s5_schedule(0, &halted));
	assert_true(halted); /* old B saw the newer REGISTER of its replica */
}

static void test_s5_fork_unsafe_no_incarnation_check(void **state)
{
	bool halted;

	(void)state;
	assert_true(s5_schedule(PAXOS_UNSAFE_NO_INCARNATION_CHECK, &halted));
	assert_false(halted);
}

/* ---- a rolled-back replica votes at once: caught with no-recovery and cft-quorums ----
 * N=3: A=0 commits x=1 with {A, B} while C=2 is cut off. B rolls back to before x=1. A is
 * partitioned away and C campaigns. With every rule B' is suspicious: it does not vote, C
 * cannot win, and after the heal x=1 survives. With PAXOS_UNSAFE_NO_RECOVERY (B' fresh at
 * once) or PAXOS_UNSAFE_CFT_QUORUMS (suspicion ignored: B' votes), C wins with {C, B'}, fills
 * x=1's slot with a no-op, and the agreement checker fires. */
static bool cut_c(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)m;
	return from != 2 && to != 2;
}

static bool cut_a(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)m;
	return from != 0 && to != 0;
}

static bool rollback_schedule(unsigned unsafe)
{
	struct cluster c;
	size_t before_x;
	bool bad;

	cluster_init(&c, 3, 1, 1, unsafe, 6);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	c.filter = cut_c;
	before_x = synced_records(&c.nodes[1]);
	propose_until_applied(&c, 0, 100);
	restart(&c, 1, before_x); /* rollback */
	c.filter = cut_a;
	c.nodes[2].clock_off += 2 * T_ELECT;
	run(&c, 1500 * MS);
	c.filter = NULL; /* heal */
	run(&c, 4000 * MS);
	bad = c.violation || !no_lost_ack(&c);
	if (!unsafe) {
		assert_false(c.rule_violation);
		assert_true(is_fresh(&c, 1));
		assert_true(leader_of(&c) >= 0);
	}
	cluster_free(&c);
	return bad;
}

static void test_rollback_suspicious_never_votes(void **state)
{
	(void)state;
	assert_false(rollback_schedule(0));
}

static void test_rollback_unsafe_no_recovery(void **state)
{
	(void)state;
	assert_true(rollback_schedule(PAXOS_UNSAFE_NO_RECOVERY));
}

static void test_rollback_unsafe_cft_quorums(void **state)
{
	(void)state;
	assert_true(rollback_schedule(PAXOS_UNSAFE_CFT_QUORUMS));
}

/* ---- the late acknowledgement of the previous incarnation (SCENARIOS S1, for accepts) ----
 * N=5: A=0 leads and proposes x=1; only B=1 receives the ACCEPT (its ACCEPTED is delayed in
 * the network, and so is the ACCEPT to D=3); C and E lose it. B crashes and restarts on state
 * without x=1; B' registers (the REGISTER's accept quorum leaves out D), recovers from
 * {B', C, D, E} and becomes fresh. Then D receives x=1 and old B's ACCEPTED arrives at A.
 * A must not count {A, old B, D}: every quorum must keep x=1 or x=1 must not be
 * acknowledged, and no counted quorum may hold old B after B' recovered. */
struct late {
	int phase;
};

static bool late_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	struct late *st = c->arg;

	if (st->phase == 1) {
		/* x=1's first round: B gets the ACCEPT, its ack is delayed; D's ACCEPT delayed */
		if (m->type == MSG_ACCEPT && from == 0)
			return to == 1;
		if (m->type == MSG_ACCEPTED && from == 1)
			return false;
		return true;
	}
	/* phase 2: B' registers with every message to and from D delayed */
	return from != 3 && to != 3;
}

static bool late_delay(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	return m->type == MSG_ACCEPT || m->type == MSG_ACCEPTED;
}

static bool late_ack_schedule(unsigned unsafe, unsigned *stale)
{
	struct cluster c;
	struct late st = {1};
	size_t before_x;
	bool bad;

	cluster_init(&c, 5, 2, 2, unsafe, 7);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	c.arg = &st;
	c.filter = late_filter;
	c.delay = late_delay;
	before_x = synced_records(&c.nodes[1]);
	propose(&c, 0, 100);
	drain(&c);
	restart(&c, 1, before_x); /* B crashes and restarts without x=1 */
	st.phase = 2;
	c.delay = NULL;
	c.stale_set = true;
	c.stale.replica = 1;
	c.stale.reg.epoch = c.stale.reg.slot = 0;
	assert_true(run_until(&c, 6000 * MS, is_fresh, 1));
	release_delayed(&c); /* D receives x=1; old B's ACCEPTED arrives at A */
	c.filter = NULL;
	run(&c, 2000 * MS);
	bad = c.violation || !no_lost_ack(&c);
	*stale = c.stale_counted;
	if (!unsafe)
		assert_false(c.rule_violation);
	cluster_free(&c);
	return bad;
}

static void test_late_ack_after_recovery(void **state)
{
	unsigned stale;

	(void)state;
	assert_false(late_ack_schedule(0, &stale));
	assert_int_equal(stale, 0);
	/* Not a negative control: in RR-Paxos the schedule stays safe without the fence too,
	 * because a slot commits only after every earlier slot, so REGISTER(B') cannot commit
	 * (and B' cannot recover) before x=1's round is decided or abandoned after T_op, after
	 * which its acks count for nothing (docs/PROTOCOL.md, "Why the fence"). */
	assert_false(late_ack_schedule(PAXOS_UNSAFE_NO_FENCE, &stale));
	assert_int_equal(stale, 0);
}

/* ---- S3: ballot resumption ----
 * N=5: old A leads at ballot b and has (j, v, b) accepted only by itself and C. A restarts
 * (rolled back before j); B leads and A' registers; A' recovers from {A', B, D, E} (C cut
 * off) and sees ballot b. A' must win its own phase 1 before proposing: its ballot names its
 * new registration, and slot j ends the same everywhere. */
static bool s3_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	struct late *st = c->arg;

	if (st->phase == 1) /* (j, v, b) reaches C only */
		return !(m->type == MSG_ACCEPT && from == 0 && to != 2) &&
		       !(m->type == MSG_ACCEPTED && to == 0);
	return from != 2 && to != 2; /* C cut off */
}

static void test_s3_ballot_resumption(void **state)
{
	struct cluster c;
	struct late st = {1};
	size_t before_j;
	struct msg_ballot b, b2;
	struct msg_regidx reg;

	(void)state;
	cluster_init(&c, 5, 2, 2, 0, 8);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	b = paxos_promised(c.nodes[0].p);
	before_j = synced_records(&c.nodes[0]);
	c.arg = &st;
	c.filter = s3_filter;
	propose(&c, 0, 100);
	run(&c, 5 * MS);
	restart(&c, 0, before_j);
	st.phase = 2;
	elect(&c, 1);
	assert_true(run_until(&c, 6000 * MS, is_fresh, 0));
	reg = paxos_registration(c.nodes[0].p);
	assert_true(reg.slot > 0);
	c.nodes[1].up = false; /* B crashes: A' campaigns */
	c.filter = NULL;
	elect(&c, 0);
	b2 = paxos_promised(c.nodes[0].p);
	assert_int_equal(b2.replica, 0);
	assert_int_equal(b2.reg.slot, reg.slot); /* its own ballot, never old A's b */
	assert_true(msg_ballot_cmp(&b2, &b) > 0);
	commit_some(&c, 0, 200, 5);
	assert_false(c.violation);
	assert_false(c.rule_violation);
	assert_true(no_lost_ack(&c));
	cluster_free(&c);
}

/* ---- the fence: T_fence on lo, restarted in full by a taint ---- */
static void test_fence_taint_restarts(void **state)
{
	struct cluster c;
	struct paxos_config cfg;
	uint64_t fence;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 9);
	make_config(&c, &cfg, 0, 0, false);
	fence = paxos_fence_ns(&cfg);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	restart(&c, 2, synced_records(&c.nodes[2]));
	c.arg = (void *)(intptr_t)PAXOS_LC_FENCING;
	assert_true(run_until(&c, 1000 * MS, lifecycle_is, 2));
	run(&c, fence / 2);
	c.nodes[2].epoch++; /* a taint of C's clock: the fence starts over */
	run(&c, fence / 2 + 50 * MS);
	assert_int_equal(paxos_lifecycle(c.nodes[2].p), PAXOS_LC_FENCING);
	run(&c, fence / 2);
	assert_true(run_until(&c, 1000 * MS, all_fresh_and_caught_up, 2));
	assert_false(c.violation);
	cluster_free(&c);
}

/* PAXOS_UNSAFE_NO_FENCE really skips the wait (so the late-ack schedule above runs without
 * it). */
static void test_no_fence_switch(void **state)
{
	struct cluster c;

	(void)state;
	cluster_init(&c, 3, 1, 1, PAXOS_UNSAFE_NO_FENCE, 10);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	restart(&c, 2, synced_records(&c.nodes[2]));
	assert_true(run_until(&c, 200 * MS, all_fresh_and_caught_up, 2));
	assert_false(c.violation);
	cluster_free(&c);
}

static void read_req(struct cluster *c, int i, uint64_t id);
static void opt_read(struct cluster *c, int i, uint64_t id);

/* ---- random restarts, rollbacks and drops within the bounds ----
 * Per seed: random message drops (a few percent), client commands at the current leader, and
 * every so often a restart of a random replica on its whole synced WAL (a crash) or on a
 * random shorter synced prefix (a rollback), only while fewer than min(F, M_R) replicas are
 * not fresh (under sync=rr a crashed replica counts against M_R until it has recovered, and
 * a suspicious replica does not vote, so more than F of them would stall the cluster).
 * Then the network heals: every replica must end fresh, and the checkers must stay silent. */
struct rnd_state {
	unsigned drop_pct;
};

static bool rnd_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	struct rnd_state *st = c->arg;

	(void)from;
	(void)to;
	(void)m;
	return rnd(c) % 100 >= st->drop_pct;
}

static int not_fresh(struct cluster *c)
{
	int k = 0;

	for (int i = 0; i < c->n; i++)
		if (!is_fresh(c, i))
			k++;
	return k;
}

static bool all_fresh(struct cluster *c, int unused)
{
	(void)unused;
	return not_fresh(c) == 0 && leader_of(c) >= 0 && can_read(c, leader_of(c));
}

/* Returns whether a checker fired (never, without unsafe switches: then it fails instead). */
static bool random_restarts(unsigned n, unsigned f, unsigned m_r, uint64_t seed, unsigned unsafe)
{
	struct cluster c;
	struct rnd_state st = {3};
	uint64_t req = 0;
	bool bad;

	cluster_init(&c, n, f, m_r, unsafe, seed);
	c.arg = &st;
	c.filter = rnd_filter;
	for (int round = 0; round < 300; round++) {
		int l = leader_of(&c);

		if (l >= 0)
			propose(&c, l, req++);
		/* reads: an optimized read at a random replica, a read-index read at the leader */
		if (c.nodes[round % n].up)
			opt_read(&c, (int)(round % n), (uint64_t)(round % 64));
		if (l >= 0)
			read_req(&c, l, (uint64_t)(round % 64));
		run(&c, 15 * MS);
		/* safety allows M_R at once; liveness (W_Q fresh voters) only F */
		if (rnd(&c) % 6 == 0 && not_fresh(&c) < (int)(m_r < f ? m_r : f)) {
			int i = (int)(rnd(&c) % n);
			size_t have = synced_records(&c.nodes[i]);
			size_t prefix = rnd(&c) % 2 ? have : (have ? rnd(&c) % (have + 1) : 0);

			if (is_fresh(&c, i))
				restart(&c, i, prefix);
		}
	}
	c.filter = NULL;
	if (!run_until(&c, 20000 * MS, all_fresh, 0) && !unsafe)
		fail_msg("seed %llu: the cluster did not recover (%d not fresh)",
			 (unsigned long long)seed, not_fresh(&c));
	if (leader_of(&c) >= 0 && !c.violation)
		propose_until_applied(&c, leader_of(&c), 100000);
	bad = c.violation || c.rule_violation || !no_lost_ack(&c) || c.read_stale;
	if (bad && !unsafe)
		fail_msg("seed %llu: checker fired%s", (unsigned long long)seed,
			 c.read_stale ? " (stale read)" : "");
	cluster_free(&c);
	return bad;
}

/* ---- epoch restart (DESIGN.md section 6; SCENARIOS.md S8-S11) ---- */

#define T_RESTART (1000 * MS)

static bool rs_all_fresh(struct cluster *c, int unused)
{
	(void)unused;
	for (int i = 0; i < c->nn; i++)
		if (!c->nodes[i].halted && c->nodes[i].up && !is_fresh(c, i))
			return false;
	return true;
}

static bool has_leader(struct cluster *c, int unused)
{
	int l = leader_of(c);

	(void)unused;
	return l >= 0 && can_read(c, l);
}

/* A cluster with the epoch restart on, a leader (node 0) and `writes` acknowledged commands
 * (request ids 1..writes). With M_R > 0 followers' records stay volatile until an fsync
 * (lazy_sync: sync=rr commits on the leader's synced ack alone); with M_R = 0 every ack must
 * be synced, so everything is. */
static void restart_cluster(struct cluster *c, unsigned n, unsigned f, unsigned m_r, int writes)
{
	g_t_restart = T_RESTART;
	cluster_init(c, n, f, m_r, 0, 11);
	c->lazy_sync = m_r > 0;
	elect(c, 0);
	for (int k = 1; k <= writes; k++) {
		propose(c, 0, (uint64_t)k);
		run(c, 5 * MS);
	}
	run(c, 300 * MS);
	assert_int_equal(c->n_acked, (size_t)writes);
}

/* Power loss everywhere: every replica restarts from what it synced. */
static void total_crash(struct cluster *c)
{
	for (int i = 0; i < c->n; i++)
		restart(c, i, synced_records(&c->nodes[i]));
}

/* After the restart: one epoch (`epoch`, or any with UINT64_MAX), everyone fresh in it, the
 * log keeps every acknowledged command and commits again. A replica left out of the new epoch
 * halted: the host starts it again (a new incarnation, which registers normally). */
static void check_after_restart(struct cluster *c, uint64_t top, uint64_t epoch)
{
	int l;

	assert_true(run_until(c, 60000 * MS, rs_all_fresh, 0));
	for (int i = 0; i < c->n; i++)
		if (c->nodes[i].halted)
			restart(c, i, synced_records(&c->nodes[i]));
	assert_true(run_until(c, 60000 * MS, rs_all_fresh, 0));
	assert_true(run_until(c, 10000 * MS, has_leader, 0));
	l = leader_of(c);
	if (epoch == UINT64_MAX)
		epoch = paxos_epoch(c->nodes[l].p);
	propose(c, l, 1000);
	run(c, 500 * MS);
	assert_true(request_chosen(c, 1000));
	for (int i = 0; i < c->nn; i++) {
		if (c->nodes[i].halted || !c->nodes[i].up)
			continue;
		assert_int_equal(paxos_epoch(c->nodes[i].p), epoch);
		assert_true(c->nodes[i].applied >= top);
	}
	assert_false(c->violation);
	assert_false(c->rule_violation);
	assert_true(no_lost_ack(c));
}

/* S11: every replica loses power after a burst of writes under sync=rr (the followers' entries
 * were never fsynced); the epoch restart brings the cluster back with every acknowledged
 * write, on every configuration. */
static void test_s11_total_crash(void **state)
{
	static const unsigned cfgs[][3] = {{3, 1, 1}, {4, 1, 2}, {5, 2, 2}, {7, 2, 4}};

	(void)state;
	for (size_t k = 0; k < sizeof(cfgs) / sizeof(cfgs[0]); k++) {
		struct cluster c;
		uint64_t top;

		restart_cluster(&c, cfgs[k][0], cfgs[k][1], cfgs[k][2], 20);
		top = paxos_commit_index(c.nodes[0].p);
		assert_true(top >= 20);
		total_crash(&c);
		for (int i = 0; i < c.n; i++)
			assert_true(paxos_suspicious(c.nodes[i].p));
		check_after_restart(&c, top, 1);
		/* and a second total crash, in epoch 1 */
		top = paxos_commit_index(c.nodes[leader_of(&c)].p);
		total_crash(&c);
		check_after_restart(&c, top, 2);
		cluster_free(&c);
	}
	g_t_restart = 0;
}

static bool cut_node2(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)m;
	return c->nodes[from].id != 2 && c->nodes[to].id != 2;
}

/* S8: a partitioned replica proposes a restart while the cluster is healthy: the others ignore
 * it and keep committing; once it hears from them again it halts (it promised) and comes back
 * as a new incarnation that registers normally. */
static void test_s8_partitioned_proposer(void **state)
{
	struct cluster c;
	uint64_t before;

	(void)state;
	restart_cluster(&c, 3, 1, 1, 5);
	c.filter = cut_node2;
	run(&c, 3 * T_RESTART);
	assert_true(paxos_stuck(c.nodes[2].p));
	assert_true(paxos_suspicious(c.nodes[2].p)); /* it proposed: its own promise */
	for (int k = 100; k < 110; k++) {
		propose(&c, 0, (uint64_t)k);
		run(&c, 20 * MS);
	}
	run(&c, 200 * MS);
	for (int k = 100; k < 110; k++)
		assert_true(request_chosen(&c, (uint64_t)k));
	assert_true(is_fresh(&c, 0) && is_fresh(&c, 1));
	assert_int_equal(paxos_epoch(c.nodes[0].p), 0);
	assert_int_equal(paxos_epoch(c.nodes[1].p), 0);
	before = paxos_commit_index(c.nodes[0].p);
	c.filter = NULL;
	run(&c, 2 * T_RESTART);
	assert_true(c.nodes[2].halted);
	restart(&c, 2, synced_records(&c.nodes[2]));
	check_after_restart(&c, before, 0);
	cluster_free(&c);
	g_t_restart = 0;
}

static bool cut_0_2(struct cluster *c, int from, int to, const struct msg *m)
{
	int a = c->nodes[from].id, b = c->nodes[to].id;

	(void)m;
	return !((a == 0 && b == 2) || (a == 2 && b == 0));
}

/* S9: two proposers (0 and 2, cut from each other) share the answerer 1: exactly one epoch 1
 * exists (M_R = 0, so S_Q = 2 and either side could decide alone). */
static void test_s9_two_proposers(void **state)
{
	struct cluster c;
	uint64_t top;

	(void)state;
	restart_cluster(&c, 3, 1, 0, 10);
	top = paxos_commit_index(c.nodes[0].p);
	total_crash(&c);
	c.filter = cut_0_2;
	assert_true(run_until(&c, 60000 * MS, rs_all_fresh, 0));
	/* one epoch 1: every replica that installed it is in it; one left out halted */
	for (int i = 0; i < c.n; i++)
		assert_true(c.nodes[i].halted || paxos_epoch(c.nodes[i].p) == 1);
	c.filter = NULL;
	check_after_restart(&c, top, 1);
	cluster_free(&c);
	g_t_restart = 0;
}

/* S10: replica 0 is forked after the total crash; both copies answer. Epoch 1 names at most
 * one of them; the other halts on seeing it. */
static void test_s10_fork_answers_twice(void **state)
{
	struct cluster c;
	uint64_t top;
	int fork, installed = 0, halted = 0;

	(void)state;
	restart_cluster(&c, 3, 1, 1, 10);
	top = paxos_commit_index(c.nodes[0].p);
	total_crash(&c);
	fork = fork_node(&c, 0);
	assert_true(run_until(&c, 60000 * MS, rs_all_fresh, 0));
	for (int i = 0; i < c.nn; i++) {
		if (c.nodes[i].id != 0)
			continue;
		if (c.nodes[i].halted)
			halted++;
		else if (paxos_epoch(c.nodes[i].p) == 1 && paxos_registered(c.nodes[i].p))
			installed++;
	}
	assert_int_equal(installed, 1);
	assert_int_equal(halted, 1);
	assert_true(fork > 0);
	check_after_restart(&c, top, 1);
	cluster_free(&c);
	g_t_restart = 0;
}

static bool count_restart_accepts(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)from;
	if (m->type == MSG_RESTART_ACCEPT && !m->restart_accept.decided && c->nodes[to].id == 1)
		c->restart_accepts++;
	return true;
}

/* Restarts during the restart round: replica 1 crashes right after it was asked to accept
 * (its promise and accept are durable), then again while it registers in the new epoch. */
static void test_restart_during_restart(void **state)
{
	struct cluster c;
	uint64_t top;
	bool crashed = false;

	(void)state;
	restart_cluster(&c, 3, 1, 1, 10);
	top = paxos_commit_index(c.nodes[0].p);
	total_crash(&c);
	c.filter = count_restart_accepts;
	for (uint64_t t = 0; t < 30000 && !crashed; t++) {
		drain(&c);
		if (c.restart_accepts > 0) {
			restart(&c, 1, synced_records(&c.nodes[1]));
			crashed = true;
		}
		tick(&c, MS);
	}
	assert_true(crashed);
	run(&c, 200 * MS);
	restart(&c, 1, synced_records(&c.nodes[1]));
	c.filter = NULL;
	check_after_restart(&c, top, UINT64_MAX);
	assert_true(paxos_epoch(c.nodes[0].p) >= 1);
	cluster_free(&c);
	g_t_restart = 0;
}

static void test_random_restarts(void **state)
{
	unsigned seeds = 12;
	const char *env = getenv("PAXOS_SEEDS");

	(void)state;
	if (env)
		seeds = (unsigned)strtoul(env, NULL, 10);
	for (unsigned s = 1; s <= seeds; s++) {
		random_restarts(3, 1, 1, s, 0);
		random_restarts(5, 2, 2, 100 + s, 0);
		random_restarts(4, 1, 2, 200 + s, 0);
	}
}

/* The same runs with the switches that matter without forks: the checkers must catch
 * PAXOS_UNSAFE_NO_RECOVERY on some seed (about 45% of them). PAXOS_UNSAFE_CFT_QUORUMS is
 * rarely caught here (a rolled-back replica's vote must decide an election while the replica
 * holding the lost slot is away); its scripted schedule above always catches it. No fork
 * happens here, so PAXOS_UNSAFE_NO_INCARNATION_CHECK has nothing to break (S5 catches it). */
static void test_random_restarts_negative(void **state)
{
	unsigned caught = 0, cft = 0;

	(void)state;
	for (unsigned s = 1; s <= 40; s++) {
		caught += random_restarts(3, 1, 1, s, PAXOS_UNSAFE_NO_RECOVERY) +
			  random_restarts(5, 2, 2, 100 + s, PAXOS_UNSAFE_NO_RECOVERY);
		cft += random_restarts(3, 1, 1, s, PAXOS_UNSAFE_CFT_QUORUMS) +
		       random_restarts(5, 2, 2, 100 + s, PAXOS_UNSAFE_CFT_QUORUMS);
	}
	print_message("no-recovery caught on %u of 80 seeds, cft-quorums on %u\n", caught, cft);
	assert_true(caught > 0);
}

/* ---- read index ---- */
static void read_req(struct cluster *c, int i, uint64_t id)
{
	struct paxos_input in = {.type = PAXOS_IN_READ};

	c->read_outcome[id] = -1;
	c->read_floor[64 + id] = c->seen_slot;
	in.read.client_id = 2;
	in.read.request_id = id;
	step(c, i, &in);
}

static bool cut_a_except_c(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)m;
	if (from == 0 || to == 0)
		return (from == 0 && to == 2) || (from == 2 && to == 0);
	return true;
}

static void test_read_index(void **state)
{
	struct cluster c;
	uint64_t ci;

	(void)state;
	g_t_lease = 0; /* the read-index path itself (test_lease_reads has the lease's) */
	cluster_init(&c, 3, 1, 1, 0, 11);
	read_req(&c, 0, 0); /* not the leader */
	assert_int_equal(c.read_outcome[0], PAXOS_OUTCOME_NOT_LEADER);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	ci = paxos_commit_index(c.nodes[0].p);
	read_req(&c, 0, 1);
	read_req(&c, 0, 2);			 /* both in one collection */
	assert_int_equal(c.read_outcome[1], -1); /* waits for W_Q acknowledgements */
	drain(&c);
	assert_int_equal(c.read_outcome[1], PAXOS_OUTCOME_READ);
	assert_int_equal(c.read_slot[1], ci);
	assert_int_equal(c.read_outcome[2], PAXOS_OUTCOME_READ);
	/* a suspicious replica never acknowledges: with C down and B restarting, no read */
	c.nodes[2].up = false;
	restart(&c, 1, synced_records(&c.nodes[1]));
	read_req(&c, 0, 3);
	run(&c, 50 * MS);
	assert_int_equal(c.read_outcome[3], -1);
	run(&c, T_OP + 10 * MS);
	assert_int_equal(c.read_outcome[3], PAXOS_OUTCOME_BUSY);
	c.nodes[2].up = true;
	assert_true(run_until(&c, 4000 * MS, all_fresh, 0));
	/* a deposed leader that still believes it leads never answers from a stale state:
	 * A is cut off from B, B and C elect B and commit, then A hears only from C */
	elect(&c, 0);
	c.filter = cut_a;
	elect(&c, 1);
	commit_some(&c, 1, 10, 3);
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_LEADER);
	c.filter = cut_a_except_c;
	read_req(&c, 0, 4);
	run(&c, 5 * MS);
	assert_int_equal(c.read_outcome[4], PAXOS_OUTCOME_NOT_LEADER); /* C: NACK BALLOT */
	c.filter = NULL;
	read_req(&c, 1, 5);
	drain(&c);
	assert_int_equal(c.read_outcome[5], PAXOS_OUTCOME_READ);
	assert_int_equal(c.read_slot[5], paxos_commit_index(c.nodes[1].p));
	check_clean(&c);
	cluster_free(&c);
	g_t_lease = T_LEASE;
}

/* ---- leader lease (DESIGN.md section 8; docs/PROTOCOL.md "RR-Paxos: leader lease") ---- */

static bool lease_held(struct cluster *c, int i)
{
	struct paxos_time t = node_time(c, i);

	return c->nodes[i].up &&
	       paxos_lease_read_ok(c->nodes[i].p, &t,
				   c->nodes[i].host_stop ? c->nodes[i].host_stop : t.lo_ns);
}

/* Served locally while held (answered in the step the read arrives, no READ_INDEX); after a
 * taint, and once the lease ran out, reads fall back to the read index. */
static void test_lease_reads(void **state)
{
	struct cluster c;
	uint64_t ci;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 41);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	run(&c, 2 * T_HB);
	assert_true(lease_held(&c, 0));
	assert_false(lease_held(&c, 1));
	assert_false(lease_held(&c, 2));
	ci = paxos_commit_index(c.nodes[0].p);
	read_req(&c, 0, 1); /* no drain: answered in the step itself */
	assert_int_equal(c.read_outcome[1], PAXOS_OUTCOME_READ);
	assert_true(c.read_lease[1]);
	assert_int_equal(c.read_slot[1], ci);
	assert_int_equal(paxos_lease_reads(c.nodes[0].p), 1);
	read_req(&c, 1, 2); /* a follower: never from a lease */
	assert_int_equal(c.read_outcome[2], PAXOS_OUTCOME_NOT_LEADER);
	/* a taint ends the lease at once: the read takes the read-index path */
	c.nodes[0].epoch++;
	read_req(&c, 0, 3);
	assert_int_equal(c.read_outcome[3], -1);
	assert_false(lease_held(&c, 0));
	drain(&c);
	assert_int_equal(c.read_outcome[3], PAXOS_OUTCOME_READ);
	assert_false(c.read_lease[3]);
	/* the next heartbeats in the new epoch bring it back */
	run(&c, 2 * T_HB);
	assert_true(lease_held(&c, 0));
	/* expiry: A hears nobody; its lease runs out within T_lease of its last counted
	 * heartbeat, then reads are read-index reads (which cannot complete either) */
	c.filter = cut_a;
	run(&c, T_LEASE);
	assert_false(lease_held(&c, 0));
	read_req(&c, 0, 4);
	assert_int_equal(c.read_outcome[4], -1);
	assert_false(c.read_stale);
	check_clean(&c);
	cluster_free(&c);
}

/* Followers promise no other ballot while their grant to the leader runs: cut off from its
 * leader, no one is elected for most of T_lease while the old leader still holds its lease;
 * when a new leader is elected, the old lease has run out (checked at every millisecond). */
static void test_lease_refuses_new_ballot(void **state)
{
	struct cluster c;
	struct msg_ballot b0;
	uint64_t t;
	int other = -1;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 42);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	run(&c, 2 * T_HB);
	assert_true(lease_held(&c, 0));
	b0 = paxos_promised(c.nodes[0].p);
	c.filter = cut_a;
	for (t = 0; t < T_LEASE / 2 + T_ELECT / 2; t += MS) {
		drain(&c);
		tick(&c, MS);
	}
	/* B and C timed out (T_elect) but each still runs its promise to A's ballot: neither
	 * campaigns nor promises the other */
	assert_true(lease_held(&c, 0));
	for (int i = 1; i <= 2; i++)
		assert_int_not_equal(paxos_role(c.nodes[i].p), PAXOS_LEADER);
	assert_int_equal(paxos_role(c.nodes[0].p), PAXOS_LEADER);
	for (t = 0; t < 4000 * MS && other < 0; t += MS) {
		drain(&c);
		tick(&c, MS);
		for (int i = 1; i <= 2; i++)
			if (paxos_role(c.nodes[i].p) == PAXOS_LEADER)
				other = i;
		if (other >= 0 || lease_held(&c, 0))
			assert_false(other >= 0 && lease_held(&c, 0));
	}
	assert_true(other >= 0);
	assert_true(msg_ballot_cmp(&b0, &(struct msg_ballot){0}) != 0);
	assert_false(lease_held(&c, 0));
	/* the new leader gets its own lease and serves from it */
	assert_true(run_until(&c, 1000 * MS, lease_held, other));
	read_req(&c, other, 5);
	assert_int_equal(c.read_outcome[5], PAXOS_OUTCOME_READ);
	assert_true(c.read_lease[5]);
	c.filter = NULL;
	run(&c, 200 * MS);
	assert_false(c.read_stale);
	check_clean(&c);
	cluster_free(&c);
}

/* A restarted incarnation grants nothing until it is fresh (its T_fence covers whatever its
 * predecessor granted): with C down and B restarting, the leader cannot build a lease. */
static void test_lease_fenced_grants_nothing(void **state)
{
	struct cluster c;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 43);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	c.nodes[2].up = false;
	restart(&c, 1, synced_records(&c.nodes[1]));
	run(&c, T_LEASE + 10 * MS);
	assert_false(is_fresh(&c, 1));
	assert_false(lease_held(&c, 0));
	read_req(&c, 0, 6);
	assert_int_equal(c.read_outcome[6], -1);
	c.nodes[2].up = true;
	assert_true(run_until(&c, 4000 * MS, is_fresh, 1));
	assert_true(run_until(&c, 500 * MS, lease_held, 0));
	check_clean(&c);
	cluster_free(&c);
}

/* ---- the fence and the leader lease: a grant the new incarnation forgot ----
 * N=3 (W_Q = 2): A=0 leads and holds its lease; from t0 its heartbeats to C=2 are lost (its
 * ACCEPTs still arrive), so from then on A's lease rests on A and B=1 alone, while C's grant
 * runs out at t0 + T_lease (1 + rho). At t1 (t1 - t0 > 2 rho T_lease) B crashes right after
 * acknowledging a heartbeat and restarts at once: B' has no record of the grant it gave.
 * B' registers (accepted by A and C), then A is cut off from both. A's lease, built on old B's
 * grant, runs until t1 + T_lease (1 - rho). Without the fence B' is fresh at once, C's grant
 * has run out, so {B', C} elect a new leader that commits a write while A still serves lease
 * reads of the old state: a stale read. With the fence B' neither promises nor grants for
 * T_fence >= T_lease (1 + rho), so no one is elected before A's lease ended. */
#define LF_LEASE (1000 * MS)

struct lease_fence {
	int phase; /* 1: A's heartbeats to C lost; 2: A cut off */
};

static bool lease_fence_filter(struct cluster *c, int from, int to, const struct msg *m)
{
	struct lease_fence *st = c->arg;

	if (st->phase == 1)
		return !(from == 0 && to == 2 && m->type == MSG_COMMIT && m->nonce);
	return from != 0 && to != 0;
}

static int new_leader(struct cluster *c)
{
	for (int i = 1; i <= 2; i++)
		if (c->nodes[i].up && !c->nodes[i].halted && can_read(c, i))
			return i;
	return -1;
}

static bool lf_registered(struct cluster *c, int i)
{
	return paxos_registered(c->nodes[i].p);
}

/* Returns whether A answered a lease read with a state older than a write acknowledged
 * before it (*overlap: a new leader served while A held its lease). */
static bool lease_fence_schedule(unsigned unsafe, bool *overlap)
{
	struct cluster c;
	struct lease_fence st = {1};
	uint64_t t;
	int other = -1;
	bool stale;

	g_t_lease = LF_LEASE;
	cluster_init(&c, 3, 1, 1, unsafe, 44);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	run(&c, 2 * T_HB);
	assert_true(lease_held(&c, 0));
	c.arg = &st;
	c.filter = lease_fence_filter;
	run(&c, LF_LEASE / 2); /* t0 .. t1: B's acks alone keep A's lease */
	assert_true(lease_held(&c, 0));
	restart(&c, 1, synced_records(&c.nodes[1])); /* right after B's last grant */
	/* B' registers (A and C accept) and, without the fence, recovers at once */
	assert_true(run_until(&c, 100 * MS, unsafe ? is_fresh : lf_registered, 1));
	st.phase = 2; /* A cut off (it still answers its clients) until its lease is over */
	*overlap = false;
	for (t = 0; t < 4000 * MS && other < 0; t += MS) {
		drain(&c);
		tick(&c, MS);
		if (t == LF_LEASE + T_OP)
			c.filter = NULL; /* A's lease is long over: heal */
		other = new_leader(&c);
		if (other >= 0 && lease_held(&c, 0))
			*overlap = true;
	}
	assert_true(other >= 0);
	propose(&c, other, 500); /* a write, acknowledged */
	drain(&c);
	assert_true(request_chosen(&c, 500));
	read_req(&c, 0, 7); /* a client of A's: a lease read if A still holds its lease */
	stale = c.read_stale;
	if (stale) {
		assert_true(c.read_lease[7]);
		assert_true(*overlap);
	} else {
		assert_int_not_equal(c.read_outcome[7], PAXOS_OUTCOME_READ);
	}
	assert_false(c.violation); /* the log itself stays safe either way */
	if (!unsafe)
		assert_false(c.rule_violation);
	cluster_free(&c);
	g_t_lease = T_LEASE;
	return stale;
}

static void test_lease_fence(void **state)
{
	bool overlap;

	(void)state;
	assert_false(lease_fence_schedule(0, &overlap));
	assert_false(overlap);
	/* the negative control: B' promises C's ballot while A still counts old B's grant */
	assert_true(lease_fence_schedule(PAXOS_UNSAFE_NO_FENCE, &overlap));
	assert_true(overlap);
}

/* Negative control: with leases timed by the host clock, a host that stops the leader's clock
 * keeps its lease valid forever; B and C wait out their (honest) grants and elect a new
 * leader while A still holds its lease. The same schedule with the trusted clock is safe. */
static bool host_clock_schedule(unsigned unsafe)
{
	struct cluster c;
	bool overlap = false;
	int other = -1;

	cluster_init(&c, 3, 1, 1, unsafe, 44);
	elect(&c, 0);
	commit_some(&c, 0, 0, 3);
	run(&c, 2 * T_HB);
	assert_true(lease_held(&c, 0));
	c.nodes[0].host_stop = node_time(&c, 0).lo_ns; /* the host stops A's clock */
	c.filter = cut_a;
	for (uint64_t t = 0; t < 4000 * MS && other < 0; t += MS) {
		drain(&c);
		tick(&c, MS);
		for (int i = 1; i <= 2; i++)
			if (paxos_role(c.nodes[i].p) == PAXOS_LEADER)
				other = i;
	}
	assert_true(other >= 0);
	commit_some(&c, other, 10, 1);
	overlap = lease_held(&c, 0);
	if (overlap) {
		read_req(&c, 0, 7); /* A answers from its stale state */
		assert_true(c.read_lease[7]);
	}
	cluster_free(&c);
	return overlap;
}

static void test_lease_trust_host_clock(void **state)
{
	(void)state;
	assert_false(host_clock_schedule(0));
	assert_true(host_clock_schedule(PAXOS_UNSAFE_TRUST_HOST_CLOCK));
}

/* ---- allocation failures in restore, register, fence, recover ----
 * Fails the Nth allocation (then every one from the Nth) after a restart begins: every
 * failure surfaces as TEEMS_ENOMEM (the core is discarded, as a crash), never a crash or a
 * checker violation; the sanitizer build checks that nothing leaks. */
static void alloc_restart_scenario(struct cluster *c, long nth, int repeat)
{
	cluster_init(c, 3, 1, 1, 0, 12);
	elect(c, 0);
	commit_some(c, 0, 0, 10);
	c->allow_enomem = true;
	teems_alloc_fault(nth, repeat);
	restart(c, 1, synced_records(&c->nodes[1]));
	for (int k = 0; k < 1500; k++) {
		drain(c);
		tick(c, MS);
		if (k % 100 == 0 && c->nodes[0].up && paxos_role(c->nodes[0].p) == PAXOS_LEADER)
			propose(c, 0, 1000 + (uint64_t)k);
	}
	drain(c);
	teems_alloc_fault(-1, 0);
}

static void test_alloc_failures_lifecycle(void **state)
{
	struct cluster c;
	unsigned long before, total;
	unsigned hits = 0;

	(void)state;
	before = teems_alloc_count();
	alloc_restart_scenario(&c, -1, 0);
	total = teems_alloc_count() - before;
	assert_int_equal(c.enomem_hits, 0);
	assert_true(is_fresh(&c, 1));
	cluster_free(&c);
	for (int repeat = 0; repeat <= 1; repeat++) {
		unsigned long stride = total / 60 + 1;

		for (unsigned long nth = 0; nth < total; nth += stride) {
			alloc_restart_scenario(&c, (long)nth, repeat);
			hits += c.enomem_hits;
			assert_false(c.violation);
			assert_false(c.rule_violation);
			cluster_free(&c);
		}
	}
	assert_true(hits > 30);
}

/* ---- the optimized read ---- */
static void opt_read(struct cluster *c, int i, uint64_t id)
{
	struct paxos_input in = {.type = PAXOS_IN_OPT_READ};

	c->oread_outcome[id] = -1;
	c->read_floor[id] = c->seen_slot;
	in.opt_read.client_id = 3;
	in.opt_read.request_id = id;
	in.opt_read.command = (const uint8_t *)"get";
	in.opt_read.len = 3;
	step(c, i, &in);
}

static bool drop_accepted(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	return m->type != MSG_ACCEPTED;
}

static void test_optimized_read(void **state)
{
	struct cluster c;
	uint64_t ci;
	char want[32];

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 13);
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	run(&c, 2 * T_HB); /* every follower learns the commit index */
	ci = paxos_commit_index(c.nodes[0].p);
	/* a follower coordinates: R_Q(0) = 2 unanimous replies */
	opt_read(&c, 1, 0);
	drain(&c);
	assert_int_equal(c.oread_outcome[0], PAXOS_OPT_READ_OK);
	assert_int_equal(c.oread_slot[0], ci);
	snprintf(want, sizeof(want), "applied:%llu", (unsigned long long)ci);
	assert_string_equal(c.oread_result[0], want);
	/* a write in flight (accepted above executed): the read aborts */
	c.filter = drop_accepted;
	propose(&c, 0, 50);
	drain(&c);
	opt_read(&c, 2, 1);
	drain(&c);
	assert_int_equal(c.oread_outcome[1], PAXOS_OPT_READ_ABORTED);
	c.filter = NULL;
	run(&c, T_OP + 50 * MS); /* the round is retried and commits */
	run(&c, 2 * T_HB);
	/* a restarted replica answers flagged: s = 1, R_Q(1) = 3 replies needed */
	restart(&c, 2, synced_records(&c.nodes[2]));
	run(&c, 5 * MS);
	opt_read(&c, 1, 2);
	drain(&c);
	assert_int_not_equal(c.oread_outcome[2], -1);
	if (c.oread_outcome[2] == PAXOS_OPT_READ_OK)
		assert_true(c.oread_slot[2] >= paxos_commit_index(c.nodes[0].p));
	/* alone, no read quorum: BUSY after T_op */
	c.nodes[0].up = false;
	c.nodes[2].up = false;
	opt_read(&c, 1, 3);
	run(&c, T_OP + 10 * MS);
	assert_int_equal(c.oread_outcome[3], PAXOS_OPT_READ_BUSY);
	check_clean(&c);
	cluster_free(&c);
}

/* ---- snapshots, compaction, transfer and install (paxos.h "Snapshots and compaction") ---- */

static bool drop_all(struct cluster *c, int from, int to, const struct msg *m)
{
	(void)c;
	(void)from;
	(void)to;
	(void)m;
	return false;
}

static struct paxos_snapshot_stats stats_of(struct cluster *c, int i)
{
	struct paxos_snapshot_stats st;

	paxos_snapshot_stats(c->nodes[i].p, &st);
	return st;
}

static bool caught_up_with_leader(struct cluster *c, int i)
{
	int l = leader_of(c);

	return l >= 0 && is_fresh(c, i) && c->nodes[i].applied == c->nodes[l].applied &&
	       c->nodes[i].applied == paxos_commit_index(c->nodes[l].p);
}

/* Only committed and applied slots are compacted; what is above stays and still commits. */
static void test_snapshot_compaction_bounds(void **state)
{
	struct cluster c;
	struct paxos *p;
	uint8_t st[16];
	uint64_t applied, last;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 31);
	elect(&c, 0);
	commit_some(&c, 0, 0, 10);
	p = c.nodes[0].p;
	applied = c.nodes[0].applied;
	assert_int_equal(applied, paxos_commit_index(p));
	/* the followers hear nothing: three more slots stay accepted, uncommitted */
	c.filter = drop_all;
	for (uint64_t k = 10; k < 13; k++)
		propose(&c, 0, k);
	drain(&c);
	last = paxos_last_slot(p);
	assert_true(last > applied);
	assert_int_equal(paxos_commit_index(p), applied);
	sm_encode(&c.nodes[0], st);
	/* not applied (nor committed): refused, nothing changes */
	assert_int_equal(paxos_snapshot_taken(p, applied + 1, st, sizeof(st), NULL, NULL),
			 TEEMS_EINVAL);
	assert_int_equal(paxos_snapshot_taken(p, last, st, sizeof(st), NULL, NULL), TEEMS_EINVAL);
	assert_int_equal(paxos_snapshot_taken(p, 0, st, sizeof(st), NULL, NULL), TEEMS_EINVAL);
	assert_int_equal(paxos_snapshot_index(p), 0);
	assert_int_equal(paxos_snapshot_taken(p, applied, st, sizeof(st), NULL, NULL), TEEMS_OK);
	assert_int_equal(paxos_snapshot_index(p), applied);
	assert_int_equal(paxos_last_slot(p), last); /* the open slots are all still there */
	/* at or below the snapshot: refused */
	assert_int_equal(paxos_snapshot_taken(p, applied, st, sizeof(st), NULL, NULL),
			 TEEMS_EINVAL);
	assert_int_equal(paxos_snapshot_taken(p, applied - 1, st, sizeof(st), NULL, NULL),
			 TEEMS_EINVAL);
	assert_int_equal(stats_of(&c, 0).taken, 1);
	/* heal: the open slots commit from the leader's log, and the followers (which hold
	 * every slot up to the snapshot) need no install */
	c.filter = NULL;
	run(&c, 1500 * MS);
	assert_true(paxos_commit_index(p) >= last);
	assert_true(run_until(&c, 2000 * MS, caught_up_with_leader, 1));
	assert_true(run_until(&c, 2000 * MS, caught_up_with_leader, 2));
	assert_int_equal(stats_of(&c, 1).installed + stats_of(&c, 2).installed, 0);
	/* abandoned while cut off (UNKNOWN to their client), committed after all */
	for (uint64_t k = 10; k < 13; k++)
		assert_true(request_chosen(&c, k));
	check_clean(&c);
	cluster_free(&c);
}

/* A follower cut off while the others commit and compact far past it catches up through the
 * leader's snapshot (several chunks), then votes again. */
static void test_snapshot_follower_installs(void **state)
{
	struct cluster c;
	struct paxos_snapshot_stats st;

	(void)state;
	g_snap_chunk = 64;
	cluster_init(&c, 3, 1, 1, 0, 32);
	c.snap_every = 8;
	elect(&c, 0);
	c.filter = cut_node2;
	commit_some(&c, 0, 0, 60);
	assert_true(paxos_snapshot_index(c.nodes[0].p) >= 48);
	assert_true(paxos_snapshot_index(c.nodes[1].p) >= 48);
	assert_true(c.nodes[2].applied < 10);
	c.filter = NULL;
	assert_true(run_until(&c, 3000 * MS, caught_up_with_leader, 2));
	st = stats_of(&c, 2);
	assert_true(st.installed >= 1);
	assert_int_equal(st.chunks_refused + st.transfers_refused, 0);
	/* the snapshot is more than one chunk (pushed by the leader, or asked of either peer by
	 * node 2 if it campaigned first) */
	assert_true(stats_of(&c, 0).chunks_sent + stats_of(&c, 1).chunks_sent >= 3);
	assert_int_equal(c.nodes[2].sm_hash, c.nodes[0].sm_hash);
	/* node 2 is a voter again: without node 1 the leader needs it */
	c.nodes[1].up = false;
	commit_some(&c, 0, 60, 5);
	assert_int_equal(c.n_acked, 65);
	assert_int_equal(c.nodes[2].sm_hash, c.nodes[0].sm_hash);
	check_clean(&c);
	cluster_free(&c);
	g_snap_chunk = 0;
}

/* A restart starts from the sealed snapshot plus the WAL records after it. */
static void test_snapshot_restart_restores(void **state)
{
	struct cluster c;
	uint64_t snap;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 33);
	c.snap_every = 8;
	elect(&c, 0);
	commit_some(&c, 0, 0, 30);
	snap = paxos_snapshot_index(c.nodes[1].p);
	assert_true(snap >= 24);
	assert_true(c.nodes[1].snap_wal > 0 && c.nodes[1].snap_wal < c.nodes[1].n_wal);
	restart(&c, 1, synced_records(&c.nodes[1]));
	/* restored: the snapshot's state, the log above it from the WAL */
	assert_int_equal(paxos_snapshot_index(c.nodes[1].p), snap);
	assert_int_equal(c.nodes[1].applied, snap);
	assert_true(paxos_commit_index(c.nodes[1].p) >= snap);
	assert_true(paxos_suspicious(c.nodes[1].p));
	assert_true(run_until(&c, 3000 * MS, all_fresh_and_caught_up, 1));
	assert_true(run_until(&c, 500 * MS, caught_up_with_leader, 1));
	assert_int_equal(c.nodes[1].sm_hash, c.nodes[0].sm_hash);
	c.nodes[2].up = false; /* the leader needs node 1 now */
	commit_some(&c, 0, 30, 5);
	assert_int_equal(c.n_acked, 35);
	/* and a rollback to before the snapshot restores from the WAL alone */
	restart(&c, 1, c.nodes[1].snap_wal ? c.nodes[1].snap_wal - 1 : 0);
	c.nodes[2].up = true;
	assert_true(run_until(&c, 3000 * MS, all_fresh_and_caught_up, 1));
	check_clean(&c);
	cluster_free(&c);
}

static bool fresh_node(struct cluster *c, int i)
{
	return is_fresh(c, i);
}

/* A replica down while the others compact far beyond its log restarts: its recovery read
 * finds the repliers' snapshots above its commit index and must fetch one before it is
 * fresh (DESIGN.md section 4, step 5). */
static void test_snapshot_recovery_fetches(void **state)
{
	struct cluster c;
	uint64_t before;

	(void)state;
	g_snap_chunk = 100;
	cluster_init(&c, 3, 1, 1, 0, 34);
	c.snap_every = 8;
	elect(&c, 0);
	commit_some(&c, 0, 0, 5);
	c.nodes[2].up = false;
	commit_some(&c, 0, 5, 50);
	before = paxos_commit_index(c.nodes[0].p);
	assert_true(paxos_snapshot_index(c.nodes[0].p) > c.nodes[2].applied);
	assert_true(paxos_snapshot_index(c.nodes[1].p) > c.nodes[2].applied);
	restart(&c, 2, synced_records(&c.nodes[2]));
	assert_true(paxos_commit_index(c.nodes[2].p) < paxos_snapshot_index(c.nodes[1].p));
	assert_true(run_until(&c, 4000 * MS, fresh_node, 2));
	/* suspicious replicas are sent no heartbeats and no pushes: the install is recovery's */
	assert_true(stats_of(&c, 2).installed >= 1);
	assert_true(paxos_commit_index(c.nodes[2].p) >= paxos_snapshot_index(c.nodes[1].p) ||
		    paxos_commit_index(c.nodes[2].p) >= before - 8);
	assert_true(c.counted_recoveries >= 1);
	assert_true(run_until(&c, 2000 * MS, caught_up_with_leader, 2));
	assert_int_equal(c.nodes[2].sm_hash, c.nodes[0].sm_hash);
	c.nodes[1].up = false;
	commit_some(&c, 0, 55, 5);
	assert_int_equal(c.n_acked, 60);
	check_clean(&c);
	cluster_free(&c);
	g_snap_chunk = 0;
}

/* A candidate whose commit index is below a promiser's snapshot cannot learn the compacted
 * slots from that promise: it must not count it (it would fill those committed slots with
 * no-ops) and fetches the snapshot instead. */
static void test_snapshot_candidate_gap(void **state)
{
	struct cluster c;

	(void)state;
	g_t_lease = 0; /* node 2 must win right after node 0's loss */
	cluster_init(&c, 3, 1, 1, 0, 37);
	c.snap_every = 8;
	elect(&c, 0);
	c.filter = cut_node2;
	commit_some(&c, 0, 0, 40);
	assert_true(paxos_snapshot_index(c.nodes[1].p) >= 32);
	c.nodes[0].up = false;
	c.filter = NULL;
	c.nodes[2].clock_off += 2 * T_ELECT; /* node 2 campaigns first, from slot 1 */
	run(&c, 300 * MS);
	assert_true(stats_of(&c, 2).installed >= 1);
	assert_true(run_until(&c, 3000 * MS, caught_up_with_leader, 2));
	assert_int_equal(c.nodes[2].sm_hash, c.nodes[1].sm_hash);
	check_clean(&c);
	cluster_free(&c);
	g_t_lease = T_LEASE;
}

/* Every failing allocation while taking a snapshot is ENOMEM and changes nothing; while
 * installing one it is ENOMEM (the shell then discards the core), never a crash or a leak. */
static void test_snapshot_alloc_failures(void **state)
{
	struct cluster c;
	struct paxos *p;
	const uint8_t *blob;
	uint8_t st[16], *copy;
	size_t len;
	uint64_t applied, last;
	unsigned hits = 0;
	int rc;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 38);
	elect(&c, 0);
	commit_some(&c, 0, 0, 20);
	p = c.nodes[0].p;
	applied = c.nodes[0].applied;
	last = paxos_last_slot(p);
	sm_encode(&c.nodes[0], st);
	for (long nth = 0;; nth++) {
		teems_alloc_fault(nth, 0);
		rc = paxos_snapshot_taken(p, applied, st, sizeof(st), &blob, &len);
		teems_alloc_fault(-1, 0);
		if (rc == TEEMS_OK)
			break;
		assert_int_equal(rc, TEEMS_ENOMEM);
		assert_int_equal(paxos_snapshot_index(p), 0);
		assert_int_equal(paxos_last_slot(p), last);
		hits++;
	}
	assert_true(hits >= 1); /* the snapshot's buffer (no entries above it here) */
	assert_int_equal(paxos_snapshot_index(p), applied);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, blob, len);
	hits = 0;
	for (long nth = 0;; nth++) {
		struct paxos_config cfg;
		struct paxos_input in = {.type = PAXOS_IN_MESSAGE};
		struct paxos_ready r;
		struct paxos_snapshot_stats sst;
		struct msg m;
		struct paxos *b;

		make_config(&c, &cfg, 2, 9, false);
		assert_int_equal(paxos_new(&b, &cfg, NULL), TEEMS_OK);
		paxos_ready_init(&r);
		memset(&m, 0, sizeof(m));
		m.type = MSG_SNAPSHOT_CHUNK;
		m.snapshot_chunk.index = applied;
		m.snapshot_chunk.total = len;
		m.snapshot_chunk.last = true;
		m.snapshot_chunk.data.p = copy;
		m.snapshot_chunk.data.len = (uint32_t)len;
		in.message = &m;
		in.now.lo_ns = in.now.hi_ns = 5000 * MS;
		teems_alloc_fault(nth, 0);
		rc = paxos_step(b, &in, &r);
		teems_alloc_fault(-1, 0);
		paxos_snapshot_stats(b, &sst);
		paxos_ready_free(&r);
		paxos_free(b);
		if (rc == TEEMS_OK && sst.installed == 1)
			break;
		assert_int_equal(rc, TEEMS_ENOMEM);
		hits++;
	}
	assert_true(hits >= 3);
	free(copy);
	check_clean(&c);
	cluster_free(&c);
}

/* Feeds one chunk of `blob` to core p as if sent by replica `from`. */
static void feed_chunk(struct paxos *p, struct paxos_ready *r, uint16_t from, uint64_t index,
		       const uint8_t *blob, size_t total, size_t off, size_t len, uint64_t now)
{
	struct paxos_input in = {.type = PAXOS_IN_MESSAGE};
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = MSG_SNAPSHOT_CHUNK;
	m.from.replica = from;
	m.snapshot_chunk.index = index;
	m.snapshot_chunk.total = total;
	m.snapshot_chunk.offset = off;
	m.snapshot_chunk.last = off + len == total;
	m.snapshot_chunk.data.p = blob + off;
	m.snapshot_chunk.data.len = (uint32_t)len;
	in.message = &m;
	in.now.lo_ns = in.now.hi_ns = now;
	in.now.epoch = 1;
	assert_int_equal(paxos_step(p, &in, r), TEEMS_OK);
}

/* The request the receiver sent after a chunk, if any: its offset (UINT64_MAX: none). */
static uint64_t requested(const struct paxos_ready *r)
{
	for (size_t k = 0; k < r->n_sends; k++)
		if (r->sends[k].msg.type == MSG_SNAPSHOT_REQUEST)
			return r->sends[k].msg.snapshot_request.offset;
	return UINT64_MAX;
}

/* A torn transfer (a gap), a mixed one (a chunk from another sender, bytes of another
 * snapshot) are refused; only the whole, matching snapshot is installed. */
static void test_snapshot_torn_mixed_refused(void **state)
{
	struct cluster c;
	struct paxos_config cfg;
	struct paxos *b;
	struct paxos_ready r;
	struct paxos_snapshot_stats st;
	const uint8_t *blob;
	uint8_t *bad, smst[16];
	size_t len, off;
	uint64_t slot, now = 5000 * MS;
	const size_t ch = 64;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 35);
	elect(&c, 0);
	commit_some(&c, 0, 0, 12);
	slot = c.nodes[0].applied;
	sm_encode(&c.nodes[0], smst);
	assert_int_equal(paxos_snapshot_taken(c.nodes[0].p, slot, smst, sizeof(smst), &blob, &len),
			 TEEMS_OK);
	assert_true(len > 4 * ch);
	bad = malloc(len);
	assert_non_null(bad);
	memcpy(bad, blob, len);
	bad[2 * ch + 5] ^= 0x40;
	/* a member of the genesis configuration that has nothing yet */
	make_config(&c, &cfg, 2, 7, false);
	assert_int_equal(paxos_new(&b, &cfg, NULL), TEEMS_OK);
	paxos_ready_init(&r);

	/* torn: the first chunk, then one that skips a piece */
	feed_chunk(b, &r, 0, slot, blob, len, 0, ch, now);
	assert_int_equal(requested(&r), ch);
	feed_chunk(b, &r, 0, slot, blob, len, 2 * ch, ch, now);
	assert_int_equal(requested(&r), ch); /* asks again for what comes next */
	paxos_snapshot_stats(b, &st);
	assert_int_equal(st.chunks_refused, 1);
	/* mixed: the next piece, but from another replica */
	feed_chunk(b, &r, 1, slot, blob, len, ch, ch, now);
	paxos_snapshot_stats(b, &st);
	assert_int_equal(st.chunks_refused, 2);
	/* mixed content: the rest in order, but one piece from another snapshot's bytes */
	for (off = ch; off < len; off += ch) {
		size_t n = len - off < ch ? len - off : ch;

		feed_chunk(b, &r, 0, slot, off == 2 * ch ? bad : blob, len, off, n, now);
	}
	paxos_snapshot_stats(b, &st);
	assert_int_equal(st.transfers_refused, 1);
	assert_int_equal(st.installed, 0);
	assert_null(r.snapshot.blob);
	assert_int_equal(paxos_commit_index(b), 0);
	assert_int_equal(paxos_snapshot_index(b), 0);
	/* the whole snapshot, in order: installed */
	for (off = 0; off < len; off += ch) {
		size_t n = len - off < ch ? len - off : ch;

		feed_chunk(b, &r, 0, slot, blob, len, off, n, now);
	}
	paxos_snapshot_stats(b, &st);
	assert_int_equal(st.installed, 1);
	assert_non_null(r.snapshot.blob);
	assert_true(r.snapshot.install);
	assert_int_equal(r.snapshot.slot, slot);
	assert_int_equal(r.snapshot.state_len, sizeof(smst));
	assert_memory_equal(r.snapshot.state, smst, sizeof(smst));
	assert_int_equal(paxos_commit_index(b), slot);
	assert_int_equal(paxos_snapshot_index(b), slot);
	/* the record that warns a restore without this snapshot */
	assert_int_equal(r.n_persist, 1);
	assert_true(r.persist[0].flags & PAXOS_REC_INSTALLED);
	assert_int_equal(r.persist[0].snapshot_index, slot);
	/* a chunk of an older snapshot afterwards is ignored */
	feed_chunk(b, &r, 0, slot, blob, len, 0, ch, now);
	assert_null(r.snapshot.blob);
	paxos_ready_free(&r);
	paxos_free(b);
	free(bad);
	check_clean(&c);
	cluster_free(&c);
}

/* A WAL whose INSTALLED record names a snapshot the restore did not start from: the commit
 * indexes after it are not trusted (stale entries below it never become committed). */
static void test_snapshot_installed_record(void **state)
{
	struct paxos_config cfg;
	struct paxos *p;
	struct paxos_persist rec;
	struct paxos_entry_ref e = {1, {3, 0, {0, 0}}, false, (const uint8_t *)"stale", 5};
	uint8_t buf[512];
	size_t len;
	struct cluster c;

	(void)state;
	cluster_init(&c, 3, 1, 1, 0, 36);
	make_config(&c, &cfg, 1, 3, true);
	assert_int_equal(paxos_new(&p, &cfg, NULL), TEEMS_OK);
	memset(&rec, 0, sizeof(rec));
	rec.seq = 1;
	rec.promised = (struct msg_ballot){3, 0, {0, 0}};
	rec.count = 1;
	rec.entries = &e;
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_OK);
	memset(&rec, 0, sizeof(rec));
	rec.seq = 2;
	rec.promised = (struct msg_ballot){4, 2, {0, 0}};
	rec.commit_index = 10;
	rec.flags = PAXOS_REC_INSTALLED;
	rec.snapshot_index = 10;
	assert_int_equal(paxos_persist_encode(&rec, buf, sizeof(buf), &len), TEEMS_OK);
	assert_int_equal(paxos_restore(p, buf, len), TEEMS_OK);
	assert_int_equal(paxos_commit_index(p), 0); /* slot 1's "stale" is not committed */
	assert_int_equal(paxos_last_slot(p), 1);
	/* truncated INSTALLED field: refused */
	assert_int_equal(paxos_restore(p, buf, len - 5), TEEMS_ECORRUPT);
	paxos_free(p);
	cluster_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_persist_round_trip),
		cmocka_unit_test(test_digest_is_sha256),
		cmocka_unit_test(test_config_entries),
		cmocka_unit_test(test_restart_lifecycle),
		cmocka_unit_test(test_s2_rollback_before_register),
		cmocka_unit_test(test_s4_restarts_during_recovery),
		cmocka_unit_test(test_s5_fork),
		cmocka_unit_test(test_s5_fork_unsafe_no_incarnation_check),
		cmocka_unit_test(test_rollback_suspicious_never_votes),
		cmocka_unit_test(test_rollback_unsafe_no_recovery),
		cmocka_unit_test(test_rollback_unsafe_cft_quorums),
		cmocka_unit_test(test_late_ack_after_recovery),
		cmocka_unit_test(test_s3_ballot_resumption),
		cmocka_unit_test(test_fence_taint_restarts),
		cmocka_unit_test(test_no_fence_switch),
		cmocka_unit_test(test_read_index),
		cmocka_unit_test(test_lease_reads),
		cmocka_unit_test(test_lease_refuses_new_ballot),
		cmocka_unit_test(test_lease_fenced_grants_nothing),
		cmocka_unit_test(test_lease_fence),
		cmocka_unit_test(test_lease_trust_host_clock),
		cmocka_unit_test(test_optimized_read),
		cmocka_unit_test(test_persist_restart_block),
		cmocka_unit_test(test_s11_total_crash),
		cmocka_unit_test(test_s8_partitioned_proposer),
		cmocka_unit_test(test_s9_two_proposers),
		cmocka_unit_test(test_s10_fork_answers_twice),
		cmocka_unit_test(test_restart_during_restart),
		cmocka_unit_test(test_random_restarts),
		cmocka_unit_test(test_random_restarts_negative),
		cmocka_unit_test(test_alloc_failures_lifecycle),
		cmocka_unit_test(test_snapshot_compaction_bounds),
		cmocka_unit_test(test_snapshot_follower_installs),
		cmocka_unit_test(test_snapshot_restart_restores),
		cmocka_unit_test(test_snapshot_recovery_fetches),
		cmocka_unit_test(test_snapshot_candidate_gap),
		cmocka_unit_test(test_snapshot_alloc_failures),
		cmocka_unit_test(test_snapshot_torn_mixed_refused),
		cmocka_unit_test(test_snapshot_installed_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
