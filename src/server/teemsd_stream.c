/* One TCP connection with an optional TLS engine (teemsd_internal.h, struct tstream).
 *
 * Reads land in the loop's shared 64 KiB buffer and are appended (plaintext) or fed to the TLS
 * engine and decrypted into s->in. Writes are batched: bytes queue in s->out and one uv_write
 * per stream and loop phase carries all of them (tstream_flush_all runs in the loop's prepare
 * and check phases), so a pipeline of a thousand replies costs one system call, not a thousand.
 * While a write is in flight new bytes keep queueing in s->out; the buffers swap when it
 * completes. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/teemsd_internal.h"
#include "teems/err.h"

/* Keep at most this much idle buffer capacity per stream after a burst. */
#define IDLE_CAP_MAX ((size_t)1 << 20)
/* A lingering close waits at most this long, and reads at most this much, for the peer to
 * finish sending before the socket is closed. */
#define LINGER_MS 2000u
#define LINGER_MAX_BYTES ((size_t)64 << 20)

int tbuf_reserve(struct tbuf *b, size_t more)
{
	size_t live = b->len - b->off, need, cap;
	uint8_t *p;

	if (b->cap - b->len >= more)
		return 0;
	/* compact first: the consumed prefix may be enough room */
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, live);
		b->off = 0;
		b->len = live;
		if (b->cap - b->len >= more)
			return 0;
	}
	if (more > SIZE_MAX / 2 - live)
		return TEEMS_ENOMEM;
	need = live + more;
	cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap *= 2;
	p = teems_realloc(b->p, cap);
	if (p == NULL)
		return TEEMS_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int tbuf_append(struct tbuf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = tbuf_reserve(b, n);
	if (rc != 0)
		return rc;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void tbuf_consume(struct tbuf *b, size_t n)
{
	b->off += n;
	if (b->off == b->len) {
		b->off = b->len = 0;
		if (b->cap > IDLE_CAP_MAX) {
			teems_free(b->p);
			b->p = NULL;
			b->cap = 0;
		}
	}
}

void tbuf_free(struct tbuf *b)
{
	teems_free(b->p);
	memset(b, 0, sizeof(*b));
}

static void linger(struct tstream *s);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void mark_dirty(struct tstream *s)
{
	if (s->closing || s->writing || tbuf_size(&s->out) == 0 || !tlist_empty(&s->dirty))
		return;
	tlist_add(&s->d->dirty, &s->dirty);
}

void tstream_init(struct teemsd *d, struct tstream *s, const struct tstream_ops *ops, void *owner)
{
	memset(s, 0, sizeof(*s));
	s->d = d;
	s->ops = ops;
	s->owner = owner;
	tlist_init(&s->dirty);
	tlist_init(&s->linger);
	uv_tcp_init(d->loop, &s->tcp);
	s->tcp.data = s;
	snprintf(s->name, sizeof(s->name), "connection");
}

void tstream_describe(struct tstream *s, const char *what)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char host[64] = "?";
	int port = 0;

	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	/* A label for log lines: a truncated one is still useful. */
	if (snprintf(s->name, sizeof(s->name), "%s %s:%d", what, host, port) >=
	    (int)sizeof(s->name))
		s->name[sizeof(s->name) - 2] = '~';
}

/* Moves the TLS engine's ciphertext into the write queue. */
static int drain_tls(struct tstream *s)
{
#ifdef TEEMSD_HAVE_TLS
	size_t n;
	int rc;

	if (s->tls == NULL)
		return 0;
	while ((n = tls_conn_pending(s->tls)) > 0) {
		rc = tbuf_reserve(&s->out, n);
		if (rc != 0)
			return rc;
		n = tls_conn_take(s->tls, s->out.p + s->out.len, s->out.cap - s->out.len);
		if (n == 0)
			break;
		s->out.len += n;
	}
	mark_dirty(s);
#endif
	return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tstream *s = h->data;

	/* One read at a time per loop: libuv calls read_cb before the next alloc_cb. */
	buf->base = (char *)s->d->rbuf;
	buf->len = sizeof(s->d->rbuf);
}

#ifdef TEEMSD_HAVE_TLS
/* Ciphertext in, plaintext into s->in. Returns 0, or an error after which the stream is being
 * closed. */
