/* RR-ABD recovery (DESIGN.md section 4, step 5) and the key-range digests it compares.
 *
 * Keys are split into `ranges` buckets (a power of two) by the top bits of abd_hash. A range's
 * digest is the XOR, over its registers, of SHA-256(u32 key length, key, timestamp fields,
 * tombstone byte), little-endian: independent of insertion order, and equal at two replicas
 * exactly when they hold the same (key, timestamp, tombstone) set (timestamps are unique, so
 * the timestamp names the value). Stability is not in the digest: adopted registers are never
 * stable anyway.
 *
 * The recovering incarnation asks every replica for the digests of all ranges with a fresh
 * nonce, counts itself as a suspicious member, and once R_Q(s) distinct replicas (after the
 * discard rule) have answered it freezes the quorum; for each range it fetches, from one
 * member per distinct digest that differs from its own, the registers of that range (paged),
 * adopting per key the highest timestamp, never stable. When every fetch is complete it
 * persists a marker record marked sync, and becomes fresh once that is durable. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/abd_internal.h"
#include "teems/err.h"

static uint32_t range_in(uint64_t h, uint32_t ranges)
{
	return (uint32_t)(h >> 40) & (ranges - 1);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int item_digest(struct abd *a, const struct abd_reg *g, uint8_t out[MSG_DIGEST_SIZE])
{
	uint8_t w[4 + 8 + 2 + 8 + 8 + 8 + 1];
	unsigned n = 0;

	w[0] = (uint8_t)g->key_len;
	w[1] = (uint8_t)(g->key_len >> 8);
	w[2] = (uint8_t)(g->key_len >> 16);
	w[3] = (uint8_t)(g->key_len >> 24);
	put64(w + 4, g->ts.seq);
	w[12] = (uint8_t)g->ts.replica;
	w[13] = (uint8_t)(g->ts.replica >> 8);
	put64(w + 14, g->ts.reg.epoch);
	put64(w + 22, g->ts.reg.slot);
	put64(w + 30, g->ts.op);
	w[38] = g->tombstone;
	if (EVP_DigestInit_ex(a->md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(a->md, w, 4) != 1 ||
	    (g->key_len && EVP_DigestUpdate(a->md, g->key, g->key_len) != 1) ||
	    EVP_DigestUpdate(a->md, w + 4, sizeof(w) - 4) != 1 ||
	    EVP_DigestFinal_ex(a->md, out, &n) != 1 || n != MSG_DIGEST_SIZE)
		return TEEMS_ECRYPTO;
	return 0;
}

int abd_range_digests(struct abd *a, uint32_t ranges, uint8_t *digests, uint64_t *keys)
{
	uint8_t d[MSG_DIGEST_SIZE];

	memset(digests, 0, (size_t)ranges * MSG_DIGEST_SIZE);
	if (keys)
		memset(keys, 0, ranges * sizeof(*keys));
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct abd_reg *g = a->buckets[b]; g; g = g->next) {
			uint32_t rg = range_in(g->hash, ranges);
			int rc = item_digest(a, g, d);

			if (rc)
				return rc;
			for (int i = 0; i < MSG_DIGEST_SIZE; i++)
				digests[(size_t)rg * MSG_DIGEST_SIZE + i] ^= d[i];
			if (keys)
				keys[rg]++;
		}
	return 0;
}

int abd_handle_digest_request(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_digest_request *q = &m->abd_digest_request;
	uint8_t *all;
	uint64_t *keys;
	struct msg_range_digest *out;
	struct abd_send *s;
	int rc;

	if (q->ranges < 1 || q->ranges > MSG_MAX_RANGES || (q->ranges & (q->ranges - 1)) ||
	    q->count < 1 || q->first >= q->ranges || q->count > q->ranges - q->first)
		return 0;
	all = abd_scratch(r, (size_t)q->ranges * MSG_DIGEST_SIZE);
	keys = abd_scratch(r, q->ranges * sizeof(*keys));
	out = abd_scratch(r, q->count * sizeof(*out));
	if (!all || !keys || !out)
		return TEEMS_ENOMEM;
	rc = abd_range_digests(a, q->ranges, all, keys);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < q->count; i++) {
		out[i].range = q->first + i;
		out[i].keys = keys[q->first + i];
		memcpy(out[i].digest, all + (size_t)(q->first + i) * MSG_DIGEST_SIZE,
		       MSG_DIGEST_SIZE);
	}
	s = abd_send_new(a, r, m->from.replica, MSG_ABD_DIGEST_REPLY, m->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.abd_digest_reply.ranges = q->ranges;
	s->msg.abd_digest_reply.digests.count = q->count;
	s->msg.abd_digest_reply.digests.items = out;
	return 0;
}

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	uint32_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int reg_ptr_cmp(const void *x, const void *y)
{
	const struct abd_reg *a = *(const struct abd_reg *const *)x;
	const struct abd_reg *b = *(const struct abd_reg *const *)y;

	return key_cmp(a->key, a->key_len, b->key, b->key_len);
}

int abd_handle_range_request(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_range_request *q = &m->abd_range_request;
	struct abd_reg **sel;
	struct msg_item *items;
	size_t n = 0, taken = 0, bytes = 0;
	struct abd_send *s;

	if (q->ranges < 1 || q->ranges > MSG_MAX_RANGES || (q->ranges & (q->ranges - 1)) ||
	    q->range >= q->ranges)
		return 0;
	sel = abd_scratch(r, (a->n_regs ? a->n_regs : 1) * sizeof(*sel));
	if (!sel)
		return TEEMS_ENOMEM;
	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct abd_reg *g = a->buckets[b]; g; g = g->next) {
			if (range_in(g->hash, q->ranges) != q->range)
				continue;
			if (q->has_after &&
			    key_cmp(g->key, g->key_len, q->after.p, q->after.len) <= 0)
				continue;
			sel[n++] = g;
		}
	qsort(sel, n, sizeof(*sel), reg_ptr_cmp);
	items = abd_scratch(r, (n ? n : 1) * sizeof(*items));
	if (!items)
		return TEEMS_ENOMEM;
	while (taken < n && taken < a->cfg.page_items) {
		struct abd_reg *g = sel[taken];
		size_t sz = (size_t)g->key_len + g->len + 64;

		/* a page holds at least one register and stays under the frame cap */
		if (taken && (bytes + sz > a->cfg.page_bytes || bytes + sz > MSG_MAX_FRAME / 2))
			break;
		memset(&items[taken], 0, sizeof(items[taken]));
		items[taken].key.p = abd_scratch_dup(r, g->key, g->key_len);
		items[taken].key.len = g->key_len;
		items[taken].ts = g->ts;
		items[taken].stable = g->stable;
		items[taken].tombstone = g->tombstone;
		if (!items[taken].key.p)
			return TEEMS_ENOMEM;
		if (g->len && !g->tombstone) {
			items[taken].value.p = abd_scratch_dup(r, g->value, g->len);
			items[taken].value.len = g->len;
			if (!items[taken].value.p)
				return TEEMS_ENOMEM;
		}
		bytes += sz;
		taken++;
	}
	s = abd_send_new(a, r, m->from.replica, MSG_ABD_RANGE_REPLY, m->nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.abd_range_reply.ranges = q->ranges;
	s->msg.abd_range_reply.range = q->range;
	s->msg.abd_range_reply.complete = taken == n;
	s->msg.abd_range_reply.items.count = (uint32_t)taken;
	s->msg.abd_range_reply.items.items = items;
	return 0;
}

