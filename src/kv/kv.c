/* The key-value state machine (kv.h): the map, the ops, snapshots.
 *
 * The map is a chained hash table whose bucket of a key is the top `bits` bits of its hash
 * and whose chains are sorted by (hash, key): walking the buckets in order walks the keys in
 * (hash, key) order, which is SCAN's order on every replica whatever the table's size. Entries
 * are never removed (a deleted or expired key stays as a tombstone that keeps its version).
 * The hash is fixed and unkeyed (every replica must order keys alike), so a client that crafts
 * colliding keys lengthens one chain: an authenticated client's denial of service, not a
 * safety issue.
 *
 * Atomicity: an op that writes first reserves everything it may need (the result buffer, value
 * copies, new entries, a bigger table), and only then commits, in a phase that cannot fail. A
 * failed reservation leaves the map logically unchanged (a grown table holds the same keys). */
#include "kv/kv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv_internal.h"
#include "teems/err.h"

#define MIN_BITS 4
#define MAX_BITS 40

struct kv_entry {
	struct kv_entry *next; /* the chain, sorted by (hash, key) */
	uint64_t hash;
	uint64_t version;
	uint64_t expire_ms; /* absolute; 0: none (only while present) */
	uint8_t *value;	    /* NULL when absent or empty */
	uint32_t value_len;
	bool present;
	uint16_t key_len;
	uint8_t key[];
};

struct kv {
	struct kv_entry **buckets; /* 1 << bits of them */
	unsigned bits;
	size_t count;
	uint64_t clock;
};

/* ---- the table ---- */

/* FNV-1a, then MurmurHash3's 64-bit finalizer so that the top bits (the bucket) depend on
 * every byte. Fixed forever: SCAN cursors are positions in this hash's order. */
