/* src/client/conn.c against a real redis-server on loopback (plaintext and TLS 1.3 with
 * certificates made here with the openssl CLI), and against small fake servers in threads:
 * refused, a listener that never answers (timeouts), and replies that are not RESP.
 * Skipped when redis-server or openssl is missing. Every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/conn.h"
#include "common/alloc.h"
#include "teems/err.h"

static char tmpdir[256];
static pid_t redis_pid = -1;
static uint16_t redis_port, redis_tls_port;
static bool have_redis;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A loopback socket bound to a kernel-chosen port; listening if asked. */
static int bound_socket(uint16_t *port, bool listening)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	if (listening)
		assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static uint16_t free_port(void)
{
	uint16_t port;

	close(bound_socket(&port, false));
	return port;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* ca.pem/ca.key, server.pem/server.key for 127.0.0.1 and localhost, and other-ca.pem. */
static int make_certs(void)
{
	const char *d = tmpdir;

	if (run("cd '%s' && "
		"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
		"-subj /CN=test-ca -keyout ca.key -out ca.pem >/dev/null 2>&1 && "
		"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
		"-subj /CN=other-ca -keyout other-ca.key -out other-ca.pem >/dev/null 2>&1 && "
		"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		"-subj /CN=server -keyout server.key -out server.csr >/dev/null 2>&1 && "
		"printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
		"openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		"-days 2 -extfile san.ext -out server.pem >/dev/null 2>&1",
		d) != 0)
		return -1;
	return 0;
}

static bool port_answers(uint16_t port)
{
	struct conn_options o = {.host = "127.0.0.1", .port = port, .connect_timeout_ms = 200};
	struct conn *c;

	if (conn_open(&o, &c, NULL) != 0)
		return false;
	conn_close(c);
	return true;
}

static int start_redis(void)
{
	char port[16], tls_port[16], cert[300], key[300], ca[300];

	redis_port = free_port();
	redis_tls_port = free_port();
	snprintf(port, sizeof(port), "%u", redis_port);
	snprintf(tls_port, sizeof(tls_port), "%u", redis_tls_port);
	snprintf(cert, sizeof(cert), "%s/server.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/server.key", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", tmpdir);
	redis_pid = fork();
	if (redis_pid < 0)
		return -1;
	if (redis_pid == 0) {
		char log[300];
		int fd;

		snprintf(log, sizeof(log), "%s/redis.log", tmpdir);
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port,
		       "--tls-port", tls_port, "--tls-cert-file", cert, "--tls-key-file", key,
		       "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--dir", tmpdir,
		       "--save", "", "--appendonly", "no", "--protected-mode", "no", (char *)NULL);
		_exit(127);
	}
	for (int64_t deadline = mono_ms() + 10000; mono_ms() < deadline;) {
		if (port_answers(redis_port) && port_answers(redis_tls_port))
			return 0;
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
			redis_pid = -1;
			return -1;
		}
		usleep(50 * 1000);
	}
	return -1;
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_DFL); /* conn must not die of it even so */
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/teems-conn-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	if (run("command -v redis-server >/dev/null && command -v openssl >/dev/null") != 0) {
		fprintf(stderr, "redis-server or openssl missing: redis tests skipped\n");
		return 0;
	}
	if (make_certs() != 0) {
		fprintf(stderr, "cannot make certificates\n");
		return -1;
	}
	if (start_redis() != 0) {
		fprintf(stderr, "redis-server did not start; see %s/redis.log\n", tmpdir);
		run("cat '%s/redis.log' >&2", tmpdir);
		return -1;
	}
	have_redis = true;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	return run("rm -rf '%s'", tmpdir) == 0 ? 0 : -1;
}

static void path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

static struct conn *open_ok(const struct conn_options *o)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct conn *c = NULL;
	int rv = conn_open(o, &c, err);

	if (rv != 0)
		fail_msg("conn_open: %d %s", rv, err);
	return c;
}

static struct conn_reply *cmd_ok(struct conn *c, const char *a0, const char *a1, const char *a2)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct conn_reply *r = NULL;
	int rv = conn_commandv(c, &r, err, a0, a1, a2, NULL);

	if (rv != 0)
		fail_msg("%s: %d %s", a0, rv, err);
	return r;
}

