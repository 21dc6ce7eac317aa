/* The replica engine (src/server/replica.h) with three replicas in one process: real sim
 * platforms (one fused secret in a temporary directory), real sealed WALs on the posix VFS,
 * the real trusted clock; io.send queues frames that the harness delivers, fsync jobs run
 * inline. Checks: a write on the leader read on a follower (forwarded), a write forwarded by a
 * follower, VSET compare-and-set, local commands; a follower restart (register, fence, recover,
 * data still there); the leader closed (a new one, writes go on); bad frames counted, not
 * fatal; forged REGISTER quotes refused while a genuine one goes through (and halts the
 * incarnation it supersedes). */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "core/msg.h"
#include "server/config.h"
#include "server/replica.h"
#include "server/replica_internal.h" /* rp_report_data: to forge and to mint quotes */
#include "tee/tee.h"
#include "teems/err.h"

#include "replica_harness.h"

static struct cluster *cluster_new_sync(const char *sync)
{
	const struct cluster_opts o = {
		.dir_prefix = "teems-replica",
		.sync = sync,
		.pump_sleep_us = 500,
	};

	return cluster_new_opts(&o);
}

static struct cluster *cluster_new(void)
{
	return cluster_new_sync("rr");
}

static void test_write_read_forward(void **state)
{
	struct cluster *c = cluster_new();
	int l, f;
	const char *s;
	char v[64];

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "k", "v1"), "+OK\r\n");
	/* a read on a follower: forwarded to the leader, after its read-index barrier */
	assert_string_equal(CMD(c, f, "GET", "k"), "$2\r\nv1\r\n");
	/* a write on a follower: forwarded, and readable everywhere */
	assert_string_equal(CMD(c, f, "SET", "k2", "from-follower"), "+OK\r\n");
	assert_string_equal(CMD(c, l, "GET", "k2"), "$13\r\nfrom-follower\r\n");
	assert_string_equal(CMD(c, (l + 2) % N, "GET", "k2"), "$13\r\nfrom-follower\r\n");
	assert_string_equal(CMD(c, f, "GET", "missing"), "$-1\r\n");
	assert_true(status_u64(c, f, "forwarded") >= 3);
	assert_true(status_u64(c, l, "forwarded_in") >= 3);

	/* VSET: compare-and-set on the version */
	s = CMD(c, f, "VGET", "k");
	assert_string_equal(s, "*2\r\n$2\r\nv1\r\n:1\r\n");
	assert_string_equal(CMD(c, f, "VSET", "k", "v2", "1"), "*2\r\n:1\r\n:2\r\n");
	assert_string_equal(CMD(c, l, "VSET", "k", "v3", "1"), "*2\r\n:0\r\n:2\r\n");
	assert_string_equal(CMD(c, l, "GET", "k"), "$2\r\nv2\r\n");

	/* local commands and errors */
	assert_string_equal(CMD(c, f, "PING"), "+PONG\r\n");
	assert_string_equal(CMD(c, f, "ping", "hi"), "$2\r\nhi\r\n");
	assert_string_equal(CMD(c, f, "NOSUCH", "a"),
			    "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n");
	assert_string_equal(CMD(c, f, "GET"),
			    "-ERR wrong number of arguments for 'get' command\r\n");
	assert_non_null(strstr(CMD(c, f, "HELLO", "3"), "-ERR"));
	s = CMD(c, f, "INFO");
	assert_non_null(strstr(s, "# Server\r\nredis_version:7.0.0-teems\r\n"));
	assert_non_null(strstr(s, "# Teems\r\nreplica_id:"));
	assert_null(strstr(CMD(c, f, "INFO", "server"), "# Teems"));
	assert_true(status_field(c, f, "role", v, sizeof(v)));
	assert_string_equal(v, "follower");
	assert_true(status_field(c, f, "leader_id", v, sizeof(v)));
	assert_int_equal(atoi(v), l);
	assert_true(status_field(c, f, "lifecycle", v, sizeof(v)));
	assert_string_equal(v, "fresh");
	assert_true(status_field(c, f, "registration", v, sizeof(v)));
	assert_string_equal(v, "0.0");
	assert_true(status_field(c, f, "sync", v, sizeof(v)));
	assert_string_equal(v, "rr");
	assert_true(status_field(c, f, "incarnation", v, sizeof(v)));
	assert_int_equal(strlen(v), 16);
	assert_true(status_field(c, f, "client_addr", v, sizeof(v)));
	assert_true(strncmp(v, "127.0.0.1:1720", 14) == 0);
	assert_true(status_u64(c, l, "commit_index") >= 4);
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

static void test_restart_follower(void **state)
{
	struct cluster *c = cluster_new();
	int l, f;
	char v[64];

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "a", "1"), "+OK\r\n");
	pump_ms(c, 100); /* the follower's group fsync makes its copy durable */
	node_close(c, f);
	assert_string_equal(CMD(c, l, "SET", "b", "2"), "+OK\r\n");
	node_open(c, f);
	assert_true(status_u64(c, f, "wal_records_restored") > 0);
	/* a restarted incarnation registers, fences (T_fence is about 0.5 s here) and recovers */
	wait_fresh(c, f, 5000);
	assert_true(status_field(c, f, "registration", v, sizeof(v)));
	assert_string_not_equal(v, "0.0");
	assert_int_equal(status_u64(c, f, "suspicious"), 0);
	assert_string_equal(CMD(c, f, "GET", "a"), "$1\r\n1\r\n");
	assert_string_equal(CMD(c, f, "GET", "b"), "$1\r\n2\r\n");
	assert_string_equal(CMD(c, f, "SET", "c", "3"), "+OK\r\n");
	assert_string_equal(CMD(c, l, "GET", "c"), "$1\r\n3\r\n");
	/* the follower applied what it missed */
	pump_ms(c, 200);
	assert_true(status_u64(c, f, "applied_index") >= status_u64(c, l, "applied_index") - 1);
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

