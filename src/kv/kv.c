/* The key-value state machine (kv.h). A hash table with linear probing; entries are never
 * removed (a DEL leaves a tombstone that keeps the version), so probing needs no deletion
 * markers. */
#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "teems/err.h"

struct kv_entry {
	uint8_t *key; /* NULL: empty bucket */
	uint16_t key_len;
	bool present;
	uint64_t version;
	uint8_t *value;
	uint32_t value_len;
};

struct kv {
	struct kv_entry *buckets;
	size_t cap; /* power of two */
	size_t count;
};

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- commands ---- */

size_t kv_cmd_size(const struct kv_cmd *c)
{
	size_t n;

	if (c->op < KV_GET || c->op > KV_DEL || c->key_len == 0 || c->key_len > KV_MAX_KEY ||
	    c->key == NULL)
		return 0;
	n = 1 + 2 + (size_t)c->key_len;
	if (c->op == KV_CAS)
		n += 8;
	if (c->op == KV_SET || c->op == KV_CAS) {
		if (c->value_len > KV_MAX_VALUE || (c->value_len && c->value == NULL))
			return 0;
		n += 4 + (size_t)c->value_len;
	}
	return n;
}

int kv_cmd_encode(const struct kv_cmd *c, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = kv_cmd_size(c), off = 0;

	if (n == 0)
		return TEEMS_EINVAL;
	*len = n;
	if (cap < n)
		return TEEMS_EFULL;
	buf[off++] = (uint8_t)c->op;
	put_u16(buf + off, c->key_len);
	off += 2;
	memcpy(buf + off, c->key, c->key_len);
	off += c->key_len;
	if (c->op == KV_CAS) {
		put_u64(buf + off, c->expected_version);
		off += 8;
	}
	if (c->op == KV_SET || c->op == KV_CAS) {
		put_u32(buf + off, c->value_len);
		off += 4;
		if (c->value_len)
			memcpy(buf + off, c->value, c->value_len);
	}
	return TEEMS_OK;
}

int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out)
{
	size_t off = 0;

	memset(out, 0, sizeof(*out));
	if (len < 3)
		return TEEMS_ECORRUPT;
	if (buf[0] < KV_GET || buf[0] > KV_DEL)
		return TEEMS_ECORRUPT;
	out->op = (enum kv_op)buf[0];
	out->key_len = get_u16(buf + 1);
	off = 3;
	if (out->key_len == 0 || out->key_len > KV_MAX_KEY || len - off < out->key_len)
		return TEEMS_ECORRUPT;
	out->key = buf + off;
	off += out->key_len;
	if (out->op == KV_CAS) {
		if (len - off < 8)
			return TEEMS_ECORRUPT;
		out->expected_version = get_u64(buf + off);
		off += 8;
	}
	if (out->op == KV_SET || out->op == KV_CAS) {
		if (len - off < 4)
			return TEEMS_ECORRUPT;
		out->value_len = get_u32(buf + off);
		off += 4;
		if (out->value_len > KV_MAX_VALUE || len - off < out->value_len)
			return TEEMS_ECORRUPT;
		out->value = out->value_len ? buf + off : NULL;
		off += out->value_len;
	}
	if (off != len)
		return TEEMS_ECORRUPT;
	return TEEMS_OK;
}

/* ---- results ---- */

size_t kv_result_size(const struct kv_result *r)
{
	if (r->status != KV_OK && r->status != KV_CAS_FAILED)
		return 0;
	if (!r->found && r->value_len)
		return 0;
	if (r->value_len > KV_MAX_VALUE || (r->value_len && r->value == NULL))
		return 0;
	return 1 + 1 + 8 + 4 + (size_t)r->value_len;
}

int kv_result_encode(const struct kv_result *r, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = kv_result_size(r);

	if (n == 0)
		return TEEMS_EINVAL;
	*len = n;
	if (cap < n)
		return TEEMS_EFULL;
	buf[0] = (uint8_t)r->status;
	buf[1] = r->found ? 1 : 0;
	put_u64(buf + 2, r->version);
	put_u32(buf + 10, r->value_len);
	if (r->value_len)
		memcpy(buf + 14, r->value, r->value_len);
	return TEEMS_OK;
}

int kv_result_decode(const uint8_t *buf, size_t len, struct kv_result *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 14 || buf[0] > KV_CAS_FAILED || buf[1] > 1)
		return TEEMS_ECORRUPT;
	out->status = (enum kv_status)buf[0];
	out->found = buf[1] == 1;
	out->version = get_u64(buf + 2);
	out->value_len = get_u32(buf + 10);
	if (out->value_len > KV_MAX_VALUE || len - 14 != out->value_len)
		return TEEMS_ECORRUPT;
	if (!out->found && out->value_len)
		return TEEMS_ECORRUPT;
	out->value = out->value_len ? buf + 14 : NULL;
	return TEEMS_OK;
}

/* ---- the map ---- */

