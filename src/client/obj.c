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
	rc = obj_dec_new(meta, object_id, object_id_len, plaintext, &dec, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	t.dec = obj_dec_sink(dec);
	if (cache != NULL) {
		rc = blobcache_get(cache, meta->ct_sha256, &t.dec, errbuf);
		if (rc == TEEMS_OK)
			rc = obj_dec_finish(dec, errbuf);
		if (rc != TEEMS_ENOTFOUND)
			goto out;
		if (blobcache_fill_begin(cache, &fill, NULL) == TEEMS_OK) {
			t.fill = blobcache_fill_sink(fill);
			t.filling = 1;
		}
	}
	sink = (struct obj_sink){tee_write, &t};
	rc = blobstore_get(store, meta->store_name, &sink, errbuf);
	if (rc == TEEMS_ENOTFOUND)
		rc = teems_errf(errbuf, TEEMS_ENOTFOUND,
				"blob %s is missing from the store (deleted?)", meta->store_name);
	else if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, errbuf);
	if (fill != NULL) {
		if (rc == TEEMS_OK && t.filling)
			blobcache_fill_commit(fill, meta->ct_sha256, NULL);
		else
			blobcache_fill_abort(fill);
	}
out:
	obj_dec_free(dec);
	return rc;
}
