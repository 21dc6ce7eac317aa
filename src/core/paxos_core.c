/* RR-Paxos: the step function, the log, persistence records and withheld messages
 * (DESIGN.md sections 5 and 7). Elections are in paxos_elect.c, phase 2 in paxos_accept.c. */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

#define TRY(x)                      \
	do {                        \
		int rc_ = (x);      \
		if (rc_)            \
			return rc_; \
	} while (0)

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
	p = teems_calloc(1, sizeof(*p));
	if (!p)
		return TEEMS_ENOMEM;
	p->cfg = *cfg;
	p->n = cfg->quorum.n;
	p->w_q = quorum_write(&cfg->quorum);
	p->suspicious = cfg->suspicious;
	p->role = PAXOS_FOLLOWER;
	p->leader = MSG_NO_REPLICA;
	p->next_seq = 1;
	p->random = splitmix64(0x7465656d73ull ^ cfg->self); /* until the first tick's input */
	*out = p;
	return TEEMS_OK;
}

void paxos_free(struct paxos *p)
{
	if (!p)
		return;
	for (uint64_t i = 0; i < p->last_slot; i++)
		teems_free(p->log[i].value);
	teems_free(p->log);
	paxos_cand_clear(p);
	teems_free(p->cand_log);
	for (size_t i = 0; i < p->n_queue; i++)
		teems_free(p->queue[i].command);
	teems_free(p->queue);
	teems_free(p->pending);
	teems_free(p->held);
	teems_free(p);
}

/* ---- the ready ---- */

void paxos_ready_init(struct paxos_ready *r)
{
	memset(r, 0, sizeof(*r));
}

static void ready_clear(struct paxos_ready *r)
{
	for (size_t i = 0; i < r->n_scratch; i++)
		teems_free(r->scratch[i]);
	r->n_scratch = 0;
	r->n_persist = r->n_sends = r->n_applies = r->n_notes = 0;
}

void paxos_ready_free(struct paxos_ready *r)
{
	ready_clear(r);
	teems_free(r->scratch);
	teems_free(r->persist);
	teems_free(r->sends);
	teems_free(r->applies);
	teems_free(r->notes);
	memset(r, 0, sizeof(*r));
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return TEEMS_OK;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	n = teems_realloc(*arr, ncap * elem);
	if (!n)
		return TEEMS_ENOMEM;
	*arr = n;
	*cap = ncap;
	return TEEMS_OK;
}

int paxos_defer_free(struct paxos_ready *r, void *ptr)
{
	if (!ptr)
		return TEEMS_OK;
	if (grow((void **)&r->scratch, &r->cap_scratch, r->n_scratch + 1, sizeof(void *))) {
		/* Cannot defer: the pointer may still be referenced by this step's outputs, so
		 * leak it rather than free it early. The caller reports ENOMEM anyway. */
		return TEEMS_ENOMEM;
	}
	r->scratch[r->n_scratch++] = ptr;
	return TEEMS_OK;
}

void *paxos_scratch(struct paxos_ready *r, size_t size)
{
	void *ptr = teems_malloc(size ? size : 1);

	if (!ptr)
		return NULL;
	if (paxos_defer_free(r, ptr)) {
		teems_free(ptr);
		return NULL;
	}
	return ptr;
}

struct paxos_send *paxos_send_new(struct paxos *p, struct paxos_ready *r, uint16_t to,
				  enum msg_type type, uint64_t nonce)
{
	struct paxos_send *s;

	if (grow((void **)&r->sends, &r->cap_sends, r->n_sends + 1, sizeof(*s)))
		return NULL;
	s = &r->sends[r->n_sends++];
	memset(s, 0, sizeof(*s));
	s->to = to;
	s->msg.type = type;
	s->msg.from.replica = p->cfg.self;
	s->msg.from.reg = p->cfg.reg;
	s->msg.suspicious = p->suspicious;
	s->msg.nonce = nonce;
	return s;
}

int paxos_note(struct paxos_ready *r, uint64_t client_id, uint64_t request_id,
	       enum paxos_outcome outcome, uint64_t slot, uint16_t leader)
{
	struct paxos_note *n;

	TRY(grow((void **)&r->notes, &r->cap_notes, r->n_notes + 1, sizeof(*n)));
	n = &r->notes[r->n_notes++];
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
	if (slot == 0 || slot > p->last_slot)
		return NULL;
	return &p->log[slot - 1];
}

int paxos_log_reserve(struct paxos *p, uint64_t slot)
{
	uint64_t ncap;
	struct paxos_slot *n;

	if (slot <= p->log_cap)
		return TEEMS_OK;
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

	TRY(paxos_log_reserve(p, slot));
	if (len) {
		copy = teems_malloc(len);
		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, value, len);
	}
	s = &p->log[slot - 1];
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

	if (count) {
		refs = paxos_scratch(r, count * sizeof(*refs));
		if (!refs)
			return TEEMS_ENOMEM;
	}
	TRY(grow((void **)&r->persist, &r->cap_persist, r->n_persist + 1, sizeof(*rec)));
	rec = &r->persist[r->n_persist++];
	rec->seq = p->next_seq++;
	rec->promised = p->promised;
	rec->count = (uint32_t)count;
	rec->entries = refs;
	rec->sync = sync;
	for (uint64_t i = 0; i < count; i++) {
		struct paxos_slot *s = &p->log[first + i - 1];

		refs[i].slot = first + i;
		refs[i].ballot = s->ballot;
		refs[i].value = s->value;
		refs[i].len = s->len;
		s->seq = rec->seq;
	}
	if (seq)
		*seq = rec->seq;
	return TEEMS_OK;
}

