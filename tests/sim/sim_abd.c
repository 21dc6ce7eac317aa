/* The deterministic cluster simulator, ABD engine (sim.h, sim_abd_run; docs/TESTING.md, "ABD
 * engine").
 *
 * Derived from sim.c (the Paxos engine): the same event loop, network, clocks, adversary and
 * bounds. Each replica runs two cores on one memvfs: the RR-Paxos core as the control plane
 * (REGISTER of incarnations, fence, its WAL in "wal") and the RR-ABD core as the data plane
 * (registers, its own sealed WAL in "abd"). Paxos commits no client command here: its log holds
 * no-ops and REGISTERs. The shell glues them together (glue()): the applied registration vector
 * goes to abd_set_config, a restarted incarnation calls abd_begin_recovery once Paxos has it
 * registered and fenced (lifecycle RECOVERING or FRESH), and the configuration lease is a
 * stand-in (lease_update()) until the lease module exists. Clients issue GET, SET and DEL (no
 * CAS) through random replicas, each of which coordinates; the history has no versions. */
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
#include "core/abd.h"
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
	DEFERRED_TWO_INCARNATIONS,
	DEFERRED_KINDS,
};
#define RHO 0.01

#define T_TICK (5 * MS)
#define T_ELECT (150 * MS)
#define T_HB (50 * MS)
#define T_OP (500 * MS)
#define T_GROUP_SYNC (2 * MS)
#define T_URGENT_SYNC (200 * US)
#define T_CLIENT_TIMEOUT (3 * SEC)
#define T_PROGRESS (30 * SEC) /* after the heal, the final reads must be done by then */
/* A backstop: every op ends within T_CLIENT_TIMEOUT, so the heal comes at the latest after
 * ops * T_CLIENT_TIMEOUT, and the run ends T_PROGRESS later. */
#define T_LIMIT(ops) (600 * SEC + (uint64_t)(ops)*T_CLIENT_TIMEOUT)
/* The configuration lease stand-in (lease_update) lasts T_CFG, the Paxos core's t_cfg_ns, so
 * that T_fence = (T_op + T_lease + T_cfg)(1 + rho) covers it. Both are shorter than
 * paxos_config_default's 2 s so that restarted incarnations become fresh (T_fence = 1.1 s)
 * while the clients still run and the faults go on. */
#define T_CFG (300 * MS)
#define T_LEASE (300 * MS)

/* The control plane's share of the ABD unsafe bits: no-fence skips the Paxos fence too (the
 * shell then calls abd_begin_recovery as soon as the REGISTER committed); no-recovery makes
 * both cores fresh at once (else the Paxos core would register a new incarnation and the ABD
 * core, still the old one, would halt); no-incarnation-check drops both discard rules.
 * cft-quorums and no-stabilize are the data plane's only. */
static unsigned paxos_unsafe_bits(unsigned abd_bits)
{
	unsigned p = 0;

	if (abd_bits & ABD_UNSAFE_NO_FENCE)
		p |= PAXOS_UNSAFE_NO_FENCE;
	if (abd_bits & ABD_UNSAFE_NO_RECOVERY)
		p |= PAXOS_UNSAFE_NO_RECOVERY;
	if (abd_bits & ABD_UNSAFE_NO_INCARNATION_CHECK)
		p |= PAXOS_UNSAFE_NO_INCARNATION_CHECK;
	return p;
}

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
	EV_SCENARIO,  /* the no-fence bias (stale_coordinator) moves on */
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
	struct abd *a; /* the data plane */
	struct abd_ready ar;
	struct store_wal *awal; /* the ABD core's WAL ("abd") */
	uint64_t awritten, asynced;
	bool aurgent;
	bool abd_begun;			     /* abd_begin_recovery called */
	uint64_t cfg_commit;		     /* 0: the configuration must be fed to ABD again */
	struct msg_regidx fed[MAX_REPLICAS]; /* the registration vector last fed to ABD */
	bool fed_have[MAX_REPLICAS];
	uint64_t lease_until;	       /* hi: the lease given to ABD (0: none) */
	uint64_t ack_hi[MAX_REPLICAS]; /* leader: hi when each peer's HEARTBEAT_ACK arrived */
	/* The ABD ordering check (check_asend): per key, the highest timestamp in a durable
	 * record, and the register records not yet synced. */
	bool adur_have[16];
	struct msg_timestamp adur[16];
	struct apending *apend;
	size_t n_apend, cap_apend;
	struct clock_model clk;
	struct store_wal *wal;
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
	uint64_t tick_gen;	/* ticks of an old generation are ignored */
	int lifecycle;		/* last enum paxos_lifecycle seen (for the trace) */
	int role;		/* last enum paxos_role seen (for the trace) */
};

struct apending {
	unsigned key;
	struct msg_timestamp ts;
	uint64_t seq;
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
	uint8_t *result; /* GET ok with found: the value */
	size_t result_len;
	bool found;
	int outcome; /* enum abd_outcome once answered, -1 before */
};

