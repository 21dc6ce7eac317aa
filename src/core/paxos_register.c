/* RR-Paxos: the configuration in the log, REGISTER, the discard and halt rules, and the fence
 * (DESIGN.md section 4, steps 2-4).
 *
 * Registration indexes are (epoch, slot of the REGISTER entry). Members of the initial
 * configuration are registered at (0, 0); an epoch restart (paxos_restart.c) registers every
 * member of epoch E at (E, 0), and a REGISTER whose expected previous index is from an earlier
 * epoch than ours is void (it was proposed before the restart). The applied configuration maps each
 * replica to its newest committed registration (index and key); registration vectors add, per
 * replica, the newest accepted or adopted REGISTER above the commit index, so a superseded
 * incarnation's votes are discarded from the moment the new REGISTER is accepted, not when it is
 * applied. */
#include <string.h>

#include "common/alloc.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

static uint64_t bit(uint16_t replica)
{
	return 1ull << replica;
}

static bool checks_on(const struct paxos *p)
{
	return !(p->cfg.unsafe & PAXOS_UNSAFE_NO_INCARNATION_CHECK);
}

void paxos_slot_classify(struct paxos_slot *s)
{
	struct paxos_register_entry e;

	s->is_register = false;
	s->reg_replica = 0;
	s->reg_prev_epoch = 0;
	if (s->accepted && s->len && paxos_config_entry(s->value, s->len, &e) &&
	    e.replica < QUORUM_MAX_REPLICAS) {
		s->is_register = true;
		s->reg_replica = e.replica;
		s->reg_prev_epoch = e.expected_previous.epoch;
	}
}

struct msg_regidx paxos_known_reg(const struct paxos *p, uint16_t replica)
{
	struct msg_regidx none = {0, 0};

	for (uint64_t s = p->last_slot; s > p->commit_index; s--) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->accepted && sl->is_register && sl->reg_replica == replica &&
		    sl->reg_prev_epoch >= p->epoch) {
			struct msg_regidx idx = {p->epoch, s};

			return idx;
		}
	}
	if (replica < QUORUM_MAX_REPLICAS && p->regs[replica].set)
		return p->regs[replica].idx;
	return none;
}

/* Every replica's newest known registration, in one pass over the open slots. */
void paxos_known_regs(const struct paxos *p, struct msg_regidx out[QUORUM_MAX_REPLICAS])
{
	for (unsigned i = 0; i < p->n; i++)
		out[i] = p->regs[i].set ? p->regs[i].idx : (struct msg_regidx){0, 0};
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->accepted && sl->is_register && sl->reg_replica < p->n &&
		    sl->reg_prev_epoch >= p->epoch) {
			out[sl->reg_replica].epoch = p->epoch;
			out[sl->reg_replica].slot = s;
		}
	}
}

int paxos_regvec(struct paxos *p, struct paxos_ready *r, struct msg_incarnation_list *out)
{
	struct msg_regidx known[QUORUM_MAX_REPLICAS];
	struct msg_incarnation *items;
	uint32_t n = 0;

	memset(out, 0, sizeof(*out));
	paxos_known_regs(p, known);
	for (unsigned i = 0; i < p->n; i++)
		if (known[i].epoch || known[i].slot)
			n++;
	if (!n)
		return TEEMS_OK;
	items = paxos_scratch(r, n * sizeof(*items));
	if (!items)
		return TEEMS_ENOMEM;
	n = 0;
	for (unsigned i = 0; i < p->n; i++) {
		if (!known[i].epoch && !known[i].slot)
			continue;
		items[n].replica = (uint16_t)i;
		items[n].reg = known[i];
		n++;
	}
	out->count = n;
	out->items = items;
	return TEEMS_OK;
}

/* ---- the applied configuration ---- */

static bool key_known(const struct paxos *p, const uint8_t key[MSG_PUBLIC_KEY_SIZE])
{
	for (size_t i = 0; i < p->n_keys; i++)
		if (memcmp(p->keys[i], key, MSG_PUBLIC_KEY_SIZE) == 0)
			return true;
	return false;
}

