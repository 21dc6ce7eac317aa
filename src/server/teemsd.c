/* teemsd: one replica of a teems cluster (DESIGN.md section 1; docs/OPERATIONS.md).
 *
 *	teemsd --config FILE [--key value ...]
 *
 * The shell: reads and checks the configuration, opens the replica engine (server/replica.h),
 * then runs one libuv loop that owns every socket: RESP clients (teemsd_client.c), the
 * replica-to-replica channels (teemsd_peer.c), a 1 ms tick, SIGINT/SIGTERM, and the fsync job
 * that runs on a libuv worker so the loop never waits for the disk.
 *
 * Exit status: 0 after SIGINT/SIGTERM, 2 when the configuration or the data directory is
 * refused (the message names the setting; also the engine's TEEMS_ECONFIG), 1 for anything
 * else (cannot listen, the engine cannot open, the engine halted). */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "server/teemsd_internal.h"
#include "teems/err.h"

int teemsd_resolve(const struct config_addr *a, struct sockaddr_storage *out, char *errbuf);

/* Host names are resolved once, at startup, for the listeners (blocking is fine then). */
int teemsd_resolve(const struct config_addr *a, struct sockaddr_storage *out, char *errbuf)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", a->port);
	rc = getaddrinfo(a->host, port, &hints, &res);
	if (rc != 0 || res == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "%s:%u: cannot resolve: %s", a->host, a->port,
				  gai_strerror(rc));
	memset(out, 0, sizeof(*out));
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

void teemsd_update_stats(struct teemsd *d)
{
	if (d->r == NULL || d->halted)
		return;
	d->stats.clients_connected = d->n_clients;
	d->stats.peers_connected = peers_connected(d);
	replica_set_net_stats(d->r, &d->stats);
}

/* The fsync job (replica.h): one at a time; a want_sync that arrives while one runs starts
 * another when it finishes, so records appended meanwhile are covered too. */
static void start_sync(struct teemsd *d);

static void work_cb(uv_work_t *w)
{
	struct teemsd *d = w->data;

	replica_sync_run(&d->job);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct teemsd *d = w->data;

	d->sync_running = false;
	if (d->halted)
		return;
	replica_sync_done(d->r, &d->job);
	if (d->sync_again && !d->halted && !d->stopping)
		start_sync(d);
}

static void start_sync(struct teemsd *d)
{
	if (d->sync_running || d->r == NULL) {
		d->sync_again = true;
		return;
	}
	d->sync_again = false;
	if (d->halted || !replica_sync_prepare(d->r, &d->job))
		return;
	d->work.data = d;
	if (uv_queue_work(d->loop, &d->work, work_cb, after_work_cb) != 0) {
		/* cannot happen with a valid loop; never sync on the loop thread instead */
		teemsd_log("cannot queue the fsync job");
		teemsd_stop(d, 1);
		return;
	}
	d->sync_running = true;
}

static void io_send(void *ctx, uint16_t to, const uint8_t *frame, size_t len)
{
	struct teemsd *d = ctx;

	if (!d->stopping)
		peers_send(d, to, frame, len);
}

static void io_reply(void *ctx, uint64_t conn, uint64_t req, const uint8_t *resp, size_t len)
{
	struct teemsd *d = ctx;

	if (d->clients != NULL)
		clients_reply(d, conn, req, resp, len);
}

static void io_want_sync(void *ctx)
{
	struct teemsd *d = ctx;

	if (!d->stopping)
		start_sync(d);
}

static void io_halt(void *ctx, const char *why)
{
	struct teemsd *d = ctx;

	if (d->halted)
		return;
	teemsd_log("halting: %s", why);
	d->halted = true;
	teemsd_stop(d, 1);
}

/* The engine's events (boot, role and lifecycle changes, refused quotes) go to the same log. */
static void io_log(void *ctx, const char *line)
{
	(void)ctx;
	teemsd_log("%s", line);
}

static void close_if_open(uv_handle_t *h)
{
	if (h->loop != NULL && !uv_is_closing(h))
		uv_close(h, NULL);
}

/* Every TCP handle other than the listeners is a struct tstream: close whatever is left
 * (lingering or refused clients, which are in no table). */
static void close_walk(uv_handle_t *h, void *arg)
{
	struct teemsd *d = arg;

	if (h->type != UV_TCP || uv_is_closing(h) || h == (uv_handle_t *)&d->client_listener ||
	    h == (uv_handle_t *)&d->peer_listener)
		return;
	tstream_close(h->data);
}

void teemsd_stop(struct teemsd *d, int exit_code)
{
	if (d->stopping)
		return;
	d->stopping = true;
	d->exit_code = exit_code;
	close_if_open((uv_handle_t *)&d->tick);
	close_if_open((uv_handle_t *)&d->sigint);
	close_if_open((uv_handle_t *)&d->sigterm);
	close_if_open((uv_handle_t *)&d->prepare);
	close_if_open((uv_handle_t *)&d->check);
	if (d->clients != NULL)
		clients_close_all(d);
	peers_close_all(d);
	uv_walk(d->loop, close_walk, d);
}

