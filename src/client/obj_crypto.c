/* Chunked object encryption: see obj_crypto.h for the format and docs/OBJECTS.md for the
 * threat model it answers. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "client/obj_crypto.h"
#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

#define HDR_MAC_OFF 64
#define AD_LEN (TEE_SHA256_LEN + 8 + 4 + 8 + 8 + 1)

uint64_t obj_blob_size(uint64_t size, uint32_t chunk_size)
{
	uint64_t n, tags;

	if (chunk_size < OBJ_CHUNK_MIN || chunk_size > OBJ_CHUNK_MAX)
		return 0;
	n = size == 0 ? 1 : size / chunk_size + (size % chunk_size != 0);
	tags = n * TEE_TAG_LEN;
	if (size > UINT64_MAX - OBJ_HEADER_LEN - tags)
		return 0;
	return OBJ_HEADER_LEN + size + tags;
}

int obj_new_object_key(uint8_t object_key[TEE_KEY_LEN])
{
	return tee_random(object_key, TEE_KEY_LEN);
}

size_t obj_crypto_buffer_size(uint32_t chunk_size)
{
	size_t n = (size_t)chunk_size + TEE_TAG_LEN;

	return n < OBJ_HEADER_LEN ? OBJ_HEADER_LEN : n;
}

/* The part of the state an encryptor and a decryptor share. */
struct chunker {
	uint8_t id_digest[TEE_SHA256_LEN];
	uint64_t version;
	uint32_t chunk_size;
	uint64_t size;
	uint64_t n_chunks;
	uint64_t next_chunk; /* index of the next chunk to seal or open */
	struct tee_aead aead;
	int aead_ready;
	uint8_t *buf; /* obj_crypto_buffer_size(chunk_size) bytes */
	size_t buf_len;
};

static uint64_t chunk_len(const struct chunker *c, uint64_t i)
{
	return i + 1 < c->n_chunks ? c->chunk_size : c->size - (c->n_chunks - 1) * c->chunk_size;
}

static void chunk_nonce_ad(const struct chunker *c, uint64_t i, uint8_t nonce[TEE_NONCE_LEN],
			   uint8_t ad[AD_LEN])
{
	memset(nonce, 0, 4);
	put_le64(nonce + 4, i);
	memcpy(ad, c->id_digest, TEE_SHA256_LEN);
	put_le64(ad + 32, c->version);
	put_le32(ad + 40, c->chunk_size);
	put_le64(ad + 44, c->size);
	put_le64(ad + 52, i);
	ad[60] = i + 1 == c->n_chunks;
}

static int header_mac(const uint8_t object_key[TEE_KEY_LEN], const uint8_t *hdr,
		      uint8_t mac[TEE_SHA256_LEN])
{
	unsigned int len = 0;

	if (HMAC(EVP_sha256(), object_key, TEE_KEY_LEN, hdr, HDR_MAC_OFF, mac, &len) == NULL ||
	    len != TEE_SHA256_LEN)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

/* The record buffer holds one sealed chunk, or the header, whichever is larger; an object
 * smaller than a chunk needs no more than its own size (a 4 KiB object does not touch a 1 MiB
 * buffer). */
static size_t record_buffer_size(const struct obj_meta *meta)
{
	size_t n = obj_crypto_buffer_size(meta->chunk_size);

	if (meta->size < meta->chunk_size && (size_t)meta->size + TEE_TAG_LEN < n)
		n = (size_t)meta->size + TEE_TAG_LEN;
	return n < OBJ_HEADER_LEN ? OBJ_HEADER_LEN : n;
}

static int chunker_init(struct chunker *c, const struct obj_meta *meta, const void *object_id,
			size_t object_id_len, char *errbuf)
{
	memset(c, 0, sizeof(*c));
	if (obj_blob_size(meta->size, meta->chunk_size) == 0)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "object size %llu or chunk size %u out of range",
				  (unsigned long long)meta->size, meta->chunk_size);
	tee_sha256(object_id, object_id_len, c->id_digest);
	c->version = meta->version;
	c->chunk_size = meta->chunk_size;
	c->size = meta->size;
	c->n_chunks = meta->size == 0 ? 1 : (meta->size + meta->chunk_size - 1) / meta->chunk_size;
	c->buf_len = record_buffer_size(meta);
	c->buf = teems_malloc(c->buf_len);
	if (c->buf == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: out of memory");
	return TEEMS_OK;
}

static void chunker_free(struct chunker *c)
{
	if (c->aead_ready)
		tee_aead_free(&c->aead);
	if (c->buf != NULL) {
		tee_wipe(c->buf, c->buf_len);
		teems_free(c->buf);
	}
	tee_wipe(c, sizeof(*c));
}

static EVP_MD_CTX *sha256_new(void)
{
	EVP_MD_CTX *h = EVP_MD_CTX_new();

	if (h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h);
		h = NULL;
	}
	return h;
}

