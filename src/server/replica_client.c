/* Client commands in the replica engine (replica.h): local commands (PING, INFO,
 * TEEMS.STATUS), writes through the log, linearizable reads through the read index, and the
 * forwarding of both to the leader (DESIGN.md section 9: "a follower forwards writes to the
 * leader").
 *
 * Exactly once. The core does not deduplicate: a (client_id, request_id) proposed twice would
 * be applied twice. So a request is handed to a core again only after that core said it never
 * proposed it (NOT_LEADER, BUSY: "not applied"), and a forwarded write is never re-sent: if the
 * leader does not answer, the client is told the outcome is unknown (as after UNKNOWN). The
 * leader ignores a forwarded request that is already in flight there. Reads have no effect and
 * are simply re-routed.
 *
 * A forwarded write can be answered two ways, whichever comes first: the leader's
 * MSG_CLIENT_REPLY, or this replica applying the slot that holds its (client_id, request_id)
 * (both carry the same result: the state machine is deterministic). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "kv/lease_table.h"
#include "server/replica_abd.h"
#include "server/replica_internal.h"
#include "server/replica_recover.h"
#include "server/replica_snap.h"
#include "teems/err.h"

#define ERR_UNKNOWN                                                                           \
	"ERR teems: outcome unknown (the leader changed before the write was confirmed): it " \
	"may or may not have been applied, and retrying it is not idempotent"
#define ERR_NO_LEADER "TRYAGAIN teems: no leader; retry later"
#define ERR_BUSY "TRYAGAIN teems: busy; retry later"
#define ERR_REFUSED "ERR teems: the state machine refused the command"
#define ERR_TOO_LARGE "ERR teems: the command is too large for one log slot"
#define ERR_REPLY_TOO_LARGE "ERR teems: the reply is too large to forward; ask the leader"
#define ERR_FORWARD_TOO_LARGE "ERR teems: the command is too large to forward; ask the leader"

static const char *const role_names[] = {"follower", "candidate", "leader"};
static const char *const lc_names[] = {"fresh", "registering", "fencing", "recovering", "halted"};

/* ---- the pending table: a chained hash on (client_id, request_id), plus a timed list ---- */

void rp_clients_init(struct replica *r)
{
	r->buckets = NULL;
	r->n_buckets = 0;
	r->n_pending = 0;
	r->timed_head = NULL;
	r->next_request = 1;
	lease_timers_init(&r->lease.tm, (uint32_t)(r->cfg.rho * 1e6 + 0.5), false);
	r->lease.next_request = 1;
}

static size_t bucket_of(const struct replica *r, uint64_t cid, uint64_t rid)
{
	uint64_t h =
		cid * 0x9e3779b97f4a7c15ull ^ (rid + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;

	return (size_t)((h ^ (h >> 29)) & (r->n_buckets - 1));
}

static struct rp_pending *lookup(struct replica *r, uint64_t cid, uint64_t rid)
{
	struct rp_pending *pe;

	if (r->n_buckets == 0)
		return NULL;
	for (pe = r->buckets[bucket_of(r, cid, rid)]; pe != NULL; pe = pe->hnext)
		if (pe->client_id == cid && pe->request_id == rid)
			return pe;
	return NULL;
}

static int table_grow(struct replica *r)
{
	size_t nb = r->n_buckets ? 2 * r->n_buckets : 64;
	struct rp_pending **old = r->buckets, **nbk = teems_malloc(nb * sizeof(*nbk));
	size_t old_n = r->n_buckets;

	if (nbk == NULL)
		return TEEMS_ENOMEM;
	memset(nbk, 0, nb * sizeof(*nbk));
	r->buckets = nbk;
	r->n_buckets = nb;
	for (size_t i = 0; i < old_n; i++) {
		struct rp_pending *pe = old[i], *next;

		for (; pe != NULL; pe = next) {
			size_t b = bucket_of(r, pe->client_id, pe->request_id);

			next = pe->hnext;
			pe->hnext = nbk[b];
			nbk[b] = pe;
		}
	}
	teems_free(old);
	return TEEMS_OK;
}

static int table_add(struct replica *r, struct rp_pending *pe)
{
	size_t b;

	if (r->n_pending + 1 > 2 * r->n_buckets && table_grow(r) != TEEMS_OK)
		return TEEMS_ENOMEM;
	b = bucket_of(r, pe->client_id, pe->request_id);
	pe->hnext = r->buckets[b];
	r->buckets[b] = pe;
	r->n_pending++;
	return TEEMS_OK;
}

static void timed_remove(struct replica *r, struct rp_pending *pe)
{
	if (!pe->timed)
		return;
	if (pe->tprev != NULL)
		pe->tprev->tnext = pe->tnext;
	else
		r->timed_head = pe->tnext;
	if (pe->tnext != NULL)
		pe->tnext->tprev = pe->tprev;
	pe->tprev = pe->tnext = NULL;
	pe->timed = false;
}

static void timed_set(struct replica *r, struct rp_pending *pe, uint64_t at)
{
	pe->timer_ns = at;
	if (pe->timed)
		return;
	pe->tprev = NULL;
	pe->tnext = r->timed_head;
	if (r->timed_head != NULL)
		r->timed_head->tprev = pe;
	r->timed_head = pe;
	pe->timed = true;
}

static void pending_free(struct replica *r, struct rp_pending *pe)
{
	struct rp_pending **pp;

	timed_remove(r, pe);
	if (r->n_buckets > 0) {
		for (pp = &r->buckets[bucket_of(r, pe->client_id, pe->request_id)]; *pp != NULL;
		     pp = &(*pp)->hnext) {
			if (*pp == pe) {
				*pp = pe->hnext;
				r->n_pending--;
				break;
			}
		}
	}
	teems_free(pe->wire);
	teems_free(pe);
}

void rp_clients_free(struct replica *r)
{
	for (size_t i = 0; i < r->n_buckets; i++) {
		struct rp_pending *pe = r->buckets[i], *next;

		for (; pe != NULL; pe = next) {
			next = pe->hnext;
			teems_free(pe->wire);
			teems_free(pe);
		}
	}
	for (size_t i = 0; i < r->lease.n_held; i++)
		teems_free(r->lease.held[i].res); /* their pendings were freed above */
	teems_free(r->lease.held);
	r->lease.held = NULL;
	r->lease.n_held = r->lease.cap_held = 0;
	teems_free(r->buckets);
	r->buckets = NULL;
	r->n_buckets = r->n_pending = 0;
	r->timed_head = NULL;
	lease_timers_free(&r->lease.tm);
}

/* ---- answering ---- */

static void reply_out(struct replica *r, uint64_t conn, uint64_t req, struct resp_out *o)
{
	if (o->err != TEEMS_OK) {
		static const char oom[] = "-ERR teems: out of memory\r\n";

		r->io.reply(r->io.ctx, conn, req, (const uint8_t *)oom, sizeof(oom) - 1);
		return;
	}
	r->io.reply(r->io.ctx, conn, req, o->buf, o->len);
}

static void reply_error(struct replica *r, uint64_t conn, uint64_t req, int proto, const char *msg)
{
	struct resp_out o;

	resp_out_init(&o, proto);
	resp_add_error(&o, msg);
	reply_out(r, conn, req, &o);
	resp_out_free(&o);
}

static void send_client_reply(struct replica *r, struct rp_pending *pe,
			      enum msg_client_status status, uint16_t leader, const uint8_t *result,
			      size_t len)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = MSG_CLIENT_REPLY;
	rp_msg_header(r, &m);
	m.client_reply.client_id = pe->client_id;
	m.client_reply.request_id = pe->request_id;
	m.client_reply.status = status;
	m.client_reply.leader = leader;
	m.client_reply.result.p = result;
	m.client_reply.result.len = len > MSG_MAX_BLOB ? MSG_MAX_BLOB + 1u : (uint32_t)len;
	if (rp_send_msg(r, pe->origin, &m) == TEEMS_OK || status == MSG_CLIENT_ERROR)
		return;
	/* A result too large for one frame: the forwarder's client gets an error instead. */
	m.client_reply.status = MSG_CLIENT_ERROR;
	m.client_reply.result.p = (const uint8_t *)ERR_REPLY_TOO_LARGE;
	m.client_reply.result.len = sizeof(ERR_REPLY_TOO_LARGE) - 1;
	(void)rp_send_msg(r, pe->origin, &m);
}

