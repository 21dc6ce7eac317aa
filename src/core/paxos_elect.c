/* RR-Paxos phase 1: elections (DESIGN.md section 5).
 *
 * A follower whose randomized election timeout passes without hearing a leader becomes a
 * candidate: it promises a ballot (round, self, registration index) above every round it has
 * seen, syncs that promise, and only then sends PREPARE (nothing is sent on behalf of a ballot
 * before its promise is durable). Acceptors answer with PROMISE after syncing their own promise,
 * reporting their accepted entries (own and adopted, original ballots) from the candidate's
 * commit index + 1 on. Suspicious replicas never promise, and a promise flagged suspicious is
 * never counted, so the vote quorum is always W_Q = S_Q(0) (section 4). Once W_Q distinct
 * replicas (the candidate included) have promised within T_op of the PREPARE, the candidate
 * leads: it re-proposes, under its own ballot, the highest-ballot entry of every open slot,
 * fills holes with no-ops, and appends a no-op of its own ballot that it must commit before
 * serving reads. */
#include <string.h>

#include "common/alloc.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

static unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

void paxos_cand_clear(struct paxos *p)
{
	for (uint64_t i = 0; i < p->cand_cap; i++) {
		teems_free(p->cand_log[i].value);
		memset(&p->cand_log[i], 0, sizeof(p->cand_log[i]));
	}
	p->cand_last = 0;
	p->cand_sent = false;
	p->cand_nonce = 0;
	p->cand_promised = 0;
	paxos_col_reset(&p->cand_col);
}

int paxos_cand_merge(struct paxos *p, uint64_t slot, const struct msg_ballot *b,
		     const uint8_t *value, uint32_t len, bool committed)
{
	uint64_t i;
	struct paxos_slot *c;
	uint8_t *copy = NULL;

	if (slot < p->cand_from)
		return TEEMS_OK;
	i = slot - p->cand_from;
	if (i >= p->cand_cap) {
		uint64_t ncap = p->cand_cap ? p->cand_cap * 2 : 64;
		struct paxos_slot *n;

		while (ncap <= i)
			ncap *= 2;
		n = teems_realloc(p->cand_log, ncap * sizeof(*n));
		if (!n)
			return TEEMS_ENOMEM;
		memset(n + p->cand_cap, 0, (ncap - p->cand_cap) * sizeof(*n));
		p->cand_log = n;
		p->cand_cap = ncap;
	}
	c = &p->cand_log[i];
	if (c->committed || (!committed && c->accepted && msg_ballot_cmp(&c->ballot, b) >= 0))
		return TEEMS_OK;
	if (len) {
		copy = teems_malloc(len);
		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, value, len);
	}
	teems_free(c->value);
	c->accepted = true;
	c->committed = committed;
	c->ballot = *b;
	c->value = copy;
	c->len = len;
	if (slot > p->cand_last)
		p->cand_last = slot;
	return TEEMS_OK;
}

static int start_candidacy(struct paxos *p, struct paxos_ready *r)
{
	struct paxos_held h;
	uint64_t round =
		p->promised.round > p->max_round_seen ? p->promised.round : p->max_round_seen;
	struct msg_ballot next = {.round = round + 1, .replica = p->cfg.self, .reg = p->reg};

	/* Section 8: not while our lease promise to another ballot runs (try again later). */
	if (!paxos_lease_may_support(p, &next)) {
		paxos_reset_election_timer(p);
		return TEEMS_OK;
	}
	paxos_cand_clear(p);
	p->role = PAXOS_CANDIDATE;
	p->leader = MSG_NO_REPLICA;
	p->cand_ballot.round = round + 1;
	p->cand_ballot.replica = p->cfg.self;
	p->cand_ballot.reg = p->reg;
	p->max_round_seen = round + 1;
	p->promised = p->cand_ballot;
	p->cand_from = p->commit_index + 1;
	TRY(paxos_persist(p, r, 0, 0, true, &p->promised_seq));
	memset(&h, 0, sizeof(h));
	h.kind = HELD_PREPARE;
	h.seq = p->promised_seq;
	h.ballot = p->cand_ballot;
	TRY(paxos_hold(p, &h));
	/* If the promise never becomes durable, try again later with a higher round. */
	paxos_reset_election_timer(p);
	return TEEMS_OK;
}