static int read_tls(struct tstream *s, const uint8_t *p, size_t n)
{
	size_t got;
	int rc;

	if (tls_conn_feed(s->tls, p, n) != 0)
		return TEEMS_ENOMEM;
	for (;;) {
		rc = tbuf_reserve(&s->in, 16384);
		if (rc != 0)
			return rc;
		rc = tls_conn_read(s->tls, s->in.p + s->in.len, s->in.cap - s->in.len, &got);
		if (rc != 0) {
			if (rc != TEEMS_EEOF)
				teemsd_log("%s: TLS: %s", s->name, tls_conn_error(s->tls));
			drain_tls(s); /* the alert, if any */
			return rc;
		}
		if (got == 0)
			break;
		s->in.len += got;
	}
	rc = drain_tls(s);
	if (rc != 0)
		return rc;
	if (!s->established && tls_conn_established(s->tls)) {
		s->established = true;
		if (s->close_pending) {
			/* the final reply can go now (tstream_close_after_write) */
			s->close_pending = false;
			s->lingering = false;
			tlist_del(&s->linger);
			tstream_close_after_write(s);
			return 0;
		}
		if (s->ops->on_established != NULL)
			s->ops->on_established(s);
	}
	return 0;
}
#endif

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct tstream *s = h->data;
	int rc = 0;

	if (s->closing)
		return;
	if (nread < 0) {
		/* EOF or reset: a client that half-closes is done (Redis closes it too) */
		tstream_close(s);
		return;
	}
	if (nread == 0)
		return;
	if (s->close_after_write) {
		/* lingering (see tstream_close_after_write): what the peer still sends is dropped
		 */
		s->discarded += (size_t)nread;
		if (s->discarded > LINGER_MAX_BYTES)
			tstream_close(s);
		return;
	}
#ifdef TEEMSD_HAVE_TLS
	if (s->tls != NULL) {
		rc = read_tls(s, (const uint8_t *)buf->base, (size_t)nread);
		if (rc != 0) {
			/* send the alert, if any, then close */
			s->tls_failed = true;
			tstream_close_after_write(s);
			return;
		}
		if (s->closing)
			return;
	} else
#endif
		rc = tbuf_append(&s->in, buf->base, (size_t)nread);
	if (rc != 0) {
		teemsd_log("%s: out of memory reading; closing", s->name);
		tstream_close(s);
		return;
	}
	if (tbuf_size(&s->in) > 0 && s->ops->on_data != NULL)
		s->ops->on_data(s);
}

int tstream_start(struct tstream *s, struct tls_conn *tls)
{
	int rc;

	s->tls = tls;
	if (tls == NULL)
		s->established = true;
	rc = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
	if (rc != 0)
		return TEEMS_EIO;
	s->reading = true;
	/* a TLS client speaks first: its ClientHello is waiting in the engine */
	return drain_tls(s);
}

int tstream_send(struct tstream *s, const void *p, size_t n)
{
	int rc;

	if (s->closing || s->close_after_write)
		return 0;
#ifdef TEEMSD_HAVE_TLS
	if (s->tls != NULL) {
		rc = tls_conn_write(s->tls, p, n);
		if (rc != 0)
			return rc;
		return drain_tls(s);
	}
#endif
	rc = tbuf_append(&s->out, p, n);
	if (rc != 0)
		return rc;
	mark_dirty(s);
	return 0;
}

size_t tstream_queued(const struct tstream *s)
{
	size_t n = tbuf_size(&s->out) + tbuf_size(&s->wb);

#ifdef TEEMSD_HAVE_TLS
	if (s->tls != NULL)
		n += tls_conn_pending(s->tls);
#endif
	return n;
}

void tstream_pause(struct tstream *s)
{
	if (s->reading && !s->closing)
		uv_read_stop((uv_stream_t *)&s->tcp);
	s->reading = false;
	s->paused = true;
}

void tstream_resume(struct tstream *s)
{
	s->paused = false;
	if (s->reading || s->closing || s->close_after_write)
		return;
	if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
		s->reading = true;
}

static void close_cb(uv_handle_t *h)
{
	struct tstream *s = h->data;

	tbuf_free(&s->in);
	tbuf_free(&s->out);
	tbuf_free(&s->wb);
#ifdef TEEMSD_HAVE_TLS
	if (s->tls != NULL)
		tls_conn_free(s->tls);
#endif
	s->tls = NULL;
	if (s->ops->on_close != NULL)
		s->ops->on_close(s);
}