struct msg_regidx paxos_config_applied_index(const struct paxos *p)
{
	struct msg_regidx best = {p->epoch, 0};

	for (unsigned i = 0; i < p->n; i++)
		if (p->regs[i].set && paxos_regidx_cmp(&p->regs[i].idx, &best) > 0)
			best = p->regs[i].idx;
	return best;
}

struct msg_regidx paxos_config_accepted_index(const struct paxos *p)
{
	struct msg_regidx best = paxos_config_applied_index(p);
	uint64_t from = p->applied > p->log_base ? p->applied : p->log_base;

	/* Newest first: the first REGISTER found above the applied slot is the highest. */
	for (uint64_t s = p->last_slot; s > from; s--) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->accepted && sl->is_register && sl->reg_prev_epoch >= p->epoch) {
			struct msg_regidx idx = {p->epoch, s};

			if (paxos_regidx_cmp(&idx, &best) > 0)
				best = idx;
			break;
		}
	}
	return best;
}

/* Records the REGISTER of slot in the configuration: 0, 1 (not a REGISTER) or
 * TEEMS_ENOMEM. */
static int config_note(struct paxos *p, uint64_t slot, struct paxos_register_entry *e)
{
	const struct paxos_slot *sl = PSLOT(p, slot);

	if (!sl->is_register || !paxos_config_entry(sl->value, sl->len, e) || e->replica >= p->n ||
	    e->expected_previous.epoch < p->epoch)
		return 1;
	p->regs[e->replica].set = true;
	p->regs[e->replica].idx.epoch = p->epoch;
	p->regs[e->replica].idx.slot = slot;
	memcpy(p->regs[e->replica].key, e->public_key, MSG_PUBLIC_KEY_SIZE);
	if (key_known(p, e->public_key))
		return 0;
	if (p->n_keys == p->cap_keys) {
		size_t ncap = p->cap_keys ? p->cap_keys * 2 : 8;
		void *n = teems_realloc(p->keys, ncap * sizeof(*p->keys));

		if (!n)
			return TEEMS_ENOMEM;
		p->keys = n;
		p->cap_keys = ncap;
	}
	memcpy(p->keys[p->n_keys++], e->public_key, MSG_PUBLIC_KEY_SIZE);
	return 0;
}

int paxos_config_note(struct paxos *p, uint64_t slot)
{
	struct paxos_register_entry e;

	return config_note(p, slot, &e) < 0 ? TEEMS_ENOMEM : TEEMS_OK;
}

void paxos_halt(struct paxos *p)
{
	p->halted = true;
}

static void start_fence(struct paxos *p)
{
	p->lc = PAXOS_LC_FENCING;
	p->fence_start_lo = p->now.lo_ns;
	p->fence_epoch = p->now.epoch;
}

/* Our REGISTER committed at idx: from now on our header and ballots carry it. */
static void registered(struct paxos *p, const struct msg_regidx *idx)
{
	p->registered = true;
	p->reg = *idx;
	p->reg_record = true;
	start_fence(p);
}

int paxos_config_apply(struct paxos *p, struct paxos_ready *r, uint64_t slot)
{
	struct paxos_register_entry e;
	struct msg_regidx idx = {p->epoch, slot};
	int rc = config_note(p, slot, &e);

	if (rc)
		return rc < 0 ? rc : TEEMS_OK;
	if (e.replica == p->cfg.self) {
		bool ours = memcmp(e.public_key, p->cfg.public_key, MSG_PUBLIC_KEY_SIZE) == 0;

		if (p->registered) {
			if (paxos_regidx_cmp(&idx, &p->reg) > 0 && checks_on(p))
				paxos_halt(p); /* a newer incarnation of our replica */
		} else if (ours && p->lc == PAXOS_LC_REGISTERING) {
			registered(p, &idx);
		} else if (!ours && paxos_regidx_cmp(&idx, &p->reg_expected) > 0 && checks_on(p)) {
			paxos_halt(p); /* unregistered, and another key won our replica */
		}
	}
	return paxos_register_applied(p, r, slot);
}

