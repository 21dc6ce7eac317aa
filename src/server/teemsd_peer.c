/* Replica-to-replica channels.
 *
 * Every replica listens on its own peers[] address and dials every other replica. Frames are
 * sent only on connections this replica dialed; accepted connections only receive. So each
 * ordered pair (i -> j) has exactly one sending connection, owned by i, and nobody has to
 * decide which of two simultaneous connections survives.
 *
 * The receiving side must know who is sending: replica_peer_frame's `from` is the identity the
 * channel proved.
 *   - TLS (peer contexts of net/tls.h, mutual and attested): the replica id in the verified
 *     certificate (tls_conn_peer). A dialer also checks that the replica it reached proves the
 *     id it dialed.
 *   - plaintext (development only: config_validate allows it only when every address is
 *     loopback): the dialer first sends a 16-byte hello,
 *         "TEEMSHI1" | u16 LE replica id | u16 LE N | 4 zero bytes
 *     which proves nothing; it only names the sender.
 *
 * After the hello (or the handshake) the stream is a sequence of msg frames, split with
 * msg_frame_length. A length over MSG_MAX_FRAME, an unknown version or a bad hello closes that
 * connection (counted in bad_frames, one log line); the dialer reconnects.
 *
 * Dialing retries with exponential backoff from 50 ms to 1 s. Each peer's write queue is
 * bounded (TEEMSD_PEER_OUT_MAX): a frame that does not fit is dropped, as the protocol expects
 * of a lossy channel (it retries). */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/msg.h"
#include "server/teemsd_internal.h"
#include "teems/err.h"

int teemsd_resolve(const struct config_addr *a, struct sockaddr_storage *out, char *errbuf);

/* A connection this replica dialed (sends only). */
struct peer_link {
	struct tstream s;
	struct peer_out *po;
	uv_connect_t creq;
};

/* A connection another replica dialed (receives only). */
struct peer_in {
	struct tstream s;
	struct tlist node;
	int id; /* -1 until the hello or the handshake named it */
	uint64_t accepted_at;
};

/* An accepted connection must name itself (hello or TLS handshake) within this time, and at
 * most this many accepted connections may be open at once: junk connections to the peer port
 * cannot pile up. */
#define PEER_HELLO_MS 10000u
#define PEERS_IN_MAX(n) (4u * (n) + 16u)

static void dial(struct peer_out *po);

static struct teemsd *po_daemon(struct peer_out *po)
{
	return po->d;
}

unsigned peers_connected(const struct teemsd *d)
{
	unsigned n = 0;

	for (unsigned i = 0; i < d->cfg.n_peers; i++)
		if (d->peers[i].up)
			n++;
	return n;
}

static void retry_cb(uv_timer_t *t)
{
	dial(t->data);
}

static void schedule_retry(struct peer_out *po)
{
	struct teemsd *d = po_daemon(po);

	if (d->stopping)
		return;
	uv_timer_start(&po->retry, retry_cb, po->backoff_ms, 0);
	po->backoff_ms *= 2;
	if (po->backoff_ms > TEEMSD_BACKOFF_MAX_MS)
		po->backoff_ms = TEEMSD_BACKOFF_MAX_MS;
}

static void set_up(struct peer_out *po)
{
	struct teemsd *d = po_daemon(po);

	po->up = true;
	po->up_since = uv_now(d->loop);
	po->failures = 0;
	teemsd_log("peer r%u %s:%u connected", po->id, po->addr.host, po->addr.port);
	teemsd_update_stats(d);
}

static void link_on_data(struct tstream *s)
{
	/* nothing is expected on a sending connection: drop it */
	tbuf_consume(&s->in, tbuf_size(&s->in));
}

static void link_on_established(struct tstream *s)
{
#ifdef TEEMSD_HAVE_TLS
	struct peer_link *l = s->owner;
	struct tls_peer p;

	if (!tls_conn_peer(s->tls, &p)) {
		teemsd_log("peer r%u: TLS established without a verified identity; closing",
			   l->po->id);
		tstream_close(s);
		return;
	}
	if (p.replica != l->po->id) {
		teemsd_log("peer r%u %s:%u proved to be replica %u; closing", l->po->id,
			   l->po->addr.host, l->po->addr.port, p.replica);
		tstream_close(s);
		return;
	}
	set_up(l->po);
#endif
}

