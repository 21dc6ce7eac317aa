/* `teems obj`: objects in untrusted storage from the command line (include/teems/object.h,
 * docs/OBJECTS.md).
 *
 *   teems obj put FILE ID          (FILE "-": standard input)
 *   teems obj get ID [FILE]        (no FILE or "-": standard output)
 *   teems obj stat ID | rm ID | ls [PREFIX] [--long]
 *   teems obj policy ID [--readers U,.. --writers U,.. --owner U]
 *   teems obj gc [--grace DUR]
 *
 * Target options may come before `obj` (as for every teems command) or after the subcommand.
 * Exit codes (teems_cli.h): 0 ok; 1 the operation failed, with a message naming why
 * ("teems: get ID: blob tampered: ..."; the words are those of teems_obj_strerror); 2 usage;
 * 3 the service (or the store) cannot be reached.
 *
 * A get never leaves unauthenticated bytes behind: FILE is written under a temporary name and
 * put in place only when every byte authenticated (replace_file); standard output receives
 * nothing until then (the plaintext is spooled to an unlinked temporary file first). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/teems_cli.h"
#include "teems/object.h"

#define DEFAULT_GRACE_S 600

struct obj_args {
	const char *dir, *host, *cacert, *store, *user, *cache;
	unsigned long port, timeout_ms, chunk;
	bool plaintext, retry, quiet, long_ls;
	const char *readers, *writers, *owner, *grace;
	const char *pos[3];
	int npos;
};

static void obj_usage(FILE *out)
{
	fprintf(out,
		"usage: teems obj COMMAND [ARGS] [OPTIONS]\n"
		"\n"
		"Objects: bytes encrypted with a fresh key per version and kept in an untrusted\n"
		"store (a directory or an S3 bucket); their keys, digests and versions live in "
		"the\n"
		"teems service, so a get returns the newest version or an error, never altered "
		"data.\n"
		"\n"
		"  put FILE ID        store FILE (\"-\": stdin) as the next version of ID\n"
		"  get ID [FILE]      write ID's bytes to FILE (default stdout)\n"
		"  stat ID            version, size, sha256, owner, readers, writers\n"
		"  rm ID              delete ID and its blob\n"
		"  ls [PREFIX]        ids starting with PREFIX, one a line (--long: size, "
		"version)\n"
		"  policy ID          print ID's policy; with --readers/--writers/--owner, change "
		"it\n"
		"  gc                 remove store blobs that no object names, older than "
		"--grace,\n"
		"                     and what killed puts left (s3: incomplete uploads, also\n"
		"                     older than a day)\n"
		"\n"
		"Options:\n"
		"  --dir DIR          the cluster directory (default ./%s); store dir://DIR/store\n"
		"  --host H --port P (--cacert F | --plaintext) --store URL\n"
		"                     one replica and a store instead\n"
		"  --store URL        dir://PATH or s3://BUCKET[/PREFIX]?endpoint=URL[&region=R]\n"
		"                     (S3 keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)\n"
		"  --user U           who you are (the owner of objects you create); with\n"
		"                     TEEMS_PASS set in the environment, AUTH U is sent\n"
		"  --cache DIR        keep fetched blobs in DIR (used only when fresh metadata "
		"matches)\n"
		"  --retry            put: on a conflict with a concurrent writer, retry "
		"(default:\n"
		"                     fail with \"conflict\")\n"
		"  --readers U,..  --writers U,..  --owner U    policy (\"*\": everyone)\n"
		"  --grace DUR        gc: spare blobs younger than DUR (default 10m; 0, 30s, 2h)\n"
		"  --chunk-size N     put: plaintext bytes per encrypted chunk (default 1048576)\n"
		"  --quiet            no progress bar\n"
		"  --timeout MS       per service request (default 10000)\n"
		"\n"
		"Exit status: 0 ok; 1 failed, the message names why: not found, access denied,\n"
		"blob missing, blob tampered, blob stale, conflict; 2 usage; 3 the service or the\n"
		"store cannot be reached.\n",
		CLI_DEFAULT_DIR);
}

static int exit_code(int rc)
{
	switch (rc) {
	case TEEMS_OK:
		return CLI_OK;
	case TEEMS_OBJ_EUNAVAIL:
	case TEEMS_OBJ_ESTORE:
		return CLI_UNREACHABLE;
	case TEEMS_EINVAL:
		return CLI_USAGE;
	default:
		return CLI_FAILED;
	}
}

/* "teems: get ID: blob tampered: <detail>" and the exit code. */
static int report(const char *what, const char *id, int rc, const char *err)
{
	if (rc == TEEMS_OK)
		return CLI_OK;
	if (id != NULL)
		cli_msg("%s %s: %s%s%s", what, id, teems_obj_strerror(rc), err[0] ? ": " : "", err);
	else
		cli_msg("%s: %s%s%s", what, teems_obj_strerror(rc), err[0] ? ": " : "", err);
	return exit_code(rc);
}

