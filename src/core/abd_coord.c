/* RR-ABD coordinator (DESIGN.md section 6; RR paper figures 3 and 4): the replica that
 * receives a client request runs its query round, then the write (or the read's write-back),
 * then STABILIZE. Every counted reply goes through the discard and halt rules (abd_col_add)
 * and the configuration-lease check. */
#include <string.h>

#include "common/alloc.h"
#include "core/abd_internal.h"
#include "teems/err.h"

static const struct msg_timestamp zero_ts;

static bool lease_ok(const struct abd *a)
{
	return a->now.hi_ns < a->lease_until;
}

static bool ts_zero(const struct msg_timestamp *ts)
{
	return msg_timestamp_cmp(ts, &zero_ts) == 0;
}

static int reply_new(struct abd_ready *r, struct abd_reply **out)
{
	struct abd_reply *x;

	if (r->n_replies == r->cap_replies) {
		size_t cap = r->cap_replies ? r->cap_replies * 2 : 8;
		void *p = teems_realloc(r->replies, cap * sizeof(*x));

		if (!p)
			return TEEMS_ENOMEM;
		r->replies = p;
		r->cap_replies = cap;
	}
	x = &r->replies[r->n_replies++];
	memset(x, 0, sizeof(*x));
	*out = x;
	return 0;
}

static int refuse(struct abd_ready *r, const struct abd_input *in, enum abd_refusal why)
{
	struct abd_reply *x;

	if (reply_new(r, &x))
		return TEEMS_ENOMEM;
	x->client_id = in->request.client_id;
	x->request_id = in->request.request_id;
	x->op = in->request.op;
	x->outcome = ABD_OUTCOME_REFUSED;
	x->reason = why;
	return 0;
}

static int abandon(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	struct abd_reply *x;

	if (reply_new(r, &x))
		return TEEMS_ENOMEM;
	x->client_id = op->client_id;
	x->request_id = op->request_id;
	x->op = op->op;
	x->outcome = ABD_OUTCOME_UNKNOWN;
	a->stats.abandoned++;
	abd_op_clear(op);
	return 0;
}

int abd_coord_abandon_all(struct abd *a, struct abd_ready *r)
{
	for (uint32_t i = 0; i < a->cfg.max_ops; i++)
		if (a->ops[i].phase != ABD_PH_FREE && abandon(a, r, &a->ops[i]))
			return TEEMS_ENOMEM;
	return 0;
}

/* Stores the coordinator's own reply (its register) as replica self's. */
static int self_reply(struct abd *a, struct abd_opst *op)
{
	struct abd_reg *g = abd_reg_find(a, op->key, op->key_len, op->hash);
	uint16_t me = a->cfg.self;

	teems_free(op->rval[me]);
	op->rval[me] = NULL;
	op->rlen[me] = 0;
	op->rts[me] = g ? g->ts : zero_ts;
	op->rstable[me] = g ? g->stable : false;
	op->rtomb[me] = g ? g->tombstone : false;
	if (op->op == ABD_GET && g && g->len) {
		op->rval[me] = teems_malloc(g->len);
		if (!op->rval[me])
			return TEEMS_ENOMEM;
		memcpy(op->rval[me], g->value, g->len);
		op->rlen[me] = g->len;
	}
	abd_col_self(a, &op->col);
	return 0;
}