/* The same round trips over either transport. */
static void exercise(struct conn *c)
{
	static const char bin[] = {'a', '\0', '\r', '\n', 'b'};
	const char *argv[3] = {"SET", "bin", bin};
	size_t len[3] = {3, 3, sizeof(bin)};
	char err[TEEMS_ERRBUF_LEN];
	struct conn_reply *r;

	r = cmd_ok(c, "PING", NULL, NULL);
	assert_int_equal(r->type, CONN_REPLY_STATUS);
	assert_string_equal(r->str, "PONG");
	conn_reply_free(r);

	assert_int_equal(conn_command(c, 3, argv, len, &r, err), 0);
	assert_int_equal(r->type, CONN_REPLY_STATUS);
	conn_reply_free(r);
	r = cmd_ok(c, "GET", "bin", NULL);
	assert_int_equal(r->type, CONN_REPLY_STRING);
	assert_int_equal(r->len, sizeof(bin));
	assert_memory_equal(r->str, bin, sizeof(bin));
	conn_reply_free(r);

	/* 3 MiB each way: many partial writes and reads, many TLS records. */
	{
		size_t big_len = (size_t)3 << 20;
		char *big = malloc(big_len);
		const char *bargv[3] = {"SET", "big", big};
		size_t blen[3] = {3, 3, big_len};

		assert_non_null(big);
		for (size_t i = 0; i < big_len; i++)
			big[i] = (char)('a' + i % 26);
		assert_int_equal(conn_command(c, 3, bargv, blen, &r, err), 0);
		assert_int_equal(r->type, CONN_REPLY_STATUS);
		conn_reply_free(r);
		r = cmd_ok(c, "GET", "big", NULL);
		assert_int_equal(r->type, CONN_REPLY_STRING);
		assert_int_equal(r->len, big_len);
		assert_memory_equal(r->str, big, big_len);
		conn_reply_free(r);
		free(big);
	}

	r = cmd_ok(c, "GET", "no-such-key", NULL);
	assert_int_equal(r->type, CONN_REPLY_NIL);
	conn_reply_free(r);

	conn_reply_free(cmd_ok(c, "DEL", "n", NULL));
	r = cmd_ok(c, "INCR", "n", NULL);
	assert_int_equal(r->type, CONN_REPLY_INTEGER);
	assert_int_equal(r->integer, 1);
	conn_reply_free(r);

	r = cmd_ok(c, "MGET", "n", "no-such-key");
	assert_int_equal(r->type, CONN_REPLY_ARRAY);
	assert_int_equal(r->elements, 2);
	assert_int_equal(r->element[0]->type, CONN_REPLY_STRING);
	assert_string_equal(r->element[0]->str, "1");
	assert_int_equal(r->element[1]->type, CONN_REPLY_NIL);
	conn_reply_free(r);

	r = cmd_ok(c, "NOSUCHCOMMAND", "x", NULL);
	assert_int_equal(r->type, CONN_REPLY_ERROR);
	assert_non_null(strstr(r->str, "ERR unknown command"));
	conn_reply_free(r);

	/* Still usable after an error reply; INFO parses with conn_info_field. */
	r = cmd_ok(c, "INFO", "server", NULL);
	assert_int_equal(r->type, CONN_REPLY_STRING);
	{
		char v[64];

		assert_true(conn_info_field(r->str, r->len, "redis_version", v, sizeof(v)));
		assert_true(strlen(v) > 0);
		assert_false(conn_info_field(r->str, r->len, "no_such_field", v, sizeof(v)));
	}
	conn_reply_free(r);

	/* After QUIT the server closes: the next command fails as "closed", on both
	 * transports (TLS: with or without close_notify, whichever the server sends). */
	r = cmd_ok(c, "QUIT", NULL, NULL);
	assert_int_equal(r->type, CONN_REPLY_STATUS);
	conn_reply_free(r);
	{
		int rv = conn_commandv(c, &r, err, "PING", NULL);

		if (rv != CONN_ECLOSED)
			fail_msg("after QUIT: %d %s", rv, err);
		assert_null(r);
	}
}

