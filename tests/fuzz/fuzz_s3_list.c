/* libFuzzer target for the S3 ListObjectsV2 response parser (src/client/blob_s3.c): any bytes
 * from the (untrusted) server must give keys, ECORRUPT, never a crash or an over-read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/blobstore_internal.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_key(void *arg, const char *key)
{
	size_t *n = arg;

	if (strlen(key) > 1024)
		abort();
	(*n)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char token[64], err[TEEMS_ERRBUF_LEN];
	size_t keys = 0;
	int truncated = 0;
	/* the parser gets exactly `size` bytes, not NUL-terminated */
	char *copy = malloc(size ? size : 1);
	int rc;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	rc = blob_s3_parse_list(copy, size, on_key, &keys, &truncated, token, sizeof(token), err);
	if (rc != TEEMS_OK && rc != TEEMS_ECORRUPT)
		abort();
	if (rc == TEEMS_OK && truncated && token[0] == '\0')
		abort();
	free(copy);
	return 0;
}
