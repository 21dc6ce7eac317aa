/* Untrusted blob stores for the object layer (DESIGN.md section 9): a local directory (`dir`)
 * or an S3 bucket (`s3`). The store is the adversary's (DESIGN.md section 2): it may delete,
 * replace, roll back or corrupt any blob. Nothing here trusts what it returns; obj_crypto.h
 * authenticates every byte against the metadata record.
 *
 * URLs
 *   dir://PATH                     a directory (created by blobstore_init); PATH may be relative
 *   s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&timeout_ms=N&part_size=BYTES]
 *                                  BUCKET follows S3's rules (3-63 of [a-z0-9.-]); PREFIX is
 *                                  [A-Za-z0-9._/-] and names are appended to it. endpoint
 *                                  defaults to https://s3.REGION.amazonaws.com (path style),
 *                                  region to us-east-1. Values may be %-encoded. Credentials
 *                                  are never in the URL: see struct blobstore_opts.
 *                                  part_size: blobs above it go up as multipart uploads
 *                                  (5 MiB..5 GiB; default 64 MiB).
 *
 * Names are 1..OBJ_NAME_MAX characters of [A-Za-z0-9_-] plus '.' (not first), so they are
 * safe as file names and S3 keys without escaping; blobstore_random_name() makes the random
 * names the object layer uses (RR paper section V-B: "a random name i_store").
 *
 * Ownership: a struct blobstore belongs to its opener until blobstore_close. Streams passed to
 * put/get are borrowed for the call. One store handle per thread. */
#ifndef TEEMS_CLIENT_BLOBSTORE_H
#define TEEMS_CLIENT_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "client/obj_crypto.h"
#include "client/obj_err.h"
#include "client/stream.h"

#define BLOB_URL_PATH_MAX 1024
#define BLOB_URL_FIELD_MAX 256
#define BLOB_RANDOM_NAME_LEN 32 /* hex characters: 128 bits from the CSPRNG */

enum blob_kind { BLOB_DIR = 1, BLOB_S3 = 2 };

/* A parsed store URL. Plain data, no allocation (so the parser is easy to fuzz). */
struct blob_url {
	enum blob_kind kind;
	char path[BLOB_URL_PATH_MAX];	   /* dir: the directory */
	char bucket[64];		   /* s3 */
	char prefix[BLOB_URL_FIELD_MAX];   /* s3: key prefix, possibly "" */
	char endpoint[BLOB_URL_FIELD_MAX]; /* s3: scheme://host[:port][/path], no trailing '/' */
	char region[64];		   /* s3 */
	long timeout_ms;		   /* s3: 0 = default */
	unsigned long long part_size;	   /* s3: 0 = default (blob_s3_multipart.h) */
};

/* Parses a store URL. Errors: TEEMS_EINVAL (the message says what is wrong). */
int blob_url_parse(const char *url, struct blob_url *out, char *errbuf);

/* 1 if name is a valid blob name, else 0. */
int blob_name_valid(const char *name);

/* Writes BLOB_RANDOM_NAME_LEN lowercase hex characters and a NUL into out.
 * Errors: TEEMS_ECRYPTO. */
int blobstore_random_name(char out[BLOB_RANDOM_NAME_LEN + 1]);

struct blobstore_opts {
	/* s3: credentials; NULL means the environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
	 * Copied at open. */
	const char *access_key;
	const char *secret_key;
	/* s3: connect timeout and "no progress" timeout; 0 = the URL's or 30 s. */
	long timeout_ms;
};

struct blob_stat {
	uint64_t size;
	/* Last modification, seconds since the epoch (0 if the store does not say). Untrusted like
	 * everything the store returns: `teems obj gc` uses it only to spare young orphans. */
	int64_t mtime;
};

struct blobstore;

/* Opens a store; opts may be NULL. Does not touch the store (see blobstore_init).
 * Errors: TEEMS_EINVAL (bad URL, missing credentials), TEEMS_ENOMEM, TEEMS_EIO. */
int blobstore_open(const char *url, const struct blobstore_opts *opts, struct blobstore **out,
		   char *errbuf);

/* Closes and frees; NULL is allowed. */
void blobstore_close(struct blobstore *store);

/* Creates the container if it does not exist (dir: mkdir -p; s3: create the bucket).
 * Errors: as put. */
int blobstore_init(struct blobstore *store, char *errbuf);

/* Stores exactly len bytes from src under name, replacing any blob of that name. Atomic: a
 * reader sees the old blob or the new one, never a mix (dir: temporary file, fsync, rename,
 * fsync of the directory; s3: a single PUT, or a multipart upload that
 * appears at its Complete). Durable when it returns TEEMS_OK.
 * Errors: TEEMS_EINVAL (bad name), src's errors, TEEMS_EIO (src shorter or longer than len, or
 * the disk failed), OBJ_EDENIED, OBJ_EUNAVAIL, TEEMS_ENOMEM. */
int blobstore_put(struct blobstore *store, const char *name, const struct obj_src *src,
		  uint64_t len, char *errbuf);

/* Streams the blob into sink. On error the sink may have received a prefix.
 * Errors: TEEMS_EINVAL, TEEMS_ENOTFOUND, sink's errors, TEEMS_EIO, OBJ_EDENIED, OBJ_EUNAVAIL. */
int blobstore_get(struct blobstore *store, const char *name, const struct obj_sink *sink,
		  char *errbuf);

/* Removes the blob; removing a missing blob succeeds (deletes are retried by gc). Only blobs
 * no record names are ever deleted, so a delete need not be durable: one a crash undoes leaves
 * an orphan for gc.
 * Errors: TEEMS_EINVAL, TEEMS_EIO, OBJ_EDENIED, OBJ_EUNAVAIL. */
int blobstore_delete(struct blobstore *store, const char *name, char *errbuf);

/* Errors: TEEMS_EINVAL, TEEMS_ENOTFOUND, TEEMS_EIO, OBJ_EDENIED, OBJ_EUNAVAIL. */
int blobstore_stat(struct blobstore *store, const char *name, struct blob_stat *st, char *errbuf);

/* Calls fn for every blob whose name starts with prefix ("" for all), in no particular order;
 * a non-zero return from fn stops the listing and is returned. name is borrowed for the call.
 * Errors: TEEMS_EINVAL, TEEMS_EIO, TEEMS_ECORRUPT (unparseable listing), OBJ_EDENIED,
 * OBJ_EUNAVAIL, TEEMS_ENOMEM. */
typedef int (*blob_list_fn)(void *arg, const char *name);
int blobstore_list(struct blobstore *store, const char *prefix, blob_list_fn fn, void *arg,
		   char *errbuf);

/* Removes what interrupted puts left inside the store itself, last modified before older_than
 * (seconds since the epoch): the dir store's `.tmp-*` files; the s3 store's incomplete multipart
 * uploads of blob names under its prefix, started before older_than and more than a day ago
 * (S3 keeps nothing of a single PUT that did not complete). *removed counts them. Errors:
 * TEEMS_EIO, TEEMS_ECORRUPT (a listing that does not parse), OBJ_EUNAVAIL, OBJ_EDENIED. */
int blobstore_sweep(struct blobstore *store, int64_t older_than, uint64_t *removed, char *errbuf);

#endif