static void test_leader_killed(void **state)
{
	struct cluster *c = cluster_new();
	int l, l2, other;

	(void)state;
	l = wait_leader(c, 5000);
	assert_string_equal(CMD(c, l, "SET", "x", "1"), "+OK\r\n");
	node_close(c, l);
	l2 = wait_leader(c, 5000);
	assert_int_not_equal(l2, l);
	other = 3 - l - l2;
	assert_string_equal(CMD(c, l2, "SET", "y", "2"), "+OK\r\n");
	assert_string_equal(CMD(c, other, "GET", "x"), "$1\r\n1\r\n");
	assert_string_equal(CMD(c, other, "SET", "z", "3"), "+OK\r\n");
	assert_string_equal(CMD(c, l2, "GET", "z"), "$1\r\n3\r\n");
	cluster_free(c);
}

static void test_bad_frames(void **state)
{
	struct cluster *c = cluster_new();
	uint8_t junk[64], frame[256];
	struct msg m;
	size_t len;
	int l, f;
	uint64_t before;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	before = status_u64(c, l, "bad_frames");
	memset(junk, 0xee, sizeof(junk));
	replica_peer_frame(c->nodes[l].r, (uint16_t)f, junk, sizeof(junk));
	replica_peer_frame(c->nodes[l].r, (uint16_t)f, junk, 0);
	replica_peer_frame(c->nodes[l].r, 7, junk, sizeof(junk)); /* no such replica */
	/* a well-formed frame whose header names another sender than the channel proved */
	memset(&m, 0, sizeof(m));
	m.type = MSG_COMMIT;
	m.from.replica = (uint16_t)((l + 2) % N);
	m.commit.ballot.round = 99;
	m.commit.ballot.replica = m.from.replica;
	assert_int_equal(msg_encode(&m, frame, sizeof(frame), &len), TEEMS_OK);
	replica_peer_frame(c->nodes[l].r, (uint16_t)f, frame, len);
	/* a truncated copy of it */
	replica_peer_frame(c->nodes[l].r, (uint16_t)f, frame, len - 1);
	/* a forwarded request without the flag byte */
	memset(&m, 0, sizeof(m));
	m.type = MSG_CLIENT_REQUEST;
	m.from.replica = (uint16_t)f;
	m.client_request.client_id = 5;
	m.client_request.request_id = 6;
	assert_int_equal(msg_encode(&m, frame, sizeof(frame), &len), TEEMS_OK);
	replica_peer_frame(c->nodes[l].r, (uint16_t)f, frame, len);
	assert_int_equal(status_u64(c, l, "bad_frames"), before + 6);
	/* the same forwarded write delivered twice while in flight is proposed once */
	{
		const char *const words[] = {"SET", "dup", "x"};
		struct resp_arg argv[3];
		char cerr[CMD_ERR_LEN];
		uint8_t *cmd = NULL, wire[256];
		size_t cmd_len = 0;

		memset(argv, 0, sizeof(argv));
		for (int i = 0; i < 3; i++) {
			argv[i].p = (const uint8_t *)words[i];
			argv[i].len = strlen(words[i]);
		}
		assert_int_equal(
			cmd_request(cmd_lookup(argv[0].p, 3), argv, 3, 0, &cmd, &cmd_len, cerr), 0);
		assert_true(cmd_len + 1 <= sizeof(wire));
		wire[0] = RP_FWD_WRITE;
		memcpy(wire + 1, cmd, cmd_len);
		teems_free(cmd);
		memset(&m, 0, sizeof(m));
		m.type = MSG_CLIENT_REQUEST;
		m.from.replica = (uint16_t)f;
		m.client_request.client_id = 0x5eed;
		m.client_request.request_id = 1;
		m.client_request.command.p = wire;
		m.client_request.command.len = (uint32_t)(cmd_len + 1);
		assert_int_equal(msg_encode(&m, frame, sizeof(frame), &len), TEEMS_OK);
		replica_peer_frame(c->nodes[l].r, (uint16_t)f, frame, len);
		replica_peer_frame(c->nodes[l].r, (uint16_t)f, frame, len);
		pump_ms(c, 100);
		assert_string_equal(CMD(c, l, "VGET", "dup"), "*2\r\n$1\r\nx\r\n:1\r\n");
	}
	/* nothing else changed: still the leader, still serving */
	assert_int_equal(find_leader(c), l);
	assert_string_equal(CMD(c, l, "SET", "k", "v"), "+OK\r\n");
	assert_string_equal(CMD(c, f, "GET", "k"), "$1\r\nv\r\n");
	cluster_free(c);
}