static void link_on_close(struct tstream *s)
{
	struct peer_link *l = s->owner;
	struct peer_out *po = l->po;
	struct teemsd *d = s->d;

	if (po->link == l) {
		po->link = NULL;
		if (po->up) {
			/* a connection that lasted is a fresh start; one the other side drops at
			 * once (it refused our certificate, say) keeps backing off */
			if (uv_now(d->loop) - po->up_since >= TEEMSD_BACKOFF_MAX_MS)
				po->backoff_ms = TEEMSD_BACKOFF_MIN_MS;
			po->up = false;
			teemsd_log("peer r%u %s:%u disconnected; redialing", po->id, po->addr.host,
				   po->addr.port);
			teemsd_update_stats(d);
		}
		schedule_retry(po);
	}
	teems_free(l);
}

static const struct tstream_ops link_ops = {
	.on_data = link_on_data,
	.on_established = link_on_established,
	.on_close = link_on_close,
};

static void connect_failed(struct peer_out *po, const char *why)
{
	/* one line per outage, not one per attempt */
	if (po->failures++ == 0)
		teemsd_log("peer r%u %s:%u unreachable (%s); retrying", po->id, po->addr.host,
			   po->addr.port, why);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct peer_link *l = req->data;
	struct peer_out *po = l->po;
	struct teemsd *d = l->s.d;
	struct tls_conn *tls = NULL;

	if (l->s.closing)
		return;
	if (status < 0) {
		connect_failed(po, uv_strerror(status));
		tstream_close(&l->s);
		return;
	}
	uv_tcp_nodelay(&l->s.tcp, 1);
	uv_tcp_keepalive(&l->s.tcp, 1, 10);
	snprintf(l->s.name, sizeof(l->s.name), "peer r%u (dialed)", po->id);
#ifdef TEEMSD_HAVE_TLS
	if (d->peer_ctx != NULL) {
		char err[TEEMS_ERRBUF_LEN];

		if (tls_conn_new(d->peer_ctx, false, &tls, err) != 0) {
			connect_failed(po, err);
			tstream_close(&l->s);
			return;
		}
	}
#endif
	if (tstream_start(&l->s, tls) != 0) {
		connect_failed(po, "cannot start reading");
		tstream_close(&l->s);
		return;
	}
	if (tls == NULL) {
		uint8_t hello[TEEMSD_HELLO_LEN] = {0};

		memcpy(hello, TEEMSD_HELLO_MAGIC, 8);
		put_le16(hello + 8, (uint16_t)d->cfg.replica_id);
		put_le16(hello + 10, (uint16_t)d->cfg.n_peers);
		if (tstream_send(&l->s, hello, sizeof(hello)) != 0) {
			tstream_close(&l->s);
			return;
		}
		set_up(po);
	}
}

static void connect_to(struct peer_out *po, const struct sockaddr *sa)
{
	struct teemsd *d = po_daemon(po);
	struct peer_link *l = teems_calloc(1, sizeof(*l));
	int rc;

	if (l == NULL) {
		schedule_retry(po);
		return;
	}
	tstream_init(d, &l->s, &link_ops, l);
	l->po = po;
	po->link = l;
	l->creq.data = l;
	rc = uv_tcp_connect(&l->creq, &l->s.tcp, sa, connect_cb);
	if (rc != 0) {
		connect_failed(po, uv_strerror(rc));
		tstream_close(&l->s);
	}
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct peer_out *po = req->data;
	struct teemsd *d = po_daemon(po);

	po->resolving = false;
	if (d->stopping || status == UV_ECANCELED) {
		uv_freeaddrinfo(res);
		return;
	}
	if (status < 0 || res == NULL) {
		connect_failed(po, uv_strerror(status));
		uv_freeaddrinfo(res);
		schedule_retry(po);
		return;
	}
	connect_to(po, res->ai_addr);
	uv_freeaddrinfo(res);
}

static void dial(struct peer_out *po)
{
	struct teemsd *d = po_daemon(po);
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct addrinfo hints;
	char port[8];

	if (d->stopping || po->link != NULL || po->resolving)
		return;
	if (uv_ip4_addr(po->addr.host, po->addr.port, &a4) == 0) {
		connect_to(po, (const struct sockaddr *)&a4);
		return;
	}
	if (uv_ip6_addr(po->addr.host, po->addr.port, &a6) == 0) {
		connect_to(po, (const struct sockaddr *)&a6);
		return;
	}
	/* a host name: resolved on a worker thread, again at every attempt */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", po->addr.port);
	po->gai.data = po;
	if (uv_getaddrinfo(d->loop, &po->gai, gai_cb, po->addr.host, port, &hints) == 0)
		po->resolving = true;
	else
		schedule_retry(po);
}

