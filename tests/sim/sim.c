/* The deterministic cluster simulator (sim.h). */
#include "sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "core/quorum.h"
#include "history.h"
#include "kv/kv.h"
#include "lincheck.h"
#include "store/memvfs.h"
#include "store/wal.h"
#include "teems/err.h"

#define US 1000ull
#define MS (1000ull * US)
#define SEC (1000ull * MS)

#define MAX_REPLICAS 16
#define MAX_INSTANCES 1024 /* incarnations over a run */
#define MAX_CLIENTS 32
#define MAX_LIVE (4 * MAX_REPLICAS) /* live instances at once (a replica and its fork) */
enum deferred_kind {
	DEFERRED_AGREEMENT,
	DEFERRED_DISCARD,
	DEFERRED_SUSPICIOUS_VOTE,
	DEFERRED_KINDS,
};
#define RHO 0.01

#define T_TICK (5 * MS)
#define T_ELECT (150 * MS)
#define T_HB (50 * MS)
#define T_OP (500 * MS)
#define T_RESTART (5 * SEC) /* epoch restart: stuck after this long without W_Q fresh peers */
/* An --unsafe name for the adversary (not a core switch): a total crash plus rollbacks. */
#define SIM_UNSAFE_TOTAL_CRASH_ROLLBACK 0x10000u
#define T_GROUP_SYNC (2 * MS)
#define T_URGENT_SYNC (200 * US)
#define T_CLIENT_TIMEOUT (3 * SEC)
#define T_PROGRESS (30 * SEC) /* after the heal, the final reads must be done by then */
/* A backstop: every op ends within T_CLIENT_TIMEOUT, so the heal comes at the latest after
 * ops * T_CLIENT_TIMEOUT, and the run ends T_PROGRESS later. */
#define T_LIMIT(ops) (600 * SEC + (uint64_t)(ops)*T_CLIENT_TIMEOUT)

/* ---- the random stream ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Uniform in [0, n). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_below(r, hi - lo + 1);
}

static bool rng_pct(struct rng *r, unsigned pct)
{
	return rng_below(r, 100) < pct;
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

/* ---- events ---- */

enum ev_type {
	EV_TICK,      /* a = instance */
	EV_DELIVER,   /* a = from replica, b = to replica, buf */
	EV_SYNC,      /* a = instance: group fsync */
	EV_PROPOSE,   /* a = attempt: a client request reaches its replica */
	EV_REPLY,     /* a = attempt: the reply reaches the client */
	EV_CLIENT,    /* a = client: start its next op */
	EV_RETRY,     /* a = client, b = attempt: retry after NOT_LEADER or BUSY */
	EV_TIMEOUT,   /* a = client, b = op sequence number */
	EV_ADVERSARY, /* the adversary acts */
	EV_RESTART,   /* a = replica: the host restarts it */
};

struct event {
	uint64_t time;
	uint64_t seq; /* FIFO among equal times */
	enum ev_type type;
	uint64_t a, b;
	uint8_t *buf;
	size_t len;
};

/* ---- replicas, instances, clients ---- */

struct clock_model {
	uint64_t t0;	/* real time at which this clock started counting */
	uint64_t off;	/* what it read at t0 */
	double rate;	/* true rate, within [1 - rho, 1 + rho] */
	uint64_t epoch; /* taint epoch */
};

struct pending_promise {
	uint64_t seq;
	struct msg_ballot promised;
};

struct instance {
	int replica;
	bool alive;
	bool restarted;	       /* began as a restarted incarnation (must register, recover) */
	bool fork;	       /* a second instance the host started while the first runs */
	struct store_vfs *vfs; /* the replica's disk, or the fork's own copy */
	bool own_vfs;
	struct paxos *p;
	struct paxos_ready r;
	struct clock_model clk;
	struct store_wal *wal;
	struct kv *kv;
	uint64_t written; /* persist seq appended to the WAL */
	uint64_t synced;  /* persist seq reported durable */
	bool sync_scheduled;
	bool urgent;	  /* a record marked `sync` is waiting */
	uint64_t applied; /* last slot applied here */
	/* For the interface ordering checks: the promise that is durable, the promises of records
	 * not yet synced, and the record that last wrote each slot. */
	struct msg_ballot durable_promise;
	struct pending_promise *pending;
	size_t n_pending, cap_pending;
	uint64_t *slot_seq; /* [slot]: seq of the last record holding it, 0: none */
	size_t cap_slot_seq;
	uint64_t restored_last; /* slots up to this came from the WAL (durable) */
	/* Rounds per op (ABD engine work; sim_rounds_*): per slot, the ACCEPT rounds (distinct
	 * nonces) this instance sent for it, and the nonce of the last one. */
	uint32_t *rnd_count;
	uint64_t *rnd_nonce;
	size_t cap_rnd;
	uint64_t tick_gen; /* ticks of an old generation are ignored */
	int lifecycle;	   /* last enum paxos_lifecycle seen (for the trace) */
	int role;	   /* last enum paxos_role seen (for the trace) */
};

struct replica {
	struct store_vfs *vfs;
	int inst; /* current instance, -1 while down */
	/* Counts against M_R (the adversary's budget): rolled back or forked, or (sync=rr)
	 * crashed, until every live instance of it reports fresh. */
	bool compromised;
	bool restart_pending;
	uint64_t paused_until; /* descheduled by the host: its events wait until then */
	uint8_t root_key[STORE_WAL_ROOT_KEY_LEN];
};

struct attempt {
	int client;
	uint64_t op_seq; /* the client's op this attempt belongs to */
	int inst;	 /* the instance it was proposed at */
	bool have_result;
	uint8_t *result;
	size_t result_len;
	int outcome;	      /* enum paxos_outcome once noted, -1 before */
	uint64_t chosen_slot; /* the slot its command was first committed in, 0: none */
	uint16_t leader;
};

struct client {
	bool busy;	   /* an op is open */
	uint64_t op_seq;   /* of the open op */
	size_t hist;	   /* its index in the history */
	struct kv_cmd cmd; /* the open op (key and value point into the buffers below) */
	uint8_t key[16];
	uint8_t value[32];
	uint8_t enc[96];
	size_t enc_len;
	int hint;	       /* replica to try next, -1: random */
	size_t attempt;	       /* the current attempt of the open op (only one at a time) */
	uint64_t versions[16]; /* last version seen per key, for CAS */
	bool final_reader;
	unsigned next_final; /* final reads: next key */
};

struct chosen {
	bool set;
	uint8_t *value;
	uint32_t len;
};

struct sim {
	struct sim_options o;
	struct sim_report *rep;
	struct rng rng;
	struct quorum q;
	uint64_t now;
	uint64_t ev_seq;
	struct event *heap;
	size_t n_heap, cap_heap;
	struct replica reps[MAX_REPLICAS];
	struct instance insts[MAX_INSTANCES];
	int n_insts;
	/* The live instances, in increasing index order (the hot paths iterate over these). */
	int live[MAX_LIVE];
	int n_live;
	struct client clients[MAX_CLIENTS];
	unsigned n_clients;
	struct attempt *attempts;
	size_t n_attempts, cap_attempts;
	struct history hist;
	uint64_t next_op_seq;
	unsigned invoked; /* ops invoked before the heal */
	/* network */
	bool cut[MAX_REPLICAS][MAX_REPLICAS]; /* cut[a][b]: a -> b dropped */
	unsigned loss_pct, dup_pct;
	bool partitioned;
	bool total_crash_done;
	/* phases */
	bool healed;
	uint64_t heal_time;
	bool final_started;
	uint64_t final_time;
	bool progress_failed;
	bool reads_done;
	char not_fresh[160]; /* why the cluster did not settle */
	/* Violations of the log and of the protocol's rules that do not stop the run (so that the
	 * history checks at the end show what they did to clients): the first of each kind. */
	char deferred[DEFERRED_KINDS][320];
	bool done;
	/* checkers */
	struct chosen *chosen;
	size_t cap_chosen;
	uint8_t *encbuf;
	size_t cap_encbuf;
	int err; /* a simulator failure (negative teems error) */
};

static void trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->o.trace == NULL)
		return;
	fprintf(s->o.trace, "%10.6f ", (double)s->now / 1e9);
	va_start(ap, fmt);
	vfprintf(s->o.trace, fmt, ap);
	va_end(ap);
	fputc('\n', s->o.trace);
}

static void violation(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	size_t used = strlen(s->rep->violation), cap = sizeof(s->rep->violation);

	if (s->rep->failed && s->done)
		return; /* during the run, the first one is reported */
	s->rep->failed = true;
	if (used + 64 >= cap)
		return;
	n = snprintf(s->rep->violation + used, cap - used, "%st=%.6fs: ", used ? "\n  " : "",
		     (double)s->now / 1e9);
	va_start(ap, fmt);
	vsnprintf(s->rep->violation + used + (size_t)n, cap - used - (size_t)n, fmt, ap);
	va_end(ap);
	trace(s, "VIOLATION %s", s->rep->violation);
	s->done = true;
}

static void *xrealloc(struct sim *s, void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
	}
	return q;
}

/* ---- event heap ---- */

static bool ev_before(const struct event *a, const struct event *b)
{
	return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void schedule(struct sim *s, uint64_t at, enum ev_type type, uint64_t a, uint64_t b,
		     uint8_t *buf, size_t len)
{
	struct event e = {at, s->ev_seq++, type, a, b, buf, len};
	size_t i;

	if (s->n_heap == s->cap_heap) {
		size_t ncap = s->cap_heap ? s->cap_heap * 2 : 1024;
		struct event *nh = xrealloc(s, s->heap, ncap * sizeof(*nh));

		if (nh == NULL) {
			free(buf);
			return;
		}
		s->heap = nh;
		s->cap_heap = ncap;
	}
	i = s->n_heap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!ev_before(&e, &s->heap[parent]))
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = e;
}

static struct event pop_event(struct sim *s)
{
	struct event top = s->heap[0], last = s->heap[--s->n_heap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->n_heap)
			break;
		if (c + 1 < s->n_heap && ev_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->n_heap > 0)
		s->heap[i] = last;
	return top;
}

