/* The sealed WAL: format and guarantees in wal.h and docs/STORAGE.md (DESIGN.md section 7). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "tee/crypto.h"
#include "teems/err.h"
#include "wal.h"

#define WAL_VERSION 1
#define WAL_AD_LEN 52
#define WAL_TAG_OFF 80
#define WAL_PATH_MAX 4096
#define WAL_DIR_MAX 4000
#define WAL_NAME_LEN 20 /* "wal-" and 16 hex digits */
#define WAL_WINDOW 65536

static const uint8_t wal_magic[8] = {'T', 'E', 'E', 'M', 'S', 'W', 'A', 'L'};
static const char wal_label[] = "teems wal v1";

/* A decoded segment header. */
struct wal_hdr {
	uint64_t replica_id;
	uint64_t number;
	uint64_t first_index;
	uint64_t counter0;
	uint8_t inc[STORE_WAL_INCARNATION_LEN];
	uint8_t prev_chain[STORE_WAL_CHAIN_LEN];
	uint8_t tag[TEE_TAG_LEN];
};

/* Shared encoding helpers. */

static void hdr_encode(uint8_t out[STORE_WAL_HEADER_LEN], const struct wal_hdr *h)
{
	memcpy(out, wal_magic, 8);
	put_le32(out + 8, WAL_VERSION);
	put_le32(out + 12, STORE_WAL_HEADER_LEN);
	put_le64(out + 16, h->replica_id);
	put_le64(out + 24, h->number);
	put_le64(out + 32, h->first_index);
	put_le64(out + 40, h->counter0);
	memcpy(out + 48, h->inc, 16);
	memcpy(out + 64, h->prev_chain, 16);
	memcpy(out + WAL_TAG_OFF, h->tag, 16);
}

/* Parses the fields; seg_header() checks the rest and the tag. */
static int hdr_decode(const uint8_t in[STORE_WAL_HEADER_LEN], struct wal_hdr *h)
{
	if (memcmp(in, wal_magic, 8) != 0)
		return TEEMS_ECORRUPT;
	if (get_le32(in + 8) != WAL_VERSION)
		return TEEMS_EVERSION;
	if (get_le32(in + 12) != STORE_WAL_HEADER_LEN)
		return TEEMS_ECORRUPT;
	h->replica_id = get_le64(in + 16);
	h->number = get_le64(in + 24);
	h->first_index = get_le64(in + 32);
	h->counter0 = get_le64(in + 40);
	memcpy(h->inc, in + 48, 16);
	memcpy(h->prev_chain, in + 64, 16);
	memcpy(h->tag, in + WAL_TAG_OFF, 16);
	return TEEMS_OK;
}

static void wal_nonce(uint8_t nonce[TEE_NONCE_LEN], uint64_t counter)
{
	put_le64(nonce, counter);
	put_le32(nonce + 8, 0);
}

/* The per-incarnation subkey (DESIGN.md section 7): a fresh incarnation id per open-for-write
 * gives a fresh key, so restarting the counter after a rollback never repeats a nonce. */
static int wal_derive(const uint8_t root[STORE_WAL_ROOT_KEY_LEN],
		      const uint8_t inc[STORE_WAL_INCARNATION_LEN], uint8_t key[TEE_KEY_LEN])
{
	uint8_t info[sizeof(wal_label) - 1 + STORE_WAL_INCARNATION_LEN];

	memcpy(info, wal_label, sizeof(wal_label) - 1);
	memcpy(info + sizeof(wal_label) - 1, inc, STORE_WAL_INCARNATION_LEN);
	return tee_hkdf(root, STORE_WAL_ROOT_KEY_LEN, NULL, 0, info, sizeof(info), key,
			TEE_KEY_LEN);
}

/* A record's associated data: where it is (replica, segment, index, offset), how long, and
 * the chain value before it, so a record is valid only in its one place in one history. */
static void rec_ad(uint8_t ad[WAL_AD_LEN], uint64_t replica_id, uint64_t seg, uint64_t index,
		   uint64_t off, uint32_t len, const uint8_t prev[16])
{
	put_le64(ad, replica_id);
	put_le64(ad + 8, seg);
	put_le64(ad + 16, index);
	put_le64(ad + 24, off);
	put_le32(ad + 32, len);
	memcpy(ad + 36, prev, 16);
}

static int seg_path(char *path, const char *dir, uint64_t number)
{
	int n = snprintf(path, WAL_PATH_MAX, "%s/wal-%016" PRIx64, dir, number);

	return n > 0 && n < WAL_PATH_MAX ? TEEMS_OK : TEEMS_EINVAL;
}

/* "wal-" followed by exactly 16 lowercase hex digits, not zero. */
static int seg_parse_name(const char *name, uint64_t *number)
{
	uint64_t v = 0;

	if (strlen(name) != WAL_NAME_LEN || memcmp(name, "wal-", 4) != 0)
		return 0;
	for (int i = 4; i < WAL_NAME_LEN; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = (v << 4) | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (v << 4) | (uint64_t)(c - 'a' + 10);
		else
			return 0;
	}
	*number = v;
	return v != 0;
}

/* Reading: the scan behind store_wal_open(). */

struct wal_seg {
	uint64_t number;
	int state; /* 0: header not read yet; 1: authentic; -1: unusable */
	int on_chain;
	struct wal_hdr h;
	uint64_t size;
};

enum seg_end {
	SEG_EOF,
	SEG_TORN,
	SEG_AUTH,
	SEG_ANCHOR_MISMATCH, /* reached the anchor's index with another chain value */
	SEG_ANCHOR_SHORT,    /* ended before the anchor's index */
};

