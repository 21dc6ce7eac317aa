/* teemsd configuration (src/server/config.h): the defaults are valid; every setting's valid and
 * invalid forms, each refusal naming the setting; the file format; flags over the file; and
 * the rules across settings (N/F/M_R through quorum_init, peer ids, TLS, loopback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "net/resp.h"
#include "server/config.h"
#include "teems/err.h"

static void ok(struct teems_config *c, const char *key, const char *value)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	int rc = config_set(c, key, value, NULL, err);

	if (rc != TEEMS_OK)
		fail_msg("%s = %s refused: %s", key, value, err);
}

/* The value is refused, and the message names the setting and contains `why`. */
static void bad(const char *key, const char *value, const char *why)
{
	struct teems_config c;
	char err[TEEMS_ERRBUF_LEN] = "";
	char want[128];

	config_defaults(&c);
	assert_int_equal(config_set(&c, key, value, NULL, err), TEEMS_ECONFIG);
	snprintf(want, sizeof(want), "config: %s = \"", key);
	if (strncmp(err, want, strlen(want)) != 0 || strstr(err, why) == NULL)
		fail_msg("%s = %s: message \"%s\" lacks \"%s\" or \"%s\"", key, value, err, want,
			 why);
}

static void invalid(struct teems_config *c, const char *why)
{
	char err[TEEMS_ERRBUF_LEN] = "";

	assert_int_equal(config_validate(c, err), TEEMS_ECONFIG);
	if (strstr(err, why) == NULL)
		fail_msg("validate: \"%s\" lacks \"%s\"", err, why);
}

static void valid(struct teems_config *c)
{
	char err[TEEMS_ERRBUF_LEN] = "";

	if (config_validate(c, err) != TEEMS_OK)
		fail_msg("validate refused: %s", err);
}

static void test_defaults(void **state)
{
	struct teems_config c;

	(void)state;
	config_defaults(&c);
	valid(&c);
	assert_int_equal(c.n_peers, 1);
	assert_int_equal(c.quorum.n, 1);
	assert_int_equal(c.replica_id, 0);
	assert_string_equal(c.peers[0].addr.host, "127.0.0.1");
	assert_int_equal(c.peers[0].addr.port, 7000);
	assert_string_equal(c.listen.host, "127.0.0.1");
	assert_int_equal(c.listen.port, 6379);
	assert_int_equal(c.engine, CONFIG_ENGINE_PAXOS);
	assert_int_equal(c.sync, CONFIG_SYNC_RR);
	assert_int_equal(c.recovery, CONFIG_RECOVERY_AUTO);
	assert_int_equal(c.t_op_us, 2000000);
	assert_int_equal(c.t_lease_us, 2000000);
	assert_int_equal(c.t_cfg_us, 5000000);
	assert_true(c.rho == 0.01);
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_MONOTONIC);
	assert_true(c.clock_counter_margin == 0.05);
	assert_string_equal(c.data_dir, "teems-data");
	assert_string_equal(c.tls_cert, "");
	for (size_t i = 0; i < CONFIG_CLUSTER_ID_LEN; i++)
		assert_int_equal(c.cluster_id[i], 0);
	assert_string_equal(c.platform_dir, "");
	assert_true(c.client_tls);
	assert_string_equal(c.service_ca_sealed, "");
	assert_string_equal(c.tls_names, "");
	/* the RESP limits default to the parser's */
	assert_int_equal(c.max_args, RESP_DEFAULT_MAX_ARGS);
	assert_int_equal(c.max_bulk, RESP_DEFAULT_MAX_BULK);
	assert_int_equal(c.max_inline, RESP_DEFAULT_MAX_INLINE);
	assert_int_equal(c.max_request, RESP_DEFAULT_MAX_REQUEST);
	assert_int_equal(c.snapshot_every, 10000);
	assert_int_equal(c.snapshot_bytes, 64ull << 20);
	assert_int_equal(c.wal_segment_bytes, 64ull << 20);
}

