/* RR-Paxos phase 2, commit and apply (DESIGN.md sections 5 and 7).
 *
 * The leader batches client commands into slots (at most max_slot_bytes each), keeps up to
 * max_inflight uncommitted slots in flight, persists them and sends ACCEPT. An acceptor accepts
 * when the ballot is at least its promised one, persists, and acknowledges (slot range, ballot,
 * digest of the values, volatile or synced). A slot commits once W_Q matching accepts from
 * distinct, non-suspicious replicas were counted within T_op of the round's first ACCEPT and at
 * least W_Q - M_R of them are synced (sync=none: volatile-only commits are allowed). The commit
 * index travels on later ACCEPTs and on COMMIT messages (the heartbeat); a learner marks a slot
 * committed only if it holds it at the ballot that announced the commit, so a follower that
 * missed slots reports its accepted prefix in HEARTBEAT_ACK and the leader resends them. */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

#define BATCH_HEADER 20u /* client_id, request_id, len */

static unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

static uint64_t bit(uint16_t replica)
{
	return 1ull << replica;
}

int paxos_on_propose(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in)
{
	struct paxos_queued *q;

	if (in->propose.len > p->cfg.max_slot_bytes - BATCH_HEADER ||
	    (in->propose.len && !in->propose.command))
		return TEEMS_EINVAL;
	if (p->role != PAXOS_LEADER)
		return paxos_note(r, in->propose.client_id, in->propose.request_id,
				  PAXOS_OUTCOME_NOT_LEADER, 0, p->leader);
	if (p->n_queue >= p->cfg.max_queue)
		return paxos_note(r, in->propose.client_id, in->propose.request_id,
				  PAXOS_OUTCOME_BUSY, 0, p->leader);
	if (p->n_queue == p->cap_queue) {
		size_t ncap = p->cap_queue ? p->cap_queue * 2 : 64;
		void *n = teems_realloc(p->queue, ncap * sizeof(*p->queue));

		if (!n)
			return TEEMS_ENOMEM;
		p->queue = n;
		p->cap_queue = ncap;
	}
	q = &p->queue[p->n_queue];
	q->command = NULL;
	if (in->propose.len) {
		q->command = teems_malloc(in->propose.len);
		if (!q->command)
			return TEEMS_ENOMEM;
		memcpy(q->command, in->propose.command, in->propose.len);
	}
	q->client_id = in->propose.client_id;
	q->request_id = in->propose.request_id;
	q->len = in->propose.len;
	p->n_queue++;
	return TEEMS_OK;
}

/* ---- leader: sending rounds ---- */

/* Rounds are kept in the order they were opened, which is mostly slot order, so a lookup
 * starts where the previous one ended. */
static struct paxos_round *round_find(struct paxos *p, uint64_t nonce)
{
	size_t n = p->n_rounds;

	for (size_t k = 0; k < n; k++) {
		size_t i = (p->round_hint + k) % n;

		if (p->rounds[i].nonce == nonce) {
			p->round_hint = i;
			return &p->rounds[i];
		}
	}
	return NULL;
}

static int round_open(struct paxos *p, uint64_t nonce)
{
	struct paxos_round *rd;

	if (p->n_rounds == p->cap_rounds) {
		size_t ncap = p->cap_rounds ? p->cap_rounds * 2 : 16;
		void *n = teems_realloc(p->rounds, ncap * sizeof(*p->rounds));

		if (!n)
			return TEEMS_ENOMEM;
		p->rounds = n;
		p->cap_rounds = ncap;
	}
	rd = &p->rounds[p->n_rounds++];
	rd->nonce = nonce;
	rd->sent_hi = p->now.hi_ns;
	paxos_col_reset(&rd->col);
	paxos_col_self(p, &rd->col);
	return TEEMS_OK;
}

/* Re-evaluates every open round under the discard rule (our log may have gained a REGISTER,
 * a reply may have shown one) and forgets rounds past T_op, which count nothing more. */
