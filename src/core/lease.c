/* Leases from a trusted clock: the rules and their arithmetic are in lease.h and
 * docs/LEASES.md (DESIGN.md section 8). */
#include "core/lease.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

struct lease_time lease_time_from_host(uint64_t host_ns)
{
	struct lease_time t = {.lo_ns = host_ns, .hi_ns = host_ns, .epoch = 0};
	return t;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ceil(d * rho / 1e6) without overflow: d = q * 1e6 + r. */
static uint64_t rho_part(uint64_t d, uint32_t rho_ppm)
{
	uint64_t q = d / LEASE_PPM, r = d % LEASE_PPM;
	return q * rho_ppm + (r * rho_ppm + LEASE_PPM - 1) / LEASE_PPM;
}

static uint32_t clamp_rho(uint32_t rho_ppm)
{
	return rho_ppm > LEASE_RHO_MAX_PPM ? LEASE_RHO_MAX_PPM : rho_ppm;
}

uint64_t lease_grantor_wait_ns(uint64_t duration_ns, uint32_t rho_ppm)
{
	return sat_add(duration_ns, rho_part(duration_ns, clamp_rho(rho_ppm)));
}

uint64_t lease_holder_span_ns(uint64_t duration_ns, uint32_t rho_ppm)
{
	return teems_lease_holder_span_ns(duration_ns, rho_ppm);
}

/* ---------------------------------------------------------------------------------------------
 * Restartable waits on lo
 * ------------------------------------------------------------------------------------------- */

void lease_wait_start(struct lease_wait *w, uint64_t wait_ns, struct lease_time now)
{
	w->start_lo_ns = now.lo_ns;
	w->wait_ns = wait_ns;
	w->epoch = now.epoch;
	w->armed = true;
	w->done = false;
}

/* A reading of another epoch restarts the wait in full from that reading: the interval between
 * the last reading of the old epoch and this one may be tainted, so none of it counts. */
static void wait_observe(struct lease_wait *w, struct lease_time now)
{
	if (w->armed && now.epoch != w->epoch) {
		w->start_lo_ns = now.lo_ns;
		w->epoch = now.epoch;
	}
}

uint64_t lease_wait_remaining_ns(struct lease_wait *w, struct lease_time now)
{
	if (!w->armed || w->done)
		return 0;
	wait_observe(w, now);
	if (w->wait_ns == UINT64_MAX)
		return UINT64_MAX; /* saturated: never ends */
	/* lo never decreases within an epoch; a reading below the start counts as no time. */
	uint64_t elapsed = now.lo_ns > w->start_lo_ns ? now.lo_ns - w->start_lo_ns : 0;
	if (elapsed >= w->wait_ns) {
		w->done = true;
		return 0;
	}
	return w->wait_ns - elapsed;
}

bool lease_wait_done(struct lease_wait *w, struct lease_time now)
{
	return w->armed && lease_wait_remaining_ns(w, now) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Grantor
 * ------------------------------------------------------------------------------------------- */

void lease_grantor_init(struct lease_grantor *g, uint32_t rho_ppm)
{
	memset(g, 0, sizeof(*g));
	g->rho_ppm = clamp_rho(rho_ppm);
}

void lease_grantor_fence(struct lease_grantor *g, bool fenced)
{
	g->fenced = fenced;
}

bool lease_grantor_bound(struct lease_grantor *g, struct lease_time now, uint64_t *holder_out)
{
	if (g->live && lease_wait_done(&g->promise, now))
		g->live = false;
	if (g->live && holder_out)
		*holder_out = g->holder;
	return g->live;
}

enum lease_verdict lease_grant(struct lease_grantor *g, uint64_t holder, uint64_t duration_ns,
			       struct lease_time now, uint64_t *generation_out)
{
	if (g->fenced)
		return LEASE_REFUSED_FENCED;
	uint64_t wait = lease_grantor_wait_ns(duration_ns, g->rho_ppm);
	if (lease_grantor_bound(g, now, NULL)) {
		if (g->holder != holder)
			return LEASE_REFUSED_LIVE;
		/* Renewal: keep the later end. The old promise has `remaining` left on lo (after
		 * wait_observe, within this epoch), so waiting max(remaining, wait) from now covers
		 * both; after a later taint the whole of that restarts, which covers both again. */
		uint64_t remaining = lease_wait_remaining_ns(&g->promise, now);
		lease_wait_start(&g->promise, remaining > wait ? remaining : wait, now);
	} else {
		g->holder = holder;
		g->generation++;
		g->live = true;
		lease_wait_start(&g->promise, wait, now);
	}
	if (generation_out)
		*generation_out = g->generation;
	return LEASE_GRANTED;
}

void lease_grantor_release(struct lease_grantor *g, uint64_t generation)
{
	if (g->live && generation == g->generation)
		g->live = false;
}

/* ---------------------------------------------------------------------------------------------
 * Holder with a quorum of grantors
 * ------------------------------------------------------------------------------------------- */

int lease_quorum_init(struct lease_quorum *q, uint32_t w_q, uint32_t self, uint64_t duration_ns,
		      uint32_t rho_ppm)
{
	if (w_q == 0 || w_q > LEASE_MAX_REPLICAS ||
	    (self != LEASE_NO_SELF && self >= LEASE_MAX_REPLICAS) || rho_ppm > LEASE_RHO_MAX_PPM)
		return TEEMS_EINVAL;
	memset(q, 0, sizeof(*q));
	q->w_q = w_q;
	q->self = self;
	q->span_ns = lease_holder_span_ns(duration_ns, rho_ppm);
	q->next_round = 1;
	return 0;
}

void lease_quorum_drop(struct lease_quorum *q)
{
	memset(q->rounds, 0, sizeof(q->rounds));
	q->counted = 0;
}

/* Everything counted was counted in q->epoch; a reading of another epoch drops it all. */
static void quorum_observe(struct lease_quorum *q, struct lease_time now)
{
	if (now.epoch != q->epoch) {
		lease_quorum_drop(q);
		q->epoch = now.epoch;
	}
}

static void quorum_count(struct lease_quorum *q, uint32_t replica, uint64_t sent_hi)
{
	uint64_t bit = (uint64_t)1 << replica;
	if (!(q->counted & bit) || q->sent_hi[replica] < sent_hi)
		q->sent_hi[replica] = sent_hi;
	q->counted |= bit;
}

uint64_t lease_quorum_send(struct lease_quorum *q, struct lease_time now)
{
	quorum_observe(q, now);
	uint64_t id = q->next_round++;
	struct lease_round *r = &q->rounds[id % LEASE_ROUNDS];
	r->id = id;
	r->sent = now;
	if (q->self != LEASE_NO_SELF)
		quorum_count(q, q->self, now.hi_ns);
	return id;
}

bool lease_quorum_grant(struct lease_quorum *q, uint32_t replica, uint64_t round,
			struct lease_time now)
{
	quorum_observe(q, now);
	if (replica >= LEASE_MAX_REPLICAS || round == 0)
		return false;
	const struct lease_round *r = &q->rounds[round % LEASE_ROUNDS];
	if (r->id != round || r->sent.epoch != q->epoch)
		return false;
	quorum_count(q, replica, r->sent.hi_ns);
	return true;
}

/* The start of the best lease the counted grants give: choose the W_Q replicas with the latest
 * counted send times; the lease starts at the earliest of those (the W_Q-th latest overall).
 * Returns false with fewer than W_Q counted. */
static bool quorum_start(const struct lease_quorum *q, uint64_t *start)
{
	uint64_t top[LEASE_MAX_REPLICAS];
	unsigned n = 0;
	/* Only the counted replicas (every lease read asks: keep it short). */
	for (uint64_t m = q->counted; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctzll(m);
		/* insertion sort, descending */
		unsigned j = n++;
		while (j > 0 && top[j - 1] < q->sent_hi[i]) {
			top[j] = top[j - 1];
			j--;
		}
		top[j] = q->sent_hi[i];
	}
	if (n < q->w_q)
		return false;
	*start = top[q->w_q - 1];
	return true;
}

uint64_t lease_quorum_remaining_ns(const struct lease_quorum *q, struct lease_time now)
{
	uint64_t start;
	if (now.epoch != q->epoch || !quorum_start(q, &start) || now.hi_ns < start)
		return 0;
	uint64_t elapsed = now.hi_ns - start;
	return elapsed < q->span_ns ? q->span_ns - elapsed : 0;
}

bool lease_quorum_valid(const struct lease_quorum *q, struct lease_time now)
{
	return lease_quorum_remaining_ns(q, now) > 0;
}

/* ---------------------------------------------------------------------------------------------
 * Leader lease
 * ------------------------------------------------------------------------------------------- */

int lease_leader_init(struct lease_leader *l, uint32_t w_q, uint32_t self, uint64_t t_lease_ns,
		      uint32_t rho_ppm)
{
	if (self == LEASE_NO_SELF)
		return TEEMS_EINVAL;
	return lease_quorum_init(&l->q, w_q, self, t_lease_ns, rho_ppm);
}

uint64_t lease_leader_heartbeat(struct lease_leader *l, struct lease_time now)
{
	return lease_quorum_send(&l->q, now);
}

void lease_leader_ack(struct lease_leader *l, uint32_t replica, uint64_t round,
		      struct lease_time now)
{
	(void)lease_quorum_grant(&l->q, replica, round, now);
}

bool lease_leader_read_ok(const struct lease_leader *l, struct lease_time after_read)
{
	return lease_quorum_valid(&l->q, after_read);
}

void lease_leader_promised_higher(struct lease_leader *l)
{
	lease_quorum_drop(&l->q);
}

void lease_follower_init(struct lease_follower *f, uint64_t t_lease_ns, uint32_t rho_ppm)
{
	lease_grantor_init(&f->g, rho_ppm);
	f->t_lease_ns = t_lease_ns;
}

bool lease_follower_ack(struct lease_follower *f, uint64_t ballot, struct lease_time now)
{
	return lease_grant(&f->g, ballot, f->t_lease_ns, now, NULL) == LEASE_GRANTED;
}

bool lease_follower_may_support(struct lease_follower *f, uint64_t ballot, struct lease_time now)
{
	uint64_t bound_to;
	return !lease_grantor_bound(&f->g, now, &bound_to) || bound_to == ballot;
}

/* ---------------------------------------------------------------------------------------------
 * Configuration lease
 * ------------------------------------------------------------------------------------------- */

int lease_cfg_holder_init(struct lease_cfg_holder *h, uint32_t w_q, uint32_t self,
			  uint64_t t_cfg_ns, uint32_t rho_ppm)
{
	h->cfg_index = 0;
	return lease_quorum_init(&h->q, w_q, self, t_cfg_ns, rho_ppm);
}

uint64_t lease_cfg_request(struct lease_cfg_holder *h, uint64_t cfg_index, struct lease_time now)
{
	if (cfg_index != h->cfg_index) {
		lease_quorum_drop(&h->q);
		h->cfg_index = cfg_index;
	}
	return lease_quorum_send(&h->q, now);
}

bool lease_cfg_granted(struct lease_cfg_holder *h, uint32_t replica, uint64_t nonce,
		       uint64_t cfg_index, struct lease_time now)
{
	if (cfg_index != h->cfg_index)
		return false;
	return lease_quorum_grant(&h->q, replica, nonce, now);
}

bool lease_cfg_valid(const struct lease_cfg_holder *h, uint64_t applied_cfg_index,
		     struct lease_time now)
{
	return applied_cfg_index == h->cfg_index && lease_quorum_valid(&h->q, now);
}

void lease_cfg_grantor_accepted(struct lease_cfg_grantor *g, uint64_t index)
{
	if (index > g->accepted_cfg_index)
		g->accepted_cfg_index = index;
}

enum lease_verdict lease_cfg_grant(const struct lease_cfg_grantor *g, uint64_t holder_cfg_index)
{
	if (g->fenced)
		return LEASE_REFUSED_FENCED;
	if (g->accepted_cfg_index > holder_cfg_index)
		return LEASE_REFUSED_STALE;
	return LEASE_GRANTED;
}

uint64_t lease_cfg_revoke_wait_ns(uint64_t t_cfg_ns, uint32_t rho_ppm)
{
	return lease_grantor_wait_ns(t_cfg_ns, rho_ppm);
}

/* ---------------------------------------------------------------------------------------------
 * Client leases: the replicated state machine
 * ------------------------------------------------------------------------------------------- */

struct lease_entry {
	char *name;
	size_t name_len;
	bool held;
	uint64_t token; /* current token if held, else the last one issued */
	uint64_t ttl_ms;
	uint64_t generation;
	uint64_t unsafe_deadline_ns; /* trust_host_clock negative control only */
};

/* Linear search: fine for the number of named leases a control plane keeps; a hash index is a
 * drop-in later (the state machine's results do not depend on it). */
struct lease_table {
	struct lease_entry *v;
	size_t n, cap;
};

int lease_table_new(struct lease_table **out)
{
	struct lease_table *t = teems_calloc(1, sizeof(*t));
	if (!t)
		return TEEMS_ENOMEM;
	*out = t;
	return 0;
}

void lease_table_free(struct lease_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		teems_free(t->v[i].name);
	teems_free(t->v);
	teems_free(t);
}

static struct lease_entry *table_find(const struct lease_table *t, const char *name, size_t len)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].name_len == len && memcmp(t->v[i].name, name, len) == 0)
			return &t->v[i];
	return NULL;
}

