/* libteems objects: encrypted, integrity-checked, fresh objects in untrusted storage
 * (DESIGN.md section 9; docs/OBJECTS.md; RR paper section V, "TEEMS").
 *
 * An object is a byte string of any size under an id. Its bytes live encrypted in a store that
 * teems does not trust (dir://PATH or s3://BUCKET/PREFIX?endpoint=URL); what makes them
 * trustworthy (keys, digests, version, the blob's random name, the policy) is a small metadata
 * record that the teems service keeps under the key "obj:" + id and replicates inside TEEs.
 *
 *	struct teems_obj_options o = {.cluster_dir = "teems-cluster"};
 *	struct teems_obj_client *c;
 *	char err[TEEMS_ERRBUF_LEN];
 *
 *	if (teems_obj_client_open(&o, &c, err) != 0) ...
 *	rc = teems_obj_put_fd(c, "reports/q3.pdf", fd, 0, NULL, err);
 *	rc = teems_obj_get_fd(c, "reports/q3.pdf", out_fd, NULL, err);
 *	if (rc == TEEMS_OBJ_ETAMPERED) ...   // the store changed the blob: nothing valid was read
 *	teems_obj_client_close(c);
 *
 * put: read the current record (VGET: its version v and old blob), encrypt the bytes with a
 *   fresh key as version+1 and upload them under a fresh random name, then commit the new
 *   record with VSET ... v (compare-and-set). Exactly one of several concurrent writers wins;
 *   a loser deletes its blob and gets TEEMS_OBJ_ECONFLICT, or retries if asked to. After the
 *   commit the superseded blob is deleted. A crash between upload and commit leaves an orphan
 *   blob that teems_obj_gc removes; never a broken object.
 * get: read the record (VGET is linearizable, so it names the newest committed version), then
 *   stream the blob through the decryptor: every byte authenticates under the fresh record's
 *   keys before it is passed on. A blob that is missing, altered, cut or older than the record
 *   is reported as exactly that.
 *
 * Ownership: a client belongs to its opener until teems_obj_client_close; strings passed in
 * are borrowed for the call. One client per thread. */
#ifndef TEEMS_OBJECT_H
#define TEEMS_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "teems/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Errors beyond teems/err.h. Functions below return TEEMS_OK, one of these, TEEMS_ENOTFOUND
 * (no object has this id), TEEMS_EINVAL (a bad argument: the message says which), TEEMS_EIO
 * (a local file failed), TEEMS_ECORRUPT (the record under the id is not an object record),
 * or TEEMS_ENOMEM. teems_obj_strerror describes any of them. */
enum teems_obj_err {
	/* The blob does not authenticate: changed, cut short, swapped, or not a teems blob. */
	TEEMS_OBJ_ETAMPERED = -100,
	/* The blob is an authentic older version of the object: the store rolled it back. */
	TEEMS_OBJ_ESTALE = -102,
	/* The service (policy, credentials) or the store (S3 403) refused access. */
	TEEMS_OBJ_EDENIED = -103,
	/* The store cannot be reached or failed on its side; retrying may help. */
	TEEMS_OBJ_ESTORE = -104,
	/* The record names a blob the store does not have. */
	TEEMS_OBJ_EMISSING = -105,
	/* A concurrent writer committed first (put without TEEMS_OBJ_RETRY, policy, rm). */
	TEEMS_OBJ_ECONFLICT = -106,
	/* The service cannot be reached, or a write's reply was lost (its outcome is unknown;
	 * the message says so: the blob is then left for teems_obj_gc). */
	TEEMS_OBJ_EUNAVAIL = -107,
};

const char *teems_obj_strerror(int err);

#define TEEMS_OBJ_ID_MAX 1024  /* bytes in an object id */
#define TEEMS_OBJ_USER_MAX 64  /* bytes in a user name */
#define TEEMS_OBJ_LIST_MAX 255 /* bytes in a reader or writer list */
#define TEEMS_OBJ_ADDRS_MAX 16 /* service addresses */