static void on_tick(uv_timer_t *t)
{
	struct teemsd *d = t->data;

	if (!tlist_empty(&d->lingering))
		tstream_linger_check(d);
	if (++d->ticks % 1000 == 0)
		peers_check(d);
	if (!d->halted && !d->stopping)
		replica_tick(d->r);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct teemsd *d = h->data;

	teemsd_log("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
	teemsd_stop(d, 0);
}

/* Once per loop turn, before polling and after it: the engine answers the lease reads of
 * this turn (replica_flush), then every stream writes what it has queued. */
static void on_flush(uv_handle_t *h)
{
	struct teemsd *d = h->data;

	if (d->r != NULL)
		replica_flush(d->r);
	tstream_flush_all(d);
}

static void on_prepare(uv_prepare_t *h)
{
	on_flush((uv_handle_t *)h);
}

static void on_check(uv_check_t *h)
{
	on_flush((uv_handle_t *)h);
}

/* data_dir must be a directory this process can write, or creatable (one level, as mkdir). */
static int check_data_dir(const char *dir, char *errbuf)
{
	struct stat st;

	if (stat(dir, &st) != 0) {
		if (errno != ENOENT)
			return teems_errf(errbuf, TEEMS_ECONFIG, "config: data_dir = \"%s\": %s",
					  dir, strerror(errno));
		if (mkdir(dir, 0700) != 0)
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: data_dir = \"%s\": cannot create it: %s", dir,
					  strerror(errno));
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: data_dir = \"%s\": not a directory", dir);
	if (access(dir, R_OK | W_OK | X_OK) != 0)
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: data_dir = \"%s\": not usable: %s", dir,
				  strerror(errno));
	return 0;
}

/* Up to 10,000 clients need that many descriptors; ask for them if the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t want = TEEMSD_MAX_CLIENTS + 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
}

/* Plaintext peer channels are the development mode only: clients in plaintext too
 * (client_tls = off) and every address loopback. Everything else uses attested TLS between
 * replicas. */
static bool plaintext_peers(const struct teems_config *c)
{
	if (c->client_tls || !config_is_loopback(c->listen.host))
		return false;
	for (unsigned i = 0; i < c->n_peers; i++)
		if (!config_is_loopback(c->peers[i].addr.host))
			return false;
	return true;
}

/* The TLS contexts: the attested peer context (tls_ctx_peer) unless plaintext_peers, the
 * service context (tls_ctx_service, certificate from the sealed service CA) when client_tls.
 * Errors: TEEMS_ECONFIG (TLS needed but not available in this build or engine), and those of
 * tls_ctx_peer / tls_ctx_service. check_only: only say whether TLS is possible (before the
 * engine opens, so a refused configuration leaves the data directory alone). */
static int setup_tls(struct teemsd *d, bool check_only, char *errbuf)
{
	bool need_peer = !plaintext_peers(&d->cfg), need_service = d->cfg.client_tls;

	if (!need_peer && !need_service)
		return 0;
#ifdef TEEMSD_HAVE_TLS
	struct tee *tee;
	uint8_t inc[TEE_PUBLIC_KEY_LEN], meas[TEE_MEASUREMENT_LEN];
	const char *names[32];
	char namebuf[CONFIG_MAX_PATH], ca[CONFIG_MAX_PATH];
	size_t n_names = 0;
	char *save = NULL, *tok;
	int rc;

	if (check_only)
		return 0;
	tee = replica_tee(d->r);
	if (tee == NULL)
		return teems_errf(errbuf, TEEMS_ECONFIG, "the engine has no platform handle");
	replica_incarnation_key(d->r, inc);
	tee_measurement(tee, meas);
	if (need_peer) {
		rc = tls_ctx_peer(tee, (uint16_t)d->cfg.replica_id, inc, d->cfg.cluster_id, meas,
				  &d->peer_ctx, errbuf);
		if (rc != 0)
			return rc;
	}
	if (!need_service)
		return 0;
	if (!config_service_ca_sealed(&d->cfg, ca, sizeof(ca)) ||
	    !config_tls_names(&d->cfg, namebuf, sizeof(namebuf)))
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: service_ca_sealed or tls_names too long");
	for (tok = strtok_r(namebuf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok == '\0')
			continue;
		if (n_names == sizeof(names) / sizeof(names[0]))
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: tls_names: more than %zu names",
					  sizeof(names) / sizeof(names[0]));
		names[n_names++] = tok;
	}
	return tls_ctx_service(tee, ca, names, n_names, &d->service_ctx, errbuf);
