/* Chunked object encryption: see obj_crypto.h for the format and docs/OBJECTS.md for the
 * threat model it answers. */
#include <stdarg.h>
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
	EVP_MD_CTX *pt_hash;
	EVP_MD_CTX *ct_hash;
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
	c->buf_len = obj_crypto_buffer_size(meta->chunk_size);
	c->buf = teems_malloc(c->buf_len);
	c->pt_hash = EVP_MD_CTX_new();
	c->ct_hash = EVP_MD_CTX_new();
	if (c->buf == NULL || c->pt_hash == NULL || c->ct_hash == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "object crypto: out of memory");
	if (EVP_DigestInit_ex(c->pt_hash, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(c->ct_hash, EVP_sha256(), NULL) != 1)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 init failed");
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
	EVP_MD_CTX_free(c->pt_hash);
	EVP_MD_CTX_free(c->ct_hash);
	tee_wipe(c, sizeof(*c));
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

/* ------------------------------------------------------------------ encryption */

struct obj_enc {
	struct chunker c;
	struct obj_meta *meta;
	struct obj_src plaintext;
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
	rc = obj_read_full(&enc->plaintext, c->buf, (size_t)want, &got, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (got != want)
		return teems_errf(errbuf, TEEMS_EIO,
				  "plaintext ended after %llu of the declared %llu bytes",
				  (unsigned long long)(c->next_chunk * c->chunk_size + got),
				  (unsigned long long)c->size);
	if (hash_update(c->pt_hash, c->buf, got) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed");
	chunk_nonce_ad(c, c->next_chunk, nonce, ad);
	rc = tee_aead_seal(&c->aead, nonce, ad, sizeof(ad), c->buf, got, c->buf, c->buf + got);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "AES-256-GCM seal failed");
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

/* Hands out n bytes of buf, hashing them as the blob's bytes. */
static int enc_take(struct obj_enc *enc, size_t n, char *errbuf)
{
	if (hash_update(enc->c.ct_hash, enc->c.buf + enc->out_pos, n) != TEEMS_OK)
		return enc_fail(enc, teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed"), errbuf);
	enc->out_pos += n;
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
	rc = enc_take(enc, n, errbuf);
	if (rc == TEEMS_OK)
		*got = n;
	return rc;
}

struct obj_src obj_enc_src(struct obj_enc *enc)
{
	return (struct obj_src){enc_read, enc};
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
	if (hash_final(enc->c.pt_hash, m->pt_sha256) != TEEMS_OK ||
	    hash_final(enc->c.ct_hash, m->ct_sha256) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "SHA-256 failed");
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

		rc = enc_fill(enc, errbuf);
		if (rc != TEEMS_OK || enc->eof)
			break;
		p = enc->c.buf + enc->out_pos;
		n = enc->out_len - enc->out_pos;
		rc = enc_take(enc, n, errbuf);
		if (rc != TEEMS_OK)
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
	size_t have; /* bytes of the current chunk record in buf */
	uint64_t total_in;
	int err;
	char errmsg[TEEMS_ERRBUF_LEN];
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

static int dec_chunk(struct obj_dec *dec, char *errbuf)
{
	struct chunker *c = &dec->c;
	uint8_t nonce[TEE_NONCE_LEN], ad[AD_LEN];
	size_t len = dec->have - TEE_TAG_LEN;
	int rc;

	chunk_nonce_ad(c, c->next_chunk, nonce, ad);
	rc = tee_aead_open(&c->aead, nonce, ad, sizeof(ad), c->buf, len, c->buf + len, c->buf);
	if (rc == TEEMS_EAUTH)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"chunk %llu of %llu does not authenticate",
				(unsigned long long)c->next_chunk, (unsigned long long)c->n_chunks);
	if (rc != TEEMS_OK)
		return dec_fail(dec, rc, errbuf, "AES-256-GCM open failed");
	if (hash_update(c->pt_hash, c->buf, len) != TEEMS_OK)
		return dec_fail(dec, TEEMS_ECRYPTO, errbuf, "SHA-256 failed");
	rc = dec->plaintext.write(dec->plaintext.arg, c->buf, len, errbuf);
	if (rc != TEEMS_OK) {
		dec->err = rc;
		snprintf(dec->errmsg, sizeof(dec->errmsg), "%s",
			 errbuf != NULL ? errbuf : teems_strerror(rc));
		return rc;
	}
	c->next_chunk++;
	dec->have = 0;
	return TEEMS_OK;
}

static int dec_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct obj_dec *dec = arg;
	struct chunker *c = &dec->c;
	const uint8_t *p = buf;
	int rc;

	if (dec->err != TEEMS_OK)
		return teems_errf(errbuf, dec->err, "%s", dec->errmsg);
	if (hash_update(c->ct_hash, p, len) != TEEMS_OK)
		return dec_fail(dec, TEEMS_ECRYPTO, errbuf, "SHA-256 failed");
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
		if (c->next_chunk == c->n_chunks)
			return dec_fail(dec, OBJ_ETAMPERED, errbuf,
					"blob has bytes after its last chunk");
		want = (size_t)chunk_len(c, c->next_chunk) + TEE_TAG_LEN;
		n = want - dec->have;
		if (n > len)
			n = len;
		memcpy(c->buf + dec->have, p, n);
		dec->have += n;
		p += n;
		len -= n;
		if (dec->have == want) {
			rc = dec_chunk(dec, errbuf);
			if (rc != TEEMS_OK)
				return rc;
		}
	}
	return TEEMS_OK;
}

struct obj_sink obj_dec_sink(struct obj_dec *dec)
{
	return (struct obj_sink){dec_write, dec};
}

int obj_dec_finish(struct obj_dec *dec, char *errbuf)
{
	struct chunker *c = &dec->c;
	uint8_t pt[TEE_SHA256_LEN], ct[TEE_SHA256_LEN];

	if (dec->err != TEEMS_OK)
		return teems_errf(errbuf, dec->err, "%s", dec->errmsg);
	if (dec->header_have < OBJ_HEADER_LEN || c->next_chunk < c->n_chunks)
		return dec_fail(dec, OBJ_ETRUNCATED, errbuf,
				"blob ends after %llu of %llu bytes (%llu of %llu chunks intact)",
				(unsigned long long)dec->total_in,
				(unsigned long long)obj_blob_size(c->size, c->chunk_size),
				(unsigned long long)c->next_chunk, (unsigned long long)c->n_chunks);
	if (hash_final(c->pt_hash, pt) != TEEMS_OK || hash_final(c->ct_hash, ct) != TEEMS_OK)
		return dec_fail(dec, TEEMS_ECRYPTO, errbuf, "SHA-256 failed");
	if (tee_memcmp_ct(ct, dec->meta->ct_sha256, TEE_SHA256_LEN) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"blob SHA-256 differs from the metadata's");
	if (tee_memcmp_ct(pt, dec->meta->pt_sha256, TEE_SHA256_LEN) != 0)
		return dec_fail(dec, OBJ_ETAMPERED, errbuf,
				"plaintext SHA-256 differs from the metadata's");
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
