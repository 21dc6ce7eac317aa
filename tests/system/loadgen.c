/* teems-loadgen: the load client of the real-process fault tests (tests/system/nemesis.sh,
 * DESIGN.md section 11). K client threads, each on its own connection, issue random GET
 * (as VGET, so reads carry the version), SET, CAS (VSET key value expected_version) and DEL on
 * a few keys, with values unique to the whole run, and record every invocation and completion
 * in a history that `teems-check` reads (tests/sim/history.h is the format; the writer is the
 * simulator's, linked from teems_lincheck).
 *
 *   teems-loadgen --addr H:P[,H:P...] --history FILE [--ca FILE] [--clients K] [--keys N]
 *                 [--ops N] [--duration S] [--seed S] [--io-timeout MS] [--think-us US]
 *                 [--final-reads 0|1] [--final-timeout S] [--final-addr H:P[,...]]
 *                 [--prefix P] [--reconnect-every N]
 *
 * With --reconnect-every N a client moves to a random address after every N ops of its own.
 * Keys are P0, P1, ... (default k0, k1, ...). The checker's model starts with every key absent
 * at version 0, so the keys must never have been written before the run.
 *
 * It stops at the first of: --ops operations issued, --duration seconds, SIGTERM or SIGINT.
 * Then (unless --final-reads 0) it reads every key through every address of --final-addr
 * (default: --addr), one after the other, retrying each for up to --final-timeout seconds:
 * those reads come after every write in real time, so an acknowledged write that the cluster
 * lost shows up as a linearizability violation. Finally it writes the history and prints one
 * summary line.
 *
 * How replies are recorded (DESIGN.md section 4: "an abandoned client operation is reported as
 * outcome unknown, never as not applied"):
 * - a reply of the expected shape: ok, with the result;
 * - "-TRYAGAIN ...": fail. teemsd sends it only for a request no core ever proposed (no leader
 *   known before the request's deadline, or the leader busy), so the write did not happen. If
 *   the daemon broke that promise the checker would see it, which is the point;
 * - "-ERR teems: outcome unknown ...", any other error reply to a write, a timeout, a lost
 *   connection: unknown. The op stays open to the end of the history; the client reconnects
 *   (to another address, chosen at random: followers forward) and goes on;
 * - an error reply to a read: fail (a read has no effect either way).
 * SET and DEL replies carry no version ("?" in the history). A DEL answered :0 (the key was
 * absent) changed nothing, not even the version (Redis semantics), unlike the model's DEL, so
 * it is recorded as a GET that found the key absent.
 * A reply of the wrong shape (a daemon bug) is recorded as unknown, counted, and makes the exit
 * status 5.
 *
 * Exit: 0 the budget ran out (or a signal stopped the load) and every final read succeeded;
 * 1 an internal error (out of memory, cannot write the history); 2 usage; 4 some final read
 * did not succeed in time (the history is still written); 5 a reply of the wrong shape. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/conn.h"
#include "history.h"
#include "teems/err.h"

#define MAX_ADDRS 16
#define MAX_CLIENTS 64
#define MAX_KEYS 64
/* Client ids of the final reads: FINAL_CLIENT + the index of the address read through. */
#define FINAL_CLIENT 1000000u

struct addr {
	char host[64];
	uint16_t port;
};

struct options {
	struct addr addr[MAX_ADDRS], final_addr[MAX_ADDRS];
	size_t n_addr, n_final;
	const char *history, *ca, *prefix;
	unsigned clients, keys;
	uint64_t ops;
	double duration_s, final_timeout_s;
	uint64_t seed;
	unsigned io_timeout_ms, think_us;
	uint64_t reconnect_every;
	bool final_reads;
};

enum tally {
	T_OK,
	T_FAIL,
	T_UNKNOWN,
	T_RECONNECT,
	T_BAD_REPLY,
	T_OTHER_ERR,
	T_MAX_,
};

static struct options opt;
static struct history hist;
static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop_signal;
static atomic_uint_fast64_t ops_issued;
static atomic_uint_fast64_t tally[T_MAX_];
static atomic_int hist_err;
/* The newest version any client has seen per key: a CAS usually expects it, so that some
 * swaps succeed under contention. */