#else
	return teems_errf(errbuf, TEEMS_ECONFIG,
			  "config: client_tls = %s: this teemsd was built without TLS; only "
			  "client_tls = off with every address on loopback works",
			  d->cfg.client_tls ? "on" : "off");
#endif
}

static void free_tls(struct teemsd *d)
{
#ifdef TEEMSD_HAVE_TLS
	if (d->peer_ctx != NULL)
		tls_ctx_free(d->peer_ctx);
	if (d->service_ctx != NULL)
		tls_ctx_free(d->service_ctx);
#endif
	d->peer_ctx = d->service_ctx = NULL;
}

static const char *engine_name(enum config_engine e)
{
	return e == CONFIG_ENGINE_ABD ? "abd" : "paxos";
}

static const char *sync_name(enum config_sync s)
{
	return s == CONFIG_SYNC_ALWAYS ? "always" : s == CONFIG_SYNC_RR ? "rr" : "none";
}

static struct teemsd daemon_state;

int main(int argc, char **argv)
{
	struct teemsd *d = &daemon_state;
	struct replica_io io = {
		.ctx = d,
		.send = io_send,
		.reply = io_reply,
		.want_sync = io_want_sync,
		.halt = io_halt,
		.log = io_log,
	};
	char err[TEEMS_ERRBUF_LEN];
	const struct config_peer *self;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: teemsd --config FILE [--key value ...]\n\n");
			config_usage(stdout);
			return 0;
		}
	config_defaults(&d->cfg);
	rc = config_parse_args(&d->cfg, argc, argv, err);
	if (rc == 0)
		rc = config_validate(&d->cfg, err);
	if (rc != 0) {
		fprintf(stderr, "teemsd: %s\n", err);
		return 2;
	}
	teemsd_log_init(d->cfg.replica_id);
	if (check_data_dir(d->cfg.data_dir, err) != 0) {
		teemsd_log("%s", err);
		return 2;
	}
	if (setup_tls(d, true, err) != 0) {
		teemsd_log("%s", err);
		return 2;
	}
	raise_fd_limit();
	d->loop = uv_default_loop();
	tlist_init(&d->dirty);
	tlist_init(&d->lingering);
	tlist_init(&d->peers_in);

	rc = replica_open(&d->cfg, &io, &d->r, err);
	if (rc != 0) {
		teemsd_log("cannot open the replica: %s (%s)", err, teems_strerror(rc));
		return rc == TEEMS_ECONFIG ? 2 : 1;
	}
	rc = setup_tls(d, false, err);
	if (rc != 0) {
		teemsd_log("TLS: %s", err);
		d->exit_code = rc == TEEMS_ECONFIG ? 2 : 1;
		goto fail;
	}
	uv_timer_init(d->loop, &d->tick);
	d->tick.data = d;
	uv_signal_init(d->loop, &d->sigint);
	uv_signal_init(d->loop, &d->sigterm);
	d->sigint.data = d->sigterm.data = d;
	uv_prepare_init(d->loop, &d->prepare);
	uv_check_init(d->loop, &d->check);
	d->prepare.data = d->check.data = d;
	rc = clients_listen(d, err);
	if (rc == 0)
		rc = peers_start(d, err);
	if (rc != 0) {
		teemsd_log("cannot listen: %s", err);
		goto fail;
	}
	uv_timer_start(&d->tick, on_tick, 1, 1);
	uv_signal_start(&d->sigint, on_signal, SIGINT);
	uv_signal_start(&d->sigterm, on_signal, SIGTERM);
	uv_prepare_start(&d->prepare, on_prepare);
	uv_check_start(&d->check, on_check);
	self = config_self(&d->cfg);
	teemsd_log("teemsd %s started: clients on %s:%u (%s), peers on %s:%u (%s), N=%u F=%u "
		   "M_R=%u, engine %s, sync %s, data_dir %s",
		   TEEMSD_VERSION, d->cfg.listen.host, d->cfg.listen.port,
		   d->service_ctx ? "TLS" : "plaintext", self->addr.host, self->addr.port,
		   d->peer_ctx ? "attested TLS" : "plaintext", d->cfg.n_peers, d->cfg.f, d->cfg.m_r,
		   engine_name(d->cfg.engine), sync_name(d->cfg.sync), d->cfg.data_dir);
	teemsd_update_stats(d);
	if (d->sync_again)
		start_sync(d); /* the engine asked during replica_open */
	uv_run(d->loop, UV_RUN_DEFAULT);
	goto out;

fail:
	teemsd_stop(d, d->exit_code ? d->exit_code : 1);
	uv_run(d->loop, UV_RUN_DEFAULT);
out:
	if (!d->halted)
		replica_close(d->r);
	free_tls(d);
	teems_free(d->clients);
	uv_loop_close(d->loop);
	teemsd_log("stopped (exit status %d)", d->exit_code);
	return d->exit_code;
}