void paxos_config_installed(struct paxos *p)
{
	const struct paxos_reg *g = &p->regs[p->cfg.self];
	bool ours;

	/* The rules of paxos_config_apply for our own replica, on the configuration of a
	 * snapshot we installed instead of applying its slots one by one. */
	if (!g->set)
		return;
	ours = memcmp(g->key, p->cfg.public_key, MSG_PUBLIC_KEY_SIZE) == 0;
	if (p->registered) {
		if (paxos_regidx_cmp(&g->idx, &p->reg) > 0 && checks_on(p))
			paxos_halt(p);
	} else if (ours && p->lc == PAXOS_LC_REGISTERING) {
		registered(p, &g->idx);
	} else if (!ours && paxos_regidx_cmp(&g->idx, &p->reg_expected) > 0 && checks_on(p)) {
		paxos_halt(p);
	}
}

/* ---- halt ---- */

static const struct msg_incarnation_list *regvec_of(const struct msg *m)
{
	switch (m->type) {
	case MSG_PROMISE:
		return &m->promise.regvec;
	case MSG_ACCEPTED:
		return &m->accepted.regvec;
	case MSG_HEARTBEAT_ACK:
		return &m->heartbeat_ack.regvec;
	case MSG_READ_INDEX_ACK:
		return &m->read_index_ack.regvec;
	case MSG_READ_REPLY:
		return &m->read_reply.regvec;
	case MSG_RECOVERY_REPLY:
		return &m->recovery_reply.regvec;
	default:
		return NULL;
	}
}

void paxos_check_halt(struct paxos *p, const struct msg *m)
{
	const struct msg_incarnation_list *rv;
	struct msg_regidx idx;

	if (!checks_on(p) || !p->registered)
		return;
	rv = regvec_of(m);
	if (rv && msg_regvec_find(rv, p->cfg.self, &idx) && paxos_regidx_cmp(&idx, &p->reg) > 0) {
		paxos_halt(p);
		return;
	}
	if (m->type == MSG_ACCEPT) {
		struct msg_iter it;
		struct msg_bytes v;
		uint64_t slot = m->accept.first_slot;
		struct paxos_register_entry e;

		msg_values_begin(&it, &m->accept.values);
		for (; msg_values_next(&it, &v); slot++) {
			struct msg_regidx at = {p->epoch, slot};

			if (paxos_config_entry(v.p, v.len, &e) && e.replica == p->cfg.self &&
			    e.expected_previous.epoch >= p->epoch &&
			    paxos_regidx_cmp(&at, &p->reg) > 0) {
				paxos_halt(p);
				return;
			}
		}
	}
}

/* ---- collections: the discard rule ---- */

void paxos_col_reset(struct paxos_collection *c)
{
	memset(c, 0, sizeof(*c));
}

void paxos_col_self(struct paxos *p, struct paxos_collection *c)
{
	c->members |= bit(p->cfg.self);
	c->member[p->cfg.self] = p->reg;
}

void paxos_col_prune_known(const struct paxos *p, struct paxos_collection *c,
			   const struct msg_regidx known[QUORUM_MAX_REPLICAS])
{
	for (uint16_t x = 0; x < p->n; x++) {
		const struct msg_regidx *newest = &known[x];

		if (!(c->members & bit(x)) || x == p->cfg.self)
			continue;
		if ((c->seen_mask & bit(x)) && paxos_regidx_cmp(&c->seen[x], newest) > 0)
			newest = &c->seen[x];
		if (paxos_regidx_cmp(&c->member[x], newest) < 0)
			c->members &= ~bit(x);
	}
}

void paxos_col_prune(const struct paxos *p, struct paxos_collection *c)
{
	struct msg_regidx known[QUORUM_MAX_REPLICAS];

	if (!checks_on(p))
		return;
	paxos_known_regs(p, known);
	paxos_col_prune_known(p, c, known);
}