void peers_send(struct teemsd *d, uint16_t to, const uint8_t *frame, size_t len)
{
	struct peer_out *po;

	if (to >= d->cfg.n_peers || to == d->cfg.replica_id)
		return;
	po = &d->peers[to];
	if (!po->up || po->link == NULL) {
		po->dropped++;
		return;
	}
	if (tstream_queued(&po->link->s) + len > TEEMSD_PEER_OUT_MAX) {
		if (po->dropped++ % 10000 == 0)
			teemsd_log("peer r%u: write queue over %zu MiB; dropping frames", po->id,
				   TEEMSD_PEER_OUT_MAX >> 20);
		return;
	}
	if (tstream_send(&po->link->s, frame, len) != 0) {
		teemsd_log("peer r%u: cannot queue a frame; reconnecting", po->id);
		tstream_close(&po->link->s);
	}
}

static void bad_input(struct peer_in *pin, const char *why)
{
	struct teemsd *d = pin->s.d;

	d->stats.bad_frames++;
	teemsd_log("%s: %s; closing", pin->s.name, why);
	teemsd_update_stats(d);
	tstream_close(&pin->s);
}

static bool read_hello(struct peer_in *pin)
{
	struct teemsd *d = pin->s.d;
	const uint8_t *h = tbuf_data(&pin->s.in);
	unsigned id, n;

	if (tbuf_size(&pin->s.in) < TEEMSD_HELLO_LEN) {
		/* a prefix that cannot become a hello is refused at once */
		if (memcmp(h, TEEMSD_HELLO_MAGIC,
			   tbuf_size(&pin->s.in) < 8 ? tbuf_size(&pin->s.in) : 8) != 0)
			bad_input(pin, "not a teems peer hello");
		return false;
	}
	id = get_le16(h + 8);
	n = get_le16(h + 10);
	if (memcmp(h, TEEMSD_HELLO_MAGIC, 8) != 0 || get_le32(h + 12) != 0) {
		bad_input(pin, "not a teems peer hello");
		return false;
	}
	if (n != d->cfg.n_peers || id >= d->cfg.n_peers || id == d->cfg.replica_id) {
		char why[96];

		snprintf(why, sizeof(why), "hello from replica %u of %u does not fit this cluster",
			 id, n);
		bad_input(pin, why);
		return false;
	}
	pin->id = (int)id;
	snprintf(pin->s.name, sizeof(pin->s.name), "peer r%u (accepted)", id);
	tbuf_consume(&pin->s.in, TEEMSD_HELLO_LEN);
	return true;
}

static void in_on_data(struct tstream *s)
{
	struct peer_in *pin = s->owner;
	struct teemsd *d = s->d;
	size_t need;
	int rc;

	if (pin->id < 0) {
		if (s->tls != NULL)
			return; /* not verified yet: on_established names it */
		if (!read_hello(pin))
			return;
	}
	while (!s->closing && !d->halted && tbuf_size(&s->in) > 0) {
		rc = msg_frame_length(tbuf_data(&s->in), tbuf_size(&s->in), &need);
		if (rc != 0) {
			bad_input(pin, rc == TEEMS_EVERSION ? "frame of an unknown version"
							    : "frame length out of range");
			return;
		}
		if (tbuf_size(&s->in) < need)
			break;
		replica_peer_frame(d->r, (uint16_t)pin->id, tbuf_data(&s->in), need);
		tbuf_consume(&s->in, need);
	}
}

static void in_on_established(struct tstream *s)
{
#ifdef TEEMSD_HAVE_TLS
	struct peer_in *pin = s->owner;
	struct teemsd *d = s->d;
	struct tls_peer p;

	if (!tls_conn_peer(s->tls, &p)) {
		bad_input(pin, "TLS established without a verified identity");
		return;
	}
	if (p.replica >= d->cfg.n_peers || p.replica == d->cfg.replica_id) {
		char why[64];

		snprintf(why, sizeof(why), "verified replica %u is not a peer", p.replica);
		bad_input(pin, why);
		return;
	}
	pin->id = p.replica;
	snprintf(s->name, sizeof(s->name), "peer r%u (accepted)", p.replica);
#endif
}

static void in_on_close(struct tstream *s)
{
	struct peer_in *pin = s->owner;
	struct teemsd *d = s->d;

	tlist_del(&pin->node);
	d->n_peers_in--;
	teems_free(pin);
}

