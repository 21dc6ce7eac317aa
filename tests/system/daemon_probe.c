/* A raw-socket probe for teemsd-echo (daemon_echo.sh): sends exact bytes and checks the exact
 * bytes that come back, which redis-cli cannot do for malformed input.
 *
 *	daemon_probe SCENARIO CLIENT_PORT [PEER_PORT]
 *
 * Scenarios: pipeline, hello, protoerr, oversized, conncmds, many, maxclients, garbage (fake
 * engine); kvpipe (real engine). The daemon listens on PROBE_HOST (environment, an IPv4
 * address; default 127.0.0.1). Every socket has a 10 s receive timeout, so a hang fails instead
 * of blocking the test. Exit 0 on success, 1 with a message on the first mismatch. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char *scenario;
static struct in_addr host; /* PROBE_HOST */

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "daemon_probe %s: FAIL: ", scenario);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int dial(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 10};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		fail("socket: %s", strerror(errno));
	a.sin_addr = host;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		fail("connect to port %d: %s", port, strerror(errno));
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t k = send(fd, c, n, MSG_NOSIGNAL);

		if (k <= 0)
			fail("send: %s", k < 0 ? strerror(errno) : "closed");
		c += k;
		n -= (size_t)k;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Reads exactly strlen(want) bytes and compares. */
static void expect(int fd, const char *want, const char *what)
{
	size_t n = strlen(want), got = 0;
	char *buf = malloc(n + 1);

	while (got < n) {
		ssize_t k = recv(fd, buf + got, n - got, 0);

		if (k <= 0) {
			buf[got] = '\0';
			fail("%s: wanted %zu bytes \"%.200s\", got %zu then %s: \"%.200s\"", what,
			     n, want, got, k == 0 ? "EOF" : strerror(errno), buf);
		}
		got += (size_t)k;
	}
	buf[n] = '\0';
	if (memcmp(buf, want, n) != 0)
		fail("%s: wanted \"%.300s\", got \"%.300s\"", what, want, buf);
	free(buf);
}

static void expect_eof(int fd, const char *what)
{
	char c;
	ssize_t k = recv(fd, &c, 1, 0);

	if (k != 0)
		fail("%s: wanted the server to close, got %s", what,
		     k > 0 ? "more bytes" : strerror(errno));
}

static char *cmd2(const char *a, const char *b)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(a), a, strlen(b),
		 b);
	return buf;
}

/* 2000 pipelined requests in one write, a third of them answered late by the fake engine
 * (DELAY), a fifth of them SETs that wait for an fsync job, some GETs that the fake engine
 * refuses if they arrive while a SET of the connection is unanswered: the replies must come
 * back in request order and no GET may overtake a SET. */
static void pipeline(int port)
{
	int fd = dial(port);
	size_t cap = 1 << 20, len = 0, wlen = 0;
	char *req = malloc(cap), *want = malloc(cap);
	unsigned seed = 7;

	for (int i = 0; i < 2000; i++) {
		char tag[32];
		int kind = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 15;

		snprintf(tag, sizeof(tag), "v%d", i);
		if (kind < 5) {
			char ms[8];

			snprintf(ms, sizeof(ms), "%d", kind * 7);
			len += (size_t)snprintf(req + len, cap - len,
						"*3\r\n$5\r\nDELAY\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n",
						strlen(ms), ms, strlen(tag), tag);
			wlen += (size_t)snprintf(want + wlen, cap - wlen, "$%zu\r\n%s\r\n",
						 strlen(tag), tag);
		} else if (kind < 8) {
			len += (size_t)snprintf(req + len, cap - len, "%s", cmd2("SET", tag));
			wlen += (size_t)snprintf(want + wlen, cap - wlen, "+OK\r\n");
		} else if (kind < 9) {
			/* inline, and an empty line that gets no reply */
			len += (size_t)snprintf(req + len, cap - len, "PING\r\n\r\n");
			wlen += (size_t)snprintf(want + wlen, cap - wlen, "+PONG\r\n");
		} else if (kind < 11) {
			/* a read: held until the SETs before it are answered */
			len += (size_t)snprintf(req + len, cap - len, "%s", cmd2("GET", tag));
			wlen += (size_t)snprintf(want + wlen, cap - wlen, "+OK\r\n");
		} else {
			len += (size_t)snprintf(req + len, cap - len, "%s", cmd2("ECHO", tag));
			wlen += (size_t)snprintf(want + wlen, cap - wlen, "$%zu\r\n%s\r\n",
						 strlen(tag), tag);
		}
	}
	send_all(fd, req, len);
	expect(fd, want, "2000 pipelined replies in request order");
	send_str(fd, "SYNCS\r\n");
	{
		char buf[64];
		ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);

		if (k < 4 || buf[0] != ':' || atoi(buf + 1) < 1)
			fail("SYNCS: no fsync job ran");
	}
	close(fd);
	free(req);
	free(want);
}