static void rounds_prune(struct paxos *p)
{
	struct msg_regidx known[QUORUM_MAX_REPLICAS];
	size_t keep = 0;
	bool checks = !(p->cfg.unsafe & PAXOS_UNSAFE_NO_INCARNATION_CHECK);

	if (!p->n_rounds)
		return;
	if (checks)
		paxos_known_regs(p, known);
	for (size_t i = 0; i < p->n_rounds; i++) {
		struct paxos_round *rd = &p->rounds[i];

		if (p->now.hi_ns - rd->sent_hi > p->cfg.t_op_ns)
			continue;
		if (checks)
			paxos_col_prune_known(p, &rd->col, known);
		if (keep != i)
			p->rounds[keep] = *rd;
		keep++;
	}
	p->n_rounds = keep;
}

/* Drops the acks of replicas no longer counted in their slot's round, and the rounds that
 * no open slot refers to any more. */
static void rounds_mask(struct paxos *p)
{
	struct paxos_round *rd = NULL;
	size_t keep = 0;

	for (size_t i = 0; i < p->n_rounds; i++)
		p->rounds[i].live = false;
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++) {
		struct paxos_slot *sl = PSLOT(p, s);

		if (!sl->open || sl->chosen)
			continue;
		if (!rd || rd->nonce != sl->nonce)
			rd = round_find(p, sl->nonce);
		if (!rd)
			continue; /* past T_op: counts nothing more, about to be retried */
		rd->live = true;
		sl->acked &= rd->col.members;
		sl->synced &= rd->col.members;
	}
	for (size_t i = 0; i < p->n_rounds; i++) {
		if (!p->rounds[i].live)
			continue;
		if (keep != i)
			p->rounds[keep] = p->rounds[i];
		keep++;
	}
	p->n_rounds = keep;
}

/* Sends slots first..last at our ballot. to < 0: to every peer as a new round (fresh nonce per
 * ACCEPT, T_op clock started, counts reset); to >= 0: a resend to one lagging peer outside any
 * round (nonce 0, so its acks are not counted; the slots are committed already). */
int paxos_send_accepts(struct paxos *p, struct paxos_ready *r, uint64_t first, uint64_t last,
		       int to)
{
	while (first <= last) {
		uint64_t n = last - first + 1;
		uint64_t nonce = 0;
		struct msg_bytes *values;

		if (n > p->cfg.max_accept_slots)
			n = p->cfg.max_accept_slots;
		values = paxos_scratch(r, n * sizeof(*values));
		if (!values)
			return TEEMS_ENOMEM;
		if (to < 0) {
			nonce = paxos_new_nonce(p);
			TRY(round_open(p, nonce));
		}
		for (uint64_t i = 0; i < n; i++) {
			struct paxos_slot *s = PSLOT(p, first + i);

			values[i].p = s->value;
			values[i].len = s->len;
			if (to < 0 && !s->committed) {
				s->open = true;
				s->nonce = nonce;
				s->sent_hi = p->now.hi_ns;
				s->acked = s->synced = 0;
			}
		}
		for (uint16_t i = 0; i < p->n; i++) {
			struct paxos_send *s;

			if (i == p->cfg.self || (to >= 0 && i != to))
				continue;
			s = paxos_send_new(p, r, i, MSG_ACCEPT, nonce);
			if (!s)
				return TEEMS_ENOMEM;
			s->msg.accept.ballot = p->promised;
			s->msg.accept.commit_index = p->commit_index;
			s->msg.accept.first_slot = first;
			s->msg.accept.values.count = (uint32_t)n;
			s->msg.accept.values.items = values;
		}
		p->accept_sent = true;
		first += n;
	}
	return TEEMS_OK;
}

