/* `teems cluster up|status|down`: a local cluster of teemsd processes on loopback, in the
 * layout of docs/OPERATIONS.md ("Local clusters"):
 *
 *   DIR/ca.pem                  the service CA's certificate (clients pin it)
 *   DIR/platform/               the sim platform's fused secret (platform_dir of every replica)
 *   DIR/cluster.conf            "<id> <pid> <client host:port> <peer host:port>" per replica
 *   DIR/store/                  the object store
 *   DIR/r<i>/teemsd.conf        written here, validated with teemsd's own parser
 *   DIR/r<i>/data/              data_dir; service-ca.sealed is the CA key sealed for r<i>
 *   DIR/r<i>/teemsd.log         stdout and stderr of the daemon
 *   DIR/r<i>/teemsd.pid
 *
 * The service CA is made here, before any replica runs (tls_ca_create), and sealed for each
 * replica under the identity that replica's teemsd will have: the same platform directory,
 * replica id and cluster id, and the measurement of the teemsd binary (the sim platform
 * measures the running executable, so the key is sealed to the SHA-256 of teemsd, not of this
 * tool). Rebuilding teemsd therefore makes an existing cluster's sealed keys unreadable, as a
 * new enclave build would on real hardware. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/teems_cli.h"
#include "cli/teems_recover.h"
#include "server/config.h"
#include "teems/err.h"
#include "tee/crypto.h"
#include "tee/tee.h"
#ifdef TEEMS_HAVE_TLS
#include "net/tls.h"
#endif

#define UP_WAIT_MS 20000
#define DOWN_WAIT_MS 5000
#define CLUSTER_ID_LEN 16

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

/* snprintf into a path buffer, refusing truncation. */
static bool pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool pathf(char *out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, CLI_PATH_LEN, fmt, ap);
	va_end(ap);
	return n >= 0 && n < CLI_PATH_LEN;
}

/* ---------------------------------------------------------------------------------------------
 * Reading the layout
 * ------------------------------------------------------------------------------------------- */

bool cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *colon, *h = s, *h_end;
	unsigned long p;
	char *end;

	if (s[0] == '[') {
		h = s + 1;
		h_end = strchr(h, ']');
		if (h_end == NULL || h_end[1] != ':')
			return false;
		colon = h_end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		h_end = colon;
	}
	if (h_end == h || (size_t)(h_end - h) >= cap)
		return false;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || p == 0 || p > 65535)
		return false;
	memcpy(host, h, (size_t)(h_end - h));
	host[h_end - h] = '\0';
	*port = (uint16_t)p;
	return true;
}