static int table_add(struct lease_table *t, const char *name, size_t len, struct lease_entry **out)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct lease_entry *v = teems_realloc(t->v, cap * sizeof(*v));
		if (!v)
			return TEEMS_ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	char *copy = teems_malloc(len);
	if (!copy)
		return TEEMS_ENOMEM;
	memcpy(copy, name, len);
	struct lease_entry *e = &t->v[t->n++];
	memset(e, 0, sizeof(*e));
	e->name = copy;
	e->name_len = len;
	*out = e;
	return 0;
}

static void fill_result(struct lease_result *res, enum lease_status status,
			const struct lease_entry *e)
{
	memset(res, 0, sizeof(*res));
	res->status = status;
	if (e) {
		res->held = e->held;
		res->token = e->token;
		res->ttl_ms = e->ttl_ms;
		res->generation = e->generation;
	}
}

static uint64_t unsafe_deadline(uint64_t host_ns, uint64_t ttl_ms)
{
	return host_ns ? sat_add(host_ns, teems_lease_ms_to_ns(ttl_ms)) : 0;
}

int lease_table_apply(struct lease_table *t, const struct lease_cmd *cmd, struct lease_result *res)
{
	if (!cmd->name || cmd->name_len == 0 || cmd->name_len > LEASE_NAME_MAX) {
		fill_result(res, LEASE_BAD_ARG, NULL);
		return 0;
	}
	struct lease_entry *e = table_find(t, cmd->name, cmd->name_len);
	switch (cmd->type) {
	case LEASE_CMD_ACQUIRE:
		if (cmd->ttl_ms == 0) {
			fill_result(res, LEASE_BAD_ARG, e);
			return 0;
		}
		if (e && e->held) {
			fill_result(res, LEASE_HELD, e);
			return 0;
		}
		if (!e) {
			int err = table_add(t, cmd->name, cmd->name_len, &e);
			if (err)
				return err;
		}
		e->held = true;
		e->token++;
		e->ttl_ms = cmd->ttl_ms;
		e->generation++;
		e->unsafe_deadline_ns = unsafe_deadline(cmd->unsafe_host_ns, e->ttl_ms);
		fill_result(res, LEASE_OK, e);
		return 0;
	case LEASE_CMD_RENEW:
	case LEASE_CMD_RELEASE:
		if (!e || !e->held || e->token != cmd->token) {
			fill_result(res, LEASE_STALE, e);
			return 0;
		}
		e->generation++;
		if (cmd->type == LEASE_CMD_RELEASE)
			e->held = false;
		else
			e->unsafe_deadline_ns = unsafe_deadline(cmd->unsafe_host_ns, e->ttl_ms);
		fill_result(res, LEASE_OK, e);
		return 0;
	case LEASE_CMD_EXPIRE:
		if (!e || !e->held || e->generation != cmd->generation) {
			fill_result(res, LEASE_STALE, e);
			return 0;
		}
		e->held = false;
		e->generation++;
		fill_result(res, LEASE_OK, e);
		return 0;
	}
	fill_result(res, LEASE_BAD_ARG, e);
	return 0;
}

