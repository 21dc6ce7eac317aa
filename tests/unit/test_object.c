/* libteems objects (include/teems/object.h) against a fake service: a thread speaking enough
 * RESP (PING, AUTH, VGET, VSET, DEL, SET, MGET, SCAN MATCH COUNT) over plaintext loopback,
 * with knobs to answer TRYAGAIN or to drop the connection after a VSET arrives, and a dir store
 * in a temporary directory. What only a fake can make deterministic is tested here: a writer
 * that loses the compare-and-set to another writer that committed during its upload, retries,
 * a lost VSET reply, fail-over on TRYAGAIN, ls pagination, gc of exactly the unreferenced
 * blobs. Also the policy extension of the metadata record (obj_meta.c). The real service is
 * exercised by tests/system/obj_cluster.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/obj_crypto.h"
#include "teems/object.h"

/* ---------------------------------------------------------------------------------------------
 * The fake service
 * ------------------------------------------------------------------------------------------- */

#define MAX_KEYS 256
#define MAX_CONNS 8

struct entry {
	char *key;
	size_t key_len;
	char *val; /* NULL: deleted (tombstone) */
	size_t val_len;
	long long version;
	char *policy[3]; /* owner, readers, writers as given ("-": empty); NULL: none */
};

struct fake {
	int lfd, wake[2];
	uint16_t port;
	pthread_t thread;
	pthread_mutex_t mu;
	struct entry e[MAX_KEYS];
	size_t n;
	int tryagain; /* answer TRYAGAIN to this many commands */
	int policies; /* speak TEEMS.POLICY.GET/SET (stored, not enforced) */
	int policy_sets;
	int drop_next_vset;  /* close the connection instead of applying the next VSET */
	int vsets, commands; /* counters */
};

static struct fake fk;

static struct entry *find(const char *k, size_t len)
{
	for (size_t i = 0; i < fk.n; i++)
		if (fk.e[i].key_len == len && memcmp(fk.e[i].key, k, len) == 0)
			return &fk.e[i];
	return NULL;
}

static struct entry *find_or_add(const char *k, size_t len)
{
	struct entry *e = find(k, len);

	if (e == NULL) {
		assert_true(fk.n < MAX_KEYS);
		e = &fk.e[fk.n++];
		e->key = malloc(len + 1);
		memcpy(e->key, k, len);
		e->key[len] = '\0';
		e->key_len = len;
	}
	return e;
}

static void set_val(struct entry *e, const char *v, size_t len)
{
	free(e->val);
	e->val = v ? malloc(len + 1) : NULL;
	if (v) {
		memcpy(e->val, v, len);
		e->val[len] = '\0';
	}
	e->val_len = len;
	e->version++;
}

struct out {
	char *p;
	size_t len, cap;
};

static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (o->len + (size_t)n + 1 > o->cap) {
		o->cap = (o->len + (size_t)n + 1) * 2;
		o->p = realloc(o->p, o->cap);
	}
	va_start(ap, fmt);
	vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o->len += (size_t)n;
}

static void out_bulk(struct out *o, const char *p, size_t len)
{
	if (p == NULL) {
		outf(o, "$-1\r\n");
		return;
	}
	outf(o, "$%zu\r\n", len);
	if (o->len + len + 3 > o->cap) {
		o->cap = (o->len + len + 3) * 2;
		o->p = realloc(o->p, o->cap);
	}
	memcpy(o->p + o->len, p, len);
	o->len += len;
	outf(o, "\r\n");
}

static bool is_cmd(const char *a, const char *name)
{
	return strcasecmp(a, name) == 0;
}

