/* Store URLs, blob names and the dispatch to the backends (blob_dir.c, blob_s3.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "client/blob_s3_multipart.h"
#include "client/blobstore_internal.h"
#include "tee/crypto.h"
#include "teems/err.h"

static int is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int blob_name_valid(const char *name)
{
	size_t n = 0;

	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return 0;
	for (const char *p = name; *p; p++, n++) {
		if (n >= OBJ_NAME_MAX)
			return 0;
		if (!is_alnum(*p) && *p != '_' && *p != '-' && *p != '.')
			return 0;
	}
	return 1;
}

int blobstore_random_name(char out[BLOB_RANDOM_NAME_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[BLOB_RANDOM_NAME_LEN / 2];
	int rc = tee_random(r, sizeof(r));

	if (rc != TEEMS_OK)
		return rc;
	for (size_t i = 0; i < sizeof(r); i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[BLOB_RANDOM_NAME_LEN] = '\0';
	return TEEMS_OK;
}

/* %-decodes [s, s+len) into out (cap bytes, NUL-terminated). Refuses NUL and control bytes. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap, const char *what,
		      char *errbuf)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			if (len - i < 3 || hex_digit_value(s[i + 1]) < 0 ||
			    hex_digit_value(s[i + 2]) < 0)
				return teems_errf(errbuf, TEEMS_EINVAL, "bad %%-escape in %s",
						  what);
			c = hex_digit_value(s[i + 1]) * 16 + hex_digit_value(s[i + 2]);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return teems_errf(errbuf, TEEMS_EINVAL, "control character in %s", what);
		if (o + 1 >= cap)
			return teems_errf(errbuf, TEEMS_EINVAL, "%s is too long", what);
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return TEEMS_OK;
}

static int bucket_valid(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63 || !is_alnum(b[0]) || !is_alnum(b[n - 1]) || strstr(b, "..") != NULL)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
		      b[i] == '-'))
			return 0;
	return 1;
}

/* Prefix: [A-Za-z0-9._/-], no empty, "." or ".." segment except a trailing '/' (curl would
 * squash dot segments and move the key). */
static int prefix_valid(const char *p)
{
	const char *seg = p;

	if (p[0] == '\0')
		return 1;
	for (const char *q = p;; q++) {
		if (*q == '/' || *q == '\0') {
			size_t n = (size_t)(q - seg);

			if (*q == '/' && n == 0)
				return 0;
			if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return 0;
			if (*q == '\0')
				return 1;
			seg = q + 1;
			continue;
		}
		if (!is_alnum(*q) && *q != '.' && *q != '_' && *q != '-')
			return 0;
	}
}

