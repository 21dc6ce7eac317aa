/* The deterministic cluster simulator, ABD engine (sim.h, sim_abd_run; docs/TESTING.md, "ABD
 * engine").
 *
 * The world (events, network, clocks, disks, adversary, clients, checkers) is sim_world.c,
 * shared with the Paxos engine (sim.c). Each replica runs two cores on one memvfs: the RR-Paxos
 * core as the control plane (REGISTER of incarnations, fence, its WAL in "wal") and the RR-ABD core
 * as the data plane (registers, its own sealed WAL in "abd"). Paxos commits no client command here:
 * its log holds no-ops and REGISTERs. The shell glues them together (glue()): the applied
 * registration vector goes to abd_set_config, a restarted incarnation calls abd_begin_recovery once
 * Paxos has it registered and fenced (lifecycle RECOVERING or FRESH), and the configuration lease
 * is the real one (src/core/abd_lease.h, the daemon's too): MSG_LEASE_RENEW/REPLY travel the
 * simulated network with its faults, and a checker (check_cfg_lease) holds every counted ABD
 * quorum to S15's rule. Clients issue GET, SET and DEL (no CAS) through random replicas, each
 * of which coordinates; the history has no versions. */
#include "sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/abd.h"
#include "core/abd_lease.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "core/quorum.h"
#include "history.h"
#include "lincheck.h"
#include "sim_world.h"
#include "store/wal.h"
#include "teems/err.h"

/* The configuration lease (abd_lease.h) lasts T_CFG, the Paxos core's t_cfg_ns, so that
 * T_fence = (T_op + T_lease + T_cfg)(1 + rho) covers it. Both are shorter than
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
	/* ABD_LEASE_UNSAFE_NO_INDEX is the lease glue's only. */
	return p;
}

struct apending {
	unsigned key;
	struct msg_timestamp ts;
	uint64_t seq;
};

/* The engine's part of an incarnation (instance.ext): the data plane. */
struct ainst {
	struct abd *a; /* the data plane */
	struct abd_ready ar;
	struct store_wal *awal; /* the ABD core's WAL ("abd") */
	uint64_t awritten, asynced;
	bool aurgent;
	uint64_t aupto;			     /* do_sync: awritten when its fsync began */
	bool abd_begun;			     /* abd_begin_recovery called */
	bool rebound;			     /* an epoch restart named it: ABD recovers again */
	uint64_t cfg_commit;		     /* 0: the configuration must be fed to ABD again */
	struct msg_regidx fed[MAX_REPLICAS]; /* the registration vector last fed to ABD */
	bool fed_have[MAX_REPLICAS];
	struct abd_lease lease; /* the configuration lease, holder and grantor */
	uint64_t lease_until;	/* hi: the lease given to ABD (0: none) */
	/* The ABD ordering check (check_asend): per key, the highest timestamp in a durable
	 * record, and the register records not yet synced. */
	bool adur_have[16];
	struct msg_timestamp adur[16];
	struct apending *apend;
	size_t n_apend, cap_apend;
};

/* The first time (simulated time) any replica's applied configuration reached `index`. */
struct cfg_seen {
	uint64_t index, first;
};

struct astate {
	struct ainst x[MAX_INSTANCES]; /* [instance index] */
	/* The no-fence bias (stale_coordinator): phase 0 idle, 1 armed (waiting for B's ack to
	 * A), 2 B crashed, 3 A's links back. */
	int sc_phase;
	int sc_a, sc_b, sc_d, sc_leader;
	bool stale_bias; /* TEEMS_SIM_ABD_STALE set: the bias without --unsafe no-fence */
	/* The configuration-lease bias (lagging_coordinator): replica lag_a's control plane is
	 * cut off while lag_on; lag_bias: TEEMS_SIM_ABD_LAG set, the bias without --unsafe
	 * cfg-lease-no-index. */
	bool lag_on, lag_bias;
	int lag_a;
	/* check_cfg_lease: per configuration index, sorted by index */
	struct cfg_seen *seen;
	size_t n_seen, cap_seen;
	bool cfg_lease_reported;
};

static struct ainst *AX(const struct instance *in)
{
	return in->ext;
}

static struct astate *AS(const struct sim *s)
{
	return s->es;
}

