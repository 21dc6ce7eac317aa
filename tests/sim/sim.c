/* The deterministic cluster simulator, Paxos engine (sim.h, sim_run; docs/TESTING.md,
 * "Simulator"). The world (events, network, clocks, disks, adversary, clients, checkers) is
 * sim_world.c; this file plugs the RR-Paxos core in as the one that orders client commands:
 * the key-value state machine (src/kv) applies what commits, clients issue GET, SET, CAS and
 * DEL as kv commands through the log (or the leader lease / read index), lease clients use
 * client leases (kv/lease_table.h) through the log, and the checks that are the Paxos engine's
 * own (exactly-once commits, no lost acknowledged write, rounds per op, the lease checkers). */
#include "sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "history.h"
#include "kv/kv.h"
#include "kv/lease_table.h"
#include "sim_world.h"
#include "teems/err.h"

#define T_RESTART (5 * SEC) /* epoch restart: stuck after this long without W_Q fresh peers */
/* The leader lease: several heartbeats long, short enough that the wait it imposes on a new
 * election (and, through T_fence, on recovery) stays small. */
#define T_LEADER_LEASE (400 * MS)
/* An --unsafe name for the adversary (not a core switch): a total crash plus rollbacks. */
#define SIM_UNSAFE_TOTAL_CRASH_ROLLBACK 0x10000u

/* Client leases (docs/TESTING.md, "Leases"): a few lease clients contend for a few names
 * through the log (LEASE.ACQUIRE/RENEW/RELEASE as kv/lease_table.h commands); leaders run the
 * expiry timers and propose EXPIREs. Their requests use request ids with LREQ set. */
#define N_LCLIENTS 3
#define N_LNAMES 2
#define LREQ (1ull << 62)
#define LCLIENT_ID 1000u /* + lease client: their client ids */
#define EXPIRE_CLIENT_ID 2000u
enum { LEV_NEXT = 1, LEV_DELIVER = 2, LEV_REPLY = 3, LEV_TIMEOUT = 4, LEV_RETRY = 5, LEV_LF = 6 };

struct lclient {
	bool busy;
	uint64_t seq; /* of the open op (its request id is LREQ | client << 32 | seq) */
	struct lease_cmd cmd;
	int name;
	uint64_t sent; /* real time the current attempt left the client */
	int replica;   /* of the current attempt */
	int inst;      /* the instance it was proposed at, -1: not yet */
	int hint;      /* replica to try next, -1: random */
	int outcome;   /* -1 until noted */
	uint16_t leader;
	bool have_res;
	struct lease_result res;
	bool holding;
	uint64_t token;
	uint64_t valid_until; /* real time: sent + ttl (1 - rho) of the last ok ACQUIRE/RENEW */
	size_t interval;      /* index of its holder interval of `name` */
	unsigned renews;
};

/* A time a client held a lease, in real time [start, end). */
struct linterval {
	uint64_t start, end, token;
	int client;
};

/* The engine's part of an incarnation (instance.ext). */
struct pinst {
	struct kv *kv;
	struct kv_leases *leases;
	struct lease_timers tm; /* the leader's expiry timers */
	/* Rounds per op (sim_rounds_*): per slot, the ACCEPT rounds (distinct nonces) this
	 * instance sent for it, and the nonce of the last one. */
	uint32_t *rnd_count;
	uint64_t *rnd_nonce;
	size_t cap_rnd;
};

/* The lease-fence fault's schedule (lf_*). */
struct lfence {
	int phase;
	int leader, granter;
	bool starved[MAX_REPLICAS]; /* L's heartbeats to these are lost */
	unsigned runs;		    /* schedules started this run */
	uint64_t gen;		    /* events of an older schedule or phase are ignored */
	uint64_t wait_until;	    /* WAITING: give up then */
};

struct pstate {
	struct pinst x[MAX_INSTANCES]; /* [instance index] */
	/* The highest slot any instance has applied (so committed) so far: a lease read must
	 * reflect at least that (check_lease_read). */
	uint64_t max_applied;
	struct lclient lc[N_LCLIENTS];
	struct linterval *iv[N_LNAMES];
	size_t n_iv[N_LNAMES], cap_iv[N_LNAMES];
	uint64_t expire_seq;
	struct lfence lf;
};

static struct pstate *PS(struct sim *s)
{
	return s->es;
}

static struct pinst *PX(const struct instance *in)
{
	return in->ext;
}

/* ---- rounds per client op (for the rounds table next to the ABD engine's) ----
 * A Paxos op's message rounds are the ACCEPT rounds its slot went through at the leader that
 * answered it: each ACCEPT with a new nonce covering the slot is one round (re-sends with the
 * same nonce are not). A read-index read is one READ_INDEX confirmation round by construction
 * (not measured). Redirects (NOT_LEADER) are client round trips, not counted. */
