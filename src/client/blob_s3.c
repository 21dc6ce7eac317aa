/* The `s3` blob store: libcurl with its built-in SigV4 signing (CURLOPT_AWS_SIGV4), path-style
 * URLs (endpoint/bucket/key), streaming in both directions.
 *
 * Uploads declare their length (Content-Length) and pull the body through a read callback;
 * downloads push the body through a write callback into the caller's sink, so neither holds a
 * blob in memory. The payload is signed as UNSIGNED-PAYLOAD: hashing it first would need a
 * second pass over the stream, and the object layer authenticates every byte itself
 * (obj_crypto.h), so S3's own payload check adds nothing to integrity.
 *
 * Blobs longer than one part (64 MiB by default; the URL's part_size=) go up as a multipart
 * upload, because S3 refuses a single PUT above 5 GiB: CreateMultipartUpload, one UploadPart
 * per part, each pulling exactly its own length from the same source (no part is ever held in
 * memory), then CompleteMultipartUpload with the parts' ETags. Any failure sends
 * AbortMultipartUpload, so a process that lives to clean up leaves no incomplete upload; one
 * killed half-way leaves an upload that no listing shows and that only the bucket's lifecycle
 * rule (AbortIncompleteMultipartUpload) removes (docs/OBJECTS.md). The object appears whole at
 * Complete or not at all, which keeps blobstore_put atomic.
 *
 * HTTP status → error: 2xx ok; 404 TEEMS_ENOTFOUND; 401/403 OBJ_EDENIED; 5xx, connection
 * failures and timeouts OBJ_EUNAVAIL; anything else TEEMS_EIO with S3's <Code> and <Message>.
 * Nothing is retried here: a streamed body cannot be rewound, so the caller retries the whole
 * operation (a put under a fresh random name is always safe to retry). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "client/blob_s3_multipart.h"
#include "client/blobstore_internal.h"
#include "common/alloc.h"
#include "tee/crypto.h"
#include "teems/err.h"

#define S3_DEFAULT_TIMEOUT_MS 30000L
#define S3_LIST_BODY_MAX (16u << 20)
#define S3_ERRBODY_MAX 2048
#define S3_XFER_BUF (1L << 20)
#define S3_MP_BODY_MAX (64u << 10) /* answers to Create and Complete are a few hundred bytes */

struct blob_s3 {
	struct blobstore base;
	struct blob_url url;
	char key_prefix[BLOB_URL_FIELD_MAX + 1]; /* url.prefix plus a '/' if it lacks one */
	char sigv4[128];
	char *userpwd; /* "access:secret", wiped at close */
	long timeout_ms;
	long verbose;	    /* TEEMS_S3_VERBOSE=1 in the environment: curl traces to stderr */
	uint64_t part_size; /* blobs above it go up in parts (blob_s3_multipart.h) */
	CURL *curl;	    /* reused so connections are kept alive */
};

/* libcurl is loaded with dlopen when the first s3 store is opened, not by the dynamic linker
 * at the start of every program that links libteems: with its ~30 dependencies (GnuTLS,
 * Kerberos, LDAP, SSH, ...) it cost every `teems` command, S3 or not, ~3.5 ms of CPU here
 * (a program that only links it: 1.2 → 4.7 ms). Nothing in libteems refers to a libcurl
 * symbol, so a linker that drops unneeded libraries (--as-needed, this toolchain's default)
 * leaves libcurl out of every program; only its headers are used. With a linker that keeps it,
 * dlopen finds the copy already loaded. Only the functions below are used, through this
 * table. */
static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *curl);
	void (*easy_reset)(CURL *curl);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_perform)(CURL *curl);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
} cu;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static char curl_load_err[256];

/* Stores dlsym(lib, name) into the function pointer at slot (POSIX lets a void * from dlsym
 * be used as a function pointer; memcpy keeps the conversion explicit). */
static int curl_sym(void *lib, const char *name, void *slot)
{
	void *p = dlsym(lib, name);

	if (p == NULL) {
		snprintf(curl_load_err, sizeof(curl_load_err), "libcurl has no %s", name);
		return -1;
	}
	memcpy(slot, &p, sizeof(p));
	return 0;
}

