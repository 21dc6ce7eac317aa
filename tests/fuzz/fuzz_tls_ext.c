/* libFuzzer target for the RA-TLS certificate extension decoder (src/net/tls_ratls.c), the
 * part of a peer's certificate that teems parses itself (OpenSSL parses the rest).
 *
 * Each input is used twice:
 *   1. as an extnValue: decode must accept it or say ECORRUPT/EVERSION, and an accepted value
 *      must be the one canonical encoding (re-encoding gives back the same bytes, so two
 *      different byte strings never mean the same identity);
 *   2. as an XOR mask over a valid encoding, which takes the fuzzer past the DER header to the
 *      payload checks: a change to the header, version or reserved byte is rejected, a change
 *      to the fields is decoded into exactly those fields.
 * ASan checks that no length makes the decoder read outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_canonical(const uint8_t *in, size_t len)
{
	struct tls_ratls_ext ext;
	uint8_t again[TLS_RATLS_EXT_LEN];
	int rv;

	rv = tls_ratls_ext_decode(in, len, &ext);
	if (rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION)
		return;
	if (rv != TEEMS_OK || len != TLS_RATLS_EXT_LEN)
		abort();
	tls_ratls_ext_encode(&ext, again);
	if (memcmp(again, in, TLS_RATLS_EXT_LEN) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_ratls_ext base, ext;
	uint8_t enc[TLS_RATLS_EXT_LEN];
	bool header_changed = false;
	int rv;

	check_canonical(data, size);

	memset(&base, 0, sizeof(base));
	base.replica = 3;
	for (size_t i = 0; i < sizeof(base.quote); i++)
		base.quote[i] = (uint8_t)i;
	tls_ratls_ext_encode(&base, enc);
	for (size_t i = 0; i < size && i < sizeof(enc); i++) {
		if (i < 6 && data[i] != 0)
			header_changed = true;
		enc[i] ^= data[i];
	}
	rv = tls_ratls_ext_decode(enc, sizeof(enc), &ext);
	if (header_changed ? rv == TEEMS_OK : rv != TEEMS_OK)
		abort();
	if (rv == TEEMS_OK) {
		uint8_t again[TLS_RATLS_EXT_LEN];

		tls_ratls_ext_encode(&ext, again);
		if (memcmp(again, enc, sizeof(enc)) != 0)
			abort();
	}
	return 0;
}