void lease_table_info(const struct lease_table *t, const char *name, size_t name_len,
		      struct lease_result *res)
{
	const struct lease_entry *e = name ? table_find(t, name, name_len) : NULL;
	fill_result(res, e ? LEASE_OK : LEASE_NOT_FOUND, e);
}

size_t lease_table_count(const struct lease_table *t)
{
	return t->n;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct lease_entry *x = *(const struct lease_entry *const *)a;
	const struct lease_entry *y = *(const struct lease_entry *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

#define ENTRY_FIXED (2 + 1 + 8 * 4)

int lease_table_encode(const struct lease_table *t, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = 4;
	const struct lease_entry **order;

	for (size_t i = 0; i < t->n; i++)
		need += ENTRY_FIXED + t->v[i].name_len;
	*len = need;
	if (!buf || cap < need)
		return TEEMS_EFULL;
	/* Sorted by name: the table's own order depends on its history (removals do not exist,
	 * but a decoded table is sorted while a live one is in acquisition order). */
	order = teems_malloc((t->n ? t->n : 1) * sizeof(*order));
	if (!order)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		order[i] = &t->v[i];
	qsort(order, t->n, sizeof(*order), entry_cmp);
	put_le32(buf, (uint32_t)t->n);
	buf += 4;
	for (size_t i = 0; i < t->n; i++) {
		const struct lease_entry *e = order[i];

		put_le16(buf, (uint16_t)e->name_len);
		memcpy(buf + 2, e->name, e->name_len);
		buf += 2 + e->name_len;
		buf[0] = e->held ? 1 : 0;
		put_le64(buf + 1, e->token);
		put_le64(buf + 9, e->ttl_ms);
		put_le64(buf + 17, e->generation);
		put_le64(buf + 25, e->unsafe_deadline_ns);
		buf += 33;
	}
	teems_free(order);
	return 0;
}

int lease_table_decode(struct lease_table *t, const uint8_t *buf, size_t len)
{
	struct lease_table nt = {0};
	uint32_t count;
	size_t off = 4;
	int err = TEEMS_ECORRUPT;

	if (len < 4)
		return TEEMS_ECORRUPT;
	count = get_le32(buf);
	if (count > (len - 4) / ENTRY_FIXED)
		return TEEMS_ECORRUPT;
	for (uint32_t i = 0; i < count; i++) {
		struct lease_entry *e;
		size_t nl;

		if (len - off < ENTRY_FIXED)
			goto fail;
		nl = get_le16(buf + off);
		if (nl == 0 || nl > LEASE_NAME_MAX || len - off < ENTRY_FIXED + nl ||
		    buf[off + 2 + nl] > 1 || table_find(&nt, (const char *)buf + off + 2, nl))
			goto fail;
		err = table_add(&nt, (const char *)buf + off + 2, nl, &e);
		if (err)
			goto fail;
		err = TEEMS_ECORRUPT;
		off += 2 + nl;
		e->held = buf[off] == 1;
		e->token = get_le64(buf + off + 1);
		e->ttl_ms = get_le64(buf + off + 9);
		e->generation = get_le64(buf + off + 17);
		e->unsafe_deadline_ns = get_le64(buf + off + 25);
		off += 33;
	}
	if (off != len)
		goto fail;
	for (size_t i = 0; i < t->n; i++)
		teems_free(t->v[i].name);
	teems_free(t->v);
	*t = nt;
	return 0;
fail:
	for (size_t i = 0; i < nt.n; i++)
		teems_free(nt.v[i].name);
	teems_free(nt.v);
	return err;
}

/* ---------------------------------------------------------------------------------------------
 * Leader-side expiry timers
 * ------------------------------------------------------------------------------------------- */

struct lease_timer {
	char *name;
	size_t name_len;
	uint64_t generation;
	struct lease_wait wait;	     /* TTL * (1 + rho) on lo */
	uint64_t unsafe_deadline_ns; /* trust_host_clock: absolute host deadline from the log */
	bool due_reported;
};

void lease_timers_init(struct lease_timers *tm, uint32_t rho_ppm, bool trust_host_clock)
{
	memset(tm, 0, sizeof(*tm));
	tm->rho_ppm = clamp_rho(rho_ppm);
	tm->trust_host_clock = trust_host_clock;
}

static void timers_clear(struct lease_timers *tm)
{
	for (size_t i = 0; i < tm->n; i++)
		teems_free(tm->v[i].name);
	tm->n = 0;
}

void lease_timers_free(struct lease_timers *tm)
{
	timers_clear(tm);
	teems_free(tm->v);
	tm->v = NULL;
	tm->cap = 0;
	tm->in_office = false;
}

void lease_timers_step_down(struct lease_timers *tm)
{
	timers_clear(tm);
	tm->in_office = false;
}

static struct lease_timer *timers_find(struct lease_timers *tm, const char *name, size_t len)
{
	for (size_t i = 0; i < tm->n; i++)
		if (tm->v[i].name_len == len && memcmp(tm->v[i].name, name, len) == 0)
			return &tm->v[i];
	return NULL;
}

static void timers_remove(struct lease_timers *tm, struct lease_timer *x)
{
	teems_free(x->name);
	*x = tm->v[--tm->n];
}

/* Arms (or re-arms) the timer of `name` to start at `now`. */
static int timers_arm(struct lease_timers *tm, const char *name, size_t len, uint64_t generation,
		      uint64_t ttl_ms, uint64_t unsafe_deadline_ns, struct lease_time now)
{
	struct lease_timer *x = timers_find(tm, name, len);
	if (!x) {
		if (tm->n == tm->cap) {
			size_t cap = tm->cap ? tm->cap * 2 : 8;
			struct lease_timer *v = teems_realloc(tm->v, cap * sizeof(*v));
			if (!v)
				return TEEMS_ENOMEM;
			tm->v = v;
			tm->cap = cap;
		}
		char *copy = teems_malloc(len);
		if (!copy)
			return TEEMS_ENOMEM;
		memcpy(copy, name, len);
		x = &tm->v[tm->n++];
		memset(x, 0, sizeof(*x));
		x->name = copy;
		x->name_len = len;
	}
	x->generation = generation;
	x->unsafe_deadline_ns = unsafe_deadline_ns;
	x->due_reported = false;
	lease_wait_start(&x->wait, lease_grantor_wait_ns(teems_lease_ms_to_ns(ttl_ms), tm->rho_ppm),
			 now);
	return 0;
}

int lease_timers_take_office(struct lease_timers *tm, const struct lease_table *t,
			     struct lease_time now)
{
	timers_clear(tm);
	tm->in_office = true;
	for (size_t i = 0; i < t->n; i++) {
		const struct lease_entry *e = &t->v[i];
		if (!e->held)
			continue;
		int err = timers_arm(tm, e->name, e->name_len, e->generation, e->ttl_ms,
				     e->unsafe_deadline_ns, now);
		if (err) {
			lease_timers_step_down(tm);
			return err;
		}
	}
	return 0;
}

int lease_timers_applied(struct lease_timers *tm, const struct lease_cmd *cmd,
			 const struct lease_result *res, struct lease_time now)
{
	if (!tm->in_office || res->status != LEASE_OK)
		return 0;
	if (res->held)
		return timers_arm(tm, cmd->name, cmd->name_len, res->generation, res->ttl_ms,
				  unsafe_deadline(cmd->unsafe_host_ns, res->ttl_ms), now);
	struct lease_timer *x = timers_find(tm, cmd->name, cmd->name_len);
	if (x)
		timers_remove(tm, x);
	return 0;
}

bool lease_timers_remaining_ns(struct lease_timers *tm, const char *name, size_t name_len,
			       struct lease_time now, uint64_t *out)
{
	struct lease_timer *x;

	if (!tm->in_office || !(x = timers_find(tm, name, name_len)))
		return false;
	if (tm->trust_host_clock)
		*out = now.hi_ns >= x->unsafe_deadline_ns ? 0 : x->unsafe_deadline_ns - now.hi_ns;
	else
		*out = lease_wait_remaining_ns(&x->wait, now);
	return true;
}

void lease_timers_retry(struct lease_timers *tm)
{
	for (size_t i = 0; i < tm->n; i++)
		tm->v[i].due_reported = false;
}

size_t lease_timers_due(struct lease_timers *tm, struct lease_time now, struct lease_expiry *out,
			size_t cap)
{
	size_t k = 0;
	if (!tm->in_office)
		return 0;
	for (size_t i = 0; i < tm->n && k < cap; i++) {
		struct lease_timer *x = &tm->v[i];
		if (x->due_reported)
			continue;
		bool due = tm->trust_host_clock ? now.hi_ns >= x->unsafe_deadline_ns
						: lease_wait_done(&x->wait, now);
		if (!due)
			continue;
		x->due_reported = true;
		out[k].name = x->name;
		out[k].name_len = x->name_len;
		out[k].generation = x->generation;
		k++;
	}
	return k;
}
