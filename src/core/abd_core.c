/* RR-ABD core: the register table, the ready, step dispatch, and what every replica does with
 * QUERY, WRITE and STABILIZE (DESIGN.md sections 4, 6, 7). The coordinator is abd_coord.c,
 * recovery abd_recover.c, the WAL record format abd_persist.c. */
#include <string.h>

#include "common/alloc.h"
#include "core/abd_internal.h"
#include "teems/err.h"

void abd_config_default(struct abd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync = ABD_SYNC_RR;
	cfg->t_op_ns = 500000000ull;
	cfg->resend_ns = 100000000ull;
	cfg->ranges = 64;
	cfg->max_ops = 256;
	cfg->page_items = 256;
	cfg->page_bytes = 1u << 20;
}

int abd_new(struct abd **out, const struct abd_config *cfg, char *errbuf)
{
	struct abd *a;

	*out = NULL;
	if (cfg->quorum.n < 1 || cfg->quorum.n > QUORUM_MAX_REPLICAS)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: quorum not initialized");
	if (cfg->self >= cfg->quorum.n)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: self %u >= N %u", cfg->self,
				  cfg->quorum.n);
	if (cfg->ranges < 1 || cfg->ranges > MSG_MAX_RANGES || (cfg->ranges & (cfg->ranges - 1)))
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "abd: ranges must be a power of two in 1..%u", MSG_MAX_RANGES);
	if (cfg->max_ops < 1 || cfg->max_ops > 65536)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: max_ops must be in 1..65536");
	if (cfg->page_items < 1 || cfg->page_items > MSG_MAX_ITEMS)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: page_items must be in 1..%u",
				  MSG_MAX_ITEMS);
	if (cfg->sync > ABD_SYNC_NONE)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: unknown sync policy");
	if (cfg->t_op_ns == 0 || cfg->resend_ns == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd: t_op_ns and resend_ns must be > 0");
	a = teems_calloc(1, sizeof(*a));
	if (!a)
		return TEEMS_ENOMEM;
	a->cfg = *cfg;
	a->n = cfg->quorum.n;
	a->restarted = cfg->restarted;
	/* a restarted incarnation is unregistered until abd_begin_recovery */
	if (!cfg->restarted || (cfg->unsafe & ABD_UNSAFE_NO_RECOVERY))
		a->reg = cfg->reg;
	a->suspicious = cfg->restarted && !(cfg->unsafe & ABD_UNSAFE_NO_RECOVERY);
	a->next_seq = 1;
	a->n_buckets = 64;
	a->buckets = teems_calloc(a->n_buckets, sizeof(*a->buckets));
	a->ops = teems_calloc(cfg->max_ops, sizeof(*a->ops));
	if (!a->buckets || !a->ops)
		goto nomem;
	a->md = EVP_MD_CTX_new();
	if (!a->md) {
		abd_free(a);
		return teems_errf(errbuf, TEEMS_ECRYPTO, "abd: EVP_MD_CTX_new failed");
	}
	*out = a;
	return 0;
nomem:
	abd_free(a);
	return TEEMS_ENOMEM;
}

void abd_op_clear(struct abd_opst *op)
{
	teems_free(op->key);
	teems_free(op->value);
	for (unsigned i = 0; i < QUORUM_MAX_REPLICAS; i++)
		teems_free(op->rval[i]);
	memset(op, 0, sizeof(*op));
}

void abd_free(struct abd *a)
{
	if (!a)
		return;
	for (size_t b = 0; b < a->n_buckets && a->buckets; b++) {
		struct abd_reg *g = a->buckets[b], *next;

		for (; g; g = next) {
			next = g->next;
			teems_free(g->key);
			teems_free(g->value);
			teems_free(g);
		}
	}
	teems_free(a->buckets);
	if (a->ops)
		for (uint32_t i = 0; i < a->cfg.max_ops; i++)
			abd_op_clear(&a->ops[i]);
	teems_free(a->ops);
	for (size_t i = 0; i < a->n_held; i++)
		teems_free(a->held[i].key);
	teems_free(a->held);
	abd_recover_clear(a);
	teems_free(a->fetches);
	if (a->md)
		EVP_MD_CTX_free(a->md);
	teems_free(a);
}

