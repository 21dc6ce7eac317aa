/* RR-Paxos: the step function, the log, persistence records and withheld messages
 * (DESIGN.md sections 5 and 7). Elections are in paxos_elect.c, phase 2 in paxos_accept.c. */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void paxos_config_default(struct paxos_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync = PAXOS_SYNC_RR;
	cfg->election_timeout_ns = 150ull * 1000 * 1000;
	cfg->heartbeat_ns = 50ull * 1000 * 1000;
	cfg->t_op_ns = 500ull * 1000 * 1000;
	cfg->max_slot_bytes = 64u << 10;
	cfg->max_accept_slots = 64;
	cfg->max_inflight = 64;
	cfg->max_queue = 4096;
	cfg->t_lease_ns = 2000ull * 1000 * 1000;
	cfg->t_cfg_ns = 2000ull * 1000 * 1000;
	cfg->rho_ppm = 1000;
	cfg->register_retry_ns = 100ull * 1000 * 1000;
	cfg->t_restart_ns = 0; /* off unless the shell sets it (section 6) */
	cfg->snapshot_chunk = PAXOS_SNAPSHOT_CHUNK_DEFAULT;
}

uint64_t paxos_fence_ns(const struct paxos_config *cfg)
{
	uint64_t base = cfg->t_op_ns + cfg->t_lease_ns + cfg->t_cfg_ns;

	/* base * (1 + rho), rounded up; base < 2^60 in any sane configuration */
	return base + (base / 1000000) * cfg->rho_ppm +
	       ((base % 1000000) * cfg->rho_ppm + 999999) / 1000000;
}

int paxos_new(struct paxos **out, const struct paxos_config *cfg, char *errbuf)
{
	struct paxos *p;

	*out = NULL;
	if (cfg->quorum.n == 0 || cfg->quorum.n > QUORUM_MAX_REPLICAS ||
	    quorum_n_for(cfg->quorum.f, cfg->quorum.m_r) != cfg->quorum.n)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: quorum not from quorum_init");
	if (cfg->self >= cfg->quorum.n)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: self %u >= N %u", cfg->self,
				  cfg->quorum.n);
	if (cfg->sync > PAXOS_SYNC_NONE)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: unknown sync policy");
	if (cfg->election_timeout_ns == 0 || cfg->heartbeat_ns == 0 || cfg->t_op_ns == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: timeouts must be positive");
	if (cfg->max_slot_bytes < 64 || cfg->max_slot_bytes > MSG_MAX_BLOB)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: max_slot_bytes out of 64..%u",
				  MSG_MAX_BLOB);
	if (cfg->max_accept_slots == 0 || cfg->max_accept_slots > MSG_MAX_BATCH)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: max_accept_slots out of 1..%u",
				  MSG_MAX_BATCH);
	if ((uint64_t)cfg->max_accept_slots * cfg->max_slot_bytes > MSG_MAX_FRAME / 2)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "paxos: max_accept_slots * max_slot_bytes exceeds a frame");
	if (cfg->max_inflight == 0 || cfg->max_queue == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: max_inflight and max_queue >= 1");
	if (cfg->register_retry_ns == 0)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "paxos: register_retry_ns must be positive");
	if (cfg->rho_ppm >= 1000000)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: rho_ppm must be below 1000000");
	if (cfg->snapshot_chunk > MSG_MAX_CHUNK)
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: snapshot_chunk above %u",
				  MSG_MAX_CHUNK);
	p = teems_calloc(1, sizeof(*p));
	if (!p)
		return TEEMS_ENOMEM;
	p->md = EVP_MD_CTX_new();
	if (!p->md) {
		teems_free(p);
		return TEEMS_ECRYPTO;
	}
	p->cfg = *cfg;
	p->n = cfg->quorum.n;
	p->w_q = quorum_write(&cfg->quorum);
	if (cfg->unsafe & PAXOS_UNSAFE_CFT_QUORUMS)
		p->w_q = p->n / 2 + 1;
	p->suspicious = cfg->suspicious;
	p->registered = true;
	p->reg = cfg->reg;
	p->epoch = cfg->restarted ? 0 : cfg->reg.epoch;
	for (unsigned i = 0; i < MSG_PUBLIC_KEY_SIZE; i += 8)
		p->rs_tag = splitmix64(p->rs_tag ^ get_le64(cfg->public_key + i));
	if (p->rs_tag == 0)
		p->rs_tag = 1;
	p->lc = PAXOS_LC_FRESH;
	if (cfg->restarted)
		paxos_mark_restarted(p);
	p->role = PAXOS_FOLLOWER;
	p->leader = MSG_NO_REPLICA;
	p->next_seq = 1;
	p->random = splitmix64(0x7465656d73ull ^ cfg->self); /* until the first tick's input */
	if (paxos_lease_init(p) != TEEMS_OK) {
		paxos_free(p);
		return teems_errf(errbuf, TEEMS_EINVAL, "paxos: leader lease parameters");
	}
	*out = p;
	return TEEMS_OK;
}