static void curl_global(void)
{
	void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL) {
		/* The reason for the soname, which is what a machine without the development
		 * package has (and what the message must name), not for the fallback. */
		snprintf(curl_load_err, sizeof(curl_load_err),
			 "cannot load libcurl (install libcurl4): %s", dlerror());
		lib = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL);
	}
	if (lib == NULL) {
		curl_init_rc = CURLE_FAILED_INIT;
		return;
	}
	curl_load_err[0] = '\0';
	if (curl_sym(lib, "curl_global_init", &cu.global_init) != 0 ||
	    curl_sym(lib, "curl_easy_init", &cu.easy_init) != 0 ||
	    curl_sym(lib, "curl_easy_cleanup", &cu.easy_cleanup) != 0 ||
	    curl_sym(lib, "curl_easy_reset", &cu.easy_reset) != 0 ||
	    curl_sym(lib, "curl_easy_setopt", &cu.easy_setopt) != 0 ||
	    curl_sym(lib, "curl_easy_perform", &cu.easy_perform) != 0 ||
	    curl_sym(lib, "curl_easy_getinfo", &cu.easy_getinfo) != 0 ||
	    curl_sym(lib, "curl_easy_strerror", &cu.easy_strerror) != 0 ||
	    curl_sym(lib, "curl_slist_append", &cu.slist_append) != 0 ||
	    curl_sym(lib, "curl_slist_free_all", &cu.slist_free_all) != 0) {
		curl_init_rc = CURLE_FAILED_INIT; /* the library stays loaded: harmless */
		return;
	}
	curl_init_rc = cu.global_init(CURL_GLOBAL_DEFAULT);
	if (curl_init_rc != CURLE_OK)
		snprintf(curl_load_err, sizeof(curl_load_err), "curl_global_init failed");
}

struct s3_req {
	/* in */
	const char *method;
	char url[8192];
	const struct obj_src *src; /* PUT body, or NULL */
	uint64_t len;
	const struct obj_sink *sink; /* 2xx response body goes here, or nowhere */
	int total_timeout;	     /* small requests: bound the whole transfer */
	int part;		     /* src continues after len bytes (an UploadPart) */
	const char *body;	     /* POST body, or NULL (then an empty POST) */
	size_t body_len;
	char *etag; /* S3_MP_ETAG_MAX + 1 bytes: the ETag header lands here, or NULL */
	/* out */
	long status;
	uint64_t sent;
	int end_checked; /* the source was asked for a byte past len */
	int etag_bad;	 /* an ETag header too long or not printable */
	int cb_rc;	 /* error from src or sink, reported instead of curl's */
	char cb_err[TEEMS_ERRBUF_LEN];
	char errbody[S3_ERRBODY_MAX + 1];
	size_t errbody_len;
	struct curl_slist *headers;
	CURL *curl;
};

static size_t s3_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t cap = size * nitems, got = 0;
	int rc;

	if (r->sent == r->len && r->part)
		return 0; /* the rest of the source belongs to the next part */
	if (r->sent == r->len) {
		uint8_t extra;

		r->end_checked = 1;
		/* Content-Length is sent: the source must end here, not later. */
		rc = r->src->read(r->src->arg, &extra, 1, &got, r->cb_err);
		if (rc == TEEMS_OK && got == 0)
			return 0;
		r->cb_rc = rc != TEEMS_OK ? rc : TEEMS_EIO;
		if (rc == TEEMS_OK)
			snprintf(r->cb_err, sizeof(r->cb_err), "put: source longer than %llu bytes",
				 (unsigned long long)r->len);
		return CURL_READFUNC_ABORT;
	}
	if (cap > r->len - r->sent)
		cap = (size_t)(r->len - r->sent);
	rc = r->src->read(r->src->arg, buf, cap, &got, r->cb_err);
	if (rc != TEEMS_OK) {
		r->cb_rc = rc;
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		r->cb_rc = TEEMS_EIO;
		snprintf(r->cb_err, sizeof(r->cb_err), "put: source ended after %llu of %llu bytes",
			 (unsigned long long)r->sent, (unsigned long long)r->len);
		return CURL_READFUNC_ABORT;
	}
	r->sent += got;
	return got;
}

static size_t s3_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;
	long status = 0;
	int rc;

	cu.easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		size_t room = S3_ERRBODY_MAX - r->errbody_len;

		if (room > n)
			room = n;
		memcpy(r->errbody + r->errbody_len, data, room);
		r->errbody_len += room;
		r->errbody[r->errbody_len] = '\0';
		return n;
	}
	if (r->sink == NULL)
		return n;
	rc = r->sink->write(r->sink->arg, data, n, r->cb_err);
	if (rc != TEEMS_OK) {
		r->cb_rc = rc;
		return 0; /* CURLE_WRITE_ERROR */
	}
	return n;
}

static size_t s3_header_cb(char *line, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nitems;

	if (r->etag != NULL && blob_s3_mp_etag_header(line, n, r->etag) < 0)
		r->etag_bad = 1;
	return n;
}

/* Copies the text of <tag>...</tag> from an S3 error body into out. */
static void xml_field(const char *xml, const char *tag, char *out, size_t cap)
{
	char open[32], close[32];
	const char *a, *b;

	out[0] = '\0';
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = strstr(xml, open);
	if (a == NULL)
		return;
	a += strlen(open);
	b = strstr(a, close);
	if (b == NULL)
		return;
	snprintf(out, cap, "%.*s", (int)(b - a), a);
}

