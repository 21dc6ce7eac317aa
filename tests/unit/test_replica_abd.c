/* engine = abd in the replica engine (src/server/replica_abd.c) with three in-process replicas:
 * real sim platforms, real sealed WALs (the Paxos control plane's and the ABD data plane's) on
 * the posix VFS, frames delivered by the test, fsync jobs run inline. The harness is a trimmed
 * copy of tests/unit/test_replica_snap.c's.
 *
 * Checks: SET then GET through each replica (every replica coordinates; nothing is forwarded);
 * DEL answers the count and reads find nothing afterwards; a follower restarted while writes
 * went on (and one restarted on a copy of its data directory from before them: a rollback)
 * registers through the Paxos control plane, fences, recovers by range digests (it fetches the
 * differing ranges and adopts registers) and then serves the newest values; a crash of every
 * replica goes through the epoch restart and loses nothing acknowledged; commands ABD cannot
 * do atomically get "ERR '<cmd>' is not supported with engine = abd"; TEEMS.STATUS says
 * engine:abd with the ABD core's state. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "core/paxos.h"
#include "kv/kv.h"
#include "server/config.h"
#include "server/replica.h"
#include "server/replica_internal.h" /* the Paxos core */
#include "teems/err.h"

#define N 3

struct frame {
	uint16_t from, to;
	uint8_t *p;
	size_t len;
	struct frame *next;
};

struct cluster;

struct node {
	struct cluster *c;
	uint16_t id;
	struct replica *r;
	bool want_sync, halted;
	char why[512];
};

struct reply {
	uint64_t req;
	char *bytes;
};

struct cluster {
	char dir[PATH_MAX];
	struct node nodes[N];
	struct frame *head, *tail;
	struct reply *replies;
	size_t n_replies, cap_replies;
	uint64_t next_req;
	bool verbose;
};

static void on_send(void *ctx, uint16_t to, const uint8_t *p, size_t len)
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

static void on_reply(void *ctx, uint64_t conn, uint64_t req, const uint8_t *p, size_t len)
{
	struct node *nd = ctx;
	struct cluster *c = nd->c;
	struct reply *rp;

	(void)conn;
	if (c->n_replies == c->cap_replies) {
		c->cap_replies = c->cap_replies ? 2 * c->cap_replies : 64;
		c->replies = realloc(c->replies, c->cap_replies * sizeof(*c->replies));
		assert_non_null(c->replies);
	}
	rp = &c->replies[c->n_replies++];
	rp->req = req;
	rp->bytes = malloc(len + 1);
	assert_non_null(rp->bytes);
	memcpy(rp->bytes, p, len);
	rp->bytes[len] = '\0';
}

static void on_want_sync(void *ctx)
{
	((struct node *)ctx)->want_sync = true;
}

static void on_halt(void *ctx, const char *why)
{
	struct node *nd = ctx;

	nd->halted = true;
	snprintf(nd->why, sizeof(nd->why), "%s", why);
	if (nd->c->verbose)
		fprintf(stderr, "r%u halts: %s\n", nd->id, why);
}