void paxos_free(struct paxos *p)
{
	if (!p)
		return;
	for (uint64_t i = 0; i < p->last_slot - p->log_base; i++)
		teems_free(p->log[i].value);
	teems_free(p->log);
	paxos_snapshot_free(p);
	paxos_cand_clear(p);
	teems_free(p->cand_log);
	for (size_t i = 0; i < p->n_queue; i++)
		teems_free(p->queue[i].command);
	teems_free(p->queue);
	teems_free(p->pending);
	teems_free(p->held);
	teems_free(p->keys);
	teems_free(p->reg_wait);
	teems_free(p->rounds);
	teems_free(p->ri_wait);
	teems_free(p->ri_fly);
	for (size_t i = 0; i < p->n_oreads; i++)
		teems_free(p->oreads[i].result);
	teems_free(p->oreads);
	EVP_MD_CTX_free(p->md);
	teems_free(p);
}

void paxos_mark_restarted(struct paxos *p)
{
	p->restarted = true;
	if (p->cfg.unsafe & PAXOS_UNSAFE_NO_RECOVERY) {
		/* The naive restart: carry on as the previous incarnation. */
		p->suspicious = false;
		return;
	}
	p->suspicious = true;
	p->registered = false;
	memset(&p->reg, 0, sizeof(p->reg));
	p->lc = PAXOS_LC_REGISTERING;
}

unsigned paxos_vote_quorum(const struct paxos *p)
{
	return p->w_q;
}

bool paxos_suspicion_ignored(const struct paxos *p)
{
	return (p->cfg.unsafe & PAXOS_UNSAFE_CFT_QUORUMS) != 0;
}

int paxos_counted_add(struct paxos *p, struct paxos_ready *r, enum paxos_counted_kind kind,
		      uint64_t id, const struct paxos_collection *col)
{
	struct paxos_counted *c;

	(void)p;
	if (core_grow((void **)&r->counted, &r->cap_counted, r->n_counted + 1, sizeof(*c)))
		return TEEMS_ENOMEM;
	c = &r->counted[r->n_counted++];
	c->kind = kind;
	c->id = id;
	c->n = 0;
	for (uint16_t i = 0; i < QUORUM_MAX_REPLICAS; i++) {
		if (!(col->members & (1ull << i)))
			continue;
		c->members[c->n].replica = i;
		c->members[c->n].reg = col->member[i];
		c->n++;
	}
	return TEEMS_OK;
}

/* ---- the ready ---- */

void paxos_ready_init(struct paxos_ready *r)
{
	memset(r, 0, sizeof(*r));
}

static void ready_clear(struct paxos_ready *r)
{
	core_arena_clear(&r->scratch);
	r->n_persist = r->n_sends = r->n_applies = r->n_notes = r->n_counted = r->n_execs = 0;
	r->n_opt_reads = 0;
	r->halted = false;
	memset(&r->snapshot, 0, sizeof(r->snapshot));
}

