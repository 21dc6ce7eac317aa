/* Quote encoding and the sim quote verifier (tee.h, "Attestation quotes").
 *
 * The decoder reads the input only after checking its length is exactly TEE_QUOTE_LEN, so no
 * input can make it read out of bounds; tests/fuzz/fuzz_quote.c checks that under ASan. */
#include <string.h>

#include "common/bytes.h"
#include "tee.h"
#include "teems/err.h"

static const uint8_t quote_magic[4] = {'T', 'M', 'Q', 'T'};
static const char quote_domain[] = "teems quote v1"; /* signed with its NUL */

enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 4,
	OFF_PLATFORM = 6,
	OFF_RESERVED = 8,
	OFF_ROOT_KEY_ID = 12,
	OFF_MEASUREMENT = 44,
	OFF_REPORT_DATA = 76,
	OFF_SIGNATURE = 140,
};

_Static_assert(OFF_SIGNATURE == TEE_QUOTE_SIGNED_LEN, "signature follows the signed bytes");
_Static_assert(OFF_SIGNATURE + TEE_SIGNATURE_LEN == TEE_QUOTE_LEN, "quote length");
_Static_assert(sizeof(quote_domain) + TEE_QUOTE_SIGNED_LEN == TEE_QUOTE_TBS_LEN, "tbs length");

void tee_quote_encode(const struct tee_quote *q, uint8_t out[TEE_QUOTE_LEN])
{
	memcpy(out + OFF_MAGIC, quote_magic, sizeof(quote_magic));
	put_le16(out + OFF_VERSION, q->version);
	put_le16(out + OFF_PLATFORM, q->platform);
	put_le32(out + OFF_RESERVED, 0);
	memcpy(out + OFF_ROOT_KEY_ID, q->root_key_id, sizeof(q->root_key_id));
	memcpy(out + OFF_MEASUREMENT, q->measurement, sizeof(q->measurement));
	memcpy(out + OFF_REPORT_DATA, q->report_data, sizeof(q->report_data));
	memcpy(out + OFF_SIGNATURE, q->signature, sizeof(q->signature));
}

int tee_quote_decode(const void *in, size_t len, struct tee_quote *out)
{
	const uint8_t *p = in;
	uint16_t version, platform;

	if (len != TEE_QUOTE_LEN || p == NULL)
		return TEEMS_ECORRUPT;
	if (memcmp(p + OFF_MAGIC, quote_magic, sizeof(quote_magic)) != 0)
		return TEEMS_ECORRUPT;
	version = get_le16(p + OFF_VERSION);
	platform = get_le16(p + OFF_PLATFORM);
	if (version != TEE_QUOTE_VERSION)
		return TEEMS_EVERSION;
	if (platform != TEE_PLATFORM_SIM)
		return TEEMS_EVERSION; /* a platform this build cannot verify */
	if (get_le32(p + OFF_RESERVED) != 0)
		return TEEMS_ECORRUPT;
	out->version = version;
	out->platform = platform;
	memcpy(out->root_key_id, p + OFF_ROOT_KEY_ID, sizeof(out->root_key_id));
	memcpy(out->measurement, p + OFF_MEASUREMENT, sizeof(out->measurement));
	memcpy(out->report_data, p + OFF_REPORT_DATA, sizeof(out->report_data));
	memcpy(out->signature, p + OFF_SIGNATURE, sizeof(out->signature));
	return TEEMS_OK;
}

void tee_quote_signed_bytes(const struct tee_quote *q, uint8_t out[TEE_QUOTE_TBS_LEN])
{
	uint8_t enc[TEE_QUOTE_LEN];

	/* Sign the encoding, not the struct, so that signer and verifier agree byte for byte
	 * whatever the compiler's layout; the domain string keeps a root signature over a quote
	 * from meaning anything else. */
	tee_quote_encode(q, enc);
	memcpy(out, quote_domain, sizeof(quote_domain));
	memcpy(out + sizeof(quote_domain), enc, TEE_QUOTE_SIGNED_LEN);
}

int tee_quote_verify(const uint8_t root_pub[TEE_PUBLIC_KEY_LEN],
		     const uint8_t expected_measurement[TEE_MEASUREMENT_LEN], const void *encoded,
		     size_t len, uint8_t report_data_out[TEE_REPORT_DATA_LEN])
{
	struct tee_quote q;
	uint8_t root_id[TEE_SHA256_LEN];
	uint8_t tbs[TEE_QUOTE_TBS_LEN];
	int rv;

	rv = tee_quote_decode(encoded, len, &q);
	if (rv != TEEMS_OK)
		return rv;
	/* The key id is not yet authenticated here; it only sorts failures into "another root"
	 * and "forged or altered". Both are rejections. */
	tee_sha256(root_pub, TEE_PUBLIC_KEY_LEN, root_id);
	if (memcmp(root_id, q.root_key_id, sizeof(root_id)) != 0)
		return TEEMS_EQUOTE_ROOT;
	tee_quote_signed_bytes(&q, tbs);
	rv = tee_incarnation_verify(root_pub, tbs, sizeof(tbs), q.signature);
	if (rv == TEEMS_EAUTH)
		return TEEMS_EQUOTE_TAMPERED;
	if (rv != TEEMS_OK)
		return rv;
	/* Only a genuine quote earns the "wrong code" verdict. */
	if (memcmp(q.measurement, expected_measurement, TEE_MEASUREMENT_LEN) != 0)
		return TEEMS_EQUOTE_MEASUREMENT;
	if (report_data_out != NULL)
		memcpy(report_data_out, q.report_data, TEE_REPORT_DATA_LEN);
	return TEEMS_OK;
}
