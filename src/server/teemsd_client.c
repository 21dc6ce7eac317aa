/* RESP clients (DESIGN.md section 9, docs/OPERATIONS.md "RESP front end").
 *
 * Each connection has a resp_parser with the configured limits. Every complete request in the
 * buffer is parsed at once (pipelining) and numbered: req 0, 1, 2, ... per connection. The
 * engine may answer them out of order (a write waits for its commit, a later read may not), so
 * replies wait in a ring indexed by req until every earlier one has been written: the client
 * sees them in request order, as Redis guarantees.
 *
 * The connection-level commands are answered here, in the same order as everything else:
 * HELLO, AUTH, QUIT, and what redis-cli and redis-benchmark send before their first real
 * command (SELECT 0, CLIENT SETNAME/SETINFO, COMMAND [DOCS], CONFIG GET save/appendonly).
 *
 * Session order, as Redis gives it: replica.h lets the engine answer a read before a write that
 * came earlier on the same connection is committed, so a pipelined "SET k v; GET k" would see
 * the old value, which Redis clients do not expect. The shell therefore holds a read (CMD_F_READ)
 * while an earlier write (CMD_F_WRITE) of its connection is unanswered, and parses nothing after
 * it until then. Writes still pipeline with writes and reads with reads.
 *
 * Users (replica.h, replica_client_as): the connection remembers the user it authenticated as
 * (NULL: none yet) and passes it with every command. AUTH, and HELLO with AUTH, go to the
 * engine, which checks the credentials as a linearizable read of the replicated user table;
 * nothing after them is parsed until their answer is back (redis-benchmark pipelines its AUTH
 * in front of its first commands), and on "+OK" the connection becomes that user (for HELLO,
 * the reply is then HELLO's own). The shell's own commands (SELECT, CLIENT, COMMAND, CONFIG)
 * answer NOAUTH to a connection that never authenticated while "default" needs a password.
 *
 * A protocol error is answered with Redis's text and the connection closes after it is
 * written; requests before it are still answered first. Memory per client is bounded: past
 * TEEMSD_CLIENT_INFLIGHT_MAX unanswered requests or TEEMSD_CLIENT_OUT_MAX queued output, the
 * connection is not read (TCP pushes back on the client) until it drains. */
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "net/commands.h"
#include "server/teemsd_internal.h"
#include "teems/err.h"

#define CONN_SLOT_BITS 16
#define CLIENT_NAME_MAX 256

struct pending {
	uint8_t *p;
	size_t len;
	bool ready, close_after;
	bool write; /* a write whose reply has not come yet */
};

/* A read waiting for the connection's earlier writes (deep copy: the input buffer moves on). */
struct held {
	uint64_t req;
	size_t argc;
	struct resp_arg *argv; /* argc views into bytes */
	uint8_t *bytes;
};

struct client {
	struct tstream s;
	uint64_t id;
	unsigned slot; /* UINT_MAX: refused (over max clients), not in the table */
	struct resp_parser parser;
	int proto;
	uint64_t next_req, next_out;
	struct pending *ring; /* replies for [next_out, next_req), at req & (ring_cap - 1) */
	size_t ring_cap;
	char *name;
	uint64_t writes_pending;
	struct held *held;
	bool done_parsing; /* QUIT or a protocol error is queued: read nothing more */
	char *user;	   /* authenticated as (teems_malloc'd), or NULL */
	/* an AUTH (or HELLO ... AUTH) waiting for the engine's answer */
	bool auth_pending, auth_hello;
	uint64_t auth_req;
	int auth_proto; /* HELLO's protocol version (0: unchanged) */
	char *auth_user;
	bool throttled; /* not reading until the backlog drains */
	bool in_process;
};

static void process(struct client *c);

static struct client *lookup(struct teemsd *d, uint64_t conn)
{
	uint64_t slot = conn & ((1u << CONN_SLOT_BITS) - 1);
	struct client *c;

	if (slot >= d->client_slots)
		return NULL;
	c = d->clients[slot];
	if (c == NULL || c->id != conn)
		return NULL;
	return c;
}

static void emit(struct client *c, const uint8_t *p, size_t len, bool close_after)
{
	if (tstream_send(&c->s, p, len) != 0) {
		teemsd_log("%s: cannot queue a reply; closing", c->s.name);
		tstream_close(&c->s);
		return;
	}
	if (close_after) {
		c->done_parsing = true;
		tstream_close_after_write(&c->s);
	}
}