void paxos_ready_free(struct paxos_ready *r)
{
	core_arena_free(&r->scratch);
	teems_free(r->persist);
	teems_free(r->sends);
	teems_free(r->applies);
	teems_free(r->notes);
	teems_free(r->counted);
	teems_free(r->execs);
	teems_free(r->opt_reads);
	memset(r, 0, sizeof(*r));
}

int paxos_defer_free(struct paxos_ready *r, void *ptr)
{
	/* On failure the pointer may still be referenced by this step's outputs, so it is leaked
	 * rather than freed early; the caller reports ENOMEM anyway. */
	return core_arena_adopt(&r->scratch, ptr);
}

void *paxos_scratch(struct paxos_ready *r, size_t size)
{
	return core_arena_alloc(&r->scratch, size);
}

struct paxos_send *paxos_send_new(struct paxos *p, struct paxos_ready *r, uint16_t to,
				  enum msg_type type, uint64_t nonce)
{
	struct paxos_send *s;

	if (core_grow((void **)&r->sends, &r->cap_sends, r->n_sends + 1, sizeof(*s)))
		return NULL;
	s = &r->sends[r->n_sends++];
	memset(s, 0, sizeof(*s));
	s->to = to;
	s->msg.type = type;
	s->msg.from.replica = p->cfg.self;
	s->msg.from.reg = p->reg;
	s->msg.suspicious = p->suspicious;
	s->msg.nonce = nonce;
	return s;
}

int paxos_note(struct paxos_ready *r, uint64_t client_id, uint64_t request_id,
	       enum paxos_outcome outcome, uint64_t slot, uint16_t leader)
{
	struct paxos_note *n;

	TRY(core_grow((void **)&r->notes, &r->cap_notes, r->n_notes + 1, sizeof(*n)));
	n = &r->notes[r->n_notes++];
	memset(n, 0, sizeof(*n));
	n->client_id = client_id;
	n->request_id = request_id;
	n->outcome = outcome;
	n->slot = slot;
	n->leader = leader;
	return TEEMS_OK;
}

/* ---- the log ---- */

struct paxos_slot *paxos_slot_get(struct paxos *p, uint64_t slot)
{
	if (slot <= p->log_base || slot > p->last_slot)
		return NULL; /* compacted (in the snapshot), or beyond the log */
	return PSLOT(p, slot);
}

int paxos_log_reserve(struct paxos *p, uint64_t slot)
{
	uint64_t ncap;
	struct paxos_slot *n;

	if (slot <= p->log_base + p->log_cap)
		return TEEMS_OK;
	slot -= p->log_base; /* the array holds the slots above the snapshot */
	ncap = p->log_cap ? p->log_cap * 2 : 256;
	while (ncap < slot)
		ncap *= 2;
	n = teems_realloc(p->log, ncap * sizeof(*n));
	if (!n)
		return TEEMS_ENOMEM;
	memset(n + p->log_cap, 0, (ncap - p->log_cap) * sizeof(*n));
	p->log = n;
	p->log_cap = ncap;
	return TEEMS_OK;
}

int paxos_slot_set(struct paxos *p, struct paxos_ready *r, uint64_t slot,
		   const struct msg_ballot *b, const uint8_t *value, uint32_t len)
{
	struct paxos_slot *s;
	uint8_t *copy = NULL;

	if (slot <= p->log_base)
		return TEEMS_OK; /* in the snapshot: committed, final */
	TRY(paxos_log_reserve(p, slot));
	if (len) {
		copy = teems_malloc(len);
		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, value, len);
	}
	s = PSLOT(p, slot);
	/* The old bytes may be referenced by an output of this step: free them later. */
	if (paxos_defer_free(r, s->value)) {
		teems_free(copy);
		return TEEMS_ENOMEM;
	}
	memset(s, 0, sizeof(*s));
	s->accepted = true;
	s->ballot = *b;
	s->value = copy;
	s->len = len;
	paxos_slot_classify(s);
	if (slot > p->last_slot)
		p->last_slot = slot;
	return TEEMS_OK;
}