static int hash_update(EVP_MD_CTX *h, const void *p, size_t len)
{
	return len == 0 || EVP_DigestUpdate(h, p, len) == 1 ? TEEMS_OK : TEEMS_ECRYPTO;
}

static int hash_final(EVP_MD_CTX *h, uint8_t out[TEE_SHA256_LEN])
{
	unsigned int len = 0;

	return EVP_DigestFinal_ex(h, out, &len) == 1 && len == TEE_SHA256_LEN ? TEEMS_OK
									      : TEEMS_ECRYPTO;
}

/* ------------------------------------------------------------------ chunk worker */

/* Buffers in flight between a caller and its worker thread: the worker may run up to
 * RING - 1 chunks behind the caller before the caller waits for it. Two: in both uses the two
 * threads do about the same work per chunk, and four buffers measured no faster here while
 * costing 2 MiB more memory (and their first-touch page faults). */
#define RING 2

/* A second thread that applies fn to chunks in the order they are handed over, so that a put or
 * a get of a multi-chunk object uses two cores:
 * - put: SHA-256 of the plaintext (pt_sha256). It adds nothing to security (every chunk is
 *   authenticated by GCM); it is the content digest `teems obj put` and `stat` report. At
 *   ~1.3 GB/s it would cost a 16 MiB put about 12 ms on the encrypting thread, so it runs beside
 *   it, over the same bytes, which the encryptor reads once into a ring of RING plaintext
 *   buffers and seals out of place (no second read of the data).
 * - get: AES-GCM open, in place, while the caller's thread reads the next record and writes
 *   out the previous plaintext. The source and the sink are called from the caller's thread
 *   only, so a library user's callbacks never run on ours.
 * The caller never refills a buffer before the worker is done with it. After the first failure
 * the worker skips what it is given and reports that failure for it. */
struct chunk_worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int (*fn)(void *arg, uint64_t index, uint8_t *p, size_t n);
	void *arg;
	uint8_t *buf[RING];
	size_t len[RING];
	/* What fn returned for chunk i, in status[i % RING]: written by the worker before it
	 * counts the chunk done, read by the caller after, and not written again before the caller
	 * hands over chunk i + RING. */
	int status[RING];
	uint64_t submitted; /* chunks handed over */
	uint64_t done;	    /* chunks the worker is finished with */
	bool quit;
	int err; /* the first failure: the worker's own; the caller reads it once all is done */
};

