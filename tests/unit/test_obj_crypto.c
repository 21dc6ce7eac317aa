/* src/client/obj_crypto.c: the blob format's round trips and its refusal of every attack the
 * untrusted store can make (docs/OBJECTS.md, threat model): byte flips, truncation, chunk
 * swaps and reordering, blobs of another object or version, rollback to an older version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/obj_crypto.h"
#include "common/alloc.h"
#include "teems/err.h"
#include "test_obj_util.h"

#define ID "bucket/photos/cat.jpg"
#define ID_LEN (sizeof(ID) - 1)

struct blob {
	uint8_t *data;
	size_t len;
	struct obj_meta meta;
};

static uint8_t *pattern(size_t len, uint64_t seed)
{
	uint8_t *p = test_malloc(len ? len : 1);
	struct gen_src g;
	struct obj_src src = gen_src_init(&g, seed, len);
	size_t got;

	assert_int_equal(obj_read_full(&src, p, len, &got, NULL), TEEMS_OK);
	assert_int_equal(got, len);
	return p;
}

/* Encrypts pt as `version` of object `id` under object_key. */
static void seal(struct blob *b, const char *id, const uint8_t *object_key, uint64_t version,
		 const uint8_t *pt, size_t len, uint32_t chunk)
{
	struct obj_mem_src ms = {pt, len, 0};
	struct obj_src src = obj_src_mem(&ms);
	struct obj_mem_sink out = {0};
	struct obj_sink sink = obj_sink_mem(&out);
	char err[TEEMS_ERRBUF_LEN] = "";

	memset(&b->meta, 0, sizeof(b->meta));
	memcpy(b->meta.object_key, object_key, TEE_KEY_LEN);
	b->meta.version = version;
	b->meta.size = len;
	b->meta.chunk_size = chunk;
	assert_int_equal(obj_encrypt(&b->meta, id, strlen(id), &src, &sink, err), TEEMS_OK);
	b->data = out.data;
	b->len = out.len;
}

/* A memory source that hands out at most 1000 bytes per read: the pulling decryptor must
 * gather its records from short reads. */
static int short_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct obj_src mem = obj_src_mem(arg);

	return mem.read(mem.arg, buf, cap > 1000 ? 1000 : cap, got, errbuf);
}

/* Decrypts data with meta through the decryptor's pull path (obj_sink.pull: the decryptor
 * reads the blob itself, as from the dir store and the cache). */
static int open_blob_pull(const struct obj_meta *meta, const char *id, const uint8_t *data,
			  size_t len, struct obj_mem_sink *out, char *err)
{
	struct obj_mem_src ms = {data, len, 0};
	struct obj_src src = {.read = short_read, .arg = &ms};
	struct obj_sink sink = obj_sink_mem(out), in;
	struct obj_dec *dec;
	int rc;

	rc = obj_dec_new(meta, id, strlen(id), &sink, &dec, err);
	if (rc != TEEMS_OK)
		return rc;
	in = obj_dec_sink(dec);
	assert_non_null(in.pull);
	rc = in.pull(in.arg, &src, err);
	if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, err);
	obj_dec_free(dec);
	return rc;
}

/* Decrypts data with meta; returns the code and, on success, checks the plaintext. Both ways
 * into the decryptor (written to in pieces, and pulling for itself; a multi-chunk pull opens
 * chunks on a second thread) must give the same verdict, the same message and the same bytes,
 * on a failure too: a prefix of whole chunks that authenticated, never more. */
static int open_blob(const struct obj_meta *meta, const char *id, const uint8_t *data, size_t len,
		     const uint8_t *want_pt)
{
	struct obj_mem_src ms = {data, len, 0};
	struct obj_src src = obj_src_mem(&ms);
	struct obj_mem_sink out = {0}, pulled = {0};
	struct obj_sink sink = obj_sink_mem(&out);
	char err[TEEMS_ERRBUF_LEN] = "", pull_err[TEEMS_ERRBUF_LEN] = "";
	int rc = obj_decrypt(meta, id, strlen(id), &src, &sink, err);

	assert_int_equal(open_blob_pull(meta, id, data, len, &pulled, pull_err), rc);
	assert_string_equal(pull_err, err);
	assert_int_equal(pulled.len, out.len);
	if (out.len > 0) {
		assert_memory_equal(pulled.data, out.data, out.len);
		assert_memory_equal(out.data, want_pt, out.len);
	}
	if (rc == TEEMS_OK) {
		assert_int_equal(out.len, meta->size);
		assert_int_equal(pulled.len, meta->size);
		if (meta->size) {
			assert_memory_equal(out.data, want_pt, meta->size);
			assert_memory_equal(pulled.data, want_pt, meta->size);
		}
	}
	teems_free(out.data);
	teems_free(pulled.data);
	return rc;
}