/* ---------------------------------------------------------------------------------------------
 * Progress bar: on stderr when it is a terminal, for transfers that last over a second.
 * ------------------------------------------------------------------------------------------- */

struct progress {
	struct timespec start, last;
	bool shown;
};

static double since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	struct timespec now;
	double el, frac = total ? (double)done / (double)total : 1.0;
	int bar = (int)(frac * 30);

	clock_gettime(CLOCK_MONOTONIC, &now);
	el = since(&p->start, &now);
	if (el < 1.0 || (since(&p->last, &now) < 0.1 && done < total))
		return;
	p->last = now;
	p->shown = true;
	fprintf(stderr, "\r[%.*s%*s] %3d%% %8.1f / %.1f MiB  %6.1f MiB/s", bar,
		"##############################", 30 - bar, "", (int)(frac * 100),
		(double)done / 1048576.0, (double)total / 1048576.0, (double)done / 1048576.0 / el);
	fflush(stderr);
}

static void progress_end(struct progress *p)
{
	if (p->shown)
		fputc('\n', stderr);
}

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

static bool parse_ulong(const char *v, unsigned long max, unsigned long *out)
{
	char *end;

	if (v[0] < '0' || v[0] > '9')
		return false;
	errno = 0;
	*out = strtoul(v, &end, 10);
	return errno == 0 && *end == '\0' && *out <= max;
}

/* "0", "90", "30s", "10m", "2h", "1d" → seconds. */
static bool parse_duration(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n;

	if (v[0] < '0' || v[0] > '9')
		return false;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || n > (1ull << 40))
		return false;
	if (*end != '\0' && end[1] != '\0')
		return false;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		n *= 60;
		break;
	case 'h':
		n *= 3600;
		break;
	case 'd':
		n *= 86400;
		break;
	default:
		return false;
	}
	*out = n;
	return true;
}