struct client {
	bool busy;	 /* an op is open */
	uint64_t op_seq; /* of the open op */
	size_t hist;	 /* its index in the history */
	enum abd_op op;	 /* the open op */
	uint8_t key[16];
	uint8_t value[32];
	uint32_t value_len;
	int hint;	/* replica to try next, -1: random */
	size_t attempt; /* the current attempt of the open op (only one at a time) */
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
	/* The no-fence bias (stale_coordinator): phase 0 idle, 1 armed (waiting for B's ack to
	 * A), 2 B crashed, 3 A's links back. */
	int sc_phase;
	int sc_a, sc_b, sc_d, sc_leader;
	bool stale_bias; /* TEEMS_SIM_ABD_STALE set: the bias without --unsafe no-fence */
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

/* The ABD core's persist record (abd_persist_encode) goes to its own sealed WAL, "abd". */
static void apersist(struct sim *s, struct instance *in, const struct abd_persist *p)
{
	size_t len = 0;
	int rc;

	rc = abd_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	if (rc == TEEMS_EFULL) {
		if (ensure_encbuf(s, len) != 0)
			return;
		rc = abd_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	}
	if (rc != TEEMS_OK) {
		violation(s, "replica %d: abd_persist_encode refused record %" PRIu64 ": %s",
			  in->replica, p->seq, teems_strerror(rc));
		return;
	}
	rc = store_wal_append(in->awal, s->encbuf, len, NULL);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	if (p->seq != in->awritten + 1 && in->awritten != 0)
		violation(s, "replica %d: ABD persist seq %" PRIu64 " after %" PRIu64, in->replica,
			  p->seq, in->awritten);
	in->awritten = p->seq;
	if (p->sync)
		in->aurgent = true;
	if ((p->flags & ABD_REC_REGISTER) && p->key_len == 3 && p->key[0] == 'k') {
		if (in->n_apend == in->cap_apend) {
			size_t ncap = in->cap_apend ? in->cap_apend * 2 : 64;
			struct apending *np = xrealloc(s, in->apend, ncap * sizeof(*np));

			if (np == NULL)
				return;
			in->apend = np;
			in->cap_apend = ncap;
		}
		in->apend[in->n_apend].key =
			10u * (unsigned)(p->key[1] - '0') + (unsigned)(p->key[2] - '0');
		in->apend[in->n_apend].ts = p->ts;
		in->apend[in->n_apend].seq = p->seq;
		in->n_apend++;
	}
}

static void encode_key(uint8_t *buf, unsigned k);

/* Records up to `upto` are durable: their registers' timestamps count for check_asend. */
static void adurable(struct instance *in, uint64_t upto)
{
	size_t keep = 0;

	for (size_t k = 0; k < in->n_apend; k++) {
		struct apending *pd = &in->apend[k];

		if (pd->seq > upto) {
			in->apend[keep++] = *pd;
			continue;
		}
		if (pd->key < 16 && (!in->adur_have[pd->key] ||
				     msg_timestamp_cmp(&pd->ts, &in->adur[pd->key]) > 0)) {
			in->adur[pd->key] = pd->ts;
			in->adur_have[pd->key] = true;
		}
	}
	in->n_apend = keep;
}

/* abd.h's ordering rule, checked on every message the ABD core sends: a synced WRITE_ACK
 * leaves only once a record holding the key at (or above) the acknowledged timestamp is
 * durable. */
static void check_asend(struct sim *s, const struct instance *in, const struct msg *m)
{
	unsigned k;

	if (m->type != MSG_ABD_WRITE_ACK || m->abd_write_ack.sync != MSG_SYNCED ||
	    m->abd_write_ack.key.len != 3 || m->abd_write_ack.key.p[0] != 'k')
		return;
	k = 10u * (unsigned)(m->abd_write_ack.key.p[1] - '0') +
	    (unsigned)(m->abd_write_ack.key.p[2] - '0');
	if (k < 16 &&
	    (!in->adur_have[k] || msg_timestamp_cmp(&in->adur[k], &m->abd_write_ack.ts) < 0))
		violation(s,
			  "replica %d sent a synced ABD_WRITE_ACK for key k%02u before a record "
			  "holding it was durable",
			  in->replica, k);
}

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

static void net_send(struct sim *s, const struct instance *in, uint16_t to, const struct msg *msg)
{
	int from = in->replica;
	size_t len;
	uint8_t *buf;
	int copies = 1;

	if (msg_encode(msg, NULL, 0, &len) != TEEMS_EFULL) {
		violation(s, "replica %d produced a message msg_encode refuses (%s)", from,
			  msg_type_name(msg->type));
		return;
	}
	check_send(s, in, msg);
	if (s->sc_phase >= 2 && msg->type == MSG_COMMIT && (to == s->sc_a || to == s->sc_d) &&
	    from == s->sc_leader)
		return; /* the no-fence bias: A and D apply no new configuration entry */
	if (s->sc_phase >= 1 && from == s->sc_a && to != (s->sc_phase <= 3 ? s->sc_b : s->sc_d) &&
	    msg->type >= MSG_ABD_QUERY && msg->type <= MSG_ABD_RANGE_REPLY)
		return; /* the no-fence bias: A's data plane reaches only B, later only D */
	if (!link_up(s, from, to))
		return;
	if (s->sc_phase == 1 && from == s->sc_b && to == s->sc_a &&
	    msg->type == MSG_ABD_WRITE_ACK) {
		/* B acknowledged A's write: A can no longer reach B; B loses power next. */
		s->sc_phase = 2;
		s->cut[s->sc_a][s->sc_b] = true;
		schedule(s, s->now + 1 * MS, EV_SCENARIO, 0, 0, NULL, 0);
	}
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
		if (msg_encode(msg, buf, len, &len) != TEEMS_OK) {
			free(buf);
			violation(s, "msg_encode failed");
			return;
		}
		schedule(s, s->now + delay, EV_DELIVER, (uint64_t)from, to, buf, len);
	}
}

/* ---- driving the cores ---- */