struct seg_result {
	uint64_t off;
	uint64_t index;
	uint8_t chain[STORE_WAL_CHAIN_LEN];
	enum seg_end how;
};

struct wal_scan {
	struct store_vfs *vfs;
	const char *dir;
	uint64_t replica_id;
	const uint8_t *root_key;
	struct wal_seg *segs; /* sorted by number */
	size_t nsegs;
	int have_key;
	uint8_t key_inc[STORE_WAL_INCARNATION_LEN];
	struct tee_aead aead;
	uint8_t *buf; /* window over the file being read */
	size_t cap;
	uint64_t wstart;
	size_t wlen;
	uint8_t *pt;
	size_t ptcap;
	store_wal_record_fn on_record;
	void *arg;
	uint64_t delivered;
	char *errbuf;
};

static int seg_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct wal_seg *)a)->number, y = ((const struct wal_seg *)b)->number;

	return x < y ? -1 : x > y;
}

static int scan_list(struct wal_scan *s)
{
	struct store_dirlist l = {0};
	int rv;

	rv = store_vfs_list(s->vfs, s->dir, &l);
	if (rv != TEEMS_OK)
		return teems_errf(s->errbuf, rv, "wal: cannot list %s: %s", s->dir,
				  teems_strerror(rv));
	s->segs = teems_calloc(l.n + 1, sizeof(*s->segs));
	if (s->segs == NULL) {
		store_dirlist_free(&l);
		return TEEMS_ENOMEM;
	}
	for (size_t i = 0; i < l.n; i++) {
		uint64_t number;

		if (seg_parse_name(l.names[i], &number))
			s->segs[s->nsegs++].number = number;
	}
	store_dirlist_free(&l);
	qsort(s->segs, s->nsegs, sizeof(*s->segs), seg_cmp);
	return TEEMS_OK;
}

/* Makes s->aead the key of incarnation inc (segments of one writer share it). */
static int scan_key(struct wal_scan *s, const uint8_t inc[STORE_WAL_INCARNATION_LEN])
{
	uint8_t key[TEE_KEY_LEN];
	int rv;

	if (s->have_key && memcmp(s->key_inc, inc, STORE_WAL_INCARNATION_LEN) == 0)
		return TEEMS_OK;
	if (s->have_key)
		tee_aead_free(&s->aead);
	s->have_key = 0;
	rv = wal_derive(s->root_key, inc, key);
	if (rv == TEEMS_OK)
		rv = tee_aead_init(&s->aead, key);
	tee_wipe(key, sizeof(key));
	if (rv != TEEMS_OK)
		return rv;
	memcpy(s->key_inc, inc, STORE_WAL_INCARNATION_LEN);
	s->have_key = 1;
	return TEEMS_OK;
}

/* Reads and authenticates seg's header once. A header that is short, malformed, of another
 * replica, misnamed or not authentic makes the segment unusable (state -1); only I/O, memory
 * and crypto-library failures are errors. */
static int seg_header(struct wal_scan *s, struct wal_seg *seg)
{
	uint8_t raw[STORE_WAL_HEADER_LEN], nonce[TEE_NONCE_LEN];
	char path[WAL_PATH_MAX];
	struct store_file *f = NULL;
	size_t n;
	int rv;

	if (seg->state != 0)
		return TEEMS_OK;
	seg->state = -1;
	rv = seg_path(path, s->dir, seg->number);
	if (rv != TEEMS_OK)
		return rv;
	rv = store_vfs_open(s->vfs, path, 0, &f);
	if (rv == TEEMS_ENOTFOUND)
		return TEEMS_OK; /* gone since the listing */
	if (rv != TEEMS_OK)
		goto io;
	rv = store_file_size(f, &seg->size);
	if (rv != TEEMS_OK)
		goto io;
	if (seg->size < STORE_WAL_HEADER_LEN)
		goto out;
	rv = store_file_read(f, raw, sizeof(raw), 0, &n);
	if (rv != TEEMS_OK)
		goto io;
	if (n != sizeof(raw) || hdr_decode(raw, &seg->h) != TEEMS_OK)
		goto out;
	if (seg->h.replica_id != s->replica_id || seg->h.number != seg->number ||
	    seg->h.first_index == 0 || seg->h.first_index == UINT64_MAX)
		goto out;
	rv = scan_key(s, seg->h.inc);
	if (rv != TEEMS_OK)
		goto fail;
	wal_nonce(nonce, seg->h.counter0);
	rv = tee_aead_open(&s->aead, nonce, raw, WAL_TAG_OFF, NULL, 0, seg->h.tag, NULL);
	if (rv == TEEMS_OK)
		seg->state = 1;
	else if (rv != TEEMS_EAUTH)
		goto fail;
out:
	store_file_close(f);
	return TEEMS_OK;
io:
	rv = teems_errf(s->errbuf, rv, "wal: cannot read %s: %s", path, teems_strerror(rv));
fail:
	store_file_close(f);
	return rv;
}

static int grow(uint8_t **p, size_t *cap, size_t want)
{
	uint8_t *np;

	if (want <= *cap)
		return TEEMS_OK;
	np = teems_realloc(*p, want);
	if (np == NULL)
		return TEEMS_ENOMEM;
	*p = np;
	*cap = want;
	return TEEMS_OK;
}

/* Points *p at bytes [off, off+len) of f, reading a window of the file when needed.
 * Returns 1 when the file holds fewer bytes than that. */
