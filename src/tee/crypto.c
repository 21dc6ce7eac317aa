#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "teems/err.h"

int tee_aead_init(struct tee_aead *aead, const uint8_t key[TEE_KEY_LEN])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	aead->ctx = NULL;
	if (ctx == NULL)
		return TEEMS_ENOMEM;
	/* Load the key once; each record only sets its nonce. */
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, 1) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return TEEMS_ECRYPTO;
	}
	aead->ctx = ctx;
	return TEEMS_OK;
}

void tee_aead_free(struct tee_aead *aead)
{
	EVP_CIPHER_CTX_free(aead->ctx); /* clears the key schedule */
	aead->ctx = NULL;
}

/* GCM with OpenSSL wants int lengths: split nothing, refuse what does not fit. */
static int aead_crypt(EVP_CIPHER_CTX *ctx, int enc, const uint8_t nonce[TEE_NONCE_LEN],
		      const void *ad, size_t ad_len, const void *in, size_t len, void *out)
{
	int n;

	if (len > INT32_MAX || ad_len > INT32_MAX)
		return TEEMS_ECRYPTO;
	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, enc) != 1)
		return TEEMS_ECRYPTO;
	if (ad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, ad, (int)ad_len) != 1)
		return TEEMS_ECRYPTO;
	if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

int tee_aead_seal(struct tee_aead *aead, const uint8_t nonce[TEE_NONCE_LEN], const void *ad,
		  size_t ad_len, const void *pt, size_t len, void *ct, uint8_t tag[TEE_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = aead->ctx;
	uint8_t last[16];
	int n, rv;

	rv = aead_crypt(ctx, 1, nonce, ad, ad_len, pt, len, ct);
	if (rv != TEEMS_OK)
		return rv;
	if (EVP_CipherFinal_ex(ctx, last, &n) != 1)
		return TEEMS_ECRYPTO;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TEE_TAG_LEN, tag) != 1)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

int tee_aead_open(struct tee_aead *aead, const uint8_t nonce[TEE_NONCE_LEN], const void *ad,
		  size_t ad_len, const void *ct, size_t len, const uint8_t tag[TEE_TAG_LEN],
		  void *pt)
{
	EVP_CIPHER_CTX *ctx = aead->ctx;
	uint8_t last[16];
	int n, rv;

	rv = aead_crypt(ctx, 0, nonce, ad, ad_len, ct, len, pt);
	if (rv != TEEMS_OK)
		return rv;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TEE_TAG_LEN, (void *)tag) != 1)
		return TEEMS_ECRYPTO;
	if (EVP_CipherFinal_ex(ctx, last, &n) != 1)
		return TEEMS_EAUTH;
	return TEEMS_OK;
}

int tee_hkdf(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
	     size_t info_len, void *out, size_t out_len)
{
	EVP_KDF *kdf;
	EVP_KDF_CTX *kctx;
	OSSL_PARAM params[5], *p = params;
	int rv = TEEMS_OK;

	if (out_len > 255 * TEE_SHA256_LEN)
		return TEEMS_EINVAL;
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf == NULL)
		return TEEMS_ECRYPTO;
	kctx = EVP_KDF_CTX_new(kdf);
	EVP_KDF_free(kdf);
	if (kctx == NULL)
		return TEEMS_ENOMEM;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
	if (salt != NULL && salt_len > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
							 salt_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, out_len, params) != 1)
		rv = TEEMS_ECRYPTO;
	EVP_KDF_CTX_free(kctx);
	return rv;
}

void tee_sha256(const void *data, size_t len, uint8_t out[TEE_SHA256_LEN])
{
	unsigned int n = TEE_SHA256_LEN;

	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

int tee_random(void *buf, size_t len)
{
	if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

int tee_memcmp_ct(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len);
}

void tee_wipe(void *p, size_t len)
{
	OPENSSL_cleanse(p, len);
}