static void *worker_main(void *arg)
{
	struct chunk_worker *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		uint64_t i;
		int rc;

		while (w->done == w->submitted && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->done == w->submitted)
			break;
		i = w->done;
		pthread_mutex_unlock(&w->mu);
		rc = w->err;
		if (rc == TEEMS_OK &&
		    (rc = w->fn(w->arg, i, w->buf[i % RING], w->len[i % RING])) != TEEMS_OK)
			w->err = rc;
		w->status[i % RING] = rc;
		pthread_mutex_lock(&w->mu);
		w->done++;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Waits until the worker is finished with at least `count` chunks. */
static void worker_wait(struct chunk_worker *w, uint64_t count)
{
	pthread_mutex_lock(&w->mu);
	while (w->done < count)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* Hands over the next chunk: the caller must have waited for the one RING before it. */
static void worker_submit(struct chunk_worker *w, uint8_t *p, size_t n)
{
	pthread_mutex_lock(&w->mu);
	w->buf[w->submitted % RING] = p;
	w->len[w->submitted % RING] = n;
	w->submitted++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Starts the thread. Returns false, with nothing to undo, if it cannot be started: the caller
 * then does the work inline. */
static bool worker_start(struct chunk_worker *w,
			 int (*fn)(void *arg, uint64_t index, uint8_t *p, size_t n), void *arg)
{
	memset(w, 0, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		return false;
	if (pthread_cond_init(&w->cv, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		return false;
	}
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		return false;
	}
	return true;
}

/* Lets the thread finish what it was given, then joins it. */
static void worker_stop(struct chunk_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

static int hash_chunk(void *arg, uint64_t index, uint8_t *p, size_t n)
{
	(void)index;
	return hash_update(arg, p, n);
}

/* ------------------------------------------------------------------ encryption */

struct obj_enc {
	struct chunker c;
	struct obj_meta *meta;
	struct obj_src plaintext;
	EVP_MD_CTX *pt_hash; /* pt_sha256 */
	EVP_MD_CTX *bd_hash; /* blob_digest: the header and every tag */
	/* With more than one chunk, pt_sha256 is computed by a second thread (struct
	 * chunk_worker) and chunk k is read into pt[k % RING], then sealed out of place into
	 * c.buf. With one chunk it is read into c.buf, hashed and sealed in place; if the thread
	 * cannot be started, the ring is used and hashed inline. */
	struct chunk_worker hasher;
	bool threaded;
	uint8_t *pt[RING];
	int header_done;
	int eof; /* the whole blob has been handed out */
	int err; /* sticky */
	char errmsg[TEEMS_ERRBUF_LEN];
	size_t out_pos; /* bytes of buf already handed out */
	size_t out_len; /* bytes of buf holding output */
};

int obj_enc_new(struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *plaintext, struct obj_enc **out, char *errbuf)
{
	struct obj_enc *enc;
	int rc;

	*out = NULL;
	if (meta->chunk_size == 0)
		meta->chunk_size = OBJ_CHUNK_DEFAULT;
	enc = teems_calloc(1, sizeof(*enc));
	if (enc == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: out of memory");
	rc = chunker_init(&enc->c, meta, object_id, object_id_len, errbuf);
	if (rc != TEEMS_OK)
		goto fail;
	enc->pt_hash = sha256_new();
	enc->bd_hash = sha256_new();
	if (enc->pt_hash == NULL || enc->bd_hash == NULL) {
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: SHA-256 init failed");
		goto fail;
	}
	if (enc->c.n_chunks > 1) {
		for (int i = 0; i < RING; i++) {
			enc->pt[i] = teems_malloc(enc->c.chunk_size);
			if (enc->pt[i] == NULL) {
				rc = teems_errf(errbuf, TEEMS_ENOMEM,
						"object crypto: out of memory");
				goto fail;
			}
		}
		enc->threaded = worker_start(&enc->hasher, hash_chunk, enc->pt_hash);
	}
	rc = tee_random(meta->data_key, TEE_KEY_LEN);
	if (rc != TEEMS_OK) {
		teems_errf(errbuf, rc, "random data key: %s", teems_strerror(rc));
		goto fail;
	}
	rc = tee_aead_init(&enc->c.aead, meta->data_key);
	if (rc != TEEMS_OK) {
		teems_errf(errbuf, rc, "AES-256-GCM init: %s", teems_strerror(rc));
		goto fail;
	}
	enc->c.aead_ready = 1;
	enc->meta = meta;
	enc->plaintext = *plaintext;
	*out = enc;
	return TEEMS_OK;
fail:
	obj_enc_free(enc);
	return rc;
}

void obj_enc_free(struct obj_enc *enc)
{
	if (enc == NULL)
		return;
	if (enc->threaded)
		worker_stop(&enc->hasher);
	for (uint64_t i = 0; i < RING; i++) {
		if (enc->pt[i] == NULL)
			continue;
		if (i < enc->c.n_chunks) /* never touched otherwise */
			tee_wipe(enc->pt[i], enc->c.chunk_size);
		teems_free(enc->pt[i]);
	}
	EVP_MD_CTX_free(enc->pt_hash);
	EVP_MD_CTX_free(enc->bd_hash);
	chunker_free(&enc->c);
	teems_free(enc);
}

static int enc_fail(struct obj_enc *enc, int rc, char *errbuf)
{
	enc->err = rc;
	if (errbuf != NULL)
		memcpy(enc->errmsg, errbuf, TEEMS_ERRBUF_LEN);
	else
		snprintf(enc->errmsg, sizeof(enc->errmsg), "%s", teems_strerror(rc));
	return rc;
}

/* Produces the next record (header or sealed chunk) into buf. Sets enc->eof at the end. */
static int enc_next(struct obj_enc *enc, char *errbuf)
{
	struct chunker *c = &enc->c;
	uint8_t nonce[TEE_NONCE_LEN], ad[AD_LEN];
	uint8_t *in;
	uint64_t want;
	size_t got = 0;
	int rc;

	if (!enc->header_done) {
		uint8_t *h = c->buf;

		memcpy(h, OBJ_MAGIC, 8);
		put_le16(h + 8, OBJ_FORMAT_VERSION);
		put_le16(h + 10, 0);
		put_le32(h + 12, c->chunk_size);
		memcpy(h + 16, c->id_digest, TEE_SHA256_LEN);
		put_le64(h + 48, c->version);
		put_le64(h + 56, c->size);
		if (header_mac(enc->meta->object_key, h, h + HDR_MAC_OFF) != TEEMS_OK)
			return teems_errf(errbuf, TEEMS_ECRYPTO, "HMAC-SHA256 failed");
		if (hash_update(enc->bd_hash, h, OBJ_HEADER_LEN) != TEEMS_OK)
			return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed");
		enc->header_done = 1;
		enc->out_len = OBJ_HEADER_LEN;
		enc->out_pos = 0;
		return TEEMS_OK;
	}
	if (c->next_chunk == c->n_chunks) {
		uint8_t extra;

		/* The source must end exactly at the declared size: more would be silently lost. */
		rc = enc->plaintext.read(enc->plaintext.arg, &extra, 1, &got, errbuf);
		if (rc != TEEMS_OK)
			return rc;
		if (got != 0)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "plaintext is longer than the declared %llu bytes",
					  (unsigned long long)c->size);
		enc->eof = 1;
		enc->out_len = enc->out_pos = 0;
		return TEEMS_OK;
	}
	want = chunk_len(c, c->next_chunk);
	in = enc->pt[0] != NULL ? enc->pt[c->next_chunk % RING] : c->buf;
	/* pt[k % RING] last held chunk k - RING: the hasher must be past it. */
	if (enc->threaded && c->next_chunk >= RING)
		worker_wait(&enc->hasher, c->next_chunk - RING + 1);
	rc = obj_read_full(&enc->plaintext, in, (size_t)want, &got, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (got != want)
		return teems_errf(errbuf, TEEMS_EIO,
				  "plaintext ended after %llu of the declared %llu bytes",
				  (unsigned long long)(c->next_chunk * c->chunk_size + got),
				  (unsigned long long)c->size);
	if (enc->threaded)
		worker_submit(&enc->hasher, in, got);
	else if (hash_update(enc->pt_hash, in, got) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed");
	chunk_nonce_ad(c, c->next_chunk, nonce, ad);
	rc = tee_aead_seal(&c->aead, nonce, ad, sizeof(ad), in, got, c->buf, c->buf + got);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "AES-256-GCM seal failed");
	if (hash_update(enc->bd_hash, c->buf + got, TEE_TAG_LEN) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed");
	c->next_chunk++;
	enc->out_len = got + TEE_TAG_LEN;
	enc->out_pos = 0;
	return TEEMS_OK;
}

/* Makes sure buf holds unread output, unless the blob is complete. */
static int enc_fill(struct obj_enc *enc, char *errbuf)
{
	int rc;

	if (enc->err != TEEMS_OK)
		return teems_errf(errbuf, enc->err, "%s", enc->errmsg);
	while (enc->out_pos == enc->out_len && !enc->eof) {
		rc = enc_next(enc, errbuf);
		if (rc != TEEMS_OK)
			return enc_fail(enc, rc, errbuf);
	}
	return TEEMS_OK;
}

static int enc_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct obj_enc *enc = arg;
	size_t n;
	int rc;

	*got = 0;
	rc = enc_fill(enc, errbuf);
	if (rc != TEEMS_OK || enc->eof)
		return rc;
	n = enc->out_len - enc->out_pos;
	if (n > cap)
		n = cap;
	memcpy(buf, enc->c.buf + enc->out_pos, n);
	enc->out_pos += n;
	*got = n;
	return TEEMS_OK;
}

int obj_enc_next(struct obj_enc *enc, const uint8_t **p, size_t *len, char *errbuf)
{
	int rc = enc_fill(enc, errbuf);

	*p = NULL;
	*len = 0;
	if (rc != TEEMS_OK || enc->eof)
		return rc;
	*p = enc->c.buf + enc->out_pos;
	*len = enc->out_len - enc->out_pos;
	enc->out_pos = enc->out_len;
	return TEEMS_OK;
}

static int enc_borrow(void *arg, const uint8_t **p, size_t *len, char *errbuf)
{
	return obj_enc_next(arg, p, len, errbuf);
}

struct obj_src obj_enc_src(struct obj_enc *enc)
{
	return (struct obj_src){.read = enc_read, .arg = enc, .borrow = enc_borrow};
}

int obj_enc_finish(struct obj_enc *enc, char *errbuf)
{
	struct obj_meta *m = enc->meta;
	int rc;

	/* A consumer that knows the blob's length (curl with Content-Length) stops reading
	 * after the last byte, before the source's end has been checked: check it here. */
	if (enc->err == TEEMS_OK && !enc->eof && enc->header_done &&
	    enc->c.next_chunk == enc->c.n_chunks && enc->out_pos == enc->out_len) {
		rc = enc_next(enc, errbuf);
		if (rc != TEEMS_OK)
			return enc_fail(enc, rc, errbuf);
	}
	if (enc->err != TEEMS_OK)
		return teems_errf(errbuf, enc->err, "%s", enc->errmsg);
	if (!enc->eof)
		return teems_errf(errbuf, TEEMS_EINVAL, "the blob has not been read to its end");
	if (enc->threaded) {
		worker_wait(&enc->hasher, enc->hasher.submitted);
		if (enc->hasher.err != TEEMS_OK)
			return enc_fail(enc, teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed"),
					errbuf);
	}
	if (hash_final(enc->pt_hash, m->pt_sha256) != TEEMS_OK ||
	    hash_final(enc->bd_hash, m->blob_digest) != TEEMS_OK)
		return enc_fail(enc, teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed"), errbuf);
	m->blob_size = obj_blob_size(m->size, m->chunk_size);
	enc->err = TEEMS_EINVAL; /* finish once */
	snprintf(enc->errmsg, sizeof(enc->errmsg), "the encryptor has already finished");
	return TEEMS_OK;
}

int obj_encrypt(struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *plaintext, const struct obj_sink *blob, char *errbuf)
{
	struct obj_enc *enc;
	int rc;

	rc = obj_enc_new(meta, object_id, object_id_len, plaintext, &enc, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	/* Hand the sink whole records straight out of the encryptor's buffer: no copy. */
	for (;;) {
		const uint8_t *p;
		size_t n;

		rc = obj_enc_next(enc, &p, &n, errbuf);
		if (rc != TEEMS_OK || n == 0)
			break;
		rc = blob->write(blob->arg, p, n, errbuf);
		if (rc != TEEMS_OK)
			break;
	}
	if (rc == TEEMS_OK)
		rc = obj_enc_finish(enc, errbuf);
	obj_enc_free(enc);
	return rc;
}

/* ------------------------------------------------------------------ decryption */

struct obj_dec {
	struct chunker c;
	const struct obj_meta *meta;
	struct obj_sink plaintext;
	uint8_t header[OBJ_HEADER_LEN];
	size_t header_have;
	size_t have; /* bytes of the chunk record being gathered */
	uint64_t total_in;
	int err;
	char errmsg[TEEMS_ERRBUF_LEN];
	/* A blob of more than one chunk is opened on a second thread (struct chunk_worker):
	 * chunk k is gathered (dec_write) or read (dec_pull) into rec[k % RING], opened there in
	 * place by the worker, and passed on by this thread once chunk k + 1 is in, while the
	 * worker opens that one. The source and the sink are only ever called from the caller's
	 * thread. Chunks c.next_chunk .. worker.submitted - 1 are with the worker. Without the
	 * thread (one chunk, or it could not be started) chunks are opened inline from c.buf. */
	struct chunk_worker worker;
	bool threaded;
	bool inline_only;   /* the thread was tried once */
	uint8_t *rec[RING]; /* rec[0] is c.buf */
};

int obj_dec_new(const struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_sink *plaintext, struct obj_dec **out, char *errbuf)
{
	struct obj_dec *dec;
	int rc;

	*out = NULL;
	dec = teems_calloc(1, sizeof(*dec));
	if (dec == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: out of memory");
	rc = chunker_init(&dec->c, meta, object_id, object_id_len, errbuf);
	if (rc != TEEMS_OK)
		goto fail;
	rc = tee_aead_init(&dec->c.aead, meta->data_key);
	if (rc != TEEMS_OK) {
		teems_errf(errbuf, rc, "AES-256-GCM init: %s", teems_strerror(rc));
		goto fail;
	}
	dec->c.aead_ready = 1;
	dec->meta = meta;
	dec->plaintext = *plaintext;
	dec->rec[0] = dec->c.buf;
	*out = dec;
	return TEEMS_OK;
fail:
	obj_dec_free(dec);
	return rc;
}

void obj_dec_free(struct obj_dec *dec)
{
	if (dec == NULL)
		return;
	if (dec->threaded)
		worker_stop(&dec->worker);
	for (int i = 1; i < RING; i++) {
		if (dec->rec[i] == NULL)
			continue;
		tee_wipe(dec->rec[i], dec->c.buf_len);
		teems_free(dec->rec[i]);
	}
	chunker_free(&dec->c);
	teems_free(dec);
}

static int dec_fail(struct obj_dec *dec, int rc, char *errbuf, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int dec_fail(struct obj_dec *dec, int rc, char *errbuf, const char *fmt, ...)
{
	va_list ap;

	dec->err = rc;
	va_start(ap, fmt);
	vsnprintf(dec->errmsg, sizeof(dec->errmsg), fmt, ap);
	va_end(ap);
	return teems_errf(errbuf, rc, "%s", dec->errmsg);
}

/* The header is complete: decide what this blob is. The format version and the claimed object
 * version are read before the MAC is checked only to choose the message; every verdict other
 * than "not a teems blob" rests on the MAC under the object's key. */
static int dec_header(struct obj_dec *dec, char *errbuf)
{
	const uint8_t *h = dec->header;
	const struct chunker *c = &dec->c;
	uint8_t mac[TEE_SHA256_LEN];
	uint64_t version, size;
	uint32_t chunk_size;

	if (memcmp(h, OBJ_MAGIC, 8) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf, "not a teems object blob (bad magic)");
	if (get_le16(h + 8) != OBJ_FORMAT_VERSION || get_le16(h + 10) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"unknown blob format %u flags %u (header altered?)",
				get_le16(h + 8), get_le16(h + 10));
	if (header_mac(dec->meta->object_key, h, mac) != TEEMS_OK)
		return dec_fail(dec, TEEMS_ECRYPTO, errbuf, "HMAC-SHA256 failed");
	if (tee_memcmp_ct(mac, h + HDR_MAC_OFF, TEE_SHA256_LEN) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"blob header does not authenticate under this object's key");
	if (memcmp(h + 16, c->id_digest, TEE_SHA256_LEN) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf, "blob belongs to another object");
	version = get_le64(h + 48);
	if (version < c->version)
		return dec_fail(dec, OBJ_ESTALE, errbuf,
				"blob is version %llu of this object, the metadata says %llu",
				(unsigned long long)version, (unsigned long long)c->version);
	if (version > c->version)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"blob claims version %llu, newer than the metadata's %llu",
				(unsigned long long)version, (unsigned long long)c->version);
	chunk_size = get_le32(h + 12);
	size = get_le64(h + 56);
	if (chunk_size != c->chunk_size || size != c->size)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"blob header (size %llu, chunk %u) disagrees with the metadata "
				"(size %llu, chunk %u)",
				(unsigned long long)size, chunk_size, (unsigned long long)c->size,
				c->chunk_size);
	return TEEMS_OK;
}

/* Opens chunk `index` (rec_len bytes: ciphertext and tag) from rec into out, which may be rec. */
static int open_chunk(struct chunker *c, uint64_t index, const uint8_t *rec, size_t rec_len,
		      uint8_t *out)
{
	uint8_t nonce[TEE_NONCE_LEN], ad[AD_LEN];
	size_t len = rec_len - TEE_TAG_LEN;

	chunk_nonce_ad(c, index, nonce, ad);
	return tee_aead_open(&c->aead, nonce, ad, sizeof(ad), rec, len, rec + len, out);
}

static int open_fail(struct obj_dec *dec, int rc, uint64_t index, char *errbuf)
{
	if (rc == TEEMS_EAUTH)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"chunk %llu of %llu does not authenticate",
				(unsigned long long)index, (unsigned long long)dec->c.n_chunks);
	return dec_fail(dec, rc, errbuf, "AES-256-GCM open failed");
}

/* Passes on the plaintext of the next chunk (opened into p). */
static int emit_chunk(struct obj_dec *dec, const uint8_t *p, size_t len, char *errbuf)
{
	int rc = dec->plaintext.write(dec->plaintext.arg, p, len, errbuf);

	if (rc != TEEMS_OK) {
		dec->err = rc;
		snprintf(dec->errmsg, sizeof(dec->errmsg), "%s",
			 errbuf != NULL ? errbuf : teems_strerror(rc));
		return rc;
	}
	dec->c.next_chunk++;
	return TEEMS_OK;
}

/* Opens the chunk record rec (len bytes: ciphertext and tag) into buf and passes the plaintext
 * on. rec is either buf itself (a record reassembled from pieces) or the caller's bytes (a
 * whole record in one write: opened out of place, no copy). */
static int dec_chunk(struct obj_dec *dec, const uint8_t *rec, size_t rec_len, char *errbuf)
{
	struct chunker *c = &dec->c;
	int rc = open_chunk(c, c->next_chunk, rec, rec_len, c->buf);

	if (rc != TEEMS_OK)
		return open_fail(dec, rc, c->next_chunk, errbuf);
	dec->have = 0;
	return emit_chunk(dec, c->buf, rec_len - TEE_TAG_LEN, errbuf);
}

static int open_in_place(void *arg, uint64_t index, uint8_t *p, size_t n)
{
	return open_chunk(arg, index, p, n, p);
}

/* Starts the opener thread for a blob of more than one chunk, once; false: open inline. */
static bool dec_thread(struct obj_dec *dec)
{
	if (dec->threaded)
		return true;
	if (dec->inline_only || dec->c.n_chunks < 2)
		return false;
	dec->inline_only = true;
	for (int i = 1; i < RING; i++)
		if ((dec->rec[i] = teems_malloc(dec->c.buf_len)) == NULL)
			return false;
	if (!worker_start(&dec->worker, open_in_place, &dec->c))
		return false;
	dec->threaded = true;
	dec->inline_only = false;
	return true;
}

/* Passes on every chunk before `end` that the worker has been given, in order, each once the
 * worker has opened it. */
static int dec_drain(struct obj_dec *dec, uint64_t end, char *errbuf)
{
	struct chunker *c = &dec->c;
	int rc;

	while (c->next_chunk < end) {
		worker_wait(&dec->worker, c->next_chunk + 1);
		if ((rc = dec->worker.status[c->next_chunk % RING]) != TEEMS_OK)
			return open_fail(dec, rc, c->next_chunk, errbuf);
		rc = emit_chunk(dec, dec->rec[c->next_chunk % RING], chunk_len(c, c->next_chunk),
				errbuf);
		if (rc != TEEMS_OK)
			return rc;
	}
	return TEEMS_OK;
}

/* dec_write's gathering with the opener thread: records are copied into rec[k % RING] (the
 * bytes given are the caller's, gone when we return) and handed to the worker. */
static int dec_gather(struct obj_dec *dec, const uint8_t **p, size_t *len, char *errbuf)
{
	struct chunker *c = &dec->c;
	uint64_t k = dec->worker.submitted;
	size_t want, n;

	if (k == c->n_chunks) {
		/* As inline: the chunks before the extra bytes have gone out. */
		int rc = dec_drain(dec, k, errbuf);

		return rc != TEEMS_OK ? rc
				      : dec_fail(dec, OBJ_ETAMPERED, errbuf,
						 "blob has bytes after its last chunk");
	}
	want = (size_t)chunk_len(c, k) + TEE_TAG_LEN;
	n = want - dec->have;
	if (n > *len)
		n = *len;
	memcpy(dec->rec[k % RING] + dec->have, *p, n);
	dec->have += n;
	*p += n;
	*len -= n;
	if (dec->have < want)
		return TEEMS_OK;
	worker_submit(&dec->worker, dec->rec[k % RING], want);
	dec->have = 0;
	/* Chunk k - 1 goes out while the worker opens k; rec[(k + 1) % RING] is then free. */
	return dec_drain(dec, k, errbuf);
}

static int dec_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct obj_dec *dec = arg;
	struct chunker *c = &dec->c;
	const uint8_t *p = buf;
	int rc;

	if (dec->err != TEEMS_OK)
		return teems_errf(errbuf, dec->err, "%s", dec->errmsg);
	dec->total_in += len;
	while (len > 0) {
		size_t want, n;

		if (dec->header_have < OBJ_HEADER_LEN) {
			n = OBJ_HEADER_LEN - dec->header_have;
			if (n > len)
				n = len;
			memcpy(dec->header + dec->header_have, p, n);
			dec->header_have += n;
			p += n;
			len -= n;
			if (dec->header_have == OBJ_HEADER_LEN) {
				rc = dec_header(dec, errbuf);
				if (rc != TEEMS_OK)
					return rc;
			}
			continue;
		}
		if (dec_thread(dec)) {
			if ((rc = dec_gather(dec, &p, &len, errbuf)) != TEEMS_OK)
				return rc;
			continue;
		}
		if (c->next_chunk == c->n_chunks)
			return dec_fail(dec, OBJ_ETAMPERED, errbuf,
					"blob has bytes after its last chunk");
		want = (size_t)chunk_len(c, c->next_chunk) + TEE_TAG_LEN;
		if (dec->have == 0 && len >= want) {
			rc = dec_chunk(dec, p, want, errbuf);
			if (rc != TEEMS_OK)
				return rc;
			p += want;
			len -= want;
			continue;
		}
		n = want - dec->have;
		if (n > len)
			n = len;
		memcpy(c->buf + dec->have, p, n);
		dec->have += n;
		p += n;
		len -= n;
		if (dec->have == want) {
			rc = dec_chunk(dec, c->buf, want, errbuf);
			if (rc != TEEMS_OK)
				return rc;
		}
	}
	return TEEMS_OK;
}

/* dec_pull's loop with the opener thread: chunk k is read while the worker opens k - 1 and
 * after chunk k - 2 went out, so a 16 MiB get costs the longer of reading and writing, and
 * opening, instead of their sum. Same verdicts and the same output as the inline loop. */
static int dec_pull_threaded(struct obj_dec *dec, const struct obj_src *src, char *errbuf)
{
	struct chunker *c = &dec->c;
	struct chunk_worker *w = &dec->worker;
	int rc;

	while (w->submitted < c->n_chunks) {
		uint64_t k = w->submitted;
		size_t want = (size_t)chunk_len(c, k) + TEE_TAG_LEN, got;

		/* rec[k % RING] last held chunk k - RING. */
		if (k >= RING && (rc = dec_drain(dec, k - RING + 1, errbuf)) != TEEMS_OK)
			return rc;
		rc = obj_read_full(src, dec->rec[k % RING], want, &got, errbuf);
		if (rc != TEEMS_OK)
			return rc;
		dec->total_in += got;
		if (got < want) {
			/* A truncation: what came before it still goes out, and
			 * obj_dec_finish reports the rest. */
			rc = dec_drain(dec, k, errbuf);
			dec->have = got;
			return rc;
		}
		worker_submit(w, dec->rec[k % RING], want);
	}
	return dec_drain(dec, c->n_chunks, errbuf);
}

/* The decryptor reads the blob itself: the header into its header buffer, then each chunk
 * record straight into its record buffer, where it is opened in place. No staging buffer and
 * no copy between the source and AES-GCM. Same verdicts as dec_write: a short read is a
 * truncation (obj_dec_finish says so), a byte after the last chunk is tampering. */
static int dec_pull(void *arg, const struct obj_src *src, char *errbuf)
{
	struct obj_dec *dec = arg;
	struct chunker *c = &dec->c;
	size_t got;
	int rc;

	if (dec->err != TEEMS_OK || dec->header_have != 0 || dec->have != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "decryptor: pull after write");
	rc = obj_read_full(src, dec->header, OBJ_HEADER_LEN, &got, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	dec->header_have = got;
	dec->total_in += got;
	if (got < OBJ_HEADER_LEN)
		return TEEMS_OK;
	if ((rc = dec_header(dec, errbuf)) != TEEMS_OK)
		return rc;
	if (dec_thread(dec)) {
		rc = dec_pull_threaded(dec, src, errbuf);
		if (rc != TEEMS_OK || c->next_chunk < c->n_chunks)
			return rc;
	}
	while (c->next_chunk < c->n_chunks) {
		size_t want = (size_t)chunk_len(c, c->next_chunk) + TEE_TAG_LEN;

		rc = obj_read_full(src, c->buf, want, &got, errbuf);
		if (rc != TEEMS_OK)
			return rc;
		dec->have = got;
		dec->total_in += got;
		if (got < want)
			return TEEMS_OK;
		if ((rc = dec_chunk(dec, c->buf, want, errbuf)) != TEEMS_OK)
			return rc;
	}
	rc = obj_read_full(src, c->buf, 1, &got, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (got != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf, "blob has bytes after its last chunk");
	return TEEMS_OK;
}

struct obj_sink obj_dec_sink(struct obj_dec *dec)
{
	return (struct obj_sink){.write = dec_write, .arg = dec, .pull = dec_pull};
}

int obj_dec_finish(struct obj_dec *dec, char *errbuf)
{
	struct chunker *c = &dec->c;

	if (dec->err != TEEMS_OK)
		return teems_errf(errbuf, dec->err, "%s", dec->errmsg);
	/* Written to: the last chunk given to the worker is still to go out. */
	if (dec->threaded && dec_drain(dec, dec->worker.submitted, errbuf) != TEEMS_OK)
		return dec->err;
	if (dec->header_have < OBJ_HEADER_LEN || c->next_chunk < c->n_chunks)
		return dec_fail(dec, OBJ_ETRUNCATED, errbuf,
				"blob ends after %llu of %llu bytes (%llu of %llu chunks intact)",
				(unsigned long long)dec->total_in,
				(unsigned long long)obj_blob_size(c->size, c->chunk_size),
				(unsigned long long)c->next_chunk, (unsigned long long)c->n_chunks);
	dec->err = TEEMS_EINVAL;
	snprintf(dec->errmsg, sizeof(dec->errmsg), "the decryptor has already finished");
	return TEEMS_OK;
}

int obj_decrypt(const struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *blob, const struct obj_sink *plaintext, char *errbuf)
{
	struct obj_dec *dec;
	uint8_t *buf;
	size_t buf_len = 64 * 1024;
	struct obj_sink sink;
	int rc;

	rc = obj_dec_new(meta, object_id, object_id_len, plaintext, &dec, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	buf = teems_malloc(buf_len);
	if (buf == NULL) {
		obj_dec_free(dec);
		return teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: out of memory");
	}
	sink = obj_dec_sink(dec);
	rc = obj_copy(blob, &sink, buf, buf_len, errbuf);
	if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, errbuf);
	teems_free(buf);
	obj_dec_free(dec);
	return rc;
}
