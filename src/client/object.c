/* libteems objects (include/teems/object.h): put, get, stat, rm, ls and policies over the
 * teems service (metadata records, object_svc.c) and an untrusted blob store (obj.h).
 * DESIGN.md section 9; RR paper section V-B/C. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/obj.h"
#include "client/object_internal.h"
#include "common/alloc.h"
#include "teems/err.h"

#define PUT_RETRIES 8
#define POLICY_RETRIES 8
#define GET_BUF_DEFAULT_MAX (1ull << 30)
#define LS_COUNT "1000"

/* The public codes are the internal ones (obj_err.h); keep them in step. */
_Static_assert((int)TEEMS_OBJ_ETAMPERED == (int)OBJ_ETAMPERED, "codes");
_Static_assert((int)TEEMS_OBJ_ESTALE == (int)OBJ_ESTALE, "codes");
_Static_assert((int)TEEMS_OBJ_EDENIED == (int)OBJ_EDENIED, "codes");
_Static_assert((int)TEEMS_OBJ_ESTORE == (int)OBJ_EUNAVAIL, "codes");
_Static_assert((int)TEEMS_OBJ_EMISSING == (int)OBJ_EMISSING, "codes");
_Static_assert((int)TEEMS_OBJ_ECONFLICT == (int)OBJ_ECONFLICT, "codes");
_Static_assert((int)TEEMS_OBJ_EUNAVAIL == (int)OBJ_ESERVICE, "codes");
_Static_assert(TEEMS_OBJ_USER_MAX == OBJ_USER_MAX && TEEMS_OBJ_LIST_MAX == OBJ_LIST_MAX,
	       "policy sizes");

/* Short words a script can match ("teems: get ID: blob tampered"). */
const char *teems_obj_strerror(int err)
{
	switch (err) {
	case TEEMS_OK:
		return "ok";
	case TEEMS_ENOTFOUND:
		return "not found";
	case OBJ_ETAMPERED:
	case OBJ_ETRUNCATED:
		return "blob tampered";
	case OBJ_ESTALE:
		return "blob stale";
	case OBJ_EMISSING:
		return "blob missing";
	case OBJ_EDENIED:
		return "access denied";
	case OBJ_EUNAVAIL:
		return "store unavailable";
	case OBJ_ECONFLICT:
		return "conflict";
	case OBJ_ESERVICE:
		return "service unavailable";
	default:
		if (err <= CONN_EUNREACHABLE && err >= CONN_ERR_MIN_)
			return conn_strerror(err);
		return obj_strerror(err);
	}
}