static int parse_args(int argc, char **argv, const struct cli_globals *g, struct obj_args *a)
{
	memset(a, 0, sizeof(*a));
	a->dir = g->dir;
	a->host = g->host;
	a->cacert = g->cacert;
	a->port = g->port;
	a->timeout_ms = g->timeout_ms;
	a->plaintext = g->plaintext;
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **sv = NULL;

		if (o[0] != '-' || strcmp(o, "-") == 0) {
			if (a->npos == 3) {
				cli_msg("obj %s: too many arguments", argv[1]);
				return CLI_USAGE;
			}
			a->pos[a->npos++] = o;
			continue;
		}
		if (strcmp(o, "--plaintext") == 0) {
			a->plaintext = true;
			continue;
		} else if (strcmp(o, "--retry") == 0) {
			a->retry = true;
			continue;
		} else if (strcmp(o, "--quiet") == 0 || strcmp(o, "-q") == 0) {
			a->quiet = true;
			continue;
		} else if (strcmp(o, "--long") == 0 || strcmp(o, "-l") == 0) {
			a->long_ls = true;
			continue;
		}
		if (strcmp(o, "--dir") == 0)
			sv = &a->dir;
		else if (strcmp(o, "--host") == 0)
			sv = &a->host;
		else if (strcmp(o, "--cacert") == 0)
			sv = &a->cacert;
		else if (strcmp(o, "--store") == 0)
			sv = &a->store;
		else if (strcmp(o, "--user") == 0)
			sv = &a->user;
		else if (strcmp(o, "--cache") == 0)
			sv = &a->cache;
		else if (strcmp(o, "--readers") == 0)
			sv = &a->readers;
		else if (strcmp(o, "--writers") == 0)
			sv = &a->writers;
		else if (strcmp(o, "--owner") == 0)
			sv = &a->owner;
		else if (strcmp(o, "--grace") == 0)
			sv = &a->grace;
		if (v == NULL && (sv != NULL || strcmp(o, "--port") == 0 ||
				  strcmp(o, "--timeout") == 0 || strcmp(o, "--chunk-size") == 0)) {
			cli_msg("%s: missing its value", o);
			return CLI_USAGE;
		}
		if (sv != NULL) {
			*sv = v;
		} else if (strcmp(o, "--port") == 0) {
			if (!parse_ulong(v, 65535, &a->port) || a->port == 0) {
				cli_msg("--port %s: not a valid port", v);
				return CLI_USAGE;
			}
		} else if (strcmp(o, "--timeout") == 0) {
			if (!parse_ulong(v, 3600000, &a->timeout_ms) || a->timeout_ms == 0) {
				cli_msg("--timeout %s: not a valid timeout in ms", v);
				return CLI_USAGE;
			}
		} else if (strcmp(o, "--chunk-size") == 0) {
			if (!parse_ulong(v, 64ul << 20, &a->chunk) || a->chunk < 16) {
				cli_msg("--chunk-size %s: 16 to 67108864 bytes", v);
				return CLI_USAGE;
			}
		} else {
			cli_msg("obj: unknown option %s (teems obj --help lists them)", o);
			return CLI_USAGE;
		}
		i++;
	}
	if (a->dir != NULL && a->host != NULL) {
		cli_msg("--dir and --host are alternatives: give one");
		return CLI_USAGE;
	}
	if (a->host != NULL &&
	    (a->port == 0 || (a->cacert == NULL) == !a->plaintext || a->store == NULL)) {
		cli_msg("--host needs --port, either --cacert FILE or --plaintext, and --store "
			"URL");
		return CLI_USAGE;
	}
	if (a->host == NULL && (a->port != 0 || a->cacert != NULL || a->plaintext)) {
		cli_msg("--port, --cacert and --plaintext go with --host");
		return CLI_USAGE;
	}
	return CLI_OK;
}

static int open_client(const struct obj_args *a, struct progress *p, struct teems_obj_client **c)
{
	char err[TEEMS_ERRBUF_LEN] = "", addr[300];
	const char *addrs[1] = {addr};
	struct teems_obj_options o = {
		.store_url = a->store,
		.user = a->user,
		.password = a->user != NULL ? getenv("TEEMS_PASS") : NULL,
		.cache_dir = a->cache,
		.timeout_ms = (unsigned)a->timeout_ms,
		.chunk_size = (uint32_t)a->chunk,
	};
	int rc;

	if (a->host != NULL) {
		snprintf(addr, sizeof(addr), strchr(a->host, ':') ? "[%s]:%lu" : "%s:%lu", a->host,
			 a->port);
		o.addrs = addrs;
		o.naddrs = 1;
		o.ca_file = a->cacert;
	} else {
		o.cluster_dir = a->dir != NULL ? a->dir : CLI_DEFAULT_DIR;
	}
	if (!a->quiet && isatty(STDERR_FILENO)) {
		o.progress = progress_cb;
		o.progress_arg = p;
	}
	rc = teems_obj_client_open(&o, c, err);
	if (rc != TEEMS_OK)
		return report("obj", NULL, rc, err);
	return CLI_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------------- */

static int cmd_put(struct teems_obj_client *c, const struct obj_args *a, struct progress *p)
{
	const char *file = a->pos[0], *id = a->pos[1];
	char err[TEEMS_ERRBUF_LEN] = "";
	struct teems_obj_stat st;
	int fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		cli_msg("put %s: %s: %s", id, file, strerror(errno));
		return CLI_FAILED;
	}
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	rc = teems_obj_put_fd(c, id, fd, a->retry ? TEEMS_OBJ_RETRY : 0, &st, err);
	progress_end(p);
	if (fd != STDIN_FILENO)
		close(fd);
	if (rc == TEEMS_OK)
		printf("%s version %llu size %llu sha256 %s\n", id, (unsigned long long)st.version,
		       (unsigned long long)st.size, st.sha256_hex);
	return report("put", id, rc, err);
}