static void test_each_setting(void **state)
{
	struct teems_config c;

	(void)state;
	config_defaults(&c);
	ok(&c, "replica_id", "63");
	assert_int_equal(c.replica_id, 63);
	bad("replica_id", "64", "must be 0 to 63");
	bad("replica_id", "-1", "not a non-negative integer");
	bad("replica_id", "1x", "not a non-negative integer");
	bad("replica_id", "", "not a non-negative integer");

	ok(&c, "f", "31");
	assert_int_equal(c.f, 31);
	bad("f", "32", "must be 0 to 31");
	bad("f", "one", "not a non-negative integer");
	ok(&c, "m_r", "2");
	assert_int_equal(c.m_r, 2);
	ok(&c, "m-r", "3"); /* '-' for '_' */
	assert_int_equal(c.m_r, 3);
	bad("m_r", "99", "must be 0 to 31");

	ok(&c, "engine", "abd");
	assert_int_equal(c.engine, CONFIG_ENGINE_ABD);
	ok(&c, "engine", "paxos");
	assert_int_equal(c.engine, CONFIG_ENGINE_PAXOS);
	bad("engine", "raft", "must be paxos or abd");
	bad("engine", "PAXOS", "must be paxos or abd");

	ok(&c, "sync", "always");
	assert_int_equal(c.sync, CONFIG_SYNC_ALWAYS);
	ok(&c, "sync", "none");
	assert_int_equal(c.sync, CONFIG_SYNC_NONE);
	bad("sync", "sometimes", "must be always, rr or none");

	ok(&c, "recovery", "operator");
	assert_int_equal(c.recovery, CONFIG_RECOVERY_OPERATOR);
	bad("recovery", "manual", "must be auto or operator");

	ok(&c, "t_op", "500ms");
	assert_int_equal(c.t_op_us, 500000);
	ok(&c, "t_lease", "2s");
	assert_int_equal(c.t_lease_us, 2000000);
	ok(&c, "t_cfg", "1m");
	assert_int_equal(c.t_cfg_us, 60000000);
	ok(&c, "t_op", "1500us");
	assert_int_equal(c.t_op_us, 1500);
	bad("t_op", "500", "not a duration");
	bad("t_op", "1.5s", "not a duration");
	bad("t_op", "5 s", "not a duration");
	bad("t_op", "10h", "not a duration");
	ok(&c, "t_lease", "0s"); /* off: lease reads take the read index */
	assert_int_equal(c.t_lease_us, 0);
	ok(&c, "t_lease", "2s");
	ok(&c, "t_lease", "0");
	assert_int_equal(c.t_lease_us, 0);
	ok(&c, "t_lease", "2s");
	ok(&c, "t_lease", "off");
	assert_int_equal(c.t_lease_us, 0);
	bad("t_lease", "00", "not a duration");
	bad("t_op", "0", "not a duration");
	bad("t_lease", "999us", "must be 0 (off) or 1ms to 60m");
	bad("t_lease", "61m", "must be 0 (off) or 1ms to 60m");
	bad("t_op", "0s", "must be 1ms to 60m");
	bad("t_cfg", "999us", "must be 1ms to 60m");
	bad("t_cfg", "61m", "must be 1ms to 60m");
	bad("t_cfg", "99999999999999999999s", "not a duration");

	ok(&c, "rho", "0.25");
	assert_true(c.rho == 0.25);
	ok(&c, "rho", "1e-3");
	bad("rho", "0", "must be in (0, 0.5)");
	bad("rho", "0.5", "must be in (0, 0.5)");
	bad("rho", "-0.1", "must be in (0, 0.5)");
	bad("rho", "nan", "must be in (0, 0.5)");
	bad("rho", "0.1x", "not a number");
	bad("rho", "", "not a number");

	ok(&c, "clock_verify", "counter");
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_COUNTER);
	ok(&c, "clock_verify", "monotonic");
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_MONOTONIC);
	ok(&c, "clock.verify", "counter"); /* issue 6's spelling */
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_COUNTER);
	ok(&c, "clock-verify", "monotonic");
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_MONOTONIC);
	bad("clock_verify", "tsc", "must be monotonic or counter");
	bad("clock_verify", "Counter", "must be monotonic or counter");
	bad("clock_verify", "", "must be monotonic or counter");
	/* the message names the setting by its canonical name, whatever the spelling */
	{
		char err[TEEMS_ERRBUF_LEN] = "";

		assert_int_equal(config_set(&c, "clock.verify", "spin", "--clock.verify", err),
				 TEEMS_ECONFIG);
		assert_string_equal(err, "config: --clock.verify: clock_verify = \"spin\": must be "
					 "monotonic or counter");
		assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_MONOTONIC); /* unchanged */
	}

	ok(&c, "clock_counter_margin", "0.25");
	assert_true(c.clock_counter_margin == 0.25);
	ok(&c, "clock.counter_margin", "0.999");
	bad("clock_counter_margin", "0", "must be in (0, 1)");
	bad("clock_counter_margin", "1", "must be in (0, 1)");
	bad("clock_counter_margin", "-0.5", "must be in (0, 1)");
	bad("clock_counter_margin", "inf", "must be in (0, 1)");
	bad("clock_counter_margin", "5%", "not a number");

	ok(&c, "data_dir", "/var/lib/teems");
	assert_string_equal(c.data_dir, "/var/lib/teems");
	ok(&c, "operator_key", "/etc/teems/op.pem");
	ok(&c, "tls_cert", "c.pem");
	ok(&c, "tls_key", "k.pem");
	ok(&c, "tls_ca", "ca.pem");
	{
		char longpath[CONFIG_MAX_PATH + 1];

		memset(longpath, 'p', sizeof(longpath) - 1);
		longpath[sizeof(longpath) - 1] = '\0';
		bad("data_dir", longpath, "path too long");
	}

	ok(&c, "listen", "[::1]:6380");
	assert_string_equal(c.listen.host, "::1");
	assert_int_equal(c.listen.port, 6380);
	ok(&c, "listen", "localhost:1");
	bad("listen", "localhost", "expected host:port");
	bad("listen", "localhost:0", "port must be 1 to 65535");
	bad("listen", "localhost:65536", "port must be 1 to 65535");
	bad("listen", ":6379", "empty host");
	bad("listen", "::1:6379", "needs brackets");
	bad("listen", "[::1]6379", "expected [address]:port");
	bad("listen", "a b:1", "bad character in host");

	ok(&c, "max_bulk", "1MiB");
	assert_int_equal(c.max_bulk, 1 << 20);
	ok(&c, "max_bulk", "4096");
	assert_int_equal(c.max_bulk, 4096);
	ok(&c, "max_inline", "8k");
	assert_int_equal(c.max_inline, 8192);
	ok(&c, "max_request", "1GiB");
	ok(&c, "max_args", "10");
	bad("max_bulk", "513MiB", "must be 1KiB to 512MiB");
	bad("max_bulk", "1TB", "not a size");
	bad("max_inline", "100", "must be 1KiB to 64MiB");
	bad("max_args", "0", "must be 1 to 1048576");
	bad("max_request", "2GiB", "must be 1KiB to 1024MiB");

	ok(&c, "snapshot_every", "20");
	assert_int_equal(c.snapshot_every, 20);
	ok(&c, "snapshot-every", "0"); /* off: only the byte trigger */
	assert_int_equal(c.snapshot_every, 0);
	bad("snapshot_every", "1099511627777", "must be 0 to 1099511627776");
	bad("snapshot_every", "10k", "not a non-negative integer");
	bad("snapshot_every", "-1", "not a non-negative integer");
	ok(&c, "snapshot_bytes", "1GiB");
	assert_int_equal(c.snapshot_bytes, 1ull << 30);
	ok(&c, "snapshot_bytes", "0");
	assert_int_equal(c.snapshot_bytes, 0);
	bad("snapshot_bytes", "1025GiB", "must be 0KiB to 1048576MiB");
	bad("snapshot_bytes", "64 apples", "not a size");
	ok(&c, "wal_segment_bytes", "4KiB");
	assert_int_equal(c.wal_segment_bytes, 4096);
	bad("wal_segment_bytes", "4095", "must be 4KiB to 1024MiB");
	bad("wal_segment_bytes", "2GiB", "must be 4KiB to 1024MiB");

	{
		char err[TEEMS_ERRBUF_LEN];

		assert_int_equal(config_set(&c, "color", "blue", "--color", err), TEEMS_ECONFIG);
		assert_string_equal(err, "config: --color: unknown setting \"color\"");
	}
}