struct teems_obj_options {
	/* A cluster directory made by `teems cluster up` (DIR/cluster.conf lists the replicas,
	 * DIR/ca.pem is the service CA; the store defaults to dir://DIR/store). Or NULL and: */
	const char *cluster_dir;
	/* "host:port" of replicas, tried in order ([v6]:port for IPv6), and the CA file that
	 * issued their certificates (NULL: plaintext, for development only). */
	const char *const *addrs;
	size_t naddrs;
	const char *ca_file;
	/* Who the caller is. user NULL: anonymous (objects get no owner). With a password the
	 * client authenticates (AUTH user password) on every connection. */
	const char *user;
	const char *password;
	/* The store's URL (required without cluster_dir), and S3 credentials (NULL: the
	 * environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
	const char *store_url;
	const char *store_access_key;
	const char *store_secret_key;
	/* A local cache of blobs (by content hash; used only when the fresh record names that
	 * hash). NULL: none. cache_max_bytes 0: no limit. */
	const char *cache_dir;
	uint64_t cache_max_bytes;
	/* Per service request and store operation without progress; 0: 10000 ms. */
	unsigned timeout_ms;
	/* Plaintext bytes per encrypted chunk for new versions; 0: 1 MiB. */
	uint32_t chunk_size;
	/* Called as bytes flow during put and get (done of total plaintext bytes), at most once
	 * per chunk. NULL: none. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

struct teems_obj_client;

/* Connects to the first replica that answers and opens the store (creating a dir store's
 * directory or an s3 bucket if missing). Errors: TEEMS_EINVAL, TEEMS_ENOMEM, TEEMS_EIO,
 * TEEMS_OBJ_EUNAVAIL, TEEMS_OBJ_EDENIED (AUTH refused), TEEMS_OBJ_ESTORE. */
int teems_obj_client_open(const struct teems_obj_options *opts, struct teems_obj_client **out,
			  char *errbuf);
void teems_obj_client_close(struct teems_obj_client *c);

struct teems_obj_stat {
	uint64_t version; /* object version: 1 for the first put, +1 per put */
	uint64_t size;	  /* plaintext bytes */
	uint8_t sha256[32];
	char sha256_hex[65];
	char store_name[65]; /* the blob's name in the store */
	uint32_t chunk_size;
	uint64_t record_version; /* the service's version of the record (for compare-and-set) */
	char owner[TEEMS_OBJ_USER_MAX + 1];
	char readers[TEEMS_OBJ_LIST_MAX + 1];
	char writers[TEEMS_OBJ_LIST_MAX + 1];
};

/* Object ids: 1..TEEMS_OBJ_ID_MAX bytes, no control characters (so `ls` prints one a line). */

/* put flags */
#define TEEMS_OBJ_RETRY                                                       \
	1u /* on a lost compare-and-set, read again and retry (up to 8 times; \
	      needs a seekable source) instead of TEEMS_OBJ_ECONFLICT */

/* Stores len bytes as the next version of id. st (may be NULL) receives the new version's
 * stat. Errors: as above, TEEMS_OBJ_ECONFLICT, TEEMS_OBJ_EDENIED, TEEMS_OBJ_ESTORE,
 * TEEMS_OBJ_EUNAVAIL. */
int teems_obj_put_buf(struct teems_obj_client *c, const char *id, const void *buf, size_t len,
		      unsigned flags, struct teems_obj_stat *st, char *errbuf);

/* Same from a file descriptor, streaming (memory stays bounded whatever the size). A regular
 * file is read from its current offset to its end; anything else (a pipe) is first spooled to
 * an unlinked temporary file in $TMPDIR, since the blob format needs the length up front. */
int teems_obj_put_fd(struct teems_obj_client *c, const char *id, int fd, unsigned flags,
		     struct teems_obj_stat *st, char *errbuf);

/* Streams the newest version's plaintext into fd. On any error fd may have received a prefix
 * of authenticated bytes: discard it (the CLI writes to a temporary name and renames only on
 * success). Errors: TEEMS_ENOTFOUND, TEEMS_OBJ_EMISSING, TEEMS_OBJ_ETAMPERED,
 * TEEMS_OBJ_ESTALE, TEEMS_OBJ_EDENIED, TEEMS_OBJ_ESTORE, TEEMS_OBJ_EUNAVAIL, TEEMS_EIO. */
int teems_obj_get_fd(struct teems_obj_client *c, const char *id, int fd, struct teems_obj_stat *st,
		     char *errbuf);

/* Same into a buffer allocated for the caller (*buf, *len; free with teems_obj_free); objects
 * larger than max bytes (0: 1 GiB) fail with TEEMS_EFULL before anything is fetched. */
int teems_obj_get_buf(struct teems_obj_client *c, const char *id, void **buf, size_t *len,
		      size_t max, struct teems_obj_stat *st, char *errbuf);
void teems_obj_free(void *buf);

/* The newest version's record (no blob is read). Errors: TEEMS_ENOTFOUND,
 * TEEMS_OBJ_EDENIED, TEEMS_OBJ_EUNAVAIL, TEEMS_ECORRUPT. */
int teems_obj_stat(struct teems_obj_client *c, const char *id, struct teems_obj_stat *st,
		   char *errbuf);

/* Deletes the record, then the blob. Errors: TEEMS_ENOTFOUND, TEEMS_OBJ_EDENIED,
 * TEEMS_OBJ_ECONFLICT (a put committed in between), TEEMS_OBJ_EUNAVAIL. A store failure after
 * the record is gone is not an error (the blob is an orphan for gc). */
int teems_obj_rm(struct teems_obj_client *c, const char *id, char *errbuf);

/* One page of the ids that start with prefix ("" or NULL: all). *cursor is 0 for the first
 * page and is set to the cursor of the next one; 0 after the last. A page may be empty while
 * the cursor is not 0: keep calling. fn is called once per id (id borrowed for the call, not
 * NUL-free: use id_len); a non-zero return stops and is returned. Errors: TEEMS_OBJ_EUNAVAIL,
 * TEEMS_EINVAL, TEEMS_ENOMEM. */
typedef int (*teems_obj_ls_fn)(void *arg, const char *id, size_t id_len);
int teems_obj_ls(struct teems_obj_client *c, const char *prefix, uint64_t *cursor,
		 teems_obj_ls_fn fn, void *arg, char *errbuf);

struct teems_obj_policy {
	char owner[TEEMS_OBJ_USER_MAX + 1];   /* "" when the object has no policy */
	char readers[TEEMS_OBJ_LIST_MAX + 1]; /* "alice,bob", "*" (everyone) or "" */
	char writers[TEEMS_OBJ_LIST_MAX + 1];
};

/* Policies (docs/OBJECTS.md, "Policies"). When the service enforces per-key policies and the
 * client authenticated (a password), the service decides every access (NOPERM replies are
 * TEEMS_OBJ_EDENIED), a put that creates an object first claims the key for the user
 * (TEEMS.POLICY.SET key user - -), and these two functions read and change the service's
 * policy (the record keeps a copy). Otherwise the policy lives in the record only and this
 * library checks it itself: advisory, not enforcement.
 *
 * The object's policy. Errors: as teems_obj_stat. */
int teems_obj_policy_get(struct teems_obj_client *c, const char *id, struct teems_obj_policy *p,
			 char *errbuf);

/* Changes the fields of the policy that `which` names (TEEMS_OBJ_POLICY_*) to those of p, by
 * a compare-and-set of the record, retried on conflict. Only the owner may change a policy; an
 * object without an owner is claimed by the caller's user. Changing the owner is a transfer.
 * Errors: as teems_obj_stat, TEEMS_EINVAL (bad names, no user), TEEMS_OBJ_ECONFLICT (after
 * retries). */
#define TEEMS_OBJ_POLICY_OWNER 1u
#define TEEMS_OBJ_POLICY_READERS 2u
#define TEEMS_OBJ_POLICY_WRITERS 4u
int teems_obj_policy_set(struct teems_obj_client *c, const char *id,
			 const struct teems_obj_policy *p, unsigned which, char *errbuf);

/* Removes blobs of the store that no record names and that are older than grace_s seconds
 * (young orphans may belong to a put in progress: keep grace_s above the longest upload),
 * and what interrupted puts left inside the store (the dir store's temporary files) older
 * than grace_s. fn (may be NULL) is called for each removed blob (not for temporary files;
 * *removed counts both); *kept counts the referenced blobs.
 *
 * gc compares the store with the records this user can read. When the service has per-key
 * policies (it answers TEEMS.POLICY.GET), it may hide objects, so an unreferenced blob is
 * removed only if its header names an object this user sees (a superseded version, a lost
 * race); the others are kept and counted in *unattributed. Without policies every key is
 * visible and every unreferenced blob goes. Pointers may be NULL. Errors:
 * TEEMS_OBJ_EUNAVAIL, TEEMS_OBJ_ESTORE, TEEMS_OBJ_EDENIED, TEEMS_ENOMEM. */
typedef void (*teems_obj_gc_fn)(void *arg, const char *store_name, uint64_t size);
int teems_obj_gc(struct teems_obj_client *c, uint64_t grace_s, teems_obj_gc_fn fn, void *arg,
		 uint64_t *removed, uint64_t *kept, uint64_t *unattributed, char *errbuf);

#ifdef __cplusplus
}
#endif
#endif
