/* Quotes (src/tee/quote.c and the sim signer in sim.c): encoding, and a verifier that tells a
 * foreign root, a tampered quote, other code and a malformed encoding apart. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "tee/tee.h"
#include "teems/err.h"

static const uint8_t meas_a[TEE_MEASUREMENT_LEN] = {0xa1, 0xa2, 0xa3};
static const uint8_t meas_b[TEE_MEASUREMENT_LEN] = {0xb1, 0xb2, 0xb3};

struct fixture {
	char dir[PATH_MAX];
	char other[PATH_MAX]; /* another host: another fused secret, another root */
	struct tee *tee;      /* replica 1, meas_a, on dir */
	uint8_t root[TEE_PUBLIC_KEY_LEN];
	uint8_t report[TEE_REPORT_DATA_LEN];
	uint8_t enc[TEE_QUOTE_LEN]; /* a genuine quote of report by tee */
};

/* out = a "/" b; PATH_MAX bytes. */
static void join(char *out, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	assert_true(la + 1 + lb < PATH_MAX);
	memcpy(out, a, la);
	out[la] = '/';
	memcpy(out + la + 1, b, lb + 1);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct tee *open_sim(const char *dir, uint32_t replica, const uint8_t *meas)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tee_options o;
	struct tee *tee = NULL;
	int rv;

	memset(&o, 0, sizeof(o));
	o.platform_dir = dir;
	o.replica_id = replica;
	o.measurement = meas;
	o.no_clock = true;
	rv = tee_open(&o, &tee, errbuf);
	if (rv != TEEMS_OK)
		print_error("tee_open: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	return tee;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	struct tee_quote q;

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/teems-tee-quote-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	join(f->other, f->dir, "other-host");
	f->tee = open_sim(f->dir, 1, meas_a);
	if (tee_root_public_key(f->tee, f->root) != TEEMS_OK)
		return -1;
	for (int i = 0; i < TEE_REPORT_DATA_LEN; i++)
		f->report[i] = (uint8_t)(i * 7 + 1);
	if (tee_quote(f->tee, f->report, &q) != TEEMS_OK)
		return -1;
	tee_quote_encode(&q, f->enc);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tee_close(f->tee);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void test_quote_verifies(void **state)
{
	struct fixture *f = *state;
	uint8_t report[TEE_REPORT_DATA_LEN];
	struct tee_quote q;

	memset(report, 0, sizeof(report));
	assert_int_equal(tee_quote_verify(f->root, meas_a, f->enc, sizeof(f->enc), report),
			 TEEMS_OK);
	assert_memory_equal(report, f->report, sizeof(report));
	assert_int_equal(tee_quote_verify(f->root, meas_a, f->enc, sizeof(f->enc), NULL), TEEMS_OK);

	assert_int_equal(tee_quote_decode(f->enc, sizeof(f->enc), &q), TEEMS_OK);
	assert_int_equal(q.version, TEE_QUOTE_VERSION);
	assert_int_equal(q.platform, TEE_PLATFORM_SIM);
	assert_memory_equal(q.measurement, meas_a, TEE_MEASUREMENT_LEN);
	assert_memory_equal(q.report_data, f->report, TEE_REPORT_DATA_LEN);
}

static void test_quote_encoding_layout(void **state)
{
	struct fixture *f = *state;
	uint8_t id[TEE_SHA256_LEN], again[TEE_QUOTE_LEN];
	struct tee_quote q;

	assert_memory_equal(f->enc, "TMQT", 4);
	assert_int_equal(get_le16(f->enc + 4), 1);
	assert_int_equal(get_le16(f->enc + 6), TEE_PLATFORM_SIM);
	assert_int_equal(get_le32(f->enc + 8), 0);
	tee_sha256(f->root, sizeof(f->root), id);
	assert_memory_equal(f->enc + 12, id, sizeof(id));
	assert_memory_equal(f->enc + 44, meas_a, TEE_MEASUREMENT_LEN);
	assert_memory_equal(f->enc + 76, f->report, TEE_REPORT_DATA_LEN);
	assert_int_equal(tee_quote_decode(f->enc, sizeof(f->enc), &q), TEEMS_OK);
	tee_quote_encode(&q, again);
	assert_memory_equal(again, f->enc, TEE_QUOTE_LEN);
}

/* The root is a function of the host's fused secret only: every replica on the host shares it,
 * whatever its replica id or measurement. */
static void test_root_shared_by_host(void **state)
{
	struct fixture *f = *state;
	uint8_t root2[TEE_PUBLIC_KEY_LEN], enc[TEE_QUOTE_LEN];
	struct tee_quote q;
	struct tee *t2 = open_sim(f->dir, 2, meas_b);

	assert_int_equal(tee_root_public_key(t2, root2), TEEMS_OK);
	assert_memory_equal(root2, f->root, sizeof(root2));
	assert_int_equal(tee_quote(t2, f->report, &q), TEEMS_OK);
	tee_quote_encode(&q, enc);
	assert_int_equal(tee_quote_verify(f->root, meas_b, enc, sizeof(enc), NULL), TEEMS_OK);
	tee_close(t2);
}

static void test_quote_other_root(void **state)
{
	struct fixture *f = *state;
	uint8_t other_root[TEE_PUBLIC_KEY_LEN], enc[TEE_QUOTE_LEN];
	struct tee_quote q;
	struct tee *t2 = open_sim(f->other, 1, meas_a);

	assert_int_equal(tee_root_public_key(t2, other_root), TEEMS_OK);
	assert_memory_not_equal(other_root, f->root, sizeof(other_root));
	/* Our quote checked against their root, and theirs against ours. */
	assert_int_equal(tee_quote_verify(other_root, meas_a, f->enc, sizeof(f->enc), NULL),
			 TEEMS_EQUOTE_ROOT);
	assert_int_equal(tee_quote(t2, f->report, &q), TEEMS_OK);
	tee_quote_encode(&q, enc);
	assert_int_equal(tee_quote_verify(f->root, meas_a, enc, sizeof(enc), NULL),
			 TEEMS_EQUOTE_ROOT);

	/* A quote signed by another root that claims ours is a forgery, not "another root". */
	memcpy(enc + 12, f->enc + 12, TEE_SHA256_LEN);
	assert_int_equal(tee_quote_verify(f->root, meas_a, enc, sizeof(enc), NULL),
			 TEEMS_EQUOTE_TAMPERED);
	tee_close(t2);
}

static void test_quote_other_measurement(void **state)
{
	struct fixture *f = *state;
	uint8_t report[TEE_REPORT_DATA_LEN];

	memset(report, 0x5a, sizeof(report));
	assert_int_equal(tee_quote_verify(f->root, meas_b, f->enc, sizeof(f->enc), report),
			 TEEMS_EQUOTE_MEASUREMENT);
	for (int i = 0; i < TEE_REPORT_DATA_LEN; i++)
		assert_int_equal(report[i], 0x5a); /* nothing copied out of a rejected quote */
}

/* The wire form of a quote: 4 magic, 2 version, 2 platform, 4 reserved, 32 root key id,
 * 32 measurement, 64 report data, 64 signature. */
static int expected_flip_error(size_t offset)
{
	if (offset < 4)
		return TEEMS_ECORRUPT;
	if (offset < 8)
		return TEEMS_EVERSION;
	if (offset < 12)
		return TEEMS_ECORRUPT;
	if (offset < 44)
		return TEEMS_EQUOTE_ROOT;
	return TEEMS_EQUOTE_TAMPERED; /* measurement, report data, signature */
}

static void test_quote_every_bit_flipped(void **state)
{
	struct fixture *f = *state;
	uint8_t enc[TEE_QUOTE_LEN], report[TEE_REPORT_DATA_LEN];

	memcpy(enc, f->enc, sizeof(enc));
	for (size_t i = 0; i < TEE_QUOTE_LEN; i++) {
		for (int bit = 0; bit < 8; bit++) {
			enc[i] ^= (uint8_t)(1u << bit);
			memset(report, 0x5a, sizeof(report));
			assert_int_equal(
				tee_quote_verify(f->root, meas_a, enc, sizeof(enc), report),
				expected_flip_error(i));
			for (int k = 0; k < TEE_REPORT_DATA_LEN; k++)
				assert_int_equal(report[k], 0x5a);
			enc[i] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(tee_quote_verify(f->root, meas_a, enc, sizeof(enc), NULL), TEEMS_OK);
}

static void test_quote_bad_lengths(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[TEE_QUOTE_LEN + 1];
	struct tee_quote q;

	memcpy(buf, f->enc, TEE_QUOTE_LEN);
	buf[TEE_QUOTE_LEN] = 0;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		if (len == TEE_QUOTE_LEN)
			continue;
		assert_int_equal(tee_quote_decode(buf, len, &q), TEEMS_ECORRUPT);
		assert_int_equal(tee_quote_verify(f->root, meas_a, buf, len, NULL), TEEMS_ECORRUPT);
	}
	assert_int_equal(tee_quote_decode(NULL, TEE_QUOTE_LEN, &q), TEEMS_ECORRUPT);
}

static void test_quote_bad_header_fields(void **state)
{
	struct fixture *f = *state;
	uint8_t enc[TEE_QUOTE_LEN];
	struct tee_quote q;

	memcpy(enc, f->enc, sizeof(enc));
	put_le16(enc + 4, 2);
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_EVERSION);
	put_le16(enc + 4, 0);
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_EVERSION);
	put_le16(enc + 4, 1);
	put_le16(enc + 6, 2); /* a platform this build cannot verify */
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_EVERSION);
	put_le16(enc + 6, TEE_PLATFORM_SIM);
	put_le32(enc + 8, 0x80000000u);
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_ECORRUPT);
	put_le32(enc + 8, 0);
	memcpy(enc, "TMQX", 4);
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_ECORRUPT);
	memcpy(enc, "TMQT", 4);
	assert_int_equal(tee_quote_decode(enc, sizeof(enc), &q), TEEMS_OK);
}