static const uint8_t key_a[TEE_KEY_LEN] = {1, 2, 3, 4, 5};
static const uint8_t key_b[TEE_KEY_LEN] = {9, 9, 9};

/* What blob_digest must be, computed from the blob's bytes: SHA-256 of the header and of the
 * last 16 bytes (the GCM tag) of every chunk record. */
static void expected_blob_digest(const uint8_t *blob, size_t blob_len, uint64_t size,
				 uint32_t chunk, uint8_t out[TEE_SHA256_LEN])
{
	uint64_t n = size == 0 ? 1 : (size + chunk - 1) / chunk;
	size_t cap = OBJ_HEADER_LEN + (size_t)n * TEE_TAG_LEN, pos = OBJ_HEADER_LEN, o;
	uint8_t *m = test_malloc(cap);

	memcpy(m, blob, OBJ_HEADER_LEN);
	o = OBJ_HEADER_LEN;
	for (uint64_t i = 0; i < n; i++) {
		size_t clen = i + 1 < n ? chunk : (size_t)(size - (n - 1) * chunk);

		pos += clen + TEE_TAG_LEN;
		assert_true(pos <= blob_len);
		memcpy(m + o, blob + pos - TEE_TAG_LEN, TEE_TAG_LEN);
		o += TEE_TAG_LEN;
	}
	assert_int_equal(pos, blob_len);
	tee_sha256(m, cap, out);
	test_free(m);
}

static void round_trip(size_t len, uint32_t chunk)
{
	uint8_t *pt = pattern(len, len + chunk);
	uint8_t digest[TEE_SHA256_LEN];
	struct blob b;

	seal(&b, ID, key_a, 7, pt, len, chunk);
	assert_int_equal(b.len, obj_blob_size(len, chunk));
	assert_int_equal(b.meta.blob_size, b.len);
	tee_sha256(pt, len, digest);
	assert_memory_equal(digest, b.meta.pt_sha256, TEE_SHA256_LEN);
	expected_blob_digest(b.data, b.len, len, chunk, digest);
	assert_memory_equal(digest, b.meta.blob_digest, TEE_SHA256_LEN);
	assert_memory_equal(b.data, OBJ_MAGIC, 8);
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), TEEMS_OK);
	teems_free(b.data);
	test_free(pt);
}

static void test_round_trips(void **state)
{
	const uint32_t c = 4096;
	(void)state;

	round_trip(0, c);
	round_trip(1, c);
	round_trip(c - 1, c);
	round_trip(c, c);
	round_trip(c + 1, c);
	round_trip(3 * c + 17, c);
	round_trip(0, OBJ_CHUNK_MIN);
	round_trip(1000, OBJ_CHUNK_MIN);
	round_trip(5 * (1u << 20) + 3, OBJ_CHUNK_DEFAULT);
}

static void test_fresh_key_every_time(void **state)
{
	uint8_t *pt = pattern(100, 1);
	struct blob a, b;
	(void)state;

	seal(&a, ID, key_a, 1, pt, 100, 64);
	seal(&b, ID, key_a, 1, pt, 100, 64);
	assert_memory_not_equal(a.meta.data_key, b.meta.data_key, TEE_KEY_LEN);
	assert_memory_not_equal(a.data + OBJ_HEADER_LEN, b.data + OBJ_HEADER_LEN, 100);
	/* Identical headers (same object, version, size) but different chunks: the blob's own
	 * data key is required. */
	assert_memory_equal(a.data, b.data, OBJ_HEADER_LEN);
	assert_int_equal(open_blob(&a.meta, ID, b.data, b.len, pt), OBJ_ETAMPERED);
	teems_free(a.data);
	teems_free(b.data);
	test_free(pt);
}

