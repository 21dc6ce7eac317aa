/* Internals of libteems' object API (include/teems/object.h): the service connection with
 * fail-over (object_svc.c) shared by the operations (object.c) and garbage collection
 * (object_gc.c). */
#ifndef TEEMS_CLIENT_OBJECT_INTERNAL_H
#define TEEMS_CLIENT_OBJECT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/blobcache.h"
#include "client/blobstore.h"
#include "client/conn.h"
#include "client/obj_crypto.h"
#include "teems/object.h"

#define OBJ_KEY_PREFIX "obj:"
#define OBJ_KEY_PREFIX_LEN 4
#define OBJ_HOST_MAX 256
#define OBJ_PATH_MAX 4096

/* The teems service as a list of replicas, one connection open at a time. */
struct obj_svc {
	char host[TEEMS_OBJ_ADDRS_MAX][OBJ_HOST_MAX];
	uint16_t port[TEEMS_OBJ_ADDRS_MAX];
	size_t n;
	char ca_file[OBJ_PATH_MAX]; /* "" = plaintext */
	char user[OBJ_USER_MAX + 1];
	char *password; /* teems_malloc'd, wiped at close; NULL: no AUTH */
	unsigned timeout_ms;
	struct conn *conn; /* to replica cur, or NULL */
	size_t cur;
	int64_t last_reply_ms; /* when conn last delivered a reply */
};

struct teems_obj_client {
	struct obj_svc svc;
	/* The service speaks TEEMS.POLICY.* (per-key policies it enforces on every command);
	 * valid once probed (at open for a client with a password, else when first needed). */
	bool service_policies;
	bool probed;
	struct blobstore *store;
	struct blobcache *cache;
	uint32_t chunk_size;
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

/* Fills svc's replica list from opts (cluster_dir's cluster.conf and ca.pem, or addrs) and
 * connects to the first replica that answers. Errors: TEEMS_EINVAL, TEEMS_EIO, TEEMS_ENOMEM,
 * OBJ_ESERVICE, OBJ_EDENIED. */
int obj_svc_open(struct obj_svc *svc, const struct teems_obj_options *opts, char *errbuf);
void obj_svc_close(struct obj_svc *svc);

/* Sends one command and reads its reply (*reply belongs to the caller), failing over to the
 * next replica when one cannot be reached or answers TRYAGAIN; rounds over all replicas are
 * repeated while some replica says TRYAGAIN, until the timeout. A write
 * whose reply is lost after it was sent is not retried (a compare-and-set could then lose to
 * itself): OBJ_ESERVICE with "outcome unknown" in errbuf and *sent_unknown set (may be NULL).
 * Error replies NOPERM, NOAUTH, WRONGPASS are OBJ_EDENIED; "ERR unknown command" is
 * TEEMS_EVERSION (this service does not speak it); other error replies TEEMS_EPROTO with the
 * server's text. */
int obj_svc_call(struct obj_svc *svc, size_t argc, const char *const *argv, const size_t *len,
		 bool write, struct conn_reply **reply, bool *sent_unknown, char *errbuf);

/* VGET "obj:"+id: *exists false for no record (never written or deleted); *rv the record's
 * service version either way. */
int obj_svc_read_record(struct obj_svc *svc, const char *id, struct obj_meta *meta, uint64_t *rv,
			bool *exists, char *errbuf);

/* VSET "obj:"+id record rv. OBJ_ECONFLICT (*cur = the current version) when rv is not
 * current; on success *cur is the new version. *unknown as obj_svc_call. */
int obj_svc_write_record(struct obj_svc *svc, const char *id, const struct obj_meta *meta,
			 uint64_t rv, uint64_t *cur, bool *unknown, char *errbuf);

/* Copies "obj:" + id into key (OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1 bytes) after checking
 * the id. Errors: TEEMS_EINVAL. */
int obj_key(const char *id, char *key, char *errbuf);

int64_t obj_now_ms(void);

#endif