static void on_log(void *ctx, const char *line)
{
	struct node *nd = ctx;

	if (nd->c->verbose)
		fprintf(stderr, "r%u %s\n", nd->id, line);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* replica_open for node i; returns its result (err filled). */
static int node_try_open(struct cluster *c, int i, char *err)
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
	SET("sync", "rr");
	SET("engine", "abd");
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

static void node_open(struct cluster *c, int i)
{
	char err[TEEMS_ERRBUF_LEN] = "";

	if (node_try_open(c, i, err) != TEEMS_OK)
		fail_msg("replica_open r%d: %s", i, err);
}

static void node_close(struct cluster *c, int i)
{
	replica_close(c->nodes[i].r);
	c->nodes[i].r = NULL;
}

static struct cluster *cluster_new(void)
{
	struct cluster *c = calloc(1, sizeof(*c));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(c);
	c->verbose = getenv("TEEMS_TEST_VERBOSE") != NULL;
	snprintf(c->dir, sizeof(c->dir), "%s/teems-abd-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	c->next_req = 1;
	for (int i = 0; i < N; i++)
		node_open(c, i);
	return c;
}

static void cluster_free(struct cluster *c)
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

static bool alive(const struct cluster *c, int i)
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

static void pump_once(struct cluster *c)
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
	usleep(300);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pump_ms(struct cluster *c, uint64_t ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pump_once(c);
}

static const char *find_reply(struct cluster *c, uint64_t req)
{
	for (size_t k = 0; k < c->n_replies; k++)
		if (c->replies[k].req == req)
			return c->replies[k].bytes;
	return NULL;
}

static const char *run_cmd(struct cluster *c, int i, const char *const *words)
{
	struct resp_arg argv[8];
	size_t argc = 0;
	uint64_t req = c->next_req++, end = now_ms() + 3000;
	const char *s;

	memset(argv, 0, sizeof(argv));
	for (; words[argc] != NULL; argc++) {
		argv[argc].p = (const uint8_t *)words[argc];
		argv[argc].len = strlen(words[argc]);
	}
	replica_client(c->nodes[i].r, 1, req, argv, argc, 2);
	while ((s = find_reply(c, req)) == NULL && now_ms() < end)
		pump_once(c);
	if (s == NULL)
		fail_msg("r%d: no reply to %s within 3 s", i, words[0]);
	return s;
}

#define CMD(c, i, ...) run_cmd(c, i, (const char *const[]){__VA_ARGS__, NULL})

static int wait_leader(struct cluster *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		pump_ms(c, 10);
		for (int i = 0; i < N; i++)
			if (alive(c, i) && paxos_can_serve_reads(c->nodes[i].r->p))
				return i;
	}
	fail_msg("no leader within %llu ms", (unsigned long long)timeout_ms);
	return -1;
}

/* One field of replica i's TEEMS.STATUS ("key:value" lines), as a number. */
static uint64_t status_num(struct cluster *c, int i, const char *key)
{
	const char *s = CMD(c, i, "TEEMS.STATUS");
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\n%s:", key);
	p = strstr(s, pat);
	if (p == NULL)
		fail_msg("r%d: no %s in TEEMS.STATUS:\n%s", i, key, s);
	return strtoull(p + strlen(pat), NULL, 10);
}

static bool status_has(struct cluster *c, int i, const char *line)
{
	return strstr(CMD(c, i, "TEEMS.STATUS"), line) != NULL;
}

/* Until every live replica is fresh in both planes and holds its configuration lease. */
static void wait_abd_ready(struct cluster *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		bool all = true;

		pump_ms(c, 20);
		for (int i = 0; i < N; i++)
			if (alive(c, i) && (!status_has(c, i, "\nabd_state:fresh\r\n") ||
					    !status_has(c, i, "\nabd_lease:1\r\n") ||
					    paxos_lifecycle(c->nodes[i].r->p) != PAXOS_LC_FRESH))
				all = false;
		if (all)
			return;
	}
	for (int i = 0; i < N; i++)
		if (alive(c, i))
			fprintf(stderr, "r%d:\n%s\n", i, CMD(c, i, "TEEMS.STATUS"));
	fail_msg("the ABD cluster is not ready within %llu ms", (unsigned long long)timeout_ms);
}

static void expect_get(struct cluster *c, int i, const char *key, const char *value)
{
	char want[256];

	if (value == NULL)
		snprintf(want, sizeof(want), "$-1\r\n");
	else
		snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(value), value);
	assert_string_equal(CMD(c, i, "GET", key), want);
}

static void test_set_get_del(void **state)
{
	struct cluster *c = cluster_new();
	char k[16], v[32];

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	assert_true(status_has(c, 0, "\nengine:abd\r\n"));
	/* Through each replica, read back through every replica. */
	for (int i = 0; i < N; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d-from-r%d", i, i);
		assert_string_equal(CMD(c, i, "SET", k, v), "+OK\r\n");
		for (int j = 0; j < N; j++)
			expect_get(c, j, k, v);
	}
	/* Overwrite through another replica: every reader sees the newer value. */
	assert_string_equal(CMD(c, 2, "SET", "k0", "newer"), "+OK\r\n");
	for (int j = 0; j < N; j++)
		expect_get(c, j, "k0", "newer");
	expect_get(c, 1, "never-written", NULL);
	/* DEL: the count, then absent everywhere; a second DEL deletes nothing. */
	assert_string_equal(CMD(c, 1, "DEL", "k1"), ":1\r\n");
	for (int j = 0; j < N; j++)
		expect_get(c, j, "k1", NULL);
	assert_string_equal(CMD(c, 0, "DEL", "k1"), ":0\r\n");
	assert_string_equal(CMD(c, 0, "SET", "k1", "again"), "+OK\r\n");
	expect_get(c, 2, "k1", "again");
	/* Every replica coordinated: nothing was forwarded to a leader. */
	for (int i = 0; i < N; i++) {
		assert_int_equal(c->nodes[i].r->stats.forwarded, 0);
		assert_true(status_num(c, i, "abd_writes") >= 1);
		assert_true(status_num(c, i, "abd_reads") >= 1);
	}
	/* Paxos committed no client command: its state machine holds nothing. */
	assert_int_equal(kv_count(c->nodes[0].r->kv), 0);
	cluster_free(c);
}