static bool over_limits(const struct client *c)
{
	return c->next_req - c->next_out >= TEEMSD_CLIENT_INFLIGHT_MAX ||
	       tstream_queued(&c->s) >= TEEMSD_CLIENT_OUT_MAX;
}

/* After a reply: read again if the backlog drained, run a held read once the writes before it
 * are answered. */
static void maybe_resume(struct client *c)
{
	if (c->in_process || c->s.closing)
		return;
	if (c->throttled && !over_limits(c)) {
		c->throttled = false;
		tstream_resume(&c->s);
		process(c);
		return;
	}
	if (c->held != NULL && c->writes_pending == 0)
		process(c);
}

/* The reply to request `req`: written now if every earlier one has been, else kept. */
static void deliver(struct client *c, uint64_t req, const uint8_t *p, size_t len, bool close_after)
{
	struct pending *e;
	size_t mask = c->ring_cap - 1;

	if (c->s.closing || c->s.close_after_write)
		return;
	if (req < c->next_out || req >= c->next_req) {
		teemsd_log("%s: reply to request %llu, which is not waiting; dropped", c->s.name,
			   (unsigned long long)req);
		return;
	}
	e = &c->ring[req & mask];
	if (e->write) {
		e->write = false;
		c->writes_pending--;
	}
	if (req != c->next_out) {
		if (e->ready) {
			teemsd_log("%s: second reply to request %llu; dropped", c->s.name,
				   (unsigned long long)req);
			return;
		}
		e->p = teems_malloc(len ? len : 1);
		if (e->p == NULL) {
			teemsd_log("%s: out of memory for a reply; closing", c->s.name);
			tstream_close(&c->s);
			return;
		}
		if (len > 0)
			memcpy(e->p, p, len);
		e->len = len;
		e->ready = true;
		e->close_after = close_after;
		maybe_resume(c);
		return;
	}
	emit(c, p, len, close_after);
	c->next_out++;
	while (c->next_out < c->next_req && !c->s.closing && !c->s.close_after_write) {
		e = &c->ring[c->next_out & mask];
		if (!e->ready)
			break;
		emit(c, e->p, e->len, e->close_after);
		teems_free(e->p);
		memset(e, 0, sizeof(*e));
		c->next_out++;
	}
	maybe_resume(c);
}

static void hello_reply(struct client *c, uint64_t req);

/* The engine's answer to the connection's AUTH: "+OK" makes the connection that user. */
static void auth_answered(struct client *c, uint64_t req, const uint8_t *resp, size_t len)
{
	bool ok = len == 5 && memcmp(resp, "+OK\r\n", 5) == 0;

	c->auth_pending = false;
	if (ok) {
		teems_free(c->user);
		c->user = c->auth_user;
		c->auth_user = NULL;
	}
	teems_free(c->auth_user);
	c->auth_user = NULL;
	if (ok && c->auth_hello) {
		if (c->auth_proto != 0)
			c->proto = c->auth_proto;
		hello_reply(c, req);
	} else {
		deliver(c, req, resp, len, false);
	}
	if (!c->in_process && !c->s.closing)
		process(c);
}

void clients_reply(struct teemsd *d, uint64_t conn, uint64_t req, const uint8_t *resp, size_t len)
{
	struct client *c = lookup(d, conn);

	if (c == NULL)
		return;
	if (c->auth_pending && req == c->auth_req)
		auth_answered(c, req, resp, len);
	else
		deliver(c, req, resp, len, false);
}

/* Numbers the next request. The caller checked over_limits, so the ring may grow at most to
 * TEEMSD_CLIENT_INFLIGHT_MAX entries. */
static int new_req(struct client *c, uint64_t *req)
{
	size_t inflight = c->next_req - c->next_out;

	if (inflight == c->ring_cap) {
		size_t cap = c->ring_cap ? c->ring_cap * 2 : 16;
		struct pending *ring = teems_calloc(cap, sizeof(*ring));

		if (ring == NULL)
			return TEEMS_ENOMEM;
		for (uint64_t r = c->next_out; r < c->next_req; r++)
			ring[r & (cap - 1)] = c->ring[r & (c->ring_cap - 1)];
		teems_free(c->ring);
		c->ring = ring;
		c->ring_cap = cap;
	}
	*req = c->next_req++;
	memset(&c->ring[*req & (c->ring_cap - 1)], 0, sizeof(struct pending));
	return 0;
}