/* A REGISTER from replica `who` for `key` carrying `quote`, to replica `to`. */
static void send_register(struct cluster *c, int to, uint16_t who, const uint8_t *key,
			  const uint8_t *quote, size_t quote_len)
{
	uint8_t *frame;
	struct msg m;
	size_t len = 0;

	memset(&m, 0, sizeof(m));
	m.type = MSG_REGISTER;
	m.from.replica = who;
	m.suspicious = true;
	m.nonce = 0x1234;
	m.register_.replica = who;
	memcpy(m.register_.public_key, key, MSG_PUBLIC_KEY_SIZE);
	m.register_.quote.p = quote;
	m.register_.quote.len = (uint32_t)quote_len;
	assert_int_equal(msg_encode(&m, NULL, 0, &len), TEEMS_EFULL);
	frame = malloc(len);
	assert_non_null(frame);
	assert_int_equal(msg_encode(&m, frame, len, &len), TEEMS_OK);
	replica_peer_frame(c->nodes[to].r, who, frame, len);
	free(frame);
}

static void test_forged_register(void **state)
{
	struct cluster *c = cluster_new();
	static const uint8_t cluster_id[CONFIG_CLUSTER_ID_LEN] = {0, 1, 2,  3,	4,  5,	6,  7,
								  8, 9, 10, 11, 12, 13, 14, 15};
	uint8_t key[TEE_PUBLIC_KEY_LEN], other[TEE_PUBLIC_KEY_LEN], rd[TEE_REPORT_DATA_LEN];
	uint8_t enc[TEE_QUOTE_LEN], junk[TEE_QUOTE_LEN];
	char err[TEEMS_ERRBUF_LEN], path[PATH_MAX + 16];
	struct tee_options to;
	struct tee_quote q;
	struct tee *tee;
	int l, victim;
	uint64_t end;

	(void)state;
	l = wait_leader(c, 5000);
	victim = (l + 1) % N;
	memset(key, 0x42, sizeof(key));
	memset(other, 0x43, sizeof(other));
	/* The same platform (root) as the replicas: its quotes are genuine. */
	memset(&to, 0, sizeof(to));
	snprintf(path, sizeof(path), "%s/platform", c->dir);
	to.platform_dir = path;
	to.replica_id = (uint32_t)victim;
	to.no_clock = true;
	assert_int_equal(tee_open(&to, &tee, err), TEEMS_OK);

	/* 1. a genuine quote that binds another key */
	rp_report_data((uint16_t)victim, other, cluster_id, rd);
	assert_int_equal(tee_quote(tee, rd, &q), TEEMS_OK);
	tee_quote_encode(&q, enc);
	send_register(c, l, (uint16_t)victim, key, enc, sizeof(enc));
	/* 2. a genuine quote for the key, but for another cluster */
	{
		uint8_t other_cluster[CONFIG_CLUSTER_ID_LEN] = {9};

		rp_report_data((uint16_t)victim, key, other_cluster, rd);
		assert_int_equal(tee_quote(tee, rd, &q), TEEMS_OK);
		tee_quote_encode(&q, enc);
		send_register(c, l, (uint16_t)victim, key, enc, sizeof(enc));
	}
	/* 3. the right binding with one signature byte flipped */
	rp_report_data((uint16_t)victim, key, cluster_id, rd);
	assert_int_equal(tee_quote(tee, rd, &q), TEEMS_OK);
	tee_quote_encode(&q, enc);
	enc[TEE_QUOTE_LEN - 1] ^= 1;
	send_register(c, l, (uint16_t)victim, key, enc, sizeof(enc));
	/* 4. junk */
	memset(junk, 0x5a, sizeof(junk));
	send_register(c, l, (uint16_t)victim, key, junk, sizeof(junk));
	/* 5. a good quote, but the frame comes over another replica's channel */
	enc[TEE_QUOTE_LEN - 1] ^= 1;
	{
		uint8_t *frame;
		struct msg m;
		size_t len = 0;
		uint16_t liar = (uint16_t)((l + 2) % N);

		memset(&m, 0, sizeof(m));
		m.type = MSG_REGISTER;
		m.from.replica = liar;
		m.suspicious = true;
		m.register_.replica = (uint16_t)victim;
		memcpy(m.register_.public_key, key, MSG_PUBLIC_KEY_SIZE);
		m.register_.quote.p = enc;
		m.register_.quote.len = sizeof(enc);
		assert_int_equal(msg_encode(&m, NULL, 0, &len), TEEMS_EFULL);
		frame = malloc(len);
		assert_non_null(frame);
		assert_int_equal(msg_encode(&m, frame, len, &len), TEEMS_OK);
		replica_peer_frame(c->nodes[l].r, liar, frame, len);
		free(frame);
	}
	assert_int_equal(status_u64(c, l, "bad_quotes"), 5);
	pump_ms(c, 300);
	assert_false(c->nodes[victim].halted); /* nothing was registered */
	assert_string_equal(CMD(c, l, "SET", "k", "v"), "+OK\r\n");

	/* Positive control: the genuine quote for (victim, key, cluster) is accepted, the
	 * registration commits, and the victim's running incarnation halts (DESIGN.md section 4,
	 * step 3): so the refusals above were the verification's doing. */
	send_register(c, l, (uint16_t)victim, key, enc, sizeof(enc));
	assert_int_equal(status_u64(c, l, "bad_quotes"), 5);
	end = now_ms() + 3000;
	while (!c->nodes[victim].halted && now_ms() < end)
		pump_ms(c, 10);
	assert_true(c->nodes[victim].halted);
	assert_non_null(strstr(c->nodes[victim].why, "newer incarnation"));
	tee_close(tee);
	cluster_free(c);
}

