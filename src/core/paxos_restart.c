/* RR-Paxos: epoch restart (DESIGN.md section 6, "Epoch restart"; docs/PROTOCOL.md "RR-Paxos:
 * epoch restart").
 *
 * A single-decree Paxos round whose value is the configuration of the next epoch:
 *   - stuck: for t_restart, fewer than W_Q fresh registered incarnations of our epoch heard
 *     from (ourselves included if fresh; a fresh leader's ACCEPT or COMMIT counts as W_Q, since
 *     followers only hear from the leader);
 *   - prepare: a stuck replica proposes p = (round, replica, (epoch, tag)) after syncing its own
 *     promise; a stuck replica answers the highest p it has seen for the epoch; an answer is a
 *     promise (synced before it leaves): the incarnation becomes suspicious, so it casts no vote,
 *     ack or grant in the epoch any more, and it answers no lower p;
 *   - accept: with S_Q(s) distinct answering replicas (every answerer counted suspicious), the
 *     proposer adopts the highest accepted proposal reported, else names one incarnation per
 *     answering replica, (replica, (epoch + 1, tag)); answerers that promised nothing higher
 *     accept, synced; S_Q(s) distinct accepts decide epoch + 1, which the proposer announces
 *     (RESTART_ACCEPT with decided set; also to every laggard that talks to it later);
 *   - after: a named incarnation installs epoch + 1 (every replica registered at (epoch + 1, 0),
 *     itself included), waits T_fence from its first answer (lo; a taint restarts the wait),
 *     then runs the ordinary recovery read (R_Q(s) members, all suspicious: highest ballot per
 *     slot, highest commit index) and becomes fresh. A registered incarnation that is not
 *     named halts, and so does an unregistered one whose answer was not taken (a fork, S10);
 *     an unregistered one that never answered enters the new epoch and registers normally.
 *
 * The answer carries no state (its digests are zero): the merge is the members' recovery read,
 * which is also what keeps a rolled-back member's state from being trusted alone. The argument
 * that epoch + 1 loses nothing committed is in docs/PROTOCOL.md.
 *
 * recovery = operator (DESIGN.md section 6, "Authorization"; docs/PROTOCOL.md
 * "Operator-authorized restart"): a full-cluster fork looks exactly like a full restart, so the
 * accept step waits for the operator. The proposer holds the value its answers chose (phase 3),
 * keeps its answerers off the floor by re-sending its RESTART_PREPARE every T_op, and accepts
 * only once paxos_restart_authorize gave it a signature over (cluster, epoch, proposal,
 * configuration, state digest); every acceptor verifies that signature against the
 * RESTART_ACCEPT it receives before it accepts, so no replica votes for a configuration the
 * operator did not sign. */
#include <string.h>

#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

/* Copies a list (decoded or built) into out[]; returns the count (at most the cap). */
static uint32_t copy_list(const struct msg_incarnation_list *l, struct msg_incarnation *out)
{
	struct msg_iter it;
	uint32_t n = 0;

	msg_incarnations_begin(&it, l);
	while (n < QUORUM_MAX_REPLICAS && msg_incarnations_next(&it, &out[n]))
		n++;
	return n;
}

/* A ready-owned copy of our accepted members for an outgoing message (NULL on ENOMEM). */
static const struct msg_incarnation *members_out(struct paxos *p, struct paxos_ready *r)
{
	struct msg_incarnation *m = paxos_scratch(r, (p->rs_n_acc ? p->rs_n_acc : 1) * sizeof(*m));

	if (m)
		memcpy(m, p->rs_acc_m, p->rs_n_acc * sizeof(*m));
	return m;
}

static uint64_t bit(unsigned replica)
{
	return 1ull << replica;
}

