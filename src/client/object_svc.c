/* The teems service as libteems' object layer sees it (object_internal.h): a list of replicas,
 * one TLS connection at a time, fail-over on unreachable replicas and TRYAGAIN, and the record
 * reads and compare-and-set writes of DESIGN.md section 9. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/object_internal.h"
#include "common/alloc.h"
#include "teems/err.h"

#define TRYAGAIN_PAUSE_MS 100
#define CONNECT_TIMEOUT_MS 2000
#define IDLE_CHECK_MS 1000

int64_t obj_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int obj_key(const char *id, char *key, char *errbuf)
{
	size_t n = id != NULL ? strlen(id) : 0;

	if (n == 0 || n > TEEMS_OBJ_ID_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "an object id has 1 to %d bytes",
				  TEEMS_OBJ_ID_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "an object id has no control characters");
	memcpy(key, OBJ_KEY_PREFIX, OBJ_KEY_PREFIX_LEN);
	memcpy(key + OBJ_KEY_PREFIX_LEN, id, n + 1);
	return TEEMS_OK;
}

/* "host:port" or "[v6]:port". */
static int parse_addr(const char *s, char *host, uint16_t *port)
{
	const char *colon, *h = s, *he;
	char *end;
	unsigned long p;

	if (s[0] == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		he = colon;
	}
	if (he == h || (size_t)(he - h) >= OBJ_HOST_MAX)
		return -1;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || p == 0 || p > 65535)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	*port = (uint16_t)p;
	return 0;
}

/* DIR/cluster.conf: "<id> <pid> <client host:port> <peer host:port>" per replica
 * (docs/OPERATIONS.md, "Local clusters"). */
static int load_cluster(struct obj_svc *svc, const char *dir, char *errbuf)
{
	char path[OBJ_PATH_MAX], line[1024];
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/cluster.conf", dir) >= (int)sizeof(path) ||
	    snprintf(svc->ca_file, sizeof(svc->ca_file), "%s/ca.pem", dir) >=
		    (int)sizeof(svc->ca_file))
		return teems_errf(errbuf, TEEMS_EINVAL, "cluster directory name too long");
	f = fopen(path, "r");
	if (f == NULL)
		return teems_errf(errbuf, errno == ENOENT ? OBJ_ESERVICE : TEEMS_EIO,
				  "%s: %s (start a cluster with `teems cluster up --dir %s`)", path,
				  strerror(errno), dir);
	while (fgets(line, sizeof(line), f) != NULL) {
		char client[OBJ_HOST_MAX + 16];
		unsigned id;
		long pid;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%u %ld %271s", &id, &pid, client) != 3 ||
		    svc->n == TEEMS_OBJ_ADDRS_MAX ||
		    parse_addr(client, svc->host[svc->n], &svc->port[svc->n]) != 0) {
			fclose(f);
			return teems_errf(errbuf, TEEMS_EINVAL, "%s: malformed line", path);
		}
		svc->n++;
	}
	fclose(f);
	if (svc->n == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "%s lists no replica", path);
	return TEEMS_OK;
}