/* ---- trusted clocks ----
 * The clock measures real time since t0 at its true rate; the core gets bounds that are
 * honest for any rate within rho: lo = off + est / (1 + rho) <= off + elapsed
 * <= off + est / (1 - rho) = hi. A taint (clock attack) starts a new epoch with a new base. */

static struct paxos_time read_clock(const struct sim *s, const struct clock_model *c)
{
	double est = (double)(s->now - c->t0) * c->rate;
	struct paxos_time t;

	t.lo_ns = c->off + (uint64_t)(est / (1.0 + RHO));
	t.hi_ns = c->off + (uint64_t)(est / (1.0 - RHO)) + 1;
	t.epoch = c->epoch;
	return t;
}

static void clock_init(struct sim *s, struct clock_model *c)
{
	c->t0 = s->now;
	c->off = rng_range(&s->rng, 1 * SEC, 1000 * SEC);
	c->rate = 1.0 + (rng_unit(&s->rng) * 2.0 - 1.0) * RHO * 0.99;
	c->epoch = 1;
}

/* ---- the agreement checker: one value per slot, across every instance ---- */

static void check_apply(struct sim *s, struct instance *in, const struct paxos_apply *a)
{
	struct chosen *ch;

	if (a->slot != in->applied + 1) {
		violation(s, "replica %d applied slot %" PRIu64 " after slot %" PRIu64, in->replica,
			  a->slot, in->applied);
		return;
	}
	in->applied = a->slot;
	if (a->slot >= s->cap_chosen) {
		size_t ncap = s->cap_chosen ? s->cap_chosen : 1024;
		struct chosen *nc;

		while (ncap <= a->slot)
			ncap *= 2;
		nc = xrealloc(s, s->chosen, ncap * sizeof(*nc));
		if (nc == NULL)
			return;
		memset(nc + s->cap_chosen, 0, (ncap - s->cap_chosen) * sizeof(*nc));
		s->chosen = nc;
		s->cap_chosen = ncap;
	}
	ch = &s->chosen[a->slot];
	if (!ch->set) {
		struct paxos_command cmd;
		size_t off = 0;

		/* Exactly once in the log: a client command (one attempt) is chosen in one slot;
		 * a command the core declared NOT_LEADER or BUSY is never chosen. */
		while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
			struct attempt *at;

			if (cmd.request_id >= s->n_attempts)
				continue;
			at = &s->attempts[cmd.request_id];
			if (at->chosen_slot != 0 && at->chosen_slot != a->slot)
				violation(s,
					  "client %d's request %" PRIu64
					  " was committed twice, in slots "
					  "%" PRIu64 " and %" PRIu64,
					  at->client, cmd.request_id, at->chosen_slot, a->slot);
			if (at->outcome == PAXOS_OUTCOME_NOT_LEADER ||
			    at->outcome == PAXOS_OUTCOME_BUSY)
				violation(s,
					  "client %d's request %" PRIu64
					  " was reported %s but committed "
					  "in slot %" PRIu64,
					  at->client, cmd.request_id,
					  at->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER",
					  a->slot);
			at->chosen_slot = a->slot;
		}
		ch->set = true;
		ch->len = a->len;
		ch->value = malloc(a->len ? a->len : 1);
		if (ch->value == NULL) {
			s->err = TEEMS_ENOMEM;
			s->done = true;
			return;
		}
		if (a->len)
			memcpy(ch->value, a->value, a->len);
	} else if (ch->len != a->len || (a->len && memcmp(ch->value, a->value, a->len) != 0)) {
		/* Recorded, and the run goes on: the history checks at the end then show what the
		 * disagreement did to clients (a lost acknowledged write, a stale read). */
		if (s->deferred[DEFERRED_AGREEMENT][0] == 0)
			snprintf(s->deferred[DEFERRED_AGREEMENT], sizeof(s->deferred[0]),
				 "agreement: replica %d applied a different value in slot %" PRIu64
				 " (at t=%.6fs)",
				 in->replica, a->slot, (double)s->now / 1e9);
	}
}

/* ---- persistence: the real sealed WAL over memvfs ---- */

static int ensure_encbuf(struct sim *s, size_t need)
{
	if (need <= s->cap_encbuf)
		return 0;
	size_t ncap = s->cap_encbuf ? s->cap_encbuf : 4096;
	while (ncap < need)
		ncap *= 2;
	uint8_t *nb = xrealloc(s, s->encbuf, ncap);
	if (nb == NULL)
		return -1;
	s->encbuf = nb;
	s->cap_encbuf = ncap;
	return 0;
}

/* Appends the core's own encoding of one persist record (paxos_persist_encode) to the real
 * sealed WAL. It becomes durable at the next group fsync (do_sync). */
static void persist(struct sim *s, struct instance *in, const struct paxos_persist *p)
{
	size_t len = 0;
	int rc;

	rc = paxos_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	if (rc == TEEMS_EFULL) {
		if (ensure_encbuf(s, len) != 0)
			return;
		rc = paxos_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	}
	if (rc != TEEMS_OK) {
		violation(s, "replica %d: paxos_persist_encode refused record %" PRIu64 ": %s",
			  in->replica, p->seq, teems_strerror(rc));
		return;
	}
	rc = store_wal_append(in->wal, s->encbuf, len, NULL);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	if (p->seq != in->written + 1 && in->written != 0)
		violation(s, "replica %d: persist seq %" PRIu64 " after %" PRIu64, in->replica,
			  p->seq, in->written);
	in->written = p->seq;
	if (p->sync)
		in->urgent = true;
	if (in->n_pending == in->cap_pending) {
		size_t ncap = in->cap_pending ? in->cap_pending * 2 : 16;
		struct pending_promise *np = xrealloc(s, in->pending, ncap * sizeof(*np));

		if (np == NULL)
			return;
		in->pending = np;
		in->cap_pending = ncap;
	}
	in->pending[in->n_pending].seq = p->seq;
	in->pending[in->n_pending].promised = p->promised;
	in->n_pending++;
	for (uint32_t e = 0; e < p->count; e++) {
		uint64_t slot = p->entries[e].slot;

		if (slot >= in->cap_slot_seq) {
			size_t ncap = in->cap_slot_seq ? in->cap_slot_seq : 256;
			uint64_t *ns;

			while (ncap <= slot)
				ncap *= 2;
			ns = xrealloc(s, in->slot_seq, ncap * sizeof(*ns));
			if (ns == NULL)
				return;
			memset(ns + in->cap_slot_seq, 0, (ncap - in->cap_slot_seq) * sizeof(*ns));
			in->slot_seq = ns;
			in->cap_slot_seq = ncap;
		}
		in->slot_seq[slot] = p->seq;
	}
}

/* ---- rounds per client op (for the rounds table next to the ABD engine's) ----
 * A Paxos op's message rounds are the ACCEPT rounds its slot went through at the leader that
 * answered it: each ACCEPT with a new nonce covering the slot is one round (re-sends with the
 * same nonce are not). A read-index read is one READ_INDEX confirmation round by construction
 * (not measured). Redirects (NOT_LEADER) are client round trips, not counted. */
static void sim_rounds_on_send(struct sim *s, struct instance *in, const struct msg *m)
{
	uint64_t last;

	if (m->type != MSG_ACCEPT || m->accept.values.count == 0)
		return;
	last = m->accept.first_slot + m->accept.values.count - 1;
	if (last >= in->cap_rnd) {
		size_t ncap = in->cap_rnd ? in->cap_rnd : 256;
		uint32_t *nc;
		uint64_t *nn;

		while (ncap <= last)
			ncap *= 2;
		nc = xrealloc(s, in->rnd_count, ncap * sizeof(*nc));
		if (nc == NULL)
			return;
		in->rnd_count = nc;
		nn = xrealloc(s, in->rnd_nonce, ncap * sizeof(*nn));
		if (nn == NULL)
			return;
		in->rnd_nonce = nn;
		memset(nc + in->cap_rnd, 0, (ncap - in->cap_rnd) * sizeof(*nc));
		memset(nn + in->cap_rnd, 0, (ncap - in->cap_rnd) * sizeof(*nn));
		in->cap_rnd = ncap;
	}
	for (uint64_t slot = m->accept.first_slot; slot <= last; slot++) {
		if (in->rnd_nonce[slot] != m->nonce || in->rnd_count[slot] == 0) {
			in->rnd_nonce[slot] = m->nonce;
			in->rnd_count[slot]++;
		}
	}
}

static void sim_rounds_on_note(struct sim *s, const struct instance *in, const struct paxos_note *n,
			       bool write)
{
	uint64_t rounds = 1;

	if (n->outcome == PAXOS_OUTCOME_APPLIED)
		rounds = n->slot < in->cap_rnd && in->rnd_count[n->slot] ? in->rnd_count[n->slot]
									 : 1;
	else if (n->outcome != PAXOS_OUTCOME_READ)
		return;
	if (write) {
		s->rep->writes_ok++;
		s->rep->write_rounds += rounds;
	} else {
		s->rep->reads_ok++;
		s->rep->read_rounds += rounds;
	}
}
/* ---- end of rounds per client op ---- */

/* The ordering rules of paxos.h, checked on every message a core sends: no PREPARE or
 * positive PROMISE before the promise of its ballot is durable, no synced ACCEPTED before the
 * records holding its slots are, and (DESIGN.md section 4) no vote from a suspicious replica
 * (reported at the end of the run, which goes on). */
