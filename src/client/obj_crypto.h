/* Chunked, streaming encryption of object blobs (DESIGN.md section 9; RR paper section V-B,
 * "the client generates a fresh symmetric key k and encrypts blob d with AES-GCM").
 *
 * Blob format v1 (docs/OBJECTS.md has the full table). All integers little-endian.
 *
 *   header (OBJ_HEADER_LEN = 96 bytes)
 *     0   magic "TEEMSOBJ"                       8
 *     8   format version = 1                     2
 *     10  flags = 0                              2
 *     12  chunk size (bytes of plaintext)        4
 *     16  SHA-256(object id)                    32
 *     48  object version                         8
 *     56  plaintext length                       8
 *     64  HMAC-SHA256(object_key, bytes 0..63)  32
 *   chunks i = 0 .. n-1, n = max(1, ceil(length / chunk size))
 *     ciphertext (chunk size bytes; the last one holds the rest, possibly 0) || GCM tag (16)
 *     key   = data_key (fresh from the CSPRNG for every encryption, so every version)
 *     nonce = 0x00000000 || le64(i)
 *     AD    = SHA-256(object id) || le64(version) || le32(chunk size) || le64(length) ||
 *             le64(i) || u8(final = i == n-1)
 *
 * Two keys, both kept only in the metadata record (which lives in the TEE-replicated service):
 * - data_key is new for every version and seals the chunks: a chunk of another version or
 *   object never authenticates, a reordered or swapped chunk fails its index, a dropped tail
 *   fails the length in the header or the final flag.
 * - object_key is created with the object and kept across its versions. It authenticates the
 *   header, so that a blob that is an *older* version of the same object can be proven to be one
 *   (OBJ_ESTALE) rather than reported as garbage: the header's version is read first, then
 *   confirmed by its MAC. Its chunks cannot be opened (their key is gone), and need not be.
 *
 * What is checked on a get is the AEAD and the header MAC, nothing else: every byte of the blob
 * is authenticated by them under keys from the fresh record. The two digests the encryptor
 * also produces add no security and are not checked when decrypting: pt_sha256 is a content
 * digest reported to users, blob_digest names the blob for the cache (obj.c verifies a cached
 * blob by decrypting it, not by hashing it).
 *
 * Memory: a decryptor holds one chunk record (chunk size + 16 bytes, or less for an object
 * smaller than a chunk); an encryptor of more than one chunk holds that plus a ring of two
 * plaintext chunks and a thread that computes pt_sha256 beside the encryption. Neither grows
 * with the object's size. */
#ifndef TEEMS_CLIENT_OBJ_CRYPTO_H
#define TEEMS_CLIENT_OBJ_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "client/obj_err.h"
#include "client/stream.h"
#include "tee/crypto.h"

#define OBJ_MAGIC "TEEMSOBJ"
#define OBJ_FORMAT_VERSION 1
#define OBJ_HEADER_LEN 96
#define OBJ_CHUNK_DEFAULT (1u << 20)
#define OBJ_CHUNK_MIN 16u
#define OBJ_CHUNK_MAX (64u << 20)
#define OBJ_NAME_MAX 64	 /* longest store name a metadata record keeps */
#define OBJ_USER_MAX 64	 /* longest user name in a policy */
#define OBJ_LIST_MAX 255 /* longest reader or writer list ("alice,bob") in a policy */

/* What the metadata record says about one version of an object (RR paper section 5.3:
 * <i, k, a, i_store, MAC(d)>, plus what streaming and the stale check need). The object id is
 * not in it: it is the record's key, passed beside it. */
