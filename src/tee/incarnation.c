/* Incarnation identity: a fresh Ed25519 key pair per process start (DESIGN.md section 4, Boot).
 *
 * The key is generated inside OpenSSL and never exported, so the only copy of the private key is
 * in the EVP_PKEY; OpenSSL clears it when the last reference is freed (ossl_ecx_key_free). The
 * struct itself holds only the public key, wiped anyway for uniformity. */
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/alloc.h"
#include "tee.h"
#include "teems/err.h"

struct tee_incarnation {
	EVP_PKEY *key;
	uint8_t pub[TEE_PUBLIC_KEY_LEN];
};

int tee_incarnation_new(struct tee_incarnation **out, char *errbuf)
{
	struct tee_incarnation *inc;
	size_t n = TEE_PUBLIC_KEY_LEN;
	int rv;

	*out = NULL;
	inc = teems_calloc(1, sizeof(*inc));
	if (inc == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "incarnation: out of memory");
	inc->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (inc->key == NULL) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO,
				"incarnation: Ed25519 key generation failed");
		goto err_free;
	}
	if (EVP_PKEY_get_raw_public_key(inc->key, inc->pub, &n) != 1 || n != TEE_PUBLIC_KEY_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "incarnation: cannot export public key");
		goto err_free;
	}
	*out = inc;
	return TEEMS_OK;

err_free:
	ERR_clear_error();
	tee_incarnation_free(inc);
	return rv;
}

void tee_incarnation_free(struct tee_incarnation *inc)
{
	if (inc == NULL)
		return;
	EVP_PKEY_free(inc->key);
	tee_wipe(inc, sizeof(*inc));
	teems_free(inc);
}

void tee_incarnation_public_key(const struct tee_incarnation *inc, uint8_t out[TEE_PUBLIC_KEY_LEN])
{
	for (size_t i = 0; i < TEE_PUBLIC_KEY_LEN; i++)
		out[i] = inc->pub[i];
}

int tee_incarnation_sign(const struct tee_incarnation *inc, const void *msg, size_t len,
			 uint8_t sig[TEE_SIGNATURE_LEN])
{
	EVP_MD_CTX *ctx;
	size_t n = TEE_SIGNATURE_LEN;
	int rv = TEEMS_OK;

	/* One context per call: EVP_PKEY is safe to share between threads, contexts are not. */
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return TEEMS_ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, inc->key) != 1 ||
	    EVP_DigestSign(ctx, sig, &n, msg, len) != 1 || n != TEE_SIGNATURE_LEN) {
		ERR_clear_error();
		rv = TEEMS_ECRYPTO;
	}
	EVP_MD_CTX_free(ctx);
	return rv;
}

int tee_incarnation_verify(const uint8_t pub[TEE_PUBLIC_KEY_LEN], const void *msg, size_t len,
			   const uint8_t sig[TEE_SIGNATURE_LEN])
{
	EVP_PKEY *key;
	EVP_MD_CTX *ctx;
	int rv = TEEMS_OK;

	key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, TEE_PUBLIC_KEY_LEN);
	if (key == NULL) {
		ERR_clear_error();
		return TEEMS_ECRYPTO;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		rv = TEEMS_ECRYPTO;
		goto out_key;
	}
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) != 1) {
		rv = TEEMS_ECRYPTO;
		goto out_ctx;
	}
	/* 1 is "verifies"; 0 and the negative "malformed signature" answers are both a
	 * signature that does not verify. */
	if (EVP_DigestVerify(ctx, sig, TEE_SIGNATURE_LEN, msg, len) != 1)
		rv = TEEMS_EAUTH;
out_ctx:
	EVP_MD_CTX_free(ctx);
out_key:
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rv;
}