static void hello(int port)
{
	int fd = dial(port);

	send_str(fd, "HELLO 3\r\n");
	expect(fd,
	       "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
	       "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n",
	       "HELLO 3 map");
	{
		char c;

		/* the id's digits, then the rest */
		do {
			if (recv(fd, &c, 1, 0) != 1)
				fail("HELLO 3: short id");
		} while (c != '\n');
	}
	expect(fd,
	       "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
	       "$7\r\nmodules\r\n*0\r\n",
	       "HELLO 3 map tail");
	/* the engine now encodes in RESP3 too (the fake uses the proto it is given) */
	send_str(fd, "PING\r\nHELLO 4\r\nHELLO 2 AUTH someone pw\r\nHELLO 2 SETNAME app\r\n");
	expect(fd, "+PONG\r\n-NOPROTO unsupported protocol version\r\n", "HELLO 4");
	expect(fd, "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
	       "HELLO AUTH of an unknown user");
	expect(fd, "*14\r\n$6\r\nserver\r\n", "HELLO 2 is a flat array");
	close(fd);
}

static void protoerr(int port)
{
	int fd = dial(port);

	/* requests before the bad one are answered first, then the error, then the close */
	send_str(fd, "PING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n*1\r\nx\r\nPING\r\n");
	expect(fd, "+PONG\r\n$1\r\nx\r\n-ERR Protocol error: expected '$', got 'x'\r\n",
	       "protocol error after two requests");
	expect_eof(fd, "protocol error");
	close(fd);

	fd = dial(port);
	send_str(fd, "*1\r\n$4\r\nPING\r\n\"unbalanced\r\n");
	expect(fd, "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n",
	       "unbalanced quotes");
	expect_eof(fd, "unbalanced quotes");
	close(fd);

	fd = dial(port);
	send_str(fd, "*-5x\r\n");
	expect(fd, "-ERR Protocol error: invalid multibulk length\r\n", "bad multibulk");
	expect_eof(fd, "bad multibulk");
	close(fd);
}

/* teemsd-echo runs with max_bulk = max_request = 4KiB in daemon_echo.sh. */
static void oversized(int port)
{
	int fd = dial(port);
	char big[8192];

	/* a bulk over max_bulk is refused from its header, before its bytes arrive */
	send_str(fd, "*2\r\n$4\r\nECHO\r\n$100000000\r\n");
	expect(fd, "-ERR Protocol error: invalid bulk length\r\n", "bulk over max_bulk");
	expect_eof(fd, "bulk over max_bulk");
	close(fd);

	/* many small bulks adding up to more than max_request */
	fd = dial(port);
	send_str(fd, "*1000\r\n");
	for (int i = 0; i < 400; i++)
		send_str(fd, "$10\r\n0123456789\r\n");
	expect(fd, "-ERR Protocol error: too big request\r\n", "request over max_request");
	expect_eof(fd, "request over max_request");
	close(fd);

	/* an inline line over max_inline (1KiB) */
	fd = dial(port);
	memset(big, 'a', 2000);
	big[2000] = '\0';
	send_str(fd, big);
	expect(fd, "-ERR Protocol error: too big inline request\r\n", "inline over max_inline");
	expect_eof(fd, "inline over max_inline");
	close(fd);

	/* the daemon still serves */
	fd = dial(port);
	send_str(fd, "PING\r\n");
	expect(fd, "+PONG\r\n", "PING after refusals");
	close(fd);
}

