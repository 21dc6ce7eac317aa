/* The replica-cluster harness shared by the replica engine's unit tests (replica_harness.h). */
#include "replica_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/paxos.h"
#include "server/config.h"
#include "server/replica_internal.h" /* the Paxos core, for probe_core */
#include "teems/err.h"

void on_send(void *ctx, uint16_t to, const uint8_t *p, size_t len)
{
	struct node *nd = ctx;
	struct frame *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->from = nd->id;
	f->to = to;
	f->p = malloc(len);
	assert_non_null(f->p);
	memcpy(f->p, p, len);
	f->len = len;
	if (nd->c->tail != NULL)
		nd->c->tail->next = f;
	else
		nd->c->head = f;
	nd->c->tail = f;
}

void on_reply(void *ctx, uint64_t conn, uint64_t req, const uint8_t *p, size_t len)
{
	struct node *nd = ctx;
	struct cluster *c = nd->c;
	struct reply *rp;

	if (c->n_replies == c->cap_replies) {
		c->cap_replies = c->cap_replies ? 2 * c->cap_replies : 64;
		c->replies = realloc(c->replies, c->cap_replies * sizeof(*c->replies));
		assert_non_null(c->replies);
	}
	rp = &c->replies[c->n_replies++];
	rp->node = nd->id;
	rp->conn = conn;
	rp->req = req;
	rp->bytes = malloc(len + 1);
	assert_non_null(rp->bytes);
	memcpy(rp->bytes, p, len);
	rp->bytes[len] = '\0';
	rp->len = len;
}

void on_want_sync(void *ctx)
{
	((struct node *)ctx)->want_sync = true;
}

void on_halt(void *ctx, const char *why)
{
	struct node *nd = ctx;

	nd->halted = true;
	snprintf(nd->why, sizeof(nd->why), "%s", why);
	if (nd->c->verbose)
		fprintf(stderr, "r%u halts: %s\n", nd->id, why);
}

void on_log(void *ctx, const char *line)
{
	struct node *nd = ctx;

	if (nd->c->verbose)
		fprintf(stderr, "r%u %s\n", nd->id, line);
}

int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int node_try_open(struct cluster *c, int i, char *err)
{
	struct teems_config cfg;
	struct replica_io io = {0};
	char v[PATH_MAX + 16];
	struct node *nd = &c->nodes[i];

	config_defaults(&cfg);
#define SET(k, val) assert_int_equal(config_set(&cfg, k, val, NULL, err), TEEMS_OK)
	SET("peers", "0@127.0.0.1:17100,1@127.0.0.1:17101,2@127.0.0.1:17102");
	SET("f", "1");
	SET("m_r", "1");
	snprintf(v, sizeof(v), "%d", i);
	SET("replica_id", v);
	snprintf(v, sizeof(v), "%s/r%d/data", c->dir, i);
	SET("data_dir", v);
	snprintf(v, sizeof(v), "%s/platform", c->dir);
	SET("platform_dir", v);
	snprintf(v, sizeof(v), "127.0.0.1:1720%d", i);
	SET("listen", v);
	SET("client_tls", "off");
	SET("cluster_id", "000102030405060708090a0b0c0d0e0f");
	/* Short protocol timers so that the fence (T_op + T_lease + T_cfg) is half a second. */
	SET("t_op", "300ms");
	SET("t_lease", "100ms");
	SET("t_cfg", "100ms");
	SET("sync", c->o.sync != NULL ? c->o.sync : "rr");
	if (c->o.engine != NULL)
		SET("engine", c->o.engine);
	if (c->o.snapshot_every != NULL)
		SET("snapshot_every", c->o.snapshot_every);
	if (c->o.wal_segment_bytes != NULL)
		SET("wal_segment_bytes", c->o.wal_segment_bytes);
	if (c->o.t_lease != NULL)
		SET("t_lease", c->o.t_lease);
#undef SET
	nd->c = c;
	nd->id = (uint16_t)i;
	nd->want_sync = nd->halted = false;
	nd->r = NULL;
	io.ctx = nd;
	io.send = on_send;
	io.reply = on_reply;
	io.want_sync = on_want_sync;
	io.halt = on_halt;
	io.log = on_log;
	return replica_open(&cfg, &io, &nd->r, err);
}