static int scan_bytes(struct wal_scan *s, struct store_file *f, uint64_t off, size_t len,
		      const uint8_t **p)
{
	size_t want = len > WAL_WINDOW ? len : WAL_WINDOW;
	int rv;

	if (off >= s->wstart && off - s->wstart + len <= s->wlen) {
		*p = s->buf + (off - s->wstart);
		return TEEMS_OK;
	}
	rv = grow(&s->buf, &s->cap, want);
	if (rv != TEEMS_OK)
		return rv;
	s->wlen = 0;
	rv = store_file_read(f, s->buf, s->cap, off, &s->wlen);
	if (rv != TEEMS_OK)
		return rv;
	s->wstart = off;
	if (s->wlen < len)
		return 1;
	*p = s->buf;
	return TEEMS_OK;
}

/* Reads seg's records from the start. Records with index > deliver_after go to on_record.
 * With check != NULL (the anchor lies inside this segment), the chain value after record
 * check->index must be check->chain, else nothing is delivered and the result says so. */
static int seg_records(struct wal_scan *s, struct wal_seg *seg, const struct store_wal_pos *check,
		       uint64_t deliver_after, struct seg_result *r)
{
	uint8_t ad[WAL_AD_LEN], nonce[TEE_NONCE_LEN];
	char path[WAL_PATH_MAX];
	struct store_file *f = NULL;
	uint64_t j = 0;
	int rv;

	r->off = STORE_WAL_HEADER_LEN;
	r->index = seg->h.first_index - 1;
	memcpy(r->chain, seg->h.prev_chain, STORE_WAL_CHAIN_LEN);
	r->how = SEG_EOF;
	rv = seg_path(path, s->dir, seg->number);
	if (rv != TEEMS_OK)
		return rv;
	rv = store_vfs_open(s->vfs, path, 0, &f);
	if (rv != TEEMS_OK)
		return teems_errf(s->errbuf, rv, "wal: cannot open %s: %s", path,
				  teems_strerror(rv));
	rv = scan_key(s, seg->h.inc);
	if (rv != TEEMS_OK)
		goto out;
	s->wlen = 0;
	for (;;) {
		const uint8_t *p;
		uint32_t n;
		size_t total;

		if (r->off == seg->size)
			break;
		rv = scan_bytes(s, f, r->off, 4, &p);
		if (rv != TEEMS_OK)
			goto short_or_err;
		n = get_le32(p);
		/* Validate the length before using it: bounded, and inside the file. */
		if (n > STORE_WAL_RECORD_MAX) {
			r->how = SEG_AUTH;
			break;
		}
		total = STORE_WAL_RECORD_OVERHEAD + (size_t)n;
		if (seg->size - r->off < total) {
			r->how = SEG_TORN;
			break;
		}
		if (r->index == UINT64_MAX - 1 || seg->h.counter0 > UINT64_MAX - 2 - j) {
			r->how = SEG_AUTH; /* cannot be authentic: counters never get there */
			break;
		}
		rv = scan_bytes(s, f, r->off, total, &p);
		if (rv != TEEMS_OK)
			goto short_or_err;
		rv = grow(&s->pt, &s->ptcap, n > 0 ? n : 1);
		if (rv != TEEMS_OK)
			goto out;
		rec_ad(ad, s->replica_id, seg->number, r->index + 1, r->off, n, r->chain);
		wal_nonce(nonce, seg->h.counter0 + 1 + j);
		rv = tee_aead_open(&s->aead, nonce, ad, sizeof(ad), p + 4, n, p + 4 + n, s->pt);
		if (rv == TEEMS_EAUTH) {
			r->how = SEG_AUTH;
			rv = TEEMS_OK;
			break;
		}
		if (rv != TEEMS_OK)
			goto out;
		r->index++;
		memcpy(r->chain, p + 4 + n, STORE_WAL_CHAIN_LEN);
		r->off += total;
		j++;
		if (check != NULL && r->index == check->index &&
		    memcmp(r->chain, check->chain, STORE_WAL_CHAIN_LEN) != 0) {
			r->how = SEG_ANCHOR_MISMATCH;
			goto out;
		}
		if (r->index > deliver_after) {
			if (s->on_record != NULL) {
				rv = s->on_record(s->arg, r->index, s->pt, n);
				if (rv != 0)
					goto out;
			}
			s->delivered++;
		}
	}
	rv = TEEMS_OK;
	if (check != NULL && r->index < check->index)
		r->how = SEG_ANCHOR_SHORT;
	goto out;
short_or_err:
	if (rv == 1) {
		/* The file is shorter than its size said: treat it as torn. */
		rv = TEEMS_OK;
		r->how = SEG_TORN;
		if (check != NULL && r->index < check->index)
			r->how = SEG_ANCHOR_SHORT;
	} else if (rv != TEEMS_ENOMEM) {
		rv = teems_errf(s->errbuf, rv, "wal: cannot read %s: %s", path, teems_strerror(rv));
	}
out:
	store_file_close(f);
	return rv;
}

/* The lowest-numbered segment above index `after` (in s->segs) whose authentic header continues
 * the chain at (index, chain); -1 when there is none. */
static long scan_next(struct wal_scan *s, size_t after, uint64_t index,
		      const uint8_t chain[STORE_WAL_CHAIN_LEN], int *err)
{
	for (size_t i = after + 1; i < s->nsegs; i++) {
		struct wal_seg *seg = &s->segs[i];

		*err = seg_header(s, seg);
		if (*err != TEEMS_OK)
			return -1;
		if (seg->state == 1 && seg->h.first_index == index + 1 &&
		    memcmp(seg->h.prev_chain, chain, STORE_WAL_CHAIN_LEN) == 0)
			return (long)i;
	}
	return -1;
}