static void conncmds(int port)
{
	int fd = dial(port);

	send_str(fd, "AUTH secret\r\n");
	expect(fd,
	       "-ERR AUTH <password> called without any password configured for the default "
	       "user. Are you sure your configuration is correct?\r\n",
	       "AUTH password");
	send_str(fd, "AUTH default secret\r\nAUTH bob secret\r\n");
	expect(fd, "+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n",
	       "AUTH user password");
	send_str(fd, "SELECT 0\r\nSELECT 1\r\nSELECT x\r\nSELECT\r\n");
	expect(fd,
	       "+OK\r\n-ERR DB index is out of range\r\n-ERR value is not an integer or out of "
	       "range\r\n-ERR wrong number of arguments for 'select' command\r\n",
	       "SELECT");
	send_str(fd, "CLIENT SETNAME app1\r\nCLIENT GETNAME\r\nCLIENT SETNAME \"a b\"\r\n"
		     "CLIENT SETINFO lib-name x\r\nCLIENT NOPE\r\n");
	expect(fd,
	       "+OK\r\n$4\r\napp1\r\n-ERR Client names cannot contain spaces, newlines or "
	       "special characters.\r\n+OK\r\n-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n",
	       "CLIENT");
	send_str(fd, "COMMAND\r\nCOMMAND DOCS\r\nCONFIG GET save\r\nCONFIG GET appendonly\r\n"
		     "CONFIG GET nothing\r\n");
	expect(fd,
	       "*0\r\n*0\r\n*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
	       "*0\r\n",
	       "COMMAND and CONFIG GET");
	/* QUIT: +OK, then the close; what follows it is not run, even while a reply before it
	 * is pending */
	send_str(fd, "DELAY 30 late\r\nQUIT\r\nHALT\r\n");
	expect(fd, "$4\r\nlate\r\n+OK\r\n", "QUIT after a late reply");
	expect_eof(fd, "QUIT");
	close(fd);
	fd = dial(port);
	send_str(fd, "PING\r\n");
	expect(fd, "+PONG\r\n", "the HALT after QUIT did not run");
	close(fd);
}

/* 200 clients at once, each with its own pipeline. */
static void many(int port)
{
	enum { N = 200 };
	int fds[N];
	char want[128], req[128];

	for (int i = 0; i < N; i++)
		fds[i] = dial(port);
	for (int i = 0; i < N; i++) {
		snprintf(req, sizeof(req), "DELAY %d c%d\r\nECHO x%d\r\nSET k v\r\n", i % 13, i, i);
		send_str(fds[i], req);
	}
	for (int i = 0; i < N; i++) {
		char tag[16], tag2[16];

		snprintf(tag, sizeof(tag), "c%d", i);
		snprintf(tag2, sizeof(tag2), "x%d", i);
		snprintf(want, sizeof(want), "$%zu\r\n%s\r\n$%zu\r\n%s\r\n+OK\r\n", strlen(tag),
			 tag, strlen(tag2), tag2);
		expect(fds[i], want, "one of 200 clients");
	}
	/* the engine was told about them */
	send_str(fds[0], "NETSTATS\r\n");
	{
		char buf[128];
		unsigned long long p, c, b;
		ssize_t k = recv(fds[0], buf, sizeof(buf) - 1, 0);

		if (k <= 0)
			fail("NETSTATS: no reply");
		buf[k] = '\0';
		if (sscanf(strchr(buf, '\n') + 1, "%llu %llu %llu", &p, &c, &b) != 3 || c < N)
			fail("NETSTATS: clients_connected below %d: %s", N, buf);
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
}

/* Bytes that are not a peer hello, and a hello followed by an impossible frame length: each
 * connection is closed, the daemon keeps serving and counts them. */
static void garbage(int port, int peer_port)
{
	unsigned char junk[4096];
	unsigned seed = 99;
	int fd;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
	fd = dial(peer_port);
	send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
	expect_eof(fd, "garbage on the peer port");
	close(fd);

	{
		/* a valid hello from replica 1 of 2, then a length field of 4 GiB - 1 */
		unsigned char h[16 + 8] = {'T', 'E', 'E', 'M', 'S',  'H',  'I',	 '1',  1, 0, 2, 0,
					   0,	0,   0,	  0,   0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0};

		fd = dial(peer_port);
		send_all(fd, h, sizeof(h));
		expect_eof(fd, "frame length over MSG_MAX_FRAME");
		close(fd);
	}
	{
		/* a hello naming a replica that does not exist */
		unsigned char h[16] = {'T', 'E', 'E', 'M', 'S', 'H', 'I', '1',
				       9,   0,	 2,   0,   0,	0,   0,	  0};

		fd = dial(peer_port);
		send_all(fd, h, sizeof(h));
		expect_eof(fd, "hello from replica 9");
		close(fd);
	}
	/* and on the client port */
	fd = dial(port);
	send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
	close(fd);
	fd = dial(port);
	send_str(fd, "PING\r\nNETSTATS\r\n");
	expect(fd, "+PONG\r\n", "PING after peer garbage");
	{
		char buf[128];
		unsigned long long p, c, b;
		ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);

		if (k <= 0)
			fail("NETSTATS: no reply");
		buf[k] = '\0';
		if (sscanf(strchr(buf, '\n') + 1, "%llu %llu %llu", &p, &c, &b) != 3 || b < 3)
			fail("NETSTATS: bad_frames below 3: %s", buf);
	}
	close(fd);
}

