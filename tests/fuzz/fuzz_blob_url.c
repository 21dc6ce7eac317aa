/* libFuzzer target for the store URL parser and blob name check (src/client/blobstore.c).
 * An accepted URL must have NUL-terminated fields within bounds and a valid kind; ASan checks
 * every byte read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/blobstore.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char err[TEEMS_ERRBUF_LEN];
	struct blob_url u;
	int rc;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = blob_url_parse(s, &u, err);
	if (rc == TEEMS_OK) {
		if (u.kind != BLOB_DIR && u.kind != BLOB_S3)
			abort();
		if (memchr(u.path, 0, sizeof(u.path)) == NULL ||
		    memchr(u.bucket, 0, sizeof(u.bucket)) == NULL ||
		    memchr(u.prefix, 0, sizeof(u.prefix)) == NULL ||
		    memchr(u.endpoint, 0, sizeof(u.endpoint)) == NULL ||
		    memchr(u.region, 0, sizeof(u.region)) == NULL)
			abort();
		/* no dot segment may reach curl, which would squash it and move the key */
		if (u.kind == BLOB_S3 &&
		    (strcmp(u.prefix, "..") == 0 || strncmp(u.prefix, "../", 3) == 0 ||
		     strstr(u.prefix, "/../") != NULL || strstr(u.prefix, "/./") != NULL ||
		     strncmp(u.prefix, "./", 2) == 0))
			abort();
	} else if (rc != TEEMS_EINVAL) {
		abort();
	}
	(void)blob_name_valid(s);
	free(s);
	return 0;
}