/* The ABD core's persist record (abd_persist_encode) goes to its own sealed WAL, "abd". */
static void apersist(struct sim *s, struct instance *in, const struct abd_persist *p)
{
	size_t len = 0;
	int rc;

	rc = abd_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	if (rc == TEEMS_EFULL) {
		if (sim_ensure_encbuf(s, len) != 0)
			return;
		rc = abd_persist_encode(p, s->encbuf, s->cap_encbuf, &len);
	}
	if (rc != TEEMS_OK) {
		sim_violation(s, "replica %d: abd_persist_encode refused record %" PRIu64 ": %s",
			      in->replica, p->seq, teems_strerror(rc));
		return;
	}
	rc = store_wal_append(AX(in)->awal, s->encbuf, len, NULL);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	if (p->seq != AX(in)->awritten + 1 && AX(in)->awritten != 0)
		sim_violation(s, "replica %d: ABD persist seq %" PRIu64 " after %" PRIu64,
			      in->replica, p->seq, AX(in)->awritten);
	AX(in)->awritten = p->seq;
	if (p->sync)
		AX(in)->aurgent = true;
	if ((p->flags & ABD_REC_REGISTER) && p->key_len == 3 && p->key[0] == 'k') {
		if (AX(in)->n_apend == AX(in)->cap_apend) {
			size_t ncap = AX(in)->cap_apend ? AX(in)->cap_apend * 2 : 64;
			struct apending *np = sim_xrealloc(s, AX(in)->apend, ncap * sizeof(*np));

			if (np == NULL)
				return;
			AX(in)->apend = np;
			AX(in)->cap_apend = ncap;
		}
		AX(in)->apend[AX(in)->n_apend].key =
			10u * (unsigned)(p->key[1] - '0') + (unsigned)(p->key[2] - '0');
		AX(in)->apend[AX(in)->n_apend].ts = p->ts;
		AX(in)->apend[AX(in)->n_apend].seq = p->seq;
		AX(in)->n_apend++;
	}
}

/* Records up to `upto` are durable: their registers' timestamps count for check_asend. */
static void adurable(struct instance *in, uint64_t upto)
{
	size_t keep = 0;

	for (size_t k = 0; k < AX(in)->n_apend; k++) {
		struct apending *pd = &AX(in)->apend[k];

		if (pd->seq > upto) {
			AX(in)->apend[keep++] = *pd;
			continue;
		}
		if (pd->key < 16 && (!AX(in)->adur_have[pd->key] ||
				     msg_timestamp_cmp(&pd->ts, &AX(in)->adur[pd->key]) > 0)) {
			AX(in)->adur[pd->key] = pd->ts;
			AX(in)->adur_have[pd->key] = true;
		}
	}
	AX(in)->n_apend = keep;
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
	if (k < 16 && (!AX(in)->adur_have[k] ||
		       msg_timestamp_cmp(&AX(in)->adur[k], &m->abd_write_ack.ts) < 0))
		sim_violation(
			s,
			"replica %d sent a synced ABD_WRITE_ACK for key k%02u before a record "
			"holding it was durable",
			in->replica, k);
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

static void check_cfg_lease(struct sim *s, const struct instance *in, const struct abd_counted *c);

static void take_aready(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct abd_ready *r = &AX(in)->ar;

	for (size_t k = 0; k < r->n_persist && !s->done; k++)
		apersist(s, in, &r->persist[k]);
	for (size_t k = 0; k < r->n_sends && !s->done; k++) {
		check_asend(s, in, &r->sends[k].msg);
		sim_net_send(s, in, r->sends[k].to, &r->sends[k].msg);
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
		sim_client_reply_later(s, rp->request_id);
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
			sim_trace(s, "replica %d counted ABD %s quorum:%s", in->replica,
				  c->kind == ABD_COUNTED_QUERY	 ? "query"
				  : c->kind == ABD_COUNTED_WRITE ? "write"
								 : "recovery",
				  buf);
		}
		check_acounted(s, in, c);
		check_cfg_lease(s, in, c);
	}
	if (r->recovered)
		sim_trace(s, "replica %d (instance %d): ABD recovered", in->replica, idx);
	if (r->halted && in->alive) {
		/* The control plane decides (glue): an epoch restart may name this incarnation
		 * (a peer showed its new index first), or it halts as well. */
		sim_trace(s, "replica %d (instance %d): ABD halted; the control plane decides",
			  in->replica, idx);
	}
	sim_schedule_sync(s, idx);
}

static void astep(struct sim *s, int idx, struct abd_input *in)
{
	struct instance *ins = &s->insts[idx];
	struct paxos_time t = sim_read_clock(s, &ins->clk);
	int rc;

	in->now.lo_ns = t.lo_ns;
	in->now.hi_ns = t.hi_ns;
	in->now.epoch = t.epoch;
	rc = abd_step(AX(ins)->a, in, &AX(ins)->ar);
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
	return paxos_lifecycle(in->p) == PAXOS_LC_FRESH && !abd_suspicious(AX(in)->a) &&
	       !abd_recovering(AX(in)->a) && !abd_halted(AX(in)->a);
}

/* ---- the configuration lease (abd_lease.h; DESIGN.md section 8; SCENARIOS.md S15) ---- */

static struct lease_time lease_now(struct sim *s, const struct instance *in)
{
	struct paxos_time t = sim_read_clock(s, &in->clk);
	struct lease_time lt = {t.lo_ns, t.hi_ns, t.epoch};

	return lt;
}

/* The grantor grants nothing unless fresh in both planes, with no restart promised (an answer
 * makes the Paxos core suspicious) and not halted: the fence of section 4. */
static bool grantor_fenced(const struct instance *in)
{
	return !inst_fresh(in) || paxos_suspicious(in->p) || paxos_halted(in->p);
}