int paxos_hold(struct paxos *p, const struct paxos_held *h)
{
	TRY(grow((void **)&p->held, &p->cap_held, p->n_held + 1, sizeof(*h)));
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

struct msg_incarnation_list paxos_regvec(const struct paxos *p)
{
	/* Registration vectors arrive with the registration increment (section 4). */
	struct msg_incarnation_list l = {0, NULL, NULL, 0};

	(void)p;
	return l;
}

bool paxos_is_peer(const struct paxos *p, const struct msg *m)
{
	return m->from.replica < p->n && m->from.replica != p->cfg.self;
}

/* A small 256-bit hash: four splitmix64-mixed lanes. Values reach acceptors over
 * authenticated channels from the leader that picked them, so the digest guards against
 * confusion (a rolled-back or forked acceptor holding another value for the same slot and
 * ballot), not against a forger.
 * TODO(paxos): switch to SHA-256 once a core-side implementation exists (no OpenSSL here). */
struct digest {
	uint64_t h[4];
	uint64_t n;
};

static void digest_word(struct digest *d, uint64_t w)
{
	for (int i = 0; i < 4; i++)
		d->h[i] = splitmix64(d->h[i] ^ w ^ (0x100000001b3ull * (uint64_t)(i + 1) * ++d->n));
}

static void digest_bytes(struct digest *d, const uint8_t *b, uint32_t len)
{
	uint32_t i = 0;

	digest_word(d, len);
	for (; i + 8 <= len; i += 8) {
		digest_word(d, get_le64(b + i));
	}
	if (i < len) {
		uint8_t tail[8] = {0};

		memcpy(tail, b + i, len - i);
		digest_word(d, get_le64(tail));
	}
}

static void digest_final(struct digest *d, uint8_t out[MSG_DIGEST_SIZE])
{
	for (int i = 0; i < 4; i++) {
		uint64_t v = splitmix64(d->h[i] ^ d->h[(i + 1) % 4]);

		for (int j = 0; j < 8; j++)
			out[i * 8 + j] = (uint8_t)(v >> (8 * j));
	}
}

void paxos_digest(uint64_t first_slot, const struct msg_bytes *values, uint32_t count,
		  uint8_t out[MSG_DIGEST_SIZE])
{
	struct digest d = {{1, 2, 3, 4}, 0};

	digest_word(&d, first_slot);
	digest_word(&d, first_slot + count - 1);
	for (uint32_t i = 0; i < count; i++)
		digest_bytes(&d, values[i].p, values[i].len);
	digest_final(&d, out);
}

void paxos_range_digest(struct paxos *p, uint64_t first, uint64_t last,
			uint8_t out[MSG_DIGEST_SIZE])
{
	struct digest d = {{1, 2, 3, 4}, 0};

	digest_word(&d, first);
	digest_word(&d, last);
	for (uint64_t s = first; s <= last; s++)
		digest_bytes(&d, p->log[s - 1].value, p->log[s - 1].len);
	digest_final(&d, out);
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
			struct paxos_slot *sl = &p->log[s - 1];

			sl->open = false;
			sl->chosen = false;
			sl->acked = sl->synced = 0;
		}
		p->noop_slot = 0;
		p->hb_nonce = 0;
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
	/* A suspicious incarnation never campaigns or leads (section 4): ignore its requests. */
	if (m->suspicious &&
	    (m->type == MSG_PREPARE || m->type == MSG_ACCEPT || m->type == MSG_COMMIT))
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
	default:
		return TEEMS_OK; /* not this core's (reads, registration, ABD, ...) */
	}
}

/* A taint of the trusted clock abandons every open collection (section 4, section 8). */
static int on_taint(struct paxos *p, struct paxos_ready *r)
{
	if (p->role == PAXOS_CANDIDATE)
		TRY(paxos_elect_abandon(p));
	if (p->role == PAXOS_LEADER) {
		p->hb_nonce = 0;
		TRY(paxos_accept_abandon(p, r));
	}
	return TEEMS_OK;
}

int paxos_step(struct paxos *p, const struct paxos_input *in, struct paxos_ready *r)
{
	bool tainted;

	ready_clear(r);
	if (in->type > PAXOS_IN_SYNCED || (in->type == PAXOS_IN_MESSAGE && !in->message))
		return TEEMS_EINVAL;
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
	if (!p->have_time) {
		p->have_time = true;
		paxos_reset_election_timer(p);
	}
	if (tainted)
		TRY(on_taint(p, r));
	if (p->suspicious && p->role != PAXOS_FOLLOWER)
		TRY(paxos_step_down(p, r, MSG_NO_REPLICA));

	switch (in->type) {
	case PAXOS_IN_TICK:
		TRY(paxos_elect_tick(p, r));
		break;
	case PAXOS_IN_MESSAGE:
		TRY(on_message(p, r, in->message));
		break;
	case PAXOS_IN_PROPOSE:
		TRY(paxos_on_propose(p, r, in));
		break;
	case PAXOS_IN_SYNCED:
		if (in->synced.seq > p->synced_seq)
			p->synced_seq =
				in->synced.seq < p->next_seq ? in->synced.seq : p->next_seq - 1;
		break;
	}
	TRY(release_held(p, r));
	TRY(paxos_leader_work(p, r));
	return paxos_apply_committed(p, r);
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

void paxos_set_suspicious(struct paxos *p, bool suspicious)
{
	/* A leader or candidate steps down at the start of the next step, where the notes for
	 * its pending proposals can be reported. */
	p->suspicious = suspicious;
}

/* ---- batches ---- */

bool paxos_batch_next(const uint8_t *value, uint32_t len, size_t *off, struct paxos_command *out)
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