/* ---- register table ---- */

uint64_t abd_hash(const uint8_t *key, uint32_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (uint32_t i = 0; i < len; i++) {
		h ^= key[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 31;
	h *= 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	return h;
}

uint32_t abd_range_of(const struct abd *a, const uint8_t *key, uint32_t key_len)
{
	return (uint32_t)(abd_hash(key, key_len) >> 40) & (a->cfg.ranges - 1);
}

struct abd_reg *abd_reg_find(const struct abd *a, const uint8_t *key, uint32_t len, uint64_t h)
{
	struct abd_reg *g = a->buckets[h & (a->n_buckets - 1)];

	for (; g; g = g->next)
		if (g->hash == h && g->key_len == len && (len == 0 || !memcmp(g->key, key, len)))
			return g;
	return NULL;
}

static int table_grow(struct abd *a)
{
	size_t nb = a->n_buckets * 2;
	struct abd_reg **b = teems_calloc(nb, sizeof(*b));

	if (!b)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < a->n_buckets; i++) {
		struct abd_reg *g = a->buckets[i], *next;

		for (; g; g = next) {
			next = g->next;
			g->next = b[g->hash & (nb - 1)];
			b[g->hash & (nb - 1)] = g;
		}
	}
	teems_free(a->buckets);
	a->buckets = b;
	a->n_buckets = nb;
	return 0;
}

int abd_persist_append(struct abd *a, struct abd_ready *r, struct abd_persist **out)
{
	struct abd_persist *p;

	if (core_grow((void **)&r->persist, &r->cap_persist, r->n_persist + 1, sizeof(*p)))
		return TEEMS_ENOMEM;
	p = &r->persist[r->n_persist++];
	memset(p, 0, sizeof(*p));
	p->seq = a->next_seq++;
	*out = p;
	return 0;
}

int abd_store(struct abd *a, struct abd_ready *r, const uint8_t *key, uint32_t key_len, uint64_t h,
	      const struct msg_timestamp *ts, bool tombstone, const uint8_t *value, uint32_t len,
	      bool sync, bool *stored)
{
	struct abd_reg *g = abd_reg_find(a, key, key_len, h);
	uint8_t *v = NULL, *k = NULL;
	struct abd_persist *p;
	bool fresh_entry = false;

	*stored = false;
	if (g && msg_timestamp_cmp(ts, &g->ts) <= 0)
		return 0;
	if (tombstone)
		len = 0;
	if (len) {
		v = teems_malloc(len);
		if (!v)
			return TEEMS_ENOMEM;
		memcpy(v, value, len);
	}
	if (!g) {
		if (a->n_regs >= a->n_buckets && table_grow(a))
			goto nomem;
		g = teems_calloc(1, sizeof(*g));
		k = teems_malloc(key_len ? key_len : 1);
		if (!g || !k) {
			teems_free(g);
			teems_free(k);
			goto nomem;
		}
		memcpy(k, key, key_len);
		fresh_entry = true;
	}
	/* the record first, so that a failed allocation leaves the table unchanged */
	if (abd_persist_append(a, r, &p))
		goto nomem_entry;
	p->flags = ABD_REC_REGISTER;
	p->key = abd_scratch_dup(r, key, key_len);
	p->value = len ? abd_scratch_dup(r, value, len) : NULL;
	if (!p->key || (len && !p->value)) {
		r->n_persist--;
		a->next_seq--;
		goto nomem_entry;
	}
	p->key_len = key_len;
	p->ts = *ts;
	p->tombstone = tombstone;
	p->len = len;
	p->sync = sync;
	if (fresh_entry) {
		g->key = k;
		g->key_len = key_len;
		g->hash = h;
		g->next = a->buckets[h & (a->n_buckets - 1)];
		a->buckets[h & (a->n_buckets - 1)] = g;
		a->n_regs++;
	}
	teems_free(g->value);
	g->value = v;
	g->len = len;
	g->ts = *ts;
	g->tombstone = tombstone;
	g->stable = false;
	g->seq = p->seq;
	*stored = true;
	return 0;
nomem_entry:
	if (fresh_entry) {
		teems_free(g);
		teems_free(k);
	}
nomem:
	teems_free(v);
	return TEEMS_ENOMEM;
}

size_t abd_keys(const struct abd *a)
{
	return a->n_regs;
}

bool abd_lookup(const struct abd *a, const uint8_t *key, uint32_t key_len, struct msg_timestamp *ts,
		bool *stable, bool *tombstone, const uint8_t **value, uint32_t *len)
{
	struct abd_reg *g = abd_reg_find(a, key, key_len, abd_hash(key, key_len));

	if (!g)
		return false;
	if (ts)
		*ts = g->ts;
	if (stable)
		*stable = g->stable;
	if (tombstone)
		*tombstone = g->tombstone;
	if (value)
		*value = g->value;
	if (len)
		*len = g->len;
	return true;
}

/* ---- ready ---- */

void abd_ready_init(struct abd_ready *r)
{
	memset(r, 0, sizeof(*r));
}

static void ready_clear(struct abd_ready *r)
{
	core_arena_clear(&r->scratch);
	r->n_persist = r->n_sends = r->n_replies = r->n_counted = 0;
	r->recovered = false;
	r->halted = false;
}

void abd_ready_free(struct abd_ready *r)
{
	core_arena_free(&r->scratch);
	teems_free(r->persist);
	teems_free(r->sends);
	teems_free(r->replies);
	teems_free(r->counted);
	memset(r, 0, sizeof(*r));
}

void *abd_scratch(struct abd_ready *r, size_t size)
{
	return core_arena_alloc(&r->scratch, size);
}

void *abd_scratch_dup(struct abd_ready *r, const void *p, size_t len)
{
	return core_arena_dup(&r->scratch, p, len);
}

struct abd_send *abd_send_new(struct abd *a, struct abd_ready *r, uint16_t to, enum msg_type type,
			      uint64_t nonce)
{
	struct abd_send *s;

	if (core_grow((void **)&r->sends, &r->cap_sends, r->n_sends + 1, sizeof(*s)))
		return NULL;
	s = &r->sends[r->n_sends++];
	memset(s, 0, sizeof(*s));
	s->to = to;
	s->msg.type = type;
	s->msg.from.replica = a->cfg.self;
	s->msg.from.reg = a->reg;
	s->msg.suspicious = a->suspicious;
	s->msg.nonce = nonce;
	return s;
}

/* The registration vector replies carry: the configuration the shell gave. */
int abd_regvec(struct abd *a, struct abd_ready *r, struct msg_incarnation_list *out)
{
	if (!a->step_regvec_built) {
		struct msg_incarnation *v = abd_scratch(r, sizeof(*v) * QUORUM_MAX_REPLICAS);
		uint32_t n = 0;

		if (!v)
			return TEEMS_ENOMEM;
		for (unsigned i = 0; i < a->n; i++)
			if (a->cfg_mask & (1ull << i)) {
				v[n].replica = (uint16_t)i;
				v[n].reg = a->cfg_reg[i];
				n++;
			}
		memset(&a->step_regvec, 0, sizeof(a->step_regvec));
		a->step_regvec.count = n;
		a->step_regvec.items = v;
		a->step_regvec_built = true;
	}
	*out = a->step_regvec;
	return 0;
}

uint64_t abd_new_nonce(struct abd *a)
{
	uint64_t x;

	do {
		x = a->nonce_key + 0x9e3779b97f4a7c15ull * ++a->nonce_ctr;
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
	} while (x == 0);
	return x;
}

int abd_value_digest(struct abd *a, const uint8_t *v, uint32_t len, uint8_t out[MSG_DIGEST_SIZE])
{
	unsigned n = 0;

	if (EVP_DigestInit_ex(a->md, EVP_sha256(), NULL) != 1 ||
	    (len && EVP_DigestUpdate(a->md, v, len) != 1) ||
	    EVP_DigestFinal_ex(a->md, out, &n) != 1 || n != MSG_DIGEST_SIZE)
		return TEEMS_ECRYPTO;
	return 0;
}

/* ---- quorums, collections, discard and halt (sections 3, 4) ---- */

bool abd_ignore_suspicion(const struct abd *a)
{
	return (a->cfg.unsafe & ABD_UNSAFE_CFT_QUORUMS) != 0;
}

unsigned abd_wq(const struct abd *a)
{
	if (abd_ignore_suspicion(a))
		return a->n / 2 + 1;
	return quorum_write(&a->cfg.quorum);
}

unsigned abd_rq(const struct abd *a, unsigned s)
{
	if (abd_ignore_suspicion(a))
		return a->n / 2 + 1;
	return quorum_read(&a->cfg.quorum, s);
}

unsigned abd_col_s(const struct abd *a, const struct abd_col *col)
{
	if (abd_ignore_suspicion(a))
		return 0;
	return (unsigned)__builtin_popcountll(col->members & col->suspicious);
}

static bool checks_off(const struct abd *a)
{
	return (a->cfg.unsafe & ABD_UNSAFE_NO_INCARNATION_CHECK) != 0;
}

static bool registered(const struct abd *a)
{
	return !a->restarted || a->reg.epoch || a->reg.slot || !a->suspicious;
}

void abd_halt(struct abd *a, struct abd_ready *r)
{
	if (a->halted)
		return;
	a->halted = true;
	/* the clients of ops in flight learn nothing more: outcome unknown */
	abd_coord_abandon_all(a, r);
	r->halted = true;
}

/* Section 4, step 3 (halt): a registration of our own replica newer than ours. */
static void check_own(struct abd *a, struct abd_ready *r, uint16_t replica,
		      const struct msg_regidx *idx)
{
	if (checks_off(a) || replica != a->cfg.self || !registered(a))
		return;
	if (msg_regidx_cmp(idx, &a->reg) > 0)
		abd_halt(a, r);
}

/* The newest registration of `replica` known to this core (configuration). */
static bool superseded(const struct abd *a, const struct msg_incarnation *who)
{
	if (checks_off(a) || !(a->cfg_mask & (1ull << who->replica)))
		return false;
	return msg_regidx_cmp(&who->reg, &a->cfg_reg[who->replica]) < 0;
}

void abd_col_self(struct abd *a, struct abd_col *col)
{
	uint64_t bit = 1ull << a->cfg.self;

	col->members |= bit;
	col->member[a->cfg.self] = a->reg;
	if (a->suspicious)
		col->suspicious |= bit;
	else
		col->suspicious &= ~bit;
}

static void col_see(struct abd_col *col, uint16_t replica, const struct msg_regidx *idx)
{
	uint64_t bit = 1ull << replica;

	if (!(col->seen_mask & bit) || msg_regidx_cmp(idx, &col->seen[replica]) > 0) {
		col->seen[replica] = *idx;
		col->seen_mask |= bit;
	}
}

bool abd_incarnation_checks(const struct abd *a)
{
	return !checks_off(a);
}

/* The discard rule over members already counted: drops every member (self excepted) whose
 * incarnation the configuration or a reply in the same collection shows superseded. Run when
 * the collection or the configuration changes, and again before every quorum decision. */
uint64_t abd_col_refilter(struct abd *a, struct abd_col *col)
{
	uint64_t dropped = 0;

	if (checks_off(a))
		return 0;
	for (unsigned i = 0; i < a->n; i++) {
		uint64_t b = 1ull << i;

		if (i == a->cfg.self || !(col->members & b))
			continue;
		if (((col->seen_mask & b) && msg_regidx_cmp(&col->member[i], &col->seen[i]) < 0) ||
		    ((a->cfg_mask & b) && msg_regidx_cmp(&col->member[i], &a->cfg_reg[i]) < 0)) {
			col->members &= ~b;
			dropped |= b;
			a->stats.discarded++;
		}
	}
	return dropped;
}

bool abd_col_add(struct abd *a, struct abd_ready *r, struct abd_col *col, const struct msg *m,
		 const struct msg_incarnation_list *regvec)
{
	uint16_t x = m->from.replica;
	uint64_t bit = 1ull << x;
	struct msg_iter it;
	struct msg_incarnation inc;

	if (x >= a->n || x == a->cfg.self)
		return false;
	if (regvec) {
		msg_incarnations_begin(&it, regvec);
		while (msg_incarnations_next(&it, &inc)) {
			check_own(a, r, inc.replica, &inc.reg);
			if (inc.replica < a->n)
				col_see(col, inc.replica, &inc.reg);
		}
		if (a->halted)
			return false;
	}
	if (checks_off(a)) {
		col->members |= bit;
		col->member[x] = m->from.reg;
	} else {
		col_see(col, x, &m->from.reg);
		if (superseded(a, &m->from) || msg_regidx_cmp(&m->from.reg, &col->seen[x]) < 0) {
			a->stats.discarded++;
			return false;
		}
		col->members |= bit;
		col->member[x] = m->from.reg;
		/* a later vector may supersede earlier members: drop them */
		abd_col_refilter(a, col);
	}
	if (m->suspicious)
		col->suspicious |= bit;
	else
		col->suspicious &= ~bit;
	return true;
}

int abd_counted(struct abd *a, struct abd_ready *r, enum abd_counted_kind kind, uint64_t id,
		const struct abd_col *col)
{
	struct abd_counted *c;

	if (core_grow((void **)&r->counted, &r->cap_counted, r->n_counted + 1, sizeof(*c)))
		return TEEMS_ENOMEM;
	c = &r->counted[r->n_counted++];
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->id = id;
	for (unsigned i = 0; i < a->n; i++)
		if (col->members & (1ull << i)) {
			c->members[c->n].replica = (uint16_t)i;
			c->members[c->n].reg = col->member[i];
			c->n++;
		}
	return 0;
}

/* ---- replica side ---- */

static int hold(struct abd *a, enum abd_held_kind kind, uint16_t to, uint64_t nonce,
		const uint8_t *key, uint32_t key_len, const struct msg_timestamp *ts, uint64_t seq)
{
	struct abd_held *h;
	uint8_t *k;

	if (core_grow((void **)&a->held, &a->cap_held, a->n_held + 1, sizeof(*h)))
		return TEEMS_ENOMEM;
	k = teems_malloc(key_len ? key_len : 1);
	if (!k)
		return TEEMS_ENOMEM;
	memcpy(k, key, key_len);
	h = &a->held[a->n_held++];
	memset(h, 0, sizeof(*h));
	h->kind = kind;
	h->to = to;
	h->nonce = nonce;
	h->key = k;
	h->key_len = key_len;
	if (ts)
		h->ts = *ts;
	h->seq = seq;
	return 0;
}

static int send_ack(struct abd *a, struct abd_ready *r, uint16_t to, uint64_t nonce,
		    const uint8_t *key, uint32_t key_len, const struct msg_timestamp *ts,
		    enum msg_sync sync)
{
	struct abd_send *s = abd_send_new(a, r, to, MSG_ABD_WRITE_ACK, nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.abd_write_ack.key.p = abd_scratch_dup(r, key, key_len);
	if (!s->msg.abd_write_ack.key.p)
		return TEEMS_ENOMEM;
	s->msg.abd_write_ack.key.len = key_len;
	s->msg.abd_write_ack.ts = *ts;
	s->msg.abd_write_ack.sync = sync;
	return abd_regvec(a, r, &s->msg.abd_write_ack.regvec);
}

static int send_query_reply(struct abd *a, struct abd_ready *r, uint16_t to, uint64_t nonce,
			    const struct abd_reg *g, enum msg_query_mode mode)
{
	struct abd_send *s = abd_send_new(a, r, to, MSG_ABD_QUERY_REPLY, nonce);
	struct msg_abd_query_reply *q;

	if (!s)
		return TEEMS_ENOMEM;
	q = &s->msg.abd_query_reply;
	if (g) {
		q->ts = g->ts;
		q->stable = g->stable;
		q->tombstone = g->tombstone;
		if (mode == MSG_QUERY_VALUE && g->len) {
			q->value.p = abd_scratch_dup(r, g->value, g->len);
			if (!q->value.p)
				return TEEMS_ENOMEM;
			q->value.len = g->len;
		}
	}
	return abd_regvec(a, r, &q->regvec);
}

/* Under sync=always and rr a value-mode reply reports only durable state (abd.h). */
static bool reply_waits(const struct abd *a, const struct abd_reg *g)
{
	return a->cfg.sync != ABD_SYNC_NONE && g && g->seq > a->synced_seq;
}

static int handle_query(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_query *q = &m->abd_query;
	struct abd_reg *g = abd_reg_find(a, q->key.p, q->key.len, abd_hash(q->key.p, q->key.len));

	if (q->mode == MSG_QUERY_VALUE && reply_waits(a, g))
		return hold(a, ABD_HELD_QREPLY, m->from.replica, m->nonce, q->key.p, q->key.len,
			    NULL, g->seq);
	return send_query_reply(a, r, m->from.replica, m->nonce, g, q->mode);
}

/* Does a replica sync a write before acknowledging it? Always under `always`. Under rr only
 * when the coordinator's own synced ack is not enough (W_Q - M_R > 1, e.g. M_R = 0): the write
 * then waits for replicas' synced acks, and the group fsync would only add its delay. */
static bool syncs_now(const struct abd *a)
{
	unsigned wq = abd_wq(a);

	return a->cfg.sync == ABD_SYNC_ALWAYS ||
	       (a->cfg.sync == ABD_SYNC_RR && wq > a->cfg.quorum.m_r && wq - a->cfg.quorum.m_r > 1);
}

static int handle_write(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_write *w = &m->abd_write;
	uint64_t h = abd_hash(w->key.p, w->key.len);
	struct abd_reg *g;
	bool stored;
	int rc;

	/* section 4: a suspicious replica stores nothing it is sent and never acknowledges */
	if (a->suspicious && !abd_ignore_suspicion(a))
		return 0;
	rc = abd_store(a, r, w->key.p, w->key.len, h, &w->ts, w->tombstone, w->value.p,
		       w->value.len, syncs_now(a), &stored);
	if (rc)
		return rc;
	/* the register now holds w->ts or a higher timestamp: acknowledge w->ts */
	g = abd_reg_find(a, w->key.p, w->key.len, h);
	if (a->cfg.sync == ABD_SYNC_NONE)
		return send_ack(a, r, m->from.replica, m->nonce, w->key.p, w->key.len, &w->ts,
				MSG_VOLATILE);
	if (g->seq <= a->synced_seq)
		return send_ack(a, r, m->from.replica, m->nonce, w->key.p, w->key.len, &w->ts,
				MSG_SYNCED);
	if (!syncs_now(a)) {
		rc = send_ack(a, r, m->from.replica, m->nonce, w->key.p, w->key.len, &w->ts,
			      MSG_VOLATILE);
		if (rc)
			return rc;
	}
	return hold(a, ABD_HELD_ACK, m->from.replica, m->nonce, w->key.p, w->key.len, &w->ts,
		    g->seq);
}

static int handle_stabilize(struct abd *a, const struct msg *m)
{
	const struct msg_abd_stabilize *s = &m->abd_stabilize;
	struct abd_reg *g = abd_reg_find(a, s->key.p, s->key.len, abd_hash(s->key.p, s->key.len));
	uint8_t d[MSG_DIGEST_SIZE];
	int rc;

	if (!g || g->stable || msg_timestamp_cmp(&g->ts, &s->ts) != 0)
		return 0;
	rc = abd_value_digest(a, g->value, g->len, d);
	if (rc)
		return rc;
	if (!memcmp(d, s->digest, MSG_DIGEST_SIZE))
		g->stable = true;
	return 0;
}

/* Releases every withheld message whose record is now durable. */
static int release_held(struct abd *a, struct abd_ready *r)
{
	size_t j = 0;
	int rc = 0;

	for (size_t i = 0; i < a->n_held; i++) {
		struct abd_held *h = &a->held[i];
		struct abd_reg *g;

		if (rc || a->halted || h->seq > a->synced_seq) {
			a->held[j++] = *h;
			continue;
		}
		g = abd_reg_find(a, h->key, h->key_len, abd_hash(h->key, h->key_len));
		if (h->kind == ABD_HELD_ACK) {
			rc = send_ack(a, r, h->to, h->nonce, h->key, h->key_len, &h->ts,
				      MSG_SYNCED);
		} else if (reply_waits(a, g)) {
			h->seq = g->seq; /* overwritten since: wait for the newer record */
			a->held[j++] = *h;
			continue;
		} else {
			rc = send_query_reply(a, r, h->to, h->nonce, g, MSG_QUERY_VALUE);
		}
		if (rc) {
			a->held[j++] = *h;
			continue;
		}
		teems_free(h->key);
	}
	a->n_held = j;
	return rc;
}

static int handle_message(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	if (m->from.replica >= a->n)
		return 0;
	check_own(a, r, m->from.replica, &m->from.reg);
	if (a->halted || m->from.replica == a->cfg.self)
		return 0;
	switch (m->type) {
	case MSG_ABD_QUERY:
		/* answered even for a superseded incarnation: the reply's registration vector
		 * makes it halt (section 4, step 3) */
		return handle_query(a, m, r);
	case MSG_ABD_WRITE:
		if (superseded(a, &m->from))
			return 0;
		return handle_write(a, m, r);
	case MSG_ABD_STABILIZE:
		return handle_stabilize(a, m);
	case MSG_ABD_DIGEST_REQUEST:
		if (superseded(a, &m->from))
			return 0;
		return abd_handle_digest_request(a, m, r);
	case MSG_ABD_RANGE_REQUEST:
		if (superseded(a, &m->from))
			return 0;
		return abd_handle_range_request(a, m, r);
	case MSG_ABD_QUERY_REPLY:
	case MSG_ABD_WRITE_ACK:
		return abd_coord_reply(a, m, r);
	case MSG_ABD_DIGEST_REPLY:
	case MSG_ABD_RANGE_REPLY:
		return abd_recover_reply(a, m, r);
	default:
		return 0;
	}
}

int abd_step(struct abd *a, const struct abd_input *in, struct abd_ready *r)
{
	bool taint;
	int rc = 0;

	ready_clear(r);
	a->step_regvec_built = false;
	if (in->type > ABD_IN_SYNCED)
		return TEEMS_EINVAL;
	a->stepped = true;
	if (a->halted) {
		if (!a->halt_reported) {
			a->halt_reported = true;
			r->halted = true;
			return abd_coord_abandon_all(a, r);
		}
		return 0;
	}
	if (a->abandon_pending) {
		a->abandon_pending = false;
		rc = abd_coord_abandon_all(a, r);
		if (rc)
			return rc;
	}
	taint = a->have_time && in->now.epoch != a->now.epoch;
	a->now = in->now;
	a->have_time = true;
	if (taint)
		a->lease_until = 0;
	if (in->type == ABD_IN_TICK)
		a->nonce_key ^= in->tick.random;
	/* T_op and taint first: nothing is counted after either (section 4) */
	rc = abd_coord_timers(a, r, taint);
	if (!rc)
		rc = abd_recover_timers(a, r, taint);
	if (rc)
		goto out;
	switch (in->type) {
	case ABD_IN_TICK:
		break;
	case ABD_IN_MESSAGE:
		rc = handle_message(a, in->message, r);
		break;
	case ABD_IN_REQUEST:
		rc = abd_coord_request(a, in, r);
		break;
	case ABD_IN_SYNCED:
		if (in->synced.seq > a->synced_seq)
			a->synced_seq =
				in->synced.seq < a->next_seq ? in->synced.seq : a->next_seq - 1;
		rc = release_held(a, r);
		if (!rc)
			rc = abd_coord_synced(a, r);
		if (!rc)
			rc = abd_recover_synced(a, r);
		break;
	}
out:
	if (a->halted)
		a->halt_reported = true;
	return rc;
}

/* ---- control inputs and views ---- */

int abd_set_config(struct abd *a, const struct msg_incarnation *regs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (regs[i].replica >= a->n)
			return TEEMS_EINVAL;
	for (size_t i = 0; i < n; i++) {
		uint16_t x = regs[i].replica;

		if (!(a->cfg_mask & (1ull << x)) ||
		    msg_regidx_cmp(&regs[i].reg, &a->cfg_reg[x]) > 0)
			a->cfg_reg[x] = regs[i].reg;
		a->cfg_mask |= 1ull << x;
	}
	if (!checks_off(a) && registered(a) && (a->cfg_mask & (1ull << a->cfg.self)) &&
	    msg_regidx_cmp(&a->cfg_reg[a->cfg.self], &a->reg) > 0)
		a->halted = true; /* reported (and ops abandoned) by the next step */
	/* Section 4, step 3: the discard rule holds against the counter's own configuration at
	 * every moment, not only when the next reply arrives. Every open collection drops the
	 * members this configuration supersedes (their acks with them); a quorum decided later
	 * is then decided without them. */
	if (!a->halted) {
		abd_coord_refilter_all(a);
		abd_recover_refilter(a);
	}
	return 0;
}

void abd_set_lease(struct abd *a, uint64_t valid_until_hi_ns)
{
	a->lease_until = valid_until_hi_ns;
}

int abd_begin_recovery(struct abd *a, struct msg_regidx reg)
{
	if (!a->restarted || !a->suspicious || a->rec_pending || a->rec_active || a->halted)
		return TEEMS_EINVAL;
	a->reg = reg;
	a->rec_pending = true;
	return 0;
}

int abd_set_registration(struct abd *a, struct msg_regidx reg)
{
	if (msg_regidx_cmp(&reg, &a->reg) <= 0 ||
	    (a->halted && (a->cfg_mask & (1ull << a->cfg.self)) &&
	     msg_regidx_cmp(&a->cfg_reg[a->cfg.self], &reg) > 0))
		return TEEMS_EINVAL;
	/* halted by the sight of reg (a peer learned the epoch first): it emitted nothing since,
	 * and its registers are its WAL's; it resumes as the incarnation registered at reg */
	a->halted = false;
	a->halt_reported = false;
	a->reg = reg;
	a->restarted = true;
	a->suspicious = true;
	a->lease_until = 0;
	/* section 4, step 5: nothing restored is stable */
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct abd_reg *g = a->buckets[b]; g; g = g->next)
			g->stable = false;
	/* a suspicious replica acknowledges nothing: withheld acks and replies are lost */
	for (size_t i = 0; i < a->n_held; i++)
		teems_free(a->held[i].key);
	a->n_held = 0;
	abd_recover_clear(a);
	a->rec_pending = a->rec_active = a->rec_frozen = a->rec_finishing = a->rec_redo = false;
	a->abandon_pending = true;
	return 0;
}

bool abd_suspicious(const struct abd *a)
{
	return a->suspicious;
}

bool abd_recovering(const struct abd *a)
{
	return a->rec_pending || a->rec_active;
}

bool abd_halted(const struct abd *a)
{
	return a->halted;
}

struct msg_regidx abd_registration(const struct abd *a)
{
	return a->reg;
}

const struct abd_stats *abd_stats(const struct abd *a)
{
	return &a->stats;
}