static void check_send(struct sim *s, const struct instance *in, const struct msg *m)
{
	const struct msg_ballot *b = NULL;

	if (m->type == MSG_PREPARE)
		b = &m->prepare.ballot;
	else if (m->type == MSG_PROMISE && m->promise.ok)
		b = &m->promise.ballot;
	if (b != NULL && msg_ballot_cmp(b, &in->durable_promise) > 0)
		violation(s,
			  "replica %d sent %s for ballot (%" PRIu64 ",%u) before its promise was "
			  "durable",
			  in->replica, msg_type_name(m->type), b->round, b->replica);
	if (m->type == MSG_ACCEPTED && m->accepted.sync == MSG_SYNCED) {
		for (uint64_t slot = m->accepted.first_slot; slot <= m->accepted.last_slot;
		     slot++) {
			uint64_t seq = slot < in->cap_slot_seq ? in->slot_seq[slot] : 0;

			if ((seq == 0 && slot > in->restored_last) || seq > in->synced) {
				violation(s,
					  "replica %d sent a synced ACCEPTED for slot %" PRIu64
					  " before the record holding it was durable",
					  in->replica, slot);
				break;
			}
		}
	}
	if (m->suspicious &&
	    ((m->type == MSG_PROMISE && m->promise.ok) || m->type == MSG_ACCEPTED) &&
	    s->deferred[DEFERRED_SUSPICIOUS_VOTE][0] == 0)
		snprintf(s->deferred[DEFERRED_SUSPICIOUS_VOTE], sizeof(s->deferred[0]),
			 "suspicious vote: replica %d sent %s while suspicious (at t=%.6fs)",
			 in->replica, msg_type_name(m->type), (double)s->now / 1e9);
}

/* ---- the network ---- */

static bool link_up(const struct sim *s, int from, int to)
{
	return !s->cut[from][to];
}

static void net_send(struct sim *s, const struct instance *in, const struct paxos_send *snd)
{
	int from = in->replica;
	size_t len;
	uint8_t *buf;
	int copies = 1;

	if (msg_encode(&snd->msg, NULL, 0, &len) != TEEMS_EFULL) {
		violation(s, "replica %d produced a message msg_encode refuses (%s)", from,
			  msg_type_name(snd->msg.type));
		return;
	}
	check_send(s, in, &snd->msg);
	sim_rounds_on_send(s, (struct instance *)in, &snd->msg); /* rounds per client op */
	if (!link_up(s, from, snd->to))
		return;
	if (s->loss_pct && rng_pct(&s->rng, s->loss_pct))
		return;
	if (s->dup_pct && rng_pct(&s->rng, s->dup_pct))
		copies = 2;
	for (int c = 0; c < copies; c++) {
		uint64_t delay = rng_range(&s->rng, 100 * US, 2 * MS);

		if (rng_pct(&s->rng, 3))
			delay += rng_range(&s->rng, 1 * MS, 40 * MS); /* reordering */
		if (s->loss_pct && rng_pct(&s->rng, 2))
			delay += rng_range(&s->rng, 50 * MS, T_OP + 300 * MS); /* held back */
		buf = malloc(len);
		if (buf == NULL) {
			s->err = TEEMS_ENOMEM;
			s->done = true;
			return;
		}
		if (msg_encode(&snd->msg, buf, len, &len) != TEEMS_OK) {
			free(buf);
			violation(s, "msg_encode failed");
			return;
		}
		schedule(s, s->now + delay, EV_DELIVER, (uint64_t)from, snd->to, buf, len);
	}
}

/* ---- driving a core ---- */

static void client_reply_later(struct sim *s, size_t attempt);

static void apply_slot(struct sim *s, struct instance *in, int idx, const struct paxos_apply *a)
{
	struct paxos_command cmd;
	size_t off = 0;

	check_apply(s, in, a);
	while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
		uint8_t *res = NULL;
		size_t res_len = 0;
		int rc = kv_apply_encoded(in->kv, cmd.command, cmd.len, &res, &res_len);

		if (rc == TEEMS_ENOMEM) {
			s->err = rc;
			s->done = true;
			return;
		}
		if (rc != TEEMS_OK) {
			violation(s, "replica %d: slot %" PRIu64 " holds a command kv refuses",
				  in->replica, a->slot);
			free(res);
			return;
		}
		if (cmd.request_id < s->n_attempts) {
			struct attempt *at = &s->attempts[cmd.request_id];

			if (at->inst == idx && !at->have_result) {
				at->have_result = true;
				at->result = malloc(res_len);
				if (at->result != NULL) {
					memcpy(at->result, res, res_len);
					at->result_len = res_len;
				}
			}
		}
		teems_free(res);
	}
}

/* No two incarnations of one replica in one quorum (DESIGN.md section 2), from the core's own
 * account of whom it counted. */
static void check_counted(struct sim *s, const struct instance *in, const struct paxos_counted *c)
{
	static const char *const kinds[] = {"election", "commit", "recovery"};

	for (uint32_t i = 0; i < c->n; i++)
		for (uint32_t j = i + 1; j < c->n; j++)
			if (c->members[i].replica == c->members[j].replica)
				violation(s,
					  "replica %d counted two incarnations of replica %u "
					  "((%" PRIu64 ",%" PRIu64 ") and (%" PRIu64 ",%" PRIu64
					  ")) in one %s quorum (id %" PRIu64 ")",
					  in->replica, c->members[i].replica,
					  c->members[i].reg.epoch, c->members[i].reg.slot,
					  c->members[j].reg.epoch, c->members[j].reg.slot,
					  c->kind <= 2 ? kinds[c->kind] : "?", c->id);
	/* The discard rule (DESIGN.md section 4, step 3), checked against the counter's own
	 * applied configuration: it never counts (X, i) once it has applied a newer
	 * registration of X. (The rule covers accepted registrations too; this is the part
	 * the simulator can see from outside.) Reported at the end of the run, which goes on. */
	for (uint32_t i = 0; i < c->n; i++) {
		struct msg_regidx idx;
		uint8_t key[MSG_PUBLIC_KEY_SIZE];

		if (c->members[i].replica == in->replica)
			continue;
		if (paxos_config_registration(in->p, c->members[i].replica, &idx, key) &&
		    msg_regidx_cmp(&idx, &c->members[i].reg) > 0 &&
		    s->deferred[DEFERRED_DISCARD][0] == 0)
			snprintf(s->deferred[DEFERRED_DISCARD], sizeof(s->deferred[0]),
				 "discard rule: replica %d counted replica %u's incarnation "
				 "(%" PRIu64 ",%" PRIu64 ") in a %s quorum (id %" PRIu64
				 ") although its own "
				 "configuration registers (%" PRIu64 ",%" PRIu64 ") (at t=%.6fs)",
				 in->replica, c->members[i].replica, c->members[i].reg.epoch,
				 c->members[i].reg.slot, c->kind <= 2 ? kinds[c->kind] : "?", c->id,
				 idx.epoch, idx.slot, (double)s->now / 1e9);
	}
}

static void instance_kill(struct sim *s, int idx);
static void host_restarts_exited(struct sim *s, int r);

/* A read-index read the core answered: run it on this replica's state after the ready's
 * applies, which must have reached the read index. */
static bool serve_read(struct sim *s, struct instance *in, const struct paxos_note *n)
{
	struct attempt *at = &s->attempts[n->request_id];
	struct client *cl = &s->clients[at->client];
	struct kv_result kr;
	size_t len;

	if (in->applied < n->slot) {
		violation(s,
			  "replica %d served a read at index %" PRIu64 " having applied %" PRIu64,
			  in->replica, n->slot, in->applied);
		return false;
	}
	kv_get(in->kv, cl->key, 3, &kr);
	len = kv_result_size(&kr);
	free(at->result);
	at->result = malloc(len);
	if (at->result == NULL || kv_result_encode(&kr, at->result, len, &len) != TEEMS_OK) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return false;
	}
	at->result_len = len;
	at->have_result = true;
	return true;
}

static void take_ready(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct paxos_ready *r = &in->r;

	for (size_t k = 0; k < r->n_persist && !s->done; k++)
		persist(s, in, &r->persist[k]);
	for (size_t k = 0; k < r->n_sends && !s->done; k++)
		net_send(s, in, &r->sends[k]);
	for (size_t k = 0; k < r->n_applies && !s->done; k++)
		apply_slot(s, in, idx, &r->applies[k]);
	for (size_t k = 0; k < r->n_notes && !s->done; k++) {
		const struct paxos_note *n = &r->notes[k];

		if (n->request_id >= s->n_attempts || s->attempts[n->request_id].inst != idx)
			continue;
		if (n->outcome == PAXOS_OUTCOME_READ && !serve_read(s, in, n))
			return;
		sim_rounds_on_note(s, in, n, /* rounds per client op */
				   s->clients[s->attempts[n->request_id].client].cmd.op != KV_GET);
		s->attempts[n->request_id].outcome = (int)n->outcome;
		s->attempts[n->request_id].leader = n->leader;
		if ((n->outcome == PAXOS_OUTCOME_NOT_LEADER || n->outcome == PAXOS_OUTCOME_BUSY) &&
		    s->attempts[n->request_id].chosen_slot != 0)
			violation(s,
				  "request %" PRIu64
				  " reported %s after it was committed in slot %" PRIu64,
				  n->request_id,
				  n->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER",
				  s->attempts[n->request_id].chosen_slot);
		client_reply_later(s, n->request_id);
	}
	s->rep->quorums += r->n_counted;
	for (size_t k = 0; k < r->n_counted && !s->done; k++)
		check_counted(s, in, &r->counted[k]);
	if (r->halted && in->alive) {
		trace(s, "replica %d (instance %d) halts: a newer incarnation is registered",
		      in->replica, idx);
		instance_kill(s, idx);
		host_restarts_exited(s, in->replica);
		return;
	}
	/* Group fsync: under sync=none only the records the core marks `sync` (promises) are
	 * made durable (the benchmark mode: nothing else is ever fsynced). */
	if (in->written > in->synced && !in->sync_scheduled &&
	    (s->o.sync != PAXOS_SYNC_NONE || in->urgent)) {
		in->sync_scheduled = true;
		schedule(s, s->now + (in->urgent ? T_URGENT_SYNC : T_GROUP_SYNC), EV_SYNC,
			 (uint64_t)idx, 0, NULL, 0);
	}
}

