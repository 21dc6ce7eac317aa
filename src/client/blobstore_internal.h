/* The backend interface behind blobstore.h. Each backend embeds struct blobstore first. */
#ifndef TEEMS_CLIENT_BLOBSTORE_INTERNAL_H
#define TEEMS_CLIENT_BLOBSTORE_INTERNAL_H

#include "client/blobstore.h"

struct blobstore_ops {
	int (*init)(struct blobstore *s, char *errbuf);
	int (*put)(struct blobstore *s, const char *name, const struct obj_src *src, uint64_t len,
		   char *errbuf);
	int (*get)(struct blobstore *s, const char *name, const struct obj_sink *sink,
		   char *errbuf);
	int (*del)(struct blobstore *s, const char *name, char *errbuf);
	int (*stat)(struct blobstore *s, const char *name, struct blob_stat *st, char *errbuf);
	int (*list)(struct blobstore *s, const char *prefix, blob_list_fn fn, void *arg,
		    char *errbuf);
	void (*close)(struct blobstore *s);
	/* Optional (NULL: nothing to sweep): removes the backend's own leftovers of interrupted
	 * puts last modified before older_than (seconds since the epoch). */
	int (*sweep)(struct blobstore *s, int64_t older_than, uint64_t *removed, char *errbuf);
};

struct blobstore {
	const struct blobstore_ops *ops;
};

int blob_dir_open(const struct blob_url *url, struct blobstore **out, char *errbuf);
int blob_s3_open(const struct blob_url *url, const struct blobstore_opts *opts,
		 struct blobstore **out, char *errbuf);

/* The S3 ListObjectsV2 response parser, exposed for the fuzzer: calls fn with each <Key>
 * (XML-unescaped), sets *truncated and copies <NextContinuationToken> into token (token_cap
 * bytes). Errors: TEEMS_ECORRUPT, or fn's non-zero return. */
int blob_s3_parse_list(const char *xml, size_t len, int (*fn)(void *arg, const char *key),
		       void *arg, int *truncated, char *token, size_t token_cap, char *errbuf);

#endif