static uint64_t hash_key(const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= key[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static size_t bucket_of(const struct kv *kv, uint64_t h)
{
	return (size_t)(h >> (64 - kv->bits));
}

/* <0 if e comes before (h, key), 0 if it is that key, >0 after. */
static int order(const struct kv_entry *e, uint64_t h, const uint8_t *key, size_t len)
{
	size_t n;
	int c;

	if (e->hash != h)
		return e->hash < h ? -1 : 1;
	n = e->key_len < len ? e->key_len : len;
	c = n ? memcmp(e->key, key, n) : 0;
	if (c != 0)
		return c;
	return (e->key_len > len) - (e->key_len < len);
}

/* The link where the key is (*result is its entry) or would be inserted (*result is the entry
 * after it, or NULL). */
static struct kv_entry **locate(const struct kv *kv, uint64_t h, const uint8_t *key, size_t len)
{
	struct kv_entry **pp = &kv->buckets[bucket_of(kv, h)];

	while (*pp != NULL && order(*pp, h, key, len) < 0)
		pp = &(*pp)->next;
	return pp;
}

static struct kv_entry *find(const struct kv *kv, const uint8_t *key, size_t len)
{
	uint64_t h = hash_key(key, len);
	struct kv_entry *e = *locate(kv, h, key, len);

	return e != NULL && order(e, h, key, len) == 0 ? e : NULL;
}

int kv_new(struct kv **out)
{
	struct kv *kv = teems_calloc(1, sizeof(*kv));

	*out = NULL;
	if (kv == NULL)
		return TEEMS_ENOMEM;
	kv->bits = MIN_BITS;
	kv->buckets = teems_calloc((size_t)1 << kv->bits, sizeof(*kv->buckets));
	if (kv->buckets == NULL) {
		teems_free(kv);
		return TEEMS_ENOMEM;
	}
	*out = kv;
	return TEEMS_OK;
}

static void free_table(struct kv_entry **b, unsigned bits)
{
	for (size_t i = 0; i < ((size_t)1 << bits); i++) {
		struct kv_entry *e = b[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			teems_free(e->value);
			teems_free(e);
		}
	}
	teems_free(b);
}

void kv_free(struct kv *kv)
{
	if (kv == NULL)
		return;
	free_table(kv->buckets, kv->bits);
	teems_free(kv);
}

/* Doubles the table: bucket i splits into 2i and 2i + 1, each keeping the chain's order. */
static int grow(struct kv *kv)
{
	size_t n = (size_t)1 << kv->bits;
	struct kv_entry **nb;

	if (kv->bits >= MAX_BITS)
		return TEEMS_OK; /* longer chains from here on, still correct */
	nb = teems_calloc(2 * n, sizeof(*nb));
	if (nb == NULL)
		return TEEMS_ENOMEM;
	kv->bits++;
	for (size_t i = 0; i < n; i++) {
		struct kv_entry **tail[2] = {&nb[2 * i], &nb[2 * i + 1]};
		struct kv_entry *e = kv->buckets[i], *next;

		for (; e != NULL; e = next) {
			size_t half = bucket_of(kv, e->hash) & 1;

			next = e->next;
			e->next = NULL;
			*tail[half] = e;
			tail[half] = &e->next;
		}
	}
	teems_free(kv->buckets);
	kv->buckets = nb;
	return TEEMS_OK;
}

/* Room for `extra` more entries at a load factor of at most 1. */
static int reserve(struct kv *kv, size_t extra)
{
	while (kv->count + extra > ((size_t)1 << kv->bits) && kv->bits < MAX_BITS)
		if (grow(kv) != TEEMS_OK)
			return TEEMS_ENOMEM;
	return TEEMS_OK;
}

static struct kv_entry *new_entry(const uint8_t *key, uint16_t len, uint64_t h)
{
	struct kv_entry *e = teems_calloc(1, sizeof(*e) + len);

	if (e == NULL)
		return NULL;
	e->hash = h;
	e->key_len = len;
	if (len)
		memcpy(e->key, key, len);
	return e;
}

/* ---- the logical view at a time t (kv.h: Expiry) ---- */

static bool expired(const struct kv_entry *e, uint64_t t)
{
	return e->present && e->expire_ms != 0 && e->expire_ms <= t;
}

static bool live(const struct kv_entry *e, uint64_t t)
{
	return e != NULL && e->present && !expired(e, t);
}

static uint64_t version_at(const struct kv_entry *e, uint64_t t)
{
	if (e == NULL)
		return 0;
	return e->version + (expired(e, t) ? 1 : 0);
}

static void clear_value(struct kv_entry *e)
{
	teems_free(e->value);
	e->value = NULL;
	e->value_len = 0;
	e->present = false;
	e->expire_ms = 0;
}

/* Turns a key expired at t into the tombstone it reads as. */
static void materialize(struct kv_entry *e, uint64_t t)
{
	if (expired(e, t)) {
		clear_value(e);
		e->version++;
	}
}

/* ---- reserved writes ---- */

/* What a write to one key needs, allocated before the commit. */
struct prep {
	uint64_t hash;
	struct kv_entry *fresh; /* for a key absent from the map when prepared */
	uint8_t *value;		/* copy of the new value (NULL when empty) */
	uint32_t value_len;
};

static int prepare(const struct kv *kv, const uint8_t *key, uint16_t key_len, const uint8_t *value,
		   uint32_t value_len, struct prep *p, size_t *n_fresh)
{
	memset(p, 0, sizeof(*p));
	p->hash = hash_key(key, key_len);
	if (value_len) {
		p->value = teems_malloc(value_len);
		if (p->value == NULL)
			return TEEMS_ENOMEM;
		memcpy(p->value, value, value_len);
		p->value_len = value_len;
	}
	if (find(kv, key, key_len) == NULL) {
		p->fresh = new_entry(key, key_len, p->hash);
		if (p->fresh == NULL) {
			teems_free(p->value);
			p->value = NULL;
			return TEEMS_ENOMEM;
		}
		(*n_fresh)++;
	}
	return TEEMS_OK;
}

static void unprepare(struct prep *p)
{
	teems_free(p->value);
	teems_free(p->fresh);
	memset(p, 0, sizeof(*p));
}

/* The key's entry, linking the prepared one if the key is new (an earlier write of the same
 * commit may have linked it already; the spare is then freed). Cannot fail. */
static struct kv_entry *commit_entry(struct kv *kv, const uint8_t *key, uint16_t key_len,
				     struct prep *p)
{
	struct kv_entry **pp = locate(kv, p->hash, key, key_len);
	struct kv_entry *e = *pp;

	if (e != NULL && order(e, p->hash, key, key_len) == 0) {
		teems_free(p->fresh);
	} else {
		e = p->fresh;
		e->next = *pp;
		*pp = e;
		kv->count++;
	}
	p->fresh = NULL;
	return e;
}

/* Writes the prepared value (present) or deletes (!present), version + 1. Cannot fail. */
static void commit_value(struct kv_entry *e, struct prep *p, bool present, uint64_t expire_ms)
{
	teems_free(e->value);
	e->value = p != NULL ? p->value : NULL;
	e->value_len = p != NULL ? p->value_len : 0;
	e->present = present;
	e->expire_ms = present ? expire_ms : 0;
	e->version++;
	if (p != NULL) {
		p->value = NULL;
		p->value_len = 0;
	}
}

/* ---- the model ops ---- */

size_t kv_count(const struct kv *kv)
{
	return kv->count;
}

uint64_t kv_clock(const struct kv *kv)
{
	return kv->clock;
}

static void get_at(const struct kv *kv, const uint8_t *key, size_t key_len, uint64_t t,
		   struct kv_result *res)
{
	const struct kv_entry *e = find(kv, key, key_len);

	memset(res, 0, sizeof(*res));
	res->status = KV_OK;
	res->version = version_at(e, t);
	res->found = live(e, t);
	if (res->found) {
		res->value = e->value;
		res->value_len = e->value_len;
	}
}

void kv_get(const struct kv *kv, const uint8_t *key, size_t key_len, struct kv_result *res)
{
	get_at(kv, key, key_len, kv->clock, res);
}

int kv_apply(struct kv *kv, const struct kv_cmd *cmd, struct kv_result *res)
{
	uint64_t t = kv->clock;
	struct prep p;
	size_t n_fresh = 0;
	bool present = cmd->op != KV_DEL;
	struct kv_entry *e;

	if (cmd->op < KV_GET || cmd->op > KV_DEL || kv_cmd_size(cmd) == 0)
		return TEEMS_EINVAL;
	get_at(kv, cmd->key, cmd->key_len, t, res);
	if (cmd->op == KV_GET)
		return TEEMS_OK;
	if (cmd->op == KV_CAS && res->version != cmd->expected_version) {
		memset(res, 0, sizeof(*res));
		res->status = KV_CAS_FAILED;
		e = find(kv, cmd->key, cmd->key_len);
		res->version = version_at(e, t);
		if (e != NULL)
			materialize(e, t);
		return TEEMS_OK;
	}
	if (prepare(kv, cmd->key, cmd->key_len, cmd->value, present ? cmd->value_len : 0, &p,
		    &n_fresh) != TEEMS_OK)
		return TEEMS_ENOMEM;
	if (reserve(kv, n_fresh) != TEEMS_OK) {
		unprepare(&p);
		return TEEMS_ENOMEM;
	}
	e = commit_entry(kv, cmd->key, cmd->key_len, &p);
	materialize(e, t);
	commit_value(e, &p, present, 0);
	memset(res, 0, sizeof(*res));
	res->status = KV_OK;
	res->version = e->version;
	return TEEMS_OK;
}

/* ---- the RESP ops ---- */

/* A growable buffer for result lists; a failed allocation sticks (oom). */
struct rbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void rb_add(struct rbuf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len < n) {
		size_t ncap = b->cap ? b->cap : 256;
		uint8_t *np;

		while (ncap - b->len < n)
			ncap *= 2;
		np = teems_realloc(b->p, ncap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	if (n)
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void rb_key(struct rbuf *b, const uint8_t *k, uint16_t len)
{
	uint8_t h[2];

	kv_put16(h, len);
	rb_add(b, h, 2);
	rb_add(b, k, len);
}

static void rb_value(struct rbuf *b, const uint8_t *v, uint32_t len)
{
	uint8_t h[4];

	kv_put32(h, len);
	rb_add(b, h, 4);
	rb_add(b, v, len);
}

/* Encodes res into a new buffer. Errors: TEEMS_ENOMEM. */
static int encode_new(const struct kv_result *res, uint8_t **out, size_t *len)
{
	size_t n = kv_result_size(res);

	*out = NULL;
	if (n == 0)
		return TEEMS_EINVAL;
	*out = teems_malloc(n);
	if (*out == NULL)
		return TEEMS_ENOMEM;
	if (kv_result_encode(res, *out, n, len) != TEEMS_OK) {
		teems_free(*out);
		*out = NULL;
		return TEEMS_EINVAL;
	}
	return TEEMS_OK;
}

/* Redis's string2ll: optional '-', no '+', no spaces, no leading zeros, "-0" refused. */
static bool parse_ll(const uint8_t *p, size_t n, int64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	bool neg = false;

	if (n == 0 || n > 20)
		return false;
	if (n == 1 && p[0] == '0') {
		*out = 0;
		return true;
	}
	if (p[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i >= n || p[i] < '1' || p[i] > '9')
		return false;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static int r_read(const struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out,
		  size_t *out_len)
{
	struct kv_result res;
	struct rbuf list = {0};
	struct kv_item it;
	size_t pos = 0;
	int rc;

	memset(&res, 0, sizeof(res));
	res.op = c->op;
	switch (c->op) {
	case KV_R_GET:
		get_at(kv, c->key, c->key_len, t, &res);
		res.op = KV_R_GET;
		break;
	case KV_R_EXISTS:
		while (kv_cmd_item(c, &pos, &it))
			res.integer += live(find(kv, it.key, it.key_len), t) ? 1 : 0;
		break;
	case KV_R_MGET:
		while (kv_cmd_item(c, &pos, &it)) {
			const struct kv_entry *e = find(kv, it.key, it.key_len);
			uint8_t f = live(e, t) ? 1 : 0;

			rb_add(&list, &f, 1);
			if (f)
				rb_value(&list, e->value, e->value_len);
			res.n_items++;
			if (list.len > KV_MAX_RESULT) {
				res.status = KV_ERR_TOO_LARGE;
				break;
			}
		}
		break;
	default: { /* KV_R_SCAN: see kv.h, SCAN order */
		size_t b = bucket_of(kv, c->cursor), nb = (size_t)1 << kv->bits;
		const struct kv_entry *e = kv->buckets[b];
		uint64_t examined = 0, last = 0;
		bool all = !(c->flags & KV_SCAN_MATCH) ||
			   (c->pattern_len == 1 && c->pattern[0] == '*');

		for (;;) {
			while (e == NULL && ++b < nb)
				e = kv->buckets[b];
			if (e == NULL)
				break; /* the end: cursor 0 */
			if (e->hash < c->cursor) {
				e = e->next;
				continue;
			}
			/* stop between two hashes (never inside a group of equal ones) once the
			 * work is done or the reply is big */
			if (examined > 0 && e->hash != last &&
			    (examined >= c->count || list.len >= KV_MAX_RESULT / 2)) {
				res.cursor = e->hash; /* > last >= cursor: never 0 */
				break;
			}
			examined++;
			last = e->hash;
			if (live(e, t) && !(c->flags & KV_SCAN_NOTHING) &&
			    (all ||
			     kv_glob_match(c->pattern, c->pattern_len, e->key, e->key_len))) {
				rb_key(&list, e->key, e->key_len);
				res.n_items++;
			}
			e = e->next;
		}
		if (list.len > KV_MAX_RESULT - 64)
			res.status = KV_ERR_TOO_LARGE; /* only a flood of colliding hashes */
		break;
	}
	}
	if (list.oom) {
		teems_free(list.p);
		return TEEMS_ENOMEM;
	}
	if (res.status == KV_ERR_TOO_LARGE) {
		res.n_items = 0;
		list.len = 0;
	}
	res.list = list.len ? list.p : NULL;
	res.list_len = list.len;
	rc = encode_new(&res, out, out_len);
	teems_free(list.p);
	return rc;
}

static int r_set(struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out, size_t *out_len)
{
	struct kv_entry *e = find(kv, c->key, c->key_len);
	bool was = live(e, t), doit;
	struct kv_result res;
	struct prep p = {0};
	size_t n_fresh = 0;
	uint64_t expire = 0;
	int rc;

	doit = (c->flags & KV_SET_NX) ? !was : (c->flags & KV_SET_XX) ? was : true;
	memset(&res, 0, sizeof(res));
	res.op = KV_R_SET;
	res.status = doit ? KV_OK : KV_NOT_DONE;
	res.asked = (c->flags & KV_SET_GET) != 0;
	res.found = res.asked && was;
	if (res.found) {
		res.value = e->value;
		res.value_len = e->value_len;
	}
	res.version = version_at(e, t) + (doit ? 1 : 0);
	rc = encode_new(&res, out, out_len); /* before the old value goes */
	if (rc != TEEMS_OK)
		return rc;
	if (doit) {
		if (prepare(kv, c->key, c->key_len, c->value, c->value_len, &p, &n_fresh) !=
			    TEEMS_OK ||
		    reserve(kv, n_fresh) != TEEMS_OK) {
			unprepare(&p);
			teems_free(*out);
			*out = NULL;
			return TEEMS_ENOMEM;
		}
		if ((c->flags & KV_SET_KEEPTTL) && was)
			expire = e->expire_ms;
		if (c->flags & KV_SET_EXPIRE)
			expire = c->expire_at_ms;
		e = commit_entry(kv, c->key, c->key_len, &p);
		materialize(e, t);
		commit_value(e, &p, true, expire);
	} else if (e != NULL) {
		materialize(e, t);
	}
	return TEEMS_OK;
}

static int r_incrby(struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out,
		    size_t *out_len)
{
	struct kv_entry *e = find(kv, c->key, c->key_len);
	bool was = live(e, t);
	int64_t old = 0;
	struct kv_result res;
	struct prep p = {0};
	size_t n_fresh = 0;
	char num[24];
	int n, rc;

	memset(&res, 0, sizeof(res));
	res.op = KV_R_INCRBY;
	if (was && !parse_ll(e->value, e->value_len, &old)) {
		res.status = KV_ERR_NOT_INTEGER;
		return encode_new(&res, out, out_len);
	}
	if ((c->delta < 0 && old < INT64_MIN - c->delta) ||
	    (c->delta > 0 && old > INT64_MAX - c->delta)) {
		res.status = KV_ERR_OVERFLOW;
		return encode_new(&res, out, out_len);
	}
	res.integer = old + c->delta;
	res.version = version_at(e, t) + 1;
	n = snprintf(num, sizeof(num), "%" PRId64, res.integer);
	rc = encode_new(&res, out, out_len);
	if (rc != TEEMS_OK)
		return rc;
	if (prepare(kv, c->key, c->key_len, (const uint8_t *)num, (uint32_t)n, &p, &n_fresh) !=
		    TEEMS_OK ||
	    reserve(kv, n_fresh) != TEEMS_OK) {
		unprepare(&p);
		teems_free(*out);
		*out = NULL;
		return TEEMS_ENOMEM;
	}
	e = commit_entry(kv, c->key, c->key_len, &p);
	materialize(e, t);
	commit_value(e, &p, true, was ? e->expire_ms : 0); /* INCR keeps the expiry (Redis) */
	return TEEMS_OK;
}

static int r_vset(struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out, size_t *out_len)
{
	struct kv_entry *e = find(kv, c->key, c->key_len);
	uint64_t cur = version_at(e, t);
	struct kv_result res;
	struct prep p = {0};
	size_t n_fresh = 0;
	int rc;

	memset(&res, 0, sizeof(res));
	res.op = KV_R_VSET;
	res.status = cur == c->expected_version ? KV_OK : KV_NOT_DONE;
	res.version = cur + (res.status == KV_OK ? 1 : 0);
	rc = encode_new(&res, out, out_len);
	if (rc != TEEMS_OK)
		return rc;
	if (res.status != KV_OK) {
		if (e != NULL)
			materialize(e, t);
		return TEEMS_OK;
	}
	if (prepare(kv, c->key, c->key_len, c->value, c->value_len, &p, &n_fresh) != TEEMS_OK ||
	    reserve(kv, n_fresh) != TEEMS_OK) {
		unprepare(&p);
		teems_free(*out);
		*out = NULL;
		return TEEMS_ENOMEM;
	}
	e = commit_entry(kv, c->key, c->key_len, &p);
	materialize(e, t);
	commit_value(e, &p, true, 0);
	return TEEMS_OK;
}

/* DEL: nothing to allocate but the (fixed-size) result, so the count is taken while deleting. */
static int r_del(struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out, size_t *out_len)
{
	struct kv_result res;
	struct kv_item it;
	size_t pos = 0;
	int rc;

	memset(&res, 0, sizeof(res));
	res.op = KV_R_DEL;
	rc = encode_new(&res, out, out_len);
	if (rc != TEEMS_OK)
		return rc;
	while (kv_cmd_item(c, &pos, &it)) {
		struct kv_entry *e = find(kv, it.key, it.key_len);

		if (e == NULL)
			continue;
		materialize(e, t);
		if (e->present) {
			clear_value(e);
			e->version++;
			res.integer++;
		}
	}
	return kv_result_encode(&res, *out, *out_len, out_len);
}

static int r_mset(struct kv *kv, const struct kv_cmd *c, uint64_t t, uint8_t **out, size_t *out_len)
{
	struct kv_result res;
	struct prep *p;
	struct kv_item it;
	size_t pos = 0, i = 0, n_fresh = 0;
	int rc;

	memset(&res, 0, sizeof(res));
	res.op = KV_R_MSET;
	p = teems_calloc(c->n_items, sizeof(*p));
	if (p == NULL)
		return TEEMS_ENOMEM;
	rc = encode_new(&res, out, out_len);
	for (; rc == TEEMS_OK && kv_cmd_item(c, &pos, &it); i++)
		rc = prepare(kv, it.key, it.key_len, it.value, it.value_len, &p[i], &n_fresh);
	if (rc == TEEMS_OK)
		rc = reserve(kv, n_fresh);
	if (rc != TEEMS_OK) {
		for (size_t j = 0; j < i; j++)
			unprepare(&p[j]);
		teems_free(p);
		teems_free(*out);
		*out = NULL;
		return rc;
	}
	pos = 0;
	for (i = 0; kv_cmd_item(c, &pos, &it); i++) {
		struct kv_entry *e = commit_entry(kv, it.key, it.key_len, &p[i]);

		materialize(e, t);
		commit_value(e, &p[i], true, 0);
	}
	teems_free(p);
	return TEEMS_OK;
}

static int apply_r(struct kv *kv, const struct kv_cmd *c, uint8_t **out, size_t *out_len)
{
	uint64_t t = c->now_ms > kv->clock ? c->now_ms : kv->clock;
	int rc;

	switch (c->op) {
	case KV_R_SET:
		rc = r_set(kv, c, t, out, out_len);
		break;
	case KV_R_DEL:
		rc = r_del(kv, c, t, out, out_len);
		break;
	case KV_R_MSET:
		rc = r_mset(kv, c, t, out, out_len);
		break;
	case KV_R_INCRBY:
		rc = r_incrby(kv, c, t, out, out_len);
		break;
	case KV_R_VSET:
		rc = r_vset(kv, c, t, out, out_len);
		break;
	default:
		return r_read(kv, c, t, out, out_len);
	}
	if (rc == TEEMS_OK)
		kv->clock = t;
	return rc;
}

int kv_apply_encoded(struct kv *kv, const uint8_t *cmd, size_t len, uint8_t **result,
		     size_t *result_len)
{
	struct kv_cmd c;
	struct kv_result r;
	uint8_t *buf;
	size_t n;
	int rc;

	*result = NULL;
	*result_len = 0;
	if (kv_cmd_decode(cmd, len, &c) != TEEMS_OK)
		return TEEMS_ECORRUPT;
	if (c.op >= KV_R_GET) {
		rc = apply_r(kv, &c, result, result_len);
		if (rc != TEEMS_OK) {
			teems_free(*result);
			*result = NULL;
			*result_len = 0;
			return rc == TEEMS_ENOMEM ? rc : TEEMS_ECORRUPT;
		}
		return TEEMS_OK;
	}
	/* Reserve the result buffer first so that an allocation failure changes nothing. */
	if (c.op == KV_GET) {
		kv_get(kv, c.key, c.key_len, &r);
		n = kv_result_size(&r);
	} else {
		n = 14;
	}
	buf = teems_malloc(n);
	if (buf == NULL)
		return TEEMS_ENOMEM;
	rc = kv_apply(kv, &c, &r);
	if (rc == TEEMS_OK)
		rc = kv_result_encode(&r, buf, n, &n);
	if (rc != TEEMS_OK) {
		teems_free(buf);
		return rc;
	}
	*result = buf;
	*result_len = n;
	return TEEMS_OK;
}

/* ---- snapshots ---- */

#define SNAP_FORMAT 2
#define SNAP_HEADER 24

static int cmp_key(const struct kv_entry *x, const uint8_t *key, size_t len)
{
	size_t n = x->key_len < len ? x->key_len : len;
	int c = n ? memcmp(x->key, key, n) : 0;

	if (c != 0)
		return c;
	return (x->key_len > len) - (x->key_len < len);
}

static int cmp_entry_ptr(const void *a, const void *b)
{
	const struct kv_entry *x = *(const struct kv_entry *const *)a;
	const struct kv_entry *y = *(const struct kv_entry *const *)b;

	return cmp_key(x, y->key, y->key_len);
}

int kv_snapshot(const struct kv *kv, uint8_t **buf, size_t *len)
{
	struct kv_entry **sorted;
	size_t n = 0, size = SNAP_HEADER;
	struct kv_wr w;

	*buf = NULL;
	*len = 0;
	sorted = teems_malloc((kv->count ? kv->count : 1) * sizeof(*sorted));
	if (sorted == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < ((size_t)1 << kv->bits); i++) {
		for (struct kv_entry *e = kv->buckets[i]; e != NULL; e = e->next) {
			sorted[n++] = e;
			size += 2 + (size_t)e->key_len + 8 + 1;
			if (e->present)
				size += (e->expire_ms ? 8 : 0) + 4 + (size_t)e->value_len;
		}
	}
	qsort(sorted, n, sizeof(*sorted), cmp_entry_ptr);
	w.p = teems_malloc(size);
	w.cap = size;
	w.off = 0;
	w.ok = true;
	if (w.p == NULL) {
		teems_free(sorted);
		return TEEMS_ENOMEM;
	}
	kv_wr_bytes(&w, "TKVS", 4);
	kv_wr_u32(&w, SNAP_FORMAT);
	kv_wr_u64(&w, kv->clock);
	kv_wr_u64(&w, n);
	for (size_t i = 0; i < n; i++) {
		const struct kv_entry *e = sorted[i];

		kv_wr_key(&w, e->key, e->key_len);
		kv_wr_u64(&w, e->version);
		kv_wr_u8(&w, !e->present ? 0 : e->expire_ms ? 2 : 1);
		if (e->present && e->expire_ms)
			kv_wr_u64(&w, e->expire_ms);
		if (e->present)
			kv_wr_value(&w, e->value, e->value_len);
	}
	teems_free(sorted);
	*buf = w.p;
	*len = w.off;
	return TEEMS_OK;
}

int kv_restore(struct kv *kv, const uint8_t *buf, size_t len)
{
	struct kv *tmp;
	const struct kv_entry *prev = NULL;
	struct kv_rd r;
	uint64_t n;
	int rc;

	kv_rd_init(&r, buf, len);
	if (len < SNAP_HEADER || memcmp(buf, "TKVS", 4) != 0 || kv_get32(buf + 4) != SNAP_FORMAT)
		return TEEMS_ECORRUPT;
	r.off = 8;
	rc = kv_new(&tmp);
	if (rc != TEEMS_OK)
		return rc;
	tmp->clock = kv_rd_u64(&r);
	n = kv_rd_u64(&r);
	/* every entry takes at least 2 + 8 + 1 bytes */
	rc = TEEMS_ECORRUPT;
	if (n > (len - SNAP_HEADER) / 11)
		goto fail;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *key, *value = NULL;
		uint16_t key_len;
		uint32_t value_len = 0;
		uint64_t version, expire = 0;
		uint8_t state;
		struct prep p;
		size_t n_fresh = 0;
		struct kv_entry *e;

		rc = TEEMS_ECORRUPT;
		kv_rd_key(&r, &key, &key_len, KV_MAX_KEY);
		version = kv_rd_u64(&r);
		state = kv_rd_u8(&r);
		if (!r.ok || version == 0 || state > 2)
			goto fail; /* an entry exists only once written */
		if (prev != NULL && cmp_key(prev, key, key_len) >= 0)
			goto fail; /* not strictly increasing */
		if (state == 2) {
			expire = kv_rd_u64(&r);
			if (expire == 0)
				goto fail;
		}
		if (state >= 1)
			kv_rd_value(&r, &value, &value_len, KV_MAX_VALUE);
		if (!r.ok)
			goto fail;
		rc = prepare(tmp, key, key_len, value, value_len, &p, &n_fresh);
		if (rc == TEEMS_OK && reserve(tmp, n_fresh) != TEEMS_OK) {
			unprepare(&p);
			rc = TEEMS_ENOMEM;
		}
		if (rc != TEEMS_OK)
			goto fail;
		e = commit_entry(tmp, key, key_len, &p);
		commit_value(e, &p, state >= 1, expire);
		e->version = version;
		prev = e;
	}
	rc = TEEMS_ECORRUPT;
	if (r.off != len)
		goto fail;
	free_table(kv->buckets, kv->bits);
	*kv = *tmp;
	teems_free(tmp);
	return TEEMS_OK;
fail:
	kv_free(tmp);
	return rc;
}

bool kv_equal(const struct kv *a, const struct kv *b)
{
	if (a->count != b->count || a->clock != b->clock)
		return false;
	for (size_t i = 0; i < ((size_t)1 << a->bits); i++) {
		for (const struct kv_entry *e = a->buckets[i]; e != NULL; e = e->next) {
			const struct kv_entry *f = find(b, e->key, e->key_len);

			if (f == NULL || f->version != e->version || f->present != e->present ||
			    f->expire_ms != e->expire_ms || f->value_len != e->value_len ||
			    (e->value_len && memcmp(f->value, e->value, e->value_len) != 0))
				return false;
		}
	}
	return true;
}
