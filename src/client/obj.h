/* The storage half of an object put and get (DESIGN.md section 9; RR paper section V-B/C),
 * without the metadata service: what remains for libteems is to read the metadata record
 * before obj_get_blob and to commit it with compare-and-set after obj_put_blob, then delete
 * the superseded blob (docs/OBJECTS.md, "what remains"). */
#ifndef TEEMS_CLIENT_OBJ_H
#define TEEMS_CLIENT_OBJ_H

#include "client/blobcache.h"
#include "client/blobstore.h"
#include "client/obj_crypto.h"

/* Encrypts plaintext (exactly meta->size bytes) as meta->version of object_id, with a fresh
 * data key, and uploads it under a fresh random name. In: meta->object_key, version, size,
 * chunk_size (0 = default). Out: the rest of meta, including store_name. Nothing is committed:
 * on success the caller owns a blob that must be referenced by a metadata commit or deleted.
 * Errors: those of obj_enc_new, the plaintext source and blobstore_put. */
int obj_put_blob(struct blobstore *store, struct obj_meta *meta, const void *object_id,
		 size_t object_id_len, const struct obj_src *plaintext, char *errbuf);

/* Streams the plaintext of the blob that meta (read fresh from the service) names into
 * plaintext, from the cache if it holds a blob under meta->blob_digest that authenticates
 * completely (checked by a first decryption into nothing before any plaintext goes out; one
 * that does not is dropped), else from the store (filling the cache). cache may be NULL. On
 * error the sink may hold a prefix: discard it.
 * Errors: TEEMS_ENOTFOUND (the blob is missing from the store), OBJ_ETAMPERED, OBJ_ETRUNCATED,
 * OBJ_ESTALE, OBJ_EDENIED, OBJ_EUNAVAIL, TEEMS_EIO, TEEMS_ENOMEM, the sink's errors. */
int obj_get_blob(struct blobstore *store, struct blobcache *cache, const struct obj_meta *meta,
		 const void *object_id, size_t object_id_len, const struct obj_sink *plaintext,
		 char *errbuf);

#endif