/* Copies an authenticated spool file to standard output. */
static int copy_out(int from)
{
	char buf[1 << 16];
	ssize_t n;

	if (lseek(from, 0, SEEK_SET) != 0)
		return -1;
	while ((n = read(from, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return -1;
			off += w;
		}
	}
	return n == 0 ? 0 : -1;
}

/* Puts the finished file tmp in place of file, atomically: a reader of file sees the old
 * bytes or all the new ones. A plain rename over an existing file makes ext4 (auto_da_alloc)
 * allocate and submit the writeback of the whole new file inside rename(2), a heuristic for
 * programs that replace files without fsync: over a 16 MiB file that rename took ~13 ms
 * here, the exchange and unlink below ~5 ms. Neither cp nor this command promises a durable
 * FILE (neither syncs it; after a crash FILE may be short, as after cp), so an
 * existing regular file is swapped with tmp instead (renameat2 RENAME_EXCHANGE, which has no
 * such heuristic) and the old bytes, now under tmp, are unlinked. Anything else (no FILE
 * yet, not a regular file, a file system without RENAME_EXCHANGE): a plain rename.
 * Returns 0 or -1 with errno set. */
static int replace_file(const char *tmp, const char *file)
{
	struct stat sb;

	if (lstat(file, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    renameat2(AT_FDCWD, tmp, AT_FDCWD, file, RENAME_EXCHANGE) != 0)
		return rename(tmp, file);
	if (unlink(tmp) == 0)
		return 0;
	/* file changed under us (it became a directory, say): put it back where it was */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, file, RENAME_EXCHANGE) == 0)
		errno = EEXIST;
	return -1;
}

static int cmd_get(struct teems_obj_client *c, const struct obj_args *a, struct progress *p)
{
	const char *id = a->pos[0], *file = a->npos > 1 ? a->pos[1] : "-";
	char err[TEEMS_ERRBUF_LEN] = "", tmp[4096], dirbuf[4096];
	bool to_stdout = strcmp(file, "-") == 0;
	mode_t mask = umask(022);
	int fd, rc;

	umask(mask); /* mkstemp makes 0600; the file gets the mode a plain create would */

	if (to_stdout) {
		const char *dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";

		fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		snprintf(tmp, sizeof(tmp), "a temporary file in %s", dir);
	} else {
		snprintf(dirbuf, sizeof(dirbuf), "%s", file);
		if (snprintf(tmp, sizeof(tmp), "%s/.teems-get-XXXXXX", dirname(dirbuf)) >=
		    (int)sizeof(tmp)) {
			cli_msg("get %s: %s: name too long", id, file);
			return CLI_USAGE;
		}
		fd = mkstemp(tmp);
	}
	if (fd < 0) {
		cli_msg("get %s: %s: %s", id, tmp, strerror(errno));
		return CLI_FAILED;
	}
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	rc = teems_obj_get_fd(c, id, fd, NULL, err);
	progress_end(p);
	if (rc == TEEMS_OK && to_stdout && copy_out(fd) != 0) {
		cli_msg("get %s: writing to standard output: %s", id, strerror(errno));
		close(fd);
		return CLI_FAILED;
	}
	if (rc == TEEMS_OK && !to_stdout &&
	    (fchmod(fd, 0666 & ~mask) != 0 || replace_file(tmp, file) != 0)) {
		cli_msg("get %s: %s: %s", id, file, strerror(errno));
		unlink(tmp);
		close(fd);
		return CLI_FAILED;
	}
	if (rc != TEEMS_OK && !to_stdout)
		unlink(tmp); /* never leave unauthenticated bytes behind */
	close(fd);
	return report("get", id, rc, err);
}