static int endpoint_valid(const char *e)
{
	const char *host;

	if (strncmp(e, "http://", 7) == 0)
		host = e + 7;
	else if (strncmp(e, "https://", 8) == 0)
		host = e + 8;
	else
		return 0;
	if (*host == '\0' || *host == '/' || *host == ':')
		return 0;
	for (const char *p = e; *p; p++)
		if (*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#' || *p == '@' || *p == '\\')
			return 0;
	return 1;
}

static int region_valid(const char *r)
{
	if (r[0] == '\0')
		return 0;
	for (; *r; r++)
		if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
			return 0;
	return 1;
}

/* A decimal query parameter (percent-encoded value v, vlen bytes) in [min, max]. */
static int decimal_param(const char *v, size_t vlen, const char *name, unsigned long long min,
			 unsigned long long max, const char *unit, unsigned long long *out,
			 char *errbuf)
{
	char num[24], *end;
	unsigned long long n;
	int rc = pct_decode(v, vlen, num, sizeof(num), name, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	errno = 0;
	n = strtoull(num, &end, 10);
	if (num[0] < '0' || num[0] > '9' || *end != '\0' || errno != 0 || n < min || n > max)
		return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: %s must be %llu..%llu%s", name,
				  min, max, unit);
	*out = n;
	return TEEMS_OK;
}

static int parse_query(const char *q, struct blob_url *u, char *errbuf)
{
	int seen_endpoint = 0, seen_region = 0, seen_timeout = 0, seen_part = 0;

	while (*q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		size_t klen;
		const char *v;
		size_t vlen;
		int rc;

		if (eq == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "s3 URL: query parameter without '=': %.*s", (int)len, q);
		klen = (size_t)(eq - q);
		v = eq + 1;
		vlen = len - klen - 1;
		if (klen == 8 && memcmp(q, "endpoint", 8) == 0) {
			if (seen_endpoint++)
				return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: endpoint twice");
			rc = pct_decode(v, vlen, u->endpoint, sizeof(u->endpoint), "endpoint",
					errbuf);
			if (rc != TEEMS_OK)
				return rc;
			while (u->endpoint[0] && u->endpoint[strlen(u->endpoint) - 1] == '/')
				u->endpoint[strlen(u->endpoint) - 1] = '\0';
			if (!endpoint_valid(u->endpoint))
				return teems_errf(errbuf, TEEMS_EINVAL,
						  "s3 URL: endpoint must be http(s)://host[:port]"
						  "[/path] without credentials, query or spaces");
		} else if (klen == 6 && memcmp(q, "region", 6) == 0) {
			if (seen_region++)
				return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: region twice");
			rc = pct_decode(v, vlen, u->region, sizeof(u->region), "region", errbuf);
			if (rc != TEEMS_OK)
				return rc;
			if (!region_valid(u->region))
				return teems_errf(errbuf, TEEMS_EINVAL,
						  "s3 URL: region must be [a-z0-9-]+");
		} else if (klen == 10 && memcmp(q, "timeout_ms", 10) == 0) {
			unsigned long long t;

			if (seen_timeout++)
				return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: timeout_ms twice");
			rc = decimal_param(v, vlen, "timeout_ms", 1, 3600000, "", &t, errbuf);
			if (rc != TEEMS_OK)
				return rc;
			u->timeout_ms = (long)t;
		} else if (klen == 9 && memcmp(q, "part_size", 9) == 0) {
			if (seen_part++)
				return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: part_size twice");
			rc = decimal_param(v, vlen, "part_size", S3_MP_MIN_PART, S3_MP_MAX_PART,
					   " bytes", &u->part_size, errbuf);
			if (rc != TEEMS_OK)
				return rc;
		} else {
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "s3 URL: unknown parameter '%.*s' (endpoint, region, "
					  "timeout_ms, part_size)",
					  (int)(klen > 40 ? 40 : klen), q);
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return TEEMS_OK;
}

int blob_url_parse(const char *url, struct blob_url *u, char *errbuf)
{
	memset(u, 0, sizeof(*u));
	if (url == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "no store URL");
	if (strncmp(url, "dir://", 6) == 0) {
		const char *p = url + 6;
		size_t n = strlen(p);

		u->kind = BLOB_DIR;
		if (n == 0)
			return teems_errf(errbuf, TEEMS_EINVAL, "dir URL: empty path");
		if (n >= sizeof(u->path))
			return teems_errf(errbuf, TEEMS_EINVAL, "dir URL: path too long");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return teems_errf(errbuf, TEEMS_EINVAL,
						  "dir URL: control character in path");
		memcpy(u->path, p, n + 1);
		return TEEMS_OK;
	}
	if (strncmp(url, "s3://", 5) == 0) {
		const char *p = url + 5;
		size_t blen = strcspn(p, "/?");
		const char *q;
		size_t plen;
		int rc;

		u->kind = BLOB_S3;
		if (blen == 0 || blen >= sizeof(u->bucket))
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "s3 URL: bucket name must have 3 "
					  "to 63 characters");
		memcpy(u->bucket, p, blen);
		u->bucket[blen] = '\0';
		if (!bucket_valid(u->bucket))
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "s3 URL: bucket '%s' breaks S3's naming rules "
					  "(3-63 of a-z 0-9 . -, alphanumeric at both ends)",
					  u->bucket);
		p += blen;
		if (*p == '/')
			p++;
		plen = strcspn(p, "?");
		if (plen >= sizeof(u->prefix))
			return teems_errf(errbuf, TEEMS_EINVAL, "s3 URL: prefix too long");
		memcpy(u->prefix, p, plen);
		u->prefix[plen] = '\0';
		if (!prefix_valid(u->prefix))
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "s3 URL: prefix must be segments of [A-Za-z0-9._-] "
					  "separated by '/', without '.' or '..' segments");
		q = p + plen;
		if (*q == '?') {
			rc = parse_query(q + 1, u, errbuf);
			if (rc != TEEMS_OK)
				return rc;
		}
		if (u->region[0] == '\0')
			strcpy(u->region, "us-east-1");
		if (u->endpoint[0] == '\0')
			snprintf(u->endpoint, sizeof(u->endpoint), "https://s3.%s.amazonaws.com",
				 u->region);
		return TEEMS_OK;
	}
	return teems_errf(errbuf, TEEMS_EINVAL,
			  "store URL must start with dir:// or s3:// (got '%.16s')", url);
}

