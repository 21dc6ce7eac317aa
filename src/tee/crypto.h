/* Thin, allocation-free wrappers over OpenSSL 3 for the primitives teems uses everywhere:
 * AES-256-GCM, HKDF-SHA256, SHA-256, and the OS random generator.
 *
 * Nonce discipline is the caller's job and each caller documents it next to its key:
 * the sealing API (tee.h) derives a fresh key per sealed blob; the WAL derives a fresh subkey per
 * writer incarnation and uses a counter (src/store/wal.c). */
#ifndef TEEMS_TEE_CRYPTO_H
#define TEEMS_TEE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define TEE_KEY_LEN 32	 /* AES-256 */
#define TEE_NONCE_LEN 12 /* GCM's 96-bit nonce */
#define TEE_TAG_LEN 16	 /* GCM tag */
#define TEE_SHA256_LEN 32

/* An AES-256-GCM key schedule, reusable for many records (one EVP context per key).
 * Not thread-safe: one context per thread. */
struct tee_aead {
	void *ctx; /* EVP_CIPHER_CTX *, owned */
};

/* Errors: TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tee_aead_init(struct tee_aead *aead, const uint8_t key[TEE_KEY_LEN]);
void tee_aead_free(struct tee_aead *aead);

/* Encrypts len bytes of pt into ct (may equal pt) and writes the tag.
 * Errors: TEEMS_ECRYPTO. */
int tee_aead_seal(struct tee_aead *aead, const uint8_t nonce[TEE_NONCE_LEN], const void *ad,
		  size_t ad_len, const void *pt, size_t len, void *ct, uint8_t tag[TEE_TAG_LEN]);

/* Decrypts and authenticates; on TEEMS_EAUTH the contents of pt are unspecified and must not be
 * used. Errors: TEEMS_EAUTH, TEEMS_ECRYPTO. */
int tee_aead_open(struct tee_aead *aead, const uint8_t nonce[TEE_NONCE_LEN], const void *ad,
		  size_t ad_len, const void *ct, size_t len, const uint8_t tag[TEE_TAG_LEN],
		  void *pt);

/* HKDF-SHA256 (RFC 5869) extract-and-expand into out_len bytes. salt may be NULL.
 * Errors: TEEMS_EINVAL (out_len too large), TEEMS_ECRYPTO. */
int tee_hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
	     size_t info_len, void *out, size_t out_len);

/* SHA-256 of one buffer. Cannot fail. */
void tee_sha256(const void *data, size_t len, uint8_t out[TEE_SHA256_LEN]);

/* Fills buf from the OS CSPRNG. Errors: TEEMS_ECRYPTO. */
int tee_random(void *buf, size_t len);

/* Constant-time comparison; returns 0 when equal. */
int tee_memcmp_ct(const void *a, const void *b, size_t len);

/* Overwrites secrets before memory is released. */
void tee_wipe(void *p, size_t len);

#endif