/* Follows the chain from the anchor. On return *end_seg is the index in s->segs of the last
 * segment on the chain, or -1 when no segment continues the anchor. */
static int scan_run(struct wal_scan *s, const struct store_wal_pos *a, struct store_wal_info *info,
		    long *end_seg)
{
	struct seg_result r;
	long cur = -1;
	int rv;

	*info = (struct store_wal_info){.end = *a};
	*end_seg = -1;
	/* The start: a segment that holds the record after the anchor, tried from the highest
	 * number down (after a compaction the segment we need is among the newest). */
	for (size_t k = s->nsegs; k-- > 0;) {
		struct wal_seg *seg = &s->segs[k];
		const struct store_wal_pos *check = NULL;

		rv = seg_header(s, seg);
		if (rv != TEEMS_OK)
			return rv;
		if (seg->state != 1 || seg->h.first_index > a->index + 1)
			continue;
		if (seg->h.first_index == a->index + 1) {
			if (memcmp(seg->h.prev_chain, a->chain, STORE_WAL_CHAIN_LEN) != 0)
				continue;
		} else {
			check = a;
		}
		rv = seg_records(s, seg, check, a->index, &r);
		if (rv != TEEMS_OK)
			return rv;
		if (r.how == SEG_ANCHOR_MISMATCH || r.how == SEG_ANCHOR_SHORT)
			continue;
		cur = (long)k;
		break;
	}
	if (cur < 0) {
		info->stop = s->nsegs == 0 ? STORE_WAL_STOP_CLEAN : STORE_WAL_STOP_ANCHOR;
		info->ignored_segments = s->nsegs;
		return TEEMS_OK;
	}
	s->segs[cur].on_chain = 1;
	info->segments = 1;
	for (;;) {
		long next = scan_next(s, (size_t)cur, r.index, r.chain, &rv);

		if (rv != TEEMS_OK)
			return rv;
		if (next < 0)
			break;
		rv = seg_records(s, &s->segs[next], NULL, a->index, &r);
		if (rv != TEEMS_OK)
			return rv;
		cur = next;
		s->segs[cur].on_chain = 1;
		info->segments++;
	}
	info->end.segment = s->segs[cur].number;
	info->end.offset = r.off;
	info->end.index = r.index;
	memcpy(info->end.chain, r.chain, STORE_WAL_CHAIN_LEN);
	info->tail_bytes = s->segs[cur].size - r.off;
	info->ignored_segments = s->nsegs - info->segments;
	if (r.how == SEG_TORN)
		info->stop = STORE_WAL_STOP_TORN;
	else if (r.how == SEG_AUTH)
		info->stop = STORE_WAL_STOP_AUTH;
	else if ((size_t)cur + 1 < s->nsegs)
		info->stop = STORE_WAL_STOP_SPLICE;
	else
		info->stop = STORE_WAL_STOP_CLEAN;
	*end_seg = cur;
	return TEEMS_OK;
}

static void scan_free(struct wal_scan *s)
{
	if (s->have_key)
		tee_aead_free(&s->aead);
	teems_free(s->segs);
	teems_free(s->buf);
	if (s->pt != NULL)
		tee_wipe(s->pt, s->ptcap);
	teems_free(s->pt);
}

/* Writing. */

struct wal_chunk {
	uint64_t seg;
	uint64_t off;
	uint64_t first_index; /* of a segment this chunk creates */
	size_t start, len;
	int create;
};

/* A group of sealed bytes waiting for one write per segment and one fsync. */
struct wal_batch {
	uint8_t *buf;
	size_t len, cap;
	struct wal_chunk *chunks;
	size_t n, ncap;
	struct store_wal_pos end;
};

struct wal_segref {
	uint64_t number;
	uint64_t first_index;
};

struct store_wal {
	struct store_vfs *vfs;
	char *dir;
	uint64_t replica_id;
	uint64_t segment_size;
	store_wal_nonce_fn nonce_hook;
	void *nonce_arg;

	/* Under lock: the sealing state and the pending group. */
	pthread_mutex_t lock;
	uint8_t inc[STORE_WAL_INCARNATION_LEN]; /* this writer's incarnation id */
	uint8_t key[TEE_KEY_LEN];		/* and its subkey */
	struct tee_aead aead;
	uint64_t counter; /* next nonce counter */
	uint64_t seg;	  /* segment the next record goes to */
	uint64_t seg_off;
	uint64_t seg_records;
	uint64_t index; /* last appended */
	uint8_t chain[STORE_WAL_CHAIN_LEN];
	struct wal_batch pend;	  /* the open group, being appended to */
	struct wal_batch *closed; /* closed groups waiting for I/O, oldest first */
	size_t nclosed, capclosed;
	struct wal_batch *idle; /* emptied batches kept for their buffers; capclosed + 2 */
	size_t nidle;
	struct store_wal_pos synced;
	int failed;

	/* Under sync_lock: the I/O side. */
	pthread_mutex_t sync_lock;
	struct store_file *file; /* the segment being written */
	struct wal_segref *segs; /* the chain, oldest first; the last is being written */
	size_t nsegs, capsegs;
	uint64_t *stale; /* our authentic segment files that are not on the chain */
	size_t nstale;
};

static void wal_hook(struct store_wal *w, const uint8_t nonce[TEE_NONCE_LEN])
{
	if (w->nonce_hook != NULL)
		w->nonce_hook(w->nonce_arg, w->key, nonce);
}