static void reply_out(struct client *c, uint64_t req, struct resp_out *o, bool close_after)
{
	if (o->err != 0) {
		static const char oom[] = "-ERR out of memory\r\n";

		deliver(c, req, (const uint8_t *)oom, sizeof(oom) - 1, close_after);
	} else {
		deliver(c, req, o->buf, o->len, close_after);
	}
	resp_out_free(o);
}

static void reply_error(struct client *c, uint64_t req, const char *msg, bool close_after)
{
	struct resp_out o;

	resp_out_init(&o, c->proto);
	resp_add_error(&o, msg);
	reply_out(c, req, &o, close_after);
}

static void reply_simple(struct client *c, uint64_t req, const char *s)
{
	struct resp_out o;

	resp_out_init(&o, c->proto);
	resp_add_simple(&o, s);
	reply_out(c, req, &o, false);
}

static bool arg_is(const struct resp_arg *a, const char *s)
{
	size_t n = strlen(s);

	return a->len == n && strncasecmp((const char *)a->p, s, n) == 0;
}

static void wrong_args(struct client *c, uint64_t req, const char *cmd)
{
	char err[128];

	snprintf(err, sizeof(err), "ERR wrong number of arguments for '%s' command", cmd);
	reply_error(c, req, err, false);
}

static void unknown_sub(struct client *c, uint64_t req, const struct resp_arg *sub, const char *cmd)
{
	char err[256];
	int n = sub->len > 64 ? 64 : (int)sub->len;

	snprintf(err, sizeof(err), "ERR unknown subcommand '%.*s'. Try %s HELP.", n,
		 (const char *)sub->p, cmd);
	reply_error(c, req, err, false);
}

/* Redis refuses names with spaces, newlines and other special characters. */
static int set_name(struct client *c, const struct resp_arg *name)
{
	char *copy;
	size_t n = name->len > CLIENT_NAME_MAX ? CLIENT_NAME_MAX : name->len;

	for (size_t i = 0; i < name->len; i++)
		if (name->p[i] < '!' || name->p[i] > '~')
			return -1;
	copy = teems_malloc(n + 1);
	if (copy == NULL)
		return TEEMS_ENOMEM;
	memcpy(copy, name->p, n);
	copy[n] = '\0';
	teems_free(c->name);
	c->name = n ? copy : NULL;
	if (!n)
		teems_free(copy);
	return 0;
}

/* The shell is also linked against stand-in engines (tests/system/fake_replica.c) that predate
 * users: for them these weak fallbacks act as an engine without users (everyone is "default").
 * The real engine's definitions (replica_client.c) override them. */
__attribute__((weak)) void replica_client_as(struct replica *r, uint64_t conn, uint64_t req,
					     const char *user, const struct resp_arg *argv,
					     size_t argc, int proto)
{
	(void)user;
	replica_client(r, conn, req, argv, argc, proto);
}

__attribute__((weak)) bool replica_default_open(struct replica *r)
{
	(void)r;
	return true;
}

__attribute__((weak)) bool replica_has_users(struct replica *r)
{
	(void)r;
	return false;
}

/* A stand-in engine holds no replies for a batch. */
__attribute__((weak)) void replica_flush(struct replica *r)
{
	(void)r;
}

#define WRONGPASS "WRONGPASS invalid username-password pair or user is disabled."

/* An engine without users (replica_has_users false) answers AUTH here, as a Redis without
 * requirepass does: any password for "default", no other user. */
static void auth_without_users(struct client *c, uint64_t req, const struct resp_arg *user,
			       bool hello, int proto)
{
	if (user != NULL && !arg_is(user, "default")) {
		reply_error(c, req, WRONGPASS, false);
		return;
	}
	if (!hello) {
		if (user == NULL)
			reply_error(c, req,
				    "ERR AUTH <password> called without any password configured "
				    "for the default user. Are you sure your configuration is "
				    "correct?",
				    false);
		else
			reply_simple(c, req, "OK");
		return;
	}
	if (proto != 0)
		c->proto = proto;
	hello_reply(c, req);
}

#define BAD_NAME "ERR Client names cannot contain spaces, newlines or special characters."
#define NOAUTH "NOAUTH Authentication required."