static int s3_perform(struct blob_s3 *s, struct s3_req *r, char *errbuf)
{
	CURL *c = s->curl;
	CURLcode cc;
	long sec = s->timeout_ms / 1000 > 0 ? s->timeout_ms / 1000 : 1;

	r->curl = c;
	cu.easy_reset(c);
	/* Only headers the request really carries: curl signs every header in this list, and an
	 * "Expect:" that merely suppresses curl's own would be signed yet never sent. */
	r->headers = cu.slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (r->headers == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "s3: out of memory");
	cu.easy_setopt(c, CURLOPT_URL, r->url);
	cu.easy_setopt(c, CURLOPT_VERBOSE, s->verbose);
	cu.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	cu.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	cu.easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
	cu.easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
	cu.easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
	cu.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
	/* No progress for the whole timeout aborts a transfer of any size. */
	cu.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	cu.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, sec);
	if (r->total_timeout)
		cu.easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
	cu.easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_write_cb);
	cu.easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (r->etag != NULL) {
		r->etag[0] = '\0';
		cu.easy_setopt(c, CURLOPT_HEADERFUNCTION, s3_header_cb);
		cu.easy_setopt(c, CURLOPT_HEADERDATA, r);
	}
	/* Larger transfer buffers than curl's 16 KiB (download) and 64 KiB (upload): fewer
	 * callbacks and system calls, and downloads more often hand the decryptor whole chunk
	 * records, which it opens in place. Hints: an older curl that refuses them keeps its own.
	 */
	cu.easy_setopt(c, CURLOPT_BUFFERSIZE, S3_XFER_BUF);
	cu.easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, S3_XFER_BUF);
	if (strcmp(r->method, "PUT") == 0) {
		cu.easy_setopt(c, CURLOPT_UPLOAD, 1L);
		cu.easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->len);
		cu.easy_setopt(c, CURLOPT_READFUNCTION, s3_read_cb);
		cu.easy_setopt(c, CURLOPT_READDATA, r);
	} else if (strcmp(r->method, "POST") == 0) {
		cu.easy_setopt(c, CURLOPT_POST, 1L);
		cu.easy_setopt(c, CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
		cu.easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "HEAD") == 0) {
		cu.easy_setopt(c, CURLOPT_NOBODY, 1L);
		cu.easy_setopt(c, CURLOPT_FILETIME, 1L); /* Last-Modified, for gc's grace */
	} else if (strcmp(r->method, "GET") != 0) {
		cu.easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
	cc = cu.easy_perform(c);
	cu.slist_free_all(r->headers);
	r->headers = NULL;
	cu.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->cb_rc != TEEMS_OK)
		return teems_errf(errbuf, r->cb_rc, "%s", r->cb_err);
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
		return teems_errf(errbuf, OBJ_EUNAVAIL, "s3 %s %s: %s", r->method, r->url,
				  cu.easy_strerror(cc));
	default:
		return teems_errf(errbuf, TEEMS_EIO, "s3 %s %s: %s", r->method, r->url,
				  cu.easy_strerror(cc));
	}
	if (r->status >= 200 && r->status <= 299)
		return TEEMS_OK;
	{
		char code[64], msg[128];
		int err = TEEMS_EIO;

		xml_field(r->errbody, "Code", code, sizeof(code));
		xml_field(r->errbody, "Message", msg, sizeof(msg));
		if (r->status == 404)
			err = TEEMS_ENOTFOUND;
		else if (r->status == 401 || r->status == 403)
			err = OBJ_EDENIED;
		else if (r->status >= 500)
			err = OBJ_EUNAVAIL;
		return teems_errf(errbuf, err, "s3 %s %s: HTTP %ld %s%s%s", r->method, r->url,
				  r->status, code[0] ? code : "", msg[0] ? ": " : "", msg);
	}
}

static struct blob_s3 *to_s3(struct blobstore *s)
{
	return (struct blob_s3 *)s;
}

static void object_url(struct blob_s3 *s, struct s3_req *r, const char *name)
{
	snprintf(r->url, sizeof(r->url), "%s/%s/%s%s", s->url.endpoint, s->url.bucket,
		 s->key_prefix, name);
}

static int s3_init(struct blobstore *base, char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct s3_req r = {.method = "PUT", .total_timeout = 1};
	struct obj_mem_src empty = {NULL, 0, 0};
	struct obj_src src = obj_src_mem(&empty);
	int rc;

	r.src = &src;
	snprintf(r.url, sizeof(r.url), "%s/%s", s->url.endpoint, s->url.bucket);
	rc = s3_perform(s, &r, errbuf);
	if (rc == TEEMS_EIO && r.status == 409) {
		/* It exists (BucketAlreadyOwnedByYou, or BucketAlreadyExists from servers that
		 * do not tell): ours if we can reach it. */
		struct s3_req h = {.method = "HEAD", .total_timeout = 1};

		memcpy(h.url, r.url, sizeof(h.url));
		rc = s3_perform(s, &h, errbuf);
	}
	return rc;
}