/* Reading the encryptor with odd-sized requests and feeding the decryptor odd-sized writes. */
static void test_odd_io_sizes(void **state)
{
	const size_t len = 1000;
	uint8_t *pt = pattern(len, 5);
	struct obj_mem_src ms = {pt, len, 0};
	struct obj_src src = obj_src_mem(&ms), blob;
	struct obj_meta meta = {0};
	struct obj_enc *enc;
	struct obj_dec *dec;
	struct obj_mem_sink out = {0};
	struct obj_sink plain = obj_sink_mem(&out), dsink;
	uint8_t buf[13];
	size_t got, step = 1;
	(void)state;

	memcpy(meta.object_key, key_a, TEE_KEY_LEN);
	meta.version = 3;
	meta.size = len;
	meta.chunk_size = 64;
	assert_int_equal(obj_enc_new(&meta, ID, ID_LEN, &src, &enc, NULL), TEEMS_OK);
	assert_int_equal(obj_dec_new(&meta, ID, ID_LEN, &plain, &dec, NULL), TEEMS_OK);
	blob = obj_enc_src(enc);
	dsink = obj_dec_sink(dec);
	/* The decryptor checks the header against meta, which obj_enc_new has filled already
	 * except for the digests (which the decryptor does not use). */
	do {
		assert_int_equal(blob.read(blob.arg, buf, step, &got, NULL), TEEMS_OK);
		assert_int_equal(dsink.write(dsink.arg, buf, got, NULL), TEEMS_OK);
		step = step % sizeof(buf) + 1;
	} while (got > 0);
	assert_int_equal(obj_enc_finish(enc, NULL), TEEMS_OK);
	assert_int_equal(obj_dec_finish(dec, NULL), TEEMS_OK);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.data, pt, len);
	obj_enc_free(enc);
	obj_dec_free(dec);
	teems_free(out.data);
	test_free(pt);
}

static void test_every_byte_flip_is_tampered(void **state)
{
	const size_t len = 200;
	uint8_t *pt = pattern(len, 2);
	struct blob b;
	(void)state;

	seal(&b, ID, key_a, 4, pt, len, 64);
	for (size_t i = 0; i < b.len; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			b.data[i] ^= (uint8_t)(1u << bit);
			if (open_blob(&b.meta, ID, b.data, b.len, pt) != OBJ_ETAMPERED)
				fail_msg("flipping bit %d of byte %zu was not detected", bit, i);
			b.data[i] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), TEEMS_OK);
	teems_free(b.data);
	test_free(pt);
}

static void test_every_truncation_is_truncated(void **state)
{
	const size_t len = 200;
	uint8_t *pt = pattern(len, 3);
	struct blob b;
	(void)state;

	seal(&b, ID, key_a, 4, pt, len, 64);
	for (size_t cut = 0; cut < b.len; cut++)
		if (open_blob(&b.meta, ID, b.data, cut, pt) != OBJ_ETRUNCATED)
			fail_msg("cutting the blob to %zu of %zu bytes was not reported", cut,
				 b.len);
	teems_free(b.data);
	test_free(pt);
}

/* Truncation of a blob that lost its tail *and* had its header rewritten to match: the MAC
 * refuses the header. And bytes appended after the last chunk. */
static void test_extended_or_relabelled(void **state)
{
	const size_t len = 200;
	uint8_t *pt = pattern(len, 4);
	struct blob b;
	uint8_t *longer;
	(void)state;

	seal(&b, ID, key_a, 4, pt, len, 64);
	longer = test_malloc(b.len + 1);
	memcpy(longer, b.data, b.len);
	longer[b.len] = 0;
	assert_int_equal(open_blob(&b.meta, ID, longer, b.len + 1, pt), OBJ_ETAMPERED);
	/* A header claiming 128 bytes, followed by the first two chunks. */
	longer[56] = 128;
	longer[57] = 0;
	{
		struct obj_meta m = b.meta;

		m.size = 128;
		assert_int_equal(open_blob(&m, ID, longer, OBJ_HEADER_LEN + 2 * (64 + 16), pt),
				 OBJ_ETAMPERED);
	}
	test_free(longer);
	teems_free(b.data);
	test_free(pt);
}

static size_t chunk_off(size_t i)
{
	return OBJ_HEADER_LEN + i * (64 + TEE_TAG_LEN);
}