static void step(struct sim *s, int idx, struct paxos_input *in)
{
	struct instance *ins = &s->insts[idx];
	int rc;

	in->now = read_clock(s, &ins->clk);
	rc = paxos_step(ins->p, in, &ins->r);
	if (rc != TEEMS_OK) {
		if (rc == TEEMS_EINVAL && in->type == PAXOS_IN_PROPOSE)
			return;
		s->err = rc;
		s->done = true;
		return;
	}
	if (s->o.trace != NULL && ins->alive) {
		int lc = (int)paxos_lifecycle(ins->p);

		if (lc != ins->lifecycle) {
			static const char *const names[] = {"fresh", "registering", "fencing",
							    "recovering", "halted"};
			trace(s, "replica %d (instance %d) is %s", ins->replica, idx,
			      lc >= 0 && lc <= 4 ? names[lc] : "?");
			ins->lifecycle = lc;
		}
		if ((int)paxos_role(ins->p) != ins->role) {
			static const char *const roles[] = {"follower", "candidate", "leader"};
			struct msg_ballot b = paxos_promised(ins->p);

			ins->role = (int)paxos_role(ins->p);
			trace(s,
			      "replica %d (instance %d) is %s, ballot (%" PRIu64
			      ",%u), commit %" PRIu64,
			      ins->replica, idx,
			      ins->role >= 0 && ins->role <= 2 ? roles[ins->role] : "?", b.round,
			      b.replica, paxos_commit_index(ins->p));
		}
	}
	take_ready(s, idx);
}

struct restore_ctx {
	struct sim *s;
	struct instance *in;
	uint64_t max; /* records to restore (a fork may take a prefix) */
	uint64_t n;
};

static int on_wal_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct restore_ctx *rc = arg;
	int err;

	if (rc->n >= rc->max)
		return 0;
	rc->n++;
	err = paxos_restore(rc->in->p, data, len);
	if (err == TEEMS_ENOMEM)
		return err;
	if (err != TEEMS_OK) {
		violation(rc->s, "replica %d: paxos_restore refused WAL record %" PRIu64 ": %s",
			  rc->in->replica, index, teems_strerror(err));
		return err;
	}
	return 0;
}

/* Starts an incarnation of `replica` on `vfs`: a new core, the records its WAL delivers fed to
 * paxos_restore (at most max_records of them), the WAL reopened for writing, a fresh clock. */
static int instance_new(struct sim *s, int replica, struct store_vfs *vfs, bool own_vfs,
			bool restarted, uint64_t max_records)
{
	struct paxos_config cfg;
	struct store_wal_opts wo;
	struct store_wal_info info;
	struct restore_ctx rc_ctx;
	struct instance *in;
	char errbuf[TEEMS_ERRBUF_LEN];
	int idx, rc;

	if (s->n_insts == MAX_INSTANCES) {
		if (own_vfs)
			store_vfs_destroy(vfs);
		return TEEMS_EFULL;
	}
	idx = s->n_insts++;
	in = &s->insts[idx];
	memset(in, 0, sizeof(*in));
	in->replica = replica;
	in->vfs = vfs;
	in->own_vfs = own_vfs;
	in->restarted = restarted;
	paxos_config_default(&cfg);
	cfg.quorum = s->q;
	cfg.self = (uint16_t)replica;
	cfg.sync = s->o.sync;
	cfg.restarted = restarted;
	for (int i = 0; i < MSG_PUBLIC_KEY_SIZE; i++)
		cfg.public_key[i] = (uint8_t)rng_next(&s->rng);
	cfg.election_timeout_ns = T_ELECT;
	cfg.heartbeat_ns = T_HB;
	cfg.t_op_ns = T_OP;
	cfg.t_restart_ns = T_RESTART;
	cfg.rho_ppm = (uint32_t)(RHO * 1e6);
	cfg.max_slot_bytes = 4096;
	cfg.max_accept_slots = 16;
	cfg.max_inflight = 32;
	cfg.max_queue = 256;
	cfg.unsafe = s->o.unsafe & ~SIM_UNSAFE_TOTAL_CRASH_ROLLBACK;
	rc = paxos_new(&in->p, &cfg, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	paxos_ready_init(&in->r);
	rc = kv_new(&in->kv);
	if (rc != TEEMS_OK)
		return rc;
	memset(&wo, 0, sizeof(wo));
	wo.replica_id = (uint64_t)replica;
	wo.root_key = s->reps[replica].root_key;
	/* Small segments: rollovers happen often (and are tested), and each fsync's
	 * copy-on-write version in memvfs stays small. */
	wo.segment_size = 8u << 10;
	rc_ctx.s = s;
	rc_ctx.in = in;
	rc_ctx.max = max_records;
	rc_ctx.n = 0;
	wo.on_record = on_wal_record;
	wo.arg = &rc_ctx;
	rc = store_wal_open(vfs, "wal", &wo, &in->wal, &info, errbuf);
	if (rc != TEEMS_OK) {
		if (s->rep->failed)
			return TEEMS_OK; /* paxos_restore refused a record: reported */
		fprintf(stderr, "teems-sim: replica %d: %s\n", replica, errbuf);
		return rc;
	}
	/* What the WAL delivered is durable (store_wal_open synced the prefix it builds on). */
	in->durable_promise = paxos_promised(in->p);
	in->restored_last = paxos_last_slot(in->p);
	clock_init(s, &in->clk);
	in->alive = true;
	s->live[s->n_live++] = idx;
	in->fork = own_vfs;
	in->lifecycle = -1;
	in->role = PAXOS_FOLLOWER;
	if (!own_vfs)
		s->reps[replica].inst = idx;
	trace(s, "replica %d: instance %d starts%s%s with %" PRIu64 " WAL records", replica, idx,
	      restarted ? " (restarted)" : "", own_vfs ? " as a fork" : "", rc_ctx.n);
	schedule(s, s->now + rng_below(&s->rng, T_TICK), EV_TICK, (uint64_t)idx, in->tick_gen, NULL,
		 0);
	return TEEMS_OK;
}

static void instance_free(struct instance *in)
{
	free(in->pending);
	free(in->slot_seq);
	free(in->rnd_count); /* rounds per client op */
	free(in->rnd_nonce);
	in->rnd_count = NULL;
	in->rnd_nonce = NULL;
	in->cap_rnd = 0;
	in->pending = NULL;
	in->slot_seq = NULL;
	in->n_pending = in->cap_pending = in->cap_slot_seq = 0;
	paxos_free(in->p);
	paxos_ready_free(&in->r);
	kv_free(in->kv);
	store_wal_close(in->wal);
	if (in->own_vfs && in->vfs != NULL)
		store_vfs_destroy(in->vfs);
	in->p = NULL;
	in->kv = NULL;
	in->wal = NULL;
	in->vfs = NULL;
	in->alive = false;
}

/* Stops an instance (a crash of its process, or a halt): nothing it did not sync is kept by
 * the WAL object; the disk keeps whatever the VFS has (power loss is separate). */
static void instance_kill(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct replica *rp = &s->reps[in->replica];

	instance_free(in);
	in->tick_gen++;
	for (int k = 0; k < s->n_live; k++) {
		if (s->live[k] == idx) {
			memmove(&s->live[k], &s->live[k + 1],
				(size_t)(s->n_live - k - 1) * sizeof(int));
			s->n_live--;
			break;
		}
	}
	if (rp->inst != idx)
		return;
	rp->inst = -1;
	/* A surviving fork becomes the replica: its disk is now the replica's disk. */
	for (int k = 0; k < s->n_live; k++) {
		int i = s->live[k];
		struct instance *f = &s->insts[i];

		if (f->alive && f->replica == in->replica && f->fork && !rp->restart_pending) {
			store_vfs_destroy(rp->vfs);
			rp->vfs = f->vfs;
			f->own_vfs = false;
			f->fork = false;
			rp->inst = i;
			trace(s, "replica %d: the fork (instance %d) is now the replica",
			      f->replica, i);
			break;
		}
	}
}

static void do_sync(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	char errbuf[TEEMS_ERRBUF_LEN];
	uint64_t upto = in->written;
	struct paxos_input pi;
	int rc;

	in->sync_scheduled = false;
	if (!in->alive)
		return;
	in->urgent = false;
	rc = store_wal_sync(in->wal, NULL, errbuf);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		fprintf(stderr, "teems-sim: replica %d: WAL sync: %s\n", in->replica, errbuf);
		return;
	}
	/* Only now is it true that every record up to `upto` is durable. */
	in->synced = upto;
	{
		size_t keep = 0;

		for (size_t k = 0; k < in->n_pending; k++) {
			if (in->pending[k].seq <= upto) {
				if (msg_ballot_cmp(&in->pending[k].promised, &in->durable_promise) >
				    0)
					in->durable_promise = in->pending[k].promised;
			} else {
				in->pending[keep++] = in->pending[k];
			}
		}
		in->n_pending = keep;
	}
	memset(&pi, 0, sizeof(pi));
	pi.type = PAXOS_IN_SYNCED;
	pi.synced.seq = upto;
	step(s, idx, &pi);
}

static void deliver(struct sim *s, const struct event *e)
{
	struct msg m;
	int to = (int)e->b, from = (int)e->a;

	if (!link_up(s, from, to))
		return; /* cut while in flight */
	if (msg_decode(e->buf, e->len, &m) != TEEMS_OK) {
		violation(s, "a message from replica %d does not decode", from);
		return;
	}
	trace(s, "deliver %s %d -> %d", msg_type_name(m.type), from, to);
	int targets[MAX_LIVE], n = s->n_live;

	memcpy(targets, s->live, (size_t)n * sizeof(int)); /* a step may kill (halt) one */
	for (int k = 0; k < n; k++) {
		int i = targets[k];
		struct instance *in = &s->insts[i];
		struct paxos_input pi;

		if (!in->alive || in->replica != to)
			continue;
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_MESSAGE;
		pi.message = &m;
		s->rep->messages++;
		step(s, i, &pi);
		if (s->done)
			return;
	}
}

/* ---- clients ---- */

static int leader_replica(const struct sim *s)
{
	for (int k = 0; k < s->n_live; k++)
		if (paxos_role(s->insts[s->live[k]].p) == PAXOS_LEADER)
			return s->insts[s->live[k]].replica;
	return -1;
}