static int cmd_stat(struct teems_obj_client *c, const struct obj_args *a)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct teems_obj_stat st;
	int rc = teems_obj_stat(c, a->pos[0], &st, err);

	if (rc == TEEMS_OK)
		printf("id: %s\nversion: %llu\nsize: %llu\nsha256: %s\nowner: %s\nreaders: %s\n"
		       "writers: %s\nstore_name: %s\nchunk_size: %u\nrecord_version: %llu\n",
		       a->pos[0], (unsigned long long)st.version, (unsigned long long)st.size,
		       st.sha256_hex, st.owner, st.readers, st.writers, st.store_name,
		       st.chunk_size, (unsigned long long)st.record_version);
	return report("stat", a->pos[0], rc, err);
}

static int cmd_rm(struct teems_obj_client *c, const struct obj_args *a)
{
	char err[TEEMS_ERRBUF_LEN] = "";

	return report("rm", a->pos[0], teems_obj_rm(c, a->pos[0], err), err);
}

struct ls_ctx {
	struct teems_obj_client *c;
	bool long_ls;
	unsigned long n;
};

static int ls_cb(void *arg, const char *id, size_t len)
{
	struct ls_ctx *l = arg;
	char idz[TEEMS_OBJ_ID_MAX + 1], err[TEEMS_ERRBUF_LEN];
	struct teems_obj_stat st;

	l->n++;
	if (!l->long_ls || len > TEEMS_OBJ_ID_MAX) {
		fwrite(id, 1, len, stdout);
		fputc('\n', stdout);
		return 0;
	}
	memcpy(idz, id, len);
	idz[len] = '\0';
	if (teems_obj_stat(l->c, idz, &st, err) == TEEMS_OK)
		printf("%12llu %6llu %s\n", (unsigned long long)st.size,
		       (unsigned long long)st.version, idz);
	return 0;
}

static int cmd_ls(struct teems_obj_client *c, const struct obj_args *a)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct ls_ctx l = {c, a->long_ls, 0};
	uint64_t cursor = 0;
	int rc;

	do {
		rc = teems_obj_ls(c, a->npos > 0 ? a->pos[0] : "", &cursor, ls_cb, &l, err);
	} while (rc == TEEMS_OK && cursor != 0);
	return report("ls", NULL, rc, err);
}

static int cmd_policy(struct teems_obj_client *c, const struct obj_args *a)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	struct teems_obj_policy p;
	const char *id = a->pos[0];
	unsigned which = 0;
	int rc = TEEMS_OK;

	memset(&p, 0, sizeof(p));
	if (a->owner) {
		snprintf(p.owner, sizeof(p.owner), "%s", a->owner);
		which |= TEEMS_OBJ_POLICY_OWNER;
	}
	if (a->readers) {
		snprintf(p.readers, sizeof(p.readers), "%s", a->readers);
		which |= TEEMS_OBJ_POLICY_READERS;
	}
	if (a->writers) {
		snprintf(p.writers, sizeof(p.writers), "%s", a->writers);
		which |= TEEMS_OBJ_POLICY_WRITERS;
	}
	if (which != 0)
		rc = teems_obj_policy_set(c, id, &p, which, err);
	/* After a transfer the old owner may no longer see the policy: that is not a failure. */
	if (rc == TEEMS_OK && teems_obj_policy_get(c, id, &p, err) == TEEMS_OK)
		printf("owner: %s\nreaders: %s\nwriters: %s\n", p.owner, p.readers, p.writers);
	else if (rc == TEEMS_OK && which == 0)
		rc = teems_obj_policy_get(c, id, &p, err);
	return report("policy", id, rc, err);
}

static void gc_cb(void *arg, const char *name, uint64_t size)
{
	printf("removed %s %llu\n", name, (unsigned long long)size);
}