static void test_chunk_swap_and_reorder(void **state)
{
	const size_t len = 256; /* four full chunks of 64 */
	uint8_t *pt = pattern(len, 6);
	uint8_t tmp[64 + TEE_TAG_LEN];
	struct blob b;
	(void)state;

	seal(&b, ID, key_a, 4, pt, len, 64);
	/* swap chunks 1 and 2 */
	memcpy(tmp, b.data + chunk_off(1), sizeof(tmp));
	memcpy(b.data + chunk_off(1), b.data + chunk_off(2), sizeof(tmp));
	memcpy(b.data + chunk_off(2), tmp, sizeof(tmp));
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), OBJ_ETAMPERED);
	memcpy(b.data + chunk_off(2), b.data + chunk_off(1), sizeof(tmp));
	memcpy(b.data + chunk_off(1), tmp, sizeof(tmp));
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), TEEMS_OK);
	/* duplicate chunk 0 over chunk 1 */
	memcpy(tmp, b.data + chunk_off(1), sizeof(tmp));
	memcpy(b.data + chunk_off(1), b.data + chunk_off(0), sizeof(tmp));
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), OBJ_ETAMPERED);
	memcpy(b.data + chunk_off(1), tmp, sizeof(tmp));
	/* move the final chunk forward and cut the rest: its index and final flag refuse it */
	memcpy(b.data + chunk_off(2), b.data + chunk_off(3), sizeof(tmp));
	assert_int_equal(open_blob(&b.meta, ID, b.data, chunk_off(3), pt), OBJ_ETAMPERED);
	assert_int_equal(open_blob(&b.meta, ID, b.data, b.len, pt), OBJ_ETAMPERED);
	teems_free(b.data);
	test_free(pt);
}

/* Chunks spliced from another version or another object never authenticate: every version
 * has its own data key, and the AD binds object, version and index besides. */
static void test_chunks_from_other_blobs(void **state)
{
	const size_t len = 256;
	uint8_t *pt = pattern(len, 7);
	struct blob v4, v5, other;
	(void)state;

	seal(&v4, ID, key_a, 4, pt, len, 64);
	seal(&v5, ID, key_a, 5, pt, len, 64);
	seal(&other, "another/object", key_b, 5, pt, len, 64);
	memcpy(v5.data + chunk_off(2), v4.data + chunk_off(2), 64 + TEE_TAG_LEN);
	assert_int_equal(open_blob(&v5.meta, ID, v5.data, v5.len, pt), OBJ_ETAMPERED);
	memcpy(v4.data + chunk_off(1), other.data + chunk_off(1), 64 + TEE_TAG_LEN);
	assert_int_equal(open_blob(&v4.meta, ID, v4.data, v4.len, pt), OBJ_ETAMPERED);
	teems_free(v4.data);
	teems_free(v5.data);
	teems_free(other.data);
	test_free(pt);
}

static void test_other_object_or_version(void **state)
{
	const size_t len = 300;
	uint8_t *pt = pattern(len, 8);
	uint8_t *pt2 = pattern(len, 9);
	struct blob v4, v5, other, same_key_other_id;
	struct obj_meta m;
	(void)state;

	seal(&v4, ID, key_a, 4, pt, len, 64);
	seal(&v5, ID, key_a, 5, pt2, len, 64);
	seal(&other, "another/object", key_b, 5, pt2, len, 64);
	seal(&same_key_other_id, "another/object", key_a, 5, pt2, len, 64);

	/* The store rolled the blob back to version 4 while the metadata says 5: stale. */
	assert_int_equal(open_blob(&v5.meta, ID, v4.data, v4.len, pt), OBJ_ESTALE);
	/* ... even if its length differs from what the metadata says. */
	{
		struct blob v3;

		seal(&v3, ID, key_a, 3, pt, 10, 64);
		assert_int_equal(open_blob(&v5.meta, ID, v3.data, v3.len, pt), OBJ_ESTALE);
		teems_free(v3.data);
	}
	/* A newer blob under older metadata cannot happen without tampering. */
	assert_int_equal(open_blob(&v4.meta, ID, v5.data, v5.len, pt), OBJ_ETAMPERED);
	/* Another object's blob: tampered, whatever its key. */
	assert_int_equal(open_blob(&v5.meta, ID, other.data, other.len, pt), OBJ_ETAMPERED);
	assert_int_equal(open_blob(&v5.meta, ID, same_key_other_id.data, same_key_other_id.len, pt),
			 OBJ_ETAMPERED);
	/* A forged "older version" header needs the object key: flip the version of the v5 blob
	 * to 4 and it is tampered, not stale. */
	v5.data[48] = 4;
	assert_int_equal(open_blob(&v5.meta, ID, v5.data, v5.len, pt2), OBJ_ETAMPERED);
	v5.data[48] = 5;
	/* Right blob, wrong object key in the metadata. */
	m = v5.meta;
	memcpy(m.object_key, key_b, TEE_KEY_LEN);
	assert_int_equal(open_blob(&m, ID, v5.data, v5.len, pt2), OBJ_ETAMPERED);
	/* Right blob, wrong data key in the metadata: the AEAD is what authenticates the chunks. */
	m = v5.meta;
	m.data_key[31] ^= 1;
	assert_int_equal(open_blob(&m, ID, v5.data, v5.len, pt2), OBJ_ETAMPERED);
	/* The digests are not part of the check (obj_crypto.h): pt_sha256 is reported to users,
	 * blob_digest names the blob for the cache. A record whose digests differ still opens the
	 * authentic blob, and nothing else. */
	m = v5.meta;
	m.pt_sha256[0] ^= 1;
	m.blob_digest[0] ^= 1;
	assert_int_equal(open_blob(&m, ID, v5.data, v5.len, pt2), TEEMS_OK);
	assert_int_equal(open_blob(&m, ID, v4.data, v4.len, pt), OBJ_ESTALE);
	assert_int_equal(open_blob(&v5.meta, ID, v5.data, v5.len, pt2), TEEMS_OK);
	teems_free(v4.data);
	teems_free(v5.data);
	teems_free(other.data);
	teems_free(same_key_other_id.data);
	test_free(pt);
	test_free(pt2);
}