/* ---- the recovering incarnation ---- */

void abd_recover_clear(struct abd *a)
{
	for (size_t i = 0; i < a->n_fetches; i++)
		teems_free(a->fetches[i].after);
	a->n_fetches = 0;
	teems_free(a->rec_digests);
	a->rec_digests = NULL;
}

static int send_digest_requests(struct abd *a, struct abd_ready *r)
{
	a->rec_resend_hi = a->now.hi_ns;
	for (unsigned i = 0; i < a->n; i++) {
		struct abd_send *s;

		if (i == a->cfg.self || (a->rec_col.members & (1ull << i)))
			continue;
		s = abd_send_new(a, r, (uint16_t)i, MSG_ABD_DIGEST_REQUEST, a->rec_nonce);
		if (!s)
			return TEEMS_ENOMEM;
		s->msg.abd_digest_request.ranges = a->cfg.ranges;
		s->msg.abd_digest_request.first = 0;
		s->msg.abd_digest_request.count = a->cfg.ranges;
	}
	return 0;
}

static int send_page_request(struct abd *a, struct abd_ready *r, const struct abd_fetch *f)
{
	struct abd_send *s = abd_send_new(a, r, f->peer, MSG_ABD_RANGE_REQUEST, f->nonce);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.abd_range_request.ranges = a->cfg.ranges;
	s->msg.abd_range_request.range = f->range;
	s->msg.abd_range_request.has_after = f->has_after;
	if (f->has_after) {
		s->msg.abd_range_request.after.p = abd_scratch_dup(r, f->after, f->after_len);
		s->msg.abd_range_request.after.len = f->after_len;
		if (!s->msg.abd_range_request.after.p)
			return TEEMS_ENOMEM;
	}
	return 0;
}