/* Runs one command; returns -1 to drop the connection. */
static int run(char **argv, size_t *len, size_t argc, struct out *o)
{
	struct entry *e;

	fk.commands++;
	if (fk.tryagain > 0) {
		fk.tryagain--;
		outf(o, "-TRYAGAIN teems: no leader; retry later\r\n");
		return 0;
	}
	if (is_cmd(argv[0], "PING")) {
		outf(o, "+PONG\r\n");
	} else if (is_cmd(argv[0], "AUTH") && argc == 3) {
		if (strcmp(argv[1], "default") == 0 ||
		    (strcmp(argv[1], "alice") == 0 && strcmp(argv[2], "apw") == 0))
			outf(o, "+OK\r\n");
		else
			outf(o, "-WRONGPASS invalid username-password pair\r\n");
	} else if (is_cmd(argv[0], "TEEMS.POLICY.GET") && argc == 2 && fk.policies) {
		e = find(argv[1], len[1]);
		if (e == NULL || e->policy[0] == NULL) {
			outf(o, "$-1\r\n");
		} else {
			outf(o, "*3\r\n");
			for (int k = 0; k < 3; k++)
				out_bulk(o, e->policy[k], strlen(e->policy[k]));
		}
	} else if (is_cmd(argv[0], "TEEMS.POLICY.SET") && argc == 5 && fk.policies) {
		e = find_or_add(argv[1], len[1]);
		for (int k = 0; k < 3; k++) {
			free(e->policy[k]);
			e->policy[k] = strdup(argv[k + 2]);
		}
		fk.policy_sets++;
		outf(o, "+OK\r\n");
	} else if (is_cmd(argv[0], "VGET") && argc == 2) {
		e = find(argv[1], len[1]);
		outf(o, "*2\r\n");
		out_bulk(o, e ? e->val : NULL, e ? e->val_len : 0);
		outf(o, ":%lld\r\n", e ? e->version : 0);
	} else if (is_cmd(argv[0], "VSET") && argc == 4) {
		long long want = atoll(argv[3]);

		fk.vsets++;
		if (fk.drop_next_vset) {
			fk.drop_next_vset = 0;
			return -1;
		}
		e = find_or_add(argv[1], len[1]);
		if (e->version == want) {
			set_val(e, argv[2], len[2]);
			outf(o, "*2\r\n:1\r\n:%lld\r\n", e->version);
		} else {
			outf(o, "*2\r\n:0\r\n:%lld\r\n", e->version);
		}
	} else if (is_cmd(argv[0], "SET") && argc == 3) {
		set_val(find_or_add(argv[1], len[1]), argv[2], len[2]);
		outf(o, "+OK\r\n");
	} else if (is_cmd(argv[0], "DEL")) {
		long long n = 0;

		for (size_t i = 1; i < argc; i++)
			if ((e = find(argv[i], len[i])) != NULL && e->val != NULL) {
				set_val(e, NULL, 0);
				n++;
			}
		outf(o, ":%lld\r\n", n);
	} else if (is_cmd(argv[0], "MGET")) {
		outf(o, "*%zu\r\n", argc - 1);
		for (size_t i = 1; i < argc; i++) {
			e = find(argv[i], len[i]);
			out_bulk(o, e ? e->val : NULL, e ? e->val_len : 0);
		}
	} else if (is_cmd(argv[0], "SCAN") && argc == 6) {
		/* cursor = index into the table; at most 2 entries visited per call, so that
		 * callers must follow the cursor; MATCH as Redis (fnmatch without flags). */
		size_t i = (size_t)atoll(argv[1]), end = i + 2, n = 0;
		const char *keys[2];

		for (; i < fk.n && i < end; i++)
			if (fk.e[i].val != NULL && fnmatch(argv[3], fk.e[i].key, 0) == 0)
				keys[n++] = fk.e[i].key;
		outf(o, "*2\r\n");
		char cur[24];

		snprintf(cur, sizeof(cur), "%zu", i >= fk.n ? (size_t)0 : i);
		out_bulk(o, cur, strlen(cur));
		outf(o, "*%zu\r\n", n);
		for (size_t k = 0; k < n; k++)
			out_bulk(o, keys[k], strlen(keys[k]));
	} else {
		outf(o, "-ERR unknown command '%s'\r\n", argv[0]);
	}
	return 0;
}

struct conn_buf {
	int fd;
	char *p;
	size_t len, cap;
};

