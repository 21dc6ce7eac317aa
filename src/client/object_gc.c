/* Garbage collection of orphan blobs (include/teems/object.h, teems_obj_gc; docs/OBJECTS.md).
 *
 * An orphan is a blob no record names: a put that failed or crashed between upload and commit,
 * a put that lost its compare-and-set and could not delete its blob, a superseded blob whose
 * delete after the commit failed, the blob of an object removed while the store was down.
 *
 * Order matters. The store is listed FIRST and the records read after: a blob committed before
 * the scan reaches its key is seen as referenced. A blob that is listed but whose commit the
 * scan misses (its put is still between upload and commit) looks like an orphan; the grace
 * period spares it: only blobs older than grace_s are removed, so a put whose commit comes
 * more than grace_s after its upload ended could lose its blob. The age comes from the store
 * (file mtime, S3 Last-Modified): a store that lies about it can only make gc remove blobs
 * early, which it could do anyway by deleting them. Last, the store's own leftovers of
 * interrupted puts (the dir store's .tmp-* files, the s3 store's incomplete multipart uploads)
 * older than the grace period go too.
 *
 * Visibility. gc can only compare the store with the records it can read. A service with users
 * and per-key policies shows each user only some keys (SCAN filters them), and a blob of an
 * object this user cannot see must not be taken for an orphan. So, when the service speaks
 * TEEMS.POLICY.GET (policies exist), an unreferenced blob is removed only if it can be
 * attributed to an object this user sees: its header (plaintext, docs/OBJECTS.md "Blob
 * format") carries SHA-256 of the object id, which is compared with the ids the scan
 * returned. Such blobs are the superseded versions and the lost races of visible objects;
 * blobs of objects never committed or removed, or of objects hidden from this user, are
 * kept (counted as unattributed). A service without policies shows every key to everyone,
 * and then every unreferenced blob goes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/object_internal.h"
#include "common/alloc.h"
#include "teems/err.h"

#define SCAN_COUNT "500"

struct name_set {
	char (*name)[OBJ_NAME_MAX + 1];
	size_t n, cap;
};

static int set_add(struct name_set *s, const char *name)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		void *p = teems_realloc(s->name, cap * sizeof(*s->name));

		if (p == NULL)
			return TEEMS_ENOMEM;
		s->name = p;
		s->cap = cap;
	}
	snprintf(s->name[s->n++], OBJ_NAME_MAX + 1, "%s", name);
	return TEEMS_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* SHA-256 of the ids of the objects this scan saw. */
struct id_set {
	uint8_t (*h)[TEE_SHA256_LEN];
	size_t n, cap;
};

static int ids_add(struct id_set *s, const void *id, size_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		void *p = teems_realloc(s->h, cap * sizeof(*s->h));

		if (p == NULL)
			return TEEMS_ENOMEM;
		s->h = p;
		s->cap = cap;
	}
	tee_sha256(id, len, s->h[s->n++]);
	return TEEMS_OK;
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, TEE_SHA256_LEN);
}

/* Collects a blob's first OBJ_HEADER_LEN bytes, then stops the transfer. */
struct header_sink {
	uint8_t h[OBJ_HEADER_LEN];
	size_t len;
};

#define HEADER_DONE 1 /* not an error: the sink has what it wants */

static int header_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct header_sink *hs = arg;
	size_t n = len < OBJ_HEADER_LEN - hs->len ? len : OBJ_HEADER_LEN - hs->len;

	memcpy(hs->h + hs->len, buf, n);
	hs->len += n;
	return hs->len == OBJ_HEADER_LEN ? HEADER_DONE : TEEMS_OK;
}

/* 1 if the blob's header names an object whose id hashes into ids. Unauthenticated: the
 * store could forge the hash of a visible object into a blob, and so have gc remove what it
 * could as well remove itself. */