void paxos_col_seen(const struct paxos *p, struct paxos_collection *c,
		    const struct msg_incarnation_list *regvec)
{
	struct msg_iter it;
	struct msg_incarnation inc;

	(void)p;
	msg_incarnations_begin(&it, regvec);
	while (msg_incarnations_next(&it, &inc)) {
		if (inc.replica >= QUORUM_MAX_REPLICAS)
			continue;
		if (!(c->seen_mask & bit(inc.replica)) ||
		    paxos_regidx_cmp(&inc.reg, &c->seen[inc.replica]) > 0)
			c->seen[inc.replica] = inc.reg;
		c->seen_mask |= bit(inc.replica);
	}
}

bool paxos_col_member(struct paxos *p, struct paxos_collection *c, const struct msg *m)
{
	uint16_t x = m->from.replica;

	if (x >= p->n)
		return false;
	if (!checks_on(p)) {
		c->members |= bit(x);
		c->member[x] = m->from.reg;
		return true;
	}
	/* Of two incarnations of one replica, only the newer is ever counted. */
	if ((c->members & bit(x)) && paxos_regidx_cmp(&c->member[x], &m->from.reg) > 0)
		return false;
	c->members |= bit(x);
	c->member[x] = m->from.reg;
	paxos_col_prune(p, c);
	return (c->members & bit(x)) != 0;
}

/* ---- REGISTER at the leader ---- */

static int send_result(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t nonce,
		       enum msg_register_status status, const struct msg_regidx *index,
		       const struct msg_regidx *current)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_REGISTER_RESULT, nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.register_result.status = status;
	s->msg.register_result.replica = to;
	if (index)
		s->msg.register_result.index = *index;
	if (current)
		s->msg.register_result.current = *current;
	s->msg.register_result.leader = p->leader;
	return TEEMS_OK;
}

static int wait_for(struct paxos *p, uint16_t replica, uint64_t slot, uint64_t nonce)
{
	for (size_t i = 0; i < p->n_reg_wait; i++) {
		if (p->reg_wait[i].replica == replica && p->reg_wait[i].slot == slot) {
			p->reg_wait[i].nonce = nonce; /* answer the newest request */
			return TEEMS_OK;
		}
	}
	if (p->n_reg_wait == p->cap_reg_wait) {
		size_t ncap = p->cap_reg_wait ? p->cap_reg_wait * 2 : 8;
		void *n = teems_realloc(p->reg_wait, ncap * sizeof(*p->reg_wait));

		if (!n)
			return TEEMS_ENOMEM;
		p->reg_wait = n;
		p->cap_reg_wait = ncap;
	}
	p->reg_wait[p->n_reg_wait].replica = replica;
	p->reg_wait[p->n_reg_wait].slot = slot;
	p->reg_wait[p->n_reg_wait].nonce = nonce;
	p->n_reg_wait++;
	return TEEMS_OK;
}

int paxos_register_applied(struct paxos *p, struct paxos_ready *r, uint64_t slot)
{
	size_t keep = 0;
	int rc = TEEMS_OK;

	for (size_t i = 0; i < p->n_reg_wait; i++) {
		struct paxos_reg_wait w = p->reg_wait[i];
		const struct paxos_slot *sl = paxos_slot_get(p, w.slot);
		struct msg_regidx idx = {p->epoch, w.slot};

		if (w.slot > slot) {
			p->reg_wait[keep++] = w;
			continue;
		}
		/* Applied: answer if the slot still holds that replica's REGISTER (another value
		 * may have won the slot; the incarnation then retries). */
		if (!rc && p->role == PAXOS_LEADER && w.slot <= p->commit_index && sl &&
		    sl->is_register && sl->reg_replica == w.replica)
			rc = send_result(p, r, w.replica, w.nonce, MSG_REGISTER_COMMITTED, &idx,
					 &idx);
	}
	p->n_reg_wait = keep;
	return rc;
}

