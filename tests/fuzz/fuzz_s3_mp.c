/* libFuzzer target for the S3 multipart answers a server sends back
 * (src/client/blob_s3_multipart.c): the UploadId of InitiateMultipartUpload, an ETag response
 * header, the body of a 200 answer to CompleteMultipartUpload, a ListMultipartUploads page and
 * an S3 timestamp. The first byte picks the parser; the rest is the server's bytes, not
 * NUL-terminated. Any input must give a verdict within the documented bounds, never a crash or
 * an over-read. An accepted ETag must also round-trip through the Complete body builder, and an
 * accepted timestamp through gmtime. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static int check_upload(void *arg, const struct s3_mp_upload *u)
{
	(void)arg;
	check_token(u->upload_id, S3_MP_UPLOAD_ID_MAX);
	if (strlen(u->key) > S3_MP_KEY_MAX || u->initiated < -1)
		abort();
	return 0;
}

static void check_uploads(const char *xml, size_t len)
{
	char key[S3_MP_KEY_MAX + 1], id[S3_MP_UPLOAD_ID_MAX + 1];
	int truncated, rc;

	rc = blob_s3_mp_parse_uploads(xml, len, check_upload, NULL, &truncated, key, id);
	if (rc == 0) {
		if ((truncated && key[0] == '\0') || strlen(key) > S3_MP_KEY_MAX)
			abort();
		if (id[0] != '\0')
			check_token(id, S3_MP_UPLOAD_ID_MAX);
	} else if (rc != -1 || key[0] != '\0' || id[0] != '\0') {
		abort();
	}
}

static void check_time(const char *s, size_t len)
{
	int64_t t = blob_s3_time(s, len);
	char back[32];
	struct tm tm;
	time_t tt = (time_t)t;

	if (t < -1)
		abort();
	if (t >= 0 && (gmtime_r(&tt, &tm) == NULL ||
		       strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%S", &tm) != 19 || len < 20 ||
		       memcmp(back, s, 19) != 0))
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
	switch (data[0] % 5) {
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
	case 3:
		check_uploads(copy, size - 1);
		break;
	case 4:
		check_time(copy, size - 1);
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