/* Parses one "*N\r\n$L\r\n...\r\n" command at the start of b; returns its length or 0. */
static size_t parse(struct conn_buf *b, char **argv, size_t *len, size_t *argc)
{
	char *p = b->p, *end = b->p + b->len, *nl;
	long n;

	if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL || p[0] != '*')
		return 0;
	n = atol(p + 1);
	assert_true(n > 0 && n <= 64);
	p = nl + 1;
	for (long i = 0; i < n; i++) {
		long l;

		if (p >= end || (nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return 0;
		assert_int_equal(p[0], '$');
		l = atol(p + 1);
		p = nl + 1;
		if (end - p < l + 2)
			return 0;
		argv[i] = malloc((size_t)l + 1);
		memcpy(argv[i], p, (size_t)l);
		argv[i][l] = '\0';
		len[i] = (size_t)l;
		p += l + 2;
	}
	*argc = (size_t)n;
	return (size_t)(p - b->p);
}

/* Appends bytes read from a connection and runs every complete command; -1: drop it. */
static int feed(struct conn_buf *c, const char *buf, size_t r)
{
	if (c->len + r > c->cap) {
		c->cap = (c->len + r) * 2;
		c->p = realloc(c->p, c->cap);
	}
	memcpy(c->p + c->len, buf, r);
	c->len += r;
	for (;;) {
		char *argv[64];
		size_t len[64], argc, used;
		struct out o = {0};
		int rc;

		if ((used = parse(c, argv, len, &argc)) == 0)
			return 0;
		pthread_mutex_lock(&fk.mu);
		rc = run(argv, len, argc, &o);
		pthread_mutex_unlock(&fk.mu);
		for (size_t k = 0; k < argc; k++)
			free(argv[k]);
		memmove(c->p, c->p + used, c->len - used);
		c->len -= used;
		if (rc < 0 || write(c->fd, o.p, o.len) != (ssize_t)o.len) {
			free(o.p);
			return -1;
		}
		free(o.p);
	}
}

static void *serve(void *arg)
{
	struct conn_buf c[MAX_CONNS];
	size_t nc = 0;

	(void)arg;
	for (;;) {
		struct pollfd pf[MAX_CONNS + 2];

		pf[0] = (struct pollfd){.fd = fk.wake[0], .events = POLLIN};
		pf[1] = (struct pollfd){.fd = fk.lfd, .events = POLLIN};
		for (size_t i = 0; i < nc; i++)
			pf[i + 2] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
		if (poll(pf, nc + 2, -1) < 0)
			continue;
		if (pf[0].revents)
			break;
		if ((pf[1].revents & POLLIN) && nc < MAX_CONNS) {
			c[nc] = (struct conn_buf){.fd = accept(fk.lfd, NULL, NULL)};
			if (c[nc].fd >= 0)
				nc++;
		}
		for (size_t i = 0; i < nc; i++) {
			char buf[65536];
			ssize_t r;
			bool drop = false;

			if (!(pf[i + 2].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = read(c[i].fd, buf, sizeof(buf));
			if (r <= 0)
				drop = true;
			else
				drop = feed(&c[i], buf, (size_t)r) != 0;
			if (drop) {
				close(c[i].fd);
				free(c[i].p);
				c[i].fd = -1;
			}
		}
		for (size_t i = 0; i < nc;) {
			if (c[i].fd < 0)
				c[i] = c[--nc];
			else
				i++;
		}
	}
	for (size_t i = 0; i < nc; i++) {
		close(c[i].fd);
		free(c[i].p);
	}
	return NULL;
}

static char store_dir[256], store_url[300], addr[64];

static int setup(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	(void)state;
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.mu, NULL);
	fk.lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fk.lfd >= 0);
	assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fk.lfd, 16), 0);
	assert_int_equal(getsockname(fk.lfd, (struct sockaddr *)&sa, &sl), 0);
	fk.port = ntohs(sa.sin_port);
	assert_int_equal(pipe(fk.wake), 0);
	assert_int_equal(pthread_create(&fk.thread, NULL, serve, NULL), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", fk.port);
	snprintf(store_dir, sizeof(store_dir), "/tmp/teems-test-object-XXXXXX");
	assert_non_null(mkdtemp(store_dir));
	snprintf(store_url, sizeof(store_url), "dir://%s/store", store_dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[400];

	(void)state;
	assert_int_equal(write(fk.wake[1], "x", 1), 1);
	pthread_join(fk.thread, NULL);
	close(fk.lfd);
	close(fk.wake[0]);
	close(fk.wake[1]);
	for (size_t i = 0; i < fk.n; i++) {
		free(fk.e[i].key);
		free(fk.e[i].val);
		for (int k = 0; k < 3; k++)
			free(fk.e[i].policy[k]);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct teems_obj_client *open_client(const char *user,
					    void (*progress)(void *, uint64_t, uint64_t), void *arg)
{
	const char *addrs[1] = {addr};
	struct teems_obj_options o = {
		.addrs = addrs,
		.naddrs = 1,
		.store_url = store_url,
		.user = user,
		.timeout_ms = 3000,
		.chunk_size = 4096,
		.progress = progress,
		.progress_arg = arg,
	};
	struct teems_obj_client *c;
	char err[TEEMS_ERRBUF_LEN];

	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OK);
	return c;
}

static size_t count_blobs(void)
{
	char path[300];
	struct dirent *d;
	size_t n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/store", store_dir);
	assert_non_null(dir = opendir(path));
	while ((d = readdir(dir)) != NULL)
		n += d->d_name[0] != '.';
	closedir(dir);
	return n;
}

static void expect_content(struct teems_obj_client *c, const char *id, const void *want, size_t len)
{
	char err[TEEMS_ERRBUF_LEN];
	void *buf;
	size_t got;

	assert_int_equal(teems_obj_get_buf(c, id, &buf, &got, 0, NULL, err), TEEMS_OK);
	assert_int_equal(got, len);
	if (len)
		assert_memory_equal(buf, want, len);
	teems_obj_free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
	struct teems_obj_client *c = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN];
	struct teems_obj_stat st;
	static uint8_t big[100000];
	void *buf;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(teems_obj_put_buf(c, "a", "", 0, 0, &st, err), TEEMS_OK);
	assert_int_equal(st.version, 1);
	expect_content(c, "a", "", 0);
	assert_int_equal(teems_obj_put_buf(c, "a", big, sizeof(big), 0, &st, err), TEEMS_OK);
	assert_int_equal(st.version, 2);
	assert_int_equal(st.record_version, 2);
	expect_content(c, "a", big, sizeof(big));
	assert_int_equal(count_blobs(), 1); /* the superseded blob was deleted */
	assert_int_equal(teems_obj_stat(c, "a", &st, err), TEEMS_OK);
	assert_int_equal(st.size, sizeof(big));
	assert_int_equal(st.chunk_size, 4096);
	/* a buffer cap below the size refuses before fetching */
	assert_int_equal(teems_obj_get_buf(c, "a", &buf, &len, 1000, NULL, err), TEEMS_EFULL);
	assert_int_equal(teems_obj_get_buf(c, "nope", &buf, &len, 0, NULL, err), TEEMS_ENOTFOUND);
	assert_int_equal(teems_obj_rm(c, "a", err), TEEMS_OK);
	assert_int_equal(teems_obj_rm(c, "a", err), TEEMS_ENOTFOUND);
	assert_int_equal(teems_obj_stat(c, "a", &st, err), TEEMS_ENOTFOUND);
	assert_int_equal(count_blobs(), 0);
	/* a deleted key keeps its version: a new put must (and does) start from it */
	assert_int_equal(teems_obj_put_buf(c, "a", "x", 1, 0, &st, err), TEEMS_OK);
	assert_int_equal(st.version, 1);
	assert_int_equal(st.record_version, 4);
	/* bad ids */
	assert_int_equal(teems_obj_put_buf(c, "", "x", 1, 0, NULL, err), TEEMS_EINVAL);
	assert_int_equal(teems_obj_put_buf(c, "a\nb", "x", 1, 0, NULL, err), TEEMS_EINVAL);
	teems_obj_client_close(c);
}

struct race {
	struct teems_obj_client *other;
	bool done;
	int rc;
};

/* Called during the first writer's upload: between its VGET and its VSET, another client
 * commits a put of the same id. */
static void race_progress(void *arg, uint64_t done, uint64_t total)
{
	struct race *r = arg;
	char err[TEEMS_ERRBUF_LEN];

	if (r->done)
		return;
	r->done = true;
	r->rc = teems_obj_put_buf(r->other, "race", "winner", 6, 0, NULL, err);
}

static void test_conflict(void **state)
{
	struct race r = {0};
	struct teems_obj_client *a, *b = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN];
	struct teems_obj_stat st;

	(void)state;
	r.other = b;
	a = open_client(NULL, race_progress, &r);
	assert_int_equal(teems_obj_put_buf(b, "race", "base", 4, 0, NULL, err), TEEMS_OK);
	/* exactly one wins: b, which committed during a's upload */
	assert_int_equal(teems_obj_put_buf(a, "race", "loser", 5, 0, NULL, err),
			 TEEMS_OBJ_ECONFLICT);
	assert_int_equal(r.rc, TEEMS_OK);
	expect_content(a, "race", "winner", 6);
	assert_int_equal(teems_obj_stat(a, "race", &st, err), TEEMS_OK);
	assert_int_equal(st.version, 2);
	assert_int_equal(count_blobs(), 1); /* the loser deleted its blob */
	/* with TEEMS_OBJ_RETRY the loser reads again, re-encrypts and wins next time */
	r.done = false;
	assert_int_equal(teems_obj_put_buf(a, "race", "retried", 7, TEEMS_OBJ_RETRY, &st, err),
			 TEEMS_OK);
	assert_int_equal(r.rc, TEEMS_OK);
	assert_int_equal(st.version, 4);
	expect_content(b, "race", "retried", 7);
	assert_int_equal(count_blobs(), 1);
	teems_obj_client_close(a);
	teems_obj_client_close(b);
}