/* Reports UNKNOWN for the proposals waiting in slot (their round was abandoned). */
static int abandon_pending(struct paxos *p, struct paxos_ready *r, uint64_t slot)
{
	size_t keep = 0;

	for (size_t i = 0; i < p->n_pending; i++) {
		struct paxos_pending *pe = &p->pending[i];

		if (pe->slot == slot) {
			TRY(paxos_note(r, pe->client_id, pe->request_id, PAXOS_OUTCOME_UNKNOWN, 0,
				       p->leader));
			continue;
		}
		p->pending[keep++] = *pe;
	}
	p->n_pending = keep;
	return TEEMS_OK;
}

/* Abandons the rounds of every open slot that `expired` selects and retries them with new
 * nonces, in maximal runs of consecutive slots. */
static int retry_rounds(struct paxos *p, struct paxos_ready *r, bool all)
{
	uint64_t run = 0;

	for (uint64_t s = p->commit_index + 1; s <= p->last_slot + 1; s++) {
		struct paxos_slot *sl = s <= p->last_slot ? PSLOT(p, s) : NULL;
		bool retry = sl && sl->open && !sl->chosen &&
			     (all || p->now.hi_ns - sl->sent_hi > p->cfg.t_op_ns);

		if (retry) {
			TRY(abandon_pending(p, r, s));
			if (!run)
				run = s;
			continue;
		}
		if (run) {
			TRY(paxos_send_accepts(p, r, run, s - 1, -1));
			run = 0;
		}
	}
	return TEEMS_OK;
}

int paxos_accept_abandon(struct paxos *p, struct paxos_ready *r)
{
	return retry_rounds(p, r, true);
}

static int add_pending(struct paxos *p, const struct paxos_queued *q, uint64_t slot)
{
	if (p->n_pending == p->cap_pending) {
		size_t ncap = p->cap_pending ? p->cap_pending * 2 : 64;
		void *n = teems_realloc(p->pending, ncap * sizeof(*p->pending));

		if (!n)
			return TEEMS_ENOMEM;
		p->pending = n;
		p->cap_pending = ncap;
	}
	p->pending[p->n_pending].client_id = q->client_id;
	p->pending[p->n_pending].request_id = q->request_id;
	p->pending[p->n_pending].slot = slot;
	p->n_pending++;
	return TEEMS_OK;
}

/* Packs queued commands into new slots while the pipeline has room. */
static int flush_queue(struct paxos *p, struct paxos_ready *r)
{
	uint64_t first = p->last_slot + 1;
	size_t taken = 0;

	while (taken < p->n_queue && p->last_slot - p->commit_index < p->cfg.max_inflight) {
		size_t size = 0, k = taken;
		uint8_t *value;
		uint64_t slot = p->last_slot + 1;
		int rc;

		while (k < p->n_queue &&
		       size + BATCH_HEADER + p->queue[k].len <= p->cfg.max_slot_bytes)
			size += BATCH_HEADER + p->queue[k++].len;
		value = teems_malloc(size);
		if (!value)
			return TEEMS_ENOMEM;
		size = 0;
		for (size_t i = taken; i < k; i++) {
			const struct paxos_queued *q = &p->queue[i];

			put_le64(value + size, q->client_id);
			put_le64(value + size + 8, q->request_id);
			put_le32(value + size + 16, q->len);
			if (q->len)
				memcpy(value + size + BATCH_HEADER, q->command, q->len);
			size += BATCH_HEADER + q->len;
		}
		rc = paxos_slot_set(p, r, slot, &p->promised, value, (uint32_t)size);
		teems_free(value);
		TRY(rc);
		for (size_t i = taken; i < k; i++) {
			TRY(add_pending(p, &p->queue[i], slot));
			teems_free(p->queue[i].command);
			p->queue[i].command = NULL;
		}
		taken = k;
	}
	if (!taken)
		return TEEMS_OK;
	memmove(p->queue, p->queue + taken, (p->n_queue - taken) * sizeof(*p->queue));
	p->n_queue -= taken;
	TRY(paxos_persist(p, r, first, p->last_slot - first + 1, p->cfg.sync != PAXOS_SYNC_NONE,
			  NULL));
	return paxos_send_accepts(p, r, first, p->last_slot, -1);
}