static atomic_uint_fast64_t key_version[MAX_KEYS];
static uint64_t t_start_ns, t_end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

static bool stopping(void)
{
	return stop_signal != 0 || atomic_load(&ops_issued) >= opt.ops || now_ns() >= t_end_ns;
}

/* xorshift64*: one generator per thread, seeded from --seed and the thread's id. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void note_version(unsigned key, uint64_t v)
{
	uint_fast64_t cur = atomic_load(&key_version[key]);

	while (v > cur && !atomic_compare_exchange_weak(&key_version[key], &cur, v))
		;
}

/* ---- recording ---- */

static size_t record_invoke(struct history_op *op)
{
	size_t index = 0;
	int rv;

	pthread_mutex_lock(&hist_lock);
	op->invoke = now_ns();
	rv = history_invoke(&hist, op, &index);
	pthread_mutex_unlock(&hist_lock);
	if (rv != 0)
		atomic_store(&hist_err, rv);
	return rv == 0 ? index : SIZE_MAX;
}

static void record_complete(size_t index, enum history_outcome outcome,
			    const struct history_result *res)
{
	uint64_t t = now_ns();
	int rv;

	if (index == SIZE_MAX)
		return;
	pthread_mutex_lock(&hist_lock);
	rv = history_complete(&hist, index, t, outcome, res);
	pthread_mutex_unlock(&hist_lock);
	if (rv != 0)
		atomic_store(&hist_err, rv);
	atomic_fetch_add(&tally[outcome == HISTORY_OK	  ? T_OK
				: outcome == HISTORY_FAIL ? T_FAIL
							  : T_UNKNOWN],
			 1);
}

/* A DEL answered :0 becomes "GET key -> absent ?" (see decode). */
static void record_del_noop(size_t index)
{
	if (index == SIZE_MAX)
		return;
	pthread_mutex_lock(&hist_lock);
	hist.ops[index].type = HISTORY_GET;
	pthread_mutex_unlock(&hist_lock);
}

/* ---- one operation ---- */

static bool reply_int(const struct conn_reply *r, long long *v)
{
	if (r == NULL || r->type != CONN_REPLY_INTEGER)
		return false;
	*v = r->integer;
	return true;
}

static void bad_reply(const char *what, const struct conn_reply *r)
{
	if (atomic_fetch_add(&tally[T_BAD_REPLY], 1) < 5)
		fprintf(stderr, "teems-loadgen: %s: reply of the wrong shape (type %d)\n", what,
			r ? (int)r->type : -1);
}

/* Turns a reply into the op's result. Returns the outcome. */
static enum history_outcome decode(const struct history_op *op, unsigned key,
				   const struct conn_reply *r, struct history_result *res)
{
	long long a, b;

	memset(res, 0, sizeof(*res));
	if (r->type == CONN_REPLY_ERROR) {
		if (strncmp(r->str, "TRYAGAIN", 8) == 0)
			return HISTORY_FAIL;
		if (op->type == HISTORY_GET)
			return HISTORY_FAIL;
		if (strstr(r->str, "outcome unknown") == NULL &&
		    atomic_fetch_add(&tally[T_OTHER_ERR], 1) < 5)
			fprintf(stderr, "teems-loadgen: %s: -%s (recorded as unknown)\n",
				history_type_name(op->type), r->str);
		return HISTORY_UNKNOWN;
	}
	switch (op->type) {
	case HISTORY_GET: /* VGET: [value | nil, version] */
		if (r->type != CONN_REPLY_ARRAY || r->elements != 2 ||
		    !reply_int(r->element[1], &b) || b < 0 ||
		    (r->element[0]->type != CONN_REPLY_STRING &&
		     r->element[0]->type != CONN_REPLY_NIL))
			break;
		res->version_known = true;
		res->version = (uint64_t)b;
		res->found = r->element[0]->type == CONN_REPLY_STRING;
		if (res->found) {
			res->value.data = (const uint8_t *)r->element[0]->str;
			res->value.len = r->element[0]->len;
		}
		note_version(key, res->version);
		return HISTORY_OK;
	case HISTORY_SET: /* +OK; the version is not reported */
		if (r->type != CONN_REPLY_STATUS || strcmp(r->str, "OK") != 0)
			break;
		return HISTORY_OK;
	case HISTORY_DEL: /* :count; the version is not reported */
		if (r->type != CONN_REPLY_INTEGER || (r->integer != 0 && r->integer != 1))
			break;
		/* Redis's DEL of an absent key (:0) changes nothing, not even the version,
		 * while the model's DEL always adds one (history.h): record that DEL as what
		 * it was, a read that found the key absent (run_op rewrites the op). */
		res->found = r->integer == 1;
		return HISTORY_OK;
	case HISTORY_CAS: /* VSET: [1, new version] or [0, current version] */
		if (r->type != CONN_REPLY_ARRAY || r->elements != 2 ||
		    !reply_int(r->element[0], &a) || !reply_int(r->element[1], &b) ||
		    (a != 0 && a != 1) || b < 0)
			break;
		res->version_known = true;
		res->cas_ok = a == 1;
		res->version = (uint64_t)b;
		note_version(key, res->version);
		return HISTORY_OK;
	}
	bad_reply(history_type_name(op->type), r);
	return HISTORY_UNKNOWN;
}