static void start_attempt(struct sim *s, int c)
{
	struct client *cl = &s->clients[c];
	int target = cl->hint >= 0 ? cl->hint : (int)rng_below(&s->rng, s->o.n);
	struct attempt *at;

	if (s->n_attempts == s->cap_attempts) {
		size_t ncap = s->cap_attempts ? s->cap_attempts * 2 : 1024;
		struct attempt *na = xrealloc(s, s->attempts, ncap * sizeof(*na));

		if (na == NULL)
			return;
		s->attempts = na;
		s->cap_attempts = ncap;
	}
	at = &s->attempts[s->n_attempts];
	memset(at, 0, sizeof(*at));
	at->client = c;
	at->op_seq = cl->op_seq;
	/* -1: the replica is down: the request is lost. With a fork alive, either instance. */
	at->inst = -1;
	for (int k = 0; k < s->n_live; k++)
		if (s->insts[s->live[k]].replica == target &&
		    (at->inst < 0 || rng_pct(&s->rng, 50)))
			at->inst = s->live[k];
	at->outcome = -1;
	cl->hint = -1;
	cl->attempt = s->n_attempts;
	schedule(s, s->now + rng_range(&s->rng, 50 * US, 1 * MS), EV_PROPOSE, s->n_attempts, 0,
		 NULL, 0);
	s->n_attempts++;
}

static void encode_key(uint8_t *buf, unsigned k)
{
	buf[0] = 'k';
	buf[1] = (uint8_t)('0' + (k / 10) % 10);
	buf[2] = (uint8_t)('0' + k % 10);
}

static void start_op(struct sim *s, int c)
{
	struct client *cl = &s->clients[c];
	struct history_op op;
	unsigned k;
	uint64_t r;
	int n;

	if (cl->final_reader) {
		if (cl->next_final >= s->o.keys) {
			s->reads_done = true; /* every key read after the heal */
			return;
		}
		k = cl->next_final;
		r = 0; /* GET */
	} else {
		if (s->invoked >= s->o.ops)
			return; /* this client is finished */
		s->invoked++;
		k = (unsigned)rng_below(&s->rng, s->o.keys);
		r = rng_below(&s->rng, 100);
	}
	memset(&cl->cmd, 0, sizeof(cl->cmd));
	encode_key(cl->key, k);
	cl->cmd.key = cl->key;
	cl->cmd.key_len = 3;
	n = snprintf((char *)cl->value, sizeof(cl->value), "c%d.%" PRIu64, c, s->next_op_seq);
	if (r < 40) {
		cl->cmd.op = KV_GET;
	} else if (r < 70) {
		cl->cmd.op = KV_SET;
	} else if (r < 95) {
		cl->cmd.op = KV_CAS;
		cl->cmd.expected_version = cl->versions[k] + (rng_pct(&s->rng, 20) ? 1 : 0);
	} else {
		cl->cmd.op = KV_DEL;
	}
	if (cl->cmd.op == KV_SET || cl->cmd.op == KV_CAS) {
		cl->cmd.value = cl->value;
		cl->cmd.value_len = (uint32_t)n;
	}
	if (kv_cmd_encode(&cl->cmd, cl->enc, sizeof(cl->enc), &cl->enc_len) != TEEMS_OK) {
		violation(s, "client %d: kv_cmd_encode failed", c);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.client = (uint64_t)c + 1;
	op.op_id = s->next_op_seq;
	op.invoke = s->now;
	op.type = cl->cmd.op == KV_GET	 ? HISTORY_GET
		  : cl->cmd.op == KV_SET ? HISTORY_SET
		  : cl->cmd.op == KV_CAS ? HISTORY_CAS
					 : HISTORY_DEL;
	op.key.data = cl->key;
	op.key.len = 3;
	if (cl->cmd.value_len || cl->cmd.op == KV_SET || cl->cmd.op == KV_CAS) {
		op.value.data = cl->value;
		op.value.len = cl->cmd.value_len;
	}
	op.expected_version = cl->cmd.expected_version;
	if (history_invoke(&s->hist, &op, &cl->hist) != TEEMS_OK) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return;
	}
	cl->busy = true;
	cl->op_seq = s->next_op_seq++;
	trace(s, "client %d invokes op %" PRIu64 " %s k%02u", c, cl->op_seq,
	      history_type_name(op.type), k);
	schedule(s, s->now + T_CLIENT_TIMEOUT, EV_TIMEOUT, (uint64_t)c, cl->op_seq, NULL, 0);
	start_attempt(s, c);
}

static void next_op_later(struct sim *s, int c)
{
	/* think time: spreads the ops over seconds of virtual time, so that faults, elections
	 * and timeouts happen while they run */
	schedule(s, s->now + rng_range(&s->rng, 100 * US, 250 * MS), EV_CLIENT, (uint64_t)c, 0,
		 NULL, 0);
}

static void client_reply_later(struct sim *s, size_t attempt)
{
	schedule(s, s->now + rng_range(&s->rng, 50 * US, 1 * MS), EV_REPLY, attempt, 0, NULL, 0);
}

static void complete_op(struct sim *s, int c, enum history_outcome outcome,
			const struct history_result *res)
{
	struct client *cl = &s->clients[c];

	if (history_complete(&s->hist, cl->hist, s->now, outcome, res) != TEEMS_OK) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return;
	}
	cl->busy = false;
	if (outcome == HISTORY_OK)
		s->rep->ops_ok++;
	else if (outcome == HISTORY_UNKNOWN)
		s->rep->ops_unknown++;
	else
		s->rep->ops_failed++;
	trace(s, "client %d completes op %" PRIu64 ": %s", c, cl->op_seq,
	      history_outcome_name(outcome));
	next_op_later(s, c);
}

static void on_reply(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct history_result hr;
	struct kv_result kr;

	if (!cl->busy || cl->op_seq != at->op_seq || cl->attempt != a)
		return; /* the op timed out meanwhile */
	switch ((enum paxos_outcome)at->outcome) {
	case PAXOS_OUTCOME_READ:
	case PAXOS_OUTCOME_APPLIED:
		if (!at->have_result || at->result == NULL ||
		    kv_result_decode(at->result, at->result_len, &kr) != TEEMS_OK) {
			violation(s, "replica %d reported APPLIED without applying the command",
				  s->insts[at->inst].replica);
			return;
		}
		memset(&hr, 0, sizeof(hr));
		hr.version_known = true;
		hr.version = kr.version;
		hr.found = kr.found;
		hr.cas_ok = kr.status == KV_OK;
		hr.value.data = kr.value;
		hr.value.len = kr.value_len;
		{
			unsigned k =
				10u * (unsigned)(cl->key[1] - '0') + (unsigned)(cl->key[2] - '0');

			if (k < 16)
				cl->versions[k] = kr.version;
		}
		if (cl->final_reader && cl->cmd.op == KV_GET)
			cl->next_final++;
		complete_op(s, at->client, HISTORY_OK, &hr);
		return;
	case PAXOS_OUTCOME_UNKNOWN:
		complete_op(s, at->client, HISTORY_UNKNOWN, NULL);
		return;
	case PAXOS_OUTCOME_NOT_LEADER:
	case PAXOS_OUTCOME_BUSY:
		/* Definitely not applied: the same op tries again (the history sees one op). */
		if (at->outcome == PAXOS_OUTCOME_NOT_LEADER && at->leader != MSG_NO_REPLICA &&
		    at->leader < s->o.n && at->leader != s->insts[at->inst].replica)
			cl->hint = at->leader;
		schedule(s,
			 s->now + (at->outcome == PAXOS_OUTCOME_BUSY
					   ? rng_range(&s->rng, 10 * MS, 50 * MS)
					   : rng_range(&s->rng, 1 * MS, 20 * MS)),
			 EV_RETRY, (uint64_t)at->client, a, NULL, 0);
		return;
	default:
		/* An outcome of a kind of request the simulator never makes (the optimized
		 * read's, for now). */
		violation(s, "replica %d answered client %d with unexpected outcome %d",
			  s->insts[at->inst].replica, at->client, at->outcome);
		return;
	}
}

static void on_propose(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct paxos_input pi;

	if (!cl->busy || cl->op_seq != at->op_seq || cl->attempt != a)
		return;
	if (at->inst < 0 || !s->insts[at->inst].alive) {
		/* Connection refused: the request reached no process, so it was not applied;
		 * the client tries another replica. */
		schedule(s, s->now + rng_range(&s->rng, 1 * MS, 20 * MS), EV_RETRY,
			 (uint64_t)at->client, a, NULL, 0);
		return;
	}
	memset(&pi, 0, sizeof(pi));
	pi.type = PAXOS_IN_PROPOSE;
	pi.propose.client_id = (uint64_t)at->client + 1;
	pi.propose.request_id = a;
	pi.propose.command = cl->enc;
	pi.propose.len = (uint32_t)cl->enc_len;
	if (s->o.reads == SIM_READS_LOCAL && cl->cmd.op == KV_GET && !cl->final_reader) {
		/* Negative control for the linearizability checker: a stale replica answers. */
		struct paxos_note n = {0};

		n.client_id = (uint64_t)at->client + 1;
		n.request_id = a;
		n.outcome = PAXOS_OUTCOME_READ;
		n.slot = s->insts[at->inst].applied;
		at->outcome = PAXOS_OUTCOME_READ;
		if (serve_read(s, &s->insts[at->inst], &n))
			client_reply_later(s, a);
		return;
	}
	if (s->o.reads == SIM_READS_INDEX && cl->cmd.op == KV_GET && !cl->final_reader) {
		/* The read-index path (paxos.h PAXOS_IN_READ) instead of the log. */
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_READ;
		pi.read.client_id = (uint64_t)at->client + 1;
		pi.read.request_id = a;
	}
	step(s, at->inst, &pi);
}

static void on_timeout(struct sim *s, int c, uint64_t op_seq)
{
	struct client *cl = &s->clients[c];

	if (!cl->busy || cl->op_seq != op_seq)
		return;
	complete_op(s, c, HISTORY_UNKNOWN, NULL);
}

/* ---- the adversary ---- */