/* Ends a request with an error text (no leading '-'). */
static void finish_error(struct replica *r, struct rp_pending *pe, const char *msg)
{
	if (pe->forwarded_in)
		send_client_reply(r, pe, MSG_CLIENT_ERROR, MSG_NO_REPLICA, (const uint8_t *)msg,
				  strlen(msg));
	else if (!pe->gone)
		reply_error(r, pe->conn, pe->req, pe->proto, msg);
	pending_free(r, pe);
}

/* Ends a request with the state machine's encoded result. */
static void finish_result(struct replica *r, struct rp_pending *pe, const uint8_t *result,
			  size_t len)
{
	struct resp_out o;

	if (pe->forwarded_in) {
		send_client_reply(r, pe, MSG_CLIENT_OK, MSG_NO_REPLICA, result, len);
	} else if (!pe->gone) {
		resp_out_init(&o, pe->proto);
		if (cmd_response(pe->spec, result, len, &o) != 0 && o.err == TEEMS_OK && o.len == 0)
			resp_add_error(&o, "ERR teems: the result does not decode");
		reply_out(r, pe->conn, pe->req, &o);
		resp_out_free(&o);
	}
	pending_free(r, pe);
}

static void lease_remaining(struct replica *r, const uint8_t *cmd, size_t len, uint8_t *res,
			    size_t res_len);

/* The lease ended between the read and its confirmation: the read goes again, and then takes
 * the read index. */
static void lease_read_fallback(struct replica *r, struct rp_pending *pe)
{
	r->lease.read_fallbacks++;
	if (pe->forwarded_in) {
		/* "busy, try me again" for its forwarder */
		send_client_reply(r, pe, MSG_CLIENT_NOT_LEADER, r->self, NULL, 0);
		pending_free(r, pe);
		return;
	}
	/* Not inside this step: the client timers submit it again. */
	pe->state = RP_RETRY;
	timed_set(r, pe, r->now.hi_ns);
}

/* A fresh clock reading, as the core's time. */
static struct paxos_time fresh_now(struct replica *r)
{
	struct tee_clock_reading c;
	struct paxos_time now = r->now;

	if (tee_clock_now(r->clock, &c) == TEEMS_OK) {
		now.lo_ns = c.lo_ns;
		now.hi_ns = c.hi_ns;
		now.epoch = c.epoch;
	}
	return now;
}

/* Keeps a lease read's result for replica_flush. Reading the clock costs about as much as
 * serving a GET, and one reading taken after every read of a batch ran confirms them all:
 * a later confirmation is only a stricter one. */
static int lease_read_hold(struct replica *r, struct rp_pending *pe, uint8_t *res, size_t len)
{
	if (r->lease.n_held == r->lease.cap_held) {
		size_t cap = r->lease.cap_held ? r->lease.cap_held * 2 : 64;
		struct rp_lease_read *h = teems_realloc(r->lease.held, cap * sizeof(*h));

		if (h == NULL)
			return TEEMS_ENOMEM;
		r->lease.held = h;
		r->lease.cap_held = cap;
	}
	timed_remove(r, pe);
	pe->state = RP_LEASE_HELD;
	r->lease.held[r->lease.n_held].pe = pe;
	r->lease.held[r->lease.n_held].res = res;
	r->lease.held[r->lease.n_held].len = len;
	r->lease.n_held++;
	return TEEMS_OK;
}

