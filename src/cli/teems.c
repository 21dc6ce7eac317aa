/* teems: the command-line tool (DESIGN.md section 9; docs/OPERATIONS.md).
 *
 *   teems cluster up|status|down ...       a local cluster (teems_cluster.c)
 *   teems [TARGET] get|set|del|cas|vget|status ...
 *
 * TARGET is a cluster directory (--dir, default ./teems-cluster: its replicas are tried in
 * order) or one server (--host H --port P with --cacert F, or --plaintext). Exit codes and
 * message conventions are in teems_cli.h.
 *
 * Retrying on another replica: a request is retried on the next replica when the connection
 * could not be opened, or when the replica answered -TRYAGAIN (it cannot serve now and did
 * nothing; when every replica says so, the round is repeated until the timeout). Once a write has
 * been sent and the connection then fails, the outcome is unknown: it is reported as such (exit 3),
 * never retried, because a retried CAS could report a conflict with its own first attempt. Reads
 * are retried in that case too. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/teems_cli.h"
#include "cli/teems_recover.h"
#include "common/alloc.h"
#include "teems/err.h"

#define IO_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 2000
#define TRYAGAIN_PAUSE_MS 200

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void cli_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("teems: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: teems [TARGET] COMMAND [ARGS]\n"
		"\n"
		"Talks to a teems service (a replicated key-value store for TEEs) over RESP and "
		"TLS.\n"
		"\n"
		"Local cluster:\n"
		"  cluster up [--replicas 3|5] [--engine paxos|abd] [--sync always|rr|none]\n"
		"             [--base-port P]      start a cluster of teemsd on 127.0.0.1 in DIR;\n"
		"                                  on an existing cluster, start the replicas\n"
		"                                  that are not running\n"
		"  cluster status                  one line per replica\n"
		"  cluster down                    stop it (data kept)\n"
		"\n"
		"Keys and values:\n"
		"  get KEY                         print the value\n"
		"  set KEY VALUE                   store a value\n"
		"  del KEY...                      delete keys; prints how many existed\n"
		"  vget KEY                        print the version, then the value\n"
		"  cas KEY VALUE EXPECTED_VERSION  store only if the key is at that version\n"
		"                                  (0: the key must not exist); prints\n"
		"                                  \"ok version N\" or \"conflict: current version "
		"N\"\n"
		"  status                          TEEMS.STATUS of each replica\n"
		"  init [--force]                  make the operator key (DIR/operator.key,\n"
		"                                  .pub) and set recovery = operator in DIR\n"
		"  recover [--status]              what a stuck cluster proposes (recovery =\n"
		"                                  operator); --authorize [--key F] signs it\n"
		"\n"
		"Objects (encrypted blobs in an untrusted store; `teems obj --help`):\n"
		"  obj put FILE ID | get ID [FILE] | stat ID | rm ID | ls [PREFIX] |\n"
		"      policy ID [--readers U,.. --writers U,..] | gc [--grace DUR]\n"
		"\n"
		"TARGET (default: --dir ./%s):\n"
		"  --dir DIR                       a cluster directory: CA from DIR/ca.pem, "
		"replicas\n"
		"                                  from DIR/cluster.conf, tried in order\n"
		"  --host H --port P --cacert F    one server, TLS verified with CA file F\n"
		"  --host H --port P --plaintext   one server without TLS\n"
		"  --timeout MS                    per request (default %d)\n"
		"  --user U --pass P               authenticate (AUTH U P) on every connection\n"
		"                                  (or TEEMS_USER / TEEMS_PASS; without them:\n"
		"                                  the \"default\" user, if it needs no password)\n"
		"\n"
		"`teems COMMAND --help` describes one command.\n"
		"Exit status: 0 ok, 1 the operation failed (error reply, CAS conflict, key not\n"
		"found), 2 usage error, 3 the service cannot be reached.\n",
		CLI_DEFAULT_DIR, IO_TIMEOUT_MS);
}

/* ---------------------------------------------------------------------------------------------
 * Targets
 * ------------------------------------------------------------------------------------------- */

unsigned cli_target_count(const struct cli_target *t)
{
	return t->from_dir ? t->cluster.n : 1;
}

/* --user / --pass (or TEEMS_USER / TEEMS_PASS): sent with AUTH on every connection. */
static const char *cli_user, *cli_pass;

