/* The in-test network for the RR-ABD core: see abd_harness.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abd_harness.h"
#include "common/alloc.h"
#include "lincheck.h"
#include "teems/err.h"

void (*h_cfg_hook)(struct abd_config *cfg);

static void *xrealloc(void *p, size_t n)
{
	/* the harness's own memory bypasses teems_malloc so that the allocation sweep only
	 * fails the core's allocations */
	void *q = realloc(p, n);

	if (!q)
		abort();
	return q;
}

uint64_t h_rand(struct h_cluster *c)
{
	uint64_t x = (c->rng += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static struct abd_time node_time(struct h_cluster *c, int i)
{
	struct abd_time t;

	t.lo_ns = c->now + c->nodes[i].clock_off;
	t.hi_ns = t.lo_ns + 10;
	t.epoch = c->nodes[i].epoch;
	return t;
}

bool h_allow_enomem;

/* false when abd_new failed with TEEMS_ENOMEM during the allocation sweep (node down) */
static bool node_new(struct h_cluster *c, int i, uint16_t replica, bool restarted,
		     const struct abd_config *base)
{
	struct h_node *nd = &c->nodes[i];
	char err[TEEMS_ERRBUF_LEN];
	int rc;

	nd->cfg = *base;
	nd->cfg.self = replica;
	nd->cfg.restarted = restarted;
	nd->replica = replica;
	nd->a = NULL;
	abd_ready_init(&nd->r);
	rc = abd_new(&nd->a, &nd->cfg, err);
	if (rc == TEEMS_ENOMEM && c->allow_enomem) {
		c->enomem = true;
		nd->up = false;
		return false;
	}
	if (rc) {
		fprintf(stderr, "abd_new: %s\n", err);
		abort();
	}
	nd->up = true;
	nd->halted = false;
	nd->recovered = false;
	abd_set_lease(nd->a, ABD_LEASE_FOREVER);
	return true;
}

void h_init(struct h_cluster *c, unsigned n, unsigned f, unsigned m_r, uint64_t seed,
	    enum abd_sync_policy sync, unsigned unsafe)
{
	struct abd_config cfg;

	memset(c, 0, sizeof(*c));
	if (quorum_init(&c->q, n, f, m_r, NULL))
		abort();
	c->n = (int)n;
	c->n_nodes = (int)n;
	c->allow_enomem = h_allow_enomem;
	c->rng = seed * 7919 + 1;
	c->now = 1000 * H_MS;
	c->sync_delay = 3 * H_MS;
	history_init(&c->hist);
	abd_config_default(&cfg);
	cfg.quorum = c->q;
	cfg.sync = sync;
	cfg.unsafe = unsafe;
	cfg.t_op_ns = 500 * H_MS;
	cfg.resend_ns = 50 * H_MS;
	if (h_cfg_hook)
		h_cfg_hook(&cfg);
	for (unsigned i = 0; i < n; i++) {
		node_new(c, (int)i, (uint16_t)i, false, &cfg);
		c->route[i] = (int)i;
	}
}

static void wal_free(struct h_node *nd)
{
	for (size_t k = 0; k < nd->n_wal; k++) {
		free(nd->wal[k].buf);
		free(nd->wal[k].key);
	}
	free(nd->wal);
	nd->wal = NULL;
	nd->n_wal = nd->cap_wal = 0;
}

void h_free(struct h_cluster *c)
{
	for (int i = 0; i < c->n_nodes; i++) {
		abd_free(c->nodes[i].a);
		abd_ready_free(&c->nodes[i].r);
		wal_free(&c->nodes[i]);
	}
	for (size_t k = 0; k < c->nq; k++)
		free(c->msgs[k].buf);
	free(c->msgs);
	free(c->pend);
	history_free(&c->hist);
	memset(c, 0, sizeof(*c));
}

static void enqueue(struct h_cluster *c, int from, const struct abd_send *s)
{
	size_t len;
	uint8_t *buf;
	struct msg back;
	int to_node, copies = 1;

	if (msg_encode(&s->msg, NULL, 0, &len) != TEEMS_EFULL) {
		fprintf(stderr, "msg_encode refused a %s\n", msg_type_name(s->msg.type));
		abort();
	}
	buf = xrealloc(NULL, len);
	if (msg_encode(&s->msg, buf, len, &len) || msg_decode(buf, len, &back) ||
	    !msg_equal(&back, &s->msg)) {
		fprintf(stderr, "codec round trip failed for %s\n", msg_type_name(s->msg.type));
		abort();
	}
	c->sent_by_type[s->msg.type]++;
	to_node = c->route_fn ? c->route_fn(c, from, s->to) : c->route[s->to];
	if (c->dup_pct && h_rand(c) % 100 < c->dup_pct)
		copies = 2;
	for (int k = 0; k < copies; k++) {
		struct h_msg *m;

		if (c->nq == c->capq) {
			c->capq = c->capq ? c->capq * 2 : 64;
			c->msgs = xrealloc(c->msgs, c->capq * sizeof(*c->msgs));
		}
		m = &c->msgs[c->nq++];
		memset(m, 0, sizeof(*m));
		m->from = from;
		m->to = s->to;
		m->to_node = to_node;
		m->type = s->msg.type;
		m->len = len;
		m->buf = k ? xrealloc(NULL, len) : buf;
		if (k)
			memcpy(m->buf, buf, len);
		m->deliver_at = c->now + H_MS / 2 + (c->max_delay ? h_rand(c) % c->max_delay : 0);
	}
}

/* The ordering rule: a synced WRITE_ACK leaves only once a record of its key at or above its
 * timestamp is durable at the sender. */
static void check_ack(struct h_cluster *c, int i, const struct msg *m)
{
	struct h_node *nd = &c->nodes[i];
	const struct msg_abd_write_ack *ack = &m->abd_write_ack;

	if (m->type != MSG_ABD_WRITE_ACK || ack->sync != MSG_SYNCED)
		return;
	for (size_t k = 0; k < nd->n_wal; k++) {
		struct h_wal_rec *w = &nd->wal[k];

		if (w->reg && w->seq <= nd->synced && w->key_len == ack->key.len &&
		    (!w->key_len || !memcmp(w->key, ack->key.p, w->key_len)) &&
		    msg_timestamp_cmp(&w->ts, &ack->ts) >= 0)
			return;
	}
	c->order_violation = true;
}

static void take_ready(struct h_cluster *c, int i)
{
	struct h_node *nd = &c->nodes[i];
	struct abd_ready *r = &nd->r;

	for (size_t k = 0; k < r->n_persist; k++) {
		const struct abd_persist *p = &r->persist[k];
		struct h_wal_rec *w;
		size_t len;

		if (nd->n_wal == nd->cap_wal) {
			nd->cap_wal = nd->cap_wal ? nd->cap_wal * 2 : 64;
			nd->wal = xrealloc(nd->wal, nd->cap_wal * sizeof(*nd->wal));
		}
		w = &nd->wal[nd->n_wal++];
		memset(w, 0, sizeof(*w));
		if (abd_persist_encode(p, NULL, 0, &len) != TEEMS_EFULL)
			abort();
		w->buf = xrealloc(NULL, len);
		if (abd_persist_encode(p, w->buf, len, &w->len))
			abort();
		w->seq = p->seq;
		if (p->flags & ABD_REC_REGISTER) {
			w->reg = true;
			w->key = xrealloc(NULL, p->key_len + 1);
			memcpy(w->key, p->key, p->key_len);
			w->key_len = p->key_len;
			w->ts = p->ts;
		}
		if (p->seq > nd->written)
			nd->written = p->seq;
		if (nd->sync == H_SYNC_DELAY && !nd->sync_due)
			nd->sync_due = c->now + c->sync_delay;
	}
	for (size_t k = 0; k < r->n_sends; k++) {
		check_ack(c, i, &r->sends[k].msg);
		enqueue(c, i, &r->sends[k]);
	}
	for (size_t k = 0; k < r->n_replies; k++) {
		const struct abd_reply *x = &r->replies[k];
		struct h_pending *p = h_req(c, x->request_id);
		struct history_result res;
		enum history_outcome o;

		if (!p || p->done)
			abort();
		p->done = true;
		p->outcome = x->outcome;
		p->rounds = x->rounds;
		p->found = x->found;
		p->len = x->len < sizeof(p->value) ? x->len : sizeof(p->value);
		if (x->len)
			memcpy(p->value, x->value, p->len);
		memset(&res, 0, sizeof(res));
		res.found = x->found;
		res.value.data = x->value;
		res.value.len = x->len;
		o = x->outcome == ABD_OUTCOME_OK	? HISTORY_OK
		    : x->outcome == ABD_OUTCOME_UNKNOWN ? HISTORY_UNKNOWN
							: HISTORY_FAIL;
		if (p->hist != SIZE_MAX && history_complete(&c->hist, p->hist, c->now, o, &res))
			abort();
	}
	c->counted_quorums += r->n_counted;
	if (r->recovered)
		nd->recovered = true;
	if (r->halted) {
		nd->halted = true;
		nd->up = false;
	}
}

void h_step(struct h_cluster *c, int i, const struct abd_input *in)
{
	struct h_node *nd = &c->nodes[i];
	int rc;

	if (!nd->up || !nd->a)
		return;
	rc = abd_step(nd->a, in, &nd->r);
	if (rc == TEEMS_ENOMEM && c->allow_enomem) {
		c->enomem = true;
		nd->up = false;
		return;
	}
	if (rc) {
		fprintf(stderr, "abd_step: %s\n", teems_strerror(rc));
		abort();
	}
	take_ready(c, i);
	if (nd->sync == H_SYNC_NOW && nd->written > nd->synced && nd->up)
		h_sync(c, i);
}

void h_sync(struct h_cluster *c, int i)
{
	struct h_node *nd = &c->nodes[i];
	struct abd_input in;

	nd->synced = nd->written;
	nd->sync_due = 0;
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_SYNCED;
	in.now = node_time(c, i);
	in.synced.seq = nd->synced;
	h_step(c, i, &in);
}

void h_tick(struct h_cluster *c, int i)
{
	struct abd_input in;

	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_TICK;
	in.now = node_time(c, i);
	in.tick.random = h_rand(c);
	h_step(c, i, &in);
}

struct h_pending *h_req(struct h_cluster *c, uint64_t id)
{
	if (id == 0 || id > c->n_pend)
		return NULL;
	return &c->pend[id - 1];
}

uint64_t h_op(struct h_cluster *c, int i, uint64_t client, enum abd_op op, const char *key,
	      const char *value)
{
	struct abd_input in;
	struct history_op hop;
	struct h_pending *p;
	uint64_t id;

	if (c->n_pend == c->cap_pend) {
		c->cap_pend = c->cap_pend ? c->cap_pend * 2 : 64;
		c->pend = xrealloc(c->pend, c->cap_pend * sizeof(*c->pend));
	}
	p = &c->pend[c->n_pend++];
	memset(p, 0, sizeof(*p));
	p->node = i;
	p->hist = SIZE_MAX;
	id = c->n_pend;
	memset(&hop, 0, sizeof(hop));
	hop.client = client;
	hop.op_id = id;
	hop.invoke = c->now;
	hop.type = op == ABD_GET ? HISTORY_GET : op == ABD_SET ? HISTORY_SET : HISTORY_DEL;
	hop.key.data = (const uint8_t *)key;
	hop.key.len = strlen(key);
	if (op == ABD_SET) {
		hop.value.data = (const uint8_t *)value;
		hop.value.len = strlen(value);
	}
	if (!c->allow_enomem && history_invoke(&c->hist, &hop, &p->hist))
		abort();
	if (!c->nodes[i].up || !c->nodes[i].a) {
		/* connection refused: not applied */
		p->done = true;
		p->outcome = ABD_OUTCOME_REFUSED;
		if (p->hist != SIZE_MAX &&
		    history_complete(&c->hist, p->hist, c->now, HISTORY_FAIL, NULL))
			abort();
		return id;
	}
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_REQUEST;
	in.now = node_time(c, i);
	in.request.client_id = client;
	in.request.request_id = id;
	in.request.op = op;
	in.request.key = (const uint8_t *)key;
	in.request.key_len = (uint32_t)strlen(key);
	if (value) {
		in.request.value = (const uint8_t *)value;
		in.request.value_len = (uint32_t)strlen(value);
	}
	h_step(c, i, &in);
	return id;
}

static void deliver(struct h_cluster *c, size_t k)
{
	struct h_msg m = c->msgs[k];
	struct msg dec;
	struct abd_input in;
	enum h_verdict v = H_DELIVER;

	c->msgs[k] = c->msgs[--c->nq];
	if (msg_decode(m.buf, m.len, &dec))
		abort();
	if (c->drop_pct && !m.released && h_rand(c) % 100 < c->drop_pct)
		v = H_DROP;
	if (v == H_DELIVER && c->filter && !m.released)
		v = c->filter(c, m.from, m.to_node, &dec);
	if (v == H_PARK) {
		m.parked = true;
		if (c->nq == c->capq) {
			c->capq *= 2;
			c->msgs = xrealloc(c->msgs, c->capq * sizeof(*c->msgs));
		}
		c->msgs[c->nq++] = m;
		return;
	}
	if (v == H_DELIVER && m.to_node >= 0 && m.to_node < c->n_nodes && c->nodes[m.to_node].up) {
		memset(&in, 0, sizeof(in));
		in.type = ABD_IN_MESSAGE;
		in.now = node_time(c, m.to_node);
		in.message = &dec;
		c->delivered++;
		h_step(c, m.to_node, &in);
	}
	free(m.buf);
}

bool h_deliver_one(struct h_cluster *c)
{
	size_t best = SIZE_MAX;

	for (size_t k = 0; k < c->nq; k++) {
		if (c->msgs[k].parked || c->msgs[k].deliver_at > c->now)
			continue;
		if (best == SIZE_MAX || c->msgs[k].deliver_at < c->msgs[best].deliver_at)
			best = k;
	}
	if (best == SIZE_MAX)
		return false;
	deliver(c, best);
	return true;
}

void h_run(struct h_cluster *c, uint64_t ns)
{
	uint64_t end = c->now + ns;

	while (c->now < end) {
		while (h_deliver_one(c))
			;
		c->now += H_TICK;
		for (int i = 0; i < c->n_nodes; i++) {
			struct h_node *nd = &c->nodes[i];

			if (!nd->up)
				continue;
			if (nd->sync == H_SYNC_DELAY && nd->sync_due && nd->sync_due <= c->now)
				h_sync(c, i);
			h_tick(c, i);
		}
	}
}

bool h_run_until_done(struct h_cluster *c, uint64_t id, uint64_t ns)
{
	uint64_t end = c->now + ns;

	while (c->now < end && !h_req(c, id)->done)
		h_run(c, H_TICK);
	return h_req(c, id)->done;
}

static bool match(const struct h_msg *m, int from, int to, int type)
{
	return (from < 0 || m->from == from) && (to < 0 || m->to == to) &&
	       (type == 0 || (int)m->type == type);
}

size_t h_unpark(struct h_cluster *c, int from, int to, int type)
{
	size_t n = 0;

	for (size_t k = 0; k < c->nq; k++)
		if (c->msgs[k].parked && match(&c->msgs[k], from, to, type)) {
			c->msgs[k].parked = false;
			c->msgs[k].released = true;
			c->msgs[k].deliver_at = c->now;
			n++;
		}
	return n;
}

size_t h_drop(struct h_cluster *c, int from, int to, int type)
{
	size_t n = 0;

	for (size_t k = 0; k < c->nq;)
		if (match(&c->msgs[k], from, to, type)) {
			free(c->msgs[k].buf);
			c->msgs[k] = c->msgs[--c->nq];
			n++;
		} else {
			k++;
		}
	return n;
}

void h_crash(struct h_cluster *c, int i)
{
	struct h_node *nd = &c->nodes[i];

	/* its clients time out: outcome unknown */
	for (size_t k = 0; k < c->n_pend; k++) {
		struct h_pending *p = &c->pend[k];

		if (p->node != i || p->done)
			continue;
		p->done = true;
		p->outcome = ABD_OUTCOME_UNKNOWN;
		if (p->hist != SIZE_MAX &&
		    history_complete(&c->hist, p->hist, c->now, HISTORY_UNKNOWN, NULL))
			abort();
	}

	abd_free(nd->a);
	abd_ready_free(&nd->r);
	nd->a = NULL;
	nd->up = false;
}

static void restore_into(struct h_cluster *c, int i, const struct h_node *src, long keep)
{
	struct h_node *nd = &c->nodes[i];
	size_t k;

	if (keep < 0) {
		keep = 0;
		while ((size_t)keep < src->n_wal && src->wal[keep].seq <= src->synced)
			keep++;
	}
	for (k = 0; k < (size_t)keep && k < src->n_wal; k++) {
		int rc = abd_restore(nd->a, src->wal[k].buf, src->wal[k].len);

		if (rc == TEEMS_ENOMEM && c->allow_enomem) {
			c->enomem = true;
			nd->up = false;
			return;
		}
		if (rc)
			abort();
	}
}

static void copy_wal(struct h_node *dst, const struct h_node *src, size_t keep)
{
	struct h_wal_rec *w = xrealloc(NULL, (keep ? keep : 1) * sizeof(*w));

	for (size_t k = 0; k < keep; k++) {
		w[k] = src->wal[k];
		w[k].buf = xrealloc(NULL, src->wal[k].len);
		memcpy(w[k].buf, src->wal[k].buf, src->wal[k].len);
		w[k].key = xrealloc(NULL, src->wal[k].key_len + 1);
		if (src->wal[k].key_len)
			memcpy(w[k].key, src->wal[k].key, src->wal[k].key_len);
	}
	dst->wal = w;
	dst->n_wal = dst->cap_wal = keep;
}

void h_restart(struct h_cluster *c, int i, long keep)
{
	struct h_node *nd = &c->nodes[i];
	struct h_node old;
	struct abd_config cfg = nd->cfg;
	size_t kept = 0;

	if (nd->a)
		h_crash(c, i);
	if (keep < 0)
		while (kept < nd->n_wal && nd->wal[kept].seq <= nd->synced)
			kept++;
	else
		kept = (size_t)keep < nd->n_wal ? (size_t)keep : nd->n_wal;
	old = *nd;
	if (node_new(c, i, nd->replica, true, &cfg))
		restore_into(c, i, &old, (long)kept);
	/* the new incarnation's WAL is the restored prefix */
	copy_wal(nd, &old, kept);
	wal_free(&old);
	nd->written = nd->synced = kept ? nd->wal[kept - 1].seq : 0;
	nd->sync_due = 0;
}

int h_fork(struct h_cluster *c, int of)
{
	int i = c->n_nodes++;
	struct h_node *src = &c->nodes[of];
	size_t kept = 0;

	memset(&c->nodes[i], 0, sizeof(c->nodes[i]));
	while (kept < src->n_wal && src->wal[kept].seq <= src->synced)
		kept++;
	if (node_new(c, i, src->replica, true, &src->cfg))
		restore_into(c, i, src, (long)kept);
	copy_wal(&c->nodes[i], src, kept);
	c->nodes[i].written = c->nodes[i].synced = kept ? src->wal[kept - 1].seq : 0;
	c->nodes[i].sync = src->sync;
	return i;
}

void h_register(struct h_cluster *c, int i, uint64_t slot, uint64_t mask)
{
	struct msg_incarnation inc;

	inc.replica = c->nodes[i].replica;
	inc.reg.epoch = 0;
	inc.reg.slot = slot;
	c->nodes[i].cfg.reg = inc.reg;
	for (int k = 0; k < c->n_nodes; k++)
		if ((mask & (1ull << k)) && c->nodes[k].a && abd_set_config(c->nodes[k].a, &inc, 1))
			abort();
}

void h_begin_recovery(struct h_cluster *c, int i)
{
	if (!c->nodes[i].a || !c->nodes[i].up)
		return;
	if (!abd_suspicious(c->nodes[i].a)) { /* ABD_UNSAFE_NO_RECOVERY: fresh already */
		c->nodes[i].recovered = true;
		return;
	}
	if (abd_begin_recovery(c->nodes[i].a, c->nodes[i].cfg.reg) && !c->allow_enomem)
		abort();
}

int h_check(struct h_cluster *c, bool verbose)
{
	struct lincheck_result res;
	char err[TEEMS_ERRBUF_LEN];
	int bad = 0;

	if (lincheck_check(&c->hist, NULL, &res, err)) {
		fprintf(stderr, "lincheck: %s\n", err);
		abort();
	}
	if (res.verdict != LINCHECK_OK) {
		bad = 1;
		if (verbose)
			fprintf(stderr, "lincheck: %s\n%s\n", lincheck_verdict_name(res.verdict),
				res.explanation ? res.explanation : "");
	}
	lincheck_result_free(&res);
	if (lincheck_monotonic_reads(&c->hist, &res, err)) {
		fprintf(stderr, "monotonic: %s\n", err);
		abort();
	}
	if (res.verdict != LINCHECK_OK) {
		bad = 1;
		if (verbose)
			fprintf(stderr, "monotonic reads: %s\n%s\n",
				lincheck_verdict_name(res.verdict),
				res.explanation ? res.explanation : "");
	}
	lincheck_result_free(&res);
	return bad;
}