/* The sync rule: of the W_Q acks that commit a slot, all but M_R must be synced (the
 * leader's own is, under rr and always). */
static unsigned need_synced(const struct paxos *p)
{
	unsigned w = paxos_vote_quorum(p);

	if (p->cfg.sync == PAXOS_SYNC_NONE)
		return 0;
	return w > p->cfg.quorum.m_r ? w - p->cfg.quorum.m_r : 0;
}

static bool commit_rule(const struct paxos *p, const struct paxos_slot *s)
{
	if (popcount64(s->acked) < paxos_vote_quorum(p))
		return false;
	return popcount64(s->synced) >= need_synced(p);
}

/* Does a follower sync an accepted entry before acknowledging it? Always under `always`.
 * Under rr only when the leader's own synced ack is not enough: then commits wait for
 * followers' synced acks (M_R = 0 makes it W_Q - 0 = W_Q), and deferring the fsync to the
 * group timer would only add its delay to every commit. */
static bool follower_syncs_now(const struct paxos *p)
{
	return p->cfg.sync == PAXOS_SYNC_ALWAYS ||
	       (p->cfg.sync == PAXOS_SYNC_RR && need_synced(p) > 1);
}

static int broadcast_commit(struct paxos *p, struct paxos_ready *r, uint64_t nonce)
{
	for (uint16_t i = 0; i < p->n; i++) {
		struct paxos_send *s;

		if (i == p->cfg.self)
			continue;
		s = paxos_send_new(p, r, i, MSG_COMMIT, nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.commit.ballot = p->promised;
		s->msg.commit.commit_index = p->commit_index;
	}
	return TEEMS_OK;
}

int paxos_leader_work(struct paxos *p, struct paxos_ready *r)
{
	uint64_t before;

	if (p->role != PAXOS_LEADER) {
		p->accept_sent = false;
		return TEEMS_OK;
	}
	before = p->commit_index;
	TRY(retry_rounds(p, r, false)); /* T_op passed: retry with a new nonce */
	rounds_prune(p);
	rounds_mask(p);
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++) {
		struct paxos_slot *sl = PSLOT(p, s);
		bool durable = sl->seq && sl->seq <= p->synced_seq;

		if (!sl->open || sl->chosen)
			continue;
		/* Our own accept: counted once synced (always, rr), at once under none. */
		if (durable)
			sl->acked |= bit(p->cfg.self), sl->synced |= bit(p->cfg.self);
		else if (p->cfg.sync == PAXOS_SYNC_NONE)
			sl->acked |= bit(p->cfg.self);
		if (commit_rule(p, sl)) {
			const struct paxos_round *rd = round_find(p, sl->nonce);
			struct paxos_collection col;

			sl->chosen = true;
			sl->open = false;
			paxos_col_reset(&col);
			if (rd)
				col = rd->col;
			col.members = sl->acked;
			col.member[p->cfg.self] = p->reg;
			TRY(paxos_counted_add(p, r, PAXOS_COUNTED_COMMIT, s, &col));
		}
	}
	while (p->commit_index < p->last_slot && PSLOT(p, p->commit_index + 1)->chosen) {
		PSLOT(p, p->commit_index + 1)->committed = true;
		p->commit_index++;
	}
	TRY(flush_queue(p, r));
	if (p->now.hi_ns >= p->next_heartbeat) {
		p->hb_nonce = paxos_new_nonce(p);
		p->next_heartbeat = p->now.hi_ns + p->cfg.heartbeat_ns;
		paxos_lease_heartbeat(p, p->hb_nonce); /* the reading before it leaves */
		TRY(broadcast_commit(p, r, p->hb_nonce));
	} else if (p->commit_index > before && !p->accept_sent) {
		TRY(broadcast_commit(p, r, 0));
	}
	p->accept_sent = false;
	return TEEMS_OK;
}

/* ---- acceptor ---- */