void cli_credentials(struct conn_options *o)
{
	o->user = cli_user;
	o->pass = cli_pass;
}

void cli_target_options(const struct cli_target *t, unsigned i, struct conn_options *o)
{
	memset(o, 0, sizeof(*o));
	cli_credentials(o);
	o->connect_timeout_ms =
		t->timeout_ms < CONNECT_TIMEOUT_MS ? t->timeout_ms : CONNECT_TIMEOUT_MS;
	o->io_timeout_ms = t->timeout_ms;
	if (t->from_dir) {
		o->host = t->cluster.r[i].client_host;
		o->port = t->cluster.r[i].client_port;
		o->ca_file = t->cluster.ca;
	} else {
		o->host = t->host;
		o->port = t->port;
		o->ca_file = t->cacert;
	}
}

static bool is_tryagain(const struct conn_reply *r)
{
	return r->type == CONN_REPLY_ERROR && strncmp(r->str, "TRYAGAIN", 8) == 0;
}

/* Sends argv to the first replica that serves it. On success *reply is the reply (possibly
 * an error reply other than TRYAGAIN) and *from the index of the replica. Returns an exit code:
 * CLI_OK, or CLI_UNREACHABLE / CLI_FAILED after saying why.
 *
 * TRYAGAIN means the replica did nothing (no leader yet, or busy): when some replica said so
 * and none served the request, the whole round is tried again after a pause, until the
 * timeout, so a request made during an election waits for its end instead of failing. */
static int request(const struct cli_target *t, size_t argc, const char *const *argv, bool write,
		   struct conn_reply **reply, unsigned *from)
{
	char err[TEEMS_ERRBUF_LEN] = "no replica";
	unsigned n = cli_target_count(t);
	int64_t deadline = now_ms() + t->timeout_ms;
	bool retry = true;

	*reply = NULL;
	for (unsigned round = 0; retry; round++) {
		bool first = round == 0;

		retry = false;
		if (!first)
			sleep_ms(TRYAGAIN_PAUSE_MS);
		for (unsigned i = 0; i < n; i++) {
			bool last = i + 1 == n;
			struct conn_options o;
			struct conn_reply *r = NULL;
			struct conn *c;
			int rv;

			cli_target_options(t, i, &o);
			if ((rv = conn_open(&o, &c, err)) != 0) {
				/* Local trouble (the CA file, memory) is the same for every
				 * replica. */
				if (!conn_err_is_unavailable(rv) && rv != CONN_ETLS) {
					cli_msg("%s", err);
					return CLI_FAILED;
				}
				if (first && !last)
					cli_msg("%s; trying the next replica", err);
				continue;
			}
			rv = conn_command(c, argc, argv, NULL, &r, err);
			conn_close(c);
			if (rv != 0) {
				if (write) {
					cli_msg("%s", err);
					cli_msg("the request was sent but no reply came: it may or "
						"may not have taken effect");
					return CLI_UNREACHABLE;
				}
				if (first && !last)
					cli_msg("%s; trying the next replica", err);
				continue;
			}
			if (is_tryagain(r)) {
				snprintf(err, sizeof(err), "%s:%u: %s", o.host, o.port, r->str);
				if (first)
					cli_msg("%s; %s", err,
						last ? "retrying" : "trying the next replica");
				conn_reply_free(r);
				retry = now_ms() < deadline;
				continue;
			}
			*reply = r;
			*from = i;
			return CLI_OK;
		}
	}
	cli_msg("%s", err);
	if (t->from_dir)
		cli_msg("cannot reach the service (tried every replica; `teems --dir %s cluster "
			"status` shows which run)",
			t->cluster.dir);
	else
		cli_msg("cannot reach the service");
	return CLI_UNREACHABLE;
}

/* An error reply is the operation failing. */
static int check_error(const struct conn_reply *r)
{
	if (r->type == CONN_REPLY_ERROR) {
		cli_msg("%s", r->str);
		return CLI_FAILED;
	}
	return CLI_OK;
}

static int unexpected(const char *cmd)
{
	cli_msg("%s: unexpected reply from the server", cmd);
	return CLI_FAILED;
}

static void print_value(const struct conn_reply *r)
{
	fwrite(r->str, 1, r->len, stdout);
	fputc('\n', stdout);
}

/* ---------------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------------- */