/* Reads one reply line (through \n) into buf; fails on EOF or timeout. */
static void read_line(int fd, char *buf, size_t cap, const char *what)
{
	size_t n = 0;

	while (n + 1 < cap) {
		if (recv(fd, buf + n, 1, 0) != 1)
			fail("%s: connection closed or timed out after %zu bytes", what, n);
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
}

/* A bulk reply: returns its length (-1: null) and the bytes in val. */
static long read_bulk(int fd, char *val, size_t cap, const char *what)
{
	char line[64];
	long len;

	read_line(fd, line, sizeof(line), what);
	if (line[0] != '$')
		fail("%s: wanted a bulk reply, got %s", what, line);
	len = atol(line + 1);
	if (len < 0)
		return -1;
	if ((size_t)len + 2 >= cap)
		fail("%s: bulk of %ld bytes", what, len);
	for (long got = 0; got < len + 2;) {
		ssize_t k = recv(fd, val + got, (size_t)(len + 2 - got), 0);

		if (k <= 0)
			fail("%s: short bulk", what);
		got += k;
	}
	val[len] = '\0';
	return len;
}

/* The real engine, one pipeline in one write: 500 pairs SET k_i v_i, GET k_i on distinct keys.
 * Replies must come back in request order, +OK for every SET and v_i for every GET: the shell
 * holds a read until the earlier writes of its connection are answered (session order, as
 * Redis). Then 500 pipelined GETs must all see their value. */
static void kvpipe(int port)
{
	enum { N = 500 };
	int fd = dial(port);
	size_t cap = 1 << 20, len = 0;
	char *req = malloc(cap), key[32], val[64], got[64];
	unsigned tag = (unsigned)getpid();
	int nulls = 0;

	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "kp%u-%d", tag, i);
		snprintf(val, sizeof(val), "val%d", i * 7);
		len += (size_t)snprintf(req + len, cap - len,
					"*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n"
					"*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n",
					strlen(key), key, strlen(val), val, strlen(key), key);
	}
	send_all(fd, req, len);
	for (int i = 0; i < N; i++) {
		char line[64];
		long n;

		snprintf(val, sizeof(val), "val%d", i * 7);
		read_line(fd, line, sizeof(line), "SET reply");
		if (strcmp(line, "+OK\r\n") != 0)
			fail("reply %d to SET: %s", 2 * i, line);
		n = read_bulk(fd, got, sizeof(got), "GET reply");
		if (n < 0)
			nulls++;
		else if (strcmp(got, val) != 0)
			fail("GET %d after its SET: wanted %s or null, got %s (out of order?)", i,
			     val, got);
	}
	len = 0;
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "kp%u-%d", tag, i);
		len += (size_t)snprintf(req + len, cap - len, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n",
					strlen(key), key);
	}
	send_all(fd, req, len);
	for (int i = 0; i < N; i++) {
		snprintf(val, sizeof(val), "val%d", i * 7);
		if (read_bulk(fd, got, sizeof(got), "GET after the SETs") < 0 || strcmp(got, val))
			fail("GET %d after every SET was acknowledged: wanted %s", i, val);
	}
	if (nulls > 0)
		fail("%d of %d GETs pipelined behind their SET saw null", nulls, N);
	close(fd);
	free(req);
}

