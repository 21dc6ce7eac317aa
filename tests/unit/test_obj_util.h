/* Helpers shared by the object-layer unit tests: deterministic plaintext generators and
 * counting sinks, so that large objects stream without ever being held in memory. */
#ifndef TEEMS_TEST_OBJ_UTIL_H
#define TEEMS_TEST_OBJ_UTIL_H

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "client/stream.h"
#include "teems/err.h"

/* A source of `len` pseudo-random bytes from `seed`, handing out at most `max_read` per call. */
struct gen_src {
	uint64_t state;
	uint64_t left;
	size_t max_read;
	size_t largest_request; /* the largest cap a reader asked for */
};

static inline uint8_t gen_byte(struct gen_src *g)
{
	g->state ^= g->state << 13;
	g->state ^= g->state >> 7;
	g->state ^= g->state << 17;
	return (uint8_t)(g->state >> 24);
}

static inline int gen_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct gen_src *g = arg;
	uint8_t *p = buf;
	size_t n = cap;

	(void)errbuf;
	if (cap > g->largest_request)
		g->largest_request = cap;
	if (g->max_read && n > g->max_read)
		n = g->max_read;
	if (n > g->left)
		n = (size_t)g->left;
	for (size_t i = 0; i < n; i++)
		p[i] = gen_byte(g);
	g->left -= n;
	*got = n;
	return TEEMS_OK;
}

static inline struct obj_src gen_src_init(struct gen_src *g, uint64_t seed, uint64_t len)
{
	memset(g, 0, sizeof(*g));
	g->state = seed * 0x9E3779B97F4A7C15ull + 1;
	g->left = len;
	return (struct obj_src){.read = gen_read, .arg = g};
}

/* A sink that only hashes and counts, remembering its largest single write. */
struct hash_sink {
	EVP_MD_CTX *md;
	uint64_t total;
	size_t largest_write;
};

static inline int hash_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct hash_sink *h = arg;

	(void)errbuf;
	if (len > h->largest_write)
		h->largest_write = len;
	h->total += len;
	EVP_DigestUpdate(h->md, buf, len);
	return TEEMS_OK;
}

static inline struct obj_sink hash_sink_init(struct hash_sink *h)
{
	memset(h, 0, sizeof(*h));
	h->md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
	return (struct obj_sink){.write = hash_write, .arg = h};
}

static inline void hash_sink_final(struct hash_sink *h, uint8_t out[32])
{
	unsigned int n;

	EVP_DigestFinal_ex(h->md, out, &n);
	EVP_MD_CTX_free(h->md);
	h->md = NULL;
}

#endif