void teems_obj_free(void *buf)
{
	teems_free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * Open and close
 * ------------------------------------------------------------------------------------------- */

/* Does the service enforce per-key policies? An "unknown command" says no. Asked once, when
 * first needed: a client without a password never depends on the answer for reads and writes
 * (service_enforces), so its gets and puts do not pay the round trip. */
static int probe_policies(struct teems_obj_client *c, char *errbuf)
{
	struct conn_reply *r = NULL;
	int rc;

	if (c->probed)
		return TEEMS_OK;
	rc = obj_svc_call(&c->svc, 2,
			  (const char *const[]){"TEEMS.POLICY.GET", OBJ_KEY_PREFIX "probe"}, NULL,
			  false, &r, NULL, errbuf);
	conn_reply_free(r);
	if (rc != TEEMS_EVERSION && rc != OBJ_EDENIED && rc != TEEMS_OK)
		return rc;
	c->service_policies = rc != TEEMS_EVERSION;
	c->probed = true;
	return TEEMS_OK;
}

/* The service decides who may do what when it has policies and knows who we are (we
 * authenticated; such a client probed at open). Otherwise this client checks the record's
 * copy of the policy itself. */
static bool service_enforces(const struct teems_obj_client *c)
{
	return c->svc.password != NULL && c->service_policies;
}

/* TEEMS.POLICY.SET obj:ID owner readers writers ("-": an empty list). */
static int service_policy_set(struct teems_obj_client *c, const char *key, const char *owner,
			      const char *readers, const char *writers, char *errbuf)
{
	struct conn_reply *r = NULL;
	int rc = obj_svc_call(&c->svc, 5,
			      (const char *const[]){"TEEMS.POLICY.SET", key, owner,
						    readers[0] ? readers : "-",
						    writers[0] ? writers : "-"},
			      NULL, true, &r, NULL, errbuf);

	conn_reply_free(r);
	return rc;
}

/* TEEMS.POLICY.GET obj:ID into p; *found false when the key has none. */
static int service_policy_get(struct teems_obj_client *c, const char *key,
			      struct teems_obj_policy *p, bool *found, char *errbuf)
{
	struct conn_reply *r = NULL;
	int rc = obj_svc_call(&c->svc, 2, (const char *const[]){"TEEMS.POLICY.GET", key}, NULL,
			      false, &r, NULL, errbuf);
	char *field[3] = {p->owner, p->readers, p->writers};
	size_t cap[3] = {sizeof(p->owner), sizeof(p->readers), sizeof(p->writers)};

	*found = false;
	if (rc != TEEMS_OK)
		return rc;
	if (r->type == CONN_REPLY_ARRAY && r->elements == 3) {
		for (int i = 0; i < 3; i++) {
			const struct conn_reply *e = r->element[i];

			if (e->type != CONN_REPLY_STRING) {
				rc = teems_errf(errbuf, TEEMS_EPROTO,
						"TEEMS.POLICY.GET: unexpected reply");
				break;
			}
			snprintf(field[i], cap[i], "%s", strcmp(e->str, "-") == 0 ? "" : e->str);
		}
		*found = rc == TEEMS_OK;
	} else if (r->type != CONN_REPLY_NIL) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "TEEMS.POLICY.GET: unexpected reply");
	}
	conn_reply_free(r);
	return rc;
}

