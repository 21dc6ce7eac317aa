/* RR-Paxos: the paper's optimized read (DESIGN.md section 5; RR paper, RR-Paxos reads).
 *
 * Any replica may coordinate. It sends READ(command) with a fresh nonce to every peer and runs
 * the command itself; every replica runs it on its state machine (ready.execs, answered by
 * PAXOS_IN_EXEC_RESULT) and replies READ_REPLY(last_executed, highest_accepted, result,
 * regvec). The coordinator counts replies from distinct replicas under the discard rule,
 * itself included, flagged suspicious ones adding to s, within T_op, until R_Q(s) are counted;
 * it answers with the common result only if every counted reply has the same last_executed
 * and the same result and none has accepted (or adopted) a slot above its last executed one.
 * Otherwise the read is aborted (the client falls back to the read index).
 *
 * Why: a write acknowledged before the read started was committed in some slot k with W_Q
 * accepts, at least W_Q - M_R of them synced; the R_Q(s) repliers meet that accept quorum in a
 * replica that was not rolled back. That replica either has not executed k, and then holds an
 * accepted slot above its last executed one (abort), or its state includes the write, and
 * unanimity makes the answer that state. The same argument against the commit of the slot a
 * previous read returned keeps reads monotonic when read quorums do not intersect (F < M_R).
 * The state returned is an executed, hence committed, prefix. */
#include <openssl/evp.h>
#include <string.h>

#include "common/alloc.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

static uint64_t bit(uint16_t replica)
{
	return 1ull << replica;
}

static unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

static int exec_add(struct paxos_ready *r, uint16_t to, uint64_t nonce, const uint8_t *command,
		    uint32_t len)
{
	struct paxos_exec *e;
	uint8_t *copy = NULL;

	if (r->n_execs == r->cap_execs) {
		size_t ncap = r->cap_execs ? r->cap_execs * 2 : 8;
		void *n = teems_realloc(r->execs, ncap * sizeof(*r->execs));

		if (!n)
			return TEEMS_ENOMEM;
		r->execs = n;
		r->cap_execs = ncap;
	}
	if (len) {
		copy = paxos_scratch(r, len);
		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, command, len);
	}
	e = &r->execs[r->n_execs++];
	e->to = to;
	e->nonce = nonce;
	e->command = copy;
	e->len = len;
	return TEEMS_OK;
}

static int answer(struct paxos_ready *r, const struct paxos_oread *o,
		  enum paxos_opt_read_status status)
{
	struct paxos_opt_read_answer *a;

	if (r->n_opt_reads == r->cap_opt_reads) {
		size_t ncap = r->cap_opt_reads ? r->cap_opt_reads * 2 : 8;
		void *n = teems_realloc(r->opt_reads, ncap * sizeof(*r->opt_reads));

		if (!n)
			return TEEMS_ENOMEM;
		r->opt_reads = n;
		r->cap_opt_reads = ncap;
	}
	a = &r->opt_reads[r->n_opt_reads];
	memset(a, 0, sizeof(*a));
	a->client_id = o->client_id;
	a->request_id = o->request_id;
	a->status = status;
	if (status == PAXOS_OPT_READ_OK) {
		a->slot = o->last_executed;
		if (o->result_len) {
			uint8_t *copy = paxos_scratch(r, o->result_len);

			if (!copy)
				return TEEMS_ENOMEM;
			memcpy(copy, o->result, o->result_len);
			a->result = copy;
			a->result_len = o->result_len;
		}
	}
	r->n_opt_reads++;
	return TEEMS_OK;
}

static struct paxos_oread *oread_find(struct paxos *p, uint64_t nonce)
{
	for (size_t i = 0; i < p->n_oreads; i++)
		if (p->oreads[i].nonce == nonce)
			return &p->oreads[i];
	return NULL;
}

static void oread_drop(struct paxos *p, struct paxos_oread *o)
{
	size_t i = (size_t)(o - p->oreads);

	teems_free(o->result);
	p->oreads[i] = p->oreads[--p->n_oreads];
}

int paxos_on_opt_read(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in)
{
	struct paxos_oread *o;

	if (in->opt_read.len > MSG_MAX_BLOB || (in->opt_read.len && !in->opt_read.command))
		return TEEMS_EINVAL;
	if (p->n_oreads >= p->cfg.max_queue) {
		struct paxos_oread busy;

		memset(&busy, 0, sizeof(busy));
		busy.client_id = in->opt_read.client_id;
		busy.request_id = in->opt_read.request_id;
		return answer(r, &busy, PAXOS_OPT_READ_BUSY);
	}
	if (p->n_oreads == p->cap_oreads) {
		size_t ncap = p->cap_oreads ? p->cap_oreads * 2 : 8;
		void *n = teems_realloc(p->oreads, ncap * sizeof(*p->oreads));

		if (!n)
			return TEEMS_ENOMEM;
		p->oreads = n;
		p->cap_oreads = ncap;
	}
	o = &p->oreads[p->n_oreads++];
	memset(o, 0, sizeof(*o));
	o->client_id = in->opt_read.client_id;
	o->request_id = in->opt_read.request_id;
	o->nonce = paxos_new_nonce(p);
	o->sent_hi = p->now.hi_ns;
	paxos_col_reset(&o->col);
	for (uint16_t i = 0; i < p->n; i++) {
		struct paxos_send *s;

		if (i == p->cfg.self)
			continue;
		s = paxos_send_new(p, r, i, MSG_READ, o->nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.read.command.p = in->opt_read.command;
		s->msg.read.command.len = in->opt_read.len;
	}
	/* The message lists above borrow the input: copy the command into the ready. */
	if (in->opt_read.len) {
		uint8_t *copy = paxos_scratch(r, in->opt_read.len);

		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, in->opt_read.command, in->opt_read.len);
		for (size_t k = 0; k < r->n_sends; k++)
			if (r->sends[k].msg.type == MSG_READ && r->sends[k].msg.nonce == o->nonce)
				r->sends[k].msg.read.command.p = copy;
	}
	return exec_add(r, p->cfg.self, o->nonce, in->opt_read.command, in->opt_read.len);
}