static void sim_rounds_on_send(struct sim *s, struct instance *ins, const struct msg *m)
{
	struct pinst *in = PX(ins);
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
		nc = sim_xrealloc(s, in->rnd_count, ncap * sizeof(*nc));
		if (nc == NULL)
			return;
		in->rnd_count = nc;
		nn = sim_xrealloc(s, in->rnd_nonce, ncap * sizeof(*nn));
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

static void sim_rounds_on_note(struct sim *s, const struct instance *ins,
			       const struct paxos_note *n, bool write)
{
	const struct pinst *in = PX(ins);
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

/* Exactly once in the log: a client command (one attempt) is chosen in one slot; a command the
 * core declared NOT_LEADER or BUSY is never chosen. */
static void check_exactly_once(struct sim *s, const struct paxos_apply *a)
{
	struct paxos_command cmd;
	size_t off = 0;

	while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
		struct attempt *at;

		if (cmd.request_id >= s->n_attempts)
			continue;
		at = &s->attempts[cmd.request_id];
		if (at->chosen_slot != 0 && at->chosen_slot != a->slot)
			sim_violation(s,
				      "client %d's request %" PRIu64
				      " was committed twice, in slots "
				      "%" PRIu64 " and %" PRIu64,
				      at->client, cmd.request_id, at->chosen_slot, a->slot);
		if (at->outcome == PAXOS_OUTCOME_NOT_LEADER || at->outcome == PAXOS_OUTCOME_BUSY)
			sim_violation(
				s,
				"client %d's request %" PRIu64 " was reported %s but committed "
				"in slot %" PRIu64,
				at->client, cmd.request_id,
				at->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER", a->slot);
		at->chosen_slot = a->slot;
	}
}

static struct lease_time lease_now(struct sim *s, const struct instance *in)
{
	struct paxos_time t = sim_read_clock(s, &in->clk);
	struct lease_time l = {t.lo_ns, t.hi_ns, t.epoch};

	if (s->o.unsafe & PAXOS_UNSAFE_TRUST_HOST_CLOCK)
		return lease_time_from_host(sim_host_clock(s, &in->clk));
	return l;
}

/* One committed lease command at instance idx: the table, the leader's timers, and the result
 * for the lease client whose attempt was proposed here. */
static void apply_lease(struct sim *s, int idx, uint64_t slot, const struct paxos_command *cmd)
{
	struct instance *in = &s->insts[idx];
	struct lease_result res;
	struct lease_cmd dec;
	int rc = kv_leases_apply(PX(in)->leases, cmd->command, cmd->len, &res, &dec);

	if (rc == TEEMS_ENOMEM) {
		s->err = rc;
		s->done = true;
		return;
	}
	if (rc != TEEMS_OK) {
		sim_violation(s, "replica %d: slot %" PRIu64 " holds a lease command it refuses",
			      in->replica, slot);
		return;
	}
	if (lease_timers_applied(&PX(in)->tm, &dec, &res, lease_now(s, in)) != 0) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return;
	}
	if ((cmd->request_id & LREQ) && cmd->client_id >= LCLIENT_ID &&
	    cmd->client_id < LCLIENT_ID + N_LCLIENTS) {
		struct lclient *lc = &PS(s)->lc[cmd->client_id - LCLIENT_ID];

		if (lc->busy &&
		    cmd->request_id == (LREQ | (cmd->client_id - LCLIENT_ID) << 32 | lc->seq) &&
		    lc->inst == idx && !lc->have_res) {
			lc->have_res = true;
			lc->res = res;
		}
	}
}

static void apply_slot(struct sim *s, int idx, const struct paxos_apply *a)
{
	struct instance *in = &s->insts[idx];
	struct paxos_command cmd;
	size_t off = 0;

	if (sim_check_apply(s, in, a))
		check_exactly_once(s, a);
	if (a->slot > PS(s)->max_applied)
		PS(s)->max_applied = a->slot;
	while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
		uint8_t *res = NULL;
		size_t res_len = 0;
		int rc;

		if (kv_lease_is_cmd(cmd.command, cmd.len)) {
			apply_lease(s, idx, a->slot, &cmd);
			if (s->done)
				return;
			continue;
		}
		rc = kv_apply_encoded(PX(in)->kv, cmd.command, cmd.len, &res, &res_len);

		if (rc == TEEMS_ENOMEM) {
			s->err = rc;
			s->done = true;
			return;
		}
		if (rc != TEEMS_OK) {
			sim_violation(s, "replica %d: slot %" PRIu64 " holds a command kv refuses",
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

/* A read-index read the core answered: run it on this replica's state after the ready's
 * applies, which must have reached the read index. */
static bool serve_read(struct sim *s, struct instance *in, const struct paxos_note *n)
{
	struct attempt *at = &s->attempts[n->request_id];
	struct client *cl = &s->clients[at->client];
	struct kv_result kr;
	size_t len;

	if (in->applied < n->slot) {
		sim_violation(
			s, "replica %d served a read at index %" PRIu64 " having applied %" PRIu64,
			in->replica, n->slot, in->applied);
		return false;
	}
	kv_get(PX(in)->kv, cl->key, 3, &kr);
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

/* ---- leader leases (DESIGN.md section 8; docs/TESTING.md, "Leases") ----
 * Stale lease reads: a read the leader answers from its lease, in the step it arrives, must
 * see every slot committed before it arrived; every slot applied anywhere so far was. */
static void check_lease_read(struct sim *s, struct instance *in)
{
	s->rep->lease_reads++;
	sim_trace(s, "replica %d answers a read from its lease (applied %" PRIu64 ")", in->replica,
		  in->applied);
	if (in->applied >= PS(s)->max_applied || s->deferred[DEFERRED_STALE_LEASE_READ][0])
		return;
	snprintf(s->deferred[DEFERRED_STALE_LEASE_READ], sizeof(s->deferred[0]),
		 "stale lease read (not linearizable): replica %d answered from its lease at "
		 "t=%.6fs with slots up to %" PRIu64 " applied, slot %" PRIu64
		 " was committed before",
		 in->replica, (double)s->now / 1e9, in->applied, PS(s)->max_applied);
}

/* Lease exclusivity against real time: after every step of a leader that holds its lease,
 * no other live instance leading another ballot may hold one at this same real time (each
 * judged by its own clock read now: the trusted one, or the host's under trust-host-clock). */
static void check_lease_exclusive(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct msg_ballot b;

	if (paxos_role(in->p) != PAXOS_LEADER || !paxos_lease_held(in->p) ||
	    s->deferred[DEFERRED_LEASE_EXCLUSIVITY][0])
		return;
	b = paxos_promised(in->p);
	for (int k = 0; k < s->n_live; k++) {
		struct instance *o = &s->insts[s->live[k]];
		struct paxos_time t;
		struct msg_ballot ob;

		if (s->live[k] == idx || !o->alive || paxos_role(o->p) != PAXOS_LEADER)
			continue;
		ob = paxos_promised(o->p);
		if (msg_ballot_cmp(&ob, &b) == 0)
			continue;
		t = sim_read_clock(s, &o->clk);
		if (!paxos_lease_read_ok(o->p, &t, sim_host_clock(s, &o->clk)))
			continue;
		snprintf(s->deferred[DEFERRED_LEASE_EXCLUSIVITY], sizeof(s->deferred[0]),
			 "lease exclusivity: at t=%.6fs replica %d (ballot %" PRIu64
			 ",%u) and replica %d (ballot %" PRIu64 ",%u) both hold a leader lease",
			 (double)s->now / 1e9, in->replica, b.round, b.replica, o->replica,
			 ob.round, ob.replica);
		return;
	}
}

/* ---- the lease-fence fault (docs/TESTING.md, "The lease-fence fault") ----
 * A scripted schedule the random adversary would almost never build: the restarted
 * incarnation of a replica that granted the leader its lease must not promise a new ballot
 * while that forgotten grant is still counted (T_fence includes T_lease; docs/PROTOCOL.md,
 * "Why the fence is needed for leases"). Within the bounds (one crash, one replica cut off),
 * once chosen: partitions and loss end and the other faults wait (at most T_LF_WAIT) until
 * every replica can vote, M_R has room for one crash and the leader L holds its lease; then
 *   1. starve: the leader L's heartbeats to F other replicas (the "starved" side) are lost
 *      for 60-85% of T_lease, so their grants run out while L's lease rests on the W_Q
 *      others, among them the granter G;
 *   2. G crashes right after acknowledging a heartbeat with a grant, and restarts at once;
 *   3. G' registers (the starved side still accepts L's ACCEPTs); once it is registered (and,
 *      without the fence, recovered: FENCING or FRESH)
 *   4. L is cut off from every replica for T_lease + T_op (its clients still reach it).
 * With the fence G' neither votes nor grants for T_fence, so no one is elected before L's
 * lease ended. Without it (--unsafe no-fence) G' and the starved side (W_Q of them where
 * N = 2F + 1) elect a new leader whose writes commit while L still answers lease reads: a
 * stale lease read. The other faults wait while the schedule runs. */
#define SIM_FAULT_LEASE_FENCE 0x100u
#define SIM_FAULT_LF_HOLD 0x200u /* the schedule runs: no other fault */
#define LF_MAX_PER_RUN 3
#define T_LF_WAIT (3 * SEC) /* for a whole cluster with a leased leader, other faults held */
enum { LF_IDLE, LF_WAITING, LF_STARVE, LF_ARMED, LF_CRASHING, LF_REGISTERING, LF_CUT };

static void lf_event(struct sim *s, int what, uint64_t at)
{
	struct lfence *lf = &PS(s)->lf;

	sim_schedule(s, at, EV_ENGINE, LEV_LF, ((uint64_t)lf->gen << 8) | (uint64_t)what, NULL, 0);
}

static void lf_stop(struct sim *s, const char *why)
{
	struct lfence *lf = &PS(s)->lf;

	if (lf->phase == LF_IDLE)
		return;
	if (lf->phase == LF_CUT) {
		for (unsigned x = 0; x < s->o.n; x++)
			s->cut[lf->leader][x] = s->cut[x][lf->leader] = false;
		s->partitioned = false;
	}
	sim_trace(s, "adversary: lease-fence %s", why);
	lf->phase = LF_IDLE;
	lf->gen++;
}

/* Starts the schedule if the cluster is whole and its leader holds its lease (the adversary
 * polls this every step while WAITING, other faults held, for at most T_LF_WAIT). */
static void lf_try_start(struct sim *s)
{
	struct lfence *lf = &PS(s)->lf;
	int l = sim_leader_replica(s), cand[MAX_REPLICAS], n = 0;

	if (l < 0 || sim_unavailable_count(s) > 0 || sim_compromised_count(s) + 1 > s->o.m_r ||
	    s->reps[l].inst < 0 || !paxos_lease_held(s->insts[s->reps[l].inst].p)) {
		if (s->now >= lf->wait_until)
			lf_stop(s, "gave up: the cluster never was whole with a leased leader");
		return;
	}
	for (unsigned r = 0; r < s->o.n; r++)
		if ((int)r != l)
			cand[n++] = (int)r;
	memset(lf->starved, 0, sizeof(lf->starved));
	lf->granter = cand[rng_below(&s->rng, (uint64_t)n)];
	for (unsigned k = 0; k < s->o.f; k++) {
		int i = (int)rng_below(&s->rng, (uint64_t)n);

		while (cand[i] == lf->granter || lf->starved[cand[i]])
			i = (i + 1) % n;
		lf->starved[cand[i]] = true;
	}
	lf->leader = l;
	lf->phase = LF_STARVE;
	lf->gen++;
	sim_trace(s,
		  "adversary: lease-fence: leader %d, granter %d, heartbeats to %u replicas lost",
		  l, lf->granter, s->o.f);
	lf_event(s, LF_ARMED,
		 s->now + rng_range(&s->rng, T_LEADER_LEASE * 60 / 100, T_LEADER_LEASE * 85 / 100));
}

static void lf_on_event(struct sim *s, uint64_t b)
{
	struct lfence *lf = &PS(s)->lf;
	int what = (int)(b & 0xff);
	struct replica *g = &s->reps[lf->granter];

	if ((b >> 8) != lf->gen || lf->phase == LF_IDLE || s->healed)
		return;
	switch (what) {
	case LF_ARMED: /* crash G after its next grant (on_send), within T_op */
		if (sim_leader_replica(s) != lf->leader) {
			lf_stop(s, "abandoned: the leader changed");
			return;
		}
		lf->phase = LF_ARMED;
		lf->gen++;
		lf_event(s, LF_IDLE, s->now + T_OP);
		return;
	case LF_CRASHING:
		sim_restart_fault_at(s, SIM_FAULT_CRASH, lf->granter, false);
		if (!g->restart_pending) {
			lf_stop(s, "abandoned: the crash is outside the bounds");
			return;
		}
		/* the host restarts it at once (the crash's own restart finds it running) */
		sim_schedule(s, s->now + rng_range(&s->rng, 500 * US, 3 * MS), EV_RESTART,
			     (uint64_t)lf->granter, 0, NULL, 0);
		lf->phase = LF_REGISTERING;
		lf->gen++;
		lf_event(s, LF_IDLE, s->now + T_OP);
		return;
	case LF_IDLE: /* a deadline */
		lf_stop(s, lf->phase == LF_CUT ? "over: the leader's links heal" : "timed out");
		return;
	}
}

/* Phase 2: G's heartbeat acknowledgement carrying a grant leaves: crash it right after. */
static void lf_on_send(struct sim *s, const struct instance *in, const struct msg *m)
{
	struct lfence *lf = &PS(s)->lf;

	if (lf->phase != LF_ARMED || in->replica != lf->granter || in->fork ||
	    m->type != MSG_HEARTBEAT_ACK || !m->heartbeat_ack.lease_ns)
		return;
	lf->phase = LF_CRASHING;
	lf->gen++;
	lf_event(s, LF_CRASHING, s->now + 1 * US);
}

/* Phases 3-4: G' registered (fencing, or without the fence already fresh): cut L off. */
static void lf_after_step(struct sim *s, int idx)
{
	struct lfence *lf = &PS(s)->lf;
	struct instance *in = &s->insts[idx];
	enum paxos_lifecycle lc;

	if (lf->phase != LF_REGISTERING || in->replica != lf->granter || in->fork || !in->restarted)
		return;
	lc = paxos_lifecycle(in->p);
	if (lc != PAXOS_LC_FENCING && lc != PAXOS_LC_FRESH)
		return;
	for (unsigned x = 0; x < s->o.n; x++)
		if ((int)x != lf->leader)
			s->cut[lf->leader][x] = s->cut[x][lf->leader] = true;
	s->partitioned = true;
	lf->phase = LF_CUT;
	lf->gen++;
	sim_trace(s, "adversary: lease-fence: replica %d %s; leader %d cut off", lf->granter,
		  lc == PAXOS_LC_FRESH ? "fresh" : "fencing", lf->leader);
	lf_event(s, LF_IDLE, s->now + T_LEADER_LEASE + T_OP);
}

/* Phase 1 (until the cut): L's heartbeats (COMMITs with a nonce) to the starved side are lost;
 * its ACCEPTs pass. */
static bool lf_net_pass(struct sim *s, int from, int to, const struct msg *m)
{
	struct lfence *lf = &PS(s)->lf;

	if (lf->phase >= LF_STARVE && lf->phase < LF_CUT && from == lf->leader && lf->starved[to] &&
	    m->type == MSG_COMMIT && m->nonce)
		return false;
	return sim_link_up(s, from, to);
}

static void lf_choices(struct sim *s, unsigned *choices, unsigned *n)
{
	if (PS(s)->lf.phase == LF_WAITING)
		lf_try_start(s);
	if (PS(s)->lf.phase != LF_IDLE) {
		choices[0] = SIM_FAULT_LF_HOLD;
		*n = 1;
		return;
	}
	if ((s->o.faults & SIM_FAULT_CRASH) && (s->o.faults & SIM_FAULT_PARTITION) && s->o.m_r > 0)
		choices[(*n)++] = SIM_FAULT_LEASE_FENCE;
}

/* Chosen: end partitions and loss, hold the other faults, start once the cluster is whole. */
static void lf_act(struct sim *s, unsigned fault)
{
	struct lfence *lf = &PS(s)->lf;

	if (fault != SIM_FAULT_LEASE_FENCE || lf->runs >= LF_MAX_PER_RUN)
		return;
	memset(s->cut, 0, sizeof(s->cut));
	s->partitioned = false;
	s->loss_pct = s->dup_pct = 0;
	lf->runs++;
	lf->phase = LF_WAITING;
	lf->gen++;
	lf->wait_until = s->now + T_LF_WAIT;
	sim_trace(s, "adversary: lease-fence: network healed, waiting for a whole cluster");
	lf_try_start(s);
}

static void lf_on_heal(struct sim *s)
{
	struct lfence *lf = &PS(s)->lf;

	if (lf->phase != LF_IDLE) {
		lf->phase = LF_IDLE; /* the world clears every cut */
		lf->gen++;
	}
}

static void on_send(struct sim *s, struct instance *in, const struct msg *m)
{
	sim_rounds_on_send(s, in, m);
	lf_on_send(s, in, m);
}

static void lease_timers_work(struct sim *s, int idx);

static void after_step(struct sim *s, int idx)
{
	check_lease_exclusive(s, idx);
	lease_timers_work(s, idx);
	lf_after_step(s, idx);
}

/* ---- client leases (docs/TESTING.md, "Leases") ---- */

static uint64_t lreq(int c, uint64_t seq)
{
	return LREQ | (uint64_t)c << 32 | seq;
}

static void lclient_event(struct sim *s, uint64_t at, int kind, int c, uint64_t seq)
{
	sim_schedule(s, at, EV_ENGINE, (uint64_t)kind, (uint64_t)c | seq << 8, NULL, 0);
}

static void lease_note(struct sim *s, int idx, const struct paxos_note *n)
{
	int c = (int)((n->request_id >> 32) & 0xffff);
	struct lclient *lc;

	if (n->client_id == EXPIRE_CLIENT_ID) {
		/* the leader's EXPIRE: proposed again unless it went into the log */
		if (n->outcome != PAXOS_OUTCOME_APPLIED && PX(&s->insts[idx]) != NULL)
			lease_timers_retry(&PX(&s->insts[idx])->tm);
		return;
	}
	if (c >= N_LCLIENTS)
		return;
	lc = &PS(s)->lc[c];
	if (!lc->busy || n->request_id != lreq(c, lc->seq) || lc->inst != idx || lc->outcome >= 0)
		return;
	lc->outcome = (int)n->outcome;
	lc->leader = n->leader;
	lclient_event(s, s->now + rng_range(&s->rng, 50 * US, 1 * MS), LEV_REPLY, c, lc->seq);
}

/* Lease exclusivity against real time: no two holders (tokens) of one name at once, each
 * holding from when its ok reply arrived until its send time + ttl (1 - rho) (its own clock is
 * real time) or until it released. Checked whenever an interval begins or grows. */
static void lease_check_overlap(struct sim *s, int name, size_t k)
{
	struct pstate *ps = PS(s);
	const struct linterval *x = &ps->iv[name][k];

	if (s->deferred[DEFERRED_CLIENT_LEASE][0])
		return;
	for (size_t i = 0; i < ps->n_iv[name]; i++) {
		const struct linterval *y = &ps->iv[name][i];

		if (y->token == x->token || y->start >= x->end || x->start >= y->end)
			continue;
		snprintf(s->deferred[DEFERRED_CLIENT_LEASE], sizeof(s->deferred[0]),
			 "lease exclusivity: client lease L%d held by client %d (token %" PRIu64
			 ") on [%.6fs, %.6fs) and by client %d (token %" PRIu64
			 ") on [%.6fs, %.6fs)",
			 name, y->client, y->token, (double)y->start / 1e9, (double)y->end / 1e9,
			 x->client, x->token, (double)x->start / 1e9, (double)x->end / 1e9);
		return;
	}
}

static void lclient_hold(struct sim *s, int c, uint64_t end)
{
	struct pstate *ps = PS(s);
	struct lclient *lc = &ps->lc[c];
	int nm = lc->name;
	struct linterval *iv;

	if (end <= s->now)
		return; /* granted, but already over at the client: never used */
	if (lc->holding && lc->interval < ps->n_iv[nm] &&
	    ps->iv[nm][lc->interval].token == lc->token && ps->iv[nm][lc->interval].end > s->now) {
		iv = &ps->iv[nm][lc->interval];
		if (end > iv->end)
			iv->end = end;
		lease_check_overlap(s, nm, lc->interval);
		return;
	}
	if (ps->n_iv[nm] == ps->cap_iv[nm]) {
		size_t ncap = ps->cap_iv[nm] ? ps->cap_iv[nm] * 2 : 64;
		struct linterval *v = sim_xrealloc(s, ps->iv[nm], ncap * sizeof(*v));

		if (v == NULL)
			return;
		ps->iv[nm] = v;
		ps->cap_iv[nm] = ncap;
	}
	lc->interval = ps->n_iv[nm]++;
	iv = &ps->iv[nm][lc->interval];
	iv->start = s->now;
	iv->end = end;
	iv->token = lc->token;
	iv->client = c;
	lease_check_overlap(s, nm, lc->interval);
}

/* The client stops using its lease now (before it sends RELEASE, or told it is stale). */
static void lclient_drop(struct sim *s, int c)
{
	struct pstate *ps = PS(s);
	struct lclient *lc = &ps->lc[c];

	if (lc->holding && lc->interval < ps->n_iv[lc->name] &&
	    ps->iv[lc->name][lc->interval].token == lc->token &&
	    ps->iv[lc->name][lc->interval].end > s->now)
		ps->iv[lc->name][lc->interval].end = s->now;
	lc->holding = false;
}

static void lclient_attempt(struct sim *s, int c)
{
	struct lclient *lc = &PS(s)->lc[c];

	lc->replica = lc->hint >= 0 ? lc->hint : (int)rng_below(&s->rng, s->o.n);
	lc->hint = -1;
	lc->inst = -1;
	lc->outcome = -1;
	lc->have_res = false;
	lc->sent = s->now; /* the holder counts from here */
	lclient_event(s, s->now + rng_range(&s->rng, 50 * US, 1 * MS), LEV_DELIVER, c, lc->seq);
}

static void lclient_start(struct sim *s, int c, enum lease_cmd_type type)
{
	struct lclient *lc = &PS(s)->lc[c];
	static const char *const names[N_LNAMES] = {"L0", "L1"};

	lc->busy = true;
	lc->seq++;
	memset(&lc->cmd, 0, sizeof(lc->cmd));
	lc->cmd.type = type;
	if (type == LEASE_CMD_ACQUIRE) {
		lc->name = (int)rng_below(&s->rng, N_LNAMES);
		lc->cmd.ttl_ms = rng_range(&s->rng, 150, 1500);
		lc->renews = 0;
	} else {
		lc->cmd.token = lc->token;
	}
	lc->cmd.name = names[lc->name];
	lc->cmd.name_len = 2;
	if (type == LEASE_CMD_RELEASE)
		lclient_drop(s, c); /* stops using it before the release leaves */
	lclient_event(s, s->now + T_CLIENT_TIMEOUT, LEV_TIMEOUT, c, lc->seq);
	lclient_attempt(s, c);
}

/* The client's next op: renew or release what it holds, else acquire. */
static void lclient_next(struct sim *s, int c)
{
	struct lclient *lc = &PS(s)->lc[c];

	if (lc->busy || s->healed || s->done)
		return;
	if (lc->holding && s->now < lc->valid_until) {
		lclient_start(s, c,
			      lc->renews < 3 && rng_pct(&s->rng, 70) ? LEASE_CMD_RENEW
								     : LEASE_CMD_RELEASE);
		return;
	}
	lc->holding = false;
	lclient_start(s, c, LEASE_CMD_ACQUIRE);
}

static void lclient_done(struct sim *s, int c, uint64_t delay)
{
	struct lclient *lc = &PS(s)->lc[c];

	lc->busy = false;
	lclient_event(s, s->now + delay, LEV_NEXT, c, lc->seq);
}

static void lclient_deliver(struct sim *s, int c)
{
	struct lclient *lc = &PS(s)->lc[c];
	int idx = s->reps[lc->replica].inst;
	struct paxos_input pi;
	struct lease_cmd cmd = lc->cmd;
	uint8_t buf[KV_LEASE_CMD_FIXED + LEASE_NAME_MAX];
	size_t len;

	if (idx < 0 || !s->insts[idx].alive) {
		/* refused connection: not applied, try elsewhere */
		lclient_event(s, s->now + rng_range(&s->rng, 1 * MS, 20 * MS), LEV_REPLY, c,
			      lc->seq);
		lc->outcome = PAXOS_OUTCOME_NOT_LEADER;
		lc->leader = MSG_NO_REPLICA;
		return;
	}
	if (s->o.unsafe & PAXOS_UNSAFE_TRUST_HOST_CLOCK)
		cmd.unsafe_host_ns = sim_host_clock(s, &s->insts[idx].clk); /* S12 */
	if (kv_lease_cmd_encode(&cmd, buf, sizeof(buf), &len) != TEEMS_OK) {
		sim_violation(s, "lease client %d: kv_lease_cmd_encode failed", c);
		return;
	}
	lc->inst = idx;
	memset(&pi, 0, sizeof(pi));
	pi.type = PAXOS_IN_PROPOSE;
	pi.propose.client_id = LCLIENT_ID + (uint64_t)c;
	pi.propose.request_id = lreq(c, lc->seq);
	pi.propose.command = buf;
	pi.propose.len = (uint32_t)len;
	sim_step(s, idx, &pi);
}

static void lclient_reply(struct sim *s, int c)
{
	struct lclient *lc = &PS(s)->lc[c];
	uint64_t span;

	switch (lc->outcome) {
	case PAXOS_OUTCOME_APPLIED:
		if (!lc->have_res) {
			sim_violation(s,
				      "replica %d reported APPLIED for a lease command it did "
				      "not apply",
				      s->insts[lc->inst].replica);
			return;
		}
		s->rep->lease_ops++;
		span = lease_holder_span_ns(teems_lease_ms_to_ns(lc->res.ttl_ms),
					    (uint32_t)(RHO * 1e6));
		if (lc->res.status == LEASE_OK &&
		    (lc->cmd.type == LEASE_CMD_ACQUIRE || lc->cmd.type == LEASE_CMD_RENEW)) {
			if (lc->cmd.type == LEASE_CMD_ACQUIRE) {
				lc->holding = false;
				lc->token = lc->res.token;
			}
			lclient_hold(s, c, lc->sent + span);
			lc->holding = true;
			if (lc->sent + span > lc->valid_until || lc->cmd.type == LEASE_CMD_ACQUIRE)
				lc->valid_until = lc->sent + span;
			if (lc->cmd.type == LEASE_CMD_RENEW)
				lc->renews++;
			lclient_done(s, c,
				     (uint64_t)((double)span * (0.2 + 0.5 * rng_unit(&s->rng))));
			return;
		}
		if (lc->res.status == LEASE_STALE)
			lclient_drop(s, c); /* expired or superseded: the token is fenced out */
		if (lc->cmd.type == LEASE_CMD_RELEASE)
			lc->holding = false;
		lclient_done(s, c, rng_range(&s->rng, 20 * MS, 300 * MS));
		return;
	case PAXOS_OUTCOME_NOT_LEADER:
	case PAXOS_OUTCOME_BUSY:
		/* never proposed: the same op again (at the hinted leader), a little later */
		if (lc->leader != MSG_NO_REPLICA && lc->leader < s->o.n)
			lc->hint = lc->leader;
		lclient_event(s,
			      s->now + (lc->outcome == PAXOS_OUTCOME_BUSY
						? rng_range(&s->rng, 10 * MS, 50 * MS)
						: rng_range(&s->rng, 1 * MS, 20 * MS)),
			      LEV_RETRY, c, lc->seq);
		lc->outcome = -2; /* waiting to retry: no reply is expected */
		return;
	default: /* UNKNOWN: an ACQUIRE may have happened, but unknown leases are not used */
		if (lc->cmd.type == LEASE_CMD_RELEASE)
			lc->holding = false;
		lclient_done(s, c, rng_range(&s->rng, 20 * MS, 300 * MS));
		return;
	}
}

static void on_engine_event(struct sim *s, const struct event *e)
{
	int c = (int)(e->b & 0xff);
	uint64_t seq = e->b >> 8;
	struct lclient *lc;

	if (e->a == LEV_LF) {
		if (!s->done)
			lf_on_event(s, e->b);
		return;
	}
	if (c >= N_LCLIENTS || s->done)
		return;
	lc = &PS(s)->lc[c];
	switch ((int)e->a) {
	case LEV_NEXT:
		if (seq == lc->seq)
			lclient_next(s, c);
		return;
	case LEV_DELIVER:
		if (lc->busy && seq == lc->seq) {
			if (s->now < s->reps[lc->replica].paused_until) {
				lclient_event(s, s->reps[lc->replica].paused_until, LEV_DELIVER, c,
					      seq);
				return;
			}
			lclient_deliver(s, c);
		}
		return;
	case LEV_REPLY:
		if (lc->busy && seq == lc->seq && lc->outcome >= 0)
			lclient_reply(s, c);
		return;
	case LEV_RETRY:
		if (lc->busy && seq == lc->seq && lc->outcome == -2)
			lclient_attempt(s, c);
		return;
	case LEV_TIMEOUT:
		if (lc->busy && seq == lc->seq) {
			lc->outcome = PAXOS_OUTCOME_UNKNOWN;
			lclient_reply(s, c);
		}
		return;
	}
}

static void engine_init(struct sim *s)
{
	for (int c = 0; c < N_LCLIENTS; c++) {
		PS(s)->lc[c].hint = -1;
		lclient_event(s, s->now + rng_range(&s->rng, 100 * MS, 600 * MS), LEV_NEXT, c, 0);
	}
}

/* The leader's expiry timers: in office while it leads; due expiries are proposed. */
static void lease_timers_work(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct pinst *x = PX(in);
	struct lease_expiry due[8];
	size_t n;

	if (x == NULL || !in->alive)
		return;
	if (paxos_role(in->p) != PAXOS_LEADER) {
		if (x->tm.in_office)
			lease_timers_step_down(&x->tm);
		return;
	}
	if (!x->tm.in_office &&
	    lease_timers_take_office(&x->tm, kv_leases_table(x->leases), lease_now(s, in)) != 0) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return;
	}
	if (x->tm.n == 0)
		return; /* nothing to expire (the common case) */
	n = lease_timers_due(&x->tm, lease_now(s, in), due, 8);
	/* encode them all first: a step may re-arm or drop timers (due[] points into them) */
	uint8_t buf[8][KV_LEASE_CMD_FIXED + LEASE_NAME_MAX];
	size_t lens[8];

	for (size_t i = 0; i < n; i++) {
		struct lease_cmd cmd = {.type = LEASE_CMD_EXPIRE,
					.name = due[i].name,
					.name_len = due[i].name_len,
					.generation = due[i].generation};

		if (kv_lease_cmd_encode(&cmd, buf[i], sizeof(buf[i]), &lens[i]) != TEEMS_OK)
			lens[i] = 0;
	}
	for (size_t i = 0; i < n && in->alive && !s->done; i++) {
		struct paxos_input pi;

		if (!lens[i])
			continue;
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_PROPOSE;
		pi.propose.client_id = EXPIRE_CLIENT_ID;
		pi.propose.request_id = LREQ | 0xffffull << 32 | ++PS(s)->expire_seq;
		pi.propose.command = buf[i];
		pi.propose.len = (uint32_t)lens[i];
		sim_step(s, idx, &pi);
	}
}

/* The ready's notes: client outcomes (and read-index reads to serve). */
static bool take_notes(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct paxos_ready *r = &in->r;

	for (size_t k = 0; k < r->n_notes && !s->done; k++) {
		const struct paxos_note *n = &r->notes[k];

		if (n->request_id & LREQ) {
			lease_note(s, idx, n);
			continue;
		}
		if (n->request_id >= s->n_attempts || s->attempts[n->request_id].inst != idx)
			continue;
		if (n->outcome == PAXOS_OUTCOME_READ && n->lease)
			check_lease_read(s, in);
		if (n->outcome == PAXOS_OUTCOME_READ && !serve_read(s, in, n))
			return false;
		sim_rounds_on_note(s, in, n, /* rounds per client op */
				   s->clients[s->attempts[n->request_id].client].cmd.op != KV_GET);
		s->attempts[n->request_id].outcome = (int)n->outcome;
		s->attempts[n->request_id].leader = n->leader;
		if ((n->outcome == PAXOS_OUTCOME_NOT_LEADER || n->outcome == PAXOS_OUTCOME_BUSY) &&
		    s->attempts[n->request_id].chosen_slot != 0)
			sim_violation(s,
				      "request %" PRIu64
				      " reported %s after it was committed in slot %" PRIu64,
				      n->request_id,
				      n->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER",
				      s->attempts[n->request_id].chosen_slot);
		sim_client_reply_later(s, n->request_id);
	}
	return true;
}

static unsigned paxos_unsafe(unsigned unsafe)
{
	return unsafe & ~SIM_UNSAFE_TOTAL_CRASH_ROLLBACK;
}

static void paxos_config(struct sim *s, struct paxos_config *cfg)
{
	(void)s;
	cfg->t_restart_ns = T_RESTART;
	cfg->t_lease_ns = T_LEADER_LEASE;
}

/* The state machine's bytes in a snapshot: u64 kv_len | kv_snapshot | the lease table
 * (kv_leases_serialize). */
static int state_snapshot(const struct pinst *x, uint8_t **out, size_t *len)
{
	uint8_t *kvs = NULL, *ls = NULL, *b;
	size_t kl = 0, ll = 0;
	int rc = kv_snapshot(x->kv, &kvs, &kl);

	if (rc == TEEMS_OK)
		rc = kv_leases_serialize(x->leases, &ls, &ll);
	if (rc == TEEMS_OK && (b = teems_malloc(8 + kl + ll)) == NULL)
		rc = TEEMS_ENOMEM;
	if (rc == TEEMS_OK) {
		for (int i = 0; i < 8; i++)
			b[i] = (uint8_t)((uint64_t)kl >> (8 * i));
		memcpy(b + 8, kvs, kl);
		memcpy(b + 8 + kl, ls, ll);
		*out = b;
		*len = 8 + kl + ll;
	}
	teems_free(kvs);
	teems_free(ls);
	return rc;
}

static int state_restore(struct pinst *x, const uint8_t *b, size_t len)
{
	uint64_t kl = 0;
	int rc;

	if (len < 8)
		return TEEMS_ECORRUPT;
	for (int i = 0; i < 8; i++)
		kl |= (uint64_t)b[i] << (8 * i);
	if (kl > len - 8)
		return TEEMS_ECORRUPT;
	rc = kv_restore(x->kv, b + 8, (size_t)kl);
	if (rc == TEEMS_OK)
		rc = kv_leases_restore(x->leases, b + 8 + kl, len - 8 - (size_t)kl);
	return rc;
}

static int inst_open(struct sim *s, int idx, struct store_wal_opts *wo, uint64_t paxos_records,
		     char *records, size_t len)
{
	struct instance *in = &s->insts[idx];
	struct pinst *x = &((struct pstate *)s->es)->x[idx];

	int rc;

	memset(x, 0, sizeof(*x));
	in->ext = x;
	lease_timers_init(&x->tm, (uint32_t)(RHO * 1e6),
			  (s->o.unsafe & PAXOS_UNSAFE_TRUST_HOST_CLOCK) != 0);
	rc = kv_new(&x->kv);
	if (rc == TEEMS_OK)
		rc = kv_leases_new(&x->leases);
	if (rc != TEEMS_OK || in->restore_state == NULL)
		return rc;
	/* Restarted from a snapshot: its state machine, then the slots after it. */
	rc = state_restore(x, in->restore_state, in->restore_state_len);
	if (rc == TEEMS_ENOMEM)
		return rc;
	if (rc != TEEMS_OK) {
		sim_violation(s,
			      "replica %d: kv refuses the state of its snapshot of slot %" PRIu64,
			      in->replica, in->restore_slot);
		return 1;
	}
	return TEEMS_OK;
}

/* ---- snapshots (paxos.h "Snapshots and compaction") ---- */

static void install_snapshot(struct sim *s, int idx, const struct paxos_snapshot_out *snap)
{
	struct instance *in = &s->insts[idx];
	int rc = state_restore(PX(in), snap->state, snap->state_len);

	if (rc == TEEMS_ENOMEM) {
		s->err = rc;
		s->done = true;
	} else if (rc != TEEMS_OK) {
		sim_violation(s,
			      "replica %d: kv refuses the state of the snapshot of slot %" PRIu64,
			      in->replica, snap->slot);
	}
}

/* Every snap_every applied slots, between two steps: serialize the kv, hand it to the core
 * (which compacts its log), persist what it returns. */
static void maybe_snapshot(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	uint8_t *state = NULL;
	const uint8_t *blob;
	size_t len = 0, blob_len;
	int rc;

	if (!s->snap_every || in->applied < paxos_snapshot_index(in->p) + s->snap_every)
		return;
	rc = state_snapshot(PX(in), &state, &len);
	if (rc == TEEMS_OK) {
		sim_check_state(s, in, in->applied, state, len);
		rc = paxos_snapshot_taken(in->p, in->applied, state, len, &blob, &blob_len);
	}
	teems_free(state);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	sim_snapshot_persist(s, idx, blob, blob_len, in->applied);
}

static void inst_free(struct sim *s, struct instance *in)
{
	struct pinst *x = PX(in);

	if (x == NULL)
		return;
	free(x->rnd_count); /* rounds per client op */
	free(x->rnd_nonce);
	x->rnd_count = NULL;
	x->rnd_nonce = NULL;
	x->cap_rnd = 0;
	kv_free(x->kv);
	x->kv = NULL;
	kv_leases_free(x->leases);
	x->leases = NULL;
	lease_timers_free(&x->tm);
}

/* ---- clients ---- */

static bool client_op(struct sim *s, int c, uint64_t r, int n, struct history_op *op)
{
	struct client *cl = &s->clients[c];
	unsigned k = 10u * (unsigned)(cl->key[1] - '0') + (unsigned)(cl->key[2] - '0');

	memset(&cl->cmd, 0, sizeof(cl->cmd));
	cl->cmd.key = cl->key;
	cl->cmd.key_len = 3;
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
		sim_violation(s, "client %d: kv_cmd_encode failed", c);
		return false;
	}
	op->type = cl->cmd.op == KV_GET	  ? HISTORY_GET
		   : cl->cmd.op == KV_SET ? HISTORY_SET
		   : cl->cmd.op == KV_CAS ? HISTORY_CAS
					  : HISTORY_DEL;
	if (cl->cmd.value_len || cl->cmd.op == KV_SET || cl->cmd.op == KV_CAS) {
		op->value.data = cl->value;
		op->value.len = cl->cmd.value_len;
	}
	op->expected_version = cl->cmd.expected_version;
	return true;
}

static void reply(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct history_result hr;
	struct kv_result kr;

	switch ((enum paxos_outcome)at->outcome) {
	case PAXOS_OUTCOME_READ:
	case PAXOS_OUTCOME_APPLIED:
		if (!at->have_result || at->result == NULL ||
		    kv_result_decode(at->result, at->result_len, &kr) != TEEMS_OK) {
			sim_violation(s, "replica %d reported APPLIED without applying the command",
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
		sim_complete_op(s, at->client, HISTORY_OK, &hr);
		return;
	case PAXOS_OUTCOME_UNKNOWN:
		sim_complete_op(s, at->client, HISTORY_UNKNOWN, NULL);
		return;
	case PAXOS_OUTCOME_NOT_LEADER:
	case PAXOS_OUTCOME_BUSY:
		/* Definitely not applied: the same op tries again (the history sees one op). */
		if (at->outcome == PAXOS_OUTCOME_NOT_LEADER && at->leader != MSG_NO_REPLICA &&
		    at->leader < s->o.n && at->leader != s->insts[at->inst].replica)
			cl->hint = at->leader;
		sim_schedule(s,
			     s->now + (at->outcome == PAXOS_OUTCOME_BUSY
					       ? rng_range(&s->rng, 10 * MS, 50 * MS)
					       : rng_range(&s->rng, 1 * MS, 20 * MS)),
			     EV_RETRY, (uint64_t)at->client, a, NULL, 0);
		return;
	default:
		/* An outcome of a kind of request the simulator never makes (the optimized
		 * read's, for now). */
		sim_violation(s, "replica %d answered client %d with unexpected outcome %d",
			      s->insts[at->inst].replica, at->client, at->outcome);
		return;
	}
}

static void propose(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct paxos_input pi;

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
			sim_client_reply_later(s, a);
		return;
	}
	if ((s->o.reads == SIM_READS_INDEX ||
	     (s->o.reads == SIM_READS_MIXED && rng_pct(&s->rng, 50))) &&
	    cl->cmd.op == KV_GET && !cl->final_reader) {
		/* The core's read path (paxos.h PAXOS_IN_READ: the leader lease, else the read
		 * index) instead of the log. */
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_READ;
		pi.read.client_id = (uint64_t)at->client + 1;
		pi.read.request_id = a;
	}
	sim_step(s, at->inst, &pi);
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

		sim_encode_key(key, k);
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
			sim_violation(s,
				      "lost acknowledged write: key k%02u: client %" PRIu64
				      " op %" PRIu64 " was acknowledged with version %" PRIu64
				      ", the final read after the heal returns version %" PRIu64,
				      k, ack_op->client, ack_op->op_id, acked, final);
	}
}

static void fini(struct sim *s)
{
	for (int k = 0; k < N_LNAMES; k++) {
		free(PS(s)->iv[k]);
		PS(s)->iv[k] = NULL;
		PS(s)->n_iv[k] = PS(s)->cap_iv[k] = 0;
	}
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
	{"trust-host-clock", PAXOS_UNSAFE_TRUST_HOST_CLOCK},
	{"no-lease-wait", PAXOS_UNSAFE_NO_LEASE_WAIT},
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
	       "short-promise, trust-host-clock, no-lease-wait, total-crash-rollback";
}

static const struct sim_engine paxos_engine = {
	.paxos_unsafe = paxos_unsafe,
	.unsafe_total_crash_rollback = SIM_UNSAFE_TOTAL_CRASH_ROLLBACK,
	.paxos_config = paxos_config,
	.inst_open = inst_open,
	.inst_free = inst_free,
	.apply = apply_slot,
	.install = install_snapshot,
	.after_ready = maybe_snapshot,
	.notes = take_notes,
	.after_step = after_step,
	.init = engine_init,
	.on_event = on_engine_event,
	.on_send = on_send,
	.net_pass = lf_net_pass,
	.adversary_choices = lf_choices,
	.adversary_act = lf_act,
	.on_heal_network = lf_on_heal,
	.client_op = client_op,
	.propose = propose,
	.reply = reply,
	.end_checks = check_lost_writes,
	.fini = fini,
	.state_size = sizeof(struct pstate),
};

int sim_run(const struct sim_options *opt, struct sim_report *report)
{
	return sim_world_run(&paxos_engine, opt, report);
}