/* Sends AUTH user pass (user NULL: the one-argument form) to the engine; the answer comes
 * back through clients_reply (auth_answered). */
static void start_auth(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc,
		       const struct resp_arg *user, bool hello, int proto)
{
	size_t n = user != NULL ? user->len : 7;

	if (!replica_has_users(c->s.d->r)) {
		auth_without_users(c, req, user, hello, proto);
		return;
	}
	c->auth_user = teems_malloc(n + 1);
	if (c->auth_user == NULL) {
		reply_error(c, req, "ERR out of memory", false);
		return;
	}
	memcpy(c->auth_user, user != NULL ? (const char *)user->p : "default", n);
	c->auth_user[n] = '\0';
	c->auth_pending = true;
	c->auth_hello = hello;
	c->auth_proto = proto;
	c->auth_req = req;
	replica_client_as(c->s.d->r, c->id, req, NULL, argv, argc, c->proto);
}

static void do_hello(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	struct cmd_hello h;
	char err[CMD_ERR_LEN];

	if (cmd_parse_hello(argv, argc, &h, err) != 0) {
		reply_error(c, req, err, false);
		return;
	}
	if (h.name != NULL && set_name(c, h.name) != 0) {
		reply_error(c, req, BAD_NAME, false);
		return;
	}
	if (h.pass != NULL) {
		struct resp_arg a[3] = {{(const uint8_t *)"AUTH", 4, 0}, *h.user, *h.pass};

		start_auth(c, req, a, 3, h.user, true, h.proto);
		return;
	}
	if (h.proto != 0)
		c->proto = h.proto;
	hello_reply(c, req);
}

/* Redis 7's HELLO reply, in the protocol just chosen. */
static void hello_reply(struct client *c, uint64_t req)
{
	struct resp_out o;

	resp_out_init(&o, c->proto);
	resp_add_map(&o, 7);
	resp_add_bulk_cstr(&o, "server");
	resp_add_bulk_cstr(&o, "redis");
	resp_add_bulk_cstr(&o, "version");
	resp_add_bulk_cstr(&o, TEEMSD_VERSION);
	resp_add_bulk_cstr(&o, "proto");
	resp_add_int(&o, c->proto);
	resp_add_bulk_cstr(&o, "id");
	resp_add_int(&o, (long long)(c->id >> CONN_SLOT_BITS));
	resp_add_bulk_cstr(&o, "mode");
	resp_add_bulk_cstr(&o, "standalone");
	resp_add_bulk_cstr(&o, "role");
	resp_add_bulk_cstr(&o, "master");
	resp_add_bulk_cstr(&o, "modules");
	resp_add_array(&o, 0);
	reply_out(c, req, &o, false);
}

static void do_auth(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	const struct resp_arg *user, *pass;
	char err[CMD_ERR_LEN];

	if (cmd_parse_auth(argv, argc, &user, &pass, err) != 0) {
		reply_error(c, req, err, false);
		return;
	}
	start_auth(c, req, argv, argc, user, false, 0);
}

static void do_select(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	long long db;
	char err[CMD_ERR_LEN];

	if (argc != 2) {
		wrong_args(c, req, "select");
		return;
	}
	if (cmd_parse_int(&argv[1], &db, err) != 0) {
		reply_error(c, req, err, false);
		return;
	}
	/* one keyspace: database 0 */
	if (db != 0)
		reply_error(c, req, "ERR DB index is out of range", false);
	else
		reply_simple(c, req, "OK");
}

static void do_client(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	struct resp_out o;

	if (argc < 2) {
		wrong_args(c, req, "client");
		return;
	}
	if (arg_is(&argv[1], "setname")) {
		int rc;

		if (argc != 3) {
			wrong_args(c, req, "client|setname");
			return;
		}
		rc = set_name(c, &argv[2]);
		if (rc == -1)
			reply_error(c, req, BAD_NAME, false);
		else if (rc != 0)
			reply_error(c, req, "ERR out of memory", false);
		else
			reply_simple(c, req, "OK");
	} else if (arg_is(&argv[1], "getname")) {
		resp_out_init(&o, c->proto);
		if (c->name != NULL)
			resp_add_bulk_cstr(&o, c->name);
		else
			resp_add_null(&o);
		reply_out(c, req, &o, false);
	} else if (arg_is(&argv[1], "id")) {
		resp_out_init(&o, c->proto);
		resp_add_int(&o, (long long)(c->id >> CONN_SLOT_BITS));
		reply_out(c, req, &o, false);
	} else if (arg_is(&argv[1], "setinfo")) {
		/* lib-name / lib-ver (Redis 7.2 clients): accepted and forgotten */
		if (argc != 4)
			wrong_args(c, req, "client|setinfo");
		else
			reply_simple(c, req, "OK");
	} else {
		unknown_sub(c, req, &argv[1], "CLIENT");
	}
}