/* 10,000 clients is the limit: the ones after it get Redis's error and are closed; closing
 * some makes room again. The first connections may still count clients of earlier scenarios
 * that the daemon has not seen close, so the probe opens a few more than the limit. */
static void maxclients(int port)
{
	enum { LIMIT = 10000, EXTRA = 30 };
	static int fds[LIMIT + EXTRA];
	struct rlimit rl;
	int refused = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < LIMIT + EXTRA + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < LIMIT + EXTRA + 64) {
			printf("daemon_probe maxclients: only %llu descriptors: skipped\n",
			       (unsigned long long)rl.rlim_cur);
			return;
		}
	}
	for (int i = 0; i < LIMIT + EXTRA; i++)
		fds[i] = dial(port);
	/* the last EXTRA - (stale clients) are refused; the first of them surely is */
	for (int i = LIMIT + EXTRA - 1; i >= LIMIT; i--) {
		expect(fds[i], "-ERR max number of clients reached\r\n", "client over the limit");
		expect_eof(fds[i], "client over the limit");
		refused++;
	}
	/* an accepted one still works */
	send_str(fds[0], "PING\r\n");
	expect(fds[0], "+PONG\r\n", "PING on client 1 of 10000");
	for (int i = 0; i < LIMIT + EXTRA; i++)
		close(fds[i]);
	/* room again once the daemon has seen the closes */
	for (int tries = 0;; tries++) {
		char buf[64];
		int fd = dial(port);
		ssize_t k;

		send_str(fd, "PING\r\n");
		k = recv(fd, buf, sizeof(buf), 0);
		close(fd);
		if (k == 7 && memcmp(buf, "+PONG\r\n", 7) == 0)
			break;
		if (tries == 100)
			fail("no room after closing every client");
		usleep(20000);
	}
	printf("daemon_probe maxclients: %d refused\n", refused);
}

int main(int argc, char **argv)
{
	int port;

	if (argc < 3) {
		fprintf(stderr, "usage: daemon_probe SCENARIO CLIENT_PORT [PEER_PORT]\n");
		return 2;
	}
	scenario = argv[1];
	port = atoi(argv[2]);
	if (inet_pton(AF_INET, getenv("PROBE_HOST") != NULL ? getenv("PROBE_HOST") : "127.0.0.1",
		      &host) != 1) {
		fprintf(stderr, "daemon_probe: PROBE_HOST is not an IPv4 address\n");
		return 2;
	}
	if (strcmp(scenario, "pipeline") == 0)
		pipeline(port);
	else if (strcmp(scenario, "hello") == 0)
		hello(port);
	else if (strcmp(scenario, "protoerr") == 0)
		protoerr(port);
	else if (strcmp(scenario, "oversized") == 0)
		oversized(port);
	else if (strcmp(scenario, "conncmds") == 0)
		conncmds(port);
	else if (strcmp(scenario, "many") == 0)
		many(port);
	else if (strcmp(scenario, "kvpipe") == 0)
		kvpipe(port);
	else if (strcmp(scenario, "maxclients") == 0)
		maxclients(port);
	else if (strcmp(scenario, "garbage") == 0 && argc == 4)
		garbage(port, atoi(argv[3]));
	else {
		fprintf(stderr, "daemon_probe: unknown scenario %s\n", scenario);
		return 2;
	}
	printf("daemon_probe %s: ok\n", scenario);
	return 0;
}