/* The lease's view of the control plane: the configuration just fed to ABD, the highest
 * configuration entry accepted here, the fence. */
static void lease_configure(struct instance *in)
{
	struct ainst *x = AX(in);
	struct msg_incarnation regs[MAX_REPLICAS], self;
	size_t n = 0;

	for (unsigned r = 0; r < MAX_REPLICAS; r++) {
		if (!x->fed_have[r])
			continue;
		regs[n].replica = (uint16_t)r;
		regs[n].reg = x->fed[r];
		n++;
	}
	self.replica = (uint16_t)in->replica;
	self.reg = abd_registration(x->a);
	abd_lease_configure(&x->lease, abd_lease_index(paxos_config_applied_index(in->p)),
			    abd_lease_index(paxos_config_accepted_index(in->p)), self, regs, n,
			    grantor_fenced(in));
}

/* What the lease says goes to the ABD core (abd_set_lease), every time: the core also drops
 * its copy by itself (a taint, abd_set_registration), so no cached value is trusted. */
static void lease_push(struct sim *s, struct instance *in, struct lease_time now)
{
	AX(in)->lease_until = abd_lease_valid_until(&AX(in)->lease, now);
	abd_set_lease(AX(in)->a, AX(in)->lease_until);
}

/* After every Paxos step (glue): configure, renew when due (to every peer, through the
 * simulated network), hand the result to ABD. */
static void lease_sync(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct lease_time now = lease_now(s, in);

	lease_configure(in);
	if (!abd_halted(AX(in)->a) && abd_lease_renew_due(&AX(in)->lease, now)) {
		struct msg m;

		abd_lease_renew(&AX(in)->lease, now, &m);
		for (unsigned to = 0; to < s->o.n && !s->done; to++)
			if ((int)to != in->replica)
				sim_net_send(s, in, (uint16_t)to, &m);
	}
	lease_push(s, in, now);
}

static void lease_message(struct sim *s, int idx, const struct msg *m)
{
	struct instance *in = &s->insts[idx];
	struct msg reply;

	if (m->type == MSG_LEASE_RENEW) {
		lease_configure(in); /* the ABD plane's state may have moved since the glue */
		if (!abd_lease_on_renew(&AX(in)->lease, m, &reply))
			return;
		/* Section 4: a restarted, fencing, recovering or restart-promised incarnation
		 * grants nothing (checked on what leaves, not on the glue's own flag). */
		if (reply.lease_reply.granted && !(inst_fresh(in) && !paxos_suspicious(in->p)))
			sim_violation(s,
				      "configuration lease: replica %d granted a renewal while not "
				      "fresh (Paxos lifecycle %d)",
				      in->replica, (int)paxos_lifecycle(in->p));
		sim_net_send(s, in, m->from.replica, &reply);
		return;
	}
	(void)abd_lease_on_reply(&AX(in)->lease, m, lease_now(s, in));
	lease_push(s, in, lease_now(s, in));
}

/* check_cfg_lease's record: the first time any replica applied configuration index `index`
 * (a replica that jumps over entries, by a snapshot, records only where it lands; the check
 * is then weaker, never wrong). */
static void cfg_seen(struct sim *s, uint64_t index)
{
	struct astate *as = AS(s);
	size_t i = as->n_seen;

	while (i > 0 && as->seen[i - 1].index >= index) {
		if (as->seen[i - 1].index == index)
			return;
		i--;
	}
	if (as->n_seen == as->cap_seen) {
		size_t ncap = as->cap_seen ? as->cap_seen * 2 : 32;
		struct cfg_seen *nv = sim_xrealloc(s, as->seen, ncap * sizeof(*nv));

		if (nv == NULL)
			return;
		as->seen = nv;
		as->cap_seen = ncap;
	}
	memmove(&as->seen[i + 1], &as->seen[i], (as->n_seen - i) * sizeof(as->seen[0]));
	as->seen[i].index = index;
	as->seen[i].first = s->now;
	as->n_seen++;
}

/* S15's rule, checked on every read or write quorum an ABD coordinator counts: a coordinator
 * whose applied configuration is older than an entry that some replica applied T_cfg ago or
 * more coordinates nothing. An entry is applied only after W_Q replicas accepted it; each
 * refuses renewals bound to an older index from then on, and every counted grant set meets
 * that accept quorum, so the holder's last counted renewal was sent before the entry was
 * applied anywhere, and its lease lasts less than T_cfg of real time from that send
 * (abd_lease.h). The simulator's real time is s->now. */