int blobstore_open(const char *url, const struct blobstore_opts *opts, struct blobstore **out,
		   char *errbuf)
{
	struct blob_url u;
	int rc;

	*out = NULL;
	rc = blob_url_parse(url, &u, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (u.kind == BLOB_DIR)
		return blob_dir_open(&u, out, errbuf);
	return blob_s3_open(&u, opts, out, errbuf);
}

void blobstore_close(struct blobstore *store)
{
	if (store != NULL)
		store->ops->close(store);
}

int blobstore_init(struct blobstore *store, char *errbuf)
{
	return store->ops->init(store, errbuf);
}

static int check_name(const char *name, char *errbuf)
{
	if (!blob_name_valid(name))
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "invalid blob name (1-%d of A-Z a-z 0-9 _ - ., not starting "
				  "with '.')",
				  OBJ_NAME_MAX);
	return TEEMS_OK;
}

int blobstore_put(struct blobstore *store, const char *name, const struct obj_src *src,
		  uint64_t len, char *errbuf)
{
	int rc = check_name(name, errbuf);

	return rc != TEEMS_OK ? rc : store->ops->put(store, name, src, len, errbuf);
}

int blobstore_get(struct blobstore *store, const char *name, const struct obj_sink *sink,
		  char *errbuf)
{
	int rc = check_name(name, errbuf);

	return rc != TEEMS_OK ? rc : store->ops->get(store, name, sink, errbuf);
}

int blobstore_delete(struct blobstore *store, const char *name, char *errbuf)
{
	int rc = check_name(name, errbuf);

	return rc != TEEMS_OK ? rc : store->ops->del(store, name, errbuf);
}

int blobstore_stat(struct blobstore *store, const char *name, struct blob_stat *st, char *errbuf)
{
	int rc = check_name(name, errbuf);

	return rc != TEEMS_OK ? rc : store->ops->stat(store, name, st, errbuf);
}

int blobstore_list(struct blobstore *store, const char *prefix, blob_list_fn fn, void *arg,
		   char *errbuf)
{
	if (prefix == NULL)
		prefix = "";
	for (const char *p = prefix; *p; p++)
		if (!is_alnum(*p) && *p != '_' && *p != '-' && *p != '.')
			return teems_errf(errbuf, TEEMS_EINVAL, "invalid character in list prefix");
	if (strlen(prefix) > OBJ_NAME_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "list prefix too long");
	return store->ops->list(store, prefix, fn, arg, errbuf);
}

int blobstore_sweep(struct blobstore *store, int64_t older_than, uint64_t *removed, char *errbuf)
{
	*removed = 0;
	return store->ops->sweep != NULL ? store->ops->sweep(store, older_than, removed, errbuf)
					 : TEEMS_OK;
}
