/* Blocking RESP client over TCP or TLS 1.3 (contract in conn.h).
 *
 * The socket is non-blocking and every wait is a poll() against a deadline taken from
 * CLOCK_MONOTONIC when the operation starts, so a server that accepts and then says nothing
 * costs at most the timeout. TLS is OpenSSL directly over the socket fd (Debian's hiredis 0.14
 * has no TLS); hiredis is only the reply parser, with our own object functions so replies are
 * allocated through teems_malloc and bounded (hiredis' default array constructor trusted the
 * wire's element count, CVE-2021-32765). */
#include "client/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/read.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "teems/err.h"

#define CONN_DEFAULT_CONNECT_MS 5000
#define CONN_DEFAULT_IO_MS 10000
#define CONN_DEFAULT_MAX_REPLY ((size_t)512 << 20)
/* Elements of one array reply; far above anything teemsd sends, far below what would let a
 * hostile server make us allocate gigabytes before sending a byte of content. */
#define CONN_MAX_ELEMENTS (1u << 24)
#define CONN_MAX_ARGS 64
#define CONN_PEER_LEN (NI_MAXHOST + NI_MAXSERV + 4)

struct conn {
	int fd;
	SSL_CTX *ctx; /* NULL: plaintext */
	SSL *ssl;
	redisReader *reader;
	unsigned io_timeout_ms;
	size_t max_reply;
	/* Set by the reply constructors when they refuse something, so the error says why
	 * instead of hiredis' "Out of memory". */
	const char *reader_refusal;
	char peer[CONN_PEER_LEN];
};

static const char *const conn_err_strings[] = {
	[-CONN_EUNREACHABLE - 120] = "server unreachable",
	[-CONN_ETIMEOUT - 120] = "timed out",
	[-CONN_ETLS - 120] = "TLS handshake or verification failed",
	[-CONN_EPROTO - 120] = "server protocol error",
	[-CONN_ECLOSED - 120] = "connection closed by the server",
	[-CONN_EAUTH - 120] = "authentication refused",
};

const char *conn_strerror(int err)
{
	if (err <= -120 && err >= CONN_ERR_MIN_)
		return conn_err_strings[-err - 120];
	return teems_strerror(err);
}

bool conn_err_is_unavailable(int err)
{
	return err == CONN_EUNREACHABLE || err == CONN_ETIMEOUT || err == CONN_ECLOSED;
}

/* ---------------------------------------------------------------------------------------------
 * Reply tree, built by hiredis through these constructors.
 * ------------------------------------------------------------------------------------------- */

void conn_reply_free(struct conn_reply *r)
{
	if (r == NULL)
		return;
	if (r->element != NULL) {
		for (size_t i = 0; i < r->elements; i++)
			conn_reply_free(r->element[i]);
		teems_free(r->element);
	}
	teems_free(r->str);
	teems_free(r);
}

static void reply_free_obj(void *obj)
{
	conn_reply_free(obj);
}

/* Allocates a node and hangs it under its parent, so that when hiredis frees the root after a
 * parse error every node made so far goes with it. */
static struct conn_reply *reply_node(const redisReadTask *task, enum conn_reply_type type)
{
	struct conn_reply *r = teems_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->type = type;
	if (task->parent != NULL) {
		struct conn_reply *parent = task->parent->obj;

		if (task->idx < 0 || (size_t)task->idx >= parent->elements) {
			teems_free(r);
			return NULL;
		}
		parent->element[task->idx] = r;
	}
	return r;
}