int paxos_on_register(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_register *rg = &m->register_;
	struct msg_regidx latest;
	uint8_t latest_key[MSG_PUBLIC_KEY_SIZE];
	bool has_key = false, pending = false;
	uint64_t slot;
	uint32_t len;
	uint8_t *value;
	int rc;

	if (rg->replica != m->from.replica || rg->replica >= p->n)
		return TEEMS_OK; /* an incarnation registers only itself */
	if (p->role != PAXOS_LEADER || p->suspicious)
		return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_NOT_LEADER, NULL,
				   NULL);
	latest = paxos_known_reg(p, rg->replica);
	if (latest.slot > p->commit_index) {
		struct paxos_register_entry e;
		const struct paxos_slot *sl = PSLOT(p, latest.slot);

		pending = true;
		if (paxos_config_entry(sl->value, sl->len, &e)) {
			memcpy(latest_key, e.public_key, MSG_PUBLIC_KEY_SIZE);
			has_key = true;
		}
	} else if (p->regs[rg->replica].set) {
		memcpy(latest_key, p->regs[rg->replica].key, MSG_PUBLIC_KEY_SIZE);
		has_key = true;
	}
	if (has_key && memcmp(latest_key, rg->public_key, MSG_PUBLIC_KEY_SIZE) == 0) {
		/* A retry of the newest registration: answer once it is applied. */
		if (pending)
			return wait_for(p, rg->replica, latest.slot, m->nonce);
		return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_COMMITTED, &latest,
				   &latest);
	}
	if (key_known(p, rg->public_key))
		return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_KEY_USED, NULL,
				   &latest);
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++) {
		struct paxos_register_entry e;
		const struct paxos_slot *sl = PSLOT(p, s);

		if (sl->is_register && paxos_config_entry(sl->value, sl->len, &e) &&
		    memcmp(e.public_key, rg->public_key, MSG_PUBLIC_KEY_SIZE) == 0)
			return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_KEY_USED,
					   NULL, &latest);
	}
	if (paxos_regidx_cmp(&latest, &rg->expected_previous) != 0)
		return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_MISMATCH, NULL,
				   &latest);
	/* The compare-and-set holds against everything in our log, accepted or committed:
	 * propose the REGISTER in the next slot. */
	len = paxos_register_encode(rg, NULL);
	if (len > p->cfg.max_slot_bytes)
		return send_result(p, r, m->from.replica, m->nonce, MSG_REGISTER_REJECTED, NULL,
				   &latest);
	value = teems_malloc(len);
	if (!value)
		return TEEMS_ENOMEM;
	paxos_register_encode(rg, value);
	slot = p->last_slot + 1;
	rc = paxos_slot_set(p, r, slot, &p->promised, value, len);
	teems_free(value);
	TRY(rc);
	TRY(wait_for(p, rg->replica, slot, m->nonce));
	TRY(paxos_persist(p, r, slot, 1, p->cfg.sync != PAXOS_SYNC_NONE, NULL));
	return paxos_send_accepts(p, r, slot, slot, -1);
}

/* ---- REGISTER at the restarted incarnation ---- */