static int cmd_gc(struct teems_obj_client *c, const struct obj_args *a)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	uint64_t grace = DEFAULT_GRACE_S, removed, kept, unattributed;
	int rc;

	if (a->grace != NULL && !parse_duration(a->grace, &grace)) {
		cli_msg("gc: --grace %s: a duration (0, 90, 30s, 10m, 2h, 1d)", a->grace);
		return CLI_USAGE;
	}
	rc = teems_obj_gc(c, grace, gc_cb, NULL, &removed, &kept, &unattributed, err);
	printf("gc: %llu orphan blob(s) removed, %llu in use", (unsigned long long)removed,
	       (unsigned long long)kept);
	if (unattributed > 0)
		printf(", %llu kept: not attributable to an object visible to this user",
		       (unsigned long long)unattributed);
	printf("\n");
	return report("gc", NULL, rc, err);
}

/* Options that take a value (so that the subcommand can follow options: `obj --dir D get`). */
static bool takes_value(const char *o)
{
	static const char *const v[] = {"--dir",       "--host",  "--port",  "--cacert",
					"--store",     "--user",  "--cache", "--readers",
					"--writers",   "--owner", "--grace", "--timeout",
					"--chunk-size"};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (strcmp(o, v[i]) == 0)
			return true;
	return false;
}

/* Moves the subcommand to argv[1] when options come first. */
static void subcommand_first(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) {
			char *sub = argv[i];

			memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof(*argv));
			argv[1] = sub;
			return;
		}
		if (takes_value(argv[i]))
			i++;
	}
}

int cli_obj_main(int argc, char **argv, const struct cli_globals *g)
{
	struct teems_obj_client *c = NULL;
	struct progress p = {0};
	struct obj_args a;
	const char *cmd = argc > 1 ? argv[1] : NULL;
	static const struct {
		const char *name;
		int min, max; /* positional arguments */
	} subs[] = {{"put", 2, 2},    {"get", 1, 2}, {"stat", 1, 1}, {"rm", 1, 1},
		    {"policy", 1, 1}, {"ls", 0, 1},  {"gc", 0, 0}};
	size_t k;
	int rv;

	if (argc > 1 && argv[1][0] == '-' && strcmp(argv[1], "--help") != 0 &&
	    strcmp(argv[1], "-h") != 0) {
		subcommand_first(argc, argv);
		cmd = argv[1];
	}
	if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
	    strcmp(cmd, "help") == 0) {
		obj_usage(cmd == NULL ? stderr : stdout);
		return cmd == NULL ? CLI_USAGE : CLI_OK;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			obj_usage(stdout);
			return CLI_OK;
		}
	}
	if ((rv = parse_args(argc, argv, g, &a)) != CLI_OK)
		return rv;
	for (k = 0; k < sizeof(subs) / sizeof(subs[0]); k++)
		if (strcmp(cmd, subs[k].name) == 0)
			break;
	if (k == sizeof(subs) / sizeof(subs[0])) {
		cli_msg("obj: unknown command \"%s\" (teems obj --help lists them)", cmd);
		return CLI_USAGE;
	}
	if (a.npos < subs[k].min || a.npos > subs[k].max) {
		cli_msg("obj %s: wrong number of arguments (teems obj --help)", cmd);
		return CLI_USAGE;
	}
	if ((rv = open_client(&a, &p, &c)) != CLI_OK)
		return rv;
	if (strcmp(cmd, "put") == 0)
		rv = cmd_put(c, &a, &p);
	else if (strcmp(cmd, "get") == 0)
		rv = cmd_get(c, &a, &p);
	else if (strcmp(cmd, "stat") == 0)
		rv = cmd_stat(c, &a);
	else if (strcmp(cmd, "rm") == 0)
		rv = cmd_rm(c, &a);
	else if (strcmp(cmd, "ls") == 0)
		rv = cmd_ls(c, &a);
	else if (strcmp(cmd, "policy") == 0)
		rv = cmd_policy(c, &a);
	else
		rv = cmd_gc(c, &a);
	teems_obj_client_close(c);
	fflush(stdout);
	return rv;
}