/* ---- persistence and withheld messages ---- */

int paxos_persist(struct paxos *p, struct paxos_ready *r, uint64_t first, uint64_t count, bool sync,
		  uint64_t *seq)
{
	struct paxos_persist *rec;
	struct paxos_entry_ref *refs = NULL;
	uint32_t k = 0;

	if (count) {
		refs = paxos_scratch(r, count * sizeof(*refs));
		if (!refs)
			return TEEMS_ENOMEM;
	}
	TRY(core_grow((void **)&r->persist, &r->cap_persist, r->n_persist + 1, sizeof(*rec)));
	rec = &r->persist[r->n_persist++];
	memset(rec, 0, sizeof(*rec));
	rec->seq = p->next_seq++;
	rec->promised = p->promised;
	rec->commit_index = p->commit_index;
	rec->entries = refs;
	rec->sync = sync;
	if (p->reg_record) {
		/* The first record after learning our registration committed carries it. */
		rec->flags |= PAXOS_REC_REGISTERED;
		rec->own_reg = p->reg;
		memcpy(rec->own_key, p->cfg.public_key, MSG_PUBLIC_KEY_SIZE);
		p->reg_record = false;
	}
	paxos_restart_persist(p, rec);
	if (p->install_rec) {
		rec->flags |= PAXOS_REC_INSTALLED;
		rec->snapshot_index = p->install_rec;
		p->install_rec = 0;
	}
	for (uint64_t i = 0; i < count; i++) {
		struct paxos_slot *s;

		if (first + i <= p->log_base)
			continue; /* in the snapshot */
		s = PSLOT(p, first + i);
		if (!s->accepted)
			continue; /* a hole (recovery): nothing to store */
		refs[k].slot = first + i;
		refs[k].ballot = s->ballot;
		refs[k].adopted = s->adopted;
		refs[k].value = s->value;
		refs[k].len = s->len;
		k++;
		s->seq = rec->seq;
	}
	rec->count = k;
	if (seq)
		*seq = rec->seq;
	return TEEMS_OK;
}

int paxos_hold(struct paxos *p, const struct paxos_held *h)
{
	TRY(core_grow((void **)&p->held, &p->cap_held, p->n_held + 1, sizeof(*h)));
	p->held[p->n_held++] = *h;
	return TEEMS_OK;
}

static int release_one(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h)
{
	switch (h->kind) {
	case HELD_PREPARE:
		return paxos_release_prepare(p, r, h);
	case HELD_PROMISE:
		return paxos_release_promise(p, r, h);
	case HELD_ACCEPTED:
		return paxos_release_accepted(p, r, h);
	case HELD_RECOVERED:
		return paxos_release_recovered(p, r, h);
	case HELD_RS_PREPARE:
	case HELD_RS_ANSWER:
	case HELD_RS_ACCEPTED:
	case HELD_RS_SELF:
		return paxos_release_restart(p, r, h);
	}
	return TEEMS_OK;
}

/* Releases, in the order they were withheld, the messages whose record is now synced. */
static int release_held(struct paxos *p, struct paxos_ready *r)
{
	size_t keep = 0;
	int rc = TEEMS_OK;

	for (size_t i = 0; i < p->n_held; i++) {
		struct paxos_held h = p->held[i];

		if (h.seq > p->synced_seq || rc) {
			p->held[keep++] = h;
			continue;
		}
		rc = release_one(p, r, &h);
	}
	p->n_held = keep;
	return rc;
}

/* ---- helpers ---- */