static int attributable(struct teems_obj_client *c, const char *name, const struct id_set *ids)
{
	struct header_sink hs = {.len = 0};
	struct obj_sink sink = {.write = header_write, .arg = &hs};
	int rc = blobstore_get(c->store, name, &sink, NULL);

	if ((rc != HEADER_DONE && rc != TEEMS_OK) || hs.len < OBJ_HEADER_LEN ||
	    memcmp(hs.h, OBJ_MAGIC, 8) != 0 || ids->n == 0)
		return 0;
	return bsearch(hs.h + 16, ids->h, ids->n, sizeof(*ids->h), cmp_hash) != NULL;
}

static int list_cb(void *arg, const char *name)
{
	return set_add(arg, name);
}

/* Reads the records under keys (one MGET) and adds the blobs they name to refs. */
static int add_refs(struct teems_obj_client *c, const struct conn_reply *keys,
		    struct name_set *refs, struct id_set *ids, char *errbuf)
{
	const char **argv = teems_calloc(keys->elements + 1, sizeof(*argv));
	size_t *len = teems_calloc(keys->elements + 1, sizeof(*len));
	struct conn_reply *r = NULL;
	int rc;

	if (argv == NULL || len == NULL) {
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
		goto out;
	}
	argv[0] = "MGET";
	len[0] = 4;
	for (size_t i = 0; i < keys->elements; i++) {
		if (keys->element[i]->type != CONN_REPLY_STRING) {
			rc = teems_errf(errbuf, TEEMS_EPROTO, "SCAN: unexpected reply");
			goto out;
		}
		argv[i + 1] = keys->element[i]->str;
		len[i + 1] = keys->element[i]->len;
		if (len[i + 1] >= OBJ_KEY_PREFIX_LEN &&
		    ids_add(ids, argv[i + 1] + OBJ_KEY_PREFIX_LEN,
			    len[i + 1] - OBJ_KEY_PREFIX_LEN) != TEEMS_OK) {
			rc = teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
			goto out;
		}
	}
	rc = obj_svc_call(&c->svc, keys->elements + 1, argv, len, false, &r, NULL, errbuf);
	if (rc != TEEMS_OK)
		goto out;
	if (r->type != CONN_REPLY_ARRAY || r->elements != keys->elements) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "MGET: unexpected reply");
		goto out;
	}
	for (size_t i = 0; i < r->elements && rc == TEEMS_OK; i++) {
		const struct conn_reply *v = r->element[i];
		struct obj_meta m;

		/* A key deleted since the SCAN, or a value that is not an object record (someone
		 * SET it by hand): it names no blob. */
		if (v->type != CONN_REPLY_STRING ||
		    obj_meta_decode((const uint8_t *)v->str, v->len, &m, NULL) != TEEMS_OK)
			continue;
		if (m.store_name[0] != '\0' && set_add(refs, m.store_name) != TEEMS_OK)
			rc = teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
		tee_wipe(&m, sizeof(m));
	}
out:
	conn_reply_free(r);
	teems_free(argv);
	teems_free(len);
	return rc;
}

static int scan_refs(struct teems_obj_client *c, struct name_set *refs, struct id_set *ids,
		     char *errbuf)
{
	unsigned long long cursor = 0;
	int rc;

	do {
		char cur[24];
		struct conn_reply *r;
		char *end;

		snprintf(cur, sizeof(cur), "%llu", cursor);
		rc = obj_svc_call(&c->svc, 6,
				  (const char *const[]){"SCAN", cur, "MATCH", OBJ_KEY_PREFIX "*",
							"COUNT", SCAN_COUNT},
				  NULL, false, &r, NULL, errbuf);
		if (rc != TEEMS_OK)
			return rc;
		if (r->type != CONN_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != CONN_REPLY_STRING ||
		    r->element[1]->type != CONN_REPLY_ARRAY) {
			conn_reply_free(r);
			return teems_errf(errbuf, TEEMS_EPROTO, "SCAN: unexpected reply");
		}
		cursor = strtoull(r->element[0]->str, &end, 10);
		if (*end != '\0' || end == r->element[0]->str)
			rc = teems_errf(errbuf, TEEMS_EPROTO, "SCAN: bad cursor");
		else if (r->element[1]->elements > 0)
			rc = add_refs(c, r->element[1], refs, ids, errbuf);
		conn_reply_free(r);
	} while (rc == TEEMS_OK && cursor != 0);
	return rc;
}