int paxos_elect_abandon(struct paxos *p)
{
	paxos_cand_clear(p);
	p->role = PAXOS_FOLLOWER;
	paxos_reset_election_timer(p);
	return TEEMS_OK;
}

int paxos_elect_tick(struct paxos *p, struct paxos_ready *r)
{
	if (p->role == PAXOS_LEADER || p->suspicious || p->lc != PAXOS_LC_FRESH)
		return TEEMS_OK;
	if (p->role == PAXOS_CANDIDATE && p->cand_sent &&
	    p->now.hi_ns - p->cand_sent_hi > p->cfg.t_op_ns)
		TRY(paxos_elect_abandon(p)); /* T_op passed: nothing more is counted */
	if (p->now.hi_ns >= p->election_deadline)
		return start_candidacy(p, r);
	return TEEMS_OK;
}

static int send_prepare(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t from)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_PREPARE, p->cand_nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.prepare.ballot = p->cand_ballot;
	s->msg.prepare.from_slot = from;
	return TEEMS_OK;
}

static int become_leader(struct paxos *p, struct paxos_ready *r)
{
	const struct msg_ballot b = p->cand_ballot;
	uint64_t first = p->commit_index + 1;
	uint64_t top = p->cand_last > p->commit_index ? p->cand_last : p->commit_index;

	p->role = PAXOS_LEADER;
	p->leader = p->cfg.self;
	/* Anything of ours above top was reported to ourselves, so there is none; drop the
	 * slots above it anyway rather than keep an entry we cannot vouch for. */
	for (uint64_t s = first; s <= top; s++) {
		const struct paxos_slot *c = &p->cand_log[s - p->cand_from];

		if (c->accepted)
			TRY(paxos_slot_set(p, r, s, &b, c->value, c->len));
		else
			TRY(paxos_slot_set(p, r, s, &b, NULL, 0)); /* a hole: no-op */
	}
	for (uint64_t s = top + 1; s <= p->last_slot; s++) {
		TRY(paxos_defer_free(r, PSLOT(p, s)->value));
		memset(PSLOT(p, s), 0, sizeof(struct paxos_slot));
	}
	p->last_slot = top;
	p->noop_slot = top + 1;
	TRY(paxos_slot_set(p, r, p->noop_slot, &b, NULL, 0));
	paxos_cand_clear(p);
	TRY(paxos_persist(p, r, first, p->noop_slot - first + 1, p->cfg.sync != PAXOS_SYNC_NONE,
			  NULL));
	p->next_heartbeat = p->now.hi_ns;
	return paxos_send_accepts(p, r, first, p->noop_slot, -1);
}

static int check_won(struct paxos *p, struct paxos_ready *r)
{
	unsigned need = paxos_vote_quorum(p);

	if ((p->cfg.unsafe & PAXOS_UNSAFE_SHORT_PROMISE) && need > 1)
		need--;
	paxos_col_prune(p, &p->cand_col);
	p->cand_promised = p->cand_col.members;
	if (popcount64(p->cand_promised) >= need) {
		TRY(paxos_counted_add(p, r, PAXOS_COUNTED_ELECTION, p->cand_ballot.round,
				      &p->cand_col));
		return become_leader(p, r);
	}
	return TEEMS_OK;
}

