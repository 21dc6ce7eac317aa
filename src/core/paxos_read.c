/* RR-Paxos: read-index reads at the leader (DESIGN.md section 5).
 *
 * A read (PAXOS_IN_READ) arrives at a leader that has committed the no-op of its own ballot,
 * so its commit index covers every slot committed under earlier ballots; that commit index is
 * the read's index. The leader then confirms that it still leads: it sends READ_INDEX(ballot)
 * with a nonce chosen after the read arrived, and counts READ_INDEX_ACKs from replicas whose
 * promised ballot is exactly its own, until W_Q distinct replicas (itself included) are counted
 * under the discard rule, within T_op. A later leader needs W_Q promises of a higher ballot,
 * which meet the acknowledging quorum in a replica that acknowledged before promising higher;
 * so nothing it commits was committed before the read arrived, and the state at the read index
 * (or any later applied state of this leader) answers the read linearizably. Suspicious
 * replicas never acknowledge. Reads arriving while a confirmation is in flight wait for the
 * next one (one collection at a time, any number of reads per collection).
 *
 * A leader that holds its leader lease (section 8, paxos_lease.c) needs no confirmation: the
 * read is answered in the step it arrives (note.lease set). No other ballot can be elected,
 * let alone commit, before that lease has expired in real time. */
#include <string.h>

#include "common/alloc.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

static unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

static int push(struct paxos_read_req **arr, size_t *n, size_t *cap,
		const struct paxos_read_req *req)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		void *a = teems_realloc(*arr, ncap * sizeof(**arr));

		if (!a)
			return TEEMS_ENOMEM;
		*arr = a;
		*cap = ncap;
	}
	(*arr)[(*n)++] = *req;
	return TEEMS_OK;
}

int paxos_on_read(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in)
{
	struct paxos_read_req req;

	if (!paxos_can_serve_reads(p))
		return paxos_note(r, in->read.client_id, in->read.request_id,
				  PAXOS_OUTCOME_NOT_LEADER, 0, p->leader);
	if (paxos_lease_held(p)) {
		/* Section 8: no later ballot can have committed anything while we hold the lease,
		 * and our commit index covers every earlier ballot's slots (our no-op). */
		TRY(paxos_note(r, in->read.client_id, in->read.request_id, PAXOS_OUTCOME_READ,
			       p->commit_index, p->leader));
		r->notes[r->n_notes - 1].lease = true;
		p->ls.served++;
		return TEEMS_OK;
	}
	if (p->n_ri_wait >= p->cfg.max_queue)
		return paxos_note(r, in->read.client_id, in->read.request_id, PAXOS_OUTCOME_BUSY, 0,
				  p->leader);
	req.client_id = in->read.client_id;
	req.request_id = in->read.request_id;
	req.index = p->commit_index;
	return push(&p->ri_wait, &p->n_ri_wait, &p->cap_ri_wait, &req);
}

/* Answers every read of the open collection (and, when `all`, the waiting ones) with outcome
 * and closes the collection. */
int paxos_read_abandon(struct paxos *p, struct paxos_ready *r, enum paxos_outcome outcome, bool all)
{
	for (size_t i = 0; i < p->n_ri_fly; i++)
		TRY(paxos_note(r, p->ri_fly[i].client_id, p->ri_fly[i].request_id, outcome, 0,
			       p->leader));
	p->n_ri_fly = 0;
	p->ri_nonce = 0;
	if (!all)
		return TEEMS_OK;
	for (size_t i = 0; i < p->n_ri_wait; i++)
		TRY(paxos_note(r, p->ri_wait[i].client_id, p->ri_wait[i].request_id, outcome, 0,
			       p->leader));
	p->n_ri_wait = 0;
	return TEEMS_OK;
}

int paxos_read_work(struct paxos *p, struct paxos_ready *r)
{
	if (p->role != PAXOS_LEADER) {
		if (p->n_ri_fly || p->n_ri_wait)
			TRY(paxos_read_abandon(p, r, PAXOS_OUTCOME_NOT_LEADER, true));
		return TEEMS_OK;
	}
	if (p->ri_nonce) {
		if (p->now.hi_ns - p->ri_sent_hi > p->cfg.t_op_ns)
			TRY(paxos_read_abandon(p, r, PAXOS_OUTCOME_BUSY, false)); /* retry */
		else {
			paxos_col_prune(p, &p->ri_col);
			if (popcount64(p->ri_col.members) < paxos_vote_quorum(p))
				return TEEMS_OK;
			for (size_t i = 0; i < p->n_ri_fly; i++) {
				/* applied >= index: the index was a commit index of ours */
				TRY(paxos_note(r, p->ri_fly[i].client_id, p->ri_fly[i].request_id,
					       PAXOS_OUTCOME_READ, p->ri_fly[i].index, p->leader));
			}
			p->n_ri_fly = 0;
			p->ri_nonce = 0;
		}
	}
	if (!p->n_ri_wait)
		return TEEMS_OK;
	/* Open the next collection for every read waiting (they all arrived before it). */
	{
		struct paxos_read_req *t = p->ri_fly;
		size_t cap = p->cap_ri_fly;

		p->ri_fly = p->ri_wait;
		p->cap_ri_fly = p->cap_ri_wait;
		p->n_ri_fly = p->n_ri_wait;
		p->ri_wait = t;
		p->cap_ri_wait = cap;
		p->n_ri_wait = 0;
	}
	p->ri_nonce = paxos_new_nonce(p);
	p->ri_sent_hi = p->now.hi_ns;
	paxos_col_reset(&p->ri_col);
	paxos_col_self(p, &p->ri_col);
	for (uint16_t i = 0; i < p->n; i++) {
		struct paxos_send *s;

		if (i == p->cfg.self)
			continue;
		s = paxos_send_new(p, r, i, MSG_READ_INDEX, p->ri_nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.read_index.ballot = p->promised;
	}
	if (popcount64(p->ri_col.members) >= paxos_vote_quorum(p))
		return paxos_read_work(p, r); /* W_Q = 1 */
	return TEEMS_OK;
}

int paxos_on_read_index(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_read_index *ri = &m->read_index;
	struct paxos_send *s;
	int cmp;

	if (p->suspicious && !paxos_suspicion_ignored(p))
		return paxos_nack(p, r, m, MSG_NACK_SUSPICIOUS);
	if (ri->ballot.replica != m->from.replica)
		return TEEMS_OK;
	cmp = msg_ballot_cmp(&ri->ballot, &p->promised);
	if (cmp < 0)
		return paxos_nack(p, r, m, MSG_NACK_BALLOT);
	if (cmp > 0)
		return TEEMS_OK; /* not promised yet: its ACCEPTs will raise us first */
	s = paxos_send_new(p, r, m->from.replica, MSG_READ_INDEX_ACK, m->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.read_index_ack.ballot = ri->ballot;
	return paxos_regvec(p, r, &s->msg.read_index_ack.regvec);
}

int paxos_on_read_index_ack(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_read_index_ack *a = &m->read_index_ack;

	(void)r;
	if (p->role != PAXOS_LEADER || !p->ri_nonce || m->nonce != p->ri_nonce ||
	    msg_ballot_cmp(&a->ballot, &p->promised) != 0 ||
	    p->now.hi_ns - p->ri_sent_hi > p->cfg.t_op_ns ||
	    (m->suspicious && !paxos_suspicion_ignored(p)))
		return TEEMS_OK;
	paxos_col_seen(p, &p->ri_col, &a->regvec);
	paxos_col_member(p, &p->ri_col, m);
	return TEEMS_OK;
}