/* Whether the service has per-key policies (and so may hide keys from this user). */
static int policies_exist(struct teems_obj_client *c, bool *exist, char *errbuf)
{
	struct conn_reply *r = NULL;
	int rc = obj_svc_call(&c->svc, 2,
			      (const char *const[]){"TEEMS.POLICY.GET", OBJ_KEY_PREFIX "gc"}, NULL,
			      false, &r, NULL, errbuf);

	conn_reply_free(r);
	*exist = rc != TEEMS_EVERSION;
	return rc == TEEMS_EVERSION || rc == OBJ_EDENIED ? TEEMS_OK : rc;
}

int teems_obj_gc(struct teems_obj_client *c, uint64_t grace_s, teems_obj_gc_fn fn, void *arg,
		 uint64_t *removed, uint64_t *kept, uint64_t *unattributed, char *errbuf)
{
	struct name_set blobs = {0}, refs = {0};
	struct id_set ids = {0};
	uint64_t n_removed = 0, n_kept = 0, n_unattr = 0;
	int64_t now = (int64_t)time(NULL);
	bool policies = true;
	int rc;

	rc = blobstore_list(c->store, "", list_cb, &blobs, errbuf);
	if (rc == TEEMS_ENOMEM)
		teems_errf(errbuf, rc, "out of memory");
	if (rc == TEEMS_OK)
		rc = policies_exist(c, &policies, errbuf);
	if (rc == TEEMS_OK)
		rc = scan_refs(c, &refs, &ids, errbuf);
	if (rc != TEEMS_OK)
		goto out;
	if (refs.n > 0)
		qsort(refs.name, refs.n, sizeof(*refs.name), cmp_name);
	if (ids.n > 0)
		qsort(ids.h, ids.n, sizeof(*ids.h), cmp_hash);
	for (size_t i = 0; i < blobs.n; i++) {
		struct blob_stat st = {0};
		int r;

		if (refs.n > 0 &&
		    bsearch(blobs.name[i], refs.name, refs.n, sizeof(*refs.name), cmp_name)) {
			n_kept++;
			continue;
		}
		r = blobstore_stat(c->store, blobs.name[i], &st, errbuf);
		if (r == TEEMS_ENOTFOUND)
			continue; /* removed meanwhile */
		if (r != TEEMS_OK) {
			rc = r;
			goto out;
		}
		if (st.mtime > now - (int64_t)grace_s && grace_s > 0)
			continue; /* young: maybe a put in progress */
		if (policies && !attributable(c, blobs.name[i], &ids)) {
			n_unattr++;
			continue;
		}
		if ((rc = blobstore_delete(c->store, blobs.name[i], errbuf)) != TEEMS_OK)
			goto out;
		n_removed++;
		if (fn != NULL)
			fn(arg, blobs.name[i], st.size);
	}
	/* What puts interrupted inside the store left (the dir store's temporary files). */
	{
		uint64_t swept = 0;

		rc = blobstore_sweep(c->store, grace_s > 0 ? now - (int64_t)grace_s : now + 1,
				     &swept, errbuf);
		n_removed += swept;
	}
out:
	if (removed != NULL)
		*removed = n_removed;
	if (kept != NULL)
		*kept = n_kept;
	if (unattributed != NULL)
		*unattributed = n_unattr;
	teems_free(blobs.name);
	teems_free(refs.name);
	teems_free(ids.h);
	return rc;
}