static int finish_transfer(struct abd *a, struct abd_ready *r)
{
	struct abd_persist *p;

	for (size_t i = 0; i < a->n_fetches; i++)
		if (!a->fetches[i].done)
			return 0;
	if (abd_persist_append(a, r, &p))
		return TEEMS_ENOMEM;
	p->flags = ABD_REC_RECOVERED;
	p->sync = true;
	a->rec_finishing = true;
	a->rec_marker_seq = p->seq;
	return 0;
}

int abd_recover_start(struct abd *a, struct abd_ready *r)
{
	size_t sz = (size_t)a->n * a->cfg.ranges * MSG_DIGEST_SIZE;

	abd_recover_clear(a);
	a->rec_digests = teems_malloc(sz);
	if (!a->rec_digests)
		return TEEMS_ENOMEM;
	a->rec_pending = false;
	a->rec_active = true;
	a->rec_frozen = false;
	a->rec_finishing = false;
	a->rec_redo = false;
	a->rec_nonce = abd_new_nonce(a);
	a->rec_sent_hi = a->now.hi_ns;
	memset(&a->rec_col, 0, sizeof(a->rec_col));
	abd_col_self(a, &a->rec_col); /* counted, and suspicious (section 4, step 5) */
	return send_digest_requests(a, r);
}

/* The digest quorum is complete: choose what to fetch. */
static int freeze(struct abd *a, struct abd_ready *r)
{
	uint32_t R = a->cfg.ranges;
	uint8_t *own = a->rec_digests + (size_t)a->cfg.self * R * MSG_DIGEST_SIZE;
	int rc;

	a->rec_frozen = true;
	rc = abd_range_digests(a, R, own, NULL);
	if (!rc)
		rc = abd_counted(a, r, ABD_COUNTED_RECOVERY, a->rec_nonce, &a->rec_col);
	if (rc)
		return rc;
	for (uint32_t rg = 0; rg < R; rg++) {
		size_t first = a->n_fetches;

		for (unsigned x = 0; x < a->n; x++) {
			const uint8_t *d = a->rec_digests + ((size_t)x * R + rg) * MSG_DIGEST_SIZE;
			bool dup = false;
			struct abd_fetch *f;

			if (x == a->cfg.self || !(a->rec_col.members & (1ull << x)) ||
			    !memcmp(d, own + (size_t)rg * MSG_DIGEST_SIZE, MSG_DIGEST_SIZE))
				continue;
			a->stats.ranges_differing++;
			for (size_t i = first; i < a->n_fetches; i++)
				if (!memcmp(d,
					    a->rec_digests + ((size_t)a->fetches[i].peer * R + rg) *
								     MSG_DIGEST_SIZE,
					    MSG_DIGEST_SIZE))
					dup = true;
			if (dup)
				continue;
			if (a->n_fetches == a->cap_fetches) {
				size_t cap = a->cap_fetches ? a->cap_fetches * 2 : 16;
				void *p = teems_realloc(a->fetches, cap * sizeof(*f));

				if (!p)
					return TEEMS_ENOMEM;
				a->fetches = p;
				a->cap_fetches = cap;
			}
			f = &a->fetches[a->n_fetches++];
			memset(f, 0, sizeof(*f));
			f->peer = (uint16_t)x;
			f->range = rg;
			f->nonce = abd_new_nonce(a);
			a->stats.ranges_fetched++;
			rc = send_page_request(a, r, f);
			if (rc)
				return rc;
		}
	}
	a->rec_sent_hi = a->now.hi_ns; /* transfers make progress or time out */
	a->rec_resend_hi = a->now.hi_ns;
	return finish_transfer(a, r);
}

void abd_recover_refilter(struct abd *a)
{
	if (!a->rec_active)
		return;
	/* a frozen quorum (or one whose transfer is finishing) that loses a member is void:
	 * the next step redoes the digest collection; adopted registers stay */
	if (abd_col_refilter(a, &a->rec_col) && a->rec_frozen)
		a->rec_redo = true;
}

static int check_quorum(struct abd *a, struct abd_ready *r)
{
	unsigned s;

	abd_col_refilter(a, &a->rec_col); /* no quorum is decided on a superseded member */
	s = abd_col_s(a, &a->rec_col);
	if (a->rec_frozen || (unsigned)__builtin_popcountll(a->rec_col.members) < abd_rq(a, s))
		return 0;
	return freeze(a, r);
}