/* Runs op on *c, records it. Returns false if the connection must be dropped. */
static bool run_op(struct conn *c, struct history_op *op, unsigned key)
{
	char keybuf[32], valbuf[64], verbuf[32], err[TEEMS_ERRBUF_LEN];
	const char *argv[4];
	size_t argc = 0, index;
	struct conn_reply *r = NULL;
	struct history_result res;
	enum history_outcome out;

	snprintf(keybuf, sizeof(keybuf), "%.*s", (int)op->key.len, (const char *)op->key.data);
	switch (op->type) {
	case HISTORY_GET:
		argv[argc++] = "VGET";
		argv[argc++] = keybuf;
		break;
	case HISTORY_SET:
		argv[argc++] = "SET";
		argv[argc++] = keybuf;
		snprintf(valbuf, sizeof(valbuf), "%.*s", (int)op->value.len,
			 (const char *)op->value.data);
		argv[argc++] = valbuf;
		break;
	case HISTORY_CAS:
		argv[argc++] = "VSET";
		argv[argc++] = keybuf;
		snprintf(valbuf, sizeof(valbuf), "%.*s", (int)op->value.len,
			 (const char *)op->value.data);
		argv[argc++] = valbuf;
		snprintf(verbuf, sizeof(verbuf), "%" PRIu64, op->expected_version);
		argv[argc++] = verbuf;
		break;
	case HISTORY_DEL:
		argv[argc++] = "DEL";
		argv[argc++] = keybuf;
		break;
	}
	index = record_invoke(op);
	if (conn_command(c, argc, argv, NULL, &r, err) != 0) {
		/* Sent or not, applied or not: nobody can tell. */
		record_complete(index, HISTORY_UNKNOWN, NULL);
		return false;
	}
	out = decode(op, key, r, &res);
	if (op->type == HISTORY_DEL && out == HISTORY_OK && !res.found)
		record_del_noop(index);
	record_complete(index, out, &res);
	conn_reply_free(r);
	return true;
}

/* ---- client threads ---- */

struct worker {
	pthread_t thread;
	unsigned id; /* client id in the history: 1.. */
	uint64_t rng;
	uint64_t next_op;
	uint64_t last_version[MAX_KEYS];
};

static struct conn *connect_some(struct worker *w, size_t prefer)
{
	struct conn *c = NULL;
	char err[TEEMS_ERRBUF_LEN];

	for (size_t attempt = 0; !stopping(); attempt++) {
		size_t i = attempt == 0 && prefer < opt.n_addr
				   ? prefer
				   : (size_t)(rnd(&w->rng) % opt.n_addr);
		struct conn_options o = {
			.host = opt.addr[i].host,
			.port = opt.addr[i].port,
			.ca_file = opt.ca,
			.connect_timeout_ms = 1000,
			.io_timeout_ms = opt.io_timeout_ms,
		};

		if (conn_open(&o, &c, err) == 0)
			return c;
		usleep(50000);
	}
	return NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct conn *c = connect_some(w, w->id % opt.n_addr);