static void test_plaintext(void **state)
{
	struct conn_options o = {.host = "127.0.0.1"};
	struct conn *c;

	(void)state;
	if (!have_redis)
		skip();
	o.port = redis_port;
	c = open_ok(&o);
	{
		char want[32];

		snprintf(want, sizeof(want), "127.0.0.1:%u", redis_port);
		assert_string_equal(conn_peer(c), want);
	}
	exercise(c);
	conn_close(c);
}

static void test_tls(void **state)
{
	struct conn_options o = {.host = "127.0.0.1"};
	char ca[300];
	struct conn *c;

	(void)state;
	if (!have_redis)
		skip();
	path(ca, sizeof(ca), "ca.pem");
	o.port = redis_tls_port;
	o.ca_file = ca;
	c = open_ok(&o);
	exercise(c);
	conn_close(c);

	/* By name: the DNS subjectAltName. */
	o.host = "localhost";
	o.tls_name = "localhost";
	c = open_ok(&o);
	conn_reply_free(cmd_ok(c, "PING", NULL, NULL));
	conn_close(c);
}

static void expect_open_fails(const struct conn_options *o, int code, const char *text)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct conn *c = (struct conn *)1;
	int rv = conn_open(o, &c, err);

	if (rv != code)
		fail_msg("expected %d, got %d: %s", code, rv, err);
	assert_null(c);
	if (text != NULL && strstr(err, text) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", text, err);
}

static void test_tls_refused(void **state)
{
	struct conn_options o = {.host = "127.0.0.1"};
	char ca[300], other[300];

	(void)state;
	if (!have_redis)
		skip();
	path(ca, sizeof(ca), "ca.pem");
	path(other, sizeof(other), "other-ca.pem");
	o.port = redis_tls_port;

	o.ca_file = other;
	expect_open_fails(&o, CONN_ETLS, "certificate verify failed");

	o.ca_file = ca;
	o.tls_name = "example.com";
	expect_open_fails(&o, CONN_ETLS, "hostname mismatch");
	o.tls_name = "127.0.0.2";
	expect_open_fails(&o, CONN_ETLS, "IP address mismatch");
	o.tls_name = NULL;

	/* TLS to the plaintext port: Redis reads the ClientHello as the start of an inline
	 * command and waits for its end, so the handshake times out (a server that answered
	 * with RESP would fail the handshake with CONN_ETLS instead: see test_garbage_tls). */
	o.port = redis_port;
	o.connect_timeout_ms = 300;
	expect_open_fails(&o, CONN_ETIMEOUT, "TLS handshake");
	o.connect_timeout_ms = 0;

	/* A CA file that does not exist. */
	o.port = redis_tls_port;
	o.ca_file = "/nonexistent/ca.pem";
	expect_open_fails(&o, TEEMS_EIO, "cannot load CA file");
}

static void test_refused(void **state)
{
	struct conn_options o = {.host = "127.0.0.1"};
	char want[64];

	(void)state;
	o.port = free_port();
	snprintf(want, sizeof(want), "127.0.0.1:%u: Connection refused", o.port);
	expect_open_fails(&o, CONN_EUNREACHABLE, want);
	assert_true(conn_err_is_unavailable(CONN_EUNREACHABLE));

	o.port = 0;
	expect_open_fails(&o, TEEMS_EINVAL, NULL);
	o.port = 1;
	o.host = "no-such-host.invalid";
	expect_open_fails(&o, CONN_EUNREACHABLE, "cannot resolve");
}

/* A listener whose backlog completes the TCP handshake but that never reads or writes. */
static void test_timeouts(void **state)
{
	struct conn_options o = {
		.host = "127.0.0.1", .connect_timeout_ms = 300, .io_timeout_ms = 300};
	char err[TEEMS_ERRBUF_LEN] = "";
	struct conn_reply *r = NULL;
	struct conn *c;
	int64_t t0;
	int lfd;

	(void)state;
	lfd = bound_socket(&o.port, true);

	c = open_ok(&o);
	t0 = mono_ms();
	assert_int_equal(conn_commandv(c, &r, err, "PING", NULL), CONN_ETIMEOUT);
	assert_true(mono_ms() - t0 >= 250 && mono_ms() - t0 < 3000);
	assert_null(r);
	assert_non_null(strstr(err, "timed out"));
	conn_close(c);

	/* TLS: the handshake waits for a ServerHello that never comes. */
	if (have_redis) {
		char ca[300];

		path(ca, sizeof(ca), "ca.pem");
		o.ca_file = ca;
		t0 = mono_ms();
		expect_open_fails(&o, CONN_ETIMEOUT, "TLS handshake");
		assert_true(mono_ms() - t0 < 3000);
	}
	close(lfd);
}