static int send_query(struct abd *a, struct abd_ready *r, struct abd_opst *op, uint16_t to)
{
	struct abd_send *s = abd_send_new(a, r, to, MSG_ABD_QUERY, op->nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.abd_query.mode = op->op == ABD_GET ? MSG_QUERY_VALUE : MSG_QUERY_TIMESTAMP;
	s->msg.abd_query.key.p = abd_scratch_dup(r, op->key, op->key_len);
	s->msg.abd_query.key.len = op->key_len;
	return s->msg.abd_query.key.p ? 0 : TEEMS_ENOMEM;
}

static int send_write(struct abd *a, struct abd_ready *r, struct abd_opst *op, uint16_t to)
{
	struct abd_send *s = abd_send_new(a, r, to, MSG_ABD_WRITE, op->nonce);
	struct msg_abd_write *w;

	if (!s)
		return TEEMS_ENOMEM;
	w = &s->msg.abd_write;
	w->key.p = abd_scratch_dup(r, op->key, op->key_len);
	w->key.len = op->key_len;
	w->ts = op->ts;
	w->tombstone = op->tombstone;
	if (!w->key.p)
		return TEEMS_ENOMEM;
	if (!op->tombstone && op->len) {
		w->value.p = abd_scratch_dup(r, op->value, op->len);
		w->value.len = op->len;
		if (!w->value.p)
			return TEEMS_ENOMEM;
	}
	return 0;
}

/* Sends the current round's request to every replica not yet counted (all, at the start). */
static int send_round(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	uint64_t done = op->phase == ABD_PH_WRITE ? (op->acked & op->col.members) : op->col.members;

	op->resend_hi = a->now.hi_ns;
	for (unsigned i = 0; i < a->n; i++) {
		int rc;

		if (i == a->cfg.self || (done & (1ull << i)))
			continue;
		rc = op->phase == ABD_PH_WRITE ? send_write(a, r, op, (uint16_t)i)
					       : send_query(a, r, op, (uint16_t)i);
		if (rc)
			return rc;
	}
	return 0;
}

static void new_round(struct abd *a, struct abd_opst *op, enum abd_phase phase)
{
	op->phase = phase;
	op->nonce = abd_new_nonce(a);
	op->sent_hi = a->now.hi_ns;
	op->rounds++;
	memset(&op->col, 0, sizeof(op->col));
	op->acked = op->synced = 0;
	op->self_ack_wait = op->self_query_wait = false;
}

static int stabilize(struct abd *a, struct abd_ready *r, struct abd_opst *op,
		     const struct msg_timestamp *ts, const uint8_t *value, uint32_t len)
{
	uint8_t d[MSG_DIGEST_SIZE];
	struct abd_reg *g;
	int rc;

	if (a->cfg.unsafe & ABD_UNSAFE_NO_STABILIZE)
		return 0;
	rc = abd_value_digest(a, value, len, d);
	if (rc)
		return rc;
	g = abd_reg_find(a, op->key, op->key_len, op->hash);
	if (g && msg_timestamp_cmp(&g->ts, ts) == 0)
		g->stable = true;
	for (unsigned i = 0; i < a->n; i++) {
		struct abd_send *s;

		if (i == a->cfg.self)
			continue;
		s = abd_send_new(a, r, (uint16_t)i, MSG_ABD_STABILIZE, 0);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.abd_stabilize.key.p = abd_scratch_dup(r, op->key, op->key_len);
		s->msg.abd_stabilize.key.len = op->key_len;
		s->msg.abd_stabilize.ts = *ts;
		memcpy(s->msg.abd_stabilize.digest, d, MSG_DIGEST_SIZE);
		if (!s->msg.abd_stabilize.key.p)
			return TEEMS_ENOMEM;
	}
	return 0;
}

/* Answers the client and frees the op. value is the op's (GET), or NULL. */
static int finish(struct abd *a, struct abd_ready *r, struct abd_opst *op, bool found,
		  const uint8_t *value, uint32_t len, const struct msg_timestamp *ts)
{
	struct abd_reply *x;

	if (reply_new(r, &x))
		return TEEMS_ENOMEM;
	x->client_id = op->client_id;
	x->request_id = op->request_id;
	x->op = op->op;
	x->outcome = ABD_OUTCOME_OK;
	x->found = found;
	x->ts = *ts;
	x->rounds = op->rounds;
	if (found && len) {
		x->value = abd_scratch_dup(r, value, len);
		if (!x->value)
			return TEEMS_ENOMEM;
		x->len = len;
	}
	if (op->op == ABD_GET) {
		a->stats.reads++;
		a->stats.read_rounds += op->rounds;
	} else {
		a->stats.writes++;
		a->stats.write_rounds += op->rounds;
	}
	abd_op_clear(op);
	return 0;
}

/* The coordinator's own ack: counted once its record is durable (always, rr), at once
 * (none). */
static void self_ack(struct abd *a, struct abd_opst *op)
{
	struct abd_reg *g = abd_reg_find(a, op->key, op->key_len, op->hash);
	uint64_t me = 1ull << a->cfg.self;

	if (!g || msg_timestamp_cmp(&g->ts, &op->ts) < 0)
		return; /* cannot happen: the write stored op->ts or found a higher one */
	if (a->cfg.sync == ABD_SYNC_NONE) {
		op->acked |= me;
	} else if (g->seq <= a->synced_seq) {
		op->acked |= me;
		op->synced |= me;
		op->self_ack_wait = false;
	} else {
		op->self_ack_wait = true;
		op->self_seq = g->seq;
		return;
	}
	abd_col_self(a, &op->col);
}

/* The discard rule again, against the configuration as it is now: a member dropped takes its
 * ack with it (a later ack of its successor is counted afresh). */
static void op_refilter(struct abd *a, struct abd_opst *op)
{
	uint64_t dropped = abd_col_refilter(a, &op->col);

	op->acked &= ~dropped;
	op->synced &= ~dropped;
}

void abd_coord_refilter_all(struct abd *a)
{
	for (uint32_t i = 0; i < a->cfg.max_ops; i++)
		if (a->ops[i].phase != ABD_PH_FREE)
			op_refilter(a, &a->ops[i]);
}

static int write_check(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	unsigned wq = abd_wq(a);
	unsigned acked, synced, need = 0;
	struct msg_timestamp ts = op->ts;
	int rc;

	op_refilter(a, op); /* no quorum is decided on a superseded member */
	acked = (unsigned)__builtin_popcountll(op->acked & op->col.members);
	synced = (unsigned)__builtin_popcountll(op->synced & op->col.members);
	if (a->cfg.sync != ABD_SYNC_NONE && wq > a->cfg.quorum.m_r)
		need = wq - a->cfg.quorum.m_r;
	if (acked < wq || synced < need)
		return 0;
	op->col.members &= op->acked;
	rc = abd_counted(a, r, ABD_COUNTED_WRITE, op->nonce, &op->col);
	if (!rc)
		rc = stabilize(a, r, op, &ts, op->tombstone ? NULL : op->value,
			       op->tombstone ? 0 : op->len);
	if (rc)
		return rc;
	if (op->op == ABD_GET)
		return finish(a, r, op, !op->tombstone, op->value, op->len, &ts);
	return finish(a, r, op, false, NULL, 0, &ts);
}

/* Starts the write round of op->ts (already set), storing it locally first. */
static int write_start(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	bool stored;
	int rc;

	new_round(a, op, ABD_PH_WRITE);
	rc = abd_store(a, r, op->key, op->key_len, op->hash, &op->ts, op->tombstone, op->value,
		       op->len, a->cfg.sync != ABD_SYNC_NONE, &stored);
	if (rc)
		return rc;
	self_ack(a, op);
	rc = send_round(a, r, op);
	if (rc)
		return rc;
	return write_check(a, r, op);
}

static struct msg_timestamp highest(const struct abd *a, const struct abd_opst *op, int *who)
{
	struct msg_timestamp ht = zero_ts;

	*who = -1;
	for (unsigned i = 0; i < a->n; i++)
		if ((op->col.members & (1ull << i)) && msg_timestamp_cmp(&op->rts[i], &ht) > 0) {
			ht = op->rts[i];
			*who = (int)i;
		}
	return ht;
}

static int read_done(struct abd *a, struct abd_ready *r, struct abd_opst *op, int who,
		     const struct msg_timestamp *ht)
{
	bool found = who >= 0 && !op->rtomb[who];
	int rc = abd_counted(a, r, ABD_COUNTED_QUERY, op->nonce, &op->col);

	if (rc)
		return rc;
	return finish(a, r, op, found, found ? op->rval[who] : NULL, found ? op->rlen[who] : 0, ht);
}

/* Read (paper figure 3) after each counted reply. */
static int read_decide(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	unsigned s, rq, wq = abd_wq(a), count;
	uint64_t holders = 0, fresh_holders;
	struct msg_timestamp ht;
	int who, rc;

	op_refilter(a, op); /* no quorum is decided on a superseded member */
	s = abd_col_s(a, &op->col);
	rq = abd_rq(a, s);
	count = (unsigned)__builtin_popcountll(op->col.members);

	/* the coordinator's own reply counts once durable (self_query_wait); the others
	 * may decide without it */
	if (count < rq)
		return 0;
	ht = highest(a, op, &who);
	if (a->cfg.unsafe & ABD_UNSAFE_NO_STABILIZE)
		return read_done(a, r, op, who, &ht);
	for (unsigned i = 0; i < a->n; i++)
		if ((op->col.members & (1ull << i)) && msg_timestamp_cmp(&op->rts[i], &ht) == 0)
			holders |= 1ull << i;
	if (ts_zero(&ht)) {
		a->stats.reads_stable++; /* never written: the initial value is complete */
		return read_done(a, r, op, who, &ht);
	}
	for (unsigned i = 0; i < a->n; i++)
		if ((holders & (1ull << i)) && op->rstable[i]) {
			a->stats.reads_stable++;
			return read_done(a, r, op, who, &ht);
		}
	if (count < (rq > wq ? rq : wq))
		return 0;
	fresh_holders = abd_ignore_suspicion(a) ? holders : holders & ~op->col.suspicious;
	if ((unsigned)__builtin_popcountll(fresh_holders) >= wq) {
		/* W_Q fresh replicas hold ht durably: as good as a write quorum's acks */
		a->stats.reads_unanimous++;
		rc = stabilize(a, r, op, &ht, op->rtomb[who] ? NULL : op->rval[who],
			       op->rtomb[who] ? 0 : op->rlen[who]);
		if (rc)
			return rc;
		return read_done(a, r, op, who, &ht);
	}
	/* write ht back to W_Q, then stabilize */
	rc = abd_counted(a, r, ABD_COUNTED_QUERY, op->nonce, &op->col);
	if (rc)
		return rc;
	a->stats.reads_write_back++;
	teems_free(op->value);
	op->value = op->rval[who];
	op->len = op->rlen[who];
	op->rval[who] = NULL;
	op->tombstone = op->rtomb[who];
	op->ts = ht;
	return write_start(a, r, op);
}

/* Write (paper figure 4), query round. */
static int wquery_decide(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	unsigned s, count;
	struct msg_timestamp ht;
	int who, rc;

	op_refilter(a, op); /* no quorum is decided on a superseded member */
	s = abd_col_s(a, &op->col);
	count = (unsigned)__builtin_popcountll(op->col.members);

	if (count < abd_rq(a, s))
		return 0;
	ht = highest(a, op, &who);
	rc = abd_counted(a, r, ABD_COUNTED_QUERY, op->nonce, &op->col);
	if (rc)
		return rc;
	/* S18: (seq + 1, self, registration, ++op) is unique even for two writes through one
	 * coordinator that read the same highest timestamp, and across incarnations */
	op->ts.seq = ht.seq + 1;
	op->ts.replica = a->cfg.self;
	op->ts.reg = a->reg;
	op->ts.op = ++a->op_ctr;
	return write_start(a, r, op);
}

static int query_decide(struct abd *a, struct abd_ready *r, struct abd_opst *op)
{
	return op->op == ABD_GET ? read_decide(a, r, op) : wquery_decide(a, r, op);
}

int abd_coord_request(struct abd *a, const struct abd_input *in, struct abd_ready *r)
{
	struct abd_opst *op = NULL;
	int rc;

	if (in->request.op > ABD_DEL || in->request.key_len > MSG_MAX_KEY ||
	    (in->request.op == ABD_SET && in->request.value_len > MSG_MAX_VALUE) ||
	    (in->request.key_len && !in->request.key) ||
	    (in->request.op == ABD_SET && in->request.value_len && !in->request.value))
		return refuse(r, in, ABD_REFUSED_INVALID);
	if (a->suspicious || a->rec_active || a->rec_pending)
		return refuse(r, in, ABD_REFUSED_NOT_FRESH);
	if (!lease_ok(a))
		return refuse(r, in, ABD_REFUSED_NO_LEASE);
	for (uint32_t i = 0; i < a->cfg.max_ops; i++)
		if (a->ops[i].phase == ABD_PH_FREE) {
			op = &a->ops[i];
			break;
		}
	if (!op)
		return refuse(r, in, ABD_REFUSED_BUSY);
	op->key = teems_malloc(in->request.key_len ? in->request.key_len : 1);
	if (!op->key)
		return TEEMS_ENOMEM;
	memcpy(op->key, in->request.key, in->request.key_len);
	op->key_len = in->request.key_len;
	if (in->request.op == ABD_SET && in->request.value_len) {
		op->value = teems_malloc(in->request.value_len);
		if (!op->value) {
			abd_op_clear(op);
			return TEEMS_ENOMEM;
		}
		memcpy(op->value, in->request.value, in->request.value_len);
		op->len = in->request.value_len;
	}
	op->tombstone = in->request.op == ABD_DEL;
	op->hash = abd_hash(op->key, op->key_len);
	op->op = in->request.op;
	op->client_id = in->request.client_id;
	op->request_id = in->request.request_id;
	new_round(a, op, ABD_PH_QUERY);
	if (op->op == ABD_GET) {
		struct abd_reg *g = abd_reg_find(a, op->key, op->key_len, op->hash);

		if (a->cfg.sync != ABD_SYNC_NONE && g && g->seq > a->synced_seq) {
			op->self_query_wait = true;
			op->self_seq = g->seq;
		}
	}
	if (!op->self_query_wait) {
		rc = self_reply(a, op);
		if (rc) {
			abd_op_clear(op);
			return rc;
		}
	}
	rc = send_round(a, r, op);
	if (rc)
		return rc;
	return query_decide(a, r, op);
}

static struct abd_opst *op_by_nonce(struct abd *a, uint64_t nonce)
{
	if (!nonce)
		return NULL;
	for (uint32_t i = 0; i < a->cfg.max_ops; i++)
		if (a->ops[i].phase != ABD_PH_FREE && a->ops[i].nonce == nonce)
			return &a->ops[i];
	return NULL;
}

static bool same_key(const struct abd_opst *op, const struct msg_bytes *k)
{
	return k->len == op->key_len && (!k->len || !memcmp(k->p, op->key, k->len));
}

int abd_coord_reply(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	struct abd_opst *op = op_by_nonce(a, m->nonce);
	uint16_t x = m->from.replica;
	uint64_t bit = 1ull << (x & 63);
	struct msg_regidx prev;

	if (!op)
		return 0;
	if (m->type == MSG_ABD_QUERY_REPLY) {
		const struct msg_abd_query_reply *q = &m->abd_query_reply;

		if (op->phase != ABD_PH_QUERY)
			return 0;
		if (!abd_col_add(a, r, &op->col, m, &q->regvec))
			return 0;
		if (!lease_ok(a))
			return abandon(a, r, op);
		op->rts[x] = q->ts;
		op->rstable[x] = q->stable;
		op->rtomb[x] = q->tombstone;
		teems_free(op->rval[x]);
		op->rval[x] = NULL;
		op->rlen[x] = 0;
		if (op->op == ABD_GET && !q->tombstone && q->value.len) {
			op->rval[x] = teems_malloc(q->value.len);
			if (!op->rval[x])
				return TEEMS_ENOMEM;
			memcpy(op->rval[x], q->value.p, q->value.len);
			op->rlen[x] = q->value.len;
		}
		return query_decide(a, r, op);
	}
	/* MSG_ABD_WRITE_ACK */
	if (op->phase != ABD_PH_WRITE || !same_key(op, &m->abd_write_ack.key) ||
	    msg_timestamp_cmp(&m->abd_write_ack.ts, &op->ts) != 0)
		return 0;
	/* a suspicious replica never acknowledges; an ack flagged suspicious is not counted */
	if (m->suspicious && !abd_ignore_suspicion(a))
		return 0;
	prev = op->col.member[x];
	if (!abd_col_add(a, r, &op->col, m, &m->abd_write_ack.regvec))
		return 0;
	if (!lease_ok(a))
		return abandon(a, r, op);
	/* acks of an earlier incarnation of x count for nothing (section 4, step 3) */
	if (msg_regidx_cmp(&prev, &m->from.reg) != 0) {
		op->acked &= ~bit;
		op->synced &= ~bit;
	}
	op->acked |= bit;
	if (m->abd_write_ack.sync == MSG_SYNCED)
		op->synced |= bit;
	return write_check(a, r, op);
}

int abd_coord_timers(struct abd *a, struct abd_ready *r, bool taint)
{
	for (uint32_t i = 0; i < a->cfg.max_ops; i++) {
		struct abd_opst *op = &a->ops[i];
		int rc = 0;

		if (op->phase == ABD_PH_FREE)
			continue;
		if (taint || a->now.hi_ns - op->sent_hi > a->cfg.t_op_ns)
			rc = abandon(a, r, op);
		else if (a->now.hi_ns - op->resend_hi >= a->cfg.resend_ns)
			rc = send_round(a, r, op);
		if (rc)
			return rc;
	}
	return 0;
}

int abd_coord_synced(struct abd *a, struct abd_ready *r)
{
	for (uint32_t i = 0; i < a->cfg.max_ops; i++) {
		struct abd_opst *op = &a->ops[i];
		int rc = 0;

		if (op->phase == ABD_PH_QUERY && op->self_query_wait) {
			struct abd_reg *g = abd_reg_find(a, op->key, op->key_len, op->hash);

			if (g && g->seq > a->synced_seq)
				continue;
			op->self_query_wait = false;
			rc = self_reply(a, op);
			if (!rc)
				rc = query_decide(a, r, op);
		} else if (op->phase == ABD_PH_WRITE && op->self_ack_wait &&
			   op->self_seq <= a->synced_seq) {
			self_ack(a, op);
			rc = write_check(a, r, op);
		}
		if (rc)
			return rc;
	}
	return 0;
}
