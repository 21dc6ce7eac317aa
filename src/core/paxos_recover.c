/* RR-Paxos: recovery of a restarted incarnation (DESIGN.md section 4, steps 5 and 6).
 *
 * Once fenced, the incarnation reads the protocol state with a fresh nonce from R_Q(s)
 * distinct replicas, itself included and counted as suspicious (s grows with every reply
 * flagged suspicious: the quorum is re-evaluated on every reply), under the discard rule.
 * Every replica answers a RECOVERY_REQUEST, suspicious ones too (flagged); halted ones do not.
 *
 * What it keeps:
 *   - promised := max(local, every promised ballot and entry ballot seen);
 *   - per slot above the local commit index: a slot at or below some replier's commit index
 *     takes that replier's entry as committed (a committed prefix holds only chosen values,
 *     so this is the "snapshot covering the highest commit index seen"); any other slot takes
 *     the highest-ballot entry seen, *with its original ballot*, flagged adopted. Adopted
 *     entries are state, not votes: reported in promises, never counted as our accept (an
 *     ACCEPT for that slot and ballot is stored as our own accept, then acknowledged), never
 *     applied before their commit is learned.
 * Entries of replies that are later discarded stay merged: any accepted entry was proposed by
 * a leader that won its ballot, so adopting it can never break agreement; only the size of
 * the quorum of *counted* replies makes the read complete.
 *
 * The result is persisted in one synced record; once it is durable the incarnation is fresh
 * (step 6): the flag clears and it votes. */
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

static void raise_to(struct msg_ballot *acc, const struct msg_ballot *b)
{
	if (msg_ballot_cmp(b, acc) > 0)
		*acc = *b;
}

static int send_request(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t from)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_RECOVERY_REQUEST, p->rec_nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.recovery_request.from_slot = from;
	return TEEMS_OK;
}

int paxos_recover_start(struct paxos *p, struct paxos_ready *r)
{
	p->lc = PAXOS_LC_RECOVERING;
	p->rec_finishing = false;
	paxos_cand_clear(p);
	p->rec_nonce = paxos_new_nonce(p);
	p->rec_sent_hi = p->now.hi_ns;
	p->rec_epoch = p->now.epoch;
	p->rec_from = p->commit_index + 1;
	p->cand_from = p->rec_from;
	p->rec_promised = p->promised;
	paxos_col_reset(&p->rec_col);
	paxos_col_self(p, &p->rec_col);
	p->rec_suspicious = paxos_suspicion_ignored(p) ? 0 : bit(p->cfg.self);
	p->rec_snap_need = 0;
	p->rec_wait_snap = false;
	for (uint16_t i = 0; i < QUORUM_MAX_REPLICAS; i++)
		p->rec_ask[i] = p->rec_from;
	for (uint64_t s = p->rec_from; s <= p->last_slot; s++) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->accepted)
			TRY(paxos_cand_merge(p, s, &sl->ballot, sl->value, sl->len, false));
	}
	for (uint16_t i = 0; i < p->n; i++)
		if (i != p->cfg.self)
			TRY(send_request(p, r, i, p->rec_from));
	return TEEMS_OK;
}

int paxos_on_recovery_request(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	uint64_t from = m->recovery_request.from_slot ? m->recovery_request.from_slot : 1;
	struct paxos_send *s;
	struct msg_entry *items;
	uint32_t count;
	bool more;

	/* Same paging as a PROMISE. */
	TRY(paxos_page_entries(p, r, from, &items, &count, &more));
	s = paxos_send_new(p, r, m->from.replica, MSG_RECOVERY_REPLY, m->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.recovery_reply.promised = p->promised;
	s->msg.recovery_reply.commit_index = p->commit_index;
	s->msg.recovery_reply.snapshot_index = p->log_base;
	s->msg.recovery_reply.more = more;
	s->msg.recovery_reply.entries.count = count;
	s->msg.recovery_reply.entries.items = items;
	return paxos_regvec(p, r, &s->msg.recovery_reply.regvec);
}

static unsigned recovery_quorum(const struct paxos *p)
{
	if (paxos_suspicion_ignored(p))
		return p->n / 2 + 1;
	return quorum_read(&p->cfg.quorum, popcount64(p->rec_suspicious & p->rec_col.members));
}

static int finish(struct paxos *p, struct paxos_ready *r)
{
	struct paxos_held h;
	uint64_t seq;
	uint64_t nonce = p->rec_nonce;

	if (p->rec_snap_need > p->commit_index) {
		/* A replier compacted slots above our commit index: they are committed, and we
		 * must hold them ("fetch a snapshot covering the highest commit index seen",
		 * section 4 step 5) before this read can complete. The read itself is done. */
		if (!p->rec_wait_snap) {
			p->rec_wait_snap = true;
			p->rec_wait_hi = p->now.hi_ns;
		}
		return paxos_snapshot_want(p, r, p->rec_snap_peer, p->rec_snap_need);
	}
	p->rec_wait_snap = false;
	p->rec_nonce = 0; /* nothing more is counted */
	raise_to(&p->promised, &p->rec_promised);
	if (p->promised.round > p->max_round_seen)
		p->max_round_seen = p->promised.round;
	for (uint64_t s = p->rec_from; s <= p->cand_last; s++) {
		const struct paxos_slot *c = &p->cand_log[s - p->rec_from];
		struct paxos_slot *local = paxos_slot_get(p, s);

		if (!c->accepted || s <= p->commit_index)
			continue; /* nothing, or in the snapshot we installed meanwhile */
		if (c->committed || !local || !local->accepted ||
		    msg_ballot_cmp(&c->ballot, &local->ballot) > 0 ||
		    (msg_ballot_cmp(&c->ballot, &local->ballot) == 0 && !local->adopted)) {
			TRY(paxos_slot_set(p, r, s, &c->ballot, c->value, c->len));
			local = paxos_slot_get(p, s);
		}
		local->adopted = true;
		local->committed = false;
		if (c->committed)
			local->committed = true; /* learned below, contiguously */
	}
	/* Every entry we hold above the commit index is state now, not a vote of ours. */
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++)
		if (PSLOT(p, s)->accepted)
			PSLOT(p, s)->adopted = true;
	while (p->commit_index < p->last_slot && PSLOT(p, p->commit_index + 1)->committed) {
		PSLOT(p, p->commit_index + 1)->adopted = false;
		p->commit_index++;
	}
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++)
		PSLOT(p, s)->committed = false;
	TRY(paxos_counted_add(p, r, PAXOS_COUNTED_RECOVERY, nonce, &p->rec_col));
	paxos_cand_clear(p);
	TRY(paxos_persist(p, r, p->rec_from,
			  p->last_slot >= p->rec_from ? p->last_slot - p->rec_from + 1 : 0, true,
			  &seq));
	p->promised_seq = seq;
	p->rec_finishing = true;
	memset(&h, 0, sizeof(h));
	h.kind = HELD_RECOVERED;
	h.seq = seq;
	return paxos_hold(p, &h);
}