struct obj_meta {
	uint64_t version;		 /* the object version this blob was written as */
	uint32_t chunk_size;		 /* plaintext bytes per chunk */
	uint64_t size;			 /* plaintext length */
	uint64_t blob_size;		 /* ciphertext length in the store */
	uint8_t data_key[TEE_KEY_LEN];	 /* per version, fresh; secret */
	uint8_t object_key[TEE_KEY_LEN]; /* per object, kept across versions; secret */
	/* SHA-256 of the plaintext as the writer computed it: reported to users (put, stat), not
	 * checked by a get (the chunks' GCM tags authenticate every byte). */
	uint8_t pt_sha256[TEE_SHA256_LEN];
	/* Names this exact blob, for the blob cache: SHA-256 of the blob's header followed by the
	 * GCM tags of all its chunks (record format 2), computed while encrypting at no extra
	 * pass over the data; the SHA-256 of the whole blob in format 1 records. Not checked by
	 * a get: a cached blob is authenticated by decryption, like one from the store. */
	uint8_t blob_digest[TEE_SHA256_LEN];
	char store_name[OBJ_NAME_MAX + 1]; /* where the blob lives in the store ("" if unset) */
	/* The object's policy (DESIGN.md section 9): its owner and who may read and write it,
	 * as user names separated by commas ("*": every user). "" owner: no policy. Kept in the
	 * record so that it travels with every version; see docs/OBJECTS.md ("Policies") for
	 * what enforces it today. */
	char owner[OBJ_USER_MAX + 1];
	char readers[OBJ_LIST_MAX + 1];
	char writers[OBJ_LIST_MAX + 1];
	/* 0: the current record format (OBJ_META_FORMAT); otherwise the older format this record
	 * was decoded from. Re-encoding keeps it, so that a format 1 record rewritten with a new
	 * policy still says what its blob_digest means. */
	uint8_t format;
};

/* The metadata record's encoding, as the service stores it under the object id (160 bytes
 * plus the store name; integers little-endian):
 *   0 u8 format = 2 | 1 u8 name length (0..OBJ_NAME_MAX) | 2 u16 flags | 4 u32 chunk size |
 *   8 u64 version | 16 u64 size | 24 u64 blob size | 32 data_key | 64 object_key |
 *   96 pt_sha256 | 128 blob_digest | 160 store name
 *   then, only when flags has OBJ_META_F_POLICY (set exactly when owner is not ""):
 *   u8 owner length (1..OBJ_USER_MAX) | owner | u8 readers length | readers |
 *   u8 writers length | writers
 * Other flags are refused. A record without a policy is byte for byte what format 1 was before
 * policies existed, so the flag, not a new format number, marks the extension.
 * Format 2 differs from format 1 only in what blob_digest is (format 1: the SHA-256 of the
 * whole blob, which clients of format 1 check on every get; format 2: the SHA-256 of the header
 * and the tags). The new number makes an old client refuse a new record as a newer format
 * instead of calling its blob tampered; format 1 records are still read.
 * The record holds secrets: it lives only in the TEE-replicated service and on TLS channels. */
#define OBJ_META_FORMAT 2
#define OBJ_META_FORMAT_MIN 1
#define OBJ_META_FIXED_LEN 160
#define OBJ_META_F_POLICY 1u
#define OBJ_META_MAX_LEN (OBJ_META_FIXED_LEN + OBJ_NAME_MAX + 3 + OBJ_USER_MAX + 2 * OBJ_LIST_MAX)

/* 1 if s is a valid user name: 1..OBJ_USER_MAX characters of [A-Za-z0-9._@-]. */
int obj_user_valid(const char *s);
/* 1 if s is a valid reader or writer list: "" or "*" or user names joined by single commas,
 * at most OBJ_LIST_MAX characters. */
int obj_user_list_valid(const char *s);
/* 1 if the list names user (or is "*"). */
int obj_user_list_has(const char *list, const char *user);

/* Writes the record into out (OBJ_META_MAX_LEN bytes) and returns its length, or 0 if meta is
 * not encodable (store name too long, an invalid policy, readers or writers without an
 * owner, an unknown format). */
size_t obj_meta_encode(const struct obj_meta *meta, uint8_t out[OBJ_META_MAX_LEN]);

/* Errors: TEEMS_EVERSION (a format other than 1 or 2), TEEMS_ECORRUPT (wrong length, flags, chunk
 * size out of range, blob size inconsistent with size and chunk size, invalid store name). */
int obj_meta_decode(const uint8_t *buf, size_t len, struct obj_meta *meta, char *errbuf);

/* The blob length for `size` plaintext bytes in chunks of chunk_size, or 0 if the arguments are
 * out of range (chunk size outside [OBJ_CHUNK_MIN, OBJ_CHUNK_MAX], or overflow). */
uint64_t obj_blob_size(uint64_t size, uint32_t chunk_size);