struct command {
	const char *name;
	int min_args, max_args; /* after the command name; max -1: unbounded */
	const char *args, *help;
	int (*run)(const struct cli_target *t, int argc, char **argv);
};

static int run_get(const struct cli_target *t, int argc, char **argv)
{
	const char *cmd[] = {"GET", argv[1]};
	struct conn_reply *r;
	unsigned from;
	int rv;

	if ((rv = request(t, 2, cmd, false, &r, &from)) != CLI_OK)
		return rv;
	if ((rv = check_error(r)) == CLI_OK) {
		if (r->type == CONN_REPLY_STRING) {
			print_value(r);
		} else if (r->type == CONN_REPLY_NIL) {
			cli_msg("%s: not found", argv[1]);
			rv = CLI_FAILED;
		} else {
			rv = unexpected("GET");
		}
	}
	conn_reply_free(r);
	return rv;
}

static int run_set(const struct cli_target *t, int argc, char **argv)
{
	const char *cmd[] = {"SET", argv[1], argv[2]};
	struct conn_reply *r;
	unsigned from;
	int rv;

	if ((rv = request(t, 3, cmd, true, &r, &from)) != CLI_OK)
		return rv;
	if ((rv = check_error(r)) == CLI_OK) {
		if (r->type == CONN_REPLY_STATUS)
			printf("%s\n", r->str);
		else
			rv = unexpected("SET");
	}
	conn_reply_free(r);
	return rv;
}

static int run_del(const struct cli_target *t, int argc, char **argv)
{
	const char **cmd = teems_calloc((size_t)argc, sizeof(*cmd));
	struct conn_reply *r;
	unsigned from;
	int rv;

	if (cmd == NULL) {
		cli_msg("out of memory");
		return CLI_FAILED;
	}
	cmd[0] = "DEL";
	for (int i = 1; i < argc; i++)
		cmd[i] = argv[i];
	rv = request(t, (size_t)argc, cmd, true, &r, &from);
	teems_free(cmd);
	if (rv != CLI_OK)
		return rv;
	if ((rv = check_error(r)) == CLI_OK) {
		if (r->type == CONN_REPLY_INTEGER)
			printf("%lld\n", r->integer);
		else
			rv = unexpected("DEL");
	}
	conn_reply_free(r);
	return rv;
}

static bool is_version(const char *s)
{
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && v <= LLONG_MAX;
}

/* VGET and VSET reply [value-or-status, version] (docs/OPERATIONS.md, "Commands"). */
static bool pair_reply(const struct conn_reply *r)
{
	return r->type == CONN_REPLY_ARRAY && r->elements == 2 &&
	       r->element[1]->type == CONN_REPLY_INTEGER;
}

static int run_cas(const struct cli_target *t, int argc, char **argv)
{
	const char *cmd[] = {"VSET", argv[1], argv[2], argv[3]};
	struct conn_reply *r;
	unsigned from;
	int rv;

	if (!is_version(argv[3])) {
		cli_msg("cas: EXPECTED_VERSION \"%s\" is not a version number", argv[3]);
		return CLI_USAGE;
	}
	if ((rv = request(t, 4, cmd, true, &r, &from)) != CLI_OK)
		return rv;
	if ((rv = check_error(r)) == CLI_OK) {
		if (!pair_reply(r) || r->element[0]->type != CONN_REPLY_INTEGER) {
			rv = unexpected("VSET");
		} else if (r->element[0]->integer == 1) {
			printf("ok version %lld\n", r->element[1]->integer);
		} else {
			printf("conflict: current version %lld\n", r->element[1]->integer);
			rv = CLI_FAILED;
		}
	}
	conn_reply_free(r);
	return rv;
}

static int run_vget(const struct cli_target *t, int argc, char **argv)
{
	const char *cmd[] = {"VGET", argv[1]};
	struct conn_reply *r;
	unsigned from;
	int rv;

	if ((rv = request(t, 2, cmd, false, &r, &from)) != CLI_OK)
		return rv;
	if ((rv = check_error(r)) == CLI_OK) {
		if (!pair_reply(r)) {
			rv = unexpected("VGET");
		} else {
			printf("version %lld\n", r->element[1]->integer);
			if (r->element[0]->type == CONN_REPLY_STRING) {
				print_value(r->element[0]);
			} else {
				cli_msg("%s: not found", argv[1]);
				rv = CLI_FAILED;
			}
		}
	}
	conn_reply_free(r);
	return rv;
}