/* AWS's URI encoding for query values: everything but A-Za-z0-9-_.~ as %XX, uppercase. */
static int aws_encode(const char *in, char *out, size_t cap);

/* The object's URL with a query. Queries are built with their parameters in sorted order and
 * AWS-encoded values, and a parameter without a value is written "name=": then the query is its
 * own SigV4 canonical form, which matters because libcurl before 8.3 signs the query exactly as
 * given. Errors: TEEMS_EINVAL. */
static int object_query_url(struct blob_s3 *s, struct s3_req *r, const char *name,
			    const char *query, char *errbuf)
{
	if (snprintf(r->url, sizeof(r->url), "%s/%s/%s%s?%s", s->url.endpoint, s->url.bucket,
		     s->key_prefix, name, query) >= (int)sizeof(r->url))
		return teems_errf(errbuf, TEEMS_EINVAL, "s3 put %s: URL too long", name);
	return TEEMS_OK;
}

/* What an <Error> inside a 200 answer to CompleteMultipartUpload means, mapped like the
 * statuses of s3_perform: S3's own trouble is retryable, a refusal is a denial, anything else
 * (NoSuchUpload, InvalidPart, EntityTooSmall, or no recognisable answer at all) is TEEMS_EIO. */
static int complete_error(const char *code)
{
	if (strcmp(code, "InternalError") == 0 || strcmp(code, "ServiceUnavailable") == 0 ||
	    strcmp(code, "SlowDown") == 0)
		return OBJ_EUNAVAIL;
	if (strcmp(code, "AccessDenied") == 0)
		return OBJ_EDENIED;
	return TEEMS_EIO;
}

/* A sink into a buffer allocated before the first request, for the answers to Create and
 * Complete: nothing may fail for want of memory once Complete is sent, or an object that S3
 * made would be reported as a failed put. Blanks are dropped (S3 sends them while it assembles
 * a large object, to keep the connection alive; the tags looked for contain none). */
struct answer {
	char *buf; /* S3_MP_BODY_MAX + 1 bytes */
	size_t len;
};

static int answer_write(void *arg, const void *data, size_t len, char *errbuf)
{
	struct answer *a = arg;
	const char *p = data;

	for (size_t i = 0; i < len; i++) {
		if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
			continue;
		if (a->len == S3_MP_BODY_MAX)
			return teems_errf(errbuf, TEEMS_EIO, "s3: answer longer than %u bytes",
					  S3_MP_BODY_MAX);
		a->buf[a->len++] = p[i];
	}
	a->buf[a->len] = '\0';
	return TEEMS_OK;
}

/* Sends CompleteMultipartUpload with body xml (n bytes); the answer goes into a. Allocates
 * nothing. Errors: as s3_perform, and complete_error()'s for a 200 that is not a
 * CompleteMultipartUploadResult. */
static int mp_complete(struct blob_s3 *s, const char *name, const char *enc_id, const char *xml,
		       size_t n, struct answer *a, char *errbuf)
{
	struct obj_sink sink = {.write = answer_write, .arg = a};
	/* No total timeout: S3 may take minutes to assemble a large object, sending blanks to
	 * show it is alive, which the low-speed limit accepts. */
	struct s3_req r = {.method = "POST", .sink = &sink, .body = xml, .body_len = n};
	char query[16 + 3 * S3_MP_UPLOAD_ID_MAX + 4], code[64];
	int rc;

	a->len = 0;
	a->buf[0] = '\0';
	snprintf(query, sizeof(query), "uploadId=%s", enc_id);
	rc = object_query_url(s, &r, name, query, errbuf);
	if (rc == TEEMS_OK)
		rc = s3_perform(s, &r, errbuf);
	if (rc == TEEMS_OK && blob_s3_mp_complete_ok(a->buf, a->len, code, sizeof(code)) != 0)
		rc = teems_errf(errbuf, complete_error(code),
				"s3 put %s: CompleteMultipartUpload failed: %s", name,
				code[0] ? code : "no CompleteMultipartUploadResult in the answer");
	return rc;
}

/* AbortMultipartUpload of name's upload (enc_id: its UploadId, AWS-encoded): its parts are
 * deleted. Errors: as s3_perform (TEEMS_ENOTFOUND: no such upload, completed or aborted). */
static int mp_abort(struct blob_s3 *s, const char *name, const char *enc_id, char *errbuf)
{
	struct s3_req r = {.method = "DELETE", .total_timeout = 1};
	char query[16 + 3 * S3_MP_UPLOAD_ID_MAX + 4];
	int rc;

	snprintf(query, sizeof(query), "uploadId=%s", enc_id);
	rc = object_query_url(s, &r, name, query, errbuf);
	return rc == TEEMS_OK ? s3_perform(s, &r, errbuf) : rc;
}

/* Uploads len bytes of src as nparts parts of part_len bytes (the last one shorter). On any
 * failure after the upload was created, aborts it. Every allocation happens before Complete is
 * sent. Errors: as s3_put. */