/* Follows ballot b (>= promised) of a leader: steps down if we lead or campaign at a lower one. */
static int follow(struct paxos *p, struct paxos_ready *r, const struct msg_ballot *b)
{
	if (p->role != PAXOS_FOLLOWER &&
	    !(p->role == PAXOS_LEADER && msg_ballot_cmp(b, &p->promised) == 0))
		TRY(paxos_step_down(p, r, b->replica));
	p->leader = b->replica;
	if (b->round > p->max_round_seen)
		p->max_round_seen = b->round;
	paxos_reset_election_timer(p);
	return TEEMS_OK;
}

void paxos_learn_commit(struct paxos *p, const struct msg_ballot *b, uint64_t ci)
{
	while (p->commit_index < ci && p->commit_index < p->last_slot) {
		struct paxos_slot *s = PSLOT(p, p->commit_index + 1);

		if (!s->accepted || msg_ballot_cmp(&s->ballot, b) != 0)
			break; /* a gap, or an entry of another ballot: wait for a resend */
		s->committed = true;
		p->commit_index++;
	}
}

static int send_accepted(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t nonce,
			 const struct msg_ballot *b, uint64_t first, uint64_t last,
			 const uint8_t digest[MSG_DIGEST_SIZE], enum msg_sync sync)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_ACCEPTED, nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.accepted.ballot = *b;
	s->msg.accepted.first_slot = first;
	s->msg.accepted.last_slot = last;
	memcpy(s->msg.accepted.digest, digest, MSG_DIGEST_SIZE);
	s->msg.accepted.sync = sync;
	return paxos_regvec(p, r, &s->msg.accepted.regvec);
}

int paxos_on_accept(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_accept *a = &m->accept;
	struct msg_bytes *values;
	struct msg_iter it;
	struct msg_bytes v;
	uint64_t last, store_from, seq;
	uint32_t i = 0;
	bool raised;
	struct paxos_held h;

	if (p->suspicious && !paxos_suspicion_ignored(p))
		return paxos_nack(p, r, m, MSG_NACK_SUSPICIOUS);
	if (a->ballot.replica != m->from.replica || a->values.count == 0)
		return TEEMS_OK;
	if (msg_ballot_cmp(&a->ballot, &p->promised) < 0)
		return paxos_nack(p, r, m, MSG_NACK_BALLOT);
	raised = msg_ballot_cmp(&a->ballot, &p->promised) > 0;
	TRY(follow(p, r, &a->ballot));
	p->promised = a->ballot;
	last = a->first_slot + a->values.count - 1;
	values = paxos_scratch(r, a->values.count * sizeof(*values));
	if (!values)
		return TEEMS_ENOMEM;
	msg_values_begin(&it, &a->values);
	while (msg_values_next(&it, &v))
		values[i++] = v;
	/* Committed slots are final: keep them (the leader resends them to fill our gaps). */
	store_from = a->first_slot > p->commit_index ? a->first_slot : p->commit_index + 1;
	for (uint64_t s = store_from; s <= last; s++)
		TRY(paxos_slot_set(p, r, s, &a->ballot, values[s - a->first_slot].p,
				   values[s - a->first_slot].len));
	if (store_from <= last || raised) {
		TRY(paxos_persist(p, r, store_from, store_from <= last ? last - store_from + 1 : 0,
				  follower_syncs_now(p), &seq));
		if (raised)
			p->promised_seq = seq;
	} else {
		seq = p->next_seq - 1; /* nothing new: the slots are in earlier records */
	}
	paxos_learn_commit(p, &a->ballot, a->commit_index);

	memset(&h, 0, sizeof(h));
	TRY(paxos_digest(p, a->first_slot, values, a->values.count, h.digest));
	if (!follower_syncs_now(p))
		TRY(send_accepted(p, r, m->from.replica, m->nonce, &a->ballot, a->first_slot, last,
				  h.digest, MSG_VOLATILE));
	if (p->cfg.sync == PAXOS_SYNC_NONE)
		return TEEMS_OK;
	/* The synced ack waits for the fsync (synced at once: the only ack; otherwise after the
	 * group fsync). */
	h.kind = HELD_ACCEPTED;
	h.seq = seq;
	h.to = m->from.replica;
	h.nonce = m->nonce;
	h.ballot = a->ballot;
	h.first_slot = a->first_slot;
	h.last_slot = last;
	return paxos_hold(p, &h);
}

