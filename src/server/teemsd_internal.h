/* teemsd's shell (DESIGN.md section 1): one libuv loop that owns every socket and drives the
 * replica engine through server/replica.h. Internal to the teemsd_*.c files.
 *
 *   teemsd.c          main: configuration, startup checks, the tick timer, signals, the fsync
 *                     worker job, shutdown
 *   teemsd_stream.c   one TCP connection with an optional TLS engine: read buffer, write queue
 *   teemsd_client.c   RESP clients: parsing, pipelining, the reply reorder queue, the
 *                     connection-level commands (HELLO, AUTH, QUIT, SELECT, CLIENT, ...)
 *   teemsd_peer.c     replica-to-replica channels: listener, dialers with backoff, framing
 *   teemsd_log.c      one line per event on stderr
 *
 * Everything runs on the loop thread except replica_sync_run (a libuv worker). */
#ifndef TEEMS_SERVER_TEEMSD_INTERNAL_H
#define TEEMS_SERVER_TEEMSD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/resp.h"
#include "net/tls.h"
#include "server/config.h"
#include "server/replica.h"

#define TEEMSD_VERSION "7.0.0"
#define TEEMSD_MAX_CLIENTS 10000u
/* A client whose replies are not being read stops being read itself (no more parsing) once
 * this much output is queued, or this many requests wait for replies: memory per client stays
 * bounded however deep it pipelines. */
#define TEEMSD_CLIENT_OUT_MAX ((size_t)64 << 20)
#define TEEMSD_CLIENT_INFLIGHT_MAX 65536u
/* Frames to a peer whose queue is over this are dropped (the protocol retries). */
#define TEEMSD_PEER_OUT_MAX ((size_t)64 << 20)
#define TEEMSD_BACKOFF_MIN_MS 50u
#define TEEMSD_BACKOFF_MAX_MS 1000u
#define TEEMSD_READ_CHUNK 65536u

/* A doubly linked list node, embedded. */
struct tlist {
	struct tlist *prev, *next;
};

/* A growable byte buffer with a consumed prefix. */
struct tbuf {
	uint8_t *p;
	size_t off, len, cap; /* live bytes are p[off .. len) */
};

int tbuf_reserve(struct tbuf *b, size_t more);
int tbuf_append(struct tbuf *b, const void *p, size_t n);
void tbuf_consume(struct tbuf *b, size_t n);
void tbuf_free(struct tbuf *b);
static inline size_t tbuf_size(const struct tbuf *b)
{
	return b->len - b->off;
}
static inline uint8_t *tbuf_data(const struct tbuf *b)
{
	return b->p + b->off;
}

struct teemsd;
struct tstream;

struct tstream_ops {
	/* New plaintext is in s->in (consume what is used). */
	void (*on_data)(struct tstream *s);
	/* The TLS handshake completed (never called for plaintext streams). */
	void (*on_established)(struct tstream *s);
	/* The write queue drained below the owner's threshold after a write completed. */
	void (*on_drain)(struct tstream *s);
	/* The handle is closed: the owner frees s (and what contains it). */
	void (*on_close)(struct tstream *s);
};

/* One TCP connection. Owned by whatever embeds it (a client, a peer link); freed only from
 * ops->on_close, which libuv calls after uv_close completes, so a stream stays valid for the
 * whole callback in which it is closed. */
struct tstream {
	uv_tcp_t tcp;
	struct teemsd *d;
	const struct tstream_ops *ops;
	void *owner;
	struct tls_conn *tls; /* NULL: plaintext */
	struct tbuf in;	      /* plaintext received, not yet consumed by the owner */
	struct tbuf out;      /* bytes for the socket (ciphertext under TLS) not yet written */
	uv_write_t wreq;
	struct tbuf wb; /* the bytes of the write in flight */
	bool writing, reading, paused, closing, close_after_write, established, lingering;
	bool close_pending; /* TLS: close after write once the handshake completes */
	bool tls_failed;
	struct tlist dirty; /* in d->dirty while out has bytes and no write is in flight */
	uv_shutdown_t sreq;
	struct tlist linger; /* in d->lingering while lingering */
	uint64_t linger_deadline;
	size_t discarded;
	char name[64]; /* "client 127.0.0.1:5123", for logs */
};