/* A fake server: accepts one connection, reads one request, writes `reply` and closes. */
struct fake {
	int lfd;
	const char *reply;
	size_t reply_len;
	bool hold_open; /* keep the connection open after the reply (until the client closes) */
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd p = {.fd = f->lfd, .events = POLLIN};
	char buf[4096];
	int fd;

	if (poll(&p, 1, 5000) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	p.fd = fd;
	if (poll(&p, 1, 5000) == 1 && read(fd, buf, sizeof(buf)) > 0 && f->reply_len > 0) {
		ssize_t w = write(fd, f->reply, f->reply_len);

		(void)w;
	}
	if (f->hold_open) {
		p.fd = fd;
		while (poll(&p, 1, 5000) == 1 && read(fd, buf, sizeof(buf)) > 0)
			;
	}
	close(fd);
	return NULL;
}

/* Runs PING against a fake server that answers `reply`; returns conn_commandv's result. */
static int against_fake(const char *reply, size_t len, bool hold_open, size_t max_reply,
			struct conn_reply **r, char *err)
{
	struct conn_options o = {
		.host = "127.0.0.1", .io_timeout_ms = 2000, .max_reply = max_reply};
	struct fake f = {.reply = reply, .reply_len = len, .hold_open = hold_open};
	pthread_t th;
	struct conn *c;
	int rv;

	f.lfd = bound_socket(&o.port, true);
	assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
	c = open_ok(&o);
	rv = conn_commandv(c, r, err, "PING", NULL);
	conn_close(c);
	pthread_join(th, NULL);
	close(f.lfd);
	return rv;
}

#define FAKE(s, hold, max, r, err) against_fake(s, sizeof(s) - 1, hold, max, r, err)

static void test_garbage(void **state)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct conn_reply *r = NULL;
	char deep[64] = "";

	(void)state;
	assert_int_equal(FAKE("hello there\r\n", false, 0, &r, err), CONN_EPROTO);
	assert_null(r);
	assert_non_null(strstr(err, "bad reply"));

	/* Cut in the middle of a bulk string. */
	assert_int_equal(FAKE("$5\r\nab", false, 0, &r, err), CONN_ECLOSED);
	assert_null(r);
	/* Closed without a byte. */
	assert_int_equal(FAKE("", false, 0, &r, err), CONN_ECLOSED);
	/* An element count meant to make us allocate gigabytes. */
	assert_int_equal(FAKE("*2000000000\r\n", false, 0, &r, err), CONN_EPROTO);
	assert_int_equal(FAKE("*1\r\n*2000000000\r\n", false, 0, &r, err), CONN_EPROTO);
	/* A bulk string longer than max_reply, announced and then trickled. */
	{
		static char big[8192];

		memcpy(big, "$100000\r\n", 9);
		memset(big + 9, 'x', sizeof(big) - 9);
		assert_int_equal(against_fake(big, sizeof(big), true, 1000, &r, err), CONN_EPROTO);
		assert_non_null(strstr(err, "larger than"));
	}
	/* Deeper nesting than the reader supports. */
	for (int i = 0; i < 12; i++)
		strcat(deep, "*1\r\n");
	strcat(deep, ":1\r\n");
	assert_int_equal(against_fake(deep, strlen(deep), false, 0, &r, err), CONN_EPROTO);
	/* A partial reply then silence: a timeout, not a hang. */
	assert_int_equal(FAKE("*2\r\n:1\r\n", true, 0, &r, err), CONN_ETIMEOUT);

	/* Nested and mixed replies parse into the tree. */
	assert_int_equal(
		FAKE("*3\r\n:-7\r\n*2\r\n$3\r\nabc\r\n$-1\r\n-WRONG x\r\n", false, 0, &r, err), 0);
	assert_int_equal(r->type, CONN_REPLY_ARRAY);
	assert_int_equal(r->elements, 3);
	assert_int_equal(r->element[0]->integer, -7);
	assert_int_equal(r->element[1]->elements, 2);
	assert_string_equal(r->element[1]->element[0]->str, "abc");
	assert_int_equal(r->element[1]->element[1]->type, CONN_REPLY_NIL);
	assert_int_equal(r->element[2]->type, CONN_REPLY_ERROR);
	assert_string_equal(r->element[2]->str, "WRONG x");
	conn_reply_free(r);
}

