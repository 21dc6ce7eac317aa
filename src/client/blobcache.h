/* The local blob cache (RR paper section V-D, "value/blob cache: fetch metadata, compare the
 * hash to the cached blob, return on match"): ciphertext blobs kept in a local directory under
 * the hex of a 32-byte key, the blob_digest of the record that names them (obj_crypto.h).
 *
 * The metadata is always read fresh from the service first; the cache is only consulted for
 * the blob_digest that fresh metadata names, so a cached blob can never make a read stale. The
 * cache directory is as untrusted as the store, and this module checks nothing: its caller
 * (obj_get_blob) authenticates a cached blob completely, by decrypting it under the fresh
 * record's keys, before any of its plaintext goes out, and commits a fill only after the blob
 * decrypted completely.
 *
 * Not safe for concurrent use of one handle by several threads; several processes may share a
 * directory (fills are written to temporary names and renamed into place). */
#ifndef TEEMS_CLIENT_BLOBCACHE_H
#define TEEMS_CLIENT_BLOBCACHE_H

#include <stdint.h>

#include "client/stream.h"
#include "tee/crypto.h"

struct blobcache;
struct blobcache_fill;

/* Opens (creating it if needed) a cache directory holding at most max_bytes (0 = no limit; the
 * limit is enforced by blobcache_trim, which commit calls).
 * Errors: TEEMS_EINVAL, TEEMS_EIO, TEEMS_ENOMEM. */
int blobcache_open(const char *dir, uint64_t max_bytes, struct blobcache **out, char *errbuf);
void blobcache_close(struct blobcache *cache);

/* Streams the blob cached under key into sink, unchecked (see above).
 * Errors: TEEMS_ENOTFOUND (not cached), TEEMS_EIO, TEEMS_ENOMEM, the sink's errors. */
int blobcache_get(struct blobcache *cache, const uint8_t key[TEE_SHA256_LEN],
		  const struct obj_sink *sink, char *errbuf);

/* Fills the cache while a blob streams from the store: begin, write through the sink, then
 * commit under the key the metadata names (only once the blob authenticated completely) or
 * abort. Both commit and abort free the fill. Errors: TEEMS_EIO, TEEMS_ENOMEM. */
int blobcache_fill_begin(struct blobcache *cache, struct blobcache_fill **out, char *errbuf);
struct obj_sink blobcache_fill_sink(struct blobcache_fill *fill);
int blobcache_fill_commit(struct blobcache_fill *fill, const uint8_t key[TEE_SHA256_LEN],
			  char *errbuf);
void blobcache_fill_abort(struct blobcache_fill *fill);

/* Removes the least recently used blobs (by modification time; a hit refreshes it) until the
 * cache holds at most max_bytes. Errors: TEEMS_EIO. */
int blobcache_trim(struct blobcache *cache, char *errbuf);

/* Removes one entry if present. Errors: TEEMS_EIO. */
int blobcache_drop(struct blobcache *cache, const uint8_t key[TEE_SHA256_LEN], char *errbuf);

#endif