/* Seals a header for segment h->number into out (fills h->tag). */
static int wal_seal_header(struct store_wal *w, struct wal_hdr *h,
			   uint8_t out[STORE_WAL_HEADER_LEN])
{
	uint8_t nonce[TEE_NONCE_LEN];

	memset(h->tag, 0, sizeof(h->tag));
	hdr_encode(out, h);
	wal_nonce(nonce, h->counter0);
	wal_hook(w, nonce);
	if (tee_aead_seal(&w->aead, nonce, out, WAL_TAG_OFF, NULL, 0, NULL, h->tag) != TEEMS_OK)
		return TEEMS_ECRYPTO;
	memcpy(out + WAL_TAG_OFF, h->tag, TEE_TAG_LEN);
	return TEEMS_OK;
}

static int batch_reserve(struct wal_batch *b, size_t bytes, size_t chunks)
{
	if (b->len + bytes > b->cap) {
		size_t ncap = b->cap ? b->cap : 65536;
		uint8_t *p;

		while (ncap < b->len + bytes)
			ncap *= 2;
		p = teems_realloc(b->buf, ncap);
		if (p == NULL)
			return TEEMS_ENOMEM;
		b->buf = p;
		b->cap = ncap;
	}
	if (b->n + chunks > b->ncap) {
		size_t ncap = b->ncap ? 2 * b->ncap : 16;
		struct wal_chunk *c;

		while (ncap < b->n + chunks)
			ncap *= 2;
		c = teems_realloc(b->chunks, ncap * sizeof(*c));
		if (c == NULL)
			return TEEMS_ENOMEM;
		b->chunks = c;
		b->ncap = ncap;
	}
	return TEEMS_OK;
}

static void batch_free(struct wal_batch *b)
{
	teems_free(b->buf);
	teems_free(b->chunks);
	*b = (struct wal_batch){0};
}

static struct wal_chunk *batch_chunk(struct wal_batch *b, uint64_t seg, uint64_t off)
{
	struct wal_chunk *c = b->n > 0 ? &b->chunks[b->n - 1] : NULL;

	if (c != NULL && c->seg == seg && c->off + c->len == off)
		return c;
	c = &b->chunks[b->n++];
	*c = (struct wal_chunk){.seg = seg, .off = off, .start = b->len};
	return c;
}

int store_wal_append(struct store_wal *w, const void *data, size_t len, uint64_t *index)
{
	uint8_t ad[WAL_AD_LEN], nonce[TEE_NONCE_LEN];
	size_t rec = STORE_WAL_RECORD_OVERHEAD + len;
	struct wal_chunk *c;
	uint8_t *p;
	int rollover, rv;

	if (len > STORE_WAL_RECORD_MAX || (data == NULL && len > 0))
		return TEEMS_EINVAL;
	pthread_mutex_lock(&w->lock);
	if (w->failed) {
		rv = TEEMS_EIO;
		goto out;
	}
	if (w->counter > UINT64_MAX - 4 || w->index > UINT64_MAX - 4 || w->seg == UINT64_MAX) {
		rv = TEEMS_EFULL;
		goto out;
	}
	/* Roll over by size, but never leave a segment empty: a record larger than the
	 * threshold gets a segment of its own. */
	rollover = w->seg_records > 0 && w->seg_off + rec > w->segment_size;
	rv = batch_reserve(&w->pend, rec + (rollover ? STORE_WAL_HEADER_LEN : 0), 2);
	if (rv != TEEMS_OK)
		goto out;
	if (rollover) {
		struct wal_hdr h = {
			.replica_id = w->replica_id,
			.number = w->seg + 1,
			.first_index = w->index + 1,
			.counter0 = w->counter,
		};

		memcpy(h.inc, w->inc, STORE_WAL_INCARNATION_LEN);
		memcpy(h.prev_chain, w->chain, STORE_WAL_CHAIN_LEN);
		rv = wal_seal_header(w, &h, w->pend.buf + w->pend.len);
		if (rv != TEEMS_OK)
			goto fail;
		c = &w->pend.chunks[w->pend.n++];
		*c = (struct wal_chunk){.seg = h.number,
					.off = 0,
					.first_index = h.first_index,
					.start = w->pend.len,
					.len = STORE_WAL_HEADER_LEN,
					.create = 1};
		w->pend.len += STORE_WAL_HEADER_LEN;
		w->seg = h.number;
		w->seg_off = STORE_WAL_HEADER_LEN;
		w->seg_records = 0;
		w->counter++;
	}
	p = w->pend.buf + w->pend.len;
	put_le32(p, (uint32_t)len);
	rec_ad(ad, w->replica_id, w->seg, w->index + 1, w->seg_off, (uint32_t)len, w->chain);
	wal_nonce(nonce, w->counter);
	wal_hook(w, nonce);
	rv = tee_aead_seal(&w->aead, nonce, ad, sizeof(ad), data, len, p + 4, p + 4 + len);
	if (rv != TEEMS_OK)
		goto fail;
	c = batch_chunk(&w->pend, w->seg, w->seg_off);
	c->len += rec;
	w->pend.len += rec;
	w->counter++;
	w->index++;
	memcpy(w->chain, p + 4 + len, STORE_WAL_CHAIN_LEN);
	w->seg_off += rec;
	w->seg_records++;
	w->pend.end =
		(struct store_wal_pos){.segment = w->seg, .offset = w->seg_off, .index = w->index};
	memcpy(w->pend.end.chain, w->chain, STORE_WAL_CHAIN_LEN);
	if (index != NULL)
		*index = w->index;
	goto out;
fail:
	/* A sealing failure leaves the state half-advanced: refuse everything from now on. */
	w->failed = 1;
	rv = TEEMS_ECRYPTO;
out:
	pthread_mutex_unlock(&w->lock);
	return rv;
}