static void do_command(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	struct resp_out o;

	resp_out_init(&o, c->proto);
	if (argc == 1) {
		/* redis-cli only uses this for hints: none is fine */
		resp_add_array(&o, 0);
	} else if (arg_is(&argv[1], "docs")) {
		resp_add_map(&o, 0);
	} else if (arg_is(&argv[1], "count")) {
		resp_add_int(&o, CMD_COUNT_);
	} else if (arg_is(&argv[1], "info")) {
		resp_add_array(&o, argc - 2);
		for (size_t i = 2; i < argc; i++)
			resp_add_null_array(&o);
	} else {
		resp_out_free(&o);
		unknown_sub(c, req, &argv[1], "COMMAND");
		return;
	}
	reply_out(c, req, &o, false);
}

/* CONFIG GET: what redis-benchmark asks before it starts (save, appendonly); teems has no
 * runtime configuration to show or change. */
static void do_config(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	static const char *const params[][2] = {{"save", ""}, {"appendonly", "no"}};
	bool match[sizeof(params) / sizeof(params[0])] = {false};
	size_t n = 0;
	struct resp_out o;

	if (argc < 2) {
		wrong_args(c, req, "config");
		return;
	}
	if (!arg_is(&argv[1], "get")) {
		char err[128];
		int k = argv[1].len > 32 ? 32 : (int)argv[1].len;

		snprintf(err, sizeof(err), "ERR CONFIG %.*s is not supported by teems", k,
			 (const char *)argv[1].p);
		reply_error(c, req, err, false);
		return;
	}
	if (argc < 3) {
		wrong_args(c, req, "config|get");
		return;
	}
	for (size_t i = 2; i < argc; i++) {
		char pat[256];

		if (argv[i].len >= sizeof(pat))
			continue;
		memcpy(pat, argv[i].p, argv[i].len);
		pat[argv[i].len] = '\0';
		if (memchr(argv[i].p, '\0', argv[i].len) != NULL)
			continue;
		for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++)
			if (!match[k] && fnmatch(pat, params[k][0], FNM_CASEFOLD) == 0) {
				match[k] = true;
				n++;
			}
	}
	resp_out_init(&o, c->proto);
	resp_add_map(&o, n);
	for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++)
		if (match[k]) {
			resp_add_bulk_cstr(&o, params[k][0]);
			resp_add_bulk_cstr(&o, params[k][1]);
		}
	reply_out(c, req, &o, false);
}

static bool has_flag(const struct resp_arg *argv, size_t argc, unsigned flag)
{
	const struct cmd_spec *spec = cmd_resolve(argv, argc);

	return spec != NULL && (spec->flags & flag) != 0;
}

static int hold(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	struct held *h = teems_calloc(1, sizeof(*h));
	size_t total = 0, off = 0;

	if (h == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < argc; i++)
		total += argv[i].len;
	h->argv = teems_calloc(argc, sizeof(*h->argv));
	h->bytes = teems_malloc(total ? total : 1);
	if (h->argv == NULL || h->bytes == NULL) {
		teems_free(h->argv);
		teems_free(h->bytes);
		teems_free(h);
		return TEEMS_ENOMEM;
	}
	for (size_t i = 0; i < argc; i++) {
		if (argv[i].len > 0)
			memcpy(h->bytes + off, argv[i].p, argv[i].len);
		h->argv[i].p = h->bytes + off;
		h->argv[i].len = argv[i].len;
		off += argv[i].len;
	}
	h->req = req;
	h->argc = argc;
	c->held = h;
	return 0;
}

static void free_held(struct held *h)
{
	if (h == NULL)
		return;
	teems_free(h->argv);
	teems_free(h->bytes);
	teems_free(h);
}