int teems_obj_client_open(const struct teems_obj_options *opts, struct teems_obj_client **out,
			  char *errbuf)
{
	struct teems_obj_client *c;
	struct blobstore_opts so = {0};
	char url[OBJ_PATH_MAX + 16];
	int rc;

	*out = NULL;
	if (opts == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "no options");
	if (opts->chunk_size != 0 &&
	    (opts->chunk_size < OBJ_CHUNK_MIN || opts->chunk_size > OBJ_CHUNK_MAX))
		return teems_errf(errbuf, TEEMS_EINVAL, "chunk size must be %u to %u bytes",
				  OBJ_CHUNK_MIN, OBJ_CHUNK_MAX);
	if (opts->store_url != NULL)
		snprintf(url, sizeof(url), "%s", opts->store_url);
	else if (opts->cluster_dir != NULL)
		snprintf(url, sizeof(url), "dir://%s/store", opts->cluster_dir);
	else
		return teems_errf(errbuf, TEEMS_EINVAL, "no store URL (and no cluster directory)");
	if ((c = teems_calloc(1, sizeof(*c))) == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
	c->chunk_size = opts->chunk_size;
	c->progress = opts->progress;
	c->progress_arg = opts->progress_arg;
	so.access_key = opts->store_access_key;
	so.secret_key = opts->store_secret_key;
	so.timeout_ms = opts->timeout_ms;
	if ((rc = blobstore_open(url, &so, &c->store, errbuf)) != TEEMS_OK)
		goto fail;
	if ((rc = blobstore_init(c->store, errbuf)) != TEEMS_OK)
		goto fail;
	if (opts->cache_dir != NULL && (rc = blobcache_open(opts->cache_dir, opts->cache_max_bytes,
							    &c->cache, errbuf)) != TEEMS_OK)
		goto fail;
	if ((rc = obj_svc_open(&c->svc, opts, errbuf)) != TEEMS_OK)
		goto fail;
	if (c->svc.password != NULL && (rc = probe_policies(c, errbuf)) != TEEMS_OK)
		goto fail;
	*out = c;
	return TEEMS_OK;
fail:
	teems_obj_client_close(c);
	return rc;
}

void teems_obj_client_close(struct teems_obj_client *c)
{
	if (c == NULL)
		return;
	obj_svc_close(&c->svc);
	blobstore_close(c->store);
	blobcache_close(c->cache);
	teems_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Shared pieces
 * ------------------------------------------------------------------------------------------- */

static void fill_stat(const struct obj_meta *m, uint64_t rv, struct teems_obj_stat *st)
{
	if (st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	st->version = m->version;
	st->size = m->size;
	memcpy(st->sha256, m->pt_sha256, sizeof(st->sha256));
	for (size_t i = 0; i < sizeof(st->sha256); i++)
		snprintf(st->sha256_hex + 2 * i, 3, "%02x", st->sha256[i]);
	snprintf(st->store_name, sizeof(st->store_name), "%s", m->store_name);
	st->chunk_size = m->chunk_size;
	st->record_version = rv;
	snprintf(st->owner, sizeof(st->owner), "%s", m->owner);
	snprintf(st->readers, sizeof(st->readers), "%s", m->readers);
	snprintf(st->writers, sizeof(st->writers), "%s", m->writers);
}

/* The policy as this client reads it. This is NOT enforcement: a client that skips the check
 * reads the record anyway (docs/OBJECTS.md, "Policies"). The service will enforce it once it
 * knows users and per-key policies; until then this keeps honest clients honest and gives
 * scripts the error they will get then. An object without an owner is open to everyone. */
static int check_access(const struct teems_obj_client *c, const struct obj_meta *m, bool write,
			const char *id, char *errbuf)
{
	const char *user = c->svc.user;

	if (service_enforces(c))
		return TEEMS_OK; /* the service refused already if it had to (NOPERM) */
	if (m->owner[0] == '\0' || strcmp(m->owner, user) == 0 ||
	    obj_user_list_has(write ? m->writers : m->readers, user))
		return TEEMS_OK;
	return teems_errf(errbuf, OBJ_EDENIED, "%s is not a %s of %s (owner %s)",
			  user[0] ? user : "the anonymous user", write ? "writer" : "reader", id,
			  m->owner);
}

/* Counts plaintext bytes for the progress callback. */
struct progress_src {
	struct obj_src in;
	const struct teems_obj_client *c;
	uint64_t done, total;
};

static int progress_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct progress_src *p = arg;
	int rc = p->in.read(p->in.arg, buf, cap, got, errbuf);

	if (rc == TEEMS_OK && *got > 0) {
		p->done += *got;
		p->c->progress(p->c->progress_arg, p->done, p->total);
	}
	return rc;
}

struct progress_sink {
	struct obj_sink out;
	const struct teems_obj_client *c;
	uint64_t done, total;
};

static int progress_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct progress_sink *p = arg;
	int rc = p->out.write(p->out.arg, buf, len, errbuf);

	if (rc == TEEMS_OK && len > 0) {
		p->done += len;
		p->c->progress(p->c->progress_arg, p->done, p->total);
	}
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * put
 * ------------------------------------------------------------------------------------------- */

/* What a put reads from: a memory buffer, or a seekable descriptor from offset start. */
struct put_input {
	struct obj_mem_src mem;
	int fd; /* -1: mem */
	off_t start;
	uint64_t size;
};

static int rewind_input(struct put_input *in, char *errbuf)
{
	if (in->fd < 0) {
		in->mem.pos = 0;
		return TEEMS_OK;
	}
	if (lseek(in->fd, in->start, SEEK_SET) != in->start)
		return teems_errf(errbuf, TEEMS_EIO, "seek: %s", strerror(errno));
	return TEEMS_OK;
}

/* A new object of an authenticated user gets its policy in the service BEFORE its record
 * exists, so it is never readable without one: owner = the user, no readers or writers. A
 * policy already on the key (an administrator's, or a claim of an earlier failed put) stays. */
static int claim(struct teems_obj_client *c, const char *key, char *errbuf)
{
	struct teems_obj_policy p;
	bool found;
	int rc;

	if (!service_enforces(c))
		return TEEMS_OK;
	rc = service_policy_get(c, key, &p, &found, errbuf);
	if (rc == TEEMS_OK && !found)
		rc = service_policy_set(c, key, c->svc.user, "", "", errbuf);
	return rc;
}

static int put_input(struct teems_obj_client *c, const char *id, struct put_input *in,
		     unsigned flags, struct teems_obj_stat *st, char *errbuf)
{
	char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1];
	int rc;

	if ((rc = obj_key(id, key, errbuf)) != TEEMS_OK)
		return rc;
	for (int attempt = 0;; attempt++) {
		struct obj_meta old, meta;
		struct progress_src ps;
		struct obj_src src;
		uint64_t rv, cur;
		bool exists, unknown = false;

		if ((rc = obj_svc_read_record(&c->svc, id, &old, &rv, &exists, errbuf)) != TEEMS_OK)
			return rc;
		if (exists && (rc = check_access(c, &old, true, id, errbuf)) != TEEMS_OK)
			goto wipe_old;
		memset(&meta, 0, sizeof(meta));
		if (exists) {
			memcpy(meta.object_key, old.object_key, sizeof(meta.object_key));
			meta.version = old.version + 1;
			memcpy(meta.owner, old.owner, sizeof(meta.owner));
			memcpy(meta.readers, old.readers, sizeof(meta.readers));
			memcpy(meta.writers, old.writers, sizeof(meta.writers));
		} else {
			if ((rc = obj_new_object_key(meta.object_key)) != TEEMS_OK) {
				rc = teems_errf(errbuf, rc, "object key: %s", teems_strerror(rc));
				goto wipe_old;
			}
			meta.version = 1;
			/* The creator owns the object (DESIGN.md section 9); anonymous objects
			 * have no policy. */
			memcpy(meta.owner, c->svc.user, sizeof(meta.owner));
			if (attempt == 0 && (rc = claim(c, key, errbuf)) != TEEMS_OK)
				goto wipe;
		}
		meta.size = in->size;
		meta.chunk_size = c->chunk_size;
		if (attempt > 0 && (rc = rewind_input(in, errbuf)) != TEEMS_OK)
			goto wipe;
		src = in->fd < 0 ? obj_src_mem(&in->mem) : obj_src_fd(&in->fd);
		if (c->progress != NULL) {
			ps = (struct progress_src){src, c, 0, in->size};
			src = (struct obj_src){.read = progress_read, .arg = &ps};
		}
		rc = obj_put_blob(c->store, &meta, id, strlen(id), &src, errbuf);
		if (rc != TEEMS_OK)
			goto wipe;
		rc = obj_svc_write_record(&c->svc, id, &meta, rv, &cur, &unknown, errbuf);
		if (rc == TEEMS_OK) {
			/* The superseded blob: nothing names it any more (a failure here leaves
			 * an orphan for gc, not an error). */
			if (exists && strcmp(old.store_name, meta.store_name) != 0)
				blobstore_delete(c->store, old.store_name, NULL);
			fill_stat(&meta, cur, st);
		} else if (!unknown) {
			/* Not committed: our blob is nobody's. When the outcome is unknown it
			 * may be committed after all, so it stays for gc to judge. */
			blobstore_delete(c->store, meta.store_name, NULL);
		}
	wipe:
		tee_wipe(&meta, sizeof(meta));
	wipe_old:
		tee_wipe(&old, sizeof(old));
		if (rc != OBJ_ECONFLICT || !(flags & TEEMS_OBJ_RETRY) || attempt + 1 >= PUT_RETRIES)
			return rc;
	}
}

int teems_obj_put_buf(struct teems_obj_client *c, const char *id, const void *buf, size_t len,
		      unsigned flags, struct teems_obj_stat *st, char *errbuf)
{
	struct put_input in = {.mem = {buf, len, 0}, .fd = -1, .size = len};

	if (buf == NULL && len > 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "no buffer");
	return put_input(c, id, &in, flags, st, errbuf);
}

/* Copies fd to an unlinked temporary file (the blob format needs the length first). */
static int spool(int fd, int *out, uint64_t *size, char *errbuf)
{
	const char *dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	int tmp = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	struct obj_src src = obj_src_fd(&fd);
	struct obj_sink sink;
	struct stat sb;
	void *buf;
	int rc;

	if (tmp < 0)
		return teems_errf(errbuf, TEEMS_EIO, "spool file in %s: %s", dir, strerror(errno));
	if ((buf = teems_malloc(1 << 16)) == NULL) {
		close(tmp);
		return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
	}
	sink = obj_sink_fd(&tmp);
	rc = obj_copy(&src, &sink, buf, 1 << 16, errbuf);
	teems_free(buf);
	if (rc == TEEMS_OK && (fstat(tmp, &sb) != 0 || lseek(tmp, 0, SEEK_SET) != 0))
		rc = teems_errf(errbuf, TEEMS_EIO, "spool file: %s", strerror(errno));
	if (rc != TEEMS_OK) {
		close(tmp);
		return rc;
	}
	*out = tmp;
	*size = (uint64_t)sb.st_size;
	return TEEMS_OK;
}

int teems_obj_put_fd(struct teems_obj_client *c, const char *id, int fd, unsigned flags,
		     struct teems_obj_stat *st, char *errbuf)
{
	struct put_input in = {.fd = fd};
	struct stat sb;
	int rc, spooled = -1;

	if (fstat(fd, &sb) != 0)
		return teems_errf(errbuf, TEEMS_EIO, "fstat: %s", strerror(errno));
	if (S_ISREG(sb.st_mode)) {
		in.start = lseek(fd, 0, SEEK_CUR);
		if (in.start < 0 || in.start > sb.st_size)
			return teems_errf(errbuf, TEEMS_EIO, "seek: %s", strerror(errno));
		in.size = (uint64_t)(sb.st_size - in.start);
	} else {
		if ((rc = spool(fd, &spooled, &in.size, errbuf)) != TEEMS_OK)
			return rc;
		in.fd = spooled;
	}
	rc = put_input(c, id, &in, flags, st, errbuf);
	if (spooled >= 0)
		close(spooled);
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * get and stat
 * ------------------------------------------------------------------------------------------- */

/* Reads the record and checks it may be read; *meta holds secrets: wipe it. */
static int read_for_get(struct teems_obj_client *c, const char *id, struct obj_meta *meta,
			uint64_t *rv, char *errbuf)
{
	bool exists;
	int rc = obj_svc_read_record(&c->svc, id, meta, rv, &exists, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	if (!exists)
		return teems_errf(errbuf, TEEMS_ENOTFOUND, "no object %s", id);
	return check_access(c, meta, false, id, errbuf);
}

static int get_sink(struct teems_obj_client *c, const char *id, const struct obj_sink *sink,
		    struct obj_meta *meta, char *errbuf)
{
	struct progress_sink ps;
	struct obj_sink s = *sink;
	int rc;

	if (c->progress != NULL) {
		ps = (struct progress_sink){*sink, c, 0, meta->size};
		s = (struct obj_sink){.write = progress_write, .arg = &ps};
	}
	rc = obj_get_blob(c->store, c->cache, meta, id, strlen(id), &s, errbuf);
	if (rc == TEEMS_ENOTFOUND)
		rc = OBJ_EMISSING; /* the record exists: its blob is what is missing */
	else if (rc == OBJ_ETRUNCATED)
		rc = OBJ_ETAMPERED; /* errbuf still says "truncated" */
	return rc;
}

int teems_obj_get_fd(struct teems_obj_client *c, const char *id, int fd, struct teems_obj_stat *st,
		     char *errbuf)
{
	struct obj_meta meta;
	struct obj_sink sink = obj_sink_fd(&fd);
	uint64_t rv;
	int rc = read_for_get(c, id, &meta, &rv, errbuf);

	if (rc == TEEMS_OK)
		rc = get_sink(c, id, &sink, &meta, errbuf);
	if (rc == TEEMS_OK)
		fill_stat(&meta, rv, st);
	tee_wipe(&meta, sizeof(meta));
	return rc;
}

int teems_obj_get_buf(struct teems_obj_client *c, const char *id, void **buf, size_t *len,
		      size_t max, struct teems_obj_stat *st, char *errbuf)
{
	struct obj_mem_sink mem = {0};
	struct obj_sink sink = obj_sink_mem(&mem);
	struct obj_meta meta;
	uint64_t rv;
	int rc = read_for_get(c, id, &meta, &rv, errbuf);

	*buf = NULL;
	*len = 0;
	if (max == 0)
		max = GET_BUF_DEFAULT_MAX;
	if (rc == TEEMS_OK && meta.size > max)
		rc = teems_errf(errbuf, TEEMS_EFULL, "%s has %llu bytes, more than %zu", id,
				(unsigned long long)meta.size, max);
	mem.limit = max;
	if (rc == TEEMS_OK)
		rc = get_sink(c, id, &sink, &meta, errbuf);
	if (rc == TEEMS_OK) {
		fill_stat(&meta, rv, st);
		*buf = mem.data;
		*len = mem.len;
	} else {
		teems_free(mem.data);
	}
	tee_wipe(&meta, sizeof(meta));
	return rc;
}

int teems_obj_stat(struct teems_obj_client *c, const char *id, struct teems_obj_stat *st,
		   char *errbuf)
{
	struct obj_meta meta;
	uint64_t rv;
	int rc = read_for_get(c, id, &meta, &rv, errbuf);

	if (rc == TEEMS_OK)
		fill_stat(&meta, rv, st);
	tee_wipe(&meta, sizeof(meta));
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * rm
 * ------------------------------------------------------------------------------------------- */

int teems_obj_rm(struct teems_obj_client *c, const char *id, char *errbuf)
{
	char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1];
	struct conn_reply *r;
	struct obj_meta meta;
	uint64_t rv;
	bool exists;
	int rc;

	if ((rc = obj_key(id, key, errbuf)) != TEEMS_OK)
		return rc;
	if ((rc = obj_svc_read_record(&c->svc, id, &meta, &rv, &exists, errbuf)) != TEEMS_OK)
		return rc;
	if (!exists)
		rc = teems_errf(errbuf, TEEMS_ENOTFOUND, "no object %s", id);
	else
		rc = check_access(c, &meta, true, id, errbuf);
	/* The record goes first: a blob without a record is an orphan gc removes, a record
	 * without its blob would be a broken object. DEL is unconditional: a put committed since
	 * the VGET is removed too, and its blob left to gc. */
	if (rc == TEEMS_OK)
		rc = obj_svc_call(&c->svc, 2, (const char *const[]){"DEL", key}, NULL, true, &r,
				  NULL, errbuf);
	if (rc == TEEMS_OK) {
		conn_reply_free(r);
		blobstore_delete(c->store, meta.store_name, NULL);
	}
	tee_wipe(&meta, sizeof(meta));
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * ls
 * ------------------------------------------------------------------------------------------- */

/* SCAN MATCH pattern for ids starting with prefix: glob characters escaped. */
static int ls_pattern(const char *prefix, char *out, size_t cap)
{
	size_t o = 0;

	memcpy(out, OBJ_KEY_PREFIX, OBJ_KEY_PREFIX_LEN);
	o = OBJ_KEY_PREFIX_LEN;
	for (const char *p = prefix; *p != '\0'; p++) {
		if (o + 3 >= cap)
			return -1;
		if (strchr("*?[]\\", *p) != NULL)
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o++] = '*';
	out[o] = '\0';
	return 0;
}

int teems_obj_ls(struct teems_obj_client *c, const char *prefix, uint64_t *cursor,
		 teems_obj_ls_fn fn, void *arg, char *errbuf)
{
	char pattern[OBJ_KEY_PREFIX_LEN + 2 * TEEMS_OBJ_ID_MAX + 2], cur[24];
	const struct conn_reply *keys;
	struct conn_reply *r;
	unsigned long long next;
	char *end;
	int rc;

	if (prefix == NULL)
		prefix = "";
	if (strlen(prefix) > TEEMS_OBJ_ID_MAX || ls_pattern(prefix, pattern, sizeof(pattern)) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "prefix too long");
	snprintf(cur, sizeof(cur), "%llu", (unsigned long long)*cursor);
	rc = obj_svc_call(&c->svc, 6,
			  (const char *const[]){"SCAN", cur, "MATCH", pattern, "COUNT", LS_COUNT},
			  NULL, false, &r, NULL, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (r->type != CONN_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != CONN_REPLY_STRING || r->element[1]->type != CONN_REPLY_ARRAY) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "SCAN: unexpected reply");
		goto out;
	}
	errno = 0;
	next = strtoull(r->element[0]->str, &end, 10);
	if (errno != 0 || *end != '\0' || end == r->element[0]->str) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "SCAN: bad cursor");
		goto out;
	}
	keys = r->element[1];
	for (size_t i = 0; i < keys->elements && rc == TEEMS_OK; i++) {
		const struct conn_reply *k = keys->element[i];

		if (k->type != CONN_REPLY_STRING || k->len <= OBJ_KEY_PREFIX_LEN ||
		    memcmp(k->str, OBJ_KEY_PREFIX, OBJ_KEY_PREFIX_LEN) != 0)
			continue;
		rc = fn(arg, k->str + OBJ_KEY_PREFIX_LEN, k->len - OBJ_KEY_PREFIX_LEN);
	}
	if (rc == TEEMS_OK)
		*cursor = next;
out:
	conn_reply_free(r);
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * policies
 * ------------------------------------------------------------------------------------------- */

int teems_obj_policy_get(struct teems_obj_client *c, const char *id, struct teems_obj_policy *p,
			 char *errbuf)
{
	char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1];
	struct teems_obj_stat st;
	bool found = false;
	int rc = teems_obj_stat(c, id, &st, errbuf);

	memset(p, 0, sizeof(*p));
	/* The service's policy is the one that counts; the record keeps a copy. */
	if (rc == TEEMS_OK)
		rc = probe_policies(c, errbuf);
	if (rc == TEEMS_OK && c->service_policies && obj_key(id, key, errbuf) == TEEMS_OK)
		rc = service_policy_get(c, key, p, &found, errbuf);
	if (rc == TEEMS_OK && !found) {
		memcpy(p->owner, st.owner, sizeof(p->owner));
		memcpy(p->readers, st.readers, sizeof(p->readers));
		memcpy(p->writers, st.writers, sizeof(p->writers));
	}
	return rc;
}

/* The policy after applying the fields of p that `which` names to cur. */
static void apply_policy(struct teems_obj_policy *cur, const struct teems_obj_policy *p,
			 unsigned which, const char *user)
{
	if (which & TEEMS_OBJ_POLICY_OWNER)
		snprintf(cur->owner, sizeof(cur->owner), "%s", p->owner);
	else if (cur->owner[0] == '\0')
		snprintf(cur->owner, sizeof(cur->owner), "%s", user);
	if (which & TEEMS_OBJ_POLICY_READERS)
		snprintf(cur->readers, sizeof(cur->readers), "%s", p->readers);
	if (which & TEEMS_OBJ_POLICY_WRITERS)
		snprintf(cur->writers, sizeof(cur->writers), "%s", p->writers);
}

/* With a service that enforces policies: the service's policy changes first (the service
 * decides whether this user may), then the record's copy follows. If the copy cannot follow
 * (after a transfer the caller may no longer write the record) the service's policy, which
 * is the one that counts, stands. */
static int policy_set_service(struct teems_obj_client *c, const char *id, const char *key,
			      const struct teems_obj_policy *p, unsigned which, char *errbuf)
{
	struct teems_obj_policy want;
	int rc = teems_obj_policy_get(c, id, &want, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	apply_policy(&want, p, which, c->svc.user);
	rc = service_policy_set(c, key, want.owner, want.readers, want.writers, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	for (int attempt = 0; attempt < POLICY_RETRIES; attempt++) {
		struct obj_meta meta;
		uint64_t rv, cur;
		bool exists, unknown = false;

		rc = obj_svc_read_record(&c->svc, id, &meta, &rv, &exists, errbuf);
		if (rc == TEEMS_OK && exists) {
			memcpy(meta.owner, want.owner, sizeof(meta.owner));
			memcpy(meta.readers, want.readers, sizeof(meta.readers));
			memcpy(meta.writers, want.writers, sizeof(meta.writers));
			rc = obj_svc_write_record(&c->svc, id, &meta, rv, &cur, &unknown, errbuf);
		}
		tee_wipe(&meta, sizeof(meta));
		if (rc != OBJ_ECONFLICT)
			break;
	}
	/* The copy is informational once the service holds the policy. */
	return rc == OBJ_EDENIED || rc == OBJ_ECONFLICT ? TEEMS_OK : rc;
}

int teems_obj_policy_set(struct teems_obj_client *c, const char *id,
			 const struct teems_obj_policy *p, unsigned which, char *errbuf)
{
	const char *user = c->svc.user;
	int rc = OBJ_ECONFLICT;

	if (((which & TEEMS_OBJ_POLICY_OWNER) && !obj_user_valid(p->owner)) ||
	    ((which & TEEMS_OBJ_POLICY_READERS) && !obj_user_list_valid(p->readers)) ||
	    ((which & TEEMS_OBJ_POLICY_WRITERS) && !obj_user_list_valid(p->writers)))
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "a policy names users of [A-Za-z0-9._@-] separated by commas, "
				  "or *");
	if (service_enforces(c)) {
		char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1];

		if ((rc = obj_key(id, key, errbuf)) != TEEMS_OK)
			return rc;
		return policy_set_service(c, id, key, p, which, errbuf);
	}
	for (int attempt = 0; attempt < POLICY_RETRIES && rc == OBJ_ECONFLICT; attempt++) {
		struct obj_meta meta;
		uint64_t rv, cur;
		bool exists, unknown = false;

		if ((rc = obj_svc_read_record(&c->svc, id, &meta, &rv, &exists, errbuf)) !=
		    TEEMS_OK)
			return rc;
		if (!exists) {
			rc = teems_errf(errbuf, TEEMS_ENOTFOUND, "no object %s", id);
		} else if (meta.owner[0] != '\0' && strcmp(meta.owner, user) != 0) {
			/* Advisory, like check_access: see docs/OBJECTS.md. */
			rc = teems_errf(errbuf, OBJ_EDENIED,
					"only the owner (%s) changes the policy of %s", meta.owner,
					id);
		} else if (meta.owner[0] == '\0' && user[0] == '\0' &&
			   !(which & TEEMS_OBJ_POLICY_OWNER)) {
			rc = teems_errf(errbuf, TEEMS_EINVAL,
					"%s has no owner: a policy needs one (give a user)", id);
		} else {
			if (which & TEEMS_OBJ_POLICY_OWNER)
				snprintf(meta.owner, sizeof(meta.owner), "%s", p->owner);
			else if (meta.owner[0] == '\0')
				snprintf(meta.owner, sizeof(meta.owner), "%s", user);
			if (which & TEEMS_OBJ_POLICY_READERS)
				snprintf(meta.readers, sizeof(meta.readers), "%s", p->readers);
			if (which & TEEMS_OBJ_POLICY_WRITERS)
				snprintf(meta.writers, sizeof(meta.writers), "%s", p->writers);
			rc = obj_svc_write_record(&c->svc, id, &meta, rv, &cur, &unknown, errbuf);
		}
		tee_wipe(&meta, sizeof(meta));
	}
	return rc;
}