/* Every sync policy serves (always: every ack synced; none: only the core's own sync records). */
static void test_sync_policies(void **state)
{
	static const char *const policies[] = {"always", "none"};

	(void)state;
	for (int p = 0; p < 2; p++) {
		struct cluster *c = cluster_new_sync(policies[p]);
		int l = wait_leader(c, 5000), f = (l + 1) % N;
		char v[32];

		assert_string_equal(CMD(c, f, "SET", "k", policies[p]), "+OK\r\n");
		assert_string_equal(CMD(c, l, "VGET", "k"), p == 0 ? "*2\r\n$6\r\nalways\r\n:1\r\n"
								   : "*2\r\n$4\r\nnone\r\n:1\r\n");
		assert_true(status_field(c, l, "sync", v, sizeof(v)));
		assert_string_equal(v, policies[p]);
		assert_true(status_u64(c, l, "wal_fsyncs") > 0);
		cluster_free(c);
	}
}

/* Without a quorum nothing hangs: a read is refused after its 2 s of retries; a closed
 * connection's answers are dropped. */
static void test_no_quorum(void **state)
{
	struct cluster *c = cluster_new();
	uint64_t t0, req, gone_req;
	const char *s;
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	gone_req = send_cmd(c, f, 9, (const char *const[]){"SET", "g", "1", NULL});
	replica_client_gone(c->nodes[f].r, 9);
	assert_string_equal(CMD(c, f, "SET", "k", "v"), "+OK\r\n");
	pump_ms(c, 50);
	assert_null(find_reply(c, gone_req));
	node_close(c, l);
	node_close(c, (l + 2) % N);
	t0 = now_ms();
	req = send_cmd(c, f, 1, (const char *const[]){"GET", "k", NULL});
	s = wait_reply(c, req, 4000);
	assert_true(strncmp(s, "-TRYAGAIN teems: no leader", 26) == 0);
	assert_true(now_ms() - t0 >= 1500);
	assert_false(c->nodes[f].halted);
	cluster_free(c);
}

/* Every replica closed and reopened on its data: all are restarted incarnations, none can
 * register (no leader), so after T_restart (3 s) they run an epoch restart (recovery = auto,
 * DESIGN.md section 6), fence, recover, elect, and the data is still there. */
static void test_total_restart(void **state)
{
	struct cluster *c = cluster_new();
	char v[32];
	int l;

	(void)state;
	l = wait_leader(c, 5000);
	assert_string_equal(CMD(c, l, "SET", "k", "before"), "+OK\r\n");
	pump_ms(c, 50);
	for (int i = 0; i < N; i++)
		node_close(c, i);
	for (int i = 0; i < N; i++)
		node_open(c, i);
	l = wait_leader(c, 8000);
	assert_true(status_field(c, l, "epoch", v, sizeof(v)));
	assert_string_equal(v, "1");
	assert_string_equal(CMD(c, l, "GET", "k"), "$6\r\nbefore\r\n");
	assert_string_equal(CMD(c, (l + 1) % N, "SET", "k", "after"), "+OK\r\n");
	assert_string_equal(CMD(c, (l + 2) % N, "GET", "k"), "$5\r\nafter\r\n");
	cluster_free(c);
}

/* A replica whose WAL is gone but whose first-boot marker is there lost its state (or was
 * rolled back to nothing): it must come back as a restarted incarnation that registers and
 * recovers, not as a member of the initial configuration. */
static void test_lost_wal(void **state)
{
	struct cluster *c = cluster_new();
	char v[32], path[PATH_MAX + 32];
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "k", "kept"), "+OK\r\n");
	node_close(c, f);
	snprintf(path, sizeof(path), "%s/r%d/data/wal", c->dir, f);
	assert_int_equal(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
	node_open(c, f);
	assert_int_equal(status_u64(c, f, "wal_records_restored"), 0);
	assert_true(status_field(c, f, "lifecycle", v, sizeof(v)));
	assert_string_equal(v, "registering");
	wait_fresh(c, f, 5000);
	assert_true(status_field(c, f, "registration", v, sizeof(v)));
	assert_string_not_equal(v, "0.0");
	assert_string_equal(CMD(c, f, "GET", "k"), "$4\r\nkept\r\n");
	cluster_free(c);
}

/* The whole data directory gone (a rollback to before the first start, or a new disk): an empty
 * first boot that every peer contradicts. It must not rejoin as a genesis member (it would vote
 * with an empty log): the genesis check sends it through registration and recovery. */
static void test_rollback_to_empty(void **state)
{
	struct cluster *c = cluster_new();
	char v[32], path[PATH_MAX + 32];
	int l, f;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, l, "SET", "k", "kept"), "+OK\r\n");
	node_close(c, f);
	snprintf(path, sizeof(path), "%s/r%d/data", c->dir, f);
	assert_int_equal(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
	node_open(c, f);
	assert_int_equal(status_u64(c, f, "genesis_check"), 1);
	/* clients wait while it asks */
	assert_non_null(strstr(CMD(c, f, "GET", "k"), "TRYAGAIN"));
	pump_ms(c, 300);
	assert_int_equal(status_u64(c, f, "genesis_check"), 0);
	assert_true(status_field(c, f, "lifecycle", v, sizeof(v)));
	assert_string_not_equal(v, "fresh");
	wait_fresh(c, f, 5000);
	assert_true(status_field(c, f, "registration", v, sizeof(v)));
	assert_string_not_equal(v, "0.0");
	assert_string_equal(CMD(c, f, "GET", "k"), "$4\r\nkept\r\n");
	cluster_free(c);
}