/* TEEMS.STATUS of every replica (not the first that answers: the point is to see them all). */
static int run_status(const struct cli_target *t, int argc, char **argv)
{
	unsigned n = cli_target_count(t), answered = 0;
	int rv = CLI_OK;

	for (unsigned i = 0; i < n; i++) {
		char err[TEEMS_ERRBUF_LEN];
		struct conn_reply *r = NULL;
		struct conn_options o;
		struct conn *c;

		cli_target_options(t, i, &o);
		if (t->from_dir)
			printf("# r%u %s:%u\n", i, o.host, o.port);
		else
			printf("# %s:%u\n", o.host, o.port);
		if (conn_open(&o, &c, err) != 0) {
			printf("unreachable: %s\n\n", err);
			continue;
		}
		if (conn_commandv(c, &r, err, "TEEMS.STATUS", NULL) != 0) {
			printf("unreachable: %s\n\n", err);
		} else if (r->type == CONN_REPLY_STRING) {
			answered++;
			/* INFO format uses CRLF; print plain lines. */
			for (size_t k = 0; k < r->len; k++)
				if (r->str[k] != '\r')
					fputc(r->str[k], stdout);
			if (r->len > 0 && r->str[r->len - 1] != '\n')
				fputc('\n', stdout);
			fputc('\n', stdout);
		} else if (r->type == CONN_REPLY_ERROR) {
			answered++;
			printf("error: %s\n\n", r->str);
			rv = CLI_FAILED;
		} else {
			answered++;
			printf("error: unexpected reply to TEEMS.STATUS\n\n");
			rv = CLI_FAILED;
		}
		conn_reply_free(r);
		conn_close(c);
	}
	if (answered == 0) {
		cli_msg("no replica answered");
		return CLI_UNREACHABLE;
	}
	return rv;
}

static const struct command commands[] = {
	{"get", 1, 1, "KEY", "Prints the value of KEY (exit 1 if it does not exist).", run_get},
	{"set", 2, 2, "KEY VALUE", "Stores VALUE under KEY; prints OK.", run_set},
	{"del", 1, -1, "KEY...", "Deletes the keys; prints how many existed.", run_del},
	{"cas", 3, 3, "KEY VALUE EXPECTED_VERSION",
	 "Compare-and-set (VSET): stores VALUE only if KEY is at EXPECTED_VERSION (0: KEY must\n"
	 "not exist). Prints \"ok version N\" (the new version), or \"conflict: current version "
	 "N\"\n"
	 "and exits 1.",
	 run_cas},
	{"vget", 1, 1, "KEY",
	 "Prints \"version N\" and then the value of KEY (exit 1 if it does not exist; the\n"
	 "version line is printed anyway, for use with cas).",
	 run_vget},
	{"status", 0, 0, "",
	 "Prints TEEMS.STATUS of every replica of the cluster (or of the one --host):\n"
	 "role, ballot, incarnation, suspicious flag, commit index, sync policy, clock state.",
	 run_status},
};