static void test_peers(void **state)
{
	struct teems_config c;

	(void)state;
	config_defaults(&c);
	ok(&c, "peers", "0@127.0.0.1:7000, 1@127.0.0.1:7001,2@[::1]:7002");
	assert_int_equal(c.n_peers, 3);
	assert_int_equal(c.peers[2].id, 2);
	assert_string_equal(c.peers[2].addr.host, "::1");
	assert_int_equal(c.peers[1].addr.port, 7001);
	ok(&c, "f", "1");
	valid(&c);
	assert_int_equal(c.quorum.n, 3);

	bad("peers", "", "empty peer entry");
	bad("peers", "0@127.0.0.1:7000,", "empty peer entry");
	bad("peers", "127.0.0.1:7000", "expected id@host:port");
	bad("peers", "x@127.0.0.1:7000", "expected id@host:port");
	bad("peers", "64@127.0.0.1:7000", "id 0 to 63");
	bad("peers", "0@127.0.0.1", "expected host:port");
	bad("peers", "0@h:1,0@h:2", "peer id 0 appears twice");
	{
		char many[64 * 24 + 32] = "";

		for (int i = 0; i < 65; i++)
			snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d@h:%d",
				 i ? "," : "", i % 64, 1000 + i);
		bad("peers", many, "more than 64 peers");
	}
}