static bool is_error(const struct conn_reply *r, const char *prefix)
{
	return r->type == CONN_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* Opens replica i and authenticates. */
static int connect_one(struct obj_svc *svc, size_t i, char *errbuf)
{
	struct conn_options o = {
		.host = svc->host[i],
		.port = svc->port[i],
		.ca_file = svc->ca_file[0] ? svc->ca_file : NULL,
		.connect_timeout_ms =
			svc->timeout_ms < CONNECT_TIMEOUT_MS ? svc->timeout_ms : CONNECT_TIMEOUT_MS,
		.io_timeout_ms = svc->timeout_ms,
	};
	struct conn_reply *r = NULL;
	int rc = conn_open(&o, &svc->conn, errbuf);

	if (rc != 0) {
		svc->conn = NULL;
		return rc;
	}
	svc->cur = i;
	if (svc->password == NULL)
		return TEEMS_OK;
	rc = conn_commandv(svc->conn, &r, errbuf, "AUTH", svc->user, svc->password, NULL);
	if (rc == 0 && r->type == CONN_REPLY_ERROR)
		rc = teems_errf(errbuf, OBJ_EDENIED, "%s: AUTH %s: %s", conn_peer(svc->conn),
				svc->user, r->str);
	conn_reply_free(r);
	if (rc != 0) {
		conn_close(svc->conn);
		svc->conn = NULL;
	}
	return rc;
}

int obj_svc_call(struct obj_svc *svc, size_t argc, const char *const *argv, const size_t *len,
		 bool write, struct conn_reply **reply, bool *sent_unknown, char *errbuf)
{
	char err[TEEMS_ERRBUF_LEN] = "no replica";
	int64_t deadline = obj_now_ms() + svc->timeout_ms;
	size_t tries = 0;
	bool tryagain = false; /* some replica said TRYAGAIN in this round */
	int rc;

	*reply = NULL;
	if (sent_unknown != NULL)
		*sent_unknown = false;
	for (;;) {
		struct conn_reply *r = NULL;

		/* After a round over every replica: another round only if one of them said
		 * TRYAGAIN (an election: wait for its end), as the teems CLI does; when none
		 * answers at all, the service is down now. */
		if (tries > 0 && tries % svc->n == 0) {
			if (!tryagain || obj_now_ms() >= deadline)
				break;
			tryagain = false;
			pause_ms(TRYAGAIN_PAUSE_MS);
		}
		tries++;
		if (svc->conn == NULL) {
			size_t i = (svc->cur + (tries > 1)) % svc->n;

			rc = connect_one(svc, i, err);
			if (rc == OBJ_EDENIED || rc == TEEMS_ENOMEM ||
			    (rc != 0 && !conn_err_is_unavailable(rc) && rc != CONN_ETLS))
				return teems_errf(errbuf, rc == OBJ_EDENIED ? rc : TEEMS_EIO, "%s",
						  err);
			if (rc != 0) {
				svc->cur = i;
				continue;
			}
		}
		/* A command that was not sent whole was not executed: safe to retry elsewhere. */
		rc = conn_send(svc->conn, argc, argv, len, err);
		if (rc == 0) {
			rc = conn_recv(svc->conn, &r, err);
			if (rc != 0 && write) {
				conn_close(svc->conn);
				svc->conn = NULL;
				if (sent_unknown != NULL)
					*sent_unknown = true;
				return teems_errf(errbuf, OBJ_ESERVICE,
						  "%s; the write's outcome is unknown", err);
			}
		}
		if (rc != 0) {
			conn_close(svc->conn);
			svc->conn = NULL;
			if (rc == TEEMS_ENOMEM)
				return teems_errf(errbuf, rc, "%s", err);
			continue;
		}
		if (is_error(r, "TRYAGAIN")) {
			snprintf(err, sizeof(err), "%s: %s", conn_peer(svc->conn), r->str);
			tryagain = true;
			conn_reply_free(r);
			conn_close(svc->conn);
			svc->conn = NULL;
			continue;
		}
		if (is_error(r, "NOPERM") || is_error(r, "NOAUTH") || is_error(r, "WRONGPASS")) {
			rc = teems_errf(errbuf, OBJ_EDENIED, "%s: %s", argv[0], r->str);
			conn_reply_free(r);
			return rc;
		}
		if (r->type == CONN_REPLY_ERROR) {
			rc = teems_errf(errbuf,
					is_error(r, "ERR unknown command") ? TEEMS_EVERSION
									   : TEEMS_EPROTO,
					"%s: %s", argv[0], r->str);
			conn_reply_free(r);
			return rc;
		}
		*reply = r;
		svc->last_reply_ms = obj_now_ms();
		return TEEMS_OK;
	}
	return teems_errf(errbuf, OBJ_ESERVICE, "%s (tried every replica)", err);
}

int obj_svc_open(struct obj_svc *svc, const struct teems_obj_options *opts, char *errbuf)
{
	struct conn_reply *r;
	int rc;

	svc->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
	if (opts->cluster_dir != NULL) {
		if ((rc = load_cluster(svc, opts->cluster_dir, errbuf)) != TEEMS_OK)
			return rc;
	} else {
		if (opts->naddrs == 0 || opts->naddrs > TEEMS_OBJ_ADDRS_MAX)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "give a cluster directory or 1 to %d service addresses",
					  TEEMS_OBJ_ADDRS_MAX);
		for (size_t i = 0; i < opts->naddrs; i++)
			if (parse_addr(opts->addrs[i], svc->host[i], &svc->port[i]) != 0)
				return teems_errf(errbuf, TEEMS_EINVAL,
						  "service address \"%s\" is not host:port",
						  opts->addrs[i]);
		svc->n = opts->naddrs;
		if (opts->ca_file != NULL && snprintf(svc->ca_file, sizeof(svc->ca_file), "%s",
						      opts->ca_file) >= (int)sizeof(svc->ca_file))
			return teems_errf(errbuf, TEEMS_EINVAL, "CA file name too long");
	}
	if (opts->user != NULL) {
		if (!obj_user_valid(opts->user))
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "user \"%s\": 1 to %d characters of [A-Za-z0-9._@-]",
					  opts->user, OBJ_USER_MAX);
		snprintf(svc->user, sizeof(svc->user), "%s", opts->user);
	}
	if (opts->password != NULL) {
		size_t n = strlen(opts->password) + 1;

		if (opts->user == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL, "a password needs a user");
		if ((svc->password = teems_malloc(n)) == NULL)
			return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
		memcpy(svc->password, opts->password, n);
	}
	/* PING proves a replica answers (and that AUTH, if any, was accepted). */
	rc = obj_svc_call(svc, 1, (const char *const[]){"PING"}, NULL, false, &r, NULL, errbuf);
	conn_reply_free(r);
	return rc;
}