static const struct tstream_ops in_ops = {
	.on_data = in_on_data,
	.on_established = in_on_established,
	.on_close = in_on_close,
};

static void on_peer_connection(uv_stream_t *server, int status)
{
	struct teemsd *d = server->data;
	struct tls_conn *tls = NULL;
	struct peer_in *pin;

	if (status < 0 || d->stopping)
		return;
	pin = teems_calloc(1, sizeof(*pin));
	if (pin == NULL)
		return;
	tstream_init(d, &pin->s, &in_ops, pin);
	pin->id = -1;
	pin->accepted_at = uv_now(d->loop);
	tlist_add(&d->peers_in, &pin->node);
	d->n_peers_in++;
	if (uv_accept(server, (uv_stream_t *)&pin->s.tcp) != 0) {
		tstream_close(&pin->s);
		return;
	}
	tstream_describe(&pin->s, "peer connection from");
	if (d->n_peers_in > PEERS_IN_MAX(d->cfg.n_peers)) {
		teemsd_log("%s: refused: %u peer connections open", pin->s.name, d->n_peers_in - 1);
		tstream_close(&pin->s);
		return;
	}
	uv_tcp_nodelay(&pin->s.tcp, 1);
	uv_tcp_keepalive(&pin->s.tcp, 1, 10);
#ifdef TEEMSD_HAVE_TLS
	if (d->peer_ctx != NULL) {
		char err[TEEMS_ERRBUF_LEN];

		if (tls_conn_new(d->peer_ctx, true, &tls, err) != 0) {
			teemsd_log("%s: TLS: %s", pin->s.name, err);
			tstream_close(&pin->s);
			return;
		}
	}
#endif
	if (tstream_start(&pin->s, tls) != 0)
		tstream_close(&pin->s);
}

void peers_check(struct teemsd *d)
{
	uint64_t now = uv_now(d->loop);
	struct tlist *n = d->peers_in.next;

	while (n != &d->peers_in) {
		struct peer_in *pin = tlist_entry(n, struct peer_in, node);

		n = n->next;
		if (pin->id < 0 && !pin->s.closing && now - pin->accepted_at >= PEER_HELLO_MS)
			bad_input(pin, "no hello or handshake within 10 s");
	}
}

int peers_start(struct teemsd *d, char *errbuf)
{
	const struct config_peer *self = config_self(&d->cfg);
	struct sockaddr_storage ss;
	int rc;

	tlist_init(&d->peers_in);
	if (self == NULL)
		return teems_errf(errbuf, TEEMS_ECONFIG, "replica_id %u is not among the peers",
				  d->cfg.replica_id);
	rc = teemsd_resolve(&self->addr, &ss, errbuf);
	if (rc != 0)
		return rc;
	uv_tcp_init(d->loop, &d->peer_listener);
	d->peer_listener.data = d;
	d->peer_listening = true;
	rc = uv_tcp_bind(&d->peer_listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&d->peer_listener, 128, on_peer_connection);
	if (rc != 0)
		return teems_errf(errbuf, TEEMS_EIO, "peers: r%u %s:%u: %s", self->id,
				  self->addr.host, self->addr.port, uv_strerror(rc));
	for (unsigned i = 0; i < d->cfg.n_peers; i++) {
		const struct config_peer *p = &d->cfg.peers[i];
		struct peer_out *po = &d->peers[p->id];

		po->d = d;
		po->id = p->id;
		po->addr = p->addr;
		po->backoff_ms = TEEMSD_BACKOFF_MIN_MS;
		uv_timer_init(d->loop, &po->retry);
		po->retry.data = po;
		if (p->id != d->cfg.replica_id)
			dial(po);
	}
	return 0;
}

void peers_close_all(struct teemsd *d)
{
	if (d->peer_listening && !uv_is_closing((uv_handle_t *)&d->peer_listener))
		uv_close((uv_handle_t *)&d->peer_listener, NULL);
	for (unsigned i = 0; i < d->cfg.n_peers; i++) {
		struct peer_out *po = &d->peers[d->cfg.peers[i].id];

		if (po->retry.loop != NULL && !uv_is_closing((uv_handle_t *)&po->retry))
			uv_close((uv_handle_t *)&po->retry, NULL);
		if (po->resolving)
			uv_cancel((uv_req_t *)&po->gai);
		if (po->link != NULL)
			tstream_close(&po->link->s);
	}
	for (struct tlist *n = d->peers_in.next; n != &d->peers_in; n = n->next)
		tstream_close(&tlist_entry(n, struct peer_in, node)->s);
}