static uint64_t hash_key(const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= key[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

int kv_new(struct kv **out)
{
	struct kv *kv = teems_calloc(1, sizeof(*kv));

	*out = NULL;
	if (kv == NULL)
		return TEEMS_ENOMEM;
	kv->cap = 16;
	kv->buckets = teems_calloc(kv->cap, sizeof(*kv->buckets));
	if (kv->buckets == NULL) {
		teems_free(kv);
		return TEEMS_ENOMEM;
	}
	*out = kv;
	return TEEMS_OK;
}

static void free_entries(struct kv_entry *b, size_t cap)
{
	for (size_t i = 0; i < cap; i++) {
		teems_free(b[i].key);
		teems_free(b[i].value);
	}
	teems_free(b);
}

void kv_free(struct kv *kv)
{
	if (kv == NULL)
		return;
	free_entries(kv->buckets, kv->cap);
	teems_free(kv);
}

static struct kv_entry *find_slot(struct kv_entry *b, size_t cap, const uint8_t *key,
				  size_t key_len)
{
	size_t i = (size_t)hash_key(key, key_len) & (cap - 1);

	for (;;) {
		if (b[i].key == NULL ||
		    (b[i].key_len == key_len && memcmp(b[i].key, key, key_len) == 0))
			return &b[i];
		i = (i + 1) & (cap - 1);
	}
}

static int grow(struct kv *kv)
{
	size_t ncap = kv->cap * 2;
	struct kv_entry *nb = teems_calloc(ncap, sizeof(*nb));

	if (nb == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < kv->cap; i++)
		if (kv->buckets[i].key != NULL)
			*find_slot(nb, ncap, kv->buckets[i].key, kv->buckets[i].key_len) =
				kv->buckets[i];
	teems_free(kv->buckets);
	kv->buckets = nb;
	kv->cap = ncap;
	return TEEMS_OK;
}

size_t kv_count(const struct kv *kv)
{
	return kv->count;
}

void kv_get(const struct kv *kv, const uint8_t *key, size_t key_len, struct kv_result *res)
{
	struct kv_entry *e = find_slot(kv->buckets, kv->cap, key, key_len);

	memset(res, 0, sizeof(*res));
	res->status = KV_OK;
	if (e->key == NULL)
		return;
	res->version = e->version;
	res->found = e->present;
	if (e->present) {
		res->value = e->value;
		res->value_len = e->value_len;
	}
}

/* Writes (present, value) with version + 1 into the key's entry, creating it. */
static int write_entry(struct kv *kv, const struct kv_cmd *cmd, bool present, uint64_t *version)
{
	struct kv_entry *e;
	uint8_t *nv = NULL;

	if ((kv->count + 1) * 4 > kv->cap * 3 && grow(kv) != TEEMS_OK)
		return TEEMS_ENOMEM;
	e = find_slot(kv->buckets, kv->cap, cmd->key, cmd->key_len);
	if (present && cmd->value_len) {
		nv = teems_malloc(cmd->value_len);
		if (nv == NULL)
			return TEEMS_ENOMEM;
		memcpy(nv, cmd->value, cmd->value_len);
	}
	if (e->key == NULL) {
		e->key = teems_malloc(cmd->key_len);
		if (e->key == NULL) {
			teems_free(nv);
			return TEEMS_ENOMEM;
		}
		memcpy(e->key, cmd->key, cmd->key_len);
		e->key_len = cmd->key_len;
		e->version = 0;
		kv->count++;
	}
	teems_free(e->value);
	e->value = nv;
	e->value_len = present ? cmd->value_len : 0;
	e->present = present;
	e->version++;
	*version = e->version;
	return TEEMS_OK;
}

int kv_apply(struct kv *kv, const struct kv_cmd *cmd, struct kv_result *res)
{
	struct kv_result cur;
	int rc;

	if (kv_cmd_size(cmd) == 0)
		return TEEMS_EINVAL;
	kv_get(kv, cmd->key, cmd->key_len, &cur);
	memset(res, 0, sizeof(*res));
	res->status = KV_OK;
	switch (cmd->op) {
	case KV_GET:
		*res = cur;
		return TEEMS_OK;
	case KV_CAS:
		if (cur.version != cmd->expected_version) {
			res->status = KV_CAS_FAILED;
			res->version = cur.version;
			return TEEMS_OK;
		}
		/* fall through */
	case KV_SET:
		rc = write_entry(kv, cmd, true, &res->version);
		return rc;
	case KV_DEL:
		return write_entry(kv, cmd, false, &res->version);
	}
	return TEEMS_EINVAL;
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
	if (rc != TEEMS_OK) {
		teems_free(buf);
		return rc;
	}
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

static int cmp_entry_ptr(const void *a, const void *b)
{
	const struct kv_entry *x = *(const struct kv_entry *const *)a;
	const struct kv_entry *y = *(const struct kv_entry *const *)b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

int kv_snapshot(const struct kv *kv, uint8_t **buf, size_t *len)
{
	struct kv_entry **sorted;
	size_t n = 0, size = 16, off = 0;
	uint8_t *out;

	*buf = NULL;
	*len = 0;
	sorted = teems_malloc((kv->count ? kv->count : 1) * sizeof(*sorted));
	if (sorted == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < kv->cap; i++) {
		struct kv_entry *e = &kv->buckets[i];

		if (e->key == NULL)
			continue;
		sorted[n++] = e;
		size += 2 + (size_t)e->key_len + 8 + 1 +
			(e->present ? 4 + (size_t)e->value_len : 0);
	}
	qsort(sorted, n, sizeof(*sorted), cmp_entry_ptr);
	out = teems_malloc(size);
	if (out == NULL) {
		teems_free(sorted);
		return TEEMS_ENOMEM;
	}
	memcpy(out, "TKVS", 4);
	put_u32(out + 4, 1);
	put_u64(out + 8, n);
	off = 16;
	for (size_t i = 0; i < n; i++) {
		const struct kv_entry *e = sorted[i];

		put_u16(out + off, e->key_len);
		off += 2;
		memcpy(out + off, e->key, e->key_len);
		off += e->key_len;
		put_u64(out + off, e->version);
		off += 8;
		out[off++] = e->present ? 1 : 0;
		if (e->present) {
			put_u32(out + off, e->value_len);
			off += 4;
			if (e->value_len)
				memcpy(out + off, e->value, e->value_len);
			off += e->value_len;
		}
	}
	teems_free(sorted);
	*buf = out;
	*len = off;
	return TEEMS_OK;
}

int kv_restore(struct kv *kv, const uint8_t *buf, size_t len)
{
	struct kv *tmp;
	const uint8_t *prev_key = NULL;
	uint16_t prev_len = 0;
	uint64_t n;
	size_t off = 16;
	int rc;

	if (len < 16 || memcmp(buf, "TKVS", 4) != 0 || get_u32(buf + 4) != 1)
		return TEEMS_ECORRUPT;
	n = get_u64(buf + 8);
	/* every entry takes at least 2 + 1 + 8 + 1 bytes */
	if (n > (len - 16) / 12)
		return TEEMS_ECORRUPT;
	rc = kv_new(&tmp);
	if (rc != TEEMS_OK)
		return rc;
	for (uint64_t i = 0; i < n; i++) {
		struct kv_cmd c = {0};
		struct kv_entry *e;
		uint64_t version, v;
		bool present;

		rc = TEEMS_ECORRUPT;
		if (len - off < 2)
			goto fail;
		c.key_len = get_u16(buf + off);
		off += 2;
		if (c.key_len == 0 || c.key_len > KV_MAX_KEY || len - off < (size_t)c.key_len + 9)
			goto fail;
		c.key = buf + off;
		off += c.key_len;
		if (prev_key != NULL) {
			size_t m = prev_len < c.key_len ? prev_len : c.key_len;
			int cmp = memcmp(prev_key, c.key, m);

			if (cmp > 0 || (cmp == 0 && prev_len >= c.key_len))
				goto fail; /* not strictly increasing */
		}
		prev_key = c.key;
		prev_len = c.key_len;
		version = get_u64(buf + off);
		off += 8;
		if (buf[off] > 1 || version == 0)
			goto fail; /* an entry exists only once written */
		present = buf[off++] == 1;
		if (present) {
			if (len - off < 4)
				goto fail;
			c.value_len = get_u32(buf + off);
			off += 4;
			if (c.value_len > KV_MAX_VALUE || len - off < c.value_len)
				goto fail;
			c.value = c.value_len ? buf + off : NULL;
			off += c.value_len;
		}
		c.op = present ? KV_SET : KV_DEL;
		rc = write_entry(tmp, &c, present, &v);
		if (rc != TEEMS_OK)
			goto fail;
		e = find_slot(tmp->buckets, tmp->cap, c.key, c.key_len);
		e->version = version;
	}
	if (off != len) {
		rc = TEEMS_ECORRUPT;
		goto fail;
	}
	free_entries(kv->buckets, kv->cap);
	*kv = *tmp;
	teems_free(tmp);
	return TEEMS_OK;
fail:
	kv_free(tmp);
	return rc;
}

bool kv_equal(const struct kv *a, const struct kv *b)
{
	if (a->count != b->count)
		return false;
	for (size_t i = 0; i < a->cap; i++) {
		const struct kv_entry *e = &a->buckets[i];
		struct kv_result r;

		if (e->key == NULL)
			continue;
		kv_get(b, e->key, e->key_len, &r);
		if (r.version != e->version || r.found != e->present)
			return false;
		if (e->present && (r.value_len != e->value_len ||
				   (e->value_len && memcmp(r.value, e->value, e->value_len) != 0)))
			return false;
	}
	return true;
}