int paxos_release_prepare(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	if (p->role != PAXOS_CANDIDATE || msg_ballot_cmp(&h->ballot, &p->cand_ballot) != 0)
		return TEEMS_OK;
	p->cand_sent = true;
	p->cand_nonce = paxos_new_nonce(p);
	p->cand_sent_hi = p->now.hi_ns;
	/* Our own promise, with our own accepted entries. */
	for (uint64_t s = p->cand_from; s <= p->last_slot; s++) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->accepted)
			TRY(paxos_cand_merge(p, s, &sl->ballot, sl->value, sl->len, false));
	}
	paxos_col_reset(&p->cand_col);
	paxos_col_self(p, &p->cand_col);
	p->cand_promised = p->cand_col.members;
	for (uint16_t i = 0; i < QUORUM_MAX_REPLICAS; i++)
		p->cand_ask[i] = p->cand_from;
	for (uint16_t i = 0; i < p->n; i++)
		if (i != p->cfg.self)
			TRY(send_prepare(p, r, i, p->cand_from));
	return check_won(p, r);
}

static int send_refusal(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t nonce,
			const struct msg_ballot *asked)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_PROMISE, nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.promise.ballot = *asked;
	s->msg.promise.ok = false;
	s->msg.promise.promised = p->promised;
	s->msg.promise.commit_index = p->commit_index;
	return paxos_regvec(p, r, &s->msg.promise.regvec);
}

int paxos_on_prepare(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_prepare *pr = &m->prepare;
	struct paxos_held h;
	int cmp;

	if (p->suspicious && !paxos_suspicion_ignored(p))
		return paxos_nack(p, r, m, MSG_NACK_SUSPICIOUS);
	if (pr->ballot.replica != m->from.replica)
		return TEEMS_OK; /* only the ballot's owner campaigns for it */
	if (pr->ballot.round > p->max_round_seen)
		p->max_round_seen = pr->ballot.round;
	cmp = msg_ballot_cmp(&pr->ballot, &p->promised);
	if (cmp < 0)
		return send_refusal(p, r, m->from.replica, m->nonce, &pr->ballot);
	/* Section 8: while our lease promise to another ballot runs we support no other; the
	 * candidate retries after its T_op. */
	if (cmp > 0 && !paxos_lease_may_support(p, &pr->ballot))
		return TEEMS_OK;
	if (cmp > 0) {
		if (p->role != PAXOS_FOLLOWER)
			TRY(paxos_step_down(p, r, MSG_NO_REPLICA));
		p->promised = pr->ballot;
		p->leader = MSG_NO_REPLICA;
		TRY(paxos_persist(p, r, 0, 0, true, &p->promised_seq));
	}
	/* Give the candidate time to win before we campaign ourselves. */
	paxos_reset_election_timer(p);
	memset(&h, 0, sizeof(h));
	h.kind = HELD_PROMISE;
	h.seq = p->promised_seq;
	h.to = m->from.replica;
	h.nonce = m->nonce;
	h.ballot = pr->ballot;
	h.from_slot = pr->from_slot ? pr->from_slot : 1;
	return paxos_hold(p, &h);
}

int paxos_page_entries(struct paxos *p, struct paxos_ready *r, uint64_t from,
		       struct msg_entry **items_out, uint32_t *count_out, bool *more)
{
	struct msg_entry *items = NULL;
	uint32_t count = 0, cap = 0;
	uint64_t s0, bytes = 0;

	/* Entries up to MSG_MAX_ENTRIES and half a frame of values; `more` says where we
	 * stopped, and the asker asks again from there. Slots in our snapshot are committed and
	 * no longer here: the asker sees them missing below our commit index and fetches the
	 * snapshot (paxos_on_promise, paxos_on_recovery_reply). */
	if (from <= p->log_base)
		from = p->log_base + 1;
	for (s0 = from; s0 <= p->last_slot && cap < MSG_MAX_ENTRIES; s0++) {
		const struct paxos_slot *sl = PSLOT(p, s0);

		if (!sl->accepted)
			continue;
		if (cap && bytes + sl->len + 64 > MSG_MAX_FRAME / 2)
			break;
		bytes += sl->len + 64;
		cap++;
	}
	if (cap) {
		items = paxos_scratch(r, (size_t)cap * sizeof(*items));
		if (!items)
			return TEEMS_ENOMEM;
	}
	for (s0 = from; s0 <= p->last_slot && count < cap; s0++) {
		const struct paxos_slot *sl = PSLOT(p, s0);

		if (!sl->accepted)
			continue;
		items[count].slot = s0;
		items[count].ballot = sl->ballot;
		items[count].adopted = sl->adopted && !sl->committed;
		items[count].value.p = sl->value;
		items[count].value.len = sl->len;
		count++;
	}
	while (s0 <= p->last_slot && !PSLOT(p, s0)->accepted)
		s0++;
	*items_out = items;
	*count_out = count;
	*more = s0 <= p->last_slot;
	return TEEMS_OK;
}