/* Writes one closed group: each chunk at its offset, a new file per created segment (the
 * previous one synced first, so segments become durable in order). The fsync that makes the
 * group durable comes after, once for all the groups of one run. Called under sync_lock. */
static int wal_write_batch(struct store_wal *w, struct wal_batch *b, int *dir_dirty, char *errbuf)
{
	char path[WAL_PATH_MAX];
	size_t creates = 0;
	int rv = TEEMS_OK;

	for (size_t i = 0; i < b->n; i++)
		creates += b->chunks[i].create;
	if (w->nsegs + creates > w->capsegs) {
		size_t ncap = w->capsegs ? 2 * w->capsegs : 8;
		struct wal_segref *sr;

		while (ncap < w->nsegs + creates)
			ncap *= 2;
		sr = teems_realloc(w->segs, ncap * sizeof(*sr));
		if (sr == NULL)
			return TEEMS_ENOMEM;
		w->segs = sr;
		w->capsegs = ncap;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct wal_chunk *c = &b->chunks[i];

		if (c->create) {
			rv = store_file_sync(w->file);
			if (rv != TEEMS_OK)
				goto io;
			store_file_close(w->file);
			w->file = NULL;
			rv = seg_path(path, w->dir, c->seg);
			if (rv != TEEMS_OK)
				return rv;
			rv = store_vfs_open(w->vfs, path,
					    STORE_OPEN_WRITE | STORE_OPEN_CREATE | STORE_OPEN_EXCL,
					    &w->file);
			if (rv != TEEMS_OK)
				goto io;
			w->segs[w->nsegs++] = (struct wal_segref){c->seg, c->first_index};
			*dir_dirty = 1;
		}
		rv = store_file_write(w->file, b->buf + c->start, c->len, c->off);
		if (rv != TEEMS_OK)
			goto io;
	}
	return TEEMS_OK;
io:
	return teems_errf(errbuf, rv, "wal: writing a segment in %s failed: %s", w->dir,
			  teems_strerror(rv));
}

int store_wal_sync_prepare(struct store_wal *w, uint64_t *upto)
{
	int rv = TEEMS_OK;

	pthread_mutex_lock(&w->lock);
	if (w->failed) {
		rv = TEEMS_EIO;
		goto out;
	}
	if (w->pend.n == 0)
		goto out;
	if (w->nclosed == w->capclosed) {
		size_t ncap = w->capclosed ? 2 * w->capclosed : 4;
		struct wal_batch *c = teems_realloc(w->closed, ncap * sizeof(*c));
		struct wal_batch *i;

		if (c == NULL) {
			rv = TEEMS_ENOMEM;
			goto out;
		}
		w->closed = c;
		i = teems_realloc(w->idle, (ncap + 2) * sizeof(*i));
		if (i == NULL) {
			rv = TEEMS_ENOMEM;
			goto out;
		}
		w->idle = i;
		w->capclosed = ncap;
	}
	w->closed[w->nclosed++] = w->pend;
	/* Reuse an emptied group's buffers: no allocation in the steady state. */
	w->pend = w->nidle > 0 ? w->idle[--w->nidle] : (struct wal_batch){0};
	w->pend.len = 0;
	w->pend.n = 0;
out:
	if (upto != NULL)
		*upto = w->index;
	pthread_mutex_unlock(&w->lock);
	return rv;
}

int store_wal_sync_run(struct store_wal *w, struct store_wal_pos *synced, char *errbuf)
{
	struct store_wal_pos end;
	int dir_dirty = 0, rv = TEEMS_OK;
	size_t groups;

	pthread_mutex_lock(&w->sync_lock);
	pthread_mutex_lock(&w->lock);
	groups = w->nclosed;
	end = w->synced;
	if (w->failed)
		rv = teems_errf(errbuf, TEEMS_EIO, "wal: failed earlier; reopen it");
	pthread_mutex_unlock(&w->lock);
	/* Only the groups closed before this call: a group closed meanwhile waits for the next
	 * run, so each run is exactly the groups its caller knew about. */
	for (size_t k = 0; rv == TEEMS_OK && k < groups; k++) {
		struct wal_batch b;

		pthread_mutex_lock(&w->lock);
		b = w->closed[0];
		memmove(w->closed, w->closed + 1, (w->nclosed - 1) * sizeof(*w->closed));
		w->nclosed--;
		pthread_mutex_unlock(&w->lock);

		rv = wal_write_batch(w, &b, &dir_dirty, errbuf);
		end = b.end;

		pthread_mutex_lock(&w->lock);
		if (w->nidle < w->capclosed + 2) {
			b.len = 0;
			b.n = 0;
			w->idle[w->nidle++] = b;
		} else {
			batch_free(&b);
		}
		pthread_mutex_unlock(&w->lock);
	}
	if (rv == TEEMS_OK && groups > 0) {
		rv = store_file_sync(w->file);
		if (rv == TEEMS_OK && dir_dirty)
			rv = store_vfs_sync_dir(w->vfs, w->dir);
		if (rv != TEEMS_OK)
			rv = teems_errf(errbuf, rv, "wal: syncing %s failed: %s", w->dir,
					teems_strerror(rv));
	}
	pthread_mutex_lock(&w->lock);
	if (rv == TEEMS_OK)
		w->synced = end;
	else
		w->failed = 1;
	if (synced != NULL)
		*synced = w->synced;
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_unlock(&w->sync_lock);
	return rv;
}