	while (c != NULL && !stopping()) {
		unsigned key = (unsigned)(rnd(&w->rng) % opt.keys), pick;
		char keybuf[48], valbuf[48];
		struct history_op op;

		memset(&op, 0, sizeof(op));
		op.client = w->id;
		op.op_id = ++w->next_op;
		snprintf(keybuf, sizeof(keybuf), "%s%u", opt.prefix, key);
		op.key.data = (const uint8_t *)keybuf;
		op.key.len = strlen(keybuf);
		/* Values are unique to the run: client id and op id. */
		snprintf(valbuf, sizeof(valbuf), "v%u.%" PRIu64, w->id, op.op_id);
		pick = (unsigned)(rnd(&w->rng) % 100);
		if (pick < 40) {
			op.type = HISTORY_GET;
		} else if (pick < 70) {
			op.type = HISTORY_SET;
		} else if (pick < 95) {
			uint64_t v = atomic_load(&key_version[key]);

			op.type = HISTORY_CAS;
			/* Mostly the newest version seen (may win), sometimes this client's own
			 * older view (likely stale), sometimes the version after (never yet). */
			if (pick < 88)
				op.expected_version = v;
			else if (pick < 93)
				op.expected_version = w->last_version[key];
			else
				op.expected_version = v + 1;
		} else {
			op.type = HISTORY_DEL;
		}
		if (op.type == HISTORY_SET || op.type == HISTORY_CAS) {
			op.value.data = (const uint8_t *)valbuf;
			op.value.len = strlen(valbuf);
		}
		atomic_fetch_add(&ops_issued, 1);
		if (!run_op(c, &op, key)) {
			conn_close(c);
			atomic_fetch_add(&tally[T_RECONNECT], 1);
			c = connect_some(w, SIZE_MAX);
		} else if (opt.reconnect_every > 0 && op.op_id % opt.reconnect_every == 0) {
			/* Move to another replica now and then, so that every replica (and a
			 * fork's client port) serves some of the load. */
			conn_close(c);
			c = connect_some(w, SIZE_MAX);
		}
		w->last_version[key] = atomic_load(&key_version[key]);
		if (opt.think_us > 0)
			usleep(opt.think_us);
	}
	conn_close(c);
	return NULL;
}

/* ---- final reads ---- */

/* Reads every key through address i until each read is ok or the deadline passes. Returns
 * the number of keys it could not read. */