static int send_register(struct paxos *p, struct paxos_ready *r)
{
	struct paxos_send *s;
	uint16_t to = p->leader;

	if (to >= p->n || to == p->cfg.self) {
		do
			p->reg_target = (uint16_t)((p->reg_target + 1) % p->n);
		while (p->reg_target == p->cfg.self);
		to = p->reg_target;
	}
	if (!p->reg_nonce)
		p->reg_nonce = paxos_new_nonce(p);
	s = paxos_send_new(p, r, to, MSG_REGISTER, p->reg_nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.register_.replica = p->cfg.self;
	memcpy(s->msg.register_.public_key, p->cfg.public_key, MSG_PUBLIC_KEY_SIZE);
	s->msg.register_.quote.p = p->cfg.quote;
	s->msg.register_.quote.len = p->cfg.quote_len;
	s->msg.register_.expected_previous = p->reg_expected;
	p->reg_next_send = p->now.hi_ns + p->cfg.register_retry_ns;
	return TEEMS_OK;
}

int paxos_on_register_result(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_register_result *res = &m->register_result;

	if (p->lc != PAXOS_LC_REGISTERING || !p->reg_nonce || m->nonce != p->reg_nonce ||
	    res->replica != p->cfg.self)
		return TEEMS_OK;
	/* The cluster restarted into a later epoch meanwhile (section 6): enter it. */
	if (res->current.epoch > p->epoch)
		paxos_enter_epoch(p, res->current.epoch);
	if (res->status == MSG_REGISTER_COMMITTED && res->index.epoch > p->epoch)
		paxos_enter_epoch(p, res->index.epoch);
	switch (res->status) {
	case MSG_REGISTER_COMMITTED:
		p->leader = m->from.replica;
		registered(p, &res->index);
		/* A record of our registration (informational: a restart re-registers). */
		TRY(paxos_persist(p, r, 0, 0, false, NULL));
		if (p->cfg.unsafe & PAXOS_UNSAFE_NO_FENCE)
			return paxos_recover_start(p, r);
		return TEEMS_OK;
	case MSG_REGISTER_MISMATCH:
		p->reg_expected = res->current; /* re-read from the leader, retry at once */
		p->leader = m->from.replica;
		return send_register(p, r);
	case MSG_REGISTER_KEY_USED:
		if (checks_on(p))
			paxos_halt(p); /* our key was registered and then superseded */
		return TEEMS_OK;
	case MSG_REGISTER_NOT_LEADER:
		if (res->leader < p->n && res->leader != p->cfg.self &&
		    res->leader != m->from.replica) {
			p->leader = res->leader;
			return send_register(p, r);
		}
		if (p->leader == m->from.replica)
			p->leader = MSG_NO_REPLICA;
		return TEEMS_OK;
	case MSG_REGISTER_REJECTED:
		return TEEMS_OK;
	}
	return TEEMS_OK;
}

int paxos_lifecycle_tick(struct paxos *p, struct paxos_ready *r)
{
	switch (p->lc) {
	case PAXOS_LC_REGISTERING:
		if (p->now.hi_ns >= p->reg_next_send)
			return send_register(p, r);
		return TEEMS_OK;
	case PAXOS_LC_FENCING:
		/* T_fence on lo; a taint restarts it in full (section 4, step 4). */
		if (p->now.epoch != p->fence_epoch) {
			start_fence(p);
			return TEEMS_OK;
		}
		/* After an epoch restart (section 6, "After") the wait counts from our first
		 * answer; then the ordinary recovery read (R_Q(s) members, every one suspicious)
		 * merges the members' states. */
		if ((p->cfg.unsafe & PAXOS_UNSAFE_NO_FENCE) ||
		    p->now.lo_ns - p->fence_start_lo >= paxos_fence_ns(&p->cfg))
			return paxos_recover_start(p, r);
		return TEEMS_OK;
	case PAXOS_LC_RECOVERING:
		/* Waiting for a snapshot the read showed we need: T_op for the fetch to start
		 * moving, then as long as chunks keep arriving (paxos_snapshot.c drops a transfer
		 * that stalls for T_op), else a new collection. */
		if (p->rec_wait_snap && !p->rec_finishing) {
			if (p->now.hi_ns - p->rec_wait_hi > p->cfg.t_op_ns &&
			    !(p->xfer_on && p->now.hi_ns - p->xfer_hi <= p->cfg.t_op_ns))
				return paxos_recover_start(p, r);
			return TEEMS_OK;
		}
		if (!p->rec_finishing && (p->now.hi_ns - p->rec_sent_hi > p->cfg.t_op_ns ||
					  p->now.epoch != p->rec_epoch))
			return paxos_recover_start(p, r); /* abandoned: a new collection */
		return TEEMS_OK;
	default:
		return TEEMS_OK;
	}
}