void tstream_init(struct teemsd *d, struct tstream *s, const struct tstream_ops *ops, void *owner);
/* Starts reading (after accept or connect). tls (may be NULL) is owned by s from now on. */
int tstream_start(struct tstream *s, struct tls_conn *tls);
/* Queues bytes (plaintext; encrypted here under TLS). Errors: TEEMS_ENOMEM, TEEMS_EPROTO. */
int tstream_send(struct tstream *s, const void *p, size_t n);
size_t tstream_queued(const struct tstream *s);
void tstream_pause(struct tstream *s);
void tstream_resume(struct tstream *s);
/* Closes now (queued output is dropped). Safe to call twice. */
void tstream_close(struct tstream *s);
/* Writes what is queued, then closes (lingering: input is read and dropped meanwhile). */
void tstream_close_after_write(struct tstream *s);
/* Closes lingering streams whose time is up (called from the tick). */
void tstream_linger_check(struct teemsd *d);
/* Writes every stream with queued output (called once per loop phase). */
void tstream_flush_all(struct teemsd *d);
/* "127.0.0.1:5123" of the remote end. */
void tstream_describe(struct tstream *s, const char *what);

struct client;

struct peer_link;
struct peer_out {
	struct teemsd *d;
	unsigned id;
	struct config_addr addr;
	struct peer_link *link; /* the connection being dialed or up, or NULL */
	uv_timer_t retry;
	uv_getaddrinfo_t gai;
	bool resolving;
	uint64_t backoff_ms;
	bool up; /* connected (and for TLS: the peer proved id) */
	uint64_t up_since;
	uint64_t dropped, failures;
};

struct teemsd {
	uv_loop_t *loop;
	struct teems_config cfg;
	struct replica *r;
	const char *argv0;

	uv_timer_t tick;
	uv_signal_t sigint, sigterm;
	uv_prepare_t prepare;
	uv_check_t check;
	uv_tcp_t client_listener, peer_listener;
	bool client_listening, peer_listening;

	/* clients: a slot table so a conn id (seq << 16 | slot) finds its client at once */
	struct client **clients;
	unsigned client_slots, n_clients, max_clients;
	uint64_t conn_seq;
	uint64_t refused_clients;

	struct peer_out peers[QUORUM_MAX_REPLICAS];
	struct tlist peers_in; /* accepted peer connections */
	unsigned n_peers_in;

	struct tlist dirty;
	struct tlist lingering;

	/* the fsync job (replica.h) */
	uv_work_t work;
	struct replica_sync job;
	bool sync_running, sync_again;

	struct tls_ctx *peer_ctx;    /* NULL: plaintext development mode */
	struct tls_ctx *service_ctx; /* NULL: clients in plaintext */

	uint64_t ticks;
	bool stopping;
	bool halted;
	int exit_code;
	struct replica_net_stats stats;

	uint8_t rbuf[TEEMSD_READ_CHUNK];
};

/* teemsd_log.c */
void teemsd_log_init(unsigned replica_id);
void teemsd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* teemsd.c */
void teemsd_update_stats(struct teemsd *d);
/* Stops the loop: closes every handle; main then exits with d->exit_code. */
void teemsd_stop(struct teemsd *d, int exit_code);

/* teemsd_client.c */
int clients_listen(struct teemsd *d, char *errbuf);
void clients_close_all(struct teemsd *d);
void clients_reply(struct teemsd *d, uint64_t conn, uint64_t req, const uint8_t *resp, size_t len);

/* teemsd_peer.c */
int peers_start(struct teemsd *d, char *errbuf);
void peers_close_all(struct teemsd *d);
void peers_send(struct teemsd *d, uint16_t to, const uint8_t *frame, size_t len);
unsigned peers_connected(const struct teemsd *d);
/* Closes accepted connections that did not name themselves in time (about once a second). */
void peers_check(struct teemsd *d);

/* The plaintext peer hello (teemsd_peer.c): sent first on every dialed connection when
 * peer channels are not TLS, so the accepting side learns who dialed. 16 bytes:
 *   "TEEMSHI1" | u16 LE replica id | u16 LE N (number of replicas) | 4 zero bytes */
#define TEEMSD_HELLO_LEN 16
#define TEEMSD_HELLO_MAGIC "TEEMSHI1"

/* list helpers */
static inline void tlist_init(struct tlist *l)
{
	l->prev = l->next = l;
}
static inline bool tlist_empty(const struct tlist *l)
{
	return l->next == l;
}
static inline void tlist_add(struct tlist *head, struct tlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}
static inline void tlist_del(struct tlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}
#define tlist_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
