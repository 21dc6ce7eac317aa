/* The sealed-blob format (tee.h, "Sealing"): version | salt | ciphertext | tag.
 *
 * Each blob gets its own AES-256-GCM key, HKDF(key, salt, "teems sealed blob v1"), where the salt
 * is 32 fresh random bytes. A key therefore encrypts exactly one plaintext and the nonce can be a
 * constant: no counter to persist, nothing a rollback of sealed files could rewind (DESIGN.md
 * section 2, Rollback). The version byte selects the derivation, so it is bound to the key; the
 * salt is bound as the HKDF salt; the caller's associated data goes to GCM. */
#include <string.h>

#include "tee.h"
#include "teems/err.h"

static const char blob_info[] = "teems sealed blob v1";
static const uint8_t blob_nonce[TEE_NONCE_LEN]; /* all zero: one key, one message */

static int blob_key(const uint8_t key[TEE_KEY_LEN], const uint8_t salt[TEE_SEAL_SALT_LEN],
		    struct tee_aead *aead)
{
	uint8_t k[TEE_KEY_LEN];
	int rv;

	rv = tee_hkdf(key, TEE_KEY_LEN, salt, TEE_SEAL_SALT_LEN, blob_info, sizeof(blob_info) - 1,
		      k, sizeof(k));
	if (rv == TEEMS_OK)
		rv = tee_aead_init(aead, k);
	tee_wipe(k, sizeof(k));
	return rv;
}

int tee_blob_seal(const uint8_t key[TEE_KEY_LEN], const void *ad, size_t ad_len, const void *pt,
		  size_t len, void *out, size_t *out_len)
{
	uint8_t *o = out;
	struct tee_aead aead;
	int rv;

	if (len > TEE_SEAL_MAX_PLAINTEXT || (len > 0 && pt == NULL) || (ad_len > 0 && ad == NULL))
		return TEEMS_EINVAL;
	if (out == NULL || out_len == NULL || *out_len < len + TEE_SEAL_OVERHEAD)
		return TEEMS_EINVAL;

	o[0] = TEE_SEAL_VERSION;
	rv = tee_random(o + 1, TEE_SEAL_SALT_LEN);
	if (rv != TEEMS_OK)
		return rv;
	rv = blob_key(key, o + 1, &aead);
	if (rv != TEEMS_OK)
		return rv;
	rv = tee_aead_seal(&aead, blob_nonce, ad, ad_len, pt, len, o + 1 + TEE_SEAL_SALT_LEN,
			   o + 1 + TEE_SEAL_SALT_LEN + len);
	tee_aead_free(&aead);
	if (rv != TEEMS_OK) {
		tee_wipe(out, len + TEE_SEAL_OVERHEAD);
		return rv;
	}
	*out_len = len + TEE_SEAL_OVERHEAD;
	return TEEMS_OK;
}

int tee_blob_unseal(const uint8_t key[TEE_KEY_LEN], const void *ad, size_t ad_len, const void *in,
		    size_t in_len, void *out, size_t *out_len)
{
	const uint8_t *b = in;
	struct tee_aead aead;
	size_t len;
	int rv;

	if ((in_len > 0 && in == NULL) || (ad_len > 0 && ad == NULL) || out_len == NULL)
		return TEEMS_EINVAL;
	if (in_len == 0 || b[0] == 0)
		return TEEMS_ECORRUPT;
	if (b[0] != TEE_SEAL_VERSION)
		return TEEMS_EVERSION;
	/* A blob too short to hold salt and tag is one that was truncated (or never sealed): as
	 * for any other blob that cannot be authenticated, the answer is EAUTH, so callers that
	 * treat EAUTH as "not authentic, maybe rolled back" (DESIGN.md section 7) see one case. */
	if (in_len < TEE_SEAL_OVERHEAD)
		return TEEMS_EAUTH;
	len = in_len - TEE_SEAL_OVERHEAD;
	if (len > TEE_SEAL_MAX_PLAINTEXT)
		return TEEMS_EAUTH; /* we never seal this much, so it was not sealed by us */
	if (*out_len < len || (len > 0 && out == NULL))
		return TEEMS_EINVAL;

	rv = blob_key(key, b + 1, &aead);
	if (rv != TEEMS_OK)
		return rv;
	rv = tee_aead_open(&aead, blob_nonce, ad, ad_len, b + 1 + TEE_SEAL_SALT_LEN, len,
			   b + 1 + TEE_SEAL_SALT_LEN + len, out);
	tee_aead_free(&aead);
	if (rv != TEEMS_OK) {
		/* GCM decrypts before it checks the tag: never leave unauthenticated plaintext. */
		if (len > 0)
			tee_wipe(out, len);
		return rv;
	}
	*out_len = len;
	return TEEMS_OK;
}