static void gc_count(void *arg, const char *name, uint64_t size)
{
	(*(int *)arg)++;
}

static void test_lost_reply_and_gc(void **state)
{
	struct teems_obj_client *c = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN];
	uint64_t removed, kept;
	int calls = 0;

	(void)state;
	assert_int_equal(teems_obj_put_buf(c, "k1", "one", 3, 0, NULL, err), TEEMS_OK);
	assert_int_equal(teems_obj_put_buf(c, "k2", "two", 3, 0, NULL, err), TEEMS_OK);
	/* The VSET arrives but its reply is lost: the outcome is unknown, so the blob stays
	 * (it might have been committed) and the write is not retried. */
	fk.drop_next_vset = 1;
	fk.vsets = 0;
	assert_int_equal(teems_obj_put_buf(c, "k1", "lost", 4, TEEMS_OBJ_RETRY, NULL, err),
			 TEEMS_OBJ_EUNAVAIL);
	assert_non_null(strstr(err, "outcome is unknown"));
	assert_int_equal(fk.vsets, 1);
	assert_int_equal(count_blobs(), 3);
	expect_content(c, "k1", "one", 3);
	/* A value that is no object record names no blob and does not stop gc. */
	pthread_mutex_lock(&fk.mu);
	set_val(find_or_add("obj:junk", 8), "not a record", 12);
	pthread_mutex_unlock(&fk.mu);
	assert_int_equal(teems_obj_stat(c, "junk", NULL, err), TEEMS_ECORRUPT);
	/* grace: the orphan is young */
	assert_int_equal(teems_obj_gc(c, 3600, gc_count, &calls, &removed, &kept, NULL, err),
			 TEEMS_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(kept, 2);
	assert_int_equal(teems_obj_gc(c, 0, gc_count, &calls, &removed, &kept, NULL, err),
			 TEEMS_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(calls, 1);
	assert_int_equal(count_blobs(), 2);
	expect_content(c, "k1", "one", 3);
	expect_content(c, "k2", "two", 3);
	teems_obj_client_close(c);
}

/* With per-key policies the service may hide objects from this user: gc removes only the
 * orphans whose header names an object it sees. */
static void test_gc_attribution(void **state)
{
	struct teems_obj_client *c = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN];
	uint64_t removed, kept, unattr;

	(void)state;
	fk.policies = 1;
	assert_int_equal(teems_obj_put_buf(c, "vis", "one", 3, 0, NULL, err), TEEMS_OK);
	fk.drop_next_vset = 1; /* an orphan of "vis", which this user sees */
	assert_int_equal(teems_obj_put_buf(c, "vis", "two", 3, 0, NULL, err), TEEMS_OBJ_EUNAVAIL);
	fk.drop_next_vset = 1; /* an orphan of "ghost", which nobody sees (never committed) */
	assert_int_equal(teems_obj_put_buf(c, "ghost", "x", 1, 0, NULL, err), TEEMS_OBJ_EUNAVAIL);
	assert_int_equal(count_blobs(), 3);
	assert_int_equal(teems_obj_gc(c, 0, NULL, NULL, &removed, &kept, &unattr, err), TEEMS_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(kept, 1);
	assert_int_equal(unattr, 1);
	assert_int_equal(count_blobs(), 2);
	expect_content(c, "vis", "one", 3);
	/* a service without policies shows every key: the ghost's blob goes too */
	fk.policies = 0;
	assert_int_equal(teems_obj_gc(c, 0, NULL, NULL, &removed, &kept, &unattr, err), TEEMS_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(unattr, 0);
	assert_int_equal(count_blobs(), 1);
	expect_content(c, "vis", "one", 3);
	teems_obj_client_close(c);
}

static void test_tryagain(void **state)
{
	struct teems_obj_client *c = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN];

	(void)state;
	/* An election in progress: the request waits for its end instead of failing. */
	fk.tryagain = 3;
	assert_int_equal(teems_obj_put_buf(c, "t", "x", 1, 0, NULL, err), TEEMS_OK);
	assert_int_equal(fk.tryagain, 0);
	expect_content(c, "t", "x", 1);
	/* One that never ends: service unavailable within the timeout. */
	fk.tryagain = 1000000;
	assert_int_equal(teems_obj_stat(c, "t", NULL, err), TEEMS_OBJ_EUNAVAIL);
	fk.tryagain = 0;
	teems_obj_client_close(c);
}

struct ls_acc {
	char seen[64][32];
	int n;
};

static int ls_cb(void *arg, const char *id, size_t len)
{
	struct ls_acc *a = arg;

	assert_true(a->n < 64 && len < 32);
	memcpy(a->seen[a->n], id, len);
	a->seen[a->n++][len] = '\0';
	return 0;
}

static void test_ls(void **state)
{
	struct teems_obj_client *c = open_client(NULL, NULL, NULL);
	char err[TEEMS_ERRBUF_LEN], id[32];
	struct ls_acc acc = {0};
	uint64_t cursor = 0;
	int pages = 0;

	(void)state;
	for (int i = 0; i < 7; i++) {
		snprintf(id, sizeof(id), "dir/%d", i);
		assert_int_equal(teems_obj_put_buf(c, id, "x", 1, 0, NULL, err), TEEMS_OK);
	}
	assert_int_equal(teems_obj_put_buf(c, "other", "x", 1, 0, NULL, err), TEEMS_OK);
	assert_int_equal(teems_obj_put_buf(c, "d*r", "x", 1, 0, NULL, err), TEEMS_OK);
	do {
		assert_int_equal(teems_obj_ls(c, "dir/", &cursor, ls_cb, &acc, err), TEEMS_OK);
		pages++;
	} while (cursor != 0);
	assert_int_equal(acc.n, 7);
	assert_true(pages >= 4); /* the fake returns at most 2 per page */
	/* glob characters in a prefix are literal */
	memset(&acc, 0, sizeof(acc));
	do
		assert_int_equal(teems_obj_ls(c, "d*", &cursor, ls_cb, &acc, err), TEEMS_OK);
	while (cursor != 0);
	assert_int_equal(acc.n, 1);
	assert_string_equal(acc.seen[0], "d*r");
	teems_obj_client_close(c);
}

static void test_policy(void **state)
{
	struct teems_obj_client *alice = open_client("alice", NULL, NULL);
	struct teems_obj_client *bob = open_client("bob", NULL, NULL);
	struct teems_obj_client *anon = open_client(NULL, NULL, NULL);
	struct teems_obj_policy p = {0};
	char err[TEEMS_ERRBUF_LEN];
	struct teems_obj_stat st;

	(void)state;
	assert_int_equal(teems_obj_put_buf(alice, "s", "secret", 6, 0, &st, err), TEEMS_OK);
	assert_string_equal(st.owner, "alice");
	assert_int_equal(teems_obj_stat(bob, "s", &st, err), TEEMS_OBJ_EDENIED);
	assert_int_equal(teems_obj_put_buf(bob, "s", "x", 1, 0, NULL, err), TEEMS_OBJ_EDENIED);
	assert_int_equal(teems_obj_rm(bob, "s", err), TEEMS_OBJ_EDENIED);
	snprintf(p.readers, sizeof(p.readers), "bob");
	assert_int_equal(teems_obj_policy_set(bob, "s", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_OBJ_EDENIED);
	assert_int_equal(teems_obj_policy_set(alice, "s", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_OK);
	expect_content(bob, "s", "secret", 6);
	assert_int_equal(teems_obj_get_buf(anon, "s", &(void *){NULL}, &(size_t){0}, 0, NULL, err),
			 TEEMS_OBJ_EDENIED);
	snprintf(p.writers, sizeof(p.writers), "*");
	assert_int_equal(teems_obj_policy_set(alice, "s", &p, TEEMS_OBJ_POLICY_WRITERS, err),
			 TEEMS_OK);
	assert_int_equal(teems_obj_put_buf(anon, "s", "new", 3, 0, &st, err), TEEMS_OK);
	assert_string_equal(st.owner, "alice"); /* a write keeps the policy */
	assert_string_equal(st.readers, "bob");
	/* bad names */
	snprintf(p.readers, sizeof(p.readers), "a,,b");
	assert_int_equal(teems_obj_policy_set(alice, "s", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_EINVAL);
	/* a transfer */
	snprintf(p.owner, sizeof(p.owner), "bob");
	assert_int_equal(teems_obj_policy_set(alice, "s", &p, TEEMS_OBJ_POLICY_OWNER, err),
			 TEEMS_OK);
	assert_int_equal(teems_obj_policy_get(bob, "s", &p, err), TEEMS_OK);
	assert_string_equal(p.owner, "bob");
	/* anonymous objects have no owner until someone claims one */
	assert_int_equal(teems_obj_put_buf(anon, "open", "x", 1, 0, &st, err), TEEMS_OK);
	assert_string_equal(st.owner, "");
	memset(&p, 0, sizeof(p));
	assert_int_equal(teems_obj_policy_set(anon, "open", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_EINVAL);
	assert_int_equal(teems_obj_policy_set(bob, "open", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_OK);
	assert_int_equal(teems_obj_stat(alice, "open", &st, err), TEEMS_OBJ_EDENIED);
	teems_obj_client_close(alice);
	teems_obj_client_close(bob);
	teems_obj_client_close(anon);
}

/* A service that enforces policies: an authenticated creator claims the key in the service
 * before the record exists, policy changes go to the service, and the service's policy is
 * the one reported. */
static void test_service_policy(void **state)
{
	const char *addrs[1] = {addr};
	struct teems_obj_options o = {.addrs = addrs,
				      .naddrs = 1,
				      .store_url = store_url,
				      .user = "alice",
				      .password = "apw",
				      .timeout_ms = 2000};
	struct teems_obj_client *c;
	struct teems_obj_policy p = {0};
	char err[TEEMS_ERRBUF_LEN];
	struct entry *e;

	(void)state;
	fk.policies = 1;
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OK);
	assert_int_equal(teems_obj_put_buf(c, "doc", "x", 1, 0, NULL, err), TEEMS_OK);
	assert_non_null(e = find("obj:doc", 7));
	assert_non_null(e->policy[0]);
	assert_string_equal(e->policy[0], "alice");
	assert_string_equal(e->policy[1], "-");
	assert_int_equal(fk.policy_sets, 1);
	/* a second version does not claim again */
	assert_int_equal(teems_obj_put_buf(c, "doc", "y", 1, 0, NULL, err), TEEMS_OK);
	assert_int_equal(fk.policy_sets, 1);
	snprintf(p.readers, sizeof(p.readers), "bob,carol");
	assert_int_equal(teems_obj_policy_set(c, "doc", &p, TEEMS_OBJ_POLICY_READERS, err),
			 TEEMS_OK);
	assert_string_equal(e->policy[1], "bob,carol");
	assert_string_equal(e->policy[2], "-");
	/* the service's policy is the one reported, whatever the record's copy says */
	free(e->policy[2]);
	e->policy[2] = strdup("dave");
	assert_int_equal(teems_obj_policy_get(c, "doc", &p, err), TEEMS_OK);
	assert_string_equal(p.owner, "alice");
	assert_string_equal(p.readers, "bob,carol");
	assert_string_equal(p.writers, "dave");
	teems_obj_client_close(c);
}

static void test_auth(void **state)
{
	const char *addrs[1] = {addr};
	struct teems_obj_options o = {.addrs = addrs,
				      .naddrs = 1,
				      .store_url = store_url,
				      .user = "mallory",
				      .password = "guess",
				      .timeout_ms = 2000};
	struct teems_obj_client *c;
	char err[TEEMS_ERRBUF_LEN];

	(void)state;
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OBJ_EDENIED);
	o.user = "default";
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OK);
	teems_obj_client_close(c);
	o.user = "alice";
	o.password = "apw";
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OK);
	teems_obj_client_close(c);
	/* nothing listens: unavailable */
	addrs[0] = "127.0.0.1:1";
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_OBJ_EUNAVAIL);
	o.user = "bad user";
	assert_int_equal(teems_obj_client_open(&o, &c, err), TEEMS_EINVAL);
}

/* The record's policy extension (obj_meta.c): round trip, canonical bytes, refusals. */
static void test_meta_policy(void **state)
{
	struct obj_meta m = {0}, back;
	uint8_t buf[OBJ_META_MAX_LEN], bad[OBJ_META_MAX_LEN];
	size_t n, plain;

	(void)state;
	m.chunk_size = 4096;
	m.size = 10;
	m.blob_size = obj_blob_size(10, 4096);
	snprintf(m.store_name, sizeof(m.store_name), "0123456789abcdef");
	plain = obj_meta_encode(&m, buf);
	assert_int_equal(plain, OBJ_META_FIXED_LEN + 16);
	assert_int_equal(buf[2], 0); /* no policy: no flag, no extension */
	snprintf(m.owner, sizeof(m.owner), "alice");
	snprintf(m.readers, sizeof(m.readers), "bob,carol");
	snprintf(m.writers, sizeof(m.writers), "*");
	n = obj_meta_encode(&m, buf);
	assert_int_equal(n, plain + 3 + 5 + 9 + 1);
	assert_int_equal(obj_meta_decode(buf, n, &back, NULL), TEEMS_OK);
	assert_memory_equal(&back, &m, sizeof(m));
	/* refusals */
	assert_int_equal(obj_meta_decode(buf, n - 1, &back, NULL), TEEMS_ECORRUPT);
	assert_int_equal(obj_meta_decode(buf, plain, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[plain] = 0; /* empty owner */
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[plain + 2] = '\0'; /* NUL inside the owner */
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[plain + 1 + 5 + 1 + 4] = ','; /* "bob,,arol" */
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	memcpy(bad, buf, n);
	bad[2] = 3; /* unknown flag */
	assert_int_equal(obj_meta_decode(bad, n, &back, NULL), TEEMS_ECORRUPT);
	/* not encodable: readers without an owner, invalid names */
	m.owner[0] = '\0';
	assert_int_equal(obj_meta_encode(&m, buf), 0);
	snprintf(m.owner, sizeof(m.owner), "al ice");
	assert_int_equal(obj_meta_encode(&m, buf), 0);
	/* the helpers */
	assert_true(obj_user_list_valid(""));
	assert_true(obj_user_list_valid("*"));
	assert_true(obj_user_list_valid("a,b.c,d@e"));
	assert_false(obj_user_list_valid(","));
	assert_false(obj_user_list_valid("a,"));
	assert_false(obj_user_list_valid("a,*"));
	assert_true(obj_user_list_has("ann,bob", "bob"));
	assert_false(obj_user_list_has("ann,bobby", "bob"));
	assert_false(obj_user_list_has("ann", ""));
	assert_true(obj_user_list_has("*", "x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meta_policy),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_reply_and_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_attribution, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tryagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_service_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