static void command_usage(const struct command *c, FILE *out)
{
	fprintf(out,
		"usage: teems [TARGET] %s%s%s\n\n%s\n\nTARGET: --dir DIR (default ./%s), or "
		"--host H --port P (--cacert F | --plaintext). See teems --help.\n",
		c->name, c->args[0] ? " " : "", c->args, c->help, CLI_DEFAULT_DIR);
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	const char *dir = NULL, *host = NULL, *cacert = NULL;
	unsigned long port = 0, timeout = IO_TIMEOUT_MS;
	bool plaintext = false;
	struct cli_target *t;
	char err[TEEMS_ERRBUF_LEN];
	int i, rv;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return CLI_OK;
		}
		if (strcmp(a, "--plaintext") == 0) {
			plaintext = true;
			continue;
		}
		if (v == NULL) {
			cli_msg("%s: %s", a,
				strncmp(a, "--", 2) == 0 ? "missing its value" : "unknown option");
			return CLI_USAGE;
		}
		i++;
		if (strcmp(a, "--dir") == 0) {
			dir = v;
		} else if (strcmp(a, "--host") == 0) {
			host = v;
		} else if (strcmp(a, "--cacert") == 0) {
			cacert = v;
		} else if (strcmp(a, "--user") == 0) {
			cli_user = v;
		} else if (strcmp(a, "--pass") == 0) {
			cli_pass = v;
		} else if (strcmp(a, "--port") == 0 || strcmp(a, "--timeout") == 0) {
			unsigned long *out = a[2] == 'p' ? &port : &timeout;

			errno = 0;
			*out = strtoul(v, &end, 10);
			if (errno != 0 || *end != '\0' || end == v || v[0] == '-' || *out == 0 ||
			    *out > (a[2] == 'p' ? 65535ul : 3600000ul)) {
				cli_msg("%s %s: not a valid %s", a, v,
					a[2] == 'p' ? "port" : "timeout in ms");
				return CLI_USAGE;
			}
		} else {
			cli_msg("unknown option %s (teems --help lists them)", a);
			return CLI_USAGE;
		}
	}
	if (cli_user == NULL)
		cli_user = getenv("TEEMS_USER");
	if (cli_pass == NULL)
		cli_pass = getenv("TEEMS_PASS");
	if (cli_user != NULL && cli_pass == NULL) {
		cli_msg("--user needs --pass (or TEEMS_PASS)");
		return CLI_USAGE;
	}
	if (i == argc) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (dir != NULL && host != NULL) {
		cli_msg("--dir and --host are alternatives: give one");
		return CLI_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return CLI_OK;
	}
	if (strcmp(argv[i], "cluster") == 0) {
		if (host != NULL) {
			cli_msg("cluster commands work on a directory (--dir), not --host");
			return CLI_USAGE;
		}
		return cli_cluster_main(argc - i, argv + i, dir != NULL ? dir : CLI_DEFAULT_DIR);
	}
	if (strcmp(argv[i], "obj") == 0)
		return cli_obj_main(
			argc - i, argv + i,
			&(struct cli_globals){dir, host, cacert, port, timeout, plaintext});

	/* recovery = operator (teems_recover.c) */
	if (strcmp(argv[i], "init") == 0 || strcmp(argv[i], "recover") == 0)
		return (argv[i][0] == 'i' ? cli_init_main : cli_recover_main)(
			argc - i, argv + i,
			&(struct cli_globals){dir, host, cacert, port, timeout, plaintext});

	const struct command *cmd = NULL;

	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(commands[k].name, argv[i]) == 0)
			cmd = &commands[k];
	if (cmd == NULL) {
		cli_msg("unknown command \"%s\" (teems --help lists them)", argv[i]);
		return CLI_USAGE;
	}
	argc -= i;
	argv += i;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
			command_usage(cmd, stdout);
			return CLI_OK;
		}
	}
	if (argc - 1 < cmd->min_args || (cmd->max_args >= 0 && argc - 1 > cmd->max_args)) {
		cli_msg("%s: wrong number of arguments", cmd->name);
		command_usage(cmd, stderr);
		return CLI_USAGE;
	}

	if ((t = teems_calloc(1, sizeof(*t))) == NULL) {
		cli_msg("out of memory");
		return CLI_FAILED;
	}
	t->timeout_ms = (unsigned)timeout;
	if (host != NULL) {
		if (port == 0 || (cacert == NULL && !plaintext) || (cacert != NULL && plaintext)) {
			cli_msg("--host needs --port, and either --cacert FILE or --plaintext");
			teems_free(t);
			return CLI_USAGE;
		}
		if (cacert != NULL && access(cacert, R_OK) != 0) {
			cli_msg("--cacert %s: %s", cacert, strerror(errno));
			teems_free(t);
			return CLI_USAGE;
		}
		snprintf(t->host, sizeof(t->host), "%s", host);
		t->port = (uint16_t)port;
		t->cacert = cacert;
	} else {
		if (port != 0 || cacert != NULL || plaintext) {
			cli_msg("--port, --cacert and --plaintext go with --host");
			teems_free(t);
			return CLI_USAGE;
		}
		t->from_dir = true;
		if (cli_cluster_load(dir != NULL ? dir : CLI_DEFAULT_DIR, &t->cluster, err) != 0) {
			cli_msg("%s", err);
			if (dir == NULL)
				cli_msg("start one with `teems cluster up`, or name it with --dir");
			teems_free(t);
			return CLI_UNREACHABLE;
		}
	}
	rv = cmd->run(t, argc, argv);
	teems_free(t);
	fflush(stdout);
	return rv;
}