/* A verifier given someone's root must not accept a quote re-signed with another key, even one
 * whose fields are all correct: the signature is over the encoding, with its domain string. */
static void test_quote_signed_bytes(void **state)
{
	struct fixture *f = *state;
	uint8_t tbs[TEE_QUOTE_TBS_LEN];
	struct tee_quote q;

	assert_int_equal(tee_quote_decode(f->enc, sizeof(f->enc), &q), TEEMS_OK);
	tee_quote_signed_bytes(&q, tbs);
	assert_memory_equal(tbs, "teems quote v1", 15); /* with the NUL */
	assert_memory_equal(tbs + 15, f->enc, TEE_QUOTE_SIGNED_LEN);
	assert_int_equal(tee_incarnation_verify(f->root, tbs, sizeof(tbs), q.signature), TEEMS_OK);
	/* Without the domain string the signature is worthless. */
	assert_int_equal(tee_incarnation_verify(f->root, f->enc, TEE_QUOTE_SIGNED_LEN, q.signature),
			 TEEMS_EAUTH);
}

/* A quote that verifies under a root we generated ourselves: the verifier does not care where
 * the root came from, only that the caller trusts it. */
static void test_quote_from_arbitrary_root(void **state)
{
	struct tee_incarnation *root;
	uint8_t pub[TEE_PUBLIC_KEY_LEN], tbs[TEE_QUOTE_TBS_LEN], enc[TEE_QUOTE_LEN];
	struct tee_quote q;
	(void)state;

	assert_int_equal(tee_incarnation_new(&root, NULL), TEEMS_OK);
	tee_incarnation_public_key(root, pub);
	memset(&q, 0, sizeof(q));
	q.version = TEE_QUOTE_VERSION;
	q.platform = TEE_PLATFORM_SIM;
	tee_sha256(pub, sizeof(pub), q.root_key_id);
	memcpy(q.measurement, meas_b, TEE_MEASUREMENT_LEN);
	memset(q.report_data, 3, TEE_REPORT_DATA_LEN);
	tee_quote_signed_bytes(&q, tbs);
	assert_int_equal(tee_incarnation_sign(root, tbs, sizeof(tbs), q.signature), TEEMS_OK);
	tee_quote_encode(&q, enc);
	assert_int_equal(tee_quote_verify(pub, meas_b, enc, sizeof(enc), NULL), TEEMS_OK);
	assert_int_equal(tee_quote_verify(pub, meas_a, enc, sizeof(enc), NULL),
			 TEEMS_EQUOTE_MEASUREMENT);
	tee_incarnation_free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_quote_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_encoding_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_shared_by_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_other_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_other_measurement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_every_bit_flipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_bad_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_bad_header_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_signed_bytes, setup, teardown),
		cmocka_unit_test(test_quote_from_arbitrary_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