static void client_reply_later(struct sim *s, size_t attempt);
static void glue(struct sim *s, int idx);

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

/* The same two checks on the quorums the ABD core counted (reads, writes, recovery). */
static void check_acounted(struct sim *s, const struct instance *in, const struct abd_counted *c)
{
	static const char *const kinds[] = {"query", "write", "recovery"};

	for (uint32_t i = 0; i < c->n; i++)
		for (uint32_t j = i + 1; j < c->n; j++)
			if (c->members[i].replica == c->members[j].replica &&
			    s->deferred[DEFERRED_TWO_INCARNATIONS][0] == 0)
				snprintf(s->deferred[DEFERRED_TWO_INCARNATIONS],
					 sizeof(s->deferred[0]),
					 "two incarnations: replica %d counted two incarnations of "
					 "replica %u ((%" PRIu64 ",%" PRIu64 ") and (%" PRIu64
					 ",%" PRIu64 ")) in one %s quorum (at t=%.6fs)",
					 in->replica, c->members[i].replica,
					 c->members[i].reg.epoch, c->members[i].reg.slot,
					 c->members[j].reg.epoch, c->members[j].reg.slot,
					 c->kind <= 2 ? kinds[c->kind] : "?", (double)s->now / 1e9);
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
				 "(%" PRIu64 ",%" PRIu64 ") in an ABD %s quorum although its own "
				 "configuration registers (%" PRIu64 ",%" PRIu64 ") (at t=%.6fs)",
				 in->replica, c->members[i].replica, c->members[i].reg.epoch,
				 c->members[i].reg.slot, c->kind <= 2 ? kinds[c->kind] : "?",
				 idx.epoch, idx.slot, (double)s->now / 1e9);
	}
}

static void instance_kill(struct sim *s, int idx);
static void host_restarts_exited(struct sim *s, int r);

static void halt_instance(struct sim *s, int idx, const char *core)
{
	struct instance *in = &s->insts[idx];

	trace(s, "replica %d (instance %d) halts (%s): a newer incarnation is registered",
	      in->replica, idx, core);
	instance_kill(s, idx);
	host_restarts_exited(s, in->replica);
}

static void schedule_sync(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	bool urgent = in->urgent || in->aurgent;

	/* Group fsync: under sync=none only the records a core marks `sync` are made durable. */
	if ((in->written > in->synced || in->awritten > in->asynced) && !in->sync_scheduled &&
	    (s->o.sync != PAXOS_SYNC_NONE || urgent)) {
		in->sync_scheduled = true;
		schedule(s, s->now + (urgent ? T_URGENT_SYNC : T_GROUP_SYNC), EV_SYNC,
			 (uint64_t)idx, 0, NULL, 0);
	}
}

static void take_ready(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct paxos_ready *r = &in->r;

	for (size_t k = 0; k < r->n_persist && !s->done; k++)
		persist(s, in, &r->persist[k]);
	for (size_t k = 0; k < r->n_sends && !s->done; k++)
		net_send(s, in, r->sends[k].to, &r->sends[k].msg);
	for (size_t k = 0; k < r->n_applies && !s->done; k++) {
		check_apply(s, in, &r->applies[k]);
		if (r->applies[k].config)
			in->cfg_commit = 0; /* feed the configuration to ABD again (glue) */
	}
	s->rep->quorums += r->n_counted;
	for (size_t k = 0; k < r->n_counted && !s->done; k++)
		check_counted(s, in, &r->counted[k]);
	if (r->halted && in->alive) {
		halt_instance(s, idx, "Paxos");
		return;
	}
	schedule_sync(s, idx);
}

static void take_aready(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct abd_ready *r = &in->ar;

	for (size_t k = 0; k < r->n_persist && !s->done; k++)
		apersist(s, in, &r->persist[k]);
	for (size_t k = 0; k < r->n_sends && !s->done; k++) {
		check_asend(s, in, &r->sends[k].msg);
		net_send(s, in, r->sends[k].to, &r->sends[k].msg);
	}
	for (size_t k = 0; k < r->n_replies && !s->done; k++) {
		const struct abd_reply *rp = &r->replies[k];
		struct attempt *at;

		if (rp->request_id >= s->n_attempts || s->attempts[rp->request_id].inst != idx)
			continue;
		at = &s->attempts[rp->request_id];
		if (at->outcome >= 0)
			continue;
		at->outcome = (int)rp->outcome;
		if (rp->outcome == ABD_OUTCOME_OK) {
			at->have_result = true;
			at->found = rp->found;
			if (rp->op == ABD_GET && rp->found) {
				at->result = malloc(rp->len ? rp->len : 1);
				if (at->result == NULL) {
					s->err = TEEMS_ENOMEM;
					s->done = true;
					return;
				}
				memcpy(at->result, rp->value, rp->len);
				at->result_len = rp->len;
			}
			if (rp->op == ABD_GET) {
				s->rep->reads_ok++;
				s->rep->read_rounds += rp->rounds;
			} else {
				s->rep->writes_ok++;
				s->rep->write_rounds += rp->rounds;
			}
		}
		client_reply_later(s, rp->request_id);
	}
	s->rep->quorums += r->n_counted;
	for (size_t k = 0; k < r->n_counted && !s->done; k++) {
		const struct abd_counted *c = &r->counted[k];

		if (s->o.trace != NULL) {
			char buf[256];
			size_t used = 0;

			buf[0] = 0;
			for (uint32_t i = 0; i < c->n && used + 32 < sizeof(buf); i++)
				used += (size_t)snprintf(
					buf + used, sizeof(buf) - used,
					" %u@(%" PRIu64 ",%" PRIu64 ")", c->members[i].replica,
					c->members[i].reg.epoch, c->members[i].reg.slot);
			trace(s, "replica %d counted ABD %s quorum:%s", in->replica,
			      c->kind == ABD_COUNTED_QUERY   ? "query"
			      : c->kind == ABD_COUNTED_WRITE ? "write"
							     : "recovery",
			      buf);
		}
		check_acounted(s, in, c);
	}
	if (r->recovered)
		trace(s, "replica %d (instance %d): ABD recovered", in->replica, idx);
	if (r->halted && in->alive) {
		halt_instance(s, idx, "ABD");
		return;
	}
	schedule_sync(s, idx);
}