void tstream_close(struct tstream *s)
{
	if (s->closing)
		return;
	s->closing = true;
	if (!tlist_empty(&s->dirty))
		tlist_del(&s->dirty);
	if (s->lingering)
		tlist_del(&s->linger);
	uv_close((uv_handle_t *)&s->tcp, close_cb);
}

/* Closing after a final reply (a protocol error, QUIT, too many clients) is a lingering close,
 * as HTTP servers do it: write what is queued, shut down our direction, then keep reading and
 * dropping until the peer closes or LINGER_MS pass. Closing at once while the client is still
 * sending (the rest of an oversized request) would make the kernel answer with a reset, and a
 * reset can destroy the error reply before the client reads it. Under TLS before the handshake
 * completes, the reply waits inside the TLS engine: the handshake goes on first. */
void tstream_close_after_write(struct tstream *s)
{
	if (s->closing || s->close_after_write || s->close_pending)
		return;
#ifdef TEEMSD_HAVE_TLS
	if (s->tls != NULL && !s->established && !s->tls_failed) {
		/* The reply is queued inside the TLS engine until the handshake completes, so the
		 * handshake must go on; it gets LINGER_MS to do so. */
		s->close_pending = true;
		s->lingering = true;
		s->linger_deadline = uv_now(s->d->loop) + LINGER_MS;
		tlist_add(&s->d->lingering, &s->linger);
		return;
	}
	if (s->tls != NULL && !s->tls_failed) {
		tls_conn_shutdown(s->tls);
		drain_tls(s);
	}
#endif
	s->close_after_write = true;
	if (!s->reading && uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
		s->reading = true;
	if (!s->writing && tbuf_size(&s->out) == 0)
		linger(s);
	else
		mark_dirty(s);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	/* nothing to do: the linger deadline or the peer's EOF closes the stream */
}

static void linger(struct tstream *s)
{
	if (s->lingering || s->closing)
		return;
	if (s->d->stopping || uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, shutdown_cb) != 0) {
		tstream_close(s);
		return;
	}
	s->lingering = true;
	s->linger_deadline = uv_now(s->d->loop) + LINGER_MS;
	tlist_add(&s->d->lingering, &s->linger);
}

void tstream_linger_check(struct teemsd *d)
{
	uint64_t now = uv_now(d->loop);
	struct tlist *n = d->lingering.next;

	while (n != &d->lingering) {
		struct tstream *s = tlist_entry(n, struct tstream, linger);

		n = n->next;
		if (now >= s->linger_deadline)
			tstream_close(s);
	}
}

static void write_cb(uv_write_t *req, int status)
{
	struct tstream *s = req->data;

	s->writing = false;
	s->wb.off = s->wb.len = 0;
	if (s->wb.cap > IDLE_CAP_MAX)
		tbuf_free(&s->wb);
	if (s->closing)
		return; /* cancelled by uv_close; close_cb frees the buffers */
	if (status < 0) {
		tstream_close(s);
		return;
	}
	if (tbuf_size(&s->out) > 0) {
		mark_dirty(s);
	} else if (s->close_after_write) {
		linger(s);
		return;
	}
	if (s->ops->on_drain != NULL)
		s->ops->on_drain(s);
}

static void flush_one(struct tstream *s)
{
	struct tbuf tmp;
	uv_buf_t b;

	if (s->writing || s->closing || tbuf_size(&s->out) == 0)
		return;
	/* Hand the queued bytes to libuv; the old in-flight buffer takes new ones. */
	tmp = s->wb;
	s->wb = s->out;
	s->out = tmp;
	s->out.off = s->out.len = 0;
	if (s->out.cap > IDLE_CAP_MAX)
		tbuf_free(&s->out);
	b = uv_buf_init((char *)tbuf_data(&s->wb), (unsigned)tbuf_size(&s->wb));
	s->wreq.data = s;
	s->writing = true;
	if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, write_cb) != 0) {
		s->writing = false;
		tstream_close(s);
	}
}

void tstream_flush_all(struct teemsd *d)
{
	while (!tlist_empty(&d->dirty)) {
		struct tlist *n = d->dirty.next;
		struct tstream *s = tlist_entry(n, struct tstream, dirty);

		tlist_del(n);
		flush_one(s);
	}
}
