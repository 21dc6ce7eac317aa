/* src/tee/crypto.c: known-answer vectors (RFC 5869, the GCM specification, FIPS 180-2) and the
 * AEAD's refusal of every kind of tampering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tee/crypto.h"
#include "teems/err.h"

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned int b;
		sscanf(hex + 2 * i, "%2x", &b);
		out[i] = (uint8_t)b;
	}
	return n;
}

/* RFC 5869, A.1 (Test Case 1): basic test case with SHA-256. */
static void test_hkdf_rfc5869_case1(void **state)
{
	uint8_t ikm[22], salt[13], info[10], okm[42], want[42];
	(void)state;

	memset(ikm, 0x0b, sizeof(ikm));
	unhex("000102030405060708090a0b0c", salt);
	unhex("f0f1f2f3f4f5f6f7f8f9", info);
	unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b88718586"
	      "5",
	      want);
	assert_int_equal(tee_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm,
				  sizeof(okm)),
			 TEEMS_OK);
	assert_memory_equal(okm, want, sizeof(want));
}

/* RFC 5869, A.3 (Test Case 3): zero-length salt and info. */
static void test_hkdf_rfc5869_case3(void **state)
{
	uint8_t ikm[22], okm[42], want[42];
	(void)state;

	memset(ikm, 0x0b, sizeof(ikm));
	unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c"
	      "8",
	      want);
	assert_int_equal(tee_hkdf(ikm, sizeof(ikm), NULL, 0, "", 0, okm, sizeof(okm)), TEEMS_OK);
	assert_memory_equal(okm, want, sizeof(want));
}

static void test_hkdf_refuses_long_output(void **state)
{
	static uint8_t out[255 * 32 + 1];
	(void)state;

	assert_int_equal(tee_hkdf("k", 1, NULL, 0, "i", 1, out, sizeof(out)), TEEMS_EINVAL);
	assert_int_equal(tee_hkdf("k", 1, NULL, 0, "i", 1, out, sizeof(out) - 1), TEEMS_OK);
}

static void test_sha256_abc(void **state)
{
	uint8_t got[TEE_SHA256_LEN], want[TEE_SHA256_LEN];
	(void)state;

	unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
	tee_sha256("abc", 3, got);
	assert_memory_equal(got, want, sizeof(want));
}

/* The GCM specification (McGrew and Viega), test cases 13 and 14: 256-bit zero key, zero IV. */
static void test_aead_known_answer(void **state)
{
	uint8_t key[TEE_KEY_LEN] = {0}, nonce[TEE_NONCE_LEN] = {0};
	uint8_t pt[16] = {0}, ct[16], tag[TEE_TAG_LEN], want_ct[16], want_tag[TEE_TAG_LEN];
	struct tee_aead aead;
	(void)state;

	assert_int_equal(tee_aead_init(&aead, key), TEEMS_OK);
	assert_int_equal(tee_aead_seal(&aead, nonce, NULL, 0, NULL, 0, NULL, tag), TEEMS_OK);
	unhex("530f8afbc74536b9a963b4f1c4cb738b", want_tag);
	assert_memory_equal(tag, want_tag, TEE_TAG_LEN);

	assert_int_equal(tee_aead_seal(&aead, nonce, NULL, 0, pt, sizeof(pt), ct, tag), TEEMS_OK);
	unhex("cea7403d4d606b6e074ec5d3baf39d18", want_ct);
	unhex("d0d1c8a799996bf0265b98b5d48ab919", want_tag);
	assert_memory_equal(ct, want_ct, sizeof(ct));
	assert_memory_equal(tag, want_tag, TEE_TAG_LEN);
	tee_aead_free(&aead);
	assert_null(aead.ctx);
}