static void *reply_string(const redisReadTask *task, char *str, size_t len)
{
	enum conn_reply_type type;
	struct conn_reply *r;
	char *copy;

	switch (task->type) {
	case REDIS_REPLY_STATUS:
		type = CONN_REPLY_STATUS;
		break;
	case REDIS_REPLY_ERROR:
		type = CONN_REPLY_ERROR;
		break;
	default:
		type = CONN_REPLY_STRING;
		break;
	}
	if (len == SIZE_MAX || (copy = teems_malloc(len + 1)) == NULL)
		return NULL;
	memcpy(copy, str, len);
	copy[len] = '\0';
	if ((r = reply_node(task, type)) == NULL) {
		teems_free(copy);
		return NULL;
	}
	r->str = copy;
	r->len = len;
	return r;
}

static void *reply_array(const redisReadTask *task, int elements)
{
	struct conn *c = task->privdata;
	struct conn_reply *r;

	if (elements < 0 || (unsigned)elements > CONN_MAX_ELEMENTS) {
		c->reader_refusal = "array reply with too many elements";
		return NULL;
	}
	if ((r = reply_node(task, CONN_REPLY_ARRAY)) == NULL)
		return NULL;
	if (elements > 0) {
		r->element = teems_calloc((size_t)elements, sizeof(*r->element));
		if (r->element == NULL) {
			/* Unhook it: the parent must not keep a pointer to a freed node. */
			if (task->parent != NULL)
				((struct conn_reply *)task->parent->obj)->element[task->idx] = NULL;
			teems_free(r);
			return NULL;
		}
	}
	r->elements = (size_t)elements;
	return r;
}

static void *reply_integer(const redisReadTask *task, long long value)
{
	struct conn_reply *r = reply_node(task, CONN_REPLY_INTEGER);

	if (r != NULL)
		r->integer = value;
	return r;
}

static void *reply_nil(const redisReadTask *task)
{
	return reply_node(task, CONN_REPLY_NIL);
}

static redisReplyObjectFunctions reply_functions = {
	.createString = reply_string,
	.createArray = reply_array,
	.createInteger = reply_integer,
	.createNil = reply_nil,
	.freeObject = reply_free_obj,
};

/* ---------------------------------------------------------------------------------------------
 * Deadlines and waiting
 * ------------------------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(struct conn *c, short events, int64_t deadline, const char *what, char *errbuf)
{
	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = events};
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return teems_errf(errbuf, CONN_ETIMEOUT, "%s: timed out %s", c->peer, what);
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return teems_errf(errbuf, TEEMS_EIO, "%s: poll: %s", c->peer,
					  strerror(errno));
	}
}

/* OpenSSL writes to the socket with write(2), which raises SIGPIPE when the server has gone.
 * A library must not kill its caller for that, nor change the process' signal disposition:
 * block SIGPIPE around the write and swallow one it caused (the usual technique, since Linux
 * has no SO_NOSIGPIPE). */
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_unblock(struct sigpipe_guard *g)
{
	int saved_errno = errno; /* the caller looks at the write's errno next */
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pending);
	if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
		struct timespec zero = {0, 0};

		while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
	errno = saved_errno;
}

/* The first queued OpenSSL error as text (and the queue cleared). */
static void ssl_reason(char *out, size_t cap)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = ERR_reason_error_string(e);

	if (e == 0)
		snprintf(out, cap, "no reason given");
	else if (reason != NULL)
		snprintf(out, cap, "%s", reason);
	else
		ERR_error_string_n(e, out, cap);
	ERR_clear_error();
}

/* Maps a failed SSL call to a conn error. Returns 1 to wait for readability, 2 for
 * writability, or a negative error. */
