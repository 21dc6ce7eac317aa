/* The service context against real OpenSSL clients over a loopback socket: `openssl s_client`
 * with -verify_return_error and a host or IP check, and `redis-cli --tls --cacert ca.pem`
 * (what docs/OPERATIONS.md tells users to run). The test is the server: a small loop moving
 * bytes between the socket and tls_conn_feed/tls_conn_take, as teemsd's loop does. Every step
 * is bounded in time; a client that hangs is killed. Skipped if the programs are missing. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/tls.h"
#include "tee/tee.h"
#include "teems/err.h"

#define SESSION_MS 10000

static const uint8_t meas_a[TEE_MEASUREMENT_LEN] = {0xa1, 0xa2, 0xa3};
static const char *const svc_names[] = {"127.0.0.1", "localhost"};

struct fixture {
	char dir[PATH_MAX];
	char plat[PATH_MAX], ca_pem[PATH_MAX], sealed[PATH_MAX];
	char ca2_pem[PATH_MAX], sealed2[PATH_MAX];
	struct tee *tee;
	struct tls_ctx *svc;
	int lfd;
	char port[16];
};

static struct fixture *fx;

static void join(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", a, b);

	assert_true(n > 0 && n < PATH_MAX);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool have_program(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path != NULL && *path != '\0') {
		const char *end = strchr(path, ':');
		size_t n = end != NULL ? (size_t)(end - path) : strlen(path);

		if (n > 0 &&
		    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name) < (int)sizeof(buf) &&
		    access(buf, X_OK) == 0)
			return true;
		path = end != NULL ? end + 1 : NULL;
	}
	return false;
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);
	struct tee_options o;
	const char *paths[1];
	struct tee *tees[1];

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	fx = calloc(1, sizeof(*fx));
	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "%s/teems-tls-sock-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	join(fx->plat, fx->dir, "plat");
	join(fx->ca_pem, fx->dir, "ca.pem");
	join(fx->sealed, fx->dir, "service-ca.sealed");
	join(fx->ca2_pem, fx->dir, "ca2.pem");
	join(fx->sealed2, fx->dir, "ca2.sealed");

	memset(&o, 0, sizeof(o));
	o.platform_dir = fx->plat;
	o.replica_id = 1;
	o.measurement = meas_a;
	o.no_clock = true;
	if (tee_open(&o, &fx->tee, errbuf) != TEEMS_OK)
		goto fail;
	tees[0] = fx->tee;
	paths[0] = fx->sealed;
	if (tls_ca_create(fx->ca_pem, tees, paths, 1, errbuf) != TEEMS_OK)
		goto fail;
	paths[0] = fx->sealed2;
	if (tls_ca_create(fx->ca2_pem, tees, paths, 1, errbuf) != TEEMS_OK)
		goto fail;
	if (tls_ctx_service(fx->tee, fx->sealed, svc_names, 2, &fx->svc, errbuf) != TEEMS_OK)
		goto fail;

	fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fx->lfd < 0 || bind(fx->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fx->lfd, 4) != 0 || getsockname(fx->lfd, (struct sockaddr *)&sa, &slen) != 0) {
		snprintf(errbuf, sizeof(errbuf), "loopback listener: %s", strerror(errno));
		goto fail;
	}
	snprintf(fx->port, sizeof(fx->port), "%u", (unsigned)ntohs(sa.sin_port));
	return 0;
fail:
	print_error("setup: %s\n", errbuf);
	return -1;
}

static int teardown(void **state)
{
	(void)state;
	if (fx->lfd > 0)
		close(fx->lfd);
	tls_ctx_free(fx->svc);
	tee_close(fx->tee);
	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * A client process
 * ------------------------------------------------------------------------------------------- */

struct child {
	pid_t pid;
	int out; /* its stdout and stderr */
};

