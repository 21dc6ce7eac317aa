/* libFuzzer target for the quote decoder and verifier (src/tee/quote.c).
 *
 * Each input is used twice:
 *   1. as an encoded quote: decode must accept it or say ECORRUPT/EVERSION, an accepted one must
 *      re-encode to the same bytes, and verify must never accept it unless it is, byte for
 *      byte, the one genuine quote (Ed25519 signatures are not malleable in OpenSSL);
 *   2. as an XOR mask over that genuine quote, which takes the fuzzer past the header checks to
 *      the root, signature and measurement checks: any change must be rejected, no change
 *      accepted.
 * ASan checks that neither path reads out of bounds for any length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tee/tee.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
	int ready;
	uint8_t root[TEE_PUBLIC_KEY_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	uint8_t genuine[TEE_QUOTE_LEN];
} g;

/* A root of our own (an incarnation key serves) and one genuine quote signed by it. */
static void init(void)
{
	struct tee_incarnation *root;
	uint8_t tbs[TEE_QUOTE_TBS_LEN];
	struct tee_quote q;

	if (tee_incarnation_new(&root, NULL) != TEEMS_OK)
		abort();
	tee_incarnation_public_key(root, g.root);
	memset(&q, 0, sizeof(q));
	q.version = TEE_QUOTE_VERSION;
	q.platform = TEE_PLATFORM_SIM;
	tee_sha256(g.root, sizeof(g.root), q.root_key_id);
	memset(g.measurement, 0x6d, sizeof(g.measurement));
	memcpy(q.measurement, g.measurement, sizeof(q.measurement));
	for (int i = 0; i < TEE_REPORT_DATA_LEN; i++)
		q.report_data[i] = (uint8_t)i;
	tee_quote_signed_bytes(&q, tbs);
	if (tee_incarnation_sign(root, tbs, sizeof(tbs), q.signature) != TEEMS_OK)
		abort();
	tee_quote_encode(&q, g.genuine);
	tee_incarnation_free(root);
	if (tee_quote_verify(g.root, g.measurement, g.genuine, sizeof(g.genuine), NULL) != TEEMS_OK)
		abort();
	g.ready = 1;
}

static int is_rejection(int rv)
{
	return rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION || rv == TEEMS_EQUOTE_ROOT ||
	       rv == TEEMS_EQUOTE_TAMPERED || rv == TEEMS_EQUOTE_MEASUREMENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t enc[TEE_QUOTE_LEN], mutated[TEE_QUOTE_LEN], report[TEE_REPORT_DATA_LEN];
	struct tee_quote q;
	int rv, changed;

	if (!g.ready)
		init();

	/* 1. The input as a quote. Copy it to a buffer of exactly its size so ASan sees any
	 * read past the end. */
	{
		uint8_t *copy = malloc(size > 0 ? size : 1);

		if (copy == NULL)
			return 0;
		memcpy(copy, data, size);
		rv = tee_quote_decode(copy, size, &q);
		if (rv == TEEMS_OK) {
			tee_quote_encode(&q, enc);
			if (size != TEE_QUOTE_LEN || memcmp(enc, copy, size) != 0)
				abort();
		} else if (rv != TEEMS_ECORRUPT && rv != TEEMS_EVERSION) {
			abort();
		}
		rv = tee_quote_verify(g.root, g.measurement, copy, size, report);
		if (rv == TEEMS_OK) {
			if (size != TEE_QUOTE_LEN || memcmp(copy, g.genuine, size) != 0)
				abort();
		} else if (!is_rejection(rv)) {
			abort();
		}
		free(copy);
	}

	/* 2. The input as a mask over the genuine quote. */
	memcpy(mutated, g.genuine, sizeof(mutated));
	for (size_t i = 0; i < size && i < sizeof(mutated); i++)
		mutated[i] ^= data[i];
	changed = memcmp(mutated, g.genuine, sizeof(mutated)) != 0;
	rv = tee_quote_verify(g.root, g.measurement, mutated, sizeof(mutated), report);
	if (changed ? rv == TEEMS_OK || !is_rejection(rv) : rv != TEEMS_OK)
		abort();
	if (!changed && memcmp(report, g.genuine + 76, TEE_REPORT_DATA_LEN) != 0)
		abort();
	return 0;
}