static void handle(struct client *c, uint64_t req, const struct resp_arg *argv, size_t argc)
{
	const struct resp_arg *name = &argv[0];
	char err[CMD_ERR_LEN];

	if (arg_is(name, "hello") || arg_is(name, "auth") || arg_is(name, "quit")) {
		const struct cmd_spec *spec = cmd_check(argv, argc, err);

		if (spec == NULL)
			reply_error(c, req, err, false);
		else if (spec->id == CMD_HELLO)
			do_hello(c, req, argv, argc);
		else if (spec->id == CMD_AUTH)
			do_auth(c, req, argv, argc);
		else {
			struct resp_out o;

			/* QUIT: nothing after it runs, even while earlier replies are pending */
			c->done_parsing = true;
			resp_out_init(&o, c->proto);
			resp_add_simple(&o, "OK");
			reply_out(c, req, &o, true);
		}
	} else if ((arg_is(name, "select") || arg_is(name, "client") || arg_is(name, "command") ||
		    arg_is(name, "config")) &&
		   c->user == NULL && !replica_default_open(c->s.d->r)) {
		reply_error(c, req, NOAUTH, false);
	} else if (arg_is(name, "select")) {
		do_select(c, req, argv, argc);
	} else if (arg_is(name, "client")) {
		do_client(c, req, argv, argc);
	} else if (arg_is(name, "command")) {
		do_command(c, req, argv, argc);
	} else if (arg_is(name, "config")) {
		do_config(c, req, argv, argc);
	} else {
		if (has_flag(argv, argc, CMD_F_WRITE)) {
			c->ring[req & (c->ring_cap - 1)].write = true;
			c->writes_pending++;
		}
		replica_client_as(c->s.d->r, c->id, req, c->user, argv, argc, c->proto);
	}
}

/* Parses and dispatches every complete request in the buffer. */
static void process(struct client *c)
{
	struct resp_request rq;
	uint64_t req;
	int rc;

	if (c->in_process)
		return;
	c->in_process = true;
	while (!c->done_parsing && !c->s.closing && !c->s.close_after_write) {
		if (c->auth_pending)
			break; /* auth_answered calls us again */
		if (c->held != NULL) {
			struct held *h = c->held;

			if (c->writes_pending > 0)
				break; /* deliver() calls us again when they are answered */
			c->held = NULL;
			handle(c, h->req, h->argv, h->argc);
			free_held(h);
			continue;
		}
		if (over_limits(c)) {
			c->throttled = true;
			tstream_pause(&c->s);
			break;
		}
		rc = resp_parse(&c->parser, tbuf_data(&c->s.in), tbuf_size(&c->s.in), &rq);
		if (rc == RESP_INCOMPLETE)
			break;
		if (rc < 0) {
			teemsd_log("%s: out of memory parsing; closing", c->s.name);
			tstream_close(&c->s);
			break;
		}
		if (new_req(c, &req) != 0) {
			teemsd_log("%s: out of memory; closing", c->s.name);
			tstream_close(&c->s);
			break;
		}
		if (rc == RESP_PROTOCOL_ERROR) {
			/* answered in order after everything before it, then closed */
			c->done_parsing = true;
			teemsd_log("%s: %s; closing", c->s.name, resp_parser_error(&c->parser));
			reply_error(c, req, resp_parser_error(&c->parser), true);
			break;
		}
		if (rq.argc == 0) {
			/* an empty request: Redis ignores it; the number is just skipped */
			deliver(c, req, NULL, 0, false);
		} else if (c->writes_pending > 0 && has_flag(rq.argv, rq.argc, CMD_F_READ)) {
			if (hold(c, req, rq.argv, rq.argc) != 0) {
				teemsd_log("%s: out of memory; closing", c->s.name);
				tstream_close(&c->s);
				break;
			}
		} else {
			handle(c, req, rq.argv, rq.argc);
		}
		tbuf_consume(&c->s.in, rq.consumed);
	}
	c->in_process = false;
	/* replies delivered while parsing may have lifted the limits */
	if (c->throttled && !over_limits(c) && !c->s.closing)
		maybe_resume(c);
}

static void on_data(struct tstream *s)
{
	process(s->owner);
}

static void on_drain(struct tstream *s)
{
	maybe_resume(s->owner);
}