static void heal_network(struct sim *s)
{
	memset(s->cut, 0, sizeof(s->cut));
	s->partitioned = false;
	s->loss_pct = 0;
	s->dup_pct = 0;
}

static void partition(struct sim *s)
{
	unsigned n = s->o.n, f = s->o.f;
	uint64_t mode = rng_below(&s->rng, 4);
	bool side[MAX_REPLICAS] = {false};
	int leader = leader_replica(s);

	if (s->partitioned) {
		heal_network(s);
		trace(s, "adversary: partition healed");
		return;
	}
	s->partitioned = true;
	if (mode == 0 || (mode == 1 && leader < 0)) { /* isolate one replica, symmetric */
		side[rng_below(&s->rng, n)] = true;
	} else if (mode == 1) { /* isolate the leader */
		side[leader] = true;
	} else if (mode == 2) { /* split: up to F replicas on the minority side */
		unsigned k = (unsigned)rng_range(&s->rng, 1, f);

		for (unsigned i = 0; i < k; i++)
			side[rng_below(&s->rng, n)] = true;
	} else { /* asymmetric: one direction of a few links */
		unsigned k = (unsigned)rng_range(&s->rng, 1, n);

		for (unsigned i = 0; i < k; i++) {
			unsigned a = (unsigned)rng_below(&s->rng, n),
				 b = (unsigned)rng_below(&s->rng, n);

			if (a != b)
				s->cut[a][b] = true;
		}
		trace(s, "adversary: asymmetric cuts");
		return;
	}
	for (unsigned a = 0; a < n; a++)
		for (unsigned b = 0; b < n; b++)
			if (side[a] != side[b])
				s->cut[a][b] = true;
	trace(s, "adversary: partition mode %" PRIu64 " (leader %d)", mode, leader);
}

static void clock_attack(struct sim *s)
{
	int r = (int)rng_below(&s->rng, s->o.n);
	int idx = s->reps[r].inst;
	struct clock_model *c;

	if (idx < 0)
		return;
	if (rng_pct(&s->rng, 40)) {
		/* The host deschedules the replica's threads: its clock runs on, its timers fire
		 * late, its messages wait. */
		uint64_t d = rng_range(&s->rng, 10 * MS, 1500 * MS);

		s->reps[r].paused_until = s->now + d;
		trace(s, "adversary: replica %d descheduled for %.3fs", r, (double)d / 1e9);
		return;
	}
	c = &s->insts[idx].clk;
	/* A taint: the platform reports the clock was tampered with; a new epoch starts with a
	 * new base (the jump is forward, the rate stays within rho). */
	c->off = read_clock(s, c).hi_ns + rng_range(&s->rng, 0, 5 * SEC);
	c->t0 = s->now;
	c->rate = 1.0 + (rng_unit(&s->rng) * 2.0 - 1.0) * RHO * 0.99;
	c->epoch++;
	trace(s, "adversary: clock taint of replica %d (epoch %" PRIu64 ")", r, c->epoch);
}

static unsigned alive_instances(const struct sim *s, int r)
{
	unsigned n = 0;

	for (int k = 0; k < s->n_live; k++)
		if (s->insts[s->live[k]].replica == r)
			n++;
	return n;
}

/* Replicas that count against M_R now; clears the mark of those that have recovered (one
 * live instance, fresh, no restart pending). */
static unsigned compromised_count(struct sim *s)
{
	unsigned n = 0;

	for (unsigned r = 0; r < s->o.n; r++) {
		struct replica *rp = &s->reps[r];

		if (rp->compromised && !rp->restart_pending && rp->inst >= 0 &&
		    alive_instances(s, (int)r) == 1 &&
		    paxos_lifecycle(s->insts[rp->inst].p) == PAXOS_LC_FRESH)
			rp->compromised = false;
		if (rp->compromised)
			n++;
	}
	return n;
}

/* A replica can vote when it has exactly one live instance and that one is fresh (with a
 * fork alive, one of the two is about to halt: count it as unable to vote). */
static bool available(const struct sim *s, int r)
{
	int idx = s->reps[r].inst;

	return idx >= 0 && alive_instances(s, r) == 1 &&
	       paxos_lifecycle(s->insts[idx].p) == PAXOS_LC_FRESH;
}

/* Replicas that cannot vote now: down, forked, or still registering, fencing or recovering. */
static unsigned unavailable_count(const struct sim *s)
{
	unsigned n = 0;

	for (unsigned r = 0; r < s->o.n; r++)
		if (!available(s, (int)r))
			n++;
	return n;
}

static void power_loss(struct sim *s, int r, bool drop)
{
	static const enum memvfs_crash_mode modes[] = {MEMVFS_DROP, MEMVFS_KEEP, MEMVFS_GARBLE,
						       MEMVFS_RANDOM};
	enum memvfs_crash_mode m = drop ? MEMVFS_DROP : modes[rng_below(&s->rng, 4)];
	int rc = memvfs_power_loss(s->reps[r].vfs, m);

	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
	}
	trace(s, "adversary: power loss of replica %d (mode %d)", r, (int)m);
}

static void restart(struct sim *s, int r)
{
	struct replica *rp = &s->reps[r];
	int rc;

	if (!rp->restart_pending)
		return;
	rp->restart_pending = false;
	rc = instance_new(s, r, rp->vfs, false, true, UINT64_MAX);
	if (rc != TEEMS_OK && s->err == TEEMS_OK) {
		s->err = rc;
		s->done = true;
	}
}

/* A halted incarnation exits; when no instance of the replica is left, the host starts it
 * again from its disk a little later (a restart: suspicious until it has recovered). */
static void host_restarts_exited(struct sim *s, int r)
{
	struct replica *rp = &s->reps[r];

	if (alive_instances(s, r) > 0 || rp->restart_pending)
		return;
	rp->restart_pending = true;
	rp->compromised = true;
	schedule(s, s->now + rng_range(&s->rng, 20 * MS, 500 * MS), EV_RESTART, (uint64_t)r, 0,
		 NULL, 0);
	trace(s, "host: replica %d exited; restart scheduled", r);
}

/* Kills every instance of replica r, then power loss (and, for a rollback, a restart on an
 * earlier synced version of its files); the host restarts it a little later. */
static void crash(struct sim *s, int r, bool rollback, bool counts, bool drop)
{
	struct replica *rp = &s->reps[r];

	/* The machine goes down: every instance of the replica on it, a fork included. */
	rp->restart_pending = true;
	for (int i = 0; i < s->n_insts; i++)
		if (s->insts[i].alive && s->insts[i].replica == r)
			instance_kill(s, i);
	power_loss(s, r, drop);
	if (rollback) {
		uint64_t v = rng_below(&s->rng, memvfs_version(rp->vfs) + 1);
		int rc = memvfs_rollback(rp->vfs, v);

		if (rc != TEEMS_OK) {
			s->err = rc;
			s->done = true;
			return;
		}
		trace(s, "adversary: replica %d rolled back to version %" PRIu64, r, v);
	}
	if (counts)
		rp->compromised = true;
	schedule(s, s->now + rng_range(&s->rng, 20 * MS, 1 * SEC), EV_RESTART, (uint64_t)r, 0, NULL,
		 0);
}

struct record_list {
	struct sim *s;
	uint8_t **data;
	size_t *len;
	size_t n, cap;
};

static int collect_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct record_list *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		uint8_t **nd = realloc(l->data, ncap * sizeof(*nd));
		size_t *nl = realloc(l->len, ncap * sizeof(*nl));

		if (nd != NULL)
			l->data = nd;
		if (nl != NULL)
			l->len = nl;
		if (nd == NULL || nl == NULL)
			return TEEMS_ENOMEM;
		l->cap = ncap;
	}
	l->data[l->n] = malloc(len ? len : 1);
	if (l->data[l->n] == NULL)
		return TEEMS_ENOMEM;
	memcpy(l->data[l->n], data, len);
	l->len[l->n] = len;
	l->n++;
	return 0;
}

/* The host starts a second instance of replica r while the first keeps running, from an
 * earlier state of its disk: a random prefix of the WAL records it holds now (what the host
 * sees, page cache included). The fork gets its own disk holding exactly that prefix. */
static void fork_replica(struct sim *s, int r)
{
	struct replica *rp = &s->reps[r];
	struct store_vfs *copy = memvfs_new(rng_next(&s->rng), 1);
	struct record_list l = {s, NULL, NULL, 0, 0};
	struct store_wal_opts wo;
	struct store_wal *wal = NULL;
	char errbuf[TEEMS_ERRBUF_LEN];
	size_t keep;
	int rc;

	memset(&wo, 0, sizeof(wo));
	wo.replica_id = (uint64_t)r;
	wo.root_key = rp->root_key;
	wo.on_record = collect_record;
	wo.arg = &l;
	rc = copy == NULL ? TEEMS_ENOMEM : store_vfs_mkdir(copy, "wal");
	if (rc == TEEMS_OK)
		rc = store_wal_open(rp->vfs, "wal", &wo, NULL, NULL, errbuf); /* read only */
	keep = rng_pct(&s->rng, 50) ? l.n : (size_t)rng_below(&s->rng, l.n + 1);
	wo.on_record = NULL;
	wo.arg = NULL;
	if (rc == TEEMS_OK)
		rc = store_wal_open(copy, "wal", &wo, &wal, NULL, errbuf);
	for (size_t i = 0; i < keep && rc == TEEMS_OK; i++)
		rc = store_wal_append(wal, l.data[i], l.len[i], NULL);
	if (rc == TEEMS_OK)
		rc = store_wal_sync(wal, NULL, errbuf);
	store_wal_close(wal);
	for (size_t i = 0; i < l.n; i++)
		free(l.data[i]);
	free(l.data);
	free(l.len);
	if (rc != TEEMS_OK) {
		if (copy != NULL)
			store_vfs_destroy(copy);
		s->err = rc;
		s->done = true;
		return;
	}
	trace(s, "adversary: fork of replica %d from %zu of %zu WAL records", r, keep, l.n);
	rp->compromised = true;
	rc = instance_new(s, r, copy, true, true, UINT64_MAX);
	if (rc != TEEMS_OK && s->err == TEEMS_OK) {
		s->err = rc;
		s->done = true;
	}
}