static void check_cfg_lease(struct sim *s, const struct instance *in, const struct abd_counted *c)
{
	struct astate *as = AS(s);
	uint64_t mine = abd_lease_index(paxos_config_applied_index(in->p));

	if (c->kind == ABD_COUNTED_RECOVERY || as->cfg_lease_reported)
		return;
	for (size_t i = as->n_seen; i > 0 && as->seen[i - 1].index > mine; i--) {
		const struct cfg_seen *e = &as->seen[i - 1];

		if (e->first + T_CFG <= s->now) {
			as->cfg_lease_reported = true;
			sim_violation(s,
				      "configuration lease: replica %d counted an ABD %s quorum at "
				      "t=%.6fs under configuration index %" PRIu64 ".%" PRIu64
				      ", but index %" PRIu64 ".%" PRIu64
				      " was applied at t=%.6fs, more than T_cfg earlier",
				      in->replica, c->kind == ABD_COUNTED_QUERY ? "query" : "write",
				      (double)s->now / 1e9, mine >> 40,
				      (uint64_t)(mine & ((1ull << 40) - 1)), e->index >> 40,
				      (uint64_t)(e->index & ((1ull << 40) - 1)),
				      (double)e->first / 1e9);
			return;
		}
	}
}

/* The shell between the two cores, after every Paxos step: the applied registration vector
 * to ABD (abd_set_config), and abd_begin_recovery once the restarted incarnation is
 * registered and fenced (lifecycle RECOVERING or FRESH; --unsafe no-fence: as soon as it is
 * registered). */
static void glue_cores(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	enum paxos_lifecycle lc = paxos_lifecycle(in->p);
	bool poke = false;

	if (!in->alive)
		return;
	/* Epoch restart: the control plane installed a new epoch that names this incarnation
	 * (registered at (E+1, tag)). The data plane continues as that incarnation: suspicious,
	 * recovering again after the epoch's fence (abd_set_registration, as if re-created from
	 * its WAL). An incarnation left out halts in its Paxos core (take_ready). A restarted one
	 * whose ABD recovery has not begun needs nothing: it begins at the new index. */
	if ((!in->restarted || AX(in)->abd_begun) && paxos_registered(in->p) &&
	    lc != PAXOS_LC_HALTED) {
		struct msg_regidx preg = paxos_registration(in->p);
		struct msg_regidx areg = abd_registration(AX(in)->a);

		if (preg.epoch > areg.epoch && msg_regidx_cmp(&preg, &areg) > 0) {
			if (abd_set_registration(AX(in)->a, preg) != TEEMS_OK) {
				sim_halt_instance(s, idx, "ABD, superseded");
				return;
			}
			sim_trace(s,
				  "replica %d (instance %d): ABD continues at (%" PRIu64 ",%" PRIu64
				  ") after an epoch restart",
				  in->replica, idx, preg.epoch, preg.slot);
			AX(in)->abd_begun = false;
			AX(in)->rebound = true;
			poke = true;
		}
	}
	/* The registration vector: fed again whenever it differs from what ABD last got (a
	 * configuration entry applied, or an epoch restart). */
	{
		struct msg_incarnation regs[MAX_REPLICAS];
		size_t n = 0;
		bool changed = AX(in)->cfg_commit == 0;

		for (unsigned r = 0; r < s->o.n; r++) {
			struct msg_regidx ri;
			uint8_t key[MSG_PUBLIC_KEY_SIZE];

			if (paxos_config_registration(in->p, (uint16_t)r, &ri, key)) {
				regs[n].replica = (uint16_t)r;
				regs[n].reg = ri;
				n++;
				if (!AX(in)->fed_have[r] ||
				    msg_regidx_cmp(&ri, &AX(in)->fed[r]) != 0)
					changed = true;
				AX(in)->fed[r] = ri;
				AX(in)->fed_have[r] = true;
			}
		}
		AX(in)->cfg_commit = 1;
		if (changed && n > 0) {
			int rc = abd_set_config(AX(in)->a, regs, n);

			if (rc != TEEMS_OK) {
				s->err = rc;
				s->done = true;
				return;
			}
			poke = true;
		}
	}
	if (in->alive && abd_halted(AX(in)->a)) {
		/* Not named by a new epoch (above), and its Paxos core is alive: it may yet be
		 * (it halts too once it sees the newer registration ABD saw, or learns it was
		 * left out). Nothing to feed ABD until then. */
		return;
	}
	if ((in->restarted || AX(in)->rebound) && !AX(in)->abd_begun && paxos_registered(in->p) &&
	    (lc == PAXOS_LC_RECOVERING || lc == PAXOS_LC_FRESH ||
	     (s->o.unsafe & ABD_UNSAFE_NO_FENCE))) {
		struct msg_regidx reg = paxos_registration(in->p);
		int rc;

		AX(in)->abd_begun = true;
		rc = abd_begin_recovery(AX(in)->a, reg);
		if (rc == TEEMS_OK) {
			sim_trace(s,
				  "replica %d (instance %d): ABD begins recovery at (%" PRIu64
				  ",%" PRIu64 ")",
				  in->replica, idx, reg.epoch, reg.slot);
			poke = true;
		}
	}
	if (poke)
		apoke(s, idx);
}