static int s3_put_parts(struct blob_s3 *s, const char *name, const struct obj_src *src,
			uint64_t len, uint64_t part_len, uint32_t nparts, char *errbuf)
{
	struct answer a = {.buf = teems_malloc(S3_MP_BODY_MAX + 1)};
	struct obj_sink sink = {.write = answer_write, .arg = &a};
	struct s3_req r = {.method = "POST", .sink = &sink, .total_timeout = 1};
	char upload_id[S3_MP_UPLOAD_ID_MAX + 1], enc_id[3 * S3_MP_UPLOAD_ID_MAX + 4];
	char query[32 + sizeof(enc_id)];
	char(*etags)[S3_MP_ETAG_MAX + 1] = NULL;
	char *xml = NULL;
	uint8_t extra;
	size_t got = 0, n;
	int rc;

	if (a.buf == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "s3 put %s: out of memory", name);
	a.buf[0] = '\0';
	rc = object_query_url(s, &r, name, "uploads=", errbuf);
	if (rc == TEEMS_OK)
		rc = s3_perform(s, &r, errbuf);
	if (rc == TEEMS_OK && blob_s3_mp_parse_upload_id(a.buf, a.len, upload_id) != 0)
		rc = teems_errf(errbuf, TEEMS_EIO,
				"s3 put %s: no valid UploadId in the answer to "
				"CreateMultipartUpload",
				name);
	if (rc != TEEMS_OK) {
		teems_free(a.buf);
		return rc;
	}
	/* Cannot fail: the UploadId has at most S3_MP_UPLOAD_ID_MAX characters. */
	aws_encode(upload_id, enc_id, sizeof(enc_id));

	etags = teems_calloc(nparts, sizeof(*etags));
	if (etags == NULL) {
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "s3 put %s: out of memory", name);
		goto abort;
	}
	for (uint32_t i = 1; i <= nparts; i++) {
		struct s3_req p = {
			.method = "PUT",
			.src = src,
			.len = blob_s3_mp_part_bytes(len, part_len, nparts, i),
			.part = 1,
			.etag = etags[i - 1],
		};

		snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", i, enc_id);
		rc = object_query_url(s, &p, name, query, errbuf);
		if (rc == TEEMS_OK)
			rc = s3_perform(s, &p, errbuf);
		if (rc != TEEMS_OK)
			goto abort;
		if (p.etag_bad || etags[i - 1][0] == '\0') {
			rc = teems_errf(errbuf, TEEMS_EIO,
					"s3 put %s: part %u of %u: no valid ETag in the answer",
					name, i, nparts);
			goto abort;
		}
	}
	/* Unlike a single PUT, nothing is visible yet: a source longer than len is caught before
	 * the object exists. */
	rc = src->read(src->arg, &extra, 1, &got, errbuf);
	if (rc == TEEMS_OK && got != 0)
		rc = teems_errf(errbuf, TEEMS_EIO, "put %s: source longer than %llu bytes", name,
				(unsigned long long)len);
	if (rc != TEEMS_OK)
		goto abort;
	n = blob_s3_mp_complete_xml((const char(*)[S3_MP_ETAG_MAX + 1]) etags, nparts, NULL, 0);
	xml = teems_malloc(n + 1);
	if (xml == NULL) {
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "s3 put %s: out of memory", name);
		goto abort;
	}
	blob_s3_mp_complete_xml((const char(*)[S3_MP_ETAG_MAX + 1]) etags, nparts, xml, n + 1);
	rc = mp_complete(s, name, enc_id, xml, n, &a, errbuf);
	if (rc != TEEMS_OK)
		goto abort;
	teems_free(xml);
	teems_free(etags);
	teems_free(a.buf);
	return TEEMS_OK;

abort:
	/* Best effort, and its own failure is not the caller's error: without it the parts stay
	 * billed until the bucket's lifecycle rule removes them. */
	mp_abort(s, name, enc_id, NULL);
	teems_free(xml);
	teems_free(etags);
	teems_free(a.buf);
	return rc;
}

static int s3_put(struct blobstore *base, const char *name, const struct obj_src *src, uint64_t len,
		  char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct s3_req r = {.method = "PUT", .src = src, .len = len};
	uint64_t part_len;
	uint32_t nparts;
	uint8_t extra;
	size_t got = 0;
	int rc;

	if (blob_s3_mp_plan(len, s->part_size, &part_len, &nparts) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "s3 put %s: %llu bytes do not fit in %u parts of at most %llu",
				  name, (unsigned long long)len, S3_MP_MAX_PARTS,
				  (unsigned long long)S3_MP_MAX_PART);
	if (nparts > 0)
		return s3_put_parts(s, name, src, len, part_len, nparts, errbuf);
	object_url(s, &r, name);
	rc = s3_perform(s, &r, errbuf);
	if (rc != TEEMS_OK || r.end_checked)
		return rc;
	/* curl stops reading at Content-Length: make sure the source really ended there, and
	 * take back the upload if it did not (it would hold a prefix of what was meant). */
	rc = src->read(src->arg, &extra, 1, &got, errbuf);
	if (rc == TEEMS_OK && got == 0)
		return TEEMS_OK;
	if (rc == TEEMS_OK)
		rc = teems_errf(errbuf, TEEMS_EIO, "put %s: source longer than %llu bytes", name,
				(unsigned long long)len);
	r = (struct s3_req){.method = "DELETE", .total_timeout = 1};
	object_url(s, &r, name);
	s3_perform(s, &r, NULL);
	return rc;
}