/* One restart-type fault, if the bounds allow it: at most M_R replicas rolled back or forked
 * (under sync=rr and none every crashed replica counts too) until they have recovered, and at
 * most F replicas unable to vote (down, forked, or not yet fresh). */
static void restart_fault(struct sim *s, unsigned fault)
{
	unsigned compromised = compromised_count(s), unavailable = unavailable_count(s);
	bool crash_counts = s->o.sync != PAXOS_SYNC_ALWAYS;
	int r = (int)rng_below(&s->rng, s->o.n);
	struct replica *rp = &s->reps[r];

	if (s->n_insts + 2 * (int)s->o.n + 2 >= MAX_INSTANCES)
		return; /* keep room for the restarts the heal and halts need */
	if (fault == SIM_FAULT_TOTAL_CRASH) {
		if (s->total_crash_done || compromised > 0)
			return;
		s->total_crash_done = true;
		trace(s, "adversary: total crash");
		for (int i = 0; i < s->n_insts; i++)
			if (s->insts[i].alive && s->insts[i].fork)
				instance_kill(s, i);
		for (unsigned k = 0; k < s->o.n; k++)
			crash(s, (int)k, false, crash_counts, true); /* a site-wide power cut */
		return;
	}
	if (rp->inst < 0 || rp->restart_pending)
		return;
	if (!rp->compromised && compromised + 1 > s->o.m_r &&
	    (fault != SIM_FAULT_CRASH || crash_counts))
		return;
	/* After a total crash under rr or none every replica counts against M_R until it has
	 * recovered: no rollback or fork on top (outside the bounds, SCENARIOS.md S11), unless
	 * the negative control asks for it. */
	if (compromised > s->o.m_r && (fault != SIM_FAULT_CRASH || crash_counts) &&
	    !(s->o.unsafe & SIM_UNSAFE_TOTAL_CRASH_ROLLBACK))
		return;
	/* Liveness: a restarted or forked incarnation cannot vote until it is fresh, and a
	 * REGISTER needs W_Q fresh voters, so at most F replicas may be unable to vote at once
	 * (beyond that only the epoch restart of section 6 would bring the cluster back). */
	if (available(s, r) && unavailable + 1 > s->o.f)
		return;
	if (fault == SIM_FAULT_FORK) {
		if (alive_instances(s, r) > 1)
			return;
		fork_replica(s, r);
		return;
	}
	trace(s, "adversary: %s replica %d", fault == SIM_FAULT_CRASH ? "crash" : "rollback", r);
	crash(s, r, fault == SIM_FAULT_ROLLBACK, fault == SIM_FAULT_ROLLBACK || crash_counts,
	      false);
}

static void adversary(struct sim *s)
{
	unsigned choices[8], n = 0;

	if (s->healed)
		return;
	if (s->o.faults & SIM_FAULT_PARTITION)
		choices[n++] = SIM_FAULT_PARTITION;
	if (s->o.faults & SIM_FAULT_LOSS)
		choices[n++] = SIM_FAULT_LOSS;
	if (s->o.faults & SIM_FAULT_CLOCK)
		choices[n++] = SIM_FAULT_CLOCK;
	if (s->o.faults & SIM_FAULT_CRASH)
		choices[n++] = SIM_FAULT_CRASH;
	if (s->o.faults & SIM_FAULT_ROLLBACK)
		choices[n++] = SIM_FAULT_ROLLBACK;
	if (s->o.faults & SIM_FAULT_FORK)
		choices[n++] = SIM_FAULT_FORK;
	if (s->o.faults & SIM_FAULT_TOTAL_CRASH)
		choices[n++] = SIM_FAULT_TOTAL_CRASH;
	if (n > 0) {
		unsigned pick = choices[rng_below(&s->rng, n)];

		switch (pick) {
		case SIM_FAULT_PARTITION:
			partition(s);
			break;
		case SIM_FAULT_LOSS:
			if (s->loss_pct) {
				s->loss_pct = 0;
				s->dup_pct = 0;
			} else {
				s->loss_pct = (unsigned)rng_range(&s->rng, 1, 25);
				s->dup_pct = (unsigned)rng_range(&s->rng, 0, 10);
			}
			trace(s, "adversary: loss %u%% dup %u%%", s->loss_pct, s->dup_pct);
			break;
		case SIM_FAULT_CLOCK:
			clock_attack(s);
			break;
		default:
			restart_fault(s, pick);
			break;
		}
	}
	schedule(s, s->now + rng_range(&s->rng, 50 * MS, 400 * MS), EV_ADVERSARY, 0, 0, NULL, 0);
}

static void heal(struct sim *s)
{
	s->healed = true;
	s->heal_time = s->now;
	heal_network(s);
	for (unsigned r = 0; r < s->o.n; r++)
		s->reps[r].paused_until = 0;
	trace(s, "heal: every fault repaired");
	for (unsigned r = 0; r < s->o.n && !s->done; r++) {
		int keep = -1;

		restart(s, (int)r);
		/* End forks: keep the instance with the newest registration (the other one halts
		 * or is superseded anyway), the replica's own on a tie. */
		for (int i = 0; i < s->n_insts; i++) {
			struct instance *in = &s->insts[i];

			if (!in->alive || in->replica != (int)r)
				continue;
			if (keep < 0) {
				keep = i;
			} else {
				struct msg_regidx a = paxos_registration(in->p);
				struct msg_regidx b = paxos_registration(s->insts[keep].p);
				int c = msg_regidx_cmp(&a, &b);

				if (c > 0 || (c == 0 && !in->fork))
					keep = i;
			}
		}
		for (int i = 0; i < s->n_insts; i++)
			if (s->insts[i].alive && s->insts[i].replica == (int)r && i != keep) {
				trace(s, "heal: instance %d of replica %d stops", i, r);
				instance_kill(s, i);
			}
	}
}

/* ---- the run ---- */

static bool clients_idle(const struct sim *s)
{
	for (unsigned c = 0; c < s->n_clients; c++)
		if (s->clients[c].busy)
			return false;
	return true;
}

static void on_client(struct sim *s, int c)
{
	if (!s->clients[c].busy)
		start_op(s, c);
}

/* A retry belongs to one attempt: a stale one (its op has completed since) does nothing. */
static void on_retry(struct sim *s, int c, uint64_t attempt)
{
	struct client *cl = &s->clients[c];

	if (cl->busy && cl->attempt == attempt)
		start_attempt(s, c);
}

/* The replica an event is processed by, or -1. */
static int event_replica(const struct sim *s, const struct event *e)
{
	switch (e->type) {
	case EV_TICK:
	case EV_SYNC:
		return s->insts[e->a].replica;
	case EV_DELIVER:
		return (int)e->b;
	case EV_PROPOSE:
		return s->attempts[e->a].inst >= 0 ? s->insts[s->attempts[e->a].inst].replica : -1;
	default:
		return -1;
	}
}

static void handle(struct sim *s, struct event *e)
{
	int r = event_replica(s, e);

	if (r >= 0 && s->now < s->reps[r].paused_until) {
		/* Descheduled: the event happens when the replica runs again (in order). */
		schedule(s, s->reps[r].paused_until, e->type, e->a, e->b, e->buf, e->len);
		e->buf = NULL;
		return;
	}
	switch (e->type) {
	case EV_TICK: {
		struct instance *in = &s->insts[e->a];
		struct paxos_input pi;

		if (!in->alive || e->b != in->tick_gen)
			break;
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_TICK;
		pi.tick.random = rng_next(&s->rng);
		step(s, (int)e->a, &pi);
		schedule(s, s->now + T_TICK, EV_TICK, e->a, in->tick_gen, NULL, 0);
		break;
	}
	case EV_DELIVER:
		deliver(s, e);
		break;
	case EV_SYNC:
		do_sync(s, (int)e->a);
		break;
	case EV_PROPOSE:
		on_propose(s, e->a);
		break;
	case EV_REPLY:
		on_reply(s, e->a);
		break;
	case EV_CLIENT:
		on_client(s, (int)e->a);
		break;
	case EV_RETRY:
		on_retry(s, (int)e->a, e->b);
		break;
	case EV_TIMEOUT:
		on_timeout(s, (int)e->a, e->b);
		break;
	case EV_ADVERSARY:
		adversary(s);
		break;
	case EV_RESTART:
		restart(s, (int)e->a);
		break;
	}
}

static void check_progress(struct sim *s)
{
	if (!s->healed && s->invoked >= s->o.ops) {
		heal(s);
	}
	if (s->healed && !s->final_started && clients_idle(s)) {
		/* Every client is done: read every key through the log (in the history). */
		struct client *cl = &s->clients[0];

		s->final_started = true;
		s->final_time = s->now;
		cl->final_reader = true;
		cl->next_final = 0;
		trace(s, "final reads");
		next_op_later(s, 0);
	}
	if (s->reads_done) {
		/* Settled once every replica runs exactly one instance and that one is fresh
		 * (SCENARIOS.md S2: restarted replicas end registered, fenced, recovered). */
		unsigned r;

		for (r = 0; r < s->o.n; r++)
			if (!available(s, (int)r))
				break;
		if (r == s->o.n) {
			s->done = true;
			return;
		}
		if (s->now > s->heal_time + T_PROGRESS) {
			int idx = s->reps[r].inst;
			static const char *const names[] = {"fresh", "registering", "fencing",
							    "recovering", "halted"};
			int lc = idx >= 0 ? (int)paxos_lifecycle(s->insts[idx].p) : -1;

			snprintf(s->not_fresh, sizeof(s->not_fresh),
				 "progress: replica %u is not fresh %llus after the heal (%s, %u "
				 "live "
				 "instances)",
				 r, (unsigned long long)(T_PROGRESS / SEC),
				 lc >= 0 && lc <= 4 ? names[lc] : "down",
				 alive_instances(s, (int)r));
			s->done = true;
		}
		return;
	}
	if (s->healed && s->now > s->heal_time + T_PROGRESS && !s->progress_failed) {
		/* Reported after the history check: a lost write is the more telling finding. */
		s->progress_failed = true;
		s->done = true;
	}
}