uint64_t paxos_new_nonce(struct paxos *p)
{
	uint64_t n;

	/* splitmix64 is a bijection, so distinct counters give distinct nonces under one key;
	 * the key comes from the first tick's randomness, so incarnations differ. */
	do
		n = splitmix64(p->nonce_key + ++p->nonce_ctr);
	while (n == 0);
	return n;
}

void paxos_reset_election_timer(struct paxos *p)
{
	uint64_t t = p->cfg.election_timeout_ns;

	p->random = splitmix64(p->random);
	p->election_deadline = p->now.hi_ns + t + p->random % t;
}

bool paxos_is_peer(const struct paxos *p, const struct msg *m)
{
	return m->from.replica < p->n && m->from.replica != p->cfg.self;
}

/* SHA-256 over (u64 first, u64 last, then u32 length and bytes of each value). */
static int digest_begin(struct paxos *p, uint64_t first, uint64_t last)
{
	uint8_t w[16];

	put_le64(w, first);
	put_le64(w + 8, last);
	if (EVP_DigestInit_ex(p->md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(p->md, w, sizeof(w)) != 1)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

static int digest_value(struct paxos *p, const uint8_t *b, uint32_t len)
{
	uint8_t w[4];

	put_le32(w, len);
	if (EVP_DigestUpdate(p->md, w, sizeof(w)) != 1 ||
	    (len && EVP_DigestUpdate(p->md, b, len) != 1))
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

static int digest_end(struct paxos *p, uint8_t out[MSG_DIGEST_SIZE])
{
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(p->md, out, &n) != 1 || n != MSG_DIGEST_SIZE)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

int paxos_digest(struct paxos *p, uint64_t first_slot, const struct msg_bytes *values,
		 uint32_t count, uint8_t out[MSG_DIGEST_SIZE])
{
	TRY(digest_begin(p, first_slot, first_slot + count - 1));
	for (uint32_t i = 0; i < count; i++)
		TRY(digest_value(p, values[i].p, values[i].len));
	return digest_end(p, out);
}

int paxos_range_digest(struct paxos *p, uint64_t first, uint64_t last, uint8_t out[MSG_DIGEST_SIZE])
{
	TRY(digest_begin(p, first, last));
	for (uint64_t s = first; s <= last; s++)
		TRY(digest_value(p, PSLOT(p, s)->value, PSLOT(p, s)->len));
	return digest_end(p, out);
}

int paxos_nack(struct paxos *p, struct paxos_ready *r, const struct msg *m,
	       enum msg_nack_reason reason)
{
	struct paxos_send *s = paxos_send_new(p, r, m->from.replica, MSG_NACK, m->nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.nack.refused = m->type;
	s->msg.nack.reason = reason;
	s->msg.nack.promised = p->promised;
	s->msg.nack.leader = p->leader;
	return TEEMS_OK;
}

int paxos_step_down(struct paxos *p, struct paxos_ready *r, uint16_t leader)
{
	if (p->role == PAXOS_LEADER) {
		for (size_t i = 0; i < p->n_pending; i++)
			TRY(paxos_note(r, p->pending[i].client_id, p->pending[i].request_id,
				       PAXOS_OUTCOME_UNKNOWN, 0, leader));
		p->n_pending = 0;
		for (size_t i = 0; i < p->n_queue; i++) {
			TRY(paxos_note(r, p->queue[i].client_id, p->queue[i].request_id,
				       PAXOS_OUTCOME_NOT_LEADER, 0, leader));
			teems_free(p->queue[i].command);
		}
		p->n_queue = 0;
		for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++) {
			struct paxos_slot *sl = PSLOT(p, s);

			sl->open = false;
			sl->chosen = false;
			sl->acked = sl->synced = 0;
		}
		p->noop_slot = 0;
		p->hb_nonce = 0;
		p->n_rounds = 0;
		p->n_reg_wait = 0;
	}
	if (p->role == PAXOS_CANDIDATE)
		paxos_cand_clear(p);
	p->role = PAXOS_FOLLOWER;
	p->leader = leader;
	paxos_reset_election_timer(p);
	return TEEMS_OK;
}

/* ---- the step ---- */

static int on_message(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	if (!paxos_is_peer(p, m))
		return TEEMS_OK;
	if (!paxos_restart_filter(p, r, m))
		return TEEMS_OK;
	if (m->type >= MSG_RESTART_PREPARE && m->type <= MSG_RESTART_ACCEPTED)
		return paxos_on_restart_msg(p, r, m);
	/* A suspicious incarnation never campaigns or leads (section 4): ignore its requests. */
	if (m->suspicious && !paxos_suspicion_ignored(p) &&
	    (m->type == MSG_PREPARE || m->type == MSG_ACCEPT || m->type == MSG_COMMIT))
		return TEEMS_OK;
	paxos_check_halt(p, m);
	if (p->halted)
		return TEEMS_OK;
	switch (m->type) {
	case MSG_PREPARE:
		return paxos_on_prepare(p, r, m);
	case MSG_PROMISE:
		return paxos_on_promise(p, r, m);
	case MSG_ACCEPT:
		return paxos_on_accept(p, r, m);
	case MSG_ACCEPTED:
		return paxos_on_accepted(p, r, m);
	case MSG_COMMIT:
		return paxos_on_commit(p, r, m);
	case MSG_HEARTBEAT_ACK:
		return paxos_on_heartbeat_ack(p, r, m);
	case MSG_NACK:
		return paxos_on_nack(p, r, m);
	case MSG_REGISTER:
		return paxos_on_register(p, r, m);
	case MSG_REGISTER_RESULT:
		return paxos_on_register_result(p, r, m);
	case MSG_RECOVERY_REQUEST:
		return paxos_on_recovery_request(p, r, m);
	case MSG_RECOVERY_REPLY:
		return paxos_on_recovery_reply(p, r, m);
	case MSG_READ_INDEX:
		return paxos_on_read_index(p, r, m);
	case MSG_READ_INDEX_ACK:
		return paxos_on_read_index_ack(p, r, m);
	case MSG_READ:
		return paxos_on_read_msg(p, r, m);
	case MSG_READ_REPLY:
		return paxos_on_read_reply(p, r, m);
	case MSG_SNAPSHOT_REQUEST:
		return paxos_on_snapshot_request(p, r, m);
	case MSG_SNAPSHOT_CHUNK:
		return paxos_on_snapshot_chunk(p, r, m);
	default:
		return TEEMS_OK; /* not this core's (reads, registration, ABD, ...) */
	}
}

/* A taint of the trusted clock abandons every open collection (section 4, section 8). */
static int on_taint(struct paxos *p, struct paxos_ready *r)
{
	p->rs_window_hi = p->now.hi_ns; /* a tainted interval never counts toward T_restart */
	TRY(paxos_oread_expire(p, r, true));
	if (p->role == PAXOS_CANDIDATE)
		TRY(paxos_elect_abandon(p));
	if (p->role == PAXOS_LEADER) {
		p->hb_nonce = 0;
		TRY(paxos_accept_abandon(p, r));
		TRY(paxos_read_abandon(p, r, PAXOS_OUTCOME_BUSY, false));
	}
	return TEEMS_OK;
}

int paxos_step(struct paxos *p, const struct paxos_input *in, struct paxos_ready *r)
{
	bool tainted;

	ready_clear(r);
	if (in->type > PAXOS_IN_EXEC_RESULT || (in->type == PAXOS_IN_MESSAGE && !in->message))
		return TEEMS_EINVAL;
	if (p->halted) {
		r->halted = true; /* section 4, step 3: emits nothing, ever */
		return TEEMS_OK;
	}
	tainted = p->have_time && in->now.epoch != p->now.epoch;
	if (in->type == PAXOS_IN_TICK) {
		p->random = splitmix64(p->random ^ in->tick.random);
		if (!p->nonce_key_set) {
			p->nonce_key = p->random;
			p->nonce_key_set = true;
		}
	}
	/* The clock's readings never decrease; keep ours monotonic even if a caller errs. */
	if (!p->have_time || in->now.hi_ns >= p->now.hi_ns)
		p->now = in->now;
	else
		p->now.epoch = in->now.epoch;
	p->ls.host_ns = in->host_ns; /* leases' clock under PAXOS_UNSAFE_TRUST_HOST_CLOCK */
	if (!p->have_time) {
		p->have_time = true;
		p->rs_window_hi = p->now.hi_ns;
		paxos_reset_election_timer(p);
	}
	if (tainted)
		TRY(on_taint(p, r));
	if (p->suspicious && p->role != PAXOS_FOLLOWER)
		TRY(paxos_step_down(p, r, MSG_NO_REPLICA));

	switch (in->type) {
	case PAXOS_IN_TICK:
		TRY(paxos_oread_expire(p, r, false));
		TRY(paxos_lifecycle_tick(p, r));
		TRY(paxos_restart_tick(p, r));
		if (p->halted)
			break;
		TRY(paxos_snapshot_tick(p, r));
		TRY(paxos_elect_tick(p, r));
		break;
	case PAXOS_IN_MESSAGE:
		TRY(on_message(p, r, in->message));
		break;
	case PAXOS_IN_PROPOSE:
		TRY(paxos_on_propose(p, r, in));
		break;
	case PAXOS_IN_READ:
		TRY(paxos_on_read(p, r, in));
		break;
	case PAXOS_IN_OPT_READ:
		TRY(paxos_on_opt_read(p, r, in));
		break;
	case PAXOS_IN_EXEC_RESULT:
		TRY(paxos_on_exec_result(p, r, in));
		break;
	case PAXOS_IN_SYNCED:
		if (in->synced.seq > p->synced_seq)
			p->synced_seq =
				in->synced.seq < p->next_seq ? in->synced.seq : p->next_seq - 1;
		break;
	}
	if (!p->halted) {
		TRY(release_held(p, r));
		TRY(paxos_leader_work(p, r));
		TRY(paxos_apply_committed(p, r));
		if (!p->halted)
			TRY(paxos_read_work(p, r));
		if (!p->halted)
			TRY(paxos_snapshot_finish_step(p, r));
	}
	if (p->halted) {
		/* Nothing leaves a halted incarnation, not even what this step produced. */
		r->n_sends = 0;
		r->n_notes = 0;
		r->n_execs = 0;
		r->n_opt_reads = 0;
		memset(&r->snapshot, 0, sizeof(r->snapshot));
		r->halted = true;
	}
	return TEEMS_OK;
}

/* ---- views ---- */

enum paxos_role paxos_role(const struct paxos *p)
{
	return p->role;
}

bool paxos_suspicious(const struct paxos *p)
{
	return p->suspicious;
}

struct msg_ballot paxos_promised(const struct paxos *p)
{
	return p->promised;
}

uint64_t paxos_commit_index(const struct paxos *p)
{
	return p->commit_index;
}

uint64_t paxos_last_slot(const struct paxos *p)
{
	return p->last_slot;
}

uint16_t paxos_leader_hint(const struct paxos *p)
{
	return p->leader;
}

bool paxos_can_serve_reads(const struct paxos *p)
{
	return p->role == PAXOS_LEADER && p->noop_slot && p->commit_index >= p->noop_slot;
}

bool paxos_halted(const struct paxos *p)
{
	return p->halted;
}

struct msg_regidx paxos_registration(const struct paxos *p)
{
	return p->reg;
}

bool paxos_registered(const struct paxos *p)
{
	return p->registered;
}

enum paxos_lifecycle paxos_lifecycle(const struct paxos *p)
{
	return p->halted ? PAXOS_LC_HALTED : p->lc;
}

bool paxos_config_registration(const struct paxos *p, uint16_t replica, struct msg_regidx *idx,
			       uint8_t key[MSG_PUBLIC_KEY_SIZE])
{
	if (replica >= QUORUM_MAX_REPLICAS || !p->regs[replica].set)
		return false;
	if (idx)
		*idx = p->regs[replica].idx;
	if (key)
		memcpy(key, p->regs[replica].key, MSG_PUBLIC_KEY_SIZE);
	return true;
}

void paxos_set_suspicious(struct paxos *p, bool suspicious)
{
	/* A leader or candidate steps down at the start of the next step, where the notes for
	 * its pending proposals can be reported. */
	p->suspicious = suspicious;
}

/* ---- batches ---- */

static bool batch_element(const uint8_t *value, uint32_t len, size_t *off,
			  struct paxos_command *out)
{
	const uint8_t *b = value + *off;
	size_t left = len - *off;
	uint32_t clen;

	if (*off >= len || left < 20)
		return false;
	out->client_id = get_le64(b);
	out->request_id = get_le64(b + 8);
	clen = get_le32(b + 16);
	if (clen > left - 20)
		return false;
	out->command = b + 20;
	out->len = clen;
	*off += 20 + (size_t)clen;
	return true;
}

bool paxos_batch_next(const uint8_t *value, uint32_t len, size_t *off, struct paxos_command *out)
{
	while (batch_element(value, len, off, out))
		if (out->client_id != PAXOS_CONFIG_CLIENT)
			return true;
	return false;
}

#define REGISTER_PAYLOAD (1u + 2u + MSG_PUBLIC_KEY_SIZE + 16u + 4u)

bool paxos_config_entry(const uint8_t *value, uint32_t len, struct paxos_register_entry *out)
{
	struct paxos_command c;
	size_t off = 0;
	const uint8_t *b;

	if (!value || !batch_element(value, len, &off, &c) || off != len ||
	    c.client_id != PAXOS_CONFIG_CLIENT)
		return false;
	if (c.request_id != PAXOS_CONFIG_REGISTER || c.len < REGISTER_PAYLOAD || c.command[0] != 1)
		return false;
	b = c.command;
	if (out) {
		out->replica = get_le16(b + 1);
		memcpy(out->public_key, b + 3, MSG_PUBLIC_KEY_SIZE);
		out->expected_previous.epoch = get_le64(b + 3 + MSG_PUBLIC_KEY_SIZE);
		out->expected_previous.slot = get_le64(b + 11 + MSG_PUBLIC_KEY_SIZE);
		out->quote_len = get_le32(b + 19 + MSG_PUBLIC_KEY_SIZE);
		out->quote = b + REGISTER_PAYLOAD;
	}
	return get_le32(b + 19 + MSG_PUBLIC_KEY_SIZE) == c.len - REGISTER_PAYLOAD;
}

uint32_t paxos_register_encode(const struct msg_register *m, uint8_t *buf)
{
	uint32_t plen = REGISTER_PAYLOAD + m->quote.len;

	if (!buf)
		return 20 + plen;
	put_le64(buf, PAXOS_CONFIG_CLIENT);
	put_le64(buf + 8, PAXOS_CONFIG_REGISTER);
	put_le32(buf + 16, plen);
	buf += 20;
	buf[0] = 1;
	put_le16(buf + 1, m->replica);
	memcpy(buf + 3, m->public_key, MSG_PUBLIC_KEY_SIZE);
	put_le64(buf + 3 + MSG_PUBLIC_KEY_SIZE, m->expected_previous.epoch);
	put_le64(buf + 11 + MSG_PUBLIC_KEY_SIZE, m->expected_previous.slot);
	put_le32(buf + 19 + MSG_PUBLIC_KEY_SIZE, m->quote.len);
	if (m->quote.len)
		memcpy(buf + REGISTER_PAYLOAD, m->quote.p, m->quote.len);
	return 20 + plen;
}