/* A plaintext server answering the ClientHello with a RESP error: the handshake fails fast. */
static void test_garbage_tls(void **state)
{
	struct conn_options o = {.host = "127.0.0.1", .connect_timeout_ms = 2000};
	static const char reply[] = "-ERR Protocol error: unbalanced quotes in request\r\n";
	struct fake f = {.reply = reply, .reply_len = sizeof(reply) - 1};
	char ca[300];
	pthread_t th;

	(void)state;
	if (!have_redis)
		skip();
	path(ca, sizeof(ca), "ca.pem");
	o.ca_file = ca;
	f.lfd = bound_socket(&o.port, true);
	assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
	expect_open_fails(&o, CONN_ETLS, "TLS failed during the TLS handshake");
	pthread_join(th, NULL);
	close(f.lfd);
}

/* Failing each allocation of a reply parse in turn yields TEEMS_ENOMEM (or success), never a
 * crash or a leak (the sanitizer build checks the latter). */
static void test_alloc_faults(void **state)
{
	static const char reply[] = "*3\r\n:-7\r\n*2\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n";
	struct conn_options o = {.host = "127.0.0.1", .io_timeout_ms = 2000};
	bool succeeded = false;

	(void)state;
	for (long nth = 0; nth < 64 && !succeeded; nth++) {
		struct fake f = {.reply = reply, .reply_len = sizeof(reply) - 1};
		char err[TEEMS_ERRBUF_LEN] = "";
		struct conn_reply *r = NULL;
		pthread_t th;
		struct conn *c;
		int rv;

		f.lfd = bound_socket(&o.port, true);
		assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
		c = open_ok(&o);
		teems_alloc_fault(nth, 1);
		rv = conn_commandv(c, &r, err, "PING", NULL);
		teems_alloc_fault(-1, 0);
		if (rv == 0) {
			assert_int_equal(r->elements, 3);
			succeeded = true;
		} else {
			assert_int_equal(rv, TEEMS_ENOMEM);
			assert_null(r);
		}
		conn_reply_free(r);
		conn_close(c);
		pthread_join(th, NULL);
		close(f.lfd);
	}
	assert_true(succeeded);
}

static void test_info_field(void **state)
{
	static const char info[] = "# Teems\r\nreplica_id:2\r\nrole:leader\r\nrole_x:no\r\n"
				   "empty:\r\nlast:7";
	char v[8];

	(void)state;
	assert_true(conn_info_field(info, sizeof(info) - 1, "role", v, sizeof(v)));
	assert_string_equal(v, "leader");
	assert_true(conn_info_field(info, sizeof(info) - 1, "replica_id", v, sizeof(v)));
	assert_string_equal(v, "2");
	assert_true(conn_info_field(info, sizeof(info) - 1, "empty", v, sizeof(v)));
	assert_string_equal(v, "");
	assert_true(conn_info_field(info, sizeof(info) - 1, "last", v, sizeof(v)));
	assert_string_equal(v, "7");
	assert_false(conn_info_field(info, sizeof(info) - 1, "rol", v, sizeof(v)));
	assert_false(conn_info_field(info, sizeof(info) - 1, "# Teems", v, sizeof(v)));
	/* Truncated to fit. */
	assert_true(conn_info_field("k:0123456789\r\n", 14, "k", v, 4));
	assert_string_equal(v, "012");
	assert_string_equal(conn_strerror(CONN_ETLS), "TLS handshake or verification failed");
	assert_string_equal(conn_strerror(TEEMS_ENOMEM), "out of memory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info_field),   cmocka_unit_test(test_plaintext),
		cmocka_unit_test(test_tls),	     cmocka_unit_test(test_tls_refused),
		cmocka_unit_test(test_refused),	     cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_garbage),	     cmocka_unit_test(test_garbage_tls),
		cmocka_unit_test(test_alloc_faults),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
