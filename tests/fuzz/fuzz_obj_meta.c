/* libFuzzer target for the metadata record decoder (src/client/obj_meta.c): any bytes must
 * decode or give ECORRUPT/EVERSION, and an accepted record must re-encode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/obj_crypto.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct obj_meta m;
	uint8_t again[OBJ_META_MAX_LEN];
	int rc = obj_meta_decode(data, size, &m, NULL);

	if (rc == TEEMS_OK) {
		size_t n = obj_meta_encode(&m, again);

		if (n != size || memcmp(again, data, size) != 0)
			abort();
	} else if (rc != TEEMS_ECORRUPT && rc != TEEMS_EVERSION) {
		abort();
	}
	return 0;
}
