/* Incarnation keys (src/tee/incarnation.c): Ed25519 per process start, sign and verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "tee/tee.h"
#include "teems/err.h"

static void unhex(const char *hex, uint8_t *out)
{
	for (size_t i = 0; i < strlen(hex) / 2; i++) {
		unsigned int b;
		sscanf(hex + 2 * i, "%2x", &b);
		out[i] = (uint8_t)b;
	}
}

static struct tee_incarnation *must_new(void)
{
	struct tee_incarnation *inc = NULL;

	assert_int_equal(tee_incarnation_new(&inc, NULL), TEEMS_OK);
	assert_non_null(inc);
	return inc;
}

/* RFC 8032 section 7.1, TEST 1 and TEST 2: the verifier agrees with the standard. */
static void test_verify_rfc8032_vectors(void **state)
{
	uint8_t pub[32], sig[64], msg[1];
	(void)state;

	unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pub);
	unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61"
	      "e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
	      sig);
	assert_int_equal(tee_incarnation_verify(pub, "", 0, sig), TEEMS_OK);
	assert_int_equal(tee_incarnation_verify(pub, "\0", 1, sig), TEEMS_EAUTH);

	unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", pub);
	unhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458"
	      "f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
	      sig);
	msg[0] = 0x72;
	assert_int_equal(tee_incarnation_verify(pub, msg, 1, sig), TEEMS_OK);
	msg[0] = 0x73;
	assert_int_equal(tee_incarnation_verify(pub, msg, 1, sig), TEEMS_EAUTH);
}

static void test_sign_verify(void **state)
{
	struct tee_incarnation *inc = must_new();
	uint8_t pub[32], sig[64], sig2[64];
	const char msg[] = "REGISTER replica 3";
	(void)state;

	tee_incarnation_public_key(inc, pub);
	assert_int_equal(tee_incarnation_sign(inc, msg, sizeof(msg), sig), TEEMS_OK);
	assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig), TEEMS_OK);
	/* Ed25519 is deterministic. */
	assert_int_equal(tee_incarnation_sign(inc, msg, sizeof(msg), sig2), TEEMS_OK);
	assert_memory_equal(sig, sig2, sizeof(sig));
	/* The empty message is a message. */
	assert_int_equal(tee_incarnation_sign(inc, "", 0, sig2), TEEMS_OK);
	assert_int_equal(tee_incarnation_verify(pub, "", 0, sig2), TEEMS_OK);
	assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig2), TEEMS_EAUTH);
	tee_incarnation_free(inc);
}

static void test_verify_rejects_alterations(void **state)
{
	struct tee_incarnation *inc = must_new();
	uint8_t pub[32], sig[64], msg[48];
	(void)state;

	memset(msg, 'm', sizeof(msg));
	tee_incarnation_public_key(inc, pub);
	assert_int_equal(tee_incarnation_sign(inc, msg, sizeof(msg), sig), TEEMS_OK);
	for (size_t i = 0; i < sizeof(sig) * 8; i++) {
		sig[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig), TEEMS_EAUTH);
		sig[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	for (size_t i = 0; i < sizeof(msg); i++) {
		msg[i] ^= 1;
		assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig), TEEMS_EAUTH);
		msg[i] ^= 1;
	}
	for (size_t i = 0; i < sizeof(pub); i++) {
		pub[i] ^= 0x10;
		assert_int_not_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig), TEEMS_OK);
		pub[i] ^= 0x10;
	}
	assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg) - 1, sig), TEEMS_EAUTH);
	assert_int_equal(tee_incarnation_verify(pub, msg, sizeof(msg), sig), TEEMS_OK);
	tee_incarnation_free(inc);
}

/* Every process start is a new identity: two incarnations never share a key, and one's
 * signature does not verify under the other's key. */
static void test_incarnations_are_distinct(void **state)
{
	struct tee_incarnation *a = must_new(), *b = must_new();
	uint8_t pa[32], pb[32], sig[64];
	(void)state;

	tee_incarnation_public_key(a, pa);
	tee_incarnation_public_key(b, pb);
	assert_memory_not_equal(pa, pb, sizeof(pa));
	assert_int_equal(tee_incarnation_sign(a, "x", 1, sig), TEEMS_OK);
	assert_int_equal(tee_incarnation_verify(pb, "x", 1, sig), TEEMS_EAUTH);
	assert_int_equal(tee_incarnation_verify(pa, "x", 1, sig), TEEMS_OK);
	tee_incarnation_free(a);
	tee_incarnation_free(b);
	tee_incarnation_free(NULL);
}

static void test_incarnation_allocation_failure(void **state)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tee_incarnation *inc = (struct tee_incarnation *)1;
	(void)state;

	teems_alloc_fault(0, 0);
	assert_int_equal(tee_incarnation_new(&inc, errbuf), TEEMS_ENOMEM);
	teems_alloc_fault(-1, 0);
	assert_null(inc);
	assert_non_null(strstr(errbuf, "out of memory"));
	inc = must_new();
	tee_incarnation_free(inc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_rfc8032_vectors),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_verify_rejects_alterations),
		cmocka_unit_test(test_incarnations_are_distinct),
		cmocka_unit_test(test_incarnation_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