/* A read, served on this replica's state (after the read-index barrier, or at the leader for a
 * forwarded read). Read-only commands never change the map (commands.h). A read answered from
 * the leader lease (`lease`) is confirmed after it ran, with a clock reading taken after it
 * (paxos.h, "Leader lease"): at once, or for a client's read, by replica_flush at the end of
 * the batch. If the lease ended meanwhile the result is discarded and the read goes again,
 * which then takes the read index. */
static void serve_read(struct replica *r, struct rp_pending *pe, bool lease)
{
	uint8_t *res = NULL;
	size_t len = 0;
	int rc = kv_apply_encoded(r->kv, pe->wire + 1, pe->wire_len - 1, &res, &len);

	if (rc != TEEMS_OK) {
		teems_free(res);
		finish_error(r, pe, rc == TEEMS_ENOMEM ? "ERR teems: out of memory" : ERR_REFUSED);
		return;
	}
	if (lease && r->lease.in_client && !pe->forwarded_in &&
	    lease_read_hold(r, pe, res, len) == TEEMS_OK)
		return;
	if (lease) {
		struct paxos_time now = fresh_now(r);

		if (!paxos_lease_read_ok(r->p, &now, 0)) {
			teems_free(res);
			lease_read_fallback(r, pe);
			return;
		}
	}
	lease_remaining(r, pe->wire + 1, pe->wire_len - 1, res, len);
	finish_result(r, pe, res, len);
	teems_free(res);
}

void replica_flush(struct replica *r)
{
	r->lease.batch_clock = false;
	/* Answering may run more client calls (the shell resumes a connection), which hold more
	 * reads: take the list, and go again until none is left. */
	while (r->lease.n_held > 0) {
		struct rp_lease_read *h = r->lease.held;
		size_t n = r->lease.n_held;
		struct paxos_time now = fresh_now(r);
		bool ok = paxos_lease_read_ok(r->p, &now, 0);

		r->lease.held = NULL;
		r->lease.n_held = r->lease.cap_held = 0;
		for (size_t i = 0; i < n; i++) {
			struct rp_pending *pe = h[i].pe;

			pe->state = RP_IN_CORE;
			if (ok) {
				lease_remaining(r, pe->wire + 1, pe->wire_len - 1, h[i].res,
						h[i].len);
				finish_result(r, pe, h[i].res, h[i].len);
			} else {
				lease_read_fallback(r, pe);
			}
			teems_free(h[i].res);
		}
		teems_free(h);
	}
}

/* ---- routing a request: the local core, a leader, or later ---- */

static void attempt(struct replica *r, struct rp_pending *pe);

/* Not proposed here: send it to the leader the core named, or try again later. Never steps
 * the core (this runs while a ready is being carried out). */
