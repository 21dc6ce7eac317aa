/* Shared by the files of src/kv: little-endian helpers and a bounds-checked reader. */
#ifndef TEEMS_KV_KV_INTERNAL_H
#define TEEMS_KV_KV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void kv_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void kv_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void kv_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t kv_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t kv_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t kv_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* A reader over untrusted bytes: every take checks the remaining length first and, once one
 * fails, every later one fails too (ok stays false). */
struct kv_rd {
	const uint8_t *p;
	size_t len, off;
	bool ok;
};

static inline void kv_rd_init(struct kv_rd *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->ok = true;
}

static inline const uint8_t *kv_rd_take(struct kv_rd *r, size_t n)
{
	const uint8_t *q;

	if (!r->ok || r->len - r->off < n) {
		r->ok = false;
		return NULL;
	}
	q = r->p + r->off;
	r->off += n;
	return q;
}

static inline uint8_t kv_rd_u8(struct kv_rd *r)
{
	const uint8_t *q = kv_rd_take(r, 1);

	return q ? q[0] : 0;
}

static inline uint16_t kv_rd_u16(struct kv_rd *r)
{
	const uint8_t *q = kv_rd_take(r, 2);

	return q ? kv_get16(q) : 0;
}

static inline uint32_t kv_rd_u32(struct kv_rd *r)
{
	const uint8_t *q = kv_rd_take(r, 4);

	return q ? kv_get32(q) : 0;
}

static inline uint64_t kv_rd_u64(struct kv_rd *r)
{
	const uint8_t *q = kv_rd_take(r, 8);

	return q ? kv_get64(q) : 0;
}

/* A key (u16 length, at most KV_MAX_KEY) or a value (u32 length, at most max). */
static inline bool kv_rd_key(struct kv_rd *r, const uint8_t **key, uint16_t *len, uint32_t max)
{
	*len = kv_rd_u16(r);
	if (r->ok && *len > max)
		r->ok = false;
	*key = kv_rd_take(r, *len);
	return r->ok;
}

static inline bool kv_rd_value(struct kv_rd *r, const uint8_t **v, uint32_t *len, uint32_t max)
{
	*len = kv_rd_u32(r);
	if (r->ok && *len > max)
		r->ok = false;
	*v = kv_rd_take(r, *len);
	if (*len == 0)
		*v = NULL;
	return r->ok;
}

/* A writer into a buffer sized beforehand (kv_*_size); writes past cap are a bug the sizes
 * rule out, but are refused anyway (ok false). With p NULL it only counts. */
struct kv_wr {
	uint8_t *p;
	size_t cap, off;
	bool ok;
};

static inline void kv_wr_bytes(struct kv_wr *w, const void *src, size_t n)
{
	if (w->p != NULL) {
		if (w->cap - w->off < n || w->off > w->cap) {
			w->ok = false;
			return;
		}
		if (n)
			memcpy(w->p + w->off, src, n);
	}
	w->off += n;
}

static inline void kv_wr_u8(struct kv_wr *w, uint8_t v)
{
	kv_wr_bytes(w, &v, 1);
}

static inline void kv_wr_u16(struct kv_wr *w, uint16_t v)
{
	uint8_t b[2];

	kv_put16(b, v);
	kv_wr_bytes(w, b, 2);
}

static inline void kv_wr_u32(struct kv_wr *w, uint32_t v)
{
	uint8_t b[4];

	kv_put32(b, v);
	kv_wr_bytes(w, b, 4);
}

static inline void kv_wr_u64(struct kv_wr *w, uint64_t v)
{
	uint8_t b[8];

	kv_put64(b, v);
	kv_wr_bytes(w, b, 8);
}

static inline void kv_wr_key(struct kv_wr *w, const uint8_t *k, uint16_t len)
{
	kv_wr_u16(w, len);
	kv_wr_bytes(w, k, len);
}

static inline void kv_wr_value(struct kv_wr *w, const uint8_t *v, uint32_t len)
{
	kv_wr_u32(w, len);
	kv_wr_bytes(w, v, len);
}

#endif