static void glue(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];

	glue_cores(s, idx);
	if (!in->alive || s->done)
		return;
	cfg_seen(s, abd_lease_index(paxos_config_applied_index(in->p)));
	lease_sync(s, idx);
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
	int leader = sim_leader_replica(s), a, b;
	unsigned n = s->o.n;

	if (AS(s)->sc_phase != 0 || leader < 0 || n < 3)
		return;
	a = (int)(((unsigned)leader + 1 + (unsigned)rng_below(&s->rng, n - 1)) % n);
	b = (int)(((unsigned)a + 1 + (unsigned)rng_below(&s->rng, n - 1)) % n);
	if (b == leader)
		b = (int)(((unsigned)b + 1) % n);
	AS(s)->sc_d = -1;
	for (unsigned x = 0; x < n; x++)
		if ((int)x != leader && (int)x != a && (int)x != b &&
		    (AS(s)->sc_d < 0 || rng_pct(&s->rng, 50)))
			AS(s)->sc_d = (int)x;
	if (b == a || !sim_available(s, b) || !sim_available(s, a) ||
	    sim_compromised_count(s) + 1 > s->o.m_r || sim_unavailable_count(s) + 1 > s->o.f)
		return;
	sim_heal_network(s);
	s->partitioned = true;
	AS(s)->sc_phase = 1;
	AS(s)->sc_a = a;
	AS(s)->sc_b = b;
	AS(s)->sc_leader = leader;
	sim_trace(s, "adversary: stale coordinator %d (no ACCEPTs from leader %d), armed on %d", a,
		  leader, b);
	sim_schedule(s, s->now + 400 * MS, EV_ENGINE, 1, 0, NULL, 0); /* disarm if nothing */
}

/* A bias for the configuration-lease negative control (--unsafe cfg-lease-no-index; with
 * TEEMS_SIM_ABD_LAG=1 also without it, as its positive control; crash and partition among the
 * faults): SCENARIOS.md S15's deposed coordinator. Replica A's control plane is cut off for
 * LAG_NS (its Paxos messages are dropped both ways; its ABD and lease messages pass) and a
 * replica B, neither A nor the leader, loses power and restarts, so that B's next incarnation's
 * REGISTER commits among the others while A goes on under the old configuration. With the
 * lease, every replica that accepted the REGISTER refuses A's renewals and A stops
 * coordinating within T_cfg; with grantors that ignore the index, A keeps its lease and
 * coordinates on, which check_cfg_lease reports. Needs N - 2 >= W_Q (5,2,2 and 7,2,4): the
 * REGISTER must commit without A and B. Within the bounds: one crash, and a partition. */
#define SIM_FAULT_CFG_LAG 0x200u
#define LAG_NS (2 * SEC)
static void lagging_coordinator(struct sim *s)
{
	int leader = sim_leader_replica(s), a, b;
	unsigned n = s->o.n;

	if (AS(s)->lag_on || AS(s)->sc_phase != 0 || leader < 0 || n < 3 ||
	    n - 2 < quorum_write(&s->q))
		return;
	a = (int)(((unsigned)leader + 1 + (unsigned)rng_below(&s->rng, n - 1)) % n);
	do
		b = (int)rng_below(&s->rng, n);
	while (b == a || b == leader);
	if (!sim_available(s, a) || !sim_available(s, b) ||
	    sim_compromised_count(s) + 1 > s->o.m_r || sim_unavailable_count(s) + 1 > s->o.f)
		return;
	sim_heal_network(s);
	s->partitioned = true;
	AS(s)->lag_on = true;
	AS(s)->lag_a = a;
	sim_trace(s, "adversary: lagging coordinator %d (control plane cut), crash of %d", a, b);
	sim_restart_fault_at(s, SIM_FAULT_CRASH, b, true);
	if (s->reps[b].restart_pending)
		sim_schedule(s, s->now + rng_range(&s->rng, 10 * MS, 40 * MS), EV_RESTART,
			     (uint64_t)b, 0, NULL, 0);
	sim_schedule(s, s->now + LAG_NS, EV_ENGINE, 10, 0, NULL, 0);
}