static void test_source_length_must_match(void **state)
{
	uint8_t pt[100] = {0};
	struct obj_mem_src ms = {pt, sizeof(pt), 0};
	struct obj_src src = obj_src_mem(&ms);
	struct obj_mem_sink out = {0};
	struct obj_sink sink = obj_sink_mem(&out);
	struct obj_meta meta = {0};
	char err[TEEMS_ERRBUF_LEN] = "";
	(void)state;

	meta.size = 101;
	meta.chunk_size = 64;
	assert_int_equal(obj_encrypt(&meta, ID, ID_LEN, &src, &sink, err), TEEMS_EIO);
	assert_non_null(strstr(err, "ended after 100"));
	ms.pos = 0;
	out.len = 0;
	meta.size = 99;
	assert_int_equal(obj_encrypt(&meta, ID, ID_LEN, &src, &sink, err), TEEMS_EINVAL);
	meta.size = 10;
	meta.chunk_size = 8;
	assert_int_equal(obj_encrypt(&meta, ID, ID_LEN, &src, &sink, err), TEEMS_EINVAL);
	assert_int_equal(obj_blob_size(10, 8), 0);
	assert_int_equal(obj_blob_size(UINT64_MAX - 10, 64), 0);
	assert_int_equal(obj_blob_size(0, 64), OBJ_HEADER_LEN + TEE_TAG_LEN);
	teems_free(out.data);
}

static int failing_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	int *calls = arg;

	(void)buf;
	(void)len;
	if (++*calls == 2)
		return teems_errf(errbuf, TEEMS_EIO, "disk full");
	return TEEMS_OK;
}

static void test_sink_errors_propagate(void **state)
{
	uint8_t *pt = pattern(500, 10);
	struct blob b;
	struct obj_mem_src ms;
	struct obj_src src;
	int calls = 0;
	struct obj_sink bad = {.write = failing_write, .arg = &calls};
	char err[TEEMS_ERRBUF_LEN] = "";
	(void)state;

	seal(&b, ID, key_a, 1, pt, 500, 64);
	ms = (struct obj_mem_src){b.data, b.len, 0};
	src = obj_src_mem(&ms);
	assert_int_equal(obj_decrypt(&b.meta, ID, ID_LEN, &src, &bad, err), TEEMS_EIO);
	assert_string_equal(err, "disk full");
	ms = (struct obj_mem_src){pt, 500, 0};
	src = obj_src_mem(&ms);
	calls = 0;
	assert_int_equal(obj_encrypt(&b.meta, ID, ID_LEN, &src, &bad, err), TEEMS_EIO);
	teems_free(b.data);
	test_free(pt);
}