void obj_svc_close(struct obj_svc *svc)
{
	conn_close(svc->conn);
	svc->conn = NULL;
	if (svc->password != NULL) {
		tee_wipe(svc->password, strlen(svc->password));
		teems_free(svc->password);
		svc->password = NULL;
	}
}

/* VGET and VSET reply [value-or-status, version]. */
static bool pair_reply(const struct conn_reply *r)
{
	return r->type == CONN_REPLY_ARRAY && r->elements == 2 &&
	       r->element[1]->type == CONN_REPLY_INTEGER && r->element[1]->integer >= 0;
}

int obj_svc_read_record(struct obj_svc *svc, const char *id, struct obj_meta *meta, uint64_t *rv,
			bool *exists, char *errbuf)
{
	char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1], why[TEEMS_ERRBUF_LEN] = "";
	struct conn_reply *r;
	const struct conn_reply *v;
	int rc;

	if ((rc = obj_key(id, key, errbuf)) != TEEMS_OK)
		return rc;
	rc = obj_svc_call(svc, 2, (const char *const[]){"VGET", key}, NULL, false, &r, NULL,
			  errbuf);
	if (rc != TEEMS_OK)
		return rc;
	memset(meta, 0, sizeof(*meta));
	*exists = false;
	if (!pair_reply(r)) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "VGET: unexpected reply");
		goto out;
	}
	*rv = (uint64_t)r->element[1]->integer;
	v = r->element[0];
	if (v->type == CONN_REPLY_NIL)
		goto out;
	if (v->type != CONN_REPLY_STRING) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "VGET: unexpected reply");
		goto out;
	}
	rc = obj_meta_decode((const uint8_t *)v->str, v->len, meta, why);
	if (rc != TEEMS_OK)
		rc = teems_errf(errbuf, TEEMS_ECORRUPT,
				"the value under %s is not an object record (%s)", key, why);
	else
		*exists = true;
out:
	conn_reply_free(r);
	return rc;
}

int obj_svc_write_record(struct obj_svc *svc, const char *id, const struct obj_meta *meta,
			 uint64_t rv, uint64_t *cur, bool *unknown, char *errbuf)
{
	char key[OBJ_KEY_PREFIX_LEN + TEEMS_OBJ_ID_MAX + 1], ver[24];
	uint8_t rec[OBJ_META_MAX_LEN];
	size_t rec_len = obj_meta_encode(meta, rec);
	struct conn_reply *r;
	int rc;

	if (rec_len == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "record not encodable (policy?)");
	if ((rc = obj_key(id, key, errbuf)) != TEEMS_OK)
		return rc;
	snprintf(ver, sizeof(ver), "%llu", (unsigned long long)rv);
	/* A put's connection sat idle during the upload. If the replica went away meanwhile, a
	 * VSET sent into the dead socket would be reported "outcome unknown"; a PING (a read,
	 * safely retried elsewhere) finds out first and moves to a live replica. */
	if (svc->conn != NULL && obj_now_ms() - svc->last_reply_ms > IDLE_CHECK_MS) {
		rc = obj_svc_call(svc, 1, (const char *const[]){"PING"}, NULL, false, &r, NULL,
				  errbuf);
		if (rc != TEEMS_OK)
			return rc;
		conn_reply_free(r);
	}
	rc = obj_svc_call(svc, 4, (const char *const[]){"VSET", key, (const char *)rec, ver},
			  (const size_t[]){4, strlen(key), rec_len, strlen(ver)}, true, &r, unknown,
			  errbuf);
	tee_wipe(rec, sizeof(rec));
	if (rc != TEEMS_OK)
		return rc;
	if (!pair_reply(r) || r->element[0]->type != CONN_REPLY_INTEGER) {
		rc = teems_errf(errbuf, TEEMS_EPROTO, "VSET: unexpected reply");
	} else {
		*cur = (uint64_t)r->element[1]->integer;
		if (r->element[0]->integer != 1)
			rc = teems_errf(errbuf, OBJ_ECONFLICT,
					"another writer committed first (record version %llu, "
					"expected %llu)",
					(unsigned long long)*cur, (unsigned long long)rv);
	}
	conn_reply_free(r);
	return rc;
}