void node_open(struct cluster *c, int i)
{
	char err[TEEMS_ERRBUF_LEN] = "";

	if (node_try_open(c, i, err) != TEEMS_OK)
		fail_msg("replica_open r%d: %s", i, err);
}

void node_close(struct cluster *c, int i)
{
	replica_close(c->nodes[i].r);
	c->nodes[i].r = NULL;
}

struct cluster *cluster_new_opts(const struct cluster_opts *o)
{
	struct cluster *c = calloc(1, sizeof(*c));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(c);
	c->o = *o;
	c->verbose = getenv("TEEMS_TEST_VERBOSE") != NULL;
	snprintf(c->dir, sizeof(c->dir), "%s/%s-XXXXXX", tmp ? tmp : "/tmp", o->dir_prefix);
	assert_non_null(mkdtemp(c->dir));
	c->next_req = 1;
	for (int i = 0; i < N; i++)
		node_open(c, i);
	return c;
}

void cluster_free(struct cluster *c)
{
	struct frame *f, *next;

	for (int i = 0; i < N; i++)
		if (c->nodes[i].r != NULL)
			node_close(c, i);
	for (f = c->head; f != NULL; f = next) {
		next = f->next;
		free(f->p);
		free(f);
	}
	for (size_t i = 0; i < c->n_replies; i++)
		free(c->replies[i].bytes);
	free(c->replies);
	nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(c);
}

bool alive(const struct cluster *c, int i)
{
	return c->nodes[i].r != NULL && !c->nodes[i].halted;
}

static void run_syncs(struct cluster *c, int i)
{
	struct replica_sync job;

	while (alive(c, i) && c->nodes[i].want_sync) {
		c->nodes[i].want_sync = false;
		while (alive(c, i) && replica_sync_prepare(c->nodes[i].r, &job)) {
			replica_sync_run(&job);
			replica_sync_done(c->nodes[i].r, &job);
		}
	}
}

