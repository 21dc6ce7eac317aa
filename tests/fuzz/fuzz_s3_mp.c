/* libFuzzer target for the S3 multipart answers a server sends back
 * (src/client/blob_s3_multipart.c): the UploadId of InitiateMultipartUpload, an ETag response
 * header, and the body of a 200 answer to CompleteMultipartUpload. The first byte picks the
 * parser; the rest is the server's bytes, not NUL-terminated. Any input must give a verdict
 * within the documented bounds, never a crash or an over-read. An accepted ETag must also
 * round-trip through the Complete body builder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/blob_s3_multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Printable ASCII other than space, as both parsers promise. */
static void check_token(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		abort();
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char upload_id[S3_MP_UPLOAD_ID_MAX + 1], etag[1][S3_MP_ETAG_MAX + 1], code[64];
	char body[512];
	char *copy;
	size_t need;
	int rc;

	if (size == 0)
		return 0;
	if ((copy = malloc(size - 1 ? size - 1 : 1)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		if (blob_s3_mp_parse_upload_id(copy, size - 1, upload_id) == 0)
			check_token(upload_id, S3_MP_UPLOAD_ID_MAX);
		break;
	case 1:
		rc = blob_s3_mp_etag_header(copy, size - 1, etag[0]);
		if (rc == 1) {
			check_token(etag[0], S3_MP_ETAG_MAX);
			need = blob_s3_mp_complete_xml(etag, 1, NULL, 0);
			if (need < sizeof(body) &&
			    (blob_s3_mp_complete_xml(etag, 1, body, sizeof(body)) != need ||
			     strlen(body) != need))
				abort();
		} else if (rc == -1 && etag[0][0] != '\0') {
			abort();
		} else if (rc != 0 && rc != -1) {
			abort();
		}
		break;
	default:
		code[0] = '\0';
		rc = blob_s3_mp_complete_ok(copy, size - 1, code, sizeof(code));
		if ((rc != 0 && rc != -1) || strlen(code) >= sizeof(code))
			abort();
		break;
	}
	free(copy);
	return 0;
}