static int s3_get(struct blobstore *base, const char *name, const struct obj_sink *sink,
		  char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct s3_req r = {.method = "GET", .sink = sink};

	object_url(s, &r, name);
	return s3_perform(s, &r, errbuf);
}

static int s3_del(struct blobstore *base, const char *name, char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct s3_req r = {.method = "DELETE", .total_timeout = 1};
	int rc;

	object_url(s, &r, name);
	rc = s3_perform(s, &r, errbuf);
	return rc == TEEMS_ENOTFOUND ? TEEMS_OK : rc;
}

static int s3_stat(struct blobstore *base, const char *name, struct blob_stat *st, char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct s3_req r = {.method = "HEAD", .total_timeout = 1};
	curl_off_t len = -1, mtime = -1;
	int rc;

	object_url(s, &r, name);
	rc = s3_perform(s, &r, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	cu.easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
	if (len < 0)
		return teems_errf(errbuf, TEEMS_EIO, "s3 HEAD %s: no Content-Length", name);
	cu.easy_getinfo(s->curl, CURLINFO_FILETIME_T, &mtime);
	st->size = (uint64_t)len;
	st->mtime = mtime > 0 ? (int64_t)mtime : 0;
	return TEEMS_OK;
}

static int aws_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			    *p == '~';

		if (o + 4 > cap)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

int blob_s3_parse_list(const char *xml, size_t len, int (*fn)(void *arg, const char *key),
		       void *arg, int *truncated, char *token, size_t token_cap, char *errbuf)
{
	const char *p = xml, *end = xml + len, *a, *b;
	char key[1024 + 1];
	int rc;

	*truncated = 0;
	if (token_cap > 0)
		token[0] = '\0';
	if (blob_s3_xml_find(xml, end, "<ListBucketResult") == NULL)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "s3 list: not a ListBucketResult");
	while ((a = blob_s3_xml_find(p, end, "<Key>")) != NULL) {
		a += 5;
		b = blob_s3_xml_find(a, end, "</Key>");
		if (b == NULL)
			return teems_errf(errbuf, TEEMS_ECORRUPT, "s3 list: unterminated <Key>");
		if (blob_s3_xml_unescape(a, (size_t)(b - a), key, sizeof(key)) != 0)
			return teems_errf(errbuf, TEEMS_ECORRUPT, "s3 list: bad key");
		rc = fn(arg, key);
		if (rc != 0)
			return rc;
		p = b + 6;
	}
	a = blob_s3_xml_find(xml, end, "<IsTruncated>");
	if (a != NULL) {
		a += 13;
		*truncated = (size_t)(end - a) >= 4 && memcmp(a, "true", 4) == 0;
	}
	a = blob_s3_xml_find(xml, end, "<NextContinuationToken>");
	if (a != NULL) {
		a += 23;
		b = blob_s3_xml_find(a, end, "</NextContinuationToken>");
		if (b == NULL || blob_s3_xml_unescape(a, (size_t)(b - a), token, token_cap) != 0)
			return teems_errf(errbuf, TEEMS_ECORRUPT,
					  "s3 list: bad continuation token");
	}
	if (*truncated && (token_cap == 0 || token[0] == '\0'))
		return teems_errf(errbuf, TEEMS_ECORRUPT,
				  "s3 list: truncated listing without a continuation token");
	return TEEMS_OK;
}

struct list_ctx {
	struct blob_s3 *s;
	blob_list_fn fn;
	void *arg;
};

static int list_key(void *arg, const char *key)
{
	struct list_ctx *l = arg;
	size_t plen = strlen(l->s->key_prefix);

	if (strncmp(key, l->s->key_prefix, plen) != 0 || !blob_name_valid(key + plen))
		return 0; /* not one of ours (a deeper "folder", a foreign object) */
	return l->fn(l->arg, key + plen);
}