void pump_once(struct cluster *c)
{
	for (int i = 0; i < N; i++) {
		if (alive(c, i))
			replica_tick(c->nodes[i].r);
		run_syncs(c, i);
	}
	for (int rounds = 0; c->head != NULL && rounds < 10000; rounds++) {
		struct frame *f = c->head;

		c->head = f->next;
		if (c->head == NULL)
			c->tail = NULL;
		if (alive(c, f->to))
			replica_peer_frame(c->nodes[f->to].r, f->from, f->p, f->len);
		run_syncs(c, f->to);
		free(f->p);
		free(f);
	}
	usleep(c->o.pump_sleep_us);
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void pump_ms(struct cluster *c, uint64_t ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pump_once(c);
}

/* words (NULL-terminated) as RESP arguments; at most 12. */
static size_t to_args(const char *const *words, struct resp_arg *argv, size_t cap)
{
	size_t argc = 0;

	memset(argv, 0, cap * sizeof(*argv));
	for (; words[argc] != NULL; argc++) {
		assert_true(argc < cap);
		argv[argc].p = (const uint8_t *)words[argc];
		argv[argc].len = strlen(words[argc]);
	}
	return argc;
}

uint64_t send_cmd_as(struct cluster *c, int i, uint64_t conn, const char *user,
		     const char *const *words)
{
	struct resp_arg argv[12];
	size_t argc = to_args(words, argv, 12);
	uint64_t req = c->next_req++;

	replica_client_as(c->nodes[i].r, conn, req, user, argv, argc, 2);
	replica_flush(c->nodes[i].r); /* as the shell does once per loop turn */
	return req;
}

uint64_t send_cmd(struct cluster *c, int i, uint64_t conn, const char *const *words)
{
	struct resp_arg argv[12];
	size_t argc = to_args(words, argv, 12);
	uint64_t req = c->next_req++;

	replica_client(c->nodes[i].r, conn, req, argv, argc, 2);
	replica_flush(c->nodes[i].r);
	return req;
}

const struct reply *find_reply(struct cluster *c, uint64_t req)
{
	for (size_t k = 0; k < c->n_replies; k++)
		if (c->replies[k].req == req)
			return &c->replies[k];
	return NULL;
}

const char *wait_reply(struct cluster *c, uint64_t req, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	const struct reply *rp;

	while ((rp = find_reply(c, req)) == NULL && now_ms() < end)
		pump_once(c);
	if (rp == NULL)
		fail_msg("no reply to request %llu within %llu ms", (unsigned long long)req,
			 (unsigned long long)timeout_ms);
	return rp->bytes;
}

const char *run_cmd(struct cluster *c, int i, const char *const *words)
{
	return wait_reply(c, send_cmd(c, i, 1, words), 3000);
}

bool status_field(struct cluster *c, int i, const char *key, char *out, size_t len)
{
	const char *s = CMD(c, i, "TEEMS.STATUS"), *p;
	char pat[64];
	size_t n;

	snprintf(pat, sizeof(pat), "\n%s:", key);
	p = strstr(s, pat);
	if (p == NULL) {
		snprintf(pat, sizeof(pat), "%s:", key);
		p = strstr(s, pat); /* the first line follows the bulk header's \n too */
		if (p == NULL)
			return false;
		p += strlen(pat);
	} else {
		p += strlen(pat);
	}
	n = strcspn(p, "\r");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

uint64_t status_u64(struct cluster *c, int i, const char *key)
{
	char v[64];

	if (!status_field(c, i, key, v, sizeof(v)))
		fail_msg("TEEMS.STATUS of r%d lacks %s", i, key);
	return strtoull(v, NULL, 10);
}

bool status_has(struct cluster *c, int i, const char *line)
{
	return strstr(CMD(c, i, "TEEMS.STATUS"), line) != NULL;
}

int find_leader(struct cluster *c)
{
	char v[32];

	for (int i = 0; i < N; i++)
		if (alive(c, i) && status_field(c, i, "role", v, sizeof(v)) &&
		    strcmp(v, "leader") == 0)
			return i;
	return -1;
}

/* The first live replica whose core can serve reads (its no-op committed), or -1. */
static int core_leader(struct cluster *c)
{
	for (int i = 0; i < N; i++)
		if (alive(c, i) && paxos_can_serve_reads(c->nodes[i].r->p))
			return i;
	return -1;
}

int wait_leader(struct cluster *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	int l;

	while (now_ms() < end) {
		pump_ms(c, c->o.probe_core ? 10 : 20);
		l = c->o.probe_core ? core_leader(c) : find_leader(c);
		if (l >= 0)
			return l;
	}
	fail_msg("no leader within %llu ms", (unsigned long long)timeout_ms);
	return -1;
}

void wait_fresh(struct cluster *c, int i, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	char v[32] = "";

	while (now_ms() < end) {
		if (c->o.probe_core) {
			pump_ms(c, 10);
			if (alive(c, i) && paxos_lifecycle(c->nodes[i].r->p) == PAXOS_LC_FRESH)
				return;
		} else {
			pump_ms(c, 20);
			if (status_field(c, i, "lifecycle", v, sizeof(v)) &&
			    strcmp(v, "fresh") == 0)
				return;
		}
	}
	fail_msg("r%d is still %s after %llu ms (%s)", i, c->o.probe_core ? "not fresh" : v,
		 (unsigned long long)timeout_ms, c->nodes[i].halted ? c->nodes[i].why : "running");
}

void shell(const char *fmt, ...)
{
	char cmd[3 * PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("%s failed", cmd);
}