static int ssl_failure(struct conn *c, int rv, const char *what, char *errbuf)
{
	char reason[160];
	int e = SSL_get_error(c->ssl, rv);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return 1;
	case SSL_ERROR_WANT_WRITE:
		return 2;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return teems_errf(errbuf, CONN_ECLOSED, "%s: connection closed by the server %s",
				  c->peer, what);
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			/* errno 0: EOF without close_notify. */
			int saved = errno;

			ERR_clear_error();
			if (saved == 0 || saved == ECONNRESET || saved == EPIPE)
				return teems_errf(errbuf, CONN_ECLOSED,
						  "%s: connection closed by the server %s", c->peer,
						  what);
			return teems_errf(errbuf, TEEMS_EIO, "%s: %s %s", c->peer, strerror(saved),
					  what);
		}
		__attribute__((fallthrough)); /* OpenSSL queued a reason */
	default: {
		long v = SSL_get_verify_result(c->ssl);

		/* OpenSSL 3 reports a TCP close without close_notify this way. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return teems_errf(errbuf, CONN_ECLOSED,
					  "%s: connection closed by the server %s", c->peer, what);
		}
		ssl_reason(reason, sizeof(reason));
		if (v != X509_V_OK)
			return teems_errf(errbuf, CONN_ETLS,
					  "%s: TLS: certificate verify failed: %s", c->peer,
					  X509_verify_cert_error_string(v));
		return teems_errf(
			errbuf, CONN_ETLS, "%s: TLS failed %s: %s%s", c->peer, what, reason,
			strstr(reason, "wrong version number") != NULL ? " (is this a TLS port?)"
								       : "");
	}
	}
}

/* ---------------------------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------------------------- */

static void format_peer(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, cap, "?");
		return;
	}
	if (sa->sa_family == AF_INET6)
		snprintf(out, cap, "[%s]:%s", host, serv);
	else
		snprintf(out, cap, "%s:%s", host, serv);
}

/* Non-blocking connect to one address, bounded by the deadline. Returns 0 with c->fd set, or
 * the error. */
static int connect_one(struct conn *c, const struct addrinfo *ai, int64_t deadline, char *errbuf)
{
	int fd, soerr = 0, one = 1, rv;
	socklen_t len = sizeof(soerr);

	format_peer(ai->ai_addr, ai->ai_addrlen, c->peer, sizeof(c->peer));
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return teems_errf(errbuf, TEEMS_EIO, "%s: socket: %s", c->peer, strerror(errno));
	c->fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			soerr = errno;
			goto refused;
		}
		if ((rv = wait_fd(c, POLLOUT, deadline, "connecting", errbuf)) != 0)
			goto close_fd;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
			soerr = errno;
		if (soerr != 0)
			goto refused;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;

refused:
	rv = teems_errf(errbuf, soerr == ETIMEDOUT ? CONN_ETIMEOUT : CONN_EUNREACHABLE, "%s: %s",
			c->peer, strerror(soerr));
close_fd:
	close(fd);
	c->fd = -1;
	return rv;
}