static int s3_list(struct blobstore *base, const char *prefix, blob_list_fn fn, void *arg,
		   char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct list_ctx l = {s, fn, arg};
	char full[2 * BLOB_URL_FIELD_MAX], enc_prefix[6 * BLOB_URL_FIELD_MAX];
	char token[1024], prev[1024], enc_token[3 * 1024 + 1];
	int truncated, rc;

	snprintf(full, sizeof(full), "%s%s", s->key_prefix, prefix);
	if (aws_encode(full, enc_prefix, sizeof(enc_prefix)) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "s3 list: prefix too long");
	token[0] = '\0';
	do {
		struct obj_mem_sink body = {.limit = S3_LIST_BODY_MAX};
		struct obj_sink sink = obj_sink_mem(&body);
		struct s3_req r = {.method = "GET", .sink = &sink, .total_timeout = 1};

		memcpy(prev, token, sizeof(token));
		/* Parameters in sorted order, values AWS-encoded: the canonical query string of
		 * SigV4 is then the query string itself. */
		if (token[0] && aws_encode(token, enc_token, sizeof(enc_token)) != 0)
			return teems_errf(errbuf, TEEMS_ECORRUPT,
					  "s3 list: continuation token too long");
		if (snprintf(r.url, sizeof(r.url), "%s/%s?%s%s%slist-type=2&prefix=%s",
			     s->url.endpoint, s->url.bucket, token[0] ? "continuation-token=" : "",
			     token[0] ? enc_token : "", token[0] ? "&" : "",
			     enc_prefix) >= (int)sizeof(r.url))
			return teems_errf(errbuf, TEEMS_EINVAL, "s3 list: URL too long");
		rc = s3_perform(s, &r, errbuf);
		if (rc == TEEMS_OK)
			rc = blob_s3_parse_list(body.data ? (const char *)body.data : "", body.len,
						list_key, &l, &truncated, token, sizeof(token),
						errbuf);
		teems_free(body.data);
		if (rc != TEEMS_OK)
			return rc;
		if (truncated && strcmp(token, prev) == 0) /* the same page again, forever */
			return teems_errf(errbuf, TEEMS_ECORRUPT,
					  "s3 list: the continuation token does not change");
	} while (truncated);
	return TEEMS_OK;
}

/* The s3 store's leftovers of interrupted puts are incomplete multipart uploads: a put that
 * fails aborts its own, but a killed one cannot, and S3 keeps (and bills) their parts until they
 * are aborted. S3 dates an upload by its start only, which stays put while a large blob's parts
 * go up for hours, so an upload is aborted only once it started more than S3_SWEEP_MIN_AGE_S
 * ago (a day, the shortest AbortIncompleteMultipartUpload lifecycle rule AWS offers) as well as
 * before older_than. Only uploads of our names under our prefix are touched. */
#define S3_SWEEP_MIN_AGE_S (24 * 3600)

struct sweep_ctx {
	struct blob_s3 *s;
	int64_t before;
	uint64_t removed;
	int rc; /* why sweep_upload stopped the parse */
	char *errbuf;
};

static int sweep_upload(void *arg, const struct s3_mp_upload *u)
{
	struct sweep_ctx *w = arg;
	struct blob_s3 *s = w->s;
	size_t plen = strlen(s->key_prefix);
	char enc_id[3 * S3_MP_UPLOAD_ID_MAX + 4];
	int rc;

	if (strncmp(u->key, s->key_prefix, plen) != 0 || !blob_name_valid(u->key + plen) ||
	    u->initiated < 0 || u->initiated >= w->before)
		return 0;
	aws_encode(u->upload_id, enc_id, sizeof(enc_id)); /* fits: at most 3 bytes a character */
	rc = mp_abort(s, u->key + plen, enc_id, w->errbuf);
	if (rc == TEEMS_OK)
		w->removed++;
	else if (rc != TEEMS_ENOTFOUND) { /* not found: completed or aborted meanwhile */
		w->rc = rc;
		return 1;
	}
	return 0;
}