static unsigned popcount(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

uint64_t paxos_epoch(const struct paxos *p)
{
	return p->epoch;
}

static bool self_fresh(const struct paxos *p)
{
	return p->lc == PAXOS_LC_FRESH && !p->suspicious && !p->halted;
}

bool paxos_stuck(const struct paxos *p)
{
	uint64_t now = p->now.hi_ns, t = p->cfg.t_restart_ns;
	unsigned n = self_fresh(p) ? 1 : 0;

	if (t == 0 || !p->have_time || p->rs_fence || p->halted || now - p->rs_window_hi < t)
		return false;
	if (p->leader_heard_hi && now - p->leader_heard_hi < t)
		return false;
	for (unsigned i = 0; i < p->n; i++)
		if (i != p->cfg.self && p->heard_hi[i] && now - p->heard_hi[i] < t)
			n++;
	return n < p->w_q;
}

void paxos_enter_epoch(struct paxos *p, uint64_t epoch)
{
	if (epoch <= p->epoch)
		return;
	p->epoch = epoch;
	for (unsigned i = 0; i < p->n; i++) {
		p->regs[i].set = true;
		p->regs[i].idx.epoch = epoch;
		p->regs[i].idx.slot = 0;
		memset(p->regs[i].key, 0, MSG_PUBLIC_KEY_SIZE);
	}
	if (!p->registered)
		p->reg_expected = p->regs[p->cfg.self].idx;
	memset(p->heard_hi, 0, sizeof(p->heard_hi));
	p->leader_heard_hi = 0;
	p->rs_window_hi = p->now.hi_ns;
	p->rs_answered = false;
	p->rs_phase = 0;
	p->rs_record = true;
}

int paxos_restart_restore(struct paxos *p, const struct paxos_restart_rec *x)
{
	paxos_enter_epoch(p, x->epoch);
	p->rs_epoch = x->rs_epoch;
	p->rs_promised = x->promised;
	p->rs_has_acc = x->has_accepted;
	p->rs_acc = x->accepted;
	p->rs_n_acc = x->n_members;
	memcpy(p->rs_acc_m, x->members, x->n_members * sizeof(x->members[0]));
	p->rs_record = false;
	return TEEMS_OK;
}

void paxos_restart_persist(struct paxos *p, struct paxos_persist *rec)
{
	struct paxos_restart_rec *x = &rec->restart;

	if (!p->rs_record)
		return;
	p->rs_record = false;
	rec->flags |= PAXOS_REC_RESTART;
	x->epoch = p->epoch;
	x->rs_epoch = p->rs_epoch;
	x->promised = p->rs_promised;
	x->has_accepted = p->rs_has_acc;
	x->accepted = p->rs_acc;
	x->n_members = p->rs_has_acc ? p->rs_n_acc : 0;
	memcpy(x->members, p->rs_acc_m, x->n_members * sizeof(x->members[0]));
}

/* The promise for our epoch (none: the zero ballot). */
static struct msg_ballot promised_here(const struct paxos *p)
{
	struct msg_ballot zero;

	if (p->rs_epoch == p->epoch)
		return p->rs_promised;
	memset(&zero, 0, sizeof(zero));
	return zero;
}

/* Promises `b` for our epoch: from now on this incarnation is suspicious (no vote, ack or
 * grant in the epoch). Persisted (sync) by the caller's record. */
static int promise(struct paxos *p, struct paxos_ready *r, const struct msg_ballot *b)
{
	if (p->rs_epoch != p->epoch) {
		p->rs_epoch = p->epoch;
		p->rs_has_acc = false;
		p->rs_n_acc = 0;
	}
	p->rs_promised = *b;
	if (!p->rs_answered) {
		p->rs_answered = true;
		p->rs_first_lo = p->now.lo_ns;
		p->rs_first_epoch = p->now.epoch;
	}
	p->suspicious = true;
	/* Votes not sent yet are dropped (as if lost): none leaves after the promise. */
	{
		size_t keep = 0;

		for (size_t i = 0; i < p->n_held; i++)
			if (p->held[i].kind != HELD_PROMISE && p->held[i].kind != HELD_ACCEPTED &&
			    p->held[i].kind != HELD_PREPARE)
				p->held[keep++] = p->held[i];
		p->n_held = keep;
	}
	if (p->role != PAXOS_FOLLOWER)
		TRY(paxos_step_down(p, r, MSG_NO_REPLICA));
	p->rs_record = true;
	return TEEMS_OK;
}

static int persist_sync(struct paxos *p, struct paxos_ready *r, uint64_t *seq)
{
	p->rs_record = true;
	return paxos_persist(p, r, 0, 0, true, seq);
}

static unsigned super_quorum(const struct paxos *p, unsigned s)
{
	if (p->cfg.unsafe & PAXOS_UNSAFE_CFT_QUORUMS)
		return p->n / 2 + 1;
	return quorum_super(&p->cfg.quorum, s);
}

/* ---- proposer ---- */

static int propose(struct paxos *p, struct paxos_ready *r)
{
	struct msg_ballot b = promised_here(p);
	struct paxos_held h;
	uint64_t seq;

	memset(&b.reg, 0, sizeof(b.reg));
	b.round = (p->rs_epoch == p->epoch ? p->rs_promised.round : 0) + 1;
	b.replica = p->cfg.self;
	b.reg.epoch = p->epoch;
	b.reg.slot = p->rs_tag;
	TRY(promise(p, r, &b));
	p->rs_phase = 1;
	p->rs_prop = b;
	p->rs_nonce = paxos_new_nonce(p);
	p->rs_sent_hi = p->now.hi_ns;
	p->rs_mask = bit(p->cfg.self);
	memset(p->rs_tags, 0, sizeof(p->rs_tags));
	p->rs_tags[p->cfg.self] = p->rs_tag;
	p->rs_best_set = p->rs_has_acc;
	if (p->rs_has_acc) {
		p->rs_best = p->rs_acc;
		p->rs_n_best = p->rs_n_acc;
		memcpy(p->rs_best_m, p->rs_acc_m, p->rs_n_acc * sizeof(p->rs_acc_m[0]));
	}
	p->rs_acc_mask = 0;
	TRY(persist_sync(p, r, &seq));
	memset(&h, 0, sizeof(h));
	h.kind = HELD_RS_PREPARE;
	h.seq = seq;
	h.ballot = b;
	return paxos_hold(p, &h);
}

static int broadcast_accept(struct paxos *p, struct paxos_ready *r, bool decided)
{
	for (unsigned i = 0; i < p->n; i++) {
		struct paxos_send *s;

		if (i == p->cfg.self)
			continue;
		s = paxos_send_new(p, r, (uint16_t)i, MSG_RESTART_ACCEPT,
				   decided ? 0 : p->rs_nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.restart_accept.epoch = decided ? p->rs_epoch : p->epoch;
		s->msg.restart_accept.proposal = decided ? p->rs_acc : p->rs_prop;
		s->msg.restart_accept.members.count = p->rs_n_acc;
		s->msg.restart_accept.members.items = members_out(p, r);
		s->msg.restart_accept.decided = decided;
		if (!decided) {
			/* core-owned, unchanged until the next accept round */
			s->msg.restart_accept.authorization.p = p->rs_auth;
			s->msg.restart_accept.authorization.len = p->rs_auth_len;
		}
		if (!s->msg.restart_accept.members.items)
			return TEEMS_ENOMEM;
	}
	return TEEMS_OK;
}

/* ---- the operator's authorization ---- */

size_t paxos_restart_auth_bytes(const uint8_t cluster_id[PAXOS_RESTART_CLUSTER_ID_LEN],
				uint64_t epoch, const struct msg_ballot *proposal,
				const struct msg_incarnation *members, uint32_t n,
				const uint8_t state_digest[MSG_DIGEST_SIZE], uint8_t *out)
{
	static const char domain[] = PAXOS_RESTART_AUTH_DOMAIN;
	size_t off = sizeof(domain);

	_Static_assert(sizeof(domain) == 26, "the domain string is 26 bytes with its NUL");
	if (n > QUORUM_MAX_REPLICAS)
		n = QUORUM_MAX_REPLICAS;
	memcpy(out, domain, sizeof(domain));
	memcpy(out + off, cluster_id, PAXOS_RESTART_CLUSTER_ID_LEN);
	off += PAXOS_RESTART_CLUSTER_ID_LEN;
	put_le64(out + off, epoch);
	put_le64(out + off + 8, proposal->round);
	put_le16(out + off + 16, proposal->replica);
	put_le64(out + off + 18, proposal->reg.epoch);
	put_le64(out + off + 26, proposal->reg.slot);
	put_le32(out + off + 34, n);
	off += 38;
	for (uint32_t i = 0; i < n; i++) {
		put_le16(out + off, members[i].replica);
		put_le64(out + off + 2, members[i].reg.epoch);
		put_le64(out + off + 10, members[i].reg.slot);
		off += 18;
	}
	memcpy(out + off, state_digest, MSG_DIGEST_SIZE);
	return off + MSG_DIGEST_SIZE;
}

/* The answers carry no state (see the top of this file), so the state digest a proposal names
 * is zero; the operator signs it anyway, so a later merge-by-digest keeps the same message. */
static const uint8_t zero_digest[MSG_DIGEST_SIZE];

/* True when `auth` is the operator's signature of (epoch, proposal, members, digest). */
static bool authorized(const struct paxos *p, uint64_t epoch, const struct msg_ballot *proposal,
		       const struct msg_incarnation *members, uint32_t n,
		       const uint8_t digest[MSG_DIGEST_SIZE], const uint8_t *auth, size_t len)
{
	uint8_t msg[PAXOS_RESTART_AUTH_MSG_MAX];
	size_t msg_len;

	if (!p->cfg.restart_verify || len == 0 || len > MSG_MAX_AUTH || n > QUORUM_MAX_REPLICAS)
		return false;
	msg_len = paxos_restart_auth_bytes(p->cfg.restart_cluster_id, epoch, proposal, members, n,
					   digest, msg);
	return p->cfg.restart_verify(p->cfg.restart_operator_key, msg, msg_len, auth, len);
}

int paxos_restart_auth_message(const struct paxos *p, uint8_t *out, size_t cap, size_t *len)
{
	if (p->rs_phase != PAXOS_RESTART_WAITING || p->halted)
		return TEEMS_ENOTFOUND;
	if (cap < PAXOS_RESTART_AUTH_MSG_MAX)
		return TEEMS_EFULL;
	*len = paxos_restart_auth_bytes(p->cfg.restart_cluster_id, p->epoch, &p->rs_prop,
					p->rs_pend_m, p->rs_n_pend, zero_digest, out);
	return TEEMS_OK;
}

int paxos_restart_authorize(struct paxos *p, const uint8_t *auth, size_t len)
{
	if (!p->cfg.restart_operator || len == 0 || len > MSG_MAX_AUTH)
		return TEEMS_EINVAL;
	if (p->rs_phase != PAXOS_RESTART_WAITING || p->halted)
		return TEEMS_ENOTFOUND;
	if (!authorized(p, p->epoch, &p->rs_prop, p->rs_pend_m, p->rs_n_pend, zero_digest, auth,
			len))
		return TEEMS_EAUTH;
	memcpy(p->rs_auth, auth, len);
	p->rs_auth_len = (uint32_t)len;
	p->rs_authorized = true;
	return TEEMS_OK;
}

void paxos_restart_view(const struct paxos *p, struct paxos_restart_view *out)
{
	memset(out, 0, sizeof(*out));
	out->epoch = p->epoch;
	out->stuck = paxos_stuck(p);
	out->answered = p->rs_answered;
	out->promised = promised_here(p);
	out->phase = (enum paxos_restart_phase)p->rs_phase;
	out->auth_refused = p->rs_auth_refused;
	if (p->rs_phase == PAXOS_RESTART_IDLE)
		return;
	out->proposal = p->rs_prop;
	if (p->rs_phase == PAXOS_RESTART_WAITING) {
		out->n_members = p->rs_n_pend;
		memcpy(out->members, p->rs_pend_m, p->rs_n_pend * sizeof(p->rs_pend_m[0]));
	} else if (p->rs_phase == PAXOS_RESTART_ACCEPTS) {
		out->n_members = p->rs_n_acc;
		memcpy(out->members, p->rs_acc_m, p->rs_n_acc * sizeof(p->rs_acc_m[0]));
	}
}

/* The value S_Q(s) answers chose, into out[] (*n members). */
static void choose(const struct paxos *p, struct msg_incarnation *out, uint32_t *n)
{
	if (p->rs_best_set) {
		/* Paxos: the highest accepted proposal reported wins (S9). */
		*n = p->rs_n_best;
		memcpy(out, p->rs_best_m, p->rs_n_best * sizeof(p->rs_best_m[0]));
		return;
	}
	/* One incarnation per answering replica id (S10), ascending ids. */
	*n = 0;
	for (unsigned i = 0; i < p->n; i++) {
		if (!(p->rs_mask & bit(i)))
			continue;
		out[*n].replica = (uint16_t)i;
		out[*n].reg.epoch = p->epoch + 1;
		out[*n].reg.slot = p->rs_tags[i];
		(*n)++;
	}
}

static int accept_own(struct paxos *p, struct paxos_ready *r);

/* Phase 2: S_Q(s) distinct replicas answered. */
static int start_accept(struct paxos *p, struct paxos_ready *r)
{
	if (p->cfg.restart_operator) {
		/* recovery = operator: hold the value until the operator signs it. */
		choose(p, p->rs_pend_m, &p->rs_n_pend);
		p->rs_phase = PAXOS_RESTART_WAITING;
		p->rs_authorized = false;
		p->rs_auth_len = 0;
		p->rs_keep_hi = p->now.hi_ns;
		return TEEMS_OK;
	}
	choose(p, p->rs_acc_m, &p->rs_n_acc);
	p->rs_auth_len = 0;
	return accept_own(p, r);
}

/* Accepts our own value (rs_acc_m, already filled) and sends it. */
static int accept_own(struct paxos *p, struct paxos_ready *r)
{
	struct paxos_held h;
	uint64_t seq;

	p->rs_phase = PAXOS_RESTART_ACCEPTS;
	p->rs_has_acc = true;
	p->rs_acc = p->rs_prop;
	p->rs_sent_hi = p->now.hi_ns;
	TRY(persist_sync(p, r, &seq));
	memset(&h, 0, sizeof(h));
	h.kind = HELD_RS_SELF;
	h.seq = seq;
	h.ballot = p->rs_prop;
	TRY(paxos_hold(p, &h));
	return broadcast_accept(p, r, false);
}

/* ---- learning the decision ---- */

static bool named(const struct paxos *p, const struct msg_incarnation *m, uint32_t n,
		  uint64_t epoch)
{
	for (uint32_t i = 0; i < n; i++)
		if (m[i].replica == p->cfg.self && m[i].reg.epoch == epoch + 1 &&
		    m[i].reg.slot == p->rs_tag)
			return true;
	return false;
}

/* Epoch `epoch` + 1 is decided with configuration `members` by proposal `b`. */
static int learn(struct paxos *p, struct paxos_ready *r, uint64_t epoch, const struct msg_ballot *b,
		 const struct msg_incarnation_list *members)
{
	struct msg_incarnation items[QUORUM_MAX_REPLICAS];
	uint32_t n;
	bool me;

	if (epoch > p->epoch && !p->registered && p->lc == PAXOS_LC_REGISTERING) {
		/* Our sealed state is older than the cluster's (a rollback): enter the new epoch
		 * and register in it. */
		paxos_enter_epoch(p, epoch + 1);
		return persist_sync(p, r, NULL);
	}
	if (epoch != p->epoch || members->count == 0 || members->count > QUORUM_MAX_REPLICAS)
		return TEEMS_OK;
	n = copy_list(members, items);
	me = named(p, items, n, epoch) && p->rs_answered;
	if (!me && (p->registered || p->rs_answered)) {
		/* Left out of epoch + 1 (a registered incarnation, or one whose answer was not
		 * taken, such as the other side of a fork, S10): come back as a new incarnation. */
		paxos_halt(p);
		return TEEMS_OK;
	}
	p->rs_epoch = epoch;
	p->rs_promised = *b;
	p->rs_has_acc = true;
	p->rs_acc = *b;
	p->rs_n_acc = n;
	memcpy(p->rs_acc_m, items, n * sizeof(items[0]));
	if (me) {
		uint64_t first_lo = p->rs_first_lo, first_epoch = p->rs_first_epoch;

		paxos_enter_epoch(p, epoch + 1);
		memcpy(p->regs[p->cfg.self].key, p->cfg.public_key, MSG_PUBLIC_KEY_SIZE);
		p->registered = true;
		p->reg = p->regs[p->cfg.self].idx;
		p->reg_record = true;
		p->suspicious = true;
		p->lc = PAXOS_LC_FENCING;
		p->rs_fence = true;
		/* The wait counts from our first answer, on lo; a taint since restarts it. */
		p->fence_start_lo = first_epoch == p->now.epoch ? first_lo : p->now.lo_ns;
		p->fence_epoch = p->now.epoch;
	} else {
		/* Unregistered (restarting) and never answered: enter the new epoch, register. */
		paxos_enter_epoch(p, epoch + 1);
	}
	if (p->role != PAXOS_FOLLOWER)
		TRY(paxos_step_down(p, r, MSG_NO_REPLICA));
	return persist_sync(p, r, NULL);
}

static int decided(struct paxos *p, struct paxos_ready *r)
{
	struct msg_incarnation_list m;
	struct msg_ballot b = p->rs_acc;

	TRY(broadcast_accept(p, r, true));
	p->rs_phase = 0;
	memset(&m, 0, sizeof(m));
	m.count = p->rs_n_acc;
	m.items = p->rs_acc_m; /* learn() copies it first */
	return learn(p, r, p->epoch, &b, &m);
}

/* ---- messages ---- */

static int send_decision(struct paxos *p, struct paxos_ready *r, uint16_t to)
{
	struct paxos_send *s;

	if (!p->rs_has_acc || p->rs_epoch + 1 != p->epoch || p->rs_n_acc == 0)
		return TEEMS_OK;
	if (p->rs_dec_sent[to] && p->now.hi_ns - p->rs_dec_sent[to] < p->cfg.t_op_ns)
		return TEEMS_OK;
	p->rs_dec_sent[to] = p->now.hi_ns;
	s = paxos_send_new(p, r, to, MSG_RESTART_ACCEPT, 0);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.restart_accept.epoch = p->rs_epoch;
	s->msg.restart_accept.proposal = p->rs_acc;
	s->msg.restart_accept.members.count = p->rs_n_acc;
	s->msg.restart_accept.members.items = members_out(p, r);
	s->msg.restart_accept.decided = true;
	if (!s->msg.restart_accept.members.items) {
		r->n_sends--; /* never a message without its list */
		return TEEMS_ENOMEM;
	}
	return TEEMS_OK;
}

bool paxos_restart_filter(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	uint16_t x = m->from.replica;
	bool restart = m->type >= MSG_RESTART_PREPARE && m->type <= MSG_RESTART_ACCEPTED;

	if (p->epoch > 0 && m->from.reg.epoch < p->epoch && !m->suspicious && !restart) {
		/* An incarnation of an earlier epoch: tell it what was decided, ignore it. */
		(void)send_decision(p, r, x);
		return false;
	}
	if (!restart && !m->suspicious && m->from.reg.epoch == p->epoch) {
		struct msg_regidx known = paxos_known_reg(p, x);

		if (paxos_regidx_cmp(&m->from.reg, &known) >= 0) {
			p->heard_hi[x] = p->now.hi_ns;
			if (m->type == MSG_ACCEPT || m->type == MSG_COMMIT)
				p->leader_heard_hi = p->now.hi_ns;
		}
	}
	return true;
}

static int on_prepare(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_restart_prepare *q = &m->restart_prepare;
	struct msg_ballot here = promised_here(p);
	struct paxos_held h;
	uint64_t seq;
	int c;

	if (q->epoch < p->epoch)
		return send_decision(p, r, m->from.replica);
	if (q->epoch > p->epoch && !p->registered && p->lc == PAXOS_LC_REGISTERING) {
		/* A restarting incarnation whose sealed state predates epoch q->epoch (a rollback)
		 * enters it; it has no vote to lose there. */
		uint64_t window = p->rs_window_hi;

		paxos_enter_epoch(p, q->epoch);
		p->rs_window_hi = window;
	}
	if (q->epoch > p->epoch || !paxos_stuck(p))
		return TEEMS_OK; /* S8: a replica that is not stuck ignores it */
	c = msg_ballot_cmp(&q->proposal, &here);
	if (c < 0)
		return TEEMS_OK;
	if (c > 0 || !p->rs_answered) {
		if (p->rs_phase && msg_ballot_cmp(&q->proposal, &p->rs_prop) > 0)
			p->rs_phase = 0; /* ours loses */
		TRY(promise(p, r, &q->proposal));
		/* Leave the floor to this proposer for a while. */
		p->rs_next_hi = p->now.hi_ns + 2 * p->cfg.t_op_ns +
				p->random % (p->cfg.t_op_ns ? p->cfg.t_op_ns : 1);
		TRY(persist_sync(p, r, &seq));
	} else {
		seq = p->next_seq - 1; /* a duplicate: the promise is already written */
		/* A proposer waiting for the operator repeats its RESTART_PREPARE to keep the
		 * floor: keep leaving it. */
		p->rs_next_hi = p->now.hi_ns + 2 * p->cfg.t_op_ns +
				p->random % (p->cfg.t_op_ns ? p->cfg.t_op_ns : 1);
	}
	memset(&h, 0, sizeof(h));
	h.kind = HELD_RS_ANSWER;
	h.seq = seq;
	h.to = m->from.replica;
	h.nonce = m->nonce;
	h.ballot = q->proposal;
	return paxos_hold(p, &h);
}

static int check_answers(struct paxos *p, struct paxos_ready *r)
{
	unsigned n = popcount(p->rs_mask);

	if (p->rs_phase == 1 && n >= super_quorum(p, n))
		return start_accept(p, r);
	return TEEMS_OK;
}

static int check_accepts(struct paxos *p, struct paxos_ready *r)
{
	unsigned n = popcount(p->rs_acc_mask);

	if (p->rs_phase == 2 && (p->rs_acc_mask & bit(p->cfg.self)) && n >= super_quorum(p, n))
		return decided(p, r);
	return TEEMS_OK;
}

static int on_answer(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_restart_answer *a = &m->restart_answer;
	uint16_t x = m->from.replica;

	if (a->epoch < p->epoch)
		return send_decision(p, r, x);
	if (p->rs_phase != 1 || a->epoch != p->epoch || m->nonce != p->rs_nonce ||
	    msg_ballot_cmp(&a->proposal, &p->rs_prop) != 0 || a->tag == 0 || (p->rs_mask & bit(x)))
		return TEEMS_OK;
	p->rs_mask |= bit(x);
	p->rs_tags[x] = a->tag;
	if (a->has_accepted && a->accepted_members.count <= QUORUM_MAX_REPLICAS &&
	    (!p->rs_best_set || msg_ballot_cmp(&a->accepted_proposal, &p->rs_best) > 0)) {
		p->rs_best_set = true;
		p->rs_best = a->accepted_proposal;
		p->rs_n_best = copy_list(&a->accepted_members, p->rs_best_m);
	}
	return check_answers(p, r);
}

static int on_accept(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_restart_accept *a = &m->restart_accept;
	struct msg_ballot here = promised_here(p);
	struct paxos_held h;
	uint64_t seq;

	if (a->decided)
		return learn(p, r, a->epoch, &a->proposal, &a->members);
	if (a->epoch < p->epoch)
		return send_decision(p, r, m->from.replica);
	/* Only an incarnation that answered in this epoch accepts; never below its promise. */
	if (a->epoch != p->epoch || !p->rs_answered || msg_ballot_cmp(&a->proposal, &here) < 0 ||
	    a->members.count == 0 || a->members.count > QUORUM_MAX_REPLICAS)
		return TEEMS_OK;
	if (p->cfg.restart_operator) {
		/* recovery = operator: accept only what the operator signed. */
		struct msg_incarnation items[QUORUM_MAX_REPLICAS];
		uint32_t n = copy_list(&a->members, items);

		if (!authorized(p, a->epoch, &a->proposal, items, n, a->state_digest,
				a->authorization.p, a->authorization.len)) {
			p->rs_auth_refused++;
			return TEEMS_OK;
		}
	}
	if (p->rs_phase && msg_ballot_cmp(&a->proposal, &p->rs_prop) > 0)
		p->rs_phase = 0;
	TRY(promise(p, r, &a->proposal));
	p->rs_has_acc = true;
	p->rs_acc = a->proposal;
	p->rs_n_acc = copy_list(&a->members, p->rs_acc_m);
	TRY(persist_sync(p, r, &seq));
	memset(&h, 0, sizeof(h));
	h.kind = HELD_RS_ACCEPTED;
	h.seq = seq;
	h.to = m->from.replica;
	h.nonce = m->nonce;
	h.ballot = a->proposal;
	return paxos_hold(p, &h);
}

static int on_accepted(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_restart_accepted *a = &m->restart_accepted;

	if (a->epoch < p->epoch)
		return send_decision(p, r, m->from.replica);
	if (p->rs_phase != 2 || a->epoch != p->epoch || m->nonce != p->rs_nonce ||
	    msg_ballot_cmp(&a->proposal, &p->rs_prop) != 0)
		return TEEMS_OK;
	p->rs_acc_mask |= bit(m->from.replica);
	return check_accepts(p, r);
}

int paxos_on_restart_msg(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	if (p->cfg.t_restart_ns == 0 || (p->cfg.unsafe & PAXOS_UNSAFE_NO_RECOVERY))
		return TEEMS_OK;
	switch (m->type) {
	case MSG_RESTART_PREPARE:
		return on_prepare(p, r, m);
	case MSG_RESTART_ANSWER:
		return on_answer(p, r, m);
	case MSG_RESTART_ACCEPT:
		return on_accept(p, r, m);
	case MSG_RESTART_ACCEPTED:
		return on_accepted(p, r, m);
	default:
		return TEEMS_OK;
	}
}

static int send_prepares(struct paxos *p, struct paxos_ready *r)
{
	for (unsigned i = 0; i < p->n; i++) {
		struct paxos_send *s;

		if (i == p->cfg.self)
			continue;
		s = paxos_send_new(p, r, (uint16_t)i, MSG_RESTART_PREPARE, p->rs_nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.restart_prepare.epoch = p->epoch;
		s->msg.restart_prepare.proposal = p->rs_prop;
	}
	return TEEMS_OK;
}

int paxos_release_restart(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	struct paxos_send *s;

	switch (h->kind) {
	case HELD_RS_PREPARE:
		if (p->rs_phase != 1 || msg_ballot_cmp(&h->ballot, &p->rs_prop) != 0)
			return TEEMS_OK;
		TRY(send_prepares(p, r));
		return check_answers(p, r);
	case HELD_RS_ANSWER: {
		struct msg_restart_answer *a;

		if (p->rs_epoch != p->epoch || msg_ballot_cmp(&h->ballot, &p->rs_promised) != 0)
			return TEEMS_OK;
		s = paxos_send_new(p, r, h->to, MSG_RESTART_ANSWER, h->nonce);
		if (!s)
			return TEEMS_ENOMEM;
		a = &s->msg.restart_answer;
		a->epoch = p->epoch;
		a->proposal = h->ballot;
		a->promised = p->promised;
		a->commit_index = p->commit_index;
		a->last_accepted = p->last_slot;
		a->tag = p->rs_tag;
		TRY(paxos_regvec(p, r, &a->regvec));
		if (p->rs_has_acc) {
			a->has_accepted = true;
			a->accepted_proposal = p->rs_acc;
			a->accepted_members.count = p->rs_n_acc;
			a->accepted_members.items = members_out(p, r);
			if (!a->accepted_members.items)
				return TEEMS_ENOMEM;
		}
		return TEEMS_OK;
	}
	case HELD_RS_ACCEPTED:
		if (p->rs_epoch != p->epoch || !p->rs_has_acc ||
		    msg_ballot_cmp(&h->ballot, &p->rs_acc) != 0)
			return TEEMS_OK;
		s = paxos_send_new(p, r, h->to, MSG_RESTART_ACCEPTED, h->nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.restart_accepted.epoch = p->epoch;
		s->msg.restart_accepted.proposal = h->ballot;
		return paxos_regvec(p, r, &s->msg.restart_accepted.regvec);
	default:
		if (p->rs_phase != 2 || msg_ballot_cmp(&h->ballot, &p->rs_prop) != 0)
			return TEEMS_OK;
		p->rs_acc_mask |= bit(p->cfg.self);
		return check_accepts(p, r);
	}
}

int paxos_restart_tick(struct paxos *p, struct paxos_ready *r)
{
	bool stuck;

	if (p->cfg.t_restart_ns == 0 || (p->cfg.unsafe & PAXOS_UNSAFE_NO_RECOVERY))
		return TEEMS_OK;
	/* Installed by a restart: not stuck while fencing and recovering (bounded). */
	if (p->rs_fence && (p->lc == PAXOS_LC_FRESH ||
			    p->now.hi_ns - p->rs_window_hi >= 4 * p->cfg.t_restart_ns)) {
		p->rs_fence = false;
		p->rs_window_hi = p->now.hi_ns; /* its peers become fresh about now too */
	}
	stuck = paxos_stuck(p);
	if (p->rs_answered && !stuck && !p->rs_fence &&
	    p->now.hi_ns - p->rs_window_hi >= p->cfg.t_restart_ns) {
		/* The epoch is healthy again: this incarnation promised not to vote in it, so it
		 * comes back only as a new incarnation. */
		paxos_halt(p);
		return TEEMS_OK;
	}
	if (!stuck)
		return TEEMS_OK;
	if (p->rs_phase == PAXOS_RESTART_WAITING) {
		/* recovery = operator: the value waits, unchanged, for its authorization (an
		 * abandoned proposal would change p and void the operator's signature). */
		if (p->rs_authorized) {
			p->rs_authorized = false;
			p->rs_n_acc = p->rs_n_pend;
			memcpy(p->rs_acc_m, p->rs_pend_m, p->rs_n_pend * sizeof(p->rs_pend_m[0]));
			return accept_own(p, r);
		}
		if (p->now.hi_ns - p->rs_keep_hi >= p->cfg.t_op_ns) {
			p->rs_keep_hi = p->now.hi_ns;
			return send_prepares(p, r);
		}
		return TEEMS_OK;
	}
	if (p->rs_phase && p->now.hi_ns - p->rs_sent_hi > 2 * p->cfg.t_op_ns) {
		p->rs_phase = 0; /* abandoned: retry later with a higher proposal */
		p->rs_next_hi = p->now.hi_ns + p->random % (p->cfg.t_op_ns ? p->cfg.t_op_ns : 1);
	}
	if (!p->rs_phase && p->now.hi_ns >= p->rs_next_hi)
		return propose(p, r);
	return TEEMS_OK;
}