int paxos_on_read_msg(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	return exec_add(r, m->from.replica, m->nonce, m->read.command.p, m->read.command.len);
}

static uint64_t highest_accepted(const struct paxos *p)
{
	for (uint64_t s = p->last_slot; s > p->log_base; s--)
		if (PSLOT(p, s)->accepted)
			return s;
	return 0;
}

static int result_digest(struct paxos *p, uint64_t last_executed, const uint8_t *res, uint32_t len,
			 uint8_t out[MSG_DIGEST_SIZE])
{
	struct msg_bytes v = {res, len};

	return paxos_digest(p, last_executed, &v, 1, out);
}

/* Counts one reply (member x) into o; decides when it can. */
static int oread_count(struct paxos *p, struct paxos_ready *r, struct paxos_oread *o, uint16_t x,
		       bool suspicious, uint64_t last_executed, uint64_t high, const uint8_t *res,
		       uint32_t len)
{
	uint8_t d[MSG_DIGEST_SIZE];
	enum paxos_opt_read_status status;

	TRY(result_digest(p, last_executed, res, len, d));
	if (high > last_executed)
		o->aborted = true; /* accepted above executed: a write may be in flight */
	if (!o->have_result) {
		o->have_result = true;
		memcpy(o->digest, d, sizeof(d));
		o->last_executed = last_executed;
		if (len) {
			o->result = teems_malloc(len);
			if (!o->result)
				return TEEMS_ENOMEM;
			memcpy(o->result, res, len);
		}
		o->result_len = len;
	} else if (memcmp(o->digest, d, sizeof(d)) != 0) {
		o->aborted = true; /* not unanimous */
	}
	if (suspicious && !paxos_suspicion_ignored(p))
		o->suspicious |= bit(x);
	else
		o->suspicious &= ~bit(x);
	paxos_col_prune(p, &o->col);
	o->suspicious &= o->col.members;
	if (o->aborted) {
		status = PAXOS_OPT_READ_ABORTED;
	} else {
		unsigned need = paxos_suspicion_ignored(p)
					? p->n / 2 + 1
					: quorum_read(&p->cfg.quorum, popcount64(o->suspicious));

		if (popcount64(o->col.members) < need)
			return TEEMS_OK;
		status = PAXOS_OPT_READ_OK;
	}
	TRY(answer(r, o, status));
	oread_drop(p, o);
	return TEEMS_OK;
}

int paxos_on_exec_result(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in)
{
	const uint16_t to = in->exec_result.to;
	uint64_t high = highest_accepted(p);
	struct paxos_send *s;

	if (in->exec_result.len > MSG_MAX_BLOB || (in->exec_result.len && !in->exec_result.result))
		return TEEMS_EINVAL;
	if (to == p->cfg.self) {
		struct paxos_oread *o = oread_find(p, in->exec_result.nonce);

		if (!o)
			return TEEMS_OK;
		o->col.members |= bit(p->cfg.self);
		o->col.member[p->cfg.self] = p->reg;
		return oread_count(p, r, o, p->cfg.self, p->suspicious, in->exec_result.applied,
				   high, in->exec_result.result, in->exec_result.len);
	}
	if (to >= p->n)
		return TEEMS_EINVAL;
	s = paxos_send_new(p, r, to, MSG_READ_REPLY, in->exec_result.nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.read_reply.last_executed = in->exec_result.applied;
	s->msg.read_reply.highest_accepted = high;
	if (in->exec_result.len) {
		uint8_t *copy = paxos_scratch(r, in->exec_result.len);

		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, in->exec_result.result, in->exec_result.len);
		s->msg.read_reply.result.p = copy;
	}
	s->msg.read_reply.result.len = in->exec_result.len;
	return paxos_regvec(p, r, &s->msg.read_reply.regvec);
}

int paxos_on_read_reply(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_read_reply *rr = &m->read_reply;
	struct paxos_oread *o = oread_find(p, m->nonce);

	if (!o || p->now.hi_ns - o->sent_hi > p->cfg.t_op_ns)
		return TEEMS_OK;
	paxos_col_seen(p, &o->col, &rr->regvec);
	if (!paxos_col_member(p, &o->col, m))
		return TEEMS_OK;
	return oread_count(p, r, o, m->from.replica, m->suspicious, rr->last_executed,
			   rr->highest_accepted, rr->result.p, rr->result.len);
}

/* Reads past T_op (or all of them on a taint) are answered BUSY: nothing is known. */
int paxos_oread_expire(struct paxos *p, struct paxos_ready *r, bool all)
{
	for (size_t i = 0; i < p->n_oreads;) {
		struct paxos_oread *o = &p->oreads[i];

		if (all || p->now.hi_ns - o->sent_hi > p->cfg.t_op_ns) {
			TRY(answer(r, o, PAXOS_OPT_READ_BUSY));
			oread_drop(p, o);
			continue;
		}
		i++;
	}
	return TEEMS_OK;
}