static void test_validate(void **state)
{
	struct teems_config c;

	(void)state;
	/* N/F/M_R: quorum_init's rule, named settings */
	config_defaults(&c);
	ok(&c, "peers", "0@127.0.0.1:7000,1@127.0.0.1:7001,2@127.0.0.1:7002");
	invalid(&c, "f = 0, m_r = 0, 3 peers: N=3 does not fit");
	ok(&c, "f", "1");
	valid(&c);
	ok(&c, "m_r", "1");
	valid(&c); /* N = max(1,1) + 1 + 1 = 3 */
	ok(&c, "m_r", "2");
	invalid(&c, "f = 1, m_r = 2, 3 peers");

	/* ids exactly 0..N-1 */
	config_defaults(&c);
	ok(&c, "peers", "0@127.0.0.1:7000,1@127.0.0.1:7001,5@127.0.0.1:7002");
	ok(&c, "f", "1");
	invalid(&c, "config: peers: id 5 with 3 peers: ids must be 0 to 2");

	/* distinct addresses */
	ok(&c, "peers", "0@127.0.0.1:7000,1@127.0.0.1:7001,2@127.0.0.1:7000");
	invalid(&c, "is the address of both 0 and 2");

	/* replica among the peers */
	config_defaults(&c);
	ok(&c, "replica_id", "1");
	invalid(&c, "config: replica_id = 1: not among the peers' ids");

	/* listen differs from the own peer address */
	config_defaults(&c);
	ok(&c, "listen", "127.0.0.1:7000");
	invalid(&c, "config: listen = \"127.0.0.1:7000\": also this replica's peer address");

	/* TLS files: all or none */
	config_defaults(&c);
	ok(&c, "tls_cert", "c.pem");
	invalid(&c, "config: tls_key: tls_cert, tls_key and tls_ca go together");
	ok(&c, "tls_key", "k.pem");
	invalid(&c, "config: tls_ca:");
	ok(&c, "tls_ca", "ca.pem");
	ok(&c, "listen", "0.0.0.0:6379");
	ok(&c, "peers", "0@10.0.0.1:7000");
	valid(&c);
	/* peers are RA-TLS whatever their address; clients are TLS by default */
	config_defaults(&c);
	ok(&c, "listen", "0.0.0.0:6379");
	ok(&c, "peers", "0@db1.example:7000");
	valid(&c);
	/* plaintext clients only on loopback */
	ok(&c, "client_tls", "off");
	invalid(&c, "config: client_tls = \"off\": listen = \"0.0.0.0:6379\" is not loopback");
	ok(&c, "listen", "127.0.0.1:6379");
	valid(&c);

	/* recovery = operator needs the key */
	config_defaults(&c);
	ok(&c, "recovery", "operator");
	invalid(&c, "config: recovery = \"operator\": needs operator_key");
	ok(&c, "operator_key", "op.pem");
	valid(&c);

	/* limits consistent */
	config_defaults(&c);
	ok(&c, "max_request", "1MiB");
	invalid(&c, "config: max_bulk = 67108864: larger than max_request = 1048576");

	config_defaults(&c);
	ok(&c, "data_dir", "");
	invalid(&c, "config: data_dir = \"\": must be set");
}