static void check_history(struct sim *s)
{
	struct lincheck_result res;
	char errbuf[TEEMS_ERRBUF_LEN];
	int rc;

	rc = lincheck_check(&s->hist, NULL, &res, errbuf);
	if (rc != TEEMS_OK) {
		violation(s, "history rejected by the checker: %s", errbuf);
	} else if (res.verdict == LINCHECK_VIOLATION) {
		violation(s, "linearizability: key %.*s is not linearizable\n%s", (int)res.key.len,
			  (const char *)res.key.data, res.explanation ? res.explanation : "");
	} else if (res.verdict == LINCHECK_UNKNOWN) {
		violation(s, "linearizability: unknown: budget exceeded on key %.*s (not a pass)",
			  (int)res.key.len, (const char *)res.key.data);
	}
	lincheck_result_free(&res);
}

/* No lost acknowledged write, directly: after the heal, the final read of each key must see
 * at least the highest version any acknowledged write of that key produced (versions only
 * grow). Linearizability implies it; this names the loss plainly. */
static void check_lost_writes(struct sim *s)
{
	for (unsigned k = 0; k < s->o.keys; k++) {
		uint8_t key[3];
		uint64_t acked = 0, final = 0;
		const struct history_op *ack_op = NULL;
		bool have_final = false;

		encode_key(key, k);
		for (size_t i = 0; i < s->hist.n; i++) {
			const struct history_op *op = &s->hist.ops[i];

			if (op->outcome != HISTORY_OK || op->key.len != 3 ||
			    memcmp(op->key.data, key, 3) != 0)
				continue;
			if (op->client == 1 && op->type == HISTORY_GET &&
			    op->invoke >= s->final_time) {
				final = op->result.version;
				have_final = true;
			} else if ((op->type == HISTORY_SET || op->type == HISTORY_DEL ||
				    (op->type == HISTORY_CAS && op->result.cas_ok)) &&
				   op->result.version > acked) {
				acked = op->result.version;
				ack_op = op;
			}
		}
		if (have_final && final < acked)
			violation(s,
				  "lost acknowledged write: key k%02u: client %" PRIu64
				  " op %" PRIu64 " was acknowledged with version %" PRIu64
				  ", the final read after the heal returns version %" PRIu64,
				  k, ack_op->client, ack_op->op_id, acked, final);
	}
}

bool sim_parse_faults(const char *list, unsigned *out, char *errbuf, size_t errlen)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {{"crash", SIM_FAULT_CRASH},
		     {"rollback", SIM_FAULT_ROLLBACK},
		     {"fork", SIM_FAULT_FORK},
		     {"partition", SIM_FAULT_PARTITION},
		     {"loss", SIM_FAULT_LOSS},
		     {"clock", SIM_FAULT_CLOCK},
		     {"total-crash", SIM_FAULT_TOTAL_CRASH},
		     {"all", SIM_FAULT_ALL},
		     {"none", 0}};
	const char *p = list;

	*out = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		bool found = false;

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (strlen(names[i].name) == len && strncmp(p, names[i].name, len) == 0) {
				*out |= names[i].bit;
				found = true;
			}
		}
		if (!found && len > 0) {
			snprintf(errbuf, errlen,
				 "unknown fault '%.*s' (known: crash, rollback, fork, "
				 "partition, loss, clock, total-crash, all)",
				 (int)len, p);
			return false;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

static const struct {
	const char *name;
	unsigned bits;
} unsafe_names[] = {
	{"no-fence", PAXOS_UNSAFE_NO_FENCE},
	{"cft-quorums", PAXOS_UNSAFE_CFT_QUORUMS},
	{"no-incarnation-check", PAXOS_UNSAFE_NO_INCARNATION_CHECK},
	{"no-recovery", PAXOS_UNSAFE_NO_RECOVERY},
	{"skip-adopt", PAXOS_UNSAFE_SKIP_ADOPT},
	{"short-promise", PAXOS_UNSAFE_SHORT_PROMISE},
	/* the adversary, not the core: rollbacks and forks on top of a total crash under rr */
	{"total-crash-rollback", SIM_UNSAFE_TOTAL_CRASH_ROLLBACK},
};

bool sim_parse_unsafe(const char *name, unsigned *out)
{
	for (size_t i = 0; i < sizeof(unsafe_names) / sizeof(unsafe_names[0]); i++) {
		if (strcmp(name, unsafe_names[i].name) == 0) {
			*out |= unsafe_names[i].bits;
			return true;
		}
	}
	return false;
}

const char *sim_unsafe_names(void)
{
	return "no-fence, cft-quorums, no-incarnation-check, no-recovery, skip-adopt, "
	       "short-promise, total-crash-rollback";
}

static int setup(struct sim *s)
{
	char errbuf[TEEMS_ERRBUF_LEN];
	int rc;

	rc = quorum_init(&s->q, s->o.n, s->o.f, s->o.m_r, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	if (s->o.n > MAX_REPLICAS)
		return TEEMS_EINVAL;
	history_init(&s->hist);
	s->now = 1 * SEC;
	for (unsigned r = 0; r < s->o.n; r++) {
		struct replica *rp = &s->reps[r];

		rp->inst = -1;
		rp->vfs = memvfs_new(rng_next(&s->rng), 1);
		if (rp->vfs == NULL)
			return TEEMS_ENOMEM;
		rc = store_vfs_mkdir(rp->vfs, "wal");
		if (rc != TEEMS_OK)
			return rc;
		for (int i = 0; i < STORE_WAL_ROOT_KEY_LEN; i++)
			rp->root_key[i] = (uint8_t)rng_next(&s->rng);
	}
	for (unsigned r = 0; r < s->o.n; r++) {
		rc = instance_new(s, (int)r, s->reps[r].vfs, false, false, 0);
		if (rc != TEEMS_OK)
			return rc;
	}
	for (unsigned c = 0; c < s->n_clients; c++) {
		s->clients[c].hint = -1;
		schedule(s, s->now + rng_range(&s->rng, 200 * MS, 400 * MS), EV_CLIENT, c, 0, NULL,
			 0);
	}
	if (s->o.faults)
		schedule(s, s->now + rng_range(&s->rng, 100 * MS, 500 * MS), EV_ADVERSARY, 0, 0,
			 NULL, 0);
	return TEEMS_OK;
}

static void teardown(struct sim *s)
{
	for (int i = 0; i < s->n_insts; i++)
		if (s->insts[i].p != NULL || s->insts[i].kv != NULL || s->insts[i].wal != NULL)
			instance_free(&s->insts[i]);
	for (unsigned r = 0; r < s->o.n; r++)
		if (s->reps[r].vfs != NULL)
			store_vfs_destroy(s->reps[r].vfs);
	for (size_t i = 0; i < s->n_heap; i++)
		free(s->heap[i].buf);
	free(s->heap);
	for (size_t i = 0; i < s->n_attempts; i++)
		free(s->attempts[i].result);
	free(s->attempts);
	for (size_t i = 0; i < s->cap_chosen; i++)
		free(s->chosen[i].value);
	free(s->chosen);
	free(s->encbuf);
	history_free(&s->hist);
}

int sim_run(const struct sim_options *opt, struct sim_report *report)
{
	struct sim *s = calloc(1, sizeof(*s));
	int rc;

	memset(report, 0, sizeof(*report));
	if (s == NULL)
		return TEEMS_ENOMEM;
	s->o = *opt;
	if (s->o.keys == 0)
		s->o.keys = 6;
	if (s->o.keys > 16)
		s->o.keys = 16;
	s->n_clients = s->o.clients ? s->o.clients : 2 * s->o.n;
	if (s->n_clients > MAX_CLIENTS)
		s->n_clients = MAX_CLIENTS;
	s->rep = report;
	s->rng.s = opt->seed * 0x2545f4914f6cdd1dull + 0x1234567ull;
	trace(s, "seed %" PRIu64 ": N=%u F=%u M_R=%u, %u ops, faults 0x%x, unsafe 0x%x, sync %d",
	      opt->seed, opt->n, opt->f, opt->m_r, s->o.ops, opt->faults, opt->unsafe,
	      (int)opt->sync);
	rc = setup(s);
	while (rc == TEEMS_OK && !s->done && s->n_heap > 0) {
		struct event e = pop_event(s);

		s->now = e.time;
		report->events++;
		handle(s, &e);
		free(e.buf);
		if (s->err != TEEMS_OK)
			break;
		check_progress(s);
		if (s->now > T_LIMIT(s->o.ops))
			violation(s, "the run did not finish within %llus of virtual time",
				  (unsigned long long)(T_LIMIT(s->o.ops) / SEC));
	}
	if (rc == TEEMS_OK && s->err == TEEMS_OK && !report->failed) {
		s->done = false; /* let every end-of-run checker add its line */
		check_lost_writes(s);
		check_history(s);
		for (int k = 0; k < DEFERRED_KINDS; k++)
			if (s->deferred[k][0])
				violation(s, "%s", s->deferred[k]);
		if (s->progress_failed)
			violation(s,
				  "progress: the final reads did not complete within %llus of the "
				  "heal (%u of %u keys read)",
				  (unsigned long long)(T_PROGRESS / SEC), s->clients[0].next_final,
				  s->o.keys);
		else if (!s->final_started || s->clients[0].next_final < s->o.keys)
			violation(s, "the run ended before the final reads completed");
		else if (s->not_fresh[0])
			violation(s, "%s", s->not_fresh);
	}
	if (rc == TEEMS_OK && opt->history_path != NULL) {
		char errbuf[TEEMS_ERRBUF_LEN];

		if (history_write_file(&s->hist, opt->history_path, errbuf) != TEEMS_OK)
			fprintf(stderr, "teems-sim: %s\n", errbuf);
	}
	if (rc == TEEMS_OK)
		rc = s->err;
	report->virtual_ns = s->now;
	teardown(s);
	free(s);
	return rc;
}