int store_wal_sync(struct store_wal *w, struct store_wal_pos *synced, char *errbuf)
{
	int rv = store_wal_sync_prepare(w, NULL);

	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "wal: cannot close the group: %s",
				  teems_strerror(rv));
	return store_wal_sync_run(w, synced, errbuf);
}

static int unlink_seg(struct store_wal *w, uint64_t number)
{
	char path[WAL_PATH_MAX];
	int rv = seg_path(path, w->dir, number);

	if (rv == TEEMS_OK)
		rv = store_vfs_unlink(w->vfs, path);
	return rv == TEEMS_ENOTFOUND ? TEEMS_OK : rv;
}

int store_wal_compact(struct store_wal *w, uint64_t before_index, char *errbuf)
{
	size_t drop = 0, keep_stale = 0;
	int rv = TEEMS_OK;

	pthread_mutex_lock(&w->sync_lock);
	/* A chain segment is covered when the next one starts at or below before_index + 1.
	 * The last one is being written and always stays. */
	while (drop + 1 < w->nsegs && w->segs[drop + 1].first_index - 1 <= before_index) {
		rv = unlink_seg(w, w->segs[drop].number);
		if (rv != TEEMS_OK)
			break;
		drop++;
	}
	memmove(w->segs, w->segs + drop, (w->nsegs - drop) * sizeof(*w->segs));
	w->nsegs -= drop;
	for (size_t i = 0; i < w->nstale; i++) {
		if (rv == TEEMS_OK && w->stale[i] < w->segs[0].number) {
			rv = unlink_seg(w, w->stale[i]);
			if (rv == TEEMS_OK) {
				drop++;
				continue;
			}
		}
		w->stale[keep_stale++] = w->stale[i];
	}
	w->nstale = keep_stale;
	if (drop > 0) {
		int r2 = store_vfs_sync_dir(w->vfs, w->dir);

		if (rv == TEEMS_OK)
			rv = r2;
	}
	pthread_mutex_unlock(&w->sync_lock);
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "wal: compaction in %s failed: %s", w->dir,
				  teems_strerror(rv));
	return TEEMS_OK;
}

void store_wal_position(struct store_wal *w, struct store_wal_pos *appended,
			struct store_wal_pos *synced)
{
	pthread_mutex_lock(&w->lock);
	if (appended != NULL) {
		*appended = (struct store_wal_pos){
			.segment = w->seg, .offset = w->seg_off, .index = w->index};
		memcpy(appended->chain, w->chain, STORE_WAL_CHAIN_LEN);
	}
	if (synced != NULL)
		*synced = w->synced;
	pthread_mutex_unlock(&w->lock);
}

void store_wal_close(struct store_wal *w)
{
	if (w == NULL)
		return;
	store_file_close(w->file);
	if (w->aead.ctx != NULL)
		tee_aead_free(&w->aead);
	tee_wipe(w->key, sizeof(w->key));
	batch_free(&w->pend);
	for (size_t i = 0; i < w->nclosed; i++)
		batch_free(&w->closed[i]);
	for (size_t i = 0; i < w->nidle; i++)
		batch_free(&w->idle[i]);
	teems_free(w->closed);
	teems_free(w->idle);
	teems_free(w->segs);
	teems_free(w->stale);
	teems_free(w->dir);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->sync_lock);
	teems_free(w);
}

/* Open for writing: see wal.h. Runs after the scan; s->segs says which segments are on the
 * chain and end_seg which one holds the end of the valid prefix. */