int paxos_release_promise(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	struct paxos_send *s;
	struct msg_entry *items;
	uint32_t count;
	bool more;

	if (msg_ballot_cmp(&p->promised, &h->ballot) != 0)
		return send_refusal(p, r, h->to, h->nonce, &h->ballot);
	TRY(paxos_page_entries(p, r, h->from_slot, &items, &count, &more));
	s = paxos_send_new(p, r, h->to, MSG_PROMISE, h->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.promise.ballot = h->ballot;
	s->msg.promise.ok = true;
	s->msg.promise.promised = p->promised;
	s->msg.promise.commit_index = p->commit_index;
	s->msg.promise.more = more;
	s->msg.promise.entries.count = count;
	s->msg.promise.entries.items = items;
	return paxos_regvec(p, r, &s->msg.promise.regvec);
}

int paxos_on_promise(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_promise *pr = &m->promise;
	struct msg_iter it;
	struct msg_entry e;
	uint64_t last = 0, ask;

	if (p->role != PAXOS_CANDIDATE || !p->cand_sent || m->nonce != p->cand_nonce ||
	    msg_ballot_cmp(&pr->ballot, &p->cand_ballot) != 0)
		return TEEMS_OK;
	if (p->now.hi_ns - p->cand_sent_hi > p->cfg.t_op_ns)
		return TEEMS_OK; /* T_op passed: counted nothing; the tick abandons */
	if (!pr->ok) {
		if (msg_ballot_cmp(&pr->promised, &p->cand_ballot) > 0) {
			if (pr->promised.round > p->max_round_seen)
				p->max_round_seen = pr->promised.round;
			return paxos_step_down(p, r, MSG_NO_REPLICA);
		}
		return TEEMS_OK;
	}
	if (m->suspicious && !paxos_suspicion_ignored(p))
		return TEEMS_OK; /* a suspicious replica never votes (section 4) */
	/* Discard rule (section 4, step 3): this reply's vector may show that a replica already
	 * counted, or the sender itself, has a newer incarnation. */
	paxos_col_seen(p, &p->cand_col, &pr->regvec);
	paxos_col_prune(p, &p->cand_col);
	p->cand_promised = p->cand_col.members;
	if ((p->cand_promised & (1ull << m->from.replica)) &&
	    paxos_regidx_cmp(&p->cand_col.member[m->from.replica], &m->from.reg) >= 0)
		return TEEMS_OK; /* duplicate */
	ask = p->cand_ask[m->from.replica];
	msg_entries_begin(&it, &pr->entries);
	if (pr->commit_index >= ask && (!msg_entries_next(&it, &e) || e.slot > ask)) {
		/* Every slot up to the replier's commit index is accepted there, so a missing one
		 * was compacted into its snapshot: its committed value is unknown to us, and
		 * counting this promise could let us fill that slot with something else. Not
		 * counted; we fetch the snapshot (a later candidacy starts above it). */
		return paxos_snapshot_want(p, r, m->from.replica, ask);
	}
	msg_entries_begin(&it, &pr->entries);
	while (msg_entries_next(&it, &e)) {
		last = e.slot;
		if (p->cfg.unsafe & PAXOS_UNSAFE_SKIP_ADOPT)
			continue;
		TRY(paxos_cand_merge(p, e.slot, &e.ballot, e.value.p, e.value.len, false));
	}
	if (pr->more) {
		p->cand_ask[m->from.replica] = last + 1;
		return send_prepare(p, r, m->from.replica, last + 1);
	}
	paxos_col_member(p, &p->cand_col, m);
	return check_won(p, r);
}