static int s3_sweep(struct blobstore *base, int64_t older_than, uint64_t *removed, char *errbuf)
{
	struct blob_s3 *s = to_s3(base);
	struct sweep_ctx w = {s, (int64_t)time(NULL) - S3_SWEEP_MIN_AGE_S, 0, TEEMS_OK, errbuf};
	char enc_prefix[3 * BLOB_URL_FIELD_MAX + 1];
	char key[S3_MP_KEY_MAX + 1], id[S3_MP_UPLOAD_ID_MAX + 1];
	char prev_key[S3_MP_KEY_MAX + 1], prev_id[S3_MP_UPLOAD_ID_MAX + 1];
	char enc_key[3 * S3_MP_KEY_MAX + 1], enc_id[3 * S3_MP_UPLOAD_ID_MAX + 1];
	int truncated, rc, order;

	if (older_than < w.before)
		w.before = older_than;
	*removed = 0;
	if (aws_encode(s->key_prefix, enc_prefix, sizeof(enc_prefix)) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "s3 sweep: prefix too long");
	key[0] = id[0] = '\0';
	do {
		struct obj_mem_sink body = {.limit = S3_LIST_BODY_MAX};
		struct obj_sink sink = obj_sink_mem(&body);
		struct s3_req r = {.method = "GET", .sink = &sink, .total_timeout = 1};

		memcpy(prev_key, key, sizeof(key));
		memcpy(prev_id, id, sizeof(id));
		/* ListMultipartUploads, parameters in sorted order (see s3_list). */
		if (aws_encode(key, enc_key, sizeof(enc_key)) != 0 ||
		    aws_encode(id, enc_id, sizeof(enc_id)) != 0)
			return teems_errf(errbuf, TEEMS_ECORRUPT, "s3 sweep: marker too long");
		if (snprintf(r.url, sizeof(r.url), "%s/%s?%s%s%sprefix=%s&%s%s%suploads=",
			     s->url.endpoint, s->url.bucket, key[0] ? "key-marker=" : "", enc_key,
			     key[0] ? "&" : "", enc_prefix, id[0] ? "upload-id-marker=" : "",
			     enc_id, id[0] ? "&" : "") >= (int)sizeof(r.url))
			return teems_errf(errbuf, TEEMS_EINVAL, "s3 sweep: URL too long");
		rc = s3_perform(s, &r, errbuf);
		if (rc == TEEMS_OK) {
			rc = blob_s3_mp_parse_uploads(body.data ? (const char *)body.data : "",
						      body.len, sweep_upload, &w, &truncated, key,
						      id);
			if (rc != 0)
				rc = w.rc != TEEMS_OK ? w.rc
						      : teems_errf(errbuf, TEEMS_ECORRUPT,
								   "s3 sweep: not a "
								   "ListMultipartUploadsResult, "
								   "or a malformed one");
		}
		teems_free(body.data);
		*removed = w.removed;
		if (rc != TEEMS_OK)
			return rc;
		/* Pages come in key order (uploads of one key by age): markers that do not move
		 * on would ask for the same page forever. */
		order = strcmp(key, prev_key);
		if (truncated && (order < 0 || (order == 0 && strcmp(id, prev_id) == 0)))
			return teems_errf(errbuf, TEEMS_ECORRUPT,
					  "s3 sweep: the listing does not advance");
	} while (truncated);
	return TEEMS_OK;
}

static void s3_close(struct blobstore *base)
{
	struct blob_s3 *s = to_s3(base);

	if (s->curl != NULL)
		cu.easy_cleanup(s->curl);
	if (s->userpwd != NULL) {
		tee_wipe(s->userpwd, strlen(s->userpwd));
		teems_free(s->userpwd);
	}
	teems_free(s);
}

static const struct blobstore_ops s3_ops = {
	.init = s3_init,
	.put = s3_put,
	.get = s3_get,
	.del = s3_del,
	.stat = s3_stat,
	.list = s3_list,
	.close = s3_close,
	.sweep = s3_sweep,
};

int blob_s3_open(const struct blob_url *url, const struct blobstore_opts *opts,
		 struct blobstore **out, char *errbuf)
{
	const char *ak = opts && opts->access_key ? opts->access_key : getenv("AWS_ACCESS_KEY_ID");
	const char *sk =
		opts && opts->secret_key ? opts->secret_key : getenv("AWS_SECRET_ACCESS_KEY");
	struct blob_s3 *s;
	size_t n;

	pthread_once(&curl_once, curl_global);
	if (curl_init_rc != CURLE_OK)
		return teems_errf(errbuf, TEEMS_EIO, "s3 store: %s", curl_load_err);
	if (ak == NULL || sk == NULL || ak[0] == '\0' || sk[0] == '\0')
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "s3 store: no credentials (set AWS_ACCESS_KEY_ID and "
				  "AWS_SECRET_ACCESS_KEY)");
	if (strchr(ak, ':') != NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "s3 store: access key contains ':'");
	s = teems_calloc(1, sizeof(*s));
	if (s == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "s3 store: out of memory");
	s->base.ops = &s3_ops;
	s->url = *url;
	n = strlen(url->prefix);
	snprintf(s->key_prefix, sizeof(s->key_prefix), "%s%s", url->prefix,
		 n > 0 && url->prefix[n - 1] != '/' ? "/" : "");
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", url->region);
	s->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms
			: url->timeout_ms > 0	     ? url->timeout_ms
						     : S3_DEFAULT_TIMEOUT_MS;
	s->verbose =
		getenv("TEEMS_S3_VERBOSE") != NULL && strcmp(getenv("TEEMS_S3_VERBOSE"), "1") == 0;
	s->part_size = url->part_size > 0 ? url->part_size : S3_MP_DEFAULT_PART;
	n = strlen(ak) + strlen(sk) + 2;
	s->userpwd = teems_malloc(n);
	s->curl = cu.easy_init();
	if (s->userpwd == NULL || s->curl == NULL) {
		s3_close(&s->base);
		return teems_errf(errbuf, TEEMS_ENOMEM, "s3 store: out of memory");
	}
	snprintf(s->userpwd, n, "%s:%s", ak, sk);
	*out = &s->base;
	return TEEMS_OK;
}