static void spawn(struct child *ch, char *const argv[], const char *input)
{
	int in[2], out[2];

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	ch->pid = fork();
	assert_true(ch->pid >= 0);
	if (ch->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	/* A few bytes: they fit in the pipe, so this never blocks. */
	if (input != NULL)
		assert_int_equal(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
	close(in[1]);
	ch->out = out[0];
}

/* Reads what the child printed so far; false once it closed its output (it exited). */
static bool collect(struct child *ch, char *buf, size_t cap, size_t *len, int wait_ms)
{
	struct pollfd p = {.fd = ch->out, .events = POLLIN};
	ssize_t n;

	if (poll(&p, 1, wait_ms) <= 0)
		return true;
	n = read(ch->out, buf + *len, cap - 1 - *len);
	if (n > 0)
		*len += (size_t)n;
	buf[*len] = '\0';
	return n > 0 && *len < cap - 1;
}

/* Waits for the child (killing it after SESSION_MS) and collects the rest of its output
 * after the *len bytes already in buf. Returns its exit status, or -1 if it had to be killed. */
static int reap(struct child *ch, char *buf, size_t cap, size_t len)
{
	int64_t deadline = now_ms() + SESSION_MS;
	int status = 0;
	pid_t r;

	buf[len] = '\0';
	while (now_ms() < deadline && collect(ch, buf, cap, &len, 100))
		;
	close(ch->out);
	while ((r = waitpid(ch->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(10000);
	if (r == 0) {
		kill(ch->pid, SIGKILL);
		waitpid(ch->pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---------------------------------------------------------------------------------------------
 * The server side
 * ------------------------------------------------------------------------------------------- */

enum serve_mode {
	SERVE_ECHO_LINE, /* answer the first line with "echo:" + line, then close_notify */
	SERVE_REDIS,	 /* answer each RESP PING with +PONG until the client hangs up */
};

struct served {
	int rv; /* first error from tls_conn_read, or 0 */
	bool established;
	char got[1024];
	size_t got_len;
	char reason[TEEMS_ERRBUF_LEN];
};

static void send_pending(int fd, struct tls_conn *c)
{
	uint8_t buf[4096];
	size_t n;

	while ((n = tls_conn_take(c, buf, sizeof(buf))) > 0) {
		size_t off = 0;

		while (off < n) {
			ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return; /* the client went away; nothing to do about it */
			off += (size_t)w;
		}
	}
}

/* Accepts one connection and serves it until it ends or SESSION_MS pass. */
static void serve_one(enum serve_mode mode, struct served *sv)
{
	int64_t deadline = now_ms() + SESSION_MS;
	struct pollfd p = {.fd = fx->lfd, .events = POLLIN};
	struct tls_conn *c = NULL;
	size_t pinged = 0;
	bool done = false;
	int fd;

	memset(sv, 0, sizeof(*sv));
	assert_int_equal(poll(&p, 1, SESSION_MS), 1);
	fd = accept(fx->lfd, NULL, NULL);
	assert_true(fd >= 0);
	assert_int_equal(tls_conn_new(fx->svc, true, &c, NULL), TEEMS_OK);

	while (!done && now_ms() < deadline) {
		uint8_t in[4096];
		char pt[1024];
		ssize_t n;
		size_t got;

		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
			break;
		n = recv(fd, in, sizeof(in), 0);
		if (n <= 0)
			break;
		assert_int_equal(tls_conn_feed(c, in, (size_t)n), TEEMS_OK);
		for (;;) {
			int rv = tls_conn_read(c, pt, sizeof(pt), &got);

			if (tls_conn_established(c))
				sv->established = true;
			if (rv != TEEMS_OK) {
				sv->rv = rv;
				snprintf(sv->reason, sizeof(sv->reason), "%s", tls_conn_error(c));
				done = true;
				break;
			}
			if (got == 0)
				break;
			if (got > sizeof(sv->got) - 1 - sv->got_len)
				got = sizeof(sv->got) - 1 - sv->got_len;
			memcpy(sv->got + sv->got_len, pt, got);
			sv->got_len += got;
			sv->got[sv->got_len] = '\0';
		}
		if (mode == SERVE_ECHO_LINE && !done && strchr(sv->got, '\n') != NULL) {
			assert_int_equal(tls_conn_write(c, "echo:", 5), TEEMS_OK);
			assert_int_equal(tls_conn_write(c, sv->got, sv->got_len), TEEMS_OK);
			tls_conn_shutdown(c);
			done = true;
		}
		if (mode == SERVE_REDIS) {
			const char *at = sv->got;
			size_t seen = 0;

			while ((at = strstr(at, "PING\r\n")) != NULL) {
				seen++;
				at += 6;
			}
			for (; pinged < seen; pinged++)
				assert_int_equal(tls_conn_write(c, "+PONG\r\n", 7), TEEMS_OK);
		}
		send_pending(fd, c);
	}
	send_pending(fd, c);
	close(fd);
	tls_conn_free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void s_client(const char *ca, const char *check, const char *value, struct served *sv,
		     int *status, char *out, size_t cap)
{
	char connect[64];
	char *argv[] = {"openssl",
			"s_client",
			"-connect",
			connect,
			"-CAfile",
			(char *)ca,
			"-verify_return_error",
			(char *)check,
			(char *)value,
			"-tls1_3",
			"-quiet",
			NULL};
	struct child ch;

	snprintf(connect, sizeof(connect), "127.0.0.1:%s", fx->port);
	spawn(&ch, argv, "hello teems\n");
	serve_one(SERVE_ECHO_LINE, sv);
	*status = reap(&ch, out, cap, 0);
}

static void test_s_client_verifies(void **state)
{
	char out[8192];
	struct served sv;
	int status;

	(void)state;
	if (!have_program("openssl"))
		skip();
	/* By IP address (the iPAddress subjectAltName) and by name (a dNSName). */
	s_client(fx->ca_pem, "-verify_ip", "127.0.0.1", &sv, &status, out, sizeof(out));
	if (status != 0 || sv.rv != TEEMS_OK)
		print_error("s_client: %d: %s / server: %s\n", status, out, sv.reason);
	assert_int_equal(status, 0);
	assert_true(sv.established);
	assert_int_equal(sv.rv, TEEMS_OK);
	assert_string_equal(sv.got, "hello teems\n");
	assert_non_null(strstr(out, "echo:hello teems"));

	s_client(fx->ca_pem, "-verify_hostname", "localhost", &sv, &status, out, sizeof(out));
	if (status != 0)
		print_error("s_client: %d: %s / server: %s\n", status, out, sv.reason);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "echo:hello teems"));
}

static void test_s_client_rejects(void **state)
{
	char out[8192];
	struct served sv;
	int status;

	(void)state;
	if (!have_program("openssl"))
		skip();
	/* A name the certificate does not carry: s_client refuses and says so to the server. */
	s_client(fx->ca_pem, "-verify_hostname", "wrong.example.test", &sv, &status, out,
		 sizeof(out));
	assert_true(status != 0);
	assert_false(sv.established);
	assert_int_equal(sv.rv, TEEMS_EPROTO);
	assert_int_equal(sv.got_len, 0);
	/* Another CA. */
	s_client(fx->ca2_pem, "-verify_ip", "127.0.0.1", &sv, &status, out, sizeof(out));
	assert_true(status != 0);
	assert_false(sv.established);
	assert_int_equal(sv.got_len, 0);
}

static void test_redis_cli(void **state)
{
	char out[4096], port[16];
	char *argv[] = {"redis-cli", "--tls", "--cacert", fx->ca_pem, "-h",
			"127.0.0.1", "-p",    port,	  "PING",     NULL};
	int64_t deadline = now_ms() + SESSION_MS;
	struct served sv;
	struct child ch;
	size_t len = 0;
	int status, served = 0;

	(void)state;
	if (!have_program("redis-cli"))
		skip();
	snprintf(port, sizeof(port), "%s", fx->port);
	spawn(&ch, argv, NULL);
	serve_one(SERVE_REDIS, &sv);
	status = reap(&ch, out, sizeof(out), 0);
	if (status != 0 || strstr(out, "PONG") == NULL)
		print_error("redis-cli: %d: %s / server: %s\n", status, out, sv.reason);
	assert_int_equal(status, 0);
	assert_true(sv.established);
	assert_non_null(strstr(out, "PONG"));

	/* The same client pinned to another CA refuses the server. redis-cli tries again after
	 * a failed connection, so serve every attempt until it gives up. */
	argv[3] = fx->ca2_pem;
	spawn(&ch, argv, NULL);
	for (;;) {
		struct pollfd p[2] = {{.fd = fx->lfd, .events = POLLIN},
				      {.fd = ch.out, .events = POLLIN}};

		assert_true(now_ms() < deadline);
		assert_true(poll(p, 2, SESSION_MS) > 0);
		if (p[0].revents & POLLIN) {
			serve_one(SERVE_REDIS, &sv);
			assert_false(sv.established);
			assert_int_equal(sv.rv, TEEMS_EPROTO);
			served++;
		} else if (!collect(&ch, out, sizeof(out), &len, 0)) {
			break;
		}
	}
	status = reap(&ch, out, sizeof(out), len);
	assert_true(served >= 1);
	assert_int_not_equal(status, 0);
	assert_null(strstr(out, "PONG"));
	assert_non_null(strstr(out, "certificate verify failed"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s_client_verifies),
		cmocka_unit_test(test_s_client_rejects),
		cmocka_unit_test(test_redis_cli),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