/* Fills a fresh object_key (for a new object) from the CSPRNG. Errors: TEEMS_ECRYPTO. */
int obj_new_object_key(uint8_t object_key[TEE_KEY_LEN]);

/* ---- encryption: a source of ciphertext over a source of plaintext ---- */

struct obj_enc;

/* Starts encrypting one version. Reads from meta: object_key, version, size (the plaintext
 * source must deliver exactly that many bytes), chunk_size (0 = OBJ_CHUNK_DEFAULT, written
 * back). Generates data_key. meta, object_id and plaintext are borrowed until obj_enc_free; on
 * completion (obj_enc_finish) meta's data_key, blob_size and both digests are filled. An
 * encryptor of more than one chunk starts a thread (joined by obj_enc_free) that computes
 * pt_sha256; if it cannot be started the hash is computed inline.
 * Errors: TEEMS_EINVAL (chunk size or size out of range), TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int obj_enc_new(struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *plaintext, struct obj_enc **out, char *errbuf);

/* The blob, as a source: exactly meta->blob_size bytes then the end. Its read errors:
 * the plaintext source's own, TEEMS_EIO if the plaintext ends before meta->size bytes,
 * TEEMS_EINVAL if it has more, TEEMS_ECRYPTO. Errors are sticky. */
struct obj_src obj_enc_src(struct obj_enc *enc);

/* The same bytes without a copy: *p points at the next record (the header, then each sealed
 * chunk) inside the encryptor, valid until the next call; *len == 0 at the end. Errors as
 * the source's. */
int obj_enc_next(struct obj_enc *enc, const uint8_t **p, size_t *len, char *errbuf);

/* Call after the source reported its end: checks the whole blob was produced and fills meta.
 * Errors: TEEMS_EINVAL (not finished), or the sticky error of the source. */
int obj_enc_finish(struct obj_enc *enc, char *errbuf);

/* Wipes the key material and frees. NULL is allowed. */
void obj_enc_free(struct obj_enc *enc);

/* One call: encrypt plaintext into sink. Same errors as above plus the sink's. */
int obj_encrypt(struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *plaintext, const struct obj_sink *blob, char *errbuf);

/* ---- decryption: a sink of ciphertext over a sink of plaintext ---- */

struct obj_dec;

/* Starts decrypting the blob that meta describes, for object_id. meta, object_id and plaintext
 * are borrowed until obj_dec_free. Plaintext is passed on one authenticated chunk at a time, so
 * a sink can receive a prefix of the object before a later chunk fails: on any error the caller
 * must discard what the sink received (a file sink writes to a temporary name and renames only
 * on success). Errors: TEEMS_EINVAL (meta out of range), TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int obj_dec_new(const struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_sink *plaintext, struct obj_dec **out, char *errbuf);

/* The decryptor as a sink for the blob's bytes, written in pieces of any size or pulled by
 * the decryptor itself from a source (obj_sink.pull: each chunk record is read straight into
 * its buffer). Its write errors (sticky): OBJ_ETAMPERED (bad
 * magic or format, header MAC, another object, a newer version than meta, header disagreeing
 * with meta, a chunk failing authentication, bytes after the last chunk), OBJ_ESTALE (an
 * authentic header of an older version of this object), TEEMS_ECRYPTO, and the plaintext
 * sink's errors. */
struct obj_sink obj_dec_sink(struct obj_dec *dec);

/* Call at the end of the blob. Errors: the sticky error if any; OBJ_ETRUNCATED if the blob
 * ended early (empty, inside the header, inside or at the boundary of a chunk). */
int obj_dec_finish(struct obj_dec *dec, char *errbuf);

void obj_dec_free(struct obj_dec *dec);

/* One call: decrypt blob into plaintext. Errors as above plus the source's. */
int obj_decrypt(const struct obj_meta *meta, const void *object_id, size_t object_id_len,
		const struct obj_src *blob, const struct obj_sink *plaintext, char *errbuf);

/* The record buffer an encryptor or decryptor allocates for chunk_size (at most; an object
 * smaller than a chunk gets a smaller one), and the most a blob source hands out at once. */
size_t obj_crypto_buffer_size(uint32_t chunk_size);

#endif