static void test_unsupported(void **state)
{
	struct cluster *c = cluster_new();

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	assert_string_equal(CMD(c, 0, "INCR", "n"),
			    "-ERR 'incr' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 1, "MSET", "a", "1", "b", "2"),
			    "-ERR 'mset' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 1, "MGET", "a", "b"),
			    "-ERR 'mget' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 2, "SCAN", "0"),
			    "-ERR 'scan' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 2, "VSET", "a", "1", "0"),
			    "-ERR 'vset' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "LEASE.ACQUIRE", "l", "1000"),
			    "-ERR 'lease.acquire' is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "SET", "a", "1", "NX"),
			    "-ERR 'set' with options (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL) is "
			    "not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "DEL", "a", "b"),
			    "-ERR 'del' with several keys is not supported with engine = abd\r\n");
	assert_string_equal(CMD(c, 0, "ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all"),
			    "-ERR 'acl|setuser' is not supported with engine = abd\r\n");
	/* Nothing was written by the refused commands; the supported ones still work. */
	expect_get(c, 1, "a", NULL);
	assert_string_equal(CMD(c, 0, "SET", "a", "1"), "+OK\r\n");
	expect_get(c, 2, "a", "1");
	assert_string_equal(CMD(c, 1, "PING"), "+PONG\r\n");
	cluster_free(c);
}

static void shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void shell(const char *fmt, ...)
{
	char cmd[3 * PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

/* A follower crashes (rollback: it restarts on a copy of its data directory taken before the
 * writes; restart: on its own directory) while the others take new writes: it registers a new
 * incarnation through the Paxos log, fences, recovers by range digests, and serves the newest
 * values. */
static void restart_follower(bool rollback)
{
	struct cluster *c = cluster_new();
	int l, f;
	char k[16], v[32];

	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "old-%d", i);
		assert_string_equal(CMD(c, f, "SET", k, v), "+OK\r\n");
	}
	pump_ms(c, 50);
	if (rollback)
		shell("cp -a %s/r%d/data %s/r%d/copy", c->dir, f, c->dir, f);
	if (!rollback) {
		node_close(c, f);
	}
	for (int i = 0; i < 10; i += 2) {
		int via = (f + 1 + (i / 2) % 2) % N; /* the two others */

		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "new-%d", i);
		assert_string_equal(CMD(c, via, "SET", k, v), "+OK\r\n");
	}
	if (rollback) {
		node_close(c, f);
		shell("rm -rf %s/r%d/data && mv %s/r%d/copy %s/r%d/data", c->dir, f, c->dir, f,
		      c->dir, f);
	}
	node_open(c, f);
	assert_true(status_has(c, f, "\nabd_state:suspicious\r\n"));
	/* Refused while it recovers (retried inside, then TRYAGAIN), never stale. */
	wait_abd_ready(c, 8000);
	assert_true(status_num(c, f, "abd_wal_records_restored") >= 10);
	/* The digests differed in the ranges of the new writes: fetched and adopted. */
	assert_true(status_num(c, f, "abd_ranges_fetched") >= 1);
	assert_true(status_num(c, f, "abd_items_adopted") >= 5);
	{
		struct msg_regidx reg = paxos_registration(c->nodes[f].r->p);

		assert_true(reg.epoch > 0 || reg.slot > 0); /* a registered new incarnation */
	}
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "%s-%d", i % 2 == 0 ? "new" : "old", i);
		expect_get(c, f, k, v);
	}
	/* And it coordinates writes again. */
	assert_string_equal(CMD(c, f, "SET", "key1", "after"), "+OK\r\n");
	expect_get(c, l, "key1", "after");
	cluster_free(c);
}

static void test_restart(void **state)
{
	(void)state;
	restart_follower(false);
}

static void test_rollback(void **state)
{
	(void)state;
	restart_follower(true);
}

/* Every replica crashes at once (recovery = auto): nobody can register, so the control plane
 * takes the epoch-restart path (DESIGN.md section 6); each data plane then recovers at its
 * new registration and the values acknowledged before the crash are read back. */
static void test_total_crash(void **state)
{
	struct cluster *c = cluster_new();
	char k[16], v[32];

	(void)state;
	wait_leader(c, 5000);
	wait_abd_ready(c, 5000);
	for (int i = 0; i < 6; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "before-%d", i);
		assert_string_equal(CMD(c, i % N, "SET", k, v), "+OK\r\n");
	}
	for (int i = 0; i < N; i++)
		node_close(c, i);
	for (int i = 0; i < N; i++)
		node_open(c, i);
	wait_abd_ready(c, 30000);
	for (int i = 0; i < N; i++)
		assert_true(paxos_epoch(c->nodes[i].r->p) >= 1);
	for (int i = 0; i < 6; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		snprintf(v, sizeof(v), "before-%d", i);
		expect_get(c, (i + 1) % N, k, v);
	}
	assert_string_equal(CMD(c, 2, "SET", "key0", "after"), "+OK\r\n");
	expect_get(c, 0, "key0", "after");
	cluster_free(c);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest basic[] = {
		cmocka_unit_test(test_set_get_del),
		cmocka_unit_test(test_unsupported),
	};
	const struct CMUnitTest restart[] = {
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_total_crash),
	};
	const char *group = argc > 1 ? argv[1] : "all";
	int rc = 0;

	if (strcmp(group, "basic") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_basic", basic, NULL, NULL);
	if (strcmp(group, "restart") == 0 || strcmp(group, "all") == 0)
		rc |= cmocka_run_group_tests_name("replica_abd_restart", restart, NULL, NULL);
	return rc;
}