static unsigned final_reads(size_t i)
{
	uint64_t deadline = now_ns() + (uint64_t)(opt.final_timeout_s * 1e9);
	struct conn *c = NULL;
	uint64_t op_id = 0;
	unsigned missing = 0;
	char err[TEEMS_ERRBUF_LEN];

	for (unsigned key = 0; key < opt.keys; key++) {
		bool done = false;

		while (!done && now_ns() < deadline) {
			char keybuf[48];
			struct history_op op;
			struct conn_reply *r = NULL;
			struct history_result res;
			enum history_outcome out;
			size_t index;

			if (c == NULL) {
				struct conn_options o = {
					.host = opt.final_addr[i].host,
					.port = opt.final_addr[i].port,
					.ca_file = opt.ca,
					.connect_timeout_ms = 1000,
					.io_timeout_ms = opt.io_timeout_ms,
				};

				if (conn_open(&o, &c, err) != 0) {
					c = NULL;
					usleep(100000);
					continue;
				}
			}
			memset(&op, 0, sizeof(op));
			op.client = FINAL_CLIENT + i;
			op.op_id = ++op_id;
			op.type = HISTORY_GET;
			snprintf(keybuf, sizeof(keybuf), "%s%u", opt.prefix, key);
			op.key.data = (const uint8_t *)keybuf;
			op.key.len = strlen(keybuf);
			index = record_invoke(&op);
			if (conn_commandv(c, &r, err, "VGET", keybuf, NULL) != 0) {
				record_complete(index, HISTORY_UNKNOWN, NULL);
				conn_close(c);
				c = NULL;
				continue;
			}
			out = decode(&op, key, r, &res);
			record_complete(index, out, &res);
			conn_reply_free(r);
			done = out == HISTORY_OK;
			if (!done)
				usleep(100000);
		}
		if (!done) {
			fprintf(stderr, "teems-loadgen: final read of %s%u through %s:%u failed\n",
				opt.prefix, key, opt.final_addr[i].host, opt.final_addr[i].port);
			missing++;
		}
	}
	conn_close(c);
	return missing;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: teems-loadgen --addr H:P[,H:P...] --history FILE [--ca FILE]\n"
		"                     [--clients K] [--keys N] [--ops N] [--duration S] [--seed "
		"S]\n"
		"                     [--io-timeout MS] [--think-us US] [--reconnect-every N]\n"
		"                     [--final-reads 0|1]\n"
		"                     [--final-timeout S] [--final-addr H:P[,H:P...]] [--prefix "
		"P]\n"
		"  Random VGET/SET/VSET/DEL on N keys (P0..: default k0..) from K connections, "
		"recorded\n"
		"  as a history for teems-check (the keys must be new: the model starts empty).\n"
		"  Stops at --ops, --duration or SIGTERM, then reads every key\n"
		"  through every --final-addr (default --addr).\n"
		"  exit: 0 ok, 1 internal error, 2 usage, 4 a final read failed, 5 bad reply\n");
}

static bool parse_addrs(const char *s, struct addr *out, size_t *n)
{
	char buf[1024], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	*n = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(tok, ':'), *end;
		unsigned long port;

		if (*n == MAX_ADDRS || colon == NULL || colon == tok ||
		    (size_t)(colon - tok) >= sizeof(out->host))
			return false;
		port = strtoul(colon + 1, &end, 10);
		if (*end != '\0' || port == 0 || port > 65535)
			return false;
		memcpy(out[*n].host, tok, (size_t)(colon - tok));
		out[*n].host[colon - tok] = '\0';
		out[*n].port = (uint16_t)port;
		(*n)++;
	}
	return *n > 0;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
		return false;
	*v = x;
	return true;
}