static int wal_start(struct store_wal *w, struct wal_scan *s, long end_seg,
		     const struct store_wal_info *info, const struct store_wal_opts *opts,
		     char *errbuf)
{
	uint8_t raw[STORE_WAL_HEADER_LEN];
	char path[WAL_PATH_MAX];
	struct store_file *f = NULL;
	struct wal_hdr h = {0};
	uint64_t number = info->end.segment;
	int rv;

	w->segs = teems_calloc(info->segments + 8, sizeof(*w->segs));
	w->capsegs = info->segments + 8;
	w->stale = teems_calloc(s->nsegs + 1, sizeof(*w->stale));
	if (w->segs == NULL || w->stale == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < s->nsegs; i++) {
		struct wal_seg *seg = &s->segs[i];

		if (seg->number > number)
			number = seg->number;
		if (!seg->on_chain) {
			/* Our own abandoned segments (a discarded tail, a rolled-back branch) may
			 * go at compaction; a file we cannot authenticate is never ours to delete.
			 */
			rv = seg_header(s, seg);
			if (rv != TEEMS_OK)
				return rv;
			if (seg->state == 1)
				w->stale[w->nstale++] = seg->number;
			continue;
		}
		w->segs[w->nsegs++] = (struct wal_segref){seg->number, seg->h.first_index};
		/* Cut the invalid tail off the last segment of the prefix, so that what follows
		 * the prefix is only ever our new segment. */
		rv = seg_path(path, w->dir, seg->number);
		if (rv != TEEMS_OK)
			return rv;
		if ((long)i == end_seg && info->tail_bytes > 0) {
			rv = store_vfs_open(w->vfs, path, STORE_OPEN_WRITE, &f);
			if (rv == TEEMS_OK)
				rv = store_file_truncate(f, info->end.offset);
		} else {
			rv = store_vfs_open(w->vfs, path, 0, &f);
		}
		/* The prefix may have been read from the page cache of a crashed writer: make it
		 * durable before anything is chained to it. */
		if (rv == TEEMS_OK)
			rv = store_file_sync(f);
		store_file_close(f);
		f = NULL;
		if (rv != TEEMS_OK)
			return teems_errf(errbuf, rv, "wal: cannot sync %s: %s", path,
					  teems_strerror(rv));
	}
	if (number == UINT64_MAX)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "wal: segment numbers exhausted in %s",
				  w->dir);
	h.replica_id = w->replica_id;
	h.number = number + 1;
	h.first_index = info->end.index + 1;
	h.counter0 = 0;
	memcpy(h.prev_chain, info->end.chain, STORE_WAL_CHAIN_LEN);
	if (opts->test_incarnation != NULL)
		memcpy(h.inc, opts->test_incarnation, STORE_WAL_INCARNATION_LEN);
	else if ((rv = tee_random(h.inc, sizeof(h.inc))) != TEEMS_OK)
		return rv;
	memcpy(w->inc, h.inc, STORE_WAL_INCARNATION_LEN);
	rv = wal_derive(opts->root_key, h.inc, w->key);
	if (rv != TEEMS_OK)
		return rv;
	rv = tee_aead_init(&w->aead, w->key);
	if (rv != TEEMS_OK)
		return rv;
	rv = wal_seal_header(w, &h, raw);
	if (rv != TEEMS_OK)
		return rv;
	rv = seg_path(path, w->dir, h.number);
	if (rv != TEEMS_OK)
		return rv;
	rv = store_vfs_open(w->vfs, path, STORE_OPEN_WRITE | STORE_OPEN_CREATE | STORE_OPEN_EXCL,
			    &w->file);
	if (rv == TEEMS_OK)
		rv = store_file_write(w->file, raw, sizeof(raw), 0);
	if (rv == TEEMS_OK)
		rv = store_file_sync(w->file);
	if (rv == TEEMS_OK)
		rv = store_vfs_sync_dir(w->vfs, w->dir);
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "wal: cannot create %s: %s", path,
				  teems_strerror(rv));
	w->segs[w->nsegs++] = (struct wal_segref){h.number, h.first_index};
	w->counter = 1;
	w->seg = h.number;
	w->seg_off = STORE_WAL_HEADER_LEN;
	w->seg_records = 0;
	w->index = info->end.index;
	memcpy(w->chain, info->end.chain, STORE_WAL_CHAIN_LEN);
	w->synced =
		(struct store_wal_pos){.segment = w->seg, .offset = w->seg_off, .index = w->index};
	memcpy(w->synced.chain, w->chain, STORE_WAL_CHAIN_LEN);
	w->pend.end = w->synced;
	return TEEMS_OK;
}

int store_wal_open(struct store_vfs *vfs, const char *dir, const struct store_wal_opts *opts,
		   struct store_wal **out, struct store_wal_info *info, char *errbuf)
{
	struct wal_scan s = {0};
	struct store_wal_info tmp;
	struct store_wal_pos genesis = {0};
	struct store_wal *w = NULL;
	long end_seg;
	size_t dlen;
	int rv;

	if (info == NULL)
		info = &tmp;
	if (vfs == NULL || dir == NULL || opts == NULL || opts->root_key == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "wal: missing vfs, dir or root key");
	dlen = strlen(dir);
	if (dlen == 0 || dlen > WAL_DIR_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "wal: bad directory name");
	if (opts->segment_size != 0 && (opts->segment_size < STORE_WAL_SEGMENT_MIN ||
					opts->segment_size > STORE_WAL_SEGMENT_MAX))
		return teems_errf(errbuf, TEEMS_EINVAL, "wal: segment size out of range");
	s.vfs = vfs;
	s.dir = dir;
	s.replica_id = opts->replica_id;
	s.root_key = opts->root_key;
	s.on_record = opts->on_record;
	s.arg = opts->arg;
	s.errbuf = errbuf;
	rv = scan_list(&s);
	if (rv != TEEMS_OK)
		goto out;
	rv = scan_run(&s, opts->anchor != NULL ? opts->anchor : &genesis, info, &end_seg);
	if (rv != TEEMS_OK)
		goto out;
	info->records = s.delivered;
	if (out == NULL)
		goto out;

	w = teems_calloc(1, sizeof(*w));
	if (w == NULL) {
		rv = TEEMS_ENOMEM;
		goto out;
	}
	w->dir = teems_malloc(dlen + 1);
	if (w->dir == NULL) {
		teems_free(w);
		w = NULL;
		rv = TEEMS_ENOMEM;
		goto out;
	}
	memcpy(w->dir, dir, dlen + 1);
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->sync_lock, NULL);
	w->vfs = vfs;
	w->replica_id = opts->replica_id;
	w->segment_size = opts->segment_size ? opts->segment_size : STORE_WAL_SEGMENT_DEFAULT;
	w->nonce_hook = opts->nonce_hook;
	w->nonce_arg = opts->nonce_arg;
	rv = wal_start(w, &s, end_seg, info, opts, errbuf);
	if (rv != TEEMS_OK) {
		store_wal_close(w);
		goto out;
	}
	*out = w;
out:
	scan_free(&s);
	return rv;
}

static int first_record(void *arg, uint64_t index, const void *data, size_t len)
{
	(void)data;
	(void)len;
	*(uint64_t *)arg = index;
	return 1; /* enough: stop reading */
}

int store_wal_starts_at_genesis(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
				const uint8_t *root_key, bool *yes, char *errbuf)
{
	struct store_wal_opts o = {.replica_id = replica_id, .root_key = root_key};
	uint64_t first = 0;
	int rc;

	o.on_record = first_record;
	o.arg = &first;
	rc = store_wal_open(vfs, dir, &o, NULL, NULL, errbuf);
	*yes = rc >= 0 && first == 1;
	return rc < 0 ? rc : TEEMS_OK;
}