static void test_aead_round_trip(void **state)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 1000, 65537};
	uint8_t key[TEE_KEY_LEN], nonce[TEE_NONCE_LEN], tag[TEE_TAG_LEN], ad[20];
	static uint8_t pt[65537], ct[65537], back[65537];
	struct tee_aead aead;
	(void)state;

	assert_int_equal(tee_random(key, sizeof(key)), TEEMS_OK);
	assert_int_equal(tee_random(pt, sizeof(pt)), TEEMS_OK);
	memset(ad, 'a', sizeof(ad));
	assert_int_equal(tee_aead_init(&aead, key), TEEMS_OK);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i];

		memset(nonce, (int)i, sizeof(nonce));
		assert_int_equal(tee_aead_seal(&aead, nonce, ad, sizeof(ad), pt, n, ct, tag),
				 TEEMS_OK);
		if (n >= 16)
			assert_memory_not_equal(ct, pt, n);
		assert_int_equal(tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, n, tag, back),
				 TEEMS_OK);
		assert_memory_equal(back, pt, n);
	}
	/* In place: ct == pt. */
	memcpy(back, pt, 1000);
	assert_int_equal(tee_aead_seal(&aead, nonce, NULL, 0, back, 1000, back, tag), TEEMS_OK);
	assert_int_equal(tee_aead_open(&aead, nonce, NULL, 0, back, 1000, tag, back), TEEMS_OK);
	assert_memory_equal(back, pt, 1000);
	tee_aead_free(&aead);
}

static void test_aead_tamper(void **state)
{
	uint8_t key[TEE_KEY_LEN], key2[TEE_KEY_LEN], nonce[TEE_NONCE_LEN] = {1};
	uint8_t pt[64], ct[64], back[64], tag[TEE_TAG_LEN], ad[8] = "assoc";
	struct tee_aead aead, other;
	(void)state;

	assert_int_equal(tee_random(key, sizeof(key)), TEEMS_OK);
	memcpy(key2, key, sizeof(key));
	key2[31] ^= 1;
	memset(pt, 'p', sizeof(pt));
	assert_int_equal(tee_aead_init(&aead, key), TEEMS_OK);
	assert_int_equal(tee_aead_seal(&aead, nonce, ad, sizeof(ad), pt, sizeof(pt), ct, tag),
			 TEEMS_OK);

	for (size_t i = 0; i < TEE_TAG_LEN * 8; i++) {
		tag[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(
			tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			TEEMS_EAUTH);
		tag[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	for (size_t i = 0; i < sizeof(ct); i++) {
		ct[i] ^= 0x40;
		assert_int_equal(
			tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			TEEMS_EAUTH);
		ct[i] ^= 0x40;
	}
	for (size_t i = 0; i < sizeof(ad); i++) {
		ad[i] ^= 0x01;
		assert_int_equal(
			tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			TEEMS_EAUTH);
		ad[i] ^= 0x01;
	}
	assert_int_equal(tee_aead_open(&aead, nonce, ad, sizeof(ad) - 1, ct, sizeof(ct), tag, back),
			 TEEMS_EAUTH);
	assert_int_equal(tee_aead_open(&aead, nonce, NULL, 0, ct, sizeof(ct), tag, back),
			 TEEMS_EAUTH);
	assert_int_equal(tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct) - 1, tag, back),
			 TEEMS_EAUTH);
	nonce[0] ^= 1;
	assert_int_equal(tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			 TEEMS_EAUTH);
	nonce[0] ^= 1;

	assert_int_equal(tee_aead_init(&other, key2), TEEMS_OK);
	assert_int_equal(tee_aead_open(&other, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			 TEEMS_EAUTH);
	tee_aead_free(&other);

	/* The context still works after failures. */
	assert_int_equal(tee_aead_open(&aead, nonce, ad, sizeof(ad), ct, sizeof(ct), tag, back),
			 TEEMS_OK);
	assert_memory_equal(back, pt, sizeof(pt));
	tee_aead_free(&aead);
}

static void test_random_compare_wipe(void **state)
{
	uint8_t a[32], b[32], zero[32] = {0};
	(void)state;

	assert_int_equal(tee_random(a, sizeof(a)), TEEMS_OK);
	assert_int_equal(tee_random(b, sizeof(b)), TEEMS_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(tee_memcmp_ct(a, a, sizeof(a)), 0);
	assert_int_not_equal(tee_memcmp_ct(a, b, sizeof(a)), 0);
	memcpy(b, a, sizeof(a));
	b[31] ^= 0x80;
	assert_int_not_equal(tee_memcmp_ct(a, b, sizeof(a)), 0);
	tee_wipe(a, sizeof(a));
	assert_memory_equal(a, zero, sizeof(a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hkdf_rfc5869_case1),
		cmocka_unit_test(test_hkdf_rfc5869_case3),
		cmocka_unit_test(test_hkdf_refuses_long_output),
		cmocka_unit_test(test_sha256_abc),
		cmocka_unit_test(test_aead_known_answer),
		cmocka_unit_test(test_aead_round_trip),
		cmocka_unit_test(test_aead_tamper),
		cmocka_unit_test(test_random_compare_wipe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
