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

#include <openssl/evp.h>

#include "common/alloc.h"
#include "kv/kv_internal.h"
#include "kv/lease_table.h"
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
	/* kv.h, "Users, permissions and policies": two more tables of the same kind, whose live
	 * entries are the user records (by name) and the policies (by key); NULL in those
	 * tables themselves. Only their live entries count (snapshots and kv_equal ignore their
	 * tombstones). */
	struct kv *users;
	struct kv *policies;
	/* Client leases (kv/lease_table.h; docs/LEASES.md): the main map only, NULL in the users
	 * and policies tables. */
	struct kv_leases *leases;
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

static int new_table(struct kv **out)
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
	kv_free(kv->users);
	kv_free(kv->policies);
	kv_leases_free(kv->leases);
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

struct acl_ctx;
static bool scan_visible(const struct kv *kv, const struct acl_ctx *a, const struct kv_entry *e);

static int r_read(const struct kv *kv, const struct kv_cmd *c, const struct acl_ctx *a, uint64_t t,
		  uint8_t **out, size_t *out_len)
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
			     kv_glob_match(c->pattern, c->pattern_len, e->key, e->key_len)) &&
			    scan_visible(kv, a, e)) {
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

/* ---- users, permissions and policies (kv.h) ---- */

/* A user record, the value of its entry in kv->users:
 *   u8 flags (1 on, 2 nopass) | u8 categories (KV_ACL_*) | u8 n | n 32-byte password hashes
 *   | u8 m | m (u8 access (1 R, 2 W, 3 both) | u16 length | pattern)
 * Parsed, it points into the record (or into a command, while being built). */
#define USER_ON 1u
#define USER_NOPASS 2u

struct acl_pat {
	uint8_t access;
	const uint8_t *p;
	uint16_t len;
};

struct acl_user {
	unsigned flags, cats;
	unsigned n_pass, n_pat;
	const uint8_t *pass[KV_ACL_MAX_PASSWORDS];
	struct acl_pat pat[KV_ACL_MAX_PATTERNS];
};

/* Who a command runs as, looked up once per command. */
struct acl_ctx {
	bool active; /* the command is wrapped (KV_FORMAT_AS) */
	const uint8_t *name;
	uint16_t name_len;
	struct acl_user u;
};

bool kv_user_name_ok(const uint8_t *name, size_t len)
{
	if (name == NULL || len == 0 || len > KV_MAX_USER || (len == 1 && name[0] == '-'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] < '!' || name[i] > '~' || name[i] == ',')
			return false;
	return true;
}

static bool user_parse(const uint8_t *v, uint32_t len, struct acl_user *u)
{
	struct kv_rd r;

	kv_rd_init(&r, v, len);
	memset(u, 0, sizeof(*u));
	u->flags = kv_rd_u8(&r);
	u->cats = kv_rd_u8(&r);
	u->n_pass = kv_rd_u8(&r);
	if (!r.ok || (u->flags & ~3u) || (u->cats & ~KV_ACL_ALL) ||
	    u->n_pass > KV_ACL_MAX_PASSWORDS || ((u->flags & USER_NOPASS) && u->n_pass))
		return false;
	for (unsigned i = 0; i < u->n_pass; i++)
		u->pass[i] = kv_rd_take(&r, KV_PASSWORD_HASH_LEN);
	u->n_pat = kv_rd_u8(&r);
	if (!r.ok || u->n_pat > KV_ACL_MAX_PATTERNS)
		return false;
	for (unsigned i = 0; i < u->n_pat; i++) {
		u->pat[i].access = kv_rd_u8(&r);
		if (!r.ok || u->pat[i].access < 1 || u->pat[i].access > 3 ||
		    !kv_rd_key(&r, &u->pat[i].p, &u->pat[i].len, KV_MAX_PATTERN))
			return false;
	}
	return r.ok && r.off == len;
}

static bool user_encode(const struct acl_user *u, struct rbuf *b)
{
	uint8_t h[3] = {(uint8_t)u->flags, (uint8_t)u->cats, (uint8_t)u->n_pass};

	rb_add(b, h, 3);
	for (unsigned i = 0; i < u->n_pass; i++)
		rb_add(b, u->pass[i], KV_PASSWORD_HASH_LEN);
	h[0] = (uint8_t)u->n_pat;
	rb_add(b, h, 1);
	for (unsigned i = 0; i < u->n_pat; i++) {
		rb_add(b, &u->pat[i].access, 1);
		rb_key(b, u->pat[i].p, u->pat[i].len);
	}
	return !b->oom;
}

/* A policy, the value of its entry in kv->policies: "owner\nreaders\nwriters", the lists
 * comma-separated user names or "*" (possibly empty). */
struct policy {
	const uint8_t *owner, *readers, *writers;
	size_t owner_len, readers_len, writers_len;
};

static bool list_ok(const uint8_t *p, size_t len)
{
	size_t start = 0;

	if (len == 0)
		return true;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || p[i] == ',') {
			if (!(i - start == 1 && p[start] == '*') &&
			    !kv_user_name_ok(p + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

static bool policy_parse(const uint8_t *v, size_t len, struct policy *pol)
{
	const uint8_t *nl1 = len ? memchr(v, '\n', len) : NULL, *nl2;

	if (nl1 == NULL)
		return false;
	nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - v));
	if (nl2 == NULL)
		return false;
	pol->owner = v;
	pol->owner_len = (size_t)(nl1 - v);
	pol->readers = nl1 + 1;
	pol->readers_len = (size_t)(nl2 - nl1 - 1);
	pol->writers = nl2 + 1;
	pol->writers_len = len - (size_t)(nl2 + 1 - v);
	return kv_user_name_ok(pol->owner, pol->owner_len) &&
	       list_ok(pol->readers, pol->readers_len) && list_ok(pol->writers, pol->writers_len);
}

static bool same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool list_has(const uint8_t *p, size_t len, const uint8_t *name, size_t nlen)
{
	size_t start = 0;

	for (size_t i = 0; i <= len && len > 0; i++) {
		if (i == len || p[i] == ',') {
			if ((i - start == 1 && p[start] == '*') ||
			    same(p + start, i - start, name, nlen))
				return true;
			start = i + 1;
		}
	}
	return false;
}

/* A live entry of a users or policies table. */
static const struct kv_entry *table_get(const struct kv *t, const uint8_t *key, size_t len)
{
	const struct kv_entry *e = find(t, key, len);

	return e != NULL && e->present ? e : NULL;
}

/* Sets a record (all or nothing). Errors: TEEMS_ENOMEM. */
static int table_put(struct kv *t, const uint8_t *key, uint16_t klen, const uint8_t *v,
		     uint32_t vlen)
{
	struct prep p;
	size_t n_fresh = 0;
	struct kv_entry *e;

	if (prepare(t, key, klen, v, vlen, &p, &n_fresh) != TEEMS_OK)
		return TEEMS_ENOMEM;
	if (reserve(t, n_fresh) != TEEMS_OK) {
		unprepare(&p);
		return TEEMS_ENOMEM;
	}
	e = commit_entry(t, key, klen, &p);
	commit_value(e, &p, true, 0);
	return TEEMS_OK;
}

static bool user_get(const struct kv *kv, const uint8_t *name, size_t len, struct acl_user *u)
{
	const struct kv_entry *e = table_get(kv->users, name, len);

	return e != NULL && user_parse(e->value, e->value_len, u);
}

static int put_default_user(struct kv *kv)
{
	static const uint8_t rec[] = {USER_ON | USER_NOPASS, KV_ACL_ALL, 0, 1, 3, 1, 0, '*'};

	return table_put(kv->users, (const uint8_t *)"default", 7, rec, sizeof(rec));
}

int kv_new(struct kv **out)
{
	struct kv *kv;
	int rc = new_table(&kv);

	*out = NULL;
	if (rc != TEEMS_OK)
		return rc;
	if (new_table(&kv->users) != TEEMS_OK || new_table(&kv->policies) != TEEMS_OK ||
	    kv_leases_new(&kv->leases) != TEEMS_OK || put_default_user(kv) != TEEMS_OK) {
		kv_free(kv);
		return TEEMS_ENOMEM;
	}
	*out = kv;
	return TEEMS_OK;
}

void kv_password_hash(const uint8_t *pass, size_t len, uint8_t out[KV_PASSWORD_HASH_LEN])
{
	unsigned n = KV_PASSWORD_HASH_LEN;

	EVP_Digest(pass, len, out, &n, EVP_sha256(), NULL);
}

bool kv_acl_default_open(const struct kv *kv)
{
	struct acl_user u;

	return user_get(kv, (const uint8_t *)"default", 7, &u) && (u.flags & USER_ON) &&
	       (u.flags & USER_NOPASS);
}

enum kv_status kv_acl_check(const struct kv *kv, const char *user, unsigned category)
{
	struct acl_user u;

	if (user != NULL && strcmp(user, KV_USER_ANON) == 0) {
		if (!kv_acl_default_open(kv))
			return KV_ERR_NOAUTH;
		user = "default";
	}
	if (user == NULL || !user_get(kv, (const uint8_t *)user, strlen(user), &u) ||
	    !(u.flags & USER_ON))
		return KV_ERR_NOAUTH;
	if ((u.cats & category) != category)
		return KV_ERR_NOPERM_CMD;
	return KV_OK;
}

static size_t live_count(const struct kv *t)
{
	size_t n = 0;

	for (size_t i = 0; i < ((size_t)1 << t->bits); i++)
		for (const struct kv_entry *e = t->buckets[i]; e != NULL; e = e->next)
			n += e->present ? 1 : 0;
	return n;
}

size_t kv_user_count(const struct kv *kv)
{
	return live_count(kv->users);
}

/* The category an R op needs. */
static unsigned op_category(enum kv_op op)
{
	switch (op) {
	case KV_R_GET:
	case KV_R_EXISTS:
	case KV_R_MGET:
	case KV_R_SCAN:
	case KV_R_POLICY_GET:
		return KV_ACL_READ;
	case KV_R_ACL_SETUSER:
	case KV_R_ACL_DELUSER:
	case KV_R_ACL_LIST:
	case KV_R_ACL_GETUSER:
		return KV_ACL_ADMIN;
	case KV_R_AUTH:
		return 0;
	default:
		return KV_ACL_WRITE;
	}
}

/* The access an op needs on each of its keys (0: it has none, or checks them itself). */
static unsigned op_access(const struct kv_cmd *c)
{
	switch (c->op) {
	case KV_R_GET:
	case KV_R_EXISTS:
	case KV_R_MGET:
	case KV_R_POLICY_GET:
		return KV_ACL_READ;
	case KV_R_SET:
		return KV_ACL_WRITE | ((c->flags & KV_SET_GET) ? KV_ACL_READ : 0);
	case KV_R_INCRBY:
		return KV_ACL_READ | KV_ACL_WRITE;
	case KV_R_DEL:
	case KV_R_MSET:
	case KV_R_VSET:
	case KV_R_POLICY_SET:
		return KV_ACL_WRITE;
	default:
		return 0;
	}
}

static bool patterns_allow(const struct acl_user *u, const uint8_t *key, size_t len,
			   unsigned access)
{
	for (unsigned i = 0; i < u->n_pat; i++)
		if ((u->pat[i].access & access) == access &&
		    ((u->pat[i].len == 1 && u->pat[i].p[0] == '*') ||
		     kv_glob_match(u->pat[i].p, u->pat[i].len, key, len)))
			return true;
	return false;
}

static bool is_owner(const struct acl_ctx *a, const struct policy *pol)
{
	return same(pol->owner, pol->owner_len, a->name, a->name_len);
}

/* May the context's user access the key (its patterns, then the key's policy)? */
static bool key_allowed(const struct kv *kv, const struct acl_ctx *a, const uint8_t *key,
			size_t len, unsigned access)
{
	const struct kv_entry *pe;
	struct policy pol;

	if (!a->active)
		return true;
	if (!patterns_allow(&a->u, key, len, access))
		return false;
	pe = table_get(kv->policies, key, len);
	if (pe == NULL)
		return true;
	if (!policy_parse(pe->value, pe->value_len, &pol))
		return false; /* cannot happen: checked when set and when restored */
	if (is_owner(a, &pol))
		return true;
	if ((access & KV_ACL_READ) && !list_has(pol.readers, pol.readers_len, a->name, a->name_len))
		return false;
	if ((access & KV_ACL_WRITE) &&
	    !list_has(pol.writers, pol.writers_len, a->name, a->name_len))
		return false;
	return true;
}

/* The apply-time gate of a wrapped command: KV_OK, or the status that refuses it. */
static enum kv_status acl_gate(const struct kv *kv, const struct kv_cmd *c, struct acl_ctx *a)
{
	unsigned access = op_access(c);
	struct kv_item it;
	size_t pos = 0;

	memset(a, 0, sizeof(*a));
	if (c->user == NULL)
		return KV_OK;
	a->active = true;
	a->name = c->user;
	a->name_len = c->user_len;
	if (c->user_len == 1 && c->user[0] == KV_USER_ANON[0]) {
		if (!kv_acl_default_open(kv))
			return KV_ERR_NOAUTH; /* default got a password before this was applied */
		a->name = (const uint8_t *)"default";
		a->name_len = 7;
	}
	if (!user_get(kv, a->name, a->name_len, &a->u) || !(a->u.flags & USER_ON))
		return KV_ERR_NOAUTH;
	if ((a->u.cats & op_category(c->op)) != op_category(c->op))
		return KV_ERR_NOPERM_CMD;
	if (access == 0)
		return KV_OK;
	if (c->op == KV_R_DEL || c->op == KV_R_EXISTS || c->op == KV_R_MGET || c->op == KV_R_MSET) {
		while (kv_cmd_item(c, &pos, &it))
			if (!key_allowed(kv, a, it.key, it.key_len, access))
				return KV_ERR_NOPERM_KEY;
		return KV_OK;
	}
	/* the policy commands check the patterns here, the policy itself in their op */
	if (c->op == KV_R_POLICY_SET || c->op == KV_R_POLICY_GET)
		return patterns_allow(&a->u, c->key, c->key_len, access) ? KV_OK
									 : KV_ERR_NOPERM_KEY;
	return key_allowed(kv, a, c->key, c->key_len, access) ? KV_OK : KV_ERR_NOPERM_KEY;
}

static int refuse(enum kv_op op, enum kv_status st, const char *text, uint8_t **out,
		  size_t *out_len)
{
	struct kv_result res;

	memset(&res, 0, sizeof(res));
	res.op = op;
	res.status = st;
	if (text != NULL) {
		res.value = (const uint8_t *)text;
		res.value_len = (uint32_t)strlen(text);
	}
	return encode_new(&res, out, out_len);
}

static int r_auth(const struct kv *kv, const struct kv_cmd *c, uint8_t **out, size_t *out_len)
{
	struct acl_user u;
	bool ok = false;

	if ((c->flags & KV_AUTH_DEFAULT_FORM) && kv_acl_default_open(kv))
		return refuse(KV_R_AUTH, KV_ERR_TEXT,
			      "ERR AUTH <password> called without any password configured for "
			      "the default user. Are you sure your configuration is correct?",
			      out, out_len);
	if (user_get(kv, c->key, c->key_len, &u) && (u.flags & USER_ON)) {
		ok = (u.flags & USER_NOPASS) != 0;
		for (unsigned i = 0; i < u.n_pass && !ok; i++)
			ok = memcmp(u.pass[i], c->value, KV_PASSWORD_HASH_LEN) == 0;
	}
	return refuse(KV_R_AUTH, ok ? KV_OK : KV_ERR_WRONGPASS, NULL, out, out_len);
}

static bool has_pass(const struct acl_user *u, const uint8_t *h)
{
	for (unsigned i = 0; i < u->n_pass; i++)
		if (memcmp(u->pass[i], h, KV_PASSWORD_HASH_LEN) == 0)
			return true;
	return false;
}

/* Applies the modifiers to u; NULL, or the Redis error text. */
static const char *apply_modifiers(struct acl_user *u, const uint8_t *m, uint32_t len)
{
	struct kv_rd r;

	kv_rd_init(&r, m, len);
	while (r.ok && r.off < len) {
		uint8_t kind = kv_rd_u8(&r), b;
		const uint8_t *h;
		struct acl_pat pat;

		switch (kind) {
		case KV_ACL_ON:
			u->flags |= USER_ON;
			break;
		case KV_ACL_OFF:
			u->flags &= ~USER_ON;
			break;
		case KV_ACL_NOPASS:
			u->flags |= USER_NOPASS;
			u->n_pass = 0;
			break;
		case KV_ACL_RESETPASS:
			u->flags &= ~USER_NOPASS;
			u->n_pass = 0;
			break;
		case KV_ACL_RESETKEYS:
			u->n_pat = 0;
			break;
		case KV_ACL_RESET:
			u->flags = 0;
			u->n_pass = u->n_pat = 0;
			u->cats = 0;
			break;
		case KV_ACL_ADDPASS:
		case KV_ACL_DELPASS:
			h = kv_rd_take(&r, KV_PASSWORD_HASH_LEN);
			if (h == NULL)
				break;
			if (kind == KV_ACL_ADDPASS) {
				u->flags &= ~USER_NOPASS;
				if (has_pass(u, h))
					break;
				if (u->n_pass == KV_ACL_MAX_PASSWORDS)
					return "ERR Error in ACL SETUSER: a user has at most 32 "
					       "passwords";
				u->pass[u->n_pass++] = h;
				break;
			}
			if (!has_pass(u, h))
				return "ERR Error in ACL SETUSER modifier '<...>': The password "
				       "you "
				       "are trying to remove from the user does not exist";
			for (unsigned i = 0; i < u->n_pass; i++) {
				if (memcmp(u->pass[i], h, KV_PASSWORD_HASH_LEN) == 0) {
					memmove(&u->pass[i], &u->pass[i + 1],
						(u->n_pass - i - 1) * sizeof(u->pass[0]));
					u->n_pass--;
					break;
				}
			}
			break;
		case KV_ACL_CATS_ADD:
		case KV_ACL_CATS_DEL:
			b = kv_rd_u8(&r);
			if (b & ~KV_ACL_ALL)
				r.ok = false;
			if (kind == KV_ACL_CATS_ADD)
				u->cats |= b;
			else
				u->cats &= ~(unsigned)b;
			break;
		case KV_ACL_KEY:
			pat.access = kv_rd_u8(&r);
			if (!r.ok || pat.access < 1 || pat.access > 3 ||
			    !kv_rd_key(&r, &pat.p, &pat.len, KV_MAX_PATTERN)) {
				r.ok = false;
				break;
			}
			for (unsigned i = 0; i < u->n_pat; i++)
				if (u->pat[i].access == pat.access &&
				    same(u->pat[i].p, u->pat[i].len, pat.p, pat.len))
					goto next;
			if (u->n_pat == KV_ACL_MAX_PATTERNS)
				return "ERR Error in ACL SETUSER: a user has at most 64 key "
				       "patterns";
			u->pat[u->n_pat++] = pat;
		next:
			break;
		default:
			r.ok = false;
		}
	}
	return r.ok ? NULL : "ERR Error in ACL SETUSER: malformed modifiers";
}

static int r_setuser(struct kv *kv, const struct kv_cmd *c, uint8_t **out, size_t *out_len)
{
	struct acl_user *u = teems_calloc(1, sizeof(*u));
	struct rbuf b = {0};
	const char *why;
	int rc;

	if (u == NULL)
		return TEEMS_ENOMEM;
	if (!kv_user_name_ok(c->key, c->key_len)) {
		teems_free(u);
		return refuse(KV_R_ACL_SETUSER, KV_ERR_TEXT,
			      "ERR Usernames can't contain spaces or null characters", out,
			      out_len);
	}
	if (!user_get(kv, c->key, c->key_len, u))
		memset(u, 0, sizeof(*u)); /* a new user: off, no password, key or category */
	why = apply_modifiers(u, c->value, c->value_len);
	if (why != NULL) {
		teems_free(u);
		return refuse(KV_R_ACL_SETUSER, KV_ERR_TEXT, why, out, out_len);
	}
	rc = user_encode(u, &b) ? refuse(KV_R_ACL_SETUSER, KV_OK, NULL, out, out_len)
				: TEEMS_ENOMEM;
	if (rc == TEEMS_OK &&
	    table_put(kv->users, c->key, c->key_len, b.p, (uint32_t)b.len) != TEEMS_OK) {
		teems_free(*out);
		*out = NULL;
		rc = TEEMS_ENOMEM;
	}
	teems_free(b.p);
	teems_free(u);
	return rc;
}

static int r_deluser(struct kv *kv, const struct kv_cmd *c, uint8_t **out, size_t *out_len)
{
	struct kv_result res;
	struct kv_item it;
	size_t pos = 0;
	int rc;

	while (kv_cmd_item(c, &pos, &it))
		if (same(it.key, it.key_len, (const uint8_t *)"default", 7))
			return refuse(KV_R_ACL_DELUSER, KV_ERR_TEXT,
				      "ERR The 'default' user cannot be removed", out, out_len);
	memset(&res, 0, sizeof(res));
	res.op = KV_R_ACL_DELUSER;
	rc = encode_new(&res, out, out_len);
	if (rc != TEEMS_OK)
		return rc;
	pos = 0;
	while (kv_cmd_item(c, &pos, &it)) {
		struct kv_entry *e = find(kv->users, it.key, it.key_len);

		if (e != NULL && e->present) {
			clear_value(e);
			e->version++;
			res.integer++;
		}
	}
	return kv_result_encode(&res, *out, *out_len, out_len);
}

static void rb_str(struct rbuf *b, const char *s)
{
	rb_add(b, s, strlen(s));
}

static void rb_hex(struct rbuf *b, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		char two[2] = {hex[p[i] >> 4], hex[p[i] & 15]};

		rb_add(b, two, 2);
	}
}

/* The key patterns, each after a space ("~p", "%R~p", "%W~p"). */
static void rb_patterns(struct rbuf *b, const struct acl_user *u)
{
	for (unsigned i = 0; i < u->n_pat; i++) {
		rb_str(b, u->pat[i].access == 3 ? " ~" : u->pat[i].access == 1 ? " %R~" : " %W~");
		rb_add(b, u->pat[i].p, u->pat[i].len);
	}
}

/* The categories, each after a space: "+@all", or "-@all" and the ones granted. */
static void rb_cats(struct rbuf *b, const struct acl_user *u)
{
	static const char *const cat_names[] = {"read", "write", "admin"};

	if (u->cats == KV_ACL_ALL) {
		rb_str(b, " +@all");
		return;
	}
	rb_str(b, " -@all");
	for (unsigned k = 0; k < 3; k++) {
		if (u->cats & (1u << k)) {
			rb_str(b, " +@");
			rb_str(b, cat_names[k]);
		}
	}
}

/* One ACL LIST line, as Redis 7 writes it (without the channel rules teems has no use for). */
static void user_line(const struct kv_entry *e, const struct acl_user *u, struct rbuf *b)
{
	rb_str(b, "user ");
	rb_add(b, e->key, e->key_len);
	rb_str(b, (u->flags & USER_ON) ? " on" : " off");
	if (u->flags & USER_NOPASS)
		rb_str(b, " nopass");
	for (unsigned i = 0; i < u->n_pass; i++) {
		rb_str(b, " #");
		rb_hex(b, u->pass[i], KV_PASSWORD_HASH_LEN);
	}
	rb_patterns(b, u);
	rb_cats(b, u);
}

/* ACL GETUSER's four strings (kv.h), without their leading spaces. */
static int r_acl_getuser(const struct kv *kv, const struct kv_cmd *c, uint8_t **out,
			 size_t *out_len)
{
	struct acl_user *u = teems_malloc(sizeof(*u));
	struct kv_result res;
	struct rbuf list = {0}, f[4];
	int rc;

	if (u == NULL)
		return TEEMS_ENOMEM;
	memset(f, 0, sizeof(f));
	memset(&res, 0, sizeof(res));
	res.op = KV_R_ACL_GETUSER;
	if (user_get(kv, c->key, c->key_len, u)) {
		rb_str(&f[0], (u->flags & USER_ON) ? " on" : " off");
		if (u->flags & USER_NOPASS)
			rb_str(&f[0], " nopass");
		for (unsigned i = 0; i < u->n_pass; i++) {
			rb_str(&f[1], " ");
			rb_hex(&f[1], u->pass[i], KV_PASSWORD_HASH_LEN);
		}
		rb_cats(&f[2], u);
		rb_patterns(&f[3], u);
		for (int i = 0; i < 4; i++) {
			uint8_t one = 1;
			size_t skip = f[i].len ? 1 : 0;

			rb_add(&list, &one, 1);
			rb_value(&list, f[i].p != NULL ? f[i].p + skip : NULL,
				 (uint32_t)(f[i].len - skip));
			list.oom = list.oom || f[i].oom;
		}
		res.n_items = 4;
	}
	for (int i = 0; i < 4; i++)
		teems_free(f[i].p);
	teems_free(u);
	if (list.oom) {
		teems_free(list.p);
		return TEEMS_ENOMEM;
	}
	res.list = list.len ? list.p : NULL;
	res.list_len = list.len;
	rc = encode_new(&res, out, out_len);
	teems_free(list.p);
	return rc;
}

static int cmp_entry_ptr(const void *a, const void *b);

/* The live entries of a table, sorted by key; *out belongs to the caller. */
static int sorted_live(const struct kv *t, struct kv_entry ***out, size_t *n)
{
	struct kv_entry **v = teems_malloc((t->count ? t->count : 1) * sizeof(*v));

	*n = 0;
	*out = v;
	if (v == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < ((size_t)1 << t->bits); i++)
		for (struct kv_entry *e = t->buckets[i]; e != NULL; e = e->next)
			if (e->present)
				v[(*n)++] = e;
	qsort(v, *n, sizeof(*v), cmp_entry_ptr);
	return TEEMS_OK;
}

static int r_acl_list(const struct kv *kv, uint8_t **out, size_t *out_len)
{
	struct kv_entry **v;
	struct kv_result res;
	struct rbuf list = {0}, line = {0};
	size_t n;
	int rc = sorted_live(kv->users, &v, &n);

	if (rc != TEEMS_OK)
		return rc;
	memset(&res, 0, sizeof(res));
	res.op = KV_R_ACL_LIST;
	for (size_t i = 0; i < n; i++) {
		struct acl_user u;
		uint8_t one = 1;

		if (!user_parse(v[i]->value, v[i]->value_len, &u))
			continue;
		line.len = 0;
		user_line(v[i], &u, &line);
		rb_add(&list, &one, 1);
		rb_value(&list, line.p, (uint32_t)line.len);
		res.n_items++;
	}
	teems_free(v);
	teems_free(line.p);
	if (list.oom || line.oom) {
		teems_free(list.p);
		return TEEMS_ENOMEM;
	}
	if (list.len > KV_MAX_RESULT - 64) {
		res.status = KV_ERR_TOO_LARGE;
		res.n_items = 0;
		list.len = 0;
	}
	res.list = list.len ? list.p : NULL;
	res.list_len = list.len;
	rc = encode_new(&res, out, out_len);
	teems_free(list.p);
	return rc;
}

static int r_policy_set(struct kv *kv, const struct kv_cmd *c, const struct acl_ctx *a,
			uint8_t **out, size_t *out_len)
{
	const struct kv_entry *pe = table_get(kv->policies, c->key, c->key_len);
	struct policy pol, cur;
	bool admin = !a->active || (a->u.cats & KV_ACL_ADMIN);

	if (!policy_parse(c->value, c->value_len, &pol))
		return refuse(KV_R_POLICY_SET, KV_ERR_TEXT,
			      "ERR invalid policy: owner, readers and writers must be user names "
			      "(comma lists, '*' for every user)",
			      out, out_len);
	if (pe != NULL) {
		if (!admin && (!policy_parse(pe->value, pe->value_len, &cur) || !is_owner(a, &cur)))
			return refuse(KV_R_POLICY_SET, KV_ERR_NOPERM_KEY, NULL, out, out_len);
	} else if (!admin && !is_owner(a, &pol)) {
		return refuse(KV_R_POLICY_SET, KV_ERR_TEXT,
			      "NOPERM a new policy must name its creator as the owner", out,
			      out_len);
	}
	if (refuse(KV_R_POLICY_SET, KV_OK, NULL, out, out_len) != TEEMS_OK)
		return TEEMS_ENOMEM;
	if (table_put(kv->policies, c->key, c->key_len, c->value, c->value_len) != TEEMS_OK) {
		teems_free(*out);
		*out = NULL;
		return TEEMS_ENOMEM;
	}
	return TEEMS_OK;
}

static int r_policy_get(const struct kv *kv, const struct kv_cmd *c, const struct acl_ctx *a,
			uint8_t **out, size_t *out_len)
{
	const struct kv_entry *pe = table_get(kv->policies, c->key, c->key_len);
	struct kv_result res;
	struct rbuf list = {0};
	struct policy pol;
	int rc;

	memset(&res, 0, sizeof(res));
	res.op = KV_R_POLICY_GET;
	if (pe != NULL && policy_parse(pe->value, pe->value_len, &pol)) {
		const uint8_t *f[3] = {pol.owner, pol.readers, pol.writers};
		size_t l[3] = {pol.owner_len, pol.readers_len, pol.writers_len};
		uint8_t one = 1;

		if (a->active && !(a->u.cats & KV_ACL_ADMIN) && !is_owner(a, &pol) &&
		    !list_has(pol.readers, pol.readers_len, a->name, a->name_len) &&
		    !list_has(pol.writers, pol.writers_len, a->name, a->name_len))
			return refuse(KV_R_POLICY_GET, KV_ERR_NOPERM_KEY, NULL, out, out_len);
		for (int i = 0; i < 3; i++) {
			rb_add(&list, &one, 1);
			rb_value(&list, f[i], (uint32_t)l[i]);
		}
		if (list.oom) {
			teems_free(list.p);
			return TEEMS_ENOMEM;
		}
		res.n_items = 3;
		res.list = list.p;
		res.list_len = list.len;
	}
	rc = encode_new(&res, out, out_len);
	teems_free(list.p);
	return rc;
}

/* True if the users or policies tables of a and b hold the same live records. */
static bool live_equal(const struct kv *a, const struct kv *b)
{
	if (live_count(a) != live_count(b))
		return false;
	for (size_t i = 0; i < ((size_t)1 << a->bits); i++) {
		for (const struct kv_entry *e = a->buckets[i]; e != NULL; e = e->next) {
			const struct kv_entry *f;

			if (!e->present)
				continue;
			f = table_get(b, e->key, e->key_len);
			if (f == NULL || !same(e->value, e->value_len, f->value, f->value_len))
				return false;
		}
	}
	return true;
}

static bool scan_visible(const struct kv *kv, const struct acl_ctx *a, const struct kv_entry *e)
{
	return key_allowed(kv, a, e->key, e->key_len, KV_ACL_READ);
}

static int apply_r(struct kv *kv, const struct kv_cmd *c, uint8_t **out, size_t *out_len)
{
	uint64_t t = c->now_ms > kv->clock ? c->now_ms : kv->clock;
	struct acl_ctx ctx, *a = &ctx; /* about 1.3 KB: on the stack, no allocation per command */
	enum kv_status st;
	int rc;

	st = acl_gate(kv, c, a);
	if (st != KV_OK) /* refused: nothing changes, not even the clock (replicas agree) */
		return refuse(c->op, st, NULL, out, out_len);
	switch (c->op) {
	case KV_R_AUTH:
		return r_auth(kv, c, out, out_len);
	case KV_R_ACL_LIST:
		return r_acl_list(kv, out, out_len);
	case KV_R_ACL_GETUSER:
		return r_acl_getuser(kv, c, out, out_len);
	case KV_R_POLICY_GET:
		return r_policy_get(kv, c, a, out, out_len);
	case KV_R_ACL_SETUSER:
		rc = r_setuser(kv, c, out, out_len);
		break;
	case KV_R_ACL_DELUSER:
		rc = r_deluser(kv, c, out, out_len);
		break;
	case KV_R_POLICY_SET:
		rc = r_policy_set(kv, c, a, out, out_len);
		break;
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
		return r_read(kv, c, a, t, out, out_len);
	}
	if (rc == TEEMS_OK)
		kv->clock = t;
	return rc;
}

const struct lease_table *kv_lease_table(const struct kv *kv)
{
	return kv_leases_table(kv->leases);
}

/* A client lease command (kv/lease_table.h), wrapped or not. The lease name is a key for
 * permissions: INFO reads it, the others write it, checked as GET and SET would be (a refusal
 * changes nothing). The result buffer is reserved first, so TEEMS_ENOMEM changes nothing. */
static int apply_lease(struct kv *kv, const struct kv_lease_req *q, const uint8_t *user,
		       uint16_t user_len, uint8_t **out, size_t *out_len)
{
	struct acl_ctx ctx;
	struct kv_cmd c;
	struct lease_result res;
	enum kv_status st;
	uint8_t *buf;
	int rc;

	memset(&c, 0, sizeof(c));
	c.op = q->info ? KV_R_GET : KV_R_SET;
	c.key = (const uint8_t *)q->cmd.name;
	c.key_len = (uint16_t)q->cmd.name_len;
	c.user = user;
	c.user_len = user_len;
	st = acl_gate(kv, &c, &ctx);
	if (st != KV_OK)
		return refuse(c.op, st, NULL, out, out_len);
	buf = teems_malloc(KV_LEASE_RESULT_LEN);
	if (buf == NULL)
		return TEEMS_ENOMEM;
	if (q->info) {
		kv_leases_info(kv->leases, &q->cmd, &res);
	} else {
		rc = kv_leases_apply_cmd(kv->leases, &q->cmd, &res);
		if (rc != TEEMS_OK) {
			teems_free(buf);
			return rc;
		}
	}
	kv_lease_result_encode(q->info ? KV_LEASE_INFO : (unsigned)q->cmd.type, &res, -1, buf);
	*out = buf;
	*out_len = KV_LEASE_RESULT_LEN;
	return TEEMS_OK;
}

int kv_apply_encoded(struct kv *kv, const uint8_t *cmd, size_t len, uint8_t **result,
		     size_t *result_len)
{
	struct kv_lease_req q;
	const uint8_t *user;
	uint16_t user_len;
	struct kv_cmd c;
	struct kv_result r;
	uint8_t *buf;
	size_t n;
	int rc;

	*result = NULL;
	*result_len = 0;
	rc = kv_lease_unwrap(cmd, len, &q, &user, &user_len);
	if (rc < 0)
		return TEEMS_ECORRUPT;
	if (rc == 1) {
		if (user != NULL && !kv_user_name_ok(user, user_len) &&
		    !(user_len == 1 && user[0] == KV_USER_ANON[0]))
			return TEEMS_ECORRUPT;
		rc = apply_lease(kv, &q, user, user_len, result, result_len);
		if (rc != TEEMS_OK) {
			teems_free(*result);
			*result = NULL;
			*result_len = 0;
			return rc == TEEMS_ENOMEM ? rc : TEEMS_ECORRUPT;
		}
		return TEEMS_OK;
	}
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

/* 4: the client lease table after the policies. Earlier formats are refused (a format 3
 * snapshot read as an empty table would re-encode differently: encodings stay canonical). */
#define SNAP_FORMAT 4
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

/* The users or policies section: u32 count | count (key | value), by key. */
static size_t section_size(struct kv_entry **v, size_t n)
{
	size_t size = 4;

	for (size_t i = 0; i < n; i++)
		size += 2 + (size_t)v[i]->key_len + 4 + (size_t)v[i]->value_len;
	return size;
}

static void section_write(struct kv_wr *w, struct kv_entry **v, size_t n)
{
	kv_wr_u32(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		kv_wr_key(w, v[i]->key, v[i]->key_len);
		kv_wr_value(w, v[i]->value, v[i]->value_len);
	}
}

int kv_snapshot(const struct kv *kv, uint8_t **buf, size_t *len)
{
	struct kv_entry **sorted, **users = NULL, **policies = NULL;
	size_t n = 0, size = SNAP_HEADER, n_users, n_policies, leases_len = 0;
	uint8_t *leases = NULL;
	struct kv_wr w;

	*buf = NULL;
	*len = 0;
	if (sorted_live(kv->users, &users, &n_users) != TEEMS_OK ||
	    sorted_live(kv->policies, &policies, &n_policies) != TEEMS_OK ||
	    kv_leases_serialize(kv->leases, &leases, &leases_len) != TEEMS_OK ||
	    leases_len > UINT32_MAX) {
		teems_free(users);
		teems_free(policies);
		teems_free(leases);
		return TEEMS_ENOMEM;
	}
	size += section_size(users, n_users) + section_size(policies, n_policies) + 4 + leases_len;
	sorted = teems_malloc((kv->count ? kv->count : 1) * sizeof(*sorted));
	if (sorted == NULL) {
		teems_free(users);
		teems_free(policies);
		teems_free(leases);
		return TEEMS_ENOMEM;
	}
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
		teems_free(users);
		teems_free(policies);
		teems_free(leases);
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
	section_write(&w, users, n_users);
	section_write(&w, policies, n_policies);
	kv_wr_u32(&w, (uint32_t)leases_len);
	kv_wr_bytes(&w, leases, leases_len);
	teems_free(sorted);
	teems_free(users);
	teems_free(policies);
	teems_free(leases);
	*buf = w.p;
	*len = w.off;
	return TEEMS_OK;
}

/* Reads the users (or policies) section into a fresh table of tmp, checking every record. */
static int restore_section(struct kv_rd *r, struct kv *tmp, bool users)
{
	struct kv **t = users ? &tmp->users : &tmp->policies;
	const uint8_t *prev = NULL;
	uint16_t prev_len = 0;
	uint32_t n;

	kv_free(*t);
	*t = NULL;
	if (new_table(t) != TEEMS_OK)
		return TEEMS_ENOMEM;
	n = kv_rd_u32(r);
	if (!r->ok || n > (r->len - r->off) / 6)
		return TEEMS_ECORRUPT;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *key, *value;
		uint16_t key_len;
		uint32_t value_len;
		struct acl_user *u;
		struct policy pol;
		bool ok;

		kv_rd_key(r, &key, &key_len, KV_MAX_KEY);
		kv_rd_value(r, &value, &value_len, users ? KV_MAX_VALUE : KV_MAX_POLICY);
		if (!r->ok)
			return TEEMS_ECORRUPT;
		if (prev != NULL) {
			size_t m = prev_len < key_len ? prev_len : key_len;
			int c = m ? memcmp(prev, key, m) : 0;

			if (c > 0 || (c == 0 && prev_len >= key_len))
				return TEEMS_ECORRUPT; /* not strictly increasing */
		}
		if (users) {
			u = teems_malloc(sizeof(*u));
			if (u == NULL)
				return TEEMS_ENOMEM;
			ok = kv_user_name_ok(key, key_len) && user_parse(value, value_len, u);
			teems_free(u);
		} else {
			ok = value != NULL && policy_parse(value, value_len, &pol);
		}
		if (!ok)
			return TEEMS_ECORRUPT;
		if (table_put(*t, key, key_len, value, value_len) != TEEMS_OK)
			return TEEMS_ENOMEM;
		prev = key;
		prev_len = key_len;
	}
	return TEEMS_OK;
}

int kv_restore(struct kv *kv, const uint8_t *buf, size_t len)
{
	struct kv *tmp;
	const struct kv_entry *prev = NULL;
	struct kv_rd r;
	uint64_t n;
	uint32_t format;
	int rc;

	kv_rd_init(&r, buf, len);
	if (len < SNAP_HEADER || memcmp(buf, "TKVS", 4) != 0)
		return TEEMS_ECORRUPT;
	format = kv_get32(buf + 4);
	if (format != SNAP_FORMAT)
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
	rc = restore_section(&r, tmp, true);
	if (rc == TEEMS_OK)
		rc = restore_section(&r, tmp, false);
	if (rc != TEEMS_OK)
		goto fail;
	{
		uint32_t ll = kv_rd_u32(&r);

		rc = TEEMS_ECORRUPT;
		if (!r.ok || ll > r.len - r.off)
			goto fail;
		rc = kv_leases_restore(tmp->leases, buf + r.off, ll);
		if (rc != TEEMS_OK)
			goto fail;
		r.off += ll;
	}
	rc = TEEMS_ECORRUPT;
	if (r.off != len || table_get(tmp->users, (const uint8_t *)"default", 7) == NULL)
		goto fail;
	free_table(kv->buckets, kv->bits);
	kv_free(kv->users);
	kv_free(kv->policies);
	kv_leases_free(kv->leases);
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
	if ((a->users == NULL) != (b->users == NULL) ||
	    (a->users != NULL &&
	     (!live_equal(a->users, b->users) || !live_equal(a->policies, b->policies))))
		return false;
	if ((a->leases == NULL) != (b->leases == NULL) ||
	    (a->leases != NULL && !kv_leases_equal(a->leases, b->leases)))
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