int paxos_release_recovered(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	uint64_t seq;

	(void)h;
	if (p->lc != PAXOS_LC_RECOVERING || !p->rec_finishing)
		return TEEMS_OK;
	p->rec_finishing = false;
	p->lc = PAXOS_LC_FRESH;
	p->suspicious = false; /* section 4, step 6 */
	paxos_reset_election_timer(p);
	TRY(paxos_persist(p, r, 0, 0, false, &seq));
	r->persist[r->n_persist - 1].flags |= PAXOS_REC_RECOVERED;
	return TEEMS_OK;
}

int paxos_on_recovery_reply(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_recovery_reply *rr = &m->recovery_reply;
	struct msg_iter it;
	struct msg_entry e;
	uint64_t last = 0;

	if (p->lc != PAXOS_LC_RECOVERING || p->rec_finishing || !p->rec_nonce ||
	    m->nonce != p->rec_nonce || p->rec_wait_snap)
		return TEEMS_OK;
	if (p->now.hi_ns - p->rec_sent_hi > p->cfg.t_op_ns)
		return TEEMS_OK; /* T_op passed: the tick starts a new collection */
	paxos_col_seen(p, &p->rec_col, &rr->regvec);
	raise_to(&p->rec_promised, &rr->promised);
	if (rr->snapshot_index >= p->rec_ask[m->from.replica] &&
	    rr->snapshot_index > p->rec_snap_need && m->from.replica < QUORUM_MAX_REPLICAS) {
		/* Slots from where we asked up to its snapshot are committed and compacted
		 * there: we need that snapshot before the read completes (finish). */
		p->rec_snap_need = rr->snapshot_index;
		p->rec_snap_peer = m->from.replica;
	}
	msg_entries_begin(&it, &rr->entries);
	while (msg_entries_next(&it, &e)) {
		last = e.slot;
		raise_to(&p->rec_promised, &e.ballot);
		TRY(paxos_cand_merge(p, e.slot, &e.ballot, e.value.p, e.value.len,
				     e.slot <= rr->commit_index && !e.adopted));
	}
	if (rr->more) {
		p->rec_ask[m->from.replica] = last + 1;
		return send_request(p, r, m->from.replica, last + 1);
	}
	if (p->rs_fence && m->suspicious && m->from.reg.epoch < p->epoch &&
	    m->from.replica < p->n) {
		/* After an epoch restart (section 6) every member recovers from members only, all
		 * suspicious. A member that crashed meanwhile is back as a new, unregistered
		 * incarnation: its durable state is the member's (a rollback counted in s), so its
		 * reply counts for the member's replica while no newer registration of it exists.
		 */
		struct msg_regidx base = {p->epoch, 0};
		struct msg_regidx known = paxos_known_reg(p, m->from.replica);

		if (paxos_regidx_cmp(&known, &base) == 0) {
			struct msg as_member = *m;

			as_member.from.reg = base;
			m = &as_member;
			if (paxos_col_member(p, &p->rec_col, m))
				p->rec_suspicious |= bit(m->from.replica);
			paxos_col_prune(p, &p->rec_col);
			if (popcount64(p->rec_col.members) >= recovery_quorum(p))
				return finish(p, r);
			return TEEMS_OK;
		}
	}
	if (paxos_col_member(p, &p->rec_col, m)) {
		if (m->suspicious && !paxos_suspicion_ignored(p))
			p->rec_suspicious |= bit(m->from.replica);
		else
			p->rec_suspicious &= ~bit(m->from.replica);
	}
	paxos_col_prune(p, &p->rec_col);
	if (popcount64(p->rec_col.members) >= recovery_quorum(p))
		return finish(p, r);
	return TEEMS_OK;
}

int paxos_recover_snapshot_installed(struct paxos *p, struct paxos_ready *r)
{
	if (p->lc != PAXOS_LC_RECOVERING || !p->rec_wait_snap || p->rec_finishing)
		return TEEMS_OK;
	if (p->rec_snap_need > p->commit_index)
		return TEEMS_OK; /* an older one than the read showed: keep waiting */
	/* The snapshot's configuration may register a replier anew: the discard rule applies to
	 * what was counted (section 4, step 3); short of R_Q(s) now, read again. */
	paxos_col_prune(p, &p->rec_col);
	if (popcount64(p->rec_col.members) < recovery_quorum(p))
		return paxos_recover_start(p, r);
	return finish(p, r);
}