static int connect_tcp(struct conn *c, const struct conn_options *o, int64_t deadline, char *errbuf)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	char port[8];
	int rv, gai;

	snprintf(port, sizeof(port), "%u", (unsigned)o->port);
	gai = getaddrinfo(o->host, port, &hints, &res);
	if (gai != 0)
		return teems_errf(errbuf, CONN_EUNREACHABLE, "%s:%s: cannot resolve: %s", o->host,
				  port, gai_strerror(gai));
	rv = CONN_EUNREACHABLE;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		rv = connect_one(c, ai, deadline, errbuf);
		if (rv == 0 || rv == CONN_ETIMEOUT || rv == TEEMS_EIO)
			break;
	}
	freeaddrinfo(res);
	return rv;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int start_tls(struct conn *c, const struct conn_options *o, int64_t deadline, char *errbuf)
{
	const char *name = o->tls_name != NULL ? o->tls_name : o->host;
	char reason[160];
	int rv;

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL) {
		ssl_reason(reason, sizeof(reason));
		return teems_errf(errbuf, TEEMS_ENOMEM, "TLS: %s", reason);
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
		ssl_reason(reason, sizeof(reason));
		return teems_errf(errbuf, TEEMS_EIO, "cannot load CA file %s: %s", o->ca_file,
				  reason);
	}
	if ((c->ssl = SSL_new(c->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		ssl_reason(reason, sizeof(reason));
		return teems_errf(errbuf, TEEMS_ENOMEM, "TLS: %s", reason);
	}
	if (is_ip_literal(name)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
			return teems_errf(errbuf, TEEMS_EINVAL, "TLS: bad IP address %s", name);
	} else if (SSL_set1_host(c->ssl, name) != 1 ||
		   SSL_set_tlsext_host_name(c->ssl, name) != 1) {
		return teems_errf(errbuf, TEEMS_EINVAL, "TLS: bad host name %s", name);
	}
	for (;;) {
		struct sigpipe_guard g;

		sigpipe_block(&g);
		rv = SSL_connect(c->ssl);
		sigpipe_unblock(&g);
		if (rv == 1)
			return 0;
		rv = ssl_failure(c, rv, "during the TLS handshake", errbuf);
		if (rv < 0)
			return rv;
		rv = wait_fd(c, rv == 1 ? POLLIN : POLLOUT, deadline, "in the TLS handshake",
			     errbuf);
		if (rv != 0)
			return rv;
	}
}

static redisReader *reader_new(struct conn *c)
{
	redisReader *r = redisReaderCreateWithFunctions(&reply_functions);

	/* Not redisReaderSetPrivdata: the macro casts the pointer to int. */
	if (r != NULL)
		r->privdata = c;
	return r;
}

/* AUTH [user] pass right after connecting; a refusal is CONN_EAUTH with the server's text. */
static int send_auth(struct conn *c, const struct conn_options *o, char *errbuf)
{
	const char *argv[3] = {"AUTH", o->user != NULL ? o->user : o->pass, o->pass};
	struct conn_reply *r = NULL;
	int rv = conn_command(c, o->user != NULL ? 3 : 2, argv, NULL, &r, errbuf);

	if (rv == 0 && r->type == CONN_REPLY_ERROR)
		rv = teems_errf(errbuf, CONN_EAUTH, "%s: AUTH %s: %s", c->peer,
				o->user != NULL ? o->user : "default", r->str);
	else if (rv == 0 && r->type != CONN_REPLY_STATUS)
		rv = teems_errf(errbuf, CONN_EPROTO, "%s: AUTH: unexpected reply", c->peer);
	conn_reply_free(r);
	return rv;
}

int conn_open(const struct conn_options *opts, struct conn **out, char *errbuf)
{
	unsigned connect_ms;
	struct conn *c;
	int rv;

	*out = NULL;
	if (opts == NULL || opts->host == NULL || opts->host[0] == '\0' || opts->port == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "conn: a host and a port are needed");
	if ((c = teems_calloc(1, sizeof(*c))) == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "conn: out of memory");
	c->fd = -1;
	c->io_timeout_ms = opts->io_timeout_ms != 0 ? opts->io_timeout_ms : CONN_DEFAULT_IO_MS;
	c->max_reply = opts->max_reply != 0 ? opts->max_reply : CONN_DEFAULT_MAX_REPLY;
	snprintf(c->peer, sizeof(c->peer), "%s:%u", opts->host, (unsigned)opts->port);
	if ((c->reader = reader_new(c)) == NULL) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "conn: out of memory");
		goto fail;
	}
	connect_ms =
		opts->connect_timeout_ms != 0 ? opts->connect_timeout_ms : CONN_DEFAULT_CONNECT_MS;
	int64_t deadline = now_ms() + connect_ms;

	if ((rv = connect_tcp(c, opts, deadline, errbuf)) != 0)
		goto fail;
	if (opts->ca_file != NULL && (rv = start_tls(c, opts, deadline, errbuf)) != 0)
		goto fail;
	if (opts->pass != NULL && (rv = send_auth(c, opts, errbuf)) != 0)
		goto fail;
	*out = c;
	return 0;

fail:
	conn_close(c);
	return rv;
}

void conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL) {
		struct sigpipe_guard g;

		/* One non-blocking attempt: a polite close_notify, never a wait. */
		if (SSL_is_init_finished(c->ssl)) {
			sigpipe_block(&g);
			SSL_shutdown(c->ssl);
			sigpipe_unblock(&g);
		}
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	if (c->reader != NULL)
		redisReaderFree(c->reader);
	teems_free(c);
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

/* ---------------------------------------------------------------------------------------------
 * Sending and receiving
 * ------------------------------------------------------------------------------------------- */

static int write_all(struct conn *c, const char *buf, size_t len, int64_t deadline, char *errbuf)
{
	size_t off = 0;
	int rv;

	while (off < len) {
		size_t chunk = len - off > INT_MAX ? INT_MAX : len - off;
		short wait_for = POLLOUT;

		if (c->ssl != NULL) {
			struct sigpipe_guard g;
			size_t written = 0;

			sigpipe_block(&g);
			rv = SSL_write_ex(c->ssl, buf + off, chunk, &written);
			sigpipe_unblock(&g);
			if (rv == 1) {
				off += written;
				continue;
			}
			rv = ssl_failure(c, rv, "while sending", errbuf);
			if (rv < 0)
				return rv;
			wait_for = rv == 1 ? POLLIN : POLLOUT;
		} else {
			ssize_t n = send(c->fd, buf + off, chunk, MSG_NOSIGNAL);

			if (n >= 0) {
				off += (size_t)n;
				continue;
			}
			if (errno == EPIPE || errno == ECONNRESET)
				return teems_errf(
					errbuf, CONN_ECLOSED,
					"%s: connection closed by the server while sending",
					c->peer);
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return teems_errf(errbuf, TEEMS_EIO, "%s: send: %s", c->peer,
						  strerror(errno));
		}
		if ((rv = wait_fd(c, wait_for, deadline, "sending", errbuf)) != 0)
			return rv;
	}
	return 0;
}

/* Reads whatever is available (at least one byte), waiting until the deadline. */
static int read_some(struct conn *c, char *buf, size_t cap, size_t *got, int64_t deadline,
		     char *errbuf)
{
	int rv;

	for (;;) {
		short wait_for = POLLIN;

		if (c->ssl != NULL) {
			struct sigpipe_guard g;

			/* A read may write too (a TLS 1.3 key update answer). */
			sigpipe_block(&g);
			rv = SSL_read_ex(c->ssl, buf, cap, got);
			sigpipe_unblock(&g);
			if (rv == 1)
				return 0;
			rv = ssl_failure(c, rv, "while reading the reply", errbuf);
			if (rv < 0)
				return rv;
			wait_for = rv == 1 ? POLLIN : POLLOUT;
		} else {
			ssize_t n = recv(c->fd, buf, cap, 0);

			if (n > 0) {
				*got = (size_t)n;
				return 0;
			}
			if (n == 0 || errno == ECONNRESET)
				return teems_errf(errbuf, CONN_ECLOSED,
						  "%s: connection closed by the server while "
						  "reading the reply",
						  c->peer);
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return teems_errf(errbuf, TEEMS_EIO, "%s: recv: %s", c->peer,
						  strerror(errno));
		}
		if ((rv = wait_fd(c, wait_for, deadline, "waiting for the reply", errbuf)) != 0)
			return rv;
	}
}

static size_t decimal_len(size_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

int conn_send(struct conn *c, size_t argc, const char *const *argv, const size_t *len, char *errbuf)
{
	size_t total, off = 0;
	char *buf;
	int rv;

	if (argc == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "conn: empty command");
	/* "*argc\r\n" then "$len\r\narg\r\n" per argument. */
	total = 1 + decimal_len(argc) + 2;
	for (size_t i = 0; i < argc; i++) {
		size_t l = len != NULL ? len[i] : strlen(argv[i]);

		if (l > SIZE_MAX / 2 - total)
			return teems_errf(errbuf, TEEMS_EINVAL, "conn: command too large");
		total += 1 + decimal_len(l) + 2 + l + 2;
	}
	if ((buf = teems_malloc(total + 1)) == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "conn: out of memory");
	off += (size_t)snprintf(buf, total + 1, "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++) {
		size_t l = len != NULL ? len[i] : strlen(argv[i]);

		off += (size_t)snprintf(buf + off, total + 1 - off, "$%zu\r\n", l);
		memcpy(buf + off, argv[i], l);
		off += l;
		buf[off++] = '\r';
		buf[off++] = '\n';
	}
	rv = write_all(c, buf, off, now_ms() + c->io_timeout_ms, errbuf);
	teems_free(buf);
	return rv;
}

int conn_recv(struct conn *c, struct conn_reply **reply, char *errbuf)
{
	int64_t deadline = now_ms() + c->io_timeout_ms;
	char buf[16384];
	int rv;

	*reply = NULL;
	for (;;) {
		void *obj = NULL;
		size_t got = 0;

		c->reader_refusal = NULL;
		if (redisReaderGetReply(c->reader, &obj) != REDIS_OK) {
			const char *why =
				c->reader_refusal != NULL ? c->reader_refusal : c->reader->errstr;

			return teems_errf(errbuf,
					  c->reader->err == REDIS_ERR_OOM &&
							  c->reader_refusal == NULL
						  ? TEEMS_ENOMEM
						  : CONN_EPROTO,
					  "%s: bad reply: %s", c->peer, why);
		}
		if (obj != NULL) {
			*reply = obj;
			return 0;
		}
		if (c->reader->len - c->reader->pos > c->max_reply)
			return teems_errf(errbuf, CONN_EPROTO,
					  "%s: bad reply: larger than %zu bytes", c->peer,
					  c->max_reply);
		if ((rv = read_some(c, buf, sizeof(buf), &got, deadline, errbuf)) != 0)
			return rv;
		if (redisReaderFeed(c->reader, buf, got) != REDIS_OK)
			return teems_errf(errbuf, TEEMS_ENOMEM, "%s: reply buffer: out of memory",
					  c->peer);
	}
}

int conn_command(struct conn *c, size_t argc, const char *const *argv, const size_t *len,
		 struct conn_reply **reply, char *errbuf)
{
	int rv = conn_send(c, argc, argv, len, errbuf);

	if (rv != 0) {
		*reply = NULL;
		return rv;
	}
	return conn_recv(c, reply, errbuf);
}

int conn_commandv(struct conn *c, struct conn_reply **reply, char *errbuf, const char *arg0, ...)
{
	const char *argv[CONN_MAX_ARGS];
	size_t argc = 0;
	const char *a;
	va_list ap;

	va_start(ap, arg0);
	for (a = arg0; a != NULL; a = va_arg(ap, const char *)) {
		if (argc == CONN_MAX_ARGS) {
			va_end(ap);
			*reply = NULL;
			return teems_errf(errbuf, TEEMS_EINVAL, "conn: more than %d arguments",
					  CONN_MAX_ARGS);
		}
		argv[argc++] = a;
	}
	va_end(ap);
	return conn_command(c, argc, argv, NULL, reply, errbuf);
}

bool conn_info_field(const char *info, size_t len, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key), i = 0;

	while (i < len) {
		size_t end = i;

		while (end < len && info[end] != '\n')
			end++;
		size_t line_end = end > i && info[end - 1] == '\r' ? end - 1 : end;

		if (line_end - i > klen && memcmp(info + i, key, klen) == 0 &&
		    info[i + klen] == ':') {
			size_t vlen = line_end - (i + klen + 1);

			if (cap == 0)
				return true;
			if (vlen >= cap)
				vlen = cap - 1;
			memcpy(out, info + i + klen + 1, vlen);
			out[vlen] = '\0';
			return true;
		}
		i = end + 1;
	}
	return false;
}