/* replica_open refuses what it cannot run, and leaves nothing behind. */
static void test_open_errors(void **state)
{
	struct cluster *c = calloc(1, sizeof(*c));
	struct teems_config cfg;
	struct replica_io io = {0};
	struct replica *r = (struct replica *)1;
	char err[TEEMS_ERRBUF_LEN] = "", dir[PATH_MAX + 16];

	(void)state;
	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "%s/teems-replica-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	snprintf(dir, sizeof(dir), "%s/data", c->dir);
	config_defaults(&cfg);
	assert_int_equal(config_set(&cfg, "data_dir", dir, NULL, err), TEEMS_OK);
	io.ctx = &c->nodes[0];
	io.send = on_send;
	io.reply = on_reply;
	io.want_sync = on_want_sync;
	/* no halt callback */
	assert_int_equal(replica_open(&cfg, &io, &r, err), TEEMS_EINVAL);
	assert_null(r);
	io.halt = on_halt;
	assert_int_equal(config_set(&cfg, "replica_id", "3", NULL, err), TEEMS_OK);
	assert_int_equal(replica_open(&cfg, &io, &r, err), TEEMS_ECONFIG);
	assert_non_null(strstr(err, "replica_id = 3"));
	assert_null(r);
	/* nothing was created for a refused configuration */
	assert_int_not_equal(access(dir, F_OK), 0);
	nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(c);
}

/* Every allocation replica_open makes can fail: it then returns an error, hands back nothing
 * and leaks nothing (the ASan build checks the last part). */
static void test_open_alloc_failures(void **state)
{
	struct cluster *c = calloc(1, sizeof(*c));
	struct teems_config cfg;
	struct replica_io io = {0};
	struct replica *r;
	char err[TEEMS_ERRBUF_LEN] = "", dir[PATH_MAX + 32], plat[PATH_MAX + 16];
	unsigned long before, needed;
	int rc;

	(void)state;
	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "%s/teems-replica-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	snprintf(plat, sizeof(plat), "%s/platform", c->dir);
	config_defaults(&cfg);
	assert_int_equal(config_set(&cfg, "platform_dir", plat, NULL, err), TEEMS_OK);
	io.ctx = &c->nodes[0];
	c->nodes[0].c = c;
	io.send = on_send;
	io.reply = on_reply;
	io.want_sync = on_want_sync;
	io.halt = on_halt;
	snprintf(dir, sizeof(dir), "%s/ok", c->dir);
	assert_int_equal(config_set(&cfg, "data_dir", dir, NULL, err), TEEMS_OK);
	before = teems_alloc_count();
	assert_int_equal(replica_open(&cfg, &io, &r, err), TEEMS_OK);
	needed = teems_alloc_count() - before;
	replica_close(r);
	assert_true(needed > 5);
	for (unsigned long nth = 0; nth < needed; nth++) {
		snprintf(dir, sizeof(dir), "%s/d%lu", c->dir, nth);
		assert_int_equal(config_set(&cfg, "data_dir", dir, NULL, err), TEEMS_OK);
		r = (struct replica *)1;
		teems_alloc_fault((long)nth, 0);
		rc = replica_open(&cfg, &io, &r, err);
		teems_alloc_fault(-1, 0);
		if (rc == TEEMS_OK) { /* this allocation had a fallback, or was not reached */
			replica_close(r);
			continue;
		}
		assert_null(r);
		if (rc != TEEMS_ENOMEM && rc != TEEMS_ECRYPTO)
			fail_msg("allocation %lu failed: %s (%s)", nth, teems_strerror(rc), err);
	}
	nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(c);
}

#define NOAUTH "-NOAUTH Authentication required.\r\n"
#define NOPERM_KEY \
	"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"

/* Users and permissions through the engine (replica.h, replica_client_as): AUTH required once
 * default has a password, key patterns on the leader and through a follower, a permission
 * revoked by a write ordered before a forwarded write wins at the leader's apply, per-key
 * policies. */