static void scenario_event(struct sim *s, uint64_t kind)
{
	if (kind == 10) { /* the lagging coordinator catches up */
		if (AS(s)->lag_on)
			sim_heal_network(s);
		return;
	}
	if (kind == 1) { /* the arming timed out */
		if (AS(s)->sc_phase == 1) {
			sim_heal_network(s);
			AS(s)->sc_phase = 0;
		}
		return;
	}
	if (AS(s)->sc_phase == 2) {
		sim_restart_fault_at(s, SIM_FAULT_CRASH, AS(s)->sc_b, true);
		if (s->reps[AS(s)->sc_b].restart_pending)
			sim_schedule(s, s->now + rng_range(&s->rng, 10 * MS, 40 * MS), EV_RESTART,
				     (uint64_t)AS(s)->sc_b, 0, NULL, 0);
		AS(s)->sc_phase = 3;
		sim_schedule(s, s->now + 200 * MS, EV_ENGINE, 2, 0, NULL, 0);
		sim_trace(s, "adversary: stale coordinator %d: crash of %d after its ack",
			  AS(s)->sc_a, AS(s)->sc_b);
	} else if (AS(s)->sc_phase == 3 && kind == 2) {
		AS(s)->sc_phase = 4; /* A's data plane reaches D (only) */
		sim_schedule(s, s->now + 400 * MS, EV_ENGINE, 3, 0, NULL, 0);
	} else if (AS(s)->sc_phase == 4 && kind == 3) {
		sim_heal_network(s);
		AS(s)->sc_phase = 0;
	}
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
		sim_violation(s, "history rejected by the monotonic-reads checker: %s", errbuf);
	else if (res.verdict != LINCHECK_OK)
		sim_violation(s, "monotonic reads: key %.*s: a client's read went backwards\n%s",
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
	{"cfg-lease-no-index", ABD_LEASE_UNSAFE_NO_INDEX},
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
	return "no-stabilize, no-fence, cft-quorums, no-recovery, no-incarnation-check, "
	       "cfg-lease-no-index";
}

/* ---- the engine's hooks (sim_world.h, struct sim_engine) ---- */

static int restore_abd(void *core, const void *data, size_t len)
{
	return abd_restore(core, data, len);
}

/* The data plane of a new incarnation: its own core and WAL. A restarted incarnation learns its
 * registration with abd_begin_recovery; under no-recovery it stays the one its Paxos core
 * restored. */
static int inst_open(struct sim *s, int idx, struct store_wal_opts *wo, uint64_t paxos_records,
		     char *records, size_t len)
{
	struct instance *in = &s->insts[idx];
	struct ainst *x = &AS(s)->x[idx];
	struct abd_config acfg;
	struct abd_lease_config lcfg;
	struct store_wal_info info;
	struct restore_ctx rc_ctx;
	char errbuf[TEEMS_ERRBUF_LEN];
	int rc;

	memset(x, 0, sizeof(*x));
	in->ext = x;
	abd_ready_init(&x->ar);
	abd_config_default(&acfg);
	acfg.quorum = s->q;
	acfg.self = (uint16_t)in->replica;
	acfg.reg = paxos_registration(in->p);
	acfg.restarted = in->restarted && !(s->o.unsafe & ABD_UNSAFE_NO_RECOVERY);
	acfg.sync = s->o.sync == PAXOS_SYNC_ALWAYS ? ABD_SYNC_ALWAYS
		    : s->o.sync == PAXOS_SYNC_RR   ? ABD_SYNC_RR
						   : ABD_SYNC_NONE;
	acfg.t_op_ns = T_OP;
	acfg.resend_ns = 100 * MS;
	acfg.unsafe = s->o.unsafe & ~ABD_LEASE_UNSAFE_NO_INDEX;
	rc = abd_new(&x->a, &acfg, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	memset(&lcfg, 0, sizeof(lcfg));
	lcfg.self = (uint16_t)in->replica;
	lcfg.n = s->o.n;
	lcfg.w_q = quorum_write(&s->q);
	lcfg.t_cfg_ns = T_CFG;
	lcfg.rho_ppm = (uint32_t)(RHO * 1e6);
	lcfg.renew_ns = T_CFG / 3;
	lcfg.nonce_key = rng_next(&s->rng);
	lcfg.unsafe = s->o.unsafe & ABD_LEASE_UNSAFE_NO_INDEX;
	rc = abd_lease_init(&x->lease, &lcfg, errbuf);
	if (rc != TEEMS_OK) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return rc;
	}
	rc_ctx.s = s;
	rc_ctx.in = in;
	rc_ctx.n = 0;
	rc_ctx.max = UINT64_MAX;
	rc_ctx.restore = restore_abd;
	rc_ctx.core = x->a;
	rc_ctx.name = "abd";
	wo->on_record = sim_on_wal_record;
	wo->arg = &rc_ctx;
	rc = store_wal_open(in->vfs, "abd", wo, &x->awal, &info, errbuf);
	if (rc != TEEMS_OK) {
		if (s->rep->failed)
			return 1; /* abd_restore refused a record: reported */
		fprintf(stderr, "teems-sim: replica %d: %s\n", in->replica, errbuf);
		return rc;
	}
	/* What the ABD WAL delivered is durable. */
	for (unsigned k = 0; k < 16; k++) {
		uint8_t key[3];
		bool stable, tomb;
		const uint8_t *v;
		uint32_t vlen;

		sim_encode_key(key, k);
		x->adur_have[k] = abd_lookup(x->a, key, 3, &x->adur[k], &stable, &tomb, &v, &vlen);
	}
	snprintf(records, len, "%" PRIu64 " Paxos and %" PRIu64 " ABD WAL records", paxos_records,
		 rc_ctx.n);
	return TEEMS_OK;
}

static void inst_free(struct sim *s, struct instance *in)
{
	struct ainst *x = AX(in);

	if (x == NULL)
		return;
	abd_free(x->a);
	abd_ready_free(&x->ar);
	free(x->apend);
	x->apend = NULL;
	x->n_apend = x->cap_apend = 0;
	store_wal_close(x->awal);
	x->a = NULL;
	x->awal = NULL;
}

static void apply(struct sim *s, int idx, const struct paxos_apply *a)
{
	struct instance *in = &s->insts[idx];

	sim_check_apply(s, in, a);
	if (a->config)
		AX(in)->cfg_commit = 0; /* feed the configuration to ABD again (glue) */
}

/* The network's cuts, and the no-fence bias (stale_coordinator) on top. */
static bool net_pass(struct sim *s, int from, int to, const struct msg *msg)
{
	struct astate *as = AS(s);
	bool data_or_lease = (msg->type >= MSG_ABD_QUERY && msg->type <= MSG_ABD_RANGE_REPLY) ||
			     msg->type == MSG_LEASE_RENEW || msg->type == MSG_LEASE_REPLY;

	if (as->lag_on && (from == as->lag_a || to == as->lag_a) && !data_or_lease)
		return false; /* the lease bias: A's control plane is cut off */
	if (as->sc_phase >= 2 && msg->type == MSG_COMMIT && (to == as->sc_a || to == as->sc_d) &&
	    from == as->sc_leader)
		return false; /* the no-fence bias: A and D apply no new configuration entry */
	if (as->sc_phase >= 1 && from == as->sc_a &&
	    to != (as->sc_phase <= 3 ? as->sc_b : as->sc_d) && msg->type >= MSG_ABD_QUERY &&
	    msg->type <= MSG_ABD_RANGE_REPLY)
		return false; /* the no-fence bias: A's data plane reaches only B, later only D */
	if (!sim_link_up(s, from, to))
		return false;
	if (as->sc_phase == 1 && from == as->sc_b && to == as->sc_a &&
	    msg->type == MSG_ABD_WRITE_ACK) {
		/* B acknowledged A's write: A can no longer reach B; B loses power next. */
		as->sc_phase = 2;
		s->cut[as->sc_a][as->sc_b] = true;
		sim_schedule(s, s->now + 1 * MS, EV_ENGINE, 0, 0, NULL, 0);
	}
	return true;
}

/* ABD messages to the data plane, the rest to the control plane. */
static void deliver(struct sim *s, int idx, const struct msg *m)
{
	struct abd_input ai;

	if (m->type == MSG_LEASE_RENEW || m->type == MSG_LEASE_REPLY) {
		lease_message(s, idx, m);
	} else if (m->type >= MSG_ABD_QUERY && m->type <= MSG_ABD_RANGE_REPLY) {
		memset(&ai, 0, sizeof(ai));
		ai.type = ABD_IN_MESSAGE;
		ai.message = m;
		astep(s, idx, &ai);
	} else {
		sim_deliver_paxos(s, idx, m);
	}
}

static void sync_pending(const struct instance *in, bool *dirty, bool *urgent)
{
	*dirty = *dirty || AX(in)->awritten > AX(in)->asynced;
	*urgent = *urgent || AX(in)->aurgent;
}

static int sync_begin(struct sim *s, struct instance *in, char *errbuf)
{
	AX(in)->aupto = AX(in)->awritten;
	AX(in)->aurgent = false;
	return store_wal_sync(AX(in)->awal, NULL, errbuf);
}

static void sync_end(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	uint64_t aupto = AX(in)->aupto;
	struct abd_input ai;

	if (!in->alive || s->done || aupto == AX(in)->asynced)
		return;
	AX(in)->asynced = aupto;
	adurable(in, aupto);
	memset(&ai, 0, sizeof(ai));
	ai.type = ABD_IN_SYNCED;
	ai.synced.seq = aupto;
	astep(s, idx, &ai);
}

static bool fresh(const struct instance *in)
{
	return inst_fresh(in);
}

static int lifecycle(const struct instance *in)
{
	int lc = (int)paxos_lifecycle(in->p);

	return lc == PAXOS_LC_FRESH ? 3 : lc; /* Paxos fresh, ABD not yet: recovering */
}

static void paxos_config(struct sim *s, struct paxos_config *cfg)
{
	cfg->t_lease_ns = T_LEASE;
	/* Epoch restart as the Paxos engine's T_RESTART, always on; the data plane follows an
	 * epoch that names its incarnation (glue, abd_set_registration). */
	cfg->t_restart_ns = 5 * SEC;
	cfg->t_cfg_ns = T_CFG;
}

/* ---- clients ---- */

static bool client_op(struct sim *s, int c, uint64_t r, int n, struct history_op *op)
{
	struct client *cl = &s->clients[c];

	cl->value_len = 0;
	if (r < 45) {
		cl->op = ABD_GET;
	} else if (r < 92) {
		cl->op = ABD_SET;
		cl->value_len = (uint32_t)n;
	} else {
		cl->op = ABD_DEL;
	}
	op->type = cl->op == ABD_GET ? HISTORY_GET : cl->op == ABD_SET ? HISTORY_SET : HISTORY_DEL;
	if (cl->op == ABD_SET) {
		op->value.data = cl->value;
		op->value.len = cl->value_len;
	}
	return true;
}

static void propose(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct abd_input ai;

	memset(&ai, 0, sizeof(ai));
	ai.type = ABD_IN_REQUEST;
	ai.request.client_id = (uint64_t)at->client + 1;
	ai.request.request_id = a;
	ai.request.op = (enum abd_op)cl->op;
	ai.request.key = cl->key;
	ai.request.key_len = 3;
	ai.request.value = cl->value;
	ai.request.value_len = cl->value_len;
	astep(s, at->inst, &ai);
}

static void reply(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct history_result hr;

	switch ((enum abd_outcome)at->outcome) {
	case ABD_OUTCOME_OK:
		memset(&hr, 0, sizeof(hr));
		hr.version_known = false;
		hr.found = at->found;
		hr.value.data = at->result;
		hr.value.len = at->result_len;
		if (cl->final_reader && cl->op == ABD_GET)
			cl->next_final++;
		sim_complete_op(s, at->client, HISTORY_OK, &hr);
		return;
	case ABD_OUTCOME_UNKNOWN:
		sim_complete_op(s, at->client, HISTORY_UNKNOWN, NULL);
		return;
	case ABD_OUTCOME_REFUSED:
		/* Never started: not applied; the same op tries another replica. */
		sim_schedule(s, s->now + rng_range(&s->rng, 1 * MS, 20 * MS), EV_RETRY,
			     (uint64_t)at->client, a, NULL, 0);
		return;
	default:
		sim_violation(s, "replica %d answered client %d with unexpected outcome %d",
			      s->insts[at->inst].replica, at->client, at->outcome);
		return;
	}
}

/* ---- the adversary's own fault ---- */

static void adversary_choices(struct sim *s, unsigned *choices, unsigned *n)
{
	/* The no-fence bias; TEEMS_SIM_ABD_STALE=1 turns it on without the switch (its positive
	 * control: the same schedules pass with the fence). */
	if (((s->o.unsafe & ABD_UNSAFE_NO_FENCE) || AS(s)->stale_bias) &&
	    (s->o.faults & SIM_FAULT_CRASH) && (s->o.faults & SIM_FAULT_PARTITION))
		choices[(*n)++] = SIM_FAULT_STALE_COORDINATOR;
	/* The configuration-lease bias; TEEMS_SIM_ABD_LAG=1 turns it on without the switch. */
	if (((s->o.unsafe & ABD_LEASE_UNSAFE_NO_INDEX) || AS(s)->lag_bias) &&
	    (s->o.faults & SIM_FAULT_CRASH) && (s->o.faults & SIM_FAULT_PARTITION))
		choices[(*n)++] = SIM_FAULT_CFG_LAG;
}

static void adversary_act(struct sim *s, unsigned fault)
{
	if (fault == SIM_FAULT_STALE_COORDINATOR)
		stale_coordinator(s);
	else if (fault == SIM_FAULT_CFG_LAG)
		lagging_coordinator(s);
}

static void on_heal_network(struct sim *s)
{
	AS(s)->sc_phase = 0;   /* ends the no-fence bias too */
	AS(s)->lag_on = false; /* and the lease bias */
}

static void on_event(struct sim *s, const struct event *e)
{
	scenario_event(s, e->a);
}

static void init(struct sim *s)
{
	AS(s)->stale_bias = getenv("TEEMS_SIM_ABD_STALE") != NULL &&
			    strcmp(getenv("TEEMS_SIM_ABD_STALE"), "1") == 0;
	AS(s)->lag_bias = getenv("TEEMS_SIM_ABD_LAG") != NULL &&
			  strcmp(getenv("TEEMS_SIM_ABD_LAG"), "1") == 0;
}

static void fini(struct sim *s)
{
	free(AS(s)->seen);
	AS(s)->seen = NULL;
	AS(s)->n_seen = AS(s)->cap_seen = 0;
}

static const struct sim_engine abd_engine = {
	.extra_wal = "abd",
	.extra_wal_name = "ABD",
	.paxos_name = "Paxos",
	.paxos_unsafe = paxos_unsafe_bits,
	.paxos_config = paxos_config,
	.inst_open = inst_open,
	.inst_free = inst_free,
	.apply = apply,
	.net_pass = net_pass,
	.after_step = glue,
	.after_tick = apoke,
	.deliver = deliver,
	.sync_pending = sync_pending,
	.sync_begin = sync_begin,
	.sync_end = sync_end,
	.fresh = fresh,
	.lifecycle = lifecycle,
	.client_op = client_op,
	.propose = propose,
	.reply = reply,
	.adversary_choices = adversary_choices,
	.adversary_act = adversary_act,
	.on_heal_network = on_heal_network,
	.on_event = on_event,
	.init = init,
	.fini = fini,
	.end_checks = check_monotonic,
	.state_size = sizeof(struct astate),
};

int sim_abd_run(const struct sim_options *opt, struct sim_report *report)
{
	return sim_world_run(&abd_engine, opt, report);
}