int paxos_release_accepted(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	return send_accepted(p, r, h->to, h->nonce, &h->ballot, h->first_slot, h->last_slot,
			     h->digest, MSG_SYNCED);
}

/* ---- leader: counting ---- */

/* Gap handling: sends `to` the next chunk of committed slots after `through`, the end of its
 * prefix held at our ballot (from a HEARTBEAT_ACK, then from the ack of each chunk, so a
 * lagging follower is streamed the whole gap). The resends carry nonce 0: they are outside any
 * vote round and their acks are never counted. */
static int resend_gap(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t through)
{
	uint64_t last = p->commit_index;

	if (through >= p->commit_index)
		return TEEMS_OK;
	if (through < p->log_base)
		return paxos_snapshot_push(p, r, to); /* it needs slots we compacted */
	if (last - through > p->cfg.max_accept_slots)
		last = through + p->cfg.max_accept_slots;
	p->gap_sent[to] = last;
	return paxos_send_accepts(p, r, through + 1, last, to);
}

int paxos_on_accepted(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_accepted *a = &m->accepted;
	uint8_t digest[MSG_DIGEST_SIZE];
	struct paxos_round *rd;
	bool counted;

	if (p->role != PAXOS_LEADER || msg_ballot_cmp(&a->ballot, &p->promised) != 0)
		return TEEMS_OK;
	if (m->nonce == 0) {
		/* The ack of a gap resend: stream the next chunk, once (duplicated or stale acks
		 * of a chunk would otherwise start parallel streams). */
		if (a->last_slot != p->gap_sent[m->from.replica])
			return TEEMS_OK;
		return resend_gap(p, r, m->from.replica, a->last_slot);
	}
	if ((m->suspicious && !paxos_suspicion_ignored(p)) || a->first_slot <= p->log_base ||
	    a->last_slot > p->last_slot)
		return TEEMS_OK; /* suspicious replicas never vote */
	for (uint64_t s = a->first_slot; s <= a->last_slot; s++)
		if (!PSLOT(p, s)->accepted || msg_ballot_cmp(&PSLOT(p, s)->ballot, &p->promised))
			return TEEMS_OK;
	TRY(paxos_range_digest(p, a->first_slot, a->last_slot, digest));
	if (memcmp(digest, a->digest, MSG_DIGEST_SIZE) != 0)
		return TEEMS_OK; /* not a matching accept */
	rd = round_find(p, m->nonce);
	if (!rd || p->now.hi_ns - rd->sent_hi > p->cfg.t_op_ns)
		return TEEMS_OK;
	/* Discard rule (section 4, step 3), re-evaluated on every reply. */
	paxos_col_seen(p, &rd->col, &a->regvec);
	counted = paxos_col_member(p, &rd->col, m);
	if (!counted)
		return TEEMS_OK;
	for (uint64_t s = a->first_slot; s <= a->last_slot; s++) {
		struct paxos_slot *sl = PSLOT(p, s);

		if (!sl->open || sl->chosen || sl->nonce != m->nonce ||
		    p->now.hi_ns - sl->sent_hi > p->cfg.t_op_ns)
			continue;
		sl->acked |= bit(m->from.replica);
		if (a->sync == MSG_SYNCED)
			sl->synced |= bit(m->from.replica);
	}
	return TEEMS_OK;
}