/* Every allocation failure gives TEEMS_ENOMEM and leaks nothing (the ASan build checks). */
static void test_allocation_failures(void **state)
{
	uint8_t *pt = pattern(300, 11);
	struct blob b;
	(void)state;

	seal(&b, ID, key_a, 1, pt, 300, 64);
	for (long n = 0; n < 8; n++) {
		struct obj_mem_src ms = {pt, 300, 0};
		struct obj_src src = obj_src_mem(&ms);
		struct obj_mem_sink out = {0};
		struct obj_sink sink = obj_sink_mem(&out);
		struct obj_meta m = b.meta;
		int rc;

		teems_alloc_fault(n, 0);
		rc = obj_encrypt(&m, ID, ID_LEN, &src, &sink, NULL);
		teems_alloc_fault(-1, 0);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		teems_free(out.data);
		ms = (struct obj_mem_src){b.data, b.len, 0};
		memset(&out, 0, sizeof(out));
		teems_alloc_fault(n, 0);
		rc = obj_decrypt(&b.meta, ID, ID_LEN, &src, &sink, NULL);
		teems_alloc_fault(-1, 0);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		teems_free(out.data);
		/* The pulling decryptor's second record buffer: without it, it opens on this
		 * thread, and the result is the same. */
		memset(&out, 0, sizeof(out));
		teems_alloc_fault(n, 0);
		rc = open_blob_pull(&b.meta, ID, b.data, b.len, &out, NULL);
		teems_alloc_fault(-1, 0);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		if (rc == TEEMS_OK) {
			assert_int_equal(out.len, 300);
			assert_memory_equal(out.data, pt, 300);
		}
		teems_free(out.data);
	}
	teems_free(b.data);
	test_free(pt);
}

static void test_meta_record(void **state)
{
	uint8_t *pt = pattern(5000, 12);
	uint8_t buf[OBJ_META_MAX_LEN], bad[OBJ_META_MAX_LEN];
	struct obj_meta back;
	struct blob b;
	size_t n;
	(void)state;

	seal(&b, ID, key_a, 42, pt, 5000, 1024);
	snprintf(b.meta.store_name, sizeof(b.meta.store_name), "0123456789abcdef");
	n = obj_meta_encode(&b.meta, buf);
	assert_int_equal(n, OBJ_META_FIXED_LEN + 16);
	assert_int_equal(obj_meta_decode(buf, n, &back, NULL), TEEMS_OK);
	assert_memory_equal(&back, &b.meta, sizeof(back));
	/* the decoded record opens the blob */
	assert_int_equal(open_blob(&back, ID, b.data, b.len, pt), TEEMS_OK);
	/* refusals */
	assert_int_equal(obj_meta_decode(buf, n - 1, &back, NULL), TEEMS_ECORRUPT);
	assert_int_equal(obj_meta_decode(buf, OBJ_META_FIXED_LEN - 1, &back, NULL), TEEMS_ECORRUPT);
	assert_int_equal(buf[0], OBJ_META_FORMAT);
	memcpy(bad, buf, n);
	bad[0] = OBJ_META_FORMAT + 1;
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_EVERSION);
	bad[0] = 0;
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_EVERSION);
	/* format 1 (blob_digest was the SHA-256 of the whole blob) is still read, opens its blob
	 * (the digest is only a cache name) and is written back as format 1 */
	{
		uint8_t again[OBJ_META_MAX_LEN];
		struct obj_meta old;

		memcpy(bad, buf, n);
		bad[0] = 1;
		tee_sha256(b.data, b.len, bad + 128);
		assert_int_equal(obj_meta_decode(bad, n, &old, NULL), TEEMS_OK);
		assert_int_equal(old.format, 1);
		assert_int_equal(open_blob(&old, ID, b.data, b.len, pt), TEEMS_OK);
		assert_int_equal(obj_meta_encode(&old, again), n);
		assert_memory_equal(again, bad, n);
		old.format = OBJ_META_FORMAT + 1;
		assert_int_equal(obj_meta_encode(&old, again), 0);
	}
	memcpy(bad, buf, n);
	bad[2] = 1;
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[24] ^= 1; /* blob size */
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[OBJ_META_FIXED_LEN] = '/';
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	/* a NUL inside the name would decode to a shorter name (found by fuzz_obj_meta) */
	memcpy(bad, buf, n);
	bad[OBJ_META_FIXED_LEN + 3] = '\0';
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	teems_free(b.data);
	test_free(pt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_fresh_key_every_time),
		cmocka_unit_test(test_odd_io_sizes),
		cmocka_unit_test(test_every_byte_flip_is_tampered),
		cmocka_unit_test(test_every_truncation_is_truncated),
		cmocka_unit_test(test_extended_or_relabelled),
		cmocka_unit_test(test_chunk_swap_and_reorder),
		cmocka_unit_test(test_chunks_from_other_blobs),
		cmocka_unit_test(test_other_object_or_version),
		cmocka_unit_test(test_source_length_must_match),
		cmocka_unit_test(test_sink_errors_propagate),
		cmocka_unit_test(test_allocation_failures),
		cmocka_unit_test(test_meta_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
