#include <stdbool.h>
#include <string.h>

#include "client/obj.h"
#include "teems/err.h"

int obj_put_blob(struct blobstore *store, struct obj_meta *meta, const void *object_id,
		 size_t object_id_len, const struct obj_src *plaintext, char *errbuf)
{
	struct obj_enc *enc;
	struct obj_src blob;
	int rc;

	rc = blobstore_random_name(meta->store_name);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "random store name failed");
	rc = obj_enc_new(meta, object_id, object_id_len, plaintext, &enc, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	blob = obj_enc_src(enc);
	rc = blobstore_put(store, meta->store_name, &blob,
			   obj_blob_size(meta->size, meta->chunk_size), errbuf);
	if (rc == TEEMS_OK)
		rc = obj_enc_finish(enc, errbuf);
	obj_enc_free(enc);
	if (rc != TEEMS_OK)
		blobstore_delete(store, meta->store_name,
				 NULL); /* best effort; gc catches the rest */
	return rc;
}

/* Passes the blob to the decryptor and, when filling, to the cache. */
struct tee_sink {
	struct obj_sink dec;
	struct obj_sink fill;
	int filling;
};

static int tee_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct tee_sink *t = arg;
	int rc = t->dec.write(t->dec.arg, buf, len, errbuf);

	if (rc == TEEMS_OK && t->filling && t->fill.write(t->fill.arg, buf, len, NULL) != TEEMS_OK)
		t->filling = 0; /* a full cache disk must not fail the read */
	return rc;
}

static int discard_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	(void)arg;
	(void)buf;
	(void)len;
	(void)errbuf;
	return TEEMS_OK;
}

static bool blob_verdict(int rc)
{
	return rc == OBJ_ETAMPERED || rc == OBJ_ETRUNCATED || rc == OBJ_ESTALE;
}

/* One pass of the cached blob named by meta->blob_digest through a decryptor into `out`. */
static int cached_pass(struct blobcache *cache, const struct obj_meta *meta, const void *object_id,
		       size_t object_id_len, const struct obj_sink *out, char *errbuf)
{
	struct obj_dec *dec;
	struct obj_sink in;
	int rc = obj_dec_new(meta, object_id, object_id_len, out, &dec, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	in = obj_dec_sink(dec);
	rc = blobcache_get(cache, meta->blob_digest, &in, errbuf);
	if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, errbuf);
	obj_dec_free(dec);
	return rc;
}

/* Decrypts the cached blob named by meta->blob_digest into plaintext, or TEEMS_ENOTFOUND if
 * there is none or it does not authenticate (then it is dropped). The cache directory is
 * untrusted and a sink cannot take back what it was given, so the blob is first decrypted in
 * full into nothing; only a blob that authenticated completely under the fresh record's keys
 * is decrypted again into the sink. Two AES-GCM passes over a local file cost less than the
 * SHA-256 pass that used to check an entry. */
static int get_cached(struct blobcache *cache, const struct obj_meta *meta, const void *object_id,
		      size_t object_id_len, const struct obj_sink *plaintext, char *errbuf)
{
	struct obj_sink discard = {.write = discard_write, .arg = NULL};
	int rc = cached_pass(cache, meta, object_id, object_id_len, &discard, errbuf);

	if (blob_verdict(rc)) {
		blobcache_drop(cache, meta->blob_digest, NULL);
		return teems_errf(errbuf, TEEMS_ENOTFOUND, "cached blob was damaged, dropped");
	}
	if (rc != TEEMS_OK)
		return rc;
	rc = cached_pass(cache, meta, object_id, object_id_len, plaintext, errbuf);
	if (rc == TEEMS_ENOTFOUND) /* removed between the passes: the sink has nothing */
		rc = teems_errf(errbuf, TEEMS_EIO, "cached blob vanished while being read");
	/* Changed between the passes: the sink may hold a prefix, so this get fails (the caller
	 * discards the prefix); the next one goes to the store. */
	if (blob_verdict(rc))
		blobcache_drop(cache, meta->blob_digest, NULL);
	return rc;
}

int obj_get_blob(struct blobstore *store, struct blobcache *cache, const struct obj_meta *meta,
		 const void *object_id, size_t object_id_len, const struct obj_sink *plaintext,
		 char *errbuf)
{
	struct blobcache_fill *fill = NULL;
	struct obj_dec *dec;
	struct tee_sink t = {0};
	struct obj_sink sink;
	int rc;

	if (!blob_name_valid(meta->store_name))
		return teems_errf(errbuf, TEEMS_EINVAL, "metadata names no valid blob");
	if (cache != NULL) {
		rc = get_cached(cache, meta, object_id, object_id_len, plaintext, errbuf);
		if (rc != TEEMS_ENOTFOUND)
			return rc;
	}
	rc = obj_dec_new(meta, object_id, object_id_len, plaintext, &dec, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	t.dec = obj_dec_sink(dec);
	if (cache != NULL && blobcache_fill_begin(cache, &fill, NULL) == TEEMS_OK) {
		t.fill = blobcache_fill_sink(fill);
		t.filling = 1;
	}
	/* Without a fill the store hands the blob to the decryptor directly (which can read it
	 * into its own buffer: obj_sink.pull). */
	sink = t.filling ? (struct obj_sink){.write = tee_write, .arg = &t} : t.dec;
	rc = blobstore_get(store, meta->store_name, &sink, errbuf);
	if (rc == TEEMS_ENOTFOUND)
		rc = teems_errf(errbuf, TEEMS_ENOTFOUND,
				"blob %s is missing from the store (deleted?)", meta->store_name);
	else if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, errbuf);
	/* Kept only if every byte authenticated under the fresh record's keys. */
	if (fill != NULL) {
		if (rc == TEEMS_OK && t.filling)
			blobcache_fill_commit(fill, meta->blob_digest, NULL);
		else
			blobcache_fill_abort(fill);
	}
	obj_dec_free(dec);
	return rc;
}