/* The settings of the replica engine and the TLS front end (contracts item 4). */
static void test_cluster_settings(void **state)
{
	struct teems_config c;
	char out[CONFIG_MAX_PATH + 32];

	(void)state;
	config_defaults(&c);
	ok(&c, "cluster_id", "00112233445566778899AaBbCcDdEeFf");
	assert_int_equal(c.cluster_id[0], 0x00);
	assert_int_equal(c.cluster_id[1], 0x11);
	assert_int_equal(c.cluster_id[10], 0xaa);
	assert_int_equal(c.cluster_id[15], 0xff);
	bad("cluster_id", "0011", "cluster_id = \"0011\": must be 32 hex digits (16 bytes)");
	bad("cluster_id", "00112233445566778899aabbccddeeff00", "must be 32 hex digits");
	bad("cluster_id", "0011223344556677889900aabbccddeg", "must be 32 hex digits");
	bad("cluster_id", "", "must be 32 hex digits");

	ok(&c, "platform_dir", "/tmp/teems-platform");
	assert_string_equal(c.platform_dir, "/tmp/teems-platform");

	ok(&c, "client_tls", "off");
	assert_false(c.client_tls);
	ok(&c, "client-tls", "on");
	assert_true(c.client_tls);
	bad("client_tls", "yes", "client_tls = \"yes\": must be on or off");
	bad("client_tls", "ON", "must be on or off");

	/* defaults derived from other settings */
	ok(&c, "data_dir", "/var/lib/teems");
	assert_true(config_service_ca_sealed(&c, out, sizeof(out)));
	assert_string_equal(out, "/var/lib/teems/service-ca.sealed");
	ok(&c, "service_ca_sealed", "/etc/teems/ca.sealed");
	assert_true(config_service_ca_sealed(&c, out, sizeof(out)));
	assert_string_equal(out, "/etc/teems/ca.sealed");
	assert_false(config_service_ca_sealed(&c, out, 5));

	assert_true(config_tls_names(&c, out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1,localhost");
	ok(&c, "listen", "db1.example:6379");
	assert_true(config_tls_names(&c, out, sizeof(out)));
	assert_string_equal(out, "db1.example,127.0.0.1,localhost");
	ok(&c, "tls_names", "db.example, *.db.example,10.0.0.1,::1");
	assert_true(config_tls_names(&c, out, sizeof(out)));
	assert_string_equal(out, "db.example, *.db.example,10.0.0.1,::1");
	bad("tls_names", "a,,b", "tls_names = \"a,,b\": empty name in the list");
	bad("tls_names", "a b", "name \"a b\": only letters");
	bad("tls_names", "*", "only letters");
	bad("tls_names", "db.*.example", "only letters");
}

static void test_loopback(void **state)
{
	(void)state;
	assert_true(config_is_loopback("127.0.0.1"));
	assert_true(config_is_loopback("127.1.2.3"));
	assert_true(config_is_loopback("localhost"));
	assert_true(config_is_loopback("::1"));
	assert_false(config_is_loopback("127.0.0"));
	assert_false(config_is_loopback("127.0.0.256"));
	assert_false(config_is_loopback("127.0.0.1.evil.com"));
	assert_false(config_is_loopback("1270.0.0.1"));
	assert_false(config_is_loopback("0.0.0.0"));
	assert_false(config_is_loopback("::"));
}

static void test_units(void **state)
{
	uint64_t v;

	(void)state;
	assert_true(config_parse_duration("0ms", &v) && v == 0);
	assert_true(config_parse_duration("3m", &v) && v == 180000000);
	assert_false(config_parse_duration("ms", &v));
	assert_false(config_parse_duration("-1s", &v));
	assert_false(config_parse_duration("18446744073709551615s", &v));
	assert_true(config_parse_size("2GiB", &v) && v == 2ull << 30);
	assert_true(config_parse_size("2g", &v) && v == 2ull << 30);
	assert_true(config_parse_size("7B", &v) && v == 7);
	assert_false(config_parse_size("", &v));
	assert_false(config_parse_size("1.5MiB", &v));
	assert_false(config_parse_size("18446744073709551615KiB", &v));
}

static void test_file(void **state)
{
	struct teems_config c;
	char err[TEEMS_ERRBUF_LEN];
	const char text[] = "# teemsd.conf\n"
			    "  ; another comment\n"
			    "\n"
			    "replica_id = 2\n"
			    "peers = 0@127.0.0.1:7000, 1@127.0.0.1:7001, 2@127.0.0.1:7002\r\n"
			    "f=1\n"
			    "m_r = 1\n"
			    "data_dir = \"/var/lib/teems data\"\n"
			    "sync = always\n"
			    "clock.verify = counter\n"
			    "t_op = 750ms";

	(void)state;
	config_defaults(&c);
	assert_int_equal(config_parse_text(&c, text, sizeof(text) - 1, "teemsd.conf", err),
			 TEEMS_OK);
	valid(&c);
	assert_int_equal(c.replica_id, 2);
	assert_int_equal(c.n_peers, 3);
	assert_string_equal(c.data_dir, "/var/lib/teems data");
	assert_int_equal(c.sync, CONFIG_SYNC_ALWAYS);
	assert_int_equal(c.t_op_us, 750000);
	assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_COUNTER);

#define FILE_ERR(t, msg)                                                                 \
	do {                                                                             \
		config_defaults(&c);                                                     \
		assert_int_equal(config_parse_text(&c, t, sizeof(t) - 1, "x.conf", err), \
				 TEEMS_ECONFIG);                                         \
		assert_string_equal(err, msg);                                           \
	} while (0)
	FILE_ERR("f = 1\nsync = sometimes\n",
		 "config: x.conf:2: sync = \"sometimes\": must be always, rr or none");
	FILE_ERR("\n\nbogus = 1\n", "config: x.conf:3: unknown setting \"bogus\"");
	FILE_ERR("f = 1\nf = 2\n", "config: x.conf:2: f is set twice in this file");
	FILE_ERR("clock_verify = counter\nclock.verify = monotonic\n",
		 "config: x.conf:2: clock_verify is set twice in this file");
	FILE_ERR("clock_verify = sometimes\n",
		 "config: x.conf:1: clock_verify = \"sometimes\": must be monotonic or counter");
	FILE_ERR("[peer 0]\n",
		 "config: x.conf:1: sections are not used; write key = value (peers = "
		 "id@host:port, ...)");
	FILE_ERR("just words\n", "config: x.conf:1: expected key = value, got \"just words\"");
	FILE_ERR("f = 1\0\n", "config: x.conf:1: NUL byte in line");
	FILE_ERR(" = 3\n", "config: x.conf:1: unknown setting \"\"");
#undef FILE_ERR
}

static void test_load_file_and_args(void **state)
{
	struct teems_config c;
	char err[TEEMS_ERRBUF_LEN];
	char path[] = "/tmp/teems_test_config_XXXXXX";
	int fd = mkstemp(path);
	const char text[] = "peers = 0@127.0.0.1:7000,1@127.0.0.1:7001,2@127.0.0.1:7002\n"
			    "f = 1\nsync = none\n";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);

	config_defaults(&c);
	assert_int_equal(config_load_file(&c, path, err), TEEMS_OK);
	assert_int_equal(c.sync, CONFIG_SYNC_NONE);

	/* flags win over the file wherever --config appears */
	{
		char *argv[] = {
			"teemsd", "--sync=always",  "--replica-id", "1", "--config", path, "--t_op",
			"3s",	  "--clock_verify", "counter"};

		config_defaults(&c);
		assert_int_equal(config_parse_args(&c, 10, argv, err), TEEMS_OK);
		assert_int_equal(c.clock_verify, CONFIG_CLOCK_VERIFY_COUNTER);
		valid(&c);
		assert_int_equal(c.sync, CONFIG_SYNC_ALWAYS);
		assert_int_equal(c.replica_id, 1);
		assert_int_equal(c.t_op_us, 3000000);
		assert_int_equal(c.n_peers, 3);
	}
	{
		char *argv[] = {"teemsd", "--sync", "sometimes"};

		config_defaults(&c);
		assert_int_equal(config_parse_args(&c, 3, argv, err), TEEMS_ECONFIG);
		assert_string_equal(
			err, "config: --sync: sync = \"sometimes\": must be always, rr or none");
	}
	{
		char *argv[] = {"teemsd", "--clock-verify", "fast"};

		config_defaults(&c);
		assert_int_equal(config_parse_args(&c, 3, argv, err), TEEMS_ECONFIG);
		assert_string_equal(err, "config: --clock-verify: clock_verify = \"fast\": must be "
					 "monotonic or counter");
	}
	{
		char *argv[] = {"teemsd", "--f"};

		assert_int_equal(config_parse_args(&c, 2, argv, err), TEEMS_ECONFIG);
		assert_string_equal(err, "config: --f needs a value");
	}
	{
		char *argv[] = {"teemsd", "f=1"};

		assert_int_equal(config_parse_args(&c, 2, argv, err), TEEMS_ECONFIG);
		assert_non_null(strstr(err, "unexpected argument \"f=1\""));
	}
	{
		char *argv[] = {"teemsd", "--config", "/nonexistent/teemsd.conf"};

		assert_int_equal(config_parse_args(&c, 3, argv, err), TEEMS_EIO);
		assert_string_equal(err,
				    "config: /nonexistent/teemsd.conf: No such file or directory");
	}
	/* allocation failure while reading the file */
	config_defaults(&c);
	teems_alloc_fault(0, 1);
	assert_int_equal(config_load_file(&c, path, err), TEEMS_ENOMEM);
	teems_alloc_fault(-1, 0);
	unlink(path);
}

static void test_usage(void **state)
{
	FILE *f = tmpfile();
	char buf[8192];
	size_t n;

	(void)state;
	assert_non_null(f);
	config_usage(f);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_non_null(strstr(buf, "--sync"));
	assert_non_null(strstr(buf, "--config"));
	assert_non_null(strstr(buf, "(default: rr)"));
	assert_non_null(strstr(buf, "--clock_verify"));
	assert_non_null(strstr(buf, "(default: monotonic)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_each_setting),
		cmocka_unit_test(test_peers),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_cluster_settings),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_load_file_and_args),
		cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
