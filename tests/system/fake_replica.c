/* A fake replica engine implementing server/replica.h, linked with teemsd's shell into
 * teemsd-echo so the shell can be tested without the real engine. It answers from memory:
 *
 *   PING [msg]        +PONG or msg
 *   ECHO msg          msg
 *   DELAY ms msg      msg, but only after ms ticks: later requests are answered first, so the
 *                     shell's reorder queue must put the replies back in order
 *   SET ...           +OK after an fsync job (want_sync, prepare, run on a worker, done)
 *   GET ...           +OK, or an error if a SET of the same connection is still unanswered
 *                     (the shell must hold a read behind its connection's writes)
 *   FRAMES id         how many peer frames arrived from replica id
 *   NETSTATS          the last replica_set_net_stats as "peers clients bad_frames"
 *   SYNCS             how many fsync jobs completed
 *   HALT              io.halt("asked to halt")
 *   anything else     +OK
 *
 * Every ~100 ticks it sends a small frame to every other replica, so two teemsd-echo processes
 * show whether the peer channels carry frames (FRAMES).
 *
 * For the TLS tests it opens the sim platform (platform_dir) and makes an incarnation key, which
 * it hands to the shell through replica_tee / replica_incarnation_key. With
 * TEEMSD_ECHO_MAKE_CA=ca.pem in the environment it also creates a service CA (tls_ca_create)
 * sealed for itself at service_ca_sealed, if that file does not exist yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/msg.h"
#include "server/replica.h"
#include "teems/err.h"
#include "tee/tee.h"
#ifdef TEEMSD_ECHO_TLS
#include "net/tls.h"
#endif

struct waiting {
	uint64_t conn, req, at; /* at: the tick (DELAY) or the sync sequence (SET) */
	uint8_t *resp;
	size_t len;
	bool sync;
};

struct replica {
	struct replica_io io;
	struct tee *tee;
	struct tee_incarnation *inc;
	unsigned self, n;
	uint64_t ticks;
	struct waiting *w;
	size_t n_w, cap_w;
	uint64_t sync_seq;   /* SETs received */
	uint64_t synced;     /* SETs covered by a completed job */
	uint64_t syncs_done; /* jobs */
	uint64_t frames_from[QUORUM_MAX_REPLICAS];
	struct replica_net_stats stats;
};