int cli_cluster_load(const char *dir, struct cli_cluster *cl, char *err)
{
	char path[CLI_PATH_LEN], line[2 * CLI_HOST_LEN + 64];
	unsigned lineno = 0;
	FILE *f;

	memset(cl, 0, sizeof(*cl));
	if (!pathf(cl->dir, "%s", dir) || !pathf(cl->ca, "%s/ca.pem", dir) ||
	    !pathf(path, "%s/cluster.conf", dir)) {
		teems_errf(err, -1, "%s: path too long", dir);
		return -1;
	}
	if ((f = fopen(path, "r")) == NULL) {
		teems_errf(err, -1, "no cluster in %s (%s: %s)", dir, path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char client[CLI_HOST_LEN + 8], peer[CLI_HOST_LEN + 8];
		struct cli_replica *r;
		unsigned id;
		long pid;

		lineno++;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (cl->n == CLI_MAX_REPLICAS ||
		    sscanf(line, "%u %ld %263s %263s", &id, &pid, client, peer) != 4 ||
		    id != cl->n || pid < 0)
			goto bad;
		r = &cl->r[cl->n];
		r->id = id;
		r->pid = (pid_t)pid;
		if (!cli_parse_hostport(client, r->client_host, sizeof(r->client_host),
					&r->client_port) ||
		    !cli_parse_hostport(peer, r->peer_host, sizeof(r->peer_host), &r->peer_port))
			goto bad;
		cl->n++;
	}
	fclose(f);
	if (cl->n == 0) {
		teems_errf(err, -1, "%s: no replicas listed", path);
		return -1;
	}
	return 0;

bad:
	fclose(f);
	teems_errf(err, -1,
		   "%s:%u: expected \"<id> <pid> <client host:port> <peer host:port>\" with ids "
		   "0, 1, ... in order",
		   path, lineno);
	return -1;
}

/* A process that exists, is not a zombie, and runs teemsd: a pid recycled by another program
 * is not ours to report or to signal. */
static bool is_teemsd(pid_t pid)
{
	char path[64], buf[512];
	ssize_t n;
	int fd;

	if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may contain spaces and parentheses, so use the last ')'. */
	const char *rp = strrchr(buf, ')');
	const char *lp = strchr(buf, '(');

	if (rp == NULL || lp == NULL || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
		return false;
	/* A prefix, so that $TEEMS_TEEMSD may name a variant build (teemsd-asan). */
	return rp - lp - 1 >= 6 && memcmp(lp + 1, "teemsd", 6) == 0;
}

pid_t cli_replica_pid(const char *dir, unsigned id)
{
	char path[CLI_PATH_LEN];
	long pid = 0;
	FILE *f;

	if (!pathf(path, "%s/r%u/teemsd.pid", dir, id) || (f = fopen(path, "r")) == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 && pid <= INT_MAX && is_teemsd((pid_t)pid) ? (pid_t)pid : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Probing replicas
 * ------------------------------------------------------------------------------------------- */

struct probe {
	bool answered;	   /* PING answered */
	bool auth_refused; /* it runs, but refused us: NOAUTH, bad credentials, not an admin */
	bool has_status;
	char role[32], engine[16], commit_index[32], lifecycle[32];
	char abd_state[16], abd_lease[4]; /* engine = abd: serving once fresh with a lease */
	char err[TEEMS_ERRBUF_LEN];
	int code; /* conn error of the failed probe */
};

static void probe_replica(const struct cli_cluster *cl, unsigned i, unsigned timeout_ms,
			  struct probe *p)
{
	struct conn_options o = {.host = cl->r[i].client_host,
				 .port = cl->r[i].client_port,
				 .ca_file = cl->ca,
				 .connect_timeout_ms = timeout_ms,
				 .io_timeout_ms = timeout_ms};
	struct conn_reply *r = NULL;
	struct conn *c;

	memset(p, 0, sizeof(*p));
	cli_credentials(&o);
	if ((p->code = conn_open(&o, &c, p->err)) != 0) {
		p->auth_refused = p->code == CONN_EAUTH;
		return;
	}
	if ((p->code = conn_commandv(c, &r, p->err, "PING", NULL)) != 0)
		goto out;
	if (r->type == CONN_REPLY_ERROR) {
		p->auth_refused = strncmp(r->str, "NOAUTH", 6) == 0;
		snprintf(p->err, sizeof(p->err), "PING: %s", r->str);
		goto out;
	}
	p->answered = true;
	conn_reply_free(r);
	if ((p->code = conn_commandv(c, &r, p->err, "TEEMS.STATUS", NULL)) != 0)
		goto out;
	if (r->type == CONN_REPLY_STRING) {
		p->has_status = true;
		conn_info_field(r->str, r->len, "role", p->role, sizeof(p->role));
		conn_info_field(r->str, r->len, "engine", p->engine, sizeof(p->engine));
		conn_info_field(r->str, r->len, "commit_index", p->commit_index,
				sizeof(p->commit_index));
		conn_info_field(r->str, r->len, "lifecycle", p->lifecycle, sizeof(p->lifecycle));
		conn_info_field(r->str, r->len, "abd_state", p->abd_state, sizeof(p->abd_state));
		conn_info_field(r->str, r->len, "abd_lease", p->abd_lease, sizeof(p->abd_lease));
	} else if (r->type == CONN_REPLY_ERROR) {
		p->auth_refused = strncmp(r->str, "NOPERM", 6) == 0; /* not an admin */
		snprintf(p->err, sizeof(p->err), "TEEMS.STATUS: %s", r->str);
	}
out:
	conn_reply_free(r);
	conn_close(c);
}

/* ---------------------------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------------------------- */

static int find_teemsd(char *out)
{
	const char *env = getenv("TEEMS_TEEMSD");
	char self[CLI_PATH_LEN];
	ssize_t n;
	char *slash;

	if (env != NULL && env[0] != '\0') {
		/* Absolute: the child changes directory before it executes it. */
		if (strlen(env) >= CLI_PATH_LEN || realpath(env, out) == NULL ||
		    access(out, X_OK) != 0) {
			cli_msg("$TEEMS_TEEMSD = %s: not an executable file", env);
			return -1;
		}
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		cli_msg("cannot find this executable (/proc/self/exe): %s", strerror(errno));
		return -1;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	*slash = '\0';
	if (!pathf(out, "%s/teemsd", self) || access(out, X_OK) != 0) {
		cli_msg("teemsd not found next to teems (%s/teemsd); set TEEMS_TEEMSD", self);
		return -1;
	}
	return 0;
}

/* The sim platform's measurement of an executable: SHA-256 of its bytes (src/tee/sim.c). */
static int measure_file(const char *path, uint8_t out[TEE_MEASUREMENT_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536];
	unsigned int len = 0;
	int fd, rv = -1;
	ssize_t n;

	if (md == NULL)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		cli_msg("%s: %s", path, strerror(errno));
		goto out;
	}
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out_fd;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
			goto out_fd;
	if (n < 0) {
		cli_msg("%s: %s", path, strerror(errno));
		goto out_fd;
	}
	if (EVP_DigestFinal_ex(md, out, &len) == 1 && len == TEE_MEASUREMENT_LEN)
		rv = 0;
out_fd:
	close(fd);
out:
	EVP_MD_CTX_free(md);
	return rv;
}

/* Starts teemsd detached: its own session, stdin from /dev/null, stdout and stderr appended to
 * DIR/r<i>/teemsd.log, working directory DIR/r<i>. */
static pid_t spawn_teemsd(const char *teemsd, const char *dir, unsigned id)
{
	char rdir[CLI_PATH_LEN], conf[CLI_PATH_LEN], log[CLI_PATH_LEN];
	pid_t pid;

	if (!pathf(rdir, "%s/r%u", dir, id) || !pathf(conf, "%s/teemsd.conf", rdir) ||
	    !pathf(log, "%s/teemsd.log", rdir))
		return -1;
	pid = fork();
	if (pid != 0)
		return pid;

	/* Child: only async-signal-safe calls until exec. */
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	int nullfd = open("/dev/null", O_RDONLY);
	sigset_t none;

	setsid();
	if (logfd < 0 || nullfd < 0 || chdir(rdir) != 0)
		_exit(126);
	dup2(nullfd, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	execl(teemsd, "teemsd", "--config", conf, (char *)NULL);
	{
		static const char msg[] = "teems: cannot execute teemsd\n";
		ssize_t w = write(2, msg, sizeof(msg) - 1);

		(void)w;
	}
	_exit(127);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	char tmp[CLI_PATH_LEN];
	size_t len = strlen(text);
	int fd;

	if (!pathf(tmp, "%s.tmp", path))
		return -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		goto fail;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
		close(fd);
		goto fail;
	}
	close(fd);
	if (rename(tmp, path) != 0)
		goto fail;
	return 0;
fail:
	cli_msg("cannot write %s: %s", path, strerror(errno));
	unlink(tmp);
	return -1;
}

static int write_cluster_conf(const struct cli_cluster *cl)
{
	char path[CLI_PATH_LEN], text[CLI_MAX_REPLICAS * (2 * CLI_HOST_LEN + 64)];
	size_t off = 0;

	if (!pathf(path, "%s/cluster.conf", cl->dir))
		return -1;
	text[0] = '\0';
	for (unsigned i = 0; i < cl->n; i++) {
		const struct cli_replica *r = &cl->r[i];

		bool v6c = strchr(r->client_host, ':') != NULL,
		     v6p = strchr(r->peer_host, ':') != NULL;

		/* IPv6 addresses in brackets, as cli_parse_hostport reads them. */
		off += (size_t)snprintf(
			text + off, sizeof(text) - off, "%u %ld %s%s%s:%u %s%s%s:%u\n", r->id,
			(long)r->pid, v6c ? "[" : "", r->client_host, v6c ? "]" : "",
			r->client_port, v6p ? "[" : "", r->peer_host, v6p ? "]" : "", r->peer_port);
	}
	return write_file(path, text, 0644);
}

static int write_pid_file(const char *dir, unsigned id, pid_t pid)
{
	char path[CLI_PATH_LEN], text[32];

	if (!pathf(path, "%s/r%u/teemsd.pid", dir, id))
		return -1;
	snprintf(text, sizeof(text), "%ld\n", (long)pid);
	return write_file(path, text, 0644);
}

static void remove_pid_file(const char *dir, unsigned id)
{
	char path[CLI_PATH_LEN];

	if (pathf(path, "%s/r%u/teemsd.pid", dir, id))
		unlink(path);
}

static void print_log_tail(const char *dir, unsigned id)
{
	char path[CLI_PATH_LEN], lines[16][512];
	unsigned n = 0;
	FILE *f;

	if (!pathf(path, "%s/r%u/teemsd.log", dir, id) || (f = fopen(path, "r")) == NULL)
		return;
	while (fgets(lines[n % 16], sizeof(lines[0]), f) != NULL)
		n++;
	fclose(f);
	fprintf(stderr, "teems: last lines of %s:\n", path);
	for (unsigned i = n > 16 ? n - 16 : 0; i < n; i++)
		fprintf(stderr, "    %s", lines[i % 16]);
	if (n > 0 && strchr(lines[(n - 1) % 16], '\n') == NULL)
		fputc('\n', stderr);
}

/* SIGTERM, then SIGKILL after DOWN_WAIT_MS. pids[i] 0 means nothing to stop. Returns how many
 * processes were signalled. */
static unsigned stop_replicas(const char *dir, const pid_t *pids, unsigned n, bool quiet)
{
	unsigned signalled = 0;
	int64_t deadline;
	bool any;

	for (unsigned i = 0; i < n; i++)
		if (pids[i] > 0 && kill(pids[i], SIGTERM) == 0)
			signalled++;
	deadline = now_ms() + DOWN_WAIT_MS;
	do {
		any = false;
		for (unsigned i = 0; i < n; i++) {
			/* Our own children (after a failed `up`) must be reaped here. */
			if (pids[i] > 0)
				waitpid(pids[i], NULL, WNOHANG);
			if (pids[i] > 0 && is_teemsd(pids[i]))
				any = true;
		}
		if (any)
			sleep_ms(50);
	} while (any && now_ms() < deadline);
	for (unsigned i = 0; i < n; i++) {
		if (pids[i] > 0 && is_teemsd(pids[i])) {
			if (!quiet)
				cli_msg("r%u (pid %ld) did not stop within %d s: killing it", i,
					(long)pids[i], DOWN_WAIT_MS / 1000);
			kill(pids[i], SIGKILL);
			for (int k = 0; k < 40 && is_teemsd(pids[i]); k++) {
				waitpid(pids[i], NULL, WNOHANG);
				sleep_ms(50);
			}
		}
		if (pids[i] > 0)
			remove_pid_file(dir, i);
	}
	return signalled;
}

/* ---------------------------------------------------------------------------------------------
 * cluster up
 * ------------------------------------------------------------------------------------------- */

struct up_opts {
	unsigned replicas;
	const char *engine, *sync;
	unsigned base_port;
	bool operator_recovery; /* --recovery operator: teems init's key pair, before the start */
	bool layout_opts;	/* any of the above given explicitly */
};

/* Without --base-port, replica ports are drawn at random from [PICK_LO, the first port of the
 * kernel's ephemeral range). Ephemeral ports are what the kernel hands to outgoing connections
 * (every client's, every replica's dial to a peer): a replica's port taken from there can be
 * held by such a connection when the replica restarts and must bind it again. */
#define PICK_LO 10000u
#define PICK_MIN_ROOM 1024u /* a narrower window: port 0, the kernel's choice */
#define PICK_TRIES 100

/* The first port of net.ipv4.ip_local_port_range (Linux's default when unreadable). */
static unsigned ephemeral_first(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	unsigned lo = 32768, hi;

	if (f != NULL) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2 || lo > 65535)
			lo = 32768;
		fclose(f);
	}
	return lo;
}

/* A socket bound to 127.0.0.1:port (0: the kernel's choice); the port it got in *got. */
static int bind_loopback(unsigned port, uint16_t *got)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*got = ntohs(a.sin_port);
	return fd;
}

/* Distinct free loopback ports: bound all at once so none is picked twice, then released for
 * teemsd. With base: base + k, checked free; without, random ones as above. */
static int pick_ports(unsigned count, unsigned base, uint16_t *ports)
{
	int fds[2 * CLI_MAX_REPLICAS];
	unsigned first = ephemeral_first();
	bool draw = base == 0 && first >= PICK_LO + PICK_MIN_ROOM;

	for (unsigned k = 0; k < count; k++) {
		unsigned port = base != 0 ? base + k : 0;

		for (int t = 0; t < PICK_TRIES; t++) {
			uint32_t r;

			if (draw) {
				if (tee_random(&r, sizeof(r)) != 0) {
					errno = EIO;
					break;
				}
				port = PICK_LO + r % (first - PICK_LO);
			}
			fds[k] = bind_loopback(port, &ports[k]);
			if (fds[k] >= 0 || !draw || errno != EADDRINUSE)
				break;
		}
		if (fds[k] < 0) {
			cli_msg("cannot use port 127.0.0.1:%u: %s", port, strerror(errno));
			for (unsigned j = 0; j < k; j++)
				close(fds[j]);
			return -1;
		}
	}
	for (unsigned k = 0; k < count; k++)
		close(fds[k]);
	return 0;
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (d == NULL)
		return errno == ENOENT;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = false;
	closedir(d);
	return empty;
}

static int mkdir_one(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST) {
		cli_msg("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The text of DIR/r<i>/teemsd.conf (docs/OPERATIONS.md is the reference for each key). */
static int conf_text(const struct cli_cluster *cl, unsigned id, unsigned f, unsigned m_r,
		     const struct up_opts *u, const uint8_t cluster_id[CLUSTER_ID_LEN], char *out,
		     size_t cap)
{
	char peers[CLI_MAX_REPLICAS * (CLI_HOST_LEN + 16)] = "", hex[2 * CLUSTER_ID_LEN + 1];
	size_t off = 0;
	int n;

	for (unsigned i = 0; i < cl->n; i++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off, "%s%u@%s:%u",
					i ? ", " : "", i, cl->r[i].peer_host, cl->r[i].peer_port);
	for (unsigned i = 0; i < CLUSTER_ID_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", cluster_id[i]);
	n = snprintf(out, cap,
		     "# Replica %u of the local cluster in %s, written by `teems cluster up`.\n"
		     "# Every setting: docs/OPERATIONS.md or `teemsd --help`.\n"
		     "replica_id = %u\n"
		     "peers = %s\n"
		     "f = %u\n"
		     "m_r = %u\n"
		     "engine = %s\n"
		     "sync = %s\n"
		     "cluster_id = %s\n"
		     "platform_dir = \"%s/platform\"\n"
		     "data_dir = \"%s/r%u/data\"\n"
		     "service_ca_sealed = \"%s/r%u/data/service-ca.sealed\"\n"
		     "listen = %s:%u\n"
		     "client_tls = on\n",
		     id, cl->dir, id, peers, f, m_r, u->engine, u->sync, hex, cl->dir, cl->dir, id,
		     cl->dir, id, cl->r[id].client_host, cl->r[id].client_port);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Checks the file with teemsd's own parser, so a cluster never starts with a config its
 * daemon refuses. */
static int conf_check(const char *text, const char *name)
{
	char err[TEEMS_ERRBUF_LEN];
	struct teems_config c;

	config_defaults(&c);
	if (config_parse_text(&c, text, strlen(text), name, err) != 0 ||
	    config_validate(&c, err) != 0) {
		cli_msg("generated %s is refused: %s", name, err);
		return -1;
	}
	return 0;
}

#ifdef TEEMS_HAVE_TLS
static int make_service_ca(const struct cli_cluster *cl, const char *teemsd,
			   const uint8_t cluster_id[CLUSTER_ID_LEN])
{
	char platform[CLI_PATH_LEN], sealed[CLI_MAX_REPLICAS][CLI_PATH_LEN];
	const char *sealed_paths[CLI_MAX_REPLICAS];
	struct tee *tees[CLI_MAX_REPLICAS] = {0};
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	char err[TEEMS_ERRBUF_LEN];
	int rv = -1;

	if (!pathf(platform, "%s/platform", cl->dir) || measure_file(teemsd, measurement) != 0)
		return -1;
	for (unsigned i = 0; i < cl->n; i++) {
		struct tee_options o = {
			.platform_dir = platform,
			.replica_id = i,
			.cluster_id = cluster_id,
			.cluster_id_len = CLUSTER_ID_LEN,
			.measurement = measurement,
			.no_clock = true,
		};

		if (!pathf(sealed[i], "%s/r%u/data/service-ca.sealed", cl->dir, i))
			goto out;
		sealed_paths[i] = sealed[i];
		if (tee_open(&o, &tees[i], err) != 0) {
			cli_msg("cannot open the platform for r%u: %s", i, err);
			goto out;
		}
	}
	if (tls_ca_create(cl->ca, (struct tee *const *)tees, sealed_paths, cl->n, err) != 0) {
		cli_msg("cannot create the service CA: %s", err);
		goto out;
	}
	rv = 0;
out:
	for (unsigned i = 0; i < cl->n; i++)
		tee_close(tees[i]);
	return rv;
}
#else
static int make_service_ca(const struct cli_cluster *cl, const char *teemsd,
			   const uint8_t cluster_id[CLUSTER_ID_LEN])
{
	cli_msg("this teems was built without the TLS module (teems_tls): cannot create the "
		"service CA");
	return -1;
}
#endif

/* Creates the layout for a new cluster in cl->dir (absolute). */
static int create_layout(struct cli_cluster *cl, const struct up_opts *u, const char *teemsd)
{
	uint16_t ports[2 * CLI_MAX_REPLICAS];
	uint8_t cluster_id[CLUSTER_ID_LEN];
	char path[CLI_PATH_LEN], text[8192];
	unsigned n = u->replicas, f = n == 5 ? 2 : 1, m_r = f;

	/* RR quorums: N = max(M_R, F) + F + 1 (DESIGN.md section 3): 3 = 1+1+1, 5 = 2+2+1. */
	if (pick_ports(2 * n, u->base_port, ports) != 0)
		return -1;
	cl->n = n;
	for (unsigned i = 0; i < n; i++) {
		cl->r[i].id = i;
		cl->r[i].pid = 0;
		snprintf(cl->r[i].client_host, CLI_HOST_LEN, "127.0.0.1");
		snprintf(cl->r[i].peer_host, CLI_HOST_LEN, "127.0.0.1");
		cl->r[i].client_port = ports[i];
		cl->r[i].peer_port = ports[n + i];
	}
	if (tee_random(cluster_id, sizeof(cluster_id)) != 0) {
		cli_msg("cannot draw a cluster id from the OS random generator");
		return -1;
	}
	if (!pathf(path, "%s/platform", cl->dir) || mkdir_one(path, 0700) != 0 ||
	    !pathf(path, "%s/store", cl->dir) || mkdir_one(path, 0700) != 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (!pathf(path, "%s/r%u", cl->dir, i) || mkdir_one(path, 0700) != 0 ||
		    !pathf(path, "%s/r%u/data", cl->dir, i) || mkdir_one(path, 0700) != 0)
			return -1;
		if (!pathf(path, "%s/r%u/teemsd.conf", cl->dir, i) ||
		    conf_text(cl, i, f, m_r, u, cluster_id, text, sizeof(text)) != 0 ||
		    conf_check(text, path) != 0 || write_file(path, text, 0600) != 0)
			return -1;
	}
	if (make_service_ca(cl, teemsd, cluster_id) != 0)
		return -1;
	return write_cluster_conf(cl);
}

/* Every replica refused our credentials (or their absence): waiting will not change that, so
 * say what to do. An operator who set a password on "default" passes it on every command. */
static bool refused(const struct cli_cluster *cl, const struct probe *p)
{
	struct conn_options o = {0};

	for (unsigned i = 0; i < cl->n; i++)
		if (!p[i].auth_refused)
			return false;
	cli_credentials(&o);
	cli_msg("the replicas run but refuse %s: %s",
		o.pass != NULL ? "these credentials" : "commands without credentials", p[0].err);
	if (o.pass == NULL)
		cli_msg("give an admin's credentials: --user U --pass P, or TEEMS_USER and "
			"TEEMS_PASS");
	return true;
}

/* Waits until every replica answers PING and one reports role:leader (or, on the ABD engine,
 * which has no leader, until every replica is fresh and holds its configuration lease).
 * Returns an exit code. */
static int wait_ready(struct cli_cluster *cl, const pid_t *pids)
{
	int64_t deadline = now_ms() + UP_WAIT_MS;
	struct probe p[CLI_MAX_REPLICAS];

	for (;;) {
		bool all = true, leader = false, abd = true;

		for (unsigned i = 0; i < cl->n; i++) {
			int status;

			if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
				if (WIFEXITED(status))
					cli_msg("r%u exited with status %d", i,
						WEXITSTATUS(status));
				else
					cli_msg("r%u was killed by signal %d", i,
						WIFSIGNALED(status) ? WTERMSIG(status) : 0);
				print_log_tail(cl->dir, i);
				return CLI_FAILED;
			}
			probe_replica(cl, i, 500, &p[i]);
			all = all && p[i].answered;
			leader = leader || strcmp(p[i].role, "leader") == 0;
			/* ABD has no leader: every replica coordinates, once fresh (past its
			 * genesis check and recovery) and holding its configuration lease. */
			abd = abd && p[i].has_status && strcmp(p[i].engine, "abd") == 0 &&
			      strcmp(p[i].abd_state, "fresh") == 0 &&
			      strcmp(p[i].abd_lease, "1") == 0;
		}
		if (all && (leader || abd))
			return CLI_OK;
		if (refused(cl, p))
			return CLI_FAILED;
		if (now_ms() >= deadline)
			break;
		sleep_ms(100);
	}
	cli_msg("the cluster did not become ready within %d s:", UP_WAIT_MS / 1000);
	for (unsigned i = 0; i < cl->n; i++) {
		if (!p[i].answered)
			fprintf(stderr, "    r%u: %s\n", i, p[i].err);
		else
			fprintf(stderr, "    r%u: answers, role %s%s\n", i,
				p[i].role[0] ? p[i].role : "unknown",
				p[i].has_status ? "" : " (no TEEMS.STATUS)");
	}
	fprintf(stderr, "teems: logs are in %s/r<i>/teemsd.log\n", cl->dir);
	return CLI_UNREACHABLE;
}

static int cluster_up(const char *dir_arg, const struct up_opts *u)
{
	char dir[CLI_PATH_LEN], path[CLI_PATH_LEN], teemsd[CLI_PATH_LEN], err[TEEMS_ERRBUF_LEN];
	struct cli_cluster cl;
	pid_t pids[CLI_MAX_REPLICAS] = {0};
	pid_t running[CLI_MAX_REPLICAS] = {0};
	unsigned n_running = 0;
	bool existing;
	int rv;

	if (find_teemsd(teemsd) != 0)
		return CLI_FAILED;
	if (mkdir_one(dir_arg, 0700) != 0)
		return CLI_FAILED;
	if (realpath(dir_arg, dir) == NULL) {
		cli_msg("%s: %s", dir_arg, strerror(errno));
		return CLI_FAILED;
	}
	if (!pathf(path, "%s/cluster.conf", dir))
		return CLI_FAILED;
	existing = access(path, F_OK) == 0;
	if (existing) {
		if (cli_cluster_load(dir, &cl, err) != 0) {
			cli_msg("%s", err);
			return CLI_FAILED;
		}
		/* `up` brings every replica up: the ones still running are left alone (a
		 * replica that crashed, or was stopped by hand, is restarted on its data). */
		for (unsigned i = 0; i < cl.n; i++) {
			running[i] = cli_replica_pid(dir, i);
			if (running[i] > 0)
				n_running++;
		}
		if (n_running == cl.n) {
			cli_msg("%s already has a running cluster (every replica is up); "
				"`teems cluster down --dir %s` stops it",
				dir, dir_arg);
			return CLI_FAILED;
		}
		if (u->layout_opts)
			cli_msg("restarting the existing cluster in %s: --replicas, --engine, "
				"--sync and --base-port are ignored",
				dir);
	} else {
		if (!dir_is_empty(dir)) {
			cli_msg("%s is not empty and holds no cluster (no cluster.conf): refusing "
				"to write into it (a `cluster up` that failed half-way leaves such "
				"a directory: remove it, or choose another --dir)",
				dir);
			return CLI_FAILED;
		}
		memset(&cl, 0, sizeof(cl));
		if (!pathf(cl.dir, "%s", dir) || !pathf(cl.ca, "%s/ca.pem", dir))
			return CLI_FAILED;
		if (create_layout(&cl, u, teemsd) != 0)
			return CLI_FAILED;
		if (u->operator_recovery && cli_init_operator(dir, false) != CLI_OK)
			return CLI_FAILED;
	}
	/* The configs name absolute paths; make the messages match. */
	if (!pathf(cl.dir, "%s", dir) || !pathf(cl.ca, "%s/ca.pem", dir))
		return CLI_FAILED;

	for (unsigned i = 0; i < cl.n; i++) {
		if (running[i] > 0) {
			cl.r[i].pid = running[i];
			continue;
		}
		pids[i] = spawn_teemsd(teemsd, dir, i);
		if (pids[i] < 0) {
			cli_msg("cannot start r%u: %s", i, strerror(errno));
			pids[i] = 0;
			rv = CLI_FAILED;
			goto fail;
		}
		cl.r[i].pid = pids[i];
		if (write_pid_file(dir, i, pids[i]) != 0) {
			rv = CLI_FAILED;
			goto fail;
		}
	}
	if (write_cluster_conf(&cl) != 0) {
		rv = CLI_FAILED;
		goto fail;
	}
	if ((rv = wait_ready(&cl, pids)) != CLI_OK)
		goto fail;

	if (n_running > 0) {
		printf("teems: restarted");
		for (unsigned i = 0; i < cl.n; i++)
			if (running[i] <= 0)
				printf(" r%u", i);
		printf(" in %s (the other replicas were running)\n", dir);
	} else {
		printf("teems: cluster of %u replicas %s in %s\n", cl.n,
		       existing ? "restarted" : "up", dir);
	}
	printf("  redis-cli --tls --cacert %s/ca.pem -p %u\n", dir, cl.r[0].client_port);
	printf("  teems --dir %s set a 1\n", dir);
	printf("  teems --dir %s cluster down\n", dir);
	return CLI_OK;

fail:
	cli_msg("stopping the replicas that were started");
	stop_replicas(dir, pids, cl.n, true);
	for (unsigned i = 0; i < cl.n; i++)
		cl.r[i].pid = running[i] > 0 ? running[i] : 0;
	write_cluster_conf(&cl);
	return rv;
}

/* ---------------------------------------------------------------------------------------------
 * cluster status, cluster down
 * ------------------------------------------------------------------------------------------- */

static int cluster_status(const char *dir)
{
	char err[TEEMS_ERRBUF_LEN];
	struct cli_cluster cl;
	struct probe p[CLI_MAX_REPLICAS];
	unsigned reachable = 0;

	if (cli_cluster_load(dir, &cl, err) != 0) {
		cli_msg("%s", err);
		return CLI_UNREACHABLE;
	}
	for (unsigned i = 0; i < cl.n; i++) {
		pid_t pid = cli_replica_pid(dir, i);
		char pidtext[40], addr[CLI_HOST_LEN + 8];

		probe_replica(&cl, i, 1000, &p[i]);
		if (p[i].answered)
			reachable++;
		if (pid > 0)
			snprintf(pidtext, sizeof(pidtext), "%ld (alive)", (long)pid);
		else if (cl.r[i].pid > 0)
			snprintf(pidtext, sizeof(pidtext), "%ld (dead)", (long)cl.r[i].pid);
		else
			snprintf(pidtext, sizeof(pidtext), "- (stopped)");
		snprintf(addr, sizeof(addr), "%s:%u", cl.r[i].client_host, cl.r[i].client_port);
		printf("r%-2u pid %-16s %-9s %-21s commit %s%s%s\n", i, pidtext,
		       p[i].answered ? (p[i].role[0] ? p[i].role : "?") : "-", addr,
		       p[i].commit_index[0] ? p[i].commit_index : "-", p[i].answered ? "" : "  ",
		       p[i].answered ? "" : p[i].err);
	}
	if (reachable == 0 && refused(&cl, p))
		return CLI_FAILED;
	return reachable > 0 ? CLI_OK : CLI_UNREACHABLE;
}

static int cluster_down(const char *dir)
{
	char err[TEEMS_ERRBUF_LEN];
	pid_t pids[CLI_MAX_REPLICAS] = {0};
	struct cli_cluster cl;
	unsigned running = 0;

	if (cli_cluster_load(dir, &cl, err) != 0) {
		cli_msg("%s", err);
		return CLI_FAILED;
	}
	for (unsigned i = 0; i < cl.n; i++) {
		pids[i] = cli_replica_pid(dir, i);
		if (pids[i] > 0)
			running++;
		else
			remove_pid_file(dir, i);
	}
	stop_replicas(dir, pids, cl.n, false);
	for (unsigned i = 0; i < cl.n; i++)
		cl.r[i].pid = 0;
	write_cluster_conf(&cl);
	if (running == 0)
		printf("teems: no replica was running in %s\n", dir);
	else
		printf("teems: stopped %u replica%s in %s (data kept)\n", running,
		       running == 1 ? "" : "s", dir);
	return CLI_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------------------------- */

static void cluster_usage(FILE *out)
{
	fprintf(out,
		"usage: teems [--dir DIR] cluster up [--replicas 3|5] [--engine paxos|abd]\n"
		"                                  [--sync always|rr|none] [--base-port P]\n"
		"                                  [--recovery auto|operator]\n"
		"       teems [--dir DIR] cluster status\n"
		"       teems [--dir DIR] cluster down\n"
		"\n"
		"A local cluster of teemsd processes on 127.0.0.1 in DIR (default ./%s).\n"
		"\n"
		"  up      creates DIR (which must be empty or absent), a service CA (DIR/ca.pem)\n"
		"          sealed to each replica, one teemsd.conf per replica, starts the "
		"replicas\n"
		"          in the background and waits up to %d s for them to answer and elect a\n"
		"          leader. On a DIR whose cluster is stopped, restarts it with its data.\n"
		"          --replicas 3 tolerates F=1 crashes and M_R=1 restart-rollbacks,\n"
		"          --replicas 5 F=2, M_R=2. Ports are free ones picked at random below\n"
		"          the kernel's ephemeral range (ip_local_port_range), or\n"
		"          --base-port P: clients on P..P+N-1, replicas on P+N..P+2N-1.\n"
		"          teemsd is looked for next to teems, or in $TEEMS_TEEMSD.\n"
		"          The sealed keys are bound to the teemsd binary (the sim platform\n"
		"          measures it), so a cluster made before teemsd was rebuilt does not\n"
		"          restart: make a new one.\n"
		"  status  one line per replica: id, pid, role, client address, commit index.\n"
		"  down    stops every replica (SIGTERM, SIGKILL after %d s); the data is kept.\n"
		"\n"
		"Once \"default\" has a password, up and status need an admin's credentials\n"
		"(TEEMS.STATUS is @admin): teems --user U --pass P, or TEEMS_USER and TEEMS_PASS.\n"
		"\n"
		"Exit status: 0 ok, 1 failed, 2 usage, 3 no replica reachable.\n",
		CLI_DEFAULT_DIR, UP_WAIT_MS / 1000, DOWN_WAIT_MS / 1000);
}

static bool parse_uint(const char *s, unsigned long max, unsigned *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v > max || s[0] == '-')
		return false;
	*out = (unsigned)v;
	return true;
}

int cli_cluster_main(int argc, char **argv, const char *dir)
{
	struct up_opts u = {.replicas = 3, .engine = "paxos", .sync = "rr"};
	const char *sub;
	int i;

	if (argc < 2) {
		cluster_usage(stderr);
		return CLI_USAGE;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		cluster_usage(stdout);
		return CLI_OK;
	}
	for (i = 2; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cluster_usage(stdout);
			return CLI_OK;
		}
		if (strcmp(a, "--dir") == 0 && v != NULL) {
			dir = v;
		} else if (strcmp(sub, "up") == 0 && strcmp(a, "--replicas") == 0 && v != NULL) {
			if (!parse_uint(v, 5, &u.replicas) ||
			    (u.replicas != 3 && u.replicas != 5)) {
				cli_msg("--replicas %s: must be 3 or 5", v);
				return CLI_USAGE;
			}
			u.layout_opts = true;
		} else if (strcmp(sub, "up") == 0 && strcmp(a, "--engine") == 0 && v != NULL) {
			if (strcmp(v, "paxos") != 0 && strcmp(v, "abd") != 0) {
				cli_msg("--engine %s: must be paxos or abd", v);
				return CLI_USAGE;
			}
			u.engine = v;
			u.layout_opts = true;
		} else if (strcmp(sub, "up") == 0 && strcmp(a, "--sync") == 0 && v != NULL) {
			if (strcmp(v, "always") != 0 && strcmp(v, "rr") != 0 &&
			    strcmp(v, "none") != 0) {
				cli_msg("--sync %s: must be always, rr or none", v);
				return CLI_USAGE;
			}
			u.sync = v;
			u.layout_opts = true;
		} else if (strcmp(sub, "up") == 0 && strcmp(a, "--recovery") == 0 && v != NULL) {
			if (strcmp(v, "auto") != 0 && strcmp(v, "operator") != 0) {
				cli_msg("--recovery %s: must be auto or operator", v);
				return CLI_USAGE;
			}
			u.operator_recovery = strcmp(v, "operator") == 0;
			u.layout_opts = true;
		} else if (strcmp(sub, "up") == 0 && strcmp(a, "--base-port") == 0 && v != NULL) {
			if (!parse_uint(v, 65535 - 2 * 5, &u.base_port) || u.base_port < 1024) {
				cli_msg("--base-port %s: must be 1024..%d", v, 65535 - 2 * 5);
				return CLI_USAGE;
			}
			u.layout_opts = true;
		} else {
			cli_msg("cluster %s: unexpected argument \"%s\"%s", sub, a,
				v == NULL && a[0] == '-' ? " (missing its value?)" : "");
			cluster_usage(stderr);
			return CLI_USAGE;
		}
	}
	if (strcmp(sub, "up") == 0)
		return cluster_up(dir, &u);
	if (strcmp(sub, "status") == 0)
		return cluster_status(dir);
	if (strcmp(sub, "down") == 0)
		return cluster_down(dir);
	cli_msg("unknown cluster command \"%s\"", sub);
	cluster_usage(stderr);
	return CLI_USAGE;
}