static int digest_reply(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_digest_reply *d = &m->abd_digest_reply;
	uint32_t R = a->cfg.ranges;
	struct msg_iter it;
	struct msg_range_digest rd;
	uint8_t *dst;

	if (m->nonce != a->rec_nonce || a->rec_frozen || d->ranges != R || d->digests.count != R)
		return 0;
	if (!abd_col_add(a, r, &a->rec_col, m, NULL))
		return 0;
	dst = a->rec_digests + (size_t)m->from.replica * R * MSG_DIGEST_SIZE;
	msg_range_digests_begin(&it, &d->digests);
	while (msg_range_digests_next(&it, &rd))
		if (rd.range < R)
			memcpy(dst + (size_t)rd.range * MSG_DIGEST_SIZE, rd.digest,
			       MSG_DIGEST_SIZE);
	a->stats.digest_replies++;
	return check_quorum(a, r);
}

static int range_reply(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	const struct msg_abd_range_reply *q = &m->abd_range_reply;
	struct abd_fetch *f = NULL;
	struct msg_iter it;
	struct msg_item item;
	struct msg_bytes last = {0};

	if (!a->rec_frozen || a->rec_finishing || q->ranges != a->cfg.ranges)
		return 0;
	for (size_t i = 0; i < a->n_fetches; i++)
		if (!a->fetches[i].done && a->fetches[i].nonce == m->nonce &&
		    a->fetches[i].peer == m->from.replica && a->fetches[i].range == q->range)
			f = &a->fetches[i];
	if (!f)
		return 0;
	/* a page counts only from the incarnation the frozen quorum counted (discard rule) */
	if (abd_incarnation_checks(a) &&
	    msg_regidx_cmp(&m->from.reg, &a->rec_col.member[f->peer]) != 0) {
		a->stats.discarded++;
		return 0;
	}
	a->stats.range_pages++;
	msg_items_begin(&it, &q->items);
	while (msg_items_next(&it, &item)) {
		bool stored;
		int rc;

		if (abd_range_of(a, item.key.p, item.key.len) != f->range)
			continue;
		/* adopted: highest timestamp wins, never stable (section 4, step 5) */
		rc = abd_store(a, r, item.key.p, item.key.len, abd_hash(item.key.p, item.key.len),
			       &item.ts, item.tombstone, item.value.p, item.value.len, false,
			       &stored);
		if (rc)
			return rc;
		if (stored)
			a->stats.items_adopted++;
		last = item.key;
	}
	a->rec_sent_hi = a->now.hi_ns;
	if (q->complete || q->items.count == 0) {
		f->done = true;
		return finish_transfer(a, r);
	}
	teems_free(f->after);
	f->after = teems_malloc(last.len ? last.len : 1);
	if (!f->after)
		return TEEMS_ENOMEM;
	memcpy(f->after, last.p, last.len);
	f->after_len = last.len;
	f->has_after = true;
	f->nonce = abd_new_nonce(a);
	return send_page_request(a, r, f);
}

int abd_recover_reply(struct abd *a, const struct msg *m, struct abd_ready *r)
{
	if (!a->rec_active)
		return 0;
	if (m->type == MSG_ABD_DIGEST_REPLY)
		return digest_reply(a, m, r);
	return range_reply(a, m, r);
}

int abd_recover_timers(struct abd *a, struct abd_ready *r, bool taint)
{
	if (a->rec_pending)
		return abd_recover_start(a, r);
	if (a->rec_active && a->rec_redo)
		return abd_recover_start(a, r); /* a new collection; adopted state stays */
	if (!a->rec_active || a->rec_finishing)
		return 0;
	if (taint || a->now.hi_ns - a->rec_sent_hi > a->cfg.t_op_ns)
		return abd_recover_start(a, r); /* a new collection; adopted state stays */
	if (a->now.hi_ns - a->rec_resend_hi < a->cfg.resend_ns)
		return 0;
	if (!a->rec_frozen)
		return send_digest_requests(a, r);
	a->rec_resend_hi = a->now.hi_ns;
	for (size_t i = 0; i < a->n_fetches; i++)
		if (!a->fetches[i].done) {
			int rc = send_page_request(a, r, &a->fetches[i]);

			if (rc)
				return rc;
		}
	return 0;
}

int abd_recover_synced(struct abd *a, struct abd_ready *r)
{
	if (!a->rec_finishing || a->rec_redo || a->synced_seq < a->rec_marker_seq)
		return 0;
	a->rec_finishing = false;
	a->rec_active = false;
	a->suspicious = false;
	r->recovered = true;
	abd_recover_clear(a);
	return 0;
}