static void step(struct sim *s, int idx, struct paxos_input *in)
{
	struct instance *ins = &s->insts[idx];
	int rc;

	in->now = read_clock(s, &ins->clk);
	rc = paxos_step(ins->p, in, &ins->r);
	if (rc != TEEMS_OK) {
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
	if (ins->alive && !s->done)
		glue(s, idx);
}

static void astep(struct sim *s, int idx, struct abd_input *in)
{
	struct instance *ins = &s->insts[idx];
	struct paxos_time t = read_clock(s, &ins->clk);
	int rc;

	in->now.lo_ns = t.lo_ns;
	in->now.hi_ns = t.hi_ns;
	in->now.epoch = t.epoch;
	rc = abd_step(ins->a, in, &ins->ar);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	take_aready(s, idx);
}

/* An empty ABD step, to let the outputs of a control input (abd_set_config,
 * abd_begin_recovery) leave. */
static void apoke(struct sim *s, int idx)
{
	struct abd_input ai;

	memset(&ai, 0, sizeof(ai));
	ai.type = ABD_IN_TICK;
	ai.tick.random = rng_next(&s->rng);
	astep(s, idx, &ai);
}

/* Is this incarnation fresh in both planes? */
static bool inst_fresh(const struct instance *in)
{
	return paxos_lifecycle(in->p) == PAXOS_LC_FRESH && !abd_suspicious(in->a) &&
	       !abd_recovering(in->a) && !abd_halted(in->a);
}

/* The configuration lease, a stand-in until the lease module exists (DESIGN.md section 8):
 * a fresh follower holds it until T_cfg (on hi) after it last received a COMMIT heartbeat of
 * the ballot it follows; a fresh leader until T_cfg after the (W_Q - 1)-th most recent
 * HEARTBEAT_ACK of its ballot. A new incarnation of any replica becomes fresh only T_fence >=
 * T_op + T_cfg (on lo) after its REGISTER committed, and a heartbeat that carries no knowledge
 * of that REGISTER was sent before it committed; so every lease granted on older
 * configuration knowledge has lapsed by then, except for heartbeats delayed in the network
 * (the simulator holds some back for up to T_op + 300 ms; T_lease in the fence covers that).
 * Not the real thing: the lease issue replaces it. */
static void lease_update(struct sim *s, int idx, const struct msg *m)
{
	struct instance *in = &s->insts[idx];
	struct msg_ballot b = paxos_promised(in->p);
	uint64_t until = 0;

	if (!inst_fresh(in))
		return;
	if (m->type == MSG_COMMIT && paxos_role(in->p) == PAXOS_FOLLOWER &&
	    msg_ballot_cmp(&m->commit.ballot, &b) == 0 && m->from.replica == b.replica) {
		until = read_clock(s, &in->clk).hi_ns + T_CFG;
	} else if (m->type == MSG_HEARTBEAT_ACK && paxos_role(in->p) == PAXOS_LEADER &&
		   msg_ballot_cmp(&m->heartbeat_ack.ballot, &b) == 0 && m->from.replica < s->o.n) {
		uint64_t times[MAX_REPLICAS];
		unsigned n = 0, need = quorum_write(&s->q) - 1;

		in->ack_hi[m->from.replica] = read_clock(s, &in->clk).hi_ns;
		for (unsigned r = 0; r < s->o.n; r++)
			if ((int)r != in->replica && in->ack_hi[r] != 0)
				times[n++] = in->ack_hi[r];
		/* the need-th most recent */
		for (unsigned i = 0; i < n; i++)
			for (unsigned j = i + 1; j < n; j++)
				if (times[j] > times[i]) {
					uint64_t t = times[i];

					times[i] = times[j];
					times[j] = t;
				}
		if (need == 0)
			until = read_clock(s, &in->clk).hi_ns + T_CFG;
		else if (n >= need)
			until = times[need - 1] + T_CFG;
	}
	if (until > in->lease_until) {
		in->lease_until = until;
		abd_set_lease(in->a, until);
	}
}

/* The shell between the two cores, after every Paxos step: the applied registration vector
 * to ABD (abd_set_config), and abd_begin_recovery once the restarted incarnation is
 * registered and fenced (lifecycle RECOVERING or FRESH; --unsafe no-fence: as soon as it is
 * registered). */
static void glue(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	enum paxos_lifecycle lc = paxos_lifecycle(in->p);
	bool poke = false;

	/* The registration vector: fed again whenever it differs from what ABD last got (a
	 * configuration entry applied, or an epoch restart). */
	{
		struct msg_incarnation regs[MAX_REPLICAS];
		size_t n = 0;
		bool changed = in->cfg_commit == 0;

		for (unsigned r = 0; r < s->o.n; r++) {
			struct msg_regidx ri;
			uint8_t key[MSG_PUBLIC_KEY_SIZE];

			if (paxos_config_registration(in->p, (uint16_t)r, &ri, key)) {
				regs[n].replica = (uint16_t)r;
				regs[n].reg = ri;
				n++;
				if (!in->fed_have[r] || msg_regidx_cmp(&ri, &in->fed[r]) != 0)
					changed = true;
				in->fed[r] = ri;
				in->fed_have[r] = true;
			}
		}
		in->cfg_commit = 1;
		if (changed && n > 0) {
			int rc = abd_set_config(in->a, regs, n);

			if (rc != TEEMS_OK) {
				s->err = rc;
				s->done = true;
				return;
			}
			poke = true;
			if (abd_halted(in->a)) {
				halt_instance(s, idx, "ABD, from the configuration");
				return;
			}
		}
	}
	if (in->restarted && !in->abd_begun && paxos_registered(in->p) &&
	    (lc == PAXOS_LC_RECOVERING || lc == PAXOS_LC_FRESH ||
	     (s->o.unsafe & ABD_UNSAFE_NO_FENCE))) {
		struct msg_regidx reg = paxos_registration(in->p);
		int rc;

		in->abd_begun = true;
		rc = abd_begin_recovery(in->a, reg);
		if (rc == TEEMS_OK) {
			trace(s,
			      "replica %d (instance %d): ABD begins recovery at (%" PRIu64
			      ",%" PRIu64 ")",
			      in->replica, idx, reg.epoch, reg.slot);
			poke = true;
		}
	}
	if (poke)
		apoke(s, idx);
}

struct restore_ctx {
	struct sim *s;
	struct instance *in;
	uint64_t max; /* records to restore (a fork may take a prefix) */
	uint64_t n;
	bool abd; /* the ABD WAL */
};

static int on_wal_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct restore_ctx *rc = arg;
	int err;

	if (rc->n >= rc->max)
		return 0;
	rc->n++;
	err = rc->abd ? abd_restore(rc->in->a, data, len) : paxos_restore(rc->in->p, data, len);
	if (err == TEEMS_ENOMEM)
		return err;
	if (err != TEEMS_OK) {
		violation(rc->s, "replica %d: %s_restore refused WAL record %" PRIu64 ": %s",
			  rc->in->replica, rc->abd ? "abd" : "paxos", index, teems_strerror(err));
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
	struct abd_config acfg;
	struct store_wal_opts wo;
	struct store_wal_info info;
	struct restore_ctx rc_ctx;
	uint64_t paxos_records;
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
	cfg.t_lease_ns = T_LEASE;
	/* Epoch restart (as the Paxos engine's T_RESTART) only when a total crash can happen: the
	 * ABD side of an epoch restart is not handled yet (docs/TESTING.md, "Simulator: the ABD
	 * engine"), and without a total crash the bounds never need one. */
	cfg.t_restart_ns = (s->o.faults & SIM_FAULT_TOTAL_CRASH) ? 5 * SEC : 0;
	cfg.t_cfg_ns = T_CFG;
	cfg.rho_ppm = (uint32_t)(RHO * 1e6);
	cfg.max_slot_bytes = 4096;
	cfg.max_accept_slots = 16;
	cfg.max_inflight = 32;
	cfg.max_queue = 256;
	cfg.unsafe = paxos_unsafe_bits(s->o.unsafe);
	rc = paxos_new(&in->p, &cfg, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	paxos_ready_init(&in->r);
	abd_ready_init(&in->ar);
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
	rc_ctx.abd = false;
	wo.on_record = on_wal_record;
	wo.arg = &rc_ctx;
	rc = store_wal_open(vfs, "wal", &wo, &in->wal, &info, errbuf);
	if (rc != TEEMS_OK) {
		if (s->rep->failed)
			return TEEMS_OK; /* paxos_restore refused a record: reported */
		fprintf(stderr, "teems-sim: replica %d: %s\n", replica, errbuf);
		return rc;
	}
	paxos_records = rc_ctx.n;
	/* The data plane: its own core and WAL. A restarted incarnation learns its registration
	 * with abd_begin_recovery; under no-recovery it stays the one its Paxos core restored. */
	abd_config_default(&acfg);
	acfg.quorum = s->q;
	acfg.self = (uint16_t)replica;
	acfg.reg = paxos_registration(in->p);
	acfg.restarted = restarted && !(s->o.unsafe & ABD_UNSAFE_NO_RECOVERY);
	acfg.sync = s->o.sync == PAXOS_SYNC_ALWAYS ? ABD_SYNC_ALWAYS
		    : s->o.sync == PAXOS_SYNC_RR   ? ABD_SYNC_RR
						   : ABD_SYNC_NONE;
	acfg.t_op_ns = T_OP;
	acfg.resend_ns = 100 * MS;
	acfg.unsafe = s->o.unsafe;
	rc = abd_new(&in->a, &acfg, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	rc_ctx.n = 0;
	rc_ctx.max = UINT64_MAX;
	rc_ctx.abd = true;
	rc = store_wal_open(vfs, "abd", &wo, &in->awal, &info, errbuf);
	if (rc != TEEMS_OK) {
		if (s->rep->failed)
			return TEEMS_OK; /* abd_restore refused a record: reported */
		fprintf(stderr, "teems-sim: replica %d: %s\n", replica, errbuf);
		return rc;
	}
	/* What the ABD WAL delivered is durable. */
	for (unsigned k = 0; k < 16; k++) {
		uint8_t key[3];
		bool stable, tomb;
		const uint8_t *v;
		uint32_t vlen;

		encode_key(key, k);
		in->adur_have[k] =
			abd_lookup(in->a, key, 3, &in->adur[k], &stable, &tomb, &v, &vlen);
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
	trace(s,
	      "replica %d: instance %d starts%s%s with %" PRIu64 " Paxos and %" PRIu64
	      " ABD WAL records",
	      replica, idx, restarted ? " (restarted)" : "", own_vfs ? " as a fork" : "",
	      paxos_records, rc_ctx.n);
	schedule(s, s->now + rng_below(&s->rng, T_TICK), EV_TICK, (uint64_t)idx, in->tick_gen, NULL,
		 0);
	return TEEMS_OK;
}

static void instance_free(struct instance *in)
{
	free(in->pending);
	free(in->slot_seq);
	in->pending = NULL;
	in->slot_seq = NULL;
	in->n_pending = in->cap_pending = in->cap_slot_seq = 0;
	paxos_free(in->p);
	paxos_ready_free(&in->r);
	abd_free(in->a);
	abd_ready_free(&in->ar);
	free(in->apend);
	in->apend = NULL;
	in->n_apend = in->cap_apend = 0;
	store_wal_close(in->wal);
	store_wal_close(in->awal);
	if (in->own_vfs && in->vfs != NULL)
		store_vfs_destroy(in->vfs);
	in->p = NULL;
	in->a = NULL;
	in->wal = NULL;
	in->awal = NULL;
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
	uint64_t upto = in->written, aupto = in->awritten;
	struct paxos_input pi;
	struct abd_input ai;
	int rc;

	in->sync_scheduled = false;
	if (!in->alive)
		return;
	in->urgent = false;
	in->aurgent = false;
	rc = store_wal_sync(in->wal, NULL, errbuf);
	if (rc == TEEMS_OK)
		rc = store_wal_sync(in->awal, NULL, errbuf);
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
	if (!in->alive || s->done || aupto == in->asynced)
		return;
	in->asynced = aupto;
	adurable(in, aupto);
	memset(&ai, 0, sizeof(ai));
	ai.type = ABD_IN_SYNCED;
	ai.synced.seq = aupto;
	astep(s, idx, &ai);
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
		struct abd_input ai;

		if (!in->alive || in->replica != to)
			continue;
		s->rep->messages++;
		if (m.type >= MSG_ABD_QUERY && m.type <= MSG_ABD_RANGE_REPLY) {
			memset(&ai, 0, sizeof(ai));
			ai.type = ABD_IN_MESSAGE;
			ai.message = &m;
			astep(s, i, &ai);
		} else {
			memset(&pi, 0, sizeof(pi));
			pi.type = PAXOS_IN_MESSAGE;
			pi.message = &m;
			step(s, i, &pi);
			if (in->alive && !s->done)
				lease_update(s, i, &m);
		}
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
	encode_key(cl->key, k);
	/* Values are unique per write (the monotonic-reads checker attributes values to writes). */
	n = snprintf((char *)cl->value, sizeof(cl->value), "c%d.%" PRIu64, c, s->next_op_seq);
	cl->value_len = 0;
	if (r < 45) {
		cl->op = ABD_GET;
	} else if (r < 92) {
		cl->op = ABD_SET;
		cl->value_len = (uint32_t)n;
	} else {
		cl->op = ABD_DEL;
	}
	memset(&op, 0, sizeof(op));
	op.client = (uint64_t)c + 1;
	op.op_id = s->next_op_seq;
	op.invoke = s->now;
	op.type = cl->op == ABD_GET ? HISTORY_GET : cl->op == ABD_SET ? HISTORY_SET : HISTORY_DEL;
	op.key.data = cl->key;
	op.key.len = 3;
	if (cl->op == ABD_SET) {
		op.value.data = cl->value;
		op.value.len = cl->value_len;
	}
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

	if (!cl->busy || cl->op_seq != at->op_seq || cl->attempt != a)
		return; /* the op timed out meanwhile */
	switch ((enum abd_outcome)at->outcome) {
	case ABD_OUTCOME_OK:
		memset(&hr, 0, sizeof(hr));
		hr.version_known = false;
		hr.found = at->found;
		hr.value.data = at->result;
		hr.value.len = at->result_len;
		if (cl->final_reader && cl->op == ABD_GET)
			cl->next_final++;
		complete_op(s, at->client, HISTORY_OK, &hr);
		return;
	case ABD_OUTCOME_UNKNOWN:
		complete_op(s, at->client, HISTORY_UNKNOWN, NULL);
		return;
	case ABD_OUTCOME_REFUSED:
		/* Never started: not applied; the same op tries another replica. */
		schedule(s, s->now + rng_range(&s->rng, 1 * MS, 20 * MS), EV_RETRY,
			 (uint64_t)at->client, a, NULL, 0);
		return;
	default:
		violation(s, "replica %d answered client %d with unexpected outcome %d",
			  s->insts[at->inst].replica, at->client, at->outcome);
		return;
	}
}

static void on_propose(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct abd_input ai;

	if (!cl->busy || cl->op_seq != at->op_seq || cl->attempt != a)
		return;
	if (at->inst < 0 || !s->insts[at->inst].alive) {
		/* Connection refused: the request reached no process, so it was not applied;
		 * the client tries another replica. */
		schedule(s, s->now + rng_range(&s->rng, 1 * MS, 20 * MS), EV_RETRY,
			 (uint64_t)at->client, a, NULL, 0);
		return;
	}
	memset(&ai, 0, sizeof(ai));
	ai.type = ABD_IN_REQUEST;
	ai.request.client_id = (uint64_t)at->client + 1;
	ai.request.request_id = a;
	ai.request.op = cl->op;
	ai.request.key = cl->key;
	ai.request.key_len = 3;
	ai.request.value = cl->value;
	ai.request.value_len = cl->value_len;
	astep(s, at->inst, &ai);
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
	s->sc_phase = 0; /* ends the no-fence bias too */
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
		    alive_instances(s, (int)r) == 1 && inst_fresh(&s->insts[rp->inst]))
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

	return idx >= 0 && alive_instances(s, r) == 1 && inst_fresh(&s->insts[idx]);
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

/* Copies a random prefix of the records of WAL `dir` on `from` to a new WAL on `to`. */
static int copy_wal_prefix(struct sim *s, int r, struct store_vfs *from, struct store_vfs *to,
			   const char *dir, size_t *kept, size_t *total)
{
	struct replica *rp = &s->reps[r];
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
	rc = store_vfs_mkdir(to, dir);
	if (rc == TEEMS_OK)
		rc = store_wal_open(from, dir, &wo, NULL, NULL, errbuf); /* read only */
	keep = rng_pct(&s->rng, 50) ? l.n : (size_t)rng_below(&s->rng, l.n + 1);
	wo.on_record = NULL;
	wo.arg = NULL;
	if (rc == TEEMS_OK)
		rc = store_wal_open(to, dir, &wo, &wal, NULL, errbuf);
	for (size_t i = 0; i < keep && rc == TEEMS_OK; i++)
		rc = store_wal_append(wal, l.data[i], l.len[i], NULL);
	if (rc == TEEMS_OK)
		rc = store_wal_sync(wal, NULL, errbuf);
	store_wal_close(wal);
	for (size_t i = 0; i < l.n; i++)
		free(l.data[i]);
	free(l.data);
	free(l.len);
	*kept = keep;
	*total = l.n;
	return rc;
}

/* The host starts a second instance of replica r while the first keeps running, from an
 * earlier state of its disk: a random prefix of the records of each WAL it holds now (what the
 * host sees, page cache included). The fork gets its own disk holding exactly those prefixes. */
static void fork_replica(struct sim *s, int r)
{
	struct replica *rp = &s->reps[r];
	struct store_vfs *copy = memvfs_new(rng_next(&s->rng), 1);
	size_t pk = 0, pn = 0, ak = 0, an = 0;
	int rc;

	rc = copy == NULL ? TEEMS_ENOMEM : copy_wal_prefix(s, r, rp->vfs, copy, "wal", &pk, &pn);
	if (rc == TEEMS_OK)
		rc = copy_wal_prefix(s, r, rp->vfs, copy, "abd", &ak, &an);
	if (rc != TEEMS_OK) {
		if (copy != NULL)
			store_vfs_destroy(copy);
		s->err = rc;
		s->done = true;
		return;
	}
	trace(s,
	      "adversary: fork of replica %d from %zu of %zu Paxos and %zu of %zu ABD WAL "
	      "records",
	      r, pk, pn, ak, an);
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
static void restart_fault_at(struct sim *s, unsigned fault, int r, bool drop)
{
	unsigned compromised = compromised_count(s), unavailable = unavailable_count(s);
	bool crash_counts = s->o.sync != PAXOS_SYNC_ALWAYS;
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
	 * recovered: no rollback or fork on top (outside the bounds, SCENARIOS.md S11); as in
	 * sim.c. */
	if (compromised > s->o.m_r && (fault != SIM_FAULT_CRASH || crash_counts))
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
	crash(s, r, fault == SIM_FAULT_ROLLBACK, fault == SIM_FAULT_ROLLBACK || crash_counts, drop);
}

static void restart_fault(struct sim *s, unsigned fault)
{
	restart_fault_at(s, fault, (int)rng_below(&s->rng, s->o.n), false);
}

/* A bias for the no-fence negative control only (--unsafe no-fence with crash and partition
 * among the faults; never otherwise): the schedule the fence exists for (SCENARIOS.md S1).
 * Armed: a coordinator A's data plane (ABD messages) reaches only B; its Paxos messages pass.
 * When B acknowledges a write of A, A's link to B is cut, the leader's COMMITs to A and to a
 * third replica D are dropped from then on (A keeps the configuration lease of its last
 * heartbeat for T_cfg; neither applies the new REGISTER, though both may vote for it, so
 * neither's replies show it), and B loses power (its volatile ack's record dropped) and
 * restarts at once. Without the fence its next incarnation registers and recovers from
 * replicas that never got the write. Then A's data plane reaches D (only): A's re-sent WRITE
 * gets D's ack and the write completes counting old B and D. Within the bounds: message loss
 * and cuts, one crash (restart_fault_at applies the M_R and F bounds). */
#define SIM_FAULT_STALE_COORDINATOR 0x100u
static void stale_coordinator(struct sim *s)
{
	int leader = leader_replica(s), a, b;
	unsigned n = s->o.n;

	if (s->sc_phase != 0 || leader < 0 || n < 3)
		return;
	a = (int)(((unsigned)leader + 1 + (unsigned)rng_below(&s->rng, n - 1)) % n);
	b = (int)(((unsigned)a + 1 + (unsigned)rng_below(&s->rng, n - 1)) % n);
	if (b == leader)
		b = (int)(((unsigned)b + 1) % n);
	s->sc_d = -1;
	for (unsigned x = 0; x < n; x++)
		if ((int)x != leader && (int)x != a && (int)x != b &&
		    (s->sc_d < 0 || rng_pct(&s->rng, 50)))
			s->sc_d = (int)x;
	if (b == a || !available(s, b) || !available(s, a) || compromised_count(s) + 1 > s->o.m_r ||
	    unavailable_count(s) + 1 > s->o.f)
		return;
	heal_network(s);
	s->partitioned = true;
	s->sc_phase = 1;
	s->sc_a = a;
	s->sc_b = b;
	s->sc_leader = leader;
	trace(s, "adversary: stale coordinator %d (no ACCEPTs from leader %d), armed on %d", a,
	      leader, b);
	schedule(s, s->now + 400 * MS, EV_SCENARIO, 1, 0, NULL, 0); /* disarm if nothing */
}

static void scenario_event(struct sim *s, uint64_t kind)
{
	if (kind == 1) { /* the arming timed out */
		if (s->sc_phase == 1) {
			heal_network(s);
			s->sc_phase = 0;
		}
		return;
	}
	if (s->sc_phase == 2) {
		restart_fault_at(s, SIM_FAULT_CRASH, s->sc_b, true);
		if (s->reps[s->sc_b].restart_pending)
			schedule(s, s->now + rng_range(&s->rng, 10 * MS, 40 * MS), EV_RESTART,
				 (uint64_t)s->sc_b, 0, NULL, 0);
		s->sc_phase = 3;
		schedule(s, s->now + 200 * MS, EV_SCENARIO, 2, 0, NULL, 0);
		trace(s, "adversary: stale coordinator %d: crash of %d after its ack", s->sc_a,
		      s->sc_b);
	} else if (s->sc_phase == 3 && kind == 2) {
		s->sc_phase = 4; /* A's data plane reaches D (only) */
		schedule(s, s->now + 400 * MS, EV_SCENARIO, 3, 0, NULL, 0);
	} else if (s->sc_phase == 4 && kind == 3) {
		heal_network(s);
		s->sc_phase = 0;
	}
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
	/* The no-fence bias; TEEMS_SIM_ABD_STALE=1 turns it on without the switch (its positive
	 * control: the same schedules pass with the fence). */
	if (((s->o.unsafe & ABD_UNSAFE_NO_FENCE) || s->stale_bias) &&
	    (s->o.faults & SIM_FAULT_CRASH) && (s->o.faults & SIM_FAULT_PARTITION))
		choices[n++] = SIM_FAULT_STALE_COORDINATOR;
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
		case SIM_FAULT_STALE_COORDINATOR:
			stale_coordinator(s);
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
		if (in->alive && !s->done)
			apoke(s, (int)e->a);
		if (in->alive)
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
	case EV_SCENARIO:
		scenario_event(s, e->a);
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

			if (lc == PAXOS_LC_FRESH)
				lc = 3; /* Paxos fresh, ABD not yet: recovering */

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

/* Reads never go backwards for a client (lincheck_monotonic_reads, by writer attribution:
 * every write writes a unique value). Linearizability implies it; this names it plainly. */
static void check_monotonic(struct sim *s)
{
	struct lincheck_result res;
	char errbuf[TEEMS_ERRBUF_LEN];
	int rc;

	rc = lincheck_monotonic_reads(&s->hist, &res, errbuf);
	if (rc != TEEMS_OK)
		violation(s, "history rejected by the monotonic-reads checker: %s", errbuf);
	else if (res.verdict != LINCHECK_OK)
		violation(s, "monotonic reads: key %.*s: a client's read went backwards\n%s",
			  (int)res.key.len, (const char *)res.key.data,
			  res.explanation ? res.explanation : "");
	lincheck_result_free(&res);
}

/* --unsafe for the ABD engine: names to ABD_UNSAFE_* bits (sim_options.unsafe holds those for
 * this engine); the Paxos control plane gets the matching PAXOS_UNSAFE_* bits where one exists
 * (paxos_unsafe_bits). */
static const struct {
	const char *name;
	unsigned bits;
} abd_unsafe_names[] = {
	{"no-stabilize", ABD_UNSAFE_NO_STABILIZE},
	{"no-fence", ABD_UNSAFE_NO_FENCE},
	{"cft-quorums", ABD_UNSAFE_CFT_QUORUMS},
	{"no-recovery", ABD_UNSAFE_NO_RECOVERY},
	{"no-incarnation-check", ABD_UNSAFE_NO_INCARNATION_CHECK},
};

bool sim_abd_parse_unsafe(const char *name, unsigned *out)
{
	for (size_t i = 0; i < sizeof(abd_unsafe_names) / sizeof(abd_unsafe_names[0]); i++) {
		if (strcmp(name, abd_unsafe_names[i].name) == 0) {
			*out |= abd_unsafe_names[i].bits;
			return true;
		}
	}
	return false;
}

const char *sim_abd_unsafe_names(void)
{
	return "no-stabilize, no-fence, cft-quorums, no-recovery, no-incarnation-check";
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
		if (rc == TEEMS_OK)
			rc = store_vfs_mkdir(rp->vfs, "abd");
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
		if (s->insts[i].p != NULL || s->insts[i].a != NULL || s->insts[i].wal != NULL)
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

int sim_abd_run(const struct sim_options *opt, struct sim_report *report)
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
	s->stale_bias = getenv("TEEMS_SIM_ABD_STALE") != NULL &&
			strcmp(getenv("TEEMS_SIM_ABD_STALE"), "1") == 0;
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
		check_monotonic(s);
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