static void test_acl(void **state)
{
	struct cluster *c = cluster_new();
	int l, f, f2;
	uint64_t rev, wr;

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	f2 = (l + 2) % N;
	/* nobody configured anything: everyone is "default", as before */
	assert_string_equal(AS(c, f, NULL, "SET", "k", "v"), "+OK\r\n");
	assert_string_equal(AS(c, f, NULL, "ACL", "WHOAMI"), "$7\r\ndefault\r\n");
	assert_string_equal(AS(c, l, NULL, "ACL", "SETUSER", "alice", "on", ">apw", "~app:*",
			       "+@read", "+@write"),
			    "+OK\r\n");
	assert_string_equal(AS(c, f, NULL, "ACL", "SETUSER", "bob", "on", ">bpw", "~app:*",
			       "+@read", "+@write"),
			    "+OK\r\n");
	/* AUTH on a follower is a linearizable read: alice, created a moment ago, is known */
	assert_string_equal(AS(c, f2, NULL, "AUTH", "alice", "apw"), "+OK\r\n");
	assert_string_equal(AS(c, f2, NULL, "AUTH", "alice", "bad"),
			    "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
	/* default needs a password now: the unauthenticated get NOAUTH, everywhere, even for a
	 * write a follower sent on before it learnt of the password (decided when applied) */
	pump_ms(c, 50);
	rev = send_cmd_as(c, l, 2, NULL,
			  (const char *const[]){"ACL", "SETUSER", "default", ">x", NULL});
	wr = send_cmd_as(c, f, 3, NULL, (const char *const[]){"SET", "k", "sneaky", NULL});
	assert_string_equal(wait_reply(c, rev, 3000), "+OK\r\n");
	assert_string_equal(wait_reply(c, wr, 3000), NOAUTH);
	pump_ms(c, 100);
	assert_string_equal(AS(c, l, NULL, "GET", "k"), NOAUTH);
	assert_string_equal(AS(c, f, NULL, "PING"), NOAUTH);
	assert_string_equal(AS(c, f, NULL, "AUTH", "x"), "+OK\r\n");
	assert_string_equal(AS(c, f, "default", "GET", "k"), "$1\r\nv\r\n");
	/* key patterns, on the leader and through a follower (forwarded) */
	assert_string_equal(AS(c, l, "alice", "SET", "app:1", "a"), "+OK\r\n");
	assert_string_equal(AS(c, f, "alice", "SET", "app:2", "b"), "+OK\r\n");
	assert_string_equal(AS(c, f, "alice", "GET", "app:2"), "$1\r\nb\r\n");
	assert_string_equal(AS(c, l, "alice", "SET", "k", "x"), NOPERM_KEY);
	assert_string_equal(AS(c, f, "alice", "SET", "k", "x"), NOPERM_KEY);
	assert_string_equal(AS(c, f, "alice", "GET", "k"), NOPERM_KEY);
	assert_string_equal(
		AS(c, f, "alice", "ACL", "LIST"),
		"-NOPERM this user has no permissions to run the 'acl|list' command\r\n");
	assert_string_equal(AS(c, f, "alice", "ACL", "WHOAMI"), "$5\r\nalice\r\n");
	/* A revocation proposed at the leader before a follower forwards alice's write, which
	 * the follower's own (stale) check let through: the leader's apply refuses it. */
	pump_ms(c, 50);
	rev = send_cmd_as(c, l, 2, "default",
			  (const char *const[]){"ACL", "SETUSER", "alice", "-@write", NULL});
	wr = send_cmd_as(c, f, 3, "alice", (const char *const[]){"SET", "app:3", "late", NULL});
	assert_string_equal(wait_reply(c, rev, 3000), "+OK\r\n");
	assert_string_equal(wait_reply(c, wr, 3000),
			    "-NOPERM this user has no permissions to run the 'set' command\r\n");
	assert_string_equal(AS(c, f2, "default", "EXISTS", "app:3"), ":0\r\n");
	assert_string_equal(AS(c, l, "default", "ACL", "SETUSER", "alice", "+@write"), "+OK\r\n");
	/* per-key policy: alice owns app:doc, bob reads it, nobody else writes it */
	assert_string_equal(AS(c, f, "bob", "TEEMS.POLICY.SET", "app:doc", "alice", "-", "-"),
			    "-NOPERM a new policy must name its creator as the owner\r\n");
	assert_string_equal(AS(c, f, "alice", "TEEMS.POLICY.SET", "app:doc", "alice", "bob", "-"),
			    "+OK\r\n");
	assert_string_equal(AS(c, f, "alice", "SET", "app:doc", "secret"), "+OK\r\n");
	assert_string_equal(AS(c, f2, "bob", "GET", "app:doc"), "$6\r\nsecret\r\n");
	assert_string_equal(AS(c, f2, "bob", "SET", "app:doc", "mine"), NOPERM_KEY);
	assert_string_equal(AS(c, l, "bob", "TEEMS.POLICY.SET", "app:doc", "bob", "bob", "bob"),
			    NOPERM_KEY);
	assert_string_equal(AS(c, f2, "default", "GET", "app:doc"), NOPERM_KEY);
	assert_string_equal(AS(c, f2, "bob", "TEEMS.POLICY.GET", "app:doc"),
			    "*3\r\n$5\r\nalice\r\n$3\r\nbob\r\n$1\r\n-\r\n");
	assert_string_equal(AS(c, l, "alice", "TEEMS.POLICY.SET", "app:doc", "alice", "-", "bob"),
			    "+OK\r\n");
	assert_string_equal(AS(c, f, "bob", "GET", "app:doc"), NOPERM_KEY);
	assert_string_equal(AS(c, f, "bob", "SET", "app:doc", "mine"), "+OK\r\n");
	/* a deleted user's connections are refused */
	assert_string_equal(AS(c, l, "default", "ACL", "DELUSER", "bob"), ":1\r\n");
	pump_ms(c, 100);
	assert_string_equal(AS(c, f, "bob", "GET", "app:1"), NOAUTH);
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

/* Polls LEASE.INFO name on replica i until it says "not held" (or fails after timeout_ms).
 * Returns when the first poll that saw it free was sent (now_ms): the lease was still held at
 * every earlier poll, so it was freed after the one before. */
static uint64_t wait_lease_free(struct cluster *c, int i, const char *name, uint64_t timeout_ms)
{
	uint64_t start = now_ms();

	while (now_ms() - start < timeout_ms) {
		uint64_t sent = now_ms();
		const char *s = CMD(c, i, "LEASE.INFO", name);

		if (strncmp(s, "*4\r\n:0\r\n", 8) == 0)
			return sent;
		pump_ms(c, 10);
	}
	fail_msg("lease %s still held after %llu ms", name, (unsigned long long)timeout_ms);
	return 0;
}

/* The remaining_ms of a LEASEHELD refusal or of a LEASE.INFO reply naming it last; -2 if the
 * reply has neither. */
static long long lease_remaining_ms(const char *s)
{
	const char *p = strstr(s, "remaining_ms ");
	const char *q;

	if (p != NULL)
		return strncmp(p + 13, "at most", 7) == 0 ? -1 : atoll(p + 13);
	if (strncmp(s, "*4\r\n", 4) != 0)
		return -2;
	q = s;
	for (int k = 0; k < 4; k++) {
		q = strchr(q, ':');
		if (q == NULL)
			return -2;
		p = ++q;
	}
	return atoll(p);
}

/* Client leases end to end (docs/LEASES.md): ACQUIRE / RENEW / RELEASE through the log from
 * any replica, INFO as a read, refusals naming the holder's remaining time (the leader's
 * timers), fencing tokens, the leader's EXPIRE after ttl; and the leader-lease fields of
 * TEEMS.STATUS. */
static void test_client_leases(void **state)
{
	struct cluster *c = cluster_new();
	uint64_t t0, waited;
	long long rem;
	const char *s;
	int l, f;
	char v[64];

	(void)state;
	l = wait_leader(c, 5000);
	f = (l + 1) % N;
	assert_string_equal(CMD(c, f, "LEASE.INFO", "a"), "$-1\r\n");
	assert_string_equal(CMD(c, f, "LEASE.ACQUIRE", "a", "5000"), "*2\r\n:1\r\n:5000\r\n");
	/* refused while held, at the leader with its timer's remaining time (<= ttl (1 + rho)) */
	s = CMD(c, l, "LEASE.ACQUIRE", "a", "100");
	assert_non_null(strstr(s, "-LEASEHELD the lease is held by another holder"));
	rem = lease_remaining_ms(s);
	assert_true(rem > 4000 && rem <= 5050);
	s = CMD(c, l, "LEASE.INFO", "a");
	assert_true(strncmp(s, "*4\r\n:1\r\n:1\r\n:5000\r\n:", 20) == 0);
	rem = lease_remaining_ms(s);
	assert_true(rem > 4000 && rem <= 5050);
	/* renew and release need the current token */
	assert_string_equal(CMD(c, f, "LEASE.RENEW", "a", "1"), "*2\r\n:1\r\n:5000\r\n");
	assert_string_equal(CMD(c, f, "LEASE.RENEW", "a", "2"),
			    "-LEASESTALE the token is not the lease's current token\r\n");
	assert_string_equal(CMD(c, l, "LEASE.RELEASE", "a", "7"),
			    "-LEASESTALE the token is not the lease's current token\r\n");
	assert_string_equal(CMD(c, (l + 2) % N, "LEASE.RELEASE", "a", "1"), "+OK\r\n");
	assert_string_equal(CMD(c, f, "LEASE.INFO", "a"), "*4\r\n:0\r\n:1\r\n:0\r\n:-1\r\n");
	/* the next holder gets a higher token (fencing) */
	t0 = now_ms();
	assert_string_equal(CMD(c, f, "LEASE.ACQUIRE", "a", "400"), "*2\r\n:2\r\n:400\r\n");
	/* expiry: not before ttl, and soon after ttl (1 + rho) on the leader's clock */
	pump_ms(c, 200);
	if (now_ms() - t0 < 390) /* the machine may stall: only check what can be claimed */
		assert_non_null(strstr(CMD(c, l, "LEASE.INFO", "a"), "*4\r\n:1\r\n:2\r\n"));
	waited = wait_lease_free(c, l, "a", 3000) - t0;
	assert_true(waited >= 300); /* a poll sent 100 ms before the end may see it free */
	assert_true(waited < 3000);
	assert_true(status_u64(c, l, "client_leases_expired") >= 1);
	assert_string_equal(CMD(c, f, "LEASE.RENEW", "a", "2"),
			    "-LEASESTALE the token is not the lease's current token\r\n");
	assert_string_equal(CMD(c, (l + 2) % N, "LEASE.ACQUIRE", "a", "400"),
			    "*2\r\n:3\r\n:400\r\n");
	/* another name has its own tokens */
	assert_string_equal(CMD(c, l, "LEASE.ACQUIRE", "b", "400"), "*2\r\n:1\r\n:400\r\n");
	assert_string_equal(CMD(c, l, "LEASE.ACQUIRE", "b", "0"),
			    "-ERR ttl_ms must be an integer in 1..86400000\r\n");

	/* the leader lease: reads at the leader are served from it */
	assert_string_equal(CMD(c, l, "SET", "k", "v"), "+OK\r\n");
	pump_ms(c, 100);
	for (int k = 0; k < 5; k++)
		assert_string_equal(CMD(c, l, "GET", "k"), "$1\r\nv\r\n");
	assert_int_equal(status_u64(c, l, "lease_held"), 1);
	assert_true(status_u64(c, l, "lease_reads") >= 1);
	assert_int_equal(status_u64(c, f, "lease_held"), 0);
	assert_true(status_field(c, l, "clock_state", v, sizeof(v)));
	assert_true(strcmp(v, "ok") == 0 || strcmp(v, "tainted") == 0);
	assert_true(status_field(c, l, "clock_last_taint", v, sizeof(v)));
	assert_true(status_field(c, l, "clock_verify", v, sizeof(v)));
	assert_string_equal(v, "monotonic");
	s = CMD(c, f, "INFO");
	assert_non_null(strstr(s, "\r\nlease_reads:"));
	assert_non_null(strstr(s, "\r\nclock_taints:"));
	for (int i = 0; i < N; i++)
		assert_false(c->nodes[i].halted);
	cluster_free(c);
}

/* A lease read is confirmed by replica_flush with a clock reading taken after it ran: held
 * until the flush, answered at the flush while the lease lasts, and sent to the read index if
 * the lease ended in between (here: no heartbeats for longer than T_lease). */
static void test_lease_read_confirmed_at_flush(void **state)
{
	const struct cluster_opts o = {
		.dir_prefix = "teems-replica",
		.pump_sleep_us = 500,
		.t_lease = "200ms",
	};
	struct cluster *c = cluster_new_opts(&o);
	struct resp_arg argv[2] = {{(const uint8_t *)"GET", 3, 0}, {(const uint8_t *)"k", 1, 0}};
	uint64_t req, fallbacks;
	int l;
	(void)state;

	l = wait_leader(c, 10000);
	assert_string_equal(CMD(c, l, "SET", "k", "v"), "+OK\r\n");
	pump_ms(c, 200);
	assert_int_equal(status_u64(c, l, "lease_held"), 1);
	fallbacks = status_u64(c, l, "lease_read_fallbacks");

	/* held until the flush, then answered from the lease */
	req = c->next_req++;
	replica_client(c->nodes[l].r, 1, req, argv, 2, 2);
	assert_null(find_reply(c, req));
	replica_flush(c->nodes[l].r);
	assert_non_null(find_reply(c, req));
	assert_string_equal(wait_reply(c, req, 1000), "$1\r\nv\r\n");

	/* the lease ends between the read and the flush: not answered at the flush, then
	 * answered through the read index */
	req = c->next_req++;
	replica_client(c->nodes[l].r, 1, req, argv, 2, 2);
	assert_null(find_reply(c, req));
	usleep(300 * 1000); /* T_lease = 200 ms, and no heartbeat is delivered */
	replica_flush(c->nodes[l].r);
	assert_null(find_reply(c, req));
	assert_int_equal(status_u64(c, l, "lease_read_fallbacks"), fallbacks + 1);
	assert_string_equal(wait_reply(c, req, 5000), "$1\r\nv\r\n");
	cluster_free(c);
}

/* A new leader honours a lease granted under the previous one: it times every held lease from
 * its taking office, so the lease stays held until at least its ttl after it was granted. */
static void test_client_lease_leader_change(void **state)
{
	struct cluster *c = cluster_new();
	uint64_t t0, t_free;
	const char *s;
	int l, l2;

	(void)state;
	l = wait_leader(c, 5000);
	t0 = now_ms();
	assert_string_equal(CMD(c, l, "LEASE.ACQUIRE", "lock", "2500"), "*2\r\n:1\r\n:2500\r\n");
	node_close(c, l);
	l2 = wait_leader(c, 5000);
	assert_int_not_equal(l2, l);
	/* still held under the new leader, which names its own remaining time */
	s = CMD(c, l2, "LEASE.ACQUIRE", "lock", "100");
	if (now_ms() - t0 < 2500) {
		assert_non_null(strstr(s, "-LEASEHELD"));
		assert_true(lease_remaining_ms(s) > 0);
	}
	/* freed by the new leader's EXPIRE, never before ttl after the grant (t0 is before the
	 * grant; polls are about 10 ms apart) */
	t_free = wait_lease_free(c, l2, "lock", 8000);
	assert_true(t_free + 50 >= t0 + 2500);
	assert_string_equal(CMD(c, l2, "LEASE.ACQUIRE", "lock", "100"), "*2\r\n:2\r\n:100\r\n");
	assert_true(status_u64(c, l2, "client_leases_expired") >= 1);
	cluster_free(c);
}

/* Three groups, each its own ctest entry (tests/unit/daemon.cmake), so each stays short:
 * `test_replica cluster|faults|restart`; no argument runs all. */
int main(int argc, char **argv)
{
	const struct CMUnitTest cluster[] = {
		cmocka_unit_test(test_write_read_forward),
		cmocka_unit_test(test_bad_frames),
		cmocka_unit_test(test_forged_register),
		cmocka_unit_test(test_sync_policies),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_open_alloc_failures),
		cmocka_unit_test(test_acl),
		cmocka_unit_test(test_client_leases),
	};
	const struct CMUnitTest faults[] = {
		cmocka_unit_test(test_restart_follower),
		cmocka_unit_test(test_leader_killed),
		cmocka_unit_test(test_no_quorum),
		cmocka_unit_test(test_client_lease_leader_change),
		cmocka_unit_test(test_lease_read_confirmed_at_flush),
	};
	const struct CMUnitTest restart[] = {
		cmocka_unit_test(test_total_restart),
		cmocka_unit_test(test_lost_wal),
		cmocka_unit_test(test_rollback_to_empty),
	};
	const char *group = argc > 1 ? argv[1] : "all";
	int failed = 0;

	if (strcmp(group, "cluster") == 0 || strcmp(group, "all") == 0)
		failed += cmocka_run_group_tests_name("cluster", cluster, NULL, NULL);
	if (strcmp(group, "faults") == 0 || strcmp(group, "all") == 0)
		failed += cmocka_run_group_tests_name("faults", faults, NULL, NULL);
	if (strcmp(group, "restart") == 0 || strcmp(group, "all") == 0)
		failed += cmocka_run_group_tests_name("restart", restart, NULL, NULL);
	return failed;
}