static int parse_args(int argc, char **argv)
{
	uint64_t v = 0;

	opt.prefix = "k";
	opt.clients = 4;
	opt.keys = 5;
	opt.ops = UINT64_MAX;
	opt.duration_s = 60;
	opt.final_timeout_s = 20;
	opt.seed = 1;
	opt.io_timeout_ms = 3000;
	opt.final_reads = true;
	/* Every option takes a value: one step consumes two arguments. */
	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = val != NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!ok) {
			fprintf(stderr, "teems-loadgen: %s needs a value\n", a);
			return -1;
		}
		if (strcmp(a, "--addr") == 0) {
			ok = parse_addrs(val, opt.addr, &opt.n_addr);
		} else if (strcmp(a, "--final-addr") == 0) {
			ok = parse_addrs(val, opt.final_addr, &opt.n_final);
		} else if (strcmp(a, "--history") == 0) {
			opt.history = val;
		} else if (strcmp(a, "--ca") == 0) {
			opt.ca = val;
		} else if (strcmp(a, "--prefix") == 0) {
			ok = strlen(val) > 0 && strlen(val) < 24 &&
			     strpbrk(val, " %\"\t\r\n") == NULL;
			opt.prefix = val;
		} else if (strcmp(a, "--clients") == 0) {
			ok = parse_u64(val, 1, MAX_CLIENTS, &v);
			opt.clients = (unsigned)v;
		} else if (strcmp(a, "--keys") == 0) {
			ok = parse_u64(val, 1, MAX_KEYS, &v);
			opt.keys = (unsigned)v;
		} else if (strcmp(a, "--ops") == 0) {
			ok = parse_u64(val, 1, UINT64_MAX, &opt.ops);
		} else if (strcmp(a, "--duration") == 0) {
			ok = parse_u64(val, 1, 86400, &v);
			opt.duration_s = (double)v;
		} else if (strcmp(a, "--final-timeout") == 0) {
			ok = parse_u64(val, 1, 3600, &v);
			opt.final_timeout_s = (double)v;
		} else if (strcmp(a, "--seed") == 0) {
			ok = parse_u64(val, 0, UINT64_MAX, &opt.seed);
		} else if (strcmp(a, "--io-timeout") == 0) {
			ok = parse_u64(val, 10, 600000, &v);
			opt.io_timeout_ms = (unsigned)v;
		} else if (strcmp(a, "--think-us") == 0) {
			ok = parse_u64(val, 0, 10000000, &v);
			opt.think_us = (unsigned)v;
		} else if (strcmp(a, "--reconnect-every") == 0) {
			ok = parse_u64(val, 0, UINT64_MAX, &opt.reconnect_every);
		} else if (strcmp(a, "--final-reads") == 0) {
			ok = parse_u64(val, 0, 1, &v);
			opt.final_reads = v == 1;
		} else {
			fprintf(stderr, "teems-loadgen: unknown option %s\n", a);
			return -1;
		}
		if (!ok) {
			fprintf(stderr, "teems-loadgen: bad value for %s: '%s'\n", a, val);
			return -1;
		}
	}
	if (opt.n_addr == 0 || opt.history == NULL) {
		fprintf(stderr, "teems-loadgen: --addr and --history are required\n");
		return -1;
	}
	if (opt.n_final == 0) {
		memcpy(opt.final_addr, opt.addr, sizeof(opt.addr));
		opt.n_final = opt.n_addr;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct worker workers[MAX_CLIENTS];
	struct sigaction sa;
	char err[TEEMS_ERRBUF_LEN];
	unsigned missing = 0;
	int status = 0, rv;

	if (parse_args(argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	history_init(&hist);
	t_start_ns = now_ns();
	t_end_ns = t_start_ns + (uint64_t)(opt.duration_s * 1e9);

	for (unsigned i = 0; i < opt.clients; i++) {
		workers[i].id = i + 1;
		workers[i].rng =
			(opt.seed + 1) * 0x9e3779b97f4a7c15ull ^ (i + 1) * 0xbf58476d1ce4e5b9ull;
		if (workers[i].rng == 0)
			workers[i].rng = 1;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			fprintf(stderr, "teems-loadgen: cannot start a client thread\n");
			return 1;
		}
	}
	for (unsigned i = 0; i < opt.clients; i++)
		pthread_join(workers[i].thread, NULL);
	if (opt.final_reads)
		for (size_t i = 0; i < opt.n_final; i++)
			missing += final_reads(i);

	if (atomic_load(&hist_err) != 0) {
		fprintf(stderr, "teems-loadgen: recording the history: %s\n",
			teems_strerror(atomic_load(&hist_err)));
		status = 1;
	}
	rv = history_write_file(&hist, opt.history, err);
	if (rv != 0) {
		fprintf(stderr, "teems-loadgen: %s\n", err);
		status = 1;
	}
	printf("teems-loadgen: %zu ops in %.1f s: %" PRIuFAST64 " ok, %" PRIuFAST64
	       " fail, %" PRIuFAST64 " unknown; %" PRIuFAST64 " reconnects, %" PRIuFAST64
	       " other errors, %" PRIuFAST64 " bad replies; final reads %s\n",
	       hist.n, (double)(now_ns() - t_start_ns) / 1e9, atomic_load(&tally[T_OK]),
	       atomic_load(&tally[T_FAIL]), atomic_load(&tally[T_UNKNOWN]),
	       atomic_load(&tally[T_RECONNECT]), atomic_load(&tally[T_OTHER_ERR]),
	       atomic_load(&tally[T_BAD_REPLY]),
	       !opt.final_reads ? "skipped"
	       : missing == 0	? "complete"
				: "INCOMPLETE");
	history_free(&hist);
	if (status == 0 && atomic_load(&tally[T_BAD_REPLY]) > 0)
		status = 5;
	if (status == 0 && missing > 0)
		status = 4;
	return status;
}