static void route(struct replica *r, struct rp_pending *pe, uint16_t hint)
{
	struct msg m;

	if (r->now.hi_ns >= pe->deadline_ns) {
		finish_error(r, pe, ERR_NO_LEADER);
		return;
	}
	if (hint >= r->n || hint == r->self) {
		pe->state = RP_RETRY;
		timed_set(r, pe, r->now.hi_ns + (hint == r->self ? RP_MS : RP_RETRY_NS));
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_CLIENT_REQUEST;
	rp_msg_header(r, &m);
	m.client_request.client_id = pe->client_id;
	m.client_request.request_id = pe->request_id;
	m.client_request.command.p = pe->wire;
	pe->state = RP_FORWARDED;
	pe->fwd_to = hint;
	if (pe->read) {
		timed_set(r, pe, r->now.hi_ns + RP_READ_FORWARD_NS);
	} else {
		uint64_t t = 2 * r->cfg.t_op_us * 1000;

		timed_set(r, pe,
			  r->now.hi_ns +
				  (t > RP_WRITE_FORWARD_MIN_NS ? t : RP_WRITE_FORWARD_MIN_NS));
	}
	m.client_request.command.len =
		pe->wire_len > MSG_MAX_BLOB ? MSG_MAX_BLOB + 1u : (uint32_t)pe->wire_len;
	if (rp_send_msg(r, hint, &m) != TEEMS_OK) {
		finish_error(r, pe, ERR_FORWARD_TOO_LARGE);
		return;
	}
	r->stats.forwarded++;
}

static void attempt(struct replica *r, struct rp_pending *pe)
{
	struct paxos_input in;
	int rc;

	if (!pe->forwarded_in) /* a forwarded request keeps its forget-me timer */
		timed_remove(r, pe);
	pe->state = RP_IN_CORE;
	/* What the core would refuse (a proposal over max_slot_bytes with the batch header) is
	 * refused here, without a step. */
	if (!pe->read && pe->wire_len - 1 + 64 > RP_MAX_SLOT_BYTES) {
		finish_error(r, pe, ERR_TOO_LARGE);
		return;
	}
	memset(&in, 0, sizeof(in));
	if (pe->read) {
		in.type = PAXOS_IN_READ;
		in.read.client_id = pe->client_id;
		in.read.request_id = pe->request_id;
	} else {
		in.type = PAXOS_IN_PROPOSE;
		in.propose.client_id = pe->client_id;
		in.propose.request_id = pe->request_id;
		in.propose.command = pe->wire + 1;
		in.propose.len = (uint32_t)(pe->wire_len - 1);
	}
	/* The step may answer (and free) pe through its notes: do not touch pe after it unless
	 * it failed. */
	rc = rp_step(r, &in);
	if (rc == TEEMS_EINVAL && !r->halted)
		finish_error(r, pe, ERR_TOO_LARGE);
}

void rp_client_note(struct replica *r, const struct paxos_note *n)
{
	struct rp_pending *pe;

	if (r->lease.client_id != 0 && n->client_id == r->lease.client_id) {
		/* an EXPIRE of ours that was not proposed (or may not commit): propose it again
		 * while in office (a repeated EXPIRE of one generation is a no-op) */
		if (n->outcome != PAXOS_OUTCOME_APPLIED && n->outcome != PAXOS_OUTCOME_READ)
			lease_timers_retry(&r->lease.tm);
		return;
	}
	pe = lookup(r, n->client_id, n->request_id);
	if (pe == NULL || pe->state != RP_IN_CORE)
		return;
	switch (n->outcome) {
	case PAXOS_OUTCOME_APPLIED:
		/* The reply goes out when its slot is applied (rp_client_applied), which is in
		 * this ready or an earlier one. */
		return;
	case PAXOS_OUTCOME_READ:
		if (pe->read)
			serve_read(r, pe, n->lease);
		return;
	case PAXOS_OUTCOME_NOT_LEADER:
		if (pe->forwarded_in) {
			send_client_reply(r, pe, MSG_CLIENT_NOT_LEADER, n->leader, NULL, 0);
			pending_free(r, pe);
			return;
		}
		route(r, pe, n->leader);
		return;
	case PAXOS_OUTCOME_BUSY:
		if (pe->forwarded_in) {
			/* NOT_LEADER naming ourselves: "try me again later" (replica.h's protocol
			 * note; the message has no BUSY status). */
			send_client_reply(r, pe, MSG_CLIENT_NOT_LEADER, r->self, NULL, 0);
			pending_free(r, pe);
			return;
		}
		if (r->now.hi_ns >= pe->deadline_ns) {
			finish_error(r, pe, ERR_BUSY);
			return;
		}
		pe->state = RP_RETRY;
		timed_set(r, pe, r->now.hi_ns + RP_BUSY_RETRY_NS);
		return;
	case PAXOS_OUTCOME_UNKNOWN:
		if (pe->forwarded_in) {
			send_client_reply(r, pe, MSG_CLIENT_UNKNOWN, n->leader, NULL, 0);
			pending_free(r, pe);
			return;
		}
		finish_error(r, pe, ERR_UNKNOWN);
		return;
	}
}

void rp_client_applied(struct replica *r, uint64_t client_id, uint64_t request_id, int rc,
		       uint8_t *result, size_t len)
{
	struct rp_pending *pe = lookup(r, client_id, request_id);

	/* Committed means applied exactly here, so whatever state the request is in (waiting for
	 * the core or for a forwarded answer), this is its result. */
	if (pe != NULL && !pe->read) {
		if (rc == TEEMS_OK)
			finish_result(r, pe, result, len);
		else
			finish_error(r, pe, ERR_REFUSED);
	}
	teems_free(result);
}

void rp_client_timers(struct replica *r)
{
	/* Each action below either re-arms a later timer or takes the entry off the list, so the
	 * scan restarts from the head after each; the bound is a guard, not a limit in practice. */
	size_t guard = r->n_pending * 2 + 16;

	while (guard-- > 0 && !r->halted) {
		struct rp_pending *pe = r->timed_head;

		while (pe != NULL && pe->timer_ns > r->now.hi_ns)
			pe = pe->tnext;
		if (pe == NULL)
			return;
		if (pe->forwarded_in) {
			pending_free(r, pe); /* the forwarder gave up long ago */
			continue;
		}
		if (pe->state == RP_FORWARDED && !pe->read) {
			finish_error(r, pe, ERR_UNKNOWN);
			continue;
		}
		if (r->now.hi_ns >= pe->deadline_ns) {
			finish_error(r, pe, ERR_NO_LEADER);
			continue;
		}
		attempt(r, pe);
		rp_read_clock(r);
	}
}

/* ---- forwarded requests and their answers ---- */

void rp_client_request_frame(struct replica *r, uint16_t from, const struct msg *m)
{
	const struct msg_client_request *q = &m->client_request;
	struct rp_pending *pe;

	if (q->command.len < 2 || q->command.p[0] > RP_FWD_READ ||
	    q->client_id == PAXOS_CONFIG_CLIENT) {
		r->stats.bad_frames++;
		return;
	}
	if (lookup(r, q->client_id, q->request_id) != NULL)
		return; /* already in flight here: the answer will come */
	pe = teems_malloc(sizeof(*pe));
	if (pe == NULL)
		return; /* the forwarder times out */
	memset(pe, 0, sizeof(*pe));
	pe->wire = teems_malloc(q->command.len);
	if (pe->wire == NULL) {
		teems_free(pe);
		return;
	}
	memcpy(pe->wire, q->command.p, q->command.len);
	pe->wire_len = q->command.len;
	pe->client_id = q->client_id;
	pe->request_id = q->request_id;
	pe->forwarded_in = true;
	pe->origin = from;
	pe->read = q->command.p[0] == RP_FWD_READ;
	if (table_add(r, pe) != TEEMS_OK) {
		teems_free(pe->wire);
		teems_free(pe);
		return;
	}
	r->stats.forwarded_in++;
	rp_read_clock(r);
	/* Forgotten after a long while if the core never answers (it always does today). */
	timed_set(r, pe, r->now.hi_ns + RP_FORWARDED_IN_NS);
	pe->deadline_ns = UINT64_MAX;
	attempt(r, pe);
}

void rp_client_reply_frame(struct replica *r, uint16_t from, const struct msg *m)
{
	const struct msg_client_reply *a = &m->client_reply;
	struct rp_pending *pe = lookup(r, a->client_id, a->request_id);
	char text[256];
	size_t n;

	if (pe == NULL || pe->forwarded_in || pe->state != RP_FORWARDED || pe->fwd_to != from)
		return; /* stale: answered already, or re-routed */
	rp_read_clock(r);
	switch (a->status) {
	case MSG_CLIENT_OK:
		finish_result(r, pe, a->result.p, a->result.len);
		return;
	case MSG_CLIENT_ERROR:
		/* The leader's error text, kept to one printable line. */
		n = a->result.len < sizeof(text) - 1 ? a->result.len : sizeof(text) - 1;
		for (size_t i = 0; i < n; i++) {
			uint8_t ch = a->result.p[i];

			text[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
		}
		text[n] = '\0';
		finish_error(r, pe, n > 0 ? text : "ERR teems: the leader refused the command");
		return;
	case MSG_CLIENT_NOT_LEADER:
		/* Never proposed there. A hint naming the replier means "busy, try me later". */
		if (a->leader == from) {
			if (r->now.hi_ns >= pe->deadline_ns) {
				finish_error(r, pe, ERR_BUSY);
				return;
			}
			pe->state = RP_RETRY;
			pe->fwd_to = MSG_NO_REPLICA;
			timed_set(r, pe, r->now.hi_ns + RP_BUSY_RETRY_NS);
			return;
		}
		pe->fwd_to = MSG_NO_REPLICA;
		route(r, pe, a->leader);
		return;
	case MSG_CLIENT_UNKNOWN:
		finish_error(r, pe, ERR_UNKNOWN);
		return;
	}
}

/* ---- local commands ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct text {
	char *p;
	size_t len, cap;
	bool oom;
};

static void text_addf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_addf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if (t->p != NULL && (size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t ncap = t->cap ? t->cap * 2 : 1024;
			char *np;

			while (ncap < t->len + (size_t)n + 1)
				ncap *= 2;
			np = teems_realloc(t->p, ncap);
			if (np == NULL) {
				t->oom = true;
				return;
			}
			t->p = np;
			t->cap = ncap;
		}
	}
}

static const char *sync_name(enum config_sync s)
{
	return s == CONFIG_SYNC_ALWAYS ? "always" : s == CONFIG_SYNC_NONE ? "none" : "rr";
}

/* contracts.md item 5: the TEEMS.STATUS fields, "key:value\r\n" lines. */
static void status_lines(struct replica *r, struct text *t)
{
	struct msg_ballot b = paxos_promised(r->p);
	struct msg_regidx reg = paxos_registration(r->p);
	struct tee_clock_stats cs;
	int role = (int)paxos_role(r->p), lc = (int)paxos_lifecycle(r->p);
	uint16_t leader = paxos_leader_hint(r->p);
	char inc[17];

	if (role == PAXOS_LEADER)
		leader = r->self;
	tee_clock_stats(r->clock, &cs);
	for (int i = 0; i < 8; i++)
		snprintf(inc + 2 * i, 3, "%02x", r->pub[i]);
	text_addf(t, "replica_id:%u\r\n", r->self);
	text_addf(t, "role:%s\r\n", role >= 0 && role <= 2 ? role_names[role] : "?");
	text_addf(t, "lifecycle:%s\r\n", lc >= 0 && lc <= 4 ? lc_names[lc] : "?");
	text_addf(t, "suspicious:%d\r\n", paxos_suspicious(r->p) ? 1 : 0);
	text_addf(t, "ballot:%" PRIu64 ".%u\r\n", b.round, b.replica);
	if (leader < r->n)
		text_addf(t, "leader_id:%u\r\n", leader);
	else
		text_addf(t, "leader_id:-1\r\n");
	text_addf(t, "incarnation:%s\r\n", inc);
	text_addf(t, "registration:%" PRIu64 ".%" PRIu64 "\r\n", reg.epoch, reg.slot);
	text_addf(t, "epoch:%" PRIu64 "\r\n", paxos_epoch(r->p));
	text_addf(t, "commit_index:%" PRIu64 "\r\n", paxos_commit_index(r->p));
	text_addf(t, "applied_index:%" PRIu64 "\r\n", r->applied_index);
	text_addf(t, "last_slot:%" PRIu64 "\r\n", paxos_last_slot(r->p));
	text_addf(t, "sync:%s\r\n", sync_name(r->cfg.sync));
	if (r->abd != NULL) /* engine = abd (replica_abd.c) */
		text_addf(t, "engine:abd\r\n%s", rp_abd_status(r));
	else
		text_addf(t, "engine:paxos\r\n");
	text_addf(t, "platform:%s\r\n", tee_platform_name(r->tee));
	text_addf(t, "clock_epoch:%" PRIu64 "\r\n", r->now.epoch);
	text_addf(t, "clock_taints:%" PRIu64 "\r\n", cs.taints);
	/* DESIGN.md section 8: "tainted" once the verifier has seen manipulation (the leases of
	 * the epochs before were dropped, their waits restarted) */
	text_addf(t, "clock_state:%s\r\n", cs.taints > 0 ? "tainted" : "ok");
	text_addf(t, "clock_last_taint:%s\r\n", tee_clock_taint_name(cs.last_taint));
	for (int i = 1; i < TEE_CLOCK_TAINT_N_; i++)
		text_addf(t, "clock_taints_%s:%" PRIu64 "\r\n",
			  tee_clock_taint_name((enum tee_clock_taint)i), cs.taints_by_reason[i]);
	text_addf(t, "clock_reads:%" PRIu64 "\r\n", cs.reads);
	/* the verifiers the clock runs: the host monotonic clock on every read, and with
	 * `counter` a spinning counter thread too (setting clock_verify, src/tee/tee.h) */
	text_addf(t, "clock_verify:%s\r\n", tee_clock_verify_name(cs.verify));
	text_addf(t, "lease_held:%d\r\n", paxos_lease_held(r->p) ? 1 : 0);
	text_addf(t, "lease_reads:%" PRIu64 "\r\n", paxos_lease_reads(r->p));
	text_addf(t, "lease_read_fallbacks:%" PRIu64 "\r\n", r->lease.read_fallbacks);
	text_addf(t, "t_lease_ms:%" PRIu64 "\r\n", r->cfg.t_lease_us / 1000);
	text_addf(t, "client_leases_timers:%zu\r\n", r->lease.tm.in_office ? r->lease.tm.n : 0);
	text_addf(t, "client_leases_expired:%" PRIu64 "\r\n", r->lease.expires);
	text_addf(t, "client_addr:%s%s%s:%u\r\n", strchr(r->cfg.listen.host, ':') ? "[" : "",
		  r->cfg.listen.host, strchr(r->cfg.listen.host, ':') ? "]" : "",
		  r->cfg.listen.port);
	text_addf(t, "peers_connected:%" PRIu64 "\r\n", r->net.peers_connected);
	text_addf(t, "clients_connected:%" PRIu64 "\r\n", r->net.clients_connected);
	text_addf(t, "n:%u\r\nf:%u\r\nm_r:%u\r\n", r->n, r->cfg.f, r->cfg.m_r);
	text_addf(t, "keys:%zu\r\n", kv_count(r->kv));
	text_addf(t, "pending_requests:%zu\r\n", r->n_pending);
	text_addf(t, "wal_records_restored:%" PRIu64 "\r\n", r->restored_records);
	text_addf(t, "wal_appended:%" PRIu64 "\r\n", r->appended_index);
	text_addf(t, "wal_fsyncs:%" PRIu64 "\r\n", r->stats.fsyncs);
	text_addf(t, "genesis_check:%d\r\n", rp_genesis_pending(r) ? 1 : 0);
	text_addf(t, "%s", replica_snap_status(r));
	text_addf(t, "forwarded:%" PRIu64 "\r\n", r->stats.forwarded);
	text_addf(t, "forwarded_in:%" PRIu64 "\r\n", r->stats.forwarded_in);
	text_addf(t, "bad_frames:%" PRIu64 "\r\n", r->stats.bad_frames + r->net.bad_frames);
	text_addf(t, "bad_quotes:%" PRIu64 "\r\n", r->stats.bad_quotes);
	{
		char rs[REPLICA_RESTART_STATUS_MAX];

		replica_restart_status(r, rs, sizeof(rs));
		text_addf(t, "%s", rs);
	}
}

static bool arg_eq(const struct resp_arg *a, const char *s)
{
	size_t n = strlen(s);

	if (a->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = (char)a->p[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != s[i])
			return false;
	}
	return true;
}

static void local_info(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		       size_t argc, int proto)
{
	bool server = true, teems = true;
	struct text t = {0};
	struct resp_out o;

	if (argc >= 2) {
		server = teems = false;
		for (size_t i = 1; i < argc; i++) {
			if (arg_eq(&argv[i], "all") || arg_eq(&argv[i], "default") ||
			    arg_eq(&argv[i], "everything"))
				server = teems = true;
			else if (arg_eq(&argv[i], "server"))
				server = true;
			else if (arg_eq(&argv[i], "teems"))
				teems = true;
		}
	}
	if (server) {
		text_addf(&t, "# Server\r\nredis_version:7.0.0-teems\r\nredis_mode:standalone\r\n");
		text_addf(&t, "tcp_port:%u\r\nprocess_id:%ld\r\n", r->cfg.listen.port,
			  (long)getpid());
		text_addf(&t, "uptime_in_seconds:%" PRIu64 "\r\n",
			  (uint64_t)((r->now.lo_ns - r->start_lo_ns) / 1000000000ull));
	}
	if (teems) {
		text_addf(&t, "%s# Teems\r\n", server ? "\r\n" : "");
		status_lines(r, &t);
	}
	resp_out_init(&o, proto);
	if (t.oom)
		resp_add_error(&o, "ERR teems: out of memory");
	else
		resp_add_bulk(&o, t.p ? t.p : "", t.len);
	reply_out(r, conn, req, &o);
	resp_out_free(&o);
	teems_free(t.p);
}

static void local_status(struct replica *r, uint64_t conn, uint64_t req, int proto)
{
	struct text t = {0};
	struct resp_out o;

	status_lines(r, &t);
	resp_out_init(&o, proto);
	if (t.oom)
		resp_add_error(&o, "ERR teems: out of memory");
	else
		resp_add_bulk(&o, t.p, t.len);
	reply_out(r, conn, req, &o);
	resp_out_free(&o);
	teems_free(t.p);
}

static void local_ping(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		       size_t argc, int proto)
{
	struct resp_out o;

	if (argc > 2) {
		reply_error(r, conn, req, proto,
			    "ERR wrong number of arguments for 'ping' command");
		return;
	}
	resp_out_init(&o, proto);
	if (argc == 2)
		resp_add_bulk(&o, argv[1].p, argv[1].len);
	else
		resp_add_simple(&o, "PONG");
	reply_out(r, conn, req, &o);
	resp_out_free(&o);
}

void replica_client(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		    size_t argc, int proto)
{
	replica_client_as(r, conn, req, NULL, argv, argc, proto);
}

bool replica_default_open(struct replica *r)
{
	return kv_acl_default_open(r->kv);
}

bool replica_has_users(struct replica *r)
{
	(void)r;
	return true;
}

static void local_whoami(struct replica *r, uint64_t conn, uint64_t req, const char *user,
			 int proto)
{
	struct resp_out o;

	resp_out_init(&o, proto);
	resp_add_bulk_cstr(&o, user);
	reply_out(r, conn, req, &o);
	resp_out_free(&o);
}

/* The local half of the permission checks (replica.h): who the command runs as, or NULL after
 * answering NOAUTH / NOPERM. A command that goes to the state machine is checked there, on
 * fresh state (a write when applied, a read after its barrier), so only the unauthenticated
 * gate is decided here for it: this replica may lag (a user created or granted a moment ago
 * is not known here yet), and its word would be stale in both directions. */
static const char *local_acl(struct replica *r, uint64_t conn, uint64_t req, const char *user,
			     const struct cmd_spec *spec, int proto)
{
	char err[CMD_ERR_LEN];

	if (user == NULL) {
		if (!kv_acl_default_open(r->kv)) {
			reply_error(r, conn, req, proto, "NOAUTH Authentication required.");
			return NULL;
		}
		user = KV_USER_ANON;
	}
	if ((spec->flags & (CMD_F_READ | CMD_F_WRITE)) || cmd_category(spec) == 0)
		return user;
	switch (kv_acl_check(r->kv, user, cmd_category(spec))) {
	case KV_OK:
		return user;
	case KV_ERR_NOPERM_CMD:
		snprintf(err, sizeof(err),
			 "NOPERM this user has no permissions to run the '%s' command", spec->name);
		reply_error(r, conn, req, proto, err);
		return NULL;
	default:
		reply_error(r, conn, req, proto, "NOAUTH Authentication required.");
		return NULL;
	}
}

void replica_client_as(struct replica *r, uint64_t conn, uint64_t req, const char *user,
		       const struct resp_arg *argv, size_t argc, int proto)
{
	char err[CMD_ERR_LEN];
	const struct cmd_spec *spec;
	struct rp_pending *pe;
	uint8_t *cmd = NULL;
	size_t cmd_len = 0;
	bool auth;

	if (r->halted) {
		reply_error(r, conn, req, proto, "ERR teems: this replica is stopping");
		return;
	}
	if (argc == 0) {
		reply_error(r, conn, req, proto, "ERR empty command");
		return;
	}
	spec = cmd_check(argv, argc, err);
	if (spec == NULL) {
		reply_error(r, conn, req, proto, err);
		return;
	}
	/* One reading per batch serves the reads in it (replica_flush starts the next batch):
	 * the reading only times the request, and a lease read is confirmed by a later one. */
	if (!(spec->flags & CMD_F_READ) || !r->lease.batch_clock) {
		rp_read_clock(r);
		r->lease.batch_clock = true;
	}
	auth = spec->id == CMD_AUTH;
	if (!auth) {
		user = local_acl(r, conn, req, user, spec, proto);
		if (user == NULL)
			return;
	}
	switch (spec->id) {
	case CMD_ACL_WHOAMI:
		local_whoami(r, conn, req, strcmp(user, KV_USER_ANON) == 0 ? "default" : user,
			     proto);
		return;
	case CMD_PING:
		local_ping(r, conn, req, argv, argc, proto);
		return;
	case CMD_INFO:
		local_info(r, conn, req, argv, argc, proto);
		return;
	case CMD_TEEMS_STATUS:
		local_status(r, conn, req, proto);
		return;
	case CMD_TEEMS_RECOVER:
		replica_recover_command(r, conn, req, argv, argc, proto);
		return;
	default:
		break;
	}
	if (rp_genesis_pending(r)) {
		reply_error(
			r, conn, req, proto,
			"TRYAGAIN teems: this replica is starting (asking its peers whether the "
			"cluster has run before)");
		return;
	}
	/* engine = abd (replica_abd.c): GET, SET and DEL through the ABD core, here */
	if (r->abd != NULL && !auth && rp_abd_client(r, conn, req, user, spec, argv, argc, proto))
		return;
	if (!auth && !(spec->flags & (CMD_F_WRITE | CMD_F_READ))) {
		snprintf(err, sizeof(err), "ERR '%s' is handled by the connection, not the replica",
			 spec->name);
		reply_error(r, conn, req, proto, err);
		return;
	}
	/* AUTH is a read of the user table (never wrapped: it is how one becomes a user) */
	if (cmd_request_as(spec, argv, argc, wall_ms(), auth ? NULL : user, &cmd, &cmd_len, err) !=
	    0) {
		reply_error(r, conn, req, proto, err);
		return;
	}
	pe = teems_malloc(sizeof(*pe));
	if (pe == NULL)
		goto oom;
	memset(pe, 0, sizeof(*pe));
	pe->wire = teems_malloc(cmd_len + 1);
	if (pe->wire == NULL)
		goto oom;
	pe->wire[0] = (spec->flags & CMD_F_WRITE) ? RP_FWD_WRITE : RP_FWD_READ;
	memcpy(pe->wire + 1, cmd, cmd_len);
	pe->wire_len = cmd_len + 1;
	teems_free(cmd);
	cmd = NULL;
	pe->client_id = r->client_id;
	pe->request_id = r->next_request++;
	pe->conn = conn;
	pe->req = req;
	pe->proto = proto;
	pe->spec = spec;
	pe->read = !(spec->flags & CMD_F_WRITE);
	pe->deadline_ns = r->now.hi_ns + RP_NO_LEADER_NS;
	if (table_add(r, pe) != TEEMS_OK)
		goto oom;
	r->lease.in_client = true;
	attempt(r, pe);
	r->lease.in_client = false;
	return;
oom:
	if (pe != NULL)
		teems_free(pe->wire);
	teems_free(pe);
	teems_free(cmd);
	reply_error(r, conn, req, proto, "ERR teems: out of memory");
}

void replica_client_gone(struct replica *r, uint64_t conn)
{
	rp_abd_client_gone(r, conn); /* engine = abd */
	/* Its requests stay in flight (a write may still commit, and the core's notes must
	 * find them so nothing is proposed twice), but nothing is answered. */
	for (size_t i = 0; i < r->n_buckets; i++) {
		struct rp_pending *pe = r->buckets[i], *next;

		for (; pe != NULL; pe = next) {
			next = pe->hnext;
			if (!pe->forwarded_in && pe->conn == conn)
				pe->gone = true;
		}
	}
}

/* ---- Leases (docs/LEASES.md, "Hooking client leases into the daemon") ----
 * The replicated lease table is in the state machine (kv.h KV_FORMAT_LEASE). The leader keeps
 * one expiry timer per held lease, on its own clock, and proposes EXPIRE(name, generation)
 * once TTL (1 + rho) has passed on its lo since the later of its taking office and the last
 * ACQUIRE or RENEW of that lease it applied. Times never enter the log. */

static struct lease_time lease_now(const struct replica *r)
{
	struct lease_time t;

	t.lo_ns = r->now.lo_ns;
	t.hi_ns = r->now.hi_ns;
	t.epoch = r->now.epoch;
	return t;
}

static bool lease_leader(struct replica *r)
{
	return paxos_role(r->p) == PAXOS_LEADER && paxos_lifecycle(r->p) == PAXOS_LC_FRESH;
}

void rp_lease_office(struct replica *r)
{
	bool leader = !r->halted && lease_leader(r);
	uint64_t epoch = paxos_epoch(r->p);

	if (!leader) {
		if (r->lease.tm.in_office)
			lease_timers_step_down(&r->lease.tm);
		return;
	}
	/* A new leader, or a new epoch: every held lease is timed from now (a lease granted
	 * under a predecessor is waited out in full). */
	if (r->lease.tm.in_office && r->lease.office_epoch == epoch)
		return;
	if (r->lease.client_id == 0)
		r->lease.client_id = (r->client_id ^ 0x6c65617365ull) | 1;
	if (lease_timers_take_office(&r->lease.tm, kv_lease_table(r->kv), lease_now(r)) != TEEMS_OK)
		return; /* out of memory: out of office, tried again after the next step */
	r->lease.office_epoch = epoch;
	rp_log(r, "client leases: in office, %zu lease timer(s) started", r->lease.tm.n);
}

/* The leader's remaining time for a refused ACQUIRE or an INFO, into its result. */
static void lease_remaining(struct replica *r, const uint8_t *cmd, size_t len, uint8_t *res,
			    size_t res_len)
{
	struct kv_lease_req q;
	struct kv_lease_res lr;
	const uint8_t *user;
	uint16_t user_len;
	uint64_t ns;

	if (!r->lease.tm.in_office || kv_lease_unwrap(cmd, len, &q, &user, &user_len) != 1 ||
	    kv_lease_result_decode(res, res_len, &lr) != TEEMS_OK || !lr.res.held)
		return;
	if (!(q.info || lr.res.status == LEASE_HELD))
		return;
	if (lease_timers_remaining_ns(&r->lease.tm, q.cmd.name, q.cmd.name_len, lease_now(r), &ns))
		kv_lease_result_set_remaining(res, res_len,
					      (int64_t)(ns / 1000000 + (ns % 1000000 != 0)));
}

void rp_lease_applied(struct replica *r, const uint8_t *cmd, size_t len, uint8_t *res,
		      size_t res_len)
{
	struct kv_lease_req q;
	struct kv_lease_res lr;
	const uint8_t *user;
	uint16_t user_len;

	if (!r->lease.tm.in_office || kv_lease_unwrap(cmd, len, &q, &user, &user_len) != 1 ||
	    q.info || kv_lease_result_decode(res, res_len, &lr) != TEEMS_OK)
		return;
	if (lease_timers_applied(&r->lease.tm, &q.cmd, &lr.res, lease_now(r)) != TEEMS_OK) {
		/* Without its timer the lease would never expire: give up office and take it
		 * again (every timer restarted in full) after the next step. */
		lease_timers_step_down(&r->lease.tm);
		return;
	}
	lease_remaining(r, cmd, len, res, res_len);
}

#define LEASE_DUE_BATCH 64

void rp_lease_tick(struct replica *r)
{
	struct lease_expiry due[LEASE_DUE_BATCH];
	uint8_t *cmds[LEASE_DUE_BATCH];
	size_t lens[LEASE_DUE_BATCH], n, k;

	if (!r->lease.tm.in_office || !lease_leader(r))
		return;
	rp_read_clock(r);
	n = lease_timers_due(&r->lease.tm, lease_now(r), due, LEASE_DUE_BATCH);
	/* Encode them all first: the names point into the timers, which the steps change. */
	for (k = 0; k < n; k++) {
		struct lease_cmd c;

		memset(&c, 0, sizeof(c));
		c.type = LEASE_CMD_EXPIRE;
		c.name = due[k].name;
		c.name_len = due[k].name_len;
		c.generation = due[k].generation;
		cmds[k] = teems_malloc(KV_LEASE_CMD_FIXED + c.name_len);
		if (cmds[k] == NULL ||
		    kv_lease_cmd_encode(&c, cmds[k], KV_LEASE_CMD_FIXED + c.name_len, &lens[k]) !=
			    TEEMS_OK) {
			teems_free(cmds[k]);
			cmds[k] = NULL;
		}
	}
	for (k = 0; k < n; k++) {
		struct paxos_input in;

		if (cmds[k] == NULL || r->halted) {
			lease_timers_retry(&r->lease.tm);
			teems_free(cmds[k]);
			continue;
		}
		memset(&in, 0, sizeof(in));
		in.type = PAXOS_IN_PROPOSE;
		in.propose.client_id = r->lease.client_id;
		in.propose.request_id = r->lease.next_request++;
		in.propose.command = cmds[k];
		in.propose.len = (uint32_t)lens[k];
		r->lease.expires++;
		if (rp_step(r, &in) != TEEMS_OK)
			lease_timers_retry(&r->lease.tm);
		teems_free(cmds[k]);
	}
}