static void on_close(struct tstream *s)
{
	struct client *c = s->owner;
	struct teemsd *d = s->d;

	if (c->slot != UINT_MAX) {
		d->clients[c->slot] = NULL;
		d->n_clients--;
		if (!d->halted)
			replica_client_gone(d->r, c->id);
		teemsd_update_stats(d);
	}
	for (uint64_t r = c->next_out; r < c->next_req; r++)
		teems_free(c->ring[r & (c->ring_cap - 1)].p);
	teems_free(c->ring);
	teems_free(c->name);
	teems_free(c->user);
	teems_free(c->auth_user);
	free_held(c->held);
	resp_parser_free(&c->parser);
	teems_free(c);
}

static const struct tstream_ops client_ops = {
	.on_data = on_data,
	.on_drain = on_drain,
	.on_close = on_close,
};

static void on_connection(uv_stream_t *server, int status)
{
	struct teemsd *d = server->data;
	struct resp_limits lim;
	struct tls_conn *tls = NULL;
	struct client *c;
	unsigned slot = UINT_MAX;

	if (status < 0 || d->stopping)
		return;
	c = teems_calloc(1, sizeof(*c));
	if (c == NULL)
		return; /* the connection stays in the backlog; retried at the next event */
	tstream_init(d, &c->s, &client_ops, c);
	if (uv_accept(server, (uv_stream_t *)&c->s.tcp) != 0) {
		tstream_close(&c->s);
		return;
	}
	c->slot = UINT_MAX;
	c->proto = 2;
	lim.max_args = d->cfg.max_args;
	lim.max_bulk = d->cfg.max_bulk;
	lim.max_inline = d->cfg.max_inline;
	lim.max_request = d->cfg.max_request;
	resp_parser_init(&c->parser, &lim);
	tstream_describe(&c->s, "client");
	uv_tcp_nodelay(&c->s.tcp, 1);
	/* half-open clients are found by the kernel, not by us */
	uv_tcp_keepalive(&c->s.tcp, 1, 60);
#ifdef TEEMSD_HAVE_TLS
	if (d->service_ctx != NULL) {
		char err[TEEMS_ERRBUF_LEN];

		if (tls_conn_new(d->service_ctx, true, &tls, err) != 0) {
			teemsd_log("%s: TLS: %s", c->s.name, err);
			tstream_close(&c->s);
			return;
		}
	}
#endif
	if (tstream_start(&c->s, tls) != 0) {
		tstream_close(&c->s);
		return;
	}
	if (d->n_clients < d->max_clients)
		for (unsigned i = 0; i < d->client_slots; i++)
			if (d->clients[i] == NULL) {
				slot = i;
				break;
			}
	if (slot == UINT_MAX) {
		static const char full[] = "-ERR max number of clients reached\r\n";

		if (d->refused_clients++ % 1000 == 0)
			teemsd_log("%s: refused: max number of clients (%u) reached", c->s.name,
				   d->max_clients);
		c->done_parsing = true;
		tstream_send(&c->s, full, sizeof(full) - 1);
		tstream_close_after_write(&c->s);
		return;
	}
	c->slot = slot;
	c->id = (++d->conn_seq << CONN_SLOT_BITS) | slot;
	d->clients[slot] = c;
	d->n_clients++;
	teemsd_update_stats(d);
}

int teemsd_resolve(const struct config_addr *a, struct sockaddr_storage *out, char *errbuf);

int clients_listen(struct teemsd *d, char *errbuf)
{
	struct sockaddr_storage ss;
	int rc;

	d->max_clients = TEEMSD_MAX_CLIENTS;
	d->client_slots = TEEMSD_MAX_CLIENTS;
	d->clients = teems_calloc(d->client_slots, sizeof(*d->clients));
	if (d->clients == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
	rc = teemsd_resolve(&d->cfg.listen, &ss, errbuf);
	if (rc != 0)
		return rc;
	uv_tcp_init(d->loop, &d->client_listener);
	d->client_listener.data = d;
	d->client_listening = true;
	rc = uv_tcp_bind(&d->client_listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&d->client_listener, 511, on_connection);
	if (rc != 0)
		return teems_errf(errbuf, TEEMS_EIO, "listen = %s:%u: %s", d->cfg.listen.host,
				  d->cfg.listen.port, uv_strerror(rc));
	return 0;
}

void clients_close_all(struct teemsd *d)
{
	if (d->client_listening && !uv_is_closing((uv_handle_t *)&d->client_listener))
		uv_close((uv_handle_t *)&d->client_listener, NULL);
	for (unsigned i = 0; i < d->client_slots; i++)
		if (d->clients[i] != NULL)
			tstream_close(&d->clients[i]->s);
}