static uint64_t accepted_through(struct paxos *p, const struct msg_ballot *b)
{
	uint64_t s = p->commit_index;

	while (s < p->last_slot && PSLOT(p, s + 1)->accepted &&
	       msg_ballot_cmp(&PSLOT(p, s + 1)->ballot, b) == 0)
		s++;
	return s;
}

int paxos_on_commit(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_commit *c = &m->commit;
	struct paxos_send *s;

	if (c->ballot.replica != m->from.replica)
		return TEEMS_OK;
	if (msg_ballot_cmp(&c->ballot, &p->promised) < 0)
		return paxos_nack(p, r, m, MSG_NACK_BALLOT); /* a deposed leader: let it know */
	if (p->suspicious && !paxos_suspicion_ignored(p)) {
		p->leader = c->ballot.replica;
		return m->nonce ? paxos_nack(p, r, m, MSG_NACK_SUSPICIOUS) : TEEMS_OK;
	}
	TRY(follow(p, r, &c->ballot));
	paxos_learn_commit(p, &c->ballot, c->commit_index);
	if (!m->nonce)
		return TEEMS_OK;
	s = paxos_send_new(p, r, m->from.replica, MSG_HEARTBEAT_ACK, m->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.heartbeat_ack.ballot = c->ballot;
	/* Section 8: the promise this ack carries (0: fenced or bound to another ballot). */
	s->msg.heartbeat_ack.lease_ns = paxos_lease_grant(p, &c->ballot);
	s->msg.heartbeat_ack.accepted_through = accepted_through(p, &c->ballot);
	return paxos_regvec(p, r, &s->msg.heartbeat_ack.regvec);
}

int paxos_on_heartbeat_ack(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_heartbeat_ack *a = &m->heartbeat_ack;

	paxos_lease_on_ack(p, m); /* counts acks of any of our recent heartbeats */
	if (p->role != PAXOS_LEADER || msg_ballot_cmp(&a->ballot, &p->promised) != 0 ||
	    m->nonce != p->hb_nonce || (m->suspicious && !paxos_suspicion_ignored(p)))
		return TEEMS_OK;
	return resend_gap(p, r, m->from.replica, a->accepted_through);
}

int paxos_on_nack(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_nack *n = &m->nack;

	if (n->reason != MSG_NACK_BALLOT)
		return TEEMS_OK;
	if (n->promised.round > p->max_round_seen)
		p->max_round_seen = n->promised.round;
	if (p->role != PAXOS_FOLLOWER && msg_ballot_cmp(&n->promised, &p->promised) > 0)
		return paxos_step_down(p, r, n->leader);
	return TEEMS_OK;
}

/* ---- learner ---- */

int paxos_apply_committed(struct paxos *p, struct paxos_ready *r)
{
	while (p->applied < p->commit_index) {
		const struct paxos_slot *s = PSLOT(p, p->applied + 1);
		struct paxos_apply *a;

		if (r->n_applies == r->cap_applies) {
			size_t ncap = r->cap_applies ? r->cap_applies * 2 : 64;
			void *n = teems_realloc(r->applies, ncap * sizeof(*a));

			if (!n)
				return TEEMS_ENOMEM;
			r->applies = n;
			r->cap_applies = ncap;
		}
		p->applied++;
		a = &r->applies[r->n_applies++];
		a->slot = p->applied;
		a->value = s->value;
		a->len = s->len;
		a->config = s->is_register;
		if (s->is_register) {
			TRY(paxos_config_apply(p, r, p->applied));
			if (p->halted)
				return TEEMS_OK;
		}
		if (p->n_pending) {
			size_t keep = 0;

			for (size_t i = 0; i < p->n_pending; i++) {
				struct paxos_pending *pe = &p->pending[i];

				if (pe->slot == p->applied) {
					TRY(paxos_note(r, pe->client_id, pe->request_id,
						       PAXOS_OUTCOME_APPLIED, pe->slot, p->leader));
					continue;
				}
				p->pending[keep++] = *pe;
			}
			p->n_pending = keep;
		}
	}
	return TEEMS_OK;
}