int replica_open(const struct teems_config *cfg, const struct replica_io *io, struct replica **out,
		 char *errbuf)
{
	struct replica *r = teems_calloc(1, sizeof(*r));

	if (r == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory");
	r->io = *io;
	r->self = cfg->replica_id;
	r->n = cfg->n_peers;
#ifdef TEEMSD_ECHO_TLS
	{
		struct tee_options to = {0};
		const char *ca_pem = getenv("TEEMSD_ECHO_MAKE_CA");
		char sealed[CONFIG_MAX_PATH];
		int rc;

		to.platform_dir = cfg->platform_dir[0] ? cfg->platform_dir : NULL;
		to.replica_id = cfg->replica_id;
		to.cluster_id = cfg->cluster_id;
		to.cluster_id_len = sizeof(cfg->cluster_id);
		to.no_clock = true;
		rc = tee_open(&to, &r->tee, errbuf);
		if (rc == 0)
			rc = tee_incarnation_new(&r->inc, errbuf);
		if (rc == 0 && ca_pem != NULL &&
		    config_service_ca_sealed(cfg, sealed, sizeof(sealed)) &&
		    access(sealed, F_OK) != 0) {
			const char *paths[1] = {sealed};

			rc = tls_ca_create(ca_pem, &r->tee, paths, 1, errbuf);
		}
		if (rc != 0) {
			replica_close(r);
			return rc;
		}
	}
#endif
	*out = r;
	return 0;
}

struct tee *replica_tee(struct replica *r)
{
	return r->tee;
}

void replica_incarnation_key(struct replica *r, uint8_t out[TEE_PUBLIC_KEY_LEN])
{
	if (r->inc != NULL)
		tee_incarnation_public_key(r->inc, out);
	else
		memset(out, 0, TEE_PUBLIC_KEY_LEN);
}

void replica_close(struct replica *r)
{
	tee_incarnation_free(r->inc);
	tee_close(r->tee);
	for (size_t i = 0; i < r->n_w; i++)
		teems_free(r->w[i].resp);
	teems_free(r->w);
	teems_free(r);
}

static void reply(struct replica *r, uint64_t conn, uint64_t req, struct resp_out *o)
{
	r->io.reply(r->io.ctx, conn, req, o->buf, o->len);
	resp_out_free(o);
}

static void later(struct replica *r, uint64_t conn, uint64_t req, struct resp_out *o, uint64_t at,
		  bool sync)
{
	if (r->n_w == r->cap_w) {
		size_t cap = r->cap_w ? r->cap_w * 2 : 64;
		struct waiting *w = teems_realloc(r->w, cap * sizeof(*w));

		if (w == NULL) {
			reply(r, conn, req, o);
			return;
		}
		r->w = w;
		r->cap_w = cap;
	}
	r->w[r->n_w++] = (struct waiting){conn, req, at, o->buf, o->len, sync};
	o->buf = NULL; /* moved */
	resp_out_free(o);
}

/* Answers, in arrival order, everything whose time or sync has come. */
static void release(struct replica *r)
{
	size_t i = 0;

	while (i < r->n_w) {
		struct waiting w = r->w[i];

		if ((w.sync && w.at <= r->synced) || (!w.sync && w.at <= r->ticks)) {
			memmove(&r->w[i], &r->w[i + 1], (r->n_w - i - 1) * sizeof(w));
			r->n_w--;
			r->io.reply(r->io.ctx, w.conn, w.req, w.resp, w.len);
			teems_free(w.resp);
		} else {
			i++;
		}
	}
}

void replica_tick(struct replica *r)
{
	r->ticks++;
	if (r->ticks % 100 == 0) {
		uint8_t frame[MSG_HEADER_SIZE + 8] = {0};

		put_le32(frame, sizeof(frame));
		frame[4] = MSG_VERSION;
		put_le64(frame + MSG_HEADER_SIZE, r->ticks);
		for (unsigned to = 0; to < r->n; to++)
			if (to != r->self)
				r->io.send(r->io.ctx, (uint16_t)to, frame, sizeof(frame));
	}
	release(r);
}

void replica_peer_frame(struct replica *r, uint16_t from, const uint8_t *frame, size_t len)
{
	if (from < QUORUM_MAX_REPLICAS && len >= MSG_HEADER_SIZE)
		r->frames_from[from]++;
}

static bool is(const struct resp_arg *a, const char *s)
{
	return a->len == strlen(s) && strncasecmp((const char *)a->p, s, a->len) == 0;
}

static unsigned long long num(const struct resp_arg *a)
{
	char buf[32];
	size_t n = a->len < sizeof(buf) - 1 ? a->len : sizeof(buf) - 1;

	memcpy(buf, a->p, n);
	buf[n] = '\0';
	return strtoull(buf, NULL, 10);
}

void replica_client(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		    size_t argc, int proto)
{
	struct resp_out o;
	char text[128];

	resp_out_init(&o, proto);
	if (is(&argv[0], "ping")) {
		if (argc > 1)
			resp_add_bulk(&o, argv[1].p, argv[1].len);
		else
			resp_add_simple(&o, "PONG");
	} else if (is(&argv[0], "echo") && argc == 2) {
		resp_add_bulk(&o, argv[1].p, argv[1].len);
	} else if (is(&argv[0], "delay") && argc == 3) {
		resp_add_bulk(&o, argv[2].p, argv[2].len);
		later(r, conn, req, &o, r->ticks + num(&argv[1]), false);
		return;
	} else if (is(&argv[0], "set")) {
		resp_add_simple(&o, "OK");
		later(r, conn, req, &o, ++r->sync_seq, true);
		r->io.want_sync(r->io.ctx);
		return;
	} else if (is(&argv[0], "get")) {
		bool overtook = false;

		for (size_t i = 0; i < r->n_w; i++)
			if (r->w[i].sync && r->w[i].conn == conn)
				overtook = true;
		if (overtook)
			resp_add_error(&o, "ERR GET overtook a SET of its connection");
		else
			resp_add_simple(&o, "OK");
	} else if (is(&argv[0], "frames") && argc == 2) {
		unsigned long long id = num(&argv[1]);

		resp_add_int(&o, id < QUORUM_MAX_REPLICAS ? (long long)r->frames_from[id] : -1);
	} else if (is(&argv[0], "netstats")) {
		snprintf(text, sizeof(text), "%llu %llu %llu",
			 (unsigned long long)r->stats.peers_connected,
			 (unsigned long long)r->stats.clients_connected,
			 (unsigned long long)r->stats.bad_frames);
		resp_add_bulk_cstr(&o, text);
	} else if (is(&argv[0], "syncs")) {
		resp_add_int(&o, (long long)r->syncs_done);
	} else if (is(&argv[0], "halt")) {
		resp_out_free(&o);
		r->io.halt(r->io.ctx, "asked to halt");
		return;
	} else {
		resp_add_simple(&o, "OK");
	}
	reply(r, conn, req, &o);
}

void replica_client_gone(struct replica *r, uint64_t conn)
{
	size_t i = 0;

	while (i < r->n_w) {
		if (r->w[i].conn == conn) {
			teems_free(r->w[i].resp);
			memmove(&r->w[i], &r->w[i + 1], (r->n_w - i - 1) * sizeof(r->w[i]));
			r->n_w--;
		} else {
			i++;
		}
	}
}

bool replica_sync_prepare(struct replica *r, struct replica_sync *job)
{
	if (r->synced == r->sync_seq)
		return false;
	job->r = r;
	job->upto = r->sync_seq;
	job->rc = 0;
	return true;
}

void replica_sync_run(struct replica_sync *job)
{
	usleep(1000); /* an fsync takes a while; the loop must not wait for it */
	job->rc = 0;
}

void replica_sync_done(struct replica *r, struct replica_sync *job)
{
	r->synced = job->upto;
	r->syncs_done++;
	release(r);
}

void replica_set_net_stats(struct replica *r, const struct replica_net_stats *s)
{
	r->stats = *s;
}
